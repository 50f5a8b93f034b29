//! What the Dapr policies share (`publish-to-dapr`, `invoke-dapr-binding`): Azure's common
//! attributes (`ignore-error`, `response-variable-name`, `timeout`, `template`,
//! `content-type`) and the call to the Dapr sidecar's HTTP API. The sidecar's address comes
//! from the gateway ([`crate::run::Io::dapr_url`]): `http://localhost:3500` unless the gateway
//! is told otherwise, as in Azure.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};

use super::send_request::store;
use crate::answer::Answer;
use crate::compile::Cx;
use crate::exchange::Exchange;
use crate::run::{Budget, Io, OutboundRequest, PolicyError};
use crate::text::PolicyText;
use crate::xml::Element;

/// Azure's sidecar address.
pub const DAPR_DEFAULT_ENDPOINT: &str = "http://localhost:3500";

/// Azure's default wait for the sidecar, and the longest allowed.
const DEFAULT_TIMEOUT: u64 = 5;
const MAX_TIMEOUT: u64 = 240;

/// The attributes both Dapr policies take.
#[derive(Debug, Clone)]
pub(crate) struct DaprCall {
    policy: &'static str,
    ignore_error: bool,
    variable: Option<String>,
    timeout: Option<PolicyText>,
    /// `content-type="application/json"`: the content must be JSON.
    pub json: bool,
    /// `template="Liquid"`: the content is a Liquid template.
    pub liquid: bool,
}

/// The attribute names [`DaprCall::compile`] reads.
pub(crate) const ATTRIBUTES: [&str; 5] = [
    "ignore-error",
    "response-variable-name",
    "timeout",
    "template",
    "content-type",
];

impl DaprCall {
    pub(crate) fn compile(el: &Element, cx: &mut Cx<'_>, policy: &'static str) -> Option<Self> {
        let ignore_error = cx.bool_attr(el, "ignore-error", false);
        let variable = cx.literal(el, "response-variable-name");
        if variable.as_deref().is_some_and(|v| v.trim().is_empty()) {
            let pos = el.attr("response-variable-name").map_or(el.pos, |a| a.pos);
            cx.error(pos, "response-variable-name is empty");
            return None;
        }
        let timeout = cx.opt_text(el, "timeout");
        if let Some(lit) = timeout.as_ref().and_then(PolicyText::as_literal)
            && parse_timeout(lit).is_none()
        {
            let pos = el.attr("timeout").map_or(el.pos, |a| a.pos);
            cx.error(
                pos,
                format!(
                    "timeout must be a whole number of seconds from 1 to {MAX_TIMEOUT}, not '{lit}'"
                ),
            );
            return None;
        }
        let liquid = match cx.literal(el, "template") {
            None => false,
            Some(t) if t.trim().eq_ignore_ascii_case("liquid") => true,
            Some(t) => {
                let pos = el.attr("template").map_or(el.pos, |a| a.pos);
                cx.error(
                    pos,
                    format!("template=\"{t}\" is not known; Liquid is the only template language"),
                );
                return None;
            }
        };
        let json = match cx.literal(el, "content-type") {
            None => false,
            Some(t) if t.trim().eq_ignore_ascii_case("application/json") => true,
            Some(t) => {
                let pos = el.attr("content-type").map_or(el.pos, |a| a.pos);
                cx.error(
                    pos,
                    format!("content-type=\"{t}\" is not supported; application/json is the only one, as in Azure"),
                );
                return None;
            }
        };
        Some(Self {
            policy,
            ignore_error,
            variable: variable.map(|v| v.trim().to_owned()),
            timeout,
            json,
            liquid,
        })
    }

    pub(crate) fn texts(&self) -> Vec<&PolicyText> {
        self.timeout.iter().collect()
    }

    /// POSTs `body` to the sidecar's `path` and keeps the answer in the response variable.
    /// The sidecar's error (not 2xx) or no answer at all fails the policy unless
    /// `ignore-error`; its answer stays in the variable either way, for `on-error` to return.
    pub(crate) async fn post<I: Io>(
        &self,
        ex: &mut Exchange,
        io: &mut I,
        budget: &mut Budget,
        path: String,
        content_type: &'static str,
        body: Bytes,
    ) -> Result<(), PolicyError> {
        let timeout = match &self.timeout {
            None => Duration::from_secs(DEFAULT_TIMEOUT),
            Some(t) => {
                let text = t.eval(ex, budget)?;
                parse_timeout(&text).ok_or_else(|| {
                    PolicyError::runtime(
                        "ExpressionValueEvaluationFailure",
                        format!("timeout must be a whole number of seconds from 1 to {MAX_TIMEOUT}, not '{text}'"),
                    )
                })?
            }
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(content_type),
        );
        let request = OutboundRequest {
            method: Method::POST,
            url: io.dapr_url(&path),
            headers,
            body,
            timeout,
            proxy: None,
        };
        let answer = io.send(request).await;
        let failed = match &answer {
            Ok(r) if (200..300).contains(&r.status) => None,
            Ok(r) => Some(PolicyError::new(
                self.policy,
                "DaprRuntimeError",
                format!("the Dapr sidecar answered {} to POST {path}", r.status),
                Answer::Internal,
            )),
            Err(e) => Some(PolicyError::new(
                self.policy,
                e.reason.clone(),
                format!("the Dapr sidecar did not answer POST {path}: {}", e.message),
                Answer::Internal,
            )),
        };
        if let Some(variable) = &self.variable {
            store(ex, variable, true, answer)?;
        }
        match failed {
            Some(e) if !self.ignore_error => Err(e),
            Some(e) => {
                tracing::debug!(policy = self.policy, reason = %e.reason, message = %e.message, "Dapr call failed; ignored");
                Ok(())
            }
            None => Ok(()),
        }
    }
}

fn parse_timeout(text: &str) -> Option<Duration> {
    match text.trim().parse::<u64>() {
        Ok(n) if (1..=MAX_TIMEOUT).contains(&n) => Some(Duration::from_secs(n)),
        _ => None,
    }
}

/// `text` as one segment of a Dapr URL path: every byte outside RFC 3986's unreserved set is
/// percent-encoded.
pub(crate) fn segment(text: &str) -> String {
    encode(text, |b| {
        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
    })
}

/// `text` as a path of one or more segments: as [`segment`], keeping `/` and what a path may
/// hold (RFC 3986 `pchar`), and `%` for text already encoded.
pub(crate) fn path(text: &str) -> String {
    encode(text, |b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'/'
                    | b'%'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
            )
    })
}

fn encode(text: &str, keep: impl Fn(u8) -> bool) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if keep(b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The content type of a message: JSON when the policy says so or the message is JSON, else
/// plain text.
pub(crate) fn content_type(json: bool, body: &[u8]) -> &'static str {
    if json || serde_json::from_slice::<serde_json::Value>(body).is_ok() {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths_are_encoded_for_urls() {
        assert_eq!(segment("orders"), "orders");
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
        assert_eq!(path("/v1/items/1"), "/v1/items/1");
        assert_eq!(path("a b?c#d"), "a%20b%3Fc%23d");
    }

    #[test]
    fn json_is_told_from_text() {
        assert_eq!(content_type(false, br#"{"a":1}"#), "application/json");
        assert_eq!(content_type(false, b"hello"), "text/plain; charset=utf-8");
        assert_eq!(content_type(true, b"hello"), "application/json");
    }
}
