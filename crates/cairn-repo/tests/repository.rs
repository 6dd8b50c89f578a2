//! The repository API against an in-memory backend.

use cairn_format::snapshot::{Kind, Snapshot, Summary};
use cairn_format::tree::Tree;
use cairn_format::{BlobId, BlobType, TreeId};
use cairn_repo::{Backend, ErrorKind, FileType, InitOptions, KdfParams, OpenOptions, Repository};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// (directory, name) -> bytes.
type Objects = BTreeMap<(String, String), Vec<u8>>;

#[path = "repository/hostile.rs"]
mod hostile;

/// Objects in a map, shared between clones so a test can look behind the repository's back.
#[derive(Clone, Default)]
struct MemBackend {
    objects: Arc<Mutex<Objects>>,
    /// (directory, name) of every object read, in order.
    reads: Arc<Mutex<Vec<(String, String)>>>,
    /// (directory, name) of every object read whole without a bound on its length.
    unbounded: Arc<Mutex<Vec<(String, String)>>>,
}

impl MemBackend {
    fn get(&self, t: FileType, name: &str) -> cairn_backend::Result<Vec<u8>> {
        self.reads.lock().unwrap().push(key(t, name));
        self.objects
            .lock()
            .unwrap()
            .get(&key(t, name))
            .cloned()
            .ok_or_else(|| not_found(name))
    }
}

fn key(t: FileType, name: &str) -> (String, String) {
    (t.dir().to_string(), name.to_string())
}

fn not_found(name: &str) -> cairn_backend::BackendError {
    cairn_backend::BackendError {
        kind: cairn_backend::BackendErrorKind::NotFound,
        message: format!("{name} not found"),
    }
}

impl Backend for MemBackend {
    fn location(&self) -> String {
        "memory".into()
    }
    fn guarantees(&self) -> cairn_backend::Guarantees {
        cairn_backend::Guarantees {
            exclusive_create: true,
            listing_lag: std::time::Duration::ZERO,
        }
    }
    fn list(&self, t: FileType) -> cairn_backend::Result<Vec<cairn_backend::Entry>> {
        let objects = self.objects.lock().unwrap();
        Ok(objects
            .iter()
            .filter(|((dir, _), _)| dir == t.dir())
            .map(|((_, name), v)| cairn_backend::Entry {
                name: name.clone(),
                size: v.len() as u64,
            })
            .collect())
    }
    fn read(&self, t: FileType, name: &str) -> cairn_backend::Result<Vec<u8>> {
        self.unbounded.lock().unwrap().push(key(t, name));
        self.get(t, name)
    }
    /// Checks the listed size first, as a backend that can should.
    fn read_at_most(&self, t: FileType, name: &str, max: u64) -> cairn_backend::Result<Vec<u8>> {
        let len = self
            .objects
            .lock()
            .unwrap()
            .get(&key(t, name))
            .map_or(0, |v| v.len() as u64);
        cairn_backend::check_len(t, name, len, max)?;
        self.get(t, name)
    }
    fn read_range(
        &self,
        t: FileType,
        name: &str,
        offset: u64,
        len: u64,
    ) -> cairn_backend::Result<Vec<u8>> {
        let all = self.get(t, name)?;
        all.get(offset as usize..(offset + len) as usize)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| not_found(name))
    }
    fn create(&self, t: FileType, name: &str, bytes: &[u8]) -> cairn_backend::Result<()> {
        let mut objects = self.objects.lock().unwrap();
        if objects.contains_key(&key(t, name)) {
            return Err(cairn_backend::BackendError {
                kind: cairn_backend::BackendErrorKind::AlreadyExists,
                message: name.into(),
            });
        }
        objects.insert(key(t, name), bytes.to_vec());
        Ok(())
    }
    fn remove(&self, t: FileType, name: &str) -> cairn_backend::Result<()> {
        self.objects
            .lock()
            .unwrap()
            .remove(&key(t, name))
            .map(|_| ())
            .ok_or_else(|| not_found(name))
    }
}

fn fast_init() -> InitOptions {
    InitOptions {
        kdf: KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        },
        pack_size: 1 << 16,
        ..InitOptions::default()
    }
}

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
    assert_eq!(repo.snapshots().unwrap(), vec![(id, snap)]);
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
    let damaged = repo.damaged_index_files();
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

/// A host whose boot clock the test sets, where every process runs.
#[derive(Debug)]
struct TestHost {
    clock: Arc<Mutex<std::time::Duration>>,
    pid: u32,
}

impl cairn_repo::Host for TestHost {
    fn wall_clock_ns(&self) -> i64 {
        0
    }
    fn boot_clock(&self) -> std::time::Duration {
        *self.clock.lock().unwrap()
    }
    fn machine(&self) -> Vec<u8> {
        b"machine:boot:pid:[1]".to_vec()
    }
    fn pid(&self) -> u32 {
        self.pid
    }
    fn process_exists(&self, _: u32) -> Option<bool> {
        Some(true)
    }
    fn sleep(&self, _: std::time::Duration) {}
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
                host: Arc::new(TestHost {
                    clock: Arc::clone(&clock),
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
