//! `BlobStore`: all that the engines which move content (backup, restore, walk, diff, dump) may
//! ask of a repository. `Repository` implements it; tests implement it on a map in memory
//! (cairn-testkit's `MemStore`), so those engines are tested without keys, packs or files.
//!
//! Invariant: nothing here exposes keys, the index, pack headers or garbage collection; a blob
//! is named by its typed id and read back verified, or not at all.

use crate::{Location, Repository, Result, WriteStats};
use cairn_chunker::Chunker;
use cairn_format::snapshot::Snapshot;
use cairn_format::tree::Tree;
use cairn_format::{BlobId, BlobType, DataId, PackId, SnapshotId, TreeId};

/// Blobs and snapshots, as the content engines see a repository.
pub trait BlobStore: Sync {
    /// The chunker this repository's data is cut with: a key-derived gear table and the
    /// configured sizes, so that equal content cuts equally on every host.
    fn chunker(&self) -> Chunker;
    /// The id `plaintext` has as a data blob: what restored content is verified against.
    fn data_id(&self, plaintext: &[u8]) -> DataId;
    /// Whether a data blob is stored (or being stored by this process).
    fn has_data(&self, id: DataId) -> Result<bool>;
    /// Stores a chunk of file content unless it is there already; returns its id and whether
    /// it was new.
    fn save_data(&self, plaintext: &[u8]) -> Result<(DataId, bool)>;
    fn save_tree(&self, tree: &Tree) -> Result<(TreeId, bool)>;
    fn load_data(&self, id: DataId) -> Result<Vec<u8>>;
    fn load_tree(&self, id: TreeId) -> Result<Tree>;
    /// Where each blob is stored, `None` for one the repository lacks: what a reader of many
    /// blobs groups its reads by.
    fn locate(&self, ids: &[DataId]) -> Result<Vec<Option<Location>>>;
    /// Reads the part of `pack` that holds `blobs` (located by `locate`, sorted by offset) in one
    /// read, and hands each blob's verified plaintext, or why it is not, to `f` with its index
    /// in `blobs`. An error is returned only when the pack cannot be read at all.
    fn read_pack_blobs(
        &self,
        pack: &PackId,
        blobs: &[(DataId, Location)],
        f: &mut dyn FnMut(usize, Result<Vec<u8>>),
    ) -> Result<()>;
    /// Makes everything saved so far durable, then the snapshot.
    fn save_snapshot(&self, snapshot: &Snapshot) -> Result<SnapshotId>;
    /// What this process stored so far.
    fn write_stats(&self) -> WriteStats;
}

impl BlobStore for Repository {
    fn chunker(&self) -> Chunker {
        let cfg = self.config();
        Chunker::new(
            self.gear_table(),
            cfg.chunk_min as usize,
            cfg.chunk_avg as usize,
            cfg.chunk_max as usize,
        )
    }

    fn data_id(&self, plaintext: &[u8]) -> DataId {
        DataId(self.blob_id(plaintext))
    }

    fn has_data(&self, id: DataId) -> Result<bool> {
        self.has_blob(&BlobId::from(id))
    }

    fn save_data(&self, plaintext: &[u8]) -> Result<(DataId, bool)> {
        let id = self.blob_id(plaintext);
        let new = self.save_blob(BlobType::Data, id, plaintext)?;
        Ok((DataId(id), new))
    }

    fn save_tree(&self, tree: &Tree) -> Result<(TreeId, bool)> {
        Repository::save_tree(self, tree)
    }

    fn load_data(&self, id: DataId) -> Result<Vec<u8>> {
        self.load_blob(&BlobId::from(id))
    }

    fn load_tree(&self, id: TreeId) -> Result<Tree> {
        Repository::load_tree(self, id)
    }

    fn locate(&self, ids: &[DataId]) -> Result<Vec<Option<Location>>> {
        let blobs: Vec<BlobId> = ids.iter().map(|&id| BlobId::from(id)).collect();
        self.lookup_many(&blobs)
    }

    fn read_pack_blobs(
        &self,
        pack: &PackId,
        blobs: &[(DataId, Location)],
        f: &mut dyn FnMut(usize, Result<Vec<u8>>),
    ) -> Result<()> {
        let Some(start) = blobs.iter().map(|(_, l)| u64::from(l.offset)).min() else {
            return Ok(());
        };
        let end = blobs
            .iter()
            .map(|(_, l)| u64::from(l.offset) + u64::from(l.stored_len))
            .max()
            .unwrap_or(start);
        let bytes = self.read_pack_range(pack, start, end - start)?;
        for (i, (id, loc)) in blobs.iter().enumerate() {
            let at = (u64::from(loc.offset) - start) as usize;
            let blob = BlobId::from(*id);
            let opened = match bytes.get(at..at + loc.stored_len as usize) {
                Some(stored) => self.open_blob(&blob, stored, loc.raw_len),
                None => Err(crate::Error::corrupt(format!(
                    "{blob} lies beyond what pack {} returned",
                    pack.short()
                ))),
            };
            f(i, opened);
        }
        Ok(())
    }

    fn save_snapshot(&self, snapshot: &Snapshot) -> Result<SnapshotId> {
        Repository::save_snapshot(self, snapshot)
    }

    fn write_stats(&self) -> WriteStats {
        Repository::write_stats(self)
    }
}
