//! Locating a set of blobs as large as the index (every blob `check` reaches): the blobs go to
//! nameless scratch files in partitions by the leading bits of their ids, then each partition
//! is sorted and located by one walk in key order over the index, instead of a descent of the
//! index's B-tree for each blob (10 million descents took 40 s).
//!
//! Invariant: memory holds the keys of one partition per thread, at most about
//! `PER_PARTITION` when the index's size was a fair guess of how many blobs come.

use crate::cache::Location;
use crate::cores::on_every_core;
use crate::gc::spill::Spill;
use crate::{Repository, Result};
use cairn_format::BlobId;
use std::path::Path;

/// Blobs per partition the index's size leads to expect: 16 MiB of keys.
const PER_PARTITION: u64 = 1 << 19;

/// Blobs to locate, pushed in any order and as often as reached.
pub struct BlobsToLocate {
    bits: u32,
    parts: Vec<Spill>,
}

impl BlobsToLocate {
    /// Partitions enough for about `expected` distinct blobs, spilling to files in `dir`.
    pub fn new(dir: &Path, expected: u64) -> BlobsToLocate {
        let partitions = expected.div_ceil(PER_PARTITION).max(1).next_power_of_two();
        BlobsToLocate {
            bits: partitions.trailing_zeros(),
            parts: Spill::partitions(dir, 33, partitions),
        }
    }

    pub fn push(&mut self, blob: BlobId) -> Result<()> {
        // Blob ids are keyed hashes, so their leading bits spread blobs evenly.
        let lead = u64::from_be_bytes(blob.id.0[..8].try_into().unwrap());
        let part = lead.checked_shr(64 - self.bits).unwrap_or(0) as usize;
        self.parts[part].push(&blob.to_bytes())
    }

    /// Locates every blob pushed, once however often it was pushed, partitions on all cores:
    /// `f` gets each blob and where the index places it (`Repository::lookup_many`'s answer),
    /// and what it returns is kept.
    pub fn locate<T: Send>(
        self,
        repo: &Repository,
        f: impl Fn(BlobId, Option<Location>) -> Option<T> + Sync,
    ) -> Result<Vec<T>> {
        let kept = on_every_core(self.parts, |mut part| {
            let mut keys: Vec<[u8; 33]> = Vec::with_capacity(part.len() as usize);
            part.for_each(|r| keys.push(r.try_into().unwrap()))?;
            drop(part);
            keys.sort_unstable();
            keys.dedup();
            let mut mine = Vec::new();
            // A walk per slice: each starts with one descent, and what it answers stays small.
            for slice in keys.chunks(1 << 16) {
                let blobs: Vec<BlobId> = slice.iter().filter_map(BlobId::from_bytes).collect();
                let found = repo.lookup_sorted(&blobs)?;
                mine.extend(
                    blobs
                        .into_iter()
                        .zip(found)
                        .filter_map(|(blob, loc)| f(blob, loc)),
                );
            }
            Ok(mine)
        })?;
        Ok(kept.into_iter().flatten().collect())
    }
}
