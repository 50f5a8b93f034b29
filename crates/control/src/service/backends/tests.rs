//! Router tests (no socket) for pools and circuit breakers: what `/mgmt/backends` refuses and
//! why (with the field), the references a pool must keep, and what a gateway's snapshot gets.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::ControlPlane;

struct Harness {
    cp: Arc<ControlPlane>,
    token: String,
    dir: std::path::PathBuf,
}

impl Harness {
    async fn new(tag: &str) -> Self {
        let t = crate::testkit::open(&format!("backends-test-{tag}")).await;
        Self {
            cp: t.cp,
            token: t.token,
            dir: t.dir,
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .unwrap();
        let response = self.cp.router().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, value)
    }

    async fn put(&self, id: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, &format!("/mgmt/backends/{id}"), Some(body))
            .await
    }

    async fn single(&self, id: &str) {
        let (status, body) = self
            .put(id, json!({"url": format!("http://{id}.example.com")}))
            .await;
        assert!(status.is_success(), "{status}: {body}");
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

/// The targets of a 400's details, and its message.
fn refusal(status: StatusCode, body: &Value) -> (Vec<String>, String) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let error = &body["error"];
    let targets = error["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["target"].as_str().unwrap().to_owned())
        .collect();
    (targets, error.to_string())
}

/// The message of a refusal with `expected` (404 for a member that does not exist, 409 for a
/// clash with what is stored), which names no details: the message says which member.
fn refused(status: StatusCode, body: &Value, expected: StatusCode) -> String {
    assert_eq!(status, expected, "{body}");
    body["error"]["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_pool_of_existing_single_backends_is_taken_and_shipped_resolved() {
    let h = Harness::new("pool").await;
    h.single("one").await;
    h.single("two").await;
    let breaker = json!({"rules": [{"name": "r", "failureCondition": {"count": 3, "interval": "PT10S",
        "statusCodeRanges": [{"min": 500, "max": 599}], "errorReasons": ["timeout", "Server errors"]},
        "tripDuration": "PT1M30S", "acceptRetryAfter": true}]});
    let (status, body) = h
        .put(
            "three",
            json!({"url": "http://three.example.com", "circuitBreaker": breaker}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = h
        .put(
            "pool",
            json!({"type": "Pool", "pool": {"services": [
                {"id": "/backends/three", "priority": 2},
                {"id": "one", "weight": 3},
                {"id": "/backends/two"}]}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["type"], "Pool");
    assert_eq!(body["pool"]["services"][1]["priority"], 1);
    assert_eq!(body["pool"]["services"][2]["weight"], 1);

    let snapshot =
        h.cp.snapshot(crate::compile::BUILT_IN_GATEWAY)
            .await
            .unwrap();
    let pool = snapshot.backends.iter().find(|b| b.id == "pool").unwrap();
    let members: Vec<(&str, u32, u32)> = pool
        .pool
        .as_ref()
        .unwrap()
        .iter()
        .map(|m| (m.id.as_str(), m.priority, m.weight))
        .collect();
    // By priority, then as listed; plain ids.
    assert_eq!(members, [("one", 1, 3), ("two", 1, 1), ("three", 2, 1)]);
    assert!(pool.url.is_empty() && pool.circuit_breaker.is_none());
    let three = snapshot.backends.iter().find(|b| b.id == "three").unwrap();
    let rule = three.circuit_breaker.as_ref().unwrap();
    assert_eq!((rule.count, rule.percentage), (Some(3), None));
    assert_eq!((rule.interval_ms, rule.trip_duration_ms), (10_000, 90_000));
    assert_eq!(rule.status_code_ranges, [(500, 599)]);
    // Reasons gateways report, in their spelling; others match nothing and stay behind.
    assert_eq!(rule.error_reasons, ["Timeout"]);
    assert!(rule.accept_retry_after);
    // The stored rule keeps what was written, as Azure does.
    let (_, stored) = h.call(Method::GET, "/mgmt/backends/three", None).await;
    assert_eq!(
        stored["circuitBreaker"]["rules"][0]["failureCondition"]["errorReasons"],
        json!(["timeout", "Server errors"])
    );
}

#[tokio::test]
async fn a_pool_cannot_hold_a_missing_backend_or_a_pool() {
    let h = Harness::new("refs").await;
    h.single("one").await;
    let (status, body) = h
        .put(
            "p",
            json!({"type": "Pool", "pool": {"services": [{"id": "one"}, {"id": "/backends/gone"}]}}),
        )
        .await;
    // A member that does not exist: 404, naming the member.
    let message = refused(status, &body, StatusCode::NOT_FOUND);
    assert!(
        message.contains("'pool.services[1].id'")
            && message.contains("backend 'gone' does not exist")
            && message.contains("PUT /mgmt/backends/gone"),
        "{message}"
    );

    let (status, _) = h
        .put(
            "p",
            json!({"type": "Pool", "pool": {"services": [{"id": "one"}]}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    // A pool in a pool: refused, whichever is saved first.
    let (status, body) = h
        .put(
            "outer",
            json!({"type": "Pool", "pool": {"services": [{"id": "p"}]}}),
        )
        .await;
    // A member that is a pool clashes with what is stored: 409.
    let message = refused(status, &body, StatusCode::CONFLICT);
    assert!(
        message.contains("'pool.services[0].id'")
            && message.contains("'p' is a pool, and a pool cannot contain a pool"),
        "{message}"
    );
    let (status, body) = h
        .call(
            Method::PATCH,
            "/mgmt/backends/one",
            Some(json!({"type": "Pool", "pool": {"services": [{"id": "p"}]}})),
        )
        .await;
    let message = refused(status, &body, StatusCode::CONFLICT);
    assert!(
        message.contains("a pool cannot contain a pool"),
        "{message}"
    );
    let (status, body) = h
        .call(
            Method::PATCH,
            "/mgmt/backends/one",
            Some(json!({"type": "Pool", "pool": {"services": [{"id": "two"}]}})),
        )
        .await;
    let message = refused(status, &body, StatusCode::NOT_FOUND);
    assert!(message.contains("'pool.services[0].id'"), "{message}");
    h.single("two").await;
    let (status, body) = h
        .call(
            Method::PATCH,
            "/mgmt/backends/one",
            Some(json!({"type": "Pool", "pool": {"services": [{"id": "two"}]}})),
        )
        .await;
    let message = refused(status, &body, StatusCode::CONFLICT);
    assert!(
        message.contains("'type'") && message.contains("'one' is a member of backend pool 'p'"),
        "{message}"
    );
    // Nothing was stored by the refusals.
    let (_, one) = h.call(Method::GET, "/mgmt/backends/one", None).await;
    assert!(
        one.get("type").is_none() && one.get("pool").is_none(),
        "{one}"
    );
    let (status, _) = h.call(Method::GET, "/mgmt/backends/outer", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_backend_a_pool_holds_is_not_deleted() {
    let h = Harness::new("delete").await;
    h.single("one").await;
    h.single("two").await;
    for pool in ["p1", "p2"] {
        let (status, _) = h
            .put(
                pool,
                json!({"type": "Pool", "pool": {"services": [{"id": "one"}, {"id": "two"}]}}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (status, body) = h.call(Method::DELETE, "/mgmt/backends/one", None).await;
    // In use: 409, saying where.
    let message = refused(status, &body, StatusCode::CONFLICT);
    assert!(
        message.contains(
            "Backend 'one' is used by backend pool 'p1', backend pool 'p2'; remove it there first"
        ),
        "{message}"
    );
    // Out of one pool, still in the other.
    let (status, _) = h
        .call(
            Method::PATCH,
            "/mgmt/backends/p1",
            Some(json!({"pool": {"services": [{"id": "two"}]}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = h.call(Method::DELETE, "/mgmt/backends/one", None).await;
    let message = refused(status, &body, StatusCode::CONFLICT);
    assert!(
        message.contains("backend pool 'p2'") && !message.contains("p1"),
        "{message}"
    );
    let (status, _) = h.call(Method::DELETE, "/mgmt/backends/p2", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = h.call(Method::DELETE, "/mgmt/backends/one", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn bad_pools_and_breakers_are_400s_that_name_the_field() {
    let h = Harness::new("validation").await;
    let (status, body) = h
        .put("p", json!({"type": "Pool", "pool": {"services": []}}))
        .await;
    let (targets, _) = refusal(status, &body);
    assert_eq!(targets, ["pool.services"]);
    let (status, body) = h.put("s", json!({"protocol": "http"})).await;
    let (targets, message) = refusal(status, &body);
    assert_eq!(targets, ["url"]);
    assert!(
        message.contains("required for a single backend"),
        "{message}"
    );
    let (status, body) = h
        .put(
            "s",
            json!({"url": "http://s.example.com", "circuitBreaker": {"rules": [{"name": "r",
                "failureCondition": {"count": 3, "interval": "10 seconds",
                    "statusCodeRanges": [{"min": 500, "max": 599}]},
                "tripDuration": "P1M"}]}}),
        )
        .await;
    let (targets, message) = refusal(status, &body);
    assert_eq!(
        targets,
        [
            "circuitBreaker.rules[0].failureCondition.interval",
            "circuitBreaker.rules[0].tripDuration"
        ]
    );
    assert!(
        message.contains("ISO 8601") && message.contains("years and months"),
        "{message}"
    );
    // An unknown type: the body does not fit, and says what does.
    let (status, body) = h.put("s", json!({"type": "Cluster"})).await;
    let (_, message) = refusal(status, &body);
    assert!(message.contains("use 'Single' or 'Pool'"), "{message}");
}

#[tokio::test]
async fn a_patch_that_does_not_fit_the_backend_as_stored_is_409() {
    let h = Harness::new("shape").await;
    h.single("one").await;
    h.single("two").await;
    // Members for a single backend, a pool without its members, a breaker given in part.
    for patch in [
        json!({"pool": {"services": [{"id": "two"}]}}),
        json!({"type": "Pool"}),
        json!({"circuitBreaker": {}}),
    ] {
        let (status, body) = h
            .call(Method::PATCH, "/mgmt/backends/one", Some(patch.clone()))
            .await;
        let message = refused(status, &body, StatusCode::CONFLICT);
        assert!(
            message.contains("does not fit backend 'one' as stored"),
            "{patch}: {message}"
        );
    }
    // A member wrong by itself is still 400, naming it.
    let (status, body) = h
        .call(
            Method::PATCH,
            "/mgmt/backends/one",
            Some(json!({"url": "ftp://one.example.com"})),
        )
        .await;
    let (targets, _) = refusal(status, &body);
    assert_eq!(targets, ["url"]);
    // Nothing was stored by the refusals.
    let (_, one) = h.call(Method::GET, "/mgmt/backends/one", None).await;
    assert!(
        one.get("pool").is_none() && one.get("circuitBreaker").is_none(),
        "{one}"
    );
}
