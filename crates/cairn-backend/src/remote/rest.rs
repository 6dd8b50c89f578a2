//! restic's REST protocol, version 2 (`rest:`): over HTTP(S) to a rest-server, `rclone serve
//! restic` or `cairn serve`, and over the stdio of `rclone serve restic --stdio` (`rclone:`),
//! which speaks HTTP/2 without TLS on its pipes, as restic's rclone backend expects.
//!
//! Invariant: a create is one POST the server stores atomically, then a HEAD that the stored
//! length is what was sent. Whether a create is exclusive is the server's to say: `cairn serve`
//! says so in a header on `config`; other servers are taken to overwrite, so a HEAD first makes
//! sure the name is free (which two racing clients can both see: not exclusive).

use super::{error, Gate, RemoteOptions, REQUEST_TIMEOUT};
use crate::{Backend, BackendError, BackendErrorKind, Entry, FileType, Guarantees, Result};
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_LENGTH, RANGE};
use hyper::Method;
use std::sync::OnceLock;
use std::time::Duration;

/// The media type that asks for (and marks) version 2 listings, with sizes.
const V2: &str = "application/vnd.x.restic.rest.v2";
/// The header `cairn serve` sets on `config` when its creates are exclusive.
const EXCLUSIVE: &str = "x-cairn-exclusive-create";

enum Transport {
    Http {
        client: reqwest::Client,
        base: String,
        auth: Option<(String, Option<String>)>,
    },
    Stdio {
        sender: SendRequest<Full<Bytes>>,
        /// Kept so rclone dies with the backend.
        _rclone: tokio::process::Child,
    },
}

struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
}

pub(crate) struct Rest {
    transport: Transport,
    gate: Gate,
    location: String,
    exclusive: OnceLock<bool>,
}

fn path_of(t: FileType, name: &str) -> String {
    match t {
        FileType::Config => "config".to_string(),
        _ => format!("{}/{name}", t.dir()),
    }
}

fn transport_error(what: String, e: impl std::fmt::Display) -> BackendError {
    error(BackendErrorKind::Transient, format!("{what}: {e}"))
}

#[derive(serde::Deserialize)]
struct Listed {
    name: String,
    size: u64,
}

impl Rest {
    pub(crate) fn http(
        url: &str,
        user: Option<&str>,
        password: Option<&str>,
        location: String,
        options: &RemoteOptions,
    ) -> Result<Rest> {
        super::runtime();
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(options.connections)
            .build()
            .map_err(|e| error(BackendErrorKind::Io, format!("cannot use {location}: {e}")))?;
        Ok(Rest {
            transport: Transport::Http {
                client,
                base: url.to_string(),
                auth: user.map(|u| (u.to_string(), password.map(str::to_string))),
            },
            gate: Gate::new(options.connections),
            location,
            exclusive: OnceLock::new(),
        })
    }

    /// Starts `rclone serve restic --stdio REMOTE` and speaks HTTP/2 over its pipes.
    pub(crate) fn rclone(remote: &str, location: String, options: &RemoteOptions) -> Result<Rest> {
        let cant = |why: String| {
            error(
                BackendErrorKind::Io,
                format!("cannot connect to {location}: {why}"),
            )
        };
        let gate = Gate::new(options.connections);
        let transport = gate.run(async {
            let mut rclone = tokio::process::Command::new("rclone")
                // `--`: a remote is never read as one of rclone's flags (`--config=…`).
                .args(["serve", "restic", "--stdio", "--quiet", "--", remote])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                // A group of its own: the terminal's Ctrl-C stops cairn alone, and rclone,
                // reading the end of its input, removes an upload cut short rather than die
                // with it and leave the upload under its final name.
                .process_group(0)
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| cant(format!("cannot run rclone: {e}")))?;
            let (Some(stdin), Some(stdout)) = (rclone.stdin.take(), rclone.stdout.take()) else {
                return Err(cant("rclone has no pipes".into()));
            };
            let io = hyper_util::rt::TokioIo::new(tokio::io::join(stdout, stdin));
            let (sender, conn) =
                hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                    .await
                    .map_err(|e| cant(format!("rclone does not answer: {e}")))?;
            tokio::spawn(conn);
            Ok(Transport::Stdio {
                sender,
                _rclone: rclone,
            })
        })?;
        Ok(Rest {
            transport,
            gate,
            location,
            exclusive: OnceLock::new(),
        })
    }

    /// Sends a request and collects its answer, whose body stops once more than `cap` bytes
    /// have arrived: the caller tells such a body by its length.
    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(hyper::header::HeaderName, String)],
        body: Option<Bytes>,
        cap: u64,
        what: &dyn Fn() -> String,
    ) -> Result<Answer> {
        let exchange = async {
            match &self.transport {
                Transport::Http { client, base, auth } => {
                    let mut req = client.request(method, format!("{base}{path}"));
                    for (name, value) in headers {
                        req = req.header(name, value);
                    }
                    if let Some((user, password)) = auth {
                        req = req.basic_auth(user, password.as_ref());
                    }
                    if let Some(body) = body {
                        req = req.body(body);
                    }
                    let mut resp = req.send().await.map_err(|e| transport_error(what(), e))?;
                    let status = resp.status().as_u16();
                    let headers = resp.headers().clone();
                    let mut body = BytesMut::new();
                    while body.len() as u64 <= cap {
                        match resp.chunk().await.map_err(|e| transport_error(what(), e))? {
                            Some(piece) => body.extend_from_slice(&piece),
                            None => break,
                        }
                    }
                    let body = body.freeze();
                    Ok(Answer {
                        status,
                        headers,
                        body,
                    })
                }
                Transport::Stdio { sender, .. } => {
                    let mut req = hyper::Request::builder()
                        .method(method)
                        .uri(format!("http://localhost/{path}"));
                    for (name, value) in headers {
                        req = req.header(name, value);
                    }
                    let req = req
                        .body(Full::new(body.unwrap_or_default()))
                        .map_err(|e| transport_error(what(), e))?;
                    let resp = sender
                        .clone()
                        .send_request(req)
                        .await
                        .map_err(|e| transport_error(what(), e))?;
                    let (parts, mut incoming) = resp.into_parts();
                    let mut body = BytesMut::new();
                    while body.len() as u64 <= cap {
                        let Some(frame) = incoming.frame().await else {
                            break;
                        };
                        let frame = frame.map_err(|e| transport_error(what(), e))?;
                        if let Some(piece) = frame.data_ref() {
                            body.extend_from_slice(piece);
                        }
                    }
                    let body = body.freeze();
                    Ok(Answer {
                        status: parts.status.as_u16(),
                        headers: parts.headers,
                        body,
                    })
                }
            }
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(answer) => answer,
            Err(_) => Err(error(
                BackendErrorKind::Transient,
                format!("{}: no answer in {} s", what(), REQUEST_TIMEOUT.as_secs()),
            )),
        }
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(hyper::header::HeaderName, String)],
        body: Option<Bytes>,
        what: &dyn Fn() -> String,
    ) -> Result<Answer> {
        self.gate
            .run(self.send(method, path, headers, body, u64::MAX, what))
    }

    /// GETs an object, taking at most `max + 1` bytes of its body whatever the server states.
    fn get(&self, t: FileType, name: &str, max: u64) -> Result<Vec<u8>> {
        let what = || format!("cannot read {} {name}", t.noun());
        let answer =
            self.gate
                .run(self.send(Method::GET, &path_of(t, name), &[], None, max, &what))?;
        if answer.status != 200 {
            return Err(Self::refused(&answer, &what));
        }
        if answer.body.len() as u64 > max {
            return Err(crate::longer_than(t, name, max));
        }
        if let Some(expected) = answer
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        {
            if expected != answer.body.len() {
                return Err(error(
                    BackendErrorKind::Transient,
                    format!(
                        "{}: {} of {expected} bytes arrived",
                        what(),
                        answer.body.len()
                    ),
                ));
            }
        }
        Ok(answer.body.to_vec())
    }

    /// An answer other than `ok`, as an error naming what was asked.
    fn refused(answer: &Answer, what: &dyn Fn() -> String) -> BackendError {
        let reason = String::from_utf8_lossy(&answer.body[..answer.body.len().min(200)])
            .trim()
            .replace('\n', " ");
        let kind = super::status_kind(answer.status);
        let mut message = format!("{}: HTTP {}", what(), answer.status);
        if !reason.is_empty() {
            message.push_str(&format!(" ({reason})"));
        }
        error(kind, message)
    }

    fn length(&self, t: FileType, name: &str) -> Result<u64> {
        let what = || match t {
            FileType::Config => format!("cannot look for config at {}", self.location),
            _ => format!("cannot look up {} {name}", t.noun()),
        };
        let answer = self.request(Method::HEAD, &path_of(t, name), &[], None, &what)?;
        if answer.status != 200 {
            return Err(Self::refused(&answer, &what));
        }
        answer
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .ok_or_else(|| error(BackendErrorKind::Io, format!("{}: no length", what())))
    }

    /// Makes a new repository's layout on the server (`POST /?create=true`).
    pub(crate) fn create_layout(&self) -> Result<()> {
        let what = || format!("cannot create a repository at {}", self.location);
        let answer = self.request(Method::POST, "?create=true", &[], None, &what)?;
        if answer.status != 200 {
            return Err(Self::refused(&answer, &what));
        }
        Ok(())
    }
}

impl Backend for Rest {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn remote(&self) -> bool {
        true
    }

    fn guarantees(&self) -> Guarantees {
        let exclusive = *self.exclusive.get_or_init(|| {
            let what = || "cannot look up config".to_string();
            self.request(Method::HEAD, "config", &[], None, &what)
                .is_ok_and(|a| a.headers.get(EXCLUSIVE) == Some(&HeaderValue::from_static("1")))
        });
        Guarantees {
            exclusive_create: exclusive,
            listing_lag: Duration::ZERO,
        }
    }

    fn listing_lag(&self) -> Duration {
        Duration::ZERO
    }

    fn list(&self, t: FileType) -> Result<Vec<Entry>> {
        if t == FileType::Config {
            return match self.length(t, "config") {
                Ok(size) => Ok(vec![Entry {
                    name: "config".into(),
                    size,
                }]),
                Err(e) if e.kind == BackendErrorKind::NotFound => Ok(Vec::new()),
                Err(e) => Err(e),
            };
        }
        let what = || format!("cannot list {}s at {}", t.noun(), self.location);
        let answer = self.request(
            Method::GET,
            &format!("{}/", t.dir()),
            &[(ACCEPT, V2.to_string())],
            None,
            &what,
        )?;
        if answer.status != 200 {
            return Err(Self::refused(&answer, &what));
        }
        let listed: Vec<Listed> = serde_json::from_slice(&answer.body).map_err(|e| {
            error(
                BackendErrorKind::Io,
                format!("{}: not a version 2 listing: {e}", what()),
            )
        })?;
        Ok(listed
            .into_iter()
            .filter(|l| !l.name.contains('.'))
            .map(|l| Entry {
                name: l.name,
                size: l.size,
            })
            .collect())
    }

    fn read(&self, t: FileType, name: &str) -> Result<Vec<u8>> {
        self.get(t, name, u64::MAX)
    }

    /// A HEAD first, so that a stated length over `max` fails before anything is sent; then
    /// a GET cut off past `max`, for a server whose body does not keep to what it stated.
    fn read_at_most(&self, t: FileType, name: &str, max: u64) -> Result<Vec<u8>> {
        crate::check_len(t, name, self.length(t, name)?, max)?;
        self.get(t, name, max)
    }

    fn read_range(&self, t: FileType, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let what = || format!("cannot read {len} bytes at {offset} of {} {name}", t.noun());
        if len == 0 {
            return Ok(Vec::new());
        }
        let range = format!("bytes={offset}-{}", offset + len - 1);
        // A server that ignores the range sends the object from its start: what is needed
        // of it ends at `offset + len`, and nothing past that is collected.
        let answer = self.gate.run(self.send(
            Method::GET,
            &path_of(t, name),
            &[(RANGE, range)],
            None,
            offset + len,
            &what,
        ))?;
        let body = match answer.status {
            206 => answer.body,
            // A server that ignores ranges sends the whole object.
            200 if answer.body.len() as u64 >= offset + len => {
                answer.body.slice(offset as usize..(offset + len) as usize)
            }
            416 => {
                return Err(error(
                    BackendErrorKind::Io,
                    format!("{}: the {} is shorter", what(), t.noun()),
                ))
            }
            _ if answer.status != 200 => return Err(Self::refused(&answer, &what)),
            _ => Bytes::new(),
        };
        if body.len() as u64 != len {
            return Err(error(
                BackendErrorKind::Transient,
                format!("{}: the server sent {} bytes", what(), body.len()),
            ));
        }
        Ok(body.to_vec())
    }

    fn create(&self, t: FileType, name: &str, bytes: &[u8]) -> Result<()> {
        self.create_parts(t, name, &[bytes])
    }

    fn create_parts(&self, t: FileType, name: &str, parts: &[&[u8]]) -> Result<()> {
        let what = || format!("cannot store {} {name}", t.noun());
        // A server that may overwrite (rest-server without --append-only, rclone) is asked
        // first whether the name is free; only an exclusive one refuses it by itself.
        if !self.guarantees().exclusive_create {
            match self.length(t, name) {
                Ok(_) => {
                    return Err(error(
                        BackendErrorKind::AlreadyExists,
                        format!("{} {name} exists already", t.noun()),
                    ))
                }
                Err(e) if e.kind == BackendErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let body = Bytes::from(parts.concat());
        let len = body.len() as u64;
        let answer = self.request(Method::POST, &path_of(t, name), &[], Some(body), &what)?;
        match answer.status {
            200 | 201 => {}
            // rest-server answers 403 for a name that exists; tell that from a refusal.
            403 | 409 if self.length(t, name).is_ok() => {
                return Err(error(
                    BackendErrorKind::AlreadyExists,
                    format!("{} {name} exists already", t.noun()),
                ))
            }
            _ => return Err(Self::refused(&answer, &what)),
        }
        let stored = self.length(t, name)?;
        if stored != len {
            return Err(error(
                BackendErrorKind::Io,
                format!("{}: sent {len} bytes, the server stored {stored}", what()),
            ));
        }
        Ok(())
    }

    fn remove(&self, t: FileType, name: &str) -> Result<()> {
        let what = || format!("cannot remove {} {name}", t.noun());
        let answer = self.request(Method::DELETE, &path_of(t, name), &[], None, &what)?;
        if answer.status != 200 && answer.status != 204 {
            return Err(Self::refused(&answer, &what));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    /// A server that states `stated` bytes for every object on HEAD and sends `sent` bytes of
    /// body on a GET; it counts the body bytes the client took.
    fn lying_server(stated: u64, sent: u64) -> (String, Arc<AtomicU64>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let delivered = Arc::new(AtomicU64::new(0));
        let count = delivered.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let count = count.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut out = conn;
                    loop {
                        let mut request = String::new();
                        if reader.read_line(&mut request).unwrap_or(0) == 0 {
                            return;
                        }
                        let mut line = String::new();
                        while reader.read_line(&mut line).is_ok() && line != "\r\n" {
                            line.clear();
                        }
                        // A GET's body runs to the end of the connection: HTTP/1.1 framing
                        // cannot state one length and deliver another.
                        let head = if request.starts_with("GET") {
                            "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_string()
                        } else {
                            format!("HTTP/1.1 200 OK\r\nContent-Length: {stated}\r\n\r\n")
                        };
                        if out.write_all(head.as_bytes()).is_err() {
                            return;
                        }
                        if request.starts_with("GET") {
                            let piece = [0u8; 65536];
                            let mut left = sent;
                            while left > 0 {
                                let n = left.min(piece.len() as u64) as usize;
                                if out.write_all(&piece[..n]).is_err() {
                                    return;
                                }
                                count.fetch_add(n as u64, Ordering::SeqCst);
                                left -= n as u64;
                            }
                            return;
                        }
                    }
                });
            }
        });
        (url, delivered)
    }

    fn client(url: &str) -> Rest {
        Rest::http(url, None, None, url.to_string(), &RemoteOptions::default()).unwrap()
    }

    // Regression: `read_at_most` checked the length a HEAD stated and then took the whole GET
    // body, so a server stating 100 bytes and sending 256 MiB made the client hold them all.
    #[test]
    fn a_read_at_most_stops_past_its_limit_whatever_the_server_stated() {
        let (url, delivered) = lying_server(100, 256 << 20);
        let e = client(&url)
            .read_at_most(FileType::Key, "k1", 1024)
            .unwrap_err();
        assert_eq!(e.kind, BackendErrorKind::TooLarge, "{}", e.message);
        assert!(
            e.message
                .contains("key file k1 is longer than the 1024 bytes"),
            "{}",
            e.message
        );
        // What socket buffers hold is all the server got out before the client hung up.
        std::thread::sleep(Duration::from_millis(200));
        let sent = delivered.load(Ordering::SeqCst);
        assert!(sent < 64 << 20, "the client took {sent} bytes");
    }

    // An honest server's object within the limit reads whole, and one it states as too long
    // is refused before the GET.
    #[test]
    fn a_read_at_most_takes_an_honest_object_and_refuses_a_stated_long_one() {
        let (url, _) = lying_server(100, 100);
        assert_eq!(
            client(&url).read_at_most(FileType::Key, "k1", 100).unwrap(),
            vec![0u8; 100]
        );
        let (url, delivered) = lying_server(2000, 2000);
        let e = client(&url)
            .read_at_most(FileType::Key, "k1", 1024)
            .unwrap_err();
        assert_eq!(e.kind, BackendErrorKind::TooLarge, "{}", e.message);
        assert_eq!(delivered.load(Ordering::SeqCst), 0);
    }
}
