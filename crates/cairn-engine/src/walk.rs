//! Walking a snapshot's trees. Paths inside a snapshot are absolute: the root tree is `/` of the
//! backed-up machine.
//!
//! Invariants: no walk loads a tree deeper than `MAX_TREE_DEPTH` below the root; it fails with
//! `too_deep` instead, so a crafted snapshot cannot overflow a walker's stack. No walk that lists
//! paths (ls, find, dump, diff, restore planning) visits more entries, counted along every path,
//! than its `Budget` allows; it fails with `crafted` instead, so a snapshot whose trees reach one
//! subtree along 2^64 paths fails at once rather than running forever.

use crate::Result;
use cairn_format::tree::{Node, NodeKind, MAX_TREE_DEPTH};
use cairn_format::TreeId;
use cairn_repo::{BlobStore, Error, ErrorKind};
use std::collections::{HashMap, HashSet};
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

// Why a budget, and why this one. Walks that list paths must visit a subtree once per path that
// reaches it (identical directories are common: empty ones, copies of a checkout), so memoizing
// is not open to them, and a snapshot of n small trees can reach 2^n paths. A fixed cap on the
// entries visited would either refuse large honest snapshots or, set high, still let a crafted
// one run for hours before failing. So a walk is allowed what the trees it reaches hold, times
// a generous factor for duplication, and never less than a floor any snapshot may reach; and
// it learns whether the snapshot is within that before walking all of it: counting the
// entries reachable along all paths takes one visit per *distinct* tree (memoized), however
// many paths there are. That count costs a second read of every tree, so it is made only once
// the walk has re-entered trees it already loaded for more than `RECOUNT_AFTER` entries, which
// is the only way a walk can visit more than the trees hold: walks of snapshots without much
// duplication never pay it, and a crafted one fails after a few thousand entries.

/// Entries visited in trees loaded before, within one walk, before the walk counts what it
/// can reach.
const RECOUNT_AFTER: u64 = 1 << 16;
/// Entries any walk may visit, along all paths: a few minutes of `ls`.
const MIN_BUDGET: u64 = 100_000_000;
/// How many times over a walk may visit the distinct entries its trees hold (a snapshot of a
/// thousand copies of one directory is still walked).
const PATHS_PER_ENTRY: u64 = 1024;

/// What one walk has visited, and whether it has shown that its whole walk is within bounds.
pub(crate) struct Budget {
    roots: Vec<TreeId>,
    loaded: HashSet<TreeId>,
    revisited: u64,
    checked: bool,
}

impl Budget {
    /// A budget for a walk of the trees `roots` (both sides of a diff).
    pub(crate) fn new(roots: &[TreeId]) -> Budget {
        Budget {
            roots: roots.to_vec(),
            loaded: HashSet::new(),
            revisited: 0,
            checked: false,
        }
    }

    /// Counts the tree `id` of `entries` entries, which the walk has just loaded; fails with
    /// `crafted` when the entries the walk can reach exceed what it may visit.
    pub(crate) fn loaded(
        &mut self,
        repo: &dyn BlobStore,
        id: TreeId,
        entries: usize,
    ) -> Result<()> {
        if self.checked || self.loaded.insert(id) {
            return Ok(());
        }
        self.revisited += entries as u64;
        if self.revisited > RECOUNT_AFTER {
            self.checked = true;
            self.loaded = HashSet::new();
            let mut reach = Reach {
                repo,
                paths: HashMap::new(),
                distinct: 0,
            };
            let mut total = 0u64;
            for &root in &self.roots {
                total = total.saturating_add(reach.paths(root)?);
            }
            // Per root: a diff walks both snapshots, whose shared trees `distinct` counts once.
            let per_root = reach.distinct.saturating_mul(PATHS_PER_ENTRY);
            let limit = MIN_BUDGET.max(per_root.saturating_mul(self.roots.len() as u64));
            if total > limit {
                return Err(crafted(limit, reach.distinct));
            }
        }
        Ok(())
    }
}

fn crafted(limit: u64, distinct: u64) -> Error {
    Error::corrupt(format!(
        "the trees reach more than {limit} entries along all their paths, yet hold only \
         {distinct}: the repository may have been crafted to make walks take forever"
    ))
}

/// The entries reachable below each tree along all paths, counted once per distinct tree.
struct Reach<'a> {
    repo: &'a dyn BlobStore,
    paths: HashMap<TreeId, u64>,
    /// The entries of the distinct trees counted.
    distinct: u64,
}

impl Reach<'_> {
    /// The entries reachable below `root` along all paths, however deep: a count cut off at
    /// some depth and remembered would be reused where the same tree is reached higher up, and
    /// there it would be too small. No recursion, so a chain deeper than any walk goes costs
    /// no stack; each distinct tree is loaded once, as a child is counted before its parent is
    /// taken off the stack and trees cannot reach themselves (content addressing).
    fn paths(&mut self, root: TreeId) -> Result<u64> {
        let mut stack: Vec<(TreeId, Option<Vec<Option<TreeId>>>)> = vec![(root, None)];
        while let Some((id, children)) = stack.pop() {
            if self.paths.contains_key(&id) {
                continue;
            }
            let Some(children) = children else {
                let tree = match self.repo.load_tree(id) {
                    Ok(tree) => tree,
                    // A lost tree is the walk's to report; it adds nothing to the bound.
                    Err(e) if matches!(e.kind, ErrorKind::Corrupt | ErrorKind::NotFound) => {
                        self.paths.insert(id, 0);
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                self.distinct += tree.nodes.len() as u64;
                let children: Vec<Option<TreeId>> = tree.nodes.iter().map(|n| n.subtree).collect();
                let pending: Vec<TreeId> = children
                    .iter()
                    .flatten()
                    .filter(|c| !self.paths.contains_key(c))
                    .copied()
                    .collect();
                stack.push((id, Some(children)));
                stack.extend(pending.into_iter().map(|c| (c, None)));
                continue;
            };
            let n = children.iter().fold(0u64, |n, child| {
                let below = child.map_or(0, |c| self.paths[&c]);
                n.saturating_add(1).saturating_add(below)
            });
            self.paths.insert(id, n);
        }
        Ok(self.paths[&root])
    }
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
    let mut budget = Budget::new(&[tree]);
    walk_at(repo, tree, base, depth_of(base), &mut budget, f)
}

fn walk_at(
    repo: &dyn BlobStore,
    id: TreeId,
    base: &Path,
    depth: usize,
    budget: &mut Budget,
    f: &mut dyn FnMut(&Path, &Node) -> Result<Visit>,
) -> Result<()> {
    check_depth(depth, base)?;
    let tree = repo.load_tree(id)?;
    budget.loaded(repo, id, tree.nodes.len())?;
    for node in &tree.nodes {
        let path = base.join(OsStr::from_bytes(&node.name));
        if f(&path, node)? == Visit::Descend {
            if let Some(sub) = node.subtree {
                walk_at(repo, sub, &path, depth + 1, budget, f)?;
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
        })
        .map_err(|e| Error::new(e.kind, format!("snapshot {}: {e}", id.short())))?;
    }
    Ok(())
}
