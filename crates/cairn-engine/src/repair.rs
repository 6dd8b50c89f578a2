//! Repair (repo-format.md, "Repair"): rebuild the index from the packs' own headers, and write
//! snapshots that leave out what is lost so that the rest stays restorable.
//!
//! Invariant: repair only adds files before it removes any, and removes only index files it has
//! replaced; an original snapshot is never removed (the user forgets it when satisfied).

use crate::Result;
use cairn_format::index::{IndexEntry, IndexPack};
use cairn_format::snapshot::Snapshot;
use cairn_format::tree::{Node, NodeKind, Tree};
use cairn_format::{BlobId, IndexId, PackId, SnapshotId, TreeId};
use cairn_repo::{Error, ErrorKind, IndexBatch, Repository};
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The tag a repaired snapshot carries, beside the original's tags.
pub const REPAIRED_TAG: &[u8] = b"repaired";

#[derive(Clone, Debug, Default)]
pub struct RepairIndexReport {
    pub packs: u64,
    pub packs_indexed: u64,
    /// Packs no index file names, left for the process that wrote them to index: another
    /// process was running, or fenced off but perhaps only stopped.
    pub packs_left: u64,
    /// Packs whose header could not be read and that no old index entry locates blobs in.
    pub packs_unreadable: Vec<(PackId, String)>,
    /// Packs whose header could not be read, whose blobs the old index entries located.
    pub packs_salvaged: Vec<(PackId, String)>,
    /// Damaged packs (a lost header, or with `read_data` a damaged blob) condemned with the
    /// records of their intact blobs: readable until prune moves what snapshots use.
    pub packs_condemned: u64,
    /// Blobs left out because, read in full, they did not verify.
    pub blobs_damaged: u64,
    pub index_files_written: u64,
    pub index_files_removed: u64,
}

/// Rebuilds the index from every pack's header. With `read_data`, reads each pack in full and
/// leaves out blobs that do not verify, so that the next backup stores them again.
pub fn repair_index(repo: &Repository, read_data: bool) -> Result<RepairIndexReport> {
    let mut report = RepairIndexReport::default();
    let old = repo.index_ids()?;
    // Condemnation files stay: they are how prune finishes what it started.
    let mut keep: HashSet<IndexId> = HashSet::new();
    let mut named: HashSet<PackId> = HashSet::new();
    for id in &old {
        if let Ok(file) = repo.read_index(*id) {
            if !file.condemned.is_empty() {
                keep.insert(*id);
            }
            named.extend(file.packs.iter().map(|p| p.id));
        }
    }
    let condemned = repo.condemned_packs();
    // A pack an old index file names was created before that file: listed without waiting,
    // it could be missing, and removing that file below would lose its blobs.
    let mut packs = repo.list_packs_settled()?;
    packs.sort();
    report.packs = packs.len() as u64;
    // A pack no index names may be another process's, which names it later: indexed here, a
    // prune could delete it before then (repo-format.md, 16.4).
    let others_index = packs.iter().any(|(p, _)| !named.contains(p)) && repo.others_may_index()?;
    let mut batch = IndexBatch::default();
    let mut indexed: Vec<PackId> = Vec::new();
    // Damaged packs: condemned, with the records of their intact blobs (see `salvage`).
    let mut damaged: Vec<IndexPack> = Vec::new();
    for (pack, size) in packs {
        if condemned.contains(&pack) {
            continue;
        }
        if others_index && !named.contains(&pack) {
            report.packs_left += 1;
            continue;
        }
        let record = match repo.read_pack_header(&pack, size) {
            Ok(header) => IndexPack::from_header(pack, size, &header),
            Err(e) if e.kind == ErrorKind::NotFound => return Err(changed_under(&pack)),
            // Not damage (a failing read): repair stops before removing any index file.
            Err(e) if e.kind != ErrorKind::Corrupt => return Err(e),
            Err(e) => {
                // The header is lost, not the blobs: the old index still locates them.
                let known = repo.blobs_in_pack(&pack)?;
                if known.is_empty() {
                    report.packs_unreadable.push((pack, e.message));
                    continue;
                }
                let Some((intact, lost)) = salvage(repo, &pack, size, known)? else {
                    return Err(changed_under(&pack));
                };
                report.blobs_damaged += lost;
                report.packs_salvaged.push((pack, e.message));
                damaged.push(intact);
                continue;
            }
        };
        if read_data {
            let Some((intact, lost)) = salvage(repo, &pack, size, record.blobs.clone())? else {
                return Err(changed_under(&pack));
            };
            if lost > 0 {
                report.blobs_damaged += lost;
                damaged.push(intact);
                continue;
            }
        }
        report.packs_indexed += 1;
        indexed.push(pack);
        batch.push(repo, record)?;
    }
    let mut written = batch.finish(repo)?;
    // A prune that took this process for dead while it was stopped may have deleted packs it
    // read: their records must not outlive the condemnations that hide them.
    let present: HashSet<PackId> = repo
        .list_packs_settled()?
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    if let Some(gone) = indexed.iter().find(|p| !present.contains(p)) {
        for (id, _) in &written {
            repo.remove_index(id)?;
        }
        return Err(changed_under(gone));
    }
    // The damaged packs' condemnation goes before any old index file is removed, so their
    // intact blobs are located all along. Written now, it is none of the `old` files removed.
    report.packs_condemned = damaged.len() as u64;
    written.extend(repo.condemn_damaged(damaged)?);
    report.index_files_written = written.len() as u64;
    for id in old
        .iter()
        .filter(|id| !keep.contains(id) && !written.iter().any(|(w, _)| w == *id))
    {
        repo.remove_index(id)?;
        report.index_files_removed += 1;
    }
    Ok(report)
}

/// Reads `pack` whole and keeps the entries whose blobs open and verify; returns that record
/// and how many were left out. A pack too damaged to read whole (say, longer than any pack may
/// be) keeps its entries unverified: condemned, its blobs are read one by one, and each is
/// verified then.
/// A pack read at the start of a repair is gone: a prune deleted it meanwhile, so what the
/// repair read is stale. It writes nothing that stays, and says to run it again.
fn changed_under(pack: &PackId) -> Error {
    Error::new(
        ErrorKind::Locked,
        format!(
            "pack {} was deleted by a prune while this repair ran (or was stopped); nothing was changed, run `cairn repair index` again",
            pack.short()
        ),
    )
}

/// `None`: the pack was deleted since the listing (a prune had condemned it).
fn salvage(
    repo: &Repository,
    pack: &PackId,
    size: u64,
    entries: Vec<IndexEntry>,
) -> Result<Option<(IndexPack, u64)>> {
    let bytes = match repo.read_pack_unverified(pack) {
        Ok(bytes) => bytes,
        Err(e) if e.kind == ErrorKind::NotFound => return Ok(None),
        Err(e) if e.kind == ErrorKind::Corrupt => {
            let record = IndexPack {
                id: *pack,
                size,
                blobs: entries,
            };
            return Ok(Some((record, 0)));
        }
        Err(e) => return Err(e),
    };
    let before = entries.len() as u64;
    let blobs: Vec<IndexEntry> = entries
        .into_iter()
        .filter(|e| repo.open_entry(pack, &bytes, e).is_ok())
        .collect();
    let lost = before - blobs.len() as u64;
    Ok(Some((
        IndexPack {
            id: *pack,
            size,
            blobs,
        },
        lost,
    )))
}

/// One repaired snapshot: the original, the new one (none in a dry run), and what it lacks.
#[derive(Clone, Debug)]
pub struct RepairedSnapshot {
    pub original: SnapshotId,
    pub repaired: Option<SnapshotId>,
    pub time: i64,
    /// Paths left out, and why.
    pub lost: Vec<(PathBuf, String)>,
}

/// Writes, for every snapshot that reaches a lost blob, a new snapshot without the files and
/// directories that cannot be restored. A blob is lost when the index lacks it, or, with
/// `read_data`, when it does not read back intact. A lost directory stays as an empty directory.
pub fn repair_snapshots(
    repo: &Repository,
    read_data: bool,
    dry_run: bool,
) -> Result<Vec<RepairedSnapshot>> {
    let mut out = Vec::new();
    let mut memo = Memo {
        repo,
        read_data,
        dry_run,
        verdicts: HashMap::new(),
        condemned: repo.condemned_packs(),
        trees: HashMap::new(),
    };
    for (id, snapshot) in repo.snapshots()?.list {
        // Each repaired snapshot is saved in a session of its own, as a backup's is: saving
        // the last one ended its session.
        repo.begin_session()?;
        let mut lost = Vec::new();
        let tree = memo
            .tree(snapshot.tree, Path::new("/"), 0, &mut lost)
            .map_err(|e| Error::new(e.kind, format!("snapshot {}: {e}", id.short())))?;
        if lost.is_empty() {
            continue;
        }
        let mut tags = snapshot.tags.clone();
        if !tags.iter().any(|t| t == REPAIRED_TAG) {
            tags.push(REPAIRED_TAG.to_vec());
        }
        let mut summary = snapshot.summary.clone();
        summary.errors += lost.len() as u64;
        let repaired = Snapshot {
            tree: tree.unwrap_or(snapshot.tree),
            tags,
            parent: Some(id),
            summary,
            program: format!("cairn {} repair", env!("CARGO_PKG_VERSION")).into_bytes(),
            ..snapshot.clone()
        };
        let new_id = if dry_run {
            None
        } else {
            Some(repo.save_snapshot(&repaired)?)
        };
        out.push(RepairedSnapshot {
            original: id,
            repaired: new_id,
            time: snapshot.time,
            lost,
        });
    }
    Ok(out)
}

type LostPaths = Vec<(PathBuf, String)>;

/// The most lost paths listed per tree.
const MAX_LOST: usize = 100_000;

struct Memo<'a> {
    repo: &'a Repository,
    read_data: bool,
    dry_run: bool,
    /// Whether each blob seen so far can be read.
    verdicts: HashMap<BlobId, bool>,
    condemned: HashSet<PackId>,
    /// Trees already repaired (`None` when the tree needed no change), with what they lost,
    /// by path relative to the tree.
    trees: HashMap<TreeId, (Option<TreeId>, LostPaths)>,
}

impl Memo<'_> {
    fn readable(&mut self, blob: BlobId) -> Result<bool> {
        if let Some(v) = self.verdicts.get(&blob) {
            return Ok(*v);
        }
        // A blob found only in a condemned pack is read: `check` condemns damaged packs, and
        // their records may still place a damaged blob there.
        let ok = match self.repo.lookup(&blob)? {
            None => false,
            Some(loc) if !self.read_data && !self.condemned.contains(&loc.pack) => true,
            Some(_) => self.repo.load_blob(&blob).is_ok(),
        };
        self.verdicts.insert(blob, ok);
        Ok(ok)
    }

    /// The repaired version of `id` (`None`: unchanged), `depth` levels below the root,
    /// adding what was left out to `lost` under `path`. An unreadable tree becomes the empty
    /// tree.
    fn tree(
        &mut self,
        id: TreeId,
        path: &Path,
        depth: usize,
        lost: &mut LostPaths,
    ) -> Result<Option<TreeId>> {
        if !self.trees.contains_key(&id) {
            crate::walk::check_depth(depth, path)?;
            let done = self.repair(id, depth)?;
            self.trees.insert(id, done);
        }
        let (result, below) = &self.trees[&id];
        // A subtree reached along many paths would make the list exponentially long.
        let room = MAX_LOST.saturating_sub(lost.len());
        lost.extend(
            below
                .iter()
                .take(room)
                .map(|(p, why)| (path.join(p), why.clone())),
        );
        Ok(*result)
    }

    fn repair(&mut self, id: TreeId, depth: usize) -> Result<(Option<TreeId>, LostPaths)> {
        let mut lost = LostPaths::new();
        let tree = match self.repo.lookup(&id.into())? {
            Some(_) => self.repo.load_tree(id).ok(),
            None => None,
        };
        let Some(tree) = tree else {
            lost.push((PathBuf::new(), "directory listing is lost".into()));
            return Ok((Some(self.save(&Tree::default())?), lost));
        };
        let mut changed = false;
        let mut nodes: Vec<Node> = Vec::with_capacity(tree.nodes.len());
        for mut node in tree.nodes {
            let name = PathBuf::from(OsStr::from_bytes(&node.name));
            if node.kind == NodeKind::File {
                let mut whole = true;
                for c in &node.content {
                    whole &= self.readable(BlobId::from(*c))?;
                }
                if !whole {
                    lost.push((name, "content is lost".into()));
                    changed = true;
                    continue;
                }
            }
            if let Some(sub) = node.subtree {
                if let Some(new) = self.tree(sub, &name, depth + 1, &mut lost)? {
                    node.subtree = Some(new);
                    changed = true;
                }
            }
            nodes.push(node);
        }
        let result = if changed {
            Some(self.save(&Tree { nodes })?)
        } else {
            None
        };
        Ok((result, lost))
    }

    fn save(&self, tree: &Tree) -> Result<TreeId> {
        if self.dry_run {
            Ok(TreeId(self.repo.blob_id(&tree.encode())))
        } else {
            Ok(self.repo.save_tree(tree)?.0)
        }
    }
}
