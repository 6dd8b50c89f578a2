//! TLS: a certificate chain and its private key from PEM files, as a rustls server
//! configuration on the ring provider that offers HTTP/2 and HTTP/1.1.
//!
//! Invariant: the key's bytes are read here and handed to rustls, never logged or put in an
//! error; a key that does not match its certificate is refused at start, not at a handshake.

use crate::{Error, ErrorKind};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::PathBuf;
use std::sync::Arc;

/// The PEM files of `--tls-cert` and `--tls-key`.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn invalid(option: &str, path: &std::path::Path, what: impl std::fmt::Display) -> Error {
    Error {
        kind: ErrorKind::InvalidInput,
        message: format!("{option} {}: {what}", path.display()),
    }
}

pub(crate) fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, Error> {
    let cert_error = |e: &dyn std::fmt::Display| invalid("--tls-cert", &files.cert, e);
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| cert_error(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_error(&e))?;
    if certs.is_empty() {
        return Err(cert_error(&"holds no PEM certificate"));
    }
    // The pem error names what is wrong with the file, never its content.
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| invalid("--tls-key", &files.key, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("--tls-cert", &files.cert, e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            invalid(
                "--tls-key",
                &files.key,
                format!("does not fit the certificate: {e}"),
            )
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
