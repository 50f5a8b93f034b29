//! `<set-method>POST</set-method>`: changes the method of the request to the backend.

use http::Method;

use crate::compile::Cx;
use crate::exchange::Exchange;
use crate::run::{Budget, Flow, PolicyError};
use crate::text::PolicyText;
use crate::xml::Element;

#[derive(Debug, Clone)]
pub struct SetMethod {
    pub method: PolicyText,
}

impl SetMethod {
    pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Self> {
        cx.allow_attrs(el, &[]);
        let method = cx.content(el)?;
        if let Some(lit) = method.as_literal()
            && (lit.is_empty() || Method::from_bytes(lit.as_bytes()).is_err())
        {
            cx.error(el.pos, format!("'{lit}' is not an HTTP method"));
            return None;
        }
        Some(Self { method })
    }

    pub fn run(&self, ex: &mut Exchange, budget: &mut Budget) -> Result<Flow, PolicyError> {
        let text = self.method.eval(ex, budget)?;
        ex.request.method = Method::from_bytes(text.trim().to_ascii_uppercase().as_bytes())
            .map_err(|_| {
                PolicyError::runtime("InvalidMethod", format!("'{text}' is not an HTTP method"))
            })?;
        Ok(Flow::Continue)
    }
}
