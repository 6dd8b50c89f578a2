//! The processes the simulation runs: cairn's own engines (prune, forget, `repair index`,
//! restore, check) and a backup that drives the repository as the archiver does, over a host's
//! simulated files. Each opens the repository through the simulated store and host.

use crate::model::{self, Files};
use crate::world::{SimBackend, SimHost, World};
use cairn_engine::{Filter, KeepCount, Policy, PruneOptions, RetentionInput};
use cairn_format::snapshot::{Kind, Snapshot, Summary};
use cairn_format::{SnapshotId, TreeId};
use cairn_repo::{OpenOptions, Repository};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub const PASSWORD: &[u8] = b"simulated";

/// Paths every simulated backup names.
pub const PATHS: &[u8] = b"/sim";

#[derive(Clone, Debug)]
pub enum Job {
    Backup(Files),
    /// Forget all but the newest `keep_last` snapshots of each host first, if given.
    Prune {
        keep_last: Option<u32>,
    },
    Forget {
        keep_last: u32,
    },
    RepairIndex,
    /// Restore the `pick`-th snapshot (modulo how many there are).
    Restore {
        pick: usize,
    },
    Check,
}

/// What the trees of committed snapshots must hold, by root tree.
pub type Expected = Arc<Mutex<HashMap<TreeId, Files>>>;

pub struct Cx {
    pub world: Arc<World>,
    pub proc: usize,
    pub host: usize,
    pub host_name: String,
    pub cache_dir: PathBuf,
    pub scratch: PathBuf,
    pub expected: Expected,
}

impl Cx {
    fn open(&self, writer: bool) -> cairn_repo::Result<Repository> {
        let backend = SimBackend {
            world: Arc::clone(&self.world),
            proc: Some(self.proc),
        };
        let host = SimHost {
            world: Arc::clone(&self.world),
            host: self.host,
            proc: self.proc,
        };
        Repository::open(
            Box::new(backend),
            PASSWORD,
            &OpenOptions {
                cache_dir: Some(self.cache_dir.clone()),
                writer,
                host: Arc::new(host),
                inline_writes: true,
                ..OpenOptions::default()
            },
        )
    }
}

/// What a process did, and counts of what it exercised (for the run's report).
pub type Done = (String, Vec<(&'static str, u64)>);

pub fn run(job: &Job, cx: &Cx) -> cairn_repo::Result<Done> {
    match job {
        Job::Backup(files) => Ok((backup(cx, files)?, vec![("snapshots committed", 1)])),
        Job::Prune { keep_last } => {
            let repo = cx.open(true)?;
            let forgotten = match keep_last {
                Some(n) => forget(&repo, *n)?,
                None => HashSet::new(),
            };
            let r = cairn_engine::prune(
                &repo,
                &PruneOptions {
                    max_unused: 0.05,
                    grace: std::time::Duration::from_nanos(crate::GRACE),
                    dry_run: false,
                    forgotten,
                },
            )?;
            let counts = vec![
                ("packs condemned", r.packs_unused + r.packs_repacked),
                ("packs deleted", r.packs_deleted),
                ("packs deferred", r.packs_deferred),
                ("blobs revived", r.blobs_revived),
                ("sessions fenced", r.sessions_fenced),
                ("damaged copies replaced", r.copies_damaged),
            ];
            let done = format!(
                "{} unused, {} repacked, {} revived, {} deleted, {} deferred ({}), {} fenced",
                r.packs_unused,
                r.packs_repacked,
                r.blobs_revived,
                r.packs_deleted,
                r.packs_deferred,
                r.deferred_because.unwrap_or_default(),
                r.sessions_fenced,
            );
            Ok((done, counts))
        }
        Job::Forget { keep_last } => {
            let repo = cx.open(false)?;
            let gone = forget(&repo, *keep_last)?;
            Ok((
                format!("forgot {}", gone.len()),
                vec![("snapshots forgotten", gone.len() as u64)],
            ))
        }
        Job::RepairIndex => {
            let repo = cx.open(true)?;
            let r = cairn_engine::repair_index(&repo, false)?;
            Ok((
                format!("indexed {} of {} packs", r.packs_indexed, r.packs),
                Vec::new(),
            ))
        }
        Job::Restore { pick } => Ok((restore(cx, *pick)?, vec![("restores", 1)])),
        Job::Check => {
            let repo = cx.open(false)?;
            let r = cairn_engine::check(&repo, cairn_engine::ReadData::None, &Default::default())?;
            Ok((format!("{} errors", r.errors().count()), Vec::new()))
        }
    }
}

/// A backup of the host's files, as an incremental backup through the archiver would store them.
fn backup(cx: &Cx, files: &Files) -> cairn_repo::Result<String> {
    let repo = cx.open(true)?;
    let host = cx.host_name.as_bytes();
    let paths = vec![PATHS.to_vec()];
    let time = cairn_repo::Host::wall_clock_ns(repo.host());
    let parent = cairn_engine::find_parent(&repo, host, &paths, Kind::Incremental)?;
    let tree = model::store(&repo, files, parent.as_ref().map(|(_, s)| s.tree))?;
    cx.expected.lock().unwrap().insert(tree, files.clone());
    let snapshot = Snapshot {
        time,
        host: host.to_vec(),
        user: b"sim".to_vec(),
        paths,
        tags: Vec::new(),
        kind: Kind::Incremental,
        parent: parent.map(|(id, _)| id),
        tree,
        summary: Summary::default(),
        program: b"cairn-sim".to_vec(),
    };
    let id = repo.save_snapshot(&snapshot)?;
    Ok(format!("snapshot {} of {} files", id.short(), files.len()))
}

/// Removes all but the newest `keep` snapshots of each host, by the retention policy's own
/// rules; returns the ids removed.
fn forget(repo: &Repository, keep: u32) -> cairn_repo::Result<HashSet<SnapshotId>> {
    let mut groups: BTreeMap<Vec<u8>, Vec<RetentionInput>> = BTreeMap::new();
    for (id, s) in repo.snapshots()?.list {
        groups
            .entry(s.host.clone())
            .or_default()
            .push(RetentionInput::from_snapshot(id, &s));
    }
    let policy = Policy {
        keep_last: KeepCount::AtMost(keep),
        ..Policy::default()
    };
    let mut gone = Vec::new();
    for group in groups.values() {
        let decisions = cairn_engine::apply_policy(group, &policy, &jiff::tz::TimeZone::UTC);
        gone.extend(decisions.iter().filter(|d| !d.keep).map(|d| d.id));
    }
    repo.forget_snapshots(&gone)?;
    Ok(gone.into_iter().collect())
}

/// Restores a snapshot with cairn's restorer into a scratch directory. Whatever it reports as
/// restored must be exactly what was backed up; it may fail when a prune deletes a pack under
/// it, but never write wrong bytes.
fn restore(cx: &Cx, pick: usize) -> cairn_repo::Result<String> {
    let repo = cx.open(false)?;
    let snapshots = repo.snapshots()?.list;
    if snapshots.is_empty() {
        return Ok("no snapshot".into());
    }
    let (id, snapshot) = &snapshots[pick % snapshots.len()];
    let target = cx.scratch.join(format!("restore-{}", cx.proc));
    let outcome = cairn_engine::restore(
        &repo,
        snapshot.tree,
        &cairn_engine::RestoreOptions {
            target: target.clone(),
            include: Filter::new(&[]).unwrap(),
            exclude: Filter::new(&[]).unwrap(),
            dry_run: false,
            owners: false,
            verify: false,
        },
        &Default::default(),
    )?;
    let files = cx
        .expected
        .lock()
        .unwrap()
        .get(&snapshot.tree)
        .cloned()
        .unwrap_or_default();
    let mut wrong = Vec::new();
    for (path, n) in &files {
        match std::fs::read(target.join(path)) {
            Ok(bytes) if bytes != model::content(*n) => wrong.push(path.clone()),
            _ => {}
        }
    }
    let _ = std::fs::remove_dir_all(&target);
    if !wrong.is_empty() {
        return Err(cairn_repo::Error::corrupt(format!(
            "WRONG BYTES: restore of snapshot {} wrote {wrong:?} with the wrong content",
            id.short()
        )));
    }
    Ok(format!(
        "restored {} ({} files, {} errors)",
        id.short(),
        outcome.files,
        outcome.errors.len()
    ))
}
