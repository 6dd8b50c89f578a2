//! A fuzz harness for every decoder of repository data: `config` (preamble and body), key file
//! header, key set, pack header and trailer, index file, snapshot, tree, backup marker, and the
//! hex names of listed files.
//!
//! Each decoder gets random bytes and random mutations of valid encodings (bit flips,
//! truncations, insertions, deletions, and u32 fields set to huge values). Whatever the input,
//! it must return `Ok` or `Err` without panicking, and an `Ok` value must re-encode, without
//! panicking, to exactly the bytes it was decoded from (every encoding is canonical: a file's
//! name is the hash of its bytes, so two encodings of one value would be two files). The heap a
//! decoded value holds is bounded by a small multiple of the input's length; decodes that fail
//! are shown to fail at the count check, before any allocation, where a count is hostile.
//!
//! Cases per property: 2000, or `CAIRN_FUZZ_CASES`.

use crate::config::{self, Config};
use crate::index::{IndexEntry, IndexFile, IndexPack};
use crate::key::{KdfParams, KeyHeader, KeySetRecords};
use crate::marker::{Marker, Verdict};
use crate::pack::{self, PackEntry, PackHeader};
use crate::snapshot::{Kind, Snapshot, Summary};
use crate::tree::{FileTime, Node, NodeKind, Tree};
use crate::*;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use std::mem::size_of;

fn fuzz_cases() -> u32 {
    std::env::var("CAIRN_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

// ---------------------------------------------------------------------------------------------
// The decoders, and what each must guarantee

/// Every decoder of repository data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Parser {
    ConfigPreamble,
    ConfigBody,
    KeyHeader,
    KeySet,
    PackHeader,
    IndexFile,
    Snapshot,
    Tree,
    Marker,
    Verdict,
}

const PARSERS: [Parser; 10] = [
    Parser::ConfigPreamble,
    Parser::ConfigBody,
    Parser::KeyHeader,
    Parser::KeySet,
    Parser::PackHeader,
    Parser::IndexFile,
    Parser::Snapshot,
    Parser::Tree,
    Parser::Marker,
    Parser::Verdict,
];

/// Heap bytes a decoded value may hold per input byte (plus `HEAP_SLACK`). The worst real ratio
/// is a snapshot's list of empty paths: 4 bytes each encoded, a 24-byte `Vec` each in memory,
/// and up to twice that while the list grows (12 per byte; `worst_case_heap_is_bounded`). A
/// tree's nodes take at least 103 bytes encoded and under 300 in memory.
const HEAP_PER_BYTE: usize = 16;
const HEAP_SLACK: usize = 1024;

fn vec_heap<T>(v: &Vec<T>) -> usize {
    v.capacity() * size_of::<T>()
}

fn bytes_list_heap(v: &Vec<Vec<u8>>) -> usize {
    vec_heap(v) + v.iter().map(Vec::capacity).sum::<usize>()
}

fn tree_heap(t: &Tree) -> usize {
    vec_heap(&t.nodes)
        + t.nodes
            .iter()
            .map(|n| {
                n.name.capacity()
                    + n.user.capacity()
                    + n.group.capacity()
                    + n.target.capacity()
                    + vec_heap(&n.content)
                    + vec_heap(&n.xattrs)
                    + n.xattrs
                        .iter()
                        .map(|(k, v)| k.capacity() + v.capacity())
                        .sum::<usize>()
            })
            .sum::<usize>()
}

fn snapshot_heap(s: &Snapshot) -> usize {
    s.host.capacity()
        + s.user.capacity()
        + s.program.capacity()
        + bytes_list_heap(&s.paths)
        + bytes_list_heap(&s.tags)
}

fn index_heap(i: &IndexFile) -> usize {
    vec_heap(&i.supersedes)
        + vec_heap(&i.condemned)
        + vec_heap(&i.packs)
        + i.packs.iter().map(|p| vec_heap(&p.blobs)).sum::<usize>()
}

/// Decodes `bytes` with `parser`. Panics (failing the test) if the decoder panics, if an `Ok`
/// value does not re-encode to exactly `bytes`, or if it holds more heap than the bound allows.
/// Returns whether the decode succeeded.
fn decode(parser: Parser, bytes: &[u8]) -> bool {
    // (re-encoding, heap bytes held) of an Ok value.
    let ok: Option<(Vec<u8>, usize)> = match parser {
        Parser::ConfigPreamble => config::decode_preamble(bytes).ok().map(|(version, body)| {
            (
                [config::encode_preamble(version), body.to_vec()].concat(),
                0,
            )
        }),
        Parser::ConfigBody => Config::decode(bytes).ok().map(|c| {
            c.validate().expect("a decoded config is valid");
            (c.encode(), 0)
        }),
        Parser::KeyHeader => KeyHeader::decode(bytes).ok().map(|(h, header, sealed)| {
            h.kdf.validate().expect("decoded KDF parameters are valid");
            assert_eq!(h.encode(), header, "the header bytes are its encoding");
            let heap = h.host.capacity() + h.user.capacity();
            ([header, sealed].concat(), heap)
        }),
        Parser::KeySet => KeySetRecords::decode(bytes)
            .ok()
            .map(|k| (k.encode(), vec_heap(&k.records))),
        Parser::PackHeader => PackHeader::decode(bytes).ok().map(|h| {
            // What readers compute from a header must not panic either.
            let (offsets, total) = h.offsets();
            assert_eq!(offsets.len(), h.entries.len());
            // The limits hold, and offsets are exact: nothing was cut to fit a u32.
            assert!(h.entries.len() <= pack::MAX_PACK_ENTRIES);
            assert!(total <= u64::from(u32::MAX));
            let mut pos = 0u64;
            for (e, offset) in h.entries.iter().zip(&offsets) {
                assert_eq!(u64::from(*offset), pos);
                pos += u64::from(e.stored_len);
            }
            (h.encode(), vec_heap(&h.entries))
        }),
        Parser::IndexFile => IndexFile::decode(bytes).ok().map(|i| {
            for p in &i.packs {
                assert!(p.blobs.len() <= pack::MAX_PACK_ENTRIES);
                for b in &p.blobs {
                    assert!(u64::from(b.offset) + u64::from(b.stored_len) <= p.size);
                }
            }
            (i.encode(), index_heap(&i))
        }),
        Parser::Snapshot => Snapshot::decode(bytes)
            .ok()
            .map(|s| (s.encode(), snapshot_heap(&s))),
        Parser::Tree => Tree::decode(bytes).ok().map(|t| {
            for pair in t.nodes.windows(2) {
                assert!(pair[0].name < pair[1].name, "decoded nodes are sorted");
            }
            for n in &t.nodes {
                assert!(t.find(&n.name).is_some());
                let _ = n.mtime.as_ns();
                let _ = n.ctime.as_ns();
            }
            (t.encode(), tree_heap(&t))
        }),
        Parser::Marker => Marker::decode(bytes)
            .ok()
            .map(|m| (m.encode(), m.machine.capacity())),
        Parser::Verdict => Verdict::decode(bytes).ok().map(|v| {
            let heap = match &v {
                Verdict::Committed(s) => s.capacity(),
                Verdict::Fenced { machine, .. } => machine.capacity(),
            };
            (v.encode(), heap)
        }),
    };
    let Some((encoded, heap)) = ok else {
        return false;
    };
    assert!(
        encoded == bytes,
        "{parser:?}: decoded {} bytes that re-encode differently:\n  input   {}\n  encoded {}",
        bytes.len(),
        hex::encode(bytes),
        hex::encode(&encoded)
    );
    assert!(
        heap <= HEAP_PER_BYTE * bytes.len() + HEAP_SLACK,
        "{parser:?}: {} input bytes decoded into {heap} bytes of heap",
        bytes.len()
    );
    true
}

/// The error `parser` returns for `bytes`; panics if it decodes.
fn decode_err(parser: Parser, bytes: &[u8]) -> String {
    let e = match parser {
        Parser::ConfigPreamble => config::decode_preamble(bytes).err(),
        Parser::ConfigBody => Config::decode(bytes).err(),
        Parser::KeyHeader => KeyHeader::decode(bytes).err(),
        Parser::KeySet => KeySetRecords::decode(bytes).err(),
        Parser::PackHeader => PackHeader::decode(bytes).err(),
        Parser::IndexFile => IndexFile::decode(bytes).err(),
        Parser::Snapshot => Snapshot::decode(bytes).err(),
        Parser::Tree => Tree::decode(bytes).err(),
        Parser::Marker => Marker::decode(bytes).err(),
        Parser::Verdict => Verdict::decode(bytes).err(),
    };
    match e {
        Some(e) => e.0,
        None => panic!("{parser:?} accepted {}", hex::encode(bytes)),
    }
}

// ---------------------------------------------------------------------------------------------
// Valid values

fn arb_id() -> impl Strategy<Value = Id> {
    prop_oneof![
        any::<[u8; 32]>().prop_map(Id),
        any::<u8>().prop_map(|b| Id([b; 32])),
    ]
}

fn arb_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..max)
}

fn arb_config() -> impl Strategy<Value = Config> {
    (
        arb_id(),
        8u32..=26,
        any::<u32>(),
        any::<u32>(),
        (1u32 << 16)..=(1 << 30),
        -7i32..=22,
    )
        .prop_map(|(repo_id, avg_bits, a, b, pack_size, zstd_level)| {
            let avg = 1u32 << avg_bits;
            let chunk_min = 64 + a % (avg - 63);
            let chunk_max = avg + b % ((64 << 20) - avg + 1);
            Config {
                repo_id,
                chunk_min,
                chunk_avg: avg,
                chunk_max,
                pack_size,
                zstd_level,
            }
        })
}

fn arb_key_file() -> impl Strategy<Value = Vec<u8>> {
    (
        8u32..=(4 << 20),
        1u32..=64,
        1u32..=16,
        any::<[u8; 32]>(),
        any::<i64>(),
        arb_bytes(20),
        arb_bytes(20),
        arb_bytes(200),
    )
        .prop_map(
            |(memory_kib, iterations, parallelism, salt, created, host, user, sealed)| {
                let header = KeyHeader {
                    kdf: KdfParams {
                        memory_kib,
                        iterations,
                        parallelism,
                    },
                    salt,
                    created,
                    host,
                    user,
                };
                [header.encode(), sealed].concat()
            },
        )
}

fn arb_key_set() -> impl Strategy<Value = KeySetRecords> {
    vec((any::<u8>(), any::<[u8; 32]>()), 0..8).prop_map(|records| KeySetRecords { records })
}

fn arb_blob_id() -> impl Strategy<Value = BlobId> {
    (any::<bool>(), arb_id()).prop_map(|(tree, id)| BlobId {
        kind: if tree { BlobType::Tree } else { BlobType::Data },
        id,
    })
}

/// Valid headers: their blobs span at most 4 GiB (12 of at most 2^28 bytes each).
fn arb_pack_header() -> impl Strategy<Value = PackHeader> {
    vec((arb_blob_id(), 0..1u32 << 28, any::<u32>()), 0..12).prop_map(|entries| PackHeader {
        scheme: pack::SCHEME_DATA_KEY,
        entries: entries
            .into_iter()
            .map(|(blob, stored_len, raw_len)| PackEntry {
                blob,
                stored_len,
                raw_len,
            })
            .collect(),
    })
}

fn arb_index_pack() -> impl Strategy<Value = IndexPack> {
    (
        arb_id(),
        vec(
            (arb_blob_id(), any::<u16>(), any::<u16>(), any::<u32>()),
            0..6,
        ),
        any::<u16>(),
    )
        .prop_map(|(id, blobs, slack)| {
            let mut offset = 0u32;
            let blobs: Vec<IndexEntry> = blobs
                .into_iter()
                .map(|(blob, gap, stored, raw_len)| {
                    let e = IndexEntry {
                        blob,
                        offset: offset + u32::from(gap),
                        stored_len: u32::from(stored),
                        raw_len,
                    };
                    offset = e.offset + e.stored_len;
                    e
                })
                .collect();
            IndexPack {
                id: PackId(id),
                size: u64::from(offset) + u64::from(slack),
                blobs,
            }
        })
}

fn arb_index() -> impl Strategy<Value = IndexFile> {
    (
        vec(arb_id(), 0..3),
        vec(arb_index_pack(), 0..4),
        vec(arb_id(), 0..3),
    )
        .prop_map(|(supersedes, packs, condemned)| IndexFile {
            supersedes: supersedes.into_iter().map(IndexId).collect(),
            packs,
            condemned: condemned.into_iter().map(PackId).collect(),
        })
}

fn arb_snapshot() -> impl Strategy<Value = Snapshot> {
    (
        (any::<i64>(), arb_bytes(16), arb_bytes(16)),
        (vec(arb_bytes(30), 0..4), vec(arb_bytes(10), 0..4)),
        (0u8..3, proptest::option::of(arb_id()), arb_id()),
        any::<[u64; 12]>(),
        arb_bytes(16),
    )
        .prop_map(
            |((time, host, user), (paths, tags), (kind, parent, tree), s, program)| Snapshot {
                time,
                host,
                user,
                paths,
                tags,
                kind: [Kind::Full, Kind::Incremental, Kind::Differential][kind as usize],
                parent: parent.map(SnapshotId),
                tree: TreeId(tree),
                summary: Summary {
                    files_new: s[0],
                    files_changed: s[1],
                    files_unchanged: s[2],
                    files_deleted: s[3],
                    dirs: s[4],
                    total_files: s[5],
                    total_bytes: s[6],
                    bytes_read: s[7],
                    blobs_added: s[8],
                    bytes_added: s[9],
                    errors: s[10],
                    duration_ns: s[11],
                },
                program,
            },
        )
}

const NODE_KINDS: [NodeKind; 7] = [
    NodeKind::File,
    NodeKind::Dir,
    NodeKind::Symlink,
    NodeKind::Fifo,
    NodeKind::CharDevice,
    NodeKind::BlockDevice,
    NodeKind::Socket,
];

fn arb_node() -> impl Strategy<Value = Node> {
    (
        (vec(1u8..=255, 1..12), 0usize..7, any::<[u32; 3]>()),
        (arb_bytes(8), arb_bytes(8)),
        (
            (any::<i64>(), 0u32..1_000_000_000),
            (any::<i64>(), 0u32..1_000_000_000),
        ),
        any::<[u64; 5]>(),
        vec((vec(any::<u8>(), 1..8), arb_bytes(8)), 0..3),
        (arb_bytes(12), vec(arb_id(), 0..4), arb_id()),
    )
        .prop_map(
            |((name, kind, ids), (user, group), (mtime, ctime), nums, xattrs, rest)| {
                let (target, content, subtree) = rest;
                let kind = NODE_KINDS[kind];
                let name: Vec<u8> = name
                    .into_iter()
                    .map(|b| if b == b'/' { b'_' } else { b })
                    .collect();
                Node {
                    name,
                    kind,
                    mode: ids[0],
                    uid: ids[1],
                    gid: ids[2],
                    user,
                    group,
                    mtime: FileTime {
                        secs: mtime.0,
                        nanos: mtime.1,
                    },
                    ctime: FileTime {
                        secs: ctime.0,
                        nanos: ctime.1,
                    },
                    size: nums[0],
                    dev: nums[1],
                    inode: nums[2],
                    links: nums[3],
                    rdev: nums[4],
                    xattrs,
                    target,
                    content: content.into_iter().map(DataId).collect(),
                    subtree: (kind == NodeKind::Dir).then_some(TreeId(subtree)),
                }
            },
        )
}

fn arb_tree() -> impl Strategy<Value = Tree> {
    vec(arb_node(), 0..6).prop_map(|mut nodes| {
        nodes.retain(|n| n.name != b"." && n.name != b"..");
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        nodes.dedup_by(|a, b| a.name == b.name);
        Tree { nodes }
    })
}

fn arb_marker() -> impl Strategy<Value = Marker> {
    (any::<[u8; 16]>(), any::<u32>(), any::<u32>(), arb_bytes(60)).prop_map(
        |(session, sequence, pid, machine)| Marker {
            session,
            sequence,
            pid,
            machine,
        },
    )
}

fn arb_verdict() -> impl Strategy<Value = Verdict> {
    prop_oneof![
        (any::<u32>(), arb_bytes(60)).prop_map(|(pid, machine)| Verdict::Fenced { pid, machine }),
        arb_bytes(200).prop_map(Verdict::Committed)
    ]
}

/// A valid encoding for `parser`.
fn arb_valid(parser: Parser) -> BoxedStrategy<Vec<u8>> {
    match parser {
        Parser::ConfigPreamble => (any::<u32>(), arb_bytes(120))
            .prop_map(|(v, body)| [config::encode_preamble(v), body].concat())
            .boxed(),
        Parser::ConfigBody => arb_config().prop_map(|c| c.encode()).boxed(),
        Parser::KeyHeader => arb_key_file().boxed(),
        Parser::KeySet => arb_key_set().prop_map(|k| k.encode()).boxed(),
        Parser::PackHeader => arb_pack_header().prop_map(|h| h.encode()).boxed(),
        Parser::IndexFile => arb_index().prop_map(|i| i.encode()).boxed(),
        Parser::Snapshot => arb_snapshot().prop_map(|s| s.encode()).boxed(),
        Parser::Tree => arb_tree().prop_map(|t| t.encode()).boxed(),
        Parser::Marker => arb_marker().prop_map(|m| m.encode()).boxed(),
        Parser::Verdict => arb_verdict().prop_map(|v| v.encode()).boxed(),
    }
}

fn arb_parser() -> impl Strategy<Value = Parser> {
    proptest::sample::select(PARSERS.to_vec())
}

// ---------------------------------------------------------------------------------------------
// Mutations

/// Values that a hostile count or length field would carry.
const HUGE: [u32; 6] = [
    u32::MAX,
    u32::MAX - 1,
    1 << 31,
    (1 << 31) - 1,
    1 << 24,
    65_536,
];

#[derive(Clone, Debug)]
enum Mutation {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    Truncate(Index),
    Insert(Index, Vec<u8>),
    Delete(Index, Index),
    /// Overwrites 4 bytes with a huge little-endian u32, as a hostile count or length would.
    Huge(Index, u32),
    /// Overwrites 4 bytes with a u32 just beyond what is left after them.
    JustTooLong(Index),
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(i, v)| Mutation::SetByte(i, v)),
        2 => any::<Index>().prop_map(Mutation::Truncate),
        1 => (any::<Index>(), vec(any::<u8>(), 1..8)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(i, n)| Mutation::Delete(i, n)),
        3 => (any::<Index>(), prop_oneof![proptest::sample::select(HUGE.to_vec()), any::<u32>()])
            .prop_map(|(i, v)| Mutation::Huge(i, v)),
        1 => any::<Index>().prop_map(Mutation::JustTooLong),
    ]
}

fn set_u32(bytes: &mut [u8], at: usize, v: u32) {
    let end = (at + 4).min(bytes.len());
    bytes[at..end].copy_from_slice(&v.to_le_bytes()[..end - at]);
}

fn mutate(bytes: &mut Vec<u8>, m: &Mutation) {
    let len = bytes.len();
    match m {
        Mutation::Insert(i, ins) => {
            let at = i.index(len + 1);
            bytes.splice(at..at, ins.iter().copied());
        }
        _ if len == 0 => {}
        Mutation::FlipBit(i, bit) => bytes[i.index(len)] ^= 1 << bit,
        Mutation::SetByte(i, v) => bytes[i.index(len)] = *v,
        Mutation::Truncate(i) => bytes.truncate(i.index(len)),
        Mutation::Delete(i, n) => {
            let at = i.index(len);
            let n = 1 + n.index(8.min(len - at));
            bytes.drain(at..at + n);
        }
        Mutation::Huge(i, v) => set_u32(bytes, i.index(len), *v),
        Mutation::JustTooLong(i) => {
            let at = i.index(len);
            let left = len.saturating_sub(at + 4);
            set_u32(bytes, at, u32::try_from(left + 1).unwrap_or(u32::MAX));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(ProptestConfig { cases: fuzz_cases(), ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(parser in arb_parser(), bytes in vec(any::<u8>(), 0..600)) {
        decode(parser, &bytes);
    }

    /// Random bytes behind a valid prefix (magic, version, a plausible count) reach deeper
    /// than pure noise.
    #[test]
    fn random_tails_of_valid_prefixes_never_panic(
        parser in arb_parser(),
        valid in arb_parser().prop_flat_map(arb_valid),
        cut in any::<Index>(),
        tail in vec(any::<u8>(), 0..200),
    ) {
        let mut bytes = valid[..cut.index(valid.len() + 1)].to_vec();
        bytes.extend(tail);
        decode(parser, &bytes);
    }

    #[test]
    fn valid_encodings_decode(
        (parser, bytes) in arb_parser().prop_flat_map(|p| (Just(p), arb_valid(p))),
    ) {
        prop_assert!(decode(parser, &bytes), "{:?} rejected a valid encoding", parser);
    }

    #[test]
    fn mutated_valid_encodings_never_panic(
        (parser, valid) in arb_parser().prop_flat_map(|p| (Just(p), arb_valid(p))),
        mutations in vec(arb_mutation(), 1..4),
    ) {
        let mut bytes = valid;
        for m in &mutations {
            mutate(&mut bytes, m);
        }
        decode(parser, &bytes);
        // The same bytes, fed to every other decoder too.
        for other in PARSERS {
            decode(other, &bytes);
        }
    }

    /// Every strict prefix of a valid encoding is an error, and so is any trailing byte (the key
    /// file header and the config preamble excepted: a sealed part of any length follows them).
    #[test]
    fn truncated_or_extended_encodings_are_errors(
        (parser, valid) in proptest::sample::select(
            PARSERS
                .into_iter()
                .filter(|p| !matches!(p, Parser::KeyHeader | Parser::ConfigPreamble))
                .collect::<Vec<_>>(),
        )
        .prop_flat_map(|p| (Just(p), arb_valid(p))),
        cut in any::<Index>(),
        extra in vec(any::<u8>(), 1..4),
    ) {
        // No valid encoding is empty: each starts with a count, a field or a magic.
        let cut = cut.index(valid.len());
        prop_assert!(!decode(parser, &valid[..cut]), "{:?} accepted a truncation", parser);
        let longer = [valid.clone(), extra].concat();
        prop_assert!(!decode(parser, &longer), "{:?} accepted trailing bytes", parser);
    }

    #[test]
    fn hex_names_parse_or_not_without_panic(s in "\\PC{0,70}", hex in "[0-9a-fA-F]{62,66}") {
        for s in [&s, &hex] {
            if let Some(id) = Id::from_hex(s) {
                prop_assert_eq!(s.len(), 64);
                prop_assert_eq!(id.to_hex(), s.to_ascii_lowercase());
            }
            // A listed name is an id only if reading the id back names the same file.
            match Id::from_name(s) {
                Some(id) => prop_assert_eq!(&id.to_hex(), s),
                None => prop_assert!(Id::from_hex(s).is_none_or(|id| id.to_hex() != *s)),
            }
        }
    }

    #[test]
    fn pack_trailers_bound_the_header(pack_len in any::<u64>(), trailer in any::<[u8; 4]>()) {
        if let Ok(h) = pack::trailer_header_len(pack_len, trailer) {
            prop_assert!(h + 4 <= pack_len);
            prop_assert!(h <= pack::MAX_SEALED_HEADER_LEN);
            prop_assert_eq!(h, u64::from(u32::from_le_bytes(trailer)));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(fuzz_cases()))]

    /// What a key file may ask of key derivation, as a reader's local limit measures it: never
    /// less than the work asked, and never more than the format's own bounds allow.
    #[test]
    fn kdf_cost_is_measured_without_overflow(
        memory_kib in any::<u32>(),
        iterations in any::<u32>(),
        parallelism in any::<u32>(),
    ) {
        let kdf = KdfParams { memory_kib, iterations, parallelism };
        let cost = kdf.cost_mib();
        prop_assert!(cost * 1024 >= u64::from(memory_kib) * u64::from(iterations));
        if kdf.validate().is_ok() {
            prop_assert!(cost <= 4096 * 64);
        }
    }

    /// Pack headers whose counts and lengths lie within the bytes given: at or just past the
    /// entry limit, or with lengths summing past 4 GiB. They decode only within the limits.
    #[test]
    fn pack_headers_lying_within_their_bytes_stay_within_the_limits(
        lens in vec(any::<u32>(), 1..6),
        claimed_extra in 0u32..3,
    ) {
        let header = PackHeader {
            scheme: 0,
            entries: lens
                .iter()
                .map(|l| PackEntry {
                    blob: BlobId { kind: BlobType::Data, id: id(1) },
                    stored_len: *l,
                    raw_len: *l,
                })
                .collect(),
        };
        let mut bytes = header.encode();
        let fits = lens.iter().map(|l| u64::from(*l)).sum::<u64>() <= u64::from(u32::MAX);
        prop_assert_eq!(decode(Parser::PackHeader, &bytes), fits);
        // A count beyond the entries given is refused before anything is reserved for it.
        set_u32(&mut bytes, 1, lens.len() as u32 + 1 + claimed_extra);
        prop_assert!(!decode(Parser::PackHeader, &bytes));
    }
}

/// Counts and lengths that the bytes could hold but the format's limits do not allow: each
/// fails with its limit named, before the items are reserved (repo-format.md, "Limits").
#[test]
fn counts_within_the_bytes_but_past_the_limits_fail() {
    let n = pack::MAX_PACK_ENTRIES + 1;
    let mut header = vec![0u8];
    header.extend_from_slice(&le(n as u32));
    header.resize(5 + n * pack::ENTRY_LEN, 0);
    let e = decode_err(Parser::PackHeader, &header);
    assert!(e.contains("more than the 1048576 a pack may hold"), "{e}");

    let mut index = [le(0), le(1)].concat();
    index.extend_from_slice(&[0; 32]);
    index.extend_from_slice(&u64::MAX.to_le_bytes());
    index.extend_from_slice(&le(n as u32));
    index.resize(index.len() + n * index::ENTRY_LEN + 4, 0);
    let e = decode_err(Parser::IndexFile, &index);
    assert!(e.contains("more than a pack may hold"), "{e}");

    let tree = vec![0u8; tree::MAX_TREE_LEN + 1];
    let e = decode_err(Parser::Tree, &tree);
    assert!(e.contains("more than the 64 MiB a tree may have"), "{e}");

    let e = pack::trailer_header_len(u64::MAX, le(u32::MAX)).unwrap_err();
    assert!(e.0.contains("exceeds"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Exhaustive single mutations of fixed samples, and hostile counts

fn id(b: u8) -> Id {
    Id([b; 32])
}

/// One valid encoding per parser, each with every optional part present.
fn samples() -> Vec<(Parser, Vec<u8>)> {
    let node = |name: &[u8], kind: NodeKind| Node {
        name: name.to_vec(),
        kind,
        user: b"ann".to_vec(),
        group: b"staff".to_vec(),
        xattrs: vec![(b"user.a".to_vec(), b"1".to_vec())],
        target: if kind == NodeKind::Symlink {
            b"t".to_vec()
        } else {
            Vec::new()
        },
        content: if kind == NodeKind::File {
            vec![DataId(id(1)), DataId(id(2))]
        } else {
            Vec::new()
        },
        subtree: (kind == NodeKind::Dir).then_some(TreeId(id(3))),
        ..Node::default()
    };
    let tree = Tree {
        nodes: vec![
            node(b"a", NodeKind::File),
            node(b"b", NodeKind::Dir),
            node(b"c", NodeKind::Symlink),
        ],
    };
    let snapshot = Snapshot {
        time: 1,
        host: b"host".to_vec(),
        user: b"user".to_vec(),
        paths: vec![b"/a".to_vec(), b"/b".to_vec()],
        tags: vec![b"t".to_vec()],
        kind: Kind::Incremental,
        parent: Some(SnapshotId(id(4))),
        tree: TreeId(id(5)),
        summary: Summary::default(),
        program: b"cairn 0.1.0".to_vec(),
    };
    let entry = |b: u8, offset: u32| IndexEntry {
        blob: BlobId {
            kind: BlobType::Data,
            id: id(b),
        },
        offset,
        stored_len: 10,
        raw_len: 9,
    };
    let index = IndexFile {
        supersedes: vec![IndexId(id(6))],
        packs: vec![
            IndexPack {
                id: PackId(id(7)),
                size: 100,
                blobs: vec![entry(8, 0), entry(9, 10)],
            },
            IndexPack {
                id: PackId(id(10)),
                size: 20,
                blobs: vec![entry(11, 0)],
            },
        ],
        condemned: vec![PackId(id(12))],
    };
    let header = PackHeader {
        scheme: 0,
        entries: (0..3)
            .map(|i| PackEntry {
                blob: BlobId {
                    kind: BlobType::Tree,
                    id: id(i),
                },
                stored_len: 50,
                raw_len: 40,
            })
            .collect(),
    };
    let config = Config {
        repo_id: id(1),
        chunk_min: 512 << 10,
        chunk_avg: 1 << 20,
        chunk_max: 8 << 20,
        pack_size: 16 << 20,
        zstd_level: 3,
    };
    let key_header = KeyHeader {
        kdf: KdfParams {
            memory_kib: 65_536,
            iterations: 8,
            parallelism: 1,
        },
        salt: [7; 32],
        created: 5,
        host: b"host".to_vec(),
        user: b"user".to_vec(),
    };
    let key_set = KeySetRecords {
        records: (1..=4).map(|r| (r, [r; 32])).collect(),
    };
    let marker = Marker {
        session: [1; 16],
        sequence: 3,
        pid: 42,
        machine: b"boot:ns".to_vec(),
    };
    vec![
        (
            Parser::ConfigPreamble,
            [config::encode_preamble(1), vec![0; 92]].concat(),
        ),
        (Parser::ConfigBody, config.encode()),
        (
            Parser::KeyHeader,
            [key_header.encode(), vec![0; 173]].concat(),
        ),
        (Parser::KeySet, key_set.encode()),
        (Parser::PackHeader, header.encode()),
        (Parser::IndexFile, index.encode()),
        (Parser::Snapshot, snapshot.encode()),
        (Parser::Tree, tree.encode()),
        (Parser::Marker, marker.encode()),
        (
            Parser::Verdict,
            Verdict::Fenced {
                pid: 42,
                machine: b"m:boot:ns".to_vec(),
            }
            .encode(),
        ),
        (
            Parser::Verdict,
            Verdict::Committed(b"sealed snapshot".to_vec()).encode(),
        ),
    ]
}

#[test]
fn samples_are_valid() {
    for (parser, bytes) in samples() {
        assert!(decode(parser, &bytes), "{parser:?} rejects its sample");
    }
}

/// Every bit flip, every huge u32 at every offset, every truncation and every deleted byte of
/// each sample: no panic, and whatever decodes is canonical and bounded.
#[test]
fn every_single_mutation_of_the_samples() {
    for (parser, valid) in samples() {
        for at in 0..valid.len() {
            for bit in 0..8 {
                let mut b = valid.clone();
                b[at] ^= 1 << bit;
                decode(parser, &b);
            }
            for v in HUGE {
                let mut b = valid.clone();
                set_u32(&mut b, at, v);
                decode(parser, &b);
            }
            let mut b = valid.clone();
            b.remove(at);
            decode(parser, &b);
            decode(parser, &valid[..at]);
        }
    }
}

/// A little-endian u32.
fn le(v: u32) -> [u8; 4] {
    v.to_le_bytes()
}

/// Short inputs whose counts claim 2^32 - 1 items fail at the count check, before anything is
/// reserved for the items (the message says so); byte strings that claim 4 GiB fail as
/// truncated.
#[test]
fn huge_counts_fail_before_allocating() {
    let max = le(u32::MAX);
    let pad = |mut v: Vec<u8>, len: usize| {
        v.resize(len.max(v.len()), 0);
        v
    };
    let count_cases: Vec<(Parser, Vec<u8>)> = vec![
        // Node count.
        (Parser::Tree, pad(max.to_vec(), 40)),
        // Pack header entry count, after the scheme byte.
        (Parser::PackHeader, pad([&[0u8][..], &max].concat(), 40)),
        // Index file: supersedes, packs, and condemned counts, and a pack's blob count.
        (Parser::IndexFile, pad(max.to_vec(), 40)),
        (Parser::IndexFile, pad([&le(0)[..], &max].concat(), 40)),
        (
            Parser::IndexFile,
            [
                &le(0)[..],
                &le(1),
                &[0; 32],
                &le(100).repeat(2),
                &max,
                &[0; 8],
            ]
            .concat(),
        ),
        (
            Parser::IndexFile,
            pad([&le(0)[..], &le(0), &max].concat(), 40),
        ),
        // Snapshot: paths count after time, empty host and empty user; then tags count.
        (
            Parser::Snapshot,
            pad([&[0u8; 8][..], &le(0), &le(0), &max].concat(), 40),
        ),
        (
            Parser::Snapshot,
            pad([&[0u8; 8][..], &le(0), &le(0), &le(0), &max].concat(), 40),
        ),
    ];
    for (parser, bytes) in &count_cases {
        let e = decode_err(*parser, bytes);
        assert!(
            e.contains("count 4294967295 cannot fit"),
            "{parser:?} on {} bytes claiming 2^32 - 1 items: {e}",
            bytes.len()
        );
    }

    // A tree with one node whose xattr count, then whose content count, is huge.
    let node = Tree {
        nodes: vec![Node {
            name: b"f".to_vec(),
            ..Node::default()
        }],
    }
    .encode();
    // name (4 + 1), kind, mode, uid, gid, user, group, two times, five u64s.
    let xattr_count_at = 4 + 5 + 1 + 12 + 8 + 24 + 40;
    let content_count_at = xattr_count_at + 4 + 4;
    assert_eq!(node.len(), content_count_at + 4 + 1);
    for at in [xattr_count_at, content_count_at] {
        let mut bytes = node.clone();
        bytes[at..at + 4].copy_from_slice(&max);
        let e = decode_err(Parser::Tree, &bytes);
        assert!(e.contains("count 4294967295 cannot fit"), "{e}");
    }

    // Byte strings claiming 4 GiB: a key file's host, a snapshot's host, a tree node's name, a
    // marker's machine.
    let key_header = KeyHeader {
        kdf: KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        },
        salt: [0; 32],
        created: 0,
        host: Vec::new(),
        user: Vec::new(),
    }
    .encode();
    let host_at = key_header.len() - 8;
    let mut key_file = key_header.clone();
    key_file[host_at..host_at + 4].copy_from_slice(&max);
    let string_cases: Vec<(Parser, Vec<u8>)> = vec![
        (Parser::KeyHeader, key_file),
        (Parser::Snapshot, pad([&[0u8; 8][..], &max].concat(), 40)),
        (Parser::Tree, pad([&le(1)[..], &max].concat(), 120)),
        (
            Parser::Marker,
            pad([&b"cairnmk1"[..], &[0u8; 24][..], &max].concat(), 40),
        ),
        (
            Parser::Verdict,
            pad([&b"cairnvd1"[..], &[1u8][..], &max].concat(), 40),
        ),
    ];
    for (parser, bytes) in &string_cases {
        let e = decode_err(*parser, bytes);
        assert!(
            e.contains("truncated"),
            "{parser:?} on a 4 GiB byte string: {e}"
        );
    }

    // The key set's count is a u8: 255 records of 33 bytes do not fit in 40 bytes.
    let mut key_set = vec![0u8; 40];
    key_set[0] = 255;
    decode_err(Parser::KeySet, &key_set);
}

/// The densest valid encodings, where each encoded byte costs the most memory: lists of empty
/// byte strings, minimal tree nodes, empty index records, all at several lengths (list growth
/// makes the ratio depend on the count).
#[test]
fn worst_case_heap_is_bounded() {
    for n in [1usize, 2, 3, 5, 17, 129, 513, 1025, 4097] {
        let snapshot = Snapshot {
            time: 0,
            host: Vec::new(),
            user: Vec::new(),
            paths: vec![Vec::new(); n],
            tags: vec![Vec::new(); n],
            kind: Kind::Full,
            parent: None,
            tree: TreeId(id(0)),
            summary: Summary::default(),
            program: Vec::new(),
        };
        assert!(decode(Parser::Snapshot, &snapshot.encode()));
        let tree = Tree {
            nodes: (0..n)
                .map(|i| Node {
                    name: format!("{i:05}").into_bytes(),
                    ..Node::default()
                })
                .collect(),
        };
        assert!(decode(Parser::Tree, &tree.encode()));
        let index = IndexFile {
            supersedes: vec![IndexId(id(1)); n],
            packs: vec![
                IndexPack {
                    id: PackId(id(2)),
                    size: 0,
                    blobs: Vec::new(),
                };
                n
            ],
            condemned: vec![PackId(id(3)); n],
        };
        assert!(decode(Parser::IndexFile, &index.encode()));
        let header = PackHeader {
            scheme: 0,
            entries: vec![
                PackEntry {
                    blob: BlobId {
                        kind: BlobType::Data,
                        id: id(4),
                    },
                    stored_len: 0,
                    raw_len: 0,
                };
                n
            ],
        };
        assert!(decode(Parser::PackHeader, &header.encode()));
        let marker = Marker {
            session: [0; 16],
            sequence: 0,
            pid: 0,
            machine: vec![0; n],
        };
        assert!(decode(Parser::Marker, &marker.encode()));
    }
}

// Regression: the tree decoder bounded its node count by a minimum node size of 94 bytes,
// counting the two 12-byte file times as 8 bytes each, where a node takes at least 102 bytes
// plus its (non-empty) name. A count that cannot fit must be refused at the count check.
#[test]
fn tree_counts_are_bounded_by_the_minimum_node_size() {
    let one = Tree {
        nodes: vec![Node {
            name: b"f".to_vec(),
            ..Node::default()
        }],
    }
    .encode();
    assert_eq!(one.len(), 4 + 102 + 1, "the smallest node");
    assert!(decode(Parser::Tree, &one));
    for count in [1u32, 2, 10, 1000] {
        let mut bytes = le(count).to_vec();
        bytes.resize(4 + 102 * count as usize - 1, 0);
        let e = decode_err(Parser::Tree, &bytes);
        assert!(
            e.contains(&format!("count {count} cannot fit")),
            "{count} nodes in {} bytes: {e}",
            bytes.len() - 4
        );
    }
}
