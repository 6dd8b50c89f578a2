//! Files under `locks/` (repo-format.md, "Garbage collection"): a *marker* says that a
//! *session* (a backup, prune or repair) is running; a *verdict* settles how a session ended,
//! either committed (it carries the snapshot file) or fenced off by a prune. Not sealed: a
//! marker says only which process on which boot of which machine wrote it, so that a prune on
//! the same machine can tell a killed session's marker at once.

use crate::wire::{err, Reader, Writer};
use crate::DecodeError;

const MARKER_MAGIC: &[u8; 8] = b"cairnmk1";
const VERDICT_MAGIC: &[u8; 8] = b"cairnvd1";

/// What precedes the session id in the bytes whose SHA-256 names a verdict.
const VERDICT_NAME_PREFIX: &[u8] = b"cairn verdict ";

/// The bytes whose SHA-256 is the name of `session`'s verdict file (repo-format.md, "Sessions,
/// markers and verdicts"): the one file in `locks/` named by its session, not by its content.
pub fn verdict_name_preimage(session: &[u8; 16]) -> Vec<u8> {
    [VERDICT_NAME_PREFIX, &session[..]].concat()
}

/// The longest file in `locks/` a reader reads (repo-format.md, "Limits"): a verdict holds a
/// whole snapshot file, a marker much less.
pub const MAX_LOCK_LEN: u64 = crate::snapshot::MAX_SNAPSHOT_LEN + (64 << 10);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Marker {
    /// The session's random id, the same in every marker it writes.
    pub session: [u8; 16],
    /// Counts the session's markers: each renewal writes the next, so every marker has its
    /// own bytes and its own name.
    pub sequence: u32,
    pub pid: u32,
    /// The kernel's boot id and the process's pid namespace (`<boot id>:<ns inode>`), or empty
    /// when unknown: a pid means something only where both match.
    pub machine: Vec<u8>,
}

impl Marker {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.raw(MARKER_MAGIC);
        w.raw(&self.session);
        w.u32(self.sequence);
        w.u32(self.pid);
        w.bytes(&self.machine);
        w.buf
    }

    pub fn decode(buf: &[u8]) -> Result<Marker, DecodeError> {
        let mut r = Reader::new(buf);
        if r.take(MARKER_MAGIC.len())? != MARKER_MAGIC {
            return err("not a marker");
        }
        let session = r.take(16)?.try_into().unwrap();
        let sequence = r.u32()?;
        let pid = r.u32()?;
        let machine = r.bytes()?.to_vec();
        r.finish()?;
        Ok(Marker {
            session,
            sequence,
            pid,
            machine,
        })
    }
}

/// How a session ended, settled by whoever creates the verdict file first: the session when it
/// commits, or a prune that fences it off after it fell silent. Its name is fixed by the
/// session (`cairn-repo` derives it), so the two cannot both succeed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A prune fenced the session off: it will never commit under this session. The pid and
    /// machine of its newest marker say where its process ran, so that a prune there can tell
    /// when it is gone for good.
    Fenced { pid: u32, machine: Vec<u8> },
    /// The session commits: these are the exact bytes of its snapshot file.
    Committed(Vec<u8>),
}

impl Verdict {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.raw(VERDICT_MAGIC);
        match self {
            Verdict::Fenced { pid, machine } => {
                w.u8(0);
                w.u32(*pid);
                w.bytes(machine);
            }
            Verdict::Committed(snapshot) => {
                w.u8(1);
                w.bytes(snapshot);
            }
        }
        w.buf
    }

    pub fn decode(buf: &[u8]) -> Result<Verdict, DecodeError> {
        let mut r = Reader::new(buf);
        if r.take(VERDICT_MAGIC.len())? != VERDICT_MAGIC {
            return err("not a verdict");
        }
        let v = match r.u8()? {
            0 => Verdict::Fenced {
                pid: r.u32()?,
                machine: r.bytes()?.to_vec(),
            },
            1 => Verdict::Committed(r.bytes()?.to_vec()),
            k => return err(format!("unknown verdict {k}")),
        };
        r.finish()?;
        Ok(v)
    }

    /// Whether `buf` is a verdict rather than a marker.
    pub fn is_verdict(buf: &[u8]) -> bool {
        buf.starts_with(VERDICT_MAGIC)
    }
}
