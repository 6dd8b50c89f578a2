//! `CairnFs`: the fuser `Filesystem` over `Inodes`, answering the kernel's requests one at a
//! time (fuser's session loop is single-threaded). This is the only module that speaks fuser.
//!
//! Invariant: nothing is ever written; every answer is a pure function of the snapshots, so
//! the kernel may cache entries, attributes and pages for as long as it likes. A repository
//! error becomes EIO and one line on stderr naming the inode, never a panic.

use crate::cache::BlobCache;
use crate::inodes::{Attr, Inodes};
use cairn_format::tree::{FileTime, NodeKind};
use cairn_repo::{BlobStore, ErrorKind};
use fuser::{
    FileAttr, FileType, Filesystem, ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry, ReplyOpen,
    Request,
};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::mpsc::Sender;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long the kernel may trust what it was told: snapshots never change.
const TTL: Duration = Duration::from_secs(24 * 60 * 60);

pub struct CairnFs {
    pub store: Box<dyn BlobStore + Send>,
    pub inodes: Inodes,
    pub cache: BlobCache,
    /// Told when the file system goes away, however that happens (`Drop`).
    pub gone: Option<Sender<crate::Ended>>,
}

impl Drop for CairnFs {
    fn drop(&mut self) {
        if let Some(gone) = self.gone.take() {
            let _ = gone.send(crate::Ended::Unmounted);
        }
    }
}

fn errno(ino: u64, e: &cairn_repo::Error) -> i32 {
    match e.kind {
        ErrorKind::InvalidInput => libc::EINVAL,
        _ => {
            eprintln!("cairn mount: inode {ino}: {e}");
            libc::EIO
        }
    }
}

fn system_time(t: FileTime) -> SystemTime {
    let nanos = Duration::from_nanos(u64::from(t.nanos));
    if t.secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(t.secs as u64) + nanos
    } else {
        UNIX_EPOCH - Duration::from_secs(t.secs.unsigned_abs()) + nanos
    }
}

fn file_type(kind: NodeKind) -> FileType {
    match kind {
        NodeKind::File => FileType::RegularFile,
        NodeKind::Dir => FileType::Directory,
        NodeKind::Symlink => FileType::Symlink,
        NodeKind::Fifo => FileType::NamedPipe,
        NodeKind::CharDevice => FileType::CharDevice,
        NodeKind::BlockDevice => FileType::BlockDevice,
        NodeKind::Socket => FileType::Socket,
    }
}

fn file_attr(ino: u64, a: &Attr) -> FileAttr {
    FileAttr {
        ino,
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: system_time(a.mtime),
        mtime: system_time(a.mtime),
        ctime: system_time(a.ctime),
        crtime: system_time(a.mtime),
        kind: file_type(a.kind),
        perm: (a.perm & 0o7777) as u16,
        // 1 for directories too: "unknown", so that find does not count subdirectories by it.
        nlink: 1,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev as u32,
        blksize: 4096,
        flags: 0,
    }
}

impl Filesystem for CairnFs {
    fn destroy(&mut self) {
        if let Some(gone) = self.gone.take() {
            let _ = gone.send(crate::Ended::Unmounted);
        }
    }

    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        let found = self
            .inodes
            .lookup(self.store.as_ref(), parent, name.as_bytes())
            .and_then(|ino| ino.map(|ino| Ok((ino, self.inodes.attr(ino)?))).transpose());
        match found {
            Ok(Some((ino, attr))) => reply.entry(&TTL, &file_attr(ino, &attr), 0),
            Ok(None) => reply.error(libc::ENOENT),
            Err(e) => reply.error(errno(parent, &e)),
        }
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        match self.inodes.attr(ino) {
            Ok(attr) => reply.attr(&TTL, &file_attr(ino, &attr)),
            Err(e) => reply.error(errno(ino, &e)),
        }
    }

    fn readlink(&mut self, _req: &Request<'_>, ino: u64, reply: ReplyData) {
        match self.inodes.readlink(ino) {
            Ok(target) => reply.data(target),
            Err(e) => reply.error(errno(ino, &e)),
        }
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        if flags & libc::O_ACCMODE != libc::O_RDONLY {
            return reply.error(libc::EROFS);
        }
        match self.inodes.attr(ino) {
            Ok(a) if a.kind == NodeKind::File => reply.opened(0, fuser::consts::FOPEN_KEEP_CACHE),
            Ok(_) => reply.error(libc::EINVAL),
            Err(e) => reply.error(errno(ino, &e)),
        }
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        let Ok(offset) = u64::try_from(offset) else {
            return reply.error(libc::EINVAL);
        };
        let store = self.store.as_ref();
        match self.inodes.read(store, &mut self.cache, ino, offset, size) {
            Ok(bytes) => reply.data(&bytes),
            Err(e) => reply.error(errno(ino, &e)),
        }
    }

    fn readdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        mut reply: ReplyDirectory,
    ) {
        let parent = match self.inodes.parent(ino) {
            Ok(parent) => parent,
            Err(e) => return reply.error(errno(ino, &e)),
        };
        let loaded = self.inodes.load_children(self.store.as_ref(), ino);
        let children = match loaded.and_then(|()| self.inodes.children(ino)) {
            Ok(children) => children,
            Err(e) => return reply.error(errno(ino, &e)),
        };
        let dots = [(&b"."[..], ino), (&b".."[..], parent)];
        let entries = dots.into_iter().chain(
            children
                .iter()
                .map(|(name, child)| (name.as_slice(), *child)),
        );
        let skip = usize::try_from(offset).unwrap_or(0);
        for (i, (name, child)) in entries.enumerate().skip(skip) {
            let kind = self
                .inodes
                .attr(child)
                .map_or(FileType::RegularFile, |a| file_type(a.kind));
            // The offset given with an entry is where the next readdir resumes.
            if reply.add(child, (i + 1) as i64, kind, OsStr::from_bytes(name)) {
                break;
            }
        }
        reply.ok();
    }
}
