//! `check`: prove that every snapshot restores, or say exactly what cannot.

use crate::args::{CheckArgs, Cli};
use crate::open::open;
use crate::output::with_progress;
use crate::{failed, output, time};
use anyhow::Result;
use serde_json::json;
use std::sync::atomic::Ordering;

pub(crate) fn check(cli: &Cli, a: &CheckArgs) -> Result<u8> {
    let read_data = match (a.read_data_subset, a.read_data) {
        (Some(subset), _) => subset,
        (None, true) => cairn_engine::ReadData::All,
        (None, false) => cairn_engine::ReadData::None,
    };
    let repo = open(cli, false)?;
    let progress = cairn_engine::CheckProgress::default();
    let read = || {
        let p = &progress;
        (
            p.packs_read.load(Ordering::Relaxed),
            p.packs_to_read.load(Ordering::Relaxed),
            0,
            0,
        )
    };
    let show =
        output::show_progress(cli.quiet || a.json) && read_data != cairn_engine::ReadData::None;
    let report = with_progress(show, "check", read, || {
        cairn_engine::check(&repo, read_data, &progress)
    })?;
    let ok = report.errors.is_empty();
    if a.json {
        let doc = json!({
            "ok": ok,
            "snapshots": report.snapshots,
            "trees": report.trees,
            "packs": report.packs,
            "packs_read": report.packs_read,
            "errors": report.errors,
            "warnings": report.warnings,
            "snapshots_vanished": report.vanished.iter().map(|i| i.to_hex()).collect::<Vec<_>>(),
            "packs_recorded": report.recorded.iter().map(|i| i.to_hex()).collect::<Vec<_>>(),
            "in_damaged_packs": report.in_damaged_packs.iter().map(|d| json!({
                "snapshot": d.snapshot.to_hex(),
                "time": time::rfc3339(d.time),
                "paths": d.paths.iter().map(|(p, _)| p.to_string_lossy()).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "damage": report.damage.iter().map(|d| json!({
                "snapshot": d.snapshot.to_hex(),
                "time": time::rfc3339(d.time),
                "paths": d.paths.iter().map(|(p, why)| json!({"path": p.to_string_lossy(), "problem": why})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        });
        println!("{doc}");
    } else {
        for w in &report.warnings {
            eprintln!("warning: {w}");
        }
        if cli.verbose {
            for id in &report.vanished {
                println!(
                    "snapshot {} was forgotten by another process while check ran: skipped",
                    id.short()
                );
            }
        }
        for e in &report.errors {
            eprintln!("error: {e}");
        }
        if !report.damage.is_empty() {
            println!(
                "damage: {} snapshots cannot be restored completely",
                report.damage.len()
            );
            for d in &report.damage {
                println!(
                    "  snapshot {} of {}: {} paths",
                    d.snapshot.short(),
                    time::show(d.time),
                    d.paths.len()
                );
                for (path, why) in &d.paths {
                    println!("    {}: {why}", path.display());
                }
            }
        }
        if !report.in_damaged_packs.is_empty() {
            println!("restorable, but with data in a damaged pack:");
            for d in &report.in_damaged_packs {
                println!(
                    "  snapshot {} of {}: {} paths",
                    d.snapshot.short(),
                    time::show(d.time),
                    d.paths.len()
                );
                for (path, _) in &d.paths {
                    println!("    {}", path.display());
                }
            }
        }
        if !report.recorded.is_empty() {
            println!(
                "recorded {} damaged packs: backups store their content again, and the next prune moves their intact blobs to new packs (README.md, \"Repair\")",
                report.recorded.len()
            );
        }
        if !cli.quiet {
            println!(
                "checked {} snapshots, {} trees, {} packs ({} read in full): {}",
                report.snapshots,
                report.trees,
                report.packs,
                report.packs_read,
                if ok {
                    "no errors".to_string()
                } else {
                    format!("{} errors", report.errors.len())
                }
            );
        }
    }
    if !ok {
        return Err(failed(format!(
            "check found {} errors",
            report.errors.len()
        )));
    }
    Ok(0)
}
