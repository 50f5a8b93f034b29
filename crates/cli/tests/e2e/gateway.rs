//! The gateway's Azure-compatible behaviour (DESIGN §5): routing, subscription keys, and what
//! reaches the backend.

use serde_json::{Value, json};

use crate::support::{Backend, Gatehouse, free_port};

const MISSING: &str = r#"{"statusCode":401,"message":"Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API."}"#;
const INVALID: &str = r#"{"statusCode":401,"message":"Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription."}"#;
const NOT_FOUND: &str = r#"{"statusCode":404,"message":"Resource not found"}"#;

async fn call(
    gh: &Gatehouse,
    method: &str,
    path: &str,
    key: Option<&str>,
) -> (u16, String, reqwest::header::HeaderMap) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = gh.http.request(method, gh.gateway(path));
    if let Some(k) = key {
        req = req.header("Ocp-Apim-Subscription-Key", k);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, resp.text().await.unwrap(), headers)
}

#[tokio::test]
async fn keys_routing_and_forwarding_follow_azure() {
    let backend = Backend::start().await;
    let gh = Gatehouse::up("gateway", &["--backend-timeout", "1s"]).await;

    // Two products: "gold" holds the orders API, "silver" holds the inventory API.
    gh.ok(
        "PUT",
        "/mgmt/apis/orders",
        Some(json!({
            "path": "shop/orders",
            "serviceUrl": format!("{}/backend/v1/", backend.url()),
        })),
    )
    .await;
    gh.ok(
        "PUT",
        "/mgmt/apis/orders/operations/get-order",
        Some(json!({
            "method": "GET", "urlTemplate": "/items/{id}"
        })),
    )
    .await;
    gh.ok(
        "PUT",
        "/mgmt/apis/orders/operations/slow",
        Some(json!({
            "method": "GET", "urlTemplate": "/slow/{ms}"
        })),
    )
    .await;
    gh.ok(
        "PUT",
        "/mgmt/apis/orders/operations/create",
        Some(json!({
            "method": "POST", "urlTemplate": "/items"
        })),
    )
    .await;
    gh.simple_api("inventory", "inventory", &backend.url(), false)
        .await;
    gh.simple_api("public", "public", &backend.url(), true)
        .await;
    let dead = format!("http://127.0.0.1:{}", free_port());
    gh.simple_api("dead", "dead", &dead, true).await;
    gh.ok(
        "PUT",
        "/mgmt/products/gold",
        Some(json!({"displayName": "Gold"})),
    )
    .await;
    gh.ok("PUT", "/mgmt/products/gold/apis/orders", None).await;
    gh.ok("PUT", "/mgmt/products/silver", Some(json!({}))).await;
    gh.ok("PUT", "/mgmt/products/silver/apis/inventory", None)
        .await;
    let gold = gh.subscription("gold-sub", "/products/gold").await;
    let silver = gh.subscription("silver-sub", "/products/silver").await;
    let everything = gh.subscription("all-sub", "/apis").await;

    // Changes take effect quickly; wait for the last one.
    gh.eventually(std::time::Duration::from_secs(2), || async {
        call(&gh, "GET", "/shop/orders/items/1", Some(&everything))
            .await
            .0
            == 200
    })
    .await;

    // A valid key in the header: forwarded with the path rewritten onto the service URL.
    let before = backend.count();
    let resp = gh
        .http
        .get(gh.gateway("/shop/orders/items/42?sort=desc&subscription-key=ignored-here&x=1"))
        .header("Ocp-Apim-Subscription-Key", &gold)
        .header("X-Custom", "kept")
        .header("X-Forwarded-For", "203.0.113.9")
        .header("Connection", "keep-alive, x-hop")
        .header("X-Hop", "dropped")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-backend"], "test");
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(!request_id.is_empty());
    assert_eq!(backend.count(), before + 1);
    let seen = backend.last();
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.path, "/backend/v1/items/42");
    assert_eq!(seen.query.as_deref(), Some("sort=desc&x=1"));
    assert_eq!(seen.headers["x-custom"], "kept");
    // The client's own X-Forwarded-For is not believed (no --trusted-proxies): replaced.
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    assert_eq!(
        seen.headers["x-forwarded-host"],
        format!("127.0.0.1:{}", gh.gateway_port)
    );
    assert_eq!(seen.headers["host"], backend.addr.to_string());
    assert_eq!(seen.headers["x-request-id"], request_id);
    assert!(!seen.headers.contains_key("ocp-apim-subscription-key"));
    assert!(!seen.headers.contains_key("x-hop"));
    assert!(seen.headers.values().all(|v| !v.contains(&gold)));

    // A valid key in the query: accepted, and not forwarded.
    let (status, _, _) = call(
        &gh,
        "GET",
        &format!("/shop/orders/items/7?subscription-key={gold}&a=b"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let seen = backend.last();
    assert_eq!(seen.query.as_deref(), Some("a=b"));
    assert!(seen.headers.values().all(|v| !v.contains(&gold)));

    // A body streams through in both directions.
    let resp = gh
        .http
        .post(gh.gateway("/shop/orders/items"))
        .header("Ocp-Apim-Subscription-Key", &gold)
        .body("x".repeat(300_000))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(backend.last().body.len(), 300_000);
    let echoed: Value = resp.json().await.unwrap();
    assert_eq!(echoed["body"].as_str().unwrap().len(), 300_000);

    // Missing key, wrong key, a key for another product.
    let before = backend.count();
    let (status, body, headers) = call(&gh, "GET", "/shop/orders/items/1", None).await;
    assert_eq!((status, body.as_str()), (401, MISSING));
    assert_eq!(headers["content-type"], "application/json; charset=utf-8");
    assert!(headers.contains_key("x-request-id"));
    let (status, body, _) =
        call(&gh, "GET", "/shop/orders/items/1", Some("not-a-key-at-all")).await;
    assert_eq!((status, body.as_str()), (401, INVALID));
    let (status, body, _) = call(&gh, "GET", "/shop/orders/items/1", Some(&silver)).await;
    assert_eq!((status, body.as_str()), (401, INVALID));
    assert_eq!(
        backend.count(),
        before,
        "refused calls must not reach the backend"
    );
    // The silver key does work on its own product's API, and the all-APIs key on both.
    assert_eq!(
        call(&gh, "GET", "/inventory/stock", Some(&silver)).await.0,
        200
    );
    assert_eq!(
        call(&gh, "GET", "/inventory/stock", Some(&everything))
            .await
            .0,
        200
    );

    // An open API needs no key.
    let (status, _, _) = call(&gh, "GET", "/public/anything/here", None).await;
    assert_eq!(status, 200);
    assert_eq!(backend.last().path, "/anything/here");

    // Unknown path, unknown method.
    let (status, body, _) = call(&gh, "GET", "/nowhere", Some(&gold)).await;
    assert_eq!((status, body.as_str()), (404, NOT_FOUND));
    let (status, body, _) = call(&gh, "GET", "/shop/orders/unknown", Some(&gold)).await;
    assert_eq!((status, body.as_str()), (404, NOT_FOUND));
    let (status, body, _) = call(&gh, "DELETE", "/shop/orders/items/1", Some(&gold)).await;
    assert_eq!((status, body.as_str()), (404, NOT_FOUND));

    // A backend that is down: 502 with a JSON body.
    let (status, body, headers) = call(&gh, "GET", "/dead/x", None).await;
    assert_eq!(status, 502);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["statusCode"], 502);
    assert!(headers.contains_key("x-request-id"));

    // A backend that is too slow (the gateway was started with a 1 s timeout): 504.
    let started = std::time::Instant::now();
    let (status, body, _) = call(&gh, "GET", "/shop/orders/slow/3000", Some(&gold)).await;
    assert_eq!(status, 504);
    assert!(started.elapsed() < std::time::Duration::from_millis(2500));
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["statusCode"], 504);
    // ...while a fast enough one passes.
    assert_eq!(
        call(&gh, "GET", "/shop/orders/slow/100", Some(&gold))
            .await
            .0,
        200
    );

    // A suspended subscription's key stops working.
    gh.ok(
        "PATCH",
        "/mgmt/subscriptions/gold-sub",
        Some(json!({"state": "suspended"})),
    )
    .await;
    gh.eventually(std::time::Duration::from_secs(1), || async {
        call(&gh, "GET", "/shop/orders/items/1", Some(&gold))
            .await
            .0
            == 401
    })
    .await;

    // The health probe.
    assert_eq!(
        call(&gh, "GET", "/status-0123456789abcdef", None).await.0,
        200
    );

    // Keys never reach the log.
    for key in [&gold, &silver, &everything] {
        assert!(
            !gh.log().contains(key.as_str()),
            "a subscription key was logged"
        );
    }
}

#[tokio::test]
async fn http2_clients_reach_http1_backends() {
    let backend = Backend::start().await;
    let gh = Gatehouse::up("ipv6", &[]).await;
    gh.simple_api("open", "open", &backend.url(), true).await;
    gh.eventually(std::time::Duration::from_secs(2), || async {
        call(&gh, "GET", "/open/a", None).await.0 == 200
    })
    .await;
    // HTTP/2 with prior knowledge, forwarded to an HTTP/1.1 backend.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = h2.get(gh.gateway("/open/h2")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(backend.last().path, "/h2");
}

#[tokio::test]
async fn a_blocked_users_keys_stop_working() {
    let backend = Backend::start().await;
    let gh = Gatehouse::up("blocked-user", &[]).await;
    gh.simple_api("svc", "svc", &backend.url(), false).await;
    gh.ok(
        "PUT",
        "/mgmt/users/ann",
        Some(json!({"email": "ann@example.com", "firstName": "Ann", "lastName": "Lee"})),
    )
    .await;
    gh.ok(
        "PUT",
        "/mgmt/subscriptions/ann-sub",
        Some(json!({"scope": "/apis", "ownerId": "ann"})),
    )
    .await;
    let keys = gh
        .ok("POST", "/mgmt/subscriptions/ann-sub/listSecrets", None)
        .await;
    let key = keys["primaryKey"].as_str().unwrap().to_owned();
    let status = || async { call(&gh, "GET", "/svc/x", Some(&key)).await.0 };
    gh.eventually(std::time::Duration::from_secs(2), || async {
        status().await == 200
    })
    .await;
    gh.ok(
        "PATCH",
        "/mgmt/users/ann",
        Some(json!({"state": "blocked"})),
    )
    .await;
    gh.eventually(std::time::Duration::from_secs(1), || async {
        status().await == 401
    })
    .await;
    gh.ok("PATCH", "/mgmt/users/ann", Some(json!({"state": "active"})))
        .await;
    gh.eventually(std::time::Duration::from_secs(1), || async {
        status().await == 200
    })
    .await;
}
