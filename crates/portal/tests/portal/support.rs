//! Router-level test support: the portal on a real SQLite store in a temporary directory, a
//! stand-in for the control plane, and a small browser-like client (cookies, CSRF tokens) that
//! calls the router without a socket.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use gatehouse_model::openapi;
use gatehouse_model::resources::{
    Api, Product, ProductState, Resource, Subscription, SubscriptionKeys, SubscriptionState,
};
use gatehouse_portal::{BackendError, BoxFuture, Portal, PortalBackend, PortalConfig};
use gatehouse_store::records::ApiDocument;
use gatehouse_store::{Kind, Link, Record, Store, Tx};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// Stands in for the control plane: keys kept in memory, documents read from the store.
pub struct FakeControl {
    store: Store,
    keys: Mutex<HashMap<String, SubscriptionKeys>>,
    counter: AtomicU64,
}

impl FakeControl {
    fn fresh_key(&self) -> String {
        format!("key-{:032}", self.counter.fetch_add(1, Ordering::SeqCst))
    }

    pub fn keys(&self, id: &str) -> Option<SubscriptionKeys> {
        self.keys.lock().unwrap().get(id).cloned()
    }
}

impl PortalBackend for FakeControl {
    fn create_subscription(
        &self,
        mut sub: Subscription,
    ) -> BoxFuture<'_, Result<Subscription, BackendError>> {
        Box::pin(async move {
            sub.normalize()
                .map_err(|e| BackendError::Invalid(e.message))?;
            sub.created_date = Some("2026-01-01T00:00:00Z".into());
            let mut tx = self.store.begin().await.unwrap();
            tx.repo::<Subscription>()
                .put("", &sub.id, &sub)
                .await
                .unwrap();
            tx.commit().await.unwrap();
            let keys = SubscriptionKeys {
                primary_key: self.fresh_key(),
                secondary_key: self.fresh_key(),
            };
            self.keys.lock().unwrap().insert(sub.id.clone(), keys);
            Ok(sub)
        })
    }

    fn set_subscription_state<'a>(
        &'a self,
        id: &'a str,
        state: SubscriptionState,
    ) -> BoxFuture<'a, Result<Subscription, BackendError>> {
        Box::pin(async move {
            let subs = self.store.repo::<Subscription>();
            let mut sub = subs.get("", id).await.unwrap().unwrap();
            sub.state = state;
            let mut tx = self.store.begin().await.unwrap();
            tx.repo::<Subscription>().put("", id, &sub).await.unwrap();
            tx.commit().await.unwrap();
            Ok(sub)
        })
    }

    fn subscription_keys<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<SubscriptionKeys, BackendError>> {
        Box::pin(async move {
            self.keys(id)
                .ok_or_else(|| BackendError::NotFound(format!("no keys for {id}")))
        })
    }

    fn regenerate_key<'a>(
        &'a self,
        id: &'a str,
        primary: bool,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let key = self.fresh_key();
            let mut map = self.keys.lock().unwrap();
            let keys = map.get_mut(id).unwrap();
            if primary {
                keys.primary_key = key;
            } else {
                keys.secondary_key = key;
            }
            Ok(())
        })
    }

    fn api_document<'a>(
        &'a self,
        api_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Value>, BackendError>> {
        Box::pin(async move {
            let document = self.store.repo::<ApiDocument>().get("", api_id).await;
            Ok(document.unwrap().map(|d| d.0))
        })
    }

    fn commit(&self, tx: Tx) -> BoxFuture<'_, Result<u64, BackendError>> {
        Box::pin(async move {
            tx.commit()
                .await
                .map_err(|e| BackendError::Internal(e.to_string()))
        })
    }
}

pub struct Setup {
    pub store: Store,
    pub control: Arc<FakeControl>,
    pub router: Router,
    pub dir: PathBuf,
}

impl Drop for Setup {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "gh-portal-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub async fn setup_with(tag: &str, config: PortalConfig) -> Setup {
    let dir = temp_dir(tag);
    let store = Store::open_sqlite_dir(&dir).await.unwrap();
    let control = Arc::new(FakeControl {
        store: store.clone(),
        keys: Mutex::default(),
        counter: AtomicU64::new(1),
    });
    let portal = Portal::new(store.clone(), control.clone(), config).unwrap();
    let router = portal.router();
    Setup {
        store,
        control,
        router,
        dir,
    }
}

pub async fn setup(tag: &str) -> Setup {
    setup_with(
        tag,
        PortalConfig {
            gateway_urls: vec!["http://127.0.0.1:9".into()],
            ..PortalConfig::default()
        },
    )
    .await
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../model/tests/fixtures/openapi")
        .join(name)
}

impl Setup {
    pub async fn put<R: Resource + Record>(&self, parent: &str, r: &R) {
        let mut tx = self.store.begin().await.unwrap();
        tx.repo::<R>().put(parent, r.id(), r).await.unwrap();
        tx.commit().await.unwrap();
    }

    /// Writes a document as given, whatever it holds.
    pub async fn put_raw(&self, kind: Kind, parent: &str, id: &str, body: &str) {
        let mut tx = self.store.begin().await.unwrap();
        tx.put(kind, parent, id, body).await.unwrap();
        tx.commit().await.unwrap();
    }

    pub async fn link(&self, link: Link, source: &str, target: &str) {
        let mut tx = self.store.begin().await.unwrap();
        tx.links(link).add(source, target).await.unwrap();
        tx.commit().await.unwrap();
    }

    /// Imports an OpenAPI document as the control plane does: the API, its operations and the
    /// document. Returns the document as JSON and the operations.
    pub async fn import(
        &self,
        id: &str,
        file: &str,
    ) -> (Value, Vec<gatehouse_model::resources::Operation>) {
        let text = std::fs::read_to_string(fixture(file)).unwrap();
        let imported = openapi::import(&text).unwrap();
        let mut api: Api = serde_json::from_value(serde_json::json!({"path": id})).unwrap();
        api.set_id(id.to_owned());
        api.display_name = imported.title.clone().unwrap_or_else(|| id.to_owned());
        api.description = imported.description.clone();
        api.normalize().unwrap();
        self.put("", &api).await;
        let mut tx = self.store.begin().await.unwrap();
        for op in &imported.operations {
            tx.repo::<gatehouse_model::resources::Operation>()
                .put(id, &op.id, op)
                .await
                .unwrap();
        }
        let document = ApiDocument(imported.document.clone());
        tx.repo::<ApiDocument>()
            .put("", id, &document)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        (imported.document, imported.operations)
    }

    pub async fn product(&self, id: &str, apis: &[&str], approval: bool) {
        let mut product: Product = serde_json::from_value(serde_json::json!({
            "displayName": format!("Product {id}"),
            "approvalRequired": approval,
        }))
        .unwrap();
        product.set_id(id.to_owned());
        product.state = ProductState::Published;
        product.normalize().unwrap();
        self.put("", &product).await;
        for api in apis {
            self.link(Link::ProductApi, id, api).await;
        }
    }

    pub fn client(&self) -> Client {
        Client::new(self.router.clone())
    }
}

/// A response: status, headers, body text.
pub struct Page {
    /// Bytes received (compressed, when the client asked for gzip).
    pub transferred: usize,
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// The CSRF token of the first form on the page.
    pub fn csrf(&self) -> String {
        let marker = "name=\"csrf\" value=\"";
        let start = self.body.find(marker).expect("the page has no form") + marker.len();
        let end = self.body[start..].find('"').unwrap() + start;
        self.body[start..end].to_owned()
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }
}

/// Keeps cookies between calls, like a browser, and calls the router in process.
#[derive(Clone)]
pub struct Client {
    router: Router,
    pub cookies: HashMap<String, String>,
    pub ip: SocketAddr,
    pub headers: Vec<(String, String)>,
}

impl Client {
    pub fn new(router: Router) -> Self {
        Self {
            router,
            cookies: HashMap::new(),
            ip: "127.0.0.1:40000".parse().unwrap(),
            headers: Vec::new(),
        }
    }

    pub async fn send(&mut self, method: &str, path: &str, form: Option<&[(&str, &str)]>) -> Page {
        let mut req = Request::builder().method(method).uri(path);
        if !self.cookies.is_empty() {
            let cookie = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            req = req.header(header::COOKIE, cookie);
        }
        for (k, v) in &self.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let body = match form {
            Some(fields) => {
                req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                Body::from(serde_urlencoded::to_string(fields).unwrap())
            }
            None => Body::empty(),
        };
        let mut request = req.body(body).unwrap();
        request.extensions_mut().insert(ConnectInfo(self.ip));
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let page = Page {
            transferred: bytes.len(),
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        };
        for cookie in page.set_cookies() {
            let pair = cookie.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || cookie.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        page
    }

    pub async fn get(&mut self, path: &str) -> Page {
        self.send("GET", path, None).await
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        self.send("POST", path, Some(form)).await
    }

    /// Signs up and signs in; returns the user's CSRF token.
    pub async fn sign_up_and_in(&mut self, email: &str, password: &str) -> String {
        let csrf = self.get("/portal/signup").await.csrf();
        let page = self
            .post(
                "/portal/signup",
                &[
                    ("csrf", &csrf),
                    ("email", email),
                    ("password", password),
                    ("first_name", "Test"),
                ],
            )
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        self.sign_in(email, password).await
    }

    pub async fn sign_in(&mut self, email: &str, password: &str) -> String {
        let csrf = self.get("/portal/signin").await.csrf();
        let page = self
            .post(
                "/portal/signin",
                &[("csrf", &csrf), ("email", email), ("password", password)],
            )
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        self.get("/portal/profile").await.csrf()
    }
}

/// HTML-escapes text the way the portal's pages do.
pub fn escaped(text: &str) -> String {
    gatehouse_portal::markdown::escape(text)
}
