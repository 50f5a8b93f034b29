//! The built-in policies, one module each: how the element is checked and compiled, and what it
//! does to a request. Adding a policy means a module here plus one line in [`compile`] and one
//! in [`Step::run`].

mod check_header;
mod choose;
mod forward_request;
mod ip_filter;
mod rate_limit;
mod return_response;
mod rewrite_uri;
mod set_backend_service;
mod set_body;
mod set_header;
mod set_method;
mod set_query_parameter;
mod set_status;
mod set_variable;
#[cfg(test)]
pub(crate) mod testkit;

pub use check_header::CheckHeader;
pub use choose::Choose;
pub use forward_request::{DEFAULT_TIMEOUT, ForwardRequest};
pub use ip_filter::IpFilter;
pub use rate_limit::RateLimit;
pub use return_response::ReturnResponse;
pub use rewrite_uri::RewriteUri;
pub use set_backend_service::SetBackendService;
pub use set_body::SetBody;
pub use set_header::SetHeader;
pub use set_method::SetMethod;
pub use set_query_parameter::SetQueryParameter;
pub use set_status::SetStatus;
pub use set_variable::SetVariable;

use crate::compile::{Cx, Section};
use crate::exchange::Exchange;
use crate::run::{Budget, Flow, Io, PolicyError};
use crate::xml::Element;

/// One compiled policy in a section.
#[derive(Debug, Clone)]
pub enum Step {
    /// `<base/>`: the parent scope's section goes here.
    Base,
    CheckHeader(CheckHeader),
    Choose(Choose),
    ForwardRequest(ForwardRequest),
    IpFilter(IpFilter),
    RateLimit(RateLimit),
    ReturnResponse(ReturnResponse),
    RewriteUri(RewriteUri),
    SetBackendService(SetBackendService),
    SetBody(SetBody),
    SetHeader(SetHeader),
    SetMethod(SetMethod),
    SetQueryParameter(SetQueryParameter),
    SetStatus(SetStatus),
    SetVariable(SetVariable),
}

use Section::{Backend, Inbound, OnError, Outbound};

/// Every policy this gateway knows: element name and the sections it may appear in.
pub const CATALOGUE: &[(&str, &[Section])] = &[
    ("base", &[Inbound, Backend, Outbound, OnError]),
    ("check-header", &[Inbound]),
    ("choose", &[Inbound, Backend, Outbound, OnError]),
    ("forward-request", &[Backend, OnError]),
    ("ip-filter", &[Inbound]),
    ("rate-limit", &[Inbound]),
    ("rate-limit-by-key", &[Inbound]),
    ("return-response", &[Inbound, Backend, Outbound, OnError]),
    ("rewrite-uri", &[Inbound]),
    ("set-backend-service", &[Inbound, Backend]),
    ("set-body", &[Inbound, Backend, Outbound, OnError]),
    ("set-header", &[Inbound, Backend, Outbound, OnError]),
    ("set-method", &[Inbound, OnError]),
    ("set-query-parameter", &[Inbound, Backend]),
    ("set-status", &[Inbound, Backend, Outbound, OnError]),
    ("set-variable", &[Inbound, Backend, Outbound, OnError]),
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
            Step::Base
        }
        "check-header" => Step::CheckHeader(CheckHeader::compile(el, cx)?),
        "choose" => Step::Choose(Choose::compile(el, cx)?),
        "forward-request" => Step::ForwardRequest(ForwardRequest::compile(el, cx)?),
        "ip-filter" => Step::IpFilter(IpFilter::compile(el, cx)?),
        "rate-limit" => Step::RateLimit(RateLimit::compile(el, cx, false)?),
        "rate-limit-by-key" => Step::RateLimit(RateLimit::compile(el, cx, true)?),
        "return-response" => Step::ReturnResponse(ReturnResponse::compile(el, cx)?),
        "rewrite-uri" => Step::RewriteUri(RewriteUri::compile(el, cx)?),
        "set-backend-service" => Step::SetBackendService(SetBackendService::compile(el, cx)?),
        "set-body" => Step::SetBody(SetBody::compile(el, cx)?),
        "set-header" => Step::SetHeader(SetHeader::compile(el, cx)?),
        "set-method" => Step::SetMethod(SetMethod::compile(el, cx)?),
        "set-query-parameter" => Step::SetQueryParameter(SetQueryParameter::compile(el, cx)?),
        "set-status" => Step::SetStatus(SetStatus::compile(el, cx)?),
        "set-variable" => Step::SetVariable(SetVariable::compile(el, cx)?),
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
            Step::CheckHeader(_) => "check-header",
            Step::Choose(_) => "choose",
            Step::ForwardRequest(_) => "forward-request",
            Step::IpFilter(_) => "ip-filter",
            Step::RateLimit(r) => r.name(),
            Step::ReturnResponse(_) => "return-response",
            Step::RewriteUri(_) => "rewrite-uri",
            Step::SetBackendService(_) => "set-backend-service",
            Step::SetBody(_) => "set-body",
            Step::SetHeader(_) => "set-header",
            Step::SetMethod(_) => "set-method",
            Step::SetQueryParameter(_) => "set-query-parameter",
            Step::SetStatus(_) => "set-status",
            Step::SetVariable(_) => "set-variable",
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
            Step::CheckHeader(p) => p.run(ex, budget),
            Step::Choose(p) => p.run(ex, io, budget).await,
            Step::ForwardRequest(p) => p.run(ex, io).await,
            Step::IpFilter(p) => Ok(p.run(ex)),
            Step::RateLimit(p) => p.run(ex, io, budget).await,
            Step::ReturnResponse(p) => p.run(ex, budget),
            Step::RewriteUri(p) => p.run(ex, budget),
            Step::SetBackendService(p) => p.run(ex, budget),
            Step::SetBody(p) => p.run(ex, budget),
            Step::SetHeader(p) => p.run(ex, budget),
            Step::SetMethod(p) => p.run(ex, budget),
            Step::SetQueryParameter(p) => p.run(ex, budget),
            Step::SetStatus(p) => p.run(ex, budget),
            Step::SetVariable(p) => p.run(ex, budget),
        };
        result.map_err(|e| e.from_policy(self.name()))
    }

    /// Whether running this step needs the whole request body in memory.
    pub fn reads_request_body(&self) -> bool {
        match self {
            Step::Choose(c) => c.any(Step::reads_request_body) || c.conditions_read_body(),
            _ => self.expressions().iter().any(|src| src.contains(".Body")),
        }
    }

    /// Whether running this step (in outbound) needs the whole response body.
    pub fn reads_response_body(&self) -> bool {
        self.reads_request_body()
    }

    /// The sources of the expressions this step evaluates (not nested steps).
    fn expressions(&self) -> Vec<&str> {
        let texts: Vec<&crate::text::PolicyText> = match self {
            Step::SetHeader(p) => p.texts(),
            Step::SetQueryParameter(p) => p.texts(),
            Step::SetVariable(p) => vec![&p.value],
            Step::SetBody(p) => vec![&p.body],
            Step::RateLimit(p) => p.texts(),
            Step::ReturnResponse(p) => p.texts(),
            Step::RewriteUri(p) => vec![&p.template],
            Step::SetBackendService(p) => p.texts(),
            Step::SetStatus(p) => p.texts(),
            Step::SetMethod(p) => vec![&p.method],
            Step::CheckHeader(_)
            | Step::Base
            | Step::Choose(_)
            | Step::ForwardRequest(_)
            | Step::IpFilter(_) => vec![],
        };
        texts.into_iter().filter_map(|t| t.source()).collect()
    }
}

/// Which message a header/body policy changes: the request before the backend, the response
/// after.
pub(crate) fn on_response(section: Section) -> bool {
    matches!(section, Section::Outbound | Section::OnError)
}
