//! Garbage collection: find the blobs no snapshot reaches, condemn the packs that hold only
//! such blobs (repacking those that hold some), and delete condemned packs once no backup can
//! still depend on them (repo-format.md, "Garbage collection", states the protocol and why it
//! is safe next to running backups).
//!
//! Invariant: a pack is deleted only after a condemnation file naming it is durable, every blob
//! a listed snapshot reaches has a copy in a pack that is not condemned, and either no backup
//! marker is present and no snapshot appeared while prune ran, or the condemnation has been
//! known to this client for the grace period.

use crate::Result;
use cairn_format::index::{IndexFile, IndexPack};
use cairn_format::{BlobId, Id, IndexId, PackId, SnapshotId, TreeId};
use cairn_repo::{Error, ErrorKind, Repository, STALE_MARKER};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// Packs per rewritten index file: about 4 MiB of index entries at 16 MiB packs of 1 MiB blobs,
/// so no single index file is large to read or rewrite.
const PACKS_PER_REWRITTEN_INDEX: usize = 4096;

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

/// For each used blob, the pack (its number in `Packs`) that keeps it: one copy per blob,
/// so that other copies count as unused and their packs can go. `NOWHERE` until claimed.
type Owners = HashMap<BlobId, u32>;
const NOWHERE: u32 = u32::MAX;

/// The packs prune has looked at, numbered for `Owners`.
#[derive(Default)]
struct Packs {
    numbers: HashMap<PackId, u32>,
}

impl Packs {
    fn number(&mut self, pack: PackId) -> u32 {
        let next = self.numbers.len() as u32;
        *self.numbers.entry(pack).or_insert(next)
    }
}

/// How much of a pack the snapshots use: it claims each used blob no pack has claimed yet, if
/// it is `intact` (a missing or truncated pack keeps nothing).
fn pack_use(pack: &IndexPack, number: u32, owners: &mut Owners, intact: bool) -> PackUse {
    // The header is 45 + 41n sealed bytes, then its 4-byte length (repo-format.md, "Pack files").
    let header = 49 + 41 * pack.blobs.len() as u64;
    let mut u = PackUse {
        blob_bytes: pack.size.saturating_sub(header),
        ..PackUse::default()
    };
    for e in &pack.blobs {
        match owners.get_mut(&e.blob) {
            Some(owner) if *owner == NOWHERE && intact => {
                *owner = number;
                u.used_blobs += 1;
                u.used_bytes += u64::from(e.stored_len);
            }
            _ => {}
        }
    }
    u
}

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
    let mut owners = used_blobs(repo, &kept)?;
    report.blobs_used = owners.len() as u64;
    let stored: HashMap<PackId, u64> = repo.list_packs()?.into_iter().collect();
    report.packs = stored.len() as u64;
    let listed_index = repo.index_ids()?;
    // Every condemnation counts, including one written since the index was synced: a pack it
    // names must neither claim blobs nor be classified (a second read of the index files keeps
    // memory to one file at a time).
    let mut condemned = repo.condemned_packs();
    let mut pending: Vec<(IndexId, Vec<PackId>)> = Vec::new();
    let mut rewrite: Vec<IndexId> = Vec::new();
    for id in &listed_index {
        let Some(file) = read_index_if_listed(repo, *id)? else {
            continue;
        };
        if file.condemned.is_empty() {
            rewrite.push(*id);
        } else {
            condemned.extend(file.condemned.iter().copied());
            pending.push((*id, file.condemned));
        }
    }
    let watch = Watch::new(repo, opts, &listed_index)?;

    let mut numbers = Packs::default();
    let mut live: HashMap<PackId, PackUse> = HashMap::new();
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
        for pack in &file.packs {
            if condemned.contains(&pack.id) || live.contains_key(&pack.id) {
                continue;
            }
            let intact = stored.get(&pack.id) == Some(&pack.size);
            let number = numbers.number(pack.id);
            live.insert(pack.id, pack_use(pack, number, &mut owners, intact));
        }
    }
    young.retain(|p| !settled.contains(p));

    // Packs no index file names: a running backup's not yet indexed, a killed one's, or a
    // concurrent prune's copies. Their headers say what they hold; used ones join the index.
    let mut adopted: Vec<IndexPack> = Vec::new();
    let mut unindexed: HashMap<PackId, IndexPack> = HashMap::new();
    let mut unreadable: HashSet<PackId> = HashSet::new();
    for (pack, size) in &stored {
        if condemned.contains(pack) || live.contains_key(pack) {
            continue;
        }
        let Ok(header) = repo.read_pack_header(pack, *size) else {
            // Damage is for `check` to report, and a pack removed since the listing is no
            // concern: prune leaves what it cannot read alone.
            unreadable.insert(*pack);
            continue;
        };
        let entries = IndexPack::from_header(*pack, *size, &header);
        let u = pack_use(&entries, numbers.number(*pack), &mut owners, true);
        if u.used_blobs > 0 {
            adopted.push(entries);
        } else {
            unindexed.insert(*pack, entries);
            young.insert(*pack);
        }
        live.insert(*pack, u);
    }
    if !watch.backups_running() {
        young.clear();
    }

    // Blobs a snapshot reaches that are only in condemned packs are copied out of them.
    let mut revive: Vec<(PackId, u32)> = Vec::new();
    if owners.values().any(|owner| *owner == NOWHERE) {
        for pack in condemned.iter().filter(|p| stored.contains_key(p)) {
            let Ok(header) = repo.read_pack_header(pack, stored[pack]) else {
                continue;
            };
            let entries = IndexPack::from_header(*pack, stored[pack], &header);
            let number = numbers.number(*pack);
            if pack_use(&entries, number, &mut owners, true).used_blobs > 0 {
                revive.push((*pack, number));
            }
        }
    }
    let missing = owners.values().filter(|owner| **owner == NOWHERE).count();
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
                && live.get(p).is_some_and(|u| u.used_blobs == 0)
        })
        .copied()
        .collect();
    unused.sort();
    report.packs_unused = unused.len() as u64;
    let mut partial: Vec<(PackId, PackUse)> = live
        .iter()
        .filter(|(p, u)| {
            u.used_blobs > 0
                && u.used_bytes < u.blob_bytes
                && stored.contains_key(*p)
                && !young.contains(*p)
        })
        .map(|(p, u)| (*p, *u))
        .collect();
    partial.sort_by_key(|(p, u)| (std::cmp::Reverse(u.blob_bytes - u.used_bytes), *p));
    let used_bytes: u64 = live.values().map(|u| u.used_bytes).sum();
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
    for (pack, number) in &revive {
        report.blobs_revived += copy_used(repo, pack, *number, &owners)? as u64;
    }
    for pack in &repack {
        copy_used(repo, pack, numbers.numbers[pack], &owners)?;
    }
    drop(owners);
    repo.flush()?;
    let mut written: HashSet<IndexId> = HashSet::new();
    if rewrite_index_now {
        // Listed after the index: a pack named there but missing here is gone for good (a
        // concurrent prune deleted it), and its record must not be carried on.
        let present: HashSet<PackId> = repo.list_packs()?.into_iter().map(|(p, _)| p).collect();
        let rewritten = rewrite_index(
            repo,
            &rewrite,
            adopted,
            &condemned_with(&condemned, &newly_condemned),
            unindexed,
            &present,
        )?;
        written.extend(rewritten.files.iter().copied());
        report.index_files_written += rewritten.files.len() as u64;
        if !newly_condemned.is_empty() {
            // The condemned packs' records travel with the condemnation, so that their blobs
            // stay readable (never reusable) until the packs are deleted.
            let id = repo.write_index(&IndexFile {
                condemned: newly_condemned.clone(),
                packs: rewritten.condemned,
                ..IndexFile::default()
            })?;
            written.insert(id);
            pending.push((id, newly_condemned.clone()));
            report.index_files_written += 1;
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
        let now = wall_clock_ns().max(opts.now_ns);
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

fn wall_clock_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
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

/// Every blob the snapshots reach, each kept `NOWHERE` yet.
fn used_blobs(repo: &Repository, snapshots: &HashSet<SnapshotId>) -> Result<Owners> {
    let mut used: Owners = HashMap::new();
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
        if used.insert(tree_id.into(), NOWHERE).is_some() {
            continue;
        }
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
            used.extend(node.content.iter().map(|c| (BlobId::from(*c), NOWHERE)));
            stack.extend(node.subtree);
        }
    }
    Ok(used)
}

/// Copies the used blobs that pack number `number` keeps into new packs; returns how many.
fn copy_used(repo: &Repository, pack: &PackId, number: u32, owners: &Owners) -> Result<usize> {
    // Each blob is authenticated as it is opened, so a pack that fails its hash check only
    // fails prune if a blob prune needs from it is damaged.
    let bytes = repo.read_pack_unverified(pack)?;
    let header = repo.read_pack_header(pack, bytes.len() as u64)?;
    let (offsets, _) = header.offsets();
    let mut n = 0;
    for (e, offset) in header.entries.iter().zip(offsets) {
        if owners.get(&e.blob) != Some(&number) {
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

struct Rewritten {
    files: Vec<IndexId>,
    /// The records of condemned packs that `files` named, for the condemnation file.
    condemned: Vec<IndexPack>,
}

/// Writes the index anew from `files` and the `adopted` packs, leaving out condemned packs,
/// whose records it returns (with those of the `unindexed` ones that are condemned), and packs
/// not `present` in storage.
fn rewrite_index(
    repo: &Repository,
    files: &[IndexId],
    adopted: Vec<IndexPack>,
    condemned: &HashSet<PackId>,
    mut unindexed: HashMap<PackId, IndexPack>,
    present: &HashSet<PackId>,
) -> Result<Rewritten> {
    let mut out = Rewritten {
        files: Vec::new(),
        condemned: Vec::new(),
    };
    let mut seen: HashSet<PackId> = adopted.iter().map(|p| p.id).collect();
    let mut batch: Vec<IndexPack> = adopted;
    for id in files {
        let Some(file) = read_index_if_listed(repo, *id)? else {
            continue;
        };
        for pack in file.packs {
            if !seen.insert(pack.id) || !present.contains(&pack.id) {
                continue;
            }
            if condemned.contains(&pack.id) {
                out.condemned.push(pack);
                continue;
            }
            batch.push(pack);
            if batch.len() == PACKS_PER_REWRITTEN_INDEX {
                out.files.push(write_packs(repo, &mut batch)?);
            }
        }
    }
    if !batch.is_empty() {
        out.files.push(write_packs(repo, &mut batch)?);
    }
    out.condemned.extend(
        unindexed
            .drain()
            .filter(|(p, _)| condemned.contains(p) && !seen.contains(p))
            .map(|(_, record)| record),
    );
    Ok(out)
}

fn write_packs(repo: &Repository, batch: &mut Vec<IndexPack>) -> Result<IndexId> {
    repo.write_index(&IndexFile {
        packs: std::mem::take(batch),
        ..IndexFile::default()
    })
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
