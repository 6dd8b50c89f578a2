//! `forget` and `prune`: choose snapshots to drop by id or by a retention policy, then collect
//! the garbage. Each is open -> plan (policy, then prune's plan) -> execute unless --dry-run ->
//! report.

use crate::commands::{open_with, snapshots_of, Cli, SnapshotFilterArgs};
use crate::values::{self, GroupBy};
use crate::{exit, output, time, Exit};
use anyhow::Result;
use cairn_engine::{Decision, KeepCount, KeepDuration, Policy, PruneOptions, RetentionInput};
use cairn_format::snapshot::Snapshot;
use cairn_format::SnapshotId;
use cairn_repo::Repository;
use clap::Args;
use serde_json::json;
use std::collections::HashSet;
use std::io::Write;
use std::time::Duration;

pub const POLICY_HELP: &str = "\
Retention works as restic's `forget`: snapshots are grouped (by host and paths unless \
--group-by says otherwise) and each group is walked newest first. A snapshot is kept when any \
rule keeps it: --keep-last N the N newest; --keep-hourly/daily/weekly/monthly/yearly N the \
newest snapshot of each of the N newest hours (days, ISO weeks, months, years) that have one; \
--keep-within 30d everything within 30 days of the group's newest snapshot (units y m d h); \
--keep-within-daily 7d one a day within that range (likewise hourly ... yearly); --keep-tag \
a,b every snapshot with tags a and b. Counts take `unlimited`. Periods are calendar periods in \
the local time zone (TZ). Example: --keep-daily 7 --keep-weekly 4 --keep-monthly 12 keeps a \
week of dailies, a month of weeklies and a year of monthlies.";

/// The `--keep-*` options.
#[derive(Args, Clone, Default)]
pub struct PolicyArgs {
    /// Keep the N newest snapshots.
    #[arg(long, value_name = "N", value_parser = count, allow_negative_numbers = true)]
    keep_last: Option<KeepCount>,
    /// Keep the newest snapshot of each of the N newest hours with snapshots.
    #[arg(long, value_name = "N", value_parser = count, allow_negative_numbers = true)]
    keep_hourly: Option<KeepCount>,
    /// Keep the newest snapshot of each of the N newest days with snapshots.
    #[arg(long, value_name = "N", value_parser = count, allow_negative_numbers = true)]
    keep_daily: Option<KeepCount>,
    /// Keep the newest snapshot of each of the N newest ISO weeks with snapshots.
    #[arg(long, value_name = "N", value_parser = count, allow_negative_numbers = true)]
    keep_weekly: Option<KeepCount>,
    /// Keep the newest snapshot of each of the N newest months with snapshots.
    #[arg(long, value_name = "N", value_parser = count, allow_negative_numbers = true)]
    keep_monthly: Option<KeepCount>,
    /// Keep the newest snapshot of each of the N newest years with snapshots.
    #[arg(long, value_name = "N", value_parser = count, allow_negative_numbers = true)]
    keep_yearly: Option<KeepCount>,
    /// Keep every snapshot within DURATION (like 30d, 1y6m, 12h) of the group's newest.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    keep_within: Option<KeepDuration>,
    /// Keep the newest snapshot of each hour within DURATION of the group's newest.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    keep_within_hourly: Option<KeepDuration>,
    /// Keep the newest snapshot of each day within DURATION of the group's newest.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    keep_within_daily: Option<KeepDuration>,
    /// Keep the newest snapshot of each week within DURATION of the group's newest.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    keep_within_weekly: Option<KeepDuration>,
    /// Keep the newest snapshot of each month within DURATION of the group's newest.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    keep_within_monthly: Option<KeepDuration>,
    /// Keep the newest snapshot of each year within DURATION of the group's newest.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    keep_within_yearly: Option<KeepDuration>,
    /// Keep snapshots with all of these comma-separated tags (repeatable: any of the sets).
    #[arg(long, value_name = "TAGS", value_parser = values::non_empty)]
    keep_tag: Vec<String>,
    /// Group snapshots by these of host, paths, tags (comma-separated; empty: one group).
    #[arg(
        long,
        value_name = "FIELDS",
        default_value = "host,paths",
        value_parser = values::group_by
    )]
    group_by: GroupBy,
}

fn count(s: &str) -> Result<KeepCount, String> {
    cairn_engine::parse_keep_count(s).map_err(|e| e.message)
}

fn duration(s: &str) -> Result<KeepDuration, String> {
    cairn_engine::parse_keep_duration(s).map_err(|e| e.message)
}

impl PolicyArgs {
    fn policy(&self) -> Policy {
        let c = |v: Option<KeepCount>| v.unwrap_or(KeepCount::AtMost(0));
        let d = |v: Option<KeepDuration>| v.unwrap_or_default();
        Policy {
            keep_last: c(self.keep_last),
            keep_hourly: c(self.keep_hourly),
            keep_daily: c(self.keep_daily),
            keep_weekly: c(self.keep_weekly),
            keep_monthly: c(self.keep_monthly),
            keep_yearly: c(self.keep_yearly),
            keep_within: d(self.keep_within),
            keep_within_hourly: d(self.keep_within_hourly),
            keep_within_daily: d(self.keep_within_daily),
            keep_within_weekly: d(self.keep_within_weekly),
            keep_within_monthly: d(self.keep_within_monthly),
            keep_within_yearly: d(self.keep_within_yearly),
            keep_tags: self
                .keep_tag
                .iter()
                .map(|t| cairn_engine::parse_keep_tag(t))
                .collect(),
        }
    }
}

#[derive(Args)]
pub struct ForgetArgs {
    /// Snapshots to forget: ids or unique id prefixes.
    #[arg(value_name = "SNAPSHOT")]
    snapshots: Vec<String>,
    #[command(flatten)]
    policy: PolicyArgs,
    #[command(flatten)]
    filter: SnapshotFilterArgs,
    /// Collect the garbage afterwards, as `cairn prune` does.
    #[arg(long)]
    prune: bool,
    #[command(flatten)]
    gc: GcArgs,
}

#[derive(Args)]
pub struct PruneArgs {
    #[command(flatten)]
    policy: PolicyArgs,
    #[command(flatten)]
    filter: SnapshotFilterArgs,
    #[command(flatten)]
    gc: GcArgs,
}

#[derive(Args)]
pub struct GcArgs {
    /// Repack partly used packs until unused space is at most this share of used space.
    #[arg(long, value_name = "PERCENT", default_value = "5%", value_parser = percent)]
    max_unused: f64,
    /// Take a backup that has not renewed its marker in locks/ for this long (like 1d, 12h;
    /// at least 10m) for dead: it is fenced off, so that it can never commit, and the data
    /// only it protected can go.
    #[arg(long, value_name = "DURATION", default_value = "1d", value_parser = grace)]
    grace: Duration,
    /// Show what would be forgotten, deleted and repacked; change nothing.
    #[arg(long, short = 'n')]
    dry_run: bool,
    /// Print a JSON report.
    #[arg(long)]
    json: bool,
}

fn percent(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("invalid percentage {s:?}: give a number like 5%"))?;
    if !(0.0..=1000.0).contains(&v) {
        return Err(format!("percentage {s:?} is out of range 0% to 1000%"));
    }
    Ok(v / 100.0)
}

fn grace(s: &str) -> Result<Duration, String> {
    let d = plain_duration(s)?;
    // A running backup renews its marker every few minutes; a shorter grace would fence off
    // backups that are merely running.
    if d < cairn_repo::MIN_GRACE {
        return Err(format!(
            "grace {s:?} is too short: it must be at least {}, two of a backup's marker renewals",
            output::duration(cairn_repo::MIN_GRACE.as_nanos() as u64)
        ));
    }
    Ok(d)
}

/// A duration like `90s`, `30m`, `1h` or `2d`.
pub(crate) fn plain_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let bad = || format!("invalid duration {s:?}: give a number and a unit s, m, h or d, like 1h");
    let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let n: u64 = t[..split].parse().map_err(|_| bad())?;
    let secs = match &t[split..] {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return Err(bad()),
    };
    Ok(Duration::from_secs(secs))
}

/// The snapshots a policy or a list of ids drops, after printing the plan.
fn plan_forget(
    repo: &Repository,
    ids: &[String],
    policy: &PolicyArgs,
    filter: &SnapshotFilterArgs,
    gc: &GcArgs,
    quiet: bool,
    report: &mut serde_json::Value,
) -> Result<Vec<SnapshotId>> {
    let all = snapshots_of(repo)?;
    let mut drop: Vec<SnapshotId> = Vec::new();
    let mut out = std::io::stdout().lock();
    let verb = if gc.dry_run { "would remove" } else { "remove" };
    for spec in ids {
        let (id, when) = match cairn_engine::find_snapshot(&all, spec) {
            Ok((id, s)) => (*id, time::show(s.time)),
            // A damaged snapshot can still be named, by an unambiguous prefix, to forget it.
            Err(e) => match damaged_match(repo, spec) {
                Some(id) => (id, "(damaged)".to_string()),
                None => return Err(e.into()),
            },
        };
        if !drop.contains(&id) {
            drop.push(id);
            if !quiet && !gc.json {
                writeln!(out, "{verb} {} {when}", id.short())?;
            }
        }
    }
    let p = policy.policy();
    if p.is_empty() {
        if !ids.is_empty() {
            report["removed"] = json!(drop.iter().map(|i| i.to_hex()).collect::<Vec<_>>());
        }
        return Ok(drop);
    }
    let filter = filter.filter();
    let fields = policy.group_by;
    let tz = jiff::tz::TimeZone::system();
    let mut groups: Vec<(serde_json::Value, Vec<&(SnapshotId, Snapshot)>)> = Vec::new();
    for item in all.iter().filter(|(_, s)| filter.matches(s)) {
        let key = group_key(&item.1, fields);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(item),
            None => groups.push((key, vec![item])),
        }
    }
    let mut json_groups = Vec::new();
    for (key, members) in &groups {
        let inputs: Vec<RetentionInput> = members
            .iter()
            .map(|(id, s)| RetentionInput::from_snapshot(*id, s))
            .collect();
        let decisions = cairn_engine::apply_policy(&inputs, &p, &tz);
        let time_of = |id: &SnapshotId| members.iter().find(|(i, _)| i == id).unwrap().1.time;
        let (keep, remove): (Vec<&Decision>, Vec<&Decision>) =
            decisions.iter().partition(|d| d.keep);
        if !quiet && !gc.json {
            writeln!(out, "group {}", group_title(key))?;
            writeln!(out, "  keep {} snapshots:", keep.len())?;
            for d in &keep {
                let reasons: Vec<String> = d.reasons.iter().map(ToString::to_string).collect();
                writeln!(
                    out,
                    "    {}  {}  {}",
                    d.id.short(),
                    time::show(time_of(&d.id)),
                    reasons.join(", ")
                )?;
            }
            writeln!(out, "  {verb} {} snapshots:", remove.len())?;
            for d in &remove {
                writeln!(out, "    {}  {}", d.id.short(), time::show(time_of(&d.id)))?;
            }
        }
        json_groups.push(json!({
            "group": key,
            "keep": keep.iter().map(|d| json!({
                "id": d.id.to_hex(),
                "time": time::rfc3339(time_of(&d.id)),
                "reasons": d.reasons.iter().map(ToString::to_string).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "remove": remove.iter().map(|d| json!({
                "id": d.id.to_hex(),
                "time": time::rfc3339(time_of(&d.id)),
            })).collect::<Vec<_>>(),
        }));
        for d in remove {
            if !drop.contains(&d.id) {
                drop.push(d.id);
            }
        }
    }
    report["groups"] = json!(json_groups);
    report["removed"] = json!(drop.iter().map(|i| i.to_hex()).collect::<Vec<_>>());
    Ok(drop)
}

/// The one damaged snapshot whose id starts with `spec`, if there is exactly one.
fn damaged_match(repo: &Repository, spec: &str) -> Option<SnapshotId> {
    let spec = spec.to_ascii_lowercase();
    let mut found = repo
        .damaged_snapshots()
        .into_iter()
        .filter(|(id, _)| !spec.is_empty() && id.to_hex().starts_with(&spec));
    match (found.next(), found.next()) {
        (Some((id, _)), None) => Some(id),
        _ => None,
    }
}

fn group_key(s: &Snapshot, by: GroupBy) -> serde_json::Value {
    let GroupBy { host, paths, tags } = by;
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mut key = serde_json::Map::new();
    if host {
        key.insert("host".into(), json!(text(&s.host)));
    }
    if paths {
        key.insert(
            "paths".into(),
            json!(s.paths.iter().map(|p| text(p)).collect::<Vec<_>>()),
        );
    }
    if tags {
        key.insert(
            "tags".into(),
            json!(s.tags.iter().map(|t| text(t)).collect::<Vec<_>>()),
        );
    }
    serde_json::Value::Object(key)
}

fn group_title(key: &serde_json::Value) -> String {
    let parts: Vec<String> = key
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| match v {
                    serde_json::Value::Array(a) => format!(
                        "{k} {}",
                        a.iter()
                            .filter_map(|x| x.as_str())
                            .collect::<Vec<_>>()
                            .join(" ")
                    ),
                    v => format!("{k} {}", v.as_str().unwrap_or_default()),
                })
                .collect()
        })
        .unwrap_or_default();
    if parts.is_empty() {
        "all snapshots".into()
    } else {
        parts.join(", ")
    }
}

pub fn forget(cli: &Cli, a: &ForgetArgs) -> Result<u8> {
    if a.snapshots.is_empty() && a.policy.policy().is_empty() {
        return Err(Exit(
            exit::USAGE,
            "nothing to forget: name snapshots, or give a policy such as --keep-daily 7".into(),
        )
        .into());
    }
    run(cli, &a.snapshots, &a.policy, &a.filter, &a.gc, a.prune)
}

pub fn prune(cli: &Cli, a: &PruneArgs) -> Result<u8> {
    run(cli, &[], &a.policy, &a.filter, &a.gc, true)
}

/// Open, plan what to forget, forget it unless dry, collect the garbage if asked, report.
fn run(
    cli: &Cli,
    ids: &[String],
    policy: &PolicyArgs,
    filter: &SnapshotFilterArgs,
    gc: &GcArgs,
    collect_garbage: bool,
) -> Result<u8> {
    // Prune copies blobs and rewrites the index: a session.
    let repo = open_with(cli, false, collect_garbage && !gc.dry_run)?;
    let mut report = json!({});
    let drop = plan_forget(&repo, ids, policy, filter, gc, cli.quiet, &mut report)?;
    if !gc.dry_run {
        repo.forget_snapshots(&drop)?;
    }
    if collect_garbage {
        collect(&repo, gc, &drop, cli, &mut report)?;
    }
    if gc.json {
        println!("{report}");
    }
    Ok(0)
}

/// Runs the garbage collection and reports it.
fn collect(
    repo: &Repository,
    gc: &GcArgs,
    forgotten: &[SnapshotId],
    cli: &Cli,
    report: &mut serde_json::Value,
) -> Result<()> {
    let quiet = cli.quiet;
    let opts = PruneOptions {
        max_unused: gc.max_unused,
        grace: gc.grace,
        dry_run: gc.dry_run,
        forgotten: forgotten.iter().copied().collect::<HashSet<_>>(),
    };
    let r = cairn_engine::prune(repo, &opts)?;
    report["prune"] = json!({
        "dry_run": gc.dry_run,
        "snapshots": r.snapshots,
        "packs": r.packs,
        "blobs_used": r.blobs_used,
        "packs_unused": r.packs_unused,
        "packs_repacked": r.packs_repacked,
        "blobs_repacked": r.blobs_repacked,
        "bytes_repacked": r.bytes_repacked,
        "blobs_revived": r.blobs_revived,
        "packs_deleted": r.packs_deleted,
        "bytes_freed": r.bytes_freed,
        "packs_deferred": r.packs_deferred,
        "bytes_deferred": r.bytes_deferred,
        "bytes_unused_kept": r.bytes_unused_kept,
        "index_files_written": r.index_files_written,
        "index_files_removed": r.index_files_removed,
        "sessions_fenced": r.sessions_fenced,
        "copies_damaged": r.copies_damaged,
        "temporaries_removed": r.temporaries_removed,
        "temporary_bytes_removed": r.temporary_bytes_removed,
        "snapshots_vanished": r.snapshots_vanished.iter().map(|i| i.to_hex()).collect::<Vec<_>>(),
        "deferred_because": r.deferred_because,
        "duration_seconds": r.duration.as_secs_f64(),
    });
    if quiet || gc.json {
        return Ok(());
    }
    if cli.verbose {
        for id in &r.snapshots_vanished {
            println!(
                "snapshot {} was forgotten by another process while prune ran: skipped",
                id.short()
            );
        }
    }
    let would = if gc.dry_run { "would " } else { "" };
    println!(
        "{} snapshots reach {} blobs; {} packs, {} of them unused",
        r.snapshots, r.blobs_used, r.packs, r.packs_unused
    );
    println!(
        "{would}repack {} packs ({} blobs, {}); unused space left in packs: {}",
        r.packs_repacked,
        r.blobs_repacked,
        output::bytes(r.bytes_repacked),
        output::bytes(r.bytes_unused_kept)
    );
    println!(
        "{would}delete {} packs, freeing {}",
        r.packs_deleted,
        output::bytes(r.bytes_freed)
    );
    if r.packs_deferred > 0 {
        println!(
            "{} condemned packs ({}) kept for now: {}",
            r.packs_deferred,
            output::bytes(r.bytes_deferred),
            r.deferred_because.as_deref().unwrap_or("")
        );
    }
    if r.blobs_revived > 0 {
        println!("{} blobs copied out of condemned packs", r.blobs_revived);
    }
    if r.sessions_fenced > 0 {
        println!(
            "fenced off {} backup(s) that had not renewed their markers for --grace: they cannot commit until they check their data again",
            r.sessions_fenced
        );
    }
    if r.copies_damaged > 0 {
        println!(
            "{} damaged copies of used blobs found and left out of the index; their good copies kept",
            r.copies_damaged
        );
    }
    if r.temporaries_removed > 0 {
        println!(
            "removed {} temporary files ({}) left by killed writers",
            r.temporaries_removed,
            output::bytes(r.temporary_bytes_removed)
        );
    }
    println!("done in {}", output::duration(r.duration.as_nanos() as u64));
    Ok(())
}
