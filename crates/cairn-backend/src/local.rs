//! A repository in a local directory (repo-format.md, "Layout" and "Storage assumptions").
//!
//! Packs are fanned out into `data/00` .. `data/ff` by the first two hex digits of their name so
//! that no directory grows past a few thousand entries.

use crate::{
    Backend, BackendError, BackendErrorKind, Entry, FileType, Guarantees, Result, TEMP_PREFIX,
};
use rand::RngCore;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct LocalBackend {
    root: PathBuf,
}

fn io_error(e: io::Error, what: impl FnOnce() -> String) -> BackendError {
    let kind = match e.kind() {
        io::ErrorKind::NotFound => BackendErrorKind::NotFound,
        io::ErrorKind::AlreadyExists => BackendErrorKind::AlreadyExists,
        io::ErrorKind::StorageFull => BackendErrorKind::NoSpace,
        _ => BackendErrorKind::Io,
    };
    BackendError {
        kind,
        message: format!("{}: {}", what(), e),
    }
}

impl LocalBackend {
    /// Opens an existing repository directory.
    pub fn open(root: &Path) -> LocalBackend {
        LocalBackend {
            root: root.to_path_buf(),
        }
    }

    /// Makes the directory tree of a new repository. The directory may exist if it is empty.
    pub fn create_layout(root: &Path) -> Result<LocalBackend> {
        let exists = |e| {
            io_error(e, || {
                format!("cannot create repository at {}", root.display())
            })
        };
        if root.exists() {
            if !root.is_dir() {
                return Err(BackendError {
                    kind: BackendErrorKind::AlreadyExists,
                    message: format!("{} exists and is not a directory", root.display()),
                });
            }
            if fs::read_dir(root).map_err(exists)?.next().is_some() {
                return Err(BackendError {
                    kind: BackendErrorKind::AlreadyExists,
                    message: format!("{} is not empty", root.display()),
                });
            }
        }
        let mut dirs = vec![root.to_path_buf()];
        for t in [
            FileType::Key,
            FileType::Index,
            FileType::Snapshot,
            FileType::Lock,
            FileType::Pack,
        ] {
            dirs.push(root.join(t.dir()));
        }
        for i in 0..=255u8 {
            dirs.push(root.join("data").join(format!("{i:02x}")));
        }
        for d in &dirs {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(d)
                .map_err(exists)?;
        }
        // Children first, so every directory entry is durable before its parent's.
        for d in dirs.iter().rev() {
            fsync_dir(d).map_err(exists)?;
        }
        let parent = root
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        fsync_dir(parent).map_err(exists)?;
        Ok(LocalBackend::open(root))
    }

    /// Whether `root` holds every directory `create_layout` makes: what a server asked to
    /// create a repository that exists answers by (restic's REST protocol makes that request
    /// idempotent).
    pub fn has_layout(root: &Path) -> bool {
        let types = [
            FileType::Key,
            FileType::Index,
            FileType::Snapshot,
            FileType::Lock,
            FileType::Pack,
        ];
        types.iter().all(|t| root.join(t.dir()).is_dir())
            && (0..=255u8).all(|i| root.join("data").join(format!("{i:02x}")).is_dir())
    }

    /// The length of a stored object, from one stat, without reading it; `NotFound` if there
    /// is no such object (a directory under its name is none).
    pub fn size(&self, t: FileType, name: &str) -> Result<u64> {
        let what = || format!("cannot stat {} {name}", t.noun());
        let meta = fs::metadata(self.path(t, name)).map_err(|e| io_error(e, what))?;
        if !meta.is_file() {
            return Err(BackendError {
                kind: BackendErrorKind::NotFound,
                message: format!("{}: not a file", what()),
            });
        }
        Ok(meta.len())
    }

    fn dir_of(&self, t: FileType, name: &str) -> PathBuf {
        match t {
            FileType::Config => self.root.clone(),
            FileType::Pack => self.root.join("data").join(name.get(..2).unwrap_or("00")),
            _ => self.root.join(t.dir()),
        }
    }

    fn path(&self, t: FileType, name: &str) -> PathBuf {
        match t {
            FileType::Config => self.root.join("config"),
            _ => self.dir_of(t, name).join(name),
        }
    }

    fn list_dir(&self, dir: &Path, out: &mut Vec<Entry>) -> Result<()> {
        let rd = fs::read_dir(dir)
            .map_err(|e| io_error(e, || format!("cannot list {}", dir.display())))?;
        for entry in rd {
            let entry =
                entry.map_err(|e| io_error(e, || format!("cannot list {}", dir.display())))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name.starts_with(TEMP_PREFIX) {
                continue;
            }
            let meta = match entry.metadata() {
                Ok(m) => m,
                // Removed between listing and stat: not there any more.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(io_error(e, || {
                        format!("cannot stat {}", entry.path().display())
                    }))
                }
            };
            if meta.is_file() {
                out.push(Entry {
                    name,
                    size: meta.len(),
                });
            }
        }
        Ok(())
    }
}

use std::os::unix::fs::DirBuilderExt;

fn fsync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

impl Backend for LocalBackend {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    /// A hard link fails when its name exists, atomically, on every POSIX file system (NFS
    /// included), and a directory listing shows every link made before it began.
    fn guarantees(&self) -> Guarantees {
        Guarantees {
            exclusive_create: true,
            listing_lag: std::time::Duration::ZERO,
        }
    }

    fn list(&self, t: FileType) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        match t {
            FileType::Config => {
                if let Ok(m) = fs::metadata(self.root.join("config")) {
                    out.push(Entry {
                        name: "config".into(),
                        size: m.len(),
                    });
                }
            }
            FileType::Pack => {
                for i in 0..=255u8 {
                    let dir = self.root.join("data").join(format!("{i:02x}"));
                    if dir.is_dir() {
                        self.list_dir(&dir, &mut out)?;
                    }
                }
            }
            _ => self.list_dir(&self.root.join(t.dir()), &mut out)?,
        }
        Ok(out)
    }

    fn read(&self, t: FileType, name: &str) -> Result<Vec<u8>> {
        let path = self.path(t, name);
        fs::read(&path).map_err(|e| io_error(e, || format!("cannot read {} {name}", t.noun())))
    }

    /// Checks the length the open file has, then reads no more than `max + 1` bytes, so a
    /// file that grows meanwhile is caught too.
    fn read_at_most(&self, t: FileType, name: &str, max: u64) -> Result<Vec<u8>> {
        use std::io::Read;
        let what = || format!("cannot read {} {name}", t.noun());
        let file = fs::File::open(self.path(t, name)).map_err(|e| io_error(e, what))?;
        let len = file.metadata().map_err(|e| io_error(e, what))?.len();
        crate::check_len(t, name, len, max)?;
        let mut buf = Vec::with_capacity(len as usize);
        file.take(max.saturating_add(1))
            .read_to_end(&mut buf)
            .map_err(|e| io_error(e, what))?;
        crate::check_len(t, name, buf.len() as u64, max)?;
        Ok(buf)
    }

    fn read_range(&self, t: FileType, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let what = || {
            format!(
                "cannot read {} bytes at {offset} of {} {name}",
                len,
                t.noun()
            )
        };
        let file = fs::File::open(self.path(t, name)).map_err(|e| io_error(e, what))?;
        let mut buf = vec![0u8; len as usize];
        file.read_exact_at(&mut buf, offset)
            .map_err(|e| io_error(e, what))?;
        Ok(buf)
    }

    /// Temp file, write, fsync, link into place without replacing, fsync the directory.
    fn create(&self, t: FileType, name: &str, bytes: &[u8]) -> Result<()> {
        self.create_parts(t, name, &[bytes])
    }

    fn create_parts(&self, t: FileType, name: &str, parts: &[&[u8]]) -> Result<()> {
        let what = || format!("cannot store {} {name}", t.noun());
        let dir = self.dir_of(t, name);
        let mut suffix = [0u8; 8];
        rand::thread_rng().fill_bytes(&mut suffix);
        let tmp = dir.join(format!(
            "{TEMP_PREFIX}{}",
            suffix
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        ));
        let result = (|| {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            // A file root writes into another user's repository (a cron job's check or
            // backup) goes to the directory's owner, or that user could no longer read it and
            // every later command of theirs would fail. Anyone else cannot give a file away,
            // and keeps it.
            let (mine, dirs) = (f.metadata()?, fs::metadata(&dir)?);
            if (mine.uid(), mine.gid()) != (dirs.uid(), dirs.gid()) {
                let _ = std::os::unix::fs::fchown(&f, Some(dirs.uid()), Some(dirs.gid()));
            }
            for part in parts {
                f.write_all(part)?;
            }
            f.sync_all()?;
            drop(f);
            // A hard link fails if the name exists, which makes the create atomic and create-only
            // on every POSIX file system, unlike rename.
            fs::hard_link(&tmp, self.path(t, name))
        })();
        let _ = fs::remove_file(&tmp);
        result.map_err(|e| io_error(e, what))?;
        fsync_dir(&dir).map_err(|e| io_error(e, what))
    }

    /// Temporaries sit beside the final names, so every directory of the layout is looked at.
    /// Their age is the local clock against their mtime: a wrong clock can at worst remove a
    /// live writer's temporary, whose create then fails; nothing committed is ever touched.
    fn remove_stale_temporaries(&self, age: std::time::Duration) -> Result<(u64, u64)> {
        let mut dirs = vec![self.root.clone()];
        for t in [
            FileType::Key,
            FileType::Lock,
            FileType::Index,
            FileType::Snapshot,
        ] {
            dirs.push(self.root.join(t.dir()));
        }
        dirs.extend((0..=255u8).map(|i| self.root.join("data").join(format!("{i:02x}"))));
        let now = std::time::SystemTime::now();
        let (mut count, mut bytes) = (0, 0);
        for dir in dirs {
            let Ok(rd) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in rd.flatten() {
                if !entry
                    .file_name()
                    .as_encoded_bytes()
                    .starts_with(TEMP_PREFIX.as_bytes())
                {
                    continue;
                }
                let Ok(meta) = entry.metadata() else {
                    continue;
                };
                let old = meta
                    .modified()
                    .ok()
                    .and_then(|m| now.duration_since(m).ok())
                    .is_some_and(|a| a > age);
                if meta.is_file() && old {
                    match fs::remove_file(entry.path()) {
                        Ok(()) => {
                            count += 1;
                            bytes += meta.len();
                        }
                        // Its writer, or another prune, removed it first.
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => {
                            return Err(io_error(e, || {
                                format!("cannot remove {}", entry.path().display())
                            }))
                        }
                    }
                }
            }
        }
        Ok((count, bytes))
    }

    fn remove(&self, t: FileType, name: &str) -> Result<()> {
        let dir = self.dir_of(t, name);
        fs::remove_file(self.path(t, name))
            .map_err(|e| io_error(e, || format!("cannot remove {} {name}", t.noun())))?;
        fsync_dir(&dir).map_err(|e| io_error(e, || format!("cannot sync {}", dir.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_parts_writes_their_concatenation_create_only() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::create_layout(&dir.path().join("repo")).unwrap();
        b.create_parts(FileType::Pack, "cd34", &[b"he", b"", b"llo"])
            .unwrap();
        assert_eq!(b.read(FileType::Pack, "cd34").unwrap(), b"hello");
        let err = b.create_parts(FileType::Pack, "cd34", &[b"x"]).unwrap_err();
        assert_eq!(err.kind, BackendErrorKind::AlreadyExists);
    }

    #[test]
    fn create_is_create_only_and_listed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        let b = LocalBackend::create_layout(&root).unwrap();
        b.create(FileType::Pack, "ab12", b"hello").unwrap();
        let err = b.create(FileType::Pack, "ab12", b"other").unwrap_err();
        assert_eq!(err.kind, BackendErrorKind::AlreadyExists);
        assert_eq!(b.read(FileType::Pack, "ab12").unwrap(), b"hello");
        assert_eq!(b.read_range(FileType::Pack, "ab12", 1, 3).unwrap(), b"ell");
        assert!(b.read_range(FileType::Pack, "ab12", 3, 3).is_err());
        assert_eq!(
            b.list(FileType::Pack).unwrap(),
            vec![Entry {
                name: "ab12".into(),
                size: 5
            }]
        );
        // No temporaries are left behind.
        assert_eq!(fs::read_dir(root.join("data/ab")).unwrap().count(), 1);
        b.remove(FileType::Pack, "ab12").unwrap();
        assert!(b.list(FileType::Pack).unwrap().is_empty());
    }

    /// Regression: temporaries of killed writers (up to a pack each) were never removed.
    #[test]
    fn stale_temporaries_go_and_young_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        let b = LocalBackend::create_layout(&root).unwrap();
        b.create(FileType::Pack, "ab12", b"hello").unwrap();
        let old = root.join("data/ab/.tmp-0011223344556677");
        let young = root.join("index/.tmp-8899aabbccddeeff");
        fs::write(&old, b"partial pack").unwrap();
        fs::write(&young, b"partial index").unwrap();
        let day_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(86_400 + 60);
        fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(day_ago)
            .unwrap();
        let removed = b
            .remove_stale_temporaries(std::time::Duration::from_secs(86_400))
            .unwrap();
        assert_eq!(removed, (1, 12));
        assert!(!old.exists());
        assert!(young.exists());
        assert_eq!(b.read(FileType::Pack, "ab12").unwrap(), b"hello");
    }

    #[test]
    fn size_is_the_stored_length_and_has_layout_the_whole_tree() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        assert!(!LocalBackend::has_layout(&root));
        let b = LocalBackend::create_layout(&root).unwrap();
        assert!(LocalBackend::has_layout(&root));
        b.create(FileType::Pack, "ab12", b"hello").unwrap();
        assert_eq!(b.size(FileType::Pack, "ab12").unwrap(), 5);
        let missing = b.size(FileType::Pack, "ab13").unwrap_err();
        assert_eq!(missing.kind, BackendErrorKind::NotFound);
        fs::create_dir(root.join("keys/cd34")).unwrap();
        assert_eq!(
            b.size(FileType::Key, "cd34").unwrap_err().kind,
            BackendErrorKind::NotFound
        );
        fs::remove_dir(root.join("data/7f")).unwrap();
        assert!(!LocalBackend::has_layout(&root));
    }

    #[test]
    fn layout_refuses_a_non_empty_directory() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("x"), b"").unwrap();
        assert_eq!(
            LocalBackend::create_layout(dir.path()).unwrap_err().kind,
            BackendErrorKind::AlreadyExists
        );
    }
}
