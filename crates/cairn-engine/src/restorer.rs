//! Restore: plan what to write from a snapshot's trees, then carry the plan out.
//!
//! Content is written pack by pack: each pack is read once (one ranged read covering the blobs
//! the restore needs from it), its blobs are opened and verified, and each is written to every
//! place it belongs. Packs are spread over rayon's workers. A file is created at full length by
//! the first write that reaches it, and chunks that are all zeros are not written, so holes stay
//! holes. A file gets its metadata (owner, xattrs, mode, times) through the descriptor of its
//! last write, as soon as all its content is written; directories get theirs last and deepest
//! first, so writing into a directory does not disturb its restored mtime.
//!
//! The target is walked with directory descriptors, never by path: each directory is opened
//! relative to its parent's descriptor with `O_NOFOLLOW | O_DIRECTORY`, and every entry is
//! created, opened, linked or removed relative to its directory's descriptor. So a user who can
//! write into the target cannot make a (root) restore write, chmod or chown anything outside it
//! by swapping a path for a symlink while it runs, and paths longer than PATH_MAX below the
//! target restore like any other. Files are created `O_EXCL | O_NOFOLLOW` at mode 0600 and
//! directories at 0700, whatever the umask, and keep those modes until their own metadata is
//! applied, so nothing is readable by others before its final mode says so. A file or directory
//! reopened later is checked to be the inode the restore created (device and inode number), so
//! a hard link swapped in is refused too.
//!
//! Invariants: a file whose content could not be fully verified is removed, never left with
//! wrong bytes, and reported. A file whose mtime is restored has all its content, which is what
//! resuming an interrupted restore relies on: a rerun keeps such files when their content
//! hashes to the snapshot's chunks, and rewrites the others.

use crate::filter::Filter;
use crate::fsmeta;
use crate::{PathProblem, Result};
use cairn_format::tree::{FileTime, Node, NodeKind};
use cairn_format::{DataId, PackId, TreeId};
use cairn_repo::{BlobStore, Error, ErrorKind, Location};
use rayon::prelude::*;
use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

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
    /// Entries that could not be restored, or (with `verify`) differ from the snapshot.
    pub errors: Vec<PathProblem>,
    /// Entries restored without some of their metadata (owner, mode, times, xattrs).
    pub warnings: Vec<PathProblem>,
}

/// Where an entry goes: a name in a planned directory (by index into `RestorePlan::dirs`) or, with
/// `dir` `None`, in the target itself. `path` is only for messages: the restore never hands it
/// to the kernel.
struct Place {
    path: PathBuf,
    dir: Option<usize>,
    name: OsString,
}

/// What a restore writes, and where, decided from the snapshot's trees before anything in the
/// target is touched: `--dry-run` shows it and stops.
#[derive(Default)]
pub struct RestorePlan {
    /// Parents before their children.
    dirs: Vec<(Place, Node)>,
    files: Vec<(Place, Node)>,
    /// Further names of a file in `files`, restored as hard links to it.
    links: Vec<(Place, usize)>,
    specials: Vec<(Place, Node)>,
    link_groups: HashMap<(u64, u64), usize>,
    /// Directories whose listing cannot be read: everything below them is lost, the rest is not.
    lost: Vec<PathProblem>,
    /// Such directories outside what `--include` selects: something selected may have been
    /// below them, or not.
    unsure: Vec<PathProblem>,
}

struct Planner<'a> {
    repo: &'a dyn BlobStore,
    opts: &'a RestoreOptions,
    plan: RestorePlan,
    budget: crate::walk::Budget,
}

impl Planner<'_> {
    /// Adds the entries of `tree`, which goes to `target` (directory `dir` of the plan); returns
    /// whether anything was added.
    fn tree(
        &mut self,
        tree: TreeId,
        snap_path: &Path,
        target: &Path,
        dir: Option<usize>,
        included: bool,
    ) -> Result<bool> {
        // Bounds the recursion whatever the snapshot (repo-format.md, "Limits").
        crate::walk::check_depth(crate::walk::depth_of(snap_path), snap_path)?;
        let id = tree;
        let tree = match self.repo.load_tree(id) {
            Ok(tree) => tree,
            Err(e) if matches!(e.kind, ErrorKind::Corrupt | ErrorKind::NotFound) => {
                let lost = PathProblem {
                    path: target.to_path_buf(),
                    reason: format!("directory listing is lost: {e}"),
                };
                if included || self.opts.include.is_empty() {
                    self.plan.lost.push(lost);
                } else {
                    self.plan.unsure.push(lost);
                }
                return Ok(included);
            }
            Err(e) => return Err(e),
        };
        self.budget.loaded(self.repo, id, tree.nodes.len())?;
        let mut any = false;
        for node in tree.nodes {
            let name = OsStr::from_bytes(&node.name);
            let path = snap_path.join(name);
            if self.opts.exclude.matches(&path) {
                continue;
            }
            let inc = included || self.opts.include.is_empty() || self.opts.include.matches(&path);
            let dest = target.join(name);
            let place = Place {
                path: dest.clone(),
                dir,
                name: name.to_os_string(),
            };
            match node.kind {
                NodeKind::Dir => {
                    let at = self.plan.dirs.len();
                    let sub = node.subtree;
                    self.plan.dirs.push((place, node));
                    let below = match sub {
                        Some(sub) => self.tree(sub, &path, &dest, Some(at), inc)?,
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
                            self.plan.links.push((place, first));
                            continue;
                        }
                        self.plan
                            .link_groups
                            .insert((node.dev, node.inode), self.plan.files.len());
                    }
                    self.plan.files.push((place, node));
                }
                _ => {
                    any = true;
                    self.plan.specials.push((place, node));
                }
            }
        }
        Ok(any)
    }
}

/// Device and inode number: what tells whether a name still leads to the inode the restore
/// created or found.
type FileId = (u64, u64);

fn file_id(fd: impl AsFd) -> io::Result<FileId> {
    let st = rustix::fs::fstat(fd)?;
    Ok((st.st_dev, st.st_ino))
}

fn replaced() -> io::Error {
    io::Error::other("it was replaced during the restore")
}

/// Opens directory `name` in `dir`, never through a symlink.
fn open_dir(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(rustix::fs::openat(dir, name, flags, Mode::empty())?)
}

/// The restore's directories, by index into `RestorePlan::dirs`, as descriptors. Holding one open for
/// every directory could exceed the process's limit on open files, so at most `MAX_OPEN` are
/// kept, and one not kept is opened again from its parent's descriptor and checked to be the
/// directory the restore made or found.
struct Dirs<'a> {
    places: &'a [(Place, Node)],
    root: Arc<OwnedFd>,
    /// Set once the directory is made (or found) and opened.
    ids: Vec<OnceLock<FileId>>,
    open: Mutex<HashMap<usize, Arc<OwnedFd>>>,
}

impl Dirs<'_> {
    const MAX_OPEN: usize = 256;

    /// The descriptor of directory `dir` (`None`: the target).
    fn fd(&self, dir: Option<usize>) -> io::Result<Arc<OwnedFd>> {
        let Some(i) = dir else {
            return Ok(self.root.clone());
        };
        if let Some(fd) = self.open.lock().unwrap().get(&i) {
            return Ok(fd.clone());
        }
        let Some(&id) = self.ids[i].get() else {
            return Err(io::Error::other("its directory could not be restored"));
        };
        let (place, _) = &self.places[i];
        let parent = self.fd(place.dir)?;
        let fd = open_dir(parent.as_fd(), &place.name)?;
        if file_id(&fd)? != id {
            return Err(io::Error::other(format!(
                "directory {} was replaced during the restore",
                place.path.display()
            )));
        }
        Ok(self.keep(i, fd))
    }

    fn keep(&self, i: usize, fd: OwnedFd) -> Arc<OwnedFd> {
        let fd = Arc::new(fd);
        let mut open = self.open.lock().unwrap();
        if open.len() >= Self::MAX_OPEN {
            // Those in use stay open through their `Arc`s.
            open.clear();
        }
        open.insert(i, fd.clone());
        fd
    }

    /// Makes (or finds) directory `i`; its parent is made already.
    fn make(&self, i: usize) -> io::Result<()> {
        let (place, _) = &self.places[i];
        let parent = self.fd(place.dir)?;
        let fd = make_dir(parent.as_fd(), &place.name)?;
        // Set once: directories are made once, in order.
        let _ = self.ids[i].set(file_id(&fd)?);
        self.keep(i, fd);
        Ok(())
    }
}

/// Where each chunk of each file goes: (file index, offset in file).
type Targets = Vec<(usize, u64)>;
type PackWork = Vec<(Location, DataId, Targets)>;

/// How many locks serialise the creation of files: a file is created by whichever worker
/// writes to it first, and the others wait for it.
const CREATE_LOCKS: usize = 64;

/// The state the steps of one restore share.
struct Run<'a> {
    repo: &'a dyn BlobStore,
    opts: &'a RestoreOptions,
    progress: &'a RestoreProgress,
    dirs: &'a Dirs<'a>,
    files: &'a [(Place, Node)],
    /// Where every chunk of the planned files is stored.
    locations: HashMap<DataId, Location>,
    /// Files that cannot be created or filled, by index into `files`, and why.
    failed: Mutex<HashMap<usize, String>>,
    /// Chunk writes each file still waits for; its metadata is applied when this reaches zero,
    /// so a file whose mtime is restored is complete (what resuming relies on).
    remaining: Vec<AtomicU64>,
    /// The inode of each file this restore created or kept, set when it is.
    file_ids: Vec<OnceLock<FileId>>,
    create_locks: Vec<Mutex<()>>,
    warnings: Mutex<Vec<PathProblem>>,
}

/// Plans and carries out a restore: `plan_restore`, then (unless `opts.dry_run`, which stops
/// after the plan) `execute_restore`.
pub fn restore(
    repo: &dyn BlobStore,
    root: TreeId,
    opts: &RestoreOptions,
    progress: &RestoreProgress,
) -> Result<RestoreOutcome> {
    let plan = plan_restore(repo, root, opts)?;
    if opts.dry_run {
        let mut outcome = plan.outcome();
        outcome.errors = plan.lost;
        outcome.warnings = plan.unsure;
        return Ok(outcome);
    }
    execute_restore(repo, plan, opts, progress)
}

/// What a restore of tree `root` into `opts.target` would write, read from the snapshot's trees
/// alone: nothing in the target is touched.
pub fn plan_restore(
    repo: &dyn BlobStore,
    root: TreeId,
    opts: &RestoreOptions,
) -> Result<RestorePlan> {
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
        plan: RestorePlan::default(),
        budget: crate::walk::Budget::new(&[root]),
    };
    planner.tree(root, Path::new("/"), &opts.target, None, false)?;
    Ok(planner.plan)
}

/// Carries out `plan`: directories, then file content pack by pack, hard links, special files,
/// directory metadata deepest first; then, with `opts.verify`, reads every file back.
pub fn execute_restore(
    repo: &dyn BlobStore,
    plan: RestorePlan,
    opts: &RestoreOptions,
    progress: &RestoreProgress,
) -> Result<RestoreOutcome> {
    let mut outcome = plan.outcome();
    progress.total_bytes.store(outcome.bytes, Ordering::Relaxed);
    progress.total_files.store(outcome.files, Ordering::Relaxed);
    let RestorePlan {
        dirs: plan_dirs,
        files,
        links,
        specials,
        lost,
        unsure,
        ..
    } = plan;
    let root = open_target(&opts.target)?;
    // Into an empty target no earlier restore left a file to keep: looking for each one would
    // cost a failed open per file.
    let fresh = dir_names(root.as_fd()).is_ok_and(|names| names.is_empty());
    let dirs = Dirs {
        places: &plan_dirs,
        root: Arc::new(root),
        ids: plan_dirs.iter().map(|_| OnceLock::new()).collect(),
        open: Mutex::default(),
    };
    let mut errors = lost;
    for (i, (place, _)) in plan_dirs.iter().enumerate() {
        if let Err(e) = dirs.make(i) {
            errors.push(problem(place, e));
        }
    }
    let mut run = Run {
        repo,
        opts,
        progress,
        dirs: &dirs,
        files: &files,
        locations: HashMap::new(),
        failed: Mutex::default(),
        remaining: files.iter().map(|_| AtomicU64::new(0)).collect(),
        file_ids: files.iter().map(|_| OnceLock::new()).collect(),
        create_locks: (0..CREATE_LOCKS).map(|_| Mutex::new(())).collect(),
        warnings: Mutex::default(),
    };
    run.resolve()?;
    let kept = if fresh {
        std::collections::HashSet::new()
    } else {
        run.keep_complete_files()
    };
    outcome.files_kept = kept.len() as u64;
    let packs = run.plan_writes(&kept);
    packs
        .par_iter()
        .for_each(|(pack, blobs)| run.restore_pack(pack, blobs));
    let failed = run.finish(&links, &specials, &mut errors);
    if opts.verify {
        outcome.files_verified = run.verify(&links, &failed, &mut errors);
    }
    outcome.errors = errors;
    outcome.warnings = run.warnings.into_inner().unwrap();
    outcome.warnings.extend(unsure);
    Ok(outcome)
}

/// Creates the target (the user's to name, symlinks included; below it nothing is followed)
/// and opens it.
fn open_target(target: &Path) -> Result<OwnedFd> {
    let target_error = |e: &dyn std::fmt::Display| {
        Error::new(
            ErrorKind::Io,
            format!("cannot create restore target {}: {e}", target.display()),
        )
    };
    fs::create_dir_all(target).map_err(|e| target_error(&e))?;
    rustix::fs::open(
        target,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| target_error(&e))
}

fn problem(place: &Place, reason: impl ToString) -> PathProblem {
    PathProblem {
        path: place.path.clone(),
        reason: reason.to_string(),
    }
}

impl RestorePlan {
    /// Every path the plan writes, relative to `target`: directories, files, hard links, then
    /// special files.
    pub fn paths(&self, target: &Path) -> Vec<PathBuf> {
        let relative = |p: &Path| p.strip_prefix(target).unwrap_or(p).to_path_buf();
        self.dirs
            .iter()
            .map(|(p, _)| p)
            .chain(self.files.iter().map(|(p, _)| p))
            .chain(self.links.iter().map(|(p, _)| p))
            .chain(self.specials.iter().map(|(p, _)| p))
            .map(|p| relative(&p.path))
            .collect()
    }

    /// `restore --delete`: what `target` holds below the restored `sources` (absolute paths in
    /// the snapshot) that the plan does not write, removed unless `dry_run`; each with the
    /// problem that kept it, if any. Only the sources' own trees are looked at, never the
    /// directories that lead to them (restoring /etc into / must not empty /). Like the restore,
    /// it goes by descriptors and never through a symlink, so a hostile user of the target
    /// cannot redirect a deletion elsewhere.
    pub fn extraneous(
        &self,
        target: &Path,
        sources: &[PathBuf],
        dry_run: bool,
    ) -> (Vec<PathBuf>, Vec<PathProblem>) {
        let (mut found, mut problems) = (Vec::new(), Vec::new());
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let Ok(root) = rustix::fs::open(target, flags, Mode::empty()) else {
            return (found, problems);
        };
        let planned: std::collections::HashSet<(Option<usize>, &OsStr)> = self
            .dirs
            .iter()
            .chain(&self.files)
            .chain(&self.specials)
            .map(|(p, _)| p)
            .chain(self.links.iter().map(|(p, _)| p))
            .map(|p| (p.dir, p.name.as_os_str()))
            .collect();
        let roots: Vec<PathBuf> = sources
            .iter()
            .map(|s| target.join(s.strip_prefix("/").unwrap_or(s)))
            .collect();
        for (i, (dir, _)) in self.dirs.iter().enumerate() {
            if !roots.iter().any(|r| dir.path.starts_with(r)) {
                continue;
            }
            let Ok(fd) = self.open_planned_dir(root.as_fd(), i) else {
                continue;
            };
            let Ok(names) = dir_names(fd.as_fd()) else {
                continue;
            };
            for name in names {
                if planned.contains(&(Some(i), name.as_os_str())) {
                    continue;
                }
                let path = dir.path.join(&name);
                if !dry_run {
                    if let Err(e) = remove_tree_at(fd.as_fd(), &name) {
                        problems.push(PathProblem::new(&path, format!("cannot delete: {e}")));
                    }
                }
                found.push(path);
            }
        }
        (found, problems)
    }

    /// Opens planned directory `i` from `root`, each step without following a symlink.
    fn open_planned_dir(&self, root: BorrowedFd<'_>, i: usize) -> io::Result<OwnedFd> {
        let place = &self.dirs[i].0;
        match place.dir {
            None => open_dir(root, &place.name),
            Some(parent) => open_dir(self.open_planned_dir(root, parent)?.as_fd(), &place.name),
        }
    }

    /// Files to restore, hard links included.
    pub fn files(&self) -> u64 {
        (self.files.len() + self.links.len()) as u64
    }

    pub fn dirs(&self) -> u64 {
        self.dirs.len() as u64
    }

    /// Bytes of file content to restore.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|(_, n)| n.size).sum()
    }

    /// The outcome's counts, as planned.
    fn outcome(&self) -> RestoreOutcome {
        RestoreOutcome {
            files: self.files(),
            dirs: self.dirs(),
            bytes: self.bytes(),
            ..RestoreOutcome::default()
        }
    }
}

impl Run<'_> {
    /// After the content: removes the files that failed, then makes hard links and special
    /// files, then gives directories their metadata, deepest first. Returns the failed files.
    fn finish(
        &self,
        links: &[(Place, usize)],
        specials: &[(Place, Node)],
        errors: &mut Vec<PathProblem>,
    ) -> HashMap<usize, String> {
        let failed = std::mem::take(&mut *self.failed.lock().unwrap());
        for (i, reason) in &failed {
            let place = &self.files[*i].0;
            self.remove(place);
            errors.push(problem(place, reason));
        }
        for (place, first) in links {
            if failed.contains_key(first) {
                errors.push(problem(place, "its hard-link target could not be restored"));
            } else if let Err(e) = self.link(place, *first) {
                errors.push(problem(place, e));
            }
        }
        for (place, node) in specials {
            if let Err(e) = self.special(place, node) {
                errors.push(problem(place, e));
            }
        }
        for (i, (place, node)) in self.dirs.places.iter().enumerate().rev() {
            if self.dirs.ids[i].get().is_none() {
                continue;
            }
            let applied = self
                .dirs
                .fd(Some(i))
                .and_then(|fd| fsmeta::apply_fd(fd.as_fd(), node, self.opts.owners));
            if let Err(e) = applied {
                self.warn(place, &e);
            }
        }
        failed
    }

    /// Reads every restored file back and compares it with the snapshot. The invariant holds
    /// for what this finds too: a file with wrong bytes is removed, under each of its names.
    /// Returns how many files verified.
    fn verify(
        &self,
        links: &[(Place, usize)],
        failed: &HashMap<usize, String>,
        errors: &mut Vec<PathProblem>,
    ) -> u64 {
        // With the index of each file whose bytes are known to be wrong.
        let mismatches: Vec<(Option<usize>, PathProblem)> = self
            .files
            .par_iter()
            .enumerate()
            .filter(|(i, _)| !failed.contains_key(i))
            .filter_map(|(i, (place, node))| {
                let differs = self
                    .open_read(place)
                    .and_then(|mut file| self.differs(&mut file, node));
                match differs {
                    Ok(None) => None,
                    Ok(Some(why)) => Some((Some(i), problem(place, format!("verify: {why}")))),
                    Err(e) => Some((
                        None,
                        problem(place, format!("verify: cannot read it back: {e}")),
                    )),
                }
            })
            .collect();
        let verified = (self.files.len() - failed.len() - mismatches.len()) as u64;
        let wrong: std::collections::HashSet<usize> =
            mismatches.iter().filter_map(|(i, _)| *i).collect();
        for (i, mismatch) in mismatches {
            if let Some(i) = i {
                self.remove(&self.files[i].0);
            }
            errors.push(mismatch);
        }
        for (place, first) in links.iter().filter(|(_, f)| wrong.contains(f)) {
            self.remove(place);
            errors.push(problem(
                place,
                format!(
                    "verify: its hard-link target {} differs from the snapshot",
                    self.files[*first].0.path.display()
                ),
            ));
        }
        verified
    }

    fn fail(&self, i: usize, reason: String) {
        self.failed.lock().unwrap().entry(i).or_insert(reason);
    }

    fn has_failed(&self, i: usize) -> bool {
        self.failed.lock().unwrap().contains_key(&i)
    }

    fn warn(&self, place: &Place, e: &io::Error) {
        self.warnings.lock().unwrap().push(PathProblem {
            path: place.path.clone(),
            reason: format!("metadata not restored: {e}"),
        });
    }

    /// Removes the entry at `place` unless it is a directory; a failure is left for the error
    /// the caller reports anyway.
    fn remove(&self, place: &Place) {
        if let Ok(dir) = self.dirs.fd(place.dir) {
            let _ = remove_non_dir(dir.as_fd(), &place.name);
        }
    }

    /// A file has all its content, written through `file`: give it its metadata through it.
    fn complete(&self, i: usize, file: &fs::File) {
        let (place, node) = &self.files[i];
        if let Err(e) = fsmeta::apply_fd(file.as_fd(), node, self.opts.owners) {
            self.warn(place, &e);
        }
        self.progress.files.fetch_add(1, Ordering::Relaxed);
    }

    /// File `i` open for writing: created (at full length, mode 0600) by the first caller,
    /// reopened by the others and checked to be the same inode.
    fn open_for_write(&self, i: usize) -> io::Result<fs::File> {
        let (place, node) = &self.files[i];
        let dir = self.dirs.fd(place.dir)?;
        let reopen = |id: FileId| -> io::Result<fs::File> {
            // O_NONBLOCK: a fifo swapped in must not block the open; the inode check below
            // refuses it.
            let flags = OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
            let fd = rustix::fs::openat(dir.as_fd(), &place.name, flags, Mode::empty())?;
            let file = fs::File::from(fd);
            if file_id(&file)? != id {
                return Err(replaced());
            }
            Ok(file)
        };
        if let Some(&id) = self.file_ids[i].get() {
            return reopen(id);
        }
        let _creating = self.create_locks[i % CREATE_LOCKS].lock().unwrap();
        if let Some(&id) = self.file_ids[i].get() {
            return reopen(id);
        }
        let file = create_file(dir.as_fd(), &place.name, node.size)?;
        // Under the lock, and checked just above: this is the first set.
        let _ = self.file_ids[i].set(file_id(&file)?);
        Ok(file)
    }

    /// The file at `place` opened for reading, never through a symlink.
    fn open_read(&self, place: &Place) -> io::Result<fs::File> {
        let dir = self.dirs.fd(place.dir)?;
        // O_NONBLOCK, so that a fifo put at the name cannot block the open; only a regular file
        // is read, in blocking mode again.
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
        let fd = rustix::fs::openat(dir.as_fd(), &place.name, flags, Mode::empty())?;
        let st = rustix::fs::fstat(&fd)?;
        if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
            return Err(io::Error::other("not a regular file"));
        }
        rustix::fs::fcntl_setfl(&fd, rustix::fs::fcntl_getfl(&fd)? - OFlags::NONBLOCK)?;
        Ok(fs::File::from(fd))
    }

    /// Makes `place` a hard link to file `first`, and checks that the name leads to it.
    fn link(&self, place: &Place, first: usize) -> io::Result<()> {
        let Some(&id) = self.file_ids[first].get() else {
            return Err(io::Error::other(
                "its hard-link target could not be restored",
            ));
        };
        let from = &self.files[first].0;
        let from_dir = self.dirs.fd(from.dir)?;
        let dir = self.dirs.fd(place.dir)?;
        remove_non_dir(dir.as_fd(), &place.name)?;
        // Without AT_SYMLINK_FOLLOW: a symlink swapped in at the first name would be linked
        // itself, not followed, and the check below refuses it.
        rustix::fs::linkat(
            from_dir.as_fd(),
            &from.name,
            dir.as_fd(),
            &place.name,
            AtFlags::empty(),
        )?;
        let st = rustix::fs::statat(dir.as_fd(), &place.name, AtFlags::SYMLINK_NOFOLLOW)?;
        if (st.st_dev, st.st_ino) != id {
            let _ = remove_non_dir(dir.as_fd(), &place.name);
            return Err(io::Error::other(format!(
                "its hard-link target {} was replaced during the restore",
                from.path.display()
            )));
        }
        Ok(())
    }

    /// Restores a symlink, fifo, device node or socket; a failure to give it its metadata is a
    /// warning.
    fn special(&self, place: &Place, node: &Node) -> io::Result<()> {
        let dir = self.dirs.fd(place.dir)?;
        remove_non_dir(dir.as_fd(), &place.name)?;
        match node.kind {
            NodeKind::Symlink => {
                rustix::fs::symlinkat(OsStr::from_bytes(&node.target), dir.as_fd(), &place.name)?
            }
            _ => fsmeta::make_special_at(dir.as_fd(), &place.name, node)?,
        }
        if let Err(e) = fsmeta::apply_at(dir.as_fd(), &place.name, node, self.opts.owners) {
            self.warn(place, &e);
        }
        Ok(())
    }

    /// Looks up every chunk once, in batches; a file with a chunk the repository lacks fails.
    fn resolve(&mut self) -> Result<()> {
        const BATCH: usize = 4096;
        let mut wanted: Vec<DataId> = self
            .files
            .iter()
            .flat_map(|(_, node)| node.content.iter().copied())
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        for ids in wanted.chunks(BATCH) {
            for (id, loc) in ids.iter().zip(self.repo.locate(ids)?) {
                if let Some(loc) = loc {
                    self.locations.insert(*id, loc);
                }
            }
        }
        for (i, (place, node)) in self.files.iter().enumerate() {
            if let Some(chunk) = node
                .content
                .iter()
                .find(|c| !self.locations.contains_key(c))
            {
                let why = format!(
                    "data blob {} of {} is missing from the index",
                    chunk.short(),
                    place.path.display()
                );
                self.fail(i, why);
            }
        }
        Ok(())
    }

    /// Files an earlier restore already wrote completely: right size and mtime, and content
    /// that hashes to the snapshot's chunk ids. They are left as they are, but given their
    /// metadata again through the descriptor they were read through.
    fn keep_complete_files(&self) -> std::collections::HashSet<usize> {
        self.files
            .par_iter()
            .enumerate()
            .filter(|(i, _)| !self.has_failed(*i))
            .filter_map(|(i, (place, node))| {
                let mut file = self.open_read(place).ok()?;
                let st = rustix::fs::fstat(&file).ok()?;
                // Only a file this restore could have written is adopted: one of this user's
                // (or, restoring owners, of the snapshot's owner), with no other name through
                // which someone could still reach it.
                let owner = if self.opts.owners {
                    node.uid
                } else {
                    rustix::process::geteuid().as_raw()
                };
                let same = rustix::fs::FileType::from_raw_mode(st.st_mode)
                    == rustix::fs::FileType::RegularFile
                    && st.st_uid == owner
                    && st.st_nlink as u64 <= node.links.max(1)
                    && st.st_size as u64 == node.size
                    && FileTime::new(st.st_mtime, st.st_mtime_nsec as i64) == node.mtime;
                if !same || !matches!(self.differs(&mut file, node), Ok(None)) {
                    return None;
                }
                let _ = self.file_ids[i].set((st.st_dev, st.st_ino));
                if let Err(e) = fsmeta::apply_fd(file.as_fd(), node, self.opts.owners) {
                    self.warn(place, &e);
                }
                self.progress.bytes.fetch_add(node.size, Ordering::Relaxed);
                self.progress.files.fetch_add(1, Ordering::Relaxed);
                Some(i)
            })
            .collect()
    }

    /// Creates the files without content (nothing else will) and groups the chunk writes of
    /// the others by pack, each group sorted by offset so a pack is read front to back. A pack's
    /// group is cut into pieces of at most `PIECE` stored bytes: a few dozen packs would leave
    /// one core idle while the other finishes the last, and a piece costs only one more ranged
    /// read.
    fn plan_writes(&self, kept: &std::collections::HashSet<usize>) -> Vec<(PackId, PackWork)> {
        let mut by_blob: HashMap<DataId, Targets> = HashMap::new();
        let mut empty = Vec::new();
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
                empty.push(i);
            }
        }
        empty
            .par_iter()
            .for_each(|&i| match self.open_for_write(i) {
                Ok(file) => self.complete(i, &file),
                Err(e) => self.fail(i, e.to_string()),
            });
        // In pack order, so that the order of reads is a function of the plan alone.
        let mut packs: std::collections::BTreeMap<PackId, PackWork> = Default::default();
        for (chunk, targets) in by_blob {
            let loc = self.locations[&chunk];
            packs
                .entry(loc.pack)
                .or_default()
                .push((loc, chunk, targets));
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
        let located: Vec<(DataId, Location)> =
            blobs.iter().map(|(loc, id, _)| (*id, *loc)).collect();
        let mut open_files: HashMap<usize, fs::File> = HashMap::new();
        let read = self.repo.read_pack_blobs(pack, &located, &mut |k, plain| {
            let targets = &blobs[k].2;
            match plain {
                Ok(plain) => self.write_blob(&plain, targets, &mut open_files),
                Err(e) => {
                    for (i, _) in targets {
                        self.fail(*i, e.to_string());
                    }
                }
            }
        });
        if let Err(e) = read {
            for (_, _, targets) in blobs {
                for (i, _) in targets {
                    self.fail(*i, format!("pack {} cannot be read: {e}", pack.short()));
                }
            }
        }
    }

    /// Writes one blob's plaintext wherever it belongs; a file whose last write this is gets its
    /// metadata through the descriptor that wrote it.
    fn write_blob(
        &self,
        plain: &[u8],
        targets: &Targets,
        open_files: &mut HashMap<usize, fs::File>,
    ) {
        for &(i, offset) in targets {
            if self.has_failed(i) {
                continue;
            }
            self.progress
                .bytes
                .fetch_add(plain.len() as u64, Ordering::Relaxed);
            let file = match open_files.entry(i) {
                std::collections::hash_map::Entry::Occupied(f) => f.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => match self.open_for_write(i) {
                    Ok(f) => v.insert(f),
                    Err(e) => {
                        self.fail(i, e.to_string());
                        continue;
                    }
                },
            };
            if let Err(e) = write_sparse(file, plain, offset) {
                self.fail(i, e.to_string());
            } else if self.remaining[i].fetch_sub(1, Ordering::AcqRel) == 1 {
                // The last write: the file is complete, its metadata goes through the
                // descriptor that wrote it.
                if let Some(file) = open_files.remove(&i) {
                    self.complete(i, &file);
                }
            }
        }
    }

    /// Why `file` differs from `node`'s content, or `None` when it is equal.
    fn differs(&self, file: &mut fs::File, node: &Node) -> io::Result<Option<String>> {
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
            if self.repo.data_id(&buf) != *chunk {
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

/// The names in a directory, `.` and `..` left out.
fn dir_names(dir: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let name = entry?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(OsString::from_vec(name));
        }
    }
    names.sort();
    Ok(names)
}

/// Removes `name` from `dir`, a directory with everything in it, never through a symlink.
fn remove_tree_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(Errno::ISDIR) => {
            let sub = open_dir(dir, name)?;
            for inner in dir_names(sub.as_fd())? {
                remove_tree_at(sub.as_fd(), &inner)?;
            }
            Ok(rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?)
        }
        Err(e) => Err(e.into()),
    }
}

/// Removes `name` from `dir` unless it is a directory (`unlinkat` without `AT_REMOVEDIR` never
/// removes one); a missing entry is fine.
fn remove_non_dir(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(Errno::ISDIR) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "a directory is in the way",
        )),
        Err(e) => Err(e.into()),
    }
}

/// Makes directory `name` in `dir` at mode 0700 and opens it; an existing directory is opened
/// and used, anything else there (a symlink above all) is replaced, never followed.
fn make_dir(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(e.into()),
    }
    let fd = match open_dir(dir, name) {
        Ok(fd) => fd,
        Err(e) if matches!(Errno::from_io_error(&e), Some(Errno::LOOP | Errno::NOTDIR)) => {
            remove_non_dir(dir, name)?;
            rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700))?;
            open_dir(dir, name)?
        }
        Err(e) if Errno::from_io_error(&e) == Some(Errno::ACCESS) => {
            open_unreadable_dir(dir, name)?
        }
        Err(e) => return Err(e),
    };
    // An earlier restore into this target may have given the directory a mode that keeps its
    // owner from adding or removing entries. Open it up while files are written; its own mode
    // is applied again with the rest of its metadata at the end.
    let mode = rustix::fs::fstat(&fd)?.st_mode & 0o7777;
    if mode & 0o700 != 0o700 {
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode | 0o700))?;
    }
    Ok(fd)
}

/// Opens an existing directory its owner may not read (an earlier restore gave it such a mode):
/// gives its owner access through an `O_PATH` descriptor, which needs no permission on it, and
/// opens it again, checking that it is the same directory.
fn open_unreadable_dir(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let path_fd = rustix::fs::openat(dir, name, flags, Mode::empty())?;
    let st = rustix::fs::fstat(&path_fd)?;
    // `fchmod` refuses an `O_PATH` descriptor; its /proc link names the very inode.
    let proc_path = format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&path_fd)
    );
    rustix::fs::chmod(
        proc_path.as_str(),
        Mode::from_raw_mode((st.st_mode & 0o7777) | 0o700),
    )?;
    let fd = open_dir(dir, name)?;
    if file_id(&fd)? != (st.st_dev, st.st_ino) {
        return Err(replaced());
    }
    Ok(fd)
}

/// Creates file `name` in `dir` at its full length, replacing whatever non-directory is there:
/// exclusively and without following a symlink, so the descriptor is of a new inode no one
/// else has opened, at mode 0600 whatever the umask. Unwritten ranges stay holes.
fn create_file(dir: BorrowedFd<'_>, name: &OsStr, size: u64) -> io::Result<fs::File> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mode = Mode::from_raw_mode(0o600);
    let fd = match rustix::fs::openat(dir, name, flags, mode) {
        Err(Errno::EXIST) => {
            remove_non_dir(dir, name)?;
            rustix::fs::openat(dir, name, flags, mode)?
        }
        r => r?,
    };
    let file = fs::File::from(fd);
    file.set_len(size)?;
    Ok(file)
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
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

    fn open_dir_at(path: &Path) -> OwnedFd {
        rustix::fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap()
    }

    /// Regression: files were created at 0666 & umask and reopened with a plain `open`, so a
    /// symlink in their place was followed and another user could read a private file while
    /// it was restored.
    #[test]
    fn files_are_created_private_and_never_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::write(&outside, "not yours").unwrap();
        symlink(&outside, dir.path().join("f")).unwrap();
        let fd = open_dir_at(dir.path());
        let f = create_file(fd.as_fd(), OsStr::new("f"), 5).unwrap();
        let meta = f.metadata().unwrap();
        assert!(meta.is_file());
        assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
        assert_eq!(fs::read(&outside).unwrap(), b"not yours");
        assert!(!fs::symlink_metadata(dir.path().join("f"))
            .unwrap()
            .is_symlink());
        // A directory in the way is reported, not removed.
        fs::create_dir(dir.path().join("d")).unwrap();
        let e = create_file(fd.as_fd(), OsStr::new("d"), 0).unwrap_err();
        assert!(e.to_string().contains("directory is in the way"), "{e}");
    }

    /// Regression: directories were created at 0777 & umask and a symlink in the place of one
    /// could be followed by the path-based walk.
    #[test]
    fn directories_are_made_private_and_symlinks_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        symlink(&outside, dir.path().join("d")).unwrap();
        let fd = open_dir_at(dir.path());
        let d = make_dir(fd.as_fd(), OsStr::new("d")).unwrap();
        let st = rustix::fs::fstat(&d).unwrap();
        assert_eq!(st.st_mode & 0o7777, 0o700);
        assert!(fs::symlink_metadata(dir.path().join("d")).unwrap().is_dir());
        assert!(fs::metadata(&outside).unwrap().is_dir());
        let e = make_dir(fd.as_fd(), OsStr::new("d")).unwrap();
        assert_eq!(file_id(&e).unwrap(), file_id(&d).unwrap());
    }

    #[test]
    fn sparse_writes_keep_content_and_leave_holes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let len = 8 << 20;
        let f = create_file(open_dir_at(dir.path()).as_fd(), OsStr::new("f"), len).unwrap();
        let mut data = vec![0u8; 4 << 20];
        data[5000..5100].fill(7);
        data[(3 << 20) + 1] = 9;
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
