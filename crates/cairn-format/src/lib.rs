//! cairn's on-disk types and their byte encodings.
//!
//! This crate is the only place that defines bytes that reach storage. It does no I/O and no
//! cryptography: callers seal and open what it encodes. Every structure here is specified in
//! `repo-format.md` at the workspace root; each encoder names the section it implements.
//!
//! Invariant: decoding never panics and never allocates more than a small multiple of the input
//! length, whatever the input bytes are.

mod id;
mod wire;

pub mod ad;
pub mod blob;
pub mod config;
pub mod index;
pub mod key;
pub mod marker;
pub mod pack;
pub mod snapshot;
pub mod tree;

pub use id::{BlobId, BlobType, DataId, Id, IndexId, KeyId, PackId, SnapshotId, TreeId};
pub use wire::DecodeError;

/// The repository format version this code reads and writes (repo-format.md, "Version history").
pub const FORMAT_VERSION: u32 = 1;

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod tests;
