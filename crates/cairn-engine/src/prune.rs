//! Garbage collection: find the blobs no snapshot reaches, condemn the packs that hold only
//! such blobs (repacking those that hold some), and delete condemned packs once no backup can
//! still depend on them (repo-format.md, "Garbage collection", states the protocol and why it
//! is safe next to running backups).
//!
//! Invariant: a pack is deleted only after a condemnation file naming it is durable, every blob
//! a listed snapshot reaches has a copy in a pack that is not condemned, and either no backup
//! marker is present and no snapshot appeared while prune ran, or the condemnation has been
//! known to this client for the grace period.

use crate::index_batch::IndexBatch;
use crate::spill::Spill;
use crate::Result;
use cairn_format::index::{IndexFile, IndexPack};
use cairn_format::{BlobId, Id, IndexId, PackId, SnapshotId, TreeId};
use cairn_repo::{Error, ErrorKind, Repository, STALE_MARKER};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct PruneOptions {
    /// Repack partly used packs, most wasteful first, until the unused bytes left in packs are
    /// at most this fraction of the used bytes.
    pub max_unused: f64,
    /// How long a condemnation must have been known to this client before its packs are
    /// deleted while backups may be running. Must exceed `cairn_repo::COMMIT_WINDOW`.
    pub grace: Duration,
    /// Plan only: report what would be done, change nothing.
    pub dry_run: bool,
    /// This client's wall clock, ns since the epoch: when condemnations were first seen.
    pub now_ns: i64,
    /// Snapshots to treat as gone: those a dry run of `forget` would remove.
    pub forgotten: HashSet<SnapshotId>,
}

/// What prune found and did. In a dry run, what it would do.
#[derive(Clone, Debug, Default)]
pub struct PruneReport {
    pub snapshots: u64,
    pub packs: u64,
    pub blobs_used: u64,
    /// Packs that hold only unused blobs (or that no index names), condemned now.
    pub packs_unused: u64,
    /// Partly used packs whose used blobs are copied to new packs before they are condemned.
    pub packs_repacked: u64,
    pub blobs_repacked: u64,
    pub bytes_repacked: u64,
    /// Blobs copied out of condemned packs because a snapshot reaches them again.
    pub blobs_revived: u64,
    /// Packs deleted (or, in a dry run, that would be).
    pub packs_deleted: u64,
    pub bytes_freed: u64,
    /// Condemned packs left for a later prune, because a backup may be running.
    pub packs_deferred: u64,
    pub bytes_deferred: u64,
    /// Unused bytes left in partly used packs.
    pub bytes_unused_kept: u64,
    pub index_files_written: u64,
    pub index_files_removed: u64,
    /// Why condemned packs were not deleted now; empty when they were.
    pub deferred_because: Option<String>,
    pub duration: Duration,
}

/// A live pack: what the index says it holds and how much of that is used.
#[derive(Clone, Copy, Debug, Default)]
struct PackUse {
    used_blobs: u64,
    /// The pack's bytes less its header: more than the indexed blobs' bytes when a blob was
    /// left out of the index (`repair index --read-data` drops damaged ones).
    blob_bytes: u64,
    used_bytes: u64,
}

/// The packs prune has looked at, numbered in the order in which they claim blobs.
#[derive(Default)]
struct Packs {
    numbers: HashMap<PackId, u32>,
    list: Vec<(PackId, PackUse)>,
}

impl Packs {
    /// Numbers a pack not seen before.
    fn add(&mut self, pack: &IndexPack) -> Option<u32> {
        if self.numbers.contains_key(&pack.id) {
            return None;
        }
        let number = self.list.len() as u32;
        // The header is 45 + 41n sealed bytes, then its 4-byte length (repo-format.md, "Pack
        // files").
        let header = 49 + 41 * pack.blobs.len() as u64;
        let u = PackUse {
            blob_bytes: pack.size.saturating_sub(header),
            ..PackUse::default()
        };
        self.numbers.insert(pack.id, number);
        self.list.push((pack.id, u));
        Some(number)
    }

    fn get(&self, pack: &PackId) -> Option<&PackUse> {
        self.numbers.get(pack).map(|n| &self.list[*n as usize].1)
    }
}

/// Used blobs per partition of `Claims`: at about 70 bytes each in a hash set, some 36 MiB is
/// what prune holds of them at once.
const USED_PER_PARTITION: u64 = 1 << 19;
/// An entry in `Claims`: blob key, pack number, stored length.
const ENTRY: usize = 33 + 4 + 4;

/// Which copy of each used blob prune keeps: the first in an intact pack, in pack number
/// order, so that other copies count as unused and their packs can go. The used blobs and
/// the packs' entries go to scratch files in partitions by blob id, and are matched one
/// partition at a time, so memory stays flat however large the index grows.
struct Claims {
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
    fn partitions_for(n_blobs: u64) -> u64 {
        n_blobs
            .div_ceil(USED_PER_PARTITION)
            .max(1)
            .next_power_of_two()
    }

    /// Claims in `partitions` (a power of two) partitions, spilling to files in `dir`.
    fn new(dir: &Path, partitions: u64) -> Claims {
        debug_assert!(partitions.is_power_of_two());
        Claims {
            bits: partitions.trailing_zeros(),
            used: (0..partitions).map(|_| Spill::new(dir, 33)).collect(),
            entries: (0..partitions).map(|_| Spill::new(dir, ENTRY)).collect(),
            kept: Vec::new(),
        }
    }

    /// Blob ids are keyed hashes, so their leading bits spread blobs evenly.
    fn partition(&self, key: &[u8; 33]) -> usize {
        let lead = u32::from_be_bytes(key[1..5].try_into().unwrap());
        lead.checked_shr(32 - self.bits).unwrap_or(0) as usize
    }

    fn use_blob(&mut self, blob: BlobId) -> Result<()> {
        let key = blob.to_bytes();
        let p = self.partition(&key);
        self.used[p].push(&key)
    }

    /// Offers the entries of an intact pack, after those of every pack numbered before it.
    fn offer(&mut self, pack: &IndexPack, number: u32) -> Result<()> {
        let mut entry = [0u8; ENTRY];
        entry[33..37].copy_from_slice(&number.to_le_bytes());
        for e in &pack.blobs {
            entry[..33].copy_from_slice(&e.blob.to_bytes());
            entry[37..].copy_from_slice(&e.stored_len.to_le_bytes());
            let p = self.partition(entry[..33].try_into().unwrap());
            self.entries[p].push(&entry)?;
        }
        Ok(())
    }

    /// Gives each used blob to the first entry offered for it, counting it in that entry's
    /// pack; returns how many blobs are used and how many of them no entry holds. Settling
    /// again, after more offers, starts over.
    fn settle(&mut self, packs: &mut Packs) -> Result<(u64, u64)> {
        let (mut used, mut missing) = (0, 0);
        self.kept.clear();
        for (_, u) in &mut packs.list {
            u.used_blobs = 0;
            u.used_bytes = 0;
        }
        for (want, offered) in self.used.iter_mut().zip(&mut self.entries) {
            let mut unclaimed: HashSet<[u8; 33]> = HashSet::new();
            want.for_each(|key| {
                unclaimed.insert(key.try_into().unwrap());
            })?;
            used += unclaimed.len() as u64;
            let mut kept = vec![0u64; offered.len().div_ceil(64) as usize];
            let mut i = 0;
            offered.for_each(|entry| {
                if unclaimed.remove(&entry[..33]) {
                    kept[i / 64] |= 1 << (i % 64);
                    let stored_len = u32::from_le_bytes(entry[37..].try_into().unwrap());
                    let u = &mut packs.list[entry_pack(entry) as usize].1;
                    u.used_blobs += 1;
                    u.used_bytes += u64::from(stored_len);
                }
                i += 1;
            })?;
            missing += unclaimed.len() as u64;
            self.kept.push(kept);
        }
        Ok((used, missing))
    }

    /// The blobs that each of `packs` (by number) keeps, after `settle`.
    fn kept_by(&mut self, packs: &HashSet<u32>) -> Result<HashMap<u32, HashSet<[u8; 33]>>> {
        let mut out: HashMap<u32, HashSet<[u8; 33]>> = HashMap::new();
        for (offered, kept) in self.entries.iter_mut().zip(&self.kept) {
            let mut i = 0;
            offered.for_each(|entry| {
                let number = entry_pack(entry);
                if kept[i / 64] & (1 << (i % 64)) != 0 && packs.contains(&number) {
                    out.entry(number)
                        .or_default()
                        .insert(entry[..33].try_into().unwrap());
                }
                i += 1;
            })?;
        }
        Ok(out)
    }
}

/// The pack number of an entry in `Claims`.
fn entry_pack(entry: &[u8]) -> u32 {
    u32::from_le_bytes(entry[33..37].try_into().unwrap())
}

/// Used blobs copied per pass over `Claims` when packs are copied: what prune holds of them.
const COPIED_PER_PASS: u64 = 1 << 19;

pub fn prune(repo: &Repository, opts: &PruneOptions) -> Result<PruneReport> {
    let started = Instant::now();
    let mut report = PruneReport::default();
    if let Some((id, why)) = repo.damaged_index_files().first() {
        return Err(Error::corrupt(format!(
            "index file {} is damaged ({why}): prune cannot tell which blobs exist; run `cairn repair index` first",
            id.short()
        )));
    }

    // Plan: what snapshots reach, what is condemned, and what each pack holds.
    let snapshots_before: HashSet<SnapshotId> = repo.snapshot_ids_indexed()?.into_iter().collect();
    let kept: HashSet<SnapshotId> = snapshots_before
        .difference(&opts.forgotten)
        .copied()
        .collect();
    report.snapshots = kept.len() as u64;
    let stored: HashMap<PackId, u64> = repo.list_packs()?.into_iter().collect();
    report.packs = stored.len() as u64;
    let listed_index = repo.index_ids()?;
    // Every condemnation counts, including one written since the index was synced: a pack it
    // names must neither claim blobs nor be classified (a second read of the index files keeps
    // memory to one file at a time).
    let mut condemned = repo.condemned_packs();
    let mut pending: Vec<(IndexId, Vec<PackId>)> = Vec::new();
    let mut rewrite: Vec<IndexId> = Vec::new();
    let mut n_indexed: u64 = 0;
    for id in &listed_index {
        let Some(file) = read_index_if_listed(repo, *id)? else {
            continue;
        };
        n_indexed += file.packs.iter().map(|p| p.blobs.len() as u64).sum::<u64>();
        if file.condemned.is_empty() {
            rewrite.push(*id);
        } else {
            condemned.extend(file.condemned.iter().copied());
            pending.push((*id, file.condemned));
        }
    }
    let watch = Watch::new(repo, opts, &listed_index)?;
    let mut claims = Claims::new(repo.scratch_dir(), Claims::partitions_for(n_indexed));
    used_blobs(repo, &kept, &mut claims)?;

    let mut packs = Packs::default();
    // Packs a running backup may still be filling: named only by index files that are new to
    // this client. They are not condemned while a backup runs, so it need not copy them.
    let mut young: HashSet<PackId> = HashSet::new();
    let mut settled: HashSet<PackId> = HashSet::new();
    // An index file (not a condemnation) that still names a condemned pack, left by a prune
    // killed before it removed the files it had rewritten: the index must be rewritten before
    // that pack is deleted.
    let mut stale_records = false;
    for id in &listed_index {
        let Some(file) = read_index_if_listed(repo, *id)? else {
            continue;
        };
        stale_records |=
            file.condemned.is_empty() && file.packs.iter().any(|p| condemned.contains(&p.id));
        let named = if watch.is_young(id) {
            &mut young
        } else {
            &mut settled
        };
        named.extend(file.packs.iter().map(|p| p.id));
        for pack in file.packs.iter().filter(|p| !condemned.contains(&p.id)) {
            // A missing or truncated pack keeps nothing.
            if let Some(number) = packs.add(pack) {
                if stored.get(&pack.id) == Some(&pack.size) {
                    claims.offer(pack, number)?;
                }
            }
        }
    }
    young.retain(|p| !settled.contains(p));

    // Packs no index file names: a running backup's not yet indexed, a killed one's, or a
    // concurrent prune's copies. Their headers say what they hold; used ones join the index.
    let mut unindexed: HashMap<PackId, IndexPack> = HashMap::new();
    let mut unreadable: HashSet<PackId> = HashSet::new();
    for (pack, size) in &stored {
        if condemned.contains(pack) || packs.numbers.contains_key(pack) {
            continue;
        }
        let Ok(header) = repo.read_pack_header(pack, *size) else {
            // Damage is for `check` to report, and a pack removed since the listing is no
            // concern: prune leaves what it cannot read alone.
            unreadable.insert(*pack);
            continue;
        };
        let entries = IndexPack::from_header(*pack, *size, &header);
        let number = packs.add(&entries).expect("a pack is listed once");
        claims.offer(&entries, number)?;
        unindexed.insert(*pack, entries);
    }
    let (mut blobs_used, mut missing) = claims.settle(&mut packs)?;
    // Blobs a snapshot reaches that no other pack holds are copied out of condemned packs,
    // which are read only then and offered last.
    let mut revive: Vec<PackId> = Vec::new();
    if missing > 0 {
        for pack in condemned.iter().filter(|p| stored.contains_key(p)) {
            let Ok(header) = repo.read_pack_header(pack, stored[pack]) else {
                continue;
            };
            let entries = IndexPack::from_header(*pack, stored[pack], &header);
            if let Some(number) = packs.add(&entries) {
                claims.offer(&entries, number)?;
                revive.push(*pack);
            }
        }
        (blobs_used, missing) = claims.settle(&mut packs)?;
    }
    report.blobs_used = blobs_used;
    revive.retain(|p| packs.get(p).is_some_and(|u| u.used_blobs > 0));
    let adopted: Vec<IndexPack> = unindexed
        .extract_if(|p, _| packs.get(p).is_some_and(|u| u.used_blobs > 0))
        .map(|(_, entries)| entries)
        .collect();
    young.extend(unindexed.keys().copied());
    if !watch.backups_running() {
        young.clear();
    }
    if missing > 0 {
        return Err(Error::corrupt(format!(
            "{missing} blobs that snapshots reach are in no intact pack: prune would lose track of them; run `cairn check`"
        )));
    }

    let mut unused: Vec<PackId> = stored
        .keys()
        .filter(|p| {
            !condemned.contains(p)
                && !unreadable.contains(p)
                && !young.contains(p)
                && packs.get(p).is_some_and(|u| u.used_blobs == 0)
        })
        .copied()
        .collect();
    unused.sort();
    report.packs_unused = unused.len() as u64;
    let live = || packs.list.iter().filter(|(p, _)| !condemned.contains(p));
    let mut partial: Vec<(PackId, PackUse)> = live()
        .filter(|(p, u)| {
            u.used_blobs > 0
                && u.used_bytes < u.blob_bytes
                && stored.contains_key(p)
                && !young.contains(p)
        })
        .copied()
        .collect();
    partial.sort_by_key(|(p, u)| (std::cmp::Reverse(u.blob_bytes - u.used_bytes), *p));
    let used_bytes: u64 = live().map(|(_, u)| u.used_bytes).sum();
    let mut unused_kept: u64 = partial
        .iter()
        .map(|(_, u)| u.blob_bytes - u.used_bytes)
        .sum();
    let allowed = (used_bytes as f64 * opts.max_unused) as u64;
    let mut repack: Vec<PackId> = Vec::new();
    for (pack, u) in &partial {
        if unused_kept <= allowed {
            break;
        }
        unused_kept -= u.blob_bytes - u.used_bytes;
        repack.push(*pack);
        report.blobs_repacked += u.used_blobs;
        report.bytes_repacked += u.used_bytes;
    }
    report.packs_repacked = repack.len() as u64;
    report.bytes_unused_kept = unused_kept;
    let newly_condemned: Vec<PackId> = unused.iter().chain(&repack).copied().collect();
    // Rewriting the index makes every client rebuild its cache, so it is done when something
    // leaves or joins the index, or to merge many small index files.
    let rewrite_index_now = !newly_condemned.is_empty()
        || !adopted.is_empty()
        || stale_records
        || rewrite.len() > MAX_INDEX_FILES_KEPT;
    let has_work = rewrite_index_now || !pending.is_empty() || !revive.is_empty();

    if opts.dry_run {
        // What a prune would delete now: every condemnation, old and new, unless deferred.
        let decision = watch.fast_path(repo, &snapshots_before)?;
        let mut deleted: Vec<PackId> = newly_condemned.clone();
        let mut deferred: Vec<PackId> = Vec::new();
        for (id, packs) in &pending {
            if decision.is_ok() || watch.old_enough(id) {
                deleted.extend(packs);
            } else {
                deferred.extend(packs);
            }
        }
        if decision.is_err() {
            deferred.append(&mut deleted.split_off(deleted.len() - newly_condemned.len()));
        }
        let size = |packs: &[PackId]| -> u64 { packs.iter().filter_map(|p| stored.get(p)).sum() };
        report.packs_deleted = deleted.iter().filter(|p| stored.contains_key(p)).count() as u64;
        report.bytes_freed = size(&deleted).saturating_sub(report.bytes_repacked);
        report.packs_deferred = deferred.iter().filter(|p| stored.contains_key(p)).count() as u64;
        report.bytes_deferred = size(&deferred);
        if report.packs_deferred > 0 {
            report.deferred_because = decision.err();
        }
        report.duration = started.elapsed();
        return Ok(report);
    }
    if !has_work {
        report.duration = started.elapsed();
        return Ok(report);
    }

    // Execute, in the order that keeps every step safe to interrupt: copies first, then the
    // rewritten index, then the condemnation, and deletions last.
    let copies: Vec<PackId> = revive.iter().chain(&repack).copied().collect();
    let mut rest = &copies[..];
    while !rest.is_empty() {
        // As many packs as keep `COPIED_PER_PASS` blobs together, and at least one.
        let mut blobs = 0;
        let n = rest
            .iter()
            .take_while(|p| {
                blobs += packs.get(p).map_or(0, |u| u.used_blobs);
                blobs <= COPIED_PER_PASS
            })
            .count()
            .max(1);
        let (now, later) = rest.split_at(n);
        let numbers: HashSet<u32> = now.iter().map(|p| packs.numbers[p]).collect();
        let mut kept = claims.kept_by(&numbers)?;
        for pack in now {
            let keeps = kept.remove(&packs.numbers[pack]).unwrap_or_default();
            let copied = copy_used(repo, pack, &keeps)? as u64;
            if revive.contains(pack) {
                report.blobs_revived += copied;
            }
        }
        rest = later;
    }
    drop(claims);
    repo.flush()?;
    let mut written: HashSet<IndexId> = HashSet::new();
    if rewrite_index_now {
        // Listed after the index: a pack named there but missing here is gone for good (a
        // concurrent prune deleted it), and its record must not be carried on.
        let present: HashSet<PackId> = repo.list_packs()?.into_iter().map(|(p, _)| p).collect();
        let all_condemned = condemned_with(&condemned, &newly_condemned);
        let adopted_ids: HashSet<PackId> = adopted.iter().map(|p| p.id).collect();
        let files = rewrite_index(repo, &rewrite, adopted, &all_condemned, &present)?;
        written.extend(files.iter().map(|(id, _)| *id));
        report.index_files_written += files.len() as u64;
        if !newly_condemned.is_empty() {
            let mut batch = IndexBatch::condemning(&newly_condemned);
            // The condemned packs' records travel with the condemnation, so that their blobs
            // stay readable (never reusable) until the packs are deleted. The files just
            // rewritten are read again for them rather than held in memory.
            let mut seen = adopted_ids;
            for id in &rewrite {
                let Some(file) = read_index_if_listed(repo, *id)? else {
                    continue;
                };
                for pack in file.packs {
                    if seen.insert(pack.id)
                        && present.contains(&pack.id)
                        && all_condemned.contains(&pack.id)
                    {
                        batch.push(repo, pack)?;
                    }
                }
            }
            for (pack, record) in unindexed {
                if all_condemned.contains(&pack) && !seen.contains(&pack) {
                    batch.push(repo, record)?;
                }
            }
            for (id, packs) in batch.finish(repo)? {
                written.insert(id);
                pending.push((id, packs));
                report.index_files_written += 1;
            }
        }
        for id in &rewrite {
            repo.remove_index(id)?;
            report.index_files_removed += 1;
        }
    }

    // Delete what is safe to delete. Another prune at work (an index file this prune neither
    // read nor wrote that condemns packs, or names one this prune condemns) defers everything:
    // the two may have kept different copies of a blob.
    let foreign = foreign_index_files(repo, &listed_index, &written)?;
    let newly: HashSet<PackId> = newly_condemned.iter().copied().collect();
    let conflict = foreign
        .iter()
        .any(|f| !f.condemned.is_empty() || f.packs.iter().any(|p| newly.contains(&p.id)));
    let decision = if conflict {
        Err("another prune ran at the same time, so deletions wait for the next prune".to_string())
    } else {
        watch.fast_path(repo, &snapshots_before)?
    };
    let foreign_packs: HashSet<PackId> = foreign
        .iter()
        .flat_map(|f| f.packs.iter().map(|p| p.id))
        .collect();
    for (id, packs) in &pending {
        let present: Vec<&PackId> = packs.iter().filter(|p| stored.contains_key(p)).collect();
        if conflict || decision.is_err() && !watch.old_enough(id) {
            report.packs_deferred += present.len() as u64;
            report.bytes_deferred += present.iter().map(|p| stored[*p]).sum::<u64>();
            continue;
        }
        for pack in present {
            repo.remove_pack(pack)?;
            report.packs_deleted += 1;
            report.bytes_freed += stored[pack];
        }
        // An index file this prune did not read may name the packs (another prune's rewrite);
        // while it does, the condemnation must stay to keep them out of the index.
        if !packs.iter().any(|p| foreign_packs.contains(p)) {
            repo.remove_index(id)?;
            report.index_files_removed += 1;
        }
    }
    report.bytes_freed = report.bytes_freed.saturating_sub(report.bytes_repacked);
    if report.packs_deferred > 0 {
        report.deferred_because = decision.err();
    }
    report.duration = started.elapsed();
    Ok(report)
}

/// Index files prune may leave as they are; more are merged into fewer by a rewrite.
const MAX_INDEX_FILES_KEPT: usize = 64;

fn condemned_with(old: &HashSet<PackId>, new: &[PackId]) -> HashSet<PackId> {
    old.iter().chain(new).copied().collect()
}

/// An index file, or `None` if it was removed since it was listed (by a concurrent prune).
fn read_index_if_listed(repo: &Repository, id: IndexId) -> Result<Option<IndexFile>> {
    match repo.read_index(id) {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// What prune knows of time and of running backups, taken once after listing the index: when
/// this client first saw each index file and marker (by a wall clock read after the listing,
/// so that a file is never taken for older than it is), and which markers are live.
struct Watch {
    grace_ns: i64,
    /// The prune's start, read before the snapshots were listed.
    start_ns: i64,
    first_seen: HashMap<Id, i64>,
    live_markers: usize,
}

impl Watch {
    fn new(repo: &Repository, opts: &PruneOptions, index: &[IndexId]) -> Result<Watch> {
        let markers = repo.backup_markers()?;
        let marker_ids: Vec<Id> = markers.iter().filter_map(|m| Id::from_hex(m)).collect();
        let ids: Vec<Id> = index
            .iter()
            .map(|i| i.0)
            .chain(marker_ids.iter().copied())
            .collect();
        let now = repo.host().wall_clock_ns().max(opts.now_ns);
        let seen = if opts.dry_run {
            vec![now; ids.len()]
        } else {
            repo.first_seen(&ids, now)?
        };
        let first_seen: HashMap<Id, i64> = ids.into_iter().zip(seen).collect();
        let mut live_markers = markers.len() - marker_ids.len();
        for id in &marker_ids {
            let stale =
                opts.now_ns.saturating_sub(first_seen[id]) >= STALE_MARKER.as_nanos() as i64;
            if !stale && !repo.marker_is_dead(&id.to_hex()) {
                live_markers += 1;
            } else if !opts.dry_run {
                repo.remove_marker(&id.to_hex())?;
            }
        }
        Ok(Watch {
            grace_ns: opts.grace.as_nanos() as i64,
            start_ns: opts.now_ns,
            first_seen,
            live_markers,
        })
    }

    fn backups_running(&self) -> bool {
        self.live_markers > 0
    }

    /// Whether this client first saw the file at least the grace period before this prune
    /// began; a file it had not seen before is young.
    fn old_enough(&self, id: &IndexId) -> bool {
        self.first_seen
            .get(&id.0)
            .is_some_and(|seen| self.start_ns.saturating_sub(*seen) >= self.grace_ns)
    }

    fn is_young(&self, id: &IndexId) -> bool {
        self.backups_running() && !self.old_enough(id)
    }

    /// Whether condemned packs may be deleted right now (otherwise the reason, for the
    /// report): no live backup marker is listed now that the condemnation is durable, and no
    /// snapshot appeared since prune listed them. Markers first seen now (not in `first_seen`)
    /// are live.
    fn fast_path(
        &self,
        repo: &Repository,
        snapshots_before: &HashSet<SnapshotId>,
    ) -> Result<std::result::Result<(), String>> {
        let live = repo
            .backup_markers()?
            .iter()
            .filter(|m| {
                let known_dead = Id::from_hex(m).is_some_and(|id| {
                    self.first_seen.get(&id).is_some_and(|seen| {
                        self.start_ns.saturating_sub(*seen) >= STALE_MARKER.as_nanos() as i64
                    })
                });
                !known_dead && !repo.marker_is_dead(m)
            })
            .count();
        if live > 0 {
            return Ok(Err(format!(
                "{live} backup marker(s) in locks/: a backup may be running, so condemned packs are deleted by a prune {} from now, or once no backup runs",
                humanize(Duration::from_nanos(self.grace_ns as u64))
            )));
        }
        let now: HashSet<SnapshotId> = repo.snapshot_ids()?.into_iter().collect();
        if !now.is_subset(snapshots_before) {
            return Ok(Err(
                "a snapshot was written while prune ran, so condemned packs are deleted by the next prune".to_string(),
            ));
        }
        Ok(Ok(()))
    }
}

fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s % 86400 == 0 && s > 0 => format!("{}d", s / 86400),
        s if s % 3600 == 0 && s > 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 && s > 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Offers `claims` every blob the snapshots reach. Trees are remembered, to walk each once:
/// one entry per directory version, where the blobs are many more.
fn used_blobs(
    repo: &Repository,
    snapshots: &HashSet<SnapshotId>,
    claims: &mut Claims,
) -> Result<()> {
    let mut walked: HashSet<TreeId> = HashSet::new();
    let mut stack: Vec<TreeId> = Vec::new();
    for id in snapshots {
        let snapshot = repo.load_snapshot(*id).map_err(|e| match e.kind {
            ErrorKind::Corrupt => Error::corrupt(format!(
                "{}; prune cannot tell which blobs it needs: forget it first (`cairn forget {}`)",
                e.message,
                id.to_hex()
            )),
            _ => e,
        })?;
        stack.push(snapshot.tree);
    }
    while let Some(tree_id) = stack.pop() {
        if !walked.insert(tree_id) {
            continue;
        }
        claims.use_blob(tree_id.into())?;
        let tree = repo.load_tree(tree_id).map_err(|e| {
            Error::new(
                e.kind,
                format!(
                    "{}; prune cannot tell which blobs are used: run `cairn check`",
                    e.message
                ),
            )
        })?;
        for node in tree.nodes {
            for c in &node.content {
                claims.use_blob((*c).into())?;
            }
            stack.extend(node.subtree);
        }
    }
    Ok(())
}

/// Copies the blobs a pack `keeps` into new packs; returns how many.
fn copy_used(repo: &Repository, pack: &PackId, keeps: &HashSet<[u8; 33]>) -> Result<usize> {
    // Each blob is authenticated as it is opened, so a pack that fails its hash check only
    // fails prune if a blob prune needs from it is damaged.
    let bytes = repo.read_pack_unverified(pack)?;
    let header = repo.read_pack_header(pack, bytes.len() as u64)?;
    let (offsets, _) = header.offsets();
    let mut n = 0;
    for (e, offset) in header.entries.iter().zip(offsets) {
        if !keeps.contains(&e.blob.to_bytes()) {
            continue;
        }
        let start = offset as usize;
        let stored = &bytes[start..start + e.stored_len as usize];
        match repo.open_blob(&e.blob, stored, e.raw_len) {
            Ok(_) => {}
            // A damaged copy that the index no longer places here is not needed.
            Err(_) if repo.lookup(&e.blob)?.is_some_and(|l| l.pack != *pack) => continue,
            Err(err) => return Err(Error::new(
                err.kind,
                format!("{err}; a snapshot needs it: run `cairn repair index --read-data` and `cairn repair snapshots` first"),
            )),
        };
        repo.store_again(&e.blob, stored, e.raw_len)?;
        n += 1;
    }
    Ok(n)
}

/// Writes the index anew from `files` and the `adopted` packs, leaving out condemned packs and
/// packs not `present` in storage.
fn rewrite_index(
    repo: &Repository,
    files: &[IndexId],
    adopted: Vec<IndexPack>,
    condemned: &HashSet<PackId>,
    present: &HashSet<PackId>,
) -> Result<Vec<(IndexId, Vec<PackId>)>> {
    let mut seen: HashSet<PackId> = adopted.iter().map(|p| p.id).collect();
    let mut batch = IndexBatch::default();
    for pack in adopted {
        batch.push(repo, pack)?;
    }
    for id in files {
        let Some(file) = read_index_if_listed(repo, *id)? else {
            continue;
        };
        for pack in file.packs {
            if seen.insert(pack.id) && present.contains(&pack.id) && !condemned.contains(&pack.id) {
                batch.push(repo, pack)?;
            }
        }
    }
    batch.finish(repo)
}

/// Index files that appeared since prune listed the index, other than its own.
fn foreign_index_files(
    repo: &Repository,
    listed: &[IndexId],
    written: &HashSet<IndexId>,
) -> Result<Vec<IndexFile>> {
    let listed: HashSet<&IndexId> = listed.iter().collect();
    let mut out = Vec::new();
    for id in repo.index_ids()? {
        if listed.contains(&id) || written.contains(&id) {
            continue;
        }
        if let Some(file) = read_index_if_listed(repo, id)? {
            out.push(file);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_format::index::IndexEntry;
    use cairn_format::BlobType;

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
                    offset: 0,
                    stored_len: 10 + (i % 7) as u32,
                    raw_len: 0,
                })
                .collect(),
        }
    }

    /// What `Claims` decides, with one partition or many: the counts per pack, the blobs each
    /// keeps, and how many used blobs no pack holds.
    fn decide(partitions: u64) -> (Vec<PackUse>, Vec<HashSet<[u8; 33]>>, u64, u64) {
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
}
