//! The admin console (`/admin/`), for the operators who hold the admin token:
//!
//! - **Fleet** (`/admin/`): every gateway with its instances, the revision each applied
//!   against the current one, its link state and last heartbeat, and the telemetry it delivered.
//! - **Traffic** (`/admin/traffic`): for a chosen window (the last hour by default), calls by
//!   outcome and latency per API, and per API hand-drawn SVG charts over time of requests,
//!   errors and 95th percentile latency.
//!
//! Pages are rendered on the server with the portal's templates machinery (every value escaped)
//! and need no JavaScript. Sign-in takes the admin token once and starts a session (see
//! [`session`]); `Authorization: Bearer <admin token>` works on every page too, for scripts.
//! The numbers come from the same arithmetic as the management API's reports
//! (`gatehouse_model::reports`), read straight from the store.

pub mod chart;
mod fleet;
pub mod session;
mod traffic;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use gatehouse_store::Store;
use minijinja::context;
use minijinja::value::Value;

use crate::backend::AdminBackend;
use crate::error::{ErrorPage, PortalError, PortalResult};
use crate::ratelimit::{Limiter, Limits};
use crate::templates::{TemplateError, Templates};

/// Every template the console renders, checked when it starts.
pub const PAGES: &[&str] = &[
    "admin/layout.html",
    "admin/chart.html",
    "admin/signin.html",
    "admin/fleet.html",
    "admin/traffic.html",
    "admin/error.html",
];

/// How the console is set up by the binary.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// Templates that replace the built-in ones (same names, under `admin/`).
    pub templates_dir: Option<PathBuf>,
    /// How long a sign-in lasts.
    pub session_ttl: Duration,
    /// Failed sign-ins allowed per client address within the window.
    pub sign_in_limits: Limits,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            templates_dir: None,
            session_ttl: Duration::from_secs(8 * 3600),
            sign_in_limits: Limits {
                per_account: 10,
                per_ip: 10,
                window: Duration::from_secs(15 * 60),
            },
        }
    }
}

pub struct Console {
    store: Store,
    backend: Arc<dyn AdminBackend>,
    templates: Templates,
    limiter: Limiter,
    config: ConsoleConfig,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Console {
    pub fn new(
        store: Store,
        backend: Arc<dyn AdminBackend>,
        config: ConsoleConfig,
    ) -> Result<Arc<Self>, TemplateError> {
        let templates = Templates::with_pages(config.templates_dir.as_deref(), PAGES)?;
        Ok(Arc::new(Self {
            store,
            backend,
            templates,
            limiter: Limiter::new(config.sign_in_limits),
            config,
        }))
    }

    /// The console's routes, all under `/admin`.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/admin", get(|| async { Redirect::permanent("/admin/") }))
            .route("/admin/", get(fleet::page))
            .route("/admin/traffic", get(traffic::page))
            .route(
                "/admin/signin",
                get(session::signin_page).post(session::signin),
            )
            .route("/admin/signout", post(session::signout))
            .route("/admin/assets/{file}", get(asset))
            .route("/admin/{*rest}", get(not_found).post(not_found))
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                error_pages,
            ))
            .layer(axum::middleware::from_fn(security_headers))
            .layer(tower_http::compression::CompressionLayer::new())
            .with_state(self.clone())
    }

    fn render_html(&self, name: &str, ctx: Value) -> PortalResult<String> {
        Ok(self.templates.render(name, ctx)?)
    }

    /// A page of the signed-in console.
    fn page(&self, admin: &session::Admin, name: &str, page: Value) -> PortalResult<Response> {
        let ctx = context! {
            signed_in => true,
            csrf => admin.csrf.clone(),
            ..page
        };
        Ok(Html(self.render_html(name, ctx)?).into_response())
    }
}

async fn not_found() -> PortalError {
    PortalError::NotFound
}

#[derive(rust_embed::RustEmbed)]
#[folder = "$CARGO_MANIFEST_DIR/assets"]
#[include = "admin.css"]
struct Assets;

async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let Some(content) = Assets::get(&file) else {
        return PortalError::NotFound.into_response();
    };
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        content.data,
    )
        .into_response()
}

/// Turns error responses into the console's error page.
async fn error_pages(State(console): State<Arc<Console>>, req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let Some(page) = response.extensions().get::<ErrorPage>().cloned() else {
        return response;
    };
    let ctx = context! {
        status => page.status.as_u16(),
        message => page.message,
    };
    match console.render_html("admin/error.html", ctx) {
        Ok(html) => {
            let (mut parts, _) = response.into_parts();
            parts.headers.remove(header::CONTENT_LENGTH);
            parts.headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            Response::from_parts(parts, axum::body::Body::from(html))
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot render the admin console's error page");
            response
        }
    }
}

/// Every console response: a strict content security policy (this origin only, no inline
/// script or style), no framing, no sniffing, and pages never cached.
async fn security_headers(req: Request, next: Next) -> Response {
    let is_asset = req.uri().path().starts_with("/admin/assets/");
    let mut response = next.run(req).await;
    crate::page_security_headers(
        response.headers_mut(),
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
         connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        is_asset,
    );
    response
}

/// An error page straight from an extractor (before `error_pages` can see it).
fn error_response(console: &Console, status: StatusCode, message: &str) -> Response {
    let ctx = context! { status => status.as_u16(), message => message };
    match console.render_html("admin/error.html", ctx) {
        Ok(html) => (status, Html(html)).into_response(),
        Err(_) => (status, message.to_owned()).into_response(),
    }
}

/// "12 s ago", "5 min ago", "3 h ago", "2 days ago".
pub fn ago(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..=119 => format!("{s} s ago"),
        120..=7_199 => format!("{} min ago", s / 60),
        7_200..=172_799 => format!("{} h ago", s / 3_600),
        _ => format!("{} days ago", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        assert_eq!(ago(-3), "0 s ago");
        assert_eq!(ago(42), "42 s ago");
        assert_eq!(ago(600), "10 min ago");
        assert_eq!(ago(3 * 3600 + 5), "3 h ago");
        assert_eq!(ago(5 * 86_400), "5 days ago");
    }
}
