//! Backends for tests: objects in a map, and wrappers that damage what is read or stop writing
//! part way. Each keeps the `Backend` contract it does not set out to break: creates stay
//! create-only and all-or-nothing.

use cairn_backend::{
    Backend, BackendError, BackendErrorKind as ErrorKind, Entry, FileType, Guarantees, Result,
};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// (directory, name) -> bytes.
pub type Objects = BTreeMap<(String, String), Vec<u8>>;

/// The map key of an object.
pub fn key(t: FileType, name: &str) -> (String, String) {
    (t.dir().to_string(), name.to_string())
}

fn error(kind: ErrorKind, message: String) -> BackendError {
    BackendError { kind, message }
}

/// Objects in a map, shared between clones so a test can look behind the repository's back.
#[derive(Clone, Default)]
pub struct MemBackend {
    pub objects: Arc<Mutex<Objects>>,
    /// (directory, name) of every object read, in order.
    pub reads: Arc<Mutex<Vec<(String, String)>>>,
    /// (directory, name) of every object read whole without a bound on its length.
    pub unbounded: Arc<Mutex<Vec<(String, String)>>>,
}

impl MemBackend {
    fn get(&self, t: FileType, name: &str) -> Result<Vec<u8>> {
        self.reads.lock().unwrap().push(key(t, name));
        self.objects
            .lock()
            .unwrap()
            .get(&key(t, name))
            .cloned()
            .ok_or_else(|| error(ErrorKind::NotFound, format!("{name} not found")))
    }

    /// Stores or replaces an object behind the repository's back, as damage or an attacker would.
    pub fn put(&self, t: FileType, name: &str, bytes: Vec<u8>) {
        self.objects.lock().unwrap().insert(key(t, name), bytes);
    }

    /// The names of the objects of one type.
    pub fn names(&self, t: FileType) -> Vec<String> {
        let objects = self.objects.lock().unwrap();
        objects
            .keys()
            .filter(|(dir, _)| dir == t.dir())
            .map(|(_, name)| name.clone())
            .collect()
    }
}

impl Backend for MemBackend {
    fn location(&self) -> String {
        "memory".into()
    }
    fn guarantees(&self) -> Guarantees {
        Guarantees {
            exclusive_create: true,
            listing_lag: std::time::Duration::ZERO,
        }
    }
    fn list(&self, t: FileType) -> Result<Vec<Entry>> {
        let objects = self.objects.lock().unwrap();
        Ok(objects
            .iter()
            .filter(|((dir, _), _)| dir == t.dir())
            .map(|((_, name), v)| Entry {
                name: name.clone(),
                size: v.len() as u64,
            })
            .collect())
    }
    fn read(&self, t: FileType, name: &str) -> Result<Vec<u8>> {
        self.unbounded.lock().unwrap().push(key(t, name));
        self.get(t, name)
    }
    /// Checks the listed size first, as a backend that can should.
    fn read_at_most(&self, t: FileType, name: &str, max: u64) -> Result<Vec<u8>> {
        let len = self
            .objects
            .lock()
            .unwrap()
            .get(&key(t, name))
            .map_or(0, |v| v.len() as u64);
        cairn_backend::check_len(t, name, len, max)?;
        self.get(t, name)
    }
    fn read_range(&self, t: FileType, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let all = self.get(t, name)?;
        let end = offset.saturating_add(len);
        all.get(offset as usize..end as usize)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| {
                error(
                    ErrorKind::Io,
                    format!("{name} has {} bytes, not {end}", all.len()),
                )
            })
    }
    fn create(&self, t: FileType, name: &str, bytes: &[u8]) -> Result<()> {
        let mut objects = self.objects.lock().unwrap();
        if objects.contains_key(&key(t, name)) {
            return Err(error(ErrorKind::AlreadyExists, name.into()));
        }
        objects.insert(key(t, name), bytes.to_vec());
        Ok(())
    }
    fn remove(&self, t: FileType, name: &str) -> Result<()> {
        self.objects
            .lock()
            .unwrap()
            .remove(&key(t, name))
            .map(|_| ())
            .ok_or_else(|| error(ErrorKind::NotFound, format!("{name} not found")))
    }
}

/// Flips one bit of every read of object `name` of type `kind`, at byte `at` of the object (as
/// a disk or a network would), whichever range is read: whatever reads it must notice.
pub struct FlipBits<B> {
    pub inner: B,
    pub kind: FileType,
    pub name: String,
    pub at: u64,
}

impl<B: Backend> FlipBits<B> {
    fn flip(&self, t: FileType, name: &str, offset: u64, mut bytes: Vec<u8>) -> Vec<u8> {
        if t == self.kind && name == self.name {
            if let Some(b) = self
                .at
                .checked_sub(offset)
                .and_then(|i| bytes.get_mut(i as usize))
            {
                *b ^= 0x10;
            }
        }
        bytes
    }
}

impl<B: Backend> Backend for FlipBits<B> {
    fn location(&self) -> String {
        self.inner.location()
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
        Ok(self.flip(t, name, 0, self.inner.read(t, name)?))
    }
    fn read_at_most(&self, t: FileType, name: &str, max: u64) -> Result<Vec<u8>> {
        Ok(self.flip(t, name, 0, self.inner.read_at_most(t, name, max)?))
    }
    fn read_range(&self, t: FileType, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        Ok(self.flip(
            t,
            name,
            offset,
            self.inner.read_range(t, name, offset, len)?,
        ))
    }
    fn create(&self, t: FileType, name: &str, bytes: &[u8]) -> Result<()> {
        self.inner.create(t, name, bytes)
    }
    fn remove(&self, t: FileType, name: &str) -> Result<()> {
        self.inner.remove(t, name)
    }
}

/// Refuses every read of object `name` of type `kind`, as a store denying that one object would.
pub struct RefuseReads<B> {
    pub inner: B,
    pub kind: FileType,
    pub name: String,
}

impl<B: Backend> RefuseReads<B> {
    fn check(&self, t: FileType, name: &str) -> Result<()> {
        if t == self.kind && name == self.name {
            return Err(error(
                ErrorKind::Denied,
                format!("cannot read {} {name}: access denied", t.noun()),
            ));
        }
        Ok(())
    }
}

impl<B: Backend> Backend for RefuseReads<B> {
    fn location(&self) -> String {
        self.inner.location()
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
        self.check(t, name)?;
        self.inner.read(t, name)
    }
    fn read_at_most(&self, t: FileType, name: &str, max: u64) -> Result<Vec<u8>> {
        self.check(t, name)?;
        self.inner.read_at_most(t, name, max)
    }
    fn read_range(&self, t: FileType, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.check(t, name)?;
        self.inner.read_range(t, name, offset, len)
    }
    fn create(&self, t: FileType, name: &str, bytes: &[u8]) -> Result<()> {
        self.inner.create(t, name, bytes)
    }
    fn remove(&self, t: FileType, name: &str) -> Result<()> {
        self.inner.remove(t, name)
    }
}

/// Lets `writes` creates and removes through, then fails every write as a process killed at
/// that moment would leave it: the write in flight and every later one never reach the store,
/// and what was written before stays.
pub struct CrashAfterWrites<B> {
    inner: B,
    remaining: AtomicU64,
}

impl<B: Backend> CrashAfterWrites<B> {
    pub fn new(inner: B, writes: u64) -> Self {
        CrashAfterWrites {
            inner,
            remaining: AtomicU64::new(writes),
        }
    }

    /// Whether the crash point has been reached.
    pub fn crashed(&self) -> bool {
        self.remaining.load(Ordering::SeqCst) == 0
    }

    fn step(&self) -> Result<()> {
        let left = self
            .remaining
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        match left {
            Ok(_) => Ok(()),
            Err(_) => Err(error(ErrorKind::Io, "crashed before this write".into())),
        }
    }
}

impl<B: Backend> Backend for CrashAfterWrites<B> {
    fn location(&self) -> String {
        self.inner.location()
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
        self.step()?;
        self.inner.create(t, name, bytes)
    }
    fn create_parts(&self, t: FileType, name: &str, parts: &[&[u8]]) -> Result<()> {
        self.step()?;
        self.inner.create_parts(t, name, parts)
    }
    fn remove(&self, t: FileType, name: &str) -> Result<()> {
        self.step()?;
        self.inner.remove(t, name)
    }
}

/// A store whose listings lag behind its creates, as an eventually consistent object store's
/// do: an object `fresh` marks as just created stays out of listings until `host`'s boot clock
/// has moved `lag` past that moment, while reads find it at once. Time passes only when the
/// test or the repository (`Host::sleep`) moves `host`'s clocks. Clones share what they saw
/// created.
#[derive(Clone)]
pub struct LaggingListing<B> {
    pub inner: B,
    host: crate::ManualHost,
    lag: std::time::Duration,
    /// (directory, name) -> boot-clock time it was created.
    created: Arc<Mutex<BTreeMap<(String, String), std::time::Duration>>>,
}

impl<B: Backend> LaggingListing<B> {
    pub fn new(inner: B, host: crate::ManualHost, lag: std::time::Duration) -> Self {
        LaggingListing {
            inner,
            host,
            lag,
            created: Arc::default(),
        }
    }

    /// Takes every object of type `t` already stored for one created this moment.
    pub fn fresh(&self, t: FileType) -> Result<usize> {
        let now = cairn_repo::Host::boot_clock(&self.host);
        let names = self.inner.list(t)?;
        let mut created = self.created.lock().unwrap();
        for e in &names {
            created.insert(key(t, &e.name), now);
        }
        Ok(names.len())
    }

    fn listed(&self, t: FileType, name: &str) -> bool {
        let now = cairn_repo::Host::boot_clock(&self.host);
        let created = self.created.lock().unwrap();
        created
            .get(&key(t, name))
            .is_none_or(|at| now >= *at + self.lag)
    }
}

impl<B: Backend> Backend for LaggingListing<B> {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn guarantees(&self) -> Guarantees {
        Guarantees {
            listing_lag: self.lag,
            ..self.inner.guarantees()
        }
    }
    fn listing_lag(&self) -> std::time::Duration {
        self.lag
    }
    fn list(&self, t: FileType) -> Result<Vec<Entry>> {
        let mut entries = self.inner.list(t)?;
        entries.retain(|e| self.listed(t, &e.name));
        Ok(entries)
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
        self.inner.create(t, name, bytes)?;
        let now = cairn_repo::Host::boot_clock(&self.host);
        self.created.lock().unwrap().insert(key(t, name), now);
        Ok(())
    }
    fn remove(&self, t: FileType, name: &str) -> Result<()> {
        self.inner.remove(t, name)
    }
}
