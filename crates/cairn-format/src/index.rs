//! Index files under `index/` (repo-format.md, "Index files"): which blobs each pack holds.

use crate::wire::{err, Reader, Writer};
use crate::{BlobId, BlobType, DecodeError, IndexId, PackId};

/// The longest index file a reader reads (repo-format.md, "Limits"): a pack of
/// `MAX_PACK_ENTRIES` blobs and 65,536 more (what one file of a backup, prune or repair holds at
/// most) take under 50 MiB; the rest leaves room for condemnations.
pub const MAX_INDEX_LEN: u64 = 256 << 20;

/// Bytes of one blob entry: type, id, offset, stored length, raw length.
pub const ENTRY_LEN: usize = 1 + 32 + 4 + 4 + 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    pub blob: BlobId,
    pub offset: u32,
    pub stored_len: u32,
    pub raw_len: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexPack {
    pub id: PackId,
    /// The pack file's length in bytes, so `check` can spot a truncated pack without reading it.
    pub size: u64,
    pub blobs: Vec<IndexEntry>,
}

impl IndexPack {
    /// The index record of a pack, from its own header: what rebuilding a lost index needs.
    pub fn from_header(id: PackId, size: u64, header: &crate::pack::PackHeader) -> IndexPack {
        let (offsets, _) = header.offsets();
        IndexPack {
            id,
            size,
            blobs: header
                .entries
                .iter()
                .zip(offsets)
                .map(|(e, offset)| IndexEntry {
                    blob: e.blob,
                    offset,
                    stored_len: e.stored_len,
                    raw_len: e.raw_len,
                })
                .collect(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct IndexFile {
    /// Index files whose content this one replaces; they may be deleted once this one is stored.
    pub supersedes: Vec<IndexId>,
    pub packs: Vec<IndexPack>,
    /// Packs this file condemns (repo-format.md, "Garbage collection"): they no longer count as
    /// part of the index, whatever other files say, and a later prune deletes them.
    pub condemned: Vec<PackId>,
}

impl IndexFile {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.count(self.supersedes.len());
        for id in &self.supersedes {
            w.id(&id.0);
        }
        w.count(self.packs.len());
        for p in &self.packs {
            w.id(&p.id.0);
            w.u64(p.size);
            w.count(p.blobs.len());
            for b in &p.blobs {
                w.u8(b.blob.kind as u8);
                w.id(&b.blob.id);
                w.u32(b.offset);
                w.u32(b.stored_len);
                w.u32(b.raw_len);
            }
        }
        w.count(self.condemned.len());
        for p in &self.condemned {
            w.id(&p.0);
        }
        w.buf
    }

    pub fn decode(buf: &[u8]) -> Result<IndexFile, DecodeError> {
        let mut r = Reader::new(buf);
        let n = r.count(32)?;
        let mut supersedes = Vec::with_capacity(n);
        for _ in 0..n {
            supersedes.push(IndexId(r.id()?));
        }
        let n = r.count(32 + 8 + 4)?;
        let mut packs = Vec::with_capacity(n);
        for _ in 0..n {
            let id = PackId(r.id()?);
            let size = r.u64()?;
            let m = r.count(ENTRY_LEN)?;
            if m > crate::pack::MAX_PACK_ENTRIES {
                return err(format!(
                    "pack {} has {m} entries, more than a pack may hold",
                    id.short()
                ));
            }
            let mut blobs = Vec::with_capacity(m);
            for _ in 0..m {
                let kind = r.u8()?;
                let Some(kind) = BlobType::from_u8(kind) else {
                    return err(format!("unknown blob type {kind} in pack {}", id.short()));
                };
                let blob = BlobId { kind, id: r.id()? };
                let e = IndexEntry {
                    blob,
                    offset: r.u32()?,
                    stored_len: r.u32()?,
                    raw_len: r.u32()?,
                };
                if u64::from(e.offset) + u64::from(e.stored_len) > size {
                    return err(format!("{blob} lies beyond the end of pack {}", id.short()));
                }
                blobs.push(e);
            }
            packs.push(IndexPack { id, size, blobs });
        }
        let n = r.count(32)?;
        let mut condemned = Vec::with_capacity(n);
        for _ in 0..n {
            condemned.push(PackId(r.id()?));
        }
        r.finish()?;
        Ok(IndexFile {
            supersedes,
            packs,
            condemned,
        })
    }
}
