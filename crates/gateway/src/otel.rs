//! OpenTelemetry traces of gateway requests, exported over OTLP/HTTP (issue #5).
//!
//! Tracing is off unless an OTLP endpoint is configured. The proxy holds an `Option<Tracing>`
//! and calls nothing here when it is `None`, so tracing costs nothing when off: no global
//! subscriber, no layer, no per-request check beyond that `Option`.
//!
//! When on, each request gets a [`RequestTrace`]: a server span "gateway request" that
//! continues an incoming W3C `traceparent`, internal child spans for the policy sections and a
//! client span "forward-request" for the backend call, whose context is what the backend
//! receives as its own `traceparent`.
//!
//! **Threads.** Spans end on the request threads into the SDK's `BatchSpanProcessor`, which
//! queues them in a bounded channel (no lock, no Tokio) and exports batches from a dedicated
//! thread of its own. The OTLP exporter's HTTP client is reqwest's async client, which needs a
//! Tokio reactor, and that thread has none: the processor merely calls
//! `futures_executor::block_on` on the export. So the exporter is wrapped in [`OnOwnRuntime`],
//! which runs each export on a small current-thread runtime that it owns, on the processor's
//! thread. The workers' runtimes are never used for export and no further thread is started.
//!
//! **Sampling follows the caller.** A `traceparent` whose sampled flag is off is continued (the
//! backend gets the same trace id, our span id and flag `00`) but nothing is recorded or
//! exported, as W3C Trace Context and OpenTelemetry's parent-based sampler expect. A request
//! without a valid `traceparent` starts a new, sampled trace.
//!
//! **What goes into spans** is only what the caller sets with [`RequestTrace::set_attribute`]:
//! this module never copies a header, a query string or a key into a span.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue};
use opentelemetry::trace::{
    Span as _, SpanBuilder, SpanContext, SpanId, SpanKind, Status, TraceContextExt as _,
    TraceFlags, TraceId, TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, InstrumentationScope, KeyValue, Value};
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider, Span as SdkSpan,
    SpanData, SpanExporter,
};

/// The name of the server span that covers a whole request.
pub const REQUEST_SPAN: &str = "gateway request";
/// The name of the child span of the backend call; it alone is of kind `Client`.
pub const BACKEND_CALL: &str = "forward-request";

/// How long one export may take, retries included.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long [`Tracing::shutdown`] waits for the last export.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// How often buffered spans are sent when fewer than a batch are waiting.
const EXPORT_INTERVAL: Duration = Duration::from_secs(1);
/// Spans buffered before new ones are dropped (the SDK counts and logs drops).
const QUEUE_SIZE: usize = 8192;
const BATCH_SIZE: usize = 512;

/// Where and as whom traces are sent.
#[derive(Debug, Clone)]
pub struct OtlpSettings {
    /// The collector's OTLP/HTTP base URL, e.g. `http://127.0.0.1:4318`; traces go to
    /// `{endpoint}/v1/traces`. A URL that already ends in `/v1/traces` is used as it is.
    pub endpoint: String,
    /// `service.name` of the resource.
    pub service_name: String,
    /// `gatehouse.gateway.id` of the resource.
    pub gateway_id: String,
    /// `service.instance.id` of the resource.
    pub instance: String,
}

/// The URL traces are POSTed to for a configured OTLP endpoint, or why the endpoint is not
/// usable (one sentence that says what to write instead).
pub fn traces_url(endpoint: &str) -> Result<String, String> {
    let endpoint = endpoint.trim();
    let hint = "give the collector's OTLP/HTTP base URL, such as http://127.0.0.1:4318 (traces are sent to /v1/traces under it)";
    let uri: http::Uri = endpoint
        .parse()
        .map_err(|_| format!("the OTLP endpoint '{endpoint}' is not a URL; {hint}"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(format!(
            "the OTLP endpoint '{endpoint}' must start with http:// or https://; {hint}"
        ));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!(
            "the OTLP endpoint '{endpoint}' names no host; {hint}"
        ));
    }
    if uri.query().is_some() {
        return Err(format!(
            "the OTLP endpoint '{endpoint}' must not have a query string; {hint}"
        ));
    }
    let base = endpoint.trim_end_matches('/');
    Ok(if base.ends_with("/v1/traces") {
        base.to_owned()
    } else {
        format!("{base}/v1/traces")
    })
}

/// A running trace pipeline: the SDK provider with its batch processor and exporter. Cheap to
/// clone; every clone feeds the same pipeline.
#[derive(Clone)]
pub struct Tracing {
    inner: Arc<Inner>,
}

struct Inner {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    traces_url: String,
}

impl fmt::Debug for Tracing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracing")
            .field("traces_url", &self.inner.traces_url)
            .finish_non_exhaustive()
    }
}

impl Tracing {
    /// Starts the pipeline. Needs no Tokio runtime and may be called from inside one. Nothing
    /// is sent until spans end, so an unreachable collector is not an error here: failed
    /// exports are logged by the SDK and the spans are dropped.
    pub fn start(settings: &OtlpSettings) -> Result<Tracing, String> {
        let traces_url = traces_url(&settings.endpoint)?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(traces_url.clone())
            .with_protocol(Protocol::HttpBinary)
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot set up trace export to {traces_url}: {e}"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the runtime of the trace exporter: {e}"))?;
        let processor = BatchSpanProcessor::builder(OnOwnRuntime { exporter, runtime })
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_max_queue_size(QUEUE_SIZE)
                    .with_max_export_batch_size(BATCH_SIZE)
                    .with_scheduled_delay(EXPORT_INTERVAL)
                    .build(),
            )
            .build();
        let resource = Resource::builder()
            .with_service_name(settings.service_name.clone())
            .with_attributes([
                KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
                KeyValue::new("service.instance.id", settings.instance.clone()),
                KeyValue::new("gatehouse.gateway.id", settings.gateway_id.clone()),
            ])
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
            .with_resource(resource)
            .build();
        let tracer = provider.tracer_with_scope(
            InstrumentationScope::builder("gatehouse-gateway")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
        );
        Ok(Tracing {
            inner: Arc::new(Inner {
                provider,
                tracer,
                traces_url,
            }),
        })
    }

    /// The URL spans are sent to.
    pub fn traces_url(&self) -> &str {
        &self.inner.traces_url
    }

    /// Starts the request span now. It continues the trace of a valid incoming `traceparent`
    /// (and keeps its `tracestate`), else starts a new trace.
    pub fn begin(&self, incoming: &HeaderMap) -> RequestTrace {
        let parent = match incoming_context(incoming) {
            Some(remote) => Context::new().with_remote_span_context(remote),
            None => Context::new(),
        };
        let request = self.inner.tracer.build_with_context(
            SpanBuilder {
                name: Cow::Borrowed(REQUEST_SPAN),
                span_kind: Some(SpanKind::Server),
                start_time: Some(SystemTime::now()),
                ..SpanBuilder::default()
            },
            &parent,
        );
        RequestTrace {
            children: Vec::new(),
            request,
            tracer: self.inner.tracer.clone(),
        }
    }

    /// Sends what is buffered and stops the pipeline, waiting at most 5 seconds. It blocks the
    /// calling thread meanwhile (the export runs on the pipeline's own thread, so this cannot
    /// deadlock on the caller's runtime). Spans ended afterwards are dropped. Idempotent.
    pub fn shutdown(&self) {
        match self.inner.provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
            Ok(()) | Err(OTelSdkError::AlreadyShutdown) => {}
            Err(e) => tracing::warn!(
                endpoint = %self.inner.traces_url,
                "buffered trace spans could not all be sent before shutdown: {e}"
            ),
        }
    }
}

/// The spans of one request. Child spans are numbered in the order they start.
///
/// Dropping a `RequestTrace` without [`finish`](Self::finish) (a request cancelled halfway)
/// still ends and exports its spans as they are, without a status code.
pub struct RequestTrace {
    // Declared before `request` so that, on drop, children end before their parent.
    children: Vec<SdkSpan>,
    request: SdkSpan,
    tracer: SdkTracer,
}

impl fmt::Debug for RequestTrace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let context = self.request.span_context();
        f.debug_struct("RequestTrace")
            .field("trace_id", &context.trace_id())
            .field("span_id", &context.span_id())
            .field("sampled", &context.is_sampled())
            .field("children", &self.children.len())
            .finish()
    }
}

impl RequestTrace {
    /// The trace id, as 32 lowercase hex digits (for access logs).
    pub fn trace_id_hex(&self) -> String {
        self.request.span_context().trace_id().to_string()
    }

    /// Whether this trace is recorded and exported (false when the caller's `traceparent` said
    /// not sampled).
    pub fn is_sampled(&self) -> bool {
        self.request.span_context().is_sampled()
    }

    /// Starts a child span of the request span now and returns its number. The span named
    /// [`BACKEND_CALL`] is of kind `Client`, every other one `Internal`.
    pub fn child(&mut self, name: &'static str) -> usize {
        let parent = self.request.span_context().clone();
        self.start(parent, name)
    }

    /// Starts a span under child `parent` now (the backend call inside the "backend"
    /// section). An unknown `parent` makes it a child of the request span.
    pub fn child_under(&mut self, parent: usize, name: &'static str) -> usize {
        let parent = self
            .children
            .get(parent)
            .unwrap_or(&self.request)
            .span_context()
            .clone();
        self.start(parent, name)
    }

    fn start(&mut self, parent: SpanContext, name: &'static str) -> usize {
        let kind = if name == BACKEND_CALL {
            SpanKind::Client
        } else {
            SpanKind::Internal
        };
        let span = self.tracer.build_with_context(
            SpanBuilder {
                name: Cow::Borrowed(name),
                span_kind: Some(kind),
                start_time: Some(SystemTime::now()),
                ..SpanBuilder::default()
            },
            &Context::new().with_remote_span_context(parent),
        );
        self.children.push(span);
        self.children.len() - 1
    }

    /// Ends child span `child` now. Ending it again, or an unknown child, does nothing.
    pub fn end(&mut self, child: usize) {
        if let Some(span) = self.children.get_mut(child) {
            span.end_with_timestamp(SystemTime::now());
        }
    }

    /// Sets an attribute on child span `child`, or on the request span for `None`. An
    /// attribute set on a span that has ended is dropped. Pass only what is safe to show:
    /// never a subscription key, an `Authorization` header or any other header value.
    pub fn set_attribute(
        &mut self,
        child: Option<usize>,
        key: &'static str,
        value: impl Into<Value>,
    ) {
        let span = match child {
            None => Some(&mut self.request),
            Some(i) => self.children.get_mut(i),
        };
        if let Some(span) = span {
            span.set_attribute(KeyValue::new(key, value));
        }
    }

    /// Adds an event (a `trace` policy's message) to child span `child`, or to the request
    /// span for `None`, at the present time.
    pub fn add_event(&mut self, child: Option<usize>, name: String, attributes: Vec<KeyValue>) {
        let span = match child {
            None => Some(&mut self.request),
            Some(i) => self.children.get_mut(i),
        };
        if let Some(span) = span {
            span.add_event(name, attributes);
        }
    }

    /// The W3C `traceparent` that names child span `child` as the parent (the request span
    /// for an unknown child): what the backend receives.
    pub fn traceparent(&self, child: usize) -> HeaderValue {
        let span = self.children.get(child).unwrap_or(&self.request);
        format_traceparent(span.span_context())
    }

    /// Ends the open child spans and the request span now, with `http.response.status_code`
    /// and, for a 5xx status, `error.type` and an Error status, as the HTTP semantic
    /// conventions for servers say; the SDK then exports them in the next batch. The
    /// `Tracing` names the pipeline the spans go to (they were bound to it by `begin`).
    pub fn finish(self, _tracing: &Tracing, status: u16) {
        let RequestTrace {
            children,
            mut request,
            ..
        } = self;
        let now = SystemTime::now();
        for mut child in children {
            child.end_with_timestamp(now);
        }
        request.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
        if status >= 500 {
            request.set_attribute(KeyValue::new("error.type", status.to_string()));
            request.set_status(Status::error(""));
        }
        request.end_with_timestamp(now);
    }
}

/// The remote parent named by the request's `traceparent` (and `tracestate`), if exactly one
/// valid `traceparent` came.
fn incoming_context(headers: &HeaderMap) -> Option<SpanContext> {
    let mut values = headers.get_all("traceparent").iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let (trace_id, span_id, flags) = parse_traceparent(value.to_str().ok()?)?;
    let state = if headers.contains_key("tracestate") {
        let joined = headers
            .get_all("tracestate")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(",");
        joined.parse().unwrap_or_default()
    } else {
        TraceState::default()
    };
    Some(SpanContext::new(trace_id, span_id, flags, true, state))
}

/// Parses a W3C `traceparent` value: `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`.
/// Hex must be lowercase and neither id all zeros. Version `ff` is invalid; a later version is
/// read as far as version 00 goes, as the W3C recommendation asks. Only the sampled flag is
/// kept.
fn parse_traceparent(value: &str) -> Option<(TraceId, SpanId, TraceFlags)> {
    let value = value.trim();
    let bytes = value.as_bytes();
    if !value.is_ascii() || bytes.len() < 55 {
        return None;
    }
    let field = |from: usize, to: usize| {
        let text = &value[from..to];
        text.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
            .then_some(text)
    };
    let version = field(0, 2)?;
    if version == "ff" || (version == "00" && bytes.len() != 55) {
        return None;
    }
    if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
        return None;
    }
    if bytes.len() > 55 && bytes[55] != b'-' {
        return None;
    }
    let trace_id = TraceId::from_hex(field(3, 35)?).ok()?;
    let span_id = SpanId::from_hex(field(36, 52)?).ok()?;
    let flags = u8::from_str_radix(field(53, 55)?, 16).ok()?;
    if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
        return None;
    }
    Some((trace_id, span_id, TraceFlags::new(flags & 1)))
}

fn format_traceparent(context: &SpanContext) -> HeaderValue {
    let text = format!(
        "00-{}-{}-{:02x}",
        context.trace_id(),
        context.span_id(),
        context.trace_flags().to_u8() & 1
    );
    // Cannot fail: the text is ASCII digits, letters and dashes.
    HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static(
        "00-00000000000000000000000000000000-0000000000000000-00",
    ))
}

/// The OTLP exporter, driven on a current-thread runtime of its own.
///
/// The batch processor calls `export` on its dedicated thread, outside any runtime, and only
/// `block_on`s the future with a plain executor; reqwest's async client would find no reactor
/// there. Running the export to completion on this runtime before returning gives it one,
/// without touching the gateway's worker runtimes and without another thread.
#[derive(Debug)]
struct OnOwnRuntime {
    exporter: opentelemetry_otlp::SpanExporter,
    runtime: tokio::runtime::Runtime,
}

impl SpanExporter for OnOwnRuntime {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        // Blocking inside a runtime would panic; the batch processor never does that, but a
        // mistaken use elsewhere must not take a worker down.
        let result = if tokio::runtime::Handle::try_current().is_ok() {
            Err(OTelSdkError::InternalFailure(
                "the OTLP exporter was called on a Tokio runtime thread; it runs only on the batch processor's thread".into(),
            ))
        } else {
            self.runtime.block_on(self.exporter.export(batch))
        };
        std::future::ready(result)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.exporter.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.exporter.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.exporter.set_resource(resource);
    }
}

#[cfg(test)]
mod tests;
