//! Output and help (issue: output): `backup -v`/`-vv` listing each path's change, `--json`
//! reports of restore, init, dump and repair, and progress bars that never show a total they
//! do not know.

use crate::util::{files_below, num, on_terminal, random_bytes, setup, string, write, Dir};
use serde_json::Value;
use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

/// The lines of a `backup -v` run's stdout that name a path below `src`, as (mark, path
/// relative to `src`), sorted: the listing comes in the order the workers finish.
fn listed(stdout: &str, src: &Path) -> BTreeSet<(String, String)> {
    let prefix = format!("{}/", src.display());
    stdout
        .lines()
        .filter_map(|l| {
            let (mark, path) = (l.get(..1)?, l.get(2..)?);
            let rel = path.strip_prefix(&prefix)?;
            Some((mark.to_string(), rel.to_string()))
        })
        .collect()
}

fn set(items: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    items
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect()
}

/// A source with files, a directory to delete later, and a symlink, backed up once.
fn first_backup(t: &Dir) -> std::path::PathBuf {
    let src = t.join("src");
    write(src.join("keep.txt"), "kept\n");
    write(src.join("edit.txt"), "before\n");
    write(src.join("dir/inner.txt"), "inner\n");
    write(src.join("gone/sub/deep.txt"), "deep\n");
    write(src.join("gone.txt"), "gone\n");
    std::os::unix::fs::symlink("keep.txt", src.join("link")).unwrap();
    let run = t.ok(["backup".as_ref(), "-v".as_ref(), src.as_os_str()]);
    let want = set(&[
        ("+", "dir"),
        ("+", "dir/inner.txt"),
        ("+", "edit.txt"),
        ("+", "gone"),
        ("+", "gone.txt"),
        ("+", "gone/sub"),
        ("+", "gone/sub/deep.txt"),
        ("+", "keep.txt"),
        ("+", "link"),
    ]);
    assert_eq!(listed(&run.stdout(), &src), want, "{run:?}");
    src
}

fn change_source(src: &Path) {
    write(src.join("edit.txt"), "after, and longer\n");
    write(src.join("dir/new.txt"), "new\n");
    fs::remove_dir_all(src.join("gone")).unwrap();
    fs::remove_file(src.join("gone.txt")).unwrap();
}

#[test]
fn backup_verbose_lists_exactly_the_new_changed_and_deleted_paths() {
    let t = setup();
    t.init();
    let src = first_backup(&t);
    change_source(&src);
    let run = t.ok(["backup".as_ref(), "-v".as_ref(), src.as_os_str()]);
    let want = set(&[
        ("+", "dir/new.txt"),
        ("M", "edit.txt"),
        ("-", "gone"),
        ("-", "gone.txt"),
        ("-", "gone/sub"),
        ("-", "gone/sub/deep.txt"),
    ]);
    assert_eq!(listed(&run.stdout(), &src), want, "{run:?}");
    // The summary still follows, and counts files as the listing marks them.
    assert!(
        run.stdout()
            .contains("files: 1 new, 1 changed, 2 unchanged, 2 deleted"),
        "{run:?}"
    );

    // -vv adds the unchanged entries, marked with a blank.
    let run = t.ok(["backup".as_ref(), "-vv".as_ref(), src.as_os_str()]);
    let want = set(&[
        (" ", "dir"),
        (" ", "dir/inner.txt"),
        (" ", "dir/new.txt"),
        (" ", "edit.txt"),
        (" ", "keep.txt"),
        (" ", "link"),
    ]);
    assert_eq!(listed(&run.stdout(), &src), want, "{run:?}");
    // Without -v, no listing.
    let run = t.ok(["backup".as_ref(), src.as_os_str()]);
    assert!(listed(&run.stdout(), &src).is_empty(), "{run:?}");
}

#[test]
fn backup_json_verbose_streams_one_object_per_path_then_the_report() {
    let t = setup();
    t.init();
    let src = first_backup(&t);
    change_source(&src);
    let run = t.ok([
        "backup".as_ref(),
        "--json".as_ref(),
        "-v".as_ref(),
        src.as_os_str(),
    ]);
    let docs: Vec<Value> = run
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    let (report, paths) = docs.split_last().expect("some lines");
    // The last line is the run report, as without -v.
    assert_eq!(string(report, "command").as_deref(), Some("backup"));
    assert_eq!(num(report, "files_new"), 1);
    assert_eq!(num(report, "files_deleted"), 2);
    let prefix = format!("{}/", src.display());
    let got: BTreeSet<(String, String, String)> = paths
        .iter()
        .map(|d| {
            assert!(d.get("schema").is_none(), "{d}");
            let path = string(d, "path").unwrap();
            let rel = path.strip_prefix(&prefix).unwrap_or(&path).to_string();
            (
                string(d, "change").unwrap(),
                rel,
                string(d, "type").unwrap(),
            )
        })
        .collect();
    let want: BTreeSet<(String, String, String)> = [
        ("new", "dir/new.txt", "file"),
        ("changed", "edit.txt", "file"),
        ("deleted", "gone", "dir"),
        ("deleted", "gone.txt", "file"),
        ("deleted", "gone/sub", "dir"),
        ("deleted", "gone/sub/deep.txt", "file"),
    ]
    .iter()
    .map(|(c, p, k)| (c.to_string(), p.to_string(), k.to_string()))
    .collect();
    assert_eq!(got, want, "{run:?}");
}

/// `verbose` in a profile is a count, or true for one.
#[test]
fn verbose_in_a_profile_counts() {
    let t = setup();
    t.init();
    let src = first_backup(&t);
    let profile = t.join("p.toml");
    write(&profile, "[global]\nverbose = 2\n");
    let run = t.ok([
        "-P".as_ref(),
        profile.as_os_str(),
        "backup".as_ref(),
        src.as_os_str(),
    ]);
    assert!(
        listed(&run.stdout(), &src).contains(&(" ".to_string(), "keep.txt".to_string())),
        "{run:?}"
    );
}

#[test]
fn restore_init_dump_and_repair_report_json() {
    let t = setup();
    let init = t.ok([
        "init",
        "--kdf-memory",
        "64",
        "--kdf-iterations",
        "1",
        "--chunk-size",
        "512",
        "--pack-size",
        "4",
        "--json",
    ]);
    let doc = init.json();
    assert_eq!(
        string(&doc, "location").as_deref(),
        Some(t.repo().to_str().unwrap())
    );
    assert_eq!(string(&doc, "repository_id").unwrap().len(), 64);
    assert_eq!(
        (
            num(&doc, "chunk_min"),
            num(&doc, "chunk_avg"),
            num(&doc, "chunk_max")
        ),
        (256 << 10, 512 << 10, 4 << 20)
    );
    assert_eq!(num(&doc, "pack_size"), 4 << 20);

    let src = t.join("src");
    let big = random_bytes(7, 3 << 20);
    write(src.join("big.bin"), &big);
    write(src.join("a/small.txt"), "small\n");
    write(src.join("a/b/empty"), "");
    let snap = string(&t.backup([&src]), "snapshot_id").unwrap();

    let target = t.join("restore");
    let args = |extra: &[&str]| {
        let mut v = vec![
            "restore",
            &snap,
            "--target",
            target.to_str().unwrap(),
            "--json",
        ];
        v.extend(extra);
        v.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let dry = t.ok(args(&["--dry-run"])).json();
    assert_eq!(dry["dry_run"], true);
    assert_eq!(
        (num(&dry, "files"), num(&dry, "bytes")),
        (3, big.len() as u64 + 6)
    );
    assert!(!target.exists(), "a dry run writes nothing");
    let run = t.ok(args(&["--verify"]));
    let doc = run.json();
    assert_eq!(string(&doc, "snapshot_id"), Some(snap.clone()));
    assert_eq!(num(&doc, "files"), 3);
    assert_eq!(num(&doc, "files_verified"), 3);
    assert_eq!(num(&doc, "bytes"), big.len() as u64 + 6);
    // The source's directories and the ones leading to it.
    let below = src.components().count() as u64 - 1;
    assert_eq!(num(&doc, "dirs"), below + 2);
    assert_eq!(doc["deleted"], Value::Null);
    assert_eq!(doc["errors"], serde_json::json!([]));
    assert!(!run.stderr().contains("restoring"), "{run:?}");

    // --delete counts what it deleted.
    let r = crate::util::restored(&target, &src);
    write(r.join("extra1"), "x");
    write(r.join("a/extra2"), "y");
    let doc = t.ok(args(&["--delete"])).json();
    assert_eq!(num(&doc, "deleted"), 2);
    assert_eq!(num(&doc, "files_kept"), 3, "{doc}");

    // dump: the report needs --output, which gets the content.
    let out = t.join("big.out");
    let path = src.join("big.bin");
    let doc = t
        .ok([
            "dump",
            "--json",
            "-o",
            out.to_str().unwrap(),
            "latest",
            path.to_str().unwrap(),
        ])
        .json();
    assert_eq!(fs::read(&out).unwrap(), big);
    assert_eq!(num(&doc, "bytes"), big.len() as u64);
    assert_eq!(string(&doc, "format").as_deref(), Some("file"));
    assert_eq!(string(&doc, "snapshot_id"), Some(snap.clone()));
    let tar = t.join("a.tar");
    let doc = t
        .ok([
            "dump",
            "--json",
            "-o",
            tar.to_str().unwrap(),
            "latest",
            src.join("a").to_str().unwrap(),
        ])
        .json();
    assert_eq!(string(&doc, "format").as_deref(), Some("tar"));
    assert_eq!(num(&doc, "bytes"), fs::metadata(&tar).unwrap().len());
    let e = t
        .run(["dump", "--json", "latest", path.to_str().unwrap()])
        .code(2);
    assert!(e.error_line().contains("--output"), "{e:?}");

    // repair index: every pack in the repository indexed again.
    let packs = files_below(&t.repo().join("data")).len() as u64;
    let doc = t.ok(["repair", "index", "--json"]).json();
    assert_eq!(
        (num(&doc, "packs"), num(&doc, "packs_indexed")),
        (packs, packs)
    );
    assert!(num(&doc, "index_files_written") >= 1, "{doc}");
    assert_eq!(doc["packs_unreadable"], serde_json::json!([]));
    t.check();
}

/// Regression: progress bars were drawn full at "0 B/0 B, ETA 0s" before their totals were
/// known, and check's always (it counts packs, not bytes).
#[test]
fn progress_on_a_terminal_never_shows_an_unknown_total() {
    let t = setup();
    t.init();
    let src = t.join("src");
    for i in 0..8 {
        write(src.join(format!("f{i}.bin")), random_bytes(i, 4 << 20));
    }
    for i in 0..300 {
        write(src.join(format!("small/{i}")), format!("{i}\n"));
    }
    let src_s = src.to_str().unwrap();
    let target = t.join("r");
    for args in [
        format!("backup {src_s}"),
        format!("restore latest --target {}", target.display()),
        "check --read-data".to_string(),
    ] {
        let shown = on_terminal(&t, &args);
        // indicatif clears its line before each redraw: the display was there to look at.
        assert!(
            shown.contains("\x1b[2K"),
            "{args}: no progress shown: {shown:?}"
        );
        assert!(!shown.contains("0 B/0 B"), "{args}: {shown:?}");
        assert!(!shown.contains("0/0 "), "{args}: {shown:?}");
    }
    // With --json the terminal gets the report alone, no progress.
    let shown = on_terminal(&t, &format!("backup --json {src_s}"));
    assert!(!shown.contains('\x1b'), "{shown:?}");
    let lines: Vec<&str> = shown.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{shown:?}");
    serde_json::from_str::<Value>(lines[0].trim()).unwrap();
}
