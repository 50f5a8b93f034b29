//! `<authentication-basic username="…" password="…"/>`: authenticates to the backend with HTTP
//! Basic authentication, replacing the request's `Authorization` header with
//! `Basic base64(username:password)`. Credentials usually come from `{{named values}}`; when both
//! are literal the header is built once, when the policy is compiled. The header value is marked
//! sensitive, and neither credential appears in a message.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderValue;
use http::header::AUTHORIZATION;

use crate::compile::Cx;
use crate::exchange::Exchange;
use crate::run::{Budget, Flow, PolicyError};
use crate::text::PolicyText;
use crate::xml::Element;

#[derive(Clone)]
pub struct AuthenticationBasic {
    username: PolicyText,
    password: PolicyText,
    /// The header, when both credentials are literal.
    fixed: Option<HeaderValue>,
}

impl std::fmt::Debug for AuthenticationBasic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthenticationBasic")
            .finish_non_exhaustive()
    }
}

fn header(username: &str, password: &str) -> Result<HeaderValue, PolicyError> {
    if username.contains(':') {
        return Err(PolicyError::runtime(
            "ExpressionValueEvaluationFailure",
            "the Basic username must not contain ':'",
        ));
    }
    let encoded = STANDARD.encode(format!("{username}:{password}"));
    let mut v = HeaderValue::from_str(&format!("Basic {encoded}")).map_err(|_| {
        PolicyError::runtime(
            "ExpressionValueEvaluationFailure",
            "the Basic credentials do not make a valid header",
        )
    })?;
    v.set_sensitive(true);
    Ok(v)
}

impl AuthenticationBasic {
    pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Self> {
        cx.allow_attrs(el, &["username", "password"]);
        cx.no_children(el);
        let username = cx.req_text(el, "username");
        let password = cx.req_text(el, "password");
        let (username, password) = (username?, password?);
        let fixed = match (username.as_literal(), password.as_literal()) {
            (Some(u), Some(p)) => match header(u, p) {
                Ok(h) => Some(h),
                Err(e) => {
                    let pos = el.attr("username").map_or(el.pos, |a| a.pos);
                    cx.error(pos, e.message);
                    return None;
                }
            },
            _ => None,
        };
        Some(Self {
            username,
            password,
            fixed,
        })
    }

    pub fn texts(&self) -> Vec<&PolicyText> {
        vec![&self.username, &self.password]
    }

    pub fn run(&self, ex: &mut Exchange, budget: &mut Budget) -> Result<Flow, PolicyError> {
        let value = match &self.fixed {
            Some(v) => v.clone(),
            None => {
                let u = self.username.eval(ex, budget)?;
                let p = self.password.eval(ex, budget)?;
                header(&u, &p)?
            }
        };
        ex.request.headers.insert(AUTHORIZATION, value);
        Ok(Flow::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;

    #[test]
    fn sets_the_basic_authorization_header_replacing_the_callers() {
        let p = pipeline(
            r#"<policies><inbound>
                <authentication-basic username="Aladdin" password="open sesame" />
            </inbound><backend><forward-request/></backend></policies>"#,
        );
        let mut ex = exchange("GET", "/", &[("Authorization", "Bearer caller-token")]);
        let sent = run(&p, &mut ex).forwarded.unwrap();
        // RFC 7617's example.
        assert_eq!(
            all(&sent.headers, "authorization"),
            ["Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="]
        );
        assert!(sent.headers["authorization"].is_sensitive());
    }

    #[test]
    fn credentials_may_be_expressions_and_utf8() {
        let p = pipeline(
            r#"<policies><inbound>
                <authentication-basic username="@(context.Request.Headers.GetValueOrDefault(&quot;X-User&quot;, &quot;&quot;))" password="pässword" />
            </inbound><backend><forward-request/></backend></policies>"#,
        );
        let mut ex = exchange("GET", "/", &[("X-User", "bob")]);
        let sent = run(&p, &mut ex).forwarded.unwrap();
        assert_eq!(
            all(&sent.headers, "authorization"),
            ["Basic Ym9iOnDDpHNzd29yZA=="]
        );
        // A computed username with ':' cannot be sent: the request fails into on-error.
        let mut ex = exchange("GET", "/", &[("X-User", "a:b")]);
        assert!(run(&p, &mut ex).forwarded.is_none());
        assert_eq!(ex.last_error.unwrap().source, "authentication-basic");
    }

    #[test]
    fn attributes_are_checked() {
        let e = errors_inbound(r#"<authentication-basic username="u" />"#);
        assert!(e[0].contains("needs the attribute 'password'"), "{e:?}");
        let e = errors_inbound(r#"<authentication-basic username="a:b" password="p" />"#);
        assert!(e[0].contains("must not contain ':'"), "{e:?}");
        let e = errors_inbound(r#"<authentication-basic username="u" password="p" realm="x" />"#);
        assert!(e[0].contains("has no attribute 'realm'"), "{e:?}");
        let e = crate::policies::testkit::errors_in(
            "outbound",
            r#"<authentication-basic username="u" password="p" />"#,
        );
        assert!(e[0].contains("not allowed in <outbound>"), "{e:?}");
    }
}
