//! `<retry condition="@(…)" count="N" interval="S" max-interval="S" delta="S"
//! first-fast-retry="false">…</retry>`: runs the nested policies once, then again while the
//! condition holds, at most `count` more times, waiting between attempts:
//! - only `interval`: a fixed wait;
//! - `interval` and `delta`: linear, `interval + (n - 1) * delta` before retry `n`;
//! - `interval`, `delta` and `max-interval`: exponential,
//!   `interval + (2^(n-1) - 1) * random(0.8 * delta, 1.2 * delta)`, at most `max-interval`;
//! - `first-fast-retry="true"`: the first retry at once, the others as above.
//!
//! A failure inside the retried policies is not retried: it goes to `on-error` at once (as in
//! Azure, where only the condition decides). A `forward-request` inside is retried with the
//! same request body: a pipeline holding one buffers the body before its first attempt.

use std::time::Duration;

use super::Step;
use crate::compile::Cx;
use crate::exchange::Exchange;
use crate::run::{Budget, Flow, Io, PolicyError, run_steps};
use crate::text::PolicyText;
use crate::xml::Element;

/// Azure's limits.
const MAX_COUNT: u64 = 50;
/// Longest wait accepted between attempts: one hour.
const MAX_WAIT_SECS: u64 = 3600;

#[derive(Debug, Clone)]
pub struct Retry {
    pub condition: PolicyText,
    count: PolicyText,
    interval: PolicyText,
    max_interval: Option<PolicyText>,
    delta: Option<PolicyText>,
    first_fast_retry: PolicyText,
    pub steps: Vec<Step>,
}

/// The wait settings of one run, evaluated.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Waits {
    interval: f64,
    max_interval: Option<f64>,
    delta: Option<f64>,
    first_fast: bool,
}

impl Waits {
    /// The wait before retry `n` (1-based); `jitter` is in 0.8..=1.2.
    fn before(&self, n: u32, jitter: f64) -> Duration {
        if self.first_fast && n == 1 {
            return Duration::ZERO;
        }
        let n = if self.first_fast { n - 1 } else { n };
        let secs = match (self.delta, self.max_interval) {
            (None, _) => self.interval,
            (Some(delta), None) => self.interval + f64::from(n - 1) * delta,
            (Some(delta), Some(max)) => {
                let growth = 2f64.powi(i32::try_from(n - 1).unwrap_or(i32::MAX)) - 1.0;
                (self.interval + growth * delta * jitter).min(max)
            }
        };
        Duration::from_secs_f64(secs.clamp(0.0, MAX_WAIT_SECS as f64))
    }
}

/// A whole number of seconds (or a literal to check now).
fn seconds(
    cx: &mut Cx<'_>,
    el: &Element,
    name: &str,
    required: bool,
) -> Option<Option<PolicyText>> {
    let Some(t) = cx.opt_text(el, name) else {
        if el.attr(name).is_some() {
            return None;
        }
        if required {
            cx.error(
                el.pos,
                format!("<retry> needs the attribute '{name}' (seconds)"),
            );
            return None;
        }
        return Some(None);
    };
    if let Some(lit) = t.as_literal()
        && !matches!(lit.trim().parse::<u64>(), Ok(n) if n <= MAX_WAIT_SECS)
    {
        let pos = el.attr(name).map_or(el.pos, |a| a.pos);
        cx.error(
            pos,
            format!(
                "'{name}' must be a whole number of seconds from 0 to {MAX_WAIT_SECS}, not '{lit}'"
            ),
        );
        return None;
    }
    Some(Some(t))
}

fn check_bool(cx: &mut Cx<'_>, el: &Element, name: &str, t: &PolicyText) -> bool {
    match t.as_literal() {
        Some(lit) if !matches!(lit.trim().to_ascii_lowercase().as_str(), "true" | "false") => {
            let pos = el.attr(name).map_or(el.pos, |a| a.pos);
            cx.error(
                pos,
                format!("'{name}' must be true, false or an expression, not '{lit}'"),
            );
            false
        }
        _ => true,
    }
}

/// A random factor in 0.8..=1.2 for exponential waits.
fn jitter() -> f64 {
    let r = uuid::Uuid::new_v4().as_u128() as u64;
    0.8 + 0.4 * (r as f64 / u64::MAX as f64)
}

fn whole(text: &str, name: &str, max: u64) -> Result<u64, PolicyError> {
    match text.trim().parse::<u64>() {
        Ok(n) if n <= max => Ok(n),
        _ => Err(PolicyError::runtime(
            "ExpressionValueEvaluationFailure",
            format!("'{name}' of <retry> must be a whole number from 0 to {max}, not '{text}'"),
        )),
    }
}

impl Retry {
    pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Self> {
        cx.allow_attrs(
            el,
            &[
                "condition",
                "count",
                "interval",
                "max-interval",
                "delta",
                "first-fast-retry",
            ],
        );
        let condition = cx.req_text(el, "condition");
        let mut ok = condition
            .as_ref()
            .is_some_and(|c| check_bool(cx, el, "condition", c));
        let count = cx.req_text(el, "count");
        if let Some(lit) = count.as_ref().and_then(PolicyText::as_literal)
            && !matches!(lit.trim().parse::<u64>(), Ok(n) if (1..=MAX_COUNT).contains(&n))
        {
            let pos = el.attr("count").map_or(el.pos, |a| a.pos);
            cx.error(
                pos,
                format!("'count' must be a whole number from 1 to {MAX_COUNT}, not '{lit}'"),
            );
            ok = false;
        }
        let interval = seconds(cx, el, "interval", true);
        let max_interval = seconds(cx, el, "max-interval", false);
        let delta = seconds(cx, el, "delta", false);
        let first_fast_retry = match cx.opt_text(el, "first-fast-retry") {
            Some(t) => {
                ok &= check_bool(cx, el, "first-fast-retry", &t);
                Some(t)
            }
            None if el.attr("first-fast-retry").is_some() => None,
            None => Some(PolicyText::literal("false")),
        };
        let steps = cx.steps(el);
        if !ok {
            return None;
        }
        Some(Self {
            condition: condition?,
            count: count?,
            interval: interval??,
            max_interval: max_interval?,
            delta: delta?,
            first_fast_retry: first_fast_retry?,
            steps,
        })
    }

    pub fn texts(&self) -> Vec<&PolicyText> {
        let mut t = vec![
            &self.condition,
            &self.count,
            &self.interval,
            &self.first_fast_retry,
        ];
        t.extend(self.max_interval.iter());
        t.extend(self.delta.iter());
        t
    }

    fn waits(&self, ex: &Exchange, budget: &mut Budget) -> Result<Waits, PolicyError> {
        let mut secs = |t: &PolicyText, name: &str| -> Result<f64, PolicyError> {
            Ok(whole(&t.eval(ex, budget)?, name, MAX_WAIT_SECS)? as f64)
        };
        let interval = secs(&self.interval, "interval")?;
        let max_interval = match &self.max_interval {
            Some(t) => Some(secs(t, "max-interval")?),
            None => None,
        };
        let delta = match &self.delta {
            Some(t) => Some(secs(t, "delta")?),
            None => None,
        };
        Ok(Waits {
            interval,
            max_interval,
            delta,
            first_fast: self.first_fast_retry.eval_bool(ex, budget)?,
        })
    }

    pub async fn run<I: Io>(
        &self,
        ex: &mut Exchange,
        io: &mut I,
        budget: &mut Budget,
    ) -> Result<Flow, PolicyError> {
        let count = self.count.eval(ex, budget)?;
        let count = whole(&count, "count", MAX_COUNT)?;
        let waits = self.waits(ex, budget)?;
        let condition_reads_body = self.condition.source().is_some_and(|s| s.contains(".Body"));
        let mut retries: u32 = 0;
        loop {
            if run_steps(&self.steps, ex, io, budget).await? == Flow::Return {
                return Ok(Flow::Return);
            }
            if u64::from(retries) >= count {
                return Ok(Flow::Continue);
            }
            if condition_reads_body && ex.response.is_some() {
                io.read_response_body(ex).await?;
            }
            if !self.condition.eval_bool(ex, budget)? {
                return Ok(Flow::Continue);
            }
            retries += 1;
            let wait = waits.before(retries, jitter());
            tracing::debug!(retry = retries, wait_ms = wait.as_millis() as u64, "retry");
            if !wait.is_zero() {
                io.sleep(wait).await;
            }
        }
    }
}

#[cfg(test)]
mod tests;
