//! The content engines (archiver, restorer, walk, diff, dump) on cairn-testkit's `MemStore`:
//! no keys, packs or repository files, so these run in milliseconds and say exactly which
//! engine broke.

use crate::{
    backup, diff, dump_file, dump_tar, find_node, restore, walk_tree, BackupOptions, BackupOutcome,
    BackupProgress, ChangeKind, Filter, RestoreOptions, RestoreProgress, Visit,
};
use cairn_format::snapshot::Kind;
use cairn_repo::BlobStore;
use cairn_testkit::{listing, MemStore, SourceTree};
use std::path::{Path, PathBuf};

fn no_filter() -> Filter {
    Filter::new(&[]).unwrap()
}

/// A backup of `src` as a first (full) backup or as an incremental one against `parent`.
fn options(src: &SourceTree, parent: Option<&BackupOutcome>) -> BackupOptions {
    BackupOptions {
        paths: vec![src.root()],
        exclude: no_filter(),
        one_file_system: false,
        host: b"host".to_vec(),
        user: b"user".to_vec(),
        tags: Vec::new(),
        time_ns: 1,
        kind: if parent.is_some() {
            Kind::Incremental
        } else {
            Kind::Full
        },
        parent: parent.map(|p| (p.id, p.snapshot.clone())),
        program: b"test".to_vec(),
    }
}

fn back_up(store: &MemStore, src: &SourceTree, parent: Option<&BackupOutcome>) -> BackupOutcome {
    let opts = options(src, parent);
    backup(store, &opts, &BackupProgress::default()).expect("backup in memory")
}

fn restore_into(store: &MemStore, outcome: &BackupOutcome, target: &Path) -> crate::RestoreOutcome {
    let opts = RestoreOptions {
        target: target.to_path_buf(),
        include: no_filter(),
        exclude: no_filter(),
        dry_run: false,
        owners: false,
        verify: true,
    };
    restore(
        store,
        outcome.snapshot.tree,
        &opts,
        &RestoreProgress::default(),
    )
    .expect("restore")
}

/// The path inside a snapshot of `rel` below the source root.
fn in_snapshot(src: &SourceTree, rel: &str) -> PathBuf {
    src.root().join(rel)
}

fn sample() -> SourceTree {
    let src = SourceTree::new();
    src.file("a.txt", b"alpha")
        .random_file("big/one.bin", 20_000, 1)
        .random_file("big/two.bin", 9_000, 2)
        .file("empty", b"")
        .symlink("link", "a.txt")
        .hard_link("big/again.bin", "big/one.bin")
        .dir("nothing/here");
    src
}

#[test]
fn backup_stores_each_chunk_once_and_saves_the_snapshot() {
    let (store, src) = (MemStore::default(), sample());
    let first = back_up(&store, &src, None);
    assert!(first.skipped.is_empty(), "{:?}", first.skipped);
    assert_eq!(store.snapshots().len(), 1);
    assert_eq!(store.snapshots()[0].0, first.id);
    let s = &first.snapshot.summary;
    assert_eq!(s.total_bytes, 5 + 20_000 + 9_000 + 20_000);
    // Random content of 29,005 distinct bytes in chunks of 256 B to 4 KiB: the hard link adds
    // no chunk of its own.
    let blobs = store.data_blobs();
    assert!((8..=113).contains(&blobs), "{blobs} chunks");
    // Nothing changed: the next backup stores nothing new and finds every file unchanged.
    let second = back_up(&store, &src, Some(&first));
    assert_eq!(store.data_blobs(), blobs);
    // The source's own tree is the same; the directories above it (/tmp) change as other tests
    // run.
    let source_tree = |o: &BackupOutcome| {
        find_node(&store, o.snapshot.tree, &src.root())
            .unwrap()
            .subtree
    };
    assert_eq!(source_tree(&second), source_tree(&first));
    assert_eq!(second.snapshot.summary.files_changed, 0);
    assert_eq!(second.snapshot.summary.files_new, 0);
}

#[test]
fn restore_reproduces_the_tree_and_keeps_what_is_complete() {
    let (store, src) = (MemStore::default(), sample());
    let snap = back_up(&store, &src, None);
    let target = src.scratch("restored");
    let out = restore_into(&store, &snap, &target);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let restored_root = target.join(src.root().strip_prefix("/").unwrap());
    assert_eq!(listing(&restored_root), listing(&src.root()));
    // A second restore over the first finds every file complete and rewrites none (four
    // files; the hard link is a second name of one of them).
    let again = restore_into(&store, &snap, &target);
    assert_eq!(again.files_kept, 4, "{:?}", again.errors);
    assert_eq!(listing(&restored_root), listing(&src.root()));
}

#[test]
fn restore_removes_a_file_whose_chunk_is_damaged_and_says_which() {
    let (store, src) = (MemStore::default(), sample());
    let snap = back_up(&store, &src, None);
    let node = find_node(
        &store,
        snap.snapshot.tree,
        &in_snapshot(&src, "big/two.bin"),
    )
    .unwrap();
    store.damage(node.content[0]);
    let target = src.scratch("restored");
    let out = restore_into(&store, &snap, &target);
    let restored_root = target.join(src.root().strip_prefix("/").unwrap());
    assert!(!restored_root.join("big/two.bin").exists());
    assert!(restored_root.join("big/one.bin").exists());
    assert_eq!(out.errors.len(), 1, "{:?}", out.errors);
    assert!(out.errors[0].path.ends_with("big/two.bin"));
    assert!(
        out.errors[0].reason.contains("does not match"),
        "{:?}",
        out.errors
    );
}

#[test]
fn walk_visits_every_entry_and_skips_what_it_is_told_to() {
    let (store, src) = (MemStore::default(), sample());
    let snap = back_up(&store, &src, None);
    let mut seen = Vec::new();
    walk_tree(
        &store,
        snap.snapshot.tree,
        Path::new("/"),
        &mut |path, node| {
            seen.push(path.to_path_buf());
            Ok(if node.name == b"big" {
                Visit::Skip
            } else {
                Visit::Descend
            })
        },
    )
    .unwrap();
    assert!(seen.contains(&in_snapshot(&src, "a.txt")));
    assert!(seen.contains(&in_snapshot(&src, "big")));
    assert!(seen.contains(&in_snapshot(&src, "nothing/here")));
    assert!(!seen.contains(&in_snapshot(&src, "big/one.bin")));
    let missing = find_node(&store, snap.snapshot.tree, &in_snapshot(&src, "nope"));
    assert!(missing
        .unwrap_err()
        .message
        .contains("is not in the snapshot"));
}

#[test]
fn diff_names_what_was_added_removed_and_changed() {
    let (store, src) = (MemStore::default(), sample());
    let before = back_up(&store, &src, None);
    src.file("a.txt", b"ALPHA")
        .remove("big/two.bin")
        .file("new/file", b"n");
    let after = back_up(&store, &src, Some(&before));
    let mut changes = Vec::new();
    diff(
        &store,
        before.snapshot.tree,
        after.snapshot.tree,
        &mut |c| {
            changes.push((c.path.to_path_buf(), c.kind));
        },
    )
    .unwrap();
    let has = |rel: &str, kind: ChangeKind| changes.contains(&(in_snapshot(&src, rel), kind));
    assert!(has("a.txt", ChangeKind::Content), "{changes:?}");
    assert!(has("big/two.bin", ChangeKind::Removed), "{changes:?}");
    assert!(has("new", ChangeKind::Added), "{changes:?}");
    assert!(has("new/file", ChangeKind::Added), "{changes:?}");
    assert!(
        !changes.iter().any(|(p, _)| p.ends_with("one.bin")),
        "{changes:?}"
    );
}

#[test]
fn dump_streams_a_file_and_archives_a_directory() {
    let (store, src) = (MemStore::default(), sample());
    let snap = back_up(&store, &src, None);
    let file = find_node(
        &store,
        snap.snapshot.tree,
        &in_snapshot(&src, "big/one.bin"),
    )
    .unwrap();
    let mut out = Vec::new();
    dump_file(&store, &file, &mut out).unwrap();
    assert_eq!(out, std::fs::read(src.root().join("big/one.bin")).unwrap());

    let dir = find_node(&store, snap.snapshot.tree, &in_snapshot(&src, "big")).unwrap();
    let mut tar_bytes = Vec::new();
    dump_tar(&store, &dir, Path::new("big"), &mut tar_bytes).unwrap();
    let mut archive = tar::Archive::new(&tar_bytes[..]);
    let mut names: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["big", "big/again.bin", "big/one.bin", "big/two.bin"]
    );

    // A damaged chunk fails the dump instead of streaming wrong bytes.
    store.damage(file.content[1]);
    assert!(dump_file(&store, &file, &mut Vec::new()).is_err());
    let _ = store.chunker();
}

/// Two stores with other keys name the same content differently: a copy renames every blob,
/// restores byte for byte from the target, and a second copy of a later snapshot reads only
/// what changed.
#[test]
fn copy_renames_every_blob_and_learns_from_earlier_copies() {
    use crate::{copy_snapshot, learn, same_snapshot, Renamed};
    let source = MemStore::default();
    let target = MemStore::keyed([7; 32]);
    let src = SourceTree::new();
    src.file("a", &vec![1u8; 9000]);
    src.file("d/b", b"bee");
    src.file(
        "d/e/c",
        &(0..20_000u32)
            .map(|i| (i * 7 % 251) as u8)
            .collect::<Vec<_>>(),
    );
    let first = back_up(&source, &src, None);
    let mut renamed = Renamed::default();
    let copied = copy_snapshot(&source, &target, &first.snapshot, None, &mut renamed).unwrap();
    assert_ne!(
        copied.snapshot.tree, first.snapshot.tree,
        "the tree was renamed"
    );
    assert!(same_snapshot(&first.snapshot, &copied.snapshot));
    assert_eq!(copied.blobs_read as usize, source.data_blobs());
    assert_eq!(target.data_blobs(), source.data_blobs());
    let out = src.scratch("restored");
    let from_copy = BackupOutcome {
        id: copied.id,
        snapshot: copied.snapshot.clone(),
        skipped: Vec::new(),
    };
    restore_into(&target, &from_copy, &out);
    let restored_root = out.join(src.root().strip_prefix("/").unwrap());
    assert_eq!(listing(&restored_root), listing(&src.root()));

    // One file changes; a new run learns the rest from the first copy and reads only it.
    src.file("d/b", b"bumble");
    let second = back_up(&source, &src, Some(&first));
    let mut renamed = Renamed::default();
    learn(
        &source,
        &target,
        first.snapshot.tree,
        copied.snapshot.tree,
        &mut renamed,
    )
    .unwrap();
    let again = copy_snapshot(
        &source,
        &target,
        &second.snapshot,
        Some(copied.id),
        &mut renamed,
    )
    .unwrap();
    assert_eq!(
        again.blobs_read, 1,
        "only the changed file's one chunk is read"
    );
    assert_eq!(again.snapshot.parent, Some(copied.id));
    assert_eq!(target.data_blobs(), source.data_blobs());
}

/// Backs up `src` as `back_up` does, and returns what the listener was told, below the source
/// root, sorted: (path relative to the root, change).
fn listed_changes(
    store: &MemStore,
    src: &SourceTree,
    parent: Option<&BackupOutcome>,
) -> (BackupOutcome, Vec<(String, crate::EntryChange)>) {
    use std::sync::{Arc, Mutex};
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let root = src.root();
    let progress = BackupProgress {
        on_entry: Some(Box::new(move |path, _, change| {
            if let Ok(rel) = path.strip_prefix(&root) {
                let rel = rel.to_string_lossy().into_owned();
                sink.lock().unwrap().push((rel, change));
            }
        })),
        ..BackupProgress::default()
    };
    let opts = options(src, parent);
    let outcome = backup(store, &opts, &progress).expect("backup in memory");
    let mut seen = std::mem::take(&mut *seen.lock().unwrap());
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    (outcome, seen)
}

#[test]
fn the_listener_hears_each_entry_as_the_summary_counts_it() {
    use crate::EntryChange::{Changed, Deleted, New, Unchanged};
    let (store, src) = (MemStore::default(), sample());
    let (first, seen) = listed_changes(&store, &src, None);
    assert!(seen.iter().all(|(_, c)| *c == New), "{seen:?}");
    let names: Vec<&str> = seen.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        names,
        [
            "",
            "a.txt",
            "big",
            "big/again.bin",
            "big/one.bin",
            "big/two.bin",
            "empty",
            "link",
            "nothing",
            "nothing/here"
        ]
    );

    src.file("a.txt", b"alpha, longer")
        .remove("big/two.bin")
        .remove("nothing")
        .file("new.txt", b"new");
    let (second, seen) = listed_changes(&store, &src, Some(&first));
    let want = [
        ("", Unchanged),
        ("a.txt", Changed),
        ("big", Unchanged),
        ("big/again.bin", Unchanged),
        ("big/one.bin", Unchanged),
        ("big/two.bin", Deleted),
        ("empty", Unchanged),
        ("link", Unchanged),
        ("new.txt", New),
        ("nothing", Deleted),
        ("nothing/here", Deleted),
    ];
    let want: Vec<(String, crate::EntryChange)> =
        want.iter().map(|(p, c)| (p.to_string(), *c)).collect();
    assert_eq!(seen, want);
    let files = |c| {
        seen.iter()
            .filter(|(p, x)| {
                *x == c && !["", "big", "nothing", "nothing/here", "link"].contains(&p.as_str())
            })
            .count() as u64
    };
    let s = &second.snapshot.summary;
    assert_eq!(
        (
            s.files_new,
            s.files_changed,
            s.files_unchanged,
            s.files_deleted
        ),
        (files(New), files(Changed), files(Unchanged), files(Deleted))
    );
}
