//! Index files written by prune and repair, which rewrite the whole index, and prune's
//! condemnation files: a new file each time enough packs or blobs have gathered.
//!
//! Invariant: no file this writes holds records of more than `PACKS_PER_FILE` packs or, beyond
//! its first pack, more than `BLOBS_PER_INDEX` blobs, so every command that reads the index
//! holds a few MiB of it at a time, however small the blobs and however much prune condemns.
//! A condemnation file names the condemned packs whose records it carries (the last one also
//! those without a record), so each condemned pack is named once.

use crate::Result;
use crate::{Repository, BLOBS_PER_INDEX};
use cairn_format::index::{IndexFile, IndexPack};
use cairn_format::{IndexId, PackId};
use std::collections::HashSet;

/// About 4 MiB of index entries at 16 MiB packs of 1 MiB blobs.
const PACKS_PER_FILE: usize = 4096;

/// Whether an index file holds less than half of what a file written here may hold: merging
/// such files makes fewer, merging full ones makes as many again.
pub(crate) fn is_small(file: &IndexFile) -> bool {
    let blobs: usize = file.packs.iter().map(|p| p.blobs.len()).sum();
    blobs < BLOBS_PER_INDEX / 2 && file.packs.len() < PACKS_PER_FILE / 2
}

#[derive(Default)]
pub struct IndexBatch {
    packs: Vec<IndexPack>,
    blobs: usize,
    /// For condemnation files: the packs to condemn that no file has named yet.
    condemn: Option<HashSet<PackId>>,
    /// Each file written, with the packs it condemns.
    written: Vec<(IndexId, Vec<PackId>)>,
}

impl IndexBatch {
    /// A batch of condemnation files that condemn `packs` and carry the records pushed.
    pub fn condemning(packs: &[PackId]) -> IndexBatch {
        IndexBatch {
            condemn: Some(packs.iter().copied().collect()),
            ..IndexBatch::default()
        }
    }

    pub fn push(&mut self, repo: &Repository, pack: IndexPack) -> Result<()> {
        if self.blobs + pack.blobs.len() > BLOBS_PER_INDEX {
            self.cut(repo)?;
        }
        self.blobs += pack.blobs.len();
        self.packs.push(pack);
        if self.packs.len() >= PACKS_PER_FILE {
            self.cut(repo)?;
        }
        Ok(())
    }

    /// Writes what is left; returns every file written and the packs each condemns.
    pub fn finish(mut self, repo: &Repository) -> Result<Vec<(IndexId, Vec<PackId>)>> {
        let condemning = self.condemn.is_some();
        let mut condemned = self.condemned_in_batch();
        if let Some(left) = self.condemn.take() {
            let mut left: Vec<PackId> = left.into_iter().collect();
            left.sort();
            condemned.extend(left);
        }
        // Records of packs condemned before, with nothing to condemn now, need no file: the
        // earlier condemnation carries them.
        if condemning && !condemned.is_empty() || !condemning && !self.packs.is_empty() {
            self.write(repo, condemned)?;
        }
        Ok(self.written)
    }

    fn condemned_in_batch(&mut self) -> Vec<PackId> {
        let Some(condemn) = &mut self.condemn else {
            return Vec::new();
        };
        self.packs
            .iter()
            .map(|p| p.id)
            .filter(|p| condemn.remove(p))
            .collect()
    }

    /// Writes the batch so far, unless it is a condemnation that would condemn nothing: a file
    /// of records alone would put condemned packs back in the index.
    fn cut(&mut self, repo: &Repository) -> Result<()> {
        if self.packs.is_empty() {
            return Ok(());
        }
        let condemned = self.condemned_in_batch();
        if self.condemn.is_some() && condemned.is_empty() {
            return Ok(());
        }
        self.write(repo, condemned)
    }

    fn write(&mut self, repo: &Repository, condemned: Vec<PackId>) -> Result<()> {
        let id = repo.write_index(&IndexFile {
            packs: std::mem::take(&mut self.packs),
            condemned: condemned.clone(),
            ..IndexFile::default()
        })?;
        self.blobs = 0;
        self.written.push((id, condemned));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{InitOptions, OpenOptions};
    use cairn_backend::LocalBackend;
    use cairn_format::index::IndexEntry;
    use cairn_format::key::KdfParams;
    use cairn_format::{BlobId, BlobType, Id, PackId};

    fn pack(n: u32, blobs: usize) -> IndexPack {
        let mut id = [0u8; 32];
        id[..4].copy_from_slice(&n.to_le_bytes());
        IndexPack {
            id: PackId(Id(id)),
            size: 1 << 24,
            blobs: (0..blobs as u32)
                .map(|b| {
                    let mut blob = id;
                    blob[4..8].copy_from_slice(&b.to_le_bytes());
                    IndexEntry {
                        blob: BlobId {
                            kind: BlobType::Data,
                            id: Id(blob),
                        },
                        offset: b * 100,
                        stored_len: 100,
                        raw_len: 200,
                    }
                })
                .collect(),
        }
    }

    /// Prune merges small index files only: merging full ones would make as many again.
    #[test]
    fn a_file_is_small_below_half_of_either_limit() {
        let file = |packs: Vec<IndexPack>| IndexFile {
            supersedes: Vec::new(),
            packs,
            condemned: Vec::new(),
        };
        // A backup's file: 8 packs of 16 blobs.
        assert!(is_small(&file((0..8).map(|n| pack(n, 16)).collect())));
        assert!(is_small(&file(vec![pack(0, BLOBS_PER_INDEX / 2 - 1)])));
        assert!(!is_small(&file(vec![pack(0, BLOBS_PER_INDEX / 2)])));
        // One pack of tiny blobs, beyond the limit: what a file may hold past its first pack.
        assert!(!is_small(&file(vec![pack(0, 4 * BLOBS_PER_INDEX)])));
        let packs = PACKS_PER_FILE as u32 / 2;
        assert!(!is_small(&file((0..packs).map(|n| pack(n, 1)).collect())));
        assert!(is_small(&file((1..packs).map(|n| pack(n, 1)).collect())));
    }

    fn repository(dir: &std::path::Path) -> Repository {
        let backend = LocalBackend::create_layout(&dir.join("repo")).unwrap();
        let opts = InitOptions {
            kdf: KdfParams {
                memory_kib: 64,
                iterations: 1,
                parallelism: 1,
            },
            ..InitOptions::default()
        };
        crate::init(&backend, b"pw", &opts).unwrap();
        Repository::open(
            Box::new(LocalBackend::open(&dir.join("repo"))),
            b"pw",
            &OpenOptions::default(),
        )
        .unwrap()
    }

    /// Each file's pack count and blob count, and the packs it condemns.
    fn shapes(repo: &Repository, files: &[(IndexId, Vec<PackId>)]) -> Vec<(usize, usize, usize)> {
        files
            .iter()
            .map(|(id, condemned)| {
                let file = repo.read_index(*id).unwrap();
                assert_eq!(&file.condemned, condemned);
                let blobs = file.packs.iter().map(|p| p.blobs.len()).sum();
                (file.packs.len(), blobs, condemned.len())
            })
            .collect()
    }

    #[test]
    fn files_stay_small_in_packs_and_in_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let repo = repository(dir.path());
        let mut batch = IndexBatch::default();
        // 5,000 packs of 1 blob fill one file by packs; then 3 packs of 40,000 blobs take a
        // file each beyond the blob limit; one pack larger than the limit still gets written.
        for n in 0..5000 {
            batch.push(&repo, pack(n, 1)).unwrap();
        }
        for n in 5000..5003 {
            batch.push(&repo, pack(n, 40_000)).unwrap();
        }
        batch.push(&repo, pack(5003, 70_000)).unwrap();
        let files = batch.finish(&repo).unwrap();
        assert_eq!(
            shapes(&repo, &files),
            [
                (4096, 4096, 0),
                (905, 40_904, 0),
                (1, 40_000, 0),
                (1, 40_000, 0),
                (1, 70_000, 0)
            ]
        );
        assert!(IndexBatch::default().finish(&repo).unwrap().is_empty());
    }

    #[test]
    fn condemnations_are_cut_too_and_name_each_pack_once() {
        let dir = tempfile::tempdir().unwrap();
        let repo = repository(dir.path());
        // Packs 0..4 are condemned now; pack 9 was condemned before (a record with nothing to
        // condemn) and pack 7 has no record.
        let condemn: Vec<PackId> = [0, 1, 2, 3, 7].iter().map(|n| pack(*n, 0).id).collect();
        let mut batch = IndexBatch::condemning(&condemn);
        batch.push(&repo, pack(9, 50_000)).unwrap();
        // Would overflow, but the batch holds nothing condemned now: it is not cut yet.
        batch.push(&repo, pack(0, 50_000)).unwrap();
        for n in 1..4 {
            batch.push(&repo, pack(n, 40_000)).unwrap();
        }
        let files = batch.finish(&repo).unwrap();
        assert_eq!(
            shapes(&repo, &files),
            [
                (2, 100_000, 1),
                (1, 40_000, 1),
                (1, 40_000, 1),
                (1, 40_000, 2)
            ]
        );
        let named: Vec<PackId> = files.iter().flat_map(|(_, c)| c.clone()).collect();
        assert_eq!(named.len(), 5);
        assert!(condemn.iter().all(|p| named.contains(p)));
        assert_eq!(files[3].1.last(), Some(&pack(7, 0).id));

        // Only records of packs condemned before: no file at all.
        let mut batch = IndexBatch::condemning(&[]);
        batch.push(&repo, pack(9, 10)).unwrap();
        assert!(batch.finish(&repo).unwrap().is_empty());
    }
}
