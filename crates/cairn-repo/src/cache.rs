//! The local index cache: a redb database holding the merge of every index file in the
//! repository, so blob lookups never need the whole index in memory.
//!
//! Invariant: the cache only ever holds entries of index files that are durable in the
//! repository, and it records which ones. It can be deleted at any time; it is rebuilt from the
//! index files, which are the truth.
//!
//! Invariant: the cache holds decrypted metadata (which blobs exist, hence which files), so
//! only this user can read or change it, whatever the umask: its directories are 0700 and owned
//! by this user (one owned by another is refused, since its owner could swap our files for
//! links), and its files are created 0600 without following links.

use crate::error::{Error, ErrorKind, Result};
use cairn_format::index::{IndexEntry, IndexFile};
use cairn_format::{BlobId, BlobType, Id, IndexId, PackId};
use redb::{ReadableTable, TableDefinition};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// For each of `ids`, the observation that first saw it, `number` for those not seen before;
/// entries not in `ids` are dropped.
fn first_seen(
    table: &mut redb::Table<'_, &'static [u8], u64>,
    ids: &[&[u8]],
    number: u64,
) -> Result<Vec<u64>> {
    let mut gone = Vec::new();
    for item in table.iter()? {
        let k = item?.0.value().to_vec();
        if !ids.contains(&k.as_slice()) {
            gone.push(k);
        }
    }
    for k in gone {
        table.remove(k.as_slice())?;
    }
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let seen = table.get(*id)?.map_or(number, |v| v.value());
        table.insert(*id, seen)?;
        out.push(seen);
    }
    Ok(out)
}

/// Type byte + id -> pack id, offset, stored length, raw length.
const BLOBS: TableDefinition<&[u8; 33], &[u8; 44]> = TableDefinition::new("blobs");
const INDEX_FILES: TableDefinition<&[u8; 32], ()> = TableDefinition::new("index_files");
/// Index file id -> what prune's survey needs of it (`IndexSummary`), so that it reads no file
/// it has seen before: at 10 million blobs, reading them all took 1.7 s of 9.3. A name is the
/// hash of the contents, so a summary never goes stale.
const INDEX_SUMMARIES: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("index_summaries");
/// Packs condemned by a merged index file; their entries go to `condemned_blobs`, not `blobs`.
const CONDEMNED: TableDefinition<&[u8; 32], ()> = TableDefinition::new("condemned");
/// Where blobs of condemned packs are: readable until prune deletes the packs, never reused.
const CONDEMNED_BLOBS: TableDefinition<&[u8; 33], &[u8; 44]> =
    TableDefinition::new("condemned_blobs");
/// Prune's observations (repo-format.md, "Garbage collection"): the number of the last one, and
/// the one that first saw each index file and each session. They survive `clear`, since they
/// say nothing of the index.
const OBSERVATIONS: TableDefinition<&str, u64> = TableDefinition::new("observations");
/// Id -> the sealed bytes of a tree blob or a snapshot file, as a remote repository sent them,
/// so they are not downloaded again. Sealed, so nothing here is plaintext; checked on every use
/// (a tree authenticates, a snapshot matches its name), so a damaged copy is only a miss.
const TREES: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("trees");
const SNAPSHOTS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("snapshots");
/// Copies held in memory until this many bytes are pending, then written in one transaction.
const COPIES_BATCH: usize = 8 << 20;

/// A copy of a remote object, kept by the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Copy {
    Tree,
    Snapshot,
}

impl Copy {
    fn table(self) -> TableDefinition<'static, &'static [u8; 32], &'static [u8]> {
        match self {
            Copy::Tree => TREES,
            Copy::Snapshot => SNAPSHOTS,
        }
    }
}
const INDEX_OBSERVED: TableDefinition<&[u8], u64> = TableDefinition::new("index_observed");
const SESSIONS_OBSERVED: TableDefinition<&[u8], u64> = TableDefinition::new("sessions_observed");
/// When a prune of this client first saw each marker: marker id ‖ machine -> boot clock in ns
/// of that machine, so that no reading is compared with another machine's or another boot's.
const MARKERS_SEEN: TableDefinition<&[u8], u64> = TableDefinition::new("markers_seen");

/// What prune's survey needs of an index file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexSummary {
    pub blobs: u64,
    pub condemned: Vec<PackId>,
}

impl IndexSummary {
    pub fn of(index: &IndexFile) -> IndexSummary {
        IndexSummary {
            blobs: index.packs.iter().map(|p| p.blobs.len() as u64).sum(),
            condemned: index.condemned.clone(),
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut v = self.blobs.to_le_bytes().to_vec();
        for pack in &self.condemned {
            v.extend_from_slice(pack.as_bytes());
        }
        v
    }

    /// `None` for bytes no `encode` made: the file is read instead.
    fn decode(v: &[u8]) -> Option<IndexSummary> {
        let (blobs, packs) = v.split_first_chunk::<8>()?;
        if packs.len() % 32 != 0 {
            return None;
        }
        Some(IndexSummary {
            blobs: u64::from_le_bytes(*blobs),
            condemned: packs
                .chunks_exact(32)
                .map(|c| PackId(Id(c.try_into().unwrap())))
                .collect(),
        })
    }
}

/// Where a blob is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    pub pack: PackId,
    pub offset: u32,
    pub stored_len: u32,
    pub raw_len: u32,
}

fn encode_location(l: &Location) -> [u8; 44] {
    let mut v = [0u8; 44];
    v[..32].copy_from_slice(&l.pack.0 .0);
    v[32..36].copy_from_slice(&l.offset.to_le_bytes());
    v[36..40].copy_from_slice(&l.stored_len.to_le_bytes());
    v[40..44].copy_from_slice(&l.raw_len.to_le_bytes());
    v
}

impl Location {
    /// Where an index entry of `pack` says its blob is.
    pub fn of(pack: PackId, e: &IndexEntry) -> Location {
        Location {
            pack,
            offset: e.offset,
            stored_len: e.stored_len,
            raw_len: e.raw_len,
        }
    }
}

fn decode_location(v: &[u8; 44]) -> Location {
    let u32_at = |i: usize| u32::from_le_bytes(v[i..i + 4].try_into().unwrap());
    Location {
        pack: PackId(Id(v[..32].try_into().unwrap())),
        offset: u32_at(32),
        stored_len: u32_at(36),
        raw_len: u32_at(40),
    }
}

/// redb's page cache. Its default (1 GiB) would make memory grow with the repository; lookups
/// are point reads that the kernel's page cache serves well, so a small one loses little.
const REDB_CACHE_BYTES: usize = 64 << 20;

fn database(path: &Path) -> std::result::Result<redb::Database, redb::DatabaseError> {
    redb::Database::builder()
        .set_cache_size(REDB_CACHE_BYTES)
        .create(path)
}

/// Makes `dir` (and missing parents) 0700, or checks that it is a directory of this user's that
/// no one else can write to (or only with the sticky bit, as /tmp). With `tighten`, for a
/// directory that is cairn's alone, group and other access are also taken away.
fn private_dir(dir: &Path, tighten: bool) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let refuse = |why: String| {
        Error::new(
            ErrorKind::InvalidInput,
            format!(
                "cache directory {} {why}: give another --cache-dir, or --no-cache",
                dir.display()
            ),
        )
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| refuse(format!("cannot be created: {e}")))?;
    let meta = std::fs::symlink_metadata(dir).map_err(|e| refuse(e.to_string()))?;
    let me = rustix::process::geteuid().as_raw();
    if !meta.is_dir() {
        return Err(refuse("is not a directory".into()));
    }
    if meta.uid() != me {
        return Err(refuse(format!(
            "belongs to uid {}, not to this user (uid {me})",
            meta.uid()
        )));
    }
    if tighten && meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| refuse(e.to_string()))?;
    } else if meta.mode() & 0o022 != 0 && meta.mode() & 0o1000 == 0 {
        return Err(refuse("can be written by other users".into()));
    }
    Ok(())
}

/// Creates `path` 0600 if it is missing (never through a link), or checks that it is a file of
/// this user's, and makes it 0600; redb then opens it.
fn private_file(path: &Path, new: bool) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32);
    if new {
        opts.create_new(true);
    } else {
        opts.create(true);
    }
    let file = opts.open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() || meta.uid() != rustix::process::geteuid().as_raw() {
        return Err(std::io::Error::other(format!(
            "{} is not a file of this user's",
            path.display()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// Copies not yet written, and their bytes in all.
#[derive(Default)]
struct Pending {
    copies: Vec<(Copy, [u8; 32], Vec<u8>)>,
    bytes: usize,
}

pub struct IndexCache {
    db: redb::Database,
    pending: std::sync::Mutex<Pending>,
    /// Set when the cache lives in a private temporary file, removed on drop.
    temporary: Option<PathBuf>,
    /// The directory the cache lives in.
    dir: PathBuf,
}

impl Drop for IndexCache {
    fn drop(&mut self) {
        // A cache that cannot take its copies only costs the next command a download.
        let _ = self.flush_copies();
        if let Some(p) = &self.temporary {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl IndexCache {
    /// Opens the cache at `path`, or a private temporary one when that is in use by another
    /// process (two commands on one repository at once) or cannot be created.
    pub fn open(path: Option<&Path>) -> Result<IndexCache> {
        if let Some(path) = path {
            let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
            // The cache root too: its owner could rename our directory away and put theirs.
            if let Some(root) = dir.parent().filter(|r| !r.as_os_str().is_empty()) {
                private_dir(root, false)?;
            }
            private_dir(&dir, true)?;
            let opened = private_file(path, false)
                .map_err(|e| redb::DatabaseError::Storage(redb::StorageError::Io(e)))
                .and_then(|()| database(path));
            match opened {
                Ok(db) => {
                    return Ok(IndexCache {
                        db,
                        pending: Default::default(),
                        temporary: None,
                        dir,
                    })
                }
                Err(redb::DatabaseError::Storage(redb::StorageError::Corrupted(_))) => {
                    // A damaged cache is only a cache.
                    let _ = std::fs::remove_file(path);
                    let again = private_file(path, false).map(|()| database(path));
                    if let Ok(Ok(db)) = again {
                        return Ok(IndexCache {
                            db,
                            pending: Default::default(),
                            temporary: None,
                            dir,
                        });
                    }
                }
                Err(_) => {}
            }
        }
        let dir = std::env::temp_dir();
        let tmp = dir.join(format!("cairn-index-{}.redb", rand::random::<u64>()));
        private_file(&tmp, true).map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("cannot create a temporary cache {}: {e}", tmp.display()),
            )
        })?;
        let db = database(&tmp)?;
        Ok(IndexCache {
            db,
            pending: Default::default(),
            temporary: Some(tmp),
            dir,
        })
    }

    /// Where the cache lives: the place for a command's scratch files too.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn merged_index_files(&self) -> Result<HashSet<IndexId>> {
        Ok(self.ids_in(INDEX_FILES)?.into_iter().map(IndexId).collect())
    }

    /// The keys of a table of ids.
    fn ids_in(&self, def: TableDefinition<&[u8; 32], ()>) -> Result<Vec<Id>> {
        let txn = self.db.begin_read()?;
        let table = match txn.open_table(def) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for item in table.iter()? {
            out.push(Id(*item?.0.value()));
        }
        Ok(out)
    }

    pub fn clear(&self) -> Result<()> {
        let txn = self.db.begin_write()?;
        txn.delete_table(BLOBS)?;
        txn.delete_table(INDEX_FILES)?;
        txn.delete_table(INDEX_SUMMARIES)?;
        txn.delete_table(CONDEMNED)?;
        txn.delete_table(CONDEMNED_BLOBS)?;
        txn.commit()?;
        Ok(())
    }

    /// The kept copy of a remote object, if any.
    pub fn copy_of(&self, kind: Copy, id: &Id) -> Result<Option<Vec<u8>>> {
        {
            let pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((_, _, bytes)) = pending
                .copies
                .iter()
                .find(|(k, i, _)| *k == kind && i == &id.0)
            {
                return Ok(Some(bytes.clone()));
            }
        }
        let txn = self.db.begin_read()?;
        let table = match txn.open_table(kind.table()) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(table.get(&id.0)?.map(|v| v.value().to_vec()))
    }

    /// Keeps a copy of a remote object; written with others once enough are pending.
    pub fn keep_copy(&self, kind: Copy, id: &Id, sealed: &[u8]) -> Result<()> {
        let full = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            pending.copies.push((kind, id.0, sealed.to_vec()));
            pending.bytes += sealed.len();
            pending.bytes >= COPIES_BATCH
        };
        if full {
            self.flush_copies()?;
        }
        Ok(())
    }

    /// Writes the pending copies in one transaction.
    pub fn flush_copies(&self) -> Result<()> {
        let copies = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            pending.bytes = 0;
            std::mem::take(&mut pending.copies)
        };
        if copies.is_empty() {
            return Ok(());
        }
        let mut txn = self.db.begin_write()?;
        txn.set_durability(redb::Durability::Eventual);
        {
            let mut trees = txn.open_table(TREES)?;
            let mut snapshots = txn.open_table(SNAPSHOTS)?;
            for (kind, id, bytes) in &copies {
                match kind {
                    Copy::Tree => trees.insert(id, bytes.as_slice())?,
                    Copy::Snapshot => snapshots.insert(id, bytes.as_slice())?,
                };
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Packs condemned by the merged index files.
    pub fn condemned(&self) -> Result<HashSet<PackId>> {
        Ok(self.ids_in(CONDEMNED)?.into_iter().map(PackId).collect())
    }

    /// Adds an index file's entries (those of `condemned` packs apart), records the packs it
    /// condemns, and records it as merged, in one transaction.
    pub fn merge(&self, id: IndexId, index: &IndexFile, condemned: &HashSet<PackId>) -> Result<()> {
        let mut txn = self.db.begin_write()?;
        // The cache is rebuildable, so a crash that loses the last transactions costs only a
        // re-read of some index files; skipping the fsync makes a backup's index writes cheap.
        txn.set_durability(redb::Durability::Eventual);
        {
            let mut live = txn.open_table(BLOBS)?;
            let mut doomed = txn.open_table(CONDEMNED_BLOBS)?;
            for pack in &index.packs {
                let blobs = if condemned.contains(&pack.id) {
                    &mut doomed
                } else {
                    &mut live
                };
                for e in &pack.blobs {
                    let loc = Location::of(pack.id, e);
                    blobs.insert(&e.blob.to_bytes(), &encode_location(&loc))?;
                }
            }
            let mut table = txn.open_table(CONDEMNED)?;
            for pack in &index.condemned {
                table.insert(pack.as_bytes(), ())?;
            }
            txn.open_table(INDEX_FILES)?.insert(id.as_bytes(), ())?;
            txn.open_table(INDEX_SUMMARIES)?
                .insert(id.as_bytes(), IndexSummary::of(index).encode().as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// What an index file read before holds, if the cache knows.
    pub fn index_summary(&self, id: &IndexId) -> Result<Option<IndexSummary>> {
        let txn = self.db.begin_read()?;
        let table = match txn.open_table(INDEX_SUMMARIES) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(table
            .get(id.as_bytes())?
            .and_then(|v| IndexSummary::decode(v.value())))
    }

    /// Records what an index file holds, read for another purpose than merging it.
    pub fn keep_index_summary(&self, id: &IndexId, summary: &IndexSummary) -> Result<()> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(redb::Durability::Eventual);
        txn.open_table(INDEX_SUMMARIES)?
            .insert(id.as_bytes(), summary.encode().as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// Records a new observation; returns its number and, for each of `index` and `sessions`,
    /// the observation that first saw it (this one for those not seen before). Entries not
    /// given are dropped: those files and sessions are gone. `write: false` records nothing.
    pub fn observe(
        &self,
        index: &[IndexId],
        sessions: &[[u8; 16]],
        write: bool,
    ) -> Result<(u64, Vec<u64>, Vec<u64>)> {
        let txn = self.db.begin_write()?;
        let out = {
            let mut counter = txn.open_table(OBSERVATIONS)?;
            let number = counter.get("last")?.map_or(0, |v| v.value()) + 1;
            counter.insert("last", number)?;
            let index: Vec<&[u8]> = index.iter().map(|i| &i.0 .0[..]).collect();
            let sessions: Vec<&[u8]> = sessions.iter().map(|s| &s[..]).collect();
            let index = first_seen(&mut txn.open_table(INDEX_OBSERVED)?, &index, number)?;
            let sessions = first_seen(&mut txn.open_table(SESSIONS_OBSERVED)?, &sessions, number)?;
            (number, index, sessions)
        };
        if write {
            txn.commit()?;
        } else {
            txn.abort()?;
        }
        Ok(out)
    }

    /// Records an observation made after the last one, adding to it: index files and sessions
    /// not seen before get its number, and those seen before keep theirs.
    pub fn observe_more(&self, index: &[IndexId], sessions: &[[u8; 16]]) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut counter = txn.open_table(OBSERVATIONS)?;
            let number = counter.get("last")?.map_or(0, |v| v.value()) + 1;
            counter.insert("last", number)?;
            let mut table = txn.open_table(INDEX_OBSERVED)?;
            for id in index {
                if table.get(&id.0 .0[..])?.is_none() {
                    table.insert(&id.0 .0[..], number)?;
                }
            }
            let mut table = txn.open_table(SESSIONS_OBSERVED)?;
            for id in sessions {
                if table.get(&id[..])?.is_none() {
                    table.insert(&id[..], number)?;
                }
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// When a prune of this client on `machine` first saw each of `markers`, on that machine's
    /// boot clock; `now` for those seen now for the first time. Forgets other markers seen on
    /// this machine. `write: false` records nothing.
    pub fn markers_seen(
        &self,
        markers: &[Id],
        machine: &[u8],
        now: u64,
        write: bool,
    ) -> Result<Vec<u64>> {
        let key = |id: &Id| [&id.0[..], machine].concat();
        let txn = self.db.begin_write()?;
        let out = {
            let mut table = txn.open_table(MARKERS_SEEN)?;
            let mut gone = Vec::new();
            for item in table.iter()? {
                let k = item?.0.value().to_vec();
                if k[32..] == *machine && !markers.iter().any(|m| m.0 == k[..32]) {
                    gone.push(k);
                }
            }
            for k in gone {
                table.remove(k.as_slice())?;
            }
            let mut out = Vec::with_capacity(markers.len());
            for m in markers {
                let k = key(m);
                let seen = table.get(k.as_slice())?.map_or(now, |v| v.value());
                table.insert(k.as_slice(), seen)?;
                out.push(seen);
            }
            out
        };
        if write {
            txn.commit()?;
        } else {
            txn.abort()?;
        }
        Ok(out)
    }

    /// Where a blob is in a pack that is not condemned.
    pub fn get(&self, blob: &BlobId) -> Result<Option<Location>> {
        Ok(self.get_many(std::slice::from_ref(blob))?.pop().flatten())
    }

    /// `get` of many blobs in one read transaction, which costs less than opening one each.
    pub fn get_many(&self, blobs: &[BlobId]) -> Result<Vec<Option<Location>>> {
        self.get_many_in(BLOBS, blobs)
    }

    /// `get_many` of blobs in ascending key order, by one walk in key order over the table:
    /// where the blobs are dense in it, each costs a step of the walk rather than a descent
    /// from the root; past a wide gap the walk starts again at the next blob.
    pub fn get_sorted(&self, blobs: &[BlobId]) -> Result<Vec<Option<Location>>> {
        /// Keys stepped over before the walk starts again at the one asked for.
        const MAX_SKIP: usize = 32;
        let txn = self.db.begin_read()?;
        let table = match txn.open_table(BLOBS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(vec![None; blobs.len()]),
            Err(e) => return Err(e.into()),
        };
        type Walk = redb::Range<'static, &'static [u8; 33], &'static [u8; 44]>;
        type Entry = ([u8; 33], Location);
        let step = |walk: &mut Walk| -> Result<Option<Entry>> {
            Ok(walk
                .next()
                .transpose()?
                .map(|(k, v)| (*k.value(), decode_location(v.value()))))
        };
        let mut out = Vec::with_capacity(blobs.len());
        // The walk, and the entry it stands on (`None` past the table's end).
        let mut walk: Option<(Walk, Option<Entry>)> = None;
        for blob in blobs {
            let key = blob.to_bytes();
            debug_assert!(out.is_empty() || key > blobs[out.len() - 1].to_bytes());
            let mut skipped = 0;
            let found = loop {
                if let Some((w, at)) = &mut walk {
                    match at {
                        // The walk began at or below this key and found nothing above.
                        None => break None,
                        Some((k, loc)) if *k >= key => break (*k == key).then_some(*loc),
                        Some(_) if skipped < MAX_SKIP => {
                            skipped += 1;
                            *at = step(w)?;
                            continue;
                        }
                        Some(_) => {}
                    }
                }
                let mut w = table.range::<&[u8; 33]>(&key..)?;
                let first = step(&mut w)?;
                walk = Some((w, first));
                skipped = 0;
            };
            out.push(found);
        }
        Ok(out)
    }

    /// How many blobs the index places in packs no condemnation names.
    pub fn blob_count(&self) -> Result<u64> {
        let txn = self.db.begin_read()?;
        match txn.open_table(BLOBS) {
            Ok(t) => Ok(redb::ReadableTableMetadata::len(&t)?),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    /// Where blobs are in condemned packs, for reading them until the packs are deleted.
    pub fn get_many_condemned(&self, blobs: &[BlobId]) -> Result<Vec<Option<Location>>> {
        self.get_many_in(CONDEMNED_BLOBS, blobs)
    }

    fn get_many_in(
        &self,
        def: TableDefinition<&[u8; 33], &[u8; 44]>,
        blobs: &[BlobId],
    ) -> Result<Vec<Option<Location>>> {
        let txn = self.db.begin_read()?;
        let table = match txn.open_table(def) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(vec![None; blobs.len()]),
            Err(e) => return Err(e.into()),
        };
        blobs
            .iter()
            .map(|b| {
                Ok(table
                    .get(&b.to_bytes())?
                    .map(|v| decode_location(v.value())))
            })
            .collect()
    }

    /// Every blob location, of live packs and then of condemned ones.
    pub fn for_each(&self, mut f: impl FnMut(BlobId, Location)) -> Result<()> {
        let txn = self.db.begin_read()?;
        for def in [BLOBS, CONDEMNED_BLOBS] {
            let table = match txn.open_table(def) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => continue,
                Err(e) => return Err(e.into()),
            };
            for item in table.iter()? {
                let (k, v) = item?;
                let k = k.value();
                let Some(kind) = BlobType::from_u8(k[0]) else {
                    continue;
                };
                f(
                    BlobId {
                        kind,
                        id: Id(k[1..].try_into().unwrap()),
                    },
                    decode_location(v.value()),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    /// The walk in key order answers as a lookup of each blob does: blobs present and absent,
    /// of both types, in runs and across gaps wider than it steps over, past both ends.
    #[test]
    fn a_sorted_walk_finds_what_lookups_find() {
        use cairn_format::index::{IndexEntry, IndexPack};
        use cairn_format::BlobType;
        let blob = |kind, i: u32| {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&i.to_be_bytes());
            BlobId { kind, id: Id(id) }
        };
        let pack = PackId(Id([7; 32]));
        let indexed: Vec<BlobId> = (0..3000)
            .filter(|i| i % 3 != 0 && !(1000..1400).contains(i))
            .flat_map(|i| [blob(BlobType::Data, i), blob(BlobType::Tree, i * 2)])
            .collect();
        let file = IndexFile {
            supersedes: Vec::new(),
            packs: vec![IndexPack {
                id: pack,
                size: 1 << 20,
                blobs: indexed
                    .iter()
                    .enumerate()
                    .map(|(n, b)| IndexEntry {
                        blob: *b,
                        offset: n as u32,
                        stored_len: 10,
                        raw_len: 9,
                    })
                    .collect(),
            }],
            condemned: Vec::new(),
        };
        let cache = IndexCache::open(None).unwrap();
        cache
            .merge(IndexId(Id([1; 32])), &file, &HashSet::new())
            .unwrap();
        assert_eq!(cache.blob_count().unwrap(), indexed.len() as u64);
        let mut asked: Vec<BlobId> = (0..3100)
            .flat_map(|i| [blob(BlobType::Data, i), blob(BlobType::Tree, i)])
            .filter(|b| b.id.0[3] % 5 != 1)
            .collect();
        asked.sort_by_key(BlobId::to_bytes);
        let walked = cache.get_sorted(&asked).unwrap();
        assert_eq!(walked, cache.get_many(&asked).unwrap());
        assert!(walked.iter().filter(|l| l.is_some()).count() > 1000);
        assert!(walked.iter().filter(|l| l.is_none()).count() > 1000);
        // Far apart: the walk starts again at each.
        let sparse: Vec<BlobId> = asked.iter().step_by(97).copied().collect();
        assert_eq!(
            cache.get_sorted(&sparse).unwrap(),
            cache.get_many(&sparse).unwrap()
        );
        assert_eq!(cache.get_sorted(&[]).unwrap(), vec![]);
    }

    /// What prune's survey takes from the cache instead of the file: the blobs it holds and the
    /// packs it condemns, for merged files and for those only read; gone with the index.
    #[test]
    fn an_index_file_s_summary_is_kept_until_the_cache_is_cleared() {
        use cairn_format::index::{IndexEntry, IndexPack};
        use cairn_format::BlobType;
        let blob = |i: u8| BlobId {
            kind: BlobType::Data,
            id: Id([i; 32]),
        };
        let doomed = vec![PackId(Id([8; 32])), PackId(Id([9; 32]))];
        let file = IndexFile {
            supersedes: Vec::new(),
            packs: vec![IndexPack {
                id: PackId(Id([7; 32])),
                size: 1 << 20,
                blobs: (1..=5)
                    .map(|i| IndexEntry {
                        blob: blob(i),
                        offset: u32::from(i) * 10,
                        stored_len: 10,
                        raw_len: 9,
                    })
                    .collect(),
            }],
            condemned: doomed.clone(),
        };
        let cache = IndexCache::open(None).unwrap();
        let (merged, read) = (IndexId(Id([1; 32])), IndexId(Id([2; 32])));
        assert_eq!(cache.index_summary(&merged).unwrap(), None);
        cache.merge(merged, &file, &HashSet::new()).unwrap();
        let want = IndexSummary {
            blobs: 5,
            condemned: doomed,
        };
        assert_eq!(cache.index_summary(&merged).unwrap(), Some(want.clone()));
        let empty = IndexSummary {
            blobs: 0,
            condemned: Vec::new(),
        };
        cache.keep_index_summary(&read, &empty).unwrap();
        assert_eq!(cache.index_summary(&read).unwrap(), Some(empty));
        assert_eq!(IndexSummary::decode(&[1, 2, 3]), None);
        assert_eq!(IndexSummary::decode(&[0; 8 + 31]), None);
        cache.clear().unwrap();
        assert_eq!(cache.index_summary(&merged).unwrap(), None);
        assert_eq!(cache.index_summary(&read).unwrap(), None);
    }

    // The temporary fallback cache holds decrypted index entries like the real one: it must be
    // this user's alone (0600), whatever the umask lets a plain create make.
    #[test]
    fn the_temporary_fallback_cache_is_private_and_removed_on_drop() {
        let cache = IndexCache::open(None).unwrap();
        let tmp = cache.temporary.clone().unwrap();
        let meta = std::fs::symlink_metadata(&tmp).unwrap();
        assert!(meta.is_file());
        assert_eq!(meta.mode() & 0o777, 0o600, "{}", tmp.display());
        assert_eq!(meta.uid(), rustix::process::geteuid().as_raw());
        drop(cache);
        assert!(!tmp.exists(), "{} is left behind", tmp.display());
    }

    // Its name is predictable enough to plant something there first (a shared /tmp): the file
    // is created exclusively, so neither a file nor a link planted at its name is opened.
    #[test]
    fn a_temporary_cache_is_never_opened_where_something_was_planted() {
        let dir = tempfile::tempdir().unwrap();
        let planted = dir.path().join("cairn-index-1.redb");
        std::fs::write(&planted, b"someone else's").unwrap();
        std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o666)).unwrap();
        let e = private_file(&planted, true).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists, "{e}");
        assert_eq!(std::fs::read(&planted).unwrap(), b"someone else's");

        let target = dir.path().join("target");
        std::fs::write(&target, b"x").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
        let link = dir.path().join("cairn-index-2.redb");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(private_file(&link, true).is_err());
        let meta = std::fs::metadata(&target).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"x");
        assert_ne!(meta.mode() & 0o777, 0o600, "the link's target was chmodded");
    }
}
