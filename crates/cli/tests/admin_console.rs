//! The admin console end to end: the real `gatehouse up`, a real self-hosted gateway instance
//! heartbeating to it and serving real traffic to a real backend (this minute's figures), an
//! hour of hand-built history uploaded through `/gateway/v1/telemetry`, and
//! Debian's Chromium (driven by npm's playwright-core through `tests/browser/admin.mjs`)
//! signing in with the admin token, reading the fleet and the traffic charts, and signing out.
//! Screenshots land in `test-artifacts/admin/`. Needs `$GATEHOUSE_CHROMIUM` (scripts/test sets
//! it); without it the test is skipped with a note, except under CI, where that fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "e2e/support.rs"]
mod support;

use std::time::{Duration, Instant};

use gatehouse_model::telemetry::{Aggregate, Batch, Outcome};
use serde_json::{Value, json};
use support::{Backend, Gatehouse, GatewayProc};

/// Calls to API `echo` the reports count in the last two hours.
async fn echo_calls(gh: &Gatehouse) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (status, body) = gh
        .mgmt(
            "GET",
            &format!(
                "/mgmt/reports/byApi?from={}&to={}&apiId=echo",
                rfc3339(now - 7200),
                rfc3339(now + 3600)
            ),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["value"]
        .as_array()
        .unwrap()
        .first()
        .map_or(0, |row| row["callCountTotal"].as_u64().unwrap())
}

fn rfc3339(secs: u64) -> String {
    gatehouse_model::reports::rfc3339(secs as i64).replace(':', "%3A")
}

use support::repo_root;

/// An aggregate of `calls` (status, api time in µs) for one minute.
fn aggregate(minute: i64, api: &str, calls: &[(u16, u64)]) -> Aggregate {
    let mut a = Aggregate {
        minute,
        api_id: api.into(),
        operation_id: "get".into(),
        ..Aggregate::default()
    };
    for (status, micros) in calls {
        let from_backend = !matches!(status, 401 | 403 | 429);
        a.counts.add(Outcome::classify(*status, from_backend));
        a.bandwidth += 100;
        a.api_time.record(*micros);
        if from_backend {
            a.service_time.record(micros / 2);
        }
    }
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_shows_the_fleet_and_traffic_charts_in_a_browser() {
    let Some(chromium) = support::browser("the admin console's browser test") else {
        return;
    };
    let root = repo_root();

    let gh = Gatehouse::up("admin-console", &[]).await;
    let backend = Backend::start().await;
    gh.simple_api("echo", "echo", &backend.url(), false).await;
    let key = gh.subscription("console", "/apis").await;
    gh.ok(
        "PUT",
        "/mgmt/gateways/edge",
        Some(json!({"locationData": {"name": "lab"}, "description": "The lab's gateway"})),
    )
    .await;
    let token = gh.gateway_token("edge").await;
    let gw = GatewayProc::spawn(
        "admin-console-gw",
        &gh.control(""),
        &token,
        &[
            "--name",
            "edge-pod-1",
            "--heartbeat-interval",
            "1s",
            "--telemetry-interval",
            "300ms",
        ],
    );
    gh.ok("PUT", "/mgmt/gateways/edge/apis/echo", None).await;
    // The instance has applied the current revision and said so in a heartbeat.
    let started = Instant::now();
    loop {
        let status = gh.ok("GET", "/mgmt/gateways/edge/status", None).await;
        let instance = status["instances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == "edge-pod-1")
            .cloned();
        if instance.is_some_and(|i| i["sync"] == "inSync" && i["link"] == "connected") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the gateway instance did not report in sync: {status}\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // This minute's traffic is real: through the self-hosted gateway, 4 calls with the key and
    // 2 without (blocked). Sent well inside one minute, so it makes one bar.
    let unix = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    };
    let started = Instant::now();
    let warm_minute = loop {
        let r = gh
            .http
            .get(gw.url("/echo/warm"))
            .header("Ocp-Apim-Subscription-Key", &key)
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            break unix() / 60 * 60;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "edge does not serve echo"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The one successful warm-up call is counted too (the refused ones never matched an API).
    let started = Instant::now();
    while echo_calls(&gh).await != 1 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the warm-up call is not reported"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    while unix() % 60 >= 55 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let now = unix();
    let m = now - now % 60;
    for with_key in [true, true, true, true, false, false] {
        let mut rb = gh.http.get(gw.url("/echo/live"));
        if with_key {
            rb = rb.header("Ocp-Apim-Subscription-Key", &key);
        }
        let status = rb.send().await.unwrap().status().as_u16();
        assert_eq!(status, if with_key { 200 } else { 401 });
    }
    assert_eq!(
        unix() - unix() % 60,
        m,
        "the live calls stayed in one minute"
    );
    let started = Instant::now();
    while echo_calls(&gh).await != 7 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the live calls did not reach the reports"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The warm-up call adds a bar of its own if it fell in the minute before.
    let extra = u64::from(warm_minute != m);

    // An hour of history, minute by minute.
    let batch = Batch {
        id: format!("admin-console-{now}"),
        instance: "edge-pod-1".into(),
        created: now,
        aggregates: vec![
            aggregate(
                m - 50 * 60,
                "echo",
                &[(200, 2_000), (200, 3_000), (502, 9_000)],
            ),
            aggregate(
                m - 20 * 60,
                "echo",
                &[
                    (200, 1_000),
                    (200, 1_500),
                    (200, 2_500),
                    (200, 4_000),
                    (401, 100),
                ],
            ),
            aggregate(m - 5 * 60, "echo", &[(200, 1_000); 6]),
            aggregate(m - 30 * 60, "pets", &[(200, 5_000); 5]),
            aggregate(m - 10 * 60, "pets", &[(200, 5_000), (404, 300)]),
        ],
        samples: vec![],
        dropped_batches: 0,
    };
    let resp = gh
        .http
        .post(gh.control("/gateway/v1/telemetry"))
        .header("authorization", &token)
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer, json!({"accepted": 5, "duplicate": false}));
    let expect = json!({
        "gateway": "edge",
        "instance": "edge-pod-1",
        "apis": [
            {"id": "echo", "calls": 21, "success": 17, "blocked": 3, "failed": 1,
             "requestBars": 4 + extra, "errorBars": 3, "latencyPoints": 4 + extra, "recentCalls": 13},
            {"id": "pets", "calls": 7, "success": 6, "blocked": 0, "failed": 0,
             "requestBars": 2, "errorBars": 0, "latencyPoints": 2, "recentCalls": 0},
        ],
    });

    let artifacts = root.join("test-artifacts/admin");
    let summary = support::run_browser_script(
        "admin.mjs",
        &chromium,
        &artifacts,
        &[
            ("ADMIN_URL", gh.control("/admin/")),
            ("ADMIN_TOKEN", gh.token.clone()),
            ("EXPECT", expect.to_string()),
        ],
        "ADMIN OK ",
        || gh.log(),
    )
    .await;

    // What the browser read, checked again here.
    assert_eq!(summary["instanceState"], "inSync");
    let current = summary["currentRevision"].as_str().unwrap();
    assert_eq!(summary["revision"], format!("{current} / {current}"));
    let echo = &summary["apis"]["echo"];
    // The live minute holds the 6 live calls and, unless it fell a minute earlier, the warm-up.
    let live = if extra == 0 {
        json!([3, 5, 6, 7])
    } else {
        json!([3, 5, 6, 1, 6])
    };
    assert_eq!(echo["requestValues"], live);
    assert_eq!(
        (echo["calls"].as_u64(), echo["failed"].as_u64()),
        (Some(21), Some(1))
    );
    assert_eq!(
        echo["latencyLines"], extra,
        "only the live minutes can be adjacent"
    );
    assert_eq!(summary["apis"]["pets"]["requestValues"], json!([5, 2]));
    // The p95 column: the second slowest of echo's 21 calls (the slowest is the hand-built
    // 9 ms one; the next is 4 ms or a slower live call), and the slowest of pets' 7; within the
    // sketch's 2%.
    let p95 = echo["p95"].as_f64().unwrap();
    assert!((4.0 * 0.98..9.0 * 1.02).contains(&p95), "echo: p95 {p95}");
    let p95 = summary["apis"]["pets"]["p95"].as_f64().unwrap();
    assert!((p95 - 5.0).abs() / 5.0 < 0.02, "pets: p95 {p95}");
    assert_eq!(summary["recentCalls"], 13);
    // Every step left a screenshot.
    let steps = summary["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 5, "{summary}");
    let shots = std::fs::read_dir(&artifacts).unwrap().count();
    assert_eq!(shots, steps.len(), "screenshots in {}", artifacts.display());
}
