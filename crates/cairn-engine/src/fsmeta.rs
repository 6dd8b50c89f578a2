//! Reading a file system entry's metadata into a tree node, and applying a node's metadata to a
//! restored entry.
//!
//! Invariant: no call here takes a path that the kernel resolves through symlinks or that grows
//! with the depth of the tree: each acts on an open descriptor, or on a name relative to an
//! open directory without following it, so a user who can write into a backed-up tree or a
//! restore target cannot redirect them, and paths longer than PATH_MAX work.

use cairn_format::tree::{FileTime, Node, NodeKind};
use rustix::fs::{AtFlags, Mode, OFlags, Timespec, Timestamps};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::OnceLock;

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

/// A node for the entry `name` in directory `dir` (whose path, for messages and as a last
/// resort, is `path`), of which `st` is the `lstat`. Content and subtree are left for the
/// caller. Unreadable extended attributes are left out rather than failing the entry.
// The `Stat` field types differ between architectures: some casts are no-ops on some of them.
#[allow(clippy::unnecessary_cast)]
pub fn node_from_at(
    dir: BorrowedFd<'_>,
    name: &[u8],
    path: &Path,
    st: &rustix::fs::Stat,
) -> io::Result<Node> {
    let kind = kind_of_stat(st);
    let name_os = OsStr::from_bytes(name);
    let target = if kind == NodeKind::Symlink {
        rustix::fs::readlinkat(dir, name_os, Vec::new())?.into_bytes()
    } else {
        Vec::new()
    };
    let (uid, gid) = (st.st_uid as u32, st.st_gid as u32);
    Ok(Node {
        name: name.to_vec(),
        kind,
        mode: st.st_mode as u32 & 0o7777,
        uid,
        gid,
        user: user_name(uid),
        group: group_name(gid),
        mtime: FileTime::new(st.st_mtime as i64, st.st_mtime_nsec as i64),
        ctime: FileTime::new(st.st_ctime as i64, st.st_ctime_nsec as i64),
        size: if kind == NodeKind::File || kind == NodeKind::Symlink {
            st.st_size as u64
        } else {
            0
        },
        dev: st.st_dev as u64,
        inode: st.st_ino as u64,
        links: st.st_nlink as u64,
        rdev: if matches!(kind, NodeKind::CharDevice | NodeKind::BlockDevice) {
            st.st_rdev as u64
        } else {
            0
        },
        xattrs: read_xattrs(&xattr_path(dir, name_os, path)),
        target,
        content: Vec::new(),
        subtree: None,
    })
}

/// A path for the `l*xattr` calls, which have no `*at` form: the entry through its directory's
/// `/proc/self/fd` link, which is short and cannot be redirected above the entry; `path` where
/// /proc is not mounted.
fn xattr_path(dir: BorrowedFd<'_>, name: &OsStr, path: &Path) -> std::path::PathBuf {
    static PROC_FD: OnceLock<bool> = OnceLock::new();
    if *PROC_FD.get_or_init(|| Path::new("/proc/self/fd").is_dir()) {
        Path::new(&format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name)
    } else {
        path.to_path_buf()
    }
}

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
