//! Getting data back: restore at a point in time (`--at`, absolute and relative times, snapshot
//! filters), `diff` between snapshots, `find` across them, `dump` of a file or of a directory as
//! tar or zip, resuming an interrupted restore, and `restore --verify`.
//!
//! Times shown to people are local: every command whose output or input depends on the time
//! zone runs with an explicit `TZ` (POSIX strings, which need no time zone database), and
//! relative times are taken against a fixed `CAIRN_NOW`.

use crate::util::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// UTC.
const UTC: &str = "UTC0";
/// Three hours east of UTC all year (POSIX counts offsets westwards).
const PLUS3: &str = "XST-3";

/// `cairn ARGS` in the time zone `tz`, with "now" at `now` when it is given.
fn run_tz<I, S>(t: &Dir, tz: &str, now: Option<&str>, args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = t.command();
    cmd.env("TZ", tz).args(args);
    match now {
        Some(now) => cmd.env("CAIRN_NOW", now),
        None => cmd.env_remove("CAIRN_NOW"),
    };
    Run::of(cmd)
}

/// The id of the one snapshot `snapshots --json ARGS` lists.
fn only_snapshot(run: Run) -> String {
    let v = run.success().json();
    match v.as_array().map(Vec::as_slice) {
        Some([one]) => string(one, "id").unwrap(),
        _ => panic!("expected exactly one snapshot, got {v}"),
    }
}

fn mtime_ns(m: &fs::Metadata) -> i128 {
    i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec())
}

/// The regular files of a scanned tree.
fn files(tree: &Tree) -> impl Iterator<Item = (&PathBuf, &Entry)> {
    tree.iter().filter(|(_, e)| e.kind == Kind::File)
}

// ---------------------------------------------------------------------------------------------
// Point in time

/// Three snapshots of one kind at fixed dates, with a file modified, one added and one deleted
/// between each: `restore --at` any time restores the state of the newest snapshot at or before
/// it, `snapshots --at` names the same one, and restore says which it chose and when.
fn point_in_time(kind: &str) {
    let t = setup();
    t.init();
    let src = t.join("src");
    write(src.join("changed.txt"), "first version\n");
    write(src.join("kept.txt"), "never changes\n".repeat(50));
    write(
        src.join("deleted-early.txt"),
        "deleted before the second snapshot\n",
    );
    write(
        src.join("deleted-late.txt"),
        "deleted before the third snapshot\n",
    );
    write(src.join("sub/data.bin"), random_bytes(1, 200_000));
    let times = [
        "2026-03-01T10:00:00Z",
        "2026-03-02T10:00:00Z",
        "2026-03-03T10:00:00Z",
    ];
    let backup = |kind: &str, time: &str, recorded: &str| {
        let s = t.backup(args(&[&src, &"--kind", &kind, &"--time", &time]));
        assert_eq!(string(&s, "kind").as_deref(), Some(recorded), "{s}");
        s
    };

    // A differential snapshot is taken against a full one; the first of any kind is full.
    let first = backup(
        if kind == "differential" { "full" } else { kind },
        times[0],
        "full",
    );
    let state1 = scan(&src);

    write(src.join("changed.txt"), "second version, longer\n");
    write(
        src.join("added-2.txt"),
        "added before the second snapshot\n",
    );
    fs::remove_file(src.join("deleted-early.txt")).unwrap();
    let second = backup(kind, times[1], kind);
    let state2 = scan(&src);

    write(src.join("changed.txt"), "third version\n");
    write(
        src.join("sub/added-3.txt"),
        "added after the second snapshot\n",
    );
    fs::remove_file(src.join("deleted-late.txt")).unwrap();
    let third = backup(kind, times[2], kind);
    let state3 = scan(&src);
    if kind == "differential" {
        assert_eq!(string(&third, "parent"), Some(id(&first)), "{third}");
    }

    let (id1, id2, id3) = (id(&first), id(&second), id(&third));
    let cases = [
        (times[0], &state1, &id1, "2026-03-01 10:00:00"),
        // Between the second and the third snapshot: the second.
        ("2026-03-02T18:00:00Z", &state2, &id2, "2026-03-02 10:00:00"),
        // "At or before" includes the snapshot's own time, and only up to the next one.
        (times[1], &state2, &id2, "2026-03-02 10:00:00"),
        ("2026-03-03T09:59:59Z", &state2, &id2, "2026-03-02 10:00:00"),
        // A date alone means the end of that day.
        ("2026-03-03", &state3, &id3, "2026-03-03 10:00:00"),
        ("2026-03-02", &state2, &id2, "2026-03-02 10:00:00"),
    ];
    for (i, (at, state, want, shown)) in cases.into_iter().enumerate() {
        let picked = only_snapshot(run_tz(&t, UTC, None, ["snapshots", "--json", "--at", at]));
        assert_eq!(&picked, want, "snapshots --at {at} ({kind})");

        let target = t.join(format!("restore-{i}"));
        let run = run_tz(
            &t,
            UTC,
            None,
            args(&[&"restore", &"--at", &at, &"--target", &target]),
        )
        .success();
        let announced = format!("restoring snapshot {} of {shown} (", short(want));
        assert!(
            run.stderr().contains(&announced),
            "restore --at {at} ({kind}) does not say {announced:?}:\n{run:?}"
        );
        let got = scan(&restored(&target, &src));
        let diffs = diff_trees(state, &got, Compare::exact());
        assert!(
            diffs.is_empty(),
            "restore --at {at} ({kind}) is not the state of {want}:\n  {}",
            diffs.join("\n  ")
        );
    }

    // The same, spelt out for the time between the second and third snapshot.
    let between = restored(&t.join("restore-1"), &src);
    assert!(!between.join("deleted-early.txt").exists());
    assert!(!between.join("sub/added-3.txt").exists());
    assert!(between.join("deleted-late.txt").is_file());
    assert!(between.join("added-2.txt").is_file());
    assert_eq!(
        fs::read_to_string(between.join("changed.txt")).unwrap(),
        "second version, longer\n"
    );
    t.check();
}

#[test]
fn point_in_time_full() {
    point_in_time("full");
}

#[test]
fn point_in_time_incremental() {
    point_in_time("incremental");
}

#[test]
fn point_in_time_differential() {
    point_in_time("differential");
}

#[test]
fn restore_at_before_the_first_snapshot_says_when_the_earliest_is() {
    let t = setup();
    t.init();
    let src = t.join("src");
    write(src.join("a.txt"), "a\n");
    t.backup(args(&[&src, &"--time", &"2026-03-01T10:00:00Z"]));
    t.backup(args(&[&src, &"--time", &"2026-03-02T10:00:00Z"]));
    t.backup(args(&[
        &src,
        &"--host",
        &"late-host",
        &"--time",
        &"2026-03-05T10:00:00Z",
    ]));
    let target = t.join("restore");

    // (filter and time, the error line): the earliest snapshot *among those that match*.
    let cases: [(&[&str], String); 2] = [
        (
            &["--at", "2026-03-01T09:59:59Z"],
            "cairn: no snapshot at or before 2026-03-01 09:59:59: the earliest matching snapshot \
             is from 2026-03-01 10:00:00"
                .to_string(),
        ),
        (
            &["--at", "2026-03-03", "--host", "late-host"],
            "cairn: no snapshot at or before 2026-03-03 23:59:59: the earliest matching snapshot \
             is from 2026-03-05 10:00:00"
                .to_string(),
        ),
    ];
    for (extra, want) in &cases {
        for command in ["restore", "snapshots"] {
            let mut all = vec![OsString::from(command)];
            if command == "restore" {
                all.extend(args(&[&"--target", &target]));
            }
            all.extend(extra.iter().map(OsString::from));
            let run = run_tz(&t, UTC, None, &all).code(1);
            assert_eq!(&run.error_line(), want, "{run:?}");
            assert_eq!(run.stderr().lines().count(), 1, "{run:?}");
            assert!(run.stdout.is_empty(), "{run:?}");
            assert!(!target.exists(), "a failed restore --at created its target");
        }
    }

    // Nothing matches at all.
    let run = run_tz(
        &t,
        UTC,
        None,
        args(&[
            &"restore",
            &"--at",
            &"now",
            &"--tag",
            &"nope",
            &"--target",
            &target,
        ]),
    )
    .code(1);
    assert_eq!(run.error_line(), "cairn: no snapshot matches", "{run:?}");
    assert!(!target.exists());
}

/// Relative times against a fixed now, absolute times with and without a zone in two time zones,
/// and `--host`, `--path` and `--tag` with `--at`.
#[test]
fn at_relative_and_absolute_times_with_filters() {
    const NOW: &str = "2026-11-20T14:30:00Z";
    let t = setup();
    t.init();
    let src = t.join("src");
    let other = t.join("other");
    write(other.join("o.txt"), "another source\n");
    let mut ids: BTreeMap<&str, String> = BTreeMap::new();
    let mut take = |name: &'static str, path: &Path, time: &str, extra: &[&str]| {
        write(src.join("version.txt"), name);
        let mut all = args(&[&path, &"--time", &time]);
        all.extend(extra.iter().map(OsString::from));
        ids.insert(name, id(&t.backup(all)));
    };
    take(
        "A",
        &src,
        "2026-11-17T12:00:00Z",
        &["--host", "h1", "--tag", "weekly"],
    );
    take(
        "B",
        &src,
        "2026-11-18T12:00:00Z",
        &["--host", "h1", "--tag", "weekly"],
    );
    take("C", &src, "2026-11-19T17:00:00Z", &["--host", "h1"]);
    take("D", &src, "2026-11-20T10:00:00Z", &["--host", "h1"]);
    take("E", &src, "2026-11-20T12:00:00Z", &["--host", "h1"]);
    // Taken last but dated earlier: selection goes by snapshot time, not by the order taken.
    take("F", &src, "2026-11-19T18:00:00Z", &["--host", "h2"]);
    take("G", &other, "2026-11-19T17:30:00Z", &["--host", "h1"]);

    let src_s = src.to_str().unwrap();
    let sub_s = src.join("sub");
    let sub_s = sub_s.to_str().unwrap();
    let other_s = other.to_str().unwrap();
    let name_of = |id: &str| {
        ids.iter()
            .find(|(_, v)| v.as_str() == id)
            .map_or("?", |(k, _)| *k)
    };
    // (time zone, --at, filter, the snapshot chosen), with the instant each time means.
    let cases: Vec<(&str, &str, Vec<&str>, &str)> = vec![
        (UTC, "2 days ago", vec![], "B"),     // 2026-11-18 14:30 UTC
        (UTC, "3h ago", vec![], "D"),         // 11:30
        (UTC, "90 minutes ago", vec![], "E"), // 13:00
        (UTC, "now", vec![], "E"),
        // A whole day means its end: 2026-11-19 23:59:59.
        (UTC, "yesterday", vec![], "F"),
        // At or before: F is at 18:00 exactly.
        (UTC, "yesterday 18:00", vec![], "F"),
        (UTC, "yesterday 18:00", vec!["--host", "h1"], "G"),
        (
            UTC,
            "yesterday 18:00",
            vec!["--host", "h1", "--path", src_s],
            "C",
        ),
        (UTC, "yesterday 18:00", vec!["--path", other_s], "G"),
        (UTC, "2026-11-19T17:29:59Z", vec![], "C"),
        (UTC, "2026-11-19T18:30:00+01:00", vec![], "G"), // 17:30 UTC
        (UTC, "2026-11-19 17:15", vec![], "C"),          // local, here UTC
        (UTC, "2026-11-19", vec![], "F"),                // the day's end
        (UTC, "20261119", vec![], "F"),
        (UTC, "202611191715", vec![], "C"),
        (UTC, "now", vec!["--tag", "weekly"], "B"),
        // A path below a source selects the snapshots of that source.
        (UTC, "now", vec!["--path", sub_s], "E"),
        (UTC, "now", vec!["--path", sub_s, "--host", "h2"], "F"),
        // Several hosts: any of them.
        (
            UTC,
            "now",
            vec!["--host", "h2", "--host", "h1", "--path", other_s],
            "G",
        ),
        // Three hours east, "now" is 17:30 local.
        (PLUS3, "2026-11-19 17:15", vec![], "B"), // 14:15 UTC
        (PLUS3, "2026-11-19T17:15:00Z", vec![], "C"),
        (PLUS3, "yesterday 18:00", vec![], "B"), // 2026-11-19 15:00 UTC
        (PLUS3, "today 13:30", vec![], "D"),     // 10:30 UTC
        (PLUS3, "3h ago", vec![], "D"),
        (PLUS3, "2026-11-20", vec![], "E"), // until 2026-11-20 20:59:59 UTC
        (
            PLUS3,
            "2026-11-19",
            vec!["--host", "h1", "--path", src_s],
            "C",
        ),
    ];
    for (tz, at, filter, want) in &cases {
        let mut all = vec!["snapshots", "--json", "--at", *at];
        all.extend(filter);
        let got = only_snapshot(run_tz(&t, tz, Some(NOW), &all));
        assert_eq!(
            name_of(&got),
            *want,
            "TZ={tz} snapshots --at {at:?} {filter:?}"
        );
    }

    // Restore chooses the same and says so, in local time.
    let restores: [(&str, &str, Vec<&str>, &str, &str); 3] = [
        (UTC, "2 days ago", vec![], "B", "2026-11-18 12:00:00 (h1, "),
        (
            UTC,
            "yesterday 18:00",
            vec!["--host", "h1", "--path", src_s],
            "C",
            "2026-11-19 17:00:00 (h1, ",
        ),
        (
            PLUS3,
            "2026-11-20",
            vec!["--host", "h2"],
            "F",
            "2026-11-19 21:00:00 (h2, ",
        ),
    ];
    for (i, (tz, at, filter, want, shown)) in restores.iter().enumerate() {
        let target = t.join(format!("restore-{i}"));
        let mut all = args(&[&"restore", &"--at", at, &"--target", &target]);
        all.extend(filter.iter().map(OsString::from));
        let run = run_tz(&t, tz, Some(NOW), &all).success();
        let announced = format!("restoring snapshot {} of {shown}", short(&ids[want]));
        assert!(run.stderr().contains(&announced), "{announced:?}:\n{run:?}");
        let version = fs::read_to_string(restored(&target, &src).join("version.txt")).unwrap();
        assert_eq!(&version, want, "TZ={tz} restore --at {at:?} {filter:?}");
    }

    // A time in none of the forms is refused with a one-line error that lists them.
    let target = t.join("never");
    let run = run_tz(
        &t,
        UTC,
        Some(NOW),
        args(&[&"restore", &"--at", &"tomorrow", &"--target", &target]),
    )
    .failure();
    let line = run.error_line();
    assert!(
        line.contains("invalid time \"tomorrow\"") && line.contains("2 days ago"),
        "{run:?}"
    );
    assert!(!target.exists());
    t.check();
}

// ---------------------------------------------------------------------------------------------
// diff and find

#[test]
fn diff_reports_every_kind_of_change() {
    let t = setup();
    t.init();
    let src = t.join("src");
    write(src.join("keep.txt"), "unchanged\n");
    write(src.join("mod.txt"), [b'm'; 100]);
    write(src.join("gone.txt"), [b'g'; 50]);
    write(src.join("gone-dir/x.txt"), [b'x'; 20]);
    write(src.join("meta.sh"), "#!/bin/sh\n");
    chmod(src.join("meta.sh"), 0o644);
    write(src.join("touch.txt"), "same bytes, other mtime\n");
    write(src.join("perm-dir/inside.txt"), "inside\n");
    chmod(src.join("perm-dir"), 0o755);
    symlink("a", src.join("link")).unwrap();
    let a = id(&t.backup([&src]));

    write(src.join("mod.txt"), [b'M'; 300]);
    fs::remove_file(src.join("gone.txt")).unwrap();
    fs::remove_dir_all(src.join("gone-dir")).unwrap();
    write(src.join("new.txt"), [b'n'; 70]);
    write(src.join("new-dir/y.txt"), [b'y'; 30]);
    chmod(src.join("meta.sh"), 0o755);
    chmod(src.join("perm-dir"), 0o700);
    let touched = entry(&src.join("touch.txt")).mtime_ns as i64;
    set_mtime(src.join("touch.txt"), touched - 3_600_000_000_000);
    fs::remove_file(src.join("link")).unwrap();
    symlink("bb", src.join("link")).unwrap();
    let b = id(&t.backup([&src]));

    let p = |rel: &str| src.join(rel).display().to_string();
    let run = t.ok(["diff", a.as_str(), b.as_str()]);
    let out = run.stdout();
    let lines: Vec<&str> = out.lines().collect();
    let want = [
        format!("-    {}", p("gone-dir")),
        format!("-    {}", p("gone-dir/x.txt")),
        format!("-    {}", p("gone.txt")),
        format!("M    {}", p("link")),
        format!("U    {}", p("meta.sh")),
        format!("M    {}  (+200 B)", p("mod.txt")),
        format!("+    {}", p("new-dir")),
        format!("+    {}", p("new-dir/y.txt")),
        format!("+    {}", p("new.txt")),
        format!("U    {}", p("perm-dir")),
        format!("U    {}", p("touch.txt")),
        "3 added, 3 removed, 2 modified, 3 with new metadata; +300 B -70 B".to_string(),
    ];
    assert_eq!(lines.len(), want.len(), "{run:?}");
    for (got, want) in lines.iter().zip(&want) {
        // A symlink's new target is a content change; its size note is not pinned here.
        if want.ends_with("/link") {
            assert!(got.starts_with(want.as_str()), "{got:?} is not {want:?}");
        } else {
            assert_eq!(got, want, "{run:?}");
        }
    }

    // The other way round, additions are removals and sizes shrink.
    let back = t.ok(["diff", b.as_str(), a.as_str()]).stdout();
    assert!(
        back.contains(&format!("M    {}  (-200 B)\n", p("mod.txt"))),
        "{back}"
    );
    assert!(
        back.contains(&format!("+    {}\n", p("gone.txt"))),
        "{back}"
    );
    assert!(back.contains(&format!("-    {}\n", p("new.txt"))), "{back}");
    assert!(
        back.ends_with("3 added, 3 removed, 2 modified, 3 with new metadata; +70 B -300 B\n"),
        "{back}"
    );

    // JSON: one object per change, nothing else.
    let run = t.ok(["diff", "--json", a.as_str(), b.as_str()]);
    let records: BTreeMap<String, Value> = run
        .stdout()
        .lines()
        .map(|l| {
            let v: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?} is not JSON: {e}"));
            (string(&v, "path").unwrap(), v)
        })
        .collect();
    assert_eq!(records.len(), 11, "{run:?}");
    let check = |rel: &str, change: &str, kind: &str, before: Value, after: Value, delta: i64| {
        let r = &records[&p(rel)];
        assert_eq!(r["change"], change, "{rel}: {r}");
        assert_eq!(r["type"], kind, "{rel}: {r}");
        assert_eq!(r["size_before"], before, "{rel}: {r}");
        assert_eq!(r["size_after"], after, "{rel}: {r}");
        assert_eq!(r["size_delta"], delta, "{rel}: {r}");
    };
    let n = |v: u64| Value::from(v);
    check("mod.txt", "modified", "file", n(100), n(300), 200);
    check("gone.txt", "removed", "file", n(50), Value::Null, -50);
    check("gone-dir/x.txt", "removed", "file", n(20), Value::Null, -20);
    check("gone-dir", "removed", "dir", n(0), Value::Null, 0);
    check("new.txt", "added", "file", Value::Null, n(70), 70);
    check("new-dir/y.txt", "added", "file", Value::Null, n(30), 30);
    check("new-dir", "added", "dir", Value::Null, n(0), 0);
    let meta_size = n("#!/bin/sh\n".len() as u64);
    check(
        "meta.sh",
        "metadata",
        "file",
        meta_size.clone(),
        meta_size,
        0,
    );
    let touch_size = n("same bytes, other mtime\n".len() as u64);
    check(
        "touch.txt",
        "metadata",
        "file",
        touch_size.clone(),
        touch_size,
        0,
    );
    check("perm-dir", "metadata", "dir", n(0), n(0), 0);
    let link = &records[&p("link")];
    assert_eq!(link["change"], "modified", "{link}");
    assert_eq!(link["type"], "symlink", "{link}");
    // For a symlink the size is the target's length.
    assert_eq!(link["size_before"], 1, "{link}");
    assert_eq!(link["size_after"], 2, "{link}");
    let files_delta: i64 = records
        .values()
        .filter(|r| r["type"] == "file")
        .map(|r| r["size_delta"].as_i64().unwrap())
        .sum();
    assert_eq!(files_delta, 300 - 70);

    // No change: only the summary, and no JSON at all.
    let same = t.ok(["diff", b.as_str(), b.as_str()]);
    assert_eq!(
        same.stdout(),
        "0 added, 0 removed, 0 modified, 0 with new metadata; +0 B -0 B\n"
    );
    assert!(t
        .ok(["diff", "--json", a.as_str(), a.as_str()])
        .stdout
        .is_empty());
    t.check();
}

#[test]
fn find_reports_snapshots_paths_sizes_and_mtimes() {
    let t = setup();
    t.init();
    let src = t.join("src");
    // Whole seconds, so that JSON times are plain RFC 3339.
    let (m1, m2, m3) = (1_775_001_600i64, 1_775_118_600i64, 1_775_217_600i64);
    let (m1_s, m2_s, m3_s) = (
        "2026-04-01T00:00:00Z",
        "2026-04-02T08:30:00Z",
        "2026-04-03T12:00:00Z",
    );
    let sec = 1_000_000_000i64;
    write(src.join("a.conf"), [b'a'; 10]);
    set_mtime(src.join("a.conf"), m1 * sec);
    write(src.join("sub/b.conf"), [b'b'; 20]);
    set_mtime(src.join("sub/b.conf"), m2 * sec);
    write(src.join("other.txt"), "not a match\n");
    let s1 = id(&t.backup(args(&[&src, &"--time", &"2026-05-01T00:00:00Z"])));
    write(src.join("a.conf"), [b'A'; 15]);
    set_mtime(src.join("a.conf"), m3 * sec);
    let s2 = id(&t.backup(args(&[&src, &"--time", &"2026-05-02T00:00:00Z"])));
    fs::remove_file(src.join("a.conf")).unwrap();
    let s3 = id(&t.backup(args(&[&src, &"--time", &"2026-05-03T00:00:00Z"])));

    let a_conf = src.join("a.conf").display().to_string();
    let b_conf = src.join("sub/b.conf").display().to_string();
    type Match = (String, String, u64, String);
    let find = |extra: &[&str]| -> BTreeSet<Match> {
        let mut all = vec!["find", "--json"];
        all.extend_from_slice(extra);
        let run = t.ok(all);
        run.stdout()
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                assert_eq!(v["type"], "file", "{v}");
                (
                    string(&v, "snapshot").unwrap(),
                    string(&v, "path").unwrap(),
                    num(&v, "size"),
                    string(&v, "mtime").unwrap(),
                )
            })
            .collect()
    };
    let m = |snap: &str, path: &str, size: u64, mtime: &str| -> Match {
        (snap.into(), path.into(), size, mtime.into())
    };
    let all = [
        m(&s1, &a_conf, 10, m1_s),
        m(&s1, &b_conf, 20, m2_s),
        m(&s2, &a_conf, 15, m3_s),
        m(&s2, &b_conf, 20, m2_s),
        m(&s3, &b_conf, 20, m2_s),
    ];
    let pick =
        |which: &[usize]| -> BTreeSet<Match> { which.iter().map(|&i| all[i].clone()).collect() };
    assert_eq!(find(&["*.conf"]), pick(&[0, 1, 2, 3, 4]));
    // Both bounds are inclusive.
    assert_eq!(
        find(&["*.conf", "--oldest", "2026-05-02T00:00:00Z"]),
        pick(&[2, 3, 4])
    );
    assert_eq!(
        find(&["*.conf", "--newest", "2026-05-02T00:00:00Z"]),
        pick(&[0, 1, 2, 3])
    );
    assert_eq!(
        find(&[
            "*.conf",
            "--oldest",
            "2026-05-02T00:00:00Z",
            "--newest",
            "2026-05-02T00:00:00Z"
        ]),
        pick(&[2, 3])
    );
    assert_eq!(
        find(&["a.conf", "--oldest", "2026-05-01T12:00:00Z"]),
        pick(&[2])
    );
    // A pattern with `/` matches whole paths.
    assert_eq!(find(&["**/sub/*.conf"]), pick(&[1, 3, 4]));
    assert!(find(&["*.conf", "--newest", "2026-04-30T00:00:00Z"]).is_empty());

    // Text: snapshot, its time, size, mtime (local time), path; then a count.
    let run = run_tz(
        &t,
        UTC,
        None,
        ["find", "a.conf", "--newest", "2026-05-02T00:00:00Z"],
    )
    .success();
    let want = format!(
        "{}  2026-05-01 00:00:00  {:>12}  2026-04-01 00:00:00  {a_conf}\n\
         {}  2026-05-02 00:00:00  {:>12}  2026-04-03 12:00:00  {a_conf}\n\
         2 matches in 2 snapshots\n",
        short(&s1),
        10,
        short(&s2),
        15
    );
    assert_eq!(run.stdout(), want, "{run:?}");
}

// ---------------------------------------------------------------------------------------------
// dump

/// A tree with every kind of entry an archive holds: modes, whole-second mtimes (even, for zip),
/// a file of several chunks, an empty file, a symlink, two names for one file, and a name too
/// long for a plain tar header.
fn dump_fixture() -> (Dir, PathBuf, Tree) {
    let t = setup();
    // Small chunks, so the large file is stored as several blobs.
    t.init_with(&["--chunk-size", "64"]);
    let src = t.join("src");
    write(src.join("file.txt"), "hello, dump\n");
    chmod(src.join("file.txt"), 0o640);
    write(src.join("exec.sh"), "#!/bin/sh\necho hi\n");
    chmod(src.join("exec.sh"), 0o755);
    write(src.join("big.bin"), random_bytes(7, 300_000));
    write(src.join("empty"), "");
    write(src.join("sub/hard1"), "two names, one inode\n");
    fs::hard_link(src.join("sub/hard1"), src.join("sub/hard2")).unwrap();
    symlink("../file.txt", src.join("sub/sym")).unwrap();
    let long = src
        .join("d".repeat(70))
        .join(format!("{}.txt", "f".repeat(70)));
    write(&long, "a long name\n");
    chmod(src.join("sub"), 0o750);
    // 2026-02-03T04:05:06Z and on, two seconds apart.
    let base = 1_770_091_506i64;
    for (i, p) in scan(&src).keys().rev().enumerate() {
        set_mtime(src.join(p), (base + 2 * i as i64) * 1_000_000_000);
    }
    let tree = scan(&src);
    t.backup([&src]);
    (t, src, tree)
}

#[test]
fn dump_a_file_writes_its_content() {
    let (t, src, _) = dump_fixture();
    for rel in ["file.txt", "big.bin", "empty", "sub/hard2"] {
        let path = src.join(rel);
        let run = t.ok([OsStr::new("dump"), OsStr::new("latest"), path.as_os_str()]);
        assert!(
            run.stdout == fs::read(&path).unwrap(),
            "dump of {rel} differs from the file ({} bytes)",
            run.stdout.len()
        );
    }
    let out = t.join("out.bin");
    let run = t.ok(args(&[
        &"dump",
        &"latest",
        &src.join("big.bin"),
        &"--output",
        &out,
    ]));
    assert!(run.stdout.is_empty(), "{run:?}");
    assert!(fs::read(&out).unwrap() == fs::read(src.join("big.bin")).unwrap());

    // What is not a file or a directory, or not there, is a one-line error; a path that names
    // something dump cannot stream is an invalid argument (exit 2, as every InvalidInput).
    let run = t
        .run(args(&[&"dump", &"latest", &src.join("sub/sym")]))
        .code(2);
    assert!(
        run.error_line()
            .contains("is neither a file nor a directory"),
        "{run:?}"
    );
    let run = t
        .run(args(&[&"dump", &"latest", &src.join("missing")]))
        .code(1);
    assert!(
        run.error_line().contains("is not in the snapshot"),
        "{run:?}"
    );
}

/// Regression: `dump --output F` wrote `F.cairn-partial`, a name anyone could predict, opened
/// following links and at 0644: a local user could plant a link there to have the dump written
/// over another file, or read the dumped secret while it was written.
#[test]
fn dump_output_is_private_and_follows_no_planted_link() {
    use std::os::unix::fs::MetadataExt;
    let (t, src, _) = dump_fixture();
    let out = t.join("secret.out");
    let victim = t.join("victim");
    write(&victim, "must stay as it is\n");
    symlink(&victim, t.join("secret.out.cairn-partial")).unwrap();
    t.ok(args(&[
        &"dump",
        &"latest",
        &src.join("file.txt"),
        &"--output",
        &out,
    ]));
    assert_eq!(fs::read(&victim).unwrap(), b"must stay as it is\n");
    assert_eq!(
        fs::read(&out).unwrap(),
        fs::read(src.join("file.txt")).unwrap()
    );
    assert_eq!(fs::metadata(&out).unwrap().mode() & 0o777, 0o600);
    let left: Vec<_> = fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with(".cairn-dump-"))
        .collect();
    assert!(left.is_empty(), "dump left {left:?}");
}

#[test]
fn dump_a_directory_as_tar() {
    let (t, src, tree) = dump_fixture();
    let run = t.ok([OsStr::new("dump"), OsStr::new("latest"), src.as_os_str()]);
    let base = src.strip_prefix("/").unwrap().to_path_buf();
    let mut seen = BTreeSet::new();
    // The archive name each hard-link group was stored under first.
    let mut stored_as: BTreeMap<u64, PathBuf> = BTreeMap::new();
    let mut archive = tar::Archive::new(&run.stdout[..]);
    for item in archive.entries().unwrap() {
        let mut item = item.unwrap();
        let name = item.path().unwrap().into_owned();
        let name = PathBuf::from(name.to_str().unwrap().trim_end_matches('/'));
        let rel = name
            .strip_prefix(&base)
            .unwrap_or_else(|_| panic!("{} is outside {}", name.display(), base.display()))
            .to_path_buf();
        let e = tree
            .get(&rel)
            .unwrap_or_else(|| panic!("{} is not in the source", name.display()));
        assert!(seen.insert(rel.clone()), "{} twice", name.display());
        let h = item.header().clone();
        assert_eq!(h.mode().unwrap(), e.mode, "mode of {}", rel.display());
        assert_eq!(
            i128::from(h.mtime().unwrap()) * 1_000_000_000,
            e.mtime_ns,
            "mtime of {}",
            rel.display()
        );
        assert_eq!(
            h.uid().unwrap(),
            u64::from(e.uid),
            "uid of {}",
            rel.display()
        );
        assert_eq!(
            h.gid().unwrap(),
            u64::from(e.gid),
            "gid of {}",
            rel.display()
        );
        let kind = h.entry_type();
        match e.kind {
            Kind::Dir => assert!(kind.is_dir(), "{} is {kind:?}", rel.display()),
            Kind::Symlink => {
                assert!(kind.is_symlink(), "{} is {kind:?}", rel.display());
                let target = item.link_name().unwrap().unwrap().into_owned();
                assert_eq!(Some(target.into_os_string()), e.target);
            }
            Kind::File if kind.is_hard_link() => {
                let first = item.link_name().unwrap().unwrap().into_owned();
                assert_eq!(
                    stored_as.get(&e.ino),
                    Some(&first),
                    "{} links to {}",
                    rel.display(),
                    first.display()
                );
            }
            Kind::File => {
                assert!(kind.is_file(), "{} is {kind:?}", rel.display());
                let mut content = Vec::new();
                item.read_to_end(&mut content).unwrap();
                assert!(
                    content == fs::read(src.join(&rel)).unwrap(),
                    "content of {}",
                    rel.display()
                );
                if e.nlink > 1 {
                    stored_as.insert(e.ino, name.clone());
                }
            }
            other => panic!("the fixture has no {other:?}"),
        }
    }
    let all: BTreeSet<PathBuf> = tree.keys().cloned().collect();
    assert_eq!(seen, all, "the archive does not hold the whole directory");
    assert_eq!(stored_as.len(), 1, "the hard-linked file is stored once");
}

#[test]
fn dump_a_directory_as_zip_to_a_file() {
    let (t, src, tree) = dump_fixture();
    let out = t.join("archive.zip");
    // Zip times are local: three hours east, 04:05:06 UTC is 07:05:06.
    let run = run_tz(
        &t,
        PLUS3,
        None,
        args(&[
            &"dump",
            &"latest",
            &src,
            &"--archive",
            &"zip",
            &"--output",
            &out,
        ]),
    )
    .success();
    assert!(run.stdout.is_empty(), "{run:?}");
    assert!(
        !t.join("archive.zip.cairn-partial").exists(),
        "dump left its partial file"
    );
    let zone = jiff::tz::TimeZone::fixed(jiff::tz::offset(3));
    let base = src.strip_prefix("/").unwrap().to_path_buf();
    let mut zip = zip::ZipArchive::new(fs::File::open(&out).unwrap()).unwrap();
    let mut seen = BTreeSet::new();
    for i in 0..zip.len() {
        let mut item = zip.by_index(i).unwrap();
        let name = item.name().to_string();
        let rel = Path::new(name.trim_end_matches('/'))
            .strip_prefix(&base)
            .unwrap_or_else(|_| panic!("{name} is outside {}", base.display()))
            .to_path_buf();
        let e = tree
            .get(&rel)
            .unwrap_or_else(|| panic!("{name} is not in the source"));
        assert!(seen.insert(rel.clone()), "{name} twice");
        assert_eq!(
            item.unix_mode().map(|m| m & 0o7777),
            Some(e.mode),
            "mode of {name}"
        );
        let secs = (e.mtime_ns / 1_000_000_000) as i64;
        let local = jiff::Timestamp::from_second(secs)
            .unwrap()
            .to_zoned(zone.clone())
            .datetime();
        let got = item.last_modified().expect("no mtime");
        assert_eq!(
            (
                got.year(),
                got.month(),
                got.day(),
                got.hour(),
                got.minute(),
                got.second()
            ),
            (
                local.year() as u16,
                local.month() as u8,
                local.day() as u8,
                local.hour() as u8,
                local.minute() as u8,
                local.second() as u8
            ),
            "mtime of {name}"
        );
        let mut content = Vec::new();
        item.read_to_end(&mut content).unwrap();
        match e.kind {
            Kind::Dir => assert!(item.is_dir(), "{name}"),
            Kind::Symlink => {
                assert!(item.is_symlink(), "{name}");
                assert_eq!(
                    Some(OsString::from(String::from_utf8(content).unwrap())),
                    e.target
                );
            }
            // Zip has no hard links: each name holds the content.
            Kind::File => {
                assert!(item.is_file(), "{name}");
                assert!(
                    content == fs::read(src.join(&rel)).unwrap(),
                    "content of {name}"
                );
            }
            other => panic!("the fixture has no {other:?}"),
        }
    }
    let all: BTreeSet<PathBuf> = tree.keys().cloned().collect();
    assert_eq!(seen, all, "the archive does not hold the whole directory");
}

// ---------------------------------------------------------------------------------------------
// Resume and verify

/// A snapshot of `n` files of 200 kB of random data in a repository of 1 MiB packs, so that a
/// restore completes its files a few at a time. With `links`, each file has a second name,
/// `NAME.link`.
fn many_files(n: usize, links: bool) -> (Dir, PathBuf, Tree) {
    let t = setup();
    t.init_with(&["--pack-size", "1"]);
    let src = t.join("src");
    for i in 0..n {
        let path = src.join(format!("d{}/f{i:03}", i % 4));
        write(&path, random_bytes(i as u64, 200_000));
        if links {
            fs::hard_link(&path, path.with_extension("link")).unwrap();
        }
    }
    let tree = scan(&src);
    t.backup([&src]);
    (t, src, tree)
}

/// Whether the restored file at `path` has the size and mtime of `e`: the restorer gives a
/// file its metadata only once all its content is written.
fn looks_complete(path: &Path, e: &Entry) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.len() == e.size && mtime_ns(&m) == e.mtime_ns)
}

/// The process state letter from /proc (`T` stopped, `Z` exited), if it is still there.
fn process_state(child: &Child) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{}/stat", child.id())).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

fn signal(child: &Child, sig: rustix::process::Signal) {
    rustix::process::kill_process(rustix::process::Pid::from_child(child), sig).unwrap();
}

/// A restore stopped half-way; killed if the test ends before it is continued or killed.
struct Stopped(Option<Child>);

impl Stopped {
    /// Lets it carry on, and waits for it to end.
    fn resume(mut self) -> std::process::Output {
        let child = self.0.take().unwrap();
        signal(&child, rustix::process::Signal::CONT);
        child.wait_with_output().unwrap()
    }

    /// Interrupts it as Ctrl-C does (SIGINT), and waits for it to end.
    fn interrupt(mut self) -> std::process::Output {
        let child = self.0.take().unwrap();
        signal(&child, rustix::process::Signal::INT);
        signal(&child, rustix::process::Signal::CONT);
        child.wait_with_output().unwrap()
    }

    /// Kills it where it stands.
    fn kill(mut self) {
        let mut child = self.0.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `cairn restore latest --target TARGET EXTRA` and stops it (SIGSTOP) once it has
/// completed some files but not all: returns the stopped process, or `None` when the restore
/// got too far before it could be stopped.
fn stopped_restore(
    t: &Dir,
    src: &Path,
    tree: &Tree,
    target: &Path,
    extra: &[&str],
) -> Option<Stopped> {
    let mut cmd = t.command();
    cmd.args(args(&[&"restore", &"latest", &"--target", &target]))
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start cairn restore");
    let root = restored(target, src);
    let n_complete = || {
        files(tree)
            .filter(|(p, e)| looks_complete(&root.join(p), e))
            .count()
    };
    let n_files = files(tree).count();
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return None;
        }
        if n_complete() > 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "restore made no progress"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
    signal(&child, rustix::process::Signal::STOP);
    loop {
        match process_state(&child) {
            Some('T' | 't') => break,
            Some('Z' | 'X') | None => return finish(child),
            _ => std::thread::sleep(Duration::from_micros(100)),
        }
    }
    // Stopped: nothing changes in the target until it continues.
    if n_complete() == n_files {
        signal(&child, rustix::process::Signal::CONT);
        return finish(child);
    }
    Some(Stopped(Some(child)))
}

/// Waits for a restore that got too far to be of use.
fn finish(child: Child) -> Option<Stopped> {
    child.wait_with_output().unwrap();
    None
}

/// `stopped_restore`, tried on fresh targets until one is caught half-way.
fn half_done_restore(
    t: &Dir,
    src: &Path,
    tree: &Tree,
    name: &str,
    extra: &[&str],
) -> (PathBuf, Stopped) {
    for attempt in 0..5 {
        let target = t.join(format!("{name}-{attempt}"));
        if let Some(child) = stopped_restore(t, src, tree, &target, extra) {
            return (target, child);
        }
        eprintln!("note: restore {attempt} finished before it could be stopped; trying again");
    }
    panic!("five restores finished before they could be stopped half-way");
}

#[test]
fn resume_after_a_killed_restore() {
    let (t, src, tree) = many_files(200, false);
    let (target, stopped) = half_done_restore(&t, &src, &tree, "killed", &[]);
    stopped.kill();

    // What the killed restore left: some files complete, the others partly written or missing.
    // A file with its mtime restored has all its content: resuming relies on that.
    let root = restored(&target, &src);
    let mut complete: BTreeMap<PathBuf, u64> = BTreeMap::new();
    let mut incomplete = 0;
    for (rel, e) in files(&tree) {
        let path = root.join(rel);
        if looks_complete(&path, e) {
            assert_eq!(
                Some(digest_file(&path)),
                e.content,
                "{} has its metadata but not all its content",
                rel.display()
            );
            complete.insert(rel.clone(), fs::metadata(&path).unwrap().ino());
        } else {
            incomplete += 1;
        }
    }
    assert!(!complete.is_empty() && incomplete > 0);

    let run = t.restore("latest", &target);
    let want = format!(
        "restored {} files ({} already complete, kept)",
        files(&tree).count(),
        complete.len()
    );
    assert!(run.stdout().contains(&want), "{want:?}:\n{run:?}");
    assert_same_tree(&tree, &scan(&root), Compare::exact());
    for (rel, ino) in &complete {
        assert_eq!(
            fs::metadata(root.join(rel)).unwrap().ino(),
            *ino,
            "{} was complete but written again",
            rel.display()
        );
    }
}

/// Guards issue 16's "a restore interrupted with Ctrl-C is not resumed: files already complete
/// got no mtime yet, so the rerun rewrites all of them" (the restorer already gave each file
/// its metadata once complete; this pins it for SIGINT, as `resume_after_a_killed_restore` does
/// for SIGKILL). The rerun keeps the complete files (same inode) and rewrites only the others.
#[test]
fn resume_after_ctrl_c_keeps_the_complete_files() {
    let (t, src, tree) = many_files(120, false);
    let (target, stopped) = half_done_restore(&t, &src, &tree, "interrupted", &[]);
    let out = stopped.interrupt();
    assert!(!out.status.success(), "{out:?}");
    let root = restored(&target, &src);
    let complete: BTreeMap<PathBuf, u64> = files(&tree)
        .filter(|(rel, e)| looks_complete(&root.join(rel), e))
        .map(|(rel, _)| (rel.clone(), fs::metadata(root.join(rel)).unwrap().ino()))
        .collect();
    assert!(!complete.is_empty() && complete.len() < files(&tree).count());

    let run = t.restore("latest", &target);
    let want = format!("({} already complete, kept)", complete.len());
    assert!(run.stdout().contains(&want), "{want:?}:\n{run:?}");
    assert_same_tree(&tree, &scan(&root), Compare::exact());
    for (rel, ino) in &complete {
        assert_eq!(
            fs::metadata(root.join(rel)).unwrap().ino(),
            *ino,
            "{} was complete but written again",
            rel.display()
        );
    }
}

#[test]
fn resume_rewrites_exactly_the_damaged_files() {
    let t = setup();
    t.init();
    let src = t.join("src");
    for i in 0..8 {
        write(src.join(format!("f{i}")), random_bytes(100 + i, 30_000));
    }
    write(src.join("sub/g.txt"), "a small one\n");
    let tree = scan(&src);
    t.backup([&src]);
    let target = t.join("restore");
    t.restore("latest", &target);
    let root = restored(&target, &src);

    // Truncated, deleted, and created at full length but never filled.
    fs::OpenOptions::new()
        .write(true)
        .open(root.join("f1"))
        .unwrap()
        .set_len(1000)
        .unwrap();
    fs::remove_file(root.join("f2")).unwrap();
    let f3 = fs::OpenOptions::new()
        .write(true)
        .open(root.join("f3"))
        .unwrap();
    f3.set_len(0).unwrap();
    f3.set_len(30_000).unwrap();
    drop(f3);
    // Regression: a resume that trusted size and mtime alone kept a file with wrong bytes. Here
    // the bytes change but size and mtime are put back.
    let f4 = root.join("f4");
    let old = entry(&f4);
    fs::OpenOptions::new()
        .write(true)
        .open(&f4)
        .unwrap()
        .write_all_at(b"not what was restored", 100)
        .unwrap();
    set_mtime(&f4, old.mtime_ns as i64);
    // Complete content, wrong mode: kept, and the mode is put right.
    chmod(root.join("f5"), 0o600);
    // Files the snapshot does not have are left alone.
    write(root.join("not-in-snapshot.txt"), "mine\n");
    write(target.join("unrelated.txt"), "mine too\n");

    let kept = ["f0", "f5", "f6", "f7", "sub/g.txt"];
    let inodes: BTreeMap<&str, u64> = kept
        .iter()
        .map(|p| (*p, fs::metadata(root.join(p)).unwrap().ino()))
        .collect();
    let run = t.restore("latest", &target);
    assert!(
        run.stdout()
            .contains("restored 9 files (5 already complete, kept)"),
        "{run:?}"
    );
    for (p, ino) in &inodes {
        assert_eq!(
            fs::metadata(root.join(p)).unwrap().ino(),
            *ino,
            "{p} was written again"
        );
    }
    assert_eq!(
        fs::read_to_string(root.join("not-in-snapshot.txt")).unwrap(),
        "mine\n"
    );
    assert_eq!(
        fs::read_to_string(target.join("unrelated.txt")).unwrap(),
        "mine too\n"
    );
    let restored_tree = || {
        let mut got = scan(&root);
        got.remove(Path::new("not-in-snapshot.txt"));
        got
    };
    assert_same_tree(&tree, &restored_tree(), Compare::exact());

    // Once complete, everything is kept.
    let run = t.restore("latest", &target);
    assert!(
        run.stdout()
            .contains("restored 9 files (9 already complete, kept)"),
        "{run:?}"
    );
    assert_same_tree(&tree, &restored_tree(), Compare::exact());
}

/// `--verify` reads every file back after a clean restore and after a resumed one. A file that
/// looks complete (same size and mtime) but is not is never left for verify to find: the resume
/// itself compares content with the snapshot and writes it again.
#[test]
fn verify_passes_on_clean_and_resumed_restores() {
    let t = setup();
    t.init();
    let src = t.join("src");
    for i in 0..4 {
        write(src.join(format!("f{i}")), random_bytes(200 + i, 50_000));
    }
    let tree = scan(&src);
    t.backup([&src]);
    let target = t.join("restore");
    let verify = || {
        t.ok(args(&[
            &"restore",
            &"latest",
            &"--target",
            &target,
            &"--verify",
        ]))
    };
    let run = verify();
    assert!(
        run.stdout().contains("; 4 files verified; 0 errors"),
        "{run:?}"
    );
    let root = restored(&target, &src);
    assert_same_tree(&tree, &scan(&root), Compare::exact());

    let f2 = root.join("f2");
    let old = entry(&f2);
    fs::OpenOptions::new()
        .write(true)
        .open(&f2)
        .unwrap()
        .write_all_at(&[0xff; 4096], 0)
        .unwrap();
    set_mtime(&f2, old.mtime_ns as i64);
    let run = verify();
    assert!(
        run.stdout()
            .contains("restored 4 files (3 already complete, kept)"),
        "{run:?}"
    );
    assert!(
        run.stdout().contains("; 4 files verified; 0 errors"),
        "{run:?}"
    );
    assert_same_tree(&tree, &scan(&root), Compare::exact());
}

/// Regression: a file that `--verify` found with wrong bytes was reported but left in place
/// (with its other names), against restore's invariant that it never leaves a file with wrong
/// bytes. A file changed after the restore wrote it and before it was read back: the restore is
/// stopped half-way, a file it completed is overwritten (same size), and when it continues
/// `--verify` names that file, removes it under both names, and the restore fails.
#[test]
fn verify_catches_a_file_changed_after_it_was_written() {
    let (t, src, tree) = many_files(200, true);
    let (target, stopped) = half_done_restore(&t, &src, &tree, "verify", &["--verify"]);
    let root = restored(&target, &src);
    // A first name (the restorer writes it, then links the second name to it).
    let (rel, e) = files(&tree)
        .filter(|(p, _)| p.extension().is_none())
        .find(|(p, e)| looks_complete(&root.join(p), e))
        .expect("the restore was stopped with no first name complete");
    let changed = root.join(rel);
    let other_name = changed.with_extension("link");
    fs::OpenOptions::new()
        .write(true)
        .open(&changed)
        .unwrap()
        .write_all_at(&[0x5a; 4096], 0)
        .unwrap();
    assert_eq!(fs::metadata(&changed).unwrap().len(), e.size);
    let out = stopped.resume();
    let run = Run {
        args: vec!["cairn restore --verify (stopped and continued)".into()],
        code: out.status.code(),
        stdout: out.stdout,
        stderr: out.stderr,
    }
    .code(1);
    let named = format!("error: {}: verify: content differs", changed.display());
    assert!(run.stderr().contains(&named), "{named:?}:\n{run:?}");
    let named = format!(
        "error: {}: verify: its hard-link target",
        other_name.display()
    );
    assert!(run.stderr().contains(&named), "{named:?}:\n{run:?}");
    assert_eq!(
        run.error_line(),
        "cairn: 2 entries could not be restored or differ from the snapshot"
    );
    // Every file is read back once, whatever its number of names.
    let n = files(&tree).count() / 2;
    assert!(
        run.stdout()
            .contains(&format!("; {} files verified; 2 errors", n - 1)),
        "{run:?}"
    );
    assert!(!changed.exists(), "verify left a file with wrong bytes");
    assert!(!other_name.exists(), "verify left a file with wrong bytes");

    // Running it again restores the file.
    t.restore("latest", &target);
    assert_same_tree(&tree, &scan(&root), Compare::exact());
}

/// Regression: running a restore again into its own target failed for an unprivileged user
/// wherever the first run had given a directory a read-only mode ("Permission denied" on every
/// file to write there), so an interrupted or damaged restore below such a directory could not
/// be resumed. Permission bits do not stop root, so as root the restores run as uid 65534.
#[test]
fn resume_below_a_read_only_directory() {
    const NOBODY: u32 = 65534;
    let t = setup();
    t.init();
    let src = t.join("src");
    write(src.join("ro/f1"), random_bytes(300, 20_000));
    write(src.join("ro/f2"), "second\n");
    write(src.join("ro/sub/g"), "deeper\n");
    chmod(src.join("ro/sub"), 0o555);
    chmod(src.join("ro"), 0o555);
    let tree = scan(&src);
    t.backup([&src]);
    let target = t.join("restore");
    mkdirs(&target);
    if is_root() {
        chmod(t.path(), 0o755);
        mkdirs(t.cache());
        for dir in [t.repo(), t.cache(), target.clone()] {
            chown_tree(&dir, NOBODY, NOBODY);
        }
    }
    let restore = || {
        let mut cmd = if is_root() {
            t.command_as(NOBODY, NOBODY)
        } else {
            t.command()
        };
        cmd.args(args(&[&"restore", &"latest", &"--target", &target]));
        Run::of(cmd).success()
    };
    restore();
    let root = restored(&target, &src);
    assert_eq!(entry(&root.join("ro")).mode, 0o555);

    // Damaged below both read-only directories (as root, the owner stays the restoring user).
    write(root.join("ro/f1"), "truncated");
    fs::remove_file(root.join("ro/sub/g")).unwrap_or_else(|_| {
        // Not root: the directory's mode stops us too.
        chmod(root.join("ro/sub"), 0o755);
        fs::remove_file(root.join("ro/sub/g")).unwrap();
        chmod(root.join("ro/sub"), 0o555);
    });
    let run = restore();
    assert!(
        run.stdout()
            .contains("restored 3 files (1 already complete, kept)"),
        "{run:?}"
    );
    let how = Compare {
        owner: false,
        ..Compare::exact()
    };
    assert_same_tree(&tree, &scan(&root), how);
}
