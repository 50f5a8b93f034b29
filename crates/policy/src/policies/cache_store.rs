//! `<cache-store duration="seconds" cache-response="false"/>`: keeps the response in the
//! gateway's cache under the key `cache-lookup` computed for this request (without a
//! `cache-lookup` that ran for a GET, nothing is stored). Only `200 OK` responses are kept unless
//! `cache-response` is true. The pipeline buffers the response body for it. With
//! `downstream-caching-type` on the lookup, the response also gets `Cache-Control` for clients.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::StatusCode;
use http::header::{CONTENT_LENGTH, SET_COOKIE, TRANSFER_ENCODING};

use super::cache::{CacheEntry, CachedResponse};
use super::param::{self, Param};
use crate::compile::Cx;
use crate::exchange::Exchange;
use crate::run::{Budget, Flow, Io, PolicyError};
use crate::text::PolicyText;
use crate::xml::Element;

#[derive(Debug, Clone)]
pub struct CacheStore {
    duration: Param<u64>,
    cache_response: Param<bool>,
    caching: super::cache::CachingType,
}

pub(crate) fn parse_duration(s: &str) -> Option<u64> {
    s.parse::<u64>()
        .ok()
        .filter(|d| (1..=u64::from(u32::MAX)).contains(d))
}

pub(crate) const DURATION: &str = "a whole number of seconds from 1";

pub(crate) fn duration_param(cx: &mut Cx<'_>, el: &Element) -> Option<Param<u64>> {
    if el.attr("duration").is_none() {
        cx.error(
            el.pos,
            format!("<{}> needs the attribute 'duration' (seconds)", el.name),
        );
        return None;
    }
    Some(Param::compile(
        cx,
        el,
        "duration",
        DURATION,
        parse_duration,
        1,
    ))
}

impl CacheStore {
    pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Self> {
        cx.allow_attrs(el, &["duration", "cache-response", "caching-type"]);
        cx.no_children(el);
        let caching = super::cache::caching_type(cx, el);
        let duration = duration_param(cx, el)?;
        let cache_response = param::bool_param(cx, el, "cache-response", false);
        Some(Self {
            caching,
            duration,
            cache_response,
        })
    }

    pub fn texts(&self) -> Vec<&PolicyText> {
        self.duration
            .text()
            .into_iter()
            .chain(self.cache_response.text())
            .collect()
    }

    pub async fn run<I: Io>(
        &self,
        ex: &mut Exchange,
        io: &mut I,
        budget: &mut Budget,
    ) -> Result<Flow, PolicyError> {
        let Some(lookup) = ex.response_cache.clone() else {
            return Ok(Flow::Continue);
        };
        let seconds = self.duration.get(ex, budget)?;
        let any_status = self.cache_response.get(ex, budget)?;
        let Some(response) = ex.response.as_mut() else {
            return Ok(Flow::Continue);
        };
        if !any_status && response.status != StatusCode::OK {
            return Ok(Flow::Continue);
        }
        // Someone's session cookie must never be served to someone else.
        if response.headers.contains_key(SET_COOKIE) {
            return Ok(Flow::Continue);
        }
        let Some(body) = response.body.clone() else {
            return Ok(Flow::Continue);
        };
        let ttl = Duration::from_secs(seconds);
        let mut headers = response.headers.clone();
        headers.remove(CONTENT_LENGTH);
        headers.remove(TRANSFER_ENCODING);
        let entry = CachedResponse {
            status: response.status,
            reason: response.reason.clone(),
            headers,
            body,
            expires: SystemTime::now() + ttl,
        };
        lookup.apply_downstream(&mut response.headers, seconds);
        io.cache_put(
            &lookup.key,
            CacheEntry::Response(Arc::new(entry)),
            ttl,
            self.caching,
        )
        .await;
        Ok(Flow::Continue)
    }
}

#[cfg(test)]
mod tests;
