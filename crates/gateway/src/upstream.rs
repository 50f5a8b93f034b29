//! The workers' upstream connector: hyper-util's `HttpConnector`, counting the connections it
//! opens and those still open, for `/metrics`. A pool that reuses its connections opens few.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Upstream connections of one gateway process.
#[derive(Debug, Default)]
pub struct UpstreamGauges {
    /// Connections open now (in the pools or in use).
    pub open: AtomicI64,
    /// Connections opened since the start.
    pub opened: AtomicU64,
}

/// An `HttpConnector` that counts.
#[derive(Clone)]
pub struct CountingConnector {
    inner: HttpConnector,
    gauges: Arc<UpstreamGauges>,
}

impl CountingConnector {
    pub fn new(inner: HttpConnector, gauges: Arc<UpstreamGauges>) -> Self {
        Self { inner, gauges }
    }
}

type ConnectFuture =
    Pin<Box<dyn Future<Output = Result<Counted, Box<dyn std::error::Error + Send + Sync>>> + Send>>;

impl tower_service::Service<Uri> for CountingConnector {
    type Response = Counted;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let gauges = self.gauges.clone();
        Box::pin(async move {
            let io = connecting.await?;
            gauges.opened.fetch_add(1, Ordering::Relaxed);
            gauges.open.fetch_add(1, Ordering::Relaxed);
            Ok(Counted { io, gauges })
        })
    }
}

/// A connection that leaves the count when it closes.
pub struct Counted {
    io: TokioIo<TcpStream>,
    gauges: Arc<UpstreamGauges>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.gauges.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Connection for Counted {
    fn connected(&self) -> Connected {
        self.io.connected()
    }
}

impl hyper::rt::Read for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}
