//! The repository: keys and config, packs, the index and its local cache, blobs and snapshots.
//!
//! This is the one place that enforces write order (repo-format.md, "Write order"): a pack is
//! durable before an index file names it, and every index file a snapshot depends on is durable
//! before the snapshot is written. A crash at any point therefore leaves, at worst, packs that no
//! index names yet; they waste space until pruned but never make a snapshot unreadable.

mod cache;
mod cores;
mod error;
mod gc;
mod host;
mod keys;
mod locate;
mod location;
mod pack;
mod store;
mod writer;

pub use cache::Location;
pub use error::{Error, ErrorKind, Result};
pub use gc::{
    verdict_name, IndexBatch, PrunePlan, PruneReport, SessionId, Survey, SurveyOptions,
    MARKER_RENEWAL, MIN_GRACE,
};
pub use host::{Host, SystemHost};
pub use keys::{KeyFiles, NewKey};
pub use locate::BlobsToLocate;
pub use location::{Reach, RepoLocation};
pub use store::BlobStore;

use cache::IndexCache;
use cairn_backend::{Backend, FileType};
use cairn_crypto::{file_id, MasterKeys};
use cairn_format::ad;
use cairn_format::config::{self, Config};
use cairn_format::index::{IndexEntry, IndexFile, IndexPack};
use cairn_format::key::KdfParams;
use cairn_format::key::{KeyHeader, MAX_KEY_FILE_LEN};
use cairn_format::pack::{PackHeader, TRAILER_LEN};
use cairn_format::snapshot::Snapshot;
use cairn_format::tree::{Tree, MAX_TREE_LEN};
use cairn_format::{
    BlobId, BlobType, Id, IndexId, KeyId, PackId, SnapshotId, TreeId, FORMAT_VERSION,
};
use pack::Packers;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// What end-to-end tests set for the real binary (see `cairn_backend::test_hooks`); inert
/// outside test builds.
pub mod test_hooks {
    /// How far a test moves this process's clocks forward, as given (a duration like `25h`).
    pub fn clock_shift() -> Option<String> {
        cairn_backend::test_hooks::clock_shift()
    }
}

/// Argon2id defaults for new key files: RFC 9106's second recommended option (section 4), for
/// where memory is limited: 64 MiB, 3 passes, 4 lanes. Memory-hardness, not time, is what slows
/// down GPU guessing; 3 passes cost every command about 0.13 s on 2 cores instead of the 0.35 s
/// that 8 did. The lanes leave a guess's work unchanged but let a reader spread it over up to
/// four cores. Existing key files keep the parameters they were made with.
pub const DEFAULT_KDF: KdfParams = KdfParams {
    memory_kib: 64 * 1024,
    iterations: 3,
    parallelism: 4,
};

/// The default of `OpenOptions::max_kdf_mib`: four times what 64 MiB × 8 passes cost (the
/// default before RFC 9106's), so key files made with those or raised parameters still open,
/// while a forged key file costs at most a few seconds and 2 GiB.
pub const DEFAULT_MAX_KDF_MIB: u64 = 2048;

/// Parameters chosen at `init`.
#[derive(Clone, Debug)]
pub struct InitOptions {
    pub kdf: KdfParams,
    pub chunk_min: u32,
    pub chunk_avg: u32,
    pub chunk_max: u32,
    pub pack_size: u32,
    pub zstd_level: i32,
    pub host: Vec<u8>,
    pub user: Vec<u8>,
    pub now_ns: i64,
}

impl Default for InitOptions {
    /// Chunk sizes 512 KiB / 1 MiB / 8 MiB, as restic and rustic use: repo-format.md
    /// ("Chunking") gives the measurements behind them. Packs of 16 MiB keep a 1 TiB repository
    /// at about 65,000 pack files while a restore still reads few bytes it does not need.
    fn default() -> InitOptions {
        InitOptions {
            kdf: DEFAULT_KDF,
            chunk_min: 512 << 10,
            chunk_avg: 1 << 20,
            chunk_max: 8 << 20,
            pack_size: 16 << 20,
            zstd_level: 3,
            host: Vec::new(),
            user: Vec::new(),
            now_ns: 0,
        }
    }
}

/// Creates a new repository: its layout, `config` and a first key file, and returns the config
/// written (its id and chunking, for the caller to report). Refuses, touching nothing, when a
/// config already exists.
pub fn init(backend: &dyn Backend, password: &[u8], opts: &InitOptions) -> Result<Config> {
    if !backend.list(FileType::Config)?.is_empty() {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!("a repository already exists at {}", backend.location()),
        ));
    }
    let keys = MasterKeys::random();
    let config = Config {
        repo_id: Id(cairn_crypto::random::bytes()),
        chunk_min: opts.chunk_min,
        chunk_avg: opts.chunk_avg,
        chunk_max: opts.chunk_max,
        pack_size: opts.pack_size,
        zstd_level: opts.zstd_level,
    };
    config
        .validate()
        .map_err(|e| Error::new(ErrorKind::InvalidInput, format!("config: {e}")))?;
    let key = cairn_crypto::create_key_file(
        &keys,
        password,
        opts.kdf,
        opts.now_ns,
        &opts.host,
        &opts.user,
    )?;
    backend.create(FileType::Key, &file_id(&key).to_hex(), &key)?;
    // The config goes last: until it exists, the directory is not a repository.
    let mut file = config::encode_preamble(FORMAT_VERSION);
    file.extend(cairn_crypto::seal(&keys.meta, ad::CONFIG, &config.encode()));
    backend.create(FileType::Config, "config", &file)?;
    Ok(config)
}

/// How to open a repository.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    /// Directory of the local cache; `None` keeps the index cache in a temporary file.
    pub cache_dir: Option<PathBuf>,
    /// Count what a backup would add without writing anything.
    pub dry_run: bool,
    /// This process will store blobs and a snapshot: it leaves a backup marker in `locks/`
    /// for as long as it runs (repo-format.md, "Garbage collection").
    pub writer: bool,
    /// The machine: clocks, process identity.
    pub host: Arc<dyn Host>,
    /// Write packs on the calling thread rather than a thread of their own (for the
    /// deterministic simulation, whose processes each run on one thread).
    pub inline_writes: bool,
    /// The most a key file may ask of key derivation, in MiB of argon2id memory times passes:
    /// key files asking for more are skipped unread (repo-format.md, "Limits").
    pub max_kdf_mib: u64,
}

impl Default for OpenOptions {
    fn default() -> OpenOptions {
        OpenOptions {
            cache_dir: None,
            dry_run: false,
            writer: false,
            host: Arc::new(SystemHost::default()),
            inline_writes: false,
            max_kdf_mib: DEFAULT_MAX_KDF_MIB,
        }
    }
}

/// The snapshots of a repository, with what could not be read returned beside them, so that no
/// caller can overlook it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshots {
    /// Oldest first.
    pub list: Vec<(SnapshotId, Snapshot)>,
    /// Snapshot files that failed authentication or decoding, and why.
    pub damaged: Vec<(SnapshotId, String)>,
}

/// What bringing the index cache up to date found: the index files that could not be read, and
/// why. Their packs then look unindexed, which `check` reports and `repair index` mends.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexSync {
    pub damaged: Vec<(IndexId, String)>,
}

/// Totals of what this process stored.
#[derive(Clone, Copy, Debug, Default)]
pub struct WriteStats {
    pub blobs: u64,
    pub stored_bytes: u64,
    pub raw_bytes: u64,
}

pub struct Repository {
    backend: Arc<dyn Backend>,
    host: Arc<dyn Host>,
    keys: MasterKeys,
    /// The key file that opened the repository: the one `remove_key` refuses to remove.
    key_id: KeyId,
    config: Config,
    cache: IndexCache,
    dry_run: bool,
    /// Key files passed over before one opened, and why: over the key-derivation limit, or
    /// damaged.
    skipped_keys: Vec<String>,
    /// Packs condemned by an index file: not part of the index, awaiting deletion by prune.
    condemned: Mutex<HashSet<PackId>>,
    /// This process's session (repo-format.md, "Garbage collection"), while it may write: its
    /// markers in `locks/` are renewed as it works and removed when it ends.
    session: Mutex<Option<gc::Session>>,
    /// Opened as a writer: `begin_session` may start another session after a commit.
    writes: bool,
    /// Blobs stored by this process, with their location once their pack is written. Covers the
    /// gap until their index file is merged into the cache.
    own_blobs: Mutex<HashMap<BlobId, Option<Location>>>,
    packers: Packers,
    writer: writer::PackWriter,
    /// Packs written but not yet named by an index file.
    unindexed: Mutex<IndexFile>,
    blobs_added: AtomicU64,
    bytes_added: AtomicU64,
    raw_added: AtomicU64,
}

/// Packs uploaded at once to a remote repository (still within `--connections`): enough that
/// one upload's round trips overlap another's transfer, few enough that the packs held for
/// them stay a few times the pack size.
const REMOTE_PACK_WRITERS: usize = 3;

/// Packs per index file: a killed backup loses the index entries of at most this many packs,
/// which the next backup then stores again.
const PACKS_PER_INDEX: usize = 8;

/// Blobs after which an index file is written even with fewer packs, and which prune and
/// repair put in one file at most (beyond its first pack): about 3 MiB of entries, so that a
/// command reading the index holds little of it at a time even when blobs are tiny.
pub const BLOBS_PER_INDEX: usize = 65_536;

/// Reads `config` and checks its format version: everything that can be checked before asking
/// for a password. Returns the config file's bytes.
pub fn probe(backend: &dyn Backend) -> Result<Vec<u8>> {
    let location = backend.location();
    let file = match backend.read_at_most(FileType::Config, "config", config::MAX_CONFIG_LEN) {
        Ok(f) => f,
        Err(e) if e.kind == cairn_backend::BackendErrorKind::NotFound => {
            return Err(Error::new(
                ErrorKind::NoRepository,
                format!("no repository at {location}: it has no config"),
            ));
        }
        // The first request of every command: its failure (refused credentials, no route)
        // names the repository.
        Err(e) => {
            let mut e: Error = e.into();
            e.message = format!("{location}: {}", e.message);
            return Err(e);
        }
    };
    let (version, _) = config::decode_preamble(&file)
        .map_err(|e| Error::corrupt(format!("config of {location}: {e}")))?;
    if version != FORMAT_VERSION {
        return Err(Error::new(
            ErrorKind::UnsupportedVersion,
            format!("repository at {location} has format version {version}; this cairn reads only version {FORMAT_VERSION}"),
        ));
    }
    Ok(file)
}

impl Repository {
    /// Opens the repository with `password`, trying each key file.
    pub fn open(
        backend: Box<dyn Backend>,
        password: &[u8],
        opts: &OpenOptions,
    ) -> Result<Repository> {
        let config_file = probe(backend.as_ref())?;
        let (_, sealed_config) = config::decode_preamble(&config_file).expect("probe decoded it");
        let hint = opts
            .cache_dir
            .as_ref()
            .map(|dir| key_hint_path(dir, &config_file));
        let (keys, key_id, skipped_keys) = unlock(
            backend.as_ref(),
            password,
            hint.as_deref(),
            opts.max_kdf_mib,
        )?;
        let plain = cairn_crypto::open(&keys.meta, ad::CONFIG, sealed_config, "config")?;
        let config = Config::decode(&plain).map_err(|e| Error::corrupt(format!("config: {e}")))?;
        let cache_path = opts
            .cache_dir
            .as_ref()
            .map(|d| d.join(config.repo_id.to_hex()).join("index.redb"));
        let cache = IndexCache::open(cache_path.as_deref())?;
        // The session's marker comes before the index is read: a prune that lists markers
        // after condemning packs then sees it, or this process sees the condemnation.
        let session = if opts.writer && !opts.dry_run {
            Some(gc::Session::start(backend.as_ref(), opts.host.as_ref())?)
        } else {
            None
        };
        let repo = Repository {
            packers: Packers::new(config.pack_size as usize),
            writer: writer::PackWriter::new(
                opts.inline_writes,
                if backend.remote() {
                    REMOTE_PACK_WRITERS
                } else {
                    1
                },
            ),
            backend: Arc::from(backend),
            host: Arc::clone(&opts.host),
            keys,
            key_id,
            config,
            cache,
            dry_run: opts.dry_run,
            skipped_keys,
            condemned: Mutex::default(),
            session: Mutex::new(session),
            writes: opts.writer && !opts.dry_run,
            own_blobs: Mutex::new(HashMap::new()),
            unindexed: Mutex::new(IndexFile::default()),
            blobs_added: AtomicU64::new(0),
            bytes_added: AtomicU64::new(0),
            raw_added: AtomicU64::new(0),
        };
        repo.sync_index()?;
        Ok(repo)
    }

    pub fn host(&self) -> &dyn Host {
        self.host.as_ref()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn location(&self) -> String {
        self.backend.location()
    }

    /// A local directory for scratch files too large to keep in memory: the cache's.
    pub fn scratch_dir(&self) -> &std::path::Path {
        self.cache.dir()
    }

    /// The chunker's gear table, derived from the chunker key.
    pub fn gear_table(&self) -> [u64; 256] {
        self.keys.gear_table()
    }

    /// The id a blob with this plaintext has.
    pub fn blob_id(&self, plaintext: &[u8]) -> Id {
        self.keys.blob_id(plaintext)
    }

    /// Brings the cache up to date with the repository's index files, and says which of them
    /// could not be read.
    pub fn sync_index(&self) -> Result<IndexSync> {
        // A file removed between the listing and its reading was replaced by a prune, with a
        // file this listing may not show: list again until every listed file was read.
        loop {
            let (gone, damaged) = self.sync_listed()?;
            if !gone {
                return Ok(IndexSync { damaged });
            }
        }
    }

    /// Merges the index files listed now; returns whether one was gone when read, and the
    /// damaged ones.
    fn sync_listed(&self) -> Result<(bool, Vec<(IndexId, String)>)> {
        let listed: BTreeSet<IndexId> = self.index_ids()?.into_iter().collect();
        let mut merged: BTreeSet<IndexId> = self.cache.merged_index_files()?.into_iter().collect();
        let mut condemned = self.cache.condemned()?;
        if !merged.is_subset(&listed) {
            // An index file went away (prune replaced it): its entries may be stale.
            self.cache.clear()?;
            merged.clear();
            condemned.clear();
        }
        let known = condemned.clone();
        let mut damaged = Vec::new();
        // Packs merged by this call: if one of them turns out condemned, the cache is stale.
        let mut merged_packs: HashSet<PackId> = HashSet::new();
        let mut gone = false;
        for id in listed.difference(&merged) {
            match self.read_index(*id) {
                Ok(index) => {
                    condemned.extend(index.condemned.iter().copied());
                    self.cache.merge(*id, &index, &condemned)?;
                    merged_packs.extend(
                        index
                            .packs
                            .iter()
                            .map(|p| p.id)
                            .filter(|p| !condemned.contains(p)),
                    );
                }
                // A damaged index file must not make the rest of the repository unreadable:
                // its packs then look unindexed, which `check` reports and `repair index` mends.
                Err(e) if e.kind == ErrorKind::Corrupt => damaged.push((*id, e.message)),
                // Removed since the listing by a prune, which wrote its replacement first.
                Err(e) if e.kind == ErrorKind::NotFound => gone = true,
                Err(e) => return Err(e),
            }
        }
        let learned: Vec<PackId> = condemned.difference(&known).copied().collect();
        let stale = !learned.is_empty()
            && (!merged.is_empty() || learned.iter().any(|p| merged_packs.contains(p)));
        if stale {
            // Entries of newly condemned packs may already be merged, and the cache keeps one
            // location per blob: only a rebuild that skips them all is exact.
            self.cache.clear()?;
            for id in &listed {
                match self.read_index(*id) {
                    Ok(index) => self.cache.merge(*id, &index, &condemned)?,
                    // Damaged: already reported.
                    Err(e) if e.kind == ErrorKind::Corrupt => {}
                    Err(e) if e.kind == ErrorKind::NotFound => gone = true,
                    Err(e) => return Err(e),
                }
            }
        }
        *self.condemned.lock().unwrap() = condemned;
        Ok((gone, damaged))
    }

    /// Key files passed over, and why, before the one that opened the repository.
    pub fn skipped_key_files(&self) -> &[String] {
        &self.skipped_keys
    }

    /// Packs condemned by index files: not part of the index, awaiting deletion.
    pub fn condemned_packs(&self) -> HashSet<PackId> {
        self.condemned.lock().unwrap().clone()
    }

    /// The index files in the repository.
    pub fn index_ids(&self) -> Result<Vec<IndexId>> {
        Ok(self
            .backend
            .list(FileType::Index)?
            .iter()
            .filter_map(|e| IndexId::from_name(&e.name))
            .collect())
    }

    /// Every pack file and its length.
    pub fn list_packs(&self) -> Result<Vec<(PackId, u64)>> {
        Ok(self
            .backend
            .list(FileType::Pack)?
            .iter()
            .filter_map(|e| Some((PackId::from_name(&e.name)?, e.size)))
            .collect())
    }

    /// Every pack file and its length, listed once the store's listing shows what was created
    /// or removed before this call (`Guarantees::listing_lag`, repo-format.md 16.4): every pack
    /// an index file read before names, and none a prune deleted before.
    pub fn list_packs_settled(&self) -> Result<Vec<(PackId, u64)>> {
        self.host.sleep(self.backend.listing_lag());
        self.list_packs()
    }

    /// Reads a whole pack without checking it against its name: for salvaging what is left of
    /// a damaged one.
    pub fn read_pack_unverified(&self, pack: &PackId) -> Result<Vec<u8>> {
        Ok(self
            .backend
            .read_at_most(FileType::Pack, &pack.to_hex(), self.max_pack_len())?)
    }

    /// Every blob the index (or a condemnation) places in `pack`. Scans the whole index: for
    /// damaged packs only.
    pub fn blobs_in_pack(&self, pack: &PackId) -> Result<Vec<IndexEntry>> {
        let mut out = Vec::new();
        self.cache.for_each(|blob, loc| {
            if loc.pack == *pack {
                out.push(IndexEntry {
                    blob,
                    offset: loc.offset,
                    stored_len: loc.stored_len,
                    raw_len: loc.raw_len,
                });
            }
        })?;
        Ok(out)
    }

    /// Records a damaged pack (repo-format.md, "Check and repair"): a condemnation file that
    /// carries the records of its blobs that still verify. Backups then store the content again
    /// rather than reuse any of it, the intact blobs stay readable, and the next prune copies
    /// those that snapshots use and deletes the pack, whatever its unused share.
    /// Packs condemned already are left as they are. Returns the files written and the packs
    /// each condemns.
    pub fn condemn_damaged(
        &self,
        mut intact: Vec<IndexPack>,
    ) -> Result<Vec<(IndexId, Vec<PackId>)>> {
        let condemned = self.condemned.lock().unwrap().clone();
        intact.retain(|p| !condemned.contains(&p.id));
        if intact.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<PackId> = intact.iter().map(|p| p.id).collect();
        let mut batch = gc::IndexBatch::condemning(&ids);
        for pack in intact {
            batch.push(self, pack)?;
        }
        let written = batch.finish(self)?;
        // Read back as any index file is: a new condemnation rebuilds the cache (once for all
        // of them), so that the packs' blobs leave the index here and for every later process
        // sharing the cache.
        self.sync_index()?;
        Ok(written)
    }

    /// Reads a whole pack and checks it against its name; returns its bytes and header.
    pub fn read_pack(&self, pack: &PackId) -> Result<(Vec<u8>, PackHeader)> {
        let bytes = self.read_file(FileType::Pack, &pack.0)?;
        let header = self.pack_header_in(pack, &bytes)?;
        Ok((bytes, header))
    }

    /// The header of a pack whose bytes were read whole: no second read, which could find the
    /// pack deleted in between.
    pub fn pack_header_in(&self, pack: &PackId, bytes: &[u8]) -> Result<PackHeader> {
        self.parse_pack_header(pack, bytes.len() as u64, |offset, len| {
            Ok(bytes[offset as usize..(offset + len) as usize].to_vec())
        })
    }

    pub fn read_index(&self, id: IndexId) -> Result<IndexFile> {
        let bytes = self.read_file(FileType::Index, &id.0)?;
        let plain = cairn_crypto::open(
            &self.keys.meta,
            ad::INDEX,
            &bytes,
            &format!("index file {}", id.short()),
        )?;
        let index = IndexFile::decode(&plain)
            .map_err(|e| Error::corrupt(format!("index file {}: {e}", id.short())))?;
        self.check_index_limits(&index)
            .map_err(|e| Error::corrupt(format!("index file {}: {e}", id.short())))?;
        Ok(index)
    }

    /// Refuses an index file whose packs or blobs are longer than their types allow
    /// (repo-format.md, "Limits"): every reader of blobs (restore reads spans of packs) then
    /// trusts lengths from the index without allocating what a forged entry asks.
    fn check_index_limits(&self, index: &IndexFile) -> std::result::Result<(), String> {
        for pack in &index.packs {
            if pack.size > self.max_pack_len() {
                return Err(format!(
                    "pack {} is given {} bytes, more than the {} a pack may have",
                    pack.id.short(),
                    pack.size,
                    self.max_pack_len()
                ));
            }
            for e in &pack.blobs {
                let max = self.max_blob_len(e.blob.kind);
                if e.raw_len as usize > max
                    || e.stored_len as usize > max + cairn_crypto::BLOB_OVERHEAD
                {
                    return Err(format!(
                        "{} is given {} bytes ({} stored), more than the {max} a {} blob may have",
                        e.blob,
                        e.raw_len,
                        e.stored_len,
                        kind_noun(e.blob.kind)
                    ));
                }
            }
        }
        Ok(())
    }

    /// The longest a blob of `kind` may be, plaintext (repo-format.md, "Limits"): a data blob
    /// is one chunk, a tree at most `MAX_TREE_LEN`.
    fn max_blob_len(&self, kind: BlobType) -> usize {
        match kind {
            BlobType::Data => self.config.chunk_max as usize,
            BlobType::Tree => MAX_TREE_LEN,
        }
    }

    /// The longest pack file this repository's packer makes: it closes a pack once it reaches
    /// `pack_size`, so the last blob (at most the largest blob, sealed) may pass it, and the
    /// header follows.
    fn max_pack_len(&self) -> u64 {
        let blob = self
            .max_blob_len(BlobType::Data)
            .max(self.max_blob_len(BlobType::Tree));
        u64::from(self.config.pack_size)
            + (blob + cairn_crypto::BLOB_OVERHEAD) as u64
            + cairn_format::pack::MAX_SEALED_HEADER_LEN
            + 4
    }

    /// The longest file of type `t` a reader reads (repo-format.md, "Limits").
    fn max_file_len(&self, t: FileType) -> u64 {
        match t {
            FileType::Config => config::MAX_CONFIG_LEN,
            FileType::Key => MAX_KEY_FILE_LEN,
            FileType::Pack => self.max_pack_len(),
            FileType::Index => cairn_format::index::MAX_INDEX_LEN,
            FileType::Snapshot => cairn_format::snapshot::MAX_SNAPSHOT_LEN,
            FileType::Lock => cairn_format::marker::MAX_LOCK_LEN,
        }
    }

    /// Reads a content-addressed file, at most as long as its type allows, and checks it
    /// against its name.
    fn read_file(&self, t: FileType, id: &Id) -> Result<Vec<u8>> {
        let bytes = self
            .backend
            .read_at_most(t, &id.to_hex(), self.max_file_len(t))?;
        if file_id(&bytes) != *id {
            return Err(Error::corrupt(format!(
                "{} {} does not match its name",
                t.noun(),
                id.short()
            )));
        }
        Ok(bytes)
    }

    /// Where a blob can be read, if the repository (or this process) has it: in the index, or
    /// else in a condemned pack that prune has not deleted yet (a snapshot written while a prune
    /// ran may reach such blobs until the next prune copies them out).
    pub fn lookup(&self, blob: &BlobId) -> Result<Option<Location>> {
        Ok(self
            .lookup_many(std::slice::from_ref(blob))?
            .pop()
            .flatten())
    }

    /// `lookup` of many blobs at once, for readers of large trees.
    pub fn lookup_many(&self, blobs: &[BlobId]) -> Result<Vec<Option<Location>>> {
        self.lookup_with(blobs, |b| self.cache.get_many(b))
    }

    /// `lookup_many` of blobs in ascending key order (`BlobId::to_bytes`), by one walk in key
    /// order over the index: far cheaper where they are dense in it.
    pub fn lookup_sorted(&self, blobs: &[BlobId]) -> Result<Vec<Option<Location>>> {
        self.lookup_with(blobs, |b| self.cache.get_sorted(b))
    }

    /// How many blobs the index holds, condemned packs' apart.
    pub fn indexed_blob_count(&self) -> Result<u64> {
        self.cache.blob_count()
    }

    /// Asks `live` where the index's live packs place `blobs`, then completes its answer with
    /// this process's own blobs and the condemned packs.
    fn lookup_with(
        &self,
        blobs: &[BlobId],
        live: impl FnOnce(&[BlobId]) -> Result<Vec<Option<Location>>>,
    ) -> Result<Vec<Option<Location>>> {
        self.renew_marker()?;
        let mut found = live(blobs)?;
        {
            let own = self.own_blobs.lock().unwrap();
            for (blob, loc) in blobs.iter().zip(found.iter_mut()) {
                if loc.is_none() {
                    *loc = own.get(blob).copied().flatten();
                }
            }
        }
        let missing: Vec<BlobId> = blobs
            .iter()
            .zip(&found)
            .filter(|(_, loc)| loc.is_none())
            .map(|(blob, _)| *blob)
            .collect();
        if !missing.is_empty() {
            let mut condemned = self.cache.get_many_condemned(&missing)?.into_iter();
            for loc in found.iter_mut().filter(|loc| loc.is_none()) {
                *loc = condemned.next().flatten();
            }
        }
        Ok(found)
    }

    /// Where the index places a blob, in a pack no condemnation names.
    fn indexed(&self, blob: &BlobId) -> Result<Option<Location>> {
        self.renew_marker()?;
        self.cache.get(blob)
    }

    pub fn has_blob(&self, blob: &BlobId) -> Result<bool> {
        Ok(self.own_blobs.lock().unwrap().contains_key(blob) || self.indexed(blob)?.is_some())
    }

    /// Stores a blob unless the repository or this process already has it; returns whether it
    /// was new. Compression and encryption run on the calling thread, so callers on several
    /// threads use several cores.
    pub fn save_blob(&self, kind: BlobType, id: Id, plaintext: &[u8]) -> Result<bool> {
        let blob = BlobId { kind, id };
        if self.indexed(&blob)?.is_some() {
            return Ok(false);
        }
        {
            let mut own = self.own_blobs.lock().unwrap();
            if own.contains_key(&blob) {
                return Ok(false);
            }
            own.insert(blob, None);
        }
        self.store(blob, plaintext)?;
        Ok(true)
    }

    /// Compresses, seals and packs a blob the caller has claimed in the session.
    fn store(&self, blob: BlobId, plaintext: &[u8]) -> Result<()> {
        let max = self.max_blob_len(blob.kind);
        let Some(raw_len) = u32::try_from(plaintext.len())
            .ok()
            .filter(|n| *n as usize <= max)
        else {
            // Released, so that a later save of the same id is not taken for a duplicate.
            self.own_blobs.lock().unwrap().remove(&blob);
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{blob} is {} bytes, more than the {max} a {} blob may have",
                    plaintext.len(),
                    kind_noun(blob.kind)
                ),
            ));
        };
        // A dry run encodes too: how much a backup would store is what it is asked for.
        let stored =
            cairn_crypto::encode_blob(&self.keys, &blob, plaintext, self.config.zstd_level);
        // The next backup walks this tree as its parent: a remote one need not send it back.
        if blob.kind == BlobType::Tree && self.backend.remote() && !self.dry_run {
            self.cache.keep_copy(cache::Copy::Tree, &blob.id, &stored)?;
        }
        self.pack_stored(blob, raw_len, stored)
    }

    /// Packs a sealed blob the caller has claimed in the session.
    fn pack_stored(&self, blob: BlobId, raw_len: u32, stored: Vec<u8>) -> Result<()> {
        self.raw_added
            .fetch_add(u64::from(raw_len), Ordering::Relaxed);
        self.blobs_added.fetch_add(1, Ordering::Relaxed);
        self.bytes_added
            .fetch_add(stored.len() as u64, Ordering::Relaxed);
        if self.dry_run {
            return Ok(());
        }
        if let Some(full) = self.packers.add(blob.kind, blob, raw_len, stored) {
            self.write_pack(full)?;
        }
        Ok(())
    }

    pub fn save_tree(&self, tree: &Tree) -> Result<(TreeId, bool)> {
        let bytes = tree.encode();
        if bytes.len() > MAX_TREE_LEN {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "a directory of {} entries makes a tree of {} bytes, more than the {} MiB a tree may have",
                    tree.nodes.len(),
                    bytes.len(),
                    MAX_TREE_LEN >> 20
                ),
            ));
        }
        let id = self.blob_id(&bytes);
        let new = self.save_blob(BlobType::Tree, id, &bytes)?;
        Ok((TreeId(id), new))
    }

    pub fn load_blob(&self, blob: &BlobId) -> Result<Vec<u8>> {
        let Some(loc) = self.lookup(blob)? else {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("{blob} is not in the index"),
            ));
        };
        // The index is the store's word: lengths no blob of this type can have are refused
        // before they are allocated.
        let max = self.max_blob_len(blob.kind);
        if loc.raw_len as usize > max || loc.stored_len as usize > max + cairn_crypto::BLOB_OVERHEAD
        {
            return Err(Error::corrupt(format!(
                "{blob}: the index gives it {} bytes ({} stored), more than the {max} a {} blob may have",
                loc.raw_len,
                loc.stored_len,
                kind_noun(blob.kind)
            )));
        }
        let keep = blob.kind == BlobType::Tree && self.backend.remote();
        if keep {
            if let Some(stored) = self.cache.copy_of(cache::Copy::Tree, &blob.id)? {
                if let Ok(plain) = self.open_blob(blob, &stored, loc.raw_len) {
                    return Ok(plain);
                }
            }
        }
        let stored =
            self.read_pack_range(&loc.pack, u64::from(loc.offset), u64::from(loc.stored_len))?;
        let plain = self.open_blob(blob, &stored, loc.raw_len)?;
        if keep {
            self.cache.keep_copy(cache::Copy::Tree, &blob.id, &stored)?;
        }
        Ok(plain)
    }

    pub fn load_tree(&self, id: TreeId) -> Result<Tree> {
        let bytes = self.load_blob(&id.into())?;
        Tree::decode(&bytes).map_err(|e| Error::corrupt(format!("tree {}: {e}", id.short())))
    }

    pub fn read_pack_range(&self, pack: &PackId, offset: u64, len: u64) -> Result<Vec<u8>> {
        Ok(self
            .backend
            .read_range(FileType::Pack, &pack.to_hex(), offset, len)?)
    }

    /// Reads a pack's own header, which lists its blobs: what `check` compares with the index
    /// and what rebuilding a lost index starts from. `size` is the pack's length.
    pub fn read_pack_header(&self, pack: &PackId, size: u64) -> Result<PackHeader> {
        self.parse_pack_header(pack, size, |offset, len| {
            self.read_pack_range(pack, offset, len)
        })
    }

    fn parse_pack_header(
        &self,
        pack: &PackId,
        size: u64,
        read: impl Fn(u64, u64) -> Result<Vec<u8>>,
    ) -> Result<PackHeader> {
        let what = format!("pack {}", pack.short());
        if size > self.max_pack_len() {
            return Err(Error::corrupt(format!(
                "{what} is {size} bytes, more than the {} a pack of this repository may have",
                self.max_pack_len()
            )));
        }
        if size < TRAILER_LEN {
            return Err(Error::corrupt(format!("{what} is truncated: {size} bytes")));
        }
        let trailer = read(size - TRAILER_LEN, TRAILER_LEN)?;
        let header_len =
            cairn_format::pack::trailer_header_len(size, trailer[..4].try_into().unwrap())
                .map_err(|e| Error::corrupt(format!("{what}: {e}")))?;
        let sealed = read(size - TRAILER_LEN - header_len, header_len)?;
        let plain = cairn_crypto::open(
            &self.keys.meta,
            ad::PACK_HEADER,
            &sealed,
            &format!("header of {what}"),
        )?;
        let header = PackHeader::decode(&plain)
            .map_err(|e| Error::corrupt(format!("header of {what}: {e}")))?;
        let (_, blob_bytes) = header.offsets();
        if blob_bytes + header_len + TRAILER_LEN != size {
            return Err(Error::corrupt(format!(
                "{what}: its header lists {blob_bytes} bytes of blobs, but the pack has {}",
                size - header_len - TRAILER_LEN
            )));
        }
        Ok(header)
    }

    /// The stored bytes of entry `e` among `bytes`, a whole pack read unverified, once they open
    /// and verify: what salvaging or copying out of a damaged pack reads blob by blob.
    pub fn open_entry<'a>(
        &self,
        pack: &PackId,
        bytes: &'a [u8],
        e: &IndexEntry,
    ) -> Result<&'a [u8]> {
        let start = e.offset as usize;
        let stored = bytes
            .get(start..start + e.stored_len as usize)
            .ok_or_else(|| {
                Error::corrupt(format!(
                    "{} lies beyond the end of pack {}",
                    e.blob,
                    pack.short()
                ))
            })?;
        self.open_blob(&e.blob, stored, e.raw_len)?;
        Ok(stored)
    }

    /// Decrypts, decompresses and verifies a stored blob read from a pack.
    pub fn open_blob(&self, blob: &BlobId, stored: &[u8], raw_len: u32) -> Result<Vec<u8>> {
        Ok(cairn_crypto::decode_blob(
            &self.keys, blob, stored, raw_len,
        )?)
    }

    fn write_pack(&self, pack: pack::FullPack) -> Result<()> {
        // An earlier pack's failure stops the command before it writes more.
        self.settle_packs()?;
        let (parts, entry) = pack.assemble(&self.keys.meta);
        self.writer.send(&self.backend, entry, parts);
        Ok(())
    }

    /// Takes in the packs the writer has made durable: their blobs become readable, and every
    /// `PACKS_PER_INDEX` of them (or fewer holding `BLOBS_PER_INDEX` blobs) are named by an
    /// index file.
    fn settle_packs(&self) -> Result<()> {
        for written in self.writer.take_done() {
            let entry = written?;
            self.renew_marker()?;
            {
                let mut own = self.own_blobs.lock().unwrap();
                for b in &entry.blobs {
                    own.insert(b.blob, Some(Location::of(entry.id, b)));
                }
            }
            let batch = {
                let mut unindexed = self.unindexed.lock().unwrap();
                unindexed.packs.push(entry);
                let blobs: usize = unindexed.packs.iter().map(|p| p.blobs.len()).sum();
                if unindexed.packs.len() < PACKS_PER_INDEX && blobs < BLOBS_PER_INDEX {
                    continue;
                }
                std::mem::take(&mut *unindexed)
            };
            self.write_index_merged(&batch)?;
        }
        Ok(())
    }

    /// Stores an index file (repo-format.md, "Index files"). The cache learns of it at the next
    /// sync, in this process or the next: what prune and repair want, since they replace the
    /// index wholesale and the cache is rebuilt once anyway.
    pub fn write_index(&self, index: &IndexFile) -> Result<IndexId> {
        let sealed = cairn_crypto::seal(&self.keys.meta, ad::INDEX, &index.encode());
        let id = IndexId(file_id(&sealed));
        self.backend
            .create(FileType::Index, &id.to_hex(), &sealed)?;
        Ok(id)
    }

    /// Stores an index file of this process's packs and merges it into the cache.
    fn write_index_merged(&self, index: &IndexFile) -> Result<IndexId> {
        let id = self.write_index(index)?;
        let mut condemned = self.condemned.lock().unwrap();
        condemned.extend(index.condemned.iter().copied());
        self.cache.merge(id, index, &condemned)?;
        Ok(id)
    }

    /// Writes every open pack, then an index file for all packs not yet indexed. After it
    /// returns, every blob saved so far is durable and indexed.
    pub fn flush(&self) -> Result<()> {
        if self.dry_run {
            return Ok(());
        }
        self.writer.wait_idle();
        for full in self.packers.take_all() {
            self.write_pack(full)?;
        }
        self.writer.wait_idle();
        self.settle_packs()?;
        let batch = std::mem::take(&mut *self.unindexed.lock().unwrap());
        if !batch.packs.is_empty() {
            self.write_index_merged(&batch)?;
        }
        Ok(())
    }

    pub fn write_stats(&self) -> WriteStats {
        WriteStats {
            blobs: self.blobs_added.load(Ordering::Relaxed),
            stored_bytes: self.bytes_added.load(Ordering::Relaxed),
            raw_bytes: self.raw_added.load(Ordering::Relaxed),
        }
    }

    pub fn remove_pack(&self, pack: &PackId) -> Result<()> {
        self.remove(FileType::Pack, &pack.0)
    }

    pub fn remove_index(&self, id: &IndexId) -> Result<()> {
        self.remove(FileType::Index, &id.0)
    }

    fn remove_snapshot(&self, id: &SnapshotId) -> Result<()> {
        self.remove(FileType::Snapshot, &id.0)
    }

    /// Removes a file; one already gone (a concurrent or interrupted prune) is not an error.
    fn remove(&self, t: FileType, id: &Id) -> Result<()> {
        match self.backend.remove(t, &id.to_hex()) {
            Err(e) if e.kind != cairn_backend::BackendErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    pub fn load_snapshot(&self, id: SnapshotId) -> Result<Snapshot> {
        let remote = self.backend.remote();
        if remote {
            if let Some(bytes) = self.cache.copy_of(cache::Copy::Snapshot, &id.0)? {
                if file_id(&bytes) == id.0 {
                    return self.open_snapshot(&id, &bytes);
                }
            }
        }
        let bytes = self.read_file(FileType::Snapshot, &id.0)?;
        let snapshot = self.open_snapshot(&id, &bytes)?;
        if remote {
            self.cache.keep_copy(cache::Copy::Snapshot, &id.0, &bytes)?;
        }
        Ok(snapshot)
    }

    /// Opens a snapshot file's bytes.
    fn open_snapshot(&self, id: &SnapshotId, bytes: &[u8]) -> Result<Snapshot> {
        let what = format!("snapshot {}", id.short());
        let plain = cairn_crypto::open(&self.keys.data, ad::SNAPSHOT, bytes, &what)?;
        Snapshot::decode(&plain).map_err(|e| Error::corrupt(format!("{what}: {e}")))
    }

    /// The snapshots, with the index brought up to date after listing them: a snapshot is
    /// created after the index files it needs, so every blob a listed snapshot reaches is then
    /// known, even when a backup finished after this process opened the repository.
    pub fn snapshot_ids_indexed(&self) -> Result<Vec<SnapshotId>> {
        let ids = self.snapshot_ids()?;
        // Its index files were created before a snapshot: a listing this long after shows them.
        self.host.sleep(self.backend.listing_lag());
        self.sync_index()?;
        Ok(ids)
    }

    pub fn snapshot_ids(&self) -> Result<Vec<SnapshotId>> {
        Ok(self
            .backend
            .list(FileType::Snapshot)?
            .iter()
            .filter_map(|e| SnapshotId::from_name(&e.name))
            .collect())
    }

    /// Problems with key files: a name that does not match the bytes, or a header that does not
    /// parse. Key files for other passwords cannot be opened here, so their seal is not checked.
    pub fn verify_key_files(&self) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        for entry in self.backend.list(FileType::Key)? {
            let Some(id) = key_id_of(&entry.name) else {
                // Debug formatting escapes whatever the name holds.
                problems.push(format!(
                    "keys/ holds {:?}, whose name is not a key id",
                    entry.name
                ));
                continue;
            };
            let short = id.short();
            let file = match self
                .backend
                .read_at_most(FileType::Key, &entry.name, MAX_KEY_FILE_LEN)
            {
                Ok(file) => file,
                Err(e) if e.kind == cairn_backend::BackendErrorKind::TooLarge => {
                    problems.push(e.message);
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if file_id(&file) != id.0 {
                problems.push(format!("key file {short} does not match its name"));
            } else if let Err(e) = KeyHeader::decode(&file) {
                problems.push(format!("key file {short}: {e}"));
            }
        }
        Ok(problems)
    }

    /// Removes what killed writers left of unfinished creates, older than `age` (prune passes
    /// its grace period, long past any live create).
    pub fn remove_stale_temporaries(&self, age: std::time::Duration) -> Result<(u64, u64)> {
        Ok(self.backend.remove_stale_temporaries(age)?)
    }

    /// Every snapshot, oldest first. A damaged snapshot file costs only that snapshot: it is
    /// left out of the list and named, with why, among the damaged.
    pub fn snapshots(&self) -> Result<Snapshots> {
        let mut out = Vec::new();
        let mut damaged = Vec::new();
        for id in self.snapshot_ids_indexed()? {
            match self.load_snapshot(id) {
                Ok(s) => out.push((id, s)),
                // Forgotten since the listing.
                Err(e) if e.kind == ErrorKind::NotFound => {}
                Err(e) if e.kind == ErrorKind::Corrupt => damaged.push((id, e.message)),
                Err(e) => return Err(e),
            }
        }
        out.sort_by_key(|(id, s)| (s.time, *id));
        Ok(Snapshots { list: out, damaged })
    }
}

fn kind_noun(kind: BlobType) -> &'static str {
    match kind {
        BlobType::Data => "data",
        BlobType::Tree => "tree",
    }
}

/// The id a listed key file's name gives, if it is one: 64 lowercase hex digits. Any other name
/// is no key file cairn wrote (a stray file, or a hostile store's), and is skipped unread.
fn key_id_of(name: &str) -> Option<KeyId> {
    KeyId::from_name(name)
}

/// Where the local hint naming the key file that last opened a repository is kept: beside the
/// caches, by the id of the repository's `config` (which `init` writes once), since the
/// repository's own id is sealed and unknown before a key opens (repo-format.md, "Local cache").
fn key_hint_path(cache_dir: &std::path::Path, config_file: &[u8]) -> PathBuf {
    cache_dir
        .join("key-hints")
        .join(file_id(config_file).to_hex())
}

fn read_key_hint(path: &std::path::Path) -> Option<KeyId> {
    // A hint is at most one id; anything longer is not one of ours.
    let text = std::fs::read(path).ok().filter(|t| t.len() <= 80)?;
    key_id_of(std::str::from_utf8(&text).ok()?.trim())
}

/// Best effort: without a hint the next open tries the key files in listing order.
fn write_key_hint(path: &std::path::Path, id: KeyId) {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let Some(dir) = path.parent() else { return };
    // Private like the rest of the cache, and written through a fresh name no one can have
    // planted a link at.
    let made = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir);
    let tmp = dir.join(format!(".tmp-{:016x}", rand::random::<u64>()));
    let written = made.and_then(|()| {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?
            .write_all(format!("{id}\n").as_bytes())
    });
    if written.is_ok() && std::fs::rename(&tmp, path).is_ok() {
        return;
    }
    let _ = std::fs::remove_file(&tmp);
}

/// Tries the password on the key files: first the one the hint names, then the others in
/// listing order. A key file is skipped unread when its name is no key id or its listed size is
/// over `MAX_KEY_FILE_LEN`, and skipped undecrypted when its key derivation would cost more
/// than `max_kdf_mib` (repo-format.md, "Limits"): a hostile store could otherwise make each
/// open derive for minutes or allocate gigabytes.
fn unlock(
    backend: &dyn Backend,
    password: &[u8],
    hint: Option<&std::path::Path>,
    max_kdf_mib: u64,
) -> Result<(MasterKeys, KeyId, Vec<String>)> {
    let mut keys: Vec<(KeyId, u64)> = backend
        .list(FileType::Key)?
        .iter()
        .filter_map(|e| Some((key_id_of(&e.name)?, e.size)))
        .collect();
    if keys.is_empty() {
        return Err(Error::corrupt(format!(
            "repository at {} has no key files",
            backend.location()
        )));
    }
    let hinted = hint.and_then(read_key_hint);
    // Stable: the others keep their listing order.
    keys.sort_by_key(|(id, _)| Some(*id) != hinted);
    let mut damaged = Vec::new();
    let mut over_limit = Vec::new();
    let mut tried = false;
    for (id, size) in keys {
        let short = id.short();
        if size > MAX_KEY_FILE_LEN {
            damaged.push(format!(
                "key file {short} is {size} bytes, more than the {MAX_KEY_FILE_LEN} a key file may have"
            ));
            continue;
        }
        let file = match backend.read_at_most(FileType::Key, &id.to_hex(), MAX_KEY_FILE_LEN) {
            Ok(file) => file,
            // Removed since the listing.
            Err(e) if e.kind == cairn_backend::BackendErrorKind::NotFound => continue,
            Err(e) if e.kind == cairn_backend::BackendErrorKind::TooLarge => {
                damaged.push(e.message);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if file_id(&file) != id.0 {
            damaged.push(format!("key file {short} does not match its name"));
            continue;
        }
        let kdf = match KeyHeader::decode(&file) {
            Ok((header, _, _)) => header.kdf,
            Err(e) => {
                damaged.push(format!("key file {short}: {e}"));
                continue;
            }
        };
        if kdf.cost_mib() > max_kdf_mib {
            over_limit.push(format!(
                "key file {short} asks for {} MiB × {} passes of argon2id ({} MiB·passes), over the limit of {max_kdf_mib}",
                kdf.memory_kib / 1024,
                kdf.iterations,
                kdf.cost_mib()
            ));
            continue;
        }
        match cairn_crypto::open_key_file(&file, password) {
            Ok(keys) => {
                if let Some(path) = hint.filter(|_| hinted != Some(id)) {
                    write_key_hint(path, id);
                }
                let skipped = over_limit
                    .into_iter()
                    .map(|why| format!("{why} (raise it with --max-kdf-mib or CAIRN_MAX_KDF_MIB)"))
                    .chain(damaged)
                    .collect();
                return Ok((keys, id, skipped));
            }
            Err(cairn_crypto::CryptoError::WrongPassword) => tried = true,
            Err(e) => damaged.push(format!("key file {short}: {e}")),
        }
    }
    let mut why = if tried {
        "wrong password: no key file of the repository opens with it".to_string()
    } else {
        "no key file of the repository could be tried".to_string()
    };
    if !over_limit.is_empty() {
        why += &format!(
            "; {} (if you made such a key, raise the limit with --max-kdf-mib or CAIRN_MAX_KDF_MIB)",
            over_limit.join("; ")
        );
    }
    if !damaged.is_empty() {
        why += &format!("; skipped as damaged: {}", damaged.join("; "));
    }
    // Only when damage kept every key file from being tried is it the answer; otherwise the
    // password is.
    let kind = if tried {
        ErrorKind::WrongPassword
    } else if over_limit.is_empty() {
        ErrorKind::Corrupt
    } else {
        ErrorKind::InvalidInput
    };
    Err(Error::new(kind, why))
}
