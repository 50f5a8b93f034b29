//! The built-in policies, one module each: how the element is checked and compiled, and what it
//! does to a request. Adding a policy means a module here plus one entry in the `registry!` list
//! below, which generates [`Step`], [`CATALOGUE`] and the per-policy match arms.

mod authentication_basic;
mod authentication_certificate;
mod authentication_managed_identity;
mod cache;
mod cache_lookup;
mod cache_lookup_value;
mod cache_remove_value;
mod cache_store;
mod cache_store_value;
mod check_header;
mod choose;
mod cors;
mod cross_domain;
mod dapr;
mod emit_metric;
mod find_and_replace;
#[cfg(test)]
pub(crate) mod flowkit;
mod forward_request;
mod include_fragment;
mod invoke_dapr_binding;
mod ip_filter;
mod json_to_xml;
mod jsonp;
mod limit_concurrency;
pub(crate) mod llm;
mod llm_emit_token_metric;
mod llm_token_limit;
mod log_to_eventhub;
mod mock_response;
mod param;
mod proxy;
mod publish_to_dapr;
pub(crate) mod quota;
mod rate_limit;
mod redirect_content_urls;
mod retry;
mod return_response;
mod rewrite_uri;
mod send_request;
mod set_backend_service;
mod set_body;
mod set_header;
mod set_method;
mod set_query_parameter;
mod set_status;
mod set_variable;
#[cfg(test)]
pub(crate) mod testkit;
mod trace;
mod validate_azure_ad_token;
mod validate_client_certificate;
mod validate_content;
mod validate_headers;
pub mod validate_jwt;
mod validate_parameters;
mod validate_status_code;
mod validation;
mod wait;
mod xml_to_json;

pub use authentication_basic::AuthenticationBasic;
pub use authentication_certificate::AuthenticationCertificate;
pub use authentication_managed_identity::{AccessToken, AuthenticationManagedIdentity};
pub use cache::{CacheEntry, CachedResponse, CachingType, Downstream, ResponseCacheKey};
pub use cache_lookup::CacheLookup;
pub use cache_lookup_value::CacheLookupValue;
pub use cache_remove_value::CacheRemoveValue;
pub use cache_store::CacheStore;
pub use cache_store_value::CacheStoreValue;
pub use check_header::CheckHeader;
pub use choose::Choose;
pub use cors::{Cors, is_preflight, preflight};
pub use cross_domain::CrossDomain;
pub use dapr::DAPR_DEFAULT_ENDPOINT;
pub use emit_metric::{EmitMetric, EmittedMetric};
pub use find_and_replace::FindAndReplace;
pub use forward_request::{DEFAULT_TIMEOUT, ForwardRequest};
pub use include_fragment::IncludeFragment;
pub use invoke_dapr_binding::InvokeDaprBinding;
pub use ip_filter::IpFilter;
pub use json_to_xml::JsonToXml;
pub use jsonp::Jsonp;
pub use limit_concurrency::LimitConcurrency;
pub use llm_emit_token_metric::LlmEmitTokenMetric;
pub use llm_token_limit::LlmTokenLimit;
pub use log_to_eventhub::{LogEntry, LogToEventHub, MAX_MESSAGE as MAX_LOG_MESSAGE, Partition};
pub use mock_response::MockResponse;
pub use proxy::{Proxy, ProxySettings};
pub use publish_to_dapr::PublishToDapr;
pub use quota::{Quota, QuotaCharge};
pub use rate_limit::RateLimit;
pub use redirect_content_urls::RedirectContentUrls;
pub use retry::Retry;
pub use return_response::ReturnResponse;
pub use rewrite_uri::RewriteUri;
pub use send_request::{DEFAULT_SEND_TIMEOUT, SendRequest, header_list};
pub use set_backend_service::SetBackendService;
pub use set_body::SetBody;
pub use set_header::SetHeader;
pub use set_method::SetMethod;
pub use set_query_parameter::SetQueryParameter;
pub use set_status::SetStatus;
pub use set_variable::SetVariable;
pub use trace::{Severity as TraceSeverity, Trace, TraceEvent};
pub use validate_client_certificate::{
    Identity as ClientCertificateIdentity, ValidateClientCertificate,
};
pub use validate_content::ValidateContent;
pub use validate_headers::ValidateHeaders;
pub use validate_jwt::{OpenIdKeys, ValidateJwt};
pub use validate_parameters::ValidateParameters;
pub use validate_status_code::ValidateStatusCode;
pub use wait::Wait;
pub use xml_to_json::XmlToJson;

use crate::compile::{Cx, Section};
use crate::exchange::Exchange;
use crate::run::{Budget, Flow, Io, PolicyError};
use crate::xml::Element;

/// Declares the policies: the [`Step`] enum, [`CATALOGUE`], [`compile`], and the per-policy arms
/// of [`Step::name`], [`Step::run`] and the expressions a step evaluates, all from one list, so
/// a new policy is its module plus one entry in the `registry!` below.
///
/// An entry: `Variant(StoredType) { "element" [sections] => compile, …; run |p, ex, io, budget|
/// body; [name |p| body;] [texts |p| body;] }`. `compile` is called with the element and the
/// compiler (`Cx`) and returns the policy, which is stored with `.into()` (so a `Box<T>` variant
/// takes a `T`). `run`'s closure-like body runs inside the async `Step::run` (`.await` allowed).
/// Without `name` the step is named by its first element name; without `texts` it evaluates no
/// expressions of its own.
macro_rules! registry {
    (
        $(
            $variant:ident($stored:ty) {
                $( $element:literal [$($section:ident),*] => $compile:expr ),+ ;
                run |$p:tt, $ex:tt, $io:tt, $budget:tt| $run:expr ;
                $( name |$np:tt| $name:expr ; )?
                $( texts |$tp:tt| $texts:expr ; )?
            }
        )*
    ) => {
        /// One compiled policy in a section.
        #[derive(Debug, Clone)]
        pub enum Step {
            /// `<base/>`: the parent scope's section goes here.
            Base,
            $( $variant($stored), )*
        }

        /// Every policy this gateway knows: element name and the sections it may appear in.
        pub const CATALOGUE: &[(&str, &[Section])] = &[
            ("base", &[Inbound, Backend, Outbound, OnError]),
            $( $( ($element, &[$($section),*]), )+ )*
        ];

        /// Compiles one policy element whose name and section [`compile`] checked.
        fn compile_known(el: &Element, cx: &mut Cx<'_>) -> Option<Step> {
            Some(match el.name.as_str() {
                "base" => {
                    cx.allow_attrs(el, &[]);
                    cx.no_children(el);
                    if cx.in_fragment() {
                        cx.error(el.pos, "a policy fragment cannot contain <base/>");
                        return None;
                    }
                    Step::Base
                }
                $( $( $element => Step::$variant(($compile)(el, cx)?.into()), )+ )*
                _ => return None,
            })
        }

        impl Step {
            pub fn name(&self) -> &'static str {
                match self {
                    Step::Base => "base",
                    $( Step::$variant(p) => registry!(@name p, [$($element),+] $(, |$np| $name)?), )*
                }
            }

            pub async fn run<I: Io>(
                &self,
                ex: &mut Exchange,
                io: &mut I,
                budget: &mut Budget,
            ) -> Result<Flow, PolicyError> {
                let result = match self {
                    Step::Base => Ok(Flow::Continue),
                    $(
                        #[allow(unused_variables)]
                        Step::$variant($p) => {
                            let ($ex, $io, $budget) = (&mut *ex, &mut *io, &mut *budget);
                            $run
                        }
                    )*
                };
                result.map_err(|e| e.from_policy(self.name()))
            }

            /// The sources of the expressions this step evaluates (not nested steps).
            fn expressions(&self) -> Vec<&str> {
                let texts: Vec<&crate::text::PolicyText> = match self {
                    Step::Base => vec![],
                    $( Step::$variant(p) => registry!(@texts p $(, |$tp| $texts)?), )*
                };
                texts.into_iter().filter_map(|t| t.source()).collect()
            }
        }
    };
    (@name $p:ident, [$first:literal $(, $rest:literal)*]) => { { let _ = $p; $first } };
    (@name $p:ident, [$($all:literal),+], |$np:tt| $name:expr) => { { let $np = $p; $name } };
    (@texts $p:ident) => { { let _ = $p; vec![] } };
    (@texts $p:ident, |$tp:tt| $texts:expr) => { { let $tp = $p; $texts } };
}

use Section::{Backend, Inbound, OnError, Outbound};

registry! {
    AuthenticationBasic(AuthenticationBasic) { "authentication-basic" [Inbound] => AuthenticationBasic::compile; run |p, ex, _, b| p.run(ex, b); texts |p| p.texts(); }
    AuthenticationCertificate(AuthenticationCertificate) { "authentication-certificate" [Inbound] => AuthenticationCertificate::compile; run |p, ex, _, b| p.run(ex, b); texts |p| p.texts(); }
    AuthenticationManagedIdentity(AuthenticationManagedIdentity) { "authentication-managed-identity" [Inbound] => AuthenticationManagedIdentity::compile; run |p, ex, io, b| p.run(ex, io, b).await; texts |p| p.texts(); }
    CacheLookup(CacheLookup) { "cache-lookup" [Inbound] => CacheLookup::compile; run |p, ex, io, b| p.run(ex, io, b).await; texts |p| p.texts(); }
    CacheLookupValue(CacheLookupValue) { "cache-lookup-value" [Inbound, Backend, Outbound, OnError] => CacheLookupValue::compile; run |p, ex, io, b| p.run(ex, io, b).await; texts |p| p.texts(); }
    CacheRemoveValue(CacheRemoveValue) { "cache-remove-value" [Inbound, Backend, Outbound, OnError] => CacheRemoveValue::compile; run |p, ex, io, b| p.run(ex, io, b).await; texts |p| p.texts(); }
    CacheStore(CacheStore) { "cache-store" [Outbound] => CacheStore::compile; run |p, ex, io, b| p.run(ex, io, b).await; texts |p| p.texts(); }
    CacheStoreValue(CacheStoreValue) { "cache-store-value" [Inbound, Backend, Outbound, OnError] => CacheStoreValue::compile; run |p, ex, io, b| p.run(ex, io, b).await; texts |p| p.texts(); }
    CheckHeader(CheckHeader) { "check-header" [Inbound] => CheckHeader::compile; run |p, ex, _, b| p.run(ex, b); }
    Choose(Choose) { "choose" [Inbound, Backend, Outbound, OnError] => Choose::compile; run |p, ex, io, b| p.run(ex, io, b).await; }
    Cors(Box<Cors>) { "cors" [Inbound] => Cors::compile; run |p, ex, _, b| p.run(ex, b); texts |p| p.texts(); }
    CrossDomain(CrossDomain) { "cross-domain" [Inbound] => CrossDomain::compile; run |_, _, _, _| Ok(Flow::Continue); }
    FindAndReplace(FindAndReplace) { "find-and-replace" [Inbound, Backend, Outbound, OnError] => FindAndReplace::compile; run |p, ex, _, b| p.run(ex, b); texts |p| p.texts(); }
    ForwardRequest(ForwardRequest) { "forward-request" [Backend, OnError] => ForwardRequest::compile; run |p, ex, io, _| p.run(ex, io).await; }
    // The fragment's own steps name themselves in errors.
    IncludeFragment(IncludeFragment) { "include-fragment" [Inbound, Backend, Outbound, OnError] => IncludeFragment::compile; run |p, ex, io, b| return p.run(ex, io, b).await; }
    InvokeDaprBinding(Box<InvokeDaprBinding>) { "invoke-dapr-binding" [Inbound, Outbound, OnError] => InvokeDaprBinding::compile; run |p, ex, io, b| p.run(ex, io, b).await; texts |p| p.texts(); }
    IpFilter(IpFilter) { "ip-filter" [Inbound] => IpFilter::compile; run |p, ex, _, _| Ok(p.run(ex)); }
    JsonToXml(JsonToXml) { "json-to-xml" [Inbound, Outbound, OnError] => JsonToXml::compile; run |p, ex, _, b| p.run(ex, b); texts |p| p.texts(); }
    Jsonp(Jsonp) { "jsonp" [Outbound] => Jsonp::compile; run |p, ex, _, _| p.run(ex); }
    LimitConcurrency(LimitConcurrency) { "limit-concurrency" [Inbound, Backend, Outbound, OnError] => LimitConcurrency::compile; run |p, ex, io, b| p.run(ex, io, b).await; texts |p| vec![&p.key]; }
    LogToEventHub(LogToEventHub) { "log-to-eventhub" [Inbound, Backend, Outbound, OnError] => LogToEventHub::compile; run |p, ex, io, b| p.run(ex, io, b); texts |p| p.texts(); }
    LlmEmitTokenMetric(LlmEmitTokenMetric) { "azure-openai-emit-token-metric" [Inbound] => LlmEmitTokenMetric::compile, "llm-emit-token-metric" [Inbound] => LlmEmitTokenMetric::compile; run |p, ex, _, b| p.run(ex, b); name |p| p.name(); texts |p| p.texts(); }
    LlmTokenLimit(Box<LlmTokenLimit>) { "azure-openai-token-limit" [Inbound] => LlmTokenLimit::compile, "llm-token-limit" [Inbound] => LlmTokenLimit::compile; run |p, ex, io, b| p.run(ex, io, b).await; name |p| p.name(); texts |p| p.texts(); }
    MockResponse(MockResponse) { "mock-response" [Inbound, Outbound, OnError] => MockResponse::compile; run |p, ex, _, _| p.run(ex); }
    Proxy(Proxy) { "proxy" [Inbound] => Proxy::compile; run |p, ex, _, b| p.run(ex, b); texts |p| p.texts(); }
    PublishToDapr(Box<PublishToDapr>) { "publish-to-dapr" [Inbound] => PublishToDapr::compile; run |p, ex, io, b| p.run(ex, io, b).await; texts |p| p.texts(); }
    Quota(Box<Quota>) { "quota" [Inbound] => |el, cx| Quota::compile(el, cx, false), "quota-by-key" [Inbound] => |el, cx| Quota::compile(el, cx, true); run |p, ex, io, b| p.run(ex, io, b).await; name |p| p.name(); texts |p| p.texts(); }
    RateLimit(RateLimit) { "rate-limit" [Inbound] => |el, cx| RateLimit::compile(el, cx, false), "rate-limit-by-key" [Inbound] => |el, cx| RateLimit::compile(el, cx, true); run |p, ex, io, b| p.run(ex, io, b).await; name |p| p.name(); texts |p| p.texts(); }
    RedirectContentUrls(RedirectContentUrls) { "redirect-content-urls" [Inbound, Outbound] => RedirectContentUrls::compile; run |p, ex, _, _| p.run(ex); }
    Retry(Box<Retry>) { "retry" [Inbound, Backend, Outbound, OnError] => Retry::compile; run |p, ex, io, b| p.run(ex, io, b).await; texts |p| p.texts(); }
    ReturnResponse(ReturnResponse) { "return-response" [Inbound, Backend, Outbound, OnError] => ReturnResponse::compile; run |p, ex, _, b| p.run(ex, b); texts |p| p.texts(); }
    RewriteUri(RewriteUri) { "rewrite-uri" [Inbound] => RewriteUri::compile; run |p, ex, _, b| p.run(ex, b); texts |p| vec![&p.template]; }
    SendRequest(Box<SendRequest>) { "send-one-way-request" [Inbound, Backend, Outbound, OnError] => |el, cx| SendRequest::compile(el, cx, true), "send-request" [Inbound, Backend, Outbound, OnError] => |el, cx| SendRequest::compile(el, cx, false); run |p, ex, io, b| p.run(ex, io, b).await; name |p| p.name(); texts |p| p.texts(); }
    SetBackendService(SetBackendService) { "set-backend-service" [Inbound, Backend] => SetBackendService::compile; run |p, ex, _, b| p.run(ex, b); texts |p| p.texts(); }
    SetBody(SetBody) { "set-body" [Inbound, Backend, Outbound, OnError] => SetBody::compile; run |p, ex, _, b| p.run(ex, b); texts |p| vec![&p.body]; }
    SetHeader(SetHeader) { "set-header" [Inbound, Backend, Outbound, OnError] => SetHeader::compile; run |p, ex, _, b| p.run(ex, b); texts |p| p.texts(); }
    SetMethod(SetMethod) { "set-method" [Inbound, OnError] => SetMethod::compile; run |p, ex, _, b| p.run(ex, b); texts |p| vec![&p.method]; }
    SetQueryParameter(SetQueryParameter) { "set-query-parameter" [Inbound, Backend] => SetQueryParameter::compile; run |p, ex, _, b| p.run(ex, b); texts |p| p.texts(); }
    SetStatus(SetStatus) { "set-status" [Inbound, Backend, Outbound, OnError] => SetStatus::compile; run |p, ex, _, b| p.run(ex, b); texts |p| p.texts(); }
    SetVariable(SetVariable) { "set-variable" [Inbound, Backend, Outbound, OnError] => SetVariable::compile; run |p, ex, _, b| p.run(ex, b); texts |p| vec![&p.value]; }
    EmitMetric(EmitMetric) { "emit-metric" [Inbound, Backend, Outbound, OnError] => EmitMetric::compile; run |p, ex, io, b| p.run(ex, io, b); texts |p| p.texts(); }
    Trace(Trace) { "trace" [Inbound, Backend, Outbound, OnError] => Trace::compile; run |p, ex, io, b| p.run(ex, io, b); texts |p| p.texts(); }
    ValidateClientCertificate(ValidateClientCertificate) { "validate-client-certificate" [Inbound] => ValidateClientCertificate::compile; run |p, ex, _, _| p.run(ex); }
    ValidateContent(Box<ValidateContent>) { "validate-content" [Inbound, Outbound, OnError] => ValidateContent::compile; run |p, ex, _, _| p.run(ex); }
    ValidateHeaders(Box<ValidateHeaders>) { "validate-headers" [Outbound, OnError] => ValidateHeaders::compile; run |p, ex, _, b| p.run(ex, b); texts |p| p.texts(); }
    ValidateAzureAdToken(ValidateJwt) { "validate-azure-ad-token" [Inbound] => validate_azure_ad_token::compile; run |p, ex, io, b| p.run(ex, io, b).await; texts |p| p.texts(); }
    ValidateJwt(ValidateJwt) { "validate-jwt" [Inbound] => ValidateJwt::compile; run |p, ex, io, b| p.run(ex, io, b).await; texts |p| p.texts(); }
    ValidateParameters(Box<ValidateParameters>) { "validate-parameters" [Inbound] => ValidateParameters::compile; run |p, ex, _, b| p.run(ex, b); texts |p| p.texts(); }
    ValidateStatusCode(ValidateStatusCode) { "validate-status-code" [Outbound, OnError] => ValidateStatusCode::compile; run |p, ex, _, b| p.run(ex, b); texts |p| p.texts(); }
    Wait(Wait) { "wait" [Inbound, Backend, Outbound] => Wait::compile; run |p, ex, io, b| p.run(ex, io, b).await; texts |p| vec![&p.mode]; }
    XmlToJson(XmlToJson) { "xml-to-json" [Inbound, Outbound, OnError] => XmlToJson::compile; run |p, ex, _, b| p.run(ex, b); texts |p| p.texts(); }
}

/// Azure policies this gateway does not run, each with one sentence on why and what to use
/// instead. [`compile`] refuses them with that sentence (an element that is in neither list gets
/// the list of the policies this gateway knows).
pub const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "xsl-transform",
        "it needs an XSLT 1.0 engine, which this gateway does not embed; reshape XML with set-body and an expression (XDocument, XElement), a Liquid template, or xml-to-json",
    ),
    ("azure-openai-semantic-cache-lookup", SEMANTIC_CACHE),
    ("azure-openai-semantic-cache-store", SEMANTIC_CACHE),
    ("llm-semantic-cache-lookup", SEMANTIC_CACHE),
    ("llm-semantic-cache-store", SEMANTIC_CACHE),
    (
        "llm-content-safety",
        "it hands prompts to Azure AI Content Safety through Azure's own integration, which this gateway does not have; call the Content Safety text:analyze API with send-request and refuse with return-response",
    ),
    (
        "get-authorization-context",
        "it reads tokens from Azure API Management's credential manager, which exists only inside Azure; fetch the token with send-request (cached with cache-store-value) or use authentication-managed-identity",
    ),
    ("validate-graphql-request", GRAPHQL),
    ("set-graphql-resolver", GRAPHQL),
    ("http-data-source", GRAPHQL),
    ("sql-data-source", GRAPHQL),
    ("cosmosdb-data-source", GRAPHQL),
    ("publish-event", GRAPHQL),
    (
        "validate-odata-request",
        "this gateway does not import OData APIs, so there is no OData model to check a request against; check the query with validate-parameters or an expression",
    ),
];

const SEMANTIC_CACHE: &str = "semantic caching needs an embeddings deployment and a vector index (Azure Managed Redis with RediSearch), which this gateway does not have; cache exact prompts with cache-lookup-value and cache-store-value keyed on a hash of the request body";

const GRAPHQL: &str = "this gateway does not run GraphQL APIs (schemas, resolvers, subscriptions); put the GraphQL server behind an HTTP API and validate requests with validate-content";

/// Compiles one policy element, reporting problems into `cx`.
pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Step> {
    if let Some((_, why)) = UNSUPPORTED.iter().find(|(n, _)| *n == el.name) {
        cx.error(
            el.pos,
            format!("<{}> is not supported by this gateway: {why}", el.name),
        );
        return None;
    }
    let Some((_, sections)) = CATALOGUE.iter().find(|(n, _)| *n == el.name) else {
        cx.error(
            el.pos,
            format!(
                "unknown policy <{}>; this gateway supports: {}",
                el.name,
                known()
            ),
        );
        return None;
    };
    if !sections.contains(&cx.section) {
        let allowed: Vec<&str> = sections.iter().map(|s| s.name()).collect();
        cx.error(
            el.pos,
            format!(
                "<{}> is not allowed in <{}>; it may appear in: {}",
                el.name,
                cx.section.name(),
                allowed.join(", ")
            ),
        );
        return None;
    }
    compile_known(el, cx)
}

fn known() -> String {
    CATALOGUE
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| *n != "base")
        .collect::<Vec<_>>()
        .join(", ")
}

impl Step {
    /// Whether running this step needs the whole request body in memory.
    pub fn reads_request_body(&self) -> bool {
        match self {
            Step::Choose(c) => c.any(Step::reads_request_body) || c.conditions_read_body(),
            // A retried forward-request sends the same body again: buffer it first.
            Step::Retry(r) => {
                self.expressions_read_body()
                    || r.steps
                        .iter()
                        .any(|s| s.reads_request_body() || s.forwards())
            }
            Step::SendRequest(s) => s.copies_request_body() || self.expressions_read_body(),
            Step::LlmTokenLimit(p) => p.estimate || self.expressions_read_body(),
            Step::LimitConcurrency(_) | Step::Wait(_) | Step::IncludeFragment(_) => {
                self.expressions_read_body() || self.nested().iter().any(Step::reads_request_body)
            }
            _ if self.rewrites_body() == Some(false) => true,
            _ => self.expressions().iter().any(|src| src.contains(".Body")),
        }
    }

    /// Whether running this step (in outbound) needs the whole response body.
    pub fn reads_response_body(&self) -> bool {
        match self {
            Step::Choose(c) => c.any(Step::reads_response_body) || c.conditions_read_body(),
            Step::LimitConcurrency(_)
            | Step::Retry(_)
            | Step::Wait(_)
            | Step::IncludeFragment(_) => {
                self.expressions_read_body() || self.nested().iter().any(Step::reads_response_body)
            }
            _ if self.rewrites_body() == Some(true) => true,
            _ => self.reads_request_body(),
        }
    }

    /// Whether an expression of this step (not of nested steps) reads a body.
    fn expressions_read_body(&self) -> bool {
        self.expressions().iter().any(|src| src.contains(".Body"))
    }

    /// The policies nested in `limit-concurrency`, `retry`, `wait` and `include-fragment`.
    pub fn nested(&self) -> &[Step] {
        match self {
            Step::LimitConcurrency(p) => &p.steps,
            Step::Retry(p) => &p.steps,
            Step::Wait(p) => &p.steps,
            Step::IncludeFragment(p) => &p.steps,
            _ => &[],
        }
    }

    /// Whether this step or a nested one counts or reports a model's tokens, which it reads
    /// from the answer's body.
    pub fn counts_tokens(&self) -> bool {
        match self {
            Step::LlmTokenLimit(_) | Step::LlmEmitTokenMetric(_) => true,
            Step::Choose(c) => c.any(Step::counts_tokens),
            _ => self.nested().iter().any(Step::counts_tokens),
        }
    }

    /// Whether this step or a nested one is a quota (which settles after the response, and
    /// may read the request then).
    pub fn has_quota(&self) -> bool {
        match self {
            Step::Quota(_) => true,
            Step::Choose(c) => c.any(Step::has_quota),
            _ => self.nested().iter().any(Step::has_quota),
        }
    }

    /// Whether this step or a nested one forwards the request to the backend.
    fn forwards(&self) -> bool {
        match self {
            Step::ForwardRequest(_) => true,
            Step::Choose(c) => c.any(Step::forwards),
            _ => self.nested().iter().any(Step::forwards),
        }
    }

    /// For steps that read or rewrite a whole body by themselves: `Some(true)` for the
    /// response's, `Some(false)` for the request's.
    fn rewrites_body(&self) -> Option<bool> {
        match self {
            Step::FindAndReplace(p) => Some(p.response),
            Step::JsonToXml(p) => Some(p.response),
            Step::XmlToJson(p) => Some(p.response),
            Step::Jsonp(_) => Some(true),
            Step::RedirectContentUrls(p) => Some(p.response),
            Step::CacheStore(_) => Some(true),
            Step::ValidateContent(p) => Some(p.response),
            Step::SetBody(p) => p.template_reads_body(),
            Step::PublishToDapr(p) => p.template_reads_body(),
            Step::InvokeDaprBinding(p) => p.template_reads_body(),
            _ => None,
        }
    }
}

/// Which message a header/body policy changes: the request before the backend, the response
/// after.
pub(crate) fn on_response(section: Section) -> bool {
    matches!(section, Section::Outbound | Section::OnError)
}

#[cfg(test)]
mod registry_tests {
    use super::*;

    /// The registry generates the same catalogue, in the same order, as the hand-written one it
    /// replaced (the order shows in "unknown policy" messages).
    #[test]
    fn the_registry_lists_every_policy_once_in_order() {
        let names: Vec<&str> = CATALOGUE.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names.join(" "),
            "base authentication-basic authentication-certificate authentication-managed-identity cache-lookup \
             cache-lookup-value cache-remove-value cache-store cache-store-value check-header \
             choose cors cross-domain find-and-replace forward-request include-fragment \
             invoke-dapr-binding ip-filter json-to-xml jsonp limit-concurrency log-to-eventhub \
             azure-openai-emit-token-metric llm-emit-token-metric azure-openai-token-limit \
             llm-token-limit mock-response proxy publish-to-dapr quota quota-by-key rate-limit \
             rate-limit-by-key redirect-content-urls retry return-response rewrite-uri \
             send-one-way-request send-request set-backend-service set-body set-header set-method \
             set-query-parameter set-status set-variable emit-metric trace \
             validate-client-certificate validate-content validate-headers validate-azure-ad-token \
             validate-jwt validate-parameters validate-status-code wait xml-to-json"
        );
        let sections = |name: &str| CATALOGUE.iter().find(|(n, _)| *n == name).map(|(_, s)| *s);
        assert_eq!(sections("forward-request"), Some(&[Backend, OnError][..]));
        assert_eq!(sections("cache-store"), Some(&[Outbound][..]));
        assert_eq!(sections("wait"), Some(&[Inbound, Backend, Outbound][..]));
    }

    /// A step is named after the element it was compiled from, also where one variant serves
    /// two elements.
    #[test]
    fn steps_are_named_after_their_element() {
        for (xml, name) in [
            (
                r#"<quota-by-key calls="5" renewal-period="300" counter-key="k" />"#,
                "quota-by-key",
            ),
            (
                r#"<rate-limit calls="5" renewal-period="60" />"#,
                "rate-limit",
            ),
            (
                r#"<set-header name="x" exists-action="delete" />"#,
                "set-header",
            ),
            ("<base />", "base"),
        ] {
            let doc = format!("<policies><inbound>{xml}</inbound></policies>");
            let (compiled, diags) = crate::compile::compile(
                &doc,
                crate::Scope::Product,
                &crate::NoNamedValues,
                crate::Mode::Strict,
            );
            let compiled = compiled.unwrap_or_else(|| panic!("{xml}: {diags:?}"));
            let first = &compiled.sections[Section::Inbound.index()][0];
            assert_eq!(first.name(), name);
        }
    }

    /// An Azure policy this gateway does not run is refused where it stands, with why and what
    /// to use instead, not with the list of known policies; an unknown element still gets the
    /// list.
    #[test]
    fn unsupported_azure_policies_say_why_and_what_instead() {
        let errors = |inner: &str| {
            let doc = format!("<policies>\n<inbound>\n  {inner}\n</inbound>\n</policies>");
            let (compiled, diags) = crate::compile::compile(
                &doc,
                crate::Scope::Api,
                &crate::NoNamedValues,
                crate::Mode::Strict,
            );
            assert!(compiled.is_none(), "{inner} compiled");
            diags
        };
        for (name, why) in UNSUPPORTED {
            assert!(
                CATALOGUE.iter().all(|(n, _)| n != name),
                "{name} is both supported and not"
            );
            assert!(
                why.contains("; ") && !why.ends_with('.'),
                "{name}: one sentence, why; what instead"
            );
            let diags = errors(&format!("<{name} />"));
            assert_eq!(diags.len(), 1, "{diags:?}");
            assert_eq!((diags[0].line, diags[0].column), (3, 3));
            assert_eq!(
                diags[0].message,
                format!("<{name}> is not supported by this gateway: {why}")
            );
            assert!(!diags[0].message.contains("this gateway supports:"));
        }
        let diags = errors("<no-such-policy />");
        assert!(diags[0].message.starts_with(
            "unknown policy <no-such-policy>; this gateway supports: authentication-basic"
        ));
    }
}
