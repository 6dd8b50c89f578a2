//! `send` against a real SMTP server (aiosmtpd, from cairn-testkit), reading back the messages
//! it stored. STARTTLS with a trusted certificate needs `SSL_CERT_FILE`, which is process-wide:
//! it is tested in tests/starttls.rs, a test binary of its own.

use super::*;
use base64::Engine;
use cairn_testkit::servers::{smtp, smtps, Smtp as Server};

fn report() -> serde_json::Value {
    serde_json::json!({
        "command": "backup",
        "host": "wéb-1",
        "ok": true,
        "snapshot": "3fa2c1e0",
        "files": 1200,
        "errors": []
    })
}

fn report_mail(to: &[&str]) -> Mail {
    Mail {
        from: "cairn <cairn@web-1.example>".to_string(),
        to: to.iter().map(|s| s.to_string()).collect(),
        subject: "cairn backup on web-1: ok".to_string(),
        text: "Backup of /home finished: 1200 files, no errors.\nSnapshot 3fa2c1e0.".to_string(),
        attachment_name: "report.json".to_string(),
        attachment: serde_json::to_vec_pretty(&report()).unwrap(),
    }
}

fn through(server: &Server, user: Option<&str>, password: Option<&str>, tls: Tls) -> Smtp {
    Smtp {
        server: server.addr.to_string(),
        user: user.map(str::to_string),
        password: password.map(str::to_string),
        tls,
    }
}

/// The value of header `name` in a header block, folded lines joined.
fn header(head: &str, name: &str) -> Option<String> {
    let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
    unfolded.split("\r\n").find_map(|line| {
        let (n, value) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name)
            .then(|| value.trim().to_string())
    })
}

/// A message's head and the parts of its multipart body: (head, body decoded from its
/// transfer encoding).
fn parts(message: &str) -> (String, Vec<(String, Vec<u8>)>) {
    let (head, body) = message.split_once("\r\n\r\n").expect("a head and a body");
    let content_type = header(head, "content-type").expect("a Content-Type");
    let boundary = content_type
        .split("boundary=")
        .nth(1)
        .expect("a multipart boundary")
        .trim_matches('"')
        .to_string();
    let parts = body
        .split(&format!("--{boundary}"))
        .skip(1)
        .filter(|part| !part.starts_with("--"))
        .map(|part| {
            let part = part.strip_prefix("\r\n").unwrap_or(part);
            let (part_head, part_body) = part.split_once("\r\n\r\n").expect("a part's head");
            let part_body = part_body.strip_suffix("\r\n").unwrap_or(part_body);
            let encoding = header(part_head, "content-transfer-encoding").unwrap_or_default();
            let decoded = match encoding.to_ascii_lowercase().as_str() {
                "base64" => {
                    let text: String = part_body.split_whitespace().collect();
                    base64::engine::general_purpose::STANDARD
                        .decode(text)
                        .unwrap()
                }
                "quoted-printable" => {
                    quoted_printable::decode(part_body, quoted_printable::ParseMode::Strict)
                        .unwrap()
                }
                _ => part_body.as_bytes().to_vec(),
            };
            (part_head.to_string(), decoded)
        })
        .collect();
    (head.to_string(), parts)
}

/// Checks that `message` is `mail`: its subject and recipients, its text, its JSON attachment.
fn assert_is_report_mail(message: &str, mail: &Mail) {
    let (head, parts) = parts(message);
    assert_eq!(
        header(&head, "subject").as_deref(),
        Some(mail.subject.as_str())
    );
    let to = header(&head, "to").unwrap();
    for address in &mail.to {
        assert!(to.contains(address.as_str()), "{to}");
    }
    assert_eq!(parts.len(), 2, "{message}");
    let (text_head, text) = &parts[0];
    assert!(
        header(text_head, "content-type")
            .unwrap()
            .starts_with("text/plain"),
        "{text_head}"
    );
    let text = String::from_utf8(text.clone())
        .unwrap()
        .replace("\r\n", "\n");
    assert_eq!(text, mail.text);
    let (attachment_head, attachment) = &parts[1];
    let content_type = header(attachment_head, "content-type").unwrap();
    assert!(
        content_type.starts_with("application/json"),
        "{attachment_head}"
    );
    let disposition = header(attachment_head, "content-disposition").unwrap();
    assert!(
        disposition.starts_with("attachment") && disposition.contains("report.json"),
        "{attachment_head}"
    );
    let json: serde_json::Value = serde_json::from_slice(attachment).unwrap();
    assert_eq!(json, report());
}

#[test]
fn send_delivers_the_text_and_the_json_attachment() {
    let server = smtp();
    let mail = report_mail(&["ops@example.com", "backup@example.com"]);
    send(&through(&server, None, None, Tls::None), &mail).unwrap();
    let messages = server.messages();
    assert_eq!(messages.len(), 1, "{}", server.log_tail());
    assert_is_report_mail(&messages[0], &mail);
}

#[test]
fn send_logs_in_with_user_and_password() {
    let server = smtp();
    let mail = report_mail(&["ops@example.com"]);
    let smtp = through(
        &server,
        Some(&server.user),
        Some(&server.password),
        Tls::None,
    );
    send(&smtp, &mail).unwrap();
    let messages = server.messages();
    assert_eq!(messages.len(), 1, "{}", server.log_tail());
    assert_is_report_mail(&messages[0], &mail);
}

#[test]
fn a_wrong_password_fails_and_the_error_does_not_show_it() {
    let server = smtp();
    let smtp = through(
        &server,
        Some(&server.user),
        Some("wrong-pass-42"),
        Tls::None,
    );
    let err = send(&smtp, &report_mail(&["ops@example.com"])).unwrap_err();
    assert!(err.contains(&server.addr.to_string()), "{err}");
    assert!(!err.contains("wrong-pass-42"), "{err}");
    assert!(!err.contains('\n'), "{err}");
    assert!(server.messages().is_empty());
}

#[test]
fn starttls_checks_the_certificate() {
    // The server's certificate is self-signed and this process does not trust it: the send
    // fails rather than going on unverified (or in the clear).
    let server = smtp();
    let smtp = through(
        &server,
        Some(&server.user),
        Some(&server.password),
        Tls::StartTls,
    );
    let err = send(&smtp, &report_mail(&["ops@example.com"])).unwrap_err();
    assert!(err.contains(&server.addr.to_string()), "{err}");
    assert!(err.contains("certificate"), "{err}");
    assert!(!err.contains(&server.password), "{err}");
    assert!(server.messages().is_empty());
}

#[test]
fn implicit_tls_checks_the_certificate() {
    // As STARTTLS: an untrusted certificate fails the send before a word of SMTP.
    let server = smtps();
    let smtp = through(
        &server,
        Some(&server.user),
        Some(&server.password),
        Tls::Tls,
    );
    let err = send(&smtp, &report_mail(&["ops@example.com"])).unwrap_err();
    assert!(err.contains(&server.addr.to_string()), "{err}");
    assert!(err.contains("certificate"), "{err}");
    assert!(!err.contains(&server.password), "{err}");
    assert!(server.messages().is_empty());
}

#[test]
fn implicit_tls_to_a_plain_server_fails_rather_than_falling_back() {
    // The server greets in plain text; a client asked for TLS from the first byte must not
    // carry on in the clear (or try STARTTLS, which this server offers).
    let server = smtp();
    let smtp = through(
        &server,
        Some(&server.user),
        Some(&server.password),
        Tls::Tls,
    );
    let err = send(&smtp, &report_mail(&["ops@example.com"])).unwrap_err();
    assert!(err.contains(&server.addr.to_string()), "{err}");
    assert!(!err.contains(&server.password), "{err}");
    assert!(server.messages().is_empty());
}

#[test]
fn addresses_that_do_not_parse_are_errors_naming_them() {
    // Nothing listens on port 1; composing fails before any connection.
    let mut smtp = Smtp {
        server: "127.0.0.1:1".to_string(),
        user: None,
        password: None,
        tls: Tls::None,
    };
    let err = send(&smtp, &report_mail(&["ops@example.com", "not an address"])).unwrap_err();
    assert!(err.contains("not an address"), "{err}");
    let mut mail = report_mail(&["ops@example.com"]);
    mail.from = "cairn@@web-1".to_string();
    let err = send(&smtp, &mail).unwrap_err();
    assert!(err.contains("cairn@@web-1"), "{err}");
    smtp.server = "mail.example.com".to_string();
    let err = send(&smtp, &report_mail(&["ops@example.com"])).unwrap_err();
    assert!(
        err.contains("mail.example.com") && err.contains("HOST:PORT"),
        "{err}"
    );
}

#[test]
fn split_server_takes_bracketed_ipv6() {
    assert_eq!(split_server("[::1]:587").unwrap(), ("::1", 587));
    assert_eq!(
        split_server("smtp.example.com:465").unwrap(),
        ("smtp.example.com", 465)
    );
    assert!(split_server(":25").is_err());
    assert!(split_server("host:smtp").is_err());
}
