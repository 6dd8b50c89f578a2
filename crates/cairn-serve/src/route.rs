//! Request paths to repositories and objects, as restic's rest-server splits them: the path's
//! folders up to the first segment that names an object type are the repository, what follows
//! is the object (`/user/repo/data/<id>` is the pack `<id>` of the repository `user/repo`).
//!
//! Invariant: a `Route` names nothing outside the served directory. Every folder is a plain name
//! of letters, digits and `-_.@+~`, not starting with a dot, checked after percent-decoding (so
//! `..`, `%2e%2e`, `%2F`, NUL and backslashes never make one), and every object name is 64
//! lowercase hex digits (repo-format.md, "Layout": every name cairn and restic write in `keys/`,
//! `data/`, `index/`, `snapshots/` and `locks/`, verdicts included, is one).

use cairn_backend::FileType;
use std::path::{Path, PathBuf};

/// Folders a repository path may have below the served directory.
pub(crate) const MAX_DEPTH: usize = 16;
/// The longest folder name, as most file systems allow.
const MAX_NAME: usize = 255;

/// What a request path names within a repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// The repository itself: `POST /repo/?create=true` makes it.
    Repo,
    /// `/repo/config`.
    Config,
    /// `/repo/{type}/`: a listing.
    List(FileType),
    /// `/repo/{type}/{name}`.
    Object(FileType, String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Route {
    /// The repository's folders below the served directory (none: the directory itself).
    pub(crate) folders: Vec<String>,
    pub(crate) target: Target,
}

impl Route {
    /// The repository's directory. Safe to join: every folder is a plain name.
    pub(crate) fn dir(&self, root: &Path) -> PathBuf {
        let mut dir = root.to_path_buf();
        dir.extend(&self.folders);
        dir
    }
}

/// Why a path names nothing: `BadPath` and `BadName` answer 400, `NotFound` 404.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RouteError {
    BadPath(String),
    BadName(String),
    NotFound,
}

/// The object types of the protocol, by their segment in the URL.
fn object_type(segment: &str) -> Option<FileType> {
    Some(match segment {
        "config" => FileType::Config,
        "data" => FileType::Pack,
        "keys" => FileType::Key,
        "locks" => FileType::Lock,
        "snapshots" => FileType::Snapshot,
        "index" => FileType::Index,
        _ => return None,
    })
}

/// Whether `name` may name an object: 64 lowercase hex digits.
pub(crate) fn valid_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Splits a request's path (still percent-encoded, as on the wire) into a route.
pub(crate) fn parse(path: &str) -> Result<Route, RouteError> {
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| RouteError::BadPath("the path must start with /".into()))?;
    let trailing_slash = rest.ends_with('/');
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let mut segments = Vec::new();
    if !rest.is_empty() {
        for raw in rest.split('/') {
            segments.push(decode(raw)?);
        }
    }
    let split = segments
        .iter()
        .position(|s| object_type(s).is_some())
        .unwrap_or(segments.len());
    let (folders, object) = segments.split_at(split);
    if folders.len() > MAX_DEPTH {
        return Err(RouteError::BadPath(format!(
            "a repository path has at most {MAX_DEPTH} folders"
        )));
    }
    for folder in folders {
        check_folder(folder)?;
    }
    let target = match object {
        [] => Target::Repo,
        [t] if t == "config" && !trailing_slash => Target::Config,
        [t] if t != "config" => Target::List(object_type(t).ok_or(RouteError::NotFound)?),
        [t, name] if t != "config" && !trailing_slash => {
            let t = object_type(t).ok_or(RouteError::NotFound)?;
            if !valid_name(name) {
                return Err(RouteError::BadName(format!(
                    "{:?} is no object name: names are 64 lowercase hex digits",
                    shorten(name)
                )));
            }
            Target::Object(t, name.clone())
        }
        _ => return Err(RouteError::NotFound),
    };
    Ok(Route {
        folders: folders.to_vec(),
        target,
    })
}

/// A folder of a repository path: a plain name that cannot step out of its parent or hide
/// among the local backend's temporaries (`.tmp-…`).
fn check_folder(folder: &str) -> Result<(), RouteError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.@+~".contains(c);
    if folder.is_empty() {
        return Err(RouteError::BadPath(
            "the path has an empty segment (//)".into(),
        ));
    }
    if folder.starts_with('.') || !folder.chars().all(allowed) || folder.len() > MAX_NAME {
        return Err(RouteError::BadPath(format!(
            "{:?} is no folder name: use letters, digits and -_.@+~, not starting with a dot",
            shorten(folder)
        )));
    }
    Ok(())
}

/// Percent-decodes one segment. A segment that decodes to anything but UTF-8 is refused here,
/// and one holding `/` or NUL by the checks of what it decoded to.
fn decode(raw: &str) -> Result<String, RouteError> {
    let bad = || RouteError::BadPath(format!("{:?} is not a valid path segment", shorten(raw)));
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or_else(bad)?;
            let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let decoded = String::from_utf8(out).map_err(|_| bad())?;
    if decoded.contains(['/', '\0']) {
        return Err(bad());
    }
    Ok(decoded)
}

/// A client's string cut to a length fit for a message or a log line.
pub(crate) fn shorten(s: &str) -> String {
    const MAX: usize = 80;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let mut cut: String = s.chars().take(MAX).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn route(folders: &[&str], target: Target) -> Route {
        Route {
            folders: folders.iter().map(|s| s.to_string()).collect(),
            target,
        }
    }

    #[test]
    fn paths_split_at_the_first_object_type() {
        assert_eq!(parse("/"), Ok(route(&[], Target::Repo)));
        assert_eq!(parse("/repo/"), Ok(route(&["repo"], Target::Repo)));
        assert_eq!(parse("/repo"), Ok(route(&["repo"], Target::Repo)));
        assert_eq!(parse("/u/r/config"), Ok(route(&["u", "r"], Target::Config)));
        assert_eq!(parse("/config"), Ok(route(&[], Target::Config)));
        assert_eq!(
            parse("/u/r/data/"),
            Ok(route(&["u", "r"], Target::List(FileType::Pack)))
        );
        assert_eq!(
            parse("/r/locks"),
            Ok(route(&["r"], Target::List(FileType::Lock)))
        );
        assert_eq!(
            parse(&format!("/r/keys/{ID}")),
            Ok(route(&["r"], Target::Object(FileType::Key, ID.into())))
        );
        // A percent-encoded letter is the letter.
        assert_eq!(
            parse(&format!("/r/%64ata/{ID}")),
            Ok(route(&["r"], Target::Object(FileType::Pack, ID.into())))
        );
    }

    #[test]
    fn what_is_not_a_route_is_not_found() {
        for p in [
            "/r/config/",
            "/r/config/x",
            &format!("/r/data/ab/{ID}"),
            &format!("/r/data/{ID}/"),
            &format!("/r/snapshots/{ID}/x"),
        ] {
            assert_eq!(parse(p), Err(RouteError::NotFound), "{p}");
        }
    }

    #[test]
    fn path_tricks_are_bad_paths() {
        for p in [
            "relative",
            "/../etc",
            "/..",
            "/./r",
            "/r/../../etc/config",
            "/%2e%2e/config",
            "/%2E%2E/r/config",
            "/a%2Fb/config",
            "/a%2fb/config",
            "/a%00b/config",
            "/a\\..\\b/config",
            "/a//b/config",
            "//config",
            "/.tmp-0011223344556677/config",
            "/%zz/config",
            "/%2/config",
            "/%ff%fe/config",
            "/a b/config",
            "/a%0Ab/config",
        ] {
            assert!(
                matches!(parse(p), Err(RouteError::BadPath(_))),
                "{p}: {:?}",
                parse(p)
            );
        }
        let deep = "/a".repeat(MAX_DEPTH + 1) + "/config";
        assert!(matches!(parse(&deep), Err(RouteError::BadPath(_))));
        let long = format!("/{}/config", "a".repeat(MAX_NAME + 1));
        assert!(matches!(parse(&long), Err(RouteError::BadPath(_))));
    }

    #[test]
    fn object_names_are_64_lowercase_hex_digits() {
        let upper = ID.to_uppercase();
        let short = &ID[..63];
        let long = format!("{ID}0");
        let dotted = format!("..{}", &ID[2..]);
        for name in [
            upper.as_str(),
            short,
            long.as_str(),
            dotted.as_str(),
            "config",
        ] {
            assert!(
                matches!(
                    parse(&format!("/r/index/{name}")),
                    Err(RouteError::BadName(_))
                ),
                "{name}"
            );
        }
        assert!(matches!(
            parse("/r/data/%2e%2e"),
            Err(RouteError::BadName(_))
        ));
    }

    #[test]
    fn a_route_stays_below_the_root() {
        let r = parse(&format!("/alice/work/data/{ID}")).unwrap();
        assert_eq!(r.dir(Path::new("/srv")), Path::new("/srv/alice/work"));
        assert_eq!(
            parse("/config").unwrap().dir(Path::new("/srv")),
            Path::new("/srv")
        );
    }
}
