//! Counters and cache that the replicas of one gateway resource share through Redis (`--redis`,
//! DESIGN §10, docs/redis.md).
//!
//! Every counter update is one atomic round trip: a Lua script (EVALSHA, loaded again after a
//! Redis restart) that reads the window's end from Redis' own `TIME`, so the gateways' clocks do
//! not matter. Windows are fixed and start with the first call, as in [`crate::counters`].
//! Counters with large limits ([`BATCH_FROM`] calls or more) are counted here and settled in the
//! background instead ([`Batches`]), within the bound docs/redis.md states.
//!
//! Each worker thread runs its own current-thread runtime, and a Redis connection is driven by
//! the runtime that made it: every worker has its own [`RedisLink`], which connects on first use
//! and again after a failure. No request waits on Redis longer than [`TIMEOUT`]; a failed call is
//! counted (`gatehouse_redis_errors_total`), logged at most once a minute, and answered by the
//! caller as `--redis-failure` says (local counters and a cache miss, or 503).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use gatehouse_policy::Decision;
use gatehouse_policy::policies::CacheEntry;
use redis::aio::MultiplexedConnection;

mod batches;
mod codec;

use batches::{Admit, Batches};

/// The longest a request waits on one Redis call (connecting included), unless
/// `--redis-timeout` says otherwise.
pub const TIMEOUT: Duration = Duration::from_millis(50);
/// Counters allowing this many calls or more are batched (see docs/redis.md), unless
/// `--redis-batch-from` says otherwise.
pub const BATCH_FROM: u64 = 10_000;
/// A batched counter's calls admitted here before they are settled: `calls / BATCH_SHARE`.
pub const BATCH_SHARE: u64 = 1_000;
/// The longest a batched call waits here before it is settled.
pub const SETTLE_EVERY: Duration = Duration::from_millis(100);
/// How long a `limit-concurrency` lease lives unless its gateway renews it.
pub const LEASE: Duration = Duration::from_secs(10);
/// The time limit of calls no request waits for (settlements, lease renewals and releases): a
/// settlement that timed out yet reached Redis would be counted twice when sent again.
const BACKGROUND_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a failed connection waits before it is tried again.
const RECONNECT_AFTER: Duration = Duration::from_millis(250);
/// A connection attempt goes on in the background this long, whoever waits for it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The key layout's version: a change of layout changes it, so old keys are never misread.
const KEY_VERSION: &str = "gh1";
const SHARDS: usize = 32;
/// The longest window kept in Redis (a quota without a period lasts this long).
const LONGEST_WINDOW: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// What a gateway does when Redis does not answer (`--redis-failure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailureMode {
    /// Count with the local counters, take a cache miss.
    #[default]
    Open,
    /// Answer 503 to requests that needed a counter.
    Closed,
}

/// `--redis` and `--redis-failure`.
#[derive(Clone)]
pub struct RedisSettings {
    pub url: String,
    pub failure: FailureMode,
    /// The longest a request waits on one Redis call ([`TIMEOUT`] by default).
    pub timeout: Duration,
    /// Counters allowing this many calls or more are batched ([`BATCH_FROM`] by default).
    pub batch_from: u64,
    /// CA certificates (PEM) trusted for `rediss://` instead of the OS roots, from
    /// `--trusted-ca`.
    pub root_cert: Option<Vec<u8>>,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &redact(&self.url))
            .field("failure", &self.failure)
            .field("timeout", &self.timeout)
            .field("batch_from", &self.batch_from)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RedisSetupError {
    #[error(
        "--redis {url} is not a Redis URL ({reason}); write it like redis://host:6379/0, rediss://host:6380 for TLS, or redis://user:password@host:6379"
    )]
    Url { url: String, reason: String },
}

/// `url` without its password, for logs and messages.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((user, host)) => {
            let user = user.split_once(':').map_or(user, |(u, _)| u);
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

/// A call that Redis did not answer in time, or answered with an error (already counted and
/// logged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

/// What the workers of one gateway share: the client, the scripts, the batched counters.
pub struct RedisShared {
    client: redis::Client,
    pub failure: FailureMode,
    timeout: Duration,
    batch_from: u64,
    shown: String,
    telemetry: Arc<crate::telemetry::Telemetry>,
    last_log: Mutex<Option<Instant>>,
    count: redis::Script,
    acquire: redis::Script,
    renew: redis::Script,
    batches: Batches,
}

impl std::fmt::Debug for RedisShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisShared")
            .field("url", &self.shown)
            .field("failure", &self.failure)
            .finish()
    }
}

/// `KEYS[1]` the window; `ARGV` calls, period (ms), increment, and 1 to add without a limit
/// (settling calls already admitted). Returns allowed (0/1), remaining, ms left, used. Numbers
/// go to Redis as integers (`%.0f`, `HINCRBY`): Lua would write large ones in exponent form.
const COUNT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local calls = tonumber(ARGV[1])
local inc = tonumber(ARGV[3])
local w = redis.call('HMGET', KEYS[1], 'e', 'u')
local ends = tonumber(w[1])
local used = tonumber(w[2])
if ends == nil or used == nil or ends <= now then
  ends = now + tonumber(ARGV[2])
  used = 0
  redis.call('HSET', KEYS[1], 'e', string.format('%.0f', ends), 'u', 0)
  redis.call('PEXPIREAT', KEYS[1], string.format('%.0f', ends))
end
if ARGV[4] ~= '1' and used + inc > calls then
  return {0, math.max(calls - used, 0), ends - now, used}
end
used = redis.call('HINCRBY', KEYS[1], 'u', ARGV[3])
return {1, math.max(calls - used, 0), ends - now, used}
";

/// `KEYS[1]` the leases (a sorted set of lease ids scored by expiry); `ARGV` max, lease id,
/// lease ms. Expired leases (their gateway died) go first. Returns 1 when taken.
const ACQUIRE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
";

/// `KEYS[1]` the leases; `ARGV` lease id, lease ms: extends a lease still held.
const RENEW: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
  return 1
end
return 0
";

impl RedisShared {
    pub fn new(
        settings: &RedisSettings,
        telemetry: Arc<crate::telemetry::Telemetry>,
    ) -> Result<Arc<Self>, RedisSetupError> {
        let bad = |e: redis::RedisError| RedisSetupError::Url {
            url: redact(&settings.url),
            reason: e.to_string(),
        };
        let client = match &settings.root_cert {
            Some(pem) if settings.url.starts_with("rediss://") => redis::Client::build_with_tls(
                settings.url.as_str(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            ),
            _ => redis::Client::open(settings.url.as_str()),
        }
        .map_err(bad)?;
        tracing::info!(redis = %redact(&settings.url), failure = ?settings.failure, "counters and cache shared through Redis");
        Ok(Arc::new(Self {
            client,
            failure: settings.failure,
            timeout: settings.timeout,
            batch_from: settings.batch_from,
            shown: redact(&settings.url),
            telemetry,
            last_log: Mutex::new(None),
            count: redis::Script::new(COUNT),
            acquire: redis::Script::new(ACQUIRE),
            renew: redis::Script::new(RENEW),
            batches: Batches::default(),
        }))
    }

    /// Counts a failed call, and logs it unless one was logged less than a minute ago.
    fn failed(&self, what: &str, why: &dyn std::fmt::Display) {
        self.telemetry.redis_errors.fetch_add(1, Ordering::Relaxed);
        self.warn(what, why);
    }

    /// Logs a failure unless one was logged less than a minute ago. A failed connection attempt
    /// is logged (not counted: the calls that found no connection are), so the first line names
    /// the cause, such as a refused password or an untrusted certificate.
    fn warn(&self, what: &str, why: &dyn std::fmt::Display) {
        let now = Instant::now();
        let mut last = lock(&self.last_log);
        if last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(60)) {
            return;
        }
        *last = Some(now);
        drop(last);
        let fallback = match self.failure {
            FailureMode::Open => "counting locally and missing the cache until it answers",
            FailureMode::Closed => "answering 503 to requests that need a counter until it answers",
        };
        tracing::warn!(redis = %self.shown, error = %why, "Redis {what} failed; {fallback} (logged at most once a minute; gatehouse_redis_errors_total counts each)");
    }
}

/// One worker's way to Redis: its connection, made and remade on the worker's runtime.
pub struct RedisLink {
    pub shared: Arc<RedisShared>,
    state: Mutex<LinkState>,
    ready: tokio::sync::Notify,
}

impl std::fmt::Debug for RedisLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLink")
            .field("shared", &self.shared)
            .finish()
    }
}

#[derive(Default)]
struct LinkState {
    up: Option<MultiplexedConnection>,
    connecting: bool,
    retry_at: Option<Instant>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// A gateway's keys: the gateway resource (replicas of one resource share counters; other
/// deployments on the same Redis do not), the layout version, then the policy's key.
pub fn key(gateway: &str, kind: &str, key: &str) -> String {
    let mut k = String::with_capacity(KEY_VERSION.len() + gateway.len() + key.len() + 8);
    k.push_str(KEY_VERSION);
    k.push(':');
    k.push_str(gateway);
    k.push(':');
    k.push_str(kind);
    k.push(':');
    k.push_str(key);
    k
}

impl RedisLink {
    pub fn new(shared: Arc<RedisShared>) -> Arc<Self> {
        Arc::new(Self {
            shared,
            state: Mutex::new(LinkState::default()),
            ready: tokio::sync::Notify::new(),
        })
    }

    /// The worker's connection: at once when it is up; else a connection attempt is started
    /// (unless one failed within [`RECONNECT_AFTER`]) and awaited until `deadline`.
    async fn connection(
        self: &Arc<Self>,
        deadline: tokio::time::Instant,
    ) -> Option<MultiplexedConnection> {
        loop {
            let ready = self.ready.notified();
            {
                let mut s = lock(&self.state);
                if let Some(c) = &s.up {
                    return Some(c.clone());
                }
                if !s.connecting {
                    if s.retry_at.is_some_and(|t| Instant::now() < t) {
                        return None;
                    }
                    s.connecting = true;
                    let link = self.clone();
                    tokio::spawn(async move { link.connect().await });
                }
            }
            if tokio::time::timeout_at(deadline, ready).await.is_err() {
                return None;
            }
        }
    }

    async fn connect(self: Arc<Self>) {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(None);
        let made = self
            .shared
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await;
        let failure = {
            let mut s = lock(&self.state);
            s.connecting = false;
            match made {
                Ok(c) => {
                    s.up = Some(c);
                    s.retry_at = None;
                    None
                }
                Err(e) => {
                    s.retry_at = Some(Instant::now() + RECONNECT_AFTER);
                    Some(e)
                }
            }
        };
        if let Some(e) = failure {
            self.shared.warn("connection", &e);
        }
        self.ready.notify_waiters();
    }

    /// Runs `call` on the connection within [`TIMEOUT`]; a connection that broke is dropped
    /// (the next call reconnects).
    async fn run<T, F, Fut>(self: &Arc<Self>, what: &str, call: F) -> Result<T, Unavailable>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        self.run_within(self.shared.timeout, what, call).await
    }

    async fn run_within<T, F, Fut>(
        self: &Arc<Self>,
        limit: Duration,
        what: &str,
        call: F,
    ) -> Result<T, Unavailable>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let deadline = tokio::time::Instant::now() + limit;
        let Some(conn) = self.connection(deadline).await else {
            self.shared.failed(what, &"not connected");
            return Err(Unavailable);
        };
        match tokio::time::timeout_at(deadline, call(conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() {
                    let mut s = lock(&self.state);
                    s.up = None;
                    s.retry_at = Some(Instant::now() + RECONNECT_AFTER);
                }
                self.shared.failed(what, &e);
                Err(Unavailable)
            }
            Err(_) => {
                self.shared.failed(
                    what,
                    &format_args!("no answer within {} ms", limit.as_millis()),
                );
                Err(Unavailable)
            }
        }
    }

    /// One atomic round trip of the counting script.
    async fn exact(
        self: &Arc<Self>,
        key: &str,
        calls: u64,
        period: Duration,
        increment: u64,
        force: bool,
    ) -> Result<Counted, Unavailable> {
        let period_ms = period.min(LONGEST_WINDOW).as_millis().max(1) as u64;
        let shared = self.shared.clone();
        // A settlement (`force`) holds no request.
        let limit = if force {
            BACKGROUND_TIMEOUT.max(self.shared.timeout)
        } else {
            self.shared.timeout
        };
        let answer: Vec<i64> = self
            .run_within(limit, "counter", |mut c| async move {
                shared
                    .count
                    .key(key)
                    .arg(calls)
                    .arg(period_ms)
                    .arg(increment)
                    .arg(u8::from(force))
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        let n = |i: usize| answer.get(i).copied().unwrap_or(0).max(0) as u64;
        Ok(Counted {
            decision: Decision {
                allowed: n(0) == 1,
                remaining: n(1),
                retry_after: Duration::from_millis(n(2)),
            },
            used: n(3),
        })
    }

    /// Counts `increment` calls of `key` (already prefixed with [`key`]): exactly in Redis below
    /// `--redis-batch-from` calls, batched from there.
    pub async fn count(
        self: &Arc<Self>,
        key: &str,
        calls: u64,
        period: Duration,
        increment: u64,
    ) -> Result<Decision, Unavailable> {
        if calls < self.shared.batch_from {
            return Ok(self
                .exact(key, calls, period, increment, false)
                .await?
                .decision);
        }
        let now = Instant::now();
        match self.shared.batches.admit(key, calls, increment, now) {
            Admit::Decided(d, settle) => {
                if let Some(after) = settle {
                    self.settle_later(key.to_owned(), after);
                }
                Ok(d)
            }
            Admit::Ask => {
                let counted = self.exact(key, calls, period, increment, false).await?;
                self.shared.batches.learn(
                    key,
                    calls,
                    counted.used,
                    counted.decision.retry_after,
                    Instant::now(),
                );
                Ok(counted.decision)
            }
        }
    }

    fn settle_later(self: &Arc<Self>, key: String, after: Duration) {
        let link = self.clone();
        tokio::spawn(async move {
            if !after.is_zero() {
                tokio::time::sleep(after).await;
            }
            link.settle(key).await;
        });
    }

    /// Sends the calls admitted here for `key` since its last settlement, and learns the
    /// window's total from the answer.
    async fn settle(self: Arc<Self>, key: String) {
        let Some(take) = self.shared.batches.take(&key, Instant::now()) else {
            return;
        };
        let result = self
            .exact(&key, take.calls, take.left, take.amount, true)
            .await;
        let again = self.shared.batches.settled(
            &key,
            take,
            result.ok().map(|c| (c.used, c.decision.retry_after)),
            Instant::now(),
        );
        if let Some(after) = again {
            self.settle_later(key, after);
        }
    }

    /// Takes one of `max` leases of `key`; `Ok(None)` when all are held.
    pub async fn acquire(
        self: &Arc<Self>,
        key: String,
        max: u64,
    ) -> Result<Option<Lease>, Unavailable> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let lease_ms = LEASE.as_millis() as u64;
        let shared = self.shared.clone();
        let taken: i64 = self
            .run("lease", |mut c| {
                let (key, id) = (key.clone(), id.clone());
                async move {
                    shared
                        .acquire
                        .key(&key)
                        .arg(max)
                        .arg(&id)
                        .arg(lease_ms)
                        .invoke_async(&mut c)
                        .await
                }
            })
            .await?;
        if taken != 1 {
            return Ok(None);
        }
        // Renewed while held, so a long request keeps it; a gateway that dies stops renewing
        // and its leases expire within [`LEASE`].
        let link = self.clone();
        let (k, i) = (key.clone(), id.clone());
        let renew = tokio::spawn(async move {
            loop {
                tokio::time::sleep(LEASE / 3).await;
                let shared = link.shared.clone();
                let _ = link
                    .run_within(BACKGROUND_TIMEOUT, "lease renewal", |mut c| {
                        let (k, i) = (k.clone(), i.clone());
                        async move {
                            shared
                                .renew
                                .key(&k)
                                .arg(&i)
                                .arg(lease_ms)
                                .invoke_async::<i64>(&mut c)
                                .await
                        }
                    })
                    .await;
            }
        });
        Ok(Some(Lease {
            link: self.clone(),
            key,
            id,
            renew,
        }))
    }

    pub async fn cache_get(self: &Arc<Self>, key: &str) -> Result<Option<CacheEntry>, Unavailable> {
        let bytes: Option<Vec<u8>> = self
            .run("cache read", |mut c| async move {
                redis::cmd("GET").arg(key).query_async(&mut c).await
            })
            .await?;
        Ok(bytes.and_then(|b| codec::decode(&b)))
    }

    pub async fn cache_put(
        self: &Arc<Self>,
        key: &str,
        entry: &CacheEntry,
        ttl: Duration,
    ) -> Result<(), Unavailable> {
        let ms = ttl.as_millis().clamp(1, u128::from(u64::MAX)) as u64;
        let bytes = codec::encode(entry);
        self.run("cache write", |mut c| async move {
            redis::cmd("SET")
                .arg(key)
                .arg(bytes)
                .arg("PX")
                .arg(ms)
                .query_async::<()>(&mut c)
                .await
        })
        .await
    }

    pub async fn cache_remove(self: &Arc<Self>, key: &str) -> Result<(), Unavailable> {
        self.run("cache removal", |mut c| async move {
            redis::cmd("DEL").arg(key).query_async::<()>(&mut c).await
        })
        .await
    }
}

/// What one round trip of the counting script answered.
struct Counted {
    decision: Decision,
    /// The window's calls in Redis after this one.
    used: u64,
}

/// A `limit-concurrency` lease in Redis; dropping it gives it back.
pub struct Lease {
    link: Arc<RedisLink>,
    key: String,
    id: String,
    renew: tokio::task::JoinHandle<()>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renew.abort();
        // Given back in the background; if that fails, the lease expires on its own.
        if tokio::runtime::Handle::try_current().is_ok() {
            let link = self.link.clone();
            let (key, id) = (std::mem::take(&mut self.key), std::mem::take(&mut self.id));
            tokio::spawn(async move {
                let _ = link
                    .run_within(BACKGROUND_TIMEOUT, "lease release", |mut c| async move {
                        redis::cmd("ZREM")
                            .arg(&key)
                            .arg(&id)
                            .query_async::<()>(&mut c)
                            .await
                    })
                    .await;
            });
        }
    }
}

// What the policy pipeline calls (through `proxy::GatewayIo`): Redis when the gateway has it,
// else, or when Redis fails under `--redis-failure open`, the gateway's own counters and cache.
// `Err` only under `closed`, and only for counters: the request then gets a 503.

/// `rate-limit*` and `quota*`.
pub(crate) async fn count(
    redis: Option<&Arc<RedisLink>>,
    local: &crate::counters::LocalCounters,
    gateway: &str,
    key: &str,
    calls: u64,
    period: Duration,
    increment: u64,
) -> Result<Decision, Unavailable> {
    if let Some(link) = redis {
        match link
            .count(&self::key(gateway, "n", key), calls, period, increment)
            .await
        {
            Ok(d) => return Ok(d),
            Err(e) if link.shared.failure == FailureMode::Closed => return Err(e),
            Err(_) => {}
        }
    }
    Ok(local.count(key, calls, period, increment))
}

/// `limit-concurrency`.
pub(crate) async fn acquire(
    redis: Option<&Arc<RedisLink>>,
    local: &Arc<crate::counters::Slots>,
    gateway: &str,
    key: &str,
    max: u64,
) -> Result<Option<gatehouse_policy::run::Slot>, Unavailable> {
    use gatehouse_policy::run::Slot;
    if let Some(link) = redis {
        match link.acquire(self::key(gateway, "l", key), max).await {
            Ok(lease) => return Ok(lease.map(Slot::new)),
            Err(e) if link.shared.failure == FailureMode::Closed => return Err(e),
            Err(_) => {}
        }
    }
    Ok(local.try_take(key, max).map(Slot::new))
}

/// The link to use for a cache call of `caching`, if any.
fn external(
    redis: Option<&Arc<RedisLink>>,
    caching: gatehouse_policy::policies::CachingType,
) -> Option<&Arc<RedisLink>> {
    redis.filter(|_| caching.external(true))
}

/// `cache-lookup`, `cache-lookup-value`: a Redis failure is a miss.
pub(crate) async fn cache_get(
    redis: Option<&Arc<RedisLink>>,
    local: &crate::cache::GatewayCache,
    gateway: &str,
    key: &str,
    caching: gatehouse_policy::policies::CachingType,
) -> Option<CacheEntry> {
    match external(redis, caching) {
        Some(link) => link
            .cache_get(&self::key(gateway, "c", key))
            .await
            .ok()
            .flatten(),
        None => local.get(key).await,
    }
}

/// `cache-store`, `cache-store-value`: a Redis failure stores nothing.
pub(crate) async fn cache_put(
    redis: Option<&Arc<RedisLink>>,
    local: &crate::cache::GatewayCache,
    gateway: &str,
    key: &str,
    entry: CacheEntry,
    ttl: Duration,
    caching: gatehouse_policy::policies::CachingType,
) {
    match external(redis, caching) {
        Some(link) if !ttl.is_zero() => {
            let _ = link
                .cache_put(&self::key(gateway, "c", key), &entry, ttl)
                .await;
        }
        Some(_) => {}
        None => local.put(key, entry, ttl).await,
    }
}

/// `cache-remove-value`.
pub(crate) async fn cache_remove(
    redis: Option<&Arc<RedisLink>>,
    local: &crate::cache::GatewayCache,
    gateway: &str,
    key: &str,
    caching: gatehouse_policy::policies::CachingType,
) {
    match external(redis, caching) {
        Some(link) => {
            let _ = link.cache_remove(&self::key(gateway, "c", key)).await;
        }
        None => local.remove(key).await,
    }
}

#[cfg(test)]
mod tests;
