//! Repositories on other machines: where one is (`Remote`, parsed from what the user gave), and
//! what every remote backend shares: the object names of the layout, one tokio runtime that
//! carries their requests, a bound on requests in flight, and the classification of failures into
//! transient (retried by `Retrying`) and permanent.
//!
//! Invariant: every remote backend keeps the trait's contract (create-only and atomic; a short
//! read is an error) on its own service's terms, and states in `Guarantees` only what that
//! service promises (repo-format.md, "Storage assumptions").

mod dal;
mod location;
mod rest;
mod retry;
mod sftp;

pub use location::{Remote, SCHEMES};
pub use retry::{RetryPolicy, Retrying};

use crate::{BackendError, BackendErrorKind, FileType};
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::Semaphore;

/// How a remote backend behaves, as the user set it.
#[derive(Clone, Debug)]
pub struct RemoteOptions {
    /// Requests in flight at once, at most.
    pub connections: usize,
    pub retry: RetryPolicy,
}

impl Default for RemoteOptions {
    fn default() -> RemoteOptions {
        RemoteOptions {
            connections: 5,
            retry: RetryPolicy::default(),
        }
    }
}

/// Where an object lives under the repository's root: the layout of repo-format.md section 2,
/// which every remote backend shares with the local one.
pub(crate) fn object_path(t: FileType, name: &str) -> String {
    match t {
        FileType::Config => "config".to_string(),
        FileType::Pack => format!("data/{}/{name}", name.get(..2).unwrap_or("00")),
        _ => format!("{}/{name}", t.dir()),
    }
}

/// The directories a new repository needs on services that have directories.
pub(crate) fn layout_dirs() -> Vec<String> {
    let mut dirs: Vec<String> = [
        FileType::Key,
        FileType::Index,
        FileType::Snapshot,
        FileType::Lock,
        FileType::Pack,
    ]
    .iter()
    .map(|t| t.dir().to_string())
    .collect();
    dirs.extend((0..=255u8).map(|i| format!("data/{i:02x}")));
    dirs
}

/// The temporary name a create writes before it makes the object visible under its own:
/// beside the final name, with the local backend's prefix, so listings skip it alike.
pub(crate) fn temp_path(t: FileType, name: &str) -> String {
    use rand::RngCore;
    let final_path = object_path(t, name);
    let mut suffix = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut suffix);
    let hex: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    match final_path.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/{}{hex}", crate::TEMP_PREFIX),
        None => format!("{}{hex}", crate::TEMP_PREFIX),
    }
}

/// The runtime that carries every remote request. Backend calls come from the repository's
/// worker threads, which block on it; the runtime's own threads only drive sockets.
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        // Only one crypto provider is built in; installing it twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // OpenDAL's services send through reqwest once it is installed as their transport.
        opendal_http_transport_reqwest::install_default();
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cairn-io")
            .enable_all()
            .build()
            .expect("a tokio runtime needs only threads and an epoll descriptor")
    })
}

/// Runs one request under the connection bound, from a thread outside the runtime.
pub(crate) struct Gate {
    permits: Arc<Semaphore>,
}

impl Gate {
    pub(crate) fn new(connections: usize) -> Gate {
        Gate {
            permits: Arc::new(Semaphore::new(connections.max(1))),
        }
    }

    pub(crate) fn run<T>(&self, fut: impl Future<Output = T>) -> T {
        runtime().block_on(async {
            let _permit = self.permits.acquire().await;
            fut.await
        })
    }
}

pub(crate) fn error(kind: BackendErrorKind, message: impl Into<String>) -> BackendError {
    BackendError {
        kind,
        message: message.into(),
    }
}

/// The kind of an HTTP status: what a retry can cure, and what it cannot.
pub(crate) fn status_kind(status: u16) -> BackendErrorKind {
    match status {
        404 => BackendErrorKind::NotFound,
        401 | 403 => BackendErrorKind::Denied,
        408 | 425 | 429 | 500..=599 => BackendErrorKind::Transient,
        412 => BackendErrorKind::AlreadyExists,
        _ => BackendErrorKind::Io,
    }
}

/// A request may take this long before it counts as a transient failure: long enough for a
/// whole pack over a slow link, short enough that a dead connection does not hang a backup.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

#[cfg(test)]
mod tests {
    use super::Gate;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    /// `--connections N`: however many threads send at once, at most N requests are in flight,
    /// and N are reached.
    #[test]
    fn the_gate_lets_as_many_requests_through_at_once_as_connections_and_no_more() {
        for connections in [1, 3] {
            let gate = Arc::new(Gate::new(connections));
            let (now, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
            let threads: Vec<_> = (0..8)
                .map(|_| {
                    let (gate, now, peak) = (gate.clone(), now.clone(), peak.clone());
                    std::thread::spawn(move || {
                        gate.run(async {
                            let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                            peak.fetch_max(n, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            now.fetch_sub(1, Ordering::SeqCst);
                        })
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            assert_eq!(peak.load(Ordering::SeqCst), connections);
        }
    }
}
