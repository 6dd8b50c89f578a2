//! The mount's layout and reads on an in-memory store: what the kernel would be told, without
//! a kernel.

use crate::cache::BlobCache;
use crate::inodes::{Inodes, ROOT};
use cairn_format::snapshot::{Kind, Snapshot, Summary};
use cairn_format::tree::{FileTime, Node, NodeKind, Tree};
use cairn_format::SnapshotId;
use cairn_repo::BlobStore;
use cairn_testkit::MemStore;
use jiff::tz::TimeZone;

const SEC: i64 = 1_000_000_000;

/// A file of `len` pseudo-random bytes, cut by the store's chunker.
fn file(store: &MemStore, name: &str, len: usize) -> (Node, Vec<u8>) {
    let mut x: u32 = len as u32 | 1;
    let bytes: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    let chunker = store.chunker();
    let mut content = Vec::new();
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        let cut = chunker
            .next_boundary(rest, true)
            .unwrap_or(rest.len())
            .max(1);
        content.push(store.save_data(&rest[..cut]).unwrap().0);
        rest = &rest[cut..];
    }
    let node = Node {
        name: name.as_bytes().to_vec(),
        kind: NodeKind::File,
        mode: 0o640,
        uid: 1000,
        gid: 100,
        mtime: FileTime::new(1_700_000_000, 5),
        size: len as u64,
        content,
        ..Node::default()
    };
    (node, bytes)
}

fn snapshot(
    store: &MemStore,
    time: i64,
    host: &str,
    tags: &[&str],
    nodes: Vec<Node>,
) -> (SnapshotId, Snapshot) {
    let (tree, _) = store.save_tree(&Tree { nodes }).unwrap();
    let snapshot = Snapshot {
        time,
        host: host.as_bytes().to_vec(),
        user: Vec::new(),
        paths: vec![b"/".to_vec()],
        tags: tags.iter().map(|t| t.as_bytes().to_vec()).collect(),
        kind: Kind::Full,
        parent: None,
        tree,
        summary: Summary::default(),
        program: Vec::new(),
    };
    let id = store.save_snapshot(&snapshot).unwrap();
    (id, snapshot)
}

fn path(inodes: &mut Inodes, store: &MemStore, path: &str) -> Option<u64> {
    let mut ino = ROOT;
    for name in path.split('/').filter(|n| !n.is_empty()) {
        ino = inodes.lookup(store, ino, name.as_bytes()).unwrap()?;
    }
    Some(ino)
}

fn names(inodes: &mut Inodes, store: &MemStore, ino: u64) -> Vec<String> {
    inodes.load_children(store, ino).unwrap();
    let children = inodes.children(ino).unwrap();
    children
        .iter()
        .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
        .collect()
}

#[test]
fn snapshots_are_listed_by_time_host_and_tag_with_latest() {
    let store = MemStore::default();
    let t = 1_796_306_709 * SEC; // 2026-12-03T14:05:09Z
    let list = vec![
        snapshot(&store, t + 60 * SEC, "web", &["daily"], Vec::new()),
        snapshot(&store, t, "db", &["daily", "a/b"], Vec::new()),
    ];
    let mut inodes = Inodes::new(&list, &TimeZone::UTC, (0, 0));
    assert_eq!(
        names(&mut inodes, &store, ROOT),
        ["hosts", "snapshots", "tags"]
    );
    let snaps = path(&mut inodes, &store, "snapshots").unwrap();
    assert_eq!(
        names(&mut inodes, &store, snaps),
        ["2026-12-03T14:05:09", "2026-12-03T14:06:09", "latest"]
    );
    let latest = path(&mut inodes, &store, "snapshots/latest").unwrap();
    assert_eq!(inodes.readlink(latest).unwrap(), b"2026-12-03T14:06:09");
    let hosts = path(&mut inodes, &store, "hosts").unwrap();
    assert_eq!(names(&mut inodes, &store, hosts), ["db", "web"]);
    let db = path(&mut inodes, &store, "hosts/db").unwrap();
    assert_eq!(
        names(&mut inodes, &store, db),
        ["2026-12-03T14:05:09", "latest"]
    );
    let tags = path(&mut inodes, &store, "tags").unwrap();
    assert_eq!(names(&mut inodes, &store, tags), ["a%2Fb", "daily"]);
    let daily = path(&mut inodes, &store, "tags/daily/latest").unwrap();
    assert_eq!(inodes.readlink(daily).unwrap(), b"2026-12-03T14:06:09");
    // The same snapshot under two paths is two directories, each with its own parent.
    let a = path(&mut inodes, &store, "snapshots/2026-12-03T14:05:09").unwrap();
    let b = path(&mut inodes, &store, "hosts/db/2026-12-03T14:05:09").unwrap();
    assert_ne!(a, b);
    assert_eq!(inodes.parent(a).unwrap(), snaps);
    assert_eq!(inodes.parent(b).unwrap(), db);
    assert_eq!(inodes.attr(a).unwrap().mtime, FileTime::from_ns(t));
    assert!(path(&mut inodes, &store, "snapshots/nothing").is_none());
}

#[test]
fn no_snapshots_is_an_empty_layout() {
    let store = MemStore::default();
    let mut inodes = Inodes::new(&[], &TimeZone::UTC, (0, 0));
    let snaps = path(&mut inodes, &store, "snapshots").unwrap();
    assert!(names(&mut inodes, &store, snaps).is_empty());
}

#[test]
fn entries_have_their_saved_metadata_and_reads_at_any_offset_match_the_content() {
    let store = MemStore::default();
    let (big, big_bytes) = file(&store, "big", 50_000);
    assert!(big.content.len() > 5, "the file spans several chunks");
    let (small, small_bytes) = file(&store, "small", 10);
    let (empty, _) = file(&store, "empty", 0);
    let link = Node {
        name: b"link".to_vec(),
        kind: NodeKind::Symlink,
        mode: 0o777,
        target: b"big".to_vec(),
        size: 3,
        ..Node::default()
    };
    let (sub, _) = store
        .save_tree(&Tree {
            nodes: vec![small.clone()],
        })
        .unwrap();
    let dir = Node {
        name: b"sub".to_vec(),
        kind: NodeKind::Dir,
        mode: 0o750,
        subtree: Some(sub),
        ..Node::default()
    };
    let list = vec![snapshot(
        &store,
        SEC,
        "h",
        &[],
        vec![big.clone(), empty, link, dir],
    )];
    let mut inodes = Inodes::new(&list, &TimeZone::UTC, (0, 0));
    // `latest` is a symlink: the kernel follows it; a lookup below it is refused.
    let latest = path(&mut inodes, &store, "snapshots/latest").unwrap();
    assert!(inodes.lookup(&store, latest, b"big").is_err());
    let big_ino = path(&mut inodes, &store, "snapshots/1970-01-01T00:00:01/big").unwrap();
    let attr = inodes.attr(big_ino).unwrap();
    assert_eq!(
        (attr.kind, attr.perm, attr.uid, attr.gid),
        (NodeKind::File, 0o640, 1000, 100)
    );
    assert_eq!((attr.size, attr.mtime), (50_000, big.mtime));

    // Only a few blobs' worth of cache: reads must go chunk by chunk.
    let mut cache = BlobCache::new(8 << 10);
    let mut whole = Vec::new();
    while whole.len() < big_bytes.len() {
        let piece = inodes
            .read(&store, &mut cache, big_ino, whole.len() as u64, 4096)
            .unwrap();
        assert!(!piece.is_empty());
        whole.extend_from_slice(&piece);
        assert!(cache.held() <= 8 << 10);
    }
    assert_eq!(whole, big_bytes);
    for (offset, size) in [
        (0, 1),
        (1023, 3000),
        (49_990, 100),
        (50_000, 10),
        (70_000, 1),
    ] {
        let got = inodes
            .read(&store, &mut cache, big_ino, offset, size)
            .unwrap();
        let from = (offset as usize).min(big_bytes.len());
        let to = (offset as usize + size as usize).min(big_bytes.len());
        assert_eq!(got, big_bytes[from..to], "read of {size} at {offset}");
    }

    let root = "snapshots/1970-01-01T00:00:01";
    let empty_ino = path(&mut inodes, &store, &format!("{root}/empty")).unwrap();
    assert!(inodes
        .read(&store, &mut cache, empty_ino, 0, 4096)
        .unwrap()
        .is_empty());
    let link_ino = path(&mut inodes, &store, &format!("{root}/link")).unwrap();
    assert_eq!(inodes.readlink(link_ino).unwrap(), b"big");
    assert_eq!(inodes.attr(link_ino).unwrap().size, 3);
    let small_ino = path(&mut inodes, &store, &format!("{root}/sub/small")).unwrap();
    assert_eq!(
        inodes.read(&store, &mut cache, small_ino, 0, 100).unwrap(),
        small_bytes
    );
    let sub_ino = path(&mut inodes, &store, &format!("{root}/sub")).unwrap();
    assert_eq!(inodes.attr(sub_ino).unwrap().perm, 0o750);
    assert!(inodes.read(&store, &mut cache, sub_ino, 0, 1).is_err());
    assert!(inodes.lookup(&store, big_ino, b"x").is_err());
}

#[test]
fn a_damaged_chunk_is_an_error_not_wrong_bytes() {
    let store = MemStore::default();
    let (big, _) = file(&store, "big", 20_000);
    store.damage(big.content[2]);
    let list = vec![snapshot(&store, SEC, "h", &[], vec![big])];
    let mut inodes = Inodes::new(&list, &TimeZone::UTC, (0, 0));
    let ino = path(&mut inodes, &store, "snapshots/1970-01-01T00:00:01/big").unwrap();
    let mut cache = BlobCache::new(1 << 20);
    assert!(inodes.read(&store, &mut cache, ino, 0, 20_000).is_err());
}
