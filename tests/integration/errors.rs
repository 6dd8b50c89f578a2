//! Failures: each with its exit code, a one-line message naming what is at fault, and no damage
//! to the repository.

use crate::util::*;
use std::ffi::OsStr;
use std::fs;
use std::path::Path;
use std::process::Stdio;

const NOBODY: u32 = 65534;

/// A repository for tests of unreadable source files. Permission bits do not stop root, so as
/// root the backups of these tests run as uid 65534, which gets the test directory, repository
/// and cache; otherwise they run as the current user.
fn repo_for_nobody() -> Dir {
    let t = setup();
    t.init();
    if is_root() {
        chmod(t.path(), 0o755);
        mkdirs(nobody_cache(&t));
        chown_tree(&t.repo(), NOBODY, NOBODY);
        chown_tree(&nobody_cache(&t), NOBODY, NOBODY);
    }
    t
}

/// The cache of uid 65534: a cache must belong to the user who runs cairn.
fn nobody_cache(t: &Dir) -> std::path::PathBuf {
    t.join("cache-nobody")
}

/// `cairn` for a backup that permission bits apply to (see `repo_for_nobody`).
fn unprivileged_cairn(t: &Dir) -> std::process::Command {
    if is_root() {
        let mut cmd = t.command_as(NOBODY, NOBODY);
        cmd.env("CAIRN_CACHE_DIR", nobody_cache(t));
        cmd
    } else {
        t.command()
    }
}

/// Whether the user of `unprivileged_cairn` can run `program PATH` successfully (`cat` to read,
/// `ls` to list).
fn nobody_can(path: &Path, program: &str) -> bool {
    let mut cmd = if is_root() {
        as_user(NOBODY, NOBODY, program)
    } else {
        std::process::Command::new(program)
    };
    cmd.arg(path).stdout(Stdio::null()).stderr(Stdio::null());
    cmd.status().unwrap().success()
}

/// An initialised repository with one snapshot of a small tree at `src`.
fn repo_with_snapshot() -> (Dir, std::path::PathBuf) {
    let t = setup();
    t.init();
    let src = t.join("src");
    write(src.join("a.txt"), "some content\n");
    write(src.join("sub/b.txt"), "more content\n");
    t.backup([&src]);
    (t, src)
}

#[test]
fn wrong_password_exits_12_and_changes_nothing() {
    let (t, src) = repo_with_snapshot();
    let before = fingerprint(&t.repo());
    let wrong = "not the password";
    let target = t.join("restore");
    let runs: Vec<Vec<&OsStr>> = vec![
        vec!["snapshots".as_ref()],
        vec!["backup".as_ref(), src.as_os_str()],
        vec![
            "restore".as_ref(),
            "latest".as_ref(),
            "--target".as_ref(),
            target.as_os_str(),
        ],
        vec!["ls".as_ref(), "latest".as_ref()],
    ];
    for args in runs {
        let mut cmd = t.command();
        cmd.env("CAIRN_PASSWORD", wrong).args(&args);
        let run = Run::of(cmd).code(12);
        let line = run.error_line();
        assert!(
            line.contains("password"),
            "the message should mention the password:\n{run:?}"
        );
        assert!(
            !line.contains(wrong) && !line.contains(PASSWORD),
            "the message shows a password:\n{run:?}"
        );
        assert_unchanged(&before, &fingerprint(&t.repo()), "the repository");
    }
    assert!(
        !target.exists(),
        "a restore with the wrong password created its target"
    );
    // The right password still works.
    assert_eq!(t.snapshots().len(), 1);
}

#[test]
fn no_repository_exits_10() {
    let mut t = setup();
    let src = t.join("src");
    write(src.join("a.txt"), "x");
    let missing = t.join("nowhere");
    t.set_repo(&missing);
    let run = t.run(["snapshots"]).code(10);
    assert!(
        run.error_line().contains(missing.to_str().unwrap()),
        "the message should name the location:\n{run:?}"
    );
    t.run([OsStr::new("backup"), src.as_os_str()])
        .code(10)
        .error_line();
    assert!(
        !missing.exists(),
        "a failed command created {}",
        missing.display()
    );

    // An existing directory that is not a repository.
    let empty = t.join("empty");
    mkdirs(&empty);
    t.set_repo(&empty);
    t.run(["snapshots"]).code(10).error_line();
    t.run([OsStr::new("backup"), src.as_os_str()]).code(10);
    assert_eq!(
        fs::read_dir(&empty).unwrap().count(),
        0,
        "a failed backup wrote into {}",
        empty.display()
    );
}

/// Regression (issue 13): `cairn -r s3:http://127.0.0.1:9000/bucket init` said "created
/// repository" and made a local folder `./s3:http:/127.0.0.1:9000/bucket/`. A location with a
/// scheme this build does not reach is an invalid argument, and nothing is created.
#[test]
fn a_location_with_an_unsupported_scheme_exits_2_and_creates_nothing() {
    let mut t = setup();
    for location in [
        "gopher://127.0.0.1/repo",
        "s4:http://127.0.0.1:9000/bucket",
        "file:///srv/repo",
        "b2:bucket/path",
    ] {
        t.set_repo(location);
        let run = t
            .run(["init", "--kdf-memory", "64", "--kdf-iterations", "1"])
            .code(2);
        let line = run.error_line();
        assert!(line.contains("is not supported"), "{run:?}");
        assert!(
            line.contains("local:PATH") && line.contains("s3:, sftp:"),
            "the message names what is: {run:?}"
        );
        t.run(["snapshots"]).code(2);
    }
    // Supported schemes with nothing listening fail, and are never a local folder either.
    for location in [
        "s3:http://127.0.0.1:9/bucket",
        "rest:http://127.0.0.1:9/",
        "webdav:http://127.0.0.1:9/dav",
        "ftp://user:pw@127.0.0.1:9/path",
    ] {
        t.set_repo(location);
        let run = t.run([
            "--retries",
            "1",
            "init",
            "--kdf-memory",
            "64",
            "--kdf-iterations",
            "1",
        ]);
        assert_ne!(run.code, Some(0), "{run:?}");
        assert!(!run.stderr().contains("pw@"), "{run:?}");
    }
    let left: Vec<_> = fs::read_dir(t.join(""))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains(':'))
        .collect();
    assert!(left.is_empty(), "a refused location left {left:?}");
    // `local:` names a directory explicitly.
    let dir = t.join("explicit");
    t.set_repo(format!("local:{}", dir.display()));
    t.run(["init", "--kdf-memory", "64", "--kdf-iterations", "1"])
        .success();
    assert!(dir.join("config").is_file());
}

#[test]
fn init_over_an_existing_repository_is_refused() {
    let (t, _src) = repo_with_snapshot();
    let before = fingerprint(&t.repo());
    for pw in [PASSWORD, "another password"] {
        let mut cmd = t.command();
        cmd.env("CAIRN_PASSWORD", pw)
            .args(["init", "--kdf-memory", "64", "--kdf-iterations", "1"]);
        let run = Run::of(cmd).failure();
        assert!(
            run.error_line().contains("already"),
            "the message should say a repository exists:\n{run:?}"
        );
        assert_unchanged(&before, &fingerprint(&t.repo()), "the repository");
    }
    assert_eq!(t.snapshots().len(), 1);

    // A directory with other files in it is not made into a repository either.
    let mut t = setup();
    let busy = t.join("busy");
    write(busy.join("precious.txt"), "do not touch\n");
    let before = fingerprint(&busy);
    t.set_repo(&busy);
    let run = t
        .run(["init", "--kdf-memory", "64", "--kdf-iterations", "1"])
        .failure();
    run.error_line();
    assert_unchanged(&before, &fingerprint(&busy), "the non-empty directory");
}

#[test]
fn unknown_config_version_is_refused_clearly() {
    let (t, _src) = repo_with_snapshot();
    let config = t.repo().join("config");
    let mut bytes = fs::read(&config).unwrap();
    assert_eq!(&bytes[..8], b"CAIRNCFG", "config magic");
    assert_eq!(
        u32::from_le_bytes(bytes[8..12].try_into().unwrap()),
        1,
        "config version"
    );
    bytes[8..12].copy_from_slice(&99u32.to_le_bytes());
    fs::write(&config, &bytes).unwrap();
    let before = fingerprint(&t.repo());
    let run = t.run(["snapshots"]).failure();
    let line = run.error_line();
    assert!(
        line.contains("version") && line.contains("99"),
        "the message should name the version:\n{run:?}"
    );
    assert_unchanged(&before, &fingerprint(&t.repo()), "the repository");

    // A config without the magic is not taken for a repository of some version.
    bytes[..8].copy_from_slice(b"NOTCAIRN");
    fs::write(&config, &bytes).unwrap();
    let run = t.run(["snapshots"]).failure();
    assert!(run.error_line().contains("config"), "{run:?}");
}

#[test]
fn nonexistent_sources_fail_before_writing_unless_some_exist() {
    let (t, src) = repo_with_snapshot();
    let before = fingerprint(&t.repo());
    let missing = t.join("no/such/source");
    let run = t.run([OsStr::new("backup"), missing.as_os_str()]).failure();
    assert!(
        run.error_line().contains(missing.to_str().unwrap()),
        "the message should name the path:\n{run:?}"
    );
    assert_unchanged(&before, &fingerprint(&t.repo()), "the repository");
    assert_eq!(t.snapshots().len(), 1);
    // One fleet-wide list of sources fits every host: a missing one is skipped with a warning
    // that names it, and the backup of the rest exits 3.
    let run = t
        .run([OsStr::new("backup"), src.as_os_str(), missing.as_os_str()])
        .code(3);
    assert!(
        run.stderr().contains(&format!(
            "warning: source {} does not exist on this host: skipped",
            missing.display()
        )),
        "{run:?}"
    );
    let snaps = t.snapshots();
    assert_eq!(snaps.len(), 2);
    assert_eq!(
        snaps[1]["paths"],
        serde_json::json!([src.to_string_lossy()])
    );
}

#[test]
fn restore_onto_a_regular_file_is_refused() {
    let (t, _src) = repo_with_snapshot();
    let file = t.join("target-file");
    write(&file, "I am a file\n");
    let run = t
        .run([
            OsStr::new("restore"),
            OsStr::new("latest"),
            OsStr::new("--target"),
            file.as_os_str(),
        ])
        .failure();
    assert!(
        run.error_line().contains(file.to_str().unwrap()),
        "the message should name the target:\n{run:?}"
    );
    assert_eq!(fs::read(&file).unwrap(), b"I am a file\n");
}

#[test]
fn unknown_snapshot_is_an_error() {
    let (t, _src) = repo_with_snapshot();
    let id = t.snapshots()[0]["id"].as_str().unwrap().to_string();
    // A prefix of the right length that differs from the only id in its first digit.
    let first = if id.starts_with('0') { '1' } else { '0' };
    let prefix = format!("{first}{}", &id[1..6]);
    let target = t.join("restore");
    let run = t
        .run([
            OsStr::new("restore"),
            OsStr::new(&prefix),
            OsStr::new("--target"),
            target.as_os_str(),
        ])
        .failure();
    assert!(
        run.error_line().contains(&prefix),
        "the message should name the snapshot:\n{run:?}"
    );
    assert!(!target.exists(), "a failed restore created its target");
    t.run(["ls", &prefix]).failure().error_line();
    t.run(["ls", "not-hex"]).failure().error_line();
    // The real id, and a prefix of it, do work.
    t.ok(["ls", &id]);
    t.ok(["ls", &id[..6]]);
}

#[test]
fn usage_errors_exit_2() {
    let t = setup();
    t.run(["backup"]).code(2);
    t.run(["no-such-command"]).code(2);
    t.run(["backup", "--kind", "sometimes", "x"]).code(2);
}

/// Regression: 43 invalid option values exited 1 (after a password prompt, some after opening
/// the repository) instead of the documented 2. Each must exit 2 with one line naming the option,
/// and change nothing.
#[test]
fn every_invalid_option_value_exits_2_and_changes_nothing() {
    let (t, src) = repo_with_snapshot();
    let src = src.to_str().unwrap();
    let target = t.join("target");
    let target = target.to_str().unwrap();
    let before = fingerprint(&t.repo());
    let cases: &[&[&str]] = &[
        &["backup", "--time", "garbage", src],
        &["backup", "--time", "tomorrow", src],
        &["backup", "--exclude", "a[", src],
        &["backup", "--exclude-file", "/nonexistent/excludes", src],
        &["backup", "--host", "", src],
        &["backup", "--tag", "", src],
        &["backup", "--exclude", "", src],
        &["forget", "--keep-tag", "", "--dry-run"],
        &["snapshots", "--host", ""],
        &["snapshots", "--at", "tomorrow"],
        &["snapshots", "--path", "relative/path"],
        &["restore", "--at", "garbage", "-t", target],
        &["restore", "latest", "-t", target, "--include", "a["],
        &["restore", "latest", "-t", target, "--exclude", "[z-a]"],
        &["restore", "latest", "-t", target, "--path", "rel"],
        &["find", "a["],
        &["find", "x", "--oldest", "garbage"],
        &["find", "x", "--newest", "next week"],
        &["check", "--read-data-subset", "0/0"],
        &["check", "--read-data-subset", "0%"],
        &["check", "--read-data-subset", "8/7"],
        &["check", "--read-data-subset", "150%"],
        &["forget", "--keep-last", "1", "--group-by", "colour"],
        &["forget"],
        &["prune", "--grace", "1s"],
        &["init", "--pack-size", "0"],
        &["init", "--pack-size", "4096"],
        &["init", "--chunk-size", "100"],
        &["init", "--chunk-size", "0"],
        &["init", "--compression", "99"],
        &["init", "--kdf-memory", "1"],
        &["init", "--kdf-iterations", "0"],
    ];
    for args in cases {
        let run = t.run(*args).code(2);
        let line = run.error_line();
        let named = args
            .iter()
            .any(|a| a.starts_with("--") && line.contains(*a) || line.contains("pattern"));
        assert!(
            named || args == &["forget"],
            "{args:?}: the error does not name the option: {line}"
        );
    }
    // Negative counts mean "unlimited", as the help says, and are not taken for options.
    t.ok(["forget", "--dry-run", "--keep-daily", "-1"]);
    assert!(!Path::new(target).exists());
    assert_eq!(fingerprint(&t.repo()), before);
}

/// Regression: a restore whose --include matched nothing exited 0 having restored nothing, so a
/// typo in a path looked like success.
#[test]
fn include_that_matches_nothing_says_so() {
    let (t, src) = repo_with_snapshot();
    let target = t.join("target");
    let a = src.join("a.txt");
    let run = t
        .run([
            "restore".as_ref(),
            "latest".as_ref(),
            "-t".as_ref(),
            target.as_os_str(),
            "--include".as_ref(),
            a.as_os_str(),
            "--include".as_ref(),
            "/no/such/file".as_ref(),
        ])
        .failure();
    assert!(
        run.error_line()
            .contains("\"/no/such/file\" matched nothing"),
        "{run:?}"
    );
    // What did match was restored all the same.
    assert!(restored(&target, &a).is_file());
}

#[test]
fn unreadable_source_file_gives_exit_3_and_a_usable_snapshot() {
    let t = repo_for_nobody();

    let src = t.join("src");
    write(src.join("readable.txt"), "anyone can read this\n");
    write(src.join("sub/also-readable.txt"), "and this\n");
    let secret = src.join("sub/unreadable.txt");
    write(&secret, "nobody may read this\n");
    let expected = {
        let mut tree = scan(&src);
        tree.remove(Path::new("sub/unreadable.txt"));
        tree
    };
    chmod(&secret, 0o000);

    // The unprivileged user really cannot read the file, but can read the others.
    let can_read = |p: &Path| nobody_can(p, "cat");
    assert!(
        can_read(&src.join("sub/also-readable.txt")),
        "the backup user cannot read the readable files"
    );
    assert!(
        !can_read(&secret),
        "the backup user can read a mode 000 file: the test cannot make a file unreadable"
    );

    let mut cmd = unprivileged_cairn(&t);
    cmd.args([OsStr::new("backup"), OsStr::new("--json"), src.as_os_str()]);
    let run = Run::of(cmd).code(3);
    assert!(
        run.stderr().contains(secret.to_str().unwrap()),
        "the error should name the file:\n{run:?}"
    );
    let summary = run.json();
    let errors = summary["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{summary}");
    assert_eq!(errors[0]["path"].as_str(), secret.to_str(), "{summary}");
    let id = string(&summary, "snapshot_id").expect("an incomplete backup still saves a snapshot");

    let snaps = t.snapshots();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["id"].as_str(), Some(id.as_str()));
    let target = t.join("restore");
    t.restore(&id, &target);
    let got = scan(&restored(&target, &src));
    // The directory holding the unreadable file changed only by losing it.
    assert_same_tree(&expected, &got, Compare::exact());
}

/// An unreadable directory, like an unreadable file, is reported and makes the backup
/// incomplete; everything else is saved.
#[test]
fn unreadable_source_directory_gives_exit_3() {
    let t = repo_for_nobody();
    let src = t.join("src");
    write(src.join("readable.txt"), "anyone can read this\n");
    let locked = src.join("locked");
    write(locked.join("inner.txt"), "in a directory nobody may list\n");
    chmod(&locked, 0o000);
    assert!(
        !nobody_can(&locked, "ls"),
        "the backup user can list a mode 000 directory"
    );

    let mut cmd = unprivileged_cairn(&t);
    cmd.args([OsStr::new("backup"), OsStr::new("--json"), src.as_os_str()]);
    let run = Run::of(cmd).code(3);
    let summary = run.json();
    let errors = summary["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{summary}");
    assert_eq!(errors[0]["path"].as_str(), locked.to_str(), "{summary}");
    assert!(run.stderr().contains(locked.to_str().unwrap()), "{run:?}");

    let target = t.join("restore");
    t.restore("latest", &target);
    let got = restored(&target, &src);
    assert_eq!(
        fs::read(got.join("readable.txt")).unwrap(),
        b"anyone can read this\n"
    );
    assert!(!got.join("locked/inner.txt").exists());
}

/// The password from a file, a command, the environment; their order; and the ways to get it
/// wrong.
#[test]
fn password_sources() {
    let t = setup();
    t.init();
    let file = t.join("pw");
    let crlf = t.join("pw-crlf");
    let bad = t.join("pw-bad");
    write(&file, format!("{PASSWORD}\n"));
    write(&crlf, format!("{PASSWORD}\r\n"));
    write(&bad, "wrong\n");
    let snapshots = |env: Option<&str>, extra: &[&OsStr]| {
        let mut cmd = t.command();
        cmd.env_remove("CAIRN_PASSWORD");
        if let Some(pw) = env {
            cmd.env("CAIRN_PASSWORD", pw);
        }
        cmd.arg("snapshots").args(extra);
        Run::of(cmd)
    };
    let pf = OsStr::new("--password-file");
    let pc = OsStr::new("--password-command");

    snapshots(None, &[pf, file.as_os_str()]).success();
    snapshots(None, &[pf, crlf.as_os_str()]).success();
    // The file comes before the environment.
    snapshots(Some("wrong"), &[pf, file.as_os_str()]).success();
    let cat = format!("cat '{}'", file.display());
    snapshots(None, &[pc, OsStr::new(&cat)]).success();
    let mut cmd = t.command();
    cmd.env("CAIRN_PASSWORD_FILE", &file)
        .env("CAIRN_PASSWORD", "wrong")
        .arg("snapshots");
    Run::of(cmd).success();

    snapshots(None, &[pf, bad.as_os_str()])
        .code(12)
        .error_line();
    let missing = t.join("no-such-password-file");
    let run = snapshots(None, &[pf, missing.as_os_str()]).failure();
    assert!(
        run.error_line().contains(&*missing.to_string_lossy()),
        "{run:?}"
    );
    let run = snapshots(None, &[pc, OsStr::new("exit 7")]).failure();
    assert!(run.error_line().contains("password command"), "{run:?}");
    let run = snapshots(None, &[]).failure();
    assert!(run.error_line().contains("no password"), "{run:?}");
    let run = snapshots(Some(""), &[]).failure();
    assert!(run.error_line().contains("empty"), "{run:?}");

    // Regression: the help promised "the first line" while the whole file is the password. They
    // agree now: a second line is part of the password, so a file holding more is refused.
    let two = t.join("pw-two-lines");
    write(&two, format!("{PASSWORD}\nsomething else\n"));
    snapshots(None, &[pf, two.as_os_str()]).code(12);
    let help = t.ok(["--help"]).stdout();
    assert!(!help.contains("first line"), "{help}");
    assert!(help.contains("whole content"), "{help}");
}

/// A damaged pack costs exactly the files whose data it held: they are reported and not left
/// behind with wrong bytes; everything else restores.
#[test]
fn damaged_pack_loses_only_the_affected_file() {
    let t = setup();
    t.init();
    let src = t.join("src");
    // One chunk each (chunks are at least 512 KiB), in one data pack.
    write(src.join("x1.bin"), random_bytes(21, 300_000));
    write(src.join("x2.bin"), random_bytes(22, 300_000));
    t.backup([&src]);
    let tree = scan(&src);

    let packs = files_below(&t.repo().join("data"));
    let data_pack = packs
        .iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    assert!(
        fs::metadata(data_pack).unwrap().len() > 600_000,
        "expected one pack with both files"
    );
    let mut bytes = fs::read(data_pack).unwrap();
    bytes[1000] ^= 0x01;
    fs::write(data_pack, bytes).unwrap();

    let target = t.join("restore");
    let run = t
        .run([
            OsStr::new("restore"),
            OsStr::new("latest"),
            OsStr::new("--target"),
            target.as_os_str(),
        ])
        .failure();
    run.error_line();
    let got = scan(&restored(&target, &src));
    let lost: Vec<_> = ["x1.bin", "x2.bin"]
        .into_iter()
        .filter(|n| !got.contains_key(Path::new(n)))
        .collect();
    assert_eq!(
        lost.len(),
        1,
        "exactly one file should be lost: {lost:?}\n{run:?}"
    );
    let lost_path = restored(&target, &src.join(lost[0]));
    assert!(
        run.stderr().contains(&*lost_path.to_string_lossy()),
        "the error should name {}:\n{run:?}",
        lost_path.display()
    );
    let mut expected = tree.clone();
    expected.remove(Path::new(lost[0]));
    // The directory's own metadata is still restored.
    assert_same_tree(&expected, &got, Compare::exact());

    // check --read-data finds the damage and names the file.
    let run = t.run(["check", "--read-data", "--json"]).failure();
    let report = run.json();
    assert_eq!(report["ok"], false, "{report}");
    let lost_source = src.join(lost[0]);
    assert!(
        report["damage"]
            .to_string()
            .contains(&*lost_source.to_string_lossy()),
        "check does not name {}: {report}",
        lost_source.display()
    );
}

/// Two backups into one repository at the same time both succeed and both restore.
#[test]
fn concurrent_backups_both_succeed() {
    let t = setup();
    t.init();
    let (s1, s2) = (t.join("s1"), t.join("s2"));
    for (i, s) in [&s1, &s2].into_iter().enumerate() {
        write(s.join("big.bin"), random_bytes(30 + i as u64, 3 << 20));
        write(s.join("shared.bin"), random_bytes(40, 1 << 20));
        write(s.join("small.txt"), format!("source {i}\n"));
    }
    let spawn = |src: &Path| {
        let mut cmd = t.command();
        cmd.args([OsStr::new("backup"), OsStr::new("--json"), src.as_os_str()]);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.spawn().unwrap()
    };
    let (c1, c2) = (spawn(&s1), spawn(&s2));
    for (c, s) in [(c1, &s1), (c2, &s2)] {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "backup of {} failed: {}",
            s.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let snaps = t.snapshots();
    assert_eq!(snaps.len(), 2);
    for (i, snap) in snaps.iter().enumerate() {
        let target = t.join(format!("restore-{i}"));
        t.restore(snap["id"].as_str().unwrap(), &target);
        let src = Path::new(snap["paths"][0].as_str().unwrap());
        assert_same_tree(&scan(src), &scan(&restored(&target, src)), Compare::exact());
    }
    t.check();
    // Later backups see everything both stored.
    let s = t.backup([&s1, &s2]);
    assert!(num(&s, "raw_bytes_added") < 64 << 10, "{s}");
}

/// How many packs (not temporary files) the repository has; safe to call while a backup writes.
fn pack_count(repo: &Path) -> usize {
    let Ok(dirs) = fs::read_dir(repo.join("data")) else {
        return 0;
    };
    dirs.flatten()
        .filter_map(|d| fs::read_dir(d.path()).ok())
        .flat_map(|files| files.flatten())
        .filter(|f| !f.file_name().to_string_lossy().starts_with('.'))
        .count()
}

/// A backup killed half way leaves the repository usable: no snapshot, the earlier ones
/// restore, and the next backup completes.
#[test]
fn killed_backup_leaves_a_usable_repository() {
    let t = setup();
    t.init_with(&["--pack-size", "1"]);
    let src = t.join("src");
    write(src.join("small.txt"), "small\n");
    let first = t.backup([&src]);
    let first_tree = scan(&src);
    write(src.join("big.bin"), random_bytes(50, 48 << 20));
    let packs_before = pack_count(&t.repo());

    let mut cmd = t.command();
    cmd.args([OsStr::new("backup"), src.as_os_str()])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let started = std::time::Instant::now();
    let mut killed = false;
    while started.elapsed() < std::time::Duration::from_secs(20) {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if pack_count(&t.repo()) > packs_before + 2 {
            child.kill().unwrap();
            killed = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let status = child.wait().unwrap();
    if killed {
        assert_eq!(t.snapshots().len(), 1, "a killed backup left a snapshot");
    } else {
        eprintln!("note: the backup finished ({status}) before it could be killed");
    }

    t.check();
    let target = t.join("restore-1");
    t.restore(&string(&first, "snapshot_id").unwrap(), &target);
    assert_same_tree(
        &first_tree,
        &scan(&restored(&target, &src)),
        Compare::exact(),
    );
    t.backup([&src]);
    let target = t.join("restore-2");
    t.restore("latest", &target);
    assert_same_tree(
        &scan(&src),
        &scan(&restored(&target, &src)),
        Compare::exact(),
    );
}

// Regression: a file in keys/ whose name is not ASCII made every command panic, slicing the
// name by byte index to report it.
#[test]
fn a_stray_file_in_keys_with_a_non_ascii_name_breaks_no_command() {
    let (t, _src) = repo_with_snapshot();
    std::fs::write(t.repo().join("keys").join("0000000\u{e9}-stray"), b"junk").unwrap();
    assert_eq!(t.snapshots().len(), 1);
    let run = t.run(["check"]);
    assert!(
        run.stdout().contains("not a key id") || run.stderr().contains("not a key id"),
        "check names the stray file:\n{run:?}"
    );
    // A key over this client's limit is refused at init, naming the flag that raises it.
    let u = setup();
    let run = u
        .run(["init", "--kdf-memory", "1048576", "--kdf-iterations", "8"])
        .code(2);
    assert!(run.error_line().contains("--max-kdf-mib"), "{run:?}");
}

#[test]
fn a_key_over_the_kdf_limit_is_skipped_naming_the_key_and_the_flag() {
    let (t, _src) = repo_with_snapshot();
    let key = std::fs::read_dir(t.repo().join("keys"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name()
        .into_string()
        .unwrap();
    // The test key costs 64 KiB × 1 pass: 1 MiB·pass, over a limit of 0.
    let run = t.run(["--max-kdf-mib", "0", "snapshots"]).failure();
    let line = run.error_line();
    assert!(
        line.contains(&key[..8]) && line.contains("--max-kdf-mib"),
        "{run:?}"
    );
    let mut cmd = t.command();
    cmd.env("CAIRN_MAX_KDF_MIB", "0").arg("snapshots");
    let run = Run::of(cmd).failure();
    assert!(run.error_line().contains("CAIRN_MAX_KDF_MIB"), "{run:?}");
    assert_eq!(t.snapshots().len(), 1);
}

/// Regression: a root cron job's `check` (or backup) in a user's repository left root-owned 0600
/// files there, and every later command of the user's failed on them. Files root writes into a
/// repository belong to the owner of the directory they are in.
#[test]
fn root_writes_into_a_users_repository_as_that_user() {
    if !is_root() {
        return;
    }
    let t = repo_for_nobody();
    let src = t.join("src");
    write(src.join("a"), "written by root\n");
    chmod(t.path(), 0o755);
    chmod(&src, 0o755);
    chmod(src.join("a"), 0o644);
    t.backup([&src]);
    let mut foreign = Vec::new();
    for f in files_below(&t.repo()) {
        let m = std::fs::metadata(&f).unwrap();
        use std::os::unix::fs::MetadataExt;
        if m.uid() != NOBODY {
            foreign.push(f);
        }
    }
    assert!(
        foreign.is_empty(),
        "root left files of its own: {foreign:?}"
    );
    let mut cmd = unprivileged_cairn(&t);
    cmd.args(["check", "--read-data"]);
    Run::of(cmd).success();
}
