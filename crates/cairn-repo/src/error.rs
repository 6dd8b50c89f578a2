//! The repository's error type: a kind the CLI maps to an exit code, and a one-line message that
//! names the object at fault.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No repository, snapshot, blob or file where one was expected.
    NotFound,
    /// No repository at the location given: nothing there, or no `config`.
    NoRepository,
    AlreadyExists,
    WrongPassword,
    Locked,
    /// Bytes in the repository failed a check: authentication, hash, structure.
    Corrupt,
    /// The repository was written by a format version this program does not know.
    UnsupportedVersion,
    NoSpace,
    Io,
    InvalidInput,
}

#[derive(Debug)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
        }
    }

    pub fn corrupt(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Corrupt, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<cairn_backend::BackendError> for Error {
    fn from(e: cairn_backend::BackendError) -> Error {
        use cairn_backend::BackendErrorKind as B;
        let kind = match e.kind {
            B::NotFound => ErrorKind::NotFound,
            B::AlreadyExists => ErrorKind::AlreadyExists,
            B::NoSpace => ErrorKind::NoSpace,
            // Longer than any such file this format writes: damage or a hostile store.
            B::TooLarge => ErrorKind::Corrupt,
            _ => ErrorKind::Io,
        };
        Error {
            kind,
            message: e.message,
        }
    }
}

impl From<cairn_crypto::CryptoError> for Error {
    fn from(e: cairn_crypto::CryptoError) -> Error {
        use cairn_crypto::CryptoError as C;
        let kind = match e {
            C::WrongPassword => ErrorKind::WrongPassword,
            C::Corrupt(_) => ErrorKind::Corrupt,
            C::Kdf(_) => ErrorKind::InvalidInput,
        };
        Error {
            kind,
            message: e.to_string(),
        }
    }
}

impl From<redb::Error> for Error {
    fn from(e: redb::Error) -> Error {
        Error::new(ErrorKind::Io, format!("index cache: {e}"))
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Error { Error::from(redb::Error::from(e)) }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

pub type Result<T> = std::result::Result<T, Error>;
