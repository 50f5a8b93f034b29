//! `<rate-limit calls="N" renewal-period="S">` (per subscription, with nested `<api>` and
//! `<operation>` limits) and `<rate-limit-by-key calls="N" renewal-period="S" counter-key="@(…)"
//! increment-condition="@(…)" increment-count="1" …/>`: over the limit, the caller gets 429
//! `Rate limit is exceeded. Try again in N seconds.` with `Retry-After`.

use std::time::Duration;

use http::{HeaderName, HeaderValue, StatusCode};

use super::check_header::json_error;
use crate::compile::Cx;
use crate::exchange::Exchange;
use crate::expr::Value;
use crate::run::{Budget, Decision, Flow, Io, PolicyError};
use crate::text::PolicyText;
use crate::xml::Element;

/// One limit: `calls` per `period`, for requests that match `api`/`operation` when set.
#[derive(Debug, Clone)]
struct Limit {
    calls: u64,
    period: Duration,
    /// (id-or-name) of the API this nested limit applies to.
    api: Option<String>,
    operation: Option<String>,
    /// What follows the caller's part in this limit's counter key, made once.
    suffix: Box<str>,
}

impl Limit {
    fn new(calls: u64, period: Duration, api: Option<String>, operation: Option<String>) -> Self {
        let suffix = format!(
            "\u{1f}{}\u{1f}{}\u{1f}{calls}\u{1f}{}",
            api.as_deref().unwrap_or(""),
            operation.as_deref().unwrap_or(""),
            period.as_secs()
        )
        .into();
        Self {
            calls,
            period,
            api,
            operation,
            suffix,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RateLimit {
    by_key: bool,
    limits: Vec<Limit>,
    counter_key: Option<PolicyText>,
    increment_condition: Option<PolicyText>,
    increment_count: Option<PolicyText>,
    retry_after_header: Option<HeaderName>,
    retry_after_variable: Option<String>,
    remaining_header: Option<HeaderName>,
    remaining_variable: Option<String>,
    total_header: Option<HeaderName>,
}

const COMMON: [&str; 7] = [
    "calls",
    "renewal-period",
    "retry-after-header-name",
    "retry-after-variable-name",
    "remaining-calls-header-name",
    "remaining-calls-variable-name",
    "total-calls-header-name",
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

fn limit(cx: &mut Cx<'_>, el: &Element) -> Option<(u64, Duration)> {
    let calls = match el.attr("calls") {
        Some(_) => cx.u64_attr(el, "calls", 1, u64::from(u32::MAX))?,
        None => {
            cx.error(el.pos, format!("<{}> needs the attribute 'calls'", el.name));
            return None;
        }
    };
    let period = match el.attr("renewal-period") {
        Some(_) => cx.u64_attr(el, "renewal-period", 1, 300 * 24 * 3600)?,
        None => {
            cx.error(
                el.pos,
                format!(
                    "<{}> needs the attribute 'renewal-period' (seconds)",
                    el.name
                ),
            );
            return None;
        }
    };
    Some((calls, Duration::from_secs(period)))
}

impl RateLimit {
    pub fn name(&self) -> &'static str {
        if self.by_key {
            "rate-limit-by-key"
        } else {
            "rate-limit"
        }
    }

    pub fn compile(el: &Element, cx: &mut Cx<'_>, by_key: bool) -> Option<Self> {
        let mut allowed: Vec<&str> = COMMON.to_vec();
        if by_key {
            allowed.extend(["counter-key", "increment-condition", "increment-count"]);
            cx.no_children(el);
        } else {
            cx.allow_children(el, &["api"]);
        }
        cx.allow_attrs(el, &allowed);
        let (calls, period) = limit(cx, el)?;
        let mut limits = vec![Limit::new(calls, period, None, None)];
        if !by_key {
            for api in el.elements() {
                cx.allow_attrs(api, &["name", "id", "calls", "renewal-period"]);
                cx.allow_children(api, &["operation"]);
                let api_id = cx.literal(api, "id").or_else(|| cx.literal(api, "name"));
                if api_id.is_none() {
                    cx.error(api.pos, "<api> needs id or name");
                }
                if let Some((c, p)) = limit(cx, api) {
                    limits.push(Limit::new(c, p, api_id.clone(), None));
                }
                for op in api.elements() {
                    cx.allow_attrs(op, &["name", "id", "calls", "renewal-period"]);
                    let op_id = cx.literal(op, "id").or_else(|| cx.literal(op, "name"));
                    if op_id.is_none() {
                        cx.error(op.pos, "<operation> needs id or name");
                    }
                    if let Some((c, p)) = limit(cx, op) {
                        limits.push(Limit::new(c, p, api_id.clone(), op_id));
                    }
                }
            }
        }
        let counter_key = if by_key {
            Some(cx.req_text(el, "counter-key")?)
        } else {
            None
        };
        Some(Self {
            by_key,
            limits,
            counter_key,
            increment_condition: if by_key {
                cx.opt_text(el, "increment-condition")
            } else {
                None
            },
            increment_count: if by_key {
                cx.opt_text(el, "increment-count")
            } else {
                None
            },
            retry_after_header: header(cx, el, "retry-after-header-name"),
            retry_after_variable: cx.literal(el, "retry-after-variable-name"),
            remaining_header: header(cx, el, "remaining-calls-header-name"),
            remaining_variable: cx.literal(el, "remaining-calls-variable-name"),
            total_header: header(cx, el, "total-calls-header-name"),
        })
    }

    pub fn texts(&self) -> Vec<&PolicyText> {
        self.counter_key
            .iter()
            .chain(self.increment_condition.iter())
            .chain(self.increment_count.iter())
            .collect()
    }

    pub async fn run<I: Io>(
        &self,
        ex: &mut Exchange,
        io: &mut I,
        budget: &mut Budget,
    ) -> Result<Flow, PolicyError> {
        let increment = match &self.increment_condition {
            Some(c) if !c.eval_bool(ex, budget)? => 0,
            _ => match &self.increment_count {
                Some(n) => n.eval_u64(ex, budget)?,
                None => 1,
            },
        };
        let (prefix, caller) = match &self.counter_key {
            Some(k) => ("rlk\u{1f}", k.eval(ex, budget)?),
            None => (
                "rl\u{1f}",
                std::borrow::Cow::Borrowed(
                    ex.info
                        .subscription
                        .as_ref()
                        .map_or("anonymous", |s| &*s.id),
                ),
            ),
        };
        let mut key = String::new();
        let mut tightest: Option<(Decision, &Limit)> = None;
        for l in &self.limits {
            if let Some(api) = &l.api
                && !(api.eq_ignore_ascii_case(&ex.info.api_id)
                    || api.eq_ignore_ascii_case(&ex.info.api_name))
            {
                continue;
            }
            if let Some(op) = &l.operation
                && !(op.eq_ignore_ascii_case(&ex.info.operation_id)
                    || op.eq_ignore_ascii_case(&ex.info.operation_name))
            {
                continue;
            }
            key.clear();
            key.reserve(prefix.len() + caller.len() + l.suffix.len());
            key.push_str(prefix);
            key.push_str(&caller);
            key.push_str(&l.suffix);
            let d = io.count(&key, l.calls, l.period, increment).await;
            let worse = match &tightest {
                None => true,
                Some((t, _)) => {
                    (!d.allowed && t.allowed)
                        || (d.allowed == t.allowed && d.remaining < t.remaining)
                }
            };
            if worse {
                tightest = Some((d, l));
            }
        }
        let Some((decision, limit)) = tightest else {
            return Ok(Flow::Continue);
        };
        let retry_after =
            decision.retry_after.as_secs() + u64::from(decision.retry_after.subsec_nanos() > 0);
        if let Some(v) = &self.remaining_variable {
            ex.variables.insert(
                v.clone(),
                Value::Long(i64::try_from(decision.remaining).unwrap_or(i64::MAX)),
            );
        }
        if let Some(h) = &self.remaining_header {
            ex.response_headers
                .insert(h.clone(), HeaderValue::from(decision.remaining));
        }
        if let Some(h) = &self.total_header {
            ex.response_headers
                .insert(h.clone(), HeaderValue::from(limit.calls));
        }
        if decision.allowed {
            return Ok(Flow::Continue);
        }
        if let Some(v) = &self.retry_after_variable {
            ex.variables.insert(
                v.clone(),
                Value::Long(i64::try_from(retry_after).unwrap_or(i64::MAX)),
            );
        }
        let mut r = json_error(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("Rate limit is exceeded. Try again in {retry_after} seconds."),
        );
        r.headers
            .insert(http::header::RETRY_AFTER, HeaderValue::from(retry_after));
        if let Some(h) = &self.retry_after_header {
            r.headers.insert(h.clone(), HeaderValue::from(retry_after));
        }
        ex.response = Some(r);
        ex.refused = Some(("rate-limit", "RateLimitExceeded"));
        Ok(Flow::Return)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;

    #[test]
    fn by_key_limits_and_answers_429() {
        let p = pipeline(
            r#"<policies><inbound>
                <rate-limit-by-key calls="2" renewal-period="60" counter-key="@(context.Request.IpAddress)"
                    remaining-calls-variable-name="left" retry-after-header-name="X-Retry" />
                <set-header name="X-Left"><value>@(context.Variables["left"].ToString())</value></set-header>
            </inbound><backend><forward-request/></backend></policies>"#,
        );
        let counters = Counters::default();
        let mut lefts = Vec::new();
        for i in 0..3 {
            let mut ex = exchange("GET", "/", &[]);
            ex.info.ip = "10.0.0.9".into();
            let io = run_with(&p, &mut ex, counters.clone());
            if i < 2 {
                lefts.push(all(&io.forwarded.unwrap().headers, "x-left")[0].clone());
            } else {
                assert!(io.forwarded.is_none());
                let r = ex.response.unwrap();
                assert_eq!(r.status, 429);
                assert_eq!(r.headers["retry-after"], "60");
                assert_eq!(r.headers["x-retry"], "60");
                assert_eq!(
                    r.body.unwrap(),
                    r#"{"message":"Rate limit is exceeded. Try again in 60 seconds.","statusCode":429}"#
                );
            }
        }
        assert_eq!(lefts, ["1", "0"]);
        // Another key has its own counter.
        let mut ex = exchange("GET", "/", &[]);
        ex.info.ip = "10.0.0.10".into();
        assert!(run_with(&p, &mut ex, counters.clone()).forwarded.is_some());
    }

    #[test]
    fn nested_api_and_operation_limits() {
        let p = pipeline(
            r#"<policies><inbound>
                <rate-limit calls="100" renewal-period="60">
                    <api id="echo" calls="3" renewal-period="60"><operation id="slow" calls="1" renewal-period="60"/></api>
                </rate-limit>
            </inbound><backend><forward-request/></backend></policies>"#,
        );
        let counters = Counters::default();
        let call = |op: &str| {
            let mut ex = exchange("GET", "/", &[]);
            ex.info.api_id = "echo".into();
            ex.info.operation_id = op.into();
            ex.info.subscription = Some(crate::exchange::SubscriptionInfo {
                id: "s1".into(),
                ..Default::default()
            });
            run_with(&p, &mut ex, counters.clone()).forwarded.is_some()
        };
        assert!(call("slow"));
        assert!(!call("slow"), "the operation limit is 1");
        assert!(call("fast"));
        assert!(!call("fast"), "the API limit (3) counts every operation");
    }

    #[test]
    fn increment_condition_false_does_not_count() {
        let p = pipeline(
            r#"<policies><inbound>
                <rate-limit-by-key calls="1" renewal-period="60" counter-key="k" increment-condition="@(context.Request.Method == &quot;POST&quot;)" />
            </inbound><backend><forward-request/></backend></policies>"#,
        );
        let counters = Counters::default();
        for _ in 0..3 {
            let mut ex = exchange("GET", "/", &[]);
            assert!(run_with(&p, &mut ex, counters.clone()).forwarded.is_some());
        }
    }
}
