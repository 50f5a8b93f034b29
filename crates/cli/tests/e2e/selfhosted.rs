//! Self-hosted gateways against a real control plane: tokens, long-poll sync, fleet status,
//! fail static, backup and catch-up (DESIGN §6 and §7). Processes are killed for real.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use crate::support::{Backend, Gatehouse, GatewayProc, Relay};

/// A control plane with gateway `edge`, APIs `a` and `b` (b not assigned), and a subscription.
async fn setup(tag: &str, backend: &Backend) -> (Gatehouse, String, String) {
    let gh = Gatehouse::up(tag, &[]).await;
    gh.simple_api("a", "a", &backend.url(), false).await;
    gh.simple_api("b", "b", &backend.url(), false).await;
    gh.ok(
        "PUT",
        "/mgmt/gateways/edge",
        Some(json!({"locationData": {"name": "lab"}})),
    )
    .await;
    gh.ok("PUT", "/mgmt/gateways/edge/apis/a", None).await;
    let key = gh.subscription("everything", "/apis").await;
    let token = token(&gh, "edge").await;
    (gh, token, key)
}

async fn token(gh: &Gatehouse, gateway: &str) -> String {
    gh.gateway_token(gateway).await
}

fn parse_token(token: &str) -> gatehouse_model::token::GatewayToken {
    gatehouse_model::token::GatewayToken::parse(token).unwrap()
}

async fn status(gw: &GatewayProc, path: &str, key: &str) -> u16 {
    gw.http
        .get(gw.url(path))
        .header("Ocp-Apim-Subscription-Key", key)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

async fn until_status(
    gw: &GatewayProc,
    path: &str,
    key: &str,
    want: u16,
    within: Duration,
) -> Duration {
    let start = Instant::now();
    loop {
        if status(gw, path, key).await == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{path} did not answer {want} within {within:?}\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Signs a token the way the control plane does, for expiries the API would refuse.
fn sign(gateway: &str, expiry: &str, key: &str) -> String {
    let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA512, key.as_bytes());
    let tag = aws_lc_rs::hmac::sign(&k, format!("{gateway}\n{expiry}").as_bytes());
    format!(
        "GatewayKey {gateway}&{expiry}&{}",
        base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
    )
}

fn p99(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[((v.len() as f64) * 0.99).ceil() as usize - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serves_only_assigned_apis_and_follows_changes() {
    let backend = Backend::start().await;
    let (gh, token, key) = setup("sh-assigned", &backend).await;
    let gw = GatewayProc::spawn(
        "sh-assigned-gw",
        &gh.control(""),
        &token,
        &["--heartbeat-interval", "1s"],
    );
    let ready = gw
        .wait_ready(Duration::from_secs(10), |r| r["state"] == "ready")
        .await;
    assert_eq!(ready["source"], "control-plane");
    assert!(ready["configRevision"].as_u64().is_some());

    assert_eq!(status(&gw, "/a/x", &key).await, 200);
    assert_eq!(
        status(&gw, "/b/x", &key).await,
        404,
        "an unassigned API must not be served"
    );
    assert_eq!(status(&gw, "/a/x", "wrong-key-wrong-key").await, 401);

    // Unassign: gone within a second.
    gh.ok("DELETE", "/mgmt/gateways/edge/apis/a", None).await;
    let gone = until_status(&gw, "/a/x", &key, 404, Duration::from_secs(1)).await;
    // Assign b: served within a second.
    gh.ok("PUT", "/mgmt/gateways/edge/apis/b", None).await;
    let came = until_status(&gw, "/b/x", &key, 200, Duration::from_secs(1)).await;
    println!("unassigned API gone after {gone:?}; assigned API served after {came:?}");

    // 100 successive changes with long-poll: p99 from the management call to the effect.
    let mut latencies = Vec::new();
    for i in 0..100 {
        let sub = format!("s{i}");
        gh.ok(
            "PUT",
            &format!("/mgmt/subscriptions/{sub}"),
            Some(json!({"scope": "/apis/b"})),
        )
        .await;
        let k = gh
            .ok(
                "POST",
                &format!("/mgmt/subscriptions/{sub}/listSecrets"),
                None,
            )
            .await;
        let k = k["primaryKey"].as_str().unwrap().to_owned();
        // The subscription exists from the PUT's answer on; measure from there.
        let start = Instant::now();
        until_status(&gw, "/b/y", &k, 200, Duration::from_secs(2)).await;
        latencies.push(start.elapsed());
    }
    let worst = *latencies.iter().max().unwrap();
    let p99 = p99(latencies.clone());
    let mean = latencies.iter().sum::<Duration>() / latencies.len() as u32;
    println!("long-poll: 100 changes, mean {mean:?}, p99 {p99:?}, max {worst:?}");
    assert!(p99 < Duration::from_secs(1), "p99 {p99:?}");

    // The fleet status lists the instance, in sync.
    let st = gh.ok("GET", "/mgmt/gateways/edge/status", None).await;
    assert_eq!(st["instances"].as_array().unwrap().len(), 1, "{st}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let st = gh.ok("GET", "/mgmt/gateways/edge/status", None).await;
        let inst = &st["instances"][0];
        if inst["sync"] == "inSync" && inst["link"] == "connected" {
            assert_eq!(inst["state"], "ready");
            assert!(inst["tokenExpiry"].as_str().is_some());
            break;
        }
        assert!(Instant::now() < deadline, "instance never in sync: {st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn polling_without_long_poll_is_bounded_by_the_interval() {
    let backend = Backend::start().await;
    let (gh, token, key) = setup("sh-poll", &backend).await;
    let gw = GatewayProc::spawn(
        "sh-poll-gw",
        &gh.control(""),
        &token,
        &["--no-long-poll", "--poll-interval", "1s"],
    );
    gw.wait_ready(Duration::from_secs(10), |r| r["state"] == "ready")
        .await;
    assert_eq!(status(&gw, "/a/x", &key).await, 200);
    let mut latencies = Vec::new();
    for i in 0..8 {
        let path = format!("p{i}");
        gh.simple_api(&path, &path, &backend.url(), true).await;
        gh.ok("PUT", &format!("/mgmt/gateways/edge/apis/{path}"), None)
            .await;
        let start = Instant::now();
        until_status(&gw, &format!("/{path}/z"), "", 200, Duration::from_secs(3)).await;
        latencies.push(start.elapsed());
    }
    let worst = *latencies.iter().max().unwrap();
    println!("polling every 1s: 8 changes, worst {worst:?}, all {latencies:?}");
    assert!(worst <= Duration::from_millis(1500), "worst {worst:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expired_forged_and_revoked_tokens_are_refused() {
    let backend = Backend::start().await;
    let (gh, token, key) = setup("sh-tokens", &backend).await;
    let keys = gh.ok("POST", "/mgmt/gateways/edge/listKeys", None).await;
    let primary = keys["primary"].as_str().unwrap().to_owned();
    let expired = sign("edge", "202001010000", &primary);
    let forged = sign("edge", "209912312359", "not-the-key");
    let config = |t: String| {
        let http = gh.http.clone();
        let url = gh.control("/gateway/v1/config?wait=0");
        async move {
            let r = http
                .get(url)
                .header("Authorization", t)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (s, _) = config(token.clone()).await;
    assert_eq!(s, 200);
    // One answer for every refused token (no probing which check failed); the reason is in
    // the control plane's log.
    let (s, body) = config(expired.clone()).await;
    assert_eq!(s, 401);
    assert!(body.contains("expired"), "{body}");
    assert_eq!(config(forged).await, (401, body.clone()));
    assert_eq!(
        config("GatewayKey nonsense".into()).await,
        (401, body.clone())
    );
    let log = gh.log();
    assert!(log.contains("expired at"), "{log}");
    assert!(log.contains("matches neither gateway key"), "{log}");
    assert!(log.contains("malformed"), "{log}");
    assert_eq!(config(String::new()).await.0, 401);
    // Tokens longer than 30 days are not issued.
    let far = gh
        .mgmt(
            "POST",
            "/mgmt/gateways/edge/generateToken",
            Some(json!({"expiry": "2099-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(far.0, 400);

    // A running gateway whose token is revoked keeps serving and says why.
    let mut gw = GatewayProc::spawn(
        "sh-tokens-gw",
        &gh.control(""),
        &token,
        &[
            "--backup-dir",
            "BACKUP",
            "--heartbeat-interval",
            "1s",
            "--name",
            "holder",
        ],
    );
    // (Relaunch with the backup dir inside the gateway's own temp dir.)
    gw.kill9();
    let backup = gw.dir.join("backup");
    gw.args.retain(|a| a != "BACKUP" && a != "--backup-dir");
    gw.args
        .extend(["--backup-dir".to_owned(), backup.display().to_string()]);
    // A backup key keeps the backup readable when the gateway restarts with another token.
    let backup_key = base64::engine::general_purpose::STANDARD.encode([3u8; 32]);
    gw.envs
        .push(("GATEHOUSE_BACKUP_KEY".into(), backup_key.clone()));
    gw.launch();
    gw.wait_ready(Duration::from_secs(10), |r| r["state"] == "ready")
        .await;
    gh.ok(
        "POST",
        "/mgmt/gateways/edge/regenerateKey",
        Some(json!({"keyType": "primary"})),
    )
    .await;
    let r = gw
        .wait_ready(Duration::from_secs(5), |r| r["state"] == "stale")
        .await;
    assert!(r["reason"].as_str().unwrap().contains("refused"), "{r}");
    assert_eq!(
        status(&gw, "/a/x", &key).await,
        200,
        "a gateway with a revoked token keeps serving"
    );
    assert!(
        gw.log().contains("refused"),
        "the refusal is not in the log"
    );
    // The refusal is counted against the gateway (not written to any instance: a refused call
    // proves nothing about who sent it).
    let st = gh.ok("GET", "/mgmt/gateways/edge/status", None).await;
    assert!(st["rejectedTokens"].as_u64().unwrap() >= 1, "{st}");
    assert_eq!(st["lastTokenRejection"], "invalidSignature", "{st}");

    // Restart it with an expired token: it serves from its backup and says the token expired.
    gw.kill9();
    let keys = gh.ok("POST", "/mgmt/gateways/edge/listKeys", None).await;
    let expired = sign("edge", "202001010000", keys["primary"].as_str().unwrap());
    gw.envs = vec![
        ("GATEHOUSE_TOKEN".into(), expired),
        ("GATEHOUSE_BACKUP_KEY".into(), backup_key),
    ];
    gw.launch();
    let r = gw
        .wait_ready(Duration::from_secs(5), |r| {
            r["state"] == "stale" && r["reason"].as_str().is_some_and(|s| s.contains("expired"))
        })
        .await;
    assert_eq!(r["source"], "backup");
    assert!(
        r["tokenWarning"].as_str().unwrap().contains("expired"),
        "{r}"
    );
    assert_eq!(status(&gw, "/a/x", &key).await, 200);
    assert!(gw.log().contains("expired"));
    let st = gh.ok("GET", "/mgmt/gateways/edge/status", None).await;
    assert_eq!(st["lastTokenRejection"], "expired", "{st}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_control_plane_fails_no_request() {
    let backend = Backend::start().await;
    let (mut gh, token, key) = setup("sh-kill", &backend).await;
    let gw = GatewayProc::spawn("sh-kill-gw", &gh.control(""), &token, &[]);
    gw.wait_ready(Duration::from_secs(10), |r| r["state"] == "ready")
        .await;

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let client = reqwest::Client::new();
        let url = gw.url("/a/load");
        let key = key.clone();
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match client
                    .get(&url)
                    .header("Ocp-Apim-Subscription-Key", &key)
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    gh.signal("KILL");
    gh.wait();
    let r = gw
        .wait_ready(Duration::from_secs(5), |r| r["state"] == "stale")
        .await;
    assert!(
        r["reason"].as_str().unwrap().contains("cannot reach"),
        "{r}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!("control plane killed under load: {ok} ok, {failed} failed");
    assert_eq!(failed, 0);
    assert!(ok > 100);
    // The status probe still says the gateway can serve.
    assert_eq!(status(&gw, "/status-0123456789abcdef", "").await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn starts_from_backup_or_refuses_clearly() {
    let backend = Backend::start().await;
    let (mut gh, token, key) = setup("sh-backup", &backend).await;
    let mut gw = GatewayProc::spawn("sh-backup-gw", &gh.control(""), &token, &[]);
    gw.kill9();
    let backup = gw.dir.join("backup");
    gw.args
        .extend(["--backup-dir".to_owned(), backup.display().to_string()]);
    gw.launch();
    gw.wait_ready(Duration::from_secs(10), |r| r["state"] == "ready")
        .await;
    // Three generations: two more changes that reach the gateway as whole snapshots. (A delta
    // is appended to the delta log instead, so each change is made while the gateway is down
    // and the control plane restarted, which forgets its deltas.)
    for i in 0..2 {
        // The configuration is saved just after it is applied: let it be before the kill.
        let store =
            gatehouse_gateway::backup::Backup::open(&backup, &parse_token(&token), None).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while store.generations().unwrap().len() < i + 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "generation {} never written",
                i + 1
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        gw.kill9();
        gh.ok(
            "PUT",
            &format!("/mgmt/subscriptions/gen{i}"),
            Some(json!({"scope": "/apis/a"})),
        )
        .await;
        let rev = gh.ok("GET", "/mgmt/gateways/edge/status", None).await["currentRevision"]
            .as_u64()
            .unwrap();
        gh.signal("KILL");
        gh.wait();
        gh.start().await;
        gw.launch();
        gw.wait_ready(Duration::from_secs(30), |r| {
            r["configRevision"].as_u64() == Some(rev)
        })
        .await;
    }
    let newest = gw.readyz().await.unwrap()["configRevision"]
        .as_u64()
        .unwrap();
    let backup_store =
        gatehouse_gateway::backup::Backup::open(&backup, &parse_token(&token), None).unwrap();
    // The backup is written just after the configuration is applied: wait for the third.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let generations = loop {
        let generations = backup_store.generations().unwrap();
        if generations.len() >= 3 || std::time::Instant::now() > deadline {
            break generations;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(generations.len(), 3, "{generations:?}");
    // Nothing in the backup holds the subscription key in clear.
    for (_, path) in &generations {
        let text = std::fs::read(path).unwrap();
        let decoded = backup_store.read(path).unwrap();
        assert!(!String::from_utf8_lossy(&text).contains(&key));
        assert!(!serde_json::to_string(&decoded).unwrap().contains(&key));
    }

    // The control plane goes away; the gateway restarts from its backup within 2 s.
    gh.signal("KILL");
    gh.wait();
    gw.kill9();
    let started = Instant::now();
    gw.launch();
    until_status(&gw, "/a/x", &key, 200, Duration::from_secs(2)).await;
    let served_after = started.elapsed();
    let r = gw.readyz().await.unwrap();
    assert_eq!(r["source"], "backup");
    assert_eq!(r["state"], "stale");
    assert_eq!(r["configRevision"].as_u64(), Some(newest));
    assert_eq!(status(&gw, "/b/x", &key).await, 404);
    println!("restarted from backup with the control plane down: serving after {served_after:?}");

    // Corrupt the newest generation: the previous one is served, and the bad one set aside.
    gw.kill9();
    let (_, newest_path) = backup_store.generations().unwrap()[0].clone();
    let mut bytes = std::fs::read(&newest_path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] = bytes[mid].wrapping_add(1);
    std::fs::write(&newest_path, bytes).unwrap();
    gw.launch();
    let r = gw
        .wait_ready(Duration::from_secs(3), |r| r["source"] == "backup")
        .await;
    assert!(r["configRevision"].as_u64().unwrap() < newest, "{r}");
    assert_eq!(status(&gw, "/a/x", &key).await, 200);
    assert!(gw.log().contains("unusable"), "{}", gw.log());
    assert!(newest_path.with_extension("corrupt").exists());

    // Without a backup, and no control plane: exit 1 after the start-up timeout, one sentence.
    let mut bare = GatewayProc::spawn(
        "sh-bare",
        &gh.control(""),
        &token,
        &["--startup-timeout", "2s"],
    );
    let started = Instant::now();
    // Meanwhile it is never ready: no configuration is not an empty configuration.
    let r = bare
        .wait_ready(Duration::from_secs(2), |r| r["state"] == "starting")
        .await;
    assert!(r["configRevision"].is_null());
    let probe = bare
        .http
        .get(bare.url("/status-0123456789abcdef"))
        .send()
        .await
        .unwrap();
    assert_eq!(probe.status(), 503);
    let code = bare.wait_exit(Duration::from_secs(20));
    assert_eq!(code, Some(1));
    assert!(started.elapsed() >= Duration::from_secs(2));
    let log = bare.log();
    let sentence = log
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(sentence.contains("no configuration after 2s"), "{sentence}");
    assert!(sentence.contains(&gh.control("")), "{sentence}");
    assert!(sentence.contains("--backup-dir"), "{sentence}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_never_tears_the_backup() {
    let backend = Backend::start().await;
    let (gh, token, _key) = setup("sh-torn", &backend).await;
    let mut gw = GatewayProc::spawn("sh-torn-gw", &gh.control(""), &token, &[]);
    gw.kill9();
    let backup = gw.dir.join("backup");
    gw.args
        .extend(["--backup-dir".to_owned(), backup.display().to_string()]);

    // Configuration keeps changing in the background.
    let stop = Arc::new(AtomicBool::new(false));
    let changer = {
        let stop = stop.clone();
        let http = gh.http.clone();
        let url = gh.control("/mgmt/subscriptions");
        let auth = gh.token.clone();
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let _ = http
                    .put(format!("{url}/churn{}", i % 20))
                    .bearer_auth(&auth)
                    .json(&json!({"scope": "/apis/a", "displayName": format!("n{i}")}))
                    .send()
                    .await;
                i += 1;
            }
        })
    };
    let store =
        gatehouse_gateway::backup::Backup::open(&backup, &parse_token(&token), None).unwrap();
    let mut verified = 0;
    for round in 0..10 {
        gw.launch();
        tokio::time::sleep(Duration::from_millis(150 + 37 * round)).await;
        gw.kill9();
        for (_, path) in store.generations().unwrap() {
            store
                .read(&path)
                .unwrap_or_else(|e| panic!("round {round}: {} is torn: {e}", path.display()));
            verified += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    changer.await.unwrap();
    println!("kill -9 loop: 10 kills, {verified} generation checks, none torn");
    assert!(verified > 0);
    // After the storm, a start from the backup works.
    gw.launch();
    gw.wait_ready(Duration::from_secs(5), |r| {
        r["configRevision"].as_u64().is_some()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn catches_up_after_a_partition_and_reports_two_instances() {
    let backend = Backend::start().await;
    let (gh, token, key) = setup("sh-partition", &backend).await;
    let mut relay = Relay::start(format!("127.0.0.1:{}", gh.control_port).parse().unwrap()).await;
    let direct = GatewayProc::spawn(
        "sh-direct",
        &gh.control(""),
        &token,
        &["--name", "direct", "--heartbeat-interval", "1s"],
    );
    let cut = GatewayProc::spawn(
        "sh-cut",
        &relay.url(),
        &token,
        &[
            "--name",
            "behind-relay",
            "--heartbeat-interval",
            "1s",
            "--retry-max",
            "1s",
        ],
    );
    direct
        .wait_ready(Duration::from_secs(10), |r| r["state"] == "ready")
        .await;
    cut.wait_ready(Duration::from_secs(10), |r| r["state"] == "ready")
        .await;

    // Both in sync.
    let both_in_sync = || async {
        let st = gh.ok("GET", "/mgmt/gateways/edge/status", None).await;
        let inst = st["instances"].as_array().unwrap().clone();
        inst.len() == 2
            && inst
                .iter()
                .all(|i| i["sync"] == "inSync" && i["link"] == "connected")
    };
    gh.eventually(Duration::from_secs(5), both_in_sync).await;

    // Cut one off, change the configuration.
    relay.cut();
    cut.wait_ready(Duration::from_secs(5), |r| r["state"] == "stale")
        .await;
    gh.ok(
        "PUT",
        "/mgmt/subscriptions/late",
        Some(json!({"scope": "/apis/a"})),
    )
    .await;
    let late = gh
        .ok("POST", "/mgmt/subscriptions/late/listSecrets", None)
        .await["primaryKey"]
        .as_str()
        .unwrap()
        .to_owned();
    until_status(&direct, "/a/x", &late, 200, Duration::from_secs(1)).await;
    assert_eq!(
        status(&cut, "/a/x", &late).await,
        401,
        "the cut-off gateway cannot know the new key yet"
    );
    assert_eq!(
        status(&cut, "/a/x", &key).await,
        200,
        "the cut-off gateway keeps serving"
    );

    // The fleet status tells them apart.
    let deadline = Instant::now() + Duration::from_secs(5);
    let st = loop {
        let (_, v) = gh.mgmt("GET", "/mgmt/gateways/edge/status", None).await;
        let find = |name: &str| {
            v["instances"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["name"] == name)
                .cloned()
        };
        if find("direct").is_some_and(|i| i["sync"] == "inSync")
            && find("behind-relay").is_some_and(|i| i["sync"] == "behind")
        {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "fleet status never told the instances apart: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("fleet status while partitioned: {st}");
    // Three missed heartbeats (1 s each) and the cut-off instance is offline.
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        let (_, v) = gh.mgmt("GET", "/mgmt/gateways/edge/status", None).await;
        let link = |name: &str| {
            v["instances"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["name"] == name)
                .map(|i| i["link"].clone())
        };
        if link("behind-relay") == Some(json!("offline")) {
            assert_eq!(link("direct"), Some(json!("connected")));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cut-off instance never went offline: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Restore the link: the change is applied within 2 s.
    relay.restore().await;
    let caught_up = until_status(&cut, "/a/x", &late, 200, Duration::from_secs(2)).await;
    println!("caught up {caught_up:?} after the link came back");
    cut.wait_ready(Duration::from_secs(2), |r| r["state"] == "ready")
        .await;
    gh.eventually(Duration::from_secs(5), both_in_sync).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_never_travel_in_clear_and_backups_can_be_encrypted() {
    let backend = Backend::start().await;
    let (gh, token, key) = setup("sh-secrets", &backend).await;
    let resp = gh
        .http
        .get(gh.control("/gateway/v1/config?wait=0"))
        .header("Authorization", &token)
        .send()
        .await
        .unwrap();
    let etag = resp.headers()["etag"].to_str().unwrap().to_owned();
    let wire = resp.text().await.unwrap();
    assert!(
        !wire.contains(&key),
        "a subscription key travelled in clear"
    );
    let snapshot: Value = serde_json::from_str(&wire).unwrap();
    assert_eq!(snapshot["gatewayId"], "edge");
    assert_eq!(
        snapshot["apis"].as_array().unwrap().len(),
        1,
        "only the assigned API ships"
    );
    // Long-poll: with the current ETag and no change, a short wait answers 304.
    let started = Instant::now();
    let r = gh
        .http
        .get(gh.control("/gateway/v1/config?wait=1"))
        .header("Authorization", &token)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    assert!(started.elapsed() >= Duration::from_millis(900));

    // With a backup key, nothing readable is left on disk.
    let backup_key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let mut gw = GatewayProc::spawn("sh-secrets-gw", &gh.control(""), &token, &[]);
    gw.kill9();
    let backup = gw.dir.join("backup");
    gw.args
        .extend(["--backup-dir".to_owned(), backup.display().to_string()]);
    gw.envs
        .push(("GATEHOUSE_BACKUP_KEY".into(), backup_key.clone()));
    gw.launch();
    gw.wait_ready(Duration::from_secs(10), |r| r["state"] == "ready")
        .await;
    let store =
        gatehouse_gateway::backup::Backup::open(&backup, &parse_token(&token), Some(&backup_key))
            .unwrap();
    // The backup is written right after the configuration is applied.
    let deadline = Instant::now() + Duration::from_secs(2);
    while store.generations().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "no backup was written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let generations = store.generations().unwrap();
    for (_, path) in &generations {
        let envelope: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        assert_eq!(envelope["keySource"], "backupKey");
        let payload = base64::engine::general_purpose::STANDARD
            .decode(envelope["payload"].as_str().unwrap())
            .unwrap();
        let text = String::from_utf8_lossy(&payload);
        assert!(
            !text.contains("everything") && !text.contains("\"a\""),
            "the backup is readable"
        );
        assert!(store.read(path).is_ok());
    }
    assert!(!gw.log().contains(&key));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_one_subscription_change_ships_a_small_delta() {
    let backend = Backend::start().await;
    let (gh, token, _key) = setup("sh-delta", &backend).await;
    for i in 0..300 {
        gh.ok(
            "PUT",
            &format!("/mgmt/subscriptions/bulk{i}"),
            Some(json!({"scope": "/apis/a"})),
        )
        .await;
    }
    let gw = GatewayProc::spawn("sh-delta-gw", &gh.control(""), &token, &[]);
    gw.wait_ready(Duration::from_secs(10), |r| r["state"] == "ready")
        .await;

    let fetch = |etag: Option<String>| {
        let mut req = gh
            .http
            .get(gh.control("/gateway/v1/config?wait=0"))
            .header("Authorization", &token)
            .header(
                "Accept",
                "application/vnd.gatehouse.delta+json, application/json",
            );
        if let Some(e) = etag {
            req = req.header("If-None-Match", e);
        }
        async move {
            let r = req.send().await.unwrap();
            let ct = r
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            let etag = r
                .headers()
                .get("etag")
                .map(|v| v.to_str().unwrap().to_owned());
            (r.status().as_u16(), ct, etag, r.bytes().await.unwrap())
        }
    };
    let (status, ct, etag, full) = fetch(None).await;
    assert_eq!((status, ct.as_str()), (200, "application/json"));

    // Suspend one subscription: the next answer is a delta naming just that one.
    gh.ok(
        "PATCH",
        "/mgmt/subscriptions/bulk7",
        Some(json!({"state": "suspended"})),
    )
    .await;
    let (status, ct, _, delta) = fetch(etag).await;
    assert_eq!(status, 200);
    assert_eq!(ct, "application/vnd.gatehouse.delta+json");
    let d: Value = serde_json::from_slice(&delta).unwrap();
    assert_eq!(d["subscriptions"].as_array().unwrap().len(), 1, "{d}");
    assert_eq!(d["subscriptions"][0]["id"], "bulk7");
    println!(
        "301 subscriptions: whole snapshot {} bytes, one-subscription delta {} bytes",
        full.len(),
        delta.len()
    );
    assert!(delta.len() * 50 < full.len());

    // The gateway, which takes deltas, ends up with exactly the configuration the control plane has.
    let current = gh.ok("GET", "/mgmt/gateways/edge/status", None).await["currentRevision"]
        .as_u64()
        .unwrap();
    gw.wait_ready(Duration::from_secs(2), |r| {
        r["configRevision"].as_u64() == Some(current)
    })
    .await;
    let keys = gh
        .ok("POST", "/mgmt/subscriptions/bulk7/listSecrets", None)
        .await;
    assert_eq!(
        status_of(&gw, "/a/x", keys["primaryKey"].as_str().unwrap()).await,
        401
    );
    let keys = gh
        .ok("POST", "/mgmt/subscriptions/bulk8/listSecrets", None)
        .await;
    assert_eq!(
        status_of(&gw, "/a/x", keys["primaryKey"].as_str().unwrap()).await,
        200
    );
    assert!(gw.log().contains("applied configuration"));
}

async fn status_of(gw: &GatewayProc, path: &str, key: &str) -> u16 {
    status(gw, path, key).await
}
