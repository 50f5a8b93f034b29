//! `<limit-concurrency key="@(…)" max-count="N">…</limit-concurrency>`: the nested policies
//! run for at most `max-count` requests of one key at a time; a request past that fails at once
//! with 429 `Too many requests`. The slot is taken from the gateway ([`Io::acquire`]) and
//! given back when the nested policies end, however they end. A nested `forward-request`
//! ends when the backend's response headers arrive; a streamed body continues outside.

use http::StatusCode;

use super::Step;
use super::check_header::json_error;
use crate::compile::Cx;
use crate::exchange::Exchange;
use crate::run::{Budget, Flow, Io, PolicyError, run_steps};
use crate::text::PolicyText;
use crate::xml::Element;

#[derive(Debug, Clone)]
pub struct LimitConcurrency {
    pub key: PolicyText,
    pub max_count: u64,
    pub steps: Vec<Step>,
}

impl LimitConcurrency {
    pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Self> {
        cx.allow_attrs(el, &["key", "max-count"]);
        let key = cx.req_text(el, "key");
        let max_count = match el.attr("max-count") {
            Some(_) => cx.u64_attr(el, "max-count", 1, u64::from(u32::MAX)),
            None => {
                cx.error(
                    el.pos,
                    "<limit-concurrency> needs the attribute 'max-count'",
                );
                None
            }
        };
        let steps = cx.steps(el);
        Some(Self {
            key: key?,
            max_count: max_count?,
            steps,
        })
    }

    pub async fn run<I: Io>(
        &self,
        ex: &mut Exchange,
        io: &mut I,
        budget: &mut Budget,
    ) -> Result<Flow, PolicyError> {
        let key = format!("lc\u{1f}{}", self.key.eval(ex, budget)?);
        let Some(slot) = io.acquire(&key, self.max_count).await else {
            ex.response = Some(json_error(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many requests",
            ));
            ex.refused = Some(("limit-concurrency", "ConcurrencyLimitExceeded"));
            return Ok(Flow::Return);
        };
        let result = run_steps(&self.steps, ex, io, budget).await;
        drop(slot);
        result
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::super::flowkit::*;
    use super::super::testkit::*;

    #[test]
    fn over_the_limit_answers_429_and_slots_come_back() {
        let p = pipeline(
            r#"<policies><inbound/><backend>
                <limit-concurrency key="@(context.Request.Headers.GetValueOrDefault(&quot;X-Tenant&quot;, &quot;&quot;))" max-count="1">
                    <forward-request />
                </limit-concurrency>
            </backend></policies>"#,
        );
        let io = FlowIo::default();
        // A slot of tenant a is held elsewhere: a's request is refused, b's is not.
        let held = io.take_slot("lc\u{1f}a");
        let mut ex = exchange("GET", "/", &[("X-Tenant", "a")]);
        let mut a = io.clone();
        block_on(p.run(&mut ex, &mut a));
        let r = ex.response.unwrap();
        assert_eq!(r.status, 429);
        assert_eq!(
            r.body.unwrap(),
            r#"{"message":"Too many requests","statusCode":429}"#
        );
        assert_eq!(io.state.forwards.load(Ordering::SeqCst), 0);
        let mut ex = exchange("GET", "/", &[("X-Tenant", "b")]);
        block_on(p.run(&mut ex, &mut io.clone()));
        assert_eq!(ex.response.unwrap().status, 200);
        // Once released, a gets through, and its own slot is released after the request.
        drop(held);
        let mut ex = exchange("GET", "/", &[("X-Tenant", "a")]);
        block_on(p.run(&mut ex, &mut io.clone()));
        assert_eq!(ex.response.unwrap().status, 200);
        assert_eq!(io.in_use("lc\u{1f}a"), 0);
        assert_eq!(io.state.most_in_use.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn the_slot_is_released_when_the_nested_policies_fail() {
        let p = pipeline(
            r#"<policies><inbound>
                <limit-concurrency key="k" max-count="2">
                    <set-variable name="x" value="@(1 / int.Parse(&quot;0&quot;))" />
                </limit-concurrency>
            </inbound><backend><forward-request /></backend>
            <on-error><return-response><set-status code="599" /></return-response></on-error></policies>"#,
        );
        let io = FlowIo::default();
        let mut ex = exchange("GET", "/", &[]);
        block_on(p.run(&mut ex, &mut io.clone()));
        assert_eq!(ex.response.unwrap().status, 599);
        assert_eq!(ex.last_error.unwrap().source, "set-variable");
        assert_eq!(io.in_use("lc\u{1f}k"), 0);
    }

    #[test]
    fn compile_errors() {
        for (xml, needle) in [
            (
                r#"<limit-concurrency max-count="1"><forward-request/></limit-concurrency>"#,
                "needs the attribute 'key'",
            ),
            (
                r#"<limit-concurrency key="k"></limit-concurrency>"#,
                "needs the attribute 'max-count'",
            ),
            (
                r#"<limit-concurrency key="k" max-count="@(3)"></limit-concurrency>"#,
                "does not accept an expression",
            ),
            (
                r#"<limit-concurrency key="k" max-count="0"></limit-concurrency>"#,
                "from 1 to",
            ),
            (
                r#"<limit-concurrency key="k" max-count="2"><forward-request/></limit-concurrency>"#,
                "not allowed in <inbound>",
            ),
        ] {
            let errors = errors_inbound(xml);
            assert!(
                errors.iter().any(|e| e.contains(needle)),
                "{xml}: {errors:?}"
            );
        }
    }
}
