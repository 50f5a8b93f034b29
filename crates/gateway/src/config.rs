//! The compiled configuration: a snapshot turned into the structures a request walks.
//!
//! Everything a request needs is computed here, once per configuration: the API table keyed by
//! lower-cased path, operation patterns, parsed upstream URLs, header names, and the key index
//! (SHA-256 of each key → the subscription it belongs to).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use gatehouse_model::resources::{Protocol, Scope, SubscriptionState};
use gatehouse_model::snapshot::{FORMAT_VERSION, Snapshot, SnapshotApi};
use http::HeaderName;
use http::uri::{Authority, Scheme};

use crate::route::CompiledOperation;

#[derive(Debug, thiserror::Error)]
#[error("cannot apply configuration revision {revision}: {target}: {message}")]
pub struct CompileError {
    pub revision: u64,
    pub target: String,
    pub message: String,
}

/// Where an API's requests go.
#[derive(Debug)]
pub struct Upstream {
    pub scheme: Scheme,
    pub authority: Authority,
    /// The service URL's path without its trailing `/` (possibly empty).
    pub base_path: Box<str>,
}

#[derive(Debug)]
pub struct CompiledApi {
    pub id: Arc<str>,
    pub index: usize,
    pub upstream: Option<Upstream>,
    pub http: bool,
    pub https: bool,
    /// No key is needed: the API does not require one, or it is in an open product.
    pub open: bool,
    pub key_header: HeaderName,
    pub key_query: Box<str>,
    pub operations: Vec<CompiledOperation>,
}

#[derive(Debug)]
enum Access {
    All,
    Api(usize),
    Product(usize),
}

#[derive(Debug)]
pub struct SubscriptionEntry {
    pub id: Arc<str>,
    active: bool,
    access: Access,
}

#[derive(Debug)]
pub struct CompiledConfig {
    pub revision: u64,
    pub gateway_id: Arc<str>,
    apis: Vec<CompiledApi>,
    /// Lower-cased API path → index into `apis`.
    by_path: HashMap<Box<str>, usize>,
    /// The most `/`-separated segments any API path has.
    max_depth: usize,
    /// For each product, the set of API indices it holds.
    product_apis: Vec<HashSet<usize>>,
    keys: HashMap<[u8; 32], Arc<SubscriptionEntry>>,
}

/// Outcome of checking a key against an API.
#[derive(Debug)]
pub enum KeyCheck<'a> {
    Valid(&'a Arc<SubscriptionEntry>),
    Invalid,
}

impl CompiledConfig {
    pub fn compile(snapshot: &Snapshot) -> Result<Self, CompileError> {
        let revision = snapshot.revision;
        let fail = |target: String, message: String| CompileError {
            revision,
            target,
            message,
        };
        if snapshot.format != FORMAT_VERSION {
            return Err(fail(
                "format".into(),
                format!(
                    "snapshot format {} is not supported by this gateway (it reads format {FORMAT_VERSION}); upgrade the gateway",
                    snapshot.format
                ),
            ));
        }

        let mut by_id: HashMap<&str, usize> = HashMap::new();
        let mut by_path = HashMap::new();
        let mut apis = Vec::with_capacity(snapshot.apis.len());
        let mut max_depth = 0;
        for (index, api) in snapshot.apis.iter().enumerate() {
            let path = api.path.trim_matches('/').to_ascii_lowercase();
            let depth = if path.is_empty() {
                0
            } else {
                path.split('/').count()
            };
            max_depth = max_depth.max(depth);
            if by_path.insert(path.into_boxed_str(), index).is_some() {
                return Err(fail(
                    format!("apis.{}.path", api.id),
                    format!("path '{}' is used by another API", api.path),
                ));
            }
            by_id.insert(&api.id, index);
            apis.push(compile_api(api, index).map_err(|(t, m)| fail(t, m))?);
        }

        let mut product_index: HashMap<&str, usize> = HashMap::new();
        let mut product_apis = Vec::with_capacity(snapshot.products.len());
        for product in &snapshot.products {
            let members: HashSet<usize> = product
                .apis
                .iter()
                .filter_map(|a| by_id.get(a.as_str()).copied())
                .collect();
            if !product.subscription_required {
                for &i in &members {
                    if let Some(api) = apis.get_mut(i) {
                        api.open = true;
                    }
                }
            }
            product_index.insert(&product.id, product_apis.len());
            product_apis.push(members);
        }

        let mut keys = HashMap::with_capacity(snapshot.subscriptions.len() * 2);
        for sub in &snapshot.subscriptions {
            let target = || format!("subscriptions.{}", sub.id);
            let access = match Scope::parse(&sub.scope) {
                Ok(Scope::AllApis) => Access::All,
                Ok(Scope::Api(id)) => match by_id.get(id.as_str()) {
                    Some(&i) => Access::Api(i),
                    // The API is not served here: the keys unlock nothing on this gateway.
                    None => continue,
                },
                Ok(Scope::Product(id)) => match product_index.get(id.as_str()) {
                    Some(&i) => Access::Product(i),
                    None => continue,
                },
                Err(e) => return Err(fail(target(), e)),
            };
            let entry = Arc::new(SubscriptionEntry {
                id: sub.id.as_str().into(),
                active: sub.state == SubscriptionState::Active,
                access,
            });
            for hash in &sub.key_hashes {
                let bytes = decode_hash(hash)
                    .ok_or_else(|| fail(target(), "a key hash is not 64 hex digits".into()))?;
                keys.insert(bytes, Arc::clone(&entry));
            }
        }

        Ok(Self {
            revision,
            gateway_id: snapshot.gateway_id.as_str().into(),
            apis,
            by_path,
            max_depth,
            product_apis,
            keys,
        })
    }

    pub fn api_count(&self) -> usize {
        self.apis.len()
    }

    /// Finds the API serving `path` (which starts with `/`): the one with the longest path
    /// that is a whole-segment prefix of it. Returns the API and the rest of the path.
    pub fn find_api<'p>(&self, path: &'p str) -> Option<(&CompiledApi, &'p str)> {
        let body = path.strip_prefix('/').unwrap_or(path);
        // Byte offsets where each of the first `max_depth` segments ends.
        let mut ends = Vec::with_capacity(self.max_depth.min(16));
        for (i, b) in body.bytes().enumerate() {
            if ends.len() >= self.max_depth {
                break;
            }
            if b == b'/' {
                ends.push(i);
            }
        }
        if ends.len() < self.max_depth && !body.is_empty() && !body.ends_with('/') {
            ends.push(body.len());
        }
        let lowered;
        let haystack = if body.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = body.to_ascii_lowercase();
            lowered.as_str()
        } else {
            body
        };
        for &end in ends.iter().rev() {
            if let Some(&i) = self.by_path.get(&haystack[..end]) {
                return self.apis.get(i).map(|api| (api, &body[end..]));
            }
        }
        let i = *self.by_path.get("")?;
        self.apis.get(i).map(|api| (api, path))
    }

    /// Checks whether `key` belongs to an active subscription that covers `api`.
    pub fn check_key(&self, api: &CompiledApi, key: &str) -> KeyCheck<'_> {
        let hash = hash_key(key);
        let Some(entry) = self.keys.get(&hash) else {
            return KeyCheck::Invalid;
        };
        let covers = match entry.access {
            Access::All => true,
            Access::Api(i) => i == api.index,
            Access::Product(p) => self
                .product_apis
                .get(p)
                .is_some_and(|set| set.contains(&api.index)),
        };
        if entry.active && covers {
            KeyCheck::Valid(entry)
        } else {
            KeyCheck::Invalid
        }
    }
}

fn compile_api(api: &SnapshotApi, index: usize) -> Result<CompiledApi, (String, String)> {
    let target = |p: &str| format!("apis.{}.{p}", api.id);
    let upstream = match &api.service_url {
        Some(url) => Some(parse_upstream(url).map_err(|m| (target("serviceUrl"), m))?),
        None => None,
    };
    let key_header = HeaderName::from_bytes(api.key_header.as_bytes()).map_err(|_| {
        (
            target("subscriptionKeyParameterNames.header"),
            format!("'{}' is not a valid header name", api.key_header),
        )
    })?;
    let mut operations = Vec::with_capacity(api.operations.len());
    for op in &api.operations {
        operations.push(
            CompiledOperation::compile(&op.id, &op.method, &op.url_template)
                .map_err(|m| (format!("apis.{}.operations.{}", api.id, op.id), m))?,
        );
    }
    Ok(CompiledApi {
        id: api.id.as_str().into(),
        index,
        upstream,
        http: api.protocols.contains(&Protocol::Http),
        https: api.protocols.contains(&Protocol::Https),
        open: !api.subscription_required,
        key_header,
        key_query: api.key_query.as_str().into(),
        operations,
    })
}

fn parse_upstream(url: &str) -> Result<Upstream, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("'{url}' is not a valid URL: {e}"))?;
    let scheme = uri
        .scheme()
        .filter(|s| *s == &Scheme::HTTP || *s == &Scheme::HTTPS)
        .cloned()
        .ok_or_else(|| format!("'{url}' must start with http:// or https://"))?;
    if scheme == Scheme::HTTPS {
        return Err(format!(
            "'{url}': https backends are not supported by this gateway build yet; use http"
        ));
    }
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| format!("'{url}' has no host"))?;
    let base_path = uri.path().trim_end_matches('/').into();
    Ok(Upstream {
        scheme,
        authority,
        base_path,
    })
}

/// SHA-256 of a subscription key: the form keys are indexed and shipped in.
pub fn hash_key(key: &str) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

fn decode_hash(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        *out.get_mut(i)? = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests;
