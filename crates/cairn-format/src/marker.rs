//! Backup markers under `locks/` (repo-format.md, "Garbage collection"): a running backup's
//! announcement to prune. Not sealed: it says only which process on which boot of which machine
//! wrote it, so that a prune on the same machine can tell a killed backup's marker at once.

use crate::wire::{Reader, Writer};
use crate::DecodeError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Marker {
    /// Makes every marker's bytes, and so its name, unique.
    pub nonce: [u8; 16],
    pub pid: u32,
    /// The kernel's boot id and the process's pid namespace (`<boot id>:<ns inode>`), or empty
    /// when unknown: a pid means something only where both match.
    pub machine: Vec<u8>,
}

impl Marker {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.raw(&self.nonce);
        w.u32(self.pid);
        w.bytes(&self.machine);
        w.buf
    }

    pub fn decode(buf: &[u8]) -> Result<Marker, DecodeError> {
        let mut r = Reader::new(buf);
        let nonce = r.take(16)?.try_into().unwrap();
        let pid = r.u32()?;
        let machine = r.bytes()?.to_vec();
        r.finish()?;
        Ok(Marker {
            nonce,
            pid,
            machine,
        })
    }
}
