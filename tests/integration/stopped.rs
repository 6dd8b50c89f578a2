//! Backups that run across prunes: a backup stopped (SIGSTOP, a sleeping laptop, a stalled
//! upload) while prunes from another host run hours apart, as the clocks of those prunes tell
//! (`CAIRN_TEST_CLOCK_SHIFT`). Whatever the prunes do, the backup then either commits a
//! complete snapshot or fails with a clear error, `check` passes, and every snapshot restores.
//! Also: prune keeps a good copy of a used blob when the copy it meant to keep is damaged.

use crate::util::*;
use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn init_small_packs(t: &Dir) {
    t.init_with(&["--pack-size", "1", "--chunk-size", "64"]);
}

/// Files in `dir`, temporary files (an unfinished create) apart.
fn count(dir: &Path) -> usize {
    fs::read_dir(dir).map_or(0, |d| {
        d.filter(|e| {
            !e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        })
        .count()
    })
}

/// Starts `cairn backup SRC` and stops it (SIGSTOP) as soon as it has written its first index
/// file (the repository having held `index_files` before). Returns the stopped process.
fn backup_stopped_after_first_index(t: &Dir, src: &Path, index_files: usize) -> Child {
    let mut cmd: Command = t.command();
    cmd.args(["backup", "--json"])
        .arg(src)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start cairn backup");
    let pid = rustix::process::Pid::from_child(&child);
    let deadline = Instant::now() + Duration::from_secs(120);
    while count(&t.repo().join("index")) <= index_files {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backup ended before it wrote an index file: make its source larger"
        );
        assert!(Instant::now() < deadline, "the backup wrote no index file");
        std::thread::sleep(Duration::from_micros(200));
    }
    rustix::process::kill_process(pid, rustix::process::Signal::STOP).unwrap();
    child
}

/// `cairn prune --json` from another host's cache, its clocks `shift` ahead.
fn prune_later(t: &Dir, shift: &str) -> serde_json::Value {
    let mut cmd = t.command();
    cmd.env("CAIRN_CACHE_DIR", t.join("other-host-cache"))
        .env("CAIRN_TEST_CLOCK_SHIFT", shift)
        .args(["prune", "--json"]);
    Run::of(cmd).success().json()["prune"].clone()
}

/// A backup of 48 MiB stopped after its first index file, a small snapshot before it.
struct Stopped {
    child: Child,
    big: std::path::PathBuf,
    small: std::path::PathBuf,
    small_tree: Tree,
    /// The packs in the repository once the backup stopped.
    packs: std::collections::BTreeSet<String>,
}

/// A repository with one small snapshot (its id is returned) and a backup stopped after its
/// first index file, of files made from `seed`.
fn stopped_backup(seed: u64) -> (Dir, String, Stopped) {
    let t = setup();
    init_small_packs(&t);
    let small = t.join("small");
    write(small.join("a.txt"), "a first, small backup\n");
    let first = id(&t.backup([&small]));
    let small_tree = scan(&small);
    let big = t.join("big");
    for i in 0..48u64 {
        write(
            big.join(format!("f{i:02}.bin")),
            random_bytes(seed + i, 1 << 20),
        );
    }
    let before = count(&t.repo().join("index"));
    let child = backup_stopped_after_first_index(&t, &big, before);
    let packs = data_packs(&t.repo());
    let stopped = Stopped {
        child,
        big,
        small,
        small_tree,
        packs,
    };
    (t, first, stopped)
}

/// Lets a stopped backup go on, and waits for it.
fn resume(child: Child) -> std::process::Output {
    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, rustix::process::Signal::CONT).unwrap();
    child.wait_with_output().unwrap()
}

fn data_packs(repo: &Path) -> std::collections::BTreeSet<String> {
    files_below(&repo.join("data"))
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// The reproduction of the data loss of issue 12: a backup stopped after its first index file
/// while prunes run at +0, +2h, +3h and +5h committed a snapshot whose packs the prunes had
/// deleted ("content lost: data blob ... is not in the index"). Now no prune deletes what a
/// backup still running may need, however long it stops: the backup commits, complete.
#[test]
fn a_backup_stopped_across_prunes_hours_apart_commits_a_complete_snapshot() {
    let (t, first, stopped) = stopped_backup(1000);
    let Stopped {
        child,
        big,
        small,
        small_tree,
        packs: stopped_packs,
    } = stopped;

    for shift in ["0s", "2h", "3h", "5h"] {
        let p = prune_later(&t, shift);
        assert_eq!(p["sessions_fenced"], 0, "{p}");
        let left = data_packs(&t.repo());
        assert!(
            stopped_packs.is_subset(&left),
            "a prune at +{shift} deleted packs the stopped backup wrote: {p}"
        );
    }

    let out = resume(child);
    assert!(
        out.status.success(),
        "the backup failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    t.check();
    assert_restores(&t, &id(&summary), &big, &scan(&big));
    assert_restores(&t, &first, &small, &small_tree);
}

/// The same, but the prunes run a day and two days later, beyond `--grace` (1d): the stopped
/// backup is taken for dead and fenced off, and what only it protected is deleted. When it
/// goes on, it must not commit a snapshot that reaches deleted data: it fails, saying so, and
/// the repository stays sound; run again, the backup succeeds.
#[test]
fn a_backup_stopped_beyond_the_grace_period_is_fenced_off_and_commits_nothing_broken() {
    let (t, first, stopped) = stopped_backup(2000);
    let Stopped {
        child,
        big,
        small,
        small_tree,
        packs: stopped_packs,
    } = stopped;

    // The first prune sees the backup's marker; a day later it has not changed.
    let p = prune_later(&t, "0s");
    assert_eq!(p["packs_deleted"], 0, "{p}");
    let p = prune_later(&t, "25h");
    assert_eq!(p["sessions_fenced"], 1, "{p}");
    let p = prune_later(&t, "50h");
    let left = data_packs(&t.repo());
    assert!(
        !stopped_packs.is_subset(&left),
        "the fenced-off backup's packs should be gone by now: {p}"
    );

    let out = resume(child);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        // Committed: then it must be complete.
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        t.check();
        assert_restores(&t, &id(&summary), &big, &scan(&big));
    }
    assert!(
        !out.status.success(),
        "the backup committed though its data was deleted: {stderr} {} after {p}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.contains("run the backup again") && stderr.trim_end().lines().count() == 1,
        "{stderr}"
    );
    assert_eq!(t.snapshots().len(), 1, "nothing was committed");
    t.check();
    assert_restores(&t, &first, &small, &small_tree);

    let again = t.backup([&big]);
    t.check();
    assert_restores(&t, &id(&again), &big, &scan(&big));
}

/// Regression: when two copies of a used blob existed, prune kept the first whose pack had the
/// right size and condemned the other, so a damaged copy could win and the good one be deleted.
/// Now the copy kept is read and verified before the last other copy goes.
#[test]
fn prune_keeps_the_good_copy_when_the_copy_it_meant_to_keep_is_damaged() {
    let t = setup();
    init_small_packs(&t);
    let src = t.join("src");
    write(src.join("big.bin"), random_bytes(500, 3_000_000));

    // A backup killed just before its index file: every pack written, none indexed.
    let base = t.join("base");
    copy_dir(&t.repo(), &base);
    let killed_at = |n: usize| {
        copy_dir(&base, &t.repo());
        let mut cmd = t.command();
        cmd.env("CAIRN_TEST_CRASH_AFTER", n.to_string())
            .arg("backup")
            .arg(&src);
        assert_ne!(
            Run::of(cmd).code,
            Some(0),
            "the backup was not killed at write {n}"
        );
        count(&t.repo().join("index")) == 0
    };
    let first_indexed = (1..100).find(|n| !killed_at(*n)).unwrap();
    assert!(killed_at(first_indexed - 1));
    assert!(data_packs(&t.repo()).len() >= 3);
    let unindexed = data_packs(&t.repo());

    // The next backup stores every blob again: those packs are invisible to it.
    let s = t.backup([&src]);
    let tree = scan(&src);
    let indexed: Vec<String> = data_packs(&t.repo())
        .difference(&unindexed)
        .cloned()
        .collect();
    // Damage every data pack the index names (the tree pack is small): one byte inside some
    // blob.
    for name in &indexed {
        let path = t.repo().join("data").join(&name[..2]).join(name);
        if fs::metadata(&path).unwrap().len() < 100_000 {
            continue;
        }
        let mut bytes = fs::read(&path).unwrap();
        let mid = bytes.len() / 3;
        bytes[mid] ^= 0x40;
        chmod(&path, 0o600);
        fs::write(&path, bytes).unwrap();
    }

    let mut cmd = t.command();
    cmd.args(["prune", "--json"]);
    let report = Run::of(cmd).success().json();
    let p = &report["prune"];
    assert!(num(p, "copies_damaged") > 0, "{report}");
    assert_restores(&t, &id(&s), &src, &tree);
}
