//! `FaultProxy`: a TCP proxy on loopback that a remote-backend test puts between cairn and a
//! real server, to prove that transient failures are retried and never leave damage. For a
//! connection chosen at random it resets the connection part way (an RST to the client), pauses
//! it, or, when the client speaks HTTP/1.x, answers its first request with `500` or `503` and
//! `Connection: close` without passing it on.
//!
//! It also counts what it forwards (`traffic`): bytes each way and each HTTP/1.x request line
//! (`crate::traffic`). With every count in `Faults` at 0 it only forwards and counts, which is
//! how `benches/remote.rs` measures the requests and bytes of each step.
//!
//! Invariant: the number of each fault is bounded by `Faults` and counted only when it really
//! happened (a reset planned after more bytes than the connection carried is not counted), so a
//! test can both finish and assert that faults took place. Choices come from one seeded generator
//! in the order connections are accepted: connections made one after another replay exactly.
//! The proxy listens on 127.0.0.1 only.

use crate::traffic::{Scanner, Traffic};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Which faults to inject, and how many of each at most.
#[derive(Clone, Debug)]
pub struct Faults {
    pub seed: u64,
    /// Connections reset after a random number of bytes (1 B to 1 MiB, log-uniform, counted over
    /// both directions).
    pub resets: u32,
    /// Connections paused once, after a random number of bytes, for up to `max_delay`.
    pub delays: u32,
    pub max_delay: Duration,
    /// HTTP requests answered `500`/`503` instead of being passed on (the first request of a
    /// connection; connections that do not start with an HTTP/1.x request line pass untouched).
    pub errors: u32,
    /// The probability that a new connection gets a fault while any remain. A client that keeps
    /// one connection alive for a whole run sees faults only on its first connections, so the
    /// default is high.
    pub chance: f64,
    /// Bytes per second the client may send upstream, over all its connections together, as
    /// through one slow uplink; 0 for no limit. Not a fault: it applies to every connection.
    pub upload_rate: u64,
}

impl Default for Faults {
    fn default() -> Faults {
        Faults {
            seed: 0,
            resets: 0,
            delays: 0,
            max_delay: Duration::from_millis(200),
            errors: 0,
            chance: 0.5,
            upload_rate: 0,
        }
    }
}

/// The faults a proxy has injected so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Injected {
    pub resets: u32,
    pub delays: u32,
    pub errors: u32,
}

/// A proxy from `addr()` to an upstream server; stops accepting and cuts its open connections on
/// drop.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

struct Shared {
    upstream: SocketAddr,
    faults: Faults,
    injected: Mutex<Injected>,
    stop: AtomicBool,
    conns: Mutex<Vec<Weak<Conn>>>,
    traffic: Mutex<Traffic>,
    /// When the uplink (`Faults::upload_rate`) is next free.
    uplink: Mutex<Instant>,
}

#[derive(Clone, Copy, Debug)]
enum Plan {
    Clean,
    Reset { after: u64 },
    Delay { after: u64, pause: Duration },
    Error { status: u16 },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Reset,
    Delay,
    Error,
}

struct Conn {
    client: TcpStream,
    upstream: TcpStream,
    /// Bytes forwarded so far, both directions together.
    moved: AtomicU64,
    /// Set by a reset, so the other direction ends without a polite half-close.
    aborted: AtomicBool,
}

impl FaultProxy {
    /// Starts a proxy on 127.0.0.1 (a free port) in front of `upstream`.
    pub fn start(upstream: SocketAddr, faults: Faults) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fault proxy on loopback");
        let addr = listener.local_addr().expect("the proxy's address");
        let shared = Arc::new(Shared {
            upstream,
            faults,
            injected: Mutex::new(Injected::default()),
            stop: AtomicBool::new(false),
            conns: Mutex::new(Vec::new()),
            traffic: Mutex::new(Traffic::default()),
            uplink: Mutex::new(Instant::now()),
        });
        let for_thread = shared.clone();
        let accept = std::thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || accept_loop(listener, for_thread))
            .expect("spawn the proxy's accept thread");
        FaultProxy {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn injected(&self) -> Injected {
        *self.shared.injected.lock().unwrap()
    }

    /// What the proxy has read from either side since it started or since the last
    /// `take_traffic`, and starts counting anew. Bytes a fault swallowed are counted too, as
    /// they were sent.
    pub fn take_traffic(&self) -> Traffic {
        std::mem::take(&mut *self.shared.traffic.lock().unwrap())
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wakes the accept thread, which sees `stop` before serving this connection.
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        for conn in self.shared.conns.lock().unwrap().drain(..) {
            if let Some(conn) = conn.upgrade() {
                let _ = conn.client.shutdown(Shutdown::Both);
                let _ = conn.upstream.shutdown(Shutdown::Both);
            }
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut rng = StdRng::seed_from_u64(shared.faults.seed);
    for client in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        let plan = plan(&mut rng, &shared);
        let shared = shared.clone();
        let _ = std::thread::Builder::new()
            .name("fault-proxy-conn".into())
            .spawn(move || serve(client, plan, shared));
    }
}

/// The fault for the next connection, from the kinds that have any left.
fn plan(rng: &mut StdRng, shared: &Shared) -> Plan {
    let faults = &shared.faults;
    let done = *shared.injected.lock().unwrap();
    let mut kinds = Vec::new();
    if done.resets < faults.resets {
        kinds.push(Kind::Reset);
    }
    if done.delays < faults.delays {
        kinds.push(Kind::Delay);
    }
    if done.errors < faults.errors {
        kinds.push(Kind::Error);
    }
    if kinds.is_empty() || !rng.gen_bool(faults.chance.clamp(0.0, 1.0)) {
        return Plan::Clean;
    }
    // Log-uniform over 1 B..1 MiB: small requests and large uploads both get cut.
    let after = |rng: &mut StdRng| {
        let bits = rng.gen_range(0..20u32);
        rng.gen_range(1u64 << bits..=2u64 << bits)
    };
    match kinds[rng.gen_range(0..kinds.len())] {
        Kind::Reset => Plan::Reset { after: after(rng) },
        Kind::Delay => Plan::Delay {
            after: after(rng),
            pause: faults.max_delay.mul_f64(rng.gen_range(0.0..=1.0)),
        },
        Kind::Error => Plan::Error {
            status: if rng.gen_bool(0.5) { 500 } else { 503 },
        },
    }
}

impl Shared {
    /// Waits until `n` more bytes fit through the uplink: each chunk books the link for as long
    /// as it takes at `upload_rate`, after the chunks booked before it.
    fn pace_upload(&self, n: usize) {
        let rate = self.faults.upload_rate;
        if rate == 0 {
            return;
        }
        let done = {
            let mut free = self.uplink.lock().unwrap();
            let start = (*free).max(Instant::now());
            *free = start + Duration::from_secs_f64(n as f64 / rate as f64);
            *free
        };
        std::thread::sleep(done.saturating_duration_since(Instant::now()));
    }

    /// Takes one fault of `kind` from the budget; false when none is left (another connection
    /// used the last one since this one was planned).
    fn take(&self, kind: Kind) -> bool {
        let mut done = self.injected.lock().unwrap();
        let (count, limit) = match kind {
            Kind::Reset => (&mut done.resets, self.faults.resets),
            Kind::Delay => (&mut done.delays, self.faults.delays),
            Kind::Error => (&mut done.errors, self.faults.errors),
        };
        if *count < limit {
            *count += 1;
            true
        } else {
            false
        }
    }
}

fn serve(client: TcpStream, plan: Plan, shared: Arc<Shared>) {
    let Ok(upstream) = TcpStream::connect(shared.upstream) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let conn = Arc::new(Conn {
        client,
        upstream,
        moved: AtomicU64::new(0),
        aborted: AtomicBool::new(false),
    });
    {
        let mut conns = shared.conns.lock().unwrap();
        conns.retain(|c| c.strong_count() > 0);
        conns.push(Arc::downgrade(&conn));
    }
    // Both directions start at once, so a server that speaks first (FTP, SSH) is heard even on
    // a connection planned for an HTTP error.
    let down = {
        let conn = conn.clone();
        let shared = shared.clone();
        std::thread::spawn(move || pump(&conn, Direction::Down, plan, &shared, &[]))
    };
    let mut early = Vec::new();
    if let Plan::Error { status } = plan {
        match answer_with_error(&conn, status, &shared) {
            Answered::Yes => {
                let _ = down.join();
                return;
            }
            Answered::No(read) => early = read,
        }
    }
    pump(&conn, Direction::Up, plan, &shared, &early);
    let _ = down.join();
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Client to upstream.
    Up,
    /// Upstream to client.
    Down,
}

/// Copies one direction until end of stream, then half-closes the other side, as a transparent
/// proxy would. `early` holds bytes already read from the source.
fn pump(conn: &Conn, dir: Direction, plan: Plan, shared: &Shared, early: &[u8]) {
    let (from, to) = match dir {
        Direction::Up => (&conn.client, &conn.upstream),
        Direction::Down => (&conn.upstream, &conn.client),
    };
    let mut buf = vec![0u8; 64 * 1024];
    let mut scanner = (dir == Direction::Up).then(Scanner::new);
    let mut count = |bytes: &[u8]| {
        let mut traffic = shared.traffic.lock().unwrap();
        let traffic = &mut *traffic;
        match &mut scanner {
            Some(scanner) => {
                traffic.sent += bytes.len() as u64;
                scanner.feed(bytes, &mut |method, target| {
                    traffic.requests.push((method, target))
                });
            }
            None => traffic.received += bytes.len() as u64,
        }
    };
    count(early);
    if dir == Direction::Up {
        shared.pace_upload(early.len());
    }
    let mut ok = early.is_empty() || forward(conn, to, early, plan, shared);
    while ok {
        match (&*from).read(&mut buf) {
            Ok(0) => {
                if !conn.aborted.load(Ordering::SeqCst) {
                    let _ = to.shutdown(Shutdown::Write);
                }
                return;
            }
            Ok(n) => {
                count(&buf[..n]);
                if dir == Direction::Up {
                    shared.pace_upload(n);
                }
                ok = forward(conn, to, &buf[..n], plan, shared)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => ok = false,
        }
    }
    // A failed read or write on one side ends the connection on both, as the peers would see
    // it through a real network failure; a reset has already done so its own way.
    if !conn.aborted.load(Ordering::SeqCst) {
        let _ = conn.client.shutdown(Shutdown::Both);
        let _ = conn.upstream.shutdown(Shutdown::Both);
    }
}

/// Writes `bytes` to `to`, applying the plan's reset or delay if its offset falls inside them;
/// false when the connection is over.
fn forward(conn: &Conn, to: &TcpStream, bytes: &[u8], plan: Plan, shared: &Shared) -> bool {
    let n = bytes.len() as u64;
    let before = conn.moved.fetch_add(n, Ordering::SeqCst);
    let cut = match plan {
        Plan::Reset { after } | Plan::Delay { after, .. }
            if before < after && after <= before + n =>
        {
            // In 1..=bytes.len(), so the cast and the split cannot fail.
            Some((after - before) as usize)
        }
        _ => None,
    };
    let (head, tail) = bytes.split_at(cut.unwrap_or(bytes.len()));
    if (&*to).write_all(head).is_err() {
        return false;
    }
    if cut.is_some() {
        match plan {
            Plan::Reset { .. } if shared.take(Kind::Reset) => {
                reset(conn);
                return false;
            }
            Plan::Delay { pause, .. } if shared.take(Kind::Delay) => std::thread::sleep(pause),
            _ => {}
        }
    }
    (&*to).write_all(tail).is_ok()
}

/// Ends the connection with an RST to the client: `SO_LINGER` 0 makes the last close abort the
/// connection instead of a FIN. Shutting down reading (which sends nothing) and the upstream side
/// wakes both pumps; the close happens when they have both let go.
fn reset(conn: &Conn) {
    conn.aborted.store(true, Ordering::SeqCst);
    let _ = rustix::net::sockopt::set_socket_linger(&conn.client, Some(Duration::ZERO));
    let _ = conn.client.shutdown(Shutdown::Read);
    let _ = conn.upstream.shutdown(Shutdown::Both);
}

enum Answered {
    Yes,
    /// Not an HTTP request, or no error left: the bytes read so far, to pass on.
    No(Vec<u8>),
}

/// Reads the client's first request (head and body) and answers it with `status` itself, then
/// closes. The upstream server sees a connection that sends nothing.
fn answer_with_error(conn: &Conn, status: u16, shared: &Shared) -> Answered {
    let mut reader = Buffered {
        stream: &conn.client,
        buf: Vec::new(),
        pos: 0,
    };
    let Some(line_end) = reader.find(b"\r\n", 8 << 10) else {
        return Answered::No(reader.buf);
    };
    if crate::traffic::request_line(&reader.buf[..line_end]).is_none() {
        return Answered::No(reader.buf);
    }
    let Some(head_end) = reader.find(b"\r\n\r\n", 64 << 10) else {
        return Answered::No(reader.buf);
    };
    if !shared.take(Kind::Error) {
        return Answered::No(reader.buf);
    }
    let head = String::from_utf8_lossy(&reader.buf[..head_end]).into_owned();
    reader.pos = head_end + 4;
    let header = |name: &str| {
        head.split("\r\n").skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    // A client that waits for `100 Continue` sends no body: the final status is its answer.
    let expects_continue = header("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    if !expects_continue {
        if header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
            reader.skip_chunked();
        } else if let Some(len) = header("content-length").and_then(|v| v.parse().ok()) {
            reader.skip(len);
        }
    }
    let reason = if status == 503 {
        "Service Unavailable"
    } else {
        "Internal Server Error"
    };
    let body = format!("fault injected by cairn-testkit's proxy: {status} {reason}\n");
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    conn.aborted.store(true, Ordering::SeqCst);
    let _ = (&conn.client).write_all(response.as_bytes());
    let _ = conn.client.shutdown(Shutdown::Write);
    let _ = conn.upstream.shutdown(Shutdown::Both);
    // Closing with unread bytes would send an RST that can destroy the response before the
    // client reads it, so read what the client still sends, for a bounded time.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    let mut scratch = [0u8; 16 << 10];
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        if left.is_zero() || conn.client.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match (&conn.client).read(&mut scratch) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    Answered::Yes
}

/// Bytes read from a stream, kept for passing on until `pos` says they are consumed.
struct Buffered<'a> {
    stream: &'a TcpStream,
    buf: Vec<u8>,
    pos: usize,
}

impl Buffered<'_> {
    fn more(&mut self) -> bool {
        let mut chunk = [0u8; 16 << 10];
        loop {
            match (&*self.stream).read(&mut chunk) {
                Ok(0) => return false,
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return true;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }

    /// The offset of `needle` in what is buffered, reading up to `limit` bytes to find it.
    fn find(&mut self, needle: &[u8], limit: usize) -> Option<usize> {
        loop {
            if let Some(i) = self.buf.windows(needle.len()).position(|w| w == needle) {
                return Some(i);
            }
            if self.buf.len() >= limit || !self.more() {
                return None;
            }
        }
    }

    fn line(&mut self) -> Option<String> {
        loop {
            let rest = &self.buf[self.pos..];
            if let Some(i) = rest.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&rest[..i]).into_owned();
                self.pos += i + 2;
                return Some(line);
            }
            if rest.len() > 8 << 10 || !self.more() {
                return None;
            }
        }
    }

    fn skip(&mut self, mut n: u64) -> bool {
        loop {
            let have = (self.buf.len() - self.pos).min(n.try_into().unwrap_or(usize::MAX));
            self.pos += have;
            n -= have as u64;
            if n == 0 {
                return true;
            }
            self.buf.clear();
            self.pos = 0;
            if !self.more() {
                return false;
            }
        }
    }

    fn skip_chunked(&mut self) -> bool {
        loop {
            let Some(size_line) = self.line() else {
                return false;
            };
            let hex = size_line.split(';').next().unwrap_or("").trim();
            let Ok(size) = u64::from_str_radix(hex, 16) else {
                return false;
            };
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    match self.line() {
                        Some(l) if l.is_empty() => return true,
                        Some(_) => {}
                        None => return false,
                    }
                }
            }
            if !self.skip(size + 2) {
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A server on loopback that runs `handle` on each connection, on a thread of its own.
    fn server(handle: fn(TcpStream)) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || handle(stream));
            }
        });
        addr
    }

    fn echo(mut stream: TcpStream) {
        let mut copy = stream.try_clone().unwrap();
        let _ = io::copy(&mut stream, &mut copy);
        let _ = copy.shutdown(Shutdown::Write);
    }

    /// Speaks first, as FTP and SSH servers do, then echoes.
    fn banner_then_echo(mut stream: TcpStream) {
        let _ = stream.write_all(b"220 ready\r\n");
        echo(stream);
    }

    /// Answers one request per connection with 200 and the request's body length.
    fn http_ok(stream: TcpStream) {
        let mut reader = Buffered {
            stream: &stream,
            buf: Vec::new(),
            pos: 0,
        };
        let Some(end) = reader.find(b"\r\n\r\n", 1 << 20) else {
            return;
        };
        let head = String::from_utf8_lossy(&reader.buf[..end]).to_ascii_lowercase();
        let len: u64 = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap());
        reader.pos = end + 4;
        // Every byte of the request is read before answering: closing with unread bytes
        // would reset the connection under the answer.
        if head.contains("transfer-encoding: chunked") {
            assert!(reader.skip_chunked());
        } else {
            assert!(reader.skip(len));
        }
        let body = format!("got {len}");
        let _ = (&stream).write_all(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    }

    /// Sends `data` and reads to the end: the bytes echoed, or the error that ended it.
    fn round_trip(addr: SocketAddr, data: &[u8]) -> io::Result<Vec<u8>> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        let writer = {
            let mut stream = stream.try_clone()?;
            let data = data.to_vec();
            std::thread::spawn(move || {
                let _ = stream.write_all(&data);
                let _ = stream.shutdown(Shutdown::Write);
            })
        };
        let mut back = Vec::new();
        let read = stream.read_to_end(&mut back);
        let _ = writer.join();
        read.map(|_| back)
    }

    /// The status line of the answer to one request sent with `body`.
    fn request(addr: SocketAddr, body: &[u8], chunked: bool) -> String {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut req = if chunked {
            b"PUT /data/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec()
        } else {
            format!(
                "PUT /data/x HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes()
        };
        if chunked {
            for piece in body.chunks(1000) {
                req.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                req.extend_from_slice(piece);
                req.extend_from_slice(b"\r\n");
            }
            req.extend_from_slice(b"0\r\n\r\n");
        } else {
            req.extend_from_slice(body);
        }
        stream.write_all(&req).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer.lines().next().unwrap_or("").to_string()
    }

    fn data(len: usize, seed: u64) -> Vec<u8> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..len).map(|_| rng.gen()).collect()
    }

    #[test]
    fn proxy_without_faults_forwards_both_ways_intact() {
        let proxy = FaultProxy::start(server(echo), Faults::default());
        let sent = data(3 << 20, 1);
        assert_eq!(round_trip(proxy.addr(), &sent).unwrap(), sent);
        assert_eq!(proxy.injected(), Injected::default());
    }

    #[test]
    fn proxy_counts_bytes_both_ways_and_each_request_line() {
        let proxy = FaultProxy::start(server(http_ok), Faults::default());
        let body = data(100 << 10, 5);
        assert_eq!(request(proxy.addr(), &body, false), "HTTP/1.1 200 OK");
        assert_eq!(request(proxy.addr(), &body, true), "HTTP/1.1 200 OK");
        let traffic = proxy.take_traffic();
        let put = ("PUT".to_string(), "/data/x".to_string());
        assert_eq!(traffic.requests, vec![put.clone(), put]);
        assert!(traffic.sent > 2 * body.len() as u64, "{traffic:?}");
        // Two answers of `got 102400` and their heads.
        assert!(
            traffic.received > 2 * 10 && traffic.received < 1000,
            "{traffic:?}"
        );
        assert_eq!(proxy.take_traffic(), Traffic::default());
    }

    #[test]
    fn proxy_resets_exactly_the_connections_it_counts() {
        let faults = Faults {
            seed: 7,
            resets: 3,
            chance: 1.0,
            ..Faults::default()
        };
        let proxy = FaultProxy::start(server(echo), faults);
        let sent = data(512 << 10, 2);
        let mut failed = 0;
        let mut n = 0;
        while proxy.injected().resets < 3 {
            n += 1;
            assert!(n < 60, "only {:?} after {n} connections", proxy.injected());
            if round_trip(proxy.addr(), &sent).map_or(true, |back| back != sent) {
                failed += 1;
            }
        }
        // Every reset was seen by its client: none of them ends like a clean close.
        assert_eq!(failed, 3);
        for _ in 0..5 {
            assert_eq!(round_trip(proxy.addr(), &sent).unwrap(), sent);
        }
        assert_eq!(
            proxy.injected(),
            Injected {
                resets: 3,
                ..Injected::default()
            }
        );
    }

    /// The uplink limit holds over several connections together; only a lower bound is
    /// asserted, which a loaded machine cannot break.
    #[test]
    fn proxy_paces_uploads_over_all_connections_together() {
        let faults = Faults {
            upload_rate: 2 << 20,
            ..Faults::default()
        };
        let proxy = FaultProxy::start(server(echo), faults);
        let sent = data(512 << 10, 4);
        let started = Instant::now();
        let echoed: Vec<Vec<u8>> = std::thread::scope(|s| {
            let runs: Vec<_> = (0..2)
                .map(|_| s.spawn(|| round_trip(proxy.addr(), &sent).unwrap()))
                .collect();
            runs.into_iter().map(|r| r.join().unwrap()).collect()
        });
        assert!(echoed.iter().all(|e| *e == sent));
        // 1 MiB up at 2 MiB/s; the echoes coming back are not paced.
        assert!(
            started.elapsed() >= Duration::from_millis(450),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn proxy_delays_without_changing_the_bytes() {
        let faults = Faults {
            seed: 3,
            delays: 2,
            max_delay: Duration::from_millis(300),
            chance: 1.0,
            ..Faults::default()
        };
        let proxy = FaultProxy::start(server(echo), faults);
        let sent = data(256 << 10, 3);
        let mut n = 0;
        while proxy.injected().delays < 2 {
            n += 1;
            assert!(n < 60, "only {:?} after {n} connections", proxy.injected());
            assert_eq!(round_trip(proxy.addr(), &sent).unwrap(), sent);
        }
        assert_eq!(proxy.injected().delays, 2);
        assert_eq!(proxy.injected().resets + proxy.injected().errors, 0);
    }

    #[test]
    fn proxy_answers_http_errors_then_lets_requests_through() {
        let faults = Faults {
            seed: 11,
            errors: 3,
            chance: 1.0,
            ..Faults::default()
        };
        let proxy = FaultProxy::start(server(http_ok), faults);
        let body = data(200 << 10, 4);
        // A body of known length, a chunked one, an empty one: each is read whole before the
        // error, so the client sees the status rather than a broken pipe.
        let first = [
            request(proxy.addr(), &body, false),
            request(proxy.addr(), &body, true),
            request(proxy.addr(), b"", false),
        ];
        for status in &first {
            assert!(
                status == "HTTP/1.1 500 Internal Server Error"
                    || status == "HTTP/1.1 503 Service Unavailable",
                "{status}"
            );
        }
        assert_eq!(proxy.injected().errors, 3);
        assert_eq!(request(proxy.addr(), &body, false), "HTTP/1.1 200 OK");
        assert_eq!(request(proxy.addr(), &body, true), "HTTP/1.1 200 OK");
    }

    #[test]
    fn proxy_passes_a_server_that_speaks_first_untouched_when_planning_http_errors() {
        let faults = Faults {
            seed: 5,
            errors: 5,
            chance: 1.0,
            ..Faults::default()
        };
        let proxy = FaultProxy::start(server(banner_then_echo), faults);
        for _ in 0..3 {
            let mut stream = TcpStream::connect(proxy.addr()).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            let mut banner = [0u8; 11];
            stream.read_exact(&mut banner).unwrap();
            assert_eq!(&banner, b"220 ready\r\n");
            stream.write_all(b"USER me\r\n").unwrap();
            stream.shutdown(Shutdown::Write).unwrap();
            let mut rest = Vec::new();
            stream.read_to_end(&mut rest).unwrap();
            assert_eq!(rest, b"USER me\r\n");
        }
        assert_eq!(proxy.injected(), Injected::default());
    }

    #[test]
    fn proxy_drop_cuts_open_connections() {
        let proxy = FaultProxy::start(server(echo), Faults::default());
        let mut stream = TcpStream::connect(proxy.addr()).unwrap();
        stream.write_all(b"x").unwrap();
        let mut one = [0u8; 1];
        stream.read_exact(&mut one).unwrap();
        let started = Instant::now();
        drop(proxy);
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
