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
