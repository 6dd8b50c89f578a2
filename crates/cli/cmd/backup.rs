//! `backup`: store a snapshot of the sources.

use crate::args::{BackupArgs, BetweenArg, Cli, KindArg};
use crate::open::{hostname, open_with, username};
use crate::output::{Count, Progress, Unit};
use crate::report::Run;
use crate::{exit, invalid, output, time};
use anyhow::Result;
use cairn_engine::Filter;
use cairn_format::snapshot::Kind;
use serde_json::json;
use std::io::Write;
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

/// The sources that exist on this host; each missing one is a warning, so that one list of
/// sources fits every host of a fleet. None at all is an error.
fn present_sources(a: &BackupArgs, r: &mut Run) -> Result<Vec<std::path::PathBuf>> {
    if a.sources.is_empty() {
        return Err(invalid(
            "nothing to back up: give paths, or `sources` in the [backup] section of a profile",
        ));
    }
    let mut present = Vec::new();
    for p in &a.sources {
        match std::fs::symlink_metadata(p) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                r.warn(format!(
                    "source {} does not exist on this host: skipped",
                    p.display()
                ));
            }
            _ => present.push(p.clone()),
        }
    }
    if present.is_empty() {
        return Err(invalid(format!(
            "none of the sources exists on this host: {}",
            a.sources
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(present)
}

pub(crate) fn backup(cli: &Cli, a: &BackupArgs, r: &mut Run) -> Result<u8> {
    if a.kind == KindArg::Auto && a.full_every.is_none() {
        return Err(invalid(
            "--kind auto needs --full-every, like --full-every mon or 7d",
        ));
    }
    if a.kind != KindArg::Auto && a.full_every.is_some() {
        return Err(invalid("--full-every is only for --kind auto"));
    }
    let exclude = read_excludes(a)?;
    let time_ns = a.time.unwrap_or_else(time::now_ns);
    let present = present_sources(a, r)?;
    // Sources that cannot be read are an error before the repository is even opened.
    let sources = cairn_engine::normalize_sources(&present)?;
    let repo = open_with(cli, a.dry_run, true)?;
    let (opts, why) = plan(&repo, a, time_ns, sources, exclude)?;
    let show = output::show_progress(cli.quiet || a.json);
    let display = Progress::new(show, "backup");
    let progress = cairn_engine::BackupProgress {
        on_entry: (cli.verbose > 0).then(|| lister(cli.verbose, a.json, display.clone())),
        ..Default::default()
    };
    // The totals are the estimate's, once it has walked everything: until then they are
    // partial, and the display spins.
    let read = || {
        let p = &progress;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let known = p.estimated.load(Ordering::Relaxed);
        vec![
            Count::of(
                Unit::Bytes,
                load(&p.bytes),
                known.then(|| load(&p.total_bytes)),
            ),
            Count::of(
                Unit::Files,
                load(&p.files),
                known.then(|| load(&p.total_files)),
            ),
        ]
    };
    let outcome = display.run(read, || {
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
    if !a.json && !cli.quiet {
        text_report(a, &outcome, raw_added, &why);
    }
    r.add(json_report(a, &opts, &outcome, raw_added, &why));
    let incomplete = !outcome.skipped.is_empty() || present.len() < a.sources.len();
    Ok(if incomplete { exit::INCOMPLETE } else { 0 })
}

/// What `-v` prints of each entry, as the archiver passes it: `+ PATH` new, `M PATH` changed,
/// `- PATH` deleted (against the parent snapshot) and, with `-vv`, `  PATH` unchanged; with
/// `--json`, one object per line. Lines come in the order the workers finish, not sorted.
fn lister(level: u8, json: bool, display: Progress) -> Box<cairn_engine::EntryListener> {
    use cairn_engine::EntryChange as C;
    Box::new(move |path, kind, change| {
        if change == C::Unchanged && level < 2 {
            return;
        }
        let line = if json {
            let doc = json!({
                "path": path.to_string_lossy(),
                "change": match change {
                    C::New => "new",
                    C::Changed => "changed",
                    C::Unchanged => "unchanged",
                    C::Deleted => "deleted",
                },
                "type": format!("{kind:?}").to_lowercase(),
            });
            format!("{doc}\n").into_bytes()
        } else {
            let mark: &[u8] = match change {
                C::New => b"+ ",
                C::Changed => b"M ",
                C::Unchanged => b"  ",
                C::Deleted => b"- ",
            };
            [mark, &output::path(path), b"\n"].concat()
        };
        // A listing cut short (stdout closed by `| head`) must not stop the backup.
        display.suspend(|| {
            let _ = std::io::stdout().lock().write_all(&line);
        });
    })
}

/// The backup's options: its host, kind (and why that kind), and the parent it compares with.
fn plan(
    repo: &cairn_repo::Repository,
    a: &BackupArgs,
    time_ns: i64,
    sources: Vec<std::path::PathBuf>,
    exclude: Filter,
) -> Result<(cairn_engine::BackupOptions, String)> {
    let host = a.host.clone().unwrap_or_else(hostname).into_bytes();
    let paths: Vec<Vec<u8>> = sources
        .iter()
        .map(|p| p.as_os_str().as_bytes().to_vec())
        .collect();
    // Read once, for the kind and the parent; a full backup needs neither.
    let list = match a.kind {
        KindArg::Full => Vec::new(),
        _ => repo.snapshots()?.list,
    };
    let (kind, why) = match (a.kind, a.full_every) {
        (KindArg::Full, _) => (Kind::Full, "--kind full".to_string()),
        (KindArg::Incremental, _) => (Kind::Incremental, "--kind incremental".to_string()),
        (KindArg::Differential, _) => (Kind::Differential, "--kind differential".to_string()),
        (KindArg::Auto, Some(every)) => {
            let between = match a.between {
                BetweenArg::Incremental => Kind::Incremental,
                BetweenArg::Differential => Kind::Differential,
            };
            let tz = jiff::tz::TimeZone::system();
            cairn_engine::choose_kind(&list, &host, &paths, time_ns, every, between, &tz)
        }
        (KindArg::Auto, None) => unreachable!("refused before the repository was opened"),
    };
    let parent = cairn_engine::parent_in(&list, &host, &paths, kind);
    // With nothing to compare with, every file is read: the snapshot is a full one, and is
    // recorded as such (a later differential one compares with it).
    let (kind, why) = match (kind, &parent) {
        (Kind::Incremental, None) => (
            Kind::Full,
            "no earlier snapshot of this host and paths: every file is read".to_string(),
        ),
        (Kind::Differential, None) => (
            Kind::Full,
            "no full snapshot of this host and paths to compare with: every file is read"
                .to_string(),
        ),
        _ => (kind, why),
    };
    let opts = cairn_engine::BackupOptions {
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
    };
    Ok((opts, why))
}

/// The backup's fields of the run report before it has run: what was asked for, and null for
/// everything the backup finds out (README.md, "Run reports": null on failure).
pub(crate) fn blank(a: &BackupArgs) -> serde_json::Value {
    let mut fields = json!({
        "paths": a.sources.iter().map(|p| p.to_string_lossy()).collect::<Vec<_>>(),
        "tags": a.tag,
        "dry_run": a.dry_run,
    });
    // Every key `json_report` writes, less those known before the run.
    let unknown = [
        "snapshot_id",
        "snapshot_time",
        "parent_id",
        "parent",
        "blobs_added",
        "bytes_added",
        "raw_bytes_added",
        "duration_seconds",
        "errors",
        "kind",
        "kind_reason",
        "files_new",
        "files_changed",
        "files_unchanged",
        "files_deleted",
        "dirs",
        "total_files",
        "total_bytes",
        "bytes_read",
        "bytes_added_raw",
        "bytes_added_stored",
        "skipped",
    ];
    for key in unknown {
        fields[key] = serde_json::Value::Null;
    }
    if let Some(host) = &a.host {
        fields["host"] = host.as_str().into();
    }
    fields
}

/// The backup's fields of the run report. `parent`, `bytes_added`, `raw_bytes_added`,
/// `duration_seconds` and `errors` came first and stay beside their report names.
fn json_report(
    a: &BackupArgs,
    opts: &cairn_engine::BackupOptions,
    outcome: &cairn_engine::BackupOutcome,
    raw_added: u64,
    why: &str,
) -> serde_json::Value {
    let sum = &outcome.snapshot.summary;
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let skipped: Vec<_> = outcome
        .skipped
        .iter()
        .map(|s| json!({"path": s.path.to_string_lossy(), "error": s.reason}))
        .collect();
    let parent = outcome.snapshot.parent.map(|p| p.to_hex());
    json!({
        "snapshot_id": if a.dry_run { None } else { Some(outcome.id.to_hex()) },
        "snapshot_time": time::rfc3339(opts.time_ns),
        "host": text(&opts.host),
        "paths": opts.paths.iter().map(|p| p.to_string_lossy()).collect::<Vec<_>>(),
        "tags": opts.tags.iter().map(|t| text(t)).collect::<Vec<_>>(),
        "dry_run": a.dry_run,
        "parent": parent,
        "parent_id": parent,
        "kind": outcome.snapshot.kind.name(),
        "kind_reason": why,
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
        "bytes_added_stored": sum.bytes_added,
        "raw_bytes_added": raw_added,
        "bytes_added_raw": raw_added,
        "duration_seconds": sum.duration_ns as f64 / 1e9,
        "errors": skipped,
        "skipped": skipped,
    })
}

fn text_report(a: &BackupArgs, outcome: &cairn_engine::BackupOutcome, raw_added: u64, why: &str) {
    let sum = &outcome.snapshot.summary;
    let parent = outcome
        .snapshot
        .parent
        .map(|p| format!(" against parent {}", p.short()))
        .unwrap_or_default();
    let asked = match a.kind {
        KindArg::Full => Some(Kind::Full),
        KindArg::Incremental => Some(Kind::Incremental),
        KindArg::Differential => Some(Kind::Differential),
        KindArg::Auto => None,
    };
    let why = if asked != Some(outcome.snapshot.kind) {
        format!(": {why}")
    } else {
        String::new()
    };
    println!("{} backup{parent}{why}", outcome.snapshot.kind.name());
    println!(
        "files: {} new, {} changed, {} unchanged, {} deleted; {} directories",
        sum.files_new, sum.files_changed, sum.files_unchanged, sum.files_deleted, sum.dirs
    );
    if a.dry_run {
        println!(
            "would add {} in {} new blobs ({} before compression); {} read",
            output::bytes(sum.bytes_added),
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
