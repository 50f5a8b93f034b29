//! The snapshot compiler: from the store to exactly what one gateway serves.
//!
//! [`Compiled`] is one gateway's snapshot in keyed form, kept between revisions.
//! [`Compiled::full`] builds it from the whole store: the reference, simple and complete.
//! [`Compiled::update`] brings it to a newer revision by redoing only what the store's change
//! log says the revisions touched, and returns the [`Delta`] for gateways; at 10,000 APIs and
//! 100,000 subscriptions that is milliseconds instead of seconds. Tests check that the two
//! agree over random sequences of changes.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use gatehouse_model::loggers::Logger;
use gatehouse_model::resources::{
    Api, BREAKER_ERROR_REASONS, Backend, BackendType, CircuitBreakerRule,
    GatewayCertificateAuthority, HostnameConfiguration, NamedValue, Operation, Product, Scope,
    Subscription, SubscriptionState, User, UserState, backend_id_of,
};
use gatehouse_model::snapshot::{
    Delta, FORMAT_VERSION, Snapshot, SnapshotApi, SnapshotBackend, SnapshotBreaker,
    SnapshotCertificateAuthority, SnapshotClientCertificate, SnapshotHostname, SnapshotLogger,
    SnapshotPoolMember, SnapshotProduct, SnapshotSubscription, SnapshotTls,
};
use gatehouse_store::records::ApiDocument;
use gatehouse_store::{Change, Kind, Link, PolicyLevel, PolicyScope, Store, Stored};

use crate::secrets::Sealer;
use crate::service::ServiceError;
use crate::service::certificates::{self, StoredCertificate};
use crate::service::subscriptions::StoredKeys;
use crate::service::{policies, policy_fragments};

/// The gateway of `gatehouse up`: every API is assigned to it.
pub const BUILT_IN_GATEWAY: &str = "built-in";

/// The full compile of one gateway's snapshot, as it is in the store now.
pub async fn snapshot(
    store: &Store,
    sealer: &Sealer,
    gateway_id: &str,
) -> Result<Snapshot, ServiceError> {
    Ok(Compiled::full(store, sealer, gateway_id).await?.snapshot())
}

/// What the subscriptions index remembers of every subscription, served here or not.
#[derive(Debug, Clone, PartialEq)]
struct SubLinks {
    /// The scope in canonical form (see [`scope_key`]); `None` when it does not parse.
    scope: Option<String>,
    owner: Option<String>,
}

/// One gateway's snapshot, in keyed form.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Compiled {
    pub revision: u64,
    gateway_id: String,
    /// The APIs assigned to the gateway; `None` for the built-in one, which serves them all.
    assigned: Option<BTreeSet<String>>,
    apis: BTreeMap<String, SnapshotApi>,
    /// Products with at least one API served here.
    products: BTreeMap<String, SnapshotProduct>,
    /// Subscriptions whose scope reaches something served here.
    subscriptions: BTreeMap<String, SnapshotSubscription>,
    /// Every subscription's scope and owner, and the reverse indexes: which subscriptions a
    /// change to an API, a product or a user can affect.
    sub_links: HashMap<String, SubLinks>,
    by_scope: HashMap<String, BTreeSet<String>>,
    by_owner: HashMap<String, BTreeSet<String>>,
    /// Blocked users: their subscriptions ship as suspended.
    blocked: HashSet<String>,
    global_policy: Option<String>,
    named_values: BTreeMap<String, String>,
    policy_fragments: BTreeMap<String, String>,
    /// The gateway's hostname certificates and CA certificates, and the client certificates
    /// its backends and policies present, opened.
    tls: SnapshotTls,
    /// Every backend: any API's policy may send to any of them.
    backends: BTreeMap<String, SnapshotBackend>,
    /// The Try it signing key, base64 (see `gatehouse_model::tryit`).
    tryit_key: Option<String>,
    /// The loggers the shipped policies and fragments name, secrets opened.
    loggers: BTreeMap<String, SnapshotLogger>,
}

/// A scope as the index keys it: `/apis`, `/apis/{id}` or `/products/{id}`.
fn scope_key(scope: &str) -> Option<String> {
    match Scope::parse(scope) {
        Ok(Scope::AllApis) => Some("/apis".to_owned()),
        Ok(Scope::Api(id)) => Some(api_scope(&id)),
        Ok(Scope::Product(id)) => Some(product_scope(&id)),
        Err(_) => None,
    }
}

fn api_scope(id: &str) -> String {
    format!("/apis/{id}")
}

fn product_scope(id: &str) -> String {
    format!("/products/{id}")
}

fn snapshot_api(
    api: Api,
    mut operations: Vec<Operation>,
    policy: Option<String>,
    operation_policies: BTreeMap<String, String>,
    document: Option<&serde_json::Value>,
) -> SnapshotApi {
    operations.sort_by(|a, b| a.id.cmp(&b.id));
    // The imported OpenAPI document's response examples, for `mock-response`, and what it
    // declares of each operation (schemas, parameters, statuses) for the validation policies.
    let (examples, extracted) = match document {
        Some(doc) => (
            crate::examples::extract(doc, &operations),
            crate::schemas::extract(&api.id, doc, &operations),
        ),
        None => (BTreeMap::new(), Default::default()),
    };
    SnapshotApi {
        examples,
        schemas: extracted.schemas,
        definitions: extracted.definitions,
        name: api.display_name,
        version: api.api_version,
        policy,
        operation_policies,
        operations,
        path: api.path,
        service_url: api.service_url,
        protocols: api.protocols,
        subscription_required: api.subscription_required,
        key_header: api.subscription_key_parameter_names.header,
        key_query: api.subscription_key_parameter_names.query,
        id: api.id,
    }
}

/// A product as shipped, or `None` when none of its APIs is served here.
fn snapshot_product(
    product: Product,
    mut apis: Vec<String>,
    policy: Option<String>,
) -> Option<SnapshotProduct> {
    if apis.is_empty() {
        return None;
    }
    apis.sort();
    Some(SnapshotProduct {
        name: product.display_name,
        policy,
        id: product.id,
        subscription_required: product.subscription_required,
        state: product.state,
        apis,
    })
}

fn snapshot_subscription(
    sub: Subscription,
    keys: StoredKeys,
    blocked: bool,
) -> SnapshotSubscription {
    SnapshotSubscription {
        name: sub.display_name,
        id: sub.id,
        scope: sub.scope,
        // A blocked user's subscriptions stop working everywhere, as in Azure.
        state: if blocked {
            SubscriptionState::Suspended
        } else {
            sub.state
        },
        key_hashes: vec![keys.primary_hash, keys.secondary_hash],
    }
}

/// A backend as gateways get it: a pool's members ordered by priority (stably, so members
/// of one priority keep the pool's order), a breaker rule with its durations parsed. Done once
/// per change of the backend, not per request.
fn snapshot_backend(backend: Backend) -> SnapshotBackend {
    let pool = (backend.backend_type == BackendType::Pool).then(|| {
        let mut members: Vec<SnapshotPoolMember> = backend
            .pool
            .iter()
            .flat_map(|p| &p.services)
            .map(|s| SnapshotPoolMember {
                id: backend_id_of(&s.id).to_owned(),
                priority: s.priority,
                weight: s.weight,
            })
            .collect();
        members.sort_by_key(|m| m.priority);
        members
    });
    let circuit_breaker = match (&pool, &backend.circuit_breaker) {
        (None, Some(cb)) => cb
            .rules
            .first()
            .and_then(|rule| snapshot_breaker(&backend.id, rule)),
        _ => None,
    };
    SnapshotBackend {
        id: backend.id,
        url: backend.url,
        credentials: backend.credentials,
        tls: backend.tls,
        circuit_breaker,
        pool,
    }
}

/// A breaker rule as gateways run it; `None` (logged) for a rule that does not parse, which the
/// management API refuses, so only a store written some other way has one.
fn snapshot_breaker(backend: &str, rule: &CircuitBreakerRule) -> Option<SnapshotBreaker> {
    let c = &rule.failure_condition;
    let parsed = |text: &str| {
        gatehouse_model::duration::parse(text)
            .ok()
            .filter(|d| !d.is_zero())
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    };
    let (Some(interval_ms), Some(trip_duration_ms)) =
        (parsed(&c.interval), parsed(&rule.trip_duration))
    else {
        tracing::warn!(
            backend,
            "the circuit breaker rule's interval or tripDuration is not a positive ISO 8601 duration; the backend ships without a breaker"
        );
        return None;
    };
    let error_reasons = BREAKER_ERROR_REASONS
        .iter()
        .filter(|known| {
            c.error_reasons
                .iter()
                .any(|r| r.trim().eq_ignore_ascii_case(known))
        })
        .map(|r| (*r).to_owned())
        .collect();
    Some(SnapshotBreaker {
        name: rule.name.clone(),
        count: c.count,
        percentage: c.percentage,
        interval_ms,
        trip_duration_ms,
        status_code_ranges: c
            .status_code_ranges
            .iter()
            .map(|r| {
                let status = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
                (status(r.min), status(r.max))
            })
            .collect(),
        error_reasons,
        accept_retry_after: rule.accept_retry_after,
    })
}

fn links_of(sub: &Subscription) -> SubLinks {
    SubLinks {
        scope: scope_key(&sub.scope),
        owner: sub.owner_id.clone(),
    }
}

/// Adds to `out` the entries of `index` under `key`.
fn extend_from(out: &mut BTreeSet<String>, index: &HashMap<String, BTreeSet<String>>, key: &str) {
    if let Some(ids) = index.get(key) {
        out.extend(ids.iter().cloned());
    }
}

impl Compiled {
    fn empty(gateway_id: &str, revision: u64, assigned: Option<BTreeSet<String>>) -> Self {
        Self {
            revision,
            gateway_id: gateway_id.to_owned(),
            assigned,
            apis: BTreeMap::new(),
            products: BTreeMap::new(),
            subscriptions: BTreeMap::new(),
            sub_links: HashMap::new(),
            by_scope: HashMap::new(),
            by_owner: HashMap::new(),
            blocked: HashSet::new(),
            global_policy: None,
            named_values: BTreeMap::new(),
            policy_fragments: BTreeMap::new(),
            tls: SnapshotTls::default(),
            backends: BTreeMap::new(),
            tryit_key: None,
            loggers: BTreeMap::new(),
        }
    }

    fn serves(&self, api: &str) -> bool {
        self.assigned.as_ref().is_none_or(|set| set.contains(api))
    }

    /// Whether a subscription with this (canonical) scope reaches anything served here.
    fn relevant(&self, scope: Option<&str>) -> bool {
        let Some(scope) = scope else { return false };
        if scope == "/apis" {
            return true;
        }
        if let Some(id) = scope.strip_prefix("/apis/") {
            return self.apis.contains_key(id);
        }
        scope
            .strip_prefix("/products/")
            .is_some_and(|id| self.products.contains_key(id))
    }

    fn index_subscription(&mut self, id: &str, links: SubLinks) {
        if let Some(scope) = &links.scope {
            self.by_scope
                .entry(scope.clone())
                .or_default()
                .insert(id.to_owned());
        }
        if let Some(owner) = &links.owner {
            self.by_owner
                .entry(owner.clone())
                .or_default()
                .insert(id.to_owned());
        }
        self.sub_links.insert(id.to_owned(), links);
    }

    fn unindex_subscription(&mut self, id: &str) {
        let Some(old) = self.sub_links.remove(id) else {
            return;
        };
        for (index, key) in [
            (&mut self.by_scope, old.scope),
            (&mut self.by_owner, old.owner),
        ] {
            if let Some(key) = key
                && let Some(set) = index.get_mut(&key)
            {
                set.remove(id);
                if set.is_empty() {
                    index.remove(&key);
                }
            }
        }
    }

    /// Compiles the snapshot of `gateway_id` from the whole store.
    pub async fn full(
        store: &Store,
        sealer: &Sealer,
        gateway_id: &str,
    ) -> Result<Self, ServiceError> {
        // Read the revision first: anything committed later is at least as new as it says.
        let revision = store.revision().await?;
        let assigned = if gateway_id == BUILT_IN_GATEWAY {
            None
        } else {
            let assigned = store.links(Link::GatewayApi).targets(gateway_id).await?;
            Some(assigned.into_iter().collect())
        };
        let mut c = Self::empty(gateway_id, revision, assigned);
        c.tryit_key = Some(base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            sealer.tryit_key(),
        ));
        let started = std::time::Instant::now();
        let mut phases = Vec::new();

        // Everything per API in one query per kind, not one per API.
        // Only what is served here is decoded.
        let mut operations: HashMap<String, Vec<Operation>> = HashMap::new();
        let served = store
            .repo::<Operation>()
            .list_all_where(|api| c.serves(api))
            .await?;
        for op in served {
            operations.entry(op.parent).or_default().push(op.value);
        }
        let mut api_policies: HashMap<String, String> = HashMap::new();
        for (scope, xml) in store.policies().all(PolicyLevel::Api).await? {
            if let PolicyScope::Api(api) = scope {
                api_policies.insert(api, xml);
            }
        }
        let mut operation_policies: HashMap<String, BTreeMap<String, String>> = HashMap::new();
        for (scope, xml) in store.policies().all(PolicyLevel::Operation).await? {
            if let PolicyScope::Operation { api, operation } = scope {
                operation_policies
                    .entry(api)
                    .or_default()
                    .insert(operation, xml);
            }
        }
        // A document that does not read ships as none: no mock examples or body schemas.
        let documents: HashMap<String, serde_json::Value> = store
            .repo::<ApiDocument>()
            .lenient()
            .entries_where("", |api| c.serves(api))
            .await?
            .into_iter()
            .map(|d| (d.id, d.value.0))
            .collect();
        let apis = store
            .repo::<Api>()
            .entries_where("", |api| c.serves(api))
            .await?;
        for Stored { value: api, .. } in apis {
            let id = api.id.clone();
            let shipped = snapshot_api(
                api,
                operations.remove(&id).unwrap_or_default(),
                api_policies.remove(&id),
                operation_policies.remove(&id).unwrap_or_default(),
                documents.get(&id),
            );
            c.apis.insert(id, shipped);
        }
        phases.push(("apis", started.elapsed()));

        let mut product_apis: HashMap<String, Vec<String>> = HashMap::new();
        for (product, api) in store.links(Link::ProductApi).all().await? {
            if c.apis.contains_key(&api) {
                product_apis.entry(product).or_default().push(api);
            }
        }
        let mut product_policies: HashMap<String, String> = HashMap::new();
        for (scope, xml) in store.policies().all(PolicyLevel::Product).await? {
            if let PolicyScope::Product(product) = scope {
                product_policies.insert(product, xml);
            }
        }
        for product in store.repo::<Product>().list("").await? {
            let id = product.id.clone();
            let apis = product_apis.remove(&id).unwrap_or_default();
            if let Some(p) = snapshot_product(product, apis, product_policies.remove(&id)) {
                c.products.insert(id, p);
            }
        }

        phases.push(("products", started.elapsed()));
        let mut keys: HashMap<String, StoredKeys> = HashMap::new();
        for k in store.repo::<StoredKeys>().list_all().await? {
            keys.insert(k.id, k.value);
        }
        phases.push(("keys", started.elapsed()));
        for user in store.repo::<User>().list("").await? {
            if user.state == UserState::Blocked {
                c.blocked.insert(user.id);
            }
        }
        for sub in store.repo::<Subscription>().list("").await? {
            let links = links_of(&sub);
            let relevant = c.relevant(links.scope.as_deref());
            c.index_subscription(&sub.id, links);
            if !relevant {
                continue;
            }
            let Some(k) = keys.remove(&sub.id) else {
                continue;
            };
            let blocked = sub.owner_id.as_ref().is_some_and(|o| c.blocked.contains(o));
            c.subscriptions
                .insert(sub.id.clone(), snapshot_subscription(sub, k, blocked));
        }

        phases.push(("subscriptions", started.elapsed()));
        for backend in store.repo::<Backend>().list("").await? {
            let backend = snapshot_backend(backend);
            c.backends.insert(backend.id.clone(), backend);
        }
        c.global_policy = store.policies().get(&PolicyScope::Global).await?;
        c.ship_policy_inputs(store, sealer).await?;
        phases.push(("policies", started.elapsed()));
        c.tls = Self::load_tls(store, sealer, gateway_id, &c.client_certificate_ids()).await?;
        phases.push(("tls", started.elapsed()));
        tracing::debug!(
            gateway = gateway_id,
            ?phases,
            "full compile phases (time since start)"
        );
        Ok(c)
    }

    /// Recomputes the policy fragments and named values the shipped policies use.
    async fn ship_policy_inputs(
        &mut self,
        store: &Store,
        sealer: &Sealer,
    ) -> Result<(), ServiceError> {
        let texts = || self.policy_texts();
        // Ship only the policy fragments the shipped policies include (through others too).
        let all_fragments = policy_fragments::all_in(store).await?;
        let mut fragments = BTreeMap::new();
        for text in texts() {
            for id in policy_fragments::reachable(text, &all_fragments) {
                if let Some(xml) = all_fragments.get(&id) {
                    fragments.insert(id, xml.clone());
                }
            }
        }
        // Ship only the named values the shipped policies and fragments use.
        let mut wanted: BTreeSet<String> = BTreeSet::new();
        for text in texts().chain(fragments.values()) {
            wanted.extend(policies::referenced_names(text));
        }
        // Backends' credentials may hold `{{name}}` too; gateways resolve them the same way.
        for backend in self.backends.values() {
            if let Some(c) = &backend.credentials {
                for value in c.texts() {
                    wanted.extend(policies::referenced_names(value));
                }
            }
        }
        // Ship only the loggers the shipped policies and fragments log to.
        let mut loggers = BTreeMap::new();
        for text in texts().chain(fragments.values()) {
            for id in policies::referenced_loggers(text) {
                if loggers.contains_key(&id) {
                    continue;
                }
                let Some(logger) = store.repo::<Logger>().get("", &id).await? else {
                    continue;
                };
                let logger = crate::service::loggers::open_with(sealer, logger)?;
                loggers.insert(
                    id,
                    SnapshotLogger {
                        id: logger.id,
                        logger_type: logger.logger_type,
                        credentials: logger.credentials,
                        endpoint: logger.endpoint,
                        is_buffered: logger.is_buffered,
                    },
                );
            }
        }
        self.loggers = loggers;
        let mut named_values = BTreeMap::new();
        for name in wanted {
            let Some(nv) = store.repo::<NamedValue>().get("", &name).await? else {
                continue;
            };
            let Some(value) = nv.value else { continue };
            let value = if nv.secret {
                sealer
                    .open(&value)
                    .map_err(|e| ServiceError::Internal(e.to_string()))?
            } else {
                value
            };
            named_values.insert(name, value);
        }
        self.policy_fragments = fragments;
        self.named_values = named_values;
        Ok(())
    }

    /// The gateway's hostname configurations with their certificates and keys, and its CA
    /// certificates, opened from the store. A configuration whose certificate is gone or has
    /// no key (the management API refuses both, but a store edited by hand may hold them) is
    /// left out with a warning rather than failing the whole snapshot.
    async fn load_tls(
        store: &Store,
        sealer: &Sealer,
        gateway_id: &str,
        client_certificates: &BTreeSet<String>,
    ) -> Result<SnapshotTls, ServiceError> {
        let mut opened: HashMap<String, Option<certificates::Opened>> = HashMap::new();
        async fn certificate<'a>(
            opened: &'a mut HashMap<String, Option<certificates::Opened>>,
            store: &Store,
            sealer: &Sealer,
            id: &str,
        ) -> Result<Option<&'a certificates::Opened>, ServiceError> {
            if !opened.contains_key(id) {
                let cert = match store.repo::<StoredCertificate>().get("", id).await? {
                    Some(stored) => Some(stored.open(sealer)?),
                    None => None,
                };
                opened.insert(id.to_owned(), cert);
            }
            Ok(opened.get(id).and_then(Option::as_ref))
        }
        let mut tls = SnapshotTls::default();
        for hc in store
            .repo::<HostnameConfiguration>()
            .list(gateway_id)
            .await?
        {
            let cert = certificate(&mut opened, store, sealer, &hc.certificate_id).await?;
            let Some((chain, key)) = cert.and_then(|c| Some((&c.chain, c.key.as_ref()?))) else {
                tracing::warn!(
                    gateway = gateway_id,
                    hostname_configuration = %hc.id,
                    certificate = %hc.certificate_id,
                    "the certificate of a hostname configuration is missing or has no private key; the hostname is not shipped"
                );
                continue;
            };
            tls.hostnames.push(SnapshotHostname {
                certificate: chain.clone(),
                key: key.clone(),
                id: hc.id,
                hostname: hc.hostname,
                certificate_id: hc.certificate_id,
                negotiate_client_certificate: hc.negotiate_client_certificate,
                http2_enabled: hc.http2_enabled,
            });
        }
        let authorities = store.repo::<GatewayCertificateAuthority>();
        for Stored { id, value: ca, .. } in authorities.entries(gateway_id).await? {
            let Some(cert) = certificate(&mut opened, store, sealer, &id).await? else {
                tracing::warn!(
                    gateway = gateway_id,
                    certificate = %id,
                    "a certificate authority of the gateway names a certificate that is gone; not shipped"
                );
                continue;
            };
            tls.certificate_authorities
                .push(SnapshotCertificateAuthority {
                    certificate_id: id,
                    certificate: cert.chain.clone(),
                    is_trusted: ca.is_trusted,
                });
        }
        for id in client_certificates {
            let cert = certificate(&mut opened, store, sealer, id).await?;
            let Some((chain, key)) = cert.and_then(|c| Some((&c.chain, c.key.as_ref()?))) else {
                // A policy may name a certificate that is gone (the management API keeps
                // backends from it): the gateway says so when a request needs it.
                tracing::debug!(
                    gateway = gateway_id,
                    certificate = %id,
                    "a client certificate named by a backend or policy is missing or has no private key; not shipped"
                );
                continue;
            };
            tls.client_certificates.push(SnapshotClientCertificate {
                id: id.clone(),
                certificate: chain.clone(),
                key: key.clone(),
            });
        }
        Ok(tls)
    }

    /// The shipped policy documents: global, products', APIs' and operations'.
    fn policy_texts(&self) -> impl Iterator<Item = &String> {
        self.global_policy
            .iter()
            .chain(self.products.values().filter_map(|p| p.policy.as_ref()))
            .chain(self.apis.values().filter_map(|a| a.policy.as_ref()))
            .chain(
                self.apis
                    .values()
                    .flat_map(|a| a.operation_policies.values()),
            )
    }

    /// The certificates the gateway presents as a TLS client: those of the backends'
    /// credentials, and those the shipped policies and fragments name in
    /// `authentication-certificate`.
    fn client_certificate_ids(&self) -> BTreeSet<String> {
        let mut ids: BTreeSet<String> = self
            .backends
            .values()
            .filter_map(|b| b.credentials.as_ref())
            .flat_map(|c| c.certificates().map(str::to_owned))
            .collect();
        let texts = self.policy_texts().chain(self.policy_fragments.values());
        for text in texts {
            ids.extend(policies::referenced_certificates(text));
        }
        ids
    }

    /// One API as shipped, read from the store; `None` when it does not exist.
    async fn load_api(store: &Store, id: &str) -> Result<Option<SnapshotApi>, ServiceError> {
        let Some(api) = store.repo::<Api>().get("", id).await? else {
            return Ok(None);
        };
        let operations = store.repo::<Operation>().list(id).await?;
        let policy = store
            .policies()
            .get(&PolicyScope::Api(id.to_owned()))
            .await?;
        let operation_policies = store
            .policies()
            .of_operations(id)
            .await?
            .into_iter()
            .collect();
        // A document that does not read ships as none, as in the full compile.
        let document = store.repo::<ApiDocument>().lenient().get("", id).await?;
        Ok(Some(snapshot_api(
            api,
            operations,
            policy,
            operation_policies,
            document.as_ref().map(|d| &d.0),
        )))
    }

    /// Brings the snapshot from its revision to `revision`, given what the revisions between
    /// touched ([`Store::changes`]), and returns the delta. Returns `None`, leaving `self` as it
    /// was, when a change is to a kind this does not know: compile in full then. After an
    /// error `self` is half updated: drop it.
    pub async fn update(
        &mut self,
        store: &Store,
        sealer: &Sealer,
        changes: &[Change],
        revision: u64,
    ) -> Result<Option<Delta>, ServiceError> {
        let mut dirty_links = BTreeSet::new();
        let mut dirty_apis = BTreeSet::new();
        let mut dirty_products = BTreeSet::new();
        let mut dirty_users = BTreeSet::new();
        let mut dirty_subs = BTreeSet::new();
        let mut dirty_backends = BTreeSet::new();
        let (mut global, mut policy_inputs, mut tls) = (false, false, false);
        for change in changes {
            // The registry says which kinds no snapshot depends on. A name it does not know
            // (a newer release's) or a kind handled nowhere below makes this give up, and the
            // caller compiles in full: a new input to the snapshot can make it slower, never
            // wrong.
            let Some(kind) = change.kind() else {
                tracing::debug!(
                    kind = %change.kind,
                    "a change to an unknown kind; compiling in full"
                );
                return Ok(None);
            };
            if !kind.affects_snapshots() {
                continue;
            }
            let Change { parent, id, .. } = change;
            match kind {
                Kind::Api | Kind::ApiDocument => {
                    dirty_apis.insert(id.clone());
                }
                Kind::Operation | Kind::ApiPolicy | Kind::OperationPolicy => {
                    dirty_apis.insert(parent.clone());
                }
                Kind::GatewayApi => {
                    if self.assigned.is_some() && *parent == self.gateway_id {
                        dirty_links.insert(id.clone());
                    }
                }
                Kind::ProductApi | Kind::ProductPolicy => {
                    dirty_products.insert(parent.clone());
                }
                Kind::Product => {
                    dirty_products.insert(id.clone());
                }
                Kind::Subscription | Kind::SubscriptionKeys => {
                    dirty_subs.insert(id.clone());
                }
                Kind::User => {
                    dirty_users.insert(id.clone());
                }
                Kind::Backend => {
                    dirty_backends.insert(id.clone());
                }
                Kind::GlobalPolicy => global = true,
                Kind::PolicyFragment | Kind::NamedValue | Kind::Logger => policy_inputs = true,
                // Any certificate may be one this gateway uses: reading its few TLS documents
                // again and comparing is cheaper than tracking who uses what.
                Kind::Certificate => tls = true,
                Kind::HostnameConfiguration | Kind::GatewayCertificateAuthority => {
                    tls |= *parent == self.gateway_id;
                }
                other => {
                    tracing::debug!(
                        kind = %other,
                        "a change the incremental compile does not handle; compiling in full"
                    );
                    return Ok(None);
                }
            }
        }
        let mut delta = Delta {
            format: FORMAT_VERSION,
            base: self.revision,
            revision,
            gateway_id: self.gateway_id.clone(),
            ..Delta::default()
        };

        // Assignments first: they decide which APIs are served.
        for api in dirty_links {
            let assigned = store
                .links(Link::GatewayApi)
                .contains(&self.gateway_id, &api)
                .await?;
            if let Some(set) = &mut self.assigned {
                if assigned {
                    set.insert(api.clone());
                } else {
                    set.remove(&api);
                }
            }
            dirty_apis.insert(api);
        }

        for id in dirty_apis {
            let fresh = if self.serves(&id) {
                Self::load_api(store, &id).await?
            } else {
                None
            };
            let old = match fresh {
                Some(api) => self.apis.insert(id.clone(), api),
                None => self.apis.remove(&id),
            };
            let new = self.apis.get(&id);
            if old.is_some() != new.is_some() {
                // Served or not any more: its products and the subscriptions to it follow.
                for product in store.links(Link::ProductApi).sources(&id).await? {
                    dirty_products.insert(product);
                }
                for p in self.products.values() {
                    if p.apis.binary_search(&id).is_ok() {
                        dirty_products.insert(p.id.clone());
                    }
                }
                extend_from(&mut dirty_subs, &self.by_scope, &api_scope(&id));
            }
            if old.as_ref().map(|a| (&a.policy, &a.operation_policies))
                != new.map(|a| (&a.policy, &a.operation_policies))
            {
                policy_inputs = true;
            }
            match new {
                Some(api) if old.as_ref() != Some(api) => delta.apis.push(api.clone()),
                None if old.is_some() => delta.removed_apis.push(id),
                _ => {}
            }
        }

        for id in dirty_products {
            let fresh = match store.repo::<Product>().get("", &id).await? {
                Some(product) => {
                    let apis = store
                        .links(Link::ProductApi)
                        .targets(&id)
                        .await?
                        .into_iter()
                        .filter(|api| self.apis.contains_key(api))
                        .collect();
                    let scope = PolicyScope::Product(id.clone());
                    let policy = store.policies().get(&scope).await?;
                    snapshot_product(product, apis, policy)
                }
                None => None,
            };
            let old = match fresh {
                Some(p) => self.products.insert(id.clone(), p),
                None => self.products.remove(&id),
            };
            let new = self.products.get(&id);
            if old.is_some() != new.is_some() {
                extend_from(&mut dirty_subs, &self.by_scope, &product_scope(&id));
            }
            if old.as_ref().map(|p| &p.policy) != new.map(|p| &p.policy) {
                policy_inputs = true;
            }
            match new {
                Some(p) if old.as_ref() != Some(p) => delta.products.push(p.clone()),
                None if old.is_some() => delta.removed_products.push(id),
                _ => {}
            }
        }

        for id in dirty_users {
            let user = store.repo::<User>().get("", &id).await?;
            let blocked = user.is_some_and(|u| u.state == UserState::Blocked);
            if blocked {
                self.blocked.insert(id.clone());
            } else {
                self.blocked.remove(&id);
            }
            extend_from(&mut dirty_subs, &self.by_owner, &id);
        }

        for id in dirty_subs {
            self.unindex_subscription(&id);
            let sub = store.repo::<Subscription>().get("", &id).await?;
            let mut fresh = None;
            if let Some(sub) = sub {
                let links = links_of(&sub);
                let relevant = self.relevant(links.scope.as_deref());
                self.index_subscription(&id, links);
                let keys = if relevant {
                    store.repo::<StoredKeys>().get("", &id).await?
                } else {
                    None
                };
                if let Some(keys) = keys {
                    let blocked = sub
                        .owner_id
                        .as_ref()
                        .is_some_and(|o| self.blocked.contains(o));
                    fresh = Some(snapshot_subscription(sub, keys, blocked));
                }
            }
            let old = match fresh {
                Some(s) => self.subscriptions.insert(id.clone(), s),
                None => self.subscriptions.remove(&id),
            };
            match self.subscriptions.get(&id) {
                Some(s) if old.as_ref() != Some(s) => delta.subscriptions.push(s.clone()),
                None if old.is_some() => delta.removed_subscriptions.push(id),
                _ => {}
            }
        }

        for id in dirty_backends {
            let fresh = store
                .repo::<Backend>()
                .get("", &id)
                .await?
                .map(snapshot_backend);
            let old = match fresh {
                Some(b) => self.backends.insert(id.clone(), b),
                None => self.backends.remove(&id),
            };
            match self.backends.get(&id) {
                Some(b) if old.as_ref() != Some(b) => delta.backends.push(b.clone()),
                None if old.is_some() => delta.removed_backends.push(id),
                _ => continue,
            }
            // Its credentials may name other named values and client certificates.
            policy_inputs = true;
            tls = true;
        }

        if global {
            let fresh = store.policies().get(&PolicyScope::Global).await?;
            if fresh != self.global_policy {
                delta.global_policy = Some(fresh.clone());
                self.global_policy = fresh;
                policy_inputs = true;
            }
        }
        if policy_inputs {
            // The policies may name other client certificates.
            tls = true;
            let (fragments, named) = (self.policy_fragments.clone(), self.named_values.clone());
            let loggers = self.loggers.clone();
            self.ship_policy_inputs(store, sealer).await?;
            if loggers != self.loggers {
                delta.loggers = Some(self.loggers.values().cloned().collect());
            }
            if fragments != self.policy_fragments {
                delta.policy_fragments = Some(self.policy_fragments.clone());
            }
            if named != self.named_values {
                delta.named_values = Some(self.named_values.clone());
            }
        }
        if tls {
            let fresh = Self::load_tls(
                store,
                sealer,
                &self.gateway_id,
                &self.client_certificate_ids(),
            )
            .await?;
            if fresh != self.tls {
                delta.tls = Some(fresh.clone());
                self.tls = fresh;
            }
        }
        self.revision = revision;
        Ok(Some(delta))
    }

    /// The delta from `old` to `self`, found by comparing them whole (after a full compile).
    pub fn diff(&self, old: &Compiled) -> Delta {
        fn changes<T: Clone + PartialEq>(
            old: &BTreeMap<String, T>,
            new: &BTreeMap<String, T>,
        ) -> (Vec<T>, Vec<String>) {
            let upserts = new
                .iter()
                .filter(|(id, v)| old.get(*id) != Some(*v))
                .map(|(_, v)| v.clone())
                .collect();
            let removed = old
                .keys()
                .filter(|id| !new.contains_key(*id))
                .cloned()
                .collect();
            (upserts, removed)
        }
        let (apis, removed_apis) = changes(&old.apis, &self.apis);
        let (products, removed_products) = changes(&old.products, &self.products);
        let (subscriptions, removed_subscriptions) =
            changes(&old.subscriptions, &self.subscriptions);
        let (backends, removed_backends) = changes(&old.backends, &self.backends);
        Delta {
            format: FORMAT_VERSION,
            base: old.revision,
            revision: self.revision,
            gateway_id: self.gateway_id.clone(),
            apis,
            removed_apis,
            products,
            removed_products,
            subscriptions,
            removed_subscriptions,
            global_policy: (old.global_policy != self.global_policy)
                .then(|| self.global_policy.clone()),
            named_values: (old.named_values != self.named_values)
                .then(|| self.named_values.clone()),
            policy_fragments: (old.policy_fragments != self.policy_fragments)
                .then(|| self.policy_fragments.clone()),
            tls: (old.tls != self.tls).then(|| self.tls.clone()),
            backends,
            removed_backends,
            loggers: (old.loggers != self.loggers)
                .then(|| self.loggers.values().cloned().collect()),
        }
    }

    /// The snapshot, as shipped: APIs, products and subscriptions ordered by id.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            format: FORMAT_VERSION,
            revision: self.revision,
            gateway_id: self.gateway_id.clone(),
            apis: self.apis.values().cloned().collect(),
            products: self.products.values().cloned().collect(),
            subscriptions: self.subscriptions.values().cloned().collect(),
            global_policy: self.global_policy.clone(),
            named_values: self.named_values.clone(),
            policy_fragments: self.policy_fragments.clone(),
            tls: self.tls.clone(),
            backends: self.backends.values().cloned().collect(),
            tryit_key: self.tryit_key.clone(),
            loggers: self.loggers.values().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests;
