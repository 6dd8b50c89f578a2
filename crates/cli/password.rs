//! Where the repository password comes from: `--password-file`, `--password-command`,
//! `CAIRN_PASSWORD`, or a prompt on the terminal, in that order.
//!
//! Invariant: the password is never printed, logged or put into an error message, and every
//! buffer holding it is cleared when dropped.

use anyhow::{bail, Context, Result};
use std::io::IsTerminal;
use std::path::PathBuf;
use zeroize::Zeroizing;

pub struct Source {
    pub file: Option<PathBuf>,
    pub command: Option<String>,
}

fn strip_newline(mut v: Zeroizing<Vec<u8>>) -> Zeroizing<Vec<u8>> {
    if v.last() == Some(&b'\n') {
        v.pop();
        if v.last() == Some(&b'\r') {
            v.pop();
        }
    }
    v
}

impl Source {
    /// The password; `confirm` asks twice on a terminal (for `init`).
    pub fn get(&self, confirm: bool) -> Result<Zeroizing<Vec<u8>>> {
        let pw = if let Some(file) = &self.file {
            let bytes = std::fs::read(file)
                .with_context(|| format!("cannot read password file {}", file.display()))?;
            strip_newline(Zeroizing::new(bytes))
        } else if let Some(cmd) = &self.command {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .stderr(std::process::Stdio::inherit())
                .output()
                .with_context(|| "cannot run the password command".to_string())?;
            if !out.status.success() {
                bail!("the password command failed with {}", out.status);
            }
            strip_newline(Zeroizing::new(out.stdout))
        } else if let Some(pw) = std::env::var_os("CAIRN_PASSWORD") {
            // The environment's own copy stays in the process's memory; only ours is cleared.
            Zeroizing::new(std::os::unix::ffi::OsStringExt::into_vec(pw))
        } else if std::io::stdin().is_terminal() {
            let pw = Zeroizing::new(rpassword::prompt_password("repository password: ")?);
            if confirm {
                let again = Zeroizing::new(rpassword::prompt_password("repeat password: ")?);
                if again != pw {
                    bail!("the passwords do not match");
                }
            }
            Zeroizing::new(pw.as_bytes().to_vec())
        } else {
            bail!("no password given: set CAIRN_PASSWORD, --password-file or --password-command");
        };
        if pw.is_empty() {
            bail!("the password is empty");
        }
        Ok(pw)
    }
}
