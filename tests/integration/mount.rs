//! `cairn mount`: a snapshot seen through the FUSE mount is its source, byte for byte and with
//! its modes, owners, mtimes and symlinks; the host and tag views are there; SIGTERM and an
//! unmount from outside both end the command with exit 0 and leave no mount behind. Needs
//! /dev/fuse, and skips with a clear line where it is missing.

use crate::util::{
    assert_same_tree, chmod, is_root, mkdirs, random_bytes, scan, set_mtime, setup, write, Compare,
    Dir,
};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// Whether FUSE can be used here; says why not on stderr.
fn fuse_available() -> bool {
    if Path::new("/dev/fuse").exists() {
        return true;
    }
    eprintln!("skipped: /dev/fuse not present, so cairn mount cannot be tested here");
    false
}

/// Whether `dir` is a mount point, by /proc/self/mountinfo.
fn mounted(dir: &Path) -> bool {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let dir = dir.to_str().unwrap();
    info.lines()
        .any(|l| l.split(' ').nth(4).is_some_and(|point| point == dir))
}

/// `cairn mount DIR ARGS` in the background, returned once `DIR/snapshots` is there.
fn start_mount(t: &Dir, dir: &Path, args: &[&str]) -> Child {
    mkdirs(dir);
    let mut child = t
        .command()
        .arg("mount")
        .arg(dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !dir.join("snapshots").exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("cairn mount exited with {status}: {}", output(&mut child));
        }
        if Instant::now() > deadline {
            stop(&mut child);
            panic!("cairn mount did not mount in 60 s: {}", output(&mut child));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// What the process wrote, once it has exited.
fn output(child: &mut Child) -> String {
    let mut out = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut out);
    }
    out
}

/// Waits for the process to exit (at most 30 s) and returns its exit code and output.
fn wait_exit(child: &mut Child) -> (Option<i32>, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status.code(), output(child));
        }
        if Instant::now() > deadline {
            stop(child);
            panic!("cairn mount did not exit in 30 s: {}", output(child));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A tree with files of several sizes (one of many chunks), a symlink, a subdirectory and an
/// empty one, and distinct modes and mtimes.
fn source(t: &Dir) -> PathBuf {
    let src = t.join("src");
    write(src.join("empty"), "");
    write(src.join("small.txt"), "small\n");
    write(src.join("medium.bin"), random_bytes(1, 100_000));
    // 64 KiB chunks on average (at most 512 KiB): a few MiB make many chunks.
    write(src.join("big.bin"), random_bytes(2, 3 << 20));
    write(src.join("sub/deeper/note.md"), "# note\n");
    mkdirs(src.join("sub/empty-dir"));
    std::os::unix::fs::symlink("sub/deeper/note.md", src.join("link")).unwrap();
    std::os::unix::fs::symlink("/nowhere/at/all", src.join("dangling")).unwrap();
    chmod(src.join("small.txt"), 0o600);
    chmod(src.join("medium.bin"), 0o755);
    chmod(src.join("sub/deeper"), 0o710);
    let mut ns = 1_600_000_000_123_456_789;
    for p in [
        "empty",
        "small.txt",
        "medium.bin",
        "big.bin",
        "link",
        "dangling",
    ] {
        set_mtime(src.join(p), ns);
        ns += 86_400_987_654_321;
    }
    for p in [
        "sub/deeper/note.md",
        "sub/deeper",
        "sub/empty-dir",
        "sub",
        "",
    ] {
        set_mtime(src.join(p), ns);
        ns += 3_600_000_000_001;
    }
    src
}

#[test]
fn a_mounted_snapshot_is_its_source_and_sigterm_unmounts() {
    if !fuse_available() {
        return;
    }
    let t = setup();
    t.init_with(&["--chunk-size", "64"]);
    let src = source(&t);
    t.backup([src.as_os_str(), "--tag".as_ref(), "nightly".as_ref()]);
    let host = t.snapshots()[0]["host"].as_str().unwrap().to_string();

    let mnt = t.join("mnt");
    let mut child = start_mount(&t, &mnt, &[]);
    let rel = src.strip_prefix("/").unwrap();
    let seen = std::panic::catch_unwind(|| {
        let latest = mnt.join("snapshots/latest");
        assert!(fs::symlink_metadata(&latest).unwrap().is_symlink());
        let how = || Compare {
            mode: true,
            mtime: true,
            root_mtime: true,
            // The mount shows the owners saved, whoever mounts it.
            owner: true,
            xattrs: false,
            hardlinks: false,
        };
        assert_same_tree(&scan(&src), &scan(&latest.join(rel)), how());
        let by_host = mnt.join("hosts").join(&host).join("latest");
        assert_same_tree(&scan(&src), &scan(&by_host.join(rel)), how());
        let by_tag = mnt.join("tags/nightly/latest");
        assert_eq!(
            fs::read(by_tag.join(rel).join("big.bin")).unwrap(),
            fs::read(src.join("big.bin")).unwrap()
        );
        // Read-only: nothing can be created or changed.
        assert!(fs::write(latest.join(rel).join("new"), "x").is_err());
        assert!(fs::OpenOptions::new()
            .append(true)
            .open(latest.join(rel).join("small.txt"))
            .is_err());
    });
    if let Err(panic) = seen {
        stop(&mut child);
        std::panic::resume_unwind(panic);
    }

    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let (code, out) = wait_exit(&mut child);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("unmounted on a signal"), "{out}");
    assert!(!mounted(&mnt), "the mount outlived cairn mount");
    assert!(fs::read_dir(&mnt).unwrap().next().is_none());
}

#[test]
fn an_unmount_from_outside_ends_the_command_and_filters_apply() {
    if !fuse_available() {
        return;
    }
    let t = setup();
    t.init();
    let src = t.join("src");
    write(src.join("a.txt"), "a\n");
    t.backup([src.as_os_str(), "--tag".as_ref(), "keep".as_ref()]);
    t.backup([src.as_os_str()]);
    let mnt = t.join("mnt");
    let mut child = start_mount(&t, &mnt, &["--tag", "keep"]);
    let names: Vec<String> = fs::read_dir(mnt.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    // One snapshot passed the filter, and `latest` points to it.
    let ok = names.len() == 2 && names.contains(&"latest".to_string());
    let unmount = if is_root() { "umount" } else { "fusermount" };
    let args: &[&str] = if is_root() { &[] } else { &["-u"] };
    let done = std::process::Command::new(unmount)
        .args(args)
        .arg(&mnt)
        .status();
    let (code, out) = wait_exit(&mut child);
    assert!(ok, "snapshots/ holds {names:?}");
    assert!(done.is_ok_and(|s| s.success()), "{unmount} failed");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("unmounted from outside"), "{out}");
    assert!(!mounted(&mnt));
}

/// A mount point that is not a directory is refused with exit 2, before any password is asked
/// for or anything is mounted.
#[test]
fn a_mount_point_that_is_not_a_directory_is_refused() {
    let t = setup();
    t.init();
    let file = t.join("a-file");
    write(&file, "x");
    for at in [file, t.join("missing")] {
        let run = t
            .run([std::ffi::OsStr::new("mount"), at.as_os_str()])
            .code(2);
        let says = run.error_line();
        assert!(
            says.contains("is not a directory") && says.contains(&*at.to_string_lossy()),
            "{run:?}"
        );
    }
}
