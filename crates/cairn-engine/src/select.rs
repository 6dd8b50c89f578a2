//! Choosing snapshots: by id prefix or `latest`, and the parent of a new backup.

use crate::Result;
use cairn_format::snapshot::{Kind, Snapshot};
use cairn_format::SnapshotId;
use cairn_repo::{Error, ErrorKind, Repository};

/// Resolves `latest` or a unique id prefix (at least 4 hex digits are not required; any unique
/// prefix will do) among `snapshots`, which are sorted oldest first.
pub fn find_snapshot<'a>(
    snapshots: &'a [(SnapshotId, Snapshot)],
    spec: &str,
) -> Result<&'a (SnapshotId, Snapshot)> {
    if spec == "latest" {
        return snapshots
            .last()
            .ok_or_else(|| Error::new(ErrorKind::NotFound, "the repository has no snapshots"));
    }
    let spec_lower = spec.to_ascii_lowercase();
    if spec_lower.is_empty() || !spec_lower.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("invalid snapshot {spec:?}: give an id, an id prefix or \"latest\""),
        ));
    }
    let mut found = snapshots
        .iter()
        .filter(|(id, _)| id.to_hex().starts_with(&spec_lower));
    match (found.next(), found.next()) {
        (Some(s), None) => Ok(s),
        (None, _) => Err(Error::new(
            ErrorKind::NotFound,
            format!("no snapshot with id {spec}"),
        )),
        (Some(_), Some(_)) => Err(Error::new(
            ErrorKind::InvalidInput,
            format!("snapshot id prefix {spec} is ambiguous"),
        )),
    }
}

/// The parent of a new backup of `paths` on `host`: the latest snapshot of the same host and
/// paths, or for a differential backup the latest *full* one. A full backup has none.
pub fn find_parent(
    repo: &Repository,
    host: &[u8],
    paths: &[Vec<u8>],
    kind: Kind,
) -> Result<Option<(SnapshotId, Snapshot)>> {
    if kind == Kind::Full {
        return Ok(None);
    }
    let mut snaps = repo.snapshots()?.list;
    snaps.retain(|(_, s)| {
        s.host == host && s.paths == paths && (kind != Kind::Differential || s.kind == Kind::Full)
    });
    Ok(snaps.pop())
}

/// Which snapshots a command considers: `--host`, `--path` and `--tag`. Empty lists match all.
#[derive(Clone, Debug, Default)]
pub struct SnapshotFilter {
    /// Any of these hosts.
    pub hosts: Vec<Vec<u8>>,
    /// Each of these paths is a source of the snapshot or lies below one.
    pub paths: Vec<std::path::PathBuf>,
    /// All of these tags.
    pub tags: Vec<Vec<u8>>,
}

impl SnapshotFilter {
    pub fn matches(&self, s: &Snapshot) -> bool {
        use std::os::unix::ffi::OsStrExt;
        let host = self.hosts.is_empty() || self.hosts.contains(&s.host);
        let paths = self.paths.iter().all(|p| {
            s.paths
                .iter()
                .any(|sp| p.starts_with(std::path::Path::new(std::ffi::OsStr::from_bytes(sp))))
        });
        let tags = self.tags.iter().all(|t| s.tags.contains(t));
        host && paths && tags
    }
}

/// The newest of `snapshots` (sorted oldest first) taken at or before `time_ns`.
pub fn newest_at(
    snapshots: &[(SnapshotId, Snapshot)],
    time_ns: i64,
) -> Option<&(SnapshotId, Snapshot)> {
    snapshots.iter().rev().find(|(_, s)| s.time <= time_ns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_format::snapshot::Summary;
    use cairn_format::{Id, TreeId};

    fn snap(n: u8, time: i64, host: &str, path: &str, tags: &[&str]) -> (SnapshotId, Snapshot) {
        let s = Snapshot {
            time,
            host: host.into(),
            user: Vec::new(),
            paths: vec![path.into()],
            tags: tags.iter().map(|t| t.as_bytes().to_vec()).collect(),
            kind: Kind::Incremental,
            parent: None,
            tree: TreeId::default(),
            summary: Summary::default(),
            program: Vec::new(),
        };
        (SnapshotId(Id([n; 32])), s)
    }

    #[test]
    fn selection_by_time_prefix_and_filter() {
        let all = vec![
            snap(0x11, 100, "a", "/etc", &["x"]),
            snap(0x22, 200, "b", "/home", &[]),
            snap(0x23, 300, "a", "/etc", &[]),
        ];
        assert_eq!(newest_at(&all, 99), None);
        assert_eq!(newest_at(&all, 100).unwrap().1.time, 100);
        assert_eq!(newest_at(&all, 299).unwrap().1.time, 200);
        assert_eq!(newest_at(&all, i64::MAX).unwrap().1.time, 300);
        assert_eq!(find_snapshot(&all, "latest").unwrap().1.time, 300);
        assert_eq!(find_snapshot(&all, "11").unwrap().1.time, 100);
        assert!(find_snapshot(&all, "2")
            .unwrap_err()
            .message
            .contains("ambiguous"));
        assert!(find_snapshot(&all, "33")
            .unwrap_err()
            .message
            .contains("no snapshot"));
        assert!(find_snapshot(&all, "xyz").is_err());
        let f = SnapshotFilter {
            hosts: vec![b"a".to_vec()],
            paths: vec!["/etc/ssh".into()],
            tags: vec![],
        };
        assert_eq!(all.iter().filter(|(_, s)| f.matches(s)).count(), 2);
        let f = SnapshotFilter {
            tags: vec![b"x".to_vec()],
            ..SnapshotFilter::default()
        };
        assert_eq!(all.iter().filter(|(_, s)| f.matches(s)).count(), 1);
        let f = SnapshotFilter {
            paths: vec!["/e".into()],
            ..SnapshotFilter::default()
        };
        assert_eq!(all.iter().filter(|(_, s)| f.matches(s)).count(), 0);
    }
}
