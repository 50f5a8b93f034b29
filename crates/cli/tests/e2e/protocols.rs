//! Protocols through the gateway (issue #13): server-sent events and chunked request bodies
//! stream through unbuffered, WebSocket handshakes pass the inbound policies and then tunnel
//! frames both ways, and gRPC calls go over HTTP/2 end to end with their trailers. Backends
//! and clients are hand-made on hyper: a tiny WebSocket frame codec and the gRPC wire format
//! (5-byte prefix) live here, so the gateway needs no WebSocket or gRPC crate.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::{HeaderMap, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::support::{Gatehouse, set_policy};

/// A body fed frame by frame from a channel: the test decides when each chunk goes.
struct Chan(mpsc::Receiver<Frame<Bytes>>);

impl hyper::body::Body for Chan {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|f| f.map(Ok))
    }
}

fn chan() -> (mpsc::Sender<Frame<Bytes>>, Chan) {
    let (tx, rx) = mpsc::channel(16);
    (tx, Chan(rx))
}

/// A body of fixed frames.
fn frames(list: Vec<Frame<Bytes>>) -> Chan {
    let (tx, rx) = mpsc::channel(list.len().max(1));
    for f in list {
        tx.try_send(f).unwrap();
    }
    Chan(rx)
}

/// A loopback backend speaking HTTP/1.1 (with upgrades) and h2c with prior knowledge.
async fn backend<H, F>(handle: H) -> SocketAddr
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Chan>> + Send + 'static,
{
    backend_over(None, handle).await
}

/// [`backend`], over TLS when `tls` is given (offering h2 and http/1.1 through ALPN).
async fn backend_over<H, F>(
    tls: Option<Arc<gatehouse_tls::server::ServerTls>>,
    handle: H,
) -> SocketAddr
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Chan>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            // Each event goes out as written, not held back for an ACK (Nagle).
            stream.set_nodelay(true).unwrap();
            let handle = handle.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let f = handle(req);
                    async move { Ok::<_, Infallible>(f.await) }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                match tls {
                    None => {
                        let _ = builder
                            .serve_connection_with_upgrades(TokioIo::new(stream), service)
                            .await;
                    }
                    Some(tls) => {
                        let Ok(accepted) = tls.accept(stream).await else {
                            return;
                        };
                        let _ = builder
                            .serve_connection_with_upgrades(TokioIo::new(accepted.stream), service)
                            .await;
                    }
                }
            });
        }
    });
    addr
}

fn respond(status: u16, body: Chan) -> Response<Chan> {
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r
}

/// Polls `path` on the gateway with GET and POST until `check` holds for both responses (the
/// configuration, both of `simple_api`'s operations, has reached the gateway).
async fn until_ready(gh: &Gatehouse, path: &str, check: impl Fn(&reqwest::Response) -> bool) {
    let start = Instant::now();
    loop {
        if let Ok(r) = gh.http.get(gh.gateway(path)).send().await
            && check(&r)
            && let Ok(r) = gh.http.post(gh.gateway(path)).send().await
            && check(&r)
        {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{path} never became ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Waits up to 10 s for an access log line matching `check`.
async fn log_line(gh: &Gatehouse, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        if let Some(line) = json_lines(&gh.stdout()).into_iter().find(&check) {
            return line;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no access log line for {what}:\n{}",
            gh.stdout()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Server-sent events and streamed request bodies
// ---------------------------------------------------------------------------------------

/// Gives the API `api` policies that touch headers only (the bodies keep streaming), once
/// `probe` shows them in force.
async fn pass_through_policy(gh: &Gatehouse, api: &str, probe: &str) {
    set_policy(
        gh,
        &format!("/mgmt/apis/{api}/policy"),
        r#"<policies>
            <inbound><base /><set-header name="X-Via" exists-action="override"><value>gatehouse</value></set-header></inbound>
            <backend><base /></backend>
            <outbound><base /><set-header name="X-Out" exists-action="override"><value>yes</value></set-header></outbound>
        </policies>"#,
    )
    .await;
    until_ready(gh, probe, |r| r.headers().contains_key("x-out")).await;
}

/// What the streaming backend saw.
#[derive(Default)]
struct StreamState {
    /// The events' backend has sent its last event.
    finished: AtomicBool,
    /// The upload's backend has seen the first chunk.
    first_chunk: AtomicBool,
    via: Mutex<Vec<Option<String>>>,
}

async fn stream_backend(state: Arc<StreamState>) -> SocketAddr {
    backend(move |req: Request<Incoming>| {
        let state = state.clone();
        async move {
            state.via.lock().unwrap().push(
                req.headers()
                    .get("x-via")
                    .map(|v| v.to_str().unwrap().to_owned()),
            );
            match req.uri().path() {
                "/events" => {
                    state.finished.store(false, Ordering::SeqCst);
                    let (tx, body) = chan();
                    tokio::spawn(async move {
                        tx.send(Frame::data(Bytes::from_static(b"data: one\n\n")))
                            .await
                            .unwrap();
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        state.finished.store(true, Ordering::SeqCst);
                        for event in [&b"data: two\n\n"[..], b"data: three\n\n"] {
                            tx.send(Frame::data(Bytes::from_static(event)))
                                .await
                                .unwrap();
                        }
                    });
                    let mut r = respond(200, body);
                    r.headers_mut()
                        .insert("content-type", "text/event-stream".parse().unwrap());
                    r.headers_mut()
                        .insert("cache-control", "no-cache".parse().unwrap());
                    r
                }
                "/upload" => {
                    state.first_chunk.store(false, Ordering::SeqCst);
                    let mut body = req.into_body();
                    let mut got = Vec::new();
                    while let Some(frame) = body.frame().await {
                        if let Ok(data) = frame.unwrap().into_data() {
                            got.extend_from_slice(&data);
                            state.first_chunk.store(true, Ordering::SeqCst);
                        }
                    }
                    respond(200, frames(vec![Frame::data(got.into())]))
                }
                _ => respond(200, frames(vec![Frame::data(Bytes::from_static(b"pong"))])),
            }
        }
    })
    .await
}

/// Reads the event stream: the first event must arrive while the backend still holds the
/// rest back.
async fn events_arrive_unbuffered(gh: &Gatehouse, state: &StreamState, policy: bool) {
    let sent = Instant::now();
    let mut resp = gh.http.get(gh.gateway("/sse/events")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    if policy {
        assert_eq!(resp.headers()["x-out"], "yes", "the outbound policy ran");
    }
    let mut got = Vec::new();
    while !got.ends_with(b"data: one\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
            .await
            .expect("no first event within 10 s")
            .unwrap()
            .expect("the stream ended before its first event");
        got.extend_from_slice(&chunk);
    }
    assert!(
        !state.finished.load(Ordering::SeqCst),
        "the first event arrived only once the backend had finished: the response was buffered (policy: {policy})"
    );
    eprintln!(
        "first event after {:?} (policy: {policy}; the rest follows 2 s later)",
        sent.elapsed()
    );
    while let Some(chunk) = resp.chunk().await.unwrap() {
        got.extend_from_slice(&chunk);
    }
    assert_eq!(
        String::from_utf8(got).unwrap(),
        "data: one\n\ndata: two\n\ndata: three\n\n"
    );
}

/// Sends a chunked body whose last chunk goes only once the backend has seen the first.
async fn request_body_streams(gh: &Gatehouse, state: &StreamState) {
    let tcp = TcpStream::connect(("127.0.0.1", gh.gateway_port))
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let (tx, body) = chan();
    let req = Request::post("/sse/upload")
        .header("host", format!("127.0.0.1:{}", gh.gateway_port))
        .body(body)
        .unwrap();
    let call = tokio::spawn(async move { sender.send_request(req).await });
    tx.send(Frame::data(Bytes::from_static(b"part-1;")))
        .await
        .unwrap();
    let start = Instant::now();
    while !state.first_chunk.load(Ordering::SeqCst) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the backend never saw the first chunk before the last was sent: the request body was buffered"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tx.send(Frame::data(Bytes::from_static(b"part-2")))
        .await
        .unwrap();
    drop(tx);
    let resp = call.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    let echoed = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&echoed[..], b"part-1;part-2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_and_request_bodies_stream_through_unbuffered() {
    let state = Arc::new(StreamState::default());
    let addr = stream_backend(state.clone()).await;
    let gh = Gatehouse::up("proto-sse", &[]).await;
    gh.simple_api("sse", "sse", &format!("http://{addr}"), true)
        .await;
    until_ready(&gh, "/sse/ping", |r| r.status() == 200).await;

    // The fast path: no policy at all.
    events_arrive_unbuffered(&gh, &state, false).await;
    request_body_streams(&gh, &state).await;

    // Policies that do not read the bodies leave them streaming.
    pass_through_policy(&gh, "sse", "/sse/ping").await;
    events_arrive_unbuffered(&gh, &state, true).await;
    request_body_streams(&gh, &state).await;
    assert_eq!(
        state
            .via
            .lock()
            .unwrap()
            .last()
            .cloned()
            .flatten()
            .as_deref(),
        Some("gatehouse"),
        "the inbound policy ran on the streamed request"
    );
}

// ---------------------------------------------------------------------------------------
// WebSocket
// ---------------------------------------------------------------------------------------

const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// `Sec-WebSocket-Accept` for a key (RFC 6455 §4.2.2).
fn ws_accept(key: &str) -> String {
    use base64::Engine as _;
    let mut input = key.as_bytes().to_vec();
    input.extend_from_slice(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &input);
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// Writes one final frame; clients mask theirs, servers do not.
async fn write_frame(
    w: &mut (impl AsyncWrite + Unpin),
    opcode: u8,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) {
    let mut out = vec![0x80 | opcode];
    let bit = if mask.is_some() { 0x80 } else { 0 };
    let len = payload.len();
    if len < 126 {
        out.push(bit | len as u8);
    } else if len < 65536 {
        out.push(bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(bit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    match mask {
        Some(k) => {
            out.extend_from_slice(&k);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    w.write_all(&out).await.unwrap();
}

/// Reads one frame: its opcode, whether it was masked, and its (unmasked) payload.
async fn read_frame(r: &mut (impl AsyncRead + Unpin)) -> std::io::Result<(u8, bool, Vec<u8>)> {
    let mut head = [0u8; 2];
    r.read_exact(&mut head).await?;
    let masked = head[1] & 0x80 != 0;
    let len = match head[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b).await?;
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            r.read_exact(&mut b).await?;
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    let mut key = [0u8; 4];
    if masked {
        r.read_exact(&mut key).await?;
    }
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload).await?;
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
    }
    Ok((head[0] & 0x0f, masked, payload))
}

/// What the WebSocket backend saw: the handshakes' headers, and whether every client frame
/// arrived masked.
#[derive(Default)]
struct WsState {
    handshakes: Mutex<Vec<HeaderMap>>,
    unmasked: AtomicUsize,
}

/// Echoes text and binary frames; answers a close with a close and ends.
async fn ws_backend(state: Arc<WsState>) -> SocketAddr {
    backend(move |req: Request<Incoming>| ws_answer(state.clone(), req)).await
}

fn is_websocket(req: &Request<Incoming>) -> bool {
    req.headers()
        .get("upgrade")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
}

/// The WebSocket backend's answer: a switch and an echo for a handshake, else `plain`.
async fn ws_answer(state: Arc<WsState>, mut req: Request<Incoming>) -> Response<Chan> {
    if !is_websocket(&req) {
        return respond(200, frames(vec![Frame::data(Bytes::from_static(b"plain"))]));
    }
    state.handshakes.lock().unwrap().push(req.headers().clone());
    let accept = ws_accept(req.headers()["sec-websocket-key"].to_str().unwrap());
    let on = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let mut io = TokioIo::new(on.await.unwrap());
        while let Ok((opcode, masked, payload)) = read_frame(&mut io).await {
            if !masked {
                state.unmasked.fetch_add(1, Ordering::SeqCst);
            }
            write_frame(&mut io, opcode, &payload, None).await;
            if opcode == 8 {
                let _ = io.shutdown().await;
                break;
            }
        }
    });
    let mut r = respond(101, frames(vec![]));
    let h = r.headers_mut();
    h.insert("upgrade", "websocket".parse().unwrap());
    h.insert("connection", "Upgrade".parse().unwrap());
    h.insert("sec-websocket-accept", accept.parse().unwrap());
    r
}

/// Sends a handshake to the gateway; returns the status, the response head and the socket.
async fn ws_handshake(gh: &Gatehouse, path: &str, extra: &str) -> (u16, String, TcpStream) {
    try_ws_handshake(gh, path, extra)
        .await
        .expect("the gateway closed the connection during the handshake")
}

/// [`ws_handshake`], or `None` when the gateway closes the connection without an answer.
async fn try_ws_handshake(
    gh: &Gatehouse,
    path: &str,
    extra: &str,
) -> Option<(u16, String, TcpStream)> {
    let mut tcp = TcpStream::connect(("127.0.0.1", gh.gateway_port))
        .await
        .unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n",
        gh.gateway_port
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    // Byte by byte up to the blank line, so that no frame is read along with the head.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut b))
            .await
            .expect("no handshake answer within 10 s")
            .unwrap_or(0);
        if n == 0 {
            assert!(head.is_empty(), "closed within the answer: {head:?}");
            return None;
        }
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Some((status, head.to_ascii_lowercase(), tcp))
}

/// One echo round trip over an open WebSocket.
async fn echo_once(tcp: &mut TcpStream) {
    write_frame(tcp, 1, b"still here", Some([1, 2, 3, 4])).await;
    assert_eq!(
        read_frame(tcp).await.unwrap(),
        (1, false, b"still here".to_vec())
    );
}

/// Echo round trips over an open WebSocket, then a close.
async fn echo_and_close(tcp: &mut TcpStream, hold: Duration) {
    let mask = Some([0x12, 0x34, 0x56, 0x78]);
    write_frame(tcp, 1, b"hello through the gateway", mask).await;
    let (opcode, masked, payload) = read_frame(tcp).await.unwrap();
    assert_eq!((opcode, masked), (1, false));
    assert_eq!(payload, b"hello through the gateway");
    let big = vec![b'w'; 300];
    write_frame(tcp, 2, &big, mask).await;
    assert_eq!(read_frame(tcp).await.unwrap(), (2, false, big));
    tokio::time::sleep(hold).await;
    write_frame(tcp, 8, &1000u16.to_be_bytes(), mask).await;
    let (opcode, _, payload) = read_frame(tcp).await.unwrap();
    assert_eq!(
        (opcode, payload.as_slice()),
        (8, &1000u16.to_be_bytes()[..])
    );
    // The backend closed after its close frame: so does the gateway's side.
    let mut rest = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut rest))
        .await
        .expect("the gateway kept the connection open after both sides closed")
        .unwrap_or(0);
    assert_eq!(n, 0);
}

/// The WebSocket tests' APIs in front of the backend at `addr`: `wsopen` (open, no policy: the
/// fast path) and `ws` (keyed, with a `check-header` on the handshake and a header naming the
/// method the policies saw). Returns a key for `ws`, once the policy is in force.
async fn ws_apis(gh: &Gatehouse, addr: SocketAddr) -> String {
    gh.simple_api("ws", "ws", &format!("http://{addr}"), false)
        .await;
    gh.simple_api("wsopen", "wsopen", &format!("http://{addr}"), true)
        .await;
    let key = gh.subscription("s", "/apis").await;
    set_policy(
        gh,
        "/mgmt/apis/ws/policy",
        r#"<policies>
            <inbound>
                <base />
                <check-header name="X-Client" failed-check-httpcode="403" failed-check-error-message="Unknown client" ignore-case="true">
                    <value>web</value>
                </check-header>
                <set-header name="X-Method" exists-action="override"><value>@(context.Request.Method)</value></set-header>
            </inbound>
            <backend><base /></backend>
            <outbound><base /></outbound>
        </policies>"#,
    )
    .await;
    until_ready(gh, "/wsopen/x", |r| r.status() == 200).await;
    // The policy is in force once a keyed request without the header is refused.
    let start = Instant::now();
    while gh
        .http
        .get(gh.gateway("/ws/x"))
        .header("Ocp-Apim-Subscription-Key", &key)
        .send()
        .await
        .unwrap()
        .status()
        != 403
    {
        assert!(start.elapsed() < Duration::from_secs(10), "no policy");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn websocket_handshakes_pass_the_policies_then_frames_flow_both_ways() {
    let state = Arc::new(WsState::default());
    let addr = ws_backend(state.clone()).await;
    let gh = Gatehouse::up("proto-ws", &[]).await;
    let key = ws_apis(&gh, addr).await;

    // The fast path: an open API without policies.
    let (status, head, mut tcp) = ws_handshake(&gh, "/wsopen/chat", "").await;
    assert_eq!(status, 101, "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    assert!(head.contains("connection: upgrade"), "{head}");
    assert!(
        head.contains(&format!(
            "sec-websocket-accept: {}",
            ws_accept(WS_KEY).to_ascii_lowercase()
        )),
        "{head}"
    );
    echo_and_close(&mut tcp, Duration::ZERO).await;
    drop(tcp);
    assert_eq!(state.handshakes.lock().unwrap().len(), 1);

    // No key, or a key without the header the policy checks: refused, never forwarded.
    let (status, head, _) = ws_handshake(&gh, "/ws/chat", "").await;
    assert_eq!(status, 401, "{head}");
    let (status, head, _) = ws_handshake(
        &gh,
        "/ws/chat",
        &format!("Ocp-Apim-Subscription-Key: {key}\r\n"),
    )
    .await;
    assert_eq!(status, 403, "{head}");
    assert_eq!(
        state.handshakes.lock().unwrap().len(),
        1,
        "a refused handshake reached the backend"
    );

    // Key and header: the switch goes through, the policies' pipeline included.
    let (status, head, mut tcp) = ws_handshake(
        &gh,
        "/ws/chat?room=1",
        &format!("Ocp-Apim-Subscription-Key: {key}\r\nX-Client: web\r\n"),
    )
    .await;
    assert_eq!(status, 101, "{head}");
    echo_and_close(&mut tcp, Duration::from_millis(600)).await;
    drop(tcp);
    let seen = state.handshakes.lock().unwrap().last().cloned().unwrap();
    assert_eq!(seen["upgrade"], "websocket");
    assert!(
        seen["connection"]
            .to_str()
            .unwrap()
            .to_ascii_lowercase()
            .contains("upgrade")
    );
    assert_eq!(seen["sec-websocket-key"], WS_KEY);
    assert_eq!(seen["sec-websocket-version"], "13");
    assert_eq!(seen["x-client"], "web");
    assert!(
        !seen.contains_key("ocp-apim-subscription-key"),
        "the key went to the backend"
    );
    assert_eq!(state.unmasked.load(Ordering::SeqCst), 0);

    // The connection is logged when it closes: 101, its duration, bytes both ways.
    let line = log_line(&gh, "the WebSocket connection", |l| {
        l["status"] == 101 && l["url"] == "/ws/chat?room=1"
    })
    .await;
    assert_eq!(line["backendStatus"], 101);
    assert!(line["totalMs"].as_f64().unwrap() >= 600.0, "{line}");
    // Client frames: 2 + 4 + 25, 4 + 4 + 300, 2 + 4 + 2; server frames: 2 + 25, 4 + 300, 2 + 2.
    assert!(line["bytesIn"].as_u64().unwrap() >= 347, "{line}");
    assert!(line["bytesOut"].as_u64().unwrap() >= 335, "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn open_websockets_get_the_shutdown_grace_then_close_and_are_logged() {
    let state = Arc::new(WsState::default());
    let addr = ws_backend(state.clone()).await;
    let mut gh = Gatehouse::up("proto-ws-drain", &["--shutdown-grace", "3s"]).await;
    gh.simple_api("wsopen", "wsopen", &format!("http://{addr}"), true)
        .await;
    until_ready(&gh, "/wsopen/x", |r| r.status() == 200).await;
    let (status, head, mut tcp) = ws_handshake(&gh, "/wsopen/drain", "").await;
    assert_eq!(status, 101, "{head}");
    echo_once(&mut tcp).await;

    let stopped = Instant::now();
    gh.signal("TERM");
    // Within the grace period the WebSocket still carries frames.
    tokio::time::sleep(Duration::from_millis(500)).await;
    echo_once(&mut tcp).await;
    // At its end the gateway closes it, without waiting for either side.
    let mut rest = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(15), tcp.read(&mut rest))
        .await
        .expect("the WebSocket outlived the shutdown grace")
        .unwrap_or(0);
    assert_eq!(n, 0, "unexpected bytes: {:?}", &rest[..n]);
    let held = stopped.elapsed();
    assert!(
        held >= Duration::from_secs(2),
        "closed after {held:?}, before the grace ended"
    );
    assert!(gh.wait(), "gatehouse did not exit cleanly");
    // The connection was logged with what it carried before it was closed.
    let line = json_lines(&gh.stdout())
        .into_iter()
        .find(|l| l["url"] == "/wsopen/drain")
        .unwrap_or_else(|| {
            panic!(
                "no access log line for the closed WebSocket:\n{}",
                gh.stdout()
            )
        });
    assert_eq!(line["status"], 101, "{line}");
    assert!(line["bytesIn"].as_u64().unwrap() >= 2 * (6 + 10), "{line}");
    assert!(line["bytesOut"].as_u64().unwrap() >= 2 * (2 + 10), "{line}");
}

/// A WebSocket over HTTP/2 (RFC 8441): an extended CONNECT with `:protocol websocket` on an
/// HTTP/2 connection (prior knowledge, plain), answered 200, then frames on the stream.
async fn h2_websocket(
    gh: &Gatehouse,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Option<hyper::upgrade::Upgraded>) {
    let tcp = TcpStream::connect(("127.0.0.1", gh.gateway_port))
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut req = Request::connect(format!("http://127.0.0.1:{}{path}", gh.gateway_port))
        .header("sec-websocket-version", "13");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let mut req = req.body(Full::new(Bytes::new())).unwrap();
    req.extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    let mut resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .expect("no answer within 10 s")
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let upgraded = if status == 200 {
        Some(hyper::upgrade::on(&mut resp).await.unwrap())
    } else {
        None
    };
    (status, headers, upgraded)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn websocket_over_http2_extended_connect_reaches_an_http1_backend() {
    let state = Arc::new(WsState::default());
    let addr = ws_backend(state.clone()).await;
    let gh = Gatehouse::up("proto-ws-h2", &[]).await;
    let key = ws_apis(&gh, addr).await;

    // The fast path: 200 opens the stream; frames flow both ways and the close ends it.
    let (status, headers, upgraded) = h2_websocket(&gh, "/wsopen/chat", &[]).await;
    assert_eq!(status, 200, "{headers:?}");
    assert!(!headers.contains_key("sec-websocket-accept"), "{headers:?}");
    let mut io = TokioIo::new(upgraded.unwrap());
    write_frame(&mut io, 1, b"over h2", Some([9, 8, 7, 6])).await;
    assert_eq!(
        read_frame(&mut io).await.unwrap(),
        (1, false, b"over h2".to_vec())
    );
    write_frame(&mut io, 8, &1000u16.to_be_bytes(), Some([1, 1, 1, 1])).await;
    assert_eq!(read_frame(&mut io).await.unwrap().0, 8);
    {
        // The backend got an HTTP/1.1 handshake with a key of the gateway's making.
        let seen = state.handshakes.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0]["upgrade"], "websocket");
        assert_eq!(seen[0]["sec-websocket-version"], "13");
        assert_eq!(seen[0]["sec-websocket-key"].len(), 24, "{:?}", seen[0]);
    }

    // The policies run on the handshake: no header, 403 and nothing forwarded.
    let (status, _, _) =
        h2_websocket(&gh, "/ws/chat", &[("ocp-apim-subscription-key", &key)]).await;
    assert_eq!(status, 403);
    let (status, _, _) = h2_websocket(&gh, "/ws/chat", &[("x-client", "web")]).await;
    assert_eq!(status, 401);
    assert_eq!(state.handshakes.lock().unwrap().len(), 1);

    // Key and header: through the pipeline, which sees a GET.
    let (status, headers, upgraded) = h2_websocket(
        &gh,
        "/ws/chat?room=2",
        &[("ocp-apim-subscription-key", &key), ("x-client", "web")],
    )
    .await;
    assert_eq!(status, 200, "{headers:?}");
    let mut io = TokioIo::new(upgraded.unwrap());
    let big = vec![b'h'; 70_000];
    write_frame(&mut io, 2, &big, Some([1, 2, 3, 4])).await;
    assert_eq!(read_frame(&mut io).await.unwrap(), (2, false, big));
    write_frame(&mut io, 8, &1000u16.to_be_bytes(), Some([1, 1, 1, 1])).await;
    assert_eq!(read_frame(&mut io).await.unwrap().0, 8);
    let seen = state.handshakes.lock().unwrap().last().cloned().unwrap();
    assert_eq!(seen["x-method"], "GET");
    assert!(!seen.contains_key("ocp-apim-subscription-key"));
    assert_eq!(state.unmasked.load(Ordering::SeqCst), 0);

    // Logged when it closes, with the bytes it carried.
    let line = log_line(&gh, "the HTTP/2 WebSocket", |l| {
        l["url"] == "/ws/chat?room=2" && l["bytesIn"].as_u64().unwrap_or(0) > 0
    })
    .await;
    assert_eq!(line["status"], 200, "{line}");
    assert_eq!(line["backendStatus"], 101, "{line}");
    assert!(line["bytesIn"].as_u64().unwrap() >= 70_000, "{line}");
    assert!(line["bytesOut"].as_u64().unwrap() >= 70_000, "{line}");
}

// ---------------------------------------------------------------------------------------
// gRPC
// ---------------------------------------------------------------------------------------

/// One gRPC message: uncompressed flag, big-endian length, the bytes.
fn grpc_message(bytes: &[u8]) -> Bytes {
    let mut out = vec![0u8];
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
    out.into()
}

fn grpc_trailers(status: u32, message: Option<&str>) -> Frame<Bytes> {
    let mut t = HeaderMap::new();
    t.insert("grpc-status", status.to_string().parse().unwrap());
    if let Some(m) = message {
        t.insert("grpc-message", m.parse().unwrap());
    }
    Frame::trailers(t)
}

/// Version, `te` and `content-type` of a call the backend got.
type SeenCall = (hyper::Version, Option<String>, Option<String>);

#[derive(Default)]
struct GrpcState {
    /// Version, `te` and `content-type` of each call the backend got.
    calls: Mutex<Vec<SeenCall>>,
    /// When the streaming call's last message went.
    last_sent: Mutex<Option<Instant>>,
}

/// `Unary` answers one message; `Stream` three, 200 ms apart; `Missing` grpc-status 5.
async fn grpc_backend(state: Arc<GrpcState>) -> SocketAddr {
    backend(move |req: Request<Incoming>| grpc_answer(state.clone(), req)).await
}

async fn grpc_answer(state: Arc<GrpcState>, req: Request<Incoming>) -> Response<Chan> {
    let header = |n: &str| req.headers().get(n).map(|v| v.to_str().unwrap().to_owned());
    state
        .calls
        .lock()
        .unwrap()
        .push((req.version(), header("te"), header("content-type")));
    let path = req.uri().path().to_owned();
    let request = req.into_body().collect().await.unwrap().to_bytes();
    let body = match path.as_str() {
        "/test.Echo/Unary" => {
            let mut reply = b"reply:".to_vec();
            reply.extend_from_slice(&request[5..]);
            frames(vec![
                Frame::data(grpc_message(&reply)),
                grpc_trailers(0, None),
            ])
        }
        "/test.Echo/Stream" => {
            let (tx, body) = chan();
            tokio::spawn(async move {
                for i in 0..3 {
                    if i == 2 {
                        *state.last_sent.lock().unwrap() = Some(Instant::now());
                    }
                    let m = grpc_message(format!("msg-{i}").as_bytes());
                    tx.send(Frame::data(m)).await.unwrap();
                    if i < 2 {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
                tx.send(grpc_trailers(0, None)).await.unwrap();
            });
            body
        }
        _ => frames(vec![grpc_trailers(5, Some("no such thing"))]),
    };
    let mut r = respond(200, body);
    r.headers_mut()
        .insert("content-type", "application/grpc".parse().unwrap());
    r
}

/// What a call got back: its messages with when each arrived, and its trailers.
struct Call {
    messages: Vec<(Vec<u8>, Instant)>,
    trailers: Option<HeaderMap>,
    headers: HeaderMap,
}

/// A gRPC call through the gateway over h2c with prior knowledge.
async fn grpc_call(gh: &Gatehouse, method: &str, message: &[u8]) -> Call {
    grpc_call_at(gh, "/grpc/test.Echo", method, message).await
}

/// A gRPC call to `{prefix}/{method}` on the gateway.
async fn grpc_call_at(gh: &Gatehouse, prefix: &str, method: &str, message: &[u8]) -> Call {
    let tcp = TcpStream::connect(("127.0.0.1", gh.gateway_port))
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::post(format!(
        "http://127.0.0.1:{}{prefix}/{method}",
        gh.gateway_port
    ))
    .header("content-type", "application/grpc+proto")
    .header("te", "trailers")
    .body(Full::new(grpc_message(message)))
    .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .expect("no answer within 10 s")
        .unwrap();
    if resp.status() != 200 {
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        panic!("{method}: {status} {body:?}\n{}", gh.stdout());
    }
    assert_eq!(resp.version(), hyper::Version::HTTP_2);
    let (parts, mut body) = resp.into_parts();
    let mut call = Call {
        messages: Vec::new(),
        trailers: None,
        headers: parts.headers,
    };
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.unwrap();
        match frame.into_data() {
            Ok(data) => {
                buf.extend_from_slice(&data);
                while buf.len() >= 5 {
                    let len = u32::from_be_bytes(buf[1..5].try_into().unwrap()) as usize;
                    if buf.len() < 5 + len {
                        break;
                    }
                    assert_eq!(buf[0], 0, "uncompressed");
                    call.messages
                        .push((buf[5..5 + len].to_vec(), Instant::now()));
                    buf.drain(..5 + len);
                }
            }
            Err(frame) => call.trailers = frame.into_trailers().ok(),
        }
    }
    assert!(buf.is_empty(), "a partial message was left: {buf:?}");
    call
}

async fn grpc_calls_work(gh: &Gatehouse, state: &GrpcState) {
    let unary = grpc_call(gh, "Unary", b"ping").await;
    assert_eq!(unary.messages.len(), 1);
    assert_eq!(unary.messages[0].0, b"reply:ping");
    assert_eq!(unary.headers["content-type"], "application/grpc");
    assert_eq!(unary.trailers.as_ref().unwrap()["grpc-status"], "0");

    let stream = grpc_call(gh, "Stream", b"go").await;
    let names: Vec<_> = stream
        .messages
        .iter()
        .map(|(m, _)| String::from_utf8(m.clone()).unwrap())
        .collect();
    assert_eq!(names, ["msg-0", "msg-1", "msg-2"]);
    let last_sent = state.last_sent.lock().unwrap().take().unwrap();
    assert!(
        stream.messages[0].1 < last_sent,
        "the first message arrived only after the last was sent: the stream was buffered"
    );
    eprintln!(
        "gRPC stream: first message {:?} before the last was sent",
        last_sent - stream.messages[0].1
    );
    assert_eq!(stream.trailers.as_ref().unwrap()["grpc-status"], "0");

    let missing = grpc_call(gh, "Missing", b"?").await;
    assert!(missing.messages.is_empty());
    let trailers = missing.trailers.expect("no trailers");
    assert_eq!(trailers["grpc-status"], "5");
    assert_eq!(trailers["grpc-message"], "no such thing");

    for (version, te, content_type) in state.calls.lock().unwrap().drain(..) {
        assert_eq!(version, hyper::Version::HTTP_2, "forwarded over HTTP/2");
        assert_eq!(te.as_deref(), Some("trailers"));
        assert_eq!(content_type.as_deref(), Some("application/grpc+proto"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grpc_calls_go_over_http2_with_their_trailers() {
    let state = Arc::new(GrpcState::default());
    let addr = grpc_backend(state.clone()).await;
    let gh = Gatehouse::up("proto-grpc", &[]).await;
    gh.simple_api("grpc", "grpc", &format!("http://{addr}"), true)
        .await;
    // A plain HTTP/1.1 GET reaches the backend too (it answers trailers only: 200).
    until_ready(&gh, "/grpc/ready", |r| r.status() == 200).await;
    state.calls.lock().unwrap().clear();

    // The fast path.
    grpc_calls_work(&gh, &state).await;

    // Through policies that leave the bodies alone.
    pass_through_policy(&gh, "grpc", "/grpc/ready").await;
    state.calls.lock().unwrap().clear();
    grpc_calls_work(&gh, &state).await;

    // The status is in the access log and the metrics.
    let line = log_line(&gh, "the failed call", |l| {
        l["url"] == "/grpc/test.Echo/Missing"
    })
    .await;
    assert_eq!(line["grpcStatus"], 5, "{line}");
    let line = log_line(&gh, "the unary call", |l| {
        l["url"] == "/grpc/test.Echo/Unary"
    })
    .await;
    assert_eq!(line["grpcStatus"], 0, "{line}");
    let metrics = gh
        .http
        .get(gh.admin("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("gatehouse_requests_total") && l.contains("grpc_status=\"5\"")),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_https_backend_gets_websockets_over_http1_and_grpc_over_h2() {
    let ca = gatehouse_tls::testca::TestCa::new("proto-tls");
    let leaf = ca.leaf("backend", &["127.0.0.1"]);
    let tls = gatehouse_tls::server::ServerTls::from_files(&leaf.cert, &leaf.key, true).unwrap();
    let ws = Arc::new(WsState::default());
    let grpc = Arc::new(GrpcState::default());
    let addr = {
        let (ws, grpc) = (ws.clone(), grpc.clone());
        backend_over(Some(tls), move |req: Request<Incoming>| {
            let (ws, grpc) = (ws.clone(), grpc.clone());
            async move {
                let is_grpc = req
                    .headers()
                    .get("content-type")
                    .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
                if is_grpc {
                    grpc_answer(grpc, req).await
                } else {
                    ws_answer(ws, req).await
                }
            }
        })
        .await
    };
    let gh = Gatehouse::up("proto-tls", &["--trusted-ca", ca.cert.to_str().unwrap()]).await;
    gh.simple_api("secure", "secure", &format!("https://{addr}"), true)
        .await;
    until_ready(&gh, "/secure/x", |r| r.status() == 200).await;

    // A WebSocket needs HTTP/1.1: the gateway offers only that to the backend for it.
    let (status, head, mut tcp) = ws_handshake(&gh, "/secure/chat", "").await;
    assert_eq!(status, 101, "{head}");
    echo_and_close(&mut tcp, Duration::ZERO).await;
    drop(tcp);
    assert_eq!(ws.handshakes.lock().unwrap().len(), 1);

    // gRPC over the backend's HTTP/2 (ALPN), trailers included.
    grpc.calls.lock().unwrap().clear();
    let unary = grpc_call_at(&gh, "/secure/test.Echo", "Unary", b"tls").await;
    assert_eq!(unary.messages[0].0, b"reply:tls");
    assert_eq!(unary.trailers.as_ref().unwrap()["grpc-status"], "0");
    let stream = grpc_call_at(&gh, "/secure/test.Echo", "Stream", b"go").await;
    assert_eq!(stream.messages.len(), 3);
    let last_sent = grpc.last_sent.lock().unwrap().take().unwrap();
    assert!(stream.messages[0].1 < last_sent, "buffered");
    assert_eq!(stream.trailers.as_ref().unwrap()["grpc-status"], "0");
    for (version, te, _) in grpc.calls.lock().unwrap().drain(..) {
        assert_eq!(version, hyper::Version::HTTP_2);
        assert_eq!(te.as_deref(), Some("trailers"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn open_websockets_count_against_the_connection_cap() {
    let state = Arc::new(WsState::default());
    let addr = ws_backend(state.clone()).await;
    let mut gh = Gatehouse::up("proto-cap", &["--max-connections", "3"]).await;
    // A client that keeps no connection to the gateway open between requests.
    gh.http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    gh.simple_api("wsopen", "wsopen", &format!("http://{addr}"), true)
        .await;
    until_ready(&gh, "/wsopen/x", |r| r.status() == 200).await;

    // The harness's own connections may still be closing: at most 3 tunnels get through.
    let mut open = Vec::new();
    let mut refused = false;
    for _ in 0..4 {
        match try_ws_handshake(&gh, "/wsopen/chat", "").await {
            Some((status, head, tcp)) => {
                assert_eq!(status, 101, "{head}");
                open.push(tcp);
            }
            None => {
                refused = true;
                break;
            }
        }
    }
    assert!(
        refused,
        "4 WebSockets held open under --max-connections 3: switched connections left the cap"
    );
    assert!(!open.is_empty());
    for tcp in &mut open {
        echo_once(tcp).await;
    }
    drop(open);
    gh.eventually(Duration::from_secs(10), || async {
        match try_ws_handshake(&gh, "/wsopen/chat", "").await {
            Some((status, _, mut tcp)) => {
                echo_once(&mut tcp).await;
                status == 101
            }
            None => false,
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_switch_nobody_asked_for_is_a_bad_gateway() {
    let addr = backend(|_req: Request<Incoming>| async move {
        let mut r = respond(101, frames(vec![]));
        r.headers_mut()
            .insert("upgrade", "websocket".parse().unwrap());
        r.headers_mut()
            .insert("connection", "upgrade".parse().unwrap());
        r
    })
    .await;
    let gh = Gatehouse::up("proto-unasked", &[]).await;
    gh.simple_api("p", "p", &format!("http://{addr}"), true)
        .await;
    until_ready(&gh, "/p/x", |r| r.status() != 404).await;
    let r = gh.http.get(gh.gateway("/p/x")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(
        r.text().await.unwrap(),
        r#"{"statusCode":502,"message":"Bad gateway. The backend service could not be reached."}"#
    );
    // The gateway still serves the connection's next requests as usual.
    let r = gh.http.get(gh.gateway("/p/x")).send().await.unwrap();
    assert_eq!(r.status(), 502);
}
