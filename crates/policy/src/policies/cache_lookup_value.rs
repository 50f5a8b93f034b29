//! `<cache-lookup-value key="…" default-value="…" variable-name="…" caching-type="internal"/>`:
//! reads a value `cache-store-value` kept into a context variable. On a miss the variable gets
//! `default-value` when one is given, and is left unset otherwise (so
//! `context.Variables.ContainsKey(…)` tells a miss, as in Azure's examples).

use super::cache::{self, CacheEntry};
use crate::compile::Cx;
use crate::exchange::Exchange;
use crate::run::{Budget, Flow, Io, PolicyError};
use crate::text::PolicyText;
use crate::xml::Element;

#[derive(Debug, Clone)]
pub struct CacheLookupValue {
    key: PolicyText,
    default: Option<PolicyText>,
    variable: String,
    caching: cache::CachingType,
}

impl CacheLookupValue {
    pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Self> {
        cx.allow_attrs(
            el,
            &["key", "default-value", "variable-name", "caching-type"],
        );
        cx.no_children(el);
        let caching = cache::caching_type(cx, el);
        let key = cx.req_text(el, "key");
        let default = cx.opt_text(el, "default-value");
        let variable = cx.req_literal(el, "variable-name");
        let (key, variable) = (key?, variable?);
        if variable.trim().is_empty() {
            cx.error(el.pos, "'variable-name' must not be empty");
            return None;
        }
        Some(Self {
            caching,
            key,
            default,
            variable: variable.trim().to_owned(),
        })
    }

    pub fn texts(&self) -> Vec<&PolicyText> {
        std::iter::once(&self.key)
            .chain(self.default.iter())
            .collect()
    }

    pub async fn run<I: Io>(
        &self,
        ex: &mut Exchange,
        io: &mut I,
        budget: &mut Budget,
    ) -> Result<Flow, PolicyError> {
        let key = cache::value_key(&self.key.eval(ex, budget)?);
        match io.cache_get(&key, self.caching).await {
            Some(CacheEntry::Value(v)) => {
                ex.variables.insert(self.variable.clone(), v);
            }
            _ => {
                if let Some(d) = &self.default {
                    let v = d.value(ex, budget)?;
                    ex.variables.insert(self.variable.clone(), v);
                }
            }
        }
        Ok(Flow::Continue)
    }
}
