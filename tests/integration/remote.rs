//! Remote repositories against real servers the tests start on loopback (Garage for S3,
//! OpenSSH for SFTP, rclone for WebDAV and REST, pyftpdlib for FTP): each goes through init,
//! backup, incremental backup, byte-for-byte restore, forget and prune, `check --read-data`, a
//! backup killed mid-upload and then continued, and a repository copied from a local directory.
//! Under each runs the same contract of the storage backend itself (create-only, exclusive where
//! promised, short reads refused, listings with sizes).
//!
//! A server that cannot start fails its test and says why; none is skipped.

use crate::serve::Serve;
use crate::util::*;
use cairn_backend::remote::{Remote, RemoteOptions, RetryPolicy};
use cairn_backend::{Backend, BackendErrorKind, FileType, LocalBackend};
use cairn_testkit::servers::{self, GarageCluster, Server};
use cairn_testkit::{FaultProxy, Faults};
use serde_json::Value;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

fn options() -> RemoteOptions {
    RemoteOptions {
        connections: 4,
        retry: RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(200),
        },
    }
}

/// Where a repository is on a server, and the environment a client there needs.
#[derive(Clone)]
struct At {
    location: String,
    env: Vec<(String, String)>,
    remove: Vec<String>,
    /// The directory the server keeps its repositories' files in, where it has one.
    root: Option<PathBuf>,
    /// Whether a killed upload may leave a partial pack under its final name until the next
    /// prune (repo-format.md section 3: `rclone:` with a remote rclone writes in place).
    partial_packs_may_stay: bool,
}

impl From<&Server> for At {
    fn from(server: &Server) -> At {
        At {
            location: server.location.clone(),
            env: server.env.clone(),
            remove: server.env_remove.clone(),
            root: server.root.clone(),
            partial_packs_may_stay: false,
        }
    }
}

impl At {
    fn dir(&self) -> Dir {
        let mut t = setup();
        t.set_remote(&self.location, &self.env, &self.remove);
        t
    }
}

/// The backend a server's location names, with the server's environment in place of this
/// process's.
fn connect(server: impl Into<At>, create: bool) -> Box<dyn Backend> {
    let server: At = server.into();
    let env = |k: &str| {
        server
            .env
            .iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.clone())
    };
    let remote = Remote::parse_with(&server.location, &env)
        .expect("a remote scheme")
        .expect("a valid location");
    if create {
        remote.create(&options())
    } else {
        remote.connect(&options())
    }
    .unwrap_or_else(|e| panic!("{}: {e}", server.location))
}

/// What every backend promises (repo-format.md, "Storage assumptions"). Objects are named by
/// the SHA-256 of their bytes, as cairn names them and as REST servers check.
fn contract(backend: &dyn Backend) {
    let bytes: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let name = cairn_crypto::file_id(&bytes).to_hex();
    backend.create(FileType::Pack, &name, &bytes).unwrap();
    assert_eq!(backend.read(FileType::Pack, &name).unwrap(), bytes);
    assert_eq!(
        backend
            .read_range(FileType::Pack, &name, 99_000, 1000)
            .unwrap(),
        &bytes[99_000..]
    );
    // Create-only: the name is taken, whatever the bytes.
    let again = backend.create(FileType::Pack, &name, b"other").unwrap_err();
    assert_eq!(again.kind, BackendErrorKind::AlreadyExists, "{again}");
    assert_eq!(backend.read(FileType::Pack, &name).unwrap(), bytes);
    // A range past the end is an error, never a short read.
    assert!(backend
        .read_range(FileType::Pack, &name, 99_500, 1000)
        .is_err());
    let listed = backend.list(FileType::Pack).unwrap();
    assert!(
        listed.iter().any(|e| e.name == name && e.size == 100_000),
        "{listed:?}"
    );
    let too_small = backend.read_at_most(FileType::Pack, &name, 10).unwrap_err();
    assert_eq!(too_small.kind, BackendErrorKind::TooLarge);
    let snapshot = cairn_crypto::file_id(b"s").to_hex();
    backend.create(FileType::Snapshot, &snapshot, b"s").unwrap();
    assert_eq!(backend.list(FileType::Snapshot).unwrap().len(), 1);
    backend.remove(FileType::Snapshot, &snapshot).unwrap();
    assert!(backend.list(FileType::Snapshot).unwrap().is_empty());
    let gone = backend.read(FileType::Snapshot, &snapshot).unwrap_err();
    assert_eq!(gone.kind, BackendErrorKind::NotFound, "{gone}");
    backend.remove(FileType::Pack, &name).unwrap();
    assert!(backend.list(FileType::Pack).unwrap().is_empty());
}

/// Files of several sizes: a few packs' worth at `--pack-size 1`.
fn fill(src: &Path, seed: u64) {
    write(src.join("a/big"), random_bytes(seed, 3 << 20));
    write(src.join("a/small"), format!("small {seed}"));
    write(src.join("b/medium"), random_bytes(seed + 1, 700 << 10));
    write(src.join("b/empty"), "");
}

fn assert_restores(t: &Dir, snapshot: &str, src: &Path, into: &str) {
    let out = t.join(into);
    t.restore(snapshot, &out);
    assert_same_tree(&scan(src), &scan(&restored(&out, src)), Compare::exact());
}

/// Every step a user takes with a repository, on one server.
fn round_trip(server: impl Into<At>) {
    let at: At = server.into();
    contract(connect(at.clone(), true).as_ref());
    user_steps(at);
}

/// `round_trip` from the command line only.
fn user_steps(at: At) {
    let t = at.dir();
    t.init_with(&["--pack-size", "1"]);
    let again = t.run(["init", "--kdf-memory", "64", "--kdf-iterations", "1"]);
    assert_ne!(again.code, Some(0), "a second init succeeded");
    assert!(again.error_line().contains("already exists"), "{again:?}");

    let src = t.join("src");
    fill(&src, 1);
    let first = t.backup([&src]);
    assert!(num(&first, "raw_bytes_added") > 3 << 20, "{first}");

    write(src.join("a/small"), "changed");
    write(src.join("c/new"), random_bytes(9, 1 << 20));
    let second = t.backup([&src]);
    assert_eq!(num(&second, "files_unchanged"), 3, "{second}");
    assert!(num(&second, "raw_bytes_added") < 2 << 20, "{second}");
    assert_restores(&t, "latest", &src, "out1");

    t.ok(["forget", &id(&first)]);
    t.ok(["prune", "--max-unused", "0"]);
    t.check();
    assert_restores(&t, &id(&second), &src, "out2");

    killed_mid_upload(&t, &at, &src);
    t.check();
    assert_restores(&t, "latest", &src, "out3");

    // With nothing else at work, a prune reclaims whatever the kill left, a pack torn where the
    // remote writes in place included.
    t.ok(["prune"]);
    assert_eq!(
        partial_objects(&at),
        vec![],
        "partial objects after a prune"
    );
    let report = t.check();
    assert_eq!(report["warnings"], Value::Array(vec![]), "{report}");
}

/// The files below `dir` whose names have no dot (no temporary has one), found while a server
/// renames and removes files there: what vanishes meanwhile is left out.
fn final_files_below(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => found.extend(final_files_below(&path)),
            Ok(t) if t.is_file() && !entry.file_name().to_string_lossy().contains('.') => {
                found.push(path)
            }
            _ => {}
        }
    }
    found
}

/// How many packs the repository at `at` holds under their final names: counted in the
/// server's directory where it has one (a listing over FTP is 256 requests), else listed.
fn pack_counter(at: &At) -> impl FnMut() -> usize + '_ {
    let mut backend = None;
    move || match &at.root {
        Some(root) => final_files_below(root)
            .iter()
            .filter(|p| {
                p.parent()
                    .and_then(Path::parent)
                    .is_some_and(|d| d.ends_with("data"))
            })
            .count(),
        None => backend
            .get_or_insert_with(|| connect(at.clone(), false))
            .list(FileType::Pack)
            .unwrap()
            .len(),
    }
}

/// The objects under a final name that are named by their hash (all but `config` and
/// `locks/`) and do not hold the bytes they are named for, as (path or name, length, whether
/// it is a pack). Read in the server's directory where it has one (an FTPS server is trusted
/// only by the cairn process).
fn partial_objects(at: &At) -> Vec<(String, usize, bool)> {
    let objects: Vec<(String, Vec<u8>, bool)> = match &at.root {
        Some(root) => final_files_below(root)
            .into_iter()
            .filter_map(|p| {
                let under = |d: &str| p.components().any(|c| c.as_os_str() == d);
                if !["keys", "data", "index", "snapshots"]
                    .into_iter()
                    .any(under)
                {
                    return None;
                }
                // Gone since it was listed: a server removing what a cut upload left.
                let bytes = std::fs::read(&p).ok()?;
                Some((p.display().to_string(), bytes, under("data")))
            })
            .collect(),
        None => {
            let backend = connect(at.clone(), false);
            [
                FileType::Key,
                FileType::Pack,
                FileType::Index,
                FileType::Snapshot,
            ]
            .into_iter()
            .flat_map(|ft| {
                let entries = backend.list(ft).unwrap();
                let backend = &backend;
                entries.into_iter().map(move |e| {
                    let bytes = backend.read(ft, &e.name).unwrap();
                    (e.name, bytes, ft == FileType::Pack)
                })
            })
            .collect()
        }
    };
    assert!(!objects.is_empty());
    objects
        .into_iter()
        .filter(|(path, bytes, _)| !path.ends_with(&cairn_crypto::file_id(bytes).to_hex()))
        .map(|(path, bytes, pack)| (path, bytes.len(), pack))
        .collect()
}

/// Nothing partial is left under a final name, once the server has had a moment to remove
/// what the cut connection left (rclone's REST server writes in place and removes the file
/// when the upload breaks). Where partial packs may stay, they are packs and nothing else.
fn assert_whole_objects(at: &At) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut partial = partial_objects(at);
    while !partial.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        partial = partial_objects(at);
    }
    if at.partial_packs_may_stay {
        partial.retain(|(_, _, pack)| !pack);
    }
    assert_eq!(partial, vec![], "objects that do not hold their own bytes");
}

/// A backup killed while its packs are on the wire leaves nothing partial under a final name
/// and nothing that `check` refuses, and the next backup completes it. The kill comes as soon
/// as the first of its dozen packs is stored, one connection at a time, so the backup is still
/// uploading: its death by SIGKILL proves it.
fn killed_mid_upload(t: &Dir, at: &At, src: &Path) {
    write(src.join("d/large"), random_bytes(77, 12 << 20));
    let mut packs = pack_counter(at);
    let before = packs();
    let mut cmd = t.command();
    cmd.args([
        "backup".as_ref(),
        "--connections".as_ref(),
        "1".as_ref(),
        src.as_os_str(),
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while packs() == before {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the backup ended ({status}) before it stored a pack");
        }
        assert!(Instant::now() < deadline, "no pack stored in 120 s");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "not killed mid-upload: {status}");
    assert_whole_objects(at);
    let report = t.ok(["check", "--json"]).json();
    assert_eq!(report["errors"], Value::Array(vec![]), "{report}");
    let done = t.backup([src]);
    assert!(num(&done, "total_files") >= 6, "{done}");
}

/// A repository made in a local directory, copied object by object to the server, opens and
/// checks clean there: the format is the same everywhere.
fn copied_from_local(server: impl Into<At>) {
    let server: At = server.into();
    let t = setup();
    t.init_with(&["--pack-size", "1"]);
    let src = t.join("src");
    fill(&src, 5);
    t.backup([&src]);
    let local = LocalBackend::open(&t.repo());
    let remote = connect(server.clone(), true);
    for ft in [
        FileType::Config,
        FileType::Key,
        FileType::Pack,
        FileType::Index,
        FileType::Snapshot,
    ] {
        for entry in local.list(ft).unwrap() {
            let bytes = local.read(ft, &entry.name).unwrap();
            remote.create(ft, &entry.name, &bytes).unwrap();
        }
    }
    let r = server.dir();
    r.check();
    assert_restores(&r, "latest", &src, "out");
}

#[test]
fn remote_rest_via_rclone() {
    round_trip(&servers::rest_rclone("repo"));
    copied_from_local(&servers::rest_rclone("copy"));
}

/// `rclone:` runs `rclone serve restic --stdio` and speaks REST over its pipes: here on a local
/// directory, named as an on-the-fly remote (`:local:DIR`) and as a plain path, with an empty
/// configuration so the user's remotes play no part.
#[test]
fn remote_rclone_stdio() {
    let host = setup();
    let served = host.join("served");
    std::fs::create_dir_all(&served).unwrap();
    let config = host.join("rclone.conf");
    write(&config, "");
    let at = |location: String| At {
        location,
        env: vec![("RCLONE_CONFIG".to_string(), config.display().to_string())],
        remove: Vec::new(),
        root: Some(served.clone()),
        partial_packs_may_stay: true,
    };
    round_trip(at(format!("rclone::local:{}/repo", served.display())));
    copied_from_local(at(format!("rclone:{}/copy", served.display())));
}

#[test]
fn remote_webdav_via_rclone() {
    round_trip(&servers::webdav_rclone("repo"));
    copied_from_local(&servers::webdav_rclone("copy"));
}

/// Clients racing to create one name over WebDAV, each with bytes of its own. rclone's server
/// refuses a MOVE with `Overwrite: F` onto a name that exists (RFC 4918 section 10.6), so the
/// backend states exclusive creates, exactly one client wins, every other is told the name
/// exists, the object is the winner's bytes whole, and no temporary stays. Guards against the
/// MOVE with `Overwrite: T` that upstream OpenDAL sends, with which several clients could win
/// and the last move's bytes stayed.
#[test]
fn remote_webdav_racing_creates_exactly_one_wins() {
    const LEN: usize = 300_000;
    let server = servers::webdav_rclone("race");
    drop(connect(&server, true));
    // One backend each, as separate processes have: each probes the server on its own.
    let clients: Vec<Box<dyn Backend>> = (0..8).map(|_| connect(&server, false)).collect();
    for client in &clients {
        assert!(client.guarantees().exclusive_create);
    }
    let start = std::sync::Barrier::new(clients.len());
    let outcomes: Vec<_> = std::thread::scope(|s| {
        let tries: Vec<_> = clients
            .iter()
            .enumerate()
            .map(|(i, client)| {
                let start = &start;
                s.spawn(move || {
                    let mine = random_bytes(i as u64, LEN);
                    start.wait();
                    client.create(FileType::Lock, "verdict", &mine)
                })
            })
            .collect();
        tries.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let winners: Vec<usize> = (0..outcomes.len())
        .filter(|i| outcomes[*i].is_ok())
        .collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    for e in outcomes.iter().filter_map(|o| o.as_ref().err()) {
        assert_eq!(e.kind, BackendErrorKind::AlreadyExists, "{e}");
    }
    let stored = clients[0].read(FileType::Lock, "verdict").unwrap();
    assert!(
        stored == random_bytes(winners[0] as u64, LEN),
        "not the winner's bytes"
    );
    let late = clients[1]
        .create(FileType::Lock, "verdict", b"late")
        .unwrap_err();
    assert_eq!(late.kind, BackendErrorKind::AlreadyExists, "{late}");
    assert!(late.to_string().contains("exists already"), "{late}");
    let below = files_below(&server.root.clone().unwrap().join("race"));
    let dotted: Vec<_> = below
        .iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().contains('.'))
        })
        .collect();
    assert!(dotted.is_empty(), "temporaries left: {dotted:?}");
}

#[test]
fn remote_ftp() {
    round_trip(&servers::ftp("repo"));
    copied_from_local(&servers::ftp("copy"));
}

/// FTPS from the command line (the contract is FTP's): the server's certificate is trusted only
/// through the cairn process's `SSL_CERT_FILE`, so a TLS failure shows here.
#[test]
fn remote_ftps() {
    let server = servers::ftps("repo");
    user_steps(At::from(&server));
    let untrusting = At {
        env: vec![],
        ..At::from(&server)
    };
    let run = untrusting.dir().run(["snapshots"]);
    assert_ne!(run.code, Some(0), "{run:?}");
    assert!(run.error_line().contains("certificate"), "{run:?}");
    assert!(!run.stderr().contains("retrying"), "{run:?}");
    assert!(!run.stderr().contains(servers::PASSWORD), "{run:?}");
}

#[test]
fn remote_sftp() {
    round_trip(&servers::sftp("repo"));
    copied_from_local(&servers::sftp("copy"));
}

#[test]
fn remote_s3_garage() {
    round_trip(&servers::s3_garage("repo"));
    copied_from_local(&servers::s3_garage("copy"));
}

/// Clients racing to create one name on S3: where the backend says creates are exclusive
/// (the service honours `If-None-Match: *`), exactly one wins; where it does not (Garage ignores
/// the condition), whoever wins, the object is one client's bytes whole, and a later create
/// still finds the name taken.
#[test]
fn remote_s3_racing_creates_keep_one_whole_object() {
    let server = servers::s3_garage("race");
    let backend = connect(&server, true);
    let exclusive = backend.guarantees().exclusive_create;
    let wins = std::thread::scope(|s| {
        let tries: Vec<_> = (0..8u8)
            .map(|i| {
                let backend = &backend;
                s.spawn(move || {
                    backend
                        .create(FileType::Lock, "verdict", &[i; 1000])
                        .is_ok()
                })
            })
            .collect();
        tries
            .into_iter()
            .filter_map(|h| h.join().ok())
            .filter(|won| *won)
            .count()
    });
    if exclusive {
        assert_eq!(wins, 1);
    } else {
        assert!(wins >= 1);
    }
    let stored = backend.read(FileType::Lock, "verdict").unwrap();
    assert_eq!(stored.len(), 1000);
    assert!(stored.iter().all(|b| *b == stored[0]) && stored[0] < 8);
    let late = backend
        .create(FileType::Lock, "verdict", &[9; 1000])
        .unwrap_err();
    assert_eq!(late.kind, BackendErrorKind::AlreadyExists);
}

/// Init, backup and restore through a proxy that resets connections, stalls them and answers
/// 500/503, with `location`/`env` reaching the server through it; `check --read-data` is clean
/// afterwards, and the faults really happened.
fn through_faults(server: &Server, seed: u64) {
    let proxy = FaultProxy::start(
        server.addr,
        Faults {
            seed,
            resets: 4,
            delays: 4,
            max_delay: Duration::from_millis(300),
            errors: 6,
            chance: 0.6,
            ..Faults::default()
        },
    );
    let (location, env) = server.via(proxy.addr());
    let mut t = setup();
    t.set_remote(&location, &env, &server.env_remove);
    let src = t.join("src");
    fill(&src, seed);
    let mut said = String::new();
    let mut run = |args: Vec<std::ffi::OsString>| {
        let r = t.run(args).success();
        said.push_str(&r.stderr());
        r
    };
    run(args(&[
        &"init",
        &"--pack-size",
        &"1",
        &"--kdf-memory",
        &"64",
        &"--kdf-iterations",
        &"1",
    ]));
    run(args(&[&"backup", &src]));
    write(src.join("a/small"), "changed");
    run(args(&[&"backup", &src]));
    let out = t.join("out");
    run(args(&[&"restore", &"latest", &"--target", &out]));
    run(args(&[&"check", &"--read-data"]));
    assert_same_tree(&scan(&src), &scan(&restored(&out, &src)), Compare::exact());
    let injected = proxy.injected();
    assert!(
        injected.resets + injected.errors > 0,
        "the proxy injected nothing: {injected:?}"
    );
    if injected.errors > 0 {
        // Each 500/503 answered one of cairn's requests, whose retry is said on stderr.
        assert!(said.contains("retrying"), "{injected:?}: {said}");
    }
    drop(proxy);
    let mut direct = setup();
    direct.set_remote(&server.location, &server.env, &server.env_remove);
    direct.check();
}

#[test]
fn remote_rest_through_faults() {
    through_faults(&servers::rest_rclone("faults"), 11);
}

#[test]
fn remote_s3_through_faults() {
    through_faults(&servers::s3_garage("faults"), 12);
}

/// WebDAV's exclusive create (a MOVE that refuses a taken name) under lost answers: a retried
/// create that finds its own first try stored counts as done.
#[test]
fn remote_webdav_through_faults() {
    through_faults(&servers::webdav_rclone("faults"), 13);
}

/// A 3-node Garage cluster with replication factor 3 loses a node during a backup: the backup
/// finishes or fails cleanly, and afterwards everything restores and checks clean.
#[test]
fn remote_s3_cluster_survives_a_node_stopping_mid_backup() {
    let mut cluster = GarageCluster::start("cluster");
    let mut t = setup();
    t.set_remote(&cluster.location, &cluster.env, &cluster.env_remove);
    t.init_with(&["--pack-size", "1"]);
    let src = t.join("src");
    fill(&src, 3);
    let first = t.backup([&src]);
    let before = scan(&src);
    write(src.join("d/large"), random_bytes(31, 12 << 20));
    let mut cmd = t.command();
    cmd.args(["backup".as_ref(), "--json".as_ref(), src.as_os_str()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(400));
    cluster.stop_node(2);
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        assert_restores(&t, "latest", &src, "out");
    } else {
        // A clean failure: one line naming what failed, and the earlier snapshot intact.
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("cairn:"), "{err}");
        assert_eq!(t.snapshots().len(), 1);
        t.backup([&src]);
        assert_restores(&t, "latest", &src, "out");
    }
    t.check();
    let out = t.join("out-first");
    t.restore(&id(&first), &out);
    assert_same_tree(&before, &scan(&restored(&out, &src)), Compare::exact());
}

/// `cairn serve` on a directory, as a `rest:` location.
fn cairn_serve(t: &Dir, args: &[&str]) -> (Serve, At) {
    let dir = t.join("served");
    std::fs::create_dir_all(&dir).unwrap();
    let serve = Serve::start(t, &dir, args);
    let at = At {
        location: format!("rest:{}/repo", serve.url.trim_end_matches('/')),
        env: Vec::new(),
        remove: Vec::new(),
        root: Some(dir),
        partial_packs_may_stay: false,
    };
    (serve, at)
}

#[test]
fn remote_rest_via_cairn_serve() {
    let host = setup();
    let (_serve, at) = cairn_serve(&host, &[]);
    assert!(connect(at.clone(), true).guarantees().exclusive_create);
    round_trip(at);
}

/// Against an append-only server a client backs up and restores, but cannot forget or prune:
/// history stays; prune runs beside the server, on its directory.
#[test]
fn remote_append_only_server_keeps_history_from_its_clients() {
    let host = setup();
    let (_serve, at) = cairn_serve(&host, &["--append-only"]);
    let t = at.dir();
    t.init();
    let src = t.join("src");
    fill(&src, 21);
    let first = t.backup([&src]);
    let before = scan(&src);
    write(src.join("a/small"), "again");
    t.backup([&src]);
    let forget = t.run(["forget", &id(&first)]);
    assert_ne!(
        forget.code,
        Some(0),
        "forget succeeded against --append-only"
    );
    assert!(forget.error_line().contains("403"), "{forget:?}");
    assert_eq!(t.snapshots().len(), 2);
    let out = t.join("out");
    t.restore(&id(&first), &out);
    assert_same_tree(&before, &scan(&restored(&out, &src)), Compare::exact());

    let mut local = setup();
    local.set_repo(host.join("served/repo"));
    local.ok(["forget", &id(&first)]);
    local.ok(["prune", "--max-unused", "0"]);
    local.check();
    assert_eq!(t.snapshots().len(), 1);
}

/// A refusal is final: wrong credentials fail the command at once (no retry), with a one-line
/// message that names the location and never shows a secret.
#[test]
fn remote_refused_credentials_fail_at_once_without_showing_secrets() {
    let webdav = servers::webdav_rclone("repo");
    let at = At::from(&webdav);
    at.dir().init();
    let wrong = At {
        location: webdav
            .location
            .replace(servers::PASSWORD, "not-the-password"),
        ..at.clone()
    };
    assert_ne!(wrong.location, at.location);
    let run = wrong.dir().run(["snapshots"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    let line = run.error_line();
    assert!(
        line.contains("Unauthorized") || line.contains("401"),
        "{run:?}"
    );
    assert!(!run.stderr().contains("retrying"), "{run:?}");
    assert!(!run.stderr().contains("not-the-password"), "{run:?}");

    let s3 = servers::s3_garage("refused");
    let at = At::from(&s3);
    at.dir().init();
    let mut wrong = at.clone();
    for (k, v) in &mut wrong.env {
        if k == "AWS_SECRET_ACCESS_KEY" {
            *v = "0".repeat(v.len());
        }
    }
    let run = wrong.dir().run(["snapshots"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(!run.stderr().contains("retrying"), "{run:?}");
    assert!(run.error_line().contains(&s3.location), "{run:?}");
}

/// S3 credentials from a named AWS profile (`AWS_PROFILE` and the shared credentials file), as
/// an administrator keeps them out of the environment; a profile that does not exist fails at
/// once, naming the location, with nothing created.
#[test]
fn remote_s3_credentials_from_an_aws_profile() {
    let s3 = servers::s3_garage("profile");
    let key = |name: &str| {
        s3.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let t = setup();
    let credentials = t.join("aws-credentials");
    write(
        &credentials,
        format!(
            "[default]\naws_access_key_id = wrong\naws_secret_access_key = wrong\n\n[backup]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            key("AWS_ACCESS_KEY_ID"),
            key("AWS_SECRET_ACCESS_KEY")
        ),
    );
    let with_profile = |profile: &str| At {
        location: s3.location.clone(),
        root: None,
        partial_packs_may_stay: false,
        env: s3
            .env
            .iter()
            .filter(|(k, _)| !k.starts_with("AWS_ACCESS_KEY") && !k.starts_with("AWS_SECRET"))
            .cloned()
            .chain([
                (
                    "AWS_SHARED_CREDENTIALS_FILE".to_string(),
                    credentials.display().to_string(),
                ),
                ("AWS_PROFILE".to_string(), profile.to_string()),
            ])
            .collect(),
        remove: s3
            .env_remove
            .iter()
            .filter(|k| *k != "AWS_PROFILE")
            .cloned()
            .chain([
                "AWS_ACCESS_KEY_ID".to_string(),
                "AWS_SECRET_ACCESS_KEY".to_string(),
            ])
            .collect(),
    };
    let missing = with_profile("no-such-profile").dir();
    let run = missing.run(["init"]);
    assert_ne!(run.code, Some(0), "{run:?}");
    assert!(run.error_line().contains(&s3.location), "{run:?}");
    assert!(!run.stderr().contains("retrying"), "{run:?}");

    let t = with_profile("backup").dir();
    t.init();
    let src = t.join("src");
    write(src.join("a"), "kept by a profile's keys");
    t.backup([&src]);
    assert_restores(&t, "latest", &src, "out");
}

/// `--no-cache` works against a remote repository, and the cache a client keeps holds no
/// plaintext of what it cached: trees and snapshots are kept sealed.
#[test]
fn remote_without_a_cache_and_with_a_sealed_one() {
    let server = servers::rest_rclone("repo");
    let t = At::from(&server).dir();
    t.init();
    let src = t.join("src");
    let marker = "a-file-name-that-must-not-be-in-the-cache";
    write(src.join(marker), "content");
    t.backup([&src]);
    let listed = t.ok(["--no-cache", "ls", "latest", "--recursive"]).stdout();
    assert!(listed.contains(marker), "{listed}");
    t.ok(["ls", "latest", "--recursive"]);
    for file in files_below(&t.cache()) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !contains(&bytes, marker.as_bytes()),
            "{} holds a file name in plaintext",
            file.display()
        );
    }
}

/// The off-site replica: a local repository copied into an append-only server with a password
/// of its own, restorable from there, and copied once however often copy runs.
#[test]
fn remote_copy_into_an_append_only_replica() {
    let host = setup();
    let (_serve, at) = cairn_serve(&host, &["--append-only"]);
    let replica = at.dir();
    let other = "the replica's password";
    let mut init = replica.command();
    init.env("CAIRN_PASSWORD", other)
        .args(["init", "--kdf-memory", "64", "--kdf-iterations", "1"]);
    Run::of(init).success();

    let t = setup();
    t.init();
    let src = t.join("src");
    fill(&src, 33);
    t.backup([&src]);
    write(src.join("a/small"), "changed");
    t.backup([&src]);
    let pw = t.join("replica-password");
    write(&pw, other);
    let copy = || {
        t.ok([
            "copy",
            "--to",
            &at.location,
            "--to-password-file",
            pw.to_str().unwrap(),
            "--json",
        ])
        .json()
    };
    let first = copy();
    assert_eq!(first["copied"].as_array().unwrap().len(), 2, "{first}");
    let again = copy();
    assert_eq!(again["copied"].as_array().unwrap().len(), 0, "{again}");
    assert_eq!(num(&again, "bytes_added"), 0);

    let out = t.join("out");
    let mut restore = replica.command();
    restore
        .env("CAIRN_PASSWORD", other)
        .args(["restore", "latest", "--target"])
        .arg(&out);
    Run::of(restore).success();
    assert_same_tree(&scan(&src), &scan(&restored(&out, &src)), Compare::exact());
}

/// Regression: FTP uploads were stored under their final name before their size was checked
/// (OpenDAL's writer renames its own temporary into place as it closes), so a server that kept
/// an upload short while answering success held a truncated object under a final name until
/// cairn's delete came, and for good where that delete failed. A server that loses a byte of
/// every upload and refuses to delete shows it.
#[test]
fn remote_ftp_short_upload_never_takes_a_final_name() {
    let server = servers::ftp_truncating("repo");
    let backend = connect(&server, true);
    let bytes = random_bytes(8, 200_000);
    let name = cairn_crypto::file_id(&bytes).to_hex();
    let err = backend.create(FileType::Pack, &name, &bytes).unwrap_err();
    let below = files_below(&server.root.clone().unwrap().join("repo"));
    let finals: Vec<_> = below
        .iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| !n.to_string_lossy().contains('.'))
        })
        .collect();
    assert!(
        finals.is_empty(),
        "short uploads under final names: {finals:?}"
    );
    assert!(err.to_string().contains("the server stored"), "{err}");
    // What the refused deletes left are temporaries, which no listing shows.
    assert!(!below.is_empty());
    assert!(backend.list(FileType::Pack).unwrap().is_empty());
}

/// The local cache keeps a client's reads of what it already knows off the wire: after the
/// backups that made it, `snapshots`, `ls`, `diff`, `find` and a backup with nothing changed
/// send no request for a pack. `--no-cache` does, which shows the proxy would have seen them.
#[test]
fn remote_cache_spares_data_downloads() {
    let server = servers::rest_rclone("repo");
    let proxy = FaultProxy::start(server.addr, Faults::default());
    let (location, env) = server.via(proxy.addr());
    let mut t = setup();
    t.set_remote(&location, &env, &server.env_remove);
    t.init_with(&["--pack-size", "1"]);
    let src = t.join("src");
    fill(&src, 41);
    let first = t.backup([&src]);
    write(src.join("a/small"), "changed");
    let second = t.backup([&src]);
    let data_gets = |traffic: &cairn_testkit::Traffic| -> Vec<String> {
        traffic
            .requests
            .iter()
            .filter(|(method, target)| method == "GET" && target.contains("/data/"))
            .map(|(_, target)| target.clone())
            .collect()
    };
    // Counted from here: what the backups themselves sent is not the question.
    proxy.take_traffic();

    t.ok(["snapshots"]);
    let listed = t.ok(["ls", "latest", "--recursive"]).stdout();
    assert!(listed.contains("medium"), "{listed}");
    let diff = t.ok(["diff", &id(&first), &id(&second)]).stdout();
    assert!(diff.contains("small"), "{diff}");
    let found = t.ok(["find", "medium"]).stdout();
    assert!(found.contains("medium"), "{found}");
    let again = t.backup([&src]);
    assert_eq!(num(&again, "files_unchanged"), 4, "{again}");
    assert_eq!(num(&again, "files_changed") + num(&again, "files_new"), 0);
    let traffic = proxy.take_traffic();
    assert!(traffic.requests.len() > 5, "{traffic:?}");
    assert_eq!(data_gets(&traffic), Vec::<String>::new());

    t.ok(["--no-cache", "ls", "latest", "--recursive"]);
    assert!(!data_gets(&proxy.take_traffic()).is_empty());
}

/// A pack the server no longer has is a permanent fault: the restore that needs it fails at
/// once, naming it, without retrying a request whose answer cannot change.
#[test]
fn remote_missing_pack_fails_at_once_naming_it() {
    let server = servers::rest_rclone("repo");
    let t = At::from(&server).dir();
    t.init();
    let src = t.join("src");
    fill(&src, 51);
    t.backup([&src]);
    // Every pack, so whichever the restore reads first is gone.
    let packs: Vec<PathBuf> = files_below(&server.root.clone().unwrap().join("repo/data"));
    assert!(!packs.is_empty());
    for pack in &packs {
        std::fs::remove_file(pack).unwrap();
    }
    let started = Instant::now();
    let run = t.run([
        "restore",
        "latest",
        "--target",
        t.join("out").to_str().unwrap(),
    ]);
    assert_ne!(run.code, Some(0), "{run:?}");
    assert!(!run.stderr().contains("retrying"), "{run:?}");
    // Each file the pack held fails on its own line, which names the pack and the 404.
    let said = run.stderr();
    assert!(
        packs.iter().any(|p| said.contains(&format!(
            "pack {}: HTTP 404",
            p.file_name().unwrap().to_string_lossy()
        ))),
        "{run:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(20), "{run:?}");
}
