//! Getting data out without restoring: one file's content as a stream, or a directory as a tar
//! or zip archive. Every blob is verified on the way, as in a restore.

use crate::walk::{walk_tree, Visit};
use crate::Result;
use cairn_format::tree::{FileTime, Node, NodeKind};
use cairn_repo::{BlobStore, Error, ErrorKind};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Reads a file's content from the repository, one blob at a time.
pub struct ContentReader<'a> {
    repo: &'a dyn BlobStore,
    chunks: std::slice::Iter<'a, cairn_format::DataId>,
    current: Vec<u8>,
    pos: usize,
}

impl<'a> ContentReader<'a> {
    pub fn new(repo: &'a dyn BlobStore, node: &'a Node) -> ContentReader<'a> {
        ContentReader {
            repo,
            chunks: node.content.iter(),
            current: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for ContentReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            let Some(chunk) = self.chunks.next() else {
                return Ok(0);
            };
            self.current = self.repo.load_data(*chunk).map_err(io::Error::other)?;
            self.pos = 0;
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn io_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Io, format!("{what}: {e}"))
}

/// Writes a file's content to `out`.
pub fn dump_file(repo: &dyn BlobStore, node: &Node, out: &mut dyn Write) -> Result<()> {
    io::copy(&mut ContentReader::new(repo, node), out)
        .map_err(|e| io_err("cannot write the file", e))?;
    Ok(())
}

/// The entries of an archive: `dir` (at `path` in the snapshot) and everything below it, with
/// archive names relative to the snapshot root.
fn entries(repo: &dyn BlobStore, dir: &Node, path: &Path) -> Result<Vec<(PathBuf, Node)>> {
    let rel = |p: &Path| p.strip_prefix("/").unwrap_or(p).to_path_buf();
    let mut out = Vec::new();
    if path != Path::new("/") {
        out.push((rel(path), dir.clone()));
    }
    if let Some(sub) = dir.subtree {
        walk_tree(repo, sub, path, &mut |p, n| {
            out.push((rel(p), n.clone()));
            Ok(Visit::Descend)
        })?;
    }
    Ok(out)
}

/// Writes `dir` and everything below it as a tar stream (GNU long names where needed): modes,
/// owners, mtimes, symlinks, hard links, fifos and devices included.
pub fn dump_tar(repo: &dyn BlobStore, dir: &Node, path: &Path, out: &mut dyn Write) -> Result<()> {
    let mut tar = tar::Builder::new(out);
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let w = |e: io::Error| io_err("cannot write the archive", e);
    for (name, node) in entries(repo, dir, path)? {
        let mut h = tar::Header::new_gnu();
        h.set_mode(node.mode);
        h.set_uid(u64::from(node.uid));
        h.set_gid(u64::from(node.gid));
        let _ = h.set_username(&String::from_utf8_lossy(&node.user));
        let _ = h.set_groupname(&String::from_utf8_lossy(&node.group));
        h.set_mtime(node.mtime.secs.max(0) as u64);
        h.set_size(0);
        let target = std::ffi::OsStr::from_bytes(&node.target);
        match node.kind {
            NodeKind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                tar.append_data(&mut h, &name, io::empty()).map_err(w)?;
            }
            NodeKind::Symlink => {
                h.set_entry_type(tar::EntryType::Symlink);
                tar.append_link(&mut h, &name, target).map_err(w)?;
            }
            NodeKind::File => {
                let key = (node.dev, node.inode);
                if let Some(first) = links.get(&key).filter(|_| node.links > 1) {
                    h.set_entry_type(tar::EntryType::Link);
                    tar.append_link(&mut h, &name, first).map_err(w)?;
                    continue;
                }
                if node.links > 1 {
                    links.insert(key, name.clone());
                }
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(node.size);
                let mut reader = ContentReader::new(repo, &node).take(node.size);
                tar.append_data(&mut h, &name, &mut reader).map_err(w)?;
            }
            NodeKind::Fifo | NodeKind::CharDevice | NodeKind::BlockDevice => {
                h.set_entry_type(match node.kind {
                    NodeKind::Fifo => tar::EntryType::Fifo,
                    NodeKind::CharDevice => tar::EntryType::Char,
                    _ => tar::EntryType::Block,
                });
                // Linux's encoding of device numbers (see makedev(3)).
                let major = ((node.rdev >> 8) & 0xfff) | ((node.rdev >> 32) & !0xfff);
                let minor = (node.rdev & 0xff) | ((node.rdev >> 12) & !0xff);
                // A device number from the tree is the store's word: one whose parts do not
                // fit is refused rather than cut.
                let part = |v: u64| {
                    u32::try_from(v).map_err(|_| {
                        Error::corrupt(format!(
                            "{}: device number {:#x} does not fit a tar header",
                            name.display(),
                            node.rdev
                        ))
                    })
                };
                h.set_device_major(part(major)?).map_err(w)?;
                h.set_device_minor(part(minor)?).map_err(w)?;
                tar.append_data(&mut h, &name, io::empty()).map_err(w)?;
            }
            NodeKind::Socket => {}
        }
    }
    tar.finish().map_err(w)
}

/// Writes `dir` and everything below it as a zip stream. Zip has no hard links, fifos or
/// devices: linked files are stored once per name, special files are left out, and mtimes are
/// rounded to zip's two seconds, in local time.
pub fn dump_zip(repo: &dyn BlobStore, dir: &Node, path: &Path, out: &mut dyn Write) -> Result<()> {
    use zip::write::SimpleFileOptions;
    let mut zip = zip::ZipWriter::new_stream(out);
    let z = |e: zip::result::ZipError| io_err("cannot write the archive", e);
    for (name, node) in entries(repo, dir, path)? {
        let name = String::from_utf8_lossy(name.as_os_str().as_bytes()).into_owned();
        let mut options = SimpleFileOptions::default()
            .unix_permissions(node.mode)
            .large_file(node.size >= 1 << 32);
        if let Some(t) = zip_time(node.mtime) {
            options = options.last_modified_time(t);
        }
        match node.kind {
            NodeKind::Dir => zip.add_directory(name, options).map_err(z)?,
            NodeKind::Symlink => zip
                .add_symlink(name, String::from_utf8_lossy(&node.target), options)
                .map_err(z)?,
            NodeKind::File => {
                let options = options.compression_method(zip::CompressionMethod::Deflated);
                zip.start_file(name, options).map_err(z)?;
                io::copy(&mut ContentReader::new(repo, &node), &mut zip)
                    .map_err(|e| io_err("cannot write the archive", e))?;
            }
            _ => {}
        }
    }
    zip.finish().map_err(z)?;
    Ok(())
}

fn zip_time(t: FileTime) -> Option<zip::DateTime> {
    let ts = jiff::Timestamp::from_second(t.secs).ok()?;
    let dt = ts.to_zoned(jiff::tz::TimeZone::system()).datetime();
    zip::DateTime::from_date_and_time(
        u16::try_from(dt.year()).ok()?,
        dt.month() as u8,
        dt.day() as u8,
        dt.hour() as u8,
        dt.minute() as u8,
        dt.second() as u8,
    )
    .ok()
}
