//! The subcommands, one file each: open the repository, plan and execute through a library
//! crate, report.

use crate::args::{Cli, Command, ConfigCommand, RepairCommand, ScheduleCommand};
use crate::report::reported;
use crate::time;
use anyhow::Result;
use cairn_format::snapshot::Snapshot;
use cairn_format::SnapshotId;

mod backup;
mod check;
mod completion;
mod config;
mod diff;
mod dump;
mod find;
mod forget;
mod init;
mod ls;
pub(crate) mod man;
mod repair;
mod restore;
mod schedule;
mod serve;
mod snapshots;

pub(crate) fn run(cli: Cli) -> Result<u8> {
    match &cli.command {
        Command::Init(a) => init::init(&cli, a),
        Command::Backup(a) => reported(&cli, "backup", &a.run, a.json, |r| {
            backup::backup(&cli, a, r)
        }),
        Command::Snapshots(a) => snapshots::snapshots(&cli, a),
        Command::Restore(a) => restore::restore(&cli, a),
        Command::Ls(a) => ls::ls(&cli, a),
        Command::Diff(a) => diff::diff(&cli, a),
        Command::Find(a) => find::find(&cli, a),
        Command::Dump(a) => dump::dump(&cli, a),
        Command::Check(a) => reported(&cli, "check", &a.run, a.json, |r| check::check(&cli, a, r)),
        Command::Forget(a) => reported(&cli, "forget", &a.run, a.gc.json, |r| {
            forget::forget(&cli, a, r)
        }),
        Command::Prune(a) => reported(&cli, "prune", &a.run, a.gc.json, |r| {
            forget::prune(&cli, a, r)
        }),
        Command::Repair(RepairCommand::Index(a)) => repair::repair_index(&cli, a),
        Command::Repair(RepairCommand::Snapshots(a)) => repair::repair_snapshots(&cli, a),
        Command::Serve(a) => serve::serve(&cli, a),
        Command::Config(ConfigCommand::Show) => config::show(&cli),
        Command::Schedule(ScheduleCommand::Install(a)) => schedule::install(&cli, a),
        Command::Schedule(ScheduleCommand::List(a)) => schedule::list(a),
        Command::Schedule(ScheduleCommand::Remove(a)) => schedule::remove(&cli, a),
        Command::Completion(a) => completion::completion(a),
    }
}

/// The snapshot `restore --at` chooses, or an error that says when the earliest one is.
pub(crate) fn pick_at(list: &[(SnapshotId, Snapshot)], t: i64) -> Result<&(SnapshotId, Snapshot)> {
    match (cairn_engine::newest_at(list, t), list.first()) {
        (Some(found), _) => Ok(found),
        (None, Some((_, first))) => anyhow::bail!(
            "no snapshot at or before {}: the earliest matching snapshot is from {}",
            time::show(t),
            time::show(first.time)
        ),
        (None, None) => anyhow::bail!("no snapshot matches"),
    }
}
