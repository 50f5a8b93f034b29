//! `<ip-filter action="allow|forbid"><address>1.2.3.4</address><address-range from="…" to="…"/>`:
//! lets through (or refuses) callers by IP address; others get 403.

use std::net::IpAddr;

use http::StatusCode;

use super::check_header::json_error;
use crate::compile::Cx;
use crate::exchange::Exchange;
use crate::run::Flow;
use crate::xml::Element;

#[derive(Debug, Clone)]
pub struct IpFilter {
    pub allow: bool,
    pub ranges: Vec<(IpAddr, IpAddr)>,
}

fn key(ip: IpAddr) -> (u8, u128) {
    match ip {
        IpAddr::V4(v4) => (4, u128::from(u32::from(v4))),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => (4, u128::from(u32::from(v4))),
            None => (6, u128::from(v6)),
        },
    }
}

impl IpFilter {
    pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Self> {
        cx.allow_attrs(el, &["action"]);
        cx.allow_children(el, &["address", "address-range"]);
        if el.attr("action").is_none() {
            cx.error(
                el.pos,
                "<ip-filter> needs action=\"allow\" or action=\"forbid\"",
            );
            return None;
        }
        let allow = cx.choice(el, "action", &["allow", "forbid"], "allow") == "allow";
        let mut ranges = Vec::new();
        let mut ok = true;
        for child in el.elements() {
            let mut parse = |text: &str, pos| match text.trim().parse::<IpAddr>() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    cx.error(pos, format!("'{}' is not an IP address", text.trim()));
                    None
                }
            };
            match child.name.as_str() {
                "address" => {
                    let Some((t, pos, _)) = child.text() else {
                        cx.error(child.pos, "<address> needs an IP address");
                        ok = false;
                        continue;
                    };
                    match parse(&t, pos) {
                        Some(ip) => ranges.push((ip, ip)),
                        None => ok = false,
                    }
                }
                "address-range" => {
                    let (Some(from), Some(to)) = (child.attr("from"), child.attr("to")) else {
                        cx.error(child.pos, "<address-range> needs from and to");
                        ok = false;
                        continue;
                    };
                    let (from_pos, to_pos) = (from.pos, to.pos);
                    match (parse(&from.value, from_pos), parse(&to.value, to_pos)) {
                        (Some(a), Some(b)) if key(a).0 == key(b).0 && key(a) <= key(b) => {
                            ranges.push((a, b))
                        }
                        (Some(_), Some(_)) => {
                            cx.error(child.pos, "<address-range> must go from a lower to a higher address of one family");
                            ok = false;
                        }
                        _ => ok = false,
                    }
                }
                _ => {}
            }
        }
        ok.then_some(Self { allow, ranges })
    }

    pub fn matches(&self, ip: IpAddr) -> bool {
        let k = key(ip);
        self.ranges
            .iter()
            .any(|(a, b)| key(*a) <= k && k <= key(*b))
    }

    pub fn run(&self, ex: &mut Exchange) -> Flow {
        let ip = ex.info.ip.parse::<IpAddr>().ok();
        let listed = ip.is_some_and(|ip| self.matches(ip));
        if listed == self.allow {
            return Flow::Continue;
        }
        ex.response = Some(json_error(StatusCode::FORBIDDEN, "Forbidden"));
        ex.refused = Some(("ip-filter", "CallerIpNotAllowed"));
        Flow::Return
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;

    #[test]
    fn allow_and_forbid() {
        let allow = pipeline(
            r#"<policies><inbound><ip-filter action="allow">
                <address>10.0.0.1</address><address-range from="192.168.1.0" to="192.168.1.255"/><address>::1</address>
            </ip-filter></inbound><backend><forward-request/></backend></policies>"#,
        );
        for (ip, ok) in [
            ("10.0.0.1", true),
            ("192.168.1.77", true),
            ("192.168.2.1", false),
            ("::1", true),
            ("::ffff:10.0.0.1", true),
            ("8.8.8.8", false),
        ] {
            let mut ex = exchange("GET", "/", &[]);
            ex.info.ip = ip.into();
            let io = run(&allow, &mut ex);
            assert_eq!(io.forwarded.is_some(), ok, "{ip}");
            if !ok {
                assert_eq!(ex.response.unwrap().status, 403);
            }
        }
        let forbid = pipeline(
            r#"<policies><inbound><ip-filter action="forbid"><address>10.0.0.1</address></ip-filter></inbound>
               <backend><forward-request/></backend></policies>"#,
        );
        let mut ex = exchange("GET", "/", &[]);
        ex.info.ip = "10.0.0.1".into();
        assert!(run(&forbid, &mut ex).forwarded.is_none());
        let errors =
            errors_inbound(r#"<ip-filter action="allow"><address>999.1.1.1</address></ip-filter>"#);
        assert!(
            errors.iter().any(|e| e.contains("not an IP address")),
            "{errors:?}"
        );
    }
}
