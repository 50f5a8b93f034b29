//! One request through the gateway: route, check the subscription key, forward to the
//! backend, stream the answer back.

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use gatehouse_policy::exchange::{
    ClientCertificate, Request as ExRequest, RequestInfo, Response as ExResponse, SubscriptionInfo,
};
use gatehouse_policy::expr::HttpResponse;
use gatehouse_policy::policies::header_list;
use gatehouse_policy::policies::{CacheEntry, CachingType, ForwardRequest, OpenIdKeys};
use gatehouse_policy::run::{OutboundRequest, Slot};
use gatehouse_policy::{Decision, Exchange, Io, PolicyError};
use gatehouse_tls::rustls::pki_types::CertificateDer;

use crate::cache::GatewayCache;
use crate::config::{CompiledApi, CompiledConfig, KeyCheck, Upstream};
use crate::counters::LocalCounters;
use crate::error::DataPlaneError;
use crate::openid::OpenIdKeyCache;
use crate::request_body::ClientBody;
use crate::telemetry::{ErrorInfo, ObservedBody, Record, WorkerTelemetry};
use crate::tunnel::{ClientUpgrade, Tunnel, Tunnels, websocket_key};
use crate::upstream::{PoolSettings, Protocol, UpstreamBody, UpstreamPool};
use crate::{ConfigHandle, GatewaySettings, forwarded, route};

/// The other end of a connection, made once per connection: its address, as text (logs,
/// `context.Request.IpAddress`) and as the `X-Forwarded-For` value backends get, and whether
/// it came over TLS, with the certificate the client presented.
#[derive(Debug)]
pub struct Peer {
    pub ip: IpAddr,
    text: Arc<str>,
    header: HeaderValue,
    /// `Some` over TLS: the client's certificate chain, leaf first, if it gave one.
    tls: Option<Option<Arc<[CertificateDer<'static>]>>>,
    /// That certificate as policies see it (`context.Request.Certificate`).
    certificate: Option<Arc<ClientCertificate>>,
}

impl Peer {
    pub fn new(ip: IpAddr) -> Self {
        let text = ip.to_string();
        let header =
            HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Self {
            ip,
            text: text.into(),
            header,
            tls: None,
            certificate: None,
        }
    }

    /// A peer that connected over TLS, with the certificates it presented and their
    /// description for policies (see [`crate::client_certificate::describe`]).
    pub fn over_tls(
        ip: IpAddr,
        certificates: Option<Arc<[CertificateDer<'static>]>>,
        certificate: Option<Arc<ClientCertificate>>,
    ) -> Self {
        Self {
            tls: Some(certificates),
            certificate,
            ..Self::new(ip)
        }
    }

    /// The client's certificate as policies see it, when it presented one over TLS.
    pub fn client_certificate(&self) -> Option<&Arc<ClientCertificate>> {
        self.certificate.as_ref()
    }

    /// Whether the request came over TLS.
    pub fn https(&self) -> bool {
        self.tls.is_some()
    }

    /// The client's certificate chain, leaf first, when it presented one over TLS.
    pub fn client_certificates(&self) -> Option<&Arc<[CertificateDer<'static>]>> {
        self.tls.as_ref().and_then(Option::as_ref)
    }
}

/// Who sent a request: the client's address as the gateway believes it, the connection's
/// peer, and whether that peer is a trusted proxy.
struct Client {
    ip: Arc<str>,
    peer: Arc<Peer>,
    trusted: bool,
}

/// Bodies the gateway sends to backends: its own (buffered or replaced), or the client's stream.
pub type Body = Either<Full<Bytes>, ClientBody>;

/// Bodies the gateway answers with: its own fixed or buffered answers, or a backend's stream.
pub type ResponseBody = Either<Full<Bytes>, UpstreamBody>;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRYIT: HeaderName = HeaderName::from_static(gatehouse_model::tryit::HEADER);

/// Azure's health probe path: 200 once a configuration is loaded.
pub const STATUS_PATH: &str = "/status-0123456789abcdef";

/// What one worker thread owns: its upstream pool and a view of the configuration.
pub struct Worker {
    config: ConfigHandle,
    client: UpstreamPool,
    settings: GatewaySettings,
    ids: RequestIds,
    counters: Arc<LocalCounters>,
    cache: Arc<GatewayCache>,
    /// This worker's connection to the counters and cache shared through Redis.
    redis: Option<Arc<crate::redis_link::RedisLink>>,
    openid: Arc<OpenIdKeyCache>,
    telemetry: Arc<WorkerTelemetry>,
    /// `context.Deployment.Region`: none yet, one shared empty string.
    region: Arc<str>,
    /// The WebSockets open on this worker.
    tunnels: Arc<Tunnels>,
    /// Where `log-to-eventhub` messages go, shared by the workers.
    loggers: Arc<crate::loggers::LogShipper>,
    /// The Dapr sidecar's HTTP API, parsed; `None` when `--dapr-http-endpoint` is not a URL
    /// (the command line refuses that, so only embedders see it).
    dapr: Option<Upstream>,
}

/// What the workers of one gateway share, and what outlives configuration swaps.
#[derive(Debug, Clone)]
pub struct WorkerShared {
    pub counters: Arc<LocalCounters>,
    pub cache: Arc<GatewayCache>,
    pub openid: Arc<OpenIdKeyCache>,
    pub outbound_tls: Arc<crate::outbound_tls::OutboundTls>,
    pub redis: Option<Arc<crate::redis_link::RedisShared>>,
    pub loggers: Arc<crate::loggers::LogShipper>,
}

impl Worker {
    pub fn new(
        config: ConfigHandle,
        settings: GatewaySettings,
        seed: u64,
        shared: &WorkerShared,
        telemetry: Arc<WorkerTelemetry>,
    ) -> Self {
        let client = UpstreamPool::new(
            telemetry.upstream.clone(),
            PoolSettings::default(),
            shared.outbound_tls.clone(),
            config.clone(),
        );
        let dapr = crate::config::parse_upstream(settings.dapr_endpoint.trim_end_matches('/'))
            .map_err(|e| tracing::error!(error = %e, "the Dapr sidecar address is not usable; Dapr policies fail"))
            .ok();
        Self {
            dapr,
            loggers: shared.loggers.clone(),
            config,
            client,
            settings,
            ids: RequestIds::new(seed),
            counters: shared.counters.clone(),
            cache: shared.cache.clone(),
            redis: shared.redis.clone().map(crate::redis_link::RedisLink::new),
            openid: shared.openid.clone(),
            telemetry,
            region: Arc::from(""),
            tunnels: Tunnels::new(),
        }
    }

    /// The WebSockets open on this worker (shutdown waits for them, then closes them).
    pub fn tunnels(&self) -> &Arc<Tunnels> {
        &self.tunnels
    }

    /// The TLS part of the configuration in force (hostname certificates for the listener).
    pub fn config_tls(&self) -> Option<Arc<crate::config::tls::CompiledTls>> {
        self.config.current().map(|c| c.tls.clone())
    }

    /// Serves one request. Never fails: every error becomes a response here.
    pub async fn handle(
        self: Arc<Self>,
        peer: Arc<Peer>,
        mut req: Request<Incoming>,
    ) -> Result<Response<ObservedBody>, Infallible> {
        let request_id = self.request_id(req.headers());
        let config = self.config.current();
        if config.is_some() && req.uri().path() == STATUS_PATH {
            // Health probes are not traffic: no log line, no metrics.
            return Ok(status_ok(&request_id).map(ObservedBody::plain));
        }
        let trusted = !self.settings.trusted_proxies.is_empty()
            && forwarded::is_trusted(&self.settings.trusted_proxies, peer.ip);
        let mut ip = if trusted {
            self.client_behind(req.headers(), &peer.text)
        } else {
            peer.text.clone()
        };
        // Taken out here, read or not: never for policies or backends to see.
        if let Some(value) = req.headers_mut().remove(TRYIT)
            && let Some(key) = config.as_ref().and_then(|c| c.tryit.as_ref())
        {
            let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            if let Some(user) = key.verify(value.as_bytes(), req.method().as_str(), target, now) {
                ip = user.to_string().into();
            }
        }
        let mut record =
            self.telemetry
                .begin(req.method(), req.uri(), req.headers(), &ip, &request_id);
        record.bytes_in = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(0);
        let client = Client { ip, peer, trusted };
        let result = match config {
            Some(config) => {
                record.key_params = Some(config.key_params.clone());
                self.serve(&config, client, &request_id, req, &mut record)
                    .await
            }
            None => Err(DataPlaneError::NotReady),
        };
        let mut response = match result {
            Ok(mut r) => {
                r.headers_mut().insert(X_REQUEST_ID, request_id);
                r
            }
            Err(e) => {
                record.error = Some(e.info());
                e.into_response(&request_id)
            }
        };
        let telemetry = self.telemetry.clone();
        if let Some(tunnel) = response.extensions_mut().remove::<Tunnel>() {
            // The connection's record ends with the tunnel, not with this empty body.
            record.status = response.status().as_u16();
            let open = self.tunnels.enter();
            tokio::spawn(tunnel.run(record, telemetry, open));
            return Ok(response.map(ObservedBody::plain));
        }
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            // A switch nobody asked for (or a policy's 101): there is nothing to switch to.
            let e = DataPlaneError::UnaskedSwitch;
            record.error = Some(e.info());
            response = e.into_response(&request_id_of(&response));
        }
        record.status = response.status().as_u16();
        Ok(response.map(|body| ObservedBody::new(body, record, telemetry)))
    }

    async fn serve(
        &self,
        config: &CompiledConfig,
        client: Client,
        request_id: &HeaderValue,
        mut req: Request<Incoming>,
        record: &mut Record,
    ) -> Result<Response<ResponseBody>, DataPlaneError> {
        // Hop-by-hop headers go before anything looks at the request, so every decision
        // below (preflight, key, policies) sees the headers the pipeline and the backend see.
        let upgrade = strip_hop_by_hop(req.headers_mut());
        let protocol = protocol_of(&req, upgrade.as_ref());
        // The client's side of a WebSocket handshake, taken before the request is split.
        let client_upgrade = (protocol == Protocol::Upgrade).then(|| {
            let over_h2 = req.version() == http::Version::HTTP_2;
            if over_h2 {
                // RFC 8441: the handshake is a CONNECT with `:protocol websocket`. Routes,
                // policies and the backend see the GET of an HTTP/1.1 handshake.
                *req.method_mut() = http::Method::GET;
            }
            ClientUpgrade {
                on: hyper::upgrade::on(&mut req),
                over_h2,
            }
        });
        let limit = self.settings.max_request_body;
        if limit != u64::MAX && record.bytes_in > limit {
            return Err(DataPlaneError::BodyTooLarge(limit));
        }
        let original_host = req.headers().get(header::HOST).cloned().or_else(|| {
            req.uri()
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        let normalized =
            crate::path::normalize(req.uri().path()).map_err(|_| DataPlaneError::BadPath)?;
        let path: &str = &normalized.path;
        let Some((api, rest)) = config.find_api(path) else {
            // No API is there: a global `<cross-domain>` answers `/crossdomain.xml`.
            if path == "/crossdomain.xml"
                && matches!(*req.method(), http::Method::GET | http::Method::HEAD)
                && let Some(document) = config.cross_domain()
            {
                return Ok(cross_domain_answer(document, request_id));
            }
            return Err(DataPlaneError::NotFound);
        };
        if normalized.floor != usize::MAX {
            // A `..` that left the API's path on the way (`/demo/../other`): refused rather
            // than served by whichever API the path lands in.
            let api_depth = path[..path.len() - rest.len()]
                .bytes()
                .filter(|&b| b == b'/')
                .count();
            if normalized.left_root(api_depth) {
                return Err(DataPlaneError::BadPath);
            }
        }
        // An API answers only over the protocols it lists (Azure's `protocols`).
        if !(if client.peer.https() {
            api.https
        } else {
            api.http
        }) {
            return Err(DataPlaneError::NotFound);
        }
        record.api = Some(api.id.clone());
        let preflight = is_preflight(&req);
        let op = match route::find(&api.operations, req.method(), rest) {
            Some(op) => op,
            // A CORS preflight for a path no operation declares: the API's (or the global)
            // cors policy answers it, as Azure does before matching operations.
            None if preflight => api.preflight.as_ref().ok_or_else(|| api.unmatched())?,
            None => return Err(api.unmatched()),
        };
        record.operation = Some(op.id.clone());
        // Browsers send preflights without keys: when cors answers them, none is needed.
        let answers_preflight = preflight
            && op.policy.default.answers_preflight()
            && !op.method_text.eq_ignore_ascii_case("OPTIONS");

        let key = find_key(api, &req);
        let subscription = match key.as_deref() {
            _ if answers_preflight => None,
            Some(k) => match config.check_key(api, k) {
                KeyCheck::Valid(entry) => Some(entry.clone()),
                KeyCheck::Invalid if api.open => None,
                KeyCheck::Invalid => return Err(DataPlaneError::InvalidKey),
            },
            None if api.open => None,
            None => return Err(DataPlaneError::MissingKey),
        };
        let product = subscription.as_ref().and_then(|s| s.product());
        record.subscription = subscription.as_ref().map(|s| s.id.clone());
        record.product = product
            .and_then(|p| config.products.get(p))
            .map(|p| p.0.clone());
        let pipeline = op.policy.for_product(product);
        if answers_preflight && subscription.is_none() && !api.open && pipeline.plain_forward {
            // Let through without a key as a preflight, yet nothing would answer it as one.
            return Err(DataPlaneError::MissingKey);
        }

        let mut leg = Leg {
            protocol,
            client_upgrade,
        };
        if pipeline.plain_forward {
            // The fast path: nothing to run but the forward itself.
            let upstream = api
                .upstream
                .as_ref()
                .ok_or_else(|| DataPlaneError::NoBackend(api.id.clone()))?;
            let uri = upstream_uri(upstream, rest, req.uri().query(), Some(&api.key_query))?;
            let (parts, body) = req.into_parts();
            let headers =
                self.outgoing_headers(parts.headers, original_host, api, &client, request_id);
            let body = Either::Right(ClientBody::new(body, limit));
            let request = outgoing(parts.method, uri, headers, body);
            let timeout = self.settings.backend_timeout;
            let Answered {
                mut parts,
                body,
                tunnel,
            } = self
                .forward(upstream, request, timeout, &mut leg, record, None)
                .await?;
            if let Some(tunnel) = tunnel {
                tunnel.attach(&mut parts);
            }
            if protocol == Protocol::Http2 {
                record.grpc_status = crate::telemetry::grpc_status(&parts.headers);
            }
            return Ok(Response::from_parts(parts, Either::Right(body)));
        }

        let rest = rest.to_owned();
        let keyless = subscription.is_none();
        let mut key = key.map(std::borrow::Cow::into_owned);
        let query = without_key(req.uri().query(), &api.key_query);
        let matched = op.matched(&rest);
        let host = original_host
            .as_ref()
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
            .unwrap_or_default();
        let original_url = {
            let query = req.uri().query();
            let mut url = String::with_capacity(
                7 + host.len() + path.len() + query.map_or(0, |q| q.len() + 1),
            );
            url.push_str(if client.peer.https() {
                "https://"
            } else {
                "http://"
            });
            url.push_str(&host);
            url.push_str(path);
            if let Some(q) = query {
                url.push('?');
                url.push_str(q);
            }
            url
        };
        let (parts, body) = req.into_parts();
        let ip = client.ip.clone();
        let headers = self.outgoing_headers(parts.headers, original_host, api, &client, request_id);
        let info = RequestInfo {
            api_id: api.id.clone(),
            api_name: api.name.clone(),
            api_path: api.path.clone(),
            api_version: api.version.clone(),
            service_url: api.service_url.clone(),
            operation_id: op.id.clone(),
            operation_name: op.name.clone(),
            operation_method: op.method_text.clone(),
            operation_url_template: op.template.clone(),
            subscription: subscription.as_ref().map(|s| SubscriptionInfo {
                id: s.id.clone(),
                name: s.name.clone(),
                key: key.take().unwrap_or_default(),
            }),
            product: product.and_then(|p| config.products.get(p).cloned()),
            user: None,
            gateway_id: config.gateway_id.clone(),
            region: self.region.clone(),
            ip,
            request_id: request_uuid(request_id),
            timestamp: Some(std::time::SystemTime::now()),
            original_url,
            matched,
            examples: op.examples.clone(),
            client_certificate: client.peer.client_certificate().cloned(),
        };
        let mut ex = Exchange::new(
            ExRequest {
                method: parts.method,
                scheme: if client.peer.https() { "https" } else { "http" }.to_owned(),
                host,
                path: rest,
                query,
                headers,
                body: None,
            },
            info,
        );
        if answers_preflight
            && keyless
            && !api.open
            && !gatehouse_policy::policies::is_preflight(&ex)
        {
            // Let through without a key as a preflight: only the pipeline's preflight answer
            // may follow, never the operation's policies or the backend.
            return Err(DataPlaneError::MissingKey);
        }
        let mut io = GatewayIo {
            worker: self,
            upstream: api.upstream.as_ref(),
            backends: &config.backends,
            api_id: &api.id,
            body: Some(ClientBody::new(body, limit)),
            response_stream: None,
            record: &mut *record,
            section: None,
            take_headers: pipeline.request_done_at_forward,
            leg,
            tunnel: None,
            gateway: &config.gateway_id,
            counters_down: false,
            loggers: &config.loggers,
        };
        pipeline.run(&mut ex, &mut io).await;
        let GatewayIo {
            response_stream,
            tunnel,
            counters_down,
            ..
        } = io;
        if counters_down {
            return Err(DataPlaneError::CountersUnavailable);
        }
        record.cache = ex.cache_hit;
        if let Some((source, reason)) = ex.refused {
            record.error = Some(ErrorInfo {
                source: source.into(),
                reason: reason.into(),
            });
        }
        if let Some(e) = &ex.last_error {
            record.error = Some(ErrorInfo {
                source: e.source.clone().into(),
                reason: e.reason.clone().into(),
            });
            tracing::warn!(
                request_id = request_id.to_str().unwrap_or_default(),
                api = %api.id,
                operation = %op.id,
                source = %e.source,
                reason = %e.reason,
                section = %e.section,
                message = %e.message,
                "policy error"
            );
        }
        if let Some(failure) = ex.failure.take() {
            let headers = std::mem::take(&mut ex.response_headers);
            return Err(DataPlaneError::policy(failure, headers));
        }
        let Some(answer) = ex.response.take() else {
            return Err(DataPlaneError::NoBackend(api.id.clone()));
        };
        let mut response = Response::new(match answer.body {
            Some(bytes) => Either::Left(Full::new(bytes)),
            None => match response_stream {
                Some(stream) => Either::Right(stream),
                None => Either::Left(Full::new(Bytes::new())),
            },
        });
        *response.status_mut() = answer.status;
        *response.headers_mut() = answer.headers;
        if matches!(response.body(), Either::Left(_)) {
            // The body was replaced or buffered: its length is the buffer's.
            response.headers_mut().remove(header::CONTENT_LENGTH);
            response.headers_mut().remove(header::TRANSFER_ENCODING);
        }
        if let Some(tunnel) = tunnel
            && response.status() == StatusCode::SWITCHING_PROTOCOLS
        {
            let (mut parts, body) = response.into_parts();
            tunnel.attach(&mut parts);
            response = Response::from_parts(parts, body);
        }
        if protocol == Protocol::Http2 {
            record.grpc_status = crate::telemetry::grpc_status(response.headers());
        }
        Ok(response)
    }

    /// The client's headers as the backend should get them (hop-by-hop headers are already
    /// gone): the subscription key removed, X-Forwarded-* and the request id set by the
    /// gateway, never passed on as the client wrote them.
    fn outgoing_headers(
        &self,
        mut headers: HeaderMap,
        original_host: Option<HeaderValue>,
        api: &CompiledApi,
        client: &Client,
        request_id: &HeaderValue,
    ) -> HeaderMap {
        headers.remove(&api.key_header);
        if client.trusted {
            forwarded_for(&mut headers, &client.peer.text);
        } else {
            headers.insert(X_FORWARDED_FOR, client.peer.header.clone());
        }
        headers.insert(
            X_FORWARDED_PROTO,
            HeaderValue::from_static(if client.peer.https() { "https" } else { "http" }),
        );
        match original_host {
            Some(host) => headers.insert(X_FORWARDED_HOST, host),
            None => headers.remove(X_FORWARDED_HOST),
        };
        headers.insert(X_REQUEST_ID, request_id.clone());
        headers
    }

    /// The client behind a trusted proxy: the right-most untrusted `X-Forwarded-For` entry,
    /// else the proxy itself.
    fn client_behind(&self, headers: &HeaderMap, peer: &Arc<str>) -> Arc<str> {
        let values = headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok());
        match forwarded::client_from_chain(&self.settings.trusted_proxies, values) {
            Some(ip) => ip.to_string().into(),
            None => peer.clone(),
        }
    }

    /// The one way a request reaches its backend, for the fast path and for `forward-request`
    /// alike: Host and `traceparent` set, sent within `timeout`, the call timed and its status
    /// recorded, its span ended (under `section` when a policy section runs it), the answer's
    /// hop-by-hop headers dropped, and a switch to WebSocket paired with the client's side.
    async fn forward(
        &self,
        upstream: &Upstream,
        mut request: Request<Body>,
        timeout: std::time::Duration,
        leg: &mut Leg,
        record: &mut Record,
        section: Option<usize>,
    ) -> Result<Answered, DataPlaneError> {
        let headers = request.headers_mut();
        headers.insert(header::HOST, upstream.host.clone());
        let call = record.trace.as_mut().map(|t| {
            let call = match section {
                Some(s) => t.child_under(s, crate::otel::BACKEND_CALL),
                None => t.child(crate::otel::BACKEND_CALL),
            };
            headers.insert(TRACEPARENT, t.traceparent(call));
            call
        });
        let sent = Instant::now();
        let response = self
            .send(&upstream.target, request, timeout, leg.protocol)
            .await;
        record.backend_time = Some(sent.elapsed());
        end_backend_span(record.trace.as_deref_mut(), call, &response);
        let mut response = response?;
        record.backend_status = Some(response.status().as_u16());
        let tunnel = leg
            .client_upgrade
            .take()
            .and_then(|client| Tunnel::of(client, &mut response));
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        Ok(Answered {
            parts,
            body,
            tunnel,
        })
    }

    /// Sends one request upstream within `timeout` (for the response headers).
    async fn send(
        &self,
        target: &crate::upstream::Target,
        mut outgoing: Request<Body>,
        timeout: std::time::Duration,
        protocol: Protocol,
    ) -> Result<Response<UpstreamBody>, DataPlaneError> {
        match protocol {
            Protocol::Auto => {}
            // The hop-by-hop headers went with the client's hop; a switch needs them again
            // on the backend's.
            Protocol::Upgrade => {
                let h = outgoing.headers_mut();
                h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
                if !h.contains_key(header::SEC_WEBSOCKET_KEY) {
                    // A client over HTTP/2 (RFC 8441) sends no key: the backend's HTTP/1.1
                    // handshake needs one, and its accept goes no further than the gateway.
                    h.insert(header::SEC_WEBSOCKET_KEY, websocket_key());
                }
                h.entry(header::SEC_WEBSOCKET_VERSION)
                    .or_insert(HeaderValue::from_static("13"));
            }
            // gRPC needs `TE: trailers` end to end; it is the one value HTTP/2 allows.
            Protocol::Http2 => {
                outgoing
                    .headers_mut()
                    .insert(header::TE, HeaderValue::from_static("trailers"));
            }
        }
        tokio::time::timeout(timeout, self.client.send_as(target, outgoing, protocol))
            .await
            .map_err(|_| DataPlaneError::BackendTimeout(timeout))?
            .map_err(|e| {
                if crate::request_body::exceeded(&e) {
                    DataPlaneError::BodyTooLarge(self.settings.max_request_body)
                } else {
                    DataPlaneError::BackendUnreachable(e)
                }
            })
    }

    fn request_id(&self, headers: &HeaderMap) -> HeaderValue {
        if let Some(v) = headers.get(X_REQUEST_ID) {
            let b = v.as_bytes();
            if !b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_graphic()) {
                return v.clone();
            }
        }
        self.ids.next()
    }
}

/// The request id a response carries (set by [`Worker::handle`]).
fn request_id_of(response: &Response<ResponseBody>) -> HeaderValue {
    response
        .headers()
        .get(X_REQUEST_ID)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static(""))
}

/// A request for a backend (HTTP/1.1 unless the upstream pool makes it HTTP/2).
fn outgoing(method: http::Method, uri: Uri, headers: HeaderMap, body: Body) -> Request<Body> {
    let mut outgoing = Request::new(body);
    *outgoing.method_mut() = method;
    *outgoing.uri_mut() = uri;
    *outgoing.version_mut() = http::Version::HTTP_11;
    *outgoing.headers_mut() = headers;
    outgoing
}

/// Ends the span of a backend call (tracing on), with the backend's status when it answered.
fn end_backend_span(
    trace: Option<&mut crate::otel::RequestTrace>,
    call: Option<usize>,
    response: &Result<Response<UpstreamBody>, DataPlaneError>,
) {
    if let (Some(t), Some(call)) = (trace, call) {
        if let Ok(r) = response {
            t.set_attribute(
                Some(call),
                "http.response.status_code",
                i64::from(r.status().as_u16()),
            );
        }
        t.end(call);
    }
}

/// A CORS preflight: `OPTIONS` with `Origin` and `Access-Control-Request-Method`.
fn is_preflight(req: &Request<Incoming>) -> bool {
    req.method() == http::Method::OPTIONS
        && req.headers().contains_key(header::ORIGIN)
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// `/crossdomain.xml`, from the global `<cross-domain>` policy.
fn cross_domain_answer(document: &Arc<str>, request_id: &HeaderValue) -> Response<ResponseBody> {
    let mut r = Response::new(Either::Left(Full::new(Bytes::copy_from_slice(
        document.as_bytes(),
    ))));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    h.insert(X_REQUEST_ID, request_id.clone());
    r
}

fn status_ok(request_id: &HeaderValue) -> Response<ResponseBody> {
    let mut r = Response::new(Either::Left(Full::new(Bytes::new())));
    *r.status_mut() = StatusCode::OK;
    r.headers_mut().insert(X_REQUEST_ID, request_id.clone());
    r
}

/// The subscription key from the API's header, else its query parameter.
fn find_key<'a>(
    api: &CompiledApi,
    req: &'a Request<Incoming>,
) -> Option<std::borrow::Cow<'a, str>> {
    if let Some(v) = req.headers().get(&api.key_header) {
        return v.to_str().ok().map(std::borrow::Cow::Borrowed);
    }
    let query = req.uri().query()?;
    query.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        (name == &*api.key_query).then(|| percent_decode(value))
    })
}

/// The backend request's target (origin form): the service URL's path + the rest of the path
/// + the query, without the key parameter when one is named.
fn upstream_uri(
    upstream: &crate::config::Upstream,
    rest: &str,
    query: Option<&str>,
    key_query: Option<&str>,
) -> Result<Uri, DataPlaneError> {
    // Exactly the length it will have when no key parameter goes: a `Bytes` made of a
    // `String` with room to spare costs one more allocation.
    let path_len = (upstream.base_path.len() + rest.len()).max(1);
    let mut path_and_query = String::with_capacity(path_len + query.map_or(0, |q| q.len() + 1));
    path_and_query.push_str(&upstream.base_path);
    path_and_query.push_str(rest);
    if path_and_query.is_empty() {
        path_and_query.push('/');
    }
    if let Some(q) = query {
        let mut first = true;
        for pair in q.split('&') {
            let name = pair.split_once('=').map_or(pair, |(n, _)| n);
            if Some(name) == key_query || pair.is_empty() {
                continue;
            }
            path_and_query.push(if first { '?' } else { '&' });
            path_and_query.push_str(pair);
            first = false;
        }
    }
    Uri::from_maybe_shared(Bytes::from(path_and_query))
        .map_err(|e| DataPlaneError::BadUpstreamUri(e.into()))
}

/// The hop-by-hop headers of RFC 9110 §7.6.1 (and the `Connection` header naming more).
/// The hop-by-hop headers of RFC 9110 §7.6.1, in the order of [`hop_by_hop_index`];
/// `Connection` first, since it names more.
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

fn hop_by_hop_index(name: &HeaderName) -> Option<usize> {
    Some(match name.as_str() {
        "connection" => 0,
        "keep-alive" => 1,
        "proxy-connection" => 2,
        "proxy-authenticate" => 3,
        "proxy-authorization" => 4,
        "te" => 5,
        "trailer" => 6,
        "transfer-encoding" => 7,
        "upgrade" => 8,
        _ => return None,
    })
}

/// Removes the hop-by-hop headers of RFC 9110 §7.6.1, including those named by `Connection`.
/// Returns the `Upgrade` header it removed, if any: a request asking for a protocol switch
/// is told apart for free, from the one look at the names every request gets anyway.
fn strip_hop_by_hop(headers: &mut HeaderMap) -> Option<HeaderValue> {
    // One look at the names present costs less than removing (a hash and a probe) each name
    // that might be there; most messages have none, or only `Connection: keep-alive`.
    let mut present = [false; 9];
    let mut any = false;
    for name in headers.keys() {
        if let Some(i) = hop_by_hop_index(name) {
            present[i] = true;
            any = true;
        }
    }
    if !any {
        return None;
    }
    if present[0] {
        // `Connection` names more hop-by-hop headers; its usual tokens name none.
        let mut named: Vec<HeaderName> = Vec::new();
        for value in headers.get_all(header::CONNECTION) {
            let Ok(value) = value.to_str() else { continue };
            for token in value.split(',').map(str::trim) {
                // `upgrade` is in the fixed list below, which keeps its value.
                if token.is_empty()
                    || token.eq_ignore_ascii_case("close")
                    || token.eq_ignore_ascii_case("keep-alive")
                    || token.eq_ignore_ascii_case("upgrade")
                {
                    continue;
                }
                if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                    named.push(name);
                }
            }
        }
        for name in named {
            headers.remove(name);
        }
    }
    let mut upgrade = None;
    for (name, here) in HOP_BY_HOP.iter().zip(present) {
        if here {
            let removed = headers.remove(name);
            if *name == header::UPGRADE {
                upgrade = removed;
            }
        }
    }
    upgrade
}

fn forwarded_for(headers: &mut HeaderMap, ip: &str) {
    let value = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prior) if !prior.trim().is_empty() => format!("{prior}, {ip}"),
        _ => ip.to_owned(),
    };
    // The string's buffer becomes the header value: no copy.
    if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(value)) {
        headers.insert(X_FORWARDED_FOR, v);
    }
}

fn percent_decode(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains(['%', '+']) {
        return std::borrow::Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    std::borrow::Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// Request ids: a per-worker random prefix and a counter, so making one costs no system call.
struct RequestIds {
    prefix: u64,
    counter: AtomicU64,
}

impl RequestIds {
    fn new(seed: u64) -> Self {
        Self {
            prefix: seed,
            counter: AtomicU64::new(0),
        }
    }

    fn next(&self) -> HeaderValue {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let text = uuid::Uuid::from_u64_pair(self.prefix, n)
            .hyphenated()
            .encode_lower(&mut buf);
        HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("0"))
    }
}

/// The request id as a UUID for `context.RequestId`: ours are UUIDs; a caller's other id is
/// hashed into one.
fn request_uuid(id: &HeaderValue) -> uuid::Uuid {
    if let Some(u) = id.to_str().ok().and_then(|s| uuid::Uuid::parse_str(s).ok()) {
        return u;
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, id.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest.as_ref()[..16]);
    uuid::Uuid::from_bytes(bytes)
}

/// The query string without the subscription key parameter.
fn without_key(query: Option<&str>, key_query: &str) -> Option<String> {
    let q = query?;
    let kept: Vec<&str> = q
        .split('&')
        .filter(|p| !p.is_empty() && p.split_once('=').map_or(*p, |(n, _)| n) != key_query)
        .collect();
    (!kept.is_empty()).then(|| kept.join("&"))
}

/// Largest body a policy may buffer.
const MAX_BUFFERED_BODY: usize = 16 * 1024 * 1024;

/// What the policy pipeline needs from the gateway for one request.
struct GatewayIo<'a> {
    worker: &'a Worker,
    upstream: Option<&'a Upstream>,
    /// The configuration's backend resources, for `set-backend-service backend-id`.
    backends: &'a crate::config::Backends,
    api_id: &'a Arc<str>,
    /// The client's body while it still streams.
    body: Option<ClientBody>,
    /// The backend's body while it still streams.
    response_stream: Option<UpstreamBody>,
    /// The request's record: the backend calls' status and time, and its spans (tracing on).
    record: &'a mut Record,
    /// The span of the section running now.
    section: Option<usize>,
    /// Nothing reads the request after the forward: its headers move into the backend call.
    take_headers: bool,
    leg: Leg,
    /// Both sides, once the backend switched protocols.
    tunnel: Option<Tunnel>,
    /// The gateway resource: replicas of it share counters and cache through Redis.
    gateway: &'a Arc<str>,
    /// A counter was refused because Redis failed under `--redis-failure closed`: 503.
    counters_down: bool,
    /// The configuration's loggers, for `log-to-eventhub`.
    loggers: &'a crate::loggers::CompiledLoggers,
}

/// How a request goes to its backend, the same for every call it makes (`retry` makes several).
struct Leg {
    /// A WebSocket handshake, gRPC, or as usual.
    protocol: Protocol,
    /// A WebSocket handshake: the client's side, until the backend answers.
    client_upgrade: Option<ClientUpgrade>,
}

/// What a backend answered: its status and headers (hop-by-hop headers gone), its body still
/// streaming, and both sides of the connection when it switched protocols.
struct Answered {
    parts: http::response::Parts,
    body: UpstreamBody,
    tunnel: Option<Tunnel>,
}

async fn collect<B>(body: B) -> Result<Bytes, PolicyError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    use http_body_util::BodyExt;
    http_body_util::Limited::new(body, MAX_BUFFERED_BODY)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|_| DataPlaneError::BufferTooLarge(MAX_BUFFERED_BODY).into())
}

impl Io for GatewayIo<'_> {
    async fn read_request_body(&mut self, ex: &mut Exchange) -> Result<(), PolicyError> {
        if ex.request.body.is_none() {
            ex.request.body = Some(match self.body.take() {
                Some(b) => collect(b).await?,
                None => Bytes::new(),
            });
        }
        Ok(())
    }

    async fn read_response_body(&mut self, ex: &mut Exchange) -> Result<(), PolicyError> {
        let Some(response) = ex.response.as_mut() else {
            return Ok(());
        };
        if response.body.is_none() {
            response.body = Some(match self.response_stream.take() {
                Some(b) => collect(b).await?,
                None => Bytes::new(),
            });
            response.headers.remove(header::CONTENT_LENGTH);
        }
        Ok(())
    }

    async fn forward(
        &mut self,
        ex: &mut Exchange,
        options: &ForwardRequest,
    ) -> Result<(), PolicyError> {
        let route = crate::config::backends::Route::choose(
            self.backends,
            ex,
            self.upstream,
            self.api_id,
            self.worker.dapr.as_ref(),
        )?;
        let upstream = route.upstream();
        let query = route.query(ex.request.query.as_deref());
        let uri = upstream_uri(
            upstream,
            route.path(&ex.request.path),
            query.as_deref(),
            None,
        )?;
        let mut headers = if self.take_headers {
            std::mem::take(&mut ex.request.headers)
        } else {
            ex.request.headers.clone()
        };
        route.add_headers(&mut headers);
        let body = match &ex.request.body {
            Some(b) => {
                headers.remove(header::CONTENT_LENGTH);
                headers.remove(header::TRANSFER_ENCODING);
                Either::Left(Full::new(b.clone()))
            }
            None => match self.body.take() {
                Some(stream) => Either::Right(stream),
                None => Either::Left(Full::new(Bytes::new())),
            },
        };
        let timeout = options
            .timeout
            .unwrap_or(self.worker.settings.backend_timeout);
        let request = outgoing(ex.request.method.clone(), uri, headers, body);
        let answered = self
            .worker
            .forward(
                upstream,
                request,
                timeout,
                &mut self.leg,
                self.record,
                self.section,
            )
            .await;
        if let Some(breaker) = route.breaker() {
            breaker.record(match &answered {
                Ok(a) => crate::breaker::Outcome::Answered(
                    a.parts.status,
                    a.parts.headers.get(header::RETRY_AFTER),
                ),
                Err(e) => crate::breaker::Outcome::of_error(e),
            });
        }
        let answered = answered?;
        self.tunnel = answered.tunnel;
        ex.response = Some(ExResponse {
            status: answered.parts.status,
            reason: None,
            headers: answered.parts.headers,
            body: None,
        });
        self.response_stream = Some(answered.body);
        Ok(())
    }

    async fn count(
        &mut self,
        key: &str,
        calls: u64,
        period: std::time::Duration,
        increment: u64,
    ) -> Decision {
        let (redis, local) = (self.worker.redis.as_ref(), &self.worker.counters);
        let counted =
            crate::redis_link::count(redis, local, self.gateway, key, calls, period, increment);
        counted.await.unwrap_or_else(|_| {
            self.counters_down = true;
            Decision {
                allowed: false,
                remaining: 0,
                retry_after: period,
            }
        })
    }

    async fn cache_get(&mut self, key: &str, caching: CachingType) -> Option<CacheEntry> {
        let (redis, local) = (self.worker.redis.as_ref(), &*self.worker.cache);
        crate::redis_link::cache_get(redis, local, self.gateway, key, caching).await
    }

    async fn cache_put(
        &mut self,
        key: &str,
        entry: CacheEntry,
        ttl: std::time::Duration,
        caching: CachingType,
    ) {
        let (redis, local) = (self.worker.redis.as_ref(), &*self.worker.cache);
        crate::redis_link::cache_put(redis, local, self.gateway, key, entry, ttl, caching).await;
    }

    async fn cache_remove(&mut self, key: &str, caching: CachingType) {
        let (redis, local) = (self.worker.redis.as_ref(), &*self.worker.cache);
        crate::redis_link::cache_remove(redis, local, self.gateway, key, caching).await;
    }

    async fn openid_keys(
        &mut self,
        config_url: &str,
        refresh: bool,
    ) -> Result<Arc<OpenIdKeys>, PolicyError> {
        self.worker
            .openid
            .keys(config_url, refresh)
            .await
            .map_err(|m| PolicyError::runtime("OpenIdConfigurationUnavailable", m))
    }

    async fn managed_identity_token(
        &mut self,
        resource: &str,
        client_id: Option<&str>,
    ) -> Result<gatehouse_policy::policies::AccessToken, PolicyError> {
        match &self.worker.settings.identity {
            Some(provider) => Ok(provider.token(resource, client_id).await?),
            None => Err(PolicyError::managed_identity(
                "this gateway has no token provider (--identity-provider)",
            )),
        }
    }

    async fn acquire(&mut self, key: &str, max: u64) -> Option<Slot> {
        let (redis, local) = (self.worker.redis.as_ref(), &self.worker.counters.slots);
        let taken = crate::redis_link::acquire(redis, local, self.gateway, key, max).await;
        taken.unwrap_or_else(|_| {
            self.counters_down = true;
            None
        })
    }

    // The future owns what it needs (a client handle), so it borrows nothing at all.
    #[allow(refining_impl_trait)]
    fn send(
        &mut self,
        request: OutboundRequest,
    ) -> impl Future<Output = Result<HttpResponse, PolicyError>> + Send + use<> {
        outbound(self.worker.client.clone(), request)
    }

    fn send_detached(&mut self, request: OutboundRequest) {
        let client = self.worker.client.clone();
        let url = request.url.clone();
        tokio::spawn(async move {
            if let Err(e) = outbound(client, request).await {
                tracing::debug!(url = %url, reason = %e.reason, message = %e.message, "send-one-way-request failed");
            }
        });
    }

    fn section(&mut self, section: gatehouse_policy::Section, entering: bool) {
        let Some(t) = self.record.trace.as_mut() else {
            return;
        };
        if entering {
            self.section = Some(t.child(section.name()));
        } else if let Some(s) = self.section.take() {
            t.end(s);
        }
    }

    fn trace_event(&mut self, event: gatehouse_policy::policies::TraceEvent) {
        let section = self.section;
        if let Some(t) = self.record.trace.as_mut() {
            let mut attributes = vec![
                opentelemetry::KeyValue::new("gatehouse.trace.source", event.source),
                opentelemetry::KeyValue::new("gatehouse.trace.severity", event.severity.as_str()),
            ];
            for (name, value) in event.metadata {
                attributes.push(opentelemetry::KeyValue::new(
                    format!("gatehouse.trace.metadata.{name}"),
                    value,
                ));
            }
            t.add_event(section, event.message, attributes);
        }
    }

    fn log(&mut self, entry: gatehouse_policy::policies::LogEntry) {
        let spec = self.loggers.get(&entry.logger);
        self.worker.loggers.submit(spec, entry);
    }

    fn dapr_url(&self, path: &str) -> String {
        format!(
            "{}{path}",
            self.worker.settings.dapr_endpoint.trim_end_matches('/')
        )
    }

    fn emit_metric(&mut self, metric: gatehouse_policy::policies::EmittedMetric) {
        self.worker.telemetry.emit(
            crate::telemetry::CustomKey {
                name: metric.name.into(),
                namespace: metric.namespace.into(),
                dimensions: metric.dimensions,
            },
            metric.value,
        );
    }

    async fn sleep(&mut self, duration: std::time::Duration) {
        tokio::time::sleep(duration).await;
    }
}

/// A request of `send-request` / `send-one-way-request` over the worker's pool (plain http:
/// the pool has no TLS), answer read whole, all within the request's timeout.
async fn outbound(
    pool: UpstreamPool,
    request: OutboundRequest,
) -> Result<HttpResponse, PolicyError> {
    let failed = |m: String| PolicyError::send_failed("BackendConnectionFailure", m);
    let uri: Uri = request
        .url
        .parse()
        .map_err(|e| failed(format!("'{}' is not a valid URL: {e}", request.url)))?;
    let mut target = match (uri.scheme(), uri.authority()) {
        (Some(scheme), Some(a))
            if *scheme == http::uri::Scheme::HTTP || *scheme == http::uri::Scheme::HTTPS =>
        {
            crate::upstream::Target::new(scheme, a.clone())
                .map_err(|m| failed(format!("'{}': {m}", request.url)))?
        }
        _ => {
            return Err(failed(format!(
                "'{}': send requests to absolute http:// or https:// URLs",
                request.url
            )));
        }
    };
    if let Some(p) = &request.proxy {
        let proxy = crate::upstream::ForwardProxy::new(
            &p.url,
            p.username.as_deref(),
            p.password.as_deref(),
        )
        .map_err(failed)?;
        target = target.through(Arc::new(proxy));
    }
    let authority = target.authority().clone();
    let origin_form = uri
        .path_and_query()
        .map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone()));
    let mut headers = request.headers;
    strip_hop_by_hop(&mut headers);
    headers.remove(header::CONTENT_LENGTH);
    if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
        headers.insert(header::HOST, host);
    }
    let mut outgoing = Request::new(Either::Left(Full::new(request.body)));
    *outgoing.method_mut() = request.method;
    *outgoing.uri_mut() = origin_form;
    *outgoing.headers_mut() = headers;
    let url = request.url;
    let exchange = async {
        let response = pool
            .send(&target, outgoing)
            .await
            .map_err(|e| failed(format!("{url}: {e}")))?;
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let body = collect(body).await?;
        let reason = parts
            .extensions
            .get::<hyper::ext::ReasonPhrase>()
            .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned())
            .or_else(|| parts.status.canonical_reason().map(str::to_owned))
            .unwrap_or_default();
        Ok(HttpResponse {
            status: parts.status.as_u16(),
            reason,
            headers: header_list(&parts.headers),
            body,
        })
    };
    match tokio::time::timeout(request.timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(PolicyError::send_failed(
            "Timeout",
            format!("{url} did not answer within {:?}", request.timeout),
        )),
    }
}

/// How a request goes to its backend: a WebSocket handshake (`Upgrade: websocket` over
/// HTTP/1.1, or an extended CONNECT over HTTP/2), gRPC (HTTP/2 with an `application/grpc*` content type), or as usual. Ordinary
/// HTTP/1.1 requests pay nothing here ([`strip_hop_by_hop`] found the `Upgrade` header).
fn protocol_of(req: &Request<Incoming>, upgrade: Option<&HeaderValue>) -> Protocol {
    match req.version() {
        http::Version::HTTP_2
            if req.method() == http::Method::CONNECT
                && req
                    .extensions()
                    .get::<hyper::ext::Protocol>()
                    .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket")) =>
        {
            Protocol::Upgrade
        }
        http::Version::HTTP_2 => {
            let grpc = req
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
            if grpc {
                Protocol::Http2
            } else {
                Protocol::Auto
            }
        }
        http::Version::HTTP_11
            if upgrade.is_some_and(|u| u.as_bytes().eq_ignore_ascii_case(b"websocket")) =>
        {
            Protocol::Upgrade
        }
        _ => Protocol::Auto,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("abc"), "abc");
        assert_eq!(percent_decode("a%2Fb+c"), "a/b c");
        assert_eq!(percent_decode("bad%zz%"), "bad%zz%");
        assert_eq!(percent_decode("%4"), "%4");
    }

    #[test]
    fn hop_by_hop_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-private"),
        );
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));

        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_by_hop_index(name), Some(i), "{name}");
        }
        // Without `Connection`, each listed header still goes; others stay.
        let mut h = HeaderMap::new();
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        let mut none = HeaderMap::new();
        none.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        assert_eq!(strip_hop_by_hop(&mut none), None);
        assert_eq!(none.len(), 1);

        // A protocol switch: the `Upgrade` value comes back, even when `Connection` names it.
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("sec-websocket-key", HeaderValue::from_static("k"));
        assert_eq!(
            strip_hop_by_hop(&mut h),
            Some(HeaderValue::from_static("websocket"))
        );
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("sec-websocket-key"));
    }

    #[test]
    fn upstream_uri_drops_the_key_parameter() {
        let up = crate::config::parse_upstream("http://127.0.0.1:9/base").unwrap();
        let uri = upstream_uri(
            &up,
            "/items/1",
            Some("a=1&subscription-key=s&b=2"),
            Some("subscription-key"),
        )
        .unwrap();
        assert_eq!(uri.to_string(), "/base/items/1?a=1&b=2");
        let uri = upstream_uri(
            &up,
            "",
            Some("subscription-key=s"),
            Some("subscription-key"),
        )
        .unwrap();
        assert_eq!(uri.to_string(), "/base");
        // A request a policy rewrote: its query as it is (the key went earlier).
        let uri = upstream_uri(&up, "/x", Some("a=1&b=2"), None).unwrap();
        assert_eq!(uri.to_string(), "/base/x?a=1&b=2");
        let root = crate::config::Upstream {
            base_path: "".into(),
            ..up
        };
        assert_eq!(
            upstream_uri(&root, "", None, Some("k"))
                .unwrap()
                .to_string(),
            "/"
        );
    }

    #[test]
    fn forwarded_for_appends() {
        let mut h = HeaderMap::new();
        forwarded_for(&mut h, "10.0.0.1");
        assert_eq!(h[&X_FORWARDED_FOR], "10.0.0.1");
        forwarded_for(&mut h, "::1");
        assert_eq!(h[&X_FORWARDED_FOR], "10.0.0.1, ::1");
    }
}
