//! The listening socket and its connections: accept, TLS handshake, HTTP/1.1 or HTTP/2 (h2c,
//! or ALPN over TLS) through hyper-util's auto builder, and a graceful stop.
//!
//! Invariant: nothing a client does ends the server. A failed accept (out of file
//! descriptors) waits and goes on; a handshake, a malformed request or a dropped connection
//! ends that connection alone, with a log line; a connection that makes no progress while no
//! request of it is being worked on (a client that stops reading, or one that sends nothing)
//! is closed after `IDLE`. A stop closes the socket at once and lets the requests in flight
//! finish for at most `FINISH`.

use crate::failure::log;
use crate::handler::{self, State};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// A connection that moves no byte for this long while none of its requests is being worked
/// on is closed.
const IDLE: Duration = Duration::from_secs(120);
/// A client has this long to send a request's headers (HTTP/1.1; hyper counts an idle
/// keep-alive connection's wait for its next request too) or to finish a TLS handshake. Less
/// than Go's 90 s of idle keep-alive, so restic rarely finds its connection closed under it.
const HEADERS: Duration = Duration::from_secs(60);
/// After a stop, requests in flight have this long to finish.
const FINISH: Duration = Duration::from_secs(10);

/// Serves until `stop` completes, then stops gracefully.
pub(crate) async fn serve(
    listener: std::net::TcpListener,
    state: Arc<State>,
    tls: Option<Arc<rustls::ServerConfig>>,
    stop: impl Future<Output = ()>,
) -> io::Result<()> {
    let listener = TcpListener::from_std(listener)?;
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    let builder = http_builder();
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was accepted:
                    // the next accept may succeed once others have closed.
                    log(format_args!("cannot accept a connection: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        tokio::spawn(connection(
            stream,
            peer,
            state.clone(),
            tls.clone(),
            builder.clone(),
            graceful.watcher(),
        ));
    }
    drop(listener);
    if tokio::time::timeout(FINISH, graceful.shutdown())
        .await
        .is_err()
    {
        log(format_args!(
            "requests still in flight after {} s were broken off",
            FINISH.as_secs()
        ));
    }
    Ok(())
}

fn http_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADERS);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(60)))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    state: Arc<State>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    builder: auto::Builder<TokioExecutor>,
    watcher: Watcher,
) {
    // Requests and answers are small next to a packet; Nagle's delay would only add latency.
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let Some(tls) = tls else {
        let io = Watched::new(stream, activity.clone());
        return drive(io, peer, state, builder, watcher, activity).await;
    };
    match tokio::time::timeout(HEADERS, tls.accept(stream)).await {
        Ok(Ok(stream)) => {
            let io = Watched::new(stream, activity.clone());
            drive(io, peer, state, builder, watcher, activity).await
        }
        Ok(Err(e)) => log(format_args!("{peer}: TLS handshake failed: {e}")),
        Err(_) => log(format_args!(
            "{peer}: TLS handshake not done within {} s",
            HEADERS.as_secs()
        )),
    }
}

async fn drive<S>(
    io: Watched<S>,
    peer: SocketAddr,
    state: Arc<State>,
    builder: auto::Builder<TokioExecutor>,
    watcher: Watcher,
    activity: Arc<Activity>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let busy = activity.clone();
    let service = service_fn(move |req| {
        let (state, guard) = (state.clone(), Busy::new(busy.clone()));
        async move {
            let response = handler::handle(state, req, peer).await;
            drop(guard);
            Ok::<_, Infallible>(response)
        }
    });
    let conn = watcher.watch(
        builder
            .serve_connection(TokioIo::new(io), service)
            .into_owned(),
    );
    tokio::select! {
        done = conn => match done {
            // A keep-alive connection that sent no next request within `HEADERS` is closed
            // by hyper as a timeout: what every client's idle connections come to.
            Err(e) if e.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_timeout) => {}
            Err(e) => log(format_args!("{peer}: connection failed: {}", chain(&*e))),
            Ok(()) => {}
        },
        () = activity.idle_for(IDLE) => log(format_args!(
            "{peer}: closed after {} s without progress",
            IDLE.as_secs()
        )),
    }
}

/// An error and its sources, as one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !line.contains(&text) {
            line = format!("{line}: {text}");
        }
        source = s.source();
    }
    line
}

/// When a connection last moved a byte, and how many of its requests are being worked on.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
    busy: AtomicUsize,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn touch(&self) {
        self.last_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Completes once the connection has been idle for `limit` with no request in flight.
    async fn idle_for(&self, limit: Duration) {
        loop {
            tokio::time::sleep(limit / 4).await;
            // Saturating: a byte may move between reading the clock and reading `last_ms`.
            let quiet = self
                .now_ms()
                .saturating_sub(self.last_ms.load(Ordering::Relaxed));
            if self.busy.load(Ordering::Relaxed) == 0 && quiet >= limit.as_millis() as u64 {
                return;
            }
        }
    }
}

/// A request being worked on, from its headers until its handler has answered.
struct Busy(Arc<Activity>);

impl Busy {
    fn new(a: Arc<Activity>) -> Busy {
        a.busy.fetch_add(1, Ordering::Relaxed);
        Busy(a)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        // The answer's body is still to go: idleness counts from here.
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection's stream that records every byte moved in its `Activity`.
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Watched<S> {
    fn new(inner: S, activity: Arc<Activity>) -> Watched<S> {
        activity.touch();
        Watched { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // tokio's paused clock: two minutes pass in no time.
    #[tokio::test(start_paused = true)]
    async fn a_connection_is_idle_only_without_progress_and_without_a_request_in_flight() {
        let limit = Duration::from_secs(120);
        let activity = Arc::new(Activity::new());
        // A request being worked on keeps a silent connection open however long it takes.
        let busy = Busy::new(activity.clone());
        let waited = tokio::time::timeout(limit * 10, activity.idle_for(limit)).await;
        assert!(waited.is_err(), "closed while a request was in flight");
        // Its answer done, the connection is idle from then on.
        drop(busy);
        let start = Instant::now();
        activity.idle_for(limit).await;
        let idle = start.elapsed();
        assert!(idle >= limit && idle <= limit + limit / 4, "{idle:?}");
        // A byte moved restarts the count.
        activity.touch();
        let watcher = activity.clone();
        let closed = tokio::spawn(async move {
            watcher.idle_for(limit).await;
            Instant::now()
        });
        tokio::time::sleep(limit / 2).await;
        activity.touch();
        let touched = Instant::now();
        let closed_at = closed.await.unwrap();
        assert!(closed_at - touched >= limit, "{:?}", closed_at - touched);
    }
}
