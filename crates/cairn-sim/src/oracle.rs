//! The invariant, checked after every write: every snapshot in the store restores exactly the
//! files its backup read, and `check` finds nothing wrong.
//!
//! The oracle sees the store as it is (no listing lag, no steps) through a repository opened
//! once; its cache follows the store like any client's. A blob location it has read and
//! verified stays verified while its pack exists, since packs never change.

use crate::model;
use crate::procs::{Expected, PASSWORD};
use crate::world::{SimBackend, World};
use cairn_backend::FileType;
use cairn_format::{BlobId, PackId};
use cairn_repo::{OpenOptions, Repository};
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

pub struct Oracle {
    repo: Repository,
    world: Arc<World>,
    expected: Expected,
    verified: HashSet<(PackId, u32)>,
}

impl Oracle {
    pub fn open(world: &Arc<World>, cache: &Path, expected: Expected) -> Oracle {
        let backend = SimBackend {
            world: Arc::clone(world),
            proc: None,
        };
        let repo = Repository::open(
            Box::new(backend),
            PASSWORD,
            &OpenOptions {
                cache_dir: Some(cache.to_path_buf()),
                inline_writes: true,
                ..OpenOptions::default()
            },
        )
        .expect("the oracle opens the repository");
        Oracle {
            repo,
            world: Arc::clone(world),
            expected,
            verified: HashSet::new(),
        }
    }

    /// What garbage collection left: condemnations not carried out, packs nothing uses, and
    /// files in `locks/` other than verdicts of fenced sessions, and packs no index file names.
    /// Empty once it has finished.
    pub fn garbage(&mut self) -> Result<String, String> {
        let r = cairn_engine::prune(
            &self.repo,
            &cairn_engine::PruneOptions {
                max_unused: 0.05,
                grace: std::time::Duration::from_nanos(crate::GRACE),
                dry_run: true,
                forgotten: Default::default(),
            },
        )
        .map_err(|e| format!("prune --dry-run: {e}"))?;
        let mut left = Vec::new();
        if r.packs_unused + r.packs_deleted + r.packs_deferred > 0 {
            left.push(format!(
                "{} unused packs, {} condemned ones",
                r.packs_unused,
                r.packs_deleted + r.packs_deferred
            ));
        }
        let locks: Vec<String> = self
            .world
            .lock()
            .present(FileType::Lock)
            .into_iter()
            .filter(|(_, bytes)| {
                !matches!(
                    cairn_format::marker::Verdict::decode(bytes),
                    Ok(cairn_format::marker::Verdict::Fenced { .. })
                )
            })
            .map(|(name, _)| name.chars().take(8).collect::<String>())
            .collect();
        if !locks.is_empty() {
            left.push(format!("locks/ holds {locks:?}"));
        }
        // What prune cannot classify escapes its own count: `check` sees every stored pack.
        let check = cairn_engine::check(
            &self.repo,
            cairn_engine::ReadData::None,
            &Default::default(),
        )
        .map_err(|e| format!("check failed: {e}"))?;
        left.extend(check.warnings().map(|w| format!("check warns: {w}")));
        Ok(left.join("; "))
    }

    pub fn verify(&mut self) -> Result<usize, String> {
        let snapshots = self.repo.snapshots().map_err(|e| e.to_string())?;
        if let Some((id, why)) = snapshots.damaged.first() {
            return Err(format!("snapshot {} is damaged: {why}", id.short()));
        }
        let packs: HashSet<String> = self
            .world
            .lock()
            .present(FileType::Pack)
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        let expected = self.expected.lock().unwrap().clone();
        for (id, snapshot) in &snapshots.list {
            let files = expected.get(&snapshot.tree).ok_or_else(|| {
                format!(
                    "snapshot {} names tree {}, which no backup made",
                    id.short(),
                    snapshot.tree.short()
                )
            })?;
            let (repo, verified) = (&self.repo, &mut self.verified);
            let read = |blob: &BlobId| -> Result<(), String> {
                let loc = repo
                    .lookup(blob)
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("{blob} is lost: in no pack"))?;
                if !packs.contains(&loc.pack.to_hex()) {
                    return Err(format!("{blob} is lost: pack {} is gone", loc.pack.short()));
                }
                if verified.insert((loc.pack, loc.offset)) {
                    repo.load_blob(blob).map_err(|e| e.to_string())?;
                }
                Ok(())
            };
            model::compare(repo, snapshot.tree, files, read)
                .map_err(|e| format!("snapshot {} does not restore: {e}", id.short()))?;
        }
        self.verified
            .retain(|(pack, _)| packs.contains(&pack.to_hex()));
        let report = cairn_engine::check(
            &self.repo,
            cairn_engine::ReadData::None,
            &Default::default(),
        )
        .map_err(|e| format!("check failed: {e}"))?;
        if !report.ok() {
            let errors: Vec<String> = report.errors().map(ToString::to_string).collect();
            return Err(format!("check: {}", errors.join("; ")));
        }
        Ok(snapshots.list.len())
    }
}
