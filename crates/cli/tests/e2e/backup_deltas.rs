//! Issue #14, backups that scale: a change to one subscription is appended to the backup's
//! delta log instead of rewriting the whole snapshot, and a gateway killed with SIGKILL starts
//! from base + log with its control plane down, serving the last change. A torn last record (a
//! crash mid-write) is cut off with a warning and the gateway serves the revision before it.

use std::time::{Duration, Instant};

use gatehouse_gateway::backup::{Backup, LOG_FILE};
use gatehouse_model::token::GatewayToken;
use serde_json::json;

use crate::support::{Backend, Gatehouse, GatewayProc};

const CHANGES: usize = 5;

async fn status(gw: &GatewayProc, key: &str) -> u16 {
    gw.http
        .get(gw.url("/a/x"))
        .header("Ocp-Apim-Subscription-Key", key)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_gateway_restarts_from_base_and_delta_log_with_its_last_change() {
    let backend = Backend::start().await;
    let mut gh = Gatehouse::up("bk-deltas", &[]).await;
    gh.simple_api("a", "a", &backend.url(), false).await;
    gh.ok("PUT", "/mgmt/gateways/edge", Some(json!({}))).await;
    gh.ok("PUT", "/mgmt/gateways/edge/apis/a", None).await;
    let first = gh.subscription("first", "/apis/a").await;
    let token = gh.gateway_token("edge").await;

    let mut gw = GatewayProc::spawn("bk-deltas-gw", &gh.control(""), &token, &[]);
    gw.kill9();
    let backup = gw.dir.join("backup");
    gw.args
        .extend(["--backup-dir".to_owned(), backup.display().to_string()]);
    gw.launch();
    gw.wait_ready(Duration::from_secs(30), |r| r["state"] == "ready")
        .await;
    assert_eq!(status(&gw, &first).await, 200);

    // N changes, each applied as a delta.
    let mut keys = Vec::new();
    let mut revisions = Vec::new();
    for i in 0..CHANGES {
        keys.push(gh.subscription(&format!("s{i}"), "/apis/a").await);
        let rev = gh.ok("GET", "/mgmt/gateways/edge/status", None).await["currentRevision"]
            .as_u64()
            .unwrap();
        gw.wait_ready(Duration::from_secs(10), |r| {
            r["configRevision"].as_u64() == Some(rev)
        })
        .await;
        revisions.push(rev);
    }
    let newest = gw.readyz().await.unwrap()["configRevision"]
        .as_u64()
        .unwrap();
    assert_eq!(status(&gw, keys.last().unwrap()).await, 200);

    // The backup reaches the newest revision (it is saved just after the change is applied).
    let store = Backup::open(&backup, &GatewayToken::parse(&token).unwrap(), None).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let loaded = store.load_newest().unwrap();
        if loaded.found.as_ref().map(|f| f.0.revision) == Some(newest) {
            assert_eq!(
                loaded.replayed, CHANGES,
                "the changes were not in the delta log"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the backup never reached {newest}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The changes did not rewrite the snapshot: one base, and a log of a few small records.
    let generations = store.generations().unwrap();
    assert_eq!(generations.len(), 1, "{generations:?}");
    let log = backup.join(LOG_FILE);
    let log_bytes = std::fs::metadata(&log).unwrap().len();
    let base_bytes = std::fs::metadata(&generations[0].1).unwrap().len();
    assert!(
        log_bytes < (CHANGES as u64) * 4096,
        "{CHANGES} one-subscription deltas took {log_bytes} bytes (the base is {base_bytes})"
    );
    let text = std::fs::read(&log).unwrap();
    for key in &keys {
        assert!(!String::from_utf8_lossy(&text).contains(key.as_str()));
    }

    // SIGKILL, the control plane gone: the gateway starts from the backup with the last change.
    gh.signal("KILL");
    gh.wait();
    gw.kill9();
    gw.launch();
    let r = gw
        .wait_ready(Duration::from_secs(30), |r| r["source"] == "backup")
        .await;
    assert_eq!(r["configRevision"].as_u64(), Some(newest), "{r}");
    assert_eq!(status(&gw, keys.last().unwrap()).await, 200);
    assert_eq!(status(&gw, &first).await, 200);
    assert!(
        gw.log().contains(&format!("deltas={CHANGES}")),
        "{}",
        gw.log()
    );

    // A crash in the middle of appending the last record: it is cut off with a warning, and
    // the gateway serves the revision before it.
    gw.kill9();
    let whole = std::fs::read(&log).unwrap();
    std::fs::write(&log, &whole[..whole.len() - 7]).unwrap();
    gw.launch();
    let r = gw
        .wait_ready(Duration::from_secs(30), |r| r["source"] == "backup")
        .await;
    assert_eq!(
        r["configRevision"].as_u64(),
        Some(revisions[CHANGES - 2]),
        "{r}"
    );
    assert_eq!(status(&gw, &keys[CHANGES - 2]).await, 200);
    assert_eq!(status(&gw, keys.last().unwrap()).await, 401);
    let out = gw.log();
    assert!(
        out.contains("torn or damaged record") && out.contains("cut short"),
        "{out}"
    );
}
