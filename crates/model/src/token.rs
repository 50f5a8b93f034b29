//! Gateway tokens: `GatewayKey <gateway id>&<expiry yyyyMMddHHmm, UTC>&<signature>`, as Azure
//! API Management writes them. The signature is the base64 HMAC-SHA512 of
//! `"<gateway id>\n<expiry>"` under one of the gateway's two keys; regenerating that key
//! revokes every token it signed. This module only parses and formats; signing and verifying
//! belong to whoever holds the keys.

use std::fmt;

pub const SCHEME: &str = "GatewayKey";

/// A token's parts, as presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayToken {
    pub gateway_id: String,
    /// `yyyyMMddHHmm`, as written in the token and covered by the signature.
    pub expiry_text: String,
    /// The expiry as (year, month, day, hour, minute), UTC.
    pub expiry: (i32, u8, u8, u8, u8),
    pub signature: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenError(pub &'static str);

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for TokenError {}

impl GatewayToken {
    /// Parses a token with or without its `GatewayKey ` prefix.
    pub fn parse(text: &str) -> Result<Self, TokenError> {
        let t = text.trim();
        let t = t.strip_prefix(SCHEME).map(str::trim_start).unwrap_or(t);
        let mut parts = t.splitn(3, '&');
        let (Some(id), Some(expiry), Some(signature)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError(
                "a gateway token has the form 'GatewayKey <id>&<yyyyMMddHHmm>&<signature>'",
            ));
        };
        if id.is_empty() || signature.is_empty() {
            return Err(TokenError("the token's gateway id or signature is empty"));
        }
        let expiry_parsed = parse_expiry(expiry)
            .ok_or(TokenError("the token's expiry is not a yyyyMMddHHmm time"))?;
        Ok(Self {
            gateway_id: id.to_owned(),
            expiry_text: expiry.to_owned(),
            expiry: expiry_parsed,
            signature: signature.to_owned(),
        })
    }

    /// What the signature covers.
    pub fn signed_text(gateway_id: &str, expiry_text: &str) -> String {
        format!("{gateway_id}\n{expiry_text}")
    }

    pub fn format(gateway_id: &str, expiry_text: &str, signature: &str) -> String {
        format!("{SCHEME} {gateway_id}&{expiry_text}&{signature}")
    }

    /// The expiry as an RFC 3339 UTC timestamp.
    pub fn expiry_rfc3339(&self) -> String {
        let (y, mo, d, h, mi) = self.expiry;
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:00Z")
    }
}

fn parse_expiry(text: &str) -> Option<(i32, u8, u8, u8, u8)> {
    if text.len() != 12 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| text.get(r).and_then(|s| s.parse::<u32>().ok());
    let year = i32::try_from(n(0..4)?).ok()?;
    let month = u8::try_from(n(4..6)?).ok()?;
    let day = u8::try_from(n(6..8)?).ok()?;
    let hour = u8::try_from(n(8..10)?).ok()?;
    let minute = u8::try_from(n(10..12)?).ok()?;
    let valid = (1..=12).contains(&month) && (1..=31).contains(&day) && hour < 24 && minute < 60;
    valid.then_some((year, month, day, hour, minute))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever a client sends as a token, parsing returns (the `fuzz/` target
        /// `gateway_token` runs the same calls for longer).
        #[test]
        fn any_text_is_parsed_or_refused(text in any::<String>()) {
            let _ = GatewayToken::parse(&text);
        }

        #[test]
        fn bytes_as_text_are_parsed_or_refused(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = GatewayToken::parse(&String::from_utf8_lossy(&bytes));
        }

        /// Near-misses of the format; what parses formats back to the same token.
        #[test]
        fn accepted_tokens_round_trip(
            scheme in prop::option::of("GatewayKey ?"),
            id in "[^&]{0,12}",
            expiry in "[0-9]{10,14}",
            signature in ".{0,24}",
        ) {
            let text = format!("{}{id}&{expiry}&{signature}", scheme.unwrap_or_default());
            if let Ok(t) = GatewayToken::parse(&text) {
                let again = GatewayToken::format(&t.gateway_id, &t.expiry_text, &t.signature);
                prop_assert_eq!(GatewayToken::parse(&again), Ok(t));
            }
        }
    }

    #[test]
    fn round_trip() {
        let text = GatewayToken::format("edge", "202612261530", "c2ln");
        assert_eq!(text, "GatewayKey edge&202612261530&c2ln");
        let t = GatewayToken::parse(&text).unwrap();
        assert_eq!(t.gateway_id, "edge");
        assert_eq!(t.expiry, (2026, 12, 26, 15, 30));
        assert_eq!(t.signature, "c2ln");
        assert_eq!(t.expiry_rfc3339(), "2026-12-26T15:30:00Z");
        // Without the scheme, and with '&' inside the signature's base64 impossible but '=' fine.
        assert!(GatewayToken::parse("edge&202612261530&ab==").is_ok());
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "GatewayKey",
            "a&b",
            "a&2026&sig",
            "&202612261530&s",
            "a&202613261530&s",
            "a&202612261530&",
        ] {
            assert!(GatewayToken::parse(bad).is_err(), "{bad}");
        }
    }
}
