//! `cairn key list|add|remove|passwd`: several passwords for one repository, each revocable,
//! and a password change that never leaves the repository without a key that opens it.

use crate::util::*;
use serde_json::Value;
use std::ffi::OsStr;

const SECOND: &str = "second password, for the laptop";
const THIRD: &str = "third password, after a change";

/// Every run of this module, so that each test can end by checking that no password leaked.
struct Runs(Vec<Run>);

impl Runs {
    /// `cairn ARGS` opened with `password`.
    fn with(&mut self, d: &Dir, password: &str, list: &[&dyn AsRef<OsStr>]) -> Run {
        let mut cmd = d.command();
        cmd.env("CAIRN_PASSWORD", password).args(args(list));
        let run = Run::of(cmd);
        self.0.push(clone(&run));
        run
    }

    /// Panics unless no output of any run holds any of the passwords.
    fn assert_no_password_shown(&self) {
        for run in &self.0 {
            for pw in [PASSWORD, SECOND, THIRD] {
                for (what, out) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
                    assert!(
                        !contains(out, pw.as_bytes()),
                        "a password appears on {what}:\n{run:?}"
                    );
                }
            }
        }
    }
}

/// A file holding `password` and a newline, as `echo` writes it.
fn password_file(d: &Dir, name: &str, password: &str) -> std::path::PathBuf {
    let path = d.join(name);
    write(&path, format!("{password}\n"));
    path
}

/// `key add` of `password` with fast key derivation, opened with `opener`.
fn add_key(runs: &mut Runs, d: &Dir, opener: &str, password: &str, host: &str) -> Run {
    let file = password_file(d, &format!("pw-{host}"), password);
    let fast: [&dyn AsRef<OsStr>; 4] = [&"--kdf-memory", &"64", &"--kdf-iterations", &"1"];
    let mut list: Vec<&dyn AsRef<OsStr>> = vec![&"key", &"add", &"--new-password-file", &file];
    list.extend(fast);
    list.extend([&"--host" as &dyn AsRef<OsStr>, &host, &"--user", &"tester"]);
    runs.with(d, opener, &list).success()
}

/// `Run` is not `Clone`: a copy for `Runs` to keep.
fn clone(run: &Run) -> Run {
    Run {
        args: run.args.clone(),
        code: run.code,
        stdout: run.stdout.clone(),
        stderr: run.stderr.clone(),
    }
}

/// `key list --json` opened with `password`.
fn key_list(runs: &mut Runs, d: &Dir, password: &str) -> Vec<Value> {
    match runs
        .with(d, password, &[&"key", &"list", &"--json"])
        .success()
        .json()
    {
        Value::Array(list) => list,
        other => panic!("key list --json printed {other}"),
    }
}

/// The id of the one key `current: true`.
fn current(list: &[Value]) -> String {
    let current: Vec<_> = list.iter().filter(|k| k["current"] == true).collect();
    assert_eq!(current.len(), 1, "not exactly one current key: {list:?}");
    string(current[0], "id").unwrap()
}

fn code(runs: &mut Runs, d: &Dir, password: &str, args: &[&dyn AsRef<OsStr>]) -> Option<i32> {
    runs.with(d, password, args).code
}

#[test]
fn two_keys_both_open_and_each_is_current_when_its_password_is_used() {
    let d = setup();
    d.init();
    let mut runs = Runs(Vec::new());
    let added = add_key(&mut runs, &d, PASSWORD, SECOND, "laptop");
    assert!(added.stdout().contains("added key"), "{added:?}");
    assert_eq!(code(&mut runs, &d, PASSWORD, &[&"snapshots"]), Some(0));
    assert_eq!(code(&mut runs, &d, SECOND, &[&"snapshots"]), Some(0));

    let list = key_list(&mut runs, &d, PASSWORD);
    assert_eq!(list.len(), 2, "{list:?}");
    for key in &list {
        let id = string(key, "id").unwrap();
        assert_eq!(id.len(), 64, "a full id: {key}");
        assert!(d.repo().join("keys").join(&id).is_file(), "{key}");
        assert!(!string(key, "host").unwrap().is_empty(), "{key}");
        assert!(!string(key, "user").unwrap().is_empty(), "{key}");
        let created = string(key, "created").unwrap();
        assert!(created.starts_with("20") && created.ends_with('Z'), "{key}");
    }
    let laptop: Vec<_> = list.iter().filter(|k| k["host"] == "laptop").collect();
    assert_eq!(laptop.len(), 1, "{list:?}");
    assert_eq!(laptop[0]["user"], "tester");
    let laptop_id = string(laptop[0], "id").unwrap();
    assert_ne!(
        current(&list),
        laptop_id,
        "the first password opened the first key"
    );

    let list = key_list(&mut runs, &d, SECOND);
    assert_eq!(current(&list), laptop_id);

    // The table marks the current key and shows short ids.
    let table = runs.with(&d, SECOND, &[&"key", &"list"]).success();
    let marked: Vec<_> = table
        .stdout()
        .lines()
        .filter(|l| l.starts_with('*'))
        .map(str::to_string)
        .collect();
    assert_eq!(marked.len(), 1, "{table:?}");
    assert!(marked[0].contains(short(&laptop_id)), "{table:?}");
    assert!(marked[0].contains("laptop") && marked[0].contains("tester"));
    runs.assert_no_password_shown();
}

#[test]
fn a_removed_key_no_longer_opens_and_the_repository_works_on() {
    let d = setup();
    d.init();
    let src = d.join("src");
    write(src.join("a.txt"), "before the key was removed\n");
    write(src.join("b.bin"), random_bytes(1, 300_000));
    d.backup([&src]);
    let mut runs = Runs(Vec::new());
    let first = current(&key_list(&mut runs, &d, PASSWORD));
    add_key(&mut runs, &d, PASSWORD, SECOND, "laptop");

    // Revoke the first password, using the second.
    let removed = runs
        .with(&d, SECOND, &[&"key", &"remove", &short(&first)])
        .success();
    assert!(removed.stdout().contains(short(&first)), "{removed:?}");
    assert!(!d.repo().join("keys").join(&first).exists());
    let refused = runs.with(&d, PASSWORD, &[&"snapshots"]).code(12);
    assert!(
        refused.error_line().contains("wrong password"),
        "{refused:?}"
    );
    assert_eq!(key_list(&mut runs, &d, SECOND).len(), 1);

    // Backup and restore with the remaining key, byte for byte.
    write(src.join("c.txt"), "after the key was removed\n");
    let tree = scan(&src);
    let summary = runs
        .with(&d, SECOND, &[&"backup", &"--json", &src])
        .success()
        .json();
    let target = d.join("restored");
    runs.with(
        &d,
        SECOND,
        &[&"restore", &id(&summary), &"--target", &target],
    )
    .success();
    let diffs = diff_trees(&tree, &scan(&restored(&target, &src)), Compare::exact());
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    let check = runs
        .with(&d, SECOND, &[&"check", &"--read-data", &"--json"])
        .success()
        .json();
    assert_eq!(check["ok"], true, "{check}");
    runs.assert_no_password_shown();
}

#[test]
fn the_last_key_and_the_key_in_use_are_not_removed() {
    let d = setup();
    d.init();
    let mut runs = Runs(Vec::new());
    let first = current(&key_list(&mut runs, &d, PASSWORD));

    let refused = runs
        .with(&d, PASSWORD, &[&"key", &"remove", &first])
        .code(2);
    let line = refused.error_line();
    assert!(
        line.contains("only key") && line.contains(short(&first)),
        "{line}"
    );
    assert_eq!(code(&mut runs, &d, PASSWORD, &[&"snapshots"]), Some(0));

    // With a second key, the one in use is still refused, and the error says what to do.
    add_key(&mut runs, &d, PASSWORD, SECOND, "laptop");
    let refused = runs
        .with(&d, PASSWORD, &[&"key", &"remove", &short(&first)])
        .code(2);
    let line = refused.error_line();
    assert!(
        line.contains("opened the repository") && line.contains("key passwd"),
        "{line}"
    );
    assert_eq!(key_list(&mut runs, &d, PASSWORD).len(), 2);
    assert_eq!(code(&mut runs, &d, PASSWORD, &[&"snapshots"]), Some(0));

    // An id no key file has is exit 1; a prefix of two is exit 2.
    let missing = if first.starts_with("00") { "ff" } else { "00" };
    let other = current(&key_list(&mut runs, &d, SECOND));
    assert_eq!(
        code(
            &mut runs,
            &d,
            PASSWORD,
            &[&"key", &"remove", &format!("{missing}{}", &first[2..])]
        ),
        Some(1)
    );
    if first[..1] == other[..1] {
        assert_eq!(
            code(&mut runs, &d, PASSWORD, &[&"key", &"remove", &&first[..1]]),
            Some(2)
        );
    }
    runs.assert_no_password_shown();
}

#[test]
fn passwd_replaces_the_key_in_use() {
    let d = setup();
    d.init();
    let mut runs = Runs(Vec::new());
    let before = key_list(&mut runs, &d, PASSWORD);
    let file = password_file(&d, "new-pw", THIRD);
    let fast: [&dyn AsRef<OsStr>; 4] = [&"--kdf-memory", &"64", &"--kdf-iterations", &"1"];
    let mut list: Vec<&dyn AsRef<OsStr>> = vec![&"key", &"passwd", &"--new-password-file", &file];
    list.extend(fast);
    let changed = runs.with(&d, PASSWORD, &list).success();
    assert!(
        changed.stdout().contains("changed the password"),
        "{changed:?}"
    );

    assert_eq!(code(&mut runs, &d, PASSWORD, &[&"snapshots"]), Some(12));
    assert_eq!(code(&mut runs, &d, THIRD, &[&"snapshots"]), Some(0));
    let after = key_list(&mut runs, &d, THIRD);
    assert_eq!(after.len(), 1, "{after:?}");
    assert_ne!(current(&after), current(&before));
    // The new key is for whom the old one was.
    assert_eq!(after[0]["host"], before[0]["host"]);
    assert_eq!(after[0]["user"], before[0]["user"]);
    runs.assert_no_password_shown();
}

/// The password change cut short before each of its writes: whenever it stops, a password
/// opens the repository (the old one until the new key file is written), and once it finishes
/// only the new one does.
#[test]
fn passwd_cut_short_at_any_write_leaves_a_key_that_opens() {
    let mut runs = Runs(Vec::new());
    for n in 0.. {
        let d = setup();
        d.init();
        let file = password_file(&d, "new-pw", THIRD);
        let mut cmd = d.command();
        cmd.env("CAIRN_TEST_CRASH_AFTER", n.to_string())
            .args(args(&[
                &"key",
                &"passwd",
                &"--new-password-file",
                &file,
                &"--kdf-memory",
                &"64",
                &"--kdf-iterations",
                &"1",
            ]));
        let run = Run::of(cmd);
        let finished = run.code == Some(0);
        assert!(
            finished || run.stderr().contains("CAIRN_TEST_CRASH_AFTER reached"),
            "{run:?}"
        );
        runs.0.push(run);
        let old = code(&mut runs, &d, PASSWORD, &[&"snapshots"]);
        let new = code(&mut runs, &d, THIRD, &[&"snapshots"]);
        assert!(
            old == Some(0) || new == Some(0),
            "no password opens after {n} writes"
        );
        if finished {
            assert_eq!((old, new), (Some(12), Some(0)));
            assert!(
                n >= 2,
                "a password change writes a key file and removes one"
            );
            break;
        }
        // Until the old key file is removed, the old password opens.
        assert_eq!(old, Some(0), "after {n} writes");
    }
    runs.assert_no_password_shown();
}

#[test]
fn key_add_without_a_terminal_or_a_file_is_a_usage_error() {
    let d = setup();
    d.init();
    let mut runs = Runs(Vec::new());
    let run = runs.with(&d, PASSWORD, &[&"key", &"add"]).code(2);
    assert!(run.error_line().contains("--new-password-file"), "{run:?}");
    let run = runs.with(&d, PASSWORD, &[&"key", &"passwd"]).code(2);
    assert!(run.error_line().contains("no new password"), "{run:?}");
    // An empty file is no password either.
    let empty = d.join("empty");
    write(&empty, "\n");
    runs.with(
        &d,
        PASSWORD,
        &[&"key", &"add", &"--new-password-file", &empty],
    )
    .code(2);
    assert_eq!(key_list(&mut runs, &d, PASSWORD).len(), 1);
    runs.assert_no_password_shown();
}
