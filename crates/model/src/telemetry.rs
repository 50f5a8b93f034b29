//! Telemetry a gateway uploads to `POST /gateway/v1/telemetry`, and the arithmetic both sides
//! share: outcome classes, latency sketches and report rows.
//!
//! A gateway aggregates its requests per minute and per (API, operation, product,
//! subscription), adds a small sample of request records, and ships the lot as a [`Batch`]
//! every ten seconds. A batch carries a random id: the control plane stores each id once, so a
//! batch that is sent again after a lost answer or a restart is not counted twice.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The largest batch body the control plane accepts.
pub const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;

/// One upload from one gateway instance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Batch {
    /// Unique per batch (a UUID); the control plane ignores an id it has already stored.
    pub id: String,
    /// The instance that served the requests (host or pod name).
    pub instance: String,
    /// When the batch was closed, Unix seconds.
    pub created: i64,
    pub aggregates: Vec<Aggregate>,
    /// A sample of individual requests, at most a few hundred per batch.
    #[serde(default)]
    pub samples: Vec<Sample>,
    /// Batches this instance dropped from its full spool since it last delivered one.
    #[serde(default)]
    pub dropped_batches: u64,
}

/// Requests of one minute that share API, operation, product and subscription.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Aggregate {
    /// The minute's start, Unix seconds (a multiple of 60).
    pub minute: i64,
    pub api_id: String,
    pub operation_id: String,
    #[serde(default)]
    pub product_id: Option<String>,
    #[serde(default)]
    pub subscription_id: Option<String>,
    pub counts: Counts,
    /// Request plus response body bytes.
    pub bandwidth: u64,
    /// Time from the request's arrival to the last byte of the response.
    pub api_time: Sketch,
    /// Time the backend took (to its response headers); empty for calls that never reached it.
    pub service_time: Sketch,
}

impl Aggregate {
    pub fn merge(&mut self, other: &Aggregate) {
        self.counts.merge(&other.counts);
        self.bandwidth += other.bandwidth;
        self.api_time.merge(&other.api_time);
        self.service_time.merge(&other.service_time);
    }
}

/// Calls by outcome, as Azure's reports count them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub total: u64,
    /// 1xx, 2xx and 3xx.
    pub success: u64,
    /// 401, 403 and 429 answered by the gateway (a missing or wrong key, a policy's refusal).
    pub blocked: u64,
    /// 5xx, from the backend or the gateway.
    pub failed: u64,
    /// Everything else (404, 400, a backend's own 401…).
    pub other: u64,
}

impl Counts {
    pub fn merge(&mut self, o: &Counts) {
        self.total += o.total;
        self.success += o.success;
        self.blocked += o.blocked;
        self.failed += o.failed;
        self.other += o.other;
    }

    pub fn add(&mut self, outcome: Outcome) {
        self.total += 1;
        match outcome {
            Outcome::Success => self.success += 1,
            Outcome::Blocked => self.blocked += 1,
            Outcome::Failed => self.failed += 1,
            Outcome::Other => self.other += 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Blocked,
    Failed,
    Other,
}

impl Outcome {
    /// The class of a response with `status`; `from_backend` when the backend's own status
    /// reached the client unchanged.
    pub fn classify(status: u16, from_backend: bool) -> Self {
        match status {
            100..=399 => Self::Success,
            401 | 403 | 429 if !from_backend => Self::Blocked,
            500..=599 => Self::Failed,
            _ => Self::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Blocked => "blocked",
            Self::Failed => "failed",
            Self::Other => "other",
        }
    }
}

/// A mergeable latency sketch: counts in logarithmic bins of microseconds, 4% wide, so any
/// quantile it gives is within 2% of the true value. Bins are sparse: a minute of similar
/// requests takes a handful of entries.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sketch {
    pub count: u64,
    pub sum_micros: u64,
    /// Bin index → count. Bin `i` holds values in `[GAMMA^i, GAMMA^(i+1))` µs; bin 0 also
    /// holds 0 and 1 µs.
    pub bins: BTreeMap<u16, u64>,
}

const GAMMA: f64 = 1.04;

impl Sketch {
    pub fn record(&mut self, micros: u64) {
        self.count += 1;
        self.sum_micros = self.sum_micros.saturating_add(micros);
        *self.bins.entry(bin_of(micros)).or_insert(0) += 1;
    }

    pub fn merge(&mut self, other: &Sketch) {
        self.count += other.count;
        self.sum_micros = self.sum_micros.saturating_add(other.sum_micros);
        for (bin, n) in &other.bins {
            *self.bins.entry(*bin).or_insert(0) += n;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The mean in milliseconds, 0 when empty.
    pub fn mean_ms(&self) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        self.sum_micros as f64 / self.count as f64 / 1000.0
    }

    /// The `q` quantile (0..=1) in milliseconds, 0 when empty.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (bin, n) in &self.bins {
            seen += n;
            if seen >= rank {
                return bin_value(*bin) / 1000.0;
            }
        }
        self.bins.keys().next_back().map_or(0.0, |b| bin_value(*b)) / 1000.0
    }
}

fn bin_of(micros: u64) -> u16 {
    if micros <= 1 {
        return 0;
    }
    let i = (micros as f64).ln() / GAMMA.ln();
    i.floor().clamp(0.0, f64::from(u16::MAX)) as u16
}

/// A bin's representative value in µs: the middle of its range.
fn bin_value(bin: u16) -> f64 {
    if bin == 0 {
        return 1.0;
    }
    let low = GAMMA.powi(i32::from(bin));
    low * (1.0 + GAMMA) / 2.0
}

/// One request, as kept in the sample a batch carries. Never holds a key or a header value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    /// Unix milliseconds.
    pub timestamp: i64,
    pub request_id: String,
    pub method: String,
    /// Path and query, without the subscription key parameter.
    pub url: String,
    pub api_id: String,
    pub operation_id: String,
    #[serde(default)]
    pub product_id: Option<String>,
    #[serde(default)]
    pub subscription_id: Option<String>,
    pub status: u16,
    #[serde(default)]
    pub backend_status: Option<u16>,
    pub api_time_ms: f64,
    #[serde(default)]
    pub service_time_ms: Option<f64>,
    pub client_ip: String,
    #[serde(default)]
    pub error_source: Option<String>,
    #[serde(default)]
    pub error_reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_follow_azure() {
        assert_eq!(Outcome::classify(200, true), Outcome::Success);
        assert_eq!(Outcome::classify(304, true), Outcome::Success);
        assert_eq!(Outcome::classify(401, false), Outcome::Blocked);
        assert_eq!(Outcome::classify(429, false), Outcome::Blocked);
        assert_eq!(Outcome::classify(403, true), Outcome::Other);
        assert_eq!(Outcome::classify(404, false), Outcome::Other);
        assert_eq!(Outcome::classify(502, false), Outcome::Failed);
        assert_eq!(Outcome::classify(500, true), Outcome::Failed);
    }

    #[test]
    fn quantiles_are_within_two_percent() {
        let mut s = Sketch::default();
        for v in 1..=10_000u64 {
            s.record(v * 10);
        }
        for (q, exact) in [(0.5, 50_000.0), (0.95, 95_000.0), (0.99, 99_000.0)] {
            let got = s.quantile_ms(q) * 1000.0;
            assert!((got - exact).abs() / exact < 0.02, "q{q}: {got} vs {exact}");
        }
        assert!((s.mean_ms() - 50.005).abs() < 1e-9);
    }

    #[test]
    fn merging_equals_recording_everything_once() {
        let (mut a, mut b, mut all) = (Sketch::default(), Sketch::default(), Sketch::default());
        for v in [0, 1, 5, 900, 12_000, 3_000_000, u64::MAX] {
            a.record(v);
            all.record(v);
        }
        for v in [7, 7, 7, 40_000] {
            b.record(v);
            all.record(v);
        }
        a.merge(&b);
        assert_eq!(a, all);
        assert_eq!(Sketch::default().quantile_ms(0.95), 0.0);
    }

    #[test]
    fn a_batch_round_trips_through_json() {
        let mut agg = Aggregate {
            minute: 1_800_000_000,
            api_id: "echo".into(),
            operation_id: "get".into(),
            product_id: Some("starter".into()),
            ..Default::default()
        };
        agg.counts.add(Outcome::Success);
        agg.api_time.record(1234);
        let batch = Batch {
            id: "b1".into(),
            instance: "i".into(),
            created: 1,
            aggregates: vec![agg],
            samples: vec![],
            dropped_batches: 0,
        };
        let text = serde_json::to_string(&batch).unwrap();
        assert!(text.contains("\"apiId\":\"echo\""), "{text}");
        assert_eq!(serde_json::from_str::<Batch>(&text).unwrap(), batch);
    }
}
