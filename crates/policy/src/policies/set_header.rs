//! `<set-header name="X" exists-action="override|skip|append|delete"><value>…</value></set-header>`:
//! sets a request header (inbound, backend) or a response header (outbound, on-error).

use http::{HeaderMap, HeaderName, HeaderValue};

use super::on_response;
use crate::compile::Cx;
use crate::exchange::Exchange;
use crate::run::{Budget, Flow, PolicyError};
use crate::text::PolicyText;
use crate::xml::Element;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExistsAction {
    Override,
    Skip,
    Append,
    Delete,
}

#[derive(Debug, Clone)]
pub struct SetHeader {
    pub name: HeaderName,
    pub action: ExistsAction,
    pub values: Vec<PolicyText>,
    pub response: bool,
}

impl SetHeader {
    pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Self> {
        cx.allow_attrs(el, &["name", "exists-action"]);
        cx.allow_children(el, &["value"]);
        let raw = cx.req_literal(el, "name")?;
        let Ok(name) = HeaderName::from_bytes(raw.trim().as_bytes()) else {
            let pos = el.attr("name").map_or(el.pos, |a| a.pos);
            cx.error(pos, format!("'{raw}' is not a valid header name"));
            return None;
        };
        let action = match cx.choice(
            el,
            "exists-action",
            &["override", "skip", "append", "delete"],
            "override",
        ) {
            "skip" => ExistsAction::Skip,
            "append" => ExistsAction::Append,
            "delete" => ExistsAction::Delete,
            _ => ExistsAction::Override,
        };
        let mut values = Vec::new();
        for v in el.elements().filter(|e| e.name == "value") {
            cx.allow_attrs(v, &[]);
            values.push(cx.content(v)?);
        }
        if values.is_empty() && action != ExistsAction::Delete {
            cx.error(
                el.pos,
                "<set-header> needs at least one <value>, unless exists-action=\"delete\"",
            );
            return None;
        }
        Some(Self {
            name,
            action,
            values,
            response: on_response(cx.section),
        })
    }

    pub fn texts(&self) -> Vec<&PolicyText> {
        self.values.iter().collect()
    }

    pub fn run(&self, ex: &mut Exchange, budget: &mut Budget) -> Result<Flow, PolicyError> {
        let mut evaluated = Vec::with_capacity(self.values.len());
        for v in &self.values {
            let text = v.eval(ex, budget)?;
            let value = HeaderValue::from_str(&text).map_err(|_| {
                PolicyError::runtime(
                    "InvalidHeaderValue",
                    format!(
                        "the value for header '{}' is not a valid header value",
                        self.name
                    ),
                )
            })?;
            evaluated.push(value);
        }
        let headers: &mut HeaderMap = if self.response {
            match ex.response.as_mut() {
                Some(r) => &mut r.headers,
                None => return Ok(Flow::Continue),
            }
        } else {
            &mut ex.request.headers
        };
        apply(headers, &self.name, self.action, evaluated);
        Ok(Flow::Continue)
    }
}

/// Applies a set-header action to a header map (shared with `return-response`).
pub(crate) fn apply(
    headers: &mut HeaderMap,
    name: &HeaderName,
    action: ExistsAction,
    values: Vec<HeaderValue>,
) {
    match action {
        ExistsAction::Delete => {
            headers.remove(name);
        }
        ExistsAction::Skip if headers.contains_key(name) => {}
        ExistsAction::Override | ExistsAction::Skip => {
            headers.remove(name);
            for v in values {
                headers.append(name.clone(), v);
            }
        }
        ExistsAction::Append => {
            for v in values {
                headers.append(name.clone(), v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;

    #[test]
    fn override_skip_append_delete() {
        let p = pipeline(
            r#"<policies><inbound>
                <set-header name="X-A" exists-action="override"><value>1</value><value>2</value></set-header>
                <set-header name="X-B" exists-action="skip"><value>new</value></set-header>
                <set-header name="X-C" exists-action="append"><value>c2</value></set-header>
                <set-header name="X-D" exists-action="delete" />
                <set-header name="X-E"><value>@(context.Request.Method + "!")</value></set-header>
            </inbound><backend><forward-request/></backend>
            <outbound><set-header name="X-Out" exists-action="override"><value>@(context.Response.StatusCode.ToString())</value></set-header></outbound>
            </policies>"#,
        );
        let mut ex = exchange(
            "GET",
            "/x",
            &[
                ("X-A", "old"),
                ("X-B", "keep"),
                ("X-C", "c1"),
                ("X-D", "gone"),
            ],
        );
        let io = run(&p, &mut ex);
        let sent = io.forwarded.unwrap();
        assert_eq!(all(&sent.headers, "x-a"), ["1", "2"]);
        assert_eq!(all(&sent.headers, "x-b"), ["keep"]);
        assert_eq!(all(&sent.headers, "x-c"), ["c1", "c2"]);
        assert!(sent.headers.get("x-d").is_none());
        assert_eq!(all(&sent.headers, "x-e"), ["GET!"]);
        assert_eq!(all(&ex.response.unwrap().headers, "x-out"), ["200"]);
    }

    #[test]
    fn compile_errors() {
        for (xml, needle) in [
            (r#"<set-header name="X"/>"#, "needs at least one <value>"),
            (
                r#"<set-header><value>1</value></set-header>"#,
                "needs the attribute 'name'",
            ),
            (
                r#"<set-header name="X" exists-action="maybe"><value>1</value></set-header>"#,
                "must be one of",
            ),
            (
                r#"<set-header name="X" colour="red"><value>1</value></set-header>"#,
                "no attribute 'colour'",
            ),
            (
                r#"<set-header name="bad name"><value>1</value></set-header>"#,
                "not a valid header name",
            ),
        ] {
            let errors = errors_inbound(xml);
            assert!(
                errors.iter().any(|e| e.contains(needle)),
                "{xml}: {errors:?}"
            );
        }
    }
}
