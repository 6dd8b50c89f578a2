//! Typed 32-byte identifiers, so that one kind of id cannot be passed where another is meant.

use std::fmt;

/// A raw 32-byte identifier: SHA-256 of a file's bytes, or keyed BLAKE3 of a blob's plaintext.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Id(pub [u8; 32]);

impl Id {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The 8-hex-digit form shown to users.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }

    pub fn from_hex(s: &str) -> Option<Id> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Id(out))
    }

    /// The id a listed file's name gives, if the name is one cairn writes: exactly 64
    /// lowercase hex digits. Any other name (uppercase hex included, which `from_hex` takes)
    /// would be read back under a name that is not the listed one.
    pub fn from_name(s: &str) -> Option<Id> {
        Id::from_hex(s).filter(|id| id.to_hex() == s)
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.short())
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

macro_rules! typed_id {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub Id);

        impl $name {
            pub fn to_hex(&self) -> String { self.0.to_hex() }
            pub fn short(&self) -> String { self.0.short() }
            pub fn from_hex(s: &str) -> Option<Self> { Id::from_hex(s).map(Self) }
            pub fn from_name(s: &str) -> Option<Self> { Id::from_name(s).map(Self) }
            pub fn as_bytes(&self) -> &[u8; 32] { &self.0 .0 }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.short())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0.to_hex())
            }
        }
    )*};
}

typed_id!(
    /// SHA-256 of a pack file's bytes; also its name under `data/`.
    PackId,
    /// SHA-256 of an index file's bytes; also its name under `index/`.
    IndexId,
    /// SHA-256 of a snapshot file's bytes; also its name under `snapshots/`.
    SnapshotId,
    /// SHA-256 of a key file's bytes; also its name under `keys/`.
    KeyId,
    /// Keyed BLAKE3 of a data blob's plaintext (a file chunk).
    DataId,
    /// Keyed BLAKE3 of a tree blob's plaintext (an encoded directory).
    TreeId,
);

/// The two kinds of blob. The type is bound into each blob's authentication (repo-format.md,
/// "Blobs"), so a tree can never be served where data is expected or the other way round.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum BlobType {
    Data = 0,
    Tree = 1,
}

impl BlobType {
    pub fn from_u8(v: u8) -> Option<BlobType> {
        match v {
            0 => Some(BlobType::Data),
            1 => Some(BlobType::Tree),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            BlobType::Data => "data",
            BlobType::Tree => "tree",
        }
    }
}

/// A blob id together with its type: the key of the index.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct BlobId {
    pub kind: BlobType,
    pub id: Id,
}

impl BlobId {
    /// The type byte, then the id: the key under which caches and scratch files keep a blob.
    pub fn to_bytes(&self) -> [u8; 33] {
        let mut k = [0u8; 33];
        k[0] = self.kind as u8;
        k[1..].copy_from_slice(&self.id.0);
        k
    }

    /// The inverse of `to_bytes`; `None` for an unknown type byte.
    pub fn from_bytes(k: &[u8; 33]) -> Option<BlobId> {
        Some(BlobId {
            kind: BlobType::from_u8(k[0])?,
            id: Id(k[1..].try_into().unwrap()),
        })
    }
}

impl From<DataId> for BlobId {
    fn from(d: DataId) -> BlobId {
        BlobId {
            kind: BlobType::Data,
            id: d.0,
        }
    }
}

impl From<TreeId> for BlobId {
    fn from(t: TreeId) -> BlobId {
        BlobId {
            kind: BlobType::Tree,
            id: t.0,
        }
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} blob {}", self.kind.name(), self.id.short())
    }
}
