//! `cairn serve` end to end: the binary serves a directory, and restic's own `rest:` client
//! (Debian's restic) initialises, backs up, checks and restores through it; append-only keeps
//! a `forget --prune` from destroying history; with TLS, htpasswd and private repositories a
//! user reaches their own repository alone. The command's own behaviour (the address line,
//! signals, invalid options) is tested here too.

use crate::util::*;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The password of every restic repository here.
const RESTIC_PASSWORD: &str = "restic test password";

/// A running `cairn serve`; stopped with SIGTERM when dropped.
pub(crate) struct Serve {
    child: Child,
    pub(crate) url: String,
    log: PathBuf,
}

impl Serve {
    /// Starts `cairn serve --listen 127.0.0.1:0 --path DIR ARGS` and reads the address it
    /// prints. Its log (stderr) goes to a file, so that a chatty server never blocks on a pipe.
    pub(crate) fn start(t: &Dir, dir: &Path, args: &[&str]) -> Serve {
        let log = t.join(format!("serve-{}.log", rand::random::<u32>()));
        let mut cmd = t.command();
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--path"])
            .arg(dir)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        let mut child = cmd.spawn().expect("start cairn serve");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let Some(url) = line
            .trim()
            .rsplit(" at ")
            .next()
            .filter(|u| u.contains("://"))
        else {
            let _ = child.kill();
            panic!(
                "cairn serve printed {line:?}; its log: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        assert_eq!(line.trim(), format!("serving {} at {url}", dir.display()));
        Serve {
            url: url.to_string(),
            child,
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` and waits (at most 30 s) for the exit; returns its status.
    fn stop_with(&mut self, signal: rustix::process::Signal) -> std::process::ExitStatus {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, signal).unwrap();
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "cairn serve did not stop"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.stop_with(rustix::process::Signal::TERM);
        }
    }
}

/// `restic` with no user settings and a cache in the test directory. Fails, saying how to
/// install it, when restic is missing: this test never skips.
fn restic(t: &Dir, repo: &str) -> Command {
    assert!(
        have_program("restic"),
        "restic is not installed: run `apt-get install restic` (the serve tests run restic's \
         rest: client against cairn serve)"
    );
    let mut cmd = Command::new("restic");
    for v in [
        "RESTIC_REPOSITORY",
        "RESTIC_REPOSITORY_FILE",
        "RESTIC_PASSWORD_FILE",
        "RESTIC_PASSWORD_COMMAND",
    ] {
        cmd.env_remove(v);
    }
    cmd.env("RESTIC_PASSWORD", RESTIC_PASSWORD)
        .env("RESTIC_CACHE_DIR", t.join("restic-cache"))
        .env("HOME", t.path())
        .args(["-r", repo])
        .current_dir(t.path())
        .stdin(Stdio::null());
    cmd
}

/// How long one restic command may take. Generous: restic retries a refused request for
/// about a minute before it gives up.
const RESTIC_LIMIT: Duration = Duration::from_secs(600);

/// Runs restic, killing it past `RESTIC_LIMIT` (a hung client fails the test, never hangs it).
fn run_restic(mut cmd: Command, t: &Dir) -> Run {
    cmd.arg("--quiet");
    let args = std::iter::once(cmd.get_program().to_os_string())
        .chain(cmd.get_args().map(|a| a.to_os_string()))
        .collect();
    let n = rand::random::<u32>();
    let (out, err) = (
        t.join(format!("restic-{n}.out")),
        t.join(format!("restic-{n}.err")),
    );
    let mut child = cmd
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("start restic");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > RESTIC_LIMIT {
            let _ = child.kill();
            panic!(
                "restic took more than {RESTIC_LIMIT:?}: {}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Run {
        args,
        code: status.code(),
        stdout: std::fs::read(&out).unwrap(),
        stderr: std::fs::read(&err).unwrap(),
    }
}

fn restic_ok(t: &Dir, repo: &str, args: &[&str], serve: &Serve) -> Run {
    let mut cmd = restic(t, repo);
    cmd.args(args);
    let run = run_restic(cmd, t);
    assert_eq!(
        run.code,
        Some(0),
        "restic {args:?} failed: {run:?}\ncairn serve's log:\n{}",
        serve.log()
    );
    run
}

fn source(t: &Dir) -> PathBuf {
    let src = t.join("src");
    write(src.join("small.txt"), "hello through the REST server\n");
    write(src.join("big.bin"), random_bytes(7, 5 << 20));
    write(src.join("sub/dir/other.bin"), random_bytes(8, 300_000));
    write(src.join("sub/empty"), "");
    src
}

/// Every regular file below `root`, by path relative to it, with its bytes' digest.
fn contents(root: &Path) -> Vec<(PathBuf, Digest)> {
    let mut files: Vec<_> = files_below(root)
        .into_iter()
        .map(|p| (p.strip_prefix(root).unwrap().to_path_buf(), digest_file(&p)))
        .collect();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files
}

#[test]
fn restic_backs_up_checks_and_restores_through_an_append_only_server() {
    let t = setup();
    let served = t.join("served");
    mkdirs(&served);
    let serve = Serve::start(&t, &served, &["--append-only"]);
    assert!(serve.url.starts_with("http://127.0.0.1:"));
    let repo = format!("rest:{}/repo", serve.url);

    restic_ok(&t, &repo, &["init"], &serve);
    assert!(served.join("repo/config").is_file());
    assert!(served.join("repo/data/00").is_dir());

    let src = source(&t);
    restic_ok(&t, &repo, &["backup", src.to_str().unwrap()], &serve);
    write(src.join("small.txt"), "changed before the second backup\n");
    write(src.join("new.bin"), random_bytes(9, 1 << 20));
    restic_ok(&t, &repo, &["backup", src.to_str().unwrap()], &serve);
    restic_ok(&t, &repo, &["check", "--read-data"], &serve);

    let target = t.join("restored");
    restic_ok(
        &t,
        &repo,
        &["restore", "latest", "--target", target.to_str().unwrap()],
        &serve,
    );
    // restic restores the absolute path below the target.
    let restored = restored(&target, &src);
    assert_eq!(contents(&restored), contents(&src));

    // Forgetting and pruning need deletes, which append-only refuses: restic fails, and every
    // snapshot, pack and index file stays.
    let snapshots_dir = served.join("repo/snapshots");
    let history = |dir: &Path| {
        let mut files = files_below(dir);
        files.retain(|p| !p.starts_with(dir.join("locks")));
        fingerprint_of(&files)
    };
    let before = history(&served.join("repo"));
    assert_eq!(std::fs::read_dir(&snapshots_dir).unwrap().count(), 2);
    let mut forget = restic(&t, &repo);
    forget.args(["forget", "--keep-last", "1", "--prune"]);
    let run = run_restic(forget, &t);
    assert_ne!(
        run.code,
        Some(0),
        "forget --prune succeeded on an append-only server: {run:?}"
    );
    assert_eq!(
        history(&served.join("repo")),
        before,
        "append-only lost history"
    );
    assert!(serve.log().contains("append-only"), "log: {}", serve.log());
    // restic removed its own lock (locks may go), and the repository is whole.
    restic_ok(&t, &repo, &["check"], &serve);
    let listed = restic_ok(&t, &repo, &["snapshots", "--json"], &serve).json();
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
}

fn fingerprint_of(files: &[PathBuf]) -> Vec<(PathBuf, Digest)> {
    let mut v: Vec<_> = files.iter().map(|p| (p.clone(), digest_file(p))).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn restic_over_tls_with_private_repositories_reaches_only_its_own() {
    let t = setup();
    let served = t.join("served");
    mkdirs(&served);
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let (cert, key) = (t.join("cert.pem"), t.join("key.pem"));
    write(&cert, certified.cert.pem());
    write(&key, certified.key_pair.serialize_pem());
    // What `htpasswd -B -b FILE alice PASSWORD` writes.
    let hash = bcrypt::hash_with_result("alice's password", 5)
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY);
    let htpasswd = t.join("htpasswd");
    write(&htpasswd, format!("alice:{hash}\n"));
    let args = [
        "--private-repos",
        "--htpasswd",
        htpasswd.to_str().unwrap(),
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];
    let serve = Serve::start(&t, &served, &args);
    let host = serve.url.strip_prefix("https://").expect("an https URL");
    let cacert = ["--cacert", cert.to_str().unwrap()];

    let own = format!("rest:https://alice:alice%27s%20password@{host}/alice/laptop");
    let mut init = vec!["init"];
    init.extend(cacert);
    restic_ok(&t, &own, &init, &serve);
    let src = source(&t);
    let mut backup = vec!["backup", src.to_str().unwrap()];
    backup.extend(cacert);
    restic_ok(&t, &own, &backup, &serve);
    assert!(served.join("alice/laptop/config").is_file());

    // Another user's path, and a wrong password, are refused and create nothing.
    for repo in [
        format!("rest:https://alice:alice%27s%20password@{host}/bob/laptop"),
        format!("rest:https://alice:Tr0ub4dor3@{host}/alice/other"),
    ] {
        let mut cmd = restic(&t, &repo);
        cmd.arg("init").args(cacert);
        let run = run_restic(cmd, &t);
        assert_ne!(run.code, Some(0), "{repo}: {run:?}");
    }
    assert!(!served.join("bob").exists());
    assert!(!served.join("alice/other").exists());
    // The server never logs a password.
    let log = serve.log();
    assert!(log.contains("403") && log.contains("401"), "{log}");
    assert!(
        !log.contains("alice's password") && !log.contains("Tr0ub4dor3"),
        "{log}"
    );
}

#[test]
fn serve_prints_its_address_and_stops_cleanly_on_sigint_and_sigterm() {
    let t = setup();
    let served = t.join("served");
    mkdirs(&served);
    for signal in [rustix::process::Signal::INT, rustix::process::Signal::TERM] {
        let mut serve = Serve::start(&t, &served, &[]);
        let port: u16 = serve.url.rsplit(':').next().unwrap().parse().unwrap();
        assert_ne!(port, 0, "the bound port is printed, not 0");
        // It answers: a repository created over a raw request.
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        use std::io::{Read, Write};
        stream
            .write_all(b"POST /r/?create=true HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let status = serve.stop_with(signal);
        assert!(
            status.success(),
            "{signal:?}: {status:?}, log: {}",
            serve.log()
        );
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
        std::fs::remove_dir_all(served.join("r")).unwrap();
    }
}

#[test]
fn invalid_serve_options_exit_2_and_serve_nothing() {
    let t = setup();
    let served = t.join("served");
    mkdirs(&served);
    let dir = served.to_str().unwrap();
    let missing = t.join("missing");
    let cases: Vec<Vec<&str>> = vec![
        vec!["--path", missing.to_str().unwrap()],
        vec!["--path", dir, "--private-repos"],
        vec!["--path", dir, "--tls-cert", "cert.pem"],
        vec!["--path", dir, "--tls-key", "key.pem"],
        vec![
            "--path",
            dir,
            "--tls-cert",
            "none.pem",
            "--tls-key",
            "none.pem",
        ],
        vec!["--path", dir, "--htpasswd", "no-such-file"],
        vec!["--path", dir, "--listen", "not an address"],
        vec!["--path", dir, "--max-object-size", "12 parsecs"],
        vec!["--listen", "127.0.0.1:0"],
    ];
    for args in cases {
        let mut all = vec!["serve", "--listen", "127.0.0.1:0"];
        all.extend(&args);
        let run = t.run(&all);
        assert_eq!(run.code, Some(2), "{args:?}: {run:?}");
        assert!(run.stdout().is_empty(), "{args:?} printed {}", run.stdout());
        assert!(run.stderr().starts_with("cairn: "), "{args:?}: {run:?}");
    }
    assert!(!missing.exists());
}
