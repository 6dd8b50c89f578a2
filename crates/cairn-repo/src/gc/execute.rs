//! Prune's steps 3 to 6 (repo-format.md, "Garbage collection"), in the order that keeps every
//! step safe to interrupt: copies, then the rewritten index, then the condemnations, and
//! deletions last.
//!
//! Invariant: a pack is deleted only if a durable condemnation names it, every blob the
//! snapshots use has a verified copy elsewhere, and either every session that the
//! condemnation may concern had ended before the snapshots were listed, or (a condemnation
//! written now) no session of another process is listed after it and no snapshot appeared.

use super::claims::Key;
use super::index_batch::IndexBatch;
use super::plan::PrunePlan;
use super::survey::Locks;
use super::PruneReport;
use crate::{Error, ErrorKind, Repository, Result};
use cairn_format::index::{IndexEntry, IndexFile, IndexPack};
use cairn_format::{BlobId, IndexId, PackId, SnapshotId};
use std::collections::{BTreeMap, HashSet};

/// Used blobs copied per pass over the claims when packs are copied: what prune holds of them.
const COPIED_PER_PASS: u64 = 1 << 19;

impl PrunePlan<'_> {
    /// Carries the plan out: steps 3 to 6, each durable before the next.
    pub fn execute(mut self) -> Result<PruneReport> {
        let repo = self.repo;
        if !self.has_work() {
            self.report.duration = self.started.elapsed();
            return Ok(self.report);
        }
        let lag = repo.backend.listing_lag();
        let newly_condemned = self.newly_condemned();

        // 3. Copy.
        let (conflict, damaged) = self.copy(&newly_condemned)?;

        // 4. Rewrite the index, then 5. condemn.
        let mut written: HashSet<IndexId> = HashSet::new();
        let mut new_condemnations: Vec<(IndexId, Vec<PackId>)> = Vec::new();
        if self.rewrites_index() || !damaged.is_empty() {
            // Listed once the index files were read: a pack named there but missing here is
            // gone for good (a concurrent prune deleted it), and its record must not be
            // carried on.
            repo.host.sleep(lag);
            let present: HashSet<PackId> = repo.list_packs()?.into_iter().map(|(p, _)| p).collect();
            let adopted_ids =
                self.rewrite_index(&newly_condemned, &damaged, &present, &mut written)?;
            if !newly_condemned.is_empty() {
                new_condemnations =
                    self.condemn(&newly_condemned, &present, adopted_ids, &mut written)?;
            }
            self.remove_rewritten()?;
        }

        // 6. Delete.
        let because = self.delete(
            lag,
            conflict,
            &newly_condemned,
            &written,
            &new_condemnations,
        )?;
        self.report.bytes_freed = self
            .report
            .bytes_freed
            .saturating_sub(self.report.bytes_repacked);
        self.report.deferred_because = because;
        self.report.duration = self.started.elapsed();
        Ok(self.report)
    }

    /// Step 3, "Copy": the used blobs of packs to repack, those found only in condemned packs,
    /// and those whose only good copy is in a pack about to be condemned, stored again in new
    /// packs, flushed with their index files. Returns whether another prune deleted a pack
    /// copied from, and the damaged copies found (`verify_kept_copies`).
    fn copy(&mut self, newly_condemned: &[PackId]) -> Result<(bool, HashSet<(PackId, Key)>)> {
        let repo = self.repo;
        let (mut extra, damaged) = self.verify_kept_copies(newly_condemned)?;
        let mut copies: Vec<PackId> = self.revive.iter().chain(&self.repack).copied().collect();
        for number in extra.keys() {
            let pack = self.packs.list[*number as usize].0;
            if !copies.contains(&pack) {
                copies.push(pack);
            }
        }
        let mut conflict = false;
        let mut rest = &copies[..];
        while !rest.is_empty() {
            // As many packs as keep `COPIED_PER_PASS` blobs together, and at least one.
            let mut blobs = 0;
            let n = rest
                .iter()
                .take_while(|p| {
                    blobs += self.packs.get(p).map_or(0, |u| u.used_blobs);
                    blobs <= COPIED_PER_PASS
                })
                .count()
                .max(1);
            let (now, later) = rest.split_at(n);
            let numbers: HashSet<u32> = now.iter().map(|p| self.packs.numbers[p]).collect();
            let mut kept = self.claims.kept_by(&numbers)?;
            for pack in now {
                let number = self.packs.numbers[pack];
                let mut keeps = kept.remove(&number).unwrap_or_default();
                keeps.extend(extra.remove(&number).unwrap_or_default());
                match copy_used(repo, pack, &keeps)? {
                    Some(copied) if self.revive.contains(pack) => {
                        self.report.blobs_revived += copied as u64
                    }
                    Some(_) => {}
                    // Another prune deleted it, having copied what it needed: the two may have
                    // kept different copies, so this one deletes nothing.
                    None => conflict = true,
                }
            }
            rest = later;
        }
        repo.flush()?;
        Ok((conflict, damaged))
    }

    /// Step 4, "Rewrite the index": new index files with the adopted packs, then every pack of
    /// the index files to rewrite that is still `present`, except condemned packs and `damaged`
    /// entries. Returns the adopted packs.
    fn rewrite_index(
        &mut self,
        newly_condemned: &[PackId],
        damaged: &HashSet<(PackId, Key)>,
        present: &HashSet<PackId>,
        written: &mut HashSet<IndexId>,
    ) -> Result<HashSet<PackId>> {
        let repo = self.repo;
        let mut all_condemned = self.condemned.clone();
        all_condemned.extend(newly_condemned.iter().copied());
        let adopted = std::mem::take(&mut self.adopted);
        let adopted_ids: HashSet<PackId> = adopted.iter().map(|p| p.id).collect();
        let mut batch = IndexBatch::default();
        for pack in adopted {
            batch.push(repo, pack)?;
        }
        let mut seen = adopted_ids.clone();
        repo.for_each_index_file(&self.rewrite, |_, file| {
            for mut pack in file.map(|f| f.packs).unwrap_or_default() {
                if seen.insert(pack.id)
                    && present.contains(&pack.id)
                    && !all_condemned.contains(&pack.id)
                {
                    pack.blobs
                        .retain(|e| !damaged.contains(&(pack.id, e.blob.to_bytes())));
                    batch.push(repo, pack)?;
                }
            }
            Ok(())
        })?;
        let files = batch.finish(repo)?;
        written.extend(files.iter().map(|(id, _)| *id));
        self.report.index_files_written += files.len() as u64;
        Ok(adopted_ids)
    }

    /// Step 5, "Condemn": condemnation files naming the packs condemned now, with their
    /// records. `seen`: packs whose records went into the index in step 4 (the adopted ones),
    /// never carried here. Returns each file written and the packs it condemns.
    fn condemn(
        &mut self,
        newly_condemned: &[PackId],
        present: &HashSet<PackId>,
        mut seen: HashSet<PackId>,
        written: &mut HashSet<IndexId>,
    ) -> Result<Vec<(IndexId, Vec<PackId>)>> {
        let repo = self.repo;
        // The condemned packs' records travel with the condemnation, so that their blobs stay
        // readable (never reusable) until the packs are deleted. Only the packs condemned now:
        // a record of a pack an older file condemns would put it back in the index once that
        // file is gone. The files just rewritten are read again for them rather than held in
        // memory.
        let newly: HashSet<PackId> = newly_condemned.iter().copied().collect();
        let mut batch = IndexBatch::condemning(newly_condemned);
        repo.for_each_index_file(&self.rewrite, |_, file| {
            for pack in file.map(|f| f.packs).unwrap_or_default() {
                if newly.contains(&pack.id) && seen.insert(pack.id) && present.contains(&pack.id) {
                    batch.push(repo, pack)?;
                }
            }
            Ok(())
        })?;
        for (pack, record) in std::mem::take(&mut self.unindexed) {
            if newly.contains(&pack) && seen.insert(pack) {
                batch.push(repo, record)?;
            }
        }
        // Another process replaced index files read in step 2 (`repair index`): a condemnation
        // without a pack's records would make that pack's blobs vanish from the index while a
        // snapshot may still need them. Starting over is safe: what was written so far only
        // adds index files.
        if newly
            .iter()
            .any(|p| present.contains(p) && !seen.contains(p))
        {
            return Err(Error::new(
                ErrorKind::Locked,
                "another process rewrote the index while this prune ran",
            ));
        }
        let mut new_condemnations = Vec::new();
        for (id, packs) in batch.finish(repo)? {
            written.insert(id);
            new_condemnations.push((id, packs));
            self.report.index_files_written += 1;
        }
        Ok(new_condemnations)
    }

    /// The end of step 5: the index files rewritten in step 4 are removed, now that the new
    /// ones and the condemnations are durable.
    fn remove_rewritten(&mut self) -> Result<()> {
        for id in &self.rewrite {
            self.repo.remove_index(id)?;
            self.report.index_files_removed += 1;
        }
        Ok(())
    }

    /// Step 6, "Delete": carries out the condemnations that may be carried out, and records
    /// the sessions the new ones wait for when they may not. Returns why condemned packs wait,
    /// if any do.
    ///
    /// Another prune at work (an index file this prune neither read nor wrote that condemns
    /// packs, or names one this prune condemns) defers everything: the two may have kept
    /// different copies of a blob.
    fn delete(
        &mut self,
        lag: std::time::Duration,
        mut conflict: bool,
        newly_condemned: &[PackId],
        written: &HashSet<IndexId>,
        new_condemnations: &[(IndexId, Vec<PackId>)],
    ) -> Result<Option<String>> {
        let repo = self.repo;
        repo.host.sleep(lag);
        let locks = repo.read_locks()?;
        let running = locks.writers();
        let foreign = foreign_index_files(repo, &self.survey_index, written)?;
        let newly: HashSet<PackId> = newly_condemned.iter().copied().collect();
        conflict |= foreign
            .iter()
            .any(|f| !f.condemned.is_empty() || f.packs.iter().any(|p| newly.contains(&p.id)));
        let now_too = self.may_delete_new(lag, conflict, running)?;
        let foreign_packs: HashSet<PackId> = foreign
            .iter()
            .flat_map(|f| f.packs.iter().map(|p| p.id))
            .collect();
        let because = self.carry_out(conflict, &now_too, new_condemnations, &foreign_packs)?;
        if now_too.is_err() && !new_condemnations.is_empty() {
            self.record_waiting(&locks, new_condemnations)?;
        }
        Ok(because)
    }

    /// Whether this prune's new condemnations may be carried out now, or why they wait: not
    /// while another prune is at work, a session of another process is listed, or a snapshot
    /// not in *S₀* is listed.
    fn may_delete_new(
        &self,
        lag: std::time::Duration,
        conflict: bool,
        running: usize,
    ) -> Result<std::result::Result<(), String>> {
        let repo = self.repo;
        Ok(if conflict {
            Err(
                "another prune ran at the same time, so deletions wait for the next prune"
                    .to_string(),
            )
        } else if running > 0 {
            Err(self.sessions_running(running))
        } else {
            repo.host.sleep(lag);
            let before: HashSet<SnapshotId> = self.snapshots.iter().copied().collect();
            let after: HashSet<SnapshotId> = repo.snapshot_ids()?.into_iter().collect();
            if after.is_subset(&before) {
                Ok(())
            } else {
                Err("a snapshot was written while prune ran, so condemned packs are deleted by the next prune".to_string())
            }
        })
    }

    /// Carries out the condemnations found in step 2 that may be carried out, then the new
    /// ones if `now_too` allows; returns why the others wait.
    fn carry_out(
        &mut self,
        conflict: bool,
        now_too: &std::result::Result<(), String>,
        new_condemnations: &[(IndexId, Vec<PackId>)],
        foreign_packs: &HashSet<PackId>,
    ) -> Result<Option<String>> {
        let repo = self.repo;
        let mut because = None;
        let old = std::mem::take(&mut self.pending);
        let new = new_condemnations
            .iter()
            .map(|(id, packs)| (*id, packs.clone(), now_too.is_ok()));
        for (id, packs, allowed) in old.into_iter().chain(new) {
            let present: Vec<&PackId> = packs
                .iter()
                .filter(|p| self.stored.contains_key(p))
                .collect();
            if conflict || !allowed {
                self.report.packs_deferred += present.len() as u64;
                self.report.bytes_deferred += present.iter().map(|p| self.stored[*p]).sum::<u64>();
                if because.is_none() {
                    because = Some(match now_too {
                        Err(why) => why.clone(),
                        Ok(()) => self.sessions_running(self.live_sessions),
                    });
                }
                continue;
            }
            // The condemnation goes first: its records would send readers to packs about to
            // go, where another copy of a blob (in a pack condemned later) may still be read.
            // Then nothing names the packs, and a crash leaves them to a later prune. But an
            // index file this prune did not read may name them (another prune's rewrite);
            // while it does, the condemnation must stay to keep them out of the index.
            if !packs.iter().any(|p| foreign_packs.contains(p)) {
                repo.remove_index(&id)?;
                self.report.index_files_removed += 1;
            }
            for pack in present {
                repo.remove_pack(pack)?;
                self.report.packs_deleted += 1;
                self.report.bytes_freed += self.stored[pack];
            }
        }
        Ok(because)
    }

    /// Records in the cache the sessions listed now: those the new condemnations, which wait,
    /// may concern.
    fn record_waiting(
        &self,
        locks: &Locks,
        new_condemnations: &[(IndexId, Vec<PackId>)],
    ) -> Result<()> {
        let ids: Vec<IndexId> = new_condemnations.iter().map(|(id, _)| *id).collect();
        let mut sessions: Vec<[u8; 16]> = locks.sessions.keys().copied().collect();
        sessions.extend(locks.unreadable.iter().map(|n| {
            let id: [u8; 16] = cairn_crypto::file_id(n.as_bytes()).0[..16]
                .try_into()
                .unwrap();
            id
        }));
        self.repo.cache.observe_more(&ids, &sessions)
    }

    /// Before a pack holding the last other copy of a used blob is condemned, the copy that
    /// keeps the blob is read and verified. Returns, by pack number, the blobs to copy out of
    /// packs about to be condemned because the kept copy is damaged, and the damaged copies.
    #[allow(clippy::type_complexity)]
    fn verify_kept_copies(
        &mut self,
        going: &[PackId],
    ) -> Result<(BTreeMap<u32, HashSet<Key>>, HashSet<(PackId, Key)>)> {
        let mut extra: BTreeMap<u32, HashSet<Key>> = BTreeMap::new();
        let mut damaged: HashSet<(PackId, Key)> = HashSet::new();
        if going.is_empty() {
            return Ok((extra, damaged));
        }
        let going: HashSet<u32> = going
            .iter()
            .filter_map(|p| self.packs.numbers.get(p))
            .copied()
            .collect();
        let mut verified: HashSet<Key> = HashSet::new();
        for (key, other, kept) in self.claims.other_copies_in(&going)? {
            // A kept copy in a pack that goes is verified as it is copied.
            if going.contains(&kept.pack) || verified.contains(&key) {
                continue;
            }
            let pack = self.packs.list[kept.pack as usize].0;
            let blob = BlobId::from_bytes(&key).expect("keys come from blob ids");
            let good = self
                .repo
                .read_pack_range(&pack, u64::from(kept.offset), u64::from(kept.stored_len))
                .and_then(|stored| self.repo.open_blob(&blob, &stored, kept.raw_len));
            match good {
                Ok(_) => {
                    verified.insert(key);
                }
                Err(e) if e.kind == ErrorKind::Corrupt || e.kind == ErrorKind::NotFound => {
                    damaged.insert((pack, key));
                    extra.entry(other.pack).or_default().insert(key);
                    self.report.copies_damaged += 1;
                }
                Err(e) => return Err(e),
            }
        }
        Ok((extra, damaged))
    }
}

/// Copies the blobs a pack `keeps` into new packs; returns how many, or `None` if the pack is
/// gone.
fn copy_used(repo: &Repository, pack: &PackId, keeps: &HashSet<Key>) -> Result<Option<usize>> {
    if keeps.is_empty() {
        return Ok(Some(0));
    }
    // Each blob is authenticated as it is opened, so a pack that fails its hash check only
    // fails prune if a blob prune needs from it is damaged.
    let bytes = match repo.read_pack_unverified(pack) {
        Ok(b) => b,
        Err(e) if e.kind == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    // A pack condemned for a damaged header is read where the index places its blobs.
    let entries: Vec<IndexEntry> = match repo.pack_header_in(pack, &bytes) {
        Ok(header) => IndexPack::from_header(*pack, bytes.len() as u64, &header).blobs,
        Err(e) if e.kind == ErrorKind::Corrupt => repo.blobs_in_pack(pack)?,
        Err(e) => return Err(e),
    };
    let mut n = 0;
    let mut seen: HashSet<Key> = HashSet::new();
    for e in &entries {
        if !keeps.contains(&e.blob.to_bytes()) {
            continue;
        }
        seen.insert(e.blob.to_bytes());
        let stored = match repo.open_entry(pack, &bytes, e) {
            Ok(stored) => stored,
            // A damaged copy that the index no longer places here is not needed.
            Err(_) if repo.lookup(&e.blob)?.is_some_and(|l| l.pack != *pack) => continue,
            Err(err) => return Err(Error::new(
                err.kind,
                format!("{err}; a snapshot needs it: run `cairn repair snapshots` and forget the damaged originals, or back the file up again, first"),
            )),
        };
        repo.store_again(&e.blob, stored, e.raw_len)?;
        n += 1;
    }
    // A blob prune planned to copy from here and did not find would be lost with the pack.
    if seen.len() < keeps.len() {
        return Err(Error::corrupt(format!(
            "{} blobs that snapshots need cannot be located in pack {}; run `cairn check --read-data`",
            keeps.len() - seen.len(),
            pack.short()
        )));
    }
    Ok(Some(n))
}

/// Index files that appeared since prune listed the index, other than its own.
fn foreign_index_files(
    repo: &Repository,
    listed: &[IndexId],
    written: &HashSet<IndexId>,
) -> Result<Vec<IndexFile>> {
    let listed: HashSet<&IndexId> = listed.iter().collect();
    let mut ids = repo.index_ids()?;
    ids.sort();
    let mut out = Vec::new();
    for id in ids {
        if listed.contains(&id) || written.contains(&id) {
            continue;
        }
        if let Some(file) = repo.read_index_if_listed(id)? {
            out.push(file);
        }
    }
    Ok(out)
}
