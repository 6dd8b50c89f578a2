//! `serve`: the repositories under a directory over restic's REST protocol, until a signal.
//! Open (check the options, read the htpasswd and TLS files, bind), report the address, then
//! serve; the server itself, its policies and its log are cairn-serve's.

use crate::args::{Cli, ServeArgs};
use crate::{failed, invalid};
use anyhow::Result;
use std::io::Write;

pub(crate) fn serve(cli: &Cli, a: &ServeArgs) -> Result<u8> {
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(cert), Some(key)) => Some(cairn_serve::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        }),
        // clap requires each with the other.
        _ => None,
    };
    let opts = cairn_serve::Options {
        root: a.path.clone(),
        append_only: a.append_only,
        private_repos: a.private_repos,
        htpasswd: a.htpasswd.clone(),
        tls,
        max_object_size: a.max_object_size,
    };
    let server = cairn_serve::bind(a.listen, opts).map_err(serve_error)?;
    let line = format!("serving {} at {}", a.path.display(), server.url());
    // Printed even with --quiet: with port 0 this line is the only way to learn the port. A
    // reader that is gone by then, or later, has nobody to tell.
    let announce = || {
        let mut out = std::io::stdout();
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    };
    server.run_until_signal(announce).map_err(serve_error)?;
    if !cli.quiet {
        let _ = writeln!(std::io::stdout(), "stopped");
    }
    Ok(0)
}

fn serve_error(e: cairn_serve::Error) -> anyhow::Error {
    match e.kind {
        cairn_serve::ErrorKind::InvalidInput => invalid(e.message),
        _ => failed(e.message),
    }
}
