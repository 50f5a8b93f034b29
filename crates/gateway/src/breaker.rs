//! Backends' circuit breakers (`circuitBreaker.rules` of `/mgmt/backends`), as Azure API
//! Management runs them: answers and errors that the rule's failure condition names are
//! counted within its interval; when they reach the rule's count (or percentage of the calls),
//! the breaker trips and the backend is out of service for the trip duration, or for as long
//! as the tripping answer's `Retry-After` says when the rule accepts it. Then it is back, with
//! its counts cleared. A pool skips a member whose breaker is open; a request sent to such a
//! backend by its id gets 503.
//!
//! State is per gateway process, shared by its workers, and kept across configurations: a
//! configuration compiled after another takes over the breaker of every backend whose URL and
//! rule did not change ([`Breaker::carries_over`]). On the hot path, "is it open" is one atomic
//! load; an answer that is not a failure costs nothing more under a count rule, and one
//! short-held lock of the backend's own window under a percentage rule. There is no global lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use gatehouse_model::snapshot::SnapshotBreaker;
use http::{HeaderValue, StatusCode};

use crate::error::DataPlaneError;

/// Milliseconds on the process's monotonic clock, from its first use (never 0 once a breaker
/// tripped: trips store a time after now).
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The buckets an interval is counted in: a failure leaves the count between one and
/// `1/BUCKETS` of the interval after the interval ends.
const BUCKETS: usize = 10;

/// The longest a breaker stays open, whatever a `Retry-After` asks: a year, the longest
/// `tripDuration` the management API takes.
const LONGEST_TRIP_MS: u64 = 365 * 24 * 3600 * 1000;

/// What the rule counts, and when it trips.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    name: Box<str>,
    threshold: Threshold,
    interval_ms: u64,
    trip_ms: u64,
    ranges: Box<[(u16, u16)]>,
    connection_failures: bool,
    timeouts: bool,
    accept_retry_after: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Threshold {
    Count(u64),
    /// 1 to 100.
    Percentage(u64),
}

impl Rule {
    fn of(rule: &SnapshotBreaker) -> Self {
        let threshold = match (rule.count, rule.percentage) {
            (Some(n), _) => Threshold::Count(u64::from(n.max(1))),
            (None, Some(p)) => Threshold::Percentage(u64::from(p.clamp(1, 100))),
            (None, None) => Threshold::Count(1),
        };
        let reason = |r: &str| rule.error_reasons.iter().any(|e| e.eq_ignore_ascii_case(r));
        Self {
            name: rule.name.as_str().into(),
            threshold,
            interval_ms: rule.interval_ms.max(1),
            trip_ms: rule.trip_duration_ms.clamp(1, LONGEST_TRIP_MS),
            ranges: rule.status_code_ranges.clone().into_boxed_slice(),
            connection_failures: reason("BackendConnectionFailure"),
            timeouts: reason("Timeout"),
            accept_retry_after: rule.accept_retry_after,
        }
    }

    fn status_fails(&self, status: StatusCode) -> bool {
        let s = status.as_u16();
        self.ranges
            .iter()
            .any(|&(min, max)| (min..=max).contains(&s))
    }
}

/// What a call to the backend came to.
#[derive(Debug, Clone, Copy)]
pub enum Outcome<'a> {
    /// The backend answered; the answer's `Retry-After`, if any.
    Answered(StatusCode, Option<&'a HeaderValue>),
    /// The backend could not be reached (refused, reset, TLS refused).
    ConnectionFailure,
    /// The backend did not answer in time.
    Timeout,
    /// The call failed for a reason that is not the backend's (the client's body was too
    /// large, say): not counted.
    NotCounted,
}

impl<'a> Outcome<'a> {
    /// The outcome of a forward that failed with `e`.
    pub fn of_error(e: &DataPlaneError) -> Outcome<'a> {
        match e {
            DataPlaneError::BackendUnreachable(_) | DataPlaneError::UnaskedSwitch => {
                Outcome::ConnectionFailure
            }
            DataPlaneError::BackendTimeout(_) => Outcome::Timeout,
            _ => Outcome::NotCounted,
        }
    }
}

/// One bucket of the window: the calls and failures counted in one slice of the interval.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Which slice (time / slice length); the bucket is stale when it is not a recent one.
    slice: u64,
    calls: u64,
    failures: u64,
}

#[derive(Debug, Default)]
struct Window {
    buckets: [Bucket; BUCKETS],
}

impl Window {
    /// Counts a call in the slice of `now`, and returns the calls and failures of the last
    /// `BUCKETS` slices.
    fn count(&mut self, slice: u64, failed: bool) -> (u64, u64) {
        let b = &mut self.buckets[(slice % BUCKETS as u64) as usize];
        if b.slice != slice {
            *b = Bucket {
                slice,
                ..Bucket::default()
            };
        }
        b.calls += 1;
        b.failures += u64::from(failed);
        let oldest = slice.saturating_sub(BUCKETS as u64 - 1);
        self.buckets
            .iter()
            .filter(|b| (oldest..=slice).contains(&b.slice))
            .fold((0, 0), |(c, f), b| (c + b.calls, f + b.failures))
    }

    fn clear(&mut self) {
        self.buckets = [Bucket::default(); BUCKETS];
    }
}

/// The circuit breaker of one backend.
#[derive(Debug)]
pub struct Breaker {
    backend: Arc<str>,
    /// The backend's URL when the breaker was made: another URL is another service, whose
    /// breaker starts closed.
    url: Box<str>,
    rule: Rule,
    /// Until when (on [`now_ms`]'s clock) the breaker is open; in the past when closed.
    open_until: AtomicU64,
    /// Times it tripped since it was made.
    trips: AtomicU64,
    window: Mutex<Window>,
}

impl Breaker {
    pub fn new(backend: Arc<str>, url: &str, rule: &SnapshotBreaker) -> Self {
        Self {
            backend,
            url: url.into(),
            rule: Rule::of(rule),
            open_until: AtomicU64::new(0),
            trips: AtomicU64::new(0),
            window: Mutex::default(),
        }
    }

    /// Whether this breaker can serve the backend `url` with `rule` in a new configuration:
    /// the same service under the same rule keeps its state.
    pub fn carries_over(&self, url: &str, rule: &SnapshotBreaker) -> bool {
        *self.url == *url && self.rule == Rule::of(rule)
    }

    pub fn backend(&self) -> &Arc<str> {
        &self.backend
    }

    /// Whether the breaker is open at `now` (on [`now_ms`]'s clock).
    pub fn is_open(&self, now: u64) -> bool {
        self.open_until.load(Ordering::Relaxed) > now
    }

    /// Milliseconds from `now` until the breaker closes (0 when closed).
    pub fn remaining(&self, now: u64) -> u64 {
        self.open_until.load(Ordering::Relaxed).saturating_sub(now)
    }

    pub fn trips(&self) -> u64 {
        self.trips.load(Ordering::Relaxed)
    }

    /// Counts what a call came to, and trips the breaker when the rule says so.
    pub fn record(&self, outcome: Outcome<'_>) {
        self.record_at(outcome, now_ms(), std::time::SystemTime::now());
    }

    fn record_at(&self, outcome: Outcome<'_>, now: u64, wall: std::time::SystemTime) {
        let rule = &self.rule;
        let (failed, retry_after) = match outcome {
            Outcome::Answered(status, retry_after) => (rule.status_fails(status), retry_after),
            Outcome::ConnectionFailure => (rule.connection_failures, None),
            Outcome::Timeout => (rule.timeouts, None),
            Outcome::NotCounted => return,
        };
        if !failed && matches!(rule.threshold, Threshold::Count(_)) {
            return;
        }
        // Calls that were under way when it tripped find it open: they are not counted again.
        if self.is_open(now) {
            return;
        }
        let slice_ms = (rule.interval_ms / BUCKETS as u64).max(1);
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        let (calls, failures) = window.count(now / slice_ms, failed);
        let trips = failed
            && match rule.threshold {
                Threshold::Count(n) => failures >= n,
                Threshold::Percentage(p) => failures * 100 >= p * calls,
            };
        if !trips {
            return;
        }
        window.clear();
        let asked = retry_after
            .filter(|_| rule.accept_retry_after)
            .and_then(|v| retry_after_ms(v, wall));
        let trip_ms = asked.unwrap_or(rule.trip_ms).clamp(1, LONGEST_TRIP_MS);
        self.open_until.store(now + trip_ms, Ordering::Relaxed);
        drop(window);
        self.trips.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            backend = %self.backend,
            rule = %rule.name,
            failures,
            calls,
            open_for = ?Duration::from_millis(trip_ms),
            retry_after = asked.is_some(),
            "circuit breaker tripped: the backend is out of service until it closes"
        );
    }
}

/// A `Retry-After` as milliseconds from `now`: delay-seconds, or an HTTP date (RFC 9110
/// IMF-fixdate). `None` when it is neither, or asks for no wait.
fn retry_after_ms(value: &HeaderValue, now: std::time::SystemTime) -> Option<u64> {
    let text = value.to_str().ok()?.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let secs: u64 = text.parse().unwrap_or(u64::MAX);
        return (secs > 0).then(|| secs.saturating_mul(1000).min(LONGEST_TRIP_MS));
    }
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let at = time::PrimitiveDateTime::parse(text, &format)
        .ok()?
        .assume_utc();
    let now = time::OffsetDateTime::from(now);
    let wait = at - now;
    let ms = u64::try_from(wait.whole_milliseconds()).ok()?;
    (ms > 0).then(|| ms.min(LONGEST_TRIP_MS))
}

#[cfg(test)]
mod tests;
