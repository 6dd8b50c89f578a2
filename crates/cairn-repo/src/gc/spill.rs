//! Fixed-size records too many to hold in memory: appended in order and read back in order,
//! from a small buffer that moves to a temporary file each time it fills.
//!
//! Invariant: the file has no name (`O_TMPFILE` or created and unlinked at once), so no crash
//! leaves one behind; a spill of few records never touches the disk; the buffers of a set of
//! partitions hold `PARTITIONS_BUDGET` together, however many partitions there are.

use crate::Result;
use crate::{Error, ErrorKind};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Bytes held in memory before they go to the file, at most.
const BUFFER: usize = 256 << 10;
/// And at least: smaller writes would cost more in system calls than the memory they spare.
const MIN_BUFFER: usize = 16 << 10;
/// What the buffers of one set of partitions hold together: at 100 million blobs, 256
/// partitions of 256 KiB each would have been 64 MiB.
const PARTITIONS_BUDGET: usize = 16 << 20;
/// Bytes read from the file at a time: spills are read one at a time.
const READ: usize = 1 << 20;

pub struct Spill {
    record: usize,
    dir: PathBuf,
    /// Bytes the buffer holds before it goes to the file: a whole number of records.
    buffer: usize,
    buf: Vec<u8>,
    file: Option<File>,
    in_file: u64,
}

impl Spill {
    /// `n` spills of `record`-byte records, one per partition, whose files, if they need them,
    /// go in `dir`, and whose buffers hold `PARTITIONS_BUDGET` together.
    pub fn partitions(dir: &Path, record: usize, n: u64) -> Vec<Spill> {
        let each = (PARTITIONS_BUDGET / n.max(1) as usize).clamp(MIN_BUFFER, BUFFER);
        (0..n)
            .map(|_| Spill::with_buffer(dir, record, each))
            .collect()
    }

    fn with_buffer(dir: &Path, record: usize, bytes: usize) -> Spill {
        Spill {
            record,
            dir: dir.to_path_buf(),
            buffer: (bytes / record).max(1) * record,
            buf: Vec::new(),
            file: None,
            in_file: 0,
        }
    }

    pub fn len(&self) -> u64 {
        (self.in_file + self.buf.len() as u64) / self.record as u64
    }

    pub fn push(&mut self, record: &[u8]) -> Result<()> {
        debug_assert_eq!(record.len(), self.record);
        if self.buf.capacity() == 0 {
            // Exactly the buffer: grown by doubling, it could take twice that.
            self.buf.reserve_exact(self.buffer);
        }
        self.buf.extend_from_slice(record);
        if self.buf.len() >= self.buffer {
            let file = match &mut self.file {
                Some(f) => f,
                None => self
                    .file
                    .insert(tempfile::tempfile_in(&self.dir).map_err(|e| io_error(&self.dir, e))?),
            };
            file.write_all(&self.buf)
                .map_err(|e| io_error(&self.dir, e))?;
            self.in_file += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }

    /// Calls `f` on every record, in the order they were pushed.
    pub fn for_each(&mut self, mut f: impl FnMut(&[u8])) -> Result<()> {
        if let Some(file) = &mut self.file {
            let dir = &self.dir;
            file.seek(SeekFrom::Start(0))
                .map_err(|e| io_error(dir, e))?;
            // The file holds whole buffers, each a whole number of records.
            let mut chunk = vec![0u8; READ / self.record * self.record];
            let mut left = self.in_file;
            while left > 0 {
                let n = chunk.len().min(left as usize);
                file.read_exact(&mut chunk[..n])
                    .map_err(|e| io_error(dir, e))?;
                chunk[..n].chunks_exact(self.record).for_each(&mut f);
                left -= n as u64;
            }
        }
        self.buf.chunks_exact(self.record).for_each(f);
        Ok(())
    }
}

fn io_error(dir: &Path, e: std::io::Error) -> Error {
    let kind = match e.kind() {
        std::io::ErrorKind::StorageFull => ErrorKind::NoSpace,
        _ => ErrorKind::Io,
    };
    Error::new(kind, format!("scratch file in {}: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_back_in_order_across_memory_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut spill = Spill::partitions(dir.path(), 12, 1).pop().unwrap();
        // Enough records to fill the buffer several times and leave a partial one.
        let n = 3 * BUFFER / 12 + 7;
        for i in 0..n as u64 {
            let mut r = [0u8; 12];
            r[..8].copy_from_slice(&i.to_le_bytes());
            r[8..].copy_from_slice(&(i as u32 ^ 0xa5a5).to_le_bytes());
            spill.push(&r).unwrap();
        }
        assert_eq!(spill.len(), n as u64);
        assert!(spill.in_file > 0, "the test must exercise the file");
        for _ in 0..2 {
            let mut next = 0u64;
            spill
                .for_each(|r| {
                    assert_eq!(u64::from_le_bytes(r[..8].try_into().unwrap()), next);
                    assert_eq!(
                        u32::from_le_bytes(r[8..].try_into().unwrap()),
                        next as u32 ^ 0xa5a5
                    );
                    next += 1;
                })
                .unwrap();
            assert_eq!(next, n as u64);
        }
        // The file has no name: nothing is left in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn partitions_share_one_budget_and_keep_their_records_apart() {
        let dir = tempfile::tempdir().unwrap();
        let few = Spill::partitions(dir.path(), 33, 4);
        assert_eq!(few[0].buffer, BUFFER / 33 * 33);
        let mut many = Spill::partitions(dir.path(), 33, 256);
        let held: usize = many.iter().map(|s| s.buffer).sum();
        assert!(held <= PARTITIONS_BUDGET, "{held} bytes of buffers");
        assert!(many[0].buffer < BUFFER && many[0].buffer >= MIN_BUFFER - 33);
        // Enough records to spill each partition's buffer twice over, spread round-robin.
        let per = 2 * many[0].buffer / 33 + 5;
        for i in 0..per * many.len() {
            let mut r = [0u8; 33];
            r[..8].copy_from_slice(&(i as u64).to_le_bytes());
            many[i % 256].push(&r).unwrap();
        }
        for (p, spill) in many.iter_mut().enumerate() {
            assert!(spill.in_file > 0, "partition {p} must exercise its file");
            assert!(
                spill.buf.capacity() <= spill.buffer,
                "the buffer stays in its share"
            );
            let mut next = p as u64;
            spill
                .for_each(|r| {
                    assert_eq!(u64::from_le_bytes(r[..8].try_into().unwrap()), next);
                    next += 256;
                })
                .unwrap();
            assert_eq!(next, p as u64 + 256 * per as u64);
        }
    }

    #[test]
    fn a_missing_directory_is_named_in_the_error() {
        let mut spill = Spill::partitions(Path::new("/nonexistent/cairn-scratch"), 4, 1)
            .pop()
            .unwrap();
        let err = (0..BUFFER / 4 + 1)
            .try_for_each(|_| spill.push(&[1, 2, 3, 4]))
            .unwrap_err();
        assert!(err.message.contains("/nonexistent/cairn-scratch"), "{err}");
    }
}
