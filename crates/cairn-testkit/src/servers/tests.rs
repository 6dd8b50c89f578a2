//! Each server answers a client of its own protocol the way cairn's backend will use it, through
//! the location and environment the server hands out: raw HTTP for REST and WebDAV, Python's
//! ftplib for FTP, ssh and sftp for SFTP, rclone's S3 client for Garage, raw SMTP for aiosmtpd.

use super::*;
use crate::{FaultProxy, Faults};
use std::io::Write;

/// One HTTP/1.1 request with `Connection: close`: the answer's status and body.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: Option<(&str, &str)>,
    body: &[u8],
) -> (u16, Vec<u8>) {
    let mut stream = connect(addr).unwrap();
    let auth = auth.map_or(String::new(), |(u, p)| {
        format!("Authorization: Basic {}\r\n", basic_auth(u, p))
    });
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(&answer)));
    let head = String::from_utf8_lossy(&answer[..split]).to_ascii_lowercase();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut body = answer[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    (status, body)
}

fn dechunk(mut chunked: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = chunked.windows(2).position(|w| w == b"\r\n").unwrap();
        let size_hex = String::from_utf8_lossy(&chunked[..line_end]).into_owned();
        let size = usize::from_str_radix(size_hex.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            return body;
        }
        let start = line_end + 2;
        body.extend_from_slice(&chunked[start..start + size]);
        chunked = &chunked[start + size + 2..];
    }
}

#[test]
fn servers_rest_rclone_creates_a_repository_and_serves_files_put_on_disk() {
    let server = rest_rclone("repo");
    assert_eq!(server.location, format!("rest:http://{}/repo", server.addr));
    let root = server.root.clone().unwrap();
    assert_eq!(http(server.addr, "GET", "/repo/config", None, b"").0, 404);
    assert_eq!(
        http(server.addr, "POST", "/repo/?create=true", None, b"").0,
        200
    );
    assert!(root.join("repo").is_dir(), "{}", server.log_tail());
    assert_eq!(http(server.addr, "GET", "/repo/config", None, b"").0, 404);
    fs::write(root.join("repo/config"), b"a config").unwrap();
    let (status, body) = http(server.addr, "GET", "/repo/config", None, b"");
    assert_eq!((status, body.as_slice()), (200, &b"a config"[..]));
}

#[test]
fn servers_webdav_rclone_needs_its_password_and_stores_plain_files() {
    let server = webdav_rclone("repo");
    let auth = Some((USER, PASSWORD));
    assert_eq!(
        server.location,
        format!("webdav:http://{USER}:{PASSWORD}@{}/repo", server.addr)
    );
    assert_eq!(http(server.addr, "GET", "/", None, b"").0, 401);
    assert_eq!(http(server.addr, "MKCOL", "/repo", auth, b"").0, 201);
    let put = http(server.addr, "PUT", "/repo/config", auth, b"over webdav").0;
    assert!(put == 201 || put == 204, "PUT answered {put}");
    let root = server.root.clone().unwrap();
    assert_eq!(fs::read(root.join("repo/config")).unwrap(), b"over webdav");
    // A file a test puts on disk is served at once: rclone's directory cache is off.
    fs::write(root.join("repo/copied"), b"copied in").unwrap();
    let (status, body) = http(server.addr, "GET", "/repo/copied", auth, b"");
    assert_eq!((status, body.as_slice()), (200, &b"copied in"[..]));
}

const FTP_CLIENT: &str = r#"
import ftplib, io, sys
host, port, user, password, repo = sys.argv[1:]
ftp = ftplib.FTP()
ftp.connect(host, int(port), timeout=10)
ftp.login(user, password)
ftp.mkd(repo)
ftp.storbinary("STOR " + repo + "/config", io.BytesIO(b"over ftp"))
back = io.BytesIO()
ftp.retrbinary("RETR " + repo + "/config", back.write)
assert back.getvalue() == b"over ftp", back.getvalue()
ftp.quit()
other = ftplib.FTP()
other.connect(host, int(port), timeout=10)
try:
    other.login(user, password + "-wrong")
    sys.exit("logged in with a wrong password")
except ftplib.error_perm as e:
    print("refused:", e)
"#;

#[test]
fn servers_ftp_stores_what_its_user_sends_and_refuses_a_wrong_password() {
    let server = ftp("repo");
    let rest = server.location.strip_prefix("ftp://").unwrap();
    let (credentials, rest) = rest.split_once('@').unwrap();
    let (user, password) = credentials.split_once(':').unwrap();
    let (host_port, repo) = rest.split_once('/').unwrap();
    let (host, port) = host_port.split_once(':').unwrap();
    assert_eq!(
        (host, port),
        ("127.0.0.1", &*server.addr.port().to_string())
    );
    let out = Command::new("/usr/bin/python3")
        .args(["-c", FTP_CLIENT, host, port, user, password, repo])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ftplib: {}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log_tail()
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("refused: 530"));
    let root = server.root.clone().unwrap();
    assert_eq!(fs::read(root.join("repo/config")).unwrap(), b"over ftp");
}

/// The words of `CAIRN_SFTP_COMMAND`, as cairn splits it.
fn sftp_command(env: &[(String, String)]) -> Vec<String> {
    let (_, command) = env
        .iter()
        .find(|(k, _)| k == "CAIRN_SFTP_COMMAND")
        .expect("CAIRN_SFTP_COMMAND");
    command.split_whitespace().map(str::to_string).collect()
}

/// Runs the ssh command and speaks SFTP's first exchange on its stdin and stdout: INIT (type 1,
/// version 3) must be answered by VERSION (type 2).
fn sftp_version(words: &[String]) -> Result<u32, String> {
    let mut child = Command::new(&words[0])
        .args(&words[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    stdin.write_all(&[0, 0, 0, 5, 1, 0, 0, 0, 3]).unwrap();
    let mut len = [0u8; 4];
    let answer = stdout.read_exact(&mut len).and_then(|()| {
        let mut packet = vec![0u8; u32::from_be_bytes(len) as usize];
        stdout.read_exact(&mut packet).map(|()| packet)
    });
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    match answer {
        Ok(packet) if packet[0] == 2 => Ok(u32::from_be_bytes(packet[1..5].try_into().unwrap())),
        Ok(packet) => Err(format!("answered packet type {}", packet[0])),
        Err(e) => Err(format!("{e}: {}", String::from_utf8_lossy(&out.stderr))),
    }
}

#[test]
fn servers_sftp_answers_the_ssh_command_given_to_cairn_and_only_with_its_key() {
    let server = sftp("repo");
    let root = server.root.clone().unwrap();
    let user = output(Command::new("id").arg("-un")).unwrap();
    assert_eq!(
        server.location,
        format!(
            "sftp://{}@{}/{}/repo",
            user.trim(),
            server.addr,
            root.display()
        )
    );
    let words = sftp_command(&server.env);
    assert_eq!(sftp_version(&words), Ok(3), "{}", server.log_tail());

    // The sftp client, with the same options (its port flag is -P), puts a file where the
    // location says.
    let destination = words.iter().position(|w| w.contains('@')).unwrap();
    let options: Vec<&str> = words[1..destination]
        .iter()
        .map(|w| if w == "-p" { "-P" } else { w.as_str() })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("config"), b"over sftp").unwrap();
    let batch = dir.path().join("batch");
    let repo = root.join("repo");
    fs::write(
        &batch,
        format!(
            "mkdir {0}\nput {1} {0}/config\nls {0}\n",
            repo.display(),
            dir.path().join("config").display()
        ),
    )
    .unwrap();
    let out = Command::new("sftp")
        .args(&options)
        .arg("-b")
        .arg(&batch)
        .arg(&words[destination])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sftp: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fs::read(repo.join("config")).unwrap(), b"over sftp");

    // Without the generated key there is no way in: no password, no agent key.
    let key = words.iter().position(|w| w == "-i").unwrap();
    let mut keyless = words.clone();
    keyless.drain(key..key + 2);
    assert!(sftp_version(&keyless).is_err());
}

#[test]
fn servers_sftp_through_a_proxy_keeps_checking_the_host_key() {
    let server = sftp("repo");
    let proxy = FaultProxy::start(server.addr, Faults::default());
    let (location, env) = server.via(proxy.addr());
    assert!(location.contains(&proxy.addr().to_string()), "{location}");
    assert_eq!(sftp_version(&sftp_command(&env)), Ok(3));
}

#[test]
fn servers_rest_through_a_fault_proxy_gets_the_error_then_the_answer() {
    let server = rest_rclone("repo");
    let faults = Faults {
        seed: 1,
        errors: 1,
        chance: 1.0,
        ..Faults::default()
    };
    let proxy = FaultProxy::start(server.addr, faults);
    let (location, _) = server.via(proxy.addr());
    assert_eq!(location, format!("rest:http://{}/repo", proxy.addr()));
    let first = http(proxy.addr(), "POST", "/repo/?create=true", None, b"").0;
    assert!(first == 500 || first == 503, "{first}");
    assert!(!server.root.as_ref().unwrap().join("repo").exists());
    assert_eq!(
        http(proxy.addr(), "POST", "/repo/?create=true", None, b"").0,
        200
    );
    assert_eq!(proxy.injected().errors, 1);
}

/// rclone as the S3 client, configured from a location and environment as cairn would be.
fn rclone_s3(location: &str, env: &[(String, String)], args: &[&str]) -> Result<String, String> {
    let remove = names(&[PROXY_VARIABLES, garage::AWS_VARIABLES]);
    let rest = location.strip_prefix("s3:").unwrap();
    let (endpoint, bucket) = rest.rsplit_once('/').unwrap();
    let args: Vec<String> = args
        .iter()
        .map(|a| a.replace("BUCKET:", &format!(":s3:{bucket}/")))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let mut rclone = Command::new(require("rclone", "rclone"));
    output(
        apply_env(&mut rclone, &remove, env)
            .arg("--config")
            .arg(dir.path().join("rclone.conf"))
            .args(["--retries", "1", "--low-level-retries", "1"])
            .args(&args)
            .env("RCLONE_S3_PROVIDER", "Other")
            .env("RCLONE_S3_ENV_AUTH", "true")
            .env("RCLONE_S3_ENDPOINT", endpoint)
            .env("RCLONE_S3_REGION", GARAGE_REGION)
            .env("RCLONE_S3_FORCE_PATH_STYLE", "true")
            .env("RCLONE_S3_NO_CHECK_BUCKET", "true")
            .current_dir(dir.path()),
    )
}

fn put(location: &str, env: &[(String, String)], name: &str, content: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(name);
    fs::write(&file, content).unwrap();
    rclone_s3(
        location,
        env,
        &["copyto", file.to_str().unwrap(), &format!("BUCKET:{name}")],
    )
    .unwrap();
}

#[test]
fn servers_s3_garage_lets_the_generated_key_write_and_list_the_bucket() {
    let server = s3_garage("bucket");
    assert_eq!(server.location, format!("s3:http://{}/bucket", server.addr));
    assert!(server.root.is_none());
    put(&server.location, &server.env, "config", "over s3");
    let listed = rclone_s3(&server.location, &server.env, &["lsf", "BUCKET:"]).unwrap();
    assert_eq!(listed.trim(), "config");
    let read = rclone_s3(&server.location, &server.env, &["cat", "BUCKET:config"]).unwrap();
    assert_eq!(read, "over s3");
    let wrong: Vec<(String, String)> = server
        .env
        .iter()
        .map(|(k, v)| match k.as_str() {
            "AWS_SECRET_ACCESS_KEY" => (k.clone(), format!("{v}0")),
            _ => (k.clone(), v.clone()),
        })
        .collect();
    assert!(rclone_s3(&server.location, &wrong, &["lsf", "BUCKET:"]).is_err());
}

#[test]
fn servers_garage_cluster_writes_with_a_node_down_and_takes_it_back() {
    let mut cluster = GarageCluster::start("bucket");
    put(
        &cluster.location,
        &cluster.env,
        "before",
        "written by three",
    );
    cluster.stop_node(2);
    assert!(connect(cluster.s3_addr(2)).is_err(), "node 2 still answers");
    // Replication factor 3 with two nodes up still has a write quorum.
    put(&cluster.location, &cluster.env, "during", "written by two");
    cluster.start_node(2);
    let on_restarted = cluster.location_at(2);
    let listed = rclone_s3(&on_restarted, &cluster.env, &["lsf", "BUCKET:"]).unwrap();
    assert_eq!(listed, "before\nduring\n");
    let read = rclone_s3(&on_restarted, &cluster.env, &["cat", "BUCKET:during"]).unwrap();
    assert_eq!(read, "written by two");
}

#[test]
fn servers_a_missing_binary_is_a_failure_naming_the_install_command() {
    let panic =
        std::panic::catch_unwind(|| require("cairn-no-such-server", "cairn-no-such-package"))
            .expect_err("a missing binary must fail the test");
    let message = panic.downcast_ref::<String>().unwrap();
    assert!(message.contains("cargo xtask servers"), "{message}");
    assert!(message.contains("cairn-no-such-package"), "{message}");
}

#[test]
fn servers_a_server_that_exits_is_a_failure_quoting_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut process = Process::spawn(
        "a failing server",
        Command::new("sh").args(["-c", "echo 'cannot open the data dir' >&2; exit 3"]),
        &dir.path().join("log"),
    );
    match wait_ready(&mut process, || Err("not yet".to_string())) {
        Err(Failure::Fatal(why)) => {
            assert!(why.contains("cannot open the data dir"), "{why}");
            assert!(why.contains("exit status: 3"), "{why}");
        }
        Err(Failure::PortTaken(why)) => panic!("not a port clash: {why}"),
        Ok(()) => panic!("an exited server was taken for ready"),
    }
}

/// restic, whose location syntax cairn's follows, initializes a repository at the location and
/// with the environment a server hands out: the locations mean what restic means by them.
fn restic_init(location: &str, remove: &[String], env: &[(String, String)]) {
    let dir = tempfile::tempdir().unwrap();
    let mut restic = Command::new(require("restic", "restic"));
    apply_env(&mut restic, remove, env)
        .args(["--no-cache", "-r", location])
        .env("RESTIC_PASSWORD", "restic-password")
        .env_remove("RESTIC_REPOSITORY")
        .env_remove("RESTIC_PASSWORD_FILE")
        .env_remove("RESTIC_PASSWORD_COMMAND")
        .current_dir(dir.path());
    if let Some((_, command)) = env.iter().find(|(k, _)| k == "CAIRN_SFTP_COMMAND") {
        restic.args(["-o", &format!("sftp.command={command}")]);
    }
    restic.arg("init");
    if let Err(e) = output(&mut restic) {
        panic!("restic init at {location}: {e}");
    }
}

#[test]
fn servers_locations_mean_what_restic_means_by_them() {
    let rest = rest_rclone("repo");
    restic_init(&rest.location, &rest.env_remove, &rest.env);
    assert!(rest.root.as_ref().unwrap().join("repo/config").is_file());

    let sftp = sftp("repo");
    restic_init(&sftp.location, &sftp.env_remove, &sftp.env);
    assert!(sftp.root.as_ref().unwrap().join("repo/config").is_file());

    let s3 = s3_garage("bucket");
    restic_init(&s3.location, &s3.env_remove, &s3.env);
    let listed = rclone_s3(&s3.location, &s3.env, &["lsf", "BUCKET:"]).unwrap();
    assert!(listed.lines().any(|l| l == "config"), "{listed}");
}

/// Sends `line` (unless empty) and reads one SMTP reply, multi-line ones whole: the reply's
/// code and its last line.
fn smtp_say(stream: &mut TcpStream, reader: &mut BufReader<TcpStream>, line: &str) -> String {
    if !line.is_empty() {
        stream.write_all(format!("{line}\r\n").as_bytes()).unwrap();
    }
    loop {
        let mut reply = String::new();
        reader.read_line(&mut reply).unwrap();
        // "250-..." continues, "250 ..." ends the reply.
        if reply.as_bytes().get(3) != Some(&b'-') {
            return reply;
        }
    }
}

#[test]
fn servers_smtp_stores_what_it_receives_and_checks_its_password() {
    let server = smtp();
    let mut stream = connect(server.addr).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut say = |line: &str| smtp_say(&mut stream, &mut reader, line);
    assert!(say("").starts_with("220"));
    assert!(say("EHLO test").starts_with("250"));
    // AUTH PLAIN with a wrong password: base64 of "\0cairn\0nope".
    assert!(say("AUTH PLAIN AGNhaXJuAG5vcGU=").starts_with("535"));
    assert!(say("MAIL FROM:<cairn@example.com>").starts_with("250"));
    assert!(say("RCPT TO:<ops@example.com>").starts_with("250"));
    assert!(say("DATA").starts_with("354"));
    assert!(say("Subject: one\r\n\r\nfirst line\r\n.").starts_with("250"));
    assert!(say("QUIT").starts_with("221"));
    let messages = server.messages();
    assert_eq!(messages.len(), 1, "{}", server.log_tail());
    assert!(
        messages[0].starts_with("Subject: one\r\n"),
        "{:?}",
        messages[0]
    );
    assert!(messages[0].contains("first line"), "{:?}", messages[0]);
    assert!(fs::read_to_string(&server.cert)
        .unwrap()
        .starts_with("-----BEGIN CERTIFICATE-----"));
}
