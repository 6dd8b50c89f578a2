//! Restore: plan what to write from a snapshot's trees, then carry the plan out.
//!
//! Content is written pack by pack: each pack is read once (one ranged read covering the blobs
//! the restore needs from it), its blobs are opened and verified, and each is written to every
//! place it belongs. Packs are spread over rayon's workers. Files are created at full length
//! first, and chunks that are all zeros are not written, so holes stay holes. Metadata is applied
//! after content, directories last and deepest first, so writing into a directory does not
//! disturb its restored mtime.
//!
//! Invariant: a file whose content could not be fully verified is removed, never left with
//! wrong bytes, and reported.

use crate::filter::Filter;
use crate::fsmeta;
use crate::{Result, Skipped};
use cairn_format::tree::{FileTime, Node, NodeKind};
use cairn_format::{BlobId, DataId, PackId, TreeId};
use cairn_repo::{Error, ErrorKind, Location, Repository};
use rayon::prelude::*;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

pub struct RestoreOptions {
    pub target: PathBuf,
    /// When not empty, restore only matching paths (and everything below a matching directory).
    pub include: Filter,
    pub exclude: Filter,
    /// Plan only: report what would be written.
    pub dry_run: bool,
    /// Restore owners (needs root).
    pub owners: bool,
    /// After writing, read every restored file back and compare it with the snapshot.
    pub verify: bool,
}

#[derive(Default)]
pub struct RestoreProgress {
    pub total_bytes: AtomicU64,
    pub total_files: AtomicU64,
    pub bytes: AtomicU64,
    pub files: AtomicU64,
}

#[derive(Default)]
pub struct RestoreOutcome {
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
    /// Files found complete and correct in the target (an earlier, interrupted restore wrote
    /// them), left as they were.
    pub files_kept: u64,
    /// Files read back and found equal to the snapshot (with `verify`).
    pub files_verified: u64,
    /// Paths written (or, with `dry_run`, that would be), relative to the target.
    pub planned: Vec<PathBuf>,
    /// Entries that could not be restored, or (with `verify`) differ from the snapshot.
    pub errors: Vec<Skipped>,
    /// Entries restored without some of their metadata (owner, mode, times, xattrs).
    pub warnings: Vec<Skipped>,
}

#[derive(Default)]
struct Plan {
    dirs: Vec<(PathBuf, Node)>,
    files: Vec<(PathBuf, Node)>,
    /// Further names of a file in `files`, restored as hard links to it.
    links: Vec<(PathBuf, usize)>,
    specials: Vec<(PathBuf, Node)>,
    link_groups: HashMap<(u64, u64), usize>,
}

struct Planner<'a> {
    repo: &'a Repository,
    opts: &'a RestoreOptions,
    plan: Plan,
    /// Directories whose listing cannot be read: everything below them is lost, the rest is not.
    lost: Vec<Skipped>,
    /// Such directories outside what `--include` selects: something selected may have been
    /// below them, or not.
    unsure: Vec<Skipped>,
}

impl Planner<'_> {
    /// Adds the entries of `tree`; returns whether anything was added.
    fn tree(
        &mut self,
        tree: TreeId,
        snap_path: &Path,
        target: &Path,
        included: bool,
    ) -> Result<bool> {
        // Bounds the recursion whatever the snapshot (repo-format.md, "Limits").
        crate::walk::check_depth(crate::walk::depth_of(snap_path), snap_path)?;
        let tree = match self.repo.load_tree(tree) {
            Ok(tree) => tree,
            Err(e) if matches!(e.kind, ErrorKind::Corrupt | ErrorKind::NotFound) => {
                let lost = Skipped {
                    path: target.to_path_buf(),
                    reason: format!("directory listing is lost: {e}"),
                };
                if included || self.opts.include.is_empty() {
                    self.lost.push(lost);
                } else {
                    self.unsure.push(lost);
                }
                return Ok(included);
            }
            Err(e) => return Err(e),
        };
        let mut any = false;
        for node in tree.nodes {
            let name = OsStr::from_bytes(&node.name);
            let path = snap_path.join(name);
            if self.opts.exclude.matches(&path) {
                continue;
            }
            let inc = included || self.opts.include.is_empty() || self.opts.include.matches(&path);
            let dest = target.join(name);
            match node.kind {
                NodeKind::Dir => {
                    let at = self.plan.dirs.len();
                    let sub = node.subtree;
                    self.plan.dirs.push((dest.clone(), node));
                    let below = match sub {
                        Some(sub) => self.tree(sub, &path, &dest, inc)?,
                        None => false,
                    };
                    if inc || below {
                        any = true;
                    } else {
                        self.plan.dirs.truncate(at);
                    }
                }
                _ if !inc => {}
                NodeKind::File => {
                    any = true;
                    if node.links > 1 {
                        if let Some(&first) = self.plan.link_groups.get(&(node.dev, node.inode)) {
                            self.plan.links.push((dest, first));
                            continue;
                        }
                        self.plan
                            .link_groups
                            .insert((node.dev, node.inode), self.plan.files.len());
                    }
                    self.plan.files.push((dest, node));
                }
                _ => {
                    any = true;
                    self.plan.specials.push((dest, node));
                }
            }
        }
        Ok(any)
    }
}

/// Where each chunk of each file goes: (file index, offset in file).
type Targets = Vec<(usize, u64)>;
type PackWork = Vec<(Location, BlobId, Targets)>;

/// The state the steps of one restore share.
struct Run<'a> {
    repo: &'a Repository,
    opts: &'a RestoreOptions,
    progress: &'a RestoreProgress,
    files: &'a [(PathBuf, Node)],
    /// Where every chunk of the planned files is stored.
    locations: HashMap<DataId, Location>,
    /// Files that cannot be created or filled, by index into `files`, and why.
    failed: Mutex<HashMap<usize, String>>,
    /// Chunk writes each file still waits for; its metadata is applied when this reaches zero,
    /// so a file whose mtime is restored is complete (what resuming relies on).
    remaining: Vec<AtomicU64>,
    warnings: Mutex<Vec<Skipped>>,
}

pub fn restore(
    repo: &Repository,
    root: TreeId,
    opts: &RestoreOptions,
    progress: &RestoreProgress,
) -> Result<RestoreOutcome> {
    if let Ok(meta) = fs::symlink_metadata(&opts.target) {
        if !meta.is_dir() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "restore target {} exists and is not a directory",
                    opts.target.display()
                ),
            ));
        }
    }
    let mut planner = Planner {
        repo,
        opts,
        plan: Plan::default(),
        lost: Vec::new(),
        unsure: Vec::new(),
    };
    planner.tree(root, Path::new("/"), &opts.target, false)?;
    let plan = planner.plan;
    let lost = planner.lost;
    let unsure = planner.unsure;

    let mut outcome = RestoreOutcome {
        files: (plan.files.len() + plan.links.len()) as u64,
        dirs: plan.dirs.len() as u64,
        bytes: plan.files.iter().map(|(_, n)| n.size).sum(),
        ..RestoreOutcome::default()
    };
    progress.total_bytes.store(outcome.bytes, Ordering::Relaxed);
    progress.total_files.store(outcome.files, Ordering::Relaxed);
    let relative = |p: &Path| p.strip_prefix(&opts.target).unwrap_or(p).to_path_buf();
    outcome.planned = plan
        .dirs
        .iter()
        .map(|(p, _)| p)
        .chain(plan.files.iter().map(|(p, _)| p))
        .chain(plan.links.iter().map(|(p, _)| p))
        .chain(plan.specials.iter().map(|(p, _)| p))
        .map(|p| relative(p))
        .collect();
    if opts.dry_run {
        outcome.errors = lost;
        outcome.warnings = unsure;
        return Ok(outcome);
    }

    fs::create_dir_all(&opts.target).map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!(
                "cannot create restore target {}: {e}",
                opts.target.display()
            ),
        )
    })?;
    let mut errors = lost;
    for (path, _) in &plan.dirs {
        if let Err(e) = make_dir(path) {
            errors.push(Skipped {
                path: path.clone(),
                reason: e.to_string(),
            });
        }
    }

    let mut run = Run {
        repo,
        opts,
        progress,
        files: &plan.files,
        locations: HashMap::new(),
        failed: Mutex::default(),
        remaining: plan.files.iter().map(|_| AtomicU64::new(0)).collect(),
        warnings: Mutex::default(),
    };
    run.resolve()?;
    let kept = run.keep_complete_files();
    outcome.files_kept = kept.len() as u64;
    let packs = run.create_files(&kept);
    packs
        .par_iter()
        .for_each(|(pack, blobs)| run.restore_pack(pack, blobs));

    let failed = std::mem::take(&mut *run.failed.lock().unwrap());
    for (i, reason) in &failed {
        let path = &plan.files[*i].0;
        let _ = fs::remove_file(path);
        errors.push(Skipped {
            path: path.clone(),
            reason: reason.clone(),
        });
    }
    for (path, first) in &plan.links {
        if failed.contains_key(first) {
            errors.push(Skipped {
                path: path.clone(),
                reason: "its hard-link target could not be restored".into(),
            });
            continue;
        }
        let _ = remove_non_dir(path);
        if let Err(e) = fs::hard_link(&plan.files[*first].0, path) {
            errors.push(Skipped {
                path: path.clone(),
                reason: e.to_string(),
            });
        }
    }
    for (path, node) in &plan.specials {
        let _ = remove_non_dir(path);
        let made = match node.kind {
            NodeKind::Symlink => std::os::unix::fs::symlink(OsStr::from_bytes(&node.target), path),
            // A socket is recreated by whatever program listens on it.
            NodeKind::Socket => continue,
            _ => fsmeta::make_special(path, node),
        };
        match made {
            Ok(()) => run.apply(path, node),
            Err(e) => errors.push(Skipped {
                path: path.clone(),
                reason: e.to_string(),
            }),
        }
    }
    plan.dirs.iter().rev().for_each(|(p, n)| run.apply(p, n));

    if opts.verify {
        // With the index of each file whose bytes are known to be wrong.
        let mismatches: Vec<(Option<usize>, Skipped)> = plan
            .files
            .par_iter()
            .enumerate()
            .filter(|(i, _)| !failed.contains_key(i))
            .filter_map(|(i, (path, node))| match run.differs(path, node) {
                Ok(None) => None,
                Ok(Some(why)) => Some((
                    Some(i),
                    Skipped {
                        path: path.clone(),
                        reason: format!("verify: {why}"),
                    },
                )),
                Err(e) => Some((
                    None,
                    Skipped {
                        path: path.clone(),
                        reason: format!("verify: cannot read it back: {e}"),
                    },
                )),
            })
            .collect();
        outcome.files_verified = (plan.files.len() - failed.len() - mismatches.len()) as u64;
        // The invariant holds for what verify finds too: a file with wrong bytes is removed,
        // under each of its names.
        let wrong: std::collections::HashSet<usize> =
            mismatches.iter().filter_map(|(i, _)| *i).collect();
        for (i, skipped) in mismatches {
            if i.is_some() {
                let _ = fs::remove_file(&skipped.path);
            }
            errors.push(skipped);
        }
        for (path, first) in plan.links.iter().filter(|(_, f)| wrong.contains(f)) {
            let _ = fs::remove_file(path);
            errors.push(Skipped {
                path: path.clone(),
                reason: format!(
                    "verify: its hard-link target {} differs from the snapshot",
                    plan.files[*first].0.display()
                ),
            });
        }
    }
    outcome.errors = errors;
    outcome.warnings = run.warnings.into_inner().unwrap();
    outcome.warnings.extend(unsure);
    Ok(outcome)
}

impl Run<'_> {
    fn fail(&self, i: usize, reason: String) {
        self.failed.lock().unwrap().entry(i).or_insert(reason);
    }

    fn has_failed(&self, i: usize) -> bool {
        self.failed.lock().unwrap().contains_key(&i)
    }

    fn apply(&self, path: &Path, node: &Node) {
        if let Err(e) = fsmeta::apply(path, node, self.opts.owners) {
            let reason = format!("metadata not restored: {e}");
            self.warnings.lock().unwrap().push(Skipped {
                path: path.to_path_buf(),
                reason,
            });
        }
    }

    /// A file has all its content: give it its metadata.
    fn complete(&self, i: usize) {
        let (path, node) = &self.files[i];
        self.apply(path, node);
        self.progress.files.fetch_add(1, Ordering::Relaxed);
    }

    /// Looks up every chunk once; a file with a chunk missing from the index fails.
    fn resolve(&mut self) -> Result<()> {
        for (i, (path, node)) in self.files.iter().enumerate() {
            for chunk in &node.content {
                if self.locations.contains_key(chunk) {
                    continue;
                }
                match self.repo.lookup(&BlobId::from(*chunk))? {
                    Some(loc) => {
                        self.locations.insert(*chunk, loc);
                    }
                    None => {
                        let why = format!(
                            "data blob {} of {} is missing from the index",
                            chunk.short(),
                            path.display()
                        );
                        self.fail(i, why);
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// Files an earlier restore already wrote completely: right size and mtime, and content
    /// that hashes to the snapshot's chunk ids. They are left as they are.
    fn keep_complete_files(&self) -> std::collections::HashSet<usize> {
        self.files
            .par_iter()
            .enumerate()
            .filter(|(i, (path, node))| {
                let same = fs::symlink_metadata(path).is_ok_and(|m| {
                    m.is_file()
                        && m.len() == node.size
                        && FileTime::new(m.mtime(), m.mtime_nsec()) == node.mtime
                });
                same && !self.has_failed(*i) && matches!(self.differs(path, node), Ok(None))
            })
            .map(|(i, (path, node))| {
                self.apply(path, node);
                self.progress.bytes.fetch_add(node.size, Ordering::Relaxed);
                self.progress.files.fetch_add(1, Ordering::Relaxed);
                i
            })
            .collect()
    }

    /// Creates every file still to write at its full length, and groups the chunk writes by
    /// pack, each group sorted by offset so a pack is read front to back. A pack's group is cut
    /// into pieces of at most `PIECE` stored bytes: a few dozen packs would leave one core idle
    /// while the other finishes the last, and a piece costs only one more ranged read.
    fn create_files(&self, kept: &std::collections::HashSet<usize>) -> Vec<(PackId, PackWork)> {
        self.files
            .par_iter()
            .enumerate()
            .filter(|(i, _)| !kept.contains(i) && !self.has_failed(*i))
            .for_each(|(i, (path, node))| {
                if let Err(e) = create_file(path, node.size) {
                    self.fail(i, e.to_string());
                }
            });
        let mut by_blob: HashMap<DataId, Targets> = HashMap::new();
        for (i, (_, node)) in self.files.iter().enumerate() {
            if kept.contains(&i) || self.has_failed(i) {
                continue;
            }
            let mut offset = 0u64;
            for chunk in &node.content {
                by_blob.entry(*chunk).or_default().push((i, offset));
                offset += u64::from(self.locations[chunk].raw_len);
            }
            self.remaining[i].store(node.content.len() as u64, Ordering::Relaxed);
            if node.content.is_empty() {
                self.complete(i);
            }
        }
        // In pack order, so that the order of reads is a function of the plan alone.
        let mut packs: std::collections::BTreeMap<PackId, PackWork> = Default::default();
        for (chunk, targets) in by_blob {
            let loc = self.locations[&chunk];
            packs
                .entry(loc.pack)
                .or_default()
                .push((loc, BlobId::from(chunk), targets));
        }
        const PIECE: u64 = 4 << 20;
        let mut pieces = Vec::new();
        for (pack, mut work) in packs {
            work.sort_by_key(|(loc, _, _)| loc.offset);
            while !work.is_empty() {
                let start = u64::from(work[0].0.offset);
                let n = work
                    .iter()
                    .take_while(|(l, _, _)| {
                        u64::from(l.offset) + u64::from(l.stored_len) - start <= PIECE
                    })
                    .count()
                    .max(1);
                let rest = work.split_off(n);
                pieces.push((pack, work));
                work = rest;
            }
        }
        pieces
    }

    /// Reads the needed part of one pack once and writes each of its blobs wherever it belongs.
    fn restore_pack(&self, pack: &PackId, blobs: &PackWork) {
        let start = u64::from(blobs[0].0.offset);
        let end = blobs
            .iter()
            .map(|(l, _, _)| u64::from(l.offset) + u64::from(l.stored_len))
            .max()
            .unwrap_or(start);
        let bytes = match self.repo.read_pack_range(pack, start, end - start) {
            Ok(b) => b,
            Err(e) => {
                for (_, _, targets) in blobs {
                    for (i, _) in targets {
                        self.fail(*i, format!("pack {} cannot be read: {e}", pack.short()));
                    }
                }
                return;
            }
        };
        let mut open_files: HashMap<usize, fs::File> = HashMap::new();
        for (loc, blob, targets) in blobs {
            let at = (u64::from(loc.offset) - start) as usize;
            let stored = &bytes[at..at + loc.stored_len as usize];
            let plain = match self.repo.open_blob(blob, stored, loc.raw_len) {
                Ok(p) => p,
                Err(e) => {
                    for (i, _) in targets {
                        self.fail(*i, e.to_string());
                    }
                    continue;
                }
            };
            for &(i, offset) in targets {
                if self.has_failed(i) {
                    continue;
                }
                self.progress
                    .bytes
                    .fetch_add(plain.len() as u64, Ordering::Relaxed);
                let file = match open_files.entry(i) {
                    std::collections::hash_map::Entry::Occupied(f) => f.into_mut(),
                    std::collections::hash_map::Entry::Vacant(v) => {
                        match fs::OpenOptions::new().write(true).open(&self.files[i].0) {
                            Ok(f) => v.insert(f),
                            Err(e) => {
                                self.fail(i, e.to_string());
                                continue;
                            }
                        }
                    }
                };
                if let Err(e) = write_sparse(file, &plain, offset) {
                    self.fail(i, e.to_string());
                } else if self.remaining[i].fetch_sub(1, Ordering::AcqRel) == 1 {
                    open_files.remove(&i);
                    self.complete(i);
                }
            }
        }
    }

    /// Why the file at `path` differs from `node`'s content, or `None` when it is equal.
    fn differs(&self, path: &Path, node: &Node) -> io::Result<Option<String>> {
        let mut file = fs::File::open(path)?;
        let len = file.metadata()?.len();
        if len != node.size {
            return Ok(Some(format!("{len} bytes, the snapshot has {}", node.size)));
        }
        let mut buf = Vec::new();
        let mut offset = 0u64;
        for chunk in &node.content {
            let Some(loc) = self.locations.get(chunk) else {
                return Ok(Some(format!(
                    "data blob {} is missing from the index",
                    chunk.short()
                )));
            };
            buf.resize(loc.raw_len as usize, 0);
            if let Err(e) = file.read_exact(&mut buf) {
                return Ok(Some(format!("ends early at byte {offset}: {e}")));
            }
            if self.repo.blob_id(&buf) != chunk.0 {
                return Ok(Some(format!(
                    "content differs in bytes {offset}..{}",
                    offset + buf.len() as u64
                )));
            }
            offset += buf.len() as u64;
        }
        Ok(None)
    }
}

fn remove_non_dir(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "a directory is in the way",
        )),
        Ok(_) => fs::remove_file(path),
        Err(_) => Ok(()),
    }
}

fn make_dir(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            // An earlier restore into this target may have given the directory a mode that
            // keeps its owner from adding or removing entries. Open it up while files are
            // written; its own mode is applied again with the rest of its metadata at the end.
            use std::os::unix::fs::PermissionsExt;
            let mode = m.permissions().mode() & 0o7777;
            if mode & 0o300 != 0o300 {
                let _ = fs::set_permissions(path, fs::Permissions::from_mode(mode | 0o300));
            }
            return Ok(());
        }
        // Never follow a symlink out of the target: replace it.
        Ok(_) => fs::remove_file(path)?,
        Err(_) => {}
    }
    fs::create_dir(path)
}

/// Creates (or truncates) a file at its full length; unwritten ranges stay holes.
fn create_file(path: &Path, size: u64) -> io::Result<()> {
    remove_non_dir(path)?;
    let f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    f.set_len(size)
}

fn is_zero(b: &[u8]) -> bool {
    // A fold without early exit, which the compiler vectorises.
    b.iter().fold(0u8, |acc, &x| acc | x) == 0
}

/// Writes `data` at `offset` but skips file-aligned 4 KiB blocks of zeros: the file was created
/// at full length, so they read as zeros and stay holes on file systems that have them.
fn write_sparse(file: &fs::File, data: &[u8], offset: u64) -> io::Result<()> {
    const BLOCK: u64 = 4096;
    let mut run: Option<usize> = None;
    let mut pos = 0;
    while pos < data.len() {
        let end = (pos + (BLOCK - (offset + pos as u64) % BLOCK) as usize).min(data.len());
        if is_zero(&data[pos..end]) {
            if let Some(start) = run.take() {
                file.write_all_at(&data[start..pos], offset + start as u64)?;
            }
        } else {
            run.get_or_insert(pos);
        }
        pos = end;
    }
    if let Some(start) = run {
        file.write_all_at(&data[start..], offset + start as u64)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn sparse_writes_keep_content_and_leave_holes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let len = 8 << 20;
        create_file(&path, len).unwrap();
        let mut data = vec![0u8; 4 << 20];
        data[5000..5100].fill(7);
        data[(3 << 20) + 1] = 9;
        let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
        // An offset that is not block-aligned exercises the alignment arithmetic.
        write_sparse(&f, &data, 1000).unwrap();
        let back = fs::read(&path).unwrap();
        assert_eq!(&back[1000..1000 + data.len()], &data[..]);
        assert!(back[..1000]
            .iter()
            .chain(&back[1000 + data.len()..])
            .all(|&b| b == 0));
        let meta = fs::metadata(&path).unwrap();
        assert!(
            meta.blocks() * 512 < 1 << 20,
            "{} bytes allocated",
            meta.blocks() * 512
        );
    }
}
