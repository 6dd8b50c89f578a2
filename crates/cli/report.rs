//! Run reports: one JSON document for each backup, forget, prune and check (README.md, "Run
//! reports"), printed with `--json` and delivered to `--report-url`, `--report-mail` and
//! `--metrics-file`; the hooks run around it; and the lock that keeps two runs of the same
//! profiles from overlapping.
//!
//! Invariants: a report that cannot be delivered, or an `after` hook that fails, is a warning
//! that changes neither what was stored nor the exit code; the report's fields are only ever
//! added to (its `schema` says which set), never renamed; it holds no secret (the repository
//! is written without credentials, header values and passwords never appear).

use crate::args::{Cli, MailOn, RunArgs, SmtpTls};
use crate::open::{hostname, username};
use crate::profile::mask_url;
use crate::{exit, failed};
use anyhow::Result;
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The version of the report's set of fields; raised when fields are added.
const SCHEMA: u32 = 1;

/// What a command adds to its report while it runs.
#[derive(Default)]
pub(crate) struct Run {
    fields: Map<String, Value>,
    warnings: Vec<String>,
}

impl Run {
    /// Adds the command's own fields (an object's members) to the report.
    pub(crate) fn add(&mut self, fields: Value) {
        if let Value::Object(m) = fields {
            self.fields.extend(m);
        }
    }

    /// A warning: on stderr now, and in the report's `warnings`.
    pub(crate) fn warn(&mut self, message: impl Into<String>) {
        let message = message.into();
        eprintln!("warning: {message}");
        self.warnings.push(message);
    }

    /// A warning already shown to the user, for the report only.
    pub(crate) fn record_warning(&mut self, message: impl Into<String>) {
        self.warnings.push(message.into());
    }
}

/// Runs `work` as one reported run of `command`: takes the profiles' lock, runs the `before`
/// hooks, the work, then the `after` or `on-failure` hooks, and delivers the report. The
/// report starts with `blank`, the command's fields as a run that fails before it sets them
/// leaves them (so a failed run's report has every key, null where nothing is known). The
/// result is the work's.
pub(crate) fn reported(
    cli: &Cli,
    command: &'static str,
    a: &RunArgs,
    json: bool,
    blank: Value,
    work: impl FnOnce(&mut Run) -> Result<u8>,
) -> Result<u8> {
    let start = jiff::Zoned::now();
    let clock = Instant::now();
    let mut run = Run::default();
    run.add(blank);
    let mut report = common(cli, command, &start);
    let mut lock = None;
    let result = (|| {
        lock = profile_lock(cli, a.no_wait)?;
        let env = environment(&report);
        for cmd in &a.before {
            hook(cmd, &env, a.hook_timeout).map_err(|why| {
                failed(format!("before hook `{cmd}` {why}: the run did not start"))
            })?;
        }
        work(&mut run)
    })();
    let (code, error) = match &result {
        Ok(code) => (*code, Value::Null),
        Err(e) => (crate::exit_code(e), one_line(e).into()),
    };
    let end = jiff::Zoned::now();
    report.extend(std::mem::take(&mut run.fields));
    report.insert("exit_code".into(), code.into());
    report.insert("error".into(), error);
    report.insert("end".into(), end.timestamp().to_string().into());
    report.insert("duration_s".into(), clock.elapsed().as_secs_f64().into());
    let failed_run = result.is_err();
    let outcome = |warnings: &[String]| match () {
        _ if failed_run => "failure",
        _ if code == exit::INCOMPLETE || !warnings.is_empty() => "warning",
        _ => "success",
    };
    report.insert("outcome".into(), outcome(&run.warnings).into());
    report.insert("warnings".into(), json!(run.warnings));
    let env = environment(&report);
    let (hooks, when) = if failed_run {
        (&a.on_failure, "on-failure")
    } else {
        (&a.after, "after")
    };
    for cmd in hooks {
        if let Err(why) = hook(cmd, &env, a.hook_timeout) {
            run.warn(format!("{when} hook `{cmd}` {why}"));
        }
    }
    report.insert("outcome".into(), outcome(&run.warnings).into());
    report.insert("warnings".into(), json!(run.warnings));
    let report = Value::Object(report);
    if json {
        println!("{report}");
    }
    deliver(cli, command, a, &report);
    drop(lock);
    result
}

/// The fields every report has, as far as they are known before the run.
fn common(cli: &Cli, command: &str, start: &jiff::Zoned) -> Map<String, Value> {
    let repository = cli.repo.as_ref().map(|r| mask_url(&r.to_string()));
    let profile = (!cli.profiles.names.is_empty()).then(|| cli.profiles.label());
    let report = json!({
        "schema": SCHEMA,
        "program": format!("cairn {}", env!("CARGO_PKG_VERSION")),
        "command": command,
        "profile": profile,
        "host": hostname(),
        "ips": addresses(),
        "user": username(),
        "repository": repository,
        "start": start.timestamp().to_string(),
    });
    match report {
        Value::Object(m) => m,
        _ => unreachable!("json! of an object"),
    }
}

/// This host's addresses other than loopback (and IPv6 link-local ones, which name no host).
fn addresses() -> Vec<String> {
    let mut ips: Vec<String> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .filter(|i| !i.is_loopback() && !i.is_link_local())
        .map(|i| i.ip().to_string())
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

fn one_line(e: &anyhow::Error) -> String {
    e.chain()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

/// The report's plain fields as `CAIRN_<FIELD>` variables for hooks, and the whole report as
/// `CAIRN_REPORT`. Linux refuses to start a program with a variable over 128 KiB, so a longer
/// one (a check's list of errors) is cut, and a longer report is left out: hooks that need all
/// of it read the run report's other destinations.
fn environment(report: &Map<String, Value>) -> Vec<(String, String)> {
    const MAX: usize = 64 << 10;
    let cut = |mut text: String| {
        if text.len() > MAX {
            let mut end = MAX;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            text.push_str(" …");
        }
        text
    };
    let mut env: Vec<(String, String)> = report
        .iter()
        .filter_map(|(k, v)| {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Array(items) if items.iter().all(Value::is_string) => items
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" "),
                _ => return None,
            };
            Some((format!("CAIRN_{}", k.to_ascii_uppercase()), cut(text)))
        })
        .collect();
    let whole = Value::Object(report.clone()).to_string();
    if whole.len() <= MAX {
        env.push(("CAIRN_REPORT".into(), whole));
    }
    env
}

/// Runs one hook with `sh -c`, its output on stderr (stdout may be carrying the JSON report),
/// killed with its process group after `timeout`.
fn hook(cmd: &str, env: &[(String, String)], timeout: Duration) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::io::stderr()))
        .process_group(0)
        .spawn()
        .map_err(|e| format!("could not start: {e}"))?;
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("failed ({status})")),
            Ok(None) if Instant::now() >= deadline => {
                if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
                    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
                }
                let _ = child.wait();
                let secs = timeout.as_secs();
                return Err(format!("was killed after --hook-timeout {secs}s"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("could not be waited for: {e}")),
        }
    }
}

/// Holds the lock of the profiles given with `-P` until dropped; the kernel drops it when the
/// process dies, so a killed run never leaves it held.
fn profile_lock(cli: &Cli, no_wait: bool) -> Result<Option<std::fs::File>> {
    use rustix::fs::{flock, FlockOperation};
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if cli.profiles.names.is_empty() {
        return Ok(None);
    }
    // Keyed by the files, so that `-P night` and the timer's `-P /etc/cairn/night.toml`
    // share one lock.
    let files: Vec<String> = cli
        .profiles
        .files
        .iter()
        .map(|f| {
            std::fs::canonicalize(f)
                .unwrap_or(f.clone())
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let key = files.join("+").replace('/', "%");
    let name = cli.profiles.label();
    let dir = lock_dir(cli);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| {
            failed(format!(
                "cannot create the lock directory {}: {e}",
                dir.display()
            ))
        })?;
    let path = dir.join(format!("{key}.lock"));
    let cannot = |e: &dyn std::fmt::Display| failed(format!("cannot lock {}: {e}", path.display()));
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| cannot(&e))?;
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            let holder = holder.trim();
            if no_wait {
                return Err(cairn_repo::Error::new(
                    cairn_repo::ErrorKind::Locked,
                    format!("profile {name} is being run by another cairn ({holder}): not started (--no-wait)"),
                )
                .into());
            }
            eprintln!("waiting for the other run of profile {name} ({holder}) to end");
            flock(&file, FlockOperation::LockExclusive).map_err(|e| cannot(&e))?;
        }
        Err(e) => return Err(cannot(&e)),
    }
    let since = jiff::Timestamp::now();
    file.set_len(0).map_err(|e| cannot(&e))?;
    writeln!(file, "pid {} since {since}", std::process::id()).map_err(|e| cannot(&e))?;
    Ok(Some(file))
}

/// Where profile locks live: per boot and per user, never on a cache that hosts may share.
fn lock_dir(cli: &Cli) -> PathBuf {
    let uid = rustix::process::getuid();
    if uid.is_root() {
        return PathBuf::from("/run/cairn");
    }
    if let Some(run) = std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(run).join("cairn");
    }
    crate::open::cache_dir(cli)
        .map(|c| c.join("locks"))
        .unwrap_or_else(|| std::env::temp_dir().join(format!("cairn-{}", uid.as_raw())))
}

/// Sends the report to each destination asked for; a failure is a warning on stderr.
fn deliver(cli: &Cli, command: &str, a: &RunArgs, report: &Value) {
    let warn = |what: &str, why: String| eprintln!("warning: the run report was not {what}: {why}");
    if let Some(url) = &a.report_url {
        if let Err(why) =
            cairn_report::http::post(url, &a.report_header, report.to_string().as_bytes(), 5)
        {
            warn(&format!("delivered to {}", mask_url(url)), why);
        }
    }
    let outcome = report["outcome"].as_str().unwrap_or_default();
    let due = match a.mail_on {
        MailOn::Always => true,
        MailOn::Warning => outcome != "success",
        MailOn::Failure => outcome == "failure",
    };
    if !a.report_mail.is_empty() && due {
        if let Err(why) = mail(a, report) {
            warn("mailed", why);
        }
    }
    if let Some(path) = &a.metrics_file {
        if let Err(why) = metrics(cli, command, path, report) {
            warn(&format!("written to {}", path.display()), why);
        }
    }
}

fn mail(a: &RunArgs, report: &Value) -> Result<(), String> {
    let server = a.smtp.clone().ok_or("--report-mail needs --smtp")?;
    let password = match &a.smtp_password_file {
        Some(f) => {
            let text = std::fs::read_to_string(f)
                .map_err(|e| format!("--smtp-password-file {}: {e}", f.display()))?;
            Some(text.strip_suffix('\n').unwrap_or(&text).to_string())
        }
        None => None,
    };
    let tls = match a.smtp_tls {
        SmtpTls::None => cairn_report::mail::Tls::None,
        SmtpTls::Starttls => cairn_report::mail::Tls::StartTls,
        SmtpTls::Tls => cairn_report::mail::Tls::Tls,
    };
    let smtp = cairn_report::mail::Smtp {
        server,
        user: a.smtp_user.clone(),
        password,
        tls,
    };
    let field = |k: &str| report[k].as_str().unwrap_or_default().to_string();
    let (command, host, outcome) = (field("command"), field("host"), field("outcome"));
    let mail = cairn_report::mail::Mail {
        from: a
            .mail_from
            .clone()
            .unwrap_or_else(|| format!("cairn@{host}")),
        to: a.report_mail.clone(),
        subject: format!("cairn {command} on {host}: {outcome}"),
        text: summary(report),
        attachment_name: format!("cairn-{command}-{host}.json"),
        attachment: serde_json::to_vec_pretty(report).unwrap_or_default(),
    };
    cairn_report::mail::send(&smtp, &mail)
}

/// The report for a person: the main facts first, then every other plain field.
fn summary(report: &Value) -> String {
    let Value::Object(m) = report else {
        return String::new();
    };
    let first = [
        "command",
        "outcome",
        "exit_code",
        "error",
        "host",
        "profile",
        "repository",
        "start",
        "end",
        "duration_s",
        "snapshot_id",
        "kind",
        "kind_reason",
    ];
    let show = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(items) if items.iter().all(Value::is_string) => Some(
            items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", "),
        ),
        _ => None,
    };
    // The names backup's JSON had before run reports, kept for programs: a person needs each
    // fact once.
    let older = [
        "parent",
        "bytes_added",
        "raw_bytes_added",
        "duration_seconds",
        "errors",
        "schema",
    ];
    let mut text = String::new();
    let keys = first.iter().map(|k| k.to_string()).chain(
        m.keys()
            .filter(|k| !first.contains(&k.as_str()) && !older.contains(&k.as_str()))
            .cloned(),
    );
    for key in keys {
        if let Some(value) = m.get(&key).and_then(show) {
            if !value.is_empty() {
                text.push_str(&format!("{key}: {value}\n"));
            }
        }
    }
    if let Some(Value::Array(w)) = m.get("warnings") {
        for warning in w.iter().filter_map(Value::as_str) {
            text.push_str(&format!("warning: {warning}\n"));
        }
    }
    text.push_str("\nThe full report is attached (JSON, README.md \"Run reports\").\n");
    text
}

/// Prometheus metrics of the run, labelled by host, command and profile.
fn metrics(cli: &Cli, command: &str, path: &std::path::Path, report: &Value) -> Result<(), String> {
    use cairn_report::metrics::Sample;
    let number = |k: &str| report[k].as_f64().unwrap_or(0.0);
    let end = report["end"]
        .as_str()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map_or(0.0, |t| t.as_millisecond() as f64 / 1000.0);
    let failed_run = report["outcome"] == "failure";
    // `errors` lists a backup's unreadable files and a check's findings.
    let errors =
        report["errors"].as_array().map_or(0, Vec::len) as f64 + if failed_run { 1.0 } else { 0.0 };
    let mut samples = vec![
        Sample {
            name: "cairn_last_run_timestamp_seconds",
            help: "When the last run ended (Unix time).",
            value: end,
        },
        Sample {
            name: "cairn_run_duration_seconds",
            help: "How long the last run took.",
            value: number("duration_s"),
        },
        Sample {
            name: "cairn_last_exit_code",
            help: "The exit code of the last run.",
            value: number("exit_code"),
        },
        Sample {
            name: "cairn_errors",
            help: "Errors of the last run: unreadable files, check errors, 1 for a failed run.",
            value: errors,
        },
    ];
    if !failed_run {
        samples.push(Sample {
            name: "cairn_last_success_timestamp_seconds",
            help: "When the last run that did not fail ended (Unix time).",
            value: end,
        });
    }
    if command == "backup" && !failed_run {
        samples.push(Sample {
            name: "cairn_bytes_added",
            help: "Bytes the last backup stored (compressed and encrypted).",
            value: number("bytes_added_stored"),
        });
        samples.push(Sample {
            name: "cairn_files_total",
            help: "Files in the last backup's snapshot.",
            value: number("total_files"),
        });
    }
    let host = report["host"].as_str().unwrap_or_default().to_string();
    let profile = cli.profiles.label();
    let labels = [
        ("host", host.as_str()),
        ("command", command),
        ("profile", profile.as_str()),
    ];
    cairn_report::metrics::update(path, &labels, &samples).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A check with many findings: no variable may stop the hook from starting (Linux refuses
    /// one over 128 KiB).
    #[test]
    fn hook_variables_stay_under_the_kernels_limit() {
        let errors: Vec<String> = (0..20_000)
            .map(|i| format!("pack {i:08} is missing"))
            .collect();
        let report = json!({"command": "check", "outcome": "failure", "errors": errors});
        let Value::Object(m) = report else {
            unreachable!()
        };
        let env = environment(&m);
        let get = |k: &str| {
            env.iter()
                .find(|(name, _)| name == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get("CAIRN_OUTCOME").as_deref(), Some("failure"));
        let listed = get("CAIRN_ERRORS").unwrap();
        assert!(
            listed.len() <= (64 << 10) + 4 && listed.ends_with('…'),
            "{}",
            listed.len()
        );
        assert_eq!(get("CAIRN_REPORT"), None);
        let ok = hook("test -n \"$CAIRN_ERRORS\"", &env, Duration::from_secs(10));
        assert_eq!(ok, Ok(()));
    }
}
