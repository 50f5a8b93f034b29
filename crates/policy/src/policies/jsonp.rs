//! `<jsonp callback-parameter-name="cb"/>` (outbound): when the request names a callback in the
//! query (`?cb=handle`), the JSON response is answered as JSONP, `handle(<json>);`, with
//! `Content-Type: application/javascript`; without it the response is left as it is.
//!
//! A callback is written into a script the browser runs, so only a JavaScript name
//! (`handle`, `app.data.handle`, letters, digits, `_` and `$`, at most 128 characters) is used;
//! any other value leaves the response unwrapped rather than reflecting it into script. Only a
//! JSON response (by its `Content-Type`, or one without a type whose body parses as JSON) is
//! wrapped.

use bytes::{BufMut, Bytes, BytesMut};
use http::HeaderValue;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};

use crate::compile::Cx;
use crate::exchange::Exchange;
use crate::run::{Flow, PolicyError};
use crate::xml::Element;

/// The longest callback name used.
const MAX_CALLBACK: usize = 128;

#[derive(Debug, Clone)]
pub struct Jsonp {
    parameter: String,
}

impl Jsonp {
    pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Self> {
        cx.allow_attrs(el, &["callback-parameter-name"]);
        cx.no_children(el);
        let parameter = cx
            .req_literal(el, "callback-parameter-name")?
            .trim()
            .to_owned();
        if parameter.is_empty() {
            let pos = el.attr("callback-parameter-name").map_or(el.pos, |a| a.pos);
            cx.error(pos, "'callback-parameter-name' must not be empty");
            return None;
        }
        Some(Self { parameter })
    }

    pub fn run(&self, ex: &mut Exchange) -> Result<Flow, PolicyError> {
        let Some(callback) = callback(ex.request.query.as_deref(), &self.parameter) else {
            return Ok(Flow::Continue);
        };
        let Some(response) = ex.response.as_mut() else {
            return Ok(Flow::Continue);
        };
        let body = response.body.clone().unwrap_or_default();
        let json = match response
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
        {
            Some(t) => is_json_type(t),
            None => serde_json::from_slice::<serde_json::Value>(&body).is_ok(),
        };
        if !json {
            return Ok(Flow::Continue);
        }
        let mut out = BytesMut::with_capacity(callback.len() + body.len() + 3);
        out.put_slice(callback.as_bytes());
        out.put_u8(b'(');
        out.put_slice(&body);
        out.put_slice(b");");
        response.body = Some(Bytes::from(out));
        response.headers.remove(CONTENT_LENGTH);
        response.headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/javascript; charset=utf-8"),
        );
        Ok(Flow::Continue)
    }
}

fn is_json_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence == "text/json" || essence.ends_with("+json")
}

/// The callback the query names, when it is a JavaScript name (dotted parts allowed).
fn callback(query: Option<&str>, parameter: &str) -> Option<String> {
    let value = query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (super::set_query_parameter::decode(k) == parameter)
            .then(|| super::set_query_parameter::decode(v))
    })?;
    let ok = !value.is_empty()
        && value.len() <= MAX_CALLBACK
        && value.split('.').all(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        });
    ok.then_some(value)
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::callback;

    const POLICY: &str = r#"<policies><backend><forward-request/></backend>
        <outbound><jsonp callback-parameter-name="cb" /></outbound></policies>"#;

    fn answer(query: &str, body: &str, content_type: Option<&str>) -> (String, String) {
        let p = pipeline(POLICY);
        let mut ex = exchange("GET", &format!("/items{query}"), &[]);
        let mut io = MockIo {
            answer: Some(bytes::Bytes::from(body.to_owned())),
            answer_type: content_type.map(str::to_owned),
            ..MockIo::default()
        };
        block_on(p.run(&mut ex, &mut io));
        let r = ex.response.unwrap();
        let t = r
            .headers
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (String::from_utf8(r.body.unwrap().to_vec()).unwrap(), t)
    }

    #[test]
    fn wraps_json_in_the_named_callback() {
        assert_eq!(
            answer("?cb=show", r#"{"a":1}"#, Some("application/json")),
            (
                r#"show({"a":1});"#.to_owned(),
                "application/javascript; charset=utf-8".to_owned()
            )
        );
        assert_eq!(
            answer("?x=1&cb=app.views.render_2", "[1,2]", None).0,
            "app.views.render_2([1,2]);"
        );
        assert_eq!(
            answer("?cb=f", r#"{"b":2}"#, Some("application/problem+json")).0,
            r#"f({"b":2});"#
        );
    }

    #[test]
    fn leaves_the_response_without_a_callback_or_when_not_json() {
        assert_eq!(
            answer("", r#"{"a":1}"#, Some("application/json")),
            (r#"{"a":1}"#.to_owned(), "application/json".to_owned())
        );
        assert_eq!(answer("?cb=f", "<a/>", Some("application/xml")).0, "<a/>");
        assert_eq!(answer("?cb=f", "plain words", None).0, "plain words");
    }

    #[test]
    fn only_javascript_names_are_used_as_callbacks() {
        for bad in [
            "alert(1)//",
            "x%3Balert(1)",
            "1abc",
            "a..b",
            "a-b",
            "",
            "%3Cscript%3E",
        ] {
            assert_eq!(callback(Some(&format!("cb={bad}")), "cb"), None, "{bad}");
            assert_eq!(
                answer(&format!("?cb={bad}"), "{}", Some("application/json")).0,
                "{}"
            );
        }
        let long = "a".repeat(129);
        assert_eq!(callback(Some(&format!("cb={long}")), "cb"), None);
        assert_eq!(
            callback(Some("cb=$jq_1.done"), "cb").as_deref(),
            Some("$jq_1.done")
        );
    }

    #[test]
    fn is_checked_when_saved() {
        assert!(
            errors_in("outbound", "<jsonp />")[0]
                .contains("needs the attribute 'callback-parameter-name'")
        );
        assert!(
            errors_in("inbound", r#"<jsonp callback-parameter-name="cb" />"#)[0]
                .contains("<jsonp> is not allowed in <inbound>")
        );
        assert!(
            errors_in(
                "outbound",
                r#"<jsonp callback-parameter-name="cb">x</jsonp>"#
            )[0]
            .contains("takes no content")
        );
    }
}
