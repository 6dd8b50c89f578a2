//! Backups cut off at every write, and pack reads damaged in flight, in process and in memory:
//! a repository a crash leaves must check clean and take the next backup, and a flipped bit
//! must never reach a restored file. Built from cairn-testkit's pieces.

use cairn_backend::{Backend, FileType};
use cairn_engine::{BackupOptions, BackupOutcome, BackupProgress, Filter, Problem, RestoreOptions};
use cairn_format::snapshot::Kind;
use cairn_format::BlobId;
use cairn_repo::{OpenOptions, Repository};
use cairn_testkit::{
    assert_check_clean, fast_init, listing, CrashAfterWrites, FlipBits, ManualHost, MemBackend,
    SourceTree,
};
use std::path::Path;
use std::sync::Arc;

fn open(backend: impl Backend + 'static, host: &ManualHost) -> cairn_repo::Result<Repository> {
    let opts = OpenOptions {
        writer: true,
        host: Arc::new(host.clone()),
        // Packs are written on the backup's own threads, so the N-th write is the same one in
        // every run.
        inline_writes: true,
        ..OpenOptions::default()
    };
    Repository::open(Box::new(backend), b"pw", &opts)
}

fn back_up(repo: &Repository, src: &SourceTree) -> cairn_repo::Result<BackupOutcome> {
    let opts = BackupOptions {
        paths: vec![src.root()],
        exclude: Filter::new(&[]).unwrap(),
        one_file_system: false,
        host: b"host".to_vec(),
        user: b"user".to_vec(),
        tags: Vec::new(),
        time_ns: 1,
        kind: Kind::Full,
        parent: None,
        program: b"test".to_vec(),
    };
    cairn_engine::backup(repo, &opts, &BackupProgress::default())
}

/// Restores `outcome` into `target`; returns the restored copy of the source root and the
/// restore's errors.
fn restore(
    repo: &Repository,
    outcome: &BackupOutcome,
    src: &SourceTree,
    target: &Path,
) -> (std::path::PathBuf, Vec<cairn_engine::PathProblem>) {
    let opts = RestoreOptions {
        target: target.to_path_buf(),
        include: Filter::new(&[]).unwrap(),
        exclude: Filter::new(&[]).unwrap(),
        dry_run: false,
        owners: false,
        verify: false,
    };
    let progress = cairn_engine::RestoreProgress::default();
    let out = cairn_engine::restore(repo, outcome.snapshot.tree, &opts, &progress).unwrap();
    (
        target.join(src.root().strip_prefix("/").unwrap()),
        out.errors,
    )
}

fn source() -> SourceTree {
    let src = SourceTree::new();
    // Random content of ~500 KB in packs of 64 KiB (`fast_init`): several packs and index
    // files, so the cut falls between every kind of write.
    src.random_file("a.bin", 300_000, 1)
        .random_file("d/b.bin", 200_000, 2)
        .file("d/c.txt", b"small");
    src
}

#[test]
fn a_backup_cut_off_at_every_write_leaves_a_repository_that_checks_clean_and_backs_up() {
    let src = source();
    let mut writes = 0;
    loop {
        let backend = MemBackend::default();
        cairn_repo::init(&backend, b"pw", &fast_init()).unwrap();
        let host = ManualHost::default();
        let crashing = CrashAfterWrites::new(backend.clone(), writes);
        let cut_off = match open(crashing, &host) {
            Err(_) => true,
            Ok(repo) => back_up(&repo, &src).is_err(),
        };
        // Another process of the machine goes on from whatever the cut left.
        let next = host.process(2);
        let repo = open(backend.clone(), &next).unwrap();
        assert_check_clean(&repo);
        let outcome = back_up(&repo, &src).unwrap();
        drop(repo);
        let repo = open(backend.clone(), &next).unwrap();
        assert_check_clean(&repo);
        let (restored, errors) = restore(
            &repo,
            &outcome,
            &src,
            &src.scratch(&format!("cut-{writes}")),
        );
        assert!(
            errors.is_empty(),
            "after a cut at write {writes}: {errors:?}"
        );
        assert_eq!(listing(&restored), listing(&src.root()), "cut at {writes}");
        if !cut_off {
            break;
        }
        writes += 1;
    }
    assert!(writes > 5, "the backup made only {writes} writes");
}

#[test]
fn a_bit_flipped_in_a_pack_read_never_reaches_a_restored_file() {
    let src = source();
    let backend = MemBackend::default();
    cairn_repo::init(&backend, b"pw", &fast_init()).unwrap();
    let host = ManualHost::default();
    let repo = open(backend.clone(), &host).unwrap();
    let outcome = back_up(&repo, &src).unwrap();
    // A bit inside the first chunk of a.bin, wherever its pack put it.
    let node =
        cairn_engine::find_node(&repo, outcome.snapshot.tree, &src.root().join("a.bin")).unwrap();
    let at = repo
        .lookup(&BlobId::from(node.content[0]))
        .unwrap()
        .expect("a stored chunk has a location");
    drop(repo);
    let flipping = FlipBits {
        inner: backend.clone(),
        kind: FileType::Pack,
        name: at.pack.to_hex(),
        at: u64::from(at.offset) + 10,
    };
    let repo = open(flipping, &host.process(2)).unwrap();
    let (restored, errors) = restore(&repo, &outcome, &src, &src.scratch("restored"));
    let failed: Vec<&Path> = errors.iter().map(|e| e.path.as_path()).collect();
    assert_eq!(failed, [restored.join("a.bin")], "{errors:?}");
    assert!(
        !restored.join("a.bin").exists(),
        "a.bin was left with wrong bytes"
    );
    let mut expected = listing(&src.root());
    expected.remove(Path::new("a.bin"));
    assert_eq!(listing(&restored), expected);
    let report = cairn_engine::check(
        &repo,
        cairn_engine::ReadData::All,
        &cairn_engine::CheckProgress::default(),
    )
    .unwrap();
    let chunk = BlobId::from(node.content[0]);
    assert!(
        report.problems.iter().any(
            |p| matches!(p, Problem::BlobDamaged { pack, blob, .. } if *pack == at.pack && *blob == chunk)
        ),
        "{:#?}",
        report.problems
    );
}
