//! Associated data of sealed objects (repo-format.md, "Sealed objects"): the bytes that bind
//! each sealed object to its kind. They are authenticated but never stored, so a change here
//! makes every existing repository unreadable.
//!
//! A blob's associated data is its type and id (repo-format.md, "Blobs"; `blob.rs`);
//! everything else sealed uses one of these ASCII strings, with no
//! terminator and no length prefix.

/// The `config` body (repo-format.md, "Config"), sealed under the meta key.
pub const CONFIG: &[u8] = b"cairn config";

/// A pack's header (repo-format.md, "Pack files"), sealed under the meta key.
pub const PACK_HEADER: &[u8] = b"cairn pack header";

/// An index file (repo-format.md, "Index files"), sealed under the meta key.
pub const INDEX: &[u8] = b"cairn index";

/// A snapshot (repo-format.md, "Snapshots"), sealed under the data key.
pub const SNAPSHOT: &[u8] = b"cairn snapshot";

/// The prefix of a key file's associated data: the key file's header bytes follow
/// (repo-format.md, "Key files"). The key set is sealed under the key derived from the password.
pub const KEY_FILE: &[u8] = b"cairn key file";
