//! Opening the repository a command names: its location, password, cache and host, and the
//! snapshots it holds.

use crate::args::Cli;
use crate::password;
use crate::values::plain_duration;
use crate::{failed, invalid};
use anyhow::Result;
use cairn_repo::{OpenOptions, RepoLocation, Repository, Snapshots};
use std::path::PathBuf;

pub(crate) fn location(cli: &Cli) -> Result<&RepoLocation> {
    cli.repo
        .as_ref()
        .ok_or_else(|| invalid("no repository given: use -r/--repo or set CAIRN_REPO"))
}

pub(crate) fn reach(cli: &Cli) -> cairn_repo::Reach {
    cairn_repo::Reach {
        connections: usize::from(cli.connections),
        tries: cli.retries,
    }
}

pub(crate) fn password_source(cli: &Cli) -> password::Source {
    password::Source {
        file: cli.password_file.clone(),
        command: cli.password_command.clone(),
        env: "CAIRN_PASSWORD",
        what: "password",
        prompt: "repository password: ",
        flag: "--password",
    }
}

pub(crate) fn cache_dir(cli: &Cli) -> Option<PathBuf> {
    if cli.no_cache {
        return None;
    }
    if let Some(d) = &cli.cache_dir {
        return Some(d.clone());
    }
    let env = |k| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("XDG_CACHE_HOME")
        .or_else(|| env("HOME").map(|h| h.join(".cache")))
        .map(|d| d.join("cairn"))
}

/// This machine. In test builds `CAIRN_TEST_CLOCK_SHIFT` (a duration like `25h`) moves its
/// wall and boot clocks forward, so that tests can run commands as if hours had passed.
pub(crate) fn host() -> Result<cairn_repo::SystemHost> {
    let shift = match cairn_repo::test_hooks::clock_shift() {
        Some(s) => plain_duration(&s).map_err(|e| failed(format!("test clock shift: {e}")))?,
        None => std::time::Duration::ZERO,
    };
    Ok(cairn_repo::SystemHost { shift })
}

pub(crate) fn max_kdf_mib(cli: &Cli) -> u64 {
    cli.max_kdf_mib.unwrap_or(cairn_repo::DEFAULT_MAX_KDF_MIB)
}

pub(crate) fn open(cli: &Cli, dry_run: bool) -> Result<Repository> {
    open_with(cli, dry_run, false)
}

/// Opens the repository; a `writer` (a process that stores packs, index files or snapshots)
/// runs a session, with markers in `locks/`, while it runs.
pub(crate) fn open_with(cli: &Cli, dry_run: bool, writer: bool) -> Result<Repository> {
    open_at(cli, location(cli)?, &password_source(cli), dry_run, writer)
}

/// Opens the repository at `location` with a password from `password`, the other settings
/// (cache, host, connections) as for the one `--repo` names: `copy`'s target.
pub(crate) fn open_at(
    cli: &Cli,
    location: &RepoLocation,
    password: &password::Source,
    dry_run: bool,
    writer: bool,
) -> Result<Repository> {
    let backend = location.open(reach(cli))?;
    // An unknown version is refused before the user is asked for a password.
    cairn_repo::probe(backend.as_ref())?;
    let pw = password.get(false)?;
    let opts = OpenOptions {
        cache_dir: cache_dir(cli),
        dry_run,
        writer,
        host: std::sync::Arc::new(host()?),
        max_kdf_mib: max_kdf_mib(cli),
        ..OpenOptions::default()
    };
    let repo = Repository::open(backend, &pw, &opts)?;
    if !cli.quiet {
        for why in repo.skipped_key_files() {
            eprintln!("warning: {why}");
        }
    }
    Ok(repo)
}

/// Every readable snapshot, oldest first; a damaged one is named on stderr and left out of the
/// list, so that it costs only itself.
pub(crate) fn snapshots_of(repo: &Repository) -> Result<Snapshots> {
    let snapshots = repo.snapshots()?;
    for (id, why) in &snapshots.damaged {
        eprintln!(
            "warning: snapshot {} is left out: {why} (`cairn forget {}` removes it)",
            id.short(),
            id.short()
        );
    }
    Ok(snapshots)
}

pub(crate) fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// The user name of this process's uid from /etc/passwd, else `$USER`, else the uid.
pub(crate) fn username() -> String {
    let uid = rustix::process::getuid().as_raw();
    let name = cairn_engine::user_name(uid);
    if !name.is_empty() {
        return String::from_utf8_lossy(&name).into_owned();
    }
    std::env::var("USER").unwrap_or_else(|_| uid.to_string())
}
