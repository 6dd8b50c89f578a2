//! `diff`: what changed between two snapshots.

use crate::args::{Cli, DiffArgs};
use crate::cmd::{in_trees_of, pick};
use crate::invalid;
use crate::open::{open, snapshots_of};
use crate::output;
use anyhow::Result;
use cairn_format::tree::{Node, NodeKind};
use serde_json::json;
use std::io::Write;

pub(crate) fn diff(cli: &Cli, a: &DiffArgs) -> Result<u8> {
    use cairn_engine::ChangeKind as C;
    let (older, newer) = match (a.at, a.snapshots.as_slice()) {
        (Some(_), [] | [_]) => (None, a.snapshots.first().map(String::as_str)),
        (Some(_), _) => {
            return Err(invalid(
                "with --at, name at most one snapshot to compare with",
            ))
        }
        (None, [x, y]) => (Some(x.as_str()), Some(y.as_str())),
        (None, _) => return Err(invalid("name two snapshots, or --at TIME and at most one")),
    };
    let repo = open(cli, false)?;
    let list = snapshots_of(&repo)?.list;
    let (ida, sa) = pick(&list, older, a.at, &a.filter, cli.quiet)?;
    let (idb, sb) = pick(&list, newer, None, &a.filter, cli.quiet)?;
    let mut out = std::io::stdout().lock();
    let (mut added, mut removed, mut changed, mut meta) = (0u64, 0u64, 0u64, 0u64);
    let (mut bytes_added, mut bytes_removed) = (0u64, 0u64);
    let mut result = Ok(());
    cairn_engine::diff(&repo, sa.tree, sb.tree, &mut |c| {
        let size = |n: Option<&Node>| n.filter(|n| n.kind == NodeKind::File).map_or(0, |n| n.size);
        let (before, after) = (size(c.before), size(c.after));
        bytes_added += after.saturating_sub(before);
        bytes_removed += before.saturating_sub(after);
        let (mark, word) = match c.kind {
            C::Added => {
                added += 1;
                ("+", "added")
            }
            C::Removed => {
                removed += 1;
                ("-", "removed")
            }
            C::Content => {
                changed += 1;
                ("M", "modified")
            }
            C::Metadata => {
                meta += 1;
                ("U", "metadata")
            }
        };
        let line = if a.json {
            json!({
                "path": c.path.to_string_lossy(),
                "change": word,
                "type": format!("{:?}", c.after.or(c.before).map(|n| n.kind).unwrap_or_default()).to_lowercase(),
                "size_before": c.before.map(|n| n.size),
                "size_after": c.after.map(|n| n.size),
                "size_delta": after as i64 - before as i64,
            })
            .to_string()
        } else {
            let delta = match c.kind {
                C::Content if after >= before => format!("  (+{})", output::bytes(after - before)),
                C::Content => format!("  (-{})", output::bytes(before - after)),
                _ => String::new(),
            };
            let path = output::escape_controls(&output::path(c.path));
            format!("{mark}    {path}{delta}")
        };
        if result.is_ok() {
            result = writeln!(out, "{line}");
        }
    })
    .map_err(in_trees_of(format!(
        "snapshots {} and {}",
        ida.short(),
        idb.short()
    )))?;
    result?;
    if !a.json {
        writeln!(
            out,
            "{added} added, {removed} removed, {changed} modified, {meta} with new metadata; +{} -{}",
            output::bytes(bytes_added),
            output::bytes(bytes_removed)
        )?;
    }
    Ok(0)
}
