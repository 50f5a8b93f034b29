//! `<cors allow-credentials="false" terminate-unmatched-request="true">` with
//! `<allowed-origins>`, `<allowed-methods preflight-result-max-age="…">`, `<allowed-headers>`
//! and `<expose-headers>`: cross-origin resource sharing for browser clients.
//!
//! Two halves, as in Azure:
//! - a preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is answered by
//!   the pipeline before anything else runs ([`preflight`]): only the `cors` policies that are
//!   direct children of `inbound` are evaluated, in order, and nothing reaches the backend. The
//!   gateway also routes preflights for paths no operation declares `OPTIONS` for here. An
//!   operation that declares `OPTIONS` itself gets no preflight handling (its policies run);
//! - any other request with an `Origin` runs the policy as a step ([`Cors::run`]): a matching
//!   origin adds `Access-Control-Allow-Origin` (and credentials and exposed headers) to
//!   whatever response the client gets; a `GET` or `HEAD` from an origin that does not match
//!   gets an empty `200` when `terminate-unmatched-request` is true.
//!
//! Origins are compared as scheme, host and port (80 for `http`, 443 for `https` when
//! omitted), without case. `allow-credentials="true"` with the origin `*` is refused when the
//! policy is saved, since browsers reject it; when an expression turns credentials on for `*`
//! at run time, the credentials header is left out.

use http::header::{self, HeaderName, HeaderValue};
use http::{Method, StatusCode};

use crate::compile::Cx;
use crate::exchange::{Exchange, Response};
use crate::run::{Budget, Flow, PolicyError};
use crate::text::PolicyText;
use crate::xml::{Element, Pos};

const REQUEST_METHOD: HeaderName = HeaderName::from_static("access-control-request-method");
const REQUEST_HEADERS: HeaderName = HeaderName::from_static("access-control-request-headers");

#[derive(Debug, Clone, PartialEq, Eq)]
enum Origins {
    Any,
    /// Normalised `scheme://host:port`.
    List(Vec<String>),
}

#[derive(Debug, Clone)]
enum Methods {
    /// No `<allowed-methods>`: `GET` and `POST`.
    Default,
    Any,
    List(Vec<PolicyText>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Names {
    Any,
    /// Lower-cased header names.
    List(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct Cors {
    origins: Origins,
    methods: Methods,
    max_age: Option<PolicyText>,
    headers: Names,
    /// The `Access-Control-Expose-Headers` value, joined once.
    expose: Option<HeaderValue>,
    allow_credentials: PolicyText,
    terminate_unmatched: PolicyText,
}

/// Headers a browser may always send (CORS-safelisted names).
const SAFELISTED: [&str; 3] = ["accept", "accept-language", "content-language"];

/// `scheme://host:port`, lower-cased, with the scheme's default port; `None` when it isn't an
/// origin of that shape (`null`, say).
fn normalise(origin: &str) -> Option<String> {
    let (scheme, rest) = origin.trim().split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let authority = authority.to_ascii_lowercase();
    let has_port = match authority.rfind(':') {
        // `[::1]` alone has colons but no port.
        Some(i) => !authority[i..].contains(']'),
        None => false,
    };
    if has_port {
        return Some(format!("{scheme}://{authority}"));
    }
    let port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return Some(format!("{scheme}://{authority}")),
    };
    Some(format!("{scheme}://{authority}:{port}"))
}

/// A boolean attribute that may be an expression; a literal must be true or false.
fn bool_text(cx: &mut Cx<'_>, el: &Element, name: &str, default: bool) -> Option<PolicyText> {
    let Some(t) = cx.opt_text(el, name) else {
        return el
            .attr(name)
            .is_none()
            .then(|| PolicyText::literal(if default { "true" } else { "false" }));
    };
    if let Some(lit) = t.as_literal() {
        let v = lit.trim().to_ascii_lowercase();
        if v != "true" && v != "false" {
            let pos = el.attr(name).map_or(el.pos, |a| a.pos);
            cx.error(pos, format!("'{name}' must be true or false, not '{lit}'"));
            return None;
        }
        return Some(PolicyText::literal(&v));
    }
    Some(t)
}

/// The literal text of each `<child>` of `el` (at least one), named values substituted, with
/// where each is.
fn literal_children(cx: &mut Cx<'_>, el: &Element, child: &str) -> Option<Vec<(String, Pos)>> {
    cx.allow_attrs(el, &[]);
    cx.allow_children(el, &[child]);
    let mut out = Vec::new();
    let mut ok = true;
    for c in el.elements().filter(|c| c.name == child) {
        cx.allow_attrs(c, &[]);
        match cx.content(c) {
            Some(PolicyText::Literal(s)) if !s.trim().is_empty() => {
                out.push((s.trim().to_owned(), c.pos));
            }
            Some(PolicyText::Literal(_)) => {
                cx.error(c.pos, format!("<{child}> must not be empty"));
                ok = false;
            }
            Some(PolicyText::Expr(_)) => {
                cx.error(c.pos, format!("<{child}> does not accept an expression"));
                ok = false;
            }
            None => ok = false,
        }
    }
    if out.is_empty() && ok {
        cx.error(
            el.pos,
            format!("<{}> needs at least one <{child}>", el.name),
        );
        return None;
    }
    ok.then_some(out)
}

fn header_names(cx: &mut Cx<'_>, el: &Element) -> Option<Names> {
    let names = literal_children(cx, el, "header")?;
    if names.iter().any(|(n, _)| n == "*") {
        return Some(Names::Any);
    }
    let mut ok = true;
    for (n, pos) in &names {
        if HeaderName::from_bytes(n.as_bytes()).is_err() {
            cx.error(*pos, format!("'{n}' is not a valid header name"));
            ok = false;
        }
    }
    ok.then(|| Names::List(names.iter().map(|(n, _)| n.to_ascii_lowercase()).collect()))
}

impl Cors {
    pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Self> {
        cx.allow_attrs(el, &["allow-credentials", "terminate-unmatched-request"]);
        cx.allow_children(
            el,
            &[
                "allowed-origins",
                "allowed-methods",
                "allowed-headers",
                "expose-headers",
            ],
        );
        let mut ok = true;
        for name in [
            "allowed-origins",
            "allowed-methods",
            "allowed-headers",
            "expose-headers",
        ] {
            if let Some(second) = el.elements().filter(|c| c.name == name).nth(1) {
                cx.error(second.pos, format!("<cors> has more than one <{name}>"));
                ok = false;
            }
        }
        let child = |name: &str| el.elements().find(|c| c.name == name);

        let origins = match child("allowed-origins") {
            None => {
                cx.error(
                    el.pos,
                    "<cors> needs <allowed-origins> with at least one <origin>",
                );
                None
            }
            Some(o) => {
                let list = literal_children(cx, o, "origin");
                match list {
                    Some(list) if list.iter().any(|(o, _)| o == "*") => {
                        if list.len() > 1 {
                            cx.error(
                                o.pos,
                                "<allowed-origins> holds either the single origin '*' or a list of origins",
                            );
                            None
                        } else {
                            Some(Origins::Any)
                        }
                    }
                    Some(list) => {
                        let mut out = Vec::new();
                        for (origin, pos) in &list {
                            match normalise(origin) {
                                Some(n)
                                    if n.starts_with("http://") || n.starts_with("https://") =>
                                {
                                    out.push(n);
                                }
                                _ => {
                                    cx.error(*pos, format!("origin '{origin}' must be '*' or a URL with a scheme, host and optional port, such as https://contoso.com"));
                                    ok = false;
                                }
                            }
                        }
                        Some(Origins::List(out))
                    }
                    None => None,
                }
            }
        };

        let mut max_age = None;
        let methods = match child("allowed-methods") {
            None => Some(Methods::Default),
            Some(m) => {
                cx.allow_attrs(m, &["preflight-result-max-age"]);
                cx.allow_children(m, &["method"]);
                max_age = cx.opt_text(m, "preflight-result-max-age");
                if let Some(lit) = max_age.as_ref().and_then(PolicyText::as_literal)
                    && lit.trim().parse::<u32>().is_err()
                {
                    let pos = m.attr("preflight-result-max-age").map_or(m.pos, |a| a.pos);
                    cx.error(
                        pos,
                        format!("'preflight-result-max-age' must be a whole number of seconds, not '{lit}'"),
                    );
                    ok = false;
                }
                let mut list = Vec::new();
                let mut any = false;
                for method in m.elements().filter(|c| c.name == "method") {
                    cx.allow_attrs(method, &[]);
                    let Some(t) = cx.content(method) else {
                        ok = false;
                        continue;
                    };
                    if let Some(lit) = t.as_literal() {
                        let lit = lit.trim();
                        if lit == "*" {
                            any = true;
                            continue;
                        }
                        if lit.is_empty() || Method::from_bytes(lit.as_bytes()).is_err() {
                            cx.error(method.pos, format!("'{lit}' is not an HTTP method"));
                            ok = false;
                            continue;
                        }
                        list.push(PolicyText::literal(lit));
                    } else {
                        list.push(t);
                    }
                }
                if !any && list.is_empty() && ok {
                    cx.error(m.pos, "<allowed-methods> needs at least one <method>");
                    ok = false;
                }
                Some(if any {
                    Methods::Any
                } else {
                    Methods::List(list)
                })
            }
        };

        // Optional in Azure: without it, a preflight may ask for no headers.
        let headers = match child("allowed-headers") {
            None => Some(Names::List(Vec::new())),
            Some(h) => header_names(cx, h),
        };

        let expose = match child("expose-headers") {
            None => None,
            Some(h) => match header_names(cx, h) {
                Some(Names::Any) => Some(HeaderValue::from_static("*")),
                Some(Names::List(list)) => HeaderValue::from_str(&list.join(", ")).ok(),
                None => {
                    ok = false;
                    None
                }
            },
        };

        let allow_credentials = bool_text(cx, el, "allow-credentials", false);
        let terminate_unmatched = bool_text(cx, el, "terminate-unmatched-request", true);
        if origins == Some(Origins::Any)
            && allow_credentials
                .as_ref()
                .and_then(PolicyText::as_literal)
                .is_some_and(|v| v == "true")
        {
            let pos = el.attr("allow-credentials").map_or(el.pos, |a| a.pos);
            cx.error(
                pos,
                "allow-credentials=\"true\" cannot be used with the origin '*': browsers refuse credentials for any origin; list the allowed origins instead",
            );
            ok = false;
        }
        if !ok {
            return None;
        }
        Some(Self {
            origins: origins?,
            methods: methods?,
            max_age,
            headers: headers?,
            expose,
            allow_credentials: allow_credentials?,
            terminate_unmatched: terminate_unmatched?,
        })
    }

    pub fn texts(&self) -> Vec<&PolicyText> {
        let mut t = vec![&self.allow_credentials, &self.terminate_unmatched];
        t.extend(self.max_age.iter());
        if let Methods::List(list) = &self.methods {
            t.extend(list.iter());
        }
        t
    }

    /// The value of `Access-Control-Allow-Origin` for `origin`, if it is allowed.
    fn allow_origin(&self, origin: &str) -> Option<AllowOrigin> {
        match &self.origins {
            Origins::Any => Some(AllowOrigin::Any),
            Origins::List(list) => {
                let n = normalise(origin)?;
                list.contains(&n).then_some(AllowOrigin::Echo)
            }
        }
    }

    fn method_allowed(
        &self,
        method: &str,
        ex: &Exchange,
        budget: &mut Budget,
    ) -> Result<bool, PolicyError> {
        match &self.methods {
            Methods::Any => Ok(true),
            Methods::Default => {
                Ok(method.eq_ignore_ascii_case("GET") || method.eq_ignore_ascii_case("POST"))
            }
            Methods::List(list) => {
                for m in list {
                    if m.eval(ex, budget)?.trim().eq_ignore_ascii_case(method) {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
        }
    }

    fn headers_allowed(&self, requested: &str) -> bool {
        let Names::List(allowed) = &self.headers else {
            return true;
        };
        requested
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .all(|h| {
                let h = h.to_ascii_lowercase();
                SAFELISTED.contains(&h.as_str()) || allowed.contains(&h)
            })
    }

    /// Adds the CORS headers of an allowed origin to `headers`.
    fn allow(
        &self,
        headers: &mut http::HeaderMap,
        origin: &HeaderValue,
        how: AllowOrigin,
        credentials: bool,
    ) {
        // Browsers refuse `*` with credentials: echo the origin only for listed origins.
        let credentials = credentials && how == AllowOrigin::Echo;
        match how {
            AllowOrigin::Any => {
                headers.insert(
                    header::ACCESS_CONTROL_ALLOW_ORIGIN,
                    HeaderValue::from_static("*"),
                );
            }
            AllowOrigin::Echo => {
                headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
                headers.append(header::VARY, HeaderValue::from_static("Origin"));
            }
        }
        if credentials {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }

    /// A request that is not a preflight: allowed origins get the CORS response headers.
    pub fn run(&self, ex: &mut Exchange, budget: &mut Budget) -> Result<Flow, PolicyError> {
        let Some(origin) = ex.request.headers.get(header::ORIGIN).cloned() else {
            return Ok(Flow::Continue);
        };
        if ex
            .response_headers
            .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        {
            // An earlier cors policy (a parent scope's) has answered for this request.
            return Ok(Flow::Continue);
        }
        let allowed = origin.to_str().ok().and_then(|o| self.allow_origin(o));
        match allowed {
            Some(how) => {
                let credentials = self.allow_credentials.eval_bool(ex, budget)?;
                let mut headers = std::mem::take(&mut ex.response_headers);
                self.allow(&mut headers, &origin, how, credentials);
                if let Some(expose) = &self.expose {
                    headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
                }
                ex.response_headers = headers;
                Ok(Flow::Continue)
            }
            None => {
                let simple = matches!(ex.request.method, Method::GET | Method::HEAD);
                if simple && self.terminate_unmatched.eval_bool(ex, budget)? {
                    ex.response = Some(Response::new(StatusCode::OK));
                    return Ok(Flow::Return);
                }
                Ok(Flow::Continue)
            }
        }
    }

    /// The answer to a preflight, or `None` when it does not match this policy.
    fn answer(&self, ex: &Exchange, budget: &mut Budget) -> Result<Option<Response>, PolicyError> {
        let headers = &ex.request.headers;
        let (Some(origin), Some(method)) =
            (headers.get(header::ORIGIN), headers.get(REQUEST_METHOD))
        else {
            return Ok(None);
        };
        let Some(how) = origin.to_str().ok().and_then(|o| self.allow_origin(o)) else {
            return Ok(None);
        };
        let Ok(method_text) = method.to_str() else {
            return Ok(None);
        };
        if !self.method_allowed(method_text.trim(), ex, budget)? {
            return Ok(None);
        }
        let requested: Vec<&HeaderValue> = headers.get_all(REQUEST_HEADERS).iter().collect();
        let requested_text = requested
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(",");
        if !self.headers_allowed(&requested_text) {
            return Ok(None);
        }
        let credentials = self.allow_credentials.eval_bool(ex, budget)?;
        let max_age = match &self.max_age {
            Some(t) => t.eval_u64(ex, budget)?,
            None => 0,
        };
        let mut r = Response::new(StatusCode::OK);
        self.allow(&mut r.headers, origin, how, credentials);
        r.headers
            .insert(header::ACCESS_CONTROL_ALLOW_METHODS, method.clone());
        if !requested_text.trim().is_empty()
            && let Ok(v) = HeaderValue::from_str(&requested_text)
        {
            r.headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
        }
        if max_age > 0 {
            r.headers
                .insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(max_age));
        }
        Ok(Some(r))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AllowOrigin {
    /// `*`.
    Any,
    /// The request's own `Origin`.
    Echo,
}

/// Whether the request is a CORS preflight that the pipeline's `cors` policies answer: an
/// `OPTIONS` with `Origin` and `Access-Control-Request-Method`, for an operation that does not
/// declare `OPTIONS` itself.
pub fn is_preflight(ex: &Exchange) -> bool {
    ex.request.method == Method::OPTIONS
        && ex.request.headers.contains_key(header::ORIGIN)
        && ex.request.headers.contains_key(REQUEST_METHOD)
        && !ex.info.operation_method.eq_ignore_ascii_case("OPTIONS")
}

/// Answers a preflight with the first matching policy of `policies` (the direct children of
/// `inbound`, in order). A policy that does not match ends the search with an empty `200`
/// when its `terminate-unmatched-request` holds, else the next one is tried; with none
/// matching, the answer is an empty `200` too.
pub fn preflight(
    policies: &[Cors],
    ex: &mut Exchange,
    budget: &mut Budget,
) -> Result<(), PolicyError> {
    for p in policies {
        if let Some(r) = p.answer(ex, budget)? {
            ex.response = Some(r);
            return Ok(());
        }
        if p.terminate_unmatched.eval_bool(ex, budget)? {
            break;
        }
    }
    ex.response = Some(Response::new(StatusCode::OK));
    Ok(())
}

#[cfg(test)]
mod tests;
