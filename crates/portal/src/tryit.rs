//! Try it: the operation page's form, sent by the control plane to a configured gateway with
//! the user's subscription key, so the browser stays on one origin (no CORS policy needed on
//! the API). It is no open proxy: the target is always one of the configured gateway base URLs
//! plus the API's path and the operation's URL template, with every parameter value
//! percent-encoded; only the operation's declared query and header parameters are sent;
//! redirects are not followed; only signed-in users may use it, and only with their own
//! active subscriptions.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;
use gatehouse_model::resources::{Api, Operation, SubscriptionState};
use gatehouse_store::Kind;
use minijinja::context;
use minijinja::value::Serde;
use serde::Serialize;

use crate::Portal;
use crate::error::{PortalError, PortalResult};
use crate::pages::checked;
use crate::reference::{self, Doc, OperationView};
use crate::session::{Posted, Visitor};

type Shared = State<Arc<Portal>>;

/// Largest request body sent, and largest response body shown.
const MAX_BODY: usize = 1024 * 1024;
const MAX_SHOWN: usize = 256 * 1024;

/// Headers a visitor may not set: the transport's, and the subscription key (added here).
const FORBIDDEN_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
    "proxy-connection",
    "cookie",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
];

/// The key that signs Try it calls for the gateway (see `gatehouse_model::tryit`).
#[derive(Clone)]
pub struct SigningKey(Arc<aws_lc_rs::hmac::Key>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

impl SigningKey {
    pub fn new(key: &[u8; 32]) -> Self {
        Self(Arc::new(aws_lc_rs::hmac::Key::new(
            aws_lc_rs::hmac::HMAC_SHA256,
            key,
        )))
    }

    /// The header value for a call to `target` made now for a user at `ip`.
    fn sign(&self, ip: &str, method: &str, target: &reqwest::Url) -> String {
        use base64::Engine;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut path = target.path().to_owned();
        if let Some(q) = target.query() {
            path.push('?');
            path.push_str(q);
        }
        let text = gatehouse_model::tryit::signed_text(ip, now, method, &path);
        let tag = aws_lc_rs::hmac::sign(&self.0, text.as_bytes());
        let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref());
        gatehouse_model::tryit::header_value(ip, now, &signature)
    }
}

#[derive(Debug, Serialize)]
struct TryResult {
    method: String,
    url: String,
    request_headers: Vec<(String, String)>,
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
    body: String,
    truncated: bool,
    millis: u128,
}

/// Percent-encodes everything but RFC 3986 unreserved characters (and `/` when `keep_slash`).
/// `.` and `..` segments are encoded too, so a value cannot climb out of the API's path.
fn encode(value: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, s) in value.split('/').enumerate() {
        if i > 0 {
            out.push_str(if keep_slash { "/" } else { "%2F" });
        }
        if s == "." || s == ".." {
            out.push_str(&s.replace('.', "%2E"));
            continue;
        }
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

/// The operation's URL template with the path parameters filled in.
fn expand(template: &str, values: &HashMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let (before, after) = rest.split_at(open);
        out.push_str(before);
        let close = after
            .find('}')
            .ok_or_else(|| "The operation's URL template is malformed.".to_owned())?;
        let name = after.get(1..close).unwrap_or_default();
        let (name, catch_all) = match name.strip_prefix('*') {
            Some(n) => (n, true),
            None => (name, false),
        };
        let value = values
            .get(&format!("path.{name}"))
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("Fill in the path parameter '{name}'."))?;
        out.push_str(&encode(value, catch_all));
        rest = after.get(close + 1..).unwrap_or_default();
    }
    out.push_str(rest);
    Ok(out)
}

fn media_type_ok(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.split_once('/').is_some_and(|(a, b)| {
        !a.is_empty()
            && !b.is_empty()
            && format!("{a}{b}")
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '+' | '.' | '_'))
    }) && !value.contains(['\r', '\n'])
}

/// Shows a key as its last four characters.
fn masked(key: &str) -> String {
    let tail: String = key
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("••••{tail}")
}

pub async fn try_it(
    State(portal): Shared,
    Path((api_id, op_id)): Path<(String, String)>,
    Posted { visitor, form }: Posted<HashMap<String, String>>,
) -> PortalResult<Response> {
    let outcome = call(&portal, &visitor, &api_id, &op_id, &form).await;
    let (result, error) = match outcome {
        Ok(r) => (Some(r), None),
        Err(PortalError::BadRequest(m)) => (None, Some(m)),
        Err(e) => return Err(e),
    };
    let ctx = context! {
        result => result.map(Serde),
        error => error,
        back => format!("/portal/apis/{api_id}/operations/{op_id}"),
    };
    let template = if visitor.htmx {
        "try_result.html"
    } else {
        "try_page.html"
    };
    portal.render(&visitor, template, ctx).await
}

async fn call(
    portal: &Portal,
    visitor: &Visitor,
    api_id: &str,
    op_id: &str,
    form: &HashMap<String, String>,
) -> PortalResult<TryResult> {
    let user = visitor.user()?.clone();
    checked(Kind::Api, api_id)?;
    checked(Kind::Operation, op_id)?;
    let catalog = portal.catalog(Some(&user)).await?;
    let api: Api = catalog.api(api_id).ok_or(PortalError::NotFound)?.0.clone();
    let op = portal
        .store
        .repo::<Operation>()
        .get(api_id, op_id)
        .await?
        .ok_or(PortalError::NotFound)?;
    let document = portal.document(api_id).await?;
    let view: OperationView = reference::operation_view(document.as_deref().map(Doc::new), &op);

    let bad = |m: &str| PortalError::BadRequest(m.to_owned());
    let gateway = form
        .get("gateway")
        .and_then(|g| g.parse::<usize>().ok())
        .and_then(|i| portal.config.gateway_urls.get(i))
        .or_else(|| {
            (portal.config.gateway_urls.len() == 1)
                .then(|| portal.config.gateway_urls.first())
                .flatten()
        })
        .ok_or_else(|| bad("Try it is not set up on this portal: no gateway URL is configured."))?;

    let key = match form
        .get("subscription")
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
    {
        Some(sub_id) => {
            let usable = portal.subscriptions_for_api(&user, api_id).await?;
            let sub = usable
                .iter()
                .find(|s| s.id == sub_id && s.state == SubscriptionState::Active)
                .ok_or_else(|| bad("Choose one of your active subscriptions to this API."))?;
            Some(portal.backend.subscription_keys(&sub.id).await?.primary_key)
        }
        None => None,
    };

    let mut url = gateway.clone();
    if !api.path.is_empty() {
        url.push('/');
        url.push_str(&api.path);
    }
    let path = expand(&op.url_template, form).map_err(PortalError::BadRequest)?;
    url.push_str(if path == "/" && !api.path.is_empty() {
        ""
    } else {
        &path
    });
    let mut query = Vec::new();
    let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::new();
    for p in &view.parameters {
        let Some(value) = form
            .get(&format!("{}.{}", p.location, p.name))
            .filter(|v| !v.trim().is_empty())
        else {
            continue;
        };
        match p.location.as_str() {
            "query" => query.push(format!(
                "{}={}",
                encode(&p.name, false),
                encode(value, false)
            )),
            "header" => {
                let name = HeaderName::from_bytes(p.name.as_bytes())
                    .map_err(|_| bad("A header parameter's name is not a valid header name."))?;
                if FORBIDDEN_HEADERS.contains(&name.as_str())
                    || name
                        .as_str()
                        .eq_ignore_ascii_case(&api.subscription_key_parameter_names.header)
                {
                    continue;
                }
                let value = HeaderValue::from_str(value.trim())
                    .map_err(|_| bad("A header value holds characters a header cannot carry."))?;
                headers.push((name, value));
            }
            _ => {}
        }
    }
    if !query.is_empty() {
        url.push('?');
        url.push_str(&query.join("&"));
    }

    let method = if op.method == "*" {
        "GET"
    } else {
        op.method.as_str()
    };
    let method = reqwest::Method::from_bytes(method.as_bytes())
        .map_err(|_| bad("The operation's method cannot be sent."))?;
    let target = reqwest::Url::parse(&url)
        .map_err(|_| bad("The operation's URL cannot be built from these values."))?;
    let mut request = portal.http.request(method.clone(), target.clone());
    if let Some(key) = &portal.config.tryit_key {
        // The gateway sees this call come from the control plane: tell it whom it is for, in
        // a form only the gateway can check. Not shown to the user with the other headers.
        request = request.header(
            gatehouse_model::tryit::HEADER,
            key.sign(&visitor.ip, method.as_str(), &target),
        );
    }
    let mut shown_headers: Vec<(String, String)> = Vec::new();
    for (name, value) in headers {
        shown_headers.push((
            name.to_string(),
            value.to_str().unwrap_or_default().to_owned(),
        ));
        request = request.header(name, value);
    }
    if let Some(k) = &key {
        let name = api.subscription_key_parameter_names.header.clone();
        shown_headers.push((name.clone(), masked(k)));
        request = request.header(name, k.clone());
    }
    let body = form.get("body").map(String::as_str).unwrap_or_default();
    if !body.trim().is_empty() && view.body.is_some() {
        if body.len() > MAX_BODY {
            return Err(bad("The body is larger than 1 MiB."));
        }
        let content_type = form
            .get("contentType")
            .filter(|c| media_type_ok(c))
            .cloned()
            .or_else(|| view.body_media_type.clone().filter(|c| media_type_ok(c)))
            .unwrap_or_else(|| "application/json".to_owned());
        shown_headers.push(("content-type".to_owned(), content_type.clone()));
        request = request
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body.to_owned());
    }

    let started = Instant::now();
    let mut response = request.send().await.map_err(|e| {
        tracing::info!(error = %e, %url, "Try it: the gateway could not be reached");
        bad("The gateway could not be reached, or did not answer in time.")
    })?;
    let status = response.status();
    let headers: Vec<(String, String)> = response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let is_json = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    let mut bytes = Vec::new();
    let mut truncated = false;
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|_| bad("The gateway's answer broke off."))?
    {
        let room = MAX_SHOWN.saturating_sub(bytes.len());
        if chunk.len() > room {
            bytes.extend_from_slice(chunk.get(..room).unwrap_or_default());
            truncated = true;
            break;
        }
        bytes.extend_from_slice(&chunk);
    }
    let millis = started.elapsed().as_millis();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = if is_json && !truncated {
        serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or(text)
    } else {
        text
    };
    tracing::info!(user = %user.id, api = %api_id, operation = %op_id, status = status.as_u16(), "Try it call");
    Ok(TryResult {
        method: method.to_string(),
        url,
        request_headers: shown_headers,
        status: status.as_u16(),
        reason: status.canonical_reason().unwrap_or_default().to_owned(),
        headers,
        body,
        truncated,
        millis,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_cannot_leave_the_path() {
        let mut v = HashMap::new();
        v.insert("path.id".to_owned(), "../../admin?x=1#y".to_owned());
        assert_eq!(
            expand("/pets/{id}", &v).unwrap(),
            "/pets/%2E%2E%2F%2E%2E%2Fadmin%3Fx%3D1%23y"
        );
        v.insert("path.rest".to_owned(), "a/../b c".to_owned());
        assert_eq!(
            expand("/files/{*rest}", &v).unwrap(),
            "/files/a/%2E%2E/b%20c"
        );
        assert!(expand("/pets/{missing}", &v).is_err());
    }

    #[test]
    fn media_types() {
        assert!(media_type_ok("application/json"));
        assert!(media_type_ok("application/vnd.api+json; charset=utf-8"));
        assert!(!media_type_ok("text\r\nX-Evil: 1"));
        assert!(!media_type_ok("json"));
    }

    #[test]
    fn keys_are_masked() {
        assert_eq!(masked("0123456789abcdef"), "••••cdef");
    }
}
