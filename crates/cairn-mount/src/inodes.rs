//! `Inodes`: the mounted file system's entries, numbered from 1 (the root). The root holds
//! `snapshots/`, `hosts/` and `tags/`; each directory of snapshots lists them by name
//! (names.rs) with a `latest` symlink to the newest; a snapshot's directory is its root tree,
//! whose directories are read from the repository the first time they are looked into.
//!
//! Invariant: an inode number, once given, names the same entry for the whole mount (the kernel
//! caches entries for as long as it likes); every path has an inode of its own, even where two
//! paths show the same snapshot, since a directory must have one parent. Content is read chunk
//! by chunk through the `BlobCache`, never a whole file at once.

use crate::cache::BlobCache;
use crate::names::{entry_name, snapshot_names};
use cairn_format::snapshot::Snapshot;
use cairn_format::tree::{FileTime, Node, NodeKind};
use cairn_format::{DataId, SnapshotId, TreeId};
use cairn_repo::{BlobStore, Error, Result};
use jiff::tz::TimeZone;
use std::collections::BTreeMap;
use std::sync::Arc;

pub const ROOT: u64 = 1;

/// What `stat` says of an entry. Made-up directories are 0555 and belong to the mounting user
/// (`owner`); a snapshot's entries have the mode, owner and times they were saved with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    pub kind: NodeKind,
    /// Permission bits (`st_mode & 0o7777`).
    pub perm: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: FileTime,
    pub ctime: FileTime,
    pub rdev: u64,
}

enum What {
    /// A directory the mount makes up: the root, `snapshots/`, `hosts/`, a host, `tags/`, a tag.
    Listing { time: FileTime },
    /// A snapshot's root tree.
    Snapshot { tree: TreeId, time: FileTime },
    /// `latest`: a symlink to the newest snapshot beside it.
    Latest { target: Vec<u8>, time: FileTime },
    /// An entry of a snapshot; a file's chunk ends (offsets in the content) once it was read.
    Node {
        node: Box<Node>,
        chunk_ends: Option<Vec<u64>>,
    },
}

struct Inode {
    parent: u64,
    what: What,
    /// A directory's entries sorted by name, once known (always, for made-up directories).
    children: Option<Vec<(Vec<u8>, u64)>>,
}

pub struct Inodes {
    inodes: Vec<Inode>,
    /// Owner of the made-up directories.
    owner: (u32, u32),
}

impl Inodes {
    /// The layout of `snapshots` (any order), their times named in `tz`.
    pub fn new(snapshots: &[(SnapshotId, Snapshot)], tz: &TimeZone, owner: (u32, u32)) -> Inodes {
        let mut snapshots = snapshots.to_vec();
        snapshots.sort_by_key(|(id, s)| (s.time, id.0 .0));
        let names = snapshot_names(&snapshots, tz);
        let mut inodes = Inodes {
            inodes: Vec::new(),
            owner,
        };
        let all: Vec<usize> = (0..snapshots.len()).collect();
        let newest = |of: &[usize]| {
            of.last().map_or(FileTime::default(), |&i| {
                FileTime::from_ns(snapshots[i].1.time)
            })
        };
        let root = inodes.add(ROOT, What::Listing { time: newest(&all) });
        let mut by_host: BTreeMap<Vec<u8>, Vec<usize>> = BTreeMap::new();
        let mut by_tag: BTreeMap<Vec<u8>, Vec<usize>> = BTreeMap::new();
        for (i, (_, s)) in snapshots.iter().enumerate() {
            by_host.entry(entry_name(&s.host)).or_default().push(i);
            let mut tags: Vec<Vec<u8>> = s.tags.iter().map(|t| entry_name(t)).collect();
            tags.sort();
            tags.dedup();
            for tag in tags {
                by_tag.entry(tag).or_default().push(i);
            }
        }
        let list = inodes.snapshot_listing(root, &all, &snapshots, &names);
        let hosts = inodes.group_listing(root, by_host, &snapshots, &names);
        let tags = inodes.group_listing(root, by_tag, &snapshots, &names);
        inodes.set_children(
            root,
            vec![
                (b"snapshots".to_vec(), list),
                (b"hosts".to_vec(), hosts),
                (b"tags".to_vec(), tags),
            ],
        );
        inodes
    }

    fn add(&mut self, parent: u64, what: What) -> u64 {
        let children = matches!(what, What::Listing { .. }).then(Vec::new);
        self.inodes.push(Inode {
            parent,
            what,
            children,
        });
        self.inodes.len() as u64
    }

    fn set_children(&mut self, ino: u64, mut children: Vec<(Vec<u8>, u64)>) {
        children.sort();
        self.inodes[(ino - 1) as usize].children = Some(children);
    }

    /// A directory of the snapshots `of` (indexes into `snapshots`, oldest first), with `latest`.
    fn snapshot_listing(
        &mut self,
        parent: u64,
        of: &[usize],
        snapshots: &[(SnapshotId, Snapshot)],
        names: &[String],
    ) -> u64 {
        let time = |i: usize| FileTime::from_ns(snapshots[i].1.time);
        let newest = of.last().copied();
        let dir = self.add(
            parent,
            What::Listing {
                time: newest.map_or(FileTime::default(), time),
            },
        );
        let mut children = Vec::new();
        for &i in of {
            let tree = snapshots[i].1.tree;
            let ino = self.add(
                dir,
                What::Snapshot {
                    tree,
                    time: time(i),
                },
            );
            children.push((names[i].clone().into_bytes(), ino));
        }
        if let Some(i) = newest {
            let target = names[i].clone().into_bytes();
            let ino = self.add(
                dir,
                What::Latest {
                    target,
                    time: time(i),
                },
            );
            children.push((b"latest".to_vec(), ino));
        }
        self.set_children(dir, children);
        dir
    }

    /// `hosts/` or `tags/`: a directory of snapshots for each group.
    fn group_listing(
        &mut self,
        parent: u64,
        groups: BTreeMap<Vec<u8>, Vec<usize>>,
        snapshots: &[(SnapshotId, Snapshot)],
        names: &[String],
    ) -> u64 {
        let newest = groups.values().filter_map(|of| of.last()).max().copied();
        let time = newest.map_or(FileTime::default(), |i| {
            FileTime::from_ns(snapshots[i].1.time)
        });
        let dir = self.add(parent, What::Listing { time });
        let mut children = Vec::new();
        for (name, of) in groups {
            children.push((name, self.snapshot_listing(dir, &of, snapshots, names)));
        }
        self.set_children(dir, children);
        dir
    }

    fn get(&self, ino: u64) -> Result<&Inode> {
        ino.checked_sub(1)
            .and_then(|i| self.inodes.get(i as usize))
            .ok_or_else(|| invalid(ino, "does not exist"))
    }

    pub fn attr(&self, ino: u64) -> Result<Attr> {
        let dir = |time: FileTime| Attr {
            kind: NodeKind::Dir,
            perm: 0o555,
            uid: self.owner.0,
            gid: self.owner.1,
            size: 0,
            mtime: time,
            ctime: time,
            rdev: 0,
        };
        Ok(match &self.get(ino)?.what {
            What::Listing { time } | What::Snapshot { time, .. } => dir(*time),
            What::Latest { target, time } => Attr {
                kind: NodeKind::Symlink,
                perm: 0o777,
                size: target.len() as u64,
                ..dir(*time)
            },
            What::Node { node, .. } => Attr {
                kind: node.kind,
                perm: node.mode & 0o7777,
                uid: node.uid,
                gid: node.gid,
                size: match node.kind {
                    NodeKind::File => node.size,
                    NodeKind::Symlink => node.target.len() as u64,
                    _ => 0,
                },
                mtime: node.mtime,
                ctime: node.ctime,
                rdev: node.rdev,
            },
        })
    }

    /// The parent directory (the root's is itself).
    pub fn parent(&self, ino: u64) -> Result<u64> {
        Ok(self.get(ino)?.parent)
    }

    pub fn readlink(&self, ino: u64) -> Result<&[u8]> {
        match &self.get(ino)?.what {
            What::Latest { target, .. } => Ok(target),
            What::Node { node, .. } if node.kind == NodeKind::Symlink => Ok(&node.target),
            _ => Err(invalid(ino, "is not a symlink")),
        }
    }

    /// A directory's entries, sorted by name, once `load_children` has read them.
    pub fn children(&self, ino: u64) -> Result<&[(Vec<u8>, u64)]> {
        self.get(ino)?
            .children
            .as_deref()
            .ok_or_else(|| invalid(ino, "is not a directory read yet"))
    }

    /// Reads a directory's entries from the repository, the first time it is asked.
    pub fn load_children(&mut self, store: &dyn BlobStore, ino: u64) -> Result<()> {
        if self.get(ino)?.children.is_none() {
            let tree = match &self.get(ino)?.what {
                What::Snapshot { tree, .. } => Some(*tree),
                What::Node { node, .. } if node.kind == NodeKind::Dir => node.subtree,
                _ => return Err(invalid(ino, "is not a directory")),
            };
            let nodes = match tree {
                Some(tree) => store.load_tree(tree)?.nodes,
                None => Vec::new(),
            };
            let mut children = Vec::with_capacity(nodes.len());
            for node in nodes {
                let name = node.name.clone();
                let what = What::Node {
                    node: Box::new(node),
                    chunk_ends: None,
                };
                children.push((name, self.add(ino, what)));
            }
            self.set_children(ino, children);
        }
        Ok(())
    }

    pub fn lookup(
        &mut self,
        store: &dyn BlobStore,
        parent: u64,
        name: &[u8],
    ) -> Result<Option<u64>> {
        self.load_children(store, parent)?;
        let children = self.children(parent)?;
        Ok(children
            .binary_search_by(|(n, _)| n.as_slice().cmp(name))
            .ok()
            .map(|at| children[at].1))
    }

    /// Up to `size` bytes of a file's content from `offset`; fewer only at its end.
    pub fn read(
        &mut self,
        store: &dyn BlobStore,
        cache: &mut BlobCache,
        ino: u64,
        offset: u64,
        size: u32,
    ) -> Result<Vec<u8>> {
        self.chunk_ends(store, ino)?;
        let What::Node {
            node,
            chunk_ends: Some(ends),
        } = &self.get(ino)?.what
        else {
            return Err(invalid(ino, "is not a file"));
        };
        let total = ends.last().copied().unwrap_or(0);
        let end = total.min(offset.saturating_add(u64::from(size)));
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let mut pos = offset;
        let mut chunk = ends.partition_point(|&e| e <= offset);
        while pos < end {
            let start = if chunk == 0 { 0 } else { ends[chunk - 1] };
            let id = node.content[chunk];
            let blob = load(store, cache, id)?;
            if blob.len() as u64 != ends[chunk] - start {
                return Err(Error::corrupt(format!(
                    "chunk {id} is {} bytes, the index says {}",
                    blob.len(),
                    ends[chunk] - start
                )));
            }
            let upto = end.min(ends[chunk]);
            out.extend_from_slice(&blob[(pos - start) as usize..(upto - start) as usize]);
            pos = upto;
            chunk += 1;
        }
        Ok(out)
    }

    /// Where each chunk of a file ends, from the lengths the repository's index records, so
    /// that a read at any offset loads only the chunks it covers.
    fn chunk_ends(&mut self, store: &dyn BlobStore, ino: u64) -> Result<()> {
        let inode = self.get(ino)?;
        let What::Node {
            node,
            chunk_ends: None,
        } = &inode.what
        else {
            return Ok(());
        };
        if node.kind != NodeKind::File {
            return Err(invalid(ino, "is not a file"));
        }
        let mut ends = Vec::with_capacity(node.content.len());
        let mut at = 0u64;
        for (id, location) in node.content.iter().zip(store.locate(&node.content)?) {
            let location = location.ok_or_else(|| {
                Error::corrupt(format!("chunk {id} is missing from the repository"))
            })?;
            at += u64::from(location.raw_len);
            ends.push(at);
        }
        if let What::Node { chunk_ends, .. } = &mut self.inodes[(ino - 1) as usize].what {
            *chunk_ends = Some(ends);
        }
        Ok(())
    }
}

fn load(store: &dyn BlobStore, cache: &mut BlobCache, id: DataId) -> Result<Arc<Vec<u8>>> {
    if let Some(blob) = cache.get(&id) {
        return Ok(blob);
    }
    let blob = Arc::new(store.load_data(id)?);
    cache.insert(id, blob.clone());
    Ok(blob)
}

fn invalid(ino: u64, what: &str) -> Error {
    Error::new(
        cairn_repo::ErrorKind::InvalidInput,
        format!("inode {ino} {what}"),
    )
}
