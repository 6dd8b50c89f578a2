//! The subcommands, one file each: open the repository, plan and execute through a library
//! crate, report.

use crate::args::{
    Cli, Command, ConfigCommand, KeyCommand, RepairCommand, ScheduleCommand, SnapshotFilterArgs,
};
use crate::invalid;
use crate::report::reported;
use crate::time;
use anyhow::Result;
use cairn_format::snapshot::Snapshot;
use cairn_format::SnapshotId;
use serde_json::json;

mod backup;
mod check;
mod completion;
mod config;
mod copy;
mod diff;
mod dump;
mod find;
mod forget;
mod init;
mod key;
mod ls;
pub(crate) mod man;
mod mount;
mod repair;
mod restore;
mod schedule;
mod serve;
mod snapshots;
mod stats;

pub(crate) fn run(cli: Cli) -> Result<u8> {
    match &cli.command {
        Command::Init(a) => init::init(&cli, a),
        Command::Backup(a) => reported(&cli, "backup", &a.run, a.json, backup::blank(a), |r| {
            backup::backup(&cli, a, r)
        }),
        Command::Snapshots(a) => snapshots::snapshots(&cli, a),
        Command::Restore(a) => restore::restore(&cli, a),
        Command::Ls(a) => ls::ls(&cli, a),
        Command::Diff(a) => diff::diff(&cli, a),
        Command::Find(a) => find::find(&cli, a),
        Command::Dump(a) => dump::dump(&cli, a),
        Command::Mount(a) => mount::mount(&cli, a),
        Command::Check(a) => reported(&cli, "check", &a.run, a.json, json!({}), |r| {
            check::check(&cli, a, r)
        }),
        Command::Forget(a) => reported(&cli, "forget", &a.run, a.gc.json, json!({}), |r| {
            forget::forget(&cli, a, r)
        }),
        Command::Prune(a) => reported(&cli, "prune", &a.run, a.gc.json, json!({}), |r| {
            forget::prune(&cli, a, r)
        }),
        Command::Copy(a) => copy::copy(&cli, a),
        Command::Stats(a) => stats::stats(&cli, a),
        Command::Key(KeyCommand::List(a)) => key::list(&cli, a),
        Command::Key(KeyCommand::Add(a)) => key::add(&cli, a),
        Command::Key(KeyCommand::Remove(a)) => key::remove(&cli, a),
        Command::Key(KeyCommand::Passwd(a)) => key::passwd(&cli, a),
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

/// The one snapshot a command names, among those `filter` lets through: by `spec` (`latest`, an
/// id or id prefix, `SNAP~N`; `latest` when absent) or by `--at`. When it was chosen as the
/// latest or by time and snapshots of several hosts match, says on stderr which host it picked.
pub(crate) fn pick(
    all: &[(SnapshotId, Snapshot)],
    spec: Option<&str>,
    at: Option<i64>,
    filter: &SnapshotFilterArgs,
    quiet: bool,
) -> Result<(SnapshotId, Snapshot)> {
    let f = filter.filter();
    let list: Vec<(SnapshotId, Snapshot)> =
        all.iter().filter(|(_, s)| f.matches(s)).cloned().collect();
    let chosen = match (at, spec) {
        (Some(_), Some(spec)) => {
            return Err(invalid(format!(
                "give a snapshot or --at, not both (snapshot {spec:?})"
            )))
        }
        (Some(t), None) => pick_at(&list, t)?.clone(),
        (None, spec) => cairn_engine::find_snapshot(&list, spec.unwrap_or("latest"))?.clone(),
    };
    let by_time = at.is_some() || spec.is_none_or(|s| s.starts_with("latest"));
    if by_time && !quiet && filter.host.is_empty() {
        note_host(&list, &chosen, at.unwrap_or(i64::MAX));
    }
    Ok(chosen)
}

/// Which host's snapshot was picked, when several hosts have matching ones; and this host's
/// own, if another host's newer snapshot of the same paths won.
fn note_host(list: &[(SnapshotId, Snapshot)], chosen: &(SnapshotId, Snapshot), until: i64) {
    let mut hosts: Vec<&[u8]> = list.iter().map(|(_, s)| s.host.as_slice()).collect();
    hosts.sort();
    hosts.dedup();
    if hosts.len() < 2 {
        return;
    }
    let (id, snap) = chosen;
    let host = String::from_utf8_lossy(&snap.host);
    eprintln!(
        "note: picked snapshot {} of host {host}; {} hosts have matching snapshots (--host chooses)",
        id.short(),
        hosts.len()
    );
    let me = crate::open::hostname();
    if snap.host == me.as_bytes() {
        return;
    }
    let own = list
        .iter()
        .rev()
        .find(|(_, s)| s.host == me.as_bytes() && s.paths == snap.paths && s.time <= until);
    if let Some((own, s)) = own {
        eprintln!(
            "note: this host ({me}) has its own snapshot {} of {} of the same paths: --host {me} picks it",
            own.short(),
            time::show(s.time)
        );
    }
}

/// Names `what` (the snapshot or snapshots walked) in an error about their trees, which the
/// engines know by tree id only: damage, or a shape crafted to make the walk take forever.
pub(crate) fn in_trees_of(what: String) -> impl Fn(cairn_repo::Error) -> cairn_repo::Error {
    move |e| match e.kind {
        cairn_repo::ErrorKind::Corrupt => {
            cairn_repo::Error::new(e.kind, format!("{what}: {}", e.message))
        }
        _ => e,
    }
}

/// `ls` and `dump` take `SNAPSHOT [PATH]`, or with `--at` only `PATH`.
pub(crate) fn snapshot_and_path(
    words: &[String],
    at: bool,
) -> Result<(Option<&str>, Option<&str>)> {
    match (at, words) {
        (true, []) => Ok((None, None)),
        (true, [path]) => Ok((None, Some(path))),
        (true, _) => Err(invalid("with --at, name only the path, not a snapshot")),
        (false, []) => Err(invalid(
            "name a snapshot (`latest`, an id, SNAP~N) or give --at TIME",
        )),
        (false, [spec]) => Ok((Some(spec), None)),
        (false, [spec, path, ..]) => Ok((Some(spec), Some(path))),
    }
}

/// The snapshots a command over several names: those the filters let through, or of those the
/// ones `specs` name (ids, prefixes, `latest`, `SNAP~N`); oldest first, each once.
pub(crate) fn chosen(
    all: &[(SnapshotId, Snapshot)],
    specs: &[String],
    filter: &SnapshotFilterArgs,
) -> Result<Vec<(SnapshotId, Snapshot)>> {
    let f = filter.filter();
    let list: Vec<(SnapshotId, Snapshot)> =
        all.iter().filter(|(_, s)| f.matches(s)).cloned().collect();
    if specs.is_empty() {
        return Ok(list);
    }
    let mut named = std::collections::HashSet::new();
    for spec in specs {
        named.insert(cairn_engine::find_snapshot(&list, spec)?.0);
    }
    Ok(list
        .into_iter()
        .filter(|(id, _)| named.contains(id))
        .collect())
}
