//! `llm-token-limit` / `azure-openai-token-limit` against a mock backend that answers with an
//! OpenAI-shaped `usage`, and shared in-memory counters.

use serde_json::{Value as J, json};

use super::super::testkit::*;
use super::Period;
use crate::exchange::Exchange;
use crate::run::Pipeline;

fn answer(total: u64) -> bytes::Bytes {
    bytes::Bytes::from(
        json!({"choices": [], "usage": {"prompt_tokens": total / 2, "completion_tokens": total - total / 2, "total_tokens": total}})
            .to_string(),
    )
}

fn policy(attrs: &str) -> Pipeline {
    pipeline(&format!(
        r#"<policies><inbound>
            <llm-token-limit counter-key="@(context.Request.Headers.GetValueOrDefault("x-team", "none"))" {attrs} />
        </inbound><backend><forward-request/></backend>
        <outbound><set-header name="x-seen-consumed" exists-action="override"><value>@(context.Variables.GetValueOrDefault("consumed", "none").ToString())</value></set-header></outbound>
        </policies>"#
    ))
}

/// One call by `team` whose answer used `total` tokens.
fn call(
    p: &Pipeline,
    counters: &Counters,
    team: &str,
    body: &str,
    total: u64,
) -> (Exchange, MockIo) {
    let mut ex = exchange("POST", "/chat/completions", &[("x-team", team)]);
    ex.request.body = Some(bytes::Bytes::from(body.to_owned()));
    let mut io = MockIo {
        counters: counters.clone(),
        answer: Some(answer(total)),
        answer_type: Some("application/json".into()),
        ..MockIo::default()
    };
    block_on(p.run(&mut ex, &mut io));
    (ex, io)
}

fn status(r: &(Exchange, MockIo)) -> u16 {
    r.0.response.as_ref().unwrap().status.as_u16()
}

fn header(r: &(Exchange, MockIo), name: &str) -> String {
    r.0.response.as_ref().unwrap().headers[name]
        .to_str()
        .unwrap()
        .to_owned()
}

#[test]
fn the_answers_usage_uses_up_the_minute_and_the_next_call_is_refused() {
    let p = policy(
        r#"tokens-per-minute="100" remaining-tokens-header-name="x-left" tokens-consumed-header-name="x-used" tokens-consumed-variable-name="consumed""#,
    );
    let counters = Counters::default();
    let r = call(&p, &counters, "a", "{}", 60);
    assert_eq!(status(&r), 200);
    assert_eq!(r.1.forwards, 1);
    assert_eq!(header(&r, "x-left"), "40");
    assert_eq!(header(&r, "x-used"), "60");
    assert_eq!(
        header(&r, "x-seen-consumed"),
        "60",
        "outbound sees the count"
    );
    // 60 more goes past the limit: counted anyway, the window is used up.
    let r = call(&p, &counters, "a", "{}", 60);
    assert_eq!(status(&r), 200);
    assert_eq!(header(&r, "x-left"), "0");
    let r = call(&p, &counters, "a", "{}", 60);
    assert_eq!(status(&r), 429);
    assert_eq!(r.1.forwards, 0, "refused before the backend");
    assert_eq!(header(&r, "retry-after"), "60");
    let body: J =
        serde_json::from_slice(r.0.response.as_ref().unwrap().body.as_ref().unwrap()).unwrap();
    assert_eq!(
        body,
        json!({"statusCode": 429, "message": "Token limit is exceeded. Try again in 60 seconds."})
    );
    assert_eq!(r.0.refused, Some(("llm-token-limit", "TokenLimitExceeded")));
    // Another key has its own tokens.
    assert_eq!(status(&call(&p, &counters, "b", "{}", 10)), 200);
}

#[test]
fn an_estimated_prompt_is_counted_on_arrival_and_replaced_by_the_usage() {
    let p = policy(
        r#"tokens-per-minute="50" estimate-prompt-tokens="true" remaining-tokens-variable-name="left" retry-after-header-name="x-retry" retry-after-variable-name="wait""#,
    );
    let counters = Counters::default();
    // 160 characters: an estimate of 40 + 3 tokens, over 50 with the first call's usage.
    let long = json!({"messages": [{"role": "user", "content": "x".repeat(160)}]}).to_string();
    let r = call(&p, &counters, "a", &long, 45);
    assert_eq!(status(&r), 200);
    assert_eq!(r.0.variables["left"].to_string(), "5");
    // The estimate alone no longer fits.
    let r = call(&p, &counters, "a", &long, 45);
    assert_eq!(status(&r), 429);
    assert_eq!(header(&r, "x-retry"), "60");
    assert!(
        r.0.response
            .as_ref()
            .unwrap()
            .headers
            .get("retry-after")
            .is_none()
    );
    assert_eq!(r.0.variables["wait"].to_string(), "60");
    // A short prompt still fits in the 5 left.
    let short = json!({"messages": [{"role": "user", "content": "hi"}]}).to_string();
    assert_eq!(status(&call(&p, &counters, "a", &short, 4)), 200);
}

#[test]
fn a_used_up_quota_answers_403_until_the_period_renews() {
    let p = pipeline(
        r#"<policies><inbound>
            <azure-openai-token-limit counter-key="k" token-quota="100" token-quota-period="Daily" remaining-quota-tokens-header-name="x-quota-left" />
        </inbound><backend><forward-request/></backend></policies>"#,
    );
    let counters = Counters::default();
    let r = call(&p, &counters, "a", "{}", 70);
    assert_eq!(status(&r), 200);
    assert_eq!(header(&r, "x-quota-left"), "30");
    assert_eq!(status(&call(&p, &counters, "a", "{}", 70)), 200);
    let r = call(&p, &counters, "a", "{}", 70);
    assert_eq!(status(&r), 403);
    let body: J =
        serde_json::from_slice(r.0.response.as_ref().unwrap().body.as_ref().unwrap()).unwrap();
    let message = body["message"].as_str().unwrap();
    assert!(
        message.starts_with("Out of token quota. Quota will be replenished in "),
        "{message}"
    );
    assert_eq!(
        r.0.refused,
        Some(("azure-openai-token-limit", "TokenQuotaExceeded"))
    );
}

#[test]
fn an_answer_without_usage_counts_nothing() {
    let p = policy(r#"tokens-per-minute="10""#);
    let counters = Counters::default();
    for _ in 0..5 {
        let mut ex = exchange("POST", "/chat", &[("x-team", "a")]);
        let mut io = MockIo {
            counters: counters.clone(),
            answer: Some(bytes::Bytes::from_static(b"{\"error\":\"overloaded\"}")),
            ..MockIo::default()
        };
        block_on(p.run(&mut ex, &mut io));
        assert_eq!(io.forwards, 1);
    }
}

#[test]
fn quota_periods_are_calendar_periods_in_utc() {
    use time::macros::datetime;
    let at = datetime!(2024-02-29 13:45:30 UTC);
    let (name, left) = Period::Hourly.window(at);
    assert_eq!(
        (name.as_str(), left.as_secs()),
        ("h1709211600", 14 * 60 + 30)
    );
    assert_eq!(
        Period::Daily.window(at).1.as_secs(),
        10 * 3600 + 14 * 60 + 30
    );
    // Thursday: the week ends on Monday 4 March.
    assert_eq!(
        Period::Weekly.window(at).1.as_secs(),
        3 * 86_400 + 10 * 3600 + 14 * 60 + 30
    );
    assert_eq!(
        Period::Monthly.window(at),
        (
            "m2024-2".into(),
            std::time::Duration::from_secs(10 * 3600 + 14 * 60 + 30)
        )
    );
    assert_eq!(
        Period::Monthly
            .window(datetime!(2024-12-31 23:59:59 UTC))
            .1
            .as_secs(),
        1
    );
    assert_eq!(Period::Yearly.window(at).0, "y2024");
}

#[test]
fn is_checked_when_saved() {
    let first = |inner: &str| errors_inbound(inner).first().cloned().unwrap_or_default();
    assert!(
        first(r#"<llm-token-limit tokens-per-minute="5" />"#)
            .contains("needs the attribute 'counter-key'")
    );
    assert!(first(r#"<llm-token-limit counter-key="k" />"#).contains("needs 'tokens-per-minute'"));
    assert!(
        first(r#"<llm-token-limit counter-key="k" token-quota="5" />"#)
            .contains("needs 'token-quota-period'")
    );
    assert!(first(r#"<llm-token-limit counter-key="k" token-quota="5" token-quota-period="Fortnightly" />"#)
        .contains("'token-quota-period' must be one of Hourly, Daily, Weekly, Monthly, Yearly"));
    assert!(
        first(r#"<llm-token-limit counter-key="k" tokens-per-minute="0" />"#)
            .contains("'tokens-per-minute' must be a whole number of tokens, at least 1")
    );
    assert!(first(r#"<azure-openai-token-limit counter-key="k" tokens-per-minute="5" estimate-prompt-tokens="maybe" />"#)
        .contains("'estimate-prompt-tokens' must be true or false"));
    assert!(first(r#"<azure-openai-token-limit counter-key="k" tokens-per-minute="5" remaining-tokens-header-name="bad header" />"#)
        .contains("not a valid header name"));
    assert!(
        errors_in(
            "outbound",
            r#"<llm-token-limit counter-key="k" tokens-per-minute="5" />"#
        )[0]
        .contains("is not allowed in <outbound>")
    );
    assert!(errors_inbound(r#"<llm-token-limit counter-key="@(context.Subscription.Id)" tokens-per-minute="@(1000 * 2)" />"#).is_empty());
}
