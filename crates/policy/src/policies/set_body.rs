//! `<set-body>…</set-body>`: replaces the body of the request (inbound, backend) or the response
//! (outbound, on-error) with literal content or an expression's value. The literal content is
//! payload — any JSON or XML — and is never checked as policy. With `template="liquid"` the
//! content is a Liquid template ([`liquid_template`]), parsed here and rendered per request.

mod liquid_template;

use bytes::Bytes;

use super::on_response;
use crate::compile::Cx;
use crate::exchange::{Exchange, Response};
use crate::run::{Budget, Flow, PolicyError};
use crate::text::{self, PolicyText};
use crate::xml::{Element, Pos};
use liquid_template::LiquidTemplate;

#[derive(Debug, Clone)]
pub struct SetBody {
    pub body: PolicyText,
    pub response: bool,
    /// `template="liquid"`: the template, which replaces `body`.
    liquid: Option<LiquidTemplate>,
}

impl SetBody {
    pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Self> {
        cx.allow_attrs(el, &["template", "xsi-nil", "parse-date"]);
        let response = on_response(cx.section);
        let mut liquid = false;
        if let Some(t) = cx.literal(el, "template")
            && !t.eq_ignore_ascii_case("none")
        {
            if !t.eq_ignore_ascii_case("liquid") {
                let pos = el.attr("template").map_or(el.pos, |a| a.pos);
                cx.error(
                    pos,
                    format!("template=\"{t}\" is not known; the only template language is liquid"),
                );
                return None;
            }
            liquid = true;
        }
        Self::payload(el, cx, liquid, response)
    }

    /// The content of `el` as a payload: a Liquid template (`liquid`), an expression, text, or
    /// markup kept as written. `response`: a template reads the response (`body`).
    pub(crate) fn payload(
        el: &Element,
        cx: &mut Cx<'_>,
        liquid: bool,
        response: bool,
    ) -> Option<Self> {
        if liquid {
            // The template as written: `{{…}}` is Liquid's, not a named value.
            let (src, start) = match el.text() {
                Some((t, pos, _)) => {
                    let lead = &t[..t.len() - t.trim_start().len()];
                    (t.trim().to_owned(), advance(pos, lead))
                }
                None => (el.inner_raw.trim().to_owned(), el.pos),
            };
            return match LiquidTemplate::parse(&src) {
                Ok(template) => Some(Self {
                    body: PolicyText::literal(""),
                    response,
                    liquid: Some(template),
                }),
                Err(e) => {
                    let at = e.at.map_or(start, |at| {
                        if at.line <= 1 {
                            Pos {
                                line: start.line,
                                column: start.column + at.column.saturating_sub(1),
                            }
                        } else {
                            Pos {
                                line: start.line + at.line - 1,
                                column: at.column,
                            }
                        }
                    });
                    cx.error(
                        at,
                        format!("the Liquid template does not parse: {}", e.message),
                    );
                    None
                }
            };
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
            response,
            liquid: None,
        })
    }

    /// For a Liquid template, which body it reads (`Some(true)`: the response's); `None`
    /// otherwise (the expressions say).
    pub fn template_reads_body(&self) -> Option<bool> {
        self.liquid.as_ref().map(|_| self.response)
    }

    /// The content for this request: the template rendered, or the text evaluated.
    pub(crate) fn render(&self, ex: &Exchange, budget: &mut Budget) -> Result<Bytes, PolicyError> {
        Ok(match &self.liquid {
            Some(t) => Bytes::from(t.render(ex, self.response)?),
            None => Bytes::from(self.body.eval(ex, budget)?.into_owned()),
        })
    }

    pub fn run(&self, ex: &mut Exchange, budget: &mut Budget) -> Result<Flow, PolicyError> {
        let content = self.render(ex, budget)?;
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

/// The position after `text` written from `pos`.
fn advance(mut pos: Pos, text: &str) -> Pos {
    for c in text.chars() {
        if c == '\n' {
            pos.line += 1;
            pos.column = 1;
        } else {
            pos.column += 1;
        }
    }
    pos
}
