//! Selecting what is backed up and restored (`--exclude`, `--exclude-file`, `--include`), and
//! dry runs, which write nothing.

use crate::util::*;
use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

/// The tree minus the given paths and everything below them.
fn without(tree: &Tree, gone: &[&str]) -> Tree {
    tree.iter()
        .filter(|(p, _)| !gone.iter().any(|g| p.starts_with(g)))
        .map(|(p, e)| (p.clone(), e.clone()))
        .collect()
}

/// Only the given paths of the tree.
fn only(tree: &Tree, keep: &[&str]) -> Tree {
    let keep: BTreeSet<PathBuf> = keep.iter().map(PathBuf::from).collect();
    let out: Tree = tree
        .iter()
        .filter(|(p, _)| keep.contains(*p))
        .map(|(p, e)| (p.clone(), e.clone()))
        .collect();
    assert_eq!(out.len(), keep.len(), "the test names paths the tree lacks");
    out
}

#[test]
fn backup_excludes_leave_paths_out() {
    let t = setup();
    t.init();
    let src = t.join("src");
    write(src.join("keep.txt"), "kept\n");
    write(
        src.join("keep.tmpl"),
        "kept: *.tmp matches whole names only\n",
    );
    write(src.join("junk.tmp"), "excluded by --exclude\n");
    write(src.join("sub/also.tmp"), "excluded by --exclude, deeper\n");
    write(src.join("sub/keep2.txt"), "kept\n");
    write(
        src.join("cache/blob"),
        "excluded with its directory by an absolute path\n",
    );
    write(src.join("cache/inner/blob"), "excluded\n");
    write(
        src.join("sub/cache/blob"),
        "kept: the absolute pattern names only src/cache\n",
    );
    write(
        src.join("sub/build/out.o"),
        "excluded by a name pattern from the file\n",
    );
    write(src.join("build"), "excluded too: a file named build\n");
    write(src.join("a/logs/x.log"), "excluded by **/logs/*.log\n");
    write(src.join("a/logs/keep.txt"), "kept\n");
    write(src.join("x.log"), "kept: not in a logs directory\n");
    let exclude_file = t.join("excludes");
    write(
        &exclude_file,
        format!(
            "# a comment line\n\n{}\n  build  \n**/logs/*.log\n",
            src.join("cache").display()
        ),
    );
    let before = scan(&src);

    let s = t.backup([
        src.as_os_str(),
        OsStr::new("--exclude"),
        OsStr::new("*.tmp"),
        OsStr::new("--exclude-file"),
        exclude_file.as_os_str(),
    ]);
    let expected = without(
        &before,
        &[
            "junk.tmp",
            "sub/also.tmp",
            "cache",
            "sub/build",
            "build",
            "a/logs/x.log",
        ],
    );
    let files = expected.values().filter(|e| e.kind == Kind::File).count() as u64;
    assert_eq!(num(&s, "total_files"), files, "{s}");

    let listed = t.ls_recursive("latest", &src);
    let want: BTreeSet<PathBuf> = expected
        .keys()
        .filter(|p| !p.as_os_str().is_empty())
        .map(|p| src.join(p))
        .collect();
    assert_eq!(listed, want);

    let target = t.join("restore");
    t.restore("latest", &target);
    // Directories that lost excluded entries keep their own metadata.
    assert_same_tree(&expected, &scan(&restored(&target, &src)), Compare::exact());
}

/// A snapshot of a small tree for the restore tests.
fn restore_fixture() -> (Dir, PathBuf, Tree) {
    let t = setup();
    t.init();
    let src = t.join("src");
    write(src.join("docs/a.md"), "# a\n");
    write(src.join("docs/b.txt"), "b\n");
    write(src.join("docs/sub/c.md"), "# c\n");
    write(src.join("code/main.rs"), "fn main() {}\n");
    write(src.join("code/lib.rs"), "\n");
    write(src.join("code/gen/out.log"), "log\n");
    write(src.join("top.md"), "# top\n");
    write(src.join("top.log"), "log\n");
    mkdirs(src.join("code/empty"));
    let tree = scan(&src);
    t.backup([&src]);
    (t, src, tree)
}

fn restore_with(t: &Dir, target: &Path, extra: &[&OsStr]) -> Run {
    let mut args = vec![
        OsStr::new("restore"),
        OsStr::new("latest"),
        OsStr::new("--target"),
        target.as_os_str(),
    ];
    args.extend_from_slice(extra);
    t.ok(args)
}

#[test]
fn restore_include_and_exclude_select_a_subset() {
    let (t, src, tree) = restore_fixture();
    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        // A name pattern: the matching files and the directories leading to them.
        (
            vec!["--include".into(), "*.md".into()],
            vec![
                "",
                "docs",
                "docs/a.md",
                "docs/sub",
                "docs/sub/c.md",
                "top.md",
            ],
        ),
        // A directory by absolute path: all of it, minus what is excluded.
        (
            vec![
                "--include".into(),
                src.join("code").display().to_string(),
                "--exclude".into(),
                "*.log".into(),
            ],
            vec![
                "",
                "code",
                "code/main.rs",
                "code/lib.rs",
                "code/gen",
                "code/empty",
            ],
        ),
        // Only an exclude: everything else.
        (
            vec![
                "--exclude".into(),
                src.join("docs").display().to_string(),
                "--exclude".into(),
                "*.log".into(),
            ],
            vec![
                "",
                "code",
                "code/main.rs",
                "code/lib.rs",
                "code/gen",
                "code/empty",
                "top.md",
            ],
        ),
        // Two includes.
        (
            vec![
                "--include".into(),
                "b.txt".into(),
                "--include".into(),
                "**/code/*.rs".into(),
            ],
            vec![
                "",
                "docs",
                "docs/b.txt",
                "code",
                "code/main.rs",
                "code/lib.rs",
            ],
        ),
    ];
    for (i, (args, keep)) in cases.iter().enumerate() {
        let target = t.join(format!("restore-{i}"));
        let extra: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        restore_with(&t, &target, &extra);
        let got = scan(&restored(&target, &src));
        let diffs = diff_trees(&only(&tree, keep), &got, Compare::exact());
        assert!(
            diffs.is_empty(),
            "restore {args:?}:\n  {}",
            diffs.join("\n  ")
        );
    }
}

#[test]
fn restore_dry_run_writes_nothing() {
    let (t, src, _tree) = restore_fixture();

    // A target that does not exist is not created.
    let target = t.join("dry");
    let run = restore_with(&t, &target, &[OsStr::new("--dry-run")]);
    assert!(!target.exists(), "restore --dry-run created its target");
    let planned: BTreeSet<String> = run.stdout().lines().map(str::to_string).collect();
    let rel = |p: &str| src.join(p).strip_prefix("/").unwrap().display().to_string();
    for p in ["docs/a.md", "code/main.rs", "code/empty", "top.log"] {
        assert!(
            planned.contains(&rel(p)),
            "the dry run does not list {p}:\n{run:?}"
        );
    }

    // Nor is anything written into one that does, also with a selection.
    let target = t.join("existing");
    write(target.join("unrelated"), "x");
    let before = fingerprint(&target);
    let run = restore_with(
        &t,
        &target,
        &[
            OsStr::new("--dry-run"),
            OsStr::new("--include"),
            OsStr::new("*.md"),
        ],
    );
    assert_unchanged(&before, &fingerprint(&target), "the restore target");
    assert!(run.stdout().contains(&rel("docs/a.md")), "{run:?}");
    assert!(!run.stdout().contains(&rel("code/main.rs")), "{run:?}");
}

#[test]
fn backup_dry_run_writes_nothing() {
    let t = setup();
    t.init();
    let src = t.join("src");
    write(src.join("a.txt"), "some text\n".repeat(1000));
    write(src.join("b.bin"), random_bytes(3, 200_000));
    let before = fingerprint(&t.repo());

    let s = t.backup([src.as_os_str(), OsStr::new("--dry-run")]);
    assert_unchanged(&before, &fingerprint(&t.repo()), "the repository");
    assert_eq!(s["snapshot_id"], serde_json::Value::Null, "{s}");
    assert!(
        num(&s, "raw_bytes_added") >= 210_000,
        "a dry run on a fresh repository should report new bytes: {s}"
    );
    assert!(num(&s, "blobs_added") >= 3, "{s}");
    assert_eq!(num(&s, "files_new"), 2, "{s}");
    assert!(t.snapshots().is_empty());

    // After a real backup, a dry run still writes nothing and reports only the change.
    t.backup([&src]);
    write(src.join("c.txt"), "new\n");
    let before = fingerprint(&t.repo());
    let s = t.backup([src.as_os_str(), OsStr::new("--dry-run")]);
    assert_unchanged(&before, &fingerprint(&t.repo()), "the repository");
    assert_eq!(num(&s, "files_new"), 1, "{s}");
    assert_eq!(num(&s, "files_unchanged"), 2, "{s}");
    assert_eq!(t.snapshots().len(), 1);
    assert!(fs::read_dir(t.repo().join("snapshots")).unwrap().count() == 1);
}

/// `--one-file-system` records a mount point but not what is mounted there.
#[test]
fn one_file_system_stops_at_mount_points() {
    let t = setup();
    t.init();
    let src = t.join("src");
    write(src.join("a.txt"), "on the main file system\n");
    let mnt = src.join("mnt");
    let _mount = match mount_tmpfs(&mnt, "1m") {
        Ok(m) => m,
        Err(why) => {
            assert!(!is_root(), "cannot mount a tmpfs as root: {why}");
            eprintln!("note: --one-file-system not tested: cannot mount here ({why})");
            return;
        }
    };
    write(mnt.join("inside.txt"), "on another file system\n");

    t.backup([src.as_os_str(), OsStr::new("--one-file-system")]);
    let listed = t.ls_recursive("latest", &src);
    let want: BTreeSet<PathBuf> = [src.join("a.txt"), mnt.clone()].into_iter().collect();
    assert_eq!(listed, want);

    t.backup([&src]);
    let listed = t.ls_recursive("latest", &src);
    assert!(listed.contains(&mnt.join("inside.txt")), "{listed:?}");
}
