//! Fleet operations: profiles, `--kind auto`, schedules, run reports (HTTP, mail, metrics),
//! hooks and the per-profile lock, each run through the real binary.

use crate::util::{files_below, num, setup, string, Dir, Run, PASSWORD};
use serde_json::Value;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `cairn` with this test's own profile directory and lock directory, and no repository or
/// password from the environment: the profiles give them.
fn cairn(d: &Dir, args: &[&str]) -> Run {
    Run::of(command(d, args))
}

fn command(d: &Dir, args: &[&str]) -> Command {
    let mut cmd = d.command();
    cmd.env_remove("CAIRN_REPO")
        .env_remove("CAIRN_PASSWORD")
        .env("XDG_CONFIG_HOME", d.join("config"))
        .env("XDG_RUNTIME_DIR", d.join("run"))
        .env("TZ", "UTC")
        .args(args);
    cmd
}

/// Writes `config/cairn/NAME.toml`: a [global] section for this test's repository, then
/// `more`.
fn profile(d: &Dir, name: &str, more: &str) -> PathBuf {
    fs::write(d.join("password"), format!("{PASSWORD}\n")).unwrap();
    let dir = d.join("config/cairn");
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.toml"));
    let text = format!(
        "[global]\nrepo = \"{}\"\npassword-file = \"{}\"\n\n{more}",
        d.repo().display(),
        d.join("password").display()
    );
    fs::write(&path, text).unwrap();
    path
}

fn source(d: &Dir) -> PathBuf {
    let src = d.join("src");
    fs::create_dir_all(src.join("etc")).unwrap();
    fs::write(src.join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
    fs::write(src.join("etc/scratch.tmp"), "scratch").unwrap();
    src
}

/// A source tree, a profile NAME that backs it up with these further keys (and sections), and
/// the repository, made: the start of most tests here.
fn backing_up(d: &Dir, name: &str, keys: &str) -> PathBuf {
    let src = source(d);
    profile(
        d,
        name,
        &format!("[backup]\nsources = [\"{}\"]\n{keys}", src.display()),
    );
    init(d, name);
    src
}

fn init(d: &Dir, name: &str) {
    cairn(
        d,
        &[
            "-P",
            name,
            "init",
            "--kdf-memory",
            "64",
            "--kdf-iterations",
            "1",
        ],
    )
    .success();
}

#[test]
fn profiles_give_options_the_command_line_overrides_and_errors_name_file_line_and_key() {
    let d = setup();
    let src = source(&d);
    profile(
        &d,
        "nightly",
        &format!(
            "[backup]\nsources = [\"{}\"]\nexclude = [\"*.tmp\"]\ntag = [\"nightly\"]\nhost = \"web-1\"\n\n[forget]\nkeep-last = 2\n",
            src.display()
        ),
    );
    let other = d.join("other.toml");
    fs::write(&other, "[backup]\nhost = \"web-2\"\n").unwrap();
    init(&d, "nightly");
    let r = cairn(&d, &["-P", "nightly", "backup", "--json"])
        .success()
        .json();
    assert_eq!(r["tags"], serde_json::json!(["nightly"]));
    assert_eq!(r["host"], "web-1");
    assert_eq!(r["profile"], "nightly");
    assert_eq!(r["paths"], serde_json::json!([src.to_string_lossy()]));
    let ls = d.ok(["ls", "latest", "-R"]).stdout();
    assert!(ls.contains("hosts") && !ls.contains("scratch.tmp"), "{ls}");
    // The command line wins, and a later profile (here by path) over an earlier one.
    let r = cairn(
        &d,
        &[
            "-P",
            "nightly",
            "-P",
            other.to_str().unwrap(),
            "backup",
            "--tag",
            "manual",
            "--json",
        ],
    )
    .success()
    .json();
    assert_eq!(r["tags"], serde_json::json!(["manual"]));
    assert_eq!(r["host"], "web-2");
    // Command sections only reach their command: forget keeps 2 of 2.
    cairn(&d, &["-P", "nightly", "forget"]).success();
    assert_eq!(d.snapshots().len(), 2);

    let bad = |text: &str| {
        profile(&d, "bad", text);
        let run = cairn(&d, &["-P", "bad", "snapshots"]).code(2);
        run.error_line()
    };
    let e = bad("[forget]\nkeep-dialy = 7\n");
    assert!(
        e.contains("bad.toml line 6") && e.contains("keep-dialy"),
        "{e}"
    );
    let e = bad("[forget]\nkeep-daily = \"a week\"\n");
    assert!(e.contains("line 6") && e.contains("keep-daily"), "{e}");
    let e = bad("[check]\nread-data = \"yes\"\n");
    assert!(
        e.contains("read-data") && e.contains("true or false"),
        "{e}"
    );
    let e = bad("[bakup]\nhost = \"x\"\n");
    assert!(
        e.contains("[bakup]") && e.contains("unknown section"),
        "{e}"
    );
    let e = bad("[backup\n");
    assert!(e.contains("bad.toml") && e.contains("line 5"), "{e}");
    let e = cairn(&d, &["-P", "absent", "snapshots"])
        .code(2)
        .error_line();
    assert!(
        e.contains("no profile \"absent\"") && e.contains("config/cairn"),
        "{e}"
    );
}

#[test]
fn config_show_gives_each_setting_its_origin_and_masks_secrets() {
    let d = setup();
    profile(
        &d,
        "fleet",
        "[backup]\nreport-url = \"https://ops:hunter2@api.example/runs\"\nreport-header = [\"Authorization: Bearer tok-123\"]\n",
    );
    let out = Run::of({
        let mut c = command(
            &d,
            &[
                "-P",
                "fleet",
                "--password-command",
                "echo hunter3",
                "config",
                "show",
            ],
        );
        c.env("CAIRN_CACHE_DIR", d.join("c2"));
        c
    })
    .success()
    .stdout();
    for secret in ["hunter2", "tok-123", "hunter3"] {
        assert!(!out.contains(secret), "{secret} leaked:\n{out}");
    }
    assert!(
        out.contains("report-url = \"https://ops:***@api.example/runs\""),
        "{out}"
    );
    assert!(out.contains("Authorization: ***"), "{out}");
    let line = |key: &str| {
        out.lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_default()
            .to_string()
    };
    assert!(line("repo =").contains("fleet.toml:2"), "{out}");
    assert!(line("password-command =").contains("command line"), "{out}");
    assert!(
        line("cache-dir =").contains("environment CAIRN_CACHE_DIR"),
        "{out}"
    );
}

#[test]
fn a_source_missing_on_this_host_is_skipped_with_a_warning_and_exit_3() {
    let d = setup();
    let src = source(&d);
    let missing = d.join("boot");
    profile(
        &d,
        "all",
        &format!(
            "[backup]\nsources = [\"{}\", \"{}\"]\n",
            src.display(),
            missing.display()
        ),
    );
    init(&d, "all");
    let run = cairn(&d, &["-P", "all", "backup", "--json"]).code(3);
    assert!(run.stderr().contains(&format!(
        "source {} does not exist on this host",
        missing.display()
    )));
    let r = run.json();
    assert_eq!(r["outcome"], "warning");
    assert_eq!(r["exit_code"], 3);
    assert_eq!(r["paths"], serde_json::json!([src.to_string_lossy()]));
    assert!(r["warnings"][0].as_str().unwrap().contains("boot"));
    let snaps = d.snapshots();
    assert_eq!(snaps.len(), 1);
    // No source at all is a failure, and stores nothing.
    let e = cairn(&d, &["-P", "all", "backup", missing.to_str().unwrap()])
        .failure()
        .error_line();
    assert!(e.contains("none of the sources exists"), "{e}");
    assert_eq!(d.snapshots().len(), 1);
}

/// Nightly backups at 02:00 UTC over two weeks with `--kind auto --full-every mon`: a full one
/// each Monday, incremental ones between, and a full one on the Tuesday after a Monday the host
/// was off.
#[test]
fn kind_auto_makes_a_full_backup_each_monday_and_after_a_missed_one() {
    let d = setup();
    let src = backing_up(&d, "week", "kind = \"auto\"\nfull-every = \"mon\"\n");
    // 2026-11-28 is a Saturday; 2026-12-07 (a Monday) is missed.
    let nights = [
        ("2026-11-28", "full"),
        ("2026-11-29", "incremental"),
        ("2026-11-30", "full"),
        ("2026-12-01", "incremental"),
        ("2026-12-04", "incremental"),
        ("2026-12-06", "incremental"),
        ("2026-12-08", "full"),
        ("2026-12-09", "incremental"),
    ];
    for (i, (night, kind)) in nights.iter().enumerate() {
        fs::write(src.join("etc/hosts"), format!("night {i}\n")).unwrap();
        let time = format!("{night}T02:00:00Z");
        let r = cairn(&d, &["-P", "week", "backup", "--time", &time, "--json"])
            .success()
            .json();
        assert_eq!(r["kind"], *kind, "{night}: {}", r["kind_reason"]);
        assert!(!r["kind_reason"].as_str().unwrap().is_empty());
    }
    // Differential between full ones: the parent is the Monday's full snapshot.
    let r = cairn(
        &d,
        &[
            "-P",
            "week",
            "backup",
            "--time",
            "2026-12-10T02:00:00Z",
            "--between",
            "differential",
            "--json",
        ],
    )
    .success()
    .json();
    assert_eq!(r["kind"], "differential");
    let full = d
        .snapshots()
        .into_iter()
        .rfind(|s| s["kind"] == "full")
        .unwrap();
    assert_eq!(r["parent_id"], full["id"]);
    // A duration: a full one when the latest full is a week old.
    let r = cairn(
        &d,
        &[
            "-P",
            "week",
            "backup",
            "--full-every",
            "7d",
            "--time",
            "2026-12-15T02:00:00Z",
            "--json",
        ],
    )
    .success()
    .json();
    assert_eq!(r["kind"], "full", "{}", r["kind_reason"]);
    let e = cairn(
        &d,
        &[
            "-P",
            "week",
            "backup",
            "--kind",
            "full",
            "--full-every",
            "mon",
        ],
    )
    .code(2)
    .error_line();
    assert!(e.contains("--full-every"), "{e}");
    let e = cairn(
        &d,
        &["-P", "week", "backup", "--kind", "auto", "--full-every", ""],
    );
    e.code(2);
    profile(
        &d,
        "nofull",
        &format!(
            "[backup]\nsources = [\"{}\"]\nkind = \"auto\"\n",
            src.display()
        ),
    );
    let e = cairn(&d, &["-P", "nofull", "backup"]).code(2).error_line();
    assert!(e.contains("--kind auto needs --full-every"), "{e}");
}

/// The text summary's first line names the kind `--kind auto` chose and why, as the JSON
/// report's `kind_reason` does.
#[test]
fn kind_auto_says_in_the_summary_which_kind_it_chose_and_why() {
    let d = setup();
    let src = backing_up(&d, "say", "kind = \"auto\"\nfull-every = \"mon\"\n");
    let night = |time: &str, more: &[&str]| {
        fs::write(src.join("etc/hosts"), time).unwrap();
        let mut args = vec!["-P", "say", "backup", "--time", time];
        args.extend(more);
        let out = cairn(&d, &args).success().stdout();
        out.lines().next().unwrap_or_default().to_string()
    };
    let short = |i: usize| d.snapshots()[i]["short_id"].as_str().unwrap().to_string();
    // 2026-11-30 is a Monday.
    assert_eq!(
        night("2026-11-30T02:00:00Z", &[]),
        "full backup: no full snapshot of this host and paths yet"
    );
    let full = short(0);
    assert_eq!(
        night("2026-12-01T02:00:00Z", &[]),
        format!("incremental backup against parent {full}: the full snapshot {full} of 2026-11-30 02:00 was made since Monday 2026-11-30 00:00")
    );
    // Monday 2026-12-07 missed.
    assert_eq!(
        night("2026-12-08T02:00:00Z", &[]),
        format!("full backup: no full snapshot since Monday 2026-12-07 00:00 (the latest is full snapshot {full} of 2026-11-30 02:00)")
    );
    let full = short(2);
    let line = night(
        "2026-12-09T02:00:00Z",
        &["--full-every", "7d", "--between", "differential"],
    );
    assert_eq!(
        line,
        format!("differential backup against parent {full}: the full snapshot {full} of 2026-12-08 02:00 is 24h old, less than 168h")
    );
    // A kind asked for outright needs no reason.
    assert_eq!(
        night("2026-12-10T02:00:00Z", &["--kind", "full"]),
        "full backup"
    );
}

#[test]
fn schedule_writes_units_and_cron_entries_under_root_and_removes_them() {
    let d = setup();
    let path = profile(&d, "nightly", "");
    let root = d.join("image");
    let root_s = root.to_str().unwrap();
    let install = |args: &[&str], with: &str| {
        let mut all = vec!["-P", "nightly", "schedule", "install"];
        all.extend(args);
        all.extend(["--root", root_s, "--with", with]);
        cairn(&d, &all)
    };
    install(&["--at", "daily 02:00"], "systemd").success();
    install(&["--command", "check", "--at", "Sun 04:00"], "systemd").success();
    let units = root.join("etc/systemd/system");
    let service = fs::read_to_string(units.join("cairn-nightly-backup.service")).unwrap();
    let timer = fs::read_to_string(units.join("cairn-nightly-backup.timer")).unwrap();
    let exe = env!("CARGO_BIN_EXE_cairn");
    assert!(
        service.contains(&format!("ExecStart={exe} -P {} backup", path.display())),
        "{service}"
    );
    assert!(
        timer.contains("OnCalendar=02:00") && timer.contains("Persistent=true"),
        "{timer}"
    );
    let wants = units.join("timers.target.wants/cairn-nightly-backup.timer");
    assert_eq!(
        fs::read_link(&wants).unwrap(),
        Path::new("/etc/systemd/system/cairn-nightly-backup.timer")
    );
    if let Ok(out) = Command::new("systemd-analyze")
        .arg("verify")
        .arg(units.join("cairn-nightly-check.timer"))
        .arg(units.join("cairn-nightly-check.service"))
        .output()
    {
        assert!(
            out.status.success(),
            "systemd-analyze verify: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    install(&["--at", "Mon..Fri 22:30"], "cron").success();
    let cron = fs::read_to_string(root.join("etc/cron.d/cairn-nightly-backup")).unwrap();
    assert!(
        cron.contains(&format!(
            "30 22 * * 1-5 root {exe} -P {} backup",
            path.display()
        )),
        "{cron}"
    );
    let list = cairn(&d, &["schedule", "list", "--root", root_s])
        .success()
        .stdout();
    assert_eq!(list.lines().count(), 3, "{list}");
    assert!(
        list.contains("cairn-nightly-check.timer") && list.contains("at=Sun 04:00"),
        "{list}"
    );
    // Files cairn did not write are never touched.
    fs::write(root.join("etc/cron.d/cairn-mine"), "0 1 * * * root true\n").unwrap();
    cairn(
        &d,
        &["-P", "nightly", "schedule", "remove", "--root", root_s],
    )
    .success();
    assert!(!units.join("cairn-nightly-backup.timer").exists() && !wants.exists());
    assert!(!root.join("etc/cron.d/cairn-nightly-backup").exists());
    assert!(root.join("etc/cron.d/cairn-mine").exists());
    assert_eq!(
        cairn(&d, &["schedule", "list", "--root", root_s])
            .success()
            .stdout()
            .trim(),
        "no schedules installed"
    );
    let e = install(&["--at", "sometimes"], "systemd")
        .code(2)
        .error_line();
    assert!(e.contains("\"sometimes\" is not a weekday"), "{e}");
    // Refused as well where systemd-analyze is not there to ask: cairn checks the shape itself.
    for scheduler in ["systemd", "cron"] {
        let mut c = command(
            &d,
            &[
                "-P",
                "nightly",
                "schedule",
                "install",
                "--at",
                "02:00 Mon",
                "--root",
                root_s,
                "--with",
                scheduler,
            ],
        );
        c.env("PATH", d.join("no-programs"));
        let e = Run::of(c).code(2).error_line();
        assert!(e.contains("\"Mon\" is not a weekday"), "{scheduler}: {e}");
    }
    let e = install(&["--at", "*-*-01 02:00"], "cron").code(2);
    assert!(e.error_line().contains("no cron equivalent"));
    cairn(
        &d,
        &["schedule", "install", "--at", "02:00", "--root", root_s],
    )
    .code(2);
    let e = cairn(
        &d,
        &["-P", "nightly", "schedule", "remove", "--root", root_s],
    )
    .code(1)
    .error_line();
    assert!(e.contains("no schedule of profile nightly"), "{e}");
}

/// Each request's head and body.
type Requests = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// What an HTTP API on loopback received.
struct Api {
    url: String,
    requests: Requests,
}

/// An HTTP server that answers `statuses` in turn (then 200) and keeps every request.
fn api(statuses: &[u16]) -> Api {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/runs", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    let statuses: Vec<u16> = statuses.to_vec();
    std::thread::spawn(move || {
        let mut statuses = statuses.into_iter();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                head.push_str(&line);
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            seen.lock().unwrap().push((head, body));
            let status = statuses.next().unwrap_or(200);
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    Api { url, requests }
}

#[test]
fn a_run_report_is_posted_to_the_api_with_every_field_matching_the_snapshot() {
    let d = setup();
    let server = api(&[503]);
    let src = backing_up(
        &d,
        "fleet",
        &format!(
            "tag = [\"nightly\", \"etc\"]\nreport-url = \"{}\"\nreport-header = [\"Authorization: Bearer tok-123\"]\n",
            server.url
        ),
    );
    cairn(&d, &["-P", "fleet", "backup"]).success();
    fs::write(src.join("etc/new"), "new file\n").unwrap();
    fs::write(src.join("etc/unreadable"), "x").unwrap();
    let run = cairn(&d, &["-P", "fleet", "backup", "--json"]).success();
    let printed = run.json();
    let requests = server.requests.lock().unwrap().clone();
    // The first POST met a 503 and was retried.
    assert_eq!(requests.len(), 3, "{requests:?}");
    let (head, body) = &requests[2];
    assert!(head.starts_with("POST /runs "), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("authorization: bearer tok-123"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    let r: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(r, printed, "the report posted is the one printed");
    let snaps = d.snapshots();
    let (first, snap) = (&snaps[0], &snaps[1]);
    assert_eq!(r["command"], "backup");
    assert_eq!(r["outcome"], "success");
    assert_eq!(r["exit_code"], 0);
    assert_eq!(r["error"], Value::Null);
    assert_eq!(r["warnings"], serde_json::json!([]));
    assert_eq!(r["snapshot_id"], snap["id"]);
    assert_eq!(r["parent_id"], first["id"]);
    assert_eq!(r["kind"], snap["kind"]);
    assert_eq!(r["host"], snap["host"]);
    assert_eq!(r["paths"], snap["paths"]);
    assert_eq!(r["tags"], snap["tags"]);
    assert_eq!(r["user"], snap["user"]);
    assert_eq!(r["repository"], d.repo().to_string_lossy().as_ref());
    assert_eq!(r["profile"], "fleet");
    assert!(!r["kind_reason"].as_str().unwrap().is_empty());
    for k in [
        "files_new",
        "files_changed",
        "files_unchanged",
        "files_deleted",
        "dirs",
    ] {
        assert_eq!(r[k], snap["summary"][k], "{k}");
    }
    assert_eq!(num(&r, "files_new"), 2);
    assert_eq!(num(&r, "files_unchanged"), 2);
    assert!(num(&r, "bytes_read") >= 10);
    assert!(num(&r, "bytes_added_raw") > 0 && num(&r, "bytes_added_stored") > 0);
    assert_eq!(r["skipped"], serde_json::json!([]));
    let start: jiff::Timestamp = string(&r, "start").unwrap().parse().unwrap();
    let end: jiff::Timestamp = string(&r, "end").unwrap().parse().unwrap();
    assert!(start <= end);
    assert!(r["duration_s"].as_f64().unwrap() >= 0.0);
    let ips = r["ips"].as_array().unwrap();
    assert!(ips.iter().all(|ip| ip
        .as_str()
        .unwrap()
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| !ip.is_loopback())));

    // An API that cannot be reached is a warning; the backup itself is stored and exits 0.
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    drop(std::net::TcpListener::bind(dead));
    let url = format!("http://{dead}/runs");
    let run = cairn(&d, &["-P", "fleet", "backup", "--report-url", &url]).success();
    assert!(
        run.stderr().contains("the run report was not delivered"),
        "{}",
        run.stderr()
    );
    assert!(!run.stderr().contains("tok-123"));
    assert_eq!(d.snapshots().len(), 3);

    // A failed run is reported too: outcome, exit code and error.
    let wrong = d.join("wrong");
    fs::write(&wrong, "not the password\n").unwrap();
    cairn(
        &d,
        &[
            "-P",
            "fleet",
            "--password-file",
            wrong.to_str().unwrap(),
            "backup",
        ],
    )
    .code(12);
    let requests = server.requests.lock().unwrap().clone();
    let r: Value = serde_json::from_slice(&requests.last().unwrap().1).unwrap();
    assert_eq!(r["outcome"], "failure");
    assert_eq!(r["exit_code"], 12);
    assert!(r["error"].as_str().unwrap().contains("password"), "{r}");
    // Every backup key is there, null where the run found nothing out (README: null on
    // failure), so that a database's columns are the same for every run.
    let keys = r.as_object().unwrap();
    for k in [
        "snapshot_id",
        "parent_id",
        "kind",
        "kind_reason",
        "files_new",
        "bytes_added_stored",
    ] {
        assert!(keys.contains_key(k), "{k} is missing: {r}");
        assert_eq!(r[k], Value::Null, "{k}");
    }
    assert_eq!(r["paths"], serde_json::json!([src.to_string_lossy()]));
    assert_eq!(r["tags"], serde_json::json!(["nightly", "etc"]));
}

/// Parses a Prometheus text file into (name, labels, value).
fn samples(path: &Path) -> Vec<(String, String, f64)> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            let (name, labels) = series.split_once('{').unwrap();
            (
                name.to_string(),
                labels.trim_end_matches('}').to_string(),
                value.parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn metrics_are_written_for_each_command_and_keep_the_last_success() {
    let d = setup();
    let metrics = d.join("metrics/cairn.prom");
    fs::create_dir_all(metrics.parent().unwrap()).unwrap();
    backing_up(
        &d,
        "m",
        &format!(
            "metrics-file = \"{m}\"\n[check]\nmetrics-file = \"{m}\"\n",
            m = metrics.display()
        ),
    );
    let r = cairn(&d, &["-P", "m", "backup", "--json"]).success().json();
    cairn(&d, &["-P", "m", "check"]).success();
    let all = samples(&metrics);
    let get = |all: &[(String, String, f64)], name: &str, command: &str| {
        all.iter()
            .find(|(n, l, _)| {
                n == name
                    && l.contains(&format!("command=\"{command}\""))
                    && l.contains("profile=\"m\"")
            })
            .map(|s| s.2)
    };
    assert_eq!(
        get(&all, "cairn_bytes_added", "backup"),
        Some(num(&r, "bytes_added_stored") as f64)
    );
    assert_eq!(get(&all, "cairn_files_total", "backup"), Some(2.0));
    assert_eq!(get(&all, "cairn_errors", "check"), Some(0.0));
    let success = get(&all, "cairn_last_success_timestamp_seconds", "backup").unwrap();
    let now = jiff::Timestamp::now().as_second() as f64;
    assert!((now - success).abs() < 120.0, "{success} vs {now}");
    assert!(get(&all, "cairn_run_duration_seconds", "check").is_some());
    let text = fs::read_to_string(&metrics).unwrap();
    assert_eq!(
        text.matches("# TYPE cairn_errors gauge").count(),
        1,
        "{text}"
    );
    // A failed backup moves the last run, not the last success.
    std::thread::sleep(Duration::from_millis(1100));
    let wrong = d.join("wrong");
    fs::write(&wrong, "nope\n").unwrap();
    cairn(
        &d,
        &[
            "-P",
            "m",
            "--password-file",
            wrong.to_str().unwrap(),
            "backup",
        ],
    )
    .code(12);
    let after = samples(&metrics);
    assert_eq!(
        get(&after, "cairn_last_success_timestamp_seconds", "backup"),
        Some(success)
    );
    assert!(get(&after, "cairn_last_run_timestamp_seconds", "backup").unwrap() > success);
    assert_eq!(get(&after, "cairn_errors", "backup"), Some(1.0));
    assert_eq!(
        get(&after, "cairn_errors", "check"),
        Some(0.0),
        "the check's metrics stay"
    );
}

#[test]
fn hooks_run_in_order_with_the_report_in_their_environment() {
    let d = setup();
    let log = d.join("hooks.log");
    let l = log.display();
    backing_up(&d, "h", &format!("before = [\"echo before $CAIRN_COMMAND >> {l}\"]\nafter = [\"echo after $CAIRN_OUTCOME $CAIRN_SNAPSHOT_ID $CAIRN_KIND >> {l}\", \"echo second >> {l}\"]\non-failure = [\"echo failed $CAIRN_OUTCOME $CAIRN_EXIT_CODE >> {l}\"]\n"));
    let r = cairn(&d, &["-P", "h", "backup", "--json"]).success().json();
    let id = string(&r, "snapshot_id").unwrap();
    assert_eq!(
        fs::read_to_string(&log).unwrap(),
        format!("before backup\nafter success {id} full\nsecond\n")
    );
    // A failing `before` hook: nothing is backed up, and on-failure runs.
    fs::remove_file(&log).unwrap();
    let run = cairn(&d, &["-P", "h", "backup", "--before", "exit 7"]).failure();
    assert!(
        run.error_line().contains("before hook `exit 7` failed"),
        "{}",
        run.error_line()
    );
    assert_eq!(fs::read_to_string(&log).unwrap(), "failed failure 1\n");
    assert_eq!(d.snapshots().len(), 1);
    // A hook past its timeout is killed; after a run, that is a warning only.
    let started = Instant::now();
    let run = cairn(
        &d,
        &[
            "-P",
            "h",
            "backup",
            "--after",
            "sleep 60",
            "--hook-timeout",
            "1s",
        ],
    )
    .success();
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(
        run.stderr().contains("after hook `sleep 60` was killed"),
        "{}",
        run.stderr()
    );
    assert_eq!(d.snapshots().len(), 2);
}

#[test]
fn two_runs_of_one_profile_never_overlap_and_a_killed_run_leaves_no_lock() {
    let d = setup();
    let started = d.join("started");
    let src = backing_up(&d, "p", "");
    let first = command(
        &d,
        &[
            "-P",
            "p",
            "backup",
            "--before",
            &format!("touch {} && sleep 30", started.display()),
        ],
    )
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !started.exists() {
        assert!(
            Instant::now() < deadline,
            "the first run's hook never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let e = cairn(&d, &["-P", "p", "backup", "--no-wait"])
        .code(11)
        .error_line();
    assert!(
        e.contains("profile p is being run by another cairn") && e.contains("pid"),
        "{e}"
    );
    // Another profile is not held up.
    profile(
        &d,
        "q",
        &format!("[backup]\nsources = [\"{}\"]\n", src.display()),
    );
    cairn(&d, &["-P", "q", "backup", "--no-wait"]).success();
    // kill -9 of the holder frees the lock at once.
    let mut first = first;
    first.kill().unwrap();
    first.wait().unwrap();
    cairn(&d, &["-P", "p", "backup", "--no-wait"]).success();
    assert_eq!(d.snapshots().len(), 2);
}

/// The JSON attachment of a received mail (base64, in lines of 76).
fn attached_report(message: &str) -> Value {
    use base64::Engine;
    let at = message
        .find("Content-Type: application/json")
        .expect("a JSON attachment");
    let part = &message[at..];
    let body_start = part.find("\r\n\r\n").unwrap() + 4;
    let body: String = part[body_start..]
        .lines()
        .take_while(|l| !l.starts_with("--") && !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    let head = &part[..body_start];
    if head.contains("Content-Transfer-Encoding: base64") {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(body.split_whitespace().collect::<String>())
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    } else if head.contains("quoted-printable") {
        serde_json::from_slice(&quoted_printable(&body)).unwrap()
    } else {
        serde_json::from_str(&body).unwrap()
    }
}

fn quoted_printable(text: &str) -> Vec<u8> {
    let text = text.replace('\r', "").replace("=\n", "");
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

#[test]
fn a_failed_run_is_mailed_over_starttls_with_the_report_attached() {
    let d = setup();
    let smtp = cairn_testkit::servers::smtp();
    fs::write(d.join("smtp-password"), format!("{}\n", smtp.password)).unwrap();
    backing_up(
        &d,
        "mail",
        &format!(
            "report-mail = [\"ops@example.com\"]\nmail-from = \"backup@web-1.example.com\"\nsmtp = \"{}\"\nsmtp-user = \"{}\"\nsmtp-password-file = \"{}\"\nsmtp-tls = \"starttls\"\n",
            smtp.addr,
            smtp.user,
            d.join("smtp-password").display()
        ),
    );
    let run_with_cert = |args: &[&str]| {
        let mut c = command(&d, args);
        c.env("SSL_CERT_FILE", &smtp.cert);
        Run::of(c)
    };
    // By default only failures are mailed.
    run_with_cert(&["-P", "mail", "backup"]).success();
    assert!(smtp.messages().is_empty());
    let wrong = d.join("wrong");
    fs::write(&wrong, "nope\n").unwrap();
    run_with_cert(&[
        "-P",
        "mail",
        "--password-file",
        wrong.to_str().unwrap(),
        "backup",
    ])
    .code(12);
    let messages = smtp.messages();
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert!(m.contains("Subject: cairn backup on "), "{m}");
    assert!(m.contains(": failure"), "{m}");
    assert!(
        m.contains("To: ops@example.com") && m.contains("From: backup@web-1.example.com"),
        "{m}"
    );
    assert!(
        m.contains("outcome: failure") && m.contains("exit_code: 12"),
        "{m}"
    );
    assert!(!m.contains(&smtp.password));
    let r = attached_report(m);
    assert_eq!(r["outcome"], "failure");
    assert_eq!(r["exit_code"], 12);
    // `always` mails a success too, with its snapshot.
    run_with_cert(&["-P", "mail", "backup", "--mail-on", "always"]).success();
    let messages = smtp.messages();
    assert_eq!(messages.len(), 2);
    let r = attached_report(&messages[1]);
    assert_eq!(r["outcome"], "success");
    assert_eq!(r["snapshot_id"], d.snapshots()[1]["id"]);
    // A server that is not trusted: a warning, and the backup stands.
    let run = cairn(&d, &["-P", "mail", "backup", "--mail-on", "always"]).success();
    assert!(
        run.stderr().contains("the run report was not mailed"),
        "{}",
        run.stderr()
    );
    assert_eq!(d.snapshots().len(), 3);
}

#[test]
fn a_run_is_mailed_over_implicit_tls_with_the_report_attached() {
    // Port 465's way: TLS from the first byte, with a login, the certificate trusted through
    // SSL_CERT_FILE as a host's own roots would be.
    let d = setup();
    let smtp = cairn_testkit::servers::smtps();
    fs::write(d.join("smtp-password"), format!("{}\n", smtp.password)).unwrap();
    backing_up(
        &d,
        "tls",
        &format!(
            "report-mail = [\"ops@example.com\"]\nmail-on = \"always\"\nsmtp = \"{}\"\nsmtp-user = \"{}\"\nsmtp-password-file = \"{}\"\nsmtp-tls = \"tls\"\n",
            smtp.addr,
            smtp.user,
            d.join("smtp-password").display()
        ),
    );
    let mut c = command(&d, &["-P", "tls", "backup"]);
    c.env("SSL_CERT_FILE", &smtp.cert);
    let run = Run::of(c).success();
    assert!(
        !run.stderr().contains("not mailed"),
        "{}\n{}",
        run.stderr(),
        smtp.log_tail()
    );
    let messages = smtp.messages();
    assert_eq!(messages.len(), 1, "{}", smtp.log_tail());
    let m = &messages[0];
    assert!(m.contains(": success"), "{m}");
    assert!(!m.contains(&smtp.password));
    let r = attached_report(m);
    assert_eq!(r["outcome"], "success");
    assert_eq!(r["snapshot_id"], d.snapshots()[0]["id"]);
    // The same server through STARTTLS: it speaks TLS first, so nothing is sent, and the
    // backup stands.
    let mut c = command(&d, &["-P", "tls", "backup", "--smtp-tls", "starttls"]);
    c.env("SSL_CERT_FILE", &smtp.cert);
    let run = Run::of(c).success();
    assert!(
        run.stderr().contains("the run report was not mailed"),
        "{}",
        run.stderr()
    );
    assert_eq!(smtp.messages().len(), 1);
    assert_eq!(d.snapshots().len(), 2);
}

#[test]
fn mail_on_warning_mails_a_warning_and_failure_does_not() {
    let d = setup();
    let smtp = cairn_testkit::servers::smtp();
    let src = source(&d);
    let missing = d.join("boot");
    profile(
        &d,
        "warn",
        &format!(
            "[backup]\nsources = [\"{}\", \"{}\"]\nreport-mail = [\"ops@example.com\"]\nsmtp = \"{}\"\nsmtp-tls = \"none\"\n",
            src.display(),
            missing.display(),
            smtp.addr
        ),
    );
    init(&d, "warn");
    let backup = |mail_on: &str| cairn(&d, &["-P", "warn", "backup", "--mail-on", mail_on]);
    // A missing source: a warning, exit 3.
    backup("failure").code(3);
    assert!(smtp.messages().is_empty(), "{:?}", smtp.messages());
    cairn(&d, &["-P", "warn", "backup"]).code(3);
    assert!(
        smtp.messages().is_empty(),
        "by default only failures are mailed"
    );
    backup("warning").code(3);
    let messages = smtp.messages();
    assert_eq!(messages.len(), 1, "{}", smtp.log_tail());
    assert!(messages[0].contains(": warning"), "{}", messages[0]);
    let r = attached_report(&messages[0]);
    assert_eq!(r["outcome"], "warning");
    assert_eq!(r["exit_code"], 3);
    assert!(r["warnings"][0].as_str().unwrap().contains("boot"), "{r}");
    // With the missing source gone from the list, the run succeeds: `warning` mails nothing,
    // `always` mails it.
    let src_s = src.to_str().unwrap();
    let only = |mail_on: &str| cairn(&d, &["-P", "warn", "backup", "--mail-on", mail_on, src_s]);
    only("warning").success();
    assert_eq!(smtp.messages().len(), 1);
    only("always").success();
    let messages = smtp.messages();
    assert_eq!(messages.len(), 2);
    assert_eq!(attached_report(&messages[1])["outcome"], "success");
}

/// Regression: a profile's `password-file` beat `--password-command` given on the command line
/// (a file is preferred when both are set), so the command line's password was never tried.
#[test]
fn a_password_given_another_way_on_the_command_line_wins_over_the_profile() {
    let d = setup();
    backing_up(&d, "pw", "");
    let wrong = ["-P", "pw", "--password-command", "echo wrong"];
    let e = cairn(&d, &[&wrong[..], &["snapshots"]].concat())
        .code(12)
        .error_line();
    assert!(e.contains("password"), "{e}");
    let out = cairn(&d, &[&wrong[..], &["config", "show"]].concat())
        .success()
        .stdout();
    assert!(!out.contains("password-file"), "{out}");
    assert!(out.contains("password-command = \"***\""), "{out}");
    let right = format!("cat {}", d.join("password").display());
    cairn(&d, &["-P", "pw", "--password-command", &right, "snapshots"]).success();
    // The environment gives the least: a profile's command wins over CAIRN_PASSWORD_FILE.
    let by_command = d.join("by-command.toml");
    fs::write(
        &by_command,
        format!(
            "[global]\nrepo = \"{}\"\npassword-command = \"{right}\"\n",
            d.repo().display()
        ),
    )
    .unwrap();
    fs::write(d.join("wrong"), "wrong\n").unwrap();
    let mut c = command(&d, &["-P", by_command.to_str().unwrap(), "snapshots"]);
    c.env("CAIRN_PASSWORD_FILE", d.join("wrong"));
    Run::of(c).success();
    let mut c = command(&d, &["-P", by_command.to_str().unwrap(), "config", "show"]);
    c.env("CAIRN_PASSWORD_FILE", d.join("wrong"));
    let out = Run::of(c).success().stdout();
    assert!(!out.contains("password-file"), "{out}");
}

/// Regression: with README's profile (`kind = "auto"`, `full-every = "mon"`), `backup --kind
/// full` was refused: "--full-every is only for --kind auto".
#[test]
fn a_kind_on_the_command_line_drops_the_profiles_options_of_another_kind() {
    let d = setup();
    backing_up(
        &d,
        "nightly",
        "kind = \"auto\"\nfull-every = \"mon\"\nbetween = \"differential\"\n",
    );
    let backup = |args: &[&str]| {
        let all = [&["-P", "nightly", "backup", "--json"][..], args].concat();
        cairn(&d, &all).success().json()
    };
    let r = backup(&["--kind", "full"]);
    assert_eq!(r["kind"], "full");
    assert_eq!(r["kind_reason"], "--kind full");
    let r = backup(&["--kind", "incremental"]);
    assert_eq!(r["kind"], "incremental");
    // `--kind auto` is the kind those options go with: they stay.
    let r = backup(&["--kind", "auto", "--time", "2099-01-01T02:00:00Z"]);
    assert!(
        r["kind_reason"].as_str().unwrap().contains("Monday"),
        "{}",
        r["kind_reason"]
    );
    // The command line itself still may not mix them.
    let e = cairn(
        &d,
        &[
            "-P",
            "nightly",
            "backup",
            "--kind",
            "full",
            "--full-every",
            "7d",
        ],
    )
    .code(2)
    .error_line();
    assert!(e.contains("--full-every is only for --kind auto"), "{e}");
}

/// The sample `name` of `command` in a metrics file.
fn sample(path: &Path, name: &str, command: &str) -> Option<f64> {
    samples(path)
        .into_iter()
        .find(|(n, l, _)| n == name && l.contains(&format!("command=\"{command}\"")))
        .map(|s| s.2)
}

/// The body of the last request `server` received, as JSON.
fn last_report(server: &Api) -> Value {
    let requests = server.requests.lock().unwrap();
    serde_json::from_slice(&requests.last().expect("a report was posted").1).unwrap()
}

#[test]
fn forget_prune_and_check_post_reports_and_write_metrics() {
    let d = setup();
    let server = api(&[]);
    let metrics = d.join("cairn.prom");
    let src = backing_up(&d, "gc", "");
    for night in 0..3 {
        fs::write(
            src.join("etc/hosts"),
            format!("night {night}\n").repeat(500),
        )
        .unwrap();
        cairn(&d, &["-P", "gc", "backup"]).success();
    }
    let snaps = d.snapshots();
    let report_to = ["--report-url", &server.url, "--metrics-file"];
    let report_to = [&report_to[..], &[metrics.to_str().unwrap()]].concat();
    let run = |args: &[&str], code: i32| {
        let all = [&["-P", "gc"][..], args, &report_to].concat();
        let printed = cairn(&d, &all).code(code).json();
        let posted = last_report(&server);
        assert_eq!(printed, posted, "the report posted is the one printed");
        posted
    };

    let r = run(&["forget", "--keep-last", "1", "--prune", "--json"], 0);
    assert_eq!(r["command"], "forget");
    assert_eq!(r["outcome"], "success");
    assert_eq!(r["exit_code"], 0);
    assert_eq!(r["error"], Value::Null);
    assert_eq!(r["profile"], "gc");
    let mut removed: Vec<&str> = r["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    removed.sort();
    let mut older: Vec<&str> = snaps[..2]
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    older.sort();
    assert_eq!(removed, older);
    assert_eq!(r["groups"][0]["keep"][0]["id"], snaps[2]["id"]);
    let gc = &r["prune"];
    assert_eq!(gc["snapshots"], 1, "{gc}");
    assert_eq!(gc["dry_run"], false);
    assert!(
        num(gc, "packs_deleted") + num(gc, "packs_repacked") > 0,
        "{gc}"
    );
    assert!(num(gc, "bytes_freed") > 0, "{gc}");
    assert_eq!(d.snapshots().len(), 1);
    assert_eq!(sample(&metrics, "cairn_errors", "forget"), Some(0.0));
    assert_eq!(
        sample(&metrics, "cairn_last_exit_code", "forget"),
        Some(0.0)
    );
    assert!(sample(&metrics, "cairn_last_success_timestamp_seconds", "forget").is_some());

    let r = run(&["prune", "--json"], 0);
    assert_eq!(r["command"], "prune");
    assert_eq!(r["outcome"], "success");
    assert_eq!(r["prune"]["snapshots"], 1);
    assert_eq!(r["prune"]["packs_deleted"], 0, "nothing is left to delete");
    assert!(!r.as_object().unwrap().contains_key("removed"), "{r}");
    assert!(sample(&metrics, "cairn_run_duration_seconds", "prune").is_some());
    d.check();

    // A check that finds damage fails, and says so everywhere.
    let pack = files_below(&d.repo().join("data"))
        .into_iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = fs::read(&pack).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    fs::write(&pack, bytes).unwrap();
    let r = run(&["check", "--read-data", "--json"], 1);
    assert_eq!(r["command"], "check");
    assert_eq!(r["outcome"], "failure");
    assert_eq!(r["exit_code"], 1);
    assert!(
        r["error"].as_str().unwrap().contains("check found"),
        "{}",
        r["error"]
    );
    assert!(!r["errors"].as_array().unwrap().is_empty(), "{r}");
    assert!(sample(&metrics, "cairn_errors", "check").unwrap() >= 2.0);
    assert_eq!(sample(&metrics, "cairn_last_exit_code", "check"), Some(1.0));
    assert_eq!(
        sample(&metrics, "cairn_last_success_timestamp_seconds", "check"),
        None
    );
}

#[test]
fn a_second_run_of_a_profile_waits_for_the_first_to_end() {
    let d = setup();
    let started = d.join("started");
    let release = d.join("release");
    backing_up(&d, "p", "");
    // The first run holds the lock until the test lets its hook end.
    let hold = format!(
        "touch {} && while [ ! -e {} ]; do sleep 0.05; done",
        started.display(),
        release.display()
    );
    let first = command(&d, &["-P", "p", "backup", "--before", &hold])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !started.exists() {
        assert!(
            Instant::now() < deadline,
            "the first run's hook never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = command(&d, &["-P", "p", "backup", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // It says it waits, and does: no second snapshot while the first run holds the lock.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(d.snapshots().len(), 0);
    fs::write(&release, "").unwrap();
    let out = second.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("waiting for the other run of profile p (pid"),
        "{stderr}"
    );
    let mut first = first;
    assert!(first.wait().unwrap().success());
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let snaps = d.snapshots();
    assert_eq!(snaps.len(), 2);
    // The second started after the first one's snapshot: its parent.
    assert_eq!(r["parent_id"], snaps[0]["id"]);
}

#[test]
fn on_failure_hooks_run_when_the_command_itself_fails() {
    let d = setup();
    let log = d.join("hooks.log");
    let l = log.display();
    backing_up(&d, "h", &format!("after = [\"echo after >> {l}\"]\non-failure = [\"echo failed $CAIRN_EXIT_CODE $CAIRN_COMMAND $CAIRN_ERROR >> {l}\"]\n"));
    let wrong = d.join("wrong");
    fs::write(&wrong, "wrong\n").unwrap();
    let wrong = wrong.to_str().unwrap();
    cairn(&d, &["-P", "h", "--password-file", wrong, "backup"]).code(12);
    let text = fs::read_to_string(&log).unwrap();
    assert!(text.starts_with("failed 12 backup "), "{text}");
    assert!(text.contains("password"), "{text}");
    assert_eq!(text.lines().count(), 1, "no after hook: {text}");
    assert!(d.snapshots().is_empty());
}

/// README's Fleet section says commands made of subcommands have no profile section.
#[test]
fn a_section_for_a_command_of_subcommands_is_refused_naming_them() {
    let d = setup();
    for (section, key, subcommands) in [
        ("schedule", "at = \"daily 02:00\"", "install, list, remove"),
        ("repair", "dry-run = true", "index, snapshots"),
        ("key", "host = \"web-1\"", "list, add, remove, passwd"),
    ] {
        let path = profile(&d, section, &format!("[{section}]\n{key}\n"));
        let e = cairn(&d, &["-P", section, "config", "show"])
            .code(2)
            .error_line();
        let at = format!(
            "{} line 5: [{section}]: `{section}` has no options",
            path.display()
        );
        assert!(e.contains(&at), "{e}");
        assert!(e.contains(&format!("({subcommands})")), "{e}");
    }
}

/// README's "Fleet" section gives a whole profile: it must be one cairn accepts.
#[test]
fn the_readme_fleet_profile_is_accepted() {
    let d = setup();
    let readme =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let fleet = &readme[readme.find("\n## Fleet").expect("a Fleet section")..];
    let start = fleet
        .find("```toml\n")
        .expect("a TOML profile in the Fleet section")
        + 8;
    let toml = &fleet[start..start + fleet[start..].find("```").unwrap()];
    let path = d.join("nightly.toml");
    fs::write(&path, toml).unwrap();
    let out = cairn(&d, &["-P", path.to_str().unwrap(), "config", "show"])
        .success()
        .stdout();
    for line in [
        "full-every = \"mon\"",
        "sources = [\"/etc\", \"/home\", \"/root\", \"/boot\"]",
        "read-data-subset = \"15%\"",
        "Authorization: ***",
    ] {
        assert!(out.contains(line), "{line}:\n{out}");
    }
    assert!(!out.contains("CHANGE-ME"), "{out}");
}

/// README's "Fleet" section, from its first line.
fn readme_fleet() -> String {
    let readme =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let at = readme.find("\n## Fleet").expect("a Fleet section");
    let fleet = &readme[at + 1..];
    let end = fleet[3..].find("\n## ").map_or(fleet.len(), |e| e + 3);
    fleet[..end].to_string()
}

/// The lines of the ```sh block after the line that starts with `step`, comments removed.
fn readme_commands(fleet: &str, step: &str) -> Vec<(String, String)> {
    let at = fleet
        .find(step)
        .unwrap_or_else(|| panic!("no {step:?} in README's Fleet"));
    let block = &fleet[at..];
    let start = block.find("```sh\n").expect("a sh block") + 6;
    let block = &block[start..start + block[start..].find("```").unwrap()];
    block
        .lines()
        .map(|l| match l.split_once("  #") {
            Some((command, comment)) => (command.trim().to_string(), comment.trim().to_string()),
            None => (l.trim().to_string(), String::new()),
        })
        .filter(|(c, _)| !c.is_empty())
        .collect()
}

/// `line` run by `sh -c` with `cairn` on PATH and the environment `command` gives cairn.
fn shell(d: &Dir, line: &str) -> Run {
    let like = command(d, &[]);
    let mut cmd = Command::new("sh");
    for (name, value) in like.get_envs() {
        match value {
            Some(v) => cmd.env(name, v),
            None => cmd.env_remove(name),
        };
    }
    let bin = d.join("bin");
    fs::create_dir_all(&bin).unwrap();
    let _ = std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_cairn"), bin.join("cairn"));
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    cmd.env("PATH", path)
        .current_dir(d.path())
        .args(["-c", line]);
    Run::of(cmd)
}

/// README's "Fleet" walkthrough, step by step as a new user types it, on a scratch root:
/// /etc/cairn, the sources, the repository and the metrics directory are moved below the test
/// directory, the report goes to an API on loopback, and the schedule is written with `--root`.
/// The scheduled commands are then run as cron (or systemd) would run them.
#[test]
fn the_readme_fleet_walkthrough_ends_in_a_scheduled_reported_backup() {
    let d = setup();
    let server = api(&[]);
    let fleet = readme_fleet();
    let etc_cairn = d.join("etc/cairn");
    let metrics_dir = d.join("node-exporter");
    let moved = |text: &str| {
        text.replace("/etc/cairn", etc_cairn.to_str().unwrap())
            .replace(
                "/var/lib/prometheus/node-exporter",
                metrics_dir.to_str().unwrap(),
            )
    };
    // 1. The password and the metrics directory (cairn itself is built already).
    for (line, _) in readme_commands(&fleet, "**1. ") {
        if !line.starts_with("cargo build") {
            shell(&d, &moved(&line)).success();
        }
    }
    assert!(
        fs::read_to_string(etc_cairn.join("password"))
            .unwrap()
            .len()
            > 40
    );
    assert!(metrics_dir.is_dir());
    // 2. The profile, its locations moved.
    let start = fleet.find("```toml\n").expect("a TOML profile") + 8;
    let mut toml = moved(&fleet[start..start + fleet[start..].find("```").unwrap()]);
    let mut sources = Vec::new();
    for dir in ["etc", "home", "root", "boot"] {
        let src = d.join("host").join(dir);
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("file"), format!("{dir}\n")).unwrap();
        sources.push(format!("\"{}\"", src.display()));
    }
    for (from, to) in [
        (
            "[\"/etc\", \"/home\", \"/root\", \"/boot\"]",
            format!("[{}]", sources.join(", ")),
        ),
        ("\"/srv/backup\"", format!("\"{}\"", d.repo().display())),
        (
            "\"https://ops.example.com/api/backup-runs\"",
            format!("\"{}\"", server.url),
        ),
    ] {
        assert!(toml.contains(from), "the README's profile has no {from}");
        toml = toml.replace(from, &to);
    }
    fs::create_dir_all(d.join("config/cairn")).unwrap();
    let profile_path = d.join("config/cairn/nightly.toml");
    fs::write(&profile_path, &toml).unwrap();
    // The password is the README's random one, in the profile.
    let snapshots = || {
        let list = cairn(&d, &["-P", "nightly", "snapshots", "--json"])
            .success()
            .json();
        list.as_array().unwrap().clone()
    };
    // 3. The repository and the first backup, with the summary the README shows.
    for (line, comment) in readme_commands(&fleet, "**3. ") {
        let out = shell(&d, &line).success().stdout();
        let expected = comment.trim_matches('"');
        if line.ends_with(" backup") {
            assert!(out.starts_with(expected), "{line}: {out}");
        }
    }
    assert_eq!(snapshots().len(), 1);
    let r = last_report(&server);
    assert_eq!(r["outcome"], "success");
    assert_eq!(r["kind"], "full");
    assert_eq!(r["snapshot_id"], snapshots()[0]["id"]);
    // Cloned: a guard kept for the rest of the test would stop the server taking more reports.
    let head = server.requests.lock().unwrap()[0].0.clone();
    assert!(
        head.to_ascii_lowercase()
            .contains("authorization: bearer change-me"),
        "{head}"
    );
    let metrics = metrics_dir.join("cairn.prom");
    assert!(sample(&metrics, "cairn_last_success_timestamp_seconds", "backup").is_some());
    // 4. The schedule, below a scratch root.
    let root = d.join("image");
    let with_root = format!(" --root {}", root.display());
    let mut installed = 0;
    for (line, _) in readme_commands(&fleet, "**4. ") {
        if !line.starts_with("cairn ") {
            continue;
        }
        let out = shell(&d, &format!("{line}{with_root}")).success().stdout();
        if line.contains(" install ") {
            installed += 1;
        } else {
            assert_eq!(out.lines().count(), installed, "{line}: {out}");
        }
    }
    assert_eq!(installed, 3);
    // Each entry runs this cairn with the profile by its path; run each as its scheduler would,
    // with none of this test's environment.
    let systemd = Path::new("/run/systemd/system").is_dir();
    let profile_arg = format!("-P {}", profile_path.display());
    for command in ["backup", "forget", "check"] {
        let unit = format!("cairn-nightly-{command}");
        let line = if systemd {
            let service = root.join(format!("etc/systemd/system/{unit}.service"));
            let text = fs::read_to_string(&service).unwrap();
            let exec = text.lines().find_map(|l| l.strip_prefix("ExecStart="));
            exec.unwrap().to_string()
        } else {
            let text = fs::read_to_string(root.join("etc/cron.d").join(&unit)).unwrap();
            let entry = text.lines().last().unwrap();
            let fields: Vec<&str> = entry.splitn(7, ' ').collect();
            assert_eq!(fields[5], "root", "{entry}");
            fields[6].to_string()
        };
        let expected = format!("{} {profile_arg} {command}", env!("CARGO_BIN_EXE_cairn"));
        assert_eq!(line, expected);
        let out = Command::new("sh")
            .args(["-c", &line])
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("HOME", d.path())
            .current_dir("/")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{line}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            sample(&metrics, "cairn_last_success_timestamp_seconds", command).is_some(),
            "{command}"
        );
    }
    assert_eq!(snapshots().len(), 2);
    let r = last_report(&server);
    assert_eq!(r["command"], "backup");
    assert_eq!(r["kind"], "incremental", "{}", r["kind_reason"]);
    assert_eq!(r["snapshot_id"], snapshots()[1]["id"]);
    shell(&d, &format!("cairn -P nightly schedule remove{with_root}")).success();
    let left = shell(&d, &format!("cairn schedule list{with_root}")).success();
    assert_eq!(left.stdout().trim(), "no schedules installed");
}
