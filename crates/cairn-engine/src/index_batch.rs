//! Index files written by prune and repair, which rewrite the whole index: a new file each
//! time enough packs or blobs have gathered.
//!
//! Invariant: no file this writes names more than `PACKS_PER_FILE` packs or, beyond its first
//! pack, more than `BLOBS_PER_INDEX` blobs, so every command that reads the index holds a few
//! MiB of it at a time, however small the blobs.

use crate::Result;
use cairn_format::index::{IndexFile, IndexPack};
use cairn_format::IndexId;
use cairn_repo::{Repository, BLOBS_PER_INDEX};

/// About 4 MiB of index entries at 16 MiB packs of 1 MiB blobs.
const PACKS_PER_FILE: usize = 4096;

#[derive(Default)]
pub struct IndexBatch {
    packs: Vec<IndexPack>,
    blobs: usize,
    written: Vec<IndexId>,
}

impl IndexBatch {
    pub fn push(&mut self, repo: &Repository, pack: IndexPack) -> Result<()> {
        if !self.packs.is_empty() && self.blobs + pack.blobs.len() > BLOBS_PER_INDEX {
            self.write(repo)?;
        }
        self.blobs += pack.blobs.len();
        self.packs.push(pack);
        if self.packs.len() == PACKS_PER_FILE {
            self.write(repo)?;
        }
        Ok(())
    }

    /// Writes what is left; returns every file written.
    pub fn finish(mut self, repo: &Repository) -> Result<Vec<IndexId>> {
        if !self.packs.is_empty() {
            self.write(repo)?;
        }
        Ok(self.written)
    }

    fn write(&mut self, repo: &Repository) -> Result<()> {
        let id = repo.write_index(&IndexFile {
            packs: std::mem::take(&mut self.packs),
            ..IndexFile::default()
        })?;
        self.blobs = 0;
        self.written.push(id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_format::index::IndexEntry;
    use cairn_format::{BlobId, BlobType, Id, PackId};
    use cairn_repo::{InitOptions, KdfParams, LocalBackend, OpenOptions};

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

    #[test]
    fn files_stay_small_in_packs_and_in_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::create_layout(&dir.path().join("repo")).unwrap();
        let opts = InitOptions {
            kdf: KdfParams {
                memory_kib: 64,
                iterations: 1,
                parallelism: 1,
            },
            ..InitOptions::default()
        };
        cairn_repo::init(&backend, b"pw", &opts).unwrap();
        let repo = Repository::open(
            Box::new(LocalBackend::open(&dir.path().join("repo"))),
            b"pw",
            &OpenOptions::default(),
        )
        .unwrap();
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
        let shapes: Vec<(usize, usize)> = files
            .iter()
            .map(|id| {
                let file = repo.read_index(*id).unwrap();
                let blobs = file.packs.iter().map(|p| p.blobs.len()).sum();
                (file.packs.len(), blobs)
            })
            .collect();
        assert_eq!(
            shapes,
            [
                (4096, 4096),
                (905, 40_904),
                (1, 40_000),
                (1, 40_000),
                (1, 70_000)
            ]
        );
    }
}
