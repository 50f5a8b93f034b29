//! The Gatehouse data plane.
//!
//! A gateway holds one compiled configuration ([`config::CompiledConfig`]) behind an
//! `ArcSwap`. Applying a snapshot compiles it off the hot path and swaps it in atomically: a
//! request in flight keeps the configuration it started with. The listeners run one
//! current-thread runtime per worker, each with its own `SO_REUSEPORT` socket and its own
//! upstream connection pool, so a request never hops threads or takes a lock.

pub mod admin;
pub mod backup;
pub mod breaker;
pub mod cache;
pub mod client_certificate;
pub mod config;
pub mod counters;
pub mod error;
pub mod forwarded;
pub mod h1;
pub mod holder;
pub mod identity;
pub mod inbound_tls;
pub mod link;
pub mod listener;
pub mod loggers;
pub mod metrics;
pub mod openid;
pub mod otel;
pub mod outbound_tls;
pub mod path;
pub mod proxy;
pub mod redis_link;
pub mod request_body;
pub mod route;
pub mod selfhosted;
pub mod server;
pub mod status;
pub mod telemetry;
pub mod tryit;
pub mod tunnel;
pub mod upload;
pub mod upstream;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use gatehouse_model::snapshot::{Delta, Snapshot};
use gatehouse_model::token::GatewayToken;

pub use config::{ApiProblem, CompileError, CompiledConfig};
pub use server::{RunningGateway, ServeError};

/// Settings of the data plane that do not come from the control plane.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// How long the gateway waits for a backend's response headers.
    pub backend_timeout: Duration,
    /// Worker threads, each with its own listener socket and upstream pool.
    pub workers: usize,
    /// How long shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
    /// CA certificates (PEM files) trusted for https backends besides the OS roots.
    pub trusted_ca: Vec<std::path::PathBuf>,
    /// The HTTPS listener, if any: its address and certificates.
    pub https: Option<HttpsListener>,
    /// Timeouts and caps of the gateway's listener.
    pub limits: listener::ListenerLimits,
    /// Peers whose `X-Forwarded-For` is believed (see [`forwarded`]); empty: nobody's.
    pub trusted_proxies: Arc<[forwarded::Cidr]>,
    /// The most bytes of a request body forwarded (see [`request_body`]); `u64::MAX`: no limit.
    pub max_request_body: u64,
    /// Counters and cache shared with the gateway's replicas through Redis (`--redis`).
    pub redis: Option<redis_link::RedisSettings>,
    /// Where `authentication-managed-identity` gets tokens (`--identity-provider`), shared by
    /// the workers; `None`: the policy fails (or is ignored with `ignore-error`).
    pub identity: Option<Arc<identity::TokenProvider>>,
    /// The Dapr sidecar's HTTP API (`--dapr-http-endpoint`), for `set-backend-service
    /// backend-id="dapr"`, `publish-to-dapr` and `invoke-dapr-binding`.
    pub dapr_endpoint: String,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            backend_timeout: Duration::from_secs(300),
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            shutdown_grace: Duration::from_secs(30),
            trusted_ca: Vec::new(),
            https: None,
            limits: listener::ListenerLimits::default(),
            trusted_proxies: Arc::from(Vec::new()),
            max_request_body: u64::MAX,
            redis: None,
            identity: None,
            dapr_endpoint: gatehouse_policy::policies::DAPR_DEFAULT_ENDPOINT.to_owned(),
        }
    }
}

/// Where the gateway serves HTTPS, and with which certificates.
#[derive(Debug, Clone)]
pub struct HttpsListener {
    pub addr: std::net::SocketAddr,
    pub tls: Arc<inbound_tls::InboundTls>,
}

/// The configuration a gateway serves, shared by its workers.
#[derive(Debug, Default, Clone)]
pub struct ConfigHandle {
    current: Arc<ArcSwapOption<CompiledConfig>>,
    /// Configurations swapped out while requests still held them. They are dropped here, on
    /// the thread that applies configurations, once those requests are done, rather than by
    /// the last request on a worker thread.
    retired: Arc<std::sync::Mutex<Vec<Arc<CompiledConfig>>>>,
}

impl ConfigHandle {
    /// Compiles `snapshot` and, if it compiles, makes it the configuration every new request
    /// sees. On error the previous configuration stays in force.
    pub fn apply(&self, snapshot: &Snapshot) -> Result<u64, CompileError> {
        let compiled = CompiledConfig::compile_after(snapshot, self.current().as_deref())?;
        Ok(self.swap(compiled))
    }

    /// Like [`ConfigHandle::apply`] for `snapshot`, the result of `delta`: when the
    /// configuration in force is the delta's base, only what the delta touches is compiled.
    pub fn apply_delta(&self, delta: &Delta, snapshot: &Snapshot) -> Result<u64, CompileError> {
        let compiled = match self.current() {
            Some(current) => current.update(delta, snapshot)?,
            None => CompiledConfig::compile(snapshot)?,
        };
        Ok(self.swap(compiled))
    }

    fn swap(&self, compiled: CompiledConfig) -> u64 {
        let revision = compiled.revision;
        let old = self.current.swap(Some(Arc::new(compiled)));
        if let Ok(mut retired) = self.retired.lock() {
            retired.extend(old);
        }
        self.release();
        revision
    }

    /// Drops the swapped-out configurations no request holds any more.
    pub fn release(&self) {
        let done: Vec<Arc<CompiledConfig>> = match self.retired.lock() {
            Ok(mut retired) => {
                let (done, held) = retired.drain(..).partition(|c| Arc::strong_count(c) == 1);
                *retired = held;
                done
            }
            Err(_) => return,
        };
        drop(done);
    }

    /// The configuration in force, if one has been applied.
    pub fn current(&self) -> Option<Arc<CompiledConfig>> {
        self.current.load_full()
    }

    /// The APIs the configuration in force could not compile (none before the first).
    pub fn problems(&self) -> Arc<[Arc<config::ApiProblem>]> {
        self.current
            .load()
            .as_ref()
            .map_or_else(|| Arc::from(Vec::new()), |c| c.problems().clone())
    }

    /// The revision in force, if any.
    pub fn revision(&self) -> Option<u64> {
        self.current.load().as_ref().map(|c| c.revision)
    }
}

/// How long before its expiry a token is reported as about to expire.
pub const TOKEN_WARNING: time::Duration = time::Duration::days(3);

/// A warning for a token that has expired or expires within three days.
pub fn token_warning(token: &GatewayToken) -> Option<String> {
    let (y, mo, d, h, mi) = token.expiry;
    let expiry = time::Month::try_from(mo)
        .ok()
        .and_then(|m| time::Date::from_calendar_date(y, m, d).ok())
        .and_then(|date| {
            time::Time::from_hms(h, mi, 0)
                .ok()
                .map(|t| date.with_time(t).assume_utc())
        })?;
    let left = expiry - time::OffsetDateTime::now_utc();
    let at = token.expiry_rfc3339();
    if left <= time::Duration::ZERO {
        Some(format!(
            "the gateway token expired at {at}; the gateway keeps serving its last configuration but cannot sync: generate a new token with `gatehouse gateway token {}` and restart the gateway with it",
            token.gateway_id
        ))
    } else if left < TOKEN_WARNING {
        Some(format!(
            "the gateway token expires at {at}, in {} hours: generate a new one with `gatehouse gateway token {}`",
            left.whole_hours(),
            token.gateway_id
        ))
    } else {
        None
    }
}
