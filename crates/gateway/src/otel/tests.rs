#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue as ProtoKeyValue, any_value};
use prost::Message;

use super::*;

const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[test]
fn parses_a_valid_traceparent() {
    let (trace, span, flags) = parse_traceparent(PARENT).unwrap();
    assert_eq!(trace.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(span.to_string(), "00f067aa0ba902b7");
    assert!(flags.is_sampled());

    let (_, _, flags) =
        parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
    assert!(!flags.is_sampled());
    // Unknown flag bits are not carried on; the sampled bit is.
    let (_, _, flags) =
        parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0b").unwrap();
    assert_eq!(flags, TraceFlags::SAMPLED);
}

#[test]
fn rejects_malformed_traceparents() {
    for bad in [
        "",
        "00",
        "garbage",
        // one digit short, one too many
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
        // uppercase hex, non-hex, a sign that from_str_radix would accept
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-+0f067aa0ba902b7-01",
        // wrong separators
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
        // not ASCII, of the right length in bytes
        "00-4bf92f3577b34da6a3ce929d0e0e47é-00f067aa0ba902b7-01",
    ] {
        assert!(parse_traceparent(bad).is_none(), "accepted {bad:?}");
    }
}

#[test]
fn rejects_all_zero_ids() {
    assert!(parse_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none());
    assert!(parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01").is_none());
}

#[test]
fn versions() {
    // ff is forbidden by the recommendation.
    assert!(parse_traceparent("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").is_none());
    // A later version is read as far as version 00 goes, and may carry more fields…
    assert!(parse_traceparent("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").is_some());
    assert!(
        parse_traceparent("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the")
            .is_some()
    );
    // …after a dash only.
    assert!(
        parse_traceparent("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x").is_none()
    );
    // The version itself must be two lowercase hex digits.
    assert!(parse_traceparent("0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").is_none());
}

#[test]
fn incoming_context_needs_exactly_one_traceparent() {
    let mut headers = HeaderMap::new();
    assert!(incoming_context(&headers).is_none());

    headers.insert("traceparent", HeaderValue::from_static(PARENT));
    headers.append("tracestate", HeaderValue::from_static("congo=t61rcWkgMzE"));
    headers.append(
        "tracestate",
        HeaderValue::from_static("rojo=00f067aa0ba902b7"),
    );
    let context = incoming_context(&headers).unwrap();
    assert!(context.is_remote());
    assert!(context.is_sampled());
    assert_eq!(context.trace_state().get("rojo"), Some("00f067aa0ba902b7"));
    assert_eq!(context.trace_state().get("congo"), Some("t61rcWkgMzE"));

    headers.append("traceparent", HeaderValue::from_static(PARENT));
    assert!(incoming_context(&headers).is_none());
}

#[test]
fn formats_a_traceparent_that_parses_back() {
    let context = SpanContext::new(
        TraceId::from(0x0af7651916cd43dd8448eb211c80319c),
        SpanId::from(0xb7ad6b7169203331),
        TraceFlags::SAMPLED,
        false,
        TraceState::default(),
    );
    let value = format_traceparent(&context);
    assert_eq!(
        value.to_str().unwrap(),
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    );
    let (trace, span, flags) = parse_traceparent(value.to_str().unwrap()).unwrap();
    assert_eq!(
        (trace, span, flags),
        (context.trace_id(), context.span_id(), TraceFlags::SAMPLED)
    );
}

#[test]
fn endpoints() {
    assert_eq!(
        traces_url("http://127.0.0.1:4318").unwrap(),
        "http://127.0.0.1:4318/v1/traces"
    );
    assert_eq!(
        traces_url(" https://otel.example.com/ ").unwrap(),
        "https://otel.example.com/v1/traces"
    );
    assert_eq!(
        traces_url("http://collector:4318/otlp").unwrap(),
        "http://collector:4318/otlp/v1/traces"
    );
    assert_eq!(
        traces_url("http://collector:4318/v1/traces").unwrap(),
        "http://collector:4318/v1/traces"
    );
    for (bad, says) in [
        ("localhost:4318", "must start with http:// or https://"),
        ("ftp://collector", "must start with http:// or https://"),
        ("http://", "is not a URL"),
        ("not a url", "is not a URL"),
        ("http://collector:4318/?x=1", "query string"),
    ] {
        let error = traces_url(bad).unwrap_err();
        assert!(error.contains(says), "{bad}: {error}");
        assert!(error.contains("http://127.0.0.1:4318"), "{bad}: {error}");
    }
    let error = Tracing::start(&settings("collector:4318")).unwrap_err();
    assert!(error.contains("http://"), "{error}");
}

fn settings(endpoint: &str) -> OtlpSettings {
    OtlpSettings {
        endpoint: endpoint.to_owned(),
        service_name: "gatehouse-test".into(),
        gateway_id: "gw-1".into(),
        instance: "node-a".into(),
    }
}

/// A span as the receiver got it.
#[derive(Debug, Clone)]
struct Got {
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    kind: i32,
    start: u64,
    end: u64,
    attributes: BTreeMap<String, String>,
    status_code: i32,
    resource: BTreeMap<String, String>,
}

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn map(attributes: &[ProtoKeyValue]) -> BTreeMap<String, String> {
    attributes
        .iter()
        .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An OTLP/HTTP receiver on its own thread and runtime, so that a test thread blocked in
/// `shutdown` cannot starve it.
struct Receiver {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<Got>>>,
    requests: Arc<Mutex<Vec<(String, String)>>>,
}

impl Receiver {
    fn start() -> Self {
        let spans: Arc<Mutex<Vec<Got>>> = Arc::default();
        let requests: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (spans_in, requests_in) = (spans.clone(), requests.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let (stream, _) = listener.accept().await.unwrap();
                    let (spans, requests) = (spans_in.clone(), requests_in.clone());
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            receive(spans.clone(), requests.clone(), req)
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        });
        Self {
            addr,
            spans,
            requests,
        }
    }

    fn spans(&self) -> Vec<Got> {
        self.spans.lock().unwrap().clone()
    }
}

async fn receive(
    spans: Arc<Mutex<Vec<Got>>>,
    requests: Arc<Mutex<Vec<(String, String)>>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    requests.lock().unwrap().push((path, content_type));
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let export = ExportTraceServiceRequest::decode(body).unwrap();
    let mut got = spans.lock().unwrap();
    for resource_spans in export.resource_spans {
        let resource = resource_spans
            .resource
            .map(|r| map(&r.attributes))
            .unwrap_or_default();
        for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
            got.push(Got {
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_span_id: hex(&span.parent_span_id),
                name: span.name,
                kind: span.kind,
                start: span.start_time_unix_nano,
                end: span.end_time_unix_nano,
                attributes: map(&span.attributes),
                status_code: span.status.map_or(0, |s| s.code),
                resource: resource.clone(),
            });
        }
    }
    Ok(Response::new(Full::new(Bytes::new())))
}

const INTERNAL: i32 = 1;
const SERVER: i32 = 2;
const CLIENT: i32 = 3;
const STATUS_UNSET: i32 = 0;
const STATUS_ERROR: i32 = 2;

fn one<'a>(spans: &'a [Got], trace_id: &str, name: &str) -> &'a Got {
    let found: Vec<_> = spans
        .iter()
        .filter(|s| s.trace_id == trace_id && s.name == name)
        .collect();
    assert_eq!(found.len(), 1, "{name} in {spans:#?}");
    found[0]
}

/// The whole module against a real OTLP/HTTP receiver, driven from a current-thread runtime
/// as a gateway worker drives it.
#[test]
fn exports_request_spans_with_their_parents_over_otlp_http() {
    let receiver = Receiver::start();
    let tracing = Tracing::start(&settings(&format!("http://{}", receiver.addr))).unwrap();
    assert_eq!(
        tracing.traces_url(),
        format!("http://{}/v1/traces", receiver.addr)
    );

    let worker = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (sampled, failed, unsampled_traceparent, unsampled_trace) = worker.block_on(async {
        // A request that continues the caller's trace.
        let mut incoming = HeaderMap::new();
        incoming.insert("traceparent", HeaderValue::from_static(PARENT));
        incoming.insert("authorization", HeaderValue::from_static("Bearer secret"));
        incoming.insert(
            "ocp-apim-subscription-key",
            HeaderValue::from_static("key-123"),
        );
        let mut trace = tracing.begin(&incoming);
        assert!(trace.is_sampled());
        assert_eq!(trace.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        trace.set_attribute(None, "http.request.method", "GET");
        trace.set_attribute(None, "url.path", "/echo/items/7");
        trace.set_attribute(None, "gatehouse.api.id", "echo");
        trace.set_attribute(None, "gatehouse.operation.id", "get-item");
        trace.set_attribute(None, "gatehouse.product.id", "starter");
        trace.set_attribute(None, "gatehouse.gateway.id", "gw-1");
        let inbound = trace.child("inbound");
        trace.set_attribute(Some(inbound), "gatehouse.policies", 2_i64);
        tokio::time::sleep(Duration::from_millis(2)).await;
        trace.end(inbound);
        trace.end(inbound); // idempotent
        let backend = trace.child("backend");
        let call = trace.child_under(backend, BACKEND_CALL);
        let sent = trace.traceparent(call);
        tokio::time::sleep(Duration::from_millis(20)).await;
        trace.set_attribute(Some(call), "http.response.status_code", 200_i64);
        trace.end(call);
        trace.end(backend);
        let _outbound = trace.child("outbound"); // left open: finish ends it
        trace.finish(&tracing, 200);

        // A request without a traceparent that fails.
        let mut trace = tracing.begin(&HeaderMap::new());
        let failed = trace.trace_id_hex();
        let on_error = trace.child("on-error");
        trace.end(on_error);
        trace.finish(&tracing, 503);

        // A caller that does not sample: propagated, not exported.
        let mut incoming = HeaderMap::new();
        incoming.insert(
            "traceparent",
            HeaderValue::from_static("00-11111111111111111111111111111111-2222222222222222-00"),
        );
        let mut trace = tracing.begin(&incoming);
        assert!(!trace.is_sampled());
        let backend = trace.child("backend");
        let call = trace.child_under(backend, BACKEND_CALL);
        let unsampled = trace.traceparent(call);
        let unsampled_trace = trace.trace_id_hex();
        trace.finish(&tracing, 200);

        // Shutting down from inside a worker runtime must not deadlock.
        tracing.shutdown();
        tracing.shutdown();
        (sent, failed, unsampled, unsampled_trace)
    });

    let spans = receiver.spans();
    let requests = receiver.requests.lock().unwrap().clone();
    assert!(!requests.is_empty());
    for (path, content_type) in &requests {
        assert_eq!(path, "/v1/traces");
        assert_eq!(content_type, "application/x-protobuf");
    }

    // The continued trace: one trace id, the caller's span as the parent of ours.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    assert_eq!(spans.iter().filter(|s| s.trace_id == trace_id).count(), 5);
    let request = one(&spans, trace_id, REQUEST_SPAN);
    let inbound = one(&spans, trace_id, "inbound");
    let backend = one(&spans, trace_id, "backend");
    let call = one(&spans, trace_id, BACKEND_CALL);
    let outbound = one(&spans, trace_id, "outbound");
    assert_eq!(request.parent_span_id, "00f067aa0ba902b7");
    assert_eq!(request.kind, SERVER);
    for child in [inbound, backend, outbound] {
        assert_eq!(child.parent_span_id, request.span_id, "{}", child.name);
        assert_eq!(child.kind, INTERNAL, "{}", child.name);
    }
    assert_eq!(call.parent_span_id, backend.span_id);
    assert_eq!(call.kind, CLIENT);
    // The backend was told the backend call is its parent.
    assert_eq!(
        sampled.to_str().unwrap(),
        format!("00-{trace_id}-{}-01", call.span_id)
    );

    // Real, ordered timing.
    let order = [
        request.start,
        inbound.start,
        inbound.end,
        backend.start,
        call.start,
        call.end,
        backend.end,
        outbound.start,
        outbound.end,
        request.end,
    ];
    assert!(order.windows(2).all(|w| w[0] <= w[1]), "{order:?}");
    assert!(call.end - call.start >= 20_000_000, "{call:?}");
    assert!(inbound.end - inbound.start >= 2_000_000, "{inbound:?}");

    // Attributes: what the caller set, and nothing from the headers.
    let expected = [
        ("http.request.method", "GET"),
        ("url.path", "/echo/items/7"),
        ("http.response.status_code", "200"),
        ("gatehouse.api.id", "echo"),
        ("gatehouse.operation.id", "get-item"),
        ("gatehouse.product.id", "starter"),
        ("gatehouse.gateway.id", "gw-1"),
    ];
    let expected: BTreeMap<String, String> = expected
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(request.attributes, expected);
    assert_eq!(request.status_code, STATUS_UNSET);
    assert_eq!(inbound.attributes["gatehouse.policies"], "2");
    assert_eq!(call.attributes["http.response.status_code"], "200");
    let everything = format!("{spans:?}");
    assert!(!everything.contains("secret") && !everything.contains("key-123"));

    // The resource names the gateway.
    assert_eq!(request.resource["service.name"], "gatehouse-test");
    assert_eq!(request.resource["service.instance.id"], "node-a");
    assert_eq!(request.resource["gatehouse.gateway.id"], "gw-1");

    // The failed request: a new trace, a root span, an error.
    assert_eq!(failed.len(), 32);
    assert!(
        failed
            .bytes()
            .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
    );
    assert_ne!(failed, "0".repeat(32));
    let failed_request = one(&spans, &failed, REQUEST_SPAN);
    assert_eq!(failed_request.parent_span_id, "");
    assert_eq!(failed_request.status_code, STATUS_ERROR);
    assert_eq!(
        failed_request.attributes["http.response.status_code"],
        "503"
    );
    assert_eq!(failed_request.attributes["error.type"], "503");
    assert_eq!(
        one(&spans, &failed, "on-error").parent_span_id,
        failed_request.span_id
    );

    // Not sampled: the trace goes on to the backend with flag 00, and nothing is exported.
    assert_eq!(unsampled_trace, "11111111111111111111111111111111");
    let unsampled = unsampled_traceparent.to_str().unwrap();
    assert!(
        unsampled.starts_with("00-11111111111111111111111111111111-") && unsampled.ends_with("-00"),
        "{unsampled}"
    );
    assert!(!unsampled.contains("2222222222222222"), "{unsampled}");
    assert!(spans.iter().all(|s| s.trace_id != unsampled_trace));
    assert_eq!(spans.len(), 7);
}

/// A collector that accepts connections and never answers must not hold shutdown for more
/// than its bound.
#[test]
fn shutdown_is_bounded_when_the_collector_hangs() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let held = std::thread::spawn(move || {
        let mut open = Vec::new();
        while let Ok((stream, _)) = listener.accept() {
            open.push(stream);
        }
    });
    let tracing = Tracing::start(&settings(&format!("http://{addr}"))).unwrap();
    let trace = tracing.begin(&HeaderMap::new());
    trace.finish(&tracing, 200);
    let started = Instant::now();
    tracing.shutdown();
    let took = started.elapsed();
    assert!(
        took <= Duration::from_millis(5500),
        "shutdown took {took:?}"
    );
    drop(held);
}

/// The proxy keeps a `Tracing` in shared state and may hold a `RequestTrace` across awaits.
#[test]
fn handles_can_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Tracing>();
    send_sync::<RequestTrace>();
}
