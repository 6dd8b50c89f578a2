//! Everyday commands (issue 15): exact in-place restore with `--delete`, `--at` on ls, dump,
//! find, diff and forget, `SNAP~N`, compact times, and which host `latest` picked.

use crate::util::{assert_same_tree, on_terminal, restored, scan, setup, string, write, Compare};
use std::fs;

/// Regression: restoring a full and then a differential snapshot over it left the files that
/// were deleted in between.
#[test]
fn restore_delete_after_full_then_differential_leaves_exactly_the_differential() {
    let t = setup();
    t.init();
    let src = t.join("src");
    write(src.join("a.txt"), "a\n");
    write(src.join("gone.txt"), "deleted later\n");
    write(src.join("dir/x.txt"), "x\n");
    write(src.join("olddir/deep/y.txt"), "y\n");
    let full = t.backup([src.as_os_str(), "--kind".as_ref(), "full".as_ref()]);
    let full = string(&full, "snapshot_id").unwrap();
    fs::remove_file(src.join("gone.txt")).unwrap();
    fs::remove_file(src.join("dir/x.txt")).unwrap();
    fs::remove_dir_all(src.join("olddir")).unwrap();
    write(src.join("new.txt"), "new\n");
    write(src.join("dir/z.txt"), "z\n");
    let diff = t.backup([src.as_os_str(), "--kind".as_ref(), "differential".as_ref()]);
    let diff = string(&diff, "snapshot_id").unwrap();

    let target = t.join("restore");
    t.restore(&full, &target);
    // Outside the snapshot's paths nothing is touched.
    write(target.join("unrelated.txt"), "mine\n");
    let dry = t.ok([
        "restore".as_ref(),
        diff.as_ref(),
        "--target".as_ref(),
        target.as_os_str(),
        "--delete".as_ref(),
        "--dry-run".as_ref(),
    ]);
    let mut would: Vec<String> = dry
        .stdout()
        .lines()
        .filter(|l| l.starts_with("would delete "))
        .map(String::from)
        .collect();
    would.sort();
    let r = restored(&target, &src);
    let expect: Vec<String> = ["dir/x.txt", "gone.txt", "olddir"]
        .iter()
        .map(|p| format!("would delete {}", r.join(p).display()))
        .collect();
    assert_eq!(would, expect, "{}", dry.stdout());
    assert!(r.join("gone.txt").exists(), "a dry run deletes nothing");

    // A symlink the snapshot does not hold goes, never what it points to.
    let outside = t.join("outside");
    write(outside.join("keep.txt"), "keep\n");
    std::os::unix::fs::symlink(&outside, r.join("dir/link")).unwrap();
    t.ok([
        "restore".as_ref(),
        diff.as_ref(),
        "--target".as_ref(),
        target.as_os_str(),
        "--delete".as_ref(),
    ]);
    assert_same_tree(&scan(&src), &scan(&r), Compare::exact());
    assert!(outside.join("keep.txt").exists());
    assert_eq!(
        fs::read_to_string(target.join("unrelated.txt")).unwrap(),
        "mine\n"
    );
    // Without --delete, the old behaviour: extra files stay.
    write(r.join("extra.txt"), "extra\n");
    t.restore(&diff, &target);
    assert!(r.join("extra.txt").exists());
    let e = t.run([
        "restore".as_ref(),
        diff.as_ref(),
        "--target".as_ref(),
        target.as_os_str(),
        "--delete".as_ref(),
        "--include".as_ref(),
        "*.txt".as_ref(),
    ]);
    e.code(2);
}

#[test]
fn at_and_tilde_name_snapshots_on_ls_dump_find_diff_and_forget() {
    let t = setup();
    t.init();
    let src = t.join("src");
    let file = src.join("notes.txt");
    let days = ["2026-03-01", "2026-03-02", "2026-03-03"];
    let mut ids = Vec::new();
    for (i, day) in days.iter().enumerate() {
        write(&file, format!("version {i}\n"));
        write(src.join(format!("only-{i}.txt")), "x");
        if i > 0 {
            fs::remove_file(src.join(format!("only-{}.txt", i - 1))).unwrap();
        }
        let time = format!("{day}T10:00:00Z");
        let r = t.backup([src.as_os_str(), "--time".as_ref(), time.as_ref()]);
        ids.push(string(&r, "snapshot_id").unwrap());
    }
    let file_s = file.to_str().unwrap();
    let dump = |args: &[&str]| {
        let mut all = vec!["dump"];
        all.extend(args);
        t.ok(all).stdout()
    };
    // A whole day means its end; the compact forms too.
    assert_eq!(dump(&["--at", "2026-03-02", file_s]), "version 1\n");
    assert_eq!(dump(&["--at", "20260301", file_s]), "version 0\n");
    assert_eq!(dump(&["--at", "202603030959", file_s]), "version 1\n");
    assert_eq!(dump(&["latest~1", file_s]), "version 1\n");
    assert_eq!(dump(&["latest~2", file_s]), "version 0\n");
    assert_eq!(
        dump(&[&format!("{}~1", &ids[1][..8]), file_s]),
        "version 0\n"
    );
    let e = t.run(["dump", "latest~3", file_s]).failure().error_line();
    assert!(e.contains("only 2 predecessors"), "{e}");

    let ls = t
        .ok(["ls", "--at", "2026-03-02", src.to_str().unwrap()])
        .stdout();
    assert!(
        ls.contains("only-1.txt") && !ls.contains("only-2.txt"),
        "{ls}"
    );
    let ls = t.ok(["ls", "latest~2", src.to_str().unwrap()]).stdout();
    assert!(ls.contains("only-0.txt"), "{ls}");
    t.run(["ls", "latest", "/", "--at", "2026-03-02"]).code(2);
    let e = t.run(["dump", "latest"]).code(2).error_line();
    assert!(e.contains("name the path to dump"), "{e}");
    let e = t.run(["diff", "latest"]).code(2).error_line();
    assert!(e.contains("name two snapshots"), "{e}");

    let found = t
        .ok(["find", "--at", "2026-03-02", "--json", "only-*"])
        .stdout();
    let lines: Vec<&str> = found.lines().collect();
    assert_eq!(lines.len(), 1, "{found}");
    assert!(
        lines[0].contains(&ids[1]) && lines[0].contains("only-1.txt"),
        "{found}"
    );

    // diff --at TIME [SNAPSHOT]: the snapshot at TIME against SNAPSHOT, latest by default.
    let d = t.ok(["diff", "--at", "2026-03-01"]).stdout();
    assert!(d.contains("only-0.txt") && d.contains("only-2.txt"), "{d}");
    assert!(!d.contains("only-1.txt"), "{d}");
    let d = t.ok(["diff", "--at", "2026-03-01", "latest~1"]).stdout();
    assert!(d.contains("only-1.txt") && !d.contains("only-2.txt"), "{d}");

    // forget --dry-run --at: the policy as it would have decided then.
    let r = t
        .ok([
            "forget",
            "--dry-run",
            "--at",
            "2026-03-02",
            "--keep-last",
            "1",
            "--json",
        ])
        .json();
    assert_eq!(r["removed"], serde_json::json!([ids[0]]), "{r}");
    t.run(["forget", "--at", "2026-03-02", "--keep-last", "1"])
        .code(2);
    assert_eq!(t.snapshots().len(), 3);
}

#[test]
fn latest_says_which_host_it_picked() {
    let t = setup();
    t.init();
    let src = t.join("src");
    write(src.join("f"), "f\n");
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    t.backup([
        src.as_os_str(),
        "--time".as_ref(),
        "2026-03-01T10:00:00Z".as_ref(),
    ]);
    t.backup([
        src.as_os_str(),
        "--host".as_ref(),
        "elsewhere".as_ref(),
        "--time".as_ref(),
        "2026-03-02T10:00:00Z".as_ref(),
    ]);
    let run = t.ok(["ls", "latest"]);
    let err = run.stderr();
    assert!(
        err.contains("of host elsewhere; 2 hosts have matching snapshots"),
        "{err}"
    );
    assert!(
        err.contains(&format!("this host ({host}) has its own snapshot")),
        "{err}"
    );
    let run = t.ok(["ls", "latest", "--host", &host]);
    assert!(!run.stderr().contains("note:"), "{}", run.stderr());
}

/// A file name holding a newline and an escape sequence: exact bytes to a pipe, escaped on a
/// terminal (`script` runs cairn on a pseudo-terminal).
#[test]
fn names_printed_to_a_terminal_escape_control_characters() {
    let t = setup();
    t.init();
    let src = t.join("src");
    write(src.join("evil\n\x1b[31mname"), "x");
    t.backup([&src]);
    let src_s = src.to_str().unwrap();
    let piped = t.ok(["ls", "latest", src_s]).stdout();
    assert!(piped.contains("evil\n\x1b[31mname"), "{piped:?}");
    let shown = on_terminal(&t, &format!("ls latest {src_s}"));
    assert!(shown.contains("evil\\n\\x1b[31mname"), "{shown:?}");
    assert!(!shown.contains('\x1b'), "{shown:?}");
}

/// A command's help lists its own options first and the global ones under their own heading,
/// and never shows a password command taken from the environment.
#[test]
fn help_puts_global_options_apart_and_hides_secret_environment_values() {
    let t = setup();
    let mut cmd = t.command();
    cmd.env("CAIRN_PASSWORD_COMMAND", "echo hunter2")
        .args(["backup", "--help"]);
    let out = cmd.output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    let at = |s: &str| {
        help.find(s)
            .unwrap_or_else(|| panic!("{s} missing:\n{help}"))
    };
    assert!(at("--exclude") < at("Global options:"), "{help}");
    assert!(at("Global options:") < at("--repo <LOCATION>"), "{help}");
    assert!(!help.contains("hunter2"), "{help}");
}
