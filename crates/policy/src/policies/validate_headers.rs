//! `<validate-headers>` (outbound, on-error): checks the response's headers against the
//! headers the operation's imported OpenAPI document declares for the response's status (its
//! own, else its class such as `2XX`, else `default`).
//!
//! A declared header gets `specified-header-action`: it must be present when required, come
//! once unless it is a list, parse as its type and conform to its schema. A header the
//! document does not declare for the status gets `unspecified-header-action`. `<header
//! name="" action=""/>` overrides either for one name. The actions run as
//! [`super::validation`] says. A status the document does not declare has no declared
//! headers (`validate-status-code` judges the status), and an operation the document does not
//! describe is not checked.
//!
//! The headers that frame the body (`Content-Type`, which OpenAPI describes by the response's
//! content, `Content-Length`, `Transfer-Encoding`) are never "unspecified".

use std::borrow::Cow;

use super::validation::{self, Action, ActionSpec};
use crate::compile::{Cx, Section};
use crate::exchange::Exchange;
use crate::run::{Budget, Flow, PolicyError};
use crate::text::PolicyText;
use crate::xml::Element;

const NAME: &str = "validate-headers";

/// Response headers that are never unspecified (lowercase).
const NOT_DECLARED: [&str; 3] = ["content-type", "content-length", "transfer-encoding"];

#[derive(Debug, Clone)]
pub struct ValidateHeaders {
    specified: ActionSpec,
    unspecified: ActionSpec,
    errors_variable: Option<String>,
    /// `<header name="" action=""/>`, in order.
    headers: Vec<(String, ActionSpec)>,
    section: Section,
}

impl ValidateHeaders {
    pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Self> {
        cx.allow_attrs(
            el,
            &[
                "specified-header-action",
                "unspecified-header-action",
                "errors-variable-name",
            ],
        );
        cx.allow_children(el, &["header"]);
        let specified = ActionSpec::required(cx, el, "specified-header-action");
        let unspecified = ActionSpec::required(cx, el, "unspecified-header-action");
        let errors_variable = validation::errors_variable(cx, el);
        let mut headers = Vec::new();
        for h in el.elements() {
            cx.allow_attrs(h, &["name", "action"]);
            cx.no_children(h);
            let name = cx.req_literal(h, "name");
            let action = ActionSpec::required(cx, h, "action");
            if let Some(name) = name.filter(|n| !n.trim().is_empty()) {
                headers.push((name.trim().to_owned(), action));
            }
        }
        Some(Self {
            specified,
            unspecified,
            errors_variable,
            headers,
            section: cx.section,
        })
    }

    pub fn texts(&self) -> Vec<&PolicyText> {
        [&self.specified, &self.unspecified]
            .into_iter()
            .chain(self.headers.iter().map(|(_, a)| a))
            .filter_map(ActionSpec::text)
            .collect()
    }

    /// The action for header `name`: its `<header>`'s, else `default`.
    fn action(
        &self,
        name: &str,
        default: Action,
        ex: &Exchange,
        budget: &mut Budget,
    ) -> Result<Action, PolicyError> {
        match self
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some((_, a)) => a.resolve(ex, budget),
            None => Ok(default),
        }
    }

    pub fn run(&self, ex: &mut Exchange, budget: &mut Budget) -> Result<Flow, PolicyError> {
        let Some(doc) = ex.info.examples.clone().filter(|d| d.described) else {
            return Ok(Flow::Continue);
        };
        let Some(status) = ex.response.as_ref().map(|r| r.status.as_u16()) else {
            return Ok(Flow::Continue);
        };
        let declared = doc.status(status).unwrap_or_default();
        let specified = self.specified.resolve(ex, budget)?;
        let unspecified = self.unspecified.resolve(ex, budget)?;
        let idle = |a: &ActionSpec| matches!(a, ActionSpec::Fixed(Action::Ignore));
        if specified == Action::Ignore
            && unspecified == Action::Ignore
            && self.headers.iter().all(|(_, a)| idle(a))
        {
            return Ok(Flow::Continue);
        }
        let mut findings = Vec::new();
        let Some(response) = ex.response.as_ref() else {
            return Ok(Flow::Continue);
        };
        for h in declared {
            let action = self.action(&h.name, specified, ex, budget)?;
            if action == Action::Ignore {
                continue;
            }
            let texts: Vec<Cow<'_, str>> = response
                .headers
                .get_all(h.name.as_str())
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()))
                .collect();
            if let Err(fault) = h.check(&doc.schemas, &texts) {
                findings.push(validation::parameter_finding(
                    &fault,
                    "header",
                    &h.name,
                    "ResponseHeader",
                    action,
                ));
            }
        }
        for name in response.headers.keys() {
            let name = name.as_str();
            if NOT_DECLARED.contains(&name) || declared.iter().any(|h| h.is(name)) {
                continue;
            }
            let action = self.action(name, unspecified, ex, budget)?;
            if action != Action::Ignore {
                findings.push(validation::unspecified_finding(
                    "header",
                    name,
                    "ResponseHeader",
                    action,
                ));
            }
        }
        match validation::record(ex, NAME, self.errors_variable.as_deref(), &findings) {
            Some(first) => validation::prevent(ex, NAME, self.section, first),
            None => Ok(Flow::Continue),
        }
    }
}

#[cfg(test)]
mod tests;
