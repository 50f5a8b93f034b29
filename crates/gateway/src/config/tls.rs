//! The TLS part of a configuration, compiled once per snapshot: the hostname certificates a
//! listener hands to [`gatehouse_tls::server::ServerTls::set_hostnames`], and the CA
//! certificates assigned to the gateway, as DER, to extend the outbound trust with
//! ([`CompiledTls::trust`]).
//!
//! One broken hostname configuration (a PEM that does not parse, a key that does not fit) is
//! logged and left out; the other hostnames and the rest of the configuration still apply.

use std::sync::{Arc, OnceLock};

use gatehouse_model::snapshot::SnapshotTls;
use gatehouse_tls::TlsError;
use gatehouse_tls::client::Trust;
use gatehouse_tls::rustls::pki_types::{CertificateDer, UnixTime};
use gatehouse_tls::rustls::server::WebPkiClientVerifier;
use gatehouse_tls::rustls::server::danger::ClientCertVerifier;
use gatehouse_tls::server::HostnameCertificate;

/// A hostname or CA certificate of the snapshot that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// `hostnameConfigurations/{id}` or `certificateAuthorities/{id}`.
    pub target: String,
    pub reason: String,
}

/// The gateway's TLS, ready for the listener and the outbound clients.
#[derive(Debug, Default)]
pub struct CompiledTls {
    /// One per usable hostname configuration, in the snapshot's order (by id).
    pub hostnames: Vec<HostnameCertificate>,
    /// The CA certificates marked trusted, as DER.
    pub trusted_cas: Vec<CertificateDer<'static>>,
    /// The intermediate CA certificates (`isTrusted: false`), as DER: they help build chains
    /// but are no roots.
    pub intermediate_cas: Vec<CertificateDer<'static>>,
    /// What was left out, also logged when compiled.
    pub refused: Vec<Refused>,
    /// Every usable CA certificate, trusted or not, by id: how a client certificate's issuer
    /// is named to policies (`validate-client-certificate`'s `issuer-certificate-id`).
    pub authorities: Vec<Authority>,
    /// Checks client certificates against [`CompiledTls::trusted_cas`] (`Verify()`); built on
    /// the first client certificate, once per configuration. `None` without trusted CAs.
    pub(crate) client_verifier: OnceLock<Option<Arc<dyn ClientCertVerifier>>>,
}

/// One CA certificate of the gateway, as a client certificate's issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    /// The certificate's id (`certificateAuthorities/{id}`).
    pub id: Arc<str>,
    /// Its subject, .NET style, as client certificates name their issuer.
    pub subject: Arc<str>,
    pub thumbprint: Arc<str>,
}

impl CompiledTls {
    /// Compiles the snapshot's TLS part. Never fails: what cannot be used is logged and listed
    /// in [`CompiledTls::refused`].
    pub fn compile(tls: &SnapshotTls, revision: u64) -> Self {
        let mut out = Self::default();
        let mut refuse = |target: String, reason: String| {
            tracing::error!(
                revision,
                target = %target,
                reason = %reason,
                "a TLS certificate of the configuration cannot be used; it is left out and the rest applies"
            );
            out.refused.push(Refused { target, reason });
        };
        let mut hostnames = Vec::with_capacity(tls.hostnames.len());
        for hc in &tls.hostnames {
            let origin = format!("certificate '{}'", hc.certificate_id);
            let key_origin = format!("the private key of certificate '{}'", hc.certificate_id);
            match gatehouse_tls::pem::certified_key(
                hc.certificate.as_bytes(),
                &origin,
                hc.key.as_bytes(),
                &key_origin,
            ) {
                Ok(key) => hostnames.push(HostnameCertificate {
                    hostname: hc.hostname.clone(),
                    key,
                    negotiate_client_certificate: hc.negotiate_client_certificate,
                    http2: hc.http2_enabled,
                }),
                Err(e) => refuse(
                    format!("hostnameConfigurations/{} ({})", hc.id, hc.hostname),
                    e.to_string(),
                ),
            }
        }
        let (mut trusted, mut intermediate) = (Vec::new(), Vec::new());
        for ca in &tls.certificate_authorities {
            let target = format!("certificateAuthorities/{}", ca.certificate_id);
            let origin = format!("certificate '{}'", ca.certificate_id);
            let certs = match gatehouse_tls::pem::certificates(ca.certificate.as_bytes(), &origin) {
                Ok(certs) => certs,
                Err(e) => {
                    refuse(target, e.to_string());
                    continue;
                }
            };
            let id: Arc<str> = ca.certificate_id.as_str().into();
            out.authorities.extend(
                certs
                    .iter()
                    .filter_map(|c| gatehouse_tls::x509::describe(c).ok())
                    .map(|info| Authority {
                        id: id.clone(),
                        subject: info.subject.into(),
                        thumbprint: info.thumbprint.into(),
                    }),
            );
            if ca.is_trusted {
                // Checked here, once, so extending a trust with them later cannot fail.
                let mut roots = gatehouse_tls::rustls::RootCertStore::empty();
                if let Some(e) = certs.iter().find_map(|c| roots.add(c.clone()).err()) {
                    refuse(target, format!("not a usable CA certificate: {e}"));
                    continue;
                }
                trusted.extend(certs);
            } else {
                intermediate.extend(certs);
            }
        }
        out.hostnames = hostnames;
        out.trusted_cas = trusted;
        out.intermediate_cas = intermediate;
        out
    }

    /// Whether `leaf`, with the `intermediates` the client sent (and the gateway's own
    /// intermediate CA certificates), leads to one of the trusted CA certificates, every
    /// certificate current at `now` and the leaf meant for client authentication.
    pub fn verify_client(
        &self,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> bool {
        let verifier = self.client_verifier.get_or_init(|| {
            if self.trusted_cas.is_empty() {
                return None;
            }
            let mut roots = gatehouse_tls::rustls::RootCertStore::empty();
            // Each was checked usable when compiled.
            roots.add_parsable_certificates(self.trusted_cas.iter().cloned());
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), gatehouse_tls::provider())
                .build()
                .inspect_err(|e| {
                    tracing::error!(error = %e, "client certificates cannot be verified against the gateway's CA certificates; Verify() is false")
                })
                .ok()
        });
        let Some(verifier) = verifier else {
            return false;
        };
        let chain: Vec<CertificateDer<'_>> = intermediates
            .iter()
            .chain(&self.intermediate_cas)
            .map(|c| CertificateDer::from(c.as_ref()))
            .collect();
        verifier.verify_client_cert(leaf, &chain, now).is_ok()
    }

    /// No hostname certificates and no CA certificates.
    pub fn is_empty(&self) -> bool {
        self.hostnames.is_empty() && self.trusted_cas.is_empty() && self.intermediate_cas.is_empty()
    }

    /// `base` (the OS roots and `--trusted-ca` files) plus the CA certificates trusted here.
    /// Build it once per configuration, not per connection.
    pub fn trust(&self, base: &Trust) -> Result<Trust, TlsError> {
        if self.trusted_cas.is_empty() {
            return Ok(base.clone());
        }
        base.with_certificates(
            self.trusted_cas.clone(),
            "the gateway's certificate authorities",
        )
    }
}

/// Shared by configurations whose TLS did not change.
pub type SharedTls = Arc<CompiledTls>;

#[cfg(test)]
mod tests {
    use gatehouse_model::snapshot::{SnapshotCertificateAuthority, SnapshotHostname};
    use gatehouse_tls::testca::TestCa;

    use super::*;

    fn read(path: &std::path::Path) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    fn hostname(id: &str, name: &str, cert: &str, key: &str) -> SnapshotHostname {
        SnapshotHostname {
            id: id.into(),
            hostname: name.into(),
            certificate_id: format!("cert-{id}"),
            certificate: cert.into(),
            key: key.into(),
            negotiate_client_certificate: id == "b",
            http2_enabled: id != "b",
        }
    }

    #[test]
    fn a_broken_hostname_is_refused_and_the_others_apply() {
        let ca = TestCa::new("gateway-config-tls");
        let a = ca.leaf("a", &["a.example.com"]);
        let b = ca.leaf("b", &["*.b.example.com"]);
        let tls = SnapshotTls {
            hostnames: vec![
                hostname("a", "a.example.com", &read(&a.cert), &read(&a.key)),
                hostname("b", "*.b.example.com", &read(&b.cert), &read(&b.key)),
                // A key that belongs to another certificate.
                hostname("c", "c.example.com", &read(&a.cert), &read(&b.key)),
                hostname("d", "d.example.com", "not pem", &read(&a.key)),
            ],
            certificate_authorities: vec![
                SnapshotCertificateAuthority {
                    certificate_id: "root".into(),
                    certificate: read(&ca.cert),
                    is_trusted: true,
                },
                SnapshotCertificateAuthority {
                    certificate_id: "broken".into(),
                    certificate: "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n"
                        .into(),
                    is_trusted: true,
                },
            ],
            client_certificates: vec![],
        };
        let compiled = CompiledTls::compile(&tls, 7);
        let names: Vec<(&str, bool, bool)> = compiled
            .hostnames
            .iter()
            .map(|h| (h.hostname.as_str(), h.negotiate_client_certificate, h.http2))
            .collect();
        assert_eq!(
            names,
            [
                ("a.example.com", false, true),
                ("*.b.example.com", true, false)
            ]
        );
        let refused: Vec<&str> = compiled.refused.iter().map(|r| r.target.as_str()).collect();
        assert_eq!(
            refused,
            [
                "hostnameConfigurations/c (c.example.com)",
                "hostnameConfigurations/d (d.example.com)",
                "certificateAuthorities/broken"
            ]
        );
        assert!(
            compiled.refused[0].reason.contains("does not fit"),
            "{:?}",
            compiled.refused
        );
        assert!(!format!("{compiled:?}").contains("PRIVATE KEY"));

        // The trusted CA extends a trust: a client with only it verifies the leaf's chain.
        assert_eq!(compiled.trusted_cas.len(), 1);
        let elsewhere = TestCa::new("gateway-config-tls-base");
        let base = Trust::only(read(&elsewhere.cert).as_bytes(), "test").unwrap();
        let extended = compiled.trust(&base).unwrap();
        assert_eq!(extended.len(), base.len() + 1);
        assert!(CompiledTls::compile(&SnapshotTls::default(), 1).is_empty());
    }
}
