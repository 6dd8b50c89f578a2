//! Snapshots crafted by a hostile store (or a bug): subtrees reached along many paths, and
//! chains of directories deeper than any restore could recreate. Every walk must finish in time
//! proportional to the distinct trees where its result allows that, and stop with an error, not
//! a stack overflow, past the depth limit (repo-format.md, "Limits").

use cairn_engine::{
    CheckProgress, Filter, Problem, ReadData, RestoreOptions, RestoreProgress, Visit,
};
use cairn_format::snapshot::{Kind, Snapshot, Summary};
use cairn_format::tree::{Node, NodeKind, Tree, MAX_TREE_DEPTH};
use cairn_format::{SnapshotId, TreeId};
use cairn_repo::{OpenOptions, Repository};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn repo() -> (tempfile::TempDir, Repository) {
    let dir = tempfile::tempdir().unwrap();
    let backend = cairn_testkit::init_local(&dir.path().join("repo"));
    let opts = OpenOptions {
        writer: true,
        ..OpenOptions::default()
    };
    let repo = Repository::open(Box::new(backend), b"pw", &opts).unwrap();
    (dir, repo)
}

fn dir(name: &str, sub: TreeId) -> Node {
    Node {
        name: name.into(),
        kind: NodeKind::Dir,
        mode: 0o755,
        subtree: Some(sub),
        ..Node::default()
    }
}

fn file(name: &str) -> Node {
    Node {
        name: name.into(),
        kind: NodeKind::File,
        mode: 0o644,
        links: 1,
        ..Node::default()
    }
}

fn save(repo: &Repository, nodes: Vec<Node>) -> TreeId {
    repo.save_tree(&Tree { nodes }).unwrap().0
}

/// `levels` directories, each holding two entries `a` and `b` that are the same subtree, above
/// a directory holding one file: 2^levels paths to that file through `levels + 1` trees.
fn diamond(repo: &Repository, levels: usize) -> TreeId {
    let mut t = save(repo, vec![file("f")]);
    for _ in 0..levels {
        t = save(repo, vec![dir("a", t), dir("b", t)]);
    }
    t
}

/// A root tree and `depth` directories nested below it, the deepest holding one file: its tree
/// is at depth `depth`.
fn chain(repo: &Repository, depth: usize) -> TreeId {
    chain_to(repo, depth, "f")
}

fn chain_to(repo: &Repository, depth: usize, leaf: &str) -> TreeId {
    let mut t = save(repo, vec![file(leaf)]);
    for _ in 0..depth {
        t = save(repo, vec![dir("d", t)]);
    }
    t
}

fn snapshot(repo: &Repository, tree: TreeId) -> (SnapshotId, Snapshot) {
    let s = Snapshot {
        time: 1,
        host: b"h".to_vec(),
        user: b"u".to_vec(),
        paths: vec![b"/".to_vec()],
        tags: vec![],
        kind: Kind::Full,
        parent: None,
        tree,
        summary: Summary::default(),
        program: b"test".to_vec(),
    };
    (repo.save_snapshot(&s).unwrap(), s)
}

fn fast(started: Instant) {
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}

// Check must visit a subtree once however many paths reach it (it does, with its map of trees
// checked): 64 levels of shared subtrees are 2^64 paths.
#[test]
fn check_visits_a_subtree_reached_along_many_paths_once() {
    let (_dir, repo) = repo();
    let root = diamond(&repo, 64);
    snapshot(&repo, root);
    let started = Instant::now();
    let report = cairn_engine::check(&repo, ReadData::None, &CheckProgress::default()).unwrap();
    fast(started);
    assert!(report.ok(), "{:?}", report.problems);
}

// Regression: the archiver counted the files of a directory gone since the parent snapshot by
// walking every path below it: 2^40 paths for 41 distinct trees.
#[test]
fn deleted_files_below_shared_subtrees_are_counted_once_per_subtree() {
    let (tmp, repo) = repo();
    let src = tmp.path().canonicalize().unwrap().join("src");
    std::fs::create_dir(&src).unwrap();
    // The parent snapshot: `src` held a directory `gone` that is now gone.
    let mut parent = save(&repo, vec![dir("gone", diamond(&repo, 40))]);
    let names: Vec<_> = src.iter().skip(1).collect();
    for name in names.iter().rev() {
        parent = save(&repo, vec![dir(&name.to_string_lossy(), parent)]);
    }
    let parent = snapshot(&repo, parent);
    let opts = cairn_engine::BackupOptions {
        paths: vec![src.clone()],
        exclude: Filter::new(&[]).unwrap(),
        one_file_system: false,
        host: b"h".to_vec(),
        user: b"u".to_vec(),
        tags: vec![],
        time_ns: 2,
        kind: Kind::Incremental,
        parent: Some(parent),
        program: b"test".to_vec(),
    };
    let started = Instant::now();
    let outcome = cairn_engine::backup(&repo, &opts, &Default::default()).unwrap();
    fast(started);
    assert_eq!(outcome.snapshot.summary.files_deleted, 1 << 40);
}

/// Runs `f` on a thread with a small stack, as rayon's and test threads are: a walk must not
/// need more than its depth limit allows, whatever the snapshot.
fn on_small_stack<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn_scoped(s, f)
            .unwrap()
            .join()
            .unwrap()
    })
}

// Regression: walks recursed once per level without a bound, so a crafted chain of trees
// overflowed the stack (and a legitimate snapshot could not say where it would fail).
#[test]
fn a_chain_deeper_than_the_limit_is_an_error_not_a_stack_overflow() {
    let (tmp, repo) = repo();
    let within = chain(&repo, MAX_TREE_DEPTH);
    let beyond = chain(&repo, 100_000);
    let (too_deep_snapshot, _) = snapshot(&repo, beyond);
    let too_deep = |e: cairn_repo::Error| {
        assert!(
            e.message.contains(&format!("deeper than {MAX_TREE_DEPTH}")),
            "{}",
            e.message
        );
    };
    on_small_stack(|| {
        // At the limit, every walk works.
        let mut n = 0;
        cairn_engine::walk_tree(&repo, within, Path::new("/"), &mut |_, _| {
            n += 1;
            Ok(Visit::Descend)
        })
        .unwrap();
        assert_eq!(n, MAX_TREE_DEPTH + 1);

        // Beyond it, ls, find and dump (which walk with `walk_tree`) fail.
        let e = cairn_engine::walk_tree(&repo, beyond, Path::new("/"), &mut |_, _| {
            Ok(Visit::Descend)
        })
        .unwrap_err();
        too_deep(e);

        // Check reports it, naming the snapshot.
        let report = cairn_engine::check(&repo, ReadData::None, &CheckProgress::default()).unwrap();
        let errors: Vec<&Problem> = report.errors().collect();
        let [problem @ Problem::SnapshotTooDeep { snapshot, message }] = errors[..] else {
            panic!("{:?}", report.problems);
        };
        assert_eq!(*snapshot, too_deep_snapshot);
        assert!(
            message.contains(&format!("deeper than {MAX_TREE_DEPTH}")),
            "{message}"
        );
        let line = problem.to_string();
        assert!(
            line.starts_with(&format!("snapshot {}: ", snapshot.short())),
            "{line}"
        );

        // Diff, against a tree that differs only at the bottom.
        let other = chain_to(&repo, 100_000, "g");
        repo.flush().unwrap();
        too_deep(cairn_engine::diff(&repo, beyond, other, &mut |_| {}).unwrap_err());

        // Restore's plan.
        let opts = RestoreOptions {
            target: tmp.path().join("restore"),
            include: Filter::new(&[]).unwrap(),
            exclude: Filter::new(&[]).unwrap(),
            dry_run: true,
            owners: false,
            verify: false,
        };
        let e = cairn_engine::restore(&repo, beyond, &opts, &RestoreProgress::default())
            .err()
            .unwrap();
        too_deep(e);

        // Repair, which rewrites trees bottom-up.
        too_deep(cairn_engine::repair_snapshots(&repo, false, true).unwrap_err());
    });
}

// The archiver holds to the limit too: what it writes, every reader can read back.
#[test]
fn the_archiver_does_not_descend_past_the_depth_limit() {
    let (tmp, repo) = repo();
    let src = tmp.path().canonicalize().unwrap().join("src");
    let depth_of_src = src.components().count() - 1;
    let mut deep = src.clone();
    for _ in 0..MAX_TREE_DEPTH + 5 - depth_of_src {
        deep.push("d");
    }
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("f"), b"x").unwrap();
    let opts = cairn_engine::BackupOptions {
        paths: vec![src.clone()],
        exclude: Filter::new(&[]).unwrap(),
        one_file_system: false,
        host: b"h".to_vec(),
        user: b"u".to_vec(),
        tags: vec![],
        time_ns: 2,
        kind: Kind::Full,
        parent: None,
        program: b"test".to_vec(),
    };
    let outcome = cairn_engine::backup(&repo, &opts, &Default::default()).unwrap();
    assert_eq!(outcome.skipped.len(), 1, "{:?}", outcome.skipped);
    assert!(
        outcome.skipped[0].reason.contains("deeper than"),
        "{:?}",
        outcome.skipped
    );
    let mut deepest = PathBuf::new();
    cairn_engine::walk_tree(&repo, outcome.snapshot.tree, Path::new("/"), &mut |p, _| {
        deepest = p.to_path_buf();
        Ok(Visit::Descend)
    })
    .unwrap();
    assert_eq!(deepest.components().count() - 1, MAX_TREE_DEPTH);
    let report = cairn_engine::check(&repo, ReadData::None, &CheckProgress::default()).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
}
