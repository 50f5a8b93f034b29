//! What a new user meets in the first hour: a second `up` on a port another process holds stops
//! with one sentence naming the port and its holder (instead of silently sharing it), and
//! Ctrl-C stops `up` at once even while self-hosted gateways hold long-polls on it.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{BIN, Backend, Gatehouse, GatewayProc, free_port, temp_dir};

/// Runs `gatehouse up` on the given ports with a data directory that does not exist yet;
/// returns its exit code and stderr, failing if it runs longer than `within`.
fn second_up(control: u16, gateway: u16, admin: u16, within: Duration) -> (Option<i32>, String) {
    let dir = temp_dir("first-hour-second");
    let data = dir.join("data");
    let mut child = Command::new(BIN)
        .arg("up")
        .arg("--data")
        .arg(&data)
        .args(["--listen", &format!("127.0.0.1:{control}")])
        .args(["--gateway-listen", &format!("127.0.0.1:{gateway}")])
        .args(["--gateway-admin-listen", &format!("127.0.0.1:{admin}")])
        .env_remove("GATEHOUSE_ADMIN_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let code = wait_exit(&mut child, within)
        .unwrap_or_else(|| panic!("a second `up` was still running after {within:?}"));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        !data.exists(),
        "a second `up` on a taken port created its data directory"
    );
    let _ = std::fs::remove_dir_all(&dir);
    (code, stderr)
}

/// Waits up to `within` for `child` to exit; `None` (and the child killed) if it did not.
fn wait_exit(child: &mut Child, within: Duration) -> Option<Option<i32>> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status.code());
        }
        if start.elapsed() > within {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Every one of `n` requests to `url` is answered 200 by the first process's configuration.
async fn all_served(http: &reqwest::Client, url: &str, n: usize) {
    for _ in 0..n {
        // A fresh connection each time, so the kernel picks a listener for every request.
        let r = http
            .get(url)
            .header("connection", "close")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{url} answered {}", r.status());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_up_on_a_taken_port_exits_1_naming_the_port_and_the_first_keeps_serving() {
    let backend = Backend::start().await;
    // Several workers: the workers of one process still share their port.
    let gh = Gatehouse::up("first-hour-ports", &["--workers", "3"]).await;
    gh.simple_api("mine", "mine", &backend.url(), true).await;
    let url = gh.gateway("/mine/x");
    gh.eventually(Duration::from_secs(5), || {
        let http = gh.http.clone();
        let url = url.clone();
        async move { http.get(url).send().await.is_ok_and(|r| r.status() == 200) }
    })
    .await;
    let holder = format!("pid {}, gatehouse up", gh.pid());

    // The gateway's port, the control plane's and the admin listener's, one at a time.
    let taken = [
        (
            free_port(),
            gh.gateway_port,
            free_port(),
            gh.gateway_port,
            "--gateway-listen",
        ),
        (
            gh.control_port,
            free_port(),
            free_port(),
            gh.control_port,
            "--listen",
        ),
        (
            free_port(),
            free_port(),
            gh.admin_port,
            gh.admin_port,
            "--gateway-admin-listen",
        ),
    ];
    for (control, gateway, admin, port, flag) in taken {
        let (code, stderr) = second_up(control, gateway, admin, Duration::from_secs(10));
        assert_eq!(code, Some(1), "{stderr}");
        let sentence = stderr.trim();
        assert_eq!(sentence.lines().count(), 1, "one sentence: {sentence}");
        assert!(
            sentence.contains(&format!("127.0.0.1:{port} "))
                && sentence.contains(&format!("port {port} is already in use by {holder}"))
                && sentence.contains(flag),
            "{sentence}"
        );
        all_served(&gh.http, &url, 20).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_self_hosted_gateway_on_a_taken_port_exits_1_naming_it() {
    let gh = Gatehouse::up("first-hour-sh-port", &[]).await;
    gh.ok("PUT", "/mgmt/gateways/edge", Some(json!({}))).await;
    let token = gh.gateway_token("edge").await;
    let mut gw = GatewayProc {
        child: None,
        port: gh.gateway_port,
        admin_port: free_port(),
        dir: temp_dir("first-hour-sh-port-gw"),
        args: vec!["--config-endpoint".into(), gh.control("")],
        envs: vec![("GATEHOUSE_TOKEN".into(), token)],
        http: reqwest::Client::new(),
    };
    gw.launch();
    assert_eq!(
        gw.wait_exit(Duration::from_secs(10)),
        Some(1),
        "{}",
        gw.log()
    );
    let log = gw.log();
    assert!(
        log.contains(&format!(
            "port {} is already in use by pid {}, gatehouse up",
            gh.gateway_port,
            gh.pid()
        )),
        "{log}"
    );
}

/// `up` with an open API `a` on `backend`, and gateways `edge-1` and `edge-2` serving it, each
/// linked by its own process.
async fn up_with_two_linked_gateways(
    tag: &str,
    backend: &Backend,
    extra: &[&str],
) -> (Gatehouse, Vec<GatewayProc>) {
    let gh = Gatehouse::up(tag, extra).await;
    gh.simple_api("a", "a", &backend.url(), true).await;
    let mut gateways = Vec::new();
    for name in ["edge-1", "edge-2"] {
        gh.ok("PUT", &format!("/mgmt/gateways/{name}"), Some(json!({})))
            .await;
        gh.ok("PUT", &format!("/mgmt/gateways/{name}/apis/a"), None)
            .await;
        let token = gh.gateway_token(name).await;
        gateways.push(GatewayProc::spawn(
            &format!("{tag}-{name}"),
            &gh.control(""),
            &token,
            &[],
        ));
    }
    for gw in &gateways {
        gw.wait_ready(Duration::from_secs(20), |r| r["state"] == "ready")
            .await;
        let r = gw.http.get(gw.url("/a/x")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    (gh, gateways)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ctrl_c_on_up_with_two_linked_gateways_exits_within_a_second() {
    let backend = Backend::start().await;
    let (mut gh, gateways) = up_with_two_linked_gateways("first-hour-stop", &backend, &[]).await;
    // Both gateways are up to date: their next config call is a long-poll the control plane
    // holds (for 30 s when nothing changes).
    tokio::time::sleep(Duration::from_millis(500)).await;

    let signalled = Instant::now();
    gh.signal("INT");
    let mut child = gh.child.take().unwrap();
    let code = wait_exit(&mut child, Duration::from_secs(30));
    let took = signalled.elapsed();
    eprintln!("up stopped {took:?} after SIGINT, with two linked gateways");
    let log = gh.log();
    assert_eq!(code, Some(Some(0)), "up did not stop cleanly:\n{log}");
    assert!(
        took < Duration::from_secs(1),
        "up took {took:?} to stop:\n{log}"
    );
    for phase in [
        "shutting down: stopping listeners",
        "answered 2 held long-polls",
        "waiting for 0 requests in flight",
        "stopped",
    ] {
        assert!(log.contains(phase), "no '{phase}' in the log:\n{log}");
    }

    // The gateways keep serving from memory, and say so.
    for gw in &gateways {
        for _ in 0..5 {
            let r = gw.http.get(gw.url("/a/x")).send().await.unwrap();
            assert_eq!(r.status(), 200, "{}", gw.log());
        }
        let ready = gw.readyz().await.unwrap();
        assert!(ready["configRevision"].as_u64().is_some(), "{ready}");
    }
    for gw in &gateways {
        let start = Instant::now();
        while !gw.log().contains("serving the last configuration") {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the gateway did not notice its control plane left:\n{}",
                gw.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let r = gw.http.get(gw.url("/a/y")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
}

/// A request held by a slow backend keeps `up` in its grace period; a second signal ends it
/// at once with the signal's exit code.
async fn second_signal_exits_at_once(signal: &str, code: i32) {
    let backend = Backend::start().await;
    let mut gh = Gatehouse::up(
        &format!("first-hour-twice-{signal}"),
        &["--shutdown-grace", "60s"],
    )
    .await;
    gh.simple_api("slow", "slow", &backend.url(), true).await;
    let url = gh.gateway("/slow/x");
    gh.eventually(Duration::from_secs(5), || {
        let http = gh.http.clone();
        let url = url.clone();
        async move { http.get(url).send().await.is_ok_and(|r| r.status() == 200) }
    })
    .await;
    let held = {
        let http = reqwest::Client::new();
        let url = gh.gateway("/slow/slow/30000");
        tokio::spawn(async move { http.get(url).send().await })
    };
    // The backend records a request once it has answered: the gateway's gauge shows it held.
    gh.eventually(Duration::from_secs(5), || {
        one_in_flight(&gh.http, gh.admin("/metrics"))
    })
    .await;

    gh.signal(signal);
    gh.eventually(Duration::from_secs(10), || {
        let log = gh.log();
        async move { log.contains("waiting for 1 requests in flight") }
    })
    .await;
    let mut child = gh.child.take().unwrap();
    assert!(
        child.try_wait().unwrap().is_none(),
        "up did not wait for the request in flight"
    );
    gh.child = Some(child);
    let signalled = Instant::now();
    gh.signal(signal);
    let mut child = gh.child.take().unwrap();
    let exit = wait_exit(&mut child, Duration::from_secs(30));
    let took = signalled.elapsed();
    eprintln!("up exited {took:?} after a second SIG{signal}");
    let log = gh.log();
    assert_eq!(exit, Some(Some(code)), "{log}");
    assert!(took < Duration::from_secs(1), "took {took:?}:\n{log}");
    assert!(log.contains("second signal: exiting now"), "{log}");
    held.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_ctrl_c_during_the_grace_period_exits_at_once_with_130() {
    second_signal_exits_at_once("INT", 130).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_sigterm_during_the_grace_period_exits_at_once_with_143() {
    second_signal_exits_at_once("TERM", 143).await;
}

/// `gatehouse control-plane` on `port` with its data in `data`, its log at `log`.
fn spawn_control_plane(data: &std::path::Path, log: &std::path::Path, port: u16) -> Child {
    let log = std::fs::File::create(log).unwrap();
    Command::new(BIN)
        .arg("control-plane")
        .arg("--data")
        .arg(data)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env_remove("GATEHOUSE_ADMIN_TOKEN")
        .env_remove("GATEHOUSE_DATABASE")
        .env("GATEHOUSE_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn control_plane_on_a_taken_port_exits_1_and_stops_at_once_with_a_linked_gateway() {
    let dir = temp_dir("first-hour-cp");
    let port = free_port();
    let mut child = spawn_control_plane(&dir, &dir.join("control-plane.log"), port);
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    while !http
        .get(format!("{base}/mgmt/openapi.json"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(child.try_wait().unwrap().is_none(), "control-plane exited");
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no control plane"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let admin = std::fs::read_to_string(dir.join("admin-token")).unwrap();

    // A second control plane on the same port stops before touching its data directory.
    let second = temp_dir("first-hour-cp-second");
    let mut other = spawn_control_plane(&second.join("data"), &second.join("second.log"), port);
    let code = wait_exit(&mut other, Duration::from_secs(10)).expect("still running");
    let log = std::fs::read_to_string(second.join("second.log")).unwrap();
    assert_eq!(code, Some(1), "{log}");
    assert!(
        !second.join("data").exists(),
        "the data directory was created"
    );
    let _ = std::fs::remove_dir_all(&second);

    // A linked gateway: its long-poll is held when the control plane is asked to stop.
    let mgmt = |method: reqwest::Method, path: &str| {
        http.request(method, format!("{base}{path}"))
            .bearer_auth(admin.trim())
    };
    let r = mgmt(reqwest::Method::PUT, "/mgmt/gateways/edge")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let token: serde_json::Value = mgmt(reqwest::Method::POST, "/mgmt/gateways/edge/generateToken")
        .json(&json!({"keyType": "primary"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let gw = GatewayProc::spawn(
        "first-hour-cp-gw",
        &base,
        token["value"].as_str().unwrap(),
        &[],
    );
    gw.wait_ready(Duration::from_secs(20), |r| r["state"] == "ready")
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let signalled = Instant::now();
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let exit = wait_exit(&mut child, Duration::from_secs(30));
    let took = signalled.elapsed();
    eprintln!("control-plane stopped {took:?} after SIGTERM, with a linked gateway");
    let cp_log = std::fs::read_to_string(dir.join("control-plane.log")).unwrap();
    assert_eq!(exit, Some(Some(0)), "{cp_log}");
    assert!(took < Duration::from_secs(1), "took {took:?}:\n{cp_log}");
    assert!(cp_log.contains("answered 1 held long-polls"), "{cp_log}");
    assert!(
        log.contains(&format!(
            "port {port} is already in use by pid {}",
            child.id()
        )),
        "{log}"
    );
    let ready = gw.readyz().await.unwrap();
    assert!(ready["configRevision"].as_u64().is_some(), "{ready}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_sigterm_stops_a_self_hosted_gateway_at_once_with_143() {
    let backend = Backend::start().await;
    let gh = Gatehouse::up("first-hour-sh-twice", &[]).await;
    gh.simple_api("slow", "slow", &backend.url(), true).await;
    gh.ok("PUT", "/mgmt/gateways/edge", Some(json!({}))).await;
    gh.ok("PUT", "/mgmt/gateways/edge/apis/slow", None).await;
    let token = gh.gateway_token("edge").await;
    let mut gw = GatewayProc::spawn(
        "first-hour-sh-twice-gw",
        &gh.control(""),
        &token,
        &["--shutdown-grace", "60s"],
    );
    gw.wait_ready(Duration::from_secs(20), |r| r["state"] == "ready")
        .await;
    let held = {
        let url = gw.url("/slow/slow/30000");
        tokio::spawn(async move { reqwest::Client::new().get(url).send().await })
    };
    let metrics = gw.admin("/metrics");
    gh.eventually(Duration::from_secs(5), || {
        one_in_flight(&gw.http, metrics.clone())
    })
    .await;

    gw.terminate();
    gh.eventually(Duration::from_secs(10), || {
        let log = gw.log();
        async move { log.contains("waiting for 1 requests in flight") }
    })
    .await;
    assert!(
        gw.child.as_mut().unwrap().try_wait().unwrap().is_none(),
        "the gateway did not wait for the request in flight"
    );
    let signalled = Instant::now();
    gw.terminate();
    let code = gw.wait_exit(Duration::from_secs(30));
    let took = signalled.elapsed();
    assert_eq!(code, Some(143), "{}", gw.log());
    assert!(
        took < Duration::from_secs(1),
        "took {took:?}:\n{}",
        gw.log()
    );
    held.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_self_hosted_gateway_waiting_for_its_first_configuration_stops_on_sigterm() {
    // Nothing listens at the endpoint: the gateway waits (up to a minute) for a configuration.
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let mut gw = GatewayProc::spawn(
        "first-hour-sh-waiting",
        &endpoint,
        "GatewayKey edge&209912312359&c2lnbmF0dXJl",
        &["--startup-timeout", "60s"],
    );
    let start = Instant::now();
    while !gw.log().contains("configuration sync failed") {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the gateway never tried its control plane:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let signalled = Instant::now();
    gw.terminate();
    let code = gw.wait_exit(Duration::from_secs(30));
    let took = signalled.elapsed();
    assert_eq!(code, Some(0), "{}", gw.log());
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(gw.log().contains("stopped"), "{}", gw.log());
}

/// Whether the gateway's metrics at `url` show one request in flight.
async fn one_in_flight(http: &reqwest::Client, url: String) -> bool {
    let Ok(r) = http.get(url).send().await else {
        return false;
    };
    r.text().await.is_ok_and(|text| {
        text.lines()
            .any(|l| l.starts_with("gatehouse_requests_in_flight{") && l.ends_with(" 1.0"))
    })
}
