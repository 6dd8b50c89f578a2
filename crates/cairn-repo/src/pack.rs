//! Packing blobs into pack files (repo-format.md, "Pack files").
//!
//! Blobs of one type are gathered in an open pack until it reaches the target size. At that
//! point its blobs are written in random order, so that the order in storage says nothing about
//! which blobs came from the same file (the chunk-size fingerprinting attacks need exactly that).

use cairn_crypto::file_id_of_parts;
use cairn_format::index::{IndexEntry, IndexPack};
use cairn_format::pack::{self, PackEntry, PackHeader, MAX_PACK_ENTRIES, SCHEME_DATA_KEY};
use cairn_format::{BlobId, BlobType, PackId};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::sync::Mutex;

#[derive(Default)]
struct OpenPack {
    blobs: Vec<(PackEntry, Vec<u8>)>,
    size: usize,
}

/// A pack ready to be written.
pub struct FullPack(OpenPack);

pub struct Packers {
    target: usize,
    data: Mutex<OpenPack>,
    tree: Mutex<OpenPack>,
}

impl Packers {
    pub fn new(target: usize) -> Packers {
        Packers {
            target,
            data: Mutex::default(),
            tree: Mutex::default(),
        }
    }

    fn slot(&self, kind: BlobType) -> &Mutex<OpenPack> {
        match kind {
            BlobType::Data => &self.data,
            BlobType::Tree => &self.tree,
        }
    }

    /// Adds a sealed blob; returns the pack when it is full, leaving a fresh one open.
    pub fn add(
        &self,
        kind: BlobType,
        blob: BlobId,
        raw_len: u32,
        stored: Vec<u8>,
    ) -> Option<FullPack> {
        let mut open = self.slot(kind).lock().unwrap();
        open.size += stored.len();
        let entry = PackEntry {
            blob,
            // `Repository::store` bounds a blob's plaintext by its type's limit, far below
            // 4 GiB, and sealing adds `BLOB_OVERHEAD` at most.
            stored_len: u32::try_from(stored.len())
                .expect("blobs are bounded by their type's limit"),
            raw_len,
        };
        open.blobs.push((entry, stored));
        // Readers refuse a header of more entries (repo-format.md, "Limits").
        let full = open.size >= self.target || open.blobs.len() >= MAX_PACK_ENTRIES;
        full.then(|| FullPack(std::mem::take(&mut *open)))
    }

    pub fn take_all(&self) -> Vec<FullPack> {
        [BlobType::Data, BlobType::Tree]
            .into_iter()
            .map(|k| std::mem::take(&mut *self.slot(k).lock().unwrap()))
            .filter(|p| !p.blobs.is_empty())
            .map(FullPack)
            .collect()
    }
}

impl FullPack {
    /// The pack file's parts and its index entry: blobs in random order, then the sealed header
    /// and its length. The parts are written one after another, never copied into one buffer,
    /// which would double a pack's memory. The SHA-256 that names the pack is computed here, on
    /// the thread that filled it, so several packs are hashed in parallel.
    pub fn assemble(self, meta_key: &[u8; 32]) -> (Vec<Vec<u8>>, IndexPack) {
        let mut blobs = self.0.blobs;
        blobs.shuffle(&mut rand::rngs::StdRng::seed_from_u64(
            cairn_crypto::random::u64(),
        ));
        let header = PackHeader {
            scheme: SCHEME_DATA_KEY,
            entries: blobs.iter().map(|(e, _)| *e).collect(),
        };
        let mut trailer =
            cairn_crypto::seal(meta_key, cairn_format::ad::PACK_HEADER, &header.encode());
        // At most MAX_PACK_ENTRIES entries of 41 bytes, sealed: far below 4 GiB.
        let header_len = u32::try_from(trailer.len()).expect("a header is at most 41 MiB");
        trailer.extend_from_slice(&pack::encode_trailer(header_len));
        let mut offset = 0u32;
        let mut entries = Vec::with_capacity(blobs.len());
        let mut parts = Vec::with_capacity(blobs.len() + 1);
        for (e, stored) in blobs {
            entries.push(IndexEntry {
                blob: e.blob,
                offset,
                stored_len: e.stored_len,
                raw_len: e.raw_len,
            });
            offset += e.stored_len;
            parts.push(stored);
        }
        parts.push(trailer);
        let slices: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        let id = PackId(file_id_of_parts(&slices));
        let size = slices.iter().map(|p| p.len() as u64).sum();
        (
            parts,
            IndexPack {
                id,
                size,
                blobs: entries,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pack_is_its_blobs_then_the_header_and_trailer_the_format_says() {
        let packers = Packers::new(1 << 20);
        for (i, len) in [10usize, 300, 7].into_iter().enumerate() {
            let blob = BlobId {
                kind: BlobType::Data,
                id: cairn_format::Id([i as u8; 32]),
            };
            assert!(packers.add(BlobType::Data, blob, 1, vec![0; len]).is_none());
        }
        let [full] = packers.take_all().try_into().ok().unwrap();
        let (parts, index) = full.assemble(&[7; 32]);
        let trailer = parts.last().unwrap();
        assert_eq!(
            index.size,
            317 + cairn_format::pack::header_and_trailer_len(3)
        );
        assert_eq!(
            trailer.len() as u64,
            cairn_format::pack::header_and_trailer_len(3)
        );
        let sealed_len = trailer.len() as u64 - pack::TRAILER_LEN;
        assert_eq!(
            pack::trailer_header_len(index.size, trailer[trailer.len() - 4..].try_into().unwrap()),
            Ok(sealed_len)
        );
    }
}
