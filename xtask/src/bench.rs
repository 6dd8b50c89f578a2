//! `cargo xtask bench`: cairn beside restic, borg and rustic on the corpora of issue 6, each
//! step timed under GNU time, the tools taking turns, medians written to BENCHMARKS.md beside
//! the ceiling the primitives allow on this machine.
//!
//! Invariant: in every round each tool starts from a new repository and an empty cache, and
//! sees the same bytes (the corpora and their edits are deterministic), so the rounds of
//! different tools are comparable.

use crate::ceiling::{self, Ceiling};
use crate::corpus::{self, Corpus, Limits};
use crate::tools::{self, Action, Kind, Tool};
use crate::Result;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const HELP: &str = "cargo xtask bench: cairn beside restic, borg and rustic; writes BENCHMARKS.md

Builds cairn in release mode, prepares the corpora under target/bench (cached across runs),
installs restic and borg from Debian and rustic with `cargo install rustic-rs --locked` when
missing, runs each step for each tool in turn and writes the medians to BENCHMARKS.md (the part
above `<!-- hand-written below -->`). Whenever a C1 step runs, it also measures the ceiling
once (`cargo bench --bench ceiling` on C1: each primitive on one core, and the rates they imply
on every core); `--steps ceiling` measures only that.

The step `remote` runs the C1 steps against a remote repository (S3 on a Garage server on
loopback, with the requests and bytes of each step counted) for cairn, restic and rustic:
`cargo bench --bench remote` on the same C1, which writes its own section below the
hand-written marker of BENCHMARKS.md and can also be run alone.

Options:
  --runs N         rounds per tool; the table shows medians [default: 3]
  --steps LIST     comma-separated steps or groups (c1, c2, c3, st) to run [default: all]
  --skip LIST      comma-separated tools to leave out: restic, borg, rustic
  --size-mib N     size of corpus C1 in MiB [default: 1024]
  --quick          small C2 (3,000 files) and C3 (12 MiB) corpora, for a trial of the harness
  --prepare        prepare the corpora for these options, then stop
  --out FILE       write the report to FILE instead of BENCHMARKS.md
  --cairn BIN      time this cairn binary instead of building the release one (another
                   commit's build, to compare before and after a change)

Steps:";

/// What the bench measures, in the order of the report's table.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Step {
    C1Backup,
    C1NoChange,
    C1Changed,
    C1Restore,
    C1Check,
    C1CheckData,
    C1Size,
    C2Backup,
    C2NoChange,
    C3Versions,
    C3Prune,
    /// A tiny repository, where a command's time is its fixed cost: start-up, the key
    /// derivation, opening the repository and the cache.
    StartSnapshots,
    StartNoChange,
    StartCheck,
    /// Not a step of the tools: the ceiling bench on C1, which also runs whenever any C1 step
    /// does.
    Ceiling,
    /// C1 through S3 on a Garage server on loopback: `cargo bench --bench remote`, which
    /// writes a section of its own below the hand-written marker.
    Remote,
}

impl Step {
    pub const ALL: [Step; 16] = [
        Step::C1Backup,
        Step::C1NoChange,
        Step::C1Changed,
        Step::C1Restore,
        Step::C1Check,
        Step::C1CheckData,
        Step::C1Size,
        Step::C2Backup,
        Step::C2NoChange,
        Step::C3Versions,
        Step::C3Prune,
        Step::StartSnapshots,
        Step::StartNoChange,
        Step::StartCheck,
        Step::Ceiling,
        Step::Remote,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Step::C1Backup => "c1-backup",
            Step::C1NoChange => "c1-nochange",
            Step::C1Changed => "c1-changed",
            Step::C1Restore => "c1-restore",
            Step::C1Check => "c1-check",
            Step::C1CheckData => "c1-check-data",
            Step::C1Size => "c1-size",
            Step::C2Backup => "c2-backup",
            Step::C2NoChange => "c2-nochange",
            Step::C3Versions => "c3-size",
            Step::C3Prune => "c3-prune",
            Step::StartSnapshots => "st-snapshots",
            Step::StartNoChange => "st-nochange",
            Step::StartCheck => "st-check",
            Step::Ceiling => "ceiling",
            Step::Remote => "remote",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Step::C1Backup => "C1 first backup",
            Step::C1NoChange => "C1 re-backup, nothing changed",
            Step::C1Changed => "C1 re-backup, 1% of files changed",
            Step::C1Restore => "C1 restore to an empty dir",
            Step::C1Check => "C1 check (structure)",
            Step::C1CheckData => "C1 check, reading all data",
            Step::C1Size => "C1 repository size (after the first backup)",
            Step::C2Backup => "C2 first backup",
            Step::C2NoChange => "C2 re-backup, nothing changed",
            Step::C3Versions => "C3 backups of 8 versions (total)",
            Step::C3Prune => "C3 forget all but 2, prune",
            Step::StartSnapshots => "Start-up: snapshots of a tiny repository",
            Step::StartNoChange => "Start-up: tiny re-backup, nothing changed",
            Step::StartCheck => "Start-up: check of a tiny repository",
            Step::Ceiling => "the ceiling: each primitive on one core, on C1's bytes",
            Step::Remote => "C1 through S3 on Garage: first backup, no change, restore, requests",
        }
    }

    fn group(self) -> &'static str {
        &self.id()[..2]
    }
}

pub struct Options {
    pub runs: usize,
    pub size_mib: u64,
    pub steps: Vec<Step>,
    pub skip: Vec<Kind>,
    pub quick: bool,
    /// Prepare the corpora, then stop.
    pub prepare: bool,
    pub out: PathBuf,
    /// A cairn binary to time instead of this tree's release build.
    pub cairn: Option<PathBuf>,
}

fn parse(args: &[String]) -> Result<Option<Options>> {
    let mut opts = Options {
        runs: 3,
        size_mib: 1024,
        steps: Step::ALL.to_vec(),
        skip: Vec::new(),
        quick: false,
        prepare: false,
        out: crate::root().join("BENCHMARKS.md"),
        cairn: None,
    };
    let mut it = args.iter();
    let list = |v: Option<&String>, what: &str| -> Result<Vec<String>> {
        Ok(v.ok_or(format!("{what} needs a comma-separated list"))?
            .split(',')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect())
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--runs" => {
                opts.runs = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&n| n > 0)
                    .ok_or("--runs needs a number above 0")?
            }
            "--size-mib" => {
                opts.size_mib = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&n| n > 0)
                    .ok_or("--size-mib needs a number above 0")?
            }
            "--steps" => {
                let mut steps = Vec::new();
                for name in list(it.next(), "--steps")? {
                    let matched: Vec<Step> = Step::ALL
                        .into_iter()
                        .filter(|s| s.id() == name || s.group() == name)
                        .collect();
                    if matched.is_empty() {
                        return Err(format!(
                            "unknown step {name}; steps are c1, c2, c3, st or one of {}",
                            Step::ALL.map(Step::id).join(", ")
                        ));
                    }
                    steps.extend(matched);
                }
                steps.sort();
                steps.dedup();
                opts.steps = steps;
            }
            "--skip" => {
                for name in list(it.next(), "--skip")? {
                    match Kind::from_name(&name).filter(|k| *k != Kind::Cairn) {
                        Some(k) => opts.skip.push(k),
                        None => {
                            return Err(format!(
                                "cannot skip {name}: the tools are restic, borg and rustic"
                            ))
                        }
                    }
                }
            }
            "--quick" => opts.quick = true,
            "--prepare" => opts.prepare = true,
            "--out" => opts.out = PathBuf::from(it.next().ok_or("--out needs a file")?),
            "--cairn" => {
                let bin = PathBuf::from(it.next().ok_or("--cairn needs a binary")?);
                if !bin.is_file() {
                    return Err(format!("--cairn {}: no such file", bin.display()));
                }
                opts.cairn = Some(bin)
            }
            "--help" | "-h" => {
                println!("{HELP}");
                for s in Step::ALL {
                    println!("  {:<15}  {}", s.id(), s.label());
                }
                return Ok(None);
            }
            other => {
                return Err(format!(
                    "unknown option {other}; see cargo xtask bench --help"
                ))
            }
        }
    }
    Ok(Some(opts))
}

/// One timed command: wall seconds, CPU seconds (user + system) and peak RSS in KiB.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    pub wall: f64,
    pub cpu: f64,
    pub rss_kib: u64,
}

/// Where the output of each tool's commands goes, and where GNU time writes.
struct Logs {
    dir: PathBuf,
}

impl Logs {
    fn file(&self, tool: &Tool) -> PathBuf {
        self.dir.join(format!("{}.log", tool.name()))
    }

    /// Runs `cmd` with its output appended to the tool's log; with `time`, under GNU time.
    fn run(&self, tool: &Tool, mut cmd: Command, time: bool) -> Result<Option<Sample>> {
        let log_path = self.file(tool);
        let mut log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
        let shown = format!("{cmd:?}");
        use std::io::Write;
        let _ = writeln!(log, "\n$ {shown}");
        let time_out = self.dir.join("time.out");
        let mut wrapped = if time {
            let _ = fs::remove_file(&time_out);
            let mut w = Command::new("/usr/bin/time");
            w.arg("-o")
                .arg(&time_out)
                .arg("-f")
                .arg("%e %U %S %M")
                .arg(cmd.get_program())
                .args(cmd.get_args());
            for (k, v) in cmd.get_envs() {
                match v {
                    Some(v) => w.env(k, v),
                    None => w.env_remove(k),
                };
            }
            if let Some(d) = cmd.get_current_dir() {
                w.current_dir(d);
            }
            w
        } else {
            std::mem::replace(&mut cmd, Command::new("true"))
        };
        let err_log = log.try_clone().map_err(|e| e.to_string())?;
        let status = wrapped
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err_log))
            .status()
            .map_err(|e| format!("cannot run {shown}: {e}"))?;
        if !status.success() {
            let tail = fs::read_to_string(&log_path)
                .map(|t| {
                    let lines: Vec<&str> = t.lines().collect();
                    lines[lines.len().saturating_sub(15)..].join("\n")
                })
                .unwrap_or_default();
            if status.code().is_some() && status.code() == tool.warning_code() {
                eprintln!(
                    "bench: warning: {} exited with {status} (incomplete, with warnings); see {}",
                    tool.name(),
                    log_path.display()
                );
            } else {
                return Err(format!(
                    "{shown} failed: {status}; the end of {}:\n{tail}",
                    log_path.display()
                ));
            }
        }
        if !time {
            return Ok(None);
        }
        let text = fs::read_to_string(&time_out).map_err(|e| e.to_string())?;
        // GNU time writes "Command exited with non-zero status N" first when it did.
        let last = text.lines().last().unwrap_or("");
        let f: Vec<f64> = last
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        if f.len() < 4 {
            return Err(format!("cannot parse GNU time output {text:?}"));
        }
        Ok(Some(Sample {
            wall: f[0],
            cpu: f[1] + f[2],
            rss_kib: f[3] as u64,
        }))
    }
}

/// One tool's repository for one group of steps.
struct Session<'a> {
    tool: &'a Tool,
    repo: PathBuf,
    logs: &'a Logs,
    backups: usize,
}

impl<'a> Session<'a> {
    fn new(tool: &'a Tool, repo: PathBuf, logs: &'a Logs) -> Result<Session<'a>> {
        let _ = fs::remove_dir_all(&repo);
        let mut session = Session {
            tool,
            repo,
            logs,
            backups: 0,
        };
        session.untimed(Action::Init)?;
        Ok(session)
    }

    fn untimed(&mut self, action: Action) -> Result<()> {
        for cmd in self.tool.commands(&self.repo, &action) {
            self.logs.run(self.tool, cmd, false)?;
        }
        Ok(())
    }

    /// Runs `action` timed: the commands' wall and CPU times add up, the peak RSS is the
    /// largest. Dirty pages of earlier steps are written out first, so that no step pays for
    /// another's writes.
    fn timed(&mut self, action: Action) -> Result<Sample> {
        crate::run(&mut Command::new("sync"))?;
        let mut total = Sample::default();
        for cmd in self.tool.commands(&self.repo, &action) {
            let s = self.logs.run(self.tool, cmd, true)?.expect("timed");
            total.wall += s.wall;
            total.cpu += s.cpu;
            total.rss_kib = total.rss_kib.max(s.rss_kib);
        }
        Ok(total)
    }

    fn backup(&mut self, source: &Path) -> Result<Sample> {
        self.backups += 1;
        let n = self.backups;
        self.timed(Action::Backup { source, n })
    }

    fn size(&self) -> u64 {
        corpus::du(&self.repo)
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.repo);
    }
}

/// The corpora a bench uses, as prepared.
pub struct Corpora {
    pub c1: Option<Corpus>,
    pub c1_changed_files: usize,
    pub c2: Option<Corpus>,
    /// C3's first version.
    pub c3: Option<Corpus>,
    /// C3's last version: files and bytes.
    pub c3_last: (u64, u64),
    /// What each C3 release after the first changed.
    pub c3_releases: Vec<corpus::Release>,
    /// The tree of the start-up steps.
    pub tiny: Option<Corpus>,
}

/// Medians and everything else the report needs.
pub struct Results {
    pub opts: Options,
    pub tools: Vec<(Kind, String)>,
    pub skipped: Vec<(Kind, String)>,
    pub corpora: Corpora,
    pub timings: BTreeMap<Step, BTreeMap<Kind, Vec<Sample>>>,
    /// Repository sizes: after C1's first backup, after C3's 8 versions, after C3's prune.
    pub sizes: BTreeMap<&'static str, BTreeMap<Kind, Vec<u64>>>,
    /// The ceiling bench's numbers, or why it failed; `None` when it did not run.
    pub ceiling: Option<Result<Ceiling>>,
}

pub const SIZE_C1: &str = "C1, after the first backup";
pub const SIZE_C3: &str = "C3, after 8 versions";
pub const SIZE_C3_PRUNED: &str = "C3, after forgetting all but 2 and pruning";

/// Runs the bench; returns its results for the report (`None` when it only printed help or
/// prepared the corpora).
pub fn bench(args: &[String]) -> Result<Option<Results>> {
    let Some(opts) = parse(args)? else {
        return Ok(None);
    };
    let root = crate::root();
    let work = root.join("target/bench");
    fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let wants = |group: &str| opts.steps.iter().any(|s| s.group() == group);
    let on = |s: Step| opts.steps.contains(&s);
    // The ceiling is measured once per invocation, on C1, whenever C1 is.
    let wants_ceiling = wants("c1") || on(Step::Ceiling);
    let wants_c1 = wants_ceiling || on(Step::Remote);
    let (c2_limits, c3_bytes, suffix) = if opts.quick {
        (
            Limits {
                bytes: 48 << 20,
                files: 3_000,
                max_file: 1 << 20,
            },
            12u64 << 20,
            "-quick",
        )
    } else {
        (
            Limits {
                bytes: 1_000_000_000,
                files: 100_000,
                max_file: 1 << 20,
            },
            96u64 << 20,
            "",
        )
    };
    let mut corpora = Corpora {
        c1: None,
        c1_changed_files: 0,
        c2: None,
        c3: None,
        c3_last: (0, 0),
        c3_releases: Vec::new(),
        tiny: None,
    };
    if wants("st") {
        corpora.tiny = Some(corpus::tiny(&work.join("src/tiny"))?);
    }
    let mut c1_cached = None;
    // C1 is wanted by its steps, by the ceiling and by the remote steps.
    if wants_c1 {
        let name = if opts.size_mib == 1024 {
            "c1".to_string()
        } else {
            format!("c1-{}mib", opts.size_mib)
        };
        eprintln!("bench: preparing corpus C1 ({} MiB)", opts.size_mib);
        let cached = corpus::cached_copy(
            &work.join(&name),
            &[PathBuf::from("/usr/lib"), PathBuf::from("/usr/share")],
            &Limits {
                bytes: opts.size_mib << 20,
                files: u64::MAX,
                max_file: u64::MAX,
            },
        )?;
        // The steps work on a copy; the ceiling only reads, so the cached corpus does for it.
        let copy = if wants("c1") {
            corpus::working_copy(&cached, &work.join("src/c1"))?
        } else {
            Corpus {
                path: cached.path.clone(),
                bytes: cached.bytes,
                files: cached.files,
            }
        };
        print_corpus("C1", &cached);
        corpora.c1 = Some(copy);
        c1_cached = Some(cached);
    }
    if wants("c2") {
        eprintln!("bench: preparing corpus C2");
        let c2 = corpus::cached_copy(
            &work.join(format!("c2{suffix}")),
            &corpus::c2_sources(),
            &c2_limits,
        )?;
        print_corpus("C2", &c2);
        corpora.c2 = Some(c2);
    }
    if wants("c3") {
        eprintln!("bench: preparing corpus C3 (version 1)");
        let base = corpus::cached_copy(
            &work.join(format!("c3-base{suffix}")),
            &corpus::c3_sources(),
            &Limits {
                bytes: c3_bytes,
                files: u64::MAX,
                max_file: 4 << 20,
            },
        )?;
        print_corpus("C3 version 1", &base);
        corpora.c3 = Some(base);
    }
    if opts.prepare {
        eprintln!("bench: corpora ready; --prepare stops here");
        return Ok(None);
    }
    let cairn = match &opts.cairn {
        Some(bin) => bin.clone(),
        None => crate::build_release()?,
    };
    let mut apt_updated = false;
    if !Path::new("/usr/bin/time").is_file() {
        eprintln!("bench: /usr/bin/time is missing; installing the Debian package time");
        tools::apt_install("time", &mut apt_updated)?;
    }
    let mut tools = vec![Tool::new(Kind::Cairn, cairn, &work)];
    let mut skipped = Vec::new();
    for kind in Kind::ANCHORS {
        if opts.skip.contains(&kind) {
            eprintln!("bench: leaving {} out, as --skip asks", kind.name());
            skipped.push((kind, "left out with --skip".to_string()));
            continue;
        }
        let bin = tools::find_or_install(kind, &mut apt_updated)?;
        tools.push(Tool::new(kind, bin, &work));
    }

    for c in [&corpora.c1, &corpora.c2, &corpora.c3]
        .into_iter()
        .flatten()
    {
        corpus::warm(&c.path);
    }

    let logs = Logs {
        dir: work.join("logs"),
    };
    let _ = fs::remove_dir_all(&logs.dir);
    fs::create_dir_all(&logs.dir).map_err(|e| e.to_string())?;
    let repo = work.join("repo");
    // Restored trees are kept until the end: ext4 does not reuse an inode for a minute after
    // it was freed, and a restore right after another's deletion spends seconds of system time
    // searching past them, which would make the tools' times depend on their order.
    let restores = work.join("restores");
    let _ = fs::remove_dir_all(&restores);
    let c3_work = work.join("src/c3");
    let mut timings: BTreeMap<Step, BTreeMap<Kind, Vec<Sample>>> = BTreeMap::new();
    let mut sizes: BTreeMap<&'static str, BTreeMap<Kind, Vec<u64>>> = BTreeMap::new();
    // Before the rounds, while nothing else runs: the bench times one core at a time.
    let ceiling = c1_cached
        .as_ref()
        .filter(|_| wants_ceiling)
        .map(|c1| measure_ceiling(c1, &logs.dir));
    for round in 1..=opts.runs {
        for tool in &tools {
            let mut record = |step: Step, sample: Sample| {
                eprintln!(
                    "bench:   {:<40} {:>8.2} s {:>8.1} CPU-s {:>6} MiB",
                    step.label(),
                    sample.wall,
                    sample.cpu,
                    sample.rss_kib / 1024
                );
                timings
                    .entry(step)
                    .or_default()
                    .entry(tool.kind)
                    .or_default()
                    .push(sample);
            };
            let mut size = |what: &'static str, bytes: u64| {
                eprintln!(
                    "bench:   repository size, {what}: {:.1} MB",
                    bytes as f64 / 1e6
                );
                sizes
                    .entry(what)
                    .or_default()
                    .entry(tool.kind)
                    .or_default()
                    .push(bytes);
            };
            eprintln!("bench: round {round} of {}, {}", opts.runs, tool.name());
            let _ = fs::remove_dir_all(&tool.cache);

            if let (Some(c1), Some(cached), true) = (&corpora.c1, &c1_cached, wants("c1")) {
                let mut s = Session::new(tool, repo.clone(), &logs)?;
                let first = s.backup(&c1.path)?;
                if on(Step::C1Backup) {
                    record(Step::C1Backup, first);
                }
                if on(Step::C1Size) {
                    size(SIZE_C1, s.size());
                }
                if on(Step::C1NoChange) {
                    record(Step::C1NoChange, s.backup(&c1.path)?);
                }
                if on(Step::C1Changed) {
                    corpus::set_pristine(c1, cached, false)?;
                    let (undo, n) = corpus::change_files(&c1.path, 0xC1)?;
                    corpora.c1_changed_files = n;
                    let sample = s.backup(&c1.path);
                    undo.undo()?;
                    corpus::set_pristine(c1, cached, true)?;
                    record(Step::C1Changed, sample?);
                }
                if on(Step::C1Restore) {
                    let restore = restores.join(format!("{}-{round}", tool.name()));
                    fs::create_dir_all(&restore).map_err(|e| e.to_string())?;
                    let n = s.backups;
                    let sample = s.timed(Action::Restore {
                        target: &restore,
                        n,
                    })?;
                    let restored = corpus::du(&restore);
                    if restored < c1.bytes {
                        return Err(format!(
                            "{} restored {restored} bytes of C1's {}",
                            tool.name(),
                            c1.bytes
                        ));
                    }
                    record(Step::C1Restore, sample);
                }
                if on(Step::C1Check) {
                    record(Step::C1Check, s.timed(Action::Check)?);
                }
                if on(Step::C1CheckData) {
                    record(Step::C1CheckData, s.timed(Action::CheckData)?);
                }
            }

            if let Some(c2) = &corpora.c2 {
                let mut s = Session::new(tool, repo.clone(), &logs)?;
                let first = s.backup(&c2.path)?;
                if on(Step::C2Backup) {
                    record(Step::C2Backup, first);
                }
                if on(Step::C2NoChange) {
                    record(Step::C2NoChange, s.backup(&c2.path)?);
                }
            }

            if let Some(base) = &corpora.c3 {
                let mut s = Session::new(tool, repo.clone(), &logs)?;
                let _ = fs::remove_dir_all(&c3_work);
                corpus::copy_tree(&base.path, &c3_work)?;
                let mut total = Sample::default();
                let mut releases = Vec::new();
                for version in 1..=8 {
                    if version > 1 {
                        releases.push(corpus::next_release(&c3_work, version)?);
                    }
                    let sample = s.backup(&c3_work)?;
                    total.wall += sample.wall;
                    total.cpu += sample.cpu;
                    total.rss_kib = total.rss_kib.max(sample.rss_kib);
                }
                corpora.c3_releases = releases;
                if on(Step::C3Versions) {
                    record(Step::C3Versions, total);
                    size(SIZE_C3, s.size());
                }
                if on(Step::C3Prune) {
                    record(Step::C3Prune, s.timed(Action::ForgetPrune)?);
                    size(SIZE_C3_PRUNED, s.size());
                }
                let files = corpus::list_files(&c3_work);
                corpora.c3_last = (files.len() as u64, corpus::du(&c3_work));
            }

            if let Some(tiny) = &corpora.tiny {
                let mut s = Session::new(tool, repo.clone(), &logs)?;
                s.backup(&tiny.path)?;
                if on(Step::StartSnapshots) {
                    record(Step::StartSnapshots, s.timed(Action::Snapshots)?);
                }
                if on(Step::StartNoChange) {
                    record(Step::StartNoChange, s.backup(&tiny.path)?);
                }
                if on(Step::StartCheck) {
                    record(Step::StartCheck, s.timed(Action::Check)?);
                }
            }
        }
    }
    let _ = fs::remove_dir_all(&c3_work);
    let _ = fs::remove_dir_all(&restores);
    // A failure there (no Garage, a tool failing) is said, and the local rounds still count.
    if let (Some(c1), true) = (&c1_cached, on(Step::Remote)) {
        if let Err(e) = measure_remote(c1, &opts.skip, &opts.out) {
            eprintln!("bench: the remote steps failed: {e}");
        }
    }

    let results = Results {
        tools: tools.iter().map(|t| (t.kind, t.version())).collect(),
        skipped,
        corpora,
        timings,
        sizes,
        ceiling,
        opts,
    };
    Ok(Some(results))
}

/// Runs the remote bench on C1, after the local rounds so that the two never share the cores.
fn measure_remote(c1: &Corpus, skip: &[Kind], out: &Path) -> Result<()> {
    eprintln!("bench: the remote steps (cargo bench --bench remote)");
    let skip: Vec<&str> = skip
        .iter()
        .filter(|k| matches!(k, Kind::Restic | Kind::Rustic))
        .map(|k| k.name())
        .collect();
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["bench", "--bench", "remote", "--", "--corpus"])
        .arg(&c1.path)
        .arg("--out")
        .arg(out)
        .current_dir(crate::root());
    if !skip.is_empty() {
        cmd.args(["--skip", &skip.join(",")]);
    }
    crate::run(&mut cmd)
}

/// Runs the ceiling bench on C1; a failure is reported, not fatal.
fn measure_ceiling(c1: &Corpus, logs: &Path) -> Result<Ceiling> {
    let log = logs.join("ceiling.log");
    eprintln!(
        "bench: measuring the ceiling on {} MiB of C1 (cargo bench --bench ceiling; output in {})",
        ceiling::SAMPLE_MIB,
        log.display()
    );
    let mut result = ceiling::run(&c1.path, &log);
    if let Ok(c) = &mut result {
        let scratch = logs.with_file_name("floor-copy");
        match ceiling::floors(&c1.path, &scratch) {
            Ok(f) => c.floors = Some(f),
            Err(e) => eprintln!("bench: warning: the file-system floors were not measured: {e}"),
        }
    }
    match &result {
        Ok(c) => eprintln!(
            "bench:   ceiling on {} cores: backup {:.0} MB/s, restore {:.0} MB/s, check --read-data {:.0} MB/s",
            c.cores, c.backup.mbps, c.restore.mbps, c.check_read_data.mbps
        ),
        Err(e) => eprintln!("bench: warning: the ceiling was not measured: {e}"),
    }
    result
}

fn print_corpus(name: &str, c: &Corpus) {
    eprintln!(
        "bench: {name} is {} files, {:.2} GB, in {}",
        c.files,
        c.bytes as f64 / 1e9,
        c.path.display()
    );
}
