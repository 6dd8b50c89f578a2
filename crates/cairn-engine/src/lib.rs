//! cairn's engines: backup (the archiver), restore (the restorer), check, prune, repair, copy,
//! stats, walking, diffing and dumping snapshot trees, and choosing snapshots. The content
//! engines (and copy) see a repository only through `cairn_repo::BlobStore`; check, prune,
//! repair and stats, which judge the index itself, take the `Repository`. No engine sees a key.
//!
//! Per-item failures (an unreadable source file, a damaged blob) are returned as data in each
//! engine's outcome, a `PathProblem` each (check's findings as `Problem`s); only failures that
//! make the whole operation meaningless are errors.

mod archiver;
mod check;
mod copy;
mod diff;
mod dump;
mod filter;
mod fsmeta;
pub use fsmeta::user_name;
mod prune;
mod repair;
mod restorer;
mod retention;
mod select;
mod stats;
mod walk;

#[cfg(test)]
mod in_memory_tests;

pub use archiver::{
    backup, estimate, normalize_sources, BackupOptions, BackupOutcome, BackupProgress, EntryChange,
    EntryListener,
};
pub use check::{
    check, BadPack, CheckProgress, CheckReport, Damage, Detail, Loss, Problem, ReadData,
};
pub use copy::{copy_snapshot, learn, same_snapshot, CopyOutcome, Renamed};
pub use diff::{diff, Change, ChangeKind};
pub use dump::{dump_file, dump_tar, dump_zip, ContentReader};
pub use filter::Filter;
pub use prune::{prune, PruneOptions};
pub use repair::{
    repair_index, repair_snapshots, RepairIndexReport, RepairedSnapshot, REPAIRED_TAG,
};
pub use restorer::{
    execute_restore, plan_restore, restore, RestoreOptions, RestoreOutcome, RestorePlan,
    RestoreProgress,
};
pub use retention::{
    apply_policy, parse_keep_count, parse_keep_duration, parse_keep_tag, Bucket, Decision,
    KeepCount, KeepDuration, Policy, Reason, RetentionInput,
};
pub use select::{
    choose_kind, find_parent, find_snapshot, newest_at, parent_in, FullEvery, SnapshotFilter,
};
pub use stats::{stats, Bytes, SnapshotStats, Stats};
pub use walk::{find, find_node, walk_tree, Visit};

pub(crate) use cairn_repo::Result;

/// A path, and why it could not be backed up, restored or read: the one shape in which every
/// engine reports a per-path problem that did not stop the operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathProblem {
    pub path: std::path::PathBuf,
    pub reason: String,
}

impl PathProblem {
    pub fn new(path: impl Into<std::path::PathBuf>, reason: impl Into<String>) -> PathProblem {
        PathProblem {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
