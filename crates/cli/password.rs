//! Where the repository password comes from: `--password-file`, `--password-command`,
//! `CAIRN_PASSWORD`, or a prompt on the terminal, in that order; and the new password of
//! `key add` and `key passwd`: `--new-password-file` or a prompt on the terminal.
//!
//! Invariant: the password is never printed, logged or put into an error message, and every
//! buffer holding it is cleared when dropped.

use crate::invalid;
use anyhow::{bail, Context, Result};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

pub struct Source {
    pub file: Option<PathBuf>,
    pub command: Option<String>,
    /// The variable that holds the password itself, what messages call it, and what a prompt
    /// asks: the repository's (`CAIRN_PASSWORD`), or `copy`'s target's (`CAIRN_TO_PASSWORD`).
    pub env: &'static str,
    pub what: &'static str,
    pub prompt: &'static str,
    /// The options that name it, less `-file` and `-command`: `--password`, `--to-password`.
    pub flag: &'static str,
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
                .with_context(|| format!("cannot read {} file {}", self.what, file.display()))?;
            strip_newline(Zeroizing::new(bytes))
        } else if let Some(cmd) = &self.command {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .stderr(std::process::Stdio::inherit())
                .output()
                .with_context(|| format!("cannot run the {} command", self.what))?;
            if !out.status.success() {
                bail!("the {} command failed with {}", self.what, out.status);
            }
            strip_newline(Zeroizing::new(out.stdout))
        } else if let Some(pw) = std::env::var_os(self.env) {
            // The environment's own copy stays in the process's memory; only ours is cleared.
            Zeroizing::new(std::os::unix::ffi::OsStringExt::into_vec(pw))
        } else if std::io::stdin().is_terminal() {
            let pw = Zeroizing::new(rpassword::prompt_password(self.prompt)?);
            if confirm {
                let again = Zeroizing::new(rpassword::prompt_password("repeat password: ")?);
                if again != pw {
                    bail!("the passwords do not match");
                }
            }
            Zeroizing::new(pw.as_bytes().to_vec())
        } else {
            bail!(
                "no {} given: set {}, {}-file or {}-command",
                self.what,
                self.env,
                self.flag,
                self.flag
            );
        };
        if pw.is_empty() {
            bail!("the {} is empty", self.what);
        }
        Ok(pw)
    }
}

/// The new password of a key file: `file`'s whole content less one trailing newline, or asked
/// twice on the terminal. Never the repository password's sources (`CAIRN_PASSWORD` and the
/// like), which name the password that opens the repository. Without a file or a terminal it
/// is an invalid invocation (exit 2).
pub fn new_password(file: Option<&Path>) -> Result<Zeroizing<Vec<u8>>> {
    let pw = if let Some(file) = file {
        let bytes = std::fs::read(file)
            .with_context(|| format!("cannot read new password file {}", file.display()))?;
        strip_newline(Zeroizing::new(bytes))
    } else if std::io::stdin().is_terminal() {
        let pw = Zeroizing::new(rpassword::prompt_password("new password: ")?);
        let again = Zeroizing::new(rpassword::prompt_password("repeat new password: ")?);
        if again != pw {
            return Err(invalid("the new passwords do not match"));
        }
        Zeroizing::new(pw.as_bytes().to_vec())
    } else {
        return Err(invalid(
            "no new password given: use --new-password-file FILE, or run on a terminal to be asked",
        ));
    };
    if pw.is_empty() {
        return Err(invalid("the new password is empty"));
    }
    Ok(pw)
}
