//! The server against real clients on loopback: a small HTTP/1.1 client on a socket (so that a
//! test sends exactly the bytes it means, path tricks and broken bodies included), rustls for
//! HTTPS and hyper's client for HTTP/2. Each test binds its own server on 127.0.0.1:0 over a
//! fresh directory.

use base64::Engine;
use cairn_serve::{Options, Running, TlsFiles};
use sha2::Digest;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const EXCLUSIVE: &str = "x-cairn-exclusive-create";
const V2: &str = "application/vnd.x.restic.rest.v2";

/// A served directory (`root/srv`) inside a directory of its own (`root`), so that a test can
/// tell whether anything was written beside it.
struct Served {
    outer: tempfile::TempDir,
    server: Running,
}

impl Served {
    fn dir(&self) -> PathBuf {
        self.outer.path().join("srv")
    }

    fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    fn req(&self, method: &str, path: &str, body: &[u8]) -> Reply {
        self.req_with(method, path, &[], body)
    }

    fn req_with(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        request(self.addr(), method, path, headers, body)
    }
}

fn options(dir: &Path) -> Options {
    Options {
        root: dir.to_path_buf(),
        append_only: false,
        private_repos: false,
        htpasswd: None,
        tls: None,
        max_object_size: cairn_serve::DEFAULT_MAX_OBJECT_SIZE,
    }
}

fn serve_with(change: impl FnOnce(&mut Options, &Path)) -> Served {
    let outer = tempfile::tempdir().unwrap();
    let dir = outer.path().join("srv");
    std::fs::create_dir(&dir).unwrap();
    let mut opts = options(&dir);
    change(&mut opts, outer.path());
    let server = cairn_serve::bind("127.0.0.1:0".parse().unwrap(), opts)
        .unwrap()
        .spawn()
        .unwrap();
    Served { outer, server }
}

fn serve() -> Served {
    serve_with(|_, _| {})
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Writes `head` and `body` on `stream`, reads to the end and parses the answer (`Connection:
/// close`, so the answer ends where the stream does). Status 0: the server closed the
/// connection without answering.
fn exchange(mut stream: impl Read + Write, head: &[u8], body: &[u8]) -> Reply {
    // The server may answer (and close) before taking the whole body in.
    let _ = stream.write_all(head).and_then(|()| stream.write_all(body));
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            // A reset or a TLS stream ended without close_notify: the answer, if any, is in.
            Err(_) => break,
        }
    }
    parse_reply(&raw)
}

fn parse_reply(raw: &[u8]) -> Reply {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Reply {
            status: 0,
            headers: vec![],
            body: raw.to_vec(),
        };
    };
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_lowercase(), v.trim().to_string())
        })
        .collect();
    Reply {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

fn head_bytes(method: &str, target: &str, headers: &[(&str, &str)], len: Option<usize>) -> Vec<u8> {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    if let Some(len) = len {
        head.push_str(&format!("Content-Length: {len}\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let len = (method == "POST" || !body.is_empty()).then_some(body.len());
    exchange(connect(addr), &head_bytes(method, path, headers, len), body)
}

fn sha256(b: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(b))
}

/// Every path below `dir`, relative to it.
fn tree(dir: &Path) -> BTreeSet<String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            out.insert(p.strip_prefix(base).unwrap().display().to_string());
            if p.is_dir() && !p.is_symlink() {
                walk(base, &p, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

fn create(s: &Served, repo: &str) {
    let r = s.req("POST", &format!("/{repo}/?create=true"), b"");
    assert_eq!(r.status, 200, "create {repo}: {}", r.text());
}

#[test]
fn create_config_list_read_and_ranges() {
    let s = serve();
    create(&s, "repo");
    assert!(s.dir().join("repo/data/ff").is_dir());
    assert!(s.dir().join("repo/keys").is_dir());

    // The config: absent, created once, read; every answer says creates are exclusive.
    let r = s.req("HEAD", "/repo/config", b"");
    assert_eq!((r.status, r.header(EXCLUSIVE)), (404, Some("1")));
    assert_eq!(s.req("POST", "/repo/config", b"config bytes").status, 200);
    let r = s.req("GET", "/repo/config", b"");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"config bytes"[..]));
    assert_eq!(r.header(EXCLUSIVE), Some("1"));
    let r = s.req("HEAD", "/repo/config", b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("12"));
    assert_eq!(r.header(EXCLUSIVE), Some("1"));
    assert!(r.body.is_empty());
    // A second config is refused, and the first stays.
    let r = s.req("POST", "/repo/config", b"other");
    assert_eq!((r.status, r.header(EXCLUSIVE)), (403, Some("1")));
    assert_eq!(
        std::fs::read(s.dir().join("repo/config")).unwrap(),
        b"config bytes"
    );

    // A pack larger than the pieces a response is read in, stored fanned out as LocalBackend does.
    let pack: Vec<u8> = (0..2_500_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let id = sha256(&pack);
    assert_eq!(
        s.req("POST", &format!("/repo/data/{id}"), &pack).status,
        200
    );
    assert_eq!(
        std::fs::read(s.dir().join("repo/data").join(&id[..2]).join(&id)).unwrap(),
        pack
    );
    let r = s.req("GET", &format!("/repo/data/{id}"), b"");
    assert_eq!(r.status, 200);
    assert!(r.body == pack, "the whole pack reads back");
    let r = s.req("HEAD", &format!("/repo/data/{id}"), b"");
    assert_eq!(r.header("content-length"), Some("2500000"));

    // Ranges: across the first piece's end, open-ended, suffix, and out of bounds.
    let r = s.req_with(
        "GET",
        &format!("/repo/data/{id}"),
        &[("Range", "bytes=1048570-1048585")],
        b"",
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &pack[1_048_570..=1_048_585]);
    assert_eq!(
        r.header("content-range"),
        Some("bytes 1048570-1048585/2500000")
    );
    let r = s.req_with(
        "GET",
        &format!("/repo/data/{id}"),
        &[("Range", "bytes=2499990-")],
        b"",
    );
    assert_eq!((r.status, r.body.as_slice()), (206, &pack[2_499_990..]));
    let r = s.req_with(
        "GET",
        &format!("/repo/data/{id}"),
        &[("Range", "bytes=-4")],
        b"",
    );
    assert_eq!((r.status, r.body.as_slice()), (206, &pack[2_499_996..]));
    let r = s.req_with(
        "GET",
        &format!("/repo/data/{id}"),
        &[("Range", "bytes=2500000-")],
        b"",
    );
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some("bytes */2500000"));

    // Listings: v1 names, v2 names and sizes when asked for.
    let snap = b"snapshot".to_vec();
    let snap_id = sha256(&snap);
    assert_eq!(
        s.req("POST", &format!("/repo/snapshots/{snap_id}"), &snap)
            .status,
        200
    );
    let r = s.req("GET", "/repo/data/", b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), format!("[\"{id}\"]"));
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.x.restic.rest.v1")
    );
    let r = s.req_with("GET", "/repo/snapshots/", &[("Accept", V2)], b"");
    assert_eq!(r.text(), format!("[{{\"name\":\"{snap_id}\",\"size\":8}}]"));
    assert_eq!(r.header("content-type"), Some(V2));
    let r = s.req_with("GET", "/repo/keys/", &[("Accept", V2)], b"");
    assert_eq!((r.status, r.text().as_str()), (200, "[]"));

    // Create-only: a second POST of the same name is refused and changes nothing.
    let r = s.req("POST", &format!("/repo/snapshots/{snap_id}"), &snap);
    assert_eq!(r.status, 403, "{}", r.text());
    // An upload whose bytes are not its name is refused and leaves nothing.
    let wrong = sha256(b"something else");
    let r = s.req("POST", &format!("/repo/index/{wrong}"), b"index bytes");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(!s.dir().join("repo/index").join(&wrong).exists());
    assert_eq!(
        std::fs::read_dir(s.dir().join("repo/index"))
            .unwrap()
            .count(),
        0
    );

    // Without append-only, objects can be deleted; then they are gone.
    assert_eq!(
        s.req("DELETE", &format!("/repo/data/{id}"), b"").status,
        200
    );
    assert_eq!(s.req("GET", &format!("/repo/data/{id}"), b"").status, 404);
    assert_eq!(
        s.req("DELETE", &format!("/repo/data/{id}"), b"").status,
        404
    );

    // Creating a repository that exists is idempotent; a directory that is no repository
    // is not taken for one.
    create(&s, "repo");
    std::fs::create_dir_all(s.dir().join("other/stuff")).unwrap();
    assert_eq!(s.req("POST", "/other/?create=true", b"").status, 409);
    // Nested repository paths are repositories of their own.
    create(&s, "user/deep/repo");
    assert!(s.dir().join("user/deep/repo/locks").is_dir());
    // Wrong methods and unknown paths.
    let r = s.req("PUT", "/repo/config", b"x");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("HEAD, GET, POST, DELETE"));
    assert_eq!(s.req("GET", "/repo/", b"").status, 405);
    assert_eq!(s.req("POST", "/repo/", b"").status, 400);
    assert_eq!(s.req("GET", "/repo/config/x", b"").status, 404);
    assert_eq!(s.req("GET", "/nothing/keys/", b"").status, 404);
}

#[test]
fn append_only_refuses_every_delete_but_of_locks() {
    let s = serve_with(|o, _| o.append_only = true);
    create(&s, "r");
    assert_eq!(s.req("POST", "/r/config", b"cfg").status, 200);
    let mut stored = Vec::new();
    for t in ["keys", "data", "index", "snapshots", "locks"] {
        let body = format!("a {t} object").into_bytes();
        let name = sha256(&body);
        let r = s.req("POST", &format!("/r/{t}/{name}"), &body);
        assert_eq!(r.status, 200, "{t}: {}", r.text());
        stored.push((t, name));
    }
    for (t, name) in &stored {
        let r = s.req("DELETE", &format!("/r/{t}/{name}"), b"");
        if *t == "locks" {
            assert_eq!(r.status, 200, "a lock may be removed");
            assert_eq!(s.req("HEAD", &format!("/r/{t}/{name}"), b"").status, 404);
        } else {
            assert_eq!(r.status, 403, "{t}: {}", r.text());
            assert_eq!(s.req("HEAD", &format!("/r/{t}/{name}"), b"").status, 200);
            // No overwrite either.
            let r = s.req("POST", &format!("/r/{t}/{name}"), b"replacement");
            assert_eq!(r.status, 403, "{t}");
        }
    }
    assert_eq!(s.req("DELETE", "/r/config", b"").status, 403);
    assert_eq!(s.req("POST", "/r/config", b"new config").status, 403);
    assert_eq!(std::fs::read(s.dir().join("r/config")).unwrap(), b"cfg");
    // A verdict is named by its session, not its content: locks are not checked by hash.
    let verdict = sha256(b"cairn verdict 0123456789abcdef");
    assert_eq!(
        s.req("POST", &format!("/r/locks/{verdict}"), b"cairnvd1\x01")
            .status,
        200
    );
}

fn bcrypt_line(user: &str, password: &str) -> String {
    // What `htpasswd -B` writes: the $2y$ variant.
    let hash = bcrypt::hash_with_result(password, 4)
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY);
    format!("{user}:{hash}\n")
}

fn sha_line(user: &str, password: &str) -> String {
    // What `htpasswd -s` writes.
    let digest = <sha1::Sha1 as sha2::Digest>::digest(password.as_bytes());
    let b64 = base64::engine::general_purpose::STANDARD.encode(digest);
    format!("{user}:{{SHA}}{b64}\n")
}

fn basic(user: &str, password: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {b64}")
}

fn with_users(private: bool) -> Served {
    serve_with(|o, outer| {
        let file = outer.join("htpasswd");
        let text = bcrypt_line("alice", "alice pw") + &sha_line("bob", "bob pw") + "carol:plain\n";
        std::fs::write(&file, text).unwrap();
        o.htpasswd = Some(file);
        o.private_repos = private;
    })
}

#[test]
fn htpasswd_bcrypt_and_sha_users_get_in_and_nobody_else() {
    let s = with_users(false);
    let alice = basic("alice", "alice pw");
    let bob = basic("bob", "bob pw");
    let as_ = |auth: &str, method: &str, path: &str| {
        s.req_with(method, path, &[("Authorization", auth)], b"")
    };
    assert_eq!(as_(&alice, "POST", "/shared/?create=true").status, 200);
    assert_eq!(as_(&bob, "GET", "/shared/keys/").status, 200);
    // Wrong password, unknown user, a user whose line is unusable, nothing, garbage.
    for auth in [
        basic("alice", "bob pw"),
        basic("bob", "alice pw"),
        basic("mallory", "alice pw"),
        basic("carol", "plain"),
        "Basic !!!".to_string(),
        "Bearer abc".to_string(),
    ] {
        let r = as_(&auth, "GET", "/shared/keys/");
        assert_eq!(r.status, 401, "{auth}");
        assert!(r.header("www-authenticate").unwrap().starts_with("Basic"));
    }
    let r = s.req("GET", "/shared/keys/", b"");
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").is_some());
    // Nothing was created by the refused requests.
    let r = s.req("POST", "/intruder/?create=true", b"");
    assert_eq!(r.status, 401);
    assert!(!s.dir().join("intruder").exists());
}

#[test]
fn private_repos_keep_each_user_under_their_own_name() {
    let s = with_users(true);
    let alice = basic("alice", "alice pw");
    let bob = basic("bob", "bob pw");
    let send = |auth: &str, method: &str, path: &str, body: &[u8]| {
        s.req_with(method, path, &[("Authorization", auth)], body)
    };
    assert_eq!(
        send(&alice, "POST", "/alice/work/?create=true", b"").status,
        200
    );
    assert_eq!(
        send(&alice, "POST", "/alice/work/config", b"cfg").status,
        200
    );
    assert_eq!(send(&bob, "POST", "/bob/?create=true", b"").status, 200);
    let body = b"bob's snapshot";
    let id = sha256(body);
    assert_eq!(
        send(&bob, "POST", &format!("/bob/snapshots/{id}"), body).status,
        200
    );
    // Neither reaches the other's repositories, read or write, nor the root.
    assert_eq!(send(&bob, "GET", "/alice/work/config", b"").status, 403);
    assert_eq!(send(&bob, "HEAD", "/alice/work/config", b"").status, 403);
    assert_eq!(send(&bob, "GET", "/alice/work/keys/", b"").status, 403);
    assert_eq!(
        send(&bob, "POST", "/alice/evil/?create=true", b"").status,
        403
    );
    assert_eq!(
        send(&alice, "GET", &format!("/bob/snapshots/{id}"), b"").status,
        403
    );
    assert_eq!(
        send(&alice, "DELETE", &format!("/bob/snapshots/{id}"), b"").status,
        403
    );
    assert_eq!(send(&alice, "POST", "/?create=true", b"").status, 403);
    assert_eq!(send(&alice, "GET", "/config", b"").status, 403);
    // An encoded name is the name: no way around by spelling it otherwise.
    assert_eq!(send(&bob, "GET", "/%61lice/work/config", b"").status, 403);
    assert_eq!(
        send(&bob, "GET", "/bob/../alice/work/config", b"").status,
        400
    );
    assert!(!s.dir().join("alice/evil").exists());
    assert!(s.dir().join("bob/snapshots").join(&id).exists());
    let r = send(&alice, "GET", "/alice/work/config", b"");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"cfg"[..]));
}

#[test]
fn path_tricks_are_refused_and_write_nothing_outside_the_directory() {
    let s = serve();
    create(&s, "repo");
    std::fs::write(s.outer.path().join("secret"), b"outside").unwrap();
    let outside_before = tree(s.outer.path());
    let id = sha256(b"x");
    let targets = [
        "/../secret".to_string(),
        "/../../etc/passwd".to_string(),
        "/%2e%2e/secret".to_string(),
        "/%2E%2E/%2E%2E/etc/config".to_string(),
        "/repo/..%2f..%2fsecret".to_string(),
        "/repo%2F..%2F..%2Fx/config".to_string(),
        "/repo/data/..%2F..%2F..%2Fsecret".to_string(),
        format!("/repo/data/%2e%2e%2f{id}"),
        "/a%00b/config".to_string(),
        "/./repo/config".to_string(),
        "/.tmp-0011223344556677/?create=true".to_string(),
        "//repo/config".to_string(),
        "/repo/data/../config".to_string(),
        format!("/repo/keys/{}", id.to_uppercase()),
        "/repo/keys/secret".to_string(),
        format!("/repo/keys/{id}/../../../secret"),
        "http://evil/../../secret".to_string(),
        "*".to_string(),
        format!("/{}/config", "x".repeat(300)),
        "/a\\..\\..\\secret/config".to_string(),
    ];
    for target in &targets {
        for method in ["GET", "HEAD", "POST", "DELETE"] {
            let query = if method == "POST" && !target.contains('?') {
                "?create=true"
            } else {
                ""
            };
            let head = head_bytes(method, &format!("{target}{query}"), &[], Some(1));
            let r = exchange(connect(s.addr()), &head, b"x");
            assert!(
                matches!(r.status, 400 | 404),
                "{method} {target}: {} {}",
                r.status,
                r.text()
            );
        }
    }
    // Control bytes in the request line: hyper refuses them before any handler runs.
    let r = exchange(
        connect(s.addr()),
        b"GET /repo/\x00/config HTTP/1.1\r\nHost: t\r\n\r\n",
        b"",
    );
    assert!(matches!(r.status, 0 | 400), "{}", r.status);
    // Nothing appeared beside the served directory, and inside it only the repository.
    assert_eq!(tree(s.outer.path()), outside_before);
    assert_eq!(
        std::fs::read(s.outer.path().join("secret")).unwrap(),
        b"outside"
    );
    assert!(tree(&s.dir()).iter().all(|p| p.starts_with("repo")));
    // The server is still up.
    assert_eq!(s.req("GET", "/repo/keys/", b"").status, 200);
}

#[test]
fn a_body_shorter_than_its_length_or_broken_off_leaves_no_object() {
    let s = serve_with(|o, _| o.max_object_size = 1 << 20);
    create(&s, "repo");
    let body = vec![7u8; 4000];
    let id = sha256(&body);
    let path = format!("/repo/data/{id}");
    // Half the body, then the client closes its side.
    let mut stream = connect(s.addr());
    stream
        .write_all(&head_bytes("POST", &path, &[], Some(body.len())))
        .unwrap();
    stream.write_all(&body[..2000]).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    // Half the body, then the connection is dropped altogether.
    let mut stream = connect(s.addr());
    stream
        .write_all(&head_bytes("POST", &path, &[], Some(body.len())))
        .unwrap();
    stream.write_all(&body[..3000]).unwrap();
    drop(stream);
    // More than the limit is refused before it is read.
    let big = head_bytes(
        "POST",
        &format!("/repo/data/{}", sha256(b"big")),
        &[],
        Some(2 << 20),
    );
    let r = exchange(connect(s.addr()), &big, b"");
    assert_eq!(r.status, 413, "{}", r.text());
    // A chunked body past the limit as well.
    let chunked = head_bytes(
        "POST",
        &format!("/repo/data/{}", sha256(b"chunked")),
        &[("Transfer-Encoding", "chunked")],
        None,
    );
    let mut chunks = Vec::new();
    for _ in 0..20 {
        chunks.extend_from_slice(format!("{:x}\r\n", 100_000).as_bytes());
        chunks.extend_from_slice(&vec![1u8; 100_000]);
        chunks.extend_from_slice(b"\r\n");
    }
    chunks.extend_from_slice(b"0\r\n\r\n");
    let r = exchange(connect(s.addr()), &chunked, &chunks);
    assert!(matches!(r.status, 0 | 413), "{}", r.status);
    std::thread::sleep(Duration::from_millis(300));
    // No object, and no temporary left in the pack's directory.
    let fan = s.dir().join("repo/data").join(&id[..2]);
    assert_eq!(std::fs::read_dir(&fan).unwrap().count(), 0);
    assert_eq!(s.req("HEAD", &path, b"").status, 404);
    // The whole body then goes through.
    assert_eq!(s.req("POST", &path, &body).status, 200);
    assert_eq!(std::fs::read(fan.join(&id)).unwrap(), body);
}

#[test]
fn stalled_and_dropped_connections_do_not_stop_the_server() {
    let s = serve();
    create(&s, "repo");
    let pack = vec![3u8; 3 << 20];
    let id = sha256(&pack);
    assert_eq!(
        s.req("POST", &format!("/repo/data/{id}"), &pack).status,
        200
    );
    // Slowloris: many connections that send half a request and wait.
    let stalled: Vec<TcpStream> = (0..64)
        .map(|_| {
            let mut c = connect(s.addr());
            c.write_all(b"POST /repo/data/ HTTP/1.1\r\nHost: t\r\nContent-Le")
                .unwrap();
            c
        })
        .collect();
    // Clients that read a little of a large object and go away.
    for _ in 0..8 {
        let mut c = connect(s.addr());
        c.write_all(&head_bytes("GET", &format!("/repo/data/{id}"), &[], None))
            .unwrap();
        let mut some = [0u8; 1000];
        c.read_exact(&mut some).unwrap();
        drop(c);
    }
    // Garbage instead of HTTP.
    let r = exchange(
        connect(s.addr()),
        b"\x16\x03\x01 not http at all\r\n\r\n",
        b"",
    );
    assert!(matches!(r.status, 0 | 400));
    // Everyone else is still served, whole.
    let r = s.req("GET", &format!("/repo/data/{id}"), b"");
    assert_eq!(r.status, 200);
    assert!(r.body == pack);
    drop(stalled);
    assert_eq!(s.req("GET", "/repo/data/", b"").status, 200);
}

#[test]
fn http2_without_tls_is_served() {
    let s = serve();
    create(&s, "repo");
    let addr = s.addr();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (status, media) = runtime.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tcp),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let req = hyper::Request::get(format!("http://{addr}/repo/index/"))
            .header("accept", V2)
            .body(String::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.version(), hyper::Version::HTTP_2);
        let media = resp.headers()["content-type"].to_str().unwrap().to_string();
        (resp.status().as_u16(), media)
    });
    assert_eq!((status, media.as_str()), (200, V2));
}

fn tls_files(outer: &Path) -> (TlsFiles, Vec<u8>) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let cert = outer.join("cert.pem");
    let key = outer.join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    (TlsFiles { cert, key }, certified.cert.der().to_vec())
}

#[test]
fn https_with_a_self_signed_certificate() {
    let mut der = Vec::new();
    let s = serve_with(|o, outer| {
        let (files, cert) = tls_files(outer);
        o.tls = Some(files);
        der = cert;
    });
    assert!(s.server.url().starts_with("https://127.0.0.1:"));
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der.into()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let config = Arc::new(config);
    let over_tls = |method: &str, path: &str, body: &[u8]| {
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(config.clone(), name).unwrap();
        let tls = rustls::StreamOwned::new(conn, connect(s.addr()));
        exchange(tls, &head_bytes(method, path, &[], Some(body.len())), body)
    };
    assert_eq!(over_tls("POST", "/repo/?create=true", b"").status, 200);
    assert_eq!(over_tls("POST", "/repo/config", b"cfg").status, 200);
    let r = over_tls("GET", "/repo/config", b"");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"cfg"[..]));
    assert_eq!(r.header(EXCLUSIVE), Some("1"));
    // Plain HTTP to the TLS port gets no answer, and the server goes on.
    let r = s.req("GET", "/repo/config", b"");
    assert_ne!(r.status, 200);
    assert_eq!(over_tls("GET", "/repo/keys/", b"").status, 200);
}

#[test]
fn unusable_options_are_invalid_input() {
    let dir = tempfile::tempdir().unwrap();
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let kind = |o: Options| cairn_serve::bind(addr, o).err().map(|e| e.kind);
    let invalid = Some(cairn_serve::ErrorKind::InvalidInput);
    assert_eq!(kind(options(&dir.path().join("missing"))), invalid);
    let mut o = options(dir.path());
    o.private_repos = true;
    assert_eq!(kind(o), invalid);
    let mut o = options(dir.path());
    o.htpasswd = Some(dir.path().join("no-such-file"));
    assert_eq!(kind(o), invalid);
    let empty = dir.path().join("empty-htpasswd");
    std::fs::write(&empty, "# nobody\nmd5user:$apr1$x$y\n").unwrap();
    let mut o = options(dir.path());
    o.htpasswd = Some(empty);
    assert_eq!(kind(o), invalid);
    // A key that is not the certificate's.
    let (mut files, _) = tls_files(dir.path());
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    files.key = tls_files(&other).0.key;
    let mut o = options(dir.path());
    o.tls = Some(files);
    assert_eq!(kind(o), invalid);
    let mut o = options(dir.path());
    o.tls = Some(TlsFiles {
        cert: dir.path().join("empty-htpasswd"),
        key: dir.path().join("empty-htpasswd"),
    });
    assert_eq!(kind(o), invalid);
}

#[test]
fn of_clients_racing_to_create_one_name_exactly_one_wins() {
    let s = serve();
    create(&s, "repo");
    // A verdict's name is fixed by its session, so rivals send different bytes under it.
    let name = sha256(b"cairn verdict 0011223344556677");
    for round in 0..5 {
        let name = format!("{}{round}", &name[..63]);
        let path = format!("/repo/locks/{name}");
        let addr = s.addr();
        let statuses: Vec<(u16, Vec<u8>)> = std::thread::scope(|scope| {
            let racers: Vec<_> = (0..8u8)
                .map(|i| {
                    let path = path.clone();
                    scope.spawn(move || {
                        let body = vec![i; 100_000];
                        (request(addr, "POST", &path, &[], &body).status, body)
                    })
                })
                .collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        let winners: Vec<_> = statuses
            .iter()
            .filter(|(status, _)| *status == 200)
            .collect();
        assert_eq!(
            winners.len(),
            1,
            "round {round}: {:?}",
            statuses.iter().map(|s| s.0).collect::<Vec<_>>()
        );
        assert!(statuses
            .iter()
            .all(|(status, _)| matches!(status, 200 | 403)));
        let stored = std::fs::read(s.dir().join("repo/locks").join(&name)).unwrap();
        assert_eq!(stored, winners[0].1, "the stored bytes are the winner's");
    }
}
