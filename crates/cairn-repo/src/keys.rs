//! The key files of an open repository: listing them, adding one for another password, removing
//! one, and replacing the one in use (repo-format.md, "Key files").
//!
//! Invariant: the repository keeps a key file that opens it. A new key file is created, read back
//! and opened before anything is removed; the key file that opened the repository for this
//! process is never removed, except by `change_password` once its successor is verified; and a
//! key file is removed only while the one in use is still there. Nothing here touches data,
//! index files or snapshots. Removing a key file is, with forgetting snapshots and pruning, one
//! of the few deletions in a repository that is otherwise create-only.

use crate::{key_id_of, Error, ErrorKind, Repository, Result};
use cairn_backend::{BackendErrorKind, FileType};
use cairn_crypto::file_id;
use cairn_format::key::{KdfParams, KeyHeader, MAX_KEY_FILE_LEN};
use cairn_format::KeyId;

/// The key files of a repository, with those that could not be read returned beside them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KeyFiles {
    /// Oldest first (by creation time, then id).
    pub list: Vec<(KeyId, KeyHeader)>,
    /// Key files whose bytes do not match their name or whose header does not parse, and why.
    pub damaged: Vec<(KeyId, String)>,
}

/// What a new key file records besides the password it is for (repo-format.md, "Key files").
#[derive(Clone, Debug)]
pub struct NewKey {
    pub kdf: KdfParams,
    /// Nanoseconds since the Unix epoch.
    pub created: i64,
    /// Who the key is for: free text, by convention the host and user names.
    pub host: Vec<u8>,
    pub user: Vec<u8>,
}

/// One key file as read.
enum Read {
    Header(KeyHeader),
    Damaged(String),
    /// Removed since it was listed.
    Gone,
}

impl Repository {
    /// The key file that opened the repository.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The ids of the listed key files. Names that are no key id are left out, as `unlock`
    /// leaves them out; `verify_key_files` reports them.
    fn key_ids(&self) -> Result<Vec<KeyId>> {
        Ok(self
            .backend
            .list(FileType::Key)?
            .iter()
            .filter_map(|e| key_id_of(&e.name))
            .collect())
    }

    /// Every key file with its plaintext header (who it is for, when it was made, its key
    /// derivation). A damaged key file costs only itself: it is named among the damaged.
    pub fn key_files(&self) -> Result<KeyFiles> {
        let mut out = KeyFiles::default();
        for id in self.key_ids()? {
            match self.read_key_header(id)? {
                Read::Header(header) => out.list.push((id, header)),
                Read::Damaged(why) => out.damaged.push((id, why)),
                Read::Gone => {}
            }
        }
        out.list.sort_by_key(|(id, h)| (h.created, *id));
        Ok(out)
    }

    fn read_key_header(&self, id: KeyId) -> Result<Read> {
        let short = id.short();
        let file = match self
            .backend
            .read_at_most(FileType::Key, &id.to_hex(), MAX_KEY_FILE_LEN)
        {
            Ok(file) => file,
            Err(e) if e.kind == BackendErrorKind::NotFound => return Ok(Read::Gone),
            Err(e) if e.kind == BackendErrorKind::TooLarge => return Ok(Read::Damaged(e.message)),
            Err(e) => return Err(e.into()),
        };
        if file_id(&file) != id.0 {
            return Ok(Read::Damaged(format!(
                "key file {short} does not match its name"
            )));
        }
        Ok(match KeyHeader::decode(&file) {
            Ok((header, _, _)) => Read::Header(header),
            Err(e) => Read::Damaged(format!("key file {short}: {e}")),
        })
    }

    /// The listed key file whose id starts with `spec` (hex digits, any case). Damaged key
    /// files can be named too, so that they can be removed.
    pub fn find_key(&self, spec: &str) -> Result<KeyId> {
        let prefix = spec.to_ascii_lowercase();
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("invalid key id {spec:?}: give an id or a unique id prefix"),
            ));
        }
        let ids = self.key_ids()?;
        let mut found = ids.iter().filter(|id| id.to_hex().starts_with(&prefix));
        match (found.next(), found.next()) {
            (Some(id), None) => Ok(*id),
            (None, _) => Err(Error::new(
                ErrorKind::NotFound,
                format!("no key file with id {prefix}"),
            )),
            (Some(_), Some(_)) => Err(Error::new(
                ErrorKind::InvalidInput,
                format!("key id prefix {prefix} is ambiguous"),
            )),
        }
    }

    /// Writes a new key file wrapping this repository's master keys under `password`, with a
    /// fresh salt. It is created (never overwriting), then read back and opened with the
    /// password; one that fails this is removed again and the error names it.
    pub fn add_key(&self, password: &[u8], new: &NewKey) -> Result<KeyId> {
        new.kdf
            .validate()
            .map_err(|e| Error::new(ErrorKind::InvalidInput, format!("new key: {e}")))?;
        let bytes = cairn_crypto::create_key_file(
            &self.keys,
            password,
            new.kdf,
            new.created,
            &new.host,
            &new.user,
        )?;
        if bytes.len() as u64 > MAX_KEY_FILE_LEN {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "the new key file would be {} bytes, more than the {MAX_KEY_FILE_LEN} a key file may have: its host and user names are too long",
                    bytes.len()
                ),
            ));
        }
        let id = KeyId(file_id(&bytes));
        self.backend.create(FileType::Key, &id.to_hex(), &bytes)?;
        if let Err(why) = self.verify_new_key(id, password) {
            let removed = match self.remove(FileType::Key, &id.0) {
                Ok(()) => "it was removed again".to_string(),
                Err(e) => {
                    format!("removing it failed too ({e}): remove it with `cairn key remove`")
                }
            };
            return Err(Error::corrupt(format!(
                "new key file {} does not read back as written: {why}; {removed}",
                id.short()
            )));
        }
        Ok(id)
    }

    /// Reads a key file just written and opens it with its password: it must hold exactly this
    /// repository's master keys.
    fn verify_new_key(&self, id: KeyId, password: &[u8]) -> std::result::Result<(), String> {
        let file = self
            .backend
            .read_at_most(FileType::Key, &id.to_hex(), MAX_KEY_FILE_LEN)
            .map_err(|e| e.message)?;
        if file_id(&file) != id.0 {
            return Err("its bytes do not match its name".into());
        }
        let keys = cairn_crypto::open_key_file(&file, password).map_err(|e| e.to_string())?;
        if !keys.same_as(&self.keys) {
            return Err("it holds other keys than the repository's".into());
        }
        Ok(())
    }

    /// Removes key file `id`, after which its password no longer opens the repository.
    /// Refuses the key file that opened the repository for this process (and so the last one):
    /// a password is revoked with another password, or changed with `change_password`.
    pub fn remove_key(&self, id: KeyId) -> Result<()> {
        let short = id.short();
        let ids = self.key_ids()?;
        if !ids.contains(&id) {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("no key file with id {}", id.to_hex()),
            ));
        }
        if id == self.key_id {
            let message = if ids.len() == 1 {
                format!("key {short} is the repository's only key: without it no password would open the repository")
            } else {
                format!("key {short} opened the repository for this command: to remove it, use another key's password; to change its password, use `cairn key passwd`")
            };
            return Err(Error::new(ErrorKind::InvalidInput, message));
        }
        self.check_current_key(id)?;
        self.remove(FileType::Key, &id.0)
    }

    /// The key file in use must still be there before another is removed: if a client elsewhere
    /// removed it (revoking this password while this process ran), removing `doomed` as well
    /// could leave no key file at all. Read directly, not listed, so a key file just written is
    /// found on stores whose listings lag.
    fn check_current_key(&self, doomed: KeyId) -> Result<()> {
        let current = self.key_id;
        let gone = |why: String| {
            Error::new(
                ErrorKind::NotFound,
                format!(
                    "key file {}, which opened the repository, {why}: key {} is not removed, as it may be the last that opens the repository",
                    current.short(),
                    doomed.short()
                ),
            )
        };
        match self
            .backend
            .read_at_most(FileType::Key, &current.to_hex(), MAX_KEY_FILE_LEN)
        {
            Ok(file) if file_id(&file) == current.0 => Ok(()),
            Ok(_) => Err(gone("no longer matches its name".into())),
            Err(e) if e.kind == BackendErrorKind::NotFound => {
                Err(gone("is gone (removed by another client?)".into()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces the key file in use with one for `password`: the new key file is written and
    /// verified (`add_key`), becomes the one in use, and only then is the old one removed, so
    /// that at every moment a key file opens the repository. Returns the new key's id.
    pub fn change_password(&mut self, password: &[u8], new: &NewKey) -> Result<KeyId> {
        let old = self.key_id;
        let id = self.add_key(password, new)?;
        self.key_id = id;
        self.remove_key(old).map_err(|e| {
            Error::new(
                e.kind,
                format!(
                    "key {} was added, but the old key {} was not removed (both passwords open the repository; remove it with `cairn key remove {}`): {e}",
                    id.short(),
                    old.short(),
                    old.short()
                ),
            )
        })?;
        Ok(id)
    }
}
