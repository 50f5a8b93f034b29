//! HTTP/1.1 to plain backends without a connection task: the request's head is written and
//! the response's head read by the task that serves the client, on a connection it owns for
//! the exchange, and the response body is read from the socket as the client's side polls it.
//!
//! hyper's client connection runs a task per connection and hands every request, response and
//! body chunk across channels between that task and the caller: two task switches and several
//! allocations per request that a proxy forwarding one request at a time on a connection does
//! not need. This codec covers what the hot path sends: a request whose body is already whole
//! (none, or a buffer a policy made). A streaming request body, a protocol switch, TLS and
//! HTTP/2 keep hyper ([`crate::upstream`]).
//!
//! Responses are read strictly: `httparse` for the head (at most [`MAX_HEADERS`] headers and
//! [`MAX_HEAD`] bytes), one valid `Content-Length` or a chunked `Transfer-Encoding` (which wins,
//! and the length goes), else the body runs to the end of the connection. Informational (1xx)
//! answers are skipped. A connection goes back to its pool only when its response ended exactly
//! where the bytes read so far end, and the backend did not ask to close it.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};
use http_body::Frame;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// The most headers a backend's response head may have (hyper's default too).
pub const MAX_HEADERS: usize = 100;
/// The largest response head read, in bytes.
pub const MAX_HEAD: usize = 64 * 1024;
/// The most bytes of chunk extensions on one chunk-size line, and of trailers in all.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;
/// How much room a read asks for at least.
const READ_SIZE: usize = 8 * 1024;

/// Why an exchange failed, in words for the log (never for the client).
#[derive(Debug, thiserror::Error)]
pub enum H1Error {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the backend closed the connection before it answered")]
    ClosedBeforeAnswer,
    #[error("the backend's response is not valid HTTP/1.1: {0}")]
    Invalid(&'static str),
    #[error("the backend's response head is larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("the backend's response has more than {MAX_HEADERS} headers")]
    TooManyHeaders,
    #[error("the backend closed the connection before the body ended")]
    Truncated,
}

impl H1Error {
    /// Whether the request surely did not reach the backend's application, so it can go again
    /// on another connection: an idle connection the backend closed as it was taken.
    fn retryable(&self, method: &Method) -> bool {
        match self {
            // Writing failed: the backend had closed its side.
            Self::Io(e) => matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ),
            // Closed without a byte of answer: most likely the idle close racing the request.
            // Sent again only when sending twice means nothing more than once.
            Self::ClosedBeforeAnswer => method.is_idempotent(),
            _ => false,
        }
    }
}

/// One HTTP/1.1 connection to a backend, with what was read past the last response.
pub struct Conn {
    io: TcpStream,
    buf: BytesMut,
    /// The request head, built here so its buffer is reused from request to request.
    head: Vec<u8>,
    /// Where the last response's headers were, reused likewise.
    spans: Vec<Span>,
    /// Requests this connection carried: a failure on a reused connection may be its idle
    /// close, one on a new connection is the backend's answer.
    served: u32,
    _open: OpenGuard,
}

/// Counts a connection as open in the pool's gauges until it is dropped.
pub struct OpenGuard(pub std::sync::Arc<crate::upstream::UpstreamGauges>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0
            .open
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl OpenGuard {
    pub fn new(gauges: std::sync::Arc<crate::upstream::UpstreamGauges>) -> Self {
        gauges
            .opened
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        gauges
            .open
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self(gauges)
    }
}

/// A response head, and how to read its body.
#[derive(Debug)]
pub struct Head {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub framing: Framing,
    /// The backend lets the connection carry another request after this one.
    pub keep_alive: bool,
}

impl Conn {
    pub fn new(io: TcpStream, open: OpenGuard) -> Self {
        Self {
            io,
            buf: BytesMut::with_capacity(READ_SIZE),
            head: Vec::with_capacity(512),
            spans: Vec::new(),
            served: 0,
            _open: open,
        }
    }

    /// Whether an idle connection can take a request: not closed by the backend, nothing
    /// unasked-for waiting on it. Costs no system call unless the socket became readable.
    pub fn is_usable(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match self.io.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            // Readable: closed, reset, or bytes nobody asked for. Or the readiness of the last
            // read, not yet cleared: a read tells.
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                matches!(self.io.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            }
        }
    }

    /// Writes the request and reads the response's head. On failure the connection is done
    /// for; [`Failed::retry`] says whether the request may go again on another one.
    pub async fn exchange(
        &mut self,
        method: &Method,
        target: &str,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<Head, Failed> {
        let reused = self.served > 0;
        self.served += 1;
        self.write_head(method, target, headers, body);
        let result = async {
            // A small body goes in the head's write: one system call for the request.
            if body.len() <= 16 * 1024 {
                self.head.extend_from_slice(body);
                self.io.write_all(&self.head).await?;
            } else {
                self.io.write_all(&self.head).await?;
                self.io.write_all(body).await?;
            }
            self.read_head(method).await
        }
        .await;
        result.map_err(|error| Failed {
            retry: reused && error.retryable(method),
            error,
        })
    }

    fn write_head(&mut self, method: &Method, target: &str, headers: &HeaderMap, body: &Bytes) {
        let out = &mut self.head;
        out.clear();
        out.extend_from_slice(method.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(target.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        for (name, value) in headers {
            // The framing is this codec's: a body it has whole gets its length, no body gets
            // none but what the client said.
            if name == TRANSFER_ENCODING || (!body.is_empty() && name == CONTENT_LENGTH) {
                continue;
            }
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if !body.is_empty() {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa_u64(body.len() as u64, &mut [0u8; 20]));
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }

    async fn read_head(&mut self, method: &Method) -> Result<Head, H1Error> {
        let mut answered = false;
        loop {
            if !self.buf.is_empty() {
                answered = true;
                match parse_head(&mut self.buf, &mut self.spans, method)? {
                    Parsed::Head(head) => return Ok(head),
                    Parsed::Informational => continue,
                    Parsed::Partial => {}
                }
            }
            if self.buf.len() >= MAX_HEAD {
                return Err(H1Error::HeadTooLarge);
            }
            self.buf.reserve(READ_SIZE);
            let n = std::future::poll_fn(|cx| {
                tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf)
            })
            .await?;
            if n == 0 {
                return Err(if answered {
                    H1Error::Invalid("the connection closed within the response head")
                } else {
                    H1Error::ClosedBeforeAnswer
                });
            }
        }
    }

    /// Reads more of the body into the buffer. `Ready(Ok(0))`: the backend closed.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        self.buf.reserve(READ_SIZE);
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf)
    }
}

/// A failed exchange.
#[derive(Debug)]
pub struct Failed {
    pub error: H1Error,
    /// The request may go again on another connection.
    pub retry: bool,
}

enum Parsed {
    Head(Head),
    Informational,
    Partial,
}

/// Where a header's name and value are in the head's bytes.
#[derive(Clone, Copy, Default)]
pub struct Span {
    name: (usize, usize),
    value: (usize, usize),
}

fn parse_head(
    buf: &mut BytesMut,
    spans: &mut Vec<Span>,
    method: &Method,
) -> Result<Parsed, H1Error> {
    let (len, status, version) = {
        // Uninitialised: zeroing a hundred headers per response would cost more than parsing.
        let mut raw =
            [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut []);
        let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut response,
            buf,
            &mut raw,
        ) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
            Err(httparse::Error::TooManyHeaders) => return Err(H1Error::TooManyHeaders),
            Err(_) => return Err(H1Error::Invalid("malformed response head")),
        };
        let base = buf.as_ptr() as usize;
        spans.clear();
        spans.extend(response.headers.iter().map(|header| {
            let name = header.name.as_ptr() as usize - base;
            let value = header.value.as_ptr() as usize - base;
            Span {
                name: (name, name + header.name.len()),
                value: (value, value + header.value.len()),
            }
        }));
        (
            len,
            response.code.unwrap_or(0),
            response.version.unwrap_or(1),
        )
    };
    let head = buf.split_to(len).freeze();
    let status = StatusCode::from_u16(status).map_err(|_| H1Error::Invalid("bad status code"))?;
    if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(Parsed::Informational);
    }
    let mut headers = HeaderMap::with_capacity(spans.len());
    let mut length: Option<u64> = None;
    let mut chunked = None;
    let mut close = version == 0;
    for span in spans.iter() {
        let name = HeaderName::from_bytes(&head[span.name.0..span.name.1])
            .map_err(|_| H1Error::Invalid("bad header name"))?;
        let value = HeaderValue::from_maybe_shared(head.slice(span.value.0..span.value.1))
            .map_err(|_| H1Error::Invalid("bad header value"))?;
        if name == CONTENT_LENGTH {
            let n = parse_length(value.as_bytes())?;
            if length.is_some_and(|l| l != n) {
                return Err(H1Error::Invalid("conflicting Content-Length values"));
            }
            length = Some(n);
        } else if name == TRANSFER_ENCODING {
            // The last coding decides: chunked, or a body that runs to the close.
            chunked = Some(last_token_is(value.as_bytes(), b"chunked"));
        } else if name == CONNECTION {
            if has_token(value.as_bytes(), b"close") {
                close = true;
            } else if version == 0 && has_token(value.as_bytes(), b"keep-alive") {
                close = false;
            }
        }
        headers.append(name, value);
    }
    let no_body = *method == Method::HEAD
        || status == StatusCode::SWITCHING_PROTOCOLS
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let framing = if no_body {
        Framing::Length(0)
    } else if let Some(chunked) = chunked {
        // Both given: the coding wins and the length goes (RFC 9112 §6.3), so nothing after
        // this hop trusts it.
        headers.remove(CONTENT_LENGTH);
        if chunked {
            Framing::Chunked(Chunked::default())
        } else {
            Framing::Close
        }
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::Close
    };
    let keep_alive =
        !close && status != StatusCode::SWITCHING_PROTOCOLS && !matches!(framing, Framing::Close);
    Ok(Parsed::Head(Head {
        status,
        version: if version == 0 {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        },
        headers,
        framing,
        keep_alive,
    }))
}

fn parse_length(value: &[u8]) -> Result<u64, H1Error> {
    // A list of equal values (`5, 5`) is one length (RFC 9110 §8.6).
    let mut found: Option<u64> = None;
    for part in value.split(|&b| b == b',') {
        let part = part.trim_ascii();
        if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
            return Err(H1Error::Invalid("bad Content-Length"));
        }
        let n = part.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
        if found.is_some_and(|f| f != n) {
            return Err(H1Error::Invalid("conflicting Content-Length values"));
        }
        found = Some(n);
    }
    found.ok_or(H1Error::Invalid("bad Content-Length"))
}

fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

fn last_token_is(value: &[u8], token: &[u8]) -> bool {
    value
        .rsplit(|&b| b == b',')
        .next()
        .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

fn itoa_u64(mut n: u64, out: &mut [u8; 20]) -> &[u8] {
    let mut i = out.len();
    loop {
        i -= 1;
        out[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &out[i..]
}

/// How a response body ends.
#[derive(Debug)]
pub enum Framing {
    /// After this many more bytes.
    Length(u64),
    /// At its last chunk.
    Chunked(Chunked),
    /// When the backend closes the connection.
    Close,
}

/// Where a chunked body's decoder is.
#[derive(Debug, Default)]
pub struct Chunked {
    state: ChunkState,
    size: u64,
    digits: u8,
    /// Bytes of the current size line (or of the trailers) so far.
    line: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    /// After the digits: whitespace or an extension, up to the CR.
    SizeRest,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    Trailer,
    TrailerLf,
    EndLf,
    Done,
}

/// What the decoder found in the buffer.
enum Step {
    Data(Bytes),
    NeedMore,
    End,
}

impl Chunked {
    fn step(&mut self, buf: &mut BytesMut) -> Result<Step, H1Error> {
        use ChunkState::*;
        loop {
            if self.state == Done {
                return Ok(Step::End);
            }
            if self.state == Data {
                if buf.is_empty() {
                    return Ok(Step::NeedMore);
                }
                let n = self.size.min(buf.len() as u64) as usize;
                self.size -= n as u64;
                if self.size == 0 {
                    self.state = DataCr;
                }
                return Ok(Step::Data(buf.split_to(n).freeze()));
            }
            let Some(&b) = buf.first() else {
                return Ok(Step::NeedMore);
            };
            buf.advance(1);
            self.state = match (self.state, b) {
                (Size, b) if b.is_ascii_hexdigit() => {
                    if self.digits == 16 {
                        return Err(H1Error::Invalid("chunk size too large"));
                    }
                    self.digits += 1;
                    let d = (b as char).to_digit(16).unwrap_or(0);
                    self.size = self.size << 4 | u64::from(d);
                    Size
                }
                (Size, b'\r') if self.digits > 0 => SizeLf,
                (Size, b' ' | b'\t' | b';') if self.digits > 0 => SizeRest,
                (Size, _) => return Err(H1Error::Invalid("bad chunk size")),
                (SizeRest, b'\r') => SizeLf,
                (SizeRest, b'\n') => return Err(H1Error::Invalid("bare LF in a chunk size line")),
                (SizeRest, _) => {
                    self.line += 1;
                    if self.line > MAX_CHUNK_LINE {
                        return Err(H1Error::Invalid("chunk extensions too long"));
                    }
                    SizeRest
                }
                (SizeLf, b'\n') => {
                    self.line = 0;
                    self.digits = 0;
                    if self.size == 0 { TrailerStart } else { Data }
                }
                (DataCr, b'\r') => DataLf,
                (DataLf, b'\n') => Size,
                (TrailerStart, b'\r') => EndLf,
                (EndLf, b'\n') => Done,
                (Trailer, b'\r') => TrailerLf,
                (TrailerStart | Trailer, b'\n') => {
                    return Err(H1Error::Invalid("bare LF in the trailers"));
                }
                (TrailerStart | Trailer, _) => {
                    self.line += 1;
                    if self.line > MAX_TRAILERS {
                        return Err(H1Error::Invalid("trailers too long"));
                    }
                    Trailer
                }
                (TrailerLf, b'\n') => TrailerStart,
                _ => return Err(H1Error::Invalid("bad chunked framing")),
            };
        }
    }
}

/// A response body read from its connection. When it has ended and the connection may carry
/// another request, [`Body::reusable`] gives the connection back.
pub struct Body {
    conn: Option<Box<Conn>>,
    framing: Framing,
    keep_alive: bool,
    /// The body has ended (every byte given out).
    ended: bool,
}

impl Body {
    /// A body to read from `conn` as `framing` says. A body already whole in the buffer ends
    /// here, so its connection can go back before anyone polls it: see [`Body::take_whole`].
    pub fn new(conn: Box<Conn>, framing: Framing, keep_alive: bool) -> Self {
        Self {
            conn: Some(conn),
            framing,
            keep_alive,
            ended: false,
        }
    }

    /// The whole body when the connection's buffer already holds it (the common small
    /// answer), leaving this body ended.
    pub fn take_whole(&mut self) -> Option<Bytes> {
        let Framing::Length(n) = self.framing else {
            return None;
        };
        let conn = self.conn.as_mut()?;
        if (conn.buf.len() as u64) < n {
            return None;
        }
        self.framing = Framing::Length(0);
        self.ended = true;
        Some(conn.buf.split_to(n as usize).freeze())
    }

    /// The connection, once the body has ended, when it can carry another request.
    pub fn reusable(&mut self) -> Option<Box<Conn>> {
        if !(self.ended && self.keep_alive) {
            return None;
        }
        let conn = self.conn.take()?;
        // Bytes past the response: the backend said more than it was asked.
        conn.buf.is_empty().then_some(conn)
    }

    pub fn is_end_stream(&self) -> bool {
        self.ended || matches!(self.framing, Framing::Length(0))
    }

    pub fn size_hint(&self) -> http_body::SizeHint {
        match self.framing {
            Framing::Length(n) => http_body::SizeHint::with_exact(n),
            _ => http_body::SizeHint::default(),
        }
    }

    pub fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, H1Error>>> {
        loop {
            if self.ended {
                return Poll::Ready(None);
            }
            let Some(conn) = self.conn.as_mut() else {
                return Poll::Ready(None);
            };
            let step = match &mut self.framing {
                Framing::Length(0) => Step::End,
                Framing::Length(left) => {
                    if conn.buf.is_empty() {
                        Step::NeedMore
                    } else {
                        let n = (*left).min(conn.buf.len() as u64);
                        *left -= n;
                        Step::Data(conn.buf.split_to(n as usize).freeze())
                    }
                }
                Framing::Chunked(decoder) => match decoder.step(&mut conn.buf) {
                    Ok(step) => step,
                    Err(e) => {
                        self.conn = None;
                        return Poll::Ready(Some(Err(e)));
                    }
                },
                Framing::Close if conn.buf.is_empty() => Step::NeedMore,
                Framing::Close => Step::Data(conn.buf.split().freeze()),
            };
            match step {
                Step::Data(bytes) => {
                    if matches!(self.framing, Framing::Length(0)) {
                        self.ended = true;
                    }
                    return Poll::Ready(Some(Ok(Frame::data(bytes))));
                }
                Step::End => {
                    self.ended = true;
                    return Poll::Ready(None);
                }
                Step::NeedMore => match conn.poll_fill(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(0)) => {
                        if matches!(self.framing, Framing::Close) {
                            self.ended = true;
                            self.conn = None;
                            return Poll::Ready(None);
                        }
                        self.conn = None;
                        return Poll::Ready(Some(Err(H1Error::Truncated)));
                    }
                    Poll::Ready(Ok(_)) => {}
                    Poll::Ready(Err(e)) => {
                        self.conn = None;
                        return Poll::Ready(Some(Err(e.into())));
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests;
