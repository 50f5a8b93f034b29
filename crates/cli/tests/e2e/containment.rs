//! A bad API is contained (#18): an API a gateway cannot compile costs only itself. The
//! control plane refuses such an API at save; one that reaches a gateway anyway (a store
//! written by another release, here written straight into the store by the test) is answered
//! with Azure's 500 while every other API is served, and `/readyz`, the fleet status and
//! `/metrics` name it.

use std::time::{Duration, Instant};

use gatehouse_store::Kind;
use serde_json::{Value, json};

use crate::support::{Backend, Gatehouse, GatewayProc};

const AZURE_500: &str = r#"{"statusCode":500,"message":"Internal server error"}"#;

/// Writes API `id` at `path` with `service_url` and one catch-all GET operation into the
/// store of `gh` directly, the way no management call would let it in.
async fn inject_api(gh: &Gatehouse, id: &str, path: &str, service_url: &str) {
    let store = gatehouse_store::Store::open_sqlite_dir(&gh.data)
        .await
        .unwrap();
    let mut tx = store.begin().await.unwrap();
    let api = json!({"id": id, "displayName": id, "path": path, "serviceUrl": service_url});
    tx.put(Kind::Api, "", id, &api.to_string()).await.unwrap();
    let op = json!({"id": "get", "displayName": "get", "method": "GET", "urlTemplate": "/{*rest}"});
    tx.put(Kind::Operation, id, "get", &op.to_string())
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

async fn get(http: &reqwest::Client, url: &str, key: &str) -> (u16, String) {
    match http
        .get(url)
        .header("Ocp-Apim-Subscription-Key", key)
        .send()
        .await
    {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(_) => (0, String::new()),
    }
}

async fn until(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < within, "{what} not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn config_errors(metrics: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with("gatehouse_config_errors"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// `up` with API `good` and API `broken` (written into the store) assigned to gateway `edge`;
/// returns the backend, the control plane, a key for every API and a token for `edge`.
async fn setup(tag: &str) -> (Backend, Gatehouse, String, String) {
    let backend = Backend::start().await;
    let gh = Gatehouse::up(tag, &[]).await;
    gh.simple_api("good", "good", &backend.url(), false).await;
    gh.ok(
        "PUT",
        "/mgmt/gateways/edge",
        Some(json!({"locationData": {"name": "lab"}})),
    )
    .await;
    gh.ok("PUT", "/mgmt/gateways/edge/apis/good", None).await;
    let key = gh.subscription("everything", "/apis").await;

    // A service URL whose host no certificate can name: the gateway cannot compile it.
    inject_api(&gh, "broken", "broken", "https://bad-.example.com").await;
    gh.ok("PUT", "/mgmt/gateways/edge/apis/broken", None).await;

    let token = gh.gateway_token("edge").await;
    (backend, gh, key, token)
}

async fn metrics(gw: &GatewayProc) -> String {
    gw.http
        .get(gw.admin("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broken_api_gets_500_and_is_reported_while_every_other_api_is_served() {
    let (_backend, gh, key, token) = setup("contain").await;
    let gw = GatewayProc::spawn(
        "contain-gw",
        &gh.control(""),
        &token,
        &["--heartbeat-interval", "1s"],
    );
    let ready = gw
        .wait_ready(Duration::from_secs(15), |r| r["state"] == "degraded")
        .await;
    let reason = ready["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("API 'broken'") && reason.contains("serviceUrl"),
        "{ready}"
    );
    assert_eq!(ready["source"], "control-plane");

    // The other API is served; the broken one answers Azure's 500, with no detail.
    assert_eq!(get(&gw.http, &gw.url("/good/x"), &key).await.0, 200);
    let (status, body) = get(&gw.http, &gw.url("/broken/x"), &key).await;
    assert_eq!((status, body.as_str()), (500, AZURE_500));
    // The problem is in the gateway's log, not in the answer.
    assert!(gw.log().contains("bad-.example.com"), "{}", gw.log());

    let metrics = metrics(&gw).await;
    assert_eq!(config_errors(&metrics), Some(1.0), "{metrics}");

    // The fleet status names the API and the message, through the heartbeat.
    let mut shown = String::new();
    until(
        "gateway status naming the API",
        Duration::from_secs(15),
        async || {
            let out = gh.cli(&["gateway", "status", "edge"]);
            shown = String::from_utf8_lossy(&out.stdout).into_owned();
            shown.contains("degraded") && shown.contains("API 'broken'")
        },
    )
    .await;
    assert!(shown.contains("bad-.example.com"), "{shown}");

    // The built-in gateway of `up` contains it the same way.
    assert_eq!(get(&gh.http, &gh.gateway("/good/x"), &key).await.0, 200);
    let (status, body) = get(&gh.http, &gh.gateway("/broken/x"), &key).await;
    assert_eq!((status, body.as_str()), (500, AZURE_500));
    let built_in: Value = gh
        .http
        .get(gh.admin("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(built_in["state"], "degraded", "{built_in}");
    assert!(
        built_in["reason"]
            .as_str()
            .is_some_and(|r| r.contains("API 'broken'")),
        "{built_in}"
    );

    // The configuration keeps following the control plane: a new subscription works.
    let fresh = gh.subscription("fresh", "/apis/good").await;
    until(
        "the new subscription's key works",
        Duration::from_secs(10),
        async || get(&gw.http, &gw.url("/good/x"), &fresh).await.0 == 200,
    )
    .await;
    let revision = gh.ok("GET", "/mgmt/gateways/edge/status", None).await["currentRevision"]
        .as_u64()
        .unwrap();
    until(
        "the gateway applying the current revision",
        Duration::from_secs(10),
        async || {
            gw.readyz()
                .await
                .is_some_and(|r| r["configRevision"].as_u64() == Some(revision))
        },
    )
    .await;

    // Deleting the API repairs the gateway: ready again, nothing counted.
    gh.ok("DELETE", "/mgmt/apis/broken", None).await;
    gw.wait_ready(Duration::from_secs(10), |r| {
        r["state"] == "ready" && r["reason"].is_null()
    })
    .await;
    assert_eq!(get(&gw.http, &gw.url("/broken/x"), &key).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gateway_starting_from_a_backup_with_a_broken_api_serves_the_others() {
    let (_backend, mut gh, key, token) = setup("contain-backup").await;
    let mut gw = GatewayProc::spawn("contain-backup-gw", &gh.control(""), &token, &[]);
    // (Relaunch with the backup dir inside the gateway's own temp dir.)
    gw.kill9();
    let backup = gw.dir.join("backup");
    gw.args
        .extend(["--backup-dir".to_owned(), backup.display().to_string()]);
    gw.launch();
    gw.wait_ready(Duration::from_secs(15), |r| r["state"] == "degraded")
        .await;
    until("a backup written", Duration::from_secs(10), async || {
        std::fs::read_dir(&backup).is_ok_and(|mut d| d.next().is_some())
    })
    .await;

    // The control plane goes away; the gateway restarts from its backup.
    gh.signal("KILL");
    gh.wait();
    gw.kill9();
    gw.launch();
    let ready = gw
        .wait_ready(Duration::from_secs(15), |r| r["source"] == "backup")
        .await;
    assert_eq!(ready["state"], "stale", "{ready}");
    assert!(
        ready["reason"]
            .as_str()
            .is_some_and(|r| r.contains("API 'broken'")),
        "{ready}"
    );
    assert_eq!(get(&gw.http, &gw.url("/good/x"), &key).await.0, 200);
    let (status, body) = get(&gw.http, &gw.url("/broken/x"), &key).await;
    assert_eq!((status, body.as_str()), (500, AZURE_500));
    assert_eq!(config_errors(&metrics(&gw).await), Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_plane_refuses_at_save_what_a_gateway_would_refuse() {
    let gh = Gatehouse::up("contain-save", &[]).await;
    for (url, says) in [
        ("https://bad-.example.com", "bad-.example.com"),
        ("http://127.0.0.1:99999", "port"),
    ] {
        let (status, body) = gh
            .mgmt(
                "PUT",
                "/mgmt/apis/shop",
                Some(json!({"path": "shop", "serviceUrl": url})),
            )
            .await;
        assert_eq!(status, 400, "{url}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("serviceUrl") && message.contains(says),
            "{url}: {body}"
        );
        assert_eq!(
            body["error"]["details"][0]["target"], "serviceUrl",
            "{body}"
        );
    }
    // An operation method a gateway would not route is refused too.
    gh.ok(
        "PUT",
        "/mgmt/apis/shop",
        Some(json!({"path": "shop", "serviceUrl": "http://127.0.0.1:9"})),
    )
    .await;
    let (status, body) = gh
        .mgmt(
            "PUT",
            "/mgmt/apis/shop/operations/x",
            Some(json!({"method": "GE T", "urlTemplate": "/x"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["details"][0]["target"], "method", "{body}");
}
