//! Remote locations as users write them (`s3:http://host:9000/bucket/prefix`, `sftp:user@host:/srv`,
//! …), parsed into what a backend needs to connect.
//!
//! Invariant: a parsed location shows no password: `Display` masks it, so messages, logs and the
//! cache never hold one.

use super::retry::retrying;
use super::{dal, rest, sftp, RemoteOptions, Retrying};
use crate::{Backend, BackendError, BackendErrorKind, FileType, Result};
use percent_encoding::percent_decode_str;
use std::fmt;
use url::Url;

/// The schemes of remote locations, for the message that refuses any other.
pub const SCHEMES: &str = "s3:, sftp:, webdav:, ftp://, ftps://, rest: or rclone:";

#[derive(Clone, PartialEq, Eq)]
pub enum Remote {
    /// `s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX]`, path-style addressing.
    S3 {
        endpoint: String,
        bucket: String,
        prefix: String,
        /// `AWS_REGION` or `AWS_DEFAULT_REGION`; a self-hosted store takes any.
        region: String,
        /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`; without them, `AWS_PROFILE` or
        /// the default profile.
        keys: Option<(String, String)>,
        profile: Option<String>,
    },
    /// `sftp:[USER@]HOST:/PATH` or `sftp://[USER@]HOST[:PORT]/PATH`.
    Sftp {
        user: Option<String>,
        host: String,
        port: Option<u16>,
        path: String,
        /// `CAIRN_SFTP_COMMAND`: the whole ssh command, in place of the one made from the
        /// location.
        command: Option<String>,
    },
    /// `webdav:http[s]://[USER:PASS@]HOST[:PORT]/PATH`.
    WebDav {
        endpoint: String,
        root: String,
        user: Option<String>,
        password: Option<String>,
    },
    /// `ftp://USER:PASS@HOST[:PORT]/PATH` or `ftps://…`.
    Ftp {
        endpoint: String,
        root: String,
        user: Option<String>,
        password: Option<String>,
    },
    /// `rest:http[s]://[USER:PASS@]HOST[:PORT]/PATH`: restic's REST protocol, version 2.
    Rest {
        url: String,
        user: Option<String>,
        password: Option<String>,
    },
    /// `rclone:REMOTE:PATH`: REST over the stdio of `rclone serve restic --stdio`.
    Rclone { remote: String },
}

fn invalid(given: &str, why: impl fmt::Display) -> BackendError {
    super::error(
        BackendErrorKind::InvalidLocation,
        format!("repository location {}: {why}", mask(given)),
    )
}

/// `given` with any password in it replaced, for messages about a location that did not parse.
fn mask(given: &str) -> String {
    let Some(at) = given.rfind('@') else {
        return given.to_string();
    };
    let Some(slashes) = given.find("://") else {
        return given.to_string();
    };
    let userinfo = &given[slashes + 3..at];
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{}{user}:***{}", &given[..slashes + 3], &given[at..]),
        None => given.to_string(),
    }
}

fn decoded(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// A URL of one of `schemes`, with its credentials taken out.
fn http_url(
    given: &str,
    rest: &str,
    schemes: &[&str],
) -> Result<(Url, Option<String>, Option<String>)> {
    let parsed = rest.contains("://").then(|| Url::parse(rest));
    let mut url = match parsed {
        Some(Ok(url)) if schemes.contains(&url.scheme()) => url,
        Some(Err(e)) => return Err(invalid(given, e)),
        _ => {
            return Err(invalid(
                given,
                format!(
                    "expected a URL starting with {}://",
                    schemes.join(":// or ")
                ),
            ))
        }
    };
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid(given, "the URL names no host"));
    }
    let user = (!url.username().is_empty()).then(|| decoded(url.username()));
    let password = url.password().map(decoded);
    let _ = url.set_username("");
    let _ = url.set_password(None);
    Ok((url, user, password))
}

fn origin(url: &Url) -> String {
    match url.port() {
        Some(port) => format!("{}://{}:{port}", url.scheme(), url.host_str().unwrap_or("")),
        None => format!("{}://{}", url.scheme(), url.host_str().unwrap_or("")),
    }
}

impl Remote {
    /// The remote location `given` names, `None` when its scheme is none of [`SCHEMES`], and an
    /// `InvalidLocation` error when it has one of them but is malformed. Credentials and
    /// settings that the location does not carry come from the environment.
    pub fn parse(given: &str) -> Option<Result<Remote>> {
        Self::parse_with(given, &|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// `parse`, with `env` in place of the process's environment.
    pub fn parse_with(given: &str, env: &dyn Fn(&str) -> Option<String>) -> Option<Result<Remote>> {
        let (scheme, rest) = given.split_once(':')?;
        Some(match scheme {
            "s3" => Self::parse_s3(given, rest, env),
            "sftp" => Self::parse_sftp(given, rest, env("CAIRN_SFTP_COMMAND")),
            "webdav" => http_url(given, rest, &["http", "https"]).map(|(url, user, password)| {
                Remote::WebDav {
                    endpoint: origin(&url),
                    root: url.path().to_string(),
                    user: user.or_else(|| env("CAIRN_WEBDAV_USER")),
                    password: password.or_else(|| env("CAIRN_WEBDAV_PASSWORD")),
                }
            }),
            "ftp" | "ftps" => {
                http_url(given, given, &["ftp", "ftps"]).map(|(url, user, password)| Remote::Ftp {
                    endpoint: origin(&url),
                    root: url.path().to_string(),
                    user,
                    password,
                })
            }
            "rest" => http_url(given, rest, &["http", "https"]).map(|(url, user, password)| {
                let mut url = url.to_string();
                if !url.ends_with('/') {
                    url.push('/');
                }
                Remote::Rest {
                    url,
                    user,
                    password,
                }
            }),
            "rclone" if rest.is_empty() => Err(invalid(given, "expected rclone:REMOTE:PATH")),
            // rclone would take it for one of its flags, or for a local path.
            "rclone" if rest.starts_with('-') => {
                Err(invalid(given, "a remote cannot start with '-'"))
            }
            "rclone" => Ok(Remote::Rclone {
                remote: rest.to_string(),
            }),
            _ => return None,
        })
    }

    fn parse_s3(given: &str, rest: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Remote> {
        let (url, _, _) = http_url(given, rest, &["http", "https"])?;
        let path = url.path().trim_matches('/');
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        if bucket.is_empty() {
            return Err(invalid(
                given,
                "expected s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX]",
            ));
        }
        Ok(Remote::S3 {
            endpoint: origin(&url),
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            region: env("AWS_REGION")
                .or_else(|| env("AWS_DEFAULT_REGION"))
                .unwrap_or_else(|| "us-east-1".into()),
            keys: env("AWS_ACCESS_KEY_ID").zip(env("AWS_SECRET_ACCESS_KEY")),
            profile: env("AWS_PROFILE"),
        })
    }

    fn parse_sftp(given: &str, rest: &str, command: Option<String>) -> Result<Remote> {
        // ssh would take such a host for an option (`-oProxyCommand=…` runs a command).
        let no_option = |host: &str| match host.starts_with('-') {
            true => Err(invalid(given, "a host name cannot start with '-'")),
            false => Ok(()),
        };
        if rest.starts_with("//") {
            let url = Url::parse(given).map_err(|e| invalid(given, e))?;
            let host = url.host_str().unwrap_or_default();
            if host.is_empty() || url.path().len() <= 1 {
                return Err(invalid(given, "expected sftp://[USER@]HOST[:PORT]/PATH"));
            }
            no_option(host)?;
            return Ok(Remote::Sftp {
                user: (!url.username().is_empty()).then(|| decoded(url.username())),
                host: host.to_string(),
                port: url.port(),
                path: decoded(url.path()),
                command,
            });
        }
        // scp style: [USER@]HOST:PATH, a relative PATH being under the user's home.
        let (userhost, path) = rest
            .split_once(':')
            .filter(|(h, p)| !h.is_empty() && !p.is_empty())
            .ok_or_else(|| invalid(given, "expected sftp:[USER@]HOST:/PATH"))?;
        let (user, host) = match userhost.rsplit_once('@') {
            Some((u, h)) => (Some(u.to_string()), h),
            None => (None, userhost),
        };
        no_option(host)?;
        Ok(Remote::Sftp {
            user,
            host: host.to_string(),
            port: None,
            path: path.to_string(),
            command,
        })
    }

    /// Connects to an existing repository or to where one will be created, every request
    /// retried by `options.retry`.
    pub fn connect(&self, options: &RemoteOptions) -> Result<Box<dyn Backend>> {
        let backend = self.reach(options)?.boxed();
        Ok(Box::new(Retrying::new(backend, options.retry.clone())))
    }

    /// Prepares a new repository here: nothing may be there yet (no `config`); services with
    /// directories get the layout's.
    pub fn create(&self, options: &RemoteOptions) -> Result<Box<dyn Backend>> {
        let reached = self.reach(options)?;
        let policy = &options.retry;
        let what = || format!("creating a repository at {self}");
        let found = retrying(policy, what, || match &reached {
            Reached::Dal(b) => b.list(FileType::Config),
            Reached::Sftp(b) => b.list(FileType::Config),
            Reached::Rest(b) => b.list(FileType::Config),
        })?;
        if !found.is_empty() {
            return Err(super::error(
                BackendErrorKind::AlreadyExists,
                format!("a repository exists at {self} already"),
            ));
        }
        retrying(policy, what, || match &reached {
            Reached::Dal(b) => dal::create_layout(b),
            Reached::Sftp(b) => sftp::create_layout(b),
            Reached::Rest(b) => b.create_layout(),
        })?;
        Ok(Box::new(Retrying::new(reached.boxed(), policy.clone())))
    }

    fn reach(&self, options: &RemoteOptions) -> Result<Reached> {
        let location = self.to_string();
        Ok(match self {
            Remote::S3 { .. } | Remote::WebDav { .. } | Remote::Ftp { .. } => {
                Reached::Dal(dal::Dal::connect(self, location, options)?)
            }
            Remote::Sftp { path, .. } => {
                let command = sftp::ssh_command(self);
                Reached::Sftp(sftp::Sftp::connect(command, path, location, options)?)
            }
            Remote::Rest {
                url,
                user,
                password,
            } => Reached::Rest(rest::Rest::http(
                url,
                user.as_deref(),
                password.as_deref(),
                location,
                options,
            )?),
            Remote::Rclone { remote } => {
                Reached::Rest(rest::Rest::rclone(remote, location, options)?)
            }
        })
    }
}

/// A backend of one kind, before it is boxed, for what only its kind can do.
enum Reached {
    Dal(dal::Dal),
    Sftp(sftp::Sftp),
    Rest(rest::Rest),
}

impl Reached {
    fn boxed(self) -> Box<dyn Backend> {
        match self {
            Reached::Dal(b) => Box::new(b),
            Reached::Sftp(b) => Box::new(b),
            Reached::Rest(b) => Box::new(b),
        }
    }
}

impl fmt::Display for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let user = |u: &Option<String>| u.as_ref().map(|u| format!("{u}@")).unwrap_or_default();
        match self {
            Remote::S3 {
                endpoint,
                bucket,
                prefix,
                ..
            } if prefix.is_empty() => write!(f, "s3:{endpoint}/{bucket}"),
            Remote::S3 {
                endpoint,
                bucket,
                prefix,
                ..
            } => write!(f, "s3:{endpoint}/{bucket}/{prefix}"),
            Remote::Sftp {
                user: u,
                host,
                port: Some(port),
                path,
                ..
            } => write!(f, "sftp://{}{host}:{port}{path}", user(u)),
            Remote::Sftp {
                user: u,
                host,
                port: None,
                path,
                ..
            } => write!(f, "sftp:{}{host}:{path}", user(u)),
            Remote::WebDav { endpoint, root, .. } => write!(f, "webdav:{endpoint}{root}"),
            Remote::Ftp { endpoint, root, .. } => write!(f, "{endpoint}{root}"),
            Remote::Rest { url, .. } => write!(f, "rest:{url}"),
            Remote::Rclone { remote } => write!(f, "rclone:{remote}"),
        }
    }
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Remote {
        Remote::parse_with(s, &|_| None)
            .expect("a remote scheme")
            .expect("valid")
    }

    #[test]
    fn every_scheme_parses_into_its_parts() {
        assert_eq!(
            parse("s3:http://127.0.0.1:9000/bucket/some/prefix/"),
            Remote::S3 {
                endpoint: "http://127.0.0.1:9000".into(),
                bucket: "bucket".into(),
                prefix: "some/prefix".into(),
                region: "us-east-1".into(),
                keys: None,
                profile: None,
            }
        );
        assert_eq!(
            parse("sftp:alice@host:/srv/repo"),
            Remote::Sftp {
                user: Some("alice".into()),
                host: "host".into(),
                port: None,
                path: "/srv/repo".into(),
                command: None,
            }
        );
        assert_eq!(
            parse("sftp://alice@host:2222/srv/repo"),
            Remote::Sftp {
                user: Some("alice".into()),
                host: "host".into(),
                port: Some(2222),
                path: "/srv/repo".into(),
                command: None,
            }
        );
        assert_eq!(
            parse("ftp://u:p%40ss@127.0.0.1:2121/backups"),
            Remote::Ftp {
                endpoint: "ftp://127.0.0.1:2121".into(),
                root: "/backups".into(),
                user: Some("u".into()),
                password: Some("p@ss".into())
            }
        );
        assert_eq!(
            parse("rest:http://u:pw@host:8000/repo"),
            Remote::Rest {
                url: "http://host:8000/repo/".into(),
                user: Some("u".into()),
                password: Some("pw".into())
            }
        );
        assert_eq!(
            parse("rclone:b2:bucket/path"),
            Remote::Rclone {
                remote: "b2:bucket/path".into()
            }
        );
        assert!(Remote::parse("/srv/repo").is_none());
        assert!(Remote::parse("gopher://x").is_none());
    }

    #[test]
    fn credentials_come_from_the_environment_given() {
        let env = |k: &str| match k {
            "AWS_ACCESS_KEY_ID" => Some("id".to_string()),
            "AWS_SECRET_ACCESS_KEY" => Some("secret".to_string()),
            "AWS_DEFAULT_REGION" => Some("garage".to_string()),
            "CAIRN_WEBDAV_PASSWORD" => Some("pw".to_string()),
            _ => None,
        };
        let Some(Ok(Remote::S3 { keys, region, .. })) = Remote::parse_with("s3:http://h/b", &env)
        else {
            panic!("not s3")
        };
        assert_eq!(keys, Some(("id".into(), "secret".into())));
        assert_eq!(region, "garage");
        let Some(Ok(Remote::WebDav { password, .. })) =
            Remote::parse_with("webdav:http://u@h/dav", &env)
        else {
            panic!("not webdav")
        };
        assert_eq!(password.as_deref(), Some("pw"));
    }

    #[test]
    fn no_password_is_ever_shown() {
        for given in [
            "webdav:http://u:secret@host/dav",
            "ftp://u:secret@host/path",
            "rest:https://u:secret@host/",
        ] {
            assert!(!parse(given).to_string().contains("secret"), "{given}");
            assert!(!format!("{:?}", parse(given)).contains("secret"));
        }
        let e = Remote::parse("ftp://u:secret@/path").unwrap().unwrap_err();
        assert!(!e.message.contains("secret"), "{}", e.message);
    }

    #[test]
    fn malformed_locations_say_what_is_expected() {
        for (given, expected) in [
            ("s3:http://host", "BUCKET"),
            ("s3:host/bucket", "http"),
            ("sftp:host", "sftp:[USER@]HOST:/PATH"),
            ("rest:ftp://host/", "http"),
            ("rclone:", "rclone:REMOTE:PATH"),
            (
                "sftp:-oProxyCommand=touch${IFS}x:/p",
                "cannot start with '-'",
            ),
            ("sftp:u@-oProxyCommand=x:/p", "cannot start with '-'"),
            ("rclone:--config=/tmp/x:repo", "cannot start with '-'"),
        ] {
            let e = Remote::parse(given).unwrap().unwrap_err();
            assert_eq!(e.kind, BackendErrorKind::InvalidLocation);
            assert!(e.message.contains(expected), "{given}: {}", e.message);
        }
    }
}
