//! The master key set and key files (repo-format.md, "Key files" and "Master key set").

use crate::{seal, CryptoError};
use cairn_format::key::KdfParams;
use cairn_format::key::{KeyHeader, KeyRole, KeySetRecords};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// The repository's secret keys. Created once at `init`; every key file wraps the same set.
///
/// Not `Clone`: one copy per open repository, shared by reference, and cleared when dropped.
///
/// ```
/// let keys = cairn_crypto::MasterKeys::random();
/// let shared = std::sync::Arc::new(keys); // share by reference, never by copy
/// # drop(shared);
/// ```
///
/// ```compile_fail
/// fn needs_clone<T: Clone>() {}
/// needs_clone::<cairn_crypto::MasterKeys>();
/// ```
pub struct MasterKeys {
    pub data: [u8; 32],
    pub meta: [u8; 32],
    pub blob_id: [u8; 32],
    pub chunker: [u8; 32],
    /// Records of roles this version does not know, kept so a rewrap preserves them.
    extra: Vec<(u8, [u8; 32])>,
}

impl std::fmt::Debug for MasterKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKeys(..)")
    }
}

impl Zeroize for MasterKeys {
    fn zeroize(&mut self) {
        self.data.zeroize();
        self.meta.zeroize();
        self.blob_id.zeroize();
        self.chunker.zeroize();
        for (_, key) in &mut self.extra {
            key.zeroize();
        }
    }
}

impl Drop for MasterKeys {
    fn drop(&mut self) {
        self.zeroize();
    }
}

impl ZeroizeOnDrop for MasterKeys {}

/// A compile-time check that `MasterKeys` is not `Clone` (static_assertions'
/// `assert_not_impl_any!`): were it, `some_item` would be ambiguous between the two impls.
const _: fn() = || {
    trait AmbiguousIfClone<A> {
        fn some_item() {}
    }
    impl<T: ?Sized> AmbiguousIfClone<()> for T {}
    impl<T: Clone> AmbiguousIfClone<u8> for T {}
    let _ = <MasterKeys as AmbiguousIfClone<_>>::some_item;
};

impl MasterKeys {
    pub fn random() -> MasterKeys {
        let k = crate::random::bytes::<32>;
        MasterKeys {
            data: k(),
            meta: k(),
            blob_id: k(),
            chunker: k(),
            extra: Vec::new(),
        }
    }

    /// Keyed BLAKE3 of a blob's plaintext: its id. Without the key, ids say nothing of content.
    pub fn blob_id(&self, plaintext: &[u8]) -> cairn_format::Id {
        cairn_format::Id(*blake3::keyed_hash(&self.blob_id, plaintext).as_bytes())
    }

    /// The chunker's 256 gear entries: the first 2048 bytes of BLAKE3's output in derive-key mode
    /// under the chunker key, read as little-endian u64s (repo-format.md, "Chunking").
    pub fn gear_table(&self) -> [u64; 256] {
        let mut hasher = blake3::Hasher::new_derive_key("cairn 2026 chunker gear table");
        hasher.update(&self.chunker);
        let mut bytes = [0u8; 2048];
        hasher.finalize_xof().fill(&mut bytes);
        std::array::from_fn(|i| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap()))
    }

    /// Whether `other` holds the same keys, unknown roles included: what a new key file must
    /// wrap. Each key is compared without an early exit, so the time taken says nothing of
    /// where two keys differ.
    pub fn same_as(&self, other: &MasterKeys) -> bool {
        let eq =
            |a: &[u8; 32], b: &[u8; 32]| a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0;
        let known = eq(&self.data, &other.data)
            & eq(&self.meta, &other.meta)
            & eq(&self.blob_id, &other.blob_id)
            & eq(&self.chunker, &other.chunker);
        let extra = self.extra.len() == other.extra.len()
            && self
                .extra
                .iter()
                .zip(&other.extra)
                .all(|((ta, ka), (tb, kb))| ta == tb && eq(ka, kb));
        known && extra
    }

    fn to_records(&self) -> KeySetRecords {
        let mut records = vec![
            (KeyRole::Data as u8, self.data),
            (KeyRole::Meta as u8, self.meta),
            (KeyRole::BlobId as u8, self.blob_id),
            (KeyRole::Chunker as u8, self.chunker),
        ];
        records.extend(self.extra.iter().copied());
        KeySetRecords { records }
    }

    fn from_records(r: &KeySetRecords) -> Result<MasterKeys, CryptoError> {
        let need = |role: KeyRole| {
            r.get(role)
                .copied()
                .ok_or_else(|| CryptoError::Corrupt(format!("key set lacks the {role:?} key")))
        };
        let known = [
            KeyRole::Data,
            KeyRole::Meta,
            KeyRole::BlobId,
            KeyRole::Chunker,
        ];
        Ok(MasterKeys {
            data: need(KeyRole::Data)?,
            meta: need(KeyRole::Meta)?,
            blob_id: need(KeyRole::BlobId)?,
            chunker: need(KeyRole::Chunker)?,
            extra: r
                .records
                .iter()
                .filter(|(t, _)| !known.iter().any(|k| *k as u8 == *t))
                .copied()
                .collect(),
        })
    }
}

/// The wrapping key, cleared when dropped.
fn derive(password: &[u8], header: &KeyHeader) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    let p = header.kdf;
    let params = argon2::Params::new(p.memory_kib, p.iterations, p.parallelism, Some(32))
        .map_err(|e| CryptoError::Kdf(e.to_string()))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(password, &header.salt, out.as_mut())
        .map_err(|e| CryptoError::Kdf(e.to_string()))?;
    Ok(out)
}

/// Associated data of a key file's sealed key set: the prefix, then the header bytes.
fn key_ad(header_bytes: &[u8]) -> Vec<u8> {
    [cairn_format::ad::KEY_FILE, header_bytes].concat()
}

/// A new key file wrapping `keys` under `password`.
pub fn create_key_file(
    keys: &MasterKeys,
    password: &[u8],
    kdf: KdfParams,
    created: i64,
    host: &[u8],
    user: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    kdf.validate()
        .map_err(|e| CryptoError::Kdf(e.to_string()))?;
    let salt = crate::random::bytes();
    let header = KeyHeader {
        kdf,
        salt,
        created,
        host: host.to_vec(),
        user: user.to_vec(),
    };
    let wrapping = derive(password, &header)?;
    let header_bytes = header.encode();
    let mut records = keys.to_records();
    let plain = Zeroizing::new(records.encode());
    clear(&mut records);
    let sealed = seal::seal(&wrapping, &key_ad(&header_bytes), &plain);
    Ok([header_bytes, sealed].concat())
}

/// Opens a key file with `password`. A failed authentication means the wrong password (or a
/// damaged key file, which we cannot tell apart).
pub fn open_key_file(file: &[u8], password: &[u8]) -> Result<MasterKeys, CryptoError> {
    let (header, header_bytes, sealed) =
        KeyHeader::decode(file).map_err(|e| CryptoError::Corrupt(e.to_string()))?;
    let wrapping = derive(password, &header)?;
    let plain = Zeroizing::new(
        seal::open(&wrapping, &key_ad(header_bytes), sealed, "key file")
            .map_err(|_| CryptoError::WrongPassword)?,
    );
    let mut records =
        KeySetRecords::decode(&plain).map_err(|e| CryptoError::Corrupt(e.to_string()))?;
    let keys = MasterKeys::from_records(&records);
    clear(&mut records);
    keys
}

/// Clears the keys of a decoded or encoded key set (a format type, which knows nothing of
/// secrets) once they are in `MasterKeys` or sealed.
fn clear(records: &mut KeySetRecords) {
    for (_, key) in &mut records.records {
        key.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: KdfParams = KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    #[test]
    fn key_file_round_trip_and_wrong_password() {
        let keys = MasterKeys::random();
        let file = create_key_file(&keys, b"pw", FAST, 7, b"h", b"u").unwrap();
        let back = open_key_file(&file, b"pw").unwrap();
        assert_eq!(back.data, keys.data);
        assert_eq!(back.chunker, keys.chunker);
        assert!(matches!(
            open_key_file(&file, b"px"),
            Err(CryptoError::WrongPassword)
        ));
    }

    /// Key bytes, in any form a log could carry them, never appear in `Debug` output or in the
    /// errors of a key file opened with a wrong password or damaged.
    #[test]
    fn key_material_never_reaches_debug_output_or_errors() {
        let keys = MasterKeys::random();
        let file = create_key_file(&keys, b"secret-pw", FAST, 7, b"h", b"u").unwrap();
        let mut damaged = file.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        let mut shown = vec![format!("{keys:?}"), format!("{keys:#?}")];
        for e in [
            open_key_file(&file, b"wrong").unwrap_err(),
            open_key_file(&damaged, b"secret-pw").unwrap_err(),
        ] {
            shown.push(format!("{e} {e:?}"));
        }
        for key in [keys.data, keys.meta, keys.blob_id, keys.chunker] {
            let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
            let list = format!("{:?}", &key[..4]).trim_end_matches(']').to_string();
            for text in &shown {
                assert!(!text.contains(&hex[..16]), "key bytes in {text}");
                assert!(!text.contains(&list), "key bytes in {text}");
            }
        }
        for text in &shown {
            assert!(!text.contains("secret-pw"), "password in {text}");
        }
    }

    #[test]
    fn lanes_computed_in_parallel_derive_the_same_key_every_time() {
        let keys = MasterKeys::random();
        let four = KdfParams {
            memory_kib: 256,
            iterations: 2,
            parallelism: 4,
        };
        let file = create_key_file(&keys, b"pw", four, 7, b"h", b"u").unwrap();
        for _ in 0..4 {
            assert_eq!(open_key_file(&file, b"pw").unwrap().data, keys.data);
        }
        let too_little = KdfParams {
            memory_kib: 16,
            ..four
        };
        let e = create_key_file(&keys, b"pw", too_little, 7, b"h", b"u").unwrap_err();
        assert!(e.to_string().contains("16 KiB"), "{e}");
    }

    #[test]
    fn tampered_kdf_parameters_are_rejected() {
        let keys = MasterKeys::random();
        let mut file = create_key_file(&keys, b"pw", FAST, 7, b"h", b"u").unwrap();
        file[13] ^= 1; // low byte of memory_kib
        assert!(open_key_file(&file, b"pw").is_err());
    }

    #[test]
    fn a_rewrapped_key_set_is_the_same_and_another_is_not() {
        let mut keys = MasterKeys::random();
        keys.extra.push((9, [7; 32]));
        let file = create_key_file(&keys, b"pw", FAST, 7, b"h", b"u").unwrap();
        let back = open_key_file(&file, b"pw").unwrap();
        assert!(back.same_as(&keys));
        assert!(!MasterKeys::random().same_as(&keys));
        let mut other_extra = open_key_file(&file, b"pw").unwrap();
        other_extra.extra[0].1[31] ^= 1;
        assert!(!other_extra.same_as(&keys));
    }

    #[test]
    fn gear_table_depends_on_the_key() {
        let a = MasterKeys::random();
        let b = MasterKeys::random();
        assert_ne!(a.gear_table(), b.gear_table());
        assert_eq!(a.gear_table(), a.gear_table());
    }

    // Regression: master keys and derived keys stayed in freed memory (and `MasterKeys` could
    // be cloned into more places); what drop runs must clear every key.
    #[test]
    fn zeroizing_clears_every_key() {
        let mut keys = MasterKeys::random();
        keys.extra.push((9, [7; 32]));
        keys.zeroize();
        assert_eq!(keys.data, [0; 32]);
        assert_eq!(keys.meta, [0; 32]);
        assert_eq!(keys.blob_id, [0; 32]);
        assert_eq!(keys.chunker, [0; 32]);
        assert_eq!(keys.extra, vec![(9, [0; 32])]);

        let mut records = keys_of_random().to_records();
        clear(&mut records);
        assert!(records.records.iter().all(|(_, k)| *k == [0; 32]));

        let mut wrapping = derive(b"pw", &header()).unwrap();
        assert_ne!(*wrapping, [0; 32]);
        wrapping.zeroize();
        assert_eq!(*wrapping, [0; 32]);
    }

    fn keys_of_random() -> MasterKeys {
        MasterKeys::random()
    }

    fn header() -> KeyHeader {
        KeyHeader {
            kdf: FAST,
            salt: [1; 32],
            created: 0,
            host: Vec::new(),
            user: Vec::new(),
        }
    }
}
