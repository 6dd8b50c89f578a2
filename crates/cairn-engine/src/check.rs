//! `check`: proves that every snapshot can be restored, or says exactly what cannot.
//!
//! Structure (always): every key file matches its name and has a valid header; every index
//! file opens; every pack an index names exists with the size
//! the index records; every snapshot opens; every tree reachable from a snapshot opens; every
//! blob a tree references is in the index. Data (on request, for all packs or a subset): every
//! pack's bytes match its name, its header matches its length, and every blob in it opens and
//! matches its id.
//!
//! Each finding is a `Problem` in the report (problem.rs). What is found damaged becomes a
//! damage report: which snapshots, and which paths in them, cannot be restored. `check` runs
//! these as phases, one function each, in the order it names them. Memory stays bounded: the
//! blobs trees reach go to scratch files and are located together, in key order against the
//! index cache, once the trees are walked (`BlobsToLocate`); only the set of tree ids already
//! checked is kept.

mod problem;

pub use problem::{BadPack, Detail, Loss, Problem};

use crate::{PathProblem, Result};
use cairn_format::index::{IndexEntry, IndexPack};
use cairn_format::snapshot::Snapshot;
use cairn_format::tree::{NodeKind, Tree};
use cairn_format::{BlobId, IndexId, PackId, SnapshotId, TreeId};
use cairn_repo::{BlobsToLocate, ErrorKind, Repository};
use rand::seq::SliceRandom;
use rayon::prelude::*;
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
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
    /// This percentage of the packs, rounded up (so never none of them), chosen at random.
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

    /// The packs to read of `packs`.
    pub fn select(&self, packs: &[PackId]) -> Vec<PackId> {
        match *self {
            ReadData::None => Vec::new(),
            ReadData::All => packs.to_vec(),
            ReadData::Part { n, m } => packs
                .iter()
                .filter(|pack| {
                    let number = u64::from_be_bytes(pack.as_bytes()[..8].try_into().unwrap());
                    number % u64::from(m) == u64::from(n - 1)
                })
                .copied()
                .collect(),
            // A count, not a coin per pack: 10% of 6 packs reads one, never none.
            ReadData::Percent(p) => {
                let count = ((packs.len() as f64 * p / 100.0).ceil() as usize).min(packs.len());
                let mut chosen = packs.to_vec();
                chosen.shuffle(&mut rand::thread_rng());
                chosen.truncate(count);
                chosen
            }
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
    pub paths: Vec<PathProblem>,
}

#[derive(Debug, Default)]
pub struct CheckReport {
    /// Everything found, in the order found: errors (damage) and warnings (not damage, such
    /// as space that prune can reclaim); `Problem::is_warning` tells which.
    pub problems: Vec<Problem>,
    pub snapshots: u64,
    pub trees: u64,
    pub packs: u64,
    pub packs_read: u64,
    pub damage: Vec<Damage>,
    /// Snapshots listed but forgotten by another process before they could be read: not
    /// damage, they are simply gone.
    pub vanished: Vec<SnapshotId>,
    /// Restorable files with data in a damaged pack (such as one whose header or length is
    /// damaged): they depend on index entries that the pack can no longer rebuild.
    pub in_damaged_packs: Vec<Damage>,
    /// Damaged packs recorded (condemned, with the records of their intact blobs): backups
    /// store their content again, and prune moves what snapshots use out of them.
    pub recorded: Vec<PackId>,
}

impl CheckReport {
    /// The problems that are damage.
    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter(|p| !p.is_warning())
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter(|p| p.is_warning())
    }

    /// Whether nothing is damaged: warnings do not count.
    pub fn ok(&self) -> bool {
        self.errors().next().is_none()
    }
}

/// Why a blob cannot be read, by blob.
type Lost = HashMap<BlobId, Loss>;

/// The most damaged paths listed per snapshot.
const MAX_AFFECTED: usize = 100_000;

/// Checks the repository in phases, each of which adds what it finds to the report: key
/// files, index files, the packs in storage, the packs' data (as `to_read` asks), the trees of
/// every snapshot, and then which paths the damage costs; damaged packs found are recorded.
pub fn check(
    repo: &Repository,
    to_read: ReadData,
    progress: &CheckProgress,
) -> Result<CheckReport> {
    let mut report = CheckReport::default();
    keys(repo, &mut report)?;
    let condemned = repo.condemned_packs();
    let indexed = index(repo, &condemned, &mut report)?;
    let packs = packs(repo, indexed, condemned, &mut report)?;
    let (lost, salvage) = read_data(repo, &packs, to_read, progress, &mut report);
    let reached = BlobsToLocate::new(repo.scratch_dir(), repo.indexed_blob_count()?);
    let mut walker = Walker::new(repo, lost, &packs.bad, reached);
    let snapshots = trees(&mut walker, &mut report)?;
    report.damage = damage_report(&mut walker, &snapshots);
    report.in_damaged_packs = in_damaged_packs(repo, &salvage, &snapshots);
    record_damaged(repo, salvage, &packs.condemned, &mut report);
    Ok(report)
}

/// The packs: which the index names, which storage holds, and which cannot be read.
struct Packs {
    /// Each pack the index names (condemned packs left out), with its size and the index file
    /// that names it.
    indexed: HashMap<PackId, (u64, IndexId)>,
    condemned: HashSet<PackId>,
    /// Each pack in storage, with its length.
    stored: HashMap<PackId, u64>,
    /// Packs whose blobs cannot be read whatever their bytes hold.
    bad: HashMap<PackId, BadPack>,
}

/// Verifies every key file's name and header.
fn keys(repo: &Repository, report: &mut CheckReport) -> Result<()> {
    let problems = repo.verify_key_files()?.into_iter();
    report
        .problems
        .extend(problems.map(|message| Problem::KeyFile { message }));
    Ok(())
}

/// Opens every index file; returns the packs they name, with the size each records and the
/// index file that records it.
fn index(
    repo: &Repository,
    condemned: &HashSet<PackId>,
    report: &mut CheckReport,
) -> Result<HashMap<PackId, (u64, IndexId)>> {
    let mut indexed: HashMap<PackId, (u64, IndexId)> = HashMap::new();
    for id in repo.index_ids()? {
        let index = match repo.read_index(id) {
            Ok(index) => index,
            Err(e) => {
                report.problems.push(Problem::IndexUnreadable {
                    index: id,
                    message: e.to_string(),
                });
                continue;
            }
        };
        for p in index
            .packs
            .into_iter()
            .filter(|p| !condemned.contains(&p.id))
        {
            if let Some((size, other)) = indexed.insert(p.id, (p.size, id)) {
                if size != p.size {
                    report.problems.push(Problem::IndexSizesDisagree {
                        pack: p.id,
                        index: other,
                        size,
                        other_index: id,
                        other_size: p.size,
                    });
                }
            }
        }
    }
    Ok(indexed)
}

/// Lists the packs in storage and compares them with the packs the index names.
fn packs(
    repo: &Repository,
    indexed: HashMap<PackId, (u64, IndexId)>,
    condemned: HashSet<PackId>,
    report: &mut CheckReport,
) -> Result<Packs> {
    let stored: HashMap<PackId, u64> = repo.list_packs()?.into_iter().collect();
    report.packs = stored.len() as u64;
    let mut bad: HashMap<PackId, BadPack> = HashMap::new();
    // Blobs only in condemned packs stay readable while the pack exists: one gone is lost.
    for pack in condemned.iter().filter(|p| !stored.contains_key(p)) {
        bad.insert(*pack, BadPack::Deleted);
    }
    for (pack, (size, index)) in &indexed {
        match stored.get(pack) {
            None => {
                bad.insert(*pack, BadPack::Missing);
                report.problems.push(Problem::PackMissing {
                    pack: *pack,
                    index: *index,
                });
            }
            Some(&found) => {
                if let Some(why) = BadPack::of_size(*size, found) {
                    bad.insert(*pack, why);
                    report.problems.push(Problem::PackSizeMismatch {
                        pack: *pack,
                        expected: *size,
                        found,
                    });
                }
            }
        }
    }
    let unindexed = stored
        .keys()
        .filter(|p| !indexed.contains_key(p) && !condemned.contains(p))
        .count();
    if unindexed > 0 {
        report.problems.push(Problem::PacksNotIndexed {
            count: unindexed as u64,
        });
    }
    Ok(Packs {
        indexed,
        condemned,
        stored,
        bad,
    })
}

/// Reads every selected, indexed, intact pack in full. Returns the blobs that do not read back
/// intact, and the damaged packs with the records of their intact blobs, by pack id.
fn read_data(
    repo: &Repository,
    packs: &Packs,
    to_read: ReadData,
    progress: &CheckProgress,
    report: &mut CheckReport,
) -> (Lost, Vec<IndexPack>) {
    // Condemned packs are read too while they exist: snapshots may still reach their blobs,
    // and a damaged pack recorded by an earlier check is among them.
    let mut readable: Vec<PackId> = packs
        .indexed
        .keys()
        .filter(|p| !packs.bad.contains_key(p))
        .chain(
            packs
                .condemned
                .iter()
                .filter(|p| packs.stored.contains_key(p)),
        )
        .copied()
        .collect();
    readable.sort_unstable();
    let selected = to_read.select(&readable);
    progress
        .packs_to_read
        .store(selected.len() as u64, Ordering::Relaxed);
    report.packs_read = selected.len() as u64;
    let found = Mutex::new((Vec::new(), Vec::new(), Vec::new()));
    selected.par_iter().for_each(|pack| {
        let f = read_pack(repo, pack, progress);
        let mut all = found.lock().unwrap();
        all.0.extend(f.problems);
        all.1.extend(f.lost);
        all.2.extend(f.salvage);
    });
    let (problems, lost, mut salvage) = found.into_inner().unwrap();
    report.problems.extend(problems);
    salvage.sort_by_key(|p: &IndexPack| p.id);
    (lost.into_iter().collect(), salvage)
}

/// Opens every snapshot and checks every tree reachable from it. Returns the snapshots opened,
/// oldest first.
fn trees(walker: &mut Walker, report: &mut CheckReport) -> Result<Vec<(SnapshotId, Snapshot)>> {
    let repo = walker.repo;
    let mut snapshots = Vec::new();
    for id in repo.snapshot_ids_indexed()? {
        match repo.load_snapshot(id) {
            Ok(s) => {
                report.snapshots += 1;
                match walker.tree(s.tree, id, Path::new("/"), 0) {
                    Ok(_) => snapshots.push((id, s)),
                    // Too deep to restore at all: no path of it is worth listing.
                    Err(e) => report.problems.push(Problem::SnapshotTooDeep {
                        snapshot: id,
                        message: e.to_string(),
                    }),
                }
            }
            Err(e) if e.kind == ErrorKind::NotFound => report.vanished.push(id),
            Err(e) => report.problems.push(Problem::SnapshotUnreadable {
                snapshot: id,
                message: e.message,
            }),
        }
    }
    if walker.locate_reached()? {
        // Content found lost only now: walk again, so that every path that needs it is named.
        walker.damaged.clear();
        walker.problems.clear();
        for (id, s) in &snapshots {
            walker.tree(s.tree, *id, Path::new("/"), 0)?;
        }
    }
    report.trees = walker.damaged.len() as u64;
    report.problems.append(&mut walker.problems);
    snapshots.sort_by_key(|(id, s)| (s.time, *id));
    Ok(snapshots)
}

/// The paths of each snapshot that cannot be restored: only damaged trees are walked again.
fn damage_report(walker: &mut Walker, snapshots: &[(SnapshotId, Snapshot)]) -> Vec<Damage> {
    let mut damage = Vec::new();
    for (id, s) in snapshots {
        let mut paths = Vec::new();
        walker.affected(s.tree, Path::new("/"), &mut paths);
        if !paths.is_empty() {
            damage.push(Damage {
                snapshot: *id,
                time: s.time,
                paths,
            });
        }
    }
    damage
}

/// The restorable files of each snapshot with data in a damaged pack (`salvage`): restorable
/// now, but only through the index entries a damaged header can no longer rebuild.
fn in_damaged_packs(
    repo: &Repository,
    salvage: &[IndexPack],
    snapshots: &[(SnapshotId, Snapshot)],
) -> Vec<Damage> {
    let intact: HashSet<BlobId> = salvage
        .iter()
        .flat_map(|p| p.blobs.iter().map(|e| e.blob))
        .collect();
    let mut finder = Finder {
        repo,
        blobs: &intact,
        reaches: HashMap::new(),
    };
    let mut found = Vec::new();
    for (id, s) in snapshots {
        let mut paths = Vec::new();
        finder.files(s.tree, Path::new("/"), 0, &mut paths);
        if !paths.is_empty() {
            found.push(Damage {
                snapshot: *id,
                time: s.time,
                paths,
            });
        }
    }
    found
}

/// Records the damaged packs: condemned, carrying the records of their intact blobs, so that
/// backups store the content again and prune moves the intact blobs out whatever
/// --max-unused says.
fn record_damaged(
    repo: &Repository,
    mut salvage: Vec<IndexPack>,
    condemned: &HashSet<PackId>,
    report: &mut CheckReport,
) {
    // Recorded already (or condemned by prune, which moves the intact blobs anyway).
    salvage.retain(|p| !condemned.contains(&p.id));
    let packs: Vec<PackId> = salvage.iter().map(|p| p.id).collect();
    match repo.condemn_damaged(salvage) {
        Ok(written) => report.recorded = written.into_iter().flat_map(|(_, p)| p).collect(),
        Err(e) => report.problems.push(Problem::PacksNotRecorded {
            packs,
            message: e.to_string(),
        }),
    }
}

/// Finds the files whose content reaches a set of blobs, walking each tree once to learn
/// whether anything below it does.
struct Finder<'a> {
    repo: &'a Repository,
    blobs: &'a HashSet<BlobId>,
    reaches: HashMap<TreeId, bool>,
}

impl Finder<'_> {
    fn reaches(&mut self, id: TreeId, depth: usize) -> bool {
        // Deeper than any snapshot may be: the walk above has reported it.
        if self.blobs.is_empty() || depth > cairn_format::tree::MAX_TREE_DEPTH {
            return false;
        }
        if let Some(&r) = self.reaches.get(&id) {
            return r;
        }
        // Set first, so a tree that (in a forged snapshot) contains itself ends the walk.
        self.reaches.insert(id, false);
        let Ok(tree) = self.repo.load_tree(id) else {
            return false;
        };
        let mut r = false;
        for node in &tree.nodes {
            r |= node
                .content
                .iter()
                .any(|c| self.blobs.contains(&BlobId::from(*c)));
            if let Some(sub) = node.subtree {
                r |= self.reaches(sub, depth + 1);
            }
        }
        self.reaches.insert(id, r);
        r
    }

    /// At most `MAX_AFFECTED` paths: shared subtrees can make a snapshot's paths exponential.
    fn files(&mut self, id: TreeId, base: &Path, depth: usize, out: &mut Vec<PathProblem>) {
        if out.len() >= MAX_AFFECTED || !self.reaches(id, depth) {
            return;
        }
        let Ok(tree) = self.repo.load_tree(id) else {
            return;
        };
        for node in &tree.nodes {
            let path = base.join(OsStr::from_bytes(&node.name));
            if out.len() >= MAX_AFFECTED {
                return;
            }
            if let Some(sub) = node.subtree {
                self.files(sub, &path, depth + 1, out);
            } else if node
                .content
                .iter()
                .any(|c| self.blobs.contains(&BlobId::from(*c)))
            {
                out.push(PathProblem::new(
                    path,
                    "data in a damaged pack, still readable",
                ));
            }
        }
    }
}

/// What reading one pack in full found: problems, the blobs that do not read back intact,
/// and, for a damaged pack, the record of its blobs that still verify (what recording it
/// carries).
#[derive(Default)]
struct PackFindings {
    problems: Vec<Problem>,
    lost: Vec<(BlobId, Loss)>,
    salvage: Option<IndexPack>,
}

/// Reads one pack in full and verifies every blob in it.
fn read_pack(repo: &Repository, pack: &PackId, progress: &CheckProgress) -> PackFindings {
    let mut found = PackFindings::default();
    let Some((bytes, entries)) = pack_bytes(repo, pack, &mut found.problems) else {
        return found;
    };
    progress
        .bytes_read
        .fetch_add(bytes.len() as u64, Ordering::Relaxed);
    let mut intact = Vec::with_capacity(entries.len());
    for e in entries {
        if let Err(err) = repo.open_entry(pack, &bytes, &e) {
            found.problems.push(Problem::BlobDamaged {
                pack: *pack,
                blob: e.blob,
                message: err.to_string(),
            });
            let loss = Loss::Damaged {
                blob: e.blob,
                pack: *pack,
            };
            found.lost.push((e.blob, loss));
            continue;
        }
        match repo.lookup(&e.blob) {
            Ok(Some(loc)) if loc.pack == *pack && loc.offset != e.offset => {
                found.problems.push(Problem::BlobOffsetMismatch {
                    pack: *pack,
                    blob: e.blob,
                    index_offset: loc.offset,
                    header_offset: e.offset,
                })
            }
            _ => {}
        }
        intact.push(e);
    }
    if !found.problems.is_empty() {
        found.salvage = Some(IndexPack {
            id: *pack,
            size: bytes.len() as u64,
            blobs: intact,
        });
    }
    progress.packs_read.fetch_add(1, Ordering::Relaxed);
    found
}

/// A pack's bytes and the entries that locate its blobs, or `None` if there is nothing to
/// verify. A pack that does not match its name (a damaged header or length) is read through
/// the index's entries, which locate its blobs without the header.
fn pack_bytes(
    repo: &Repository,
    pack: &PackId,
    problems: &mut Vec<Problem>,
) -> Option<(Vec<u8>, Vec<IndexEntry>)> {
    let unreadable = |e: cairn_repo::Error| Problem::PackUnreadable {
        pack: *pack,
        message: e.message,
    };
    match repo.read_pack(pack) {
        Ok((bytes, header)) => {
            let entries = IndexPack::from_header(*pack, bytes.len() as u64, &header).blobs;
            Some((bytes, entries))
        }
        // A condemned pack that a prune deleted since the listing holds nothing to check.
        Err(e) if e.kind == ErrorKind::NotFound && repo.condemned_packs().contains(pack) => None,
        Err(e) if e.kind == ErrorKind::Corrupt => {
            problems.push(Problem::PackDamaged {
                pack: *pack,
                message: e.message,
            });
            match repo.read_pack_unverified(pack) {
                Ok(bytes) => Some((bytes, repo.blobs_in_pack(pack).unwrap_or_default())),
                Err(e) => {
                    problems.push(unreadable(e));
                    None
                }
            }
        }
        Err(e) => {
            problems.push(unreadable(e));
            None
        }
    }
}

/// Why a blob the index places `at` cannot be read, if it cannot.
fn loss_at(
    blob: BlobId,
    at: Option<cairn_repo::Location>,
    bad_packs: &HashMap<PackId, BadPack>,
) -> Option<Loss> {
    match at {
        Some(loc) => bad_packs.get(&loc.pack).map(|why| Loss::InBadPack {
            blob,
            pack: loc.pack,
            why: *why,
        }),
        None => Some(Loss::NotIndexed { blob }),
    }
}

/// Checks the trees of snapshots, each tree once however many paths reach it, and keeps what
/// it found for the damage report.
struct Walker<'a> {
    repo: &'a Repository,
    lost: Lost,
    bad_packs: &'a HashMap<PackId, BadPack>,
    /// Every tree checked: whether anything below it is lost, and its height (the most levels
    /// of trees below it), so that a tree reached again along another path is not walked again.
    damaged: HashMap<TreeId, (bool, usize)>,
    problems: Vec<Problem>,
    /// The content blobs of the trees walked, until they are located.
    reached: Option<BlobsToLocate>,
}

impl<'a> Walker<'a> {
    fn new(
        repo: &'a Repository,
        lost: Lost,
        bad_packs: &'a HashMap<PackId, BadPack>,
        reached: BlobsToLocate,
    ) -> Self {
        Walker {
            repo,
            lost,
            bad_packs,
            damaged: HashMap::new(),
            problems: Vec::new(),
            reached: Some(reached),
        }
    }

    /// Locates the content blobs reached, and records those that cannot be read. Returns
    /// whether any was found lost that was not known to be before.
    fn locate_reached(&mut self) -> Result<bool> {
        let Some(reached) = self.reached.take() else {
            return Ok(false);
        };
        let (lost, bad_packs) = (&self.lost, self.bad_packs);
        let found = reached.locate(self.repo, |blob, at| {
            if lost.contains_key(&blob) {
                return None;
            }
            Some((blob, loss_at(blob, at, bad_packs)?))
        })?;
        let news = !found.is_empty();
        self.lost.extend(found);
        Ok(news)
    }

    /// Why a blob cannot be read, if it cannot.
    fn blob_problem(&mut self, blob: BlobId) -> Option<Loss> {
        if !self.lost.contains_key(&blob) {
            let why = match self.repo.lookup_many(&[blob]) {
                Ok(found) => loss_at(blob, found[0], self.bad_packs),
                Err(e) => Some(Loss::LookupFailed {
                    blob,
                    message: e.message,
                }),
            };
            self.lost.extend(why.map(|why| (blob, why)));
        }
        self.lost.get(&blob).cloned()
    }

    /// Checks a tree and everything below it once; returns whether anything is lost. The tree
    /// is that of the directory at `path`, `depth` levels below its snapshot's root: a walk
    /// that would go deeper than a snapshot may (repo-format.md, "Limits") stops with the
    /// error that says where.
    fn tree(
        &mut self,
        id: TreeId,
        snapshot: SnapshotId,
        path: &Path,
        depth: usize,
    ) -> Result<bool> {
        crate::walk::check_depth(depth, path)?;
        if let Some(&(d, height)) = self.damaged.get(&id) {
            // Checked already, along another path: only its depth here is news.
            crate::walk::check_depth(depth + height, path)?;
            return Ok(d);
        }
        let Some(tree) = self.load(id, snapshot, path) else {
            return Ok(true);
        };
        if let Some(reached) = &mut self.reached {
            for node in tree.nodes.iter().filter(|n| n.kind == NodeKind::File) {
                for c in &node.content {
                    reached.push(BlobId::from(*c))?;
                }
            }
        }
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
                        if let Some(loss) = self.lost.get(&BlobId::from(*c)).cloned() {
                            self.problems.push(Problem::ContentLost {
                                snapshot,
                                path: child.clone(),
                                loss,
                            });
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

    /// Loads a tree, or says why it cannot be loaded; a tree that cannot counts as checked,
    /// and damaged.
    fn load(&mut self, id: TreeId, snapshot: SnapshotId, path: &Path) -> Option<Tree> {
        let loss = match self.blob_problem(id.into()) {
            Some(loss) => loss,
            None => match self.repo.load_tree(id) {
                Ok(tree) => return Some(tree),
                Err(e) => {
                    // The repository's error already names the tree.
                    let loss = Loss::TreeUnreadable {
                        tree: id,
                        message: e.message,
                    };
                    self.lost.insert(id.into(), loss.clone());
                    loss
                }
            },
        };
        let path = path.to_path_buf();
        self.problems.push(Problem::TreeLost {
            snapshot,
            path,
            loss,
        });
        self.damaged.insert(id, (true, 0));
        None
    }

    /// The paths below `id` that cannot be restored.
    fn affected(&mut self, id: TreeId, base: &Path, out: &mut Vec<PathProblem>) {
        // Subtrees reached along many paths could make this list exponentially long.
        if out.len() >= MAX_AFFECTED || !self.damaged.get(&id).is_some_and(|d| d.0) {
            return;
        }
        let tree = match self.repo.load_tree(id) {
            Ok(t) => t,
            Err(e) => {
                out.push(PathProblem::new(
                    base,
                    format!("directory listing lost: {e}"),
                ));
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
                        out.push(PathProblem::new(path, format!("content lost: {why}")));
                    }
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packs(n: u64) -> Vec<PackId> {
        (0..n)
            .map(|i| {
                let mut b = [0u8; 32];
                b[..8].copy_from_slice(&i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
                PackId(cairn_format::Id(b))
            })
            .collect()
    }

    /// Regression: `--read-data-subset 10%` of a 6-pack repository read no pack at all (each pack
    /// was a coin toss) and reported no errors.
    #[test]
    fn a_percentage_reads_at_least_one_pack() {
        let six = packs(6);
        for _ in 0..50 {
            assert_eq!(ReadData::Percent(10.0).select(&six).len(), 1);
        }
        assert_eq!(ReadData::Percent(50.0).select(&six).len(), 3);
        assert_eq!(ReadData::Percent(100.0).select(&six).len(), 6);
        assert!(ReadData::Percent(10.0).select(&[]).is_empty());
    }

    #[test]
    fn parts_cover_every_pack_exactly_once() {
        let all = packs(200);
        let mut seen: HashMap<PackId, u32> = HashMap::new();
        for n in 1..=7 {
            for p in (ReadData::Part { n, m: 7 }).select(&all) {
                *seen.entry(p).or_default() += 1;
            }
        }
        assert_eq!(seen.len(), all.len());
        assert!(seen.values().all(|&c| c == 1));
    }
}
