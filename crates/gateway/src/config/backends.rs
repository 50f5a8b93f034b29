//! The backends of a configuration (`/mgmt/backends`), compiled once per configuration into
//! what a forward needs: the parsed upstream, the credentials as ready header values and query
//! pairs (`{{named values}}` resolved), and the TLS variant of its connections — how strictly
//! the backend's certificate is checked and which client certificate is presented.
//!
//! A TLS variant other than the default (strict, no client certificate) builds its own rustls
//! client configuration, once, on the first connection that needs it, and files its pooled
//! connections under a key of their own ([`ClientTls::tag`]): a relaxed or client-certificate
//! connection is never reused for a strict one, nor the other way round. A relaxation applies to
//! the backend resource that asks for it only; the same host reached through an API's service
//! URL or a `base-url` stays strict.
//!
//! `authentication-certificate` picks a client certificate per request: the variant for it is
//! made once per configuration (per backend TLS setting) and shared.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, OnceLock};

use gatehouse_model::snapshot::{Snapshot, SnapshotBackend};
use gatehouse_policy::{Exchange, PolicyError};
use gatehouse_tls::client::{ClientIdentity, Verify};
use gatehouse_tls::rustls::ClientConfig;
use http::{HeaderMap, HeaderName, HeaderValue};

use super::{CompiledTls, Upstream, parse_upstream};
use crate::breaker::Breaker;
use crate::outbound_tls::OutboundTls;

mod pool;

pub use pool::{CompiledPool, NoMember};

/// A certificate the gateway presents as a TLS client, ready to use.
pub struct ClientCertificate {
    pub id: Arc<str>,
    identity: ClientIdentity,
    /// Lower-case hex SHA-256 of the leaf: names its connections in the pool.
    fingerprint: Box<str>,
}

impl std::fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("id", &self.id)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// One way of doing TLS with backends: the checks made of their certificates and the client
/// certificate presented. Its rustls configuration is built on first use and then shared by
/// every connection, so sessions resume.
pub struct ClientTls {
    pub verify: Verify,
    pub certificate: Option<Arc<ClientCertificate>>,
    /// What pooled connections of this variant are filed under, after the authority.
    pub tag: Box<str>,
    /// The configuration's CA certificates, which the variant trusts too.
    cas: Arc<CompiledTls>,
    config: OnceLock<Result<Arc<ClientConfig>, String>>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("verify", &self.verify)
            .field("tag", &self.tag)
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    pub(crate) fn new(
        verify: Verify,
        certificate: Option<Arc<ClientCertificate>>,
        cas: Arc<CompiledTls>,
    ) -> Self {
        let mut tag = String::new();
        if !verify.chain {
            tag.push_str("chain-unchecked;");
        }
        if !verify.name {
            tag.push_str("name-unchecked;");
        }
        if let Some(c) = &certificate {
            tag.push_str("client=");
            tag.push_str(&c.fingerprint);
        }
        Self {
            verify,
            certificate,
            tag: tag.into(),
            cas,
            config: OnceLock::new(),
        }
    }

    /// The rustls configuration of this variant, built on the first call.
    pub fn client_config(&self, outbound: &OutboundTls) -> Result<Arc<ClientConfig>, String> {
        self.config
            .get_or_init(|| {
                outbound
                    .variant(
                        &self.cas.trusted_cas,
                        self.verify,
                        self.certificate.as_ref().map(|c| &c.identity),
                    )
                    .map_err(|e| e.to_string())
            })
            .clone()
    }
}

/// One backend, compiled.
#[derive(Debug)]
pub struct CompiledBackend {
    pub id: Arc<str>,
    /// Its target carries the backend's TLS variant when it is not the default.
    pub upstream: Upstream,
    verify: Verify,
    /// `credentials.header`, each value ready (and marked sensitive).
    headers: Vec<(HeaderName, Vec<HeaderValue>)>,
    /// `credentials.authorization`: `scheme parameter`.
    authorization: Option<HeaderValue>,
    /// `credentials.query`: the names, and every `name=value` pair percent-encoded.
    query_names: Vec<Box<str>>,
    query: Vec<Box<str>>,
    /// The circuit breaker, when the backend has a rule: shared by the workers, and by the
    /// configurations that follow while the backend's URL and rule stay.
    pub breaker: Option<Arc<Breaker>>,
}

impl CompiledBackend {
    /// The request's query (without `?`) with the backend's query credentials added, in place
    /// of any parameter of the same name the request carried. Borrowed when there are none.
    pub fn query<'q>(&self, query: Option<&'q str>) -> Option<Cow<'q, str>> {
        if self.query.is_empty() {
            return query.map(Cow::Borrowed);
        }
        let mut out = String::with_capacity(
            query.map_or(0, str::len) + self.query.iter().map(|q| q.len() + 1).sum::<usize>(),
        );
        for pair in query.unwrap_or_default().split('&') {
            let name = pair.split_once('=').map_or(pair, |(n, _)| n);
            if pair.is_empty() || self.query_names.iter().any(|q| **q == *name) {
                continue;
            }
            if !out.is_empty() {
                out.push('&');
            }
            out.push_str(pair);
        }
        for pair in &self.query {
            if !out.is_empty() {
                out.push('&');
            }
            out.push_str(pair);
        }
        Some(Cow::Owned(out))
    }

    /// Sets the backend's header credentials and `Authorization` on the outgoing request,
    /// replacing what the request carried under those names.
    pub fn add_headers(&self, headers: &mut HeaderMap) {
        for (name, values) in &self.headers {
            headers.remove(name);
            for v in values {
                headers.append(name.clone(), v.clone());
            }
        }
        if let Some(auth) = &self.authorization {
            headers.insert(http::header::AUTHORIZATION, auth.clone());
        }
    }
}

/// TLS variants by the checks they make (chain, name) and the certificate they present.
type Variants = HashMap<(bool, bool, Arc<str>), Arc<ClientTls>>;

/// The backends and client certificates of one configuration.
#[derive(Debug, Default)]
pub struct Backends {
    /// The single backends.
    by_id: HashMap<Arc<str>, Arc<CompiledBackend>>,
    pools: HashMap<Arc<str>, CompiledPool>,
    /// The client certificates of the snapshot with the strict variant presenting each, or
    /// why one cannot be used.
    certificates: HashMap<Arc<str>, Result<Arc<ClientTls>, String>>,
    /// The relaxed variants `authentication-certificate` asked for with a relaxed backend, by
    /// the checks and the certificate: made on first use, then shared.
    variants: Mutex<Variants>,
    cas: Arc<CompiledTls>,
}

/// `{{name}}` in a credential replaced by the named value; `None` names the missing one.
fn resolve(text: &str, named: &HashMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let name = after[..end].trim();
        match named.get(name) {
            Some(v) => out.push_str(v),
            None => {
                return Err(format!(
                    "named value '{name}' does not exist; create it with `gatehouse named-value set {name} VALUE`"
                ));
            }
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// RFC 3986 percent-encoding of a query component: unreserved characters stay.
fn encode_component(out: &mut String, text: &str) {
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

fn sensitive(text: &str) -> Result<HeaderValue, String> {
    let mut v = HeaderValue::from_str(text)
        .map_err(|_| "is not a valid header value (control characters?)".to_owned())?;
    v.set_sensitive(true);
    Ok(v)
}

fn compile_certificate(id: &str, chain: &str, key: &str) -> Result<ClientCertificate, String> {
    let origin = format!("certificate '{id}'");
    let identity = ClientIdentity::from_pem(chain.as_bytes(), key.as_bytes(), &origin)
        .map_err(|e| e.to_string())?;
    let leaf =
        gatehouse_tls::pem::certificates(chain.as_bytes(), &origin).map_err(|e| e.to_string())?;
    let leaf = leaf
        .first()
        .ok_or_else(|| format!("{origin} holds no certificate"))?;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, leaf.as_ref());
    let mut fingerprint = String::with_capacity(64);
    for b in digest.as_ref() {
        let _ = write!(fingerprint, "{b:02x}");
    }
    Ok(ClientCertificate {
        id: id.into(),
        identity,
        fingerprint: fingerprint.into(),
    })
}

impl Backends {
    /// Compiles the snapshot's backends and client certificates, with `cas` the
    /// configuration's compiled TLS. The circuit breakers of `previous` (the configuration in
    /// force) carry over to the backends whose URL and rule stay. Fails with the backend's path
    /// and what is wrong.
    pub fn compile(
        snapshot: &Snapshot,
        named: &HashMap<String, String>,
        cas: Arc<CompiledTls>,
        previous: Option<&Backends>,
    ) -> Result<Self, (String, String)> {
        let mut certificates = HashMap::new();
        for c in &snapshot.tls.client_certificates {
            let strict = compile_certificate(&c.id, &c.certificate, &c.key).map(|cert| {
                Arc::new(ClientTls::new(
                    Verify::default(),
                    Some(Arc::new(cert)),
                    cas.clone(),
                ))
            });
            if let Err(e) = &strict {
                tracing::error!(certificate = %c.id, error = %e, "a client certificate of the configuration cannot be used");
            }
            certificates.insert(Arc::<str>::from(c.id.as_str()), strict);
        }
        let mut out = Self {
            by_id: HashMap::with_capacity(snapshot.backends.len()),
            pools: HashMap::new(),
            certificates,
            variants: Mutex::default(),
            cas,
        };
        for b in snapshot.backends.iter().filter(|b| b.pool.is_none()) {
            let mut compiled = out.compile_backend(b, named)?;
            compiled.breaker = b.circuit_breaker.as_ref().map(|rule| {
                previous
                    .and_then(|p| p.by_id.get(b.id.as_str()))
                    .and_then(|old| old.breaker.clone())
                    .filter(|old| old.carries_over(&b.url, rule))
                    .unwrap_or_else(|| Arc::new(Breaker::new(compiled.id.clone(), &b.url, rule)))
            });
            out.by_id.insert(compiled.id.clone(), Arc::new(compiled));
        }
        for b in &snapshot.backends {
            if let Some(members) = &b.pool {
                let id: Arc<str> = b.id.as_str().into();
                let pool = CompiledPool::compile(&id, members, &out.by_id);
                out.pools.insert(id, pool);
            }
        }
        Ok(out)
    }

    fn compile_backend(
        &self,
        b: &SnapshotBackend,
        named: &HashMap<String, String>,
    ) -> Result<CompiledBackend, (String, String)> {
        let at = |field: &str| format!("backends.{}.{field}", b.id);
        let fail = |field: &str, m: String| (at(field), format!("backend '{}': {m}", b.id));
        let mut upstream = super::parse_service_url(&b.url).map_err(|m| fail("url", m))?;
        let verify = b.tls.as_ref().map_or_else(Verify::default, |t| Verify {
            chain: t.validate_certificate_chain,
            name: t.validate_certificate_name,
        });
        let (mut headers, mut authorization, mut query_names, mut query) =
            (Vec::new(), None, Vec::new(), Vec::new());
        let mut certificate: Option<Arc<ClientTls>> = None;
        if let Some(c) = &b.credentials {
            for (name, values) in &c.header {
                let field = format!("credentials.header.{name}");
                let header = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| fail(&field, format!("'{name}' is not a valid header name")))?;
                let mut ready = Vec::with_capacity(values.len());
                for v in values {
                    let v = resolve(v, named).map_err(|m| fail(&field, m))?;
                    ready.push(sensitive(&v).map_err(|m| fail(&field, m))?);
                }
                headers.push((header, ready));
            }
            for (name, values) in &c.query {
                let field = format!("credentials.query.{name}");
                let mut encoded_name = String::new();
                encode_component(&mut encoded_name, name);
                for v in values {
                    let v = resolve(v, named).map_err(|m| fail(&field, m))?;
                    let mut pair = encoded_name.clone();
                    pair.push('=');
                    encode_component(&mut pair, &v);
                    query.push(pair.into_boxed_str());
                }
                query_names.push(encoded_name.into_boxed_str());
            }
            if let Some(a) = &c.authorization {
                let field = "credentials.authorization";
                let scheme = resolve(&a.scheme, named).map_err(|m| fail(field, m))?;
                let parameter = resolve(&a.parameter, named).map_err(|m| fail(field, m))?;
                authorization = Some(
                    sensitive(&format!("{} {}", scheme.trim(), parameter.trim()))
                        .map_err(|m| fail(field, m))?,
                );
            }
            if let Some(id) = c.certificates().next() {
                let field = "credentials.certificateIds";
                certificate = Some(match self.certificates.get(id) {
                    Some(Ok(cert)) => cert.clone(),
                    Some(Err(e)) => return Err(fail(field, e.clone())),
                    None => {
                        return Err(fail(
                            field,
                            format!(
                                "certificate '{id}' is not in the configuration; it must exist in /mgmt/certificates with its private key"
                            ),
                        ));
                    }
                });
            }
        }
        let id: Arc<str> = b.id.as_str().into();
        if upstream.target.is_tls() && (verify != Verify::default() || certificate.is_some()) {
            // Strict with a certificate: the certificate's own variant, shared with the
            // `authentication-certificate` policies presenting it.
            let variant = match certificate {
                Some(strict) if verify == Verify::default() => strict,
                other => Arc::new(ClientTls::new(
                    verify,
                    other.and_then(|v| v.certificate.clone()),
                    self.cas.clone(),
                )),
            };
            upstream.target = upstream.target.with_client(variant, Some(id.clone()));
        } else {
            upstream.target = upstream.target.named(id.clone());
        }
        Ok(CompiledBackend {
            id,
            upstream,
            verify,
            headers,
            authorization,
            query_names,
            query,
            breaker: None,
        })
    }

    /// The single backend `id`.
    pub fn get(&self, id: &str) -> Option<&Arc<CompiledBackend>> {
        self.by_id.get(id)
    }

    /// The pool `id`.
    pub fn pool(&self, id: &str) -> Option<&CompiledPool> {
        self.pools.get(id)
    }

    /// Backends and pools.
    pub fn len(&self) -> usize {
        self.by_id.len() + self.pools.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty() && self.pools.is_empty()
    }

    /// The circuit breakers of the configuration, by backend id.
    pub fn breakers(&self) -> Vec<&Arc<Breaker>> {
        let mut all: Vec<&Arc<Breaker>> = self
            .by_id
            .values()
            .filter_map(|b| b.breaker.as_ref())
            .collect();
        all.sort_by(|a, b| a.backend().cmp(b.backend()));
        all
    }

    /// The backend a request sent to backend (or pool) `id` goes to now: a pool's pick, or
    /// the backend itself. An unknown id is a 500 (Azure's body) whose log names it; a backend
    /// whose breaker is open, or a pool none of whose members is available, a 503.
    fn choose(&self, id: &str) -> Result<&CompiledBackend, PolicyError> {
        if let Some(pool) = self.pools.get(id) {
            return pool
                .pick(crate::breaker::now_ms(), pool::random())
                .map(|b| &**b)
                .map_err(|e| match e.retry_after_ms {
                    Some(ms) => unavailable(format!(
                        "backend pool '{id}': the circuit breaker of every member is open; the first closes in {:.1} s",
                        ms as f64 / 1000.0
                    )),
                    None => unavailable(format!(
                        "backend pool '{id}' has no member this gateway can send to"
                    )),
                });
        }
        let backend = self.by_id.get(id).ok_or_else(|| {
            PolicyError::new(
                "set-backend-service",
                "BackendNotFound",
                format!("backend '{id}' does not exist in this gateway's configuration"),
                gatehouse_policy::Answer::Internal,
            )
        })?;
        if let Some(b) = &backend.breaker {
            let now = crate::breaker::now_ms();
            if b.is_open(now) {
                return Err(unavailable(format!(
                    "backend '{id}': its circuit breaker is open for another {:.1} s",
                    b.remaining(now) as f64 / 1000.0
                )));
            }
        }
        Ok(backend)
    }

    /// The variant presenting certificate `id` with the checks of `verify`, shared within
    /// the configuration.
    fn variant_for(&self, verify: Verify, id: &Arc<str>) -> Result<Arc<ClientTls>, PolicyError> {
        let strict = match self.certificates.get(id) {
            Some(Ok(strict)) => strict,
            Some(Err(e)) => {
                return Err(missing_certificate(format!(
                    "certificate '{id}' of authentication-certificate cannot be used: {e}"
                )));
            }
            None => {
                return Err(missing_certificate(format!(
                    "certificate '{id}' of authentication-certificate is not in the configuration (it must exist in /mgmt/certificates with its private key)"
                )));
            }
        };
        if verify == Verify::default() {
            return Ok(strict.clone());
        }
        let mut variants = self
            .variants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(variants
            .entry((verify.chain, verify.name, id.clone()))
            .or_insert_with(|| {
                Arc::new(ClientTls::new(
                    verify,
                    strict.certificate.clone(),
                    self.cas.clone(),
                ))
            })
            .clone())
    }
}

/// Nothing to send to: the breakers are open. Azure's 503; the message goes to the log only.
fn unavailable(message: String) -> PolicyError {
    PolicyError::new(
        "forward-request",
        "BackendUnavailable",
        message,
        gatehouse_policy::Answer::Unavailable,
    )
}

fn missing_certificate(message: String) -> PolicyError {
    PolicyError::new(
        "authentication-certificate",
        "CertificateNotFound",
        message,
        gatehouse_policy::Answer::Internal,
    )
}

/// Where one forward goes: the backend `set-backend-service` chose (by id, URL or Dapr
/// application) or the API's service URL, with the client certificate
/// `authentication-certificate` chose and the HTTP proxy `proxy` chose.
pub struct Route<'a> {
    chosen: Chosen<'a>,
    /// The chosen upstream with a target of its own, when the request presents a
    /// certificate of its own or goes through a proxy.
    presenting: Option<Upstream>,
}

enum Chosen<'a> {
    Backend(&'a CompiledBackend),
    /// `set-backend-service base-url`, parsed for this request.
    Url(Box<Upstream>),
    /// `set-backend-service backend-id="dapr"`: the sidecar, with the invoke path as its
    /// base path; the request's own path is not added.
    Dapr(Box<Upstream>),
    Api(&'a Upstream),
}

impl<'a> Route<'a> {
    /// The route of `ex`'s forward under `backends`; `api_upstream` is the API's service URL,
    /// `dapr` the Dapr sidecar's HTTP API. A backend id names a single backend or a pool
    /// ([`Backends::choose`] says what a request gets when it cannot be sent).
    pub fn choose(
        backends: &'a Backends,
        ex: &Exchange,
        api_upstream: Option<&'a Upstream>,
        api_id: &str,
        dapr: Option<&Upstream>,
    ) -> Result<Self, PolicyError> {
        let chosen = if let Some(path) = &ex.dapr_invoke {
            let sidecar = dapr.ok_or_else(|| {
                PolicyError::backend_unreachable(
                    "set-backend-service backend-id=\"dapr\": this gateway has no valid Dapr sidecar address (--dapr-http-endpoint)",
                )
            })?;
            let mut upstream = sidecar.clone();
            upstream.base_path = format!("{}{path}", sidecar.base_path).into();
            Chosen::Dapr(Box::new(upstream))
        } else if let Some(id) = &ex.backend_id {
            Chosen::Backend(backends.choose(id)?)
        } else if let Some(url) = &ex.backend_url {
            Chosen::Url(Box::new(parse_upstream(url).map_err(|m| {
                PolicyError::backend_unreachable(format!("set-backend-service: {m}"))
            })?))
        } else {
            Chosen::Api(api_upstream.ok_or_else(|| {
                PolicyError::backend_unreachable(format!(
                    "API '{api_id}' has no backend service URL"
                ))
            })?)
        };
        let mut route = Route {
            chosen,
            presenting: None,
        };
        if let Some(id) = &ex.authentication_certificate {
            let backend = route.backend();
            let verify = backend.map_or_else(Verify::default, |b| b.verify);
            let variant = backends.variant_for(verify, id)?;
            let name = backend.map(|b| b.id.clone());
            let mut upstream = route.upstream().clone();
            upstream.target = upstream.target.with_client(variant, name);
            route.presenting = Some(upstream);
        }
        if let Some(p) = &ex.proxy {
            let proxy = crate::upstream::ForwardProxy::new(
                &p.url,
                p.username.as_deref(),
                p.password.as_deref(),
            )
            .map_err(|m| {
                PolicyError::new(
                    "proxy",
                    "InvalidProxyUrl",
                    m,
                    gatehouse_policy::Answer::Internal,
                )
            })?;
            let mut upstream = route.upstream().clone();
            upstream.target = upstream.target.through(Arc::new(proxy));
            route.presenting = Some(upstream);
        }
        Ok(route)
    }

    /// The path the request goes to under the upstream's base path: the request's own,
    /// except for Dapr, whose invoke path is the whole of it.
    pub fn path<'p>(&self, request_path: &'p str) -> &'p str {
        match self.chosen {
            Chosen::Dapr(_) => "",
            _ => request_path,
        }
    }

    fn backend(&self) -> Option<&'a CompiledBackend> {
        match self.chosen {
            Chosen::Backend(b) => Some(b),
            _ => None,
        }
    }

    /// The circuit breaker of the backend the request goes to, if it has one: what the call
    /// comes to is counted there.
    pub fn breaker(&self) -> Option<&'a Breaker> {
        self.backend().and_then(|b| b.breaker.as_deref())
    }

    /// Where the request goes; its `target` says how to connect (the TLS variant).
    pub fn upstream(&self) -> &Upstream {
        if let Some(u) = &self.presenting {
            return u;
        }
        match &self.chosen {
            Chosen::Backend(b) => &b.upstream,
            Chosen::Url(u) | Chosen::Dapr(u) => u,
            Chosen::Api(u) => u,
        }
    }

    /// The query to send (without `?`): the request's, with a backend's query credentials.
    pub fn query<'q>(&self, query: Option<&'q str>) -> Option<Cow<'q, str>> {
        match self.backend() {
            Some(b) => b.query(query),
            None => query.map(Cow::Borrowed),
        }
    }

    /// Adds a backend's header credentials to the outgoing headers.
    pub fn add_headers(&self, headers: &mut HeaderMap) {
        if let Some(b) = self.backend() {
            b.add_headers(headers);
        }
    }
}

#[cfg(test)]
mod tests;
