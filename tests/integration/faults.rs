//! Faults: damage to every kind of repository file (a flipped byte in a pack, an index file, a
//! snapshot, a key file; a truncated pack; a deleted pack), each reported exactly by `check`
//! and costing exactly the files it reaches; `repair index` and `repair snapshots` and a later
//! backup and prune healing the damage; backups killed at chosen storage writes and at random
//! moments; a write that fails half-way through a backup without root; and a wrong password
//! leaving every repository file as it was, whatever the command.
//!
//! Ground truth comes from how the repositories are built, not from cairn: the damaged
//! repository of `damaged()` has one data pack per backup, and its byte flip lands, whatever the
//! order in which the pack's blobs were shuffled, inside the one blob that is larger than all
//! the others together.

use crate::util::*;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// The name of a repository file: its id, for every file but `config`.
fn name_of(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

/// Inverts one bit of the byte at `offset`.
fn flip(path: &Path, offset: usize) {
    let mut bytes = fs::read(path).unwrap();
    assert!(offset < bytes.len(), "{} is too short", path.display());
    bytes[offset] ^= 0x10;
    fs::write(path, bytes).unwrap();
}

/// The repository's files below `sub` (`data`, `index`, ...), temporary files left out.
fn listing(repo: &Path, sub: &str) -> BTreeSet<PathBuf> {
    files_below(&repo.join(sub))
        .into_iter()
        .filter(|p| !name_of(p).starts_with(".tmp-"))
        .collect()
}

/// Temporary files anywhere in the repository.
fn temporary_files(repo: &Path) -> Vec<PathBuf> {
    files_below(repo)
        .into_iter()
        .filter(|p| name_of(p).starts_with(".tmp-"))
        .collect()
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).unwrap().len()
}

/// `cairn check --json EXTRA`, whatever its outcome: the exit code and the report.
fn check_json(t: &Dir, extra: &[&str]) -> (Option<i32>, Value) {
    let mut all = vec!["check", "--json"];
    all.extend(extra);
    let run = t.run(all);
    let report = run.json();
    assert_eq!(
        report["ok"],
        Value::Bool(run.code == Some(0)),
        "check's exit code and report disagree:\n{run:?}"
    );
    (run.code, report)
}

/// `check --json EXTRA`, which must fail; returns the report.
fn check_fails(t: &Dir, extra: &[&str]) -> Value {
    let (code, report) = check_json(t, extra);
    assert_eq!(code, Some(1), "check should fail: {report}");
    assert!(!report["errors"].as_array().unwrap().is_empty(), "{report}");
    report
}

/// The errors of a check report.
fn errors(report: &Value) -> Vec<String> {
    report["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors list in {report}"))
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect()
}

/// Panics unless some error of the report contains `needle`.
#[track_caller]
fn assert_error_names(report: &Value, needle: &str) {
    assert!(
        errors(report).iter().any(|e| e.contains(needle)),
        "no error names {needle:?}: {report}"
    );
}

/// The damage report as snapshot id -> the paths it cannot restore.
fn damage(report: &Value) -> BTreeMap<String, BTreeSet<String>> {
    report["damage"]
        .as_array()
        .unwrap_or_else(|| panic!("no damage list in {report}"))
        .iter()
        .map(|d| {
            let paths = d["paths"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["path"].as_str().unwrap().to_string())
                .collect();
            (d["snapshot"].as_str().unwrap().to_string(), paths)
        })
        .collect()
}

/// The damage report expected: these snapshots, each with these paths.
fn expect(list: &[(&str, &[&Path])]) -> BTreeMap<String, BTreeSet<String>> {
    list.iter()
        .map(|(snapshot, paths)| {
            (
                snapshot.to_string(),
                paths
                    .iter()
                    .map(|p| p.to_string_lossy().into_owned())
                    .collect(),
            )
        })
        .collect()
}

/// `cairn restore SNAPSHOT --target TARGET EXTRA`, whatever its outcome.
fn restore_run(t: &Dir, snapshot: &str, target: &Path, extra: &[&dyn AsRef<OsStr>]) -> Run {
    let mut all = args(&[&"restore", &snapshot, &"--target", &target]);
    all.extend(args(extra));
    t.run(all)
}

/// `tree` without the entries at `lost` (paths relative to its root).
fn without(tree: &Tree, lost: &[&Path]) -> Tree {
    let mut out = tree.clone();
    for p in lost {
        assert!(
            out.remove(*p).is_some(),
            "{} is not in the tree",
            p.display()
        );
    }
    out
}

/// Restores a snapshot some of whose files are lost: the restore must fail (exit 1), name every
/// lost file, leave none of them in the target (not even the stale copy a test put there), and
/// restore everything else exactly.
#[track_caller]
fn assert_restore_loses_exactly(t: &Dir, snapshot: &str, src: &Path, tree: &Tree, lost: &[&Path]) {
    let target = t.join(format!("restore-damaged-{}", short(snapshot)));
    let root = restored(&target, src);
    // A wrong copy of every lost file, of the right size and time, where the restore will write:
    // the restore may not keep it as if it were complete.
    for rel in lost {
        let e = &tree[*rel];
        write(root.join(rel), vec![0u8; e.size as usize]);
        set_mtime(root.join(rel), e.mtime_ns as i64);
    }
    let run = restore_run(t, snapshot, &target, &[]).code(1);
    run.error_line();
    for rel in lost {
        let path = root.join(rel);
        assert!(
            run.stderr().contains(&*path.to_string_lossy()),
            "the restore does not name {}:\n{run:?}",
            path.display()
        );
        assert!(
            !path.exists(),
            "the restore left {} with wrong bytes",
            path.display()
        );
    }
    assert_same_tree(&without(tree, lost), &scan(&root), Compare::exact());
    fs::remove_dir_all(&target).unwrap();
}

/// Restores only `include` (paths relative to `src`) of `snapshot`: it must succeed and restore
/// exactly those files.
#[track_caller]
fn assert_restores_only(t: &Dir, snapshot: &str, src: &Path, tree: &Tree, include: &[&Path]) {
    let target = t.join(format!("restore-some-{}", short(snapshot)));
    let mut extra: Vec<OsString> = Vec::new();
    for rel in include {
        extra.push("--include".into());
        extra.push(src.join(rel).into_os_string());
    }
    let extra: Vec<&dyn AsRef<OsStr>> = extra.iter().map(|a| a as &dyn AsRef<OsStr>).collect();
    restore_run(t, snapshot, &target, &extra).success();
    let got = scan(&restored(&target, src));
    let files: BTreeSet<&Path> = got
        .iter()
        .filter(|(_, e)| e.kind == Kind::File)
        .map(|(p, _)| p.as_path())
        .collect();
    assert_eq!(files, include.iter().copied().collect(), "files restored");
    let pick = |tree: &Tree| -> Tree {
        include
            .iter()
            .map(|p| (p.to_path_buf(), tree[*p].clone()))
            .collect()
    };
    let how = Compare {
        hardlinks: false,
        ..Compare::exact()
    };
    assert_same_tree(&pick(tree), &pick(&got), how);
    fs::remove_dir_all(&target).unwrap();
}

// ---------------------------------------------------------------------------------------------
// A repository to damage

/// Where a byte flip always lands inside `sub/victim.bin`'s blob in the first backup's data
/// pack: the pack holds the blobs of `keep.txt`, `small1.bin`, `sub/small2.bin` (together under
/// 41 KB stored) and the victim (400,041 bytes stored) in a random order, so the victim starts
/// at most at byte 41,000 and ends at least at byte 400,041.
const VICTIM_OFFSET: usize = 200_000;

const KEEP: &str = "keep.txt";
const SMALL1: &str = "small1.bin";
const SMALL2: &str = "sub/small2.bin";
const VICTIM: &str = "sub/victim.bin";
const LATER: &str = "later.bin";

/// Three snapshots in a repository of 1 MiB packs, and which files each backup added.
struct Damaged {
    t: Dir,
    src: PathBuf,
    other: PathBuf,
    /// `src` with `keep.txt`, `small1.bin`, `sub/small2.bin`, `sub/victim.bin` (one chunk each,
    /// all in `first_pack`).
    first: (String, Tree),
    /// `src` with `later.bin` added (alone in `later_pack`).
    second: (String, Tree),
    /// `other`, which shares nothing with `src`.
    third: (String, Tree),
    first_pack: PathBuf,
    later_pack: PathBuf,
    /// The index file and snapshot file each backup wrote.
    index_files: [PathBuf; 3],
    snapshot_files: [PathBuf; 3],
}

/// What one backup added to the repository: (the largest new pack, the new index file, the
/// new snapshot file).
fn backup_adding(t: &Dir, source: &Path, time: &str) -> (String, PathBuf, PathBuf, PathBuf) {
    let before: Vec<_> = ["data", "index", "snapshots"]
        .iter()
        .map(|d| listing(&t.repo(), d))
        .collect();
    let s = t.backup(args(&[&source, &"--time", &time]));
    let new = |i: usize, d: &str| -> Vec<PathBuf> {
        listing(&t.repo(), d)
            .difference(&before[i])
            .cloned()
            .collect()
    };
    let packs = new(0, "data");
    let (index, snapshot) = (new(1, "index"), new(2, "snapshots"));
    assert_eq!(index.len(), 1, "a small backup writes one index file");
    assert_eq!(snapshot.len(), 1);
    assert_eq!(name_of(&snapshot[0]), id(&s));
    let data_pack = packs
        .iter()
        .max_by_key(|p| file_len(p))
        .expect("the backup wrote no pack")
        .clone();
    (id(&s), data_pack, index[0].clone(), snapshot[0].clone())
}

fn damaged() -> Damaged {
    let t = setup();
    t.init_with(&["--pack-size", "1"]);
    let (src, other) = (t.join("src"), t.join("other"));
    write(src.join(KEEP), "in every snapshot of src\n");
    write(src.join(SMALL1), random_bytes(1, 20_000));
    write(src.join(SMALL2), random_bytes(2, 20_000));
    write(src.join(VICTIM), random_bytes(3, 400_000));
    let tree1 = scan(&src);
    let (id1, first_pack, i1, s1) = backup_adding(&t, &src, "2026-03-01T10:00:00Z");
    let len = file_len(&first_pack);
    assert!(
        (440_000..450_000).contains(&len),
        "the first data pack should hold all four files: {len} bytes"
    );

    write(src.join(LATER), random_bytes(4, 300_000));
    let tree2 = scan(&src);
    let (id2, later_pack, i2, s2) = backup_adding(&t, &src, "2026-03-02T10:00:00Z");
    assert!((300_000..310_000).contains(&file_len(&later_pack)));

    write(other.join("o.bin"), random_bytes(5, 100_000));
    write(other.join("o.txt"), "another source\n");
    let tree3 = scan(&other);
    let (id3, _, i3, s3) = backup_adding(&t, &other, "2026-03-03T10:00:00Z");
    Damaged {
        t,
        src,
        other,
        first: (id1, tree1),
        second: (id2, tree2),
        third: (id3, tree3),
        first_pack,
        later_pack,
        index_files: [i1, i2, i3],
        snapshot_files: [s1, s2, s3],
    }
}

impl Damaged {
    fn at(&self, rel: &str) -> PathBuf {
        self.src.join(rel)
    }
}

// ---------------------------------------------------------------------------------------------
// Damage, file by file

#[test]
fn flipped_byte_in_a_data_pack_costs_exactly_the_file_it_held() {
    let d = damaged();
    let t = &d.t;
    let pack = name_of(&d.first_pack);
    flip(&d.first_pack, VICTIM_OFFSET);

    // Without --read-data, check reads no pack content: the structure is intact.
    let (code, report) = check_json(t, &[]);
    assert_eq!(code, Some(0), "{report}");

    let report = check_fails(t, &["--read-data"]);
    assert_error_names(&report, &format!("pack {}", short(&pack)));
    let victim = d.at(VICTIM);
    let want = expect(&[(&d.first.0, &[&victim]), (&d.second.0, &[&victim])]);
    assert_eq!(damage(&report), want, "{report}");

    // A subset finds the damage exactly when it reads the damaged pack.
    let number = u64::from_str_radix(&pack[..16], 16).unwrap();
    let part = number % 2 + 1;
    let report = check_fails(t, &["--read-data-subset", &format!("{part}/2")]);
    assert_eq!(damage(&report), want, "{report}");
    let (code, report) = check_json(t, &["--read-data-subset", &format!("{}/2", 3 - part)]);
    assert_eq!(
        code,
        Some(0),
        "the other half has no damaged pack: {report}"
    );
    assert_eq!(damage(&report), BTreeMap::new());

    // What the damage does not reach restores exactly; what it reaches is reported and absent.
    assert_restores(t, &d.third.0, &d.other, &d.third.1);
    let victim_rel = Path::new(VICTIM);
    assert_restore_loses_exactly(t, &d.second.0, &d.src, &d.second.1, &[victim_rel]);
    assert_restore_loses_exactly(t, &d.first.0, &d.src, &d.first.1, &[victim_rel]);
    assert_restores_only(
        t,
        &d.second.0,
        &d.src,
        &d.second.1,
        &[Path::new(SMALL2), Path::new(LATER), Path::new(KEEP)],
    );

    // dump of the lost file fails and writes nothing (its one chunk does not verify).
    let run = t.run(args(&[&"dump", &d.second.0, &victim])).code(1);
    run.error_line();
    assert!(run.stdout.is_empty(), "dump wrote bytes of a damaged blob");
}

#[test]
fn truncated_pack_costs_exactly_its_files() {
    let d = damaged();
    let t = &d.t;
    let pack = name_of(&d.later_pack);
    let len = file_len(&d.later_pack);
    fs::OpenOptions::new()
        .write(true)
        .open(&d.later_pack)
        .unwrap()
        .set_len(len / 2)
        .unwrap();

    // Found from the sizes alone, and the same when the packs are read.
    let later = d.at(LATER);
    let want = expect(&[(&d.second.0, &[&later])]);
    for extra in [&[][..], &["--read-data"]] {
        let report = check_fails(t, extra);
        assert_error_names(
            &report,
            &format!(
                "pack {} is truncated: expected {len} bytes, found {}",
                short(&pack),
                len / 2
            ),
        );
        assert_eq!(damage(&report), want, "{report}");
    }

    assert_restores(t, &d.first.0, &d.src, &d.first.1);
    assert_restores(t, &d.third.0, &d.other, &d.third.1);
    assert_restore_loses_exactly(t, &d.second.0, &d.src, &d.second.1, &[Path::new(LATER)]);
    assert_restores_only(
        t,
        &d.second.0,
        &d.src,
        &d.second.1,
        &[Path::new(KEEP), Path::new(VICTIM)],
    );
}

#[test]
fn deleted_pack_costs_exactly_its_files() {
    let d = damaged();
    let t = &d.t;
    let pack = name_of(&d.first_pack);
    fs::remove_file(&d.first_pack).unwrap();

    let report = check_fails(t, &[]);
    assert_error_names(&report, &format!("pack {} is missing", short(&pack)));
    let lost = [KEEP, SMALL1, SMALL2, VICTIM];
    let abs: Vec<PathBuf> = lost.iter().map(|p| d.at(p)).collect();
    let abs: Vec<&Path> = abs.iter().map(PathBuf::as_path).collect();
    let want = expect(&[(&d.first.0, &abs), (&d.second.0, &abs)]);
    assert_eq!(damage(&report), want, "{report}");

    let rel: Vec<&Path> = lost.iter().map(Path::new).collect();
    assert_restore_loses_exactly(t, &d.second.0, &d.src, &d.second.1, &rel);
    assert_restores_only(t, &d.second.0, &d.src, &d.second.1, &[Path::new(LATER)]);
    assert_restores(t, &d.third.0, &d.other, &d.third.1);
}

/// `check --json` gives each problem structured beside its line of text: a kind, and the pack,
/// snapshot, path and blob concerned in full, with the cause of each file lost. A flipped byte
/// in the first data pack and a truncated later pack give three kinds at once.
#[test]
fn check_json_gives_each_problem_structured() {
    let d = damaged();
    let t = &d.t;
    let (first_pack, later_pack) = (name_of(&d.first_pack), name_of(&d.later_pack));
    flip(&d.first_pack, VICTIM_OFFSET);
    let len = file_len(&d.later_pack);
    fs::OpenOptions::new()
        .write(true)
        .open(&d.later_pack)
        .unwrap()
        .set_len(len / 2)
        .unwrap();

    let report = check_fails(t, &["--read-data"]);
    let problems = report["problems"]
        .as_array()
        .unwrap_or_else(|| panic!("no problems list in {report}"));
    // The error lines are the errors' messages, in the same order.
    let messages: Vec<String> = problems
        .iter()
        .filter(|p| p["severity"] == "error")
        .map(|p| p["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(messages, errors(&report), "{report}");
    let of_kind =
        |kind: &str| -> Vec<&Value> { problems.iter().filter(|p| p["kind"] == kind).collect() };

    let sizes = of_kind("pack_size_mismatch");
    assert_eq!(sizes.len(), 1, "{report}");
    assert_eq!(sizes[0]["pack"], *later_pack);
    assert_eq!(num(sizes[0], "expected"), len);
    assert_eq!(num(sizes[0], "found"), len / 2);

    let blobs = of_kind("blob_damaged");
    assert_eq!(blobs.len(), 1, "{report}");
    assert_eq!(blobs[0]["pack"], *first_pack);
    assert_eq!(blobs[0]["blob_type"], "data");
    let victim_blob = blobs[0]["blob"].as_str().unwrap();
    assert_eq!(victim_blob.len(), 64, "a blob id in full: {report}");

    // The victim's directory is shared by both snapshots of src and is checked once, under
    // whichever snapshot comes first; later.bin is only in the second.
    let lost = of_kind("content_lost");
    let by_path: BTreeMap<String, &Value> = lost
        .iter()
        .map(|p| (p["path"].as_str().unwrap().to_string(), *p))
        .collect();
    let (victim, later) = (d.at(VICTIM), d.at(LATER));
    let (victim, later) = (victim.to_str().unwrap(), later.to_str().unwrap());
    assert_eq!(
        by_path.keys().map(String::as_str).collect::<Vec<_>>(),
        [later, victim],
        "{report}"
    );
    let v = by_path[victim];
    assert!(
        v["snapshot"] == *d.first.0 || v["snapshot"] == *d.second.0,
        "{v}"
    );
    assert_eq!(v["cause"], "blob_damaged");
    assert_eq!(v["blob"], *victim_blob);
    assert_eq!(v["pack"], *first_pack);
    let l = by_path[later];
    assert_eq!(l["snapshot"], *d.second.0);
    assert_eq!(l["cause"], "in_bad_pack");
    assert_eq!(l["pack"], *later_pack);
    assert_eq!(l["pack_problem"], "truncated");
}

/// A damaged index file hides the packs only it names: with a cold cache (another client, or
/// this one after losing its cache) the second snapshot's root tree is not in the index. Check
/// names the index file; `repair index` rebuilds the index from the packs and everything
/// restores again.
#[test]
fn damaged_index_file_is_named_and_repair_index_mends_it() {
    let d = damaged();
    let t = &d.t;
    let index = name_of(&d.index_files[1]);
    flip(&d.index_files[1], 100);

    // With the entries still in the cache as much as without them, check names the file.
    let report = check_fails(t, &[]);
    assert_error_names(&report, &format!("index file {}", short(&index)));
    fs::remove_dir_all(t.cache()).unwrap();
    let report = check_fails(t, &[]);
    assert_error_names(&report, &format!("index file {}", short(&index)));
    let want = expect(&[(&d.second.0, &[Path::new("/")])]);
    assert_eq!(damage(&report), want, "{report}");

    assert_restores(t, &d.first.0, &d.src, &d.first.1);
    assert_restores(t, &d.third.0, &d.other, &d.third.1);
    let target = t.join("restore-lost-root");
    restore_run(t, &d.second.0, &target, &[])
        .failure()
        .error_line();
    assert!(
        !target.exists() || files_below(&target).is_empty(),
        "a restore of a snapshot without its root tree wrote files"
    );

    let before = listing(&t.repo(), "index");
    let run = t.ok(["repair", "index"]);
    assert!(
        run.stdout().contains("indexed 6 of 6 packs"),
        "every pack's header opens:\n{run:?}"
    );
    let after = listing(&t.repo(), "index");
    assert!(
        !after.contains(&d.index_files[1]),
        "repair index kept the damaged index file"
    );
    assert!(
        after.is_disjoint(&before),
        "old index files remain: {after:?}"
    );
    t.check();
    fs::remove_dir_all(t.cache()).unwrap();
    t.check();
    assert_restores(t, &d.second.0, &d.src, &d.second.1);
}

/// Regression: restore stopped at the first tree that is not in the index ("tree blob ... is
/// not in the index", naming no path), restoring nothing, even with `--include` of a file the
/// damage does not reach, while check reported only the paths below the lost directory.
///
/// A lost directory listing costs what is below it, no more: the first backup's index file is
/// damaged (and the cache cold), so the second snapshot's `sub` tree, which it shares with the
/// first, and the data of the first backup's files are not in the index; `later.bin` is. A
/// restore of the second snapshot restores `later.bin`, names what it cannot restore, and
/// leaves no wrong bytes.
#[test]
fn lost_directory_costs_only_what_is_below_it() {
    let d = damaged();
    let t = &d.t;
    flip(&d.index_files[0], 100);
    fs::remove_dir_all(t.cache()).unwrap();

    let report = check_fails(t, &[]);
    let (keep, small1, sub) = (d.at(KEEP), d.at(SMALL1), d.at("sub"));
    let want = expect(&[
        (&d.first.0, &[Path::new("/")]),
        (&d.second.0, &[&keep, &small1, &sub]),
    ]);
    assert_eq!(damage(&report), want, "{report}");
    assert_restores(t, &d.third.0, &d.other, &d.third.1);

    let target = t.join("restore-lost-dir");
    let run = restore_run(t, &d.second.0, &target, &[]).code(1);
    run.error_line();
    let root = restored(&target, &d.src);
    for lost in [KEEP, SMALL1, "sub"] {
        let path = root.join(lost);
        assert!(
            run.stderr().contains(&*path.to_string_lossy()),
            "the restore does not name {}:\n{run:?}",
            path.display()
        );
    }
    let got = scan(&root);
    let files: BTreeSet<&Path> = got
        .iter()
        .filter(|(_, e)| e.kind != Kind::Dir)
        .map(|(p, _)| p.as_path())
        .collect();
    assert_eq!(files, [Path::new(LATER)].into(), "{run:?}");
    assert_eq!(
        got[Path::new(LATER)].content,
        d.second.1[Path::new(LATER)].content
    );
    // Restoring only an unaffected file is no error at all.
    assert_restores_only(t, &d.second.0, &d.src, &d.second.1, &[Path::new(LATER)]);
}

/// Regression: one snapshot file that did not match its name made `snapshots`, the restore of
/// any other snapshot, `backup` (which lists snapshots to find its parent), `forget` (of that
/// very snapshot too), `prune` and `repair snapshots` fail with "snapshot ... does not match its
/// name"; only check coped.
///
/// A damaged snapshot file costs that snapshot and nothing else: the others list, restore and
/// serve as parents, and the damaged one can be forgotten.
#[test]
fn damaged_snapshot_file_costs_only_that_snapshot() {
    let d = damaged();
    let t = &d.t;
    flip(&d.snapshot_files[0], 100);

    let report = check_fails(t, &[]);
    let errs = errors(&report);
    assert_eq!(errs.len(), 1, "{report}");
    assert!(
        errs[0].contains(&format!("snapshot {}", short(&d.first.0))),
        "{report}"
    );
    assert_eq!(damage(&report), BTreeMap::new(), "{report}");

    assert_restores(t, &d.second.0, &d.src, &d.second.1);
    assert_restores(t, &d.third.0, &d.other, &d.third.1);
    let listed: BTreeSet<String> = t
        .snapshots()
        .iter()
        .map(|s| string(s, "id").unwrap())
        .collect();
    assert_eq!(
        listed,
        [d.second.0.clone(), d.third.0.clone()].into(),
        "snapshots should list the intact ones"
    );
    write(d.src.join("new.txt"), "after the damage\n");
    let s = t.backup([&d.src]);
    assert_restores(t, &id(&s), &d.src, &scan(&d.src));
    t.ok(["forget", &d.first.0]);
    assert!(!d.snapshot_files[0].exists());
    t.check();
}

/// With the only key file damaged, every command fails with one line naming the key file, exit
/// code 1 (not the wrong-password 12), and changes nothing. `cairn` has no command that adds a
/// second key file.
#[test]
fn damaged_key_file_is_named_and_nothing_changes() {
    let d = damaged();
    let t = &d.t;
    let keys = listing(&t.repo(), "keys");
    assert_eq!(keys.len(), 1);
    let key = keys.into_iter().next().unwrap();
    let pristine = fs::read(&key).unwrap();

    // A flipped byte in the sealed key set, then in the header: the file no longer matches its
    // name. Then a header made invalid (iterations 0) and the file renamed to its new hash, as a
    // careless tool would leave it: the header is refused before any key derivation.
    let iterations_at = 8 + 4 + 1 + 4;
    let cases: [(usize, bool, &str); 3] = [
        (pristine.len() - 20, false, "does not match its name"),
        (30, false, "does not match its name"),
        (iterations_at, true, "argon2id"),
    ];
    let target = t.join("restore");
    for (offset, rename, problem) in cases {
        let mut bytes = pristine.clone();
        if rename {
            bytes[offset..offset + 4].copy_from_slice(&0u32.to_le_bytes());
        } else {
            bytes[offset] ^= 0x01;
        }
        for k in listing(&t.repo(), "keys") {
            fs::remove_file(k).unwrap();
        }
        let path = if rename {
            let tmp = t.join("key");
            fs::write(&tmp, &bytes).unwrap();
            let out = Command::new("sha256sum").arg(&tmp).output().unwrap();
            let hash = String::from_utf8_lossy(&out.stdout)[..64].to_string();
            fs::remove_file(&tmp).unwrap();
            t.repo().join("keys").join(hash)
        } else {
            key.clone()
        };
        fs::write(&path, &bytes).unwrap();
        let name = name_of(&path);
        let before = fingerprint(&t.repo());
        let runs: [Vec<OsString>; 5] = [
            args(&[&"snapshots"]),
            args(&[&"check"]),
            args(&[&"backup", &d.src]),
            args(&[&"restore", &"latest", &"--target", &target]),
            args(&[&"repair", &"index"]),
        ];
        for a in runs {
            let run = t.run(&a).code(1);
            let line = run.error_line();
            assert!(
                line.contains(&format!("key file {}", short(&name))) && line.contains(problem),
                "the error should name key file {} and say {problem:?}:\n{run:?}",
                short(&name)
            );
            assert_unchanged(&before, &fingerprint(&t.repo()), "the repository");
        }
        assert!(!target.exists());
    }

    // The original key file back: everything is as it was.
    for k in listing(&t.repo(), "keys") {
        fs::remove_file(k).unwrap();
    }
    fs::write(&key, &pristine).unwrap();
    t.check();
    assert_restores(t, &d.first.0, &d.src, &d.first.1);
}

// ---------------------------------------------------------------------------------------------
// Repair

#[test]
fn repair_index_rebuilds_a_lost_index() {
    let d = damaged();
    let t = &d.t;
    for f in listing(&t.repo(), "index") {
        fs::remove_file(f).unwrap();
    }
    fs::remove_dir_all(t.cache()).unwrap();
    let report = check_fails(t, &[]);
    let root = [Path::new("/")];
    let want = expect(&[
        (&d.first.0, &root),
        (&d.second.0, &root),
        (&d.third.0, &root),
    ]);
    assert_eq!(damage(&report), want, "{report}");

    let run = t.ok(["repair", "index"]);
    assert!(run.stdout().contains("indexed 6 of 6 packs"), "{run:?}");
    assert_eq!(listing(&t.repo(), "index").len(), 1);
    let report = t.check();
    assert_eq!(report["warnings"], Value::Array(vec![]), "{report}");
    fs::remove_dir_all(t.cache()).unwrap();
    t.check();
    assert_restores(t, &d.first.0, &d.src, &d.first.1);
    assert_restores(t, &d.second.0, &d.src, &d.second.1);
    assert_restores(t, &d.third.0, &d.other, &d.third.1);
}

/// A flipped byte in a data pack, mended end to end: `repair index --read-data` drops the
/// damaged blob from the index, `repair snapshots` saves each damaged snapshot again without the
/// lost file (tagged `repaired`), a new backup of the same source stores the blob again (which
/// makes the originals whole), and prune repacks the damaged pack's good blobs away from it.
#[test]
fn repair_then_backup_then_prune_heals_a_damaged_pack() {
    let d = damaged();
    let t = &d.t;
    flip(&d.first_pack, VICTIM_OFFSET);
    let victim = d.at(VICTIM);
    let originals = expect(&[(&d.first.0, &[&victim]), (&d.second.0, &[&victim])]);

    let run = t.ok(["repair", "index", "--read-data"]);
    assert!(run.stdout().contains("1 damaged blobs left out"), "{run:?}");
    // The blob is now missing from the index: check finds it without reading data.
    let report = check_fails(t, &[]);
    assert_eq!(damage(&report), originals, "{report}");

    // A dry run reports the same and writes nothing.
    let before = fingerprint(&t.repo());
    let dry = t.ok(["repair", "snapshots", "--dry-run", "--json"]).json();
    assert_unchanged(&before, &fingerprint(&t.repo()), "the repository");
    let repaired = t.ok(["repair", "snapshots", "--json"]).json();
    for report in [&dry, &repaired] {
        let lost: BTreeMap<String, BTreeSet<String>> = report
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let paths = r["lost"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p["path"].as_str().unwrap().to_string())
                    .collect();
                (r["original"].as_str().unwrap().to_string(), paths)
            })
            .collect();
        assert_eq!(lost, originals, "{report}");
    }
    assert!(dry
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["repaired"].is_null()));
    let new_ids: BTreeMap<String, String> = repaired
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["original"].as_str().unwrap().to_string(),
                r["repaired"].as_str().unwrap().to_string(),
            )
        })
        .collect();

    // The repaired snapshots: tagged, same time and paths, restorable without the victim.
    let snaps = t.snapshots();
    assert_eq!(snaps.len(), 5);
    for (original, tree) in [&d.first, &d.second] {
        let new = &new_ids[original];
        let by_id = |id: &str| snaps.iter().find(|s| s["id"] == id).unwrap().clone();
        let (o, n) = (by_id(original), by_id(new));
        assert_eq!(n["time"], o["time"]);
        assert_eq!(n["paths"], o["paths"]);
        assert!(
            n["tags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t == "repaired"),
            "{n}"
        );
        let expected = without(tree, &[Path::new(VICTIM)]);
        assert_restores(t, new, &d.src, &expected);
    }
    // Check is clean but for the originals' damage.
    let report = check_fails(t, &[]);
    assert_eq!(damage(&report), originals, "{report}");

    // A new backup of the same source stores the victim again: no snapshot is damaged. The
    // damaged pack is condemned, so the other files it held are stored again too, rather than
    // deduplicated against a pack about to go.
    let s = t.backup([&d.src]);
    assert!(
        (440_000..460_000).contains(&num(&s, "bytes_added")),
        "the backup should store the damaged pack's files again, and only them: {s}"
    );
    let (code, report) = check_json(t, &[]);
    assert_eq!(code, Some(0), "{report}");
    // The damaged pack is still there, and still fails its read.
    let report = check_fails(t, &["--read-data"]);
    assert_eq!(damage(&report), BTreeMap::new(), "{report}");
    assert_error_names(&report, &format!("pack {}", short(&name_of(&d.first_pack))));

    // Prune repacks the damaged pack's good blobs and deletes it, whatever --max-unused says.
    t.ok(["prune", "--max-unused", "1000%"]);
    assert!(!d.first_pack.exists(), "prune kept the damaged pack");
    let report = t.check();
    assert_eq!(report["warnings"], Value::Array(vec![]), "{report}");
    assert_eq!(report["damage"], Value::Array(vec![]), "{report}");
    for (id, tree) in [&d.first, &d.second] {
        assert_restores(t, id, &d.src, tree);
    }
    assert_restores(t, &id(&s), &d.src, &d.second.1);
    assert_restores(t, &d.third.0, &d.other, &d.third.1);
}

/// The packs below `data/`, by name.
fn pack_names(t: &Dir) -> BTreeSet<String> {
    listing(&t.repo(), "data")
        .iter()
        .map(|p| name_of(p))
        .collect()
}

/// Regression: a flipped byte in a pack's header or length trailer left every blob intact and
/// every snapshot restorable, but `repair index` then left the pack out ("header ... failed
/// authentication") and the snapshots lost every file with data in it. Repair keeps the old
/// index entries of blobs that verify; check names the files the damaged header affects and
/// records the pack, and prune moves its blobs to a sound pack.
#[test]
fn damaged_pack_header_or_trailer_loses_nothing() {
    for (from_end, check_first) in [(1usize, false), (20, false), (1, true), (20, true)] {
        let d = damaged();
        let t = &d.t;
        let pack = name_of(&d.first_pack);
        let len = file_len(&d.first_pack) as usize;
        flip(&d.first_pack, len - from_end);

        if !check_first {
            // Repair first: the old index locates the blobs the header no longer does.
            let run = t.ok(["repair", "index"]);
            assert!(run.stderr().contains(short(&pack)), "{run:?}");
            for (id, tree) in [&d.first, &d.second] {
                assert_restores(t, id, &d.src, tree);
            }
        }
        let report = check_fails(t, &["--read-data"]);
        assert_error_names(&report, &format!("pack {}", short(&pack)));
        assert_eq!(
            damage(&report),
            BTreeMap::new(),
            "no blob is damaged: {report}"
        );
        let at_risk = report["in_damaged_packs"].to_string();
        for f in [KEEP, SMALL1, SMALL2, VICTIM] {
            assert!(
                at_risk.contains(&*d.at(f).to_string_lossy()),
                "{f}: {report}"
            );
        }
        assert!(!at_risk.contains(LATER), "{report}");
        // Recorded by whichever of check and repair saw it first.
        let recorded = if check_first {
            vec![pack.clone()]
        } else {
            vec![]
        };
        assert_eq!(
            report["packs_recorded"],
            serde_json::json!(recorded),
            "{report}"
        );
        t.ok(["repair", "index"]);
        for (id, tree) in [&d.first, &d.second] {
            assert_restores(t, id, &d.src, tree);
        }

        t.ok(["prune"]);
        assert!(
            !pack_names(t).contains(&pack),
            "prune kept the damaged pack"
        );
        let report = t.check();
        assert_eq!(report["damage"], Value::Array(vec![]), "{report}");
        for (id, tree) in [&d.first, &d.second] {
            assert_restores(t, id, &d.src, tree);
        }
    }
}

/// Regression: after `check --read-data` found a damaged blob in a pack that still existed,
/// `repair snapshots` said "0 snapshots needed repair" and every later backup, even a full one,
/// deduplicated against the damaged blob, so the damage was never healed; prune dropped the
/// damaged copy only with --max-unused 0. What check finds is recorded: repair snapshots sees
/// it, the next backup stores the content again, and prune drops the damaged pack.
#[test]
fn damage_that_check_finds_is_healed_by_the_next_backup_and_prune() {
    let d = damaged();
    let t = &d.t;
    let pack = name_of(&d.first_pack);
    flip(&d.first_pack, VICTIM_OFFSET);
    let victim = d.at(VICTIM);
    let originals = expect(&[(&d.first.0, &[&victim]), (&d.second.0, &[&victim])]);
    let report = check_fails(t, &["--read-data"]);
    assert_eq!(damage(&report), originals, "{report}");
    assert_eq!(
        report["packs_recorded"],
        serde_json::json!([pack]),
        "{report}"
    );

    let dry = t.ok(["repair", "snapshots", "--dry-run", "--json"]).json();
    let repaired: BTreeSet<&str> = dry
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["original"].as_str().unwrap())
        .collect();
    assert_eq!(
        repaired,
        BTreeSet::from([d.first.0.as_str(), d.second.0.as_str()]),
        "{dry}"
    );

    let s = t
        .backup_run(["--kind", "full", d.src.to_str().unwrap()])
        .json();
    assert!(
        num(&s, "bytes_added") >= 400_000,
        "the full backup deduplicated against the damaged blob: {s}"
    );
    // The originals are whole again: their victim is read from the new copy.
    for (id, tree) in [&d.first, &d.second] {
        assert_restores(t, id, &d.src, tree);
    }
    t.ok(["prune"]);
    assert!(
        !pack_names(t).contains(&pack),
        "prune kept the damaged pack"
    );
    let report = t.check();
    assert_eq!(report["damage"], Value::Array(vec![]), "{report}");
    assert_eq!(report["errors"], Value::Array(vec![]), "{report}");
}

// ---------------------------------------------------------------------------------------------
// Killed backups

/// `cairn backup --json SRC` that aborts at its (n+1)-th storage write.
fn backup_crashing(t: &Dir, n: u64, src: &Path) -> Run {
    let mut cmd = t.command();
    cmd.env("CAIRN_TEST_CRASH_AFTER", n.to_string())
        .args(args(&[&"backup", &"--json", &src]));
    Run::of(cmd)
}

/// Whether the crash hook aborted the run (as kill -9 would); panics on any other failure.
fn aborted_by_hook(run: &Run) -> bool {
    match run.code {
        Some(0) => false,
        None if run.stderr().contains("CAIRN_TEST_CRASH_AFTER reached") => true,
        _ => panic!("cairn should have succeeded or been aborted by the crash hook:\n{run:?}"),
    }
}

/// A backup killed at a spread of storage writes, up to its last: each time the repository
/// checks clean, and the next backup completes, restores exactly and stores again only what
/// the killed one left unindexed.
#[test]
fn backup_killed_at_a_spread_of_writes_is_completed_by_the_next() {
    let t = setup();
    // Small packs and chunks: a dozen data packs, so that an index file (written every 8
    // packs) is durable long before the backup ends.
    t.init_with(&["--pack-size", "1", "--chunk-size", "256"]);
    let src = t.join("src");
    for i in 0..12u64 {
        write(
            src.join(format!("d{}/f{i:02}.bin", i % 3)),
            random_bytes(100 + i, 1_000_000),
        );
    }
    write(src.join("note.txt"), "a small file\n");
    let tree = scan(&src);
    let base = t.join("base");
    copy_dir(&t.repo(), &base);

    // The writes of a whole backup: its files, its marker created and removed, and its
    // verdict created and removed.
    let full = t.backup([&src]);
    let full_bytes = num(&full, "bytes_added");
    let writes = ["data", "index", "snapshots"]
        .iter()
        .map(|d| listing(&t.repo(), d).len() as u64)
        .sum::<u64>()
        + 4;
    assert!(writes >= 15, "expected a dozen packs: {writes} writes");

    let mut spread: Vec<u64> = vec![
        0,
        1,
        2,
        writes / 3,
        writes / 2,
        writes / 2 + 1,
        writes * 2 / 3,
        writes - 4,
        writes - 2,
        writes - 1,
    ];
    spread.dedup();
    let mut reused = 0;
    for n in spread {
        copy_dir(&base, &t.repo());
        let _ = fs::remove_dir_all(t.cache());
        let run = backup_crashing(&t, n, &src);
        if !aborted_by_hook(&run) {
            // Pack boundaries depend on how threads interleave, so the count may differ by a
            // write or two from the reference backup's.
            assert!(
                n + 3 >= writes,
                "backup finished within {n} of {writes} writes"
            );
            continue;
        }
        // Killed after its snapshot (at the removal of its marker or verdict), a backup is
        // complete.
        let left = listing(&t.repo(), "snapshots");
        assert!(
            left.len() <= 1,
            "a backup killed at write {n} left {left:?}"
        );
        let indexed = !listing(&t.repo(), "index").is_empty();
        t.check();
        if let Some(snapshot) = left.first() {
            assert_restores(&t, &name_of(snapshot), &src, &tree);
        }

        let next = t.backup([&src]);
        let added = num(&next, "bytes_added");
        if indexed {
            // The packs the killed backup indexed are found again.
            assert!(
                added < full_bytes,
                "after a kill at write {n} the next backup stored everything again: {next}"
            );
            reused += 1;
        } else {
            assert!(added <= full_bytes + 4096, "{next}");
        }
        assert_restores(&t, &id(&next), &src, &tree);
        t.check();
    }
    assert!(
        reused >= 3,
        "too few kills came after an index file: {reused}"
    );
}

/// A real backup of 60 MiB killed with SIGKILL after a random delay (seeded), a few times: each
/// time the repository checks clean, and the next backup completes and restores exactly.
#[test]
fn backup_killed_at_random_moments_leaves_a_usable_repository() {
    let mut t = setup();
    let src = t.join("src");
    for i in 0..30u64 {
        write(
            src.join(format!("d{}/f{i:02}.bin", i % 4)),
            random_bytes(200 + i, 2 << 20),
        );
    }
    write(src.join("note.txt"), "sixty MiB of random data\n");
    let tree = scan(&src);

    // How long a whole backup takes here, so that the kills fall within one.
    t.set_repo(t.join("repo-reference"));
    t.init_with(&["--pack-size", "1"]);
    let started = Instant::now();
    t.backup([&src]);
    let whole = started.elapsed();

    let mut rng = rand::rngs::StdRng::seed_from_u64(0xdead_beef);
    let mut killed = 0;
    for i in 0..3 {
        t.set_repo(t.join(format!("repo-{i}")));
        t.init_with(&["--pack-size", "1"]);
        let delay = whole.mul_f64(rng.gen_range(0.05..0.8));
        let mut cmd = t.command();
        cmd.args(args(&[&"backup", &src]))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            killed += 1;
        } else {
            eprintln!("note: the backup finished within {delay:?}, before it could be killed");
        }
        child.wait().unwrap();

        t.check();
        let snapshots = listing(&t.repo(), "snapshots").len();
        let s = t.backup([&src]);
        assert_eq!(listing(&t.repo(), "snapshots").len(), snapshots + 1);
        assert_restores(&t, &id(&s), &src, &tree);
        t.check();
    }
    assert!(
        killed > 0,
        "no backup was killed: each took less than {whole:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// A write that fails

/// `cairn ARGS` with its file size limited (RLIMIT_FSIZE) and SIGXFSZ ignored, so that a write
/// beyond the limit fails with EFBIG, as a full disk fails a write with ENOSPC.
fn run_with_file_size_limit(t: &Dir, blocks: u64, list: &[&dyn AsRef<OsStr>]) -> Run {
    let base = t.command();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f {blocks}; exec \"$0\" \"$@\""
        ))
        .arg(base.get_program())
        .args(args(list));
    for (k, v) in base.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.current_dir(t.path()).stdin(Stdio::null());
    Run::of(cmd)
}

/// diskfull.rs needs a small file system mounted, which only root can do; this needs no
/// privilege. A pack write that fails half-way (the 16 MiB pack exceeds the limit; the index
/// cache stays below it) fails the backup with one line naming the pack, leaves no temporary
/// file, no marker and no snapshot, and the repository checks clean and restores.
#[test]
fn failed_pack_write_fails_the_backup_cleanly_without_privileges() {
    // 12,288 blocks: 6 MiB where `ulimit -f` counts 512-byte blocks (POSIX, dash), 12 MiB where
    // it counts KiB (bash); both below a 16 MiB pack, and above the index cache's few MiB.
    const LIMIT: u64 = 12_288;
    let t = setup();
    t.init();
    let src = t.join("src");
    write(src.join("small.txt"), "a small file\n");
    write(src.join("sub/data.bin"), random_bytes(7, 50_000));
    let run = run_with_file_size_limit(&t, LIMIT, &[&"backup", &"--json", &src]).success();
    let first = id(&run.json());
    let tree = scan(&src);

    write(src.join("big.bin"), random_bytes(8, 20 << 20));
    let run = run_with_file_size_limit(&t, LIMIT, &[&"backup", &src]).code(1);
    let line = run.error_line();
    assert!(
        line.contains("cannot store pack"),
        "the error should name the pack it could not store:\n{run:?}"
    );
    assert_eq!(listing(&t.repo(), "snapshots").len(), 1);
    assert_eq!(temporary_files(&t.repo()), Vec::<PathBuf>::new());
    assert!(
        listing(&t.repo(), "locks").is_empty(),
        "the failed backup left its marker"
    );
    let report = t.check();
    assert_eq!(report["warnings"], Value::Array(vec![]), "{report}");
    assert_restores(&t, &first, &src, &tree);

    // Without the big file, a backup under the same limit works.
    fs::remove_file(src.join("big.bin")).unwrap();
    let run = run_with_file_size_limit(&t, LIMIT, &[&"backup", &"--json", &src]).success();
    assert_restores(&t, &id(&run.json()), &src, &scan(&src));
    t.check();
}

// ---------------------------------------------------------------------------------------------
// Wrong password

/// errors.rs shows a wrong password changes nothing for snapshots, backup, restore and ls in a
/// tidy repository. Here every command that writes or deletes, and check, in a repository that
/// has work for them: snapshots to forget, unused data to prune, and what a killed backup left
/// (its marker, unindexed packs). Each exits 12 and changes no repository file.
#[test]
fn wrong_password_changes_no_repository_file_in_any_command() {
    let t = setup();
    t.init_with(&["--pack-size", "1"]);
    let src = t.join("src");
    write(src.join("a.bin"), random_bytes(1, 200_000));
    let first = id(&t.backup(args(&[&src, &"--time", &"2026-03-01T10:00:00Z"])));
    write(src.join("a.bin"), random_bytes(2, 200_000));
    t.backup(args(&[&src, &"--time", &"2026-03-02T10:00:00Z"]));
    write(src.join("b.bin"), random_bytes(3, 3 << 20));
    assert!(aborted_by_hook(&backup_crashing(&t, 3, &src)));
    assert_eq!(
        listing(&t.repo(), "locks").len(),
        1,
        "the killed backup's marker"
    );

    let before = fingerprint(&t.repo());
    let wrong = "not the password";
    let target = t.join("restore");
    let runs: Vec<Vec<OsString>> = vec![
        args(&[&"backup", &src]),
        args(&[&"restore", &"latest", &"--target", &target]),
        args(&[&"prune"]),
        args(&[&"prune", &"--keep-last", &"1", &"--max-unused", &"0%"]),
        args(&[&"forget", &first]),
        args(&[&"forget", &"--keep-last", &"1", &"--prune"]),
        args(&[&"check"]),
        args(&[&"check", &"--read-data"]),
        args(&[&"repair", &"index"]),
        args(&[&"repair", &"index", &"--read-data"]),
        args(&[&"repair", &"snapshots"]),
        args(&[&"repair", &"snapshots", &"--read-data"]),
    ];
    for a in runs {
        let mut cmd = t.command();
        cmd.env("CAIRN_PASSWORD", wrong).args(&a);
        let run = Run::of(cmd).code(12);
        let line = run.error_line();
        assert!(line.contains("password"), "{run:?}");
        assert!(
            !line.contains(wrong) && !line.contains(PASSWORD),
            "the message shows a password:\n{run:?}"
        );
        assert_unchanged(&before, &fingerprint(&t.repo()), "the repository");
    }
    assert!(
        !target.exists(),
        "a restore with the wrong password made its target"
    );
    // With the right password all of it is still there.
    t.check();
    assert_eq!(t.snapshots().len(), 2);
}
