//! `<find-and-replace from="…" to="…"/>`: replaces every occurrence of a string in the body of the
//! request (inbound, backend) or the response (outbound, on-error). The pipeline buffers that
//! body first ([`FindAndReplace::on_response`] tells it which). `to=""` removes `from`. The body
//! is treated as bytes, so a body that is not UTF-8 text is changed only where `from` matches.

use bytes::Bytes;

use super::on_response;
use crate::compile::Cx;
use crate::exchange::Exchange;
use crate::run::{Budget, Flow, PolicyError};
use crate::text::PolicyText;
use crate::xml::Element;

#[derive(Debug, Clone)]
pub struct FindAndReplace {
    from: PolicyText,
    to: PolicyText,
    /// Works on the response (outbound, on-error) rather than the request.
    pub response: bool,
}

/// Replaces every non-overlapping `from` in `body`, left to right; `None` when there is none.
pub(crate) fn replace_all(body: &[u8], from: &[u8], to: &[u8]) -> Option<Vec<u8>> {
    if from.is_empty() || body.len() < from.len() {
        return None;
    }
    let mut out: Option<Vec<u8>> = None;
    let mut last = 0;
    let mut i = 0;
    while i + from.len() <= body.len() {
        if &body[i..i + from.len()] == from {
            let buf = out.get_or_insert_with(|| Vec::with_capacity(body.len()));
            buf.extend_from_slice(&body[last..i]);
            buf.extend_from_slice(to);
            i += from.len();
            last = i;
        } else {
            i += 1;
        }
    }
    let mut buf = out?;
    buf.extend_from_slice(&body[last..]);
    Some(buf)
}

impl FindAndReplace {
    pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Self> {
        cx.allow_attrs(el, &["from", "to"]);
        cx.no_children(el);
        let from = cx.req_text(el, "from");
        let to = cx.req_text(el, "to");
        let (from, to) = (from?, to?);
        if from.as_literal() == Some("") {
            let pos = el.attr("from").map_or(el.pos, |a| a.pos);
            cx.error(pos, "'from' must not be empty");
            return None;
        }
        Some(Self {
            from,
            to,
            response: on_response(cx.section),
        })
    }

    pub fn texts(&self) -> Vec<&PolicyText> {
        vec![&self.from, &self.to]
    }

    pub fn run(&self, ex: &mut Exchange, budget: &mut Budget) -> Result<Flow, PolicyError> {
        let from = self.from.eval(ex, budget)?.into_owned();
        let to = self.to.eval(ex, budget)?.into_owned();
        let (body, headers) = if self.response {
            match ex.response.as_mut() {
                Some(r) => (&mut r.body, &mut r.headers),
                None => return Ok(Flow::Continue),
            }
        } else {
            (&mut ex.request.body, &mut ex.request.headers)
        };
        let replaced = body
            .as_ref()
            .and_then(|current| replace_all(current, from.as_bytes(), to.as_bytes()));
        if let Some(replaced) = replaced {
            *body = Some(Bytes::from(replaced));
            headers.remove(http::header::CONTENT_LENGTH);
        }
        Ok(Flow::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::replace_all;

    #[test]
    fn replacement_is_global_left_to_right_and_non_overlapping() {
        let r = |b: &str, f: &str, t: &str| {
            replace_all(b.as_bytes(), f.as_bytes(), t.as_bytes())
                .map(|v| String::from_utf8(v).unwrap())
        };
        assert_eq!(
            r("a notebook, two notebooks", "notebook", "laptop").as_deref(),
            Some("a laptop, two laptops")
        );
        assert_eq!(r("aaaa", "aa", "b").as_deref(), Some("bb"));
        assert_eq!(r("aaa", "aa", "b").as_deref(), Some("ba"));
        assert_eq!(r("remove-me-now", "-me", "").as_deref(), Some("remove-now"));
        assert_eq!(r("abc", "x", "y"), None);
        assert_eq!(r("ab", "abc", "y"), None);
        assert_eq!(r("", "a", "y"), None);
        // The replacement is not searched again.
        assert_eq!(r("ab", "a", "aa").as_deref(), Some("aab"));
    }

    #[test]
    fn changes_the_request_body_inbound_and_the_response_body_outbound() {
        let p = pipeline(
            r#"<policies>
                <inbound><find-and-replace from="notebook" to="laptop" /></inbound>
                <backend><forward-request/></backend>
                <outbound><find-and-replace from="ok" to="@(&quot;fine &quot; + context.Request.Method)" /></outbound>
            </policies>"#,
        );
        assert!(p.reads_request_body);
        assert!(p.reads_response_body);
        let mut ex = exchange("POST", "/", &[("Content-Length", "27")]);
        ex.request.body = Some(bytes::Bytes::from_static(
            b"{\"item\": \"notebook\"} notebook",
        ));
        let sent = run(&p, &mut ex).forwarded.unwrap();
        assert_eq!(sent.body.unwrap(), "{\"item\": \"laptop\"} laptop");
        assert!(!sent.headers.contains_key("content-length"));
        assert_eq!(ex.response.unwrap().body.unwrap(), "fine POST");
    }

    #[test]
    fn a_response_side_policy_does_not_buffer_the_request() {
        let p = pipeline(
            r#"<policies><backend><forward-request/></backend>
                <outbound><choose><when condition="@(true)"><find-and-replace from="a" to="b" /></when></choose></outbound>
            </policies>"#,
        );
        assert!(!p.reads_request_body);
        assert!(
            p.reads_response_body,
            "nested in choose, it still needs the response body"
        );
    }

    #[test]
    fn from_is_required_and_not_empty() {
        let e = errors_inbound(r#"<find-and-replace to="x" />"#);
        assert!(e[0].contains("needs the attribute 'from'"), "{e:?}");
        let e = errors_inbound(r#"<find-and-replace from="" to="x" />"#);
        assert!(e[0].contains("'from' must not be empty"), "{e:?}");
        let e = errors_inbound(r#"<find-and-replace from="a" to="b">x</find-and-replace>"#);
        assert!(e[0].contains("takes no content"), "{e:?}");
    }
}
