//! Configuration changes reach the built-in gateway within a second, while a keep-alive load
//! runs through it without a single failed request.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{Backend, Gatehouse};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn changes_apply_within_a_second_under_load() {
    let backend = Backend::start().await;
    let gh = Gatehouse::up("reload", &[]).await;
    gh.simple_api("steady", "steady", &backend.url(), false)
        .await;
    let steady_key = gh.subscription("steady-sub", "/apis/steady").await;
    let doomed_key = gh.subscription("doomed-sub", "/apis").await;
    let call = |key: String, path: &'static str| {
        let http = gh.http.clone();
        let url = gh.gateway(path);
        async move {
            http.get(url)
                .header("Ocp-Apim-Subscription-Key", key)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    };
    gh.eventually(Duration::from_secs(2), || {
        let c = call(doomed_key.clone(), "/steady/x");
        async move { c.await == 200 }
    })
    .await;

    // The load: keep-alive connections hammering the steady API with a key that stays valid.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()
            .unwrap();
        let url = gh.gateway("/steady/load?n=1");
        let key = steady_key.clone();
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
                        let _ = r.bytes().await;
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Revoke a key: it stops working within a second.
    gh.ok(
        "POST",
        "/mgmt/subscriptions/doomed-sub/regeneratePrimaryKey",
        None,
    )
    .await;
    let revoked_after = gh
        .eventually(Duration::from_secs(1), || {
            let c = call(doomed_key.clone(), "/steady/x");
            async move { c.await == 401 }
        })
        .await;

    // A new API starts routing within a second.
    let started = Instant::now();
    gh.simple_api("fresh", "fresh", &backend.url(), true).await;
    let created_in = started.elapsed();
    let routed_after = gh
        .eventually(Duration::from_secs(1), || {
            let http = gh.http.clone();
            let url = gh.gateway("/fresh/hello");
            async move { http.get(url).send().await.is_ok_and(|r| r.status() == 200) }
        })
        .await;

    // A burst of unrelated changes while the load runs.
    for i in 0..20 {
        gh.ok(
            "PUT",
            &format!("/mgmt/named-values/nv{i}"),
            Some(json!({"value": "v"})),
        )
        .await;
        gh.simple_api(
            &format!("extra{i}"),
            &format!("extra/{i}"),
            &backend.url(),
            true,
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!(
        "load: {ok} ok, {failed} failed; key revoked after {revoked_after:?}; new API routed {routed_after:?} after its last operation was created (creation took {created_in:?})"
    );
    assert_eq!(failed, 0, "requests failed during reconfiguration");
    assert!(ok > 100, "the load barely ran: {ok}");
    assert!(revoked_after < Duration::from_secs(1));
    assert!(routed_after < Duration::from_secs(1));
}
