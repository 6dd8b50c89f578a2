//! Storage backends: opaque objects keyed by file type and name.
//!
//! The trait is shaped for object stores (S3, SFTP, REST) as much as for a local directory: no
//! rename, no append, no modify, and listings that may lag behind writes. The repository layer
//! above never relies on more than that.
//!
//! Invariant: `create` is create-only and atomic. After it returns, the object is durable with
//! exactly the given bytes; after a crash during it, the object is absent (a leftover temporary,
//! never listed, may remain).

#[cfg(feature = "test-hooks")]
mod fault;
mod local;
pub mod remote;
pub mod test_hooks;

#[cfg(feature = "test-hooks")]
pub use fault::CrashAfter;
pub use local::LocalBackend;

use std::fmt;
use std::time::Duration;

/// Prefix of a temporary object a create writes before its final name; such names are never
/// listed and may be removed once stale (repo-format.md, "Layout").
pub(crate) const TEMP_PREFIX: &str = ".tmp-";

/// The kinds of object in a repository, each in its own directory (repo-format.md, "Layout").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileType {
    Config,
    Key,
    Pack,
    Index,
    Snapshot,
    Lock,
}

impl FileType {
    pub fn dir(self) -> &'static str {
        match self {
            FileType::Config => "",
            FileType::Key => "keys",
            FileType::Pack => "data",
            FileType::Index => "index",
            FileType::Snapshot => "snapshots",
            FileType::Lock => "locks",
        }
    }

    /// How error messages call an object of this type.
    pub fn noun(self) -> &'static str {
        match self {
            FileType::Config => "config",
            FileType::Key => "key file",
            FileType::Pack => "pack",
            FileType::Index => "index file",
            FileType::Snapshot => "snapshot",
            FileType::Lock => "lock",
        }
    }
}

/// What went wrong in a backend call; `cairn-repo` maps each to an `ErrorKind` of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendErrorKind {
    NotFound,
    AlreadyExists,
    NoSpace,
    /// An object longer than the reader's limit for its type (`Backend::read_at_most`).
    TooLarge,
    /// A failure that may pass: a timeout, a reset connection, a server error or throttling.
    /// `Retrying` tries again; every other kind is final.
    Transient,
    /// The service refused the credentials or the operation.
    Denied,
    /// A remote location that names a known scheme but cannot be used as written.
    InvalidLocation,
    Io,
}

#[derive(Debug)]
pub struct BackendError {
    pub kind: BackendErrorKind,
    pub message: String,
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BackendError {}

pub type Result<T> = std::result::Result<T, BackendError>;

/// A stored object's name and length in bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub size: u64,
}

/// What a backend promises beyond the trait's contract: the garbage-collection protocol builds
/// on these (repo-format.md, "Storage assumptions"), so every backend states them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Guarantees {
    /// Of two clients creating the same name at once, exactly one succeeds and the other gets
    /// `AlreadyExists`: what lets a prune fence off a backup that stopped answering.
    pub exclusive_create: bool,
    /// The longest a listing may lag behind creates and removes that have returned.
    pub listing_lag: Duration,
}

/// Fails with `TooLarge` when an object of `len` bytes exceeds `max`.
pub fn check_len(t: FileType, name: &str, len: u64, max: u64) -> Result<()> {
    if len > max {
        return Err(BackendError {
            kind: BackendErrorKind::TooLarge,
            message: format!(
                "{} {name} is {len} bytes, more than the {max} such a file may have",
                t.noun()
            ),
        });
    }
    Ok(())
}

/// The `TooLarge` error of a read that was cut off after more than `max` bytes arrived: the
/// object's length is unknown, only that it is too long.
pub fn longer_than(t: FileType, name: &str, max: u64) -> BackendError {
    BackendError {
        kind: BackendErrorKind::TooLarge,
        message: format!(
            "{} {name} is longer than the {max} bytes such a file may have",
            t.noun()
        ),
    }
}

pub trait Backend: Send + Sync {
    /// Where the repository is, for messages.
    fn location(&self) -> String;
    /// Whether reads cross a network, so that what is read again (trees, snapshots) is worth
    /// keeping in the local cache.
    fn remote(&self) -> bool {
        false
    }
    fn guarantees(&self) -> Guarantees;
    /// `guarantees().listing_lag`, for the many callers that need only it: a backend that
    /// must ask the service to learn the rest (an S3 probe writes) overrides this, so that a
    /// process that only reads never asks.
    fn listing_lag(&self) -> Duration {
        self.guarantees().listing_lag
    }
    /// Every object of a type. May miss objects created moments ago on eventually consistent
    /// stores.
    fn list(&self, t: FileType) -> Result<Vec<Entry>>;
    fn read(&self, t: FileType, name: &str) -> Result<Vec<u8>>;
    /// `read` of an object that may be at most `max` bytes long; a longer one fails with
    /// `TooLarge`. A hostile store can serve any length, and state one it does not keep to, so
    /// a remote backend overrides this to check the stated length first (a stat, a HEAD
    /// request) and then read at most `max + 1` bytes whatever arrives; this default, for
    /// local files, reads first.
    fn read_at_most(&self, t: FileType, name: &str, max: u64) -> Result<Vec<u8>> {
        let bytes = self.read(t, name)?;
        check_len(t, name, bytes.len() as u64, max)?;
        Ok(bytes)
    }
    /// `len` bytes from `offset`; fails if the object is shorter.
    fn read_range(&self, t: FileType, name: &str, offset: u64, len: u64) -> Result<Vec<u8>>;
    /// Stores a new object; fails with `AlreadyExists` if the name is taken.
    fn create(&self, t: FileType, name: &str, bytes: &[u8]) -> Result<()>;
    /// `create` of the concatenation of `parts`, which a backend may write without making it:
    /// a pack is written from its blobs, never copied into one buffer first.
    fn create_parts(&self, t: FileType, name: &str, parts: &[&[u8]]) -> Result<()> {
        self.create(t, name, &parts.concat())
    }
    fn remove(&self, t: FileType, name: &str) -> Result<()>;
    /// Removes the temporary objects of creates that never finished (a killed writer's
    /// partial files) and were last written more than `age` ago; returns how many and their
    /// bytes. A backend whose creates leave nothing behind has none.
    fn remove_stale_temporaries(&self, age: Duration) -> Result<(u64, u64)> {
        let _ = age;
        Ok((0, 0))
    }
}
