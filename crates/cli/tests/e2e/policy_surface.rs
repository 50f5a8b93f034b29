//! Azure policies and expression members that published policy files use, through the real
//! gateway against real backends on loopback: `validate-azure-ad-token` against a stand-in
//! Entra tenant, the language-model token limit and token metric against an OpenAI-shaped
//! backend, `jsonp`, `redirect-content-urls`, the global `cross-domain`, the library members the
//! policy snippets lean on, and the refusal (with why) of Azure policies this gateway does not
//! run.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::support::{Backend, Gatehouse, put_policy, serve_loopback, set_policy};

const TENANT: &str = "6f1c2d3e-4a5b-4c7d-8e9f-0a1b2c3d4e5f";
const CLIENT: &str = "0c1d2e3f-aaaa-bbbb-cccc-111122223333";
const AUDIENCE: &str = "api://orders";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn signing_key() -> EncodingKey {
    let pem = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../policy/tests/fixtures/jwt/rsa-private.pem"),
    )
    .unwrap();
    EncodingKey::from_rsa_pem(&pem).unwrap()
}

fn sign(claims: &Value) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("tenant-key".into());
    jsonwebtoken::encode(&h, claims, &signing_key()).unwrap()
}

fn respond(status: u16, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    r.headers_mut()
        .insert("content-type", content_type.parse().unwrap());
    r
}

/// Sends requests until one answers `want` (a saved policy reaches the gateway within
/// moments), then returns it.
async fn until(req: impl Fn() -> reqwest::RequestBuilder, want: u16) -> reqwest::Response {
    let start = Instant::now();
    loop {
        let r = req().send().await.unwrap();
        if r.status().as_u16() == want {
            return r;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "never answered {want}: got {}",
            r.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A stand-in Microsoft Entra ID authority: the tenant's v2.0 OpenID configuration and its
/// keys, under whatever host the gateway called it by.
async fn entra() -> String {
    let mut jwk = Jwk::from_encoding_key(&signing_key(), Algorithm::RS256).unwrap();
    jwk.common.key_id = Some("tenant-key".into());
    let jwks = json!({ "keys": [jwk] }).to_string();
    let addr = serve_loopback(move |req: Request<hyper::body::Incoming>| {
        let jwks = jwks.clone();
        async move {
            let host = req.headers()["host"].to_str().unwrap().to_owned();
            let path = req.uri().path();
            let r = if path == format!("/{TENANT}/v2.0/.well-known/openid-configuration") {
                let doc = json!({
                    "issuer": format!("http://{host}/{TENANT}/v2.0"),
                    "jwks_uri": format!("http://{host}/{TENANT}/discovery/v2.0/keys"),
                });
                respond(200, "application/json", doc.to_string())
            } else if path == format!("/{TENANT}/discovery/v2.0/keys") {
                respond(200, "application/json", jwks)
            } else {
                respond(404, "text/plain", String::new())
            };
            Ok::<_, Infallible>(r)
        }
    })
    .await;
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn validate_azure_ad_token_checks_tenant_client_and_audience() {
    let authority = entra().await;
    let backend = Backend::start().await;
    let gh = Gatehouse::up("surface-entra", &[]).await;
    gh.simple_api("orders", "orders", &backend.url(), true)
        .await;
    gh.ok(
        "PUT",
        "/mgmt/named-values/tenant",
        Some(json!({"value": TENANT})),
    )
    .await;
    set_policy(
        &gh,
        "/mgmt/apis/orders/policy",
        &format!(
            r#"<policies>
            <inbound>
                <base />
                <validate-azure-ad-token tenant-id="{{{{tenant}}}}" authentication-endpoint="{authority}" output-token-variable-name="caller">
                    <client-application-ids><application-id>{CLIENT}</application-id></client-application-ids>
                    <audiences><audience>{AUDIENCE}</audience></audiences>
                </validate-azure-ad-token>
                <set-header name="X-Caller" exists-action="override"><value>@(((Jwt)context.Variables["caller"]).Claims.GetValueOrDefault("name", "?"))</value></set-header>
            </inbound>
            <on-error>
                <set-header name="X-Error" exists-action="override"><value>@(context.LastError.Source + "/" + context.LastError.Reason)</value></set-header>
            </on-error>
        </policies>"#
        ),
    )
    .await;

    let r = until(|| gh.http.get(gh.gateway("/orders/7")), 401).await;
    assert_eq!(
        r.headers()["x-error"],
        "validate-azure-ad-token/TokenNotPresent"
    );
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"statusCode": 401, "message": "JWT not present."})
    );
    let base = backend.count();

    let host = authority.trim_start_matches("http://");
    let v2 = json!({
        "iss": format!("http://{host}/{TENANT}/v2.0"),
        "tid": TENANT, "aud": AUDIENCE, "azp": CLIENT, "name": "Ada",
        "exp": now() + 600,
    });
    let call = |token: String| {
        gh.http
            .get(gh.gateway("/orders/7"))
            .bearer_auth(token)
            .send()
    };
    let r = call(sign(&v2)).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(backend.last().headers["x-caller"], "Ada");
    // A v1.0 token of the same tenant: `appid` and the sts.windows.net issuer.
    let mut v1 = v2.clone();
    v1["iss"] = json!(format!("https://sts.windows.net/{TENANT}/"));
    v1.as_object_mut().unwrap().remove("azp");
    v1["appid"] = json!(CLIENT);
    assert_eq!(call(sign(&v1)).await.unwrap().status(), 200);
    assert_eq!(backend.count(), base + 2);

    for (change, reason) in [
        (
            json!({"azp": "another-client"}),
            "TokenClaimValueNotAllowed",
        ),
        (
            json!({"iss": format!("http://{host}/another-tenant/v2.0")}),
            "TokenIssuerNotAllowed",
        ),
        (json!({"aud": "api://payments"}), "TokenAudienceNotAllowed"),
        (json!({"exp": now() - 60}), "TokenExpired"),
    ] {
        let mut claims = v2.clone();
        for (k, v) in change.as_object().unwrap() {
            claims[k] = v.clone();
        }
        let r = call(sign(&claims)).await.unwrap();
        assert_eq!(r.status(), 401, "{reason}");
        assert_eq!(
            r.headers()["x-error"],
            format!("validate-azure-ad-token/{reason}")
        );
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            json!({"statusCode": 401, "message": "Invalid JWT."})
        );
    }
    assert_eq!(backend.count(), base + 2, "refused calls never reach it");
}

/// An OpenAI-shaped model: every completion reports 40 tokens (15 prompt, 25 completion); a
/// request that asks to stream gets server-sent events with the usage in the last one.
async fn model() -> String {
    let addr = serve_loopback(|req: Request<hyper::body::Incoming>| async move {
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let asked: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let usage = json!({"prompt_tokens": 15, "completion_tokens": 25, "total_tokens": 40});
        let r = if asked["stream"] == json!(true) {
            let chunk = json!({"choices": [{"delta": {"content": "Hello"}}], "usage": null});
            let last = json!({"choices": [], "usage": usage});
            respond(
                200,
                "text/event-stream",
                format!("data: {chunk}\n\ndata: {last}\n\ndata: [DONE]\n\n"),
            )
        } else {
            let answer = json!({
                "id": "chatcmpl-1", "model": "gpt-test",
                "choices": [{"message": {"role": "assistant", "content": "Hello"}}],
                "usage": usage,
            });
            respond(200, "application/json", answer.to_string())
        };
        Ok::<_, Infallible>(r)
    })
    .await;
    format!("http://{addr}")
}

/// The values of one custom metric series on `/metrics`, summed over the series that carry
/// every label in `want`.
fn custom_metric(metrics: &str, want: &[(&str, &str)]) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("gatehouse_custom_metric_value{"))
        .filter(|l| {
            want.iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_limit_and_token_metric_count_what_the_model_reports() {
    let model = model().await;
    let gh = Gatehouse::up("surface-llm", &[]).await;
    gh.simple_api("chat", "chat", &model, true).await;
    set_policy(
        &gh,
        "/mgmt/apis/chat/policy",
        r#"<policies>
            <inbound>
                <base />
                <llm-token-limit counter-key="@(context.Request.Headers.GetValueOrDefault("x-team", "none"))"
                    tokens-per-minute="100" estimate-prompt-tokens="false"
                    remaining-tokens-header-name="x-tokens-left" tokens-consumed-header-name="x-tokens-consumed"
                    tokens-consumed-variable-name="consumed" />
                <azure-openai-emit-token-metric namespace="e2e-llm">
                    <dimension name="API ID" />
                    <dimension name="Model" />
                    <dimension name="Team" value="@(context.Request.Headers.GetValueOrDefault("x-team", "none"))" />
                </azure-openai-emit-token-metric>
            </inbound>
            <outbound>
                <base />
                <set-header name="x-outbound-saw" exists-action="override"><value>@(context.Variables.GetValueOrDefault("consumed", "none").ToString())</value></set-header>
            </outbound>
        </policies>"#,
    )
    .await;
    let ask = |team: &str, stream: bool| {
        gh.http
            .post(gh.gateway("/chat/deployments/gpt/chat/completions"))
            .header("x-team", team)
            .json(&json!({"messages": [{"role": "user", "content": "hi"}], "stream": stream}))
    };
    // Until the policy is there, answers carry no token headers.
    let start = Instant::now();
    let first = loop {
        let r = ask("warm-up", false).send().await.unwrap();
        if r.headers().contains_key("x-tokens-consumed") {
            break r;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "policy never arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(first.headers()["x-tokens-consumed"], "40");
    assert_eq!(first.headers()["x-outbound-saw"], "40");

    // Team a: 40 + 40 leave 20; the third call (a stream) still goes and uses the minute up.
    let mut left = Vec::new();
    for stream in [false, false, true] {
        let r = ask("a", stream).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-tokens-consumed"], "40");
        left.push(r.headers()["x-tokens-left"].to_str().unwrap().to_owned());
        let text = r.text().await.unwrap();
        assert!(text.contains("Hello"), "{text}");
    }
    assert_eq!(left, ["60", "20", "0"]);
    let r = ask("a", false).send().await.unwrap();
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"statusCode": 429, "message": format!("Token limit is exceeded. Try again in {wait} seconds.")})
    );
    // Another team has its own minute.
    assert_eq!(ask("b", false).send().await.unwrap().status(), 200);

    // The token metrics: team a's three answered calls, and the model they named.
    let want = [
        ("namespace", "e2e-llm"),
        ("dim_team", "a"),
        ("dim_api_id", "chat"),
    ];
    let mut metrics = String::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        metrics = gh
            .http
            .get(gh.admin("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if custom_metric(&metrics, &[("name", "Total Tokens")]) > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let with = |name: &str| {
        let mut w = want.to_vec();
        w.push(("name", name));
        custom_metric(&metrics, &w)
    };
    assert_eq!(with("Total Tokens"), 120.0, "{metrics}");
    assert_eq!(with("Prompt Tokens"), 45.0);
    assert_eq!(with("Completion Tokens"), 75.0);
    assert_eq!(
        custom_metric(
            &metrics,
            &[
                ("name", "Total Tokens"),
                ("dim_team", "a"),
                ("dim_model", "gpt-test")
            ]
        ),
        80.0,
        "the non-streamed answers name their model"
    );
}

/// A backend that names itself in its answers: `{"self": "<its own URL>/items/7", …}`.
async fn self_naming_backend() -> String {
    let addr = serve_loopback(|req: Request<hyper::body::Incoming>| async move {
        let host = req.headers()["host"].to_str().unwrap().to_owned();
        let body = json!({
            "self": format!("http://{host}/api/items/7"),
            "next": format!("http://{host}/api/items/8"),
            "minutely": [1], "hourly": [2], "daily": [3], "current": {"t": 21},
        });
        Ok::<_, Infallible>(respond(200, "application/json", body.to_string()))
    })
    .await;
    format!("http://{addr}/api")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jsonp_redirect_content_urls_and_the_global_cross_domain_file() {
    let backend = self_naming_backend().await;
    let gh = Gatehouse::up("surface-transform", &[]).await;
    gh.simple_api("shop", "shop", &backend, true).await;
    set_policy(
        &gh,
        "/mgmt/policy",
        r#"<policies>
            <inbound>
                <cross-domain>
                    <cross-domain-policy>
                        <allow-access-from domain="*.contoso.com" />
                    </cross-domain-policy>
                </cross-domain>
            </inbound>
            <backend><forward-request /></backend>
            <outbound />
            <on-error />
        </policies>"#,
    )
    .await;
    set_policy(
        &gh,
        "/mgmt/apis/shop/policy",
        r#"<policies>
            <inbound><base /></inbound>
            <outbound>
                <base />
                <redirect-content-urls />
                <jsonp callback-parameter-name="cb" />
            </outbound>
        </policies>"#,
    )
    .await;

    let r = until(|| gh.http.get(gh.gateway("/crossdomain.xml")), 200).await;
    assert_eq!(r.headers()["content-type"], "text/xml");
    let text = r.text().await.unwrap();
    assert!(
        text.starts_with("<?xml version=\"1.0\"?>\n<cross-domain-policy>"),
        "{text}"
    );
    assert!(
        text.contains(r#"<allow-access-from domain="*.contoso.com" />"#),
        "{text}"
    );
    // Only there, and not for other paths no API serves.
    assert_eq!(
        gh.http
            .get(gh.gateway("/elsewhere.xml"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    let gateway = gh.gateway("/shop");
    let start = Instant::now();
    let body: Value = loop {
        let r = gh
            .http
            .get(gh.gateway("/shop/items/7"))
            .send()
            .await
            .unwrap();
        let body: Value = r.json().await.unwrap();
        if body["self"]
            .as_str()
            .is_some_and(|s| s.starts_with(&gateway))
        {
            break body;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(body["self"], format!("{gateway}/items/7"));
    assert_eq!(body["next"], format!("{gateway}/items/8"));

    let r = gh
        .http
        .get(gh.gateway("/shop/items/7?cb=render.items"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["content-type"],
        "application/javascript; charset=utf-8"
    );
    let text = r.text().await.unwrap();
    let json = text
        .strip_prefix("render.items(")
        .and_then(|t| t.strip_suffix(");"))
        .unwrap_or_else(|| panic!("{text}"));
    let wrapped: Value = serde_json::from_str(json).unwrap();
    assert_eq!(wrapped["self"], format!("{gateway}/items/7"));
    // A callback that is not a JavaScript name is not reflected into script.
    let r = gh
        .http
        .get(gh.gateway("/shop/items/7?cb=alert(1)//"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/json");

    // cross-domain belongs to the global policy.
    let (status, body) = put_policy(
        &gh,
        "/mgmt/apis/shop/policy",
        "<policies>\n  <inbound>\n    <cross-domain><cross-domain-policy/></cross-domain>\n  </inbound>\n</policies>",
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["details"][0]["line"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_snippets_library_members_run_in_the_gateway() {
    let weather = self_naming_backend().await;
    let echo = Backend::start().await;
    let gh = Gatehouse::up("surface-snippets", &[]).await;
    gh.simple_api("weather", "weather", &weather, true).await;
    gh.simple_api("echo", "echo", &echo.url(), true).await;
    // As the policy snippets write them: a response filtered with Property(key).Remove(), a
    // random backend pick seeded by the request id, a namespaced XML read, a day of the week.
    set_policy(
        &gh,
        "/mgmt/apis/weather/policy",
        r#"<policies>
            <inbound><base /></inbound>
            <outbound>
                <base />
                <set-body>@{
                    var response = context.Response.Body.As<JObject>();
                    foreach (var key in new [] {"minutely", "hourly", "daily", "flags"}) {
                        response.Property(key)?.Remove();
                    }
                    return response.ToString();
                }</set-body>
            </outbound>
        </policies>"#,
    )
    .await;
    set_policy(
        &gh,
        "/mgmt/apis/echo/policy",
        r#"<policies><inbound><base />
            <set-variable name="urlId" value="@(new Random(context.RequestId.GetHashCode()).Next(1, 4))" />
            <set-header name="X-Pick" exists-action="override"><value>@(context.Variables["urlId"].ToString())</value></set-header>
            <set-header name="X-Order" exists-action="override"><value>@{
                XNamespace ns = "urn:orders";
                var doc = XDocument.Parse("<o:order xmlns:o=\"urn:orders\"><o:id>42</o:id><id>wrong</id></o:order>");
                return doc.Root.Element(ns + "id").Value + "/" + new DateTime(2024, 3, 2).DayOfWeek;
            }</value></set-header>
        </inbound></policies>"#,
    )
    .await;

    let start = Instant::now();
    let body: Value = loop {
        let r = gh
            .http
            .get(gh.gateway("/weather/today"))
            .send()
            .await
            .unwrap();
        let body: Value = r.json().await.unwrap();
        if body.get("minutely").is_none() {
            break body;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["current", "next", "self"], "{body}");

    let start = Instant::now();
    loop {
        let r = gh.http.get(gh.gateway("/echo/x")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        if echo.last().headers.contains_key("x-order") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = echo.last();
    assert_eq!(seen.headers["x-order"], "42/Saturday");
    let pick: u32 = seen.headers["x-pick"].parse().unwrap();
    assert!((1..=3).contains(&pick), "{pick}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn azure_policies_this_gateway_does_not_run_are_refused_with_why() {
    let backend = Backend::start().await;
    let gh = Gatehouse::up("surface-unsupported", &[]).await;
    gh.simple_api("soap", "soap", &backend.url(), true).await;
    for (xml, element, why) in [
        (
            "<policies>\n  <inbound><base /></inbound>\n  <outbound>\n    <xsl-transform><xsl:stylesheet version=\"1.0\" xmlns:xsl=\"http://www.w3.org/1999/XSL/Transform\" /></xsl-transform>\n  </outbound>\n</policies>",
            "xsl-transform",
            "it needs an XSLT 1.0 engine",
        ),
        (
            "<policies>\n  <inbound>\n    <base />\n    <azure-openai-semantic-cache-lookup score-threshold=\"0.05\" embeddings-backend-id=\"e\" embeddings-backend-auth=\"system-assigned\" />\n  </inbound>\n</policies>",
            "azure-openai-semantic-cache-lookup",
            "semantic caching needs an embeddings deployment",
        ),
    ] {
        let (status, body) = put_policy(&gh, "/mgmt/apis/soap/policy", xml).await;
        assert_eq!(status, 400, "{body}");
        let detail = &body["error"]["details"][0];
        assert_eq!(detail["line"], 4, "{body}");
        let message = detail["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!(
                "<{element}> is not supported by this gateway: {why}"
            )),
            "{message}"
        );
        assert!(message.contains("; "), "what to use instead: {message}");
    }
}
