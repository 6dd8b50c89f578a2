//! What changed between two snapshots: a merge walk of their trees that skips every subtree
//! whose id is the same in both (identical content), so its cost follows the change, not the
//! size of the snapshots.

use crate::Result;
use cairn_format::tree::{Node, NodeKind, Tree};
use cairn_format::TreeId;
use cairn_repo::BlobStore;
use std::cmp::Ordering;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Removed,
    /// Same type, different content (file data or symlink target).
    Content,
    /// Same content, different mode, owner, mtime or extended attributes.
    Metadata,
}

/// One changed path; `before` and `after` are the entry in each snapshot, where it exists.
pub struct Change<'a> {
    pub path: &'a Path,
    pub kind: ChangeKind,
    pub before: Option<&'a Node>,
    pub after: Option<&'a Node>,
}

/// Calls `f` for every path that differs between the trees `a` and `b`, in path order. Entries
/// below an added or removed directory are reported too.
pub fn diff(repo: &dyn BlobStore, a: TreeId, b: TreeId, f: &mut dyn FnMut(Change)) -> Result<()> {
    diff_trees(repo, Some(a), Some(b), Path::new("/"), 0, f)
}

fn load(repo: &dyn BlobStore, t: Option<TreeId>) -> Result<Tree> {
    Ok(match t {
        Some(t) => repo.load_tree(t)?,
        None => Tree::default(),
    })
}

fn diff_trees(
    repo: &dyn BlobStore,
    a: Option<TreeId>,
    b: Option<TreeId>,
    base: &Path,
    depth: usize,
    f: &mut dyn FnMut(Change),
) -> Result<()> {
    // Identical subtrees hold no differences, however many paths lead to them.
    if a == b {
        return Ok(());
    }
    crate::walk::check_depth(depth, base)?;
    let (ta, tb) = (load(repo, a)?, load(repo, b)?);
    let (mut i, mut j) = (0, 0);
    while i < ta.nodes.len() || j < tb.nodes.len() {
        let order = match (ta.nodes.get(i), tb.nodes.get(j)) {
            (Some(x), Some(y)) => x.name.cmp(&y.name),
            (Some(_), None) => Ordering::Less,
            _ => Ordering::Greater,
        };
        match order {
            Ordering::Less => {
                one_side(repo, &ta.nodes[i], base, depth, ChangeKind::Removed, f)?;
                i += 1;
            }
            Ordering::Greater => {
                one_side(repo, &tb.nodes[j], base, depth, ChangeKind::Added, f)?;
                j += 1;
            }
            Ordering::Equal => {
                both(repo, &ta.nodes[i], &tb.nodes[j], base, depth, f)?;
                i += 1;
                j += 1;
            }
        }
    }
    Ok(())
}

/// A node present on one side only, and everything below it. `depth` is that of `base`'s tree.
fn one_side(
    repo: &dyn BlobStore,
    node: &Node,
    base: &Path,
    depth: usize,
    kind: ChangeKind,
    f: &mut dyn FnMut(Change),
) -> Result<()> {
    let path = base.join(OsStr::from_bytes(&node.name));
    let (before, after) = if kind == ChangeKind::Added {
        (None, Some(node))
    } else {
        (Some(node), None)
    };
    f(Change {
        path: &path,
        kind,
        before,
        after,
    });
    if let Some(sub) = node.subtree {
        crate::walk::check_depth(depth + 1, &path)?;
        for child in &repo.load_tree(sub)?.nodes {
            one_side(repo, child, &path, depth + 1, kind, f)?;
        }
    }
    Ok(())
}

fn both(
    repo: &dyn BlobStore,
    a: &Node,
    b: &Node,
    base: &Path,
    depth: usize,
    f: &mut dyn FnMut(Change),
) -> Result<()> {
    let path = base.join(OsStr::from_bytes(&a.name));
    if a.kind != b.kind {
        one_side(repo, a, base, depth, ChangeKind::Removed, f)?;
        return one_side(repo, b, base, depth, ChangeKind::Added, f);
    }
    let content = a.content != b.content || a.target != b.target || a.rdev != b.rdev;
    // A directory's mtime changes with every entry added or removed; that is not news.
    let mtime = a.mtime != b.mtime && a.kind != NodeKind::Dir;
    let metadata =
        mtime || a.mode != b.mode || a.uid != b.uid || a.gid != b.gid || a.xattrs != b.xattrs;
    let kind = if content {
        Some(ChangeKind::Content)
    } else if metadata {
        Some(ChangeKind::Metadata)
    } else {
        None
    };
    if let Some(kind) = kind {
        f(Change {
            path: &path,
            kind,
            before: Some(a),
            after: Some(b),
        });
    }
    if a.kind == NodeKind::Dir {
        diff_trees(repo, a.subtree, b.subtree, &path, depth + 1, f)?;
    }
    Ok(())
}
