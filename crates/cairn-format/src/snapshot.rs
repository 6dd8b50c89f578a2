//! Snapshot files under `snapshots/` (repo-format.md, "Snapshots"): one per backup, naming the
//! root tree and describing how it was made.

use crate::wire::{err, Reader, Writer};
use crate::{DecodeError, SnapshotId, TreeId};

/// The longest snapshot file a reader reads, and a writer writes (repo-format.md, "Limits"):
/// room for a hundred thousand long source paths.
pub const MAX_SNAPSHOT_LEN: u64 = 64 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Full = 0,
    Incremental = 1,
    Differential = 2,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Full => "full",
            Kind::Incremental => "incremental",
            Kind::Differential => "differential",
        }
    }

    fn from_u8(v: u8) -> Option<Kind> {
        match v {
            0 => Some(Kind::Full),
            1 => Some(Kind::Incremental),
            2 => Some(Kind::Differential),
            _ => None,
        }
    }
}

/// What a backup did, counted against its parent snapshot (all zeros of the parent part when it
/// had none).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Summary {
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unchanged: u64,
    pub files_deleted: u64,
    pub dirs: u64,
    /// Regular files in the snapshot and the sum of their sizes.
    pub total_files: u64,
    pub total_bytes: u64,
    /// Bytes read from source files (unchanged files are not read).
    pub bytes_read: u64,
    /// Blobs and bytes (as stored, after compression and encryption) this backup added.
    pub blobs_added: u64,
    pub bytes_added: u64,
    /// Source entries that could not be read and are missing from the snapshot.
    pub errors: u64,
    pub duration_ns: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Nanoseconds since the Unix epoch, UTC.
    pub time: i64,
    pub host: Vec<u8>,
    pub user: Vec<u8>,
    /// The absolute source paths as given to `backup`, as bytes.
    pub paths: Vec<Vec<u8>>,
    pub tags: Vec<Vec<u8>>,
    pub kind: Kind,
    pub parent: Option<SnapshotId>,
    pub tree: TreeId,
    pub summary: Summary,
    /// Version of the program that wrote it, for support.
    pub program: Vec<u8>,
}

impl Snapshot {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.i64(self.time);
        w.bytes(&self.host);
        w.bytes(&self.user);
        w.count(self.paths.len());
        for p in &self.paths {
            w.bytes(p);
        }
        w.count(self.tags.len());
        for t in &self.tags {
            w.bytes(t);
        }
        w.u8(self.kind as u8);
        w.opt_id(self.parent.as_ref().map(|p| &p.0));
        w.id(&self.tree.0);
        let s = &self.summary;
        for v in [
            s.files_new,
            s.files_changed,
            s.files_unchanged,
            s.files_deleted,
            s.dirs,
            s.total_files,
            s.total_bytes,
            s.bytes_read,
            s.blobs_added,
            s.bytes_added,
            s.errors,
            s.duration_ns,
        ] {
            w.u64(v);
        }
        w.bytes(&self.program);
        w.buf
    }

    pub fn decode(buf: &[u8]) -> Result<Snapshot, DecodeError> {
        let mut r = Reader::new(buf);
        let time = r.i64()?;
        let host = r.bytes()?.to_vec();
        let user = r.bytes()?.to_vec();
        let n = r.count(4)?;
        let paths = (0..n)
            .map(|_| r.bytes().map(<[u8]>::to_vec))
            .collect::<Result<_, _>>()?;
        let n = r.count(4)?;
        let tags = (0..n)
            .map(|_| r.bytes().map(<[u8]>::to_vec))
            .collect::<Result<_, _>>()?;
        let kind = r.u8()?;
        let Some(kind) = Kind::from_u8(kind) else {
            return err(format!("unknown snapshot kind {kind}"));
        };
        let parent = r.opt_id()?.map(SnapshotId);
        let tree = TreeId(r.id()?);
        let summary = Summary {
            files_new: r.u64()?,
            files_changed: r.u64()?,
            files_unchanged: r.u64()?,
            files_deleted: r.u64()?,
            dirs: r.u64()?,
            total_files: r.u64()?,
            total_bytes: r.u64()?,
            bytes_read: r.u64()?,
            blobs_added: r.u64()?,
            bytes_added: r.u64()?,
            errors: r.u64()?,
            duration_ns: r.u64()?,
        };
        let program = r.bytes()?.to_vec();
        r.finish()?;
        Ok(Snapshot {
            time,
            host,
            user,
            paths,
            tags,
            kind,
            parent,
            tree,
            summary,
            program,
        })
    }
}
