//! What the gateway records about each request, once, when its response is done: Prometheus
//! metrics, the access log line, and the per-minute aggregates and samples it uploads.
//!
//! Every worker thread owns a [`WorkerTelemetry`]. A request's [`Record`] travels with the
//! response body ([`ObservedBody`]) and is folded into its worker's state when the last byte
//! has gone out (or the client went away). The worker's lock is taken only by that worker and,
//! briefly, by a scrape, the log flusher or the uploader: no lock is shared between workers on
//! the hot path.

use std::borrow::Cow;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Method, Uri};
use http_body::{Body as HttpBody, Frame, SizeHint};
use rustc_hash::FxHashMap;

use gatehouse_model::telemetry::{Aggregate, Outcome, Sample};

use crate::proxy::ResponseBody as Body;

/// How requests are logged on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccessLog {
    /// One JSON object per line.
    #[default]
    Json,
    /// One human-readable line, like a web server's access log.
    Text,
    Off,
}

impl std::str::FromStr for AccessLog {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "json" => Ok(Self::Json),
            "text" => Ok(Self::Text),
            "off" => Ok(Self::Off),
            other => Err(format!(
                "access log format '{other}' is unknown; use json, text or off"
            )),
        }
    }
}

#[derive(Debug, Clone)]
pub struct TelemetrySettings {
    pub access_log: AccessLog,
    /// Label request metrics with the subscription id too. Off by default: one series per
    /// subscription can be a great many.
    pub subscription_labels: bool,
    /// Request records each worker keeps for the upload between two flushes.
    pub samples_per_worker: usize,
    /// The gateway's location, a label on every request metric.
    pub location: String,
    /// OpenTelemetry traces, when an OTLP endpoint is configured.
    pub tracing: Option<crate::otel::Tracing>,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            access_log: AccessLog::Json,
            subscription_labels: false,
            samples_per_worker: 32,
            location: String::new(),
            tracing: None,
        }
    }
}

/// The telemetry of one gateway process: one part per worker.
#[derive(Debug)]
pub struct Telemetry {
    settings: TelemetrySettings,
    workers: Vec<Arc<WorkerTelemetry>>,
    /// Telemetry batches dropped because the spool was full.
    pub spool_dropped: AtomicU64,
    /// Batches waiting in the spool, and their bytes.
    pub spool_batches: AtomicU64,
    pub spool_bytes: AtomicU64,
    /// Batches delivered to the control plane.
    pub batches_sent: AtomicU64,
    /// Redis calls that failed or timed out (`--redis`).
    pub redis_errors: AtomicU64,
    /// The workers' upstream connections.
    pub upstream: Arc<crate::upstream::UpstreamGauges>,
    /// What `log-to-eventhub` sent and dropped, per logger.
    pub loggers: Arc<crate::loggers::LoggerStats>,
}

impl Telemetry {
    pub fn new(settings: TelemetrySettings, workers: usize) -> Arc<Self> {
        let upstream = Arc::new(crate::upstream::UpstreamGauges::default());
        let workers = (0..workers.max(1))
            .map(|i| {
                Arc::new(WorkerTelemetry {
                    state: Mutex::new(WorkerState {
                        rng: 0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1),
                        ..WorkerState::default()
                    }),
                    in_flight: AtomicI64::new(0),
                    access_log: settings.access_log,
                    subscription_labels: settings.subscription_labels,
                    samples: settings.samples_per_worker,
                    tracing: settings.tracing.clone(),
                    upstream: upstream.clone(),
                })
            })
            .collect();
        Arc::new(Self {
            settings,
            workers,
            spool_dropped: AtomicU64::new(0),
            spool_batches: AtomicU64::new(0),
            spool_bytes: AtomicU64::new(0),
            batches_sent: AtomicU64::new(0),
            redis_errors: AtomicU64::new(0),
            upstream,
            loggers: Arc::default(),
        })
    }

    pub fn settings(&self) -> &TelemetrySettings {
        &self.settings
    }

    /// The part of worker `index` (indices wrap around).
    pub fn worker(&self, index: usize) -> Arc<WorkerTelemetry> {
        self.workers[index % self.workers.len()].clone()
    }

    /// Writes every buffered access log line to stdout.
    pub fn flush_logs(&self) {
        let mut spares = vec![Vec::new(); self.workers.len()];
        self.flush_logs_with(&mut spares);
    }

    /// Writes the workers' buffered lines, swapping in the emptied buffers of the previous
    /// round (`spares`, one per worker), so that no buffer grows from empty again.
    fn flush_logs_with(&self, spares: &mut [Vec<u8>]) {
        for (w, spare) in self.workers.iter().zip(spares.iter_mut()) {
            std::mem::swap(&mut w.lock().log, spare);
            write_stdout(spare);
            spare.clear();
        }
    }

    /// Flushes the access log every `every` on a thread of its own, for as long as the
    /// telemetry lives.
    pub fn spawn_log_flusher(self: &Arc<Self>, every: Duration) {
        if self.settings.access_log == AccessLog::Off {
            return;
        }
        let weak = Arc::downgrade(self);
        let mut spares = vec![Vec::new(); self.workers.len()];
        let _ = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                while let Some(t) = weak.upgrade() {
                    t.flush_logs_with(&mut spares);
                    drop(t);
                    std::thread::sleep(every);
                }
            });
    }

    /// Takes the per-minute aggregates and the samples every worker gathered since the last
    /// call, merged across workers.
    pub fn drain(&self) -> (Vec<Aggregate>, Vec<Sample>) {
        let mut merged: FxHashMap<MinuteKey, Aggregate> = FxHashMap::default();
        let mut samples = Vec::new();
        for w in &self.workers {
            let (minutes, mut taken) = {
                let mut s = w.lock();
                s.seen = 0;
                (
                    std::mem::take(&mut s.minutes),
                    std::mem::take(&mut s.samples),
                )
            };
            samples.append(&mut taken);
            for (key, agg) in minutes {
                match merged.entry(key) {
                    std::collections::hash_map::Entry::Occupied(mut e) => e.get_mut().merge(&agg),
                    std::collections::hash_map::Entry::Vacant(e) => {
                        e.insert(agg);
                    }
                }
            }
        }
        let mut aggregates: Vec<Aggregate> = merged.into_values().collect();
        aggregates.sort_by(|a, b| {
            (a.minute, &a.api_id, &a.operation_id).cmp(&(b.minute, &b.api_id, &b.operation_id))
        });
        samples.sort_by_key(|s| s.timestamp);
        (aggregates, samples)
    }

    /// Requests whose response has not finished yet.
    pub fn in_flight(&self) -> i64 {
        self.workers
            .iter()
            .map(|w| w.in_flight.load(Ordering::Relaxed))
            .sum()
    }

    /// The request metrics of all workers, merged by label set.
    pub(crate) fn request_metrics(&self) -> Vec<(MetricKey, RequestMetrics)> {
        let mut merged: FxHashMap<MetricKey, RequestMetrics> = FxHashMap::default();
        for w in &self.workers {
            let s = w.lock();
            for (k, m) in &s.metrics {
                merged.entry(k.clone()).or_default().merge(m);
            }
        }
        let mut all: Vec<_> = merged.into_iter().collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// The `emit-metric` series of all workers, merged.
    pub(crate) fn custom_metrics(&self) -> Vec<(CustomKey, CustomValue)> {
        let mut merged: FxHashMap<CustomKey, CustomValue> = FxHashMap::default();
        for w in &self.workers {
            let s = w.lock();
            for (k, v) in &s.custom {
                let m = merged.entry(k.clone()).or_default();
                m.sum += v.sum;
                m.count += v.count;
            }
        }
        let mut all: Vec<_> = merged.into_iter().collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

fn write_stdout(buf: &[u8]) {
    if buf.is_empty() {
        return;
    }
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(buf);
    let _ = out.flush();
}

/// One worker's share.
#[derive(Debug)]
pub struct WorkerTelemetry {
    state: Mutex<WorkerState>,
    in_flight: AtomicI64,
    access_log: AccessLog,
    subscription_labels: bool,
    samples: usize,
    tracing: Option<crate::otel::Tracing>,
    pub(crate) upstream: Arc<crate::upstream::UpstreamGauges>,
}

#[derive(Debug, Default)]
struct WorkerState {
    metrics: FxHashMap<MetricKey, RequestMetrics>,
    minutes: FxHashMap<MinuteKey, Aggregate>,
    custom: FxHashMap<CustomKey, CustomValue>,
    samples: Vec<Sample>,
    /// Requests offered to the sample since the last drain (reservoir sampling).
    seen: u64,
    rng: u64,
    log: Vec<u8>,
}

/// Beyond this many buffered bytes a worker writes its log lines itself instead of waiting
/// for the flusher thread, which normally does all the writing: a bound on memory when stdout
/// is slower than the traffic, not the usual path.
const LOG_BUFFER: usize = 4 * 1024 * 1024;

impl WorkerTelemetry {
    fn lock(&self) -> MutexGuard<'_, WorkerState> {
        // A panic while holding the lock leaves plain counters behind: still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the record of a request that just arrived, and its trace when tracing is on.
    pub fn begin(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &http::HeaderMap,
        client: &Arc<str>,
        request_id: &HeaderValue,
    ) -> Record {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        // Boxed: a trace is large and most gateways run without one; every request's record
        // is moved several times on its way.
        let trace = self.tracing.as_ref().map(|t| Box::new(t.begin(headers)));
        Record {
            trace_id: trace
                .as_deref()
                .map(crate::otel::RequestTrace::trace_id_hex),
            trace,
            start: Instant::now(),
            timestamp: SystemTime::now(),
            method: method.clone(),
            uri: uri.clone(),
            client: client.clone(),
            request_id: request_id.clone(),
            api: None,
            operation: None,
            product: None,
            subscription: None,
            key_params: None,
            status: 0,
            backend_status: None,
            backend_time: None,
            bytes_in: 0,
            error: None,
            cache: None,
            grpc_status: None,
        }
    }

    /// Adds to an `emit-metric` series.
    pub fn emit(&self, key: CustomKey, value: f64) {
        let mut s = self.lock();
        let v = s.custom.entry(key).or_default();
        v.sum += value;
        v.count += 1;
    }

    /// Records a switched (WebSocket) connection when it closes: `bytes_out` went to the
    /// client, `record.bytes_in` came from it.
    pub fn finish_tunnel(&self, record: Record, bytes_out: u64) {
        self.finish(record, bytes_out);
    }

    fn finish(&self, mut record: Record, bytes_out: u64) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let total = record.start.elapsed();
        let backend = record.backend_time;
        let from_backend = record.backend_status == Some(record.status);
        let outcome = Outcome::classify(record.status, from_backend);

        let mut guard = self.lock();
        let s = &mut *guard;
        let key = MetricKey {
            api: record.api.clone(),
            operation: record.operation.clone(),
            product: record.product.clone(),
            subscription: if self.subscription_labels {
                record.subscription.clone()
            } else {
                None
            },
            status: record.status,
            backend_status: record.backend_status,
            cache: record.cache,
            error: record.error.as_ref().map(|e| e.reason.clone()),
            grpc_status: record.grpc_status,
        };
        s.metrics.entry(key).or_default().observe(total, backend);

        if let (Some(api), Some(operation)) = (&record.api, &record.operation) {
            let minute = unix_secs(record.timestamp) / 60 * 60;
            let key = MinuteKey {
                minute,
                api: api.clone(),
                operation: operation.clone(),
                product: record.product.clone(),
                subscription: record.subscription.clone(),
            };
            let agg = s.minutes.entry(key).or_insert_with(|| Aggregate {
                minute,
                api_id: api.to_string(),
                operation_id: operation.to_string(),
                product_id: record.product.as_deref().map(str::to_owned),
                subscription_id: record.subscription.as_deref().map(str::to_owned),
                ..Aggregate::default()
            });
            agg.counts.add(outcome);
            agg.bandwidth += record.bytes_in + bytes_out;
            agg.api_time.record(micros(total));
            if let Some(b) = backend {
                agg.service_time.record(micros(b));
            }
            // Reservoir sampling: every request of the interval is equally likely to be kept.
            s.seen += 1;
            let keep = if s.samples.len() < self.samples {
                Some(s.samples.len())
            } else {
                let j = (xorshift(&mut s.rng) % s.seen) as usize;
                (j < self.samples).then_some(j)
            };
            if let Some(slot) = keep {
                let sample = record.sample(total);
                if slot == s.samples.len() {
                    s.samples.push(sample);
                } else {
                    s.samples[slot] = sample;
                }
            }
        }

        match self.access_log {
            AccessLog::Off => {}
            AccessLog::Json => record.json_line(&mut s.log, total, bytes_out),
            AccessLog::Text => record.text_line(&mut s.log, total, bytes_out),
        }
        if s.log.len() >= LOG_BUFFER {
            let buf = std::mem::take(&mut s.log);
            drop(guard);
            write_stdout(&buf);
        } else {
            drop(guard);
        }
        if let (Some(mut trace), Some(tracing)) = (record.trace.take(), &self.tracing) {
            trace.set_attribute(
                None,
                "http.request.method",
                record.method.as_str().to_owned(),
            );
            trace.set_attribute(None, "url.path", record.uri.path().to_owned());
            for (key, value) in [
                ("gatehouse.api.id", &record.api),
                ("gatehouse.operation.id", &record.operation),
                ("gatehouse.product.id", &record.product),
            ] {
                if let Some(v) = value {
                    trace.set_attribute(None, key, v.to_string());
                }
            }
            if let Some(e) = &record.error {
                trace.set_attribute(None, "gatehouse.error.reason", e.reason.to_string());
            }
            trace.finish(tracing, record.status);
        }
    }
}

fn xorshift(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Why a request failed: who raised the error and its reason.
#[derive(Debug, Clone)]
pub struct ErrorInfo {
    pub source: Cow<'static, str>,
    pub reason: Cow<'static, str>,
}

/// Everything known about one request, filled in as it goes.
#[derive(Debug)]
pub struct Record {
    start: Instant,
    timestamp: SystemTime,
    method: Method,
    uri: Uri,
    /// The client's address as text (made once per connection).
    client: Arc<str>,
    request_id: HeaderValue,
    pub api: Option<Arc<str>>,
    pub operation: Option<Arc<str>>,
    pub product: Option<Arc<str>>,
    pub subscription: Option<Arc<str>>,
    /// The configuration's subscription-key query parameter names, dropped from the logged
    /// URL (`subscription-key` is dropped without a configuration too).
    pub key_params: Option<Arc<[Arc<str>]>>,
    pub status: u16,
    pub backend_status: Option<u16>,
    pub backend_time: Option<Duration>,
    pub bytes_in: u64,
    pub error: Option<ErrorInfo>,
    /// `cache-lookup`: a hit or a miss.
    pub cache: Option<bool>,
    /// A gRPC call's status, from the backend's trailers (or its headers, for a call that
    /// failed before any message).
    pub grpc_status: Option<u16>,
    pub trace_id: Option<String>,
    /// The request's spans, when tracing is on.
    pub trace: Option<Box<crate::otel::RequestTrace>>,
}

impl Record {
    /// Whether a query parameter carries a subscription key. Names are compared ignoring case,
    /// so a key spelled another way than its API expects is not logged either.
    fn is_key_param(&self, name: &str) -> bool {
        name.eq_ignore_ascii_case(crate::config::DEFAULT_KEY_QUERY)
            || self
                .key_params
                .as_deref()
                .is_some_and(|names| names.iter().any(|n| n.eq_ignore_ascii_case(name)))
    }

    /// Path and query as logged: without subscription key parameters. Calls `part` with
    /// the path, then each separator (`?`, `&`) and each kept `name=value` pair, in order.
    fn url_parts<'a>(&'a self, mut part: impl FnMut(&'a str)) {
        part(self.uri.path());
        let Some(query) = self.uri.query() else {
            return;
        };
        let mut first = true;
        for pair in query.split('&') {
            let name = pair.split_once('=').map_or(pair, |(n, _)| n);
            if pair.is_empty() || self.is_key_param(name) {
                continue;
            }
            part(if first { "?" } else { "&" });
            part(pair);
            first = false;
        }
    }

    /// The logged URL as a string.
    fn url(&self) -> String {
        let mut url = String::new();
        self.url_parts(|p| url.push_str(p));
        url
    }

    fn sample(&self, total: Duration) -> Sample {
        Sample {
            timestamp: self
                .timestamp
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
            request_id: String::from_utf8_lossy(self.request_id.as_bytes()).into_owned(),
            method: self.method.as_str().to_owned(),
            url: self.url(),
            api_id: self.api.as_deref().unwrap_or_default().to_owned(),
            operation_id: self.operation.as_deref().unwrap_or_default().to_owned(),
            product_id: self.product.as_deref().map(str::to_owned),
            subscription_id: self.subscription.as_deref().map(str::to_owned),
            status: self.status,
            backend_status: self.backend_status,
            api_time_ms: millis(total),
            service_time_ms: self.backend_time.map(millis),
            client_ip: self.client.to_string(),
            error_source: self.error.as_ref().map(|e| e.source.to_string()),
            error_reason: self.error.as_ref().map(|e| e.reason.to_string()),
        }
    }

    /// Appends the request's JSON access log line to `out`. Written byte by byte into the
    /// worker's buffer, with no allocation: it runs once per request.
    pub fn json_line(&self, out: &mut Vec<u8>, total: Duration, bytes_out: u64) {
        out.extend_from_slice(b"{\"timestamp\":\"");
        push_timestamp_bytes(out, self.timestamp);
        out.extend_from_slice(b"\",\"requestId\":");
        push_json_bytes(out, self.request_id.as_bytes());
        out.extend_from_slice(b",\"clientIp\":\"");
        out.extend_from_slice(self.client.as_bytes());
        out.extend_from_slice(b"\",\"method\":");
        push_json_opt_bytes(out, Some(self.method.as_str()));
        out.extend_from_slice(b",\"url\":\"");
        self.push_url(out);
        out.push(b'"');
        for (name, value) in [
            (&b",\"apiId\":"[..], &self.api),
            (b",\"operationId\":", &self.operation),
            (b",\"productId\":", &self.product),
            (b",\"subscriptionId\":", &self.subscription),
        ] {
            out.extend_from_slice(name);
            push_json_opt_bytes(out, value.as_deref());
        }
        out.extend_from_slice(b",\"status\":");
        push_u64(out, u64::from(self.status));
        out.extend_from_slice(b",\"backendStatus\":");
        match self.backend_status {
            Some(s) => push_u64(out, u64::from(s)),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"totalMs\":");
        push_millis(out, total);
        out.extend_from_slice(b",\"backendMs\":");
        match self.backend_time {
            Some(b) => push_millis(out, b),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"bytesIn\":");
        push_u64(out, self.bytes_in);
        out.extend_from_slice(b",\"bytesOut\":");
        push_u64(out, bytes_out);
        out.extend_from_slice(b",\"errorSource\":");
        push_json_opt_bytes(out, self.error.as_ref().map(|e| &*e.source));
        out.extend_from_slice(b",\"errorReason\":");
        push_json_opt_bytes(out, self.error.as_ref().map(|e| &*e.reason));
        out.extend_from_slice(b",\"cache\":");
        push_json_opt_bytes(out, self.cache.map(|hit| if hit { "hit" } else { "miss" }));
        out.extend_from_slice(b",\"grpcStatus\":");
        match self.grpc_status {
            Some(s) => push_u64(out, u64::from(s)),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"traceId\":");
        push_json_opt_bytes(out, self.trace_id.as_deref());
        out.extend_from_slice(b"}\n");
    }

    /// The logged URL, JSON-escaped.
    fn push_url(&self, out: &mut Vec<u8>) {
        self.url_parts(|p| push_escaped(out, p.as_bytes()));
    }

    fn text_line(&self, out: &mut Vec<u8>, total: Duration, bytes_out: u64) {
        push_timestamp_bytes(out, self.timestamp);
        let _ = write!(out, " {} ", self.client);
        out.extend_from_slice(self.request_id.as_bytes());
        let _ = write!(out, " \"{} ", self.method);
        self.push_url(out);
        let _ = write!(
            out,
            "\" {} {} {:.3}ms api={} operation={}",
            self.status,
            bytes_out,
            millis(total),
            self.api.as_deref().unwrap_or("-"),
            self.operation.as_deref().unwrap_or("-"),
        );
        if let Some(e) = &self.error {
            let _ = write!(out, " error={}/{}", e.source, e.reason);
        }
        if let Some(s) = self.grpc_status {
            let _ = write!(out, " grpc-status={s}");
        }
        out.push(b'\n');
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Appends `bytes` JSON-escaped (without quotes). Text that needs no escaping, nearly all
/// of it, is copied at once.
fn push_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    if !bytes.iter().any(|b| *b < 0x20 || *b == b'"' || *b == b'\\') {
        out.extend_from_slice(bytes);
        return;
    }
    for &b in bytes {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b if b < 0x20 => {
                let _ = write!(out, "\\u{b:04x}");
            }
            b => out.push(b),
        }
    }
}

/// Appends a JSON string. Bytes that are not UTF-8 (a header value may hold any) are
/// replaced, so the line stays valid JSON.
fn push_json_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    match std::str::from_utf8(bytes) {
        Ok(_) => push_escaped(out, bytes),
        Err(_) => push_escaped(out, String::from_utf8_lossy(bytes).as_bytes()),
    }
    out.push(b'"');
}

fn push_json_opt_bytes(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => {
            out.push(b'"');
            push_escaped(out, s.as_bytes());
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
}

fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Milliseconds with three decimals, from whole microseconds.
fn push_millis(out: &mut Vec<u8>, d: Duration) {
    let us = micros(d);
    push_u64(out, us / 1000);
    let frac = us % 1000;
    out.extend_from_slice(&[
        b'.',
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ]);
}

/// Two digits, zero-padded.
fn push_2(out: &mut Vec<u8>, n: u32) {
    out.extend_from_slice(&[b'0' + (n / 10 % 10) as u8, b'0' + (n % 10) as u8]);
}

/// RFC 3339 in UTC with milliseconds, from Unix time by integer arithmetic (days to a civil
/// date with the proleptic Gregorian calendar's 400-year cycle).
fn push_timestamp_bytes(out: &mut Vec<u8>, t: SystemTime) {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Shift the epoch to 0000-03-01, so that leap days end each 4-, 100- and 400-year cycle.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    push_u64(out, year.max(0) as u64);
    out.push(b'-');
    push_2(out, month);
    out.push(b'-');
    push_2(out, day);
    out.push(b'T');
    push_2(out, (rem / 3600) as u32);
    out.push(b':');
    push_2(out, (rem / 60 % 60) as u32);
    out.push(b':');
    push_2(out, (rem % 60) as u32);
    let ms = since.subsec_millis();
    out.extend_from_slice(&[
        b'.',
        b'0' + (ms / 100) as u8,
        b'0' + (ms / 10 % 10) as u8,
        b'0' + (ms % 10) as u8,
        b'Z',
    ]);
}

/// The labels of the request metrics.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct MetricKey {
    pub api: Option<Arc<str>>,
    pub operation: Option<Arc<str>>,
    pub product: Option<Arc<str>>,
    pub subscription: Option<Arc<str>>,
    pub status: u16,
    pub backend_status: Option<u16>,
    pub cache: Option<bool>,
    pub error: Option<Cow<'static, str>>,
    pub grpc_status: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct MinuteKey {
    minute: i64,
    api: Arc<str>,
    operation: Arc<str>,
    product: Option<Arc<str>>,
    subscription: Option<Arc<str>>,
}

/// An `emit-metric` series: its name, namespace and dimensions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CustomKey {
    pub name: Arc<str>,
    pub namespace: Arc<str>,
    pub dimensions: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CustomValue {
    pub sum: f64,
    pub count: u64,
}

/// Upper bounds of the duration histograms, in seconds.
pub(crate) const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Clone, Default)]
pub(crate) struct Histogram {
    pub counts: [u64; BUCKETS.len()],
    pub count: u64,
    pub sum: f64,
}

impl Histogram {
    fn observe(&mut self, d: Duration) {
        let secs = d.as_secs_f64();
        self.count += 1;
        self.sum += secs;
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.counts[i] += 1;
        }
    }

    pub(crate) fn merge(&mut self, o: &Histogram) {
        self.count += o.count;
        self.sum += o.sum;
        for (a, b) in self.counts.iter_mut().zip(o.counts) {
            *a += b;
        }
    }

    /// Cumulative buckets as Prometheus wants them, `+Inf` last.
    pub(crate) fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut seen = 0;
        let mut out: Vec<(f64, u64)> = BUCKETS
            .iter()
            .zip(self.counts)
            .map(|(b, n)| {
                seen += n;
                (*b, seen)
            })
            .collect();
        out.push((f64::INFINITY, self.count));
        out
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct RequestMetrics {
    pub requests: u64,
    pub total: Histogram,
    pub backend: Histogram,
    pub gateway: Histogram,
}

impl RequestMetrics {
    fn observe(&mut self, total: Duration, backend: Option<Duration>) {
        self.requests += 1;
        self.total.observe(total);
        match backend {
            Some(b) => {
                self.backend.observe(b);
                self.gateway.observe(total.saturating_sub(b));
            }
            None => self.gateway.observe(total),
        }
    }

    fn merge(&mut self, o: &RequestMetrics) {
        self.requests += o.requests;
        self.total.merge(&o.total);
        self.backend.merge(&o.backend);
        self.gateway.merge(&o.gateway);
    }
}

/// The `grpc-status` among `headers` (trailers, or the headers of a trailers-only answer).
pub fn grpc_status(headers: &http::HeaderMap) -> Option<u16> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok()?.trim().parse().ok())
}

/// A response body that folds its request's [`Record`] into the worker's telemetry when it
/// ends, or when it is dropped unfinished (the client went away).
pub struct ObservedBody {
    inner: Body,
    bytes: u64,
    pending: Option<(Record, Arc<WorkerTelemetry>)>,
}

impl ObservedBody {
    pub fn new(inner: Body, record: Record, telemetry: Arc<WorkerTelemetry>) -> Self {
        Self {
            inner,
            bytes: 0,
            pending: Some((record, telemetry)),
        }
    }

    /// A body nobody records (health probes).
    pub fn plain(inner: Body) -> Self {
        Self {
            inner,
            bytes: 0,
            pending: None,
        }
    }

    fn done(&mut self) {
        if let Some((record, telemetry)) = self.pending.take() {
            telemetry.finish(record, self.bytes);
        }
    }
}

impl Drop for ObservedBody {
    fn drop(&mut self) {
        self.done();
    }
}

impl HttpBody for ObservedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes += data.len() as u64;
                } else if let (Some(trailers), Some((record, _))) =
                    (frame.trailers_ref(), this.pending.as_mut())
                    && let Some(status) = grpc_status(trailers)
                {
                    record.grpc_status = Some(status);
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => this.done(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(w: &WorkerTelemetry, uri: &str) -> Record {
        let mut r = w.begin(
            &Method::GET,
            &uri.parse().unwrap(),
            &http::HeaderMap::new(),
            &Arc::from("127.0.0.1"),
            &HeaderValue::from_static("rid-1"),
        );
        r.api = Some("echo".into());
        r.operation = Some("get".into());
        r.key_params = Some(Arc::from(vec![Arc::<str>::from("subscription-key")]));
        r
    }

    #[test]
    fn a_finished_request_is_counted_logged_and_aggregated_once() {
        let t = Telemetry::new(TelemetrySettings::default(), 2);
        let w = t.worker(0);
        let mut r = record(&w, "/echo/x?a=1&subscription-key=SECRET&b=%22");
        r.status = 200;
        r.backend_status = Some(200);
        r.backend_time = Some(Duration::from_millis(2));
        r.subscription = Some("sub-1".into());
        let body = ObservedBody::new(
            http_body_util::Either::Left(http_body_util::Full::new(Bytes::from_static(b"hello"))),
            r,
            w.clone(),
        );
        assert_eq!(t.in_flight(), 1);
        drop(body);
        assert_eq!(t.in_flight(), 0);

        let metrics = t.request_metrics();
        assert_eq!(metrics.len(), 1);
        assert_eq!(metrics[0].1.requests, 1);
        assert_eq!(
            metrics[0].0.subscription, None,
            "no subscription labels by default"
        );

        let log = String::from_utf8(std::mem::take(&mut w.lock().log)).unwrap();
        assert_eq!(log.lines().count(), 1);
        let line: serde_json::Value = serde_json::from_str(log.trim()).unwrap();
        assert_eq!(line["url"], "/echo/x?a=1&b=%22");
        assert_eq!(line["subscriptionId"], "sub-1");
        assert_eq!(line["status"], 200);
        assert!(!log.contains("SECRET"));

        let (aggs, samples) = t.drain();
        assert_eq!(aggs.len(), 1);
        assert_eq!(aggs[0].counts.success, 1);
        assert_eq!(aggs[0].service_time.count, 1);
        assert_eq!(samples.len(), 1);
        assert!(!samples[0].url.contains("SECRET"));
        assert!(t.drain().0.is_empty(), "drained once");
    }

    #[test]
    fn samples_stay_bounded() {
        let t = Telemetry::new(
            TelemetrySettings {
                samples_per_worker: 4,
                access_log: AccessLog::Off,
                ..Default::default()
            },
            1,
        );
        let w = t.worker(0);
        for _ in 0..100 {
            let mut r = record(&w, "/echo/x");
            r.status = 200;
            w.finish(r, 0);
        }
        let (aggs, samples) = t.drain();
        assert_eq!(aggs[0].counts.total, 100);
        assert_eq!(samples.len(), 4);
        assert!(w.lock().log.is_empty());
    }

    #[test]
    fn timestamps_match_the_time_crate() {
        let fmt = time::format_description::well_known::Rfc3339;
        for secs in [
            0u64,
            951_782_400,
            1_709_164_800,
            1_764_115_200,
            4_107_542_399,
            253_402_300_799,
        ] {
            let t = SystemTime::UNIX_EPOCH + Duration::from_millis(secs * 1000 + 7);
            let mut ours = Vec::new();
            push_timestamp_bytes(&mut ours, t);
            let theirs = time::OffsetDateTime::from(t).format(&fmt).unwrap();
            // time prints the fraction without trailing zeros: 00:00:00.007Z.
            assert_eq!(String::from_utf8(ours).unwrap(), theirs, "{secs}");
        }
    }

    #[test]
    fn millis_and_numbers_print_exactly() {
        let mut out = Vec::new();
        push_millis(&mut out, Duration::from_micros(1_234_567));
        out.push(b' ');
        push_millis(&mut out, Duration::from_micros(5));
        out.push(b' ');
        push_u64(&mut out, 0);
        out.push(b' ');
        push_u64(&mut out, u64::MAX);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "1234.567 0.005 0 18446744073709551615"
        );
    }

    #[test]
    fn escaped_bytes_make_valid_json() {
        let mut out = Vec::new();
        push_json_bytes(&mut out, b"a\"b\\c\x01\n");
        out.push(b' ');
        push_json_bytes(&mut out, b"caf\xc3\xa9 \xff");
        let text = String::from_utf8(out).unwrap();
        let (a, b) = text.split_once(' ').unwrap();
        assert_eq!(serde_json::from_str::<String>(a).unwrap(), "a\"b\\c\u{1}\n");
        assert_eq!(serde_json::from_str::<String>(b).unwrap(), "café \u{fffd}");
    }

    #[test]
    fn histograms_are_cumulative() {
        let mut h = Histogram::default();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let c = h.cumulative();
        assert_eq!(c[0], (0.0005, 1));
        assert_eq!(c[3], (0.005, 2));
        assert_eq!(c.last().copied(), Some((f64::INFINITY, 3)));
    }
}
