//! The stand-in OTLP/HTTP collector of `support`, checked against the gateway's own trace
//! pipeline in process (no proxy involved), so that trace tests through the gateway can rely
//! on what it decodes.

use std::time::Duration;

use gatehouse_gateway::otel::{BACKEND_CALL, OtlpSettings, REQUEST_SPAN, Tracing};

use crate::support::OtlpReceiver;

#[tokio::test]
async fn otlp_receiver_decodes_what_the_gateway_exports() {
    let receiver = OtlpReceiver::start().await;
    let tracing = Tracing::start(&OtlpSettings {
        endpoint: receiver.url(),
        service_name: "gatehouse".into(),
        gateway_id: "built-in".into(),
        instance: "e2e".into(),
    })
    .unwrap();

    let mut trace = tracing.begin(&hyper::HeaderMap::new());
    let trace_id = trace.trace_id_hex();
    trace.set_attribute(None, "http.request.method", "POST");
    let backend = trace.child("backend");
    let call = trace.child_under(backend, BACKEND_CALL);
    let traceparent = trace.traceparent(call);
    trace.end(call);
    trace.end(backend);
    trace.finish(&tracing, 502);

    // Spans arrive in batches about once a second; no shutdown needed to see them.
    let spans = receiver
        .wait_for(Duration::from_secs(10), |s| s.len() >= 3)
        .await;
    let tracing_off = tracing.clone();
    tokio::task::spawn_blocking(move || tracing_off.shutdown())
        .await
        .unwrap();

    assert_eq!(spans.len(), 3, "{spans:#?}");
    assert_eq!(receiver.trace(&trace_id).len(), 3);
    let named = |name: &str| spans.iter().find(|s| s.name == name).unwrap().clone();
    let (request, backend, call) = (named(REQUEST_SPAN), named("backend"), named(BACKEND_CALL));
    assert_eq!(request.kind, "server");
    assert_eq!(request.parent_span_id, "");
    assert_eq!(request.status, "error");
    assert_eq!(request.attributes["http.request.method"], "POST");
    assert_eq!(request.attributes["http.response.status_code"], "502");
    assert_eq!(request.resource["service.name"], "gatehouse");
    assert_eq!(request.resource["service.instance.id"], "e2e");
    assert_eq!(request.resource["gatehouse.gateway.id"], "built-in");
    assert_eq!(backend.kind, "internal");
    assert_eq!(backend.parent_span_id, request.span_id);
    assert_eq!(call.kind, "client");
    assert_eq!(call.parent_span_id, backend.span_id);
    assert!(request.start <= call.start && call.end <= request.end);
    assert_eq!(
        traceparent.to_str().unwrap(),
        format!("00-{trace_id}-{}-01", call.span_id)
    );
}
