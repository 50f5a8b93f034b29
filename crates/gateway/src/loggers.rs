//! `log-to-eventhub` in the gateway: the loggers of the configuration, and the shipper that
//! sends their messages in the background.
//!
//! A request hands its message to [`LogShipper::submit`], which puts it on the logger's
//! bounded queue without waiting: when the queue is full (by count or bytes) the message is
//! dropped and counted (`gatehouse_logger_dropped_total{logger}`). Each logger's queue is
//! drained by one task that batches messages (waiting up to [`LINGER`] for more when the
//! logger `isBuffered`) and sends each batch: to Azure Event Hubs over its HTTPS REST API
//! (`POST https://{namespace}/{hub}/messages`, a `SharedAccessSignature` made from the
//! connection string's key, or a token of the gateway's token provider for a logger with a
//! managed identity; the partition in the path or the partition key in `BrokerProperties`), as newline-delimited text to an `http` logger's URL, or as OTLP/HTTP
//! JSON log records to an `otlp` collector. A batch that fails with a connection error, a
//! timeout, 408, 429 or 5xx is sent again with backoff, [`ATTEMPTS`] times at most; then, or
//! on any other refusal, its messages are dropped and counted, and the reason logged (never a
//! secret).
//!
//! The tasks run on a current-thread runtime of the shipper's own thread, started with the
//! first message: a gateway that logs nothing runs nothing. Finding a logger's queue takes one
//! short lock shared by the workers, and only requests that log take it. Queues outlive configuration
//! swaps; a logger whose settings change gets a new queue, and the old one is drained with
//! the old settings.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use gatehouse_model::loggers::{EventHubAuth, Logger, LoggerKind};
use gatehouse_model::snapshot::SnapshotLogger;
use gatehouse_policy::policies::{LogEntry, Partition};
use http::{HeaderMap, HeaderName, HeaderValue};
use tokio::sync::mpsc;

#[cfg(test)]
mod tests;

/// Messages a logger's queue holds before new ones are dropped.
const QUEUE_MESSAGES: usize = 10_000;
/// Bytes of messages a logger's queue holds before new ones are dropped.
const QUEUE_BYTES: usize = 32 * 1024 * 1024;
/// Most messages in one batch.
const BATCH_MESSAGES: usize = 500;
/// Largest body of one batch to Event Hubs (its Basic tier takes 256 KB); a bigger single
/// message goes alone.
const EVENT_HUB_BATCH_BYTES: usize = 250 * 1000;
/// Largest body of one batch to an `http` or `otlp` sink.
const HTTP_BATCH_BYTES: usize = 1024 * 1024;
/// How long a buffered logger waits for more messages before it sends a batch.
pub const LINGER: Duration = Duration::from_millis(200);
/// Tries per batch, the first included.
pub const ATTEMPTS: u32 = 6;
/// Wait before the second try; doubled before each further one, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long one send may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a shared access signature is valid, and how long before its end a new one is made.
const SAS_LIFETIME: Duration = Duration::from_secs(3600);
const SAS_RENEW: Duration = Duration::from_secs(300);

/// Where one logger sends, compiled from the snapshot.
#[derive(Debug, PartialEq)]
pub struct LoggerSpec {
    pub id: Arc<str>,
    buffered: bool,
    sink: Sink,
}

#[derive(Debug, PartialEq)]
enum Sink {
    EventHub(EventHub),
    Http { url: String, headers: HeaderMap },
    Otlp { url: String, headers: HeaderMap },
}

/// An event hub and how the gateway signs in to it (its `Debug` never prints the key).
#[derive(Debug, PartialEq)]
struct EventHub {
    /// `https://{namespace}/{hub}`: what signatures are for, and where messages go under.
    entity: String,
    auth: EventHubAuth,
}

/// The resource Event Hubs tokens are for.
const EVENT_HUBS_RESOURCE: &str = "https://eventhubs.azure.net";

fn sensitive_headers(headers: &BTreeMap<String, String>) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("'{name}' is not a valid header name"))?;
        let mut value = HeaderValue::from_str(value)
            .map_err(|_| format!("the value of header '{name}' is not a valid header value"))?;
        value.set_sensitive(true);
        map.append(name, value);
    }
    Ok(map)
}

impl LoggerSpec {
    /// Compiles a shipped logger; the error says what is wrong, never a secret.
    pub fn compile(shipped: &SnapshotLogger) -> Result<Self, String> {
        let logger = Logger {
            id: shipped.id.clone(),
            logger_type: shipped.logger_type.clone(),
            description: None,
            credentials: shipped.credentials.clone(),
            is_buffered: shipped.is_buffered,
            resource_id: None,
            endpoint: shipped.endpoint.clone(),
        };
        let sink = match logger.kind()? {
            LoggerKind::AzureEventHub => {
                let hub = logger.event_hub()?;
                Sink::EventHub(EventHub {
                    entity: format!("https://{}/{}", hub.host, hub.hub.trim_matches('/')),
                    auth: hub.auth,
                })
            }
            kind @ (LoggerKind::Http | LoggerKind::Otlp) => {
                let endpoint = logger
                    .endpoint
                    .as_ref()
                    .ok_or("an http or otlp logger needs endpoint.url")?;
                gatehouse_model::resources::check_http_url(endpoint.url.trim())?;
                let headers = sensitive_headers(&endpoint.headers)?;
                if kind == LoggerKind::Http {
                    Sink::Http {
                        url: endpoint.url.trim().to_owned(),
                        headers,
                    }
                } else {
                    Sink::Otlp {
                        url: otlp_logs_url(&endpoint.url),
                        headers,
                    }
                }
            }
        };
        Ok(Self {
            id: Arc::from(shipped.id.as_str()),
            buffered: shipped.is_buffered,
            sink,
        })
    }
}

/// Where OTLP/HTTP log records go for a collector's base URL (`…/v1/logs` is kept as given).
fn otlp_logs_url(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    if url.ends_with("/v1/logs") {
        url.to_owned()
    } else {
        format!("{url}/v1/logs")
    }
}

/// The loggers of one configuration, by id.
#[derive(Debug, Default)]
pub struct CompiledLoggers {
    by_id: HashMap<Arc<str>, Arc<LoggerSpec>>,
}

impl CompiledLoggers {
    /// Compiles the snapshot's loggers. One that does not compile (the control plane checks
    /// them when they are saved) is left out with an error in the log: its messages are
    /// dropped and counted.
    pub fn compile(loggers: &[SnapshotLogger]) -> Self {
        let mut by_id = HashMap::with_capacity(loggers.len());
        for shipped in loggers {
            match LoggerSpec::compile(shipped) {
                Ok(spec) => {
                    by_id.insert(spec.id.clone(), Arc::new(spec));
                }
                Err(e) => {
                    tracing::error!(logger = %shipped.id, error = %e, "a logger of the configuration cannot be used; its messages are dropped");
                }
            }
        }
        Self { by_id }
    }

    pub fn get(&self, id: &str) -> Option<&Arc<LoggerSpec>> {
        self.by_id.get(id)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// What happened to one logger's messages, for `/metrics`.
#[derive(Debug, Default)]
pub struct LoggerCounters {
    /// Messages the logger accepted.
    pub sent: AtomicU64,
    /// Messages dropped: queue full, sending failed, or no such logger.
    pub dropped: AtomicU64,
    /// Messages waiting in the queue or in a batch being sent.
    pub queued: AtomicU64,
}

/// The counters of every logger seen, by id.
#[derive(Debug, Default)]
pub struct LoggerStats {
    by_id: Mutex<BTreeMap<Arc<str>, Arc<LoggerCounters>>>,
}

impl LoggerStats {
    pub fn counters(&self, id: &str) -> Arc<LoggerCounters> {
        let mut map = self
            .by_id
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = map.get(id) {
            return c.clone();
        }
        let c = Arc::new(LoggerCounters::default());
        map.insert(Arc::from(id), c.clone());
        c
    }

    /// Every logger's id and counters, ordered by id.
    pub fn all(&self) -> Vec<(Arc<str>, Arc<LoggerCounters>)> {
        self.by_id
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// One message in a queue.
#[derive(Debug)]
struct Queued {
    partition: Partition,
    message: String,
    at: SystemTime,
}

/// A logger's queue: where requests put messages, and the task that sends them.
struct Queue {
    spec: Arc<LoggerSpec>,
    tx: mpsc::Sender<Queued>,
    bytes: Arc<AtomicUsize>,
    counters: Arc<LoggerCounters>,
}

/// The loggers' runtime: its handle, and what ends it when the shipper goes.
struct Runtime {
    handle: tokio::runtime::Handle,
    client: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Sends the messages of `log-to-eventhub` for one gateway process, for all its workers.
pub struct LogShipper {
    stats: Arc<LoggerStats>,
    /// The gateway's token provider, for loggers with a managed identity.
    identity: Option<Arc<crate::identity::TokenProvider>>,
    tls: gatehouse_tls::rustls::ClientConfig,
    runtime: OnceLock<Result<Runtime, String>>,
    queues: Mutex<HashMap<Arc<str>, Queue>>,
    /// Sending tasks still running (a replaced queue's task drains before it ends).
    running: Arc<AtomicUsize>,
}

impl std::fmt::Debug for LogShipper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogShipper")
            .field("running", &self.running.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl LogShipper {
    /// A shipper trusting the OS roots and `trusted_ca` for https sinks, signing in to event
    /// hubs with a managed identity through `identity`, counting into `stats`.
    pub fn new(
        trusted_ca: &[PathBuf],
        identity: Option<Arc<crate::identity::TokenProvider>>,
        stats: Arc<LoggerStats>,
    ) -> Result<Self, gatehouse_tls::TlsError> {
        Ok(Self {
            identity,
            ..Self::with_tls(crate::outbound_tls::reqwest_tls(trusted_ca)?, stats)
        })
    }

    pub fn with_tls(tls: gatehouse_tls::rustls::ClientConfig, stats: Arc<LoggerStats>) -> Self {
        Self {
            identity: None,
            stats,
            tls,
            runtime: OnceLock::new(),
            queues: Mutex::new(HashMap::new()),
            running: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub fn stats(&self) -> &Arc<LoggerStats> {
        &self.stats
    }

    /// Queues `entry` for `spec`, the logger the configuration in force has under the
    /// entry's id (`None`: it has none). Never waits.
    pub fn submit(&self, spec: Option<&Arc<LoggerSpec>>, entry: LogEntry) {
        let Some(spec) = spec else {
            self.stats
                .counters(&entry.logger)
                .dropped
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(logger = %entry.logger, "log-to-eventhub names a logger this configuration does not have; message dropped");
            return;
        };
        let queued = Queued {
            partition: entry.partition,
            message: entry.message,
            at: SystemTime::now(),
        };
        let size = queued.message.len();
        let (tx, bytes, counters) = {
            let mut queues = self
                .queues
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let current = queues
                .get_mut(&spec.id)
                .filter(|q| Arc::ptr_eq(&q.spec, spec) || q.spec == *spec);
            match current {
                Some(q) => {
                    // The same settings from a configuration compiled again: next time, the
                    // pointer says so.
                    q.spec = spec.clone();
                    (q.tx.clone(), q.bytes.clone(), q.counters.clone())
                }
                None => match self.start_queue(spec) {
                    Some(q) => {
                        let parts = (q.tx.clone(), q.bytes.clone(), q.counters.clone());
                        // The replaced queue's sender goes here: its task drains and ends.
                        queues.insert(spec.id.clone(), q);
                        parts
                    }
                    None => {
                        self.stats
                            .counters(&spec.id)
                            .dropped
                            .fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                },
            }
        };
        if bytes.fetch_add(size, Ordering::Relaxed) + size > QUEUE_BYTES {
            bytes.fetch_sub(size, Ordering::Relaxed);
            counters.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match tx.try_send(queued) {
            Ok(()) => {
                counters.queued.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                bytes.fetch_sub(size, Ordering::Relaxed);
                counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A new queue for `spec` and the task that drains it; `None` when the loggers' runtime
    /// cannot start (said once in the log).
    fn start_queue(&self, spec: &Arc<LoggerSpec>) -> Option<Queue> {
        let runtime = match self.runtime.get_or_init(|| start_runtime(self.tls.clone())) {
            Ok(r) => r,
            Err(_) => return None,
        };
        let (tx, rx) = mpsc::channel(QUEUE_MESSAGES);
        let bytes = Arc::new(AtomicUsize::new(0));
        let counters = self.stats.counters(&spec.id);
        let sender = Sender {
            spec: spec.clone(),
            identity: self.identity.clone(),
            client: runtime.client.clone(),
            bytes: bytes.clone(),
            counters: counters.clone(),
            sas: None,
        };
        let running = self.running.clone();
        running.fetch_add(1, Ordering::SeqCst);
        runtime.handle.spawn(async move {
            sender.run(rx).await;
            running.fetch_sub(1, Ordering::SeqCst);
        });
        Some(Queue {
            spec: spec.clone(),
            tx,
            bytes,
            counters,
        })
    }

    /// Stops taking messages and waits, up to `within`, for the queued ones to be sent (at
    /// shutdown). Returns whether everything was sent in time.
    pub fn flush(&self, within: Duration) -> bool {
        self.queues
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        let deadline = Instant::now() + within;
        while self.running.load(Ordering::SeqCst) > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }
}

/// Starts the loggers' thread and its runtime; returns its handle and HTTP client.
fn start_runtime(tls: gatehouse_tls::rustls::ClientConfig) -> Result<Runtime, String> {
    let client = reqwest::Client::builder()
        .timeout(SEND_TIMEOUT)
        .no_proxy()
        .tls_backend_preconfigured(tls)
        .build()
        .map_err(|e| {
            tracing::error!(error = %e, "cannot make the loggers' HTTP client; log-to-eventhub messages are dropped");
            e.to_string()
        })?;
    let (handle_tx, handle_rx) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("loggers".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    let _ = handle_tx.send(Err(e.to_string()));
                    return;
                }
            };
            let _ = handle_tx.send(Ok(runtime.handle().clone()));
            // Runs the senders until the shipper goes.
            runtime.block_on(async {
                let _ = stopped.await;
            });
        })
        .map_err(|e| e.to_string())?;
    let handle = handle_rx
        .recv()
        .map_err(|_| "the loggers' thread stopped before it started".to_owned())
        .and_then(|r| r)
        .map_err(|e| {
            tracing::error!(error = %e, "cannot start the loggers' runtime; log-to-eventhub messages are dropped");
            e
        })?;
    Ok(Runtime {
        handle,
        client,
        _stop: stop,
    })
}

/// The task behind one queue.
struct Sender {
    spec: Arc<LoggerSpec>,
    identity: Option<Arc<crate::identity::TokenProvider>>,
    client: reqwest::Client,
    bytes: Arc<AtomicUsize>,
    counters: Arc<LoggerCounters>,
    /// The Event Hubs signature in use and when it expires.
    sas: Option<(HeaderValue, SystemTime)>,
}

/// Why a batch was not delivered.
enum Failure {
    /// Worth another try: no connection, a timeout, 408, 429 or 5xx.
    Transient(String),
    Final(String),
}

impl Sender {
    async fn run(mut self, mut rx: mpsc::Receiver<Queued>) {
        let max_bytes = match self.spec.sink {
            Sink::EventHub(_) => EVENT_HUB_BATCH_BYTES,
            _ => HTTP_BATCH_BYTES,
        };
        let mut carry: Option<Queued> = None;
        loop {
            let first = match carry.take() {
                Some(q) => q,
                None => match rx.recv().await {
                    Some(q) => q,
                    None => return,
                },
            };
            let mut size = first.message.len();
            let mut batch = vec![first];
            let deadline = tokio::time::Instant::now()
                + if self.spec.buffered {
                    LINGER
                } else {
                    Duration::ZERO
                };
            while batch.len() < BATCH_MESSAGES {
                let next = match rx.try_recv() {
                    Ok(q) => Some(q),
                    Err(mpsc::error::TryRecvError::Disconnected) => None,
                    // Nothing more within the linger: the batch goes as it is.
                    Err(mpsc::error::TryRecvError::Empty) => {
                        tokio::time::timeout_at(deadline, rx.recv())
                            .await
                            .ok()
                            .flatten()
                    }
                };
                let Some(q) = next else { break };
                if size + q.message.len() > max_bytes {
                    carry = Some(q);
                    break;
                }
                size += q.message.len();
                batch.push(q);
            }
            let bytes: usize = batch.iter().map(|q| q.message.len()).sum();
            self.bytes.fetch_sub(bytes, Ordering::Relaxed);
            self.send_batch(batch).await;
        }
    }

    /// Sends one batch (per partition for Event Hubs), with retries.
    async fn send_batch(&mut self, batch: Vec<Queued>) {
        let count = batch.len() as u64;
        let groups: Vec<(Partition, Vec<Queued>)> = match self.spec.sink {
            Sink::EventHub(_) => by_partition(batch),
            _ => vec![(Partition::Any, batch)],
        };
        for (partition, messages) in groups {
            let n = messages.len() as u64;
            let mut backoff = FIRST_BACKOFF;
            let mut attempt = 1;
            let outcome = loop {
                match self.send_once(&partition, &messages).await {
                    Ok(()) => break Ok(()),
                    Err(Failure::Transient(why)) if attempt < ATTEMPTS => {
                        tracing::debug!(logger = %self.spec.id, attempt, reason = %why, "logger batch failed; trying again");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        attempt += 1;
                    }
                    Err(Failure::Transient(why) | Failure::Final(why)) => break Err(why),
                }
            };
            match outcome {
                Ok(()) => {
                    self.counters.sent.fetch_add(n, Ordering::Relaxed);
                }
                Err(why) => {
                    self.counters.dropped.fetch_add(n, Ordering::Relaxed);
                    tracing::warn!(logger = %self.spec.id, messages = n, attempts = attempt, reason = %why, "logger batch not delivered; its messages are dropped");
                }
            }
        }
        self.counters.queued.fetch_sub(count, Ordering::Relaxed);
    }

    async fn send_once(
        &mut self,
        partition: &Partition,
        messages: &[Queued],
    ) -> Result<(), Failure> {
        let spec = self.spec.clone();
        let request = match &spec.sink {
            Sink::EventHub(hub) => {
                let (url, body) = event_hub_request(hub, partition, messages);
                let authorization = match &hub.auth {
                    EventHubAuth::SharedKey { key_name, key } => {
                        self.signature(&hub.entity, key_name, key)
                    }
                    EventHubAuth::ManagedIdentity { client_id } => {
                        let Some(provider) = &self.identity else {
                            return Err(Failure::Final(
                                "the logger signs in with a managed identity and this gateway has no token provider (--identity-provider)".into(),
                            ));
                        };
                        let token = provider
                            .token(EVENT_HUBS_RESOURCE, client_id.as_deref())
                            .await
                            .map_err(|e| Failure::Transient(e.to_string()))?;
                        token.bearer().map_err(|e| Failure::Final(e.message))?
                    }
                };
                let mut r = self
                    .client
                    .post(url)
                    .header(http::header::AUTHORIZATION, authorization)
                    .header(
                        http::header::CONTENT_TYPE,
                        "application/vnd.microsoft.servicebus.json",
                    )
                    .body(body);
                if let Partition::Key(key) = partition {
                    r = r.header(
                        "BrokerProperties",
                        serde_json::json!({ "PartitionKey": key }).to_string(),
                    );
                }
                r
            }
            Sink::Http { url, headers } => {
                let mut body =
                    String::with_capacity(messages.iter().map(|m| m.message.len() + 1).sum());
                for m in messages {
                    body.push_str(&m.message);
                    body.push('\n');
                }
                self.client
                    .post(url)
                    .headers(headers.clone())
                    .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
                    .body(body)
            }
            Sink::Otlp { url, headers } => self
                .client
                .post(url)
                .headers(headers.clone())
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(otlp_body(&spec.id, messages)),
        };
        match request.send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => {
                let status = r.status().as_u16();
                let why = format!("the logger answered {status}");
                if status == 408 || status == 429 || status >= 500 {
                    Err(Failure::Transient(why))
                } else {
                    Err(Failure::Final(why))
                }
            }
            // The error names the URL without its query (reqwest strips nothing, so say it
            // ourselves): never a header.
            Err(e) => Err(Failure::Transient(transport_error(&e))),
        }
    }

    /// The `Authorization` for the event hub `entity`: the signature in use, or a new one
    /// when it nears its end.
    fn signature(&mut self, entity: &str, key_name: &str, key: &str) -> HeaderValue {
        let now = SystemTime::now();
        if let Some((value, until)) = &self.sas
            && now + SAS_RENEW < *until
        {
            return value.clone();
        }
        let until = now + SAS_LIFETIME;
        let expiry = until
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let text = shared_access_signature(entity, key_name, key, expiry);
        let mut value = HeaderValue::from_str(&text)
            .unwrap_or_else(|_| HeaderValue::from_static("SharedAccessSignature"));
        value.set_sensitive(true);
        self.sas = Some((value.clone(), until));
        value
    }
}

/// What a transport error says, without the URL's query.
fn transport_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "failed"
    };
    match e.url() {
        Some(u) => format!(
            "{kind}: {}://{}{}",
            u.scheme(),
            u.host_str().unwrap_or_default(),
            u.path()
        ),
        None => kind.to_owned(),
    }
}

/// The messages grouped by partition, each group in the order the messages came.
fn by_partition(batch: Vec<Queued>) -> Vec<(Partition, Vec<Queued>)> {
    let mut groups: Vec<(Partition, Vec<Queued>)> = Vec::new();
    for q in batch {
        match groups.iter_mut().find(|(p, _)| *p == q.partition) {
            Some((_, list)) => list.push(q),
            None => groups.push((q.partition.clone(), vec![q])),
        }
    }
    groups
}

/// Event Hubs' send API for a batch: the URL and the JSON body.
fn event_hub_request(
    hub: &EventHub,
    partition: &Partition,
    messages: &[Queued],
) -> (String, String) {
    let url = match partition {
        Partition::Id(id) => format!(
            "{}/partitions/{}/messages?timeout=60&api-version=2014-01",
            hub.entity,
            encode_component(id)
        ),
        _ => format!("{}/messages?timeout=60&api-version=2014-01", hub.entity),
    };
    let items: Vec<serde_json::Value> = messages
        .iter()
        .map(|m| match &m.partition {
            Partition::Key(key) => serde_json::json!({
                "Body": m.message,
                "BrokerProperties": { "PartitionKey": key },
            }),
            _ => serde_json::json!({ "Body": m.message }),
        })
        .collect();
    (url, serde_json::Value::Array(items).to_string())
}

/// OTLP/HTTP JSON log records for `messages` of logger `id`.
fn otlp_body(id: &str, messages: &[Queued]) -> String {
    let nanos = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
            .to_string()
    };
    let observed = nanos(SystemTime::now());
    let records: Vec<serde_json::Value> = messages
        .iter()
        .map(|m| {
            let mut attributes = vec![serde_json::json!({
                "key": "gatehouse.logger.id", "value": { "stringValue": id }
            })];
            match &m.partition {
                Partition::Id(p) => attributes.push(serde_json::json!({
                    "key": "gatehouse.partition.id", "value": { "stringValue": p.as_ref() }
                })),
                Partition::Key(k) => attributes.push(serde_json::json!({
                    "key": "gatehouse.partition.key", "value": { "stringValue": k }
                })),
                Partition::Any => {}
            }
            serde_json::json!({
                "timeUnixNano": nanos(m.at),
                "observedTimeUnixNano": observed,
                "severityNumber": 9,
                "severityText": "INFO",
                "body": { "stringValue": m.message },
                "attributes": attributes,
            })
        })
        .collect();
    serde_json::json!({
        "resourceLogs": [{
            "resource": { "attributes": [
                { "key": "service.name", "value": { "stringValue": "gatehouse" } }
            ] },
            "scopeLogs": [{
                "scope": { "name": "gatehouse.log-to-eventhub" },
                "logRecords": records,
            }],
        }]
    })
    .to_string()
}

/// RFC 3986 percent-encoding of a URI component: unreserved characters stay, and hex digits
/// are upper case, as Azure's SDKs write them.
fn encode_component(text: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// An Event Hubs shared access signature for `resource` (`https://{namespace}/{hub}`), valid
/// until `expiry` (Unix seconds): HMAC-SHA256, keyed with the key as written, of the encoded
/// resource, a line feed and the expiry.
pub fn shared_access_signature(resource: &str, key_name: &str, key: &str, expiry: u64) -> String {
    let encoded = encode_component(resource);
    let to_sign = format!("{encoded}\n{expiry}");
    let hmac_key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key.as_bytes());
    let tag = aws_lc_rs::hmac::sign(&hmac_key, to_sign.as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(tag.as_ref());
    format!(
        "SharedAccessSignature sr={encoded}&sig={}&se={expiry}&skn={}",
        encode_component(&signature),
        encode_component(key_name)
    )
}
