//! Feeds of deleted gateways are dropped, and control planes sharing a PostgreSQL store answer
//! each other's changes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::testkit::{self, TestControl};
use crate::{BUILT_IN_GATEWAY, ControlPlane};

/// A management or link call: status, `ETag` and JSON body (`null` when empty).
async fn call(
    cp: &Arc<ControlPlane>,
    method: &str,
    path: &str,
    authorization: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (StatusCode, Option<String>, Value) {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, authorization);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = match body {
        Some(b) => request
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(b.to_string())),
        None => request.body(Body::empty()),
    }
    .unwrap();
    let response = cp.router().oneshot(request).await.unwrap();
    let status = response.status();
    let etag = response
        .headers()
        .get(header::ETAG)
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, etag, value)
}

async fn admin(t: &TestControl, method: &str, path: &str, body: Option<Value>) -> Value {
    let bearer = format!("Bearer {}", t.token);
    let (status, _, value) = call(&t.cp, method, path, &bearer, &[], body).await;
    assert!(status.is_success(), "{method} {path}: {status} {value}");
    value
}

/// Creates gateway `id` and returns a token for it.
async fn gateway(t: &TestControl, id: &str) -> String {
    admin(t, "PUT", &format!("/mgmt/gateways/{id}"), Some(json!({}))).await;
    let token = admin(
        t,
        "POST",
        &format!("/mgmt/gateways/{id}/generateToken"),
        Some(json!({"keyType": "primary"})),
    )
    .await;
    token["value"].as_str().unwrap().to_owned()
}

/// A config call for the gateway whose token this is; `known` is its `ETag`, if any.
async fn config(
    cp: &Arc<ControlPlane>,
    token: &str,
    known: Option<&str>,
) -> (StatusCode, Option<String>, Value) {
    let headers: Vec<(&str, &str)> = known.map(|k| ("if-none-match", k)).into_iter().collect();
    call(
        cp,
        "GET",
        "/gateway/v1/config?wait=30",
        token,
        &headers,
        None,
    )
    .await
}

/// Waits until `check` holds, for at most 10 s.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < Duration::from_secs(10), "{what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_gateway_frees_its_compiled_snapshot_and_refusal_counts() {
    let t = testkit::open("follow-delete").await;
    let edge = gateway(&t, "edge").await;
    let other = gateway(&t, "other").await;
    assert_eq!(config(&t.cp, &edge, None).await.0, StatusCode::OK);
    assert_eq!(config(&t.cp, &other, None).await.0, StatusCode::OK);
    t.cp.update(BUILT_IN_GATEWAY, None).await.unwrap();
    assert_eq!(t.cp.feed_ids(), [BUILT_IN_GATEWAY, "edge", "other"]);
    let edge_feed = Arc::downgrade(&t.cp.feed("edge").unwrap());
    // A refused token is counted against the gateway it names.
    let (kept, signature) = edge.rsplit_once('&').unwrap();
    let forged = format!("{kept}&{}", signature.chars().rev().collect::<String>());
    assert_eq!(
        config(&t.cp, &forged, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    let refused = || t.cp.refusals.lock().unwrap().contains_key("edge");
    assert!(refused());

    // Other changes, and the deletion itself, keep the other gateways' feeds.
    admin(
        &t,
        "PUT",
        "/mgmt/apis/echo",
        Some(json!({"path": "echo", "serviceUrl": "http://127.0.0.1:9"})),
    )
    .await;
    admin(&t, "DELETE", "/mgmt/gateways/edge", None).await;
    eventually("the deleted gateway's feed was kept", || {
        t.cp.feed_ids() == [BUILT_IN_GATEWAY, "other"]
    })
    .await;
    // Nothing else holds the compiled snapshot: it is freed. Its refusals go too.
    assert!(edge_feed.upgrade().is_none());
    assert!(!refused());
    // The deleted gateway's token opens nothing again.
    assert_eq!(config(&t.cp, &edge, None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(t.cp.feed_ids(), [BUILT_IN_GATEWAY, "other"]);
    std::fs::remove_dir_all(&t.dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_deleted_through_another_control_plane_is_dropped_from_the_change_log() {
    // Two control planes on one SQLite file: the second deletes, and the first hears of the
    // revision as its listener would tell it (SQLite has none; PostgreSQL is tested below).
    let a = testkit::open_sqlite("follow-replica").await;
    let store = gatehouse_store::Store::open_sqlite_dir(&a.dir)
        .await
        .unwrap();
    let b = testkit::open_on(store, a.dir.clone()).await;
    let edge = gateway(&a, "edge").await;
    assert_eq!(config(&a.cp, &edge, None).await.0, StatusCode::OK);
    assert_eq!(a.cp.feed_ids(), ["edge"]);
    admin(&b, "DELETE", "/mgmt/gateways/edge", None).await;
    assert_eq!(a.cp.feed_ids(), ["edge"], "nothing told the first one yet");
    let revision = b.cp.store().revision().await.unwrap();
    a.cp.published(revision);
    eventually("the feed was kept", || a.cp.feed_ids().is_empty()).await;
    std::fs::remove_dir_all(&a.dir).ok();
}

/// Two control planes on one fresh PostgreSQL database, sharing a data directory (and so the
/// admin token and secret key), or `None` without a test server.
async fn replicas(
    what: &str,
) -> Option<(
    TestControl,
    TestControl,
    gatehouse_store::testdb::TestDatabase,
)> {
    let server = gatehouse_store::testdb::postgres_server(what)?;
    let db = gatehouse_store::testdb::TestDatabase::create(&server).await;
    let dir = testkit::temp_dir("follow-pg");
    let a = gatehouse_store::Store::open(&db.url).await.unwrap();
    let b = gatehouse_store::Store::open(&db.url).await.unwrap();
    let a = testkit::open_on(a, dir.clone()).await;
    let b = testkit::open_on(b, dir).await;
    assert_eq!(a.token, b.token);
    Some((a, b, db))
}

async fn close(a: TestControl, b: TestControl, db: gatehouse_store::testdb::TestDatabase) {
    a.cp.store().close().await;
    b.cp.store().close().await;
    std::fs::remove_dir_all(&a.dir).ok();
    drop((a, b));
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_through_one_control_plane_answers_long_polls_held_on_another() {
    let Some((a, b, db)) = replicas("the long-poll across control planes test").await else {
        return;
    };
    let edge = gateway(&a, "edge").await;
    admin(
        &a,
        "PUT",
        "/mgmt/apis/echo",
        Some(json!({"path": "echo", "serviceUrl": "http://127.0.0.1:9"})),
    )
    .await;
    let mut took = Vec::new();
    for round in 0..5 {
        let (status, etag, _) = config(&b.cp, &edge, None).await;
        assert_eq!(status, StatusCode::OK);
        let etag = etag.unwrap();
        let held = {
            let (cp, edge, etag) = (b.cp.clone(), edge.clone(), etag.clone());
            tokio::spawn(async move { config(&cp, &edge, Some(&etag)).await })
        };
        eventually("the config call was not held", || {
            b.cp.held.load(std::sync::atomic::Ordering::Relaxed) == 1
        })
        .await;
        // Alternately assign the API to the gateway and take it away, through the other one.
        let path = "/mgmt/gateways/edge/apis/echo";
        if round % 2 == 0 {
            admin(&a, "PUT", path, None).await;
        } else {
            admin(&a, "DELETE", path, None).await;
        }
        let committed = Instant::now();
        let (status, next, body) = tokio::time::timeout(Duration::from_secs(10), held)
            .await
            .expect("the held call was not answered within 10 s")
            .unwrap();
        took.push(committed.elapsed());
        assert_eq!(status, StatusCode::OK);
        assert_ne!(next.as_deref(), Some(etag.as_str()));
        let apis = body["apis"].as_array().unwrap();
        assert_eq!(apis.len(), if round % 2 == 0 { 1 } else { 0 }, "{body}");
    }
    eprintln!("held calls answered {took:?} after the other control plane's commit");
    assert!(took.iter().all(|t| *t < Duration::from_secs(1)), "{took:?}");
    close(a, b, db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_notification_delays_a_change_by_at_most_the_resync_interval() {
    let Some((a, b, db)) = replicas("the lost notification test").await else {
        return;
    };
    let edge = gateway(&a, "edge").await;
    let (_, etag, _) = config(&b.cp, &edge, None).await;
    let etag = etag.unwrap();
    let held = {
        let (cp, edge, etag) = (b.cp.clone(), edge.clone(), etag.clone());
        tokio::spawn(async move { config(&cp, &edge, Some(&etag)).await })
    };
    eventually("the config call was not held", || {
        b.cp.held.load(std::sync::atomic::Ordering::Relaxed) == 1
    })
    .await;
    let revision = db.bump_revision_unannounced().await;
    let bumped = Instant::now();
    let (status, next, _) = tokio::time::timeout(super::RESYNC_EVERY * 2, held)
        .await
        .expect("the held call missed the change")
        .unwrap();
    let took = bumped.elapsed();
    eprintln!("a change with no notification was answered after {took:?}");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(next, Some(format!("\"{revision}\"")));
    assert!(
        took <= super::RESYNC_EVERY + Duration::from_secs(1),
        "{took:?}"
    );
    close(a, b, db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_deleted_through_another_control_plane_loses_its_feed_on_postgres() {
    let Some((a, b, db)) = replicas("the feed drop across control planes test").await else {
        return;
    };
    let edge = gateway(&a, "edge").await;
    assert_eq!(config(&b.cp, &edge, None).await.0, StatusCode::OK);
    assert_eq!(b.cp.feed_ids(), ["edge"]);
    admin(&a, "DELETE", "/mgmt/gateways/edge", None).await;
    eventually("the feed was kept", || b.cp.feed_ids().is_empty()).await;
    close(a, b, db).await;
}
