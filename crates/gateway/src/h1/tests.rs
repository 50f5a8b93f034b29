use super::*;
use proptest::prelude::*;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

fn head_of(text: &str, method: &Method) -> Result<Parsed, H1Error> {
    let mut buf = BytesMut::from(text.as_bytes());
    parse_head(&mut buf, &mut Vec::new(), method)
}

fn complete(text: &str) -> Head {
    match head_of(text, &Method::GET) {
        Ok(Parsed::Head(h)) => h,
        Ok(_) => panic!("not a complete head: {text:?}"),
        Err(e) => panic!("refused {text:?}: {e}"),
    }
}

/// Decodes `wire` fed `step` bytes at a time; the data, or the first error.
fn dechunk(wire: &[u8], step: usize) -> Result<(Vec<u8>, bool), H1Error> {
    let mut decoder = Chunked::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in wire.chunks(step.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match decoder.step(&mut buf)? {
                Step::Data(d) => out.extend_from_slice(&d),
                Step::NeedMore => break,
                Step::End => return Ok((out, buf.is_empty())),
            }
        }
    }
    Ok((out, false))
}

#[test]
fn chunked_bodies_decode_however_the_bytes_arrive() {
    let wire = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nx-trailer: 1\r\n\r\n";
    for step in 1..wire.len() {
        let (data, exact) = dechunk(wire, step).unwrap();
        assert_eq!(data, b"hello, world", "fed {step} at a time");
        assert!(exact, "nothing left after the last chunk");
    }
    // Upper-case hex and a large chunk.
    let mut big = b"1A\r\n".to_vec();
    big.extend_from_slice(&[b'x'; 26]);
    big.extend_from_slice(b"\r\n0\r\n\r\n");
    assert_eq!(dechunk(&big, 7).unwrap().0.len(), 26);
}

#[test]
fn malformed_chunked_bodies_are_errors() {
    for wire in [
        &b"g\r\n"[..],               // not hex
        b"\r\n",                     // no digits
        b"11111111111111111\r\n",    // 17 digits
        b"5\nhello\r\n0\r\n\r\n",    // bare LF after the size
        b"5\r\nhelloX\r\n0\r\n\r\n", // no CRLF after the data
        b"0\r\nx: 1\n\r\n",          // bare LF in the trailers
        b" 5\r\nhello\r\n",          // whitespace before the size
    ] {
        assert!(
            dechunk(wire, 3).is_err(),
            "accepted {:?}",
            String::from_utf8_lossy(wire)
        );
    }
    let mut long_ext = b"5;".to_vec();
    long_ext.extend(std::iter::repeat_n(b'a', MAX_CHUNK_LINE + 1));
    assert!(dechunk(&long_ext, 512).is_err());
}

proptest! {
    #[test]
    fn the_chunk_decoder_never_panics(wire in proptest::collection::vec(any::<u8>(), 0..256), step in 1usize..16) {
        let _ = dechunk(&wire, step);
    }

    #[test]
    fn the_head_parser_never_panics(text in "[ -~\r\n]{0,200}") {
        let _ = head_of(&text, &Method::GET);
    }
}

#[test]
fn framing_follows_rfc_9112() {
    let h = complete("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n");
    assert!(matches!(h.framing, Framing::Length(5)) && h.keep_alive);

    // A list of one length is that length; two lengths are an error.
    assert!(matches!(
        complete("HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\n").framing,
        Framing::Length(5)
    ));
    for bad in [
        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 5, 6\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: +5\r\n\r\n",
        "HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
    ] {
        assert!(head_of(bad, &Method::GET).is_err(), "accepted {bad:?}");
    }

    // Transfer-Encoding wins over Content-Length, which goes.
    let h = complete(
        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
    );
    assert!(matches!(h.framing, Framing::Chunked(_)));
    assert!(!h.headers.contains_key(CONTENT_LENGTH));
    // A coding that does not end in chunked runs to the close.
    let h = complete("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n");
    assert!(matches!(h.framing, Framing::Close) && !h.keep_alive);
    // No length at all: to the close.
    assert!(!complete("HTTP/1.1 200 OK\r\n\r\n").keep_alive);

    // No body, whatever the headers say.
    for status in ["204 No Content", "304 Not Modified"] {
        let h = complete(&format!("HTTP/1.1 {status}\r\ncontent-length: 5\r\n\r\n"));
        assert!(matches!(h.framing, Framing::Length(0)));
    }
    let Ok(Parsed::Head(h)) = head_of(
        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
        &Method::HEAD,
    ) else {
        panic!("HEAD's answer refused");
    };
    assert!(matches!(h.framing, Framing::Length(0)));
    assert_eq!(
        h.headers[CONTENT_LENGTH], "5",
        "HEAD keeps its length header"
    );

    // Keep-alive: HTTP/1.1 unless closed; HTTP/1.0 only when asked.
    assert!(
        !complete("HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: Close\r\n\r\n").keep_alive
    );
    assert!(!complete("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n").keep_alive);
    let h = complete("HTTP/1.0 200 OK\r\ncontent-length: 0\r\nconnection: keep-alive\r\n\r\n");
    assert!(h.keep_alive && h.version == Version::HTTP_10);

    // An informational answer is skipped; a partial head waits for more.
    assert!(matches!(
        head_of("HTTP/1.1 100 Continue\r\n\r\n", &Method::GET),
        Ok(Parsed::Informational)
    ));
    assert!(matches!(
        head_of("HTTP/1.1 200 OK\r\ncontent-len", &Method::GET),
        Ok(Parsed::Partial)
    ));

    let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: 1\r\n")).collect();
    assert!(matches!(
        head_of(&format!("HTTP/1.1 200 OK\r\n{many}\r\n"), &Method::GET),
        Err(H1Error::TooManyHeaders)
    ));
}

/// A backend that answers each connection's requests with `answers`, in order, one per
/// request head it reads, and records the heads.
async fn scripted(
    answers: Vec<&'static [u8]>,
) -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut seen = Vec::new();
        for answer in answers {
            let mut buf = [0u8; 4096];
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buf).await.unwrap();
                if n == 0 {
                    return;
                }
                seen.extend_from_slice(&buf[..n]);
            }
            let end = seen.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            let head: Vec<u8> = seen.drain(..end).collect();
            tx.send(String::from_utf8_lossy(&head).into_owned())
                .unwrap();
            if answer.is_empty() {
                return; // close without answering
            }
            stream.write_all(answer).await.unwrap();
        }
        // Then close.
    });
    (addr, rx)
}

async fn conn_to(addr: std::net::SocketAddr) -> Box<Conn> {
    let stream = TcpStream::connect(addr).await.unwrap();
    Box::new(Conn::new(stream, OpenGuard::new(Default::default())))
}

async fn read_all(mut body: Body) -> Result<(Vec<u8>, Option<Box<Conn>>), H1Error> {
    let mut out = Vec::new();
    while let Some(frame) = std::future::poll_fn(|cx| body.poll_frame(cx)).await {
        out.extend_from_slice(frame?.data_ref().unwrap());
    }
    Ok((out, body.reusable()))
}

#[tokio::test]
async fn an_exchange_writes_the_head_and_reads_every_framing() {
    let (addr, mut heads) = scripted(vec![
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-a: 1\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n\r\nto the end",
    ])
    .await;
    let mut conn = conn_to(addr).await;
    let mut headers = HeaderMap::new();
    headers.insert(http::header::HOST, HeaderValue::from_static("backend"));
    headers.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
    headers.insert(CONTENT_LENGTH, HeaderValue::from_static("99"));

    let head = conn
        .exchange(
            &Method::POST,
            "/a?b=1",
            &headers,
            &Bytes::from_static(b"body"),
        )
        .await
        .unwrap();
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.headers["x-a"], "1");
    let sent = heads.recv().await.unwrap();
    assert_eq!(
        sent, "POST /a?b=1 HTTP/1.1\r\nhost: backend\r\ncontent-length: 4\r\n\r\n",
        "the codec frames the body it has: its own length, no transfer-encoding"
    );
    let mut body = Body::new(conn, head.framing, head.keep_alive);
    assert_eq!(body.take_whole().as_deref(), Some(&b"ok"[..]));
    let mut conn = body.reusable().expect("the connection is reusable");

    let head = conn
        .exchange(&Method::GET, "/", &HeaderMap::new(), &Bytes::new())
        .await
        .unwrap();
    let (data, again) = read_all(Body::new(conn, head.framing, head.keep_alive))
        .await
        .unwrap();
    assert_eq!(data, b"abc");
    let mut conn = again.expect("reusable after the last chunk");

    let head = conn
        .exchange(&Method::GET, "/", &HeaderMap::new(), &Bytes::new())
        .await
        .unwrap();
    assert!(!head.keep_alive);
    let (data, again) = read_all(Body::new(conn, head.framing, head.keep_alive))
        .await
        .unwrap();
    assert_eq!(data, b"to the end");
    assert!(
        again.is_none(),
        "a body that ran to the close leaves no connection"
    );
}

#[tokio::test]
async fn a_reused_connection_closed_by_the_backend_is_not_usable_or_can_be_retried() {
    // Answers once, then closes: the idle connection is seen closed without a request.
    let (addr, _heads) = scripted(vec![b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"]).await;
    let mut conn = conn_to(addr).await;
    let head = conn
        .exchange(&Method::GET, "/", &HeaderMap::new(), &Bytes::new())
        .await
        .unwrap();
    let mut body = Body::new(conn, head.framing, head.keep_alive);
    assert_eq!(body.take_whole().as_deref(), Some(&b""[..]));
    let mut conn = body.reusable().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while conn.is_usable() {
        assert!(
            std::time::Instant::now() < deadline,
            "the close was never seen"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }

    // Reads the request and closes without a byte of answer: an idempotent request on a
    // reused connection may go again; a POST may not.
    let (addr, _heads) = scripted(vec![b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", b""]).await;
    let mut conn = conn_to(addr).await;
    let head = conn
        .exchange(&Method::GET, "/", &HeaderMap::new(), &Bytes::new())
        .await
        .unwrap();
    let mut body = Body::new(conn, head.framing, head.keep_alive);
    body.take_whole();
    let mut conn = body.reusable().unwrap();
    let failed = conn
        .exchange(&Method::GET, "/", &HeaderMap::new(), &Bytes::new())
        .await
        .unwrap_err();
    assert!(matches!(failed.error, H1Error::ClosedBeforeAnswer) && failed.retry);

    let (addr, _heads) = scripted(vec![b""]).await;
    let mut conn = conn_to(addr).await;
    let failed = conn
        .exchange(&Method::GET, "/", &HeaderMap::new(), &Bytes::new())
        .await
        .unwrap_err();
    assert!(
        !failed.retry,
        "a new connection's failure is the backend's answer"
    );
}

#[tokio::test]
async fn a_truncated_body_is_an_error_and_leaves_no_connection() {
    let (addr, _heads) =
        scripted(vec![b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort"]).await;
    let mut conn = conn_to(addr).await;
    let head = conn
        .exchange(&Method::GET, "/", &HeaderMap::new(), &Bytes::new())
        .await
        .unwrap();
    let mut body = Body::new(conn, head.framing, head.keep_alive);
    assert!(body.take_whole().is_none());
    let mut data = Vec::new();
    let error = loop {
        match std::future::poll_fn(|cx| body.poll_frame(cx)).await {
            Some(Ok(frame)) => data.extend_from_slice(frame.data_ref().unwrap()),
            Some(Err(e)) => break e,
            None => panic!("a truncated body ended as if whole"),
        }
    };
    assert_eq!(data, b"short");
    assert!(matches!(error, H1Error::Truncated));
    assert!(body.reusable().is_none());
}

#[tokio::test]
async fn bytes_past_the_response_keep_the_connection_out_of_the_pool() {
    let (addr, _heads) =
        scripted(vec![b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokEXTRA"]).await;
    let mut conn = conn_to(addr).await;
    let head = conn
        .exchange(&Method::GET, "/", &HeaderMap::new(), &Bytes::new())
        .await
        .unwrap();
    let mut body = Body::new(conn, head.framing, head.keep_alive);
    assert_eq!(body.take_whole().as_deref(), Some(&b"ok"[..]));
    assert!(body.reusable().is_none());
}
