//! `<include-fragment fragment-id="name"/>`: the policies of a policy fragment, inserted where
//! the element stands. The fragment is compiled into the including document when that is
//! compiled (against the section and scope it lands in), so a request only runs its steps.
//! See [`crate::compile::Fragments`] for where fragments come from, and for the cycle guard.

use std::sync::Arc;

use super::Step;
use crate::compile::Cx;
use crate::exchange::Exchange;
use crate::run::{Budget, Flow, Io, PolicyError, run_steps};
use crate::xml::Element;

#[derive(Debug, Clone)]
pub struct IncludeFragment {
    pub id: Arc<str>,
    pub steps: Arc<[Step]>,
}

impl IncludeFragment {
    pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Self> {
        cx.allow_attrs(el, &["fragment-id"]);
        cx.no_children(el);
        let id = cx.req_literal(el, "fragment-id")?;
        let id = id.trim();
        if id.is_empty() {
            cx.error(el.pos, "'fragment-id' must name a policy fragment");
            return None;
        }
        let steps = cx.include(id, el.pos)?;
        Some(Self {
            id: id.into(),
            steps: steps.into(),
        })
    }

    pub async fn run<I: Io>(
        &self,
        ex: &mut Exchange,
        io: &mut I,
        budget: &mut Budget,
    ) -> Result<Flow, PolicyError> {
        run_steps(&self.steps, ex, io, budget).await
    }
}

#[cfg(test)]
mod tests;
