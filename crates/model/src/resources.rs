//! The resources of the management API, with Azure API Management's property names.
//!
//! One struct serves as the body of `PUT` and as the representation returned by `GET`:
//! read-only properties (`id`) are filled in by the server, input-only ones (keys, `import`)
//! are never serialised back.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{Problems, ValidationError};
use crate::template::UrlTemplate;

/// Checks a resource identifier taken from a URL path.
pub fn validate_id(what: &str, id: &str) -> Result<(), ValidationError> {
    let ok = !id.is_empty()
        && id.len() <= 80
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !id.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(ValidationError::one(
            format!("{what}Id"),
            format!(
                "'{id}' is not a valid identifier: use 1 to 80 letters, digits, '-', '_' or '.', not starting with '.'"
            ),
        ))
    }
}

/// A resource kept by the management API. (Where and under which kind the store keeps it is
/// the store's registry of kinds.)
pub trait Resource: Serialize + for<'de> Deserialize<'de> + Clone {
    fn id(&self) -> &str;
    fn set_id(&mut self, id: String);
    /// Fills in defaults that depend on other properties, then checks every property.
    fn normalize(&mut self) -> Result<(), ValidationError>;
}

macro_rules! resource_id {
    () => {
        fn id(&self) -> &str {
            &self.id
        }
        fn set_id(&mut self, id: String) {
            self.id = id;
        }
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Http,
    Https,
}

fn default_protocols() -> Vec<Protocol> {
    vec![Protocol::Http, Protocol::Https]
}

/// For input-only properties: never serialised back. (`skip_serializing_if` rather than
/// `skip_serializing`, because utoipa leaves `skip_serializing` fields out of the schema.)
fn input_only<T>(_: &T) -> bool {
    true
}

fn default_true() -> bool {
    true
}

/// Where clients put their subscription key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubscriptionKeyParameterNames {
    #[serde(default = "default_key_header")]
    pub header: String,
    #[serde(default = "default_key_query")]
    pub query: String,
}

fn default_key_header() -> String {
    "Ocp-Apim-Subscription-Key".to_owned()
}

fn default_key_query() -> String {
    "subscription-key".to_owned()
}

impl Default for SubscriptionKeyParameterNames {
    fn default() -> Self {
        Self {
            header: default_key_header(),
            query: default_key_query(),
        }
    }
}

/// Import an API description while creating or replacing an API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiImport {
    /// `openapi` (OpenAPI 3.x or Swagger 2.0, JSON or YAML; `openapi+json`, `swagger`, … are
    /// accepted as synonyms).
    pub format: String,
    /// The document itself.
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Api {
    #[serde(default)]
    #[schema(read_only)]
    pub id: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// URL suffix under which the gateway serves the API, without leading or trailing `/`.
    #[serde(default)]
    pub path: String,
    /// The backend base URL requests are forwarded to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_url: Option<String>,
    #[serde(default = "default_protocols")]
    #[schema(min_items = 1)]
    pub protocols: Vec<Protocol>,
    #[serde(default = "default_true")]
    pub subscription_required: bool,
    #[serde(default)]
    pub subscription_key_parameter_names: SubscriptionKeyParameterNames,
    #[serde(default = "default_revision")]
    pub api_revision: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Input only: an API description to import. Its operations replace the API's operations.
    #[serde(default, skip_serializing_if = "input_only")]
    #[schema(write_only)]
    pub import: Option<ApiImport>,
}

fn default_revision() -> String {
    "1".to_owned()
}

impl Resource for Api {
    resource_id!();

    fn normalize(&mut self) -> Result<(), ValidationError> {
        let mut p = Problems::default();
        // As given, before the slashes at either end are dropped.
        if self.path.chars().count() > 400 {
            p.push("path", "must be at most 400 characters");
        }
        self.path = self.path.trim_matches('/').to_owned();
        if self.display_name.is_empty() {
            self.display_name = self.id.clone();
        }
        if self.display_name.chars().count() > 300 {
            p.push("displayName", "must be at most 300 characters");
        }
        for seg in self.path.split('/') {
            if self.path.is_empty() {
                break;
            }
            if seg.is_empty() {
                p.push("path", "must not contain an empty segment ('//')");
            } else if !seg.chars().all(is_path_char) {
                p.push(
                    "path",
                    format!(
                        "segment '{seg}' may hold only letters, digits and '-', '_', '.', '~', '!', '$', '(', ')', '*', ',', ';', '=', ':', '@'"
                    ),
                );
            }
        }
        if let Some(url) = &self.service_url
            && let Err(e) = check_http_url(url)
        {
            p.push("serviceUrl", e);
        }
        if self.protocols.is_empty() {
            p.push("protocols", "must name at least one of 'http', 'https'");
        }
        let names = &self.subscription_key_parameter_names;
        if !is_header_name(&names.header) {
            p.push(
                "subscriptionKeyParameterNames.header",
                format!("'{}' is not a valid HTTP header name", names.header),
            );
        }
        if names.query.is_empty() || !names.query.chars().all(is_path_char) {
            p.push(
                "subscriptionKeyParameterNames.query",
                format!("'{}' is not a valid query parameter name", names.query),
            );
        }
        p.finish("API")
    }
}

/// Characters allowed in a path segment without percent-encoding (RFC 3986 `pchar`).
fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            '-' | '_' | '.' | '~' | '!' | '$' | '(' | ')' | '*' | ',' | ';' | '=' | ':' | '@'
        )
}

/// [`is_header_name`] as a regular expression (an RFC 9110 token), for the OpenAPI document.
pub const HEADER_NAME_PATTERN: &str = "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$";

pub fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    '!' | '#'
                        | '$'
                        | '%'
                        | '&'
                        | '\''
                        | '*'
                        | '+'
                        | '-'
                        | '.'
                        | '^'
                        | '_'
                        | '`'
                        | '|'
                        | '~'
                )
        })
}

/// `url` as a message may show it: without user information (`user:password@`) and without
/// its query and fragment.
fn shown_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let query = if url.contains('?') { "?…" } else { "" };
    if scheme.is_empty() {
        format!("{authority}{path}{query}")
    } else {
        format!("{scheme}://{authority}{path}{query}")
    }
}

/// Checks that `url` is an absolute `http` or `https` URL a gateway can send requests to.
///
/// This is the one definition of a backend URL: the control plane refuses at save what it
/// refuses, and gateways check every service and backend URL with it before they parse one,
/// so the two cannot disagree (a gateway test holds that whatever passes here, its parser
/// takes). It is stricter than RFC 3986 where a gateway's HTTP or TLS stack would be: the
/// host is an IP address or a DNS name a certificate can carry, the port is 1 to 65535, and
/// the path and query hold only URL characters (others percent-encoded).
///
/// The rules are [`HTTP_URL_PATTERN`], which the OpenAPI document publishes for every backend
/// URL: a URL passes exactly when it matches. When it does not, the message says why.
pub fn check_http_url(url: &str) -> Result<(), String> {
    if HTTP_URL.as_ref().is_some_and(|re| re.is_match(url)) {
        return Ok(());
    }
    match diagnose_http_url(url) {
        Err(why) => Err(why),
        Ok(()) => Err(format!(
            "'{}' is not a URL the gateway can call: http:// or https://, an IP address or a \
             host name, an optional port, then a path and query of URL characters",
            shown_url(url)
        )),
    }
}

/// What [`check_http_url`] checks, as a regular expression: `http` or `https`; an IPv4 address
/// (no leading zeros), a bracketed IPv6 address, or a DNS name whose labels are letters,
/// digits, '-' and '_' (1 to 63, no '-' at either end) and whose last label starts with a
/// letter (so it cannot be taken for a number), with an optional final dot; a port from 1 to
/// 65535; a path or query of URL characters and percent-encoded bytes. No user information,
/// no fragment, no spaces.
pub const HTTP_URL_PATTERN: &str = concat!(
    "^https?://",
    "(?:",
    // IPv4
    "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(?:\\.(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}",
    // IPv6
    "|\\[(?:",
    "(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}",
    "|(?:[0-9A-Fa-f]{1,4}:){1,7}:",
    "|(?:[0-9A-Fa-f]{1,4}:){1,6}:[0-9A-Fa-f]{1,4}",
    "|(?:[0-9A-Fa-f]{1,4}:){1,5}(?::[0-9A-Fa-f]{1,4}){1,2}",
    "|(?:[0-9A-Fa-f]{1,4}:){1,4}(?::[0-9A-Fa-f]{1,4}){1,3}",
    "|(?:[0-9A-Fa-f]{1,4}:){1,3}(?::[0-9A-Fa-f]{1,4}){1,4}",
    "|(?:[0-9A-Fa-f]{1,4}:){1,2}(?::[0-9A-Fa-f]{1,4}){1,5}",
    "|[0-9A-Fa-f]{1,4}:(?::[0-9A-Fa-f]{1,4}){1,6}",
    "|:(?:(?::[0-9A-Fa-f]{1,4}){1,7}|:)",
    ")\\]",
    // DNS name
    "|(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\\.)*[A-Za-z](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\\.?",
    ")",
    // port
    "(?::(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9][0-9]|6[0-4][0-9][0-9][0-9]|[1-5][0-9][0-9][0-9][0-9]|[1-9][0-9]{0,3}))?",
    // path and query
    "(?:[/?](?:[A-Za-z0-9._~!$&'()*+,;=:@/?-]|%[0-9A-Fa-f][0-9A-Fa-f])*)?",
    "$"
);

/// [`HTTP_URL_PATTERN`], compiled once. `None` only if the constant did not compile, which a
/// unit test rules out; every URL is refused then.
static HTTP_URL: std::sync::LazyLock<Option<regex::Regex>> =
    std::sync::LazyLock::new(|| regex::Regex::new(HTTP_URL_PATTERN).ok());

/// Says what is wrong with a URL [`HTTP_URL_PATTERN`] refuses.
fn diagnose_http_url(url: &str) -> Result<(), String> {
    // Messages show the URL without its user information and query: they reach logs and
    // `/readyz`, and a query or a user-info part can carry a secret.
    let shown = shown_url(url);
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| {
            format!("'{shown}' must be an absolute URL starting with http:// or https://")
        })?;
    if url.contains(char::is_whitespace) || url.contains(['#']) {
        return Err(format!("'{shown}' must not contain spaces or a fragment"));
    }
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.contains('@') {
        return Err(format!(
            "'{shown}' must not carry user information (user:password@); use the backend's credentials"
        ));
    }
    if authority.is_empty() {
        return Err(format!("'{shown}' has no valid host"));
    }
    let (host, port) = match authority.rfind(':') {
        Some(colon) if !authority.ends_with(']') => {
            (&authority[..colon], Some(&authority[colon + 1..]))
        }
        _ => (authority, None),
    };
    if let Some(port) = port
        && (port.is_empty()
            || !port.bytes().all(|b| b.is_ascii_digit())
            || !port.parse::<u16>().is_ok_and(|p| p != 0))
    {
        return Err(format!(
            "'{shown}': the port must be a number from 1 to 65535"
        ));
    }
    if !is_url_host(host) {
        return Err(format!(
            "'{shown}': '{host}' is neither an IP address nor a host name (letters, digits, '-' and '_' in dot-separated labels of at most 63, the last starting with a letter)"
        ));
    }
    let bytes = tail.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = |k: usize| bytes.get(k).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return Err(format!(
                    "'{shown}': '%' must start a percent-encoded byte such as %20"
                ));
            }
            i += 3;
            continue;
        }
        if !(b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?".contains(&b)) {
            return Err(format!(
                "'{shown}': '{}' is not allowed in a URL's path or query; percent-encode it",
                tail[i..].chars().next().unwrap_or_default()
            ));
        }
        i += 1;
    }
    Ok(())
}

/// An IPv4 address, a bracketed IPv6 address, or a DNS name whose labels are letters, digits,
/// '-' and '_' (at most 63 each, 253 in all, no '-' at either end) and whose last label starts
/// with a letter, so it cannot be taken for a number.
fn is_url_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[') {
        return inner
            .strip_suffix(']')
            .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok());
    }
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return host.parse::<std::net::Ipv4Addr>().is_ok();
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    let labels_ok = name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    labels_ok
        && !name.is_empty()
        && name.len() <= 253
        && name
            .rsplit('.')
            .next()
            .is_some_and(|last| last.starts_with(|c: char| c.is_ascii_alphabetic()))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateParameter {
    pub name: String,
    #[serde(default = "default_param_type", rename = "type")]
    pub type_: String,
    #[serde(default = "default_true")]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

fn default_param_type() -> String {
    "string".to_owned()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Operation {
    #[serde(default)]
    #[schema(read_only)]
    pub id: String,
    #[serde(default)]
    pub display_name: String,
    /// HTTP method, such as `GET`; `*` matches any method.
    #[serde(default)]
    #[schema(required = true, pattern = "^([*]|[A-Za-z]+)$")]
    pub method: String,
    /// Path template below the API's path, such as `/users/{id}`.
    #[serde(default)]
    #[schema(required = true, pattern = "^/")]
    pub url_template: String,
    #[serde(default)]
    pub template_parameters: Vec<TemplateParameter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl Resource for Operation {
    resource_id!();

    fn normalize(&mut self) -> Result<(), ValidationError> {
        let mut p = Problems::default();
        if self.display_name.is_empty() {
            self.display_name = self.id.clone();
        }
        self.method = self.method.to_ascii_uppercase();
        if let Err(e) = check_method(&self.method) {
            p.push("method", e);
        }
        match UrlTemplate::parse(&self.url_template) {
            Ok(t) => {
                for name in t.params() {
                    if !self.template_parameters.iter().any(|tp| tp.name == name) {
                        self.template_parameters.push(TemplateParameter {
                            name: name.to_owned(),
                            type_: default_param_type(),
                            required: true,
                            description: None,
                        });
                    }
                }
            }
            Err(e) => p.push("urlTemplate", e.to_string()),
        }
        p.finish("operation")
    }
}

/// Checks an operation's method as stored (upper case): `*`, or letters. Gateways check each
/// operation with it too, so what the control plane saves, they route.
pub fn check_method(method: &str) -> Result<(), String> {
    if method.is_empty() {
        Err("is required, for example 'GET'".to_owned())
    } else if method != "*" && !method.chars().all(|c| c.is_ascii_uppercase()) {
        Err(format!(
            "'{method}' is not an HTTP method such as GET or POST"
        ))
    } else {
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase")]
pub enum ProductState {
    #[default]
    NotPublished,
    Published,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Product {
    #[serde(default)]
    #[schema(read_only)]
    pub id: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terms: Option<String>,
    /// When false, the product's APIs can be called without a key ("open product").
    #[serde(default = "default_true")]
    pub subscription_required: bool,
    /// Whether an administrator approves each new subscription. An open product
    /// (`subscriptionRequired: false`) has no subscriptions, so there it changes nothing.
    #[serde(default)]
    pub approval_required: bool,
    /// How many subscriptions one user may have to the product (Azure's int32).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 2147483647)]
    pub subscriptions_limit: Option<u32>,
    #[serde(default)]
    pub state: ProductState,
}

impl Resource for Product {
    resource_id!();

    fn normalize(&mut self) -> Result<(), ValidationError> {
        let mut p = Problems::default();
        if self.display_name.is_empty() {
            self.display_name = self.id.clone();
        }
        if self.display_name.chars().count() > 300 {
            p.push("displayName", "must be at most 300 characters");
        }
        if self
            .subscriptions_limit
            .is_some_and(|n| n > i32::MAX as u32)
        {
            p.push("subscriptionsLimit", "must be at most 2147483647");
        }
        p.finish("product")
    }
}

/// What a subscription's keys unlock.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// `/apis`: every API.
    AllApis,
    /// `/apis/{id}`.
    Api(String),
    /// `/products/{id}`.
    Product(String),
}

impl Scope {
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim_end_matches('/');
        let t = t.strip_prefix("/subscriptions/").map_or(t, |_| t);
        if t == "/apis" {
            return Ok(Scope::AllApis);
        }
        let bad = || {
            format!(
                "'{text}' is not a scope: use '/apis', '/apis/{{apiId}}' or '/products/{{productId}}'"
            )
        };
        let (kind, id) = t
            .strip_prefix('/')
            .and_then(|r| r.split_once('/'))
            .ok_or_else(bad)?;
        if validate_id("scope", id).is_err() {
            return Err(bad());
        }
        match kind {
            "apis" => Ok(Scope::Api(id.to_owned())),
            "products" => Ok(Scope::Product(id.to_owned())),
            _ => Err(bad()),
        }
    }

    pub fn to_path(&self) -> String {
        match self {
            Scope::AllApis => "/apis".to_owned(),
            Scope::Api(id) => format!("/apis/{id}"),
            Scope::Product(id) => format!("/products/{id}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase")]
pub enum SubscriptionState {
    #[default]
    Active,
    Suspended,
    Submitted,
    Rejected,
    Cancelled,
    Expired,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Subscription {
    #[serde(default)]
    #[schema(read_only)]
    pub id: String,
    /// `/apis`, `/apis/{apiId}` or `/products/{productId}`.
    #[serde(default)]
    #[schema(
        required = true,
        pattern = "^/(apis|(apis|products)/[A-Za-z0-9_-][A-Za-z0-9._-]{0,79})/*$"
    )]
    pub scope: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub state: SubscriptionState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
    #[serde(default)]
    pub allow_tracing: bool,
    /// Input only: a key to use instead of a generated one, 16 to 256 printable ASCII
    /// characters without spaces. Read keys with `listSecrets`.
    #[serde(default, skip_serializing_if = "input_only")]
    #[schema(write_only, pattern = "^[!-~]{16,256}$")]
    pub primary_key: Option<String>,
    /// Input only, like `primaryKey`.
    #[serde(default, skip_serializing_if = "input_only")]
    #[schema(write_only, pattern = "^[!-~]{16,256}$")]
    pub secondary_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(read_only)]
    pub created_date: Option<String>,
}

impl Subscription {
    pub fn parsed_scope(&self) -> Result<Scope, ValidationError> {
        Scope::parse(&self.scope).map_err(|e| ValidationError::one("scope", e))
    }
}

/// Checks a caller-chosen subscription key.
pub fn check_key(target: &str, key: &str) -> Result<(), ValidationError> {
    if key.len() < 16 || key.len() > 256 || !key.chars().all(|c| c.is_ascii_graphic()) {
        return Err(ValidationError::one(
            target,
            "a key must be 16 to 256 printable ASCII characters without spaces",
        ));
    }
    Ok(())
}

impl Resource for Subscription {
    resource_id!();

    fn normalize(&mut self) -> Result<(), ValidationError> {
        let mut p = Problems::default();
        if self.display_name.is_empty() {
            self.display_name = self.id.clone();
        }
        match Scope::parse(&self.scope) {
            Ok(s) => self.scope = s.to_path(),
            Err(e) => p.push("scope", e),
        }
        for (target, key) in [
            ("primaryKey", &self.primary_key),
            ("secondaryKey", &self.secondary_key),
        ] {
            if let Some(k) = key
                && let Err(e) = check_key(target, k)
            {
                p.extend(e.details);
            }
        }
        p.finish("subscription")
    }
}

/// The keys of a subscription, as `listSecrets` returns them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionKeys {
    pub primary_key: String,
    pub secondary_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamedValue {
    #[serde(default)]
    #[schema(read_only)]
    pub id: String,
    #[serde(default)]
    pub display_name: String,
    /// The value. Never returned for a secret; read it with `listValue`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default)]
    pub secret: bool,
    #[serde(default)]
    pub tags: Vec<String>,
}

impl Resource for NamedValue {
    resource_id!();

    fn normalize(&mut self) -> Result<(), ValidationError> {
        let mut p = Problems::default();
        if self.display_name.is_empty() {
            self.display_name = self.id.clone();
        }
        match &self.value {
            None => p.push("value", "is required"),
            Some(v) if v.chars().count() > 4096 => {
                p.push("value", "must be at most 4096 characters")
            }
            Some(_) => {}
        }
        p.finish("named value")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendAuthorization {
    pub scheme: String,
    pub parameter: String,
}

/// Credentials the gateway adds to requests it sends to the backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendCredentials {
    #[serde(default)]
    pub header: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub query: BTreeMap<String, Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<BackendAuthorization>,
    /// The client certificate presented to the backend over TLS: one certificate of
    /// `/mgmt/certificates` (with its private key), as `/certificates/{id}` or the plain id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificate_ids: Vec<String>,
}

impl BackendCredentials {
    /// The ids of [`BackendCredentials::certificate_ids`], without Azure's `/certificates/`.
    pub fn certificates(&self) -> impl Iterator<Item = &str> {
        self.certificate_ids.iter().map(|c| certificate_id_of(c))
    }

    /// The texts that may hold `{{named values}}`: header and query values, and the
    /// authorization scheme and parameter.
    pub fn texts(&self) -> impl Iterator<Item = &str> {
        self.header
            .values()
            .chain(self.query.values())
            .flatten()
            .map(String::as_str)
            .chain(
                self.authorization
                    .iter()
                    .flat_map(|a| [a.scheme.as_str(), a.parameter.as_str()]),
            )
    }
}

/// A certificate reference as Azure writes it (`/certificates/{id}`, or a full resource id
/// ending so) or the plain id: the id.
pub fn certificate_id_of(reference: &str) -> &str {
    let r = reference.trim();
    match r.rfind("/certificates/") {
        Some(i) => &r[i + "/certificates/".len()..],
        None => r,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendTls {
    #[serde(default = "default_true")]
    pub validate_certificate_chain: bool,
    #[serde(default = "default_true")]
    pub validate_certificate_name: bool,
}

/// Whether a backend is one service (`Single`) or a load-balanced pool of single backends
/// (`Pool`). Read in any letter case (Azure's templates write `pool` too); written as here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema, Default)]
pub enum BackendType {
    #[default]
    Single,
    Pool,
}

impl BackendType {
    fn is_single(&self) -> bool {
        *self == Self::Single
    }
}

impl<'de> Deserialize<'de> for BackendType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text.eq_ignore_ascii_case("single") {
            Ok(Self::Single)
        } else if text.eq_ignore_ascii_case("pool") {
            Ok(Self::Pool)
        } else {
            Err(serde::de::Error::custom(format!(
                "unknown backend type '{text}': use 'Single' or 'Pool'"
            )))
        }
    }
}

/// The members of a pool (`type: Pool`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendPool {
    /// The single backends the pool sends to; at least one, each once.
    #[serde(default)]
    #[schema(min_items = 1)]
    pub services: Vec<BackendPoolItem>,
}

/// One member of a pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendPoolItem {
    /// The member backend, as Azure writes it (`/backends/{id}`, or a full resource id ending
    /// so) or the plain id. It must exist and be a single backend (a pool holds no pool).
    pub id: String,
    /// Lower is preferred: a request goes to the lowest priority that has a member whose
    /// circuit breaker is closed. 0 to 100; 1 when left out.
    #[serde(default = "default_pool_share")]
    #[schema(minimum = 0, maximum = 100)]
    pub priority: u32,
    /// The member's share of the requests among the available members of its priority. 0 to
    /// 100; 1 when left out.
    #[serde(default = "default_pool_share")]
    #[schema(minimum = 0, maximum = 100)]
    pub weight: u32,
}

fn default_pool_share() -> u32 {
    1
}

/// A backend reference as Azure writes it (`/backends/{id}`, or a full resource id ending so)
/// or the plain id: the id.
pub fn backend_id_of(reference: &str) -> &str {
    let r = reference.trim();
    match r.rfind("/backends/") {
        Some(i) => &r[i + "/backends/".len()..],
        None => r,
    }
}

/// A backend's circuit breaker (Azure's shape): rules that take the backend out of service
/// for a while when it fails too often. Azure takes one rule per backend, and so does this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CircuitBreaker {
    #[serde(default)]
    #[schema(min_items = 1, max_items = 1)]
    pub rules: Vec<CircuitBreakerRule>,
}

/// When a circuit breaker trips, and for how long.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CircuitBreakerRule {
    /// The rule's name, for logs.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    #[schema(required = true)]
    pub failure_condition: CircuitBreakerFailureCondition,
    /// How long the breaker stays open once tripped, as an ISO 8601 duration (`PT30S`, `PT1M`).
    #[serde(default)]
    #[schema(required = true)]
    pub trip_duration: String,
    /// When the response that trips the breaker carries `Retry-After` (seconds or an HTTP
    /// date), the breaker stays open that long instead of `tripDuration`.
    #[serde(default)]
    pub accept_retry_after: bool,
}

/// What counts as a failure, and how many failures within `interval` trip the breaker: `count`
/// failures, or `percentage` percent of the calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CircuitBreakerFailureCondition {
    /// Failures within `interval` that trip the breaker (give this or `percentage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub count: Option<u32>,
    /// The percentage of calls within `interval` that, failing, trip the breaker (1 to 100;
    /// give this or `count`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 100)]
    pub percentage: Option<u32>,
    /// The window failures are counted in, as an ISO 8601 duration (`PT10S`, `PT1M`, `P1D`).
    #[serde(default)]
    #[schema(required = true)]
    pub interval: String,
    /// Backend answers with a status in one of these ranges are failures.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub status_code_ranges: Vec<FailureStatusCodeRange>,
    /// Calls that get no answer for one of these reasons are failures:
    /// `BackendConnectionFailure` (the backend could not be reached, or its certificate was
    /// refused) and `Timeout` (no answer in time), in any letter case. Other values are
    /// kept, as Azure keeps them, and match nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub error_reasons: Vec<String>,
}

/// An inclusive range of HTTP status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FailureStatusCodeRange {
    #[schema(minimum = 100, maximum = 599)]
    pub min: u32,
    #[schema(minimum = 100, maximum = 599)]
    pub max: u32,
}

/// The error reasons a failure condition can name, as gateways report them (Azure's
/// `context.LastError.Reason` of `forward-request`).
pub const BREAKER_ERROR_REASONS: [&str; 2] = ["BackendConnectionFailure", "Timeout"];

impl CircuitBreakerRule {
    /// Checks the rule, with messages under `at` (`circuitBreaker.rules[0]`).
    fn check(&self, at: &str, p: &mut Problems) {
        let c = &self.failure_condition;
        match (c.count, c.percentage) {
            (None, None) => p.push(
                format!("{at}.failureCondition"),
                "needs 'count' (failures) or 'percentage' (of the calls) within 'interval'",
            ),
            (Some(_), Some(_)) => p.push(
                format!("{at}.failureCondition"),
                "give 'count' or 'percentage', not both",
            ),
            (Some(0), None) => p.push(format!("{at}.failureCondition.count"), "must be at least 1"),
            (None, Some(n)) if !(1..=100).contains(&n) => p.push(
                format!("{at}.failureCondition.percentage"),
                "must be 1 to 100",
            ),
            _ => {}
        }
        let mut duration = |field: String, text: &str| {
            if text.trim().is_empty() {
                p.push(
                    field,
                    "is required: an ISO 8601 duration such as PT10S or PT1M",
                );
                return;
            }
            match crate::duration::parse(text) {
                Ok(d) if d.is_zero() => p.push(field, "must be longer than zero"),
                Ok(_) => {}
                Err(e) => p.push(field, e),
            }
        };
        duration(format!("{at}.failureCondition.interval"), &c.interval);
        duration(format!("{at}.tripDuration"), &self.trip_duration);
        if c.status_code_ranges.is_empty() && c.error_reasons.is_empty() {
            p.push(
                format!("{at}.failureCondition"),
                "needs 'statusCodeRanges' (such as [{\"min\": 500, \"max\": 599}]) or 'errorReasons' (BackendConnectionFailure, Timeout), or nothing is a failure",
            );
        }
        for (i, r) in c.status_code_ranges.iter().enumerate() {
            let field = format!("{at}.failureCondition.statusCodeRanges[{i}]");
            if !(100..=599).contains(&r.min) || !(100..=599).contains(&r.max) {
                p.push(field, "'min' and 'max' must be HTTP statuses, 100 to 599");
            } else if r.min > r.max {
                p.push(field, "'min' must not be above 'max'");
            }
        }
        for (i, reason) in c.error_reasons.iter().enumerate() {
            if reason.trim().is_empty() || reason.chars().count() > 100 {
                p.push(
                    format!("{at}.failureCondition.errorReasons[{i}]"),
                    "must be a reason of 1 to 100 characters, such as BackendConnectionFailure or Timeout",
                );
            }
        }
        if self.name.chars().count() > 100 {
            p.push(format!("{at}.name"), "must be at most 100 characters");
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Backend {
    #[serde(default)]
    #[schema(read_only)]
    pub id: String,
    /// `Single` (the default): one service at `url`. `Pool`: the backends of `pool`.
    #[serde(
        default,
        rename = "type",
        skip_serializing_if = "BackendType::is_single"
    )]
    pub backend_type: BackendType,
    /// The backend's base URL, `http://` or `https://`; required for a single backend. A
    /// pool sends to its members' URLs and needs none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// `http`, the only kind supported.
    #[serde(default = "default_backend_protocol")]
    #[schema(pattern = "^http$")]
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<BackendCredentials>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<BackendTls>,
    /// Takes a single backend out of service for a while when it fails too often; a pool
    /// then sends to its other members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreaker>,
    /// The members of a pool (`type: Pool`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<BackendPool>,
}

fn default_backend_protocol() -> String {
    "http".to_owned()
}

impl Backend {
    /// The ids of a pool's members, in the pool's order (none for a single backend).
    pub fn members(&self) -> impl Iterator<Item = &str> {
        self.pool
            .iter()
            .flat_map(|p| &p.services)
            .map(|s| backend_id_of(&s.id))
    }

    fn check_pool(&self, p: &mut Problems) {
        let Some(pool) = &self.pool else {
            p.push(
                "pool",
                "is required for a backend of type Pool: {\"services\": [{\"id\": \"/backends/{id}\", \"priority\": 1, \"weight\": 1}]}",
            );
            return;
        };
        if pool.services.is_empty() {
            p.push("pool.services", "needs at least one backend");
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, s) in pool.services.iter().enumerate() {
            let id = backend_id_of(&s.id);
            if validate_id("backend", id).is_err() {
                p.push(
                    format!("pool.services[{i}].id"),
                    format!("'{}' is not a backend id or /backends/{{id}}", s.id),
                );
            } else if id == self.id {
                p.push(
                    format!("pool.services[{i}].id"),
                    "a pool cannot contain itself",
                );
            } else if !seen.insert(id) {
                p.push(
                    format!("pool.services[{i}].id"),
                    format!("backend '{id}' is in the pool twice; give it once, with its weight"),
                );
            }
            if s.priority > 100 {
                p.push(format!("pool.services[{i}].priority"), "must be 0 to 100");
            }
            if s.weight > 100 {
                p.push(format!("pool.services[{i}].weight"), "must be 0 to 100");
            }
        }
        if self
            .credentials
            .as_ref()
            .is_some_and(|c| *c != BackendCredentials::default())
        {
            p.push(
                "credentials",
                "a pool sends each request with the credentials of the member it picks; set them on the member backends",
            );
        }
        if self.circuit_breaker.is_some() {
            p.push(
                "circuitBreaker",
                "a pool has no circuit breaker of its own; set one on each member backend, and the pool skips a member whose breaker is open",
            );
        }
        if !self.url.is_empty()
            && let Err(e) = check_http_url(&self.url)
        {
            p.push("url", e);
        }
    }
}

impl Resource for Backend {
    resource_id!();

    fn normalize(&mut self) -> Result<(), ValidationError> {
        let mut p = Problems::default();
        match self.backend_type {
            BackendType::Single => {
                if self.url.is_empty() {
                    p.push(
                        "url",
                        "is required for a single backend: its base URL, http:// or https://",
                    );
                } else if let Err(e) = check_http_url(&self.url) {
                    p.push("url", e);
                }
                if self.pool.is_some() {
                    p.push(
                        "pool",
                        "only a backend of type Pool has members; set \"type\": \"Pool\"",
                    );
                }
            }
            BackendType::Pool => self.check_pool(&mut p),
        }
        if self.protocol != "http" {
            p.push("protocol", "only 'http' backends are supported");
        }
        if let Some(c) = &self.credentials {
            for name in c.header.keys() {
                if !is_header_name(name) {
                    p.push(
                        format!("credentials.header.{name}"),
                        "is not a valid HTTP header name",
                    );
                }
            }
            for name in c.query.keys() {
                if name.is_empty() {
                    p.push("credentials.query", "a query parameter needs a name");
                }
            }
            if let Some(a) = &c.authorization
                && (a.scheme.trim().is_empty()
                    || a.scheme.contains(char::is_whitespace)
                    || a.parameter.trim().is_empty())
            {
                p.push(
                    "credentials.authorization",
                    "needs a scheme (one word, such as Basic or Bearer) and a parameter",
                );
            }
            if c.certificate_ids.len() > 1 {
                p.push(
                    "credentials.certificateIds",
                    "one client certificate per backend is supported",
                );
            }
            for (i, c) in c.certificate_ids.iter().enumerate() {
                if validate_id("certificate", certificate_id_of(c)).is_err() {
                    p.push(
                        format!("credentials.certificateIds[{i}]"),
                        format!("'{c}' is not a certificate id or /certificates/{{id}}"),
                    );
                }
            }
        }
        if let Some(cb) = &self.circuit_breaker {
            match cb.rules.len() {
                0 => p.push(
                    "circuitBreaker.rules",
                    "needs one rule; to have no circuit breaker, leave circuitBreaker out",
                ),
                1 => {}
                _ => p.push(
                    "circuitBreaker.rules",
                    "takes one rule, as in Azure API Management",
                ),
            }
            for (i, rule) in cb.rules.iter().enumerate() {
                rule.check(&format!("circuitBreaker.rules[{i}]"), &mut p);
            }
        }
        p.finish("backend")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayLocation {
    #[schema(min_length = 1)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub district: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country_or_region: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Gateway {
    #[serde(default)]
    #[schema(read_only)]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location_data: Option<GatewayLocation>,
}

impl Resource for Gateway {
    resource_id!();

    fn normalize(&mut self) -> Result<(), ValidationError> {
        let mut p = Problems::default();
        if let Some(l) = &self.location_data
            && l.name.is_empty()
        {
            p.push("locationData.name", "must not be empty");
        }
        p.finish("gateway")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase")]
pub enum UserState {
    #[default]
    Active,
    /// Cannot sign in to the developer portal.
    Blocked,
}

/// A developer-portal account. Users sign up in the portal; the password is kept apart (as an
/// argon2 hash) and never part of this resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct User {
    #[serde(default)]
    #[schema(read_only)]
    pub id: String,
    #[serde(default)]
    /// An email address (its pattern is `EMAIL_PATTERN`, set in the published document).
    #[schema(required = true, max_length = 254)]
    pub email: String,
    #[serde(default)]
    #[schema(max_length = 100)]
    pub first_name: String,
    #[serde(default)]
    #[schema(max_length = 100)]
    pub last_name: String,
    #[serde(default)]
    pub state: UserState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 1000)]
    pub note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(read_only)]
    pub registration_date: Option<String>,
}

/// A user's key in the store's email index: emails are compared without ASCII case.
pub fn email_key(email: &str) -> String {
    email.trim().to_ascii_lowercase()
}
/// Groups whose members are implicit: every signed-in user, every anonymous visitor.
pub const DEVELOPERS_GROUP: &str = "developers";
pub const GUESTS_GROUP: &str = "guests";

/// Checks the shape of an email address: one `@`, a non-empty local part and a dotted domain,
/// no spaces or control characters, at most 254 characters.
/// The pattern of an email address the OpenAPI document publishes (with a maximum length of
/// 254); [`check_email`] follows it exactly (a property test holds it to it).
pub const EMAIL_PATTERN: &str = "^[!#-;=?A-~]{1,64}@[A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)+$";

pub fn check_email(email: &str) -> Result<(), String> {
    let bad = || format!("'{email}' is not an email address such as ada@example.com");
    if email.len() > 254 {
        return Err(bad());
    }
    let (local, domain) = email.split_once('@').ok_or_else(bad)?;
    let local_ok = (1..=64).contains(&local.len())
        && local
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'<' | b'>' | b'@'));
    let mut labels = domain.split('.');
    let domain_ok = domain.contains('.')
        && labels
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if !local_ok || !domain_ok {
        return Err(bad());
    }
    Ok(())
}

impl Resource for User {
    resource_id!();

    fn normalize(&mut self) -> Result<(), ValidationError> {
        let mut p = Problems::default();
        if let Err(e) = check_email(&self.email) {
            p.push("email", e);
        }
        for (target, value) in [
            ("firstName", &self.first_name),
            ("lastName", &self.last_name),
        ] {
            if value.chars().count() > 100 {
                p.push(target, "must be at most 100 characters");
            }
            if value.chars().any(char::is_control) {
                p.push(target, "must not contain control characters");
            }
        }
        if self.note.as_ref().is_some_and(|n| n.chars().count() > 1000) {
            p.push("note", "must be at most 1000 characters");
        }
        p.finish("user")
    }
}

/// A set of users. Products linked to groups are visible in the portal only to their members;
/// the groups `developers` (every signed-in user) and `guests` (anonymous visitors) have
/// implicit members, as in Azure API Management.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Group {
    #[serde(default)]
    #[schema(read_only)]
    pub id: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl Resource for Group {
    resource_id!();

    fn normalize(&mut self) -> Result<(), ValidationError> {
        let mut p = Problems::default();
        if self.display_name.is_empty() {
            self.display_name = self.id.clone();
        }
        if self.display_name.chars().count() > 300 {
            p.push("displayName", "must be at most 300 characters");
        }
        if self
            .description
            .as_ref()
            .is_some_and(|d| d.chars().count() > 1000)
        {
            p.push("description", "must be at most 1000 characters");
        }
        p.finish("group")
    }
}

/// The developer portal's branding (`/mgmt/portal/settings`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortalSettings {
    /// Shown in the header and the page titles.
    #[serde(default = "default_portal_title")]
    #[schema(max_length = 100)]
    pub title: String,
    /// An `https://` (or `http://`) image URL, or a path on this server such as `/logo.png`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo_url: Option<String>,
    /// Header, links and buttons (`#rrggbb`); white text on it must stay readable.
    #[serde(default = "default_primary_color")]
    #[schema(pattern = "^#[0-9A-Fa-f]{6}$")]
    pub primary_color: String,
    #[serde(default = "default_background_color")]
    #[schema(pattern = "^#[0-9A-Fa-f]{6}$")]
    pub background_color: String,
    /// Body text; must contrast with the background (WCAG AA, 4.5:1).
    #[serde(default = "default_text_color")]
    #[schema(pattern = "^#[0-9A-Fa-f]{6}$")]
    pub text_color: String,
    /// Plain text shown at the bottom of every page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub footer: Option<String>,
    /// The home page's body, in Markdown (headings, paragraphs, lists, emphasis, code, links).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub landing_markdown: Option<String>,
}

fn default_portal_title() -> String {
    "Developer portal".to_owned()
}

fn default_primary_color() -> String {
    "#1f4e8c".to_owned()
}

fn default_background_color() -> String {
    "#ffffff".to_owned()
}

fn default_text_color() -> String {
    "#1a1a1a".to_owned()
}

impl Default for PortalSettings {
    fn default() -> Self {
        Self {
            title: default_portal_title(),
            logo_url: None,
            primary_color: default_primary_color(),
            background_color: default_background_color(),
            text_color: default_text_color(),
            footer: None,
            landing_markdown: None,
        }
    }
}

/// `#rrggbb` as red, green and blue.
pub fn parse_hex_color(text: &str) -> Option<[u8; 3]> {
    let hex = text.strip_prefix('#')?;
    if hex.len() != 6 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let byte = |i: usize| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok();
    Some([byte(0)?, byte(2)?, byte(4)?])
}

/// The WCAG 2 contrast ratio of two colours, from 1 to 21.
pub fn contrast_ratio(a: [u8; 3], b: [u8; 3]) -> f64 {
    fn luminance(c: [u8; 3]) -> f64 {
        let channel = |v: u8| {
            let s = f64::from(v) / 255.0;
            if s <= 0.039_28 {
                s / 12.92
            } else {
                ((s + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * channel(c[0]) + 0.7152 * channel(c[1]) + 0.0722 * channel(c[2])
    }
    let (la, lb) = (luminance(a), luminance(b));
    let (hi, lo) = if la > lb { (la, lb) } else { (lb, la) };
    (hi + 0.05) / (lo + 0.05)
}

/// Longest landing page accepted, in characters.
pub const MAX_LANDING_MARKDOWN: usize = 64 * 1024;

/// Smallest contrast accepted between text and its background (WCAG AA for normal text).
pub const MIN_CONTRAST: f64 = 4.5;

impl PortalSettings {
    /// The id of the one stored settings document (parent "").
    pub const ID: &'static str = "default";

    pub fn validate(&mut self) -> Result<(), ValidationError> {
        let mut p = Problems::default();
        if self.title.is_empty() {
            self.title = default_portal_title();
        }
        if self.title.chars().count() > 100 || self.title.chars().any(char::is_control) {
            p.push(
                "title",
                "must be at most 100 characters, without control characters",
            );
        }
        if let Some(url) = &self.logo_url {
            let local = url.starts_with('/') && !url.starts_with("//");
            let ok = url.chars().count() <= 2000
                && !url.contains(['"', '\'', '<', '>', '\\'])
                && (local || check_http_url(url).is_ok());
            if !ok {
                p.push(
                    "logoUrl",
                    "must be an http(s) URL or a path starting with '/', at most 2000 characters",
                );
            }
        }
        let mut colors = Vec::new();
        for (target, value) in [
            ("primaryColor", &mut self.primary_color),
            ("backgroundColor", &mut self.background_color),
            ("textColor", &mut self.text_color),
        ] {
            *value = value.to_ascii_lowercase();
            match parse_hex_color(value) {
                Some(c) => colors.push(c),
                None => p.push(target, format!("'{value}' is not a colour such as #1f4e8c")),
            }
        }
        if let [primary, background, text] = colors[..] {
            if contrast_ratio(text, background) < MIN_CONTRAST {
                p.push(
                    "textColor",
                    format!("contrasts {:.1}:1 with backgroundColor; at least {MIN_CONTRAST}:1 keeps text readable", contrast_ratio(text, background)),
                );
            }
            if contrast_ratio([255, 255, 255], primary) < MIN_CONTRAST {
                p.push(
                    "primaryColor",
                    format!("contrasts {:.1}:1 with white text; at least {MIN_CONTRAST}:1 keeps buttons readable", contrast_ratio([255, 255, 255], primary)),
                );
            }
            if contrast_ratio(primary, background) < MIN_CONTRAST {
                p.push(
                    "primaryColor",
                    format!("contrasts {:.1}:1 with backgroundColor; at least {MIN_CONTRAST}:1 keeps links readable", contrast_ratio(primary, background)),
                );
            }
        }
        if self
            .footer
            .as_ref()
            .is_some_and(|f| f.chars().count() > 1000)
        {
            p.push("footer", "must be at most 1000 characters");
        }
        if self
            .landing_markdown
            .as_ref()
            .is_some_and(|m| m.chars().count() > MAX_LANDING_MARKDOWN)
        {
            p.push(
                "landingMarkdown",
                format!("must be at most {MAX_LANDING_MARKDOWN} characters"),
            );
        }
        p.finish("portal settings")
    }
}

/// Largest policy fragment accepted (Azure's limit).
pub const MAX_POLICY_FRAGMENT: usize = 512 * 1024;

/// A policy fragment: reusable policy XML (`<fragment>…</fragment>`) that policies insert with
/// `<include-fragment fragment-id="…"/>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyFragment {
    #[serde(default)]
    #[schema(read_only)]
    pub id: String,
    /// The fragment: `<fragment>` holding one or more policies.
    #[serde(default)]
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `rawxml` (the value as written) or `xml`; both are read the same way here.
    #[serde(default = "default_fragment_format")]
    #[schema(pattern = "^(rawxml|xml)$")]
    pub format: String,
}

fn default_fragment_format() -> String {
    "rawxml".to_owned()
}

impl Resource for PolicyFragment {
    resource_id!();

    fn normalize(&mut self) -> Result<(), ValidationError> {
        let mut p = Problems::default();
        if self.value.trim().is_empty() {
            p.push(
                "value",
                "is required: the fragment XML, <fragment>…</fragment>",
            );
        } else if self.value.len() > MAX_POLICY_FRAGMENT {
            p.push("value", "must be at most 512 KiB");
        }
        if let Some(d) = &self.description
            && d.chars().count() > 1000
        {
            p.push("description", "must be at most 1000 characters");
        }
        self.format = self.format.to_ascii_lowercase();
        if self.format != "rawxml" && self.format != "xml" {
            p.push("format", "must be 'rawxml' or 'xml'");
        }
        p.finish("policy fragment")
    }
}

/// Largest certificate `data` accepted: a long chain and its key are a few KiB.
pub const MAX_CERTIFICATE_DATA: usize = 64 * 1024;

/// A TLS certificate (`/mgmt/certificates/{id}`), for the gateways' hostname configurations
/// and certificate authorities. Azure takes base64 PFX; Gatehouse takes PEM text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Certificate {
    #[serde(default)]
    #[schema(read_only)]
    pub id: String,
    /// Input only: the PEM certificate chain, leaf first, optionally followed by the PEM
    /// private key (unencrypted PKCS#8, PKCS#1 or SEC1). Never returned.
    #[serde(default, skip_serializing_if = "input_only")]
    #[schema(write_only)]
    pub data: Option<String>,
    /// Input only, and not supported: Azure's PFX password. Convert the PFX to PEM instead.
    #[serde(default, skip_serializing_if = "input_only")]
    #[schema(write_only)]
    pub password: Option<String>,
    /// The leaf's subject, such as `CN=api.example.com, O=Contoso`.
    #[serde(default)]
    #[schema(read_only)]
    pub subject: String,
    /// SHA-1 of the leaf's DER, upper-case hex.
    #[serde(default)]
    #[schema(read_only)]
    pub thumbprint: String,
    /// The leaf's `NotAfter`, RFC 3339.
    #[serde(default)]
    #[schema(read_only)]
    pub expiration_date: String,
    /// Whether `data` held the private key (a hostname configuration needs one).
    #[serde(default)]
    #[schema(read_only)]
    pub has_private_key: bool,
}

/// The private key is given in PEM under one of these labels.
const KEY_LABELS: &[&str] = &["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"];

/// A certificate's `data` taken apart: the chain's PEM blocks and the key's, as given.
#[derive(Clone, PartialEq, Eq)]
pub struct PemParts {
    /// The `CERTIFICATE` blocks, in order.
    pub chain: String,
    /// The private key block, if one was given.
    pub key: Option<String>,
}

impl std::fmt::Debug for PemParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PemParts")
            .field("chain", &self.chain)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Splits PEM text into its certificate blocks and its private key block. Only the shape is
/// checked here; the control plane parses the certificates and checks the key fits.
pub fn split_pem(target: &str, data: &str) -> Result<PemParts, ValidationError> {
    let mut chain = String::new();
    let mut keys = Vec::new();
    let mut rest = data;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + "-----BEGIN ".len()..];
        let Some(label_end) = after.find("-----") else {
            return Err(ValidationError::one(
                target,
                "has a '-----BEGIN' line that does not end in '-----'",
            ));
        };
        let label = &after[..label_end];
        let end_line = format!("-----END {label}-----");
        let Some(end) = after.find(&end_line) else {
            return Err(ValidationError::one(
                target,
                format!("has a '-----BEGIN {label}-----' block with no '{end_line}' line"),
            ));
        };
        let block_end = start + "-----BEGIN ".len() + end + end_line.len();
        let block = &rest[start..block_end];
        rest = &rest[block_end..];
        if label == "CERTIFICATE" {
            chain.push_str(block);
            chain.push('\n');
        } else if KEY_LABELS.contains(&label) {
            keys.push(block);
        } else if label == "ENCRYPTED PRIVATE KEY" {
            return Err(ValidationError::one(
                target,
                "holds an encrypted private key, and passwords are not supported; decrypt it with `openssl pkey -in key.pem -out plain-key.pem` and send that",
            ));
        } else {
            return Err(ValidationError::one(
                target,
                format!(
                    "holds a PEM block '{label}'; give only CERTIFICATE blocks (leaf first) and one PRIVATE KEY block"
                ),
            ));
        }
    }
    if chain.is_empty() {
        return Err(ValidationError::one(
            target,
            "is not a PEM certificate (-----BEGIN CERTIFICATE-----). Base64 PFX is not supported: convert it with `openssl pkcs12 -in cert.pfx -nodes -out cert.pem` and send the PEM text, the chain (leaf first) then the private key",
        ));
    }
    if keys.len() > 1 {
        return Err(ValidationError::one(
            target,
            "holds more than one private key; give only the key of the leaf certificate",
        ));
    }
    Ok(PemParts {
        chain,
        key: keys.first().map(|k| format!("{k}\n")),
    })
}

impl Resource for Certificate {
    resource_id!();

    fn normalize(&mut self) -> Result<(), ValidationError> {
        let mut p = Problems::default();
        if self.password.as_ref().is_some_and(|pw| !pw.is_empty()) {
            p.push(
                "password",
                "is not supported: Gatehouse takes PEM, not PFX; convert with `openssl pkcs12 -in cert.pfx -nodes -out cert.pem` and send the PEM text as data",
            );
        }
        match &self.data {
            None => p.push(
                "data",
                "is required: the PEM certificate chain (leaf first), optionally followed by its private key",
            ),
            Some(d) if d.len() > MAX_CERTIFICATE_DATA => {
                p.push("data", "must be at most 64 KiB")
            }
            Some(d) => {
                if let Err(e) = split_pem("data", d) {
                    p.extend(e.details);
                }
            }
        }
        p.finish("certificate")
    }
}

/// What [`check_hostname`] accepts, as a regular expression (with a maximum length of 253),
/// for the OpenAPI document: DNS labels of letters, digits and '-' (1 to 63, no '-' at either
/// end), the last starting with a letter so it cannot be taken for a number (as in
/// [`HTTP_URL_PATTERN`]), or `*.` followed by two labels or more.
pub const HOSTNAME_PATTERN: &str = concat!(
    "^(?:\\*\\.(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)+",
    "|(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)*)",
    "[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
);

/// Checks a hostname a gateway serves: a DNS name, or `*.` followed by one (a one-label
/// wildcard), at most 253 characters, as [`HOSTNAME_PATTERN`] says. Returns it in lower case.
pub fn check_hostname(hostname: &str) -> Result<String, String> {
    let lower = hostname.to_ascii_lowercase();
    let bad = |why: &str| {
        format!("'{hostname}' is not a hostname such as api.example.com or *.example.com: {why}")
    };
    let name = lower.strip_prefix("*.").unwrap_or(&lower);
    if name.is_empty() {
        return Err(bad("it is empty"));
    }
    if lower.len() > 253 {
        return Err(bad("it is longer than 253 characters"));
    }
    if lower.starts_with("*.") && !name.contains('.') {
        return Err(bad(
            "a wildcard needs a domain of two labels or more after '*.'",
        ));
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(bad("each label between dots must have 1 to 63 characters"));
        }
        if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(bad(
                "labels hold only letters, digits and '-' ('*' only as the whole first label)",
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(bad("a label must not start or end with '-'"));
        }
    }
    if !name
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.starts_with(|c: char| c.is_ascii_alphabetic()))
    {
        return Err(bad(
            "the last label must start with a letter; IP addresses are not hostnames, SNI carries names only",
        ));
    }
    Ok(lower)
}

/// A hostname a gateway serves over TLS, with its certificate
/// (`/mgmt/gateways/{gatewayId}/hostnameConfigurations/{hcId}`). Chosen by SNI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostnameConfiguration {
    #[serde(default)]
    #[schema(read_only)]
    pub id: String,
    /// `api.example.com`, or `*.example.com` for any one label in front.
    #[serde(default)]
    #[schema(max_length = 253)]
    pub hostname: String,
    /// The certificate (with its private key) served for the hostname: its id, or Azure's
    /// `/certificates/{id}` form.
    #[serde(default)]
    pub certificate_id: String,
    /// Ask clients for a certificate (optional for them; policies decide what to accept).
    #[serde(default)]
    pub negotiate_client_certificate: bool,
    /// Offer HTTP/2 through ALPN.
    #[serde(default = "default_true")]
    pub http2_enabled: bool,
}

/// A certificate reference as an id: `cert` or Azure's `.../certificates/cert`.
pub fn certificate_ref(reference: &str) -> &str {
    reference
        .rsplit_once("/certificates/")
        .map_or(reference, |(_, id)| id)
        .trim_end_matches('/')
}

impl Resource for HostnameConfiguration {
    resource_id!();

    fn normalize(&mut self) -> Result<(), ValidationError> {
        let mut p = Problems::default();
        match check_hostname(&self.hostname) {
            Ok(h) => self.hostname = h,
            Err(e) => p.push("hostname", e),
        }
        self.certificate_id = certificate_ref(&self.certificate_id).to_owned();
        if self.certificate_id.is_empty() {
            p.push(
                "certificateId",
                "is required: the id of a certificate with a private key (/mgmt/certificates)",
            );
        } else if let Err(e) = validate_id("certificate", &self.certificate_id) {
            p.extend(e.details);
        }
        p.finish("hostname configuration")
    }
}

/// A CA certificate a gateway trusts (`/mgmt/gateways/{gatewayId}/certificateAuthorities/{certificateId}`):
/// for its outbound TLS, and for the client certificates it is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayCertificateAuthority {
    /// The certificate's id.
    #[serde(default)]
    #[schema(read_only)]
    pub id: String,
    /// A trusted root; `false` for an intermediate CA that only helps build chains.
    #[serde(default = "default_true")]
    pub is_trusted: bool,
}

impl Resource for GatewayCertificateAuthority {
    resource_id!();

    fn normalize(&mut self) -> Result<(), ValidationError> {
        Ok(())
    }
}

/// A page of a collection.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Collection<T> {
    pub value: Vec<T>,
    pub count: u64,
    pub next_link: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backend_url_is_one_a_gateway_can_send_to() {
        for ok in [
            "http://localhost:9000",
            "https://example.com",
            "https://api.example.com/v1/x?a=b&c=%20d",
            "http://127.0.0.1:1/",
            "http://[::1]:8080/base",
            "https://my_service.internal.",
            "http://svc-1",
        ] {
            assert_eq!(check_http_url(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("ftp://example.com", "must be an absolute URL"),
            ("https://", "no valid host"),
            (
                "https://user@example.com",
                "must not carry user information",
            ),
            ("https://bad-.example.com", "neither an IP address"),
            ("https://exa$mple.com", "neither an IP address"),
            ("https://example.123", "neither an IP address"),
            ("http://1.2.3.256", "neither an IP address"),
            ("http://[::g]", "neither an IP address"),
            ("http://example.com:99999", "the port"),
            ("http://example.com:", "the port"),
            ("http://example.com/a b", "spaces"),
            ("http://example.com/ä", "percent-encode it"),
            ("http://example.com/{x}", "percent-encode it"),
            ("http://example.com/%zz", "percent-encoded byte"),
        ] {
            let e = check_http_url(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        // What a message shows never holds user information or a query: they can be secrets.
        for (bad, secret) in [
            ("https://user:s3cret@example.com/", "s3cret"),
            ("https://example.com/{x}?code=s3cret", "s3cret"),
            ("https://bad-.example.com/x?sig=s3cret", "s3cret"),
            ("http://example.com:99999/?key=s3cret", "s3cret"),
        ] {
            let e = check_http_url(bad).unwrap_err();
            assert!(!e.contains(secret), "{bad}: {e}");
        }
    }

    #[test]
    fn backend_credentials_name_certificates_the_azure_way_or_plainly() {
        let mut b: Backend = serde_json::from_str(
            r#"{"url":"https://b.example.com","credentials":{"certificateIds":["/certificates/client"],
                "authorization":{"scheme":"Bearer","parameter":"{{token}}"}}}"#,
        )
        .unwrap();
        b.set_id("b".into());
        b.normalize().unwrap();
        let c = b.credentials.as_ref().unwrap();
        assert_eq!(c.certificates().collect::<Vec<_>>(), ["client"]);
        assert_eq!(certificate_id_of("client"), "client");
        assert_eq!(
            certificate_id_of(
                "/subscriptions/s/resourceGroups/g/providers/Microsoft.ApiManagement/service/x/certificates/c1"
            ),
            "c1"
        );
        // It serializes back as written, camelCase.
        let text = serde_json::to_string(&b).unwrap();
        assert!(
            text.contains(r#""certificateIds":["/certificates/client"]"#),
            "{text}"
        );

        let mut bad: Backend = serde_json::from_str(
            r#"{"url":"https://b.example.com","credentials":{"certificateIds":["a","/certificates/b c"],
                "authorization":{"scheme":"","parameter":"x"}}}"#,
        )
        .unwrap();
        bad.set_id("b".into());
        let e = format!("{:?}", bad.normalize().unwrap_err());
        assert!(e.contains("one client certificate per backend"), "{e}");
        assert!(e.contains("is not a certificate id"), "{e}");
        assert!(e.contains("needs a scheme"), "{e}");
    }

    fn backend(json: &str) -> Result<Backend, ValidationError> {
        let mut b: Backend = serde_json::from_str(json).unwrap();
        b.set_id("b".into());
        b.normalize().map(|()| b)
    }

    /// The fields of a validation error, and its details as one text.
    fn problems(e: &ValidationError) -> (Vec<String>, String) {
        let fields = e.details.iter().map(|d| d.target.clone()).collect();
        (fields, format!("{e:?}"))
    }

    #[test]
    fn a_pool_takes_azures_shape_with_defaults() {
        let b = backend(
            r#"{"type":"Pool","pool":{"services":[{"id":"/backends/one","priority":1,"weight":3},
                {"id":"two"},{"id":"/subscriptions/s/resourceGroups/g/providers/Microsoft.ApiManagement/service/x/backends/three","priority":2}]}}"#,
        )
        .unwrap();
        assert_eq!(b.backend_type, BackendType::Pool);
        assert_eq!(b.members().collect::<Vec<_>>(), ["one", "two", "three"]);
        let services = &b.pool.as_ref().unwrap().services;
        assert_eq!((services[1].priority, services[1].weight), (1, 1));
        assert_eq!((services[2].priority, services[2].weight), (2, 1));
        // Azure's templates write the type in lower case; it is written back as Azure names it.
        let lower = backend(r#"{"type":"pool","pool":{"services":[{"id":"one"}]}}"#).unwrap();
        let text = serde_json::to_string(&lower).unwrap();
        assert!(text.contains(r#""type":"Pool""#), "{text}");
        assert!(!text.contains(r#""url""#), "{text}");
        // A single backend reads and writes as before: no type, its URL.
        let single = backend(r#"{"url":"http://a.example.com"}"#).unwrap();
        let text = serde_json::to_string(&single).unwrap();
        assert!(!text.contains("type") && text.contains("url"), "{text}");
        assert!(serde_json::from_str::<Backend>(r#"{"type":"Cluster"}"#).is_err());
    }

    #[test]
    fn pools_and_singles_are_refused_with_the_field_and_the_fix() {
        for (json, field, why) in [
            (
                r#"{"type":"Pool"}"#,
                "pool",
                "is required for a backend of type Pool",
            ),
            (
                r#"{"type":"Pool","pool":{"services":[]}}"#,
                "pool.services",
                "at least one backend",
            ),
            (
                r#"{"type":"Pool","pool":{"services":[{"id":"a"},{"id":"/backends/a"}]}}"#,
                "pool.services[1].id",
                "in the pool twice",
            ),
            (
                r#"{"type":"Pool","pool":{"services":[{"id":"/backends/b"}]}}"#,
                "pool.services[0].id",
                "cannot contain itself",
            ),
            (
                r#"{"type":"Pool","pool":{"services":[{"id":"a b"}]}}"#,
                "pool.services[0].id",
                "not a backend id",
            ),
            (
                r#"{"type":"Pool","pool":{"services":[{"id":"a","priority":101}]}}"#,
                "pool.services[0].priority",
                "0 to 100",
            ),
            (
                r#"{"type":"Pool","pool":{"services":[{"id":"a","weight":101}]}}"#,
                "pool.services[0].weight",
                "0 to 100",
            ),
            (
                r#"{"type":"Pool","pool":{"services":[{"id":"a"}]},"credentials":{"header":{"x":["y"]}}}"#,
                "credentials",
                "set them on the member backends",
            ),
            (
                r#"{"type":"Pool","pool":{"services":[{"id":"a"}]},"circuitBreaker":{"rules":[{"failureCondition":{"count":1,"interval":"PT1M","statusCodeRanges":[{"min":500,"max":599}]},"tripDuration":"PT1M"}]}}"#,
                "circuitBreaker",
                "no circuit breaker of its own",
            ),
            (r#"{}"#, "url", "is required for a single backend"),
            (
                r#"{"url":"http://a.example.com","pool":{"services":[{"id":"a"}]}}"#,
                "pool",
                "only a backend of type Pool has members",
            ),
        ] {
            let e = backend(json).unwrap_err();
            let (fields, text) = problems(&e);
            assert!(fields.iter().any(|f| f == field), "{json}: {fields:?}");
            assert!(text.contains(why), "{json}: {text}");
        }
    }

    #[test]
    fn circuit_breaker_rules_take_azures_shape() {
        let b = backend(
            r#"{"url":"http://a.example.com","circuitBreaker":{"rules":[{"name":"breakerRule",
                "failureCondition":{"count":3,"interval":"PT10S","statusCodeRanges":[{"min":500,"max":599}],
                "errorReasons":["Timeout","Server errors"]},"tripDuration":"PT2S","acceptRetryAfter":true}]}}"#,
        )
        .unwrap();
        let rule = &b.circuit_breaker.as_ref().unwrap().rules[0];
        assert_eq!(rule.failure_condition.count, Some(3));
        assert!(rule.accept_retry_after);
        // Percentage instead of a count, days, a rule without a name: taken.
        backend(
            r#"{"url":"http://a.example.com","circuitBreaker":{"rules":[{
                "failureCondition":{"percentage":50,"interval":"P1D","errorReasons":["BackendConnectionFailure"]},
                "tripDuration":"PT1H"}]}}"#,
        )
        .unwrap();
    }

    #[test]
    fn bad_circuit_breaker_rules_name_the_field() {
        let rule = |condition: &str, trip: &str| {
            format!(
                r#"{{"url":"http://a.example.com","circuitBreaker":{{"rules":[{{"name":"r","failureCondition":{condition},"tripDuration":"{trip}"}}]}}}}"#
            )
        };
        let ranges = r#""statusCodeRanges":[{"min":500,"max":599}]"#;
        for (json, field, why) in [
            (
                rule(&format!(r#"{{"interval":"PT10S",{ranges}}}"#), "PT1M"),
                "circuitBreaker.rules[0].failureCondition",
                "needs 'count'",
            ),
            (
                rule(
                    &format!(r#"{{"count":1,"percentage":5,"interval":"PT10S",{ranges}}}"#),
                    "PT1M",
                ),
                "circuitBreaker.rules[0].failureCondition",
                "not both",
            ),
            (
                rule(
                    &format!(r#"{{"count":0,"interval":"PT10S",{ranges}}}"#),
                    "PT1M",
                ),
                "circuitBreaker.rules[0].failureCondition.count",
                "at least 1",
            ),
            (
                rule(
                    &format!(r#"{{"percentage":101,"interval":"PT10S",{ranges}}}"#),
                    "PT1M",
                ),
                "circuitBreaker.rules[0].failureCondition.percentage",
                "1 to 100",
            ),
            (
                rule(
                    &format!(r#"{{"count":1,"interval":"10s",{ranges}}}"#),
                    "PT1M",
                ),
                "circuitBreaker.rules[0].failureCondition.interval",
                "ISO 8601",
            ),
            (
                rule(&format!(r#"{{"count":1,{ranges}}}"#), "PT1M"),
                "circuitBreaker.rules[0].failureCondition.interval",
                "is required",
            ),
            (
                rule(
                    &format!(r#"{{"count":1,"interval":"PT10S",{ranges}}}"#),
                    "P1M",
                ),
                "circuitBreaker.rules[0].tripDuration",
                "years and months",
            ),
            (
                rule(
                    &format!(r#"{{"count":1,"interval":"PT10S",{ranges}}}"#),
                    "PT0S",
                ),
                "circuitBreaker.rules[0].tripDuration",
                "longer than zero",
            ),
            (
                rule(r#"{"count":1,"interval":"PT10S"}"#, "PT1M"),
                "circuitBreaker.rules[0].failureCondition",
                "nothing is a failure",
            ),
            (
                rule(
                    r#"{"count":1,"interval":"PT10S","statusCodeRanges":[{"min":599,"max":500}]}"#,
                    "PT1M",
                ),
                "circuitBreaker.rules[0].failureCondition.statusCodeRanges[0]",
                "must not be above",
            ),
            (
                rule(
                    r#"{"count":1,"interval":"PT10S","statusCodeRanges":[{"min":500,"max":700}]}"#,
                    "PT1M",
                ),
                "circuitBreaker.rules[0].failureCondition.statusCodeRanges[0]",
                "100 to 599",
            ),
            (
                rule(
                    r#"{"count":1,"interval":"PT10S","errorReasons":[""]}"#,
                    "PT1M",
                ),
                "circuitBreaker.rules[0].failureCondition.errorReasons[0]",
                "1 to 100 characters",
            ),
            (
                r#"{"url":"http://a.example.com","circuitBreaker":{"rules":[]}}"#.to_owned(),
                "circuitBreaker.rules",
                "needs one rule",
            ),
        ] {
            let e = backend(&json).unwrap_err();
            let (fields, text) = problems(&e);
            assert!(fields.iter().any(|f| f == field), "{json}: {fields:?}");
            assert!(text.contains(why), "{json}: {text}");
        }
        let one = r#"{"failureCondition":{"count":1,"interval":"PT10S","errorReasons":["Timeout"]},"tripDuration":"PT1M"}"#;
        let two = format!(
            r#"{{"url":"http://a.example.com","circuitBreaker":{{"rules":[{one},{one}]}}}}"#
        );
        let (fields, text) = problems(&backend(&two).unwrap_err());
        assert_eq!(fields, ["circuitBreaker.rules"]);
        assert!(text.contains("one rule, as in Azure"), "{text}");
    }

    #[test]
    fn scope_forms() {
        assert_eq!(Scope::parse("/apis").unwrap(), Scope::AllApis);
        assert_eq!(
            Scope::parse("/apis/echo").unwrap(),
            Scope::Api("echo".into())
        );
        assert_eq!(
            Scope::parse("/products/starter/").unwrap(),
            Scope::Product("starter".into())
        );
        assert!(Scope::parse("/users/x").is_err());
        assert!(Scope::parse("apis").is_err());
        assert!(Scope::parse("/apis/a/b").is_err());
    }

    #[test]
    fn api_defaults_and_validation() {
        let mut api: Api =
            serde_json::from_str(r#"{"path":"/echo/","serviceUrl":"http://127.0.0.1:9"}"#).unwrap();
        api.set_id("echo".into());
        api.normalize().unwrap();
        assert_eq!(api.path, "echo");
        assert_eq!(api.display_name, "echo");
        assert!(api.subscription_required);
        let mut bad: Api =
            serde_json::from_str(r#"{"path":"a b","serviceUrl":"ftp://x"}"#).unwrap();
        let err = bad.normalize().unwrap_err();
        assert_eq!(err.details.len(), 2);
    }

    #[test]
    fn unknown_properties_are_refused() {
        assert!(serde_json::from_str::<Api>(r#"{"path":"x","servceUrl":"http://a"}"#).is_err());
    }

    #[test]
    fn operation_fills_template_parameters() {
        let mut op: Operation =
            serde_json::from_str(r#"{"method":"get","urlTemplate":"/users/{id}"}"#).unwrap();
        op.set_id("get-user".into());
        op.normalize().unwrap();
        assert_eq!(op.method, "GET");
        assert_eq!(op.template_parameters[0].name, "id");
    }

    #[test]
    fn users_need_an_email() {
        let mut user: User = serde_json::from_str(r#"{"email":"ada@example.com"}"#).unwrap();
        user.set_id("ada".into());
        user.normalize().unwrap();
        assert_eq!(user.email, "ada@example.com");
        let mut spaced: User = serde_json::from_str(r#"{"email":" ada@example.com "}"#).unwrap();
        spaced.set_id("ada".into());
        assert!(spaced.normalize().is_err());
        assert_eq!(user.state, UserState::Active);
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "a b@example.com",
            "ada@example",
            "ada@exa..mple.com",
            "ada@example.com.",
            "ada@bü.com",
            "\"ada\"@example.com",
        ] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<User>(r#"{"email":"a@b.c","password":"x"}"#).is_err());
    }

    #[test]
    fn portal_settings_need_readable_colours() {
        let mut ok = PortalSettings::default();
        ok.validate().unwrap();
        let mut low: PortalSettings =
            serde_json::from_str(r##"{"textColor":"#eeeeee","primaryColor":"#FFFF00"}"##).unwrap();
        let err = low.validate().unwrap_err();
        let targets: Vec<&str> = err.details.iter().map(|d| d.target.as_str()).collect();
        assert!(targets.contains(&"textColor") && targets.contains(&"primaryColor"));
        let mut bad: PortalSettings =
            serde_json::from_str(r#"{"primaryColor":"red","logoUrl":"javascript:alert(1)"}"#)
                .unwrap();
        assert_eq!(bad.validate().unwrap_err().details.len(), 2);
        assert!((contrast_ratio([0, 0, 0], [255, 255, 255]) - 21.0).abs() < 0.01);
    }

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----";

    #[test]
    fn certificate_data_is_pem_with_at_most_one_key() {
        let parts = split_pem("data", &format!("leaf\n{CERT}\n{CERT}\n{KEY}\n")).unwrap();
        assert_eq!(parts.chain.matches("BEGIN CERTIFICATE").count(), 2);
        assert!(
            parts
                .key
                .as_deref()
                .unwrap()
                .starts_with("-----BEGIN PRIVATE KEY-----")
        );
        assert!(!format!("{parts:?}").contains("MIIE"), "Debug shows no key");
        assert!(split_pem("data", CERT).unwrap().key.is_none());
        // Azure's base64 PFX gets the conversion command.
        let e = split_pem("data", "MIIKZAIBAzCCCh4GCSqGSIb3DQEHAaCCCg8=").unwrap_err();
        assert!(
            e.message
                .contains("openssl pkcs12 -in cert.pfx -nodes -out cert.pem"),
            "{e}"
        );
        let e = split_pem("data", &format!("{CERT}\n{KEY}\n{KEY}")).unwrap_err();
        assert!(e.message.contains("more than one private key"), "{e}");
        let e = split_pem("data", &format!("{CERT}\n-----BEGIN ENCRYPTED PRIVATE KEY-----\nx\n-----END ENCRYPTED PRIVATE KEY-----")).unwrap_err();
        assert!(e.message.contains("openssl pkey"), "{e}");
        // Hostile shapes end in an error, never a panic.
        for odd in [
            "-----BEGIN ",
            "-----BEGIN -----",
            "-----BEGIN é-----x-----END é-----",
            "-----BEGIN CERTIFICATE----------END CERTIFICATE-----",
            "\u{0}-----BEGIN CERTIFICATE-----",
        ] {
            let _ = split_pem("data", odd);
        }
        let e = split_pem("data", "-----BEGIN CERTIFICATE-----\nMIIB\n").unwrap_err();
        assert!(e.message.contains("END CERTIFICATE"), "{e}");

        let mut c: Certificate =
            serde_json::from_str(&serde_json::json!({"data": CERT, "password": "pw"}).to_string())
                .unwrap();
        let e = c.normalize().unwrap_err();
        assert_eq!(e.details[0].target, "password");
        let mut c: Certificate = serde_json::from_str("{}").unwrap();
        assert_eq!(c.normalize().unwrap_err().details[0].target, "data");
        // The data is never serialised back.
        let c: Certificate =
            serde_json::from_str(&serde_json::json!({"data": KEY}).to_string()).unwrap();
        assert!(!serde_json::to_string(&c).unwrap().contains("MIIE"));
    }

    #[test]
    fn hostnames_are_dns_names_or_one_label_wildcards() {
        assert_eq!(
            check_hostname("API.Example.com").unwrap(),
            "api.example.com"
        );
        assert_eq!(check_hostname("*.example.com").unwrap(), "*.example.com");
        assert_eq!(check_hostname("localhost").unwrap(), "localhost");
        for bad in [
            "",
            "*.",
            "*.com",
            "a..b",
            "-a.com",
            "a-.com",
            "a b.com",
            "a.*.com",
            "**.a.com",
            "127.0.0.1",
            "a_b.com",
            " api.example.com",
            "example.1a",
            &format!("{}.com", "x".repeat(64)),
        ] {
            assert!(check_hostname(bad).is_err(), "{bad}");
        }
        let mut hc: HostnameConfiguration = serde_json::from_str(
            r#"{"hostname":"API.example.com","certificateId":"/subscriptions/s/resourceGroups/r/providers/Microsoft.ApiManagement/service/x/certificates/web"}"#,
        )
        .unwrap();
        hc.normalize().unwrap();
        assert_eq!(
            (hc.hostname.as_str(), hc.certificate_id.as_str()),
            ("api.example.com", "web")
        );
        assert!(hc.http2_enabled && !hc.negotiate_client_certificate);
        let mut bad: HostnameConfiguration =
            serde_json::from_str(r#"{"hostname":"a b","certificateId":""}"#).unwrap();
        assert_eq!(bad.normalize().unwrap_err().details.len(), 2);
        let ca: GatewayCertificateAuthority = serde_json::from_str("{}").unwrap();
        assert!(ca.is_trusted);
    }

    #[test]
    fn ids() {
        assert!(validate_id("api", "echo-1.v2_x").is_ok());
        for bad in ["", ".x", "a/b", "a b", &"x".repeat(81)] {
            assert!(validate_id("api", bad).is_err());
        }
    }

    proptest::proptest! {
        /// `check_email` takes exactly what the published pattern (and length) allows.
        #[test]
        fn the_email_check_follows_the_published_pattern(
            near in "[a-z.!\"<>@ ü-]{0,6}@?[a-zA-Z0-9.ü_-]{0,8}",
            inside in proptest::string::string_regex(
                EMAIL_PATTERN.trim_start_matches('^').trim_end_matches('$')
            ).expect("the pattern generates"),
        ) {
            let pattern = regex::Regex::new(EMAIL_PATTERN).expect("the pattern compiles");
            for text in [near.as_str(), inside.as_str()] {
                let allowed = pattern.is_match(text) && text.chars().count() <= 254;
                proptest::prop_assert_eq!(allowed, check_email(text).is_ok(), "{}", text);
            }
        }
    }

    proptest::proptest! {
        /// `check_hostname` takes exactly what the published pattern (and length) allows.
        #[test]
        fn the_hostname_check_follows_the_published_pattern(
            near in "[*]?[.]?[a-zA-Z0-9_ .-]{0,12}",
            inside in proptest::string::string_regex(
                HOSTNAME_PATTERN.trim_start_matches('^').trim_end_matches('$')
            ).expect("the pattern generates"),
        ) {
            let pattern = regex::Regex::new(HOSTNAME_PATTERN).expect("the pattern compiles");
            for text in [near.as_str(), inside.as_str()] {
                let allowed = pattern.is_match(text) && text.len() <= 253;
                proptest::prop_assert_eq!(allowed, check_hostname(text).is_ok(), "{}", text);
            }
        }
    }

    #[test]
    fn the_url_pattern_compiles_and_decides() {
        assert!(HTTP_URL.is_some());
        for good in [
            "http://backend",
            "https://api.example.com:8443/v1/x?y=1&z=%20",
            "http://127.0.0.1:8080",
            "http://[::1]:9000/p",
            "http://[2001:db8::8a2e:370:7334]",
            "http://svc_1.internal./p",
        ] {
            assert!(check_http_url(good).is_ok(), "{good}");
        }
        for bad in [
            "http://0",
            "http://01.2.3.4",
            "http://256.1.1.1",
            "http://1.2.3",
            "http://[:::]",
            "http://host:0",
            "http://host:65536",
            "http://host:080",
            "http://-host",
            "http://user:pw@host",
            "http://host/a b",
            "http://host/#frag",
            "http://host/%zz",
            "ftp://host",
        ] {
            assert!(check_http_url(bad).is_err(), "{bad}");
        }
    }
}
