//! Delivers a run report, the JSON document the CLI builds after a backup, prune or check, to
//! where an operator watches: an HTTP endpoint (`http`), a mailbox (`mail`) and the Prometheus
//! node_exporter's textfile collector (`metrics`).
//!
//! Invariant: this crate knows nothing of repositories; it moves bytes it is handed, and no
//! error it returns holds a secret it was handed (a header value, a URL's or a mail server's
//! password).

pub mod http;
pub mod mail;
pub mod metrics;

/// An error and its sources, on one line: the outer message alone ("error sending request")
/// seldom says what went wrong.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text.replace(['\r', '\n'], " ")
}

/// `message` with every secret replaced by `***`. Errors quote what servers answered and what
/// libraries say, and nothing stops a server from echoing a token or a library from quoting the
/// URL it was given.
/// The longest secrets go first, so one that contains another is hidden whole.
fn scrub<S: AsRef<str>>(message: &str, secrets: &[S]) -> String {
    let mut secrets: Vec<&str> = secrets
        .iter()
        .map(AsRef::as_ref)
        .filter(|s| !s.is_empty())
        .collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets
        .into_iter()
        .fold(message.to_string(), |m, s| m.replace(s, "***"))
}
