//! The workers' upstream connections: a pool per worker of HTTP/1.1 connections to the
//! backends, reused for as long as the backends keep them open.
//!
//! A connection leaves its pool for one request and goes back when the response body has
//! been read to its end ([`UpstreamBody`]); the next request to the same backend takes the
//! most recently returned one. A body dropped before its end takes its connection with it,
//! since what is left of the body would still be on the wire. hyper-util's legacy client does
//! the same job with more on every request: a pool shared behind wake-up channels, a clone of
//! the client, and a task spawned per request to return the connection.
//!
//! The pool also counts the connections it opens and those still open, for `/metrics`.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::Authority;
use http::{Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustc_hash::FxHashMap;
use tokio::net::TcpStream;

use crate::proxy::Body;

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
    #[error("the connection to {authority} failed: {source}")]
    Http {
        authority: Authority,
        #[source]
        source: hyper::Error,
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
    gauges: Arc<UpstreamGauges>,
    settings: PoolSettings,
    /// The sweeper that closes connections idle for too long runs (started with the first
    /// connection, inside the worker's runtime).
    sweeping: AtomicBool,
}

struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
}

impl UpstreamPool {
    pub fn new(gauges: Arc<UpstreamGauges>, settings: PoolSettings) -> Self {
        Self {
            shared: Arc::new(Shared {
                idle: Mutex::new(IdleMap::default()),
                gauges,
                settings,
                sweeping: AtomicBool::new(false),
            }),
        }
    }

    /// Sends `request` (origin-form URI, `Host` set) to `authority` over a pooled connection,
    /// or a new one. A pooled connection the backend closed before it took the request is
    /// skipped, and the request goes on the next one.
    pub async fn send(
        &self,
        authority: &Authority,
        mut request: Request<Body>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        while let Some(mut sender) = self.shared.checkout(authority).await {
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(self.lease(authority, sender, response)),
                Err(mut e) => match e.take_message() {
                    Some(unsent) => request = unsent,
                    None => {
                        return Err(UpstreamError::Http {
                            authority: authority.clone(),
                            source: e.into_error(),
                        });
                    }
                },
            }
        }
        let mut sender = self.connect(authority).await?;
        match sender.send_request(request).await {
            Ok(response) => Ok(self.lease(authority, sender, response)),
            Err(source) => Err(UpstreamError::Http {
                authority: authority.clone(),
                source,
            }),
        }
    }

    fn lease(
        &self,
        authority: &Authority,
        sender: SendRequest<Body>,
        response: Response<Incoming>,
    ) -> Response<UpstreamBody> {
        response.map(|inner| UpstreamBody {
            inner,
            lease: Some(Lease {
                pool: self.shared.clone(),
                authority: authority.clone(),
                sender,
            }),
        })
    }

    async fn connect(&self, authority: &Authority) -> Result<SendRequest<Body>, UpstreamError> {
        self.start_sweeping();
        let addrs = resolve(authority).await?;
        let connect_error = |source| UpstreamError::Connect {
            authority: authority.clone(),
            source,
        };
        let mut last = std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the name resolved to no address",
        );
        for addr in addrs {
            let connecting = TcpStream::connect(addr);
            let stream = match tokio::time::timeout(
                self.shared.settings.connect_timeout,
                connecting,
            )
            .await
            {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    last = e;
                    continue;
                }
                Err(_) => {
                    last = std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "{addr} did not accept within {:?}",
                            self.shared.settings.connect_timeout
                        ),
                    );
                    continue;
                }
            };
            stream.set_nodelay(true).map_err(connect_error)?;
            let keepalive = socket2::TcpKeepalive::new().with_time(Duration::from_secs(60));
            socket2::SockRef::from(&stream)
                .set_tcp_keepalive(&keepalive)
                .map_err(connect_error)?;
            let (sender, connection) = hyper::client::conn::http1::Builder::new()
                .handshake(TokioIo::new(stream))
                .await
                .map_err(|source| UpstreamError::Http {
                    authority: authority.clone(),
                    source,
                })?;
            let gauges = self.shared.gauges.clone();
            gauges.opened.fetch_add(1, Ordering::Relaxed);
            gauges.open.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "upstream connection ended with an error");
                }
                gauges.open.fetch_sub(1, Ordering::Relaxed);
            });
            return Ok(sender);
        }
        Err(connect_error(last))
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
        self.shared.lock().values().map(Vec::len).sum()
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, IdleMap> {
        // The map stays consistent whatever a panicking holder did: take it back.
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The most recently returned open connection to `authority`, once it can take a request.
    async fn checkout(&self, authority: &Authority) -> Option<SendRequest<Body>> {
        loop {
            let mut idle = self.lock().get_mut(authority.as_str())?.pop()?;
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

    fn put(&self, authority: &Authority, sender: SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        let mut map = self.lock();
        if !map.contains_key(authority.as_str()) {
            map.insert(authority.as_str().into(), Vec::new());
        }
        let Some(list) = map.get_mut(authority.as_str()) else {
            return;
        };
        if list.len() < self.settings.max_idle_per_backend {
            list.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// Drops the connections idle longer than the idle timeout, and those the backend closed.
    fn sweep(&self) {
        let timeout = self.settings.idle_timeout;
        let mut map = self.lock();
        map.retain(|_, list| {
            list.retain(|idle| !idle.sender.is_closed() && idle.since.elapsed() <= timeout);
            !list.is_empty()
        });
    }
}

/// The addresses of an authority: itself when it is an IP address, else from the resolver.
async fn resolve(authority: &Authority) -> Result<Vec<SocketAddr>, UpstreamError> {
    let port = authority.port_u16().unwrap_or(80);
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

/// A connection out of its pool for one response.
struct Lease {
    pool: Arc<Shared>,
    authority: Authority,
    sender: SendRequest<Body>,
}

/// A backend's response body. Its connection goes back to the pool when the body has been
/// read to its end.
pub struct UpstreamBody {
    inner: Incoming,
    lease: Option<Lease>,
}

impl UpstreamBody {
    fn release(&mut self) {
        if let Some(lease) = self.lease.take() {
            lease.pool.put(&lease.authority, lease.sender);
        }
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        if self.inner.is_end_stream() {
            self.release();
        }
    }
}

impl HttpBody for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.release(),
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.release(),
            // The rest of the body is lost: so is the connection.
            Poll::Ready(Some(Err(_))) => this.lease = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
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
    async fn backend() -> (Authority, Arc<AtomicUsize>) {
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
                        let mut response = Response::new(Full::new(Bytes::from_static(b"ok")));
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
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (authority, accepted)
    }

    fn get(authority: &Authority, path: &'static str) -> Request<Body> {
        let mut request = Request::new(Either::Left(Full::new(Bytes::new())));
        *request.uri_mut() = http::Uri::from_static(path);
        request.headers_mut().insert(
            http::header::HOST,
            http::HeaderValue::from_str(authority.as_str()).unwrap(),
        );
        request
    }

    async fn call(pool: &UpstreamPool, authority: &Authority, path: &'static str) -> Bytes {
        let response = pool.send(authority, get(authority, path)).await.unwrap();
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
        let (authority, accepted) = backend().await;
        let gauges = Arc::new(UpstreamGauges::default());
        let pool = UpstreamPool::new(gauges.clone(), PoolSettings::default());

        // Read to the end, one after the other: one connection for all.
        for _ in 0..50 {
            assert_eq!(&call(&pool, &authority, "/").await[..], b"ok");
        }
        assert_eq!(call(&pool, &authority, "/big").await.len(), 65536);
        assert!(call(&pool, &authority, "/empty").await.is_empty());
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(gauges.opened.load(Ordering::Relaxed), 1);
        assert_eq!(pool.idle_count(), 1);

        // A body dropped before its end takes its connection with it.
        let unread = pool
            .send(&authority, get(&authority, "/big"))
            .await
            .unwrap();
        drop(unread);
        assert_eq!(&call(&pool, &authority, "/").await[..], b"ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);

        // A backend that closes after its answer: the next request opens a new connection
        // and does not fail.
        assert_eq!(&call(&pool, &authority, "/close").await[..], b"ok");
        assert_eq!(&call(&pool, &authority, "/").await[..], b"ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
        eventually("one connection open", || {
            gauges.open.load(Ordering::Relaxed) == 1
        })
        .await;

        // Concurrent requests each get a connection; all go back to the pool.
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (pool, authority) = (pool.clone(), authority.clone());
                tokio::spawn(async move { call(&pool, &authority, "/").await })
            })
            .collect();
        for task in tasks {
            assert_eq!(&task.await.unwrap()[..], b"ok");
        }
        assert_eq!(pool.idle_count(), 8);
    }

    #[tokio::test]
    async fn idle_connections_are_swept() {
        let (authority, _) = backend().await;
        let gauges = Arc::new(UpstreamGauges::default());
        let settings = PoolSettings {
            idle_timeout: Duration::from_millis(200),
            ..PoolSettings::default()
        };
        let pool = UpstreamPool::new(gauges.clone(), settings);
        call(&pool, &authority, "/").await;
        assert_eq!(pool.idle_count(), 1);
        eventually("the idle connection swept", || pool.idle_count() == 0).await;
        eventually("no connection open", || {
            gauges.open.load(Ordering::Relaxed) == 0
        })
        .await;
    }

    #[tokio::test]
    async fn an_unreachable_backend_is_a_clear_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
        drop(listener);
        let pool = UpstreamPool::new(Arc::default(), PoolSettings::default());
        let e = pool
            .send(&authority, get(&authority, "/"))
            .await
            .err()
            .unwrap();
        assert!(matches!(e, UpstreamError::Connect { .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with(&format!("cannot connect to {authority}"))
        );
    }
}
