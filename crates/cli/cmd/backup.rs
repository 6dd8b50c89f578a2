//! `backup`: store a snapshot of the sources.

use crate::args::{BackupArgs, Cli, KindArg};
use crate::open::{hostname, open_with, username};
use crate::output::with_progress;
use crate::{exit, invalid, output, time};
use anyhow::Result;
use cairn_engine::Filter;
use cairn_format::snapshot::Kind;
use serde_json::json;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::Ordering;

fn read_excludes(a: &BackupArgs) -> Result<Filter> {
    let mut patterns = a.exclude.clone();
    for f in &a.exclude_file {
        let text = std::fs::read_to_string(f)
            .map_err(|e| invalid(format!("--exclude-file {}: {e}", f.display())))?;
        patterns.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from),
        );
    }
    Filter::new(&patterns).map_err(invalid)
}

pub(crate) fn backup(cli: &Cli, a: &BackupArgs) -> Result<u8> {
    let exclude = read_excludes(a)?;
    let time_ns = a.time.unwrap_or_else(time::now_ns);
    // Missing sources are an error before the repository is even opened.
    let sources = cairn_engine::normalize_sources(&a.paths)?;
    let repo = open_with(cli, a.dry_run, true)?;
    let opts = plan(&repo, a, time_ns, sources, exclude)?;
    let progress = cairn_engine::BackupProgress::default();
    let show = output::show_progress(cli.quiet || a.json);
    let read = || {
        let p = &progress;
        (
            p.files.load(Ordering::Relaxed),
            p.total_files.load(Ordering::Relaxed),
            p.bytes.load(Ordering::Relaxed),
            p.total_bytes.load(Ordering::Relaxed),
        )
    };
    let outcome = with_progress(show, "backup", read, || {
        std::thread::scope(|s| {
            if show {
                s.spawn(|| {
                    cairn_engine::estimate(
                        &opts.paths,
                        &opts.exclude,
                        opts.one_file_system,
                        &progress,
                    )
                });
            }
            cairn_engine::backup(&repo, &opts, &progress)
        })
    })?;
    for s in &outcome.skipped {
        eprintln!("error: cannot read {}: {}", s.path.display(), s.reason);
    }
    let raw_added = repo.write_stats().raw_bytes;
    if a.json {
        println!("{}", json_report(a, &outcome, raw_added));
    } else if !cli.quiet {
        text_report(a, &outcome, raw_added);
    }
    Ok(if outcome.skipped.is_empty() {
        0
    } else {
        exit::INCOMPLETE
    })
}

/// The backup's options: its host, kind, and the parent it compares with.
fn plan(
    repo: &cairn_repo::Repository,
    a: &BackupArgs,
    time_ns: i64,
    sources: Vec<std::path::PathBuf>,
    exclude: Filter,
) -> Result<cairn_engine::BackupOptions> {
    let host = a.host.clone().unwrap_or_else(hostname).into_bytes();
    let kind = match a.kind {
        KindArg::Full => Kind::Full,
        KindArg::Incremental => Kind::Incremental,
        KindArg::Differential => Kind::Differential,
    };
    let paths: Vec<Vec<u8>> = sources
        .iter()
        .map(|p| p.as_os_str().as_bytes().to_vec())
        .collect();
    let parent = cairn_engine::find_parent(repo, &host, &paths, kind)?;
    Ok(cairn_engine::BackupOptions {
        paths: sources,
        exclude,
        one_file_system: a.one_file_system,
        host,
        user: username().into_bytes(),
        tags: a.tag.iter().map(|t| t.clone().into_bytes()).collect(),
        time_ns,
        kind,
        parent,
        program: format!("cairn {}", env!("CARGO_PKG_VERSION")).into_bytes(),
    })
}

fn json_report(
    a: &BackupArgs,
    outcome: &cairn_engine::BackupOutcome,
    raw_added: u64,
) -> serde_json::Value {
    let sum = &outcome.snapshot.summary;
    json!({
        "snapshot_id": if a.dry_run { None } else { Some(outcome.id.to_hex()) },
        "dry_run": a.dry_run,
        "parent": outcome.snapshot.parent.map(|p| p.to_hex()),
        "kind": outcome.snapshot.kind.name(),
        "files_new": sum.files_new,
        "files_changed": sum.files_changed,
        "files_unchanged": sum.files_unchanged,
        "files_deleted": sum.files_deleted,
        "dirs": sum.dirs,
        "total_files": sum.total_files,
        "total_bytes": sum.total_bytes,
        "bytes_read": sum.bytes_read,
        "blobs_added": sum.blobs_added,
        "bytes_added": sum.bytes_added,
        "raw_bytes_added": raw_added,
        "duration_seconds": sum.duration_ns as f64 / 1e9,
        "errors": outcome.skipped.iter().map(|s| json!({"path": s.path.to_string_lossy(), "error": s.reason})).collect::<Vec<_>>(),
    })
}

fn text_report(a: &BackupArgs, outcome: &cairn_engine::BackupOutcome, raw_added: u64) {
    let sum = &outcome.snapshot.summary;
    let parent = outcome
        .snapshot
        .parent
        .map(|p| format!(" against parent {}", p.short()))
        .unwrap_or_default();
    println!("{} backup{parent}", outcome.snapshot.kind.name());
    println!(
        "files: {} new, {} changed, {} unchanged, {} deleted; {} directories",
        sum.files_new, sum.files_changed, sum.files_unchanged, sum.files_deleted, sum.dirs
    );
    if a.dry_run {
        println!(
            "would add {} new blobs, {} before compression; {} read",
            sum.blobs_added,
            output::bytes(raw_added),
            output::bytes(sum.bytes_read)
        );
    } else {
        println!(
            "added {} in {} blobs ({} read, {} in all) in {}",
            output::bytes(sum.bytes_added),
            sum.blobs_added,
            output::bytes(sum.bytes_read),
            output::bytes(sum.total_bytes),
            output::duration(sum.duration_ns)
        );
        println!("snapshot {} saved", outcome.id.short());
    }
}
