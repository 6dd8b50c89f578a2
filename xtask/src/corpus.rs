//! The benchmark's corpora, made from real files on this machine and cached under target/bench:
//! C1 (large files from /usr/lib and /usr/share), C2 (many small files) and the base of C3 (a
//! source tree that deterministic edits turn into 8 successive versions).
//!
//! Invariant: a cached corpus is never modified. Steps that change files work on a copy
//! (`working_copy`), and the edits are a function of a seed and of the sorted file list only,
//! so every tool and every run sees the same bytes.

use crate::Result;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A directory of files and what it holds.
pub struct Corpus {
    pub path: PathBuf,
    pub bytes: u64,
    pub files: u64,
}

/// When `cached_copy` stops copying.
pub struct Limits {
    pub bytes: u64,
    pub files: u64,
    /// Larger files are left out.
    pub max_file: u64,
}

/// Copies regular files from `sources`, each walked in sorted order and in the order given,
/// into `dest` (a source `/usr/lib` lands in `dest/usr/lib`) until a limit is reached. The
/// result is cached: a marker `DEST.complete` beside `dest` holds "bytes files" and the limits,
/// and a later call with the same limits copies nothing.
pub fn cached_copy(dest: &Path, sources: &[PathBuf], limits: &Limits) -> Result<Corpus> {
    let marker = PathBuf::from(format!("{}.complete", dest.display()));
    let cached = |bytes, files| Corpus {
        path: dest.to_path_buf(),
        bytes,
        files,
    };
    // Earlier versions of the bench kept the marker inside the corpus, where every tool backed
    // it up; move it out.
    let legacy = dest.join(".complete");
    if legacy.is_file() && !marker.exists() {
        let bytes = fs::read_to_string(&legacy).map_err(|e| e.to_string())?;
        let files = list_files(dest).len() as u64 - 1;
        fs::write(&marker, format!("{} {files}", bytes.trim())).map_err(|e| e.to_string())?;
        fs::remove_file(&legacy).map_err(|e| e.to_string())?;
    }
    if let Ok(text) = fs::read_to_string(&marker) {
        let n: Vec<u64> = text
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        match n[..] {
            // Corpora made before the marker recorded the limits are taken as they are.
            [bytes, files] => return Ok(cached(bytes, files)),
            [bytes, files, b, f, m]
                if [b, f, m] == [limits.bytes, limits.files, limits.max_file] =>
            {
                return Ok(cached(bytes, files))
            }
            [_, _, _, _, _] => eprintln!(
                "bench: {} was made with other limits; making it again",
                dest.display()
            ),
            _ => return Err(format!("bad corpus marker {}", marker.display())),
        }
    }
    let _ = fs::remove_dir_all(dest);
    fs::create_dir_all(dest).map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
    let mut corpus = Corpus {
        path: dest.to_path_buf(),
        bytes: 0,
        files: 0,
    };
    fn walk(src: &Path, dst: &Path, corpus: &mut Corpus, limits: &Limits) {
        let Ok(rd) = fs::read_dir(src) else { return };
        let mut entries: Vec<_> = rd.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            if corpus.bytes >= limits.bytes || corpus.files >= limits.files {
                return;
            }
            let Ok(t) = e.file_type() else { continue };
            let to = dst.join(e.file_name());
            if t.is_dir() {
                walk(&e.path(), &to, corpus, limits);
            } else if t.is_file() {
                if e.metadata()
                    .map(|m| m.len() > limits.max_file)
                    .unwrap_or(true)
                {
                    continue;
                }
                let _ = fs::create_dir_all(dst);
                if let Ok(n) = fs::copy(e.path(), &to) {
                    corpus.bytes += n;
                    corpus.files += 1;
                }
            }
        }
    }
    for s in sources {
        if !s.is_dir() {
            eprintln!(
                "bench: {} does not exist, left out of {}",
                s.display(),
                dest.display()
            );
            continue;
        }
        let rel = s.strip_prefix("/").unwrap_or(s);
        walk(s, &dest.join(rel), &mut corpus, limits);
    }
    if corpus.files == 0 {
        return Err(format!("no files found for {}", dest.display()));
    }
    let stamp = format!(
        "{} {} {} {} {}",
        corpus.bytes, corpus.files, limits.bytes, limits.files, limits.max_file
    );
    fs::write(&marker, stamp).map_err(|e| e.to_string())?;
    Ok(corpus)
}

/// A copy of `corpus` at `dest` that steps may change. It is reused while a marker
/// `DEST.pristine` says it equals the corpus; code that changes it removes the marker first
/// and writes it again once the change is undone, so an interrupted run leaves no stale copy.
pub fn working_copy(corpus: &Corpus, dest: &Path) -> Result<Corpus> {
    let marker = PathBuf::from(format!("{}.pristine", dest.display()));
    let stamp = format!(
        "{} {} {}",
        corpus.path.display(),
        corpus.bytes,
        corpus.files
    );
    if fs::read_to_string(&marker).ok().as_deref() != Some(stamp.as_str()) {
        let _ = fs::remove_file(&marker);
        let _ = fs::remove_dir_all(dest);
        copy_tree(&corpus.path, dest)?;
        fs::write(&marker, &stamp).map_err(|e| e.to_string())?;
    }
    Ok(Corpus {
        path: dest.to_path_buf(),
        bytes: corpus.bytes,
        files: corpus.files,
    })
}

/// The tree of the start-up steps: 32 files of 2 KiB in 4 directories, the same bytes on
/// every run, so small that what a command costs is what it costs to start.
pub fn tiny(dest: &Path) -> Result<Corpus> {
    let _ = fs::remove_dir_all(dest);
    for i in 0..32u64 {
        let dir = dest.join(format!("d{}", i % 4));
        fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let line = format!("file {i}: a line of the tiny tree the start-up steps back up\n");
        let body = line.repeat(2048 / line.len() + 1);
        fs::write(dir.join(format!("f{i}.txt")), &body.as_bytes()[..2048])
            .map_err(|e| e.to_string())?;
    }
    Ok(Corpus {
        path: dest.to_path_buf(),
        bytes: 32 * 2048,
        files: 32,
    })
}

pub fn set_pristine(copy: &Corpus, original: &Corpus, pristine: bool) -> Result<()> {
    let marker = PathBuf::from(format!("{}.pristine", copy.path.display()));
    if pristine {
        let stamp = format!(
            "{} {} {}",
            original.path.display(),
            original.bytes,
            original.files
        );
        fs::write(&marker, stamp).map_err(|e| e.to_string())
    } else {
        match fs::remove_file(&marker) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.to_string()),
            _ => Ok(()),
        }
    }
}

/// Copies the regular files and directories under `src` to `dst` (no hard links, no symlinks).
pub fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    fs::create_dir_all(dst).map_err(|e| format!("cannot create {}: {e}", dst.display()))?;
    let rd = fs::read_dir(src).map_err(|e| format!("cannot read {}: {e}", src.display()))?;
    for e in rd.flatten() {
        let Ok(t) = e.file_type() else { continue };
        let to = dst.join(e.file_name());
        if t.is_dir() {
            copy_tree(&e.path(), &to)?;
        } else if t.is_file() {
            fs::copy(e.path(), &to)
                .map_err(|err| format!("cannot copy {}: {err}", e.path().display()))?;
        }
    }
    Ok(())
}

/// Every regular file under `dir`, sorted.
pub fn list_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        let mut entries: Vec<_> = rd.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            match e.file_type() {
                Ok(t) if t.is_dir() => walk(&e.path(), out),
                Ok(t) if t.is_file() => out.push(e.path()),
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out
}

/// Reads every file once, so that the first tool does not pay for a cold page cache.
pub fn warm(dir: &Path) {
    let mut buf = vec![0u8; 1 << 20];
    for f in list_files(dir) {
        if let Ok(mut file) = fs::File::open(&f) {
            while matches!(file.read(&mut buf), Ok(n) if n > 0) {}
        }
    }
}

/// Total length of the files under `path`, as a repository's size is counted.
pub fn du(path: &Path) -> u64 {
    let Ok(m) = fs::symlink_metadata(path) else {
        return 0;
    };
    if m.is_dir() {
        fs::read_dir(path)
            .map(|rd| rd.flatten().map(|e| du(&e.path())).sum())
            .unwrap_or(0)
    } else {
        m.len()
    }
}

/// SplitMix64: a small, fast generator, good enough to pick files and bytes reproducibly.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0); the modulo bias is irrelevant at these sizes.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// `k` distinct indices of `0..n`, in the order drawn (a partial Fisher-Yates shuffle).
    pub fn pick(&mut self, n: usize, k: usize) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..n).collect();
        let k = k.min(n);
        for i in 0..k {
            let j = i + self.below(n - i);
            idx.swap(i, j);
        }
        idx.truncate(k);
        idx
    }
}

/// What `change_files` overwrote, to be put back by `undo`.
pub struct Undo {
    saved: Vec<(PathBuf, u64, Vec<u8>, SystemTime)>,
}

/// Overwrites up to 4 KiB at a seeded offset in 1% of the files under `dir` (at least one),
/// chosen by a generator seeded with `seed`. Returns how to undo it and how many files changed.
pub fn change_files(dir: &Path, seed: u64) -> Result<(Undo, usize)> {
    let files = list_files(dir);
    let mut rng = Rng::new(seed);
    let mut undo = Undo { saved: Vec::new() };
    for i in rng.pick(files.len(), files.len().div_ceil(100)) {
        let path = &files[i];
        let meta = fs::metadata(path).map_err(|e| e.to_string())?;
        if meta.len() == 0 {
            continue;
        }
        let offset = rng.below(meta.len() as usize) as u64;
        let n = (meta.len() - offset).min(4096) as usize;
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let mut old = vec![0u8; n];
        file.seek(SeekFrom::Start(offset))
            .and_then(|_| file.read_exact(&mut old))
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let new: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
        undo.saved.push((
            path.clone(),
            offset,
            old,
            meta.modified().map_err(|e| e.to_string())?,
        ));
        file.seek(SeekFrom::Start(offset))
            .and_then(|_| file.write_all(&new))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    let n = undo.saved.len();
    Ok((undo, n))
}

impl Undo {
    /// Puts back the bytes and modification times `change_files` replaced.
    pub fn undo(self) -> Result<()> {
        for (path, offset, old, mtime) in self.saved {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
            file.seek(SeekFrom::Start(offset))
                .and_then(|_| file.write_all(&old))
                .and_then(|_| file.set_modified(mtime))
                .map_err(|e| format!("cannot restore {}: {e}", path.display()))?;
        }
        Ok(())
    }
}

/// Words that edits insert, so that edited files stay as compressible as source code.
const WORDS: &[&str] = &[
    "let", "fn", "self", "return", "if", "else", "match", "value", "count", "buffer", "index",
    "len", "=", "+", "(", ")", ";", "{", "}", "&mut", "0", "1", "None", "Some", "Ok", "Err",
];

fn edit(content: &mut Vec<u8>, rng: &mut Rng) {
    // Insert a line after a line break near a seeded position.
    let mut at = if content.is_empty() {
        0
    } else {
        rng.below(content.len())
    };
    if let Some(nl) = content[at..].iter().take(200).position(|&b| b == b'\n') {
        at += nl + 1;
    }
    let mut line = String::from("    ");
    for _ in 0..4 + rng.below(12) {
        line.push_str(WORDS[rng.below(WORDS.len())]);
        line.push(' ');
    }
    line.push('\n');
    content.splice(at..at, line.into_bytes());
    // And, every other time, delete a span of up to 256 bytes elsewhere.
    if rng.below(2) == 0 && content.len() > 512 {
        let from = rng.below(content.len() - 256);
        content.drain(from..from + 1 + rng.below(256));
    }
}

/// What one C3 release changed.
pub struct Release {
    pub modified: usize,
    pub added: usize,
    pub deleted: usize,
}

/// Turns version `version - 1` of the C3 tree in `dir` into version `version` (2 to 8):
/// modifies 2% of the files (a line inserted, maybe a span deleted), adds 1% (edited copies of
/// existing files, beside them) and deletes 0.5%, all picked by a generator seeded with the
/// version, from the sorted file list.
pub fn next_release(dir: &Path, version: u64) -> Result<Release> {
    let files = list_files(dir);
    let n = files.len();
    let mut rng = Rng::new(0xC3_0000 + version);
    let (n_mod, n_add, n_del) = (n.div_ceil(50), n.div_ceil(100), n.div_ceil(200));
    let picked = rng.pick(n, n_mod + n_add + n_del);
    let read = |p: &Path| fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    let write = |p: &Path, b: &[u8]| {
        fs::write(p, b).map_err(|e| format!("cannot write {}: {e}", p.display()))
    };
    for &i in &picked[..n_mod.min(picked.len())] {
        let mut content = read(&files[i])?;
        edit(&mut content, &mut rng);
        write(&files[i], &content)?;
    }
    let rest = &picked[n_mod.min(picked.len())..];
    for (k, &i) in rest.iter().take(n_add).enumerate() {
        let template = &files[i];
        let mut content = read(template)?;
        edit(&mut content, &mut rng);
        let name = template.file_name().unwrap().to_string_lossy();
        write(
            &template.with_file_name(format!("v{version}-{k}-{name}")),
            &content,
        )?;
    }
    for &i in rest.iter().skip(n_add) {
        fs::remove_file(&files[i])
            .map_err(|e| format!("cannot remove {}: {e}", files[i].display()))?;
    }
    Ok(Release {
        modified: n_mod,
        added: n_add.min(rest.len()),
        deleted: rest.len().saturating_sub(n_add),
    })
}

/// The directories C2 is made of, in order: /usr/share/doc, /usr/include, the cargo registry's
/// sources, python's libraries, and the Rust toolchain's HTML documentation (the small files
/// the others lack on a lean machine).
pub fn c2_sources() -> Vec<PathBuf> {
    let mut v = vec![
        PathBuf::from("/usr/share/doc"),
        PathBuf::from("/usr/include"),
    ];
    v.push(cargo_home().join("registry/src"));
    let mut pythons: Vec<PathBuf> = fs::read_dir("/usr/lib")
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
                .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    pythons.sort();
    if pythons.is_empty() {
        v.push(PathBuf::from("/usr/lib/python3"));
    }
    v.extend(pythons);
    if let Some(sysroot) = std::process::Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
    {
        let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_string();
        v.push(Path::new(&sysroot).join("share/doc/rust"));
    }
    v
}

/// The tree C3's first version is copied from: the cargo registry's sources, then
/// /usr/include if those run short.
pub fn c3_sources() -> Vec<PathBuf> {
    vec![
        cargo_home().join("registry/src"),
        PathBuf::from("/usr/include"),
    ]
}

pub fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(&std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cargo")
        })
}
