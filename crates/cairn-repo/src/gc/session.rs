//! The writer's side of garbage collection (repo-format.md, "Garbage collection"): a process
//! that stores packs or index files runs a *session*, announced by markers in `locks/`, and a
//! backup commits its snapshot by winning the session's verdict.
//!
//! Invariant: a snapshot is created only by its own session, once, after the session won the
//! verdict `Committed` (or, on a store without exclusive creates, while its markers are
//! listed). Either way no prune can have deleted a pack the snapshot needs: a prune deletes a
//! condemned pack only once every session it saw when the condemnation appeared has ended,
//! and it takes what the snapshot of a committed session reaches as used until it is written.

use crate::{Error, ErrorKind, Host, Repository, Result};
use cairn_backend::{Backend, FileType};
use cairn_crypto::file_id;
use cairn_format::marker::{Marker, Verdict, MAX_LOCK_LEN};
use cairn_format::snapshot::{Snapshot, MAX_SNAPSHOT_LEN};
use cairn_format::{BlobId, SnapshotId, TreeId};
use std::collections::HashSet;
use std::time::Duration;

/// How often a running session writes a new marker (measured on the boot clock, so time a
/// machine spends suspended counts): a prune takes a session whose newest marker it has seen
/// for `--grace` for dead. A marker costs one tiny create and one remove.
pub const MARKER_RENEWAL: Duration = Duration::from_secs(5 * 60);

/// Attempts to commit after finding the session fenced off: each needs the process to stop
/// again for a whole grace period, so more than two means something is wrong.
const COMMIT_ATTEMPTS: usize = 3;

/// A session's id.
pub type SessionId = [u8; 16];

/// The name of a session's verdict file: fixed by the session, so that the session committing
/// and a prune fencing it off race for the same name and exactly one wins.
pub fn verdict_name(session: &SessionId) -> String {
    file_id(&cairn_format::marker::verdict_name_preimage(session)).to_hex()
}

/// This process's session: its id and the markers it has in `locks/`.
pub(crate) struct Session {
    pub id: SessionId,
    sequence: u32,
    /// Markers in `locks/`, oldest first: the newest and the one before it, so that a listing
    /// running while one is created and another removed sees at least one.
    markers: Vec<String>,
    /// Boot clock at the newest marker.
    renewed: Duration,
}

impl Session {
    /// Starts a session: its first marker, then a wait as long as listings may lag, so that a
    /// prune that lists `locks/` after condemning packs sees this marker, or this process,
    /// listing `index/` next, sees the condemnation.
    pub fn start(backend: &dyn Backend, host: &dyn Host) -> Result<Session> {
        let mut session = Session {
            id: cairn_crypto::random::bytes(),
            sequence: 0,
            markers: Vec::new(),
            renewed: Duration::ZERO,
        };
        session.write_marker(backend, host)?;
        host.sleep(backend.listing_lag());
        Ok(session)
    }

    fn write_marker(&mut self, backend: &dyn Backend, host: &dyn Host) -> Result<()> {
        let bytes = Marker {
            session: self.id,
            sequence: self.sequence,
            pid: host.pid(),
            machine: host.machine(),
        }
        .encode();
        let name = file_id(&bytes).to_hex();
        backend.create(FileType::Lock, &name, &bytes)?;
        self.sequence += 1;
        self.markers.push(name);
        self.renewed = host.boot_clock();
        Ok(())
    }

    /// Writes the next marker when `MARKER_RENEWAL` has passed, then removes the one before
    /// the previous.
    pub fn renew(&mut self, backend: &dyn Backend, host: &dyn Host) -> Result<()> {
        if host.boot_clock().saturating_sub(self.renewed) < MARKER_RENEWAL {
            return Ok(());
        }
        self.write_marker(backend, host)?;
        while self.markers.len() > 2 {
            let old = self.markers.remove(0);
            remove_lock(backend, &old)?;
        }
        Ok(())
    }

    /// Removes the session's markers: it has ended.
    pub fn end(&mut self, backend: &dyn Backend) -> Result<()> {
        for name in std::mem::take(&mut self.markers) {
            remove_lock(backend, &name)?;
        }
        Ok(())
    }

    pub fn owns(&self, name: &str) -> bool {
        self.markers.iter().any(|m| m == name)
    }
}

pub(crate) fn remove_lock(backend: &dyn Backend, name: &str) -> Result<()> {
    match backend.remove(FileType::Lock, name) {
        Err(e) if e.kind != cairn_backend::BackendErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// Creates a session's verdict; if one exists, returns it.
pub(crate) fn settle(
    backend: &dyn Backend,
    session: &SessionId,
    verdict: &Verdict,
) -> Result<Verdict> {
    let name = verdict_name(session);
    match backend.create(FileType::Lock, &name, &verdict.encode()) {
        Ok(()) => Ok(verdict.clone()),
        Err(e) if e.kind == cairn_backend::BackendErrorKind::AlreadyExists => {
            let bytes = backend.read_at_most(FileType::Lock, &name, MAX_LOCK_LEN)?;
            Verdict::decode(&bytes).map_err(|e| {
                Error::corrupt(format!(
                    "verdict {} in locks/: {e}",
                    name.get(..8).unwrap_or(&name)
                ))
            })
        }
        Err(e) => Err(e.into()),
    }
}

impl Drop for Repository {
    fn drop(&mut self) {
        // A pack still being written must land before the marker that protects it goes.
        self.writer.stop();
        if let Some(mut session) = self.session.get_mut().unwrap().take() {
            // A marker left behind (a crash, or this failing) only delays deletions until a
            // prune takes the session for dead.
            let _ = session.end(self.backend.as_ref());
        }
    }
}

impl Repository {
    /// Renews this process's marker when it is due; called as the process stores and finds
    /// blobs.
    pub(crate) fn renew_marker(&self) -> Result<()> {
        // Called for every blob; another thread holding the lock is renewing already.
        let Ok(mut session) = self.session.try_lock() else {
            return Ok(());
        };
        match session.as_mut() {
            Some(s) => s.renew(self.backend.as_ref(), self.host.as_ref()),
            None => Ok(()),
        }
    }

    /// Whether `name` in `locks/` is one of this process's own markers.
    pub(crate) fn owns_marker(&self, name: &str) -> bool {
        self.session
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|s| s.owns(name))
    }

    pub(crate) fn session_id(&self) -> Option<SessionId> {
        self.session.lock().unwrap().as_ref().map(|s| s.id)
    }

    /// Starts a new session for the next snapshot, when the last one committed (a writer that
    /// saves several snapshots: `copy`, `repair snapshots`). As at open, the marker comes first
    /// and the index is read after it; what this process stored before is forgotten, so that
    /// it is found in the index or stored again, never assumed (a prune may have deleted it
    /// since the commit, once a `forget` left it unused). Nothing for a reader, a dry run or a
    /// session still running.
    pub fn begin_session(&self) -> Result<()> {
        let mut guard = self.session.lock().unwrap();
        if !self.writes || guard.is_some() {
            return Ok(());
        }
        *guard = Some(Session::start(self.backend.as_ref(), self.host.as_ref())?);
        drop(guard);
        self.own_blobs.lock().unwrap().clear();
        self.sync_index()?;
        Ok(())
    }

    /// Flushes, then commits the snapshot: the last write of a backup (repo-format.md,
    /// "Garbage collection", "Commit"). The session's verdict `Committed` is won first, which
    /// no prune can fence off afterwards; if a prune fenced the session off while this process
    /// was stopped, a new session checks that everything the snapshot reaches is still stored
    /// (copying it out of condemned packs) before it tries again.
    pub fn save_snapshot(&self, snapshot: &Snapshot) -> Result<SnapshotId> {
        self.flush()?;
        let sealed = cairn_crypto::seal(
            &self.keys.data,
            cairn_format::ad::SNAPSHOT,
            &snapshot.encode(),
        );
        // What readers would refuse is not written (repo-format.md, "Limits").
        if sealed.len() as u64 > MAX_SNAPSHOT_LEN {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "the snapshot is {} bytes, more than the {MAX_SNAPSHOT_LEN} a snapshot may have: back up fewer paths, or their parent",
                    sealed.len()
                ),
            ));
        }
        let id = SnapshotId(file_id(&sealed));
        if self.dry_run {
            return Ok(id);
        }
        let Some(mut session) = self.session_id() else {
            // Not a writer: nothing of this process needs protecting.
            self.create_snapshot(&id, &sealed)?;
            return Ok(id);
        };
        if self.backend.guarantees().exclusive_create {
            let committed = Verdict::Committed(sealed.clone());
            let mut attempts = 0;
            while settle(self.backend.as_ref(), &session, &committed)? != committed {
                attempts += 1;
                if attempts == COMMIT_ATTEMPTS {
                    return Err(Error::new(
                        ErrorKind::Locked,
                        "prunes fenced off this backup again and again while it was stopped; nothing was committed, run the backup again",
                    ));
                }
                session = self.rejoin(snapshot.tree)?;
            }
        }
        self.create_snapshot(&id, &sealed)?;
        let mut guard = self.session.lock().unwrap();
        if let Some(s) = guard.as_mut() {
            s.end(self.backend.as_ref())?;
        }
        *guard = None;
        drop(guard);
        if self.backend.guarantees().exclusive_create {
            remove_lock(self.backend.as_ref(), &verdict_name(&session))?;
        }
        Ok(id)
    }

    fn create_snapshot(&self, id: &SnapshotId, sealed: &[u8]) -> Result<()> {
        match self
            .backend
            .create(FileType::Snapshot, &id.to_hex(), sealed)
        {
            // Written before: a retry after an error that hid its success (the same bytes).
            Err(e) if e.kind == cairn_backend::BackendErrorKind::AlreadyExists => {}
            r => r?,
        }
        if self.backend.remote() {
            self.cache
                .keep_copy(crate::cache::Copy::Snapshot, &id.0, sealed)?;
        }
        Ok(())
    }

    /// After the session was fenced off: a new session, then every blob below `root` must be
    /// in a pack no condemnation names, or is copied out of a condemned pack that still exists.
    /// Fails, committing nothing, if one is gone. Returns the new session.
    fn rejoin(&self, root: TreeId) -> Result<SessionId> {
        let session = Session::start(self.backend.as_ref(), self.host.as_ref())?;
        let id = session.id;
        let old = self.session.lock().unwrap().replace(session);
        if let Some(mut old) = old {
            // Nothing will ever try to commit under the old session again: its markers and
            // verdict can go.
            old.end(self.backend.as_ref())?;
            remove_lock(self.backend.as_ref(), &verdict_name(&old.id))?;
        }
        self.sync_index()?;
        let mut seen: HashSet<TreeId> = HashSet::new();
        let mut copied: HashSet<BlobId> = HashSet::new();
        let mut stack = vec![root];
        while let Some(tree) = stack.pop() {
            if !seen.insert(tree) {
                continue;
            }
            self.keep_stored(&tree.into(), &mut copied)?;
            for node in self.load_tree(tree)?.nodes {
                for c in &node.content {
                    self.keep_stored(&BlobId::from(*c), &mut copied)?;
                }
                stack.extend(node.subtree);
            }
        }
        self.flush()?;
        Ok(id)
    }

    /// Makes sure a blob is in a pack no condemnation names: copies it out of a condemned one.
    fn keep_stored(&self, blob: &BlobId, copied: &mut HashSet<BlobId>) -> Result<()> {
        if self.cache.get(blob)?.is_some() || copied.contains(blob) {
            return Ok(());
        }
        let lost = || {
            Error::new(
                ErrorKind::NotFound,
                format!(
                    "{blob} was deleted by a prune that took this backup for dead while it was stopped (it had not renewed its marker for longer than the prune's --grace); nothing was committed, run the backup again"
                ),
            )
        };
        let Some(loc) = self
            .cache
            .get_many_condemned(std::slice::from_ref(blob))?
            .pop()
            .flatten()
        else {
            return Err(lost());
        };
        let stored =
            match self.read_pack_range(&loc.pack, u64::from(loc.offset), u64::from(loc.stored_len))
            {
                Ok(s) => s,
                Err(e) if e.kind == ErrorKind::NotFound => return Err(lost()),
                Err(e) => return Err(e),
            };
        self.open_blob(blob, &stored, loc.raw_len)?;
        self.store_again(blob, &stored, loc.raw_len)?;
        copied.insert(*blob);
        Ok(())
    }

    /// Removes snapshots (`forget`). A backup that committed one of them but was killed before
    /// it cleaned up leaves its verdict, which prunes would go on taking for a snapshot still
    /// to be written (keeping what it reaches): such verdicts go first, with their sessions'
    /// markers. A listed snapshot was written, and its session never writes it again.
    pub fn forget_snapshots(&self, ids: &[SnapshotId]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        // A verdict is created before its snapshot, so a listing this long after the snapshot
        // was listed shows it.
        self.host.sleep(self.backend.listing_lag());
        let locks = self.read_locks()?;
        let doomed: HashSet<SnapshotId> = ids.iter().copied().collect();
        let names = |verdict: &Verdict| match verdict {
            Verdict::Committed(bytes) => doomed.contains(&SnapshotId(file_id(bytes))),
            Verdict::Fenced { .. } => false,
        };
        for (session, markers) in &locks.sessions {
            if locks
                .verdicts
                .get(&verdict_name(session))
                .is_some_and(names)
            {
                for (name, _) in markers {
                    remove_lock(self.backend.as_ref(), name)?;
                }
            }
        }
        for (name, verdict) in &locks.verdicts {
            if names(verdict) {
                remove_lock(self.backend.as_ref(), name)?;
            }
        }
        for id in ids {
            self.remove_snapshot(id)?;
        }
        Ok(())
    }

    /// Stores a blob even if the index or this process has it: to move it out of a pack that is
    /// condemned or about to be. Its sealed bytes are copied as they are, since their seal binds
    /// the blob's id and not its pack; the caller has opened them with `open_blob`, so only
    /// authentic bytes are copied.
    pub(crate) fn store_again(&self, blob: &BlobId, stored: &[u8], raw_len: u32) -> Result<()> {
        self.own_blobs.lock().unwrap().insert(*blob, None);
        self.pack_stored(*blob, raw_len, stored.to_vec())
    }
}
