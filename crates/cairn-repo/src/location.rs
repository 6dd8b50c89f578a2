//! Where a repository lives, as a user names it (`-r`), and the backend that reaches it. The
//! one place a location is parsed, so a scheme this build does not support is refused here,
//! never taken for a directory name.
//!
//! Invariant: a location with a scheme (`word:` before any `/`) is only ever a backend of that
//! scheme; a plain path or `local:PATH` is the local directory.

use crate::{Error, ErrorKind, Result};
use cairn_backend::remote::{Remote, RemoteOptions, SCHEMES};
use cairn_backend::{Backend, LocalBackend};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// A parsed repository location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RepoLocation {
    Local(PathBuf),
    /// On another machine; it shows no password.
    Remote(Remote),
}

/// How to reach a remote repository.
#[derive(Clone, Copy, Debug)]
pub struct Reach {
    /// Requests in flight at once, at most.
    pub connections: usize,
    /// Tries of a request that fails in a way that may pass, the first included.
    pub tries: u32,
}

impl Default for Reach {
    fn default() -> Reach {
        let options = RemoteOptions::default();
        Reach {
            connections: options.connections,
            tries: options.retry.attempts,
        }
    }
}

impl Reach {
    fn options(self) -> RemoteOptions {
        let mut options = RemoteOptions {
            connections: self.connections,
            ..RemoteOptions::default()
        };
        options.retry.attempts = self.tries;
        options
    }
}

impl RepoLocation {
    /// Parses what the user gave; an unsupported scheme is `InvalidInput`, naming the ones that
    /// are.
    pub fn parse(given: &OsStr) -> Result<RepoLocation> {
        let bytes = given.as_bytes();
        if bytes.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "repository location is empty",
            ));
        }
        if let Some(rest) = bytes.strip_prefix(b"local:") {
            return Ok(RepoLocation::Local(PathBuf::from(OsStr::from_bytes(rest))));
        }
        if let Some(scheme) = scheme(bytes) {
            let text = given.to_str().unwrap_or_default();
            if let Some(remote) = Remote::parse(text) {
                return remote
                    .map(RepoLocation::Remote)
                    .map_err(|e| Error::new(ErrorKind::InvalidInput, e.message));
            }
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "repository location {}: scheme `{scheme}:` is not supported; use a local \
                     path, local:PATH, {SCHEMES}",
                    given.to_string_lossy()
                ),
            ));
        }
        Ok(RepoLocation::Local(PathBuf::from(given)))
    }

    /// The backend of an existing repository. In test builds it may be wrapped to crash at a
    /// chosen write (`CAIRN_TEST_CRASH_AFTER`); a location without a `config` is
    /// `NoRepository`, before any password is asked for.
    pub fn open(&self, reach: Reach) -> Result<Box<dyn Backend>> {
        let backend: Box<dyn Backend> = match self {
            RepoLocation::Local(path) => {
                if !path.join("config").exists() {
                    let why = if path.exists() {
                        "it has no config"
                    } else {
                        "it does not exist"
                    };
                    return Err(no_repository(self, why));
                }
                Box::new(LocalBackend::open(path))
            }
            // No look for `config` here: `probe` reads it next, and says the same when it is
            // missing, with one request less on every command.
            RepoLocation::Remote(remote) => remote.connect(&reach.options())?,
        };
        cairn_backend::test_hooks::wrap(backend).map_err(|e| Error::new(ErrorKind::InvalidInput, e))
    }

    /// Whether a repository (a `config`) is there already.
    pub fn has_repository(&self, reach: Reach) -> Result<bool> {
        match self {
            RepoLocation::Local(path) => Ok(path.join("config").exists()),
            RepoLocation::Remote(remote) => {
                let backend = remote.connect(&reach.options())?;
                Ok(!backend.list(cairn_backend::FileType::Config)?.is_empty())
            }
        }
    }

    /// Makes the layout of a new repository and returns its backend; a repository there
    /// already is `AlreadyExists`.
    pub fn create(&self, reach: Reach) -> Result<Box<dyn Backend>> {
        let exists = || {
            Error::new(
                ErrorKind::AlreadyExists,
                format!("a repository already exists at {self}"),
            )
        };
        match self {
            RepoLocation::Local(path) if path.join("config").exists() => Err(exists()),
            RepoLocation::Local(path) => Ok(Box::new(LocalBackend::create_layout(path)?)),
            RepoLocation::Remote(remote) => match remote.create(&reach.options()) {
                Err(e) if e.kind == cairn_backend::BackendErrorKind::AlreadyExists => Err(exists()),
                other => Ok(other?),
            },
        }
    }
}

fn no_repository(location: &RepoLocation, why: &str) -> Error {
    Error::new(
        ErrorKind::NoRepository,
        format!("no repository at {location}: {why}"),
    )
}

impl std::fmt::Display for RepoLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RepoLocation::Local(p) => write!(f, "{}", p.display()),
            RepoLocation::Remote(r) => write!(f, "{r}"),
        }
    }
}

/// The scheme of `s` (`s3` in `s3:http://…`): letters, digits, `+`, `-`, `.` from a letter up
/// to a colon that comes before any `/`.
fn scheme(s: &[u8]) -> Option<&str> {
    let colon = s.iter().position(|&b| b == b':')?;
    let head = &s[..colon];
    let ok = head.first().is_some_and(u8::is_ascii_alphabetic)
        && head
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(b));
    ok.then(|| std::str::from_utf8(head).ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: `s3:http://host/bucket` created a local folder `./s3:http:/host/bucket`.
    #[test]
    fn a_scheme_is_never_taken_for_a_directory() {
        for given in [
            "s3:http://127.0.0.1:9000/bucket",
            "sftp:user@host:/srv/repo",
            "rest:http://host:8000/",
            "ftp://user:pw@host/path",
            "webdav:http://host/dav",
            "rclone:remote:path",
        ] {
            let parsed = RepoLocation::parse(OsStr::new(given)).unwrap();
            assert!(matches!(parsed, RepoLocation::Remote(_)), "{given}");
        }
        for given in ["gopher://host/x", "s4:http://host/b", "file:///srv"] {
            let e = RepoLocation::parse(OsStr::new(given)).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidInput, "{given}");
            assert!(e.message.contains("is not supported"), "{}", e.message);
            assert!(e.message.contains("s3:, sftp:"), "{}", e.message);
        }
    }

    #[test]
    fn paths_and_local_locations_are_directories() {
        for (given, path) in [
            ("/srv/repo", "/srv/repo"),
            ("relative/dir", "relative/dir"),
            ("./a:b", "./a:b"),
            ("local:/srv/repo", "/srv/repo"),
            ("local:rel", "rel"),
        ] {
            assert_eq!(
                RepoLocation::parse(OsStr::new(given)).unwrap(),
                RepoLocation::Local(PathBuf::from(path)),
                "{given}"
            );
        }
        assert!(RepoLocation::parse(OsStr::new("")).is_err());
    }
}
