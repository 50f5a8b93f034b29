//! Backend requests through an HTTP forward proxy (the `proxy` policy): a request to a plain
//! `http://` backend goes to the proxy with its target in absolute form
//! (`GET http://backend/path HTTP/1.1`), and a connection to an `https://` backend (or an h2c
//! one) is a `CONNECT` tunnel through the proxy, with TLS end to end inside it. With
//! credentials, both carry `Proxy-Authorization: Basic …`.
//!
//! A [`Target`](super::Target) through a proxy files its connections under a key of its own
//! (the proxy and a digest of its credentials before the backend's key), so they are never
//! lent to a direct request to the same backend, nor to another proxy's.

use std::fmt::Write as _;
use std::time::Duration;

use base64::Engine as _;
use http::HeaderValue;
use http::uri::Authority;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::UpstreamError;

/// The most bytes of a proxy's answer to `CONNECT` read before giving up on it.
const MAX_CONNECT_ANSWER: usize = 16 * 1024;

/// An HTTP proxy, ready to use.
pub struct ForwardProxy {
    pub(super) authority: Authority,
    pub(super) port: u16,
    /// `Basic base64(user:password)`, marked sensitive.
    pub(super) authorization: Option<HeaderValue>,
    /// What pooled connections through it are filed under, before the backend's key.
    pub(super) tag: Box<str>,
}

/// Never prints the credentials.
impl std::fmt::Debug for ForwardProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardProxy")
            .field("authority", &self.authority)
            .field("authenticated", &self.authorization.is_some())
            .finish_non_exhaustive()
    }
}

impl ForwardProxy {
    /// The proxy at `url` (`http://host:port`), authenticating as `username` with `password`
    /// when both are given.
    pub fn new(url: &str, username: Option<&str>, password: Option<&str>) -> Result<Self, String> {
        let url = url.trim();
        let rest = url
            .get(..7)
            .filter(|s| s.eq_ignore_ascii_case("http://"))
            .map(|_| &url[7..])
            .ok_or_else(|| format!("the proxy URL '{url}' must start with http://"))?;
        let authority: Authority = rest
            .trim_end_matches('/')
            .parse()
            .map_err(|_| format!("the proxy URL '{url}' must be http://host:port"))?;
        if authority.as_str().contains('@') {
            return Err(format!(
                "the proxy URL '{url}' must not carry user information; give username and password"
            ));
        }
        let port = authority.port_u16().unwrap_or(80);
        let (authorization, secret) = match (username, password) {
            (Some(user), Some(password)) => {
                let encoded =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                let mut value = HeaderValue::from_str(&format!("Basic {encoded}"))
                    .map_err(|_| "the proxy credentials cannot be sent in a header".to_owned())?;
                value.set_sensitive(true);
                let digest = aws_lc_rs::digest::digest(
                    &aws_lc_rs::digest::SHA256,
                    format!("{user}\0{password}").as_bytes(),
                );
                let mut hex = String::with_capacity(16);
                for b in &digest.as_ref()[..8] {
                    let _ = write!(hex, "{b:02x}");
                }
                (Some(value), hex)
            }
            _ => (None, String::new()),
        };
        let tag = format!("via={authority}/{secret}|");
        Ok(Self {
            authority,
            port,
            authorization,
            tag: tag.into(),
        })
    }

    /// Opens a tunnel to `target` (`host:port`) on `stream`, a connection to this proxy:
    /// `CONNECT`, then a 2xx answer, within `limit`. The stream then carries the backend's
    /// bytes.
    pub(super) async fn tunnel(
        &self,
        stream: &mut TcpStream,
        target: &Authority,
        port: u16,
        limit: Duration,
    ) -> Result<(), UpstreamError> {
        let failed = |reason: String| UpstreamError::Proxy {
            proxy: self.authority.clone(),
            authority: target.clone(),
            reason,
        };
        let host = target.host();
        let mut head = format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n");
        if let Some(auth) = &self.authorization {
            head.push_str("Proxy-Authorization: ");
            head.push_str(auth.to_str().unwrap_or_default());
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        let exchange = async {
            stream
                .write_all(head.as_bytes())
                .await
                .map_err(|e| failed(format!("cannot send CONNECT: {e}")))?;
            // The proxy says nothing more until the client speaks through the tunnel: what is
            // read here is its answer's head alone.
            let mut answer = Vec::with_capacity(256);
            let mut buf = [0u8; 1024];
            while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
                if answer.len() > MAX_CONNECT_ANSWER {
                    return Err(failed("its answer to CONNECT is too long".into()));
                }
                let n = stream
                    .read(&mut buf)
                    .await
                    .map_err(|e| failed(format!("no answer to CONNECT: {e}")))?;
                if n == 0 {
                    return Err(failed(
                        "it closed the connection instead of answering CONNECT".into(),
                    ));
                }
                answer.extend_from_slice(&buf[..n]);
            }
            let end = answer
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map_or(answer.len(), |p| p + 4);
            let line = answer.split(|b| *b == b'\n').next().unwrap_or_default();
            let line = String::from_utf8_lossy(line).trim().to_owned();
            let status = line.split_whitespace().nth(1).unwrap_or_default();
            if !(line.starts_with("HTTP/1.") && status.len() == 3 && status.starts_with('2')) {
                return Err(failed(format!("it answered CONNECT with '{line}'")));
            }
            if end != answer.len() {
                return Err(failed("it sent bytes after its answer to CONNECT".into()));
            }
            Ok(())
        };
        tokio::time::timeout(limit, exchange)
            .await
            .map_err(|_| failed(format!("no answer to CONNECT within {limit:?}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxies_parse_and_credentials_stay_out_of_sight() {
        let p = ForwardProxy::new("http://proxy.test:3128/", Some("ann"), Some("s3cret")).unwrap();
        assert_eq!(p.authority.as_str(), "proxy.test:3128");
        assert_eq!(p.port, 3128);
        let auth = p.authorization.as_ref().unwrap();
        assert_eq!(auth.to_str().unwrap(), "Basic YW5uOnMzY3JldA==");
        assert!(auth.is_sensitive());
        assert!(!format!("{p:?}").contains("s3cret") && !p.tag.contains("s3cret"));
        // Other credentials, another tag; none, no header.
        let other = ForwardProxy::new("http://proxy.test:3128", Some("bob"), Some("x")).unwrap();
        assert_ne!(p.tag, other.tag);
        let open = ForwardProxy::new("http://proxy.test", None, None).unwrap();
        assert_eq!(open.port, 80);
        assert!(open.authorization.is_none());
        for bad in ["https://p:1", "p:1", "http://u:p@p:1", "http://"] {
            assert!(ForwardProxy::new(bad, None, None).is_err(), "{bad}");
        }
    }
}
