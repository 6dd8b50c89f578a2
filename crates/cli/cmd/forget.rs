//! `forget` and `prune`: choose snapshots to drop by id or by a retention policy, then collect
//! the garbage. Each is open -> plan (policy, then prune's plan) -> execute unless --dry-run ->
//! report.

use crate::args::{Cli, ForgetArgs, GcArgs, PolicyArgs, PruneArgs, SnapshotFilterArgs};
use crate::open::{open_with, snapshots_of};
use crate::values::GroupBy;
use crate::{invalid, output, time};
use anyhow::Result;
use cairn_engine::{Decision, PruneOptions, RetentionInput};
use cairn_format::snapshot::Snapshot;
use cairn_format::SnapshotId;
use cairn_repo::Repository;
use serde_json::json;
use std::collections::HashSet;
use std::io::Write;

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
    let snapshots = snapshots_of(repo)?;
    let all = &snapshots.list;
    let mut drop: Vec<SnapshotId> = Vec::new();
    let mut out = std::io::stdout().lock();
    let verb = if gc.dry_run { "would remove" } else { "remove" };
    for spec in ids {
        let (id, when) = match cairn_engine::find_snapshot(all, spec) {
            Ok((id, s)) => (*id, time::show(s.time)),
            // A damaged snapshot can still be named, by an unambiguous prefix, to forget it.
            Err(e) => match damaged_match(&snapshots.damaged, spec) {
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
fn damaged_match(damaged: &[(SnapshotId, String)], spec: &str) -> Option<SnapshotId> {
    let spec = spec.to_ascii_lowercase();
    let mut found = damaged
        .iter()
        .filter(|(id, _)| !spec.is_empty() && id.to_hex().starts_with(&spec));
    match (found.next(), found.next()) {
        (Some((id, _)), None) => Some(*id),
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

pub(crate) fn forget(cli: &Cli, a: &ForgetArgs) -> Result<u8> {
    if a.snapshots.is_empty() && a.policy.policy().is_empty() {
        return Err(invalid(
            "nothing to forget: name snapshots, or give a policy such as --keep-daily 7",
        ));
    }
    run(cli, &a.snapshots, &a.policy, &a.filter, &a.gc, a.prune)
}

pub(crate) fn prune(cli: &Cli, a: &PruneArgs) -> Result<u8> {
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
