//! Backup: walk the sources, store what the repository lacks, write a snapshot.
//!
//! Directories are processed depth first; the entries of each directory, and the chunks of each
//! large file, are spread over rayon's workers, so reading, chunking, hashing, compressing and
//! sealing overlap on every core. A file whose size, mtime, ctime and inode match its entry in
//! the parent snapshot is not read: its chunk list is reused, provided the index still has every
//! chunk (a chunk lost to damage is thereby stored again).
//!
//! The sources are walked with directory descriptors: each entry is `lstat`ed, read and opened
//! relative to its directory's descriptor, so paths longer than PATH_MAX are backed up like
//! any other. A file or directory is read only if it is still the one that was listed: it is
//! opened without following symlinks and its descriptor's device, inode and type are compared
//! with the listing, so a user who swaps a file or directory for a symlink between the two
//! never gets the target backed up under their name; such an entry is skipped and reported
//! like an unreadable one.
//!
//! Invariant: the snapshot is written only after every blob it reaches is durable and indexed
//! (`BlobStore::save_snapshot` flushes first), so a killed backup never leaves a snapshot that
//! points at nothing.

use crate::filter::Filter;
use crate::fsmeta::node_from_at;
use crate::walk::{check_depth, depth_of};
use crate::{PathProblem, Result};
use cairn_chunker::Chunker;
use cairn_format::snapshot::{Kind, Snapshot, Summary};
use cairn_format::tree::{Node, NodeKind, Tree, MAX_TREE_DEPTH};
use cairn_format::{DataId, SnapshotId, TreeId};
use cairn_repo::{BlobStore, Error, ErrorKind};
use rayon::prelude::*;
use rustix::fs::{AtFlags, Mode, OFlags};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

pub struct BackupOptions {
    /// Source paths; relative ones are taken from the current directory.
    pub paths: Vec<PathBuf>,
    pub exclude: Filter,
    /// Do not descend into directories on another file system than their parent.
    pub one_file_system: bool,
    pub host: Vec<u8>,
    pub user: Vec<u8>,
    pub tags: Vec<Vec<u8>>,
    /// Snapshot time, nanoseconds since the Unix epoch.
    pub time_ns: i64,
    pub kind: Kind,
    pub parent: Option<(SnapshotId, Snapshot)>,
    pub program: Vec<u8>,
}

/// Counters a progress display reads while a backup runs, and who to tell about each entry.
#[derive(Default)]
pub struct BackupProgress {
    pub files: AtomicU64,
    pub bytes: AtomicU64,
    pub errors: AtomicU64,
    /// Filled in by `estimate`, when the caller runs it.
    pub total_files: AtomicU64,
    pub total_bytes: AtomicU64,
    pub estimated: std::sync::atomic::AtomicBool,
    /// Called for every entry stored (with how it compares with the parent snapshot) and for
    /// every entry of the parent that is gone, from the archiver's worker threads, so in no
    /// particular order. Entries that could not be read are in the outcome's `skipped` instead.
    pub on_entry: Option<Box<EntryListener>>,
}

/// Told the path, type and change of one entry as a backup passes it.
pub type EntryListener = dyn Fn(&Path, NodeKind, EntryChange) + Send + Sync;

/// How an entry of a backup compares with the same path in the parent snapshot. A file counts
/// as its summary counts it (`files_new`, `files_changed`, ...): changed when it was read again
/// because its size, mtime, ctime or inode differ. Other entries are changed when their own
/// metadata or target is; a directory's mtime is left out, since it moves with every entry
/// added or removed, which are listed themselves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryChange {
    /// Not in the parent snapshot (or there as another type).
    New,
    Changed,
    Unchanged,
    /// In the parent snapshot, gone from the source; below a gone directory, every entry.
    Deleted,
}

pub struct BackupOutcome {
    pub id: SnapshotId,
    pub snapshot: Snapshot,
    pub skipped: Vec<PathProblem>,
}

/// Makes source paths absolute and lexically clean, checks that they exist, and drops those
/// inside another source. Fails before anything is written.
pub fn normalize_sources(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = Vec::new();
    for p in paths {
        let abs = std::path::absolute(p).map_err(|e| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("source path {}: {e}", p.display()),
            )
        })?;
        let mut clean = PathBuf::from("/");
        for c in abs.components() {
            match c {
                Component::Normal(n) => clean.push(n),
                Component::ParentDir => {
                    clean.pop();
                }
                _ => {}
            }
        }
        if let Err(e) = std::fs::symlink_metadata(&clean) {
            let why = if e.kind() == io::ErrorKind::NotFound {
                "does not exist".to_string()
            } else {
                e.to_string()
            };
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("source path {} {why}", p.display()),
            ));
        }
        // The directories leading to a source are stored as directories, so symlinks among them
        // are resolved; the source itself is kept as it is (a symlink stays a symlink).
        if let (Some(parent), Some(name)) = (clean.parent(), clean.file_name()) {
            if let Ok(real) = std::fs::canonicalize(parent) {
                clean = real.join(name);
            }
        }
        out.push(clean);
    }
    out.sort();
    out.dedup();
    let all = out.clone();
    out.retain(|p| !all.iter().any(|q| q != p && p.starts_with(q)));
    Ok(out)
}

/// The part of the file system to back up: whole entries, and the directories leading to them.
enum BackupScope {
    Whole,
    Partial(BTreeMap<Vec<u8>, BackupScope>),
}

fn plan(sources: &[PathBuf]) -> BackupScope {
    let mut root = BackupScope::Partial(BTreeMap::new());
    for src in sources {
        let mut at = &mut root;
        for c in src.components() {
            let Component::Normal(name) = c else { continue };
            let BackupScope::Partial(children) = at else {
                break;
            };
            at = children
                .entry(name.as_bytes().to_vec())
                .or_insert_with(|| BackupScope::Partial(BTreeMap::new()));
        }
        *at = BackupScope::Whole;
    }
    root
}

/// Stack of the archiver's threads: room for `MAX_TREE_DEPTH` levels of directories.
const ARCHIVER_STACK: usize = 64 << 20;

struct Ctx<'a> {
    repo: &'a dyn BlobStore,
    opts: &'a BackupOptions,
    chunker: Chunker,
    progress: &'a BackupProgress,
    skipped: Mutex<Vec<PathProblem>>,
    /// Content of files with several hard links seen so far, by (device, inode).
    hardlinks: Mutex<HashMap<(u64, u64), Vec<DataId>>>,
    new: AtomicU64,
    changed: AtomicU64,
    unchanged: AtomicU64,
    deleted: AtomicU64,
    /// Files below each tree of the parent snapshot counted for `deleted`: a subtree reached
    /// along many paths is counted once.
    files_below: Mutex<HashMap<TreeId, u64>>,
    dirs: AtomicU64,
    files: AtomicU64,
    bytes: AtomicU64,
    bytes_read: AtomicU64,
}

enum Failure {
    /// The source entry is at fault: skip it and go on.
    Source(io::Error),
    /// The repository is at fault: the backup cannot go on.
    Repo(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::Repo(e)
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        Failure::Source(e)
    }
}

pub fn backup(
    repo: &dyn BlobStore,
    opts: &BackupOptions,
    progress: &BackupProgress,
) -> Result<BackupOutcome> {
    let started = Instant::now();
    let sources = normalize_sources(&opts.paths)?;
    let ctx = Ctx {
        repo,
        opts,
        chunker: repo.chunker(),
        progress,
        skipped: Mutex::default(),
        hardlinks: Mutex::default(),
        new: AtomicU64::new(0),
        changed: AtomicU64::new(0),
        unchanged: AtomicU64::new(0),
        deleted: AtomicU64::new(0),
        files_below: Mutex::default(),
        dirs: AtomicU64::new(0),
        files: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        bytes_read: AtomicU64::new(0),
    };
    let parent_tree = opts.parent.as_ref().map(|(_, s)| s.tree);
    let root = Path::new("/");
    let root_fd = rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::new(ErrorKind::Io, format!("cannot open /: {e}")))?;
    // Each directory level nests a parallel job in the one above it, a few KiB of stack per
    // level: MAX_TREE_DEPTH levels need more than the 2 MiB threads get by default. Only the
    // pages touched are committed.
    let pool = rayon::ThreadPoolBuilder::new()
        .stack_size(ARCHIVER_STACK)
        .build()
        .map_err(|e| Error::new(ErrorKind::Io, format!("cannot start threads: {e}")))?;
    let tree = pool.install(|| match plan(&sources) {
        BackupScope::Whole => {
            let dev = rustix::fs::fstat(&root_fd).map(|st| st.st_dev).unwrap_or(0);
            ctx.dir(root, root_fd.as_fd(), dev, parent_tree)
        }
        BackupScope::Partial(children) => {
            ctx.partial(root, root_fd.as_fd(), &children, parent_tree)
        }
    })?;
    let stats = repo.write_stats();
    let skipped = ctx.skipped.into_inner().unwrap();
    let summary = Summary {
        files_new: ctx.new.into_inner(),
        files_changed: ctx.changed.into_inner(),
        files_unchanged: ctx.unchanged.into_inner(),
        files_deleted: ctx.deleted.into_inner(),
        dirs: ctx.dirs.into_inner(),
        total_files: ctx.files.into_inner(),
        total_bytes: ctx.bytes.into_inner(),
        bytes_read: ctx.bytes_read.into_inner(),
        blobs_added: stats.blobs,
        bytes_added: stats.stored_bytes,
        errors: skipped.len() as u64,
        duration_ns: started.elapsed().as_nanos() as u64,
    };
    let snapshot = Snapshot {
        time: opts.time_ns,
        host: opts.host.clone(),
        user: opts.user.clone(),
        paths: sources
            .iter()
            .map(|p| p.as_os_str().as_bytes().to_vec())
            .collect(),
        tags: opts.tags.clone(),
        kind: opts.kind,
        parent: opts.parent.as_ref().map(|(id, _)| *id),
        tree,
        summary,
        program: opts.program.clone(),
    };
    let id = repo.save_snapshot(&snapshot)?;
    Ok(BackupOutcome {
        id,
        snapshot,
        skipped,
    })
}

impl Ctx<'_> {
    fn skip(&self, path: &Path, e: &io::Error) {
        self.progress.errors.fetch_add(1, Ordering::Relaxed);
        self.skipped.lock().unwrap().push(PathProblem {
            path: path.to_path_buf(),
            reason: e.to_string(),
        });
    }

    /// A directory of the parent snapshot, to compare with. One whose tree is gone (the parent
    /// was forgotten and pruned while this backup ran) is compared with nothing: its files are
    /// read again.
    fn load_parent(&self, tree: Option<TreeId>) -> Result<Option<Tree>> {
        match tree.map(|t| self.repo.load_tree(t)).transpose() {
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            r => r,
        }
    }

    /// A directory (`path`, open as `dir`) of which only some entries are sources.
    fn partial(
        &self,
        path: &Path,
        dir: BorrowedFd<'_>,
        children: &BTreeMap<Vec<u8>, BackupScope>,
        parent: Option<TreeId>,
    ) -> Result<TreeId> {
        let parent = self.load_parent(parent)?;
        let dev = rustix::fs::fstat(dir).map(|st| st.st_dev).unwrap_or(0);
        let mut nodes = Vec::new();
        for (name, plan) in children {
            let child = path.join(OsStr::from_bytes(name));
            let parent_node = parent.as_ref().and_then(|t| t.find(name));
            let node = match plan {
                BackupScope::Whole => self.entry(&child, dir, name, dev, parent_node)?,
                BackupScope::Partial(grand) => match self.list_dir(dir, name, &child) {
                    Ok((mut node, sub_dir)) => {
                        self.dirs.fetch_add(1, Ordering::Relaxed);
                        self.tell(&child, &node, entry_change(&node, parent_node));
                        let sub_parent = parent_node.and_then(|n| n.subtree);
                        node.subtree =
                            Some(self.partial(&child, sub_dir.as_fd(), grand, sub_parent)?);
                        Some(node)
                    }
                    Err(e) => {
                        self.skip(&child, &e);
                        None
                    }
                },
            };
            nodes.extend(node);
        }
        Ok(self.repo.save_tree(&Tree { nodes })?.0)
    }

    /// The node of directory `name` in `dir`, and the directory open for reaching the sources
    /// below it: with `O_PATH`, which needs only search permission, as walking by path did.
    fn list_dir(
        &self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        path: &Path,
    ) -> io::Result<(Node, OwnedFd)> {
        let name_os = OsStr::from_bytes(name);
        let st = rustix::fs::statat(dir, name_os, AtFlags::SYMLINK_NOFOLLOW)?;
        let node = node_from_at(dir, name, path, &st)?;
        if node.kind != NodeKind::Dir {
            return Err(io::Error::other("not a directory"));
        }
        let fd = open_listed(dir, name_os, OFlags::DIRECTORY | OFlags::PATH, &node)?;
        Ok((node, fd))
    }

    /// A whole directory (`path`, open as `dir`): every entry not excluded.
    fn dir(
        &self,
        path: &Path,
        dir: BorrowedFd<'_>,
        dev: u64,
        parent: Option<TreeId>,
    ) -> Result<TreeId> {
        let mut names: Vec<Vec<u8>> = Vec::new();
        match rustix::fs::Dir::read_from(dir) {
            Ok(listing) => {
                for entry in listing {
                    match entry {
                        Ok(e) => {
                            let name = e.file_name().to_bytes();
                            if name != b"." && name != b".." {
                                names.push(name.to_vec());
                            }
                        }
                        Err(e) => {
                            self.skip(path, &e.into());
                            break;
                        }
                    }
                }
            }
            Err(e) => self.skip(path, &e.into()),
        }
        names.retain(|n| !self.opts.exclude.matches(&path.join(OsStr::from_bytes(n))));
        names.sort();
        let parent = self.load_parent(parent)?;
        let nodes: Vec<Option<Node>> = names
            .par_iter()
            .map(|name| {
                let parent_node = parent.as_ref().and_then(|t| t.find(name));
                self.entry(
                    &path.join(OsStr::from_bytes(name)),
                    dir,
                    name,
                    dev,
                    parent_node,
                )
            })
            .collect::<Result<_>>()?;
        if let Some(parent) = &parent {
            let present: HashSet<&[u8]> = names.iter().map(Vec::as_slice).collect();
            for gone in parent
                .nodes
                .iter()
                .filter(|n| !present.contains(n.name.as_slice()))
            {
                let gone_path = path.join(OsStr::from_bytes(&gone.name));
                self.count_deleted(gone, &gone_path)?;
                if self.progress.on_entry.is_some() {
                    self.list_deleted(gone, &gone_path, depth_of(&gone_path))?;
                }
            }
        }
        let tree = Tree {
            nodes: nodes.into_iter().flatten().collect(),
        };
        // A directory too large for one tree (repo-format.md, "Limits") stops the backup,
        // naming it.
        let saved = self
            .repo
            .save_tree(&tree)
            .map_err(|e| Error::new(e.kind, format!("{}: {e}", path.display())))?;
        Ok(saved.0)
    }

    /// Tells the caller's listener, if any, about the entry `node` at `path`.
    fn tell(&self, path: &Path, node: &Node, change: EntryChange) {
        if let Some(listener) = &self.progress.on_entry {
            listener(path, node.kind, change);
        }
    }

    /// Tells the listener about `node`, at `path`, gone since the parent snapshot, and about
    /// everything below it. Only run for a listener: unlike the count, it cannot be memoized,
    /// and walks every path to a subtree as `diff` does.
    fn list_deleted(&self, node: &Node, path: &Path, depth: usize) -> Result<()> {
        self.tell(path, node, EntryChange::Deleted);
        if let (NodeKind::Dir, Some(sub)) = (node.kind, node.subtree) {
            check_depth(depth, path)?;
            for child in self
                .load_parent(Some(sub))?
                .into_iter()
                .flat_map(|t| t.nodes)
            {
                let below = path.join(OsStr::from_bytes(&child.name));
                self.list_deleted(&child, &below, depth + 1)?;
            }
        }
        Ok(())
    }

    /// Counts the files of `node`, at `path`, gone since the parent snapshot.
    fn count_deleted(&self, node: &Node, path: &Path) -> Result<()> {
        let n = match (node.kind, node.subtree) {
            (NodeKind::File, _) => 1,
            (NodeKind::Dir, Some(sub)) => self.files_below(sub, path, depth_of(path))?,
            _ => 0,
        };
        self.deleted.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    /// The files below the parent snapshot's `tree`, the directory at `path`, `depth` levels
    /// below the root. Memoized, since a crafted parent can reach one subtree along 2^64 paths.
    fn files_below(&self, tree: TreeId, path: &Path, depth: usize) -> Result<u64> {
        if let Some(&n) = self.files_below.lock().unwrap().get(&tree) {
            return Ok(n);
        }
        check_depth(depth, path)?;
        let mut n: u64 = 0;
        for node in self
            .load_parent(Some(tree))?
            .into_iter()
            .flat_map(|t| t.nodes)
        {
            n = n.saturating_add(match (node.kind, node.subtree) {
                (NodeKind::File, _) => 1,
                (NodeKind::Dir, Some(sub)) => {
                    let below = path.join(OsStr::from_bytes(&node.name));
                    self.files_below(sub, &below, depth + 1)?
                }
                _ => 0,
            });
        }
        self.files_below.lock().unwrap().insert(tree, n);
        Ok(n)
    }

    /// Entry `name` (at `path`) of directory `dir`, which is on device `dir_dev`; `None` when
    /// it could not be read.
    fn entry(
        &self,
        path: &Path,
        dir: BorrowedFd<'_>,
        name: &[u8],
        dir_dev: u64,
        parent: Option<&Node>,
    ) -> Result<Option<Node>> {
        let st = match rustix::fs::statat(dir, OsStr::from_bytes(name), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(e) => {
                self.skip(path, &e.into());
                return Ok(None);
            }
        };
        let mut node = match node_from_at(dir, name, path, &st) {
            Ok(n) => n,
            Err(e) => {
                self.skip(path, &e);
                return Ok(None);
            }
        };
        match node.kind {
            // Its tree would be deeper than a snapshot may hold (repo-format.md, "Limits"):
            // readers could not walk it.
            NodeKind::Dir if depth_of(path) > MAX_TREE_DEPTH => {
                let why = format!(
                    "directory is nested deeper than {MAX_TREE_DEPTH} directories, the most a snapshot may hold: not backed up"
                );
                self.skip(path, &io::Error::other(why));
                return Ok(None);
            }
            NodeKind::Dir => {
                self.dirs.fetch_add(1, Ordering::Relaxed);
                self.tell(path, &node, entry_change(&node, parent));
                let sub = if self.opts.one_file_system && node.dev != dir_dev {
                    self.repo.save_tree(&Tree::default())?.0
                } else {
                    let parent_sub = parent
                        .filter(|p| p.kind == NodeKind::Dir)
                        .and_then(|p| p.subtree);
                    match open_listed(dir, OsStr::from_bytes(name), OFlags::DIRECTORY, &node) {
                        Ok(sub_dir) => self.dir(path, sub_dir.as_fd(), node.dev, parent_sub)?,
                        Err(e) => {
                            // Listed with nothing in it, as a directory that cannot be read.
                            self.skip(path, &e);
                            self.repo.save_tree(&Tree::default())?.0
                        }
                    }
                };
                node.subtree = Some(sub);
            }
            NodeKind::File => match self.file(dir, &mut node, parent) {
                Ok(change) => self.tell(path, &node, change),
                Err(Failure::Source(e)) => {
                    self.skip(path, &e);
                    return Ok(None);
                }
                Err(Failure::Repo(e)) => return Err(e),
            },
            _ => self.tell(path, &node, entry_change(&node, parent)),
        }
        Ok(Some(node))
    }

    fn file(
        &self,
        dir: BorrowedFd<'_>,
        node: &mut Node,
        parent: Option<&Node>,
    ) -> std::result::Result<EntryChange, Failure> {
        let parent = parent.filter(|p| p.kind == NodeKind::File);
        let unchanged = match parent {
            Some(p)
                if p.size == node.size
                    && p.mtime == node.mtime
                    && p.ctime == node.ctime
                    && p.inode == node.inode =>
            {
                self.all_stored(&p.content)?
            }
            _ => false,
        };
        if unchanged {
            node.content = parent.unwrap().content.clone();
            self.unchanged.fetch_add(1, Ordering::Relaxed);
        } else {
            let link_key = (node.links > 1).then_some((node.dev, node.inode));
            let known = link_key.and_then(|k| self.hardlinks.lock().unwrap().get(&k).cloned());
            match known {
                Some(content) => node.content = content,
                None => {
                    let (content, size) = self.read_content(dir, node)?;
                    node.content = content;
                    node.size = size;
                    if let Some(k) = link_key {
                        self.hardlinks
                            .lock()
                            .unwrap()
                            .insert(k, node.content.clone());
                    }
                }
            }
            let counter = if parent.is_some() {
                &self.changed
            } else {
                &self.new
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        self.files.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(node.size, Ordering::Relaxed);
        self.progress.files.fetch_add(1, Ordering::Relaxed);
        if unchanged {
            self.progress.bytes.fetch_add(node.size, Ordering::Relaxed);
        }
        Ok(match (unchanged, parent) {
            (true, _) => EntryChange::Unchanged,
            (false, Some(_)) => EntryChange::Changed,
            (false, None) => EntryChange::New,
        })
    }

    fn all_stored(&self, content: &[DataId]) -> Result<bool> {
        for c in content {
            if !self.repo.has_data(*c)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Reads, chunks and stores a file's content; returns its chunk ids and length. The buffer
    /// holds at least two maximal chunks, so a window always yields a chunk; the chunks of one
    /// window are stored in parallel, which keeps every core busy on a single large file.
    fn read_content(
        &self,
        dir: BorrowedFd<'_>,
        listed: &Node,
    ) -> std::result::Result<(Vec<DataId>, u64), Failure> {
        let mut file = open_source(dir, listed)?;
        let window = (2 * self.chunker.max_size()).max(16 << 20);
        let size_hint = file.metadata().map(|m| m.len() as usize).unwrap_or(window);
        let mut buf = vec![0u8; (size_hint + 1).min(window)];
        let mut filled = 0;
        let mut eof = false;
        let mut content = Vec::new();
        let mut total = 0u64;
        while !eof || filled > 0 {
            while filled < buf.len() && !eof {
                match file.read(&mut buf[filled..]) {
                    Ok(0) => eof = true,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(Failure::Source(e)),
                }
            }
            let mut cuts = Vec::new();
            let mut start = 0;
            while start < filled {
                match self.chunker.next_boundary(&buf[start..filled], eof) {
                    Some(cut) => {
                        cuts.push(start..start + cut);
                        start += cut;
                    }
                    None => break,
                }
            }
            if cuts.is_empty() && !eof {
                // The file grew past its size at open: make room for a maximal chunk.
                buf.resize(window, 0);
                continue;
            }
            let store = |range: &std::ops::Range<usize>| -> Result<DataId> {
                let chunk = &buf[range.clone()];
                let (id, _) = self.repo.save_data(chunk)?;
                self.progress
                    .bytes
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                Ok(id)
            };
            let ids: Vec<DataId> = if cuts.len() > 1 {
                cuts.par_iter().map(store).collect::<Result<_>>()?
            } else {
                cuts.iter().map(store).collect::<Result<_>>()?
            };
            content.extend(ids);
            total += start as u64;
            buf.copy_within(start..filled, 0);
            filled -= start;
        }
        self.bytes_read.fetch_add(total, Ordering::Relaxed);
        Ok((content, total))
    }
}

/// How `node`, an entry other than a file, compares with `parent`, its namesake in the parent
/// snapshot (files are judged by `Ctx::file`, which knows whether it read them).
fn entry_change(node: &Node, parent: Option<&Node>) -> EntryChange {
    let Some(p) = parent.filter(|p| p.kind == node.kind) else {
        return EntryChange::New;
    };
    let same = p.mode == node.mode
        && p.uid == node.uid
        && p.gid == node.gid
        && p.xattrs == node.xattrs
        && p.target == node.target
        && p.rdev == node.rdev
        && (node.kind == NodeKind::Dir || p.mtime == node.mtime);
    if same {
        EntryChange::Unchanged
    } else {
        EntryChange::Changed
    }
}

/// Opens entry `name` of `dir` (with `extra` flags), provided it is still the entry that was
/// listed (`listed`, from its `lstat`): never through a symlink (`O_NOFOLLOW`), and the opened
/// inode's device, number and type must match the listing, or the entry changed under us and
/// is skipped like an unreadable one. `O_NOATIME` leaves access times alone where the entry's
/// owner (or root) backs it up, and is dropped where it is refused.
fn open_listed(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    extra: OFlags,
    listed: &Node,
) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | extra;
    let fd = match rustix::fs::openat(dir, name, flags | OFlags::NOATIME, Mode::empty()) {
        Err(rustix::io::Errno::PERM) => rustix::fs::openat(dir, name, flags, Mode::empty())?,
        r => r?,
    };
    let st = rustix::fs::fstat(&fd)?;
    // Only directories and regular files are opened.
    let want = match listed.kind {
        NodeKind::Dir => rustix::fs::FileType::Directory,
        _ => rustix::fs::FileType::RegularFile,
    };
    let is = rustix::fs::FileType::from_raw_mode(st.st_mode);
    if is != want || st.st_dev != listed.dev || st.st_ino != listed.inode {
        return Err(io::Error::other(
            "it changed between listing and reading, not backed up",
        ));
    }
    Ok(fd)
}

/// Opens the source file `listed` (by its name in `dir`) for reading, as `open_listed` does.
/// `O_NONBLOCK` keeps a fifo swapped in from blocking the open, and is cleared once the entry
/// is known to be the regular file listed.
fn open_source(dir: BorrowedFd<'_>, listed: &Node) -> io::Result<std::fs::File> {
    let name = OsStr::from_bytes(&listed.name);
    let fd = open_listed(dir, name, OFlags::NONBLOCK, listed)?;
    let flags = rustix::fs::fcntl_getfl(&fd)?;
    rustix::fs::fcntl_setfl(&fd, flags - OFlags::NONBLOCK)?;
    Ok(std::fs::File::from(fd))
}

/// Counts the files and bytes a backup of `paths` will visit, for a progress display's ETA. It
/// only stats, and runs beside the backup.
pub fn estimate(
    paths: &[PathBuf],
    exclude: &Filter,
    one_file_system: bool,
    progress: &BackupProgress,
) {
    fn walk(path: &Path, dev: u64, exclude: &Filter, one_fs: bool, progress: &BackupProgress) {
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            return;
        };
        if meta.is_file() {
            progress.total_files.fetch_add(1, Ordering::Relaxed);
            progress
                .total_bytes
                .fetch_add(meta.len(), Ordering::Relaxed);
        } else if meta.is_dir() && !(one_fs && meta.dev() != dev) {
            let Ok(rd) = std::fs::read_dir(path) else {
                return;
            };
            for entry in rd.flatten() {
                let child = entry.path();
                if !exclude.matches(&child) {
                    walk(&child, meta.dev(), exclude, one_fs, progress);
                }
            }
        }
    }
    for p in paths {
        let dev = std::fs::symlink_metadata(p).map(|m| m.dev()).unwrap_or(0);
        walk(p, dev, exclude, one_file_system, progress);
    }
    progress.estimated.store(true, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_sources_collapse_into_their_ancestor() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::create_dir_all(a.join("b")).unwrap();
        let got = normalize_sources(&[a.join("b"), a.clone(), a.join("./b/..")]).unwrap();
        assert_eq!(got, vec![a]);
        let err = normalize_sources(&[dir.path().join("missing")]).unwrap_err();
        assert!(err.message.contains("does not exist"), "{}", err.message);
    }

    /// The node of `path` as a listing makes it.
    fn listed(path: &Path) -> Node {
        let dir = open_parent(path);
        let name = path.file_name().unwrap();
        let st = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW).unwrap();
        node_from_at(dir.as_fd(), name.as_bytes(), path, &st).unwrap()
    }

    fn open_parent(path: &Path) -> OwnedFd {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY;
        rustix::fs::open(path.parent().unwrap(), flags, Mode::empty()).unwrap()
    }

    /// `open_source` of `path` as if it were the entry `listed`.
    fn open_as(path: &Path, listed: &Node) -> io::Result<std::fs::File> {
        let mut listed = listed.clone();
        listed.name = path.file_name().unwrap().as_bytes().to_vec();
        open_source(open_parent(path).as_fd(), &listed)
    }

    /// Regression: backup `lstat`ed a path and then opened it following symlinks, so a file
    /// swapped for a symlink in between was read through it (a user's link to a file only root
    /// may read went into the backup under the user's name).
    #[test]
    fn a_source_swapped_for_a_symlink_is_not_read_through() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "root's only").unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "mine").unwrap();
        let node = listed(&path);
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&secret, &path).unwrap();
        let err = open_as(&path, &node).unwrap_err();
        assert_eq!(
            err.raw_os_error(),
            Some(rustix::io::Errno::LOOP.raw_os_error())
        );
        // Even a symlink to the very inode that was listed is not followed.
        let err = open_as(&path, &listed(&secret)).unwrap_err();
        assert_eq!(
            err.raw_os_error(),
            Some(rustix::io::Errno::LOOP.raw_os_error())
        );
    }

    /// Regression: a file replaced between listing and reading (another inode, or a fifo that
    /// would block the open) was read as if it were the listed one.
    #[test]
    fn a_source_replaced_after_listing_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "listed").unwrap();
        let node = listed(&path);
        let other = dir.path().join("other");
        std::fs::write(&other, "another inode").unwrap();
        std::fs::rename(&other, &path).unwrap();
        let err = open_as(&path, &node).unwrap_err();
        assert!(err.to_string().contains("changed"), "{err}");

        std::fs::remove_file(&path).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &path,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let err = open_as(&path, &node).unwrap_err();
        assert!(err.to_string().contains("changed"), "{err}");

        // The file as listed opens.
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "listed").unwrap();
        let node = listed(&path);
        let mut back = String::new();
        open_as(&path, &node)
            .unwrap()
            .read_to_string(&mut back)
            .unwrap();
        assert_eq!(back, "listed");
    }
}
