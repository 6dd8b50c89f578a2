//! `prune`: the engine's part of garbage collection is to say which blobs are used. It walks the
//! trees of the snapshots the repository's survey lists (less those a dry run of `forget` would
//! remove) and hands each blob they reach to the repository, which plans and carries out the
//! rest (`cairn-repo`, `gc`; repo-format.md, "Garbage collection").
//!
//! Invariant: every blob a listed snapshot reaches is handed in, or prune fails: a snapshot or
//! tree it cannot read would make it take used blobs for garbage. A snapshot forgotten since
//! the listing is no longer used, and is skipped.

use crate::Result;
use cairn_format::{SnapshotId, TreeId};
use cairn_repo::{Error, ErrorKind, Repository, Survey, SurveyOptions};
use std::collections::HashSet;
use std::time::Duration;

use cairn_repo::PruneReport;

#[derive(Clone, Debug)]
pub struct PruneOptions {
    /// Repack partly used packs, most wasteful first, until the unused bytes left in packs are
    /// at most this fraction of the used bytes.
    pub max_unused: f64,
    /// How long a session must have gone without renewing its marker before prune takes it for
    /// dead and fences it off. At least `cairn_repo::MIN_GRACE`.
    pub grace: Duration,
    /// Plan only: report what would be done, change nothing.
    pub dry_run: bool,
    /// Snapshots to treat as gone: those a dry run of `forget` would remove.
    pub forgotten: HashSet<SnapshotId>,
}

/// Times a prune starts over when another process replaced index files or deleted packs under
/// it; each attempt sees what the last one lost to, so more than a few means a busy store.
const ATTEMPTS: usize = 8;

/// Runs a prune. One that stalled (a stopped process, a sleeping host) while another prune
/// deleted packs it had surveyed works from a stale view: it notices, deletes nothing on that
/// view, and starts over.
pub fn prune(repo: &Repository, opts: &PruneOptions) -> Result<PruneReport> {
    let mut attempt = 1;
    loop {
        match prune_once(repo, opts) {
            Err(e) if e.kind == ErrorKind::Locked && attempt < ATTEMPTS => attempt += 1,
            Err(e) if e.kind == ErrorKind::Locked => {
                return Err(Error::new(
                    ErrorKind::Locked,
                    format!("{}, {ATTEMPTS} times over; nothing was deleted, run prune again when the other processes have finished", e.message),
                ))
            }
            r => return r,
        }
    }
}

fn prune_once(repo: &Repository, opts: &PruneOptions) -> Result<PruneReport> {
    let mut survey = repo.survey(&SurveyOptions {
        grace: opts.grace,
        dry_run: opts.dry_run,
    })?;
    let kept: Vec<SnapshotId> = survey
        .snapshots()
        .iter()
        .filter(|id| !opts.forgotten.contains(id))
        .copied()
        .collect();
    let (walked, vanished) = used_blobs(repo, &kept, &mut survey)?;
    let plan = survey.plan(opts.max_unused)?;
    let mut report = if opts.dry_run {
        plan.report().clone()
    } else {
        plan.execute()?
    };
    if !opts.dry_run {
        (report.temporaries_removed, report.temporary_bytes_removed) =
            repo.remove_stale_temporaries(opts.grace)?;
    }
    report.snapshots = walked;
    report.snapshots_vanished = vanished;
    Ok(report)
}

/// Hands the survey every blob the snapshots reach; returns how many snapshots were walked and
/// which had been forgotten since the listing. Trees are remembered, to walk each once: one
/// entry per directory version, where the blobs are many more.
fn used_blobs(
    repo: &Repository,
    snapshots: &[SnapshotId],
    survey: &mut Survey,
) -> Result<(u64, Vec<SnapshotId>)> {
    let mut vanished = Vec::new();
    let mut walked: HashSet<TreeId> = HashSet::new();
    let mut stack: Vec<TreeId> = Vec::new();
    let mut n = 0;
    for id in snapshots {
        let snapshot = match repo.load_snapshot(*id) {
            Ok(s) => s,
            Err(e) if e.kind == ErrorKind::NotFound => {
                vanished.push(*id);
                continue;
            }
            Err(e) if e.kind == ErrorKind::Corrupt => {
                return Err(Error::corrupt(format!(
                "{}; prune cannot tell which blobs it needs: forget it first (`cairn forget {}`)",
                e.message,
                id.to_hex()
            )))
            }
            Err(e) => return Err(e),
        };
        n += 1;
        stack.push(snapshot.tree);
    }
    stack.extend(survey.committing().iter().copied());
    while let Some(tree_id) = stack.pop() {
        if !walked.insert(tree_id) {
            continue;
        }
        survey.use_blob(tree_id.into())?;
        let tree = repo.load_tree(tree_id).map_err(|e| match e.kind {
            // Its pack went, or its index entry, since the survey: another prune deleted it,
            // having copied it elsewhere, or it is lost; a new survey tells which.
            ErrorKind::NotFound => Error::new(
                ErrorKind::Locked,
                format!(
                    "{}; another prune changed the repository while this one ran",
                    e.message
                ),
            ),
            _ => Error::new(
                e.kind,
                format!(
                    "{}; prune cannot tell which blobs are used: run `cairn check`",
                    e.message
                ),
            ),
        })?;
        for node in tree.nodes {
            for c in &node.content {
                survey.use_blob((*c).into())?;
            }
            stack.extend(node.subtree);
        }
    }
    Ok((n, vanished))
}
