//! What the `primitives` and `ceiling` benches share: real bytes read from a directory into
//! memory, and those bytes cut into chunks as a backup cuts them. Each bench includes this file
//! with `#[path = "common.rs"] mod common;`.
//!
//! Invariant: chunks never span two files. A backup chunks each file on its own, so a file
//! smaller than the minimum chunk size is one chunk and costs the chunker nothing; cutting the
//! concatenated bytes instead would make chunks larger and chunking dearer than they are.

use cairn_chunker::Chunker;
use cairn_crypto::MasterKeys;
use cairn_repo::InitOptions;
use std::io::Read;
use std::ops::Range;
use std::path::Path;

/// Bytes of real files held in memory, one after another.
pub struct Sample {
    pub bytes: Vec<u8>,
    /// Where each file lies in `bytes`.
    pub files: Vec<Range<usize>>,
}

impl Sample {
    /// The regular files under `dir`, walked in sorted order, until `want` bytes are read; at
    /// most `per_file` bytes of any one file. The last file read may be cut short.
    pub fn read(dir: &Path, want: usize, per_file: usize) -> Sample {
        let mut sample = Sample {
            bytes: Vec::with_capacity(want),
            files: Vec::new(),
        };
        for_each_file(dir, &mut |path, _| {
            if sample.bytes.len() >= want {
                return false;
            }
            if let Ok(f) = std::fs::File::open(path) {
                let start = sample.bytes.len();
                let limit = (want - start).min(per_file) as u64;
                let _ = f.take(limit).read_to_end(&mut sample.bytes);
                if sample.bytes.len() > start {
                    sample.files.push(start..sample.bytes.len());
                }
            }
            true
        });
        sample
    }

    /// Each file's chunks, in order.
    pub fn chunks<'a>(&'a self, chunker: &Chunker) -> Vec<&'a [u8]> {
        let mut out = Vec::new();
        for file in &self.files {
            let mut rest = &self.bytes[file.clone()];
            let lens: Vec<usize> = chunker.chunks(rest).map(<[u8]>::len).collect();
            for n in lens {
                let (chunk, tail) = rest.split_at(n);
                out.push(chunk);
                rest = tail;
            }
        }
        out
    }
}

/// Calls `f` with the path and length of every regular file under `dir`, in a sorted walk
/// that does not follow symlinks, until `f` returns false. Unreadable entries are passed over.
pub fn for_each_file(dir: &Path, f: &mut dyn FnMut(&Path, u64) -> bool) -> bool {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return true;
    };
    let mut entries: Vec<_> = rd.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let go_on = match e.file_type() {
            Ok(t) if t.is_dir() => for_each_file(&e.path(), f),
            Ok(t) if t.is_file() => f(&e.path(), e.metadata().map_or(0, |m| m.len())),
            _ => true,
        };
        if !go_on {
            return false;
        }
    }
    true
}

/// A chunker with cairn's default sizes (`InitOptions::default()`) and `keys`' gear table.
pub fn default_chunker(keys: &MasterKeys) -> Chunker {
    let o = InitOptions::default();
    Chunker::new(
        keys.gear_table(),
        o.chunk_min as usize,
        o.chunk_avg as usize,
        o.chunk_max as usize,
    )
}
