//! `post` against a stand-in for the central API a fleet of hosts posts its reports to: a small
//! HTTP/1.1 server on loopback that answers from a script and records what it was sent.

use super::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One request as the server saw it: the head (lowercased) and the body.
struct Seen {
    head: String,
    body: Vec<u8>,
}

/// Starts the stand-in: each request is answered with the next status of `script` (the last
/// one again once the script runs out) and the body `answer`. Returns the URL prefix
/// (`http://127.0.0.1:PORT`) and the requests seen so far. The server's thread ends with the
/// test binary.
fn central_api(script: &[u16], answer: &str) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (script, answer, record) = (script.to_vec(), answer.to_string(), Arc::clone(&seen));
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line.to_ascii_lowercase());
            }
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            // Recorded before the answer goes out, so a client that has its answer finds its
            // request here.
            record.lock().unwrap().push(Seen { head, body });
            let status = script[n.min(script.len() - 1)];
            let reply = format!(
                "HTTP/1.1 {status} Scripted\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
            stream.write_all(reply.as_bytes()).unwrap();
        }
    });
    (base, seen)
}

const REPORT: &[u8] = br#"{"command":"backup","host":"web-1","ok":true}"#;

#[test]
fn post_retries_503_and_delivers_body_and_headers() {
    let (base, seen) = central_api(&[503, 503, 200], "");
    let headers = vec!["X-Cairn-Token: tok-123".to_string()];
    let start = Instant::now();
    post(&format!("{base}/reports"), &headers, REPORT, 5).unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    for request in seen.iter() {
        assert!(
            request.head.starts_with("post /reports http/1.1"),
            "{}",
            request.head
        );
        assert!(
            request.head.contains("x-cairn-token: tok-123"),
            "{}",
            request.head
        );
        assert!(
            request.head.contains("content-type: application/json"),
            "{}",
            request.head
        );
        assert_eq!(request.body, REPORT);
    }
    // The two waits before the second and third tries: 0.5 s, then 1 s.
    assert!(
        start.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn post_gives_up_at_once_on_400_without_showing_header_values() {
    // The server echoes the token, as some do in their error pages.
    let (base, seen) = central_api(&[400, 200], "token tok-456 is not known here");
    let headers = vec!["Authorization: Bearer tok-456".to_string()];
    let err = post(&format!("{base}/reports"), &headers, REPORT, 5).unwrap_err();
    assert_eq!(seen.lock().unwrap().len(), 1);
    assert!(err.contains("400"), "{err}");
    assert!(err.contains(&base), "{err}");
    assert!(!err.contains("tok-456"), "{err}");
    assert!(!err.contains('\n'), "{err}");
}

#[test]
fn post_stops_after_its_tries() {
    let (base, seen) = central_api(&[429], "");
    let err = post(&format!("{base}/r"), &[], REPORT, 2).unwrap_err();
    assert_eq!(seen.lock().unwrap().len(), 2);
    assert!(
        err.contains("after 2 tries") && err.contains("429"),
        "{err}"
    );
}

#[test]
fn post_never_shows_the_url_password_when_refused() {
    // A port that was free a moment ago: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://fleet:secret@127.0.0.1:{port}/reports");
    let err = post(&url, &[], REPORT, 2).unwrap_err();
    assert!(!err.contains("secret"), "{err}");
    assert!(
        err.contains(&format!("http://fleet:***@127.0.0.1:{port}/reports")),
        "{err}"
    );
    assert!(err.contains("after 2 tries"), "{err}");
}

#[test]
fn post_rejects_a_bad_header_before_sending() {
    let (base, seen) = central_api(&[200], "");
    let headers = vec!["Authorization Bearer tok-789".to_string()];
    let err = post(&format!("{base}/r"), &headers, REPORT, 1).unwrap_err();
    assert!(!err.contains("tok-789"), "{err}");
    assert!(seen.lock().unwrap().is_empty());
}

#[test]
fn parse_header_splits_and_trims() {
    assert_eq!(
        parse_header("X-Token:  a:b c ").unwrap(),
        ("X-Token".to_string(), "a:b c".to_string())
    );
    assert_eq!(
        parse_header("Empty:").unwrap(),
        ("Empty".to_string(), String::new())
    );
}

#[test]
fn parse_header_errors_name_the_header_and_never_its_value() {
    let no_colon = parse_header("Bearer tok-1").unwrap_err();
    assert!(
        no_colon.contains("no colon") && !no_colon.contains("tok-1"),
        "{no_colon}"
    );
    let no_name = parse_header(": tok-2").unwrap_err();
    assert!(!no_name.contains("tok-2"), "{no_name}");
    let bad_name = parse_header("X Token: tok-3").unwrap_err();
    assert!(
        bad_name.contains("X Token") && !bad_name.contains("tok-3"),
        "{bad_name}"
    );
    let bad_value = parse_header("X-Token: tok-4\nInjected: yes").unwrap_err();
    assert!(bad_value.contains("X-Token"), "{bad_value}");
    assert!(
        !bad_value.contains("tok-4") && !bad_value.contains("Injected"),
        "{bad_value}"
    );
}

#[test]
fn redact_url_hides_only_the_password() {
    assert_eq!(
        redact_url("https://user:pa:ss@host:8443/p?q=1"),
        "https://user:***@host:8443/p?q=1"
    );
    assert_eq!(redact_url("https://user@host/p"), "https://user@host/p");
    // An `@` past the authority is not userinfo.
    assert_eq!(redact_url("https://host/a:b@c"), "https://host/a:b@c");
    // Nor is the text of something that is not a URL at all.
    assert_eq!(redact_url("not a url"), "not a url");
    // A password with `@` in it: the last `@` of the authority ends the userinfo.
    assert_eq!(redact_url("http://u:p@ss@h/"), "http://u:***@h/");
}
