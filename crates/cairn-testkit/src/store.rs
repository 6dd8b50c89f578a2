//! `MemStore`: a `BlobStore` on maps in memory, for testing the content engines (archiver,
//! restorer, walk, diff, dump) without keys, packs or files. Blobs are laid out in fake packs of
//! a few blobs each, so readers that group by pack are exercised; ids are BLAKE3, keyed or not.
//!
//! Invariant: `read_pack_blobs` verifies every blob against its id, as a repository does, so a
//! test that damages a blob (`damage`) sees what a reader of a damaged pack would.

use cairn_chunker::Chunker;
use cairn_format::snapshot::Snapshot;
use cairn_format::tree::Tree;
use cairn_format::{DataId, Id, PackId, SnapshotId, TreeId};
use cairn_repo::{BlobStore, Error, ErrorKind, Location, Result, WriteStats};
use std::collections::HashMap;
use std::sync::Mutex;

/// Blobs per fake pack.
const PER_PACK: usize = 4;

#[derive(Default)]
struct Inner {
    /// Fake packs: the plaintext of their blobs, one after the other.
    packs: Vec<Vec<u8>>,
    data: HashMap<DataId, Location>,
    trees: HashMap<TreeId, Vec<u8>>,
    snapshots: Vec<(SnapshotId, Snapshot)>,
    stats: WriteStats,
}

/// A blob store in memory with small chunks (min 256 bytes, average 1 KiB, max 4 KiB), so a file
/// of a few KiB already has several.
#[derive(Default)]
pub struct MemStore {
    inner: Mutex<Inner>,
    /// Names blobs by keyed BLAKE3, as a repository does, so that two stores name the same
    /// content differently (for `copy`); unkeyed when absent.
    key: Option<[u8; 32]>,
}

fn hash(bytes: &[u8]) -> Id {
    Id(*blake3::hash(bytes).as_bytes())
}

fn pack_id(n: usize) -> PackId {
    PackId(hash(&(n as u64).to_le_bytes()))
}

impl MemStore {
    /// A store whose blob ids are keyed with `key`.
    pub fn keyed(key: [u8; 32]) -> MemStore {
        MemStore {
            key: Some(key),
            ..MemStore::default()
        }
    }

    fn blob_id(&self, bytes: &[u8]) -> Id {
        match &self.key {
            Some(key) => Id(*blake3::keyed_hash(key, bytes).as_bytes()),
            None => hash(bytes),
        }
    }

    /// Every snapshot saved, in order.
    pub fn snapshots(&self) -> Vec<(SnapshotId, Snapshot)> {
        self.inner.lock().unwrap().snapshots.clone()
    }

    /// How many data blobs are stored.
    pub fn data_blobs(&self) -> usize {
        self.inner.lock().unwrap().data.len()
    }

    /// Flips a bit of a stored data blob, as damage in a pack would.
    pub fn damage(&self, id: DataId) {
        let mut inner = self.inner.lock().unwrap();
        let loc = inner.data[&id];
        let n = pack_index(&inner, &loc.pack).expect("a stored blob's pack exists");
        inner.packs[n][loc.offset as usize] ^= 1;
    }
}

fn pack_index(inner: &Inner, pack: &PackId) -> Option<usize> {
    (0..inner.packs.len()).find(|&n| pack_id(n) == *pack)
}

impl BlobStore for MemStore {
    fn chunker(&self) -> Chunker {
        // Any fixed table works: these tests ask how content is cut, not which key cut it.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let gear = std::array::from_fn(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        });
        Chunker::new(gear, 256, 1024, 4096)
    }

    fn data_id(&self, plaintext: &[u8]) -> DataId {
        DataId(self.blob_id(plaintext))
    }

    fn has_data(&self, id: DataId) -> Result<bool> {
        Ok(self.inner.lock().unwrap().data.contains_key(&id))
    }

    fn save_data(&self, plaintext: &[u8]) -> Result<(DataId, bool)> {
        let id = self.data_id(plaintext);
        let mut inner = self.inner.lock().unwrap();
        if inner.data.contains_key(&id) {
            return Ok((id, false));
        }
        if inner.packs.is_empty() || inner.data.len().is_multiple_of(PER_PACK) {
            inner.packs.push(Vec::new());
        }
        let n = inner.packs.len() - 1;
        let len = plaintext.len() as u32;
        let loc = Location {
            pack: pack_id(n),
            offset: inner.packs[n].len() as u32,
            stored_len: len,
            raw_len: len,
        };
        inner.packs[n].extend_from_slice(plaintext);
        inner.data.insert(id, loc);
        inner.stats.blobs += 1;
        inner.stats.stored_bytes += u64::from(len);
        inner.stats.raw_bytes += u64::from(len);
        Ok((id, true))
    }

    fn save_tree(&self, tree: &Tree) -> Result<(TreeId, bool)> {
        let bytes = tree.encode();
        let id = TreeId(self.blob_id(&bytes));
        let mut inner = self.inner.lock().unwrap();
        let new = inner.trees.insert(id, bytes).is_none();
        Ok((id, new))
    }

    fn load_data(&self, id: DataId) -> Result<Vec<u8>> {
        let loc = self.locate(&[id])?[0].ok_or_else(|| {
            Error::new(ErrorKind::NotFound, format!("data blob {id:?} is missing"))
        })?;
        let mut out = Err(Error::new(ErrorKind::NotFound, "nothing read"));
        self.read_pack_blobs(&loc.pack, &[(id, loc)], &mut |_, r| out = r)?;
        out
    }

    fn load_tree(&self, id: TreeId) -> Result<Tree> {
        let inner = self.inner.lock().unwrap();
        let bytes = inner.trees.get(&id).ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("tree {} is missing", id.short()),
            )
        })?;
        Tree::decode(bytes).map_err(|e| Error::corrupt(format!("tree {}: {e}", id.short())))
    }

    fn locate(&self, ids: &[DataId]) -> Result<Vec<Option<Location>>> {
        let inner = self.inner.lock().unwrap();
        Ok(ids.iter().map(|id| inner.data.get(id).copied()).collect())
    }

    fn read_pack_blobs(
        &self,
        pack: &PackId,
        blobs: &[(DataId, Location)],
        f: &mut dyn FnMut(usize, Result<Vec<u8>>),
    ) -> Result<()> {
        let read: Vec<Vec<u8>> = {
            let inner = self.inner.lock().unwrap();
            let n = pack_index(&inner, pack).ok_or_else(|| {
                Error::new(
                    ErrorKind::NotFound,
                    format!("pack {} is missing", pack.short()),
                )
            })?;
            blobs
                .iter()
                .map(|(_, loc)| {
                    let at = loc.offset as usize;
                    inner.packs[n][at..at + loc.stored_len as usize].to_vec()
                })
                .collect()
        };
        for (i, (plain, (id, _))) in read.into_iter().zip(blobs).enumerate() {
            if self.data_id(&plain) == *id {
                f(i, Ok(plain));
            } else {
                f(
                    i,
                    Err(Error::corrupt(format!(
                        "data blob {} does not match its id",
                        id.short()
                    ))),
                );
            }
        }
        Ok(())
    }

    fn save_snapshot(&self, snapshot: &Snapshot) -> Result<SnapshotId> {
        let id = SnapshotId(hash(&snapshot.encode()));
        self.inner
            .lock()
            .unwrap()
            .snapshots
            .push((id, snapshot.clone()));
        Ok(id)
    }

    fn write_stats(&self) -> WriteStats {
        self.inner.lock().unwrap().stats
    }
}
