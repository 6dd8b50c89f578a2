//! `check` against damaged repositories, judged by the `Problem`s it returns rather than by
//! their text (the CLI's tests hold the text); and prune after it, when the pack it recorded
//! cannot be read.

use cairn_backend::{FileType, LocalBackend};
use cairn_engine::{
    BackupOptions, BackupProgress, BadPack, CheckProgress, CheckReport, Filter, Loss, Problem,
    ReadData,
};
use cairn_format::snapshot::Kind;
use cairn_format::{BlobType, PackId};
use cairn_repo::{OpenOptions, Repository};
use std::fs;
use std::path::{Path, PathBuf};

/// A local repository holding one backup of `src/f` (random bytes, so that they do not
/// compress) and `src/g`.
fn repository(dir: &Path) -> PathBuf {
    let root = dir.join("repo");
    cairn_testkit::init_local(&root);
    let src = dir.join("src");
    fs::create_dir_all(&src).unwrap();
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let random: Vec<u8> = (0..100_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    fs::write(src.join("f"), random).unwrap();
    fs::write(src.join("g"), b"small").unwrap();
    let writer = OpenOptions {
        writer: true,
        ..OpenOptions::default()
    };
    let repo = Repository::open(Box::new(LocalBackend::open(&root)), b"pw", &writer).unwrap();
    let backup = BackupOptions {
        paths: vec![src],
        exclude: Filter::new(&[]).unwrap(),
        one_file_system: false,
        host: b"h".to_vec(),
        user: b"u".to_vec(),
        tags: Vec::new(),
        time_ns: 1_000_000_000,
        kind: Kind::Full,
        parent: None,
        program: b"test".to_vec(),
    };
    cairn_engine::backup(&repo, &backup, &BackupProgress::default()).unwrap();
    root
}

/// Opens the repository afresh, with a cache built from what storage holds now.
fn open(root: &Path) -> Repository {
    let backend = LocalBackend::open(root);
    Repository::open(Box::new(backend), b"pw", &OpenOptions::default()).unwrap()
}

/// The one pack of data blobs, and where it is stored.
fn data_pack(root: &Path) -> (PackId, PathBuf) {
    let repo = open(root);
    let packs: Vec<PackId> = repo
        .list_packs()
        .unwrap()
        .into_iter()
        .map(|(pack, _)| pack)
        .filter(|pack| {
            let blobs = repo.blobs_in_pack(pack).unwrap();
            blobs.iter().all(|e| e.blob.kind == BlobType::Data)
        })
        .collect();
    assert_eq!(packs.len(), 1, "{packs:?}");
    let hex = packs[0].to_hex();
    (packs[0], root.join("data").join(&hex[..2]).join(&hex))
}

/// Flips a byte of `f`'s blob in the data pack at `path`: blobs come first in a pack, and
/// `f`'s is nearly all of it.
fn damage_f(path: &Path) {
    let mut bytes = fs::read(path).unwrap();
    let third = bytes.len() / 3;
    bytes[third] ^= 0x10;
    fs::write(path, bytes).unwrap();
}

fn check(root: &Path, to_read: ReadData) -> CheckReport {
    cairn_engine::check(&open(root), to_read, &CheckProgress::default()).unwrap()
}

#[test]
fn an_intact_repository_has_no_problems() {
    let dir = tempfile::tempdir().unwrap();
    let root = repository(dir.path());
    let report = check(&root, ReadData::All);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(report.ok());
}

#[test]
fn a_missing_pack_is_named_with_the_files_it_costs() {
    let dir = tempfile::tempdir().unwrap();
    let root = repository(dir.path());
    let (pack, path) = data_pack(&root);
    fs::remove_file(path).unwrap();

    let report = check(&root, ReadData::None);
    let errors: Vec<&Problem> = report.errors().collect();
    assert!(
        matches!(errors[0], Problem::PackMissing { pack: p, .. } if *p == pack),
        "{errors:?}"
    );
    let lost: Vec<&Path> = errors[1..]
        .iter()
        .map(|problem| match problem {
            Problem::ContentLost {
                path,
                loss:
                    Loss::InBadPack {
                        pack: p,
                        why: BadPack::Missing,
                        ..
                    },
                ..
            } if *p == pack => path.as_path(),
            other => panic!("not a file lost with the pack: {other:?}"),
        })
        .collect();
    let names: Vec<_> = lost.iter().map(|p| p.file_name().unwrap()).collect();
    assert_eq!(names, ["f", "g"], "{errors:?}");
    assert_eq!(report.damage.len(), 1);
    assert!(!report.ok());
}

#[test]
fn a_truncated_pack_is_a_size_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let root = repository(dir.path());
    let (pack, path) = data_pack(&root);
    let len = fs::metadata(&path).unwrap().len();
    let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(len - 1).unwrap();

    let report = check(&root, ReadData::All);
    let first = report.errors().next().unwrap();
    assert_eq!(
        *first,
        Problem::PackSizeMismatch {
            pack,
            expected: len,
            found: len - 1
        }
    );
    // It is not read: its blobs are lost through the index's record of its size alone.
    assert_eq!(report.packs_read, report.packs - 1);
    assert!(report.errors().skip(1).all(|p| matches!(
        p,
        Problem::ContentLost {
            loss: Loss::InBadPack {
                why: BadPack::Truncated,
                ..
            },
            ..
        }
    )));
}

#[test]
fn a_flipped_byte_is_a_damaged_blob_and_the_pack_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let root = repository(dir.path());
    let (pack, path) = data_pack(&root);
    damage_f(&path);

    // Without reading data, the structure is intact.
    assert!(check(&root, ReadData::None).ok());

    let report = check(&root, ReadData::All);
    let errors: Vec<&Problem> = report.errors().collect();
    let [Problem::PackDamaged { pack: p1, .. }, Problem::BlobDamaged { pack: p2, blob, .. }, Problem::ContentLost { path, loss, .. }] =
        errors[..]
    else {
        panic!("{errors:?}");
    };
    assert_eq!((*p1, *p2), (pack, pack));
    assert_eq!(path.file_name().unwrap(), "f");
    assert_eq!(*loss, Loss::Damaged { blob: *blob, pack });
    assert_eq!(report.recorded, [pack]);
}

/// A pack `check` recorded (condemned) holds the only copies of blobs a snapshot uses, so prune
/// must read its header to revive them. When that read fails for any reason but damage, prune
/// stops with the store's error, naming the pack, and deletes nothing: skipping the pack could
/// keep those blobs in a pack no index file names, and the condemnation would then take them
/// out of the index.
#[test]
fn prune_stops_when_it_cannot_read_a_condemned_pack_it_must_revive_from() {
    let dir = tempfile::tempdir().unwrap();
    let root = repository(dir.path());
    let (pack, path) = data_pack(&root);
    damage_f(&path);
    assert_eq!(check(&root, ReadData::All).recorded, [pack]);

    let backend = cairn_testkit::RefuseReads {
        inner: LocalBackend::open(&root),
        kind: FileType::Pack,
        name: pack.to_hex(),
    };
    let writer = OpenOptions {
        writer: true,
        ..OpenOptions::default()
    };
    let repo = Repository::open(Box::new(backend), b"pw", &writer).unwrap();
    let opts = cairn_engine::PruneOptions {
        max_unused: 0.0,
        grace: std::time::Duration::from_secs(86_400),
        dry_run: false,
        forgotten: Default::default(),
    };
    let Err(e) = cairn_engine::prune(&repo, &opts) else {
        panic!("prune went on without the condemned pack");
    };
    assert_eq!(e.kind, cairn_repo::ErrorKind::Io, "{e}");
    assert!(e.to_string().contains(&pack.to_hex()), "{e}");
    assert!(!e.to_string().contains('\n'), "{e}");
    assert!(path.exists());
    assert!(open(&root).condemned_packs().contains(&pack));
}

#[test]
fn packs_no_index_names_are_a_warning_and_their_trees_are_lost() {
    let dir = tempfile::tempdir().unwrap();
    let root = repository(dir.path());
    for file in fs::read_dir(root.join("index")).unwrap() {
        fs::remove_file(file.unwrap().path()).unwrap();
    }

    let report = check(&root, ReadData::None);
    let warnings: Vec<&Problem> = report.warnings().collect();
    assert_eq!(
        warnings,
        [&Problem::PacksNotIndexed {
            count: report.packs
        }]
    );
    let errors: Vec<&Problem> = report.errors().collect();
    assert!(
        matches!(
            errors[..],
            [Problem::TreeLost {
                path,
                loss: Loss::NotIndexed { .. },
                ..
            }] if path == Path::new("/")
        ),
        "{errors:?}"
    );
}
