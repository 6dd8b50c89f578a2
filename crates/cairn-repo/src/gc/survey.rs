//! Prune's step 1 (repo-format.md, "Garbage collection"): what the repository holds and who is
//! at work in it, observed in this order, each listing at least the store's listing lag after
//! the one before:
//!
//! 1. the index files, and what each condemns;
//! 2. the sessions in `locks/`: settled ones end (a fenced session's markers go, and so does a
//!    committed one's once its snapshot is written; until then, what it reaches is used), and
//!    silent ones are fenced off;
//! 3. the snapshots, *S₀*.
//!
//! Invariant: a session still running that wrote an index file listed in 1 is listed in 2,
//! and a session that ended before 2 has its snapshot in 3. The observation is recorded in the
//! cache, so that later prunes of this client know which sessions each condemnation and each
//! index file may concern.

use super::claims::Claims;
use super::session::{remove_lock, settle, verdict_name, SessionId};
use super::PruneReport;
use crate::cache::IndexSummary;
use crate::{Error, ErrorKind, Host, Repository, Result};
use cairn_backend::FileType;
use cairn_crypto::file_id;
use cairn_format::index::IndexFile;
use cairn_format::marker::{Marker, Verdict, MAX_LOCK_LEN};
use cairn_format::{BlobId, Id, IndexId, PackId, SnapshotId, TreeId};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct SurveyOptions {
    /// How long this client must have seen a session's newest marker before it takes the
    /// session for dead and fences it off.
    pub grace: Duration,
    /// Change nothing: no fencing, no commits completed, no observation recorded.
    pub dry_run: bool,
}

/// What prune's step 1 found; the engine adds the used blobs, then makes a plan.
pub struct Survey<'r> {
    pub(crate) repo: &'r Repository,
    pub(crate) opts: SurveyOptions,
    pub(crate) started: Instant,
    /// The index files listed, in name order, and the observation that first saw each.
    pub(crate) index: Vec<(IndexId, u64)>,
    /// Of those, the condemnation files and the packs each condemns.
    pub(crate) condemnations: Vec<(IndexId, Vec<PackId>)>,
    /// Every pack a listed index file condemns.
    pub(crate) condemned: HashSet<PackId>,
    /// Other processes' sessions still running, and the observation that first saw each.
    pub(crate) live: Vec<(SessionId, u64)>,
    pub(crate) observation: u64,
    pub(crate) snapshots: Vec<SnapshotId>,
    /// Root trees of snapshots whose session won its commit but has not written them yet.
    pub(crate) committing: Vec<TreeId>,
    /// A fenced session's process may still run, and index the packs it wrote: packs no index
    /// names are young.
    pub(crate) fenced_waiting: bool,
    pub(crate) claims: Claims,
    pub(crate) report: PruneReport,
}

/// The files in `locks/` of other processes.
#[derive(Default)]
pub(crate) struct Locks {
    /// Markers by session, each session's in sequence order.
    pub sessions: BTreeMap<SessionId, Vec<(String, Marker)>>,
    pub verdicts: BTreeMap<String, Verdict>,
    /// Files that decode as neither: a session of another version, kept alive as long as
    /// they are there.
    pub unreadable: Vec<String>,
}

impl Locks {
    /// Sessions of other processes that are listed and not fenced off: they may still write.
    pub fn writers(&self) -> usize {
        self.sessions
            .keys()
            .filter(|s| {
                !matches!(
                    self.verdicts.get(&verdict_name(s)),
                    Some(Verdict::Fenced { .. })
                )
            })
            .count()
            + self.unreadable.len()
    }

    /// Whether a process of another session may still write an index file: one running, or
    /// fenced off but perhaps only stopped. Packs no index names may be its, to be named by
    /// it later; were another process to index them, a prune could delete them before that
    /// late index file names them again.
    pub fn may_index(&self, host: &dyn Host) -> bool {
        let gone = |machine: &[u8], pid: u32| crate::host::process_gone(host, machine, pid);
        let running = self.sessions.iter().any(|(s, markers)| {
            let (_, newest) = markers.last().expect("a session has a marker");
            match self.verdicts.get(&verdict_name(s)) {
                // It flushed before it committed.
                Some(Verdict::Committed(_)) => false,
                Some(Verdict::Fenced { pid, machine }) => !gone(machine, *pid),
                None => !gone(&newest.machine, newest.pid),
            }
        });
        let fenced = self.verdicts.values().any(|v| match v {
            Verdict::Fenced { pid, machine } => !gone(machine, *pid),
            Verdict::Committed(_) => false,
        });
        running || fenced || !self.unreadable.is_empty()
    }
}

impl Repository {
    /// Whether another process may yet name in an index file some pack that no index names
    /// now (`Locks::may_index`). Asked after `data/` was listed: a session's marker comes
    /// before its packs, so a session that wrote a listed pack is in a listing this long after.
    pub fn others_may_index(&self) -> Result<bool> {
        self.host.sleep(self.backend.listing_lag());
        Ok(self.read_locks()?.may_index(self.host.as_ref()))
    }

    /// The files in `locks/`, this process's own markers apart.
    pub(crate) fn read_locks(&self) -> Result<Locks> {
        let mut locks = Locks::default();
        let mut names: Vec<String> = self
            .backend
            .list(FileType::Lock)?
            .into_iter()
            .map(|e| e.name)
            .filter(|n| !self.owns_marker(n))
            .collect();
        names.sort();
        for name in names {
            let bytes = match self
                .backend
                .read_at_most(FileType::Lock, &name, MAX_LOCK_LEN)
            {
                Ok(b) => b,
                // Removed since the listing: its session ended.
                Err(e) if e.kind == cairn_backend::BackendErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            if Verdict::is_verdict(&bytes) {
                if let Ok(v) = Verdict::decode(&bytes) {
                    locks.verdicts.insert(name, v);
                    continue;
                }
            } else if let Ok(m) = Marker::decode(&bytes) {
                locks.sessions.entry(m.session).or_default().push((name, m));
                continue;
            }
            locks.unreadable.push(name);
        }
        for markers in locks.sessions.values_mut() {
            markers.sort_by_key(|(_, m)| m.sequence);
        }
        Ok(locks)
    }

    /// Prune's step 1 (repo-format.md, "Garbage collection").
    pub fn survey(&self, opts: &SurveyOptions) -> Result<Survey<'_>> {
        let started = Instant::now();
        let lag = self.backend.listing_lag();
        let mut report = PruneReport::default();
        if let Some((id, why)) = self.sync_index()?.damaged.first() {
            return Err(Error::corrupt(format!(
                "index file {} is damaged ({why}): prune cannot tell which blobs exist; run `cairn repair index` first",
                id.short()
            )));
        }

        // 1. Index files, and every condemnation, including those written since the sync: a
        // pack one names must neither claim blobs nor be classified. What the cache does not
        // know of a file is read, one file at a time; the plan reads them all again.
        let mut index = self.index_ids()?;
        index.sort();
        let mut condemned = self.condemned_packs();
        let mut condemnations = Vec::new();
        let mut n_indexed: u64 = 0;
        let mut listed = Vec::new();
        for id in index {
            let summary = match self.cache.index_summary(&id)? {
                Some(s) => s,
                None => {
                    let Some(file) = self.read_index_if_listed(id)? else {
                        continue;
                    };
                    let s = IndexSummary::of(&file);
                    self.cache.keep_index_summary(&id, &s)?;
                    s
                }
            };
            listed.push(id);
            n_indexed += summary.blobs;
            if !summary.condemned.is_empty() {
                condemned.extend(summary.condemned.iter().copied());
                condemnations.push((id, summary.condemned));
            }
        }

        // 2. Sessions.
        self.host.sleep(lag);
        let (live_ids, committing, fenced_waiting) = self.sessions(opts, &mut report)?;
        let (observation, index_seen, session_seen) =
            self.cache.observe(&listed, &live_ids, !opts.dry_run)?;

        // 3. Snapshots, with the index brought up to date after them: every blob a listed
        // snapshot reaches is then known.
        self.host.sleep(lag);
        let mut snapshots = self.snapshot_ids_indexed()?;
        snapshots.sort();
        Ok(Survey {
            repo: self,
            opts: opts.clone(),
            started,
            index: listed.into_iter().zip(index_seen).collect(),
            condemnations,
            condemned,
            live: live_ids.into_iter().zip(session_seen).collect(),
            observation,
            snapshots,
            committing,
            fenced_waiting,
            claims: Claims::new(self.scratch_dir(), Claims::partitions_for(n_indexed)),
            report,
        })
    }

    /// Settles what can be settled of the sessions in `locks/`; returns those still running,
    /// the root trees of snapshots committed but not yet written, and whether a fenced session
    /// may still wake.
    fn sessions(
        &self,
        opts: &SurveyOptions,
        report: &mut PruneReport,
    ) -> Result<(Vec<SessionId>, Vec<TreeId>, bool)> {
        let backend = self.backend.as_ref();
        let mut locks = self.read_locks()?;
        let machine = self.host.machine();
        let now = self.host.boot_clock().as_nanos() as u64;
        let seen = self.newest_markers_seen(&locks, &machine, now, opts)?;
        // Snapshots written already: only a session itself writes its snapshot, once.
        let written: HashSet<SnapshotId> = if locks.verdicts.is_empty() {
            HashSet::new()
        } else {
            self.snapshot_ids()?.into_iter().collect()
        };
        let own = self.session_id();
        let mut live = Vec::new();
        let mut fenced_waiting = false;
        let mut committing = Vec::new();
        for (session, markers) in &locks.sessions {
            if Some(*session) == own {
                continue;
            }
            let name = verdict_name(session);
            let (marker_name, newest) = markers.last().expect("a session has a marker");
            let dead = crate::host::process_gone(self.host.as_ref(), &newest.machine, newest.pid);
            let silent = Id::from_hex(marker_name)
                .and_then(|id| seen.get(&id))
                .is_some_and(|t| now.saturating_sub(*t) >= opts.grace.as_nanos() as u64);
            let verdict = match locks.verdicts.remove(&name) {
                Some(v) => Some(v),
                None if opts.dry_run => None,
                // Its process is gone, so it can never commit: no verdict needs to say so.
                None if dead => Some(fenced(newest)),
                // Silent for the grace period: fenced off, unless it commits first. Without
                // exclusive creates the race cannot be run, and it stays until it ends.
                // Asked only here: on S3 the answer takes a probe that writes, which a dry run
                // must not make.
                None if silent && backend.guarantees().exclusive_create => {
                    let v = settle(backend, session, &fenced(newest))?;
                    if matches!(v, Verdict::Fenced { .. }) {
                        report.sessions_fenced += 1;
                        fenced_waiting = true;
                    }
                    Some(v)
                }
                None => None,
            };
            let ended = match verdict {
                None => {
                    live.push(*session);
                    false
                }
                Some(Verdict::Fenced { .. }) => true,
                Some(Verdict::Committed(snapshot)) => {
                    match self.snapshot_to_come(&name, &snapshot, &written, dead, opts)? {
                        Some(tree) => {
                            committing.push(tree);
                            false
                        }
                        None => true,
                    }
                }
            };
            if ended && !opts.dry_run {
                for (name, _) in markers {
                    remove_lock(backend, name)?;
                }
            }
        }
        fenced_waiting |= self.settle_verdicts_without_markers(&locks.verdicts, opts)?;
        for name in &locks.unreadable {
            live.push(file_id(name.as_bytes()).0[..16].try_into().unwrap());
        }
        live.sort();
        Ok((live, committing, fenced_waiting))
    }

    /// Of a session whose verdict *committed* (named `name`) carries `snapshot`: the root tree
    /// of the snapshot while it is still to be written, or `None` once the session has ended.
    fn snapshot_to_come(
        &self,
        name: &str,
        snapshot: &[u8],
        written: &HashSet<SnapshotId>,
        dead: bool,
        opts: &SurveyOptions,
    ) -> Result<Option<TreeId>> {
        let id = SnapshotId(file_id(snapshot));
        if written.contains(&id) || dead {
            // Written (the session will not write it again), or never to be written: the
            // verdict is done with.
            if !opts.dry_run {
                remove_lock(self.backend.as_ref(), name)?;
            }
            Ok(None)
        } else {
            // The session writes it when it goes on: what it reaches is used.
            Ok(Some(self.open_snapshot(&id, snapshot)?.tree))
        }
    }

    /// When this client first saw each session's newest marker, by the boot clock of this
    /// machine and boot (`now`, on `machine`): what tells a silent session. Recorded in the
    /// cache, unless this is a dry run.
    fn newest_markers_seen(
        &self,
        locks: &Locks,
        machine: &[u8],
        now: u64,
        opts: &SurveyOptions,
    ) -> Result<HashMap<Id, u64>> {
        let newest: Vec<Id> = locks
            .sessions
            .values()
            .filter_map(|m| Id::from_hex(&m.last().expect("a session has a marker").0))
            .collect();
        Ok(newest
            .iter()
            .copied()
            .zip(
                self.cache
                    .markers_seen(&newest, machine, now, !opts.dry_run)?,
            )
            .collect())
    }

    /// Settles the `verdicts` whose session has no marker left; returns whether a fenced
    /// session may still wake. A committed session removes its markers only after its snapshot
    /// exists, so its verdict is done with. A fenced one stays, so that its session, should it
    /// wake, cannot commit, until its process is known gone.
    fn settle_verdicts_without_markers(
        &self,
        verdicts: &BTreeMap<String, Verdict>,
        opts: &SurveyOptions,
    ) -> Result<bool> {
        let mut fenced_waiting = false;
        for (name, v) in verdicts {
            let done = match v {
                Verdict::Committed(_) => true,
                Verdict::Fenced { pid, machine } => {
                    crate::host::process_gone(self.host.as_ref(), machine, *pid)
                }
            };
            if done && !opts.dry_run {
                remove_lock(self.backend.as_ref(), name)?;
            } else if !done && matches!(v, Verdict::Fenced { .. }) {
                fenced_waiting = true;
            }
        }
        Ok(fenced_waiting)
    }

    /// An index file, or `None` if it was removed since it was listed (by a concurrent prune).
    pub(crate) fn read_index_if_listed(&self, id: IndexId) -> Result<Option<IndexFile>> {
        match self.read_index(id) {
            Ok(file) => Ok(Some(file)),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Calls `f` with each of `ids` in order and the index file, as `read_index_if_listed`
    /// gives it. A second thread reads and decodes the next files meanwhile: reading is most of
    /// a pass over a large index, and `f` must see the files in order.
    pub(crate) fn for_each_index_file(
        &self,
        ids: &[IndexId],
        mut f: impl FnMut(IndexId, Option<IndexFile>) -> Result<()>,
    ) -> Result<()> {
        std::thread::scope(|s| {
            // Two files ahead at most: each may be some MiB decoded.
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            s.spawn(move || {
                for id in ids {
                    let read = self.read_index_if_listed(*id);
                    let failed = read.is_err();
                    if tx.send((*id, read)).is_err() || failed {
                        return;
                    }
                }
            });
            for (id, read) in rx {
                f(id, read?)?;
            }
            Ok(())
        })
    }
}

/// The verdict that fences off the session whose newest marker is `newest`.
fn fenced(newest: &Marker) -> Verdict {
    Verdict::Fenced {
        pid: newest.pid,
        machine: newest.machine.clone(),
    }
}

impl Survey<'_> {
    /// The snapshots listed (*S₀*), in id order.
    pub fn snapshots(&self) -> &[SnapshotId] {
        &self.snapshots
    }

    /// Root trees of snapshots committed but not written yet: their sessions write them when
    /// they go on, so what they reach is used as well.
    pub fn committing(&self) -> &[TreeId] {
        &self.committing
    }

    /// A blob the snapshots reach: the engine walks their trees and hands each in.
    pub fn use_blob(&mut self, blob: BlobId) -> Result<()> {
        self.claims.use_blob(blob)
    }
}
