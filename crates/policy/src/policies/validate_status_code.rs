//! `<validate-status-code>` (outbound, on-error): the response's status must be one the
//! operation's imported OpenAPI document declares: the code itself, its class (`2XX`), or
//! `default`. An undeclared status gets `unspecified-status-code-action`, or the action of its
//! `<status-code code="" action=""/>`, which applies only to undeclared codes (as in Azure).
//! The actions run as [`super::validation`] says; Azure's use is to keep a backend's
//! undeclared errors (with their stack traces) from reaching clients. An operation the
//! document does not describe is not checked.

use super::validation::{self, ActionSpec, Finding};
use crate::compile::{Cx, Section};
use crate::exchange::Exchange;
use crate::run::{Budget, Flow, PolicyError};
use crate::text::PolicyText;
use crate::xml::Element;

const NAME: &str = "validate-status-code";

#[derive(Debug, Clone)]
pub struct ValidateStatusCode {
    unspecified: ActionSpec,
    errors_variable: Option<String>,
    /// `<status-code code="" action=""/>`, in order.
    codes: Vec<(u16, ActionSpec)>,
    section: Section,
}

impl ValidateStatusCode {
    pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Self> {
        cx.allow_attrs(
            el,
            &["unspecified-status-code-action", "errors-variable-name"],
        );
        cx.allow_children(el, &["status-code"]);
        let unspecified = ActionSpec::required(cx, el, "unspecified-status-code-action");
        let errors_variable = validation::errors_variable(cx, el);
        let mut codes = Vec::new();
        for c in el.elements() {
            cx.allow_attrs(c, &["code", "action"]);
            cx.no_children(c);
            let code = if c.attr("code").is_some() {
                cx.u64_attr(c, "code", 100, 599)
            } else {
                cx.error(c.pos, "<status-code> needs the attribute 'code'");
                None
            };
            let action = ActionSpec::required(cx, c, "action");
            if let Some(code) = code.and_then(|c| u16::try_from(c).ok()) {
                codes.push((code, action));
            }
        }
        Some(Self {
            unspecified,
            errors_variable,
            codes,
            section: cx.section,
        })
    }

    pub fn texts(&self) -> Vec<&PolicyText> {
        std::iter::once(&self.unspecified)
            .chain(self.codes.iter().map(|(_, a)| a))
            .filter_map(ActionSpec::text)
            .collect()
    }

    pub fn run(&self, ex: &mut Exchange, budget: &mut Budget) -> Result<Flow, PolicyError> {
        let Some(doc) = ex.info.examples.as_ref().filter(|d| d.described) else {
            return Ok(Flow::Continue);
        };
        let Some(status) = ex.response.as_ref().map(|r| r.status.as_u16()) else {
            return Ok(Flow::Continue);
        };
        if doc.status(status).is_some() {
            return Ok(Flow::Continue);
        }
        let action = match self.codes.iter().find(|(c, _)| *c == status) {
            Some((_, a)) => a.resolve(ex, budget)?,
            None => self.unspecified.resolve(ex, budget)?,
        };
        let finding = [Finding {
            name: status.to_string(),
            kind: "StatusCode",
            rule: "Unspecified",
            details: format!("Response status code {status} is not allowed."),
            public: String::new(),
            action,
        }];
        match validation::record(ex, NAME, self.errors_variable.as_deref(), &finding) {
            Some(first) => validation::prevent(ex, NAME, self.section, first),
            None => Ok(Flow::Continue),
        }
    }
}

#[cfg(test)]
mod tests;
