//! Issue #13, the listeners: the gateway serves HTTPS with HTTP/2 and HTTP/1.1 through ALPN,
//! picks a hostname configuration's certificate by SNI, reloads its certificate files without
//! dropping a kept-alive connection; the control plane serves HTTPS, and a self-hosted gateway
//! syncs over it, or says why it cannot.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gatehouse_tls::testca::TestCa;
use serde_json::json;

use crate::support::{
    Backend, Gatehouse, GatewayProc, free_port, sha1_fingerprint, up_with_https, upload_certificate,
};

/// `curl` over HTTPS trusting `ca`; returns (status, HTTP version) as curl reports them.
fn curl(ca: &Path, url: &str, extra: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{http_version}",
        ])
        .arg("--cacert")
        .arg(ca)
        .args(extra)
        .arg(url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (code, version) = text.split_once(' ').unwrap_or((&text, ""));
    (code.to_owned(), version.to_owned())
}

/// SHA-1 fingerprint (as openssl prints it) of the certificate `addr` serves for `sni`.
fn served_fingerprint(port: u16, sni: &str) -> String {
    let script = format!(
        "openssl s_client -connect 127.0.0.1:{port} -servername {sni} </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha1"
    );
    let out = Command::new("sh").args(["-c", &script]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn fingerprint(cert: &Path) -> String {
    sha1_fingerprint(cert)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_gateway_serves_https_over_http2_and_http1_and_reloads_its_certificate() {
    let ca = TestCa::new("e2e-listener");
    let first = ca.leaf("first", &["localhost", "127.0.0.1"]);
    let second = ca.leaf("second", &["localhost", "127.0.0.1"]);
    let live = ca.dir.join("live");
    std::fs::create_dir_all(&live).unwrap();
    let (cert, key) = (live.join("tls.crt"), live.join("tls.key"));
    std::fs::copy(&first.cert, &cert).unwrap();
    std::fs::copy(&first.key, &key).unwrap();

    let backend = Backend::start().await;
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let gh = Gatehouse::up(
        "tls-listener",
        &[
            "--gateway-https-listen",
            &listen,
            "--gateway-tls-cert",
            cert.to_str().unwrap(),
            "--gateway-tls-key",
            key.to_str().unwrap(),
        ],
    )
    .await;
    gh.simple_api("echo", "echo", &backend.url(), true).await;
    let url = format!("https://localhost:{port}/echo/items/1");
    gh.eventually(Duration::from_secs(10), || async {
        curl(&ca.cert, &url, &["--http2"]).0 == "200"
    })
    .await;

    assert_eq!(
        curl(&ca.cert, &url, &["--http2"]),
        ("200".into(), "2".into())
    );
    assert_eq!(
        curl(&ca.cert, &url, &["--http1.1"]),
        ("200".into(), "1.1".into())
    );
    let seen = backend.last();
    assert_eq!(seen.path, "/items/1");
    assert_eq!(seen.headers["x-forwarded-proto"], "https");
    assert!(gh.stdout().contains(&format!("https://127.0.0.1:{port}")));
    // Plain HTTP still answers on its own port; HTTPS is not plain HTTP.
    let plain = gh.http.get(gh.gateway("/echo/x")).send().await.unwrap();
    assert_eq!(plain.status(), 200);
    let (code, _) = curl(
        &ca.cert,
        &format!("http://127.0.0.1:{port}/echo/x"),
        &["--max-time", "5"],
    );
    assert_ne!(code, "200");

    // A client holding a kept-alive connection calls on while the files are replaced.
    let keeper = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&ca.cert).unwrap()).unwrap(),
        )
        .http1_only()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let calls = {
        let (stop, ok, failed, url) = (stop.clone(), ok.clone(), failed.clone(), url.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match keeper.get(&url).send().await {
                    Ok(r) if r.status() == 200 => {
                        let _ = r.bytes().await;
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    assert_eq!(
        served_fingerprint(port, "localhost"),
        fingerprint(&first.cert)
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::copy(&second.key, &key).unwrap();
    std::fs::copy(&second.cert, &cert).unwrap();
    let replaced = Instant::now();
    let want = fingerprint(&second.cert);
    loop {
        if served_fingerprint(port, "localhost") == want {
            break;
        }
        assert!(
            replaced.elapsed() < Duration::from_secs(15),
            "the new certificate was not served within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "new certificate served {:?} after the files changed",
        replaced.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    calls.await.unwrap();
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "a kept-alive call failed"
    );
    assert!(ok.load(Ordering::Relaxed) > 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sni_picks_the_hostname_configurations_certificate() {
    let ca = TestCa::new("e2e-sni");
    let default = ca.leaf("default", &["localhost", "127.0.0.1"]);
    let a = ca.leaf("a", &["a.gatehouse.test"]);
    let b = ca.leaf("b", &["b.gatehouse.test"]);
    let backend = Backend::start().await;
    let (gh, port) = up_with_https("tls-sni", &default).await;
    gh.simple_api("echo", "echo", &backend.url(), true).await;
    for (id, issued) in [("a", &a), ("b", &b)] {
        upload_certificate(&gh, id, issued).await;
        gh.ok(
            "PUT",
            &format!("/mgmt/gateways/built-in/hostnameConfigurations/{id}"),
            Some(json!({"hostname": format!("{id}.gatehouse.test"), "certificateId": id})),
        )
        .await;
    }
    let want_b = fingerprint(&b.cert);
    gh.eventually(Duration::from_secs(10), || {
        let want_b = want_b.clone();
        async move { served_fingerprint(port, "b.gatehouse.test") == want_b }
    })
    .await;
    assert_eq!(
        served_fingerprint(port, "a.gatehouse.test"),
        fingerprint(&a.cert)
    );
    assert_eq!(
        served_fingerprint(port, "localhost"),
        fingerprint(&default.cert)
    );
    assert_eq!(
        served_fingerprint(port, "other.gatehouse.test"),
        fingerprint(&default.cert)
    );
    // And the request itself goes through with the name checked by curl.
    let resolve = format!("a.gatehouse.test:{port}:127.0.0.1");
    assert_eq!(
        curl(
            &ca.cert,
            &format!("https://a.gatehouse.test:{port}/echo/x"),
            &["--resolve", &resolve, "--http2"],
        ),
        ("200".into(), "2".into())
    );
    // A hostname configuration removed: its name falls back to the default certificate.
    gh.ok(
        "DELETE",
        "/mgmt/gateways/built-in/hostnameConfigurations/a",
        None,
    )
    .await;
    let want_default = fingerprint(&default.cert);
    gh.eventually(Duration::from_secs(10), || {
        let want = want_default.clone();
        async move { served_fingerprint(port, "a.gatehouse.test") == want }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_self_hosted_gateway_syncs_over_an_https_link_or_says_why_not() {
    let ca = TestCa::new("e2e-link");
    let stranger = TestCa::new("e2e-link-stranger");
    let cp = ca.leaf("control", &["127.0.0.1", "localhost"]);
    let backend = Backend::start().await;
    let gh = Gatehouse::up(
        "tls-link",
        &[
            "--tls-cert",
            cp.cert.to_str().unwrap(),
            "--tls-key",
            cp.key.to_str().unwrap(),
            "--trusted-ca",
            ca.cert.to_str().unwrap(),
        ],
    )
    .await;
    assert!(gh.control("").starts_with("https://"));
    gh.simple_api("a", "a", &backend.url(), true).await;
    gh.ok("PUT", "/mgmt/gateways/edge", Some(json!({}))).await;
    gh.ok("PUT", "/mgmt/gateways/edge/apis/a", None).await;
    let token = gh.gateway_token("edge").await;
    // Plain HTTP to the TLS port is refused.
    let plain = reqwest::get(format!(
        "http://127.0.0.1:{}/mgmt/openapi.json",
        gh.control_port
    ))
    .await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);

    // Trusting the control plane's CA: synced over HTTPS.
    let gw = GatewayProc::spawn(
        "tls-link-gw",
        &gh.control(""),
        &token,
        &["--trusted-ca", ca.cert.to_str().unwrap()],
    );
    gw.wait_ready(Duration::from_secs(15), |r| r["state"] == "ready")
        .await;
    let r = gw.http.get(gw.url("/a/x")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // Trusting another CA: no configuration, and a sentence about the certificate.
    let mut lost = GatewayProc::spawn(
        "tls-link-untrusted",
        &gh.control(""),
        &token,
        &[
            "--trusted-ca",
            stranger.cert.to_str().unwrap(),
            "--startup-timeout",
            "3s",
        ],
    );
    let code = lost.wait_exit(Duration::from_secs(30));
    assert_eq!(code, Some(1));
    let log = lost.log();
    let sentence = log
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(sentence.contains("certificate"), "{sentence}");
    assert!(sentence.contains("not trusted"), "{sentence}");
}
