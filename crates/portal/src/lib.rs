//! The Gatehouse developer portal, served under `/portal/` by the control plane (and, in
//! [`admin`], the operators' console under `/admin/`): browse the
//! published products and their APIs, read each API's reference (rendered from its imported
//! OpenAPI document), sign up and sign in, subscribe, reveal and regenerate keys, and try calls
//! through a configured gateway.
//!
//! Pages are rendered on the server with minijinja (templates embedded, overridable from a
//! directory); htmx (embedded from npm) handles the small dynamic parts: search as you type,
//! revealing keys and Try it, each of which also works as a plain form without JavaScript.
//! The portal reads the store directly; what must go through the control plane (keys, and
//! publishing committed changes) goes through [`PortalBackend`].

mod accounts;
pub mod admin;
mod assets;
pub mod backend;
mod catalog;
pub mod error;
pub mod markdown;
mod pages;
mod profile;
pub mod ratelimit;
pub mod reference;
pub mod session;
pub mod templates;
pub mod tryit;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use gatehouse_model::resources::PortalSettings;
use gatehouse_store::{Record, Store};
use minijinja::context;
use minijinja::value::{Serde, Value};

pub use admin::{Console, ConsoleConfig};
pub use backend::{
    AdminBackend, BackendError, BoxFuture, Fleet, FleetGateway, FleetInstance, PortalBackend,
};
use error::{ErrorPage, PortalError, PortalResult};
pub use ratelimit::{Limits, Rate};
use session::Visitor;
pub use templates::TemplateError;

/// How the portal is set up by the binary.
#[derive(Debug, Clone)]
pub struct PortalConfig {
    /// Templates that replace the built-in ones (same file names).
    pub templates_dir: Option<PathBuf>,
    /// Gateway base URLs Try it may send calls to, such as `http://127.0.0.1:8080`. Empty:
    /// Try it is off. Calls go nowhere else, so the portal is never an open proxy.
    pub gateway_urls: Vec<String>,
    pub sign_in_limits: Limits,
    /// Sign-ups per client address and in total. Each costs a password hash.
    pub sign_up_rate: Rate,
    /// Password changes per client address and in total. Each costs two password hashes.
    pub password_rate: Rate,
    /// Key regenerations per client address and in total. Each is a new configuration
    /// revision that every gateway fetches.
    pub key_rate: Rate,
    /// How long a session lasts.
    pub session_ttl: Duration,
    /// How long Try it waits for the gateway.
    pub try_timeout: Duration,
    /// Signs the user's address into Try it calls, for gateways to believe; `None`: calls
    /// carry none, and gateways see the control plane's address.
    pub tryit_key: Option<tryit::SigningKey>,
}

impl Default for PortalConfig {
    fn default() -> Self {
        Self {
            templates_dir: None,
            gateway_urls: Vec::new(),
            sign_in_limits: Limits::default(),
            sign_up_rate: Rate::new(10, 200, Duration::from_secs(600)),
            password_rate: Rate::new(10, 100, Duration::from_secs(600)),
            key_rate: Rate::new(30, 300, Duration::from_secs(600)),
            session_ttl: Duration::from_secs(12 * 3600),
            try_timeout: Duration::from_secs(30),
            tryit_key: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Templates(#[from] TemplateError),
    #[error("--portal-gateway-url '{0}' must be an http:// or https:// URL without a query")]
    GatewayUrl(String),
    #[error("cannot build the HTTP client for Try it: {0}")]
    Client(String),
}

/// A parsed API document with the store revision it was read at.
type CachedDocument = (u64, Arc<serde_json::Value>);

pub struct Portal {
    store: Store,
    backend: Arc<dyn PortalBackend>,
    templates: templates::Templates,
    config: PortalConfig,
    limiter: ratelimit::Limiter,
    sign_ups: ratelimit::Throttle,
    password_changes: ratelimit::Throttle,
    key_changes: ratelimit::Throttle,
    documents: Mutex<HashMap<String, CachedDocument>>,
    http: reqwest::Client,
}

impl std::fmt::Debug for Portal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Portal")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Portal {
    pub fn new(
        store: Store,
        backend: Arc<dyn PortalBackend>,
        mut config: PortalConfig,
    ) -> Result<Arc<Self>, StartError> {
        for url in &mut config.gateway_urls {
            let trimmed = url.trim().trim_end_matches('/').to_owned();
            if gatehouse_model::resources::check_http_url(&trimmed).is_err()
                || trimmed.contains(['?', '#'])
            {
                return Err(StartError::GatewayUrl(url.clone()));
            }
            *url = trimmed;
        }
        let templates = templates::Templates::new(config.templates_dir.as_deref())?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.try_timeout)
            .build()
            .map_err(|e| StartError::Client(e.to_string()))?;
        Ok(Arc::new(Self {
            store,
            backend,
            templates,
            limiter: ratelimit::Limiter::new(config.sign_in_limits),
            sign_ups: ratelimit::Throttle::new(config.sign_up_rate),
            password_changes: ratelimit::Throttle::new(config.password_rate),
            key_changes: ratelimit::Throttle::new(config.key_rate),
            config,
            documents: Mutex::default(),
            http,
        }))
    }

    /// The portal's routes, all under `/portal`.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/portal", get(|| async { Redirect::permanent("/portal/") }))
            .route("/portal/", get(pages::home))
            .route("/portal/products", get(pages::products))
            .route("/portal/products/{productId}", get(pages::product))
            .route(
                "/portal/products/{productId}/subscribe",
                post(profile::subscribe),
            )
            .route("/portal/apis", get(pages::apis))
            .route("/portal/apis/{apiId}", get(pages::api))
            .route("/portal/apis/{apiId}/openapi.json", get(pages::document))
            .route(
                "/portal/apis/{apiId}/operations/{operationId}",
                get(pages::operation),
            )
            .route(
                "/portal/apis/{apiId}/operations/{operationId}/try",
                post(tryit::try_it),
            )
            .route(
                "/portal/signup",
                get(accounts::signup_page).post(accounts::signup),
            )
            .route(
                "/portal/signin",
                get(accounts::signin_page).post(accounts::signin),
            )
            .route("/portal/signout", post(accounts::signout))
            .route("/portal/profile", get(profile::profile))
            .route("/portal/profile/password", post(accounts::change_password))
            .route(
                "/portal/subscriptions/{subscriptionId}/keys",
                post(profile::keys),
            )
            .route(
                "/portal/subscriptions/{subscriptionId}/regenerate",
                post(profile::regenerate),
            )
            .route(
                "/portal/subscriptions/{subscriptionId}/cancel",
                post(profile::cancel),
            )
            .route("/portal/assets/{file}", get(assets::asset))
            .route("/portal/{*rest}", get(not_found).post(not_found))
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                error_pages,
            ))
            .layer(axum::middleware::from_fn(security_headers))
            .layer(tower_http::compression::CompressionLayer::new())
            .with_state(self.clone())
    }

    /// A top-level resource.
    async fn load_opt<R: Record>(&self, id: &str) -> PortalResult<Option<R>> {
        Ok(self.store.repo::<R>().get("", id).await?)
    }

    async fn load_all<R: Record>(&self, parent: &str) -> PortalResult<Vec<R>> {
        Ok(self.store.repo::<R>().list(parent).await?)
    }

    async fn settings(&self) -> PortalResult<PortalSettings> {
        let stored = self
            .store
            .repo::<PortalSettings>()
            .get("", PortalSettings::ID)
            .await?;
        Ok(stored.unwrap_or_default())
    }

    /// An API's imported document, parsed once per store revision.
    async fn document(&self, api_id: &str) -> PortalResult<Option<Arc<serde_json::Value>>> {
        let revision = self.store.revision().await?;
        if let Ok(cache) = self.documents.lock()
            && let Some((at, doc)) = cache.get(api_id)
            && *at == revision
        {
            return Ok(Some(doc.clone()));
        }
        let Some(doc) = self.backend.api_document(api_id).await? else {
            return Ok(None);
        };
        let doc = Arc::new(doc);
        if let Ok(mut cache) = self.documents.lock() {
            cache.retain(|_, (at, _)| *at == revision);
            cache.insert(api_id.to_owned(), (revision, doc.clone()));
        }
        Ok(Some(doc))
    }

    /// Renders a page (or, for htmx, a fragment) with what every template gets: the site's
    /// settings, the signed-in user, and the CSRF token.
    async fn render(&self, visitor: &Visitor, name: &str, page: Value) -> PortalResult<Response> {
        let html = self.render_html(visitor, name, page).await?;
        Ok(visitor.finish(Html(html).into_response()))
    }

    async fn render_html(
        &self,
        visitor: &Visitor,
        name: &str,
        page: Value,
    ) -> PortalResult<String> {
        let settings = self.settings().await?;
        let user = visitor.user.as_ref().map(|u| {
            context! {
                id => u.id.clone(),
                email => u.email.clone(),
                first_name => u.first_name.clone(),
                last_name => u.last_name.clone(),
            }
        });
        let ctx = context! {
            site => Serde(&settings),
            user => user,
            csrf => visitor.csrf.clone(),
            htmx => visitor.htmx,
            try_enabled => !self.config.gateway_urls.is_empty(),
            ..page
        };
        Ok(self.templates.render(name, ctx)?)
    }
}

async fn not_found() -> PortalError {
    PortalError::NotFound
}

/// Loads the visitor once per request (handlers reuse it) and turns error responses into the
/// portal's error page.
async fn error_pages(State(portal): State<Arc<Portal>>, req: Request, next: Next) -> Response {
    if req.uri().path().starts_with("/portal/assets/") {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let visitor = Visitor::from_request_parts(&mut parts, &portal).await.ok();
    let response = next.run(Request::from_parts(parts, body)).await;
    let Some(page) = response.extensions().get::<ErrorPage>().cloned() else {
        return response;
    };
    let visitor = match visitor {
        Some(v) => v,
        None => return response,
    };
    let ctx = context! {
        status => page.status.as_u16(),
        message => page.message,
        signin_needed => page.status == StatusCode::UNAUTHORIZED,
    };
    match portal.render_html(&visitor, "error.html", ctx).await {
        Ok(html) => {
            let (mut parts, _) = response.into_parts();
            parts.headers.remove(header::CONTENT_LENGTH);
            parts.headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            visitor.finish(Response::from_parts(parts, axum::body::Body::from(html)))
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot render the portal's error page");
            response
        }
    }
}

/// Headers every portal response carries: no caching of pages that may hold a user's data,
/// a strict content security policy (scripts and styles from this origin only, inline styles
/// for the branding colours), no framing, no sniffing.
async fn security_headers(req: Request, next: Next) -> Response {
    let is_asset = req.uri().path().starts_with("/portal/assets/");
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    page_security_headers(
        h,
        "default-src 'self'; img-src 'self' https: data:; style-src 'self' 'unsafe-inline'; \
         script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
         form-action 'self'",
        is_asset,
    );
    if !is_asset {
        h.insert(header::VARY, HeaderValue::from_static("Cookie, HX-Request"));
    }
    response
}

/// The headers the portal and the admin console both send: their content security policy,
/// no framing, no sniffing, same-origin referrers, and pages (not assets) never cached.
pub(crate) fn page_security_headers(
    h: &mut axum::http::HeaderMap,
    content_security_policy: &'static str,
    is_asset: bool,
) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(content_security_policy),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !is_asset {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}
