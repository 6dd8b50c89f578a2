//! The report's HTTP POST: one JSON body to one URL, retried while the failure may pass (the
//! endpoint is down, restarting or shedding load), given up at once when it will not (a 4xx).
//!
//! Invariant: no error names a header value or the password of the URL (both carry the
//! endpoint's credentials): the URL is shown redacted, header values never, and whatever text
//! the server or the HTTP stack sends back is scrubbed of both before it is shown.

use crate::{chain, scrub};
use reqwest::blocking::{Client, Response};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use std::time::Duration;

/// How long one try may take, from connecting to the end of the answer.
const TRY_TIMEOUT: Duration = Duration::from_secs(30);

/// The wait after the first failed try; it doubles after each one, up to `MAX_WAIT`.
const FIRST_WAIT: Duration = Duration::from_millis(500);
const MAX_WAIT: Duration = Duration::from_secs(8);

/// How much of a failed answer's body an error quotes.
const BODY_QUOTE: usize = 200;

/// POSTs `body` (a JSON document) to `url` with `Content-Type: application/json` and the extra
/// headers (each given as "Name: value"), trying up to `tries` times with growing waits
/// (0.5 s, 1 s, 2 s, 4 s, ... capped at 8 s) on connection errors, timeouts, 408, 429 and 5xx.
/// A 2xx is success; any other status fails at once. Each try has a 30 s timeout.
///
/// Redirects are not followed: a redirected POST turns into a GET on the way, which would count
/// a report nobody received as delivered. Proxies named in the environment (`HTTPS_PROXY`, ...)
/// are used. HTTPS trusts the system's roots, or those of `SSL_CERT_FILE` when it is set
/// (rustls-platform-verifier, as in cairn-backend).
pub fn post(url: &str, headers: &[String], body: &[u8], tries: u32) -> Result<(), String> {
    let shown = redact_url(url);
    let mut secrets: Vec<String> = url_password(url).into_iter().collect();
    let mut header_map = HeaderMap::new();
    for header in headers {
        let (name, value) = parse_header(header)?;
        // A server may echo the token alone ("Bearer" stripped), so each word of the value is
        // kept out of messages too; words of one or two characters are no secret and would
        // blot out the message.
        secrets.extend(
            value
                .split_whitespace()
                .filter(|w| w.len() > 2)
                .map(String::from),
        );
        secrets.push(value.clone());
        // parse_header checked both, so neither conversion fails.
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid_name(&name))?;
        let mut value = HeaderValue::from_str(&value).map_err(|_| invalid_value(name.as_str()))?;
        value.set_sensitive(true);
        header_map.append(name, value);
    }
    if !header_map.contains_key(CONTENT_TYPE) {
        header_map.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    let target =
        reqwest::Url::parse(url).map_err(|e| format!("report url {shown} is not valid: {e}"))?;

    // Only one crypto provider is built in; installing it twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = Client::builder()
        .timeout(TRY_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("cannot make an HTTP client for {shown}: {}", chain(&e)))?;

    let tries = tries.max(1);
    let mut wait = FIRST_WAIT;
    let mut n_try = 0;
    loop {
        n_try += 1;
        let sent = client
            .post(target.clone())
            .headers(header_map.clone())
            .body(body.to_vec())
            .send();
        let failure = match sent {
            Ok(response) if response.status().is_success() => return Ok(()),
            Ok(response) => {
                let retry = is_transient(response.status().as_u16());
                let why = describe_status(response);
                if !retry {
                    return Err(scrub(
                        &format!("report POST to {shown} failed: {why}"),
                        &secrets,
                    ));
                }
                why
            }
            // Connection refused or reset, a TLS handshake that failed, a timeout: the
            // endpoint may be back on the next try.
            Err(e) if e.is_connect() || e.is_timeout() || e.is_request() => chain(&e.without_url()),
            Err(e) => {
                let why = chain(&e.without_url());
                return Err(scrub(
                    &format!("report POST to {shown} failed: {why}"),
                    &secrets,
                ));
            }
        };
        if n_try == tries {
            let message = format!("report POST to {shown} failed after {tries} tries: {failure}");
            return Err(scrub(&message, &secrets));
        }
        std::thread::sleep(wait);
        wait = (wait * 2).min(MAX_WAIT);
    }
}

/// Parses "Name: value" into a pair; an error names the header without its value.
pub fn parse_header(h: &str) -> Result<(String, String), String> {
    // Without a colon there is no telling the name from a pasted token, so nothing is quoted.
    let (name, value) = h.split_once(':').ok_or_else(|| {
        "a header is not of the form \"Name: value\" (it has no colon)".to_string()
    })?;
    let name = name.trim();
    if name.is_empty() {
        return Err("a header has no name before its colon".to_string());
    }
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid_name(name))?;
    let value = value.trim();
    HeaderValue::from_str(value).map_err(|_| invalid_value(name))?;
    Ok((name.to_string(), value.to_string()))
}

fn invalid_name(name: &str) -> String {
    format!("header name {name:?} is not a valid HTTP header name")
}

fn invalid_value(name: &str) -> String {
    format!("header {name} has a value that HTTP cannot carry (a control character?)")
}

/// 408 Request Timeout, 429 Too Many Requests and every 5xx may pass if the report is sent
/// again later; every other status will be answered the same way again.
fn is_transient(status: u16) -> bool {
    status == 408 || status == 429 || (500..600).contains(&status)
}

/// "HTTP 503 Service Unavailable: <the start of the body>", on one line.
fn describe_status(response: Response) -> String {
    let status = response.status();
    let mut why = format!("HTTP {status}");
    let text = response.text().unwrap_or_default();
    let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if !text.is_empty() {
        let quote: String = text.chars().take(BODY_QUOTE).collect();
        let more = if quote.len() < text.len() { " ..." } else { "" };
        why.push_str(&format!(": {quote}{more}"));
    }
    why
}

/// The userinfo of `url` ("user:password" before the host's `@`), found on the text so that a
/// URL that does not parse is redacted too.
fn userinfo(url: &str) -> Option<(usize, &str)> {
    let start = url.find("://")? + 3;
    let rest = &url[start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let at = rest[..authority_end].rfind('@')?;
    Some((start, &rest[..at]))
}

fn url_password(url: &str) -> Option<String> {
    let (_, info) = userinfo(url)?;
    info.split_once(':')
        .map(|(_, password)| password.to_string())
}

/// `url` with the password of its userinfo, if any, replaced by `***`.
pub(crate) fn redact_url(url: &str) -> String {
    match userinfo(url) {
        Some((start, info)) => match info.split_once(':') {
            Some((user, _)) => {
                let after = &url[start + info.len()..];
                format!("{}{user}:***{after}", &url[..start])
            }
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests;
