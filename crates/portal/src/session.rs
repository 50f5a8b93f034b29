//! Who is asking: the session cookie, the signed-in user, and the CSRF token of the forms.
//!
//! - A session is a random 256-bit token in an `HttpOnly`, `SameSite=Lax` cookie scoped to
//!   `/portal` (`Secure` when the request came over TLS, as `X-Forwarded-Proto: https` says).
//!   The store keeps only its SHA-256 (a state document: no configuration revision), under
//!   the user's id, with the expiry and the session's CSRF token. Signing out revokes it;
//!   changing the password revokes every session of the user.
//! - Every form carries a CSRF token. Signed in, it is the session's token (session-bound);
//!   anonymous (sign-in and sign-up forms), it is the value of a separate `gh_csrf` cookie
//!   (double submit). [`Posted`] checks it before a POST handler sees the form.

use std::sync::Arc;

use aws_lc_rs::{constant_time, digest, rand};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatehouse_model::resources::{Resource, User, UserState};
use gatehouse_store::{JsonRecord, Kind, Stored};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::Portal;
use crate::error::{PortalError, PortalResult};

pub const SESSION_COOKIE: &str = "gh_session";
pub const CSRF_COOKIE: &str = "gh_csrf";
/// The form field (or `X-CSRF-Token` header) that carries the token.
pub const CSRF_FIELD: &str = "csrf";

/// A session as stored (parent = user id, id = SHA-256 of the token, hex). Sessions from
/// before sessions were kept under their user have parent "".
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredSession {
    user_id: String,
    csrf: String,
    /// Unix seconds.
    expires: i64,
    #[serde(default)]
    revoked: bool,
}

impl JsonRecord for StoredSession {
    const KIND: Kind = Kind::PortalSession;
}

/// 32 random bytes, URL-safe base64 (43 characters).
pub fn random_token() -> PortalResult<String> {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes)
        .map_err(|_| PortalError::Internal("the random generator failed".into()))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// Random lower-case hex, for identifiers.
pub fn random_hex(bytes: usize) -> PortalResult<String> {
    let mut buf = vec![0u8; bytes];
    rand::fill(&mut buf)
        .map_err(|_| PortalError::Internal("the random generator failed".into()))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

pub(crate) fn token_id(token: &str) -> String {
    digest::digest(&digest::SHA256, token.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(crate) fn looks_like_token(value: &str) -> bool {
    value.len() == 43
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The value of cookie `name`, from every `Cookie` header.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// Whether the request reached us over TLS, directly or through a proxy that says so.
pub(crate) fn came_over_tls(parts: &Parts) -> bool {
    parts.uri.scheme_str() == Some("https")
        || parts
            .headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
}

/// A `Set-Cookie` value for one of the portal's cookies; `None` clears it.
pub fn set_cookie(
    name: &str,
    value: Option<&str>,
    max_age: i64,
    secure: bool,
) -> Option<HeaderValue> {
    let (value, max_age) = match value {
        Some(v) => (v, max_age),
        None => ("", 0),
    };
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/portal; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .ok()
}

/// The visitor of one request.
#[derive(Debug, Clone)]
pub struct Visitor {
    pub user: Option<User>,
    session_id: Option<String>,
    /// The CSRF token the visitor's forms carry.
    pub csrf: String,
    /// A fresh anonymous CSRF token to set as a cookie on the response.
    new_csrf: bool,
    /// A session cookie that no longer works, to clear.
    stale_session: bool,
    pub secure: bool,
    /// The peer address (not `X-Forwarded-For`, which anyone can write).
    pub ip: String,
    /// Sent by htmx: answer with a fragment.
    pub htmx: bool,
}

impl Visitor {
    pub fn user(&self) -> PortalResult<&User> {
        self.user.as_ref().ok_or(PortalError::SignInRequired)
    }

    /// Adds the cookies this visit needs to a response.
    pub fn finish(&self, mut response: Response) -> Response {
        let headers = response.headers_mut();
        if self.new_csrf
            && let Some(v) = set_cookie(CSRF_COOKIE, Some(&self.csrf), 86_400, self.secure)
        {
            headers.append(header::SET_COOKIE, v);
        }
        if self.stale_session
            && let Some(v) = set_cookie(SESSION_COOKIE, None, 0, self.secure)
        {
            headers.append(header::SET_COOKIE, v);
        }
        response
    }

    /// Starts a session for `user_id` and returns the cookie to set. A new token each time,
    /// so a token planted before sign-in is worth nothing after.
    pub async fn sign_in(&self, portal: &Portal, user_id: &str) -> PortalResult<HeaderValue> {
        let token = random_token()?;
        let ttl = i64::try_from(portal.config.session_ttl.as_secs()).unwrap_or(43_200);
        let session = StoredSession {
            user_id: user_id.to_owned(),
            csrf: random_token()?,
            expires: now() + ttl,
            revoked: false,
        };
        portal
            .store
            .repo::<StoredSession>()
            .put_state(user_id, &token_id(&token), &session)
            .await?;
        set_cookie(SESSION_COOKIE, Some(&token), ttl, self.secure)
            .ok_or_else(|| PortalError::Internal("cannot build the session cookie".into()))
    }

    /// Revokes the session and returns the cookie that clears it.
    pub async fn sign_out(&self, portal: &Portal) -> PortalResult<Option<HeaderValue>> {
        if let Some(id) = &self.session_id {
            let sessions = portal.store.repo::<StoredSession>().lenient();
            if let Some(session) = sessions.find_by_id(id).await?.into_iter().next() {
                revoke(portal, session).await?;
            }
        }
        Ok(set_cookie(SESSION_COOKIE, None, 0, self.secure))
    }

    /// Ends every session of the signed-in user, this one included, and starts a new one for
    /// this visitor: after a password change, a session someone else holds is worth nothing.
    /// Returns the new session's cookie.
    pub async fn rotate_after_password_change(&self, portal: &Portal) -> PortalResult<HeaderValue> {
        let user = self.user()?;
        // Sessions that do not read are no sessions: nothing to end.
        let stored = portal.store.repo::<StoredSession>().lenient();
        let mut sessions = stored.entries(&user.id).await?;
        // Sessions started before sessions were kept under their user.
        sessions.extend(
            stored
                .entries("")
                .await?
                .into_iter()
                .filter(|s| s.value.user_id == user.id),
        );
        for session in sessions {
            revoke(portal, session).await?;
        }
        self.sign_in(portal, &user.id).await
    }

    pub fn csrf_matches(&self, presented: &str) -> bool {
        !presented.is_empty()
            && !self.new_csrf
            && constant_time::verify_slices_are_equal(presented.as_bytes(), self.csrf.as_bytes())
                .is_ok()
    }
}

/// Marks a stored session revoked (and its CSRF token unusable).
async fn revoke(portal: &Portal, stored: Stored<StoredSession>) -> PortalResult<()> {
    let Stored {
        parent,
        id,
        value: mut session,
    } = stored;
    if session.revoked {
        return Ok(());
    }
    session.revoked = true;
    session.csrf = random_token()?;
    portal
        .store
        .repo::<StoredSession>()
        .put_state(&parent, &id, &session)
        .await?;
    Ok(())
}

async fn active_session(
    portal: &Portal,
    token: &str,
) -> PortalResult<Option<(String, StoredSession, User)>> {
    if !looks_like_token(token) {
        return Ok(None);
    }
    let id = token_id(token);
    // A session that does not read is no session.
    let sessions = portal.store.repo::<StoredSession>().lenient();
    let Some(Stored {
        parent,
        value: session,
        ..
    }) = sessions.find_by_id(&id).await?.pop()
    else {
        return Ok(None);
    };
    if parent != session.user_id && !parent.is_empty() {
        return Ok(None);
    }
    if session.revoked || session.expires <= now() {
        return Ok(None);
    }
    let Some(user) = portal.load_opt::<User>(&session.user_id).await? else {
        return Ok(None);
    };
    if user.state != UserState::Active || user.id() != session.user_id {
        return Ok(None);
    }
    Ok(Some((id, session, user)))
}

impl FromRequestParts<Arc<Portal>> for Visitor {
    type Rejection = PortalError;

    async fn from_request_parts(parts: &mut Parts, portal: &Arc<Portal>) -> PortalResult<Self> {
        if let Some(v) = parts.extensions.get::<Visitor>() {
            return Ok(v.clone());
        }
        let secure = came_over_tls(parts);
        let ip = parts
            .extensions
            .get::<ConnectInfo<std::net::SocketAddr>>()
            .map_or_else(|| "unknown".to_owned(), |c| c.0.ip().to_string());
        // A history restore wants the whole page, although htmx sends it.
        let htmx = parts.headers.contains_key("hx-request")
            && !parts.headers.contains_key("hx-history-restore-request");
        let presented = cookie(&parts.headers, SESSION_COOKIE).map(str::to_owned);
        let session = match &presented {
            Some(token) => active_session(portal, token).await?,
            None => None,
        };
        let visitor = match session {
            Some((id, session, user)) => Visitor {
                user: Some(user),
                session_id: Some(id),
                csrf: session.csrf,
                new_csrf: false,
                stale_session: false,
                secure,
                ip,
                htmx,
            },
            None => {
                let existing = cookie(&parts.headers, CSRF_COOKIE)
                    .filter(|v| looks_like_token(v))
                    .map(str::to_owned);
                let new_csrf = existing.is_none();
                Visitor {
                    user: None,
                    session_id: None,
                    csrf: match existing {
                        Some(v) => v,
                        None => random_token()?,
                    },
                    new_csrf,
                    stale_session: presented.is_some(),
                    secure,
                    ip,
                    htmx,
                }
            }
        };
        parts.extensions.insert(visitor.clone());
        Ok(visitor)
    }
}

#[derive(Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

/// A form POST whose CSRF token has been checked: the visitor and the parsed form.
#[derive(Debug)]
pub struct Posted<T> {
    pub visitor: Visitor,
    pub form: T,
}

impl<T: DeserializeOwned> FromRequest<Arc<Portal>> for Posted<T> {
    type Rejection = PortalError;

    async fn from_request(req: Request, portal: &Arc<Portal>) -> PortalResult<Self> {
        let (mut parts, body) = req.into_parts();
        let visitor = Visitor::from_request_parts(&mut parts, portal).await?;
        let header_token = parts
            .headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = Bytes::from_request(Request::from_parts(parts, body), portal)
            .await
            .map_err(|_| PortalError::BadRequest("The form could not be read.".into()))?;
        let field = serde_urlencoded::from_bytes::<CsrfField>(&bytes)
            .map(|f| f.csrf)
            .unwrap_or_default();
        let presented = if field.is_empty() {
            header_token.unwrap_or_default()
        } else {
            field
        };
        if !visitor.csrf_matches(&presented) {
            tracing::warn!(ip = %visitor.ip, "portal form refused: missing or wrong CSRF token");
            return Err(PortalError::Csrf);
        }
        let form = serde_urlencoded::from_bytes::<T>(&bytes).map_err(|e| {
            PortalError::BadRequest(format!("The form is incomplete or malformed: {e}."))
        })?;
        Ok(Posted { visitor, form })
    }
}
