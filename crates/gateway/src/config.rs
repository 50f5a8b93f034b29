//! The compiled configuration: a snapshot turned into the structures a request walks.
//!
//! Everything a request needs is computed here, once per configuration: the API table keyed by
//! lower-cased path, operation patterns, parsed upstream URLs, header names, and the key index
//! (SHA-256 of each key → the subscription it belongs to).
//!
//! [`CompiledConfig::update`] applies a delta from the control plane to a compiled
//! configuration: the APIs it does not touch are shared with the previous configuration, not
//! recompiled, and a change to subscriptions only patches a copy of the key index. Anything
//! that changes every pipeline (the global policy, named values, fragments) or renumbers the
//! products compiles in full. Tests check that both ways give the same configuration.
//!
//! One API that cannot be compiled (a snapshot from a newer control plane, a broken backup)
//! does not cost the others: it is kept as an unavailable API that answers its calls with 500,
//! and [`CompiledConfig::problems`] names it, for `/readyz`, the heartbeat and `/metrics`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use gatehouse_model::resources::{Protocol, Scope, SubscriptionState};
use gatehouse_model::snapshot::{
    Delta, FORMAT_VERSION, Snapshot, SnapshotApi, SnapshotProduct, SnapshotSubscription,
};
use http::HeaderName;
use http::uri::{Authority, Scheme};

use gatehouse_policy::{Mode, Pipeline, PolicyDocument, Scope as PolicyScope};

use crate::route::CompiledOperation;

pub mod backends;
pub mod tls;

pub use backends::Backends;
pub use tls::CompiledTls;

#[derive(Debug, thiserror::Error)]
#[error("cannot apply configuration revision {revision}: {target}: {message}")]
pub struct CompileError {
    pub revision: u64,
    pub target: String,
    pub message: String,
}

/// Where an API's requests go.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub scheme: Scheme,
    pub authority: Authority,
    /// The service URL's path without its trailing `/` (possibly empty).
    pub base_path: Box<str>,
    /// The `Host` header the backend gets: the authority, made once per configuration.
    pub host: http::HeaderValue,
    /// Where the upstream pools keep its connections, and the name its certificate must carry.
    pub target: crate::upstream::Target,
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
    pub key_query: Arc<str>,
    pub operations: Vec<CompiledOperation>,
    /// Answers CORS preflights no operation matches (see [`crate::proxy`]); `None` when the
    /// API's effective inbound policy has no cors policy.
    pub preflight: Option<CompiledOperation>,
    /// Why this gateway cannot serve the API; `None` for every API that compiled. An
    /// unavailable API has no operations, so its calls reach [`CompiledApi::unmatched`].
    pub unavailable: Option<Arc<ApiProblem>>,
}

/// An API of the snapshot this gateway could not compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiProblem {
    pub api: Arc<str>,
    /// What in the snapshot was refused, as `apis.{id}.serviceUrl`.
    pub target: String,
    pub message: String,
}

impl std::fmt::Display for ApiProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "API '{}' is not served: {}: {}",
            self.api, self.target, self.message
        )
    }
}

impl CompiledApi {
    /// The failure of a call no operation of this API takes: not found, or, when the API
    /// could not be compiled, unavailable. Only the no-match path pays for the check.
    pub fn unmatched(&self) -> crate::error::DataPlaneError {
        match &self.unavailable {
            None => crate::error::DataPlaneError::NotFound,
            Some(problem) => crate::error::DataPlaneError::ApiUnavailable(problem.clone()),
        }
    }

    /// An API that could not be compiled: it keeps its place (path, index, protocols) and
    /// serves nothing, so its calls get 500 instead of reaching another API or a 404.
    fn unavailable(api: &SnapshotApi, index: usize, target: String, message: String) -> Self {
        let problem = ApiProblem {
            api: api.id.as_str().into(),
            target,
            message,
        };
        tracing::error!(problem = %problem, "an API of the configuration cannot be compiled; its calls get 500 and every other API is served");
        Self {
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
            upstream: None,
            http: api.protocols.contains(&Protocol::Http),
            https: api.protocols.contains(&Protocol::Https),
            open: false,
            key_header: HeaderName::from_static("ocp-apim-subscription-key"),
            key_query: Arc::from(DEFAULT_KEY_QUERY),
            operations: Vec::new(),
            preflight: None,
            unavailable: Some(Arc::new(problem)),
        }
    }
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
    /// By index. An API removed by an update leaves `None`, so the others keep their index
    /// (subscriptions and products refer to APIs by it); a full compile packs them again.
    apis: Arc<Vec<Option<Arc<CompiledApi>>>>,
    /// Lower-cased API path → index into `apis`.
    by_path: Arc<HashMap<Box<str>, usize>>,
    /// API id → index into `apis`.
    by_id: Arc<HashMap<Arc<str>, usize>>,
    /// The most `/`-separated segments any API path has.
    max_depth: usize,
    /// For each product, the set of API indices it holds.
    product_apis: Arc<Vec<HashSet<usize>>>,
    /// For each product, its id and display name (`context.Product`).
    pub products: Arc<Vec<(Arc<str>, Arc<str>)>>,
    keys: KeyIndex,
    /// Every query parameter name that carries a subscription key (`subscription-key` and
    /// each API's own), so logs drop them from any URL, matched or not.
    pub key_params: Arc<[Arc<str>]>,
    /// Verifies the user address of the portal's Try it calls; `None`: none is believed.
    pub tryit: Option<crate::tryit::TryItKey>,
    /// What an update needs to compile APIs the way this configuration was compiled.
    sources: Arc<Sources>,
    /// The hostname certificates and CA certificates of the snapshot, compiled once; shared
    /// with the next configuration when a delta leaves them alone.
    pub tls: Arc<CompiledTls>,
    /// The backends `set-backend-service backend-id` sends to, and the client certificates;
    /// shared with the next configuration when a delta leaves them (and what they use) alone.
    pub backends: Arc<Backends>,
    /// The APIs of the snapshot that could not be compiled, in the snapshot's order.
    problems: Arc<[Arc<ApiProblem>]>,
    /// The loggers `log-to-eventhub` sends to; shared with the next configuration when a
    /// delta leaves them alone.
    pub loggers: Arc<crate::loggers::CompiledLoggers>,
}

/// Shards of the key index: an update copies the few shards it changes, not the index.
const SHARDS: usize = 256;

type Shard<K, V> = Arc<HashMap<K, V>>;

/// SHA-256 of each key → the subscription it belongs to, in shards by the hash's first byte;
/// and each subscription's key hashes, in shards by its id, so an update finds what to drop.
#[derive(Debug, Clone)]
struct KeyIndex {
    keys: Vec<Shard<[u8; 32], Arc<SubscriptionEntry>>>,
    of_subscription: Vec<Shard<Arc<str>, Vec<[u8; 32]>>>,
}

fn shard_of_id(id: &str) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = rustc_hash::FxHasher::default();
    id.hash(&mut h);
    (h.finish() % SHARDS as u64) as usize
}

impl KeyIndex {
    fn new() -> Self {
        Self {
            keys: vec![Arc::default(); SHARDS],
            of_subscription: vec![Arc::default(); SHARDS],
        }
    }

    fn get(&self, hash: &[u8; 32]) -> Option<&Arc<SubscriptionEntry>> {
        self.keys.get(usize::from(hash[0]))?.get(hash)
    }

    fn insert(&mut self, hash: [u8; 32], entry: Arc<SubscriptionEntry>) {
        let id = entry.id.clone();
        if let Some(shard) = self.keys.get_mut(usize::from(hash[0])) {
            Arc::make_mut(shard).insert(hash, entry);
        }
        if let Some(shard) = self.of_subscription.get_mut(shard_of_id(&id)) {
            Arc::make_mut(shard).entry(id).or_default().push(hash);
        }
    }

    /// Drops a subscription's keys.
    fn remove(&mut self, id: &str) {
        let Some(shard) = self.of_subscription.get_mut(shard_of_id(id)) else {
            return;
        };
        if !shard.contains_key(id) {
            return;
        }
        let Some(hashes) = Arc::make_mut(shard).remove(id) else {
            return;
        };
        for hash in hashes {
            if let Some(keys) = self.keys.get_mut(usize::from(hash[0]))
                && keys.get(&hash).is_some_and(|e| &*e.id == id)
            {
                Arc::make_mut(keys).remove(&hash);
            }
        }
    }

    #[cfg(test)]
    fn iter(&self) -> impl Iterator<Item = (&[u8; 32], &Arc<SubscriptionEntry>)> {
        self.keys.iter().flat_map(|shard| shard.iter())
    }
}

/// The compiled policy documents and the products as the snapshot had them.
#[derive(Debug)]
struct Sources {
    docs: Docs,
    products: Vec<SnapshotProduct>,
}

/// Outcome of checking a key against an API.
#[derive(Debug)]
pub enum KeyCheck<'a> {
    Valid(&'a Arc<SubscriptionEntry>),
    Invalid,
}

fn failure(revision: u64) -> impl Fn(String, String) -> CompileError {
    move |target, message| CompileError {
        revision,
        target,
        message,
    }
}

fn check_format(snapshot: &Snapshot) -> Result<(), CompileError> {
    if snapshot.format != FORMAT_VERSION {
        return Err(failure(snapshot.revision)(
            "format".into(),
            format!(
                "snapshot format {} is not supported by this gateway (it reads format {FORMAT_VERSION}); upgrade the gateway",
                snapshot.format
            ),
        ));
    }
    Ok(())
}

/// How an API path keys the path index: without its slashes at either end, in lower case.
fn lowered_path(path: &str) -> String {
    path.trim_matches('/').to_ascii_lowercase()
}

/// The key index of all `subscriptions`.
fn index_all_keys(
    subscriptions: &[SnapshotSubscription],
    by_id: &HashMap<Arc<str>, usize>,
    product_index: &HashMap<&str, usize>,
    revision: u64,
) -> Result<KeyIndex, CompileError> {
    let mut keys = KeyIndex::new();
    for sub in subscriptions {
        index_keys(&mut keys, sub, by_id, product_index, revision)?;
    }
    Ok(keys)
}

/// The snapshot's Try it key. One that does not decode is left out (with a warning): Try it
/// calls are then seen from the control plane's address, and the rest of the configuration
/// still serves.
fn tryit_key(snapshot: &Snapshot) -> Option<crate::tryit::TryItKey> {
    let text = snapshot.tryit_key.as_deref()?;
    match crate::tryit::TryItKey::from_snapshot(text) {
        Ok(k) => Some(k),
        Err(e) => {
            tracing::warn!(error = %e, "the configuration's Try it key is unusable; Try it calls keep the control plane's address");
            None
        }
    }
}

/// The distinct key parameter names of `apis`, the default first.
fn key_params(apis: &[Option<Arc<CompiledApi>>]) -> Arc<[Arc<str>]> {
    let mut names: Vec<Arc<str>> = vec![Arc::from(DEFAULT_KEY_QUERY)];
    for api in apis.iter().flatten() {
        if !names.iter().any(|n| n.eq_ignore_ascii_case(&api.key_query)) {
            names.push(api.key_query.clone());
        }
    }
    names.into()
}

/// The APIs of `apis` that could not be compiled.
fn problems_of(apis: &[Option<Arc<CompiledApi>>]) -> Arc<[Arc<ApiProblem>]> {
    apis.iter()
        .flatten()
        .filter_map(|a| a.unavailable.clone())
        .collect()
}

/// An API whose path another API of the snapshot already has.
fn taken_path(api: &SnapshotApi, index: usize) -> CompiledApi {
    CompiledApi::unavailable(
        api,
        index,
        format!("apis.{}.path", api.id),
        format!("path '{}' is used by another API", api.path),
    )
}

/// Azure's name of the subscription key query parameter, when an API names none.
pub const DEFAULT_KEY_QUERY: &str = "subscription-key";

fn depth(path: &str) -> usize {
    if path.is_empty() {
        0
    } else {
        path.split('/').count()
    }
}

/// Product index → API ids, turned around: API id → indices of its products.
fn products_of(products: &[SnapshotProduct]) -> HashMap<&str, Vec<usize>> {
    let mut out: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, product) in products.iter().enumerate() {
        for api in &product.apis {
            out.entry(api.as_str()).or_default().push(i);
        }
    }
    out
}

fn product_names(products: &[SnapshotProduct]) -> Vec<(Arc<str>, Arc<str>)> {
    products
        .iter()
        .map(|p| {
            (
                Arc::<str>::from(p.id.as_str()),
                Arc::<str>::from(if p.name.is_empty() {
                    p.id.as_str()
                } else {
                    p.name.as_str()
                }),
            )
        })
        .collect()
}

/// A product's compiled policy; a policy that does not compile makes the product's APIs
/// unavailable (see [`compile_api`]), not the configuration.
fn product_doc(product: &SnapshotProduct, docs: &Docs) -> ProductDoc {
    match &product.policy {
        Some(xml) => compile_doc(
            xml,
            PolicyScope::Product,
            &docs.named,
            &docs.fragments,
            format!("products.{}.policy", product.id),
        )
        .map(|d| Some(Arc::new(d))),
        None => Ok(None),
    }
}

/// Where a subscription's keys give access, or `None` when nothing it reaches is served here.
fn access(
    sub: &SnapshotSubscription,
    by_id: &HashMap<Arc<str>, usize>,
    product_index: &HashMap<&str, usize>,
    revision: u64,
) -> Result<Option<Access>, CompileError> {
    Ok(match Scope::parse(&sub.scope) {
        Ok(Scope::AllApis) => Some(Access::All),
        // The API is not served here: the keys unlock nothing on this gateway.
        Ok(Scope::Api(id)) => by_id.get(id.as_str()).map(|&i| Access::Api(i)),
        Ok(Scope::Product(id)) => product_index.get(id.as_str()).map(|&i| Access::Product(i)),
        Err(e) => return Err(failure(revision)(format!("subscriptions.{}", sub.id), e)),
    })
}

/// Adds a subscription's keys to the index.
fn index_keys(
    keys: &mut KeyIndex,
    sub: &SnapshotSubscription,
    by_id: &HashMap<Arc<str>, usize>,
    product_index: &HashMap<&str, usize>,
    revision: u64,
) -> Result<(), CompileError> {
    let Some(access) = access(sub, by_id, product_index, revision)? else {
        return Ok(());
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
        let bytes = decode_hash(hash).ok_or_else(|| {
            failure(revision)(
                format!("subscriptions.{}", sub.id),
                "a key hash is not 64 hex digits".into(),
            )
        })?;
        keys.insert(bytes, Arc::clone(&entry));
    }
    Ok(())
}

fn product_index(products: &[SnapshotProduct]) -> HashMap<&str, usize> {
    products
        .iter()
        .enumerate()
        .map(|(i, p)| (p.id.as_str(), i))
        .collect()
}

impl CompiledConfig {
    pub fn compile(snapshot: &Snapshot) -> Result<Self, CompileError> {
        Self::compile_keeping_tls(snapshot, None, None)
    }

    /// [`CompiledConfig::compile`] of the configuration that follows `previous`: the circuit
    /// breakers of `previous`'s backends carry over where the backend's URL and rule stay.
    pub fn compile_after(
        snapshot: &Snapshot,
        previous: Option<&CompiledConfig>,
    ) -> Result<Self, CompileError> {
        Self::compile_keeping_tls(snapshot, None, previous.map(|p| &*p.backends))
    }

    /// [`CompiledConfig::compile`], with the TLS part given when it is known not to have
    /// changed, and the backends of the configuration in force, whose breakers carry over.
    fn compile_keeping_tls(
        snapshot: &Snapshot,
        tls: Option<Arc<CompiledTls>>,
        previous: Option<&Backends>,
    ) -> Result<Self, CompileError> {
        let revision = snapshot.revision;
        let fail = failure(revision);
        check_format(snapshot)?;

        // Policies first: every API's pipelines are composed from them.
        let named: HashMap<String, String> = snapshot
            .named_values
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut docs = Docs {
            global: Arc::new(PolicyDocument::default_global()),
            products: Vec::with_capacity(snapshot.products.len()),
            named,
            fragments: snapshot.policy_fragments.clone(),
        };
        if let Some(xml) = &snapshot.global_policy {
            docs.global = Arc::new(
                compile_doc(
                    xml,
                    PolicyScope::Global,
                    &docs.named,
                    &docs.fragments,
                    "globalPolicy".into(),
                )
                .map_err(|(t, m)| fail(t, m))?,
            );
        }
        for product in &snapshot.products {
            let doc = product_doc(product, &docs);
            docs.products.push(doc);
        }
        let products_of = products_of(&snapshot.products);

        let mut by_id = HashMap::new();
        let mut by_path = HashMap::new();
        let mut apis = Vec::with_capacity(snapshot.apis.len());
        let mut max_depth = 0;
        for (index, api) in snapshot.apis.iter().enumerate() {
            by_id.insert(Arc::<str>::from(api.id.as_str()), index);
            let path = lowered_path(&api.path);
            if by_path.contains_key(path.as_str()) {
                // The API that has the path keeps it; this one is reported, not routed.
                apis.push(Some(Arc::new(taken_path(api, index))));
                continue;
            }
            max_depth = max_depth.max(depth(&path));
            by_path.insert(path.into_boxed_str(), index);
            let products = products_of
                .get(api.id.as_str())
                .map_or(&[][..], Vec::as_slice);
            let compiled = compile_api(api, index, &docs, products, &snapshot.products)
                .unwrap_or_else(|(t, m)| CompiledApi::unavailable(api, index, t, m));
            apis.push(Some(Arc::new(compiled)));
        }

        let product_apis = members(&snapshot.products, &by_id);
        let product_index = product_index(&snapshot.products);
        let keys = index_all_keys(&snapshot.subscriptions, &by_id, &product_index, revision)?;

        let tryit = tryit_key(snapshot);
        let tls = tls.unwrap_or_else(|| Arc::new(CompiledTls::compile(&snapshot.tls, revision)));
        let backends = Arc::new(
            Backends::compile(snapshot, &docs.named, tls.clone(), previous)
                .map_err(|(t, m)| fail(t, m))?,
        );
        Ok(Self {
            revision,
            gateway_id: snapshot.gateway_id.as_str().into(),
            tryit,
            key_params: key_params(&apis),
            problems: problems_of(&apis),
            apis: Arc::new(apis),
            by_path: Arc::new(by_path),
            by_id: Arc::new(by_id),
            max_depth,
            product_apis: Arc::new(product_apis),
            products: Arc::new(product_names(&snapshot.products)),
            keys,
            sources: Arc::new(Sources {
                docs,
                products: snapshot.products.clone(),
            }),
            tls,
            backends,
            loggers: Arc::new(crate::loggers::CompiledLoggers::compile(&snapshot.loggers)),
        })
    }

    /// The loggers of the configuration `delta` leads to: compiled again only if they changed.
    fn updated_loggers(
        &self,
        delta: &Delta,
        snapshot: &Snapshot,
    ) -> Arc<crate::loggers::CompiledLoggers> {
        match &delta.loggers {
            Some(_) => Arc::new(crate::loggers::CompiledLoggers::compile(&snapshot.loggers)),
            None => self.loggers.clone(),
        }
    }

    /// The backends of the configuration `delta` leads to, under `tls` (that configuration's):
    /// compiled again only when they, the client certificates or the CAs changed.
    fn updated_backends(
        &self,
        delta: &Delta,
        snapshot: &Snapshot,
        tls: &Arc<CompiledTls>,
    ) -> Result<Arc<Backends>, CompileError> {
        if delta.backends.is_empty()
            && delta.removed_backends.is_empty()
            && delta.tls.is_none()
            && delta.named_values.is_none()
        {
            return Ok(self.backends.clone());
        }
        Backends::compile(
            snapshot,
            &self.sources.docs.named,
            tls.clone(),
            Some(&self.backends),
        )
        .map(Arc::new)
        .map_err(|(t, m)| failure(snapshot.revision)(t, m))
    }

    /// The TLS of the configuration `delta` leads to: compiled again only if it changed.
    fn updated_tls(&self, delta: &Delta, snapshot: &Snapshot) -> Arc<CompiledTls> {
        match &delta.tls {
            Some(_) => Arc::new(CompiledTls::compile(&snapshot.tls, snapshot.revision)),
            None => self.tls.clone(),
        }
    }

    /// The subscriptions of `delta` replaced in a copy of the key index.
    fn patched_keys(
        &self,
        delta: &Delta,
        by_id: &HashMap<Arc<str>, usize>,
        product_index: &HashMap<&str, usize>,
        revision: u64,
    ) -> Result<KeyIndex, CompileError> {
        let mut keys = self.keys.clone();
        for id in delta
            .subscriptions
            .iter()
            .map(|s| s.id.as_str())
            .chain(delta.removed_subscriptions.iter().map(String::as_str))
        {
            keys.remove(id);
        }
        for sub in &delta.subscriptions {
            index_keys(&mut keys, sub, by_id, product_index, revision)?;
        }
        Ok(keys)
    }

    /// The configuration `delta` leads to from this one, where `snapshot` is the snapshot it
    /// produced. Recompiles only the APIs the delta touches (or whose products changed), and
    /// shares the rest with this configuration; compiles in full when the change reaches every
    /// pipeline, or when this configuration is not the delta's base.
    pub fn update(&self, delta: &Delta, snapshot: &Snapshot) -> Result<Self, CompileError> {
        let revision = snapshot.revision;
        check_format(snapshot)?;
        let old_products = &self.sources.products;
        let renumbered = snapshot.products.len() < old_products.len()
            || old_products
                .iter()
                .zip(&snapshot.products)
                .any(|(old, new)| old.id != new.id);
        if self.revision != delta.base || *self.gateway_id != *snapshot.gateway_id {
            return Self::compile_after(snapshot, Some(self));
        }
        // An API left without its path by another may get it now: a full compile decides.
        let paths_shared = self.problems.iter().any(|p| p.target.ends_with(".path"));
        if delta.global_policy.is_some()
            || paths_shared
            || delta.named_values.is_some()
            || delta.policy_fragments.is_some()
            || !delta.removed_products.is_empty()
            || renumbered
        {
            return Self::compile_keeping_tls(
                snapshot,
                Some(self.updated_tls(delta, snapshot)),
                Some(&self.backends),
            );
        }
        if delta.apis.is_empty()
            && delta.removed_apis.is_empty()
            && delta.products.is_empty()
            && snapshot.products.len() == old_products.len()
        {
            // Subscriptions only (the common change): everything else is shared.
            let keys = self.patched_keys(
                delta,
                &self.by_id,
                &product_index(&snapshot.products),
                revision,
            )?;
            let tls = self.updated_tls(delta, snapshot);
            let backends = self.updated_backends(delta, snapshot, &tls)?;
            return Ok(Self {
                revision,
                gateway_id: self.gateway_id.clone(),
                apis: self.apis.clone(),
                by_path: self.by_path.clone(),
                by_id: self.by_id.clone(),
                max_depth: self.max_depth,
                product_apis: self.product_apis.clone(),
                products: self.products.clone(),
                keys,
                key_params: self.key_params.clone(),
                tryit: tryit_key(snapshot),
                sources: self.sources.clone(),
                tls,
                backends,
                problems: self.problems.clone(),
                loggers: self.updated_loggers(delta, snapshot),
            });
        }

        // The APIs to compile again: those the delta carries, and those whose products changed.
        let mut recompile: HashSet<&str> = delta.apis.iter().map(|a| a.id.as_str()).collect();
        let mut product_docs = self.sources.docs.products.clone();
        for (i, new) in snapshot.products.iter().enumerate() {
            match old_products.get(i) {
                Some(old) if old == new => {}
                Some(old)
                    if old.policy == new.policy
                        && old.subscription_required == new.subscription_required =>
                {
                    let before: HashSet<&str> = old.apis.iter().map(String::as_str).collect();
                    let after: HashSet<&str> = new.apis.iter().map(String::as_str).collect();
                    recompile.extend(before.symmetric_difference(&after));
                }
                old => {
                    recompile.extend(new.apis.iter().map(String::as_str));
                    if let Some(old) = old {
                        recompile.extend(old.apis.iter().map(String::as_str));
                    }
                    let doc = product_doc(new, &self.sources.docs);
                    match product_docs.get_mut(i) {
                        Some(slot) => *slot = doc,
                        None => product_docs.push(doc),
                    }
                }
            }
        }
        let docs = Docs {
            global: self.sources.docs.global.clone(),
            products: product_docs,
            named: self.sources.docs.named.clone(),
            fragments: self.sources.docs.fragments.clone(),
        };

        let mut apis = (*self.apis).clone();
        let mut by_id = (*self.by_id).clone();
        let mut by_path = (*self.by_path).clone();
        let mut api_set_changed = false;
        let free_path = |by_path: &mut HashMap<Box<str>, usize>, api: &CompiledApi| {
            let old = lowered_path(&api.path);
            if by_path.get(old.as_str()) == Some(&api.index) {
                by_path.remove(old.as_str());
            }
        };
        for id in &delta.removed_apis {
            if let Some(index) = by_id.remove(id.as_str()) {
                if let Some(Some(old)) = apis.get_mut(index).map(Option::take) {
                    free_path(&mut by_path, &old);
                }
                api_set_changed = true;
            }
        }
        let sources: HashMap<&str, &SnapshotApi> =
            snapshot.apis.iter().map(|a| (a.id.as_str(), a)).collect();
        let products_of = products_of(&snapshot.products);
        // Two passes, so an API may take a path another one of this delta gives up.
        let mut compiled = Vec::new();
        for id in recompile {
            let Some(api) = sources.get(id) else { continue };
            let index = match by_id.get(id) {
                Some(&i) => {
                    if let Some(Some(old)) = apis.get(i) {
                        free_path(&mut by_path, old);
                    }
                    i
                }
                None => {
                    api_set_changed = true;
                    apis.push(None);
                    let i = apis.len() - 1;
                    by_id.insert(Arc::<str>::from(id), i);
                    i
                }
            };
            let products = products_of.get(id).map_or(&[][..], Vec::as_slice);
            let compiled_api = compile_api(api, index, &docs, products, &snapshot.products)
                .unwrap_or_else(|(t, m)| CompiledApi::unavailable(api, index, t, m));
            compiled.push(compiled_api);
        }
        for api in compiled {
            let path = lowered_path(&api.path);
            if by_path.contains_key(path.as_str()) {
                // Which of two APIs on one path is served follows the snapshot's order, as a
                // full compile decides it (a control plane never sends such a snapshot).
                return Self::compile_keeping_tls(
                    snapshot,
                    Some(self.updated_tls(delta, snapshot)),
                    Some(&self.backends),
                );
            }
            by_path.insert(path.into_boxed_str(), api.index);
            let index = api.index;
            if let Some(slot) = apis.get_mut(index) {
                *slot = Some(Arc::new(api));
            }
        }
        let max_depth = by_path.keys().map(|p| depth(p)).max().unwrap_or(0);

        let product_apis = members(&snapshot.products, &by_id);
        let product_index = product_index(&snapshot.products);
        let keys = if api_set_changed || snapshot.products.len() != old_products.len() {
            // Subscriptions refer to APIs and products by index: index them all again.
            index_all_keys(&snapshot.subscriptions, &by_id, &product_index, revision)?
        } else {
            self.patched_keys(delta, &by_id, &product_index, revision)?
        };
        let tls = self.updated_tls(delta, snapshot);
        let backends = self.updated_backends(delta, snapshot, &tls)?;

        Ok(Self {
            revision,
            gateway_id: self.gateway_id.clone(),
            tryit: tryit_key(snapshot),
            key_params: key_params(&apis),
            problems: problems_of(&apis),
            apis: Arc::new(apis),
            by_path: Arc::new(by_path),
            by_id: Arc::new(by_id),
            max_depth,
            product_apis: Arc::new(product_apis),
            products: Arc::new(product_names(&snapshot.products)),
            keys,
            sources: Arc::new(Sources {
                docs,
                products: snapshot.products.clone(),
            }),
            tls,
            backends,
            loggers: self.updated_loggers(delta, snapshot),
        })
    }

    pub fn api_count(&self) -> usize {
        self.by_id.len()
    }

    /// The APIs of the snapshot this configuration could not compile (their calls get 500).
    pub fn problems(&self) -> &Arc<[Arc<ApiProblem>]> {
        &self.problems
    }

    /// The `/crossdomain.xml` the global policy's `<cross-domain>` serves, if it has one.
    pub fn cross_domain(&self) -> Option<&Arc<str>> {
        self.sources.docs.global.cross_domain()
    }

    /// Finds the API serving `path` (which starts with `/`): the one with the longest path
    /// that is a whole-segment prefix of it. Returns the API and the rest of the path.
    pub fn find_api<'p>(&self, path: &'p str) -> Option<(&CompiledApi, &'p str)> {
        let body = path.strip_prefix('/').unwrap_or(path);
        let lowered;
        let haystack = if body.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = body.to_ascii_lowercase();
            lowered.as_str()
        } else {
            body
        };
        if self.max_depth > 0 {
            // The candidates are the ends of the first `max_depth` segments, longest first;
            // found by scanning back from the deepest, so nothing is allocated per request.
            let mut slashes = 0;
            let mut deepest_slash = None;
            for (i, b) in body.bytes().enumerate() {
                if b == b'/' {
                    slashes += 1;
                    if slashes == self.max_depth {
                        deepest_slash = Some(i);
                        break;
                    }
                }
            }
            if deepest_slash.is_none()
                && !body.is_empty()
                && !body.ends_with('/')
                && let Some(&i) = self.by_path.get(haystack)
            {
                return self.api(i).map(|api| (api, &body[body.len()..]));
            }
            let mut upto = deepest_slash.map_or(body.len(), |i| i + 1);
            while let Some(end) = haystack[..upto].rfind('/') {
                if let Some(&i) = self.by_path.get(&haystack[..end]) {
                    return self.api(i).map(|api| (api, &body[end..]));
                }
                upto = end;
            }
        }
        let i = *self.by_path.get("")?;
        self.api(i).map(|api| (api, path))
    }

    fn api(&self, index: usize) -> Option<&CompiledApi> {
        self.apis.get(index)?.as_deref()
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

/// The set of API indices of each product.
fn members(products: &[SnapshotProduct], by_id: &HashMap<Arc<str>, usize>) -> Vec<HashSet<usize>> {
    products
        .iter()
        .map(|p| {
            p.apis
                .iter()
                .filter_map(|a| by_id.get(a.as_str()).copied())
                .collect()
        })
        .collect()
}

/// A product's policy: `None` when it has none; the target and message when it does not compile.
type ProductDoc = Result<Option<Arc<PolicyDocument>>, (String, String)>;

/// Policy documents compiled for one configuration.
#[derive(Debug)]
struct Docs {
    global: Arc<PolicyDocument>,
    /// By product index (see [`ProductDoc`]).
    products: Vec<ProductDoc>,
    named: HashMap<String, String>,
    /// The policy fragments `<include-fragment>` inlines.
    fragments: BTreeMap<String, String>,
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
    docs: &Docs,
    products_of_api: &[usize],
    products: &[SnapshotProduct],
) -> Result<CompiledApi, (String, String)> {
    let target = |p: &str| format!("apis.{}.{p}", api.id);
    // A product of the API whose policy does not compile: its pipelines cannot be composed.
    if let Some(Err(broken)) = products_of_api
        .iter()
        .filter_map(|&p| docs.products.get(p))
        .find(|d| d.is_err())
    {
        return Err(broken.clone());
    }
    let upstream = match &api.service_url {
        Some(url) => Some(parse_service_url(url).map_err(|m| (target("serviceUrl"), m))?),
        None => None,
    };
    let key_header = gatehouse_model::resources::is_header_name(&api.key_header)
        .then(|| HeaderName::from_bytes(api.key_header.as_bytes()).ok())
        .flatten()
        .ok_or_else(|| {
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
            &docs.fragments,
            target("policy"),
        )?),
        None => None,
    };
    let mut operations = Vec::with_capacity(api.operations.len());
    for op in &api.operations {
        let mut compiled = CompiledOperation::compile(&op.id, &op.method, &op.url_template)
            .map_err(|m| (format!("apis.{}.operations.{}", api.id, op.id), m))?;
        compiled.name = op.display_name.as_str().into();
        compiled.examples = gatehouse_policy::exchange::OperationDocument::build(
            api.examples.get(&op.id),
            api.schemas.get(&op.id),
            &api.definitions,
            &mut |problem| {
                tracing::warn!(api = %api.id, operation = %op.id, "a schema of the OpenAPI document is not used by the validation policies: {problem}");
            },
        )
        .map(Arc::new);
        let op_doc = match api.operation_policies.get(&op.id) {
            Some(xml) => Some(compile_doc(
                xml,
                PolicyScope::Operation,
                &docs.named,
                &docs.fragments,
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
            if let Some(Ok(Some(doc))) = docs.products.get(p) {
                compiled
                    .policy
                    .by_product
                    .push((p, compose(Some(doc.as_ref()))));
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
        // No key is needed when the API does not ask for one, or an open product holds it.
        open: !api.subscription_required
            || products_of_api
                .iter()
                .any(|&p| products.get(p).is_some_and(|p| !p.subscription_required)),
        key_header,
        key_query: api.key_query.as_str().into(),
        operations,
        unavailable: None,
    })
}

/// A service or backend URL of the snapshot, checked first by the model's definition of a
/// backend URL, the one the control plane refuses URLs with at save.
pub(crate) fn parse_service_url(url: &str) -> Result<Upstream, String> {
    gatehouse_model::resources::check_http_url(url)?;
    parse_upstream(url)
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
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| format!("'{url}' has no host"))?;
    let base_path = uri.path().trim_end_matches('/').into();
    let host = http::HeaderValue::from_str(authority.as_str())
        .map_err(|_| format!("'{url}': its host cannot be a Host header"))?;
    let target = crate::upstream::Target::new(&scheme, authority.clone())
        .map_err(|m| format!("'{url}': {m}"))?;
    Ok(Upstream {
        scheme,
        authority,
        base_path,
        host,
        target,
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
