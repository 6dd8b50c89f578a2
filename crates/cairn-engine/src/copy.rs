//! `copy`: a snapshot of one repository stored again in another, which has keys of its own.
//! Blob ids are keyed hashes (repo-format.md, "Blobs"), so every blob is renamed on the way:
//! data blobs are read, verified and saved again (the target stores only those it lacks), and
//! trees are rewritten bottom-up with the new ids. Time, host, user, paths, tags, kind and
//! summary are kept; the parent is the target's copy of the source's parent, if it has one.
//!
//! Invariant: a target id is only ever learned from content the target saved itself, or from
//! a copy made earlier whose trees have the same shape (`learn`), never guessed, and a learned
//! id is used only once the target's index shows the blob (a prune may have deleted it since);
//! the target's snapshot is saved last, after every blob it reaches (`BlobStore::save_snapshot`).

use crate::Result;
use cairn_format::snapshot::Snapshot;
use cairn_format::tree::{Node, Tree, MAX_TREE_DEPTH};
use cairn_format::{DataId, SnapshotId, TreeId};
use cairn_repo::{BlobStore, Error};
use rayon::prelude::*;
use std::collections::{HashMap, HashSet};

/// Source ids of data blobs and the ids the same chunks have in the target, gathered over one
/// run of `copy` so that what several snapshots share is read once.
#[derive(Default)]
pub struct Renamed {
    data: HashMap<DataId, DataId>,
}

/// What copying one snapshot read and stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyOutcome {
    pub id: SnapshotId,
    pub snapshot: Snapshot,
    /// Data blobs read from the source (those no earlier copy in this run had renamed).
    pub blobs_read: u64,
    /// Blobs the target lacked, and their size as stored there and before compression.
    pub blobs_added: u64,
    pub bytes_added: u64,
    pub raw_bytes_added: u64,
}

/// Whether `a` (in one repository) and `b` (in another) are the same snapshot: copies keep
/// every one of these fields, and two backups do not share them down to the nanosecond.
pub fn same_snapshot(a: &Snapshot, b: &Snapshot) -> bool {
    a.time == b.time
        && a.host == b.host
        && a.user == b.user
        && a.paths == b.paths
        && a.tags == b.tags
        && a.kind == b.kind
        && a.summary.total_files == b.summary.total_files
        && a.summary.total_bytes == b.summary.total_bytes
}

/// Learns the renaming from a snapshot copied earlier: `source` and `target` are the root trees
/// of a snapshot and its copy. Every node must match its counterpart in name, kind, size and
/// chunk count, or nothing is learned (and the next snapshot is copied by reading it). Trees
/// that later snapshots share with this one are then not read from the source again.
pub fn learn(
    source: &dyn BlobStore,
    target: &dyn BlobStore,
    source_tree: TreeId,
    target_tree: TreeId,
    renamed: &mut Renamed,
) -> Result<()> {
    let mut found = HashMap::new();
    let mut walked = HashSet::new();
    let mut stack = vec![(source_tree, target_tree)];
    while let Some((from, to)) = stack.pop() {
        if !walked.insert(from) {
            continue;
        }
        let (a, b) = (source.load_tree(from)?, target.load_tree(to)?);
        let alike = |x: &Node, y: &Node| {
            x.name == y.name
                && x.kind == y.kind
                && x.size == y.size
                && x.content.len() == y.content.len()
                && x.subtree.is_some() == y.subtree.is_some()
        };
        if a.nodes.len() != b.nodes.len() || !a.nodes.iter().zip(&b.nodes).all(|(x, y)| alike(x, y))
        {
            return Ok(());
        }
        for (x, y) in a.nodes.iter().zip(&b.nodes) {
            found.extend(x.content.iter().copied().zip(y.content.iter().copied()));
            if let (Some(s), Some(t)) = (x.subtree, y.subtree) {
                stack.push((s, t));
            }
        }
    }
    renamed.data.extend(found);
    Ok(())
}

/// Copies `snapshot` of `source` into `target`, with `parent` (an id in the target) as its
/// parent. One call is one session of the target's: blobs it finds there are checked in its
/// index during the call.
pub fn copy_snapshot(
    source: &dyn BlobStore,
    target: &dyn BlobStore,
    snapshot: &Snapshot,
    parent: Option<SnapshotId>,
    renamed: &mut Renamed,
) -> Result<CopyOutcome> {
    let before = target.write_stats();
    let mut copying = Copying {
        source,
        target,
        renamed,
        trees: HashMap::new(),
        stored: HashSet::new(),
        blobs_read: 0,
    };
    let tree = copying.tree(snapshot.tree, 0)?;
    let blobs_read = copying.blobs_read;
    let copy = Snapshot {
        tree,
        parent,
        ..snapshot.clone()
    };
    let id = target.save_snapshot(&copy)?;
    let after = target.write_stats();
    Ok(CopyOutcome {
        id,
        snapshot: copy,
        blobs_read,
        blobs_added: after.blobs - before.blobs,
        bytes_added: after.stored_bytes - before.stored_bytes,
        raw_bytes_added: after.raw_bytes - before.raw_bytes,
    })
}

/// One snapshot's copy: the trees copied so far and the target blobs known stored, both only
/// for this session.
struct Copying<'a> {
    source: &'a dyn BlobStore,
    target: &'a dyn BlobStore,
    renamed: &'a mut Renamed,
    trees: HashMap<TreeId, TreeId>,
    stored: HashSet<DataId>,
    blobs_read: u64,
}

impl Copying<'_> {
    fn tree(&mut self, id: TreeId, depth: usize) -> Result<TreeId> {
        if let Some(to) = self.trees.get(&id) {
            return Ok(*to);
        }
        if depth > MAX_TREE_DEPTH {
            return Err(Error::corrupt(format!(
                "tree {} lies deeper than {MAX_TREE_DEPTH} directories",
                id.short()
            )));
        }
        let mut tree = self.source.load_tree(id)?;
        let mut chunks: Vec<DataId> = tree
            .nodes
            .iter()
            .flat_map(|n| n.content.iter().copied())
            .collect();
        chunks.sort_unstable();
        chunks.dedup();
        self.forget_unstored(&chunks)?;
        // The chunks of every file of this directory at once, so that the cores share them.
        let missing: Vec<DataId> = chunks
            .into_iter()
            .filter(|c| !self.renamed.data.contains_key(c))
            .collect();
        let (source, target) = (self.source, self.target);
        let copied: Vec<(DataId, DataId)> = missing
            .par_iter()
            .map(|&from| {
                let plaintext = source.load_data(from)?;
                let (to, _) = target.save_data(&plaintext)?;
                Ok((from, to))
            })
            .collect::<Result<_>>()?;
        self.blobs_read += copied.len() as u64;
        self.stored.extend(copied.iter().map(|(_, to)| *to));
        self.renamed.data.extend(copied);
        for node in &mut tree.nodes {
            for c in &mut node.content {
                *c = self.renamed.data[c];
            }
            if let Some(sub) = node.subtree {
                node.subtree = Some(self.tree(sub, depth + 1)?);
            }
        }
        let (to, _) = self.target.save_tree(&Tree { nodes: tree.nodes })?;
        self.trees.insert(id, to);
        Ok(to)
    }

    /// Drops from the renaming every chunk of `chunks` whose target blob this session has not
    /// seen stored and the target's index lacks, so that it is copied again.
    fn forget_unstored(&mut self, chunks: &[DataId]) -> Result<()> {
        let unchecked: Vec<(DataId, DataId)> = chunks
            .iter()
            .filter_map(|c| self.renamed.data.get(c).map(|to| (*c, *to)))
            .filter(|(_, to)| !self.stored.contains(to))
            .collect();
        if unchecked.is_empty() {
            return Ok(());
        }
        let targets: Vec<DataId> = unchecked.iter().map(|(_, to)| *to).collect();
        for ((from, to), at) in unchecked.iter().zip(self.target.locate(&targets)?) {
            if at.is_some() {
                self.stored.insert(*to);
            } else {
                self.renamed.data.remove(from);
            }
        }
        Ok(())
    }
}
