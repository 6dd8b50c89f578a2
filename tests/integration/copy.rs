//! `cairn copy --to`: snapshots into a repository with another password and other keys, kept
//! as they were (time, host, tags, kind), restorable byte for byte from the copy, and copied
//! once however often copy runs.

use crate::util::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

const OTHER: &str = "the replica's own password";

/// Every file of a repository and its size: what a run that adds nothing leaves unchanged.
fn files(repo: &Path) -> BTreeMap<PathBuf, u64> {
    files_below(repo)
        .into_iter()
        .filter(|p| !p.starts_with(repo.join("locks")))
        .map(|p| {
            let len = std::fs::metadata(&p).unwrap().len();
            (p, len)
        })
        .collect()
}

/// `cairn ARGS` on the replica, opened with its own password.
fn on_replica(t: &Dir, replica: &Path, args: &[&dyn AsRef<OsStr>]) -> Run {
    let mut cmd = t.command();
    cmd.env("CAIRN_REPO", replica).env("CAIRN_PASSWORD", OTHER);
    cmd.args(args.iter().map(|a| a.as_ref()));
    Run::of(cmd)
}

/// A second repository, `replica` in the test directory, with its own password.
fn init_replica(t: &Dir) -> PathBuf {
    let replica = t.join("replica");
    let init: [&dyn AsRef<OsStr>; 5] = [&"init", &"--kdf-memory", &"64", &"--kdf-iterations", &"1"];
    on_replica(t, &replica, &init).success();
    replica
}

fn copy(t: &Dir, replica: &Path, pw: &Path) -> Value {
    t.ok([
        OsStr::new("copy"),
        OsStr::new("--to"),
        replica.as_os_str(),
        OsStr::new("--to-password-file"),
        pw.as_os_str(),
        OsStr::new("--json"),
    ])
    .json()
}

fn array_len(v: &Value, key: &str) -> usize {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} in {v}"))
        .len()
}

#[test]
fn copy_between_repositories_with_other_passwords_restores_byte_for_byte() {
    let t = setup();
    t.init_with(&["--chunk-size", "64"]);
    let replica = init_replica(&t);
    let pw = t.join("replica-password");
    write(&pw, format!("{OTHER}\n"));

    let src = t.join("src");
    write(src.join("big.bin"), random_bytes(1, 700_000));
    write(src.join("same.bin"), random_bytes(1, 700_000));
    write(src.join("dir/small.txt"), "small\n");
    std::os::unix::fs::symlink("dir/small.txt", src.join("link")).unwrap();
    let first = t.backup([
        src.as_os_str(),
        OsStr::new("--tag"),
        OsStr::new("daily"),
        OsStr::new("--host"),
        OsStr::new("alpha"),
    ]);
    write(src.join("dir/new.txt"), "new\n");
    t.backup([src.as_os_str(), OsStr::new("--host"), OsStr::new("alpha")]);

    let report = copy(&t, &replica, &pw);
    assert_eq!(array_len(&report, "copied"), 2, "{report}");
    assert_eq!(array_len(&report, "already_present"), 0, "{report}");
    // The duplicate file is stored once in the replica too.
    let stored = num(&report, "bytes_added");
    assert!(stored > 700_000 && stored < 1_000_000, "{report}");

    // Copying again copies nothing and writes nothing.
    let before = files(&replica);
    let again = copy(&t, &replica, &pw);
    assert_eq!(array_len(&again, "copied"), 0, "{again}");
    assert_eq!(array_len(&again, "already_present"), 2, "{again}");
    assert_eq!(num(&again, "bytes_added"), 0);
    assert_eq!(files(&replica), before, "a second copy changed the replica");

    // The copies keep time, host, user, paths, tags and kind.
    let keep = |s: &Value| {
        let mut s = s.clone();
        for k in ["id", "short_id", "tree", "parent"] {
            s.as_object_mut().unwrap().remove(k);
        }
        s
    };
    let copies: Vec<Value> = match on_replica(&t, &replica, &[&"snapshots", &"--json"])
        .success()
        .json()
    {
        Value::Array(v) => v,
        other => panic!("{other}"),
    };
    let originals = t.snapshots();
    assert_eq!(
        copies.iter().map(keep).collect::<Vec<_>>(),
        originals.iter().map(keep).collect::<Vec<_>>()
    );
    assert_eq!(
        copies[1]["parent"], copies[0]["id"],
        "the parent is the copy's"
    );

    // Restored from the replica with its own password, byte for byte; the first snapshot too.
    let out = t.join("out");
    on_replica(&t, &replica, &[&"restore", &"latest", &"--target", &out]).success();
    assert_same_tree(&scan(&src), &scan(&restored(&out, &src)), Compare::exact());
    let out1 = t.join("out1");
    let first_copy = copies[0]["id"].as_str().unwrap().to_string();
    on_replica(&t, &replica, &[&"restore", &first_copy, &"--target", &out1]).success();
    assert!(!restored(&out1, &src).join("dir/new.txt").exists());
    assert_eq!(
        std::fs::read(restored(&out1, &src).join("same.bin")).unwrap(),
        random_bytes(1, 700_000)
    );
    let report = on_replica(&t, &replica, &[&"check", &"--read-data", &"--json"])
        .success()
        .json();
    assert_eq!(report["ok"], Value::Bool(true), "{report}");

    // A new snapshot copies only what changed: a few KiB, not the big files again.
    write(src.join("dir/third.txt"), "third\n");
    t.backup([src.as_os_str(), OsStr::new("--host"), OsStr::new("alpha")]);
    let third = copy(&t, &replica, &pw);
    assert_eq!(array_len(&third, "copied"), 1, "{third}");
    assert!(num(&third, "bytes_added") < 20_000, "{third}");
    let read = num(&third["copied"][0], "blobs_read");
    assert!(read <= 2, "only the new file's chunk is read: {third}");

    // A snapshot named by id copies just that one; the first is there already.
    let named = t.ok([
        OsStr::new("copy"),
        OsStr::new(string(&first, "snapshot_id").unwrap().as_str()),
        OsStr::new("--to"),
        replica.as_os_str(),
        OsStr::new("--to-password-file"),
        pw.as_os_str(),
        OsStr::new("--json"),
    ]);
    assert_eq!(array_len(&named.json(), "already_present"), 1);
    t.check();
}

#[test]
fn copy_refuses_a_wrong_target_password_and_the_source_itself() {
    let t = setup();
    t.init();
    let replica = init_replica(&t);
    let src = t.join("src");
    write(src.join("a"), "a\n");
    t.backup([src.as_os_str()]);
    let wrong = t.join("wrong");
    write(&wrong, "not it\n");
    let before = files(&replica);
    let run = t
        .run([
            OsStr::new("copy"),
            OsStr::new("--to"),
            replica.as_os_str(),
            OsStr::new("--to-password-file"),
            wrong.as_os_str(),
        ])
        .code(12);
    for secret in [PASSWORD, "not it"] {
        assert!(!contains(&run.stdout, secret.as_bytes()), "{run:?}");
        assert!(!contains(&run.stderr, secret.as_bytes()), "{run:?}");
    }
    let says = run.error_line();
    assert!(
        says.contains("--to ") && says.contains("replica"),
        "{run:?}"
    );
    assert_eq!(files(&replica), before);

    t.run([
        OsStr::new("copy"),
        OsStr::new("--to"),
        t.repo().as_os_str(),
        OsStr::new("--to-password-file"),
        wrong.as_os_str(),
    ])
    .code(12);
    let pw = t.join("pw");
    write(&pw, PASSWORD);
    let run = t
        .run([
            OsStr::new("copy"),
            OsStr::new("--to"),
            t.repo().as_os_str(),
            OsStr::new("--to-password-file"),
            pw.as_os_str(),
        ])
        .code(2);
    assert!(
        run.error_line()
            .contains("has the id of the repository copied from"),
        "{run:?}"
    );
    // Without any target password and no terminal: a clear error naming what is missing.
    let run = t
        .run([OsStr::new("copy"), OsStr::new("--to"), replica.as_os_str()])
        .failure();
    assert!(
        run.error_line().contains("target repository password"),
        "{run:?}"
    );
}
