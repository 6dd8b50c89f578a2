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

/// Asserts that `e` is the error of a walk refused for reaching too many entries.
fn crafted(e: &cairn_repo::Error) {
    assert_eq!(e.kind, cairn_repo::ErrorKind::Corrupt, "{}", e.message);
    assert!(
        e.message.contains("entries along all their paths") && e.message.contains("crafted"),
        "{}",
        e.message
    );
}

/// Runs `f` and asserts that it took well under a second: a walk refused for its size is
/// refused before it has walked much.
fn quickly<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let out = f();
    let took = started.elapsed();
    assert!(took < Duration::from_millis(900), "{what} took {took:?}");
    out
}

// Regression: ls, find, dump, diff and restore planning list every path, so they visited a
// subtree once per path reaching it: 2^64 visits for a snapshot of 65 small trees. They must
// refuse such a snapshot at once, naming what is wrong.
#[test]
fn walks_that_list_paths_refuse_a_subtree_reached_along_2_to_the_64_paths() {
    let (tmp, repo) = repo();
    let root = diamond(&repo, 64);
    let other = {
        let mut t = save(&repo, vec![file("g")]);
        for _ in 0..64 {
            t = save(&repo, vec![dir("a", t), dir("b", t)]);
        }
        t
    };
    let (id, snap) = snapshot(&repo, root);
    repo.flush().unwrap();

    // ls (and ls -R): `walk_tree`.
    let e = quickly("ls", || {
        cairn_engine::walk_tree(&repo, root, Path::new("/"), &mut |_, _| Ok(Visit::Descend))
            .unwrap_err()
    });
    crafted(&e);

    // find names the snapshot.
    let all = Filter::new(&["*".to_string()]).unwrap();
    let snapshots = [(id, snap)];
    let e = quickly("find", || {
        cairn_engine::find(&repo, &snapshots, &all, &mut |_, _, _, _| {}).unwrap_err()
    });
    crafted(&e);
    assert!(
        e.message.starts_with(&format!("snapshot {}: ", id.short())),
        "{}",
        e.message
    );

    // dump of the whole snapshot as tar and zip.
    let top = cairn_engine::find_node(&repo, root, Path::new("/")).unwrap();
    let e = quickly("dump tar", || {
        cairn_engine::dump_tar(&repo, &top, Path::new("/"), &mut std::io::sink()).unwrap_err()
    });
    crafted(&e);
    let e = quickly("dump zip", || {
        cairn_engine::dump_zip(&repo, &top, Path::new("/"), &mut std::io::sink()).unwrap_err()
    });
    crafted(&e);

    // diff against a snapshot that differs in every path, and against an empty one.
    let e = quickly("diff", || {
        cairn_engine::diff(&repo, root, other, &mut |_| {}).unwrap_err()
    });
    crafted(&e);
    let empty = save(&repo, vec![]);
    repo.flush().unwrap();
    let e = quickly("diff with an empty snapshot", || {
        cairn_engine::diff(&repo, empty, root, &mut |_| {}).unwrap_err()
    });
    crafted(&e);

    // Restore's plan.
    let opts = RestoreOptions {
        target: tmp.path().join("restore"),
        include: Filter::new(&[]).unwrap(),
        exclude: Filter::new(&[]).unwrap(),
        dry_run: true,
        owners: false,
        verify: false,
    };
    let e = quickly("restore planning", || {
        cairn_engine::plan_restore(&repo, root, &opts)
            .err()
            .unwrap()
    });
    crafted(&e);
    assert!(!tmp.path().join("restore").exists());
}

// Regression: what a walk can reach was counted with a cut at the depth limit and remembered
// per tree; trees counted deep below one root were then counted too small where the other root
// of a diff reaches them higher up, and the diff went on through 2^41 paths.
#[test]
fn a_subtree_counted_deep_below_one_root_is_counted_whole_below_another() {
    let (_tmp, repo) = repo();
    let shared = diamond(&repo, 40);
    let mut deep = shared;
    for _ in 0..MAX_TREE_DEPTH - 22 {
        deep = save(&repo, vec![dir("d", deep)]);
    }
    let a = save(&repo, vec![dir("z", deep)]);
    let b = save(&repo, vec![dir("y", shared)]);
    repo.flush().unwrap();
    let e = quickly("diff", || {
        cairn_engine::diff(&repo, a, b, &mut |_| {}).unwrap_err()
    });
    crafted(&e);
}

// Stats adds the files below each tree: along 2^64 paths that is more than a u64 holds, which
// must saturate, not overflow (a panic in debug builds, a wrong count in release ones).
#[test]
fn stats_of_a_subtree_reached_along_2_to_the_64_paths_saturates() {
    let (_dir, repo) = repo();
    let root = diamond(&repo, 64);
    let snapshots = [snapshot(&repo, root), snapshot(&repo, root)];
    repo.flush().unwrap();
    let stats = cairn_engine::stats(&repo, &snapshots, &[true, true]).unwrap();
    assert_eq!(stats.snapshots[0].files, u64::MAX);
    assert_eq!(stats.files, u64::MAX);
    assert_eq!(stats.trees.blobs, 65);
}

// Identical directories are common (empty ones, copies of a checkout): a walk that re-enters
// trees it has loaded, for more entries than triggers the count of what it can reach, still
// lists every path when that count is reasonable.
#[test]
fn walks_list_every_path_of_a_directory_copied_many_times() {
    let (tmp, repo) = repo();
    let files: Vec<Node> = (0..1000).map(|i| file(&format!("f{i:04}"))).collect();
    let copy = save(&repo, files);
    let root = save(
        &repo,
        (0..100).map(|i| dir(&format!("c{i:03}"), copy)).collect(),
    );
    repo.flush().unwrap();
    let mut n = 0;
    cairn_engine::walk_tree(&repo, root, Path::new("/"), &mut |_, _| {
        n += 1;
        Ok(Visit::Descend)
    })
    .unwrap();
    assert_eq!(n, 100 * 1001);
    let mut changes = 0;
    let empty = save(&repo, vec![]);
    repo.flush().unwrap();
    cairn_engine::diff(&repo, empty, root, &mut |_| changes += 1).unwrap();
    assert_eq!(changes, 100 * 1001);
    let opts = RestoreOptions {
        target: tmp.path().join("restore"),
        include: Filter::new(&[]).unwrap(),
        exclude: Filter::new(&[]).unwrap(),
        dry_run: true,
        owners: false,
        verify: false,
    };
    let plan = cairn_engine::plan_restore(&repo, root, &opts).unwrap();
    assert_eq!(plan.files(), 100 * 1000);
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
