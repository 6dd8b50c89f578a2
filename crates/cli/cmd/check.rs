//! `check`: prove that every snapshot restores, or say exactly what cannot.

use crate::args::{CheckArgs, Cli};
use crate::open::open;
use crate::output::{with_progress, Count, Unit};
use crate::report::Run;
use crate::{failed, output, time};
use anyhow::Result;
use cairn_engine::{CheckProgress, CheckReport, Damage, Detail, Problem, ReadData};
use cairn_repo::Repository;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;

pub(crate) fn check(cli: &Cli, a: &CheckArgs, r: &mut Run) -> Result<u8> {
    let to_read = match (a.read_data_subset, a.read_data) {
        (Some(subset), _) => subset,
        (None, true) => ReadData::All,
        (None, false) => ReadData::None,
    };
    let repo = open(cli, false)?;
    let report = execute(cli, a, &repo, to_read)?;
    if !a.json {
        print_report(cli, &report);
    }
    for w in report.warnings() {
        r.record_warning(w.to_string());
    }
    r.add(json_report(&report));
    let errors = report.errors().count();
    if errors > 0 {
        return Err(failed(format!("check found {errors} errors")));
    }
    Ok(0)
}

/// Runs the check, showing how many packs are read when any are and the output is for a person.
fn execute(cli: &Cli, a: &CheckArgs, repo: &Repository, to_read: ReadData) -> Result<CheckReport> {
    let progress = CheckProgress::default();
    let read = || {
        let p = &progress;
        let to_read = p.packs_to_read.load(Ordering::Relaxed);
        vec![
            Count::of(
                Unit::Packs,
                p.packs_read.load(Ordering::Relaxed),
                Some(to_read),
            ),
            Count::of(Unit::Bytes, p.bytes_read.load(Ordering::Relaxed), None),
        ]
    };
    let show = output::show_progress(cli.quiet || a.json) && to_read != ReadData::None;
    Ok(with_progress(show, "check", read, || {
        cairn_engine::check(repo, to_read, &progress)
    })?)
}

/// The report for a person: problems on stderr, the damage and the summary on stdout.
fn print_report(cli: &Cli, report: &CheckReport) {
    for w in report.warnings() {
        eprintln!("warning: {w}");
    }
    if cli.verbose > 0 {
        for id in &report.vanished {
            println!(
                "snapshot {} was forgotten by another process while check ran: skipped",
                id.short()
            );
        }
    }
    for e in report.errors() {
        eprintln!("error: {e}");
    }
    if !report.damage.is_empty() {
        println!(
            "damage: {} snapshots cannot be restored completely",
            report.damage.len()
        );
        report.damage.iter().for_each(|d| print_paths(d, true));
    }
    if !report.in_damaged_packs.is_empty() {
        println!("restorable, but with data in a damaged pack:");
        report
            .in_damaged_packs
            .iter()
            .for_each(|d| print_paths(d, false));
    }
    if !report.recorded.is_empty() {
        println!(
            "recorded {} damaged packs: backups store their content again, and the next prune moves their intact blobs to new packs (README.md, \"Repair\")",
            report.recorded.len()
        );
    }
    if !cli.quiet {
        let errors = report.errors().count();
        println!(
            "checked {} snapshots, {} trees, {} packs ({} read in full): {}",
            report.snapshots,
            report.trees,
            report.packs,
            report.packs_read,
            if errors == 0 {
                "no errors".to_string()
            } else {
                format!("{errors} errors")
            }
        );
    }
}

/// One snapshot's paths, each with why it is listed if `why`.
fn print_paths(d: &Damage, why: bool) {
    println!(
        "  snapshot {} of {}: {} paths",
        d.snapshot.short(),
        time::show(d.time),
        d.paths.len()
    );
    for p in &d.paths {
        if why {
            println!("    {}: {}", p.path.display(), p.reason);
        } else {
            println!("    {}", p.path.display());
        }
    }
}

/// The report for a program. `errors` and `warnings` are the lines a person sees; `problems`
/// gives each of them structured, in the order found.
fn json_report(report: &CheckReport) -> Value {
    json!({
        "ok": report.ok(),
        "snapshots": report.snapshots,
        "trees": report.trees,
        "packs": report.packs,
        "packs_read": report.packs_read,
        "errors": report.errors().map(ToString::to_string).collect::<Vec<_>>(),
        "problems": report.problems.iter().map(problem_json).collect::<Vec<_>>(),
        "snapshots_vanished": report.vanished.iter().map(|i| i.to_hex()).collect::<Vec<_>>(),
        "packs_recorded": report.recorded.iter().map(|i| i.to_hex()).collect::<Vec<_>>(),
        "in_damaged_packs": report.in_damaged_packs.iter().map(|d| json!({
            "snapshot": d.snapshot.to_hex(),
            "time": time::rfc3339(d.time),
            "paths": d.paths.iter().map(|p| p.path.to_string_lossy()).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "damage": report.damage.iter().map(|d| json!({
            "snapshot": d.snapshot.to_hex(),
            "time": time::rfc3339(d.time),
            "paths": d.paths.iter().map(|p| json!({"path": p.path.to_string_lossy(), "problem": p.reason})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

/// `{"kind": .., "severity": "error" or "warning", "message": .., ...}`, with the problem's
/// details (ids in full hex) as further fields.
fn problem_json(problem: &Problem) -> Value {
    let severity = if problem.is_warning() {
        "warning"
    } else {
        "error"
    };
    let mut doc = serde_json::Map::new();
    doc.insert("kind".into(), problem.kind().into());
    doc.insert("severity".into(), severity.into());
    doc.insert("message".into(), problem.to_string().into());
    for (name, detail) in problem.details() {
        let value: Value = match detail {
            Detail::Id(hex) => hex.into(),
            Detail::Ids(hexes) => hexes.into(),
            Detail::Path(path) => path.to_string_lossy().into(),
            Detail::Number(n) => n.into(),
            Detail::Word(word) => word.into(),
        };
        doc.insert(name.into(), value);
    }
    Value::Object(doc)
}
