//! Report arithmetic over the per-minute aggregates gateways upload: the time window a report
//! covers, the interval of a report over time, grouping by API, operation, product,
//! subscription or time bucket, and the figures of each group (counts by outcome, bandwidth,
//! mean and 95th percentile latencies from merged sketches).
//!
//! Both the management API's `/mgmt/reports/...` and the admin console compute their numbers
//! here, so a chart and the API never disagree.

use std::collections::BTreeMap;

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

use crate::ValidationError;
use crate::telemetry::{Aggregate, Counts, Sketch};

/// The shortest interval of a report over time, in seconds.
pub const MIN_INTERVAL: i64 = 60;
/// The longest interval of a report over time, in seconds.
pub const MAX_INTERVAL: i64 = 86_400;

/// A report's time window, Unix seconds: `from` inclusive, `to` exclusive. An aggregate
/// belongs to it when its minute starts inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: i64,
    pub to: i64,
}

impl Window {
    /// A window from the `from` and `to` query parameters (RFC 3339). Each problem names the
    /// parameter.
    pub fn parse(from: Option<&str>, to: Option<&str>) -> Result<Self, ValidationError> {
        let from = parse_time("from", from)?;
        let to = parse_time("to", to)?;
        Self::new(from, to)
    }

    pub fn new(from: i64, to: i64) -> Result<Self, ValidationError> {
        // A window that ends where it starts, or before, holds no minute: an empty report, as
        // Azure's reports answer a filter no time satisfies.
        Ok(Self {
            from,
            to: to.max(from),
        })
    }

    pub fn contains(&self, unix: i64) -> bool {
        self.from <= unix && unix < self.to
    }
}

fn parse_time(name: &str, text: Option<&str>) -> Result<i64, ValidationError> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Err(ValidationError::one(
            name,
            "is required: an RFC 3339 time such as 2026-11-26T09:00:00Z",
        ));
    };
    OffsetDateTime::parse(text, &Rfc3339)
        .map(OffsetDateTime::unix_timestamp)
        .map_err(|_| {
            ValidationError::one(
                name,
                format!("'{text}' is not an RFC 3339 time such as 2026-11-26T09:00:00Z"),
            )
        })
}

/// A Unix time as RFC 3339 in UTC, such as `2026-11-26T09:05:00Z`.
pub fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}

/// The intervals a report over time takes, as the OpenAPI document publishes them: one day,
/// whole hours up to a day, whole minutes up to a day, or hours and minutes. [`parse_interval`]
/// accepts exactly these (a property test holds it to this expression).
pub const INTERVAL_PATTERN: &str = "^P(1D|T(24|1[0-9]|2[0-3]|[1-9])H|T(1440|14[0-3][0-9]|1[0-3][0-9][0-9]|[1-9][0-9]?[0-9]?)M|T(1[0-9]|2[0-3]|[1-9])H([1-5][0-9]|[1-9])M)$";

/// Parses a report interval, an ISO 8601 duration from `PT1M` to `P1D` in one of the forms
/// of [`INTERVAL_PATTERN`]: `P1D`, `PT6H`, `PT90M`, `PT1H30M`. Returns seconds.
pub fn parse_interval(text: &str) -> Result<i64, ValidationError> {
    let bad = || {
        ValidationError::one(
            "interval",
            format!(
                "'{text}' is not a report interval; give an ISO 8601 duration from PT1M to P1D: \
                 P1D, whole hours (PT1H to PT24H), whole minutes (PT1M to PT1440M) or hours and \
                 minutes (PT1H30M)"
            ),
        )
    };
    // A count without sign, leading zero or more than four digits.
    let count = |digits: &str| -> Option<i64> {
        let plain = !digits.is_empty()
            && digits.len() <= 4
            && !digits.starts_with('0')
            && digits.bytes().all(|b| b.is_ascii_digit());
        plain.then(|| digits.parse().ok()).flatten()
    };
    let rest = text.strip_prefix('P').ok_or_else(bad)?;
    if rest == "1D" {
        return Ok(86_400);
    }
    let time = rest.strip_prefix('T').ok_or_else(bad)?;
    let seconds = match (time.split_once('H'), time.strip_suffix('M')) {
        // `PT{h}H`
        (Some((h, "")), _) => count(h).filter(|h| (1..=24).contains(h)).map(|h| h * 3_600),
        // `PT{h}H{m}M`
        (Some((h, m)), Some(_)) => {
            let h = count(h).filter(|h| (1..=23).contains(h));
            let m = m
                .strip_suffix('M')
                .and_then(count)
                .filter(|m| (1..=59).contains(m));
            h.zip(m).map(|(h, m)| h * 3_600 + m * 60)
        }
        // `PT{m}M`
        (None, Some(m)) => count(m).filter(|m| (1..=1_440).contains(m)).map(|m| m * 60),
        _ => None,
    };
    seconds.ok_or_else(bad)
}

/// An interval in seconds as the canonical ISO 8601 duration: `PT5M`, `PT1H30M`, `P1D`.
pub fn format_interval(seconds: i64) -> String {
    if seconds > 0 && seconds % 86_400 == 0 {
        return format!("P{}D", seconds / 86_400);
    }
    let (h, m) = (seconds / 3_600, seconds % 3_600 / 60);
    match (h, m) {
        (0, m) => format!("PT{m}M"),
        (h, 0) => format!("PT{h}H"),
        (h, m) => format!("PT{h}H{m}M"),
    }
}

/// The start of the bucket of `interval` seconds that holds `unix`. Buckets are aligned to the
/// Unix epoch, so `PT5M` buckets start at :00, :05, … and `P1D` buckets at midnight UTC.
pub fn bucket_start(unix: i64, interval: i64) -> i64 {
    unix - unix.rem_euclid(interval.max(1))
}

/// The starts of every bucket that overlaps the window, in order; charts use them to show
/// empty buckets too.
pub fn buckets(window: Window, interval: i64) -> impl Iterator<Item = i64> {
    let interval = interval.max(1);
    let first = bucket_start(window.from, interval);
    (0..)
        .map(move |i| first + i * interval)
        .take_while(move |start| *start < window.to)
}

/// What a report groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grouping {
    Api,
    Operation,
    Product,
    Subscription,
    /// Buckets of this many seconds.
    Time(i64),
}

/// A group's key. Calls without a product or subscription group under `None`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    Api(String),
    Operation {
        api_id: String,
        operation_id: String,
    },
    Product(Option<String>),
    Subscription(Option<String>),
    /// The bucket's start, Unix seconds.
    Time(i64),
}

impl Grouping {
    fn key(self, a: &Aggregate) -> Key {
        match self {
            Grouping::Api => Key::Api(a.api_id.clone()),
            Grouping::Operation => Key::Operation {
                api_id: a.api_id.clone(),
                operation_id: a.operation_id.clone(),
            },
            Grouping::Product => Key::Product(a.product_id.clone()),
            Grouping::Subscription => Key::Subscription(a.subscription_id.clone()),
            Grouping::Time(interval) => Key::Time(bucket_start(a.minute, interval)),
        }
    }
}

/// Everything known about the calls of one group, merged.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    pub counts: Counts,
    pub bandwidth: u64,
    pub api_time: Sketch,
    pub service_time: Sketch,
}

impl Totals {
    pub fn add(&mut self, a: &Aggregate) {
        self.counts.merge(&a.counts);
        self.bandwidth = self.bandwidth.saturating_add(a.bandwidth);
        self.api_time.merge(&a.api_time);
        self.service_time.merge(&a.service_time);
    }

    pub fn figures(&self) -> Figures {
        Figures {
            call_count_total: self.counts.total,
            call_count_success: self.counts.success,
            call_count_blocked: self.counts.blocked,
            call_count_failed: self.counts.failed,
            call_count_other: self.counts.other,
            bandwidth: self.bandwidth,
            api_time_avg: micros(self.api_time.mean_ms()),
            service_time_avg: micros(self.service_time.mean_ms()),
            api_time_p95: micros(self.api_time.quantile_ms(0.95)),
            service_time_p95: micros(self.service_time.quantile_ms(0.95)),
        }
    }
}

/// Milliseconds rounded to whole microseconds: the precision the sketches record.
fn micros(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

/// The figures of one report row. Times are milliseconds; 0 where no call was measured (a
/// call that never reached the backend has no service time).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Figures {
    pub call_count_total: u64,
    /// Calls answered 1xx, 2xx or 3xx.
    pub call_count_success: u64,
    /// Calls the gateway refused with 401, 403 or 429 (missing or invalid key, rate limit,
    /// quota, a policy's refusal).
    pub call_count_blocked: u64,
    /// Calls answered 5xx.
    pub call_count_failed: u64,
    /// Everything else, such as 404 or a backend's own 4xx.
    pub call_count_other: u64,
    /// Request and response body bytes.
    pub bandwidth: u64,
    /// Mean time from the request's arrival to the response's last byte, ms.
    pub api_time_avg: f64,
    /// Mean time the backend took, ms.
    pub service_time_avg: f64,
    /// 95th percentile of the api time, ms (within 2%).
    pub api_time_p95: f64,
    /// 95th percentile of the service time, ms (within 2%).
    pub service_time_p95: f64,
}

/// Groups aggregates. Reports over time come back in time order, the others by calls (most
/// first), then by key.
pub fn group<'a>(
    aggregates: impl IntoIterator<Item = &'a Aggregate>,
    grouping: Grouping,
) -> Vec<(Key, Totals)> {
    let mut groups: BTreeMap<Key, Totals> = BTreeMap::new();
    for a in aggregates {
        groups.entry(grouping.key(a)).or_default().add(a);
    }
    let mut rows: Vec<(Key, Totals)> = groups.into_iter().collect();
    if !matches!(grouping, Grouping::Time(_)) {
        rows.sort_by(|(ka, a), (kb, b)| b.counts.total.cmp(&a.counts.total).then(ka.cmp(kb)));
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::Outcome;

    fn agg(
        minute: i64,
        api: &str,
        op: &str,
        product: Option<&str>,
        calls: &[(Outcome, u64)],
    ) -> Aggregate {
        let mut a = Aggregate {
            minute,
            api_id: api.into(),
            operation_id: op.into(),
            product_id: product.map(Into::into),
            subscription_id: product.map(|p| format!("{p}-sub")),
            ..Default::default()
        };
        for (outcome, micros) in calls {
            a.counts.add(*outcome);
            a.bandwidth += 100;
            a.api_time.record(*micros);
            if *outcome != Outcome::Blocked {
                a.service_time.record(*micros / 2);
            }
        }
        a
    }

    /// A whole hour (2027-01-15T08:00:00Z).
    const T0: i64 = 1_800_000_000;

    fn sample() -> Vec<Aggregate> {
        use Outcome::*;
        vec![
            agg(
                T0,
                "echo",
                "get",
                Some("gold"),
                &[(Success, 1_000), (Success, 3_000), (Failed, 2_000)],
            ),
            agg(T0 + 60, "echo", "get", Some("gold"), &[(Blocked, 500)]),
            agg(T0 + 60, "echo", "post", None, &[(Success, 4_000)]),
            agg(
                T0 + 360,
                "pets",
                "list",
                Some("free"),
                &[(Success, 10_000), (Other, 8_000)],
            ),
        ]
    }

    #[test]
    fn groups_by_api_with_counts_bandwidth_and_latency() {
        let rows = group(&sample(), Grouping::Api);
        let keys: Vec<_> = rows.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(keys, [Key::Api("echo".into()), Key::Api("pets".into())]);
        let echo = rows[0].1.figures();
        assert_eq!(
            (
                echo.call_count_total,
                echo.call_count_success,
                echo.call_count_blocked
            ),
            (5, 3, 1)
        );
        assert_eq!(
            (
                echo.call_count_failed,
                echo.call_count_other,
                echo.bandwidth
            ),
            (1, 0, 500)
        );
        // (1000 + 3000 + 2000 + 500 + 4000) µs / 5 calls; the blocked call has no service time.
        assert_eq!(echo.api_time_avg, 2.1);
        assert_eq!(echo.service_time_avg, 1.25);
        // The 95th percentile of five calls is the largest, 4 ms, within the sketch's 2%.
        assert!(
            (echo.api_time_p95 - 4.0).abs() / 4.0 < 0.02,
            "{}",
            echo.api_time_p95
        );
        assert!(
            (echo.service_time_p95 - 2.0).abs() / 2.0 < 0.02,
            "{}",
            echo.service_time_p95
        );
    }

    #[test]
    fn sorts_by_calls_then_key_and_groups_absent_products_under_none() {
        let keys = |rows: Vec<(Key, Totals)>| -> Vec<(Key, u64)> {
            rows.into_iter().map(|(k, t)| (k, t.counts.total)).collect()
        };
        assert_eq!(
            keys(group(&sample(), Grouping::Product)),
            [
                (Key::Product(Some("gold".into())), 4),
                (Key::Product(Some("free".into())), 2),
                (Key::Product(None), 1),
            ]
        );
        assert_eq!(
            keys(group(&sample(), Grouping::Subscription))[2],
            (Key::Subscription(None), 1)
        );
        let op = |a: &str, o: &str| Key::Operation {
            api_id: a.into(),
            operation_id: o.into(),
        };
        assert_eq!(
            keys(group(&sample(), Grouping::Operation)),
            [
                (op("echo", "get"), 4),
                (op("pets", "list"), 2),
                (op("echo", "post"), 1)
            ]
        );
        // Equal calls: by key.
        use Outcome::Success;
        let tie = [
            agg(T0, "zeta", "a", None, &[(Success, 1)]),
            agg(T0, "alpha", "a", None, &[(Success, 1)]),
        ];
        assert_eq!(
            keys(group(&tie, Grouping::Api)),
            [(Key::Api("alpha".into()), 1), (Key::Api("zeta".into()), 1)]
        );
        assert!(group(&[], Grouping::Api).is_empty());
    }

    #[test]
    fn buckets_are_aligned_to_the_epoch_and_in_time_order() {
        let rows = group(&sample(), Grouping::Time(300));
        let starts: Vec<_> = rows
            .iter()
            .map(|(k, t)| (k.clone(), t.counts.total))
            .collect();
        assert_eq!(starts, [(Key::Time(T0), 5), (Key::Time(T0 + 300), 2)]);
        let window = Window::new(T0 + 120, T0 + 900).unwrap();
        assert_eq!(
            buckets(window, 300).collect::<Vec<_>>(),
            [T0, T0 + 300, T0 + 600]
        );
        assert_eq!(bucket_start(T0 + 3_599, 3_600), T0);
        assert_eq!(bucket_start(-1, 60), -60);
        assert!(
            window.contains(T0 + 120) && !window.contains(T0 + 900) && !window.contains(T0 + 60)
        );
    }

    #[test]
    fn windows_name_the_parameter_at_fault() {
        let reversed = Window::parse(
            Some("2027-01-15T08:00:00Z"),
            Some("2027-01-15T08:59:00+01:00"),
        )
        .unwrap();
        assert_eq!(reversed.from, reversed.to);
        let empty = Window::parse(
            Some("2027-01-15T08:00:00Z"),
            Some("2027-01-15T09:00:00+01:00"),
        )
        .unwrap();
        assert_eq!(empty.from, empty.to);
        let w = Window::parse(
            Some("2027-01-15T08:00:00Z"),
            Some("2027-01-15T10:00:00+01:00"),
        )
        .unwrap();
        assert_eq!(w.to - w.from, 3_600);
        assert_eq!(rfc3339(w.from), "2027-01-15T08:00:00Z");
        assert_eq!(
            Window::parse(None, Some("x")).unwrap_err().details[0].target,
            "from"
        );
        assert_eq!(
            Window::parse(Some("2027-01-15T08:00:00Z"), None)
                .unwrap_err()
                .details[0]
                .target,
            "to"
        );
        assert_eq!(
            Window::parse(Some("yesterday"), Some("2027-01-15T08:00:00Z"))
                .unwrap_err()
                .details[0]
                .target,
            "from"
        );
    }

    #[test]
    fn intervals_are_whole_minutes_from_one_minute_to_one_day() {
        for (text, seconds) in [
            ("PT1M", 60),
            ("PT5M", 300),
            ("PT15M", 900),
            ("PT1H", 3_600),
            ("PT1H30M", 5_400),
            ("PT90M", 5_400),
            ("PT1440M", 86_400),
            ("PT23H59M", 86_340),
            ("P1D", 86_400),
            ("PT24H", 86_400),
        ] {
            assert_eq!(parse_interval(text).unwrap(), seconds, "{text}");
        }
        for bad in [
            "", "5M", "PT", "P", "PT0M", "PT30S", "PT90S", "P2D", "P1M", "P1W", "PT5", "PTM",
            "PT1.5M", "pt5m", "PT5M3", "PT900S", "PT05M", "PT1441M", "PT25H", "PT24H1M", "PT1H60M",
            "PT1H0M", " PT5M", "PT5M ", "P1DT1M", "PT+5M", "PT1H30",
        ] {
            let e = parse_interval(bad).unwrap_err();
            assert_eq!(e.details[0].target, "interval", "{bad}");
        }
        for (seconds, text) in [
            (60, "PT1M"),
            (300, "PT5M"),
            (3_600, "PT1H"),
            (5_400, "PT1H30M"),
            (86_400, "P1D"),
        ] {
            assert_eq!(format_interval(seconds), text);
            assert_eq!(parse_interval(text).unwrap(), seconds);
        }
    }

    proptest::proptest! {
        /// The parser takes exactly what the published pattern matches: strings made of the
        /// pattern's own characters, and strings the pattern generates.
        #[test]
        fn the_interval_parser_accepts_exactly_the_published_pattern(
            near in "P?T?[0-9]{0,5}[DHMST]?[0-9]{0,3}[DHMS]?",
            inside in proptest::string::string_regex(
                INTERVAL_PATTERN.trim_start_matches('^').trim_end_matches('$')
            ).expect("the pattern generates"),
        ) {
            let pattern = regex::Regex::new(INTERVAL_PATTERN).expect("the pattern compiles");
            for text in [near.as_str(), inside.as_str()] {
                proptest::prop_assert_eq!(
                    pattern.is_match(text),
                    parse_interval(text).is_ok(),
                    "{}", text
                );
            }
            proptest::prop_assert!(parse_interval(&inside).is_ok(), "{}", inside);
        }
    }
}
