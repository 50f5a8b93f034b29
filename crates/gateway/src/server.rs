//! Listeners and workers.
//!
//! Each worker is an OS thread running a current-thread Tokio runtime with its own
//! `SO_REUSEPORT` listener on the same address: the kernel spreads connections over the
//! workers, and a connection lives and dies on one thread. The port is this process's alone:
//! before the workers bind, [`claim`] binds it once without `SO_REUSEPORT`, which fails while
//! any other process listens there (with `SO_REUSEPORT` or not), so a second gateway on the
//! same port stops with an error instead of silently sharing its connections. Shutdown stops accepting, lets
//! requests in flight finish within the grace period, then closes what is left.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread::JoinHandle;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;

use crate::listener::{ConnectionCap, HeadClock, ListenerLimits, Watched};
use crate::proxy::Worker;
use crate::{ConfigHandle, GatewaySettings};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// `why` says it for a user: a taken port names the process holding it
    /// ([`crate::holder::why`]).
    #[error("cannot listen on {addr}: {why}")]
    Bind {
        addr: SocketAddr,
        why: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start gateway worker: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("a gateway worker stopped before it was ready")]
    WorkerLost,
    #[error("{0}")]
    Tls(#[source] gatehouse_tls::TlsError),
    #[error("{0}")]
    Redis(#[source] crate::redis_link::RedisSetupError),
}

/// A gateway whose workers are serving. Dropping it does not stop them; call `shutdown`.
pub struct RunningGateway {
    pub local_addr: SocketAddr,
    /// Where HTTPS is served, when it is.
    pub https_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    workers: Vec<JoinHandle<()>>,
    /// `log-to-eventhub`'s messages, sent before the process ends.
    loggers: Arc<crate::loggers::LogShipper>,
}

impl std::fmt::Debug for RunningGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningGateway")
            .field("local_addr", &self.local_addr)
            .field("https_addr", &self.https_addr)
            .field("workers", &self.workers.len())
            .finish()
    }
}

impl RunningGateway {
    /// Binds `addr` once per worker and starts serving `config`.
    pub fn start(
        addr: SocketAddr,
        config: ConfigHandle,
        settings: GatewaySettings,
        telemetry: Arc<crate::telemetry::Telemetry>,
    ) -> Result<Self, ServeError> {
        let (stop, stop_rx) = watch::channel(false);
        let mut workers = Vec::new();
        let mut bound = addr;
        let mut https_bound = settings.https.as_ref().map(|h| h.addr);
        let seed = seed();
        let outbound_tls = Arc::new(
            crate::outbound_tls::OutboundTls::load(&settings.trusted_ca)
                .map_err(ServeError::Tls)?,
        );
        let loggers = Arc::new(
            crate::loggers::LogShipper::new(
                &settings.trusted_ca,
                settings.identity.clone(),
                telemetry.loggers.clone(),
            )
            .map_err(ServeError::Tls)?,
        );
        // The counters, the policy cache, the OpenID keys and the loggers' queues outlive
        // configuration swaps.
        let shared = crate::proxy::WorkerShared {
            loggers: loggers.clone(),
            counters: Arc::new(crate::counters::LocalCounters::default()),
            cache: Arc::new(crate::cache::GatewayCache::default()),
            openid: Arc::new(crate::openid::OpenIdKeyCache::default().trusting(
                crate::outbound_tls::reqwest_tls(&settings.trusted_ca).map_err(ServeError::Tls)?,
            )),
            outbound_tls,
            redis: match &settings.redis {
                Some(r) => Some(
                    crate::redis_link::RedisShared::new(r, telemetry.clone())
                        .map_err(ServeError::Redis)?,
                ),
                None => None,
            },
        };
        // One cap per address, whichever worker's socket a connection lands on.
        let cap = ConnectionCap::new(settings.limits.max_connections);
        let https_cap = ConnectionCap::new(settings.limits.max_connections);
        let limits = settings.limits;
        claim(addr)?;
        if let Some(https) = &settings.https {
            claim(https.addr)?;
        }
        for index in 0..settings.workers.max(1) {
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let worker = Arc::new(Worker::new(
                config.clone(),
                settings.clone(),
                seed.wrapping_add(index as u64) << 8,
                &shared,
                telemetry.worker(index),
            ));
            let stop_rx = stop_rx.clone();
            let cap = cap.clone();
            let https = settings
                .https
                .as_ref()
                .zip(https_bound)
                .map(|(h, addr)| (addr, h.tls.clone(), https_cap.clone()));
            let grace = settings.shutdown_grace;
            let handle = std::thread::Builder::new()
                .name(format!("gateway-{index}"))
                .spawn(move || {
                    let runtime = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(r) => r,
                        Err(e) => {
                            let _ = ready_tx.send(Err(ServeError::Runtime(e)));
                            return;
                        }
                    };
                    runtime.block_on(async move {
                        let listener = match listen(bound) {
                            Ok(l) => l,
                            Err(e) => {
                                let _ = ready_tx.send(Err(e));
                                return;
                            }
                        };
                        let local = listener.local_addr().unwrap_or(bound);
                        let secure = match https {
                            Some((addr, tls, cap)) => match listen(addr) {
                                Ok(l) => {
                                    let local = l.local_addr().unwrap_or(addr);
                                    Some((l, local, tls, cap))
                                }
                                Err(e) => {
                                    let _ = ready_tx.send(Err(e));
                                    return;
                                }
                            },
                            None => None,
                        };
                        let _ = ready_tx.send(Ok((local, secure.as_ref().map(|s| s.1))));
                        // Upgraded connections leave hyper's graceful shutdown: the worker's
                        // tunnels get the same grace, then are closed.
                        let tunnels = worker.tunnels().clone();
                        let (listeners_done, done) = watch::channel(false);
                        let tunnels = tunnels.close_on(stop_rx.clone(), done, grace);
                        let plain = accept_loop(
                            listener,
                            None,
                            worker.clone(),
                            stop_rx.clone(),
                            grace,
                            cap,
                            limits,
                        );
                        let listeners = async move {
                            match secure {
                                Some((l, _, tls, cap)) => {
                                    let secure = accept_loop(
                                        l,
                                        Some(tls),
                                        worker,
                                        stop_rx,
                                        grace,
                                        cap,
                                        limits,
                                    );
                                    tokio::join!(plain, secure);
                                }
                                None => plain.await,
                            }
                            listeners_done.send_replace(true);
                        };
                        tokio::join!(listeners, tunnels);
                    });
                })
                .map_err(ServeError::Runtime)?;
            workers.push(handle);
            match ready_rx.recv() {
                Ok(Ok((local, secure))) => {
                    bound = local;
                    https_bound = secure.or(https_bound);
                }
                Ok(Err(e)) => {
                    let _ = stop.send(true);
                    return Err(e);
                }
                Err(_) => {
                    let _ = stop.send(true);
                    return Err(ServeError::WorkerLost);
                }
            }
        }
        Ok(Self {
            local_addr: bound,
            https_addr: https_bound,
            stop,
            workers,
            loggers,
        })
    }

    /// Stops accepting, waits for requests in flight (up to the grace period), and returns
    /// when every worker has stopped. Blocks the calling thread.
    pub fn shutdown_blocking(self) {
        let _ = self.stop.send(true);
        for w in self.workers {
            let _ = w.join();
        }
        // No request logs any more: what is queued gets a moment to leave.
        if !self.loggers.flush(LOGGER_FLUSH) {
            tracing::warn!(
                "log-to-eventhub messages were still queued at shutdown after {LOGGER_FLUSH:?}; they are lost"
            );
        }
    }
}

/// How long shutdown waits for the loggers' queues to empty.
const LOGGER_FLUSH: std::time::Duration = std::time::Duration::from_secs(5);

fn bind_error(addr: SocketAddr) -> impl Fn(std::io::Error) -> ServeError {
    move |source| ServeError::Bind {
        addr,
        why: crate::holder::why(addr, &source),
        source,
    }
}

fn socket(addr: SocketAddr) -> Result<TcpSocket, ServeError> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(bind_error(addr))?;
    // Sockets of an earlier run still in TIME_WAIT do not hold the port.
    socket.set_reuseaddr(true).map_err(bind_error(addr))?;
    Ok(socket)
}

/// Fails when another process listens on `addr`. A socket bound without `SO_REUSEPORT` cannot
/// share a port with a listening one, whatever that one's options, so this bind fails exactly
/// when the workers' `SO_REUSEPORT` binds would join someone else's group. The probe is closed
/// at once; the workers bind right after it (a process starting in that instant could still
/// slip in between: the check is for the common mistake, not a lock). Port 0 asks the kernel
/// for a free port: nothing to check.
pub fn claim(addr: SocketAddr) -> Result<(), ServeError> {
    if addr.port() == 0 {
        return Ok(());
    }
    socket(addr)?.bind(addr).map_err(bind_error(addr))
}

fn listen(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    let bind_err = bind_error(addr);
    let socket = socket(addr)?;
    socket.set_reuseport(true).map_err(&bind_err)?;
    socket.set_nodelay(true).map_err(&bind_err)?;
    socket.bind(addr).map_err(&bind_err)?;
    socket.listen(4096).map_err(bind_err)
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<Arc<crate::inbound_tls::InboundTls>>,
    worker: Arc<Worker>,
    mut stop: watch::Receiver<bool>,
    grace: std::time::Duration,
    cap: ConnectionCap,
    limits: ListenerLimits,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => break,
        };
        let Some((stream, remote)) = crate::listener::accepted_or_wait(accepted).await else {
            continue;
        };
        let Some(permit) = cap.admit() else {
            crate::listener::refuse(stream, remote, limits.max_connections);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let worker = worker.clone();
        let clock = HeadClock::new();
        let watched = Watched::new(stream, clock.clone());
        let Some(tls) = tls.clone() else {
            let held = Held {
                inner: watched,
                _permit: permit,
            };
            // The peer's address as text and as a header value, once per connection: logs,
            // X-Forwarded-For and `context.Request.IpAddress` share it.
            let peer = Arc::new(crate::proxy::Peer::new(remote.ip()));
            let service = service_fn(move |req| worker.clone().handle(peer.clone(), req));
            let conn = limits
                .builder(clock)
                .serve_connection_with_upgrades(TokioIo::new(held), service)
                .into_owned();
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
            });
            continue;
        };
        // The handshake runs in the connection's task, held to the header timeout, so a slow
        // client holds up nobody else.
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            tls.follow(worker.config_tls().as_ref());
            let Some(accepted) = crate::listener::handshake(
                tls.server(),
                watched,
                limits.header_read_timeout,
                remote,
            )
            .await
            else {
                return;
            };
            // Read and verified here, once for every request of the connection.
            let certificate = accepted.client_certificates.as_deref().and_then(|chain| {
                crate::client_certificate::describe(chain, worker.config_tls().as_deref())
            });
            let peer = Arc::new(crate::proxy::Peer::over_tls(
                remote.ip(),
                accepted.client_certificates.clone(),
                certificate,
            ));
            let service = service_fn(move |req| worker.clone().handle(peer.clone(), req));
            let conn = limits
                .builder(clock)
                .serve_connection_with_upgrades(
                    TokioIo::new(Held {
                        inner: accepted.stream,
                        _permit: permit,
                    }),
                    service,
                )
                .into_owned();
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?grace,
            "shutdown grace period over; closing remaining connections"
        );
    }
}

/// A connection's socket with its place under the connection cap. The place goes with the
/// socket: when a WebSocket handshake hands the socket over to a tunnel, the tunnel holds it
/// until it closes, so switched connections count against `--max-connections` too.
struct Held<T> {
    inner: T,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl<T: AsyncRead + Unpin> AsyncRead for Held<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Held<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
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

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A random seed for request ids, from the system's generator.
fn seed() -> u64 {
    let mut bytes = [0u8; 8];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        return std::process::id().into();
    }
    u64::from_le_bytes(bytes)
}
