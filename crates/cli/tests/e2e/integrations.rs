//! Issue #15, Azure's integration policies through the real gateway: `log-to-eventhub` to an
//! `http` sink and to a fake Azure Event Hubs over TLS (which checks the shared access
//! signature), without losing messages in a burst or making calls wait on a stalled sink;
//! `proxy` through a real forward proxy (absolute form and `CONNECT`); and the Dapr policies
//! against a fake sidecar.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use gatehouse_tls::server::ServerTls;
use gatehouse_tls::testca::TestCa;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Backend, Gatehouse, put_policy, serve_loopback, set_policy};

/// What a fake server received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: BTreeMap<String, String>,
    body: String,
}

async fn seen(req: Request<Incoming>) -> Seen {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Seen {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn answer(status: u16, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_owned())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

fn encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// Checks an Event Hubs `SharedAccessSignature` the way the service does: for `resource`,
/// signed with `key` as `key_name`, not expired. Returns why not.
fn check_signature(header: &str, resource: &str, key_name: &str, key: &str) -> Result<(), String> {
    let fields = header
        .strip_prefix("SharedAccessSignature ")
        .ok_or("not a SharedAccessSignature")?;
    let fields: BTreeMap<&str, &str> = fields
        .split('&')
        .filter_map(|f| f.split_once('='))
        .collect();
    let (sr, sig, se, skn) = (
        fields.get("sr").ok_or("no sr")?,
        fields.get("sig").ok_or("no sig")?,
        fields.get("se").ok_or("no se")?,
        fields.get("skn").ok_or("no skn")?,
    );
    if decode(sr) != resource {
        return Err(format!("signed for {}, not {resource}", decode(sr)));
    }
    if decode(skn) != key_name {
        return Err(format!("signed with key {}", decode(skn)));
    }
    let expiry: u64 = se.parse().map_err(|_| "se is not a number")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if expiry <= now {
        return Err("expired".into());
    }
    let hmac_key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key.as_bytes());
    let expected = aws_lc_rs::hmac::sign(
        &hmac_key,
        format!("{}\n{expiry}", encode(resource)).as_bytes(),
    );
    let expected = base64::engine::general_purpose::STANDARD.encode(expected.as_ref());
    if decode(sig) != expected {
        return Err("the signature does not match".into());
    }
    Ok(())
}

/// Events as the fake event hub got them: each body and its partition key.
type Events = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// A fake Azure Event Hubs namespace over TLS: `POST /{hub}/messages` with a valid signature
/// and a batch body; records each message's body and partition key.
struct FakeEventHub {
    addr: SocketAddr,
    events: Events,
    refused: Arc<Mutex<Vec<String>>>,
}

const HUB_KEY: &str = "c2VjcmV0LWtleS1vZi10aGUtaHVi";

impl FakeEventHub {
    async fn start(tls: Arc<ServerTls>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let events: Events = Arc::default();
        let refused: Arc<Mutex<Vec<String>>> = Arc::default();
        let (record, refusals) = (events.clone(), refused.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (tls, record, refusals) = (tls.clone(), record.clone(), refusals.clone());
                tokio::spawn(async move {
                    let Ok(accepted) = tls.accept(stream).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (record, refusals) = (record.clone(), refusals.clone());
                        async move {
                            let req = seen(req).await;
                            let resource = format!("https://127.0.0.1:{}/orders", addr.port());
                            let checked = check_signature(
                                req.headers.get("authorization").map_or("", String::as_str),
                                &resource,
                                "send",
                                HUB_KEY,
                            )
                            .and_then(|()| {
                                if req.method == "POST"
                                    && req.path.starts_with("/orders/messages")
                                    && req.headers.get("content-type").map(String::as_str)
                                        == Some("application/vnd.microsoft.servicebus.json")
                                {
                                    Ok(())
                                } else {
                                    Err(format!("{} {}", req.method, req.path))
                                }
                            });
                            if let Err(why) = checked {
                                refusals.lock().unwrap().push(why);
                                return Ok::<_, Infallible>(answer(401, "{}"));
                            }
                            let batch: Vec<Value> = serde_json::from_str(&req.body).unwrap();
                            let header_key = req.headers.get("brokerproperties").map(|b| {
                                serde_json::from_str::<Value>(b).unwrap()["PartitionKey"]
                                    .as_str()
                                    .unwrap()
                                    .to_owned()
                            });
                            let mut events = record.lock().unwrap();
                            for m in batch {
                                let key = m["BrokerProperties"]["PartitionKey"]
                                    .as_str()
                                    .map(str::to_owned);
                                assert_eq!(key, header_key, "one partition key per batch");
                                events.push((m["Body"].as_str().unwrap().to_owned(), key));
                            }
                            Ok(answer(201, ""))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(accepted.stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            events,
            refused,
        }
    }
}

/// How long the sink stalls when told to.
const STALL: Duration = Duration::from_secs(5);

/// An `http` logger's sink: records every line; when `stall` is set, the next request waits
/// [`STALL`] before it is answered (and says when it began waiting).
struct Sink {
    addr: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
    requests: Arc<Mutex<Vec<Seen>>>,
    stall: Arc<std::sync::atomic::AtomicBool>,
    stalled_at: Arc<Mutex<Option<Instant>>>,
}

impl Sink {
    async fn start() -> Self {
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let requests: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let stall: Arc<std::sync::atomic::AtomicBool> = Arc::default();
        let stalled_at: Arc<Mutex<Option<Instant>>> = Arc::default();
        let (l, r, st, at) = (
            lines.clone(),
            requests.clone(),
            stall.clone(),
            stalled_at.clone(),
        );
        let addr = serve_loopback(move |req| {
            let (lines, requests, stall, stalled_at) =
                (l.clone(), r.clone(), st.clone(), at.clone());
            async move {
                let req = seen(req).await;
                requests.lock().unwrap().push(req.clone());
                if stall.swap(false, std::sync::atomic::Ordering::SeqCst) {
                    *stalled_at.lock().unwrap() = Some(Instant::now());
                    tokio::time::sleep(STALL).await;
                }
                lines
                    .lock()
                    .unwrap()
                    .extend(req.body.lines().map(str::to_owned));
                Ok::<_, Infallible>(answer(200, "{}"))
            }
        })
        .await;
        Self {
            addr,
            lines,
            requests,
            stall,
            stalled_at,
        }
    }

    /// The numbered lines received, in number order.
    fn numbered(&self) -> Vec<usize> {
        let mut n: Vec<usize> = self
            .lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| l.parse().ok())
            .collect();
        n.sort_unstable();
        n
    }
}

/// `metric{…logger="id"…} value` from a Prometheus text page.
fn logger_metric(page: &str, name: &str, logger: &str) -> Option<f64> {
    page.lines()
        .filter(|l| l.starts_with(name) && l.contains(&format!("logger=\"{logger}\"")))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn log_to_eventhub_reaches_an_http_sink_and_event_hubs_without_losing_or_waiting() {
    let ca = TestCa::new("e2e-eventhub");
    let leaf = ca.leaf("hub", &["127.0.0.1"]);
    let hub =
        FakeEventHub::start(ServerTls::from_files(&leaf.cert, &leaf.key, false).unwrap()).await;
    let sink = Sink::start().await;
    let backend = Backend::start().await;
    let gh = Gatehouse::up("eventhub", &["--trusted-ca", ca.cert.to_str().unwrap()]).await;
    gh.simple_api("shop", "shop", &backend.url(), true).await;

    // A policy naming a logger that does not exist is refused, as in Azure.
    let policy = r#"<policies><inbound><base />
            <log-to-eventhub logger-id="sink">@(context.Request.Headers.GetValueOrDefault("X-N", ""))</log-to-eventhub>
        </inbound><backend><base /></backend><outbound><base />
            <log-to-eventhub logger-id="hub" partition-key="@(context.Request.Headers.GetValueOrDefault(&quot;X-Group&quot;, &quot;&quot;))">@("done " + context.Request.Headers.GetValueOrDefault("X-N", ""))</log-to-eventhub>
        </outbound></policies>"#;
    let (status, body) = put_policy(&gh, "/mgmt/apis/shop/policy", policy).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.to_string()
            .contains("logger 'sink' does not exist; create it with PUT /mgmt/loggers/sink"),
        "{body}"
    );

    let connection = format!(
        "Endpoint=sb://127.0.0.1:{}/;SharedAccessKeyName=send;SharedAccessKey={HUB_KEY};EntityPath=orders",
        hub.addr.port()
    );
    gh.ok(
        "PUT",
        "/mgmt/loggers/hub",
        Some(
            json!({"loggerType": "azureEventHub", "description": "orders hub",
                    "credentials": {"connectionString": connection}}),
        ),
    )
    .await;
    gh.ok(
        "PUT",
        "/mgmt/loggers/sink",
        Some(json!({"loggerType": "http",
                    "endpoint": {"url": format!("http://{}/ingest", sink.addr),
                                 "headers": {"Authorization": "Bearer sink-token"}}})),
    )
    .await;
    // Secrets never come back in clear.
    let shown = gh.ok("GET", "/mgmt/loggers/hub", None).await;
    assert_eq!(shown["credentials"]["connectionString"], "******");
    let shown = gh.ok("GET", "/mgmt/loggers/sink", None).await;
    assert_eq!(shown["endpoint"]["headers"]["Authorization"], "******");
    set_policy(&gh, "/mgmt/apis/shop/policy", policy).await;
    // Once the policy is in force, warm-up messages reach both.
    gh.eventually(Duration::from_secs(20), || async {
        let r = gh
            .http
            .get(gh.gateway("/shop/warmup"))
            .header("X-N", "warmup")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
        !sink.lines.lock().unwrap().is_empty() && !hub.events.lock().unwrap().is_empty()
    })
    .await;

    // The sink stalls on the next batch …
    sink.stall.store(true, std::sync::atomic::Ordering::SeqCst);
    let r = gh
        .http
        .get(gh.gateway("/shop/stall"))
        .header("X-N", "stall")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    gh.eventually(Duration::from_secs(10), || async {
        sink.stalled_at.lock().unwrap().is_some()
    })
    .await;
    let stalled_at = sink.stalled_at.lock().unwrap().unwrap();

    // … and a burst of 200 calls meanwhile: none waits for it.
    let calls = 200;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..10 {
        let (http, url) = (gh.http.clone(), gh.gateway("/shop/items"));
        tasks.push(tokio::spawn(async move {
            let mut slowest = Duration::ZERO;
            for i in (worker..calls).step_by(10) {
                let t = Instant::now();
                let r = http
                    .get(&url)
                    .header("X-N", i.to_string())
                    .header("X-Group", format!("g{}", i % 3))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                slowest = slowest.max(t.elapsed());
            }
            slowest
        }));
    }
    let mut slowest = Duration::ZERO;
    for t in tasks {
        slowest = slowest.max(t.await.unwrap());
    }
    let burst = started.elapsed();
    println!("200 calls in {burst:?}, the slowest {slowest:?}");
    assert!(
        slowest < Duration::from_millis(1500),
        "a call waited on the logger: {slowest:?}"
    );

    // Every message arrives, once, though the burst met a stalled sink: at the sink …
    gh.eventually(Duration::from_secs(30), || async {
        sink.numbered().len() >= calls
    })
    .await;
    assert_eq!(sink.numbered(), (0..calls).collect::<Vec<_>>());
    assert!(
        started + burst < stalled_at + STALL,
        "the burst did not happen while the sink stalled"
    );
    {
        let requests = sink.requests.lock().unwrap();
        assert!(
            requests.len() < calls / 4,
            "batched: {} requests",
            requests.len()
        );
        assert_eq!(requests[0].path, "/ingest");
        assert_eq!(requests[0].headers["authorization"], "Bearer sink-token");
    }
    // … and at the event hub, signed, with their partition keys.
    let numbered_events = || {
        let mut e: Vec<(String, Option<String>)> = hub
            .events
            .lock()
            .unwrap()
            .iter()
            .filter(|(body, _)| body[5..].parse::<usize>().is_ok())
            .cloned()
            .collect();
        e.sort_by_key(|(body, _)| body[5..].parse::<usize>().unwrap());
        e
    };
    gh.eventually(Duration::from_secs(30), || async {
        numbered_events().len() >= calls
    })
    .await;
    assert!(
        hub.refused.lock().unwrap().is_empty(),
        "{:?}",
        hub.refused.lock().unwrap()
    );
    let want: Vec<(String, Option<String>)> = (0..calls)
        .map(|i| (format!("done {i}"), Some(format!("g{}", i % 3))))
        .collect();
    assert_eq!(numbered_events(), want);

    // The metrics count what arrived; the secrets are in no log.
    gh.eventually(Duration::from_secs(10), || async {
        let page = gh
            .http
            .get(gh.admin("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let (lines, events) = (
            sink.lines.lock().unwrap().len(),
            hub.events.lock().unwrap().len(),
        );
        logger_metric(&page, "gatehouse_logger_sent_total", "sink") == Some(lines as f64)
            && logger_metric(&page, "gatehouse_logger_sent_total", "hub") == Some(events as f64)
    })
    .await;
    let page = gh
        .http
        .get(gh.admin("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        logger_metric(&page, "gatehouse_logger_dropped_total", "sink"),
        Some(0.0)
    );
    assert_eq!(
        logger_metric(&page, "gatehouse_logger_dropped_total", "hub"),
        Some(0.0)
    );
    for secret in [HUB_KEY, "sink-token"] {
        assert!(
            !gh.log().contains(secret) && !gh.stdout().contains(secret),
            "{secret} logged"
        );
    }
    // In use, a logger cannot go.
    let (status, body) = gh.mgmt("DELETE", "/mgmt/loggers/hub", None).await;
    assert_eq!(status, 409, "{body}");
}

/// What the forward proxy saw: the request line (or CONNECT) and its Proxy-Authorization.
type ProxyLog = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// A tiny HTTP forward proxy: `CONNECT host:port` opens a tunnel; a request in absolute form
/// goes to its host in origin form, without `Proxy-Authorization`; afterwards the bytes are
/// copied both ways. Every request line it handled is logged with its Proxy-Authorization.
async fn forward_proxy() -> (SocketAddr, ProxyLog) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log: ProxyLog = Arc::default();
    let record = log.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                continue;
            };
            let record = record.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                let end = loop {
                    if let Some(p) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                        break p + 4;
                    }
                    let n = client.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    head.extend_from_slice(&buf[..n]);
                };
                let rest = head.split_off(end);
                let text = String::from_utf8_lossy(&head).into_owned();
                let mut lines = text.split("\r\n");
                let line = lines.next().unwrap_or_default().to_owned();
                let mut auth = None;
                let mut kept = Vec::new();
                for h in lines.filter(|l| !l.is_empty()) {
                    match h.split_once(':') {
                        Some((n, v)) if n.eq_ignore_ascii_case("proxy-authorization") => {
                            auth = Some(v.trim().to_owned());
                        }
                        _ => kept.push(h.to_owned()),
                    }
                }
                record.lock().unwrap().push((line.clone(), auth));
                let mut parts = line.split(' ');
                let (method, target) = (
                    parts.next().unwrap_or_default(),
                    parts.next().unwrap_or_default(),
                );
                if method == "CONNECT" {
                    let Ok(mut upstream) = tokio::net::TcpStream::connect(target).await else {
                        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                        return;
                    };
                    client
                        .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                        .await
                        .unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    return;
                }
                let Some(after) = target.strip_prefix("http://") else {
                    let _ = client.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
                    return;
                };
                let (authority, path) = after.split_at(after.find('/').unwrap_or(after.len()));
                let Ok(mut upstream) = tokio::net::TcpStream::connect(authority).await else {
                    let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                    return;
                };
                let mut out = format!(
                    "{method} {} HTTP/1.1\r\n",
                    if path.is_empty() { "/" } else { path }
                );
                for h in kept {
                    out.push_str(&h);
                    out.push_str("\r\n");
                }
                out.push_str("\r\n");
                upstream.write_all(out.as_bytes()).await.unwrap();
                upstream.write_all(&rest).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (addr, log)
}

/// POSTs `chunks` to the gateway with chunked framing (no announced length, so the gateway
/// streams the body) and returns the answer's status line.
async fn post_chunked(port: u16, path: &str, chunks: &[&[u8]]) -> String {
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut out = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for c in chunks {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    conn.write_all(&out).await.unwrap();
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// An https backend answering `{"tls": true, "path": …}`.
async fn https_backend(tls: Arc<ServerTls>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let tls = tls.clone();
            tokio::spawn(async move {
                let Ok(accepted) = tls.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    let body = json!({"tls": true, "path": req.uri().path()}).to_string();
                    Ok::<_, Infallible>(answer(200, &body))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(accepted.stream), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_proxy_policy_sends_backend_requests_through_a_forward_proxy() {
    let ca = TestCa::new("e2e-proxy");
    let leaf = ca.leaf("backend", &["127.0.0.1"]);
    let secure = https_backend(ServerTls::from_files(&leaf.cert, &leaf.key, false).unwrap()).await;
    let plain = Backend::start().await;
    let (proxy, log) = forward_proxy().await;
    let gh = Gatehouse::up("proxy-policy", &["--trusted-ca", ca.cert.to_str().unwrap()]).await;
    gh.simple_api("direct", "direct", &plain.url(), true).await;
    gh.simple_api("plain", "plain", &plain.url(), true).await;
    gh.simple_api("secure", "secure", &format!("https://{secure}"), true)
        .await;
    let policy = format!(
        r#"<policies><inbound><base /><proxy url="http://{proxy}" username="ann" password="s3cret" /></inbound></policies>"#
    );
    set_policy(&gh, "/mgmt/apis/plain/policy", &policy).await;
    set_policy(&gh, "/mgmt/apis/secure/policy", &policy).await;
    let get = |path: &'static str| {
        let (http, url) = (gh.http.clone(), gh.gateway(path));
        async move {
            let r = http.get(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };

    // A direct call first leaves a pooled connection to the backend; the proxied call must not
    // take it.
    gh.eventually(Duration::from_secs(10), || async {
        get("/direct/first").await.0 == 200
    })
    .await;
    assert!(
        log.lock().unwrap().is_empty(),
        "a direct call went to the proxy"
    );
    gh.eventually(Duration::from_secs(10), || async {
        get("/plain/items/1?x=1").await.0 == 200
            && log
                .lock()
                .unwrap()
                .iter()
                .any(|(l, _)| l.contains("/items/1"))
    })
    .await;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("ann:s3cret")
    );
    {
        let log = log.lock().unwrap();
        let (line, auth) = log
            .iter()
            .find(|(l, _)| l.contains("/items/1"))
            .expect("the proxy saw the plain call");
        assert_eq!(
            line,
            &format!("GET http://{}/items/1?x=1 HTTP/1.1", plain.addr),
            "absolute form"
        );
        assert_eq!(auth.as_deref(), Some(basic.as_str()));
    }
    let received = plain.last();
    assert_eq!(received.path, "/items/1");
    assert!(!received.headers.contains_key("proxy-authorization"));
    // A streamed body takes hyper's client rather than the lean one: through the proxy too.
    let status = post_chunked(gh.gateway_port, "/plain/upload", &[b"chunk-1", b"chunk-2"]).await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(
        log.lock().unwrap().iter().any(|(l, a)| *l
            == format!("POST http://{}/upload HTTP/1.1", plain.addr)
            && a.as_deref() == Some(basic.as_str())),
        "{:?}",
        log.lock().unwrap()
    );
    let received = plain.last();
    assert_eq!(
        (received.path.as_str(), &received.body[..]),
        ("/upload", &b"chunk-1chunk-2"[..])
    );

    // https: a CONNECT tunnel, TLS to the backend inside it.
    gh.eventually(Duration::from_secs(10), || async {
        get("/secure/orders/7").await.0 == 200
            && log
                .lock()
                .unwrap()
                .iter()
                .any(|(l, _)| l.starts_with("CONNECT"))
    })
    .await;
    let (status, body) = get("/secure/orders/7").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"tls": true, "path": "/orders/7"})
    );
    let log = log.lock().unwrap();
    let (line, auth) = log
        .iter()
        .find(|(l, _)| l.starts_with("CONNECT"))
        .expect("a CONNECT");
    assert_eq!(line, &format!("CONNECT {secure} HTTP/1.1"));
    assert_eq!(auth.as_deref(), Some(basic.as_str()));
    assert!(!gh.log().contains("s3cret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dapr_policies_call_the_sidecars_invoke_publish_and_binding_apis() {
    let calls: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let record = calls.clone();
    let sidecar = serve_loopback(move |req| {
        let record = record.clone();
        async move {
            let req = seen(req).await;
            record.lock().unwrap().push(req.clone());
            let r = if req.path.starts_with("/v1.0/invoke/") {
                answer(
                    200,
                    &json!({"invoked": req.path, "method": req.method}).to_string(),
                )
            } else if req.path.starts_with("/v1.0/publish/") {
                answer(204, "")
            } else if req.path.starts_with("/v1.0/bindings/") {
                answer(200, r#"{"stored":true}"#)
            } else {
                answer(404, "{}")
            };
            Ok::<_, Infallible>(r)
        }
    })
    .await;
    let backend = Backend::start().await;
    let gh = Gatehouse::up(
        "dapr",
        &["--dapr-http-endpoint", &format!("http://{sidecar}")],
    )
    .await;
    gh.simple_api("orders", "orders", &backend.url(), true)
        .await;
    set_policy(
        &gh,
        "/mgmt/apis/orders/operations/get/policy",
        r#"<policies><inbound><base />
            <set-backend-service backend-id="dapr" dapr-app-id="orders" dapr-method="@(&quot;list/&quot; + context.Request.Headers.GetValueOrDefault(&quot;X-Kind&quot;, &quot;all&quot;))" dapr-namespace="shop" />
        </inbound></policies>"#,
    )
    .await;
    set_policy(
        &gh,
        "/mgmt/apis/orders/operations/post/policy",
        r#"<policies><inbound><base />
            <publish-to-dapr pubsub-name="orders" topic="new" response-variable-name="published">@(context.Request.Body.As<string>(preserveContent: true))</publish-to-dapr>
            <invoke-dapr-binding name="store" operation="create" response-variable-name="stored">
                <metadata>
                    <item key="source">gatehouse</item>
                    <item key="kind">@(context.Request.Headers.GetValueOrDefault("X-Kind", ""))</item>
                </metadata>
                <data>@(context.Request.Body.As<string>(preserveContent: true))</data>
            </invoke-dapr-binding>
            <return-response response-variable-name="stored" />
        </inbound></policies>"#,
    )
    .await;

    // Service invocation: the backend call goes to the sidecar's invoke API.
    gh.eventually(Duration::from_secs(10), || async {
        let r = gh
            .http
            .get(gh.gateway("/orders/anything?page=2"))
            .header("X-Kind", "open")
            .send()
            .await
            .unwrap();
        r.status() == 200 && r.text().await.unwrap().contains("invoked")
    })
    .await;
    let invoke = calls.lock().unwrap().last().cloned().unwrap();
    assert_eq!(invoke.method, "GET");
    assert_eq!(
        invoke.path,
        "/v1.0/invoke/orders.shop/method/list/open?page=2"
    );

    // Publish and binding, then the binding's answer to the client (once the policy is in).
    gh.eventually(Duration::from_secs(10), || async {
        let r = gh
            .http
            .post(gh.gateway("/orders/new"))
            .header("X-Kind", "rush")
            .header("content-type", "application/json")
            .body(r#"{"id":42}"#)
            .send()
            .await
            .unwrap();
        r.status() == 200 && r.text().await.unwrap() == r#"{"stored":true}"#
    })
    .await;
    let calls = calls.lock().unwrap();
    let publish = calls
        .iter()
        .find(|c| c.path.starts_with("/v1.0/publish/"))
        .unwrap();
    assert_eq!(publish.method, "POST");
    assert_eq!(publish.path, "/v1.0/publish/orders/new");
    assert_eq!(publish.body, r#"{"id":42}"#);
    assert_eq!(publish.headers["content-type"], "application/json");
    let binding = calls
        .iter()
        .find(|c| c.path.starts_with("/v1.0/bindings/"))
        .unwrap();
    assert_eq!(binding.method, "POST");
    assert_eq!(binding.path, "/v1.0/bindings/store");
    assert_eq!(
        serde_json::from_str::<Value>(&binding.body).unwrap(),
        json!({"data": {"id": 42}, "metadata": {"source": "gatehouse", "kind": "rush"}, "operation": "create"})
    );
}
