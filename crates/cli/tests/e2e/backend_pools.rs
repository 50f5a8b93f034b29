//! Backend pools and circuit breakers end to end: `gatehouse up`, real backends on loopback
//! that are stopped and started again, and `set-backend-service backend-id` naming a pool. A
//! pool sends to its lowest priority with a member whose breaker is closed, by weight within
//! it; a tripped breaker takes its backend out for the trip duration (or the backend's
//! `Retry-After`), and nothing left to send to is Azure's 503.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;

use super::support::{Gatehouse, set_policy};

/// What a member answers: a status and, optionally, a `Retry-After`.
type Answer = (u16, Option<String>);

/// A real HTTP backend on a loopback port of its own that can go down (its listener and every
/// connection closed, as when its process dies) and come back on the same port. It counts the
/// requests it answers and names itself in `x-member`.
struct Member {
    name: &'static str,
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    answer: Arc<Mutex<Answer>>,
    tasks: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Member {
    async fn start(name: &'static str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut m = Self {
            name,
            addr: listener.local_addr().unwrap(),
            hits: Arc::default(),
            answer: Arc::new(Mutex::new((200, None))),
            tasks: Arc::default(),
        };
        m.serve(listener);
        m
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn answer(&self, status: u16, retry_after: Option<&str>) {
        *self.answer.lock().unwrap() = (status, retry_after.map(str::to_owned));
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let (name, hits, answer, tasks) = (
            self.name,
            self.hits.clone(),
            self.answer.clone(),
            self.tasks.clone(),
        );
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (hits, answer) = (hits.clone(), answer.clone());
                let service = hyper::service::service_fn(move |_req: Request<_>| {
                    hits.fetch_add(1, Ordering::SeqCst);
                    let (status, retry_after) = answer.lock().unwrap().clone();
                    let mut resp =
                        Response::new(Full::new(Bytes::from(json!({"member": name}).to_string())));
                    *resp.status_mut() = StatusCode::from_u16(status).unwrap();
                    resp.headers_mut().insert("x-member", name.parse().unwrap());
                    if let Some(r) = retry_after {
                        resp.headers_mut().insert("retry-after", r.parse().unwrap());
                    }
                    async move { Ok::<_, Infallible>(resp) }
                });
                let conn = tokio::spawn(async move {
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                tasks.lock().unwrap().push(conn.abort_handle());
            }
        });
        self.tasks.lock().unwrap().push(accept.abort_handle());
    }

    /// Stops listening and drops every connection.
    fn down(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    /// Listens again on the same port.
    async fn up(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) => {
                    assert!(Instant::now() < deadline, "cannot listen again: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        self.serve(listener);
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.down();
    }
}

/// A single backend at `url`, with a circuit breaker `rule` when given.
async fn single(gh: &Gatehouse, id: &str, url: &str, rule: Option<serde_json::Value>) {
    let mut body = json!({"url": url});
    if let Some(rule) = rule {
        body["circuitBreaker"] = json!({"rules": [rule]});
    }
    gh.ok("PUT", &format!("/mgmt/backends/{id}"), Some(body))
        .await;
}

/// A pool of `(backend, priority, weight)`.
async fn pool(gh: &Gatehouse, id: &str, members: &[(&str, u32, u32)]) {
    let services: Vec<_> = members
        .iter()
        .map(|(b, priority, weight)| json!({"id": format!("/backends/{b}"), "priority": priority, "weight": weight}))
        .collect();
    gh.ok(
        "PUT",
        &format!("/mgmt/backends/{id}"),
        Some(json!({"type": "Pool", "pool": {"services": services}})),
    )
    .await;
}

/// An open API at `/{id}` whose policy sends every request to backend (or pool) `backend`.
async fn api_to(gh: &Gatehouse, id: &str, backend: &str) {
    gh.simple_api(id, id, "http://127.0.0.1:9", true).await;
    set_policy(
        gh,
        &format!("/mgmt/apis/{id}/policy"),
        &format!(
            r#"<policies><inbound><base /><set-backend-service backend-id="{backend}" /></inbound></policies>"#
        ),
    )
    .await;
}

/// One call: its status, the member that answered (if one did), and the body.
async fn call(gh: &Gatehouse, path: &str) -> (u16, Option<String>, String) {
    let resp = gh.http.get(gh.gateway(path)).send().await.unwrap();
    let status = resp.status().as_u16();
    let member = resp
        .headers()
        .get("x-member")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, member, resp.text().await.unwrap())
}

/// Calls `path` until `member` answers; returns how long that took. Configuration changes
/// travel asynchronously, and breakers close on their own time.
async fn until_member(gh: &Gatehouse, path: &str, member: &str, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let (_, m, _) = call(gh, path).await;
        if m.as_deref() == Some(member) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "{member} did not answer {path} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of a metric sample whose labels include `backend="{backend}"`.
async fn metric(gh: &Gatehouse, name: &str, backend: &str) -> Option<f64> {
    let text = gh
        .http
        .get(gh.admin("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let label = format!("backend=\"{backend}\"");
    text.lines()
        .find(|l| l.starts_with(&format!("{name}{{")) && l.contains(&label))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A breaker rule: `count` failures (5xx, connection failures, timeouts) within `interval`
/// trip it for `trip`.
fn rule(count: u32, interval: &str, trip: &str, accept_retry_after: bool) -> serde_json::Value {
    json!({"name": "failover", "failureCondition": {"count": count, "interval": interval,
        "statusCodeRanges": [{"min": 500, "max": 599}, {"min": 429, "max": 429}],
        "errorReasons": ["BackendConnectionFailure", "Timeout"]},
        "tripDuration": trip, "acceptRetryAfter": accept_retry_after})
}

const UNAVAILABLE: &str =
    r#"{"statusCode":503,"message":"Service unavailable. Please try again later."}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_fails_over_when_its_first_priority_trips_and_returns_after_the_trip() {
    let gh = Gatehouse::up("pool-failover", &[]).await;
    let mut first = Member::start("first").await;
    let second = Member::start("second").await;
    single(
        &gh,
        "first",
        &first.url(),
        Some(rule(3, "PT10S", "PT2S", false)),
    )
    .await;
    single(&gh, "second", &second.url(), None).await;
    pool(&gh, "orders", &[("first", 1, 1), ("second", 2, 1)]).await;
    api_to(&gh, "shop", "orders").await;

    until_member(&gh, "/shop/x", "first", Duration::from_secs(15)).await;
    let before = (first.hits(), second.hits());
    for _ in 0..20 {
        let (status, member, _) = call(&gh, "/shop/x").await;
        assert_eq!((status, member.as_deref()), (200, Some("first")));
    }
    assert_eq!(
        (first.hits() - before.0, second.hits() - before.1),
        (20, 0),
        "priority 2 gets nothing while priority 1 is healthy"
    );
    assert_eq!(
        metric(&gh, "gatehouse_backend_circuit_open", "first").await,
        Some(0.0)
    );

    // The first backend dies: calls fail (502) until three failures trip its breaker, then
    // the pool sends to the second.
    first.down();
    let killed = Instant::now();
    let mut failed = Vec::new();
    let failover = loop {
        let (status, member, _) = call(&gh, "/shop/x").await;
        if member.as_deref() == Some("second") {
            break killed.elapsed();
        }
        failed.push(status);
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "no failover: {failed:?}"
        );
    };
    let tripped = Instant::now();
    assert_eq!(failed, [502, 502, 502], "three failures trip the breaker");
    eprintln!(
        "failover: {failover:?} after the first backend stopped, {} calls failed",
        failed.len()
    );
    assert_eq!(
        metric(&gh, "gatehouse_backend_circuit_open", "first").await,
        Some(1.0)
    );
    assert_eq!(
        metric(&gh, "gatehouse_backend_circuit_trips_total", "first").await,
        Some(1.0)
    );
    assert!(gh.log().contains("circuit breaker tripped"), "{}", gh.log());

    // Back up at once, it still gets nothing until the trip duration (2 s) has passed.
    first.up().await;
    let hits = first.hits();
    let back = until_member(&gh, "/shop/x", "first", Duration::from_secs(10)).await;
    let since_trip = tripped.elapsed();
    eprintln!(
        "recovery: the first backend served again {since_trip:?} after the trip ({back:?} after it came back)"
    );
    assert!(
        since_trip >= Duration::from_millis(1_900),
        "the breaker closed after {since_trip:?}, before its trip duration"
    );
    assert!(since_trip < Duration::from_secs(4), "{since_trip:?}");
    assert_eq!(first.hits(), hits + 1, "no call reached it while open");
    for _ in 0..10 {
        let (status, member, _) = call(&gh, "/shop/x").await;
        assert_eq!((status, member.as_deref()), (200, Some("first")));
    }
    assert_eq!(
        metric(&gh, "gatehouse_backend_circuit_open", "first").await,
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_holds_a_breaker_open_and_nothing_left_is_azures_503() {
    let gh = Gatehouse::up("pool-retry-after", &[]).await;
    let limited = Member::start("limited").await;
    let spare = Member::start("spare").await;
    // Trips on one 429; the breaker's own trip is 1 s, the backend asks for 3 s.
    single(
        &gh,
        "limited",
        &limited.url(),
        Some(rule(1, "PT1M", "PT1S", true)),
    )
    .await;
    single(
        &gh,
        "spare",
        &spare.url(),
        Some(rule(1, "PT1M", "PT30S", false)),
    )
    .await;
    pool(&gh, "ai", &[("limited", 1, 1), ("spare", 2, 1)]).await;
    api_to(&gh, "chat", "ai").await;
    api_to(&gh, "direct", "limited").await;
    // Both APIs served (each configuration change reaches the gateway on its own).
    until_member(&gh, "/chat/x", "limited", Duration::from_secs(15)).await;
    until_member(&gh, "/direct/x", "limited", Duration::from_secs(15)).await;

    limited.answer(429, Some("3"));
    let (status, member, _) = call(&gh, "/chat/x").await;
    // The tripping answer itself reaches the client as the backend gave it.
    assert_eq!((status, member.as_deref()), (429, Some("limited")));
    let tripped = Instant::now();
    limited.answer(200, None);
    let (status, member, _) = call(&gh, "/chat/x").await;
    assert_eq!((status, member.as_deref()), (200, Some("spare")));
    // By its own id, the open backend is a 503.
    let (status, member, body) = call(&gh, "/direct/x").await;
    assert_eq!((status, member, body.as_str()), (503, None, UNAVAILABLE));
    let back = until_member(&gh, "/chat/x", "limited", Duration::from_secs(10)).await;
    let held = tripped.elapsed();
    eprintln!(
        "retry-after: the 429's Retry-After: 3 held the breaker {held:?} (tripDuration PT1S)"
    );
    assert!(
        held >= Duration::from_millis(2_900) && held < Duration::from_secs(6),
        "held {held:?} ({back:?} polling)"
    );

    // Both trip: nothing left to send to.
    limited.answer(503, None);
    spare.answer(500, None);
    let (status, member, _) = call(&gh, "/chat/x").await;
    assert_eq!((status, member.as_deref()), (503, Some("limited")));
    let (status, member, _) = call(&gh, "/chat/x").await;
    assert_eq!((status, member.as_deref()), (500, Some("spare")));
    let hits = (limited.hits(), spare.hits());
    let resp = gh.http.get(gh.gateway("/chat/x")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(
        resp.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    let body = resp.text().await.unwrap();
    assert_eq!(body, UNAVAILABLE, "no internal detail");
    assert_eq!((limited.hits(), spare.hits()), hits, "nothing was sent");
    assert_eq!(
        metric(&gh, "gatehouse_backend_circuit_open", "spare").await,
        Some(1.0)
    );
    // The log says why, for the operator.
    let log = gh.log();
    assert!(
        log.contains("backend pool 'ai'") && log.contains("BackendUnavailable"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_split_a_priority_three_to_one() {
    let gh = Gatehouse::up("pool-weights", &[]).await;
    let heavy = Member::start("heavy").await;
    let light = Member::start("light").await;
    let standby = Member::start("standby").await;
    single(&gh, "heavy", &heavy.url(), None).await;
    single(&gh, "light", &light.url(), None).await;
    single(&gh, "standby", &standby.url(), None).await;
    pool(
        &gh,
        "split",
        &[("heavy", 1, 3), ("light", 1, 1), ("standby", 2, 100)],
    )
    .await;
    api_to(&gh, "split", "split").await;
    until_member(&gh, "/split/x", "heavy", Duration::from_secs(15)).await;
    until_member(&gh, "/split/x", "light", Duration::from_secs(15)).await;

    let before = (heavy.hits(), light.hits(), standby.hits());
    let calls = 1_000;
    let ok = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (http, url, ok) = (gh.http.clone(), gh.gateway("/split/x"), ok.clone());
        workers.push(tokio::spawn(async move {
            for _ in 0..calls / 8 {
                let resp = http.get(&url).send().await.unwrap();
                if resp.status() == 200 {
                    ok.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let counted = (
        heavy.hits() - before.0,
        light.hits() - before.1,
        standby.hits() - before.2,
    );
    eprintln!(
        "weights 3:1 over {calls} calls: heavy {}, light {}, standby {}",
        counted.0, counted.1, counted.2
    );
    assert_eq!(ok.load(Ordering::SeqCst), calls);
    assert_eq!(counted.0 + counted.1, calls, "{counted:?}");
    assert_eq!(counted.2, 0, "priority 2 gets nothing: {counted:?}");
    // 750 expected for the heavy member (and so 250 for the light one): within 10 %.
    assert!((675..=825).contains(&counted.0), "{counted:?}");
}
