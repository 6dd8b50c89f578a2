//! Fault injection for tests: a backend that stops the process before its N-th write.
//!
//! A test build of `cairn` wraps its backend in `CrashAfter` when `CAIRN_TEST_CRASH_AFTER` is
//! set (see `test_hooks`), so end-to-end tests can kill a backup or prune deterministically
//! between any two storage writes, as a power cut would. Nothing else uses it.

use crate::{Backend, Entry, FileType, Guarantees, Result};
use std::sync::atomic::{AtomicU64, Ordering};

/// Lets `writes` creates and removes through, then aborts the process at the next one.
pub struct CrashAfter {
    inner: Box<dyn Backend>,
    remaining: AtomicU64,
}

impl CrashAfter {
    pub fn new(inner: Box<dyn Backend>, writes: u64) -> CrashAfter {
        CrashAfter {
            inner,
            remaining: AtomicU64::new(writes),
        }
    }

    fn step(&self) {
        let left = self.remaining.fetch_sub(1, Ordering::SeqCst);
        if left == 0 {
            // Abort rather than exit: no destructor runs, exactly as with kill -9.
            eprintln!("cairn: CAIRN_TEST_CRASH_AFTER reached, aborting");
            std::process::abort();
        }
    }
}

impl Backend for CrashAfter {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn remote(&self) -> bool {
        self.inner.remote()
    }
    fn guarantees(&self) -> Guarantees {
        self.inner.guarantees()
    }
    fn listing_lag(&self) -> std::time::Duration {
        self.inner.listing_lag()
    }
    fn list(&self, t: FileType) -> Result<Vec<Entry>> {
        self.inner.list(t)
    }
    fn read(&self, t: FileType, name: &str) -> Result<Vec<u8>> {
        self.inner.read(t, name)
    }
    fn read_at_most(&self, t: FileType, name: &str, max: u64) -> Result<Vec<u8>> {
        self.inner.read_at_most(t, name, max)
    }
    fn read_range(&self, t: FileType, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.inner.read_range(t, name, offset, len)
    }
    fn create(&self, t: FileType, name: &str, bytes: &[u8]) -> Result<()> {
        self.step();
        self.inner.create(t, name, bytes)
    }
    fn create_parts(&self, t: FileType, name: &str, parts: &[&[u8]]) -> Result<()> {
        self.step();
        self.inner.create_parts(t, name, parts)
    }
    fn remove(&self, t: FileType, name: &str) -> Result<()> {
        self.step();
        self.inner.remove(t, name)
    }
    fn remove_stale_temporaries(&self, age: std::time::Duration) -> Result<(u64, u64)> {
        self.step();
        self.inner.remove_stale_temporaries(age)
    }
}
