//! WebSocket tunnels: once a backend switches protocols for a client's handshake (a 101, over
//! HTTP/1.1 or an HTTP/2 extended CONNECT), bytes are copied both ways until either side
//! closes. Each worker counts its open tunnels, so that shutdown gives them the grace period to
//! close by themselves, then closes the rest, each logged with what it carried.

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use tokio::sync::watch;

use crate::upstream::UpstreamBody;

/// The client's side of a WebSocket handshake, until the backend answers it.
pub(crate) struct ClientUpgrade {
    pub(crate) on: hyper::upgrade::OnUpgrade,
    /// An HTTP/2 extended CONNECT (RFC 8441), answered with a 200 instead of a 101.
    pub(crate) over_h2: bool,
}

/// A fresh `Sec-WebSocket-Key`: 16 random bytes in base64 (RFC 6455 §4.1).
pub(crate) fn websocket_key() -> HeaderValue {
    use base64::Engine as _;
    let mut nonce = [0u8; 16];
    if aws_lc_rs::rand::fill(&mut nonce).is_err() {
        // The key guards against caches, not attackers: a fallback nonce still does that.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        nonce = now.to_le_bytes();
    }
    let key = base64::engine::general_purpose::STANDARD.encode(nonce);
    HeaderValue::from_str(&key)
        .unwrap_or_else(|_| HeaderValue::from_static("AAAAAAAAAAAAAAAAAAAAAA=="))
}

/// Both sides of a switched (WebSocket) connection, from the backend's 101 until either side
/// closes. Rides in the client's response's extensions up to [`Worker::handle`], which starts it.
#[derive(Debug, Clone)]
pub(crate) struct Tunnel {
    client: hyper::upgrade::OnUpgrade,
    backend: hyper::upgrade::OnUpgrade,
    over_h2: bool,
}

impl Tunnel {
    /// The tunnel of a WebSocket handshake the backend accepted (101), else none.
    pub(crate) fn of(client: ClientUpgrade, response: &mut Response<UpstreamBody>) -> Option<Self> {
        (response.status() == StatusCode::SWITCHING_PROTOCOLS).then(|| Self {
            client: client.on,
            backend: hyper::upgrade::on(response),
            over_h2: client.over_h2,
        })
    }

    /// Puts the tunnel on the client's answer to the backend's 101: the switch's headers the
    /// hop dropped, or for HTTP/2 a 200, which opens the stream (RFC 8441 §5), without the
    /// HTTP/1.1 switch's headers.
    pub(crate) fn attach(self, parts: &mut http::response::Parts) {
        if self.over_h2 {
            parts.status = StatusCode::OK;
            parts.headers.remove(header::SEC_WEBSOCKET_ACCEPT);
        } else {
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            parts
                .headers
                .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        }
        parts.extensions.insert(self);
    }

    /// Copies bytes both ways until either side closes, or shutdown closes the tunnel, then
    /// records the connection: its duration, the bytes from the client (`bytesIn`) and to it
    /// (`bytesOut`).
    pub(crate) async fn run(
        self,
        mut record: crate::telemetry::Record,
        telemetry: Arc<crate::telemetry::WorkerTelemetry>,
        open: OpenTunnel,
    ) {
        let (mut up, mut down) = (0, 0);
        let mut closing = open.tunnels.closing.subscribe();
        match tokio::try_join!(self.client, self.backend) {
            Ok((client, backend)) => {
                let (mut client_rx, mut client_tx) =
                    tokio::io::split(hyper_util::rt::TokioIo::new(client));
                let (mut backend_rx, mut backend_tx) =
                    tokio::io::split(hyper_util::rt::TokioIo::new(backend));
                let to_backend = pump(&mut client_rx, &mut backend_tx, &mut up);
                let to_client = pump(&mut backend_rx, &mut client_tx, &mut down);
                tokio::pin!(to_backend, to_client);
                // Once one side has closed, the other has a moment to finish its close,
                // not forever: a peer that never closes does not hold the tunnel open.
                tokio::select! {
                    _ = &mut to_backend => {
                        let _ = tokio::time::timeout(TUNNEL_CLOSE_GRACE, to_client).await;
                    }
                    _ = &mut to_client => {
                        let _ = tokio::time::timeout(TUNNEL_CLOSE_GRACE, to_backend).await;
                    }
                    () = until_true(&mut closing) => {}
                }
            }
            Err(e) => tracing::debug!(error = %e, "a protocol switch did not complete"),
        }
        record.bytes_in += up;
        telemetry.finish_tunnel(record, down);
        drop(open);
    }
}

/// Waits until the flag turns true (or its sender is gone), holding no borrow of it after.
async fn until_true(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|v| *v).await;
}

/// The tunnels of one worker: how many are open, and the signal that closes them.
#[derive(Debug)]
pub struct Tunnels {
    open: watch::Sender<usize>,
    closing: watch::Sender<bool>,
}

/// One open tunnel's place in its worker's count, given back when dropped.
#[derive(Debug)]
pub(crate) struct OpenTunnel {
    tunnels: Arc<Tunnels>,
}

impl Drop for OpenTunnel {
    fn drop(&mut self) {
        self.tunnels.open.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Tunnels {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            open: watch::Sender::new(0),
            closing: watch::Sender::new(false),
        })
    }

    /// Counts a tunnel as open from now (before its task starts, so shutdown cannot miss it).
    pub(crate) fn enter(self: &Arc<Self>) -> OpenTunnel {
        self.open.send_modify(|n| *n += 1);
        OpenTunnel {
            tunnels: self.clone(),
        }
    }

    pub fn open(&self) -> usize {
        *self.open.borrow()
    }

    /// At shutdown (once `stop` turns true): the open tunnels have `grace` to close by
    /// themselves; then the rest are closed, and this returns once each has been logged. A
    /// handshake still in flight may open a tunnel after the stop, so the count is final only
    /// once `listeners_done` turns true (the listeners' connections are over).
    pub async fn close_on(
        &self,
        mut stop: watch::Receiver<bool>,
        mut listeners_done: watch::Receiver<bool>,
        grace: std::time::Duration,
    ) {
        if stop.wait_for(|s| *s).await.is_err() {
            return;
        }
        let mut open = self.open.subscribe();
        let settled = async {
            until_true(&mut listeners_done).await;
            let _ = open.wait_for(|n| *n == 0).await;
        };
        if tokio::time::timeout(grace, settled).await.is_ok() {
            return;
        }
        tracing::info!(
            open = self.open(),
            "closing the WebSockets still open at the end of the shutdown grace"
        );
        self.closing.send_replace(true);
        // Each closes at once; the bound only guards against a tunnel stuck in a write.
        let _ = tokio::time::timeout(TUNNEL_CLOSE_GRACE, open.wait_for(|n| *n == 0)).await;
    }
}

/// How long a tunnel waits for its second side to close once the first has.
const TUNNEL_CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Copies `from` to `to` until `from` ends (then closes `to` for writing) or either fails,
/// counting the bytes as they go, so a tunnel cut short still records what it carried.
async fn pump(
    from: &mut (impl tokio::io::AsyncRead + Unpin),
    to: &mut (impl tokio::io::AsyncWrite + Unpin),
    count: &mut u64,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => {
                if to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
                *count += n as u64;
            }
            Err(e) => {
                tracing::debug!(error = %e, "a WebSocket connection ended with an error");
                return;
            }
        }
    }
}
