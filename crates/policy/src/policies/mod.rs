//! The built-in policies, one module each: how the element is checked and compiled, and what it
//! does to a request. Adding a policy means a module here plus one line in [`compile`] and one
//! in [`Step::run`].

mod authentication_basic;
mod authentication_certificate;
mod cache;
mod cache_lookup;
mod cache_lookup_value;
mod cache_remove_value;
mod cache_store;
mod cache_store_value;
mod check_header;
mod choose;
mod cors;
mod emit_metric;
mod find_and_replace;
#[cfg(test)]
pub(crate) mod flowkit;
mod forward_request;
mod include_fragment;
mod ip_filter;
mod json_to_xml;
mod limit_concurrency;
mod mock_response;
mod param;
pub(crate) mod quota;
mod rate_limit;
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
mod validate_client_certificate;
pub mod validate_jwt;
mod wait;
mod xml_to_json;

pub use authentication_basic::AuthenticationBasic;
pub use authentication_certificate::AuthenticationCertificate;
pub use cache::{CacheEntry, CachedResponse, CachingType, Downstream, ResponseCacheKey};
pub use cache_lookup::CacheLookup;
pub use cache_lookup_value::CacheLookupValue;
pub use cache_remove_value::CacheRemoveValue;
pub use cache_store::CacheStore;
pub use cache_store_value::CacheStoreValue;
pub use check_header::CheckHeader;
pub use choose::Choose;
pub use cors::{Cors, is_preflight, preflight};
pub use emit_metric::{EmitMetric, EmittedMetric};
pub use find_and_replace::FindAndReplace;
pub use forward_request::{DEFAULT_TIMEOUT, ForwardRequest};
pub use include_fragment::IncludeFragment;
pub use ip_filter::IpFilter;
pub use json_to_xml::JsonToXml;
pub use limit_concurrency::LimitConcurrency;
pub use mock_response::MockResponse;
pub use quota::{Quota, QuotaCharge};
pub use rate_limit::RateLimit;
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
pub use validate_jwt::{OpenIdKeys, ValidateJwt};
pub use wait::Wait;
pub use xml_to_json::XmlToJson;

use crate::compile::{Cx, Section};
use crate::exchange::Exchange;
use crate::run::{Budget, Flow, Io, PolicyError};
use crate::xml::Element;

/// One compiled policy in a section.
#[derive(Debug, Clone)]
pub enum Step {
    /// `<base/>`: the parent scope's section goes here.
    Base,
    AuthenticationBasic(AuthenticationBasic),
    AuthenticationCertificate(AuthenticationCertificate),
    CacheLookup(CacheLookup),
    CacheLookupValue(CacheLookupValue),
    CacheRemoveValue(CacheRemoveValue),
    CacheStore(CacheStore),
    CacheStoreValue(CacheStoreValue),
    CheckHeader(CheckHeader),
    Choose(Choose),
    Cors(Box<Cors>),
    FindAndReplace(FindAndReplace),
    ForwardRequest(ForwardRequest),
    IncludeFragment(IncludeFragment),
    IpFilter(IpFilter),
    JsonToXml(JsonToXml),
    LimitConcurrency(LimitConcurrency),
    MockResponse(MockResponse),
    Quota(Box<Quota>),
    RateLimit(RateLimit),
    Retry(Box<Retry>),
    ReturnResponse(ReturnResponse),
    RewriteUri(RewriteUri),
    SendRequest(Box<SendRequest>),
    SetBackendService(SetBackendService),
    SetBody(SetBody),
    SetHeader(SetHeader),
    SetMethod(SetMethod),
    SetQueryParameter(SetQueryParameter),
    SetStatus(SetStatus),
    SetVariable(SetVariable),
    EmitMetric(EmitMetric),
    Trace(Trace),
    ValidateClientCertificate(ValidateClientCertificate),
    ValidateJwt(ValidateJwt),
    Wait(Wait),
    XmlToJson(XmlToJson),
}

use Section::{Backend, Inbound, OnError, Outbound};

/// Every policy this gateway knows: element name and the sections it may appear in.
pub const CATALOGUE: &[(&str, &[Section])] = &[
    ("base", &[Inbound, Backend, Outbound, OnError]),
    ("authentication-basic", &[Inbound]),
    ("authentication-certificate", &[Inbound]),
    ("cache-lookup", &[Inbound]),
    ("cache-lookup-value", &[Inbound, Backend, Outbound, OnError]),
    ("cache-remove-value", &[Inbound, Backend, Outbound, OnError]),
    ("cache-store", &[Outbound]),
    ("cache-store-value", &[Inbound, Backend, Outbound, OnError]),
    ("check-header", &[Inbound]),
    ("choose", &[Inbound, Backend, Outbound, OnError]),
    ("cors", &[Inbound]),
    ("find-and-replace", &[Inbound, Backend, Outbound, OnError]),
    ("forward-request", &[Backend, OnError]),
    ("include-fragment", &[Inbound, Backend, Outbound, OnError]),
    ("ip-filter", &[Inbound]),
    ("json-to-xml", &[Inbound, Outbound, OnError]),
    ("limit-concurrency", &[Inbound, Backend, Outbound, OnError]),
    ("mock-response", &[Inbound, Outbound, OnError]),
    ("quota", &[Inbound]),
    ("quota-by-key", &[Inbound]),
    ("rate-limit", &[Inbound]),
    ("rate-limit-by-key", &[Inbound]),
    ("retry", &[Inbound, Backend, Outbound, OnError]),
    ("return-response", &[Inbound, Backend, Outbound, OnError]),
    ("rewrite-uri", &[Inbound]),
    (
        "send-one-way-request",
        &[Inbound, Backend, Outbound, OnError],
    ),
    ("send-request", &[Inbound, Backend, Outbound, OnError]),
    ("set-backend-service", &[Inbound, Backend]),
    ("set-body", &[Inbound, Backend, Outbound, OnError]),
    ("set-header", &[Inbound, Backend, Outbound, OnError]),
    ("set-method", &[Inbound, OnError]),
    ("set-query-parameter", &[Inbound, Backend]),
    ("set-status", &[Inbound, Backend, Outbound, OnError]),
    ("set-variable", &[Inbound, Backend, Outbound, OnError]),
    ("emit-metric", &[Inbound, Backend, Outbound, OnError]),
    ("trace", &[Inbound, Backend, Outbound, OnError]),
    ("validate-client-certificate", &[Inbound]),
    ("validate-jwt", &[Inbound]),
    ("wait", &[Inbound, Backend, Outbound]),
    ("xml-to-json", &[Inbound, Outbound, OnError]),
];

/// Compiles one policy element, reporting problems into `cx`.
pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Step> {
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
        "authentication-basic" => Step::AuthenticationBasic(AuthenticationBasic::compile(el, cx)?),
        "authentication-certificate" => {
            Step::AuthenticationCertificate(AuthenticationCertificate::compile(el, cx)?)
        }
        "cache-lookup" => Step::CacheLookup(CacheLookup::compile(el, cx)?),
        "cache-lookup-value" => Step::CacheLookupValue(CacheLookupValue::compile(el, cx)?),
        "cache-remove-value" => Step::CacheRemoveValue(CacheRemoveValue::compile(el, cx)?),
        "cache-store" => Step::CacheStore(CacheStore::compile(el, cx)?),
        "cache-store-value" => Step::CacheStoreValue(CacheStoreValue::compile(el, cx)?),
        "check-header" => Step::CheckHeader(CheckHeader::compile(el, cx)?),
        "choose" => Step::Choose(Choose::compile(el, cx)?),
        "cors" => Step::Cors(Box::new(Cors::compile(el, cx)?)),
        "find-and-replace" => Step::FindAndReplace(FindAndReplace::compile(el, cx)?),
        "forward-request" => Step::ForwardRequest(ForwardRequest::compile(el, cx)?),
        "include-fragment" => Step::IncludeFragment(IncludeFragment::compile(el, cx)?),
        "ip-filter" => Step::IpFilter(IpFilter::compile(el, cx)?),
        "json-to-xml" => Step::JsonToXml(JsonToXml::compile(el, cx)?),
        "limit-concurrency" => Step::LimitConcurrency(LimitConcurrency::compile(el, cx)?),
        "mock-response" => Step::MockResponse(MockResponse::compile(el, cx)?),
        "quota" => Step::Quota(Box::new(Quota::compile(el, cx, false)?)),
        "quota-by-key" => Step::Quota(Box::new(Quota::compile(el, cx, true)?)),
        "rate-limit" => Step::RateLimit(RateLimit::compile(el, cx, false)?),
        "rate-limit-by-key" => Step::RateLimit(RateLimit::compile(el, cx, true)?),
        "retry" => Step::Retry(Box::new(Retry::compile(el, cx)?)),
        "return-response" => Step::ReturnResponse(ReturnResponse::compile(el, cx)?),
        "rewrite-uri" => Step::RewriteUri(RewriteUri::compile(el, cx)?),
        "send-one-way-request" => Step::SendRequest(Box::new(SendRequest::compile(el, cx, true)?)),
        "send-request" => Step::SendRequest(Box::new(SendRequest::compile(el, cx, false)?)),
        "set-backend-service" => Step::SetBackendService(SetBackendService::compile(el, cx)?),
        "set-body" => Step::SetBody(SetBody::compile(el, cx)?),
        "set-header" => Step::SetHeader(SetHeader::compile(el, cx)?),
        "set-method" => Step::SetMethod(SetMethod::compile(el, cx)?),
        "set-query-parameter" => Step::SetQueryParameter(SetQueryParameter::compile(el, cx)?),
        "set-status" => Step::SetStatus(SetStatus::compile(el, cx)?),
        "set-variable" => Step::SetVariable(SetVariable::compile(el, cx)?),
        "emit-metric" => Step::EmitMetric(EmitMetric::compile(el, cx)?),
        "trace" => Step::Trace(Trace::compile(el, cx)?),
        "validate-client-certificate" => {
            Step::ValidateClientCertificate(ValidateClientCertificate::compile(el, cx)?)
        }
        "validate-jwt" => Step::ValidateJwt(ValidateJwt::compile(el, cx)?),
        "wait" => Step::Wait(Wait::compile(el, cx)?),
        "xml-to-json" => Step::XmlToJson(XmlToJson::compile(el, cx)?),
        _ => return None,
    })
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
    pub fn name(&self) -> &'static str {
        match self {
            Step::Base => "base",
            Step::AuthenticationBasic(_) => "authentication-basic",
            Step::AuthenticationCertificate(_) => "authentication-certificate",
            Step::CacheLookup(_) => "cache-lookup",
            Step::CacheLookupValue(_) => "cache-lookup-value",
            Step::CacheRemoveValue(_) => "cache-remove-value",
            Step::CacheStore(_) => "cache-store",
            Step::CacheStoreValue(_) => "cache-store-value",
            Step::CheckHeader(_) => "check-header",
            Step::Choose(_) => "choose",
            Step::Cors(_) => "cors",
            Step::FindAndReplace(_) => "find-and-replace",
            Step::ForwardRequest(_) => "forward-request",
            Step::IncludeFragment(_) => "include-fragment",
            Step::IpFilter(_) => "ip-filter",
            Step::JsonToXml(_) => "json-to-xml",
            Step::LimitConcurrency(_) => "limit-concurrency",
            Step::MockResponse(_) => "mock-response",
            Step::Quota(q) => q.name(),
            Step::RateLimit(r) => r.name(),
            Step::Retry(_) => "retry",
            Step::ReturnResponse(_) => "return-response",
            Step::RewriteUri(_) => "rewrite-uri",
            Step::SendRequest(s) => s.name(),
            Step::SetBackendService(_) => "set-backend-service",
            Step::SetBody(_) => "set-body",
            Step::SetHeader(_) => "set-header",
            Step::SetMethod(_) => "set-method",
            Step::SetQueryParameter(_) => "set-query-parameter",
            Step::SetStatus(_) => "set-status",
            Step::SetVariable(_) => "set-variable",
            Step::EmitMetric(_) => "emit-metric",
            Step::Trace(_) => "trace",
            Step::ValidateClientCertificate(_) => "validate-client-certificate",
            Step::ValidateJwt(_) => "validate-jwt",
            Step::Wait(_) => "wait",
            Step::XmlToJson(_) => "xml-to-json",
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
            Step::AuthenticationBasic(p) => p.run(ex, budget),
            Step::AuthenticationCertificate(p) => p.run(ex, budget),
            Step::CacheLookup(p) => p.run(ex, io, budget).await,
            Step::CacheLookupValue(p) => p.run(ex, io, budget).await,
            Step::CacheRemoveValue(p) => p.run(ex, io, budget).await,
            Step::CacheStore(p) => p.run(ex, io, budget).await,
            Step::CacheStoreValue(p) => p.run(ex, io, budget).await,
            Step::CheckHeader(p) => p.run(ex, budget),
            Step::Choose(p) => p.run(ex, io, budget).await,
            Step::Cors(p) => p.run(ex, budget),
            Step::FindAndReplace(p) => p.run(ex, budget),
            Step::ForwardRequest(p) => p.run(ex, io).await,
            // The fragment's own steps name themselves in errors.
            Step::IncludeFragment(p) => return p.run(ex, io, budget).await,
            Step::IpFilter(p) => Ok(p.run(ex)),
            Step::JsonToXml(p) => p.run(ex, budget),
            Step::LimitConcurrency(p) => p.run(ex, io, budget).await,
            Step::MockResponse(p) => p.run(ex),
            Step::Quota(p) => p.run(ex, io, budget).await,
            Step::RateLimit(p) => p.run(ex, io, budget).await,
            Step::Retry(p) => p.run(ex, io, budget).await,
            Step::ReturnResponse(p) => p.run(ex, budget),
            Step::RewriteUri(p) => p.run(ex, budget),
            Step::SendRequest(p) => p.run(ex, io, budget).await,
            Step::SetBackendService(p) => p.run(ex, budget),
            Step::SetBody(p) => p.run(ex, budget),
            Step::SetHeader(p) => p.run(ex, budget),
            Step::SetMethod(p) => p.run(ex, budget),
            Step::SetQueryParameter(p) => p.run(ex, budget),
            Step::SetStatus(p) => p.run(ex, budget),
            Step::SetVariable(p) => p.run(ex, budget),
            Step::EmitMetric(p) => p.run(ex, io, budget),
            Step::Trace(p) => p.run(ex, io, budget),
            Step::ValidateClientCertificate(p) => p.run(ex),
            Step::ValidateJwt(p) => p.run(ex, io, budget).await,
            Step::Wait(p) => p.run(ex, io, budget).await,
            Step::XmlToJson(p) => p.run(ex, budget),
        };
        result.map_err(|e| e.from_policy(self.name()))
    }

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
            Step::CacheStore(_) => Some(true),
            _ => None,
        }
    }

    /// The sources of the expressions this step evaluates (not nested steps).
    fn expressions(&self) -> Vec<&str> {
        let texts: Vec<&crate::text::PolicyText> = match self {
            Step::SetHeader(p) => p.texts(),
            Step::SetQueryParameter(p) => p.texts(),
            Step::SetVariable(p) => vec![&p.value],
            Step::Trace(p) => p.texts(),
            Step::EmitMetric(p) => p.texts(),
            Step::SetBody(p) => vec![&p.body],
            Step::RateLimit(p) => p.texts(),
            Step::ReturnResponse(p) => p.texts(),
            Step::RewriteUri(p) => vec![&p.template],
            Step::SetBackendService(p) => p.texts(),
            Step::SetStatus(p) => p.texts(),
            Step::SetMethod(p) => vec![&p.method],
            Step::AuthenticationBasic(p) => p.texts(),
            Step::AuthenticationCertificate(p) => p.texts(),
            Step::CacheLookup(p) => p.texts(),
            Step::CacheLookupValue(p) => p.texts(),
            Step::CacheRemoveValue(p) => p.texts(),
            Step::CacheStore(p) => p.texts(),
            Step::CacheStoreValue(p) => p.texts(),
            Step::FindAndReplace(p) => p.texts(),
            Step::JsonToXml(p) => p.texts(),
            Step::ValidateJwt(p) => p.texts(),
            Step::XmlToJson(p) => p.texts(),
            Step::Cors(p) => p.texts(),
            Step::LimitConcurrency(p) => vec![&p.key],
            Step::Quota(p) => p.texts(),
            Step::Retry(p) => p.texts(),
            Step::SendRequest(p) => p.texts(),
            Step::Wait(p) => vec![&p.mode],
            Step::IncludeFragment(_) | Step::MockResponse(_) => vec![],
            Step::CheckHeader(_)
            | Step::Base
            | Step::Choose(_)
            | Step::ForwardRequest(_)
            | Step::IpFilter(_)
            | Step::ValidateClientCertificate(_) => vec![],
        };
        texts.into_iter().filter_map(|t| t.source()).collect()
    }
}

/// Which message a header/body policy changes: the request before the backend, the response
/// after.
pub(crate) fn on_response(section: Section) -> bool {
    matches!(section, Section::Outbound | Section::OnError)
}
