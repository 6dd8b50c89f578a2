//! Retries of transient failures (timeouts, resets, 5xx, throttling) with exponential backoff
//! and full jitter, a bounded number of times, each one reported on stderr.
//!
//! Invariant: a retry never turns a create into an overwrite or a lost race into a win. A create
//! retried after a failure whose outcome is unknown may find its own first attempt stored; it
//! counts as created only when the stored bytes are exactly its own.

use crate::{Backend, BackendErrorKind, Entry, FileType, Guarantees, Result};
use rand::Rng;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Tries of one call in all, the first included.
    pub attempts: u32,
    /// The first wait; each later one doubles, up to `max_delay`.
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// Ten tries over about a minute at most: a server restart or a flapping link passes, a
    /// dead one fails the command before a user wonders whether it hangs.
    fn default() -> RetryPolicy {
        RetryPolicy {
            attempts: 10,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(16),
        }
    }
}

impl RetryPolicy {
    /// The wait before try `attempt` (2 for the first retry): uniform in [0, base · 2^(n-2)],
    /// capped, so that many clients failing at once do not return at once.
    fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << (attempt.saturating_sub(2)).min(20));
        let cap = exp.min(self.max_delay);
        cap.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
    }
}

/// `call`, tried again after each transient failure until `policy` gives up.
pub(crate) fn retrying<T>(
    policy: &RetryPolicy,
    what: impl Fn() -> String,
    mut call: impl FnMut() -> Result<T>,
) -> Result<T> {
    let mut attempt = 1;
    loop {
        match call() {
            Err(e) if e.kind == BackendErrorKind::Transient && attempt < policy.attempts => {
                attempt += 1;
                let delay = policy.delay(attempt);
                eprintln!(
                    "retrying {} in {:.1} s (try {attempt} of {}): {e}",
                    what(),
                    delay.as_secs_f64(),
                    policy.attempts
                );
                std::thread::sleep(delay);
            }
            other => return other,
        }
    }
}

pub struct Retrying {
    inner: Box<dyn Backend>,
    policy: RetryPolicy,
}

impl Retrying {
    pub fn new(inner: Box<dyn Backend>, policy: RetryPolicy) -> Retrying {
        Retrying { inner, policy }
    }

    fn retry<T>(&self, what: impl Fn() -> String, call: impl FnMut() -> Result<T>) -> Result<T> {
        retrying(&self.policy, what, call)
    }

    /// A create whose earlier try failed in flight found its name taken: it is this process's
    /// own object when the stored bytes are the bytes it sent.
    fn created_by_us(&self, t: FileType, name: &str, parts: &[&[u8]]) -> bool {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let stored = self.retry(
            || format!("reading back {} {name}", t.noun()),
            || self.inner.read_at_most(t, name, len as u64),
        );
        stored.is_ok_and(|bytes| bytes.len() == len && bytes == parts.concat())
    }
}

impl Backend for Retrying {
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
        self.retry(|| format!("listing {}s", t.noun()), || self.inner.list(t))
    }

    fn read(&self, t: FileType, name: &str) -> Result<Vec<u8>> {
        self.retry(
            || format!("reading {} {name}", t.noun()),
            || self.inner.read(t, name),
        )
    }

    fn read_at_most(&self, t: FileType, name: &str, max: u64) -> Result<Vec<u8>> {
        self.retry(
            || format!("reading {} {name}", t.noun()),
            || self.inner.read_at_most(t, name, max),
        )
    }

    fn read_range(&self, t: FileType, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.retry(
            || format!("reading {len} bytes at {offset} of {} {name}", t.noun()),
            || self.inner.read_range(t, name, offset, len),
        )
    }

    fn create(&self, t: FileType, name: &str, bytes: &[u8]) -> Result<()> {
        self.create_parts(t, name, &[bytes])
    }

    fn create_parts(&self, t: FileType, name: &str, parts: &[&[u8]]) -> Result<()> {
        let mut tries = 0;
        let result = self.retry(
            || format!("storing {} {name}", t.noun()),
            || {
                tries += 1;
                self.inner.create_parts(t, name, parts)
            },
        );
        match result {
            Err(e)
                if e.kind == BackendErrorKind::AlreadyExists
                    && tries > 1
                    && self.created_by_us(t, name, parts) =>
            {
                Ok(())
            }
            other => other,
        }
    }

    fn remove(&self, t: FileType, name: &str) -> Result<()> {
        let mut tries = 0;
        let result = self.retry(
            || format!("removing {} {name}", t.noun()),
            || {
                tries += 1;
                self.inner.remove(t, name)
            },
        );
        match result {
            // An earlier try removed it and only the answer was lost.
            Err(e) if e.kind == BackendErrorKind::NotFound && tries > 1 => Ok(()),
            other => other,
        }
    }

    fn remove_stale_temporaries(&self, age: Duration) -> Result<(u64, u64)> {
        self.retry(
            || "removing stale temporaries".to_string(),
            || self.inner.remove_stale_temporaries(age),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BackendError, LocalBackend};
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Fails its first `failures` lists and creates with `Transient`; a create stores the
    /// object before failing, as a request whose answer was lost does.
    struct Flaky {
        inner: LocalBackend,
        failures: u32,
        seen: AtomicU32,
    }

    impl Flaky {
        fn fail(&self) -> Result<()> {
            if self.seen.fetch_add(1, Ordering::SeqCst) < self.failures {
                return Err(BackendError {
                    kind: BackendErrorKind::Transient,
                    message: "HTTP 503".into(),
                });
            }
            Ok(())
        }
    }

    impl Backend for Flaky {
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
            self.fail()?;
            self.inner.list(t)
        }
        fn read(&self, t: FileType, name: &str) -> Result<Vec<u8>> {
            self.inner.read(t, name)
        }
        fn read_range(&self, t: FileType, name: &str, o: u64, l: u64) -> Result<Vec<u8>> {
            self.inner.read_range(t, name, o, l)
        }
        fn create(&self, t: FileType, name: &str, bytes: &[u8]) -> Result<()> {
            let stored = self.inner.create(t, name, bytes);
            self.fail()?;
            stored
        }
        fn remove(&self, t: FileType, name: &str) -> Result<()> {
            self.inner.remove(t, name)
        }
    }

    fn fast() -> RetryPolicy {
        RetryPolicy {
            attempts: 4,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        }
    }

    fn flaky(dir: &std::path::Path, failures: u32) -> Retrying {
        let inner = LocalBackend::create_layout(&dir.join("r")).unwrap();
        Retrying::new(
            Box::new(Flaky {
                inner,
                failures,
                seen: AtomicU32::new(0),
            }),
            fast(),
        )
    }

    #[test]
    fn transient_failures_are_retried_until_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        assert!(flaky(dir.path(), 3).list(FileType::Index).is_ok());
        let e = flaky(dir.path().join("2").as_path(), 4)
            .list(FileType::Index)
            .unwrap_err();
        assert_eq!(e.kind, BackendErrorKind::Transient);
    }

    #[test]
    fn a_create_whose_answer_was_lost_is_its_own_only_with_its_own_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let b = flaky(dir.path(), 1);
        b.create(FileType::Snapshot, "aa", b"mine").unwrap();
        assert_eq!(b.read(FileType::Snapshot, "aa").unwrap(), b"mine");

        // Someone else's object under the name: the retry must not claim it.
        let dir = tempfile::tempdir().unwrap();
        let b = flaky(dir.path(), 1);
        LocalBackend::open(&dir.path().join("r"))
            .create(FileType::Lock, "v", b"theirs")
            .unwrap();
        let e = b.create(FileType::Lock, "v", b"mine").unwrap_err();
        assert_eq!(e.kind, BackendErrorKind::AlreadyExists);
    }

    #[test]
    fn delays_grow_and_stay_under_the_cap() {
        let p = RetryPolicy::default();
        assert!(p.delay(2) <= p.base_delay);
        assert!(p.delay(30) <= p.max_delay);
        assert!(p.delay(30) >= p.max_delay / 2);
    }
}
