//! What a `FaultProxy` counts of the traffic it forwards: bytes each way, and the request line
//! of each HTTP/1.x request a client sends (`benches/remote.rs` reports them per step).
//!
//! Invariant: the scanner only reads the bytes it is shown and never changes what is forwarded.
//! It follows a connection's requests by their framing: a body of known `Content-Length` is
//! skipped unread; after a chunked body, or a request that waits for `100 Continue` (whose body
//! may never come), it looks for the next request line at the start of a line. Bodies are
//! encrypted or binary, so a false match there would need a line that reads exactly like
//! `METHOD /target HTTP/1.1`.

/// Bytes each way and the HTTP/1.x requests seen, since the proxy started or was last taken.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Client to server.
    pub sent: u64,
    /// Server to client.
    pub received: u64,
    /// Each request's method and target (`PUT`, `/bucket/data/3f/3fa2...`), in the order the
    /// proxy saw them (connections interleave).
    pub requests: Vec<(String, String)>,
}

/// The longest request head the scanner keeps; a longer one is not HTTP it understands.
const MAX_HEAD: usize = 64 << 10;

/// Follows one connection's client-to-server bytes.
pub(crate) struct Scanner {
    state: State,
    /// The head read so far (`State::Head`), or the partial line carried over (`State::Search`).
    buf: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// At a request's first byte or inside its head.
    Head,
    /// Inside a body with this many bytes left.
    Body(u64),
    /// Framing unknown: each line is looked at until one is a request line.
    Search,
}

impl Scanner {
    pub(crate) fn new() -> Scanner {
        Scanner {
            state: State::Head,
            buf: Vec::new(),
        }
    }

    /// Takes the next bytes of the stream; calls `seen` with each request's method and target.
    pub(crate) fn feed(&mut self, mut bytes: &[u8], seen: &mut dyn FnMut(String, String)) {
        while !bytes.is_empty() {
            match self.state {
                State::Body(left) => {
                    let n = left.min(bytes.len() as u64);
                    bytes = &bytes[n as usize..];
                    self.state = if n == left {
                        State::Head
                    } else {
                        State::Body(left - n)
                    };
                }
                State::Head => {
                    let old = self.buf.len();
                    self.buf.extend_from_slice(bytes);
                    // The end of the head may straddle the previous piece.
                    let from = old.saturating_sub(3);
                    match find(&self.buf[from..], b"\r\n\r\n") {
                        Some(i) => {
                            let end = from + i + 4;
                            let used = end - old;
                            bytes = &bytes[used..];
                            let head = std::mem::take(&mut self.buf);
                            self.state = self.head(&head[..end], seen);
                        }
                        // Not a head this scanner understands: these same bytes are
                        // searched for a request line.
                        None if self.buf.len() > MAX_HEAD => {
                            self.buf.clear();
                            self.state = State::Search;
                        }
                        None => return,
                    }
                }
                State::Search => {
                    let line_start = self.buf.len();
                    // Look line by line; a line is the bytes after a `\n`.
                    match bytes.iter().position(|&b| b == b'\n') {
                        None => {
                            // Only the line's first bytes matter: keep at most a request line.
                            let keep = bytes.len().min((8usize << 10).saturating_sub(line_start));
                            self.buf.extend_from_slice(&bytes[..keep]);
                            return;
                        }
                        Some(i) => {
                            self.buf.extend_from_slice(&bytes[..i + 1]);
                            bytes = &bytes[i + 1..];
                            let line = std::mem::take(&mut self.buf);
                            let text = line.strip_suffix(b"\r\n").unwrap_or(&line);
                            if request_line(text).is_some() {
                                // The line starts a request: read its head again from there.
                                self.state = State::Head;
                                self.buf = line;
                            }
                        }
                    }
                }
            }
        }
    }

    /// A complete head (with its blank line): reports it and says what follows it.
    fn head(&self, head: &[u8], seen: &mut dyn FnMut(String, String)) -> State {
        let text = String::from_utf8_lossy(head);
        let mut lines = text.split("\r\n");
        let Some((method, target)) = request_line(lines.next().unwrap_or("").as_bytes()) else {
            return State::Search;
        };
        seen(method, target);
        let mut length = None;
        let mut framed = true;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            match name.as_str() {
                "content-length" => length = value.parse::<u64>().ok(),
                "transfer-encoding" => framed = false,
                "expect" if value.eq_ignore_ascii_case("100-continue") => framed = false,
                _ => {}
            }
        }
        match (framed, length) {
            (false, _) => State::Search,
            (true, None | Some(0)) => State::Head,
            (true, Some(n)) => State::Body(n),
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `METHOD SP TARGET SP HTTP/1.x` without its line end: the method and the target.
pub(crate) fn request_line(line: &[u8]) -> Option<(String, String)> {
    if line.len() > 8 << 10 {
        return None;
    }
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    let ok = parts.next().is_none()
        && !method.is_empty()
        && method.len() <= 16
        && method.bytes().all(|b| b.is_ascii_uppercase())
        && !target.is_empty()
        && version.starts_with("HTTP/1.");
    ok.then(|| (method.to_string(), target.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(pieces: &[&[u8]]) -> Vec<(String, String)> {
        let mut scanner = Scanner::new();
        let mut out = Vec::new();
        for p in pieces {
            scanner.feed(p, &mut |m, t| out.push((m, t)));
        }
        out
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(m, t)| (m.to_string(), t.to_string()))
            .collect()
    }

    #[test]
    fn requests_with_bodies_of_known_length_are_followed_in_any_pieces() {
        let mut stream =
            b"PUT /b/data/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n".to_vec();
        // A body that holds what would look like a request line were it not skipped.
        stream.extend_from_slice(b"GET / HTTP");
        stream.extend_from_slice(b"HEAD /b/config HTTP/1.1\r\nHost: x\r\n\r\n");
        stream.extend_from_slice(b"GET /b?list-type=2 HTTP/1.1\r\n\r\n");
        let want = pairs(&[
            ("PUT", "/b/data/1"),
            ("HEAD", "/b/config"),
            ("GET", "/b?list-type=2"),
        ]);
        assert_eq!(scan(&[&stream]), want);
        for cut in 1..stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(scan(&[a, b]), want, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(scan(&bytes), want);
    }

    #[test]
    fn after_a_chunked_body_or_an_expect_the_next_request_line_is_found() {
        let stream = b"PUT /b/k HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
            5\r\nhello\r\n0\r\n\r\n\
            PUT /b/e HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 99\r\n\r\n\
            DELETE /b/locks/1 HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
        let want = pairs(&[("PUT", "/b/k"), ("PUT", "/b/e"), ("DELETE", "/b/locks/1")]);
        assert_eq!(scan(&[stream]), want);
        let bytes: Vec<&[u8]> = stream.chunks(3).collect();
        assert_eq!(scan(&bytes), want);
    }

    #[test]
    fn a_stream_that_is_not_http_reports_nothing() {
        assert!(scan(&[b"SSH-2.0-OpenSSH_9.2\r\n", &[0u8; 100_000]]).is_empty());
    }
}
