//! Restart and shutdown: data survives a restart, and SIGTERM lets requests in flight finish.

use std::time::Duration;

use serde_json::json;

use crate::support::{Backend, Gatehouse};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_keeps_everything() {
    let backend = Backend::start().await;
    let mut gh = Gatehouse::up("restart", &[]).await;
    let token = gh.token.clone();
    gh.simple_api("kept", "kept", &backend.url(), false).await;
    gh.ok(
        "PUT",
        "/mgmt/products/gold",
        Some(json!({"state": "published"})),
    )
    .await;
    gh.ok("PUT", "/mgmt/products/gold/apis/kept", None).await;
    let key = gh.subscription("kept-sub", "/products/gold").await;
    gh.ok(
        "PUT",
        "/mgmt/named-values/secret",
        Some(json!({"value": "s3cr3t-value", "secret": true})),
    )
    .await;

    gh.signal("TERM");
    assert!(gh.wait(), "gatehouse did not exit cleanly on SIGTERM");
    gh.start().await;
    assert_eq!(gh.token, token, "the admin token changed across a restart");
    assert!(!gh.stdout().is_empty());

    let resp = gh
        .http
        .get(gh.gateway("/kept/after-restart"))
        .header("Ocp-Apim-Subscription-Key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(backend.last().path, "/after-restart");
    let keys = gh
        .ok("POST", "/mgmt/subscriptions/kept-sub/listSecrets", None)
        .await;
    assert_eq!(keys["primaryKey"], key.as_str());
    let v = gh
        .ok("POST", "/mgmt/named-values/secret/listValue", None)
        .await;
    assert_eq!(v["value"], "s3cr3t-value");
    assert_eq!(
        gh.ok("GET", "/mgmt/products/gold/apis", None).await["count"],
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_drains_requests_in_flight() {
    let backend = Backend::start().await;
    let mut gh = Gatehouse::up("drain", &["--shutdown-grace", "10s"]).await;
    gh.simple_api("slow", "slow", &backend.url(), true).await;
    gh.eventually(Duration::from_secs(2), || {
        let http = gh.http.clone();
        let url = gh.gateway("/slow/ping");
        async move { http.get(url).send().await.is_ok_and(|r| r.status() == 200) }
    })
    .await;

    // Thirty requests that take 1.5 s each, on their own connections.
    let mut calls = Vec::new();
    for i in 0..30 {
        let client = reqwest::Client::new();
        let url = gh.gateway(&format!("/slow/slow/1500?i={i}"));
        calls.push(tokio::spawn(async move {
            let r = client.get(url).send().await?;
            let status = r.status().as_u16();
            let body = r.text().await?;
            Ok::<_, reqwest::Error>((status, body))
        }));
    }
    // Let them all reach the backend, then ask the gateway to stop.
    gh.eventually(Duration::from_secs(5), || {
        let n = backend.count();
        async move { n >= 31 }
    })
    .await;
    gh.signal("TERM");
    for call in calls {
        let (status, body) = call
            .await
            .unwrap()
            .expect("an in-flight request was dropped");
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("/slow/1500"));
    }
    assert!(gh.wait(), "gatehouse did not exit cleanly");
    // New connections are refused once it has stopped.
    assert!(gh.http.get(gh.gateway("/slow/ping")).send().await.is_err());
}
