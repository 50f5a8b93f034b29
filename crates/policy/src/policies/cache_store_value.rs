//! `<cache-store-value key="…" value="…" duration="seconds" caching-type="internal"/>`: keeps a
//! value in the gateway's cache for `duration` seconds, for `cache-lookup-value` to read in this
//! or any later request (of any API: the key space is the gateway's, as in Azure).

use std::time::Duration;

use super::cache::{self, CacheEntry};
use super::cache_store::duration_param;
use super::param::Param;
use crate::compile::Cx;
use crate::exchange::Exchange;
use crate::run::{Budget, Flow, Io, PolicyError};
use crate::text::PolicyText;
use crate::xml::Element;

#[derive(Debug, Clone)]
pub struct CacheStoreValue {
    key: PolicyText,
    value: PolicyText,
    duration: Param<u64>,
    caching: cache::CachingType,
}

impl CacheStoreValue {
    pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Self> {
        cx.allow_attrs(el, &["key", "value", "duration", "caching-type"]);
        cx.no_children(el);
        let caching = cache::caching_type(cx, el);
        let key = cx.req_text(el, "key");
        let value = cx.req_text(el, "value");
        let duration = duration_param(cx, el);
        Some(Self {
            caching,
            key: key?,
            value: value?,
            duration: duration?,
        })
    }

    pub fn texts(&self) -> Vec<&PolicyText> {
        [Some(&self.key), Some(&self.value), self.duration.text()]
            .into_iter()
            .flatten()
            .collect()
    }

    pub async fn run<I: Io>(
        &self,
        ex: &mut Exchange,
        io: &mut I,
        budget: &mut Budget,
    ) -> Result<Flow, PolicyError> {
        let key = cache::value_key(&self.key.eval(ex, budget)?);
        let value = cache::storable(self.value.value(ex, budget)?);
        let ttl = Duration::from_secs(self.duration.get(ex, budget)?);
        io.cache_put(&key, CacheEntry::Value(value), ttl, self.caching)
            .await;
        Ok(Flow::Continue)
    }
}
