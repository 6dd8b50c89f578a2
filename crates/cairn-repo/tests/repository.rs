//! The repository API against an in-memory backend.

use cairn_backend::{Backend, FileType};
use cairn_format::key::KdfParams;
use cairn_format::snapshot::{Kind, Snapshot, Summary};
use cairn_format::tree::Tree;
use cairn_format::{BlobId, BlobType, TreeId};
use cairn_repo::{ErrorKind, OpenOptions, Repository};
use std::sync::{Arc, Mutex};

#[path = "repository/hostile.rs"]
mod hostile;
#[path = "repository/keys.rs"]
mod keys;

use cairn_testkit::{fast_init, key, ManualHost, MemBackend};

fn open(b: &MemBackend) -> Repository {
    Repository::open(Box::new(b.clone()), b"pw", &OpenOptions::default()).unwrap()
}

fn names(b: &MemBackend, t: FileType) -> Vec<String> {
    b.list(t).unwrap().into_iter().map(|e| e.name).collect()
}

#[test]
fn blobs_survive_a_reopen_and_dedup_across_sessions() {
    let b = MemBackend::default();
    cairn_repo::init(&b, b"pw", &fast_init()).unwrap();
    let repo = open(&b);
    let mut ids = Vec::new();
    for i in 0..200u32 {
        let mut state = u64::from(i) + 1;
        let data: Vec<u8> = (0..1000)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 56) as u8
            })
            .collect();
        let id = repo.blob_id(&data);
        assert!(repo.save_blob(BlobType::Data, id, &data).unwrap());
        assert!(
            !repo.save_blob(BlobType::Data, id, &data).unwrap(),
            "second save is a no-op"
        );
        ids.push((id, data));
    }
    repo.flush().unwrap();
    assert!(
        names(&b, FileType::Pack).len() > 1,
        "small pack size splits the blobs"
    );
    drop(repo);
    let repo = open(&b);
    for (id, data) in &ids {
        let blob = BlobId {
            kind: BlobType::Data,
            id: *id,
        };
        assert_eq!(&repo.load_blob(&blob).unwrap(), data);
        assert!(!repo.save_blob(BlobType::Data, *id, data).unwrap());
    }
    // A data blob id is not a tree blob id.
    assert!(repo
        .lookup(&BlobId {
            kind: BlobType::Tree,
            id: ids[0].0
        })
        .unwrap()
        .is_none());
}

#[test]
fn snapshots_round_trip_and_wrong_password_changes_nothing() {
    let b = MemBackend::default();
    cairn_repo::init(&b, b"pw", &fast_init()).unwrap();
    let repo = open(&b);
    let (tree, _) = repo.save_tree(&Tree::default()).unwrap();
    let snap = snapshot_of(tree);
    let id = repo.save_snapshot(&snap).unwrap();
    assert_eq!(repo.snapshots().unwrap().list, vec![(id, snap)]);
    assert!(repo.load_tree(tree).unwrap().nodes.is_empty());
    let before = b.objects.lock().unwrap().clone();
    let err = Repository::open(Box::new(b.clone()), b"nope", &OpenOptions::default())
        .err()
        .unwrap();
    assert_eq!(err.kind, ErrorKind::WrongPassword);
    assert_eq!(*b.objects.lock().unwrap(), before);
    assert_eq!(
        cairn_repo::init(&b, b"pw", &fast_init()).unwrap_err().kind,
        ErrorKind::AlreadyExists
    );
    assert_eq!(*b.objects.lock().unwrap(), before);
}

#[test]
fn tampering_is_detected() {
    let b = MemBackend::default();
    cairn_repo::init(&b, b"pw", &fast_init()).unwrap();
    let repo = open(&b);
    let data = b"some data".to_vec();
    let id = repo.blob_id(&data);
    repo.save_blob(BlobType::Data, id, &data).unwrap();
    let (tree, _) = repo.save_tree(&Tree::default()).unwrap();
    repo.flush().unwrap();
    drop(repo);

    // A flipped byte in a pack: the blob fails authentication.
    let pack = names(&b, FileType::Pack).into_iter().find(|p| {
        let r = open(&b);
        r.lookup(&BlobId {
            kind: BlobType::Data,
            id,
        })
        .unwrap()
        .unwrap()
        .pack
        .to_hex()
            == *p
    });
    let pack_name = pack.unwrap();
    let mut bad = b.read(FileType::Pack, &pack_name).unwrap();
    bad[30] ^= 1;
    b.objects
        .lock()
        .unwrap()
        .insert(key(FileType::Pack, &pack_name), bad);
    let repo = open(&b);
    let err = repo
        .load_blob(&BlobId {
            kind: BlobType::Data,
            id,
        })
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Corrupt, "{}", err.message);
    assert!(
        repo.load_tree(tree).is_ok(),
        "tree blobs live in their own pack"
    );
    drop(repo);

    // The pack headers list exactly what the index says, and a flipped header byte is caught.
    let repo = open(&b);
    for name in names(&b, FileType::Pack) {
        let pack = cairn_format::PackId::from_hex(&name).unwrap();
        let size = b.read(FileType::Pack, &name).unwrap().len() as u64;
        let header = repo.read_pack_header(&pack, size);
        if name == pack_name {
            // This is the pack damaged above, in a blob; its header is intact.
            assert_eq!(header.unwrap().entries.len(), 1);
            continue;
        }
        let header = header.unwrap();
        for e in &header.entries {
            assert_eq!(repo.lookup(&e.blob).unwrap().unwrap().pack, pack);
        }
        let mut bytes = b.read(FileType::Pack, &name).unwrap();
        let at = bytes.len() - 10;
        bytes[at] ^= 0x40;
        b.objects
            .lock()
            .unwrap()
            .insert(key(FileType::Pack, &name), bytes);
        let err = repo.read_pack_header(&pack, size).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Corrupt);
        assert!(err.message.contains(&name[..8]), "{}", err.message);
    }
    drop(repo);

    // A flipped byte in an index file: it no longer matches its name.
    let index = names(&b, FileType::Index).pop().unwrap();
    let mut bytes = b.read(FileType::Index, &index).unwrap();
    bytes[10] ^= 1;
    b.objects
        .lock()
        .unwrap()
        .insert(key(FileType::Index, &index), bytes);
    // The repository still opens (the rest stays readable); the damage is reported, and the
    // blobs only that index file named are no longer found.
    let repo = open(&b);
    let damaged = repo.sync_index().unwrap().damaged;
    assert_eq!(damaged.len(), 1);
    assert_eq!(damaged[0].0.to_hex(), index);
    assert!(repo.load_tree(tree).is_err());
}

#[test]
fn unknown_format_version_is_refused_before_any_key_is_tried() {
    let b = MemBackend::default();
    cairn_repo::init(&b, b"pw", &fast_init()).unwrap();
    let mut config = b.read(FileType::Config, "config").unwrap();
    config[8] = 2;
    b.objects
        .lock()
        .unwrap()
        .insert(key(FileType::Config, "config"), config);
    let err = cairn_repo::probe(&b).unwrap_err();
    assert_eq!(err.kind, ErrorKind::UnsupportedVersion);
    assert!(err.message.contains("version 2"), "{}", err.message);
    let _ = TreeId::default();
}

/// A backup that stops for longer than prune's grace period is fenced off: the prune that
/// finds its marker unchanged for that long wins its verdict, and what only it protected is
/// deleted. When the backup goes on, it must not commit a snapshot reaching deleted blobs: it
/// fails, saying so, and writes no snapshot.
#[test]
fn a_silent_session_is_fenced_off_and_commits_nothing_that_reaches_deleted_blobs() {
    let b = MemBackend::default();
    cairn_repo::init(&b, b"pw", &fast_init()).unwrap();
    let clock = Arc::new(Mutex::new(std::time::Duration::from_secs(1000)));
    let opened = |pid, cache: &std::path::Path| {
        Repository::open(
            Box::new(b.clone()),
            b"pw",
            &OpenOptions {
                writer: true,
                cache_dir: Some(cache.to_path_buf()),
                host: Arc::new(ManualHost {
                    boot: Arc::clone(&clock),
                    wall_ns: Arc::new(Mutex::new(0)),
                    pid,
                }),
                ..OpenOptions::default()
            },
        )
        .unwrap()
    };
    let caches = tempfile::tempdir().unwrap();
    let backup = opened(1, &caches.path().join("backup"));
    let data = b"stored by a backup that then stops".to_vec();
    let id = repo_blob(&backup, &data);
    let (tree, _) = backup
        .save_tree(&Tree {
            nodes: vec![cairn_format::tree::Node {
                name: b"f".to_vec(),
                content: vec![cairn_format::DataId(id)],
                size: data.len() as u64,
                ..Default::default()
            }],
        })
        .unwrap();
    backup.flush().unwrap();
    assert_eq!(names(&b, FileType::Lock).len(), 1, "the backup's marker");

    let prune = |hours: u64| {
        *clock.lock().unwrap() = std::time::Duration::from_secs(1000 + hours * 3600);
        let p = opened(2, &caches.path().join("prune"));
        let survey = p
            .survey(&cairn_repo::SurveyOptions {
                grace: std::time::Duration::from_secs(3600),
                dry_run: false,
            })
            .unwrap();
        survey.plan(0.05).unwrap().execute().unwrap()
    };
    let first = prune(0);
    assert_eq!(first.sessions_fenced, 0);
    assert_eq!(first.packs_deleted, 0, "{first:?}");
    assert_eq!(
        first.packs_unused, 0,
        "a running backup's packs are young: {first:?}"
    );
    let later = prune(2);
    assert_eq!(later.sessions_fenced, 1, "{later:?}");
    assert!(later.packs_deleted > 0, "{later:?}");
    // Only the verdict that fences the backup off is left in locks/.
    let locks = names(&b, FileType::Lock);
    assert_eq!(locks.len(), 1, "{locks:?}");
    let verdict = b.read(FileType::Lock, &locks[0]).unwrap();
    assert!(matches!(
        cairn_format::marker::Verdict::decode(&verdict).unwrap(),
        cairn_format::marker::Verdict::Fenced { pid: 1, .. }
    ));

    let snap = snapshot_of(tree);
    let err = backup.save_snapshot(&snap).unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound, "{}", err.message);
    assert!(
        err.message.contains("run the backup again"),
        "{}",
        err.message
    );
    assert!(names(&b, FileType::Snapshot).is_empty());
    drop(backup);
    // The backup removed its fenced verdict and its new session's markers: nothing is left.
    assert!(names(&b, FileType::Lock).is_empty());
}

/// Regression: a writer that saves several snapshots (`copy`, `repair snapshots`) ran every
/// snapshot after the first without a session, so a prune saw no backup running, and a blob
/// the writer had stored for an earlier snapshot, since forgotten and pruned, was still taken
/// as stored. `begin_session` puts a marker first and forgets what the process stored before.
#[test]
fn each_snapshot_of_a_writer_gets_a_session_and_finds_pruned_blobs_gone() {
    let b = MemBackend::default();
    cairn_repo::init(&b, b"pw", &fast_init()).unwrap();
    let caches = tempfile::tempdir().unwrap();
    let opened = |name: &str, writer: bool| {
        Repository::open(
            Box::new(b.clone()),
            b"pw",
            &OpenOptions {
                writer,
                cache_dir: Some(caches.path().join(name)),
                ..OpenOptions::default()
            },
        )
        .unwrap()
    };
    let copy = opened("copy", true);
    let data = b"in the first snapshot, forgotten, pruned, then needed again".to_vec();
    let tree_of = |repo: &Repository| {
        let id = repo_blob(repo, &data);
        repo.save_tree(&Tree {
            nodes: vec![cairn_format::tree::Node {
                name: b"f".to_vec(),
                content: vec![cairn_format::DataId(id)],
                size: data.len() as u64,
                ..Default::default()
            }],
        })
        .unwrap()
        .0
    };
    let first = copy.save_snapshot(&snapshot_of(tree_of(&copy))).unwrap();
    assert!(names(&b, FileType::Lock).is_empty(), "the session ended");

    let other = opened("other", true);
    other.forget_snapshots(&[first]).unwrap();
    let report = other
        .survey(&cairn_repo::SurveyOptions {
            grace: std::time::Duration::from_secs(3600),
            dry_run: false,
        })
        .unwrap()
        .plan(0.0)
        .unwrap()
        .execute()
        .unwrap();
    assert!(report.packs_deleted > 0, "{report:?}");
    drop(other);

    copy.begin_session().unwrap();
    assert_eq!(
        names(&b, FileType::Lock).len(),
        1,
        "a marker before any write"
    );
    let again = Snapshot {
        time: 6,
        ..snapshot_of(tree_of(&copy))
    };
    let second = copy.save_snapshot(&again).unwrap();
    drop(copy);
    let reader = opened("reader", false);
    let snapshot = reader.load_snapshot(second).unwrap();
    let tree = reader.load_tree(snapshot.tree).unwrap();
    let blob = BlobId {
        kind: BlobType::Data,
        id: tree.nodes[0].content[0].0,
    };
    assert_eq!(reader.load_blob(&blob).unwrap(), data, "stored again");
}

fn repo_blob(repo: &Repository, data: &[u8]) -> cairn_format::Id {
    let id = repo.blob_id(data);
    repo.save_blob(BlobType::Data, id, data).unwrap();
    id
}

/// A snapshot of `tree`, with fixed details.
fn snapshot_of(tree: cairn_format::TreeId) -> Snapshot {
    Snapshot {
        time: 5,
        host: b"h".to_vec(),
        user: b"u".to_vec(),
        paths: vec![b"/x".to_vec()],
        tags: vec![],
        kind: Kind::Full,
        parent: None,
        tree,
        summary: Summary::default(),
        program: b"test".to_vec(),
    }
}

/// `BlobsToLocate` (check's way through every blob the trees reach) answers for each blob once
/// however often it was pushed, across partitions, as `lookup_many` does.
#[test]
fn blobs_located_together_are_where_lookups_place_them() {
    let b = MemBackend::default();
    cairn_repo::init(&b, b"pw", &fast_init()).unwrap();
    let repo = open(&b);
    let mut saved = Vec::new();
    for i in 0..300u32 {
        let data = format!("blob number {i}").into_bytes();
        let id = repo.blob_id(&data);
        repo.save_blob(BlobType::Data, id, &data).unwrap();
        saved.push(BlobId {
            kind: BlobType::Data,
            id,
        });
    }
    repo.flush().unwrap();
    drop(repo);
    let repo = open(&b);
    let unknown: Vec<BlobId> = (0..50u32)
        .map(|i| BlobId {
            kind: BlobType::Data,
            id: repo.blob_id(format!("never stored {i}").as_bytes()),
        })
        .collect();
    let scratch = tempfile::tempdir().unwrap();
    // Expecting millions: eight partitions for a few hundred blobs.
    let mut reached = cairn_repo::BlobsToLocate::new(scratch.path(), 4 << 20);
    for _ in 0..3 {
        for blob in saved.iter().chain(&unknown) {
            reached.push(*blob).unwrap();
        }
    }
    let mut found = reached.locate(&repo, |blob, at| Some((blob, at))).unwrap();
    found.sort_by_key(|(blob, _)| blob.to_bytes());
    let mut all: Vec<BlobId> = saved.iter().chain(&unknown).copied().collect();
    all.sort_by_key(BlobId::to_bytes);
    assert_eq!(found.iter().map(|(b, _)| *b).collect::<Vec<_>>(), all);
    let expected = repo.lookup_many(&all).unwrap();
    assert_eq!(
        found.iter().map(|(_, at)| *at).collect::<Vec<_>>(),
        expected
    );
    assert_eq!(expected.iter().filter(|at| at.is_none()).count(), 50);
}
