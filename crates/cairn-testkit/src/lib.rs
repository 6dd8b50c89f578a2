//! Pieces the tests of cairn's crates share, so that each test says what it checks rather than
//! how to fake a store: `MemBackend` (objects in a map), `MemStore` (a `BlobStore` on a map, for
//! the content engines), `FlipBits` and `CrashAfterWrites` (backends that damage reads or stop
//! writing), `ManualHost` (clocks a test sets), `SourceTree` (files to back up),
//! `assert_check_clean`, and for the remote backends `servers` (real servers started on
//! loopback) and `FaultProxy` (a TCP proxy that injects resets, delays and HTTP errors).
//!
//! Invariant: this crate is only ever a dev-dependency (`cargo xtask tidy` holds it), so nothing
//! here can reach a user's binary.

mod backend;
mod host;
mod proxy;
pub mod servers;
mod source;
mod store;
mod traffic;

pub use backend::{
    key, CrashAfterWrites, FlipBits, LaggingListing, MemBackend, Objects, RefuseReads,
};
pub use host::ManualHost;
pub use proxy::{FaultProxy, Faults, Injected};
pub use source::{listing, SourceTree};
pub use store::MemStore;
pub use traffic::Traffic;

use cairn_repo::{InitOptions, OpenOptions, Repository};
use std::sync::Arc;

/// Options for `cairn_repo::init` that cost a test almost nothing: the smallest key derivation,
/// small packs.
pub fn fast_init() -> InitOptions {
    InitOptions {
        pack_size: 1 << 16,
        ..fast_kdf_init()
    }
}

/// The default options but the smallest key derivation: a repository like a user's, opened in
/// microseconds.
pub fn fast_kdf_init() -> InitOptions {
    let mut opts = InitOptions::default();
    opts.kdf.memory_kib = 64;
    opts.kdf.iterations = 1;
    opts.kdf.parallelism = 1;
    opts
}

/// A new repository in local directory `root` (`fast_kdf_init`, password `pw`).
pub fn init_local(root: &std::path::Path) -> cairn_backend::LocalBackend {
    let backend = cairn_backend::LocalBackend::create_layout(root).expect("a repository layout");
    cairn_repo::init(&backend, b"pw", &fast_kdf_init()).expect("init");
    backend
}

/// A new repository in memory with password `pw`, opened as a writer with no cache.
pub fn mem_repository() -> (MemBackend, Repository) {
    let backend = MemBackend::default();
    cairn_repo::init(&backend, b"pw", &fast_init()).expect("init in memory");
    let opts = OpenOptions {
        writer: true,
        host: Arc::new(ManualHost::default()),
        ..OpenOptions::default()
    };
    let repo = Repository::open(Box::new(backend.clone()), b"pw", &opts).expect("open in memory");
    (backend, repo)
}

/// Checks `repo` reading every pack, and fails the test with every problem found.
#[track_caller]
pub fn assert_check_clean(repo: &Repository) {
    let report = cairn_engine::check(
        repo,
        cairn_engine::ReadData::All,
        &cairn_engine::CheckProgress::default(),
    )
    .expect("check runs");
    let problems: Vec<String> = report.errors().map(ToString::to_string).collect();
    assert!(problems.is_empty(), "check found problems: {problems:#?}");
}
