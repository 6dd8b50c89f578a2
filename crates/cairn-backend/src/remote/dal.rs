//! S3, WebDAV and FTP through Apache OpenDAL.
//!
//! Invariant: an object appears under its final name only complete. On S3 a PUT is atomic and
//! `If-None-Match: *` makes it create-only and exclusive, with a CRC32C checksum the service
//! verifies; a service that ignores the condition (Garage) is found out by a probe, and then a
//! look that the name is free comes first, and the create is not exclusive. WebDAV and FTP
//! write the object under a temporary name of ours (`.tmp-…`; on FTP `tmp-….part`, as FTP
//! servers often leave dotted names out of `LIST`, and OpenDAL's writer first stores
//! `tmp-….part.RANDOM` and renames that to ours), check its stored size, and only then move it
//! to its name (MOVE, RNFR/RNTO). A WebDAV MOVE asks with `Overwrite: F` (the vendored OpenDAL
//! service) that an existing name be refused, as RFC 4918 says it must be; a probe finds out
//! whether the server does, and where it does the create is exclusive. Where it does not, and
//! always on FTP, which cannot refuse, a look that the name is free comes first, and two clients
//! racing for one name can both pass it: those state `exclusive_create: false`. Names with a dot
//! are temporaries on every service here: no object of the layout has one.

use super::{error, object_path, temp_path, Gate, Remote, RemoteOptions, REQUEST_TIMEOUT};
use crate::{Backend, BackendError, BackendErrorKind, Entry, FileType, Guarantees, Result};
use opendal::{services, ErrorKind as DalKind, Operator};
use std::time::Duration;

pub(crate) struct Dal {
    op: Operator,
    gate: Gate,
    location: String,
    /// Whether this service refuses a create over an existing name: on S3 a conditional PUT
    /// (AWS S3 refuses it, Garage ignores the condition), on WebDAV a MOVE with `Overwrite: F`
    /// (rclone's server refuses it). Learnt once, by trying; FTP never does.
    exclusive: std::sync::OnceLock<bool>,
    service: Service,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Service {
    /// Conditional, atomic PUTs; listings of a whole prefix.
    S3,
    /// Our temporary, then MOVE with `Overwrite: F`.
    WebDav,
    /// Our temporary, then RNFR/RNTO (the vendored service's rename).
    Ftp,
}

fn dal_error(e: opendal::Error, what: impl FnOnce() -> String) -> BackendError {
    let kind = match e.kind() {
        DalKind::NotFound => BackendErrorKind::NotFound,
        DalKind::AlreadyExists | DalKind::ConditionNotMatch => BackendErrorKind::AlreadyExists,
        DalKind::PermissionDenied => BackendErrorKind::Denied,
        DalKind::RateLimited => BackendErrorKind::Transient,
        DalKind::ConfigInvalid => BackendErrorKind::InvalidLocation,
        _ if e.is_temporary() => BackendErrorKind::Transient,
        _ => BackendErrorKind::Io,
    };
    // OpenDAL's own rendering spans lines of context; the message is what names the fault.
    // Some failures (a bare 403) come without a message: their kind is then what says it.
    let mut message = match e.message() {
        "" => format!("{}: {}", what(), e.kind()),
        m => format!("{}: {m}", what()),
    };
    if let Some(source) = std::error::Error::source(&e) {
        message.push_str(&format!(": {source}"));
    }
    error(kind, message.replace('\n', " "))
}

impl Dal {
    pub(crate) fn connect(
        remote: &Remote,
        location: String,
        options: &RemoteOptions,
    ) -> Result<Dal> {
        super::runtime();
        let built = match remote {
            Remote::S3 {
                endpoint,
                bucket,
                prefix,
                region,
                keys,
                profile,
            } => {
                let mut b = services::S3::default()
                    .endpoint(endpoint)
                    .bucket(bucket)
                    .root(&format!("/{prefix}"))
                    .region(region)
                    .checksum_algorithm("crc32c");
                if let Some((id, secret)) = keys {
                    // Keys given: no profile file or instance metadata is consulted.
                    b = b
                        .access_key_id(id)
                        .secret_access_key(secret)
                        .disable_config_load();
                } else if let Some(profile) = profile {
                    b = b.profile(profile);
                }
                Operator::new(b)
            }
            Remote::WebDav {
                endpoint,
                root,
                user,
                password,
            } => {
                let mut b = services::Webdav::default().endpoint(endpoint).root(root);
                if let Some(u) = user {
                    b = b.username(u);
                }
                if let Some(p) = password {
                    b = b.password(p);
                }
                Operator::new(b)
            }
            Remote::Ftp {
                endpoint,
                root,
                user,
                password,
            } => {
                let mut b = services::Ftp::default().endpoint(endpoint).root(root);
                if let Some(u) = user {
                    b = b.user(u);
                }
                if let Some(p) = password {
                    b = b.password(p);
                }
                Operator::new(b)
            }
            _ => unreachable!("only S3, WebDAV and FTP go through OpenDAL"),
        };
        let op = built.map_err(|e| dal_error(e, || format!("cannot use {location}")))?;
        Ok(Dal {
            op,
            gate: Gate::new(options.connections),
            service: match remote {
                Remote::S3 { .. } => Service::S3,
                Remote::WebDav { .. } => Service::WebDav,
                _ => Service::Ftp,
            },
            location,
            exclusive: std::sync::OnceLock::new(),
        })
    }

    /// Creates a probe object twice and removes it: on S3 a put with `If-None-Match: *`, on
    /// WebDAV a temporary moved onto it with `Overwrite: F`. The service honours the condition
    /// when the second create is refused. A dotted name, so no listing shows it.
    fn probe_exclusive(&self) -> Result<bool> {
        use rand::RngCore;
        let mut suffix = [0u8; 8];
        rand::thread_rng().fill_bytes(&mut suffix);
        let hex: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
        let probe = format!("locks/.probe-{hex}");
        let what = || format!("cannot probe {}", self.location);
        let second = if self.service == Service::S3 {
            let put = || self.op.write_with(&probe, vec![0u8]).if_not_exists(true);
            self.run(what, put())?;
            self.run(what, put()).map(|_| ())
        } else {
            let put = |byte: u8| {
                let written = temp_path(FileType::Lock, "probe");
                self.store_and_move(what, &written, &probe, vec![byte].into())
            };
            put(0)?;
            put(1)
        };
        let _ = self.run(what, self.op.delete(&probe));
        match second {
            Ok(_) => Ok(false),
            Err(e) if e.kind == BackendErrorKind::AlreadyExists => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// One request, bounded in time: a connection that stopped answering is a transient fault.
    fn run<T>(
        &self,
        what: impl FnOnce() -> String,
        fut: impl std::future::IntoFuture<Output = opendal::Result<T>>,
    ) -> Result<T> {
        match self
            .gate
            .run(async { tokio::time::timeout(REQUEST_TIMEOUT, fut.into_future()).await })
        {
            Ok(result) => result.map_err(|e| {
                // An FTP control connection out of step with its server (a transfer cut short
                // leaves a reply behind: "data connection is already open") answers the next
                // command wrongly; the pool's next connection does not.
                let unexpected = e.kind() == DalKind::Unexpected;
                let no_keys = self.service == Service::S3 && e.message().contains("credential");
                let mut e = dal_error(e, what);
                if no_keys {
                    e.kind = BackendErrorKind::Denied;
                    e.message.push_str(
                        " (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)",
                    );
                }
                if self.service == Service::Ftp && unexpected {
                    e.kind = BackendErrorKind::Transient;
                }
                // A certificate the system does not trust stays untrusted: no retry helps.
                if e.message.contains("invalid peer certificate") {
                    e.kind = BackendErrorKind::Denied;
                    e.message.push_str(
                        " (a private CA's certificate can be given with SSL_CERT_FILE=FILE)",
                    );
                }
                e
            }),
            Err(_) => Err(error(
                BackendErrorKind::Transient,
                format!("{}: no answer in {} s", what(), REQUEST_TIMEOUT.as_secs()),
            )),
        }
    }

    fn list_dir(&self, dir: &str, recursive: bool, out: &mut Vec<(String, u64)>) -> Result<()> {
        let entries = self.run(
            || format!("cannot list {dir} at {}", self.location),
            self.op.list_with(&format!("{dir}/")).recursive(recursive),
        );
        let entries = match entries {
            Ok(e) => e,
            // A directory never written to does not exist on every service.
            Err(e) if e.kind == BackendErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries {
            if entry.metadata().is_file() {
                out.push((entry.path().to_string(), entry.metadata().content_length()));
            }
        }
        Ok(())
    }

    /// Fails with `AlreadyExists` when `target` is taken: the look a create makes where the
    /// service cannot refuse an existing name by itself.
    fn refuse_taken(&self, t: FileType, name: &str, target: &str) -> Result<()> {
        let what = || format!("cannot store {} {name}", t.noun());
        if self.run(what, self.op.exists(target))? {
            return Err(error(
                BackendErrorKind::AlreadyExists,
                format!("{} {name} exists already", t.noun()),
            ));
        }
        Ok(())
    }

    /// Creates on services without a conditional write: temporary, size check, move. A look
    /// that the name is free comes first unless the move itself refuses a taken name.
    fn create_unconditional(&self, t: FileType, name: &str, body: opendal::Buffer) -> Result<()> {
        let what = || format!("cannot store {} {name}", t.noun());
        let target = object_path(t, name);
        if !self.guarantees().exclusive_create {
            self.refuse_taken(t, name, &target)?;
        }
        // Our own temporary on FTP too, although OpenDAL's FTP writer renames its own into
        // place: a server can answer a cut upload with success and keep it truncated, which
        // only the size check finds, and that must happen before the object has its name.
        let written = match self.service {
            Service::Ftp => listed_temp_path(t, name),
            _ => temp_path(t, name),
        };
        self.store_and_move(what, &written, &target, body)
            .map_err(|e| match e.kind {
                // The look's answer: a refused MOVE's own message is only its status.
                BackendErrorKind::AlreadyExists => error(
                    BackendErrorKind::AlreadyExists,
                    format!("{} {name} exists already", t.noun()),
                ),
                _ => e,
            })
    }

    /// Writes `body` to the temporary `written`, checks its stored size and moves it to
    /// `target`, removing the temporary when any step fails. A WebDAV MOVE sends
    /// `Overwrite: F`, so a server that honours it refuses a taken `target` (`AlreadyExists`);
    /// sent also where the probe did not find that, as it costs nothing. rclone's server
    /// answers a MOVE onto a name another MOVE holds at that moment with 423 Locked, which
    /// OpenDAL marks temporary: the retry stores a new temporary and its MOVE finds the name
    /// taken, or free if the other move failed.
    fn store_and_move(
        &self,
        what: impl Fn() -> String + Copy,
        written: &str,
        target: &str,
        body: opendal::Buffer,
    ) -> Result<()> {
        let len = body.len() as u64;
        let result = (|| {
            self.run(what, self.op.write(written, body))?;
            let stored = self.run(what, self.op.stat(written))?.content_length();
            if stored != len {
                return Err(error(
                    BackendErrorKind::Transient,
                    format!("{}: sent {len} bytes, the server stored {stored}", what()),
                ));
            }
            match self.service {
                Service::WebDav => self.run(
                    what,
                    self.op.rename_with(written, target).if_not_exists(true),
                ),
                // RNFR/RNTO has no condition; OpenDAL refuses `if_not_exists` there.
                _ => self.run(what, self.op.rename(written, target)),
            }
        })();
        if result.is_err() {
            let _ = self.run(what, self.op.delete(written));
        }
        result
    }
}

/// A temporary name FTP servers list: vsftpd, ProFTPD and Pure-FTPd leave names that start
/// with a dot out of `LIST` by default, and OpenDAL's FTP `stat` (the size check) and prune's
/// clean-up both read `LIST`. It keeps a dot, so `is_temporary` knows it.
fn listed_temp_path(t: FileType, name: &str) -> String {
    let path = temp_path(t, name);
    let (dir, file) = path.rsplit_once('/').unwrap_or(("", &path));
    let file = format!("{}.part", file.trim_start_matches('.'));
    if dir.is_empty() {
        file
    } else {
        format!("{dir}/{file}")
    }
}

/// Whether a listed name is a temporary: ours (`.tmp-…`) or OpenDAL's FTP writer's
/// (`.tmp-….RANDOM`, left by an upload cut short).
fn is_temporary(name: &str) -> bool {
    name.contains('.')
}

impl Backend for Dal {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn remote(&self) -> bool {
        true
    }

    /// S3 (AWS since 2020, Garage by its quorums) lists every object whose PUT returned.
    /// WebDAV and FTP servers store plain files, listed as written. Creates on S3 and WebDAV
    /// are exclusive where a probe finds the service refusing a taken name; a probe that fails
    /// leaves the weaker promise.
    fn guarantees(&self) -> Guarantees {
        let exclusive = self.service != Service::Ftp
            && *self
                .exclusive
                .get_or_init(|| self.probe_exclusive().unwrap_or(false));
        Guarantees {
            exclusive_create: exclusive,
            listing_lag: Duration::ZERO,
        }
    }

    fn listing_lag(&self) -> Duration {
        Duration::ZERO
    }

    fn list(&self, t: FileType) -> Result<Vec<Entry>> {
        let mut found = Vec::new();
        match t {
            FileType::Config => {
                match self.run(
                    || format!("cannot look for config at {}", self.location),
                    self.op.stat("config"),
                ) {
                    Ok(m) => found.push(("config".to_string(), m.content_length())),
                    Err(e) if e.kind == BackendErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            // An object store lists all of data/ in pages; a file server walks its directories.
            FileType::Pack if self.service == Service::S3 => {
                self.list_dir("data", true, &mut found)?
            }
            FileType::Pack => {
                for i in 0..=255u8 {
                    self.list_dir(&format!("data/{i:02x}"), false, &mut found)?;
                }
            }
            _ => self.list_dir(t.dir(), false, &mut found)?,
        }
        Ok(found
            .into_iter()
            .filter_map(|(path, size)| {
                let name = path.rsplit('/').next().unwrap_or(&path);
                (!name.is_empty() && !is_temporary(name)).then(|| Entry {
                    name: name.to_string(),
                    size,
                })
            })
            .collect())
    }

    fn read(&self, t: FileType, name: &str) -> Result<Vec<u8>> {
        let path = object_path(t, name);
        let buf = self.run(
            || format!("cannot read {} {name}", t.noun()),
            self.op.read(&path),
        )?;
        Ok(buf.to_vec())
    }

    /// Asks for the length first, so a damaged store fails before anything is read (a range
    /// past the end fails in OpenDAL: "reader got too little data"), then streams the object,
    /// so a hostile one that sends more than it stated is cut off past `max`: OpenDAL itself
    /// only compares the length at the end, holding everything sent.
    fn read_at_most(&self, t: FileType, name: &str, max: u64) -> Result<Vec<u8>> {
        use futures_util::StreamExt;
        let path = object_path(t, name);
        let what = || format!("cannot read {} {name}", t.noun());
        let len = self.run(what, self.op.stat(&path))?.content_length();
        crate::check_len(t, name, len, max)?;
        if len == 0 {
            return Ok(Vec::new());
        }
        let bytes = self.run(what, async {
            let mut stream = self.op.reader(&path).await?.into_stream(0..len).await?;
            let mut out = Vec::new();
            while let Some(piece) = stream.next().await {
                let piece = piece?;
                if (out.len() + piece.len()) as u64 > max {
                    return Ok(None);
                }
                for part in piece {
                    out.extend_from_slice(&part);
                }
            }
            Ok(Some(out))
        })?;
        bytes.ok_or_else(|| crate::longer_than(t, name, max))
    }

    fn read_range(&self, t: FileType, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let path = object_path(t, name);
        let what = || format!("cannot read {len} bytes at {offset} of {} {name}", t.noun());
        let buf = self.run(what, self.op.read_with(&path).range(offset..offset + len))?;
        if buf.len() as u64 != len {
            return Err(error(
                BackendErrorKind::Transient,
                format!("{}: the server sent {} bytes", what(), buf.len()),
            ));
        }
        Ok(buf.to_vec())
    }

    fn create(&self, t: FileType, name: &str, bytes: &[u8]) -> Result<()> {
        self.create_parts(t, name, &[bytes])
    }

    fn create_parts(&self, t: FileType, name: &str, parts: &[&[u8]]) -> Result<()> {
        let body: Vec<bytes::Bytes> = parts
            .iter()
            .map(|p| bytes::Bytes::copy_from_slice(p))
            .collect();
        let body = opendal::Buffer::from(body);
        if self.service != Service::S3 {
            return self.create_unconditional(t, name, body);
        }
        let path = object_path(t, name);
        // A service that ignores the condition would replace the object.
        if !self.guarantees().exclusive_create {
            self.refuse_taken(t, name, &path)?;
        }
        self.run(
            || format!("cannot store {} {name}", t.noun()),
            self.op.write_with(&path, body).if_not_exists(true),
        )
        .map(|_| ())
    }

    fn remove(&self, t: FileType, name: &str) -> Result<()> {
        let path = object_path(t, name);
        self.run(
            || format!("cannot remove {} {name}", t.noun()),
            self.op.delete(&path),
        )
    }

    /// An object store lists the whole repository in pages; a file server, each directory of
    /// the layout (FTP has no recursive listing).
    fn remove_stale_temporaries(&self, age: Duration) -> Result<(u64, u64)> {
        let mut listings = Vec::new();
        if self.service == Service::S3 {
            listings.push(("".to_string(), true));
        } else {
            listings.push(("".to_string(), false));
            listings.extend(super::layout_dirs().into_iter().map(|d| (d, false)));
        }
        let now = std::time::SystemTime::now();
        let (mut count, mut bytes) = (0, 0);
        for (dir, recursive) in listings {
            let path = if dir.is_empty() {
                dir
            } else {
                format!("{dir}/")
            };
            let entries = match self.run(
                || format!("cannot list {path} at {}", self.location),
                self.op.list_with(&path).recursive(recursive),
            ) {
                Ok(e) => e,
                Err(e) if e.kind == BackendErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for entry in entries {
                let name = entry.name();
                if !is_temporary(name) || !entry.metadata().is_file() {
                    continue;
                }
                let stale = entry
                    .metadata()
                    .last_modified()
                    .map(std::time::SystemTime::from)
                    .and_then(|m| now.duration_since(m).ok())
                    .is_some_and(|a| a > age);
                if stale {
                    self.run(
                        || format!("cannot remove {name}"),
                        self.op.delete(entry.path()),
                    )?;
                    count += 1;
                    bytes += entry.metadata().content_length();
                }
            }
        }
        Ok((count, bytes))
    }
}

/// Makes the directories of a new repository on a service that has them; an object store needs
/// none.
pub(crate) fn create_layout(dal: &Dal) -> Result<()> {
    if dal.service == Service::S3 {
        return Ok(());
    }
    for dir in super::layout_dirs() {
        dal.run(
            || format!("cannot create {dir} at {}", dal.location),
            dal.op.create_dir(&format!("{dir}/")),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod temp_tests {
    use super::*;

    #[test]
    fn ftp_temporaries_are_listed_and_known_for_temporaries() {
        let path = listed_temp_path(FileType::Pack, &"ab".repeat(32));
        let (dir, file) = path.rsplit_once('/').unwrap();
        assert_eq!(
            dir,
            object_path(FileType::Pack, &"ab".repeat(32))
                .rsplit_once('/')
                .unwrap()
                .0
        );
        assert!(!file.starts_with('.'), "{file}");
        assert!(is_temporary(file), "{file}");
        assert_ne!(path, listed_temp_path(FileType::Pack, &"ab".repeat(32)));
    }

    /// The vendored WebDAV service is the one built in (root `Cargo.toml`, `[patch.crates-io]`):
    /// upstream's does not state `rename_with_if_not_exists`, so OpenDAL would refuse every
    /// move of a WebDAV create as unsupported.
    #[test]
    fn webdav_moves_can_keep_a_taken_name() {
        let op = Operator::new(services::Webdav::default().endpoint("http://127.0.0.1:9")).unwrap();
        assert!(op.info().capability().rename_with_if_not_exists);
    }
}
