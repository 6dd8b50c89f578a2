//! `repair index` and `repair snapshots`.

use crate::args::{Cli, RepairIndexArgs, RepairSnapshotsArgs};
use crate::open::open_with;
use crate::time;
use anyhow::Result;
use serde_json::json;

pub(crate) fn repair_index(cli: &Cli, a: &RepairIndexArgs) -> Result<u8> {
    // It writes index files: a session, so that no prune deletes a pack it indexes.
    let repo = open_with(cli, false, true)?;
    let r = cairn_engine::repair_index(&repo, a.read_data)?;
    for (pack, why) in &r.packs_unreadable {
        eprintln!("warning: pack {} left out: {why}", pack.short());
    }
    for (pack, why) in &r.packs_salvaged {
        eprintln!(
            "warning: pack {}: {why}; its blobs were located by the old index",
            pack.short()
        );
    }
    if a.json {
        let packs = |list: &[(cairn_format::PackId, String)]| -> Vec<serde_json::Value> {
            list.iter()
                .map(|(pack, why)| json!({"pack": pack.to_hex(), "reason": why}))
                .collect()
        };
        let doc = json!({
            "packs": r.packs,
            "packs_indexed": r.packs_indexed,
            "packs_left": r.packs_left,
            "packs_condemned": r.packs_condemned,
            "packs_unreadable": packs(&r.packs_unreadable),
            "packs_salvaged": packs(&r.packs_salvaged),
            "blobs_damaged": r.blobs_damaged,
            "index_files_written": r.index_files_written,
            "index_files_removed": r.index_files_removed,
        });
        println!("{doc}");
    } else if !cli.quiet {
        println!(
            "indexed {} of {} packs in {} new index files, removed {} old ones{}",
            r.packs_indexed,
            r.packs,
            r.index_files_written,
            r.index_files_removed,
            if a.read_data || r.blobs_damaged > 0 {
                format!("; {} damaged blobs left out", r.blobs_damaged)
            } else {
                String::new()
            }
        );
        if r.packs_condemned > 0 {
            println!(
                "{} damaged packs condemned: their intact blobs stay readable, backups store their content again, and the next prune moves what snapshots use",
                r.packs_condemned
            );
        }
    }
    if r.packs_left > 0 {
        eprintln!(
            "warning: {} packs no index names left out: another backup is running or was fenced off while stopped, and indexes them itself; run `repair index` again once it ends",
            r.packs_left
        );
    }
    Ok(0)
}

pub(crate) fn repair_snapshots(cli: &Cli, a: &RepairSnapshotsArgs) -> Result<u8> {
    let repo = open_with(cli, a.dry_run, true)?;
    let repaired = cairn_engine::repair_snapshots(&repo, a.read_data, a.dry_run)?;
    if a.json {
        let docs: Vec<_> = repaired
            .iter()
            .map(|r| {
                json!({
                    "original": r.original.to_hex(),
                    "repaired": r.repaired.map(|id| id.to_hex()),
                    "time": time::rfc3339(r.time),
                    "lost": r.lost.iter().map(|(p, why)| json!({"path": p.to_string_lossy(), "problem": why})).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(docs));
        return Ok(0);
    }
    for r in &repaired {
        let new = match r.repaired {
            Some(id) => format!("saved as {}", id.short()),
            None => "would be saved anew".into(),
        };
        println!(
            "snapshot {} of {}: {} paths lost, {new}",
            r.original.short(),
            time::show(r.time),
            r.lost.len()
        );
        for (path, why) in &r.lost {
            println!("  {}: {why}", path.display());
        }
    }
    if !cli.quiet {
        println!("{} snapshots needed repair", repaired.len());
    }
    Ok(0)
}
