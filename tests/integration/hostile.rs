//! Restore against a hostile local user who can write into the target while a (root) restore
//! runs, restore of paths longer than PATH_MAX below the target, and restore of the entries that
//! have no content (sockets).
//!
//! The races are made deterministic by stopping the restore (SIGSTOP) once it has completed some
//! files but not all, changing the target, and letting it go on (SIGCONT).

use crate::util::*;
use rustix::fs::{Mode, OFlags};
use std::ffi::OsStr;
use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A snapshot of 200 files of 200 kB in four directories `d0`..`d3`, in a repository of 1 MiB
/// packs, so that a restore completes its files a few at a time. Files are 0600, directories
/// 0700: nothing of them may ever be readable by others in the target.
fn private_files() -> (Dir, PathBuf, Tree) {
    let t = setup();
    t.init_with(&["--pack-size", "1"]);
    let src = t.join("src");
    for i in 0..200 {
        let path = src.join(format!("d{}/f{i:03}", i % 4));
        write(&path, random_bytes(i as u64, 200_000));
        chmod(&path, 0o600);
    }
    for d in 0..4 {
        chmod(src.join(format!("d{d}")), 0o700);
    }
    let tree = scan(&src);
    t.backup([&src]);
    (t, src, tree)
}

/// Whether the file at `path` has `e`'s size and mtime (the restorer's sign of completion).
fn looks_complete(path: &Path, e: &Entry) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| {
        m.len() == e.size
            && i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()) == e.mtime_ns
    })
}

fn signal(child: &Child, sig: rustix::process::Signal) {
    rustix::process::kill_process(rustix::process::Pid::from_child(child), sig).unwrap();
}

fn process_state(child: &Child) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{}/stat", child.id())).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Starts `cmd` (a restore into a target whose files below `root` are those of `tree`) and
/// stops it once some files are complete but not all. `None` when it got too far first.
fn stop_half_way(mut cmd: Command, root: &Path, tree: &Tree) -> Option<Child> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start cairn restore");
    let files: Vec<_> = tree.iter().filter(|(_, e)| e.kind == Kind::File).collect();
    let n_complete = || {
        files
            .iter()
            .filter(|(p, e)| looks_complete(&root.join(p), e))
            .count()
    };
    let started = Instant::now();
    while n_complete() == 0 {
        if child.try_wait().unwrap().is_some() {
            return None;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "restore made no progress"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
    signal(&child, rustix::process::Signal::STOP);
    loop {
        match process_state(&child) {
            Some('T' | 't') => break,
            Some('Z' | 'X') | None => {
                child.wait_with_output().unwrap();
                return None;
            }
            _ => std::thread::sleep(Duration::from_micros(100)),
        }
    }
    if n_complete() == files.len() {
        signal(&child, rustix::process::Signal::CONT);
        child.wait_with_output().unwrap();
        return None;
    }
    Some(child)
}

/// `cairn restore latest --target TARGET` under `umask 000`, so that any mode the restorer
/// relies on the umask to narrow shows.
fn restore_cmd(t: &Dir, target: &Path) -> Command {
    let base = t.command();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("umask 000; exec \"$@\"")
        .arg("sh")
        .arg(base.get_program())
        .args(["restore", "latest", "--target"])
        .arg(target);
    for (k, v) in base.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.current_dir(t.path()).stdin(Stdio::null());
    cmd
}

/// Regression: files were created 0666 & umask and directories 0777 & umask, and got their
/// final mode only once complete (directories at the very end), so another user could open a
/// private file (an `id_ed25519`) while it was being restored.
#[test]
fn entries_are_private_until_their_mode_is_set() {
    let (t, src, tree) = private_files();
    for attempt in 0..5 {
        let target = t.join(format!("r{attempt}"));
        let root = restored(&target, &src);
        let Some(child) = stop_half_way(restore_cmd(&t, &target), &root, &tree) else {
            continue;
        };
        let mut seen = 0;
        for rel in tree.keys() {
            let Ok(m) = fs::symlink_metadata(root.join(rel)) else {
                continue;
            };
            seen += 1;
            assert_eq!(
                m.permissions().mode() & 0o077,
                0,
                "{} is open to others while the restore runs: {:o}",
                rel.display(),
                m.permissions().mode()
            );
        }
        assert!(seen > 1);
        signal(&child, rustix::process::Signal::CONT);
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_same_tree(&tree, &scan(&root), Compare::exact());
        return;
    }
    panic!("five restores finished before they could be stopped half-way");
}

/// Regression: restore walked by path and reopened files by path with a plain `open`, and set
/// modes with a `chmod` that follows symlinks, so a user who could write into the target could
/// swap a directory or a file for a symlink (or a file for a hard link) while a root restore
/// ran and have it write and chmod files elsewhere.
#[test]
fn a_symlink_swapped_in_during_restore_is_not_followed() {
    let (t, src, tree) = private_files();
    let outside_dir = t.join("outside");
    mkdirs(&outside_dir);
    let outside_file = t.join("outside-file");
    write(&outside_file, "not yours\n");
    chmod(&outside_file, 0o644);
    let outside_linked = t.join("outside-linked");
    write(&outside_linked, "not yours either\n");
    chmod(&outside_linked, 0o644);
    for attempt in 0..5 {
        let target = t.join(format!("r{attempt}"));
        let root = restored(&target, &src);
        let Some(child) = stop_half_way(restore_cmd(&t, &target), &root, &tree) else {
            continue;
        };
        // A directory that still waits for files goes away and a symlink takes its place.
        let waiting = |rel: &Path| {
            tree.iter().any(|(p, e)| {
                e.kind == Kind::File && p.starts_with(rel) && !looks_complete(&root.join(p), e)
            })
        };
        let dir = (0..4)
            .map(|d| PathBuf::from(format!("d{d}")))
            .find(|d| waiting(d))
            .unwrap();
        fs::rename(root.join(&dir), t.join(format!("moved{attempt}"))).unwrap();
        symlink(&outside_dir, root.join(&dir)).unwrap();
        // Elsewhere, a file not yet complete becomes a symlink to a file outside, and another a
        // hard link to one.
        // Those the restore has created already first: it is writing them now.
        let mut waiting_files: Vec<PathBuf> = tree
            .iter()
            .filter(|(p, e)| {
                e.kind == Kind::File && !p.starts_with(&dir) && !looks_complete(&root.join(p), e)
            })
            .map(|(p, _)| root.join(p))
            .collect();
        waiting_files.sort_by_key(|p| !p.exists());
        let mut waiting_files = waiting_files.into_iter();
        if let Some(file) = waiting_files.next() {
            let _ = fs::remove_file(&file);
            symlink(&outside_file, &file).unwrap();
        }
        if let Some(file) = waiting_files.next() {
            let _ = fs::remove_file(&file);
            fs::hard_link(&outside_linked, &file).unwrap();
        }
        signal(&child, rustix::process::Signal::CONT);
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            fs::read_dir(&outside_dir).unwrap().count(),
            0,
            "the restore wrote through a symlinked directory: {out:?}"
        );
        assert!(
            fs::read(&outside_file).unwrap() == b"not yours\n",
            "the restore wrote through a symlinked file: {out:?}"
        );
        let m = fs::metadata(&outside_file).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o644, "{out:?}");
        assert_eq!(m.len(), 10);
        assert!(
            fs::read(&outside_linked).unwrap() == b"not yours either\n",
            "the restore wrote through a hard link swapped in: {out:?}"
        );
        let m = fs::metadata(&outside_linked).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o644, "{out:?}");
        return;
    }
    panic!("five restores finished before they could be stopped half-way");
}

/// Regression: a symlink planted in the target before a restore, where the snapshot has a
/// directory or a file, must be replaced, never followed.
#[test]
fn symlinks_in_the_target_are_replaced_not_followed() {
    let t = setup();
    t.init();
    let src = t.join("src");
    write(src.join("dir/inner"), "inner\n");
    write(src.join("file"), "file\n");
    chmod(src.join("file"), 0o600);
    let tree = scan(&src);
    t.backup([&src]);
    let outside_dir = t.join("outside");
    mkdirs(&outside_dir);
    let outside_file = t.join("outside-file");
    write(&outside_file, "not yours\n");
    chmod(&outside_file, 0o644);
    let target = t.join("restore");
    let root = restored(&target, &src);
    mkdirs(&root);
    symlink(&outside_dir, root.join("dir")).unwrap();
    symlink(&outside_file, root.join("file")).unwrap();
    t.restore("latest", &target);
    assert_same_tree(&tree, &scan(&root), Compare::exact());
    assert_eq!(fs::read_dir(&outside_dir).unwrap().count(), 0);
    assert_eq!(fs::read(&outside_file).unwrap(), b"not yours\n");
    assert_eq!(entry(&outside_file).mode, 0o644);
}

/// Opens the directories of `rel` one by one below `root`, as a path longer than PATH_MAX
/// cannot be given to the kernel whole.
fn open_beneath(root: &Path, rel: &Path, flags: OFlags) -> OwnedFd {
    let mut dir = rustix::fs::open(root, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty())
        .unwrap_or_else(|e| panic!("open {}: {e}", root.display()));
    let names: Vec<&OsStr> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    for (i, name) in names.iter().enumerate() {
        let last = i + 1 == names.len();
        let how = if last {
            flags | OFlags::NOFOLLOW
        } else {
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW
        };
        dir = rustix::fs::openat(&dir, *name, how, Mode::empty())
            .unwrap_or_else(|e| panic!("open {name:?} below {}: {e}", root.display()));
    }
    dir
}

/// Regression: paths that fit when backed up but exceed PATH_MAX below the restore target
/// failed with "File name too long" (101 of 301 entries were lost).
#[test]
fn paths_beyond_path_max_below_the_target_are_restored() {
    let t = setup();
    t.init();
    let src = t.join("src");
    // Nineteen levels of 200-byte names and a file at each: the deepest file's path stays
    // below PATH_MAX (4096) at the source, and goes beyond it below the target.
    let level = "d".repeat(200);
    let mut dir = src.clone();
    let mut files = Vec::new();
    for depth in 0..19 {
        dir.push(&level);
        let file = dir.join(format!("{depth:02}{}", "f".repeat(190)));
        assert!(file.as_os_str().len() < 4095, "{}", file.as_os_str().len());
        write(&file, format!("file at depth {depth}\n"));
        files.push(file);
    }
    t.backup([&src]);
    let target = t.join(format!("restore-{}", "t".repeat(120)));
    let deepest = restored(&target, files.last().unwrap());
    assert!(deepest.as_os_str().len() > 4096);
    let run = t.restore("latest", &target);
    assert!(run.stdout().contains("restored 19 files"), "{run:?}");
    for (depth, file) in files.iter().enumerate() {
        let rel = file.strip_prefix("/").unwrap();
        let fd = open_beneath(&target, rel, OFlags::RDONLY);
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut fs::File::from(fd), &mut back).unwrap();
        assert_eq!(back, format!("file at depth {depth}\n").as_bytes());
    }
    // Their metadata too: the deepest directory's mode and the deepest file's mtime.
    let rel = files.last().unwrap().strip_prefix("/").unwrap();
    let fd = open_beneath(&target, rel, OFlags::RDONLY);
    let restored_mtime = rustix::fs::fstat(&fd).unwrap().st_mtime;
    assert_eq!(
        restored_mtime,
        fs::metadata(files.last().unwrap()).unwrap().mtime()
    );
}

/// Regression: sockets were listed in snapshots but silently not restored ("0 errors").
#[test]
fn sockets_are_restored() {
    let t = setup();
    t.init();
    let src = t.join("src");
    mkdirs(&src);
    let listener = std::os::unix::net::UnixListener::bind(src.join("sock")).unwrap();
    chmod(src.join("sock"), 0o640);
    write(src.join("file"), "beside the socket\n");
    let tree = scan(&src);
    drop(listener);
    let snap = t.backup([&src]);
    assert_restores(&t, &id(&snap), &src, &tree);
}

/// Regression: backup walked the sources by path, so entries whose path exceeds PATH_MAX at
/// the source were skipped with "File name too long".
#[test]
fn sources_beyond_path_max_are_backed_up() {
    let t = setup();
    t.init();
    let src = t.join("src");
    mkdirs(&src);
    // Twenty-four levels of 200-byte names, made relative to each parent's descriptor (the
    // test cannot name them whole either), with a file at each level.
    let level = "d".repeat(200);
    let mut dir =
        rustix::fs::open(&src, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty()).unwrap();
    let mut rel = PathBuf::new();
    let mut files = Vec::new();
    for depth in 0..24 {
        rustix::fs::mkdirat(&dir, level.as_str(), Mode::from_raw_mode(0o755)).unwrap();
        dir = rustix::fs::openat(
            &dir,
            level.as_str(),
            OFlags::DIRECTORY | OFlags::RDONLY,
            Mode::empty(),
        )
        .unwrap();
        rel.push(&level);
        let name = format!("f{depth:02}");
        let fd = rustix::fs::openat(
            &dir,
            name.as_str(),
            OFlags::WRONLY | OFlags::CREATE,
            Mode::from_raw_mode(0o644),
        )
        .unwrap();
        std::io::Write::write_all(
            &mut fs::File::from(fd),
            format!("depth {depth}\n").as_bytes(),
        )
        .unwrap();
        files.push(rel.join(name));
    }
    assert!(src.join(files.last().unwrap()).as_os_str().len() > 4096);
    let summary = t.backup([&src]);
    assert_eq!(
        summary["errors"].as_array().map(Vec::len),
        Some(0),
        "{summary}"
    );
    let target = t.join("restore");
    let run = t.restore("latest", &target);
    assert!(run.stdout().contains("restored 24 files"), "{run:?}");
    let root = restored(&target, &src);
    for (depth, file) in files.iter().enumerate() {
        let fd = open_beneath(&root, file, OFlags::RDONLY);
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut fs::File::from(fd), &mut back).unwrap();
        assert_eq!(back, format!("depth {depth}\n").as_bytes());
    }
    // The test directory's removal cannot reach that deep by path either.
    for top in [src.join(&level), root.join(&level)] {
        let (ok, err) = sh("rm", &[OsStr::new("-rf"), top.as_os_str()]);
        assert!(ok, "{err}");
    }
}

/// Regression: a file the restore was still writing was reopened by path, so one swapped for a
/// hard link to another file (which `O_NOFOLLOW` does not stop) had the rest of its content
/// written into that file. Files of many small chunks in 1 MiB packs are written by several
/// pack reads each, every one reopening the file.
#[test]
fn a_file_swapped_for_a_hard_link_while_written_is_not_written_through() {
    let t = setup();
    t.init_with(&["--pack-size", "1", "--chunk-size", "64"]);
    let src = t.join("src");
    for i in 0..6 {
        write(src.join(format!("f{i}")), random_bytes(700 + i, 6 << 20));
    }
    let tree = scan(&src);
    t.backup([&src]);
    let outside = t.join("outside");
    write(&outside, "not yours\n");
    chmod(&outside, 0o644);
    for attempt in 0..5 {
        let target = t.join(format!("r{attempt}"));
        let root = restored(&target, &src);
        let Some(child) = stop_half_way(restore_cmd(&t, &target), &root, &tree) else {
            continue;
        };
        let in_flight = tree.iter().find(|(p, e)| {
            e.kind == Kind::File && root.join(p).exists() && !looks_complete(&root.join(p), e)
        });
        let Some((rel, _)) = in_flight else {
            signal(&child, rustix::process::Signal::CONT);
            child.wait_with_output().unwrap();
            continue;
        };
        fs::remove_file(root.join(rel)).unwrap();
        fs::hard_link(&outside, root.join(rel)).unwrap();
        signal(&child, rustix::process::Signal::CONT);
        let out = child.wait_with_output().unwrap();
        assert!(
            fs::read(&outside).unwrap() == b"not yours\n",
            "the restore wrote through a hard link: {out:?}"
        );
        assert_eq!(entry(&outside).mode, 0o644);
        // The restore notices the swap when it reopens the file for a later pack; when the
        // pack it was stopped in held the last of the file, it finished the file through the
        // descriptor it had, and the swap only took a name in a directory the user can write.
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() || stderr.contains("replaced during the restore"),
            "{out:?}"
        );
        return;
    }
    panic!("five restores could not be stopped while a file was being written");
}

/// Regression: restore kept ("resumed") any file in the target with the right size, mtime and
/// content, then gave it the snapshot's owner and mode: a local user could plant such a file
/// (their own, or with a second name of theirs) and keep writing to what a root restore made
/// root's. A fifo at a file's name blocked the restore for ever. Only a file this restore could
/// have written is kept; anything else is replaced.
#[test]
fn planted_files_and_fifos_are_replaced_not_adopted() {
    let t = setup();
    t.init();
    let src = t.join("src");
    write(src.join("linked"), "content a restore would keep\n");
    write(src.join("theirs"), "content owned by someone else\n");
    write(src.join("fifo-here"), "a file, not a fifo\n");
    let tree = scan(&src);
    t.backup([&src]);
    let target = t.join("restore");
    let root = restored(&target, &src);
    mkdirs(&root);
    // The right bytes and times, but a second name outside the restored tree.
    fs::copy(src.join("linked"), root.join("linked")).unwrap();
    set_mtime(
        root.join("linked"),
        tree[Path::new("linked")].mtime_ns as i64,
    );
    fs::hard_link(root.join("linked"), t.join("attackers-name")).unwrap();
    if is_root() {
        fs::copy(src.join("theirs"), root.join("theirs")).unwrap();
        set_mtime(
            root.join("theirs"),
            tree[Path::new("theirs")].mtime_ns as i64,
        );
        std::os::unix::fs::chown(root.join("theirs"), Some(65534), Some(65534)).unwrap();
    }
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("fifo-here"),
        rustix::fs::FileType::Fifo,
        Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let before = fs::metadata(t.join("attackers-name")).unwrap().ino();

    let mut cmd = t.command();
    cmd.args([
        OsStr::new("restore"),
        OsStr::new("latest"),
        OsStr::new("--target"),
    ])
    .arg(&target)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("restore hangs on a fifo in the target");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    assert_same_tree(&tree, &scan(&root), Compare::exact());
    assert_ne!(
        fs::metadata(root.join("linked")).unwrap().ino(),
        before,
        "restore adopted a file that has a name outside its tree"
    );
    assert_eq!(fs::metadata(t.join("attackers-name")).unwrap().nlink(), 1);
    if is_root() {
        assert_eq!(fs::metadata(root.join("theirs")).unwrap().uid(), 0);
    }
}
