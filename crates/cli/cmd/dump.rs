//! `dump`: a file of a snapshot to stdout or a file, or a directory as tar or zip.

use crate::args::{ArchiveArg, Cli, DumpArgs};
use crate::cmd::{pick, snapshot_and_path};
use crate::invalid;
use crate::open::{open, snapshots_of};
use anyhow::Context;
use anyhow::Result;
use cairn_format::tree::NodeKind;
use cairn_repo::ErrorKind;
use std::io::Write;
use std::path::Path;

pub(crate) fn dump(cli: &Cli, a: &DumpArgs) -> Result<u8> {
    let (spec, path) = snapshot_and_path(&a.words, a.at.is_some())?;
    let path = Path::new("/").join(path.ok_or_else(|| invalid("name the path to dump"))?);
    let repo = open(cli, false)?;
    let list = snapshots_of(&repo)?.list;
    let (_, snap) = pick(&list, spec, a.at, &a.filter, cli.quiet)?;
    let node = cairn_engine::find_node(&repo, snap.tree, &path)?;
    // Written next to the output under a new random name (created exclusively, 0600, so no
    // one can have opened it or planted a link there) and renamed into place, so a failed dump
    // leaves no half file.
    let (mut sink, tmp): (Box<dyn Write>, Option<tempfile::TempPath>) = match &a.output {
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
        .map_err(anyhow::Error::from)
        .and_then(|()| Ok(sink.flush()?));
    drop(sink);
    // A failed dump drops `tmp`, which removes it.
    flushed?;
    if let (Some(tmp), Some(out)) = (tmp, &a.output) {
        tmp.persist(out)
            .with_context(|| format!("cannot write {}", out.display()))?;
    }
    Ok(0)
}
