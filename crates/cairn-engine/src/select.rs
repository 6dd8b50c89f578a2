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
    let mut snaps = repo.snapshots()?;
    snaps.retain(|(_, s)| {
        s.host == host && s.paths == paths && (kind != Kind::Differential || s.kind == Kind::Full)
    });
    Ok(snaps.pop())
}
