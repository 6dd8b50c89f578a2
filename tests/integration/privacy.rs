//! Nothing of the backed-up data or its names may appear in plaintext in the repository or the
//! local cache.

use crate::util::*;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;

const CONTENT: &str = "CAIRN-SECRET-CONTENT-MARKER";
const FILE_NAME: &str = "cairn-secret-file-name-marker.txt";
const DIR_NAME: &str = "cairn-secret-dir-name-marker";
const SOURCE_DIR: &str = "cairn-secret-source-dir-marker";
const LINK_TARGET: &str = "cairn-secret-symlink-target-marker";
const XATTR_VALUE: &str = "cairn-secret-xattr-value-marker";
const TAG: &str = "cairn-secret-tag-marker";
const HOST: &str = "cairn-secret-host-marker";

#[test]
fn no_plaintext_in_repository_or_cache() {
    let t = setup();
    t.init();
    let src = t.join(SOURCE_DIR);
    // Compressible text, a file too small to be worth compressing, and names.
    write(src.join(FILE_NAME), format!("{CONTENT}\n").repeat(20_000));
    write(src.join(DIR_NAME).join("small"), CONTENT);
    write(
        src.join("mixed.bin"),
        [
            random_bytes(5, 70_000),
            CONTENT.as_bytes().to_vec(),
            random_bytes(6, 70_000),
        ]
        .concat(),
    );
    std::os::unix::fs::symlink(LINK_TARGET, src.join("link")).unwrap();
    let with_xattr = rustix::fs::lsetxattr(
        src.join(DIR_NAME).join("small"),
        "user.cairn.secret",
        XATTR_VALUE.as_bytes(),
        rustix::fs::XattrFlags::empty(),
    )
    .is_ok();
    if !with_xattr {
        eprintln!("note: user xattrs are not supported here; the xattr marker is not checked");
    }

    let s = t.backup([
        src.as_os_str(),
        "--tag".as_ref(),
        TAG.as_ref(),
        "--host".as_ref(),
        HOST.as_ref(),
    ]);
    assert_eq!(num(&s, "total_files"), 3, "{s}");
    // Use the repository the ways that fill the cache: list, ls, restore.
    t.snapshots();
    t.ls_recursive("latest", &src);
    let target = t.join("restore");
    t.restore("latest", &target);
    assert_eq!(
        fs::read(restored(&target, &src.join(FILE_NAME))).unwrap(),
        fs::read(src.join(FILE_NAME)).unwrap()
    );

    let mut markers: Vec<&[u8]> = vec![
        CONTENT.as_bytes(),
        FILE_NAME.as_bytes(),
        DIR_NAME.as_bytes(),
        SOURCE_DIR.as_bytes(),
        src.as_os_str().as_bytes(),
        LINK_TARGET.as_bytes(),
        TAG.as_bytes(),
        HOST.as_bytes(),
    ];
    if with_xattr {
        markers.push(XATTR_VALUE.as_bytes());
    }
    // The scan itself must be able to see a marker where there is one.
    assert!(contains(
        &fs::read(src.join(FILE_NAME)).unwrap(),
        CONTENT.as_bytes()
    ));

    let mut scanned = 0;
    let mut found = Vec::new();
    for dir in [t.repo(), t.cache()] {
        assert!(dir.is_dir(), "{} does not exist", dir.display());
        for file in files_below(&dir) {
            scanned += 1;
            let bytes = fs::read(&file).unwrap();
            for m in &markers {
                let name = OsStr::from_bytes(m).to_string_lossy();
                if contains(&bytes, m) {
                    found.push(format!("{name:?} in the content of {}", file.display()));
                }
                if contains(file.as_os_str().as_bytes(), m) {
                    found.push(format!("{name:?} in the name of {}", file.display()));
                }
            }
        }
    }
    assert!(scanned >= 5, "only {scanned} files scanned");
    assert!(
        found.is_empty(),
        "plaintext found:\n  {}",
        found.join("\n  ")
    );
}

/// Regression: the cache, which holds decrypted metadata, followed the umask (0777 directories
/// and 0666 files under `umask 000`), so any local user could read or rewrite it; and a cache
/// directory of another user's was used as it was.
#[test]
fn cache_is_private_whatever_the_umask() {
    use std::os::unix::fs::MetadataExt;
    let t = setup();
    t.init();
    let src = t.join("src");
    write(src.join("a"), CONTENT);
    let with_umask_000 = |cache: &std::path::Path| {
        let base = t.command();
        let mut cmd = std::process::Command::new("sh");
        cmd.arg("-c")
            .arg("umask 000 && exec \"$0\" \"$@\"")
            .arg(base.get_program())
            .args([OsStr::new("backup"), src.as_os_str()]);
        for (k, v) in base.get_envs() {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        cmd.env("CAIRN_CACHE_DIR", cache)
            .current_dir(t.path())
            .stdin(std::process::Stdio::null());
        Run::of(cmd)
    };
    let cache = t.join("fresh-cache");
    with_umask_000(&cache).success();
    let mut seen = 0;
    for entry in scan(&cache)
        .keys()
        .map(|p| cache.join(p))
        .chain([cache.clone()])
    {
        let meta = fs::symlink_metadata(&entry).unwrap();
        let mode = meta.mode() & 0o777;
        if meta.is_dir() {
            assert_eq!(mode, 0o700, "{}", entry.display());
        } else {
            assert_eq!(mode & 0o077, 0, "{} is {mode:o}", entry.display());
            seen += 1;
        }
    }
    assert!(seen > 0, "the backup left no cache file to look at");

    // A cache directory others can write to is refused, with one line naming it.
    let open = t.join("open-cache");
    mkdirs(&open);
    chmod(&open, 0o777);
    let run = with_umask_000(&open).failure();
    let line = run.error_line();
    assert!(
        line.contains("open-cache") && line.contains("other users"),
        "{line}"
    );

    // So is one that belongs to another user (who could swap its files for links).
    if is_root() {
        let theirs = t.join("their-cache");
        mkdirs(&theirs);
        chown_tree(&theirs, 65534, 65534);
        let run = with_umask_000(&theirs).failure();
        let line = run.error_line();
        assert!(
            line.contains("their-cache") && line.contains("uid 65534"),
            "{line}"
        );
    }
}
