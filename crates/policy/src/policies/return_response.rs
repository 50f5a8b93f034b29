//! `<return-response [response-variable-name="v"]>` with optional `<set-status>`,
//! `<set-header>` and `<set-body>` inside: stops the pipeline and answers the client.

use http::HeaderValue;

use super::set_header::{self, SetHeader};
use super::{SetBody, SetStatus};
use crate::compile::{Cx, Section};
use crate::exchange::{Exchange, Response};
use crate::run::{Budget, Flow, PolicyError};
use crate::text::PolicyText;
use crate::xml::Element;

#[derive(Debug, Clone)]
pub struct ReturnResponse {
    pub variable: Option<String>,
    pub status: Option<SetStatus>,
    pub headers: Vec<SetHeader>,
    pub body: Option<SetBody>,
}

impl ReturnResponse {
    pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Self> {
        cx.allow_attrs(el, &["response-variable-name"]);
        cx.allow_children(el, &["set-status", "set-header", "set-body"]);
        let variable = cx.literal(el, "response-variable-name");
        let section = cx.section;
        // The children describe the response, whatever section this is in.
        cx.section = Section::Outbound;
        let mut status = None;
        let mut headers = Vec::new();
        let mut body = None;
        let mut ok = true;
        for child in el.elements() {
            match child.name.as_str() {
                "set-status" => match SetStatus::compile(child, cx) {
                    Some(s) => status = Some(s),
                    None => ok = false,
                },
                "set-header" => match SetHeader::compile(child, cx) {
                    Some(h) => headers.push(h),
                    None => ok = false,
                },
                "set-body" => match SetBody::compile(child, cx) {
                    Some(b) => body = Some(b),
                    None => ok = false,
                },
                _ => {}
            }
        }
        cx.section = section;
        ok.then_some(Self {
            variable,
            status,
            headers,
            body,
        })
    }

    pub fn texts(&self) -> Vec<&PolicyText> {
        let mut t: Vec<&PolicyText> = self.headers.iter().flat_map(|h| h.texts()).collect();
        if let Some(s) = &self.status {
            t.extend(s.texts());
        }
        if let Some(b) = &self.body {
            t.push(&b.body);
        }
        t
    }

    pub fn run(&self, ex: &mut Exchange, budget: &mut Budget) -> Result<Flow, PolicyError> {
        let mut response = match &self.variable {
            // A response stored by send-request: the answer starts from it.
            Some(name) => match ex.variables.get(name).and_then(|v| v.as_http_response()) {
                Some(held) => from_held(held),
                None => {
                    return Err(PolicyError::runtime(
                        "VariableNotFound",
                        format!("response variable '{name}' does not hold a response"),
                    ));
                }
            },
            None => Response::new(http::StatusCode::OK),
        };
        if let Some(s) = &self.status {
            let (status, reason) = s.status(ex, budget)?;
            response.status = status;
            response.reason = reason;
        }
        for h in &self.headers {
            let mut values = Vec::new();
            for v in &h.values {
                let text = v.eval(ex, budget)?;
                values.push(HeaderValue::from_str(&text).map_err(|_| {
                    PolicyError::runtime(
                        "InvalidHeaderValue",
                        format!("the value for header '{}' is not valid", h.name),
                    )
                })?);
            }
            set_header::apply(&mut response.headers, &h.name, h.action, values);
        }
        if let Some(b) = &self.body {
            response.body = Some(bytes::Bytes::from(b.body.eval(ex, budget)?.into_owned()));
        }
        ex.response = Some(response);
        Ok(Flow::Return)
    }
}

/// A response held in a variable, as the answer to the client.
fn from_held(held: &crate::expr::HttpResponse) -> Response {
    let mut r = Response::new(
        http::StatusCode::from_u16(held.status).unwrap_or(http::StatusCode::BAD_GATEWAY),
    );
    if !held.reason.is_empty() && r.status.canonical_reason() != Some(held.reason.as_str()) {
        r.reason = Some(held.reason.clone());
    }
    for (name, value) in &held.headers {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            r.headers.append(n, v);
        }
    }
    // The body is sent as held: its length is the buffer's.
    r.headers.remove(http::header::CONTENT_LENGTH);
    r.headers.remove(http::header::TRANSFER_ENCODING);
    r.body = Some(held.body.clone());
    r
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;

    #[test]
    fn answers_without_calling_the_backend() {
        let p = pipeline(
            r#"<policies><inbound>
                <return-response>
                    <set-status code="418" reason="Teapot" />
                    <set-header name="X-Why" exists-action="override"><value>@(context.Request.Method)</value></set-header>
                    <set-body>{"tea": true}</set-body>
                </return-response>
                <set-header name="X-Never"><value>1</value></set-header>
            </inbound><backend><forward-request/></backend></policies>"#,
        );
        let mut ex = exchange("POST", "/", &[]);
        let io = run(&p, &mut ex);
        assert!(io.forwarded.is_none());
        let r = ex.response.unwrap();
        assert_eq!(r.status, 418);
        assert_eq!(r.reason.as_deref(), Some("Teapot"));
        assert_eq!(all(&r.headers, "x-why"), ["POST"]);
        assert_eq!(r.body.unwrap(), "{\"tea\": true}");
    }
}
