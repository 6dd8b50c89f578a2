//! SFTP over the user's own `ssh`, as restic does: `ssh [-p PORT] [-l USER] -s -- HOST sftp`, or the
//! command in `CAIRN_SFTP_COMMAND`, so `~/.ssh/config`, the agent and known hosts all apply.
//!
//! Invariant: an object appears under its final name only complete and synced. It is written
//! under a temporary name, its size checked, and hard-linked into place (OpenSSH's
//! `hardlink@openssh.com`; plain SFTP rename where that is missing, which OpenSSH also refuses
//! over an existing name), so a create is exclusive and never replaces an object.

use super::{error, object_path, temp_path, Gate, RemoteOptions, REQUEST_TIMEOUT};
use crate::{Backend, BackendError, BackendErrorKind, Entry, FileType, Guarantees, Result};
use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt, TryStreamExt};
use openssh_sftp_client::error::{Error as SftpError, SftpErrorKind};
use openssh_sftp_client::{Sftp as Session, SftpOptions};
use std::io::SeekFrom;
use std::time::Duration;
use tokio::io::AsyncSeekExt;
use tokio::process::{Child, Command};

pub(crate) struct Sftp {
    session: Session,
    /// Kept so the ssh process dies with the backend.
    _ssh: Child,
    root: String,
    gate: Gate,
    location: String,
}

fn sftp_error(e: SftpError, what: impl FnOnce() -> String) -> BackendError {
    let kind = match &e {
        SftpError::SftpError(SftpErrorKind::NoSuchFile, _) => BackendErrorKind::NotFound,
        SftpError::SftpError(SftpErrorKind::PermDenied, _) => BackendErrorKind::Denied,
        SftpError::SftpError(..) => BackendErrorKind::Io,
        // The connection broke: the next try makes a new one only in a new process, but a
        // request that timed out inside a live session can pass.
        _ => BackendErrorKind::Transient,
    };
    error(kind, format!("{}: {e}", what()))
}

/// The ssh command line: `CAIRN_SFTP_COMMAND` split on whitespace, else ssh to the host.
pub(crate) fn ssh_command(remote: &super::Remote) -> Vec<String> {
    let super::Remote::Sftp {
        user,
        host,
        port,
        command,
        ..
    } = remote
    else {
        unreachable!("an sftp location")
    };
    if let Some(cmd) = command {
        return cmd.split_whitespace().map(str::to_string).collect();
    }
    let mut args = vec!["ssh".to_string()];
    if let Some(port) = port {
        args.extend(["-p".to_string(), port.to_string()]);
    }
    if let Some(user) = user {
        args.extend(["-l".to_string(), user.clone()]);
    }
    // `--` ends the options, so that no host is ever read as one.
    args.extend(["-s", "--", host, "sftp"].map(str::to_string));
    args
}

impl Sftp {
    pub(crate) fn connect(
        args: Vec<String>,
        path: &str,
        location: String,
        options: &RemoteOptions,
    ) -> Result<Sftp> {
        if args.is_empty() {
            return Err(error(
                BackendErrorKind::InvalidLocation,
                "CAIRN_SFTP_COMMAND is empty",
            ));
        }
        let cant = |why: String| {
            error(
                BackendErrorKind::Io,
                format!("cannot connect to {location}: {why}"),
            )
        };
        let gate = Gate::new(options.connections);
        let (session, ssh) = gate.run(async {
            let mut ssh = Command::new(&args[0])
                .args(&args[1..])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| cant(format!("cannot run {}: {e}", args[0])))?;
            let (stdin, stdout) = (ssh.stdin.take(), ssh.stdout.take());
            let (Some(stdin), Some(stdout)) = (stdin, stdout) else {
                return Err(cant("ssh has no pipes".into()));
            };
            let session = Session::new(stdin, stdout, SftpOptions::default()).await;
            match session {
                Ok(s) => Ok((s, ssh)),
                Err(e) => {
                    let status = ssh.wait().await.map(|s| s.to_string()).unwrap_or_default();
                    Err(cant(format!("{e} (ssh {status})")))
                }
            }
        })?;
        Ok(Sftp {
            session,
            _ssh: ssh,
            root: path.trim_end_matches('/').to_string(),
            gate,
            location,
        })
    }

    fn full(&self, path: &str) -> String {
        if self.root.is_empty() {
            path.to_string()
        } else {
            format!("{}/{path}", self.root)
        }
    }

    fn run<T>(
        &self,
        what: impl FnOnce() -> String,
        fut: impl std::future::Future<Output = std::result::Result<T, SftpError>>,
    ) -> Result<T> {
        match self
            .gate
            .run(async { tokio::time::timeout(REQUEST_TIMEOUT, fut).await })
        {
            Ok(result) => result.map_err(|e| sftp_error(e, what)),
            Err(_) => Err(error(
                BackendErrorKind::Transient,
                format!("{}: no answer in {} s", what(), REQUEST_TIMEOUT.as_secs()),
            )),
        }
    }

    async fn list_dir(&self, dir: String) -> std::result::Result<Vec<Entry>, SftpError> {
        let mut fs = self.session.fs();
        let listing = match fs.open_dir(&dir).await {
            Ok(d) => d.read_dir(),
            Err(SftpError::SftpError(SftpErrorKind::NoSuchFile, _)) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let entries: Vec<_> = listing.try_collect().await?;
        Ok(entries
            .into_iter()
            .filter(|e| e.file_type().is_some_and(|t| t.is_file()))
            .filter_map(|e| {
                let name = e.filename().to_str()?.to_string();
                let size = e.metadata().len()?;
                Some(Entry { name, size })
            })
            .collect())
    }

    /// Every directory of the layout, under the root.
    fn dirs(&self, t: Option<FileType>) -> Vec<String> {
        match t {
            Some(FileType::Pack) => (0..=255u8)
                .map(|i| self.full(&format!("data/{i:02x}")))
                .collect(),
            Some(FileType::Config) => vec![self.root.clone()],
            Some(t) => vec![self.full(t.dir())],
            None => {
                let mut all = vec![self.root.clone()];
                all.extend(super::layout_dirs().iter().map(|d| self.full(d)));
                all
            }
        }
    }

    async fn list_dirs(&self, dirs: Vec<String>) -> std::result::Result<Vec<Entry>, SftpError> {
        let lists: Vec<Vec<Entry>> = futures_util::stream::iter(dirs)
            .map(|d| self.list_dir(d))
            .buffer_unordered(16)
            .try_collect()
            .await?;
        Ok(lists.into_iter().flatten().collect())
    }

    async fn store(&self, tmp: &str, target: &str, mut body: Vec<Bytes>, len: u64) -> Result<()> {
        let what = || format!("cannot store {target}");
        let fail = |e| sftp_error(e, what);
        let mut file = self
            .session
            .options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(tmp)
            .await
            .map_err(fail)?;
        file.write_all_zero_copy(&mut body).await.map_err(fail)?;
        if self.session.support_fsync() {
            file.sync_all().await.map_err(fail)?;
        }
        let stored = file.metadata().await.map_err(fail)?.len();
        file.close().await.map_err(fail)?;
        if stored != Some(len) {
            return Err(error(
                BackendErrorKind::Transient,
                format!("{}: sent {len} bytes, the server stored {stored:?}", what()),
            ));
        }
        let mut fs = self.session.fs();
        let placed = if self.session.support_hardlink() {
            fs.hard_link(tmp, target).await
        } else {
            fs.rename(tmp, target).await
        };
        if let Err(e) = placed {
            if fs.metadata(target).await.is_ok() {
                return Err(error(
                    BackendErrorKind::AlreadyExists,
                    format!("{target} exists already"),
                ));
            }
            return Err(fail(e));
        }
        Ok(())
    }
}

impl Backend for Sftp {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn remote(&self) -> bool {
        true
    }

    /// A hard link (or OpenSSH's link-based rename) fails on an existing name atomically, and a
    /// directory listing shows every file linked before it began.
    fn guarantees(&self) -> Guarantees {
        Guarantees {
            exclusive_create: true,
            listing_lag: Duration::ZERO,
        }
    }

    fn list(&self, t: FileType) -> Result<Vec<Entry>> {
        let mut entries = self.run(
            || format!("cannot list {}s at {}", t.noun(), self.location),
            self.list_dirs(self.dirs(Some(t))),
        )?;
        // Temporaries: no object of the layout has a dot in its name.
        entries.retain(|e| !e.name.contains('.'));
        if t == FileType::Config {
            entries.retain(|e| e.name == "config");
        }
        Ok(entries)
    }

    fn read(&self, t: FileType, name: &str) -> Result<Vec<u8>> {
        let path = self.full(&object_path(t, name));
        let bytes = self.run(|| format!("cannot read {} {name}", t.noun()), async {
            self.session.fs().read(&path).await
        })?;
        Ok(bytes.to_vec())
    }

    /// Stats first, so a stated length over `max` fails before anything is read; then reads
    /// piece by piece and stops past `max`, so a server that states no length, or a false one,
    /// cannot make this hold more than `max` and one piece.
    fn read_at_most(&self, t: FileType, name: &str, max: u64) -> Result<Vec<u8>> {
        let path = self.full(&object_path(t, name));
        let what = || format!("cannot read {} {name}", t.noun());
        let meta = self.run(what, async { self.session.fs().metadata(&path).await })?;
        if let Some(len) = meta.len() {
            crate::check_len(t, name, len, max)?;
        }
        let bytes = self.run(what, async {
            let mut file = self.session.open(&path).await?;
            let mut out = BytesMut::new();
            while out.len() as u64 <= max {
                let want = u32::try_from(max + 1 - out.len() as u64).unwrap_or(u32::MAX);
                match file.read(want, BytesMut::new()).await? {
                    Some(piece) => out.extend_from_slice(&piece),
                    None => break,
                }
            }
            file.close().await?;
            Ok(out)
        })?;
        if bytes.len() as u64 > max {
            return Err(crate::longer_than(t, name, max));
        }
        Ok(bytes.to_vec())
    }

    fn read_range(&self, t: FileType, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let path = self.full(&object_path(t, name));
        let what = || format!("cannot read {len} bytes at {offset} of {} {name}", t.noun());
        let bytes = self.run(what, async {
            let mut file = self.session.open(&path).await?;
            file.seek(SeekFrom::Start(offset)).await?;
            let bytes = file.read_all(len as usize, BytesMut::new()).await?;
            file.close().await?;
            Ok(bytes)
        })?;
        Ok(bytes.to_vec())
    }

    fn create(&self, t: FileType, name: &str, bytes: &[u8]) -> Result<()> {
        self.create_parts(t, name, &[bytes])
    }

    fn create_parts(&self, t: FileType, name: &str, parts: &[&[u8]]) -> Result<()> {
        let body: Vec<Bytes> = parts.iter().map(|p| Bytes::copy_from_slice(p)).collect();
        let len = parts.iter().map(|p| p.len() as u64).sum();
        let tmp = self.full(&temp_path(t, name));
        let target = self.full(&object_path(t, name));
        let result = self.gate.run(async {
            let stored =
                tokio::time::timeout(REQUEST_TIMEOUT, self.store(&tmp, &target, body, len))
                    .await
                    .unwrap_or_else(|_| {
                        Err(error(
                            BackendErrorKind::Transient,
                            format!("cannot store {target}: no answer"),
                        ))
                    });
            // The temporary goes whatever happened; a link left the object under its name.
            let _ = self.session.fs().remove_file(&tmp).await;
            stored
        });
        result.map_err(|e| BackendError {
            message: e.message.replace(&target, &format!("{} {name}", t.noun())),
            ..e
        })
    }

    fn remove(&self, t: FileType, name: &str) -> Result<()> {
        let path = self.full(&object_path(t, name));
        self.run(|| format!("cannot remove {} {name}", t.noun()), async {
            self.session.fs().remove_file(&path).await
        })
    }

    fn remove_stale_temporaries(&self, age: Duration) -> Result<(u64, u64)> {
        let now = std::time::SystemTime::now();
        let (mut count, mut bytes) = (0, 0);
        for dir in self.dirs(None) {
            let stale: Vec<(String, u64)> = self.run(|| format!("cannot list {dir}"), async {
                let mut fs = self.session.fs();
                let listing = match fs.open_dir(&dir).await {
                    Ok(d) => d.read_dir(),
                    Err(SftpError::SftpError(SftpErrorKind::NoSuchFile, _)) => {
                        return Ok(Vec::new())
                    }
                    Err(e) => return Err(e),
                };
                let entries: Vec<_> = listing.try_collect().await?;
                Ok(entries
                    .into_iter()
                    .filter_map(|e| {
                        let name = e.filename().to_str()?.to_string();
                        let meta = e.metadata();
                        let old = meta
                            .modified()
                            .and_then(|m| now.duration_since(m.as_system_time()).ok())
                            .is_some_and(|a| a > age);
                        (name.starts_with(crate::TEMP_PREFIX) && old)
                            .then(|| (name, meta.len().unwrap_or(0)))
                    })
                    .collect())
            })?;
            for (name, len) in stale {
                let path = format!("{dir}/{name}");
                match self.run(|| format!("cannot remove {path}"), async {
                    self.session.fs().remove_file(&path).await
                }) {
                    Ok(()) => {
                        count += 1;
                        bytes += len;
                    }
                    Err(e) if e.kind == BackendErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok((count, bytes))
    }
}

/// Makes the directories of a new repository, its root's parents included.
pub(crate) fn create_layout(sftp: &Sftp) -> Result<()> {
    let mut dirs = Vec::new();
    let mut prefix = String::new();
    for part in sftp.root.split('/') {
        if !prefix.is_empty() || sftp.root.starts_with('/') {
            prefix.push('/');
        }
        prefix.push_str(part);
        if !part.is_empty() {
            dirs.push(prefix.clone());
        }
    }
    dirs.extend(sftp.dirs(None).into_iter().skip(1));
    for dir in dirs {
        sftp.run(|| format!("cannot create {dir}"), async {
            let mut fs = sftp.session.fs();
            match fs.create_dir(&dir).await {
                // It exists (SFTP says only "failure"): a later write fails if it is no directory.
                Err(SftpError::SftpError(SftpErrorKind::Failure, _)) => Ok(()),
                other => other,
            }
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::Remote;
    use super::ssh_command;

    fn command(location: &str) -> Vec<String> {
        ssh_command(&Remote::parse_with(location, &|_| None).unwrap().unwrap())
    }

    #[test]
    fn ssh_is_asked_for_the_sftp_subsystem_of_the_host_with_its_port_and_user() {
        assert_eq!(
            command("sftp://backup@example.org:2222/srv/repo"),
            [
                "ssh",
                "-p",
                "2222",
                "-l",
                "backup",
                "-s",
                "--",
                "example.org",
                "sftp"
            ]
        );
        assert_eq!(
            command("sftp:example.org:repo"),
            ["ssh", "-s", "--", "example.org", "sftp"]
        );
    }
}
