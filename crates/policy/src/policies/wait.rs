//! `<wait for="all|any">` holding `send-request`, `cache-lookup-value` and `choose` policies.
//!
//! The `send-request` children run concurrently: each request is built from the exchange as it
//! is when `wait` starts, then all are sent at once. With `for="all"` the other children
//! (`choose`, `cache-lookup-value`) run one after the other first, then the requests, and
//! `wait` ends when every one has answered. With `for="any"`, the first request to answer
//! ends `wait`: its response is stored and the others are abandoned (their connections
//! dropped); the other children only run when there is no `send-request` child, and then only
//! the first (it is the one to complete first when they run in turn).

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use super::Step;
use super::send_request::{Prepared, store};
use crate::compile::Cx;
use crate::exchange::Exchange;
use crate::run::{Budget, Flow, Io, PolicyError, run_steps};
use crate::text::PolicyText;
use crate::xml::Element;

#[derive(Debug, Clone)]
pub struct Wait {
    /// `all` or `any` (or an expression giving one).
    pub mode: PolicyText,
    pub steps: Vec<Step>,
}

impl Wait {
    pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Self> {
        cx.allow_attrs(el, &["for"]);
        cx.allow_children(el, &["send-request", "cache-lookup-value", "choose"]);
        let mode = cx
            .opt_text(el, "for")
            .unwrap_or_else(|| PolicyText::literal("all"));
        if let Some(m) = mode.as_literal()
            && !matches!(m.trim().to_ascii_lowercase().as_str(), "all" | "any")
        {
            let pos = el.attr("for").map_or(el.pos, |a| a.pos);
            cx.error(pos, format!("'for' must be all or any, not '{m}'"));
            return None;
        }
        let steps = cx.steps(el);
        if steps.is_empty() {
            cx.error(
                el.pos,
                "<wait> needs at least one <send-request>, <cache-lookup-value> or <choose>",
            );
            return None;
        }
        Some(Self { mode, steps })
    }

    pub async fn run<I: Io>(
        &self,
        ex: &mut Exchange,
        io: &mut I,
        budget: &mut Budget,
    ) -> Result<Flow, PolicyError> {
        let any = match self
            .mode
            .eval(ex, budget)?
            .trim()
            .to_ascii_lowercase()
            .as_str()
        {
            "any" => true,
            "all" => false,
            other => {
                return Err(PolicyError::runtime(
                    "ExpressionValueEvaluationFailure",
                    format!("'for' of <wait> must be all or any, not '{other}'"),
                ));
            }
        };
        let (sends, others): (Vec<&Step>, Vec<&Step>) = self
            .steps
            .iter()
            .partition(|s| matches!(s, Step::SendRequest(_)));
        if any && sends.is_empty() {
            return match others.first() {
                Some(first) => run_steps(std::slice::from_ref(*first), ex, io, budget).await,
                None => Ok(Flow::Continue),
            };
        }
        if !any {
            for step in &others {
                if run_steps(std::slice::from_ref(*step), ex, io, budget).await? == Flow::Return {
                    return Ok(Flow::Return);
                }
            }
        }
        let mut prepared: Vec<Prepared> = Vec::with_capacity(sends.len());
        for s in &sends {
            if let Step::SendRequest(s) = s {
                prepared.push(s.prepare_authenticated(ex, io, budget).await?);
            }
        }
        let mut pending: Vec<Option<Pin<Box<_>>>> = prepared
            .iter()
            .map(|p| Some(Box::pin(io.send(p.request.clone()))))
            .collect();
        let mut answers: Vec<Option<_>> = (0..pending.len()).map(|_| None).collect();
        // Polls every request still under way; done when all (or, for `any`, one) answered.
        std::future::poll_fn(|cx| {
            for (i, slot) in pending.iter_mut().enumerate() {
                let Some(f) = slot.as_mut() else { continue };
                if let Poll::Ready(answer) = f.as_mut().poll(cx) {
                    answers[i] = Some(answer);
                    *slot = None;
                    if any {
                        return Poll::Ready(());
                    }
                }
            }
            if pending.iter().all(Option::is_none) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
        // Requests still under way (`any`) are abandoned here.
        drop(pending);
        let mut failure = None;
        for (p, answer) in prepared.iter().zip(answers) {
            let Some(answer) = answer else { continue };
            if let Err(e) = store(ex, &p.variable, p.ignore_error, answer) {
                failure.get_or_insert(e);
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(Flow::Continue),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::flowkit::*;
    use super::super::testkit::*;
    use crate::run::PolicyError;

    fn answering_with_url(io: FlowIo) -> FlowIo {
        io.answer(|r| Ok(ok_json(&format!(r#"{{"url": "{}"}}"#, r.url))))
    }

    const TWO: &str = r#"<policies><inbound>
        <wait for="FOR">
            <send-request mode="new" response-variable-name="slow">
                <set-url>http://slow.test/a</set-url><set-method>GET</set-method>
            </send-request>
            <send-request mode="new" response-variable-name="fast">
                <set-url>http://fast.test/b</set-url><set-method>GET</set-method>
            </send-request>
        </wait>
        <set-header name="X-Got" exists-action="override"><value>@(string.Join(",", new [] { "slow", "fast" }.Where(v => context.Variables.ContainsKey(v))))</value></set-header>
    </inbound><backend><forward-request /></backend></policies>"#;

    #[test]
    fn all_runs_requests_concurrently_and_waits_for_every_one() {
        let p = pipeline(&TWO.replace("FOR", "all"));
        let io = answering_with_url(FlowIo::default()).delay("http://slow.test/a", 5);
        let mut ex = exchange("GET", "/", &[]);
        block_on(p.run(&mut ex, &mut io.clone()));
        // Both were sent before either answered, and the fast one answered first.
        assert_eq!(io.sent().len(), 2);
        assert_eq!(io.completed(), ["http://fast.test/b", "http://slow.test/a"]);
        let got = io.state.forwarded_bodies.lock().unwrap().len();
        assert_eq!(got, 1);
        assert!(ex.variables.contains_key("slow") && ex.variables.contains_key("fast"));
    }

    #[test]
    fn any_returns_after_the_first_answer() {
        let p = pipeline(&TWO.replace("FOR", "any"));
        let io = answering_with_url(FlowIo::default()).delay("http://slow.test/a", 1000);
        let mut ex = exchange("GET", "/", &[]);
        block_on(p.run(&mut ex, &mut io.clone()));
        assert_eq!(io.completed(), ["http://fast.test/b"]);
        assert!(ex.variables.contains_key("fast"));
        assert!(
            !ex.variables.contains_key("slow"),
            "the slow one was abandoned"
        );
    }

    #[test]
    fn failures_go_to_on_error_unless_ignored() {
        let xml = |ignore: &str| {
            format!(
                r#"<policies><inbound>
                <wait>
                    <send-request mode="new" response-variable-name="a" ignore-error="{ignore}">
                        <set-url>http://down.test/</set-url><set-method>GET</set-method>
                    </send-request>
                    <send-request mode="new" response-variable-name="b">
                        <set-url>http://up.test/</set-url><set-method>GET</set-method>
                    </send-request>
                </wait>
            </inbound><backend><forward-request /></backend>
            <on-error><return-response><set-status code="599" /></return-response></on-error></policies>"#
            )
        };
        let io = || {
            FlowIo::default().answer(|r| {
                if r.url.contains("down") {
                    Err(PolicyError::send_failed("Timeout", "no answer"))
                } else {
                    Ok(ok_json("{}"))
                }
            })
        };
        let mut ex = exchange("GET", "/", &[]);
        block_on(pipeline(&xml("true")).run(&mut ex, &mut io()));
        assert_eq!(ex.response.as_ref().unwrap().status, 200);
        assert!(ex.variables["a"].is_null());
        assert!(ex.variables["b"].as_http_response().is_some());
        let mut ex = exchange("GET", "/", &[]);
        block_on(pipeline(&xml("false")).run(&mut ex, &mut io()));
        assert_eq!(ex.response.unwrap().status, 599);
        let e = ex.last_error.unwrap();
        assert_eq!(
            (e.source.as_str(), e.reason.as_str()),
            ("send-request", "Timeout")
        );
    }

    #[test]
    fn choose_children_run_before_the_requests() {
        let p = pipeline(
            r#"<policies><inbound>
            <wait for="all">
                <choose><when condition="@(true)"><set-variable name="picked" value="yes" /></when></choose>
                <send-request mode="new" response-variable-name="r">
                    <set-url>http://x.test/</set-url><set-method>POST</set-method>
                    <set-body>@((string)context.Variables.GetValueOrDefault("picked", "no"))</set-body>
                </send-request>
            </wait>
        </inbound><backend><forward-request /></backend></policies>"#,
        );
        let io = FlowIo::default();
        let mut ex = exchange("GET", "/", &[]);
        block_on(p.run(&mut ex, &mut io.clone()));
        assert_eq!(io.sent()[0].body, "yes");
    }

    #[test]
    fn compile_errors() {
        for (xml, needle) in [
            (
                r#"<wait for="some"><choose><when condition="@(true)"/></choose></wait>"#,
                "must be all or any",
            ),
            (
                r#"<wait><set-header name="a"><value>1</value></set-header></wait>"#,
                "cannot contain <set-header>",
            ),
            (r#"<wait />"#, "needs at least one"),
        ] {
            let errors = errors_inbound(xml);
            assert!(
                errors.iter().any(|e| e.contains(needle)),
                "{xml}: {errors:?}"
            );
        }
    }
}
