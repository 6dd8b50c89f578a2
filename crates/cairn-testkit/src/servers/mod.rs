//! Real servers on loopback for the remote backends' tests: `rclone serve restic` (REST),
//! `rclone serve webdav`, pyftpdlib (FTP), OpenSSH's sshd (SFTP) and Garage (S3, one node or a
//! cluster of three); and aiosmtpd (SMTP) for cairn-report's mail tests. Each is started for
//! one test in a temp dir of its own and answers before the constructor returns; `cargo xtask
//! servers` installs them.
//!
//! Invariant: a server that cannot be started is a panic that says why (the binary is missing,
//! with the command that installs it, or the server's own last words), never a skipped test; and
//! a server never outlives its value: drop kills and reaps the process, then removes its dir.
//! Everything listens on 127.0.0.1 and nothing reads or writes the user's own configuration
//! (~/.ssh, rclone's config).

mod garage;
mod sftp;
#[cfg(test)]
mod tests;

pub use garage::{garage_binary, s3_garage, s3_garage_buckets, GarageCluster, GARAGE_REGION};
pub use sftp::sftp;

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long a server has to answer after it is started.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The user and password of the servers that take them (WebDAV, FTP, SMTP).
pub const USER: &str = "cairn";
pub const PASSWORD: &str = "cairn-test-password";

const INSTALL: &str = "install it with `cargo xtask servers`";

/// A server started for one test on loopback, in its own temp dir, stopped (killed and reaped)
/// on drop.
pub struct Server {
    /// What to pass to `cairn -r` for the repository this server was started for.
    pub location: String,
    /// Environment the cairn process needs (credentials, the ssh command).
    pub env: Vec<(String, String)>,
    /// Variables the cairn process must not inherit from the user, because they would change
    /// how its client reaches or signs for this server (proxies; AWS profiles, session tokens,
    /// CA bundles and endpoints). `apply_env` removes them and sets `env`.
    pub env_remove: Vec<String>,
    /// The directory the server serves when it stores plain files (rclone, sftp, ftp); the
    /// repository's files are under `root/<repo>`, so a test can copy a local repository in or
    /// look at objects. None for Garage.
    pub root: Option<PathBuf>,
    /// The address the server listens on (Garage: its S3 API).
    pub addr: SocketAddr,
    describe: Describe,
    // Dropped in this order: the process is killed before its directory goes.
    process: Process,
    _dir: TempDir,
}

/// The location and environment for a server reached at an address (its own, or a proxy's).
type Describe = Box<dyn Fn(SocketAddr) -> (String, Vec<(String, String)>) + Send + Sync>;

impl Server {
    /// The location and environment that reach this server through `proxy` (a `FaultProxy`'s
    /// address) instead of directly. For FTP only the control connection goes through it: the
    /// data connections go to the ports the server names in its PASV replies.
    pub fn via(&self, proxy: SocketAddr) -> (String, Vec<(String, String)>) {
        (self.describe)(proxy)
    }

    /// The last lines the server wrote to its stdout and stderr, for a failing test's message.
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }

    /// Removes `env_remove` from `cmd`'s environment and sets `env`.
    pub fn apply_env<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        apply_env(cmd, &self.env_remove, &self.env)
    }
}

pub(crate) fn apply_env<'c>(
    cmd: &'c mut Command,
    remove: &[String],
    env: &[(String, String)],
) -> &'c mut Command {
    for name in remove {
        cmd.env_remove(name);
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)))
}

/// A proxy named in the environment would carry a client's requests to loopback elsewhere.
const PROXY_VARIABLES: &[&str] = &[
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "ftp_proxy",
    "FTP_PROXY",
];

fn names(lists: &[&[&str]]) -> Vec<String> {
    lists
        .iter()
        .flat_map(|l| l.iter().map(|n| n.to_string()))
        .collect()
}

/// `rclone serve restic` on `root`: location `rest:http://127.0.0.1:PORT/<repo>`.
pub fn rest_rclone(repo: &str) -> Server {
    rclone("restic", repo, |addr| format!("rest:http://{addr}/"))
}

/// `rclone serve webdav` on `root` with basic auth (`USER`, `PASSWORD`): location
/// `webdav:http://USER:PASSWORD@127.0.0.1:PORT/<repo>`.
pub fn webdav_rclone(repo: &str) -> Server {
    rclone("webdav", repo, |addr| {
        format!("webdav:http://{USER}:{PASSWORD}@{addr}/")
    })
}

fn rclone(kind: &'static str, repo: &str, prefix: fn(SocketAddr) -> String) -> Server {
    let bin = require("rclone", "rclone");
    let dir = temp_dir(&format!("rclone-{kind}"));
    let root = dir.path().join("root");
    fs::create_dir(&root).expect("create the served dir");
    // An empty config of its own, so a user's remotes and settings cannot change the server.
    let config = dir.path().join("rclone.conf");
    File::create(&config).expect("create rclone.conf");
    let name = format!("rclone serve {kind}");
    let (process, addr) = start_on_free_ports(&name, 1, |ports| {
        let addr = loopback(ports[0]);
        let mut cmd = Command::new(&bin);
        cmd.args(["serve", kind, "--addr", &addr.to_string()])
            .arg("--config")
            .arg(&config)
            .arg("--cache-dir")
            .arg(dir.path().join("cache"));
        match kind {
            // Listings straight from the disk, so files a test puts under `root` are seen.
            "restic" => cmd.arg("--cache-objects=false"),
            _ => cmd.args(["--user", USER, "--pass", PASSWORD]).args([
                "--dir-cache-time",
                "0s",
                "--poll-interval",
                "0",
            ]),
        };
        cmd.arg(&root);
        let mut process = Process::spawn(&name, &mut cmd, &dir.path().join("rclone.log"));
        let auth = if kind == "webdav" {
            format!("Authorization: Basic {}\r\n", basic_auth(USER, PASSWORD))
        } else {
            String::new()
        };
        wait_ready(&mut process, || http_answers(addr, &auth)).map(|()| (process, addr))
    });
    let repo = repo.to_string();
    let describe: Describe = Box::new(move |addr| (format!("{}{repo}", prefix(addr)), vec![]));
    server(describe, addr, Some(root), process, dir)
}

/// pyftpdlib with Debian's python3 on `root`, one user (`USER`, `PASSWORD`) with write access:
/// location `ftp://USER:PASSWORD@127.0.0.1:PORT/<repo>` (the path is relative to `root`). As
/// vsftpd, ProFTPD and Pure-FTPd do by default, `LIST` leaves out names that start with a dot.
pub fn ftp(repo: &str) -> Server {
    pyftpdlib(repo, "ftp", "elradfmwMT", false)
}

/// `ftp`, but a server that loses the last byte of every upload yet answers `226 Transfer
/// complete` (as pyftpdlib did when a TLS client reset its data connection), and refuses DELE,
/// so what a client leaves behind after a short upload stays for the test to see.
pub fn ftp_truncating(repo: &str) -> Server {
    pyftpdlib(repo, "ftp-truncating", "elrafmwMT", true)
}

/// The FTP server of `ftp` and `ftp_truncating`: pyftpdlib's own classes, which its module's
/// command line cannot set up so.
const FTP_SERVER: &str = r#"
import os, sys
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.filesystems import AbstractedFS
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer
host, port, user, password, root, perm, truncate = sys.argv[1:]
class HidingDotFiles(AbstractedFS):
    def listdir(self, path):
        return [n for n in super().listdir(path) if not n.startswith(".")]
class Handler(FTPHandler):
    abstracted_fs = HidingDotFiles
    def on_file_received(self, file):
        # Runs before the server reads the client's next command, so no command sees the
        # whole upload.
        if truncate == "truncate":
            with open(file, "r+b") as f:
                f.truncate(max(0, os.path.getsize(file) - 1))
authorizer = DummyAuthorizer()
authorizer.add_user(user, password, root, perm=perm)
Handler.authorizer = authorizer
FTPServer((host, int(port)), Handler).serve_forever()
"#;

fn pyftpdlib(repo: &str, name: &str, perm: &str, truncate: bool) -> Server {
    let python = debian_python("pyftpdlib", "python3-pyftpdlib");
    let dir = temp_dir(name);
    let root = dir.path().join("root");
    fs::create_dir(&root).expect("create the served dir");
    let (process, addr) = start_on_free_ports("pyftpdlib", 1, |ports| {
        let addr = loopback(ports[0]);
        let mut cmd = Command::new(&python);
        cmd.args(["-c", FTP_SERVER, "127.0.0.1", &ports[0].to_string()])
            .args([USER, PASSWORD])
            .arg(&root)
            .args([perm, if truncate { "truncate" } else { "keep" }])
            // Debian's python3 with its own packages: a user's site-packages or PYTHONPATH
            // could bring another pyftpdlib.
            .env_remove("PYTHONPATH")
            .env("PYTHONNOUSERSITE", "1");
        let mut process = Process::spawn("pyftpdlib", &mut cmd, &dir.path().join("ftp.log"));
        wait_ready(&mut process, || banner(addr, "220")).map(|()| (process, addr))
    });
    let repo = repo.to_string();
    let describe: Describe =
        Box::new(move |addr| (format!("ftp://{USER}:{PASSWORD}@{addr}/{repo}"), vec![]));
    server(describe, addr, Some(root), process, dir)
}

/// Debian's python3, checked to have `module` (from the Debian package `package`).
fn debian_python(module: &str, package: &str) -> PathBuf {
    let python = require("/usr/bin/python3", "python3");
    let probe = Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .env_remove("PYTHONPATH")
        .env("PYTHONNOUSERSITE", "1")
        .output()
        .expect("run /usr/bin/python3");
    if !probe.status.success() {
        panic!("{module} is missing from /usr/bin/python3 (Debian package {package}); {INSTALL}");
    }
    python
}

/// pyftpdlib's TLS handler, which the module's command line does not offer: explicit TLS
/// (`AUTH TLS`) required on the control and data connections.
const FTPS_SERVER: &str = r#"
import sys
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import TLS_FTPHandler
from pyftpdlib.servers import FTPServer
host, port, user, password, root, cert, key = sys.argv[1:]
authorizer = DummyAuthorizer()
authorizer.add_user(user, password, root, perm="elradfmwMT")
TLS_FTPHandler.authorizer = authorizer
TLS_FTPHandler.certfile = cert
TLS_FTPHandler.keyfile = key
TLS_FTPHandler.tls_control_required = True
TLS_FTPHandler.tls_data_required = True
FTPServer((host, int(port)), TLS_FTPHandler).serve_forever()
"#;

/// pyftpdlib with TLS required (`ftps://`), its certificate self-signed for 127.0.0.1 and
/// trusted by the cairn process alone, through `SSL_CERT_FILE` in `env`.
pub fn ftps(repo: &str) -> Server {
    let python = debian_python(
        "pyftpdlib, OpenSSL",
        "python3-pyftpdlib and python3-openssl",
    );
    let dir = temp_dir("ftps");
    let root = dir.path().join("root");
    fs::create_dir(&root).expect("create the served dir");
    let (cert, key) = self_signed(dir.path());
    let (process, addr) = start_on_free_ports("pyftpdlib (TLS)", 1, |ports| {
        let addr = loopback(ports[0]);
        let mut cmd = Command::new(&python);
        cmd.args([
            "-c",
            FTPS_SERVER,
            "127.0.0.1",
            &ports[0].to_string(),
            USER,
            PASSWORD,
        ])
        .arg(&root)
        .arg(&cert)
        .arg(&key)
        .env_remove("PYTHONPATH")
        .env("PYTHONNOUSERSITE", "1");
        let mut process = Process::spawn("pyftpdlib", &mut cmd, &dir.path().join("ftps.log"));
        wait_ready(&mut process, || banner(addr, "220")).map(|()| (process, addr))
    });
    let repo = repo.to_string();
    let cert = cert.display().to_string();
    let describe: Describe = Box::new(move |addr| {
        (
            format!("ftps://{USER}:{PASSWORD}@{addr}/{repo}"),
            vec![("SSL_CERT_FILE".to_string(), cert.clone())],
        )
    });
    server(describe, addr, Some(root), process, dir)
}

/// aiosmtpd's server, which its module's command line cannot give a password or TLS: every
/// message is stored whole in `maildir` (written under a temp name, then renamed, so a reader
/// never sees half of one); AUTH PLAIN and LOGIN take `user` and `password` and are optional,
/// over TLS or not. `mode` "starttls" offers STARTTLS with `cert`; "tls" speaks TLS with `cert`
/// from the first byte (port 465's way) and offers no STARTTLS.
const SMTP_SERVER: &str = r#"
import itertools, os, ssl, sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
port, user, password, maildir, cert, key, mode = sys.argv[1:]
numbers = itertools.count(1)
class Store:
    async def handle_DATA(self, server, session, envelope):
        n = next(numbers)
        temp = os.path.join(maildir, "%08d.tmp" % n)
        with open(temp, "wb") as f:
            f.write(envelope.original_content)
        os.rename(temp, os.path.join(maildir, "%08d.eml" % n))
        return "250 OK"
def authenticate(server, session, envelope, mechanism, auth_data):
    ok = (mechanism in ("LOGIN", "PLAIN") and isinstance(auth_data, LoginPassword)
          and auth_data.login == user.encode() and auth_data.password == password.encode())
    return AuthResult(success=ok, handled=False)
tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
tls.load_cert_chain(cert, key)
wrap = {"starttls": {"tls_context": tls}, "tls": {"ssl_context": tls}}[mode]
Controller(Store(), hostname="127.0.0.1", port=int(port), server_hostname="cairn-test-smtp",
           authenticator=authenticate, auth_require_tls=False, auth_required=False,
           **wrap).start()
print("ready", flush=True)
while True:
    time.sleep(3600)
"#;

/// An SMTP server on loopback that keeps what it receives; stopped (killed and reaped) on drop.
pub struct Smtp {
    pub addr: SocketAddr,
    /// The account AUTH accepts (`USER`, `PASSWORD`); AUTH is optional.
    pub user: String,
    pub password: String,
    /// The server's self-signed certificate for 127.0.0.1 (PEM), offered by STARTTLS (or from
    /// the first byte, `smtps`): trust it through `SSL_CERT_FILE`.
    pub cert: PathBuf,
    maildir: PathBuf,
    // Dropped in this order: the process is killed before its directory goes.
    process: Process,
    _dir: TempDir,
}

impl Smtp {
    /// The messages received so far, as sent (RFC 5322, CRLF line ends), oldest first.
    pub fn messages(&self) -> Vec<String> {
        let mut names: Vec<PathBuf> = fs::read_dir(&self.maildir)
            .expect("list the server's messages")
            .map(|e| e.expect("list the server's messages").path())
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| String::from_utf8_lossy(&fs::read(p).expect("read a message")).into_owned())
            .collect()
    }

    /// The last lines the server wrote to its stdout and stderr, for a failing test's message.
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }
}

/// aiosmtpd (Debian's python3-aiosmtpd) on a loopback port: plain SMTP, STARTTLS offered,
/// optional AUTH with `USER` and `PASSWORD`.
pub fn smtp() -> Smtp {
    start_smtp(false)
}

/// aiosmtpd as `smtp`, but speaking TLS from the first byte (implicit TLS, port 465's way) and
/// offering no STARTTLS; its certificate is `Smtp::cert`.
pub fn smtps() -> Smtp {
    start_smtp(true)
}

fn start_smtp(implicit_tls: bool) -> Smtp {
    let python = debian_python("aiosmtpd", "python3-aiosmtpd");
    let dir = temp_dir("smtp");
    let maildir = dir.path().join("mail");
    fs::create_dir(&maildir).expect("create the mail dir");
    let (cert, key) = self_signed(dir.path());
    let (process, addr) = start_on_free_ports("aiosmtpd", 1, |ports| {
        let addr = loopback(ports[0]);
        let mut cmd = Command::new(&python);
        cmd.args(["-c", SMTP_SERVER, &ports[0].to_string(), USER, PASSWORD])
            .arg(&maildir)
            .arg(&cert)
            .arg(&key)
            .arg(if implicit_tls { "tls" } else { "starttls" })
            .env_remove("PYTHONPATH")
            .env("PYTHONNOUSERSITE", "1");
        let mut process = Process::spawn("aiosmtpd", &mut cmd, &dir.path().join("smtp.log"));
        // The banner comes only after a TLS handshake this crate cannot make; Controller.start()
        // has itself connected (over TLS) and read it before the script goes on to log "ready".
        let ready = dir.path().join("smtp.log");
        wait_ready(&mut process, || {
            if implicit_tls {
                logged(&ready, "ready")
            } else {
                banner(addr, "220")
            }
        })
        .map(|()| (process, addr))
    });
    Smtp {
        addr,
        user: USER.to_string(),
        password: PASSWORD.to_string(),
        cert,
        maildir,
        process,
        _dir: dir,
    }
}

/// A certificate for 127.0.0.1, self-signed, and its key: `cert.pem` and `key.pem` in `dir`.
fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()])
        .expect("make a certificate for 127.0.0.1");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    fs::write(&cert, certified.cert.pem()).expect("write the certificate");
    fs::write(&key, certified.key_pair.serialize_pem()).expect("write the key");
    (cert, key)
}

fn server(
    describe: Describe,
    addr: SocketAddr,
    root: Option<PathBuf>,
    process: Process,
    dir: TempDir,
) -> Server {
    let (location, env) = describe(addr);
    let env_remove = if location.starts_with("s3:") {
        names(&[PROXY_VARIABLES, garage::AWS_VARIABLES])
    } else {
        names(&[PROXY_VARIABLES])
    };
    Server {
        location,
        env,
        env_remove,
        root,
        addr,
        describe,
        process,
        _dir: dir,
    }
}

// ---------------------------------------------------------------------------------------------
// Processes, ports and readiness, shared by every server.

/// A server process whose stdout and stderr go to a log file; killed and reaped on drop.
struct Process {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Starts `cmd`; a missing program is a panic that says how to install it.
    fn spawn(name: &str, cmd: &mut Command, log: &Path) -> Process {
        let out = File::create(log).expect("create a server log");
        Process::spawn_to(name, cmd, log, out)
    }

    /// As `spawn`, adding to the end of `log`.
    fn spawn_appending(name: &str, cmd: &mut Command, log: &Path) -> Process {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .expect("open a server log");
        Process::spawn_to(name, cmd, log, out)
    }

    fn spawn_to(name: &str, cmd: &mut Command, log: &Path, out: File) -> Process {
        let err = out.try_clone().expect("clone a server log");
        // A server written in Rust that panics says why in one line, which the log's tail
        // then shows, instead of a backtrace that pushes it out.
        cmd.env("RUST_BACKTRACE", "0");
        let child = match cmd.stdin(Stdio::null()).stdout(out).stderr(err).spawn() {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "cannot start {name}: {} not found; {INSTALL}",
                cmd.get_program().to_string_lossy()
            ),
            Err(e) => panic!("cannot start {name} ({cmd:?}): {e}"),
        };
        Process {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
        }
    }

    fn log_tail(&self) -> String {
        tail(&self.log)
    }
}

/// The last 20 lines of a log.
fn tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Why a start failed.
enum Failure {
    /// The server exited saying a port was in use: another process took one of the ports
    /// between our choosing it and the server binding it. Worth another try on new ports.
    PortTaken(String),
    Fatal(String),
}

/// Runs `check` until it succeeds (the server answers), the server exits, or `READY_TIMEOUT`.
fn wait_ready(
    process: &mut Process,
    mut check: impl FnMut() -> Result<(), String>,
) -> Result<(), Failure> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Ok(Some(status)) = process.child.try_wait() {
            return Err(exited(process, status));
        }
        let last = match check() {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if Instant::now() > deadline {
            return Err(Failure::Fatal(format!(
                "{} did not answer within {} s: {last}; its log ends:\n{}",
                process.name,
                READY_TIMEOUT.as_secs(),
                process.log_tail()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn exited(process: &Process, status: ExitStatus) -> Failure {
    let tail = process.log_tail();
    let message = format!("{} exited ({status}); its log ends:\n{tail}", process.name);
    // The whole log: a panic's backtrace can push its message out of the tail.
    let lower = fs::read_to_string(&process.log)
        .unwrap_or_default()
        .to_ascii_lowercase();
    if lower.contains("address already in use") || lower.contains("address in use") {
        Failure::PortTaken(message)
    } else {
        Failure::Fatal(message)
    }
}

/// Starts a server with `n` free loopback ports, on new ports again (up to three tries in all)
/// when it lost one of them to another process; any other failure is a panic saying why.
fn start_on_free_ports<T>(
    name: &str,
    n: usize,
    mut start: impl FnMut(&[u16]) -> Result<T, Failure>,
) -> T {
    let mut tries = 0;
    loop {
        tries += 1;
        match start(&free_ports(n)) {
            Ok(started) => return started,
            Err(Failure::PortTaken(why)) if tries < 3 => {
                eprintln!("{name} lost a port, trying new ones: {why}");
            }
            Err(Failure::PortTaken(why) | Failure::Fatal(why)) => {
                panic!("cannot start {name}: {why}")
            }
        }
    }
}

/// `n` distinct ports that were free a moment ago: bound together on 127.0.0.1, then released
/// for the server to bind.
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("a bound port").port())
        .collect()
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    let timeout = Some(Duration::from_secs(5));
    let _ = stream.set_read_timeout(timeout);
    let _ = stream.set_write_timeout(timeout);
    Ok(stream)
}

/// A line of the server's log at `log` is `line`.
fn logged(log: &Path, line: &str) -> Result<(), String> {
    let text = fs::read_to_string(log).map_err(|e| format!("read {}: {e}", log.display()))?;
    if text.lines().any(|l| l == line) {
        Ok(())
    } else {
        Err(format!("no {line:?} in {} yet", log.display()))
    }
}

/// The server at `addr` speaks first with a line starting `prefix` (FTP's 220, SSH's banner).
fn banner(addr: SocketAddr, prefix: &str) -> Result<(), String> {
    let mut line = String::new();
    BufReader::new(connect(addr)?)
        .read_line(&mut line)
        .map_err(|e| format!("read the banner of {addr}: {e}"))?;
    if line.starts_with(prefix) {
        Ok(())
    } else {
        Err(format!("{addr} greeted with {line:?}, not {prefix:?}"))
    }
}

/// The server at `addr` answers `GET /` (with `headers`) with an HTTP status line; a 5xx is not
/// an answer yet.
fn http_answers(addr: SocketAddr, headers: &str) -> Result<(), String> {
    let mut stream = connect(addr)?;
    let request = format!("GET / HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("send a request to {addr}: {e}"))?;
    let mut head = [0u8; 12];
    stream
        .read_exact(&mut head)
        .map_err(|e| format!("read the answer of {addr}: {e}"))?;
    let head = String::from_utf8_lossy(&head);
    match head.strip_prefix("HTTP/1.") {
        Some(rest) if !rest[2..].starts_with('5') => Ok(()),
        _ => Err(format!("{addr} answered {head:?}")),
    }
}

/// `Basic` credentials: base64 of `user:password`.
pub(crate) fn basic_auth(user: &str, password: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = format!("{user}:{password}").into_bytes();
    let mut out = String::new();
    for group in bytes.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= group.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn temp_dir(kind: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("cairn-{kind}-"))
        .tempdir()
        .expect("create a temp dir for a server")
}

/// `path` if it is a file, else the first `name` on PATH; a panic naming the Debian package
/// and the install command otherwise.
fn require(name: &str, package: &str) -> PathBuf {
    let path = Path::new(name);
    if path.is_absolute() {
        if path.is_file() {
            return path.to_path_buf();
        }
    } else if let Some(found) = which(name) {
        return found;
    }
    panic!("{name} not found (Debian package {package}); {INSTALL}")
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Runs a short command to completion: its stdout, or a message with its stderr.
fn output(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        ))
    }
}
