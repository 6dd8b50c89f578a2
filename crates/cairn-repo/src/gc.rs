//! What garbage collection needs of the repository (repo-format.md, "Garbage collection"):
//! backup markers, condemnations, the backup's last look for them, and removal.
//!
//! Invariant: a blob that a snapshot written by this process reaches is never only in a
//! condemned pack. `revive_condemned` stores such blobs again before the snapshot is written.

use crate::{Error, ErrorKind, Host, Repository, Result};
use cairn_backend::{Backend, FileType};
use cairn_crypto::file_id;
use cairn_format::marker::Marker;
use cairn_format::{BlobId, Id, IndexId, PackId, SnapshotId, TreeId};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// Creates a backup marker in `locks/`, named by its SHA-256 like every other file. Its
/// existence is what prune looks for; its content lets a prune on this machine see that the
/// process that wrote it is gone.
pub(crate) fn create_marker(backend: &dyn Backend, host: &dyn Host) -> Result<String> {
    let marker = Marker {
        nonce: cairn_crypto::random::bytes(),
        pid: host.pid(),
        machine: host.machine(),
    };
    let bytes = marker.encode();
    let name = file_id(&bytes).to_hex();
    backend.create(FileType::Lock, &name, &bytes)?;
    Ok(name)
}

/// How often a running backup replaces its marker (checked at every blob it stores or finds),
/// so that prune can tell a killed backup's marker (not renewed for `STALE_MARKER`) from a
/// running one's.
const MARKER_RENEWAL: Duration = Duration::from_secs(60 * 60);

/// A marker first seen this long ago is a killed backup's, and prune removes it.
pub const STALE_MARKER: Duration = Duration::from_secs(24 * 60 * 60);

impl Drop for Repository {
    fn drop(&mut self) {
        // A pack still being written must land before the marker that protects it goes.
        self.writer.stop();
        let current = self.marker.get_mut().unwrap().take().map(|(name, _)| name);
        for name in current
            .into_iter()
            .chain(self.previous_marker.get_mut().unwrap().take())
        {
            // A marker left behind (a crash, or this failing) only makes prunes wait for their
            // grace period; they remove stale markers themselves.
            let _ = self.backend.remove(FileType::Lock, &name);
        }
    }
}

impl Repository {
    /// Replaces the backup marker with a new one when it is older than `MARKER_RENEWAL`.
    pub(crate) fn renew_marker(&self) -> Result<()> {
        // Called for every blob; another thread holding the lock is renewing already.
        let Ok(mut marker) = self.marker.try_lock() else {
            return Ok(());
        };
        if let Some((old, made)) = marker.as_ref() {
            if self.host.boot_clock().saturating_sub(*made) >= MARKER_RENEWAL {
                // The marker before the current one goes: a listing that runs while one marker
                // is created and another removed could miss both.
                let new = create_marker(self.backend.as_ref(), self.host.as_ref())?;
                if let Some(older) = self.previous_marker.lock().unwrap().replace(old.clone()) {
                    let _ = self.backend.remove(FileType::Lock, &older);
                }
                *marker = Some((new, self.host.boot_clock()));
            }
        }
        Ok(())
    }

    /// The backup's last look (repo-format.md, "Garbage collection"), before it writes a
    /// snapshot whose root is `root`: blobs of packs this process depends on that a prune has
    /// condemned are stored again, unless the index holds them elsewhere; and if such a pack is
    /// gone, every blob the snapshot reaches must still be in the index.
    pub(crate) fn revive_condemned(&self, root: TreeId) -> Result<()> {
        self.sync_index()?;
        let touched = self.touched.lock().unwrap().clone();
        let condemned = self.condemned.lock().unwrap().clone();
        let sizes: HashMap<PackId, u64> = self.list_packs()?.into_iter().collect();
        let mut moved: HashSet<BlobId> = HashSet::new();
        let mut gone = Vec::new();
        for pack in &touched {
            let Some(size) = sizes.get(pack) else {
                gone.push(*pack);
                continue;
            };
            if !condemned.contains(pack) {
                continue;
            }
            let header = match self.read_pack_header(pack, *size) {
                Ok(h) => h,
                Err(e) if e.kind == ErrorKind::NotFound => {
                    gone.push(*pack);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let (offsets, _) = header.offsets();
            for (entry, offset) in header.entries.iter().zip(offsets) {
                if self.cache.get(&entry.blob)?.is_some() || !moved.insert(entry.blob) {
                    continue;
                }
                let stored =
                    self.read_pack_range(pack, u64::from(offset), u64::from(entry.stored_len))?;
                self.open_blob(&entry.blob, &stored, entry.raw_len)?;
                self.store_again(&entry.blob, &stored, entry.raw_len)?;
            }
        }
        if let Some(pack) = gone.first() {
            // Prune deleted a pack this backup found blobs in; it copies used blobs first, so
            // what matters is whether this snapshot reaches a blob that went with it.
            self.flush()?;
            if let Some(blob) = self.first_unindexed(root, &sizes)? {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "{blob} went with pack {}, deleted by a prune while this backup ran; run the backup again",
                        pack.short()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The first blob below `root` that neither this process nor a pack in `packs` holds.
    fn first_unindexed(
        &self,
        root: TreeId,
        packs: &HashMap<PackId, u64>,
    ) -> Result<Option<BlobId>> {
        let mut seen: HashSet<TreeId> = HashSet::new();
        let mut stack = vec![root];
        let present = |b: &BlobId| -> Result<bool> {
            Ok(self.session.lock().unwrap().contains_key(b)
                || self
                    .cache
                    .get(b)?
                    .is_some_and(|l| packs.contains_key(&l.pack)))
        };
        while let Some(id) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            if !present(&id.into())? {
                return Ok(Some(id.into()));
            }
            for node in self.load_tree(id)?.nodes {
                for c in &node.content {
                    if !present(&BlobId::from(*c))? {
                        return Ok(Some(BlobId::from(*c)));
                    }
                }
                stack.extend(node.subtree);
            }
        }
        Ok(None)
    }

    /// Stores a blob even if the index or this process has it: to move it out of a pack that is
    /// condemned or about to be. Its sealed bytes are copied as they are, since their seal binds
    /// the blob's id and not its pack; the caller has opened them with `open_blob`, so only
    /// authentic bytes are copied.
    pub fn store_again(&self, blob: &BlobId, stored: &[u8], raw_len: u32) -> Result<()> {
        self.session.lock().unwrap().insert(*blob, None);
        self.pack_stored(*blob, raw_len, stored.to_vec())
    }

    /// Names of the backup markers in `locks/`: backups running now, or killed ones.
    pub fn backup_markers(&self) -> Result<Vec<String>> {
        Ok(self
            .backend
            .list(FileType::Lock)?
            .into_iter()
            .map(|e| e.name)
            .filter(|n| {
                self.marker.lock().unwrap().as_ref().map(|(m, _)| m) != Some(n)
                    && self.previous_marker.lock().unwrap().as_ref() != Some(n)
            })
            .collect())
    }

    /// Whether a marker was written by a process of this machine that no longer runs: a killed
    /// backup's. A marker that cannot be read or was written elsewhere is not known dead.
    pub fn marker_is_dead(&self, name: &str) -> bool {
        let Ok(bytes) = self.backend.read(FileType::Lock, name) else {
            return false;
        };
        let Ok(marker) = Marker::decode(&bytes) else {
            return false;
        };
        let here = self.host.machine();
        if here.is_empty() || marker.machine != here {
            return false;
        }
        self.host.process_exists(marker.pid) == Some(false)
    }

    /// When this client first saw each of `ids` (condemnation files, markers), in ns of its
    /// wall clock; `now_ns` for those it sees now for the first time. Forgets all others.
    pub fn first_seen(&self, ids: &[Id], now_ns: i64) -> Result<Vec<i64>> {
        self.cache.first_seen(ids, now_ns)
    }

    pub fn remove_pack(&self, pack: &PackId) -> Result<()> {
        remove(self.backend.as_ref(), FileType::Pack, &pack.0)
    }

    pub fn remove_index(&self, id: &IndexId) -> Result<()> {
        remove(self.backend.as_ref(), FileType::Index, &id.0)
    }

    pub fn remove_snapshot(&self, id: &SnapshotId) -> Result<()> {
        remove(self.backend.as_ref(), FileType::Snapshot, &id.0)
    }

    pub fn remove_marker(&self, name: &str) -> Result<()> {
        match self.backend.remove(FileType::Lock, name) {
            Err(e) if e.kind != cairn_backend::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

/// Removes a file; one already gone (a concurrent or interrupted prune) is not an error.
fn remove(backend: &dyn Backend, t: FileType, id: &Id) -> Result<()> {
    match backend.remove(t, &id.to_hex()) {
        Err(e) if e.kind != cairn_backend::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}
