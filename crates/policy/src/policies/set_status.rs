//! `<set-status code="401" reason="Unauthorized"/>`: sets the status of the response (creating
//! one when there is none yet, as in inbound before `return-response`).

use http::StatusCode;

use crate::compile::Cx;
use crate::exchange::{Exchange, Response};
use crate::run::{Budget, Flow, PolicyError};
use crate::text::PolicyText;
use crate::xml::Element;

#[derive(Debug, Clone)]
pub struct SetStatus {
    pub code: PolicyText,
    pub reason: Option<PolicyText>,
}

impl SetStatus {
    pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Self> {
        cx.allow_attrs(el, &["code", "reason"]);
        cx.no_children(el);
        let code = cx.req_text(el, "code")?;
        if let Some(lit) = code.as_literal()
            && lit
                .trim()
                .parse::<u16>()
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
                .is_none()
        {
            let pos = el.attr("code").map_or(el.pos, |a| a.pos);
            cx.error(pos, format!("'{lit}' is not an HTTP status code (100-999)"));
            return None;
        }
        let reason = cx.opt_text(el, "reason");
        Some(Self { code, reason })
    }

    pub fn texts(&self) -> Vec<&PolicyText> {
        std::iter::once(&self.code)
            .chain(self.reason.iter())
            .collect()
    }

    pub fn status(
        &self,
        ex: &Exchange,
        budget: &mut Budget,
    ) -> Result<(StatusCode, Option<String>), PolicyError> {
        let code = self.code.eval(ex, budget)?;
        let status = code
            .trim()
            .parse::<u16>()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .ok_or_else(|| {
                PolicyError::runtime(
                    "InvalidStatusCode",
                    format!("'{code}' is not an HTTP status code"),
                )
            })?;
        let reason = match &self.reason {
            Some(r) => Some(r.eval(ex, budget)?.into_owned()),
            None => None,
        };
        Ok((status, reason))
    }

    pub fn run(&self, ex: &mut Exchange, budget: &mut Budget) -> Result<Flow, PolicyError> {
        let (status, reason) = self.status(ex, budget)?;
        let response = ex.response.get_or_insert_with(|| Response::new(status));
        response.status = status;
        response.reason = reason;
        Ok(Flow::Continue)
    }
}
