//! The reports API against hand-built telemetry: a real `gatehouse control-plane`, a gateway
//! and its token, batches POSTed to `/gateway/v1/telemetry` (one of them twice, one with a bad
//! token), then every report's exact numbers, the 400s for bad parameters and the 401s without
//! the admin token. The expected figures are computed here from the raw calls, not by the code
//! under test.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gatehouse_model::telemetry::{Aggregate, Batch, Outcome, Sketch};
use serde_json::{Value, json};

use crate::support::{BIN, free_port, temp_dir};

/// A running `gatehouse control-plane`. Killed when dropped.
struct ControlPlaneProc {
    child: Child,
    dir: std::path::PathBuf,
    port: u16,
    token: String,
    http: reqwest::Client,
}

impl ControlPlaneProc {
    async fn start(tag: &str) -> Self {
        let dir = temp_dir(tag);
        let port = free_port();
        let log = std::fs::File::create(dir.join("control-plane.log")).unwrap();
        let child = Command::new(BIN)
            .arg("control-plane")
            .arg("--data")
            .arg(&dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .env_remove("GATEHOUSE_ADMIN_TOKEN")
            .env_remove("GATEHOUSE_DATABASE")
            .env("GATEHOUSE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut cp = Self {
            child,
            dir,
            port,
            token: String::new(),
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = cp.child.try_wait().unwrap() {
                panic!(
                    "the control plane exited early with {status}:\n{}",
                    cp.log()
                );
            }
            let up = cp
                .http
                .get(cp.url("/mgmt/openapi.json"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if up {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the control plane did not start:\n{}",
                cp.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        cp.token = std::fs::read_to_string(cp.dir.join("admin-token"))
            .unwrap()
            .trim()
            .to_owned();
        cp
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("control-plane.log")).unwrap_or_default()
    }

    /// A GET with the admin token: status and JSON body.
    async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        (
            resp.status().as_u16(),
            resp.json().await.unwrap_or(Value::Null),
        )
    }

    async fn ok(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let resp = self
            .http
            .request(method.clone(), self.url(path))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let value = resp.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{method} {path}: {status} {value}");
        value
    }

    /// POSTs a body to the telemetry endpoint with `authorization`: status and JSON body.
    async fn upload(&self, authorization: Option<&str>, body: String) -> (u16, Value) {
        let mut req = self
            .http
            .post(self.url("/gateway/v1/telemetry"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(a) = authorization {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.unwrap();
        (
            resp.status().as_u16(),
            resp.json().await.unwrap_or(Value::Null),
        )
    }
}

impl Drop for ControlPlaneProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// One call as a gateway would have recorded it.
#[derive(Clone, Copy)]
struct Call {
    status: u16,
    api_micros: u64,
    /// `None`: the call never reached the backend (refused by the gateway).
    service_micros: Option<u64>,
    bytes: u64,
}

fn ok(api_micros: u64, bytes: u64) -> Call {
    Call {
        status: 200,
        api_micros,
        service_micros: Some(api_micros / 2),
        bytes,
    }
}

/// Calls of one minute for one API, operation, product and subscription.
#[derive(Clone)]
struct Group {
    minute: i64,
    api: &'static str,
    operation: &'static str,
    product: Option<&'static str>,
    subscription: Option<&'static str>,
    calls: Vec<Call>,
}

impl Group {
    fn aggregate(&self) -> Aggregate {
        let mut a = Aggregate {
            minute: self.minute,
            api_id: self.api.into(),
            operation_id: self.operation.into(),
            product_id: self.product.map(Into::into),
            subscription_id: self.subscription.map(Into::into),
            ..Aggregate::default()
        };
        for c in &self.calls {
            a.counts
                .add(Outcome::classify(c.status, c.service_micros.is_some()));
            a.bandwidth += c.bytes;
            a.api_time.record(c.api_micros);
            if let Some(s) = c.service_micros {
                a.service_time.record(s);
            }
        }
        a
    }
}

fn batch(id: &str, groups: &[Group]) -> String {
    serde_json::to_string(&Batch {
        id: id.into(),
        instance: "pod-1".into(),
        created: 0,
        aggregates: groups.iter().map(Group::aggregate).collect(),
        samples: vec![],
        dropped_batches: 0,
    })
    .unwrap()
}

/// What a report row must say about a set of calls, computed from the calls themselves.
#[derive(Default, Clone)]
struct Expected {
    total: u64,
    success: u64,
    blocked: u64,
    failed: u64,
    other: u64,
    bandwidth: u64,
    api: Vec<u64>,
    service: Vec<u64>,
}

impl Expected {
    fn add(&mut self, c: &Call) {
        self.total += 1;
        match c.status {
            100..=399 => self.success += 1,
            401 | 403 | 429 if c.service_micros.is_none() => self.blocked += 1,
            500..=599 => self.failed += 1,
            _ => self.other += 1,
        }
        self.bandwidth += c.bytes;
        self.api.push(c.api_micros);
        self.service.extend(c.service_micros);
    }

    /// Checks a report row: counts exactly, means to the microsecond, 95th percentiles as the
    /// sketch gives them and within 2% of the true value.
    fn check(&self, row: &Value, what: &str) {
        let n = |field: &str| {
            row[field]
                .as_u64()
                .unwrap_or_else(|| panic!("{what}: no {field} in {row}"))
        };
        assert_eq!(
            [
                n("callCountTotal"),
                n("callCountSuccess"),
                n("callCountBlocked"),
                n("callCountFailed"),
                n("callCountOther"),
                n("bandwidth"),
            ],
            [
                self.total,
                self.success,
                self.blocked,
                self.failed,
                self.other,
                self.bandwidth
            ],
            "{what}: {row}"
        );
        for (field, values) in [("apiTime", &self.api), ("serviceTime", &self.service)] {
            let mean = if values.is_empty() {
                0.0
            } else {
                values.iter().sum::<u64>() as f64 / values.len() as f64 / 1000.0
            };
            let got = row[format!("{field}Avg")].as_f64().unwrap();
            assert!(
                (got - mean).abs() < 0.0006,
                "{what}: {field}Avg {got} vs {mean}"
            );
            let mut sorted = values.clone();
            sorted.sort_unstable();
            let p95 = row[format!("{field}P95")].as_f64().unwrap();
            match sorted.len() {
                0 => assert_eq!(p95, 0.0, "{what}: {field}P95"),
                len => {
                    let exact =
                        sorted[((len as f64 * 0.95).ceil() as usize).max(1) - 1] as f64 / 1000.0;
                    assert!(
                        (p95 - exact).abs() / exact < 0.02,
                        "{what}: {field}P95 {p95} vs {exact}"
                    );
                    let mut sketch = Sketch::default();
                    values.iter().for_each(|v| sketch.record(*v));
                    let sketched = (sketch.quantile_ms(0.95) * 1000.0).round() / 1000.0;
                    assert_eq!(p95, sketched, "{what}: {field}P95");
                }
            }
        }
    }
}

fn rfc3339(unix: i64) -> String {
    gatehouse_model::reports::rfc3339(unix)
}

/// The keys of a report's rows, in order.
fn keys(report: &Value, fields: &[&str]) -> Vec<String> {
    report["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            fields
                .iter()
                .map(|f| match &row[*f] {
                    Value::String(s) => s.clone(),
                    Value::Null => "null".to_owned(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join("/")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_report_counts_uploaded_telemetry_exactly_once() {
    let cp = ControlPlaneProc::start("reports").await;
    cp.ok(
        reqwest::Method::PUT,
        "/mgmt/gateways/edge",
        json!({"locationData": {"name": "lab"}}),
    )
    .await;
    let token = cp
        .ok(
            reqwest::Method::POST,
            "/mgmt/gateways/edge/generateToken",
            json!({}),
        )
        .await["value"]
        .as_str()
        .unwrap()
        .to_owned();
    let revision = cp.get("/mgmt/gateways/edge/status").await.1["currentRevision"].clone();

    // Three hours ago, on the hour: inside the retention, and a window of half an hour from it
    // never crosses midnight.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let t0 = now - now % 3_600 - 3 * 3_600;
    let g = |minute, api, operation, product, subscription, calls: Vec<Call>| Group {
        minute,
        api,
        operation,
        product,
        subscription,
        calls,
    };
    let blocked = Call {
        status: 401,
        api_micros: 200,
        service_micros: None,
        bytes: 0,
    };
    let failed = Call {
        status: 502,
        api_micros: 10_000,
        service_micros: Some(9_000),
        bytes: 30,
    };
    let not_found = Call {
        status: 404,
        api_micros: 300,
        service_micros: None,
        bytes: 0,
    };
    let first = vec![
        g(
            t0,
            "echo",
            "get",
            Some("gold"),
            Some("alice"),
            vec![ok(1_000, 100), ok(2_000, 100), ok(3_000, 100), failed],
        ),
        g(
            t0 + 60,
            "echo",
            "get",
            Some("gold"),
            Some("alice"),
            vec![blocked],
        ),
        g(
            t0 + 60,
            "echo",
            "post",
            None,
            None,
            vec![ok(500, 10), ok(700, 10)],
        ),
        // Outside the window: the minute before it, and the minute its end excludes.
        g(
            t0 - 60,
            "echo",
            "get",
            Some("gold"),
            Some("alice"),
            vec![ok(1, 1); 7],
        ),
        g(
            t0 + 1_800,
            "echo",
            "get",
            Some("gold"),
            Some("alice"),
            vec![ok(1, 1); 11],
        ),
    ];
    let second = vec![
        g(t0 + 300, "pets", "list", Some("silver"), Some("bob"), {
            let mut calls: Vec<Call> = (1..=5).map(|i| ok(i * 4_000, 1_000)).collect();
            calls.push(not_found);
            calls
        }),
        g(
            t0 + 360,
            "echo",
            "get",
            Some("gold"),
            Some("alice"),
            vec![ok(4_000, 100), ok(6_000, 100)],
        ),
    ];
    let auth = token.as_str();
    let (status, body) = cp.upload(Some(auth), batch("batch-1", &first)).await;
    assert_eq!(
        (status, &body),
        (200, &json!({"accepted": 5, "duplicate": false}))
    );
    let (status, body) = cp.upload(Some(auth), batch("batch-2", &second)).await;
    assert_eq!(
        (status, &body),
        (200, &json!({"accepted": 2, "duplicate": false}))
    );
    // The same batch again (a lost answer, a replayed spool): stored once.
    let (status, body) = cp.upload(Some(auth), batch("batch-2", &second)).await;
    assert_eq!(
        (status, &body),
        (200, &json!({"accepted": 0, "duplicate": true}))
    );
    // A bad token, or none: refused, nothing stored.
    let forged = format!("{}x", &token[..token.len() - 1]);
    let (status, body) = cp.upload(Some(&forged), batch("batch-3", &second)).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "InvalidToken");
    let (status, _) = cp.upload(None, batch("batch-4", &second)).await;
    assert_eq!(status, 401);
    // Not JSON: a ValidationError with line and column.
    let (status, body) = cp.upload(Some(auth), "{\n  \"id\": ,\n}".into()).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "ValidationError");
    assert_eq!(body["error"]["details"][0]["line"], 2);
    assert_eq!(body["error"]["details"][0]["column"], 9);
    // A batch without an id cannot be de-duplicated: refused, naming the field.
    let (status, body) = cp
        .upload(
            Some(auth),
            json!({"id": "", "instance": "pod-1", "created": 0, "aggregates": []}).to_string(),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["details"][0]["target"], "id");
    // Larger than a batch may be: 413, without storing anything.
    let huge = format!(
        "{{\"id\":\"huge\",\"pad\":\"{}\"}}",
        " ".repeat(gatehouse_model::telemetry::MAX_BATCH_BYTES)
    );
    let (status, body) = cp.upload(Some(auth), huge).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "PayloadTooLarge");
    // Telemetry is not configuration: the revision stays.
    assert_eq!(
        cp.get("/mgmt/gateways/edge/status").await.1["currentRevision"],
        revision
    );

    // What every report must say, from the calls in the window.
    let in_window: Vec<&Group> = first
        .iter()
        .chain(&second)
        .filter(|g| g.minute >= t0 && g.minute < t0 + 1_800)
        .collect();
    let expect = |key: &dyn Fn(&Group) -> String| -> BTreeMap<String, Expected> {
        let mut map: BTreeMap<String, Expected> = BTreeMap::new();
        for group in &in_window {
            let e = map.entry(key(group)).or_default();
            group.calls.iter().for_each(|c| e.add(c));
        }
        map
    };
    let window = format!("from={}&to={}", rfc3339(t0), rfc3339(t0 + 1_800));
    let check =
        |report: &Value, fields: &[&str], expected: &BTreeMap<String, Expected>, order: &[&str]| {
            assert_eq!(keys(report, fields), order, "{report}");
            assert_eq!(report["count"], order.len(), "{report}");
            assert_eq!(report["nextLink"], Value::Null);
            for (row, key) in report["value"].as_array().unwrap().iter().zip(order) {
                expected[*key].check(row, key);
            }
        };

    let (status, by_api) = cp.get(&format!("/mgmt/reports/byApi?{window}")).await;
    assert_eq!(status, 200, "{by_api}");
    let apis = expect(&|g| g.api.to_owned());
    assert_eq!(apis["echo"].total, 9);
    assert_eq!(
        (
            apis["echo"].success,
            apis["echo"].blocked,
            apis["echo"].failed
        ),
        (7, 1, 1)
    );
    assert_eq!((apis["pets"].total, apis["pets"].other), (6, 1));
    check(&by_api, &["apiId"], &apis, &["echo", "pets"]);

    let (_, by_operation) = cp.get(&format!("/mgmt/reports/byOperation?{window}")).await;
    let operations = expect(&|g| format!("{}/{}", g.api, g.operation));
    check(
        &by_operation,
        &["apiId", "operationId"],
        &operations,
        &["echo/get", "pets/list", "echo/post"],
    );

    let (_, by_product) = cp.get(&format!("/mgmt/reports/byProduct?{window}")).await;
    let products = expect(&|g| g.product.unwrap_or("null").to_owned());
    check(
        &by_product,
        &["productId"],
        &products,
        &["gold", "silver", "null"],
    );
    assert!(by_product["value"][2]["productId"].is_null());

    let (_, by_subscription) = cp
        .get(&format!("/mgmt/reports/bySubscription?{window}"))
        .await;
    let subscriptions = expect(&|g| g.subscription.unwrap_or("null").to_owned());
    check(
        &by_subscription,
        &["subscriptionId"],
        &subscriptions,
        &["alice", "bob", "null"],
    );

    // Over time: one row per bucket with traffic, in time order.
    let (_, five) = cp
        .get(&format!("/mgmt/reports/byTime?{window}&interval=PT5M"))
        .await;
    let buckets = expect(&|g| rfc3339(g.minute - g.minute % 300));
    let order = [rfc3339(t0), rfc3339(t0 + 300)];
    check(
        &five,
        &["timestamp"],
        &buckets,
        &[order[0].as_str(), order[1].as_str()],
    );
    assert_eq!(five["value"][0]["interval"], "PT5M");
    assert_eq!((buckets[&order[0]].total, buckets[&order[1]].total), (7, 8));
    let (_, minutes) = cp
        .get(&format!("/mgmt/reports/byTime?{window}&interval=PT1M"))
        .await;
    let per_minute = expect(&|g| rfc3339(g.minute));
    let order: Vec<String> = [0, 60, 300, 360].iter().map(|d| rfc3339(t0 + d)).collect();
    let order: Vec<&str> = order.iter().map(String::as_str).collect();
    check(&minutes, &["timestamp"], &per_minute, &order);
    let (_, day) = cp
        .get(&format!("/mgmt/reports/byTime?{window}&interval=P1D"))
        .await;
    let midnight = rfc3339(t0 - t0 % 86_400);
    let whole = expect(&|_| midnight.clone());
    check(&day, &["timestamp"], &whole, &[midnight.as_str()]);
    assert_eq!(day["value"][0]["interval"], "P1D");
    let (_, hours) = cp
        .get(&format!("/mgmt/reports/byTime?{window}&interval=PT90M"))
        .await;
    assert_eq!(hours["value"][0]["interval"], "PT1H30M");

    // Filtered to one API.
    let (_, pets_time) = cp
        .get(&format!(
            "/mgmt/reports/byTime?{window}&interval=PT5M&apiId=pets"
        ))
        .await;
    let pets_only = expect(&|g| {
        if g.api == "pets" {
            rfc3339(t0 + 300)
        } else {
            "other".into()
        }
    });
    check(
        &pets_time,
        &["timestamp"],
        &pets_only,
        &[rfc3339(t0 + 300).as_str()],
    );
    let (_, echo_ops) = cp
        .get(&format!("/mgmt/reports/byOperation?{window}&apiId=echo"))
        .await;
    check(
        &echo_ops,
        &["apiId", "operationId"],
        &operations,
        &["echo/get", "echo/post"],
    );
    let (_, nothing) = cp
        .get(&format!("/mgmt/reports/byApi?{window}&apiId=nothing"))
        .await;
    assert_eq!(nothing, json!({"value": [], "count": 0, "nextLink": null}));
    // The window's edges: `from` inclusive, `to` exclusive.
    let (_, edges) = cp
        .get(&format!(
            "/mgmt/reports/byApi?from={}&to={}",
            rfc3339(t0 - 60),
            rfc3339(t0 + 1_860)
        ))
        .await;
    assert_eq!(edges["value"][0]["callCountTotal"], 9 + 7 + 11);

    // An empty window (from = to) is no traffic, not a mistake.
    let (status, empty) = cp
        .get(&format!(
            "/mgmt/reports/byProduct?from={0}&to={0}",
            rfc3339(t0)
        ))
        .await;
    assert_eq!(status, 200, "{empty}");
    assert_eq!(empty["count"], 0, "{empty}");

    // Bad parameters: 400 naming the parameter.
    let bad: &[(&str, &str)] = &[
        ("/mgmt/reports/byApi", "from"),
        (&format!("/mgmt/reports/byApi?from={}", rfc3339(t0)), "to"),
        (&format!("/mgmt/reports/byApi?to={}", rfc3339(t0)), "from"),
        (
            &format!(
                "/mgmt/reports/byOperation?from=yesterday&to={}",
                rfc3339(t0)
            ),
            "from",
        ),
        (
            &format!("/mgmt/reports/byApi?{window}&apiId=no%20spaces"),
            "apiId",
        ),
        (&format!("/mgmt/reports/byTime?{window}"), "interval"),
        (
            &format!("/mgmt/reports/byTime?{window}&interval=PT30S"),
            "interval",
        ),
        (
            &format!("/mgmt/reports/byTime?{window}&interval=P2D"),
            "interval",
        ),
        (
            &format!("/mgmt/reports/byTime?{window}&interval=5m"),
            "interval",
        ),
        (
            &format!("/mgmt/reports/byTime?{window}&interval=P1M"),
            "interval",
        ),
        (
            &format!("/mgmt/reports/byTime?to={}&interval=PT5M", rfc3339(t0)),
            "from",
        ),
    ];
    for (path, target) in bad {
        let (status, body) = cp.get(path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"]["code"], "ValidationError", "{path}");
        assert_eq!(
            body["error"]["details"][0]["target"], *target,
            "{path}: {body}"
        );
    }

    // Without the admin token, or with another: 401.
    for report in [
        "byApi",
        "byOperation",
        "byProduct",
        "bySubscription",
        "byTime",
    ] {
        let path = format!("/mgmt/reports/{report}?{window}&interval=PT5M");
        for auth in [None, Some("Bearer not-the-admin-token")] {
            let mut req = cp.http.get(cp.url(&path));
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 401, "{path} with {auth:?}");
        }
    }

    // The admin console is served by `control-plane` too, and shows the gateway.
    let console = cp
        .http
        .get(cp.url("/admin/"))
        .bearer_auth(&cp.token)
        .send()
        .await
        .unwrap();
    assert_eq!(console.status(), 200);
    let html = console.text().await.unwrap();
    assert!(html.contains("data-gateway=\"edge\""), "{html}");
    assert!(html.contains("Telemetry: 2 batches"), "{html}");
    let traffic = cp
        .http
        .get(cp.url("/admin/traffic?window=30d"))
        .bearer_auth(&cp.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        traffic.contains("<td class=\"num\" data-field=\"calls\">27</td>"),
        "{traffic}"
    );
}
