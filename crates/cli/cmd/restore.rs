//! `restore`: write a snapshot (or part of it) into a directory.

use crate::args::{Cli, RestoreArgs};
use crate::cmd::pick_at;
use crate::open::{open, snapshots_of};
use crate::output::with_progress;
use crate::{exit, output, time, Exit};
use anyhow::Result;
use cairn_engine::Filter;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::Ordering;

pub(crate) fn restore(cli: &Cli, a: &RestoreArgs) -> Result<u8> {
    let include = Filter::new(&a.include).map_err(|e| Exit(exit::USAGE, e))?;
    let exclude = Filter::new(&a.exclude).map_err(|e| Exit(exit::USAGE, e))?;
    let filter = a.filter.filter();
    let repo = open(cli, false)?;
    let mut list = snapshots_of(&repo)?;
    list.retain(|(_, s)| filter.matches(s));
    let (id, snap) = match (&a.at, &a.snapshot) {
        (Some(at), _) => pick_at(&list, *at)?,
        (None, Some(spec)) => cairn_engine::find_snapshot(&list, spec)?,
        (None, None) => unreachable!("clap requires a snapshot or --at"),
    };
    let opts = cairn_engine::RestoreOptions {
        target: std::path::absolute(&a.target)?,
        include,
        exclude,
        dry_run: a.dry_run,
        owners: rustix::process::geteuid().is_root(),
        verify: a.verify,
    };
    let progress = cairn_engine::RestoreProgress::default();
    let read = || {
        let p = &progress;
        (
            p.files.load(Ordering::Relaxed),
            p.total_files.load(Ordering::Relaxed),
            p.bytes.load(Ordering::Relaxed),
            p.total_bytes.load(Ordering::Relaxed),
        )
    };
    let started = std::time::Instant::now();
    if !cli.quiet {
        eprintln!(
            "restoring snapshot {} of {} ({}, {}) to {}",
            id.short(),
            time::show(snap.time),
            String::from_utf8_lossy(&snap.host),
            snap.kind.name(),
            opts.target.display()
        );
    }
    let outcome = with_progress(output::show_progress(cli.quiet), "restore", read, || {
        cairn_engine::restore(&repo, snap.tree, &opts, &progress)
    })?;
    // A pattern that matches nothing is most often a typo; restoring the rest and exiting 0
    // would hide that the file asked for was not restored.
    let unmatched: Vec<String> = a
        .include
        .iter()
        .filter(|pat| {
            let f = Filter::new(std::slice::from_ref(*pat)).expect("clap checked the pattern");
            !outcome
                .planned
                .iter()
                .any(|p| f.matches(&Path::new("/").join(p)))
        })
        .map(|pat| format!("{pat:?}"))
        .collect();
    let unmatched = (!unmatched.is_empty()).then(|| {
        Exit(
            exit::ERROR,
            format!(
                "--include {} matched nothing in snapshot {}",
                unmatched.join(", "),
                id.short()
            ),
        )
    });
    if a.dry_run {
        let mut out = std::io::stdout().lock();
        for p in &outcome.planned {
            out.write_all(p.as_os_str().as_bytes())?;
            out.write_all(b"\n")?;
        }
        writeln!(
            out,
            "would restore {} files, {} directories, {}",
            outcome.files,
            outcome.dirs,
            output::bytes(outcome.bytes)
        )?;
        return match unmatched {
            Some(e) => Err(e.into()),
            None => Ok(0),
        };
    }
    for w in &outcome.warnings {
        eprintln!("warning: {}: {}", w.path.display(), w.reason);
    }
    for e in &outcome.errors {
        eprintln!("error: {}: {}", e.path.display(), e.reason);
    }
    if !cli.quiet {
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
        return Err(Exit(
            exit::ERROR,
            format!("{n} entries could not be restored or differ from the snapshot"),
        )
        .into());
    }
    match unmatched {
        Some(e) => Err(e.into()),
        None => Ok(0),
    }
}
