//! A hostile or damaged repository: the storage server is not trusted, so whatever it lists or
//! serves must cost a client an error at most, never a panic, minutes of key derivation or
//! gigabytes of memory.

use super::*;
use cairn_format::key::KeyHeader;

fn put(b: &MemBackend, t: FileType, name: &str, bytes: Vec<u8>) {
    b.objects.lock().unwrap().insert(key(t, name), bytes);
}

fn key_reads(b: &MemBackend) -> Vec<String> {
    b.reads
        .lock()
        .unwrap()
        .iter()
        .filter(|(dir, _)| dir == FileType::Key.dir())
        .map(|(_, name)| name.clone())
        .collect()
}

/// A key file with a well-formed header asking for `kdf`, and a seal nothing opens; named by
/// its hash, as a real one is.
fn forged_key(b: &MemBackend, kdf: KdfParams, host_len: usize) -> String {
    let header = KeyHeader {
        kdf,
        salt: [7; 32],
        created: 0,
        host: vec![b'h'; host_len],
        user: b"u".to_vec(),
    };
    let file = [header.encode(), vec![0u8; 64]].concat();
    let name = cairn_crypto::file_id(&file).to_hex();
    put(b, FileType::Key, &name, file);
    name
}

// Regression: a file in keys/ whose name is not ASCII made every command panic, slicing the
// name by byte index (`&name[..8]`) to report it.
#[test]
fn a_key_file_name_that_is_not_hex_is_skipped_without_panicking() {
    let b = MemBackend::default();
    cairn_repo::init(&b, b"pw", &fast_init()).unwrap();
    // Sorts before every hex name, so it is met first; byte 8 falls inside the 'é'.
    let stray = "0000000\u{e9}-not-a-key";
    put(&b, FileType::Key, stray, b"junk".to_vec());
    let repo = open(&b);
    assert!(
        !key_reads(&b).iter().any(|n| n == stray),
        "a name that is no key id is not even read"
    );
    let problems = repo.verify_key_files().unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("not a key id"), "{problems:?}");
    drop(repo);
    let err = Repository::open(Box::new(b.clone()), b"nope", &OpenOptions::default())
        .err()
        .unwrap();
    assert_eq!(err.kind, ErrorKind::WrongPassword, "{}", err.message);
}

// Regression: key files could demand 4 GiB × 64 argon2id passes each, and every one was tried:
// a forged key file stalled the client for minutes or got it killed for memory.
#[test]
fn a_key_file_over_the_kdf_limit_is_skipped_and_the_error_says_so() {
    let b = MemBackend::default();
    cairn_repo::init(&b, b"pw", &fast_init()).unwrap();
    // 128 MiB × 32 passes: 4096 MiB·passes, twice the default limit.
    let costly = KdfParams {
        memory_kib: 128 << 10,
        iterations: 32,
        parallelism: 1,
    };
    // Listed before the real key, so that it is met before the real key opens.
    let real = names(&b, FileType::Key).pop().unwrap();
    let name = (1..)
        .map(|host_len| forged_key(&b, costly, host_len))
        .find(|name| {
            let first = *name < real;
            if !first {
                b.objects.lock().unwrap().remove(&key(FileType::Key, name));
            }
            first
        })
        .unwrap();
    let started = std::time::Instant::now();
    let err = Repository::open(Box::new(b.clone()), b"nope", &OpenOptions::default())
        .err()
        .unwrap();
    assert_eq!(err.kind, ErrorKind::WrongPassword, "{}", err.message);
    for want in [&name[..8], "--max-kdf-mib", "CAIRN_MAX_KDF_MIB", "4096"] {
        assert!(err.message.contains(want), "{want}: {}", err.message);
    }
    assert!(started.elapsed().as_secs() < 2, "{:?}", started.elapsed());
    // The right password opens the repository; the costly key is still skipped, and said to be
    // when it was met first.
    let repo = open(&b);
    let skipped = repo.skipped_key_files();
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert!(skipped[0].contains(&name[..8]) && skipped[0].contains("--max-kdf-mib"));
    drop(repo);
    // The limit is the caller's: a key over it is tried once it is raised (and fails here, its
    // seal being forged).
    b.objects.lock().unwrap().remove(&key(FileType::Key, &name));
    let modest = KdfParams {
        memory_kib: 4 << 10,
        iterations: 32,
        parallelism: 1,
    };
    let name = forged_key(&b, modest, 1);
    let with_limit = |max_kdf_mib| {
        let opts = OpenOptions {
            max_kdf_mib,
            ..OpenOptions::default()
        };
        Repository::open(Box::new(b.clone()), b"nope", &opts)
            .err()
            .unwrap()
            .message
    };
    assert!(with_limit(127).contains(&name[..8]));
    let message = with_limit(128);
    assert!(!message.contains(&name[..8]), "{message}");
    assert!(
        message.contains("no key file of the repository opens"),
        "{message}"
    );
}

// Regression: every file in keys/ was read whole, whatever its size.
#[test]
fn an_oversized_key_file_is_not_read() {
    let b = MemBackend::default();
    cairn_repo::init(&b, b"pw", &fast_init()).unwrap();
    let fast = fast_init().kdf;
    let name = forged_key(&b, fast, 1 << 20);
    let err = Repository::open(Box::new(b.clone()), b"nope", &OpenOptions::default())
        .err()
        .unwrap();
    assert!(
        !key_reads(&b).contains(&name),
        "the oversized key file was read"
    );
    assert!(err.message.contains(&name[..8]), "{}", err.message);
    open(&b);
}

#[test]
fn the_key_that_opened_the_repository_last_time_is_tried_first() {
    let b = MemBackend::default();
    cairn_repo::init(&b, b"pw", &fast_init()).unwrap();
    let real = names(&b, FileType::Key).pop().unwrap();
    // Decoys until one sorts before the real key, so that listing order alone tries it first.
    let mut n = 0;
    while names(&b, FileType::Key)[0] == real || n < 3 {
        forged_key(&b, fast_init().kdf, n);
        n += 1;
    }
    let cache = tempfile::tempdir().unwrap();
    let opts = OpenOptions {
        cache_dir: Some(cache.path().to_path_buf()),
        ..OpenOptions::default()
    };
    drop(Repository::open(Box::new(b.clone()), b"pw", &opts).unwrap());
    b.reads.lock().unwrap().clear();
    drop(Repository::open(Box::new(b.clone()), b"pw", &opts).unwrap());
    assert_eq!(key_reads(&b), vec![real.clone()]);
    // The hint holds the key file's id and nothing else.
    let hints: Vec<_> = walk(cache.path())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("key-hint"))
        .collect();
    assert_eq!(hints.len(), 1, "{hints:?}");
    assert_eq!(std::fs::read_to_string(&hints[0]).unwrap().trim(), real);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

// Regression: index files, snapshots, packs, config and lock files were read whole whatever
// their length: a store serving a 10 GiB "snapshot" got the client killed for memory.
#[test]
fn every_object_read_is_bounded_by_its_type() {
    let b = MemBackend::default();
    cairn_repo::init(&b, b"pw", &fast_init()).unwrap();
    let writer = OpenOptions {
        writer: true,
        ..OpenOptions::default()
    };
    let repo = Repository::open(Box::new(b.clone()), b"pw", &writer).unwrap();
    let data = repo_blob(&repo, b"some data");
    let tree = repo
        .save_tree(&Tree {
            nodes: vec![cairn_format::tree::Node {
                name: b"f".to_vec(),
                content: vec![cairn_format::DataId(data)],
                ..Default::default()
            }],
        })
        .unwrap()
        .0;
    repo.save_snapshot(&snapshot_of(tree)).unwrap();
    drop(repo);

    b.unbounded.lock().unwrap().clear();
    let repo = Repository::open(Box::new(b.clone()), b"pw", &writer).unwrap();
    assert_eq!(repo.snapshots().unwrap().list.len(), 1);
    repo.load_tree(tree).unwrap();
    for index in repo.index_ids().unwrap() {
        repo.read_index(index).unwrap();
    }
    for (pack, size) in repo.list_packs().unwrap() {
        repo.read_pack(&pack).unwrap();
        repo.read_pack_header(&pack, size).unwrap();
        repo.read_pack_unverified(&pack).unwrap();
    }
    repo.verify_key_files().unwrap();
    // Another writer's marker in locks/.
    let other = Repository::open(Box::new(b.clone()), b"pw", &writer).unwrap();
    repo.others_may_index().unwrap();
    assert!(
        b.reads
            .lock()
            .unwrap()
            .iter()
            .any(|(dir, _)| dir == FileType::Lock.dir()),
        "no lock file was read"
    );
    drop(other);
    let unbounded = b.unbounded.lock().unwrap().clone();
    assert!(unbounded.is_empty(), "read without a bound: {unbounded:?}");

    // A snapshot file longer than any snapshot is left out unread, as damaged.
    let name = "ab".repeat(32);
    put(&b, FileType::Snapshot, &name, vec![0; (64 << 20) + 1]);
    b.reads.lock().unwrap().clear();
    let snapshots = repo.snapshots().unwrap();
    assert_eq!(snapshots.list.len(), 1);
    let damaged = snapshots.damaged;
    assert_eq!(damaged.len(), 1, "{damaged:?}");
    assert!(damaged[0].1.contains("more than"), "{damaged:?}");
    assert!(!b
        .reads
        .lock()
        .unwrap()
        .contains(&key(FileType::Snapshot, &name)));
}

// Regression: tree blobs had no size limit, and a blob's lengths came from the index unchecked:
// an index entry claiming a 4 GiB tree made a reader allocate 4 GiB before reading a byte.
#[test]
fn blobs_longer_than_their_type_allows_are_refused_on_write_and_read() {
    let b = MemBackend::default();
    cairn_repo::init(&b, b"pw", &fast_init()).unwrap();
    let repo = open(&b);
    let huge = Tree {
        nodes: vec![cairn_format::tree::Node {
            name: b"f".to_vec(),
            xattrs: vec![(b"user.x".to_vec(), vec![0; 64 << 20])],
            ..Default::default()
        }],
    };
    let err = repo.save_tree(&huge).unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput, "{}", err.message);
    assert!(err.message.contains("64 MiB"), "{}", err.message);
    // A data blob is one chunk: at most the config's chunk_max (8 MiB by default).
    let big = vec![1u8; (8 << 20) + 1];
    let err = repo
        .save_blob(BlobType::Data, repo.blob_id(&big), &big)
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput, "{}", err.message);

    // An index entry claiming a 4 GiB tree in a real pack.
    let real = repo.save_tree(&Tree::default()).unwrap().0;
    repo.flush().unwrap();
    let loc = repo.lookup(&real.into()).unwrap().unwrap();
    let fake = BlobId {
        kind: BlobType::Tree,
        id: cairn_format::Id([9; 32]),
    };
    repo.write_index(&cairn_format::index::IndexFile {
        packs: vec![cairn_format::index::IndexPack {
            id: loc.pack,
            // The pack's size is the index's word too.
            size: 1 << 33,
            blobs: vec![cairn_format::index::IndexEntry {
                blob: fake,
                offset: 0,
                stored_len: u32::MAX,
                raw_len: u32::MAX,
            }],
        }],
        ..Default::default()
    })
    .unwrap();
    drop(repo);
    let repo = open(&b);
    // The index file is taken for damaged: no reader (restore reads spans of packs by the
    // index's lengths) ever sees its lengths.
    let damaged = repo.sync_index().unwrap().damaged;
    assert_eq!(damaged.len(), 1, "{damaged:?}");
    assert!(damaged[0].1.contains("more than"), "{damaged:?}");
    b.reads.lock().unwrap().clear();
    let err = repo.load_tree(TreeId(fake.id)).unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound, "{}", err.message);
    assert!(
        !b.reads
            .lock()
            .unwrap()
            .iter()
            .any(|(dir, _)| dir == FileType::Pack.dir()),
        "the pack was read"
    );
}

// Regression: listings took any hex name for an id, uppercase included, and read the file by
// the id's lowercase name: a file in index/ named in uppercase was never found, which the index
// sync takes for a file replaced by a prune, and it listed again, forever.
#[test]
fn names_that_are_not_lowercase_ids_are_not_taken_for_files() {
    let b = MemBackend::default();
    cairn_repo::init(&b, b"pw", &fast_init()).unwrap();
    let upper = "AB".repeat(32);
    for t in [FileType::Index, FileType::Snapshot, FileType::Pack] {
        put(&b, t, &upper, b"junk".to_vec());
    }
    let (done, opened) = std::sync::mpsc::channel();
    let backend = b.clone();
    std::thread::spawn(move || {
        let repo = Repository::open(Box::new(backend), b"pw", &OpenOptions::default()).unwrap();
        let listed = (
            repo.index_ids().unwrap().len(),
            repo.snapshot_ids().unwrap().len(),
            repo.list_packs().unwrap().len(),
        );
        let _ = done.send(listed);
    });
    let listed = opened
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("open did not finish");
    assert_eq!(listed, (0, 0, 0));
}
