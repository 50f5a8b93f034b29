//! `<cache-remove-value key="…" caching-type="internal"/>`: removes a value `cache-store-value`
//! kept. Removing a key that is not there does nothing.

use super::cache;
use crate::compile::Cx;
use crate::exchange::Exchange;
use crate::run::{Budget, Flow, Io, PolicyError};
use crate::text::PolicyText;
use crate::xml::Element;

#[derive(Debug, Clone)]
pub struct CacheRemoveValue {
    key: PolicyText,
    caching: cache::CachingType,
}

impl CacheRemoveValue {
    pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Self> {
        cx.allow_attrs(el, &["key", "caching-type"]);
        cx.no_children(el);
        let caching = cache::caching_type(cx, el);
        Some(Self {
            key: cx.req_text(el, "key")?,
            caching,
        })
    }

    pub fn texts(&self) -> Vec<&PolicyText> {
        vec![&self.key]
    }

    pub async fn run<I: Io>(
        &self,
        ex: &mut Exchange,
        io: &mut I,
        budget: &mut Budget,
    ) -> Result<Flow, PolicyError> {
        let key = cache::value_key(&self.key.eval(ex, budget)?);
        io.cache_remove(&key, self.caching).await;
        Ok(Flow::Continue)
    }
}
