//! `<set-body>…</set-body>`: replaces the body of the request (inbound, backend) or the response
//! (outbound, on-error) with literal content or an expression's value. The literal content is
//! payload — any JSON or XML — and is never checked as policy.

use bytes::Bytes;

use super::on_response;
use crate::compile::Cx;
use crate::exchange::{Exchange, Response};
use crate::run::{Budget, Flow, PolicyError};
use crate::text::{self, PolicyText};
use crate::xml::Element;

#[derive(Debug, Clone)]
pub struct SetBody {
    pub body: PolicyText,
    pub response: bool,
}

impl SetBody {
    pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Self> {
        cx.allow_attrs(el, &["template", "xsi-nil", "parse-date"]);
        if let Some(t) = cx.literal(el, "template")
            && !t.eq_ignore_ascii_case("none")
        {
            let pos = el.attr("template").map_or(el.pos, |a| a.pos);
            cx.error(
                pos,
                format!("template=\"{t}\" is not supported yet; use an expression (@{{ … }})"),
            );
            return None;
        }
        let body = match el.text() {
            // Text only: it may be an expression.
            Some((t, pos, off)) if text::looks_like_expr(&t) => {
                let lead = t.len() - t.trim_start().len();
                cx.text(t.trim(), pos, off + lead)?
            }
            // Text only: entities decoded, as written otherwise.
            Some((t, _, _)) => PolicyText::literal(t.trim()),
            // Markup (a SOAP envelope, say): kept exactly as written.
            None => PolicyText::literal(el.inner_raw.trim()),
        };
        Some(Self {
            body,
            response: on_response(cx.section),
        })
    }

    pub fn run(&self, ex: &mut Exchange, budget: &mut Budget) -> Result<Flow, PolicyError> {
        let content = Bytes::from(self.body.eval(ex, budget)?.into_owned());
        if self.response {
            let r = ex
                .response
                .get_or_insert_with(|| Response::new(http::StatusCode::OK));
            r.body = Some(content);
            r.headers.remove(http::header::CONTENT_LENGTH);
        } else {
            ex.request.body = Some(content);
            ex.request.headers.remove(http::header::CONTENT_LENGTH);
        }
        Ok(Flow::Continue)
    }
}
