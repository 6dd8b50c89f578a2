//! `ls`: the contents of a snapshot.

use crate::args::{Cli, LsArgs};
use crate::cmd::{in_trees_of, pick, snapshot_and_path};
use crate::open::{open, snapshots_of};
use crate::{output, time};
use anyhow::Result;
use cairn_engine::Visit;
use cairn_format::tree::{Node, NodeKind};
use cairn_repo::ErrorKind;
use serde_json::json;
use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

pub(crate) fn ls(cli: &Cli, a: &LsArgs) -> Result<u8> {
    let (spec, path) = snapshot_and_path(&a.words, a.at.is_some())?;
    let repo = open(cli, false)?;
    let list = snapshots_of(&repo)?.list;
    let (id, snap) = pick(&list, spec, a.at, &a.filter, cli.quiet)?;
    let start = path.map_or_else(|| PathBuf::from("/"), PathBuf::from);
    let start = if start.is_absolute() {
        start
    } else {
        Path::new("/").join(start)
    };
    let node = cairn_engine::find_node(&repo, snap.tree, &start)?;
    let mut out = std::io::stdout().lock();
    let mut print = |path: &Path, node: &Node| -> std::io::Result<()> {
        if a.json {
            let doc = json!({
                "path": path.to_string_lossy(),
                "type": format!("{:?}", node.kind).to_lowercase(),
                "mode": node.mode,
                "uid": node.uid,
                "gid": node.gid,
                "user": String::from_utf8_lossy(&node.user),
                "group": String::from_utf8_lossy(&node.group),
                "size": node.size,
                "mtime": time::rfc3339_file(node.mtime),
                "target": (node.kind == NodeKind::Symlink).then(|| String::from_utf8_lossy(&node.target).into_owned()),
            });
            writeln!(out, "{doc}")
        } else if a.long {
            let line = format!(
                "{} {:>8} {:>8} {:>12} {} ",
                output::mode(node.kind, node.mode),
                owner(&node.user, node.uid),
                owner(&node.group, node.gid),
                node.size,
                time::show_file(node.mtime),
            );
            out.write_all(line.as_bytes())?;
            out.write_all(&output::path(path))?;
            if node.kind == NodeKind::Symlink {
                out.write_all(b" -> ")?;
                out.write_all(&output::path(Path::new(OsStr::from_bytes(&node.target))))?;
            }
            out.write_all(b"\n")
        } else {
            out.write_all(&output::path(path))?;
            out.write_all(b"\n")
        }
    };
    match node.subtree {
        Some(tree) if node.kind == NodeKind::Dir => {
            let mut result = Ok(());
            cairn_engine::walk_tree(&repo, tree, &start, &mut |path, node| {
                if let Err(e) = print(path, node) {
                    result = Err(e);
                    return Err(cairn_repo::Error::new(ErrorKind::Io, "output closed"));
                }
                Ok(if a.recursive {
                    Visit::Descend
                } else {
                    Visit::Skip
                })
            })
            .or_else(|e| if result.is_err() { Ok(()) } else { Err(e) })
            .map_err(in_trees_of(format!("snapshot {}", id.short())))?;
            // A closed pipe (`cairn ls | head`) is not an error.
            if let Err(e) = result {
                if e.kind() != std::io::ErrorKind::BrokenPipe {
                    return Err(e.into());
                }
            }
        }
        _ => print(&start, &node)?,
    }
    Ok(0)
}

fn owner(name: &[u8], id: u32) -> String {
    if name.is_empty() {
        id.to_string()
    } else {
        String::from_utf8_lossy(name).into_owned()
    }
}
