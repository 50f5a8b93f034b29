//! `<set-variable name="v" value="…"/>`: stores a value in `context.Variables`.

use crate::compile::Cx;
use crate::exchange::Exchange;
use crate::run::{Budget, Flow, PolicyError};
use crate::text::PolicyText;
use crate::xml::Element;

#[derive(Debug, Clone)]
pub struct SetVariable {
    pub name: String,
    pub value: PolicyText,
}

impl SetVariable {
    pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Self> {
        cx.allow_attrs(el, &["name", "value"]);
        cx.no_children(el);
        let name = cx.req_literal(el, "name")?;
        if name.trim().is_empty() {
            cx.error(el.pos, "<set-variable> needs a non-empty name");
            return None;
        }
        let value = cx.req_text(el, "value")?;
        Some(Self { name, value })
    }

    pub fn run(&self, ex: &mut Exchange, budget: &mut Budget) -> Result<Flow, PolicyError> {
        let v = self.value.value(ex, budget)?;
        ex.variables.insert(self.name.clone(), v);
        Ok(Flow::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;

    #[test]
    fn literal_and_typed_values() {
        let p = pipeline(
            r#"<policies><inbound>
                <set-variable name="n" value="@(40 + 2)" />
                <set-variable name="s" value="plain" />
                <set-header name="X-N"><value>@((int)context.Variables["n"] + 1)</value></set-header>
                <set-header name="X-S"><value>@(context.Variables.GetValueOrDefault<string>("s", "none"))</value></set-header>
            </inbound><backend><forward-request/></backend></policies>"#,
        );
        let mut ex = exchange("GET", "/", &[]);
        let io = run(&p, &mut ex);
        let sent = io.forwarded.unwrap();
        assert_eq!(all(&sent.headers, "x-n"), ["43"]);
        assert_eq!(all(&sent.headers, "x-s"), ["plain"]);
    }
}
