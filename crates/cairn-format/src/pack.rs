//! Pack files under `data/` (repo-format.md, "Pack files").
//!
//! A pack is its blobs back to back, then the sealed header, then the header's sealed length as a
//! u32. Offsets are implied by the order of the header's entries, so the header is all a reader
//! needs to find every blob, and a lost index can be rebuilt from packs alone.

use crate::wire::{err, Reader, Writer};
use crate::{BlobId, BlobType, DecodeError};

/// Encryption scheme of the blobs in a pack: 0 = sealed with the master data key. Values 1 and up
/// are reserved for per-pack keys wrapped to a repository public key (write-only clients).
pub const SCHEME_DATA_KEY: u8 = 0;

/// Bytes of one header entry: type, id, stored length, raw length.
pub const ENTRY_LEN: usize = 1 + 32 + 4 + 4;

/// The most blobs one pack may hold (repo-format.md, "Limits"); the packer closes a pack at
/// this count. A million blobs of the smallest size, 41 bytes sealed, fill 41 MiB.
pub const MAX_PACK_ENTRIES: usize = 1 << 20;

/// The longest sealed header a reader reads: `MAX_PACK_ENTRIES` entries, the scheme and count,
/// and room for the seal's nonce and tag (40 bytes).
pub const MAX_SEALED_HEADER_LEN: u64 = (1 + 4 + MAX_PACK_ENTRIES * ENTRY_LEN + 64) as u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackEntry {
    pub blob: BlobId,
    /// Bytes the sealed blob occupies in the pack.
    pub stored_len: u32,
    /// Bytes of the blob's plaintext.
    pub raw_len: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PackHeader {
    pub scheme: u8,
    pub entries: Vec<PackEntry>,
}

impl PackHeader {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(self.scheme);
        w.count(self.entries.len());
        for e in &self.entries {
            w.u8(e.blob.kind as u8);
            w.id(&e.blob.id);
            w.u32(e.stored_len);
            w.u32(e.raw_len);
        }
        w.buf
    }

    pub fn decode(buf: &[u8]) -> Result<PackHeader, DecodeError> {
        let mut r = Reader::new(buf);
        let scheme = r.u8()?;
        if scheme != SCHEME_DATA_KEY {
            return err(format!("unknown pack encryption scheme {scheme}"));
        }
        let n = r.count(ENTRY_LEN)?;
        if n > MAX_PACK_ENTRIES {
            return err(format!(
                "{n} entries, more than the {MAX_PACK_ENTRIES} a pack may hold"
            ));
        }
        let mut entries = Vec::with_capacity(n);
        let mut blob_bytes: u64 = 0;
        for _ in 0..n {
            let kind = r.u8()?;
            let Some(kind) = BlobType::from_u8(kind) else {
                return err(format!("unknown blob type {kind}"));
            };
            let entry = PackEntry {
                blob: BlobId { kind, id: r.id()? },
                stored_len: r.u32()?,
                raw_len: r.u32()?,
            };
            // Offsets in index files are u32s: no pack's blobs reach past 4 GiB.
            blob_bytes += u64::from(entry.stored_len);
            if blob_bytes > u64::from(u32::MAX) {
                return err("its blobs span more than 4 GiB");
            }
            entries.push(entry);
        }
        r.finish()?;
        Ok(PackHeader { scheme, entries })
    }

    /// The offset of each entry, and the total length of the blob area. Offsets past 4 GiB,
    /// which no decoded header and no pack the packer makes has, are `u32::MAX`: never a real
    /// offset, since a blob there would end past 4 GiB.
    pub fn offsets(&self) -> (Vec<u32>, u64) {
        let mut offsets = Vec::with_capacity(self.entries.len());
        let mut pos: u64 = 0;
        for e in &self.entries {
            offsets.push(u32::try_from(pos).unwrap_or(u32::MAX));
            pos += u64::from(e.stored_len);
        }
        (offsets, pos)
    }
}

/// Bytes of a pack's trailer: the length of the sealed header before it, a `u32`.
pub const TRAILER_LEN: u64 = 4;

/// Bytes a pack of `n_blobs` blobs holds besides its blobs: the sealed header, 45 + 41n bytes
/// (5 + 41n of plaintext, and the seal's nonce and tag, 40 bytes: repo-format.md, "Sealed
/// objects"), then the trailer.
pub fn header_and_trailer_len(n_blobs: usize) -> u64 {
    const SEAL_OVERHEAD: u64 = 24 + 16;
    (1 + 4) + ENTRY_LEN as u64 * n_blobs as u64 + SEAL_OVERHEAD + TRAILER_LEN
}

/// The trailing u32 of a pack, after a sealed header of `sealed_header_len` bytes.
pub fn encode_trailer(sealed_header_len: u32) -> [u8; 4] {
    sealed_header_len.to_le_bytes()
}

/// Reads the trailing u32 of a pack: the length of the sealed header before it.
pub fn trailer_header_len(pack_len: u64, trailer: [u8; 4]) -> Result<u64, DecodeError> {
    let header_len = u64::from(u32::from_le_bytes(trailer));
    if header_len > MAX_SEALED_HEADER_LEN {
        return err(format!(
            "header length {header_len} exceeds the {MAX_SEALED_HEADER_LEN} bytes a header of {MAX_PACK_ENTRIES} blobs takes"
        ));
    }
    if header_len + TRAILER_LEN > pack_len {
        return err(format!(
            "header length {header_len} exceeds the pack's {pack_len} bytes"
        ));
    }
    Ok(header_len)
}
