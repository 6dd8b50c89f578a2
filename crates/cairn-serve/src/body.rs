//! Bodies: what a response sends (nothing, a few bytes, or an object streamed from storage a
//! piece at a time) and how a request's body is taken in (whole, checked, within its limits).
//!
//! Invariant: memory stays bounded whatever clients do. A response reads the next piece of an
//! object only when the connection asks for it, so a client that stops reading holds one piece
//! and no thread. An upload is taken in only whole: exactly its Content-Length, at most the
//! object limit, without stalling and within a deadline that grows with its length; it first
//! reserves its length from the budget all uploads share, all at once, so uploads waiting for
//! memory never hold part of it.

use crate::failure::{log, Failure};
use bytes::Bytes;
use cairn_backend::{Backend, FileType, LocalBackend};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::StatusCode;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The piece of an object a response reads at a time.
pub(crate) const PIECE: u64 = 1 << 20;
/// An upload that sends nothing for this long is given up.
const STALL: Duration = Duration::from_secs(60);
/// An upload has this long, plus its length at `MIN_RATE`, to arrive whole.
const DEADLINE_BASE: Duration = Duration::from_secs(60);
const MIN_RATE: u64 = 16 << 10;
/// An upload waits at most this long for memory before the server answers 503.
const BUDGET_WAIT: Duration = Duration::from_secs(300);

/// A response body.
pub(crate) enum Body {
    Bytes(Option<Bytes>),
    Object(ObjectStream),
}

impl Body {
    pub(crate) fn empty() -> Body {
        Body::Bytes(None)
    }

    pub(crate) fn bytes(b: impl Into<Bytes>) -> Body {
        Body::Bytes(Some(b.into()))
    }
}

impl HttpBody for Body {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            Body::Bytes(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Object(s) => s.poll_piece(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Bytes(b) => b.is_none(),
            Body::Object(s) => s.first.is_none() && s.pending.is_none() && s.next >= s.end,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Bytes(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Object(s) => {
                let first = s.first.as_ref().map_or(0, |b| b.len() as u64);
                SizeHint::with_exact(first + s.end.saturating_sub(s.next))
            }
        }
    }
}

/// An object's bytes from `next` to `end`, read a piece at a time on the blocking threads.
/// `first` is a piece already read: reading it before the headers go out lets a missing object
/// answer 404 rather than a 200 cut short.
pub(crate) struct ObjectStream {
    pub(crate) backend: Arc<LocalBackend>,
    pub(crate) file_type: FileType,
    pub(crate) name: String,
    pub(crate) first: Option<Bytes>,
    pub(crate) next: u64,
    pub(crate) end: u64,
    pub(crate) pending: Option<JoinHandle<cairn_backend::Result<Vec<u8>>>>,
    /// Who asked for what, for the log line of a failed read.
    pub(crate) label: String,
}

impl ObjectStream {
    fn poll_piece(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        let pending = match &mut self.pending {
            Some(p) => p,
            None if self.next >= self.end => return Poll::Ready(None),
            None => {
                let (backend, t, name) = (self.backend.clone(), self.file_type, self.name.clone());
                let (offset, len) = (self.next, (self.end - self.next).min(PIECE));
                self.pending.insert(tokio::task::spawn_blocking(move || {
                    backend.read_range(t, &name, offset, len)
                }))
            }
        };
        let result = match Pin::new(pending).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(r) => r,
        };
        self.pending = None;
        let message = match result {
            Ok(Ok(piece)) if !piece.is_empty() => {
                self.next += piece.len() as u64;
                return Poll::Ready(Some(Ok(Frame::data(Bytes::from(piece)))));
            }
            Ok(Ok(_)) => "read nothing".to_string(),
            Ok(Err(e)) => e.message,
            Err(e) => e.to_string(),
        };
        // The status line is gone: all that is left is to cut the response short, which tells
        // the client the body is incomplete.
        self.next = self.end;
        log(format_args!(
            "{}: response cut short: {message}",
            self.label
        ));
        Poll::Ready(Some(Err(io::Error::other(message))))
    }
}

/// An upload taken in whole, holding its share of the memory budget until dropped.
pub(crate) struct Upload {
    pub(crate) parts: Vec<Bytes>,
    _reserved: OwnedSemaphorePermit,
}

impl Upload {
    pub(crate) fn slices(&self) -> Vec<&[u8]> {
        self.parts.iter().map(|p| &p[..]).collect()
    }
}

/// What bounds uploads: the largest object, and the memory all uploads may hold together.
pub(crate) struct Limits {
    pub(crate) max_object_size: u64,
    pub(crate) budget: Arc<Semaphore>,
}

impl Limits {
    /// At least 1 GiB of uploads in memory at once, and never less than the largest object, so
    /// that any object the limit allows can be taken in.
    pub(crate) fn new(max_object_size: u64) -> Limits {
        let budget = max_object_size.max(1 << 30);
        Limits {
            max_object_size,
            budget: Arc::new(Semaphore::new(budget as usize)),
        }
    }
}

/// Takes in a request's body, `declared` (its Content-Length) bytes if given.
pub(crate) async fn read_upload(
    mut body: Incoming,
    declared: Option<u64>,
    limits: &Limits,
) -> Result<Upload, Failure> {
    let too_large = || {
        Failure::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "an object may have at most {} bytes (cairn serve --max-object-size)",
                limits.max_object_size
            ),
        )
    };
    // A body without a length (chunked) may be as long as the limit allows.
    let reserve = declared.unwrap_or(limits.max_object_size);
    if reserve > limits.max_object_size {
        return Err(too_large());
    }
    // The limit is at most u32::MAX (the CLI's bound); a larger one from a library caller is
    // clamped here, which only reserves less.
    let permits = u32::try_from(reserve).unwrap_or(u32::MAX);
    let reserved = tokio::time::timeout(
        BUDGET_WAIT,
        limits.budget.clone().acquire_many_owned(permits),
    )
    .await
    .ok()
    .and_then(Result::ok)
    .ok_or_else(|| {
        Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many uploads at once: try again later",
        )
    })?;
    let deadline = Instant::now() + DEADLINE_BASE + Duration::from_secs(reserve / MIN_RATE);
    let mut parts = Vec::new();
    let mut total = 0u64;
    loop {
        let wait_until = deadline.min(Instant::now() + STALL);
        let next = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx));
        let frame = match tokio::time::timeout_at(wait_until, next).await {
            Err(_) => {
                return Err(Failure::new(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                    "upload too slow: {total} bytes arrived, then it stalled or ran out of time"
                ),
                ))
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(Failure::new(
                    StatusCode::BAD_REQUEST,
                    format!("upload broken off after {total} bytes: {e}"),
                ))
            }
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            total += data.len() as u64;
            if total > reserve {
                return Err(match declared {
                    Some(d) => Failure::new(
                        StatusCode::BAD_REQUEST,
                        format!("the body is longer than its Content-Length of {d}"),
                    ),
                    None => too_large(),
                });
            }
            parts.push(data);
        }
    }
    if let Some(d) = declared.filter(|&d| d != total) {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            format!("the body has {total} bytes, its Content-Length says {d}"),
        ));
    }
    Ok(Upload {
        parts,
        _reserved: reserved,
    })
}
