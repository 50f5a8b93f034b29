//! What the caching policies share: the entries of the gateway's cache ([`CacheEntry`], reached
//! through [`crate::Io::cache_get`] and friends), the key `cache-lookup` builds for a response and
//! leaves for `cache-store` ([`ResponseCacheKey`]), and the `caching-type` attribute.
//!
//! The gateway has its own cache (one per process, shared by its workers, bounded in bytes,
//! kept across configuration changes, lost on restart) and, when started with `--redis`, an
//! external one shared by its replicas. `caching-type` picks: `internal` the own cache,
//! `external` and the default `prefer-external` the external one when the gateway has one, else
//! the own cache. Response entries and value entries live in separate key spaces.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};

use crate::compile::Cx;
use crate::exchange::Exchange;
use crate::expr::Value;
use crate::xml::Element;

/// A response `cache-store` kept.
#[derive(Debug, Clone)]
pub struct CachedResponse {
    pub status: StatusCode,
    pub reason: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// When the entry stops being served (for `max-age` of downstream caching).
    pub expires: SystemTime,
}

/// One entry of the gateway's cache.
#[derive(Debug, Clone)]
pub enum CacheEntry {
    /// Stored by `cache-store`, served by `cache-lookup`.
    Response(Arc<CachedResponse>),
    /// Stored by `cache-store-value`, read by `cache-lookup-value`. Only plain data: a value
    /// that refers to a request (`context.Request`…) is stored as its text.
    Value(Value),
}

impl CacheEntry {
    /// About how many bytes the entry holds, for the cache's bound.
    pub fn weight(&self) -> usize {
        match self {
            Self::Response(r) => {
                let headers: usize = r
                    .headers
                    .iter()
                    .map(|(k, v)| k.as_str().len() + v.len() + 16)
                    .sum();
                r.body.len() + headers + 64
            }
            Self::Value(v) => value_weight(v) + 16,
        }
    }
}

fn value_weight(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len(),
        Value::Bytes(b) => b.len(),
        Value::Array(items) => items.iter().map(value_weight).sum::<usize>() + 16,
        Value::Json(j) => j.to_json_string(false).len(),
        Value::Jwt(j) => {
            let json = |o: &crate::expr::JsonObject| {
                crate::expr::Json::Object(Arc::new(o.clone()))
                    .to_json_string(false)
                    .len()
            };
            json(j.header()) + json(j.payload())
        }
        _ => 16,
    }
}

/// `v` as it may be kept beyond its request.
pub(crate) fn storable(v: Value) -> Value {
    match v {
        Value::Handle(_) => Value::String(v.to_policy_string().into()),
        Value::Array(items) => Value::Array(items.iter().cloned().map(storable).collect()),
        other => other,
    }
}

/// `downstream-caching-type` of `cache-lookup`: what clients and proxies may cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Downstream {
    None,
    Private,
    Public,
}

pub(crate) fn parse_downstream(s: &str) -> Option<Downstream> {
    match s.to_ascii_lowercase().as_str() {
        "none" => Some(Downstream::None),
        "private" => Some(Downstream::Private),
        "public" => Some(Downstream::Public),
        _ => None,
    }
}

/// What `cache-lookup` leaves on the exchange for `cache-store`: the key of this request's
/// response and how clients may cache it.
#[derive(Debug, Clone)]
pub struct ResponseCacheKey {
    pub key: String,
    pub downstream: Downstream,
    pub must_revalidate: bool,
}

impl ResponseCacheKey {
    /// Sets `Cache-Control` on a response that may be cached downstream for `max_age` seconds.
    pub(crate) fn apply_downstream(&self, headers: &mut HeaderMap, max_age: u64) {
        let scope = match self.downstream {
            Downstream::None => return,
            Downstream::Private => "private",
            Downstream::Public => "public",
        };
        let mut value = format!("{scope}, max-age={max_age}");
        if self.must_revalidate {
            value.push_str(", must-revalidate");
        }
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(http::header::CACHE_CONTROL, v);
        }
    }
}

/// The key space of responses: API, operation, product and path, then what the policy varies by.
pub(crate) fn response_key(ex: &Exchange, vary: &[(char, String, String)]) -> String {
    let i = &ex.info;
    let mut key = String::with_capacity(96);
    key.push_str("response\u{1f}");
    for part in [
        &*i.api_id,
        &*i.operation_id,
        i.product.as_ref().map_or("", |p| &*p.0),
        &ex.request.path,
    ] {
        key.push_str(part);
        key.push('\u{1f}');
    }
    for (kind, name, value) in vary {
        key.push(*kind);
        key.push(':');
        key.push_str(name);
        key.push('=');
        key.push_str(value);
        key.push('\u{1f}');
    }
    key
}

/// The key space of `cache-store-value` and friends (shared by every API, as in Azure).
pub(crate) fn value_key(key: &str) -> String {
    format!("value\u{1f}{key}")
}

/// `caching-type`: which cache a policy reads and writes, passed to the gateway with each call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CachingType {
    /// The external cache when the gateway has one, else its own.
    #[default]
    PreferExternal,
    /// The external cache. A gateway without one uses its own, as for `prefer-external`: the
    /// same configuration reaches gateways with and without `--redis`.
    External,
    /// The gateway's own cache.
    Internal,
}

impl CachingType {
    /// Whether a gateway that has an external cache (`has_external`) uses it.
    pub fn external(self, has_external: bool) -> bool {
        has_external && self != Self::Internal
    }
}

/// `caching-type="prefer-external | external | internal"`.
pub(crate) fn caching_type(cx: &mut Cx<'_>, el: &Element) -> CachingType {
    match cx.choice(
        el,
        "caching-type",
        &["prefer-external", "external", "internal"],
        "prefer-external",
    ) {
        "external" => CachingType::External,
        "internal" => CachingType::Internal,
        _ => CachingType::PreferExternal,
    }
}
