//! Several control planes on one PostgreSQL (DESIGN §10, "Several control planes"): real
//! `gatehouse control-plane` processes sharing a database, each with a gateway of its own
//! linked to it. A change made through either control plane reaches both gateways within 1 s
//! (measured from the management call's answer to the first right answer through each
//! gateway); killing one control plane leaves the other serving its gateway, while the
//! orphaned gateway keeps its last configuration (fail static); a telemetry batch sent to both
//! counts once. Needs `GATEHOUSE_TEST_POSTGRES` (fails without it under CI).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use gatehouse_model::telemetry::{Aggregate, Batch, Outcome};
use gatehouse_store::testdb::{TestDatabase, postgres_server};
use serde_json::{Value, json};

use crate::support::{BIN, Backend, GatewayProc, free_port, temp_dir};

/// The longest a change may take to reach a gateway (DESIGN §10).
const PROPAGATION: Duration = Duration::from_secs(1);

/// A running `gatehouse control-plane`. Killed when dropped.
struct ControlPlaneProc {
    child: Option<Child>,
    dir: std::path::PathBuf,
    port: u16,
    token: String,
    http: reqwest::Client,
}

impl ControlPlaneProc {
    /// Starts a control plane on `database`. With `secrets` (admin token, secret key) they come
    /// from the environment, as a Kubernetes Secret gives them; without, from `data`.
    fn spawn(
        tag: &str,
        database: &str,
        data: Option<&std::path::Path>,
        secrets: Option<(&str, &str)>,
    ) -> Self {
        let dir = temp_dir(tag);
        let port = free_port();
        let log = std::fs::File::create(dir.join("control-plane.log")).unwrap();
        let mut command = Command::new(BIN);
        command
            .arg("control-plane")
            .arg("--data")
            .arg(data.unwrap_or(&dir))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .env("GATEHOUSE_DATABASE", database)
            .env_remove("GATEHOUSE_ADMIN_TOKEN")
            .env_remove("GATEHOUSE_SECRET_KEY")
            .env("GATEHOUSE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some((token, key)) = secrets {
            command
                .env("GATEHOUSE_ADMIN_TOKEN", token)
                .env("GATEHOUSE_SECRET_KEY", key);
        }
        Self {
            child: Some(command.spawn().unwrap()),
            dir,
            port,
            token: secrets.map(|s| s.0.to_owned()).unwrap_or_default(),
            http: reqwest::Client::new(),
        }
    }

    /// Waits until the management API answers.
    async fn wait_up(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "the control plane exited early with {status}:\n{}",
                    self.log()
                );
            }
            let up = self
                .http
                .get(self.url("/mgmt/openapi.json"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if up {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the control plane did not start:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("control-plane.log")).unwrap_or_default()
    }

    /// A management call with the admin token: status and JSON body (or null).
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .http
            .request(method, self.url(path))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            request = request.json(&b);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Like `call`, asserting a 2xx answer.
    async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, value) = self.call(method, path, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path} answered {status}: {value}"
        );
        value
    }

    /// PUTs an API's policy document.
    async fn policy(&self, api: &str, xml: &str) {
        let response = self
            .http
            .put(self.url(&format!("/mgmt/apis/{api}/policy")))
            .bearer_auth(&self.token)
            .header("content-type", "application/xml")
            .body(xml.to_owned())
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
    }

    /// Uploads a telemetry batch as the gateway whose token this is.
    async fn upload(&self, token: &str, batch: &str) -> Value {
        let response = self
            .http
            .post(self.url("/gateway/v1/telemetry"))
            .header("authorization", token)
            .header("content-type", "application/json")
            .body(batch.to_owned())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for ControlPlaneProc {
    fn drop(&mut self) {
        self.kill9();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// An admin token and a secret key (base64 of 32 bytes), fresh for each test.
fn secrets() -> (String, String) {
    let mut bytes = [0u8; 56];
    aws_lc_rs::rand::fill(&mut bytes).unwrap();
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    (
        format!("gh_{}", engine.encode(&bytes[..24])),
        base64::engine::general_purpose::STANDARD.encode(&bytes[24..]),
    )
}

/// Waits until a GET of `path` through `gw` gives the answer `right` accepts (status and
/// `X-Rev` header); returns the time since `since`. Fails after [`PROPAGATION`] plus a margin,
/// so a slow change shows as a measured figure rather than a timeout.
async fn reached(
    gw: &GatewayProc,
    path: &str,
    since: Instant,
    right: impl Fn(u16, Option<&str>) -> bool,
) -> Duration {
    loop {
        let answer = gw.http.get(gw.url(path)).send().await;
        if let Ok(r) = answer {
            let rev = r.headers().get("x-rev").and_then(|v| v.to_str().ok());
            if right(r.status().as_u16(), rev) {
                return since.elapsed();
            }
        }
        assert!(
            since.elapsed() < PROPAGATION * 10,
            "GET {path} through the gateway on port {} gave no right answer within {:?}\n{}",
            gw.port,
            PROPAGATION * 10,
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The status and `X-Rev` header of a GET through `gw`.
async fn answer(gw: &GatewayProc, path: &str) -> (u16, Option<String>) {
    let r = gw.http.get(gw.url(path)).send().await.unwrap();
    let rev = r
        .headers()
        .get("x-rev")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (r.status().as_u16(), rev)
}

/// An API policy whose answers carry `X-Rev: {rev}`.
fn rev_policy(rev: &str) -> String {
    format!(
        r#"<policies><inbound><base /></inbound><backend><base /></backend><outbound><base /><set-header name="X-Rev" exists-action="override"><value>{rev}</value></set-header></outbound><on-error><base /></on-error></policies>"#
    )
}

/// Creates API `id` at path `id`, forwarding to `backend`, open to all, assigned to `g1` and
/// `g2`, through `cp`; its only operation is created last, so the API starts to answer with
/// the last call, whose answer is returned.
async fn api(cp: &ControlPlaneProc, id: &str, backend: &str) -> Instant {
    cp.ok(
        "PUT",
        &format!("/mgmt/apis/{id}"),
        Some(json!({"path": id, "serviceUrl": backend, "subscriptionRequired": false})),
    )
    .await;
    for g in ["g1", "g2"] {
        cp.ok("PUT", &format!("/mgmt/gateways/{g}/apis/{id}"), None)
            .await;
    }
    cp.ok(
        "PUT",
        &format!("/mgmt/apis/{id}/operations/get"),
        Some(json!({"method": "GET", "urlTemplate": "/{*rest}"})),
    )
    .await;
    Instant::now()
}

/// Records how long one change took to reach each gateway.
#[derive(Default)]
struct Times(Vec<(String, Duration)>);

impl Times {
    fn add(&mut self, what: &str, took: Duration) {
        println!("{what}: {took:?}");
        self.0.push((what.to_owned(), took));
    }

    fn summary(&self) -> String {
        let mut sorted: Vec<Duration> = self.0.iter().map(|(_, d)| *d).collect();
        sorted.sort();
        let median = if sorted.len() % 2 == 1 {
            sorted[sorted.len() / 2]
        } else {
            (sorted[sorted.len() / 2 - 1] + sorted[sorted.len() / 2]) / 2
        };
        format!(
            "{} propagations: min {:?}, median {:?}, max {:?}",
            sorted.len(),
            sorted[0],
            median,
            sorted[sorted.len() - 1]
        )
    }

    fn assert_within(&self, limit: Duration) {
        let slow: Vec<_> = self.0.iter().filter(|(_, d)| *d >= limit).collect();
        assert!(slow.is_empty(), "slower than {limit:?}: {slow:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_through_either_control_plane_reaches_both_gateways_and_one_survives_the_other() {
    let Some(server) = postgres_server("the several-control-planes e2e test") else {
        return;
    };
    let db = TestDatabase::create(&server).await;
    let backend = Backend::start().await;
    let (token, key) = secrets();

    // Two control planes, started together on a fresh database (they take turns migrating
    // it), with the admin token and secret key from the environment and data directories of
    // their own.
    let mut a = ControlPlaneProc::spawn("cps-a", &db.url, None, Some((&token, &key)));
    let mut b = ControlPlaneProc::spawn("cps-b", &db.url, None, Some((&token, &key)));
    a.wait_up().await;
    b.wait_up().await;
    for cp in [&a, &b] {
        for file in ["admin-token", "secret.key"] {
            assert!(
                !cp.dir.join(file).exists(),
                "{file} was written, not taken from env"
            );
        }
    }

    // Gateway 1 links to A, gateway 2 to B; each token is made by the control plane its
    // gateway uses (so B signs with the gateway key A created and sealed).
    for g in ["g1", "g2"] {
        a.ok("PUT", &format!("/mgmt/gateways/{g}"), Some(json!({})))
            .await;
    }
    let generate = json!({"keyType": "primary"});
    let t1 = a
        .ok(
            "POST",
            "/mgmt/gateways/g1/generateToken",
            Some(generate.clone()),
        )
        .await["value"]
        .as_str()
        .unwrap()
        .to_owned();
    let t2 = b
        .ok("POST", "/mgmt/gateways/g2/generateToken", Some(generate))
        .await["value"]
        .as_str()
        .unwrap()
        .to_owned();
    let gw1 = GatewayProc::spawn("cps-gw1", &a.url(""), &t1, &[]);
    let gw2 = GatewayProc::spawn("cps-gw2", &b.url(""), &t2, &[]);
    for gw in [&gw1, &gw2] {
        gw.wait_ready(Duration::from_secs(20), |r| r["state"] == "ready")
            .await;
    }
    assert_eq!(answer(&gw1, "/one/x").await.0, 404);
    assert_eq!(answer(&gw2, "/one/x").await.0, 404);

    let mut times = Times::default();
    let both = |path: &'static str, since: Instant, right: fn(u16, Option<&str>) -> bool| {
        let (gw1, gw2) = (&gw1, &gw2);
        async move {
            tokio::join!(
                reached(gw1, path, since, right),
                reached(gw2, path, since, right)
            )
        }
    };

    // 1. An API and its operation, through A.
    let since = api(&a, "one", &backend.url()).await;
    let (g1, g2) = both("/one/x", since, |s, _| s == 200).await;
    times.add("new API through A, gateway 1 (on A)", g1);
    times.add("new API through A, gateway 2 (on B)", g2);

    // 2. A policy change, through B.
    b.policy("one", &rev_policy("2")).await;
    let since = Instant::now();
    let (g1, g2) = both("/one/x", since, |s, r| s == 200 && r == Some("2")).await;
    times.add("policy change through B, gateway 1 (on A)", g1);
    times.add("policy change through B, gateway 2 (on B)", g2);

    // 3. Another API, through B.
    let since = api(&b, "two", &backend.url()).await;
    let (g1, g2) = both("/two/x", since, |s, _| s == 200).await;
    times.add("new API through B, gateway 1 (on A)", g1);
    times.add("new API through B, gateway 2 (on B)", g2);

    // 4. A policy change, through A.
    a.policy("one", &rev_policy("4")).await;
    let since = Instant::now();
    let (g1, g2) = both("/one/x", since, |s, r| s == 200 && r == Some("4")).await;
    times.add("policy change through A, gateway 1 (on A)", g1);
    times.add("policy change through A, gateway 2 (on B)", g2);

    // 5. Unassigning an API from gateway 2, through A: it stops answering there only.
    a.ok("DELETE", "/mgmt/gateways/g2/apis/two", None).await;
    let since = Instant::now();
    let g2 = reached(&gw2, "/two/x", since, |s, _| s == 404).await;
    times.add("API unassigned through A, gateway 2 (on B)", g2);
    assert_eq!(answer(&gw1, "/two/x").await.0, 200);

    // The same telemetry batch sent to both control planes (a gateway retrying through a load
    // balancer after a lost answer) is stored once.
    let hour_ago = {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        now - now % 3_600 - 3_600
    };
    let mut aggregate = Aggregate {
        minute: hour_ago,
        api_id: "one".into(),
        operation_id: "get".into(),
        ..Aggregate::default()
    };
    for _ in 0..7 {
        aggregate.counts.add(Outcome::Success);
        aggregate.api_time.record(1_000);
    }
    let batch = serde_json::to_string(&Batch {
        id: "c0ffee00-0000-4000-8000-000000000001".into(),
        instance: "replayed".into(),
        created: hour_ago,
        aggregates: vec![aggregate],
        samples: vec![],
        dropped_batches: 0,
    })
    .unwrap();
    let (first, second) = tokio::join!(a.upload(&t1, &batch), b.upload(&t1, &batch));
    let mut duplicates = [first["duplicate"].as_bool(), second["duplicate"].as_bool()];
    duplicates.sort();
    assert_eq!(duplicates, [Some(false), Some(true)], "{first} {second}");
    let window = format!(
        "from={}&to={}",
        gatehouse_model::reports::rfc3339(hour_ago),
        gatehouse_model::reports::rfc3339(hour_ago + 60)
    );
    for cp in [&a, &b] {
        let report = cp
            .ok("GET", &format!("/mgmt/reports/byApi?{window}"), None)
            .await;
        assert_eq!(report["value"][0]["apiId"], "one", "{report}");
        assert_eq!(report["value"][0]["callCountTotal"], 7, "{report}");
    }

    // Kill A. B goes on serving gateway 2: a change through B reaches it within 1 s.
    a.kill9();
    let mut after_kill = Times::default();
    b.policy("one", &rev_policy("6")).await;
    let since = Instant::now();
    let g2 = reached(&gw2, "/one/x", since, |s, r| s == 200 && r == Some("6")).await;
    after_kill.add(
        "policy change through B after A was killed, gateway 2 (on B)",
        g2,
    );
    let since = api(&b, "three", &backend.url()).await;
    let g2 = reached(&gw2, "/three/x", since, |s, _| s == 200).await;
    after_kill.add("new API through B after A was killed, gateway 2 (on B)", g2);
    let ready = gw2.readyz().await.unwrap();
    assert_eq!(ready["state"], "ready", "{ready}");

    // Gateway 1 lost its control plane: it says so, and serves its last configuration.
    let stale = gw1
        .wait_ready(Duration::from_secs(20), |r| r["state"] == "stale")
        .await;
    assert_eq!(stale["source"], "control-plane", "{stale}");
    assert_eq!(answer(&gw1, "/one/x").await, (200, Some("4".to_owned())));
    assert_eq!(answer(&gw1, "/two/x").await.0, 200);
    assert_eq!(answer(&gw1, "/three/x").await.0, 404);

    println!("before the kill, {}", times.summary());
    println!("after the kill, {}", after_kill.summary());
    times.assert_within(PROPAGATION);
    after_kill.assert_within(PROPAGATION);

    drop((gw1, gw2));
    drop((a, b));
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn control_planes_sharing_a_data_directory_share_its_admin_token_and_secret_key() {
    let Some(server) = postgres_server("the shared data directory e2e test") else {
        return;
    };
    let db = TestDatabase::create(&server).await;
    let data = temp_dir("cps-shared-data");
    // Started together on an empty directory: one creates the token and key, both use them.
    let mut a = ControlPlaneProc::spawn("cps-shared-a", &db.url, Some(&data), None);
    let mut b = ControlPlaneProc::spawn("cps-shared-b", &db.url, Some(&data), None);
    a.wait_up().await;
    b.wait_up().await;
    let token = std::fs::read_to_string(data.join("admin-token"))
        .unwrap()
        .trim()
        .to_owned();
    a.token = token.clone();
    b.token = token;

    // A secret sealed by one is opened by the other: they share the secret key.
    a.ok(
        "PUT",
        "/mgmt/named-values/password",
        Some(json!({"value": "s3cr3t-value", "secret": true})),
    )
    .await;
    let value = b
        .ok("POST", "/mgmt/named-values/password/listValue", None)
        .await;
    assert_eq!(value["value"], "s3cr3t-value");
    let (status, _) = b.call("GET", "/mgmt/apis", None).await;
    assert_eq!(status, 200);

    drop((a, b));
    std::fs::remove_dir_all(&data).ok();
    db.drop_now().await;
}
