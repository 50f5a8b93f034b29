//! The .NET library of policy expressions through the real gateway (issue #15): what Azure
//! users write in their policies (HMAC signatures, lookaround regexes, `new JObject { … }`
//! bodies, `new Uri(…)`) runs unchanged, and what the backend receives is what .NET would
//! have computed. Also: a mistake in such an expression is refused when the policy is saved,
//! with what and where.

use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;

use crate::support::{Backend, Gatehouse, Received, put_policy, set_policy};

/// Sends `GET /lib{path}` with `headers` until the backend has seen a request carrying
/// `marker` (the policy is in force), and returns what the backend received.
async fn through(
    gh: &Gatehouse,
    backend: &Backend,
    key: &str,
    path: &str,
    headers: &[(&str, &str)],
    marker: &str,
) -> Received {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut req = gh
            .http
            .get(gh.gateway(&format!("/lib{path}")))
            .header("Ocp-Apim-Subscription-Key", key);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap_or_default();
        if status == 200 && backend.count() > 0 && backend.last().headers.contains_key(marker) {
            return backend.last();
        }
        assert!(
            Instant::now() < deadline,
            "the policy never took effect: {status} {body}\n{}",
            gh.log()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn api_with_policy(tag: &str, policy: &str) -> (Gatehouse, Backend, String) {
    let backend = Backend::start().await;
    let gh = Gatehouse::up(tag, &[]).await;
    gh.simple_api("lib", "lib", &backend.url(), false).await;
    let key = gh.subscription("s", "/apis").await;
    set_policy(&gh, "/mgmt/apis/lib/policy", policy).await;
    (gh, backend, key)
}

fn hmac_sha256_b64(key: &[u8], data: &[u8]) -> String {
    let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    base64::engine::general_purpose::STANDARD.encode(aws_lc_rs::hmac::sign(&k, data).as_ref())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_hmac_signature_computed_in_a_policy_reaches_the_backend() {
    let (gh, backend, key) = api_with_policy(
        "exprlib-hmac",
        r#"<policies>
            <inbound>
                <base />
                <set-header name="X-Signed-Path" exists-action="override">
                    <value>@(context.Request.Url.Path)</value>
                </set-header>
                <set-header name="X-Signature" exists-action="override">
                    <value>@(Convert.ToBase64String(new HMACSHA256(Encoding.UTF8.GetBytes("secret")).ComputeHash(Encoding.UTF8.GetBytes(context.Request.Url.Path))))</value>
                </set-header>
                <set-header name="X-Body-Sha256" exists-action="override">
                    <value>@{
                        using (var sha = System.Security.Cryptography.SHA256.Create())
                        {
                            var hash = sha.ComputeHash(Encoding.UTF8.GetBytes(context.Request.Headers.GetValueOrDefault("X-Payload", "")));
                            return BitConverter.ToString(hash).Replace("-", "").ToLowerInvariant();
                        }
                    }</value>
                </set-header>
            </inbound>
        </policies>"#,
    )
    .await;
    let seen = through(
        &gh,
        &backend,
        &key,
        "/orders/42",
        &[("X-Payload", "abc")],
        "x-signature",
    )
    .await;
    let path = &seen.headers["x-signed-path"];
    assert!(path.ends_with("/orders/42"), "{path}");
    // The signature is HMAC-SHA256("secret", path), as .NET computes it.
    assert_eq!(
        seen.headers["x-signature"],
        hmac_sha256_b64(b"secret", path.as_bytes())
    );
    let sha = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b"abc");
    let hex: String = sha.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(seen.headers["x-body-sha256"], hex);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lookaround_and_backreference_regexes_match_in_a_policy() {
    let (gh, backend, key) = api_with_policy(
        "exprlib-regex",
        r#"<policies>
            <inbound>
                <base />
                <set-header name="X-Lookahead" exists-action="override">
                    <value>@(Regex.IsMatch(context.Request.Headers.GetValueOrDefault("X-Input", ""), "foo(?=bar)").ToString())</value>
                </set-header>
                <set-header name="X-Repeated" exists-action="override">
                    <value>@(Regex.Match(context.Request.Headers.GetValueOrDefault("X-Input", ""), @"\b(\w+)-\1\b").Groups[1].Value)</value>
                </set-header>
                <set-header name="X-Masked" exists-action="override">
                    <value>@(Regex.Replace(context.Request.Headers.GetValueOrDefault("X-Input", ""), @"\d(?=\d{2})", "*"))</value>
                </set-header>
            </inbound>
        </policies>"#,
    )
    .await;
    let seen = through(
        &gh,
        &backend,
        &key,
        "/r",
        &[("X-Input", "foobar hello-hello 12345")],
        "x-lookahead",
    )
    .await;
    assert_eq!(seen.headers["x-lookahead"], "True");
    assert_eq!(seen.headers["x-repeated"], "hello");
    assert_eq!(seen.headers["x-masked"], "foobar hello-hello ***45");

    // The same policy on an input where neither pattern matches.
    let r = gh
        .http
        .get(gh.gateway("/lib/r"))
        .header("Ocp-Apim-Subscription-Key", &key)
        .header("X-Input", "foobaz hello-world")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = backend.last();
    assert_eq!(seen.headers["x-lookahead"], "False");
    assert_eq!(seen.headers.get("x-repeated").map(String::as_str), Some(""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_jobject_initializer_becomes_the_backend_request_body() {
    let (gh, backend, key) = api_with_policy(
        "exprlib-jobject",
        r#"<policies>
            <inbound>
                <base />
                <set-header name="X-Shaped" exists-action="override"><value>yes</value></set-header>
                <set-body>@(new JObject {
                    ["user"] = context.Request.Headers.GetValueOrDefault("X-User", "anon"),
                    ["count"] = 2,
                    ["tags"] = new JArray { "a", "b" },
                    ["nested"] = new JObject(new JProperty("ok", true)) { { "host", new Uri("https://Api.Example.COM:8443/x").Host } }
                }.ToString())</set-body>
            </inbound>
        </policies>"#,
    )
    .await;
    let seen = through(
        &gh,
        &backend,
        &key,
        "/b",
        &[("X-User", "alice")],
        "x-shaped",
    )
    .await;
    let body: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({
            "user": "alice",
            "count": 2,
            "tags": ["a", "b"],
            "nested": {"ok": true, "host": "api.example.com"}
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn new_uri_gives_its_parts_in_a_policy() {
    let (gh, backend, key) = api_with_policy(
        "exprlib-uri",
        r#"<policies>
            <inbound>
                <base />
                <set-variable name="target" value="@(new Uri(context.Request.Headers.GetValueOrDefault("X-Target", "https://none.example/")))" />
                <set-header name="X-Host" exists-action="override">
                    <value>@(((Uri)context.Variables["target"]).Host)</value>
                </set-header>
                <set-header name="X-Port" exists-action="override">
                    <value>@(new Uri(context.Request.Headers.GetValueOrDefault("X-Target", "https://none.example/")).Port.ToString())</value>
                </set-header>
                <set-header name="X-Rebuilt" exists-action="override">
                    <value>@{
                        var b = new UriBuilder(context.Request.Headers.GetValueOrDefault("X-Target", "https://none.example/"));
                        b.Host = "backend.internal";
                        b.Port = -1;
                        return b.Uri.PathAndQuery + " " + b.ToString();
                    }</value>
                </set-header>
            </inbound>
        </policies>"#,
    )
    .await;
    let seen = through(
        &gh,
        &backend,
        &key,
        "/u",
        &[("X-Target", "https://Api.Example.COM:8443/v1/items?q=1")],
        "x-host",
    )
    .await;
    assert_eq!(seen.headers["x-host"], "api.example.com");
    assert_eq!(seen.headers["x-port"], "8443");
    assert_eq!(
        seen.headers["x-rebuilt"],
        "/v1/items?q=1 https://backend.internal/v1/items?q=1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mistake_in_the_library_is_refused_when_saved_with_what_and_where() {
    let backend = Backend::start().await;
    let gh = Gatehouse::up("exprlib-refused", &[]).await;
    gh.simple_api("lib", "lib", &backend.url(), true).await;
    let (status, body) = put_policy(
        &gh,
        "/mgmt/apis/lib/policy",
        r#"<policies>
    <inbound>
        <set-body>@(new JObject { Name = "x" }.ToString())</set-body>
    </inbound>
</policies>"#,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let text = body.to_string();
    assert!(text.contains("member assignment (Name = value)"), "{text}");
    assert!(text.contains("line 3"), "{text}");

    let (status, body) = put_policy(
        &gh,
        "/mgmt/apis/lib/policy",
        r#"<policies>
    <inbound>
        <set-header name="X" exists-action="override"><value>@(Regex.IsMatch("a", "(?=a"))</value></set-header>
    </inbound>
</policies>"#,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let text = body.to_string();
    assert!(
        text.contains("Invalid regular expression pattern"),
        "{text}"
    );
    assert!(text.contains("line 3"), "{text}");
    assert_eq!(backend.count(), 0);
}
