//! Tree blobs (repo-format.md, "Trees"): one per directory, its entries sorted by name bytes.

use crate::wire::{err, Reader, Writer};
use crate::{DataId, DecodeError, TreeId};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum NodeKind {
    #[default]
    File = 0,
    Dir = 1,
    Symlink = 2,
    Fifo = 3,
    CharDevice = 4,
    BlockDevice = 5,
    Socket = 6,
}

impl NodeKind {
    #[cfg(test)]
    pub(crate) fn from_u8_for_tests(v: u8) -> NodeKind {
        NodeKind::from_u8(v).unwrap()
    }

    fn from_u8(v: u8) -> Option<NodeKind> {
        Some(match v {
            0 => NodeKind::File,
            1 => NodeKind::Dir,
            2 => NodeKind::Symlink,
            3 => NodeKind::Fifo,
            4 => NodeKind::CharDevice,
            5 => NodeKind::BlockDevice,
            6 => NodeKind::Socket,
            _ => return None,
        })
    }
}

/// One directory entry. Every field is stored for every kind; fields that do not apply to a kind
/// are zero or empty.
/// A file time as the file system keeps it: seconds since the Unix epoch and nanoseconds, so
/// that every time a file can carry survives, however far from 1970 (an `i64` of nanoseconds
/// would end in 1677 and 2262).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct FileTime {
    pub secs: i64,
    /// Below 1,000,000,000.
    pub nanos: u32,
}

impl FileTime {
    /// From `st_mtime` and `st_mtime_nsec`; a nanosecond count out of range is clamped.
    pub fn new(secs: i64, nanos: i64) -> FileTime {
        FileTime {
            secs,
            nanos: nanos.clamp(0, 999_999_999) as u32,
        }
    }

    /// From nanoseconds since the epoch.
    pub fn from_ns(ns: i64) -> FileTime {
        FileTime::new(ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000))
    }

    /// Nanoseconds since the epoch, saturated to the range of `i64` (years 1677 to 2262).
    pub fn as_ns(self) -> i64 {
        self.secs
            .saturating_mul(1_000_000_000)
            .saturating_add(i64::from(self.nanos))
    }

    fn decode(r: &mut Reader) -> Result<FileTime, DecodeError> {
        let secs = r.i64()?;
        let nanos = r.u32()?;
        if nanos >= 1_000_000_000 {
            return err(format!("file time has {nanos} nanoseconds"));
        }
        Ok(FileTime { secs, nanos })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Node {
    /// The name as the file system gave it: any bytes but `/` and NUL, not necessarily UTF-8.
    pub name: Vec<u8>,
    pub kind: NodeKind,
    /// Permission bits, including set-uid, set-gid and sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub user: Vec<u8>,
    pub group: Vec<u8>,
    pub mtime: FileTime,
    pub ctime: FileTime,
    /// For files, the content length; for symlinks, the target length.
    pub size: u64,
    /// Device and inode at backup time: the incremental-backup fingerprint, and with `links > 1`
    /// the key that groups hard links.
    pub dev: u64,
    pub inode: u64,
    pub links: u64,
    /// Device number of character and block devices.
    pub rdev: u64,
    /// Extended attributes, sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    pub target: Vec<u8>,
    /// The chunks of a file's content, in order.
    pub content: Vec<DataId>,
    pub subtree: Option<TreeId>,
}

/// The deepest a tree may be below its snapshot's root tree (depth 0), that is, the most names a
/// directory's path may have (repo-format.md, "Limits"). Readers walk trees recursively, so this
/// bounds their stack; the archiver does not descend further, so every snapshot it writes can be
/// read back. File systems hold deeper directories only rarely (a path of 512 names of one
/// letter is already 1024 bytes).
pub const MAX_TREE_DEPTH: usize = 512;

/// The largest encoded tree blob (repo-format.md, "Limits"): about 600,000 entries with short
/// names. Readers check a tree blob's length in the index before reading it; the archiver fails
/// clearly on a directory whose tree would be larger.
pub const MAX_TREE_LEN: usize = 64 << 20;

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

/// Fixed part of an encoded node, used to bound counts while decoding: name length, kind, mode,
/// uid, gid, user and group lengths, two 12-byte times, five u64s, xattr count, target length,
/// content count, subtree marker (repo-format.md: "a node takes at least 102 bytes plus its
/// name").
const MIN_NODE_LEN: usize = 4 + 1 + 4 * 3 + 4 * 2 + 12 * 2 + 8 * 5 + 4 + 4 + 4 + 1;

impl Tree {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.count(self.nodes.len());
        for n in &self.nodes {
            w.bytes(&n.name);
            w.u8(n.kind as u8);
            w.u32(n.mode);
            w.u32(n.uid);
            w.u32(n.gid);
            w.bytes(&n.user);
            w.bytes(&n.group);
            for t in [n.mtime, n.ctime] {
                w.i64(t.secs);
                w.u32(t.nanos);
            }
            w.u64(n.size);
            w.u64(n.dev);
            w.u64(n.inode);
            w.u64(n.links);
            w.u64(n.rdev);
            w.count(n.xattrs.len());
            for (k, v) in &n.xattrs {
                w.bytes(k);
                w.bytes(v);
            }
            w.bytes(&n.target);
            w.count(n.content.len());
            for c in &n.content {
                w.id(&c.0);
            }
            w.opt_id(n.subtree.as_ref().map(|t| &t.0));
        }
        w.buf
    }

    pub fn decode(buf: &[u8]) -> Result<Tree, DecodeError> {
        if buf.len() > MAX_TREE_LEN {
            return err(format!(
                "{} bytes, more than the {} MiB a tree may have",
                buf.len(),
                MAX_TREE_LEN >> 20
            ));
        }
        let mut r = Reader::new(buf);
        let count = r.count(MIN_NODE_LEN)?;
        let mut nodes: Vec<Node> = Vec::with_capacity(count);
        for _ in 0..count {
            let name = r.bytes()?.to_vec();
            if name.is_empty()
                || name == b"."
                || name == b".."
                || name.contains(&b'/')
                || name.contains(&0)
            {
                return err(format!(
                    "invalid entry name {:?}",
                    String::from_utf8_lossy(&name)
                ));
            }
            if let Some(prev) = nodes.last() {
                if prev.name >= name {
                    return err("entries are not sorted by name");
                }
            }
            let kind = r.u8()?;
            let Some(kind) = NodeKind::from_u8(kind) else {
                return err(format!("unknown entry type {kind}"));
            };
            let mut n = Node {
                name,
                kind,
                mode: r.u32()?,
                uid: r.u32()?,
                gid: r.u32()?,
                user: r.bytes()?.to_vec(),
                group: r.bytes()?.to_vec(),
                mtime: FileTime::decode(&mut r)?,
                ctime: FileTime::decode(&mut r)?,
                size: r.u64()?,
                dev: r.u64()?,
                inode: r.u64()?,
                links: r.u64()?,
                rdev: r.u64()?,
                ..Node::default()
            };
            let nx = r.count(8)?;
            for _ in 0..nx {
                let k = r.bytes()?.to_vec();
                let v = r.bytes()?.to_vec();
                n.xattrs.push((k, v));
            }
            n.target = r.bytes()?.to_vec();
            let nc = r.count(32)?;
            n.content.reserve(nc);
            for _ in 0..nc {
                n.content.push(DataId(r.id()?));
            }
            n.subtree = r.opt_id()?.map(TreeId);
            if (n.kind == NodeKind::Dir) != n.subtree.is_some() {
                return err("a directory entry must have a subtree, and only a directory");
            }
            nodes.push(n);
        }
        r.finish()?;
        Ok(Tree { nodes })
    }

    pub fn find(&self, name: &[u8]) -> Option<&Node> {
        self.nodes
            .binary_search_by(|n| n.name.as_slice().cmp(name))
            .ok()
            .map(|i| &self.nodes[i])
    }
}
