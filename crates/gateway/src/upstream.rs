//! The workers' upstream connections: a pool per worker of connections to the backends, plain
//! or over TLS, reused for as long as the backends keep them open. HTTP/1.1 connections carry
//! one request at a time; a backend that offers HTTP/2 through ALPN gets one multiplexed
//! connection per worker, shared by every request to it. gRPC calls to a plain `http://`
//! backend get HTTP/2 with prior knowledge (h2c), one multiplexed connection per worker and
//! backend as well, filed apart from the HTTP/1.1 ones. A WebSocket handshake gets an HTTP/1.1
//! connection of its own that can switch protocols, and never comes back to the pool.
//!
//! A connection leaves its pool for one request and goes back when the response body has
//! been read to its end ([`UpstreamBody`]); the next request to the same backend takes the
//! most recently returned one. A body dropped before its end takes its connection with it,
//! since what is left of the body would still be on the wire. hyper-util's legacy client does
//! the same job with more on every request: a pool shared behind wake-up channels, a clone of
//! the client, and a task spawned per request to return the connection.
//!
//! A request to a plain `http://` backend whose body is already whole (none, or a buffer a
//! policy made) skips hyper's client and its connection task: [`crate::h1`] writes it and reads
//! the answer in the task serving the client, on connections pooled apart from hyper's.
//!
//! The pool also counts the connections it opens and those still open, for `/metrics`.
//!
//! A target may go through an HTTP proxy ([`forward_proxy`]): its connections are then the
//! proxy's, in absolute form or tunnelled, and pooled apart from direct ones.

mod forward_proxy;
pub use forward_proxy::ForwardProxy;

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gatehouse_tls::rustls::pki_types::ServerName;
use http::uri::Authority;
use http::{HeaderValue, Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::Either;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::client::conn::http2;
use hyper_util::rt::TokioIo;
use rustc_hash::FxHashMap;
use tokio::net::TcpStream;

use crate::config::backends::ClientTls;
use crate::outbound_tls::OutboundTls;
use crate::proxy::Body;

/// Where requests go: a backend's authority and, for https, the name its certificate must
/// carry and the TLS variant its connections use. Made once per configuration for an API's
/// service URL and for each backend resource.
#[derive(Debug, Clone)]
pub struct Target {
    /// What the pools file connections under: the authority, prefixed with `https://` for TLS,
    /// and followed by the TLS variant's tag when it is not the default.
    key: Arc<str>,
    /// What the HTTP/2-with-prior-knowledge connection to a plain backend is filed under.
    h2c_key: Arc<str>,
    authority: Authority,
    port: u16,
    tls: Option<ServerName<'static>>,
    /// The TLS variant of a backend resource (or of `authentication-certificate`); `None`:
    /// the gateway's strict configuration.
    client: Option<Arc<ClientTls>>,
    /// The backend resource this target belongs to, named in logs.
    backend: Option<Arc<str>>,
    /// The HTTP proxy its connections go through (`proxy` policy).
    via: Option<Arc<ForwardProxy>>,
}

impl Target {
    /// The target of an `http` or `https` URL's authority.
    pub fn new(scheme: &http::uri::Scheme, authority: Authority) -> Result<Self, String> {
        let https = *scheme == http::uri::Scheme::HTTPS;
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let (key, tls) = if https {
            let host = authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']');
            let name = ServerName::try_from(host.to_owned())
                .map_err(|_| format!("'{host}' is not a host name a certificate can carry"))?;
            (Arc::from(format!("https://{authority}")), Some(name))
        } else {
            (Arc::from(authority.as_str()), None)
        };
        let h2c_key = Arc::from(format!("h2c://{authority}"));
        Ok(Self {
            key,
            h2c_key,
            authority,
            port,
            tls,
            client: None,
            backend: None,
            via: None,
        })
    }

    /// This target reached through `proxy`: its connections are filed apart from direct ones
    /// and from other proxies' (or other credentials').
    pub fn through(&self, proxy: Arc<ForwardProxy>) -> Self {
        let mut out = self.clone();
        out.key = Arc::from(format!("{}{}", proxy.tag, self.key));
        out.h2c_key = Arc::from(format!("{}{}", proxy.tag, self.h2c_key));
        out.via = Some(proxy);
        out
    }

    /// The target in absolute form for a proxy (`http://host:port/path?query`), and the
    /// proxy's `Proxy-Authorization`, when requests go through a proxy in clear.
    fn absolute(&self, path_and_query: &str) -> Option<(String, Option<&HeaderValue>)> {
        let proxy = self.via.as_ref().filter(|_| self.tls.is_none())?;
        let mut target =
            String::with_capacity(7 + self.authority.as_str().len() + path_and_query.len());
        target.push_str("http://");
        target.push_str(self.authority.as_str());
        target.push_str(path_and_query);
        Some((target, proxy.authorization.as_ref()))
    }

    /// This target as backend resource `backend`'s, with TLS variant `client` (used for
    /// https only). Its connections are pooled apart from those of any other variant.
    pub fn with_client(&self, client: Arc<ClientTls>, backend: Option<Arc<str>>) -> Self {
        let mut out = self.clone();
        out.backend = backend.or_else(|| self.backend.clone());
        if out.tls.is_some() && !client.tag.is_empty() {
            out.key = Arc::from(format!("{}#{}", self.key, client.tag));
            out.client = Some(client);
        }
        out
    }

    /// This target as backend resource `backend`'s (named in logs).
    pub fn named(mut self, backend: Arc<str>) -> Self {
        self.backend = Some(backend);
        self
    }

    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The TLS variant of this target, when it is not the gateway's default.
    pub fn client(&self) -> Option<&Arc<ClientTls>> {
        self.client.as_ref()
    }

    /// What the pools file this target's connections under.
    pub fn pool_key(&self) -> &str {
        &self.key
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }
}

/// How a request goes to its backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Over a pooled HTTP/1.1 connection, or HTTP/2 when a TLS backend offers it.
    Auto,
    /// A protocol switch (WebSocket): HTTP/1.1 on a connection of its own.
    Upgrade,
    /// HTTP/2 (gRPC): with prior knowledge to a plain backend, through ALPN over TLS.
    Http2,
}

/// Upstream connections of one gateway process.
#[derive(Debug, Default)]
pub struct UpstreamGauges {
    /// Connections open now (in the pools or in use).
    pub open: AtomicI64,
    /// Connections opened since the start.
    pub opened: AtomicU64,
}

/// How long connections may take to open and may stay idle, and how many may wait per backend.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_idle_per_backend: usize,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(90),
            max_idle_per_backend: 256,
        }
    }
}

/// Why a request did not get a response from its backend.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot resolve {authority}: {source}")]
    Resolve {
        authority: Authority,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot connect to {authority}: {source}")]
    Connect {
        authority: Authority,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS with {authority} failed: {reason}")]
    Tls {
        authority: Authority,
        reason: String,
    },
    #[error("the connection to {authority} failed: {source}")]
    Http {
        authority: Authority,
        #[source]
        source: hyper::Error,
    },
    #[error("the exchange with {authority} failed: {source}")]
    Exchange {
        authority: Authority,
        #[source]
        source: crate::h1::H1Error,
    },
    #[error("the proxy {proxy} did not open a tunnel to {authority}: {reason}")]
    Proxy {
        proxy: Authority,
        authority: Authority,
        reason: String,
    },
}

/// One worker's pool. Cloning it is cheap and shares the pool.
#[derive(Clone)]
pub struct UpstreamPool {
    shared: Arc<Shared>,
}

/// Idle connections by backend authority (as the configuration spells it). A backend's list
/// stays when it empties, so the next request does not allocate it again; the sweeper drops
/// the empty ones.
type IdleMap = FxHashMap<Box<str>, Vec<Idle>>;

struct Shared {
    idle: Mutex<IdleMap>,
    /// Idle connections of [`crate::h1`], by backend authority.
    lean: Mutex<FxHashMap<Box<str>, Vec<LeanIdle>>>,
    /// The configuration in force: its CA certificates join the outbound trust.
    config: crate::ConfigHandle,
    /// The one HTTP/2 connection per backend that offered it.
    multiplexed: Mutex<FxHashMap<Arc<str>, http2::SendRequest<Body>>>,
    gauges: Arc<UpstreamGauges>,
    tls: Arc<OutboundTls>,
    settings: PoolSettings,
    /// The sweeper that closes connections idle for too long runs (started with the first
    /// connection, inside the worker's runtime).
    sweeping: AtomicBool,
}

struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
}

struct LeanIdle {
    conn: Box<crate::h1::Conn>,
    since: Instant,
}

impl UpstreamPool {
    pub fn new(
        gauges: Arc<UpstreamGauges>,
        settings: PoolSettings,
        tls: Arc<OutboundTls>,
        config: crate::ConfigHandle,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                idle: Mutex::new(IdleMap::default()),
                lean: Mutex::default(),
                config,
                multiplexed: Mutex::default(),
                gauges,
                tls,
                settings,
                sweeping: AtomicBool::new(false),
            }),
        }
    }

    /// Sends `request` (origin-form URI, `Host` set) to `target` over a pooled connection,
    /// or a new one. A pooled connection the backend closed before it took the request is
    /// skipped, and the request goes on the next one.
    pub fn send<'a>(
        &'a self,
        target: &'a Target,
        mut request: Request<Body>,
    ) -> impl std::future::Future<Output = Result<Response<UpstreamBody>, UpstreamError>> + Send + 'a
    {
        use tokio_util::either::Either;
        if target.via.is_some() {
            through_proxy(target, &mut request);
        }
        if target.tls.is_none()
            && let Some(body) = whole_body(request.body_mut())
        {
            let (parts, _) = request.into_parts();
            return Either::Left(self.send_lean(target, parts, body));
        }
        // Streamed bodies, TLS and HTTP/2 are boxed: their state would otherwise make every
        // request's future (moved at each step up to the client's connection) that much larger.
        Either::Right(Box::pin(async move {
            let result = self.send_hyper(target, request).await;
            say_why_tls_failed(target, &result);
            result
        }))
    }

    /// [`UpstreamPool::send`] over hyper's client.
    async fn send_hyper(
        &self,
        target: &Target,
        mut request: Request<Body>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        if let Some(shared) = self.shared.multiplexed(&target.key) {
            return self.send_multiplexed(target, shared, request).await;
        }
        while let Some(mut sender) = self.shared.checkout(&target.key).await {
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(self.lease(target, sender, response)),
                Err(mut e) => match e.take_message() {
                    Some(unsent) => request = unsent,
                    None => {
                        return Err(UpstreamError::Http {
                            authority: target.authority.clone(),
                            source: e.into_error(),
                        });
                    }
                },
            }
        }
        // A new connection's futures (TCP, TLS state, handshakes) are large and rare: boxed,
        // they do not grow every request's future, which is moved on each poll path.
        match Box::pin(self.connect(target, false)).await? {
            Connection::Http1(mut sender) => match sender.send_request(request).await {
                Ok(response) => Ok(self.lease(target, sender, response)),
                Err(source) => Err(UpstreamError::Http {
                    authority: target.authority.clone(),
                    source,
                }),
            },
            Connection::Http2(sender) => {
                self.shared
                    .lock_multiplexed()
                    .insert(target.key.clone(), sender.clone());
                self.send_multiplexed(target, sender, request).await
            }
        }
    }

    /// Sends a request whose body is whole over [`crate::h1`]: on an idle connection of the
    /// pool, else a new one. When a reused connection turns out closed as it was taken, the
    /// request goes once more, on another connection: once, so that a request that makes its
    /// backend drop the connection is not sent to it again and again.
    async fn send_lean(
        &self,
        target: &Target,
        parts: http::request::Parts,
        body: Bytes,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        // Through a proxy in clear, [`through_proxy`] made the URI absolute.
        let target_text;
        let path = if target.via.is_some() {
            target_text = parts.uri.to_string();
            target_text.as_str()
        } else {
            parts.uri.path_and_query().map_or("/", |p| p.as_str())
        };
        let mut retried = false;
        loop {
            let (mut conn, fresh) = match self.shared.checkout_lean(&target.key) {
                Some(conn) => (conn, false),
                None => {
                    let stream = Box::pin(self.open(target)).await?;
                    let open = crate::h1::OpenGuard::new(self.shared.gauges.clone());
                    (Box::new(crate::h1::Conn::new(stream, open)), true)
                }
            };
            match conn
                .exchange(&parts.method, path, &parts.headers, &body)
                .await
            {
                Ok(head) => return Ok(self.lean_response(target, conn, head)),
                Err(failed) if failed.retry && !fresh && !retried => retried = true,
                Err(failed) => {
                    return Err(UpstreamError::Exchange {
                        authority: target.authority.clone(),
                        source: failed.error,
                    });
                }
            }
        }
    }

    /// The response of a [`crate::h1`] exchange. A body already whole in the read buffer
    /// gives its connection back at once.
    fn lean_response(
        &self,
        target: &Target,
        conn: Box<crate::h1::Conn>,
        head: crate::h1::Head,
    ) -> Response<UpstreamBody> {
        let crate::h1::Head {
            status,
            version,
            headers,
            framing,
            keep_alive,
        } = head;
        let mut body = crate::h1::Body::new(conn, framing, keep_alive);
        let kind = match body.take_whole() {
            Some(bytes) => {
                if let Some(conn) = body.reusable() {
                    self.shared.put_lean(&target.key, conn);
                }
                Kind::Whole(bytes)
            }
            None => Kind::Lean {
                body,
                pool: self.shared.clone(),
                key: target.key.clone(),
            },
        };
        let mut response = Response::new(UpstreamBody { kind });
        *response.status_mut() = status;
        *response.version_mut() = version;
        *response.headers_mut() = headers;
        response
    }

    /// Sends over the backend's HTTP/2 connection: the target in the request line's place
    /// (`:scheme`, `:authority`, `:path`), no `Host` header.
    async fn send_multiplexed(
        &self,
        target: &Target,
        mut sender: http2::SendRequest<Body>,
        mut request: Request<Body>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let authority = match request.headers_mut().remove(http::header::HOST) {
            Some(host) => {
                Authority::try_from(host.as_bytes()).unwrap_or_else(|_| target.authority.clone())
            }
            None => target.authority.clone(),
        };
        let path = request
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        let scheme = if target.is_tls() {
            http::uri::Scheme::HTTPS
        } else {
            http::uri::Scheme::HTTP
        };
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(scheme);
        parts.authority = Some(authority);
        parts.path_and_query = Some(path);
        if let Ok(uri) = http::Uri::from_parts(parts) {
            *request.uri_mut() = uri;
        }
        *request.version_mut() = http::Version::HTTP_2;
        let http_error = |source| UpstreamError::Http {
            authority: target.authority.clone(),
            source,
        };
        sender.ready().await.map_err(http_error)?;
        let response = sender.send_request(request).await.map_err(http_error)?;
        Ok(response.map(|inner| UpstreamBody::hyper(inner, None)))
    }

    fn lease(
        &self,
        target: &Target,
        sender: SendRequest<Body>,
        response: Response<Incoming>,
    ) -> Response<UpstreamBody> {
        response.map(|inner| {
            UpstreamBody::hyper(
                inner,
                Some(Lease {
                    pool: self.shared.clone(),
                    key: target.key.clone(),
                    sender,
                }),
            )
        })
    }

    /// Opens a connection to the target: to the first of its addresses that accepts, or
    /// through its proxy (a tunnel for TLS).
    async fn open(&self, target: &Target) -> Result<TcpStream, UpstreamError> {
        self.open_via(target, target.tls.is_some()).await
    }

    /// [`Self::open`]; through a proxy, `tunnel` asks for a `CONNECT` tunnel.
    async fn open_via(&self, target: &Target, tunnel: bool) -> Result<TcpStream, UpstreamError> {
        self.start_sweeping();
        let Some(proxy) = &target.via else {
            return self.open_tcp(&target.authority, target.port).await;
        };
        let mut stream = self.open_tcp(&proxy.authority, proxy.port).await?;
        if tunnel {
            proxy
                .tunnel(
                    &mut stream,
                    &target.authority,
                    target.port,
                    self.shared.settings.connect_timeout,
                )
                .await?;
        }
        Ok(stream)
    }

    /// Opens a TCP connection to the first of `authority`'s addresses that accepts.
    async fn open_tcp(&self, authority: &Authority, port: u16) -> Result<TcpStream, UpstreamError> {
        let addrs = resolve(authority, port).await?;
        let connect_error = |source| UpstreamError::Connect {
            authority: authority.clone(),
            source,
        };
        let mut last = std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the name resolved to no address",
        );
        let limit = self.shared.settings.connect_timeout;
        for addr in addrs {
            let stream = match tokio::time::timeout(limit, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    last = e;
                    continue;
                }
                Err(_) => {
                    last = std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("{addr} did not accept within {limit:?}"),
                    );
                    continue;
                }
            };
            stream.set_nodelay(true).map_err(connect_error)?;
            let keepalive = socket2::TcpKeepalive::new().with_time(Duration::from_secs(60));
            socket2::SockRef::from(&stream)
                .set_tcp_keepalive(&keepalive)
                .map_err(connect_error)?;
            return Ok(stream);
        }
        Err(connect_error(last))
    }

    /// A new connection to `target`; `upgrades`: an HTTP/1.1 connection that can be taken
    /// over by a protocol switch (101), never pooled.
    async fn connect(&self, target: &Target, upgrades: bool) -> Result<Connection, UpstreamError> {
        let authority = &target.authority;
        let stream = self.open(target).await?;
        let limit = self.shared.settings.connect_timeout;
        let connection = match &target.tls {
            None => Connection::Http1(self.handshake(authority, stream, upgrades).await?),
            Some(name) => {
                let backend = target.backend.as_deref().unwrap_or("-");
                let client = match &target.client {
                    Some(variant) => variant.client_config(&self.shared.tls).map_err(|reason| {
                        tracing::warn!(backend_id = backend, backend = %authority, host = ?name, %reason, "TLS with the backend failed");
                        UpstreamError::Tls {
                            authority: authority.clone(),
                            reason,
                        }
                    })?,
                    None => {
                        let in_force = self.shared.config.current();
                        self.shared
                            .tls
                            .config_for(in_force.as_ref().map(|c| &c.tls))
                    }
                };
                // A protocol switch exists in HTTP/1.1 only: offer nothing else (a copy of the
                // configuration per WebSocket handshake, none per ordinary request).
                let client = if upgrades {
                    let mut only_http1 = (*client).clone();
                    only_http1.alpn_protocols = vec![b"http/1.1".to_vec()];
                    Arc::new(only_http1)
                } else {
                    client
                };
                let connector = gatehouse_tls::tokio_rustls::TlsConnector::from(client);
                let tls = match tokio::time::timeout(limit, connector.connect(name.clone(), stream))
                    .await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        let reason = tls_reason(&e);
                        tracing::warn!(backend_id = backend, backend = %authority, host = ?name, %reason, "TLS with the backend failed");
                        return Err(UpstreamError::Tls {
                            authority: authority.clone(),
                            reason,
                        });
                    }
                    Err(_) => {
                        let reason = format!("no TLS handshake within {limit:?}");
                        tracing::warn!(backend_id = backend, backend = %authority, host = ?name, %reason, "TLS with the backend failed");
                        return Err(UpstreamError::Tls {
                            authority: authority.clone(),
                            reason,
                        });
                    }
                };
                if tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice()) {
                    Connection::Http2(self.handshake_http2(authority, tls).await?)
                } else {
                    Connection::Http1(self.handshake(authority, tls, upgrades).await?)
                }
            }
        };
        Ok(connection)
    }

    /// Sends a protocol-switching request (a WebSocket handshake) on a connection of its
    /// own: on a 101 the connection belongs to the switched protocol
    /// (`hyper::upgrade::on(response)`), so it never goes back to the pool.
    async fn send_upgrade(
        &self,
        target: &Target,
        request: Request<Body>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        match Box::pin(self.connect(target, true)).await? {
            Connection::Http1(mut sender) => match sender.send_request(request).await {
                Ok(response) => Ok(response.map(|inner| UpstreamBody::hyper(inner, None))),
                Err(source) => Err(UpstreamError::Http {
                    authority: target.authority.clone(),
                    source,
                }),
            },
            // Offered only HTTP/1.1, the backend chose HTTP/2 all the same: `Upgrade` does
            // not exist there, so the call fails as the backend's error (502).
            Connection::Http2(sender) => self.send_multiplexed(target, sender, request).await,
        }
    }

    /// Sends over HTTP/2 with prior knowledge (h2c) to a plain `http://` backend: one
    /// multiplexed connection per worker and backend, filed apart from the HTTP/1.1 ones.
    async fn send_h2c(
        &self,
        target: &Target,
        request: Request<Body>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        if let Some(sender) = self.shared.multiplexed(&target.h2c_key) {
            return self.send_multiplexed(target, sender, request).await;
        }
        let sender = Box::pin(async {
            // Prior knowledge has no absolute form: through a proxy, a tunnel.
            let stream = self.open_via(target, true).await?;
            self.handshake_http2(&target.authority, stream).await
        })
        .await?;
        self.shared
            .lock_multiplexed()
            .insert(target.h2c_key.clone(), sender.clone());
        self.send_multiplexed(target, sender, request).await
    }

    /// Sends `request` the way `protocol` asks: see [`Protocol`]. The rare ways are boxed, so
    /// the common one's future stays small.
    pub fn send_as<'a>(
        &'a self,
        target: &'a Target,
        request: Request<Body>,
        protocol: Protocol,
    ) -> impl std::future::Future<Output = Result<Response<UpstreamBody>, UpstreamError>> + Send + 'a
    {
        use tokio_util::either::Either;
        type Rare<'a> = Pin<
            Box<
                dyn std::future::Future<Output = Result<Response<UpstreamBody>, UpstreamError>>
                    + Send
                    + 'a,
            >,
        >;
        match protocol {
            Protocol::Auto => Either::Left(self.send(target, request)),
            Protocol::Upgrade => Either::Right(Box::pin(async move {
                let mut request = request;
                if target.via.is_some() {
                    through_proxy(target, &mut request);
                }
                let result = self.send_upgrade(target, request).await;
                say_why_tls_failed(target, &result);
                result
            }) as Rare<'a>),
            Protocol::Http2 if target.tls.is_none() => {
                Either::Right(Box::pin(self.send_h2c(target, request)) as Rare<'a>)
            }
            // Over TLS, ALPN decides; a backend that offers h2 gets it.
            Protocol::Http2 => Either::Left(self.send(target, request)),
        }
    }

    /// Starts HTTP/1.1 on an open connection, and the task that drives it.
    async fn handshake<IO>(
        &self,
        authority: &Authority,
        io: IO,
        upgrades: bool,
    ) -> Result<SendRequest<Body>, UpstreamError>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, connection) = hyper::client::conn::http1::Builder::new()
            .handshake(TokioIo::new(io))
            .await
            .map_err(|source| UpstreamError::Http {
                authority: authority.clone(),
                source,
            })?;
        if upgrades {
            self.drive(connection.with_upgrades());
        } else {
            self.drive(connection);
        }
        Ok(sender)
    }

    /// Starts HTTP/2 on an open connection (ALPN chose it), and the task that drives it.
    async fn handshake_http2<IO>(
        &self,
        authority: &Authority,
        io: IO,
    ) -> Result<http2::SendRequest<Body>, UpstreamError>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, connection) = http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(30))
            .handshake(TokioIo::new(io))
            .await
            .map_err(|source| UpstreamError::Http {
                authority: authority.clone(),
                source,
            })?;
        self.drive(connection);
        Ok(sender)
    }

    /// Runs a new connection's task until the connection ends, counted in the gauges.
    fn drive(
        &self,
        connection: impl std::future::Future<Output = hyper::Result<()>> + Send + 'static,
    ) {
        let gauges = self.shared.gauges.clone();
        gauges.opened.fetch_add(1, Ordering::Relaxed);
        gauges.open.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
            gauges.open.fetch_sub(1, Ordering::Relaxed);
        });
    }

    /// Starts the task that closes idle connections, once, from inside the worker's runtime.
    fn start_sweeping(&self) {
        if self.shared.sweeping.swap(true, Ordering::Relaxed) {
            return;
        }
        let pool: Weak<Shared> = Arc::downgrade(&self.shared);
        let period = (self.shared.settings.idle_timeout / 2).max(Duration::from_millis(100));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match pool.upgrade() {
                    Some(pool) => pool.sweep(),
                    None => break,
                }
            }
        });
    }

    /// Idle connections now, all backends together.
    #[cfg(test)]
    fn idle_count(&self) -> usize {
        self.shared.lock().values().map(Vec::len).sum::<usize>()
            + self
                .shared
                .lock_lean()
                .values()
                .map(Vec::len)
                .sum::<usize>()
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, IdleMap> {
        // The map stays consistent whatever a panicking holder did: take it back.
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_lean(&self) -> std::sync::MutexGuard<'_, FxHashMap<Box<str>, Vec<LeanIdle>>> {
        self.lean
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The most recently returned [`crate::h1`] connection to `key` that can take a request.
    fn checkout_lean(&self, key: &str) -> Option<Box<crate::h1::Conn>> {
        let mut map = self.lock_lean();
        let list = map.get_mut(key)?;
        while let Some(mut idle) = list.pop() {
            if idle.since.elapsed() <= self.settings.idle_timeout && idle.conn.is_usable() {
                return Some(idle.conn);
            }
        }
        None
    }

    fn put_lean(&self, key: &str, conn: Box<crate::h1::Conn>) {
        let idle = LeanIdle {
            conn,
            since: Instant::now(),
        };
        file_idle(
            &mut self.lock_lean(),
            key,
            idle,
            self.settings.max_idle_per_backend,
        );
    }

    fn lock_multiplexed(
        &self,
    ) -> std::sync::MutexGuard<'_, FxHashMap<Arc<str>, http2::SendRequest<Body>>> {
        self.multiplexed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The backend's HTTP/2 connection, while it is open.
    fn multiplexed(&self, key: &str) -> Option<http2::SendRequest<Body>> {
        let mut map = self.lock_multiplexed();
        let sender = map.get(key)?;
        if sender.is_closed() {
            map.remove(key);
            return None;
        }
        Some(sender.clone())
    }

    /// The most recently returned open connection to `authority`, once it can take a request.
    async fn checkout(&self, key: &str) -> Option<SendRequest<Body>> {
        loop {
            let mut idle = self.lock().get_mut(key)?.pop()?;
            if idle.sender.is_closed() || idle.since.elapsed() > self.settings.idle_timeout {
                continue;
            }
            // Returned at the end of a body: ready at once, or as soon as the connection's
            // task has seen that end. An error means it closed meanwhile.
            if idle.sender.ready().await.is_ok() {
                return Some(idle.sender);
            }
        }
    }

    fn put(&self, key: &str, sender: SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        let idle = Idle {
            sender,
            since: Instant::now(),
        };
        file_idle(
            &mut self.lock(),
            key,
            idle,
            self.settings.max_idle_per_backend,
        );
    }

    /// Drops the connections idle longer than the idle timeout, and those the backend closed.
    fn sweep(&self) {
        self.lock_multiplexed()
            .retain(|_, sender| !sender.is_closed());
        let timeout = self.settings.idle_timeout;
        let mut map = self.lock();
        map.retain(|_, list| {
            list.retain(|idle| !idle.sender.is_closed() && idle.since.elapsed() <= timeout);
            !list.is_empty()
        });
        drop(map);
        self.lock_lean().retain(|_, list| {
            list.retain_mut(|idle| idle.since.elapsed() <= timeout && idle.conn.is_usable());
            !list.is_empty()
        });
    }
}

/// Files an idle connection under `key`, unless `max` already wait there (it is then dropped,
/// which closes it). A backend's list stays when it empties, so the next one does not allocate
/// it again.
fn file_idle<T>(map: &mut FxHashMap<Box<str>, Vec<T>>, key: &str, idle: T, max: usize) {
    if let Some(list) = map.get_mut(key) {
        if list.len() < max {
            list.push(idle);
        }
    } else if max > 0 {
        map.insert(key.into(), vec![idle]);
    }
}

/// In TLS 1.3 a backend refuses a client certificate after the handshake: the first request
/// over hyper fails instead. Says why, as a failed handshake does.
fn say_why_tls_failed(target: &Target, result: &Result<Response<UpstreamBody>, UpstreamError>) {
    if let (Err(UpstreamError::Http { source, .. }), Some(name)) = (result, &target.tls)
        && let Some(tls) = gatehouse_tls::client::find_tls_error(source)
    {
        tracing::warn!(
            backend_id = target.backend.as_deref().unwrap_or("-"),
            backend = %target.authority,
            host = ?name,
            reason = %gatehouse_tls::client::describe(tls),
            "TLS with the backend failed"
        );
    }
}

/// Says why a TLS handshake with a backend failed, in words (expired, unknown issuer, …).
fn tls_reason(e: &std::io::Error) -> String {
    gatehouse_tls::client::find_tls_error(e)
        .map_or_else(|| e.to_string(), gatehouse_tls::client::describe)
}

/// The addresses of an authority: itself when it is an IP address, else from the resolver.
async fn resolve(authority: &Authority, port: u16) -> Result<Vec<SocketAddr>, UpstreamError> {
    let host = authority.host();
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    match tokio::net::lookup_host((host, port)).await {
        Ok(addrs) => Ok(addrs.collect()),
        Err(source) => Err(UpstreamError::Resolve {
            authority: authority.clone(),
            source,
        }),
    }
}

/// A request to a target reached through a proxy in clear, made ready for it: its URI in
/// absolute form and the proxy's `Proxy-Authorization` (the client's never passes: it is
/// hop-by-hop). Through a tunnel, or directly, it is left as it is.
fn through_proxy(target: &Target, request: &mut Request<Body>) {
    let pq = request
        .uri()
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    let Some((absolute, authorization)) = target.absolute(pq) else {
        return;
    };
    if let Ok(uri) = absolute.parse::<http::Uri>() {
        *request.uri_mut() = uri;
    }
    if let Some(auth) = authorization {
        request
            .headers_mut()
            .insert(http::header::PROXY_AUTHORIZATION, auth.clone());
    }
}

/// A new connection, in the protocol the backend chose.
enum Connection {
    Http1(SendRequest<Body>),
    Http2(http2::SendRequest<Body>),
}

/// A connection out of its pool for one response.
struct Lease {
    pool: Arc<Shared>,
    key: Arc<str>,
    sender: SendRequest<Body>,
}

/// A request body that is already whole, taken out of `body`: none (a client's body that has
/// ended before it began), or a buffer. `None`: a body still to stream.
fn whole_body(body: &mut Body) -> Option<Bytes> {
    match body {
        Either::Left(full) => {
            // A `Full` gives its one frame at once.
            let mut cx = Context::from_waker(std::task::Waker::noop());
            match Pin::new(full).poll_frame(&mut cx) {
                Poll::Ready(Some(Ok(frame))) => Some(frame.into_data().unwrap_or_default()),
                _ => Some(Bytes::new()),
            }
        }
        Either::Right(stream) if stream.is_end_stream() => Some(Bytes::new()),
        Either::Right(_) => None,
    }
}

/// Why a backend's response body could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamBodyError {
    #[error(transparent)]
    Hyper(#[from] hyper::Error),
    #[error(transparent)]
    H1(#[from] crate::h1::H1Error),
}

/// A backend's response body. Its connection goes back to the pool when the body has been
/// read to its end.
pub struct UpstreamBody {
    kind: Kind,
}

enum Kind {
    /// Over hyper's client (HTTP/2, TLS, switches, streamed requests).
    Hyper {
        inner: Incoming,
        lease: Option<Lease>,
    },
    /// Over [`crate::h1`], still on its connection.
    Lean {
        body: crate::h1::Body,
        pool: Arc<Shared>,
        key: Arc<str>,
    },
    /// Read whole with the head; its connection is back in the pool already.
    Whole(Bytes),
}

impl UpstreamBody {
    fn hyper(inner: Incoming, lease: Option<Lease>) -> Self {
        Self {
            kind: Kind::Hyper { inner, lease },
        }
    }

    fn release(&mut self) {
        match &mut self.kind {
            Kind::Hyper { lease, .. } => {
                if let Some(lease) = lease.take() {
                    lease.pool.put(&lease.key, lease.sender);
                }
            }
            Kind::Lean { body, pool, key } => {
                if let Some(conn) = body.reusable() {
                    pool.put_lean(key, conn);
                }
            }
            Kind::Whole(_) => {}
        }
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        if self.is_end_stream() {
            self.release();
        }
    }
}

impl HttpBody for UpstreamBody {
    type Data = Bytes;
    type Error = UpstreamBodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamBodyError>>> {
        let this = &mut *self;
        match &mut this.kind {
            Kind::Hyper { inner, lease } => {
                let polled = Pin::new(&mut *inner).poll_frame(cx);
                match &polled {
                    Poll::Ready(None) => this.release(),
                    Poll::Ready(Some(Ok(_))) if inner.is_end_stream() => this.release(),
                    // The rest of the body is lost: so is the connection.
                    Poll::Ready(Some(Err(_))) => *lease = None,
                    _ => {}
                }
                polled.map_err(UpstreamBodyError::Hyper)
            }
            Kind::Lean { body, .. } => {
                let polled = body.poll_frame(cx);
                if body.is_end_stream() {
                    this.release();
                }
                polled.map_err(UpstreamBodyError::H1)
            }
            Kind::Whole(bytes) => Poll::Ready(if bytes.is_empty() {
                None
            } else {
                Some(Ok(Frame::data(std::mem::take(bytes))))
            }),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Hyper { inner, .. } => inner.is_end_stream(),
            Kind::Lean { body, .. } => body.is_end_stream(),
            Kind::Whole(bytes) => bytes.is_empty(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Hyper { inner, .. } => inner.size_hint(),
            Kind::Lean { body, .. } => body.size_hint(),
            Kind::Whole(bytes) => SizeHint::with_exact(bytes.len() as u64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Either, Full};
    use hyper::service::service_fn;
    use std::sync::atomic::AtomicUsize;

    /// A loopback HTTP/1.1 backend: `/close` answers with `Connection: close`, `/big` with a
    /// 64 KiB body, `/empty` with 204, anything else with `ok`. Counts the connections it accepted.
    async fn backend() -> (Target, Arc<AtomicUsize>) {
        backend_with(None).await
    }

    /// [`backend`], over TLS when `tls` is given (the target is then `https://`).
    async fn backend_with(
        tls: Option<Arc<gatehouse_tls::server::ServerTls>>,
    ) -> (Target, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let scheme = if tls.is_some() {
            http::uri::Scheme::HTTPS
        } else {
            http::uri::Scheme::HTTP
        };
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = service_fn(|req: Request<Incoming>| async move {
                        let mut response = Response::new(Full::new(Bytes::from_static(b"ok")));
                        if req.version() == http::Version::HTTP_2 {
                            // What an HTTP/2 backend saw as :authority, for the tests.
                            let authority = req.uri().authority().map(|a| a.to_string());
                            *response.body_mut() =
                                Full::new(format!("h2 {}", authority.unwrap_or_default()).into());
                        }
                        match req.uri().path() {
                            "/close" => {
                                response
                                    .headers_mut()
                                    .insert(http::header::CONNECTION, "close".parse().unwrap());
                            }
                            "/big" => *response.body_mut() = Full::new(vec![b'x'; 65536].into()),
                            "/empty" => {
                                *response.status_mut() = http::StatusCode::NO_CONTENT;
                                *response.body_mut() = Full::new(Bytes::new());
                            }
                            _ => {}
                        }
                        Ok::<_, std::convert::Infallible>(response)
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        Some(tls) => {
                            let Ok(accepted) = tls.accept(stream).await else {
                                return;
                            };
                            if accepted.http2 {
                                let _ = hyper::server::conn::http2::Builder::new(
                                    hyper_util::rt::TokioExecutor::new(),
                                )
                                .serve_connection(TokioIo::new(accepted.stream), service)
                                .await;
                            } else {
                                let _ = http
                                    .serve_connection(TokioIo::new(accepted.stream), service)
                                    .await;
                            }
                        }
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                });
            }
        });
        (Target::new(&scheme, authority).unwrap(), accepted)
    }

    fn pool_with(gauges: Arc<UpstreamGauges>, settings: PoolSettings) -> UpstreamPool {
        UpstreamPool::new(
            gauges,
            settings,
            Arc::new(OutboundTls::load(&[]).unwrap()),
            crate::ConfigHandle::default(),
        )
    }

    fn get(target: &Target, path: &'static str) -> Request<Body> {
        let authority = target.authority();
        let mut request = Request::new(Either::Left(Full::new(Bytes::new())));
        *request.uri_mut() = http::Uri::from_static(path);
        request.headers_mut().insert(
            http::header::HOST,
            http::HeaderValue::from_str(authority.as_str()).unwrap(),
        );
        request
    }

    async fn call(pool: &UpstreamPool, target: &Target, path: &'static str) -> Bytes {
        let response = pool.send(target, get(target, path)).await.unwrap();
        response.into_body().collect().await.unwrap().to_bytes()
    }

    /// Waits up to 5 s for what the connection tasks do after a response.
    async fn eventually(what: &str, check: impl Fn() -> bool) {
        for _ in 0..500 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("never true: {what}");
    }

    #[tokio::test]
    async fn connections_are_reused_and_given_up_when_they_must_be() {
        let (target, accepted) = backend().await;
        let gauges = Arc::new(UpstreamGauges::default());
        let pool = pool_with(gauges.clone(), PoolSettings::default());

        // Read to the end, one after the other: one connection for all.
        for _ in 0..50 {
            assert_eq!(&call(&pool, &target, "/").await[..], b"ok");
        }
        assert_eq!(call(&pool, &target, "/big").await.len(), 65536);
        assert!(call(&pool, &target, "/empty").await.is_empty());
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(gauges.opened.load(Ordering::Relaxed), 1);
        assert_eq!(pool.idle_count(), 1);

        // A body dropped before its end takes its connection with it.
        let unread = pool.send(&target, get(&target, "/big")).await.unwrap();
        drop(unread);
        assert_eq!(&call(&pool, &target, "/").await[..], b"ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);

        // A backend that closes after its answer: the next request opens a new connection
        // and does not fail.
        assert_eq!(&call(&pool, &target, "/close").await[..], b"ok");
        assert_eq!(&call(&pool, &target, "/").await[..], b"ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
        eventually("one connection open", || {
            gauges.open.load(Ordering::Relaxed) == 1
        })
        .await;

        // Concurrent requests each get a connection; all go back to the pool.
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (pool, target) = (pool.clone(), target.clone());
                tokio::spawn(async move { call(&pool, &target, "/").await })
            })
            .collect();
        for task in tasks {
            assert_eq!(&task.await.unwrap()[..], b"ok");
        }
        assert_eq!(pool.idle_count(), 8);
    }

    #[tokio::test]
    async fn idle_connections_are_swept() {
        let (target, _) = backend().await;
        let gauges = Arc::new(UpstreamGauges::default());
        let settings = PoolSettings {
            idle_timeout: Duration::from_millis(200),
            ..PoolSettings::default()
        };
        let pool = pool_with(gauges.clone(), settings);
        call(&pool, &target, "/").await;
        assert_eq!(pool.idle_count(), 1);
        eventually("the idle connection swept", || pool.idle_count() == 0).await;
        eventually("no connection open", || {
            gauges.open.load(Ordering::Relaxed) == 0
        })
        .await;
    }

    /// A backend that answers the first request of each connection and closes the connection
    /// when the second arrives, without a byte of answer: what an idle close racing the next
    /// request looks like.
    async fn one_answer_per_connection() -> (Target, Arc<AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 1024];
                    for answered in [false, true] {
                        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                            match stream.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => seen.extend_from_slice(&buf[..n]),
                            }
                        }
                        seen.clear();
                        if answered {
                            return;
                        }
                        let _ = stream
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                            .await;
                    }
                });
            }
        });
        (
            Target::new(&http::uri::Scheme::HTTP, authority).unwrap(),
            accepted,
        )
    }

    #[tokio::test]
    async fn a_reused_connection_closed_as_it_is_taken_costs_an_idempotent_request_nothing() {
        let (target, accepted) = one_answer_per_connection().await;
        let pool = pool_with(Arc::default(), PoolSettings::default());
        assert_eq!(&call(&pool, &target, "/").await[..], b"ok");
        // The pooled connection closes on the next request: it goes again, once, on a new one.
        assert_eq!(&call(&pool, &target, "/").await[..], b"ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        // A POST is not sent twice: the failure is the caller's.
        let mut post = get(&target, "/");
        *post.method_mut() = http::Method::POST;
        let Err(error) = pool.send(&target, post).await else {
            panic!("a POST was sent again");
        };
        assert!(
            matches!(
                &error,
                UpstreamError::Exchange {
                    source: crate::h1::H1Error::ClosedBeforeAnswer,
                    ..
                }
            ),
            "{error}"
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_unreachable_backend_is_a_clear_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
        drop(listener);
        let pool = pool_with(Arc::default(), PoolSettings::default());
        let target = Target::new(&http::uri::Scheme::HTTP, authority.clone()).unwrap();
        let e = pool.send(&target, get(&target, "/")).await.err().unwrap();
        assert!(matches!(e, UpstreamError::Connect { .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with(&format!("cannot connect to {authority}"))
        );
    }

    #[tokio::test]
    async fn https_backends_are_verified_and_their_connections_pooled() {
        let ca = gatehouse_tls::testca::TestCa::new("upstream");
        let leaf = ca.leaf("backend", &["127.0.0.1", "localhost"]);
        let server =
            gatehouse_tls::server::ServerTls::from_files(&leaf.cert, &leaf.key, false).unwrap();
        let (target, accepted) = backend_with(Some(server)).await;
        assert!(target.is_tls());

        // Trusted through an added CA: answers, and reuses its connection.
        let trust =
            gatehouse_tls::client::Trust::only(&std::fs::read(&ca.cert).unwrap(), "ca").unwrap();
        let trusting = UpstreamPool::new(
            Arc::default(),
            PoolSettings::default(),
            Arc::new(OutboundTls::new(trust).unwrap()),
            crate::ConfigHandle::default(),
        );
        for _ in 0..3 {
            assert_eq!(&call(&trusting, &target, "/").await[..], b"ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);

        // The OS roots alone do not know the test CA: a clear error naming the reason.
        let strict = pool_with(Arc::default(), PoolSettings::default());
        let e = strict.send(&target, get(&target, "/")).await.err().unwrap();
        assert!(matches!(e, UpstreamError::Tls { .. }), "{e}");
        assert!(e.to_string().contains("issuer is not trusted"), "{e}");

        // A certificate that does not name the host called.
        let other = ca.leaf("other", &["other.test"]);
        let server =
            gatehouse_tls::server::ServerTls::from_files(&other.cert, &other.key, false).unwrap();
        let (misnamed, _) = backend_with(Some(server)).await;
        let e = trusting
            .send(&misnamed, get(&misnamed, "/"))
            .await
            .err()
            .unwrap();
        assert!(e.to_string().contains("does not name the host"), "{e}");
    }

    #[tokio::test]
    async fn a_backend_variant_trusts_the_gateways_cas_and_pools_apart_from_strict() {
        let ca = gatehouse_tls::testca::TestCa::new("upstream-variant");
        // Trusted only as the gateway's CA certificate, and naming another host.
        let leaf = ca.leaf("other", &["other.test"]);
        let server =
            gatehouse_tls::server::ServerTls::from_files(&leaf.cert, &leaf.key, false).unwrap();
        let (target, accepted) = backend_with(Some(server)).await;
        let pool = pool_with(Arc::default(), PoolSettings::default());
        let cas = Arc::new(crate::config::CompiledTls {
            trusted_cas: gatehouse_tls::pem::certificates(&std::fs::read(&ca.cert).unwrap(), "ca")
                .unwrap(),
            ..crate::config::CompiledTls::default()
        });
        let no_name = gatehouse_tls::client::Verify {
            chain: true,
            name: false,
        };
        let variant = Arc::new(ClientTls::new(no_name, None, cas));
        let relaxed = target.with_client(variant.clone(), Some("b".into()));
        for _ in 0..3 {
            assert_eq!(&call(&pool, &relaxed, "/").await[..], b"ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "one pooled connection");
        // The same backend strictly: a connection of its own, refused; the relaxed one is
        // never lent to it.
        let e = pool.send(&target, get(&target, "/")).await.err().unwrap();
        assert!(matches!(e, UpstreamError::Tls { .. }), "{e}");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        // The variant's configuration was built once and is shared.
        let outbound = OutboundTls::load(&[]).unwrap();
        assert!(Arc::ptr_eq(
            &variant.client_config(&outbound).unwrap(),
            &variant.client_config(&outbound).unwrap()
        ));
    }

    #[tokio::test]
    async fn a_backend_offering_http2_gets_one_multiplexed_connection() {
        let ca = gatehouse_tls::testca::TestCa::new("upstream-h2");
        let leaf = ca.leaf("backend", &["127.0.0.1"]);
        let server =
            gatehouse_tls::server::ServerTls::from_files(&leaf.cert, &leaf.key, true).unwrap();
        let (target, accepted) = backend_with(Some(server)).await;
        let trust =
            gatehouse_tls::client::Trust::only(&std::fs::read(&ca.cert).unwrap(), "ca").unwrap();
        let pool = UpstreamPool::new(
            Arc::default(),
            PoolSettings::default(),
            Arc::new(OutboundTls::new(trust).unwrap()),
            crate::ConfigHandle::default(),
        );
        let want = format!("h2 {}", target.authority());
        assert_eq!(call(&pool, &target, "/").await, want.as_bytes());
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (pool, target) = (pool.clone(), target.clone());
                tokio::spawn(async move { call(&pool, &target, "/").await })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), want.as_bytes());
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "one connection, multiplexed"
        );
        assert_eq!(pool.idle_count(), 0, "HTTP/2 connections are not leased");
    }

    #[tokio::test]
    async fn grpc_to_a_plain_backend_gets_one_h2c_connection_apart_from_http1() {
        // A backend speaking HTTP/1.1 and, with prior knowledge, HTTP/2 on one port.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let service = service_fn(|req: Request<Incoming>| async move {
                        let body = format!("{:?}", req.version());
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(
                            body,
                        ))))
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                });
            }
        });
        let target = Target::new(&http::uri::Scheme::HTTP, authority).unwrap();
        let pool = pool_with(Arc::default(), PoolSettings::default());
        let h2 = |pool: UpstreamPool, target: Target| async move {
            let response = pool
                .send_as(&target, get(&target, "/"), Protocol::Http2)
                .await
                .unwrap();
            response.into_body().collect().await.unwrap().to_bytes()
        };
        assert_eq!(h2(pool.clone(), target.clone()).await, "HTTP/2.0");
        let tasks: Vec<_> = (0..8)
            .map(|_| tokio::spawn(h2(pool.clone(), target.clone())))
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), "HTTP/2.0");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "one h2c connection");
        // Ordinary requests to the same backend keep to HTTP/1.1, on a connection of their own.
        assert_eq!(call(&pool, &target, "/").await, "HTTP/1.1");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        assert_eq!(pool.idle_count(), 1);
    }
}
#[cfg(test)]
mod future_size {
    /// Every request's send future is moved at each step up to the client's connection: the
    /// rare ways (streamed bodies, TLS, HTTP/2, switches) are boxed so it stays small. At
    /// 752 bytes when this test was written; 2,048 before.
    #[tokio::test]
    async fn the_common_send_future_stays_small() {
        let pool = super::UpstreamPool::new(
            Default::default(),
            Default::default(),
            std::sync::Arc::new(crate::outbound_tls::OutboundTls::load(&[]).unwrap()),
            crate::ConfigHandle::default(),
        );
        let target =
            super::Target::new(&http::uri::Scheme::HTTP, "127.0.0.1:1".parse().unwrap()).unwrap();
        let request = http::Request::new(http_body_util::Either::Left(http_body_util::Full::new(
            bytes::Bytes::new(),
        )));
        let size = std::mem::size_of_val(&pool.send_as(&target, request, super::Protocol::Auto));
        assert!(size <= 1024, "the send future grew to {size} bytes");
    }
}
