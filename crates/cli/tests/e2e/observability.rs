//! Telemetry end to end: Prometheus metrics (checked by promtool), one access log line per
//! request, reports computed from the uploaded batches, and batches that survive an outage of
//! the control plane exactly once.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Backend, Gatehouse, GatewayProc, free_port, set_policy};

/// Polls `cond` (which may `.await`) every 20 ms until it holds, failing after `within`.
macro_rules! until {
    ($within:expr, $what:expr, $cond:expr) => {{
        let deadline = Instant::now() + $within;
        loop {
            if $cond {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "not within {:?}: {}",
                $within,
                $what
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }};
}

const AUTH_SECRET: &str = "Bearer caller-token-Zq81";
const NAMED_SECRET: &str = "nv-secret-8Hq2Lx";

/// The samples of one metric family: labels → value.
fn samples(metrics: &str, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    let mut out = Vec::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (labels, value) = match rest.strip_prefix('{') {
            Some(r) => {
                let (l, v) = r.split_once("} ").unwrap();
                (l, v)
            }
            None => match rest.strip_prefix(' ') {
                Some(v) => ("", v),
                None => continue,
            },
        };
        let mut map = BTreeMap::new();
        // Label values here never hold `",`; a simple split is enough for the test.
        for pair in labels.split("\",").filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once("=\"").unwrap();
            map.insert(k.to_owned(), v.trim_end_matches('"').to_owned());
        }
        out.push((map, value.trim().parse().unwrap()));
    }
    out
}

/// The sum of `name`'s samples whose labels include all of `want`.
fn sum(metrics: &str, name: &str, want: &[(&str, &str)]) -> u64 {
    samples(metrics, name)
        .into_iter()
        .filter(|(labels, _)| {
            want.iter()
                .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| v as u64)
        .sum()
}

/// Runs `promtool check metrics` (Debian's `prometheus` package) on the exposition.
fn promtool(text: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is missing: install Debian's prometheus package (scripts/test does)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- exposition ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn get_text(http: &reqwest::Client, url: &str) -> String {
    http.get(url).send().await.unwrap().text().await.unwrap()
}

/// Three APIs in product `gold`: `echo` (a policy reads a secret named value), `down` (its
/// backend refuses connections) and `limited` (3 calls a minute). Returns the gold key.
async fn setup(gh: &Gatehouse, backend: &Backend) -> String {
    gh.simple_api("echo", "echo", &backend.url(), false).await;
    let closed = format!("http://127.0.0.1:{}", free_port());
    gh.simple_api("down", "down", &closed, false).await;
    gh.simple_api("limited", "limited", &backend.url(), false)
        .await;
    gh.ok(
        "PUT",
        "/mgmt/named-values/backend-secret",
        Some(json!({"displayName": "backend-secret", "value": NAMED_SECRET, "secret": true})),
    )
    .await;
    set_policy(
        gh,
        "/mgmt/apis/echo/policy",
        r#"<policies><inbound><base/><set-header name="X-Secret" exists-action="override"><value>{{backend-secret}}</value></set-header><trace source="audit" severity="information"><message>@("echo " + context.Request.Method)</message><metadata name="tier" value="gold"/></trace><emit-metric name="echo-calls" namespace="shop" value="2"><dimension name="API ID"/><dimension name="Method" value="@(context.Request.Method)"/></emit-metric></inbound><backend><base/></backend><outbound><base/></outbound><on-error><base/></on-error></policies>"#,
    )
    .await;
    set_policy(
        gh,
        "/mgmt/apis/limited/policy",
        r#"<policies><inbound><base/><rate-limit calls="3" renewal-period="60"/></inbound><backend><base/></backend><outbound><base/></outbound><on-error><base/></on-error></policies>"#,
    )
    .await;
    gh.ok(
        "PUT",
        "/mgmt/products/gold",
        Some(json!({"displayName": "Gold", "subscriptionRequired": true, "state": "published"})),
    )
    .await;
    for api in ["echo", "down", "limited"] {
        gh.ok("PUT", &format!("/mgmt/products/gold/apis/{api}"), None)
            .await;
    }
    gh.subscription("gold-sub", "/products/gold").await
}

/// Sends the known mix; returns the request ids the gateway answered with.
async fn traffic(http: &reqwest::Client, base: &dyn Fn(&str) -> String, key: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let send = |rb: reqwest::RequestBuilder, want: u16| {
        let fut = rb.send();
        async move {
            let r = fut.await.unwrap();
            let status = r.status().as_u16();
            let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
            let body = r.text().await.unwrap();
            assert_eq!(status, want, "{body}");
            id
        }
    };
    for i in 0..6 {
        let rb = http
            .get(base(&format!("/echo/h/{i}")))
            .header("Ocp-Apim-Subscription-Key", key);
        ids.push(send(rb, 200).await);
    }
    for i in 0..4 {
        let rb = http
            .post(base(&format!("/echo/q/{i}?subscription-key={key}&x=1")))
            .header("Authorization", AUTH_SECRET)
            .body("twelve bytes");
        ids.push(send(rb, 200).await);
    }
    for _ in 0..3 {
        let rb = http
            .get(base("/echo/nokey"))
            .header("Authorization", AUTH_SECRET);
        ids.push(send(rb, 401).await);
    }
    for _ in 0..2 {
        let rb = http
            .get(base("/echo/wrong"))
            .header("Ocp-Apim-Subscription-Key", "not-a-key-5521");
        ids.push(send(rb, 401).await);
    }
    for _ in 0..2 {
        let rb = http
            .get(base("/down/x"))
            .header("Ocp-Apim-Subscription-Key", key);
        ids.push(send(rb, 502).await);
    }
    for i in 0..5 {
        let rb = http
            .get(base("/limited/x"))
            .header("Ocp-Apim-Subscription-Key", key);
        ids.push(send(rb, if i < 3 { 200 } else { 429 }).await);
    }
    ids.push(send(http.get(base("/nowhere")), 404).await);
    ids
}

const SENT: usize = 6 + 4 + 3 + 2 + 2 + 5 + 1;

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn window() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = &time::format_description::well_known::Rfc3339;
    let from = (now - time::Duration::hours(1)).format(fmt).unwrap();
    let to = (now + time::Duration::hours(1)).format(fmt).unwrap();
    format!("from={from}&to={to}")
        .replace(':', "%3A")
        .replace('+', "%2B")
}

/// Report rows keyed by `key`.
async fn report(gh: &Gatehouse, by: &str, key: &str, extra: &str) -> BTreeMap<String, Value> {
    let (status, body) = gh
        .mgmt(
            "GET",
            &format!("/mgmt/reports/{by}?{}{extra}", window()),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let k = match &row[key] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k, row.clone())
        })
        .collect()
}

fn counts(row: &Value) -> [u64; 4] {
    [
        "callCountTotal",
        "callCountSuccess",
        "callCountBlocked",
        "callCountFailed",
    ]
    .map(|k| row[k].as_u64().unwrap_or_else(|| panic!("{k} in {row}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_logs_and_reports_account_for_every_request() {
    let backend = Backend::start().await;
    let gh = Gatehouse::up("obs", &["--telemetry-interval", "300ms"]).await;
    let key = setup(&gh, &backend).await;
    let http = reqwest::Client::new();
    // The configuration is in force once the rate-limited API answers.
    until!(Duration::from_secs(10), "the configuration is in force", {
        let r = http
            .get(gh.gateway("/echo/ready"))
            .header("Ocp-Apim-Subscription-Key", &key)
            .send()
            .await
            .unwrap();
        r.status() == 200
            && backend.last().headers.get("x-secret").map(String::as_str) == Some(NAMED_SECRET)
    });
    // The probes above are counted too: measure from here (after the log flusher's turn).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = get_text(&http, &gh.admin("/metrics")).await;
    let all_before = sum(&before, "gatehouse_requests_total", &[]);
    let before_echo = sum(
        &before,
        "gatehouse_requests_total",
        &[("api", "echo"), ("code", "200")],
    );
    let before_lines = json_lines(&gh.stdout()).len();

    let ids = traffic(&http, &|p| gh.gateway(p), &key).await;
    assert_eq!(ids.len(), SENT);

    // --- metrics ----------------------------------------------------------------------------
    let mut metrics: String;
    until!(Duration::from_secs(5), "every request is counted", {
        metrics = get_text(&http, &gh.admin("/metrics")).await;
        sum(&metrics, "gatehouse_requests_total", &[]) as usize == SENT + all_before as usize
    });
    promtool(&metrics);
    let m = |want: &[(&str, &str)]| {
        sum(&metrics, "gatehouse_requests_total", want)
            - sum(&before, "gatehouse_requests_total", want)
    };
    assert_eq!(m(&[("api", "echo"), ("code", "200")]), 10);
    assert_eq!(
        m(&[("api", "echo"), ("code", "200"), ("product", "gold")]),
        10
    );
    assert_eq!(
        m(&[
            ("api", "echo"),
            ("code", "401"),
            ("error_reason", "SubscriptionKeyNotFound")
        ]),
        3
    );
    assert_eq!(
        m(&[
            ("api", "echo"),
            ("code", "401"),
            ("error_reason", "SubscriptionKeyInvalid")
        ]),
        2
    );
    assert_eq!(m(&[("api", "echo"), ("code_class", "4xx")]), 5);
    assert_eq!(
        m(&[
            ("api", "down"),
            ("code", "502"),
            ("error_reason", "BackendConnectionFailure")
        ]),
        2
    );
    assert_eq!(
        m(&[("api", "limited"), ("code", "200"), ("backend_code", "200")]),
        3
    );
    assert_eq!(m(&[("api", "limited"), ("code", "429")]), 2);
    assert_eq!(m(&[("api", ""), ("code", "404")]), 1);
    assert_eq!(m(&[("gateway", "built-in")]) as usize, SENT);
    // The duration histograms count the same requests.
    let h =
        |name: &str, want: &[(&str, &str)]| sum(&metrics, name, want) - sum(&before, name, want);
    assert_eq!(
        h(
            "gatehouse_request_duration_seconds_count",
            &[("api", "limited")]
        ),
        5
    );
    assert_eq!(
        h(
            "gatehouse_backend_duration_seconds_count",
            &[("api", "limited")]
        ),
        3
    );
    // emit-metric: each of the 10 keyed echo calls added 2 (GET 6, POST 4).
    let emitted = |method: &str| {
        let want = [
            ("name", "echo-calls"),
            ("namespace", "shop"),
            ("dim_api_id", "echo"),
            ("dim_method", method),
        ];
        (
            h("gatehouse_custom_metric_emitted_total", &want),
            h("gatehouse_custom_metric_value", &want),
        )
    };
    assert_eq!(emitted("GET"), (6, 12));
    assert_eq!(emitted("POST"), (4, 8));
    // Keep-alive upstream pools: far fewer connections than backend calls.
    let opened = sum(&metrics, "gatehouse_upstream_connections_opened_total", &[]);
    assert!(
        (1..=8).contains(&opened),
        "{opened} upstream connections opened"
    );
    assert!(sum(&metrics, "gatehouse_upstream_connections", &[]) >= 1);
    assert!(metrics.contains("gatehouse_config_revision{"));
    assert!(metrics.contains("gatehouse_requests_in_flight{"));
    assert_eq!(
        sum(&metrics, "gatehouse_link_state", &[("state", "ready")]),
        1
    );
    // Scrapers that ask for OpenMetrics get it.
    let open = http
        .get(gh.admin("/metrics"))
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .await
        .unwrap();
    assert!(
        open.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    assert!(open.text().await.unwrap().ends_with("# EOF\n"));

    // --- access log ---------------------------------------------------------------------------
    let mut lines: Vec<Value>;
    until!(Duration::from_secs(5), "every request is logged", {
        lines = json_lines(&gh.stdout());
        lines.len() >= before_lines + SENT
    });
    let lines = &lines[before_lines..];
    assert_eq!(lines.len(), SENT, "exactly one line per request");
    let logged: HashSet<&str> = lines
        .iter()
        .map(|l| l["requestId"].as_str().unwrap())
        .collect();
    assert_eq!(logged, ids.iter().map(String::as_str).collect());
    for line in lines {
        for field in [
            "timestamp",
            "requestId",
            "clientIp",
            "method",
            "url",
            "apiId",
            "operationId",
            "productId",
            "subscriptionId",
            "status",
            "backendStatus",
            "totalMs",
            "backendMs",
            "bytesIn",
            "bytesOut",
            "errorSource",
            "errorReason",
            "traceId",
        ] {
            assert!(line.get(field).is_some(), "{field} missing in {line}");
        }
        assert_eq!(line["clientIp"], "127.0.0.1");
    }
    let by_status = |s: u64| lines.iter().filter(|l| l["status"] == s).count();
    assert_eq!(
        (
            by_status(200),
            by_status(401),
            by_status(502),
            by_status(429),
            by_status(404)
        ),
        (13, 5, 2, 2, 1)
    );
    let q = lines
        .iter()
        .find(|l| l["url"].as_str().unwrap().starts_with("/echo/q/0"))
        .unwrap();
    assert_eq!(q["url"], "/echo/q/0?x=1", "the key parameter is not logged");
    assert_eq!(q["method"], "POST");
    assert_eq!(q["bytesIn"], 12);
    assert_eq!(q["subscriptionId"], "gold-sub");
    assert_eq!(q["productId"], "gold");
    assert_eq!(q["backendStatus"], 200);
    assert!(q["bytesOut"].as_u64().unwrap() > 0);
    let limited = lines.iter().find(|l| l["status"] == 429).unwrap();
    assert_eq!(limited["errorReason"], "RateLimitExceeded", "{limited}");
    assert!(limited["backendStatus"].is_null());

    // --- nothing secret anywhere -------------------------------------------------------------
    let stderr = gh.log();
    for (what, text) in [
        ("the access log", gh.stdout()),
        ("the server log", stderr),
        ("the metrics", metrics.clone()),
    ] {
        for secret in [
            key.as_str(),
            AUTH_SECRET,
            "caller-token-Zq81",
            NAMED_SECRET,
            "not-a-key-5521",
        ] {
            assert!(!text.contains(secret), "{what} contains '{secret}'");
        }
    }

    // --- reports ------------------------------------------------------------------------------
    let mut by_api: BTreeMap<String, Value>;
    until!(Duration::from_secs(10), "the reports show the traffic", {
        by_api = report(&gh, "byApi", "apiId", "").await;
        by_api.get("limited").map(counts) == Some([5, 3, 2, 0])
            && by_api.get("echo").map(|r| counts(r)[0]) == Some(15 + before_echo)
    });
    assert_eq!(
        counts(&by_api["echo"]),
        [15 + before_echo, 10 + before_echo, 5, 0]
    );
    assert_eq!(counts(&by_api["down"]), [2, 0, 0, 2]);
    assert!(by_api["echo"]["bandwidth"].as_u64().unwrap() > 0);
    assert!(by_api["limited"]["apiTimeP95"].as_f64().unwrap() > 0.0);
    assert!(by_api["limited"]["serviceTimeAvg"].as_f64().unwrap() > 0.0);
    let by_product = report(&gh, "byProduct", "productId", "").await;
    assert_eq!(
        counts(&by_product["gold"]),
        [10 + before_echo + 2 + 5, 10 + before_echo + 3, 2, 2]
    );
    let by_subscription = report(&gh, "bySubscription", "subscriptionId", "").await;
    assert_eq!(
        counts(&by_subscription["gold-sub"])[0],
        10 + before_echo + 2 + 5
    );
    let by_time = report(&gh, "byTime", "timestamp", "&interval=PT1H").await;
    let total: u64 = by_time.values().map(|r| counts(r)[0]).sum();
    assert_eq!(total, 15 + before_echo + 2 + 5);
}

async fn a_counts(gh: &Gatehouse) -> [u64; 4] {
    report(gh, "byApi", "apiId", "")
        .await
        .get("a")
        .map(counts)
        .unwrap_or_default()
}

async fn token(gh: &Gatehouse, gateway: &str) -> String {
    gh.gateway_token(gateway).await
}

/// Requests served while the control plane is down reach the reports after it is back,
/// exactly once, even across a restart of the gateway; a full spool drops and counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn telemetry_survives_an_outage_exactly_once() {
    let backend = Backend::start().await;
    let mut gh = Gatehouse::up("obs-outage", &["--telemetry-interval", "300ms"]).await;
    gh.simple_api("a", "a", &backend.url(), false).await;
    gh.simple_api("b", "b", &backend.url(), false).await;
    for (gateway, api) in [("edge", "a"), ("tiny", "b")] {
        gh.ok("PUT", &format!("/mgmt/gateways/{gateway}"), Some(json!({})))
            .await;
        gh.ok("PUT", &format!("/mgmt/gateways/{gateway}/apis/{api}"), None)
            .await;
    }
    let key = gh.subscription("all", "/apis").await;
    let (edge_token, tiny_token) = (token(&gh, "edge").await, token(&gh, "tiny").await);
    let backup = crate::support::temp_dir("obs-outage-backup");
    let mut gw = GatewayProc::spawn(
        "obs-outage-gw",
        &gh.control(""),
        &edge_token,
        &[
            "--backup-dir",
            backup.to_str().unwrap(),
            "--telemetry-interval",
            "300ms",
            "--retry-max",
            "300ms",
        ],
    );
    // A gateway whose spool holds about one batch.
    let tiny = GatewayProc::spawn(
        "obs-outage-tiny",
        &gh.control(""),
        &tiny_token,
        &[
            "--telemetry-interval",
            "200ms",
            "--telemetry-spool-size",
            "600B",
        ],
    );
    for g in [&gw, &tiny] {
        g.wait_ready(Duration::from_secs(10), |r| r["state"] == "ready")
            .await;
    }
    let http = reqwest::Client::new();
    let call = |g: &GatewayProc, path: &str, with_key: bool| {
        let mut rb = http.get(g.url(path));
        if with_key {
            rb = rb.header("Ocp-Apim-Subscription-Key", &key);
        }
        async move { rb.send().await.unwrap().status().as_u16() }
    };
    for _ in 0..10 {
        assert_eq!(call(&gw, "/a/x", true).await, 200);
    }
    until!(
        Duration::from_secs(10),
        "the first 10 calls are reported",
        a_counts(&gh).await == [10, 10, 0, 0]
    );

    // The control plane goes away.
    gh.signal("KILL");
    gh.wait();
    gw.wait_ready(Duration::from_secs(10), |r| r["state"] == "stale")
        .await;
    for _ in 0..7 {
        assert_eq!(call(&gw, "/a/x", true).await, 200);
    }
    for _ in 0..3 {
        assert_eq!(call(&gw, "/a/x", false).await, 401);
    }
    // The tiny gateway closes a batch per round; its spool can hold one.
    for _ in 0..4 {
        assert_eq!(call(&tiny, "/b/x", true).await, 200);
        tokio::time::sleep(Duration::from_millis(350)).await;
    }
    let spool = backup.join("telemetry");
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_dir(&spool).map_or(0, |d| d.count()) == 0 {
        assert!(
            Instant::now() < deadline,
            "nothing spooled in {}",
            spool.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = get_text(&http, &tiny.admin("/metrics")).await;
    promtool(&metrics);
    assert!(
        sum(
            &metrics,
            "gatehouse_telemetry_spool_dropped_batches_total",
            &[]
        ) >= 2,
        "{metrics}"
    );
    assert!(tiny.log().contains("telemetry spool is full"));

    // The gateway restarts while the control plane is still down: what it spooled is on disk,
    // and it serves from its backup.
    gw.terminate();
    assert_eq!(gw.wait_exit(Duration::from_secs(20)), Some(0));
    gw.launch();
    gw.wait_ready(Duration::from_secs(10), |r| r["source"] == "backup")
        .await;
    for _ in 0..5 {
        assert_eq!(call(&gw, "/a/x", true).await, 200);
    }
    tokio::time::sleep(Duration::from_millis(700)).await;

    // The control plane comes back: every request appears once.
    gh.start().await;
    until!(Duration::from_secs(15), "the spooled calls are reported", {
        a_counts(&gh).await == [25, 22, 3, 0]
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        a_counts(&gh).await,
        [25, 22, 3, 0],
        "counted once, not twice"
    );
    let gw_metrics = get_text(&http, &gw.admin("/metrics")).await;
    assert_eq!(
        sum(&gw_metrics, "gatehouse_telemetry_spool_batches", &[]),
        0,
        "{gw_metrics}"
    );
    std::fs::remove_dir_all(backup).ok();
}

/// Traces reach a real OTLP/HTTP receiver with the request span, its sections and the backend
/// call nested as they ran; the backend gets a `traceparent` of the same trace, naming the
/// backend call as its parent; the access log names the trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn traces_reach_the_collector_and_the_backend_joins_them() {
    let receiver = crate::support::OtlpReceiver::start().await;
    let backend = Backend::start().await;
    let gh = Gatehouse::up("obs-otlp", &["--otlp-endpoint", &receiver.url()]).await;
    let key = setup(&gh, &backend).await;
    gh.simple_api("plain", "plain", &backend.url(), true).await;
    let http = reqwest::Client::new();
    until!(Duration::from_secs(10), "the configuration is in force", {
        let echo = http
            .get(gh.gateway("/echo/warm"))
            .header("Ocp-Apim-Subscription-Key", &key)
            .send()
            .await
            .unwrap()
            .status();
        // Until the configuration is in force the backend may have seen nothing yet.
        let secret = echo == 200 && backend.last().headers.contains_key("x-secret");
        let plain = http
            .get(gh.gateway("/plain/warm"))
            .send()
            .await
            .unwrap()
            .status();
        echo == 200 && secret && plain == 200
    });

    // A caller that is itself traced: the gateway continues its trace.
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let r = http
        .get(gh.gateway("/echo/traced?subscription-key=") + &key)
        .header("traceparent", format!("00-{caller_trace}-{caller_span}-01"))
        .header("Authorization", AUTH_SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let sent = backend.last();
    let parent = sent.headers["traceparent"].clone();
    let parts: Vec<&str> = parent.split('-').collect();
    assert_eq!(
        (parts[0], parts[1], parts[3]),
        ("00", caller_trace, "01"),
        "{parent}"
    );

    let spans = receiver
        .wait_for(Duration::from_secs(10), |s| {
            s.iter().filter(|s| s.trace_id == caller_trace).count() >= 5
        })
        .await;
    let mine: Vec<_> = spans
        .iter()
        .filter(|s| s.trace_id == caller_trace)
        .collect();
    let named = |name: &str| {
        let found: Vec<_> = mine.iter().filter(|s| s.name == name).collect();
        assert_eq!(found.len(), 1, "{name} in {mine:#?}");
        (*found[0]).clone()
    };
    let request = named("gateway request");
    let (inbound, backend_section, outbound, call) = (
        named("inbound"),
        named("backend"),
        named("outbound"),
        named("forward-request"),
    );
    assert_eq!(request.parent_span_id, caller_span);
    assert_eq!(request.kind, "server");
    for section in [&inbound, &backend_section, &outbound] {
        assert_eq!(section.parent_span_id, request.span_id, "{section:?}");
        assert!(request.start <= section.start && section.end <= request.end);
    }
    assert!(inbound.end <= backend_section.start && backend_section.end <= outbound.start);
    assert_eq!(call.parent_span_id, backend_section.span_id);
    // The trace policy's message is an event of the inbound span.
    let event = &inbound.events[0];
    assert_eq!(event.0, "echo GET");
    assert_eq!(event.1["gatehouse.trace.source"], "audit");
    assert_eq!(event.1["gatehouse.trace.metadata.tier"], "gold");
    assert_eq!(call.kind, "client");
    assert_eq!(
        parts[2], call.span_id,
        "the backend's parent is the backend call"
    );
    assert_eq!(request.attributes["gatehouse.api.id"], "echo");
    assert_eq!(request.attributes["gatehouse.product.id"], "gold");
    assert_eq!(request.attributes["http.response.status_code"], "200");
    assert_eq!(call.attributes["http.response.status_code"], "200");

    // An API without policies takes the fast path: still a request span and a backend call.
    let r = http.get(gh.gateway("/plain/fast")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let fast_parent = backend.last().headers["traceparent"].clone();
    let fast_trace = fast_parent.split('-').nth(1).unwrap().to_owned();
    assert_ne!(
        fast_trace, caller_trace,
        "no incoming traceparent: a new trace"
    );
    let spans = receiver
        .wait_for(Duration::from_secs(10), |s| {
            s.iter().filter(|s| s.trace_id == fast_trace).count() >= 2
        })
        .await;
    let fast: Vec<_> = spans.iter().filter(|s| s.trace_id == fast_trace).collect();
    let root = fast.iter().find(|s| s.name == "gateway request").unwrap();
    let call = fast.iter().find(|s| s.name == "forward-request").unwrap();
    assert_eq!(root.parent_span_id, "");
    assert_eq!(call.parent_span_id, root.span_id);

    // The access log carries the trace ids.
    let mut lines: Vec<Value>;
    until!(Duration::from_secs(5), "the traced calls are logged", {
        lines = json_lines(&gh.stdout());
        lines.iter().any(|l| l["traceId"] == fast_trace.as_str())
    });
    assert!(lines.iter().any(|l| l["traceId"] == caller_trace));

    // Nothing secret in any span.
    for span in receiver.spans() {
        let text = format!("{span:?}");
        for secret in [key.as_str(), "caller-token-Zq81", NAMED_SECRET] {
            assert!(!text.contains(secret), "a span holds '{secret}': {text}");
        }
    }
}
