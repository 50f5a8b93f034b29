//! `validate-content` against the schemas of an imported OpenAPI document, and `set-body`
//! with a Liquid template, through the real gateway: what the client got and what the backend
//! received (or that it received nothing).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Backend, Gatehouse, put_policy, set_policy};

/// An API with three operations that take the same `Order` body.
const ORDERS: &str = r##"{
  "openapi": "3.0.1",
  "info": {"title": "Orders", "version": "1"},
  "paths": {
    "/orders": {"post": {"operationId": "create-order",
      "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Order"}}}},
      "responses": {"200": {"description": "ok"}}}},
    "/audit": {"post": {"operationId": "audit-order",
      "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Order"}}}},
      "responses": {"200": {"description": "ok"}}}},
    "/render": {"post": {"operationId": "render-order",
      "responses": {"200": {"description": "ok"}}}}
  },
  "components": {"schemas": {
    "Order": {"type": "object", "required": ["name", "items"], "additionalProperties": false,
      "properties": {
        "name": {"type": "string", "minLength": 1},
        "items": {"type": "array", "items": {"$ref": "#/components/schemas/Item"}}
      }},
    "Item": {"type": "object", "required": ["sku"],
      "properties": {"sku": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}}}
  }}
}"##;

const VALID: &str = r#"{"name": "tea", "items": [{"sku": "t-1", "qty": 2}]}"#;
const INVALID: &str = r#"{"name": "tea", "items": [{"sku": "t-1"}, {"sku": "t-2", "qty": 0}]}"#;

async fn orders_api(gh: &Gatehouse, backend: &Backend) {
    gh.ok(
        "PUT",
        "/mgmt/apis/orders",
        Some(json!({
            "path": "shop",
            "serviceUrl": backend.url(),
            "subscriptionRequired": false,
            "import": {"format": "openapi", "value": ORDERS}
        })),
    )
    .await;
}

/// POSTs `body` as JSON to `path` until the answer satisfies `done` (the policy under test has
/// arrived), and returns the status and body.
async fn post_until(
    gh: &Gatehouse,
    path: &str,
    body: &str,
    done: impl Fn(u16, &str) -> bool,
) -> (u16, String) {
    let start = Instant::now();
    loop {
        let r = gh
            .http
            .post(gh.gateway(path))
            .header("content-type", "application/json")
            .header("x-user", "ada")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        if done(status, &text) {
            return (status, text);
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the policy never took effect on {path}: last {status} {text}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn validate(action: &str) -> String {
    format!(
        r#"<policies><inbound><base />
            <validate-content unspecified-content-type-action="prevent" max-size="10240" size-exceeded-action="prevent" errors-variable-name="errs">
                <content type="application/json" validate-as="json" action="{action}" />
            </validate-content>
            <set-header name="x-errors" exists-action="override">
                <value>@(context.Variables.ContainsKey("errs") ? "recorded" : "none")</value>
            </set-header>
        </inbound></policies>"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn validate_content_prevent_blocks_a_body_that_breaks_the_imported_schema() {
    let backend = Backend::start().await;
    let gh = Gatehouse::up("content-prevent", &[]).await;
    orders_api(&gh, &backend).await;
    set_policy(
        &gh,
        "/mgmt/apis/orders/operations/create-order/policy",
        &validate("prevent"),
    )
    .await;

    let (status, text) = post_until(&gh, "/shop/orders", INVALID, |s, _| s == 400).await;
    assert_eq!(status, 400);
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["statusCode"], 400, "{text}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("/items/1/qty: 0 is less than 1"),
        "{message}"
    );
    // Requests sent before the policy arrived reached the backend; none from now on.
    let before = backend.count();

    // The same body again, not JSON, an unknown property, a missing one: refused, without
    // the backend.
    for bad in [
        INVALID,
        "{nope",
        r#"{"name": "tea", "items": [], "extra": 1}"#,
        r#"{"items": []}"#,
    ] {
        let (status, _) = post_until(&gh, "/shop/orders", bad, |_, _| true).await;
        assert_eq!(status, 400, "{bad}");
    }
    assert_eq!(backend.count(), before, "the backend saw a refused body");

    let (status, text) = post_until(&gh, "/shop/orders", VALID, |_, _| true).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(backend.count(), before + 1);
    let seen = backend.last();
    assert_eq!(seen.path, "/orders");
    assert_eq!(String::from_utf8(seen.body).unwrap(), VALID);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn validate_content_detect_lets_the_body_through_and_records_the_problem() {
    let backend = Backend::start().await;
    let gh = Gatehouse::up("content-detect", &[]).await;
    orders_api(&gh, &backend).await;
    set_policy(
        &gh,
        "/mgmt/apis/orders/operations/audit-order/policy",
        &validate("detect"),
    )
    .await;

    let (status, _) = post_until(&gh, "/shop/audit", INVALID, |s, _| s == 200).await;
    assert_eq!(status, 200);
    // Only once the policy is in force does the header say anything.
    let start = Instant::now();
    loop {
        let (status, _) = post_until(&gh, "/shop/audit", INVALID, |_, _| true).await;
        assert_eq!(status, 200);
        let seen = backend.last();
        if seen.headers.get("x-errors").map(String::as_str) == Some("recorded") {
            assert_eq!(String::from_utf8(seen.body).unwrap(), INVALID);
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "never recorded: {:?}",
            seen.headers
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // A valid body records nothing.
    post_until(&gh, "/shop/audit", VALID, |s, _| s == 200).await;
    assert_eq!(backend.last().headers["x-errors"], "none");
    // And the problem is in the log, with where.
    let start = Instant::now();
    while !gh.log().contains("/items/1/qty: 0 is less than 1") {
        assert!(start.elapsed() < Duration::from_secs(10), "not logged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_liquid_set_body_renders_the_request_into_the_backend_body() {
    let backend = Backend::start().await;
    let gh = Gatehouse::up("content-liquid", &[]).await;
    orders_api(&gh, &backend).await;
    set_policy(
        &gh,
        "/mgmt/apis/orders/operations/render-order/policy",
        r#"<policies><inbound><base />
            <set-body template="liquid">{"method": "{{context.Request.Method}}", "user": "{{context.Request.Headers["X-User"]}}", "order": "{{body.name | Upcase}}", "first": "{{body.items[0].sku}}", "count": {{body.items | Size}}, "none": "{{body.missing | Default: "n/a"}}"}</set-body>
        </inbound></policies>"#,
    )
    .await;
    let start = Instant::now();
    let rendered = loop {
        let (status, _) = post_until(&gh, "/shop/render", VALID, |s, _| s == 200).await;
        assert_eq!(status, 200);
        let seen = backend.last();
        if let Ok(v) = serde_json::from_slice::<Value>(&seen.body)
            && v.get("method").is_some()
        {
            break v;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "never rendered");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(
        rendered,
        json!({"method": "POST", "user": "ada", "order": "TEA", "first": "t-1", "count": 1, "none": "n/a"})
    );

    // A template that does not parse is refused at save, with where.
    let (status, body) = put_policy(
        &gh,
        "/mgmt/apis/orders/operations/render-order/policy",
        "<policies>\n<inbound>\n<set-body template=\"liquid\">\n{{ body.name | }}\n</set-body>\n</inbound>\n</policies>",
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let text = body.to_string();
    assert!(text.contains("Liquid template does not parse"), "{text}");
    assert!(text.contains("line 4") || text.contains("4:"), "{text}");
}
