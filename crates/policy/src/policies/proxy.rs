//! `<proxy url="http://host:port" username="…" password="…"/>`: the backend request of this
//! call goes through an HTTP proxy, as in Azure. The gateway sends a request to an `http://`
//! backend to the proxy in absolute form, and opens a `CONNECT` tunnel through it for an
//! `https://` backend; with a username and password it authenticates with `Proxy-Authorization:
//! Basic`. Inside `send-request` it applies to that request only.
//!
//! The proxy's own URL must be `http://`: the gateway speaks to the proxy in clear, as Azure's
//! does, and TLS to an `https://` backend runs end to end inside the tunnel.

use std::sync::Arc;

use crate::compile::Cx;
use crate::exchange::Exchange;
use crate::run::{Budget, Flow, PolicyError};
use crate::text::PolicyText;
use crate::xml::Element;

/// An HTTP proxy for a request, as the policy gave it (expressions evaluated).
#[derive(Clone, PartialEq, Eq)]
pub struct ProxySettings {
    /// `http://host:port`.
    pub url: String,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// Never prints the password.
impl std::fmt::Debug for ProxySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxySettings")
            .field("url", &self.url)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct Proxy {
    url: PolicyText,
    username: Option<PolicyText>,
    password: Option<PolicyText>,
}

/// Why `url` cannot be a proxy's URL: it must be `http://host[:port]` with nothing after.
fn check_url(url: &str) -> Result<(), String> {
    let url = url.trim();
    let Some(rest) = url
        .get(..7)
        .filter(|s| s.eq_ignore_ascii_case("http://"))
        .map(|_| &url[7..])
    else {
        return Err(format!(
            "the proxy URL '{url}' must be http://host:port (the gateway speaks to the proxy in clear and tunnels https:// backends through it)"
        ));
    };
    let authority = rest.trim_end_matches('/');
    if authority.is_empty()
        || authority.contains(['/', '?', '#', '@'])
        || authority.parse::<http::uri::Authority>().is_err()
    {
        return Err(format!(
            "the proxy URL '{url}' must be http://host:port, without a path or user information (give username and password as attributes)"
        ));
    }
    Ok(())
}

impl Proxy {
    pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Self> {
        cx.allow_attrs(el, &["url", "username", "password"]);
        cx.no_children(el);
        let url_pos = el.attr("url").map_or(el.pos, |a| a.pos);
        let url = cx.req_text(el, "url")?;
        if let Some(u) = url.as_literal()
            && let Err(e) = check_url(u)
        {
            cx.error(url_pos, e);
            return None;
        }
        let username = cx.opt_text(el, "username");
        let password = cx.opt_text(el, "password");
        if username.is_some() != password.is_some() {
            cx.error(
                el.pos,
                "<proxy> takes username and password together, or neither",
            );
            return None;
        }
        Some(Self {
            url,
            username,
            password,
        })
    }

    pub fn texts(&self) -> Vec<&PolicyText> {
        let mut t = vec![&self.url];
        t.extend(self.username.iter());
        t.extend(self.password.iter());
        t
    }

    /// The settings for this request.
    pub fn settings(
        &self,
        ex: &Exchange,
        budget: &mut Budget,
    ) -> Result<Arc<ProxySettings>, PolicyError> {
        let url = self.url.eval(ex, budget)?.trim().to_owned();
        check_url(&url).map_err(|m| PolicyError::runtime("InvalidProxyUrl", m))?;
        let mut text = |t: &Option<PolicyText>| -> Result<Option<String>, PolicyError> {
            Ok(match t {
                Some(t) => Some(t.eval(ex, budget)?.into_owned()),
                None => None,
            })
        };
        let username = text(&self.username)?;
        let password = text(&self.password)?;
        Ok(Arc::new(ProxySettings {
            url,
            username,
            password,
        }))
    }

    pub fn run(&self, ex: &mut Exchange, budget: &mut Budget) -> Result<Flow, PolicyError> {
        ex.proxy = Some(self.settings(ex, budget)?);
        Ok(Flow::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;

    #[test]
    fn the_backend_request_goes_through_the_proxy() {
        let p = pipeline(
            r#"<policies><inbound>
                <proxy url="http://proxy.test:3128" username="@(&quot;u-&quot; + context.Request.Headers.GetValueOrDefault(&quot;X-U&quot;, &quot;&quot;))" password="pwx" />
            </inbound><backend><forward-request/></backend></policies>"#,
        );
        let mut ex = exchange("GET", "/", &[("X-U", "ann")]);
        run(&p, &mut ex);
        let proxy = ex.proxy.unwrap();
        assert_eq!(proxy.url, "http://proxy.test:3128");
        assert_eq!(proxy.username.as_deref(), Some("u-ann"));
        assert_eq!(proxy.password.as_deref(), Some("pwx"));
        assert!(!format!("{proxy:?}").contains("pwx"));
    }

    #[test]
    fn bad_proxies_are_refused_where_they_are_written() {
        for (inner, wanted) in [
            (r#"<proxy />"#, "needs the attribute 'url'"),
            (
                r#"<proxy url="https://p:443" />"#,
                "must be http://host:port",
            ),
            (r#"<proxy url="http://p:3128/path" />"#, "without a path"),
            (r#"<proxy url="http://u:p@p:3128" />"#, "without a path"),
            (r#"<proxy url="http://p:3128" username="u" />"#, "together"),
            (
                r#"<proxy url="http://p:3128" port="1" />"#,
                "no attribute 'port'",
            ),
        ] {
            let errors = errors_inbound(inner);
            assert!(
                errors.iter().any(|e| e.contains(wanted)),
                "{inner}: {errors:?}"
            );
        }
        // Where: the attribute's line and column.
        let errors = errors_inbound("\n  <proxy\n     url=\"ftp://x\" />");
        assert!(errors[0].starts_with("3:6:"), "{errors:?}");
        // Only inbound, as in Azure.
        let errors = errors_in("outbound", r#"<proxy url="http://p:1" />"#);
        assert!(
            errors[0].contains("not allowed in <outbound>"),
            "{errors:?}"
        );
    }
}
