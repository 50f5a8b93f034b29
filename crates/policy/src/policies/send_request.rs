//! `<send-request mode="new|copy" response-variable-name="v" timeout="60" ignore-error="false">`
//! and `<send-one-way-request mode timeout>`, each with `<set-url>`, `<set-method>`,
//! `<set-header>`, `<set-body>`, `<authentication-managed-identity>` and `<proxy>` inside: a
//! request to another service, not the API's backend.
//!
//! `send-request` waits for the answer and stores it in the variable, where expressions read it
//! as `((IResponse)context.Variables["v"]).StatusCode`, `.Headers`, `.Body.As<JObject>()`, and
//! `return-response response-variable-name="v"` can answer with it. A failure (no connection,
//! timeout) goes to `on-error`, or with `ignore-error="true"` leaves `null` in the variable.
//! `send-one-way-request` sends and goes on without waiting.
//!
//! `mode="copy"` starts from the current request: its method, its URL as the backend would see
//! it (the backend service URL with the rewritten path and query), its headers and body (no
//! body in outbound, as in Azure); the children then change it. `mode="new"` starts empty and
//! needs `<set-url>` and `<set-method>`. The gateway sends over `http` or `https` (trusting
//! the OS roots, `--trusted-ca` and the gateway's CA certificates); any other URL is refused when
//! the policy is saved, or fails when an expression produces one.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};

use super::set_header::{self, SetHeader};
use super::{AuthenticationManagedIdentity, Proxy, SetBody};
use crate::compile::{Cx, Section};
use crate::exchange::Exchange;
use crate::expr::Value;
use crate::run::{Budget, Flow, Io, OutboundRequest, PolicyError};
use crate::text::PolicyText;
use crate::xml::Element;

/// Azure's default: 60 seconds.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest timeout accepted (as for `forward-request`): four hours.
const MAX_TIMEOUT_SECS: u64 = 240 * 60;

#[derive(Debug, Clone)]
pub struct SendRequest {
    one_way: bool,
    /// `new` or `copy` (or an expression giving one).
    mode: PolicyText,
    variable: Option<PolicyText>,
    timeout: Option<PolicyText>,
    ignore_error: bool,
    url: Option<PolicyText>,
    method: Option<Method>,
    headers: Vec<SetHeader>,
    body: Option<SetBody>,
    /// `<authentication-managed-identity>`: a token for the request (applied after the headers).
    identity: Option<AuthenticationManagedIdentity>,
    /// `<proxy>`: the HTTP proxy the request goes through.
    proxy: Option<Proxy>,
    /// In outbound and on-error, `copy` leaves the body out.
    copies_body: bool,
}

/// A request ready to go, and where its answer goes.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub request: OutboundRequest,
    pub variable: String,
    pub ignore_error: bool,
}

fn check_url(cx: &mut Cx<'_>, el: &Element, url: &str) -> bool {
    let lower = url.trim().to_ascii_lowercase();
    let absolute = lower.starts_with("http://") || lower.starts_with("https://");
    if !absolute || url.trim().parse::<http::Uri>().is_err() {
        cx.error(
            el.pos,
            format!("'{url}' is not an absolute http:// or https:// URL"),
        );
        return false;
    }
    true
}

impl SendRequest {
    pub fn name(&self) -> &'static str {
        if self.one_way {
            "send-one-way-request"
        } else {
            "send-request"
        }
    }

    pub fn compile(el: &Element, cx: &mut Cx<'_>, one_way: bool) -> Option<Self> {
        if one_way {
            cx.allow_attrs(el, &["mode", "timeout"]);
        } else {
            cx.allow_attrs(
                el,
                &["mode", "response-variable-name", "timeout", "ignore-error"],
            );
        }
        cx.allow_children(
            el,
            &[
                "set-url",
                "set-method",
                "set-header",
                "set-body",
                "authentication-certificate",
                "authentication-managed-identity",
                "proxy",
            ],
        );
        let mut ok = true;
        let mode = cx
            .opt_text(el, "mode")
            .unwrap_or_else(|| PolicyText::literal("new"));
        let literal_mode = mode.as_literal().map(|m| m.trim().to_ascii_lowercase());
        if let Some(m) = &literal_mode
            && m != "new"
            && m != "copy"
        {
            let pos = el.attr("mode").map_or(el.pos, |a| a.pos);
            cx.error(pos, format!("'mode' must be new or copy, not '{m}'"));
            ok = false;
        }
        let variable = if one_way {
            None
        } else {
            match cx.req_text(el, "response-variable-name") {
                Some(v) => Some(v),
                None => return None,
            }
        };
        let timeout = cx.opt_text(el, "timeout");
        if let Some(lit) = timeout.as_ref().and_then(PolicyText::as_literal) {
            // Azure's own examples write `timeout="60 sec"`.
            let n = lit.trim().trim_end_matches("sec").trim();
            if !matches!(n.parse::<u64>(), Ok(n) if (1..=MAX_TIMEOUT_SECS).contains(&n)) {
                let pos = el.attr("timeout").map_or(el.pos, |a| a.pos);
                cx.error(
                    pos,
                    format!("'timeout' must be a whole number of seconds from 1 to {MAX_TIMEOUT_SECS}, not '{lit}'"),
                );
                ok = false;
            }
        }
        let timeout = timeout.map(|t| match t.as_literal() {
            Some(lit) => PolicyText::literal(lit.trim().trim_end_matches("sec").trim()),
            None => t,
        });
        let ignore_error = !one_way && cx.bool_attr(el, "ignore-error", false);

        // The children describe a request, whatever section this is in.
        let section = cx.section;
        cx.section = Section::Inbound;
        let mut url = None;
        let mut method = None;
        let mut headers = Vec::new();
        let mut body = None;
        let mut identity = None;
        let mut proxy = None;
        for child in el.elements() {
            match child.name.as_str() {
                "set-url" => {
                    cx.allow_attrs(child, &[]);
                    match cx.content(child) {
                        Some(t) => {
                            if let Some(lit) = t.as_literal() {
                                ok &= check_url(cx, child, lit);
                            }
                            url = Some(t);
                        }
                        None => ok = false,
                    }
                }
                "set-method" => {
                    cx.allow_attrs(child, &[]);
                    match cx.content(child) {
                        Some(PolicyText::Literal(m)) => {
                            match Method::from_bytes(m.trim().to_ascii_uppercase().as_bytes()) {
                                Ok(m) if !m.as_str().is_empty() => method = Some(m),
                                _ => {
                                    cx.error(child.pos, format!("'{m}' is not an HTTP method"));
                                    ok = false;
                                }
                            }
                        }
                        Some(PolicyText::Expr(_)) => {
                            cx.error(
                                child.pos,
                                format!(
                                    "<set-method> of <{}> does not accept an expression",
                                    el.name
                                ),
                            );
                            ok = false;
                        }
                        None => ok = false,
                    }
                }
                "set-header" => match SetHeader::compile(child, cx) {
                    Some(h) => headers.push(h),
                    None => ok = false,
                },
                "set-body" => match SetBody::compile(child, cx) {
                    Some(b) => body = Some(b),
                    None => ok = false,
                },
                "authentication-managed-identity" => {
                    match AuthenticationManagedIdentity::compile(child, cx) {
                        Some(i) => identity = Some(i),
                        None => ok = false,
                    }
                }
                "proxy" => match Proxy::compile(child, cx) {
                    Some(p) => proxy = Some(p),
                    None => ok = false,
                },
                other => {
                    cx.error(
                        child.pos,
                        format!(
                            "<{other}> inside <{}> is not supported by this gateway",
                            el.name
                        ),
                    );
                    ok = false;
                }
            }
        }
        cx.section = section;
        if literal_mode.as_deref() == Some("new") {
            if url.is_none() {
                cx.error(
                    el.pos,
                    format!("<{}> with mode=\"new\" needs <set-url>", el.name),
                );
                ok = false;
            }
            if method.is_none() {
                cx.error(
                    el.pos,
                    format!("<{}> with mode=\"new\" needs <set-method>", el.name),
                );
                ok = false;
            }
        }
        if !ok {
            return None;
        }
        Some(Self {
            one_way,
            mode,
            variable,
            timeout,
            ignore_error,
            url,
            method,
            headers,
            body,
            identity,
            proxy,
            copies_body: !matches!(section, Section::Outbound | Section::OnError),
        })
    }

    pub fn texts(&self) -> Vec<&PolicyText> {
        let mut t: Vec<&PolicyText> = vec![&self.mode];
        t.extend(self.variable.iter());
        t.extend(self.timeout.iter());
        t.extend(self.url.iter());
        t.extend(self.headers.iter().flat_map(SetHeader::texts));
        t.extend(self.body.iter().map(|b| &b.body));
        t.extend(
            self.identity
                .iter()
                .flat_map(AuthenticationManagedIdentity::texts),
        );
        t.extend(self.proxy.iter().flat_map(Proxy::texts));
        t
    }

    /// Whether it copies the request body (so the pipeline must buffer it first).
    pub fn copies_request_body(&self) -> bool {
        self.copies_body
            && self
                .mode
                .as_literal()
                .is_none_or(|m| m.trim().eq_ignore_ascii_case("copy"))
    }

    /// Builds the request from the exchange as it is now.
    pub(crate) fn prepare(
        &self,
        ex: &Exchange,
        budget: &mut Budget,
    ) -> Result<Prepared, PolicyError> {
        let mode = self.mode.eval(ex, budget)?.trim().to_ascii_lowercase();
        let copy = match mode.as_str() {
            "copy" => true,
            "new" => false,
            other => {
                return Err(PolicyError::runtime(
                    "ExpressionValueEvaluationFailure",
                    format!("'mode' must be new or copy, not '{other}'"),
                ));
            }
        };
        let (mut method, mut url, mut headers, mut body) = if copy {
            let mut headers = ex.request.headers.clone();
            for h in [
                http::header::HOST,
                http::header::CONTENT_LENGTH,
                http::header::TRANSFER_ENCODING,
                http::header::CONNECTION,
            ] {
                headers.remove(h);
            }
            let body = if self.copies_body {
                ex.request.body.clone().unwrap_or_default()
            } else {
                Bytes::new()
            };
            (
                Some(ex.request.method.clone()),
                Some(backend_url(ex)),
                headers,
                body,
            )
        } else {
            (None, None, HeaderMap::new(), Bytes::new())
        };
        if let Some(m) = &self.method {
            method = Some(m.clone());
        }
        if let Some(u) = &self.url {
            url = Some(u.eval(ex, budget)?.trim().to_owned());
        }
        let (Some(method), Some(url)) = (method, url) else {
            return Err(PolicyError::runtime(
                "ConfigurationError",
                format!(
                    "<{}> with mode=\"new\" needs <set-url> and <set-method>",
                    self.name()
                ),
            ));
        };
        let lower = url.to_ascii_lowercase();
        if !lower.starts_with("http://") && !lower.starts_with("https://") {
            return Err(PolicyError::send_failed(
                "BackendConnectionFailure",
                format!("'{url}' is not an absolute http:// or https:// URL"),
            ));
        }
        for h in &self.headers {
            let mut values = Vec::with_capacity(h.values.len());
            for v in &h.values {
                let text = v.eval(ex, budget)?;
                values.push(HeaderValue::from_str(&text).map_err(|_| {
                    PolicyError::runtime(
                        "InvalidHeaderValue",
                        format!("the value for header '{}' is not valid", h.name),
                    )
                })?);
            }
            set_header::apply(&mut headers, &h.name, h.action, values);
        }
        if let Some(b) = &self.body {
            body = Bytes::from(b.body.eval(ex, budget)?.into_owned());
        }
        let timeout = match &self.timeout {
            Some(t) => {
                let text = t.eval(ex, budget)?;
                match text.trim().trim_end_matches("sec").trim().parse::<u64>() {
                    Ok(n) if (1..=MAX_TIMEOUT_SECS).contains(&n) => Duration::from_secs(n),
                    _ => {
                        return Err(PolicyError::runtime(
                            "ExpressionValueEvaluationFailure",
                            format!("'timeout' must be a whole number of seconds, not '{text}'"),
                        ));
                    }
                }
            }
            None => DEFAULT_SEND_TIMEOUT,
        };
        let variable = match &self.variable {
            Some(v) => v.eval(ex, budget)?.into_owned(),
            None => String::new(),
        };
        let proxy = match &self.proxy {
            Some(p) => Some(p.settings(ex, budget)?),
            None => None,
        };
        Ok(Prepared {
            request: OutboundRequest {
                method,
                url,
                headers,
                body,
                timeout,
                proxy,
            },
            variable,
            ignore_error: self.ignore_error,
        })
    }

    /// [`Self::prepare`], then authenticates the request when the policy says so (which may
    /// wait for the gateway's token provider).
    pub(crate) async fn prepare_authenticated<I: Io>(
        &self,
        ex: &mut Exchange,
        io: &mut I,
        budget: &mut Budget,
    ) -> Result<Prepared, PolicyError> {
        let mut prepared = self.prepare(ex, budget)?;
        if let Some(identity) = &self.identity {
            identity
                .authorize(ex, io, budget, &mut prepared.request.headers)
                .await?;
        }
        Ok(prepared)
    }

    pub async fn run<I: Io>(
        &self,
        ex: &mut Exchange,
        io: &mut I,
        budget: &mut Budget,
    ) -> Result<Flow, PolicyError> {
        let prepared = self.prepare_authenticated(ex, io, budget).await?;
        if self.one_way {
            io.send_detached(prepared.request);
            return Ok(Flow::Continue);
        }
        let answer = io.send(prepared.request).await;
        store(ex, &prepared.variable, prepared.ignore_error, answer)?;
        Ok(Flow::Continue)
    }
}

/// Puts an answer in its variable: the response, or `null` for an ignored failure.
pub(crate) fn store(
    ex: &mut Exchange,
    variable: &str,
    ignore_error: bool,
    answer: Result<crate::expr::HttpResponse, PolicyError>,
) -> Result<(), PolicyError> {
    let value = match answer {
        Ok(r) => Value::http_response(r),
        Err(e) if ignore_error => {
            tracing::debug!(reason = %e.reason, message = %e.message, "send-request failed; ignored");
            Value::Null
        }
        Err(e) => return Err(e),
    };
    ex.variables.insert(variable.to_owned(), value);
    Ok(())
}

/// The URL the backend would get for the request as it is now.
fn backend_url(ex: &Exchange) -> String {
    let base = ex.backend_url.as_deref().or(ex.info.service_url.as_deref());
    let Some(base) = base else {
        return ex.request_url();
    };
    let mut url = base.trim_end_matches('/').to_owned();
    url.push_str(&ex.request.path);
    if ex.request.path.is_empty() {
        url.push('/');
    }
    if let Some(q) = ex.request.query.as_deref().filter(|q| !q.is_empty()) {
        url.push('?');
        url.push_str(q);
    }
    url
}

/// Response headers as an [`crate::expr::HttpResponse`] keeps them.
pub fn header_list(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v): (&HeaderName, &HeaderValue)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests;
