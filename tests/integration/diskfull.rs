//! A repository on a file system that fills up: the backup fails cleanly, saves no snapshot, and
//! the snapshots already there still restore.

use crate::util::*;
use std::ffi::OsStr;
use std::fs;
use std::path::Path;

/// Mounts a file system of about 3 MiB at `dir`: a tmpfs, else an ext4 image on a loop device.
/// Returns why neither worked.
fn small_fs(dir: &Path, scratch: &Path) -> Result<Mount, String> {
    let tmpfs_err = match mount_tmpfs(dir, "3m") {
        Ok(m) => return Ok(m),
        Err(e) => e,
    };
    let image = scratch.join("small.ext4");
    let f = fs::File::create(&image).unwrap();
    f.set_len(4 << 20).unwrap();
    drop(f);
    let mkfs = [
        OsStr::new("-q"),
        OsStr::new("-F"),
        OsStr::new("-m"),
        OsStr::new("0"),
        image.as_os_str(),
    ];
    let (ok, mkfs_err) = sh("mkfs.ext4", &mkfs);
    if !ok {
        return Err(format!(
            "mount -t tmpfs: {tmpfs_err}; mkfs.ext4: {mkfs_err}"
        ));
    }
    let (ok, loop_err) = sh(
        "mount",
        &[
            OsStr::new("-o"),
            OsStr::new("loop"),
            image.as_os_str(),
            dir.as_os_str(),
        ],
    );
    if ok {
        return Ok(Mount::new(dir));
    }
    Err(format!(
        "mount -t tmpfs: {tmpfs_err}; mount -o loop: {loop_err}"
    ))
}

#[test]
fn full_file_system_fails_cleanly_and_keeps_earlier_snapshots() {
    let mut t = setup();
    let mnt = t.join("mnt");
    let _mount = match small_fs(&mnt, t.path()) {
        Ok(m) => m,
        Err(why) => {
            // Only the lack of privilege excuses not running this test.
            assert!(
                !is_root(),
                "cannot mount a small file system as root: {why}"
            );
            let why_lower = why.to_lowercase();
            assert!(
                ["superuser", "permission", "not permitted", "only root"]
                    .iter()
                    .any(|w| why_lower.contains(w)),
                "mounting failed for an unexpected reason: {why}"
            );
            eprintln!("note: the full-disk test did not run: no small file system can be mounted here ({why})");
            return;
        }
    };
    t.set_repo(mnt.join("repo"));
    // Small packs, so that some are written before the space runs out.
    t.init_with(&["--pack-size", "1"]);

    let src = t.join("src");
    write(src.join("small.txt"), "a small file\n");
    write(src.join("sub/data.bin"), random_bytes(7, 50_000));
    let first = t.backup([&src]);
    let first_id = string(&first, "snapshot_id").unwrap();
    let tree = scan(&src);

    write(src.join("big.bin"), random_bytes(8, 20 << 20));
    let run = t.backup_run([&src]).failure();
    let line = run.error_line();
    assert!(
        line.to_lowercase().contains("space"),
        "the error should say the space ran out:\n{run:?}"
    );

    let snaps = t.snapshots();
    assert_eq!(snaps.len(), 1, "a failed backup left a snapshot: {snaps:?}");
    assert_eq!(snaps[0]["id"].as_str(), Some(first_id.as_str()));
    assert_eq!(fs::read_dir(t.repo().join("snapshots")).unwrap().count(), 1);

    // Packs the failed backup left behind may be reported, but nothing is damaged.
    t.check();

    let target = t.join("restore");
    t.restore(&first_id, &target);
    assert_same_tree(&tree, &scan(&restored(&target, &src)), Compare::exact());

    // Once the data is gone again, a backup fits and works.
    fs::remove_file(src.join("big.bin")).unwrap();
    let again = t.backup_run([&src]);
    if again.code == Some(0) {
        let target = t.join("restore-2");
        t.restore("latest", &target);
        assert_same_tree(
            &scan(&src),
            &scan(&restored(&target, &src)),
            Compare::exact(),
        );
    } else {
        // Left-over packs of the failed backup may still fill the file system; the failure must
        // then be the same clean one.
        assert!(
            again.error_line().to_lowercase().contains("space"),
            "{again:?}"
        );
    }
}
