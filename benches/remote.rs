//! `cargo bench --bench remote`: cairn, restic and rustic backing up to one Garage server on
//! loopback (S3), each tool into a bucket of its own, through a proxy that counts what goes over
//! the wire. Per tool: init (untimed), a first backup of C1, a backup with nothing changed, and
//! a restore of the latest snapshot into an empty directory, each timed (wall clock, and peak
//! RSS under GNU time when /usr/bin/time is there) with the requests it made (by method) and
//! the bytes it sent and received. The restored tree is compared with the source (paths, sizes
//! and a hash of every file's content). Then a first backup into a bucket of its own through a
//! proxy whose uplink is limited to `SLOW_UPLINK`: a producer ten times faster than its link
//! shows whether memory stays bounded (its peak RSS beside the fast run's).
//!
//! Options: `--corpus DIR` (default `$CAIRN_BENCH_C1`, else `target/bench/c1` as
//! `cargo xtask bench` prepares it; without it, a small generated corpus and a warning),
//! `--skip restic,rustic`, `--out FILE` (the report's section is written there instead of
//! BENCHMARKS.md), `--no-report` (print only).
//!
//! Invariant: every tool sees the same server, the same corpus and a new cache directory; the
//! proxy's counts are taken at the start and the end of each timed step, and the tools run one
//! after another, so each step's counts are that step's alone. Nothing here asserts a time.

use cairn_testkit::servers::{self, Server};
use cairn_testkit::{FaultProxy, Faults, Traffic};
use std::collections::BTreeMap;
use std::fs;
use std::hash::Hasher;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

const PASSWORD: &str = "cairn-bench-password";
const SECTION: &str = "## Remote: S3 on Garage (loopback)";
/// Bytes per second of the slow link: about a tenth of what cairn produces from C1.
const SLOW_UPLINK: u64 = 16_000_000;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    Cairn,
    Restic,
    Rustic,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Cairn, Kind::Restic, Kind::Rustic];

    fn name(self) -> &'static str {
        match self {
            Kind::Cairn => "cairn",
            Kind::Restic => "restic",
            Kind::Rustic => "rustic",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Step {
    Backup,
    NoChange,
    Restore,
    SlowBackup,
}

impl Step {
    const ALL: [Step; 4] = [
        Step::Backup,
        Step::NoChange,
        Step::Restore,
        Step::SlowBackup,
    ];

    /// The bucket a tool's step works in: the slow backup has one of its own.
    fn bucket(self, kind: Kind) -> String {
        match self {
            Step::SlowBackup => format!("{}-slow", kind.name()),
            _ => kind.name().to_string(),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Step::Backup => "first backup",
            Step::NoChange => "backup, nothing changed",
            Step::Restore => "restore to an empty dir",
            Step::SlowBackup => "first backup, 16 MB/s uplink",
        }
    }
}

/// One timed step: its wall time, its peak RSS (when GNU time could tell) and what crossed the
/// proxy.
struct Measured {
    secs: f64,
    rss_kib: Option<u64>,
    traffic: Traffic,
}

/// Requests by kind, as far as the request line tells them apart.
#[derive(Default)]
struct Requests {
    get: u64,
    list: u64,
    head: u64,
    put: u64,
    delete: u64,
    /// POST (multipart uploads, multi-object deletes) and anything else.
    other: u64,
    /// GETs of objects under `data/`: packs.
    data_get: u64,
    /// PUTs of objects under `data/`.
    data_put: u64,
}

impl Requests {
    fn of(traffic: &Traffic, bucket: &str) -> Requests {
        let mut r = Requests::default();
        for (method, target) in &traffic.requests {
            // Path style: `/bucket/key?query`, or `/bucket?query` for the bucket itself.
            let path = target.split('?').next().unwrap_or("");
            let key = path
                .strip_prefix('/')
                .and_then(|p| p.strip_prefix(bucket))
                .unwrap_or(path)
                .trim_start_matches('/');
            let data = key.starts_with("data/");
            match method.as_str() {
                "GET" if key.is_empty() || target.contains("list-type=") => r.list += 1,
                "GET" => {
                    r.get += 1;
                    r.data_get += u64::from(data);
                }
                "HEAD" => r.head += 1,
                "PUT" => {
                    r.put += 1;
                    r.data_put += u64::from(data);
                }
                "DELETE" => r.delete += 1,
                _ => r.other += 1,
            }
        }
        r
    }

    fn total(&self) -> u64 {
        self.get + self.list + self.head + self.put + self.delete + self.other
    }
}

struct Tool {
    kind: Kind,
    bin: PathBuf,
    version: String,
}

impl Tool {
    /// The tool with its repository (`bucket` on `server`, reached through `via`), password and
    /// cache; the caller adds the action's arguments.
    fn command(&self, server: &Server, via: &FaultProxy, bucket: &str, work: &Path) -> Command {
        let (location, env) = server.via(via.addr());
        // `s3:http://ADDR/BUCKET` names the server's first bucket; each tool has its own.
        let base = location
            .rsplit_once('/')
            .map_or(location.as_str(), |(b, _)| b);
        let location = format!("{base}/{bucket}");
        let mut cmd = Command::new(&self.bin);
        server.apply_env(&mut cmd);
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let cache = work.join(format!("cache-{bucket}"));
        match self.kind {
            Kind::Cairn => {
                cmd.args(["-r", &location])
                    .env("CAIRN_PASSWORD", PASSWORD)
                    .env("CAIRN_CACHE_DIR", &cache);
                for k in [
                    "CAIRN_REPO",
                    "CAIRN_PASSWORD_FILE",
                    "CAIRN_PASSWORD_COMMAND",
                ] {
                    cmd.env_remove(k);
                }
            }
            Kind::Restic => {
                cmd.args(["-r", &location, "-o"])
                    .arg(format!("s3.region={}", servers::GARAGE_REGION))
                    .env("RESTIC_PASSWORD", PASSWORD)
                    .env("RESTIC_CACHE_DIR", &cache);
                for k in [
                    "RESTIC_REPOSITORY",
                    "RESTIC_REPOSITORY_FILE",
                    "RESTIC_PASSWORD_FILE",
                    "RESTIC_PASSWORD_COMMAND",
                    "RESTIC_COMPRESSION",
                    "RESTIC_PACK_SIZE",
                ] {
                    cmd.env_remove(k);
                }
            }
            Kind::Rustic => {
                // rustic reaches S3 through OpenDAL, whose options only a profile file can
                // give; `-P` takes an absolute path to one.
                let endpoint = base.strip_prefix("s3:").unwrap_or(base);
                let var = |name: &str| {
                    env.iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                };
                let profile = work.join(format!("rustic-{bucket}.toml"));
                let text = format!(
                    "[repository]\nrepository = \"opendal:s3\"\n\n[repository.options]\n\
                     endpoint = \"{endpoint}\"\nbucket = \"{bucket}\"\nroot = \"/\"\n\
                     region = \"{}\"\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\n",
                    servers::GARAGE_REGION,
                    var("AWS_ACCESS_KEY_ID"),
                    var("AWS_SECRET_ACCESS_KEY")
                );
                fs::write(&profile, text).expect("write rustic's profile");
                cmd.arg("-P")
                    .arg(&profile)
                    .env("RUSTIC_PASSWORD", PASSWORD)
                    .env("RUSTIC_CACHE_DIR", &cache)
                    // No config of the user's may add to the profile.
                    .env("XDG_CONFIG_HOME", work.join("no-config"));
                for k in [
                    "RUSTIC_REPOSITORY",
                    "RUSTIC_PASSWORD_FILE",
                    "RUSTIC_PASSWORD_COMMAND",
                    "RUSTIC_USE_PROFILE",
                ] {
                    cmd.env_remove(k);
                }
            }
        }
        cmd
    }

    /// The arguments after the repository for each action.
    fn init(&self) -> Vec<String> {
        vec!["init".into()]
    }

    fn backup(&self, source: &Path) -> Vec<String> {
        vec!["backup".into(), path_str(source)]
    }

    fn restore(&self, target: &Path) -> Vec<String> {
        let mut argv = vec!["restore".into(), "latest".into()];
        if self.kind != Kind::Rustic {
            argv.push("--target".into());
        }
        argv.push(path_str(target));
        argv
    }
}

fn path_str(p: &Path) -> String {
    p.to_str().expect("bench paths are UTF-8").to_string()
}

struct Args {
    corpus: Option<PathBuf>,
    skip: Vec<Kind>,
    out: Option<PathBuf>,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        corpus: std::env::var_os("CAIRN_BENCH_C1").map(PathBuf::from),
        skip: Vec::new(),
        out: Some(root().join("BENCHMARKS.md")),
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--corpus" => args.corpus = Some(it.next().ok_or("--corpus needs a dir")?.into()),
            "--out" => args.out = Some(it.next().ok_or("--out needs a file")?.into()),
            "--no-report" => args.out = None,
            "--skip" => {
                for name in it.next().ok_or("--skip needs a list")?.split(',') {
                    match Kind::ALL.into_iter().find(|k| k.name() == name) {
                        Some(Kind::Cairn) | None => {
                            return Err(format!("cannot skip {name}: restic or rustic"))
                        }
                        Some(k) => args.skip.push(k),
                    }
                }
            }
            // `cargo bench` passes `--bench` to every bench target.
            "--bench" => {}
            other => return Err(format!("unknown argument {other}; see benches/remote.rs")),
        }
    }
    Ok(args)
}

fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("remote bench: {e}");
        std::process::exit(2)
    });
    let work = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
        .join("bench-remote");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).expect("create the bench's work dir");
    let logs = work.join("logs");
    fs::create_dir_all(&logs).expect("create the log dir");

    let load = fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into());
    let (corpus, corpus_note) = corpus(&args, &work);
    eprintln!("remote bench: corpus {}", corpus_note);
    let manifest = manifest_of(&corpus);

    let mut tools = vec![Tool {
        kind: Kind::Cairn,
        bin: PathBuf::from(env!("CARGO_BIN_EXE_cairn")),
        version: String::new(),
    }];
    for kind in [Kind::Restic, Kind::Rustic] {
        if args.skip.contains(&kind) {
            continue;
        }
        match find_binary(kind) {
            Some(bin) => tools.push(Tool {
                kind,
                bin,
                version: String::new(),
            }),
            None => eprintln!(
                "remote bench: warning: {} not found, left out ({})",
                kind.name(),
                match kind {
                    Kind::Restic => "apt-get install restic",
                    _ => "cargo install rustic-rs --locked, or set CAIRN_RUSTIC",
                }
            ),
        }
    }
    for tool in &mut tools {
        tool.version = version(&tool.bin, tool.kind);
    }

    let slow_buckets: Vec<String> = tools
        .iter()
        .map(|t| format!("{}-slow", t.kind.name()))
        .collect();
    let buckets: Vec<&str> = tools
        .iter()
        .map(|t| t.kind.name())
        .chain(slow_buckets.iter().map(String::as_str))
        .collect();
    eprintln!("remote bench: starting garage with buckets {buckets:?}");
    let server = servers::s3_garage_buckets(&buckets);
    let proxy = FaultProxy::start(server.addr, Faults::default());
    let slow = FaultProxy::start(
        server.addr,
        Faults {
            upload_rate: SLOW_UPLINK,
            ..Faults::default()
        },
    );

    let mut results: BTreeMap<(Step, Kind), Measured> = BTreeMap::new();
    let mut failures = Vec::new();
    for tool in &tools {
        eprintln!("remote bench: {}", tool.version);
        let log = logs.join(format!("{}.log", tool.kind.name()));
        let bucket = tool.kind.name();
        let run = |argv: Vec<String>| -> Result<Measured, String> {
            let mut cmd = tool.command(&server, &proxy, bucket, &work);
            cmd.args(&argv);
            run_logged(&mut cmd, &log, &proxy)
        };
        let outcome = (|| -> Result<(), String> {
            run(tool.init())?;
            let first = run(tool.backup(&corpus))?;
            print_step(tool.kind, Step::Backup, &first, bucket);
            results.insert((Step::Backup, tool.kind), first);
            let again = run(tool.backup(&corpus))?;
            print_step(tool.kind, Step::NoChange, &again, bucket);
            results.insert((Step::NoChange, tool.kind), again);
            let target = work.join(format!("restore-{}", tool.kind.name()));
            fs::create_dir_all(&target).map_err(|e| e.to_string())?;
            let restored = run(tool.restore(&target))?;
            print_step(tool.kind, Step::Restore, &restored, bucket);
            results.insert((Step::Restore, tool.kind), restored);
            let tree = restored_root(&target, &corpus);
            let got = manifest_of(&tree);
            compare(&manifest, &got)
                .map_err(|e| format!("the tree restored in {} differs: {e}", tree.display()))?;
            eprintln!("remote bench:   restored tree equals the source");
            let _ = fs::remove_dir_all(&target);

            let slow_bucket = Step::SlowBackup.bucket(tool.kind);
            let on_slow = |argv: Vec<String>| -> Result<Measured, String> {
                let mut cmd = tool.command(&server, &slow, &slow_bucket, &work);
                cmd.args(&argv);
                run_logged(&mut cmd, &log, &slow)
            };
            on_slow(tool.init())?;
            let first = on_slow(tool.backup(&corpus))?;
            print_step(tool.kind, Step::SlowBackup, &first, &slow_bucket);
            results.insert((Step::SlowBackup, tool.kind), first);
            Ok(())
        })();
        if let Err(e) = outcome {
            eprintln!(
                "remote bench: {} failed: {e} (log: {})",
                tool.kind.name(),
                log.display()
            );
            failures.push(format!("{}: {e}", tool.kind.name()));
        }
    }
    drop(proxy);
    drop(slow);
    drop(server);

    let report = report(&tools, &results, &corpus_note, &load, &failures);
    println!("\n{report}");
    if let Some(out) = &args.out {
        match write_section(out, &report) {
            Ok(()) => eprintln!("remote bench: wrote the section to {}", out.display()),
            Err(e) => eprintln!("remote bench: cannot write {}: {e}", out.display()),
        }
    }
    if !failures.is_empty() {
        std::process::exit(1);
    }
}

/// The corpus to back up, and a line that says what it is.
fn corpus(args: &Args, work: &Path) -> (PathBuf, String) {
    let c1 = args
        .corpus
        .clone()
        .unwrap_or_else(|| root().join("target/bench/c1"));
    if c1.is_dir() {
        let (files, bytes) = count(&c1);
        let note = format!(
            "C1: {:.1} MB in {files} files ({})",
            bytes as f64 / 1e6,
            c1.display()
        );
        return (c1, note);
    }
    eprintln!(
        "remote bench: warning: {} is missing (`cargo xtask bench --prepare --steps c1-backup` \
         makes C1); backing up a small generated corpus instead",
        c1.display()
    );
    let dir = work.join("generated");
    generate(&dir);
    let (files, bytes) = count(&dir);
    let note = format!(
        "a generated corpus of {:.1} MB in {files} files (C1 was missing)",
        bytes as f64 / 1e6
    );
    (dir, note)
}

/// 64 MiB in 256 files: half of them random bytes, half repetitive text, from a fixed seed.
fn generate(dir: &Path) {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for i in 0..256u64 {
        let sub = dir.join(format!("d{}", i % 16));
        fs::create_dir_all(&sub).expect("create a corpus dir");
        let len = 64 << 10 | (next() % (448 << 10)) as usize;
        let mut bytes = Vec::with_capacity(len);
        while bytes.len() < len {
            if i % 2 == 0 {
                bytes.extend_from_slice(&next().to_le_bytes());
            } else {
                bytes.extend_from_slice(format!("line {} of file {i}\n", next() % 1000).as_bytes());
            }
        }
        bytes.truncate(len);
        fs::write(sub.join(format!("f{i}")), bytes).expect("write a corpus file");
    }
}

/// rustic: `$CAIRN_RUSTIC`, `~/.cache/cairn-tools/rustic/bin/rustic`, `~/.cargo/bin/rustic`,
/// or PATH; restic: PATH.
fn find_binary(kind: Kind) -> Option<PathBuf> {
    let name = kind.name();
    let mut candidates = Vec::new();
    if kind == Kind::Rustic {
        if let Some(p) = std::env::var_os("CAIRN_RUSTIC") {
            candidates.push(PathBuf::from(p));
        }
        if let Some(home) = std::env::var_os("HOME") {
            let home = PathBuf::from(home);
            candidates.push(home.join(".cache/cairn-tools/rustic/bin/rustic"));
            candidates.push(home.join(".cargo/bin/rustic"));
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join(name)));
    }
    candidates.into_iter().find(|p| p.is_file())
}

fn version(bin: &Path, kind: Kind) -> String {
    let arg = if kind == Kind::Restic {
        "version"
    } else {
        "--version"
    };
    Command::new(bin)
        .arg(arg)
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| format!("{} (version unknown)", kind.name()))
}

/// Runs `cmd` with its output appended to `log`, after `sync`; its wall time and the traffic
/// the proxy saw while it ran.
fn run_logged(cmd: &mut Command, log: &Path, proxy: &FaultProxy) -> Result<Measured, String> {
    let _ = Command::new("sync").status();
    let mut file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| e.to_string())?;
    let shown = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    );
    use std::io::Write;
    let _ = writeln!(file, "\n$ {shown}");
    let err = file.try_clone().map_err(|e| e.to_string())?;
    let rss_file = log.with_extension("rss");
    let _ = fs::remove_file(&rss_file);
    let mut timed = gnu_time(cmd, &rss_file);
    let cmd = timed.as_mut().unwrap_or(cmd);
    let _ = proxy.take_traffic();
    let started = Instant::now();
    let status = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::from(file))
        .stderr(Stdio::from(err))
        .status()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    let secs = started.elapsed().as_secs_f64();
    let traffic = proxy.take_traffic();
    let mut requests = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log.with_extension("requests"))
        .map_err(|e| e.to_string())?;
    let _ = writeln!(requests, "\n$ {shown}");
    for (method, target) in &traffic.requests {
        let _ = writeln!(requests, "{method} {target}");
    }
    if !status.success() {
        return Err(format!("`{shown}` failed: {status}"));
    }
    // GNU time writes `%M` (peak RSS in KiB) as the last line of its output file.
    let rss_kib = fs::read_to_string(&rss_file)
        .ok()
        .and_then(|t| t.lines().last().and_then(|l| l.trim().parse().ok()));
    Ok(Measured {
        secs,
        rss_kib,
        traffic,
    })
}

/// `cmd` run under GNU time, which writes its peak RSS to `out`; None without /usr/bin/time.
fn gnu_time(cmd: &Command, out: &Path) -> Option<Command> {
    let time = Path::new("/usr/bin/time");
    if !time.is_file() {
        return None;
    }
    let mut timed = Command::new(time);
    timed
        .args(["-f", "%M", "-o"])
        .arg(out)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        timed.current_dir(dir);
    }
    Some(timed)
}

fn rss(m: &Measured) -> String {
    m.rss_kib
        .map_or("-".into(), |k| format!("{:.0} MiB", k as f64 / 1024.0))
}

fn print_step(kind: Kind, step: Step, m: &Measured, bucket: &str) {
    let r = Requests::of(&m.traffic, bucket);
    eprintln!(
        "remote bench:   {:<6} {:<24} {:>7.2} s {:>8} {:>6} requests (GET {}, LIST {}, HEAD {}, \
         PUT {}, DELETE {}, other {}; pack GETs {}) sent {} received {}",
        kind.name(),
        step.label(),
        m.secs,
        rss(m),
        r.total(),
        r.get,
        r.list,
        r.head,
        r.put,
        r.delete,
        r.other,
        r.data_get,
        mb(m.traffic.sent),
        mb(m.traffic.received)
    );
}

fn mb(bytes: u64) -> String {
    if bytes >= 10_000_000 {
        format!("{:.0} MB", bytes as f64 / 1e6)
    } else if bytes >= 1_000_000 {
        format!("{:.1} MB", bytes as f64 / 1e6)
    } else {
        format!("{:.1} kB", bytes as f64 / 1e3)
    }
}

/// Regular files under a tree: path relative to it, size, and a hash of the content.
type Manifest = BTreeMap<PathBuf, (u64, u64)>;

fn manifest_of(dir: &Path) -> Manifest {
    fn walk(root: &Path, dir: &Path, out: &mut Manifest) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for entry in rd.flatten() {
            let path = entry.path();
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                walk(root, &path, out);
            } else if ft.is_file() {
                let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
                out.insert(rel, hash_file(&path));
            }
        }
    }
    let mut out = Manifest::new();
    walk(dir, dir, &mut out);
    out
}

/// The file's length and a SipHash of its bytes (fixed keys: equal content, equal hash).
fn hash_file(path: &Path) -> (u64, u64) {
    let mut hasher = std::hash::DefaultHasher::new();
    let mut len = 0u64;
    if let Ok(mut f) = fs::File::open(path) {
        let mut buf = vec![0u8; 1 << 20];
        while let Ok(n) = f.read(&mut buf) {
            if n == 0 {
                break;
            }
            hasher.write(&buf[..n]);
            len += n as u64;
        }
    }
    (len, hasher.finish())
}

fn count(dir: &Path) -> (u64, u64) {
    let m = manifest_of(dir);
    (m.len() as u64, m.values().map(|(len, _)| len).sum())
}

/// Where a tool put the source's files under `target`: restic and cairn restore the source's
/// absolute path below the target, rustic the source's contents.
fn restored_root(target: &Path, source: &Path) -> PathBuf {
    let nested = target.join(source.strip_prefix("/").unwrap_or(source));
    if nested.is_dir() {
        nested
    } else {
        target.to_path_buf()
    }
}

fn compare(want: &Manifest, got: &Manifest) -> Result<(), String> {
    for (path, (len, hash)) in want {
        match got.get(path) {
            None => return Err(format!("{} is missing", path.display())),
            Some((l, _)) if l != len => {
                return Err(format!("{} has {l} bytes, not {len}", path.display()))
            }
            Some((_, h)) if h != hash => {
                return Err(format!("{} has other content", path.display()))
            }
            Some(_) => {}
        }
    }
    if let Some(extra) = got.keys().find(|p| !want.contains_key(*p)) {
        return Err(format!("{} is not in the source", extra.display()));
    }
    Ok(())
}

/// The section for BENCHMARKS.md (also printed): how it was made, one row per step and tool,
/// and cairn's ratios to the others.
fn report(
    tools: &[Tool],
    results: &BTreeMap<(Step, Kind), Measured>,
    corpus_note: &str,
    load: &str,
    failures: &[String],
) -> String {
    let mut s = String::new();
    let date = Command::new("date")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    s.push_str(&format!("{SECTION}\n\n"));
    s.push_str(&format!(
        "Written by `cargo bench --bench remote` on {date}, {cores} cores, 1-minute load \
         average {load} before it started (other work on the machine shows in wall times).\n\n"
    ));
    s.push_str(&format!(
        "Tools: {}. Corpus: {corpus_note}.\n\n",
        tools
            .iter()
            .map(|t| t.version.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    ));
    s.push_str(
        "Method: one Garage node (single replica, no fsync) on loopback; each tool gets a bucket \
         of its own and a new cache directory, and talks to Garage through a proxy that counts \
         the bytes each way and each HTTP request line. cairn and restic use `s3:http://...`, \
         rustic OpenDAL's S3 service (`-r opendal:s3`). Each step is one run, wall time, `sync` \
         first; the no-change backup keeps the cache the first backup filled; the restore goes \
         to an empty directory and the restored tree is compared with the source (paths, sizes, \
         content hashes). A LIST is a GET of the bucket itself (`?list-type=2`); a pack GET is a \
         GET of an object under `data/`. Request counts are HTTP requests on the wire, retries \
         included. Peak RSS is GNU time's `%M`. The slow first backup goes to a bucket of its own \
         through a second proxy that lets 16 MB/s up, over all connections together: far less \
         than any tool produces, so what a tool holds while it waits for the link shows in its \
         peak RSS beside its fast first backup's.\n\n",
    );
    s.push_str(
        "| step | tool | wall | peak RSS | requests | GET | LIST | HEAD | PUT | DELETE | other \
         | pack GETs | sent | received |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for step in Step::ALL {
        for tool in tools {
            let Some(m) = results.get(&(step, tool.kind)) else {
                continue;
            };
            let r = Requests::of(&m.traffic, &step.bucket(tool.kind));
            s.push_str(&format!(
                "| {} | {} | {:.2} s | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                step.label(),
                tool.kind.name(),
                m.secs,
                rss(m),
                r.total(),
                r.get,
                r.list,
                r.head,
                r.put,
                r.delete,
                r.other,
                r.data_get,
                mb(m.traffic.sent),
                mb(m.traffic.received)
            ));
        }
    }
    let others: Vec<&Tool> = tools.iter().filter(|t| t.kind != Kind::Cairn).collect();
    if !others.is_empty() {
        s.push_str(
            "\nRatios, cairn / other (below 1 means cairn took less time, made fewer requests, \
             moved fewer bytes):\n\n| step | vs | time | requests | bytes sent | bytes received |\n\
             |---|---|---|---|---|---|\n",
        );
        for step in Step::ALL {
            let Some(c) = results.get(&(step, Kind::Cairn)) else {
                continue;
            };
            let cr = Requests::of(&c.traffic, &step.bucket(Kind::Cairn)).total();
            for other in &others {
                let Some(o) = results.get(&(step, other.kind)) else {
                    continue;
                };
                let or = Requests::of(&o.traffic, &step.bucket(other.kind)).total();
                s.push_str(&format!(
                    "| {} | {} | {} | {} | {} | {} |\n",
                    step.label(),
                    other.kind.name(),
                    ratio(c.secs, o.secs),
                    ratio(cr as f64, or as f64),
                    ratio(c.traffic.sent as f64, o.traffic.sent as f64),
                    ratio(c.traffic.received as f64, o.traffic.received as f64)
                ));
            }
        }
    }
    if let Some(m) = results.get(&(Step::NoChange, Kind::Cairn)) {
        let r = Requests::of(&m.traffic, Kind::Cairn.name());
        s.push_str(&format!(
            "\n**cairn's no-change backup: {} pack GETs, {} pack PUTs ({}), {} requests in all.**\n",
            r.data_get,
            r.data_put,
            if r.data_get == 0 && r.data_put == 0 {
                "target met: no data request"
            } else {
                "target NOT met: a no-change backup should send no data request"
            },
            r.total()
        ));
    }
    for tool in tools {
        let fast = results.get(&(Step::Backup, tool.kind));
        let slow = results.get(&(Step::SlowBackup, tool.kind));
        if let (Some(fast), Some(slow)) = (fast, slow) {
            s.push_str(&format!(
                "\n{}'s peak RSS, first backup: {} on the fast link, {} on the slow one \
                 ({:.1}x the time).\n",
                tool.kind.name(),
                rss(fast),
                rss(slow),
                slow.secs / fast.secs.max(1e-9)
            ));
        }
    }
    for f in failures {
        s.push_str(&format!("\nFailed: {f}\n"));
    }
    s
}

fn ratio(a: f64, b: f64) -> String {
    if b == 0.0 {
        if a == 0.0 {
            "= (both 0)".to_string()
        } else {
            "n/a (other 0)".to_string()
        }
    } else {
        format!("{:.2}x", a / b)
    }
}

/// Replaces the section (from its heading to the next `## ` heading) in `path`, or appends it.
fn write_section(path: &Path, section: &str) -> Result<(), String> {
    let text = fs::read_to_string(path).unwrap_or_default();
    let new = match text.find(SECTION) {
        Some(start) => {
            let after = start + SECTION.len();
            let end = text[after..]
                .find("\n## ")
                .map_or(text.len(), |i| after + i + 1);
            format!("{}{}\n{}", &text[..start], section, &text[end..])
        }
        None => format!(
            "{}\n{}",
            text.trim_end_matches('\n').to_string() + "\n",
            section
        ),
    };
    fs::write(path, new).map_err(|e| e.to_string())
}
