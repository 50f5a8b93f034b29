use std::sync::atomic::AtomicU32;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use super::*;

/// What a test sink received: each request's path, headers and body.
#[derive(Default)]
struct Seen {
    requests: Mutex<Vec<(String, HeaderMap, String)>>,
}

/// A sink on loopback answering request `n` (from 0) with `answer(n)`: a status, after a delay.
async fn sink(
    answer: impl Fn(u32) -> (u16, Duration) + Send + Sync + 'static,
) -> (String, Arc<Seen>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let status = Arc::new(answer);
    let calls = Arc::new(AtomicU32::new(0));
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (record, status, calls) = (record.clone(), status.clone(), calls.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (record, status, calls) = (record.clone(), status.clone(), calls.clone());
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.unwrap().to_bytes();
                        let n = calls.fetch_add(1, Ordering::SeqCst);
                        let (code, delay) = status(n);
                        tokio::time::sleep(delay).await;
                        if (200..300).contains(&code) {
                            record.requests.lock().unwrap().push((
                                parts.uri.to_string(),
                                parts.headers,
                                String::from_utf8(body.to_vec()).unwrap(),
                            ));
                        }
                        let mut r = Response::new(Full::new(Bytes::new()));
                        *r.status_mut() = http::StatusCode::from_u16(code).unwrap();
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (format!("http://{addr}"), seen)
}

fn http_logger(id: &str, url: &str, buffered: bool) -> Arc<LoggerSpec> {
    let shipped = SnapshotLogger {
        id: id.into(),
        logger_type: "http".into(),
        credentials: BTreeMap::new(),
        endpoint: Some(gatehouse_model::loggers::LoggerEndpoint {
            url: url.into(),
            headers: [("Authorization".to_owned(), "Bearer t0ken".to_owned())].into(),
        }),
        is_buffered: buffered,
    };
    Arc::new(LoggerSpec::compile(&shipped).unwrap())
}

fn shipper() -> LogShipper {
    LogShipper::new(&[], None, Arc::default()).unwrap()
}

fn entry(logger: &str, message: String) -> LogEntry {
    LogEntry {
        logger: logger.into(),
        partition: Partition::Any,
        message,
    }
}

async fn until(what: &str, within: Duration, check: impl Fn() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn lines(seen: &Seen) -> Vec<String> {
    seen.requests
        .lock()
        .unwrap()
        .iter()
        .flat_map(|(_, _, body)| body.lines().map(str::to_owned).collect::<Vec<_>>())
        .collect()
}

#[test]
fn shared_access_signatures_follow_azures_formula() {
    // Computed independently (Python's hmac, hashlib and urllib.parse.quote).
    assert_eq!(
        shared_access_signature(
            "https://ns.servicebus.windows.net/orders",
            "Send Policy",
            "c2VjcmV0LWtleQ==",
            1_700_000_000
        ),
        "SharedAccessSignature sr=https%3A%2F%2Fns.servicebus.windows.net%2Forders&sig=q7DZytOUaE63jG12o2%2FQ4MoysQnr1HVGeU4bHI0DOo0%3D&se=1700000000&skn=Send%20Policy"
    );
}

#[test]
fn event_hub_batches_go_per_partition_in_order() {
    let shipped = SnapshotLogger {
        id: "hub".into(),
        logger_type: "azureEventHub".into(),
        credentials: [(
            "connectionString".to_owned(),
            "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=k;EntityPath=orders".to_owned(),
        )]
        .into(),
        endpoint: None,
        is_buffered: true,
    };
    let spec = LoggerSpec::compile(&shipped).unwrap();
    let Sink::EventHub(hub) = &spec.sink else {
        panic!("{spec:?}")
    };
    assert_eq!(hub.entity, "https://ns.servicebus.windows.net/orders");
    assert!(!format!("{spec:?}").contains("SharedAccessKey=k"));
    let q = |partition: Partition, m: &str| Queued {
        partition,
        message: m.into(),
        at: SystemTime::now(),
    };
    let groups = by_partition(vec![
        q(Partition::Any, "a"),
        q(Partition::Key("k1".into()), "b"),
        q(Partition::Any, "c"),
        q(Partition::Id("2".into()), "d"),
        q(Partition::Key("k1".into()), "e"),
    ]);
    let order: Vec<(Partition, Vec<&str>)> = groups
        .iter()
        .map(|(p, l)| (p.clone(), l.iter().map(|q| q.message.as_str()).collect()))
        .collect();
    assert_eq!(
        order,
        vec![
            (Partition::Any, vec!["a", "c"]),
            (Partition::Key("k1".into()), vec!["b", "e"]),
            (Partition::Id("2".into()), vec!["d"]),
        ]
    );
    let (url, body) = event_hub_request(hub, &groups[1].0, &groups[1].1);
    assert_eq!(
        url,
        "https://ns.servicebus.windows.net/orders/messages?timeout=60&api-version=2014-01"
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        serde_json::json!([
            {"Body": "b", "BrokerProperties": {"PartitionKey": "k1"}},
            {"Body": "e", "BrokerProperties": {"PartitionKey": "k1"}},
        ])
    );
    let (url, body) = event_hub_request(hub, &groups[2].0, &groups[2].1);
    assert_eq!(
        url,
        "https://ns.servicebus.windows.net/orders/partitions/2/messages?timeout=60&api-version=2014-01"
    );
    assert_eq!(body, r#"[{"Body":"d"}]"#);
}

#[tokio::test]
async fn an_http_logger_gets_every_message_in_batches_with_its_headers() {
    let (url, seen) = sink(|_| (200, Duration::ZERO)).await;
    let shipper = shipper();
    let spec = http_logger("sink", &format!("{url}/ingest"), true);
    for i in 0..300 {
        shipper.submit(Some(&spec), entry("sink", format!("message {i}")));
    }
    until("300 lines", Duration::from_secs(10), || {
        lines(&seen).len() == 300
    })
    .await;
    let got = lines(&seen);
    let want: Vec<String> = (0..300).map(|i| format!("message {i}")).collect();
    assert_eq!(got, want, "every message, in order");
    {
        let requests = seen.requests.lock().unwrap();
        assert!(requests.len() < 10, "batched: {} requests", requests.len());
        let (path, headers, _) = &requests[0];
        assert_eq!(path, "/ingest");
        assert_eq!(headers["authorization"], "Bearer t0ken");
        assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
    }
    let c = shipper.stats().counters("sink");
    until("counted", Duration::from_secs(5), || {
        c.sent.load(Ordering::Relaxed) == 300
    })
    .await;
    assert_eq!(c.dropped.load(Ordering::Relaxed), 0);
    assert_eq!(c.queued.load(Ordering::Relaxed), 0);
    assert!(shipper.flush(Duration::from_secs(5)));
}

#[tokio::test]
async fn failed_batches_are_tried_again_and_refused_ones_dropped_and_counted() {
    // Two 503s, then success: nothing lost.
    let (url, seen) = sink(|n| (if n < 2 { 503 } else { 200 }, Duration::ZERO)).await;
    let shipper = shipper();
    let spec = http_logger("flaky", &url, false);
    shipper.submit(Some(&spec), entry("flaky", "one".into()));
    until("delivered after retries", Duration::from_secs(10), || {
        lines(&seen) == ["one"]
    })
    .await;
    // A refusal (401) is final: dropped and counted, no retries.
    let (url, _) = sink(|_| (401, Duration::ZERO)).await;
    let spec = http_logger("refusing", &url, false);
    shipper.submit(Some(&spec), entry("refusing", "two".into()));
    let c = shipper.stats().counters("refusing");
    until("dropped", Duration::from_secs(5), || {
        c.dropped.load(Ordering::Relaxed) == 1
    })
    .await;
    assert_eq!(c.sent.load(Ordering::Relaxed), 0);
    // A logger the configuration does not have: dropped and counted.
    shipper.submit(None, entry("ghost", "three".into()));
    assert_eq!(
        shipper
            .stats()
            .counters("ghost")
            .dropped
            .load(Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_without_making_anyone_wait() {
    // The sink takes 2 s for the first batch: the queue fills behind it.
    let (url, seen) = sink(|n| {
        let stall = if n == 0 {
            Duration::from_secs(2)
        } else {
            Duration::ZERO
        };
        (200, stall)
    })
    .await;
    let shipper = shipper();
    let spec = http_logger("slow", &url, true);
    let total = QUEUE_MESSAGES + BATCH_MESSAGES + 1000;
    let started = Instant::now();
    for i in 0..total {
        shipper.submit(Some(&spec), entry("slow", format!("m{i}")));
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "submitting took {took:?}");
    let c = shipper.stats().counters("slow");
    let dropped = c.dropped.load(Ordering::Relaxed);
    assert!(dropped > 0, "nothing dropped");
    // What was taken is delivered, what was dropped is counted: together, every message.
    until("the queue drained", Duration::from_secs(60), || {
        c.queued.load(Ordering::Relaxed) == 0
    })
    .await;
    assert_eq!(lines(&seen).len() as u64, c.sent.load(Ordering::Relaxed));
    assert_eq!(
        c.sent.load(Ordering::Relaxed) + c.dropped.load(Ordering::Relaxed),
        total as u64
    );
}

#[tokio::test]
async fn otlp_loggers_send_log_records() {
    let (url, seen) = sink(|_| (200, Duration::ZERO)).await;
    let shipped = SnapshotLogger {
        id: "otel".into(),
        logger_type: "otlp".into(),
        credentials: BTreeMap::new(),
        endpoint: Some(gatehouse_model::loggers::LoggerEndpoint {
            url: url.clone(),
            headers: BTreeMap::new(),
        }),
        is_buffered: false,
    };
    let spec = Arc::new(LoggerSpec::compile(&shipped).unwrap());
    let shipper = shipper();
    shipper.submit(
        Some(&spec),
        LogEntry {
            logger: "otel".into(),
            partition: Partition::Key("k".into()),
            message: "hello".into(),
        },
    );
    until("one request", Duration::from_secs(10), || {
        seen.requests.lock().unwrap().len() == 1
    })
    .await;
    let (path, headers, body) = seen.requests.lock().unwrap()[0].clone();
    assert_eq!(path, "/v1/logs");
    assert_eq!(headers["content-type"], "application/json");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    let record = &body["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0];
    assert_eq!(record["body"]["stringValue"], "hello");
    assert_eq!(record["attributes"][0]["value"]["stringValue"], "otel");
    assert_eq!(record["attributes"][1]["key"], "gatehouse.partition.key");
}

#[tokio::test]
async fn a_logger_whose_settings_change_gets_a_new_queue_and_the_old_one_drains() {
    let (old_url, old_seen) = sink(|_| (200, Duration::from_millis(300))).await;
    let (new_url, new_seen) = sink(|_| (200, Duration::ZERO)).await;
    let shipper = shipper();
    let old = http_logger("moving", &old_url, false);
    shipper.submit(Some(&old), entry("moving", "before".into()));
    let new = http_logger("moving", &new_url, false);
    shipper.submit(Some(&new), entry("moving", "after".into()));
    until("both delivered", Duration::from_secs(10), || {
        lines(&old_seen) == ["before"] && lines(&new_seen) == ["after"]
    })
    .await;
    // The same settings compiled again: the queue is kept.
    let same = http_logger("moving", &new_url, false);
    shipper.submit(Some(&same), entry("moving", "again".into()));
    until("delivered", Duration::from_secs(10), || {
        lines(&new_seen) == ["after", "again"]
    })
    .await;
    until("the old queue's task ended", Duration::from_secs(5), || {
        shipper.running.load(Ordering::SeqCst) == 1
    })
    .await;
}

#[tokio::test]
async fn an_event_hub_logger_with_a_managed_identity_sends_the_providers_token() {
    use wiremock::matchers::{method, path, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let imds = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/token"))
        .and(query_param("resource", EVENT_HUBS_RESOURCE))
        .and(query_param("client_id", "uai-7"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            serde_json::json!({"access_token": "hub-token", "expires_in": "3599", "token_type": "Bearer"}),
        ))
        .mount(&imds)
        .await;
    let provider = crate::identity::TokenProvider::new(
        crate::identity::Provider::Imds {
            endpoint: format!("{}/token", imds.uri()),
            client_id: None,
        },
        crate::outbound_tls::reqwest_tls(&[]).unwrap(),
    )
    .unwrap();
    let (url, seen) = sink(|_| (201, Duration::ZERO)).await;
    // The hub over plain HTTP here; the sink stands for the namespace.
    let spec = Arc::new(LoggerSpec {
        id: "mi".into(),
        buffered: false,
        sink: Sink::EventHub(EventHub {
            entity: format!("{url}/orders"),
            auth: EventHubAuth::ManagedIdentity {
                client_id: Some("uai-7".into()),
            },
        }),
    });
    let shipper = LogShipper {
        identity: Some(Arc::new(provider)),
        ..shipper()
    };
    shipper.submit(Some(&spec), entry("mi", "signed in".into()));
    until("delivered", Duration::from_secs(10), || {
        seen.requests.lock().unwrap().len() == 1
    })
    .await;
    let (path, headers, body) = seen.requests.lock().unwrap()[0].clone();
    assert_eq!(path, "/orders/messages?timeout=60&api-version=2014-01");
    assert_eq!(headers["authorization"], "Bearer hub-token");
    assert_eq!(body, r#"[{"Body":"signed in"}]"#);

    // Without a token provider: dropped and counted, never sent unsigned.
    let unsigned = LogShipper::new(&[], None, Arc::default()).unwrap();
    unsigned.submit(Some(&spec), entry("mi", "lost".into()));
    let c = unsigned.stats().counters("mi");
    until("dropped", Duration::from_secs(5), || {
        c.dropped.load(Ordering::Relaxed) == 1
    })
    .await;
    assert_eq!(seen.requests.lock().unwrap().len(), 1);
}
