//! One request, start to end: authenticate, route, apply the server's policy (create-only,
//! append-only, private repositories), act through `LocalBackend`, answer.
//!
//! Invariant: every request that changes storage goes through `LocalBackend::create_parts`,
//! `remove` or `create_layout`, on a route (route.rs) below the served directory; a create
//! never replaces an object (the backend's hard link fails on a taken name, answered 403), and
//! with append-only a remove happens only in `locks/`. Every failure is answered and logged as
//! one line that names the client, the request and the reason, never a credential.

use crate::auth::Credentials;
use crate::body::{read_upload, Body, Limits, ObjectStream, PIECE};
use crate::failure::{log, Failure};
use crate::route::{self, Route, RouteError, Target};
use crate::Authenticator;
use cairn_backend::{Backend, BackendError, BackendErrorKind, FileType, LocalBackend};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use sha2::Digest;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The media type of restic's REST protocol version 2 listings, with sizes.
const V2: &str = "application/vnd.x.restic.rest.v2";
const V1: &str = "application/vnd.x.restic.rest.v1";
/// On every response to a repository's `config`: this server's creates are exclusive (of two
/// clients creating one name, exactly one succeeds), which cairn's garbage collection needs for
/// its verdicts (repo-format.md, 16.4).
pub(crate) const EXCLUSIVE_CREATE: &str = "x-cairn-exclusive-create";

/// What the server serves and how: shared by every connection.
pub(crate) struct State {
    pub(crate) root: PathBuf,
    pub(crate) append_only: bool,
    pub(crate) private_repos: bool,
    pub(crate) auth: Option<Authenticator>,
    pub(crate) limits: Limits,
}

impl Failure {
    fn into_response(self) -> Response<Body> {
        // A server error's details (paths on the server, errno) are for the log alone.
        let text = if self.status.is_server_error() {
            "the server failed to carry out the request; its log says why\n".to_string()
        } else {
            format!("{}\n", self.message)
        };
        let mut r = respond(self.status, Body::bytes(text));
        let headers = r.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"cairn\", charset=\"UTF-8\""),
            );
        }
        if let Some(allow) = self.allow {
            headers.insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        r
    }
}

fn backend_failure(e: BackendError) -> Failure {
    let status = match e.kind {
        BackendErrorKind::NotFound => StatusCode::NOT_FOUND,
        BackendErrorKind::AlreadyExists => StatusCode::FORBIDDEN,
        BackendErrorKind::NoSpace => StatusCode::INSUFFICIENT_STORAGE,
        BackendErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    Failure::new(status, e.message)
}

fn respond(status: StatusCode, body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r
}

/// Answers one request. Never fails: a failure is a response, and is logged.
pub(crate) async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    let mut label = format!(
        "{peer} {} {}",
        req.method(),
        route::shorten(req.uri().path()).escape_debug()
    );
    let mut is_config = false;
    let outcome = match authorize(&state, &req).await {
        Err(f) => Err(f),
        Ok(user) => {
            if let Some(user) = &user {
                label = format!("{label} (user {user})");
            }
            match route_for(&state, &req, user) {
                Err(f) => Err(f),
                Ok(route) => {
                    is_config = route.target == Target::Config;
                    dispatch(&state, route, req, &label).await
                }
            }
        }
    };
    let mut response = outcome.unwrap_or_else(|f| {
        log(format_args!("{label}: {} {}", f.status.as_u16(), f.message));
        f.into_response()
    });
    if is_config {
        response
            .headers_mut()
            .insert(EXCLUSIVE_CREATE, HeaderValue::from_static("1"));
    }
    response
}

/// The authenticated user, or `None` when the server asks for no authentication.
async fn authorize(state: &Arc<State>, req: &Request<Incoming>) -> Result<Option<String>, Failure> {
    let Some(auth) = &state.auth else {
        return Ok(None);
    };
    let credentials = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| Credentials::from_header(v.as_bytes()))
        .ok_or_else(|| Failure::new(StatusCode::UNAUTHORIZED, "authentication required"))?;
    let user = credentials.user.clone();
    // A name that is no user is not repeated: it may be a password typed in the wrong field.
    let refused = if auth.has_user(&user) {
        format!("wrong password for user {user:?}")
    } else {
        "no such user".to_string()
    };
    let state = state.clone();
    let good = blocking(move || state.auth.as_ref().is_some_and(|a| a.check(&credentials))).await?;
    if good {
        Ok(Some(user))
    } else {
        Err(Failure::new(StatusCode::UNAUTHORIZED, refused))
    }
}

/// The request's route, if the path names one this user may reach.
fn route_for(
    state: &State,
    req: &Request<Incoming>,
    user: Option<String>,
) -> Result<Route, Failure> {
    let route = route::parse(req.uri().path()).map_err(|e| match e {
        RouteError::BadPath(why) | RouteError::BadName(why) => {
            Failure::new(StatusCode::BAD_REQUEST, why)
        }
        RouteError::NotFound => Failure::new(StatusCode::NOT_FOUND, "no such path"),
    })?;
    if state.private_repos {
        // `bind` refuses private repositories without authentication, so a user is known.
        let user = user.unwrap_or_default();
        if route.folders.first() != Some(&user) {
            return Err(Failure::new(
                StatusCode::FORBIDDEN,
                format!("user {user:?} may reach only repositories under /{user}/"),
            ));
        }
    }
    Ok(route)
}

async fn dispatch(
    state: &Arc<State>,
    route: Route,
    req: Request<Incoming>,
    label: &str,
) -> Result<Response<Body>, Failure> {
    let (t, name) = match route.target.clone() {
        Target::Repo if req.method() == Method::POST => {
            return create_repo(state, &route, &req).await
        }
        Target::Repo => return Err(Failure::method_not_allowed("POST")),
        Target::List(t) if req.method() == Method::GET => {
            return list(state, &route, t, req.headers()).await
        }
        Target::List(_) => return Err(Failure::method_not_allowed("GET")),
        Target::Config => (FileType::Config, "config".to_string()),
        Target::Object(t, name) => (t, name),
    };
    match req.method().clone() {
        Method::HEAD => read(state, &route, t, name, Want::Length).await,
        Method::GET => {
            let range = req.headers().get(header::RANGE).cloned();
            let label = label.to_string();
            read(state, &route, t, name, Want::Bytes { range, label }).await
        }
        Method::POST => save(state, &route, t, name, req).await,
        Method::DELETE => delete(state, &route, t, name).await,
        _ => Err(Failure::method_not_allowed("HEAD, GET, POST, DELETE")),
    }
}

/// Runs blocking file-system work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Failure> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the request's work failed: {e}"),
        )
    })
}

/// The repository a route names, if its directory exists.
fn open_repo(dir: &Path, route: &Route) -> Result<LocalBackend, Failure> {
    if !dir.is_dir() {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            format!("no repository at /{}", route.folders.join("/")),
        ));
    }
    Ok(LocalBackend::open(dir))
}

/// `POST /repo/?create=true`: makes the repository's directories; a repository that exists
/// is left as it is (the request is idempotent in restic's protocol).
async fn create_repo(
    state: &State,
    route: &Route,
    req: &Request<Incoming>,
) -> Result<Response<Body>, Failure> {
    let create = req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv == "create=true"));
    if !create {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "to create a repository, POST with ?create=true",
        ));
    }
    let dir = route.dir(&state.root);
    let shown = format!("/{}", route.folders.join("/"));
    blocking(move || match LocalBackend::create_layout(&dir) {
        Ok(_) => Ok(respond(StatusCode::OK, Body::empty())),
        Err(e) if e.kind == BackendErrorKind::AlreadyExists && LocalBackend::has_layout(&dir) => {
            Ok(respond(StatusCode::OK, Body::empty()))
        }
        Err(e) if e.kind == BackendErrorKind::AlreadyExists => Err(Failure::new(
            StatusCode::CONFLICT,
            format!("{shown} exists and is not a repository"),
        )),
        Err(e) => Err(backend_failure(e)),
    })
    .await?
}

/// `GET /repo/{type}/`: names (v1) or names and sizes (v2, if the client accepts it).
async fn list(
    state: &State,
    route: &Route,
    t: FileType,
    headers: &HeaderMap,
) -> Result<Response<Body>, Failure> {
    let v2 = headers
        .get_all(header::ACCEPT)
        .iter()
        .any(|v| v.to_str().is_ok_and(|s| s.contains(V2)));
    let (dir, route) = (route.dir(&state.root), route.clone());
    let mut entries =
        blocking(move || open_repo(&dir, &route)?.list(t).map_err(backend_failure)).await??;
    // Only names a client can ask for: the backend lists any regular file.
    entries.retain(|e| route::valid_name(&e.name));
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    // Names are hex digits, so they need no escaping in JSON.
    let items: Vec<String> = entries
        .iter()
        .map(|e| match v2 {
            true => format!("{{\"name\":\"{}\",\"size\":{}}}", e.name, e.size),
            false => format!("\"{}\"", e.name),
        })
        .collect();
    let mut r = respond(
        StatusCode::OK,
        Body::bytes(format!("[{}]", items.join(","))),
    );
    let media = if v2 { V2 } else { V1 };
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
    Ok(r)
}

/// What a read asks of an object.
enum Want {
    /// `HEAD`: its length.
    Length,
    /// `GET`: its bytes, or those of the range the `Range` header names; `label` names the
    /// request in the log line of a read that fails after the headers went out.
    Bytes {
        range: Option<HeaderValue>,
        label: String,
    },
}

/// `HEAD` or `GET` of an object, whole or a range of it.
async fn read(
    state: &State,
    route: &Route,
    t: FileType,
    name: String,
    want: Want,
) -> Result<Response<Body>, Failure> {
    let (dir, route) = (route.dir(&state.root), route.clone());
    blocking(move || {
        let backend = Arc::new(open_repo(&dir, &route)?);
        let size = backend.size(t, &name).map_err(|e| match e.kind {
            BackendErrorKind::NotFound => not_found(t, &name),
            _ => backend_failure(e),
        })?;
        let (range, label) = match want {
            Want::Bytes { range, label } => (range, label),
            Want::Length => {
                let mut r = respond(StatusCode::OK, Body::empty());
                set_length(r.headers_mut(), size);
                return Ok(r);
            }
        };
        let (status, start, len) = match parse_range(range.as_ref(), size) {
            Ok(None) => (StatusCode::OK, 0, size),
            Ok(Some((start, len))) => (StatusCode::PARTIAL_CONTENT, start, len),
            Err(()) => {
                let mut r = Failure::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    format!("the object has {size} bytes; give one range bytes=a-b within them"),
                )
                .into_response();
                r.headers_mut()
                    .insert(header::CONTENT_RANGE, value(format!("bytes */{size}")));
                return Ok(r);
            }
        };
        let first_len = len.min(PIECE);
        let first = match first_len {
            0 => None,
            _ => Some(
                backend
                    .read_range(t, &name, start, first_len)
                    .map_err(backend_failure)?
                    .into(),
            ),
        };
        let stream = ObjectStream {
            backend,
            file_type: t,
            name,
            first,
            next: start + first_len,
            end: start + len,
            pending: None,
            label,
        };
        let mut r = respond(status, Body::Object(stream));
        set_length(r.headers_mut(), len);
        if status == StatusCode::PARTIAL_CONTENT {
            let last = start + len - 1;
            r.headers_mut().insert(
                header::CONTENT_RANGE,
                value(format!("bytes {start}-{last}/{size}")),
            );
        }
        Ok(r)
    })
    .await?
}

fn not_found(t: FileType, name: &str) -> Failure {
    let what = match t {
        FileType::Config => "config".to_string(),
        _ => format!("{} {name}", t.noun()),
    };
    Failure::new(StatusCode::NOT_FOUND, format!("no {what}"))
}

fn value(s: String) -> HeaderValue {
    // Digits, spaces, `-`, `*` and `/` only: always a valid header value.
    HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn set_length(headers: &mut HeaderMap, len: u64) {
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
}

/// The one range `bytes=a-b`, `bytes=a-` or `bytes=-n` of a `Range` header as (start, length);
/// `None` for no header or a unit other than bytes (the whole object); `Err` for a range that
/// does not fit the object or that this server does not serve (several at once, or garbage).
pub(crate) fn parse_range(
    header: Option<&HeaderValue>,
    size: u64,
) -> Result<Option<(u64, u64)>, ()> {
    let Some(h) = header else {
        return Ok(None);
    };
    let h = h.to_str().map_err(|_| ())?.trim();
    let Some(spec) = h.strip_prefix("bytes=") else {
        return Ok(None);
    };
    let (a, b) = spec.trim().split_once('-').ok_or(())?;
    let number = |s: &str| -> Result<u64, ()> {
        let s = s.trim();
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(());
        }
        s.parse().map_err(|_| ())
    };
    let (start, end) = if a.trim().is_empty() {
        let n = number(b)?.min(size);
        if n == 0 {
            return Err(());
        }
        (size - n, size - 1)
    } else {
        let start = number(a)?;
        let end = match b.trim() {
            "" => size.saturating_sub(1),
            b => number(b)?.min(size.saturating_sub(1)),
        };
        if start >= size || end < start {
            return Err(());
        }
        (start, end)
    };
    Ok(Some((start, end - start + 1)))
}

/// Whether objects of a type are named by the SHA-256 of their bytes (repo-format.md,
/// "Layout"; restic names them the same way), so that an upload can be checked against its
/// name. `config` has a fixed name, and a verdict in `locks/` is named by its session.
fn named_by_content(t: FileType) -> bool {
    !matches!(t, FileType::Config | FileType::Lock)
}

/// `POST` of an object: create-only, taken in whole, checked against its name where it is
/// named by its content.
async fn save(
    state: &Arc<State>,
    route: &Route,
    t: FileType,
    name: String,
    req: Request<Incoming>,
) -> Result<Response<Body>, Failure> {
    let declared = match req.headers().get(header::CONTENT_LENGTH) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| Failure::new(StatusCode::BAD_REQUEST, "invalid Content-Length"))?,
        ),
    };
    let taken = || {
        Failure::new(
            StatusCode::FORBIDDEN,
            format!(
                "{} {name} exists, and nothing is ever overwritten",
                t.noun()
            ),
        )
    };
    let (dir, r, n) = (route.dir(&state.root), route.clone(), name.clone());
    // Answered before the body is read: a taken name costs the client no upload.
    let backend = blocking(move || {
        let backend = open_repo(&dir, &r)?;
        match backend.size(t, &n) {
            Ok(_) => Ok(None),
            Err(e) if e.kind == BackendErrorKind::NotFound => Ok(Some(backend)),
            Err(e) => Err(backend_failure(e)),
        }
    })
    .await??
    .ok_or_else(taken)?;
    let upload = read_upload(req.into_body(), declared, &state.limits).await?;
    let n = name.clone();
    blocking(move || {
        if named_by_content(t) {
            let mut hasher = sha2::Sha256::new();
            for part in &upload.parts {
                hasher.update(part);
            }
            if hex::encode(hasher.finalize()) != n {
                return Err(Failure::new(
                    StatusCode::BAD_REQUEST,
                    format!("the body's SHA-256 is not its name {n}: damaged in transit?"),
                ));
            }
        }
        backend
            .create_parts(t, &n, &upload.slices())
            .map_err(backend_failure)
    })
    .await?
    .map_err(|f| match f.status {
        StatusCode::FORBIDDEN => taken(),
        _ => f,
    })?;
    Ok(respond(StatusCode::OK, Body::empty()))
}

/// `DELETE` of an object; with append-only, of a lock alone.
async fn delete(
    state: &State,
    route: &Route,
    t: FileType,
    name: String,
) -> Result<Response<Body>, Failure> {
    if state.append_only && t != FileType::Lock {
        return Err(Failure::new(
            StatusCode::FORBIDDEN,
            format!(
                "the server is append-only: it removes locks, never a {}",
                t.noun()
            ),
        ));
    }
    let (dir, route) = (route.dir(&state.root), route.clone());
    blocking(move || {
        open_repo(&dir, &route)?
            .remove(t, &name)
            .map_err(|e| match e.kind {
                BackendErrorKind::NotFound => not_found(t, &name),
                _ => backend_failure(e),
            })
    })
    .await??;
    Ok(respond(StatusCode::OK, Body::empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(s: &str, size: u64) -> Result<Option<(u64, u64)>, ()> {
        parse_range(Some(&HeaderValue::from_str(s).unwrap()), size)
    }

    #[test]
    fn ranges_are_clamped_to_the_object_or_refused() {
        assert_eq!(parse_range(None, 10), Ok(None));
        assert_eq!(range("bytes=0-3", 10), Ok(Some((0, 4))));
        assert_eq!(range("bytes=2-", 10), Ok(Some((2, 8))));
        assert_eq!(range("bytes=5-100", 10), Ok(Some((5, 5))));
        assert_eq!(range("bytes=-3", 10), Ok(Some((7, 3))));
        assert_eq!(range("bytes=-30", 10), Ok(Some((0, 10))));
        assert_eq!(range("bytes=9-9", 10), Ok(Some((9, 1))));
        assert_eq!(range("items=0-3", 10), Ok(None));
        for bad in [
            "bytes=10-",
            "bytes=10-12",
            "bytes=4-3",
            "bytes=-0",
            "bytes=0-1,3-4",
            "bytes=x-3",
            "bytes=+1-3",
            "bytes=",
            "bytes=99999999999999999999-",
        ] {
            assert_eq!(range(bad, 10), Err(()), "{bad}");
        }
        assert_eq!(range("bytes=0-", 0), Err(()));
    }
}
