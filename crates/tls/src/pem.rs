//! Certificate chains and private keys from PEM, with errors that say which file and what to do.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use crate::TlsError;

/// Reads a whole file; `what` names it in the error ("certificate file", …).
pub fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

/// Every certificate in `pem`, in order (leaf first for a chain). `origin` names the source.
pub fn certificates(pem: &[u8], origin: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let mut chain = Vec::new();
    for item in CertificateDer::pem_slice_iter(pem) {
        chain.push(item.map_err(|e| TlsError::BadPem {
            origin: origin.to_owned(),
            reason: e.to_string(),
        })?);
    }
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            origin: origin.to_owned(),
        });
    }
    Ok(chain)
}

/// The first private key in `pem`.
pub fn private_key(pem: &[u8], origin: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            origin: origin.to_owned(),
        },
        other => TlsError::BadPem {
            origin: origin.to_owned(),
            reason: other.to_string(),
        },
    })
}

/// A chain and its key, checked to belong together, ready to serve.
pub fn certified_key(
    cert_pem: &[u8],
    cert_origin: &str,
    key_pem: &[u8],
    key_origin: &str,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = certificates(cert_pem, cert_origin)?;
    let key = private_key(key_pem, key_origin)?;
    CertifiedKey::from_der(chain, key, &crate::provider())
        .map(Arc::new)
        .map_err(|e| TlsError::KeyMismatch {
            cert: cert_origin.to_owned(),
            key: key_origin.to_owned(),
            reason: e.to_string(),
        })
}

/// [`certified_key`] from two files.
pub fn certified_key_from_files(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let cert_pem = read("certificate file", cert)?;
    let key_pem = read("key file", key)?;
    certified_key(
        &cert_pem,
        &cert.display().to_string(),
        &key_pem,
        &key.display().to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_file_and_the_fix() {
        let e = certificates(b"hello", "cert.pem").unwrap_err().to_string();
        assert!(
            e.contains("cert.pem") && e.contains("BEGIN CERTIFICATE"),
            "{e}"
        );
        let e = private_key(b"", "key.pem").unwrap_err().to_string();
        assert!(e.contains("key.pem") && e.contains("private key"), "{e}");
        let e = certificates(
            b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
            "bad.pem",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("bad.pem"), "{e}");
        let e = certified_key_from_files(Path::new("/nonexistent/c.pem"), Path::new("k.pem"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/c.pem"), "{e}");
    }

    #[test]
    fn a_key_that_does_not_fit_is_refused() {
        let ca = crate::testca::TestCa::new("pem-mismatch");
        let a = ca.leaf("a.test", &["a.test"]);
        let b = ca.leaf("b.test", &["b.test"]);
        let e = certified_key(
            &std::fs::read(&a.cert).unwrap(),
            "a.pem",
            &std::fs::read(&b.key).unwrap(),
            "b-key.pem",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("does not fit"), "{e}");
        assert!(certified_key_from_files(&a.cert, &a.key).is_ok());
    }
}
