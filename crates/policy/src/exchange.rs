//! One request on its way through the pipeline: what policies read and change, and what
//! expressions see through [`crate::expr::Context`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};

pub use crate::expr::ClientCertificate;
use crate::expr::{Context, Entity, Field, Message, Value};

/// The request as policies shape it before it goes to the backend.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    /// `http` or `https`, as the client called.
    pub scheme: String,
    /// Host (and port) the client called.
    pub host: String,
    /// The path the backend will receive, below the service URL (starts with `/` or is empty).
    pub path: String,
    /// Query string without `?` (the subscription key parameter already removed).
    pub query: Option<String>,
    pub headers: HeaderMap,
    /// The body once read or replaced by a policy; `None` while it still streams from the
    /// client untouched.
    pub body: Option<Bytes>,
}

/// The response as policies shape it before it goes to the client.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: StatusCode,
    pub reason: Option<String>,
    pub headers: HeaderMap,
    /// `None` while it still streams from the backend untouched.
    pub body: Option<Bytes>,
}

impl Response {
    pub fn new(status: StatusCode) -> Self {
        Self {
            status,
            reason: None,
            headers: HeaderMap::new(),
            body: Some(Bytes::new()),
        }
    }
}

/// Who is calling what: fixed for the request, read by expressions.
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    pub api_id: Arc<str>,
    pub api_name: Arc<str>,
    pub api_path: Arc<str>,
    pub api_version: Option<Arc<str>>,
    pub service_url: Option<Arc<str>>,
    pub operation_id: Arc<str>,
    pub operation_name: Arc<str>,
    pub operation_method: Arc<str>,
    pub operation_url_template: Arc<str>,
    pub subscription: Option<SubscriptionInfo>,
    pub product: Option<(Arc<str>, Arc<str>)>,
    pub user: Option<UserInfo>,
    pub gateway_id: Arc<str>,
    pub region: Arc<str>,
    pub ip: Arc<str>,
    pub request_id: uuid::Uuid,
    pub timestamp: Option<SystemTime>,
    pub original_url: String,
    pub matched: Vec<(Arc<str>, String)>,
    /// What the operation's OpenAPI document says about it: response examples
    /// (`mock-response`), body schemas, parameters and statuses (the validation policies),
    /// compiled once per configuration. `None` when the document says nothing of the
    /// operation.
    pub examples: Option<Arc<OperationDocument>>,
    /// `context.Request.Certificate`: described once per connection, shared by its requests.
    pub client_certificate: Option<Arc<ClientCertificate>>,
}

#[derive(Debug, Clone, Default)]
pub struct SubscriptionInfo {
    pub id: Arc<str>,
    pub name: Arc<str>,
    /// The key the caller presented.
    pub key: String,
}

#[derive(Debug, Clone, Default)]
pub struct UserInfo {
    pub id: Arc<str>,
    pub email: Arc<str>,
    pub first_name: Arc<str>,
    pub last_name: Arc<str>,
}

/// `context.LastError`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LastError {
    /// The policy (element name) or part of the gateway that failed.
    pub source: String,
    pub reason: String,
    pub message: String,
    pub scope: String,
    pub section: String,
    pub path: String,
    pub policy_id: String,
}

/// Adds the headers policies left for the final answer (`Exchange::response_headers`) to
/// `headers`: each replaces a header of its name, except `Vary`, which adds to what the
/// response varies by (cors adds `Origin`).
pub fn add_response_headers(headers: &mut HeaderMap, extra: HeaderMap) {
    let mut last: Option<http::HeaderName> = None;
    for (name, value) in extra {
        match name {
            Some(name) => {
                if name == http::header::VARY {
                    headers.append(name.clone(), value);
                } else {
                    headers.insert(name.clone(), value);
                }
                last = Some(name);
            }
            // The further values of the name before.
            None => {
                if let Some(name) = &last {
                    headers.append(name.clone(), value);
                }
            }
        }
    }
}

/// The whole per-request state.
#[derive(Debug)]
pub struct Exchange {
    pub request: Request,
    pub response: Option<Response>,
    pub variables: HashMap<String, Value>,
    pub info: RequestInfo,
    /// Set by `set-backend-service`: the base URL requests go to instead of the API's.
    pub backend_url: Option<String>,
    /// Set by `set-backend-service backend-id`: the backend resource requests go to instead.
    pub backend_id: Option<Arc<str>>,
    /// Set by `authentication-certificate`: the certificate presented to the backend.
    pub authentication_certificate: Option<Arc<str>>,
    /// Set by `set-backend-service backend-id="dapr"`: the path of the Dapr sidecar's invoke
    /// API the request goes to (`/v1.0/invoke/{app}[.{namespace}]/method/{method}`), in place
    /// of the backend's URL and the request's path.
    pub dapr_invoke: Option<String>,
    /// Set by `proxy`: the HTTP proxy the backend request goes through.
    pub proxy: Option<Arc<crate::policies::ProxySettings>>,
    pub last_error: Option<LastError>,
    /// Headers policies add to whatever response the client finally gets (the remaining-calls
    /// header of a rate limit, say).
    pub response_headers: HeaderMap,
    /// The answer of a policy that refuses the request by raising an error (validate-jwt):
    /// `on-error` starts from it (as `context.Response`) and the client gets it unless
    /// `on-error` answers otherwise.
    pub error_response: Option<Response>,
    /// A failure neither `on-error` nor a refusal answered: the client gets its fixed answer
    /// ([`crate::answer::Answer`]), made by the gateway. `response` is then `None`.
    pub failure: Option<crate::run::PolicyError>,
    /// Set by `cache-lookup` on a miss: where `cache-store` keeps the response.
    pub response_cache: Option<crate::policies::ResponseCacheKey>,
    /// What `cache-lookup` found: `Some(true)` on a hit, `Some(false)` on a miss.
    pub cache_hit: Option<bool>,
    /// The policy that refused the request with its own answer (a rate limit's 429) and
    /// why, in Azure's error terms, for the gateway's logs and metrics.
    pub refused: Option<(&'static str, &'static str)>,
    /// Quota counting left for when the response is known (bandwidth, and increment
    /// conditions that read the response); see [`crate::policies::Quota`].
    pub(crate) quota_charges: Vec<crate::policies::QuotaCharge>,
    /// What the language-model policies count and emit once the answer is known.
    pub(crate) llm_pending: Vec<crate::policies::llm::Pending>,
}

impl Exchange {
    pub fn new(request: Request, info: RequestInfo) -> Self {
        Self {
            request,
            response: None,
            variables: HashMap::new(),
            info,
            backend_url: None,
            backend_id: None,
            authentication_certificate: None,
            dapr_invoke: None,
            proxy: None,
            last_error: None,
            cache_hit: None,
            refused: None,
            response_headers: HeaderMap::new(),
            error_response: None,
            failure: None,
            response_cache: None,
            quota_charges: Vec::new(),
            llm_pending: Vec::new(),
        }
    }

    /// `context.Request.Url`: the gateway URL of the request, API path included, as policies
    /// have rewritten it so far.
    pub fn request_url(&self) -> String {
        let r = &self.request;
        let api = self.info.api_path.trim_matches('/');
        let mut url = format!("{}://{}", r.scheme, r.host);
        if !api.is_empty() {
            url.push('/');
            url.push_str(api);
        }
        url.push_str(&r.path);
        if api.is_empty() && r.path.is_empty() {
            url.push('/');
        }
        if let Some(q) = r.query.as_deref().filter(|q| !q.is_empty()) {
            url.push('?');
            url.push_str(q);
        }
        url
    }
}

fn joined(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut values = headers.get_all(name).iter().peekable();
    values.peek()?;
    let parts: Vec<Cow<'_, str>> = values
        .map(|v| String::from_utf8_lossy(v.as_bytes()))
        .collect();
    Some(parts.join(","))
}

fn all(headers: &HeaderMap) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for name in headers.keys() {
        if let Some(v) = joined(headers, name.as_str()) {
            out.push((name.as_str().to_owned(), v));
        }
    }
    out
}

impl Exchange {
    /// The `context` fields the exchange holds as shared strings: `Some` with the value (`None`
    /// when null) for those, `None` for the others.
    fn shared_text(&self, field: Field) -> Option<Option<&Arc<str>>> {
        let i = &self.info;
        let sub = i.subscription.as_ref();
        let user = i.user.as_ref();
        let product = i.product.as_ref();
        Some(match field {
            Field::SubscriptionId => sub.map(|s| &s.id),
            Field::SubscriptionName => sub.map(|s| &s.name),
            Field::UserId => user.map(|u| &u.id),
            Field::UserEmail => user.map(|u| &u.email),
            Field::UserFirstName => user.map(|u| &u.first_name),
            Field::UserLastName => user.map(|u| &u.last_name),
            Field::ProductId => product.map(|p| &p.0),
            Field::ProductName => product.map(|p| &p.1),
            Field::ApiId => Some(&i.api_id),
            Field::ApiName => Some(&i.api_name),
            Field::ApiPath => Some(&i.api_path),
            Field::ApiVersion => i.api_version.as_ref(),
            Field::ApiServiceUrl => i.service_url.as_ref(),
            Field::OperationId => Some(&i.operation_id),
            Field::OperationName => Some(&i.operation_name),
            Field::OperationMethod => Some(&i.operation_method),
            Field::OperationUrlTemplate => Some(&i.operation_url_template),
            Field::DeploymentRegion => Some(&i.region),
            Field::DeploymentGatewayId => Some(&i.gateway_id),
            _ => return None,
        })
    }
}

impl Context for Exchange {
    fn request_method(&self) -> Cow<'_, str> {
        Cow::Borrowed(self.request.method.as_str())
    }

    fn request_url(&self) -> Cow<'_, str> {
        Cow::Owned(Exchange::request_url(self))
    }

    fn original_url(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.info.original_url)
    }

    fn ip_address(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.info.ip)
    }

    fn client_certificate(&self) -> Option<Arc<ClientCertificate>> {
        self.info.client_certificate.clone()
    }

    fn header(&self, message: Message, name: &str) -> Option<String> {
        match message {
            Message::Request => joined(&self.request.headers, name),
            Message::Response => joined(&self.response.as_ref()?.headers, name),
        }
    }

    fn headers(&self, message: Message) -> Vec<(String, String)> {
        match message {
            Message::Request => all(&self.request.headers),
            Message::Response => self
                .response
                .as_ref()
                .map(|r| all(&r.headers))
                .unwrap_or_default(),
        }
    }

    fn has_body(&self, message: Message) -> bool {
        match message {
            Message::Request => true,
            Message::Response => self.response.is_some(),
        }
    }

    fn body(&self, message: Message, _preserve_content: bool) -> Option<Cow<'_, [u8]>> {
        let body = match message {
            Message::Request => self.request.body.as_ref(),
            Message::Response => self.response.as_ref()?.body.as_ref(),
        };
        Some(Cow::Borrowed(body.map_or(&[][..], |b| b.as_ref())))
    }

    fn matched_parameter(&self, name: &str) -> Option<String> {
        self.info
            .matched
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }

    fn matched_parameters(&self) -> Vec<(String, String)> {
        self.info
            .matched
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    fn response_status(&self) -> Option<(u16, Cow<'_, str>)> {
        let r = self.response.as_ref()?;
        let reason = match &r.reason {
            Some(s) => Cow::Borrowed(s.as_str()),
            None => Cow::Borrowed(r.status.canonical_reason().unwrap_or("")),
        };
        Some((r.status.as_u16(), reason))
    }

    fn variable(&self, name: &str) -> Option<Value> {
        self.variables.get(name).cloned()
    }

    fn has_variable(&self, name: &str) -> bool {
        self.variables.contains_key(name)
    }

    fn has(&self, entity: Entity) -> bool {
        match entity {
            Entity::Subscription => self.info.subscription.is_some(),
            Entity::User => self.info.user.is_some(),
            Entity::Product => self.info.product.is_some(),
            Entity::LastError => self.last_error.is_some(),
            _ => true,
        }
    }

    fn field(&self, field: Field) -> Option<Cow<'_, str>> {
        if let Some(shared) = self.shared_text(field) {
            return shared.map(|s| Cow::Borrowed(&**s));
        }
        let sub = self.info.subscription.as_ref();
        let err = self.last_error.as_ref();
        Some(Cow::Borrowed(match field {
            Field::SubscriptionKey => sub?.key.as_str(),
            Field::DeploymentServiceName => "gatehouse",
            Field::LastErrorSource => err?.source.as_str(),
            Field::LastErrorReason => err?.reason.as_str(),
            Field::LastErrorMessage => err?.message.as_str(),
            Field::LastErrorScope => err?.scope.as_str(),
            Field::LastErrorSection => err?.section.as_str(),
            Field::LastErrorPath => err?.path.as_str(),
            Field::LastErrorPolicyId => err?.policy_id.as_str(),
            // Gateways hold only hashes of keys: the other key is not known here. (The fields
            // held shared were answered above.)
            _ => return None,
        }))
    }

    fn shared_field(&self, field: Field) -> Option<Arc<str>> {
        match self.shared_text(field) {
            Some(shared) => shared.cloned(),
            None => self.field(field).map(|text| Arc::from(&*text)),
        }
    }

    fn shared_ip_address(&self) -> Arc<str> {
        self.info.ip.clone()
    }

    fn request_id(&self) -> uuid::Uuid {
        self.info.request_id
    }

    fn timestamp(&self) -> SystemTime {
        self.info.timestamp.unwrap_or(SystemTime::UNIX_EPOCH)
    }
}

/// What an API's imported OpenAPI document says about one operation, compiled when the
/// configuration is loaded.
#[derive(Debug, Default)]
pub struct OperationDocument {
    /// Response examples by status (`mock-response`).
    pub examples: gatehouse_model::snapshot::ResponseExamples,
    /// Whether the document describes the operation (not only its examples): the validation
    /// policies judge messages against it. When it does not, they find nothing to check.
    pub described: bool,
    /// The compiled schemas of the operation; everything below points into it.
    pub schemas: crate::schema::SchemaSet,
    /// The request body's schema by media type, lowercase.
    pub request: Vec<(String, crate::schema::SchemaRef)>,
    /// The response bodies' schemas: status as the document writes it (`200`, `2XX`,
    /// `default`) → media type (lowercase) → schema.
    pub responses: Vec<(String, Vec<(String, crate::schema::SchemaRef)>)>,
    /// The header, query and path parameters.
    pub parameters: Vec<crate::parameters::Parameter>,
    /// Every declared response status (as written) with its headers.
    pub statuses: Vec<(String, Vec<crate::parameters::Parameter>)>,
}

impl OperationDocument {
    /// Compiles what the snapshot holds for one operation, or `None` when it holds nothing.
    /// A schema that does not compile is left out and reported to `problem` (with where), so
    /// one bad schema does not stop the configuration.
    pub fn build(
        examples: Option<&gatehouse_model::snapshot::ResponseExamples>,
        schemas: Option<&gatehouse_model::snapshot::OperationSchemas>,
        definitions: &std::collections::BTreeMap<String, serde_json::Value>,
        problem: &mut dyn FnMut(String),
    ) -> Option<Self> {
        if examples.is_none_or(|e| e.is_empty()) && schemas.is_none() {
            return None;
        }
        let mut doc = Self {
            examples: examples.cloned().unwrap_or_default(),
            described: schemas.is_some(),
            ..Self::default()
        };
        let Some(schemas) = schemas else {
            return Some(doc);
        };
        let defs = |name: &str| definitions.get(name).cloned();
        let mut compile =
            |set: &mut crate::schema::SchemaSet, what: String, schema: &serde_json::Value| {
                set.compile(schema, &defs)
                    .map_err(|e| problem(format!("{what}: {e}")))
                    .ok()
            };
        for (media, schema) in &schemas.request {
            if let Some(r) = compile(&mut doc.schemas, format!("request body {media}"), schema) {
                doc.request.push((media.to_ascii_lowercase(), r));
            }
        }
        for (status, by_media) in &schemas.responses {
            let mut list = Vec::new();
            for (media, schema) in by_media {
                let what = format!("response {status} {media}");
                if let Some(r) = compile(&mut doc.schemas, what, schema) {
                    list.push((media.to_ascii_lowercase(), r));
                }
            }
            doc.responses.push((status.clone(), list));
        }
        for p in &schemas.parameters {
            let compiled =
                crate::parameters::Parameter::compile(p, &mut doc.schemas, &defs, &mut *problem);
            doc.parameters.push(compiled);
        }
        for (status, headers) in &schemas.statuses {
            let mut list = Vec::with_capacity(headers.len());
            for h in headers {
                let mut prefixed = |m: String| problem(format!("response {status} {m}"));
                list.push(crate::parameters::Parameter::compile(
                    h,
                    &mut doc.schemas,
                    &defs,
                    &mut prefixed,
                ));
            }
            doc.statuses.push((status.clone(), list));
        }
        Some(doc)
    }

    /// The declared response of `status`: its own, else its class (`2XX`), else `default`;
    /// with the headers declared for it. `None` when the document does not declare it.
    pub fn status(&self, status: u16) -> Option<&[crate::parameters::Parameter]> {
        find_status(&self.statuses, status).map(Vec::as_slice)
    }

    /// The schemas of the response bodies of `status`: its own, else its class (`2XX`), else
    /// `default`.
    pub fn response_schemas(&self, status: u16) -> Option<&[(String, crate::schema::SchemaRef)]> {
        find_status(&self.responses, status).map(Vec::as_slice)
    }
}

/// The entry of `status` in a list keyed by statuses as OpenAPI writes them: the exact code,
/// else its class (`2XX`), else `default`.
fn find_status<T>(list: &[(String, T)], status: u16) -> Option<&T> {
    let exact = |s: &str| s.parse::<u16>() == Ok(status);
    let class = |s: &str| {
        let b = s.as_bytes();
        b.len() == 3
            && u16::from(b[0]) == u16::from(b'0') + status / 100
            && b[1..].eq_ignore_ascii_case(b"XX")
    };
    list.iter()
        .find(|(s, _)| exact(s))
        .or_else(|| list.iter().find(|(s, _)| class(s)))
        .or_else(|| list.iter().find(|(s, _)| s == "default"))
        .map(|(_, v)| v)
}
