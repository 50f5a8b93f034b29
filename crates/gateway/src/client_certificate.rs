//! The certificate a client presented at the TLS handshake, as policies see it
//! (`context.Request.Certificate`, `validate-client-certificate`). It is read and verified once
//! per connection, at the handshake, and every request on that connection shares the result;
//! connections without a client certificate (and plain HTTP) pay nothing.

use std::sync::Arc;

use gatehouse_policy::exchange::ClientCertificate;
use gatehouse_tls::rustls::pki_types::{CertificateDer, UnixTime};
use gatehouse_tls::x509;

use crate::config::tls::CompiledTls;

/// Describes `chain` (leaf first) for policies. `tls` is the configuration's TLS in force at
/// the handshake: its trusted CA certificates decide `Verify()`, and name the issuer.
/// `None` without a certificate, or when the leaf cannot be read (logged).
pub fn describe(
    chain: &[CertificateDer<'static>],
    tls: Option<&CompiledTls>,
) -> Option<Arc<ClientCertificate>> {
    let (leaf, rest) = chain.split_first()?;
    let info = match x509::describe(leaf) {
        Ok(info) => info,
        Err(e) => {
            tracing::warn!(error = %e, "the client's certificate cannot be read; policies see none");
            return None;
        }
    };
    let verified = tls.is_some_and(|t| t.verify_client(leaf, rest, UnixTime::now()));
    // The issuer is named only for a chain the gateway verified: a name alone proves nothing,
    // anyone can write any issuer name into a certificate of their own.
    let (issuer_thumbprint, issuer_certificate_id) = match tls {
        Some(t) if verified => issuer(&info.issuer, rest, t),
        _ => (None, None),
    };
    Some(Arc::new(ClientCertificate {
        subject: info.subject.into(),
        issuer: info.issuer.into(),
        thumbprint: info.thumbprint.into(),
        serial_number: info.serial_number.into(),
        not_before: info.not_before,
        not_after: info.not_after,
        dns_names: info.dns_names.into_iter().map(Arc::from).collect(),
        verified,
        issuer_thumbprint,
        issuer_certificate_id,
    }))
}

/// The thumbprint and gateway certificate id of the CA certificate named `issuer`: one of
/// the gateway's own first, else one the client sent along.
fn issuer(
    issuer: &str,
    sent: &[CertificateDer<'static>],
    tls: &CompiledTls,
) -> (Option<Arc<str>>, Option<Arc<str>>) {
    if let Some(ca) = tls.authorities.iter().find(|a| &*a.subject == issuer) {
        return (Some(ca.thumbprint.clone()), Some(ca.id.clone()));
    }
    let sent = sent
        .iter()
        .filter_map(|c| x509::describe(c).ok())
        .find(|c| c.subject == issuer)
        .map(|c| Arc::from(c.thumbprint));
    (sent, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_model::snapshot::{SnapshotCertificateAuthority, SnapshotTls};

    fn der(path: &std::path::Path) -> Vec<CertificateDer<'static>> {
        gatehouse_tls::pem::certificates(&std::fs::read(path).unwrap(), "test").unwrap()
    }

    fn tls_trusting(ca: &gatehouse_tls::testca::TestCa, id: &str) -> CompiledTls {
        let tls = SnapshotTls {
            certificate_authorities: vec![SnapshotCertificateAuthority {
                certificate_id: id.into(),
                certificate: std::fs::read_to_string(&ca.cert).unwrap(),
                is_trusted: true,
            }],
            ..SnapshotTls::default()
        };
        CompiledTls::compile(&tls, 1)
    }

    #[test]
    fn a_certificate_from_a_trusted_ca_verifies_and_names_its_issuer() {
        let ca = gatehouse_tls::testca::TestCa::new("cc-trusted");
        let other = gatehouse_tls::testca::TestCa::new("cc-other");
        let client = ca.client("alice", "alice");
        let stranger = other.client("mallory", "mallory");
        let tls = tls_trusting(&ca, "team-ca");
        let ca_thumbprint = x509::describe(&der(&ca.cert)[0]).unwrap().thumbprint;

        let c = describe(&der(&client.cert), Some(&tls)).unwrap();
        assert!(c.verified);
        assert_eq!(c.common_name(), Some("alice"));
        assert_eq!(c.issuer_certificate_id.as_deref(), Some("team-ca"));
        assert_eq!(c.issuer_thumbprint.as_deref(), Some(ca_thumbprint.as_str()));

        let s = describe(&der(&stranger.cert), Some(&tls)).unwrap();
        assert!(!s.verified);
        assert_eq!(s.issuer_thumbprint, None);
        assert_eq!(s.issuer_certificate_id, None);
        // Without CA certificates, nothing verifies.
        let c = describe(&der(&client.cert), None).unwrap();
        assert!(!c.verified);
        assert!(describe(&[], Some(&tls)).is_none());
    }
}
