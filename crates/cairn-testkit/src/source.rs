//! `SourceTree`: a directory of files to back up, built in a temporary directory by a few
//! calls, and compared with a restored copy.

use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};

/// A temporary directory holding `root/`, the tree to back up; removed when dropped.
pub struct SourceTree {
    dir: tempfile::TempDir,
}

impl Default for SourceTree {
    fn default() -> Self {
        SourceTree::new()
    }
}

impl SourceTree {
    pub fn new() -> SourceTree {
        let dir = tempfile::tempdir().expect("a temporary directory");
        fs::create_dir(dir.path().join("root")).expect("the source root");
        SourceTree { dir }
    }

    /// The tree's root: what a backup is given.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// A directory beside the root, for restores.
    pub fn scratch(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn at(&self, rel: &str) -> PathBuf {
        let path = self.root().join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("parent directories");
        }
        path
    }

    pub fn file(&self, rel: &str, content: &[u8]) -> &Self {
        fs::write(self.at(rel), content).expect("a source file");
        self
    }

    /// A file of `len` bytes drawn from `seed`: content that does not compress or repeat.
    pub fn random_file(&self, rel: &str, len: usize, seed: u64) -> &Self {
        let mut bytes = vec![0u8; len];
        rand::rngs::StdRng::seed_from_u64(seed).fill(&mut bytes[..]);
        self.file(rel, &bytes)
    }

    pub fn dir(&self, rel: &str) -> &Self {
        fs::create_dir_all(self.root().join(rel)).expect("a source directory");
        self
    }

    pub fn symlink(&self, rel: &str, target: &str) -> &Self {
        symlink(target, self.at(rel)).expect("a source symlink");
        self
    }

    /// Another name for the existing file `existing`.
    pub fn hard_link(&self, rel: &str, existing: &str) -> &Self {
        fs::hard_link(self.root().join(existing), self.at(rel)).expect("a source hard link");
        self
    }

    pub fn remove(&self, rel: &str) -> &Self {
        let path = self.root().join(rel);
        if path.is_dir() {
            fs::remove_dir_all(path).expect("removing a source directory");
        } else {
            fs::remove_file(path).expect("removing a source file");
        }
        self
    }
}

/// What a tree holds, path by path below `root`: file contents, symlink targets, directories
/// and modes, and which paths are one inode. Equal listings mean an exact restore.
pub fn listing(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, PathBuf> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<_> = fs::read_dir(&dir)
            .expect("a listed directory")
            .map(|e| e.expect("an entry").path())
            .collect();
        entries.sort();
        for path in entries {
            let meta = fs::symlink_metadata(&path).expect("an entry's metadata");
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            let what = if meta.file_type().is_symlink() {
                format!("symlink -> {}", fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                stack.push(path.clone());
                format!("dir {:o}", meta.mode() & 0o7777)
            } else {
                let first = inodes.entry(meta.ino()).or_insert_with(|| rel.clone());
                format!(
                    "file {:o} {} link-of {}",
                    meta.mode() & 0o7777,
                    blake3::hash(&fs::read(&path).unwrap()).to_hex(),
                    first.display()
                )
            };
            out.insert(rel, what);
        }
    }
    out
}
