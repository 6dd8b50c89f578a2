//! What `check` finds: one `Problem` per finding, typed so that callers can tell them apart
//! without reading the text, and displayed as the one line the CLI prints.
//!
//! The engine has no serde: `Problem::details` gives each finding's facts as plain values
//! (ids in full hex), and the CLI turns them into JSON.

use cairn_format::{BlobId, IndexId, PackId, SnapshotId, TreeId};
use std::fmt;
use std::path::{Path, PathBuf};

/// One thing `check` found. Every variant but the two warnings is damage; the warnings are
/// space that prune can reclaim, or a recording that a later command can still make.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Problem {
    /// A key file that does not match its name, has an invalid header, is too large, or has a
    /// name that is no key id. The repository's message names the file.
    KeyFile { message: String },
    /// An index file that does not open.
    IndexUnreadable { index: IndexId, message: String },
    /// Two index files that give one pack different sizes.
    IndexSizesDisagree {
        pack: PackId,
        index: IndexId,
        size: u64,
        other_index: IndexId,
        other_size: u64,
    },
    /// A pack an index file names that is not in storage.
    PackMissing { pack: PackId, index: IndexId },
    /// A pack whose length in storage is not the one the index records.
    PackSizeMismatch {
        pack: PackId,
        expected: u64,
        found: u64,
    },
    /// A pack read in full that does not match its name, or whose header or trailer does not
    /// open. The repository's message names the pack.
    PackDamaged { pack: PackId, message: String },
    /// A pack that could not be read at all. The repository's message names the pack.
    PackUnreadable { pack: PackId, message: String },
    /// A blob of a pack read in full that does not open or does not match its id.
    BlobDamaged {
        pack: PackId,
        blob: BlobId,
        message: String,
    },
    /// A blob the index and its pack's header put at different offsets.
    BlobOffsetMismatch {
        pack: PackId,
        blob: BlobId,
        index_offset: u32,
        header_offset: u32,
    },
    /// A snapshot file that does not open. The repository's message names the snapshot.
    SnapshotUnreadable {
        snapshot: SnapshotId,
        message: String,
    },
    /// A snapshot whose directories nest deeper than a snapshot may (repo-format.md,
    /// "Limits"): it cannot be restored at all.
    SnapshotTooDeep {
        snapshot: SnapshotId,
        message: String,
    },
    /// The listing of the directory at `path` cannot be read.
    TreeLost {
        snapshot: SnapshotId,
        path: PathBuf,
        loss: Loss,
    },
    /// Content of the file at `path` cannot be read.
    ContentLost {
        snapshot: SnapshotId,
        path: PathBuf,
        loss: Loss,
    },
    /// A warning: packs in storage that no index file names.
    PacksNotIndexed { count: u64 },
    /// A warning: damaged packs that could not be recorded (condemned with the records of
    /// their intact blobs).
    PacksNotRecorded { packs: Vec<PackId>, message: String },
}

/// Why a blob cannot be read.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Loss {
    /// Its pack was read in full, and the blob did not open or did not match its id.
    Damaged { blob: BlobId, pack: PackId },
    /// The index puts it in a pack that cannot be read whatever its bytes.
    InBadPack {
        blob: BlobId,
        pack: PackId,
        why: BadPack,
    },
    /// No index file names it.
    NotIndexed { blob: BlobId },
    /// The index could not be asked where it is.
    LookupFailed { blob: BlobId, message: String },
    /// A tree that the index locates but that does not load. The message names the tree.
    TreeUnreadable { tree: TreeId, message: String },
}

/// What is wrong with a pack that makes every blob in it unreadable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadPack {
    Missing,
    Truncated,
    TooLong,
    /// Condemned (its blobs live on elsewhere or were given up) and deleted by a prune, while
    /// a snapshot still reaches a blob only it held.
    Deleted,
}

/// A fact of a problem for machine-readable output.
#[derive(Clone, Debug, PartialEq)]
pub enum Detail<'a> {
    /// An id, in full hex.
    Id(String),
    Ids(Vec<String>),
    Path(&'a Path),
    Number(u64),
    /// One of a fixed set of words, such as a blob's type.
    Word(&'static str),
}

impl Problem {
    /// A stable name for the variant, in snake case, for machine-readable output.
    pub fn kind(&self) -> &'static str {
        match self {
            Problem::KeyFile { .. } => "key_file",
            Problem::IndexUnreadable { .. } => "index_unreadable",
            Problem::IndexSizesDisagree { .. } => "index_sizes_disagree",
            Problem::PackMissing { .. } => "pack_missing",
            Problem::PackSizeMismatch { .. } => "pack_size_mismatch",
            Problem::PackDamaged { .. } => "pack_damaged",
            Problem::PackUnreadable { .. } => "pack_unreadable",
            Problem::BlobDamaged { .. } => "blob_damaged",
            Problem::BlobOffsetMismatch { .. } => "blob_offset_mismatch",
            Problem::SnapshotUnreadable { .. } => "snapshot_unreadable",
            Problem::SnapshotTooDeep { .. } => "snapshot_too_deep",
            Problem::TreeLost { .. } => "tree_lost",
            Problem::ContentLost { .. } => "content_lost",
            Problem::PacksNotIndexed { .. } => "packs_not_indexed",
            Problem::PacksNotRecorded { .. } => "packs_not_recorded",
        }
    }

    /// Whether this is a warning (nothing is lost) rather than an error.
    pub fn is_warning(&self) -> bool {
        matches!(
            self,
            Problem::PacksNotIndexed { .. } | Problem::PacksNotRecorded { .. }
        )
    }

    /// The facts of the problem by name, beyond its kind and its message: the ids, paths and
    /// numbers the message shows, ids in full.
    pub fn details(&self) -> Vec<(&'static str, Detail<'_>)> {
        let id = |id: &dyn fmt::Display| Detail::Id(id.to_string());
        match self {
            Problem::KeyFile { .. } => vec![],
            Problem::IndexUnreadable { index, .. } => vec![("index", id(index))],
            Problem::IndexSizesDisagree {
                pack,
                index,
                size,
                other_index,
                other_size,
            } => vec![
                ("pack", id(pack)),
                ("index", id(index)),
                ("size", Detail::Number(*size)),
                ("other_index", id(other_index)),
                ("other_size", Detail::Number(*other_size)),
            ],
            Problem::PackMissing { pack, index } => vec![("pack", id(pack)), ("index", id(index))],
            Problem::PackSizeMismatch {
                pack,
                expected,
                found,
            } => vec![
                ("pack", id(pack)),
                ("expected", Detail::Number(*expected)),
                ("found", Detail::Number(*found)),
            ],
            Problem::PackDamaged { pack, .. } | Problem::PackUnreadable { pack, .. } => {
                vec![("pack", id(pack))]
            }
            Problem::BlobDamaged { pack, blob, .. } => {
                let mut out = vec![("pack", id(pack))];
                out.extend(blob_details(blob));
                out
            }
            Problem::BlobOffsetMismatch {
                pack,
                blob,
                index_offset,
                header_offset,
            } => {
                let mut out = vec![("pack", id(pack))];
                out.extend(blob_details(blob));
                out.push(("index_offset", Detail::Number((*index_offset).into())));
                out.push(("header_offset", Detail::Number((*header_offset).into())));
                out
            }
            Problem::SnapshotUnreadable { snapshot, .. }
            | Problem::SnapshotTooDeep { snapshot, .. } => vec![("snapshot", id(snapshot))],
            Problem::TreeLost {
                snapshot,
                path,
                loss,
            }
            | Problem::ContentLost {
                snapshot,
                path,
                loss,
            } => {
                let mut out = vec![("snapshot", id(snapshot)), ("path", Detail::Path(path))];
                out.extend(loss.details());
                out
            }
            Problem::PacksNotIndexed { count } => vec![("count", Detail::Number(*count))],
            Problem::PacksNotRecorded { packs, .. } => vec![(
                "packs",
                Detail::Ids(packs.iter().map(PackId::to_hex).collect()),
            )],
        }
    }
}

fn blob_details(blob: &BlobId) -> [(&'static str, Detail<'static>); 2] {
    [
        ("blob", Detail::Id(blob.id.to_hex())),
        ("blob_type", Detail::Word(blob.kind.name())),
    ]
}

impl Loss {
    /// A stable name for the variant, in snake case, for machine-readable output.
    pub fn kind(&self) -> &'static str {
        match self {
            Loss::Damaged { .. } => "blob_damaged",
            Loss::InBadPack { .. } => "in_bad_pack",
            Loss::NotIndexed { .. } => "not_indexed",
            Loss::LookupFailed { .. } => "lookup_failed",
            Loss::TreeUnreadable { .. } => "tree_unreadable",
        }
    }

    /// The blob that cannot be read.
    pub fn blob(&self) -> BlobId {
        match self {
            Loss::Damaged { blob, .. }
            | Loss::InBadPack { blob, .. }
            | Loss::NotIndexed { blob }
            | Loss::LookupFailed { blob, .. } => *blob,
            Loss::TreeUnreadable { tree, .. } => (*tree).into(),
        }
    }

    /// The cause, the blob and, where one is to blame, the pack.
    fn details(&self) -> Vec<(&'static str, Detail<'static>)> {
        let mut out = vec![("cause", Detail::Word(self.kind()))];
        out.extend(blob_details(&self.blob()));
        match self {
            Loss::Damaged { pack, .. } => out.push(("pack", Detail::Id(pack.to_hex()))),
            Loss::InBadPack { pack, why, .. } => {
                out.push(("pack", Detail::Id(pack.to_hex())));
                out.push(("pack_problem", Detail::Word(why.kind())));
            }
            Loss::NotIndexed { .. } | Loss::LookupFailed { .. } | Loss::TreeUnreadable { .. } => {}
        }
        out
    }
}

impl BadPack {
    /// A stable name for the variant, in snake case, for machine-readable output.
    pub fn kind(self) -> &'static str {
        match self {
            BadPack::Missing => "missing",
            BadPack::Truncated => "truncated",
            BadPack::TooLong => "too_long",
            BadPack::Deleted => "deleted",
        }
    }

    /// The pack's length `found` in storage against the `expected` one, if they differ.
    pub(crate) fn of_size(expected: u64, found: u64) -> Option<BadPack> {
        match found.cmp(&expected) {
            std::cmp::Ordering::Less => Some(BadPack::Truncated),
            std::cmp::Ordering::Greater => Some(BadPack::TooLong),
            std::cmp::Ordering::Equal => None,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::KeyFile { message }
            | Problem::PackDamaged { message, .. }
            | Problem::PackUnreadable { message, .. }
            | Problem::SnapshotUnreadable { message, .. } => f.write_str(message),
            Problem::IndexUnreadable { index, message } => {
                write!(f, "index file {}: {message}", index.short())
            }
            Problem::IndexSizesDisagree {
                pack,
                index,
                size,
                other_index,
                other_size,
            } => write!(
                f,
                "index files {} and {} disagree on the size of pack {}: {size} and {other_size} bytes",
                index.short(),
                other_index.short(),
                pack.short()
            ),
            Problem::PackMissing { pack, index } => write!(
                f,
                "pack {} is missing (named by index file {})",
                pack.short(),
                index.short()
            ),
            Problem::PackSizeMismatch {
                pack,
                expected,
                found,
            } => {
                let why = if found < expected {
                    "truncated"
                } else {
                    "too long"
                };
                write!(
                    f,
                    "pack {} is {why}: expected {expected} bytes, found {found}",
                    pack.short()
                )
            }
            Problem::BlobDamaged { pack, message, .. } => {
                write!(f, "pack {}: {message}", pack.short())
            }
            Problem::BlobOffsetMismatch {
                pack,
                blob,
                index_offset,
                header_offset,
            } => write!(
                f,
                "pack {}: the index puts {blob} at offset {index_offset}, the pack header at {header_offset}",
                pack.short()
            ),
            Problem::SnapshotTooDeep { snapshot, message } => {
                write!(f, "snapshot {}: {message}", snapshot.short())
            }
            Problem::TreeLost {
                snapshot,
                path,
                loss,
            }
            | Problem::ContentLost {
                snapshot,
                path,
                loss,
            } => write!(
                f,
                "snapshot {}, {}: {loss}",
                snapshot.short(),
                path.display()
            ),
            Problem::PacksNotIndexed { count } => write!(
                f,
                "{count} packs are not in any index (left by an interrupted backup, or their index file is damaged)"
            ),
            Problem::PacksNotRecorded { packs, message } => {
                let shorts: Vec<String> = packs.iter().map(PackId::short).collect();
                write!(
                    f,
                    "cannot record damaged packs {}: {message}; `cairn repair index --read-data` does it",
                    shorts.join(", ")
                )
            }
        }
    }
}

impl fmt::Display for Loss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Loss::Damaged { blob, pack } => {
                write!(f, "{blob} in pack {} is damaged", pack.short())
            }
            Loss::InBadPack { blob, pack, why } => {
                write!(f, "{blob} is in a damaged pack: pack {} ", pack.short())?;
                f.write_str(match why {
                    BadPack::Missing => "is missing",
                    BadPack::Truncated => "is truncated",
                    BadPack::TooLong => "is too long",
                    BadPack::Deleted => "was condemned and is deleted",
                })
            }
            Loss::NotIndexed { blob } => write!(f, "{blob} is not in the index"),
            Loss::LookupFailed { message, .. } | Loss::TreeUnreadable { message, .. } => {
                f.write_str(message)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_format::{BlobType, Id};

    fn id(byte: u8) -> Id {
        Id([byte; 32])
    }

    // The CLI prints these lines and scripts match on them: they are the messages `check` gave
    // before its findings were typed, kept byte for byte.
    #[test]
    fn problems_display_as_the_lines_check_always_printed() {
        let pack = PackId(id(0xab));
        let index = IndexId(id(0x01));
        let snapshot = SnapshotId(id(0x5e));
        let blob = BlobId {
            kind: BlobType::Data,
            id: id(0xd0),
        };
        let cases: Vec<(Problem, &str)> = vec![
            (
                Problem::PackMissing { pack, index },
                "pack abababab is missing (named by index file 01010101)",
            ),
            (
                Problem::PackSizeMismatch {
                    pack,
                    expected: 10,
                    found: 4,
                },
                "pack abababab is truncated: expected 10 bytes, found 4",
            ),
            (
                Problem::PackSizeMismatch {
                    pack,
                    expected: 10,
                    found: 11,
                },
                "pack abababab is too long: expected 10 bytes, found 11",
            ),
            (
                Problem::IndexSizesDisagree {
                    pack,
                    index,
                    size: 1,
                    other_index: IndexId(id(0x02)),
                    other_size: 2,
                },
                "index files 01010101 and 02020202 disagree on the size of pack abababab: 1 and 2 bytes",
            ),
            (
                Problem::ContentLost {
                    snapshot,
                    path: "/a/b".into(),
                    loss: Loss::InBadPack {
                        blob,
                        pack,
                        why: BadPack::Deleted,
                    },
                },
                "snapshot 5e5e5e5e, /a/b: data blob d0d0d0d0 is in a damaged pack: pack abababab was condemned and is deleted",
            ),
            (
                Problem::TreeLost {
                    snapshot,
                    path: "/".into(),
                    loss: Loss::NotIndexed { blob },
                },
                "snapshot 5e5e5e5e, /: data blob d0d0d0d0 is not in the index",
            ),
            (
                Problem::PacksNotRecorded {
                    packs: vec![pack, PackId(id(0xcd))],
                    message: "disk full".into(),
                },
                "cannot record damaged packs abababab, cdcdcdcd: disk full; `cairn repair index --read-data` does it",
            ),
        ];
        for (problem, line) in cases {
            assert_eq!(problem.to_string(), line, "{problem:?}");
        }
    }

    #[test]
    fn details_name_every_id_in_full() {
        let problem = Problem::ContentLost {
            snapshot: SnapshotId(id(0x5e)),
            path: "/f".into(),
            loss: Loss::Damaged {
                blob: BlobId {
                    kind: BlobType::Data,
                    id: id(0xd0),
                },
                pack: PackId(id(0xab)),
            },
        };
        let details = problem.details();
        let get = |name: &str| details.iter().find(|(n, _)| *n == name).map(|(_, d)| d);
        assert_eq!(get("snapshot"), Some(&Detail::Id("5e".repeat(32))));
        assert_eq!(get("path"), Some(&Detail::Path(Path::new("/f"))));
        assert_eq!(get("cause"), Some(&Detail::Word("blob_damaged")));
        assert_eq!(get("blob"), Some(&Detail::Id("d0".repeat(32))));
        assert_eq!(get("blob_type"), Some(&Detail::Word("data")));
        assert_eq!(get("pack"), Some(&Detail::Id("ab".repeat(32))));
        assert!(!problem.is_warning());
        assert!(Problem::PacksNotIndexed { count: 2 }.is_warning());
    }
}
