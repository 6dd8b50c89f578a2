//! Which copy of each used blob prune keeps (repo-format.md, "Garbage collection", step 2).
//!
//! Invariant: what prune holds here grows with packs, never with blobs. The used blobs and the
//! packs' entries go to nameless scratch files in partitions by blob id, and are matched one
//! partition at a time, so memory stays flat however large the index grows.

use super::spill::Spill;
use crate::cores::on_every_core;
use crate::Result;
use cairn_format::index::IndexPack;
use cairn_format::{BlobId, PackId};
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A pack prune has looked at: what it holds and how much of that is used.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PackUse {
    pub used_blobs: u64,
    /// The pack's bytes less its header: more than the indexed blobs' bytes when a blob was
    /// left out of the index (`repair index --read-data` drops damaged ones).
    pub blob_bytes: u64,
    pub used_bytes: u64,
}

/// The packs prune has looked at, numbered in the order in which they claim blobs.
#[derive(Default)]
pub(crate) struct Packs {
    pub numbers: HashMap<PackId, u32>,
    pub list: Vec<(PackId, PackUse)>,
}

impl Packs {
    /// Numbers a pack not seen before.
    pub fn add(&mut self, pack: &IndexPack) -> Option<u32> {
        if self.numbers.contains_key(&pack.id) {
            return None;
        }
        // A repository of 2^32 packs would be 64 PiB of 16 MiB packs; were it reached, numbers
        // must not wrap onto other packs.
        let number = u32::try_from(self.list.len()).expect("fewer than 2^32 packs");
        let header = cairn_format::pack::header_and_trailer_len(pack.blobs.len());
        let u = PackUse {
            blob_bytes: pack.size.saturating_sub(header),
            ..PackUse::default()
        };
        self.numbers.insert(pack.id, number);
        self.list.push((pack.id, u));
        Some(number)
    }

    pub fn get(&self, pack: &PackId) -> Option<&PackUse> {
        self.numbers.get(pack).map(|n| &self.list[*n as usize].1)
    }
}

/// Used blobs per partition: at about 70 bytes each in a hash set, some 36 MiB is what prune
/// holds of them at once.
const USED_PER_PARTITION: u64 = 1 << 19;

/// A blob key: type byte, then id.
pub(crate) type Key = [u8; 33];

/// An entry in `Claims`: key, pack number, offset, stored length, raw length.
const ENTRY: usize = 33 + 4 + 4 + 4 + 4;

/// Where one copy of a blob is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BlobCopy {
    pub pack: u32,
    pub offset: u32,
    pub stored_len: u32,
    pub raw_len: u32,
}

/// A set of keys hashed by `IdHasher`.
type KeySet = HashSet<SetKey, BuildHasherDefault<IdHasher>>;

/// A key as the sets hold it: two keys compare in a few instructions, where `[u8; 33]` calls
/// `memcmp`.
#[derive(Clone, Copy, PartialEq, Eq)]
struct SetKey {
    /// Bytes 1 to 16 of the key: the first half of the id.
    head: u128,
    tail: u128,
    kind: u8,
}

impl SetKey {
    fn of(key: &[u8]) -> SetKey {
        SetKey {
            kind: key[0],
            head: u128::from_le_bytes(key[1..17].try_into().unwrap()),
            tail: u128::from_le_bytes(key[17..33].try_into().unwrap()),
        }
    }
}

impl Hash for SetKey {
    /// Blob ids are keyed hashes, so eight bytes of one are a hash already: hashing them again
    /// with SipHash was an eighth of a prune at 10 million blobs. The bytes taken (9 to 16 of
    /// the key) lie past those that choose the partition, which are alike within one.
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64((self.head >> 64) as u64);
    }
}

/// Takes a `SetKey`'s hash as it is.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }

    /// Nothing but `SetKey` is hashed here, but a `Hasher` must take any bytes.
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn finish(&self) -> u64 {
        // One multiplication spreads ids that are not hashes (in tests) into the high bits,
        // which the hash table reads too.
        self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

/// The keys in a spill of used blobs, once each.
fn used_keys(used: &mut Spill) -> Result<KeySet> {
    // Sized once, not grown by rehashing; repeats make the spill longer than the set.
    let mut set = KeySet::with_capacity_and_hasher(
        used.len().min(USED_PER_PARTITION) as usize,
        Default::default(),
    );
    used.for_each(|key| {
        set.insert(SetKey::of(key));
    })?;
    Ok(set)
}

fn decode(entry: &[u8]) -> (Key, BlobCopy) {
    let u32_at = |i: usize| u32::from_le_bytes(entry[i..i + 4].try_into().unwrap());
    (
        entry[..33].try_into().unwrap(),
        BlobCopy {
            pack: u32_at(33),
            offset: u32_at(37),
            stored_len: u32_at(41),
            raw_len: u32_at(45),
        },
    )
}

/// The first intact copy, in pack number order, keeps each used blob, so that other copies
/// count as unused and their packs can go.
pub(crate) struct Claims {
    bits: u32,
    /// Per partition: the keys of used blobs, repeats included.
    used: Vec<Spill>,
    /// Per partition: the entries of intact packs, in pack number order.
    entries: Vec<Spill>,
    /// Per partition: a bit per entry, set where the entry keeps its blob.
    kept: Vec<Vec<u64>>,
}

impl Claims {
    /// Enough partitions for an index of `n_blobs` blobs.
    pub fn partitions_for(n_blobs: u64) -> u64 {
        n_blobs
            .div_ceil(USED_PER_PARTITION)
            .max(1)
            .next_power_of_two()
    }

    /// Claims in `partitions` (a power of two) partitions, spilling to files in `dir`.
    pub fn new(dir: &Path, partitions: u64) -> Claims {
        debug_assert!(partitions.is_power_of_two());
        Claims {
            bits: partitions.trailing_zeros(),
            used: Spill::partitions(dir, 33, partitions),
            entries: Spill::partitions(dir, ENTRY, partitions),
            kept: Vec::new(),
        }
    }

    /// Blob ids are keyed hashes, so their leading bits spread blobs evenly.
    fn partition(&self, key: &Key) -> usize {
        let lead = u32::from_be_bytes(key[1..5].try_into().unwrap());
        lead.checked_shr(32 - self.bits).unwrap_or(0) as usize
    }

    pub fn use_blob(&mut self, blob: BlobId) -> Result<()> {
        let key = blob.to_bytes();
        let p = self.partition(&key);
        self.used[p].push(&key)
    }

    /// Offers the entries of an intact pack, after those of every pack numbered before it.
    pub fn offer(&mut self, pack: &IndexPack, number: u32) -> Result<()> {
        let mut entry = [0u8; ENTRY];
        entry[33..37].copy_from_slice(&number.to_le_bytes());
        for e in &pack.blobs {
            entry[..33].copy_from_slice(&e.blob.to_bytes());
            entry[37..41].copy_from_slice(&e.offset.to_le_bytes());
            entry[41..45].copy_from_slice(&e.stored_len.to_le_bytes());
            entry[45..49].copy_from_slice(&e.raw_len.to_le_bytes());
            let p = self.partition(entry[..33].try_into().unwrap());
            self.entries[p].push(&entry)?;
        }
        Ok(())
    }

    /// Gives each used blob to the first entry offered for it, counting it in that entry's
    /// pack; returns how many blobs are used and how many of them no entry holds. Settling
    /// again, after more offers, starts over. Partitions are settled on every core.
    pub fn settle(&mut self, packs: &mut Packs) -> Result<(u64, u64)> {
        let uses: Vec<(AtomicU64, AtomicU64)> = packs
            .list
            .iter()
            .map(|_| (AtomicU64::new(0), AtomicU64::new(0)))
            .collect();
        let parts: Vec<_> = self
            .used
            .iter_mut()
            .zip(&mut self.entries)
            .enumerate()
            .collect();
        let mut settled = on_every_core(parts, |(p, (used, entries))| {
            let mut unclaimed = used_keys(used)?;
            let used = unclaimed.len() as u64;
            let mut kept = vec![0u64; entries.len().div_ceil(64) as usize];
            let mut i = 0;
            entries.for_each(|entry| {
                let (key, copy) = decode(entry);
                if unclaimed.remove(&SetKey::of(&key)) {
                    kept[i / 64] |= 1 << (i % 64);
                    let (blobs, bytes) = &uses[copy.pack as usize];
                    blobs.fetch_add(1, Relaxed);
                    bytes.fetch_add(u64::from(copy.stored_len), Relaxed);
                }
                i += 1;
            })?;
            Ok((p, used, unclaimed.len() as u64, kept))
        })?;
        settled.sort_unstable_by_key(|(p, ..)| *p);
        for ((_, u), (blobs, bytes)) in packs.list.iter_mut().zip(uses) {
            u.used_blobs = blobs.into_inner();
            u.used_bytes = bytes.into_inner();
        }
        let (used, missing) = settled.iter().fold((0, 0), |(u, m), s| (u + s.1, m + s.2));
        self.kept = settled.into_iter().map(|(.., kept)| kept).collect();
        Ok((used, missing))
    }

    /// The blobs that each of `packs` (by number) keeps, after `settle`.
    pub fn kept_by(&mut self, packs: &HashSet<u32>) -> Result<HashMap<u32, HashSet<Key>>> {
        let mut out: HashMap<u32, HashSet<Key>> = HashMap::new();
        for (offered, kept) in self.entries.iter_mut().zip(&self.kept) {
            let mut i = 0;
            offered.for_each(|entry| {
                let (key, copy) = decode(entry);
                if kept[i / 64] & (1 << (i % 64)) != 0 && packs.contains(&copy.pack) {
                    out.entry(copy.pack).or_default().insert(key);
                }
                i += 1;
            })?;
        }
        Ok(out)
    }

    /// Used blobs that have a copy in one of `going` (packs about to be condemned) which does
    /// not keep them: for each, that copy and the one that keeps the blob. Before the last
    /// other copy goes, the kept one must be known good.
    pub fn other_copies_in(
        &mut self,
        going: &HashSet<u32>,
    ) -> Result<Vec<(Key, BlobCopy, BlobCopy)>> {
        let mut out = Vec::new();
        for p in 0..self.used.len() {
            let used = used_keys(&mut self.used[p])?;
            let kept = &self.kept[p];
            let mut extra: HashMap<Key, BlobCopy> = HashMap::new();
            let mut i = 0;
            self.entries[p].for_each(|entry| {
                let (key, copy) = decode(entry);
                let keeps = kept[i / 64] & (1 << (i % 64)) != 0;
                if !keeps && going.contains(&copy.pack) && used.contains(&SetKey::of(&key)) {
                    extra.insert(key, copy);
                }
                i += 1;
            })?;
            if extra.is_empty() {
                continue;
            }
            let mut i = 0;
            self.entries[p].for_each(|entry| {
                let (key, copy) = decode(entry);
                if kept[i / 64] & (1 << (i % 64)) != 0 {
                    if let Some(other) = extra.get(&key) {
                        out.push((key, *other, copy));
                    }
                }
                i += 1;
            })?;
        }
        out.sort_by_key(|(key, other, _)| (other.pack, *key));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_format::index::IndexEntry;
    use cairn_format::{BlobType, Id};

    fn blob(i: u64) -> BlobId {
        let mut id = [0u8; 32];
        // Spread the leading bits, as keyed hashes do.
        id[..8].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
        id[8..16].copy_from_slice(&i.to_le_bytes());
        BlobId {
            kind: BlobType::Data,
            id: Id(id),
        }
    }

    fn pack(n: u8, blobs: impl Iterator<Item = u64>) -> IndexPack {
        IndexPack {
            id: PackId(Id([n; 32])),
            size: 1 << 30,
            blobs: blobs
                .map(|i| IndexEntry {
                    blob: blob(i),
                    offset: i as u32 * 100,
                    stored_len: 10 + (i % 7) as u32,
                    raw_len: 0,
                })
                .collect(),
        }
    }

    /// What `Claims` decides, with one partition or many: the counts per pack, the blobs each
    /// keeps, and how many used blobs no pack holds.
    fn decide(partitions: u64) -> (Vec<PackUse>, Vec<HashSet<Key>>, u64, u64) {
        let dir = tempfile::tempdir().unwrap();
        let mut claims = Claims::new(dir.path(), partitions);
        // Used: 0..60,000 (many twice) and 200,000..200,010, which no pack holds.
        for i in (0..60_000).chain(0..30_000).chain(200_000..200_010) {
            claims.use_blob(blob(i)).unwrap();
        }
        // Pack 0 holds 0..40,000; pack 1 holds 20,000..70,000, so it keeps only 40,000..60,000
        // of what is used; pack 2 holds copies of blobs packs 0 and 1 keep, and keeps nothing.
        let all = [
            pack(0, 0..40_000),
            pack(1, 20_000..70_000),
            pack(2, (0..70_000).step_by(3)),
        ];
        let mut packs = Packs::default();
        for p in &all {
            let number = packs.add(p).unwrap();
            claims.offer(p, number).unwrap();
        }
        assert_eq!(packs.add(&all[0]), None, "a pack is numbered once");
        let (used, missing) = claims.settle(&mut packs).unwrap();
        let mut kept = claims.kept_by(&HashSet::from([0, 1, 2])).unwrap();
        let keeps = (0..3)
            .map(|n| kept.remove(&n).unwrap_or_default())
            .collect();
        let uses = packs.list.iter().map(|(_, u)| *u).collect();
        (uses, keeps, used, missing)
    }

    #[test]
    fn the_first_intact_copy_keeps_each_used_blob_with_any_number_of_partitions() {
        let (uses, keeps, used, missing) = decide(1);
        assert_eq!((used, missing), (60_010, 10));
        assert_eq!(uses[0].used_blobs, 40_000);
        assert_eq!(uses[1].used_blobs, 20_000);
        assert_eq!(uses[2].used_blobs, 0);
        let bytes: u64 = (40_000..60_000u64).map(|i| 10 + i % 7).sum();
        assert_eq!(uses[1].used_bytes, bytes);
        assert!(keeps[1].contains(&blob(40_000).to_bytes()));
        assert!(!keeps[1].contains(&blob(39_999).to_bytes()));
        assert_eq!(keeps[1].len(), 20_000);
        assert!(keeps[2].is_empty());
        // Eight partitions, each spilling to its file, decide the same.
        let many = decide(8);
        assert_eq!(many.2, used);
        assert_eq!(many.3, missing);
        assert_eq!(many.1, keeps);
        for (a, b) in many.0.iter().zip(&uses) {
            assert_eq!((a.used_blobs, a.used_bytes), (b.used_blobs, b.used_bytes));
        }
    }

    #[test]
    fn settling_again_after_a_late_offer_starts_over() {
        // As when condemned packs are offered once some used blobs are found nowhere else.
        let dir = tempfile::tempdir().unwrap();
        let mut claims = Claims::new(dir.path(), 2);
        for i in 0..100 {
            claims.use_blob(blob(i)).unwrap();
        }
        let mut packs = Packs::default();
        let first = pack(0, 0..90);
        let number = packs.add(&first).unwrap();
        claims.offer(&first, number).unwrap();
        assert_eq!(claims.settle(&mut packs).unwrap(), (100, 10));
        let late = pack(1, 50..100);
        let number = packs.add(&late).unwrap();
        claims.offer(&late, number).unwrap();
        assert_eq!(claims.settle(&mut packs).unwrap(), (100, 0));
        assert_eq!(packs.list[0].1.used_blobs, 90);
        assert_eq!(packs.list[1].1.used_blobs, 10);
        let kept = claims.kept_by(&HashSet::from([1])).unwrap();
        assert_eq!(kept[&1].len(), 10);
    }

    #[test]
    fn other_copies_in_going_packs_name_the_copy_that_keeps_the_blob() {
        let dir = tempfile::tempdir().unwrap();
        let mut claims = Claims::new(dir.path(), 4);
        // Used: 0..10. Pack 0 keeps 0..5, pack 1 keeps 5..10 and holds second copies of 3..5
        // and of 20..22, which nothing uses.
        for i in 0..10 {
            claims.use_blob(blob(i)).unwrap();
        }
        let mut packs = Packs::default();
        for p in [pack(0, 0..5), pack(1, (3..10).chain(20..22))] {
            let number = packs.add(&p).unwrap();
            claims.offer(&p, number).unwrap();
        }
        claims.settle(&mut packs).unwrap();
        let mut copies = claims.other_copies_in(&HashSet::from([1])).unwrap();
        copies.sort_by_key(|(k, _, _)| *k);
        let mut want: Vec<(Key, BlobCopy, BlobCopy)> = (3..5u64)
            .map(|i| {
                let copy = |pack| BlobCopy {
                    pack,
                    offset: i as u32 * 100,
                    stored_len: 10 + (i % 7) as u32,
                    raw_len: 0,
                };
                (blob(i).to_bytes(), copy(1), copy(0))
            })
            .collect();
        want.sort_by_key(|(k, _, _)| *k);
        assert_eq!(copies, want);
        // Pack 0 going away takes no second copy of anything.
        assert!(claims
            .other_copies_in(&HashSet::from([0]))
            .unwrap()
            .is_empty());
    }
}
