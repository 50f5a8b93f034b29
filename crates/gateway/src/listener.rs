//! The limits every listener puts on its connections: how long a client may take to send a
//! request's headers, how long a kept-alive connection may sit idle, how large and how many
//! the headers may be, and how many connections are open at once.
//!
//! hyper times the wait for a request's headers from the moment it starts reading them, which
//! on a kept-alive connection includes the idle wait for the next request. To keep the two
//! limits apart, each connection gets its own [`hyper::rt::Timer`]: the header deadline counts
//! from the first byte of the request (from the connection's start for its first request), and
//! until that byte arrives the idle deadline applies. The connection's socket notes when bytes
//! arrive ([`Watched`]). Both limits apply to HTTP/1.1; an HTTP/2 connection is held to the
//! header-size and connection limits.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// hyper's smallest read buffer: headers larger than the limit are refused with 431 once the
/// buffer is full, so the limit cannot be lower.
pub const MIN_HEADER_SIZE: usize = 8192;

/// hyper's own default count of headers: another count costs an allocation per request.
const HYPER_MAX_HEADERS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    /// How long a client may take to send a request's headers (from its first byte).
    pub header_read_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Connections open at once on the listener; more are accepted and closed at once.
    pub max_connections: usize,
    /// The most bytes of request line and headers (at least [`MIN_HEADER_SIZE`]).
    pub max_header_size: usize,
    /// The most header fields of one request.
    pub max_headers: usize,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            max_connections: 10_000,
            max_header_size: 64 * 1024,
            max_headers: HYPER_MAX_HEADERS,
        }
    }
}

impl ListenerLimits {
    /// A connection builder for one connection, its timer reading `clock`.
    pub fn builder(&self, clock: Arc<HeadClock>) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        {
            let mut h1 = builder.http1();
            h1.timer(ConnTimer {
                clock,
                header: self.header_read_timeout,
                idle: self.idle_timeout,
            })
            .header_read_timeout(self.header_read_timeout)
            .max_buf_size(self.max_header_size.max(MIN_HEADER_SIZE));
            if self.max_headers != HYPER_MAX_HEADERS {
                h1.max_headers(self.max_headers);
            }
        }
        builder
            .http2()
            .max_header_list_size(u32::try_from(self.max_header_size).unwrap_or(u32::MAX))
            // WebSocket over HTTP/2 (RFC 8441): clients may open one with an extended CONNECT.
            .enable_connect_protocol();
        builder
    }
}

/// Caps the connections a listener holds open at once.
#[derive(Debug, Clone)]
pub struct ConnectionCap(Arc<Semaphore>);

impl ConnectionCap {
    pub fn new(max: usize) -> Self {
        Self(Arc::new(Semaphore::new(
            max.clamp(1, Semaphore::MAX_PERMITS),
        )))
    }

    /// A place for one more connection, held while it is open; `None` when all are taken.
    pub fn admit(&self) -> Option<OwnedSemaphorePermit> {
        self.0.clone().try_acquire_owned().ok()
    }
}

/// When a connection's current request began to arrive.
#[derive(Debug)]
pub struct HeadClock {
    born: Instant,
    /// Nanoseconds after `born` (plus one) when the first byte since the current header read
    /// began arrived; 0 while none has.
    first_byte: AtomicU64,
    /// Header reads begun on this connection.
    heads: AtomicU64,
}

impl HeadClock {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            born: Instant::now(),
            first_byte: AtomicU64::new(0),
            heads: AtomicU64::new(0),
        })
    }

    fn saw_bytes(&self) {
        if self.first_byte.load(Ordering::Relaxed) == 0 {
            let nanos = u64::try_from(self.born.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
            self.first_byte.store(nanos + 1, Ordering::Relaxed);
        }
    }

    fn first_byte(&self) -> Option<Instant> {
        match self.first_byte.load(Ordering::Relaxed) {
            0 => None,
            n => Some(self.born + Duration::from_nanos(n - 1)),
        }
    }
}

/// A connection's socket that tells its [`HeadClock`] when bytes arrive.
#[derive(Debug)]
pub struct Watched<T> {
    inner: T,
    clock: Arc<HeadClock>,
}

impl<T> Watched<T> {
    pub fn new(inner: T, clock: Arc<HeadClock>) -> Self {
        Self { inner, clock }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.saw_bytes();
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// One connection's timer. hyper asks it only for the header-read deadline (`sleep_until`),
/// once per request; the answer is a [`HeadSleep`] that picks the idle or the header limit.
struct ConnTimer {
    clock: Arc<HeadClock>,
    header: Duration,
    idle: Duration,
}

impl hyper::rt::Timer for ConnTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        TokioTimer::new().sleep(duration)
    }

    fn sleep_until(&self, _deadline: std::time::Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        let first = self.clock.heads.fetch_add(1, Ordering::Relaxed) == 0;
        self.clock.first_byte.store(0, Ordering::Relaxed);
        let started = if first {
            self.clock.born
        } else {
            Instant::now()
        };
        let deadline = started + if first { self.header } else { self.idle };
        Box::pin(HeadSleep {
            clock: self.clock.clone(),
            first,
            started,
            header: self.header,
            idle: self.idle,
            sleep: Box::pin(tokio::time::sleep_until(deadline.into())),
        })
    }
}

/// The header-read deadline of one request: `header` after the connection opened (its first
/// request) or after the request's first byte; while no byte came, `idle` after the wait began.
struct HeadSleep {
    clock: Arc<HeadClock>,
    first: bool,
    started: Instant,
    header: Duration,
    idle: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Future for HeadSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = if self.first {
            self.started + self.header
        } else {
            match self.clock.first_byte() {
                Some(at) => at + self.header,
                None => self.started + self.idle,
            }
        };
        let deadline = tokio::time::Instant::from_std(deadline);
        if self.sleep.deadline() != deadline {
            self.sleep.as_mut().reset(deadline);
        }
        self.sleep.as_mut().poll(cx)
    }
}

impl hyper::rt::Sleep for HeadSleep {}

/// Serves `listener` with `limits` until `shutdown` resolves, then lets open connections
/// finish for up to `grace`. `service` makes each connection's service from the peer's
/// address. With `tls`, every connection starts with a TLS handshake, held to the header
/// timeout. For listeners other than the gateway's (the control plane, admin endpoints).
pub async fn serve<F, S, B>(
    listener: TcpListener,
    tls: Option<Arc<gatehouse_tls::server::ServerTls>>,
    limits: ListenerLimits,
    service: F,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) where
    F: Fn(SocketAddr) -> S,
    S: Service<hyper::Request<Incoming>, Response = hyper::Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let cap = ConnectionCap::new(limits.max_connections);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = &mut shutdown => break,
        };
        let Some((stream, remote)) = accepted_or_wait(accepted).await else {
            continue;
        };
        let Some(permit) = cap.admit() else {
            refuse(stream, remote, limits.max_connections);
            continue;
        };
        let clock = HeadClock::new();
        let watched = Watched::new(stream, clock.clone());
        let service = service(remote);
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let result = match tls {
                None => {
                    let conn = limits
                        .builder(clock)
                        .serve_connection_with_upgrades(TokioIo::new(watched), service)
                        .into_owned();
                    watcher.watch(conn).await
                }
                Some(tls) => {
                    let Some(accepted) =
                        handshake(&tls, watched, limits.header_read_timeout, remote).await
                    else {
                        return;
                    };
                    let conn = limits
                        .builder(clock)
                        .serve_connection_with_upgrades(TokioIo::new(accepted.stream), service)
                        .into_owned();
                    watcher.watch(conn).await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?grace,
            "closing connections still open after the grace period"
        );
    }
}

/// A TLS handshake held to `limit` (the header timeout: a client that is slow to say hello is
/// as slow as one that is slow to send its headers). `None` when it failed, logged.
pub async fn handshake<IO>(
    tls: &gatehouse_tls::server::ServerTls,
    io: IO,
    limit: Duration,
    remote: SocketAddr,
) -> Option<gatehouse_tls::server::Accepted<IO>>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    match tokio::time::timeout(limit, tls.accept(io)).await {
        Ok(Ok(accepted)) => Some(accepted),
        Ok(Err(e)) => {
            tracing::debug!(%remote, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%remote, "TLS handshake timed out");
            None
        }
    }
}

/// The accepted connection, or `None` after a short pause when accepting failed (out of file
/// descriptors and the like), so the loop does not spin.
pub async fn accepted_or_wait(
    accepted: std::io::Result<(TcpStream, SocketAddr)>,
) -> Option<(TcpStream, SocketAddr)> {
    match accepted {
        Ok(pair) => Some(pair),
        Err(e) => {
            tracing::warn!(error = %e, "accept failed");
            tokio::time::sleep(Duration::from_millis(50)).await;
            None
        }
    }
}

/// Closes a connection over the cap at once: the client sees it closed, not a hang.
pub fn refuse(stream: TcpStream, remote: SocketAddr, max: usize) {
    tracing::debug!(%remote, max, "connection refused: the listener holds its most connections");
    drop(stream);
}
