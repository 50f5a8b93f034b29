//! The proof a developer portal's Try it call carries to a gateway: the address of the portal
//! user it is made for, signed with a key only the control plane and its gateways hold.
//!
//! Try it calls reach the gateway from the control plane's address, so without this an
//! `ip-filter` that allows that address would let every portal user through. The portal signs
//! `ip`, a timestamp, the method and the request target; the gateway checks the signature and
//! the time (within [`MAX_AGE_SECS`]), takes the signed address as the client's, and strips the
//! header before anything else sees it. Both sides build the signed text here, so they agree.

/// The request header the signature travels in.
pub const HEADER: &str = "x-gatehouse-tryit";

/// How old (or how far in the future) a signature may be, in seconds.
pub const MAX_AGE_SECS: u64 = 60;

/// The bytes signed for a call made for `ip` at `unix_secs`: method and request target
/// (path and query, as sent) included, so a signature cannot be moved to another call.
pub fn signed_text(ip: &str, unix_secs: u64, method: &str, target: &str) -> String {
    format!("gatehouse-tryit-v1\n{ip}\n{unix_secs}\n{method}\n{target}")
}

/// The header's value: `v1;{ip};{unix_secs};{signature}`.
pub fn header_value(ip: &str, unix_secs: u64, signature: &str) -> String {
    format!("v1;{ip};{unix_secs};{signature}")
}

/// The parts of a header value: address, time and signature; `None` when malformed.
pub fn parse_header(value: &str) -> Option<(&str, u64, &str)> {
    let mut parts = value.split(';');
    if parts.next()? != "v1" {
        return None;
    }
    let ip = parts.next()?;
    let secs = parts.next()?.parse().ok()?;
    let signature = parts.next()?;
    if parts.next().is_some() || ip.is_empty() || signature.is_empty() {
        return None;
    }
    Some((ip, secs, signature))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_round_trip() {
        let v = header_value("203.0.113.9", 1_700_000_000, "c2ln");
        assert_eq!(
            parse_header(&v),
            Some(("203.0.113.9", 1_700_000_000, "c2ln"))
        );
        for bad in [
            "",
            "v2;1.2.3.4;1;x",
            "v1;1.2.3.4;soon;x",
            "v1;;1;x",
            "v1;1.2.3.4;1;",
            "v1;a;1;x;y",
        ] {
            assert_eq!(parse_header(bad), None, "{bad}");
        }
        assert_ne!(
            signed_text("1.2.3.4", 1, "GET", "/a"),
            signed_text("1.2.3.4", 1, "GET", "/b")
        );
    }
}
