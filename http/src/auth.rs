//! Who may use the API: a bearer token for scripts, a signed session cookie for the dashboard.
//!
//! Authentication is on by default, for reads and subscriptions too: positions, orders and
//! profit are nobody else's business. Without a configured token, `run` makes a random one at
//! first start and keeps it in a file only its owner can read ([`load_or_create_token`]).
//! The dashboard trades the token for a session once (`POST /api/session`), kept in an
//! HttpOnly, SameSite=Strict cookie: no script on the page can read it, no other site's page
//! can send it, and the token never stays in a link or the page. `/api/health` and the
//! dashboard's static files answer everyone. Authentication can be switched off, on a
//! loopback address only (`http.auth = "off"`).
//!
//! The session cookie is signed with a key derived from the tokens, so it cannot be forged
//! without one, and changing any token ends every session. It names the token it was opened
//! with, so the audit trail says who acted through the dashboard.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use axum_extra::extract::cookie::{Cookie, Key, SameSite, SignedCookieJar};
use serde_json::json;
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

use super::{Api, ApiError};
use hedgehog_engine::actor::Actor;

/// How long a dashboard session lasts before the token must be given again.
pub const SESSION_DAYS: i64 = 7;
const SESSION_MS: i64 = SESSION_DAYS * 24 * 3600 * 1000;

/// Shortest token accepted: 16 characters of a random token are 64+ bits.
pub const MIN_TOKEN_LEN: usize = 16;

/// The name the configured or generated token goes by in the audit trail.
pub const DEFAULT_TOKEN_NAME: &str = "default";

/// The API's tokens by name, or authentication off.
#[derive(Clone)]
pub struct Auth {
    /// `(name, token)`; empty when authentication is off.
    tokens: Arc<[(String, String)]>,
    /// Signs session cookies.
    key: Key,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.tokens.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Auth").field("tokens", &names).finish()
    }
}

/// A token refused at start.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("API token {name:?} is {len} characters long; use at least {MIN_TOKEN_LEN} (say, the output of `openssl rand -hex 32`)")]
    TooShort { name: String, len: usize },
    #[error("API token name {0:?} is not a name: use letters, digits, `-`, `_` and `.`")]
    BadName(String),
    #[error("API tokens {0:?} and {1:?} are the same token: each must be its own")]
    Shared(String, String),
    #[error("cannot read or create the API token file {path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the API token file {path} can be read by others (mode {mode:o}): run `chmod 600 {path}`, or delete it to make a new token")]
    Exposed { path: PathBuf, mode: u32 },
    #[error("the API token file {path} holds no token: delete it to make a new one")]
    EmptyFile { path: PathBuf },
}

impl Auth {
    /// Everything answers: for a loopback address only (see [`super::check_bind`]).
    pub fn off() -> Auth {
        Auth {
            tokens: Arc::from(Vec::new()),
            key: Key::from(&Sha512::digest(b"hedgehog: authentication off")),
        }
    }

    /// Requests must carry one of `tokens` (`(name, token)`), or a session opened with one.
    pub fn with_tokens(tokens: Vec<(String, String)>) -> Result<Auth, AuthError> {
        let mut key = Sha512::new();
        key.update(b"hedgehog dashboard session\0");
        for (i, (name, token)) in tokens.iter().enumerate() {
            let good_name = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !good_name {
                return Err(AuthError::BadName(name.clone()));
            }
            if token.chars().count() < MIN_TOKEN_LEN {
                return Err(AuthError::TooShort {
                    name: name.clone(),
                    len: token.chars().count(),
                });
            }
            if let Some((other, _)) = tokens[..i].iter().find(|(_, t)| t == token) {
                return Err(AuthError::Shared(other.clone(), name.clone()));
            }
            key.update(name.as_bytes());
            key.update(b"\0");
            key.update(token.as_bytes());
            key.update(b"\0");
        }
        Ok(Auth {
            tokens: Arc::from(tokens),
            key: Key::from(&key.finalize()),
        })
    }

    pub fn is_off(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The name of the token `given` is, compared in constant time with every token.
    fn name_of(&self, given: &str) -> Option<&str> {
        let mut found = None;
        for (name, token) in self.tokens.iter() {
            if bool::from(token.as_bytes().ct_eq(given.as_bytes())) {
                found = Some(name.as_str());
            }
        }
        found
    }

    fn has_name(&self, name: &str) -> bool {
        self.tokens.iter().any(|(n, _)| n == name)
    }
}

/// Where `run` keeps the token it makes when none is configured: beside a SQLite database
/// file (`hedgehog.db` → `hedgehog.api-token`), else in the user's configuration directory
/// (`~/.config/hedgehog/api-token`).
pub fn default_token_file(database_url: &str) -> Option<PathBuf> {
    let beside_db = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))
        .map(|rest| rest.split('?').next().unwrap_or(rest))
        .filter(|path| !path.is_empty() && !path.starts_with(":memory:"))
        .map(|path| Path::new(path).with_extension("api-token"));
    beside_db.or_else(|| dirs::config_dir().map(|d| d.join("hedgehog").join("api-token")))
}

/// The token kept in `path`, made (32 random bytes, hex) and written readable by its owner only
/// when there is none yet; true when it was made now. A file others can read is refused.
pub fn load_or_create_token(path: &Path) -> Result<(String, bool), AuthError> {
    let file_error = |source| AuthError::File {
        path: path.to_owned(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            check_private(path)?;
            let token = text.trim().to_owned();
            if token.is_empty() {
                return Err(AuthError::EmptyFile {
                    path: path.to_owned(),
                });
            }
            Ok((token, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(file_error)?;
            }
            let token = hex::encode(rand::random::<[u8; 32]>());
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            match options.open(path) {
                Ok(mut file) => {
                    writeln!(file, "{token}").map_err(file_error)?;
                    file.sync_all().map_err(file_error)?;
                    Ok((token, true))
                }
                // Another process made it first: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    load_or_create_token(path)
                }
                Err(e) => Err(file_error(e)),
            }
        }
        Err(e) => Err(file_error(e)),
    }
}

#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), AuthError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|source| AuthError::File {
            path: path.to_owned(),
            source,
        })?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(AuthError::Exposed {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &Path) -> Result<(), AuthError> {
    Ok(())
}

/// The session cookie's name: one per port, since cookies do not tell ports apart and two
/// engines on one host must not end each other's sessions.
fn cookie_name(api: &Api) -> String {
    format!(
        "hedgehog_session_{}",
        api.allowed.bound.map_or(0, |b| b.port())
    )
}

/// What answers everyone: the health check and the dashboard's static files (which hold no
/// data: the page asks the API, which asks for the session).
fn is_public(method: &Method, path: &str) -> bool {
    (method == Method::GET || method == Method::HEAD)
        && (path == "/api/health" || path == "/" || path.starts_with("/assets/"))
}

/// A 401 (its answer says how to authenticate: `WWW-Authenticate: Bearer`).
fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, message)
}

/// Authenticates every request but the public ones, and hands the handlers who sent it (an
/// [`Actor`], for the audit trail).
pub(super) async fn authenticate(
    State(api): State<Api>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    if is_public(request.method(), request.uri().path()) {
        return next.run(request).await;
    }
    let actor = if api.auth.is_off() {
        Actor::http("anonymous", client, false)
    } else {
        match caller(&api, request.headers(), request.method()) {
            Ok(actor) => Actor { client, ..actor },
            Err(refused) => return refused.into_response(),
        }
    };
    request.extensions_mut().insert(actor);
    next.run(request).await
}

/// Who sent a request: the bearer token's name, or the session cookie's.
fn caller(api: &Api, headers: &HeaderMap, method: &Method) -> Result<Actor, ApiError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let given = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        return match api.auth.name_of(given.trim()) {
            Some(name) => Ok(Actor::http(name, None, false)),
            None => Err(unauthorized(
                "the API token sent (`Authorization: Bearer ...`) is not this server's",
            )),
        };
    }
    let jar = SignedCookieJar::from_headers(headers, api.auth.key.clone());
    let Some(cookie) = jar.get(&cookie_name(api)) else {
        return Err(unauthorized(
            "this request needs the API token: send `Authorization: Bearer TOKEN`, or open the \
             dashboard with the link `hedgehog run` printed (its output says where the token is kept)",
        ));
    };
    let session = cookie
        .value()
        .split_once('.')
        .and_then(|(expires, name)| Some((expires.parse::<i64>().ok()?, name)));
    let now = (api.clock)().0;
    match session {
        Some((expires, name)) if expires > now && api.auth.has_name(name) => {
            // A browser sends Origin with every state change; one without it did not come
            // from our page (which the guard has already checked it against).
            if super::changes_state(method) && !headers.contains_key(header::ORIGIN) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "a change made with the dashboard's session must come from the dashboard's \
                     page (it has no Origin header); scripts send `Authorization: Bearer TOKEN`",
                ));
            }
            Ok(Actor::http(name, None, true))
        }
        _ => Err(unauthorized(
            "the dashboard's session has ended: open the dashboard with the link `hedgehog run` \
             printed, or give the token again",
        )),
    }
}

/// `POST /api/session`: trades the bearer token for the dashboard's session cookie.
pub(super) async fn open_session(
    State(api): State<Api>,
    Extension(actor): Extension<Actor>,
) -> Result<Response, ApiError> {
    if api.auth.is_off() {
        return Ok(Json(json!({"name": actor.by, "auth": "off"})).into_response());
    }
    if actor.via != "http" {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "a session is opened with the API token (`Authorization: Bearer TOKEN`), not with another session",
        ));
    }
    let expires = (api.clock)().0 + SESSION_MS;
    let cookie = Cookie::build((cookie_name(&api), format!("{expires}.{}", actor.by)))
        .http_only(true)
        .same_site(SameSite::Strict)
        .path("/")
        .max_age(cookie::time::Duration::milliseconds(SESSION_MS));
    let jar = SignedCookieJar::new(api.auth.key.clone()).add(cookie);
    tracing::info!(by = %actor.by, client = ?actor.client, "dashboard session opened");
    Ok((
        jar,
        Json(json!({"name": actor.by, "auth": "token", "expires_at": expires})),
    )
        .into_response())
}

/// `GET /api/session`: who the request is authenticated as (the dashboard asks at load).
pub(super) async fn session(
    State(api): State<Api>,
    Extension(actor): Extension<Actor>,
) -> Json<serde_json::Value> {
    let auth = if api.auth.is_off() { "off" } else { "token" };
    Json(json!({"name": actor.by, "via": actor.via, "auth": auth}))
}

/// `DELETE /api/session`: signs the dashboard out.
pub(super) async fn close_session(State(api): State<Api>, headers: HeaderMap) -> Response {
    // From the request's cookies: the jar only clears a cookie it was sent.
    let jar = SignedCookieJar::from_headers(&headers, api.auth.key.clone())
        .remove(Cookie::build(cookie_name(&api)).path("/"));
    (jar, Json(json!({"signed_out": true}))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth::with_tokens(vec![
            ("default".into(), "0123456789abcdef0123".into()),
            ("desk".into(), "fedcba9876543210fedc".into()),
        ])
        .unwrap()
    }

    #[test]
    fn tokens_compare_whole_and_name_their_owner() {
        let auth = auth();
        assert_eq!(auth.name_of("0123456789abcdef0123"), Some("default"));
        assert_eq!(auth.name_of("fedcba9876543210fedc"), Some("desk"));
        assert_eq!(auth.name_of("0123456789abcdef012"), None);
        assert_eq!(auth.name_of("0123456789abcdef01234"), None);
        assert_eq!(auth.name_of(""), None);
        assert!(Auth::off().name_of("").is_none());
    }

    #[test]
    fn weak_shared_or_misnamed_tokens_are_refused() {
        let short = Auth::with_tokens(vec![("default".into(), "s3cret".into())]).unwrap_err();
        assert!(short.to_string().contains("at least 16"), "{short}");
        let shared = Auth::with_tokens(vec![
            ("a".into(), "0123456789abcdef0123".into()),
            ("b".into(), "0123456789abcdef0123".into()),
        ])
        .unwrap_err();
        assert!(matches!(shared, AuthError::Shared(..)), "{shared}");
        let named = Auth::with_tokens(vec![("a b".into(), "0123456789abcdef0123".into())]);
        assert!(matches!(named, Err(AuthError::BadName(_))));
    }

    #[test]
    fn the_token_file_is_made_once_for_its_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("hedgehog.api-token");
        let (token, made) = load_or_create_token(&path).unwrap();
        assert!(made);
        assert_eq!(token.len(), 64);
        let (again, made) = load_or_create_token(&path).unwrap();
        assert_eq!((again.as_str(), made), (token.as_str(), false));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let err = load_or_create_token(&path).unwrap_err();
            assert!(err.to_string().contains("chmod 600"), "{err}");
        }
    }

    #[test]
    fn the_token_lives_beside_a_database_file() {
        assert_eq!(
            default_token_file("sqlite://data/hedgehog.db"),
            Some(PathBuf::from("data/hedgehog.api-token"))
        );
        assert_eq!(
            default_token_file("sqlite:hedgehog.db?mode=rwc"),
            Some(PathBuf::from("hedgehog.api-token"))
        );
        let pg = default_token_file("postgres://localhost/test");
        assert!(pg.is_none_or(|p| p.ends_with("hedgehog/api-token")));
    }
}
