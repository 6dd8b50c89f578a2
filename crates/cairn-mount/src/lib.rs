//! `cairn mount`: a repository's snapshots as a read-only FUSE file system, until a signal or
//! an unmount. `DIR/snapshots/<time>/`, `DIR/hosts/<host>/<time>/` and `DIR/tags/<tag>/<time>/`
//! each show a snapshot's files with the metadata they were saved with, and each directory of
//! snapshots has a `latest` symlink to the newest (inodes.rs lays it out, names.rs names it).
//! File content is read chunk by chunk through a bounded cache of decrypted blobs (cache.rs).
//!
//! Invariant: the crate sees a repository only through `BlobStore` (no key, index or pack);
//! the mount is gone when `Mounted::wait` returns, whether a signal asked for it or someone
//! unmounted it from outside.

mod cache;
mod fs;
mod inodes;
mod names;

#[cfg(test)]
mod tests;

pub use names::{entry_name, snapshot_names, time_name};

use cairn_format::snapshot::Snapshot;
use cairn_format::SnapshotId;
use cairn_repo::{BlobStore, Error, ErrorKind, Result};
use fuser::MountOption;
use signal_hook::consts::{SIGINT, SIGTERM};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

/// How a mount is set up.
#[derive(Clone, Debug)]
pub struct Options {
    /// The most bytes of decrypted data blobs kept for reading (a chunk is at most 8 MiB with
    /// the default chunk size, so the default holds several of the largest).
    pub cache_bytes: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            cache_bytes: 64 << 20,
        }
    }
}

/// Why a mount ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// SIGINT or SIGTERM; the mount was then taken down.
    Signal(i32),
    /// Unmounted from outside (`fusermount -u`, `umount`).
    Unmounted,
}

/// A mounted file system, served on a thread of its own until `wait` returns.
pub struct Mounted {
    session: Option<fuser::BackgroundSession>,
    ended: Receiver<Ended>,
    signals: signal_hook::iterator::Handle,
    dir: PathBuf,
}

/// Mounts `snapshots` (read from `store`) at `dir`, an existing directory. SIGINT and SIGTERM
/// are caught from here on, so that either takes the mount down instead of killing the process
/// with it still in place.
pub fn mount(
    store: Box<dyn BlobStore + Send>,
    snapshots: &[(SnapshotId, Snapshot)],
    dir: &Path,
    opts: &Options,
) -> Result<Mounted> {
    if !dir.is_dir() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("mount point {} is not a directory", dir.display()),
        ));
    }
    let dir = dir
        .canonicalize()
        .map_err(|e| io_error(format!("cannot resolve mount point {}", dir.display()), e))?;
    let (tx, ended) = channel();
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .map_err(|e| io_error("cannot catch SIGINT and SIGTERM".into(), e))?;
    let handle = signals.handle();
    let on_signal = tx.clone();
    std::thread::spawn(move || {
        for signal in signals.forever() {
            if on_signal.send(Ended::Signal(signal)).is_err() {
                break;
            }
        }
    });
    let owner = (
        rustix::process::getuid().as_raw(),
        rustix::process::getgid().as_raw(),
    );
    let tz = jiff::tz::TimeZone::system();
    let filesystem = fs::CairnFs {
        store,
        inodes: inodes::Inodes::new(snapshots, &tz, owner),
        cache: cache::BlobCache::new(opts.cache_bytes),
        gone: Some(tx),
    };
    // Set-uid bits and devices in a snapshot are shown, never honoured; permissions are the
    // kernel's to check against the saved modes, as on any file system.
    let options = [
        MountOption::RO,
        MountOption::NoSuid,
        MountOption::NoDev,
        MountOption::DefaultPermissions,
        MountOption::FSName("cairn".into()),
        MountOption::Subtype("cairn".into()),
    ];
    let session = fuser::spawn_mount2(filesystem, &dir, &options).map_err(|e| {
        handle.close();
        let hint = if Path::new("/dev/fuse").exists() {
            ""
        } else {
            " (/dev/fuse is missing: is the fuse module loaded?)"
        };
        io_error(format!("cannot mount at {}{hint}", dir.display()), e)
    })?;
    Ok(Mounted {
        session: Some(session),
        ended,
        signals: handle,
        dir,
    })
}

impl Mounted {
    /// The mount point, resolved.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Serves until SIGINT, SIGTERM or an unmount from outside; the mount is gone on return.
    pub fn wait(mut self) -> Ended {
        // Every sender is owned by the signal thread or the file system, which sends as it
        // goes; a closed channel means both are gone, which is an unmount too.
        let why = self.ended.recv().unwrap_or(Ended::Unmounted);
        self.unmount();
        why
    }

    /// Takes the mount down and waits a little for the session to end. A lazy unmount first
    /// (as root), so that a process still inside the mount does not keep it: the mount point
    /// is free at once and the file system ends when the last file is closed, or when this
    /// process exits and the kernel drops the connection.
    fn unmount(&mut self) {
        self.signals.close();
        let Some(session) = self.session.take() else {
            return;
        };
        let _ = rustix::mount::unmount(&self.dir, rustix::mount::UnmountFlags::DETACH);
        // Dropping the session unmounts unless that is done (through `fusermount -u -z` when
        // not root), and ends the session loop.
        let guard = {
            let fuser::BackgroundSession { guard, .. } = session;
            guard
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !guard.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if guard.is_finished() {
            let _ = guard.join();
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        self.unmount();
    }
}

fn io_error(what: String, e: std::io::Error) -> Error {
    Error::new(ErrorKind::Io, format!("{what}: {e}"))
}
