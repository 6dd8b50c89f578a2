//! The report by mail: a short text and the JSON report attached, handed to one SMTP server.
//!
//! Invariant: TLS, when asked for, is required, never opportunistic (a server that does not
//! offer STARTTLS fails the send rather than receiving the password in the clear), and no error
//! names the password.

use crate::{chain, scrub};
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Attachment, Body, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls as LettreTls, TlsParameters};
use lettre::{Message, SmtpTransport, Transport};
use std::time::Duration;

/// How long the whole conversation with the server may take at each step.
const TIMEOUT: Duration = Duration::from_secs(30);

/// How the connection to the server is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tls {
    /// Plain SMTP (a relay on the same host or network).
    None,
    /// STARTTLS, required: a server that does not offer it is an error (port 587, or 25).
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
}

/// The server and the account a mail is sent through.
#[derive(Clone)]
pub struct Smtp {
    /// "HOST:PORT"; an IPv6 host in brackets.
    pub server: String,
    pub user: Option<String>,
    pub password: Option<String>,
    pub tls: Tls,
}

/// One report mail.
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub subject: String,
    pub text: String,
    pub attachment_name: String,
    /// The JSON report, sent as application/json.
    pub attachment: Vec<u8>,
}

/// Sends `mail` through `smtp`; one try, 30 s timeout. Errors name the server and never the
/// password.
pub fn send(smtp: &Smtp, mail: &Mail) -> Result<(), String> {
    let message = compose(mail)?;
    let (host, port) = split_server(&smtp.server)?;
    let server = &smtp.server;
    let mut transport = SmtpTransport::builder_dangerous(host)
        .port(port)
        .timeout(Some(TIMEOUT));
    if smtp.tls != Tls::None {
        // Only one crypto provider is built in; installing it twice is harmless. lettre would
        // fall back to ring anyway; installing it keeps one provider for the process.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // The certificate is checked against the host as written in `server`, with the
        // system's roots (and SSL_CERT_FILE's, through rustls-platform-verifier).
        let parameters = TlsParameters::builder(host.to_string())
            .build_rustls()
            .map_err(|e| format!("cannot set up TLS for mail server {server}: {e}"))?;
        transport = transport.tls(match smtp.tls {
            Tls::StartTls => LettreTls::Required(parameters),
            _ => LettreTls::Wrapper(parameters),
        });
    }
    match (&smtp.user, &smtp.password) {
        (Some(user), Some(password)) => {
            transport = transport.credentials(Credentials::new(user.clone(), password.clone()));
        }
        (None, None) => {}
        (Some(_), None) => return Err(format!("mail server {server}: a user needs a password")),
        (None, Some(_)) => return Err(format!("mail server {server}: a password needs a user")),
    }
    let secrets: Vec<&str> = smtp.password.iter().map(String::as_str).collect();
    transport
        .build()
        .send(&message)
        .map(drop)
        .map_err(|e| scrub(&format!("mail to {server} failed: {}", chain(&e)), &secrets))
}

/// The message: the text, then the report as an attachment.
fn compose(mail: &Mail) -> Result<Message, String> {
    let mut builder = Message::builder()
        .from(mailbox(&mail.from)?)
        .subject(mail.subject.clone())
        // `<random@this host>`: filters count a mail without a Message-ID against it, and
        // not every relay adds one.
        .message_id(None);
    if mail.to.is_empty() {
        return Err("a report mail needs at least one recipient".to_string());
    }
    for to in &mail.to {
        builder = builder.to(mailbox(to)?);
    }
    let json = ContentType::parse("application/json").expect("a valid MIME type");
    builder
        .multipart(
            MultiPart::mixed()
                .singlepart(SinglePart::plain(mail.text.clone()))
                .singlepart(
                    // Base64 whatever the report holds: a one-line JSON report can outgrow
                    // the 1,000 characters a mail line may have (RFC 5321 4.5.3.1.6).
                    Attachment::new(mail.attachment_name.clone()).body(
                        Body::new_with_encoding(
                            mail.attachment.clone(),
                            ContentTransferEncoding::Base64,
                        )
                        .expect("base64 carries any bytes"),
                        json,
                    ),
                ),
        )
        .map_err(|e| format!("cannot compose the report mail: {e}"))
}

fn mailbox(address: &str) -> Result<Mailbox, String> {
    address
        .parse()
        .map_err(|e| format!("mail address {address:?} is not valid: {e}"))
}

/// "HOST:PORT" (or "[V6]:PORT") into its parts.
fn split_server(server: &str) -> Result<(&str, u16), String> {
    let bad = || format!("mail server {server:?} is not of the form HOST:PORT");
    let (host, port) = server.rsplit_once(':').ok_or_else(bad)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = port.parse().map_err(|_| bad())?;
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host, port))
}

#[cfg(test)]
mod tests;
