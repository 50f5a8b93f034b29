//! `<set-backend-service base-url="https://…"/>`: sends this request to another backend.

use crate::compile::Cx;
use crate::exchange::Exchange;
use crate::run::{Budget, Flow, PolicyError};
use crate::text::PolicyText;
use crate::xml::Element;

#[derive(Debug, Clone)]
pub struct SetBackendService {
    pub base_url: PolicyText,
}

impl SetBackendService {
    pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Self> {
        cx.allow_attrs(el, &["base-url", "backend-id"]);
        cx.no_children(el);
        if el.attr("backend-id").is_some() {
            let pos = el.attr("backend-id").map_or(el.pos, |a| a.pos);
            cx.error(
                pos,
                "backend-id is not supported by this gateway yet; use base-url",
            );
            return None;
        }
        let base_url = cx.req_text(el, "base-url")?;
        if let Some(u) = base_url.as_literal()
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            let pos = el.attr("base-url").map_or(el.pos, |a| a.pos);
            cx.error(
                pos,
                format!("base-url '{u}' must be an absolute http:// or https:// URL"),
            );
            return None;
        }
        Some(Self { base_url })
    }

    pub fn texts(&self) -> Vec<&PolicyText> {
        vec![&self.base_url]
    }

    pub fn run(&self, ex: &mut Exchange, budget: &mut Budget) -> Result<Flow, PolicyError> {
        let url = self.base_url.eval(ex, budget)?.trim().to_owned();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(PolicyError::runtime(
                "InvalidBackendUrl",
                format!("'{url}' is not an absolute http:// or https:// URL"),
            ));
        }
        ex.backend_url = Some(url);
        Ok(Flow::Continue)
    }
}
