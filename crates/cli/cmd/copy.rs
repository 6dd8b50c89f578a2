//! `copy`: snapshots into another repository with keys of its own, the off-site replica of a
//! recovery plan. Open both → plan (which chosen snapshots the target lacks) → copy each,
//! oldest first → report.
//!
//! Invariant: each snapshot is written into the target in a session of its own (`open_at` as a
//! writer, then `begin_session`), so the target's prunes and backups run beside a copy as
//! beside a series of backups; a snapshot the target holds already (`same_snapshot`) is never
//! copied twice.

use crate::args::{Cli, CopyArgs};
use crate::cmd::chosen;
use crate::open::{open, open_at, snapshots_of};
use crate::{invalid, output, password, time};
use anyhow::{Context, Result};
use cairn_engine::{copy_snapshot, learn, same_snapshot, CopyOutcome, Renamed};
use cairn_format::snapshot::Snapshot;
use cairn_format::{SnapshotId, TreeId};
use serde_json::json;
use std::collections::{HashMap, HashSet};

pub(crate) fn copy(cli: &Cli, a: &CopyArgs) -> Result<u8> {
    let source = open(cli, false)?;
    let to_password = password::Source {
        file: a.to_password_file.clone(),
        command: a.to_password_command.clone(),
        env: "CAIRN_TO_PASSWORD",
        what: "target repository password",
        prompt: "target repository password: ",
        flag: "--to-password",
    };
    let target = open_at(cli, &a.to, &to_password, a.dry_run, true)
        .with_context(|| format!("--to {}", a.to))?;
    if target.config().repo_id == source.config().repo_id {
        return Err(invalid(format!(
            "--to {} has the id of the repository copied from: it is that repository, or a copy of its files",
            target.location()
        )));
    }
    let all = snapshots_of(&source)?.list;
    let wanted = chosen(&all, &a.snapshots, &a.filter)?;

    // Plan: every source snapshot the target holds already, with its id and tree there.
    let present = target.snapshots()?.list;
    let mut copies: HashMap<SnapshotId, (SnapshotId, TreeId)> = HashMap::new();
    for (id, s) in &all {
        if let Some((tid, t)) = present.iter().find(|(_, t)| same_snapshot(s, t)) {
            copies.insert(*id, (*tid, t.tree));
        }
    }
    let (skipped, todo): (Vec<_>, Vec<_>) = wanted
        .into_iter()
        .partition(|(id, _)| copies.contains_key(id));
    let text = !cli.quiet && !a.json;
    if a.dry_run {
        if text {
            for (id, s) in &todo {
                println!("would copy snapshot {} {}", id.short(), describe(s));
            }
            println!(
                "would copy {} snapshots; {} are there already",
                todo.len(),
                skipped.len()
            );
        }
        if a.json {
            let would: Vec<_> = todo.iter().map(|(id, _)| id.to_hex()).collect();
            report_json(&target.location(), &[], &skipped, &copies, Some(would));
        }
        return Ok(0);
    }

    let mut renamed = Renamed::default();
    let mut learned: HashSet<SnapshotId> = HashSet::new();
    let mut done: Vec<(SnapshotId, CopyOutcome)> = Vec::new();
    for (id, s) in &todo {
        // Most of a snapshot is what the newest earlier one of its host and paths holds: once
        // the target has that one, its copy names those blobs, and they are not read again.
        let earlier = all.iter().rev().find(|(e, es)| {
            e != id
                && es.time <= s.time
                && es.host == s.host
                && es.paths == s.paths
                && copies.contains_key(e)
        });
        if let Some((e, es)) = earlier {
            // Only a shortcut: what cannot be learned is read from the source.
            if learned.insert(*e) {
                let learnt = learn(&source, &target, es.tree, copies[e].1, &mut renamed);
                if let (Err(why), false) = (learnt, cli.quiet) {
                    eprintln!(
                        "note: the copy of snapshot {} cannot be reused ({}): every chunk of the next one is read",
                        e.short(),
                        why.message
                    );
                }
            }
        }
        let parent = s.parent.and_then(|p| copies.get(&p)).map(|(tid, _)| *tid);
        // Each snapshot is a session of the target's own, as each backup is: the last one
        // ended when its snapshot was saved.
        target.begin_session()?;
        let outcome = copy_snapshot(&source, &target, s, parent, &mut renamed)
            .with_context(|| format!("snapshot {}", id.short()))?;
        if text {
            println!(
                "snapshot {} {} copied as {}: {} added in {} blobs",
                id.short(),
                describe(s),
                outcome.id.short(),
                output::bytes(outcome.bytes_added),
                outcome.blobs_added
            );
        }
        copies.insert(*id, (outcome.id, outcome.snapshot.tree));
        done.push((*id, outcome));
    }
    if text {
        let added: u64 = done.iter().map(|(_, o)| o.bytes_added).sum();
        println!(
            "copied {} snapshots into {} ({} added); {} were there already",
            done.len(),
            target.location(),
            output::bytes(added),
            skipped.len()
        );
    }
    if a.json {
        report_json(&target.location(), &done, &skipped, &copies, None);
    }
    Ok(0)
}

/// `of 2026-12-03 14:00:05, host h, /etc /home`.
fn describe(s: &Snapshot) -> String {
    let paths: Vec<_> = s.paths.iter().map(|p| String::from_utf8_lossy(p)).collect();
    format!(
        "of {}, host {}, {}",
        time::show(s.time),
        output::escape_controls(&s.host),
        output::escape_controls(paths.join(" ").as_bytes())
    )
}

fn report_json(
    target: &str,
    done: &[(SnapshotId, CopyOutcome)],
    skipped: &[(SnapshotId, Snapshot)],
    copies: &HashMap<SnapshotId, (SnapshotId, TreeId)>,
    would_copy: Option<Vec<String>>,
) {
    let copied: Vec<_> = done
        .iter()
        .map(|(id, o)| {
            json!({
                "source_id": id.to_hex(),
                "target_id": o.id.to_hex(),
                "time": time::rfc3339(o.snapshot.time),
                "host": String::from_utf8_lossy(&o.snapshot.host),
                "blobs_read": o.blobs_read,
                "blobs_added": o.blobs_added,
                "bytes_added": o.bytes_added,
                "raw_bytes_added": o.raw_bytes_added,
            })
        })
        .collect();
    let present: Vec<_> = skipped
        .iter()
        .map(|(id, _)| json!({"source_id": id.to_hex(), "target_id": copies[id].0.to_hex()}))
        .collect();
    let doc = json!({
        "target": target,
        "dry_run": would_copy.is_some(),
        "would_copy": would_copy,
        "copied": copied,
        "already_present": present,
        "blobs_added": done.iter().map(|(_, o)| o.blobs_added).sum::<u64>(),
        "bytes_added": done.iter().map(|(_, o)| o.bytes_added).sum::<u64>(),
        "raw_bytes_added": done.iter().map(|(_, o)| o.raw_bytes_added).sum::<u64>(),
    });
    println!("{doc}");
}
