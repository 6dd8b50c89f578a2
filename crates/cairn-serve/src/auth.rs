//! HTTP basic authentication against an htpasswd file: bcrypt lines (`$2y$`, `$2b$`, `$2a$`,
//! as `htpasswd -B` writes them) and `{SHA}` lines (base64 of SHA-1, `htpasswd -s`).
//!
//! Invariant: no password or hash leaves this module: not in an error, a log line or `Debug`
//! output. Decoded passwords are zeroized when dropped. A bcrypt check costs tens of
//! milliseconds and a client makes thousands of requests, so a verified user and password are
//! remembered for a few minutes, under a salted SHA-256 of both, never in the clear.
//!
//! The file is read again when it changes (looked at every `RELOAD_CHECK` at most), as
//! restic's rest-server does, so that users are added and revoked without a restart; a reload
//! forgets every remembered password, so a revoked one stops working at once. A file that no
//! longer parses (half written, emptied) keeps the users read before, with a warning.

use crate::{Error, ErrorKind};
use base64::Engine;
use rand::RngCore;
use sha2::Digest;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// How long a verified user and password are taken as good without bcrypt again.
const REMEMBER: Duration = Duration::from_secs(300);
/// At most this many verified pairs are remembered; past it, the expired ones go, and if none
/// has expired, all do (each costs one more bcrypt check, nothing else).
const REMEMBER_MAX: usize = 4096;
/// How often the htpasswd file is looked at for a change, at most.
const RELOAD_CHECK: Duration = Duration::from_secs(2);

enum Hash {
    Bcrypt(String),
    Sha1([u8; 20]),
}

/// The users of an htpasswd file and their password hashes.
pub struct Htpasswd {
    users: HashMap<String, Hash>,
}

impl fmt::Debug for Htpasswd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Htpasswd")
            .field("users", &self.users.len())
            .finish()
    }
}

impl Htpasswd {
    /// Reads an htpasswd file. Lines this server cannot check (MD5 `$apr1$`, crypt, plain text)
    /// are skipped, each with a warning that names its line and user; a file with no usable
    /// line is an error, for nobody could log in.
    pub fn load(path: &Path) -> Result<(Htpasswd, Vec<String>), Error> {
        let invalid = |what: String| Error {
            kind: ErrorKind::InvalidInput,
            message: format!("--htpasswd {}: {what}", path.display()),
        };
        let text = Zeroizing::new(std::fs::read(path).map_err(|e| invalid(e.to_string()))?);
        let text = std::str::from_utf8(&text).map_err(|_| invalid("is not UTF-8".into()))?;
        let (htpasswd, warnings) = Htpasswd::parse(text);
        if htpasswd.users.is_empty() {
            return Err(invalid(
                "has no user with a bcrypt or {SHA} password (make one with htpasswd -B)".into(),
            ));
        }
        let warnings = warnings
            .into_iter()
            .map(|w| format!("--htpasswd {}: {w}", path.display()))
            .collect();
        Ok((htpasswd, warnings))
    }

    /// The users of an htpasswd file's text, and a warning for each line skipped.
    pub fn parse(text: &str) -> (Htpasswd, Vec<String>) {
        let mut users = HashMap::new();
        let mut warnings = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                warnings.push(format!("line {} has no `user:hash`, skipped", n + 1));
                continue;
            };
            match parse_hash(hash) {
                Some(h) => {
                    users.insert(user.to_string(), h);
                }
                None => warnings.push(format!(
                    "line {} (user {user:?}): not a bcrypt or {{SHA}} hash, skipped \
                     (make it with htpasswd -B)",
                    n + 1
                )),
            }
        }
        (Htpasswd { users }, warnings)
    }

    pub fn has_user(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// Whether `password` is `user`'s. Slow for bcrypt lines: call it off the async threads.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        match self.users.get(user) {
            Some(Hash::Bcrypt(hash)) => bcrypt::verify(password, hash).unwrap_or(false),
            Some(Hash::Sha1(digest)) => {
                let given: [u8; 20] = sha1::Sha1::digest(password.as_bytes()).into();
                // Every byte is compared, so the time taken says nothing of where they differ.
                given
                    .iter()
                    .zip(digest)
                    .fold(0, |acc, (a, b)| acc | (a ^ b))
                    == 0
            }
            None => false,
        }
    }
}

fn parse_hash(hash: &str) -> Option<Hash> {
    if ["$2y$", "$2b$", "$2a$"].iter().any(|p| hash.starts_with(p)) {
        // Parsed now, so that a damaged line is a warning at start, not a refusal later.
        hash.parse::<bcrypt::HashParts>().ok()?;
        return Some(Hash::Bcrypt(hash.to_string()));
    }
    let b64 = hash.strip_prefix("{SHA}")?;
    let digest = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    Some(Hash::Sha1(digest.try_into().ok()?))
}

/// A request's user name and password from its `Authorization: Basic …` header.
pub(crate) struct Credentials {
    pub(crate) user: String,
    pub(crate) password: Zeroizing<String>,
}

impl Credentials {
    pub(crate) fn from_header(value: &[u8]) -> Option<Credentials> {
        let value = std::str::from_utf8(value).ok()?.trim();
        let (scheme, encoded) = value.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()?,
        );
        let decoded = std::str::from_utf8(&decoded).ok()?;
        let (user, password) = decoded.split_once(':')?;
        Some(Credentials {
            user: user.to_string(),
            password: Zeroizing::new(password.to_string()),
        })
    }
}

/// An htpasswd file with the memory of recently verified passwords.
pub(crate) struct Authenticator {
    file: Option<PathBuf>,
    users: Mutex<Users>,
    salt: [u8; 32],
    verified: Mutex<HashMap<[u8; 32], Instant>>,
}

/// The users last read, and what the file looked like then.
struct Users {
    htpasswd: Arc<Htpasswd>,
    /// One more at each reload: a password verified against an older generation is not
    /// remembered, or a check running across a reload could remember a revoked one.
    generation: u64,
    stamp: Option<Stamp>,
    looked: Instant,
}

/// What tells that a file changed: its inode (an editor or `htpasswd` replacing it), its
/// length and its modification time.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp {
    inode: u64,
    len: u64,
    modified: Option<std::time::SystemTime>,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        inode: m.ino(),
        len: m.len(),
        modified: m.modified().ok(),
    })
}

impl Authenticator {
    /// Users read from `file`, and read again when it changes; with a warning for each line
    /// skipped.
    pub(crate) fn watching(file: &Path) -> Result<(Authenticator, Vec<String>), Error> {
        // Looked at before it is read: a change in between is read again, never missed.
        let stamp = stamp(file);
        let (htpasswd, warnings) = Htpasswd::load(file)?;
        Ok((Authenticator::with(htpasswd, Some((file, stamp))), warnings))
    }

    /// `file`: where the users were read from, and how it looked before they were read.
    fn with(htpasswd: Htpasswd, file: Option<(&Path, Option<Stamp>)>) -> Authenticator {
        let mut salt = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut salt);
        Authenticator {
            users: Mutex::new(Users {
                htpasswd: Arc::new(htpasswd),
                generation: 0,
                stamp: file.and_then(|(_, stamp)| stamp),
                looked: Instant::now(),
            }),
            file: file.map(|(path, _)| path.to_path_buf()),
            salt,
            verified: Mutex::new(HashMap::new()),
        }
    }

    fn users(&self) -> std::sync::MutexGuard<'_, Users> {
        self.users
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current users and their generation, read again first if the file changed since it
    /// was last read.
    fn htpasswd(&self) -> (Arc<Htpasswd>, u64) {
        let mut users = self.users();
        let current = |u: &Users| (u.htpasswd.clone(), u.generation);
        let Some(path) = &self.file else {
            return current(&users);
        };
        if users.looked.elapsed() < RELOAD_CHECK {
            return current(&users);
        }
        users.looked = Instant::now();
        let now = stamp(path);
        if now == users.stamp {
            return current(&users);
        }
        users.stamp = now;
        match Htpasswd::load(path) {
            Ok((htpasswd, warnings)) => {
                for w in warnings {
                    crate::failure::log(format_args!("{w}"));
                }
                crate::failure::log(format_args!(
                    "--htpasswd {}: read again, {} users",
                    path.display(),
                    htpasswd.users.len()
                ));
                users.htpasswd = Arc::new(htpasswd);
                users.generation += 1;
                self.remembered().clear();
            }
            Err(e) => crate::failure::log(format_args!(
                "{e}; keeping the {} users read before",
                users.htpasswd.users.len()
            )),
        }
        current(&users)
    }

    pub(crate) fn has_user(&self, user: &str) -> bool {
        self.htpasswd().0.has_user(user)
    }

    /// Whether the credentials are good; may take a bcrypt check, so call it off the async
    /// threads.
    pub(crate) fn check(&self, c: &Credentials) -> bool {
        let (htpasswd, generation) = self.htpasswd();
        let key: [u8; 32] = sha2::Sha256::new()
            .chain_update(self.salt)
            .chain_update((c.user.len() as u64).to_le_bytes())
            .chain_update(c.user.as_bytes())
            .chain_update(c.password.as_bytes())
            .finalize()
            .into();
        let now = Instant::now();
        if let Some(until) = self.remembered().get(&key) {
            if *until > now {
                return true;
            }
        }
        if !htpasswd.verify(&c.user, &c.password) {
            return false;
        }
        // Users before remembered, as a reload takes them: the generation cannot change while
        // both are held, and a reload since the check above clears what is remembered next.
        let users = self.users();
        let mut verified = self.remembered();
        if users.generation != generation {
            drop((verified, users));
            return self.check(c);
        }
        if verified.len() >= REMEMBER_MAX {
            verified.retain(|_, until| *until > now);
            if verified.len() >= REMEMBER_MAX {
                verified.clear();
            }
        }
        verified.insert(key, now + REMEMBER);
        true
    }

    fn remembered(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Instant>> {
        // The map holds no invariant a panicking holder could break: take it as it is.
        self.verified
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcrypt_and_sha_lines_verify_and_others_are_skipped_with_a_warning() {
        let bcrypt_line = bcrypt::hash_with_result("s3cret", 4)
            .unwrap()
            .format_for_version(bcrypt::Version::TwoY);
        // `htpasswd -s -b f bob hunter2`.
        let sha_line = "{SHA}87u9ZqY9S/F0eUBXjsPQEDUw4h0=";
        let text = format!(
            "# users\nalice:{bcrypt_line}\nbob:{sha_line}\ncarol:$apr1$abc$def\nnocolon\n\n"
        );
        let (h, warnings) = Htpasswd::parse(&text);
        assert!(h.verify("alice", "s3cret"));
        assert!(!h.verify("alice", "s3cret "));
        assert!(h.verify("bob", "hunter2"));
        assert!(!h.verify("bob", "hunter3"));
        assert!(!h.verify("carol", "x"));
        assert!(!h.verify("dave", ""));
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("line 4") && warnings[0].contains("carol"));
        // No hash reaches a warning or Debug output.
        assert!(!warnings.iter().any(|w| w.contains("$apr1$")));
        assert!(!format!("{h:?}").contains("$2y$"));
    }

    #[test]
    fn basic_credentials_are_decoded_and_malformed_ones_refused() {
        let c = Credentials::from_header(b"Basic YWxpY2U6czNjcjp0").unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("alice", "s3cr:t"));
        let c = Credentials::from_header(b"basic  YWxpY2U6czNjcjp0 ").unwrap();
        assert_eq!(c.user, "alice");
        for bad in [
            &b"Bearer YWxpY2U6czNjcjp0"[..],
            b"Basic",
            b"Basic !!!",
            b"Basic YWxpY2U=",
            b"\xff\xfe",
        ] {
            assert!(Credentials::from_header(bad).is_none());
        }
    }

    #[test]
    fn a_verified_password_is_remembered_and_a_wrong_one_is_not() {
        let line = bcrypt::hash("pw", 4).unwrap();
        let (h, _) = Htpasswd::parse(&format!("u:{line}\n"));
        let auth = Authenticator::with(h, None);
        let good = Credentials {
            user: "u".into(),
            password: Zeroizing::new("pw".into()),
        };
        let bad = Credentials {
            user: "u".into(),
            password: Zeroizing::new("px".into()),
        };
        assert!(!auth.check(&bad));
        assert_eq!(auth.remembered().len(), 0);
        assert!(auth.check(&good));
        assert!(auth.check(&good));
        assert_eq!(auth.remembered().len(), 1);
        assert!(!auth.check(&bad));
    }

    #[test]
    fn a_changed_file_is_read_again_and_a_revoked_password_stops_working() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        let line = |pw: &str| bcrypt::hash(pw, 4).unwrap();
        std::fs::write(&path, format!("u:{}\n", line("pw"))).unwrap();
        let (auth, _) = Authenticator::watching(&path).unwrap();
        let cred = |user: &str, pw: &str| Credentials {
            user: user.into(),
            password: Zeroizing::new(pw.into()),
        };
        assert!(auth.check(&cred("u", "pw")));
        assert!(!auth.has_user("v"));

        // Replaced as `htpasswd` does (a new file renamed over the old): u revoked, v added.
        let next = dir.path().join("htpasswd.new");
        std::fs::write(&next, format!("v:{}\n", line("pw2"))).unwrap();
        std::fs::rename(&next, &path).unwrap();
        auth.users().looked -= RELOAD_CHECK;
        assert!(
            !auth.check(&cred("u", "pw")),
            "a revoked password was still remembered"
        );
        assert!(auth.has_user("v"));
        assert!(auth.check(&cred("v", "pw2")));

        // A file that no longer parses keeps the users read before.
        std::fs::write(&path, "").unwrap();
        auth.users().looked -= RELOAD_CHECK;
        assert!(auth.check(&cred("v", "pw2")));
    }
}
