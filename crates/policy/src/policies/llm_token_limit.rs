//! `<llm-token-limit>` and `<azure-openai-token-limit>` (inbound): limit the tokens a key's
//! calls to a language model use, per minute, per period, or both.
//!
//! ```xml
//! <llm-token-limit counter-key="@(context.Subscription.Id)"
//!     tokens-per-minute="10000" token-quota="500000" token-quota-period="Hourly|Daily|Weekly|Monthly|Yearly"
//!     estimate-prompt-tokens="true|false"
//!     retry-after-header-name="…" retry-after-variable-name="…"
//!     remaining-tokens-header-name="…" remaining-tokens-variable-name="…"
//!     remaining-quota-tokens-header-name="…" remaining-quota-tokens-variable-name="…"
//!     tokens-consumed-header-name="…" tokens-consumed-variable-name="…" />
//! ```
//!
//! One counter per key value, whichever scope and whichever of the two elements uses it, as in
//! Azure. On arrival the request is refused when the key has no tokens left in the minute (429
//! `Token limit is exceeded. Try again in N seconds.`, with `Retry-After` or the header
//! `retry-after-header-name` names) or in the quota period (403 `Out of token quota. Quota will
//! be replenished in HH:MM:SS.`). With `estimate-prompt-tokens` the prompt is estimated (see
//! [`super::llm`]) and counted at once, and a prompt that alone would go over is refused.
//! When the answer is known, the tokens its `usage` reports are counted (less the estimate
//! already counted), past the limit if need be, so the next call is refused until the window
//! renews; a concurrent burst can overshoot by its in-flight calls, as in Azure.
//!
//! The quota periods are calendar periods in UTC: the hour, the day, the week from Monday, the
//! month, the year. The `…-variable-name` variables and `…-header-name` headers (on the
//! client's answer) hold the tokens left in the minute and in the quota, and the tokens the call
//! consumed: on arrival, then updated once the answer's usage is known (before outbound runs).
//! `tokens-per-minute` and `token-quota` may be named values or expressions.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, StatusCode};

use super::check_header::json_error;
use super::llm::{Pending, Usage};
use super::param::Param;
use super::quota::timespan;
use crate::compile::Cx;
use crate::exchange::Exchange;
use crate::expr::Value;
use crate::run::{Budget, Flow, Io, PolicyError};
use crate::text::PolicyText;
use crate::xml::Element;

const MINUTE: Duration = Duration::from_secs(60);

/// `token-quota-period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Period {
    const ALL: [(&'static str, Period); 5] = [
        ("Hourly", Period::Hourly),
        ("Daily", Period::Daily),
        ("Weekly", Period::Weekly),
        ("Monthly", Period::Monthly),
        ("Yearly", Period::Yearly),
    ];

    /// The current window at `now`: a name for it and the time left in it.
    fn window(self, now: time::OffsetDateTime) -> (String, Duration) {
        use time::{Date, Month, Time};
        let date = now.date();
        let start_of = |d: Date| d.with_time(Time::MIDNIGHT).assume_utc();
        let (name, next) = match self {
            Period::Hourly => {
                let hour = start_of(date) + time::Duration::hours(i64::from(now.hour()));
                (
                    format!("h{}", hour.unix_timestamp()),
                    hour + time::Duration::HOUR,
                )
            }
            Period::Daily => (
                format!("d{}", date.to_julian_day()),
                start_of(date) + time::Duration::DAY,
            ),
            Period::Weekly => {
                let monday = date
                    - time::Duration::days(i64::from(date.weekday().number_days_from_monday()));
                (
                    format!("w{}", monday.to_julian_day()),
                    start_of(monday) + time::Duration::WEEK,
                )
            }
            Period::Monthly => {
                let (y, m) = (date.year(), date.month());
                let next = match m {
                    Month::December => Date::from_calendar_date(y + 1, Month::January, 1),
                    _ => Date::from_calendar_date(y, m.next(), 1),
                };
                (
                    format!("m{y}-{}", u8::from(m)),
                    next.map_or(now + time::Duration::DAY, start_of),
                )
            }
            Period::Yearly => {
                let y = date.year();
                (
                    format!("y{y}"),
                    Date::from_calendar_date(y + 1, Month::January, 1)
                        .map_or(now + time::Duration::DAY, start_of),
                )
            }
        };
        let left = (next - now).max(time::Duration::SECOND);
        (
            name,
            Duration::from_millis(u64::try_from(left.whole_milliseconds()).unwrap_or(1000)),
        )
    }
}

fn parse_tokens(s: &str) -> Option<u64> {
    s.parse::<u64>().ok().filter(|n| *n >= 1)
}

#[derive(Debug, Clone)]
pub struct LlmTokenLimit {
    /// The element: `llm-token-limit` or `azure-openai-token-limit`.
    element: &'static str,
    counter_key: PolicyText,
    per_minute: Option<Param<u64>>,
    quota: Option<(Param<u64>, Period)>,
    pub estimate: bool,
    names: Arc<Names>,
}

/// Where the policy reports what it counted.
#[derive(Debug, Clone, Default)]
pub(crate) struct Names {
    retry_after_header: Option<HeaderName>,
    retry_after_variable: Option<String>,
    remaining_header: Option<HeaderName>,
    remaining_variable: Option<String>,
    remaining_quota_header: Option<HeaderName>,
    remaining_quota_variable: Option<String>,
    consumed_header: Option<HeaderName>,
    consumed_variable: Option<String>,
}

/// The counting left for when the answer is known.
#[derive(Debug, Clone)]
pub(crate) struct Charge {
    minute: Option<(String, u64)>,
    quota: Option<(String, u64, Duration)>,
    /// Tokens counted on arrival (the prompt estimate).
    estimated: u64,
    names: Arc<Names>,
}

const ATTRS: [&str; 13] = [
    "counter-key",
    "tokens-per-minute",
    "token-quota",
    "token-quota-period",
    "estimate-prompt-tokens",
    "retry-after-header-name",
    "retry-after-variable-name",
    "remaining-tokens-header-name",
    "remaining-tokens-variable-name",
    "remaining-quota-tokens-header-name",
    "remaining-quota-tokens-variable-name",
    "tokens-consumed-header-name",
    "tokens-consumed-variable-name",
];

fn header(cx: &mut Cx<'_>, el: &Element, name: &str) -> Option<HeaderName> {
    let v = cx.literal(el, name)?;
    match HeaderName::from_bytes(v.trim().as_bytes()) {
        Ok(h) => Some(h),
        Err(_) => {
            let pos = el.attr(name).map_or(el.pos, |a| a.pos);
            cx.error(pos, format!("'{v}' is not a valid header name"));
            None
        }
    }
}

fn variable(cx: &mut Cx<'_>, el: &Element, name: &str) -> Option<String> {
    let v = cx.literal(el, name)?.trim().to_owned();
    if v.is_empty() {
        let pos = el.attr(name).map_or(el.pos, |a| a.pos);
        cx.error(pos, format!("'{name}' must not be empty"));
        return None;
    }
    Some(v)
}

impl LlmTokenLimit {
    pub fn name(&self) -> &'static str {
        self.element
    }

    pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Self> {
        let element = if el.name == "azure-openai-token-limit" {
            "azure-openai-token-limit"
        } else {
            "llm-token-limit"
        };
        cx.allow_attrs(el, &ATTRS);
        cx.no_children(el);
        let counter_key = cx.req_text(el, "counter-key");
        let what = "a whole number of tokens, at least 1";
        let per_minute = el
            .attr("tokens-per-minute")
            .map(|_| Param::compile(cx, el, "tokens-per-minute", what, parse_tokens, 1));
        let quota_tokens = el
            .attr("token-quota")
            .map(|_| Param::compile(cx, el, "token-quota", what, parse_tokens, 1));
        let period = el.attr("token-quota-period").map(|_| {
            let names: Vec<&'static str> = Period::ALL.iter().map(|(n, _)| *n).collect();
            let chosen = cx.choice(el, "token-quota-period", &names, "Monthly");
            Period::ALL
                .iter()
                .find(|(n, _)| *n == chosen)
                .map_or(Period::Monthly, |(_, p)| *p)
        });
        let quota = match (quota_tokens, period) {
            (Some(t), Some(p)) => Some((t, p)),
            (None, None) => None,
            (Some(_), None) => {
                cx.error(
                    el.pos,
                    format!("<{element}> with 'token-quota' needs 'token-quota-period' (Hourly, Daily, Weekly, Monthly or Yearly)"),
                );
                None
            }
            (None, Some(_)) => {
                cx.error(
                    el.pos,
                    format!("<{element}> with 'token-quota-period' needs 'token-quota'"),
                );
                None
            }
        };
        if per_minute.is_none()
            && el.attr("token-quota").is_none()
            && el.attr("token-quota-period").is_none()
        {
            cx.error(
                el.pos,
                format!("<{element}> needs 'tokens-per-minute', 'token-quota' with 'token-quota-period', or both"),
            );
        }
        let estimate = cx.bool_attr(el, "estimate-prompt-tokens", false);
        let names = Names {
            retry_after_header: header(cx, el, "retry-after-header-name"),
            retry_after_variable: variable(cx, el, "retry-after-variable-name"),
            remaining_header: header(cx, el, "remaining-tokens-header-name"),
            remaining_variable: variable(cx, el, "remaining-tokens-variable-name"),
            remaining_quota_header: header(cx, el, "remaining-quota-tokens-header-name"),
            remaining_quota_variable: variable(cx, el, "remaining-quota-tokens-variable-name"),
            consumed_header: header(cx, el, "tokens-consumed-header-name"),
            consumed_variable: variable(cx, el, "tokens-consumed-variable-name"),
        };
        Some(Self {
            element,
            counter_key: counter_key?,
            per_minute,
            quota,
            estimate,
            names: Arc::new(names),
        })
    }

    pub fn texts(&self) -> Vec<&PolicyText> {
        let mut out = vec![&self.counter_key];
        out.extend(self.per_minute.iter().filter_map(Param::text));
        out.extend(self.quota.iter().filter_map(|(t, _)| t.text()));
        out
    }

    pub async fn run<I: Io>(
        &self,
        ex: &mut Exchange,
        io: &mut I,
        budget: &mut Budget,
    ) -> Result<Flow, PolicyError> {
        let key = self.counter_key.eval(ex, budget)?.into_owned();
        let per_minute = match &self.per_minute {
            Some(p) => Some(p.get(ex, budget)?),
            None => None,
        };
        let quota = match &self.quota {
            Some((tokens, period)) => Some((tokens.get(ex, budget)?, *period)),
            None => None,
        };
        let estimated = if self.estimate {
            ex.request
                .body
                .as_deref()
                .map_or(0, super::llm::estimate_prompt)
        } else {
            0
        };
        let names = &self.names;
        let mut charge = Charge {
            minute: None,
            quota: None,
            estimated,
            names: names.clone(),
        };
        if let Some(limit) = per_minute {
            let counter = format!("llm-tpm\u{1f}{key}");
            let d = io.count(&counter, limit, MINUTE, estimated).await;
            if !d.allowed || (estimated == 0 && d.remaining == 0) {
                return Ok(self.refuse_minute(ex, d.retry_after));
            }
            names.report_remaining(ex, d.remaining);
            charge.minute = Some((counter, limit));
        }
        if let Some((limit, period)) = quota {
            let (window, left) = period.window(time::OffsetDateTime::now_utc());
            let counter = format!("llm-quota\u{1f}{key}\u{1f}{window}");
            let d = io.count(&counter, limit, left, estimated).await;
            if !d.allowed || (estimated == 0 && d.remaining == 0) {
                return Ok(self.refuse_quota(ex, left));
            }
            names.report_remaining_quota(ex, d.remaining);
            charge.quota = Some((counter, limit, left));
        }
        names.report_consumed(ex, estimated);
        ex.llm_pending.push(Pending::Limit(charge));
        Ok(Flow::Continue)
    }

    fn refuse_minute(&self, ex: &mut Exchange, retry_after: Duration) -> Flow {
        let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        let mut r = json_error(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("Token limit is exceeded. Try again in {secs} seconds."),
        );
        let header = self
            .names
            .retry_after_header
            .clone()
            .unwrap_or(http::header::RETRY_AFTER);
        r.headers.insert(header, HeaderValue::from(secs));
        if let Some(v) = &self.names.retry_after_variable {
            ex.variables.insert(
                v.clone(),
                Value::Long(i64::try_from(secs).unwrap_or(i64::MAX)),
            );
        }
        ex.response = Some(r);
        ex.refused = Some((self.element, "TokenLimitExceeded"));
        Flow::Return
    }

    fn refuse_quota(&self, ex: &mut Exchange, left: Duration) -> Flow {
        let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        let mut r = json_error(
            StatusCode::FORBIDDEN,
            &format!(
                "Out of token quota. Quota will be replenished in {}.",
                timespan(left)
            ),
        );
        let header = self
            .names
            .retry_after_header
            .clone()
            .unwrap_or(http::header::RETRY_AFTER);
        r.headers.insert(header, HeaderValue::from(secs));
        if let Some(v) = &self.names.retry_after_variable {
            ex.variables.insert(
                v.clone(),
                Value::Long(i64::try_from(secs).unwrap_or(i64::MAX)),
            );
        }
        ex.response = Some(r);
        ex.refused = Some((self.element, "TokenQuotaExceeded"));
        Flow::Return
    }
}

impl Names {
    fn report(ex: &mut Exchange, header: Option<&HeaderName>, variable: Option<&String>, n: u64) {
        if let Some(h) = header {
            ex.response_headers.insert(h.clone(), HeaderValue::from(n));
        }
        if let Some(v) = variable {
            ex.variables
                .insert(v.clone(), Value::Long(i64::try_from(n).unwrap_or(i64::MAX)));
        }
    }

    fn report_remaining(&self, ex: &mut Exchange, n: u64) {
        Self::report(
            ex,
            self.remaining_header.as_ref(),
            self.remaining_variable.as_ref(),
            n,
        );
    }

    fn report_remaining_quota(&self, ex: &mut Exchange, n: u64) {
        Self::report(
            ex,
            self.remaining_quota_header.as_ref(),
            self.remaining_quota_variable.as_ref(),
            n,
        );
    }

    fn report_consumed(&self, ex: &mut Exchange, n: u64) {
        Self::report(
            ex,
            self.consumed_header.as_ref(),
            self.consumed_variable.as_ref(),
            n,
        );
    }
}

impl Charge {
    /// Counts the tokens the answer reports (less what was counted on arrival), past the
    /// limit if need be: the window is then used up and the next call refused.
    pub(crate) async fn settle<I: Io>(self, ex: &mut Exchange, io: &mut I, usage: Option<Usage>) {
        let Some(usage) = usage else {
            return;
        };
        let extra = usage.total.saturating_sub(self.estimated);
        if let Some((key, limit)) = &self.minute {
            let left = add(io, key, *limit, MINUTE, extra).await;
            self.names.report_remaining(ex, left);
        }
        if let Some((key, limit, period)) = &self.quota {
            let left = add(io, key, *limit, *period, extra).await;
            self.names.report_remaining_quota(ex, left);
        }
        self.names
            .report_consumed(ex, usage.total.max(self.estimated));
    }
}

/// Adds `n` to a counter, filling it when `n` does not fit; the tokens left.
async fn add<I: Io>(io: &mut I, key: &str, limit: u64, period: Duration, n: u64) -> u64 {
    let d = io.count(key, limit, period, n).await;
    if d.allowed {
        return d.remaining;
    }
    if d.remaining > 0 {
        io.count(key, limit, period, d.remaining).await;
    }
    0
}

#[cfg(test)]
mod tests;
