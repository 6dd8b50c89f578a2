//! `dump`: a file of a snapshot to stdout or a file, or a directory as tar or zip.

use crate::args::{ArchiveArg, Cli, DumpArgs};
use crate::cmd::{in_trees_of, pick, snapshot_and_path};
use crate::open::{open, snapshots_of};
use crate::{invalid, time};
use anyhow::Context;
use anyhow::Result;
use cairn_format::tree::NodeKind;
use cairn_repo::ErrorKind;
use serde_json::json;
use std::io::Write;
use std::path::Path;

pub(crate) fn dump(cli: &Cli, a: &DumpArgs) -> Result<u8> {
    // The report goes to stdout, as every command's does, so the content must go elsewhere.
    if a.json && a.output.is_none() {
        return Err(invalid(
            "--json needs --output FILE: on stdout the report would mix with the dumped content",
        ));
    }
    let (spec, path) = snapshot_and_path(&a.words, a.at.is_some())?;
    let path = Path::new("/").join(path.ok_or_else(|| invalid("name the path to dump"))?);
    let repo = open(cli, false)?;
    let list = snapshots_of(&repo)?.list;
    let (id, snap) = pick(&list, spec, a.at, &a.filter, cli.quiet)?;
    let node = cairn_engine::find_node(&repo, snap.tree, &path)?;
    // Written next to the output under a new random name (created exclusively, 0600, so no
    // one can have opened it or planted a link there) and renamed into place, so a failed dump
    // leaves no half file.
    let (sink, tmp): (Box<dyn Write>, Option<tempfile::TempPath>) = match &a.output {
        Some(f) => {
            let dir = match f.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            let (file, tmp) = tempfile::Builder::new()
                .prefix(".cairn-dump-")
                .tempfile_in(dir)
                .with_context(|| format!("cannot create a file in {}", dir.display()))?
                .into_parts();
            (
                Box::new(std::io::BufWriter::with_capacity(1 << 20, file)),
                Some(tmp),
            )
        }
        None => (
            Box::new(std::io::BufWriter::with_capacity(
                1 << 20,
                std::io::stdout().lock(),
            )),
            None,
        ),
    };
    let mut sink = Counted {
        inner: sink,
        bytes: 0,
    };
    let written = match node.kind {
        NodeKind::File => cairn_engine::dump_file(&repo, &node, &mut sink),
        NodeKind::Dir => match a.archive {
            ArchiveArg::Tar => cairn_engine::dump_tar(&repo, &node, &path, &mut sink),
            ArchiveArg::Zip => cairn_engine::dump_zip(&repo, &node, &path, &mut sink),
        },
        _ => Err(cairn_repo::Error::new(
            ErrorKind::InvalidInput,
            format!("{} is neither a file nor a directory", path.display()),
        )),
    };
    let flushed = written
        .map_err(in_trees_of(format!("snapshot {}", id.short())))
        .map_err(anyhow::Error::from)
        .and_then(|()| Ok(sink.flush()?));
    let bytes = sink.bytes;
    drop(sink);
    // A failed dump drops `tmp`, which removes it.
    flushed?;
    if let (Some(tmp), Some(out)) = (tmp, &a.output) {
        tmp.persist(out)
            .with_context(|| format!("cannot write {}", out.display()))?;
    }
    if a.json {
        let format = match (node.kind, &a.archive) {
            (NodeKind::File, _) => "file",
            (_, ArchiveArg::Tar) => "tar",
            (_, ArchiveArg::Zip) => "zip",
        };
        let doc = json!({
            "snapshot_id": id.to_hex(),
            "snapshot_time": time::rfc3339(snap.time),
            "path": path.to_string_lossy(),
            "type": format!("{:?}", node.kind).to_lowercase(),
            "format": format,
            "output": a.output.as_ref().map(|o| o.to_string_lossy()),
            "bytes": bytes,
        });
        println!("{doc}");
    }
    Ok(0)
}

/// A writer that counts the bytes it passes on, for the report.
struct Counted<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
