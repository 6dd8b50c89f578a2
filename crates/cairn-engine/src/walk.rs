//! Walking a snapshot's trees. Paths inside a snapshot are absolute: the root tree is `/` of the
//! backed-up machine.

use crate::Result;
use cairn_format::tree::{Node, NodeKind};
use cairn_format::TreeId;
use cairn_repo::{Error, ErrorKind, Repository};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// What a walk callback tells the walker.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Visit {
    Descend,
    Skip,
}

/// Calls `f` on every node below `tree` in depth-first order, directories before their
/// contents, with the node's absolute path inside the snapshot.
pub fn walk_tree(
    repo: &Repository,
    tree: TreeId,
    base: &Path,
    f: &mut dyn FnMut(&Path, &Node) -> Result<Visit>,
) -> Result<()> {
    let tree = repo.load_tree(tree)?;
    for node in &tree.nodes {
        let path = base.join(OsStr::from_bytes(&node.name));
        if f(&path, node)? == Visit::Descend {
            if let Some(sub) = node.subtree {
                walk_tree(repo, sub, &path, f)?;
            }
        }
    }
    Ok(())
}

/// The node at `path` inside the snapshot whose root tree is `root`; `/` gives a synthetic
/// directory node for the root.
pub fn find_node(repo: &Repository, root: TreeId, path: &Path) -> Result<Node> {
    let mut node = Node {
        kind: NodeKind::Dir,
        subtree: Some(root),
        mode: 0o755,
        ..Node::default()
    };
    let mut walked = PathBuf::from("/");
    for comp in path.components() {
        let name = match comp {
            Component::RootDir | Component::CurDir => continue,
            Component::Normal(n) => n.as_bytes(),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!("path {} must not contain ..", path.display()),
                ));
            }
        };
        let Some(sub) = node.subtree else {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("{} is not a directory in the snapshot", walked.display()),
            ));
        };
        walked.push(OsStr::from_bytes(name));
        let tree = repo.load_tree(sub)?;
        node = tree.find(name).cloned().ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("{} is not in the snapshot", walked.display()),
            )
        })?;
    }
    Ok(node)
}

/// Calls `f` for every entry of every snapshot whose path matches `pattern`.
pub fn find(
    repo: &Repository,
    snapshots: &[(cairn_format::SnapshotId, cairn_format::snapshot::Snapshot)],
    pattern: &crate::Filter,
    f: &mut dyn FnMut(&cairn_format::SnapshotId, &cairn_format::snapshot::Snapshot, &Path, &Node),
) -> Result<()> {
    for (id, snap) in snapshots {
        walk_tree(repo, snap.tree, Path::new("/"), &mut |path, node| {
            if pattern.matches(path) {
                f(id, snap, path, node);
            }
            Ok(Visit::Descend)
        })?;
    }
    Ok(())
}
