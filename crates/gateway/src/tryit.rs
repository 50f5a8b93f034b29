//! The developer portal's Try it calls: they arrive from the control plane's address, with the
//! portal user's address signed into a header (`gatehouse_model::tryit`). A valid signature
//! makes that address the client's (`context.Request.IpAddress`, `ip-filter`, logs); anything
//! else is ignored. The proxy strips the header either way, so backends never see it.

use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine;
use gatehouse_model::tryit;

/// The signing key from the snapshot, ready to verify with.
#[derive(Clone)]
pub struct TryItKey(Arc<aws_lc_rs::hmac::Key>);

impl std::fmt::Debug for TryItKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TryItKey(..)")
    }
}

impl TryItKey {
    /// The key of a snapshot's `tryitKey` (base64 of 32 bytes).
    pub fn from_snapshot(text: &str) -> Result<Self, String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| "tryitKey is not base64".to_owned())?;
        if bytes.len() != 32 {
            return Err("tryitKey must be 32 bytes".to_owned());
        }
        Ok(Self(Arc::new(aws_lc_rs::hmac::Key::new(
            aws_lc_rs::hmac::HMAC_SHA256,
            &bytes,
        ))))
    }

    /// The user address a Try it header vouches for, if its signature holds for this call
    /// (`method` and `target`, the request's path and query as received) and it was made
    /// within [`tryit::MAX_AGE_SECS`] of `now_secs`.
    pub fn verify(
        &self,
        value: &[u8],
        method: &str,
        target: &str,
        now_secs: u64,
    ) -> Option<IpAddr> {
        let value = std::str::from_utf8(value).ok()?;
        let (ip, secs, signature) = tryit::parse_header(value)?;
        if secs.abs_diff(now_secs) > tryit::MAX_AGE_SECS {
            return None;
        }
        let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(signature)
            .ok()?;
        let text = tryit::signed_text(ip, secs, method, target);
        aws_lc_rs::hmac::verify(&self.0, text.as_bytes(), &signature).ok()?;
        ip.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(key: &[u8; 32], ip: &str, secs: u64, method: &str, target: &str) -> String {
        let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
        let tag =
            aws_lc_rs::hmac::sign(&k, tryit::signed_text(ip, secs, method, target).as_bytes());
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref());
        tryit::header_value(ip, secs, &sig)
    }

    #[test]
    fn only_a_fresh_signature_for_this_call_counts() {
        let raw = [7u8; 32];
        let key = TryItKey::from_snapshot(&base64::engine::general_purpose::STANDARD.encode(raw))
            .unwrap();
        let now = 1_700_000_000;
        let good = sign(&raw, "203.0.113.9", now, "GET", "/shop/items?a=1");
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(
            key.verify(good.as_bytes(), "GET", "/shop/items?a=1", now + 30),
            Some(ip)
        );
        // Another call, too old, another key, or tampered with.
        assert_eq!(
            key.verify(good.as_bytes(), "POST", "/shop/items?a=1", now),
            None
        );
        assert_eq!(key.verify(good.as_bytes(), "GET", "/shop/other", now), None);
        assert_eq!(
            key.verify(good.as_bytes(), "GET", "/shop/items?a=1", now + 61),
            None
        );
        let other = sign(&[8u8; 32], "203.0.113.9", now, "GET", "/shop/items?a=1");
        assert_eq!(
            key.verify(other.as_bytes(), "GET", "/shop/items?a=1", now),
            None
        );
        let forged = good.replace("203.0.113.9", "10.0.0.1");
        assert_eq!(
            key.verify(forged.as_bytes(), "GET", "/shop/items?a=1", now),
            None
        );
        assert_eq!(
            key.verify(b"v1;10.0.0.1;1700000000;AAAA", "GET", "/", now),
            None
        );
        assert!(TryItKey::from_snapshot("short").is_err());
    }
}
