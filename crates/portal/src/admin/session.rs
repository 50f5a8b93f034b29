//! Who may see the console: a session started by signing in with the admin token, or the
//! token itself in `Authorization: Bearer …`.
//!
//! - Signing in checks the token (throttled per client address) and sets a random 256-bit
//!   session id in an `HttpOnly`, `SameSite=Strict` cookie scoped to `/admin` (`Secure` over
//!   TLS). The token never goes into a cookie. The store keeps only the id's SHA-256 (a state
//!   document, no configuration revision) with the expiry, the session's CSRF token and the
//!   admin token's generation, so changing the admin token ends every session.
//! - The sign-in form carries a CSRF token from a separate cookie (double submit); sign-out is
//!   a POST carrying the session's CSRF token, and revokes the session in the store.

use std::net::SocketAddr;
use std::sync::Arc;

use aws_lc_rs::constant_time;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use gatehouse_store::{JsonRecord, Kind};
use minijinja::context;
use serde::{Deserialize, Serialize};

use super::{Console, error_response};
use crate::error::{PortalError, PortalResult};
use crate::session::{came_over_tls, cookie, looks_like_token, random_token, token_id};

pub const SESSION_COOKIE: &str = "gh_admin";
pub const CSRF_COOKIE: &str = "gh_admin_csrf";
/// A console session as stored (parent "", id = SHA-256 of the cookie's value, hex).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredSession {
    csrf: String,
    /// Unix seconds.
    expires: i64,
    generation: String,
    #[serde(default)]
    revoked: bool,
}

impl JsonRecord for StoredSession {
    const KIND: Kind = Kind::AdminSession;
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn set_cookie(name: &str, value: Option<&str>, max_age: i64, secure: bool) -> Option<HeaderValue> {
    let (value, max_age) = match value {
        Some(v) => (v, max_age),
        None => ("", 0),
    };
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .ok()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
                .unwrap_or("")
                .trim()
        })
}

/// A signed-in administrator.
#[derive(Debug, Clone)]
pub struct Admin {
    /// The session's CSRF token for the sign-out form; `None` when signed in by bearer token.
    pub csrf: Option<String>,
    session_id: Option<String>,
    secure: bool,
}

async fn active_session(
    console: &Console,
    token: &str,
) -> PortalResult<Option<(String, StoredSession)>> {
    if !looks_like_token(token) {
        return Ok(None);
    }
    let id = token_id(token);
    // A session that does not read is no session.
    let sessions = console.store.repo::<StoredSession>().lenient();
    let Some(session) = sessions.get("", &id).await? else {
        return Ok(None);
    };
    let current = console.backend.admin_generation();
    let same_token =
        constant_time::verify_slices_are_equal(session.generation.as_bytes(), current.as_bytes())
            .is_ok();
    if session.revoked || session.expires <= now() || !same_token {
        return Ok(None);
    }
    Ok(Some((id, session)))
}

/// Where to go back to after signing in: a console path, nothing else.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with("/admin/")
                && !n.starts_with("//")
                && !n.contains(['\\', '\r', '\n'])
                && !n.starts_with("/admin/signin")
                && !n.starts_with("/admin/signout") =>
        {
            n.to_owned()
        }
        _ => "/admin/".to_owned(),
    }
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl FromRequestParts<Arc<Console>> for Admin {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        console: &Arc<Console>,
    ) -> Result<Self, Response> {
        let secure = came_over_tls(parts);
        if let Some(token) = bearer(&parts.headers) {
            if !token.is_empty() && console.backend.admin_token_matches(token) {
                return Ok(Admin {
                    csrf: None,
                    session_id: None,
                    secure,
                });
            }
            let mut refused = error_response(
                console,
                StatusCode::UNAUTHORIZED,
                "The bearer token is not the admin token. It is in <data>/admin-token, or sign in at /admin/signin.",
            );
            refused
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return Err(refused);
        }
        let presented = cookie(&parts.headers, SESSION_COOKIE).map(str::to_owned);
        if let Some(token) = &presented {
            match active_session(console, token).await {
                Ok(Some((id, session))) => {
                    return Ok(Admin {
                        csrf: Some(session.csrf),
                        session_id: Some(id),
                        secure,
                    });
                }
                Ok(None) => {}
                Err(e) => return Err(e.into_response()),
            }
        }
        let next = parts.uri.path_and_query().map_or("/admin/", |p| p.as_str());
        let mut response =
            Redirect::to(&format!("/admin/signin?next={}", percent_encode(next))).into_response();
        if presented.is_some()
            && let Some(v) = set_cookie(SESSION_COOKIE, None, 0, secure)
        {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
        Err(response)
    }
}

#[derive(Debug, Deserialize)]
pub struct SignInQuery {
    next: Option<String>,
    /// Set after signing out, for the notice.
    signed_out: Option<String>,
}

/// The anonymous CSRF token for the sign-in form: the cookie's, or a fresh one to set.
fn form_csrf(headers: &HeaderMap) -> PortalResult<(String, bool)> {
    match cookie(headers, CSRF_COOKIE).filter(|v| looks_like_token(v)) {
        Some(v) => Ok((v.to_owned(), false)),
        None => Ok((random_token()?, true)),
    }
}

const WRONG_TOKEN: &str =
    "That is not the admin token. It is in <data>/admin-token, or in GATEHOUSE_ADMIN_TOKEN.";

/// What the sign-in page shows.
struct SignInView<'a> {
    csrf: &'a str,
    /// Set the CSRF cookie (the visitor had none).
    fresh_csrf: bool,
    secure: bool,
    next: &'a str,
    error: Option<&'a str>,
    notice: Option<&'a str>,
}

fn signin_form(
    console: &Console,
    status: StatusCode,
    view: SignInView<'_>,
) -> PortalResult<Response> {
    let html = console.render_html(
        "admin/signin.html",
        context! {
            signed_in => false,
            csrf_form => view.csrf,
            next => view.next,
            error => view.error,
            notice => view.notice,
        },
    )?;
    let mut response = (status, Html(html)).into_response();
    if view.fresh_csrf
        && let Some(v) = set_cookie(CSRF_COOKIE, Some(view.csrf), 86_400, view.secure)
    {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(response)
}

pub async fn signin_page(
    State(console): State<Arc<Console>>,
    query: Result<Query<SignInQuery>, axum::extract::rejection::QueryRejection>,
    parts: axum::http::request::Parts,
) -> PortalResult<Response> {
    // A malformed query is worth a sign-in page all the same.
    let query = query.map(|Query(q)| q).unwrap_or(SignInQuery {
        next: None,
        signed_out: None,
    });
    let next = safe_next(query.next.as_deref());
    if let Some(token) = cookie(&parts.headers, SESSION_COOKIE)
        && active_session(&console, token).await?.is_some()
    {
        return Ok(Redirect::to(&next).into_response());
    }
    let (csrf, fresh) = form_csrf(&parts.headers)?;
    let notice = query.signed_out.is_some().then_some("You are signed out.");
    signin_form(
        &console,
        StatusCode::OK,
        SignInView {
            csrf: &csrf,
            fresh_csrf: fresh,
            secure: came_over_tls(&parts),
            next: &next,
            error: None,
            notice,
        },
    )
}

#[derive(Debug, Deserialize)]
struct SignInForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    next: Option<String>,
}

fn matches(a: &str, b: &str) -> bool {
    !a.is_empty() && constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

fn client_ip(parts: &Parts) -> String {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".to_owned(), |c| c.0.ip().to_string())
}

pub async fn signin(
    State(console): State<Arc<Console>>,
    parts: axum::http::request::Parts,
    body: Bytes,
) -> PortalResult<Response> {
    let secure = came_over_tls(&parts);
    let form: SignInForm = serde_urlencoded::from_bytes(&body)
        .map_err(|_| PortalError::BadRequest("The sign-in form could not be read.".into()))?;
    let next = safe_next(form.next.as_deref());
    let Some(expected) = cookie(&parts.headers, CSRF_COOKIE).filter(|v| looks_like_token(v)) else {
        return Err(PortalError::Csrf);
    };
    if !matches(&form.csrf, expected) {
        tracing::warn!(ip = %client_ip(&parts), "admin sign-in refused: missing or wrong CSRF token");
        return Err(PortalError::Csrf);
    }
    let ip = client_ip(&parts);
    let attempt = console
        .limiter
        .reserve(&ip, &ip)
        .map_err(PortalError::TooManyAttempts)?;
    if !console.backend.admin_token_matches(form.token.trim()) {
        tracing::warn!(ip = %ip, "admin sign-in with a wrong token");
        return signin_form(
            &console,
            StatusCode::UNAUTHORIZED,
            SignInView {
                csrf: expected,
                fresh_csrf: false,
                secure,
                next: &next,
                error: Some(WRONG_TOKEN),
                notice: None,
            },
        );
    }
    console.limiter.succeeded(&attempt);
    let token = random_token()?;
    let ttl = i64::try_from(console.config.session_ttl.as_secs()).unwrap_or(28_800);
    let session = StoredSession {
        csrf: random_token()?,
        expires: now() + ttl,
        generation: console.backend.admin_generation(),
        revoked: false,
    };
    console
        .store
        .repo::<StoredSession>()
        .put_state("", &token_id(&token), &session)
        .await?;
    tracing::info!(ip = %ip, "admin signed in to the console");
    let mut response = Redirect::to(&next).into_response();
    let cookie = set_cookie(SESSION_COOKIE, Some(&token), ttl, secure)
        .ok_or_else(|| PortalError::Internal("cannot build the session cookie".into()))?;
    response.headers_mut().append(header::SET_COOKIE, cookie);
    Ok(response)
}

#[derive(Debug, Deserialize)]
struct SignOutForm {
    #[serde(default)]
    csrf: String,
}

pub async fn signout(
    State(console): State<Arc<Console>>,
    admin: Admin,
    body: Bytes,
) -> PortalResult<Response> {
    let form: SignOutForm = serde_urlencoded::from_bytes(&body)
        .map_err(|_| PortalError::BadRequest("The sign-out form could not be read.".into()))?;
    let (Some(id), Some(csrf)) = (&admin.session_id, &admin.csrf) else {
        return Err(PortalError::BadRequest(
            "There is no console session to end: requests with a bearer token have none.".into(),
        ));
    };
    if !matches(&form.csrf, csrf) {
        return Err(PortalError::Csrf);
    }
    let sessions = console.store.repo::<StoredSession>().lenient();
    if let Some(mut session) = sessions.get("", id).await? {
        session.revoked = true;
        session.csrf = random_token()?;
        sessions.put_state("", id, &session).await?;
    }
    let mut response = Redirect::to("/admin/signin?signed_out=1").into_response();
    if let Some(v) = set_cookie(SESSION_COOKIE, None, 0, admin.secure) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_inside_the_console() {
        assert_eq!(
            safe_next(Some("/admin/traffic?window=6h")),
            "/admin/traffic?window=6h"
        );
        for bad in [
            None,
            Some("https://evil.example/"),
            Some("//evil.example/admin/"),
            Some("/portal/"),
            Some("/admin/signout"),
            Some("/admin/\\evil"),
        ] {
            assert_eq!(safe_next(bad), "/admin/", "{bad:?}");
        }
        assert_eq!(
            percent_encode("/admin/traffic?window=6h&api=a b"),
            "/admin/traffic%3Fwindow%3D6h%26api%3Da%20b"
        );
    }

    #[test]
    fn cookies_are_strict_and_http_only() {
        let v = set_cookie(SESSION_COOKIE, Some("abc"), 60, true).unwrap();
        assert_eq!(
            v.to_str().unwrap(),
            "gh_admin=abc; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=60; Secure"
        );
    }
}
