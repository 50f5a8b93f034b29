//! The traffic page: for a window ending now, a table of calls by outcome and latency per API,
//! and per API three charts over time: requests, errors (failed and blocked calls) and the 95th
//! percentile of the api time.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::Response;
use gatehouse_model::reports::{self, Figures, Grouping, Key, Totals, Window};
use gatehouse_model::resources::Api;
use minijinja::context;
use minijinja::value::Serde;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::macros::format_description;

use super::Console;
use super::chart::{self, Axis, Chart, Series};
use super::session::Admin;
use crate::error::{PortalError, PortalResult};

/// A window the page offers: its key in the URL, its label, its length and its bucket (both in
/// seconds). Buckets are small enough for detail and few enough (at most 96) to read.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Preset {
    pub key: &'static str,
    pub label: &'static str,
    pub seconds: i64,
    pub interval: i64,
}

pub const PRESETS: &[Preset] = &[
    Preset {
        key: "15m",
        label: "Last 15 minutes",
        seconds: 900,
        interval: 60,
    },
    Preset {
        key: "1h",
        label: "Last hour",
        seconds: 3_600,
        interval: 60,
    },
    Preset {
        key: "6h",
        label: "Last 6 hours",
        seconds: 21_600,
        interval: 300,
    },
    Preset {
        key: "24h",
        label: "Last 24 hours",
        seconds: 86_400,
        interval: 900,
    },
    Preset {
        key: "7d",
        label: "Last 7 days",
        seconds: 604_800,
        interval: 7_200,
    },
    Preset {
        key: "30d",
        label: "Last 30 days",
        seconds: 2_592_000,
        interval: 43_200,
    },
];

const DEFAULT_PRESET: usize = 1;

/// APIs that get charts, busiest first; the rest are in the table.
const MAX_CHARTED: usize = 20;

impl Preset {
    /// The window ending with the bucket that holds `now`, so the current (partial) bucket is
    /// the last one and every bucket lies wholly inside.
    pub fn window(&self, now: i64) -> Window {
        let to = reports::bucket_start(now, self.interval) + self.interval;
        Window {
            from: to - self.seconds,
            to,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct TrafficQuery {
    window: Option<String>,
    api: Option<String>,
}

#[derive(Debug, Serialize)]
struct ApiRow {
    id: String,
    name: Option<String>,
    /// The API no longer exists; its traffic is history.
    deleted: bool,
    #[serde(flatten)]
    figures: Figures,
    charted: bool,
}

#[derive(Debug, Serialize)]
struct ApiCharts {
    id: String,
    name: Option<String>,
    charts: Vec<Chart>,
}

/// A Unix time in UTC, formatted.
fn when(unix: i64, format: &[time::format_description::BorrowedFormatItem<'_>]) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|d| d.format(format).ok())
        .unwrap_or_default()
}

fn axis(window: Window, interval: i64) -> (Vec<i64>, Axis) {
    let starts: Vec<i64> = reports::buckets(window, interval).collect();
    let long = window.to - window.from > 2 * 86_400;
    let short = if long {
        format_description!("[month]-[day]")
    } else {
        format_description!("[hour]:[minute]")
    };
    let full = format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    let axis = Axis {
        labels: starts.iter().map(|t| when(*t, full)).collect(),
        ticks: starts.iter().map(|t| when(*t, short)).collect(),
    };
    (starts, axis)
}

/// "minute", "5 minutes", "2 hours", "day".
fn human_interval(seconds: i64) -> String {
    let (n, unit) = if seconds % 86_400 == 0 {
        (seconds / 86_400, "day")
    } else if seconds % 3_600 == 0 {
        (seconds / 3_600, "hour")
    } else {
        (seconds / 60, "minute")
    };
    if n == 1 {
        unit.to_owned()
    } else {
        format!("{n} {unit}s")
    }
}

/// The three charts of one API from its aggregates.
fn charts(
    api: &str,
    aggregates: &[&gatehouse_model::telemetry::Aggregate],
    window: Window,
    interval: i64,
) -> Vec<Chart> {
    let by_bucket: HashMap<i64, Totals> =
        reports::group(aggregates.iter().copied(), Grouping::Time(interval))
            .into_iter()
            .filter_map(|(key, totals)| match key {
                Key::Time(start) => Some((start, totals)),
                _ => None,
            })
            .collect();
    let (starts, axis) = axis(window, interval);
    let value = |f: &dyn Fn(&Totals) -> u64| -> Vec<f64> {
        starts
            .iter()
            .map(|s| by_bucket.get(s).map_or(0.0, |t| f(t) as f64))
            .collect()
    };
    let per = human_interval(interval);
    let requests = chart::bars(
        "requests",
        format!("Requests per {per}"),
        format!("Calls to {api} per {per}."),
        &axis,
        &[Series {
            name: "total",
            noun: "calls",
            values: value(&|t| t.counts.total),
        }],
    );
    let errors = chart::bars(
        "errors",
        format!("Errors per {per}"),
        format!("Failed (5xx) and blocked (401, 403, 429) calls to {api} per {per}."),
        &axis,
        &[
            Series {
                name: "failed",
                noun: "failed",
                values: value(&|t| t.counts.failed),
            },
            Series {
                name: "blocked",
                noun: "blocked",
                values: value(&|t| t.counts.blocked),
            },
        ],
    );
    let p95: Vec<Option<f64>> = starts
        .iter()
        .map(|s| {
            by_bucket
                .get(s)
                .filter(|t| !t.api_time.is_empty())
                .map(|t| t.figures().api_time_p95)
        })
        .collect();
    let latency = chart::line(
        "latency",
        format!("95th percentile latency per {per}"),
        format!(
            "The 95th percentile of the time {api} took to answer, per {per}, in milliseconds."
        ),
        &axis,
        &p95,
        " ms",
    );
    vec![requests, errors, latency]
}

pub async fn page(
    State(console): State<Arc<Console>>,
    admin: Admin,
    query: Result<Query<TrafficQuery>, axum::extract::rejection::QueryRejection>,
) -> PortalResult<Response> {
    let Query(query) = query.map_err(|e| {
        PortalError::BadRequest(format!(
            "The address's query is malformed: {}.",
            e.body_text()
        ))
    })?;
    let preset = match query.window.as_deref().filter(|w| !w.is_empty()) {
        None => PRESETS[DEFAULT_PRESET],
        Some(key) => *PRESETS.iter().find(|p| p.key == key).ok_or_else(|| {
            PortalError::BadRequest(format!(
                "There is no window '{key}'; choose one of {}.",
                PRESETS.iter().map(|p| p.key).collect::<Vec<_>>().join(", ")
            ))
        })?,
    };
    let api_filter = query.api.as_deref().filter(|a| !a.is_empty());
    if let Some(api) = api_filter {
        gatehouse_model::resources::validate_id("api", api)
            .map_err(|e| PortalError::BadRequest(e.message))?;
    }
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let window = preset.window(now);
    let aggregates = console
        .store
        .telemetry_minutes(window.from, window.to, api_filter)
        .await?;

    let mut names: HashMap<String, String> = HashMap::new();
    // An API that does not read is shown by id.
    for api in console.store.repo::<Api>().lenient().entries("").await? {
        names.insert(api.id, api.value.display_name);
    }
    let mut rows: Vec<ApiRow> = reports::group(&aggregates, Grouping::Api)
        .into_iter()
        .filter_map(|(key, totals)| match key {
            Key::Api(id) => Some(ApiRow {
                name: names.get(&id).cloned(),
                deleted: !names.contains_key(&id),
                id,
                figures: totals.figures(),
                charted: false,
            }),
            _ => None,
        })
        .collect();
    let mut charted = Vec::new();
    for row in rows.iter_mut().take(MAX_CHARTED) {
        let own: Vec<_> = aggregates.iter().filter(|a| a.api_id == row.id).collect();
        row.charted = true;
        charted.push(ApiCharts {
            id: row.id.clone(),
            name: row.name.clone(),
            charts: charts(&row.id, &own, window, preset.interval),
        });
    }
    let mut choices: Vec<(String, String)> = names.into_iter().collect();
    for row in &rows {
        if row.deleted {
            choices.push((row.id.clone(), format!("{} (deleted)", row.id)));
        }
    }
    choices.sort();
    let mut all = Totals::default();
    for a in &aggregates {
        all.add(a);
    }
    console.page(
        &admin,
        "admin/traffic.html",
        context! {
            page => "traffic",
            presets => Serde(PRESETS),
            preset => Serde(preset),
            api => api_filter,
            choices => Serde(&choices),
            from => reports::rfc3339(window.from),
            to => reports::rfc3339(window.to),
            from_label => when(window.from, format_description!("[year]-[month]-[day] [hour]:[minute]")),
            to_label => when(window.to, format_description!("[year]-[month]-[day] [hour]:[minute]")),
            interval => human_interval(preset.interval),
            summary => Serde(all.figures()),
            rows => Serde(&rows),
            charted => Serde(&charted),
            hidden => rows.len().saturating_sub(MAX_CHARTED),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_read_as_words() {
        assert_eq!(human_interval(60), "minute");
        assert_eq!(human_interval(300), "5 minutes");
        assert_eq!(human_interval(7_200), "2 hours");
        assert_eq!(human_interval(43_200), "12 hours");
        assert_eq!(human_interval(86_400), "day");
    }

    #[test]
    fn presets_end_with_the_current_bucket() {
        let now = 1_800_000_000 + 3_725; // 09:02:05
        let w = PRESETS[DEFAULT_PRESET].window(now);
        assert_eq!(w.to, 1_800_000_000 + 3_780);
        assert_eq!(w.to - w.from, 3_600);
        assert_eq!(reports::buckets(w, 60).count(), 60);
        for p in PRESETS {
            let w = p.window(now);
            let n = reports::buckets(w, p.interval).count() as i64;
            assert_eq!(n, p.seconds / p.interval, "{}", p.key);
            assert!(n <= 96, "{}", p.key);
            assert!(w.contains(now));
        }
    }
}
