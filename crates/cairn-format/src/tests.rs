//! Round trips, golden byte vectors, and hostile input for every structure.

use crate::config::Config;
use crate::index::{IndexEntry, IndexFile, IndexPack};
use crate::key::{KdfParams, KeyHeader, KeySetRecords};
use crate::pack::{PackEntry, PackHeader};
use crate::snapshot::{Kind, Snapshot, Summary};
use crate::tree::{FileTime, Node, NodeKind, Tree};
use crate::*;
use proptest::prelude::*;

fn id(b: u8) -> Id {
    Id([b; 32])
}

fn sample_tree() -> Tree {
    Tree {
        nodes: vec![
            Node {
                name: b"a\xffb".to_vec(),
                kind: NodeKind::File,
                mode: 0o4755,
                uid: 1000,
                gid: 100,
                user: b"ann".to_vec(),
                group: b"users".to_vec(),
                mtime: FileTime::from_ns(-5),
                ctime: FileTime {
                    secs: i64::MAX,
                    nanos: 999_999_999,
                },
                size: 3,
                dev: 7,
                inode: 8,
                links: 2,
                rdev: 0,
                xattrs: vec![(b"user.k".to_vec(), b"v".to_vec())],
                target: Vec::new(),
                content: vec![DataId(id(1)), DataId(id(2))],
                subtree: None,
            },
            Node {
                name: b"d".to_vec(),
                kind: NodeKind::Dir,
                mode: 0o755,
                subtree: Some(TreeId(id(3))),
                ..Node::default()
            },
            Node {
                name: b"l".to_vec(),
                kind: NodeKind::Symlink,
                target: b"../x".to_vec(),
                size: 4,
                ..Node::default()
            },
        ],
    }
}

fn sample_snapshot() -> Snapshot {
    Snapshot {
        time: 1_795_701_600_000_000_000,
        host: b"h".to_vec(),
        user: b"u".to_vec(),
        paths: vec![b"/etc".to_vec()],
        tags: vec![b"t".to_vec()],
        kind: Kind::Differential,
        parent: Some(SnapshotId(id(4))),
        tree: TreeId(id(5)),
        summary: Summary {
            files_new: 1,
            total_bytes: 9,
            ..Summary::default()
        },
        program: b"cairn 0.1.0".to_vec(),
    }
}

fn sample_index() -> IndexFile {
    IndexFile {
        supersedes: vec![IndexId(id(6))],
        packs: vec![IndexPack {
            id: PackId(id(7)),
            size: 100,
            blobs: vec![IndexEntry {
                blob: BlobId {
                    kind: BlobType::Tree,
                    id: id(8),
                },
                offset: 10,
                stored_len: 50,
                raw_len: 90,
            }],
        }],
        condemned: vec![PackId(id(9))],
    }
}

#[test]
fn round_trips() {
    let t = sample_tree();
    assert_eq!(Tree::decode(&t.encode()).unwrap(), t);
    let s = sample_snapshot();
    assert_eq!(Snapshot::decode(&s.encode()).unwrap(), s);
    let i = sample_index();
    assert_eq!(IndexFile::decode(&i.encode()).unwrap(), i);
    let h = PackHeader {
        scheme: 0,
        entries: vec![PackEntry {
            blob: BlobId {
                kind: BlobType::Data,
                id: id(9),
            },
            stored_len: 5,
            raw_len: 3,
        }],
    };
    assert_eq!(PackHeader::decode(&h.encode()).unwrap(), h);
    let c = Config {
        repo_id: id(1),
        chunk_min: 512 << 10,
        chunk_avg: 1 << 20,
        chunk_max: 8 << 20,
        pack_size: 16 << 20,
        zstd_level: -3,
    };
    assert_eq!(Config::decode(&c.encode()).unwrap(), c);
    let r = KeySetRecords {
        records: vec![(1, [1; 32]), (9, [9; 32])],
    };
    assert_eq!(KeySetRecords::decode(&r.encode()).unwrap(), r);
}

// Golden vectors: a change here is a format change and needs a new format version and a note in
// repo-format.md's version history.
#[test]
fn golden_bytes() {
    let h = PackHeader {
        scheme: 0,
        entries: vec![PackEntry {
            blob: BlobId {
                kind: BlobType::Data,
                id: id(0xab),
            },
            stored_len: 0x0102,
            raw_len: 0x0304,
        }],
    };
    let mut want = vec![0u8, 1, 0, 0, 0, 0];
    want.extend([0xab; 32]);
    want.extend([0x02, 0x01, 0, 0, 0x04, 0x03, 0, 0]);
    assert_eq!(h.encode(), want);
    // The rest of a pack (repo-format.md, "Pack files"): a header of 45 + 41n sealed bytes,
    // then its length.
    assert_eq!(pack::header_and_trailer_len(0), 49);
    assert_eq!(pack::header_and_trailer_len(3), 49 + 3 * 41);
    assert_eq!(pack::encode_trailer(0x0403_0201), [1, 2, 3, 4]);

    // Associated data (repo-format.md, "Sealed objects"): never stored, so a change would
    // only show as every existing repository failing to open.
    assert_eq!(ad::CONFIG, b"cairn config");
    assert_eq!(ad::PACK_HEADER, b"cairn pack header");
    assert_eq!(ad::INDEX, b"cairn index");
    assert_eq!(ad::SNAPSHOT, b"cairn snapshot");
    assert_eq!(ad::KEY_FILE, b"cairn key file");

    // Markers and verdicts in locks/ (repo-format.md, "Sessions, markers and verdicts").
    let marker = crate::marker::Marker {
        session: [0x5e; 16],
        sequence: 2,
        pid: 0x0102,
        machine: b"m:b:n".to_vec(),
    };
    let mut want = b"cairnmk1".to_vec();
    want.extend([0x5e; 16]);
    want.extend([2, 0, 0, 0, 0x02, 0x01, 0, 0, 5, 0, 0, 0]);
    want.extend(b"m:b:n");
    assert_eq!(marker.encode(), want);
    let fenced = crate::marker::Verdict::Fenced {
        pid: 7,
        machine: b"m".to_vec(),
    };
    assert_eq!(
        fenced.encode(),
        b"cairnvd1\x00\x07\x00\x00\x00\x01\x00\x00\x00m"
    );
    let committed = crate::marker::Verdict::Committed(b"snap".to_vec());
    assert_eq!(committed.encode(), b"cairnvd1\x01\x04\x00\x00\x00snap");
    let mut want = b"cairn verdict ".to_vec();
    want.extend([0x5e; 16]);
    assert_eq!(crate::marker::verdict_name_preimage(&[0x5e; 16]), want);

    let condemnation = IndexFile {
        condemned: vec![PackId(id(0xcd))],
        ..IndexFile::default()
    };
    let mut want = vec![0u8, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
    want.extend([0xcd; 32]);
    assert_eq!(condemnation.encode(), want);

    let c = Config {
        repo_id: id(0x11),
        chunk_min: 1 << 19,
        chunk_avg: 1 << 20,
        chunk_max: 1 << 23,
        pack_size: 1 << 24,
        zstd_level: 3,
    };
    let mut want = vec![0x11; 32];
    for v in [1u32 << 19, 1 << 20, 1 << 23, 1 << 24, 3] {
        want.extend(v.to_le_bytes());
    }
    assert_eq!(c.encode(), want);
    assert_eq!(config::encode_preamble(1), b"CAIRNCFG\x01\x00\x00\x00");

    let tree = Tree {
        nodes: vec![Node {
            name: b"x".to_vec(),
            kind: NodeKind::Symlink,
            target: b"y".to_vec(),
            size: 1,
            mtime: FileTime { secs: -2, nanos: 3 },
            ..Node::default()
        }],
    };
    let enc = tree.encode();
    assert_eq!(enc.len(), 4 + 4 + 1 + 1 + 12 + 8 + 24 + 40 + 4 + 5 + 4 + 1);
    assert_eq!(hex::encode(&enc[..10]), "01000000010000007802");
    assert_eq!(hex::encode(&enc[30..42]), "feffffffffffffff03000000");

    let header = KeyHeader {
        kdf: KdfParams {
            memory_kib: 65536,
            iterations: 8,
            parallelism: 1,
        },
        salt: [0x5a; 32],
        created: 1,
        host: b"h".to_vec(),
        user: Vec::new(),
    };
    let enc = header.encode();
    assert_eq!(&enc[..8], b"CAIRNKEY");
    assert_eq!(enc.len(), 8 + 4 + 1 + 12 + 32 + 8 + 5 + 4);
    let file = [enc.clone(), vec![1, 2, 3]].concat();
    let (back, bytes, rest) = KeyHeader::decode(&file).unwrap();
    assert_eq!((back, bytes, rest), (header, &enc[..], &[1u8, 2, 3][..]));
}

#[test]
fn structural_rules_are_enforced() {
    let mut t = sample_tree();
    t.nodes.swap(0, 1);
    assert!(Tree::decode(&t.encode()).is_err(), "unsorted names");
    let mut t = sample_tree();
    t.nodes[0].name = b"a/b".to_vec();
    assert!(Tree::decode(&t.encode()).is_err(), "slash in a name");
    let mut t = sample_tree();
    t.nodes[1].subtree = None;
    assert!(
        Tree::decode(&t.encode()).is_err(),
        "directory without subtree"
    );
    let mut t = sample_tree();
    t.nodes[0].mtime.nanos = 1_000_000_000;
    assert!(
        Tree::decode(&t.encode()).is_err(),
        "nanoseconds out of range"
    );
    let mut i = sample_index();
    i.packs[0].blobs[0].offset = 60;
    assert!(
        IndexFile::decode(&i.encode()).is_err(),
        "blob beyond the end of its pack"
    );
    assert!(config::decode_preamble(b"CAIRNCFX\x01\0\0\0").is_err());
    let bad = Config {
        chunk_avg: 3 << 19,
        ..Config::decode(&sample_config_bytes()).unwrap()
    };
    assert!(
        Config::decode(&bad.encode()).is_err(),
        "average chunk size not a power of two"
    );
}

fn sample_config_bytes() -> Vec<u8> {
    Config {
        repo_id: id(1),
        chunk_min: 512 << 10,
        chunk_avg: 1 << 20,
        chunk_max: 8 << 20,
        pack_size: 16 << 20,
        zstd_level: 3,
    }
    .encode()
}

fn arb_node() -> impl Strategy<Value = Node> {
    (
        proptest::collection::vec(1u8..=255, 1..40),
        0u8..7,
        any::<u32>(),
        (any::<i64>(), 0u32..1_000_000_000),
        any::<u64>(),
        proptest::collection::vec(
            (
                proptest::collection::vec(any::<u8>(), 1..10),
                proptest::collection::vec(any::<u8>(), 0..10),
            ),
            0..3,
        ),
        proptest::collection::vec(any::<[u8; 32]>(), 0..4),
        proptest::collection::vec(any::<u8>(), 0..20),
    )
        .prop_map(|(name, kind, mode, mtime, size, xattrs, content, target)| {
            let name: Vec<u8> = name
                .into_iter()
                .map(|b| if b == b'/' { b'_' } else { b })
                .collect();
            let kind = NodeKind::from_u8_for_tests(kind);
            Node {
                name,
                kind,
                mode,
                mtime: FileTime {
                    secs: mtime.0,
                    nanos: mtime.1,
                },
                size,
                xattrs,
                content: content.into_iter().map(|c| DataId(Id(c))).collect(),
                target,
                subtree: (kind == NodeKind::Dir).then_some(TreeId(id(1))),
                ..Node::default()
            }
        })
}

proptest! {
    #[test]
    fn trees_round_trip(nodes in proptest::collection::vec(arb_node(), 0..20)) {
        let mut nodes = nodes;
        nodes.retain(|n| n.name != b"." && n.name != b"..");
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        nodes.dedup_by(|a, b| a.name == b.name);
        let tree = Tree { nodes };
        prop_assert_eq!(Tree::decode(&tree.encode()).unwrap(), tree);
    }

    // Hostile bytes: an error, never a panic or a huge allocation.
    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = Tree::decode(&bytes);
        let _ = Snapshot::decode(&bytes);
        let _ = IndexFile::decode(&bytes);
        let _ = PackHeader::decode(&bytes);
        let _ = Config::decode(&bytes);
        let _ = KeyHeader::decode(&bytes);
        let _ = KeySetRecords::decode(&bytes);
        let _ = config::decode_preamble(&bytes);
    }

    #[test]
    fn truncation_is_an_error(cut in 0usize..200) {
        let enc = sample_snapshot().encode();
        let cut = cut % enc.len();
        prop_assert!(Snapshot::decode(&enc[..cut]).is_err());
        let enc = sample_tree().encode();
        let cut = cut % enc.len();
        prop_assert!(Tree::decode(&enc[..cut]).is_err());
    }
}
