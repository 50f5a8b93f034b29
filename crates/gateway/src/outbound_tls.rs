//! The gateway's outbound TLS: whom it trusts when it calls backends and `send-request` URLs
//! over https. The trust is the OS roots plus each `--trusted-ca` file, loaded once at start;
//! the CA certificates assigned to the gateway in its configuration are added when a
//! configuration brings them. The client configuration is built once per change and shared by
//! the workers' pools, so TLS sessions resume across connections.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use gatehouse_tls::TlsError;
use gatehouse_tls::client::{Trust, Verify};
use gatehouse_tls::rustls::ClientConfig;
use gatehouse_tls::rustls::pki_types::CertificateDer;

/// ALPN for backend connections: HTTP/2 where the backend offers it, else HTTP/1.1.
const ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];
/// ALPN for reqwest's connections (the link, OpenID): HTTP/1.1, which its long-polls suit.
const ALPN_HTTP1: &[&[u8]] = &[b"http/1.1"];

pub struct OutboundTls {
    /// The trust from the command line: the OS roots and `--trusted-ca`.
    base: Trust,
    /// The strict client configuration in force (base + the gateway's own CAs).
    strict: ArcSwap<ClientConfig>,
    /// The gateway's CAs the strict configuration was last built with.
    gateway_cas: std::sync::Mutex<Vec<CertificateDer<'static>>>,
}

impl std::fmt::Debug for OutboundTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundTls")
            .field("trusted", &self.base.len())
            .finish()
    }
}

impl OutboundTls {
    /// The OS roots plus the CA certificates in `trusted_ca` (PEM files).
    pub fn load(trusted_ca: &[PathBuf]) -> Result<Self, TlsError> {
        Self::new(Trust::load(trusted_ca)?)
    }

    pub fn new(base: Trust) -> Result<Self, TlsError> {
        let strict = base.client_config(ALPN, Verify::default())?;
        Ok(Self {
            base,
            strict: ArcSwap::new(strict),
            gateway_cas: std::sync::Mutex::default(),
        })
    }

    /// The configuration new connections use.
    pub fn config(&self) -> Arc<ClientConfig> {
        self.strict.load_full()
    }

    /// Trusts `cas` (the CA certificates assigned to the gateway) from now on, besides the
    /// base trust; connections already open stay as they are.
    pub fn set_gateway_cas(&self, cas: Vec<CertificateDer<'static>>) -> Result<(), TlsError> {
        let mut current = self
            .gateway_cas
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *current == cas {
            return Ok(());
        }
        let trust = self
            .base
            .with_certificates(cas.clone(), "the gateway's CA certificates")?;
        self.strict
            .store(trust.client_config(ALPN, Verify::default())?);
        *current = cas;
        Ok(())
    }
}

/// A client configuration for reqwest (the link, JWKS and OpenID fetches): the OS roots plus
/// `trusted_ca`, strict, HTTP/1.1.
pub fn reqwest_tls(trusted_ca: &[PathBuf]) -> Result<ClientConfig, TlsError> {
    let config = Trust::load(trusted_ca)?.client_config(ALPN_HTTP1, Verify::default())?;
    Ok((*config).clone())
}
