//! The names the mount gives snapshots, hosts and tags: a snapshot is its time in local time
//! (`2026-12-03T14:05:09`), a host or tag its own name made safe for a directory entry.
//!
//! Invariant: every mounted snapshot has one name, the same in every directory that lists it,
//! and no two mounted snapshots share one: snapshots whose times read alike (the same second,
//! or an hour a clock change repeats) all carry `-<short id>`, so a name never depends on which
//! of them was saved first. Names are given among the mounted snapshots: with `--host` or
//! `--tag`, a snapshot whose twin is filtered out goes without the suffix.

use cairn_format::snapshot::Snapshot;
use cairn_format::SnapshotId;
use jiff::tz::TimeZone;
use std::collections::HashMap;

/// A snapshot's time as a directory name, to the second, in `tz`.
pub fn time_name(ns: i64, tz: &TimeZone) -> String {
    match jiff::Timestamp::from_nanosecond(i128::from(ns)) {
        Ok(ts) => ts
            .to_zoned(tz.clone())
            .strftime("%Y-%m-%dT%H:%M:%S")
            .to_string(),
        // Unreachable for an i64 of nanoseconds (years 1677 to 2262), but a name it must have.
        Err(_) => format!("time-{ns}"),
    }
}

/// One name per snapshot, in the order given.
pub fn snapshot_names(snapshots: &[(SnapshotId, Snapshot)], tz: &TimeZone) -> Vec<String> {
    let times: Vec<String> = snapshots
        .iter()
        .map(|(_, s)| time_name(s.time, tz))
        .collect();
    let mut count: HashMap<&str, usize> = HashMap::new();
    for t in &times {
        *count.entry(t.as_str()).or_default() += 1;
    }
    let mut names: Vec<String> = times
        .iter()
        .zip(snapshots)
        .map(|(t, (id, _))| {
            if count[t.as_str()] > 1 {
                format!("{t}-{}", id.short())
            } else {
                t.clone()
            }
        })
        .collect();
    // Two snapshots whose ids share their first 8 hex digits and whose times read alike are
    // all but impossible; should it happen, the full id still tells them apart.
    let mut seen: HashMap<String, usize> = HashMap::new();
    for name in &names {
        *seen.entry(name.clone()).or_default() += 1;
    }
    for ((name, time), (id, _)) in names.iter_mut().zip(&times).zip(snapshots) {
        if seen[name.as_str()] > 1 {
            *name = format!("{time}-{}", id.to_hex());
        }
    }
    names
}

/// A host or tag as one directory entry: any bytes but `/` and NUL, never `.` or `..`. Such
/// characters are written `%2F` and `%00`, and `.`/`..` as `%2E`/`%2E%2E`; two names that come
/// out alike simply share a directory.
pub fn entry_name(raw: &[u8]) -> Vec<u8> {
    match raw {
        b"" => b"%00".to_vec(),
        b"." => b"%2E".to_vec(),
        b".." => b"%2E%2E".to_vec(),
        _ => {
            let mut out = Vec::with_capacity(raw.len());
            for &b in raw {
                match b {
                    b'/' => out.extend_from_slice(b"%2F"),
                    0 => out.extend_from_slice(b"%00"),
                    _ => out.push(b),
                }
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_format::snapshot::{Kind, Summary};
    use cairn_format::{Id, TreeId};

    fn snap(id: u8, ns: i64) -> (SnapshotId, Snapshot) {
        let snapshot = Snapshot {
            time: ns,
            host: b"h".to_vec(),
            user: Vec::new(),
            paths: Vec::new(),
            tags: Vec::new(),
            kind: Kind::Full,
            parent: None,
            tree: TreeId(Id([0; 32])),
            summary: Summary::default(),
            program: Vec::new(),
        };
        (SnapshotId(Id([id; 32])), snapshot)
    }

    const SEC: i64 = 1_000_000_000;

    #[test]
    fn a_time_is_named_in_the_given_zone_to_the_second() {
        let t = 1_796_306_709 * SEC + 123; // 2026-12-03T14:05:09Z
        assert_eq!(time_name(t, &TimeZone::UTC), "2026-12-03T14:05:09");
        let plus2 = TimeZone::fixed(jiff::tz::offset(2));
        assert_eq!(time_name(t, &plus2), "2026-12-03T16:05:09");
        assert_eq!(time_name(-SEC, &TimeZone::UTC), "1969-12-31T23:59:59");
    }

    #[test]
    fn times_that_read_alike_all_carry_their_short_id() {
        let t = 1_796_306_709 * SEC;
        let list = vec![snap(1, t), snap(2, t + SEC / 2), snap(3, t + SEC)];
        let names = snapshot_names(&list, &TimeZone::UTC);
        assert_eq!(
            names,
            [
                "2026-12-03T14:05:09-01010101",
                "2026-12-03T14:05:09-02020202",
                "2026-12-03T14:05:10",
            ]
        );
    }

    #[test]
    fn ids_alike_in_their_short_form_fall_back_to_the_full_id() {
        let t = 1_796_306_709 * SEC;
        let (mut a, mut b) = (snap(1, t), snap(1, t));
        a.0 .0 .0[31] = 0xaa;
        b.0 .0 .0[31] = 0xbb;
        let names = snapshot_names(&[a.clone(), b.clone()], &TimeZone::UTC);
        assert_eq!(names[0], format!("2026-12-03T14:05:09-{}", a.0.to_hex()));
        assert_eq!(names[1], format!("2026-12-03T14:05:09-{}", b.0.to_hex()));
    }

    #[test]
    fn unsafe_entry_names_are_escaped() {
        assert_eq!(entry_name(b"web-1"), b"web-1");
        assert_eq!(entry_name(b"a/b"), b"a%2Fb");
        assert_eq!(entry_name(b"a\0b"), b"a%00b");
        assert_eq!(entry_name(b"."), b"%2E");
        assert_eq!(entry_name(b".."), b"%2E%2E");
        assert_eq!(entry_name(b""), b"%00");
    }
}
