//! STARTTLS to a server whose certificate is trusted through `SSL_CERT_FILE`. The variable is
//! process-wide and read by every TLS client in the process, so this test is a binary of its
//! own with this one test in it, and sets the variable before anything else runs.

use cairn_report::mail::{send, Mail, Smtp, Tls};
use cairn_testkit::servers::smtp;

#[test]
fn starttls_with_a_trusted_certificate_delivers() {
    let server = smtp();
    // This binary runs one test on one thread: nothing reads the environment concurrently.
    std::env::set_var("SSL_CERT_FILE", &server.cert);
    let smtp = Smtp {
        server: server.addr.to_string(),
        user: Some(server.user.clone()),
        password: Some(server.password.clone()),
        tls: Tls::StartTls,
    };
    let mail = Mail {
        from: "cairn@web-1.example".to_string(),
        to: vec!["ops@example.com".to_string()],
        subject: "cairn check on web-1: ok".to_string(),
        text: "Check found no errors.".to_string(),
        attachment_name: "report.json".to_string(),
        attachment: br#"{"command":"check","ok":true}"#.to_vec(),
    };
    send(&smtp, &mail).unwrap_or_else(|e| panic!("{e}; server log:\n{}", server.log_tail()));
    let messages = server.messages();
    assert_eq!(messages.len(), 1, "{}", server.log_tail());
    assert!(
        messages[0].contains("Subject: cairn check on web-1: ok\r\n"),
        "{}",
        messages[0]
    );
    assert!(
        messages[0].contains("Check found no errors."),
        "{}",
        messages[0]
    );
}
