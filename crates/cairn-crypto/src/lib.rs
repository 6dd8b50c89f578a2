//! cairn's cryptography: the master key set and the key files that wrap it, sealing and opening
//! of objects, blob ids, the chunker's gear table, and the blob codec (compress, then seal).
//!
//! Invariant: key material never appears in `Debug` output or error messages, and nothing here
//! touches storage; callers pass bytes in and get bytes out.

mod codec;
mod keys;
pub mod random;
mod seal;

pub use codec::{decode_blob, encode_blob, BLOB_OVERHEAD};
pub use keys::{create_key_file, open_key_file, MasterKeys};
pub use seal::{open, seal, SEAL_OVERHEAD};

use cairn_format::Id;
use sha2::Digest;

/// Why a cryptographic operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// A key file did not open with the given password.
    #[error("wrong password")]
    WrongPassword,
    /// Authentication or a content check failed: the bytes were altered or belong elsewhere.
    #[error("{0}")]
    Corrupt(String),
    #[error("key derivation failed: {0}")]
    Kdf(String),
}

/// SHA-256 of a file's bytes: the name of every file in the repository but `config`.
pub fn file_id(bytes: &[u8]) -> Id {
    Id(sha2::Sha256::digest(bytes).into())
}

/// `file_id` of the concatenation of `parts`, without making it.
pub fn file_id_of_parts(parts: &[&[u8]]) -> Id {
    let mut hash = sha2::Sha256::new();
    for part in parts {
        hash.update(part);
    }
    Id(hash.finalize().into())
}
