//! Prune's step 2 (repo-format.md, "Garbage collection"): from the survey and the used blobs,
//! what to copy, what to condemn, and which condemnations may be carried out.
//!
//! Invariant: nothing here writes; a dry run is "stop after the plan".

use super::claims::{Claims, PackUse, Packs};
use super::index_batch::is_small;
use super::survey::Survey;
use super::{humanize, PruneReport};
use crate::{Error, ErrorKind, Repository, Result};
use cairn_format::index::IndexPack;
use cairn_format::{IndexId, PackId, SnapshotId};
use std::collections::{BTreeMap, HashMap, HashSet};

/// What a prune will do, computed by `Survey::plan`.
pub struct PrunePlan<'r> {
    pub(crate) repo: &'r Repository,
    pub(crate) survey_index: Vec<IndexId>,
    pub(crate) snapshots: Vec<SnapshotId>,
    pub(crate) claims: Claims,
    pub(crate) packs: Packs,
    pub(crate) stored: BTreeMap<PackId, u64>,
    pub(crate) condemned: HashSet<PackId>,
    /// Condemnation files already in the repository, the packs each condemns, and whether
    /// every session that may depend on them has ended.
    pub(crate) pending: Vec<(IndexId, Vec<PackId>, bool)>,
    /// Index files that are not condemnations: rewritten when the index changes.
    pub(crate) rewrite: Vec<IndexId>,
    /// How many of them are small (`index_batch::is_small`): many are merged into fewer.
    pub(crate) small_index_files: usize,
    /// Packs no index file names whose blobs the snapshots use: they join the index.
    pub(crate) adopted: Vec<IndexPack>,
    /// Packs no index file names, by their headers.
    pub(crate) unindexed: BTreeMap<PackId, IndexPack>,
    /// Condemned packs holding used blobs found nowhere else: copied out.
    pub(crate) revive: Vec<PackId>,
    pub(crate) unused: Vec<PackId>,
    pub(crate) repack: Vec<PackId>,
    /// An index file (not a condemnation) still names a condemned pack, as a prune killed
    /// before it removed the files it had rewritten leaves: the index must be rewritten
    /// before that pack goes.
    pub(crate) stale_records: bool,
    /// Sessions of others still running: they defer new condemnations.
    pub(crate) live_sessions: usize,
    pub(crate) grace: std::time::Duration,
    pub(crate) started: std::time::Instant,
    pub(crate) report: PruneReport,
}

/// Small index files prune may leave as they are; more are merged into fewer by a rewrite.
/// Full ones are not counted: merging them makes as many again, and at 10 million blobs
/// rewriting 450 MB of them was most of a prune that had nothing to delete.
const MAX_SMALL_INDEX_FILES: usize = 64;

/// What the index files listed in step 1 say of the packs.
struct Indexed {
    /// Index files that are not condemnations.
    rewrite: Vec<IndexId>,
    /// How many of those are small (`index_batch::is_small`).
    small: usize,
    /// An index file names a condemned pack (`PrunePlan::stale_records`).
    stale_records: bool,
    /// Packs a running session may still be filling: named only by index files it may have
    /// written. They are not condemned while it runs, so it need not copy them.
    young: HashSet<PackId>,
}

/// The packs no index file names.
struct Unindexed {
    /// Those whose headers could be read, with what each holds.
    headers: BTreeMap<PackId, IndexPack>,
    /// Those whose headers could not be read, but for damaged ones no process may still name
    /// (condemned, as holding nothing): left alone.
    unreadable: HashSet<PackId>,
    /// All of them, while another process may still name them in an index file: young.
    theirs: HashSet<PackId>,
}

impl<'r> Survey<'r> {
    /// Step 2, "Plan": classifies every pack, chooses what to repack, and decides which
    /// existing condemnations may be carried out. `max_unused`: repack partly used packs, most
    /// wasteful first, until the unused bytes left in packs are at most this share of the used
    /// bytes.
    pub fn plan(mut self, max_unused: f64) -> Result<PrunePlan<'r>> {
        self.report.snapshots = self.snapshots.len() as u64;
        let stored: BTreeMap<PackId, u64> = self.repo.list_packs()?.into_iter().collect();
        self.report.packs = stored.len() as u64;

        // Each used blob keeps one copy: the first in the packs index files name, then in
        // packs no index file names that may join the index, then in condemned packs (revived
        // from there), then in packs another process may still index.
        let mut packs = Packs::default();
        let Indexed {
            rewrite,
            small,
            stale_records,
            mut young,
        } = self.claim_indexed(&stored, &mut packs)?;
        let Unindexed {
            headers: mut unindexed,
            unreadable,
            theirs,
        } = self.claim_unindexed(&stored, &mut packs)?;
        let revive = self.settle_claims(&stored, &mut packs, &unindexed, &theirs)?;

        // Classify the packs: used, adopted, young, unused, partly used and repacked.
        let adopted = adopt(&mut unindexed, &packs, &theirs);
        if self.first_live().is_none() {
            young.clear();
        }
        young.extend(theirs);
        let unused = self.unused(&stored, &unreadable, &young, &packs);
        self.report.packs_unused = unused.len() as u64;
        let repack = self.choose_repacks(&stored, &young, &packs, max_unused);
        // A pack no index names that is repacked is condemned, not adopted: its record goes
        // with the condemnation, never into the index, or the index would name it once it is
        // deleted.
        let (doomed, adopted): (Vec<IndexPack>, Vec<IndexPack>) =
            adopted.into_iter().partition(|p| repack.contains(&p.id));
        unindexed.extend(doomed.into_iter().map(|p| (p.id, p)));

        // And the condemnations found in step 1: which may be carried out.
        let pending = self.may_be_carried_out();
        let Survey {
            repo,
            opts,
            started,
            index,
            condemned,
            live,
            snapshots,
            claims,
            report,
            ..
        } = self;
        let mut plan = PrunePlan {
            repo,
            survey_index: index.iter().map(|(id, _)| *id).collect(),
            snapshots,
            claims,
            packs,
            stored,
            condemned,
            pending,
            rewrite,
            small_index_files: small,
            adopted,
            unindexed,
            revive,
            unused,
            repack,
            stale_records,
            live_sessions: live.len(),
            grace: opts.grace,
            started,
            report,
        };
        if opts.dry_run {
            plan.dry_run_report();
        }
        plan.report.duration = started.elapsed();
        Ok(plan)
    }

    /// The observation that first saw the earliest session of another process still running.
    fn first_live(&self) -> Option<u64> {
        self.live.iter().map(|(_, seen)| *seen).min()
    }

    /// Whether a session may depend on what an index file first seen by observation `seen`
    /// names or a condemnation takes away: if it was seen running then (or before).
    fn concerns(&self, seen: u64) -> bool {
        self.first_live().is_some_and(|first| first <= seen)
    }

    /// Offers the packs of the index files listed in step 1, in the order listed, and notes
    /// which of them are young. A missing or truncated pack keeps nothing.
    fn claim_indexed(
        &mut self,
        stored: &BTreeMap<PackId, u64>,
        packs: &mut Packs,
    ) -> Result<Indexed> {
        let mut young: HashSet<PackId> = HashSet::new();
        let mut settled: HashSet<PackId> = HashSet::new();
        let mut stale_records = false;
        let mut rewrite = Vec::new();
        let mut small = 0;
        let ids: Vec<IndexId> = self.index.iter().map(|(id, _)| *id).collect();
        let concerns: HashMap<IndexId, bool> = self
            .index
            .iter()
            .map(|(id, seen)| (*id, self.concerns(*seen)))
            .collect();
        let (condemned, claims) = (&self.condemned, &mut self.claims);
        self.repo.for_each_index_file(&ids, |id, file| {
            // A file gone since step 1 was replaced by another prune or `repair index`, whose
            // files this view lacks: its packs would look unindexed, and a writer's pack among
            // them adopted, then deleted before a late index file names it (seed 40104).
            let Some(file) = file else {
                return Err(Error::new(
                    ErrorKind::Locked,
                    format!(
                        "index file {} was replaced by another process while this prune ran",
                        id.short()
                    ),
                ));
            };
            if file.condemned.is_empty() {
                rewrite.push(id);
                small += usize::from(is_small(&file));
                stale_records |= file.packs.iter().any(|p| condemned.contains(&p.id));
            }
            let named = if concerns[&id] {
                &mut young
            } else {
                &mut settled
            };
            named.extend(file.packs.iter().map(|p| p.id));
            for pack in file.packs.iter().filter(|p| !condemned.contains(&p.id)) {
                if let Some(number) = packs.add(pack) {
                    if stored.get(&pack.id) == Some(&pack.size) {
                        claims.offer(pack, number)?;
                    }
                }
            }
            Ok(())
        })?;
        young.retain(|p| !settled.contains(p));
        Ok(Indexed {
            rewrite,
            small,
            stale_records,
            young,
        })
    }

    /// Offers the packs no index file names: a running session's not yet indexed, a killed
    /// one's, or a concurrent prune's copies. Their headers say what they hold; used ones join
    /// the index, for a snapshot may need them there. While another process may still name
    /// them in an index file (one running, or fenced off and perhaps only stopped), they are
    /// its: kept, left for it to index, and not offered here (`settle_claims` offers them last).
    fn claim_unindexed(
        &mut self,
        stored: &BTreeMap<PackId, u64>,
        packs: &mut Packs,
    ) -> Result<Unindexed> {
        let repo = self.repo;
        let loose: Vec<(PackId, u64)> = stored
            .iter()
            .filter(|(p, _)| !self.condemned.contains(*p) && !packs.numbers.contains_key(*p))
            .map(|(p, s)| (*p, *s))
            .collect();
        let others_index = !loose.is_empty()
            && (self.first_live().is_some() || self.fenced_waiting || repo.others_may_index()?);
        let mut headers: BTreeMap<PackId, IndexPack> = BTreeMap::new();
        let mut unreadable: HashSet<PackId> = HashSet::new();
        let mut theirs: HashSet<PackId> = HashSet::new();
        for (pack, size) in loose {
            if others_index {
                theirs.insert(pack);
            }
            let entries = match repo.read_pack_header(&pack, size) {
                Ok(header) => IndexPack::from_header(pack, size, &header),
                // No process may still name it and its header fails authentication: an upload
                // killed where the store writes in place (rclone 1.60), garbage like a loose
                // pack holding no used blob. None of its blobs counts as a copy, so if a
                // snapshot needs one, prune refuses before it condemns anything.
                Err(e) if e.kind == ErrorKind::Corrupt && !others_index => IndexPack {
                    id: pack,
                    size,
                    blobs: Vec::new(),
                },
                // A pack removed since the listing is no concern, and one that may still be
                // written is its writer's: prune leaves what it cannot read alone.
                Err(_) => {
                    unreadable.insert(pack);
                    continue;
                }
            };
            if !others_index {
                let number = packs.add(&entries).expect("a pack is listed once");
                self.claims.offer(&entries, number)?;
            }
            headers.insert(pack, entries);
        }
        Ok(Unindexed {
            headers,
            unreadable,
            theirs,
        })
    }

    /// Settles which copy of each used blob is kept. Blobs a snapshot reaches that no other
    /// pack holds are copied out of condemned packs, which are read only then; returns those
    /// that hold used blobs. Refuses if a used blob is in no intact pack.
    ///
    /// Packs another process may still index (`theirs`, of `unindexed`) come after the
    /// condemned ones: a copy kept there is in no index file until that process names it, and
    /// it may never do so (killed, or fenced off for good). Kept there, a blob whose indexed
    /// copy was in a condemned pack left the index when the condemnation was carried out
    /// (simulation seed 2000170). They still count for a snapshot whose session committed
    /// after step 1 listed the index files, whose packs only its own late index file names.
    fn settle_claims(
        &mut self,
        stored: &BTreeMap<PackId, u64>,
        packs: &mut Packs,
        unindexed: &BTreeMap<PackId, IndexPack>,
        theirs: &HashSet<PackId>,
    ) -> Result<Vec<PackId>> {
        let repo = self.repo;
        let (mut blobs_used, mut missing) = self.claims.settle(packs)?;
        let mut revive: Vec<PackId> = Vec::new();
        if missing > 0 {
            let mut doomed: Vec<&PackId> = self
                .condemned
                .iter()
                .filter(|p| stored.contains_key(p))
                .collect();
            doomed.sort();
            for pack in doomed {
                let entries = match repo.read_pack_header(pack, stored[pack]) {
                    Ok(header) => IndexPack::from_header(*pack, stored[pack], &header),
                    // Condemned for a damaged header (`check`, `repair index`): the records
                    // its condemnation carries locate the blobs instead.
                    Err(e) if e.kind == ErrorKind::Corrupt => IndexPack {
                        id: *pack,
                        size: stored[pack],
                        blobs: repo.blobs_in_pack(pack)?,
                    },
                    // Deleted since the listing: its condemnation was carried out.
                    Err(e) if e.kind == ErrorKind::NotFound => continue,
                    // Skipped, its blobs could be kept in a pack only another process may
                    // index, and would leave the index with this pack's condemnation.
                    Err(e) => return Err(e),
                };
                if let Some(number) = packs.add(&entries) {
                    self.claims.offer(&entries, number)?;
                    revive.push(*pack);
                }
            }
            (blobs_used, missing) = self.claims.settle(packs)?;
        }
        if missing > 0 {
            for entries in unindexed.values().filter(|p| theirs.contains(&p.id)) {
                let number = packs.add(entries).expect("a pack is listed once");
                self.claims.offer(entries, number)?;
            }
            (blobs_used, missing) = self.claims.settle(packs)?;
        }
        self.report.blobs_used = blobs_used;
        if missing > 0 {
            return Err(self.missing_blobs(missing));
        }
        revive.retain(|p| packs.get(p).is_some_and(|u| u.used_blobs > 0));
        Ok(revive)
    }

    /// Why prune refuses when `missing` blobs that snapshots reach are in no intact pack: the
    /// view was stale (another prune changed the index meanwhile), or they are lost.
    fn missing_blobs(&self, missing: u64) -> Error {
        let mut now = match self.repo.index_ids() {
            Ok(ids) => ids,
            Err(e) => return e,
        };
        now.sort();
        if now != self.index.iter().map(|(id, _)| *id).collect::<Vec<_>>() {
            return Error::new(
                ErrorKind::Locked,
                format!("{missing} blobs that snapshots reach are in no pack this prune knows of, and another prune changed the index while this one ran"),
            );
        }
        Error::corrupt(format!(
            "{missing} blobs that snapshots reach are in no intact pack: prune would lose track of them; run `cairn check`"
        ))
    }

    /// The packs that hold no used blob, less those condemned, unreadable or young: condemned
    /// now.
    fn unused(
        &self,
        stored: &BTreeMap<PackId, u64>,
        unreadable: &HashSet<PackId>,
        young: &HashSet<PackId>,
        packs: &Packs,
    ) -> Vec<PackId> {
        stored
            .keys()
            .filter(|p| {
                !self.condemned.contains(p)
                    && !unreadable.contains(p)
                    && !young.contains(p)
                    && packs.get(p).is_some_and(|u| u.used_blobs == 0)
            })
            .copied()
            .collect()
    }

    /// Chooses the partly used packs to repack, most unused bytes first, until the unused
    /// bytes left are at most `max_unused` of the used bytes. Young packs are never repacked.
    fn choose_repacks(
        &mut self,
        stored: &BTreeMap<PackId, u64>,
        young: &HashSet<PackId>,
        packs: &Packs,
        max_unused: f64,
    ) -> Vec<PackId> {
        let condemned = &self.condemned;
        let live_packs = || packs.list.iter().filter(|(p, _)| !condemned.contains(p));
        let mut partial: Vec<(PackId, PackUse)> = live_packs()
            .filter(|(p, u)| {
                u.used_blobs > 0
                    && u.used_bytes < u.blob_bytes
                    && stored.contains_key(p)
                    && !young.contains(p)
            })
            .copied()
            .collect();
        partial.sort_by_key(|(p, u)| (std::cmp::Reverse(u.blob_bytes - u.used_bytes), *p));
        let used_bytes: u64 = live_packs().map(|(_, u)| u.used_bytes).sum();
        let mut unused_kept: u64 = partial
            .iter()
            .map(|(_, u)| u.blob_bytes - u.used_bytes)
            .sum();
        let allowed = (used_bytes as f64 * max_unused) as u64;
        let report = &mut self.report;
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
        repack
    }

    /// The condemnation files listed in step 1, each with the packs it condemns and whether it
    /// may be carried out: whether no session it concerns is running (repo-format.md,
    /// "Observations").
    fn may_be_carried_out(&mut self) -> Vec<(IndexId, Vec<PackId>, bool)> {
        std::mem::take(&mut self.condemnations)
            .into_iter()
            .map(|(id, packs)| {
                let seen = self
                    .index
                    .iter()
                    .find(|(i, _)| *i == id)
                    .map_or(self.observation, |(_, s)| *s);
                (id, packs, !self.concerns(seen))
            })
            .collect()
    }
}

/// Takes the packs that hold used blobs out of `unindexed`, packs no index names: they are
/// adopted into the index, for a snapshot may need them there. Not `theirs`: a process that
/// may still write an index file (one fenced off but perhaps only stopped) names them itself,
/// and an adopted pack could be repacked and deleted before that late file names it again
/// (simulation seed 1014). A used blob they hold stays theirs meanwhile: a committed snapshot's
/// blobs are in packs its session indexed before it committed, and a blob whose pack was
/// condemned since is revived from it (`settle_claims`).
fn adopt(
    unindexed: &mut BTreeMap<PackId, IndexPack>,
    packs: &Packs,
    theirs: &HashSet<PackId>,
) -> Vec<IndexPack> {
    let adopted: Vec<IndexPack> = unindexed
        .iter()
        .filter(|(p, _)| !theirs.contains(*p) && packs.get(p).is_some_and(|u| u.used_blobs > 0))
        .map(|(_, entries)| entries.clone())
        .collect();
    unindexed.retain(|p, _| !adopted.iter().any(|a| a.id == *p));
    adopted
}

impl PrunePlan<'_> {
    /// What the plan reports before it is carried out.
    pub fn report(&self) -> &PruneReport {
        &self.report
    }

    pub(crate) fn newly_condemned(&self) -> Vec<PackId> {
        self.unused.iter().chain(&self.repack).copied().collect()
    }

    /// Whether carrying out the plan changes the repository at all.
    pub(crate) fn rewrites_index(&self) -> bool {
        !self.unused.is_empty()
            || !self.repack.is_empty()
            || !self.adopted.is_empty()
            || self.stale_records
            || self.small_index_files > MAX_SMALL_INDEX_FILES
    }

    pub(crate) fn has_work(&self) -> bool {
        self.rewrites_index() || !self.pending.is_empty() || !self.revive.is_empty()
    }

    /// Why new condemnations wait, when sessions of others run.
    pub(crate) fn sessions_running(&self, n: usize) -> String {
        format!(
            "{n} backup marker(s) in locks/: a backup may be running, so condemned packs are deleted by a prune once it has ended (or has not renewed its marker for {})",
            humanize(self.grace)
        )
    }

    /// Fills in what a prune would delete now: existing condemnations whose sessions have
    /// ended, and new ones when no session of another process runs.
    fn dry_run_report(&mut self) {
        let size = |packs: &mut dyn Iterator<Item = &PackId>| -> (u64, u64) {
            packs
                .filter_map(|p| self.stored.get(p))
                .fold((0, 0), |(n, b), s| (n + 1, b + s))
        };
        let new = self.newly_condemned();
        let now_ok = self.live_sessions == 0;
        let (mut deleted, mut freed) = (0, 0);
        let (mut deferred, mut kept) = (0, 0);
        for (_, packs, ok) in &self.pending {
            let (n, b) = size(&mut packs.iter());
            if *ok {
                deleted += n;
                freed += b;
            } else {
                deferred += n;
                kept += b;
            }
        }
        let (n, b) = size(&mut new.iter());
        if now_ok {
            deleted += n;
            freed += b;
        } else {
            deferred += n;
            kept += b;
        }
        self.report.packs_deleted = deleted;
        self.report.bytes_freed = freed.saturating_sub(self.report.bytes_repacked);
        self.report.packs_deferred = deferred;
        self.report.bytes_deferred = kept;
        if deferred > 0 {
            self.report.deferred_because = Some(self.sessions_running(self.live_sessions));
        }
    }
}
