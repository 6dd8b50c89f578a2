//! Every command-line argument, as clap types: the one place that says what `cairn` accepts.
//! Values are parsed (and refused) by `values`, before any command runs.

use crate::values;
use crate::values::{count, duration, grace, percent, GroupBy};
use cairn_engine::{KeepCount, KeepDuration, Policy};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

const AFTER_HELP: &str = "\
Exit codes: 0 success, 1 error, 2 invalid arguments, 3 backup incomplete (some source files \
could not be read, or a source does not exist on this host), 10 no repository at the location, 11 locked \
(another run of the same profile, with --no-wait), 12 wrong password.";

/// Options that give one thing in different ways, by long name. Giving one on the command line
/// drops a profile's others, so the command line wins even where the program prefers one way
/// (a password file over a password command).
pub(crate) const ALTERNATIVES: &[&[&str]] = &[
    &["password-file", "password-command"],
    &["to-password-file", "to-password-command"],
];

/// Options that mean something only with one value of another: (option, other, value), by
/// long name. When the command line sets the other to a different value, a profile's option is
/// dropped: a profile's `kind = "auto"` and `full-every` must not refuse `--kind full`.
pub(crate) const ONLY_WITH: &[(&str, &str, &str)] =
    &[("full-every", "kind", "auto"), ("between", "kind", "auto")];

/// Deduplicating, compressed, encrypted backups.
#[derive(Parser)]
#[command(name = "cairn", version, after_help = AFTER_HELP)]
pub(crate) struct Cli {
    /// Repository location: a directory or local:PATH, s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX],
    /// sftp:[USER@]HOST:/PATH or sftp://[USER@]HOST[:PORT]/PATH, webdav:http[s]://HOST/PATH,
    /// ftp://USER:PASS@HOST/PATH or ftps://..., rest:http[s]://HOST/PATH, rclone:REMOTE:PATH.
    #[arg(
        short = 'r',
        long = "repo",
        env = "CAIRN_REPO",
        hide_env_values = true,
        global = true, help_heading = "Global options",
        value_name = "LOCATION",
        value_parser = values::location()
    )]
    pub(crate) repo: Option<cairn_repo::RepoLocation>,
    /// Read the password from this file: its whole content, less one trailing newline.
    #[arg(
        long,
        env = "CAIRN_PASSWORD_FILE",
        global = true,
        help_heading = "Global options",
        value_name = "FILE"
    )]
    pub(crate) password_file: Option<PathBuf>,
    /// Run this shell command; the password is its whole output, less one trailing newline.
    #[arg(
        long,
        env = "CAIRN_PASSWORD_COMMAND",
        hide_env_values = true,
        global = true,
        help_heading = "Global options",
        value_name = "CMD"
    )]
    pub(crate) password_command: Option<String>,
    /// Directory of the local cache [default: $XDG_CACHE_HOME/cairn or ~/.cache/cairn].
    #[arg(
        long,
        env = "CAIRN_CACHE_DIR",
        global = true,
        help_heading = "Global options",
        value_name = "DIR"
    )]
    pub(crate) cache_dir: Option<PathBuf>,
    /// Skip key files whose key derivation costs more than this, in MiB of argon2id memory
    /// times passes [default: 2048; `init`'s keys cost 512]. Raise it to open a key made
    /// elsewhere with larger parameters.
    #[arg(
        long,
        env = "CAIRN_MAX_KDF_MIB",
        global = true,
        help_heading = "Global options",
        value_name = "MIB"
    )]
    pub(crate) max_kdf_mib: Option<u64>,
    /// Requests in flight at once to a remote repository.
    #[arg(
        long,
        env = "CAIRN_CONNECTIONS",
        global = true, help_heading = "Global options",
        value_name = "N",
        default_value_t = 5,
        value_parser = clap::value_parser!(u16).range(1..=256)
    )]
    pub(crate) connections: u16,
    /// Tries of each request to a remote repository that fails in a way that may pass
    /// (timeouts, resets, 5xx, throttling), the first included, with growing waits between.
    #[arg(
        long,
        env = "CAIRN_RETRIES",
        global = true, help_heading = "Global options",
        value_name = "N",
        default_value_t = 10,
        value_parser = clap::value_parser!(u32).range(1..=100)
    )]
    pub(crate) retries: u32,
    /// Keep no local cache (slower: the index is merged anew by each command).
    #[arg(long, global = true, help_heading = "Global options")]
    pub(crate) no_cache: bool,
    /// Print only errors.
    #[arg(short, long, global = true, help_heading = "Global options")]
    pub(crate) quiet: bool,
    /// Say more: what was skipped and why; `backup` lists each new (+), changed (M) and
    /// deleted (-) path, and with -vv the unchanged ones too.
    #[arg(
        short,
        long,
        global = true,
        help_heading = "Global options",
        conflicts_with = "quiet",
        action = clap::ArgAction::Count
    )]
    pub(crate) verbose: u8,
    /// Take settings from the profile NAME.toml in $XDG_CONFIG_HOME/cairn, ~/.config/cairn or
    /// /etc/cairn (or from a path containing `/`). Repeatable: later profiles override earlier
    /// ones, and options on the command line override both. Runs of backup, forget, prune and
    /// check with the same profiles never overlap.
    #[arg(short = 'P', long, global = true, help_heading = "Global options", value_name = "NAME", value_parser = values::non_empty)]
    pub(crate) profile: Vec<String>,
    /// The profiles' files and settings, read before clap parsed the merged command line.
    #[arg(skip)]
    pub(crate) profiles: crate::settings::Profiles,
    #[command(subcommand)]
    pub(crate) command: Command,
}

impl Cli {
    /// The environment gives the least: where the command line or a profile gives the
    /// password one way, a variable giving it the other way is set aside (else the password
    /// file of `CAIRN_PASSWORD_FILE` would win over a profile's `password-command`, a file
    /// being preferred).
    pub(crate) fn set_aside_environment(&mut self, matches: &clap::ArgMatches) {
        use clap::parser::ValueSource;
        let source = |m: &clap::ArgMatches, id: &str| m.value_source(id);
        let outranked = |m: &clap::ArgMatches, env: &str, given: &str| {
            source(m, env) == Some(ValueSource::EnvVariable)
                && source(m, given) == Some(ValueSource::CommandLine)
        };
        if outranked(matches, "password_file", "password_command") {
            self.password_file = None;
        }
        if outranked(matches, "password_command", "password_file") {
            self.password_command = None;
        }
        if let (Command::Copy(a), Some(m)) = (&mut self.command, matches.subcommand_matches("copy"))
        {
            if outranked(m, "to_password_file", "to_password_command") {
                a.to_password_file = None;
            }
            if outranked(m, "to_password_command", "to_password_file") {
                a.to_password_command = None;
            }
        }
    }
}

#[derive(Subcommand)]
pub(crate) enum Command {
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
    /// Browse snapshots as a read-only file system (FUSE) at DIR, until Ctrl-C or SIGTERM.
    ///
    /// DIR/snapshots/TIME/, DIR/hosts/HOST/TIME/ and DIR/tags/TAG/TIME/ hold each snapshot's
    /// files with their saved modes, owners, times and symlinks; each of these directories has
    /// a `latest` symlink to its newest snapshot. TIME is the snapshot's local time, with its
    /// short id appended where two read alike. `fusermount -u DIR` also ends it.
    Mount(MountArgs),
    /// Check that every snapshot can be restored; report exactly what cannot.
    Check(CheckArgs),
    /// Copy snapshots into another repository, storing only what it lacks.
    ///
    /// The target has passwords and keys of its own (--to-password-file). Each snapshot keeps
    /// its time, host, user, paths, tags and kind; one the target already holds is skipped, so
    /// running the same copy again copies only newer snapshots. Safe beside backups and prunes
    /// of either repository.
    Copy(CopyArgs),
    /// Show what snapshots take: restored, deduplicated and stored sizes, what each added.
    ///
    /// A snapshot *added* the blobs it reaches that no earlier snapshot reaches (stored size
    /// and size before compression), which is what `backup` and `backup --dry-run` report as
    /// added. Growth is what the snapshots of each day and ISO week added.
    Stats(StatsArgs),
    /// Manage the repository's passwords: one key file each, all opening the same repository.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Remove snapshots, named or by a retention policy (their data stays until prune).
    #[command(after_help = POLICY_HELP)]
    Forget(ForgetArgs),
    /// Delete data no snapshot needs; with a --keep-* policy, forget snapshots first.
    ///
    /// Packs holding only unused data are condemned, partly used ones repacked, and condemned
    /// packs deleted at once when no backup is running, else by a later prune once the backups
    /// that were running have ended. Safe to run beside backups from any host, and to interrupt.
    #[command(after_help = POLICY_HELP)]
    Prune(PruneArgs),
    /// Mend a damaged repository: rebuild the index, or save what snapshots still hold.
    #[command(subcommand)]
    Repair(RepairCommand),
    /// Serve the repositories under a directory over restic's REST protocol (v2).
    ///
    /// restic (`-r rest:http://HOST:PORT/NAME`) and cairn's REST client store in them; a
    /// repository is DIR itself or any folder below it, made by the client's `init`. Objects are
    /// created once and never overwritten. Stop it with Ctrl-C or SIGTERM.
    #[command(after_help = SERVE_HELP)]
    Serve(ServeArgs),
    /// Show the settings that profiles (-P) and the environment give.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Run a profile's command on a timer: a systemd service and timer, or a cron entry.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Print a shell completion script to stdout.
    ///
    /// For bash: `cairn completion bash > /etc/bash_completion.d/cairn` (or
    /// ~/.local/share/bash-completion/completions/cairn); for zsh, write `_cairn` into a
    /// directory of $fpath; for fish, ~/.config/fish/completions/cairn.fish.
    Completion(CompletionArgs),
}

#[derive(Args)]
pub(crate) struct CompletionArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub(crate) shell: clap_complete::Shell,
}

/// `cairn __man DIR`: writes the man pages, cairn.1 and one per subcommand, into DIR. Only the
/// binary sees its clap types, so `cargo xtask man` runs this. It is parsed apart from [`Cli`],
/// not as a hidden subcommand, because clap_complete offers hidden subcommands to the shell.
#[derive(Parser)]
#[command(name = "cairn __man")]
pub(crate) struct ManCli {
    /// The directory to write the pages into; made if missing.
    pub(crate) dir: PathBuf,
}

#[derive(Subcommand)]
pub(crate) enum KeyCommand {
    /// List the key files: id, host, user, created; `*` marks the one the password given opened.
    List(KeyListArgs),
    /// Add a password: a new key file for the same repository. Data is not touched.
    Add(KeyAddArgs),
    /// Remove a key file, so that its password no longer opens the repository.
    ///
    /// The key the password given opened is refused (and so is the last key): to revoke a
    /// password, give another key's password; to change it, use `cairn key passwd`. A refusal
    /// exits 2.
    Remove(KeyRemoveArgs),
    /// Change the password given: write a key file for the new password, verify it, then remove
    /// the old key file, so that some key opens the repository at every moment.
    Passwd(KeyPasswdArgs),
}

#[derive(Args)]
pub(crate) struct KeyListArgs {
    /// Print JSON: a list of {id, host, user, created, current}.
    #[arg(long)]
    pub(crate) json: bool,
}

/// The new password and key derivation of a key file `key add` or `key passwd` writes.
#[derive(Args)]
pub(crate) struct NewPasswordArgs {
    /// Read the new password from this file: its whole content, less one trailing newline
    /// [default: ask twice on the terminal].
    #[arg(long, value_name = "FILE")]
    pub(crate) new_password_file: Option<PathBuf>,
    /// Argon2id memory in KiB for the new key [default: 65536].
    #[arg(long, value_name = "KIB", value_parser = clap::value_parser!(u32).range(8..=4 << 20))]
    pub(crate) kdf_memory: Option<u32>,
    /// Argon2id passes for the new key [default: 3, as RFC 9106 recommends with 64 MiB].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub(crate) kdf_iterations: Option<u32>,
}

#[derive(Args)]
pub(crate) struct KeyAddArgs {
    #[command(flatten)]
    pub(crate) new: NewPasswordArgs,
    /// Host the key is for, recorded in the key file [default: this machine's].
    #[arg(long, value_parser = values::non_empty)]
    pub(crate) host: Option<String>,
    /// User the key is for, recorded in the key file [default: this process's].
    #[arg(long, value_parser = values::non_empty)]
    pub(crate) user: Option<String>,
}

#[derive(Args)]
pub(crate) struct KeyRemoveArgs {
    /// The key file: its id or a unique id prefix (from `cairn key list`).
    #[arg(value_name = "ID")]
    pub(crate) id: String,
}

#[derive(Args)]
pub(crate) struct KeyPasswdArgs {
    #[command(flatten)]
    pub(crate) new: NewPasswordArgs,
    /// Host recorded in the new key file [default: the old key's].
    #[arg(long, value_parser = values::non_empty)]
    pub(crate) host: Option<String>,
    /// User recorded in the new key file [default: the old key's].
    #[arg(long, value_parser = values::non_empty)]
    pub(crate) user: Option<String>,
}

#[derive(Subcommand)]
pub(crate) enum ConfigCommand {
    /// Print the merged settings of the profiles given with -P, each with where it comes from;
    /// passwords, tokens and URL credentials are masked.
    Show,
}

#[derive(Subcommand)]
pub(crate) enum ScheduleCommand {
    /// Write a systemd service and timer (Persistent=true: a run missed while the host was off
    /// happens at boot) that runs `cairn -P NAME COMMAND`; a cron entry where systemd is absent.
    Install(ScheduleInstallArgs),
    /// List the schedules cairn has installed.
    List(ScheduleRootArgs),
    /// Remove the schedule of the profiles given with -P (and --command).
    Remove(ScheduleRemoveArgs),
}

#[derive(Args)]
pub(crate) struct ScheduleRootArgs {
    /// Write below DIR instead of / (for images and tests); systemctl is then not called.
    #[arg(long, value_name = "DIR")]
    pub(crate) root: Option<PathBuf>,
    /// The scheduler: systemd, or cron (/etc/cron.d) [default: systemd when it runs this host].
    #[arg(long = "with", value_enum, value_name = "SCHEDULER")]
    pub(crate) scheduler: Option<SchedulerArg>,
}

#[derive(Args)]
pub(crate) struct ScheduleInstallArgs {
    /// When to run, in systemd's calendar syntax: "daily 02:00", "Mon *-*-* 03:30", "02:00",
    /// "Sun 04:00", "hourly" (`systemd-analyze calendar` explains more).
    #[arg(long, value_name = "CALENDAR", value_parser = values::non_empty)]
    pub(crate) at: String,
    /// The command the timer runs with the profiles.
    #[arg(long, value_enum, default_value = "backup")]
    pub(crate) command: ScheduledCommand,
    #[command(flatten)]
    pub(crate) root: ScheduleRootArgs,
}

#[derive(Args)]
pub(crate) struct ScheduleRemoveArgs {
    /// The command whose schedule goes [default: every command of the profiles].
    #[arg(long, value_enum)]
    pub(crate) command: Option<ScheduledCommand>,
    #[command(flatten)]
    pub(crate) root: ScheduleRootArgs,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum SchedulerArg {
    Systemd,
    Cron,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ScheduledCommand {
    Backup,
    Forget,
    Prune,
    Check,
}

impl ScheduledCommand {
    pub(crate) fn name(self) -> &'static str {
        match self {
            ScheduledCommand::Backup => "backup",
            ScheduledCommand::Forget => "forget",
            ScheduledCommand::Prune => "prune",
            ScheduledCommand::Check => "check",
        }
    }
}

/// Where a run's report goes and what runs around it: the options of backup, forget, prune and
/// check (and so keys of their profile sections).
#[derive(Args, Clone)]
#[command(next_help_heading = "Run reports and hooks")]
pub(crate) struct RunArgs {
    /// POST the run report (JSON, README.md "Run reports") to URL; retried with backoff, and a
    /// report that cannot be delivered is a warning that changes nothing stored.
    #[arg(long, value_name = "URL", value_parser = values::http_url)]
    pub(crate) report_url: Option<String>,
    /// A header for --report-url, like "Authorization: Bearer TOKEN" (repeatable).
    #[arg(long, value_name = "HEADER", value_parser = values::header)]
    pub(crate) report_header: Vec<String>,
    /// Mail a summary, with the report attached, to ADDR (repeatable) through --smtp.
    #[arg(long, value_name = "ADDR", requires = "smtp")]
    pub(crate) report_mail: Vec<String>,
    /// When to mail: on failure, on a warning or failure, or always.
    #[arg(long, value_enum, default_value = "failure")]
    pub(crate) mail_on: MailOn,
    /// The sender of report mails [default: cairn@HOST].
    #[arg(long, value_name = "ADDR")]
    pub(crate) mail_from: Option<String>,
    /// The SMTP server for --report-mail.
    #[arg(long, value_name = "HOST:PORT", value_parser = values::host_port)]
    pub(crate) smtp: Option<String>,
    /// Log in to the SMTP server as USER (with --smtp-password-file).
    #[arg(long, value_name = "USER", requires = "smtp_password_file")]
    pub(crate) smtp_user: Option<String>,
    /// The SMTP password: the file's content less one trailing newline.
    #[arg(long, value_name = "FILE", requires = "smtp_user")]
    pub(crate) smtp_password_file: Option<PathBuf>,
    /// How to secure the SMTP connection: starttls (required, not tried), tls (port 465), none.
    #[arg(long, value_enum, default_value = "starttls")]
    pub(crate) smtp_tls: SmtpTls,
    /// Write Prometheus metrics of the run to FILE (node_exporter's textfile collector),
    /// atomically, keeping the other commands' and profiles' metrics in it.
    #[arg(long, value_name = "FILE")]
    pub(crate) metrics_file: Option<PathBuf>,
    /// Run this shell command first; when it fails, the run does not happen and counts as
    /// failed (repeatable).
    #[arg(long, value_name = "CMD")]
    pub(crate) before: Vec<String>,
    /// Run this shell command after a run that did not fail, with the report's facts in
    /// CAIRN_* variables (repeatable).
    #[arg(long, value_name = "CMD")]
    pub(crate) after: Vec<String>,
    /// Run this shell command after a failed run, with the report's facts in CAIRN_*
    /// variables (repeatable).
    #[arg(long, value_name = "CMD")]
    pub(crate) on_failure: Vec<String>,
    /// Kill a hook that runs longer than this (like 30s, 10m, 1h); it then counts as failed.
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = values::plain_duration)]
    pub(crate) hook_timeout: Duration,
    /// With -P: when another run of the same profiles holds their lock, exit at once (code 11)
    /// instead of waiting for it.
    #[arg(long)]
    pub(crate) no_wait: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum MailOn {
    Failure,
    Warning,
    Always,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum SmtpTls {
    Starttls,
    Tls,
    None,
}

const SERVE_HELP: &str = "\
Example: cairn serve --listen 0.0.0.0:8000 --path /srv/backups --append-only --htpasswd \
/etc/cairn/htpasswd --tls-cert cert.pem --tls-key key.pem, then on a client: restic -r \
rest:https://alice:PASSWORD@backup.example:8000/alice/laptop init. Make users with \
`htpasswd -B FILE USER`. Each failed request is logged as one line on stderr.";

#[derive(Args)]
pub(crate) struct MountArgs {
    /// The directory to mount at; it must exist.
    #[arg(value_name = "DIR")]
    pub(crate) dir: PathBuf,
    #[command(flatten)]
    pub(crate) filter: SnapshotFilterArgs,
    /// The most decrypted data kept in memory for reading, in MiB.
    #[arg(
        long,
        default_value_t = 64,
        value_name = "MIB",
        value_parser = clap::value_parser!(u64).range(8..=65536)
    )]
    pub(crate) cache_size: u64,
}

#[derive(Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on: HOST:PORT, or :PORT for every interface; port 0 takes a free one
    /// (the address bound is printed).
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:8000",
        value_parser = values::listen
    )]
    pub(crate) listen: SocketAddr,
    /// The directory holding the repositories; it must exist.
    #[arg(long, value_name = "DIR")]
    pub(crate) path: PathBuf,
    /// Clients may add objects but delete none except locks, so that a compromised client
    /// cannot destroy history (run `prune` on the server's machine, on DIR/NAME).
    #[arg(long)]
    pub(crate) append_only: bool,
    /// Each user reaches only the repositories under /USER/.
    #[arg(long, requires = "htpasswd")]
    pub(crate) private_repos: bool,
    /// Ask for HTTP basic authentication, checked against FILE: bcrypt (`htpasswd -B`) or
    /// SHA-1 (`htpasswd -s`) lines. Read again within seconds of a change, so users are added
    /// and revoked without a restart.
    #[arg(long, value_name = "FILE")]
    pub(crate) htpasswd: Option<PathBuf>,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Refuse uploads larger than SIZE (like 512MiB). The default holds a pack of the
    /// default size with its largest blob, and restic's largest packs; repositories made with
    /// `init --pack-size` above 128 MiB need more.
    #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = values::byte_size)]
    pub(crate) max_object_size: u64,
}

#[derive(Subcommand)]
pub(crate) enum RepairCommand {
    /// Rebuild the index from the packs' own headers (a lost or damaged index file).
    Index(RepairIndexArgs),
    /// Write, beside each damaged snapshot, a new one tagged `repaired` without its lost files;
    /// the originals stay until forgotten. A later backup of the same files stores them again.
    Snapshots(RepairSnapshotsArgs),
}

#[derive(Args)]
pub(crate) struct RepairIndexArgs {
    /// Read every pack in full and leave damaged blobs out of the index, so that the next
    /// backup stores them again.
    #[arg(long)]
    pub(crate) read_data: bool,
    /// Print a JSON report of the counts.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args)]
pub(crate) struct RepairSnapshotsArgs {
    /// Also count blobs that are indexed but do not read back intact as lost (reads them all).
    #[arg(long)]
    pub(crate) read_data: bool,
    /// Show what would be left out, write nothing.
    #[arg(long, short = 'n')]
    pub(crate) dry_run: bool,
    /// Print a JSON report.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args)]
pub(crate) struct CheckArgs {
    /// Also read every pack and verify every blob in it.
    #[arg(long)]
    pub(crate) read_data: bool,
    /// Read only part of the packs: `n/m` (part n of m; parts 1..m together cover every pack)
    /// or a percentage like `10%`.
    #[arg(
        long,
        value_name = "SUBSET",
        conflicts_with = "read_data",
        value_parser = values::subset
    )]
    pub(crate) read_data_subset: Option<cairn_engine::ReadData>,
    /// Print the report as JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) run: RunArgs,
}

/// Which snapshots to consider.
#[derive(Args, Clone, Default)]
pub(crate) struct SnapshotFilterArgs {
    /// Only snapshots of this host (repeatable: any of them).
    #[arg(long, value_name = "HOST", value_parser = values::non_empty)]
    pub(crate) host: Vec<String>,
    /// Only snapshots that include this absolute path (repeatable: all of them).
    #[arg(long, value_name = "PATH", value_parser = values::absolute_path)]
    pub(crate) path: Vec<PathBuf>,
    /// Only snapshots with this tag (repeatable: all of them).
    #[arg(long, value_name = "TAG", value_parser = values::non_empty)]
    pub(crate) tag: Vec<String>,
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
pub(crate) struct InitArgs {
    /// Argon2id memory in KiB for the new key [default: 65536].
    #[arg(long, value_name = "KIB", value_parser = clap::value_parser!(u32).range(8..=4 << 20))]
    pub(crate) kdf_memory: Option<u32>,
    /// Argon2id passes for the new key [default: 3, as RFC 9106 recommends with 64 MiB].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub(crate) kdf_iterations: Option<u32>,
    /// Target size of pack files in MiB.
    #[arg(
        long,
        default_value_t = 16,
        value_name = "MIB",
        value_parser = clap::value_parser!(u32).range(1..=1024)
    )]
    pub(crate) pack_size: u32,
    /// zstd compression level (negative levels are faster, 1-22 smaller).
    #[arg(
        long,
        default_value_t = 3,
        allow_hyphen_values = true,
        value_name = "LEVEL",
        value_parser = clap::value_parser!(i32).range(-7..=22)
    )]
    pub(crate) compression: i32,
    /// Average chunk size in KiB (a power of two); min is half of it, max eight times.
    #[arg(long, default_value_t = 1024, value_name = "KIB", value_parser = values::chunk_size)]
    pub(crate) chunk_size: u32,
    /// Print a JSON report: where, the repository id, chunk and pack sizes, compression.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum KindArg {
    Full,
    Incremental,
    Differential,
    /// Full when --full-every says one is due, else --between.
    Auto,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum BetweenArg {
    Incremental,
    Differential,
}

#[derive(Args)]
pub(crate) struct BackupArgs {
    /// Files and directories to back up (`sources` in a profile). One that does not exist on
    /// this host is skipped with a warning, and the backup exits 3.
    #[arg(value_name = "PATH")]
    pub(crate) sources: Vec<PathBuf>,
    /// Leave out paths matching GLOB. Without `/` it matches a name anywhere (`*.tmp`); with `/`
    /// the whole absolute path (`/home/*/.cache`); `**` crosses directories.
    #[arg(long, short = 'e', value_name = "GLOB", value_parser = values::glob)]
    pub(crate) exclude: Vec<String>,
    /// Read exclude patterns from FILE, one per line (`#` starts a comment).
    #[arg(long, value_name = "FILE")]
    pub(crate) exclude_file: Vec<PathBuf>,
    /// Do not cross file system boundaries.
    #[arg(long, short = 'x')]
    pub(crate) one_file_system: bool,
    /// Host name recorded in the snapshot [default: this machine's].
    #[arg(long, value_parser = values::non_empty)]
    pub(crate) host: Option<String>,
    /// Tag the snapshot (repeatable).
    #[arg(long, value_name = "TAG", value_parser = values::non_empty)]
    pub(crate) tag: Vec<String>,
    /// Snapshot time instead of now: 2026-11-20T14:00:00Z, "2026-11-20 14:00" or 2026-11-20.
    #[arg(long, value_name = "TIME", value_parser = values::time)]
    pub(crate) time: Option<i64>,
    /// incremental: skip files unchanged since the latest snapshot of these paths;
    /// differential: since the latest full one; full: read everything; auto: see --full-every.
    #[arg(long, value_enum, default_value = "incremental")]
    pub(crate) kind: KindArg,
    /// With --kind auto: a full backup when the latest full one of this host and paths is
    /// older than this, or none exists. A weekday (`mon`: a full when none was made since the
    /// latest Monday 00:00, local time) or a duration (`7d`, `2w`, `36h`).
    #[arg(long, value_name = "SPEC", value_parser = values::full_every)]
    pub(crate) full_every: Option<cairn_engine::FullEvery>,
    /// With --kind auto: the kind of backup between full ones.
    #[arg(long, value_enum, default_value = "incremental")]
    pub(crate) between: BetweenArg,
    /// Show what would be added, write nothing.
    #[arg(long, short = 'n')]
    pub(crate) dry_run: bool,
    /// Print the run report as JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) run: RunArgs,
}

#[derive(Args)]
pub(crate) struct CopyArgs {
    /// Snapshots to copy: ids, id prefixes, `latest`, `SNAP~N` [default: every snapshot the
    /// filters let through].
    #[arg(value_name = "SNAPSHOT")]
    pub(crate) snapshots: Vec<String>,
    #[command(flatten)]
    pub(crate) filter: SnapshotFilterArgs,
    /// The repository to copy into, a location as for --repo (made with `cairn init`).
    #[arg(
        long,
        env = "CAIRN_TO_REPO",
        hide_env_values = true,
        value_name = "LOCATION",
        value_parser = values::location()
    )]
    pub(crate) to: cairn_repo::RepoLocation,
    /// Read the target's password from this file [else CAIRN_TO_PASSWORD, or a prompt].
    #[arg(long, env = "CAIRN_TO_PASSWORD_FILE", value_name = "FILE")]
    pub(crate) to_password_file: Option<PathBuf>,
    /// Run this shell command for the target's password.
    #[arg(
        long,
        env = "CAIRN_TO_PASSWORD_COMMAND",
        hide_env_values = true,
        value_name = "CMD"
    )]
    pub(crate) to_password_command: Option<String>,
    /// Say which snapshots would be copied; copy nothing.
    #[arg(long, short = 'n')]
    pub(crate) dry_run: bool,
    /// Print one JSON report.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args)]
pub(crate) struct StatsArgs {
    /// Count only these snapshots in the repository's totals: ids, id prefixes, `latest`,
    /// `SNAP~N` [default: every snapshot the filters let through].
    #[arg(value_name = "SNAPSHOT")]
    pub(crate) snapshots: Vec<String>,
    #[command(flatten)]
    pub(crate) filter: SnapshotFilterArgs,
    /// Print one JSON report.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args)]
pub(crate) struct SnapshotsArgs {
    #[command(flatten)]
    pub(crate) filter: SnapshotFilterArgs,
    /// Only the snapshot `restore --at TIME` would choose.
    #[arg(long, value_name = "TIME", value_parser = values::at)]
    pub(crate) at: Option<i64>,
    /// Only the latest N snapshots of each group (host and paths).
    #[arg(long, value_name = "N")]
    pub(crate) latest: Option<usize>,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args)]
pub(crate) struct RestoreArgs {
    /// Snapshot: `latest`, an id, a unique id prefix, or one of these and `~N` (its N-th
    /// predecessor of the same host and paths). Not with --at.
    #[arg(required_unless_present = "at", conflicts_with = "at")]
    pub(crate) snapshot: Option<String>,
    /// Restore the newest snapshot taken at or before TIME: 2026-11-20T14:00:00Z,
    /// "2026-11-20 14:00" (local time), 202611201400, "2 days ago", "3h ago", "yesterday 18:00";
    /// a whole day (2026-11-20, 20261120, yesterday) means its end.
    #[arg(long, value_name = "TIME", value_parser = values::at)]
    pub(crate) at: Option<i64>,
    #[command(flatten)]
    pub(crate) filter: SnapshotFilterArgs,
    /// Directory to restore into (created if missing).
    #[arg(long, short = 't', value_name = "DIR")]
    pub(crate) target: PathBuf,
    /// Restore only paths matching GLOB (and everything below them).
    #[arg(long, short = 'i', value_name = "GLOB", value_parser = values::glob)]
    pub(crate) include: Vec<String>,
    /// Do not restore paths matching GLOB.
    #[arg(long, short = 'e', value_name = "GLOB", value_parser = values::glob)]
    pub(crate) exclude: Vec<String>,
    /// List what would be restored, write nothing.
    #[arg(long, short = 'n')]
    pub(crate) dry_run: bool,
    /// After writing, read every file back and compare it with the snapshot.
    #[arg(long)]
    pub(crate) verify: bool,
    /// Restore exactly: delete what the target holds below the snapshot's paths that the
    /// snapshot does not (with --dry-run, list it). Restoring a full and then a differential
    /// snapshot into one directory leaves exactly the differential's files.
    #[arg(long, conflicts_with_all = ["include", "exclude"])]
    pub(crate) delete: bool,
    /// Print a JSON report of what was restored (with --dry-run, what would be) instead of
    /// the summary; the paths are not listed.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args)]
pub(crate) struct DiffArgs {
    /// The older snapshot, then the newer; with --at, only the newer [default: latest].
    #[arg(value_name = "SNAPSHOT", num_args = 0..=2)]
    pub(crate) snapshots: Vec<String>,
    /// Compare the snapshot `restore --at TIME` would choose with SNAPSHOT.
    #[arg(long, value_name = "TIME", value_parser = values::at)]
    pub(crate) at: Option<i64>,
    #[command(flatten)]
    pub(crate) filter: SnapshotFilterArgs,
    /// Print one JSON object per change.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args)]
pub(crate) struct FindArgs {
    /// Pattern: without `/` it matches a name anywhere (`*.conf`); with `/` a whole path.
    #[arg(value_parser = values::glob)]
    pub(crate) pattern: String,
    /// Search only these snapshots (repeatable).
    #[arg(long, short = 's', value_name = "SNAPSHOT")]
    pub(crate) snapshot: Vec<String>,
    /// Only snapshots taken at or after TIME.
    #[arg(long, value_name = "TIME", value_parser = values::time)]
    pub(crate) oldest: Option<i64>,
    /// Only snapshots taken at or before TIME (a whole day means its end).
    #[arg(long, value_name = "TIME", value_parser = values::at)]
    pub(crate) newest: Option<i64>,
    /// Search only the snapshot `restore --at TIME` would choose.
    #[arg(long, value_name = "TIME", value_parser = values::at, conflicts_with_all = ["snapshot", "oldest", "newest"])]
    pub(crate) at: Option<i64>,
    #[command(flatten)]
    pub(crate) filter: SnapshotFilterArgs,
    /// Print one JSON object per match.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ArchiveArg {
    Tar,
    Zip,
}

#[derive(Args)]
pub(crate) struct DumpArgs {
    /// Snapshot (`latest`, an id or id prefix, `SNAP~N`), then the absolute path inside it;
    /// with --at, only the path.
    #[arg(value_name = "SNAPSHOT] [PATH", num_args = 1..=2, required = true)]
    pub(crate) words: Vec<String>,
    #[command(flatten)]
    pub(crate) filter: SnapshotFilterArgs,
    /// The newest snapshot taken at or before TIME, as `restore --at` picks it (a whole day,
    /// like 2026-12-02 or 20261202, means its end).
    #[arg(long, value_name = "TIME", value_parser = values::at)]
    pub(crate) at: Option<i64>,

    /// Archive format for a directory.
    #[arg(long, value_enum, default_value = "tar")]
    pub(crate) archive: ArchiveArg,
    /// Write to FILE instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    /// Print a JSON report of what was written; needs --output, since on stdout the report
    /// would mix with the content.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args)]
pub(crate) struct LsArgs {
    /// Snapshot (`latest`, an id or id prefix, `SNAP~N`), then a directory or file inside it
    /// [default: /]; with --at, only the path.
    #[arg(value_name = "SNAPSHOT] [PATH", num_args = 0..=2)]
    pub(crate) words: Vec<String>,
    #[command(flatten)]
    pub(crate) filter: SnapshotFilterArgs,
    /// The newest snapshot taken at or before TIME, as `restore --at` picks it (a whole day,
    /// like 2026-12-02 or 20261202, means its end).
    #[arg(long, value_name = "TIME", value_parser = values::at)]
    pub(crate) at: Option<i64>,

    /// Show mode, owner, size and modification time.
    #[arg(long, short = 'l')]
    pub(crate) long: bool,
    /// List everything below the path.
    #[arg(long, short = 'R')]
    pub(crate) recursive: bool,
    /// Print one JSON object per line.
    #[arg(long)]
    pub(crate) json: bool,
}

const POLICY_HELP: &str = "\
Retention works as restic's `forget`: snapshots are grouped (by host and paths unless \
--group-by says otherwise) and each group is walked newest first. A snapshot is kept when any \
rule keeps it: --keep-last N the N newest; --keep-hourly/daily/weekly/monthly/yearly N the \
newest snapshot of each of the N newest hours (days, ISO weeks, months, years) that have one; \
--keep-within 30d everything within 30 days of the group's newest snapshot (units y m d h); \
--keep-within-daily 7d one a day within that range (likewise hourly ... yearly); --keep-tag \
a,b every snapshot with tags a and b. Counts take `unlimited`. Periods are calendar periods in \
the local time zone (TZ). Example: --keep-daily 7 --keep-weekly 4 --keep-monthly 12 keeps a \
week of dailies, a month of weeklies and a year of monthlies.";

/// The `--keep-*` options.
#[derive(Args, Clone, Default)]
pub(crate) struct PolicyArgs {
    /// Keep the N newest snapshots.
    #[arg(long, value_name = "N", value_parser = count, allow_negative_numbers = true)]
    pub(crate) keep_last: Option<KeepCount>,
    /// Keep the newest snapshot of each of the N newest hours with snapshots.
    #[arg(long, value_name = "N", value_parser = count, allow_negative_numbers = true)]
    pub(crate) keep_hourly: Option<KeepCount>,
    /// Keep the newest snapshot of each of the N newest days with snapshots.
    #[arg(long, value_name = "N", value_parser = count, allow_negative_numbers = true)]
    pub(crate) keep_daily: Option<KeepCount>,
    /// Keep the newest snapshot of each of the N newest ISO weeks with snapshots.
    #[arg(long, value_name = "N", value_parser = count, allow_negative_numbers = true)]
    pub(crate) keep_weekly: Option<KeepCount>,
    /// Keep the newest snapshot of each of the N newest months with snapshots.
    #[arg(long, value_name = "N", value_parser = count, allow_negative_numbers = true)]
    pub(crate) keep_monthly: Option<KeepCount>,
    /// Keep the newest snapshot of each of the N newest years with snapshots.
    #[arg(long, value_name = "N", value_parser = count, allow_negative_numbers = true)]
    pub(crate) keep_yearly: Option<KeepCount>,
    /// Keep every snapshot within DURATION (like 30d, 1y6m, 12h) of the group's newest.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub(crate) keep_within: Option<KeepDuration>,
    /// Keep the newest snapshot of each hour within DURATION of the group's newest.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub(crate) keep_within_hourly: Option<KeepDuration>,
    /// Keep the newest snapshot of each day within DURATION of the group's newest.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub(crate) keep_within_daily: Option<KeepDuration>,
    /// Keep the newest snapshot of each week within DURATION of the group's newest.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub(crate) keep_within_weekly: Option<KeepDuration>,
    /// Keep the newest snapshot of each month within DURATION of the group's newest.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub(crate) keep_within_monthly: Option<KeepDuration>,
    /// Keep the newest snapshot of each year within DURATION of the group's newest.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub(crate) keep_within_yearly: Option<KeepDuration>,
    /// Keep snapshots with all of these comma-separated tags (repeatable: any of the sets).
    #[arg(long, value_name = "TAGS", value_parser = values::non_empty)]
    pub(crate) keep_tag: Vec<String>,
    /// Group snapshots by these of host, paths, tags (comma-separated; empty: one group).
    #[arg(
        long,
        value_name = "FIELDS",
        default_value = "host,paths",
        value_parser = values::group_by
    )]
    pub(crate) group_by: GroupBy,
}

impl PolicyArgs {
    pub(crate) fn policy(&self) -> Policy {
        let c = |v: Option<KeepCount>| v.unwrap_or(KeepCount::AtMost(0));
        let d = |v: Option<KeepDuration>| v.unwrap_or_default();
        Policy {
            keep_last: c(self.keep_last),
            keep_hourly: c(self.keep_hourly),
            keep_daily: c(self.keep_daily),
            keep_weekly: c(self.keep_weekly),
            keep_monthly: c(self.keep_monthly),
            keep_yearly: c(self.keep_yearly),
            keep_within: d(self.keep_within),
            keep_within_hourly: d(self.keep_within_hourly),
            keep_within_daily: d(self.keep_within_daily),
            keep_within_weekly: d(self.keep_within_weekly),
            keep_within_monthly: d(self.keep_within_monthly),
            keep_within_yearly: d(self.keep_within_yearly),
            keep_tags: self
                .keep_tag
                .iter()
                .map(|t| cairn_engine::parse_keep_tag(t))
                .collect(),
        }
    }
}

#[derive(Args)]
pub(crate) struct ForgetArgs {
    /// Snapshots to forget: ids or unique id prefixes.
    #[arg(value_name = "SNAPSHOT")]
    pub(crate) snapshots: Vec<String>,
    #[command(flatten)]
    pub(crate) policy: PolicyArgs,
    #[command(flatten)]
    pub(crate) filter: SnapshotFilterArgs,
    /// With --dry-run: what the policy would have decided at TIME, from the snapshots taken
    /// by then (a whole day means its end).
    #[arg(long, value_name = "TIME", value_parser = values::at, requires = "dry_run")]
    pub(crate) at: Option<i64>,
    /// Collect the garbage afterwards, as `cairn prune` does.
    #[arg(long)]
    pub(crate) prune: bool,
    #[command(flatten)]
    pub(crate) gc: GcArgs,
    #[command(flatten)]
    pub(crate) run: RunArgs,
}

#[derive(Args)]
pub(crate) struct PruneArgs {
    #[command(flatten)]
    pub(crate) policy: PolicyArgs,
    #[command(flatten)]
    pub(crate) filter: SnapshotFilterArgs,
    #[command(flatten)]
    pub(crate) gc: GcArgs,
    #[command(flatten)]
    pub(crate) run: RunArgs,
}

#[derive(Args)]
pub(crate) struct GcArgs {
    /// Repack partly used packs until unused space is at most this share of used space.
    #[arg(long, value_name = "PERCENT", default_value = "5%", value_parser = percent)]
    pub(crate) max_unused: f64,
    /// Take a backup that has not renewed its marker in locks/ for this long (like 1d, 12h;
    /// at least 10m) for dead: it is fenced off, so that it can never commit, and the data
    /// only it protected can go.
    #[arg(long, value_name = "DURATION", default_value = "1d", value_parser = grace)]
    pub(crate) grace: Duration,
    /// Show what would be forgotten, deleted and repacked; change nothing.
    #[arg(long, short = 'n')]
    pub(crate) dry_run: bool,
    /// Print a JSON report.
    #[arg(long)]
    pub(crate) json: bool,
}
