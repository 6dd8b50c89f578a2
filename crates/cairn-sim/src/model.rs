//! What each simulated host holds on disk, and the content of its files: a function of small
//! numbers, so that what a snapshot must restore is known without keeping the bytes.

use cairn_format::tree::{FileTime, Node, NodeKind, Tree};
use cairn_format::{BlobId, BlobType, DataId, TreeId};
use cairn_repo::Repository;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;

/// Path (`dir/file`) to content number.
pub type Files = BTreeMap<String, u64>;

/// Files are cut into blobs of this size.
pub const PIECE: usize = 8 << 10;

/// The bytes of content number `n`: 1 to 40 KiB, incompressible.
pub fn content(n: u64) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let len = rng.gen_range(1_000..40_000);
    let mut out = vec![0u8; len];
    rng.fill(&mut out[..]);
    out
}

/// A host's files before its first backup.
pub fn initial(rng: &mut StdRng) -> Files {
    let mut files = Files::new();
    for _ in 0..rng.gen_range(3..10) {
        files.insert(path(rng), rng.gen_range(0..40));
    }
    files
}

fn path(rng: &mut StdRng) -> String {
    format!(
        "{}/f{}",
        ["a", "b", "c"][rng.gen_range(0..3)],
        rng.gen_range(0..8)
    )
}

/// Changes a host's files before a backup: new content (some of it shared by every host, some
/// of it content forgotten snapshots held, so that backups find blobs in packs a prune is about
/// to condemn), new files, deletions.
pub fn mutate(files: &mut Files, rng: &mut StdRng) {
    for _ in 0..rng.gen_range(1..5) {
        let n = if rng.gen_bool(0.5) {
            rng.gen_range(0..60)
        } else {
            rng.gen_range(1_000..1_000_000)
        };
        files.insert(path(rng), n);
    }
    if files.len() > 2 && rng.gen_bool(0.3) {
        let victim = files.keys().nth(rng.gen_range(0..files.len())).cloned();
        files.remove(&victim.unwrap());
    }
}

/// A file's node: its content number is its mtime, so a backup can tell an unchanged file as
/// the archiver does, by size and times.
fn file_node(name: &str, n: u64, content: Vec<DataId>, size: u64) -> Node {
    Node {
        name: name.as_bytes().to_vec(),
        kind: NodeKind::File,
        mode: 0o600,
        mtime: FileTime::new(n as i64, 0),
        ctime: FileTime::new(n as i64, 0),
        size,
        inode: n,
        links: 1,
        content,
        ..Node::default()
    }
}

fn dir_node(name: &str, subtree: TreeId) -> Node {
    Node {
        name: name.as_bytes().to_vec(),
        kind: NodeKind::Dir,
        mode: 0o700,
        links: 1,
        subtree: Some(subtree),
        ..Node::default()
    }
}

/// Stores `files` as the archiver would: a file unchanged since `parent` (same size and times)
/// keeps its content list when every blob of it is still in the repository, others are cut and
/// stored. Returns the root tree.
pub fn store(
    repo: &Repository,
    files: &Files,
    parent: Option<TreeId>,
) -> cairn_repo::Result<TreeId> {
    // A parent tree gone (its snapshot forgotten and pruned meanwhile) is compared with
    // nothing, as the archiver does.
    let load = |t: Option<TreeId>| match t.map(|t| repo.load_tree(t)).transpose() {
        Err(e) if e.kind == cairn_repo::ErrorKind::NotFound => Ok(None),
        r => r,
    };
    let parent_root = load(parent)?;
    let mut dirs: BTreeMap<&str, Vec<(&str, u64)>> = BTreeMap::new();
    for (path, n) in files {
        let (dir, name) = path.split_once('/').expect("paths are dir/file");
        dirs.entry(dir).or_default().push((name, *n));
    }
    let mut root = Vec::new();
    for (dir, entries) in dirs {
        let parent_dir = load(
            parent_root
                .as_ref()
                .and_then(|t| t.find(dir.as_bytes()))
                .and_then(|node| node.subtree),
        )?;
        let mut nodes = Vec::new();
        for (name, n) in entries {
            let bytes = content(n);
            let old = parent_dir.as_ref().and_then(|t| t.find(name.as_bytes()));
            let unchanged = match old {
                Some(old) if old.mtime.secs == n as i64 && old.size == bytes.len() as u64 => {
                    let mut all = true;
                    for c in &old.content {
                        all &= repo.has_blob(&BlobId::from(*c))?;
                    }
                    all
                }
                _ => false,
            };
            let ids = if unchanged {
                old.unwrap().content.clone()
            } else {
                let mut ids = Vec::new();
                for piece in bytes.chunks(PIECE) {
                    let id = repo.blob_id(piece);
                    repo.save_blob(BlobType::Data, id, piece)?;
                    ids.push(DataId(id));
                }
                ids
            };
            nodes.push(file_node(name, n, ids, bytes.len() as u64));
        }
        let (tree, _) = repo.save_tree(&Tree { nodes })?;
        root.push(dir_node(dir, tree));
    }
    Ok(repo.save_tree(&Tree { nodes: root })?.0)
}

/// Whether the tree at `root` holds exactly `files`, every blob of it readable and intact.
/// `read` reads and verifies one data blob (the oracle remembers those it has read).
pub fn compare(
    repo: &Repository,
    root: TreeId,
    files: &Files,
    mut read: impl FnMut(&BlobId) -> Result<(), String>,
) -> Result<(), String> {
    let load = |t: TreeId| {
        repo.load_tree(t)
            .map_err(|e| format!("tree {}: {e}", t.short()))
    };
    let mut found = Files::new();
    for dir in load(root)?.nodes {
        let Some(sub) = dir.subtree else {
            return Err("a directory without a subtree".into());
        };
        let dir_name = String::from_utf8_lossy(&dir.name).into_owned();
        for file in load(sub)?.nodes {
            let name = String::from_utf8_lossy(&file.name).into_owned();
            let n = file.mtime.secs as u64;
            let bytes = content(n);
            let want: Vec<DataId> = bytes
                .chunks(PIECE)
                .map(|p| DataId(repo.blob_id(p)))
                .collect();
            if file.content != want {
                return Err(format!("{dir_name}/{name}: content list differs"));
            }
            for c in &file.content {
                read(&BlobId::from(*c)).map_err(|e| format!("{dir_name}/{name}: {e}"))?;
            }
            found.insert(format!("{dir_name}/{name}"), n);
        }
    }
    if &found != files {
        return Err(format!("holds {found:?}, backed up {files:?}"));
    }
    Ok(())
}
