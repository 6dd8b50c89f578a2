//! `stats`: what snapshots take restored and stored. Snapshots are walked oldest first; what a
//! snapshot *added* is every blob (data and tree) it reaches that no earlier snapshot reaches,
//! which is what `backup` reports as added when the repository holds nothing unreachable
//! (both count stored bytes as in the index, and raw bytes before compression).
//!
//! Invariant: nothing is written; a tree is read once however many snapshots share it, so the
//! walk costs what `check` costs without reading data.

use crate::Result;
use cairn_format::snapshot::Snapshot;
use cairn_format::tree::MAX_TREE_DEPTH;
use cairn_format::{BlobId, SnapshotId, TreeId};
use cairn_repo::{Error, ErrorKind, Repository};
use std::collections::{HashMap, HashSet};

/// Blobs and their size as stored and before compression.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bytes {
    pub blobs: u64,
    pub stored: u64,
    pub raw: u64,
}

impl Bytes {
    pub fn add(&mut self, other: Bytes) {
        self.blobs += other.blobs;
        self.stored += other.stored;
        self.raw += other.raw;
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotStats {
    pub id: SnapshotId,
    /// Regular files and their bytes: what a restore writes.
    pub files: u64,
    pub restored_bytes: u64,
    /// What this snapshot reaches that no earlier snapshot does.
    pub added: Bytes,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// One for each snapshot given, in the same order.
    pub snapshots: Vec<SnapshotStats>,
    /// Over the selected snapshots: what restoring each of them would write, summed.
    pub files: u64,
    pub restored_bytes: u64,
    /// The distinct blobs the selected snapshots reach: data blobs (the deduplicated content)
    /// and tree blobs apart.
    pub data: Bytes,
    pub trees: Bytes,
    /// Blobs reached that the index does not hold, a lost tree counting as one whatever it
    /// held (`check` says more).
    pub missing_blobs: u64,
}

/// Walks `snapshots` (oldest first); totals count those whose `selected` is true.
pub fn stats(
    repo: &Repository,
    snapshots: &[(SnapshotId, Snapshot)],
    selected: &[bool],
) -> Result<Stats> {
    let mut out = Stats::default();
    let mut walk = Walk::new(repo);
    for (id, snapshot) in snapshots {
        let (files, restored_bytes) = walk
            .tree(snapshot.tree, 0)
            .map_err(|e| Error::new(e.kind, format!("snapshot {}: {}", id.short(), e.message)))?;
        let (mut added, trees) = walk.sizes()?;
        added.add(trees);
        out.snapshots.push(SnapshotStats {
            id: *id,
            files,
            restored_bytes,
            added,
        });
    }
    let chosen = |i: &usize| selected.get(*i).copied().unwrap_or(false);
    for s in (0..out.snapshots.len())
        .filter(chosen)
        .map(|i| &out.snapshots[i])
    {
        out.files = out.files.saturating_add(s.files);
        out.restored_bytes = out.restored_bytes.saturating_add(s.restored_bytes);
    }
    // What the selected snapshots reach together, whoever added it: the walk over all of
    // them, or one of their own when only some are selected.
    let walk = if (0..snapshots.len()).all(|i| chosen(&i)) {
        walk
    } else {
        let mut own = Walk::new(repo);
        for i in (0..snapshots.len()).filter(chosen) {
            own.tree(snapshots[i].1.tree, 0)?;
            own.sizes()?;
        }
        own
    };
    out.data = walk.data_total;
    out.trees = walk.tree_total;
    out.missing_blobs = walk.missing;
    Ok(out)
}

/// One walk: the trees already read (with the files and bytes below each), and the blobs found
/// since the last `sizes`.
struct Walk<'r> {
    repo: &'r Repository,
    trees: HashMap<TreeId, (u64, u64)>,
    seen: HashSet<BlobId>,
    new: Vec<BlobId>,
    data_total: Bytes,
    tree_total: Bytes,
    missing: u64,
}

impl<'r> Walk<'r> {
    fn new(repo: &'r Repository) -> Walk<'r> {
        Walk {
            repo,
            trees: HashMap::new(),
            seen: HashSet::new(),
            new: Vec::new(),
            data_total: Bytes::default(),
            tree_total: Bytes::default(),
            missing: 0,
        }
    }

    /// The files and bytes below `id`; every blob not seen before goes to `new`.
    fn tree(&mut self, id: TreeId, depth: usize) -> Result<(u64, u64)> {
        if let Some(size) = self.trees.get(&id) {
            return Ok(*size);
        }
        if depth > MAX_TREE_DEPTH {
            return Err(Error::corrupt(format!(
                "tree {} lies deeper than {MAX_TREE_DEPTH} directories",
                id.short()
            )));
        }
        let tree = match self.repo.load_tree(id) {
            Ok(tree) => tree,
            // What is below a lost tree is not counted; `check` says which files it held.
            Err(e) if e.kind == ErrorKind::NotFound => {
                self.seen.insert(id.into());
                self.missing += 1;
                self.trees.insert(id, (0, 0));
                return Ok((0, 0));
            }
            Err(e) => return Err(e),
        };
        if self.seen.insert(id.into()) {
            self.new.push(id.into());
        }
        let (mut files, mut bytes) = (0u64, 0u64);
        for node in &tree.nodes {
            if node.kind == cairn_format::tree::NodeKind::File {
                // Saturating: a crafted snapshot reaching one subtree along 2^64 paths holds
                // more files than a u64 counts.
                files = files.saturating_add(1);
                bytes = bytes.saturating_add(node.size);
            }
            for c in &node.content {
                if self.seen.insert((*c).into()) {
                    self.new.push((*c).into());
                }
            }
            if let Some(sub) = node.subtree {
                let (f, b) = self.tree(sub, depth + 1)?;
                files = files.saturating_add(f);
                bytes = bytes.saturating_add(b);
            }
        }
        self.trees.insert(id, (files, bytes));
        Ok((files, bytes))
    }

    /// The sizes of the data and tree blobs found since the last call, added to the walk's
    /// totals as well.
    fn sizes(&mut self) -> Result<(Bytes, Bytes)> {
        let found = std::mem::take(&mut self.new);
        let (mut data, mut trees) = (Bytes::default(), Bytes::default());
        for batch in found.chunks(4096) {
            for (blob, loc) in batch.iter().zip(self.repo.lookup_many(batch)?) {
                let Some(loc) = loc else {
                    self.missing += 1;
                    continue;
                };
                let b = Bytes {
                    blobs: 1,
                    stored: u64::from(loc.stored_len),
                    raw: u64::from(loc.raw_len),
                };
                match blob.kind {
                    cairn_format::BlobType::Data => data.add(b),
                    cairn_format::BlobType::Tree => trees.add(b),
                }
            }
        }
        self.data_total.add(data);
        self.tree_total.add(trees);
        Ok((data, trees))
    }
}
