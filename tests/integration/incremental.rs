//! Incremental, full and differential backups: what they read, what they report, which parent
//! they pick, and that every snapshot restores its own state of the tree.

use crate::util::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

/// A small tree of `n` files of various sizes.
fn make_tree(src: &Path) {
    write(src.join("a.txt"), "alpha\n".repeat(100));
    write(src.join("b.txt"), "bravo\n".repeat(200));
    write(src.join("sub/c.txt"), "charlie\n");
    write(src.join("sub/d.bin"), random_bytes(10, 100_000));
    write(src.join("sub/deeper/e.bin"), random_bytes(11, 3000));
    write(src.join("empty"), "");
}

fn time(n: u32) -> String {
    format!("2026-01-01T00:{:02}:00Z", n)
}

fn id(summary: &Value) -> String {
    string(summary, "snapshot_id").unwrap_or_else(|| panic!("no snapshot id in {summary}"))
}

/// Restores each snapshot and compares it with the tree captured when it was taken.
fn check_restores(t: &Dir, src: &Path, states: &[(String, Tree)]) {
    for (i, (snap, tree)) in states.iter().enumerate() {
        let target = t.join(format!("restore-{i}"));
        t.restore(snap, &target);
        let got = scan(&restored(&target, src));
        let diffs = diff_trees(tree, &got, Compare::exact());
        assert!(
            diffs.is_empty(),
            "snapshot {i} ({snap}) does not restore its tree:\n  {}",
            diffs.join("\n  ")
        );
    }
}

#[test]
fn unchanged_changed_new_deleted_and_full() {
    let t = setup();
    t.init();
    let src = t.join("src");
    make_tree(&src);
    let mut states = Vec::new();

    let first = t.backup([src.as_os_str(), "--time".as_ref(), time(1).as_ref()]);
    let total = num(&first, "total_files");
    assert_eq!(total, 6, "{first}");
    assert_eq!(num(&first, "files_new"), total, "{first}");
    assert_eq!(
        num(&first, "bytes_read"),
        num(&first, "total_bytes"),
        "{first}"
    );
    assert_eq!(first["parent"], Value::Null, "{first}");
    states.push((id(&first), scan(&src)));

    // Nothing changed: nothing is read.
    let second = t.backup([src.as_os_str(), "--time".as_ref(), time(2).as_ref()]);
    assert_eq!(string(&second, "parent"), Some(id(&first)), "{second}");
    assert_eq!(
        string(&second, "kind").as_deref(),
        Some("incremental"),
        "{second}"
    );
    assert_eq!(num(&second, "bytes_read"), 0, "{second}");
    assert_eq!(num(&second, "files_unchanged"), total, "{second}");
    assert_eq!(num(&second, "total_files"), total, "{second}");
    assert_eq!(
        num(&second, "total_bytes"),
        num(&first, "total_bytes"),
        "{second}"
    );
    for k in ["files_new", "files_changed", "files_deleted"] {
        assert_eq!(num(&second, k), 0, "{k}: {second}");
    }
    states.push((id(&second), scan(&src)));

    // One changed, one new, one deleted.
    write(src.join("sub/c.txt"), "charlie, changed and longer\n");
    write(src.join("sub/new.txt"), "a new file\n");
    fs::remove_file(src.join("b.txt")).unwrap();
    let third = t.backup([src.as_os_str(), "--time".as_ref(), time(3).as_ref()]);
    assert_eq!(string(&third, "parent"), Some(id(&second)), "{third}");
    assert_eq!(num(&third, "files_changed"), 1, "{third}");
    assert_eq!(num(&third, "files_new"), 1, "{third}");
    assert_eq!(num(&third, "files_deleted"), 1, "{third}");
    assert_eq!(num(&third, "files_unchanged"), total - 2, "{third}");
    assert_eq!(num(&third, "total_files"), total, "{third}");
    let read = fs::metadata(src.join("sub/c.txt")).unwrap().len()
        + fs::metadata(src.join("sub/new.txt")).unwrap().len();
    assert_eq!(num(&third, "bytes_read"), read, "{third}");
    states.push((id(&third), scan(&src)));

    // A full backup reads everything and has no parent.
    let full = t.backup([
        src.as_os_str(),
        "--kind".as_ref(),
        "full".as_ref(),
        "--time".as_ref(),
        time(4).as_ref(),
    ]);
    assert_eq!(string(&full, "kind").as_deref(), Some("full"), "{full}");
    assert_eq!(full["parent"], Value::Null, "{full}");
    assert_eq!(
        num(&full, "bytes_read"),
        num(&full, "total_bytes"),
        "{full}"
    );
    assert!(num(&full, "total_bytes") > 100_000, "{full}");
    assert_eq!(num(&full, "files_unchanged"), 0, "{full}");
    // ... but stores no data again (only trees of ancestors such as /tmp, whose times change).
    assert!(
        num(&full, "raw_bytes_added") < 4096,
        "a full backup of unchanged data stored data again: {full}"
    );
    states.push((id(&full), scan(&src)));

    let listed = t.snapshots();
    assert_eq!(listed.len(), 4);
    check_restores(&t, &src, &states);
}

#[test]
fn differential_parent_is_the_latest_full_backup() {
    let t = setup();
    t.init();
    let src = t.join("src");
    make_tree(&src);
    let mut states = Vec::new();
    let backup = |kind: &str, n: u32| {
        t.backup([
            src.as_os_str(),
            "--kind".as_ref(),
            kind.as_ref(),
            "--time".as_ref(),
            time(n).as_ref(),
        ])
    };

    let full1 = backup("full", 1);
    states.push((id(&full1), scan(&src)));
    write(src.join("a.txt"), "alpha, first change\n");
    let inc1 = backup("incremental", 2);
    assert_eq!(string(&inc1, "parent"), Some(id(&full1)), "{inc1}");
    assert_eq!(num(&inc1, "files_changed"), 1, "{inc1}");
    states.push((id(&inc1), scan(&src)));
    write(src.join("sub/c.txt"), "charlie, second change\n");
    let inc2 = backup("incremental", 3);
    assert_eq!(string(&inc2, "parent"), Some(id(&inc1)), "{inc2}");
    assert_eq!(num(&inc2, "files_changed"), 1, "{inc2}");
    states.push((id(&inc2), scan(&src)));
    write(src.join("sub/deeper/e.bin"), random_bytes(12, 4000));

    // Against the full backup: all three changes are changes, whatever the incrementals saw.
    let diff1 = backup("differential", 4);
    assert_eq!(
        string(&diff1, "kind").as_deref(),
        Some("differential"),
        "{diff1}"
    );
    assert_eq!(
        string(&diff1, "parent"),
        Some(id(&full1)),
        "differential parent is not the latest full: {diff1}"
    );
    assert_eq!(num(&diff1, "files_changed"), 3, "{diff1}");
    assert_eq!(num(&diff1, "files_unchanged"), 3, "{diff1}");
    let changed: u64 = ["a.txt", "sub/c.txt", "sub/deeper/e.bin"]
        .iter()
        .map(|p| fs::metadata(src.join(p)).unwrap().len())
        .sum();
    assert_eq!(num(&diff1, "bytes_read"), changed, "{diff1}");
    states.push((id(&diff1), scan(&src)));

    // An incremental follows the latest snapshot of any kind.
    write(src.join("b.txt"), "bravo, changed\n");
    let inc3 = backup("incremental", 5);
    assert_eq!(string(&inc3, "parent"), Some(id(&diff1)), "{inc3}");
    states.push((id(&inc3), scan(&src)));

    // A second full one becomes the base of the next differential.
    let full2 = backup("full", 6);
    states.push((id(&full2), scan(&src)));
    write(src.join("sub/new.txt"), "new after the second full\n");
    let diff2 = backup("differential", 7);
    assert_eq!(string(&diff2, "parent"), Some(id(&full2)), "{diff2}");
    assert_eq!(num(&diff2, "files_new"), 1, "{diff2}");
    assert_eq!(num(&diff2, "files_unchanged"), 6, "{diff2}");
    states.push((id(&diff2), scan(&src)));

    check_restores(&t, &src, &states);
}

/// A file rewritten with the same size and its old mtime put back is still seen as changed
/// (its ctime and content differ).
#[test]
fn same_size_rewrite_with_old_mtime_is_detected() {
    let t = setup();
    t.init();
    let src = t.join("src");
    make_tree(&src);
    t.backup([&src]);
    let path = src.join("a.txt");
    let old = entry(&path);
    let dirs = dir_mtimes(&src);
    write(&path, "ALPHA\n".repeat(100));
    set_mtime(&path, old.mtime_ns as i64);
    for (d, ns) in dirs {
        set_mtime(d, ns);
    }
    assert_eq!(entry(&path).size, old.size);
    let before = scan(&src);
    let s = t.backup([&src]);
    assert_eq!(num(&s, "files_changed"), 1, "{s}");
    assert_eq!(num(&s, "bytes_read"), old.size, "{s}");
    let target = t.join("restore");
    t.restore("latest", &target);
    assert_same_tree(&before, &scan(&restored(&target, &src)), Compare::exact());
}

/// The parent of an incremental backup is the latest snapshot of the same host and the same
/// paths; `snapshots` filters by host and tag and shows what the backup recorded.
#[test]
fn parent_follows_host_and_paths() {
    let t = setup();
    t.init();
    let src = t.join("src");
    let other = t.join("other");
    make_tree(&src);
    write(other.join("x.txt"), "x\n");
    let with = |extra: &[&str]| {
        let mut args: Vec<std::ffi::OsString> = extra.iter().map(Into::into).collect();
        args.push("--json".into());
        let mut cmd = t.command();
        cmd.arg("backup").args(&args);
        Run::of(cmd).success().json()
    };
    let src_arg = src.to_str().unwrap();

    let h1 = with(&[
        src_arg,
        "--host",
        "h1",
        "--tag",
        "t1",
        "--tag",
        "t2",
        "--time",
        "2026-11-20T14:00:00Z",
    ]);
    assert_eq!(h1["parent"], Value::Null, "{h1}");
    let h2 = with(&[src_arg, "--host", "h2", "--time", "2026-11-20T14:01:00Z"]);
    assert_eq!(
        h2["parent"],
        Value::Null,
        "another host's snapshot was taken as parent: {h2}"
    );
    assert_eq!(num(&h2, "bytes_read"), num(&h2, "total_bytes"), "{h2}");
    // Relative and with a trailing slash, the same path.
    let h1b = with(&["src/", "--host", "h1", "--time", "2026-11-20T14:02:00Z"]);
    assert_eq!(string(&h1b, "parent"), Some(id(&h1)), "{h1b}");
    assert_eq!(num(&h1b, "bytes_read"), 0, "{h1b}");
    let two = with(&[
        src_arg,
        other.to_str().unwrap(),
        "--host",
        "h1",
        "--time",
        "2026-11-20T14:03:00Z",
    ]);
    assert_eq!(
        two["parent"],
        Value::Null,
        "a snapshot of other paths was taken as parent: {two}"
    );

    // Snapshots are listed grouped by host and paths, so compare sets of ids.
    let list = |args: &[&str]| -> BTreeSet<String> {
        let mut all = vec!["snapshots", "--json"];
        all.extend_from_slice(args);
        let v = t.ok(all).json();
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect()
    };
    let ids = |v: &[&Value]| -> BTreeSet<String> { v.iter().map(|s| id(s)).collect() };
    assert_eq!(list(&[]), ids(&[&h1, &h2, &h1b, &two]));
    assert_eq!(list(&["--host", "h1"]), ids(&[&h1, &h1b, &two]));
    assert_eq!(list(&["--host", "h2"]), ids(&[&h2]));
    assert_eq!(list(&["--tag", "t1"]), ids(&[&h1]));
    assert_eq!(list(&["--tag", "t1", "--tag", "t2"]), ids(&[&h1]));
    assert!(list(&["--tag", "t1", "--tag", "nope"]).is_empty());

    let snaps = t.snapshots();
    let find = |want: &Value| {
        snaps
            .iter()
            .find(|s| s["id"].as_str() == Some(id(want).as_str()))
            .unwrap()
            .clone()
    };
    let first = find(&h1);
    assert_eq!(first["time"], "2026-11-20T14:00:00Z");
    assert_eq!(first["host"], "h1");
    assert_eq!(first["tags"], serde_json::json!(["t1", "t2"]));
    assert_eq!(first["paths"], serde_json::json!([src_arg]));
    // The first backup of a host and paths reads every file: it is a full one.
    assert_eq!(first["kind"], "full");
    assert_eq!(
        find(&two)["paths"],
        serde_json::json!([other.to_str().unwrap(), src_arg])
    );
}

/// Deleting a directory counts every file below it as deleted.
#[test]
fn deleted_directory_counts_its_files() {
    let t = setup();
    t.init();
    let src = t.join("src");
    make_tree(&src);
    t.backup([&src]);
    fs::remove_dir_all(src.join("sub")).unwrap();
    let s = t.backup([&src]);
    assert_eq!(num(&s, "files_deleted"), 3, "{s}");
    assert_eq!(num(&s, "files_unchanged"), 3, "{s}");
    assert_eq!(num(&s, "total_files"), 3, "{s}");
    let before = scan(&src);
    let target = t.join("restore");
    t.restore("latest", &target);
    assert_same_tree(&before, &scan(&restored(&target, &src)), Compare::exact());
}
