//! `check`: proves that every snapshot can be restored, or says exactly what cannot.
//!
//! Structure (always): every key file matches its name and has a valid header; every index
//! file opens; every pack an index names exists with the size
//! the index records; every snapshot opens; every tree reachable from a snapshot opens; every
//! blob a tree references is in the index. Data (on request, for all packs or a subset): every
//! pack's bytes match its name, its header matches its length, and every blob in it opens and
//! matches its id.
//!
//! What is found damaged becomes a damage report: which snapshots, and which paths in them,
//! cannot be restored. Memory stays bounded: index entries are looked up in the index cache,
//! and only the set of tree ids already checked is kept.

use crate::Result;
use cairn_format::tree::NodeKind;
use cairn_format::{BlobId, IndexId, PackId, SnapshotId, TreeId};
use cairn_repo::{ErrorKind, Repository};
use rayon::prelude::*;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Which packs `check` reads in full.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ReadData {
    None,
    All,
    /// Part `n` (1-based) of `m`: the packs whose id, read as a number, is `n - 1` modulo `m`.
    /// Running parts 1 to `m` on successive days reads every pack once.
    Part {
        n: u32,
        m: u32,
    },
    /// About this percentage of the packs, chosen at random.
    Percent(f64),
}

impl ReadData {
    /// Parses `3/7` or `10%`.
    pub fn parse_subset(s: &str) -> std::result::Result<ReadData, String> {
        let bad =
            || format!("invalid subset {s:?}: give n/m (like 3/7) or a percentage (like 10%)");
        if let Some(p) = s.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|_| bad())?;
            return if p > 0.0 && p <= 100.0 {
                Ok(ReadData::Percent(p))
            } else {
                Err(bad())
            };
        }
        let (n, m) = s.split_once('/').ok_or_else(bad)?;
        let (n, m): (u32, u32) = (
            n.trim().parse().map_err(|_| bad())?,
            m.trim().parse().map_err(|_| bad())?,
        );
        if n == 0 || m == 0 || n > m {
            return Err(bad());
        }
        Ok(ReadData::Part { n, m })
    }

    fn selects(&self, pack: &PackId) -> bool {
        let b = pack.as_bytes();
        let number = u64::from_be_bytes(b[..8].try_into().unwrap());
        match *self {
            ReadData::None => false,
            ReadData::All => true,
            ReadData::Part { n, m } => number % u64::from(m) == u64::from(n - 1),
            ReadData::Percent(p) => rand::random::<f64>() * 100.0 < p,
        }
    }
}

#[derive(Default)]
pub struct CheckProgress {
    pub packs_read: AtomicU64,
    pub packs_to_read: AtomicU64,
    pub bytes_read: AtomicU64,
}

/// Paths of one snapshot that cannot be restored.
#[derive(Debug)]
pub struct Damage {
    pub snapshot: SnapshotId,
    pub time: i64,
    /// The path, and why: a file's content is lost, or a directory's listing is lost (then
    /// nothing below it can be restored).
    pub paths: Vec<(PathBuf, String)>,
}

#[derive(Debug, Default)]
pub struct CheckReport {
    pub errors: Vec<String>,
    /// Not damage: space that prune can reclaim, such as packs no index names.
    pub warnings: Vec<String>,
    pub snapshots: u64,
    pub trees: u64,
    pub packs: u64,
    pub packs_read: u64,
    pub damage: Vec<Damage>,
}

/// Why a blob cannot be read, by blob.
type Lost = HashMap<BlobId, String>;

/// The most damaged paths listed per snapshot.
const MAX_AFFECTED: usize = 100_000;

pub fn check(
    repo: &Repository,
    read_data: ReadData,
    progress: &CheckProgress,
) -> Result<CheckReport> {
    let mut report = CheckReport::default();
    report.errors.extend(repo.verify_key_files()?);

    // Index files and the packs they name.
    let mut indexed: HashMap<PackId, (u64, IndexId)> = HashMap::new();
    let condemned = repo.condemned_packs();
    for id in repo.index_ids()? {
        match repo.read_index(id) {
            Ok(index) => {
                for p in index
                    .packs
                    .into_iter()
                    .filter(|p| !condemned.contains(&p.id))
                {
                    if let Some((size, other)) = indexed.insert(p.id, (p.size, id)) {
                        if size != p.size {
                            report.errors.push(format!(
                                "index files {} and {} disagree on the size of pack {}: {size} and {} bytes",
                                other.short(),
                                id.short(),
                                p.id.short(),
                                p.size
                            ));
                        }
                    }
                }
            }
            Err(e) => report
                .errors
                .push(format!("index file {}: {e}", id.short())),
        }
    }

    // Packs in storage against packs in the index.
    let stored: HashMap<PackId, u64> = repo.list_packs()?.into_iter().collect();
    report.packs = stored.len() as u64;
    let mut bad_packs: HashMap<PackId, String> = HashMap::new();
    // Blobs only in condemned packs stay readable while the pack exists: one gone is lost.
    for pack in condemned.iter().filter(|p| !stored.contains_key(p)) {
        bad_packs.insert(
            *pack,
            format!("pack {} was condemned and is deleted", pack.short()),
        );
    }
    for (pack, (size, index)) in &indexed {
        match stored.get(pack) {
            None => {
                bad_packs.insert(*pack, format!("pack {} is missing", pack.short()));
                report.errors.push(format!(
                    "pack {} is missing (named by index file {})",
                    pack.short(),
                    index.short()
                ));
            }
            Some(found) if found != size => {
                let why = if found < size {
                    "truncated"
                } else {
                    "too long"
                };
                bad_packs.insert(*pack, format!("pack {} is {why}", pack.short()));
                report.errors.push(format!(
                    "pack {} is {why}: expected {size} bytes, found {found}",
                    pack.short()
                ));
            }
            Some(_) => {}
        }
    }
    let unindexed = stored
        .keys()
        .filter(|p| !indexed.contains_key(p) && !condemned.contains(p))
        .count();
    if unindexed > 0 {
        report.warnings.push(format!(
            "{unindexed} packs are not in any index (left by an interrupted backup, or their index file is damaged)"
        ));
    }

    // Read data: every selected, indexed, intact pack in full.
    let mut lost: Lost = HashMap::new();
    let to_read: Vec<PackId> = indexed
        .keys()
        .filter(|p| !bad_packs.contains_key(p) && read_data.selects(p))
        .copied()
        .collect();
    progress
        .packs_to_read
        .store(to_read.len() as u64, Ordering::Relaxed);
    report.packs_read = to_read.len() as u64;
    let found = Mutex::new((Vec::new(), Vec::new()));
    to_read.par_iter().for_each(|pack| {
        let (errors, blobs) = read_pack(repo, pack, progress);
        let mut f = found.lock().unwrap();
        f.0.extend(errors);
        f.1.extend(blobs);
    });
    let (errors, bad_blobs) = found.into_inner().unwrap();
    report.errors.extend(errors);
    lost.extend(bad_blobs);

    // Snapshots and their trees.
    let mut walker = Walker {
        repo,
        lost: &mut lost,
        bad_packs: &bad_packs,
        damaged: HashMap::new(),
        errors: Vec::new(),
    };
    let mut snapshots = Vec::new();
    for id in repo.snapshot_ids_indexed()? {
        match repo.load_snapshot(id) {
            Ok(s) => {
                report.snapshots += 1;
                let name = format!("snapshot {}", id.short());
                match walker.tree(s.tree, &name, Path::new("/"), 0) {
                    Ok(_) => snapshots.push((id, s)),
                    // Too deep to restore at all: no path of it is worth listing.
                    Err(e) => report.errors.push(format!("{name}: {e}")),
                }
            }
            Err(e) => report.errors.push(e.message),
        }
    }
    report.trees = walker.damaged.len() as u64;
    report.errors.extend(std::mem::take(&mut walker.errors));

    // The damage report: only damaged trees are walked again.
    snapshots.sort_by_key(|(id, s)| (s.time, *id));
    for (id, s) in &snapshots {
        let mut paths = Vec::new();
        walker.affected(s.tree, Path::new("/"), &mut paths);
        if !paths.is_empty() {
            report.damage.push(Damage {
                snapshot: *id,
                time: s.time,
                paths,
            });
        }
    }
    Ok(report)
}

/// Reads one pack in full; returns errors and the blobs found unreadable.
fn read_pack(
    repo: &Repository,
    pack: &PackId,
    progress: &CheckProgress,
) -> (Vec<String>, Vec<(BlobId, String)>) {
    let mut errors = Vec::new();
    let mut lost = Vec::new();
    let (bytes, header) = match repo.read_pack(pack) {
        Ok(x) => x,
        Err(e) if e.kind == ErrorKind::Corrupt => {
            // The pack does not match its name, or its header is unreadable: find out which
            // blobs survive by opening each one the index lists.
            errors.push(e.message.clone());
            match repo.read_pack_unverified(pack) {
                Ok(bytes) => lost.extend(
                    repo.blobs_in_pack(pack)
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|(blob, loc)| {
                            let stored = bytes
                                .get(loc.offset as usize..(loc.offset + loc.stored_len) as usize);
                            let ok = stored
                                .is_some_and(|s| repo.open_blob(&blob, s, loc.raw_len).is_ok());
                            (!ok).then(|| {
                                (blob, format!("{blob} in pack {} is damaged", pack.short()))
                            })
                        }),
                ),
                Err(e) => errors.push(e.message),
            }
            progress.packs_read.fetch_add(1, Ordering::Relaxed);
            return (errors, lost);
        }
        Err(e) => {
            errors.push(e.message);
            return (errors, lost);
        }
    };
    progress
        .bytes_read
        .fetch_add(bytes.len() as u64, Ordering::Relaxed);
    let (offsets, _) = header.offsets();
    for (entry, offset) in header.entries.iter().zip(offsets) {
        let stored = &bytes[offset as usize..offset as usize + entry.stored_len as usize];
        if let Err(e) = repo.open_blob(&entry.blob, stored, entry.raw_len) {
            errors.push(format!("pack {}: {e}", pack.short()));
            lost.push((
                entry.blob,
                format!("{} in pack {} is damaged", entry.blob, pack.short()),
            ));
            continue;
        }
        match repo.lookup(&entry.blob) {
            Ok(Some(loc)) if loc.pack == *pack && loc.offset != offset => errors.push(format!(
                "pack {}: the index puts {} at offset {}, the pack header at {offset}",
                pack.short(),
                entry.blob,
                loc.offset
            )),
            _ => {}
        }
    }
    progress.packs_read.fetch_add(1, Ordering::Relaxed);
    (errors, lost)
}

struct Walker<'a> {
    repo: &'a Repository,
    lost: &'a mut Lost,
    bad_packs: &'a HashMap<PackId, String>,
    /// Every tree checked: whether anything below it is lost, and its height (the most levels
    /// of trees below it), so that a tree reached again along another path is not walked again.
    damaged: HashMap<TreeId, (bool, usize)>,
    errors: Vec<String>,
}

impl Walker<'_> {
    /// Why a blob cannot be read, if it cannot.
    fn blob_problem(&mut self, blob: BlobId) -> Option<String> {
        self.resolve(vec![blob]);
        self.lost.get(&blob).cloned()
    }

    /// Looks up the blobs not known to be lost yet, in batches spread over the cores, and
    /// records those that cannot be read.
    fn resolve(&mut self, mut blobs: Vec<BlobId>) {
        const BATCH: usize = 1024;
        blobs.retain(|b| !self.lost.contains_key(b));
        let (repo, bad_packs) = (self.repo, self.bad_packs);
        let problems: Vec<(BlobId, String)> = blobs
            .par_chunks(BATCH)
            .flat_map_iter(|batch| {
                let found = repo.lookup_many(batch);
                batch.iter().enumerate().filter_map(move |(i, blob)| {
                    let why = match &found {
                        Ok(found) => match found[i] {
                            Some(loc) => bad_packs
                                .get(&loc.pack)
                                .map(|why| format!("{blob} is in a damaged pack: {why}")),
                            None => Some(format!("{blob} is not in the index")),
                        },
                        Err(e) => Some(e.message.clone()),
                    }?;
                    Some((*blob, why))
                })
            })
            .collect();
        self.lost.extend(problems);
    }

    /// Checks a tree and everything below it once; returns whether anything is lost. The tree
    /// is that of the directory at `path`, `depth` levels below its snapshot's root: a walk
    /// that would go deeper than a snapshot may (repo-format.md, "Limits") stops with the
    /// error that says where.
    fn tree(&mut self, id: TreeId, snapshot: &str, path: &Path, depth: usize) -> Result<bool> {
        crate::walk::check_depth(depth, path)?;
        if let Some(&(d, height)) = self.damaged.get(&id) {
            // Checked already, along another path: only its depth here is news.
            crate::walk::check_depth(depth + height, path)?;
            return Ok(d);
        }
        if let Some(why) = self.blob_problem(id.into()) {
            self.errors
                .push(format!("{snapshot}, {}: {why}", path.display()));
            self.damaged.insert(id, (true, 0));
            return Ok(true);
        }
        let tree = match self.repo.load_tree(id) {
            Ok(t) => t,
            Err(e) => {
                // The repository's error already names the tree.
                self.errors
                    .push(format!("{snapshot}, {}: {e}", path.display()));
                self.lost.insert(id.into(), e.message);
                self.damaged.insert(id, (true, 0));
                return Ok(true);
            }
        };
        self.resolve(
            tree.nodes
                .iter()
                .filter(|n| n.kind == NodeKind::File)
                .flat_map(|n| n.content.iter().map(|c| BlobId::from(*c)))
                .collect(),
        );
        let mut damaged = false;
        let mut height = 0;
        for node in &tree.nodes {
            let child = path.join(OsStr::from_bytes(&node.name));
            match (node.kind, node.subtree) {
                (NodeKind::Dir, Some(sub)) => {
                    damaged |= self.tree(sub, snapshot, &child, depth + 1)?;
                    height = height.max(1 + self.damaged[&sub].1);
                }
                (NodeKind::File, _) => {
                    for c in &node.content {
                        if let Some(why) = self.lost.get(&BlobId::from(*c)).cloned() {
                            self.errors
                                .push(format!("{snapshot}, {}: {why}", child.display()));
                            damaged = true;
                        }
                    }
                }
                _ => {}
            }
        }
        self.damaged.insert(id, (damaged, height));
        Ok(damaged)
    }

    /// The paths below `id` that cannot be restored.
    fn affected(&mut self, id: TreeId, base: &Path, out: &mut Vec<(PathBuf, String)>) {
        // Subtrees reached along many paths could make this list exponentially long.
        if out.len() >= MAX_AFFECTED || !self.damaged.get(&id).is_some_and(|d| d.0) {
            return;
        }
        let tree = match self.repo.load_tree(id) {
            Ok(t) => t,
            Err(e) => {
                out.push((base.to_path_buf(), format!("directory listing lost: {e}")));
                return;
            }
        };
        for node in &tree.nodes {
            let path = base.join(OsStr::from_bytes(&node.name));
            match (node.kind, node.subtree) {
                (NodeKind::Dir, Some(sub)) => self.affected(sub, &path, out),
                (NodeKind::File, _) => {
                    if let Some(why) = node
                        .content
                        .iter()
                        .find_map(|c| self.lost.get(&BlobId::from(*c)))
                    {
                        out.push((path, format!("content lost: {why}")));
                    }
                }
                _ => {}
            }
        }
    }
}
