//! Garbage collection, in one place (repo-format.md, "Garbage collection", states the protocol
//! and proves it; each step below cites it):
//!
//! - `session.rs`, the writers' side: every process that stores packs or index files runs a
//!   session announced by markers in `locks/`, and a backup commits its snapshot by winning
//!   the session's verdict;
//! - `survey.rs`, prune's step 1: index files, then sessions (fencing off the silent ones,
//!   finishing interrupted commits), then snapshots, each observation recorded in the cache;
//! - `plan.rs`, step 2: the used blobs, which the engine hands in, matched to pack entries
//!   (`claims.rs`); what to copy, condemn and delete, as a `PrunePlan`;
//! - `execute.rs`, steps 3 to 6: copies, the rewritten index, condemnations, deletions.
//!
//! Invariant: a pack is deleted only after a condemnation naming it is durable, every used blob
//! has a copy outside it, and every session that was running when the condemnation appeared
//! has ended: committed (its snapshot is then among the used), or fenced off (it can never
//! commit). No clock decides a deletion; clocks only decide when a silent session is fenced.

mod claims;
mod execute;
mod index_batch;
mod plan;
mod session;
pub(crate) mod spill;
mod survey;

pub use index_batch::IndexBatch;
pub use plan::PrunePlan;
pub(crate) use session::Session;
pub use session::{verdict_name, SessionId, MARKER_RENEWAL};
pub use survey::{Survey, SurveyOptions};

use cairn_format::SnapshotId;
use std::time::Duration;

/// The shortest `--grace`: a session renews its marker every `MARKER_RENEWAL`, so a grace of
/// two renewals still leaves a running session a renewal to spare.
pub const MIN_GRACE: Duration = Duration::from_secs(2 * MARKER_RENEWAL.as_secs());

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
    /// Condemned packs left for a later prune, because a session may depend on them.
    pub packs_deferred: u64,
    pub bytes_deferred: u64,
    /// Unused bytes left in partly used packs.
    pub bytes_unused_kept: u64,
    pub index_files_written: u64,
    pub index_files_removed: u64,
    /// Sessions that had not renewed their markers for the grace period (or whose process is
    /// gone), fenced off so that they can never commit.
    pub sessions_fenced: u64,
    /// Copies of used blobs found damaged before the last other copy would have gone; the
    /// good copy was kept and the damaged one left out of the index.
    pub copies_damaged: u64,
    /// Temporary files of writers killed more than the grace period ago, removed.
    pub temporaries_removed: u64,
    pub temporary_bytes_removed: u64,
    /// Snapshots listed but forgotten (by another process) before they could be read.
    pub snapshots_vanished: Vec<SnapshotId>,
    /// Why condemned packs were not deleted now; empty when they were.
    pub deferred_because: Option<String>,
    pub duration: Duration,
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
