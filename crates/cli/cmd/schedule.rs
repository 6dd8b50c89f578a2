//! `schedule install|list|remove`: run `cairn -P NAME COMMAND` on a timer, as a systemd
//! service and timer (Persistent=true, so that a run missed while the host was off happens at
//! boot) or, where systemd does not run, a file in /etc/cron.d.
//!
//! Invariant: only files that carry cairn's mark are listed or removed, so a schedule never
//! touches a unit or cron file someone else wrote.

use crate::args::{Cli, ScheduleInstallArgs, ScheduleRemoveArgs, ScheduleRootArgs, SchedulerArg};
use crate::{failed, invalid};
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The first line of every file cairn writes; the second carries what `list` shows.
const MARK: &str = "# Written by `cairn schedule install`; `cairn schedule remove` removes it.";
const META: &str = "# cairn-schedule:";

/// Where one scheduler keeps its files, below `--root` or /.
struct Place {
    scheduler: SchedulerArg,
    dir: PathBuf,
    /// Whether the files are the running host's own, so that systemctl is told of them.
    live: bool,
    /// A user's systemd units (`systemctl --user`) rather than the system's.
    user: bool,
}

fn place(a: &ScheduleRootArgs) -> Result<Place> {
    let scheduler = a.scheduler.unwrap_or_else(|| {
        if Path::new("/run/systemd/system").is_dir() {
            SchedulerArg::Systemd
        } else {
            SchedulerArg::Cron
        }
    });
    let root_user = rustix::process::getuid().is_root();
    let (base, live) = match &a.root {
        Some(r) => (r.clone(), false),
        None => (PathBuf::from("/"), true),
    };
    let user = live && !root_user;
    let dir = match scheduler {
        SchedulerArg::Systemd if user => {
            let config = std::env::var_os("XDG_CONFIG_HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
                .ok_or_else(|| {
                    failed("cannot find your systemd user directory: HOME is not set")
                })?;
            config.join("systemd/user")
        }
        SchedulerArg::Systemd => base.join("etc/systemd/system"),
        SchedulerArg::Cron if user => return Err(invalid(
            "a cron entry goes to /etc/cron.d, which needs root: run as root, or give --root DIR",
        )),
        SchedulerArg::Cron => base.join("etc/cron.d"),
    };
    Ok(Place {
        scheduler,
        dir,
        live,
        user,
    })
}

/// `cairn-NAME-COMMAND`, in the letters systemd unit names and cron.d file names both allow.
fn unit_name(profiles: &[String], command: &str) -> String {
    let name = profiles
        .iter()
        .map(|p| {
            let base = Path::new(p)
                .file_stem()
                .map_or(p.clone(), |s| s.to_string_lossy().into_owned());
            base.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("_");
    format!("cairn-{name}-{command}")
}

pub(crate) fn install(cli: &Cli, a: &ScheduleInstallArgs) -> Result<u8> {
    let profiles = &cli.profiles.names;
    if profiles.is_empty() {
        return Err(invalid(
            "schedule install needs a profile: cairn -P NAME schedule install --at ...",
        ));
    }
    let place = place(&a.root)?;
    let calendar =
        Calendar::parse(&a.at).map_err(|why| invalid(format!("--at {:?}: {why}", a.at)))?;
    let command = a.command.name();
    let unit = unit_name(profiles, command);
    let argv = command_line(cli, command)?;
    let meta = format!(
        "{META} profile={} command={command} at={}",
        profiles.join(","),
        a.at
    );
    std::fs::create_dir_all(&place.dir)
        .map_err(|e| failed(format!("cannot create {}: {e}", place.dir.display())))?;
    let written = match place.scheduler {
        SchedulerArg::Systemd => {
            let on_calendar = calendar.systemd.clone();
            check_with_systemd(&on_calendar)?;
            let service = format!(
                "{MARK}\n{meta}\n[Unit]\nDescription=cairn {command} of profile {p}\nWants=network-online.target\nAfter=network-online.target\n\n[Service]\nType=oneshot\nExecStart={exec}\nNice=10\nIOSchedulingClass=idle\n",
                p = profiles.join(", "),
                exec = argv.iter().map(|w| systemd_quote(w)).collect::<Vec<_>>().join(" "),
            );
            let timer = format!(
                "{MARK}\n{meta}\n[Unit]\nDescription=cairn {command} of profile {p}: {at}\n\n[Timer]\nOnCalendar={on_calendar}\nPersistent=true\nRandomizedDelaySec=60\n\n[Install]\nWantedBy=timers.target\n",
                p = profiles.join(", "),
                at = a.at,
            );
            let service_path = place.dir.join(format!("{unit}.service"));
            let timer_path = place.dir.join(format!("{unit}.timer"));
            write_file(&service_path, &service)?;
            write_file(&timer_path, &timer)?;
            // What `systemctl enable` does, so that the timer starts at every boot.
            let wants = place.dir.join("timers.target.wants");
            std::fs::create_dir_all(&wants)
                .map_err(|e| failed(format!("cannot create {}: {e}", wants.display())))?;
            let link = wants.join(format!("{unit}.timer"));
            let _ = std::fs::remove_file(&link);
            let target = if place.live {
                timer_path.clone()
            } else {
                PathBuf::from("/etc/systemd/system").join(format!("{unit}.timer"))
            };
            std::os::unix::fs::symlink(&target, &link)
                .map_err(|e| failed(format!("cannot link {}: {e}", link.display())))?;
            if place.live {
                systemctl(&place, &["daemon-reload"]);
                systemctl(&place, &["restart", &format!("{unit}.timer")]);
            }
            vec![service_path, timer_path]
        }
        SchedulerArg::Cron => {
            let (minute, hour, weekdays) = calendar
                .cron
                .clone()
                .ok_or_else(|| invalid(format!("--at {:?} has no cron equivalent: give a time like \"02:00\" or \"Mon 02:00\", or use --with systemd", a.at)))?;
            let line = format!(
                "{minute} {hour} * * {weekdays} root {}",
                argv.iter()
                    .map(|w| shell_quote(w))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            let text = format!("{MARK}\n{meta}\nSHELL=/bin/sh\nPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n{line}\n");
            let path = place.dir.join(&unit);
            write_file(&path, &text)?;
            if place.live && !cron_runs() {
                eprintln!("warning: neither systemd nor a cron daemon runs this host: the entry runs once one does (apt-get install cron && service cron start)");
            }
            vec![path]
        }
    };
    if !cli.quiet {
        for p in &written {
            println!("wrote {}", p.display());
        }
        println!("{unit} runs `{}` at {}", argv.join(" "), calendar.systemd);
    }
    Ok(0)
}

/// The command the timer runs: this very program, by absolute path, with the profiles.
fn command_line(cli: &Cli, command: &str) -> Result<Vec<String>> {
    let exe = std::env::current_exe()
        .map_err(|e| failed(format!("cannot find the cairn program's path: {e}")))?;
    let mut argv = vec![exe.to_string_lossy().into_owned()];
    // The file found now, by its path: the timer runs with another environment (no
    // XDG_CONFIG_HOME, perhaps another HOME), where the name could find another file or none.
    for file in &cli.profiles.files {
        argv.push("-P".into());
        argv.push(file.to_string_lossy().into_owned());
    }
    argv.push(command.into());
    Ok(argv)
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let cannot = |e: std::io::Error| failed(format!("cannot write {}: {e}", path.display()));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(cannot)?;
    std::io::Write::write_all(&mut tmp, text.as_bytes()).map_err(cannot)?;
    tmp.as_file().sync_all().map_err(cannot)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644)).map_err(cannot)?;
    tmp.persist(path).map_err(|e| cannot(e.error))?;
    Ok(())
}

/// Refuses a calendar systemd would refuse, when systemd-analyze is there to ask.
fn check_with_systemd(on_calendar: &str) -> Result<()> {
    let out = Command::new("systemd-analyze")
        .args(["calendar", on_calendar])
        .output();
    match out {
        Ok(o) if !o.status.success() => Err(invalid(format!(
            "systemd does not understand the calendar {on_calendar:?}: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ))),
        _ => Ok(()),
    }
}

/// Whether a cron daemon runs now. Installed is not enough: in a container nothing starts it.
/// Where /proc cannot be read, it is taken to run (no warning rather than a false one).
fn cron_runs() -> bool {
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return true;
    };
    processes.flatten().any(|p| {
        std::fs::read_to_string(p.path().join("comm"))
            .is_ok_and(|name| matches!(name.trim_end(), "cron" | "crond"))
    })
}

fn systemctl(place: &Place, args: &[&str]) {
    let mut cmd = Command::new("systemctl");
    if place.user {
        cmd.arg("--user");
    }
    match cmd.args(args).status() {
        Ok(s) if s.success() => {}
        Ok(s) => eprintln!("warning: systemctl {} failed ({s})", args.join(" ")),
        Err(e) => eprintln!("warning: cannot run systemctl {}: {e}", args.join(" ")),
    }
}

fn systemd_quote(word: &str) -> String {
    if word
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/-_.+=:,@".contains(c))
    {
        word.into()
    } else {
        format!(
            "\"{}\"",
            word.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('%', "%%")
        )
    }
}

fn shell_quote(word: &str) -> String {
    if word
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/-_.+=:,@".contains(c))
    {
        word.into()
    } else {
        // cron gives `%` a meaning of its own even inside quotes.
        format!("'{}'", word.replace('\'', "'\\''").replace('%', "\\%"))
    }
}

/// The files cairn wrote, with what their second line says.
fn ours(place: &Place) -> Vec<(PathBuf, String)> {
    let Ok(entries) = std::fs::read_dir(&place.dir) else {
        return Vec::new();
    };
    let mut found: Vec<(PathBuf, String)> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            name.starts_with("cairn-")
                && (place.scheduler == SchedulerArg::Cron
                    || name.ends_with(".timer")
                    || name.ends_with(".service"))
        })
        .filter_map(|p| {
            let text = std::fs::read_to_string(&p).ok()?;
            let mut lines = text.lines();
            (lines.next() == Some(MARK)).then_some(())?;
            let meta = lines.next()?.strip_prefix(META)?.trim().to_string();
            Some((p, meta))
        })
        .collect();
    found.sort();
    found
}

fn places(a: &ScheduleRootArgs) -> Result<Vec<Place>> {
    match a.scheduler {
        Some(_) => Ok(vec![place(a)?]),
        None => [SchedulerArg::Systemd, SchedulerArg::Cron]
            .into_iter()
            .filter_map(|s| {
                let one = ScheduleRootArgs {
                    root: a.root.clone(),
                    scheduler: Some(s),
                };
                place(&one).ok()
            })
            .map(Ok)
            .collect(),
    }
}

pub(crate) fn list(a: &ScheduleRootArgs) -> Result<u8> {
    let mut any = false;
    for place in places(a)? {
        for (path, meta) in ours(&place) {
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            if name.ends_with(".service") {
                continue;
            }
            any = true;
            let kind = match place.scheduler {
                SchedulerArg::Systemd => "systemd",
                SchedulerArg::Cron => "cron",
            };
            println!("{name}  {kind}  {meta}");
        }
    }
    if !any {
        println!("no schedules installed");
    }
    Ok(0)
}

pub(crate) fn remove(cli: &Cli, a: &ScheduleRemoveArgs) -> Result<u8> {
    let profiles = &cli.profiles.names;
    if profiles.is_empty() {
        return Err(invalid(
            "schedule remove needs a profile: cairn -P NAME schedule remove",
        ));
    }
    let commands: Vec<&str> = match a.command {
        Some(c) => vec![c.name()],
        None => vec!["backup", "forget", "prune", "check"],
    };
    let units: Vec<String> = commands.iter().map(|c| unit_name(profiles, c)).collect();
    let mut removed = 0;
    for place in places(&a.root)? {
        for (path, _) in ours(&place) {
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let unit = name.trim_end_matches(".timer").trim_end_matches(".service");
            if !units.iter().any(|u| u == unit) {
                continue;
            }
            if place.live && name.ends_with(".timer") {
                systemctl(&place, &["stop", &name]);
            }
            let link = place.dir.join("timers.target.wants").join(&name);
            let _ = std::fs::remove_file(link);
            std::fs::remove_file(&path)
                .map_err(|e| failed(format!("cannot remove {}: {e}", path.display())))?;
            if !cli.quiet {
                println!("removed {}", path.display());
            }
            removed += 1;
        }
        if place.live && place.scheduler == SchedulerArg::Systemd && removed > 0 {
            systemctl(&place, &["daemon-reload"]);
        }
    }
    if removed == 0 {
        return Err(failed(format!(
            "no schedule of profile {} to remove",
            profiles.join(", ")
        )));
    }
    Ok(0)
}

/// A calendar in systemd's syntax and, when it is one cron can say, as cron fields.
struct Calendar {
    systemd: String,
    /// (minute, hour, weekdays).
    cron: Option<(String, String, String)>,
}

impl Calendar {
    /// Takes systemd's syntax as it is, and also `daily 02:00` and `weekly Mon 02:00`, which
    /// people write and systemd does not take. Only `[WEEKDAYS] [*-*-*] HH:MM[:00]` and the
    /// words hourly, daily and weekly have a cron form.
    fn parse(at: &str) -> Result<Calendar, String> {
        let words: Vec<&str> = at.split_whitespace().collect();
        let words: Vec<&str> = match words.as_slice() {
            ["daily" | "weekly", rest @ ..] if !rest.is_empty() => rest.to_vec(),
            w => w.to_vec(),
        };
        let systemd = words.join(" ");
        if systemd.is_empty() {
            return Err("give a time, like \"daily 02:00\"".into());
        }
        check_syntax(&words)?;
        let cron = match words.as_slice() {
            ["hourly"] => Some(("0".into(), "*".into(), "*".into())),
            ["daily"] => Some(("0".into(), "0".into(), "*".into())),
            ["weekly"] => Some(("0".into(), "0".into(), "1".into())),
            [time] | ["*-*-*", time] => cron_time(time).map(|(m, h)| (m, h, "*".into())),
            [days, time] | [days, "*-*-*", time] => {
                cron_days(days).and_then(|d| cron_time(time).map(|(m, h)| (m, h, d)))
            }
            _ => None,
        };
        Ok(Calendar { systemd, cron })
    }
}

/// systemd's calendar shortcuts, each a whole calendar.
const SHORTCUTS: [&str; 9] = [
    "minutely",
    "hourly",
    "daily",
    "weekly",
    "monthly",
    "quarterly",
    "semiannually",
    "yearly",
    "annually",
];

/// The shape of systemd's calendar syntax, checked here so that a typo is refused where
/// systemd-analyze is not there to ask (a host without systemd, an image under `--root`):
/// `[WEEKDAYS] [DATE] [TIME] [TIME ZONE]` with at least one of the first three, a shortcut, or
/// `@SECONDS`. Inside a date or time only the characters are checked; systemd-analyze, where it
/// runs, checks the values.
fn check_syntax(words: &[&str]) -> Result<(), String> {
    if let [one] = words {
        let epoch = one
            .strip_prefix('@')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if SHORTCUTS.contains(one) || epoch {
            return Ok(());
        }
    }
    let mut rest = words;
    let mut fields = 0;
    for is_field in [is_weekdays, is_date, is_time] {
        if let [first, tail @ ..] = rest {
            if is_field(first) {
                rest = tail;
                fields += 1;
            }
        }
    }
    match rest {
        [] => Ok(()),
        [zone] if fields > 0 && (*zone == "UTC" || jiff::tz::TimeZone::get(zone).is_ok()) => Ok(()),
        [word, ..] => Err(format!(
            "{word:?} is not a weekday (Mon, Mon..Fri), a date (*-*-01), a time (02:00) or a time \
             zone in that place; the order is WEEKDAYS DATE TIME [ZONE], or one of {}",
            SHORTCUTS.join(", ")
        )),
    }
}

/// `Mon`, `Monday`, `Mon,Thu`, `Mon..Fri`, in any case.
fn is_weekdays(word: &str) -> bool {
    const DAYS: [&str; 7] = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    let day = |d: &str| {
        let d = d.to_ascii_lowercase();
        DAYS.iter().any(|n| *n == d || n[..3] == d)
    };
    word.split(',').all(|part| match part.split_once("..") {
        Some((a, b)) => day(a) && day(b),
        None => day(part),
    })
}

/// Fields of values: digits and `*`, with `,` lists, `..` ranges, `/` repetitions, and, in
/// `extra`, what else the field allows.
fn is_values(field: &str, extra: &str) -> bool {
    !field.is_empty()
        && field
            .chars()
            .all(|c| c.is_ascii_digit() || "*,./".contains(c) || extra.contains(c))
}

/// `[YEAR-]MONTH-DAY`, the day perhaps counted from the month's end (`~`).
fn is_date(word: &str) -> bool {
    let parts: Vec<&str> = word.split('-').collect();
    (2..=3).contains(&parts.len()) && parts.iter().all(|p| is_values(p, "~"))
}

/// `HOUR:MINUTE[:SECOND]`.
fn is_time(word: &str) -> bool {
    let parts: Vec<&str> = word.split(':').collect();
    (2..=3).contains(&parts.len()) && parts.iter().all(|p| is_values(p, ""))
}

/// `HH:MM` or `HH:MM:00` (HH may be `*`) as cron's minute and hour.
fn cron_time(t: &str) -> Option<(String, String)> {
    let parts: Vec<&str> = t.split(':').collect();
    let (h, m) = match parts.as_slice() {
        [h, m] | [h, m, "00"] => (*h, *m),
        _ => return None,
    };
    let hour = if h == "*" {
        "*".to_string()
    } else {
        h.parse::<u8>().ok().filter(|h| *h < 24)?.to_string()
    };
    let minute = m.parse::<u8>().ok().filter(|m| *m < 60)?.to_string();
    Some((minute, hour))
}

/// `Mon`, `Mon,Thu` or `Mon..Fri` as cron's day-of-week field.
fn cron_days(days: &str) -> Option<String> {
    const NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let day = |d: &str| {
        let d = d.to_ascii_lowercase();
        NAMES.iter().position(|n| {
            d.len() >= 3
                && n.starts_with(&d[..3])
                && "sunday monday tuesday wednesday thursday friday saturday".contains(&d)
        })
    };
    let fields: Option<Vec<String>> = days
        .split(',')
        .map(|part| match part.split_once("..") {
            Some((a, b)) => Some(format!("{}-{}", day(a)?, day(b)?)),
            None => day(part).map(|d| d.to_string()),
        })
        .collect();
    fields.map(|f| f.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendars_translate_to_cron() {
        let cron = |at: &str| Calendar::parse(at).unwrap().cron;
        let c = |m: &str, h: &str, d: &str| Some((m.to_string(), h.to_string(), d.to_string()));
        assert_eq!(cron("daily 02:00"), c("0", "2", "*"));
        assert_eq!(Calendar::parse("daily 02:00").unwrap().systemd, "02:00");
        assert_eq!(cron("Mon *-*-* 03:30"), c("30", "3", "1"));
        assert_eq!(cron("Mon..Fri 22:30"), c("30", "22", "1-5"));
        assert_eq!(cron("Sat,Sun 04:05:00"), c("5", "4", "6,0"));
        assert_eq!(cron("hourly"), c("0", "*", "*"));
        assert_eq!(cron("*-*-01 02:00"), None);
        assert_eq!(cron("Mon 25:00"), None);
        assert!(Calendar::parse(" ").is_err());
    }

    #[test]
    fn calendars_systemd_would_refuse_are_refused_without_asking_it() {
        for good in [
            "daily 02:00",
            "weekly Mon 02:00",
            "02:00",
            "Mon..Fri 22:30",
            "Sat,sunday *-*-* 04:05:00",
            "*-*-01 02:00",
            "2026-*-01/2 4,8:00:00.5",
            "*-02~03",
            "Mon",
            "Mon 02:00 UTC",
            "Mon 02:00 Europe/Berlin",
            "quarterly",
            "@1700000000",
        ] {
            assert!(Calendar::parse(good).is_ok(), "{good}");
        }
        for (bad, named) in [
            ("sometimes", "sometimes"),
            ("daily sometimes", "sometimes"),
            ("Moon 02:00", "Moon"),
            ("02:00 Mon", "Mon"),
            ("Mon 2am", "2am"),
            ("Mon 02:00 Mars/Olympus", "Mars/Olympus"),
            ("UTC", "UTC"),
            ("02:00:00:00", "02:00:00:00"),
            ("hourly daily", "hourly"),
        ] {
            let why = Calendar::parse(bad)
                .err()
                .unwrap_or_else(|| panic!("{bad}"));
            assert!(why.contains(&format!("{named:?}")), "{bad}: {why}");
        }
    }

    #[test]
    fn names_and_words_are_quoted() {
        assert_eq!(
            unit_name(&["night ly".into()], "backup"),
            "cairn-night_ly-backup"
        );
        assert_eq!(
            unit_name(&["/etc/cairn/a.toml".into(), "b".into()], "check"),
            "cairn-a_b-check"
        );
        assert_eq!(shell_quote("a b%"), "'a b\\%'");
        assert_eq!(systemd_quote("/usr/bin/cairn"), "/usr/bin/cairn");
        assert_eq!(systemd_quote("a b"), "\"a b\"");
    }
}
