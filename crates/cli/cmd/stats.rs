//! `stats`: open → walk every snapshot oldest first (`cairn_engine::stats`) and ask prune's
//! plan, as a dry run, what it would free → report the repository, each host, each snapshot and
//! the growth per day and ISO week.
//!
//! Invariant: nothing is written; the figures are the index's stored and raw lengths, the
//! same that `backup` sums as added.

use crate::args::{Cli, StatsArgs};
use crate::cmd::chosen;
use crate::open::{open, snapshots_of};
use crate::{output, time};
use anyhow::Result;
use cairn_engine::{Bytes, PruneOptions, SnapshotStats, Stats};
use cairn_format::snapshot::Snapshot;
use cairn_format::SnapshotId;
use serde_json::json;
use std::collections::{BTreeMap, HashSet};

pub(crate) fn stats(cli: &Cli, a: &StatsArgs) -> Result<u8> {
    let repo = open(cli, false)?;
    let all = snapshots_of(&repo)?.list;
    let wanted: HashSet<SnapshotId> = chosen(&all, &a.snapshots, &a.filter)?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let selected: Vec<bool> = all.iter().map(|(id, _)| wanted.contains(id)).collect();
    let stats = cairn_engine::stats(&repo, &all, &selected)?;
    let packs = repo.list_packs()?;
    let mut counted = stats.data;
    counted.add(stats.trees);
    let report = Report {
        rows: all
            .iter()
            .zip(&stats.snapshots)
            .zip(&selected)
            .filter(|(_, s)| **s)
            .map(|(x, _)| x)
            .collect(),
        in_repository: all.len(),
        packs: packs.len(),
        pack_bytes: packs.iter().map(|(_, n)| n).sum(),
        stats: &stats,
        counted,
        unused: unused(&repo),
    };
    if a.json {
        println!("{}", report.json());
    } else {
        report.text();
    }
    Ok(0)
}

/// What `prune --max-unused 0` would free, now or (for packs a running backup may still need)
/// at a later prune. A repository prune refuses (a damaged index) still has stats.
fn unused(repo: &cairn_repo::Repository) -> Option<u64> {
    let dry_prune = PruneOptions {
        max_unused: 0.0,
        grace: std::time::Duration::from_secs(86_400),
        dry_run: true,
        forgotten: HashSet::new(),
    };
    match cairn_engine::prune(repo, &dry_prune) {
        Ok(r) => Some(r.bytes_freed + r.bytes_deferred),
        Err(e) => {
            eprintln!("warning: cannot tell the unused space: {}", e.message);
            None
        }
    }
}

type Row<'a> = (&'a (SnapshotId, Snapshot), &'a SnapshotStats);

/// Everything `stats` says, gathered before it is rendered as JSON or text.
struct Report<'a> {
    /// The selected snapshots, oldest first.
    rows: Vec<Row<'a>>,
    in_repository: usize,
    packs: usize,
    pack_bytes: u64,
    stats: &'a Stats,
    /// The distinct blobs the selected snapshots reach, data and trees.
    counted: Bytes,
    unused: Option<u64>,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

impl Report<'_> {
    fn compression(&self) -> f64 {
        ratio(self.counted.raw, self.counted.stored)
    }

    fn dedup(&self) -> f64 {
        ratio(self.stats.restored_bytes, self.stats.data.raw)
    }

    fn json(&self) -> serde_json::Value {
        let bytes =
            |b: &Bytes| json!({"blobs": b.blobs, "stored_bytes": b.stored, "raw_bytes": b.raw});
        let stats = self.stats;
        let hosts = per_host(&self.rows);
        let days = growth(&self.rows, "%Y-%m-%d");
        let weeks = growth(&self.rows, "%G-W%V");
        json!({
            "snapshots": self.rows.len(),
            "snapshots_in_repository": self.in_repository,
            "packs": self.packs,
            "pack_bytes": self.pack_bytes,
            "restored_bytes": stats.restored_bytes,
            "restored_files": stats.files,
            "data": bytes(&stats.data),
            "trees": bytes(&stats.trees),
            "stored_bytes": self.counted.stored,
            "raw_bytes": self.counted.raw,
            "deduplicated_raw_bytes": stats.data.raw,
            "compression_ratio": self.compression(),
            "deduplication_ratio": self.dedup(),
            "unused_bytes": self.unused,
            "missing_blobs": stats.missing_blobs,
            "hosts": hosts.iter().map(|(h, (n, add, latest))| json!({
                "host": h, "snapshots": n, "added": bytes(add), "latest_restored_bytes": latest,
            })).collect::<Vec<_>>(),
            "per_snapshot": self.rows.iter().map(|((id, s), st)| json!({
                "id": id.to_hex(),
                "time": time::rfc3339(s.time),
                "host": String::from_utf8_lossy(&s.host),
                "kind": s.kind.name(),
                "files": st.files,
                "restored_bytes": st.restored_bytes,
                "added": bytes(&st.added),
            })).collect::<Vec<_>>(),
            "growth_per_day": days.iter().map(|(d, b)| json!({"day": d, "added": bytes(b)})).collect::<Vec<_>>(),
            "growth_per_week": weeks.iter().map(|(w, b)| json!({"week": w, "added": bytes(b)})).collect::<Vec<_>>(),
        })
    }

    fn text(&self) {
        let b = output::bytes;
        let stats = self.stats;
        println!(
            "{} of {} snapshots, {} packs",
            self.rows.len(),
            self.in_repository,
            self.packs
        );
        println!("  stored in packs:  {}", b(self.pack_bytes));
        println!(
            "  restored size:    {} in {} files",
            b(stats.restored_bytes),
            stats.files
        );
        println!(
            "  deduplicated:     {} of content in {} blobs, {} of trees in {}",
            b(stats.data.raw),
            stats.data.blobs,
            b(stats.trees.raw),
            stats.trees.blobs
        );
        println!(
            "  stored size:      {} for these snapshots",
            b(self.counted.stored)
        );
        println!(
            "  compression:      {:.2}x (before / after)",
            self.compression()
        );
        println!(
            "  deduplication:    {:.2}x (restored / deduplicated content)",
            self.dedup()
        );
        if let Some(unused) = self.unused {
            println!(
                "  unused:           {} (what `prune --max-unused 0` frees)",
                b(unused)
            );
        }
        if stats.missing_blobs > 0 {
            println!(
                "  missing:          {} blobs the index lacks (run `cairn check`)",
                stats.missing_blobs
            );
        }
        println!("hosts:");
        println!(
            "  {:<20} {:>9}  {:>12}  {:>12}  {:>12}",
            "host", "snapshots", "added", "before comp.", "latest size"
        );
        for (h, (n, add, latest)) in &per_host(&self.rows) {
            println!(
                "  {:<20} {:>9}  {:>12}  {:>12}  {:>12}",
                output::escape_controls(h.as_bytes()),
                n,
                b(add.stored),
                b(add.raw),
                b(*latest)
            );
        }
        println!("snapshots:");
        println!(
            "  {:<8}  {:<19}  {:<12}  {:>12}  {:>12}  {:>12}",
            "id", "time", "host", "size", "added", "before comp."
        );
        for ((id, s), st) in &self.rows {
            println!(
                "  {:<8}  {:<19}  {:<12}  {:>12}  {:>12}  {:>12}",
                id.short(),
                time::show(s.time),
                output::escape_controls(&s.host),
                b(st.restored_bytes),
                b(st.added.stored),
                b(st.added.raw)
            );
        }
        let days = growth(&self.rows, "%Y-%m-%d");
        let weeks = growth(&self.rows, "%G-W%V");
        for (title, buckets) in [("growth per day:", &days), ("growth per week:", &weeks)] {
            println!("{title}");
            for (when, add) in buckets {
                let stored = format!("+{}", b(add.stored));
                println!(
                    "  {when:<10}  {stored:>13}  ({} before compression)",
                    b(add.raw)
                );
            }
        }
    }
}

/// Per host: snapshots, what they added, and the restored size of the newest.
fn per_host(rows: &[Row]) -> BTreeMap<String, (u64, Bytes, u64)> {
    let mut hosts: BTreeMap<String, (u64, Bytes, u64)> = BTreeMap::new();
    for ((_, s), st) in rows {
        let e = hosts
            .entry(String::from_utf8_lossy(&s.host).into_owned())
            .or_default();
        e.0 += 1;
        e.1.add(st.added);
        e.2 = st.restored_bytes;
    }
    hosts
}

/// What the snapshots added, summed per local day or ISO week (`format` names the bucket).
fn growth(rows: &[Row], format: &str) -> BTreeMap<String, Bytes> {
    let mut out: BTreeMap<String, Bytes> = BTreeMap::new();
    for ((_, s), st) in rows {
        let Ok(ts) = jiff::Timestamp::from_nanosecond(i128::from(s.time)) else {
            continue;
        };
        let when = ts
            .to_zoned(jiff::tz::TimeZone::system())
            .strftime(format)
            .to_string();
        out.entry(when).or_default().add(st.added);
    }
    out
}
