//! `authentication-managed-identity` through the real gateway, with its token provider stood in
//! for by a fake token endpoint on loopback (IMDS-style and client-credentials): the backend
//! gets the fake's token as a Bearer token, the token is fetched once and cached, it can go to a
//! variable or a `send-request` instead, a provider that fails is paused rather than called per
//! request, `ignore-error` lets the request go on, and neither token nor secret reaches the log.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::json;

use crate::support::{Backend, Gatehouse, free_port, serve_loopback, set_policy};

/// What the fake token endpoint was asked.
#[derive(Debug, Clone)]
struct Asked {
    method: String,
    path: String,
    query: HashMap<String, String>,
    metadata: Option<String>,
    form: HashMap<String, String>,
}

fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 3 <= b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn pairs(text: &str) -> HashMap<String, String> {
    text.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// A fake token endpoint: answers every request with `status` and, for 200, an IMDS-style token
/// answer holding `token` (an hour's lifetime); records every request.
struct TokenEndpoint {
    port: u16,
    asked: Arc<Mutex<Vec<Asked>>>,
}

impl TokenEndpoint {
    async fn start(status: u16, token: &'static str) -> Self {
        let asked: Arc<Mutex<Vec<Asked>>> = Arc::default();
        let record = asked.clone();
        let addr = serve_loopback(move |req: Request<Incoming>| {
            let record = record.clone();
            async move {
                let (parts, body) = req.into_parts();
                let body = body
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                record.lock().unwrap().push(Asked {
                    method: parts.method.to_string(),
                    path: parts.uri.path().to_owned(),
                    query: pairs(parts.uri.query().unwrap_or("")),
                    metadata: parts
                        .headers
                        .get("metadata")
                        .map(|v| v.to_str().unwrap().to_owned()),
                    form: pairs(&String::from_utf8_lossy(&body)),
                });
                let answer = if status == 200 {
                    json!({"access_token": token, "expires_in": "3599", "expires_on": "0",
                           "resource": "r", "token_type": "Bearer"})
                } else {
                    json!({"error": "invalid_request", "error_description": "Identity not found"})
                };
                let mut r = Response::new(Full::new(Bytes::from(answer.to_string())));
                *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                r.headers_mut()
                    .insert("content-type", "application/json".parse().unwrap());
                Ok::<_, Infallible>(r)
            }
        })
        .await;
        Self {
            port: addr.port(),
            asked,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn asked(&self) -> Vec<Asked> {
        self.asked.lock().unwrap().clone()
    }
}

/// Waits until a GET of `path` reaches the backend (as the path without the API's first
/// segment) with `header` set to `value`.
async fn until_backend_sees(
    gh: &Gatehouse,
    backend: &Backend,
    path: &str,
    header: &str,
    value: &str,
) {
    let backend_path = backend_path(path);
    gh.eventually(Duration::from_secs(20), || async {
        let r = gh.http.get(gh.gateway(path)).send().await.unwrap();
        r.status() == 200
            && backend.seen.lock().unwrap().last().is_some_and(|seen| {
                seen.path == backend_path
                    && seen.headers.get(header).map(String::as_str) == Some(value)
            })
    })
    .await;
}

/// What the backend of an API at `/{api}/…` receives for `path`.
fn backend_path(path: &str) -> String {
    let rest = path.trim_start_matches('/');
    format!("/{}", rest.split_once('/').map_or("", |(_, r)| r))
}

const IMDS_TOKEN: &str = "eyJ0eXAiOiJKV1Qi.imds-fake-token.c2lnbmF0dXJl";

#[tokio::test]
async fn an_imds_token_reaches_the_backend_as_a_bearer_token_and_is_fetched_once() {
    let idp = TokenEndpoint::start(200, IMDS_TOKEN).await;
    let backend = Backend::start().await;
    let endpoint = idp.url("/metadata/identity/oauth2/token");
    let gh = Gatehouse::up(
        "identity-imds",
        &[
            "--identity-provider",
            "imds",
            "--identity-endpoint",
            &endpoint,
        ],
    )
    .await;
    gh.simple_api("vault", "vault", &backend.url(), true).await;
    set_policy(
        &gh,
        "/mgmt/apis/vault/policy",
        r#"<policies>
            <inbound>
                <base />
                <authentication-managed-identity resource="https://vault.azure.net" />
            </inbound>
        </policies>"#,
    )
    .await;
    let bearer = format!("Bearer {IMDS_TOKEN}");
    until_backend_sees(&gh, &backend, "/vault/secrets", "authorization", &bearer).await;

    for i in 0..20 {
        let r = gh
            .http
            .get(gh.gateway(&format!("/vault/secrets/{i}")))
            .header("Authorization", "Basic Y2FsbGVyOnB3")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let seen = backend.last();
        assert_eq!(seen.path, format!("/secrets/{i}"));
        assert_eq!(
            seen.headers["authorization"], bearer,
            "the caller's is replaced"
        );
    }
    // 21+ requests with the token, one fetch: the cache holds it for its hour.
    let asked = idp.asked();
    assert_eq!(asked.len(), 1, "{asked:?}");
    let a = &asked[0];
    assert_eq!(
        (a.method.as_str(), a.path.as_str()),
        ("GET", "/metadata/identity/oauth2/token")
    );
    assert_eq!(a.metadata.as_deref(), Some("true"));
    assert_eq!(a.query["api-version"], "2018-02-01");
    assert_eq!(a.query["resource"], "https://vault.azure.net");
    assert!(!a.query.contains_key("client_id"));

    let log = gh.log();
    assert!(log.contains("got an access token"), "{log}");
    assert!(!log.contains("imds-fake-token"), "the token is in the log");
    assert!(
        !gh.stdout().contains("imds-fake-token"),
        "the token is in the access log"
    );
}

#[tokio::test]
async fn client_credentials_token_goes_to_a_variable_and_to_send_request() {
    let idp = TokenEndpoint::start(200, "cc-fake-token-123").await;
    let backend = Backend::start().await;
    let token_url = idp.url("/oauth/token");
    let gh = Gatehouse::up(
        "identity-oauth2",
        &[
            "--identity-provider",
            "oauth2",
            "--identity-endpoint",
            &token_url,
            "--identity-client-id",
            "gatehouse-gw",
            "--identity-client-secret",
            "cc-client-s3cret",
            "--identity-scope",
            "{resource}/.default",
        ],
    )
    .await;
    gh.simple_api("orders", "orders", &backend.url(), true)
        .await;
    set_policy(
        &gh,
        "/mgmt/apis/orders/policy",
        &format!(
            r#"<policies>
            <inbound>
                <base />
                <authentication-managed-identity resource="api://orders" output-token-variable-name="msi-access-token" />
                <set-header name="X-Token" exists-action="override">
                    <value>@("got " + (string)context.Variables["msi-access-token"])</value>
                </set-header>
                <send-request mode="new" response-variable-name="side" timeout="20">
                    <set-url>{}/side-call</set-url>
                    <set-method>GET</set-method>
                    <authentication-managed-identity resource="api://side" />
                </send-request>
                <set-header name="X-Side" exists-action="override">
                    <value>@(((IResponse)context.Variables["side"]).StatusCode.ToString())</value>
                </set-header>
            </inbound>
        </policies>"#,
            backend.url()
        ),
    )
    .await;
    until_backend_sees(&gh, &backend, "/orders/list", "x-side", "200").await;

    let seen = backend.seen.lock().unwrap().clone();
    let main = seen.iter().rev().find(|r| r.path == "/list").unwrap();
    assert_eq!(main.headers["x-token"], "got cc-fake-token-123");
    assert!(
        !main.headers.contains_key("authorization"),
        "with output-token-variable-name the header is not set"
    );
    let side = seen.iter().rev().find(|r| r.path == "/side-call").unwrap();
    assert_eq!(side.headers["authorization"], "Bearer cc-fake-token-123");

    // One fetch per resource, as client credentials with the scope template.
    let mut asked = idp.asked();
    asked.sort_by(|a, b| a.form["scope"].cmp(&b.form["scope"]));
    assert_eq!(asked.len(), 2, "{asked:?}");
    for (a, scope) in asked
        .iter()
        .zip(["api://orders/.default", "api://side/.default"])
    {
        assert_eq!(
            (a.method.as_str(), a.path.as_str()),
            ("POST", "/oauth/token")
        );
        assert_eq!(a.form["grant_type"], "client_credentials");
        assert_eq!(a.form["client_id"], "gatehouse-gw");
        assert_eq!(a.form["client_secret"], "cc-client-s3cret");
        assert_eq!(a.form["scope"], scope);
    }
    let log = gh.log();
    assert!(
        !log.contains("cc-fake-token-123"),
        "the token is in the log"
    );
    assert!(
        !log.contains("cc-client-s3cret"),
        "the secret is in the log"
    );
}

#[tokio::test]
async fn entra_client_secret_posts_to_the_tenants_token_endpoint() {
    let idp = TokenEndpoint::start(200, "entra-fake-token").await;
    let backend = Backend::start().await;
    let authority = idp.url("/");
    let gh = Gatehouse::up(
        "identity-entra",
        &[
            "--identity-provider",
            "client-secret",
            "--identity-authority-host",
            &authority,
            "--identity-tenant-id",
            "tenant-42",
            "--identity-client-id",
            "app-1",
            "--identity-client-secret",
            "entra-s3cret",
        ],
    )
    .await;
    gh.simple_api("arm", "arm", &backend.url(), true).await;
    set_policy(
        &gh,
        "/mgmt/apis/arm/policy",
        r#"<policies><inbound><base />
            <authentication-managed-identity resource="https://management.azure.com/" />
        </inbound></policies>"#,
    )
    .await;
    until_backend_sees(
        &gh,
        &backend,
        "/arm/subs",
        "authorization",
        "Bearer entra-fake-token",
    )
    .await;
    let asked = idp.asked();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0].path, "/tenant-42/oauth2/v2.0/token");
    assert_eq!(
        asked[0].form["scope"],
        "https://management.azure.com/.default"
    );
    assert_eq!(asked[0].form["client_id"], "app-1");
    assert!(!gh.log().contains("entra-fake-token"));
}

#[tokio::test]
async fn a_failing_provider_is_paused_and_ignore_error_lets_requests_through() {
    // An endpoint that refuses: counted.
    let idp = TokenEndpoint::start(400, "").await;
    let backend = Backend::start().await;
    let endpoint = idp.url("/token");
    let gh = Gatehouse::up(
        "identity-down",
        &[
            "--identity-provider",
            "imds",
            "--identity-endpoint",
            &endpoint,
        ],
    )
    .await;
    gh.simple_api("lenient", "lenient", &backend.url(), true)
        .await;
    gh.simple_api("strict", "strict", &backend.url(), true)
        .await;
    set_policy(
        &gh,
        "/mgmt/apis/lenient/policy",
        r#"<policies><inbound><base />
            <authentication-managed-identity resource="api://lenient" ignore-error="true" />
            <set-header name="X-Policy" exists-action="override"><value>lenient</value></set-header>
        </inbound></policies>"#,
    )
    .await;
    set_policy(
        &gh,
        "/mgmt/apis/strict/policy",
        r#"<policies><inbound><base />
            <authentication-managed-identity resource="api://strict" />
        </inbound>
        <on-error>
            <return-response>
                <set-status code="503" reason="No token" />
                <set-header name="X-Error" exists-action="override"><value>@(context.LastError.Source + "/" + context.LastError.Reason)</value></set-header>
            </return-response>
        </on-error></policies>"#,
    )
    .await;
    until_backend_sees(&gh, &backend, "/lenient/a", "x-policy", "lenient").await;
    // ignore-error: the request goes on, without a token.
    for _ in 0..10 {
        let r = gh.http.get(gh.gateway("/lenient/a")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(!backend.last().headers.contains_key("authorization"));
    }
    // Without it: on-error sees the failure and answers; the backend gets nothing.
    gh.eventually(Duration::from_secs(20), || async {
        let r = gh.http.get(gh.gateway("/strict/b")).send().await.unwrap();
        r.status() == 503
    })
    .await;
    let before = backend.count();
    for _ in 0..10 {
        let r = gh.http.get(gh.gateway("/strict/b")).send().await.unwrap();
        assert_eq!(r.status(), 503);
        assert_eq!(
            r.headers()["x-error"],
            "authentication-managed-identity/ManagedIdentityTokenUnavailable"
        );
    }
    assert_eq!(
        backend.count(),
        before,
        "the strict API's backend got nothing"
    );
    // 20+ failing requests, a fetch per resource at most a few times: the provider is paused
    // after a failure (2 s, doubling), not called per request.
    let asked = idp.asked();
    for resource in ["api://lenient", "api://strict"] {
        let n = asked
            .iter()
            .filter(|a| a.query["resource"] == resource)
            .count();
        assert!((1..=4).contains(&n), "{resource}: {n} fetches");
    }
    let log = gh.log();
    assert!(log.contains("cannot get an access token"), "{log}");
    assert!(
        log.contains("Identity not found"),
        "the reason is logged: {log}"
    );
}

#[tokio::test]
async fn an_unreachable_provider_fails_fast_and_the_policy_is_checked_at_save() {
    let closed = free_port();
    let backend = Backend::start().await;
    let endpoint = format!("http://127.0.0.1:{closed}/token");
    let gh = Gatehouse::up(
        "identity-unreachable",
        &[
            "--identity-provider",
            "imds",
            "--identity-endpoint",
            &endpoint,
        ],
    )
    .await;
    gh.simple_api("api", "api", &backend.url(), true).await;
    // The control plane refuses a broken policy with its line and reason.
    let (status, body) = crate::support::put_policy(
        &gh,
        "/mgmt/apis/api/policy",
        r#"<policies><inbound><authentication-managed-identity client-id="x" /></inbound></policies>"#,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.to_string().contains("needs the attribute 'resource'"),
        "{body}"
    );
    set_policy(
        &gh,
        "/mgmt/apis/api/policy",
        r#"<policies><inbound><base />
            <authentication-managed-identity resource="api://x" ignore-error="true" />
            <set-header name="X-Policy" exists-action="override"><value>on</value></set-header>
        </inbound></policies>"#,
    )
    .await;
    until_backend_sees(&gh, &backend, "/api/a", "x-policy", "on").await;
    // Without ignore-error and on-error: Azure's fixed 500, nothing internal in it.
    gh.simple_api("strict", "strict", &backend.url(), true)
        .await;
    set_policy(
        &gh,
        "/mgmt/apis/strict/policy",
        r#"<policies><inbound><base />
            <authentication-managed-identity resource="api://x" />
        </inbound></policies>"#,
    )
    .await;
    gh.eventually(Duration::from_secs(20), || async {
        gh.http
            .get(gh.gateway("/strict/b"))
            .send()
            .await
            .unwrap()
            .status()
            == 500
    })
    .await;
    // (Calls made before the policy arrived went through.)
    let before = backend.count();
    let r = gh.http.get(gh.gateway("/strict/b")).send().await.unwrap();
    assert_eq!(r.status(), 500);
    let body = r.text().await.unwrap();
    assert!(
        !body.contains("token provider"),
        "internal detail in the body: {body}"
    );
    assert!(
        !body.contains("127.0.0.1"),
        "internal detail in the body: {body}"
    );
    assert_eq!(backend.count(), before, "the backend got nothing");
    let started = std::time::Instant::now();
    for _ in 0..5 {
        let r = gh.http.get(gh.gateway("/api/a")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a refused connection is not waited on: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn policy_check_accepts_the_policy_and_the_settings_are_checked() {
    let dir = crate::support::temp_dir("identity-check");
    let file = dir.join("policy.xml");
    std::fs::write(
        &file,
        r#"<policies>
    <inbound>
        <base />
        <authentication-managed-identity resource="https://cognitiveservices.azure.com" client-id="{{uai-client-id}}" output-token-variable-name="msi-access-token" ignore-error="false" />
        <send-request mode="new" response-variable-name="r" timeout="20" ignore-error="true">
            <set-url>https://example.com/x</set-url>
            <set-method>GET</set-method>
            <authentication-managed-identity resource="https://vault.azure.net" />
        </send-request>
    </inbound>
    <backend><base /></backend>
    <outbound><base /></outbound>
    <on-error><base /></on-error>
</policies>"#,
    )
    .unwrap();
    let out = std::process::Command::new(crate::support::BIN)
        .args(["policy", "check"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // A provider missing its settings is refused at start, naming what to set.
    let out = std::process::Command::new(crate::support::BIN)
        .args(["up", "--data"])
        .arg(dir.join("data"))
        .args([
            "--identity-provider",
            "client-secret",
            "--listen",
            "127.0.0.1:0",
        ])
        .args([
            "--gateway-listen",
            "127.0.0.1:0",
            "--gateway-admin-listen",
            "127.0.0.1:0",
        ])
        .env_remove("GATEHOUSE_IDENTITY_TENANT_ID")
        .env_remove("AZURE_TENANT_ID")
        .env_remove("AZURE_CLIENT_ID")
        .env_remove("AZURE_CLIENT_SECRET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--identity-tenant-id or AZURE_TENANT_ID"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn workload_identity_exchanges_the_projected_service_account_token() {
    let idp = TokenEndpoint::start(200, "wi-fake-token").await;
    let backend = Backend::start().await;
    let dir = crate::support::temp_dir("identity-wi-token");
    let token_file = dir.join("azure-identity-token");
    std::fs::write(&token_file, "projected.service-account.jwt\n").unwrap();
    let authority = idp.url("/");
    let gh = Gatehouse::up(
        "identity-wi",
        &[
            "--identity-provider",
            "workload-identity",
            "--identity-authority-host",
            &authority,
            "--identity-tenant-id",
            "tenant-wi",
            "--identity-client-id",
            "client-wi",
            "--identity-token-file",
            token_file.to_str().unwrap(),
        ],
    )
    .await;
    gh.simple_api("kv", "kv", &backend.url(), true).await;
    set_policy(
        &gh,
        "/mgmt/apis/kv/policy",
        r#"<policies><inbound><base />
            <authentication-managed-identity resource="https://vault.azure.net" />
        </inbound></policies>"#,
    )
    .await;
    until_backend_sees(
        &gh,
        &backend,
        "/kv/s",
        "authorization",
        "Bearer wi-fake-token",
    )
    .await;
    let asked = idp.asked();
    assert_eq!(asked.len(), 1, "{asked:?}");
    let a = &asked[0];
    assert_eq!(
        (a.method.as_str(), a.path.as_str()),
        ("POST", "/tenant-wi/oauth2/v2.0/token")
    );
    assert_eq!(a.form["client_id"], "client-wi");
    assert_eq!(a.form["scope"], "https://vault.azure.net/.default");
    assert_eq!(
        a.form["client_assertion_type"],
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    );
    assert_eq!(a.form["client_assertion"], "projected.service-account.jwt");
    let log = gh.log();
    assert!(!log.contains("wi-fake-token"), "the token is in the log");
    assert!(
        !log.contains("projected.service-account.jwt"),
        "the assertion is in the log"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
