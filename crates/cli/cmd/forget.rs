//! `forget` and `prune`: choose snapshots to drop by id or by a retention policy, then collect
//! the garbage. Each is open -> plan (policy, then prune's plan) -> execute unless --dry-run ->
//! report.

use crate::args::{Cli, ForgetArgs, GcArgs, PolicyArgs, PruneArgs, SnapshotFilterArgs};
use crate::open::{open_with, snapshots_of};
use crate::report::Run;
use crate::values::GroupBy;
use crate::{invalid, output, time};
use anyhow::Result;
use cairn_engine::{PruneOptions, RetentionInput};
use cairn_format::snapshot::Snapshot;
use cairn_format::SnapshotId;
use cairn_repo::{PruneReport, Repository};
use serde_json::json;
use std::collections::HashSet;
use std::io::Write;

/// What `forget` drops, and why: the snapshots named, then each group's policy decisions.
struct ForgetPlan {
    /// Snapshots named on the command line, with when they were taken.
    named: Vec<(SnapshotId, String)>,
    /// Whether a policy was given (then `groups` says what it decided, possibly nothing).
    policy: bool,
    groups: Vec<GroupDecisions>,
    /// Every snapshot to forget, once, in the order first decided.
    drop: Vec<SnapshotId>,
}

/// A policy's decisions for one group: kept snapshots with time and reasons, removed ones with
/// time.
struct GroupDecisions {
    key: serde_json::Value,
    keep: Vec<(SnapshotId, i64, Vec<String>)>,
    remove: Vec<(SnapshotId, i64)>,
}

/// Which snapshots to forget: named ones, and a policy's choice among those `filter` lets
/// through, as if run at `at`.
struct Chosen<'a> {
    ids: &'a [String],
    policy: &'a PolicyArgs,
    filter: &'a SnapshotFilterArgs,
    at: Option<i64>,
}

/// Decides what to forget; prints nothing and changes nothing.
fn plan_forget(repo: &Repository, chosen: Chosen) -> Result<ForgetPlan> {
    let Chosen {
        ids,
        policy,
        filter,
        at,
    } = chosen;
    let mut snapshots = snapshots_of(repo)?;
    // As if run at `at`: the snapshots taken after it do not exist yet.
    if let Some(t) = at {
        snapshots.list.retain(|(_, s)| s.time <= t);
    }
    let all = &snapshots.list;
    let mut plan = ForgetPlan {
        named: Vec::new(),
        policy: false,
        groups: Vec::new(),
        drop: Vec::new(),
    };
    for spec in ids {
        let (id, when) = match cairn_engine::find_snapshot(all, spec) {
            Ok((id, s)) => (*id, time::show(s.time)),
            // A damaged snapshot can still be named, by an unambiguous prefix, to forget it.
            Err(e) => match damaged_match(&snapshots.damaged, spec) {
                Some(id) => (id, "(damaged)".to_string()),
                None => return Err(e.into()),
            },
        };
        if !plan.drop.contains(&id) {
            plan.drop.push(id);
            plan.named.push((id, when));
        }
    }
    let p = policy.policy();
    if p.is_empty() {
        return Ok(plan);
    }
    plan.policy = true;
    let filter = filter.filter();
    let mut groups: Vec<(serde_json::Value, Vec<&(SnapshotId, Snapshot)>)> = Vec::new();
    for item in all.iter().filter(|(_, s)| filter.matches(s)) {
        let key = group_key(&item.1, policy.group_by);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(item),
            None => groups.push((key, vec![item])),
        }
    }
    let tz = jiff::tz::TimeZone::system();
    for (key, members) in groups {
        let inputs: Vec<RetentionInput> = members
            .iter()
            .map(|(id, s)| RetentionInput::from_snapshot(*id, s))
            .collect();
        let time_of = |id: &SnapshotId| members.iter().find(|(i, _)| i == id).unwrap().1.time;
        let mut group = GroupDecisions {
            key,
            keep: Vec::new(),
            remove: Vec::new(),
        };
        for d in cairn_engine::apply_policy(&inputs, &p, &tz) {
            if d.keep {
                let reasons = d.reasons.iter().map(ToString::to_string).collect();
                group.keep.push((d.id, time_of(&d.id), reasons));
            } else {
                group.remove.push((d.id, time_of(&d.id)));
                if !plan.drop.contains(&d.id) {
                    plan.drop.push(d.id);
                }
            }
        }
        plan.groups.push(group);
    }
    Ok(plan)
}

fn show_forget_plan(plan: &ForgetPlan, dry_run: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let verb = if dry_run { "would remove" } else { "remove" };
    for (id, when) in &plan.named {
        writeln!(out, "{verb} {} {when}", id.short())?;
    }
    for g in &plan.groups {
        writeln!(out, "group {}", group_title(&g.key))?;
        writeln!(out, "  keep {} snapshots:", g.keep.len())?;
        for (id, t, reasons) in &g.keep {
            let (id, t) = (id.short(), time::show(*t));
            writeln!(out, "    {id}  {t}  {}", reasons.join(", "))?;
        }
        writeln!(out, "  {verb} {} snapshots:", g.remove.len())?;
        for (id, t) in &g.remove {
            writeln!(out, "    {}  {}", id.short(), time::show(*t))?;
        }
    }
    Ok(())
}

fn forget_json(plan: &ForgetPlan) -> serde_json::Value {
    let mut report = json!({});
    if plan.policy {
        let groups: Vec<serde_json::Value> = plan
            .groups
            .iter()
            .map(|g| {
                json!({
                    "group": g.key,
                    "keep": g.keep.iter().map(|(id, t, reasons)| json!({
                        "id": id.to_hex(),
                        "time": time::rfc3339(*t),
                        "reasons": reasons,
                    })).collect::<Vec<_>>(),
                    "remove": g.remove.iter().map(|(id, t)| json!({
                        "id": id.to_hex(),
                        "time": time::rfc3339(*t),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        report["groups"] = json!(groups);
    }
    if plan.policy || !plan.named.is_empty() {
        report["removed"] = json!(plan.drop.iter().map(|i| i.to_hex()).collect::<Vec<_>>());
    }
    report
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

pub(crate) fn forget(cli: &Cli, a: &ForgetArgs, r: &mut Run) -> Result<u8> {
    if a.snapshots.is_empty() && a.policy.policy().is_empty() {
        return Err(invalid(
            "nothing to forget: name snapshots, or give a policy such as --keep-daily 7",
        ));
    }
    let chosen = Chosen {
        ids: &a.snapshots,
        policy: &a.policy,
        filter: &a.filter,
        at: a.at,
    };
    run(cli, chosen, &a.gc, a.prune, r)
}

pub(crate) fn prune(cli: &Cli, a: &PruneArgs, r: &mut Run) -> Result<u8> {
    let chosen = Chosen {
        ids: &[],
        policy: &a.policy,
        filter: &a.filter,
        at: None,
    };
    run(cli, chosen, &a.gc, true, r)
}

/// Open, plan what to forget, forget it unless dry, collect the garbage if asked, report.
fn run(cli: &Cli, chosen: Chosen, gc: &GcArgs, collect_garbage: bool, r: &mut Run) -> Result<u8> {
    // Prune copies blobs and rewrites the index: a session.
    let repo = open_with(cli, false, collect_garbage && !gc.dry_run)?;
    let plan = plan_forget(&repo, chosen)?;
    let text = !cli.quiet && !gc.json;
    if text {
        show_forget_plan(&plan, gc.dry_run)?;
    }
    if !gc.dry_run {
        repo.forget_snapshots(&plan.drop)?;
    }
    let mut report = forget_json(&plan);
    if collect_garbage {
        let opts = PruneOptions {
            max_unused: gc.max_unused,
            grace: gc.grace,
            dry_run: gc.dry_run,
            forgotten: plan.drop.iter().copied().collect::<HashSet<_>>(),
        };
        let r = cairn_engine::prune(&repo, &opts)?;
        report["prune"] = prune_json(&r, gc.dry_run);
        if text {
            show_prune(&r, gc.dry_run, cli.verbose > 0);
        }
    }
    report["dry_run"] = gc.dry_run.into();
    r.add(report);
    Ok(0)
}

fn prune_json(r: &PruneReport, dry_run: bool) -> serde_json::Value {
    json!({
        "dry_run": dry_run,
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
    })
}

fn show_prune(r: &PruneReport, dry_run: bool, verbose: bool) {
    if verbose {
        for id in &r.snapshots_vanished {
            println!(
                "snapshot {} was forgotten by another process while prune ran: skipped",
                id.short()
            );
        }
    }
    let would = if dry_run { "would " } else { "" };
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
}
