//! `key list|add|remove|passwd`: the repository's passwords, one key file each, all wrapping the
//! same master keys (repo-format.md, "Key files").
//!
//! Invariant: no password is ever printed; messages name key files by their id. Each command
//! opens the repository with the password given (the *current* key), then works through
//! `cairn_repo`, which keeps a key file that opens the repository at every moment.

use crate::args::{Cli, KeyAddArgs, KeyListArgs, KeyPasswdArgs, KeyRemoveArgs, NewPasswordArgs};
use crate::cmd::init::new_kdf;
use crate::open::{hostname, open, username};
use crate::password::new_password;
use crate::time;
use anyhow::Result;
use cairn_repo::NewKey;
use serde_json::json;
use std::io::Write;

/// A host or user name from a key file (which anyone who can write to the store can forge),
/// fit for a terminal: control characters are shown as `?`.
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

pub(crate) fn list(cli: &Cli, a: &KeyListArgs) -> Result<u8> {
    let repo = open(cli, false)?;
    let files = repo.key_files()?;
    for (id, why) in &files.damaged {
        eprintln!(
            "warning: {why} (`cairn key remove {}` removes it)",
            id.short()
        );
    }
    let current = repo.key_id();
    let mut out = std::io::stdout().lock();
    if a.json {
        let docs: Vec<_> = files
            .list
            .iter()
            .map(|(id, h)| {
                json!({
                    "id": id.to_hex(),
                    "host": String::from_utf8_lossy(&h.host),
                    "user": String::from_utf8_lossy(&h.user),
                    "created": time::rfc3339(h.created),
                    "current": *id == current,
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::Value::Array(docs))?;
        return Ok(0);
    }
    let rows: Vec<_> = files
        .list
        .iter()
        .map(|(id, h)| (*id == current, id.short(), text(&h.host), text(&h.user), h))
        .collect();
    let width = |f: fn(&(bool, String, String, String, _)) -> usize, title: &str| {
        rows.iter().map(f).max().unwrap_or(0).max(title.len())
    };
    let host_w = width(|r| r.2.chars().count(), "host");
    let user_w = width(|r| r.3.chars().count(), "user");
    writeln!(
        out,
        "  {:<8}  {:<host_w$}  {:<user_w$}  created",
        "id", "host", "user"
    )?;
    for (is_current, short, host, user, header) in &rows {
        let mark = if *is_current { '*' } else { ' ' };
        let created = time::show(header.created);
        writeln!(
            out,
            "{mark} {short:<8}  {host:<host_w$}  {user:<user_w$}  {created}"
        )?;
    }
    if !cli.quiet {
        writeln!(
            out,
            "{} keys; * opened the repository this time",
            rows.len()
        )?;
    }
    Ok(0)
}

/// The new key's password and what it records, from the arguments; `host` and `user` are
/// already resolved to their defaults.
fn new_key(
    cli: &Cli,
    a: &NewPasswordArgs,
    host: String,
    user: String,
) -> Result<(zeroize::Zeroizing<Vec<u8>>, NewKey)> {
    // The parameters are checked before the password is asked for.
    let kdf = new_kdf(cli, a.kdf_memory, a.kdf_iterations)?;
    let password = new_password(a.new_password_file.as_deref())?;
    let key = NewKey {
        kdf,
        created: time::now_ns(),
        host: host.into_bytes(),
        user: user.into_bytes(),
    };
    Ok((password, key))
}

pub(crate) fn add(cli: &Cli, a: &KeyAddArgs) -> Result<u8> {
    let repo = open(cli, false)?;
    let host = a.host.clone().unwrap_or_else(hostname);
    let user = a.user.clone().unwrap_or_else(username);
    let (password, key) = new_key(cli, &a.new, host, user)?;
    let id = repo.add_key(&password, &key)?;
    if !cli.quiet {
        println!(
            "added key {} for {}@{}",
            id.short(),
            text(&key.user),
            text(&key.host)
        );
    }
    Ok(0)
}

pub(crate) fn remove(cli: &Cli, a: &KeyRemoveArgs) -> Result<u8> {
    let repo = open(cli, false)?;
    let id = repo.find_key(&a.id)?;
    repo.remove_key(id)?;
    if !cli.quiet {
        println!(
            "removed key {}: its password no longer opens the repository",
            id.short()
        );
    }
    Ok(0)
}

pub(crate) fn passwd(cli: &Cli, a: &KeyPasswdArgs) -> Result<u8> {
    let mut repo = open(cli, false)?;
    let old = repo.key_id();
    // By default the new key is for whom the old one was.
    let files = repo.key_files()?;
    let header = files.list.iter().find(|(id, _)| *id == old).map(|(_, h)| h);
    let recorded = |field: fn(&cairn_format::key::KeyHeader) -> &[u8]| {
        header.map(|h| String::from_utf8_lossy(field(h)).into_owned())
    };
    let host = a
        .host
        .clone()
        .or_else(|| recorded(|h| &h.host))
        .unwrap_or_else(hostname);
    let user = a
        .user
        .clone()
        .or_else(|| recorded(|h| &h.user))
        .unwrap_or_else(username);
    let (password, key) = new_key(cli, &a.new, host, user)?;
    let id = repo.change_password(&password, &key)?;
    if !cli.quiet {
        println!(
            "changed the password: key {} replaces key {}, which is removed",
            id.short(),
            old.short()
        );
    }
    Ok(0)
}
