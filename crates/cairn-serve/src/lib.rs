//! `cairn serve`: the repositories under one directory, over restic's REST protocol version 2,
//! so that restic's `rest:` client and cairn's own both store in them.
//!
//! The crate owns the HTTP side (hyper on tokio: HTTP/1.1 and HTTP/2, TLS through rustls),
//! the mapping of request paths to repositories and objects (route.rs), basic authentication
//! (auth.rs) and the server's policies: create-only always, append-only and private
//! repositories on request. Every object is stored and read through
//! `cairn_backend::LocalBackend`, whose creates are atomic, durable and create-only; the server
//! never sees a key or a structure of the repository format.
//!
//! Invariant: no request reaches a file outside the served directory (route.rs), and no
//! request changes an object that exists: a create of a taken name is refused with 403, and
//! with append-only nothing but a lock is removed (handler.rs). The caller (the CLI) never
//! needs an async runtime: `Server::run_until_signal` and `Server::spawn` own theirs.

mod auth;
mod body;
mod failure;
mod handler;
mod route;
mod server;
mod tls;

pub use auth::Htpasswd;
pub use tls::TlsFiles;

use auth::Authenticator;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// The default of `--max-object-size`. A pack is at most `pack_size` plus its largest blob (64
/// MiB) plus a header of at most 2^20 entries (41 MiB) (repo-format.md, sections 11 and 20), so
/// this holds the packs of every `pack_size` up to 128 MiB, restic's largest packs (128 MiB plus
/// a chunk), and an index file at cairn's reading limit (256 MiB).
pub const DEFAULT_MAX_OBJECT_SIZE: u64 = 256 << 20;

/// What `bind` needs to know.
#[derive(Clone, Debug)]
pub struct Options {
    /// The directory whose repositories are served: itself, or any folder below it.
    pub root: PathBuf,
    /// Clients may create objects but delete nothing but locks.
    pub append_only: bool,
    /// Each user reaches only repositories under `/<user>/`; needs `htpasswd`.
    pub private_repos: bool,
    /// Basic authentication against this htpasswd file.
    pub htpasswd: Option<PathBuf>,
    /// Serve HTTPS with this certificate and key.
    pub tls: Option<TlsFiles>,
    /// Uploads longer than this are refused with 413.
    pub max_object_size: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An option, or a file it names, is unusable.
    InvalidInput,
    /// The socket or the runtime failed.
    Io,
}

#[derive(Debug)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

fn invalid(message: String) -> Error {
    Error {
        kind: ErrorKind::InvalidInput,
        message,
    }
}

fn io_error(what: &str, e: std::io::Error) -> Error {
    Error {
        kind: ErrorKind::Io,
        message: format!("{what}: {e}"),
    }
}

/// A bound server, not yet answering: its socket accepts (and queues) connections from here
/// on, so a caller may announce its address before running it.
pub struct Server {
    listener: std::net::TcpListener,
    addr: SocketAddr,
    state: Arc<handler::State>,
    tls: Option<Arc<rustls::ServerConfig>>,
}

/// Checks the options, reads the htpasswd file and the TLS files, and binds `listen`. Warnings
/// about htpasswd lines skipped go to stderr.
pub fn bind(listen: SocketAddr, opts: Options) -> Result<Server, Error> {
    if !opts.root.is_dir() {
        return Err(invalid(format!(
            "--path {}: no such directory (create it first)",
            opts.root.display()
        )));
    }
    if opts.private_repos && opts.htpasswd.is_none() {
        return Err(invalid(
            "--private-repos needs --htpasswd: without users no repository is anyone's".into(),
        ));
    }
    let auth = match &opts.htpasswd {
        None => None,
        Some(path) => {
            let (auth, warnings) = Authenticator::watching(path)?;
            for w in warnings {
                failure::log(format_args!("{w}"));
            }
            Some(auth)
        }
    };
    let tls = opts.tls.as_ref().map(tls::server_config).transpose()?;
    let listener = std::net::TcpListener::bind(listen)
        .map_err(|e| io_error(&format!("cannot listen on {listen}"), e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| io_error("cannot set up the socket", e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| io_error("cannot set up the socket", e))?;
    let state = handler::State {
        root: opts.root,
        append_only: opts.append_only,
        private_repos: opts.private_repos,
        auth,
        limits: body::Limits::new(opts.max_object_size),
    };
    Ok(Server {
        listener,
        addr,
        state: Arc::new(state),
        tls,
    })
}

impl Server {
    /// The address bound: the actual port when `listen` asked for port 0.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR` or `https://ADDR`.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Serves until SIGINT or SIGTERM, then lets requests in flight finish (briefly) and
    /// returns. `ready` runs once both signals are caught, before the first request is
    /// answered: a caller that announces the server there can be stopped cleanly by whoever
    /// read the announcement.
    ///
    /// The process's soft limit on open files is raised to its hard limit first (as Go's
    /// runtime does for rest-server): each connection holds a descriptor, and the usual soft
    /// limit of 1024 is soon reached by clients that merely keep connections open.
    pub fn run_until_signal(self, ready: impl FnOnce()) -> Result<(), Error> {
        raise_open_file_limit();
        let runtime = runtime()?;
        runtime.block_on(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate())
                .map_err(|e| io_error("cannot handle SIGTERM", e))?;
            let mut int =
                signal(SignalKind::interrupt()).map_err(|e| io_error("cannot handle SIGINT", e))?;
            ready();
            let stop = async move {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            };
            server::serve(self.listener, self.state, self.tls, stop)
                .await
                .map_err(|e| io_error("cannot serve", e))
        })
    }

    /// Serves on a thread of its own until the returned handle is stopped or dropped.
    pub fn spawn(self) -> Result<Running, Error> {
        let runtime = runtime()?;
        let (url, addr) = (self.url(), self.addr);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("cairn-serve".into())
            .spawn(move || {
                let stop = async move {
                    let _ = stop_rx.await;
                };
                if let Err(e) =
                    runtime.block_on(server::serve(self.listener, self.state, self.tls, stop))
                {
                    failure::log(format_args!("cannot serve: {e}"));
                }
            })
            .map_err(|e| io_error("cannot start the server's thread", e))?;
        Ok(Running {
            url,
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

fn raise_open_file_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    // `None` is no limit, which Linux does not take for open files: ask for a million.
    let target = limit.maximum.unwrap_or(1 << 20);
    if limit.current.is_some_and(|current| current < target) {
        let raised = Rlimit {
            current: Some(target),
            maximum: limit.maximum,
        };
        // Without it the server still runs, with fewer connections at once.
        let _ = setrlimit(Resource::Nofile, raised);
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("cairn-serve")
        .build()
        .map_err(|e| io_error("cannot start the async runtime", e))
}

/// A server running on its own thread (`Server::spawn`); dropping it stops it.
pub struct Running {
    url: String,
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets requests in flight finish, and waits for the server's thread.
    pub fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop_now();
    }
}
