//! Who the client is when proxies stand in front of the gateway.
//!
//! `X-Forwarded-For` is the client's to write, so the gateway believes it only when the
//! connection comes from a proxy the operator named (`--trusted-proxies`). Then the client is
//! the right-most address of the chain that is not itself a trusted proxy, as nginx's
//! `real_ip_recursive` and Kong's `trusted_ips` take it; otherwise the client is the peer.

use std::net::IpAddr;
use std::sync::Arc;

/// An address block such as `10.0.0.0/8` or `::1/128`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `ADDR/PREFIX`, or a bare address (a block of one).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bad = || {
            format!(
                "'{text}' is not an address block; write it like 10.0.0.0/8, 127.0.0.1 or ::1/128"
            )
        };
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let network: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(Self { network, prefix })
    }

    /// Parses a comma-separated list; empty entries are skipped.
    pub fn parse_list(text: &str) -> Result<Arc<[Cidr]>, String> {
        text.split(',')
            .filter(|t| !t.trim().is_empty())
            .map(Self::parse)
            .collect()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 peer on a dual-stack socket arrives as ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// Whether `ip` is within any of `trusted`.
pub fn is_trusted(trusted: &[Cidr], ip: IpAddr) -> bool {
    trusted.iter().any(|c| c.contains(ip))
}

/// The client's address from a trusted peer's `X-Forwarded-For` values: the right-most entry
/// that is not a trusted proxy (or the left-most, when all are). `None` when the header holds
/// no address, so the peer stays the client.
pub fn client_from_chain<'a>(
    trusted: &[Cidr],
    values: impl DoubleEndedIterator<Item = &'a str>,
) -> Option<IpAddr> {
    let mut last = None;
    for value in values.rev() {
        for entry in value.rsplit(',') {
            let Some(ip) = parse_entry(entry) else {
                // A chain with garbage in it cannot be followed past that point.
                return last;
            };
            if !is_trusted(trusted, ip) {
                return Some(ip);
            }
            last = Some(ip);
        }
    }
    last
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let e = entry.trim();
    if let Ok(ip) = e.parse() {
        return Some(ip);
    }
    if let Some(rest) = e.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    e.rsplit_once(':')?
        .0
        .parse::<std::net::Ipv4Addr>()
        .ok()
        .map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn blocks_parse_and_match() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains(ip("10.1.200.3")));
        assert!(!c.contains(ip("10.2.0.1")));
        assert!(Cidr::parse("127.0.0.1").unwrap().contains(ip("127.0.0.1")));
        assert!(
            Cidr::parse("127.0.0.1")
                .unwrap()
                .contains(ip("::ffff:127.0.0.1"))
        );
        assert!(
            !Cidr::parse("127.0.0.1/32")
                .unwrap()
                .contains(ip("127.0.0.2"))
        );
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(Cidr::parse("fd00::/8").unwrap().contains(ip("fd12::1")));
        assert!(!Cidr::parse("fd00::/8").unwrap().contains(ip("10.0.0.1")));
        for bad in ["10.0.0.0/33", "nope", "1.2.3.4/x", "::1/129", ""] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Cidr::parse_list("").unwrap().len(), 0);
        assert_eq!(Cidr::parse_list("10.0.0.0/8, ::1").unwrap().len(), 2);
        assert!(Cidr::parse_list("10.0.0.0/8,bad").is_err());
    }

    #[test]
    fn the_client_is_the_right_most_untrusted_entry() {
        let trusted = Cidr::parse_list("10.0.0.0/8,127.0.0.1").unwrap();
        let chain = |v: &[&str]| client_from_chain(&trusted, v.iter().copied());
        assert_eq!(
            chain(&["203.0.113.9, 198.51.100.2, 10.0.0.5"]),
            Some(ip("198.51.100.2"))
        );
        assert_eq!(chain(&["203.0.113.9", "10.0.0.5"]), Some(ip("203.0.113.9")));
        assert_eq!(chain(&["10.0.0.7, 10.0.0.5"]), Some(ip("10.0.0.7")));
        assert_eq!(chain(&["garbage, 10.0.0.5"]), Some(ip("10.0.0.5")));
        assert_eq!(chain(&["198.51.100.2:4711"]), Some(ip("198.51.100.2")));
        assert_eq!(chain(&["[2001:db8::1]:4711"]), Some(ip("2001:db8::1")));
        assert_eq!(chain(&[""]), None);
        assert_eq!(chain(&[]), None);
    }
}
