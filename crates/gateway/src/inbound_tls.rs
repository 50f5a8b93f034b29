//! The gateway's HTTPS listener side: the server certificates it offers. The default
//! certificate comes from `--tls-cert`/`--tls-key` (reloaded when the files change); the
//! hostname certificates come from the configuration in force and are chosen by SNI. They are
//! brought in line with the configuration when a connection arrives after a change, once per
//! change, not per connection.

use std::sync::{Arc, Mutex, Weak};

use gatehouse_tls::server::{Accepted, HandshakeError, ServerTls};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::tls::CompiledTls;

pub struct InboundTls {
    server: Arc<ServerTls>,
    /// The configuration's TLS whose hostnames the server offers now.
    applied: Mutex<Weak<CompiledTls>>,
}

impl std::fmt::Debug for InboundTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundTls")
            .field("server", &self.server)
            .finish()
    }
}

impl InboundTls {
    pub fn new(server: Arc<ServerTls>) -> Arc<Self> {
        Arc::new(Self {
            server,
            applied: Mutex::new(Weak::new()),
        })
    }

    pub fn server(&self) -> &Arc<ServerTls> {
        &self.server
    }

    /// Offers the hostname certificates of `tls` (the configuration in force) from now on.
    pub fn follow(&self, tls: Option<&Arc<CompiledTls>>) {
        let mut applied = self
            .applied
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = tls.map_or(std::ptr::null(), Arc::as_ptr);
        if std::ptr::eq(applied.as_ptr(), current) {
            return;
        }
        let hostnames = tls.map(|t| t.hostnames.clone()).unwrap_or_default();
        match self.server.set_hostnames(hostnames) {
            Ok(()) => *applied = tls.map_or_else(Weak::new, Arc::downgrade),
            Err(e) => {
                tracing::error!(error = %e, "the configuration's hostname certificates cannot be served; the previous ones stay")
            }
        }
    }

    /// Completes a handshake on `io`.
    pub async fn accept<IO>(&self, io: IO) -> Result<Accepted<IO>, HandshakeError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        self.server.accept(io).await
    }
}
