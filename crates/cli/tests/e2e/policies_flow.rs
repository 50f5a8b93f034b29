//! Flow, CORS, quota, mock and fragment policies through the real gateway against real
//! backends: what the backend received and what the client got.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};

use crate::support::{Backend, Gatehouse, put_policy, set_policy};

/// Sends `req()` until it answers `want` (a new configuration takes a moment to arrive).
async fn until(req: impl Fn() -> reqwest::RequestBuilder, want: u16) -> reqwest::Response {
    let start = Instant::now();
    loop {
        let r = req().send().await.unwrap();
        if r.status().as_u16() == want {
            return r;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "never answered {want}: got {}",
            r.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls until `check` holds.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < Duration::from_secs(5), "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends `req()` until its response satisfies `done` (the policies under test are in force),
/// and returns that response's status, headers and body.
async fn until_answer(
    what: &str,
    req: impl Fn() -> reqwest::RequestBuilder,
    done: impl Fn(u16, &reqwest::header::HeaderMap, &[u8]) -> bool,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let start = Instant::now();
    loop {
        let r = req().send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.bytes().await.unwrap().to_vec();
        if done(status, &headers, &body) {
            return (status, headers, body);
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{what}: last answer {status} {}",
            String::from_utf8_lossy(&body)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}

/// A backend that fails: the first `failures` POSTs get 500, later ones (and every other
/// request) an echo of the body.
#[derive(Clone)]
struct Flaky {
    addr: SocketAddr,
    bodies: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Flaky {
    async fn start(failures: usize) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let bodies: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let seen = Arc::new(AtomicUsize::new(0));
        let record = bodies.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (record, seen) = (record.clone(), seen.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (record, seen) = (record.clone(), seen.clone());
                        async move {
                            let post = req.method() == hyper::Method::POST;
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            if !post {
                                return Ok::<_, Infallible>(Response::new(Full::new(body)));
                            }
                            record.lock().unwrap().push(body.to_vec());
                            let n = seen.fetch_add(1, Ordering::SeqCst);
                            let mut resp = Response::new(Full::new(body));
                            if n < failures {
                                *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                                *resp.body_mut() = Full::new(Bytes::from_static(b"boom"));
                            }
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, bodies }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn bodies(&self) -> Vec<String> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cors_answers_preflights_at_the_gateway_and_decorates_responses() {
    let backend = Backend::start().await;
    let gh = Gatehouse::up("flow-cors", &[]).await;
    gh.ok(
        "PUT",
        "/mgmt/apis/web",
        Some(json!({"path": "web", "serviceUrl": backend.url()})),
    )
    .await;
    // Only GET is declared: preflights for PUT arrive for an operation that doesn't exist.
    gh.ok(
        "PUT",
        "/mgmt/apis/web/operations/items",
        Some(json!({"method": "GET", "urlTemplate": "/items"})),
    )
    .await;
    let key = gh.subscription("s", "/apis").await;

    // allow-credentials with any origin is refused when saved.
    let (status, body) = put_policy(
        &gh,
        "/mgmt/apis/web/policy",
        r#"<policies><inbound><cors allow-credentials="true"><allowed-origins><origin>*</origin></allowed-origins><allowed-headers><header>*</header></allowed-headers></cors></inbound></policies>"#,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        message(&body).contains("cannot be used with the origin '*'"),
        "{body}"
    );

    set_policy(
        &gh,
        "/mgmt/apis/web/policy",
        r#"<policies><inbound>
            <cors allow-credentials="true">
                <allowed-origins><origin>http://app.test</origin></allowed-origins>
                <allowed-methods preflight-result-max-age="600"><method>GET</method><method>PUT</method></allowed-methods>
                <allowed-headers><header>content-type</header><header>x-custom</header></allowed-headers>
                <expose-headers><header>x-backend</header></expose-headers>
            </cors>
            <base />
        </inbound></policies>"#,
    )
    .await;

    let preflight = |origin: &'static str| {
        gh.http
            .request(reqwest::Method::OPTIONS, gh.gateway("/web/items"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "PUT")
            .header("Access-Control-Request-Headers", "x-custom")
    };
    // No subscription key, no OPTIONS operation: the cors policy answers.
    let start = Instant::now();
    let r = loop {
        let r = preflight("http://app.test").send().await.unwrap();
        if r.headers().contains_key("access-control-allow-origin") {
            break r;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no preflight answer: {}",
            r.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(r.status(), 200);
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], "http://app.test");
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(h["access-control-allow-methods"], "PUT");
    assert_eq!(h["access-control-allow-headers"], "x-custom");
    assert_eq!(h["access-control-max-age"], "600");
    assert!(r.bytes().await.unwrap().is_empty());
    // A preflight from another origin: an empty 200 without CORS headers.
    let r = preflight("http://evil.test").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(!r.headers().contains_key("access-control-allow-origin"));
    assert_eq!(backend.count(), 0, "preflights never reach the backend");

    // The actual request gets the CORS headers on the backend's answer.
    let r = gh
        .http
        .get(gh.gateway("/web/items"))
        .header("Ocp-Apim-Subscription-Key", &key)
        .header("Origin", "http://app.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "http://app.test"
    );
    assert_eq!(r.headers()["access-control-allow-credentials"], "true");
    assert_eq!(r.headers()["access-control-expose-headers"], "x-backend");
    assert_eq!(r.headers()["x-backend"], "test");
    assert_eq!(backend.count(), 1);
    assert_eq!(backend.last().headers["origin"], "http://app.test");
    // A simple GET from an origin not allowed ends at the gateway with an empty 200.
    let r = gh
        .http
        .get(gh.gateway("/web/items"))
        .header("Ocp-Apim-Subscription-Key", &key)
        .header("Origin", "http://evil.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(!r.headers().contains_key("access-control-allow-origin"));
    assert!(r.bytes().await.unwrap().is_empty());
    assert_eq!(backend.count(), 1);
    // Other paths of the API still 404 for anything but a preflight.
    let r = gh
        .http
        .request(reqwest::Method::OPTIONS, gh.gateway("/web/items"))
        .header("Ocp-Apim-Subscription-Key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quotas_refuse_calls_and_bandwidth_over_the_limit() {
    let backend = Backend::start().await;
    let gh = Gatehouse::up("flow-quota", &[]).await;
    gh.simple_api("metered", "metered", &backend.url(), false)
        .await;
    gh.simple_api("bulk", "bulk", &backend.url(), false).await;
    gh.ok("PUT", "/mgmt/products/basic", Some(json!({}))).await;
    gh.ok("PUT", "/mgmt/products/basic/apis/metered", None)
        .await;
    let key = gh.subscription("basic-sub", "/products/basic").await;
    let all = gh.subscription("all-sub", "/apis").await;

    // `quota` counts per subscription and belongs to products.
    let (status, body) = put_policy(
        &gh,
        "/mgmt/apis/metered/policy",
        r#"<policies><inbound><quota calls="3" renewal-period="3600" /></inbound></policies>"#,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(message(&body).contains("product"), "{body}");
    set_policy(
        &gh,
        "/mgmt/products/basic/policy",
        r#"<policies><inbound><base /><quota calls="3" renewal-period="3600" /></inbound></policies>"#,
    )
    .await;
    let call = || {
        gh.http
            .get(gh.gateway("/metered/x"))
            .header("Ocp-Apim-Subscription-Key", &key)
    };
    // Wait for the policy, then use up the quota.
    let start = Instant::now();
    let mut admitted = 0;
    let refused = loop {
        let r = call().send().await.unwrap();
        if r.status() == 403 {
            break r;
        }
        admitted += 1;
        assert!(start.elapsed() < Duration::from_secs(5));
    };
    assert!(admitted >= 3, "{admitted}");
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry_after));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["statusCode"], 403);
    let m = body["message"].as_str().unwrap();
    let prefix = "Out of call volume quota. Quota will be replenished in ";
    assert!(m.starts_with(prefix), "{m}");
    let hms: Vec<u64> = m[prefix.len()..m.len() - 1]
        .split(':')
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(hms.len(), 3, "{m}");
    assert!(hms[0] * 3600 + hms[1] * 60 + hms[2] <= 3600, "{m}");
    let before = backend.count();
    assert_eq!(call().send().await.unwrap().status(), 403);
    assert_eq!(
        backend.count(),
        before,
        "refused calls never reach the backend"
    );
    // A subscription outside the product is not counted by the product's quota.
    let r = gh
        .http
        .get(gh.gateway("/metered/x"))
        .header("Ocp-Apim-Subscription-Key", &all)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Bandwidth: request and response bytes (here both have a Content-Length).
    set_policy(
        &gh,
        "/mgmt/apis/bulk/policy",
        r#"<policies><inbound><base /><quota-by-key bandwidth="1" renewal-period="300" counter-key="@(context.Subscription.Id)" /></inbound></policies>"#,
    )
    .await;
    let post = || {
        gh.http
            .post(gh.gateway("/bulk/upload"))
            .header("Ocp-Apim-Subscription-Key", &all)
            .body(vec![b'x'; 800])
    };
    // The first call passes (and uses 800 bytes up, 850 down); the next is refused.
    let start = Instant::now();
    let refused = loop {
        let r = post().send().await.unwrap();
        if r.status() == 403 {
            break r;
        }
        assert_eq!(r.status(), 200);
        assert!(start.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("Out of bandwidth quota. Quota will be replenished in "),
        "{body}"
    );
    assert_eq!(backend.last().body.len(), 800);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn limit_concurrency_refuses_requests_past_the_limit_across_workers() {
    let backend = Backend::start().await;
    let gh = Gatehouse::up("flow-concurrency", &[]).await;
    gh.simple_api("one", "one", &backend.url(), true).await;
    set_policy(
        &gh,
        "/mgmt/apis/one/policy",
        r#"<policies><inbound><base /></inbound><backend>
            <limit-concurrency key="@(context.Api.Id)" max-count="1"><forward-request /></limit-concurrency>
        </backend></policies>"#,
    )
    .await;
    // Two slow calls at once: with the policy in force, one gets in and the other gets 429
    // (which one depends on which arrives first).
    let start = Instant::now();
    loop {
        let a = tokio::spawn(gh.http.get(gh.gateway("/one/slow/600")).send());
        let b = tokio::spawn(gh.http.get(gh.gateway("/one/slow/600")).send());
        let mut answers = Vec::new();
        for call in [a, b] {
            let r = call.await.unwrap().unwrap();
            let status = r.status().as_u16();
            answers.push((status, r.text().await.unwrap()));
        }
        answers.sort();
        if answers[1].0 == 429 {
            assert_eq!(answers[0].0, 200, "{answers:?}");
            assert_eq!(
                answers[1].1,
                r#"{"message":"Too many requests","statusCode":429}"#
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(8),
            "never refused: {answers:?}"
        );
    }
    // The slot came back when the slow call ended.
    let r = gh.http.get(gh.gateway("/one/fast")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(backend.last().path, "/fast");
    // Many at once: never more than one inside, and none fail otherwise.
    let calls: Vec<_> = (0..8)
        .map(|_| tokio::spawn(gh.http.get(gh.gateway("/one/slow/500")).send()))
        .collect();
    let mut statuses = Vec::new();
    for c in calls {
        statuses.push(c.await.unwrap().unwrap().status().as_u16());
    }
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&429) && statuses.contains(&200),
        "{statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retry_replays_the_buffered_body_to_a_failing_backend() {
    let flaky = Flaky::start(2).await;
    let gh = Gatehouse::up("flow-retry", &[]).await;
    gh.simple_api("shaky", "shaky", &flaky.url(), true).await;
    set_policy(
        &gh,
        "/mgmt/apis/shaky/policy",
        r#"<policies><inbound><base /></inbound><backend>
            <retry condition="@(context.Response.StatusCode &gt;= 500)" count="3" interval="0" delta="1" first-fast-retry="true">
                <forward-request />
            </retry>
        </backend><outbound><base />
            <set-header name="X-Attempts" exists-action="override"><value>done</value></set-header>
        </outbound></policies>"#,
    )
    .await;
    // GETs don't fail: wait with them until the policy is in force.
    until_answer(
        "the retry policy",
        || gh.http.get(gh.gateway("/shaky/ping")),
        |_, h, _| h.contains_key("x-attempts"),
    )
    .await;
    let r = gh
        .http
        .post(gh.gateway("/shaky/orders"))
        .body("payload-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-attempts"], "done");
    assert_eq!(r.text().await.unwrap(), "payload-1");
    // Every attempt carried the whole body.
    let bodies = flaky.bodies();
    assert_eq!(bodies.len(), 3, "{bodies:?}");
    assert!(bodies.iter().all(|b| b == "payload-1"), "{bodies:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn send_request_wait_and_one_way_requests_reach_other_services() {
    let backend = Backend::start().await;
    let lookup = Backend::start().await;
    let gh = Gatehouse::up("flow-send", &[]).await;
    gh.simple_api("svc", "svc", &backend.url(), true).await;
    gh.ok(
        "PUT",
        "/mgmt/apis/svc/operations/relay",
        Some(json!({"method": "GET", "urlTemplate": "/relay"})),
    )
    .await;
    gh.ok(
        "PUT",
        "/mgmt/apis/svc/operations/race",
        Some(json!({"method": "GET", "urlTemplate": "/race"})),
    )
    .await;
    let lookup_url = lookup.url();
    set_policy(
        &gh,
        "/mgmt/apis/svc/policy",
        &format!(
            r#"<policies><inbound><base />
            <send-request mode="new" response-variable-name="who" timeout="5">
                <set-url>@("{lookup_url}/users/" + context.Request.Headers.GetValueOrDefault("X-User", "none"))</set-url>
                <set-method>POST</set-method>
                <set-header name="X-Asked-By" exists-action="override"><value>gatehouse</value></set-header>
                <set-body>lookup please</set-body>
            </send-request>
            <set-header name="X-Lookup-Path" exists-action="override"><value>@((string)((IResponse)context.Variables["who"]).Body.As&lt;JObject&gt;()["path"])</value></set-header>
            <set-header name="X-Lookup-Status" exists-action="override"><value>@(((IResponse)context.Variables["who"]).StatusCode.ToString())</value></set-header>
        </inbound><outbound><base />
            <send-one-way-request mode="new">
                <set-url>{lookup_url}/audit</set-url>
                <set-method>POST</set-method>
                <set-body>@(context.Request.Method + " " + context.Response.StatusCode)</set-body>
            </send-one-way-request>
        </outbound></policies>"#
        ),
    )
    .await;
    set_policy(
        &gh,
        "/mgmt/apis/svc/operations/relay/policy",
        &format!(
            r#"<policies><inbound>
            <send-request mode="copy" response-variable-name="copied">
                <set-url>{lookup_url}/copied</set-url>
            </send-request>
            <return-response response-variable-name="copied">
                <set-header name="X-Relayed" exists-action="override"><value>yes</value></set-header>
            </return-response>
        </inbound></policies>"#
        ),
    )
    .await;
    set_policy(
        &gh,
        "/mgmt/apis/svc/operations/race/policy",
        &format!(
            r#"<policies><inbound>
            <wait for="@(context.Request.Headers.GetValueOrDefault(&quot;X-For&quot;, &quot;all&quot;))">
                <send-request mode="new" response-variable-name="slow">
                    <set-url>{lookup_url}/slow/2500</set-url><set-method>GET</set-method>
                </send-request>
                <send-request mode="new" response-variable-name="fast">
                    <set-url>{lookup_url}/fast</set-url><set-method>GET</set-method>
                </send-request>
            </wait>
            <return-response>
                <set-body>@(string.Join(",", new [] {{ "slow", "fast" }}.Where(v =&gt; context.Variables.ContainsKey(v))))</set-body>
            </return-response>
        </inbound></policies>"#
        ),
    )
    .await;

    // send-request: the lookup service got the request, the backend got what came back.
    let (status, _, _) = until_answer(
        "the API policy",
        || {
            gh.http
                .get(gh.gateway("/svc/things"))
                .header("X-User", "ada")
        },
        |_, _, _| {
            let seen = backend.seen.lock().unwrap();
            seen.last()
                .is_some_and(|r| r.headers.contains_key("x-lookup-path"))
        },
    )
    .await;
    assert_eq!(status, 200);
    let seen = backend.last();
    assert_eq!(seen.path, "/things");
    assert_eq!(seen.headers["x-lookup-path"], "/users/ada");
    assert_eq!(seen.headers["x-lookup-status"], "200");
    let asked = lookup
        .seen
        .lock()
        .unwrap()
        .iter()
        .find(|r| r.path == "/users/ada")
        .cloned()
        .unwrap();
    assert_eq!(asked.method, "POST");
    assert_eq!(asked.headers["x-asked-by"], "gatehouse");
    assert_eq!(asked.body, b"lookup please");
    assert!(
        !asked.headers.contains_key("x-user"),
        "a new request has none of the client's headers"
    );
    // send-one-way-request: the audit call arrives after the answer, without holding it up.
    eventually("the audit call", || {
        lookup
            .seen
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.path == "/audit" && r.body == b"GET 200")
    })
    .await;

    // copy + return-response: the client gets the other service's answer.
    let (status, headers, body) = until_answer(
        "the relay policy",
        || {
            gh.http
                .get(gh.gateway("/svc/relay?q=1"))
                .header("X-Client", "c1")
        },
        |_, h, _| h.contains_key("x-relayed"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-relayed"], "yes");
    assert_eq!(headers["x-backend"], "test");
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["path"], "/copied");
    assert_eq!(body["query"], Value::Null);
    let copied = lookup
        .seen
        .lock()
        .unwrap()
        .iter()
        .find(|r| r.path == "/copied")
        .cloned()
        .unwrap();
    assert_eq!(copied.method, "GET");
    assert_eq!(
        copied.headers["x-client"], "c1",
        "copy keeps the client's headers"
    );
    // With the relay policy in force, the API's backend is not called.
    let before = backend.count();
    let r = gh.http.get(gh.gateway("/svc/relay")).send().await.unwrap();
    assert_eq!(r.headers()["x-relayed"], "yes");
    assert_eq!(backend.count(), before);

    // wait: all waits for both; any returns with the first.
    until_answer(
        "the race policy",
        || gh.http.get(gh.gateway("/svc/race")),
        |s, _, b| s == 200 && b == b"slow,fast",
    )
    .await;
    let start = Instant::now();
    let r = gh
        .http
        .get(gh.gateway("/svc/race"))
        .header("X-For", "any")
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "fast");
    assert!(
        start.elapsed() < Duration::from_millis(2000),
        "{:?}",
        start.elapsed()
    );
}

const PETSTORE: &str = r#"{
  "openapi": "3.0.1",
  "info": {"title": "Pets", "version": "1"},
  "paths": {
    "/pets/{id}": {
      "get": {
        "operationId": "get-pet",
        "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
        "responses": {
          "200": {"description": "a pet", "content": {
            "application/json": {"example": {"id": 7, "name": "Rex"}},
            "text/plain": {"example": "Rex"}
          }},
          "404": {"description": "none", "content": {"application/json": {"examples": {"missing": {"value": {"error": "no such pet"}}}}}}
        }
      },
      "delete": {"operationId": "delete-pet", "responses": {"204": {"description": "gone"}}}
    }
  }
}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mock_response_answers_from_the_imported_examples() {
    let backend = Backend::start().await;
    let gh = Gatehouse::up("flow-mock", &[]).await;
    gh.ok(
        "PUT",
        "/mgmt/apis/pets",
        Some(json!({
            "path": "pets",
            "serviceUrl": backend.url(),
            "subscriptionRequired": false,
            "import": {"format": "openapi", "value": PETSTORE}
        })),
    )
    .await;
    set_policy(
        &gh,
        "/mgmt/apis/pets/operations/get-pet/policy",
        r#"<policies><inbound>
            <choose>
                <when condition="@(context.Request.MatchedParameters[&quot;id&quot;] == &quot;0&quot;)"><mock-response status-code="404" /></when>
                <when condition="@(context.Request.Headers.ContainsKey(&quot;X-Text&quot;))"><mock-response status-code="200" content-type="text/plain" /></when>
            </choose>
            <mock-response />
        </inbound></policies>"#,
    )
    .await;
    set_policy(
        &gh,
        "/mgmt/apis/pets/operations/delete-pet/policy",
        r#"<policies><inbound><mock-response status-code="202" /></inbound></policies>"#,
    )
    .await;

    let (status, headers, body) = until_answer(
        "the mock policy",
        || gh.http.get(gh.gateway("/pets/pets/7")),
        // Until the API and its policy arrive: 404, then the backend's answer.
        |s, h, _| s == 200 && !h.contains_key("x-backend"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json");
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body, json!({"id": 7, "name": "Rex"}));
    let r = gh
        .http
        .get(gh.gateway("/pets/pets/7"))
        .header("X-Text", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "text/plain");
    assert_eq!(r.text().await.unwrap(), "Rex");
    let r = gh
        .http
        .get(gh.gateway("/pets/pets/0"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"error": "no such pet"})
    );
    // No example for the status: the status with an empty body.
    let r = until(|| gh.http.delete(gh.gateway("/pets/pets/7")), 202).await;
    assert!(r.bytes().await.unwrap().is_empty());
    let before = backend.count();
    let r = gh
        .http
        .get(gh.gateway("/pets/pets/7"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(backend.count(), before, "mocks never call the backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn policy_fragments_are_managed_validated_and_inlined() {
    let backend = Backend::start().await;
    let gh = Gatehouse::up("flow-fragments", &[]).await;
    gh.simple_api("frag", "frag", &backend.url(), true).await;
    gh.ok(
        "PUT",
        "/mgmt/named-values/team",
        Some(json!({"value": "blue"})),
    )
    .await;

    // Validated on save: XML, known policies, no <base/>, existing named values.
    for (value, needle) in [
        ("<fragment><set-header name=\"a\"></fragment>", "line 1"),
        (
            "<fragment><teleport/></fragment>",
            "unknown policy <teleport>",
        ),
        ("<fragment><base/></fragment>", "<base/>"),
        ("<policies/>", "must be <fragment>"),
        (
            "<fragment><set-header name=\"X\"><value>{{nope}}</value></set-header></fragment>",
            "named value 'nope'",
        ),
    ] {
        let (status, body) = gh
            .mgmt(
                "PUT",
                "/mgmt/policy-fragments/bad",
                Some(json!({"value": value})),
            )
            .await;
        assert_eq!(status, 400, "{value}: {body}");
        assert!(message(&body).contains(needle), "{value}: {body}");
    }
    let (status, body) = gh
        .mgmt(
            "PUT",
            "/mgmt/policy-fragments/tagging",
            Some(json!({
                "value": "<fragment>\n  <set-header name=\"X-Team\" exists-action=\"override\"><value>{{team}}</value></set-header>\n  <set-header name=\"X-Method\" exists-action=\"override\"><value>@(context.Request.Method)</value></set-header>\n</fragment>",
                "description": "Tags requests with the team"
            })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["id"], "tagging");
    assert_eq!(body["format"], "rawxml");
    let got = gh.ok("GET", "/mgmt/policy-fragments/tagging", None).await;
    assert_eq!(got["description"], "Tags requests with the team");
    let list = gh.ok("GET", "/mgmt/policy-fragments", None).await;
    assert_eq!(list["count"], 1);

    // A policy cannot include a fragment that does not exist.
    let (status, body) = put_policy(
        &gh,
        "/mgmt/apis/frag/policy",
        r#"<policies><inbound><include-fragment fragment-id="missing" /></inbound></policies>"#,
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        message(&body).contains("policy fragment 'missing' does not exist"),
        "{body}"
    );
    set_policy(
        &gh,
        "/mgmt/apis/frag/policy",
        r#"<policies><inbound><base /><include-fragment fragment-id="tagging" /></inbound></policies>"#,
    )
    .await;
    until_answer(
        "the fragment's headers",
        || gh.http.post(gh.gateway("/frag/x")),
        |_, _, _| {
            let seen = backend.seen.lock().unwrap();
            seen.last()
                .is_some_and(|r| r.headers.get("x-team").map(String::as_str) == Some("blue"))
        },
    )
    .await;
    assert_eq!(backend.last().headers["x-method"], "POST");

    // A change that would break the including policy is refused; a good one is shipped.
    let (status, body) = gh
        .mgmt(
            "PUT",
            "/mgmt/policy-fragments/tagging",
            Some(json!({"value": "<fragment><forward-request /></fragment>"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        message(&body).contains("would break the policy of API 'frag'"),
        "{body}"
    );
    gh.ok(
        "PUT",
        "/mgmt/policy-fragments/tagging",
        Some(json!({"value": "<fragment><set-header name=\"X-Team\" exists-action=\"override\"><value>red</value></set-header></fragment>"})),
    )
    .await;
    let start = Instant::now();
    loop {
        let r = gh.http.get(gh.gateway("/frag/y")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        if backend.last().headers.get("x-team").map(String::as_str) == Some("red") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the new fragment never arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Cycles cannot be made.
    gh.ok(
        "PUT",
        "/mgmt/policy-fragments/outer",
        Some(json!({"value": "<fragment><include-fragment fragment-id=\"tagging\" /></fragment>"})),
    )
    .await;
    let (status, body) = gh
        .mgmt(
            "PUT",
            "/mgmt/policy-fragments/tagging",
            Some(
                json!({"value": "<fragment><include-fragment fragment-id=\"outer\" /></fragment>"}),
            ),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(message(&body).contains("cycle"), "{body}");

    // In use: neither the fragment nor its named value can be deleted.
    let (status, body) = gh
        .mgmt("DELETE", "/mgmt/policy-fragments/tagging", None)
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        message(&body).contains("API 'frag'") && message(&body).contains("'outer'"),
        "{body}"
    );
    gh.ok(
        "PUT",
        "/mgmt/policy-fragments/tagging",
        Some(json!({"value": "<fragment><set-header name=\"X-Team\" exists-action=\"override\"><value>{{team}}</value></set-header></fragment>"})),
    )
    .await;
    let (status, body) = gh.mgmt("DELETE", "/mgmt/named-values/team", None).await;
    assert_eq!(status, 409, "{body}");
    assert!(message(&body).contains("fragment 'tagging'"), "{body}");
    gh.ok("DELETE", "/mgmt/apis/frag/policy", None).await;
    gh.ok("DELETE", "/mgmt/policy-fragments/outer", None).await;
    let (status, _) = gh
        .mgmt("DELETE", "/mgmt/policy-fragments/tagging", None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = gh.mgmt("GET", "/mgmt/policy-fragments/tagging", None).await;
    assert_eq!(status, 404);
}
