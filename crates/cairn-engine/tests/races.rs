//! The engines against other processes changing the repository under them, played out
//! deterministically through a backend that does the other process's part at a chosen moment.

use cairn_backend::{Backend, FileType, LocalBackend};
use cairn_engine::{BackupOptions, BackupProgress, CheckProgress, Filter, PruneOptions, ReadData};
use cairn_format::snapshot::Kind;
use cairn_repo::{OpenOptions, Repository};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A local repository where, right after the first listing of `snapshots/`, another process
/// forgets the first snapshot listed (it is removed, as `cairn forget` elsewhere would).
struct ForgetAfterListing {
    inner: LocalBackend,
    done: AtomicBool,
}

impl Backend for ForgetAfterListing {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn guarantees(&self) -> cairn_backend::Guarantees {
        self.inner.guarantees()
    }
    fn listing_lag(&self) -> std::time::Duration {
        self.inner.listing_lag()
    }
    fn list(&self, t: FileType) -> cairn_backend::Result<Vec<cairn_backend::Entry>> {
        let listed = self.inner.list(t)?;
        if t == FileType::Snapshot && !listed.is_empty() && !self.done.swap(true, Ordering::SeqCst)
        {
            self.inner.remove(t, &listed[0].name)?;
        }
        Ok(listed)
    }
    fn read(&self, t: FileType, name: &str) -> cairn_backend::Result<Vec<u8>> {
        self.inner.read(t, name)
    }
    fn read_range(
        &self,
        t: FileType,
        name: &str,
        offset: u64,
        len: u64,
    ) -> cairn_backend::Result<Vec<u8>> {
        self.inner.read_range(t, name, offset, len)
    }
    fn create(&self, t: FileType, name: &str, bytes: &[u8]) -> cairn_backend::Result<()> {
        self.inner.create(t, name, bytes)
    }
    fn remove(&self, t: FileType, name: &str) -> cairn_backend::Result<()> {
        self.inner.remove(t, name)
    }
}

/// A repository with two snapshots of a small tree.
fn repository(dir: &Path) -> std::path::PathBuf {
    let root = dir.join("repo");
    cairn_testkit::init_local(&root);
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let writer = OpenOptions {
        writer: true,
        ..OpenOptions::default()
    };
    for round in 0..2 {
        std::fs::write(src.join(format!("f{round}")), vec![round as u8; 100_000]).unwrap();
        let repo = Repository::open(Box::new(LocalBackend::open(&root)), b"pw", &writer).unwrap();
        let backup = BackupOptions {
            paths: vec![src.clone()],
            exclude: Filter::new(&[]).unwrap(),
            one_file_system: false,
            host: b"h".to_vec(),
            user: b"u".to_vec(),
            tags: Vec::new(),
            time_ns: 1_000_000_000 * (round + 1),
            kind: Kind::Full,
            parent: None,
            program: b"test".to_vec(),
        };
        cairn_engine::backup(&repo, &backup, &BackupProgress::default()).unwrap();
    }
    root
}

fn open_racing(root: &Path, writer: bool) -> Repository {
    let backend = ForgetAfterListing {
        inner: LocalBackend::open(root),
        done: AtomicBool::new(false),
    };
    let opts = OpenOptions {
        writer,
        ..OpenOptions::default()
    };
    Repository::open(Box::new(backend), b"pw", &opts).unwrap()
}

/// Regression: `check` failed ("cannot read snapshot ...: No such file or directory") when
/// another process forgot a snapshot between its listing and its reading.
#[test]
fn check_skips_a_snapshot_forgotten_after_listing() {
    let dir = tempfile::tempdir().unwrap();
    let root = repository(dir.path());
    let repo = open_racing(&root, false);
    let report = cairn_engine::check(&repo, ReadData::All, &CheckProgress::default()).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.vanished.len(), 1);
    assert_eq!(report.snapshots, 1);
}

/// The same race for prune: the forgotten snapshot is skipped and said so, and what the
/// remaining snapshot needs stays.
#[test]
fn prune_skips_a_snapshot_forgotten_after_listing() {
    let dir = tempfile::tempdir().unwrap();
    let root = repository(dir.path());
    let repo = open_racing(&root, true);
    let opts = PruneOptions {
        max_unused: 0.0,
        grace: Duration::from_secs(86_400),
        dry_run: false,
        forgotten: Default::default(),
    };
    let report = cairn_engine::prune(&repo, &opts).unwrap();
    assert_eq!(report.snapshots_vanished.len(), 1, "{report:?}");
    assert_eq!(report.snapshots, 1);
    drop(repo);
    let repo = Repository::open(
        Box::new(LocalBackend::open(&root)),
        b"pw",
        &OpenOptions::default(),
    )
    .unwrap();
    let check = cairn_engine::check(&repo, ReadData::All, &CheckProgress::default()).unwrap();
    assert!(check.ok(), "{:?}", check.problems);
    assert_eq!(check.snapshots, 1);
}

/// Regression (simulation seed 100330): on a store whose listings lag behind creates, `repair
/// index` listed `data/` before a pack that another process had just written showed, indexed
/// only the packs it saw, and removed the old index file that was the only one naming the
/// unlisted pack: its blobs, which a committed snapshot needs, left the index.
#[test]
fn repair_index_keeps_a_pack_the_listing_does_not_show_yet() {
    use cairn_testkit::{assert_check_clean, fast_init, LaggingListing, ManualHost, MemBackend};
    use std::sync::Arc;

    let store = MemBackend::default();
    cairn_repo::init(&store, b"pw", &fast_init()).unwrap();
    let host = ManualHost::default();
    let open = |backend: Box<dyn Backend>| {
        let opts = OpenOptions {
            writer: true,
            host: Arc::new(host.clone()),
            inline_writes: true,
            ..OpenOptions::default()
        };
        Repository::open(backend, b"pw", &opts).unwrap()
    };
    let src = cairn_testkit::SourceTree::new();
    src.random_file("a.bin", 300_000, 7).file("b.txt", b"small");
    let backup = BackupOptions {
        paths: vec![src.root()],
        exclude: Filter::new(&[]).unwrap(),
        one_file_system: false,
        host: b"h".to_vec(),
        user: b"u".to_vec(),
        tags: Vec::new(),
        time_ns: 1,
        kind: Kind::Full,
        parent: None,
        program: b"test".to_vec(),
    };
    let repo = open(Box::new(store.clone()));
    cairn_engine::backup(&repo, &backup, &BackupProgress::default()).unwrap();
    drop(repo);

    // Another process wrote the packs while the repair was starting, and listings do not show
    // them yet.
    let lagging = LaggingListing::new(store.clone(), host.clone(), Duration::from_secs(30));
    let repo = open(Box::new(lagging.clone()));
    assert!(lagging.fresh(FileType::Pack).unwrap() > 1);
    let report = cairn_engine::repair_index(&repo, false).unwrap();
    assert_eq!(report.packs_indexed, report.packs, "{report:?}");
    drop(repo);

    let repo = open(Box::new(store.clone()));
    assert_check_clean(&repo);
}
