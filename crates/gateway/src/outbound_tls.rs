//! The gateway's outbound TLS: whom it trusts when it calls backends and `send-request` URLs
//! over https. The trust is the OS roots plus each `--trusted-ca` file, loaded once at start;
//! the CA certificates assigned to the gateway in its configuration are added while a
//! configuration brings them. A client configuration is built once per such change and shared
//! by the workers' pools, so TLS sessions resume across connections.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};

use gatehouse_tls::TlsError;
use gatehouse_tls::client::{ClientIdentity, Trust, Verify};
use gatehouse_tls::rustls::ClientConfig;
use gatehouse_tls::rustls::pki_types::CertificateDer;

use crate::config::tls::CompiledTls;

/// ALPN for backend connections: HTTP/2 where the backend offers it, else HTTP/1.1.
const ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];
/// ALPN for reqwest's connections (the link, OpenID): HTTP/1.1, which its long-polls suit.
const ALPN_HTTP1: &[&[u8]] = &[b"http/1.1"];

pub struct OutboundTls {
    /// The trust from the command line: the OS roots and `--trusted-ca`.
    base: Trust,
    /// The strict client configuration of the base trust.
    base_config: Arc<ClientConfig>,
    /// The configuration built for the last configuration's CA certificates, and for which.
    with_cas: Mutex<Option<(Weak<CompiledTls>, Arc<ClientConfig>)>>,
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
        let base_config = base.client_config(ALPN, Verify::default())?;
        Ok(Self {
            base,
            base_config,
            with_cas: Mutex::default(),
        })
    }

    /// The configuration a new connection uses under `tls`, the TLS part of the configuration
    /// in force: the base trust plus the CA certificates assigned to the gateway. Built once per
    /// configuration that changes them, not per connection.
    pub fn config_for(&self, tls: Option<&Arc<CompiledTls>>) -> Arc<ClientConfig> {
        let Some(tls) = tls.filter(|t| !t.trusted_cas.is_empty()) else {
            return self.base_config.clone();
        };
        let mut cached = self
            .with_cas
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((seen, config)) = cached.as_ref()
            && std::ptr::eq(seen.as_ptr(), Arc::as_ptr(tls))
        {
            return config.clone();
        }
        let built = self
            .base
            .with_certificates(tls.trusted_cas.clone(), "the gateway's CA certificates")
            .and_then(|trust| trust.client_config(ALPN, Verify::default()));
        match built {
            Ok(config) => {
                *cached = Some((Arc::downgrade(tls), config.clone()));
                config
            }
            Err(e) => {
                tracing::error!(error = %e, "the gateway's CA certificates cannot be trusted; using the base trust");
                self.base_config.clone()
            }
        }
    }
}

impl OutboundTls {
    /// A configuration of its own for a backend's TLS variant: the base trust plus `cas` (the
    /// gateway's CA certificates), checking what `verify` asks, presenting `identity`. Built
    /// once per variant and configuration (see `config::backends::ClientTls`).
    pub fn variant(
        &self,
        cas: &[CertificateDer<'static>],
        verify: Verify,
        identity: Option<&ClientIdentity>,
    ) -> Result<Arc<ClientConfig>, TlsError> {
        let trust = if cas.is_empty() {
            self.base.clone()
        } else {
            self.base
                .with_certificates(cas.to_vec(), "the gateway's CA certificates")?
        };
        trust.client_config_with(ALPN, verify, identity)
    }
}

/// A client configuration for reqwest (the link, JWKS and OpenID fetches): the OS roots plus
/// `trusted_ca`, strict, HTTP/1.1.
pub fn reqwest_tls(trusted_ca: &[PathBuf]) -> Result<ClientConfig, TlsError> {
    let config = Trust::load(trusted_ca)?.client_config(ALPN_HTTP1, Verify::default())?;
    Ok((*config).clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateways_cas_join_the_trust_once_per_configuration() {
        let ca = gatehouse_tls::testca::TestCa::new("outbound-cas");
        let base = Trust::only(&std::fs::read(&ca.cert).unwrap(), "ca").unwrap();
        let tls = OutboundTls::new(base).unwrap();
        // No CAs in the configuration: the base configuration itself.
        let none = Arc::new(CompiledTls::default());
        assert!(Arc::ptr_eq(&tls.config_for(Some(&none)), &tls.base_config));
        assert!(Arc::ptr_eq(&tls.config_for(None), &tls.base_config));
        // With CAs: built once, then reused while the configuration's TLS is the same.
        let other = gatehouse_tls::testca::TestCa::new("outbound-cas-2");
        let der =
            gatehouse_tls::pem::certificates(&std::fs::read(&other.cert).unwrap(), "o").unwrap();
        let with = Arc::new(CompiledTls {
            trusted_cas: der,
            ..CompiledTls::default()
        });
        let first = tls.config_for(Some(&with));
        assert!(!Arc::ptr_eq(&first, &tls.base_config));
        assert!(Arc::ptr_eq(&first, &tls.config_for(Some(&with))));
        // A new configuration (another Arc) builds again.
        let next = Arc::new(CompiledTls {
            trusted_cas: with.trusted_cas.clone(),
            ..CompiledTls::default()
        });
        assert!(!Arc::ptr_eq(&first, &tls.config_for(Some(&next))));
    }
}
#[cfg(test)]
mod reqwest_errors {
    /// reqwest wraps a TLS error in two I/O errors; the reason is still found and said.
    #[tokio::test]
    async fn a_refused_certificate_is_found_in_a_reqwest_error() {
        let ca = gatehouse_tls::testca::TestCa::new("reqwest-chain");
        let leaf = ca.leaf("leaf", &["127.0.0.1"]);
        let server =
            gatehouse_tls::server::ServerTls::from_files(&leaf.cert, &leaf.key, false).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = server.accept(stream).await;
            }
        });
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(super::reqwest_tls(&[]).unwrap())
            .build()
            .unwrap();
        let e = client
            .get(format!("https://{addr}/"))
            .send()
            .await
            .unwrap_err();
        let tls = gatehouse_tls::client::find_tls_error(&e).expect("the TLS error is found");
        assert!(gatehouse_tls::client::describe(tls).contains("issuer is not trusted"));
    }
}
