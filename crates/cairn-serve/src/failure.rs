//! Why a request failed, as the handler answers it and the log records it.
//!
//! Invariant: nothing here ever holds a credential; a failure's message is safe to log and, for
//! a client error, to send.

use hyper::StatusCode;
use std::fmt;

/// A request refused or failed: its status and why, for the client and the log.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
    /// The methods a path allows, for a 405.
    pub(crate) allow: Option<&'static str>,
}

impl Failure {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
            allow: None,
        }
    }

    pub(crate) fn method_not_allowed(allow: &'static str) -> Failure {
        Failure {
            allow: Some(allow),
            ..Failure::new(StatusCode::METHOD_NOT_ALLOWED, format!("use {allow}"))
        }
    }
}

/// One line on stderr. The server's only output once it runs; callers never pass a credential.
pub(crate) fn log(line: fmt::Arguments<'_>) {
    eprintln!("cairn serve: {line}");
}
