//! A repository written by cairn 0.1 in format version 1 is committed under
//! `tests/fixtures/v1-repo` (a backup of `tests/fixtures/v1-source`, password `fixture
//! password`, 64 KiB chunks). Tests that write and read with the same code cannot see a silent
//! change of a byte format, the key derivation, the chunker's cuts or the blob ids; this one
//! fails on any of them.

use crate::util::*;
use std::fs;
use std::path::{Path, PathBuf};

const PASSWORD: &str = "fixture password";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Copies a directory tree (regular files and directories only).
fn copy_tree(from: &Path, to: &Path) {
    mkdirs(to);
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

#[test]
fn the_committed_v1_repository_opens_checks_restores_and_deduplicates() {
    let mut t = setup();
    let repo = t.join("v1-repo");
    copy_tree(&fixtures().join("v1-repo"), &repo);
    // Git keeps no empty directory: the rest of the layout `init` makes.
    mkdirs(repo.join("locks"));
    for i in 0..=255u8 {
        mkdirs(repo.join("data").join(format!("{i:02x}")));
    }
    t.set_repo(&repo);
    let run = |args: &[&str]| {
        let mut cmd = t.command();
        cmd.env("CAIRN_PASSWORD", PASSWORD).args(args);
        Run::of(cmd)
    };

    let report = run(&["check", "--read-data", "--json"]).success().json();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(num(&report, "snapshots"), 1, "{report}");

    let snaps = run(&["snapshots", "--json"]).success().json();
    let snap = &snaps[0];
    assert_eq!(snap["host"], "fixture", "{snaps}");
    assert_eq!(snap["time"], "2026-12-03T12:00:00Z", "{snaps}");
    let backed_up = PathBuf::from(snap["paths"][0].as_str().unwrap());

    let target = t.join("restored");
    run(&["restore", "latest", "--target", target.to_str().unwrap()]).success();
    let source = fixtures().join("v1-source");
    // Contents and names only: the checkout's modes and times follow its umask and clock.
    let contents = |root: &Path| -> Vec<(PathBuf, Option<Digest>)> {
        scan(root)
            .into_iter()
            .map(|(p, e)| (p, e.content))
            .collect()
    };
    assert_eq!(
        contents(&restored(&target, &backed_up)),
        contents(&source),
        "the restore differs from the source"
    );

    // Backing the same files up again stores no content: the chunker cuts them where it did and
    // derives the same blob ids. Only new directory listings (other paths, times) are added.
    let s = run(&["backup", "--json", "--dry-run", source.to_str().unwrap()])
        .success()
        .json();
    assert!(
        num(&s, "raw_bytes_added") < 10_000,
        "the fixture's content would be stored again: {s}"
    );
}
