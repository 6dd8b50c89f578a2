//! Key files of an open repository: adding, listing, removing, and changing a password without
//! a moment in which no key file opens the repository.

use super::*;
use cairn_backend::{Entry, Guarantees};
use cairn_repo::NewKey;
use cairn_testkit::CrashAfterWrites;

fn new_key(host: &str) -> NewKey {
    NewKey {
        kdf: fast_init().kdf,
        created: 1_000,
        host: host.as_bytes().to_vec(),
        user: b"someone".to_vec(),
    }
}

fn open_with(b: &MemBackend, password: &[u8]) -> cairn_repo::Result<Repository> {
    Repository::open(Box::new(b.clone()), password, &OpenOptions::default())
}

fn wrong_password(b: &MemBackend, password: &[u8]) -> bool {
    matches!(open_with(b, password), Err(e) if e.kind == ErrorKind::WrongPassword)
}

#[test]
fn an_added_key_opens_the_same_repository_and_is_listed_with_its_header() {
    let b = MemBackend::default();
    cairn_repo::init(&b, b"pw", &fast_init()).unwrap();
    let repo = open(&b);
    let first = repo.key_id();
    let added = repo.add_key(b"second", &new_key("laptop")).unwrap();
    assert_ne!(added, first);
    assert_eq!(names(&b, FileType::Key).len(), 2);

    let other = open_with(&b, b"second").unwrap();
    assert_eq!(other.key_id(), added);
    assert_eq!(other.config().repo_id, repo.config().repo_id);
    assert_eq!(open(&b).key_id(), first);

    let files = repo.key_files().unwrap();
    assert!(files.damaged.is_empty(), "{files:?}");
    let ids: Vec<_> = files.list.iter().map(|(id, _)| *id).collect();
    // Oldest first: `fast_init` creates at time 0, the added key at 1000.
    assert_eq!(ids, vec![first, added]);
    let header = &files.list[1].1;
    assert_eq!(
        (
            header.host.as_slice(),
            header.user.as_slice(),
            header.created
        ),
        (&b"laptop"[..], &b"someone"[..], 1_000)
    );
    assert_eq!(header.kdf, fast_init().kdf);
}

#[test]
fn removing_a_key_revokes_its_password_and_the_key_in_use_is_refused() {
    let b = MemBackend::default();
    cairn_repo::init(&b, b"pw", &fast_init()).unwrap();
    let repo = open(&b);
    let first = repo.key_id();

    // The only key, which is also the one in use.
    let e = repo.remove_key(first).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert!(e.to_string().contains("only key"), "{e}");

    let added = repo.add_key(b"second", &new_key("laptop")).unwrap();
    let e = repo.remove_key(first).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert!(e.to_string().contains(&first.short()), "{e}");
    assert!(e.to_string().contains("opened the repository"), "{e}");

    // With the second password, the first key can go.
    let other = open_with(&b, b"second").unwrap();
    other.remove_key(first).unwrap();
    assert_eq!(names(&b, FileType::Key), vec![added.to_hex()]);
    assert!(wrong_password(&b, b"pw"));
    assert!(open_with(&b, b"second").is_ok());

    let e = other.remove_key(first).unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
}

#[test]
fn a_key_is_not_removed_once_the_key_in_use_is_gone() {
    let b = MemBackend::default();
    cairn_repo::init(&b, b"pw", &fast_init()).unwrap();
    let repo = open(&b);
    let second = repo.add_key(b"second", &new_key("b")).unwrap();
    let third = repo.add_key(b"third", &new_key("c")).unwrap();
    // Another client, holding the second password, revokes the one this process uses.
    open_with(&b, b"second")
        .unwrap()
        .remove_key(repo.key_id())
        .unwrap();
    let e = repo.remove_key(third).unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert!(e.to_string().contains("which opened the repository"), "{e}");
    let mut left = names(&b, FileType::Key);
    left.sort();
    let mut expected = vec![second.to_hex(), third.to_hex()];
    expected.sort();
    assert_eq!(left, expected);
}

#[test]
fn changing_the_password_replaces_the_key_in_use() {
    let b = MemBackend::default();
    cairn_repo::init(&b, b"pw", &fast_init()).unwrap();
    let mut repo = open(&b);
    let old = repo.key_id();
    let new = repo.change_password(b"new", &new_key("h")).unwrap();
    assert_eq!(repo.key_id(), new);
    assert_ne!(new, old);
    assert_eq!(names(&b, FileType::Key), vec![new.to_hex()]);
    assert!(wrong_password(&b, b"pw"));
    assert_eq!(open_with(&b, b"new").unwrap().key_id(), new);
}

/// Opens `b` through a store that accepts `writes` creates and removes, then fails every one.
fn crashing(b: &MemBackend, writes: u64) -> Repository {
    let backend = CrashAfterWrites::new(b.clone(), writes);
    Repository::open(Box::new(backend), b"pw", &OpenOptions::default()).unwrap()
}

#[test]
fn a_password_change_cut_short_leaves_a_key_that_opens() {
    let b = MemBackend::default();
    cairn_repo::init(&b, b"pw", &fast_init()).unwrap();
    // The new key file is never written: the old password still opens.
    let e = crashing(&b, 0)
        .change_password(b"new", &new_key("h"))
        .unwrap_err();
    assert!(e.to_string().contains("crashed"), "{e}");
    assert!(open_with(&b, b"pw").is_ok());
    assert!(wrong_password(&b, b"new"));
    // The new key file is written but the old one not removed: both open, and the error says
    // which key is left to remove.
    let mut repo = crashing(&b, 1);
    let old = repo.key_id();
    let e = repo.change_password(b"new", &new_key("h")).unwrap_err();
    assert!(
        e.to_string().contains(&format!("old key {}", old.short())),
        "{e}"
    );
    assert!(open_with(&b, b"pw").is_ok());
    assert!(open_with(&b, b"new").is_ok());
}

/// A store that damages every key file it is given to create.
struct DamagingKeys(MemBackend);

impl Backend for DamagingKeys {
    fn location(&self) -> String {
        self.0.location()
    }
    fn guarantees(&self) -> Guarantees {
        self.0.guarantees()
    }
    fn list(&self, t: FileType) -> cairn_backend::Result<Vec<Entry>> {
        self.0.list(t)
    }
    fn read(&self, t: FileType, name: &str) -> cairn_backend::Result<Vec<u8>> {
        self.0.read(t, name)
    }
    fn read_range(
        &self,
        t: FileType,
        name: &str,
        offset: u64,
        len: u64,
    ) -> cairn_backend::Result<Vec<u8>> {
        self.0.read_range(t, name, offset, len)
    }
    fn create(&self, t: FileType, name: &str, bytes: &[u8]) -> cairn_backend::Result<()> {
        let mut bytes = bytes.to_vec();
        if t == FileType::Key {
            *bytes.last_mut().unwrap() ^= 1;
        }
        self.0.create(t, name, &bytes)
    }
    fn remove(&self, t: FileType, name: &str) -> cairn_backend::Result<()> {
        self.0.remove(t, name)
    }
}

#[test]
fn a_new_key_that_does_not_read_back_is_removed_and_named() {
    let b = MemBackend::default();
    cairn_repo::init(&b, b"pw", &fast_init()).unwrap();
    let before = names(&b, FileType::Key);
    let mut repo = Repository::open(
        Box::new(DamagingKeys(b.clone())),
        b"pw",
        &OpenOptions::default(),
    )
    .unwrap();
    let e = repo.add_key(b"second", &new_key("h")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Corrupt);
    assert!(e.to_string().contains("does not read back"), "{e}");
    assert!(e.to_string().contains("removed again"), "{e}");
    // A password change stops there, before the old key is touched.
    assert!(repo.change_password(b"new", &new_key("h")).is_err());
    assert_eq!(names(&b, FileType::Key), before);
    assert!(open_with(&b, b"pw").is_ok());
}

#[test]
fn keys_are_found_by_unique_prefix_and_damaged_ones_are_listed_apart() {
    let b = MemBackend::default();
    cairn_repo::init(&b, b"pw", &fast_init()).unwrap();
    let repo = open(&b);
    let first = repo.key_id();
    assert_eq!(repo.find_key(&first.short()).unwrap(), first);
    assert_eq!(repo.find_key(&first.short().to_uppercase()).unwrap(), first);
    assert_eq!(
        repo.find_key("xyz").unwrap_err().kind,
        ErrorKind::InvalidInput
    );
    assert_eq!(repo.find_key("").unwrap_err().kind, ErrorKind::InvalidInput);
    // Two names differing after their first digit: "0" or "f" prefixes one of them at least.
    let stray = format!("{}{}", &first.to_hex()[..1], "0".repeat(63));
    let stray = if stray == first.to_hex() {
        format!("{}{}", &first.to_hex()[..1], "1".repeat(63))
    } else {
        stray
    };
    b.put(FileType::Key, &stray, b"not a key file".to_vec());
    assert_eq!(
        repo.find_key(&first.to_hex()[..1]).unwrap_err().kind,
        ErrorKind::InvalidInput
    );
    let files = repo.key_files().unwrap();
    assert_eq!(files.list.len(), 1);
    assert_eq!(files.damaged.len(), 1);
    assert!(files.damaged[0].1.contains("does not match its name"));
    // A damaged key file can be named and removed.
    let damaged = repo.find_key(&stray).unwrap();
    repo.remove_key(damaged).unwrap();
    assert_eq!(names(&b, FileType::Key), vec![first.to_hex()]);
}
