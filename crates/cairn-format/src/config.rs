//! The repository's `config` file (repo-format.md, "config").
//!
//! A plaintext preamble carries the magic and format version, so that a reader can refuse an
//! unknown version with a clear message before it asks for a password; the rest is sealed.

use crate::wire::{err, Reader, Writer};
use crate::{DecodeError, Id};

pub const MAGIC: &[u8; 8] = b"CAIRNCFG";

/// Magic and version at the start of `config`, in plaintext.
pub fn encode_preamble(version: u32) -> Vec<u8> {
    let mut w = Writer::default();
    w.raw(MAGIC);
    w.u32(version);
    w.buf
}

/// Splits a `config` file into its version and its sealed body.
pub fn decode_preamble(file: &[u8]) -> Result<(u32, &[u8]), DecodeError> {
    let mut r = Reader::new(file);
    if r.take(8).ok() != Some(&MAGIC[..]) {
        return err("not a cairn config file (bad magic)");
    }
    let version = r.u32()?;
    Ok((version, &file[12..]))
}

/// The longest `config` a reader reads (repo-format.md, "Limits"); today's is 113 bytes.
pub const MAX_CONFIG_LEN: u64 = 64 << 10;

/// The sealed part of `config`: parameters fixed at `init` for the repository's lifetime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Random; names the local cache directory of this repository.
    pub repo_id: Id,
    pub chunk_min: u32,
    pub chunk_avg: u32,
    pub chunk_max: u32,
    /// Packs are closed once they reach this many bytes.
    pub pack_size: u32,
    pub zstd_level: i32,
}

impl Config {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.id(&self.repo_id);
        w.u32(self.chunk_min);
        w.u32(self.chunk_avg);
        w.u32(self.chunk_max);
        w.u32(self.pack_size);
        w.u32(self.zstd_level as u32);
        w.buf
    }

    pub fn decode(buf: &[u8]) -> Result<Config, DecodeError> {
        let mut r = Reader::new(buf);
        let c = Config {
            repo_id: r.id()?,
            chunk_min: r.u32()?,
            chunk_avg: r.u32()?,
            chunk_max: r.u32()?,
            pack_size: r.u32()?,
            zstd_level: r.u32()? as i32,
        };
        r.finish()?;
        c.validate()?;
        Ok(c)
    }

    /// The chunker needs min <= avg <= max, a power-of-two average, and max small enough that a
    /// chunk's stored length fits the u32 length fields of pack headers and indexes.
    pub fn validate(&self) -> Result<(), DecodeError> {
        let ok = self.chunk_min >= 64
            && self.chunk_avg >= 256
            && self.chunk_min <= self.chunk_avg
            && self.chunk_avg <= self.chunk_max
            && self.chunk_avg.is_power_of_two()
            && self.chunk_max <= 64 << 20
            && self.pack_size >= 1 << 16
            && self.pack_size <= 1 << 30
            && (-7..=22).contains(&self.zstd_level);
        if !ok {
            return err(format!(
                "invalid parameters: chunk sizes {}/{}/{}, pack size {}, zstd level {}",
                self.chunk_min, self.chunk_avg, self.chunk_max, self.pack_size, self.zstd_level
            ));
        }
        Ok(())
    }
}
