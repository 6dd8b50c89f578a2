//! Authenticated encryption of one object (repo-format.md, "Sealed objects"): a random 192-bit
//! nonce, then XChaCha20-Poly1305 ciphertext and its 16-byte tag.

use crate::CryptoError;
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};

pub const NONCE_LEN: usize = 24;
pub const TAG_LEN: usize = 16;
/// Bytes a sealed object has beyond its plaintext.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// Seals `plaintext`, which starts at `start` in `buf`, in place: `buf[..start]` must hold
/// `NONCE_LEN` bytes of room. Saves a copy on the backup path.
pub(crate) fn seal_in_place(key: &[u8; 32], ad: &[u8], buf: &mut Vec<u8>) {
    let nonce: [u8; NONCE_LEN] = crate::random::bytes();
    buf[..NONCE_LEN].copy_from_slice(&nonce);
    let cipher = XChaCha20Poly1305::new(key.into());
    let tag = cipher
        .encrypt_in_place_detached(XNonce::from_slice(&nonce), ad, &mut buf[NONCE_LEN..])
        .expect("plaintext is below the AEAD's 256 GiB limit");
    buf.extend_from_slice(&tag);
}

/// Seals `plaintext` under `key`, binding `ad` (the object's context) into the tag.
pub fn seal(key: &[u8; 32], ad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD);
    buf.resize(NONCE_LEN, 0);
    buf.extend_from_slice(plaintext);
    seal_in_place(key, ad, &mut buf);
    buf
}

/// Opens a sealed object; `what` names it in the error.
pub fn open(key: &[u8; 32], ad: &[u8], sealed: &[u8], what: &str) -> Result<Vec<u8>, CryptoError> {
    if sealed.len() < SEAL_OVERHEAD {
        return Err(CryptoError::Corrupt(format!(
            "{what} is too short to be sealed: {} bytes",
            sealed.len()
        )));
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let (body, tag) = rest.split_at(rest.len() - TAG_LEN);
    let mut out = body.to_vec();
    XChaCha20Poly1305::new(key.into())
        .decrypt_in_place_detached(
            XNonce::from_slice(nonce),
            ad,
            &mut out,
            Tag::from_slice(tag),
        )
        .map_err(|_| CryptoError::Corrupt(format!("{what} failed authentication")))?;
    Ok(out)
}
