//! `forget` and `prune`: retention removes the right snapshots, prune frees exactly the data no
//! snapshot needs (repacking partly used packs), a dry run changes nothing, and the protocol
//! that lets prune run beside backups holds when prune or a backup is killed at any storage
//! write (`CAIRN_TEST_CRASH_AFTER`) and when backups from two hosts run while prune loops.
//!
//! Repositories here use 1 MiB packs and 64 KiB chunks, so that a few hundred KiB of random
//! (incompressible) data spread over several packs and sizes on disk follow the data closely.

use crate::util::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const KIB: u64 = 1 << 10;

fn init_small_packs(t: &Dir) {
    t.init_with(&["--pack-size", "1", "--chunk-size", "64"]);
}

/// A fixed snapshot time: noon of day `day` of January 2026.
fn day(day: usize) -> String {
    format!("2026-01-{day:02}T12:00:00Z")
}

/// The ids `snapshots --json` lists.
fn snapshot_ids(t: &Dir) -> BTreeSet<String> {
    t.snapshots()
        .iter()
        .map(|s| string(s, "id").unwrap())
        .collect()
}

/// The bytes of every file below `repo/data`: what the packs take on disk.
fn data_size(repo: &Path) -> u64 {
    files_below(&repo.join("data"))
        .iter()
        .map(|f| fs::metadata(f).unwrap().len())
        .sum()
}

/// The backup markers in `repo/locks`.
fn markers(repo: &Path) -> Vec<PathBuf> {
    match fs::read_dir(repo.join("locks")) {
        Ok(dir) => dir.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// `cairn ARGS --json` for `prune` or `forget`; panics unless it exits 0. Returns the report.
fn gc_json(t: &Dir, list: &[&dyn AsRef<OsStr>]) -> Value {
    let mut all = args(list);
    all.push("--json".into());
    t.ok(all).json()
}

/// The `prune` part of a `prune` or `forget --prune` report.
fn prune_part(report: &Value) -> &Value {
    report
        .get("prune")
        .unwrap_or_else(|| panic!("no prune report in {report}"))
}

/// The ids a `prune` or `forget` report says were (or would be) removed.
fn removed(report: &Value) -> BTreeSet<String> {
    report["removed"]
        .as_array()
        .unwrap_or_else(|| panic!("no removed list in {report}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// `check --read-data` finds nothing wrong, not even something to warn about.
fn check_clean(t: &Dir) -> Value {
    let report = t.check();
    assert_eq!(
        report["warnings"],
        Value::Array(vec![]),
        "check warns: {report}"
    );
    report
}

/// `cairn ARGS` that aborts at its (n+1)-th storage write.
fn run_crashing(t: &Dir, n: usize, list: &[&dyn AsRef<OsStr>]) -> Run {
    let mut cmd = t.command();
    cmd.env("CAIRN_TEST_CRASH_AFTER", n.to_string())
        .args(args(list));
    Run::of(cmd)
}

/// Whether the run was cut short by the crash hook (an abort, as kill -9 would), or else
/// panics unless it succeeded.
fn crashed(run: &Run) -> bool {
    match run.code {
        Some(0) => false,
        None if run.stderr().contains("CAIRN_TEST_CRASH_AFTER reached") => true,
        _ => panic!("cairn should have succeeded or been aborted by the crash hook:\n{run:?}"),
    }
}

/// `n` snapshots on consecutive days of a tree with 400 KB shared by all and a 200 KB file
/// whose content is new in each. Returns the source and each snapshot's id and tree.
fn daily_snapshots(t: &Dir, n: usize) -> (PathBuf, Vec<(String, Tree)>) {
    let src = t.join("src");
    write(src.join("shared.bin"), random_bytes(1, 400_000));
    let mut states = Vec::new();
    for i in 0..n {
        write(
            src.join("unique.bin"),
            random_bytes(100 + i as u64, 200_000),
        );
        write(src.join("note.txt"), format!("backup number {i}\n"));
        let s = t.backup(args(&[&src, &"--time", &day(i + 1)]));
        states.push((id(&s), scan(&src)));
    }
    (src, states)
}

// ---------------------------------------------------------------------------------------------
// Retention and collection

/// `prune --keep-last 3` of ten snapshots frees what only the seven others held, no more: the
/// three restore, their data still deduplicates, the forgotten data does not, and a second
/// prune has nothing left to do.
#[test]
fn prune_keep_last_frees_the_unique_data_of_forgotten_snapshots() {
    let t = setup();
    init_small_packs(&t);
    let (src, states) = daily_snapshots(&t, 10);
    let before = data_size(&t.repo());

    let report = gc_json(&t, &[&"prune", &"--keep-last", &"3"]);
    let kept: BTreeSet<String> = states[7..].iter().map(|(id, _)| id.clone()).collect();
    let gone: BTreeSet<String> = states[..7].iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(removed(&report), gone, "{report}");
    let p = prune_part(&report);
    assert_eq!(p["dry_run"], Value::Bool(false), "{report}");
    assert_eq!(num(p, "snapshots"), 3, "{report}");
    assert!(num(p, "packs_deleted") > 0, "{report}");
    assert!(num(p, "bytes_freed") > 0, "{report}");
    assert_eq!(num(p, "packs_deferred"), 0, "{report}");
    assert_eq!(p["deferred_because"], Value::Null, "{report}");

    // The repository shrank by the seven unique files (and their snapshots' few trees).
    let after = data_size(&t.repo());
    let unique = 7 * 200_000;
    let freed = before - after;
    assert!(
        (unique..unique + 64 * KIB).contains(&freed),
        "prune freed {freed} bytes of {before}, expected about {unique}: {report}"
    );
    assert!(
        num(p, "bytes_freed").abs_diff(freed) < 16 * KIB,
        "prune reports {} bytes freed, but data/ shrank by {freed}: {report}",
        num(p, "bytes_freed")
    );
    assert_eq!(snapshot_ids(&t), kept);
    for (snap, tree) in &states[7..] {
        assert_restores(&t, snap, &src, tree);
    }
    check_clean(&t);

    // Nothing is left to collect.
    let data_before = fingerprint(&t.repo().join("data"));
    let again = gc_json(&t, &[&"prune"]);
    let p = prune_part(&again);
    for k in [
        "packs_deleted",
        "bytes_freed",
        "packs_unused",
        "packs_repacked",
        "packs_deferred",
    ] {
        assert_eq!(num(p, k), 0, "{k}: {again}");
    }
    assert_unchanged(
        &data_before,
        &fingerprint(&t.repo().join("data")),
        "data/ after a second prune",
    );
    assert_eq!(snapshot_ids(&t), kept);

    // A kept snapshot's unique file still deduplicates; a forgotten one's is stored anew.
    write(t.join("probe-kept/f.bin"), random_bytes(109, 200_000));
    let s = t.backup([t.join("probe-kept")]);
    assert!(num(&s, "raw_bytes_added") < 16 * KIB, "{s}");
    write(t.join("probe-gone/f.bin"), random_bytes(100, 200_000));
    let s = t.backup([t.join("probe-gone")]);
    assert!(num(&s, "raw_bytes_added") >= 200_000, "{s}");
    check_clean(&t);
}

/// A pack whose blobs are partly used is kept while the unused share is allowed, and with
/// `--max-unused 0%` its used blobs are copied out and it is deleted.
#[test]
fn partly_used_packs_are_repacked() {
    let t = setup();
    init_small_packs(&t);
    let src = t.join("src");
    // 16 files of 100 KB: two packs of 1 MiB, each holding several files.
    for i in 0..16 {
        write(
            src.join(format!("f{i:02}.bin")),
            random_bytes(200 + i, 100_000),
        );
    }
    let first = id(&t.backup(args(&[&src, &"--time", &day(1)])));
    // Every other file goes: each pack is left about half used.
    for i in (0..16).step_by(2) {
        fs::remove_file(src.join(format!("f{i:02}.bin"))).unwrap();
    }
    write(src.join("new.bin"), random_bytes(300, 100_000));
    let second = id(&t.backup(args(&[&src, &"--time", &day(2)])));
    let second_tree = scan(&src);
    t.ok(["forget", &first]);
    assert_eq!(snapshot_ids(&t), BTreeSet::from([second.clone()]));

    // With unused space allowed, the packs stay as they are.
    let report = gc_json(&t, &[&"prune", &"--max-unused", &"1000%"]);
    let p = prune_part(&report);
    assert_eq!(num(p, "packs_repacked"), 0, "{report}");
    assert!(num(p, "bytes_unused_kept") >= 8 * 100_000, "{report}");
    let size = data_size(&t.repo());

    let report = gc_json(&t, &[&"prune", &"--max-unused", &"0%"]);
    let p = prune_part(&report);
    assert!(num(p, "packs_repacked") >= 2, "{report}");
    assert!(num(p, "blobs_repacked") >= 8, "{report}");
    assert!(num(p, "bytes_repacked") >= 8 * 100_000, "{report}");
    assert_eq!(num(p, "bytes_unused_kept"), 0, "{report}");
    assert!(
        num(p, "packs_deleted") >= num(p, "packs_repacked"),
        "{report}"
    );
    let freed = size - data_size(&t.repo());
    assert!(
        (8 * 100_000..8 * 100_000 + 32 * KIB).contains(&freed),
        "repacking freed {freed} bytes, expected about 800000: {report}"
    );

    assert_restores(&t, &second, &src, &second_tree);
    check_clean(&t);
    let again = gc_json(&t, &[&"prune", &"--max-unused", &"0%"]);
    assert_eq!(num(prune_part(&again), "packs_repacked"), 0, "{again}");
    assert_eq!(num(prune_part(&again), "packs_deleted"), 0, "{again}");
    check_clean(&t);
}

/// `--dry-run` of prune and of forget writes nothing, names the snapshots it would remove and
/// the bytes it would free; and a real prune then does exactly what the dry run predicted.
#[test]
fn dry_run_changes_nothing_and_predicts_the_prune() {
    let t = setup();
    init_small_packs(&t);
    let (_, states) = daily_snapshots(&t, 3);
    let ids: Vec<&str> = states.iter().map(|(id, _)| id.as_str()).collect();
    let before = fingerprint(&t.repo());

    let out = t.ok(["prune", "--keep-last", "1", "--dry-run"]).stdout();
    assert!(out.contains("would remove 2 snapshots"), "{out}");
    for id in &ids[..2] {
        assert!(
            out.contains(short(id)),
            "dry run does not name {id}:\n{out}"
        );
    }
    let delete = out
        .lines()
        .find(|l| l.starts_with("would delete "))
        .unwrap_or_else(|| panic!("dry run does not say what it would delete:\n{out}"));
    assert!(
        !delete.contains("would delete 0 packs") && !delete.ends_with("freeing 0 B"),
        "{out}"
    );

    let plan = gc_json(&t, &[&"prune", &"--keep-last", &"1", &"--dry-run"]);
    assert_eq!(
        removed(&plan),
        BTreeSet::from([ids[0].to_string(), ids[1].to_string()]),
        "{plan}"
    );
    let p = prune_part(&plan);
    assert_eq!(p["dry_run"], Value::Bool(true), "{plan}");
    assert!(num(p, "packs_deleted") > 0, "{plan}");
    assert!(num(p, "bytes_freed") >= 2 * 200_000, "{plan}");

    let out = t.ok(["forget", ids[0], "--dry-run"]).stdout();
    assert!(
        out.contains(&format!("would remove {}", short(ids[0]))),
        "{out}"
    );
    let out = t.ok(["forget", "--keep-last", "2", "--dry-run"]).stdout();
    assert!(out.contains("would remove 1 snapshots"), "{out}");
    assert!(out.contains(short(ids[0])), "{out}");
    let forget_plan = gc_json(&t, &[&"forget", &ids[0], &"--prune", &"--dry-run"]);
    assert_eq!(
        removed(&forget_plan),
        BTreeSet::from([ids[0].to_string()]),
        "{forget_plan}"
    );
    assert!(
        num(prune_part(&forget_plan), "bytes_freed") >= 200_000,
        "{forget_plan}"
    );

    assert_unchanged(&before, &fingerprint(&t.repo()), "the repository");
    assert_eq!(snapshot_ids(&t).len(), 3);

    let done = gc_json(&t, &[&"prune", &"--keep-last", &"1"]);
    for k in [
        "packs_deleted",
        "bytes_freed",
        "packs_repacked",
        "packs_unused",
    ] {
        assert_eq!(
            num(prune_part(&done), k),
            num(p, k),
            "{k}: the dry run predicted {plan}\nthe prune did {done}"
        );
    }
    assert_eq!(removed(&done), removed(&plan));
    check_clean(&t);
}

/// `forget ID` removes only the snapshot; prune later frees its data. Forgetting the parent
/// of an incremental snapshot loses nothing of it, since every snapshot is complete.
#[test]
fn forget_by_id_keeps_data_until_prune_and_spares_children() {
    let t = setup();
    init_small_packs(&t);
    let src = t.join("src");
    write(src.join("shared.bin"), random_bytes(1, 300_000));
    write(src.join("first-only.bin"), random_bytes(2, 200_000));
    let s1 = t.backup(args(&[&src, &"--kind", &"full", &"--time", &day(1)]));
    fs::remove_file(src.join("first-only.bin")).unwrap();
    write(src.join("later.bin"), random_bytes(3, 200_000));
    let s2 = t.backup(args(&[&src, &"--time", &day(2)]));
    assert_eq!(string(&s2, "parent"), Some(id(&s1)), "{s2}");
    let tree2 = scan(&src);
    write(src.join("note.txt"), "third\n");
    let s3 = t.backup(args(&[&src, &"--time", &day(3)]));
    assert_eq!(string(&s3, "parent"), Some(id(&s2)), "{s3}");
    let tree3 = scan(&src);

    let data = fingerprint(&t.repo().join("data"));
    let index = fingerprint(&t.repo().join("index"));
    let size = data_size(&t.repo());
    let report = gc_json(&t, &[&"forget", &short(&id(&s1))]);
    assert_eq!(removed(&report), BTreeSet::from([id(&s1)]), "{report}");
    assert_eq!(report.get("prune"), None, "forget pruned: {report}");
    assert_eq!(snapshot_ids(&t), BTreeSet::from([id(&s2), id(&s3)]));
    assert_unchanged(&data, &fingerprint(&t.repo().join("data")), "data/");
    assert_unchanged(&index, &fingerprint(&t.repo().join("index")), "index/");

    // The snapshot whose parent is gone restores, before and after its data is collected.
    assert_restores(&t, &id(&s2), &src, &tree2);
    let report = gc_json(&t, &[&"prune"]);
    let p = prune_part(&report);
    assert!(num(p, "packs_deleted") > 0, "{report}");
    assert!(num(p, "bytes_freed") >= 200_000, "{report}");
    assert!(size - data_size(&t.repo()) >= 200_000);
    assert_restores(&t, &id(&s2), &src, &tree2);
    assert_restores(&t, &id(&s3), &src, &tree3);
    check_clean(&t);

    // Forget the parent of the newest with --prune: the newest still restores.
    let report = gc_json(&t, &[&"forget", &id(&s2), &"--prune"]);
    assert_eq!(removed(&report), BTreeSet::from([id(&s2)]), "{report}");
    assert_eq!(snapshot_ids(&t), BTreeSet::from([id(&s3)]));
    assert_restores(&t, &id(&s3), &src, &tree3);
    check_clean(&t);

    // And backups go on from it.
    write(src.join("note.txt"), "fourth\n");
    let s4 = t.backup(args(&[&src, &"--time", &day(4)]));
    assert_eq!(string(&s4, "parent"), Some(id(&s3)), "{s4}");
    assert_eq!(num(&s4, "files_unchanged"), 2, "{s4}");
    assert_restores(&t, &id(&s4), &src, &scan(&src));
    check_clean(&t);
}

// ---------------------------------------------------------------------------------------------
// Interruptions

/// A prune killed at any of its storage writes leaves a repository that checks without
/// errors and restores the snapshots it keeps, and the next prune finishes the job, leaving
/// the same data as an uninterrupted prune.
#[test]
fn prune_killed_at_every_write_is_finished_by_the_next() {
    let t = setup();
    init_small_packs(&t);
    let (src, states) = daily_snapshots(&t, 6);
    let newest: BTreeSet<String> = states[3..].iter().map(|(id, _)| id.clone()).collect();
    let base = t.join("base");
    copy_dir(&t.repo(), &base);
    let fresh = || {
        copy_dir(&base, &t.repo());
        let _ = fs::remove_dir_all(t.cache());
    };
    let prune: &[&dyn AsRef<OsStr>] = &[&"prune", &"--keep-last", &"3", &"--json"];

    // The uninterrupted prune, to compare with; it must repack, so that killing it in the
    // middle of copying blobs is covered too.
    fresh();
    let reference = t.ok(args(prune)).json();
    let p = prune_part(&reference);
    assert!(num(p, "packs_repacked") > 0, "{reference}");
    let reference_size = data_size(&t.repo());
    check_clean(&t);

    let mut wrong_size = Vec::new();
    let mut writes = None;
    for n in 0..500 {
        fresh();
        let run = run_crashing(&t, n, prune);
        if !crashed(&run) {
            writes = Some(n);
            break;
        }
        eprintln!("prune killed at write {n}");
        let report = t.check();
        assert!(
            snapshot_ids(&t).is_superset(&newest),
            "prune killed at write {n} lost a kept snapshot: {report}"
        );
        for (snap, tree) in &states[3..] {
            assert_restores(&t, snap, &src, tree);
        }
        t.ok(args(prune));
        check_clean(&t);
        assert_eq!(snapshot_ids(&t), newest);
        let size = data_size(&t.repo());
        if size != reference_size {
            wrong_size.push(format!(
                "killed at write {n}: {size} bytes in data/ after the next prune, {reference_size} after an uninterrupted one"
            ));
        }
    }
    let writes = writes.expect("prune never finished");
    assert!(writes > 10, "prune made only {writes} writes: {reference}");
    assert!(
        wrong_size.is_empty(),
        "an interrupted prune left data the next one does not collect:\n  {}",
        wrong_size.join("\n  ")
    );
}

/// A backup killed at any write leaves its marker (and perhaps packs no index or snapshot
/// names). A prune on the same machine sees that the marker's process is gone and removes it;
/// while another host's backup runs (its marker present), prune defers its deletions. The next
/// backup succeeds, and once the other backup ends a prune deletes nothing a snapshot needs.
#[test]
fn backup_killed_at_every_write_then_prune() {
    let t = setup();
    init_small_packs(&t);
    let (src, states) = daily_snapshots(&t, 3);
    // 1.5 MB of new data: two data packs.
    write(src.join("big.bin"), random_bytes(400, 1_500_000));
    let base = t.join("base");
    copy_dir(&t.repo(), &base);
    // A marker this machine cannot tell the state of: a backup running on another host.
    let elsewhere = t.repo().join("locks").join("ff".repeat(32));

    let mut writes = None;
    for n in 1..100 {
        copy_dir(&base, &t.repo());
        let _ = fs::remove_dir_all(t.cache());
        let run = run_crashing(&t, n, &[&"backup", &"--json", &src]);
        if !crashed(&run) {
            writes = Some(n);
            break;
        }
        eprintln!("backup killed at write {n}");
        // Its marker, and its verdict once it had won its commit (killed at the verdict's
        // removal, the verdict alone).
        let left: Vec<Vec<u8>> = markers(&t.repo())
            .iter()
            .map(|m| fs::read(m).unwrap())
            .collect();
        assert!(
            (1..=2).contains(&left.len())
                && left
                    .iter()
                    .all(|f| f.starts_with(b"cairnmk1") || f.starts_with(b"cairnvd1")),
            "a killed backup should leave its marker or its verdict"
        );
        t.check();
        write(&elsewhere, "a backup running on another host");

        // The oldest snapshot is forgotten, so that there is something to defer.
        let report = gc_json(&t, &[&"prune", &"--keep-last", &"2"]);
        assert!(removed(&report).contains(&states[0].0), "{report}");
        let p = prune_part(&report);
        assert_eq!(num(p, "packs_deleted"), 0, "{report}");
        // While a backup runs, packs named by index files new to this client are not even
        // condemned (the backup may still depend on them); whatever is, waits.
        if num(p, "packs_deferred") > 0 {
            let why = string(p, "deferred_because").unwrap_or_default();
            assert!(why.contains("1 backup marker"), "{report}");
        }
        assert_eq!(
            markers(&t.repo()),
            vec![elsewhere.clone()],
            "prune should have removed the killed backup's marker: {report}"
        );

        let s = t.backup([&src]);
        let tree = scan(&src);
        assert_restores(&t, &id(&s), &src, &tree);
        assert_restores(&t, &states[2].0, &src, &states[2].1);
        t.check();

        // The other backup ends: the deferred packs are deleted, and nothing that the
        // snapshots need goes with them.
        fs::remove_file(&elsewhere).unwrap();
        let report = gc_json(&t, &[&"prune"]);
        let p = prune_part(&report);
        assert!(num(p, "packs_deleted") > 0, "{report}");
        assert_eq!(num(p, "packs_deferred"), 0, "{report}");
        check_clean(&t);
        assert_restores(&t, &id(&s), &src, &tree);
        assert_restores(&t, &states[2].0, &src, &states[2].1);
        let again = t.backup([&src]);
        assert!(num(&again, "raw_bytes_added") < 16 * KIB, "{again}");
        check_clean(&t);
    }
    let writes = writes.expect("backup never finished");
    assert!(writes >= 5, "the backup made only {writes} writes");
}

/// Regression: prune adopts into the index the packs that a killed backup left unindexed when
/// they hold blobs a snapshot uses; when a later backup had stored those blobs again (it could
/// not see them), both copies were kept for good, even with `--max-unused 0%`.
#[test]
fn blobs_stored_twice_are_kept_once() {
    let t = setup();
    init_small_packs(&t);
    let src = t.join("src");
    write(src.join("big.bin"), random_bytes(500, 3_000_000));
    // Its marker and two of its three data packs are written, no index file.
    let run = run_crashing(&t, 3, &[&"backup", &src]);
    assert!(
        crashed(&run),
        "the backup should have been killed:\n{run:?}"
    );
    assert!(data_size(&t.repo()) > 2_000_000);
    let s = t.backup([&src]);
    let tree = scan(&src);
    assert!(data_size(&t.repo()) > 5_000_000);
    // The killed backup's marker goes, so that prune deletes at once.
    for marker in markers(&t.repo()) {
        fs::remove_file(marker).unwrap();
    }

    let report = gc_json(&t, &[&"prune", &"--max-unused", &"0%"]);
    let size = data_size(&t.repo());
    assert!(
        size < 3_000_000 + 64 * KIB,
        "3 MB of data take {size} bytes after prune: {report}"
    );
    assert_restores(&t, &id(&s), &src, &tree);
    check_clean(&t);
}

/// Regression: a backup may write its snapshot up to COMMIT_WINDOW after its last look for
/// condemnations, so a prune can condemn the packs the snapshot uses before the snapshot exists
/// (deletion waits for the grace period). Such a snapshot was unreadable meanwhile: restore,
/// check and the next backup failed with "tree blob ... is not in the index", and so did every
/// later prune ("prune cannot tell which blobs are used"), so nothing could revive it.
///
/// The interleaving is set up by hand: the backup's snapshot file is held back, and its marker
/// left in locks/, while a prune runs from start to end; then the backup "commits".
#[test]
fn snapshot_committed_after_a_prune_condemned_its_packs_stays_usable() {
    let t = setup();
    init_small_packs(&t);
    let src = t.join("src");
    write(src.join("old.bin"), random_bytes(1, 300_000));
    t.backup(args(&[&src, &"--time", &day(1)]));
    write(src.join("new.bin"), random_bytes(2, 200_000));
    let late = id(&t.backup(args(&[&src, &"--time", &day(2)])));
    let tree = scan(&src);

    let snapshot_file = t.repo().join("snapshots").join(&late);
    let held_back = t.join("held-back-snapshot");
    fs::rename(&snapshot_file, &held_back).unwrap();
    let marker = t.repo().join("locks").join("00".repeat(32));
    write(&marker, "the late backup's marker");
    let report = gc_json(&t, &[&"prune"]);
    // Its packs are either left alone (index files new to this client, with a backup running)
    // or condemned and kept: nothing may be deleted.
    assert_eq!(
        num(prune_part(&report), "packs_deleted"),
        0,
        "prune deleted packs a running backup may need: {report}"
    );
    fs::rename(&held_back, &snapshot_file).unwrap();
    fs::remove_file(&marker).unwrap();

    assert_restores(&t, &late, &src, &tree);
    t.check();
    write(src.join("newer.txt"), "after the late backup\n");
    let next = t.backup(args(&[&src, &"--time", &day(3)]));
    assert_eq!(string(&next, "parent"), Some(late.clone()), "{next}");
    let next_tree = scan(&src);

    // With no backup running, a prune copies what the snapshots need out of the condemned
    // packs before it deletes them.
    let report = gc_json(&t, &[&"prune"]);
    assert_eq!(num(prune_part(&report), "packs_deferred"), 0, "{report}");
    check_clean(&t);
    assert_restores(&t, &late, &src, &tree);
    assert_restores(&t, &id(&next), &src, &next_tree);
}

/// Regression (simulation seed 2000170): a snapshot's blobs were indexed only in packs a
/// condemnation names, and another copy of them was in a pack no index file names, left by a
/// backup killed on another host (its verdict *fenced* waits: that process may wake and index
/// the pack). Prune kept that copy instead of reviving one, then carried out the condemnation:
/// the blobs left the index, and the snapshot did not restore ("data blob ... is lost: in no
/// pack"), for good if that process never woke.
#[test]
fn a_condemned_blob_is_revived_though_a_pack_another_process_may_index_holds_it() {
    let t = setup();
    init_small_packs(&t);
    let src = t.join("src");
    write(src.join("f.bin"), random_bytes(7, 300_000));
    let first = id(&t.backup(args(&[&src, &"--time", &day(1)])));
    let late = id(&t.backup(args(&[&src, &"--time", &day(2)])));
    let tree = scan(&src);
    // This client sees the index files before the second backup's marker below: they are not
    // the work of a session it saw running.
    gc_json(&t, &[&"prune"]);

    // The second backup is still committing (its snapshot file held back, its marker listed)
    // when the first snapshot is forgotten: the prune condemns the packs of both.
    let snapshot_file = t.repo().join("snapshots").join(&late);
    let held_back = t.join("held-back-snapshot");
    fs::rename(&snapshot_file, &held_back).unwrap();
    let marker = t.repo().join("locks").join("00".repeat(32));
    write(&marker, "the late backup's marker");
    t.ok(["forget", &first]);
    let report = gc_json(&t, &[&"prune"]);
    let p = prune_part(&report);
    assert!(num(p, "packs_unused") > 0, "{report}");
    assert_eq!(num(p, "packs_deleted"), 0, "{report}");
    fs::rename(&held_back, &snapshot_file).unwrap();
    fs::remove_file(&marker).unwrap();

    // A backup of the same files stores the blobs again (condemned packs are not in the index)
    // and is killed before an index file names its packs.
    let index_files = files_below(&t.repo().join("index")).len();
    let packs_before = files_below(&t.repo().join("data")).len();
    let base = t.join("base");
    copy_dir(&t.repo(), &base);
    let killed = (1..40).find(|&n| {
        copy_dir(&base, &t.repo());
        let _ = fs::remove_dir_all(t.cache());
        let run = run_crashing(&t, n, &[&"backup", &"--json", &src]);
        assert!(
            crashed(&run),
            "the backup finished before it wrote an index file"
        );
        files_below(&t.repo().join("data")).len() > packs_before
            && files_below(&t.repo().join("index")).len() == index_files
    });
    assert!(killed.is_some(), "no crash left a pack unindexed");
    // It ran on another host, fenced off there: it may still wake and index its pack.
    let session = [7u8; 16];
    let name = cairn_crypto::file_id_of_parts(&[b"cairn verdict ", &session]).to_hex();
    let mut fenced = b"cairnvd1\0".to_vec();
    fenced.extend(4242u32.to_le_bytes());
    fenced.extend(0u32.to_le_bytes());
    for m in markers(&t.repo()) {
        fs::remove_file(m).unwrap();
    }
    let verdict = t.repo().join("locks").join(name);
    write(&verdict, fenced);

    let report = gc_json(&t, &[&"prune"]);
    let p = prune_part(&report);
    assert!(num(p, "blobs_revived") > 0, "{report}");
    assert!(num(p, "packs_deleted") > 0, "{report}");
    assert_restores(&t, &late, &src, &tree);
    t.check();

    // Once that process is known gone, its pack is one more copy, and goes.
    fs::remove_file(&verdict).unwrap();
    let report = gc_json(&t, &[&"prune"]);
    assert!(num(prune_part(&report), "packs_deleted") > 0, "{report}");
    check_clean(&t);
    assert_restores(&t, &late, &src, &tree);
}

// ---------------------------------------------------------------------------------------------
// Concurrency

/// What the stress test's threads saw.
#[derive(Default)]
struct Journal {
    /// Each snapshot written, with the tree it was taken of.
    states: BTreeMap<String, (PathBuf, Tree)>,
    failures: Vec<String>,
    backups: usize,
    prunes: usize,
    packs_deleted: u64,
    packs_deferred_runs: usize,
}

/// Rewrites part of a host's source: one of four files gets content from a small pool shared
/// by both hosts (so a backup often finds blobs that a forgotten snapshot of the other host
/// stored, in packs prune is about to condemn), and a counter changes.
fn mutate(src: &Path, host: u64, round: u64) {
    let seed = (round * 7 + host * 3) % 10;
    let file = src.join(format!("part-{}.bin", round % 4));
    write(
        &file,
        random_bytes(1000 + seed, 60_000 + seed as usize * 10_000),
    );
    write(
        src.join("counter.txt"),
        format!("host {host} round {round}\n"),
    );
    if round % 5 == 0 {
        let _ = fs::remove_file(src.join(format!("part-{}.bin", (round + 2) % 4)));
    }
}

/// Two hosts back up in loops while a third process prunes in a loop, for CAIRN_STRESS_SECS
/// seconds (12 unless set): every backup and prune succeeds, the repository checks clean, and
/// every snapshot left restores the tree it was taken of.
#[test]
fn backups_from_two_hosts_while_prune_loops() {
    let secs = std::env::var("CAIRN_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    let t = setup();
    init_small_packs(&t);
    let journal = Mutex::new(Journal::default());
    let stop = AtomicBool::new(false);
    let deadline = Instant::now() + Duration::from_secs(secs);

    std::thread::scope(|scope| {
        for host in 0..2u64 {
            let (t, journal, stop) = (&t, &journal, &stop);
            scope.spawn(move || {
                let name = ["a", "b"][host as usize];
                let src = t.join(format!("src-{name}"));
                write(src.join("common.bin"), random_bytes(7, 200_000));
                let mut round = 0;
                while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                    mutate(&src, host, round);
                    let tree = scan(&src);
                    let mut cmd = t.command();
                    cmd.env("CAIRN_CACHE_DIR", t.join(format!("cache-{name}")))
                        .args(args(&[&"backup", &"--json", &"--host", &name, &src]));
                    let run = Run::of(cmd);
                    let mut j = journal.lock().unwrap();
                    j.backups += 1;
                    if run.code == Some(0) {
                        j.states.insert(id(&run.json()), (src.clone(), tree));
                    } else {
                        j.failures
                            .push(format!("backup of host {name}, round {round}:\n{run:?}"));
                        stop.store(true, Ordering::SeqCst);
                    }
                    round += 1;
                }
            });
        }
        let (t, journal, stop) = (&t, &journal, &stop);
        scope.spawn(move || {
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                let mut cmd = t.command();
                cmd.env("CAIRN_CACHE_DIR", t.join("cache-prune")).args([
                    "prune",
                    "--keep-last",
                    "2",
                    "--json",
                ]);
                let run = Run::of(cmd);
                let mut j = journal.lock().unwrap();
                j.prunes += 1;
                if run.code == Some(0) {
                    let report = run.json();
                    j.packs_deleted += num(prune_part(&report), "packs_deleted");
                    if num(prune_part(&report), "packs_deferred") > 0 {
                        j.packs_deferred_runs += 1;
                    }
                } else {
                    j.failures.push(format!("prune:\n{run:?}"));
                    stop.store(true, Ordering::SeqCst);
                }
                drop(j);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
    });

    let journal = journal.into_inner().unwrap();
    eprintln!(
        "{} backups, {} prunes ({} deferring), {} packs deleted",
        journal.backups, journal.prunes, journal.packs_deferred_runs, journal.packs_deleted
    );
    if !journal.failures.is_empty() {
        let check = t.run(["check", "--json"]);
        panic!(
            "{} commands failed beside each other:\n{}\n\ncheck afterwards: {}",
            journal.failures.len(),
            journal.failures.join("\n\n"),
            check.stdout()
        );
    }
    assert!(journal.prunes > 2 && journal.backups > 4);
    let report = t.check();
    eprintln!("check after the stress: {report}");
    let left = snapshot_ids(&t);
    assert!(!left.is_empty());
    for snap in &left {
        let (src, tree) = journal
            .states
            .get(snap)
            .unwrap_or_else(|| panic!("snapshot {snap} was never written by a backup"));
        assert_restores(&t, snap, src, tree);
    }
    // Once nothing runs beside it, a prune leaves a repository that checks clean.
    t.ok(["prune", "--keep-last", "2"]);
    check_clean(&t);
}

/// Regression: temporary files of killed writers (`.tmp-*`, up to a pack each) stayed in the
/// repository forever. Prune removes those older than its grace period, and only those.
#[test]
fn prune_removes_temporaries_older_than_the_grace_period() {
    let t = setup();
    init_small_packs(&t);
    let src = t.join("src");
    write(src.join("a"), random_bytes(1, 300 * KIB as usize));
    t.backup([&src]);
    let repo = t.repo();
    let pack_dir = fs::read_dir(repo.join("data"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|d| fs::read_dir(d).unwrap().next().is_some())
        .unwrap();
    let stale = pack_dir.join(".tmp-00112233aabbccdd");
    let stale_index = repo.join("index/.tmp-0123456789abcdef");
    let fresh = repo.join("snapshots/.tmp-fedcba9876543210");
    for f in [&stale, &stale_index, &fresh] {
        write(f, random_bytes(2, 1000));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let two_days_ago = (now - 2 * 86_400) * 1_000_000_000;
    set_mtime(&stale, two_days_ago);
    set_mtime(&stale_index, two_days_ago);

    let report = gc_json(&t, &[&"prune"]);
    let prune = prune_part(&report);
    assert_eq!(num(prune, "temporaries_removed"), 2, "{report}");
    assert_eq!(num(prune, "temporary_bytes_removed"), 2000, "{report}");
    assert!(!stale.exists() && !stale_index.exists());
    assert!(
        fresh.exists(),
        "a temporary younger than --grace may be a live writer's"
    );
    check_clean(&t);
}

/// A pack cut short under its final name, as an upload killed where the store writes in place
/// leaves it (rclone 1.60 with a local or SFTP remote), that no index names: `check` only warns;
/// prune leaves it while another process may still index it, then deletes it, and nothing a
/// snapshot needs goes with it.
#[test]
fn prune_deletes_a_torn_pack_once_no_process_may_still_index_it() {
    let t = setup();
    init_small_packs(&t);
    let (src, states) = daily_snapshots(&t, 2);
    let repo = t.repo();
    let pack = files_below(&repo.join("data"))
        .into_iter()
        .max_by_key(|f| fs::metadata(f).unwrap().len())
        .unwrap();
    let bytes = fs::read(&pack).unwrap();
    let torn = repo.join("data/ab").join("ab".repeat(32));
    write(&torn, &bytes[..bytes.len() / 2]);

    let report = t.ok(["check", "--json"]).json();
    assert_eq!(report["errors"], Value::Array(vec![]), "{report}");
    assert_eq!(report["outcome"], "warning", "{report}");
    assert!(
        report["problems"].to_string().contains("packs_not_indexed"),
        "{report}"
    );

    // A marker this machine cannot tell the state of: a backup running on another host, whose
    // upload the torn pack may be.
    let elsewhere = repo.join("locks").join("ff".repeat(32));
    write(&elsewhere, "a backup running on another host");
    let report = gc_json(&t, &[&"prune"]);
    assert!(
        torn.exists(),
        "a running backup's pack was deleted: {report}"
    );
    fs::remove_file(&elsewhere).unwrap();

    let report = gc_json(&t, &[&"prune"]);
    assert!(!torn.exists(), "the torn pack outlived the prune: {report}");
    assert_eq!(num(prune_part(&report), "packs_deleted"), 1, "{report}");
    check_clean(&t);
    for (snap, tree) in &states {
        assert_restores(&t, snap, &src, tree);
    }
}
