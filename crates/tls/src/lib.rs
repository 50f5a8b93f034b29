//! TLS for every hop of Gatehouse, on rustls with aws-lc-rs.
//!
//! - [`pem`]: certificate chains and private keys from PEM files, with errors that name the file
//!   and say what to do.
//! - [`server`]: the listeners' side. A [`server::ServerTls`] holds the default certificate (from
//!   `--tls-cert`/`--tls-key`, reloaded when the files change) and per-hostname certificates
//!   chosen by SNI; each hostname may ask for a client certificate. Configurations are built once
//!   per change and swapped whole, so a handshake only looks one up.
//! - [`x509`]: the certificate fields policies see (`context.Request.Certificate`).
//! - [`client`]: the outbound side. One trust store (the OS roots, `--trusted-ca` files and the
//!   CA certificates given to a gateway) and client configurations built from it, strict by
//!   default and relaxed per backend only.

pub mod client;
pub mod pem;
pub mod server;
#[cfg(any(test, feature = "test-util"))]
pub mod testca;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;
pub mod x509;

use std::path::PathBuf;
use std::sync::Arc;

pub use rustls;
pub use tokio_rustls;

/// What can go wrong setting TLS up. Every message names the file or the thing and the fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {source}; check the path and its permissions")]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{origin} holds no PEM certificate (-----BEGIN CERTIFICATE-----); give the full chain, leaf first"
    )]
    NoCertificate { origin: String },
    #[error(
        "{origin} holds no PEM private key (PKCS#8, PKCS#1 or SEC1); give the key that matches the certificate"
    )]
    NoKey { origin: String },
    #[error("{origin} is not valid PEM: {reason}")]
    BadPem { origin: String, reason: String },
    #[error("the key in {key} does not fit the certificate in {cert}: {reason}")]
    KeyMismatch {
        cert: String,
        key: String,
        reason: String,
    },
    #[error("cannot build the TLS configuration: {0}")]
    Config(String),
}

/// The crypto provider every configuration uses: aws-lc-rs, TLS 1.3 and 1.2.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The protocol versions Gatehouse speaks: TLS 1.3 and TLS 1.2.
pub static VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];
