//! Walking a snapshot's trees. Paths inside a snapshot are absolute: the root tree is `/` of the
//! backed-up machine.
//!
//! Invariant: no walk loads a tree deeper than `MAX_TREE_DEPTH` below the root; it fails with
//! `too_deep` instead, so a crafted snapshot cannot overflow a walker's stack.

use crate::Result;
use cairn_format::tree::{Node, NodeKind, MAX_TREE_DEPTH};
use cairn_format::TreeId;
use cairn_repo::{BlobStore, Error, ErrorKind};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// What a walk callback tells the walker.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Visit {
    Descend,
    Skip,
}

/// How deep the tree of the directory at `path` (absolute in its snapshot) is: the number of
/// names in the path.
pub(crate) fn depth_of(path: &Path) -> usize {
    path.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count()
}

/// Fails when the tree of the directory at `path`, `depth` levels below the root, is deeper
/// than a snapshot may be (repo-format.md, "Limits").
pub(crate) fn check_depth(depth: usize, path: &Path) -> Result<()> {
    if depth > MAX_TREE_DEPTH {
        return Err(too_deep(path));
    }
    Ok(())
}

pub(crate) fn too_deep(path: &Path) -> Error {
    // The path is hundreds of names long: its start says where it is.
    let shown: PathBuf = path.components().take(8).collect();
    Error::corrupt(format!(
        "{}/... is nested deeper than {MAX_TREE_DEPTH} directories, the most a snapshot may hold",
        shown.display()
    ))
}

/// Calls `f` on every node below `tree` in depth-first order, directories before their
/// contents, with the node's absolute path inside the snapshot. `base` is the path of `tree`'s
/// directory in the snapshot.
pub fn walk_tree(
    repo: &dyn BlobStore,
    tree: TreeId,
    base: &Path,
    f: &mut dyn FnMut(&Path, &Node) -> Result<Visit>,
) -> Result<()> {
    walk_at(repo, tree, base, depth_of(base), f)
}

fn walk_at(
    repo: &dyn BlobStore,
    tree: TreeId,
    base: &Path,
    depth: usize,
    f: &mut dyn FnMut(&Path, &Node) -> Result<Visit>,
) -> Result<()> {
    check_depth(depth, base)?;
    let tree = repo.load_tree(tree)?;
    for node in &tree.nodes {
        let path = base.join(OsStr::from_bytes(&node.name));
        if f(&path, node)? == Visit::Descend {
            if let Some(sub) = node.subtree {
                walk_at(repo, sub, &path, depth + 1, f)?;
            }
        }
    }
    Ok(())
}

/// The node at `path` inside the snapshot whose root tree is `root`; `/` gives a synthetic
/// directory node for the root.
pub fn find_node(repo: &dyn BlobStore, root: TreeId, path: &Path) -> Result<Node> {
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
    repo: &dyn BlobStore,
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
