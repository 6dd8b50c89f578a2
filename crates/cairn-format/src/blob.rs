//! A stored blob's framing (repo-format.md section 10, "Codec"): the flag byte that starts its
//! sealed plaintext and the associated data that binds it to its type and id. Compression and
//! sealing are cairn-crypto's; the bytes they frame are defined here.

use crate::BlobId;

/// The flag of a payload stored as the plaintext itself.
pub const RAW: u8 = 0;

/// The flag of a payload that is one zstd frame of the plaintext.
pub const ZSTD: u8 = 1;

/// A blob's associated data: its type byte, then its id (33 bytes), so that a blob cannot be
/// served as another blob, or a tree as data.
pub fn associated_data(blob: &BlobId) -> [u8; 33] {
    blob.to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BlobType, Id};

    #[test]
    fn associated_data_is_the_type_then_the_id() {
        let blob = BlobId {
            kind: BlobType::Tree,
            id: Id([7; 32]),
        };
        let ad = associated_data(&blob);
        assert_eq!(ad[0], 1);
        assert_eq!(&ad[1..], &[7; 32]);
    }
}
