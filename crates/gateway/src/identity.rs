//! Access tokens for `authentication-managed-identity`. Outside Azure a gateway has no managed
//! identity, so one token provider is configured per gateway process (`--identity-provider`):
//!
//! - `imds`: the Azure instance metadata endpoint (Azure VMs, AKS node identities): `GET
//!   {endpoint}?api-version=2018-02-01&resource=…[&client_id=…]` with `Metadata: true`;
//! - `workload-identity`: workload identity federation, a projected service-account token (the
//!   file is read again for every fetch, as the kubelet rotates it) exchanged as a client
//!   assertion at `{authority}{tenant}/oauth2/v2.0/token` for the scope `{resource}/.default`;
//! - `client-secret` and `client-certificate`: Entra ID client credentials, with a secret or a
//!   certificate's key signing a JWT client assertion;
//! - `oauth2`: any OAuth 2.0 token endpoint, client credentials with a scope template, for
//!   identity providers other than Entra ID.
//!
//! Tokens are cached per (resource, client id) for the whole process (all workers, across
//! configuration swaps) until shortly before they expire: 5 minutes or a tenth of their
//! lifetime early, whichever is less. One fetch runs at a time per key; while a still-valid
//! token is being refreshed the other requests keep using it, and without one they wait for
//! that fetch. A failed fetch is remembered for a short, growing pause, during which requests
//! fail at once instead of each calling the provider. Tokens and secrets are never logged and
//! never part of an error: [`AccessToken`] and [`Secret`] hide themselves from `Debug`.
//!
//! This is a control-path client (reqwest, with its own connections), like [`crate::openid`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gatehouse_policy::policies::AccessToken;

/// The Azure instance metadata service's token endpoint.
pub const IMDS_ENDPOINT: &str = "http://169.254.169.254/metadata/identity/oauth2/token";
/// Microsoft Entra ID, unless `AZURE_AUTHORITY_HOST` names another cloud.
pub const AUTHORITY_HOST: &str = "https://login.microsoftonline.com/";
/// The scope template of `oauth2` when none is given.
pub const DEFAULT_SCOPE: &str = "{resource}";
/// At most this much early: tokens are refreshed 5 minutes (or a tenth of their lifetime)
/// before they expire.
const REFRESH_EARLY: Duration = Duration::from_secs(300);
/// The lifetime assumed when a provider does not say.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The largest token response read.
const MAX_ANSWER: usize = 64 * 1024;
/// Distinct (resource, client id) pairs cached; `resource` may be an expression.
const MAX_KEYS: usize = 256;
/// How long a client assertion signed with the certificate is valid.
const ASSERTION_LIFETIME: u64 = 600;

/// A secret setting (client secret). Its `Debug` hides it.
#[derive(Clone)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn new(secret: impl Into<Arc<str>>) -> Self {
        Self(secret.into())
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// A certificate and its key, for signed client assertions.
#[derive(Clone)]
pub struct ClientCertificate {
    key: jsonwebtoken::EncodingKey,
    algorithm: jsonwebtoken::Algorithm,
    /// `x5t`: the certificate's SHA-1 thumbprint, base64url (Entra ID finds the key by it).
    thumbprint: String,
}

impl std::fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("algorithm", &self.algorithm)
            .field("x5t", &self.thumbprint)
            .finish_non_exhaustive()
    }
}

impl ClientCertificate {
    /// Reads a PEM file holding the certificate (leaf first) and its private key (RSA or
    /// P-256, PKCS#8, PKCS#1 or SEC1).
    pub fn load(path: &std::path::Path) -> Result<Self, SetupError> {
        let bad = |reason: String| SetupError::Certificate {
            path: path.to_owned(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        Self::from_pem(&pem).map_err(bad)
    }

    fn from_pem(pem: &[u8]) -> Result<Self, String> {
        let chain = gatehouse_tls::pem::certificates(pem, "the certificate file")
            .map_err(|e| e.to_string())?;
        let leaf = chain.first().ok_or("it holds no certificate")?;
        let digest =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, leaf.as_ref());
        use base64::Engine as _;
        let thumbprint = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref());
        let text = std::str::from_utf8(pem).map_err(|_| "it is not PEM text")?;
        let key_pem = private_key_block(text)
            .ok_or("it holds no private key (-----BEGIN PRIVATE KEY-----)")?;
        let (key, algorithm) = match jsonwebtoken::EncodingKey::from_rsa_pem(key_pem.as_bytes()) {
            Ok(k) => (k, jsonwebtoken::Algorithm::RS256),
            Err(_) => match jsonwebtoken::EncodingKey::from_ec_pem(key_pem.as_bytes()) {
                Ok(k) => (k, jsonwebtoken::Algorithm::ES256),
                Err(_) => return Err("its private key is neither RSA nor EC P-256".into()),
            },
        };
        let cert = Self {
            key,
            algorithm,
            thumbprint,
        };
        // A key that cannot sign fails now, not on the first request.
        cert.assertion("check", "https://login.invalid/token")
            .map_err(|e| format!("its private key cannot sign: {e}"))?;
        Ok(cert)
    }

    /// A client assertion (RFC 7523) for `client_id` at the token endpoint `audience`.
    fn assertion(&self, client_id: &str, audience: &str) -> Result<String, String> {
        let now = unix_now();
        let mut header = jsonwebtoken::Header::new(self.algorithm);
        header.x5t = Some(self.thumbprint.clone());
        let claims = serde_json::json!({
            "aud": audience,
            "iss": client_id,
            "sub": client_id,
            "jti": uuid::Uuid::new_v4().to_string(),
            "iat": now,
            "nbf": now,
            "exp": now + ASSERTION_LIFETIME,
        });
        jsonwebtoken::encode(&header, &claims, &self.key).map_err(|e| e.to_string())
    }
}

/// The first `-----BEGIN … PRIVATE KEY-----` block of a PEM text.
fn private_key_block(text: &str) -> Option<&str> {
    let mut search = 0;
    while let Some(i) = text[search..].find("-----BEGIN ") {
        let start = search + i;
        let line_end = text[start..].find('\n').map_or(text.len(), |n| start + n);
        let label = text[start..line_end]
            .trim()
            .trim_start_matches("-----BEGIN ")
            .trim_end_matches("-----");
        if label.ends_with("PRIVATE KEY") {
            let end_marker = format!("-----END {label}-----");
            let end = text[start..].find(&end_marker)? + start + end_marker.len();
            return Some(&text[start..end]);
        }
        search = line_end;
    }
    None
}

/// Where tokens come from.
#[derive(Clone, Debug)]
pub enum Provider {
    /// The Azure instance metadata service at `endpoint`; `client_id` is the user-assigned
    /// identity used when a policy names none.
    Imds {
        endpoint: String,
        client_id: Option<String>,
    },
    /// Workload identity federation: the assertion in `token_file` exchanged at Entra ID.
    WorkloadIdentity {
        authority: String,
        tenant: String,
        client_id: String,
        token_file: PathBuf,
    },
    /// Entra ID client credentials with a secret.
    ClientSecret {
        authority: String,
        tenant: String,
        client_id: String,
        secret: Secret,
    },
    /// Entra ID client credentials with a certificate.
    ClientCertificate {
        authority: String,
        tenant: String,
        client_id: String,
        certificate: ClientCertificate,
    },
    /// A generic OAuth 2.0 client-credentials endpoint; `scope` with `{resource}` replaced.
    OAuth2 {
        token_url: String,
        client_id: String,
        secret: Secret,
        scope: String,
    },
    /// A stand-in for tests: the function is the whole fetch.
    #[cfg(test)]
    Fake(tests::FakeFetch),
}

impl Provider {
    /// Its name in settings and messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Imds { .. } => "imds",
            Self::WorkloadIdentity { .. } => "workload-identity",
            Self::ClientSecret { .. } => "client-secret",
            Self::ClientCertificate { .. } => "client-certificate",
            Self::OAuth2 { .. } => "oauth2",
            #[cfg(test)]
            Self::Fake(_) => "fake",
        }
    }
}

/// A provider that cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot use the client certificate {path}: {reason}")]
    Certificate { path: PathBuf, reason: String },
    #[error("cannot build the token provider's HTTP client: {0}")]
    Client(String),
}

/// Why no token could be had. Never holds a token or a secret.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token provider ({provider}) cannot be reached: {reason}")]
    Unreachable {
        provider: &'static str,
        reason: String,
    },
    #[error("the token provider ({provider}) answered {status}{detail}")]
    Refused {
        provider: &'static str,
        status: u16,
        detail: String,
    },
    #[error("the token provider's ({provider}) answer holds no token: {reason}")]
    BadAnswer {
        provider: &'static str,
        reason: String,
    },
    #[error("the federated token file {path}: {reason}")]
    TokenFile { path: String, reason: String },
    #[error(
        "client-id {client_id} is not the client this gateway has credentials for ({provider})"
    )]
    OtherClient {
        provider: &'static str,
        client_id: String,
    },
    #[error("{reason} (the provider is asked again in {retry_in_secs} s)")]
    Paused { reason: String, retry_in_secs: u64 },
    #[error("tokens for more than 256 distinct resources are in use")]
    TooManyResources,
}

impl From<TokenError> for gatehouse_policy::PolicyError {
    fn from(e: TokenError) -> Self {
        gatehouse_policy::PolicyError::managed_identity(e.to_string())
    }
}

/// A token as the provider gave it.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub token: AccessToken,
    pub lifetime: Duration,
}

/// The pauses after failed fetches, adjustable for tests.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    /// The pause after the first failure; it doubles with each further one.
    pub retry_after_failure: Duration,
    /// The longest pause.
    pub max_retry: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            retry_after_failure: Duration::from_secs(2),
            max_retry: Duration::from_secs(60),
        }
    }
}

type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

struct Cached {
    token: AccessToken,
    /// From here on, the next request fetches a new one.
    refresh_at: Instant,
    /// Until here it may still be sent (while a refresh is under way or failing).
    valid_until: Instant,
}

struct Failed {
    until: Instant,
    reason: String,
    /// Failures in a row.
    count: u32,
}

#[derive(Default)]
struct State {
    cached: Option<Cached>,
    failed: Option<Failed>,
}

#[derive(Default)]
struct Slot {
    state: Mutex<State>,
    /// Held by the one task fetching this key.
    fetching: tokio::sync::Mutex<()>,
}

/// The slots of one resource, by client id (usually one or two).
type ByClient = Vec<(Option<Box<str>>, Arc<Slot>)>;

/// The gateway's token provider and its cache, shared by the workers.
pub struct TokenProvider {
    provider: Provider,
    client: reqwest::Client,
    /// By resource, then client id: found without allocating.
    slots: Mutex<HashMap<Box<str>, ByClient>>,
    timings: Timings,
    clock: Clock,
}

impl std::fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenProvider")
            .field("provider", &self.provider.kind())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl TokenProvider {
    /// A provider fetching over HTTPS trusting `tls` (the gateway's outbound trust: the OS
    /// roots and `--trusted-ca`).
    pub fn new(
        provider: Provider,
        tls: gatehouse_tls::rustls::ClientConfig,
    ) -> Result<Self, SetupError> {
        // Workers run their own runtimes: keep no idle connections that would belong to one.
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_max_idle_per_host(0)
            // IMDS refuses requests that went through a proxy, and so would a token endpoint
            // on a private network.
            .no_proxy()
            .tls_backend_preconfigured(tls)
            .build()
            .map_err(|e| SetupError::Client(e.to_string()))?;
        Ok(Self {
            provider,
            client,
            slots: Mutex::new(HashMap::new()),
            timings: Timings::default(),
            clock: Arc::new(Instant::now),
        })
    }

    pub fn with_timings(mut self, timings: Timings) -> Self {
        self.timings = timings;
        self
    }

    pub fn kind(&self) -> &'static str {
        self.provider.kind()
    }

    fn now(&self) -> Instant {
        (self.clock)()
    }

    fn slot(&self, resource: &str, client_id: Option<&str>) -> Result<Arc<Slot>, TokenError> {
        let mut slots = lock(&self.slots);
        let find = |by: &ByClient| {
            by.iter()
                .find(|(c, _)| c.as_deref() == client_id)
                .map(|(_, s)| s.clone())
        };
        if let Some(s) = slots.get(resource).and_then(find) {
            return Ok(s);
        }
        let count =
            |slots: &HashMap<Box<str>, ByClient>| slots.values().map(Vec::len).sum::<usize>();
        if count(&slots) >= MAX_KEYS {
            // Forget the keys whose tokens are gone; keep those in use.
            let now = self.now();
            for by in slots.values_mut() {
                by.retain(|(_, s)| {
                    lock(&s.state)
                        .cached
                        .as_ref()
                        .is_some_and(|c| now < c.valid_until)
                });
            }
            slots.retain(|_, by| !by.is_empty());
            if count(&slots) >= MAX_KEYS {
                return Err(TokenError::TooManyResources);
            }
        }
        let slot = Arc::new(Slot::default());
        slots
            .entry(resource.into())
            .or_default()
            .push((client_id.map(Into::into), slot.clone()));
        Ok(slot)
    }

    /// A token for `resource` (and the user-assigned identity `client_id`), from the cache
    /// when it holds a fresh one.
    pub async fn token(
        &self,
        resource: &str,
        client_id: Option<&str>,
    ) -> Result<AccessToken, TokenError> {
        let slot = self.slot(resource, client_id)?;
        let now = self.now();
        if let Some(t) = fresh(&slot, now) {
            return Ok(t);
        }
        let _fetching = match slot.fetching.try_lock() {
            Ok(g) => g,
            Err(_) => {
                // Someone is fetching: a token still valid does, else wait for theirs.
                if let Some(t) = usable(&slot, now) {
                    return Ok(t);
                }
                slot.fetching.lock().await
            }
        };
        let now = self.now();
        {
            let s = lock(&slot.state);
            if let Some(c) = s.cached.as_ref().filter(|c| now < c.refresh_at) {
                return Ok(c.token.clone());
            }
            if let Some(f) = s.failed.as_ref().filter(|f| now < f.until) {
                return match s.cached.as_ref().filter(|c| now < c.valid_until) {
                    Some(c) => Ok(c.token.clone()),
                    None => Err(TokenError::Paused {
                        reason: f.reason.clone(),
                        retry_in_secs: f.until.saturating_duration_since(now).as_secs().max(1),
                    }),
                };
            }
        }
        let fetched = self.fetch(resource, client_id).await;
        let mut s = lock(&slot.state);
        match fetched {
            Ok(f) => {
                tracing::info!(
                    provider = self.provider.kind(),
                    resource,
                    client_id = client_id.unwrap_or(""),
                    lifetime_secs = f.lifetime.as_secs(),
                    "got an access token for authentication-managed-identity"
                );
                let early = REFRESH_EARLY.min(f.lifetime / 10);
                let margin = Duration::from_secs(30).min(f.lifetime / 20);
                s.cached = Some(Cached {
                    token: f.token.clone(),
                    refresh_at: now + f.lifetime.saturating_sub(early),
                    valid_until: now + f.lifetime.saturating_sub(margin),
                });
                s.failed = None;
                Ok(f.token)
            }
            Err(e) => {
                let count = s.failed.as_ref().map_or(0, |f| f.count) + 1;
                let pause = self
                    .timings
                    .retry_after_failure
                    .saturating_mul(1 << (count - 1).min(16))
                    .min(self.timings.max_retry);
                tracing::warn!(
                    provider = self.provider.kind(),
                    resource,
                    client_id = client_id.unwrap_or(""),
                    error = %e,
                    retry_in_secs = pause.as_secs_f64(),
                    "cannot get an access token for authentication-managed-identity"
                );
                s.failed = Some(Failed {
                    until: self.now() + pause,
                    reason: e.to_string(),
                    count,
                });
                match s.cached.as_ref().filter(|c| self.now() < c.valid_until) {
                    Some(c) => Ok(c.token.clone()),
                    None => Err(e),
                }
            }
        }
    }

    async fn fetch(&self, resource: &str, client_id: Option<&str>) -> Result<Fetched, TokenError> {
        let kind = self.provider.kind();
        let request = match &self.provider {
            Provider::Imds {
                endpoint,
                client_id: default_client,
            } => {
                let mut url =
                    reqwest::Url::parse(endpoint).map_err(|e| TokenError::Unreachable {
                        provider: kind,
                        reason: format!("'{endpoint}' is not a URL: {e}"),
                    })?;
                {
                    let mut q = url.query_pairs_mut();
                    q.append_pair("api-version", "2018-02-01");
                    q.append_pair("resource", resource);
                    if let Some(c) = client_id.or(default_client.as_deref()) {
                        q.append_pair("client_id", c);
                    }
                }
                self.client.get(url).header("Metadata", "true")
            }
            Provider::WorkloadIdentity {
                authority,
                tenant,
                client_id: own,
                token_file,
            } => {
                let assertion =
                    std::fs::read_to_string(token_file).map_err(|e| TokenError::TokenFile {
                        path: token_file.display().to_string(),
                        reason: e.to_string(),
                    })?;
                // A different client id federated with the same service account is allowed.
                let client = client_id.unwrap_or(own);
                let body = form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", client),
                    ("scope", &entra_scope(resource)),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", assertion.trim()),
                ]);
                self.post(&entra_url(authority, tenant), body)
            }
            Provider::ClientSecret {
                authority,
                tenant,
                client_id: own,
                secret,
            } => {
                same_client(kind, own, client_id)?;
                let body = form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", own),
                    ("client_secret", secret.expose()),
                    ("scope", &entra_scope(resource)),
                ]);
                self.post(&entra_url(authority, tenant), body)
            }
            Provider::ClientCertificate {
                authority,
                tenant,
                client_id: own,
                certificate,
            } => {
                same_client(kind, own, client_id)?;
                let url = entra_url(authority, tenant);
                let assertion =
                    certificate
                        .assertion(own, &url)
                        .map_err(|reason| TokenError::BadAnswer {
                            provider: kind,
                            reason: format!("cannot sign the client assertion: {reason}"),
                        })?;
                let body = form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", own),
                    ("scope", &entra_scope(resource)),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", &assertion),
                ]);
                self.post(&url, body)
            }
            Provider::OAuth2 {
                token_url,
                client_id: own,
                secret,
                scope,
            } => {
                same_client(kind, own, client_id)?;
                let scope = scope.replace("{resource}", resource);
                let body = form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", own),
                    ("client_secret", secret.expose()),
                    ("scope", &scope),
                ]);
                self.post(token_url, body)
            }
            #[cfg(test)]
            Provider::Fake(f) => {
                return (f.0)(resource.to_owned(), client_id.map(str::to_owned)).await;
            }
        };
        let unreachable = |e: reqwest::Error| TokenError::Unreachable {
            provider: kind,
            reason: without_url(e),
        };
        let mut resp = request.send().await.map_err(unreachable)?;
        let status = resp.status();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(unreachable)? {
            if body.len() + chunk.len() > MAX_ANSWER {
                return Err(TokenError::BadAnswer {
                    provider: kind,
                    reason: format!("the answer is larger than {MAX_ANSWER} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            return Err(TokenError::Refused {
                provider: kind,
                status: status.as_u16(),
                detail: error_detail(&body),
            });
        }
        parse_token(&body, unix_now()).map_err(|reason| TokenError::BadAnswer {
            provider: kind,
            reason,
        })
    }

    fn post(&self, url: &str, body: String) -> reqwest::RequestBuilder {
        self.client
            .post(url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body)
    }
}

/// The cached token, if it is not due for a refresh.
fn fresh(slot: &Slot, now: Instant) -> Option<AccessToken> {
    let s = lock(&slot.state);
    s.cached
        .as_ref()
        .filter(|c| now < c.refresh_at)
        .map(|c| c.token.clone())
}

/// The cached token, if it may still be sent.
fn usable(slot: &Slot, now: Instant) -> Option<AccessToken> {
    let s = lock(&slot.state);
    s.cached
        .as_ref()
        .filter(|c| now < c.valid_until)
        .map(|c| c.token.clone())
}

/// Secret and certificate credentials belong to one client: a policy asking for another
/// cannot be served.
fn same_client(provider: &'static str, own: &str, asked: Option<&str>) -> Result<(), TokenError> {
    match asked {
        Some(c) if !c.eq_ignore_ascii_case(own) => Err(TokenError::OtherClient {
            provider,
            client_id: c.to_owned(),
        }),
        _ => Ok(()),
    }
}

/// `{authority}{tenant}/oauth2/v2.0/token`.
fn entra_url(authority: &str, tenant: &str) -> String {
    format!(
        "{}/{}/oauth2/v2.0/token",
        authority.trim_end_matches('/'),
        tenant.trim_matches('/')
    )
}

/// The v2 scope of a v1 resource, as Azure's SDKs make it: `{resource}/.default`.
pub fn entra_scope(resource: &str) -> String {
    if resource.ends_with('/') {
        format!("{resource}.default")
    } else {
        format!("{resource}/.default")
    }
}

/// An `application/x-www-form-urlencoded` body.
fn form(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        form_encode(&mut out, k);
        out.push('=');
        form_encode(&mut out, v);
    }
    out
}

fn form_encode(out: &mut String, text: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 15)]));
            }
        }
    }
}

/// A reqwest error's text, without its URL (which may carry a resource in the query).
fn without_url(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(&e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {detail}")
    }
}

/// `: <error>: <error_description>` of an OAuth error answer (first line, cut short), or
/// nothing.
fn error_detail(body: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return String::new();
    };
    let field = |name: &str| {
        v.get(name).and_then(|x| x.as_str()).map(|s| {
            s.lines()
                .next()
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect::<String>()
        })
    };
    match (field("error"), field("error_description")) {
        (Some(e), Some(d)) => format!(": {e}: {d}"),
        (Some(e), None) => format!(": {e}"),
        (None, Some(d)) => format!(": {d}"),
        (None, None) => String::new(),
    }
}

/// A number, or a string holding one (IMDS sends `"expires_in": "3599"`).
fn number(v: Option<&serde_json::Value>) -> Option<u64> {
    match v? {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A token answer (OAuth 2.0, Entra ID, IMDS): `access_token` and its lifetime from
/// `expires_in`, else `expires_on` (Unix seconds) against `now_unix`, else a default.
pub fn parse_token(body: &[u8], now_unix: u64) -> Result<Fetched, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not JSON ({e})"))?;
    let token = v
        .get("access_token")
        .and_then(|t| t.as_str())
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or("no access_token")?;
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the access_token is not a token (it has spaces or control characters)".into());
    }
    let lifetime = match number(v.get("expires_in")) {
        Some(s) => Duration::from_secs(s),
        None => match number(v.get("expires_on")) {
            Some(on) => Duration::from_secs(on.saturating_sub(now_unix)),
            None => DEFAULT_LIFETIME,
        },
    };
    if lifetime.is_zero() {
        return Err("the token has already expired".into());
    }
    Ok(Fetched {
        token: AccessToken::new(token),
        lifetime,
    })
}

#[cfg(test)]
mod tests;
