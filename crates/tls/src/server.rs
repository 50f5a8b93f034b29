//! The listeners' side of TLS: which certificate a handshake gets, and whether it asks for a
//! client certificate.
//!
//! A [`ServerTls`] keeps one rustls `ServerConfig` per certificate, built when certificates
//! change and swapped whole; a handshake reads the client's hello, picks the configuration for
//! its SNI name (exact, then `*.` wildcard, then the default), and completes with it. All the
//! configurations share one session cache and one ticket key, so resumption survives a reload.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::DistinguishedName;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{
    Acceptor, ClientHello, ProducesTickets, ResolvesServerCert, ServerConfig,
    ServerSessionMemoryCache, StoresServerSessions,
};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;

use crate::TlsError;

/// One certificate served for a hostname (`api.example.com` or `*.example.com`).
#[derive(Clone)]
pub struct HostnameCertificate {
    pub hostname: String,
    pub key: Arc<CertifiedKey>,
    /// Ask the client for a certificate (optional for the client, as in Azure: policies decide).
    pub negotiate_client_certificate: bool,
    /// Offer HTTP/2 through ALPN.
    pub http2: bool,
}

impl std::fmt::Debug for HostnameCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostnameCertificate")
            .field("hostname", &self.hostname)
            .field(
                "negotiate_client_certificate",
                &self.negotiate_client_certificate,
            )
            .field("http2", &self.http2)
            .finish()
    }
}

/// A finished handshake.
#[derive(Debug)]
pub struct Accepted<IO> {
    pub stream: TlsStream<IO>,
    /// The client chose HTTP/2 through ALPN.
    pub http2: bool,
    /// The SNI name the client sent, lower-cased.
    pub server_name: Option<String>,
    /// The client's certificate chain, leaf first, when one was asked for and given.
    pub client_certificates: Option<Arc<[CertificateDer<'static>]>>,
}

/// Why a handshake did not complete. Never shown to anyone but the log.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("no certificate for server name {0:?}")]
    NoCertificate(Option<String>),
    #[error("TLS handshake failed: {0}")]
    Io(#[from] std::io::Error),
}

/// The certificate files given on the command line, and what was last loaded from them.
struct Files {
    cert: PathBuf,
    key: PathBuf,
    loaded: Mutex<(Vec<u8>, Vec<u8>)>,
}

/// A configuration, and the leaf certificate it serves.
#[derive(Clone)]
struct Choice {
    config: Arc<ServerConfig>,
    leaf: CertificateDer<'static>,
}

/// The configurations a handshake chooses from.
#[derive(Default)]
struct Configs {
    default: Option<Choice>,
    exact: HashMap<String, Choice>,
    /// `(".example.com", choice)` for `*.example.com`.
    wildcard: Vec<(String, Choice)>,
}

impl Configs {
    fn pick(&self, name: Option<&str>) -> Option<&Choice> {
        if let Some(name) = name {
            if let Some(c) = self.exact.get(name) {
                return Some(c);
            }
            // `*.example.com` covers one label: `a.example.com`, not `a.b.example.com`.
            if let Some(dot) = name.find('.') {
                let parent = &name[dot..];
                if let Some((_, c)) = self.wildcard.iter().find(|(s, _)| s == parent) {
                    return Some(c);
                }
            }
        }
        self.default.as_ref()
    }
}

/// What every configuration shares.
struct Shared {
    provider: Arc<rustls::crypto::CryptoProvider>,
    sessions: Arc<dyn StoresServerSessions>,
    tickets: Arc<dyn ProducesTickets>,
}

/// Server-side TLS for one listener: a default certificate, certificates per hostname, and the
/// configurations built from them.
pub struct ServerTls {
    files: Option<Files>,
    default_key: ArcSwap<Option<Arc<CertifiedKey>>>,
    default_http2: bool,
    hostnames: ArcSwap<Vec<HostnameCertificate>>,
    configs: ArcSwap<Configs>,
    shared: Shared,
    /// Rebuilds are rare and must not interleave.
    rebuild: Mutex<()>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("cert", &self.files.as_ref().map(|f| &f.cert))
            .field("hostnames", &self.hostnames.load().len())
            .finish()
    }
}

impl ServerTls {
    /// TLS with the default certificate from PEM files (full chain, and its key).
    pub fn from_files(cert: &Path, key: &Path, http2: bool) -> Result<Arc<Self>, TlsError> {
        let cert_pem = crate::pem::read("certificate file", cert)?;
        let key_pem = crate::pem::read("key file", key)?;
        let certified = crate::pem::certified_key(
            &cert_pem,
            &cert.display().to_string(),
            &key_pem,
            &key.display().to_string(),
        )?;
        let files = Files {
            cert: cert.to_owned(),
            key: key.to_owned(),
            loaded: Mutex::new((cert_pem, key_pem)),
        };
        Self::build(Some(files), Some(certified), http2)
    }

    /// TLS with no default certificate: only the hostnames set later are served.
    pub fn without_default(http2: bool) -> Result<Arc<Self>, TlsError> {
        Self::build(None, None, http2)
    }

    fn build(
        files: Option<Files>,
        key: Option<Arc<CertifiedKey>>,
        http2: bool,
    ) -> Result<Arc<Self>, TlsError> {
        let tickets = rustls::crypto::aws_lc_rs::Ticketer::new()
            .map_err(|e| TlsError::Config(format!("cannot make a session ticket key: {e}")))?;
        let tls = Self {
            files,
            default_key: ArcSwap::from_pointee(key),
            default_http2: http2,
            hostnames: ArcSwap::from_pointee(Vec::new()),
            configs: ArcSwap::from_pointee(Configs::default()),
            shared: Shared {
                provider: crate::provider(),
                sessions: ServerSessionMemoryCache::new(4096),
                tickets,
            },
            rebuild: Mutex::new(()),
        };
        tls.rebuild()?;
        Ok(Arc::new(tls))
    }

    /// Replaces the per-hostname certificates (from a gateway's configuration).
    pub fn set_hostnames(&self, hostnames: Vec<HostnameCertificate>) -> Result<(), TlsError> {
        self.hostnames.store(Arc::new(hostnames));
        self.rebuild()
    }

    /// Reads the certificate files again; when they changed and are valid, serves the new
    /// certificate to every later handshake. Returns whether it changed. On an error the old
    /// certificate stays in force.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let Some(files) = &self.files else {
            return Ok(false);
        };
        let cert_pem = crate::pem::read("certificate file", &files.cert)?;
        let key_pem = crate::pem::read("key file", &files.key)?;
        {
            let loaded = files
                .loaded
                .lock()
                .map_err(|_| TlsError::Config("certificate state poisoned".into()))?;
            if loaded.0 == cert_pem && loaded.1 == key_pem {
                return Ok(false);
            }
        }
        let certified = crate::pem::certified_key(
            &cert_pem,
            &files.cert.display().to_string(),
            &key_pem,
            &files.key.display().to_string(),
        )?;
        self.default_key.store(Arc::new(Some(certified)));
        self.rebuild()?;
        if let Ok(mut loaded) = files.loaded.lock() {
            *loaded = (cert_pem, key_pem);
        }
        Ok(true)
    }

    /// Checks the certificate files every `every` on a thread of its own, until `self` is
    /// dropped. Kubernetes replaces a mounted Secret's files in place: this picks that up.
    pub fn watch_files(self: &Arc<Self>, every: Duration) {
        if self.files.is_none() {
            return;
        }
        let weak: Weak<Self> = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("tls-reload".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(every);
                    let Some(tls) = weak.upgrade() else { return };
                    match tls.reload() {
                        Ok(true) => {
                            tracing::info!(cert = ?tls.files.as_ref().map(|f| &f.cert), "TLS certificate reloaded")
                        }
                        Ok(false) => {}
                        Err(e) => {
                            tracing::error!(error = %e, "TLS certificate not reloaded; the previous one stays in force")
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the TLS certificate watcher");
        }
    }

    /// The leaf certificate a client asking for `server_name` gets now (tests, diagnostics).
    pub fn certificate_for(&self, server_name: Option<&str>) -> Option<CertificateDer<'static>> {
        let name = server_name.map(str::to_ascii_lowercase);
        self.configs
            .load()
            .pick(name.as_deref())
            .map(|choice| choice.leaf.clone())
    }

    fn rebuild(&self) -> Result<(), TlsError> {
        let _guard = self
            .rebuild
            .lock()
            .map_err(|_| TlsError::Config("certificate state poisoned".into()))?;
        let mut configs = Configs::default();
        if let Some(key) = self.default_key.load().as_ref() {
            configs.default = Some(self.config(key.clone(), false, self.default_http2)?);
        }
        for h in self.hostnames.load().iter() {
            let config = self.config(h.key.clone(), h.negotiate_client_certificate, h.http2)?;
            let name = h.hostname.trim().to_ascii_lowercase();
            match name.strip_prefix('*') {
                Some(suffix) if suffix.starts_with('.') => {
                    configs.wildcard.push((suffix.to_owned(), config))
                }
                _ => {
                    configs.exact.insert(name, config);
                }
            }
        }
        self.configs.store(Arc::new(configs));
        Ok(())
    }

    fn config(
        &self,
        key: Arc<CertifiedKey>,
        client_certificate: bool,
        http2: bool,
    ) -> Result<Choice, TlsError> {
        let leaf = key
            .cert
            .first()
            .cloned()
            .ok_or_else(|| TlsError::Config("a certificate chain is empty".into()))?;
        let builder = ServerConfig::builder_with_provider(self.shared.provider.clone())
            .with_protocol_versions(crate::VERSIONS)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = if client_certificate {
            builder.with_client_cert_verifier(Arc::new(AnyClientCertificate {
                algorithms: self.shared.provider.signature_verification_algorithms,
            }))
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder.with_cert_resolver(Arc::new(Fixed(key)));
        // HTTP/1.0 too, for the clients that offer only it (`curl --http1.0`): without it
        // such a client gets a fatal no_application_protocol alert, where nginx serves it.
        config.alpn_protocols = if http2 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec(), b"http/1.0".to_vec()]
        } else {
            vec![b"http/1.1".to_vec(), b"http/1.0".to_vec()]
        };
        config.session_storage = self.shared.sessions.clone();
        config.ticketer = self.shared.tickets.clone();
        Ok(Choice {
            config: Arc::new(config),
            leaf,
        })
    }

    /// Completes a handshake on `io` with the certificate its SNI name selects.
    pub async fn accept<IO>(&self, io: IO) -> Result<Accepted<IO>, HandshakeError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let start = LazyConfigAcceptor::new(Acceptor::default(), io).await?;
        let server_name = start
            .client_hello()
            .server_name()
            .map(str::to_ascii_lowercase);
        let config = self
            .configs
            .load()
            .pick(server_name.as_deref())
            .map(|choice| choice.config.clone())
            .ok_or_else(|| HandshakeError::NoCertificate(server_name.clone()))?;
        let stream = start.into_stream(config).await?;
        let (_, connection) = stream.get_ref();
        let http2 = connection.alpn_protocol() == Some(b"h2".as_slice());
        let client_certificates = connection
            .peer_certificates()
            .filter(|c| !c.is_empty())
            .map(|c| c.iter().map(|d| d.clone().into_owned()).collect());
        Ok(Accepted {
            stream,
            http2,
            server_name,
            client_certificates,
        })
    }
}

/// One certificate, whatever the client asks for: the choice was made from the hello already.
#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// Asks for a client certificate without requiring one, and accepts any chain the client can
/// prove it holds the key of (rustls still checks the handshake signature). As in Azure, whether
/// the certificate is trusted is for policies to decide (`validate-client-certificate`,
/// `context.Request.Certificate.Verify()`).
#[derive(Debug)]
struct AnyClientCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
