//! `find`: which snapshots hold paths matching a pattern.

use crate::args::{Cli, FindArgs};
use crate::cmd::pick;
use crate::open::{open, snapshots_of};
use crate::{invalid, time};
use anyhow::Result;
use cairn_engine::Filter;
use serde_json::json;
use std::io::Write;

pub(crate) fn find(cli: &Cli, a: &FindArgs) -> Result<u8> {
    let pattern = Filter::new(std::slice::from_ref(&a.pattern)).map_err(invalid)?;
    let (oldest, newest) = (a.oldest, a.newest);
    let filter = a.filter.filter();
    let repo = open(cli, false)?;
    let all = snapshots_of(&repo)?.list;
    let mut list = Vec::new();
    for spec in &a.snapshot {
        list.push(cairn_engine::find_snapshot(&all, spec)?.clone());
    }
    if let Some(at) = a.at {
        list.push(pick(&all, None, Some(at), &a.filter, cli.quiet)?);
    } else if a.snapshot.is_empty() {
        list = all;
    }
    list.retain(|(_, s)| {
        filter.matches(s)
            && oldest.is_none_or(|t| s.time >= t)
            && newest.is_none_or(|t| s.time <= t)
    });
    let mut out = std::io::stdout().lock();
    let mut matches = 0u64;
    let mut result = Ok(());
    cairn_engine::find(&repo, &list, &pattern, &mut |id, snap, path, node| {
        matches += 1;
        let line = if a.json {
            json!({
                "snapshot": id.to_hex(),
                "snapshot_time": time::rfc3339(snap.time),
                "path": path.to_string_lossy(),
                "type": format!("{:?}", node.kind).to_lowercase(),
                "size": node.size,
                "mtime": time::rfc3339_file(node.mtime),
            })
            .to_string()
        } else {
            format!(
                "{}  {}  {:>12}  {}  {}",
                id.short(),
                time::show(snap.time),
                node.size,
                time::show_file(node.mtime),
                crate::output::escape_controls(&crate::output::path(path))
            )
        };
        if result.is_ok() {
            result = writeln!(out, "{line}");
        }
    })?;
    result?;
    if !a.json && !cli.quiet {
        writeln!(out, "{matches} matches in {} snapshots", list.len())?;
    }
    Ok(0)
}
