//! Choosing snapshots: by id prefix or `latest`, and the parent of a new backup.

use crate::Result;
use cairn_format::snapshot::{Kind, Snapshot};
use cairn_format::SnapshotId;
use cairn_repo::{Error, ErrorKind, Repository};
use std::time::Duration;

/// Resolves `latest` or a unique id prefix (at least 4 hex digits are not required; any unique
/// prefix will do) among `snapshots`, which are sorted oldest first.
pub fn find_snapshot<'a>(
    snapshots: &'a [(SnapshotId, Snapshot)],
    spec: &str,
) -> Result<&'a (SnapshotId, Snapshot)> {
    if let Some((base, back)) = spec.rsplit_once('~') {
        let back: usize = back.parse().map_err(|_| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("invalid snapshot {spec:?}: after `~` give a number, like latest~1"),
            )
        })?;
        let (id, snap) = find_snapshot(snapshots, base)?;
        // The same host and paths, oldest first, as `snapshots` is.
        let line: Vec<&(SnapshotId, Snapshot)> = snapshots
            .iter()
            .filter(|(_, s)| s.host == snap.host && s.paths == snap.paths)
            .collect();
        let at = line.iter().position(|(i, _)| i == id).unwrap_or(0);
        return at.checked_sub(back).map(|i| line[i]).ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!(
                    "{spec}: snapshot {} has only {at} predecessors of the same host and paths",
                    id.short()
                ),
            )
        });
    }
    if spec == "latest" {
        return snapshots
            .last()
            .ok_or_else(|| Error::new(ErrorKind::NotFound, "the repository has no snapshots"));
    }
    let spec_lower = spec.to_ascii_lowercase();
    if spec_lower.is_empty() || !spec_lower.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("invalid snapshot {spec:?}: give an id, an id prefix or \"latest\""),
        ));
    }
    let mut found = snapshots
        .iter()
        .filter(|(id, _)| id.to_hex().starts_with(&spec_lower));
    match (found.next(), found.next()) {
        (Some(s), None) => Ok(s),
        (None, _) => Err(Error::new(
            ErrorKind::NotFound,
            format!("no snapshot with id {spec}"),
        )),
        (Some(_), Some(_)) => Err(Error::new(
            ErrorKind::InvalidInput,
            format!("snapshot id prefix {spec} is ambiguous"),
        )),
    }
}

/// The parent of a new backup of `paths` on `host`: the latest snapshot of the same host and
/// paths, or for a differential backup the latest *full* one. A full backup has none.
pub fn find_parent(
    repo: &Repository,
    host: &[u8],
    paths: &[Vec<u8>],
    kind: Kind,
) -> Result<Option<(SnapshotId, Snapshot)>> {
    if kind == Kind::Full {
        return Ok(None);
    }
    Ok(parent_in(&repo.snapshots()?.list, host, paths, kind))
}

/// `find_parent` among `snapshots` (oldest first), for a caller that has read them already.
pub fn parent_in(
    snapshots: &[(SnapshotId, Snapshot)],
    host: &[u8],
    paths: &[Vec<u8>],
    kind: Kind,
) -> Option<(SnapshotId, Snapshot)> {
    if kind == Kind::Full {
        return None;
    }
    snapshots
        .iter()
        .rev()
        .find(|(_, s)| {
            s.host == host
                && s.paths == paths
                && (kind != Kind::Differential || s.kind == Kind::Full)
        })
        .cloned()
}

/// Which snapshots a command considers: `--host`, `--path` and `--tag`. Empty lists match all.
#[derive(Clone, Debug, Default)]
pub struct SnapshotFilter {
    /// Any of these hosts.
    pub hosts: Vec<Vec<u8>>,
    /// Each of these paths is a source of the snapshot or lies below one.
    pub paths: Vec<std::path::PathBuf>,
    /// All of these tags.
    pub tags: Vec<Vec<u8>>,
}

impl SnapshotFilter {
    pub fn matches(&self, s: &Snapshot) -> bool {
        use std::os::unix::ffi::OsStrExt;
        let host = self.hosts.is_empty() || self.hosts.contains(&s.host);
        let paths = self.paths.iter().all(|p| {
            s.paths
                .iter()
                .any(|sp| p.starts_with(std::path::Path::new(std::ffi::OsStr::from_bytes(sp))))
        });
        let tags = self.tags.iter().all(|t| s.tags.contains(t));
        host && paths && tags
    }
}

/// When `backup --kind auto` makes a full backup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FullEvery {
    /// When none was made since the latest such weekday, 00:00 local time.
    Weekday(jiff::civil::Weekday),
    /// When the latest full one is at least this old.
    Age(Duration),
}

/// The kind `backup --kind auto` makes at `time_ns` of `paths` on `host`, and why, as a phrase
/// for the summary and the run report: full when `every` says one is due (or none exists),
/// `between` otherwise. Only snapshots taken at or before `time_ns` count, so that a backup
/// with an earlier `--time` decides as it would have then.
pub fn choose_kind(
    snapshots: &[(SnapshotId, Snapshot)],
    host: &[u8],
    paths: &[Vec<u8>],
    time_ns: i64,
    every: FullEvery,
    between: Kind,
    tz: &jiff::tz::TimeZone,
) -> (Kind, String) {
    let show = |t: i64| {
        jiff::Timestamp::from_nanosecond(i128::from(t))
            .map(|ts| {
                ts.to_zoned(tz.clone())
                    .strftime("%Y-%m-%d %H:%M")
                    .to_string()
            })
            .unwrap_or_else(|_| t.to_string())
    };
    let latest_full = snapshots
        .iter()
        .filter(|(_, s)| {
            s.host == host && s.paths == paths && s.kind == Kind::Full && s.time <= time_ns
        })
        .max_by_key(|(_, s)| s.time);
    let Some((id, full)) = latest_full else {
        return (
            Kind::Full,
            "no full snapshot of this host and paths yet".into(),
        );
    };
    let latest = format!("full snapshot {} of {}", id.short(), show(full.time));
    match every {
        FullEvery::Weekday(day) => {
            let since = last_weekday_start(time_ns, day, tz);
            let date = show(since);
            let when = format!("{day:?} {} 00:00", date.split(' ').next().unwrap_or(""));
            if full.time >= since {
                (between, format!("the {latest} was made since {when}"))
            } else {
                let why = format!("no full snapshot since {when} (the latest is {latest})");
                (Kind::Full, why)
            }
        }
        FullEvery::Age(every) => {
            let old = Duration::from_nanos(time_ns.saturating_sub(full.time).max(0) as u64);
            let (h, spec) = (old.as_secs() / 3600, every.as_secs() / 3600);
            if old >= every {
                let why = format!("the {latest} is {h}h old, --full-every {spec}h");
                (Kind::Full, why)
            } else {
                (
                    between,
                    format!("the {latest} is {h}h old, less than {spec}h"),
                )
            }
        }
    }
}

/// 00:00 local time of the latest `day` at or before `time_ns`, in nanoseconds.
fn last_weekday_start(time_ns: i64, day: jiff::civil::Weekday, tz: &jiff::tz::TimeZone) -> i64 {
    let Ok(now) = jiff::Timestamp::from_nanosecond(i128::from(time_ns)) else {
        return i64::MIN;
    };
    let date = now.to_zoned(tz.clone()).date();
    let back = (date.weekday().to_monday_zero_offset() - day.to_monday_zero_offset()).rem_euclid(7);
    date.checked_sub(jiff::Span::new().days(i64::from(back)))
        .ok()
        .and_then(|d| d.to_zoned(tz.clone()).ok())
        .map(|z| z.timestamp().as_nanosecond() as i64)
        .unwrap_or(i64::MIN)
}

/// The newest of `snapshots` (sorted oldest first) taken at or before `time_ns`.
pub fn newest_at(
    snapshots: &[(SnapshotId, Snapshot)],
    time_ns: i64,
) -> Option<&(SnapshotId, Snapshot)> {
    snapshots.iter().rev().find(|(_, s)| s.time <= time_ns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_format::snapshot::Summary;
    use cairn_format::{Id, TreeId};

    fn snap(n: u8, time: i64, host: &str, path: &str, tags: &[&str]) -> (SnapshotId, Snapshot) {
        let s = Snapshot {
            time,
            host: host.into(),
            user: Vec::new(),
            paths: vec![path.into()],
            tags: tags.iter().map(|t| t.as_bytes().to_vec()).collect(),
            kind: Kind::Incremental,
            parent: None,
            tree: TreeId::default(),
            summary: Summary::default(),
            program: Vec::new(),
        };
        (SnapshotId(Id([n; 32])), s)
    }

    #[test]
    fn a_tilde_walks_back_through_the_same_host_and_paths() {
        let all = vec![
            snap(0x11, 100, "a", "/etc", &[]),
            snap(0x22, 200, "b", "/etc", &[]),
            snap(0x33, 300, "a", "/etc", &[]),
            snap(0x44, 400, "a", "/home", &[]),
            snap(0x55, 500, "a", "/etc", &[]),
        ];
        let time = |spec: &str| find_snapshot(&all, spec).map(|(_, s)| s.time);
        assert_eq!(time("55~0").unwrap(), 500);
        assert_eq!(time("55~1").unwrap(), 300);
        assert_eq!(time("55~2").unwrap(), 100);
        assert_eq!(time("latest~1").unwrap(), 300);
        assert_eq!(time("44~0").unwrap(), 400);
        let e = find_snapshot(&all, "55~3").unwrap_err();
        assert!(e.message.contains("only 2 predecessors"), "{}", e.message);
        assert_eq!(
            find_snapshot(&all, "latest~x").unwrap_err().kind,
            ErrorKind::InvalidInput
        );
    }

    #[test]
    fn selection_by_time_prefix_and_filter() {
        let all = vec![
            snap(0x11, 100, "a", "/etc", &["x"]),
            snap(0x22, 200, "b", "/home", &[]),
            snap(0x23, 300, "a", "/etc", &[]),
        ];
        assert_eq!(newest_at(&all, 99), None);
        assert_eq!(newest_at(&all, 100).unwrap().1.time, 100);
        assert_eq!(newest_at(&all, 299).unwrap().1.time, 200);
        assert_eq!(newest_at(&all, i64::MAX).unwrap().1.time, 300);
        assert_eq!(find_snapshot(&all, "latest").unwrap().1.time, 300);
        assert_eq!(find_snapshot(&all, "11").unwrap().1.time, 100);
        assert!(find_snapshot(&all, "2")
            .unwrap_err()
            .message
            .contains("ambiguous"));
        assert!(find_snapshot(&all, "33")
            .unwrap_err()
            .message
            .contains("no snapshot"));
        assert!(find_snapshot(&all, "xyz").is_err());
        let f = SnapshotFilter {
            hosts: vec![b"a".to_vec()],
            paths: vec!["/etc/ssh".into()],
            tags: vec![],
        };
        assert_eq!(all.iter().filter(|(_, s)| f.matches(s)).count(), 2);
        let f = SnapshotFilter {
            tags: vec![b"x".to_vec()],
            ..SnapshotFilter::default()
        };
        assert_eq!(all.iter().filter(|(_, s)| f.matches(s)).count(), 1);
        let f = SnapshotFilter {
            paths: vec!["/e".into()],
            ..SnapshotFilter::default()
        };
        assert_eq!(all.iter().filter(|(_, s)| f.matches(s)).count(), 0);
    }

    /// A week of nightly backups at 02:00 with `--full-every mon`: full on Monday, incremental
    /// otherwise, and a full on the first night after a Monday that was missed.
    #[test]
    fn kind_auto_makes_a_full_backup_each_monday() {
        let tz = jiff::tz::TimeZone::UTC;
        let night = |date: &str| -> i64 {
            let t: jiff::Timestamp = format!("{date}T02:00:00Z").parse().unwrap();
            t.as_nanosecond() as i64
        };
        let mon = FullEvery::Weekday(jiff::civil::Weekday::Monday);
        let mut list: Vec<(SnapshotId, Snapshot)> = Vec::new();
        let mut kinds = Vec::new();
        // 2026-11-30 is a Monday; the host is off on Monday 2026-12-07.
        for (n, date) in [
            "2026-11-28",
            "2026-11-29",
            "2026-11-30",
            "2026-12-01",
            "2026-12-02",
            "2026-12-06",
            "2026-12-08",
            "2026-12-09",
        ]
        .iter()
        .enumerate()
        {
            let t = night(date);
            let (kind, why) = choose_kind(
                &list,
                b"a",
                &[b"/etc".to_vec()],
                t,
                mon,
                Kind::Incremental,
                &tz,
            );
            assert!(!why.is_empty());
            kinds.push(kind);
            let mut s = snap(n as u8, t, "a", "/etc", &[]);
            s.1.kind = kind;
            list.push(s);
        }
        use Kind::{Full as F, Incremental as I};
        assert_eq!(kinds, [F, I, F, I, I, I, F, I]);
        // Another host's or paths' full backups do not count.
        let t = night("2026-12-10");
        let other = choose_kind(
            &list,
            b"b",
            &[b"/etc".to_vec()],
            t,
            mon,
            Kind::Incremental,
            &tz,
        );
        assert_eq!(other.0, F);
        assert!(other.1.contains("yet"), "{}", other.1);
        // A duration: full when the latest full is at least that old.
        let week = FullEvery::Age(Duration::from_secs(7 * 86400));
        let d = |date| {
            choose_kind(
                &list,
                b"a",
                &[b"/etc".to_vec()],
                night(date),
                week,
                Kind::Differential,
                &tz,
            )
            .0
        };
        assert_eq!(d("2026-12-14"), Kind::Differential);
        assert_eq!(d("2026-12-15"), F);
        // A --time before every full snapshot sees none of them.
        assert_eq!(d("2026-11-01"), F);
    }
}
