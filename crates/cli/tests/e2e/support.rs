//! Shared helpers for the end-to-end tests: the real `gatehouse` binary started as a child
//! process on loopback ports, and a real HTTP backend that records what it receives.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh directory under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("gh-e2e-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../model/tests/fixtures/openapi")
        .join(name)
}

/// The tests' HTTP client; it trusts the CA given to the process with `--trusted-ca`, if any.
pub fn client_trusting(args: &[&str]) -> reqwest::Client {
    let mut builder = reqwest::Client::builder().pool_max_idle_per_host(64);
    if let Some(i) = args.iter().position(|a| *a == "--trusted-ca") {
        let pem = std::fs::read(args[i + 1]).unwrap();
        builder = builder.add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
    }
    builder.build().unwrap()
}

/// A running `gatehouse up`. Killed when dropped.
pub struct Gatehouse {
    pub child: Option<Child>,
    pub data: PathBuf,
    pub control_port: u16,
    pub gateway_port: u16,
    /// The built-in gateway's admin listener (/metrics, /readyz).
    pub admin_port: u16,
    pub token: String,
    pub extra: Vec<String>,
    pub http: reqwest::Client,
}

impl Gatehouse {
    pub async fn up(tag: &str, extra: &[&str]) -> Self {
        let data = temp_dir(tag);
        let mut gh = Self {
            child: None,
            data,
            control_port: free_port(),
            gateway_port: free_port(),
            admin_port: free_port(),
            token: String::new(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            http: client_trusting(extra),
        };
        gh.start().await;
        gh
    }

    /// Starts (or restarts) the process on the same data and ports.
    pub async fn start(&mut self) {
        let log = std::fs::File::create(self.data.join("gatehouse.log")).unwrap();
        let out = std::fs::File::create(self.data.join("stdout.log")).unwrap();
        let child = Command::new(BIN)
            .arg("up")
            .arg("--data")
            .arg(&self.data)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.control_port))
            .arg("--gateway-listen")
            .arg(format!("127.0.0.1:{}", self.gateway_port))
            .arg("--gateway-admin-listen")
            .arg(format!("127.0.0.1:{}", self.admin_port))
            .args(&self.extra)
            .env_remove("GATEHOUSE_ADMIN_TOKEN")
            .env("GATEHOUSE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                let log =
                    std::fs::read_to_string(self.data.join("gatehouse.log")).unwrap_or_default();
                // A port from `free_port` can be taken by a parallel test before we bind it.
                // On a first start, pick new ports and try again (a restart must keep its own).
                let ours = [self.control_port, self.gateway_port, self.admin_port]
                    .iter()
                    .any(|p| log.contains(&format!("127.0.0.1:{p} ")));
                if self.token.is_empty() && ours && log.contains("already in use") {
                    self.control_port = free_port();
                    self.gateway_port = free_port();
                    self.admin_port = free_port();
                    return Box::pin(self.start()).await;
                }
                panic!("gatehouse exited early with {status}: {log}");
            }
            let ready = self
                .http
                .get(self.gateway("/status-0123456789abcdef"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
                && self
                    .http
                    .get(self.control("/mgmt/openapi.json"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200)
                // Serving starts before the banner is printed (`--demo` configures itself
                // through the API first): ready means both, so tests can read stdout.
                && self.stdout().contains("Gatehouse is running.");
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "gatehouse did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.token = std::fs::read_to_string(self.data.join("admin-token"))
            .unwrap()
            .trim()
            .to_owned();
    }

    pub fn control(&self, path: &str) -> String {
        let scheme = if self.extra.iter().any(|a| a == "--tls-cert") {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}{path}", self.control_port)
    }

    pub fn gateway(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.gateway_port)
    }

    pub fn admin(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Sends a signal with kill(1).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits for the process to exit and returns whether it exited successfully.
    pub fn wait(&mut self) -> bool {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("gatehouse did not exit");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A management API call with the admin token. Returns status and JSON body (or null).
    pub async fn mgmt(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .http
            .request(method, self.control(path))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    /// Like `mgmt`, asserting a 2xx answer.
    pub async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, value) = self.mgmt(method, path, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path} answered {status}: {value}"
        );
        value
    }

    /// Runs a management CLI command against this instance.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(BIN)
            .args(args)
            .env("GATEHOUSE_URL", self.control(""))
            .env("GATEHOUSE_DATA", &self.data)
            .env_remove("GATEHOUSE_ADMIN_TOKEN")
            .output()
            .unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.join("gatehouse.log")).unwrap_or_default()
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.data.join("stdout.log")).unwrap_or_default()
    }

    /// Creates an API at `path` forwarding to `backend`, with one catch-all operation per
    /// common method.
    pub async fn simple_api(&self, id: &str, path: &str, backend: &str, open: bool) {
        self.ok(
            "PUT",
            &format!("/mgmt/apis/{id}"),
            Some(json!({"path": path, "serviceUrl": backend, "subscriptionRequired": !open})),
        )
        .await;
        for (op, method) in [("get", "GET"), ("post", "POST")] {
            self.ok(
                "PUT",
                &format!("/mgmt/apis/{id}/operations/{op}"),
                Some(json!({"method": method, "urlTemplate": "/{*rest}"})),
            )
            .await;
        }
    }

    /// Creates a subscription and returns its primary key.
    pub async fn subscription(&self, id: &str, scope: &str) -> String {
        self.ok(
            "PUT",
            &format!("/mgmt/subscriptions/{id}"),
            Some(json!({"scope": scope})),
        )
        .await;
        let keys = self
            .ok(
                "POST",
                &format!("/mgmt/subscriptions/{id}/listSecrets"),
                None,
            )
            .await;
        keys["primaryKey"].as_str().unwrap().to_owned()
    }

    /// Generates a (primary) token for the gateway resource `gateway`.
    pub async fn gateway_token(&self, gateway: &str) -> String {
        let t = self
            .ok(
                "POST",
                &format!("/mgmt/gateways/{gateway}/generateToken"),
                Some(json!({"keyType": "primary"})),
            )
            .await;
        t["value"].as_str().unwrap().to_owned()
    }

    /// Polls until `check` holds or the deadline passes; returns how long it took.
    pub async fn eventually<F, Fut>(&self, within: Duration, mut check: F) -> Duration
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let start = Instant::now();
        loop {
            if check().await {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < within,
                "condition not met within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Gatehouse {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.data);
        }
    }
}

/// Binds a loopback port and answers every request on it with `handle`, for as long as the
/// test runs; returns the address.
pub async fn serve_loopback<H, F>(handle: H) -> SocketAddr
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + 'static,
    F: std::future::Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handle = handle.clone();
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), hyper::service::service_fn(handle))
                    .await;
            });
        }
    });
    addr
}

/// What a backend received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

/// A real HTTP backend on loopback. A path ending in `/slow/{ms}` waits before answering; every request is
/// recorded and answered with a JSON echo.
#[derive(Clone)]
pub struct Backend {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Received>>>,
}

impl Backend {
    pub async fn start() -> Self {
        let seen: Arc<Mutex<Vec<Received>>> = Arc::default();
        let record = seen.clone();
        let addr = serve_loopback(move |req| answer(record.clone(), req)).await;
        Self { addr, seen }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn last(&self) -> Received {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("backend saw no request")
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

async fn answer(
    record: Arc<Mutex<Vec<Received>>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let path = parts.uri.path().to_owned();
    if let Some(ms) = path
        .rsplit_once("/slow/")
        .and_then(|(_, m)| m.parse::<u64>().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    // Several values of one header are joined with ", ".
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in &parts.headers {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        headers
            .entry(k.as_str().to_owned())
            .and_modify(|e| {
                e.push_str(", ");
                e.push_str(&v);
            })
            .or_insert(v);
    }
    let received = Received {
        method: parts.method.to_string(),
        path: path.clone(),
        query: parts.uri.query().map(str::to_owned),
        headers,
        body: body.to_vec(),
    };
    let echo = json!({
        "method": received.method,
        "path": received.path,
        "query": received.query,
        "body": String::from_utf8_lossy(&received.body),
    });
    record.lock().unwrap().push(received);
    let mut resp = Response::new(Full::new(Bytes::from(echo.to_string())));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    resp.headers_mut()
        .insert("x-backend", "test".parse().unwrap());
    Ok(resp)
}

/// A running `gatehouse gateway`. Killed when dropped.
pub struct GatewayProc {
    pub child: Option<Child>,
    pub port: u16,
    pub admin_port: u16,
    pub dir: PathBuf,
    pub args: Vec<String>,
    pub envs: Vec<(String, String)>,
    pub http: reqwest::Client,
}

impl GatewayProc {
    /// Starts a gateway against `endpoint` with `token`; `extra` are more flags.
    pub fn spawn(tag: &str, endpoint: &str, token: &str, extra: &[&str]) -> Self {
        let mut gw = Self {
            child: None,
            port: free_port(),
            admin_port: free_port(),
            dir: temp_dir(tag),
            args: vec!["--config-endpoint".into(), endpoint.into()],
            envs: vec![("GATEHOUSE_TOKEN".into(), token.into())],
            http: reqwest::Client::new(),
        };
        gw.args.extend(extra.iter().map(|s| s.to_string()));
        gw.launch();
        gw
    }

    pub fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("gateway.log"))
            .unwrap();
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("stdout.log"))
            .unwrap();
        let mut cmd = Command::new(BIN);
        cmd.arg("gateway")
            .args(&self.args)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--admin-listen")
            .arg(format!("127.0.0.1:{}", self.admin_port))
            .env("GATEHOUSE_LOG", "info")
            .env_remove("GATEHOUSE_BACKUP_KEY")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(log);
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().unwrap());
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn admin(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    /// What the gateway wrote on stdout: its access log.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.join("stdout.log")).unwrap_or_default()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let pid = self.child.as_ref().unwrap().id();
        let ok = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM failed");
    }

    pub async fn readyz(&self) -> Option<Value> {
        let r = self
            .http
            .get(format!("http://127.0.0.1:{}/readyz", self.admin_port))
            .send()
            .await
            .ok()?;
        r.json().await.ok()
    }

    /// Waits until `/readyz` satisfies `check`.
    pub async fn wait_ready(&self, within: Duration, check: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            if let Some(v) = self.readyz().await
                && check(&v)
            {
                return v;
            }
            assert!(
                start.elapsed() < within,
                "gateway readiness not reached within {within:?}: {:?}\n{}",
                self.readyz().await,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("gateway.log")).unwrap_or_default()
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let mut child = self.child.take().unwrap();
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            if start.elapsed() > within {
                let _ = child.kill();
                panic!("the gateway did not exit within {within:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for GatewayProc {
    fn drop(&mut self) {
        self.kill9();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A TCP relay on loopback that a test can cut (close every connection and refuse new ones)
/// and restore, to simulate a network partition between a gateway and its control plane.
pub struct Relay {
    pub port: u16,
    target: SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Relay {
    pub async fn start(target: SocketAddr) -> Self {
        let mut relay = Self {
            port: free_port(),
            target,
            task: None,
        };
        relay.restore().await;
        relay
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Drops every relayed connection and stops listening.
    pub fn cut(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    pub async fn restore(&mut self) {
        let listener = loop {
            match tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let target = self.target;
        self.task = Some(tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                conns.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        }));
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
    }
}

/// PUTs a policy document; returns the status and the JSON (or text) answer.
pub async fn put_policy(gh: &Gatehouse, path: &str, xml: &str) -> (u16, Value) {
    let resp = gh
        .http
        .put(gh.control(path))
        .bearer_auth(&gh.token)
        .header("content-type", "application/xml")
        .body(xml.to_owned())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// PUTs a policy document, asserting it was accepted.
pub async fn set_policy(gh: &Gatehouse, path: &str, xml: &str) {
    let (status, body) = put_policy(gh, path, xml).await;
    assert!(
        status == 200 || status == 201,
        "PUT {path}: {status} {body}"
    );
}

/// A span as the OTLP receiver got it; ids in lowercase hex, times in Unix nanoseconds.
#[derive(Debug, Clone)]
pub struct OtlpSpan {
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// `server`, `client`, `internal`, `producer`, `consumer` or `unspecified`.
    pub kind: String,
    pub start: u64,
    pub end: u64,
    /// Every value as text: strings as they are, numbers and booleans formatted.
    pub attributes: BTreeMap<String, String>,
    /// `unset`, `ok` or `error`.
    pub status: String,
    /// The attributes of the resource that sent it (`service.name`, …).
    pub resource: BTreeMap<String, String>,
    /// The span's events: name and attributes.
    pub events: Vec<(String, BTreeMap<String, String>)>,
}

/// A stand-in for an OpenTelemetry collector on loopback: it takes OTLP/HTTP protobuf trace
/// exports (`POST /v1/traces`), answers 200 and keeps the decoded spans. Pass `url()` as
/// `--otlp-endpoint`.
#[derive(Clone)]
pub struct OtlpReceiver {
    pub addr: SocketAddr,
    spans: Arc<Mutex<Vec<OtlpSpan>>>,
}

impl OtlpReceiver {
    pub async fn start() -> Self {
        let spans: Arc<Mutex<Vec<OtlpSpan>>> = Arc::default();
        let record = spans.clone();
        let addr = serve_loopback(move |req| otlp_receive(record.clone(), req)).await;
        Self { addr, spans }
    }

    /// The base URL, as `--otlp-endpoint` takes it.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<OtlpSpan> {
        self.spans.lock().unwrap().clone()
    }

    /// The spans of one trace.
    pub fn trace(&self, trace_id: &str) -> Vec<OtlpSpan> {
        self.spans()
            .into_iter()
            .filter(|s| s.trace_id == trace_id)
            .collect()
    }

    /// Waits until the spans received satisfy `check` (exports come in batches, about once a
    /// second) and returns them.
    pub async fn wait_for(
        &self,
        within: Duration,
        check: impl Fn(&[OtlpSpan]) -> bool,
    ) -> Vec<OtlpSpan> {
        let start = Instant::now();
        loop {
            let spans = self.spans();
            if check(&spans) {
                return spans;
            }
            assert!(
                start.elapsed() < within,
                "the OTLP receiver did not get the expected spans within {within:?}: {spans:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn otlp_receive(
    record: Arc<Mutex<Vec<OtlpSpan>>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;

    let answer = |status: StatusCode| {
        let mut resp = Response::new(Full::new(Bytes::new()));
        *resp.status_mut() = status;
        resp.headers_mut()
            .insert("content-type", "application/x-protobuf".parse().unwrap());
        Ok(resp)
    };
    if req.method() != hyper::Method::POST || req.uri().path() != "/v1/traces" {
        return answer(StatusCode::NOT_FOUND);
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let Ok(export) = ExportTraceServiceRequest::decode(body) else {
        return answer(StatusCode::BAD_REQUEST);
    };
    let mut spans = Vec::new();
    for resource_spans in export.resource_spans {
        let resource = resource_spans
            .resource
            .map(|r| otlp_attributes(&r.attributes))
            .unwrap_or_default();
        for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
            let kind = match span.kind {
                1 => "internal",
                2 => "server",
                3 => "client",
                4 => "producer",
                5 => "consumer",
                _ => "unspecified",
            };
            let status = match span.status.map_or(0, |s| s.code) {
                1 => "ok",
                2 => "error",
                _ => "unset",
            };
            spans.push(OtlpSpan {
                trace_id: otlp_hex(&span.trace_id),
                span_id: otlp_hex(&span.span_id),
                parent_span_id: otlp_hex(&span.parent_span_id),
                name: span.name,
                kind: kind.to_owned(),
                start: span.start_time_unix_nano,
                end: span.end_time_unix_nano,
                attributes: otlp_attributes(&span.attributes),
                status: status.to_owned(),
                resource: resource.clone(),
                events: span
                    .events
                    .iter()
                    .map(|e| (e.name.clone(), otlp_attributes(&e.attributes)))
                    .collect(),
            });
        }
    }
    record.lock().unwrap().extend(spans);
    answer(StatusCode::OK)
}

fn otlp_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn otlp_attributes(
    attributes: &[opentelemetry_proto::tonic::common::v1::KeyValue],
) -> BTreeMap<String, String> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
    attributes
        .iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(V::StringValue(s)) => s.clone(),
                Some(V::IntValue(i)) => i.to_string(),
                Some(V::BoolValue(b)) => b.to_string(),
                Some(V::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Debian's Chromium for the browser tests, from `$GATEHOUSE_CHROMIUM` (scripts/test sets it),
/// with playwright-core installed. Without it the test is skipped with a note naming `what`,
/// except under CI, where that fails.
pub fn browser(what: &str) -> Option<PathBuf> {
    let Some(chromium) = std::env::var_os("GATEHOUSE_CHROMIUM").map(PathBuf::from) else {
        if std::env::var_os("CI").is_some() {
            panic!("set GATEHOUSE_CHROMIUM (scripts/test installs Debian's chromium and sets it)");
        }
        eprintln!(
            "note: GATEHOUSE_CHROMIUM is not set, so {what} was skipped; run scripts/test, or set \
             it to /usr/bin/chromium"
        );
        return None;
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
    Some(chromium)
}

/// Runs `tests/browser/{script}` with node, Chromium and `envs` (plus `CHROMIUM` and
/// `ARTIFACTS`) for at most two minutes, and returns the JSON summary it prints after
/// `marker`. On failure, `log` (the server's log) goes into the message.
pub async fn run_browser_script(
    script: &str,
    chromium: &Path,
    artifacts: &Path,
    envs: &[(&str, String)],
    marker: &str,
    log: impl Fn() -> String,
) -> Value {
    let root = repo_root();
    let _ = std::fs::remove_dir_all(artifacts);
    let started = Instant::now();
    let mut child = Command::new("node")
        .arg(root.join("tests/browser").join(script))
        .current_dir(&root)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .env("CHROMIUM", chromium)
        .env("ARTIFACTS", artifacts)
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
            panic!("{script} did not finish within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!(
        "{script} in the browser ({:.1} s):\n{stdout}{stderr}",
        started.elapsed().as_secs_f64()
    );
    assert!(
        status.success(),
        "{script} failed ({status}); screenshots are in {}:\n{stdout}\n{stderr}\n--- gatehouse log ---\n{}",
        artifacts.display(),
        log()
    );
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(marker))
        .map(|j| serde_json::from_str(j.trim()).unwrap())
        .unwrap_or_else(|| panic!("{script} printed no summary"))
}

/// `up` with the built-in gateway also serving HTTPS on a port of its own, with `default` as
/// its default certificate. Returns the process and the HTTPS port.
pub async fn up_with_https(tag: &str, default: &gatehouse_tls::testca::Issued) -> (Gatehouse, u16) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let gh = Gatehouse::up(
        tag,
        &[
            "--gateway-https-listen",
            &listen,
            "--gateway-tls-cert",
            default.cert.to_str().unwrap(),
            "--gateway-tls-key",
            default.key.to_str().unwrap(),
        ],
    )
    .await;
    (gh, port)
}

/// Uploads an issued certificate and its key as `/mgmt/certificates/{id}`.
pub async fn upload_certificate(gh: &Gatehouse, id: &str, issued: &gatehouse_tls::testca::Issued) {
    let pem = format!(
        "{}{}",
        std::fs::read_to_string(&issued.cert).unwrap(),
        std::fs::read_to_string(&issued.key).unwrap()
    );
    gh.ok(
        "PUT",
        &format!("/mgmt/certificates/{id}"),
        Some(json!({ "data": pem })),
    )
    .await;
}

/// openssl's SHA-1 fingerprint line of a PEM certificate (`sha1 Fingerprint=AA:BB:…`).
pub fn sha1_fingerprint(cert: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha1", "-in"])
        .arg(cert)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
