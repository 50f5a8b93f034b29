//! `<mock-response status-code="200" content-type="application/json"/>`: answers at once with
//! the operation's example from its imported OpenAPI document, without calling the backend.
//!
//! The example is the one for the status code (`200`, else the range `2XX`, else `default`)
//! and the content type (compared without case and parameters; the first the document lists
//! when none is given). Without an example the answer is the status with an empty body, as in
//! Azure. Azure also makes up bodies from response schemas when there is no example; this
//! gateway does not.

use http::{HeaderValue, StatusCode};

use crate::compile::Cx;
use crate::exchange::{Exchange, Response};
use crate::run::{Flow, PolicyError};
use crate::xml::Element;
use gatehouse_model::snapshot::{ResponseExample, ResponseExamples};

#[derive(Debug, Clone)]
pub struct MockResponse {
    pub status: StatusCode,
    pub content_type: Option<HeaderValue>,
}

/// The media type without parameters, lower-cased.
fn media_type(text: &str) -> String {
    text.split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// The example for `status` and `content_type`.
pub fn pick<'e>(
    examples: &'e ResponseExamples,
    status: u16,
    content_type: Option<&str>,
) -> Option<&'e ResponseExample> {
    let exact = status.to_string();
    let range = format!("{}XX", status / 100);
    let list = examples
        .get(&exact)
        .or_else(|| {
            examples
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(&range))
                .map(|(_, v)| v)
        })
        .or_else(|| examples.get("default"))?;
    match content_type {
        None => list.first(),
        Some(want) => {
            let want = media_type(want);
            list.iter().find(|e| media_type(&e.content_type) == want)
        }
    }
}

impl MockResponse {
    pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Self> {
        cx.allow_attrs(el, &["status-code", "content-type"]);
        cx.no_children(el);
        let status = match el.attr("status-code") {
            Some(_) => {
                let code = cx.u64_attr(el, "status-code", 100, 599)?;
                StatusCode::from_u16(u16::try_from(code).ok()?).ok()?
            }
            None => StatusCode::OK,
        };
        let content_type = match cx.literal(el, "content-type") {
            Some(t) => match HeaderValue::from_str(t.trim()) {
                Ok(v) if !t.trim().is_empty() => Some(v),
                _ => {
                    let pos = el.attr("content-type").map_or(el.pos, |a| a.pos);
                    cx.error(pos, format!("'{t}' is not a valid content type"));
                    return None;
                }
            },
            None if el.attr("content-type").is_some() => return None,
            None => None,
        };
        Some(Self {
            status,
            content_type,
        })
    }

    pub fn run(&self, ex: &mut Exchange) -> Result<Flow, PolicyError> {
        let wanted = self.content_type.as_ref().and_then(|v| v.to_str().ok());
        let example = ex
            .info
            .examples
            .as_deref()
            .and_then(|d| pick(&d.examples, self.status.as_u16(), wanted));
        let mut r = Response::new(self.status);
        let content_type = match (&self.content_type, example) {
            (Some(v), _) => Some(v.clone()),
            (None, Some(e)) => HeaderValue::from_str(&e.content_type).ok(),
            (None, None) => None,
        };
        if let Some(v) = content_type {
            r.headers.insert(http::header::CONTENT_TYPE, v);
        }
        if let Some(e) = example {
            r.body = Some(bytes::Bytes::from(e.body.clone()));
        }
        ex.response = Some(r);
        Ok(Flow::Return)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use gatehouse_model::snapshot::{ResponseExample, ResponseExamples};

    use super::super::testkit::*;

    fn examples() -> Arc<crate::exchange::OperationDocument> {
        let ex = |ct: &str, body: &str| ResponseExample {
            content_type: ct.into(),
            body: body.into(),
        };
        let mut m = ResponseExamples::new();
        m.insert(
            "200".into(),
            vec![
                ex("application/json", r#"{"id":1}"#),
                ex("text/plain", "one"),
            ],
        );
        m.insert(
            "4XX".into(),
            vec![ex("application/json", r#"{"error":"bad"}"#)],
        );
        m.insert("default".into(), vec![ex("text/plain", "whatever")]);
        Arc::new(crate::exchange::OperationDocument {
            examples: m,
            ..Default::default()
        })
    }

    fn mock(attrs: &str, with_examples: bool) -> (u16, Option<String>, String, bool) {
        let p = pipeline(&format!(
            r#"<policies><inbound><mock-response {attrs}/></inbound><backend><forward-request/></backend></policies>"#
        ));
        let mut ex = exchange("GET", "/", &[]);
        if with_examples {
            ex.info.examples = Some(examples());
        }
        let io = run(&p, &mut ex);
        let r = ex.response.unwrap();
        (
            r.status.as_u16(),
            r.headers
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned()),
            String::from_utf8(r.body.unwrap().to_vec()).unwrap(),
            io.forwarded.is_some(),
        )
    }

    #[test]
    fn answers_from_the_examples_without_the_backend() {
        assert_eq!(
            mock("", true),
            (
                200,
                Some("application/json".into()),
                r#"{"id":1}"#.into(),
                false
            )
        );
        assert_eq!(
            mock(
                r#"status-code="200" content-type="text/plain; charset=utf-8""#,
                true
            ),
            (
                200,
                Some("text/plain; charset=utf-8".into()),
                "one".into(),
                false
            )
        );
        // A range, then `default`, stand in for a code the document doesn't list.
        assert_eq!(
            mock(r#"status-code="404""#, true),
            (
                404,
                Some("application/json".into()),
                r#"{"error":"bad"}"#.into(),
                false
            )
        );
        assert_eq!(
            mock(r#"status-code="503""#, true),
            (503, Some("text/plain".into()), "whatever".into(), false)
        );
    }

    #[test]
    fn without_an_example_the_body_is_empty() {
        assert_eq!(
            mock(r#"status-code="201""#, false),
            (201, None, String::new(), false)
        );
        assert_eq!(
            mock(r#"status-code="200" content-type="application/xml""#, true),
            (200, Some("application/xml".into()), String::new(), false)
        );
    }

    #[test]
    fn compile_errors() {
        for (xml, needle) in [
            (r#"<mock-response status-code="700"/>"#, "from 100 to 599"),
            (
                r#"<mock-response status-code="@(200)"/>"#,
                "does not accept an expression",
            ),
            (
                r#"<mock-response content-type="a b&#10;c"/>"#,
                "not a valid content type",
            ),
            (r#"<mock-response colour="red"/>"#, "no attribute 'colour'"),
        ] {
            let errors = errors_inbound(xml);
            assert!(
                errors.iter().any(|e| e.contains(needle)),
                "{xml}: {errors:?}"
            );
        }
        let xml = r#"<policies><backend><mock-response/></backend></policies>"#;
        let (_, diags) = crate::compile::compile(
            xml,
            crate::compile::Scope::Api,
            &crate::compile::NoNamedValues,
            crate::compile::Mode::Strict,
        );
        assert!(
            diags
                .iter()
                .any(|d| d.message.contains("not allowed in <backend>"))
        );
    }
}
