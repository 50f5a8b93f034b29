//! One request through the gateway: route, check the subscription key, forward to the
//! backend, stream the answer back.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::config::{CompiledApi, CompiledConfig, KeyCheck};
use crate::error::GatewayError;
use crate::{ConfigHandle, GatewaySettings, route};

/// Bodies the gateway sends: its own fixed answers, or a stream from the other side.
pub type Body = Either<Full<Bytes>, Incoming>;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Azure's health probe path: 200 once a configuration is loaded.
pub const STATUS_PATH: &str = "/status-0123456789abcdef";

/// What one worker thread owns: its upstream pool and a view of the configuration.
pub struct Worker {
    config: ConfigHandle,
    client: Client<HttpConnector, Body>,
    settings: GatewaySettings,
    ids: RequestIds,
}

impl Worker {
    pub fn new(config: ConfigHandle, settings: GatewaySettings, seed: u64) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_keepalive(Some(std::time::Duration::from_secs(60)));
        connector.set_connect_timeout(Some(std::time::Duration::from_secs(10)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(std::time::Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .build(connector);
        Self {
            config,
            client,
            settings,
            ids: RequestIds::new(seed),
        }
    }

    /// Serves one request. Never fails: every error becomes a response here.
    pub async fn handle(
        self: Arc<Self>,
        remote: SocketAddr,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, Infallible> {
        let request_id = self.request_id(req.headers());
        let Some(config) = self.config.current() else {
            return Ok(GatewayError::NotReady.into_response(&request_id));
        };
        if req.uri().path() == STATUS_PATH {
            return Ok(status_ok(&request_id));
        }
        let mut response = match self.serve(&config, remote, &request_id, req).await {
            Ok(r) => r,
            Err(e) => return Ok(e.into_response(&request_id)),
        };
        response.headers_mut().insert(X_REQUEST_ID, request_id);
        Ok(response)
    }

    async fn serve(
        &self,
        config: &CompiledConfig,
        remote: SocketAddr,
        request_id: &HeaderValue,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, GatewayError> {
        let path = req.uri().path();
        let (api, rest) = config.find_api(path).ok_or(GatewayError::NotFound)?;
        if !api.http {
            return Err(GatewayError::NotFound);
        }
        route::find(&api.operations, req.method(), rest).ok_or(GatewayError::NotFound)?;

        let key = find_key(api, &req);
        match key.as_deref() {
            Some(k) => match config.check_key(api, k) {
                KeyCheck::Valid(_) => {}
                KeyCheck::Invalid if api.open => {}
                KeyCheck::Invalid => return Err(GatewayError::InvalidKey),
            },
            None if api.open => {}
            None => return Err(GatewayError::MissingKey),
        }

        let upstream = api
            .upstream
            .as_ref()
            .ok_or_else(|| GatewayError::NoBackend(api.id.clone()))?;
        let uri = upstream_uri(upstream, rest, req.uri().query(), &api.key_query)?;

        let (parts, body) = req.into_parts();
        let mut headers = parts.headers;
        let original_host = headers.get(header::HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        strip_hop_by_hop(&mut headers);
        headers.remove(&api.key_header);
        forwarded_for(&mut headers, remote);
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
        if let Some(host) = original_host {
            headers.insert(X_FORWARDED_HOST, host);
        }
        if let Ok(host) = HeaderValue::from_str(upstream.authority.as_str()) {
            headers.insert(header::HOST, host);
        }
        headers.insert(X_REQUEST_ID, request_id.clone());

        let mut outgoing = Request::new(Either::Right(body));
        *outgoing.method_mut() = parts.method;
        *outgoing.uri_mut() = uri;
        *outgoing.version_mut() = http::Version::HTTP_11;
        *outgoing.headers_mut() = headers;

        let timeout = self.settings.backend_timeout;
        let response = tokio::time::timeout(timeout, self.client.request(outgoing))
            .await
            .map_err(|_| GatewayError::BackendTimeout(timeout))?
            .map_err(GatewayError::BackendUnreachable)?;
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        Ok(Response::from_parts(parts, Either::Right(body)))
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

fn status_ok(request_id: &HeaderValue) -> Response<Body> {
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

/// Backend URL: service URL + the rest of the path + the query without the key parameter.
fn upstream_uri(
    upstream: &crate::config::Upstream,
    rest: &str,
    query: Option<&str>,
    key_query: &str,
) -> Result<Uri, GatewayError> {
    let mut path_and_query = String::with_capacity(
        upstream.base_path.len() + rest.len() + query.map_or(0, |q| q.len() + 1) + 1,
    );
    path_and_query.push_str(&upstream.base_path);
    path_and_query.push_str(rest);
    if path_and_query.is_empty() {
        path_and_query.push('/');
    }
    if let Some(q) = query {
        let mut first = true;
        for pair in q.split('&') {
            let name = pair.split_once('=').map_or(pair, |(n, _)| n);
            if name == key_query || pair.is_empty() {
                continue;
            }
            path_and_query.push(if first { '?' } else { '&' });
            path_and_query.push_str(pair);
            first = false;
        }
    }
    Uri::builder()
        .scheme(upstream.scheme.clone())
        .authority(upstream.authority.clone())
        .path_and_query(path_and_query)
        .build()
        .map_err(GatewayError::BadUpstreamUri)
}

/// Removes the hop-by-hop headers of RFC 9110 §7.6.1, including those named by `Connection`.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        KEEP_ALIVE,
        PROXY_CONNECTION,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
}

fn forwarded_for(headers: &mut HeaderMap, remote: SocketAddr) {
    let ip = remote.ip().to_string();
    let value = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prior) if !prior.trim().is_empty() => format!("{prior}, {ip}"),
        _ => ip,
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
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
        let text = format!("{:016x}{:016x}", self.prefix, n);
        HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("0"))
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
    }

    #[test]
    fn upstream_uri_drops_the_key_parameter() {
        let up = crate::config::Upstream {
            scheme: http::uri::Scheme::HTTP,
            authority: "127.0.0.1:9".parse().unwrap(),
            base_path: "/base".into(),
        };
        let uri = upstream_uri(
            &up,
            "/items/1",
            Some("a=1&subscription-key=s&b=2"),
            "subscription-key",
        )
        .unwrap();
        assert_eq!(uri.to_string(), "http://127.0.0.1:9/base/items/1?a=1&b=2");
        let uri = upstream_uri(&up, "", Some("subscription-key=s"), "subscription-key").unwrap();
        assert_eq!(uri.to_string(), "http://127.0.0.1:9/base");
        let root = crate::config::Upstream {
            base_path: "".into(),
            ..up
        };
        assert_eq!(
            upstream_uri(&root, "", None, "k").unwrap().to_string(),
            "http://127.0.0.1:9/"
        );
    }

    #[test]
    fn forwarded_for_appends() {
        let mut h = HeaderMap::new();
        let remote: SocketAddr = "10.0.0.1:5".parse().unwrap();
        forwarded_for(&mut h, remote);
        assert_eq!(h[&X_FORWARDED_FOR], "10.0.0.1");
        forwarded_for(&mut h, "[::1]:6".parse().unwrap());
        assert_eq!(h[&X_FORWARDED_FOR], "10.0.0.1, ::1");
    }
}
