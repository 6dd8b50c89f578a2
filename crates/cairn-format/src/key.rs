//! Key files under `keys/` (repo-format.md, "Key files").
//!
//! A key file wraps the repository's master key set under a key derived from a password. Its
//! plaintext header is authenticated as associated data of the sealed key set, so its KDF
//! parameters cannot be changed without the password.

use crate::wire::{err, Reader, Writer};
use crate::DecodeError;

pub const MAGIC: &[u8; 8] = b"CAIRNKEY";
pub const KEY_FILE_VERSION: u32 = 1;
pub const KDF_ARGON2ID: u8 = 1;

/// The longest key file a reader reads (repo-format.md, "Limits"). A real one is about 250
/// bytes plus its host and user names.
pub const MAX_KEY_FILE_LEN: u64 = 64 << 10;

/// Argon2id parameters as stored in a key file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl KdfParams {
    /// Bounds a reader accepts, so a forged key file cannot make us allocate 4 TiB.
    pub fn validate(&self) -> Result<(), DecodeError> {
        if !(8..=4 << 20).contains(&self.memory_kib)
            || !(1..=64).contains(&self.iterations)
            || !(1..=16).contains(&self.parallelism)
            || self.memory_kib < 8 * self.parallelism
        {
            return err(format!(
                "unreasonable argon2id parameters: {} KiB, {} iterations, {} lanes",
                self.memory_kib, self.iterations, self.parallelism
            ));
        }
        Ok(())
    }

    /// What deriving a key costs, in MiB of memory times passes (rounded up): the measure a
    /// reader's local limit is stated in.
    pub fn cost_mib(&self) -> u64 {
        u64::from(self.memory_kib).div_ceil(1024) * u64::from(self.iterations)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyHeader {
    pub kdf: KdfParams,
    pub salt: [u8; 32],
    /// Creation time, nanoseconds since the Unix epoch.
    pub created: i64,
    pub host: Vec<u8>,
    pub user: Vec<u8>,
}

impl KeyHeader {
    /// The plaintext header; these bytes are also the associated data of the sealed key set.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.raw(MAGIC);
        w.u32(KEY_FILE_VERSION);
        w.u8(KDF_ARGON2ID);
        w.u32(self.kdf.memory_kib);
        w.u32(self.kdf.iterations);
        w.u32(self.kdf.parallelism);
        w.raw(&self.salt);
        w.i64(self.created);
        w.bytes(&self.host);
        w.bytes(&self.user);
        w.buf
    }

    /// Splits a key file into its header, the header's bytes, and the sealed key set.
    pub fn decode(file: &[u8]) -> Result<(KeyHeader, &[u8], &[u8]), DecodeError> {
        let mut r = Reader::new(file);
        if r.take(8)? != MAGIC {
            return err("not a cairn key file (bad magic)");
        }
        let version = r.u32()?;
        if version != KEY_FILE_VERSION {
            return err(format!("unsupported key file version {version}"));
        }
        if r.u8()? != KDF_ARGON2ID {
            return err("unknown key derivation function");
        }
        let kdf = KdfParams {
            memory_kib: r.u32()?,
            iterations: r.u32()?,
            parallelism: r.u32()?,
        };
        kdf.validate()?;
        let mut salt = [0u8; 32];
        salt.copy_from_slice(r.take(32)?);
        let created = r.i64()?;
        let host = r.bytes()?.to_vec();
        let user = r.bytes()?.to_vec();
        let header_len = file.len() - r.remaining();
        let header = KeyHeader {
            kdf,
            salt,
            created,
            host,
            user,
        };
        Ok((header, &file[..header_len], &file[header_len..]))
    }
}

/// Which key a record of the master key set holds (repo-format.md, "Master key set").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyRole {
    /// Seals and opens data and tree blobs and snapshots.
    Data = 1,
    /// Seals and opens config, pack headers and index files.
    Meta = 2,
    /// Keys the BLAKE3 that names blobs.
    BlobId = 3,
    /// Derives the chunker's gear table.
    Chunker = 4,
}

/// The decrypted content of a key file: tagged 32-byte keys. Unknown tags are kept, so that a key
/// set written by a later version (say, with a write-only public key) round-trips unchanged.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct KeySetRecords {
    pub records: Vec<(u8, [u8; 32])>,
}

impl std::fmt::Debug for KeySetRecords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material, even in debug output.
        write!(f, "KeySetRecords({} keys)", self.records.len())
    }
}

impl KeySetRecords {
    pub fn get(&self, role: KeyRole) -> Option<&[u8; 32]> {
        self.records
            .iter()
            .find(|(t, _)| *t == role as u8)
            .map(|(_, k)| k)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(self.records.len() as u8);
        for (tag, key) in &self.records {
            w.u8(*tag);
            w.raw(key);
        }
        w.buf
    }

    pub fn decode(buf: &[u8]) -> Result<KeySetRecords, DecodeError> {
        let mut r = Reader::new(buf);
        let n = r.u8()?;
        let mut records = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let tag = r.u8()?;
            let mut key = [0u8; 32];
            key.copy_from_slice(r.take(32)?);
            records.push((tag, key));
        }
        r.finish()?;
        Ok(KeySetRecords { records })
    }
}
