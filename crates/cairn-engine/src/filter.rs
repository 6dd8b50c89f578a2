//! Include and exclude patterns, shared by backup and restore.
//!
//! A pattern without `/` matches a file name anywhere (`*.tmp`, `.cache`); a pattern with `/`
//! matches the whole path (`/home/*/.cache`, `**/target`). `*` does not cross `/`; `**` does.
//! A match on a directory covers everything below it.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

#[derive(Clone, Debug)]
pub struct Filter {
    names: GlobSet,
    paths: GlobSet,
    empty: bool,
}

impl Filter {
    pub fn new(patterns: &[String]) -> Result<Filter, String> {
        let mut names = GlobSetBuilder::new();
        let mut paths = GlobSetBuilder::new();
        for p in patterns {
            let glob = GlobBuilder::new(p.trim_end_matches('/'))
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| format!("invalid pattern {p:?}: {e}"))?;
            if p.trim_end_matches('/').contains('/') {
                paths.add(glob);
            } else {
                names.add(glob);
            }
        }
        Ok(Filter {
            names: names.build().map_err(|e| e.to_string())?,
            paths: paths.build().map_err(|e| e.to_string())?,
            empty: patterns.is_empty(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.empty
    }

    /// Whether `path` itself (not an ancestor) matches. `path` is absolute for backup and
    /// relative to the snapshot root, with a leading `/`, for restore.
    pub fn matches(&self, path: &Path) -> bool {
        if self.empty {
            return false;
        }
        let name = path.file_name().map(|n| n.as_bytes()).unwrap_or(b"");
        self.names
            .is_match(Path::new(std::ffi::OsStr::from_bytes(name)))
            || self.paths.is_match(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths() {
        let f =
            Filter::new(&["*.tmp".into(), "/home/*/.cache".into(), "**/target/".into()]).unwrap();
        assert!(f.matches(Path::new("/a/b/x.tmp")));
        assert!(!f.matches(Path::new("/a/b/x.tmpl")));
        assert!(f.matches(Path::new("/home/ann/.cache")));
        assert!(!f.matches(Path::new("/home/ann/sub/.cache")));
        assert!(f.matches(Path::new("/src/proj/target")));
        assert!(Filter::new(&["a[".into()]).is_err());
    }
}
