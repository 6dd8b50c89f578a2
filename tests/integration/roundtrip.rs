//! Back up a tree full of awkward cases, restore it, and compare everything.

use crate::util::*;
use std::fs;
use std::os::unix::fs::{symlink, FileExt, MetadataExt};
use std::path::{Path, PathBuf};

const MIB: usize = 1 << 20;
const SPARSE_LEN: u64 = 64 << 20;

/// What the generator managed to create (some parts need root or file system support).
struct Generated {
    sparse: PathBuf,
    device: bool,
    xattrs: bool,
}

/// Sets user xattrs on `path`; returns false (with the reason printed) if the file system
/// refuses them.
fn try_xattrs(path: &Path, attrs: &[(&str, &[u8])]) -> bool {
    for (k, v) in attrs {
        if let Err(e) = rustix::fs::lsetxattr(path, *k, v, rustix::fs::XattrFlags::empty()) {
            eprintln!("note: the file system refuses user xattrs ({e}); the xattr part is skipped");
            return false;
        }
    }
    true
}

fn generate(src: &Path, outside: &Path) -> Generated {
    mkdirs(src);

    // Regular files, empty files, long and non-UTF-8 names.
    write(src.join("plain/hello.txt"), "hello, world\n");
    write(src.join("plain/empty"), "");
    write(src.join("other/empty too"), "");
    write(
        src.join("plain/spaces and\ttab and \\ and 'quotes'.txt"),
        "odd name\n",
    );
    let long = format!("{}.txt", "L".repeat(251));
    assert_eq!(long.len(), 255);
    write(
        src.join("plain").join(&long),
        "a file with a 255-byte name\n",
    );
    write(
        src.join("plain").join(name(b"bad-\xff\xfe-name.bin")),
        b"\x00\xff not utf-8 \xfe",
    );
    write(
        src.join(name(b"dir-\xff\x80"))
            .join(name(b"\xc3\x28-inner")),
        "inside a non-UTF-8 directory\n",
    );

    // Times an i64 of nanoseconds cannot hold (it ends in 2262), one before the epoch, and one
    // with nanoseconds: the format stores seconds and nanoseconds apart.
    write(src.join("times/year-2400"), "far future\n");
    set_mtime_parts(src.join("times/year-2400"), 13_569_465_600, 123_456_789);
    write(src.join("times/year-1960"), "before the epoch\n");
    set_mtime_parts(src.join("times/year-1960"), -315_619_200, 999_999_999);

    // Thirty levels of directories.
    let mut deep = src.join("deep");
    for i in 0..30 {
        deep.push(format!("d{i:02}"));
    }
    write(deep.join("bottom.txt"), "at the bottom\n");

    // Multi-MiB files: random (incompressible) and repetitive (compressible, deduplicable).
    write(src.join("big/random.bin"), random_bytes(1, 3 * MIB + 17));
    let line = b"cairn repetitive line 0123456789 abcdefghijklmnopqrstuvwxyz\n";
    let rep: Vec<u8> = line.iter().copied().cycle().take(5 * MIB + 3).collect();
    write(src.join("big/repetitive.txt"), rep);

    // Empty directories.
    mkdirs(src.join("empty-dir"));
    mkdirs(src.join("empty-outer/empty-inner"));

    // Symlinks: to a file, dangling, to a directory, absolute, with a non-UTF-8 target.
    mkdirs(src.join("links"));
    symlink("../plain/hello.txt", src.join("links/to-file")).unwrap();
    symlink("does/not/exist", src.join("links/dangling")).unwrap();
    symlink("../deep", src.join("links/to-dir")).unwrap();
    symlink("/etc/hostname", src.join("links/absolute")).unwrap();
    symlink(name(b"target-\xff"), src.join("links/non-utf8-target")).unwrap();
    let long_target = format!("{}/end", "long-target-component".repeat(48));
    symlink(&long_target, src.join("links/long-target")).unwrap();

    // Hard links: a group of three names across directories, a separate pair, and a pair whose
    // inode has a third name outside the backed-up tree.
    write(src.join("hard/a/one"), "hard-linked content, group one\n");
    mkdirs(src.join("hard/b"));
    fs::hard_link(src.join("hard/a/one"), src.join("hard/b/two")).unwrap();
    fs::hard_link(src.join("hard/a/one"), src.join("hard/three")).unwrap();
    write(src.join("hard/pair-1"), "hard-linked content, group two\n");
    fs::hard_link(src.join("hard/pair-1"), src.join("hard/a/pair-2")).unwrap();
    write(
        outside.join("outside-link"),
        "hard-linked content, group three\n",
    );
    fs::hard_link(outside.join("outside-link"), src.join("hard/x-1")).unwrap();
    fs::hard_link(outside.join("outside-link"), src.join("hard/b/x-2")).unwrap();

    // A fifo, and a character device when we may make one.
    mkdirs(src.join("special"));
    rustix::fs::mknodat(
        rustix::fs::CWD,
        src.join("special/fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o640),
        0,
    )
    .unwrap();
    let device = match rustix::fs::mknodat(
        rustix::fs::CWD,
        src.join("special/null"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    ) {
        Ok(()) => true,
        Err(e) => {
            eprintln!("note: cannot make a character device ({e}); that part is skipped");
            false
        }
    };

    if device {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            src.join("special/block"),
            rustix::fs::FileType::BlockDevice,
            rustix::fs::Mode::from_raw_mode(0o600),
            rustix::fs::makedev(7, 200),
        )
        .unwrap();
    }

    // A sparse file: 64 MiB long, a few KiB of data in the middle.
    let sparse = src.join("sparse.img");
    let f = fs::File::create(&sparse).unwrap();
    f.set_len(SPARSE_LEN).unwrap();
    f.write_all_at(&random_bytes(2, 5000), 32 * MIB as u64 + 123)
        .unwrap();
    drop(f);

    // Extended attributes.
    write(src.join("xattr/file"), "has xattrs\n");
    mkdirs(src.join("xattr/dir"));
    let xattrs = try_xattrs(
        &src.join("xattr/file"),
        &[
            ("user.cairn.text", b"hello"),
            ("user.cairn.binary", b"\x00\x01\xff\xfe"),
            ("user.cairn.empty", b""),
        ],
    ) && try_xattrs(
        &src.join("xattr/dir"),
        &[("user.cairn.dir", b"on a directory")],
    );

    // More attribute names than fit the first buffer a reader might use.
    write(src.join("xattr/many"), "many xattrs\n");
    if xattrs {
        for i in 0..30 {
            let k = format!("user.cairn.a-rather-long-attribute-name-{i:02}");
            let v = format!("value {i}");
            assert!(try_xattrs(&src.join("xattr/many"), &[(&k, v.as_bytes())]));
        }
    }

    // Unusual modes.
    write(src.join("modes/private"), "0600\n");
    chmod(src.join("modes/private"), 0o600);
    write(src.join("modes/exec"), "#!/bin/sh\n");
    chmod(src.join("modes/exec"), 0o755);
    write(src.join("modes/readonly"), "0444\n");
    chmod(src.join("modes/readonly"), 0o444);
    // Unreadable but for root (whom cairn runs as when it is run as root).
    if is_root() {
        write(src.join("modes/nothing"), "0000\n");
        chmod(src.join("modes/nothing"), 0o000);
    }
    write(
        src.join("modes/setgid-dir/inside"),
        "in a setgid directory\n",
    );
    chmod(src.join("modes/setgid-dir"), 0o2775);
    mkdirs(src.join("modes/sticky-dir"));
    chmod(src.join("modes/sticky-dir"), 0o1777);
    write(
        src.join("modes/locked-dir/inside"),
        "in a read-only directory\n",
    );

    // Root-only attributes: a file capability (which a chown would clear, so restore must set
    // it after the owner) and a trusted.* attribute on a symlink.
    if is_root() {
        write(src.join("caps/ping"), "pretend ping\n");
        // vfs_cap_data revision 2, effective, permitted = CAP_NET_RAW.
        let cap: [u8; 20] = [
            1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        if let Err(e) = rustix::fs::lsetxattr(
            src.join("caps/ping"),
            "security.capability",
            &cap,
            rustix::fs::XattrFlags::empty(),
        ) {
            eprintln!("note: cannot set a file capability ({e}); that part is skipped");
        }
        symlink("ping", src.join("caps/link")).unwrap();
        if let Err(e) = rustix::fs::lsetxattr(
            src.join("caps/link"),
            "trusted.cairn",
            b"on a symlink",
            rustix::fs::XattrFlags::empty(),
        ) {
            eprintln!(
                "note: cannot set a trusted.* xattr on a symlink ({e}); that part is skipped"
            );
        }
    }

    // Owners (root only), set before the set-uid bits because chown clears them.
    if is_root() {
        write(src.join("owners/file"), "owned by 1234:5678\n");
        mkdirs(src.join("owners/dir"));
        symlink("file", src.join("owners/link")).unwrap();
        std::os::unix::fs::chown(src.join("owners/file"), Some(1234), Some(5678)).unwrap();
        std::os::unix::fs::chown(src.join("owners/dir"), Some(4321), Some(8765)).unwrap();
        std::os::unix::fs::lchown(src.join("owners/link"), Some(2222), Some(3333)).unwrap();
        write(src.join("owners/setuid"), "set-uid, owned by 1234:5678\n");
        std::os::unix::fs::chown(src.join("owners/setuid"), Some(1234), Some(5678)).unwrap();
        chmod(src.join("owners/setuid"), 0o4755);
    }
    write(src.join("modes/setuid"), "4755\n");
    chmod(src.join("modes/setuid"), 0o4755);
    chmod(src.join("modes/locked-dir"), 0o555);

    // Times: distinct nanosecond mtimes on everything, one before 1970; directories last and
    // deepest first, so that nothing disturbs them afterwards.
    let tree = scan(src);
    let mut i = 0i64;
    for (p, e) in &tree {
        if e.kind != Kind::Dir {
            i += 1;
            set_mtime(src.join(p), 1_700_000_000_123_456_789 + i * 1_000_000_007);
        }
    }
    set_mtime(src.join("plain/hello.txt"), -86_400_000_000_001);
    set_mtime(src.join("links/to-file"), 1_234_567_890_987_654_321);
    for (p, e) in tree.iter().rev() {
        if e.kind == Kind::Dir {
            i += 1;
            set_mtime(src.join(p), 1_600_000_000_000_000_001 + i * 999_999_937);
        }
    }
    Generated {
        sparse,
        device,
        xattrs,
    }
}

#[test]
fn tricky_tree_round_trips_exactly() {
    let t = setup();
    t.init();
    let src = t.join("src");
    let outside = t.join("outside");
    mkdirs(&outside);
    let gen = generate(&src, &outside);
    let before = scan(&src);

    // Sanity of the generated tree itself.
    let groups = hardlink_groups(&before);
    assert_eq!(
        groups.len(),
        3,
        "the generator should make three hard-link groups: {groups:?}"
    );
    let sparse_meta = fs::metadata(&gen.sparse).unwrap();
    assert!(
        sparse_meta.blocks() * 512 < SPARSE_LEN / 4,
        "the source sparse file is not sparse here"
    );
    assert_eq!(before.contains_key(Path::new("special/null")), gen.device);
    if gen.xattrs {
        assert_eq!(before[Path::new("xattr/file")].xattrs.len(), 3);
    }

    let summary = t.backup([&src]);
    assert_eq!(summary["errors"], serde_json::json!([]), "{summary}");
    let files = before.values().filter(|e| e.kind == Kind::File).count() as u64;
    assert_eq!(num(&summary, "total_files"), files, "{summary}");
    assert_eq!(num(&summary, "files_new"), files, "{summary}");
    let bytes: u64 = before
        .values()
        .filter(|e| e.kind == Kind::File)
        .map(|e| e.size)
        .sum();
    assert_eq!(num(&summary, "total_bytes"), bytes, "{summary}");

    // Backing up changed nothing in the source.
    assert_same_tree(&before, &scan(&src), Compare::exact());

    // The listing names every path, non-UTF-8 ones byte for byte.
    let listed = t.ls_recursive("latest", &src);
    let expected: std::collections::BTreeSet<PathBuf> = before
        .keys()
        .filter(|p| !p.as_os_str().is_empty())
        .map(|p| src.join(p))
        .collect();
    assert_eq!(listed, expected);

    let target = t.join("restore");
    let run = t.restore("latest", &target);
    assert!(
        !run.stderr().contains("warning"),
        "restore warned:\n{run:?}"
    );
    let restored_src = restored(&target, &src);
    assert_same_tree(&before, &scan(&restored_src), Compare::exact());
    let meta = fs::metadata(restored(&target, &gen.sparse)).unwrap();
    assert_eq!(meta.len(), SPARSE_LEN);
    assert!(
        meta.blocks() * 512 < SPARSE_LEN,
        "the restored sparse file has {} bytes allocated for {} bytes of length: holes were filled",
        meta.blocks() * 512,
        SPARSE_LEN
    );

    t.check();

    // Restoring again over the restored tree gives the same tree.
    t.restore("latest", &target);
    assert_same_tree(&before, &scan(&restored_src), Compare::exact());
}

/// Single files, symlinks and nested directories as sources: each is stored whole (a symlink as
/// a symlink), nested ones collapse into their ancestor, and siblings not named are left out.
#[test]
fn file_symlink_and_nested_sources() {
    let t = setup();
    t.init();
    let src = t.join("src");
    write(src.join("dir/a.txt"), "a\n");
    write(src.join("dir/sub/b.txt"), "b\n");
    write(src.join("file.txt"), "a single file\n");
    write(src.join("left-out.txt"), "not a source\n");
    symlink("dir", src.join("link")).unwrap();
    set_mtime(src.join("file.txt"), 1_500_000_000_000_000_007);
    let mut expected = scan(&src);
    expected.remove(Path::new("left-out.txt"));

    let sources = [
        src.join("file.txt"),
        src.join("link"),
        src.join("dir/sub"),
        src.join("dir"),
    ];
    let s = t.backup(&sources);
    assert_eq!(num(&s, "total_files"), 3, "{s}");
    let snaps = t.snapshots();
    let paths: Vec<&str> = snaps[0]["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    let want: Vec<String> = ["dir", "file.txt", "link"]
        .iter()
        .map(|p| src.join(p).display().to_string())
        .collect();
    assert_eq!(paths, want);

    let target = t.join("restore");
    t.restore("latest", &target);
    assert_same_tree(&expected, &scan(&restored(&target, &src)), Compare::exact());

    // Relative source paths mean the same paths: the next backup finds its parent.
    let s = t.backup(["src/file.txt", "src/link", "src/dir/"]);
    assert_eq!(string(&s, "parent"), string(&snaps[0], "id"), "{s}");
    assert_eq!(num(&s, "bytes_read"), 0, "{s}");
}

/// `ls --json` and `ls --long` describe entries as they are.
#[test]
fn ls_describes_entries() {
    let t = setup();
    t.init();
    let src = t.join("src");
    write(src.join("file.txt"), "twelve bytes");
    chmod(src.join("file.txt"), 0o640);
    symlink("file.txt", src.join("link")).unwrap();
    mkdirs(src.join("dir"));
    chmod(src.join("dir"), 0o750);
    // 2023-11-14T22:13:20.123456789Z
    set_mtime(src.join("file.txt"), 1_700_000_000_123_456_789);
    t.backup([&src]);

    let out = t.ok([
        std::ffi::OsStr::new("ls"),
        "latest".as_ref(),
        src.as_os_str(),
        "--json".as_ref(),
    ]);
    let docs: Vec<serde_json::Value> = out
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(docs.len(), 3, "{out:?}");
    let find = |name: &str| {
        let path = src.join(name).display().to_string();
        docs.iter()
            .find(|d| d["path"].as_str() == Some(path.as_str()))
            .unwrap_or_else(|| panic!("{name} not listed: {out:?}"))
    };
    let file = find("file.txt");
    assert_eq!(file["type"], "file");
    assert_eq!(num(file, "mode"), 0o640);
    assert_eq!(num(file, "size"), 12);
    assert_eq!(file["mtime"], "2023-11-14T22:13:20.123456789Z");
    assert_eq!(find("link")["type"], "symlink");
    assert_eq!(find("link")["target"], "file.txt");
    assert_eq!(find("dir")["type"], "dir");
    assert_eq!(num(find("dir"), "mode"), 0o750);

    let out = t
        .ok([
            std::ffi::OsStr::new("ls"),
            "latest".as_ref(),
            src.as_os_str(),
            "--long".as_ref(),
        ])
        .stdout();
    let line = |name: &str| {
        out.lines()
            .find(|l| l.contains(&*src.join(name).to_string_lossy()))
            .unwrap_or_else(|| panic!("{name}: {out}"))
    };
    assert!(line("file.txt").starts_with("-rw-r-----"), "{out}");
    assert!(line("file.txt").contains(" 12 "), "{out}");
    assert!(line("dir").starts_with("drwxr-x---"), "{out}");
    assert!(
        line("link").starts_with('l') && line("link").ends_with(" -> file.txt"),
        "{out}"
    );

    // A single file, and a path that is not there.
    let one = t.ok([
        std::ffi::OsStr::new("ls"),
        "latest".as_ref(),
        src.join("file.txt").as_os_str(),
    ]);
    assert_eq!(
        one.stdout().trim(),
        src.join("file.txt").display().to_string()
    );
    let missing = src.join("missing");
    let run = t
        .run([
            std::ffi::OsStr::new("ls"),
            "latest".as_ref(),
            missing.as_os_str(),
        ])
        .failure();
    assert!(
        run.error_line().contains(&*missing.to_string_lossy()),
        "{run:?}"
    );
}

/// Restoring into a directory that already holds an earlier (or tampered) restore: wrong files
/// are replaced, never followed through symlinks, unrelated files are left alone, and the result
/// is the snapshot again.
#[test]
fn restore_over_an_existing_tree_repairs_it() {
    let t = setup();
    t.init();
    let src = t.join("src");
    write(src.join("same-size.txt"), "original content\n");
    write(src.join("truncated.bin"), random_bytes(60, 100_000));
    write(src.join("mode.txt"), "mode\n");
    chmod(src.join("mode.txt"), 0o640);
    write(src.join("was-link.txt"), "a file, not a link\n");
    write(src.join("dir/inner.txt"), "inside\n");
    write(src.join("hard/one"), "linked\n");
    fs::hard_link(src.join("hard/one"), src.join("hard/two")).unwrap();
    set_mtime(src.join("same-size.txt"), 1_650_000_000_000_000_001);
    for (d, ns) in dir_mtimes(&src) {
        set_mtime(d, ns - 1_000_000_007);
    }
    let tree = scan(&src);
    t.backup([&src]);

    let target = t.join("restore");
    t.restore("latest", &target);
    let out = restored(&target, &src);
    assert_same_tree(&tree, &scan(&out), Compare::exact());

    // Things outside the target that symlinks will point at.
    let outside = t.join("outside");
    write(outside.join("victim.txt"), "must not be overwritten\n");
    let outside_before = fingerprint(&outside);

    // Same size and mtime, other bytes.
    let meta = entry(&out.join("same-size.txt"));
    write(out.join("same-size.txt"), "ORIGINAL CONTENT\n");
    set_mtime(out.join("same-size.txt"), meta.mtime_ns as i64);
    // Cut short, as by an interrupted restore.
    fs::OpenOptions::new()
        .write(true)
        .open(out.join("truncated.bin"))
        .unwrap()
        .set_len(10)
        .unwrap();
    chmod(out.join("mode.txt"), 0o777);
    fs::remove_file(out.join("was-link.txt")).unwrap();
    symlink(outside.join("victim.txt"), out.join("was-link.txt")).unwrap();
    fs::remove_dir_all(out.join("dir")).unwrap();
    symlink(&outside, out.join("dir")).unwrap();
    fs::remove_file(out.join("hard/two")).unwrap();
    write(out.join("hard/two"), "linked\n");
    write(out.join("unrelated.txt"), "not in the snapshot\n");
    let unrelated = entry(&out.join("unrelated.txt"));

    let run = t.ok([
        std::ffi::OsStr::new("restore"),
        "latest".as_ref(),
        "--target".as_ref(),
        target.as_os_str(),
        "--verify".as_ref(),
    ]);
    assert_unchanged(
        &outside_before,
        &fingerprint(&outside),
        "a directory outside the restore target",
    );
    let mut expected = tree.clone();
    expected.insert("unrelated.txt".into(), unrelated);
    let got = scan(&out);
    let diffs = diff_trees(&expected, &got, Compare::exact());
    assert!(
        diffs.is_empty(),
        "the second restore did not repair the tree:\n  {}\n{run:?}",
        diffs.join("\n  ")
    );
}

/// A source named through a symlinked directory (`src/link/sub` with `link -> real`): if the
/// backup succeeds, its snapshot must list, restore, and serve as the next backup's parent.
#[test]
fn source_below_a_symlinked_directory() {
    let t = setup();
    t.init();
    let src = t.join("src");
    write(src.join("real/sub/file.txt"), "reached through a symlink\n");
    symlink("real", src.join("link")).unwrap();
    let source = src.join("link/sub");

    let run = t.backup_run([&source]);
    if run.code != Some(0) {
        // Refusing such a source is fine, if it is clean.
        run.failure().error_line();
        assert!(t.snapshots().is_empty());
        return;
    }
    let ls = t.run(["ls", "latest", "/", "--recursive"]);
    assert_eq!(
        ls.code,
        Some(0),
        "the new snapshot cannot be listed:\n{ls:?}"
    );
    let target = t.join("restore");
    let run = t.run([
        std::ffi::OsStr::new("restore"),
        "latest".as_ref(),
        "--target".as_ref(),
        target.as_os_str(),
    ]);
    assert_eq!(
        run.code,
        Some(0),
        "the new snapshot cannot be restored:\n{run:?}"
    );
    // Directories leading to a source are stored resolved: the file is under `real`.
    let restored_file = restored(
        &target,
        &fs::canonicalize(&source).unwrap().join("file.txt"),
    );
    assert_eq!(
        fs::read(&restored_file).ok().as_deref(),
        Some(&b"reached through a symlink\n"[..]),
        "{} not restored",
        restored_file.display()
    );
    let again = t.backup_run([&source]);
    assert_eq!(
        again.code,
        Some(0),
        "the next backup of the same path fails:\n{again:?}"
    );
}

/// Restore into an empty target creates each file once and writes its content and metadata
/// through that one descriptor, as `cp -a` does: no other open names the file (issue 18; it
/// was opened twice, once to look for a file an earlier restore had left).
#[test]
fn restore_into_an_empty_target_opens_each_file_once() {
    let t = setup();
    t.init();
    let src = t.join("src");
    let names: Vec<String> = (0..40).map(|i| format!("file-{i:02}.txt")).collect();
    for (i, name) in names.iter().enumerate() {
        write(src.join(name), "x".repeat(i * 100));
    }
    let snapshot = id(&t.backup([&src]));
    let tree = scan(&src);

    let target = t.join("target");
    let trace = t.join("openat.trace");
    let cairn = t.command();
    let mut cmd = std::process::Command::new("strace");
    cmd.args(["-f", "-qq", "-e", "trace=open,openat,openat2,creat", "-o"])
        .arg(&trace)
        .arg(cairn.get_program())
        .args(["restore", &snapshot, "--target"])
        .arg(&target);
    if let Some(dir) = cairn.get_current_dir() {
        cmd.current_dir(dir);
    }
    for (k, v) in cairn.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let out = cmd
        .output()
        .expect("run strace (installed by `cargo xtask servers`)");
    assert!(out.status.success(), "{out:?}");
    let log = fs::read_to_string(&trace).unwrap();
    for name in &names {
        let quoted = format!("\"{name}\"");
        let opens: Vec<&str> = log.lines().filter(|l| l.contains(&quoted)).collect();
        assert_eq!(
            opens.len(),
            1,
            "{name} opened other than once:\n{}",
            opens.join("\n")
        );
        assert!(opens[0].contains("O_CREAT"), "{}", opens[0]);
    }
    assert_restores(&t, &snapshot, &src, &tree);
}
