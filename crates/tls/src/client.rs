//! The outbound side of TLS: whom Gatehouse trusts when it calls out (backends, `send-request`,
//! JWKS and OpenID endpoints, the gateway link, the CLI), and client configurations built from
//! that trust. Strict by default; a backend resource may relax its own checks, never anyone
//! else's.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use crate::TlsError;

/// The certificate authorities a client trusts.
#[derive(Debug, Clone)]
pub struct Trust {
    roots: Arc<RootCertStore>,
    /// The CAs added beyond the OS's, kept to extend the trust again (a gateway's own CAs).
    added: Vec<CertificateDer<'static>>,
}

/// A certificate and key a client presents (the `authentication-certificate` policy).
#[derive(Debug)]
pub struct ClientIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Clone for ClientIdentity {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl ClientIdentity {
    /// From PEM: the chain (leaf first) and its private key. `origin` names them in errors.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8], origin: &str) -> Result<Self, TlsError> {
        // Check that they belong together before anything is sent with them.
        crate::pem::certified_key(cert_pem, origin, key_pem, origin)?;
        Ok(Self {
            chain: crate::pem::certificates(cert_pem, origin)?,
            key: crate::pem::private_key(key_pem, origin)?,
        })
    }
}

/// How strictly one client checks a server's certificate (a backend's `tls` settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verify {
    /// The chain leads to a trusted CA, and every certificate in it is current.
    pub chain: bool,
    /// The certificate names the host called.
    pub name: bool,
}

impl Default for Verify {
    fn default() -> Self {
        Self {
            chain: true,
            name: true,
        }
    }
}

impl Trust {
    /// The operating system's roots, plus the CA certificates in `files` (PEM, any number each).
    pub fn load(files: &[PathBuf]) -> Result<Self, TlsError> {
        let native = rustls_native_certs::load_native_certs();
        for e in &native.errors {
            tracing::warn!(error = %e, "cannot read some of the system's CA certificates");
        }
        let mut roots = RootCertStore::empty();
        let (_, ignored) = roots.add_parsable_certificates(native.certs);
        if ignored > 0 {
            tracing::debug!(ignored, "system CA certificates that could not be parsed");
        }
        let mut trust = Self {
            roots: Arc::new(roots),
            added: Vec::new(),
        };
        for file in files {
            let pem = crate::pem::read("CA certificate file", file)?;
            trust = trust.with_pem(&pem, &file.display().to_string())?;
        }
        Ok(trust)
    }

    /// Only the CAs in `pem` (tests, and callers that must not trust the OS).
    pub fn only(pem: &[u8], origin: &str) -> Result<Self, TlsError> {
        Self {
            roots: Arc::new(RootCertStore::empty()),
            added: Vec::new(),
        }
        .with_pem(pem, origin)
    }

    /// This trust plus the CA certificates in `pem`.
    pub fn with_pem(&self, pem: &[u8], origin: &str) -> Result<Self, TlsError> {
        let certs = crate::pem::certificates(pem, origin)?;
        self.with_certificates(certs, origin)
    }

    /// This trust plus `certs` (DER).
    pub fn with_certificates(
        &self,
        certs: Vec<CertificateDer<'static>>,
        origin: &str,
    ) -> Result<Self, TlsError> {
        let mut roots = (*self.roots).clone();
        let mut added = self.added.clone();
        for cert in certs {
            roots.add(cert.clone()).map_err(|e| TlsError::BadPem {
                origin: origin.to_owned(),
                reason: format!("not a usable CA certificate: {e}"),
            })?;
            added.push(cert);
        }
        Ok(Self {
            roots: Arc::new(roots),
            added,
        })
    }

    /// How many CAs are trusted.
    pub fn len(&self) -> usize {
        self.roots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    /// The CA certificates added beyond the OS's.
    pub fn added(&self) -> &[CertificateDer<'static>] {
        &self.added
    }

    /// A client configuration offering `alpn` (e.g. `h2`, `http/1.1`; empty for none).
    pub fn client_config(
        &self,
        alpn: &[&[u8]],
        verify: Verify,
    ) -> Result<Arc<ClientConfig>, TlsError> {
        self.client_config_with(alpn, verify, None)
    }

    /// [`Trust::client_config`], presenting `identity` when the server asks for a certificate.
    pub fn client_config_with(
        &self,
        alpn: &[&[u8]],
        verify: Verify,
        identity: Option<&ClientIdentity>,
    ) -> Result<Arc<ClientConfig>, TlsError> {
        let provider = crate::provider();
        let webpki =
            WebPkiServerVerifier::builder_with_provider(self.roots.clone(), provider.clone())
                .build()
                .map_err(|e| {
                    TlsError::Config(format!("cannot build the certificate verifier: {e}"))
                })?;
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(crate::VERSIONS)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = if verify == Verify::default() {
            builder.with_webpki_verifier(webpki)
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Relaxed {
                    strict: webpki,
                    verify,
                }))
        };
        let mut config = match identity {
            Some(id) => builder
                .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
                .map_err(|e| TlsError::Config(format!("cannot use the client certificate: {e}")))?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

/// A verifier that skips the checks a backend's settings turned off, and only those.
#[derive(Debug)]
struct Relaxed {
    strict: Arc<WebPkiServerVerifier>,
    verify: Verify,
}

impl ServerCertVerifier for Relaxed {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.verify.chain {
            match self.strict.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            ) {
                Ok(ok) => Ok(ok),
                // The chain is good; only the name is off, and that check is turned off.
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. },
                )) if !self.verify.name => Ok(ServerCertVerified::assertion()),
                Err(e) => Err(e),
            }
        } else if self.verify.name {
            let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_name(&cert, server_name)?;
            Ok(ServerCertVerified::assertion())
        } else {
            Ok(ServerCertVerified::assertion())
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Signatures are checked whatever is relaxed: the strict verifier does that.
        self.strict.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.strict.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.strict.supported_verify_schemes()
    }
}

/// The TLS error somewhere in `error`'s chain, looking inside I/O errors too (TLS streams
/// report their errors wrapped in `std::io::Error`).
pub fn find_tls_error<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    let mut next = Some(error);
    // Chains are short; the bound only guards against a cycle.
    for _ in 0..32 {
        let e = next?;
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        // An I/O error's `source` skips the error it wraps: look at that one itself.
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

/// Says in words why a certificate was refused: for the log line of a failed backend call.
pub fn describe(error: &rustls::Error) -> String {
    match error {
        rustls::Error::InvalidCertificate(e) => match e {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the certificate has expired".into()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the certificate is not valid yet".into()
            }
            CertificateError::UnknownIssuer => {
                "the certificate's issuer is not trusted (add its CA with --trusted-ca)".into()
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                "the certificate does not name the host called".into()
            }
            CertificateError::Revoked => "the certificate is revoked".into(),
            CertificateError::BadSignature => "the certificate's signature is bad".into(),
            other => format!("the certificate is invalid: {other:?}"),
        },
        rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired) => {
            "the server requires a client certificate, and none was presented".into()
        }
        rustls::Error::AlertReceived(
            alert @ (rustls::AlertDescription::BadCertificate
            | rustls::AlertDescription::UnknownCA
            | rustls::AlertDescription::CertificateUnknown
            | rustls::AlertDescription::CertificateExpired
            | rustls::AlertDescription::CertificateRevoked
            | rustls::AlertDescription::UnsupportedCertificate
            | rustls::AlertDescription::AccessDenied),
        ) => format!("the server refused the client certificate presented ({alert:?})"),
        other => other.to_string(),
    }
}
