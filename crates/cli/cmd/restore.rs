//! `restore`: write a snapshot (or part of it) into a directory.

use crate::args::{Cli, RestoreArgs};
use crate::cmd::{in_trees_of, pick};
use crate::open::{open, snapshots_of};
use crate::output::{with_progress, Count, Unit};
use crate::{failed, invalid, output, time};
use anyhow::Result;
use cairn_engine::{Filter, PathProblem};
use cairn_format::snapshot::Snapshot;
use cairn_format::SnapshotId;
use serde_json::json;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

pub(crate) fn restore(cli: &Cli, a: &RestoreArgs) -> Result<u8> {
    let include = Filter::new(&a.include).map_err(invalid)?;
    let exclude = Filter::new(&a.exclude).map_err(invalid)?;
    let repo = open(cli, false)?;
    let list = snapshots_of(&repo)?.list;
    let (id, snap) = &pick(&list, a.snapshot.as_deref(), a.at, &a.filter, cli.quiet)?;
    let opts = cairn_engine::RestoreOptions {
        target: std::path::absolute(&a.target)?,
        include,
        exclude,
        dry_run: a.dry_run,
        owners: rustix::process::geteuid().is_root(),
        verify: a.verify,
    };
    let quiet = cli.quiet || a.json;
    if !quiet {
        eprintln!(
            "restoring snapshot {} of {} ({}, {}) to {}",
            id.short(),
            time::show(snap.time),
            String::from_utf8_lossy(&snap.host),
            snap.kind.name(),
            opts.target.display()
        );
    }
    let plan = cairn_engine::plan_restore(&repo, snap.tree, &opts)
        .map_err(in_trees_of(format!("snapshot {}", id.short())))?;
    let sources: Vec<PathBuf> = snap
        .paths
        .iter()
        .map(|p| PathBuf::from(std::ffi::OsStr::from_bytes(p)))
        .collect();

    // Listed only when needed: a path per entry is a lot of memory for a large tree.
    let paths = if a.dry_run || !a.include.is_empty() {
        plan.paths(&opts.target)
    } else {
        Vec::new()
    };
    // A pattern that matches nothing is most often a typo; restoring the rest and exiting 0
    // would hide that the file asked for was not restored.
    let unmatched = unmatched_includes(&a.include, &paths).map(|pats| {
        failed(format!(
            "--include {pats} matched nothing in snapshot {}",
            id.short()
        ))
    });
    // Deleted before writing, so that the directories' own mtimes, set last, are the
    // snapshot's.
    let (extra, failed_deletes) = if a.delete {
        plan.extraneous(&opts.target, &sources, a.dry_run)
    } else {
        Default::default()
    };
    for e in &failed_deletes {
        eprintln!("error: {}: {}", e.path.display(), e.reason);
    }
    let deleted = a.delete.then(|| extra.len() - failed_deletes.len());
    let done = Done {
        id,
        snap,
        target: &opts.target,
        deleted,
        failed_deletes: &failed_deletes,
    };
    if a.dry_run && a.json {
        let planned = cairn_engine::RestoreOutcome {
            files: plan.files(),
            dirs: plan.dirs(),
            bytes: plan.bytes(),
            ..Default::default()
        };
        println!("{}", json_report(a, &done, &planned, 0.0));
    } else if a.dry_run {
        show_plan(&plan, &paths)?;
        let mut out = std::io::stdout().lock();
        for p in &extra {
            out.write_all(b"would delete ")?;
            out.write_all(&output::path(p))?;
            out.write_all(b"\n")?;
        }
    } else {
        drop(paths);
        if let (Some(n), false) = (deleted, quiet) {
            println!("deleted {n} entries the snapshot does not hold");
        }
        let started = std::time::Instant::now();
        let progress = cairn_engine::RestoreProgress::default();
        let read = || progress_of(&progress);
        let outcome = with_progress(output::show_progress(quiet), "restore", read, || {
            cairn_engine::execute_restore(&repo, plan, &opts, &progress)
        })?;
        report(cli, a, &done, &outcome, started)?;
        if !failed_deletes.is_empty() {
            return Err(failed(format!(
                "{} entries could not be deleted",
                failed_deletes.len()
            )));
        }
    }
    unmatched.map_or(Ok(0), Err)
}

/// Bytes and files written, of the totals the plan gives (zero until execution starts, when
/// the display spins).
fn progress_of(p: &cairn_engine::RestoreProgress) -> Vec<Count> {
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    vec![
        Count::of(Unit::Bytes, load(&p.bytes), Some(load(&p.total_bytes))),
        Count::of(Unit::Files, load(&p.files), Some(load(&p.total_files))),
    ]
}

/// The `--include` patterns that match no planned path, quoted and joined.
fn unmatched_includes(include: &[String], planned: &[PathBuf]) -> Option<String> {
    let unmatched: Vec<String> = include
        .iter()
        .filter(|pat| {
            let f = Filter::new(std::slice::from_ref(*pat)).expect("clap checked the pattern");
            !planned.iter().any(|p| f.matches(&Path::new("/").join(p)))
        })
        .map(|pat| format!("{pat:?}"))
        .collect();
    (!unmatched.is_empty()).then(|| unmatched.join(", "))
}

/// `--dry-run`: every path the plan would write, then its totals.
fn show_plan(plan: &cairn_engine::RestorePlan, paths: &[PathBuf]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    for p in paths {
        out.write_all(&output::path(p))?;
        out.write_all(b"\n")?;
    }
    writeln!(
        out,
        "would restore {} files, {} directories, {}",
        plan.files(),
        plan.dirs(),
        output::bytes(plan.bytes())
    )?;
    Ok(())
}

/// What the report names besides the restore's outcome.
struct Done<'a> {
    id: &'a SnapshotId,
    snap: &'a Snapshot,
    target: &'a Path,
    /// With --delete, the entries deleted (with --dry-run, to delete).
    deleted: Option<usize>,
    failed_deletes: &'a [PathProblem],
}

/// The restore's JSON report: the figures of the text summary, and every problem.
fn json_report(
    a: &RestoreArgs,
    done: &Done,
    outcome: &cairn_engine::RestoreOutcome,
    seconds: f64,
) -> serde_json::Value {
    let problems = |list: &[&PathProblem]| -> Vec<serde_json::Value> {
        list.iter()
            .map(|p| json!({"path": p.path.to_string_lossy(), "error": p.reason}))
            .collect()
    };
    let errors: Vec<&PathProblem> = outcome.errors.iter().chain(done.failed_deletes).collect();
    let warnings: Vec<&PathProblem> = outcome.warnings.iter().collect();
    json!({
        "snapshot_id": done.id.to_hex(),
        "snapshot_time": time::rfc3339(done.snap.time),
        "host": String::from_utf8_lossy(&done.snap.host),
        "target": done.target.to_string_lossy(),
        "dry_run": a.dry_run,
        "files": outcome.files,
        "files_kept": outcome.files_kept,
        "dirs": outcome.dirs,
        "bytes": outcome.bytes,
        "files_verified": a.verify.then_some(outcome.files_verified),
        "deleted": done.deleted,
        "errors": problems(&errors),
        "warnings": problems(&warnings),
        "duration_seconds": seconds,
    })
}

fn report(
    cli: &Cli,
    a: &RestoreArgs,
    done: &Done,
    outcome: &cairn_engine::RestoreOutcome,
    started: std::time::Instant,
) -> Result<()> {
    for w in &outcome.warnings {
        eprintln!("warning: {}: {}", w.path.display(), w.reason);
    }
    for e in &outcome.errors {
        eprintln!("error: {}: {}", e.path.display(), e.reason);
    }
    if a.json {
        let seconds = started.elapsed().as_secs_f64();
        println!("{}", json_report(a, done, outcome, seconds));
    } else if !cli.quiet {
        let kept = if outcome.files_kept > 0 {
            format!(" ({} already complete, kept)", outcome.files_kept)
        } else {
            String::new()
        };
        let verified = if a.verify {
            format!("; {} files verified", outcome.files_verified)
        } else {
            String::new()
        };
        println!(
            "restored {} files{kept}, {} directories, {} in {}{verified}; {} errors",
            outcome.files,
            outcome.dirs,
            output::bytes(outcome.bytes),
            output::duration(started.elapsed().as_nanos() as u64),
            outcome.errors.len()
        );
    }
    if !outcome.errors.is_empty() {
        let n = outcome.errors.len();
        return Err(failed(format!(
            "{n} entries could not be restored or differ from the snapshot"
        )));
    }
    Ok(())
}
