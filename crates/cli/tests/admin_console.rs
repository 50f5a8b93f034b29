//! The admin console end to end: the real `gatehouse up`, a real self-hosted gateway instance
//! heartbeating to it, hand-built telemetry uploaded through `/gateway/v1/telemetry`, and
//! Debian's Chromium (driven by npm's playwright-core through `tests/browser/admin.mjs`)
//! signing in with the admin token, reading the fleet and the traffic charts, and signing out.
//! Screenshots land in `test-artifacts/admin/`. Needs `$GATEHOUSE_CHROMIUM` (scripts/test sets
//! it); without it the test is skipped with a note, except under CI, where that fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "e2e/support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gatehouse_model::telemetry::{Aggregate, Batch, Outcome};
use serde_json::{Value, json};
use support::{Gatehouse, GatewayProc};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

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
    let Some(chromium) = std::env::var_os("GATEHOUSE_CHROMIUM").map(PathBuf::from) else {
        if std::env::var_os("CI").is_some() {
            panic!("set GATEHOUSE_CHROMIUM (scripts/test installs Debian's chromium and sets it)");
        }
        eprintln!(
            "note: GATEHOUSE_CHROMIUM is not set, so the admin console's browser test was \
             skipped; run scripts/test, or set it to /usr/bin/chromium"
        );
        return;
    };
    assert!(
        chromium.is_file(),
        "GATEHOUSE_CHROMIUM={} is not a file; scripts/test installs Debian's chromium",
        chromium.display()
    );
    let root = repo_root();
    assert!(
        root.join("node_modules/playwright-core/package.json")
            .is_file(),
        "node_modules/playwright-core is missing: run `npm ci` in {}",
        root.display()
    );

    let gh = Gatehouse::up("admin-console", &[]).await;
    gh.ok(
        "PUT",
        "/mgmt/gateways/edge",
        Some(json!({"locationData": {"name": "lab"}, "description": "The lab's gateway"})),
    )
    .await;
    let token = gh
        .ok(
            "POST",
            "/mgmt/gateways/edge/generateToken",
            Some(json!({"keyType": "primary"})),
        )
        .await["value"]
        .as_str()
        .unwrap()
        .to_owned();
    let gw = GatewayProc::spawn(
        "admin-console-gw",
        &gh.control(""),
        &token,
        &["--name", "edge-pod-1", "--heartbeat-interval", "1s"],
    );
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

    // Traffic of the last hour, minute by minute.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let m = now - now % 60;
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
            aggregate(m, "echo", &[(200, 12_000), (200, 14_000)]),
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
    assert_eq!(answer, json!({"accepted": 6, "duplicate": false}));
    let expect = json!({
        "gateway": "edge",
        "instance": "edge-pod-1",
        "apis": [
            {"id": "echo", "calls": 16, "success": 14, "blocked": 1, "failed": 1,
             "requestBars": 4, "errorBars": 2, "latencyPoints": 4, "recentCalls": 8},
            {"id": "pets", "calls": 7, "success": 6, "blocked": 0, "failed": 0,
             "requestBars": 2, "errorBars": 0, "latencyPoints": 2, "recentCalls": 0},
        ],
    });

    let artifacts = root.join("test-artifacts/admin");
    let _ = std::fs::remove_dir_all(&artifacts);
    let started = Instant::now();
    let mut child = Command::new("node")
        .arg(root.join("tests/browser/admin.mjs"))
        .current_dir(&root)
        .env("ADMIN_URL", gh.control("/admin/"))
        .env("ADMIN_TOKEN", &gh.token)
        .env("EXPECT", expect.to_string())
        .env("CHROMIUM", &chromium)
        .env("ARTIFACTS", &artifacts)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run node: install Node.js 20");
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the admin console run did not finish within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!(
        "admin console in the browser ({:.1} s):\n{stdout}{stderr}",
        started.elapsed().as_secs_f64()
    );
    assert!(
        status.success(),
        "the admin console run failed ({status}); screenshots are in {}:\n{stdout}\n{stderr}\n--- gatehouse log ---\n{}",
        artifacts.display(),
        gh.log()
    );
    let summary: Value = stdout
        .lines()
        .find_map(|l| l.strip_prefix("ADMIN OK "))
        .map(|j| serde_json::from_str(j).unwrap())
        .expect("the run printed no summary");

    // What the browser read, checked again here.
    assert_eq!(summary["instanceState"], "inSync");
    let current = summary["currentRevision"].as_str().unwrap();
    assert_eq!(summary["revision"], format!("{current} / {current}"));
    let echo = &summary["apis"]["echo"];
    assert_eq!(echo["requestValues"], json!([3, 5, 6, 2]));
    assert_eq!(
        (echo["calls"].as_u64(), echo["failed"].as_u64()),
        (Some(16), Some(1))
    );
    assert_eq!(echo["latencyLines"], 0, "no two echo buckets are adjacent");
    assert_eq!(summary["apis"]["pets"]["requestValues"], json!([5, 2]));
    // The p95 column: the slowest of 16 and of 7 calls, within the sketch's 2%.
    for (api, exact) in [("echo", 14.0), ("pets", 5.0)] {
        let p95 = summary["apis"][api]["p95"].as_f64().unwrap();
        assert!((p95 - exact).abs() / exact < 0.02, "{api}: p95 {p95}");
    }
    assert_eq!(summary["recentCalls"], 8);
    // Every step left a screenshot.
    let steps = summary["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 5, "{summary}");
    let shots = std::fs::read_dir(&artifacts).unwrap().count();
    assert_eq!(shots, steps.len(), "screenshots in {}", artifacts.display());
}
