//! The compiled configuration: a snapshot turned into the structures a request walks.
//!
//! Everything a request needs is computed here, once per configuration: the API table keyed by
//! lower-cased path, operation patterns, parsed upstream URLs, header names, and the key index
//! (SHA-256 of each key → the subscription it belongs to).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use gatehouse_model::resources::{Protocol, Scope, SubscriptionState};
use gatehouse_model::snapshot::{FORMAT_VERSION, Snapshot, SnapshotApi};
use http::HeaderName;
use http::uri::{Authority, Scheme};

use gatehouse_policy::{Mode, Pipeline, PolicyDocument, Scope as PolicyScope};

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
    pub name: Arc<str>,
    pub path: Arc<str>,
    pub version: Option<Arc<str>>,
    pub service_url: Option<Arc<str>>,
    pub index: usize,
    pub upstream: Option<Upstream>,
    pub http: bool,
    pub https: bool,
    /// No key is needed: the API does not require one, or it is in an open product.
    pub open: bool,
    pub key_header: HeaderName,
    pub key_query: Box<str>,
    pub operations: Vec<CompiledOperation>,
    /// Answers CORS preflights no operation matches (see [`crate::proxy`]); `None` when the
    /// API's effective inbound policy has no cors policy.
    pub preflight: Option<CompiledOperation>,
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
    pub name: Arc<str>,
    active: bool,
    access: Access,
}

impl SubscriptionEntry {
    /// The product a product-scoped subscription belongs to.
    pub fn product(&self) -> Option<usize> {
        match self.access {
            Access::Product(p) => Some(p),
            _ => None,
        }
    }
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
    /// For each product, its id and display name (`context.Product`).
    pub products: Vec<(Arc<str>, Arc<str>)>,
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

        // Policies first: every API's pipelines are composed from them.
        let named: HashMap<String, String> = snapshot
            .named_values
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let fragments = &snapshot.policy_fragments;
        let global = match &snapshot.global_policy {
            Some(xml) => compile_doc(
                xml,
                PolicyScope::Global,
                &named,
                fragments,
                "globalPolicy".into(),
            )
            .map_err(|(t, m)| fail(t, m))?,
            None => PolicyDocument::default_global(),
        };
        let mut product_docs = Vec::with_capacity(snapshot.products.len());
        for product in &snapshot.products {
            product_docs.push(match &product.policy {
                Some(xml) => Some(
                    compile_doc(
                        xml,
                        PolicyScope::Product,
                        &named,
                        fragments,
                        format!("products.{}.policy", product.id),
                    )
                    .map_err(|(t, m)| fail(t, m))?,
                ),
                None => None,
            });
        }
        let docs = Docs {
            global,
            products: product_docs,
            named,
            fragments,
        };
        let mut products_of: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, product) in snapshot.products.iter().enumerate() {
            for api in &product.apis {
                products_of.entry(api.as_str()).or_default().push(i);
            }
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
            let products = products_of
                .get(api.id.as_str())
                .map_or(&[][..], Vec::as_slice);
            apis.push(compile_api(api, index, &docs, products).map_err(|(t, m)| fail(t, m))?);
        }

        let mut product_index: HashMap<&str, usize> = HashMap::new();
        let mut product_apis = Vec::with_capacity(snapshot.products.len());
        let mut products = Vec::with_capacity(snapshot.products.len());
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
            products.push((
                Arc::<str>::from(product.id.as_str()),
                Arc::<str>::from(if product.name.is_empty() {
                    product.id.as_str()
                } else {
                    product.name.as_str()
                }),
            ));
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
                name: if sub.name.is_empty() {
                    sub.id.as_str().into()
                } else {
                    sub.name.as_str().into()
                },
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
            products,
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

/// Policy documents compiled for one configuration.
struct Docs<'s> {
    global: PolicyDocument,
    /// By product index; `None` when the product has no policy.
    products: Vec<Option<PolicyDocument>>,
    named: HashMap<String, String>,
    /// The policy fragments `<include-fragment>` inlines.
    fragments: &'s BTreeMap<String, String>,
}

fn compile_doc(
    xml: &str,
    scope: PolicyScope,
    named: &HashMap<String, String>,
    fragments: &BTreeMap<String, String>,
    target: String,
) -> Result<PolicyDocument, (String, String)> {
    let (doc, diags) =
        gatehouse_policy::compile::compile_with(xml, scope, named, fragments, Mode::Strict);
    doc.ok_or_else(|| {
        let first = diags
            .iter()
            .find(|d| d.severity == gatehouse_policy::Severity::Error)
            .map_or_else(
                || "the policy does not compile".to_owned(),
                |d| d.to_string(),
            );
        (target, first)
    })
}

fn compile_api(
    api: &SnapshotApi,
    index: usize,
    docs: &Docs<'_>,
    products_of_api: &[usize],
) -> Result<CompiledApi, (String, String)> {
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
    let api_doc = match &api.policy {
        Some(xml) => Some(compile_doc(
            xml,
            PolicyScope::Api,
            &docs.named,
            docs.fragments,
            target("policy"),
        )?),
        None => None,
    };
    let mut operations = Vec::with_capacity(api.operations.len());
    for op in &api.operations {
        let mut compiled = CompiledOperation::compile(&op.id, &op.method, &op.url_template)
            .map_err(|m| (format!("apis.{}.operations.{}", api.id, op.id), m))?;
        compiled.name = op.display_name.as_str().into();
        compiled.examples = api.examples.get(&op.id).cloned().map(Arc::new);
        let op_doc = match api.operation_policies.get(&op.id) {
            Some(xml) => Some(compile_doc(
                xml,
                PolicyScope::Operation,
                &docs.named,
                docs.fragments,
                format!("apis.{}.operations.{}.policy", api.id, op.id),
            )?),
            None => None,
        };
        let compose = |product: Option<&PolicyDocument>| {
            Arc::new(Pipeline::compose(
                &docs.global,
                product,
                api_doc.as_ref(),
                op_doc.as_ref(),
            ))
        };
        compiled.policy.default = compose(None);
        for &p in products_of_api {
            if let Some(Some(doc)) = docs.products.get(p) {
                compiled.policy.by_product.push((p, compose(Some(doc))));
            }
        }
        operations.push(compiled);
    }
    // CORS preflights for paths no operation declares are answered by the API's (or the
    // global) cors policy, when there is one.
    let api_pipeline = Pipeline::compose(&docs.global, None, api_doc.as_ref(), None);
    let preflight = if api_pipeline.answers_preflight() {
        let mut op = CompiledOperation::compile("cors-preflight", "*", "/")
            .map_err(|m| (target("policy"), m))?;
        op.policy.default = Arc::new(api_pipeline);
        Some(op)
    } else {
        None
    };
    Ok(CompiledApi {
        preflight,
        id: api.id.as_str().into(),
        name: if api.name.is_empty() {
            api.id.as_str().into()
        } else {
            api.name.as_str().into()
        },
        path: api.path.as_str().into(),
        version: api.version.as_deref().map(Into::into),
        service_url: api.service_url.as_deref().map(Into::into),
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

pub(crate) fn parse_upstream(url: &str) -> Result<Upstream, String> {
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
