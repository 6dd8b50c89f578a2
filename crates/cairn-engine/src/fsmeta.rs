//! Reading a file system entry's metadata into a tree node, and applying a node's metadata to a
//! restored entry.
//!
//! Invariant: restore-side calls never take a path that the kernel resolves through symlinks:
//! they act on an open descriptor, or on a name relative to an open directory without following
//! it, so a user who can write into the restore target cannot redirect them.

use cairn_format::tree::{FileTime, Node, NodeKind};
use rustix::fs::{AtFlags, Mode, OFlags, Timespec, Timestamps};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::Metadata;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::sync::OnceLock;

fn kind_of(meta: &Metadata) -> NodeKind {
    let t = meta.file_type();
    if t.is_dir() {
        NodeKind::Dir
    } else if t.is_symlink() {
        NodeKind::Symlink
    } else if t.is_fifo() {
        NodeKind::Fifo
    } else if t.is_char_device() {
        NodeKind::CharDevice
    } else if t.is_block_device() {
        NodeKind::BlockDevice
    } else if t.is_socket() {
        NodeKind::Socket
    } else {
        NodeKind::File
    }
}

/// Names of users and groups from /etc/passwd and /etc/group, read once.
fn names(file: &str) -> HashMap<u32, Vec<u8>> {
    let mut out = HashMap::new();
    if let Ok(text) = std::fs::read(file) {
        for line in text.split(|&b| b == b'\n') {
            let mut fields = line.split(|&b| b == b':');
            let (Some(name), Some(_), Some(id)) = (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            if let Some(id) = std::str::from_utf8(id).ok().and_then(|s| s.parse().ok()) {
                out.entry(id).or_insert_with(|| name.to_vec());
            }
        }
    }
    out
}

pub fn user_name(uid: u32) -> Vec<u8> {
    static USERS: OnceLock<HashMap<u32, Vec<u8>>> = OnceLock::new();
    USERS
        .get_or_init(|| names("/etc/passwd"))
        .get(&uid)
        .cloned()
        .unwrap_or_default()
}

fn group_name(gid: u32) -> Vec<u8> {
    static GROUPS: OnceLock<HashMap<u32, Vec<u8>>> = OnceLock::new();
    GROUPS
        .get_or_init(|| names("/etc/group"))
        .get(&gid)
        .cloned()
        .unwrap_or_default()
}

/// A node for the entry at `path`, whose `lstat` is `meta`. Content and subtree are left for the
/// caller. Unreadable extended attributes are left out rather than failing the entry.
pub fn node_from(path: &Path, name: &[u8], meta: &Metadata) -> io::Result<Node> {
    let kind = kind_of(meta);
    let target = if kind == NodeKind::Symlink {
        std::fs::read_link(path)?.into_os_string().into_vec()
    } else {
        Vec::new()
    };
    Ok(Node {
        name: name.to_vec(),
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        user: user_name(meta.uid()),
        group: group_name(meta.gid()),
        mtime: FileTime::new(meta.mtime(), meta.mtime_nsec()),
        ctime: FileTime::new(meta.ctime(), meta.ctime_nsec()),
        size: if kind == NodeKind::File || kind == NodeKind::Symlink {
            meta.size()
        } else {
            0
        },
        dev: meta.dev(),
        inode: meta.ino(),
        links: meta.nlink(),
        rdev: if matches!(kind, NodeKind::CharDevice | NodeKind::BlockDevice) {
            meta.rdev()
        } else {
            0
        },
        xattrs: read_xattrs(path),
        target,
        content: Vec::new(),
        subtree: None,
    })
}

use std::os::unix::ffi::OsStringExt;

fn read_xattrs(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut list = vec![0u8; 1024];
    let len = loop {
        match rustix::fs::llistxattr(path, &mut list[..]) {
            Ok(n) => break n,
            Err(rustix::io::Errno::RANGE) => {
                let Ok(need) = rustix::fs::llistxattr_query(path) else {
                    return Vec::new();
                };
                list.resize(need.max(list.len() * 2), 0);
            }
            Err(_) => return Vec::new(),
        }
    };
    let mut out = Vec::new();
    for name in list[..len].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name_os = OsStr::from_bytes(name);
        let Ok(need) = rustix::fs::lgetxattr_query(path, name_os) else {
            continue;
        };
        let mut value = vec![0u8; need];
        if let Ok(n) = rustix::fs::lgetxattr(path, name_os, &mut value[..]) {
            value.truncate(n);
            out.push((name.to_vec(), value));
        }
    }
    out.sort();
    out
}

fn timespec(t: FileTime) -> Timespec {
    Timespec {
        tv_sec: t.secs,
        tv_nsec: t.nanos.into(),
    }
}

/// Applies ownership (when `owners`), extended attributes, mode and times to a restored file or
/// directory through its open descriptor, so that nothing another user does to the path can
/// redirect them, in the order that keeps each from undoing the one before: chown clears
/// set-uid bits, so mode follows it; writing xattrs may touch ctime but not mtime, so times come
/// last.
pub fn apply_fd(fd: BorrowedFd<'_>, node: &Node, owners: bool) -> io::Result<()> {
    if owners {
        rustix::fs::fchown(
            fd,
            Some(rustix::fs::Uid::from_raw(node.uid)),
            Some(rustix::fs::Gid::from_raw(node.gid)),
        )?;
    }
    for (name, value) in &node.xattrs {
        rustix::fs::fsetxattr(
            fd,
            OsStr::from_bytes(name),
            value,
            rustix::fs::XattrFlags::empty(),
        )?;
    }
    rustix::fs::fchmod(fd, Mode::from_raw_mode(node.mode))?;
    rustix::fs::futimens(fd, &times(node))?;
    Ok(())
}

/// Applies a node's metadata to the symlink, fifo, device or socket `name` in directory `dir`
/// without following it. Such an entry cannot be opened for writing, so it is held by an
/// `O_PATH` descriptor, checked to be of the node's kind, and changed through that descriptor
/// (owner, via `AT_EMPTY_PATH`) or through its `/proc/self/fd` link (xattrs, mode), which names
/// that very inode; times go through `utimensat` relative to `dir` with `AT_SYMLINK_NOFOLLOW`.
pub fn apply_at(dir: BorrowedFd<'_>, name: &OsStr, node: &Node, owners: bool) -> io::Result<()> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    if kind_of_stat(&rustix::fs::fstat(&fd)?) != node.kind {
        return Err(io::Error::other("it was replaced during the restore"));
    }
    if owners {
        rustix::fs::chownat(
            &fd,
            "",
            Some(rustix::fs::Uid::from_raw(node.uid)),
            Some(rustix::fs::Gid::from_raw(node.gid)),
            AtFlags::EMPTY_PATH,
        )?;
    }
    let proc_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    for (name, value) in &node.xattrs {
        rustix::fs::setxattr(
            proc_path.as_str(),
            OsStr::from_bytes(name),
            value,
            rustix::fs::XattrFlags::empty(),
        )?;
    }
    if node.kind != NodeKind::Symlink {
        rustix::fs::chmod(proc_path.as_str(), Mode::from_raw_mode(node.mode))?;
    }
    rustix::fs::utimensat(dir, name, &times(node), AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

fn times(node: &Node) -> Timestamps {
    Timestamps {
        last_access: timespec(node.mtime),
        last_modification: timespec(node.mtime),
    }
}

fn kind_of_stat(st: &rustix::fs::Stat) -> NodeKind {
    match rustix::fs::FileType::from_raw_mode(st.st_mode) {
        rustix::fs::FileType::Directory => NodeKind::Dir,
        rustix::fs::FileType::Symlink => NodeKind::Symlink,
        rustix::fs::FileType::Fifo => NodeKind::Fifo,
        rustix::fs::FileType::CharacterDevice => NodeKind::CharDevice,
        rustix::fs::FileType::BlockDevice => NodeKind::BlockDevice,
        rustix::fs::FileType::Socket => NodeKind::Socket,
        _ => NodeKind::File,
    }
}

/// Creates the fifo, device node or socket `name` in directory `dir`, at mode 0600 until its
/// metadata is applied. Linux makes a socket inode with `mknod` as it does a fifo; whatever
/// program listens on it later replaces it, but until then its owner and mode are there.
pub fn make_special_at(dir: BorrowedFd<'_>, name: &OsStr, node: &Node) -> io::Result<()> {
    let file_type = match node.kind {
        NodeKind::Fifo => rustix::fs::FileType::Fifo,
        NodeKind::CharDevice => rustix::fs::FileType::CharacterDevice,
        NodeKind::BlockDevice => rustix::fs::FileType::BlockDevice,
        NodeKind::Socket => rustix::fs::FileType::Socket,
        _ => return Err(io::Error::other("not a special file")),
    };
    rustix::fs::mknodat(dir, name, file_type, Mode::from_raw_mode(0o600), node.rdev)?;
    Ok(())
}
