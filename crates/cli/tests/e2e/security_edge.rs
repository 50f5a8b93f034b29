//! The gateway's edge under attack (issue #12): the original attack requests of a security
//! review, sent over raw sockets where an HTTP client would tidy them up, against the real
//! binary and a recording backend.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Backend, Gatehouse, set_policy};

/// One response read off a raw connection.
#[derive(Debug)]
struct Raw {
    status: u16,
    head: String,
    body: String,
}

/// Sends `request` as written on a new connection and reads one response (by its
/// Content-Length, else to the end of the connection).
async fn raw(port: u16, request: &str) -> Raw {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    read_response(&mut stream).await.expect("no response")
}

async fn read_response(stream: &mut TcpStream) -> Option<Raw> {
    let mut buf = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let length = head.lines().find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.trim()
                    .eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())?
            });
            if let Some(n) = length
                && buf.len() >= end + 4 + n
            {
                let status = head.split(' ').nth(1)?.parse().ok()?;
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + n]).into_owned();
                return Some(Raw { status, head, body });
            }
        }
        let mut chunk = [0u8; 8192];
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => {
                let end = find(&buf, b"\r\n\r\n")?;
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                let status = head.split(' ').nth(1)?.parse().ok()?;
                let body = String::from_utf8_lossy(&buf[end + 4..]).into_owned();
                return Some(Raw { status, head, body });
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Waits until `check` holds for a gateway call, so a policy just saved is in force.
async fn until_status(gh: &Gatehouse, port: u16, request: &str, want: u16) {
    gh.eventually(Duration::from_secs(10), || async {
        raw(port, request).await.status == want
    })
    .await;
}

// Finding 2: an OPTIONS whose `Connection` header strips `Origin` or
// `Access-Control-Request-Method` was let through without a key as a preflight, yet the
// pipeline (seeing the stripped headers) did not answer it as one and forwarded it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_options_with_a_connection_header_and_no_key_never_reaches_the_backend() {
    let backend = Backend::start().await;
    let gh = Gatehouse::up("edge-preflight", &[]).await;
    gh.simple_api("pf", "pf", &backend.url(), false).await;
    // A second operation for every method, whose own policy refuses everything.
    gh.ok(
        "PUT",
        "/mgmt/apis/pf/operations/any-admin",
        Some(json!({"method": "*", "urlTemplate": "/admin/{*rest}"})),
    )
    .await;
    set_policy(
        &gh,
        "/mgmt/apis/pf/operations/any-admin/policy",
        r#"<policies><inbound><base /><return-response><set-status code="403" reason="Forbidden" /></return-response></inbound><backend><base /></backend><outbound><base /></outbound></policies>"#,
    )
    .await;
    set_policy(
        &gh,
        "/mgmt/apis/pf/policy",
        r#"<policies><inbound><cors><allowed-origins><origin>*</origin></allowed-origins><allowed-methods><method>GET</method><method>POST</method></allowed-methods><allowed-headers><header>*</header></allowed-headers></cors><base /></inbound><backend><base /></backend><outbound><base /></outbound></policies>"#,
    )
    .await;
    let port = gh.gateway_port;
    let preflight = |path: &str, connection: Option<&str>| {
        let connection = connection
            .map(|c| format!("Connection: {c}\r\n"))
            .unwrap_or_default();
        format!(
            "OPTIONS {path} HTTP/1.1\r\nHost: gw.test\r\nOrigin: http://app.test\r\nAccess-Control-Request-Method: GET\r\n{connection}\r\n"
        )
    };
    // A real preflight is answered by cors without a key, and without the backend.
    until_status(&gh, port, &preflight("/pf/items", None), 200).await;
    let answer = raw(port, &preflight("/pf/items", None)).await;
    assert!(
        answer
            .head
            .to_ascii_lowercase()
            .contains("access-control-allow-origin: *"),
        "{answer:?}"
    );

    for connection in [
        "origin",
        "access-control-request-method",
        "Origin, Access-Control-Request-Method",
        "close, origin",
        "ORIGIN",
        "keep-alive, access-control-request-method",
    ] {
        for path in ["/pf/items", "/pf/admin/users"] {
            let answer = raw(port, &preflight(path, Some(connection))).await;
            assert!(
                matches!(answer.status, 401 | 404),
                "OPTIONS {path} with Connection: {connection} got {answer:?}"
            );
            if answer.status == 401 {
                assert!(
                    answer.body.contains("missing subscription key"),
                    "{answer:?}"
                );
            }
        }
    }
    assert_eq!(
        backend.count(),
        0,
        "the backend got {:?}",
        backend.seen.lock().unwrap()
    );

    // With a key the same request is an ordinary call again.
    let key = gh.subscription("s", "/apis").await;
    let call = format!(
        "GET /pf/items HTTP/1.1\r\nHost: gw.test\r\nOcp-Apim-Subscription-Key: {key}\r\nConnection: close\r\n\r\n"
    );
    until_status(&gh, port, &call, 200).await;
    assert!(backend.count() >= 1);
}

// Finding 4: dot segments, however spelled, were matched as ordinary segments and forwarded
// as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_path_with_a_dot_segment_reaches_a_backend() {
    let backend = Backend::start().await;
    let gh = Gatehouse::up("edge-dots", &[]).await;
    gh.ok(
        "PUT",
        "/mgmt/apis/demo",
        Some(json!({"path": "demo", "serviceUrl": format!("{}/base", backend.url()), "subscriptionRequired": false})),
    )
    .await;
    gh.ok(
        "PUT",
        "/mgmt/apis/demo/operations/files",
        Some(json!({"method": "GET", "urlTemplate": "/files/{*path}"})),
    )
    .await;
    gh.ok(
        "PUT",
        "/mgmt/apis/demo/operations/admin",
        Some(json!({"method": "GET", "urlTemplate": "/admin/{x}"})),
    )
    .await;
    set_policy(
        &gh,
        "/mgmt/apis/demo/operations/admin/policy",
        r#"<policies><inbound><base /><return-response><set-status code="403" reason="Forbidden" /></return-response></inbound><backend><base /></backend><outbound><base /></outbound></policies>"#,
    )
    .await;
    // Another API the dots could land in.
    gh.simple_api("other", "other", &backend.url(), true).await;
    let port = gh.gateway_port;
    let get =
        |path: &str| format!("GET {path} HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n");
    until_status(&gh, port, &get("/demo/admin/secret"), 403).await;

    // Resolved, then matched: the admin operation's policy refuses them all.
    for path in [
        "/demo/files/../admin/secret",
        "/demo/files/%2e%2e/admin/secret",
        "/demo/files/.%2e/admin/secret",
        "/demo/files/%2E./admin/secret",
        "/demo/files/./../admin/secret",
        "/demo/files/x/../../admin/secret",
    ] {
        let answer = raw(port, &get(path)).await;
        assert_eq!(answer.status, 403, "{path}: {answer:?}");
    }
    // Climbing above the API's root or above `/`, or hiding dots behind an encoded slash.
    for path in [
        "/demo/files/../../../etc/passwd",
        "/demo/../other/x",
        "/demo/%2e%2e/other/x",
        "/..",
        "/demo/files/..%2F..%2Fadmin",
        "/demo/files/a%2F..%2F..%2Fetc",
        "/demo/files/%2e%2e%5cadmin",
    ] {
        let answer = raw(port, &get(path)).await;
        assert_eq!(answer.status, 400, "{path}: {answer:?}");
        let body: Value = serde_json::from_str(&answer.body).unwrap();
        assert_eq!(body["statusCode"], 400, "{path}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert_eq!(body.as_object().unwrap().len(), 2, "{path}: {body}");
    }
    assert_eq!(
        backend.count(),
        0,
        "the backend got {:?}",
        backend.seen.lock().unwrap()
    );

    // Dots inside the API resolve, and the backend gets exactly the normalised path; an
    // encoded slash stays encoded.
    let answer = raw(port, &get("/demo/files/a/./b/../c")).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(backend.last().path, "/base/files/a/c");
    let answer = raw(port, &get("/demo/files/a%2Fb/%2e/c")).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(backend.last().path, "/base/files/a%2Fb/c");
    let answer = raw(port, &get("/demo/files/report.v2..json")).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(backend.last().path, "/base/files/report.v2..json");
    assert_eq!(backend.count(), 3);
    for received in backend.seen.lock().unwrap().iter() {
        assert!(
            !received.path.split('/').any(|s| s == ".." || s == "."),
            "{received:?}"
        );
    }
}

/// Whether the server closed `stream` while the client kept trickling a header line a second.
/// Returns how long after connecting it was closed, or `None` if it was still open at `give_up`.
async fn trickle_until_closed(port: u16, give_up: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    if stream
        .write_all(b"GET /status-0123456789abcdef HTTP/1.1\r\nHost: gw.test\r\n")
        .await
        .is_err()
    {
        return Some(start.elapsed());
    }
    let mut n = 0;
    while start.elapsed() < give_up {
        let mut buf = [0u8; 512];
        // Anything but silence is the end: closed, reset, or a 408 on its way to the close.
        if tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf))
            .await
            .is_ok()
        {
            return Some(start.elapsed());
        }
        n += 1;
        let line = format!("X-Trickle-{n}: {n}\r\n");
        if stream.write_all(line.as_bytes()).await.is_err() {
            return Some(start.elapsed());
        }
    }
    None
}

// Finding 5: connections trickling header lines stayed open indefinitely, on the gateway and
// on the control plane.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connection_trickling_headers_is_closed_within_the_header_timeout() {
    let gh = Gatehouse::up(
        "edge-trickle",
        &["--header-read-timeout", "2s", "--idle-timeout", "6s"],
    )
    .await;
    for (what, port) in [
        ("gateway", gh.gateway_port),
        ("control plane", gh.control_port),
        ("gateway admin", gh.admin_port),
    ] {
        let closed = trickle_until_closed(port, Duration::from_secs(20)).await;
        let after = closed.unwrap_or_else(|| panic!("the {what} kept a trickling connection open"));
        // 2 s, plus a second for the tick that notices, plus slack for a loaded machine.
        assert!(
            after >= Duration::from_millis(1500) && after < Duration::from_secs(8),
            "the {what} closed the connection after {after:?}"
        );
    }

    // On a kept-alive connection, the header timeout counts from the next request's first
    // byte: trickling it is cut off after about 2 s, well before the 6 s idle timeout.
    let mut stream = TcpStream::connect(("127.0.0.1", gh.gateway_port))
        .await
        .unwrap();
    let request = "GET /status-0123456789abcdef HTTP/1.1\r\nHost: gw.test\r\n\r\n";
    stream.write_all(request.as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut stream).await.unwrap().status, 200);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    stream
        .write_all(b"GET /status-0123456789abcdef HTTP/1.1\r\n")
        .await
        .unwrap();
    let mut closed = None;
    for n in 0..20 {
        let mut buf = [0u8; 64];
        if tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf))
            .await
            .is_ok()
            || stream
                .write_all(format!("X-T{n}: {n}\r\n").as_bytes())
                .await
                .is_err()
        {
            closed = Some(started.elapsed());
            break;
        }
    }
    let closed = closed.expect("a trickling second request was never cut off");
    assert!(
        closed >= Duration::from_millis(1500) && closed < Duration::from_millis(5500),
        "the second request was cut off after {closed:?}"
    );

    // A kept-alive connection may idle longer than the header timeout, but not past the idle
    // timeout.
    for (what, port, path) in [
        ("gateway", gh.gateway_port, "/status-0123456789abcdef"),
        ("control plane", gh.control_port, "/mgmt/openapi.json"),
    ] {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: gw.test\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        assert_eq!(read_response(&mut stream).await.unwrap().status, 200);
        tokio::time::sleep(Duration::from_secs(3)).await;
        stream.write_all(request.as_bytes()).await.unwrap();
        let again = read_response(&mut stream).await;
        assert_eq!(again.map(|r| r.status), Some(200), "{what}: idle 3s");
        let idle_from = Instant::now();
        let mut buf = [0u8; 64];
        let closed = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut buf)).await;
        assert!(
            matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
            "{what}: {closed:?}"
        );
        let idle = idle_from.elapsed();
        assert!(
            idle >= Duration::from_secs(5) && idle < Duration::from_secs(12),
            "{what}: closed after {idle:?} idle"
        );
    }
}

// Finding 5: header size and count limits answer 431.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversized_or_too_many_headers_get_431() {
    let gh = Gatehouse::up(
        "edge-431",
        &["--max-header-size", "8KiB", "--max-headers", "20"],
    )
    .await;
    for port in [gh.gateway_port, gh.control_port] {
        let big = format!(
            "GET /status-0123456789abcdef HTTP/1.1\r\nHost: gw.test\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
            "a".repeat(16 * 1024)
        );
        assert_eq!(raw(port, &big).await.status, 431, "port {port}");
        let many: String = (0..30).map(|i| format!("X-H{i}: {i}\r\n")).collect();
        let many = format!(
            "GET /status-0123456789abcdef HTTP/1.1\r\nHost: gw.test\r\n{many}Connection: close\r\n\r\n"
        );
        assert_eq!(raw(port, &many).await.status, 431, "port {port}");
        // Within both limits the same request is served.
        let fine: String = (0..10).map(|i| format!("X-H{i}: {i}\r\n")).collect();
        let fine = format!(
            "GET /status-0123456789abcdef HTTP/1.1\r\nHost: gw.test\r\n{fine}Connection: close\r\n\r\n"
        );
        assert_ne!(raw(port, &fine).await.status, 431, "port {port}");
    }
}

// Finding 5: a listener holds at most --max-connections open; more are closed at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_over_the_cap_are_closed_and_served_again_once_one_closes() {
    let gh = Gatehouse::up("edge-cap", &["--max-connections", "3"]).await;
    for port in [gh.gateway_port, gh.control_port] {
        let request = "GET /status-0123456789abcdef HTTP/1.1\r\nHost: gw.test\r\n\r\n";
        let mut held = Vec::new();
        let mut refused = false;
        // The test harness may hold a connection of its own: at most 3 get through.
        for _ in 0..4 {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            let _ = stream.write_all(request.as_bytes()).await;
            match read_response(&mut stream).await {
                Some(r) => {
                    assert!(r.status == 200 || r.status == 404, "{r:?}");
                    held.push(stream);
                }
                None => {
                    refused = true;
                    break;
                }
            }
        }
        assert!(refused, "port {port}: 4 connections were all served");
        drop(held);
        gh.eventually(Duration::from_secs(10), || async {
            let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await else {
                return false;
            };
            let _ = s.write_all(request.as_bytes()).await;
            read_response(&mut s).await.is_some()
        })
        .await;
    }
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

// Finding 12: a key in the query of a path no API serves was logged in full.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscription_keys_in_unmatched_urls_are_not_logged() {
    let backend = Backend::start().await;
    let gh = Gatehouse::up("edge-redact", &[]).await;
    gh.ok(
        "PUT",
        "/mgmt/apis/custom",
        Some(json!({
            "path": "custom",
            "serviceUrl": backend.url(),
            "subscriptionKeyParameterNames": {"header": "X-Custom-Key", "query": "customKeyName"}
        })),
    )
    .await;
    gh.ok(
        "PUT",
        "/mgmt/apis/custom/operations/get",
        Some(json!({"method": "GET", "urlTemplate": "/{*rest}"})),
    )
    .await;
    // The API is in force once its path needs a key.
    gh.eventually(Duration::from_secs(10), || async {
        gh.http
            .get(gh.gateway("/custom/x"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 401)
    })
    .await;
    for url in [
        "/nope?subscription-key=SECRETVALUE",
        "/nope/deeper?a=1&customKeyName=SECRET2&b=2",
        "/nope?Subscription-Key=SECRET3",
        "/custom/x?customKeyName=SECRET4",
    ] {
        let r = gh.http.get(gh.gateway(url)).send().await.unwrap();
        assert!(
            r.status() == 404 || r.status() == 401,
            "{url}: {}",
            r.status()
        );
    }
    // A last request marks the end: once its line is out, so are the others'.
    gh.http
        .get(gh.gateway("/nope/marker"))
        .send()
        .await
        .unwrap();
    gh.eventually(Duration::from_secs(10), || async {
        let lines = json_lines(&gh.stdout());
        let count = |url: &str| lines.iter().filter(|l| l["url"] == url).count();
        count("/nope") >= 2 && count("/nope/deeper?a=1&b=2") == 1 && count("/nope/marker") == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines = json_lines(&gh.stdout());
    assert!(
        lines.iter().any(|l| l["url"] == "/nope/deeper?a=1&b=2"),
        "{lines:?}"
    );
    for (what, text) in [
        ("the access log", gh.stdout()),
        ("the server log", gh.log()),
    ] {
        for secret in ["SECRETVALUE", "SECRET2", "SECRET3", "SECRET4"] {
            assert!(!text.contains(secret), "{secret} is in {what}:\n{text}");
        }
    }
}

const ECHO_CLIENT: &str = r#"<policies><inbound><base /><set-header name="X-Client-Ip" exists-action="override"><value>@(context.Request.IpAddress)</value></set-header></inbound><backend><base /></backend><outbound><base /></outbound></policies>"#;

async fn forwarded_setup(gh: &Gatehouse, backend: &Backend) {
    gh.simple_api("fwd", "fwd", &backend.url(), true).await;
    gh.simple_api("plain", "plain", &backend.url(), true).await;
    set_policy(gh, "/mgmt/apis/fwd/policy", ECHO_CLIENT).await;
}

fn saw_client_ip(backend: &Backend) -> bool {
    backend
        .seen
        .lock()
        .unwrap()
        .last()
        .is_some_and(|r| r.headers.contains_key("x-client-ip"))
}

async fn call_forged(gh: &Gatehouse, path: &str) -> reqwest::Response {
    gh.http
        .get(gh.gateway(path))
        .header("X-Forwarded-For", "203.0.113.66, 198.51.100.7")
        .header("X-Forwarded-Host", "evil.example")
        .header("X-Forwarded-Proto", "https")
        .send()
        .await
        .unwrap()
}

// Finding 14: a client's X-Forwarded-For chain was trusted and extended, and its
// X-Forwarded-Host passed on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forwarded_headers_from_an_untrusted_client_are_replaced() {
    let backend = Backend::start().await;
    let gh = Gatehouse::up("edge-xff", &[]).await;
    forwarded_setup(&gh, &backend).await;
    let host = format!("127.0.0.1:{}", gh.gateway_port);
    gh.eventually(Duration::from_secs(10), || async {
        call_forged(&gh, "/fwd/a").await.status() == 200 && saw_client_ip(&backend)
    })
    .await;
    let got = backend.last();
    assert_eq!(got.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(got.headers["x-client-ip"], "127.0.0.1");
    assert_eq!(got.headers["x-forwarded-host"], host);
    assert_eq!(got.headers["x-forwarded-proto"], "http");
    // The fast path (no policy) too.
    assert_eq!(call_forged(&gh, "/plain/a").await.status(), 200);
    let got = backend.last();
    assert_eq!(got.path, "/a");
    assert_eq!(got.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(got.headers["x-forwarded-host"], host);
    assert_eq!(got.headers["x-forwarded-proto"], "http");
    // The access log names the peer.
    gh.eventually(Duration::from_secs(10), || async {
        json_lines(&gh.stdout())
            .iter()
            .any(|l| l["url"] == "/plain/a")
    })
    .await;
    for line in json_lines(&gh.stdout()) {
        if line["url"] == "/plain/a" || line["url"] == "/fwd/a" {
            assert_eq!(line["clientIp"], "127.0.0.1", "{line}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forwarded_for_from_a_trusted_proxy_is_appended_and_names_the_client() {
    let backend = Backend::start().await;
    let gh = Gatehouse::up("edge-xff-trusted", &["--trusted-proxies", "127.0.0.1/32"]).await;
    forwarded_setup(&gh, &backend).await;
    let host = format!("127.0.0.1:{}", gh.gateway_port);
    gh.eventually(Duration::from_secs(10), || async {
        call_forged(&gh, "/fwd/b").await.status() == 200 && saw_client_ip(&backend)
    })
    .await;
    let got = backend.last();
    assert_eq!(
        got.headers["x-forwarded-for"],
        "203.0.113.66, 198.51.100.7, 127.0.0.1"
    );
    // The right-most address that is not a trusted proxy.
    assert_eq!(got.headers["x-client-ip"], "198.51.100.7");
    assert_eq!(got.headers["x-forwarded-host"], host);
    assert_eq!(got.headers["x-forwarded-proto"], "http");
    gh.eventually(Duration::from_secs(10), || async {
        json_lines(&gh.stdout())
            .iter()
            .any(|l| l["url"] == "/fwd/b")
    })
    .await;
    let line = json_lines(&gh.stdout())
        .into_iter()
        .find(|l| l["url"] == "/fwd/b")
        .unwrap();
    assert_eq!(line["clientIp"], "198.51.100.7", "{line}");
}

/// A portal visitor whose connections come from `local` (any 127.x address works on Linux):
/// cookies kept, redirects not followed, CSRF tokens read from forms.
struct Visitor {
    http: reqwest::Client,
    base: String,
    cookies: std::collections::HashMap<String, String>,
    /// Sent with every request, as a proxy in front of the control plane would add it.
    forwarded_for: Option<String>,
}

impl Visitor {
    fn new(gh: &Gatehouse, local: std::net::IpAddr) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .local_address(local)
                .build()
                .unwrap(),
            base: gh.control(""),
            cookies: std::collections::HashMap::new(),
            forwarded_for: None,
        }
    }

    async fn send(&mut self, path: &str, form: Option<&[(&str, &str)]>) -> (u16, String) {
        let url = format!("{}{path}", self.base);
        let mut req = match form {
            Some(_) => self.http.post(url),
            None => self.http.get(url),
        };
        if let Some(xff) = &self.forwarded_for {
            req = req.header("x-forwarded-for", xff);
        }
        if !self.cookies.is_empty() {
            let cookie: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            req = req.header("cookie", cookie.join("; "));
        }
        if let Some(form) = form {
            let body: Vec<String> = form
                .iter()
                .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
                .collect();
            req = req
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body.join("&"));
        }
        let resp = req.send().await.unwrap();
        for value in resp.headers().get_all("set-cookie") {
            let text = value.to_str().unwrap();
            let (name, value) = text.split(';').next().unwrap().split_once('=').unwrap();
            if value.is_empty() || text.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    fn csrf(body: &str) -> String {
        let marker = "name=\"csrf\" value=\"";
        let start = body.find(marker).expect("no form on the page") + marker.len();
        let end = body[start..].find('"').unwrap() + start;
        body[start..end].to_owned()
    }

    /// Signs up and in, subscribes to `product`; returns the CSRF token and subscription id.
    async fn subscribed(&mut self, email: &str, product: &str) -> (String, String) {
        const PASSWORD: &str = "a long and secret passphrase";
        let csrf = Self::csrf(&self.send("/portal/signup", None).await.1);
        let form = [
            ("csrf", csrf.as_str()),
            ("email", email),
            ("password", PASSWORD),
        ];
        assert_eq!(self.send("/portal/signup", Some(&form)).await.0, 303);
        assert_eq!(self.send("/portal/signin", Some(&form)).await.0, 303);
        let csrf = Self::csrf(&self.send("/portal/profile", None).await.1);
        let (status, body) = self
            .send(
                &format!("/portal/products/{product}/subscribe"),
                Some(&[("csrf", &csrf), ("accept_terms", "yes")]),
            )
            .await;
        assert_eq!(status, 303, "{body}");
        let profile = self.send("/portal/profile", None).await.1;
        let start = profile.find("id=\"sub-").unwrap() + "id=\"sub-".len();
        let sub = profile[start..start + profile[start..].find('"').unwrap()].to_owned();
        (csrf, sub)
    }

    /// Try it on `api`'s operation `op`; returns the status the gateway answered.
    async fn try_it(&mut self, csrf: &str, sub: &str, api: &str, op: &str) -> u16 {
        let (status, body) = self
            .send(
                &format!("/portal/apis/{api}/operations/{op}/try"),
                Some(&[
                    ("csrf", csrf),
                    ("subscription", sub),
                    ("path.rest", "hello"),
                ]),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let marker = "id=\"try-status\">";
        let start = body
            .find(marker)
            .unwrap_or_else(|| panic!("no result: {}", &body[body.len().saturating_sub(3000)..]))
            + marker.len();
        body[start..start + 3].parse().unwrap()
    }
}

fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// API `inside` (only callers at 127.0.0.1 get in, and the backend is told who called) in
/// the published product `starter`.
async fn tryit_setup(gh: &Gatehouse, backend: &Backend) {
    gh.simple_api("inside", "inside", &backend.url(), false)
        .await;
    // Only callers at 127.0.0.1 get in; the control plane calls the gateway from there too.
    set_policy(
        gh,
        "/mgmt/apis/inside/policy",
        r#"<policies><inbound><base /><ip-filter action="allow"><address>127.0.0.1</address></ip-filter><set-header name="X-Client-Ip" exists-action="override"><value>@(context.Request.IpAddress)</value></set-header></inbound><backend><base /></backend><outbound><base /></outbound></policies>"#,
    )
    .await;
    gh.ok(
        "PUT",
        "/mgmt/products/starter",
        Some(json!({"displayName": "Starter", "state": "published", "approvalRequired": false})),
    )
    .await;
    gh.ok("PUT", "/mgmt/products/starter/apis/inside", None)
        .await;
}

// Finding 10: Try it calls reached the gateway from the control plane's address, so an
// ip-filter that allowed that address let every portal user through.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn try_it_calls_carry_the_portal_users_address_and_forgeries_do_not() {
    let backend = Backend::start().await;
    let gh = Gatehouse::up("edge-tryit", &[]).await;
    tryit_setup(&gh, &backend).await;

    // A portal user at 127.0.0.2, outside the allow-list: refused by ip-filter.
    let mut outsider = Visitor::new(&gh, "127.0.0.2".parse().unwrap());
    let (csrf, sub) = outsider.subscribed("outsider@example.com", "starter").await;
    assert_eq!(outsider.try_it(&csrf, &sub, "inside", "get").await, 403);
    assert_eq!(backend.count(), 0, "{:?}", backend.seen.lock().unwrap());

    // A portal user at 127.0.0.1 gets through, seen as 127.0.0.1, and the backend never sees
    // the signature.
    let mut insider = Visitor::new(&gh, "127.0.0.1".parse().unwrap());
    let (csrf, sub) = insider.subscribed("insider@example.com", "starter").await;
    assert_eq!(insider.try_it(&csrf, &sub, "inside", "get").await, 200);
    let got = backend.last();
    assert_eq!(got.headers["x-client-ip"], "127.0.0.1");
    assert!(!got.headers.contains_key("x-gatehouse-tryit"), "{got:?}");

    // Forged straight to the gateway: from 127.0.0.2 claiming 127.0.0.1, refused; from
    // 127.0.0.1 claiming 127.0.0.2, the peer is the client; the header goes nowhere.
    let key = gh.subscription("direct", "/apis").await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let from = |ip: &str| {
        reqwest::Client::builder()
            .local_address(ip.parse::<std::net::IpAddr>().unwrap())
            .build()
            .unwrap()
    };
    let forged = |claim: &str| format!("v1;{claim};{now};bm90LWEtc2lnbmF0dXJl");
    let r = from("127.0.0.2")
        .get(gh.gateway("/inside/x"))
        .header("Ocp-Apim-Subscription-Key", &key)
        .header("X-Gatehouse-Tryit", forged("127.0.0.1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let before = backend.count();
    let r = from("127.0.0.1")
        .get(gh.gateway("/inside/y"))
        .header("Ocp-Apim-Subscription-Key", &key)
        .header("X-Gatehouse-Tryit", forged("127.0.0.2"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(backend.count(), before + 1);
    let got = backend.last();
    assert_eq!(got.path, "/y");
    assert_eq!(got.headers["x-client-ip"], "127.0.0.1");
    assert!(!got.headers.contains_key("x-gatehouse-tryit"), "{got:?}");
}

// Finding 10, self-hosted: the signing key reaches gateways over the link, so a Try it call
// through a self-hosted gateway is seen from the portal user's address too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn try_it_through_a_self_hosted_gateway_carries_the_users_address() {
    use crate::support::{GatewayProc, free_port, temp_dir};
    let backend = Backend::start().await;
    let gw_port = free_port();
    let gw_url = format!("http://127.0.0.1:{gw_port}");
    let gh = Gatehouse::up("edge-tryit-sh", &["--portal-gateway-url", &gw_url]).await;
    tryit_setup(&gh, &backend).await;
    gh.ok("PUT", "/mgmt/gateways/edge", Some(json!({}))).await;
    gh.ok("PUT", "/mgmt/gateways/edge/apis/inside", None).await;
    let token = gh.gateway_token("edge").await;
    let mut gw = GatewayProc {
        child: None,
        port: gw_port,
        admin_port: free_port(),
        dir: temp_dir("edge-tryit-sh-gw"),
        args: vec!["--config-endpoint".into(), gh.control("")],
        envs: vec![("GATEHOUSE_TOKEN".into(), token)],
        http: reqwest::Client::new(),
    };
    gw.launch();
    gw.wait_ready(Duration::from_secs(20), |r| r["state"] == "ready")
        .await;

    let mut outsider = Visitor::new(&gh, "127.0.0.2".parse().unwrap());
    let (csrf, sub) = outsider.subscribed("far@example.com", "starter").await;
    let mut insider = Visitor::new(&gh, "127.0.0.1".parse().unwrap());
    let (csrf_in, sub_in) = insider.subscribed("near@example.com", "starter").await;
    // New subscriptions reach the gateway by the link: wait for the insider's to work.
    let deadline = Instant::now() + Duration::from_secs(20);
    while insider.try_it(&csrf_in, &sub_in, "inside", "get").await != 200 {
        assert!(
            Instant::now() < deadline,
            "Try it never got through:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = backend.last();
    assert_eq!(got.headers["x-client-ip"], "127.0.0.1");
    assert!(!got.headers.contains_key("x-gatehouse-tryit"), "{got:?}");
    let before = backend.count();
    assert_eq!(outsider.try_it(&csrf, &sub, "inside", "get").await, 403);
    assert_eq!(backend.count(), before);
}

// Finding 10 behind a proxy: with --trusted-proxies, the portal takes the user's address from
// the proxy's X-Forwarded-For, and Try it calls carry that address.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn try_it_behind_a_trusted_proxy_carries_the_forwarded_user_address() {
    let backend = Backend::start().await;
    let gh = Gatehouse::up("edge-tryit-proxy", &["--trusted-proxies", "127.0.0.1/32"]).await;
    tryit_setup(&gh, &backend).await;
    let mut remote = Visitor::new(&gh, "127.0.0.1".parse().unwrap());
    remote.forwarded_for = Some("203.0.113.50".into());
    let (csrf, sub) = remote.subscribed("remote@example.com", "starter").await;
    assert_eq!(remote.try_it(&csrf, &sub, "inside", "get").await, 403);
    assert_eq!(backend.count(), 0);
    // Without the forwarded address the same user is the proxy, 127.0.0.1, and gets in.
    remote.forwarded_for = None;
    assert_eq!(remote.try_it(&csrf, &sub, "inside", "get").await, 200);
    assert_eq!(backend.last().headers["x-client-ip"], "127.0.0.1");
}

// Finding 5, body limit: the gateway forwards no request body past --max-request-body.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn request_bodies_over_the_limit_get_413() {
    let backend = Backend::start().await;
    let gh = Gatehouse::up("edge-body", &["--max-request-body", "1KiB"]).await;
    gh.simple_api("lim", "lim", &backend.url(), true).await;
    gh.simple_api("limp", "limp", &backend.url(), true).await;
    // A policy, so calls to `limp` take the pipeline rather than the fast path.
    set_policy(&gh, "/mgmt/apis/limp/policy", ECHO_CLIENT).await;
    let port = gh.gateway_port;
    let post = |path: &str, body: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: gw.test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let chunked = |path: &str, body: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
            body.len()
        )
    };
    let small = "s".repeat(512);
    let big = "b".repeat(2048);
    until_status(&gh, port, &post("/limp/x", &small), 200).await;
    let before = backend.count();
    for path in ["/lim/x", "/limp/x"] {
        let answer = raw(port, &post(path, &big)).await;
        assert_eq!(answer.status, 413, "{path}: {answer:?}");
        assert_eq!(
            answer.body,
            r#"{"statusCode":413,"message":"Request entity too large"}"#
        );
    }
    assert_eq!(backend.count(), before, "a declared large body went on");
    for path in ["/lim/x", "/limp/x"] {
        let answer = raw(port, &chunked(path, &big)).await;
        assert_eq!(answer.status, 413, "{path}: {answer:?}");
    }
    for path in ["/lim/x", "/limp/x"] {
        assert_eq!(raw(port, &post(path, &small)).await.status, 200);
        assert_eq!(backend.last().body.len(), 512);
        assert_eq!(raw(port, &chunked(path, &small)).await.status, 200);
        assert_eq!(backend.last().body.len(), 512);
    }
    // Whatever reached the backend of a cut-off stream, no body past the limit did.
    for received in backend.seen.lock().unwrap().iter() {
        assert!(received.body.len() <= 1024, "{} bytes", received.body.len());
    }
}
