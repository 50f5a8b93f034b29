//! `<cache-lookup vary-by-developer="false" vary-by-developer-groups="false"
//! caching-type="internal" downstream-caching-type="none|private|public" must-revalidate="true"
//! allow-private-response-caching="false"><vary-by-header>Accept</vary-by-header>
//! <vary-by-query-parameter>version</vary-by-query-parameter></cache-lookup>`: answers a GET
//! request from the gateway's cache when `cache-store` kept a response for it, without calling
//! the backend (and skipping the rest of the pipeline, as `return-response` does).
//!
//! The key is the API, the operation, the product, the path, and the values of the listed query
//! parameters (others do not vary the key) and headers. `vary-by-developer` adds the caller's
//! user, or, since gateways do not know users, the subscription; gateways do not know groups
//! either, so `vary-by-developer-groups` varies by the same (never sharing more than Azure
//! would). Requests with an `Authorization` header are neither looked up nor stored unless
//! `allow-private-response-caching` is true.

use http::Method;

use super::cache::{self, CacheEntry, Downstream, ResponseCacheKey};
use super::param::{self, Param};
use crate::compile::Cx;
use crate::exchange::{Exchange, Response};
use crate::run::{Budget, Flow, Io, PolicyError};
use crate::text::PolicyText;
use crate::xml::Element;

#[derive(Debug, Clone)]
pub struct CacheLookup {
    vary_by_developer: Param<bool>,
    vary_by_groups: Param<bool>,
    downstream: Param<Downstream>,
    must_revalidate: Param<bool>,
    allow_private: Param<bool>,
    headers: Vec<String>,
    query: Vec<String>,
    caching: cache::CachingType,
}

impl CacheLookup {
    pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Self> {
        cx.allow_attrs(
            el,
            &[
                "vary-by-developer",
                "vary-by-developer-groups",
                "caching-type",
                "downstream-caching-type",
                "must-revalidate",
                "allow-private-response-caching",
            ],
        );
        cx.allow_children(el, &["vary-by-header", "vary-by-query-parameter"]);
        for required in ["vary-by-developer", "vary-by-developer-groups"] {
            if el.attr(required).is_none() {
                cx.error(
                    el.pos,
                    format!("<cache-lookup> needs the attribute '{required}' (true or false)"),
                );
            }
        }
        let vary_by_developer = param::bool_param(cx, el, "vary-by-developer", false);
        let vary_by_groups = param::bool_param(cx, el, "vary-by-developer-groups", false);
        let caching = cache::caching_type(cx, el);
        let downstream = Param::compile(
            cx,
            el,
            "downstream-caching-type",
            "none, private or public",
            cache::parse_downstream,
            Downstream::None,
        );
        let must_revalidate = param::bool_param(cx, el, "must-revalidate", true);
        let allow_private = param::bool_param(cx, el, "allow-private-response-caching", false);
        let mut headers = Vec::new();
        let mut query = Vec::new();
        for child in el.elements() {
            cx.allow_attrs(child, &[]);
            let Some((text, pos, _)) = child.text() else {
                cx.error(child.pos, format!("<{}> must hold a name", child.name));
                continue;
            };
            if crate::text::looks_like_expr(&text) {
                cx.error(
                    pos,
                    format!("<{}> takes a name, not an expression", child.name),
                );
                continue;
            }
            if child.name == "vary-by-header" {
                let name = text.trim();
                if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    cx.error(pos, format!("'{name}' is not a valid header name"));
                    continue;
                }
                headers.push(name.to_ascii_lowercase());
            } else {
                // Azure accepts several parameters in one element, separated by ';'.
                query.extend(
                    text.split(';')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned),
                );
            }
        }
        Some(Self {
            vary_by_developer,
            vary_by_groups,
            downstream,
            must_revalidate,
            allow_private,
            headers,
            query,
            caching,
        })
    }

    pub fn texts(&self) -> Vec<&PolicyText> {
        [
            self.vary_by_developer.text(),
            self.vary_by_groups.text(),
            self.downstream.text(),
            self.must_revalidate.text(),
            self.allow_private.text(),
        ]
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
        if ex.request.method != Method::GET {
            return Ok(Flow::Continue);
        }
        if ex.request.headers.contains_key(http::header::AUTHORIZATION)
            && !self.allow_private.get(ex, budget)?
        {
            return Ok(Flow::Continue);
        }
        let mut vary: Vec<(char, String, String)> = Vec::new();
        for name in &self.query {
            let values: Vec<String> = ex
                .request
                .query
                .as_deref()
                .unwrap_or("")
                .split('&')
                .filter_map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    (super::set_query_parameter::decode(k) == *name)
                        .then(|| super::set_query_parameter::decode(v))
                })
                .collect();
            vary.push(('q', name.clone(), values.join(",")));
        }
        for name in &self.headers {
            let values: Vec<String> = ex
                .request
                .headers
                .get_all(name.as_str())
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect();
            vary.push(('h', name.clone(), values.join(",")));
        }
        let by_developer = self.vary_by_developer.get(ex, budget)?;
        let by_groups = self.vary_by_groups.get(ex, budget)?;
        if by_developer || by_groups {
            let developer = match (&ex.info.user, &ex.info.subscription) {
                (Some(u), _) => format!("user:{}", u.id),
                (None, Some(s)) => format!("subscription:{}", s.id),
                (None, None) => "anonymous".to_owned(),
            };
            vary.push(('d', String::new(), developer));
        }
        let key = ResponseCacheKey {
            key: cache::response_key(ex, &vary),
            downstream: self.downstream.get(ex, budget)?,
            must_revalidate: self.must_revalidate.get(ex, budget)?,
        };
        let hit = io.cache_get(&key.key, self.caching).await;
        if let Some(CacheEntry::Response(cached)) = hit {
            let left = cached
                .expires
                .duration_since(std::time::SystemTime::now())
                .map_or(0, |d| d.as_secs());
            let mut headers = cached.headers.clone();
            key.apply_downstream(&mut headers, left);
            ex.response = Some(Response {
                status: cached.status,
                reason: cached.reason.clone(),
                headers,
                body: Some(cached.body.clone()),
            });
            ex.cache_hit = Some(true);
            return Ok(Flow::Return);
        }
        ex.cache_hit = Some(false);
        ex.response_cache = Some(key);
        Ok(Flow::Continue)
    }
}
