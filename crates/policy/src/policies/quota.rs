//! `<quota calls="N" bandwidth="KB" renewal-period="S">` (per subscription, with nested `<api>`
//! and `<operation>` quotas; product scope only) and `<quota-by-key calls bandwidth
//! renewal-period counter-key="@(…)" increment-condition="@(…)" increment-count
//! first-period-start/>`: over the quota, the caller gets 403 `Out of call volume quota. Quota
//! will be replenished in HH:MM:SS.` (or `Out of bandwidth quota. …`) with `Retry-After`.
//!
//! Windows are fixed and aligned: they start at `first-period-start` (default
//! 0001-01-01T00:00:00Z) and every `renewal-period` seconds after it, so every gateway of a
//! fleet agrees on when a quota renews. Azure starts `quota` windows when the subscription was
//! created; snapshots don't carry that time, so `quota` uses the same default origin.
//! `renewal-period="0"` never renews.
//!
//! What is counted, and when:
//! - calls, when the request arrives (so concurrent callers cannot overshoot), unless the
//!   `increment-condition` reads `context.Response`: then the quota is checked on arrival and
//!   the call counted once the response is known;
//! - bandwidth, once the response is known: the request body and the response body in bytes,
//!   each as buffered, else as its `Content-Length` says; a streamed body without a length
//!   counts nothing. A request is refused once the window's bandwidth is used up.
//!
//! A key that several `quota-by-key` policies count is counted once per request, as in Azure.

use std::time::{Duration, SystemTime};

use http::{HeaderValue, StatusCode};

use super::check_header::json_error;
use crate::compile::{Cx, Scope};
use crate::exchange::Exchange;
use crate::run::{Budget, Flow, Io, PolicyError};
use crate::text::PolicyText;
use crate::xml::Element;

/// What "never renews" is counted as.
const FOREVER: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Azure's default `first-period-start`, 0001-01-01T00:00:00Z, in Unix seconds.
const YEAR_ONE: i64 = -62_135_596_800;
/// Longest renewal period accepted: about ten years.
const MAX_PERIOD: u64 = 10 * 365 * 24 * 3600;

/// One quota: for requests that match `api`/`operation` when set.
#[derive(Debug, Clone)]
struct Limit {
    calls: Option<u64>,
    /// In kilobytes, as written.
    bandwidth: Option<u64>,
    /// `None` never renews.
    period: Option<Duration>,
    api: Option<String>,
    operation: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Quota {
    by_key: bool,
    limits: Vec<Limit>,
    counter_key: Option<PolicyText>,
    increment_condition: Option<PolicyText>,
    increment_count: Option<PolicyText>,
    /// The increment condition reads `context.Response`: count when the response is known.
    condition_after_response: bool,
    /// Unix seconds where the windows start.
    first_period_start: i64,
}

/// Counting left for after the response (see the module comment).
#[derive(Debug, Clone)]
pub struct QuotaCharge {
    key: String,
    limit: u64,
    period: Option<Duration>,
    origin: i64,
    what: Charge,
}

#[derive(Debug, Clone)]
enum Charge {
    /// Already counted on arrival (kept so a second policy on the same key doesn't count it
    /// again).
    Counted,
    Calls {
        condition: Option<PolicyText>,
        count: u64,
    },
    Bandwidth {
        condition: Option<PolicyText>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Calls,
    Bandwidth,
}

fn limit(cx: &mut Cx<'_>, el: &Element, by_key: bool) -> Option<Limit> {
    let calls = match el.attr("calls") {
        Some(_) => Some(cx.u64_attr(el, "calls", 1, u64::from(u32::MAX))?),
        None => None,
    };
    let bandwidth = match el.attr("bandwidth") {
        Some(_) => Some(cx.u64_attr(el, "bandwidth", 1, u64::from(u32::MAX))?),
        None => None,
    };
    if calls.is_none() && bandwidth.is_none() {
        cx.error(
            el.pos,
            format!(
                "<{}> needs 'calls', 'bandwidth' (kilobytes), or both",
                el.name
            ),
        );
        return None;
    }
    let period = match el.attr("renewal-period") {
        Some(a) => {
            let secs = cx.u64_attr(el, "renewal-period", 0, MAX_PERIOD)?;
            if by_key && secs > 0 && secs < 300 {
                cx.error(
                    a.pos,
                    "'renewal-period' of <quota-by-key> must be 0 (never renews) or at least 300 seconds",
                );
                return None;
            }
            (secs > 0).then(|| Duration::from_secs(secs))
        }
        None => {
            cx.error(
                el.pos,
                format!(
                    "<{}> needs the attribute 'renewal-period' (seconds; 0 never renews)",
                    el.name
                ),
            );
            return None;
        }
    };
    Some(Limit {
        calls,
        bandwidth,
        period,
        api: None,
        operation: None,
    })
}

/// `yyyy-MM-ddTHH:mm:ssZ` as Unix seconds.
fn parse_start(text: &str) -> Option<i64> {
    let t =
        time::OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339)
            .ok()?;
    Some(t.unix_timestamp())
}

/// A span as .NET prints a `TimeSpan`: `hh:mm:ss`, with `d.` in front from one day on.
pub(crate) fn timespan(d: Duration) -> String {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rest / 3600, rest % 3600 / 60, rest % 60);
    if days > 0 {
        format!("{days}.{h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

/// The current window of a period starting at `origin`: its number and the time left in it.
fn window(origin: i64, period: Option<Duration>, now: SystemTime) -> (i128, Duration) {
    let Some(period) = period else {
        return (0, FOREVER);
    };
    let now_ms: i128 = match now.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i128::try_from(d.as_millis()).unwrap_or(i128::MAX),
        Err(e) => -i128::try_from(e.duration().as_millis()).unwrap_or(i128::MAX),
    };
    let period_ms = i128::try_from(period.as_millis())
        .unwrap_or(i128::MAX)
        .max(1);
    let elapsed = (now_ms - i128::from(origin) * 1000).max(0);
    let index = elapsed / period_ms;
    let left = period_ms - elapsed % period_ms;
    let left = u64::try_from(left).unwrap_or(u64::MAX);
    (index, Duration::from_millis(left))
}

impl Quota {
    pub fn name(&self) -> &'static str {
        if self.by_key { "quota-by-key" } else { "quota" }
    }

    pub fn compile(el: &Element, cx: &mut Cx<'_>, by_key: bool) -> Option<Self> {
        let mut allowed = vec!["calls", "bandwidth", "renewal-period"];
        if by_key {
            allowed.extend([
                "counter-key",
                "increment-condition",
                "increment-count",
                "first-period-start",
            ]);
            cx.no_children(el);
        } else {
            cx.allow_children(el, &["api"]);
            if cx.scope != Scope::Product {
                cx.error(
                    el.pos,
                    format!(
                        "<quota> counts per subscription and may only be used in a product's policy, not at the {} scope; use <quota-by-key> elsewhere",
                        cx.scope.name()
                    ),
                );
                return None;
            }
        }
        cx.allow_attrs(el, &allowed);
        let mut limits = vec![limit(cx, el, by_key)?];
        if !by_key {
            for api in el.elements() {
                cx.allow_attrs(api, &["name", "id", "calls", "bandwidth", "renewal-period"]);
                cx.allow_children(api, &["operation"]);
                // Azure: when both are given, `id` is used and `name` ignored.
                let api_id = cx.literal(api, "id").or_else(|| cx.literal(api, "name"));
                if api_id.is_none() {
                    cx.error(api.pos, "<api> needs id or name");
                }
                if let Some(mut l) = limit(cx, api, false) {
                    l.api.clone_from(&api_id);
                    limits.push(l);
                }
                for op in api.elements() {
                    cx.allow_attrs(op, &["name", "id", "calls", "bandwidth", "renewal-period"]);
                    cx.no_children(op);
                    let op_id = cx.literal(op, "id").or_else(|| cx.literal(op, "name"));
                    if op_id.is_none() {
                        cx.error(op.pos, "<operation> needs id or name");
                    }
                    if let Some(mut l) = limit(cx, op, false) {
                        l.api.clone_from(&api_id);
                        l.operation = op_id;
                        limits.push(l);
                    }
                }
            }
        }
        let (counter_key, increment_condition, increment_count, first_period_start) = if by_key {
            let key = cx.req_text(el, "counter-key");
            let condition = cx.opt_text(el, "increment-condition");
            let count = cx.opt_text(el, "increment-count");
            if let Some(lit) = count.as_ref().and_then(PolicyText::as_literal)
                && lit.trim().parse::<u32>().is_err()
            {
                let pos = el.attr("increment-count").map_or(el.pos, |a| a.pos);
                cx.error(
                    pos,
                    format!("'increment-count' must be a whole number, not '{lit}'"),
                );
                return None;
            }
            let start = match cx.literal(el, "first-period-start") {
                Some(text) => match parse_start(&text) {
                    Some(s) => s,
                    None => {
                        let pos = el.attr("first-period-start").map_or(el.pos, |a| a.pos);
                        cx.error(
                            pos,
                            format!("'first-period-start' must be a date and time such as 2024-01-01T00:00:00Z, not '{text}'"),
                        );
                        return None;
                    }
                },
                None => YEAR_ONE,
            };
            (Some(key?), condition, count, start)
        } else {
            (None, None, None, YEAR_ONE)
        };
        let condition_after_response = increment_condition
            .as_ref()
            .and_then(PolicyText::source)
            .is_some_and(|s| s.contains("context.Response"));
        Some(Self {
            by_key,
            limits,
            counter_key,
            increment_condition,
            increment_count,
            condition_after_response,
            first_period_start,
        })
    }

    pub fn texts(&self) -> Vec<&PolicyText> {
        self.counter_key
            .iter()
            .chain(self.increment_condition.iter())
            .chain(self.increment_count.iter())
            .collect()
    }

    fn applies(&self, l: &Limit, ex: &Exchange) -> bool {
        let matches = |want: &Option<String>, id: &str, name: &str| {
            want.as_deref()
                .is_none_or(|w| w.eq_ignore_ascii_case(id) || w.eq_ignore_ascii_case(name))
        };
        matches(&l.api, &ex.info.api_id, &ex.info.api_name)
            && matches(&l.operation, &ex.info.operation_id, &ex.info.operation_name)
    }

    pub async fn run<I: Io>(
        &self,
        ex: &mut Exchange,
        io: &mut I,
        budget: &mut Budget,
    ) -> Result<Flow, PolicyError> {
        let base = match &self.counter_key {
            Some(k) => format!("qk\u{1f}{}", k.eval(ex, budget)?),
            None => match &ex.info.subscription {
                Some(s) => format!("q\u{1f}{}", s.id),
                // Azure applies `quota` only to calls made with a subscription key.
                None => return Ok(Flow::Continue),
            },
        };
        // Whether and how much this request counts, if that can be known now.
        let (count_now, increment) = if self.condition_after_response {
            (false, 0)
        } else {
            let counts = match &self.increment_condition {
                Some(c) => c.eval_bool(ex, budget)?,
                None => true,
            };
            let n = match (&self.increment_count, counts) {
                (_, false) => 0,
                (Some(n), true) => n.eval_u64(ex, budget)?,
                (None, true) => 1,
            };
            (true, n)
        };
        let now = SystemTime::now();
        // Every counter this request meets: (kind, limit, key, period).
        let mut counters = Vec::new();
        for l in self.limits.iter().filter(|l| self.applies(l, ex)) {
            let scope = if self.by_key {
                String::new()
            } else {
                format!(
                    "{}\u{1f}{}",
                    l.api.as_deref().unwrap_or(""),
                    l.operation.as_deref().unwrap_or("")
                )
            };
            let period_secs = l.period.map_or(0, |p| p.as_secs());
            let bandwidth = l.bandwidth.map(|kb| kb.saturating_mul(1024));
            for (kind, max) in [(Kind::Calls, l.calls), (Kind::Bandwidth, bandwidth)] {
                let Some(max) = max else { continue };
                let tag = if kind == Kind::Calls { "c" } else { "b" };
                let key = format!("{base}\u{1f}{scope}\u{1f}{period_secs}\u{1f}{tag}");
                // A key another policy counts for this request already is left to it.
                if !ex.quota_charges.iter().any(|c| c.key == key) {
                    counters.push((kind, max, key, l.period));
                }
            }
        }
        let charged = |kind: Kind| kind == Kind::Calls && count_now && increment > 0;
        // With several counters to charge (nested quotas), check them all first, so a call
        // refused by one is not counted by the others. A single one is checked and charged in
        // one step, which stays exact under concurrency.
        let precheck = counters.iter().filter(|c| charged(c.0)).count() > 1;
        for pass in [true, false] {
            if pass && !precheck {
                continue;
            }
            for (kind, max, key, period) in &counters {
                let (index, left) = window(self.first_period_start, *period, now);
                let window_key = format!("{key}\u{1f}{index}");
                let charge = !pass && charged(*kind);
                let d = io
                    .count(&window_key, *max, left, if charge { increment } else { 0 })
                    .await;
                let needed = if charged(*kind) { increment } else { 1 };
                let exhausted = !d.allowed || (!charge && d.remaining < needed);
                if exhausted {
                    let retry_after = period.is_some().then_some(d.retry_after);
                    ex.response = Some(refusal(*kind, retry_after));
                    ex.refused = Some(("quota", "QuotaExceeded"));
                    return Ok(Flow::Return);
                }
            }
        }
        for (kind, max, key, period) in counters {
            let what = match kind {
                Kind::Calls if count_now => Charge::Counted,
                Kind::Calls => Charge::Calls {
                    condition: self.increment_condition.clone(),
                    count: 1,
                },
                Kind::Bandwidth => Charge::Bandwidth {
                    condition: self.increment_condition.clone(),
                },
            };
            ex.quota_charges.push(QuotaCharge {
                key,
                limit: max,
                period,
                origin: self.first_period_start,
                what,
            });
        }
        Ok(Flow::Continue)
    }
}

/// The 403 of a used-up quota.
fn refusal(kind: Kind, retry_after: Option<Duration>) -> crate::exchange::Response {
    let what = match kind {
        Kind::Calls => "call volume",
        Kind::Bandwidth => "bandwidth",
    };
    let message = match retry_after {
        Some(d) => format!(
            "Out of {what} quota. Quota will be replenished in {}.",
            timespan(d)
        ),
        None => format!("Out of {what} quota."),
    };
    let mut r = json_error(StatusCode::FORBIDDEN, &message);
    if let Some(d) = retry_after {
        let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
        r.headers
            .insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}

/// Bytes of a body: as buffered, else as `Content-Length` says, else nothing.
fn body_len(body: Option<&bytes::Bytes>, headers: &http::HeaderMap) -> u64 {
    match body {
        Some(b) if !b.is_empty() => b.len() as u64,
        _ => headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0),
    }
}

/// Counts what was left for after the response: calls whose increment condition reads the
/// response, and bandwidth. Runs once the pipeline has its answer.
pub(crate) async fn settle<I: Io>(ex: &mut Exchange, io: &mut I, budget: &mut Budget) {
    let charges = std::mem::take(&mut ex.quota_charges);
    let now = SystemTime::now();
    for c in &charges {
        let amount = match &c.what {
            Charge::Counted => continue,
            Charge::Calls { condition, count } => match counts(condition.as_ref(), ex, budget) {
                true => *count,
                false => 0,
            },
            Charge::Bandwidth { condition } => {
                if !counts(condition.as_ref(), ex, budget) {
                    continue;
                }
                let request = body_len(ex.request.body.as_ref(), &ex.request.headers);
                let response = ex
                    .response
                    .as_ref()
                    .map_or(0, |r| body_len(r.body.as_ref(), &r.headers));
                request + response
            }
        };
        if amount == 0 {
            continue;
        }
        let (index, left) = window(c.origin, c.period, now);
        let key = format!("{}\u{1f}{index}", c.key);
        // Counted even past the limit: the next request is refused until the window renews.
        let d = io.count(&key, c.limit, left, amount).await;
        if !d.allowed && d.remaining > 0 {
            io.count(&key, c.limit, left, d.remaining).await;
        }
    }
}

fn counts(condition: Option<&PolicyText>, ex: &Exchange, budget: &mut Budget) -> bool {
    match condition {
        None => true,
        Some(c) => match c.eval_bool(ex, budget) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(reason = %e.reason, message = %e.message, "quota increment-condition failed; the request is not counted");
                false
            }
        },
    }
}

#[cfg(test)]
mod tests;
