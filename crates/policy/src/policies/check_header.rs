//! `<check-header name="X" failed-check-httpcode="401" failed-check-error-message="…"
//! ignore-case="true"><value>…</value></check-header>`: refuses requests whose header is missing
//! or holds none of the listed values.

use http::StatusCode;

use crate::compile::Cx;
use crate::exchange::{Exchange, Response};
use crate::run::{Budget, Flow, PolicyError};
use crate::text::PolicyText;
use crate::xml::Element;

#[derive(Debug, Clone)]
pub struct CheckHeader {
    pub name: String,
    pub status: StatusCode,
    pub message: PolicyText,
    pub ignore_case: bool,
    pub values: Vec<PolicyText>,
}

impl CheckHeader {
    pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Self> {
        cx.allow_attrs(
            el,
            &[
                "name",
                "failed-check-httpcode",
                "failed-check-error-message",
                "ignore-case",
            ],
        );
        cx.allow_children(el, &["value"]);
        let name = cx.req_literal(el, "name")?;
        let code = cx
            .u64_attr(el, "failed-check-httpcode", 100, 599)
            .unwrap_or(401);
        let status = StatusCode::from_u16(u16::try_from(code).unwrap_or(401))
            .unwrap_or(StatusCode::UNAUTHORIZED);
        let message = cx
            .opt_text(el, "failed-check-error-message")
            .unwrap_or_else(|| PolicyText::literal("Header check failed"));
        let ignore_case = cx.bool_attr(el, "ignore-case", false);
        let mut values = Vec::new();
        for v in el.elements() {
            values.push(cx.content(v)?);
        }
        Some(Self {
            name,
            status,
            message,
            ignore_case,
            values,
        })
    }

    pub fn run(&self, ex: &mut Exchange, budget: &mut Budget) -> Result<Flow, PolicyError> {
        let present: Vec<String> = ex
            .request
            .headers
            .get_all(self.name.as_str())
            .iter()
            .flat_map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .split(',')
                    .map(|s| s.trim().to_owned())
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut ok = !present.is_empty() || ex.request.headers.contains_key(self.name.as_str());
        if ok && !self.values.is_empty() {
            ok = false;
            for v in &self.values {
                let want = v.eval(ex, budget)?;
                if present.iter().any(|p| {
                    if self.ignore_case {
                        p.eq_ignore_ascii_case(&want)
                    } else {
                        *p == *want
                    }
                }) {
                    ok = true;
                    break;
                }
            }
        }
        if ok {
            return Ok(Flow::Continue);
        }
        let message = self.message.eval(ex, budget)?;
        ex.response = Some(json_error(self.status, &message));
        ex.refused = Some(("check-header", "HeaderNotFound"));
        Ok(Flow::Return)
    }
}

/// `{"statusCode": N, "message": "…"}`, Azure's shape for errors a policy answers with.
pub(crate) fn json_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({"statusCode": status.as_u16(), "message": message}).to_string();
    let mut r = Response::new(status);
    r.headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r.body = Some(bytes::Bytes::from(body));
    r
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;

    #[test]
    fn refuses_missing_or_wrong_values() {
        let p = pipeline(
            r#"<policies><inbound>
                <check-header name="X-Tenant" failed-check-httpcode="403" failed-check-error-message="Bad tenant" ignore-case="true">
                    <value>Alpha</value><value>beta</value>
                </check-header>
            </inbound><backend><forward-request/></backend></policies>"#,
        );
        for (headers, ok) in [
            (vec![("X-Tenant", "alpha")], true),
            (vec![("X-Tenant", "gamma")], false),
            (vec![], false),
        ] {
            let mut ex = exchange("GET", "/", &headers);
            let io = run(&p, &mut ex);
            assert_eq!(io.forwarded.is_some(), ok);
            if !ok {
                let r = ex.response.unwrap();
                assert_eq!(r.status, 403);
                assert_eq!(
                    r.body.unwrap(),
                    r#"{"message":"Bad tenant","statusCode":403}"#
                );
            }
        }
    }
}
