//! The subcommands. Each is: open the repository, plan and execute through a library crate,
//! report.

use crate::output::{self, with_progress};
use crate::{exit, forget, password, time, values, Exit};
use anyhow::{Context, Result};
use cairn_engine::{Filter, Visit};
use cairn_format::snapshot::{Kind, Snapshot};
use cairn_format::tree::{Node, NodeKind};
use cairn_format::SnapshotId;
use cairn_repo::{ErrorKind, InitOptions, KdfParams, LocalBackend, OpenOptions, Repository};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::json;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

const AFTER_HELP: &str = "\
Exit codes: 0 success, 1 error, 2 invalid arguments, 3 backup incomplete (some source files \
could not be read), 10 no repository at the location, 12 wrong password.";

/// Deduplicating, compressed, encrypted backups.
#[derive(Parser)]
#[command(name = "cairn", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// Repository location (a directory).
    #[arg(
        short = 'r',
        long = "repo",
        env = "CAIRN_REPO",
        global = true,
        value_name = "PATH"
    )]
    repo: Option<PathBuf>,
    /// Read the password from this file: its whole content, less one trailing newline.
    #[arg(long, env = "CAIRN_PASSWORD_FILE", global = true, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// Run this shell command; the password is its whole output, less one trailing newline.
    #[arg(
        long,
        env = "CAIRN_PASSWORD_COMMAND",
        global = true,
        value_name = "CMD"
    )]
    password_command: Option<String>,
    /// Directory of the local cache [default: $XDG_CACHE_HOME/cairn or ~/.cache/cairn].
    #[arg(long, env = "CAIRN_CACHE_DIR", global = true, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Skip key files whose key derivation costs more than this, in MiB of argon2id memory
    /// times passes [default: 2048; `init`'s keys cost 512]. Raise it to open a key made
    /// elsewhere with larger parameters.
    #[arg(long, env = "CAIRN_MAX_KDF_MIB", global = true, value_name = "MIB")]
    max_kdf_mib: Option<u64>,
    /// Keep no local cache (slower: the index is merged anew by each command).
    #[arg(long, global = true)]
    no_cache: bool,
    /// Print only errors.
    #[arg(short, long, global = true)]
    pub(crate) quiet: bool,
    /// Say more: what was skipped and why.
    #[arg(short, long, global = true, conflicts_with = "quiet")]
    pub(crate) verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a new repository.
    Init(InitArgs),
    /// Back up files and directories into a new snapshot.
    Backup(BackupArgs),
    /// List snapshots, grouped by host and paths.
    Snapshots(SnapshotsArgs),
    /// Restore a snapshot into a directory.
    ///
    /// Into an existing directory, restore writes only what the snapshot contains: files of the
    /// same name are replaced, other files are left alone. Files that an interrupted restore
    /// already wrote completely (same size, mtime and content) are kept, so running the same
    /// restore again resumes it.
    ///
    /// Nothing below the target is followed through a symlink, and every entry stays readable
    /// by its restoring user alone until its own mode is set.
    Restore(RestoreArgs),
    /// List the contents of a snapshot.
    Ls(LsArgs),
    /// Show what changed between two snapshots.
    Diff(DiffArgs),
    /// Find which snapshots contain paths matching a pattern.
    Find(FindArgs),
    /// Write a file of a snapshot to stdout, or a directory as a tar or zip archive.
    Dump(DumpArgs),
    /// Check that every snapshot can be restored; report exactly what cannot.
    Check(CheckArgs),
    /// Remove snapshots, named or by a retention policy (their data stays until prune).
    #[command(after_help = forget::POLICY_HELP)]
    Forget(forget::ForgetArgs),
    /// Delete data no snapshot needs; with a --keep-* policy, forget snapshots first.
    ///
    /// Packs holding only unused data are condemned, partly used ones repacked, and condemned
    /// packs deleted at once when no backup is running, else by a later prune once the backups
    /// that were running have ended. Safe to run beside backups from any host, and to interrupt.
    #[command(after_help = forget::POLICY_HELP)]
    Prune(forget::PruneArgs),
    /// Mend a damaged repository: rebuild the index, or save what snapshots still hold.
    #[command(subcommand)]
    Repair(RepairCommand),
}

#[derive(Subcommand)]
enum RepairCommand {
    /// Rebuild the index from the packs' own headers (a lost or damaged index file).
    Index(RepairIndexArgs),
    /// Write, beside each damaged snapshot, a new one tagged `repaired` without its lost files;
    /// the originals stay until forgotten. A later backup of the same files stores them again.
    Snapshots(RepairSnapshotsArgs),
}

#[derive(Args)]
struct RepairIndexArgs {
    /// Read every pack in full and leave damaged blobs out of the index, so that the next
    /// backup stores them again.
    #[arg(long)]
    read_data: bool,
}

#[derive(Args)]
struct RepairSnapshotsArgs {
    /// Also count blobs that are indexed but do not read back intact as lost (reads them all).
    #[arg(long)]
    read_data: bool,
    /// Show what would be left out, write nothing.
    #[arg(long, short = 'n')]
    dry_run: bool,
    /// Print a JSON report.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct CheckArgs {
    /// Also read every pack and verify every blob in it.
    #[arg(long)]
    read_data: bool,
    /// Read only part of the packs: `n/m` (part n of m; parts 1..m together cover every pack)
    /// or a percentage like `10%`.
    #[arg(
        long,
        value_name = "SUBSET",
        conflicts_with = "read_data",
        value_parser = values::subset
    )]
    read_data_subset: Option<cairn_engine::ReadData>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Which snapshots to consider.
#[derive(Args, Clone, Default)]
pub(crate) struct SnapshotFilterArgs {
    /// Only snapshots of this host (repeatable: any of them).
    #[arg(long, value_name = "HOST", value_parser = values::non_empty)]
    host: Vec<String>,
    /// Only snapshots that include this absolute path (repeatable: all of them).
    #[arg(long, value_name = "PATH", value_parser = values::absolute_path)]
    path: Vec<PathBuf>,
    /// Only snapshots with this tag (repeatable: all of them).
    #[arg(long, value_name = "TAG", value_parser = values::non_empty)]
    tag: Vec<String>,
}

impl SnapshotFilterArgs {
    pub(crate) fn filter(&self) -> cairn_engine::SnapshotFilter {
        cairn_engine::SnapshotFilter {
            hosts: self.host.iter().map(|h| h.clone().into_bytes()).collect(),
            paths: self.path.clone(),
            tags: self.tag.iter().map(|t| t.clone().into_bytes()).collect(),
        }
    }
}

#[derive(Args)]
struct InitArgs {
    /// Argon2id memory in KiB for the new key [default: 65536].
    #[arg(long, value_name = "KIB", value_parser = clap::value_parser!(u32).range(8..=4 << 20))]
    kdf_memory: Option<u32>,
    /// Argon2id passes for the new key [default: 8].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    kdf_iterations: Option<u32>,
    /// Target size of pack files in MiB.
    #[arg(
        long,
        default_value_t = 16,
        value_name = "MIB",
        value_parser = clap::value_parser!(u32).range(1..=1024)
    )]
    pack_size: u32,
    /// zstd compression level (negative levels are faster, 1-22 smaller).
    #[arg(
        long,
        default_value_t = 3,
        allow_hyphen_values = true,
        value_name = "LEVEL",
        value_parser = clap::value_parser!(i32).range(-7..=22)
    )]
    compression: i32,
    /// Average chunk size in KiB (a power of two); min is half of it, max eight times.
    #[arg(long, default_value_t = 1024, value_name = "KIB", value_parser = values::chunk_size)]
    chunk_size: u32,
}

#[derive(Clone, Copy, ValueEnum)]
enum KindArg {
    Full,
    Incremental,
    Differential,
}

#[derive(Args)]
struct BackupArgs {
    /// Files and directories to back up.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Leave out paths matching GLOB. Without `/` it matches a name anywhere (`*.tmp`); with `/`
    /// the whole absolute path (`/home/*/.cache`); `**` crosses directories.
    #[arg(long, short = 'e', value_name = "GLOB", value_parser = values::glob)]
    exclude: Vec<String>,
    /// Read exclude patterns from FILE, one per line (`#` starts a comment).
    #[arg(long, value_name = "FILE")]
    exclude_file: Vec<PathBuf>,
    /// Do not cross file system boundaries.
    #[arg(long, short = 'x')]
    one_file_system: bool,
    /// Host name recorded in the snapshot [default: this machine's].
    #[arg(long, value_parser = values::non_empty)]
    host: Option<String>,
    /// Tag the snapshot (repeatable).
    #[arg(long, value_name = "TAG", value_parser = values::non_empty)]
    tag: Vec<String>,
    /// Snapshot time instead of now: 2026-11-20T14:00:00Z, "2026-11-20 14:00" or 2026-11-20.
    #[arg(long, value_name = "TIME", value_parser = values::time)]
    time: Option<i64>,
    /// incremental: skip files unchanged since the latest snapshot of these paths;
    /// differential: since the latest full one; full: read everything.
    #[arg(long, value_enum, default_value = "incremental")]
    kind: KindArg,
    /// Show what would be added, write nothing.
    #[arg(long, short = 'n')]
    dry_run: bool,
    /// Print a JSON summary.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct SnapshotsArgs {
    #[command(flatten)]
    filter: SnapshotFilterArgs,
    /// Only the snapshot `restore --at TIME` would choose.
    #[arg(long, value_name = "TIME", value_parser = values::time)]
    at: Option<i64>,
    /// Only the latest N snapshots of each group (host and paths).
    #[arg(long, value_name = "N")]
    latest: Option<usize>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct RestoreArgs {
    /// Snapshot: `latest`, an id, or a unique id prefix. Not with --at.
    #[arg(required_unless_present = "at", conflicts_with = "at")]
    snapshot: Option<String>,
    /// Restore the newest snapshot taken at or before TIME: 2026-11-20T14:00:00Z,
    /// "2026-11-20 14:00" (local time), 2026-11-20, "2 days ago", "3h ago", "yesterday 18:00".
    #[arg(long, value_name = "TIME", value_parser = values::time)]
    at: Option<i64>,
    #[command(flatten)]
    filter: SnapshotFilterArgs,
    /// Directory to restore into (created if missing).
    #[arg(long, short = 't', value_name = "DIR")]
    target: PathBuf,
    /// Restore only paths matching GLOB (and everything below them).
    #[arg(long, short = 'i', value_name = "GLOB", value_parser = values::glob)]
    include: Vec<String>,
    /// Do not restore paths matching GLOB.
    #[arg(long, short = 'e', value_name = "GLOB", value_parser = values::glob)]
    exclude: Vec<String>,
    /// List what would be restored, write nothing.
    #[arg(long, short = 'n')]
    dry_run: bool,
    /// After writing, read every file back and compare it with the snapshot.
    #[arg(long)]
    verify: bool,
}

#[derive(Args)]
struct DiffArgs {
    /// The older snapshot.
    a: String,
    /// The newer snapshot.
    b: String,
    /// Print one JSON object per change.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct FindArgs {
    /// Pattern: without `/` it matches a name anywhere (`*.conf`); with `/` a whole path.
    #[arg(value_parser = values::glob)]
    pattern: String,
    /// Search only these snapshots (repeatable).
    #[arg(long, short = 's', value_name = "SNAPSHOT")]
    snapshot: Vec<String>,
    /// Only snapshots taken at or after TIME.
    #[arg(long, value_name = "TIME", value_parser = values::time)]
    oldest: Option<i64>,
    /// Only snapshots taken at or before TIME.
    #[arg(long, value_name = "TIME", value_parser = values::time)]
    newest: Option<i64>,
    #[command(flatten)]
    filter: SnapshotFilterArgs,
    /// Print one JSON object per match.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum ArchiveArg {
    Tar,
    Zip,
}

#[derive(Args)]
struct DumpArgs {
    /// Snapshot: `latest`, an id, or a unique id prefix.
    snapshot: String,
    /// Absolute path inside the snapshot.
    path: PathBuf,
    /// Archive format for a directory.
    #[arg(long, value_enum, default_value = "tar")]
    archive: ArchiveArg,
    /// Write to FILE instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Args)]
struct LsArgs {
    /// Snapshot: `latest`, an id, or a unique id prefix.
    snapshot: String,
    /// Directory or file inside the snapshot [default: /].
    path: Option<PathBuf>,
    /// Show mode, owner, size and modification time.
    #[arg(long, short = 'l')]
    long: bool,
    /// List everything below the path.
    #[arg(long, short = 'R')]
    recursive: bool,
    /// Print one JSON object per line.
    #[arg(long)]
    json: bool,
}

pub fn run(cli: Cli) -> Result<u8> {
    match &cli.command {
        Command::Init(a) => init(&cli, a),
        Command::Backup(a) => backup(&cli, a),
        Command::Snapshots(a) => snapshots(&cli, a),
        Command::Restore(a) => restore(&cli, a),
        Command::Ls(a) => ls(&cli, a),
        Command::Diff(a) => diff(&cli, a),
        Command::Find(a) => find(&cli, a),
        Command::Dump(a) => dump(&cli, a),
        Command::Check(a) => check(&cli, a),
        Command::Forget(a) => forget::forget(&cli, a),
        Command::Prune(a) => forget::prune(&cli, a),
        Command::Repair(RepairCommand::Index(a)) => repair_index(&cli, a),
        Command::Repair(RepairCommand::Snapshots(a)) => repair_snapshots(&cli, a),
    }
}

fn repo_path(cli: &Cli) -> Result<&Path> {
    cli.repo.as_deref().ok_or_else(|| {
        Exit(
            exit::USAGE,
            "no repository given: use -r/--repo or set CAIRN_REPO".into(),
        )
        .into()
    })
}

fn password(cli: &Cli) -> password::Source {
    password::Source {
        file: cli.password_file.clone(),
        command: cli.password_command.clone(),
    }
}

fn cache_dir(cli: &Cli) -> Option<PathBuf> {
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
fn host() -> Result<cairn_repo::SystemHost> {
    let shift = match cairn_repo::test_hooks::clock_shift() {
        Some(s) => forget::plain_duration(&s)
            .map_err(|e| Exit(exit::ERROR, format!("test clock shift: {e}")))?,
        None => std::time::Duration::ZERO,
    };
    Ok(cairn_repo::SystemHost { shift })
}

fn max_kdf_mib(cli: &Cli) -> u64 {
    cli.max_kdf_mib.unwrap_or(cairn_repo::DEFAULT_MAX_KDF_MIB)
}

pub(crate) fn open(cli: &Cli, dry_run: bool) -> Result<Repository> {
    open_with(cli, dry_run, false)
}

/// Opens the repository; a `writer` (a process that stores packs, index files or snapshots)
/// runs a session, with markers in `locks/`, while it runs.
pub(crate) fn open_with(cli: &Cli, dry_run: bool, writer: bool) -> Result<Repository> {
    let path = repo_path(cli)?;
    if !path.join("config").exists() {
        let why = if path.exists() {
            "it has no config"
        } else {
            "it does not exist"
        };
        return Err(Exit(
            exit::NO_REPOSITORY,
            format!("no repository at {}: {why}", path.display()),
        )
        .into());
    }
    let backend = cairn_repo::test_hooks::wrap(Box::new(LocalBackend::open(path)))
        .map_err(|e| Exit(exit::ERROR, e))?;
    // An unknown version is refused before the user is asked for a password.
    cairn_repo::probe(backend.as_ref())?;
    let pw = password(cli).get(false)?;
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

/// Every readable snapshot, oldest first; a damaged one is named on stderr and left out, so that
/// it costs only itself.
pub(crate) fn snapshots_of(repo: &Repository) -> Result<Vec<(SnapshotId, Snapshot)>> {
    let list = repo.snapshots()?;
    for (id, why) in repo.damaged_snapshots() {
        eprintln!(
            "warning: snapshot {} is left out: {why} (`cairn forget {}` removes it)",
            id.short(),
            id.short()
        );
    }
    Ok(list)
}

fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// The user name of this process's uid from /etc/passwd, else `$USER`, else the uid.
fn username() -> String {
    let uid = rustix::process::getuid().as_raw();
    let name = cairn_engine::user_name(uid);
    if !name.is_empty() {
        return String::from_utf8_lossy(&name).into_owned();
    }
    std::env::var("USER").unwrap_or_else(|_| uid.to_string())
}

fn init(cli: &Cli, a: &InitArgs) -> Result<u8> {
    let defaults = InitOptions::default();
    let kdf = KdfParams {
        memory_kib: a.kdf_memory.unwrap_or(defaults.kdf.memory_kib),
        iterations: a.kdf_iterations.unwrap_or(defaults.kdf.iterations),
        parallelism: defaults.kdf.parallelism,
    };
    kdf.validate()
        .map_err(|e| Exit(exit::USAGE, format!("--kdf-memory/--kdf-iterations: {e}")))?;
    // A key this client would skip when opening makes a repository it cannot open.
    if kdf.cost_mib() > max_kdf_mib(cli) {
        return Err(Exit(
            exit::USAGE,
            format!(
                "--kdf-memory/--kdf-iterations: the key would cost {} MiB·passes, over the limit of {} (raise it with --max-kdf-mib or CAIRN_MAX_KDF_MIB)",
                kdf.cost_mib(),
                max_kdf_mib(cli)
            ),
        )
        .into());
    }
    let path = repo_path(cli)?;
    if path.join("config").exists() {
        anyhow::bail!("a repository already exists at {}", path.display());
    }
    let opts = InitOptions {
        kdf,
        chunk_min: a.chunk_size << 9,
        chunk_avg: a.chunk_size << 10,
        chunk_max: a.chunk_size << 13,
        // At most 1024 MiB (clap checks), so the product fits a u32.
        pack_size: a.pack_size << 20,
        zstd_level: a.compression,
        host: hostname().into_bytes(),
        user: username().into_bytes(),
        now_ns: time::now_ns(),
    };
    let pw = password(cli).get(true)?;
    let backend = LocalBackend::create_layout(path).map_err(cairn_repo::Error::from)?;
    cairn_repo::init(&backend, &pw, &opts)?;
    if !cli.quiet {
        println!("created repository at {}", path.display());
        println!("keep the password safe: without it the data cannot be recovered");
    }
    Ok(0)
}

fn read_excludes(a: &BackupArgs) -> Result<Filter> {
    let mut patterns = a.exclude.clone();
    for f in &a.exclude_file {
        let text = std::fs::read_to_string(f)
            .map_err(|e| Exit(exit::USAGE, format!("--exclude-file {}: {e}", f.display())))?;
        patterns.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from),
        );
    }
    Filter::new(&patterns).map_err(|e| Exit(exit::USAGE, e).into())
}

fn backup(cli: &Cli, a: &BackupArgs) -> Result<u8> {
    let exclude = read_excludes(a)?;
    let time_ns = a.time.unwrap_or_else(time::now_ns);
    // Missing sources are an error before the repository is even opened.
    let sources = cairn_engine::normalize_sources(&a.paths)?;
    let repo = open_with(cli, a.dry_run, true)?;
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
    let parent = cairn_engine::find_parent(&repo, &host, &paths, kind)?;
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
    let sum = &outcome.snapshot.summary;
    if a.json {
        let doc = json!({
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
            "raw_bytes_added": repo.write_stats().raw_bytes,
            "duration_seconds": sum.duration_ns as f64 / 1e9,
            "errors": outcome.skipped.iter().map(|s| json!({"path": s.path.to_string_lossy(), "error": s.reason})).collect::<Vec<_>>(),
        });
        println!("{doc}");
    } else if !cli.quiet {
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
                output::bytes(repo.write_stats().raw_bytes),
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
    Ok(if outcome.skipped.is_empty() {
        0
    } else {
        exit::INCOMPLETE
    })
}

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

/// The snapshot `restore --at` chooses, or an error that says when the earliest one is.
fn pick_at(list: &[(SnapshotId, Snapshot)], t: i64) -> Result<&(SnapshotId, Snapshot)> {
    match (cairn_engine::newest_at(list, t), list.first()) {
        (Some(found), _) => Ok(found),
        (None, Some((_, first))) => anyhow::bail!(
            "no snapshot at or before {}: the earliest matching snapshot is from {}",
            time::show(t),
            time::show(first.time)
        ),
        (None, None) => anyhow::bail!("no snapshot matches"),
    }
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

fn snapshots(cli: &Cli, a: &SnapshotsArgs) -> Result<u8> {
    let filter = a.filter.filter();
    let repo = open(cli, false)?;
    let mut list = snapshots_of(&repo)?;
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

fn restore(cli: &Cli, a: &RestoreArgs) -> Result<u8> {
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

fn diff(cli: &Cli, a: &DiffArgs) -> Result<u8> {
    use cairn_engine::ChangeKind as C;
    let repo = open(cli, false)?;
    let list = snapshots_of(&repo)?;
    let (_, sa) = cairn_engine::find_snapshot(&list, &a.a)?;
    let (_, sb) = cairn_engine::find_snapshot(&list, &a.b)?;
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
            format!("{mark}    {}{delta}", c.path.display())
        };
        if result.is_ok() {
            result = writeln!(out, "{line}");
        }
    })?;
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

fn find(cli: &Cli, a: &FindArgs) -> Result<u8> {
    let pattern =
        Filter::new(std::slice::from_ref(&a.pattern)).map_err(|e| Exit(exit::USAGE, e))?;
    let (oldest, newest) = (a.oldest, a.newest);
    let filter = a.filter.filter();
    let repo = open(cli, false)?;
    let all = snapshots_of(&repo)?;
    let mut list = Vec::new();
    for spec in &a.snapshot {
        list.push(cairn_engine::find_snapshot(&all, spec)?.clone());
    }
    if a.snapshot.is_empty() {
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
                path.display()
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

fn dump(cli: &Cli, a: &DumpArgs) -> Result<u8> {
    let path = if a.path.is_absolute() {
        a.path.clone()
    } else {
        Path::new("/").join(&a.path)
    };
    let repo = open(cli, false)?;
    let list = snapshots_of(&repo)?;
    let (_, snap) = cairn_engine::find_snapshot(&list, &a.snapshot)?;
    let node = cairn_engine::find_node(&repo, snap.tree, &path)?;
    // Written next to the output under a new random name (created exclusively, 0600, so no
    // one can have opened it or planted a link there) and renamed into place, so a failed dump
    // leaves no half file.
    let (mut sink, tmp): (Box<dyn Write>, Option<tempfile::TempPath>) = match &a.output {
        Some(f) => {
            let dir = match f.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            let (file, tmp) = tempfile::Builder::new()
                .prefix(".cairn-dump-")
                .tempfile_in(dir)
                .with_context(|| format!("cannot create a file in {}", dir.display()))?
                .into_parts();
            (
                Box::new(std::io::BufWriter::with_capacity(1 << 20, file)),
                Some(tmp),
            )
        }
        None => (
            Box::new(std::io::BufWriter::with_capacity(
                1 << 20,
                std::io::stdout().lock(),
            )),
            None,
        ),
    };
    let written = match node.kind {
        NodeKind::File => cairn_engine::dump_file(&repo, &node, &mut sink),
        NodeKind::Dir => match a.archive {
            ArchiveArg::Tar => cairn_engine::dump_tar(&repo, &node, &path, &mut sink),
            ArchiveArg::Zip => cairn_engine::dump_zip(&repo, &node, &path, &mut sink),
        },
        _ => Err(cairn_repo::Error::new(
            ErrorKind::InvalidInput,
            format!("{} is neither a file nor a directory", path.display()),
        )),
    };
    let flushed = written
        .map_err(anyhow::Error::from)
        .and_then(|()| Ok(sink.flush()?));
    drop(sink);
    // A failed dump drops `tmp`, which removes it.
    flushed?;
    if let (Some(tmp), Some(out)) = (tmp, &a.output) {
        tmp.persist(out)
            .with_context(|| format!("cannot write {}", out.display()))?;
    }
    Ok(0)
}

fn ls(cli: &Cli, a: &LsArgs) -> Result<u8> {
    let repo = open(cli, false)?;
    let list = snapshots_of(&repo)?;
    let (_, snap) = cairn_engine::find_snapshot(&list, &a.snapshot)?;
    let start = a.path.clone().unwrap_or_else(|| PathBuf::from("/"));
    let start = if start.is_absolute() {
        start
    } else {
        Path::new("/").join(start)
    };
    let node = cairn_engine::find_node(&repo, snap.tree, &start)?;
    let mut out = std::io::stdout().lock();
    let mut print = |path: &Path, node: &Node| -> std::io::Result<()> {
        if a.json {
            let doc = json!({
                "path": path.to_string_lossy(),
                "type": format!("{:?}", node.kind).to_lowercase(),
                "mode": node.mode,
                "uid": node.uid,
                "gid": node.gid,
                "user": String::from_utf8_lossy(&node.user),
                "group": String::from_utf8_lossy(&node.group),
                "size": node.size,
                "mtime": time::rfc3339_file(node.mtime),
                "target": (node.kind == NodeKind::Symlink).then(|| String::from_utf8_lossy(&node.target).into_owned()),
            });
            writeln!(out, "{doc}")
        } else if a.long {
            let mut line = format!(
                "{} {:>8} {:>8} {:>12} {} ",
                output::mode(node.kind, node.mode),
                owner(&node.user, node.uid),
                owner(&node.group, node.gid),
                node.size,
                time::show_file(node.mtime),
            );
            line.push_str(&path.to_string_lossy());
            if node.kind == NodeKind::Symlink {
                line.push_str(" -> ");
                line.push_str(&String::from_utf8_lossy(&node.target));
            }
            writeln!(out, "{line}")
        } else {
            out.write_all(path.as_os_str().as_bytes())?;
            out.write_all(b"\n")
        }
    };
    match node.subtree {
        Some(tree) if node.kind == NodeKind::Dir => {
            let mut result = Ok(());
            cairn_engine::walk_tree(&repo, tree, &start, &mut |path, node| {
                if let Err(e) = print(path, node) {
                    result = Err(e);
                    return Err(cairn_repo::Error::new(ErrorKind::Io, "output closed"));
                }
                Ok(if a.recursive {
                    Visit::Descend
                } else {
                    Visit::Skip
                })
            })
            .or_else(|e| if result.is_err() { Ok(()) } else { Err(e) })?;
            // A closed pipe (`cairn ls | head`) is not an error.
            if let Err(e) = result {
                if e.kind() != std::io::ErrorKind::BrokenPipe {
                    return Err(e.into());
                }
            }
        }
        _ => print(&start, &node)?,
    }
    Ok(0)
}

fn owner(name: &[u8], id: u32) -> String {
    if name.is_empty() {
        id.to_string()
    } else {
        String::from_utf8_lossy(name).into_owned()
    }
}

fn check(cli: &Cli, a: &CheckArgs) -> Result<u8> {
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
        return Err(Exit(
            exit::ERROR,
            format!("check found {} errors", report.errors.len()),
        )
        .into());
    }
    Ok(0)
}

fn repair_index(cli: &Cli, a: &RepairIndexArgs) -> Result<u8> {
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
    if !cli.quiet {
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

fn repair_snapshots(cli: &Cli, a: &RepairSnapshotsArgs) -> Result<u8> {
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
