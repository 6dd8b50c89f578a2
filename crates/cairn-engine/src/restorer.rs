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
use cairn_format::tree::{Node, NodeKind};
use cairn_format::{BlobId, DataId, PackId, TreeId};
use cairn_repo::{Error, ErrorKind, Location, Repository};
use rayon::prelude::*;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
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
    /// Paths written (or, with `dry_run`, that would be), relative to the target.
    pub planned: Vec<PathBuf>,
    /// Entries that could not be restored.
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
        let tree = self.repo.load_tree(tree)?;
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
    };
    planner.tree(root, Path::new("/"), &opts.target, false)?;
    let plan = planner.plan;

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
    let skipped = Mutex::new(Vec::new());
    let skip = |path: &Path, reason: String| {
        skipped.lock().unwrap().push(Skipped {
            path: path.to_path_buf(),
            reason,
        })
    };

    for (path, _) in &plan.dirs {
        if let Err(e) = make_dir(path) {
            skip(path, e.to_string());
        }
    }
    // Files that cannot be created or filled, by index into `plan.files`.
    let failed: Mutex<HashMap<usize, String>> = Mutex::default();
    plan.files
        .par_iter()
        .enumerate()
        .for_each(|(i, (path, node))| {
            if let Err(e) = create_file(path, node.size) {
                failed.lock().unwrap().insert(i, e.to_string());
            }
        });

    let packs = group_by_pack(repo, &plan.files, &failed)?;
    packs.par_iter().for_each(|(pack, blobs)| {
        if let Err((blob, e)) = restore_pack(repo, pack, blobs, &plan.files, &failed, progress) {
            for (_, _, targets) in blobs
                .iter()
                .filter(|(_, b, _)| blob.is_none() || Some(*b) == blob)
            {
                for (i, _) in targets {
                    failed
                        .lock()
                        .unwrap()
                        .entry(*i)
                        .or_insert_with(|| e.clone());
                }
            }
        }
    });
    let failed = failed.into_inner().unwrap();

    for (i, reason) in &failed {
        let path = &plan.files[*i].0;
        let _ = fs::remove_file(path);
        skip(path, reason.clone());
    }
    for (path, first) in &plan.links {
        if failed.contains_key(first) {
            skip(path, "its hard-link target could not be restored".into());
            continue;
        }
        let _ = remove_non_dir(path);
        if let Err(e) = fs::hard_link(&plan.files[*first].0, path) {
            skip(path, e.to_string());
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
        if let Err(e) = made {
            skip(path, e.to_string());
        }
    }

    let warnings = Mutex::new(Vec::new());
    let apply = |path: &Path, node: &Node| {
        if let Err(e) = fsmeta::apply(path, node, opts.owners) {
            let reason = format!("metadata not restored: {e}");
            warnings.lock().unwrap().push(Skipped {
                path: path.to_path_buf(),
                reason,
            });
        }
    };
    plan.files
        .par_iter()
        .enumerate()
        .filter(|(i, _)| !failed.contains_key(i))
        .for_each(|(_, (p, n))| {
            apply(p, n);
            progress.files.fetch_add(1, Ordering::Relaxed);
        });
    plan.specials
        .iter()
        .filter(|(_, n)| n.kind != NodeKind::Socket)
        .for_each(|(p, n)| apply(p, n));
    plan.dirs.iter().rev().for_each(|(p, n)| apply(p, n));

    outcome.errors = skipped.into_inner().unwrap();
    outcome.warnings = warnings.into_inner().unwrap();
    Ok(outcome)
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
        Ok(m) if m.is_dir() => return Ok(()),
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

type PackWork = Vec<(Location, BlobId, Targets)>;

/// Each needed blob's location and targets, grouped by pack, each group sorted by offset.
fn group_by_pack(
    repo: &Repository,
    files: &[(PathBuf, Node)],
    failed: &Mutex<HashMap<usize, String>>,
) -> Result<Vec<(PackId, PackWork)>> {
    let mut blobs: HashMap<DataId, (Location, Targets)> = HashMap::new();
    for (i, (path, node)) in files.iter().enumerate() {
        let mut offset = 0u64;
        for chunk in &node.content {
            let loc = match blobs.get_mut(chunk) {
                Some((loc, targets)) => {
                    targets.push((i, offset));
                    *loc
                }
                None => match repo.lookup(&BlobId::from(*chunk))? {
                    Some(loc) => {
                        blobs.insert(*chunk, (loc, vec![(i, offset)]));
                        loc
                    }
                    None => {
                        let why = format!(
                            "data blob {} of {} is missing from the index",
                            chunk.short(),
                            path.display()
                        );
                        failed.lock().unwrap().insert(i, why);
                        break;
                    }
                },
            };
            offset += u64::from(loc.raw_len);
        }
    }
    let mut packs: HashMap<PackId, PackWork> = HashMap::new();
    for (id, (loc, targets)) in blobs {
        packs
            .entry(loc.pack)
            .or_default()
            .push((loc, BlobId::from(id), targets));
    }
    let mut packs: Vec<_> = packs.into_iter().collect();
    for (_, work) in &mut packs {
        work.sort_by_key(|(loc, _, _)| loc.offset);
    }
    Ok(packs)
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

/// Reads the needed part of one pack and writes its blobs. On failure returns the blob at fault
/// (or `None` when the whole pack could not be read) and why.
fn restore_pack(
    repo: &Repository,
    pack: &PackId,
    blobs: &PackWork,
    files: &[(PathBuf, Node)],
    failed: &Mutex<HashMap<usize, String>>,
    progress: &RestoreProgress,
) -> std::result::Result<(), (Option<BlobId>, String)> {
    let start = u64::from(blobs[0].0.offset);
    let end = blobs
        .iter()
        .map(|(l, _, _)| u64::from(l.offset) + u64::from(l.stored_len))
        .max()
        .unwrap_or(start);
    let bytes = repo
        .read_pack_range(pack, start, end - start)
        .map_err(|e| (None, format!("pack {} cannot be read: {e}", pack.short())))?;
    let mut open_files: HashMap<usize, fs::File> = HashMap::new();
    let mut first_error = None;
    for (loc, blob, targets) in blobs {
        let at = (u64::from(loc.offset) - start) as usize;
        let stored = &bytes[at..at + loc.stored_len as usize];
        let plain = match repo.open_blob(blob, stored, loc.raw_len) {
            Ok(p) => p,
            Err(e) => {
                let path = &files[targets[0].0].0;
                first_error.get_or_insert((Some(*blob), format!("{}: {e}", path.display())));
                continue;
            }
        };
        for &(i, offset) in targets {
            if failed.lock().unwrap().contains_key(&i) {
                continue;
            }
            progress
                .bytes
                .fetch_add(plain.len() as u64, Ordering::Relaxed);
            let file = match open_files.entry(i) {
                std::collections::hash_map::Entry::Occupied(f) => f.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    match fs::OpenOptions::new().write(true).open(&files[i].0) {
                        Ok(f) => v.insert(f),
                        Err(e) => {
                            failed.lock().unwrap().insert(i, e.to_string());
                            continue;
                        }
                    }
                }
            };
            if let Err(e) = write_sparse(file, &plain, offset) {
                failed.lock().unwrap().insert(i, e.to_string());
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
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
