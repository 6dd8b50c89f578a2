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

/// For each used blob, the pack (an index into `Packs::ids`) that keeps it: one copy per blob,
/// so that other copies count as unused and their packs can go. `NOWHERE` until claimed.
type Owners = HashMap<BlobId, u32>;
const NOWHERE: u32 = u32::MAX;

/// The packs prune has looked at, numbered for `Owners`.
#[derive(Default)]
struct Packs {
    ids: Vec<PackId>,
}

impl Packs {
    fn number(&mut self, pack: PackId) -> u32 {
        self.ids.push(pack);
        (self.ids.len() - 1) as u32
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

    // Plan: what snapshots reach, and what each pack holds.
    let snapshots_before: HashSet<SnapshotId> = repo.snapshot_ids_indexed()?.into_iter().collect();
    let kept: HashSet<SnapshotId> = snapshots_before
        .difference(&opts.forgotten)
        .copied()
        .collect();
    report.snapshots = kept.len() as u64;
    let mut owners = used_blobs(repo, &kept)?;
    report.blobs_used = owners.len() as u64;
    let mut numbers = Packs::default();
    let condemned = repo.condemned_packs();
    let stored: HashMap<PackId, u64> = repo.list_packs()?.into_iter().collect();
    report.packs = stored.len() as u64;
    let listed_index = repo.index_ids()?;
    let mut live: HashMap<PackId, PackUse> = HashMap::new();
    let mut pending: Vec<(IndexId, Vec<PackId>)> = Vec::new();
    let mut rewrite: Vec<IndexId> = Vec::new();
    for id in &listed_index {
        let file = repo.read_index(*id)?;
        if file.condemned.is_empty() {
            rewrite.push(*id);
        } else {
            pending.push((*id, file.condemned.clone()));
        }
        for pack in &file.packs {
            if condemned.contains(&pack.id) || live.contains_key(&pack.id) {
                continue;
            }
            let intact = stored.get(&pack.id) == Some(&pack.size);
            let number = numbers.number(pack.id);
            live.insert(pack.id, pack_use(pack, number, &mut owners, intact));
        }
    }

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
            // Damage is for `check` to report; prune leaves what it cannot read alone.
            unreadable.insert(*pack);
            continue;
        };
        let entries = IndexPack::from_header(*pack, *size, &header);
        let u = pack_use(&entries, numbers.number(*pack), &mut owners, true);
        if u.used_blobs > 0 {
            adopted.push(entries);
        } else {
            unindexed.insert(*pack, entries);
        }
        live.insert(*pack, u);
    }

    // Blobs a snapshot reaches that are only in condemned packs are copied out of them.
    let mut revive: Vec<(PackId, u32)> = Vec::new();
    if owners.values().any(|owner| *owner == NOWHERE) {
        for pack in condemned.iter().filter(|p| stored.contains_key(p)) {
            let header = repo.read_pack_header(pack, stored[pack])?;
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
                && live.get(p).is_some_and(|u| u.used_blobs == 0)
        })
        .copied()
        .collect();
    unused.sort();
    report.packs_unused = unused.len() as u64;
    let mut partial: Vec<(PackId, PackUse)> = live
        .iter()
        .filter(|(p, u)| u.used_blobs > 0 && u.used_bytes < u.blob_bytes && stored.contains_key(*p))
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
    let has_work = !newly_condemned.is_empty()
        || !pending.is_empty()
        || !adopted.is_empty()
        || rewrite.len() > 1;

    if opts.dry_run {
        // What a prune would delete now: every condemnation, old and new, if nothing defers it.
        let (decision, _) = deletion_allowed(repo, &snapshots_before, opts, &[])?;
        let all: Vec<PackId> = pending
            .iter()
            .flat_map(|(_, packs)| packs.iter())
            .chain(&newly_condemned)
            .filter(|p| stored.contains_key(p))
            .copied()
            .collect();
        let bytes: u64 = all.iter().map(|p| stored[p]).sum();
        if decision.is_ok() {
            report.packs_deleted = all.len() as u64;
            report.bytes_freed = bytes.saturating_sub(report.bytes_repacked);
        } else {
            report.packs_deferred = all.len() as u64;
            report.bytes_deferred = bytes;
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
    // condemnation, then the rewritten index, and deletions last.
    for (pack, number) in &revive {
        report.blobs_revived += copy_used(repo, pack, *number, &owners)? as u64;
    }
    let number_of: HashMap<PackId, u32> = numbers
        .ids
        .iter()
        .enumerate()
        .map(|(i, p)| (*p, i as u32))
        .collect();
    for pack in &repack {
        copy_used(repo, pack, number_of[pack], &owners)?;
    }
    drop(owners);
    repo.flush()?;
    let all_condemned: HashSet<PackId> =
        condemned.iter().chain(&newly_condemned).copied().collect();
    let rewritten = rewrite_index(repo, &rewrite, adopted, &all_condemned, unindexed)?;
    let mut written: HashSet<IndexId> = rewritten.files.iter().copied().collect();
    report.index_files_written += rewritten.files.len() as u64;
    if !newly_condemned.is_empty() {
        // The condemned packs' records travel with the condemnation, so that their blobs stay
        // readable (never reusable) until the packs are deleted.
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

    // Delete what is safe to delete.
    let pending_ids: Vec<Id> = pending.iter().map(|(id, _)| id.0).collect();
    let (decision, seen) = deletion_allowed(repo, &snapshots_before, opts, &pending_ids)?;
    let foreign = foreign_index_packs(repo, &listed_index, &written)?;
    for ((id, packs), seen) in pending.iter().zip(seen) {
        let old_enough = opts.now_ns.saturating_sub(seen) >= opts.grace.as_nanos() as i64;
        let present: Vec<&PackId> = packs.iter().filter(|p| stored.contains_key(p)).collect();
        if decision.is_err() && !old_enough {
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
        if !packs.iter().any(|p| foreign.contains(p)) {
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

/// Whether condemned packs may be deleted right now: when no backup marker is present and no
/// snapshot appeared since prune listed them, no backup can depend on them (otherwise the reason,
/// for the report). Also when this client first saw each of `pending` and each marker. Markers of
/// killed backups do not count, and are removed: those whose process is gone from this machine,
/// and those seen for `STALE_MARKER` (running backups renew theirs far more often).
#[allow(clippy::type_complexity)]
fn deletion_allowed(
    repo: &Repository,
    snapshots_before: &HashSet<SnapshotId>,
    opts: &PruneOptions,
    pending: &[Id],
) -> Result<(std::result::Result<(), String>, Vec<i64>)> {
    let markers = repo.backup_markers()?;
    let marker_ids: Vec<Id> = markers.iter().filter_map(|m| Id::from_hex(m)).collect();
    let mut seen = if opts.dry_run {
        vec![opts.now_ns; pending.len() + marker_ids.len()]
    } else {
        repo.first_seen(&[pending, &marker_ids].concat(), opts.now_ns)?
    };
    let marker_seen = seen.split_off(pending.len());
    let mut live = markers.len() - marker_ids.len();
    for (id, seen) in marker_ids.iter().zip(marker_seen) {
        let stale = opts.now_ns.saturating_sub(seen) >= STALE_MARKER.as_nanos() as i64;
        if !stale && !repo.marker_is_dead(&id.to_hex()) {
            live += 1;
        } else if !opts.dry_run {
            repo.remove_marker(&id.to_hex())?;
        }
    }
    if live > 0 {
        return Ok((
            Err(format!(
                "{live} backup marker(s) in locks/: a backup may be running, so condemned packs are deleted by a prune {} from now, or once no backup runs",
                humanize(opts.grace)
            )),
            seen,
        ));
    }
    let now: HashSet<SnapshotId> = repo.snapshot_ids()?.into_iter().collect();
    if !now.is_subset(snapshots_before) {
        return Ok((
            Err("a snapshot was written while prune ran, so condemned packs are deleted by the next prune".to_string()),
            seen,
        ));
    }
    Ok((Ok(()), seen))
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
        let plain = match repo.open_blob(&e.blob, stored, e.raw_len) {
            Ok(plain) => plain,
            // A damaged copy that the index no longer places here is not needed.
            Err(_) if repo.lookup(&e.blob)?.is_some_and(|l| l.pack != *pack) => continue,
            Err(err) => return Err(Error::new(
                err.kind,
                format!("{err}; a snapshot needs it: run `cairn repair index --read-data` and `cairn repair snapshots` first"),
            )),
        };
        repo.store_again(&e.blob, &plain)?;
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
/// whose records it returns (with those of the `unindexed` ones that are condemned).
fn rewrite_index(
    repo: &Repository,
    files: &[IndexId],
    adopted: Vec<IndexPack>,
    condemned: &HashSet<PackId>,
    mut unindexed: HashMap<PackId, IndexPack>,
) -> Result<Rewritten> {
    let mut out = Rewritten {
        files: Vec::new(),
        condemned: Vec::new(),
    };
    let mut seen: HashSet<PackId> = adopted.iter().map(|p| p.id).collect();
    let mut batch: Vec<IndexPack> = adopted;
    for id in files {
        for pack in repo.read_index(*id)?.packs {
            if !seen.insert(pack.id) {
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

/// Packs named by index files that appeared since prune listed the index, other than its own.
fn foreign_index_packs(
    repo: &Repository,
    listed: &[IndexId],
    written: &HashSet<IndexId>,
) -> Result<HashSet<PackId>> {
    let mut out = HashSet::new();
    for id in repo.index_ids()? {
        if listed.contains(&id) || written.contains(&id) {
            continue;
        }
        match repo.read_index(id) {
            Ok(file) => out.extend(file.packs.iter().map(|p| p.id)),
            Err(e) if e.kind == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}
