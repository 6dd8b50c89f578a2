//! The blob codec (repo-format.md, "Blobs"): plaintext -> zstd (when it pays) -> sealed, with
//! the blob's type and id bound in as associated data.

use crate::seal::{seal_in_place, NONCE_LEN, SEAL_OVERHEAD};
use crate::{CryptoError, MasterKeys};
use cairn_format::blob::{associated_data, RAW, ZSTD};
use cairn_format::BlobId;
use std::cell::RefCell;

/// Bytes a stored blob has beyond its (possibly compressed) payload: nonce, flag and tag.
pub const BLOB_OVERHEAD: usize = SEAL_OVERHEAD + 1;

thread_local! {
    // A zstd context allocates about 1 MiB; one per thread instead of one per blob.
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(None) };
}

thread_local! {
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

/// Decompresses into at most `capacity` bytes, with this thread's context.
fn decompress(payload: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        let d = match d.as_mut() {
            Some(d) => d,
            None => d.insert(zstd::bulk::Decompressor::new()?),
        };
        d.decompress(payload, capacity)
    })
}

fn compress(level: i32, plaintext: &[u8]) -> Option<Vec<u8>> {
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.as_ref().map(|(l, _)| *l) != Some(level) {
            *c = Some((level, zstd::bulk::Compressor::new(level).ok()?));
        }
        c.as_mut()?.1.compress(plaintext).ok()
    })
}

/// Encodes a blob for storage. Compression is kept only when it saves at least 1/32 of the
/// bytes; below that the CPU a reader spends decompressing buys nothing.
pub fn encode_blob(keys: &MasterKeys, blob: &BlobId, plaintext: &[u8], level: i32) -> Vec<u8> {
    let compressed =
        compress(level, plaintext).filter(|c| c.len() + plaintext.len() / 32 < plaintext.len());
    let (flag, payload) = match &compressed {
        Some(c) => (ZSTD, c.as_slice()),
        None => (RAW, plaintext),
    };
    let mut buf = Vec::with_capacity(payload.len() + BLOB_OVERHEAD);
    buf.resize(NONCE_LEN, 0);
    buf.push(flag);
    buf.extend_from_slice(payload);
    seal_in_place(&keys.data, &associated_data(blob), &mut buf);
    buf
}

/// Opens a stored blob and checks that its plaintext hashes to its id. `raw_len` is the length
/// the index promises; it bounds decompression so a forged blob cannot expand without limit.
pub fn decode_blob(
    keys: &MasterKeys,
    blob: &BlobId,
    stored: &[u8],
    raw_len: u32,
) -> Result<Vec<u8>, CryptoError> {
    let opened = crate::seal::open(
        &keys.data,
        &associated_data(blob),
        stored,
        &blob.to_string(),
    )?;
    let (flag, payload) = opened
        .split_first()
        .ok_or_else(|| CryptoError::Corrupt(format!("{blob} is empty")))?;
    let plaintext = match *flag {
        RAW => payload.to_vec(),
        ZSTD => decompress(payload, raw_len as usize)
            .map_err(|e| CryptoError::Corrupt(format!("{blob} does not decompress: {e}")))?,
        f => {
            return Err(CryptoError::Corrupt(format!(
                "{blob} has unknown encoding {f}"
            )))
        }
    };
    if plaintext.len() != raw_len as usize || keys.blob_id(&plaintext) != blob.id {
        return Err(CryptoError::Corrupt(format!(
            "{blob} does not match its id"
        )));
    }
    Ok(plaintext)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_format::{BlobType, Id};
    use proptest::prelude::*;

    fn blob_of(keys: &MasterKeys, kind: BlobType, data: &[u8]) -> BlobId {
        BlobId {
            kind,
            id: keys.blob_id(data),
        }
    }

    proptest! {
        #[test]
        fn round_trip(data in proptest::collection::vec(any::<u8>(), 0..5000), rep in 1usize..50) {
            let keys = MasterKeys::random();
            let data = data.repeat(rep);
            let blob = blob_of(&keys, BlobType::Data, &data);
            let stored = encode_blob(&keys, &blob, &data, 3);
            prop_assert!(stored.len() <= data.len() + BLOB_OVERHEAD);
            prop_assert_eq!(decode_blob(&keys, &blob, &stored, data.len() as u32).unwrap(), data);
        }

        #[test]
        fn any_flipped_bit_is_rejected(data in proptest::collection::vec(any::<u8>(), 1..2000), pos in any::<usize>(), bit in 0u8..8) {
            let keys = MasterKeys::random();
            let blob = blob_of(&keys, BlobType::Data, &data);
            let mut stored = encode_blob(&keys, &blob, &data, 3);
            let pos = pos % stored.len();
            stored[pos] ^= 1 << bit;
            prop_assert!(decode_blob(&keys, &blob, &stored, data.len() as u32).is_err());
        }
    }

    #[test]
    fn a_blob_cannot_pose_as_another_or_as_another_type() {
        let keys = MasterKeys::random();
        let a = blob_of(&keys, BlobType::Data, b"alpha");
        let stored = encode_blob(&keys, &a, b"alpha", 3);
        let as_tree = BlobId {
            kind: BlobType::Tree,
            id: a.id,
        };
        assert!(decode_blob(&keys, &as_tree, &stored, 5).is_err());
        let other = BlobId {
            kind: BlobType::Data,
            id: Id([7; 32]),
        };
        assert!(decode_blob(&keys, &other, &stored, 5).is_err());
    }

    #[test]
    fn compressible_data_shrinks_and_random_data_is_stored_raw() {
        let keys = MasterKeys::random();
        let text = b"the same line again\n".repeat(1000);
        let blob = blob_of(&keys, BlobType::Data, &text);
        assert!(encode_blob(&keys, &blob, &text, 3).len() < text.len() / 10);
        let noise: Vec<u8> = (0..10000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let blob = blob_of(&keys, BlobType::Data, &noise);
        let stored = encode_blob(&keys, &blob, &noise, 3);
        assert!(stored.len() <= noise.len() + BLOB_OVERHEAD);
    }
}
