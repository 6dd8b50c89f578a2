//! Helpers shared by the integration tests: a temporary test directory with its own repository,
//! cache and password; running the `cairn` binary; and capturing file trees and repository
//! contents so that they can be compared exactly.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs;
use std::hash::Hasher;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use rand::{RngCore, SeedableRng};
use serde_json::Value;

/// The password every test repository is created with.
pub const PASSWORD: &str = "correct horse battery staple (test)";

/// Every environment variable through which a user's setup could leak into a test.
const CAIRN_VARS: &[&str] = &[
    "CAIRN_REPO",
    "CAIRN_PASSWORD",
    "CAIRN_PASSWORD_FILE",
    "CAIRN_PASSWORD_COMMAND",
    "CAIRN_TO_REPO",
    "CAIRN_TO_PASSWORD",
    "CAIRN_TO_PASSWORD_FILE",
    "CAIRN_TO_PASSWORD_COMMAND",
    "CAIRN_CACHE_DIR",
    "CAIRN_MAX_KDF_MIB",
    "CAIRN_NOW",
    "CAIRN_TEST_CRASH_AFTER",
    "CAIRN_TEST_CLOCK_SHIFT",
    "CAIRN_CONNECTIONS",
    "CAIRN_RETRIES",
    "CAIRN_SFTP_COMMAND",
    "CAIRN_WEBDAV_USER",
    "CAIRN_WEBDAV_PASSWORD",
];

/// A remote location in place of `repo`, what its server needs in the environment, and what
/// must not be inherited (proxies, AWS profiles).
struct RemoteRepo {
    location: String,
    env: Vec<(String, String)>,
    remove: Vec<String>,
}

/// A temporary directory holding a repository (`repo`), a cache (`cache`) and whatever source
/// and restore directories a test makes. Removed when dropped.
pub struct Dir {
    tmp: tempfile::TempDir,
    root: PathBuf,
    repo: PathBuf,
    remote: Option<RemoteRepo>,
}

/// Makes a fresh test directory.
pub fn setup() -> Dir {
    let tmp = tempfile::Builder::new()
        .prefix("cairn-it-")
        .tempdir()
        .expect("create temp dir");
    // Canonical, so that paths recorded in snapshots are the ones the tests compute.
    let root = tmp.path().canonicalize().expect("canonicalize temp dir");
    Dir {
        tmp,
        repo: root.join("repo"),
        root,
        remote: None,
    }
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

impl Dir {
    /// The test directory itself.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// A path inside the test directory.
    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.root.join(p)
    }

    /// The repository `CAIRN_REPO` names: `repo` in the test directory unless changed.
    pub fn repo(&self) -> PathBuf {
        self.repo.clone()
    }

    /// Points `CAIRN_REPO` elsewhere.
    pub fn set_repo(&mut self, repo: impl AsRef<Path>) {
        self.repo = repo.as_ref().to_path_buf();
    }

    /// Points `CAIRN_REPO` at a remote location, with the environment its server needs and
    /// without the variables in `remove`.
    pub fn set_remote(&mut self, location: &str, env: &[(String, String)], remove: &[String]) {
        self.remote = Some(RemoteRepo {
            location: location.to_string(),
            env: env.to_vec(),
            remove: remove.to_vec(),
        });
    }

    pub fn cache(&self) -> PathBuf {
        self.root.join("cache")
    }

    /// `cairn` with no user `CAIRN_*` settings, and this directory's repository, password and
    /// cache; the working directory is the test directory.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn"));
        for v in CAIRN_VARS {
            cmd.env_remove(v);
        }
        cmd.env("CAIRN_REPO", self.repo())
            .env("CAIRN_PASSWORD", PASSWORD)
            .env("CAIRN_CACHE_DIR", self.cache())
            .current_dir(&self.root)
            .stdin(Stdio::null());
        if let Some(remote) = &self.remote {
            for name in &remote.remove {
                cmd.env_remove(name);
            }
            cmd.env("CAIRN_REPO", &remote.location);
            cmd.envs(remote.env.iter().map(|(k, v)| (k, v)));
        }
        cmd
    }

    /// Like `command`, but cairn runs as `uid`:`gid` with no supplementary groups.
    pub fn command_as(&self, uid: u32, gid: u32) -> Command {
        let base = self.command();
        let mut cmd = as_user(uid, gid, base.get_program());
        for (k, v) in base.get_envs() {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        cmd.current_dir(&self.root).stdin(Stdio::null());
        cmd
    }

    /// Runs `cairn ARGS` and returns what happened, whatever it was.
    pub fn run<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.command();
        cmd.args(args);
        Run::of(cmd)
    }

    /// Runs `cairn ARGS` and panics unless it exits 0.
    pub fn ok<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.run(args).success()
    }

    /// `cairn init` with fast key derivation and `extra` arguments.
    pub fn init_with(&self, extra: &[&str]) {
        let mut args = vec!["init", "--kdf-memory", "64", "--kdf-iterations", "1"];
        args.extend_from_slice(extra);
        self.ok(args);
        if self.remote.is_none() {
            assert!(self.repo().join("config").is_file(), "init made no config");
        }
    }

    pub fn init(&self) {
        self.init_with(&[]);
    }

    /// `cairn backup --json ARGS`; panics unless it exits 0. Returns the JSON summary.
    pub fn backup<I, S>(&self, args: I) -> Value
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.backup_run(args).success().json()
    }

    /// `cairn backup --json ARGS`, whatever its outcome.
    pub fn backup_run<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut all: Vec<OsString> = vec!["backup".into(), "--json".into()];
        all.extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self.run(all)
    }

    /// Every snapshot, from `cairn snapshots --json`.
    pub fn snapshots(&self) -> Vec<Value> {
        match self.ok(["snapshots", "--json"]).json() {
            Value::Array(v) => v,
            other => panic!("snapshots --json printed {other}"),
        }
    }

    /// `cairn restore SNAPSHOT --target TARGET`; panics unless it exits 0.
    pub fn restore(&self, snapshot: &str, target: &Path) -> Run {
        self.ok([
            OsStr::new("restore"),
            OsStr::new(snapshot),
            OsStr::new("--target"),
            target.as_os_str(),
        ])
    }

    /// `cairn check --read-data --json`; panics unless it finds the repository sound. Returns
    /// the report (which may carry warnings, such as packs left by an interrupted backup).
    pub fn check(&self) -> Value {
        let report = self.ok(["check", "--read-data", "--json"]).json();
        assert_eq!(
            report["ok"],
            Value::Bool(true),
            "check found problems: {report}"
        );
        assert_eq!(
            report["errors"],
            Value::Array(vec![]),
            "check found problems: {report}"
        );
        report
    }

    /// The paths below `path` in a snapshot, from `cairn ls SNAPSHOT PATH --recursive`.
    pub fn ls_recursive(&self, snapshot: &str, path: &Path) -> BTreeSet<PathBuf> {
        let out = self.ok([
            OsStr::new("ls"),
            OsStr::new(snapshot),
            path.as_os_str(),
            OsStr::new("--recursive"),
        ]);
        out.stdout
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| PathBuf::from(OsStr::from_bytes(l)))
            .collect()
    }
}

/// Where a source path ends up below a restore target: snapshots hold absolute paths.
pub fn restored(target: &Path, source: &Path) -> PathBuf {
    assert!(source.is_absolute(), "{} is not absolute", source.display());
    target.join(source.strip_prefix("/").unwrap())
}

/// The outcome of one `cairn` run.
pub struct Run {
    pub args: Vec<OsString>,
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Run {
    pub fn of(mut cmd: Command) -> Run {
        let args = std::iter::once(cmd.get_program().to_os_string())
            .chain(cmd.get_args().map(OsStr::to_os_string))
            .collect();
        let Output {
            status,
            stdout,
            stderr,
        } = cmd.output().expect("run cairn");
        Run {
            args,
            code: status.code(),
            stdout,
            stderr,
        }
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// Panics (showing everything) unless the exit code is 0.
    pub fn success(self) -> Run {
        assert_eq!(self.code, Some(0), "cairn failed:\n{self:?}");
        self
    }

    /// Panics unless the exit code is `code`.
    pub fn code(self, code: i32) -> Run {
        assert_eq!(self.code, Some(code), "cairn should exit {code}:\n{self:?}");
        self
    }

    /// Panics unless the command failed with a non-zero code (not a signal).
    pub fn failure(self) -> Run {
        assert!(
            matches!(self.code, Some(c) if c != 0),
            "cairn should have failed:\n{self:?}"
        );
        self
    }

    /// The error line `cairn: ...`: panics unless stderr has exactly one such line, at its end
    /// (informational lines such as restore's "restoring snapshot ..." may come before it).
    pub fn error_line(&self) -> String {
        let err = self.stderr();
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        let errors: Vec<&&str> = lines.iter().filter(|l| l.starts_with("cairn: ")).collect();
        assert_eq!(
            errors.len(),
            1,
            "expected one `cairn: ` error line on stderr:\n{self:?}"
        );
        assert_eq!(
            lines.last(),
            errors.first().copied(),
            "the error line should be the last line:\n{self:?}"
        );
        errors[0].to_string()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{self:?}"))
    }
}

impl fmt::Debug for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let args: Vec<_> = self.args.iter().map(|a| a.to_string_lossy()).collect();
        writeln!(f, "command: {}", args.join(" "))?;
        writeln!(f, "exit code: {:?}", self.code)?;
        writeln!(f, "stdout:\n{}", self.stdout())?;
        write!(f, "stderr:\n{}", self.stderr())
    }
}

/// A u64 field of a JSON object; panics if it is missing.
pub fn num(v: &Value, key: &str) -> u64 {
    v.get(key)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no number {key:?} in {v}"))
}

/// A string field of a JSON object, or `None` for null/missing.
pub fn string(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

// ---------------------------------------------------------------------------------------------
// Content

/// `len` bytes of reproducible random data.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut v = vec![0u8; len];
    rng.fill_bytes(&mut v);
    v
}

/// A fast, non-cryptographic digest of a byte stream (enough to compare trees).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Digest {
    pub len: u64,
    pub hash: u64,
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes, hash {:016x}", self.len, self.hash)
    }
}

pub fn digest_file(path: &Path) -> Digest {
    let mut f = fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut h = std::hash::DefaultHasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        if n == 0 {
            break;
        }
        h.write(&buf[..n]);
        len += n as u64;
    }
    Digest {
        len,
        hash: h.finish(),
    }
}

// ---------------------------------------------------------------------------------------------
// Trees

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    CharDevice,
    BlockDevice,
    Socket,
}

/// What the tests compare of one file system entry.
#[derive(Clone, Debug)]
pub struct Entry {
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_ns: i128,
    pub size: u64,
    pub content: Option<Digest>,
    pub target: Option<OsString>,
    pub rdev: u64,
    pub xattrs: BTreeMap<OsString, Vec<u8>>,
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
}

/// A tree: entries by path relative to its root (the root itself is "").
pub type Tree = BTreeMap<PathBuf, Entry>;

/// Every extended attribute of `path` (not following a symlink).
pub fn xattrs(path: &Path) -> BTreeMap<OsString, Vec<u8>> {
    let mut out = BTreeMap::new();
    let need = match rustix::fs::llistxattr_query(path) {
        Ok(n) => n,
        Err(rustix::io::Errno::NOTSUP) => return out,
        Err(e) => panic!("llistxattr {}: {e}", path.display()),
    };
    let mut list = vec![0u8; need];
    let n = rustix::fs::llistxattr(path, &mut list[..]).unwrap();
    for name in list[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name = OsStr::from_bytes(name);
        let len = rustix::fs::lgetxattr_query(path, name).unwrap();
        let mut value = vec![0u8; len];
        let n = rustix::fs::lgetxattr(path, name, &mut value[..]).unwrap();
        value.truncate(n);
        out.insert(name.to_os_string(), value);
    }
    out
}

pub fn entry(path: &Path) -> Entry {
    let m = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()));
    let t = m.file_type();
    let kind = if t.is_dir() {
        Kind::Dir
    } else if t.is_symlink() {
        Kind::Symlink
    } else if t.is_fifo() {
        Kind::Fifo
    } else if t.is_char_device() {
        Kind::CharDevice
    } else if t.is_block_device() {
        Kind::BlockDevice
    } else if t.is_socket() {
        Kind::Socket
    } else {
        Kind::File
    };
    Entry {
        kind,
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        size: if matches!(kind, Kind::File | Kind::Symlink) {
            m.size()
        } else {
            0
        },
        content: (kind == Kind::File).then(|| digest_file(path)),
        target: (kind == Kind::Symlink).then(|| fs::read_link(path).unwrap().into_os_string()),
        rdev: if matches!(kind, Kind::CharDevice | Kind::BlockDevice) {
            m.rdev()
        } else {
            0
        },
        xattrs: xattrs(path),
        dev: m.dev(),
        ino: m.ino(),
        nlink: m.nlink(),
    }
}

/// Captures the tree at `root` (which is included, as "").
pub fn scan(root: &Path) -> Tree {
    fn walk(root: &Path, rel: &Path, out: &mut Tree) {
        let path = root.join(rel);
        let e = entry(&path);
        let is_dir = e.kind == Kind::Dir;
        out.insert(rel.to_path_buf(), e);
        if is_dir {
            let mut names: Vec<OsString> = fs::read_dir(&path)
                .unwrap_or_else(|e| panic!("read_dir {}: {e}", path.display()))
                .map(|d| d.unwrap().file_name())
                .collect();
            names.sort();
            for n in names {
                walk(root, &rel.join(n), out);
            }
        }
    }
    let mut out = Tree::new();
    walk(root, Path::new(""), &mut out);
    out
}

/// Groups of paths of regular files that share an inode, for files with more than one link.
pub fn hardlink_groups(tree: &Tree) -> BTreeSet<BTreeSet<PathBuf>> {
    let mut by_inode: BTreeMap<(u64, u64), BTreeSet<PathBuf>> = BTreeMap::new();
    for (p, e) in tree {
        if e.kind == Kind::File && e.nlink > 1 {
            by_inode
                .entry((e.dev, e.ino))
                .or_default()
                .insert(p.clone());
        }
    }
    by_inode.into_values().filter(|g| g.len() > 1).collect()
}

/// What to compare besides names, types, content and targets.
#[derive(Clone, Copy)]
pub struct Compare {
    pub mode: bool,
    pub mtime: bool,
    /// Also compare the mtime of the root directory.
    pub root_mtime: bool,
    pub owner: bool,
    pub xattrs: bool,
    pub hardlinks: bool,
}

impl Compare {
    /// Everything this process can expect to be restored (owners only as root).
    pub fn exact() -> Compare {
        Compare {
            mode: true,
            mtime: true,
            root_mtime: true,
            owner: is_root(),
            xattrs: true,
            hardlinks: true,
        }
    }
}

/// The differences between two trees, one line each.
pub fn diff_trees(expected: &Tree, actual: &Tree, how: Compare) -> Vec<String> {
    let mut out = Vec::new();
    let show = |p: &Path| format!("{:?}", p.as_os_str());
    for p in expected.keys().filter(|p| !actual.contains_key(*p)) {
        out.push(format!("missing: {}", show(p)));
    }
    for p in actual.keys().filter(|p| !expected.contains_key(*p)) {
        out.push(format!("unexpected: {}", show(p)));
    }
    for (p, e) in expected {
        let Some(a) = actual.get(p) else { continue };
        let mut field = |what: &str, exp: String, act: String| {
            if exp != act {
                out.push(format!("{}: {what} is {act}, expected {exp}", show(p)));
            }
        };
        field("type", format!("{:?}", e.kind), format!("{:?}", a.kind));
        if e.kind != a.kind {
            continue;
        }
        if how.mode {
            field("mode", format!("{:o}", e.mode), format!("{:o}", a.mode));
        }
        if how.mtime && (how.root_mtime || !p.as_os_str().is_empty()) {
            field("mtime (ns)", e.mtime_ns.to_string(), a.mtime_ns.to_string());
        }
        if how.owner {
            field(
                "uid:gid",
                format!("{}:{}", e.uid, e.gid),
                format!("{}:{}", a.uid, a.gid),
            );
        }
        field("size", e.size.to_string(), a.size.to_string());
        field(
            "content",
            format!("{:?}", e.content),
            format!("{:?}", a.content),
        );
        field(
            "symlink target",
            format!("{:?}", e.target),
            format!("{:?}", a.target),
        );
        field("device number", e.rdev.to_string(), a.rdev.to_string());
        if how.xattrs {
            field(
                "xattrs",
                format!("{:?}", e.xattrs),
                format!("{:?}", a.xattrs),
            );
        }
    }
    if how.hardlinks {
        let (e, a) = (hardlink_groups(expected), hardlink_groups(actual));
        if e != a {
            out.push(format!("hard-link groups are {a:?}, expected {e:?}"));
        }
    }
    out
}

/// Panics, listing the differences, unless the trees are the same.
#[track_caller]
pub fn assert_same_tree(expected: &Tree, actual: &Tree, how: Compare) {
    let diffs = diff_trees(expected, actual, how);
    if !diffs.is_empty() {
        let shown: Vec<_> = diffs.iter().take(40).cloned().collect();
        panic!(
            "trees differ in {} ways:\n  {}",
            diffs.len(),
            shown.join("\n  ")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Repository state

/// Every entry below `dir` (directories included) with its type, mode, and content digest, to
/// show that a command changed nothing.
pub fn fingerprint(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    if !dir.exists() {
        return out;
    }
    for (p, e) in scan(dir) {
        let what = match e.kind {
            Kind::File => format!("file {:o} {:?}", e.mode, e.content.unwrap()),
            Kind::Dir => format!("dir {:o}", e.mode),
            other => format!("{other:?} {:o} {:?}", e.mode, e.target),
        };
        out.insert(p, what);
    }
    out
}

/// Panics, listing the differences, unless two fingerprints are the same.
#[track_caller]
pub fn assert_unchanged(
    before: &BTreeMap<PathBuf, String>,
    after: &BTreeMap<PathBuf, String>,
    what: &str,
) {
    if before == after {
        return;
    }
    let mut diffs = Vec::new();
    for (p, b) in before {
        match after.get(p) {
            None => diffs.push(format!("removed: {}", p.display())),
            Some(a) if a != b => diffs.push(format!("changed: {} ({b} -> {a})", p.display())),
            _ => {}
        }
    }
    for p in after.keys().filter(|p| !before.contains_key(*p)) {
        diffs.push(format!("added: {}", p.display()));
    }
    panic!("{what} changed:\n  {}", diffs.join("\n  "));
}

/// Every regular file below `dir`, recursively.
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    scan(dir)
        .into_iter()
        .filter(|(_, e)| e.kind == Kind::File)
        .map(|(p, _)| dir.join(p))
        .collect()
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// Building trees

pub fn write(path: impl AsRef<Path>, content: impl AsRef<[u8]>) {
    let path = path.as_ref();
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

pub fn mkdirs(path: impl AsRef<Path>) {
    fs::create_dir_all(path.as_ref())
        .unwrap_or_else(|e| panic!("mkdir {}: {e}", path.as_ref().display()));
}

pub fn chmod(path: impl AsRef<Path>, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let path = path.as_ref();
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// Sets the mtime (and atime) of `path` to `ns` nanoseconds since the epoch, without following a
/// symlink.
pub fn set_mtime(path: impl AsRef<Path>, ns: i64) {
    set_mtime_parts(
        path,
        ns.div_euclid(1_000_000_000),
        ns.rem_euclid(1_000_000_000),
    );
}

/// Sets the mtime (and atime) of `path` to `secs` seconds and `nsec` nanoseconds since the epoch,
/// without following a symlink; for times that nanoseconds in an i64 cannot hold.
pub fn set_mtime_parts(path: impl AsRef<Path>, secs: i64, nsec: i64) {
    use rustix::fs::{AtFlags, Timespec, Timestamps, CWD};
    let path = path.as_ref();
    let ts = Timespec {
        tv_sec: secs,
        tv_nsec: nsec as _,
    };
    let times = Timestamps {
        last_access: ts,
        last_modification: ts,
    };
    rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW)
        .unwrap_or_else(|e| panic!("utimensat {}: {e}", path.display()));
}

/// The mtimes of every directory below (and including) `root`, so they can be put back after
/// the directories' contents were changed.
pub fn dir_mtimes(root: &Path) -> Vec<(PathBuf, i64)> {
    scan(root)
        .into_iter()
        .filter(|(_, e)| e.kind == Kind::Dir)
        .map(|(p, e)| (root.join(p), e.mtime_ns as i64))
        .collect()
}

/// A file name made of arbitrary bytes.
pub fn name(bytes: &[u8]) -> &OsStr {
    OsStr::from_bytes(bytes)
}

/// Whether `program` is found on `PATH`.
pub fn have_program(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

/// A command running `program` as `uid`:`gid` with no supplementary groups: through `setpriv`
/// when it is installed, else through the standard library's `uid`/`gid` (which also drops
/// supplementary groups when run as root).
pub fn as_user(uid: u32, gid: u32, program: impl AsRef<OsStr>) -> Command {
    if have_program("setpriv") {
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={uid}"))
            .arg(format!("--regid={gid}"))
            .arg("--clear-groups")
            .arg("--")
            .arg(program);
        c
    } else {
        use std::os::unix::process::CommandExt;
        let mut c = Command::new(program);
        c.uid(uid).gid(gid);
        c
    }
}

/// Changes the owner of `root` and everything below it (not following symlinks).
pub fn chown_tree(root: &Path, uid: u32, gid: u32) {
    for p in scan(root).keys() {
        std::os::unix::fs::lchown(root.join(p), Some(uid), Some(gid)).unwrap();
    }
}

/// A mounted file system, unmounted (lazily if need be) when dropped.
pub struct Mount {
    dir: PathBuf,
}

impl Mount {
    /// Takes charge of unmounting `dir`.
    pub fn new(dir: &Path) -> Mount {
        Mount {
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let (ok, err) = sh("umount", &[self.dir.as_os_str()]);
        if !ok {
            eprintln!(
                "umount {} failed ({err}); detaching it lazily",
                self.dir.display()
            );
            let (ok, err) = sh("umount", &[OsStr::new("-l"), self.dir.as_os_str()]);
            if !ok {
                eprintln!("umount -l {} failed too: {err}", self.dir.display());
            }
        }
    }
}

/// Mounts a tmpfs of `size` (as `mount` takes it: `3m`) at `dir`, or says why it cannot.
pub fn mount_tmpfs(dir: &Path, size: &str) -> Result<Mount, String> {
    mkdirs(dir);
    let opts = format!("size={size}");
    let args = [
        OsStr::new("-t"),
        OsStr::new("tmpfs"),
        OsStr::new("-o"),
        OsStr::new(&opts),
        OsStr::new("tmpfs"),
        dir.as_os_str(),
    ];
    match sh("mount", &args) {
        (true, _) => Ok(Mount::new(dir)),
        (false, err) => Err(err),
    }
}

/// Runs an external program, returning whether it succeeded and its stderr.
pub fn sh(program: &str, args: &[&OsStr]) -> (bool, String) {
    match Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
    {
        Ok(o) => (
            o.status.success(),
            String::from_utf8_lossy(&o.stderr).trim().to_string(),
        ),
        Err(e) => (false, format!("cannot run {program}: {e}")),
    }
}

/// Arguments of mixed types (strings, paths) as one list.
pub fn args(list: &[&dyn AsRef<OsStr>]) -> Vec<OsString> {
    list.iter().map(|a| a.as_ref().to_os_string()).collect()
}

/// The id of the snapshot a `backup --json` summary reports.
pub fn id(summary: &Value) -> String {
    string(summary, "snapshot_id").unwrap_or_else(|| panic!("no snapshot id in {summary}"))
}

/// The first 8 hex digits, as cairn shows ids.
pub fn short(id: &str) -> &str {
    &id[..8]
}

/// Replaces directory `to` with a copy of `from`, modes and times included.
pub fn copy_dir(from: &Path, to: &Path) {
    if to.exists() {
        fs::remove_dir_all(to).unwrap();
    }
    let (ok, err) = sh("cp", &[OsStr::new("-a"), from.as_os_str(), to.as_os_str()]);
    assert!(ok, "cp -a {} {}: {err}", from.display(), to.display());
}

/// Restores `snapshot` into a fresh target and panics unless it holds exactly `tree` at `src`.
#[track_caller]
pub fn assert_restores(t: &Dir, snapshot: &str, src: &Path, tree: &Tree) {
    let target = t.join(format!("restore-{}", short(snapshot)));
    if target.exists() {
        fs::remove_dir_all(&target).unwrap();
    }
    t.restore(snapshot, &target);
    let diffs = diff_trees(tree, &scan(&restored(&target, src)), Compare::exact());
    assert!(
        diffs.is_empty(),
        "snapshot {} does not restore its tree:\n  {}",
        short(snapshot),
        diffs.join("\n  ")
    );
    fs::remove_dir_all(&target).unwrap();
}

/// Runs `cairn ARGS` (one shell line) on a pseudo-terminal (`script`), and returns everything it
/// showed there; panics unless it exits 0.
pub fn on_terminal(t: &Dir, args: &str) -> String {
    let base = t.command();
    let mut cmd = std::process::Command::new("script");
    for (k, v) in base.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let line = format!("{} {args}", env!("CARGO_BIN_EXE_cairn"));
    let out = cmd
        .args(["-qec", &line, "/dev/null"])
        .current_dir(t.path())
        .output()
        .expect("run script (bsdutils)");
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{shown}");
    shown
}
