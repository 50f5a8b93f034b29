//! Issue #12, findings 9 and 13: the backup volume is private and sealed even without a backup
//! key, an old generation cannot be replayed as a newer one, and tokens stay out of banners,
//! `ps` and the environment.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use gatehouse_gateway::backup::Backup;
use gatehouse_model::token::GatewayToken;
use serde_json::json;

use crate::support::{Backend, Gatehouse, GatewayProc, set_policy, temp_dir};

const SECRET: &str = "named-value-s3cr3t-9d1f";

async fn status(gw: &GatewayProc, path: &str, key: &str) -> u16 {
    gw.http
        .get(gw.url(path))
        .header("Ocp-Apim-Subscription-Key", key)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Finding 9: the review found the backup directory 0755, its files 0644 and secret named values
/// in clear without `GATEHOUSE_BACKUP_KEY`, and generations sealed with empty associated data.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backups_are_private_sealed_and_cannot_be_replayed() {
    let backend = Backend::start().await;
    let mut gh = Gatehouse::up("sec-backup", &[]).await;
    gh.simple_api("a", "a", &backend.url(), false).await;
    gh.ok(
        "PUT",
        "/mgmt/named-values/backend-secret",
        Some(json!({"value": SECRET, "secret": true})),
    )
    .await;
    set_policy(
        &gh,
        "/mgmt/apis/a/policy",
        r#"<policies><inbound><base/><set-header name="x-secret" exists-action="override"><value>{{backend-secret}}</value></set-header></inbound><backend><base/></backend><outbound><base/></outbound><on-error><base/></on-error></policies>"#,
    )
    .await;
    gh.ok("PUT", "/mgmt/gateways/edge", Some(json!({}))).await;
    gh.ok("PUT", "/mgmt/gateways/edge/apis/a", None).await;
    let key = gh.subscription("all", "/apis").await;
    let token = gh.gateway_token("edge").await;

    // A volume that starts out world-readable, as a fresh mount often is.
    let mut gw = GatewayProc::spawn("sec-backup-gw", &gh.control(""), &token, &[]);
    gw.kill9();
    let backup = gw.dir.join("backup");
    std::fs::create_dir_all(&backup).unwrap();
    std::fs::set_permissions(&backup, std::fs::Permissions::from_mode(0o755)).unwrap();
    gw.args
        .extend(["--backup-dir".to_owned(), backup.display().to_string()]);
    gw.launch();
    gw.wait_ready(Duration::from_secs(10), |r| r["state"] == "ready")
        .await;
    assert_eq!(status(&gw, "/a/x", &key).await, 200);
    assert_eq!(backend.last().headers["x-secret"], SECRET);

    // Two more revisions, so there are three generations: whole snapshots, which a restarted
    // control plane sends (a delta is appended to the delta log instead).
    for i in 0..2 {
        // The configuration is saved just after it is applied: let it be before the kill.
        let store = gatehouse_gateway::backup::Backup::open(
            &backup,
            &GatewayToken::parse(&token).unwrap(),
            None,
        )
        .unwrap();
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
    let store = Backup::open(&backup, &GatewayToken::parse(&token).unwrap(), None).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let generations = loop {
        let g = store.generations().unwrap();
        if g.len() >= 3 || Instant::now() > deadline {
            break g;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(generations.len(), 3, "{generations:?}");

    assert_eq!(mode(&backup), 0o700, "the backup directory is not private");
    for entry in std::fs::read_dir(&backup).unwrap().flatten() {
        if entry.file_type().unwrap().is_file() {
            assert_eq!(
                mode(&entry.path()),
                0o600,
                "{} is readable by others",
                entry.path().display()
            );
        }
    }
    for (_, path) in &generations {
        let bytes = std::fs::read(path).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        let envelope: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(envelope["keySource"], "gatewayToken");
        let payload = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            envelope["payload"].as_str().unwrap(),
        )
        .unwrap();
        for clear in [SECRET, "backend-secret", "x-secret", key.as_str()] {
            assert!(!text.contains(clear), "{clear} is in {}", path.display());
            assert!(
                !String::from_utf8_lossy(&payload).contains(clear),
                "{clear} is in the payload of {}",
                path.display()
            );
        }
        // The gateway's own key opens it.
        assert!(store.read(path).is_ok());
    }

    // Replay: the oldest generation copied in as the newest, with the control plane gone.
    let (oldest_seq, oldest) = generations.last().unwrap().clone();
    let (newest_seq, _) = generations[0].clone();
    assert!(oldest_seq < newest_seq);
    let replayed = backup.join(format!("snapshot-{:012}.json", newest_seq + 1));
    std::fs::copy(&oldest, &replayed).unwrap();
    gh.signal("KILL");
    gh.wait();
    gw.kill9();
    gw.launch();
    let r = gw
        .wait_ready(Duration::from_secs(10), |r| r["source"] == "backup")
        .await;
    assert_eq!(
        r["configRevision"].as_u64(),
        Some(newest),
        "a replayed generation was served: {r}"
    );
    assert_eq!(status(&gw, "/a/x", &key).await, 200);
    assert_eq!(backend.last().headers["x-secret"], SECRET);
    let log = gw.log();
    assert!(log.contains("unusable"), "{log}");
    // Whole but unopenable files are left where they are, not called corrupt.
    assert!(replayed.exists());
    assert!(!log.contains(SECRET) && !log.contains(&key));
}

/// Finding 13: `up` printed the admin token on every start.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_admin_token_is_printed_only_when_created() {
    let mut gh = Gatehouse::up("sec-banner", &[]).await;
    // The banner is printed just after the listeners answer.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gh.stdout().contains("Admin token:") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first = gh.stdout();
    assert!(
        first.contains(&gh.token),
        "the new token was not shown: {first}"
    );
    gh.signal("TERM");
    assert!(gh.wait());
    gh.start().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gh.stdout().contains("Admin token:") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = gh.stdout();
    assert!(second.contains("Admin token:"), "{second}");
    assert!(
        !second.contains(&gh.token),
        "the admin token was printed again: {second}"
    );
    assert!(second.contains("admin-token"), "{second}");
}

/// Finding 13: a `--token` flag is visible in `ps`; `--token-file` keeps the gateway token out
/// of the command line and the environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_gateway_token_can_come_from_a_file() {
    let backend = Backend::start().await;
    let gh = Gatehouse::up("sec-token-file", &[]).await;
    gh.simple_api("a", "a", &backend.url(), true).await;
    gh.ok("PUT", "/mgmt/gateways/edge", Some(json!({}))).await;
    gh.ok("PUT", "/mgmt/gateways/edge/apis/a", None).await;
    let token = gh.gateway_token("edge").await;
    let signature = GatewayToken::parse(&token).unwrap().signature;

    let dir = temp_dir("sec-token-file");
    let file = dir.join("token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    let mut gw = GatewayProc::spawn(
        "sec-token-file-gw",
        &gh.control(""),
        &token,
        &["--token-file", file.to_str().unwrap()],
    );
    gw.kill9();
    gw.envs.clear();
    gw.launch();
    gw.wait_ready(Duration::from_secs(10), |r| r["state"] == "ready")
        .await;
    assert_eq!(status(&gw, "/a/x", "").await, 200);
    let pid = gw.child.as_ref().unwrap().id();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains(&signature));
    assert!(!String::from_utf8_lossy(&environ).contains(&signature));
    assert!(!gw.log().contains(&signature));

    // Given twice: refused with one sentence, exit 2.
    gw.kill9();
    gw.envs.push(("GATEHOUSE_TOKEN".into(), token.clone()));
    gw.launch();
    assert_eq!(gw.wait_exit(Duration::from_secs(10)), Some(2));
    assert!(gw.log().contains("given twice"), "{}", gw.log());

    // On the command line it works, with a warning about ps.
    gw.envs.clear();
    gw.args
        .retain(|a| a != "--token-file" && a != file.to_str().unwrap());
    gw.args.extend(["--token".to_owned(), token.clone()]);
    gw.launch();
    gw.wait_ready(Duration::from_secs(10), |r| r["state"] == "ready")
        .await;
    assert!(gw.log().contains("(ps)"), "{}", gw.log());
    std::fs::remove_dir_all(dir).ok();
}
