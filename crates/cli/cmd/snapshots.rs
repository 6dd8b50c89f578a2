//! `snapshots`: list snapshots, grouped by host and paths.

use crate::args::{Cli, SnapshotsArgs};
use crate::cmd::pick_at;
use crate::open::{open, snapshots_of};
use crate::{output, time};
use anyhow::Result;
use cairn_format::snapshot::Snapshot;
use cairn_format::SnapshotId;
use serde_json::json;
use std::io::Write;

fn snapshot_json(id: &SnapshotId, s: &Snapshot) -> serde_json::Value {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    json!({
        "id": id.to_hex(),
        "short_id": id.short(),
        "time": time::rfc3339(s.time),
        "host": text(&s.host),
        "user": text(&s.user),
        "paths": s.paths.iter().map(|p| text(p)).collect::<Vec<_>>(),
        "tags": s.tags.iter().map(|t| text(t)).collect::<Vec<_>>(),
        "kind": s.kind.name(),
        "parent": s.parent.map(|p| p.to_hex()),
        "tree": s.tree.to_hex(),
        "summary": {
            "files_new": s.summary.files_new,
            "files_changed": s.summary.files_changed,
            "files_unchanged": s.summary.files_unchanged,
            "files_deleted": s.summary.files_deleted,
            "dirs": s.summary.dirs,
            "total_files": s.summary.total_files,
            "total_bytes": s.summary.total_bytes,
            "bytes_read": s.summary.bytes_read,
            "blobs_added": s.summary.blobs_added,
            "bytes_added": s.summary.bytes_added,
            "errors": s.summary.errors,
            "duration_seconds": s.summary.duration_ns as f64 / 1e9,
        },
    })
}

type Group = ((Vec<u8>, Vec<Vec<u8>>), Vec<(SnapshotId, Snapshot)>);

/// Snapshots grouped by host and paths, each group oldest first.
fn groups(list: Vec<(SnapshotId, Snapshot)>) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for (id, s) in list {
        let key = (s.host.clone(), s.paths.clone());
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push((id, s)),
            None => groups.push((key, vec![(id, s)])),
        }
    }
    groups
}

pub(crate) fn snapshots(cli: &Cli, a: &SnapshotsArgs) -> Result<u8> {
    let filter = a.filter.filter();
    let repo = open(cli, false)?;
    let mut list = snapshots_of(&repo)?.list;
    list.retain(|(_, s)| filter.matches(s));
    if let Some(at) = &a.at {
        list = vec![pick_at(&list, *at)?.clone()];
    }
    let mut groups = groups(list);
    if let Some(n) = a.latest {
        for (_, members) in &mut groups {
            let skip = members.len().saturating_sub(n);
            members.drain(..skip);
        }
    }
    let mut out = std::io::stdout().lock();
    if a.json {
        let docs: Vec<_> = groups
            .iter()
            .flat_map(|(_, m)| m.iter().map(|(id, s)| snapshot_json(id, s)))
            .collect();
        writeln!(out, "{}", serde_json::Value::Array(docs))?;
        return Ok(0);
    }
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mut count = 0;
    for ((host, paths), members) in &groups {
        let paths: Vec<_> = paths.iter().map(|p| text(p)).collect();
        writeln!(out, "host {}, paths {}", text(host), paths.join(" "))?;
        writeln!(
            out,
            "  {:<8}  {:<19}  {:<12}  {:>10}  tags",
            "id", "time", "kind", "size"
        )?;
        for (id, s) in members {
            let tags: Vec<_> = s.tags.iter().map(|t| text(t)).collect();
            writeln!(
                out,
                "  {:<8}  {:<19}  {:<12}  {:>10}  {}",
                id.short(),
                time::show(s.time),
                s.kind.name(),
                output::bytes(s.summary.total_bytes),
                tags.join(",")
            )?;
            count += 1;
        }
    }
    if !cli.quiet {
        writeln!(out, "{count} snapshots")?;
    }
    Ok(0)
}
