//! The snapshot: everything one gateway needs to serve, compiled by the control plane from the
//! store and shipped as JSON. The built-in gateway of `gatehouse up` receives the very same
//! value in-process; a self-hosted gateway downloads it over the link.
//!
//! Subscription keys never travel in clear: a snapshot carries the SHA-256 of each key. The
//! private keys of the gateway's hostname certificates, and of the client certificates its
//! backends and `authentication-certificate` policies present, do travel (the gateway uses
//! them): over the link, and sealed in the gateway's backups.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::loggers::LoggerEndpoint;
use crate::resources::{
    BackendCredentials, BackendTls, Operation, ProductState, Protocol, SubscriptionState,
};

/// Bumped when the snapshot format changes incompatibly.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub format: u32,
    /// Monotonic revision of the control plane's store this snapshot was compiled from.
    pub revision: u64,
    /// The gateway this snapshot is for.
    pub gateway_id: String,
    pub apis: Vec<SnapshotApi>,
    pub products: Vec<SnapshotProduct>,
    pub subscriptions: Vec<SnapshotSubscription>,
    /// The global policy document (XML); `None` is Azure's default (forward every request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_policy: Option<String>,
    /// The named values the shipped policies refer to, by name (secret ones included: the
    /// gateway needs them to compile; the backup encrypts them when a backup key is set).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub named_values: BTreeMap<String, String>,
    /// The policy fragments (`<fragment>…</fragment>` XML) the shipped policies include, by id;
    /// gateways inline them when they compile the policies.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub policy_fragments: BTreeMap<String, String>,
    /// The gateway's hostname certificates and CA certificates (absent in older snapshots).
    #[serde(default, skip_serializing_if = "SnapshotTls::is_empty")]
    pub tls: SnapshotTls,
    /// The backends (`/mgmt/backends`) `set-backend-service backend-id` can send to, ordered
    /// by id; credentials as stored, `{{named values}}` unresolved (the gateway resolves them
    /// from [`Snapshot::named_values`], as it does for policies).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<SnapshotBackend>,
    /// The key (base64 of 32 bytes) that signs the developer portal's Try it calls, so the
    /// gateway can believe the user address they carry (see [`crate::tryit`]). Secret, like
    /// the named values; `None`: the gateway believes no such address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tryit_key: Option<String>,
    /// The loggers (`/mgmt/loggers`) the shipped policies name in `log-to-eventhub`, ordered
    /// by id, with their secrets in clear (the gateway uses them; the backup seals them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loggers: Vec<SnapshotLogger>,
}

/// One logger as a gateway needs it: where messages go and with which secrets.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotLogger {
    pub id: String,
    /// `azureEventHub`, `http` or `otlp`.
    pub logger_type: String,
    /// `azureEventHub`: `connectionString` (and `name`), in clear.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub credentials: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<LoggerEndpoint>,
    #[serde(default = "default_true")]
    pub is_buffered: bool,
}

/// Never prints the credentials or the endpoint's headers.
impl std::fmt::Debug for SnapshotLogger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotLogger")
            .field("id", &self.id)
            .field("logger_type", &self.logger_type)
            .field("url", &self.endpoint.as_ref().map(|e| &e.url))
            .field("is_buffered", &self.is_buffered)
            .finish_non_exhaustive()
    }
}

/// What a gateway needs for TLS beyond its command line: the certificates it serves per
/// hostname (chosen by SNI) and the CA certificates assigned to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotTls {
    /// Ordered by id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<SnapshotHostname>,
    /// Ordered by certificate id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificate_authorities: Vec<SnapshotCertificateAuthority>,
    /// The client certificates the gateway presents to backends (a backend's
    /// `credentials.certificateIds`, the `authentication-certificate` policy), with their
    /// keys. Ordered by id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub client_certificates: Vec<SnapshotClientCertificate>,
}

impl SnapshotTls {
    pub fn is_empty(&self) -> bool {
        self.hostnames.is_empty()
            && self.certificate_authorities.is_empty()
            && self.client_certificates.is_empty()
    }
}

/// One certificate the gateway presents as a TLS client.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotClientCertificate {
    /// The certificate's id (`/mgmt/certificates/{id}`).
    pub id: String,
    /// The PEM chain, leaf first.
    pub certificate: String,
    /// The PEM private key of the leaf.
    pub key: String,
}

/// Never prints the private key.
impl std::fmt::Debug for SnapshotClientCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotClientCertificate")
            .field("id", &self.id)
            .field("key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// One backend (`/mgmt/backends/{id}`), as a gateway needs it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotBackend {
    pub id: String,
    /// The base URL, `http://` or `https://`; empty for a pool.
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<BackendCredentials>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<BackendTls>,
    /// A single backend's circuit breaker rule, its durations parsed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<SnapshotBreaker>,
    /// A pool's members (`None` for a single backend), ordered by priority, then as the pool
    /// lists them. Each is a single backend of [`Snapshot::backends`], by id: a member's URL,
    /// credentials, TLS and breaker are its own, and its breaker is the same whether a request
    /// reaches it through a pool or by its id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<Vec<SnapshotPoolMember>>,
}

/// One member of a pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotPoolMember {
    /// The member backend's id (plain, without Azure's `/backends/`).
    pub id: String,
    /// Lower is preferred.
    pub priority: u32,
    /// The share of requests among the available members of the same priority.
    pub weight: u32,
}

/// A circuit breaker rule as a gateway runs it: what a failure is, how many trip the breaker
/// within `intervalMs`, and for how long.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotBreaker {
    /// The rule's name, for logs.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Failures within the interval that trip the breaker; else `percentage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// The percentage of the calls within the interval that, failing, trip the breaker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<u32>,
    pub interval_ms: u64,
    pub trip_duration_ms: u64,
    /// Inclusive status ranges whose answers are failures.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub status_code_ranges: Vec<(u16, u16)>,
    /// The reasons of calls without an answer that are failures, as gateways name them
    /// (`BackendConnectionFailure`, `Timeout`); reasons no gateway reports are left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub error_reasons: Vec<String>,
    /// The tripping answer's `Retry-After`, when it has one, says how long the breaker stays
    /// open.
    #[serde(default)]
    pub accept_retry_after: bool,
}

/// Never prints the credentials (they may hold secrets in clear once resolved, or keys).
impl std::fmt::Debug for SnapshotBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotBackend")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("tls", &self.tls)
            .field("circuit_breaker", &self.circuit_breaker)
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

/// One hostname configuration with the certificate it serves.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotHostname {
    /// The hostname configuration's id.
    pub id: String,
    /// `api.example.com` or `*.example.com`, lower case.
    pub hostname: String,
    pub certificate_id: String,
    /// The PEM chain, leaf first.
    pub certificate: String,
    /// The PEM private key of the leaf.
    pub key: String,
    #[serde(default)]
    pub negotiate_client_certificate: bool,
    #[serde(default = "default_true")]
    pub http2_enabled: bool,
}

fn default_true() -> bool {
    true
}

/// Never prints the private key.
impl std::fmt::Debug for SnapshotHostname {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotHostname")
            .field("id", &self.id)
            .field("hostname", &self.hostname)
            .field("certificate_id", &self.certificate_id)
            .field("key", &"<redacted>")
            .field(
                "negotiate_client_certificate",
                &self.negotiate_client_certificate,
            )
            .field("http2_enabled", &self.http2_enabled)
            .finish()
    }
}

/// One CA certificate assigned to the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotCertificateAuthority {
    pub certificate_id: String,
    /// The PEM certificate(s).
    pub certificate: String,
    /// A trusted root; `false` for an intermediate that only helps build chains.
    #[serde(default = "default_true")]
    pub is_trusted: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotApi {
    pub id: String,
    /// Without leading or trailing `/`; empty for an API at the root.
    pub path: String,
    pub service_url: Option<String>,
    pub protocols: Vec<Protocol>,
    pub subscription_required: bool,
    pub key_header: String,
    pub key_query: String,
    pub operations: Vec<Operation>,
    /// Display name (`context.Api.Name`).
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The API-scope policy document (XML).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Operation-scope policy documents, by operation id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub operation_policies: BTreeMap<String, String>,
    /// Response examples from the imported OpenAPI document, by operation id (for
    /// `mock-response`). Operations without examples are left out.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub examples: BTreeMap<String, ResponseExamples>,
    /// What the imported OpenAPI document declares of each operation, by operation id: body
    /// schemas (`validate-content`), parameters (`validate-parameters`), response statuses
    /// and headers (`validate-status-code`, `validate-headers`). Operations the document does
    /// not describe are left out.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub schemas: BTreeMap<String, OperationSchemas>,
    /// The document's named schemas (`components.schemas`, or `definitions` in Swagger 2.0)
    /// that the operations' schemas refer to with `$ref`, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub definitions: BTreeMap<String, serde_json::Value>,
}

/// What an operation's OpenAPI document declares of its messages. Its presence in
/// [`SnapshotApi::schemas`] means the document describes the operation, even when every
/// field is empty (then no parameter and no status is declared).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationSchemas {
    /// The request body's schema, by media type (`application/json`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub request: BTreeMap<String, serde_json::Value>,
    /// The response bodies' schemas: status as the document writes it (`200`, `2XX`,
    /// `default`) → media type → schema.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub responses: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
    /// The header, query and path parameters (path-item and operation level merged).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<ParameterSchema>,
    /// Every response status the operation declares, as the document writes it (`200`,
    /// `2XX`, `default`), with the headers declared for it (their location is `header`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub statuses: BTreeMap<String, Vec<ParameterSchema>>,
}

/// One declared parameter (or response header).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParameterSchema {
    pub name: String,
    #[serde(rename = "in")]
    pub location: ParameterLocation,
    #[serde(default, skip_serializing_if = "is_false")]
    pub required: bool,
    /// The value's JSON schema (local `$ref`s kept); `None` when the document gives none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<serde_json::Value>,
    /// How the value is written in the message.
    #[serde(default, skip_serializing_if = "ParameterStyle::is_default")]
    pub style: ParameterStyle,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ParameterLocation {
    Query,
    Header,
    Path,
}

/// How a parameter's value is written: for arrays, what separates the items; for the rest,
/// whether the text is the value itself or a JSON document.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ParameterStyle {
    /// Items separated by `,` (OpenAPI 3 `simple` and `form` without explode, Swagger `csv`).
    #[default]
    Csv,
    /// Items separated by a space (`spaceDelimited`, `ssv`).
    Ssv,
    /// Items separated by a tab (`tsv`).
    Tsv,
    /// Items separated by `|` (`pipeDelimited`, `pipes`).
    Pipes,
    /// The parameter repeated, one item each (`form` with explode, Swagger `multi`).
    Multi,
    /// The value is a JSON text (OpenAPI 3 `content: {application/json: …}`).
    Json,
    /// A style whose values are not checked beyond their presence (`label`, `matrix`,
    /// `deepObject`, an exploded object).
    Unchecked,
}

impl ParameterStyle {
    fn is_default(&self) -> bool {
        *self == Self::Csv
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The example responses of one operation: status code as the document writes it (`200`,
/// `2XX`, `default`) → the examples for it, one per content type, in document order.
pub type ResponseExamples = BTreeMap<String, Vec<ResponseExample>>;

/// One example body, as the gateway sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseExample {
    /// The media type (`application/json`).
    pub content_type: String,
    /// The body: JSON as text for JSON media types, a string example as written otherwise.
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotProduct {
    pub id: String,
    pub subscription_required: bool,
    pub state: ProductState,
    /// Ids of the product's APIs that this gateway serves.
    pub apis: Vec<String>,
    #[serde(default)]
    pub name: String,
    /// The product-scope policy document (XML).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotSubscription {
    pub id: String,
    /// `/apis`, `/apis/{id}` or `/products/{id}`.
    pub scope: String,
    pub state: SubscriptionState,
    /// Lower-case hex SHA-256 of the primary and secondary keys.
    pub key_hashes: Vec<String>,
    #[serde(default)]
    pub name: String,
}

/// The changes from one snapshot of a gateway to a newer one, so that a change to one
/// subscription ships one subscription, not all of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Delta {
    pub format: u32,
    /// The revision the delta applies to.
    pub base: u64,
    /// The revision it produces.
    pub revision: u64,
    pub gateway_id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub apis: Vec<SnapshotApi>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed_apis: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub products: Vec<SnapshotProduct>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed_products: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscriptions: Vec<SnapshotSubscription>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed_subscriptions: Vec<String>,
    /// `Some` when the global policy changed (`Some(None)`: removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_policy: Option<Option<String>>,
    /// `Some` when any named value changed: the whole new set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub named_values: Option<BTreeMap<String, String>>,
    /// `Some` when any policy fragment changed: the whole new set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_fragments: Option<BTreeMap<String, String>>,
    /// `Some` when anything of the gateway's TLS changed: the whole new set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<SnapshotTls>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<SnapshotBackend>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed_backends: Vec<String>,
    /// `Some` when any shipped logger changed: the whole new set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loggers: Option<Vec<SnapshotLogger>>,
}

/// Upserts and removals between two lists keyed by id, keeping `new`'s order for upserts.
fn changes<T: Clone + PartialEq>(
    old: &[T],
    new: &[T],
    id: impl Fn(&T) -> &str,
) -> (Vec<T>, Vec<String>) {
    let before: BTreeMap<&str, &T> = old.iter().map(|t| (id(t), t)).collect();
    let after: std::collections::BTreeSet<&str> = new.iter().map(&id).collect();
    let upserts = new
        .iter()
        .filter(|t| before.get(id(t)).is_none_or(|o| *o != *t))
        .cloned()
        .collect();
    let removed = old
        .iter()
        .map(&id)
        .filter(|i| !after.contains(i))
        .map(str::to_owned)
        .collect();
    (upserts, removed)
}

/// Applies upserts and removals to a list keyed by id: replaced items keep their place, new
/// ones are appended. Touches only what changed: no index of the whole list is built.
fn patch<T: Clone>(list: &mut Vec<T>, upserts: &[T], removed: &[String], id: impl Fn(&T) -> &str) {
    if !removed.is_empty() {
        let gone: std::collections::HashSet<&str> = removed.iter().map(String::as_str).collect();
        list.retain(|t| !gone.contains(id(t)));
    }
    if upserts.is_empty() {
        return;
    }
    let mut pending: std::collections::HashMap<&str, &T> =
        upserts.iter().map(|u| (id(u), u)).collect();
    for slot in list.iter_mut() {
        if let Some(u) = pending.remove(id(slot)) {
            *slot = u.clone();
        }
    }
    for u in upserts {
        if pending.remove(id(u)).is_some() {
            list.push(u.clone());
        }
    }
}

/// Folds a later list of upserts and removals into an earlier one: the later word on an id wins.
fn merge<T>(
    (upserts, removed): (&mut Vec<T>, &mut Vec<String>),
    (later_upserts, later_removed): (Vec<T>, Vec<String>),
    id: impl Fn(&T) -> &str,
) {
    let touched: std::collections::BTreeSet<&str> = later_upserts
        .iter()
        .map(&id)
        .chain(later_removed.iter().map(String::as_str))
        .collect();
    upserts.retain(|u| !touched.contains(id(u)));
    removed.retain(|r| !touched.contains(r.as_str()));
    upserts.extend(later_upserts);
    removed.extend(later_removed);
}

impl Delta {
    /// What changed from `old` to `new` (both for the same gateway).
    pub fn between(old: &Snapshot, new: &Snapshot) -> Self {
        let (apis, removed_apis) = changes(&old.apis, &new.apis, |a| &a.id);
        let (products, removed_products) = changes(&old.products, &new.products, |p| &p.id);
        let (subscriptions, removed_subscriptions) =
            changes(&old.subscriptions, &new.subscriptions, |s| &s.id);
        let (backends, removed_backends) = changes(&old.backends, &new.backends, |b| &b.id);
        Self {
            format: FORMAT_VERSION,
            base: old.revision,
            revision: new.revision,
            gateway_id: new.gateway_id.clone(),
            apis,
            removed_apis,
            products,
            removed_products,
            subscriptions,
            removed_subscriptions,
            global_policy: (old.global_policy != new.global_policy)
                .then(|| new.global_policy.clone()),
            named_values: (old.named_values != new.named_values).then(|| new.named_values.clone()),
            policy_fragments: (old.policy_fragments != new.policy_fragments)
                .then(|| new.policy_fragments.clone()),
            tls: (old.tls != new.tls).then(|| new.tls.clone()),
            backends,
            removed_backends,
            loggers: (old.loggers != new.loggers).then(|| new.loggers.clone()),
        }
    }

    /// The snapshot this delta produces from `base`.
    pub fn apply(&self, base: &Snapshot) -> Result<Snapshot, String> {
        self.applies_to(base)?;
        self.apply_owned(base.clone())
    }

    /// [`Delta::apply`] to a base the caller no longer needs: patched in place, not copied.
    pub fn apply_owned(&self, base: Snapshot) -> Result<Snapshot, String> {
        self.applies_to(&base)?;
        let mut next = base;
        next.revision = self.revision;
        self.patch_into(&mut next);
        Ok(next)
    }

    /// Whether this delta can be applied to `base` (its format, revision and gateway).
    pub fn applies_to(&self, base: &Snapshot) -> Result<(), String> {
        if self.format != FORMAT_VERSION {
            return Err(format!("delta format {} is not supported", self.format));
        }
        if base.revision != self.base || base.gateway_id != self.gateway_id {
            return Err(format!(
                "the delta applies to revision {} of gateway '{}', not to revision {} of '{}'",
                self.base, self.gateway_id, base.revision, base.gateway_id
            ));
        }
        Ok(())
    }

    fn patch_into(&self, next: &mut Snapshot) {
        patch(&mut next.apis, &self.apis, &self.removed_apis, |a| &a.id);
        patch(
            &mut next.products,
            &self.products,
            &self.removed_products,
            |p| &p.id,
        );
        patch(
            &mut next.subscriptions,
            &self.subscriptions,
            &self.removed_subscriptions,
            |s| &s.id,
        );
        patch(
            &mut next.backends,
            &self.backends,
            &self.removed_backends,
            |b| &b.id,
        );
        if !self.backends.is_empty() {
            // Shipped ordered by id; an added backend was appended.
            next.backends.sort_by(|a, b| a.id.cmp(&b.id));
        }
        if let Some(g) = &self.global_policy {
            next.global_policy = g.clone();
        }
        if let Some(n) = &self.named_values {
            next.named_values = n.clone();
        }
        if let Some(f) = &self.policy_fragments {
            next.policy_fragments = f.clone();
        }
        if let Some(t) = &self.tls {
            next.tls = t.clone();
        }
        if let Some(l) = &self.loggers {
            next.loggers = l.clone();
        }
    }

    /// One delta that does what `self` then `next` do: from `self.base` to `next.revision`.
    /// Lets the control plane answer a gateway a few revisions behind with one small delta.
    pub fn then(mut self, next: Delta) -> Result<Delta, String> {
        if next.base != self.revision || next.gateway_id != self.gateway_id {
            return Err(format!(
                "a delta from revision {} cannot follow one to revision {}",
                next.base, self.revision
            ));
        }
        self.revision = next.revision;
        merge(
            (&mut self.apis, &mut self.removed_apis),
            (next.apis, next.removed_apis),
            |a| &a.id,
        );
        merge(
            (&mut self.products, &mut self.removed_products),
            (next.products, next.removed_products),
            |p| &p.id,
        );
        merge(
            (&mut self.subscriptions, &mut self.removed_subscriptions),
            (next.subscriptions, next.removed_subscriptions),
            |s| &s.id,
        );
        merge(
            (&mut self.backends, &mut self.removed_backends),
            (next.backends, next.removed_backends),
            |b| &b.id,
        );
        if next.global_policy.is_some() {
            self.global_policy = next.global_policy;
        }
        if next.named_values.is_some() {
            self.named_values = next.named_values;
        }
        if next.policy_fragments.is_some() {
            self.policy_fragments = next.policy_fragments;
        }
        if next.tls.is_some() {
            self.tls = next.tls;
        }
        if next.loggers.is_some() {
            self.loggers = next.loggers;
        }
        Ok(self)
    }

    /// Items the delta carries: a measure of its size.
    pub fn len(&self) -> usize {
        self.apis.len()
            + self.removed_apis.len()
            + self.products.len()
            + self.removed_products.len()
            + self.subscriptions.len()
            + self.removed_subscriptions.len()
            + self.backends.len()
            + self.removed_backends.len()
            + usize::from(self.global_policy.is_some())
            + self.named_values.as_ref().map_or(0, BTreeMap::len)
            + self.policy_fragments.as_ref().map_or(0, BTreeMap::len)
            + self.tls.as_ref().map_or(0, |t| {
                // An emptied set is still a change.
                (t.hostnames.len() + t.certificate_authorities.len() + t.client_certificates.len())
                    .max(1)
            })
            // An emptied set is still a change.
            + self.loggers.as_ref().map_or(0, |l| l.len().max(1))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::SubscriptionState;

    fn tls(hostname: &str) -> SnapshotTls {
        SnapshotTls {
            hostnames: vec![SnapshotHostname {
                id: "hc".into(),
                hostname: hostname.into(),
                certificate_id: "c".into(),
                certificate: "-----BEGIN CERTIFICATE-----".into(),
                key: "-----BEGIN PRIVATE KEY-----secret".into(),
                negotiate_client_certificate: false,
                http2_enabled: true,
            }],
            certificate_authorities: vec![SnapshotCertificateAuthority {
                certificate_id: "ca".into(),
                certificate: "-----BEGIN CERTIFICATE-----".into(),
                is_trusted: true,
            }],
            client_certificates: vec![SnapshotClientCertificate {
                id: "client".into(),
                certificate: "-----BEGIN CERTIFICATE-----".into(),
                key: "-----BEGIN PRIVATE KEY-----secret".into(),
            }],
        }
    }

    fn backend(id: &str, url: &str) -> SnapshotBackend {
        SnapshotBackend {
            id: id.into(),
            url: url.into(),
            credentials: Some(BackendCredentials {
                header: [("x-key".to_owned(), vec!["{{secret}}".to_owned()])].into(),
                ..BackendCredentials::default()
            }),
            tls: None,
            circuit_breaker: None,
            pool: None,
        }
    }

    #[test]
    fn backends_travel_as_upserts_and_removals_in_id_order() {
        let mut old = snap(1, vec![]);
        old.backends = vec![backend("a", "http://a"), backend("c", "http://c")];
        let mut new = snap(2, vec![]);
        new.backends = vec![backend("b", "http://b"), backend("c", "https://c")];
        let d = Delta::between(&old, &new);
        assert_eq!(d.backends.len(), 2);
        assert_eq!(d.removed_backends, vec!["a".to_owned()]);
        assert_eq!(d.len(), 3);
        // Applied, the list is in id order again, as a full snapshot ships it.
        assert_eq!(d.apply(&old).unwrap(), new);
        // Folded with a later change, the later word wins.
        let mut later = snap(3, vec![]);
        later.backends = vec![backend("a", "http://a2")];
        let folded = d.clone().then(Delta::between(&new, &later)).unwrap();
        assert_eq!(folded.apply(&old).unwrap(), later);
        // Unchanged backends do not travel; old deltas and snapshots read as having none.
        let mut same = new.clone();
        same.revision = 3;
        assert!(Delta::between(&new, &same).is_empty());
        let legacy: Delta =
            serde_json::from_str(r#"{"format":1,"base":1,"revision":2,"gatewayId":"g"}"#).unwrap();
        assert!(legacy.backends.is_empty() && legacy.removed_backends.is_empty());
        // Debug output shows no credentials.
        assert!(!format!("{new:?}").contains("secret"));
    }

    #[test]
    fn tls_travels_whole_when_it_changes_and_older_snapshots_still_read() {
        let old = snap(1, vec![]);
        let mut new = snap(2, vec![]);
        new.tls = tls("api.example.com");
        let d = Delta::between(&old, &new);
        assert_eq!(d.tls.as_ref(), Some(&new.tls));
        assert_eq!(d.apply(&old).unwrap(), new);
        // Unchanged TLS does not travel; an emptied set does.
        let mut same = new.clone();
        same.revision = 3;
        assert!(Delta::between(&new, &same).tls.is_none());
        let back = Delta::between(&new, &snap(3, vec![]));
        assert_eq!(back.tls, Some(SnapshotTls::default()));
        assert!(!back.is_empty());
        assert!(back.apply(&new).unwrap().tls.is_empty());
        // Folding keeps the later set.
        let mut later = snap(3, vec![]);
        later.tls = tls("other.example.com");
        let folded = d.clone().then(Delta::between(&new, &later)).unwrap();
        assert_eq!(folded.apply(&old).unwrap(), later);
        // A snapshot and a delta written before TLS existed read as having none.
        let legacy: Snapshot = serde_json::from_str(
            r#"{"format":1,"revision":1,"gatewayId":"g","apis":[],"products":[],"subscriptions":[]}"#,
        )
        .unwrap();
        assert!(legacy.tls.is_empty());
        let text = serde_json::to_string(&legacy).unwrap();
        assert!(!text.contains("tls"), "{text}");
        let legacy: Delta =
            serde_json::from_str(r#"{"format":1,"base":1,"revision":2,"gatewayId":"g"}"#).unwrap();
        assert!(legacy.tls.is_none());
        // Debug output never shows the key.
        assert!(!format!("{new:?}").contains("secret"));
    }

    fn sub(id: &str, state: SubscriptionState) -> SnapshotSubscription {
        SnapshotSubscription {
            id: id.into(),
            scope: "/apis".into(),
            state,
            key_hashes: vec![format!("{id:0>64}")],
            name: id.into(),
        }
    }

    fn snap(revision: u64, subs: Vec<SnapshotSubscription>) -> Snapshot {
        Snapshot {
            format: FORMAT_VERSION,
            revision,
            gateway_id: "g".into(),
            subscriptions: subs,
            ..Snapshot::default()
        }
    }

    #[test]
    fn a_one_subscription_change_ships_one_subscription() {
        let many: Vec<_> = (0..1000)
            .map(|i| sub(&format!("s{i}"), SubscriptionState::Active))
            .collect();
        let old = snap(1, many.clone());
        let mut changed = many;
        changed[500].state = SubscriptionState::Suspended;
        changed.remove(10);
        changed.push(sub("new", SubscriptionState::Active));
        let new = snap(2, changed);
        let d = Delta::between(&old, &new);
        assert_eq!(d.subscriptions.len(), 2);
        assert_eq!(d.removed_subscriptions, vec!["s10".to_owned()]);
        assert!(d.apis.is_empty() && d.global_policy.is_none() && d.named_values.is_none());
        let rebuilt = d.apply(&old).unwrap();
        assert_eq!(rebuilt, new);
        // Applying to the wrong base is refused.
        assert!(d.apply(&new).is_err());
    }

    #[test]
    fn deltas_in_a_row_fold_into_one() {
        let s = |id: &str| sub(id, SubscriptionState::Active);
        let a = snap(1, vec![s("a"), s("b"), s("c")]);
        let mut b = snap(2, vec![s("a"), s("c"), s("d")]);
        b.subscriptions[0].state = SubscriptionState::Suspended;
        b.global_policy = Some("<policies/>".into());
        let mut c = snap(3, vec![s("a"), s("b"), s("c")]);
        c.subscriptions[2].name = "renamed".into();
        c.named_values.insert("n".into(), "v".into());
        let (ab, bc) = (Delta::between(&a, &b), Delta::between(&b, &c));
        let ac = ab.clone().then(bc.clone()).unwrap();
        let mut direct = ac.apply(&a).unwrap();
        let mut stepwise = bc.apply(&ab.apply(&a).unwrap()).unwrap();
        direct.subscriptions.sort_by(|x, y| x.id.cmp(&y.id));
        stepwise.subscriptions.sort_by(|x, y| x.id.cmp(&y.id));
        assert_eq!(direct, stepwise);
        assert_eq!(stepwise, c);
        // "d" came and went: removing it again is harmless.
        assert_eq!(ac.removed_subscriptions, vec!["d".to_owned()]);
        // Out of order is refused.
        assert!(bc.then(ab).is_err());
    }

    #[test]
    fn policies_and_named_values_travel_when_they_change() {
        let old = snap(1, vec![]);
        let mut new = snap(2, vec![]);
        new.global_policy = Some("<policies/>".into());
        new.named_values.insert("a".into(), "b".into());
        let d = Delta::between(&old, &new);
        assert_eq!(d.apply(&old).unwrap(), new);
        let back = Delta::between(&new, &snap(3, vec![]));
        assert_eq!(back.global_policy, Some(None));
        assert_eq!(back.apply(&new).unwrap().global_policy, None);
    }

    #[test]
    fn policy_fragments_travel_when_they_change() {
        let old = snap(1, vec![]);
        let mut new = snap(2, vec![]);
        new.policy_fragments
            .insert("f".into(), "<fragment/>".into());
        let d = Delta::between(&old, &new);
        assert_eq!(d.policy_fragments.as_ref().map(BTreeMap::len), Some(1));
        assert_eq!(d.apply(&old).unwrap(), new);
        let mut newer = new.clone();
        newer.revision = 3;
        let same = Delta::between(&new, &newer);
        assert!(same.policy_fragments.is_none() && same.is_empty());
        let back = Delta::between(&new, &snap(3, vec![]));
        assert!(back.apply(&new).unwrap().policy_fragments.is_empty());
    }
}
