//! What changed between two snapshots: a merge walk of their trees that skips every subtree
//! whose id is the same in both (identical content), so its cost follows the change, not the
//! size of the snapshots, and whose entries visited are bounded like every walk's (walk.rs).

use crate::walk::Budget;
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
    let mut d = Diff {
        repo,
        budget: Budget::new(&[a, b]),
        f,
    };
    d.trees(Some(a), Some(b), Path::new("/"), 0)
}

/// One diff: where trees come from, what it may visit (walk.rs), and where changes go.
struct Diff<'a, 'f> {
    repo: &'a dyn BlobStore,
    budget: Budget,
    f: &'f mut dyn FnMut(Change),
}

impl Diff<'_, '_> {
    fn load(&mut self, t: Option<TreeId>) -> Result<Tree> {
        let Some(t) = t else {
            return Ok(Tree::default());
        };
        let tree = self.repo.load_tree(t)?;
        self.budget.loaded(self.repo, t, tree.nodes.len())?;
        Ok(tree)
    }

    fn trees(
        &mut self,
        a: Option<TreeId>,
        b: Option<TreeId>,
        base: &Path,
        depth: usize,
    ) -> Result<()> {
        // Identical subtrees hold no differences, however many paths lead to them.
        if a == b {
            return Ok(());
        }
        crate::walk::check_depth(depth, base)?;
        let (ta, tb) = (self.load(a)?, self.load(b)?);
        let (mut i, mut j) = (0, 0);
        while i < ta.nodes.len() || j < tb.nodes.len() {
            let order = match (ta.nodes.get(i), tb.nodes.get(j)) {
                (Some(x), Some(y)) => x.name.cmp(&y.name),
                (Some(_), None) => Ordering::Less,
                _ => Ordering::Greater,
            };
            match order {
                Ordering::Less => {
                    self.one_side(&ta.nodes[i], base, depth, ChangeKind::Removed)?;
                    i += 1;
                }
                Ordering::Greater => {
                    self.one_side(&tb.nodes[j], base, depth, ChangeKind::Added)?;
                    j += 1;
                }
                Ordering::Equal => {
                    self.both(&ta.nodes[i], &tb.nodes[j], base, depth)?;
                    i += 1;
                    j += 1;
                }
            }
        }
        Ok(())
    }

    /// A node present on one side only, and everything below it. `depth` is that of `base`'s
    /// tree.
    fn one_side(&mut self, node: &Node, base: &Path, depth: usize, kind: ChangeKind) -> Result<()> {
        let path = base.join(OsStr::from_bytes(&node.name));
        let (before, after) = if kind == ChangeKind::Added {
            (None, Some(node))
        } else {
            (Some(node), None)
        };
        (self.f)(Change {
            path: &path,
            kind,
            before,
            after,
        });
        if let Some(sub) = node.subtree {
            crate::walk::check_depth(depth + 1, &path)?;
            for child in &self.load(Some(sub))?.nodes {
                self.one_side(child, &path, depth + 1, kind)?;
            }
        }
        Ok(())
    }

    fn both(&mut self, a: &Node, b: &Node, base: &Path, depth: usize) -> Result<()> {
        let path = base.join(OsStr::from_bytes(&a.name));
        if a.kind != b.kind {
            self.one_side(a, base, depth, ChangeKind::Removed)?;
            return self.one_side(b, base, depth, ChangeKind::Added);
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
            (self.f)(Change {
                path: &path,
                kind,
                before: Some(a),
                after: Some(b),
            });
        }
        if a.kind == NodeKind::Dir {
            self.trees(a.subtree, b.subtree, &path, depth + 1)?;
        }
        Ok(())
    }
}
