//! What backends answer, read by the gateway's own HTTP/1.1 exchange with plain backends
//! (`crates/gateway/src/h1.rs`): every framing, informational answers, a response that is not
//! HTTP, a body cut short, the length a chunked answer also declares, and the idle close of a
//! kept-alive connection racing the next request. The backend is a raw socket, so it answers
//! exactly as written.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::Gatehouse;

/// The answer for a request's path, written as is.
fn answer(path: &str) -> &'static [u8] {
    match path {
        "/length" => b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
        "/chunked" => b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nx-trailer: 1\r\n\r\n",
        // Both: the coding wins, the length (a lie here) must not reach the client.
        "/both" => b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "/hints" => b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        "/garbage" => b"SMTP ready\r\n\r\n",
        "/short" => b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort",
        "/to-close" => b"HTTP/1.1 200 OK\r\n\r\nuntil the end",
        "/closing" => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
        "/no-content" => b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n",
        _ => b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
    }
}

/// A backend that answers each request of a connection from [`answer`], closes the connection
/// when the answer's framing ends it (or is broken), and with `close_idle`, closes each
/// connection after its first answer, the way a backend with a short keep-alive timeout does.
/// Counts the connections it accepted.
async fn raw_backend(close_idle: bool) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let end = loop {
                        if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            break end + 4;
                        }
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&seen[..end]).into_owned();
                    seen.drain(..end);
                    let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                    let path = path.rsplit('/').next().map(|p| format!("/{p}")).unwrap();
                    if stream.write_all(answer(&path)).await.is_err() {
                        return;
                    }
                    let ends_connection = matches!(
                        path.as_str(),
                        "/garbage" | "/short" | "/to-close" | "/closing"
                    );
                    if ends_connection || close_idle {
                        return;
                    }
                }
            });
        }
    });
    (format!("http://{addr}"), accepted)
}

async fn until_served(gh: &Gatehouse, path: &str) {
    gh.eventually(Duration::from_secs(30), || async {
        matches!(gh.http.get(gh.gateway(path)).send().await, Ok(r) if r.status() == 200)
    })
    .await;
}

#[tokio::test]
async fn every_framing_a_backend_uses_reaches_the_client_whole() {
    let gh = Gatehouse::up("backend-framings", &[]).await;
    let (backend, accepted) = raw_backend(false).await;
    gh.simple_api("raw", "raw", &backend, true).await;
    until_served(&gh, "/raw/length").await;

    for (path, body) in [
        ("/raw/length", "hello"),
        ("/raw/chunked", "hello world"),
        ("/raw/hints", "ok"),
        ("/raw/to-close", "until the end"),
        ("/raw/closing", "ok"),
    ] {
        let r = gh.http.get(gh.gateway(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.text().await.unwrap(), body, "{path}");
    }

    // A chunked answer that also declares a (false) length: the client gets the decoded body
    // and no length from the backend (reqwest fails on a length that does not match).
    let r = gh.http.get(gh.gateway("/raw/both")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_ne!(
        r.headers()
            .get("content-length")
            .map(|v| v.to_str().unwrap().to_owned()),
        Some("3".to_owned())
    );
    assert_eq!(r.text().await.unwrap(), "hello");

    let r = gh
        .http
        .get(gh.gateway("/raw/no-content"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);

    // Kept-alive answers share one connection: twenty calls in a row open none.
    let before = accepted.load(Ordering::SeqCst);
    for _ in 0..20 {
        let r = gh.http.get(gh.gateway("/raw/length")).send().await.unwrap();
        assert_eq!(r.text().await.unwrap(), "hello");
    }
    assert!(
        accepted.load(Ordering::SeqCst) - before <= 1,
        "{} connections for 20 sequential calls",
        accepted.load(Ordering::SeqCst) - before
    );
}

#[tokio::test]
async fn a_broken_answer_is_a_502_or_a_cut_body_and_the_next_call_is_served() {
    let gh = Gatehouse::up("backend-broken", &[]).await;
    let (backend, _) = raw_backend(false).await;
    gh.simple_api("raw", "raw", &backend, true).await;
    until_served(&gh, "/raw/length").await;

    let r = gh
        .http
        .get(gh.gateway("/raw/garbage"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let body = r.text().await.unwrap();
    assert!(
        !body.contains("HTTP/1.1") && !body.contains("127.0.0.1"),
        "{body}"
    );
    let log = gh.log();
    assert!(
        log.contains("not valid HTTP/1.1"),
        "the log says why the backend's answer was refused"
    );

    // The head was fine, the body is cut short: the client's answer is cut as well, never
    // padded or passed off as whole. Whether the head reached the client first depends on
    // whether the gateway flushed it before it saw the backend close; either way the call fails.
    let whole = match gh.http.get(gh.gateway("/raw/short")).send().await {
        Ok(r) => {
            assert_eq!(r.status(), 200);
            r.bytes().await.is_ok()
        }
        Err(_) => false,
    };
    assert!(!whole, "a body cut short reached the client as whole");

    let r = gh.http.get(gh.gateway("/raw/length")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "hello");
}

#[tokio::test]
async fn a_backend_closing_idle_connections_costs_no_call() {
    // Each connection carries one answer and is closed: every pooled connection is found
    // closed or closes as it is taken. No GET may fail for it.
    let gh = Gatehouse::up("backend-idle-close", &[]).await;
    let (backend, accepted) = raw_backend(true).await;
    gh.simple_api("raw", "raw", &backend, true).await;
    until_served(&gh, "/raw/length").await;
    for i in 0..50 {
        let r = gh.http.get(gh.gateway("/raw/length")).send().await.unwrap();
        assert_eq!(r.status(), 200, "call {i}");
        assert_eq!(r.text().await.unwrap(), "hello");
        if i % 10 == 0 {
            // Give the close time to arrive, so both orders are exercised.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert!(accepted.load(Ordering::SeqCst) >= 50);
}
