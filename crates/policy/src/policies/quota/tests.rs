use std::time::{Duration, SystemTime};

use super::super::flowkit::*;
use super::super::testkit::*;
use super::{timespan, window};
use crate::compile::{self, Mode, NoNamedValues, PolicyDocument, Scope, Severity};
use crate::exchange::SubscriptionInfo;
use crate::run::Pipeline;

fn product_pipeline(xml: &str) -> Pipeline {
    let (doc, diags) = compile::compile(xml, Scope::Product, &NoNamedValues, Mode::Strict);
    let doc = doc.unwrap_or_else(|| panic!("{diags:?}"));
    Pipeline::compose(&PolicyDocument::default_global(), Some(&doc), None, None)
}

fn call(p: &Pipeline, io: &FlowIo, method: &str, body: &[u8]) -> (u16, String, Option<String>) {
    let mut ex = exchange(method, "/", &[]);
    ex.info.ip = "10.0.0.1".into();
    ex.request.body = Some(bytes::Bytes::copy_from_slice(body));
    block_on(p.run(&mut ex, &mut io.clone()));
    let r = ex.response.unwrap();
    (
        r.status.as_u16(),
        String::from_utf8(r.body.unwrap_or_default().to_vec()).unwrap(),
        r.headers
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned()),
    )
}

fn message(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["statusCode"], 403);
    v["message"].as_str().unwrap().to_owned()
}

#[test]
fn calls_over_the_quota_get_403_with_the_time_to_renewal() {
    let p = pipeline(
        r#"<policies><inbound>
            <quota-by-key calls="2" renewal-period="3600" counter-key="@(context.Request.IpAddress)" />
        </inbound><backend><forward-request /></backend></policies>"#,
    );
    let io = FlowIo::default();
    assert_eq!(call(&p, &io, "GET", b"").0, 200);
    assert_eq!(call(&p, &io, "GET", b"").0, 200);
    let (status, body, retry_after) = call(&p, &io, "GET", b"");
    assert_eq!(status, 403);
    let m = message(&body);
    let prefix = "Out of call volume quota. Quota will be replenished in ";
    assert!(m.starts_with(prefix) && m.ends_with('.'), "{m}");
    let hms: Vec<u64> = m[prefix.len()..m.len() - 1]
        .split(':')
        .map(|x| x.parse().unwrap())
        .collect();
    let secs = hms[0] * 3600 + hms[1] * 60 + hms[2];
    assert!(secs > 0 && secs <= 3600, "{m}");
    assert_eq!(retry_after.unwrap().parse::<u64>().unwrap(), secs);
    assert_eq!(
        io.state.forwards.load(std::sync::atomic::Ordering::SeqCst),
        2
    );
}

#[test]
fn bandwidth_counts_request_and_response_bytes() {
    let p = pipeline(
        r#"<policies><inbound>
            <quota-by-key bandwidth="1" renewal-period="3600" counter-key="k" />
        </inbound><backend><forward-request /></backend></policies>"#,
    );
    let io = FlowIo::default();
    let body = vec![b'x'; 600];
    // 600 + 10 ("answer 200") bytes, then 1,220 of 1,024: the third call is refused.
    assert_eq!(call(&p, &io, "POST", &body).0, 200);
    assert_eq!(call(&p, &io, "POST", &body).0, 200);
    let (status, body, retry_after) = call(&p, &io, "POST", &body);
    assert_eq!(status, 403);
    assert!(message(&body).starts_with("Out of bandwidth quota. Quota will be replenished in "));
    assert!(retry_after.is_some());
}

#[test]
fn an_increment_condition_on_the_response_counts_after_it() {
    let p = pipeline(
        r#"<policies><inbound>
            <quota-by-key calls="1" renewal-period="300" counter-key="k"
                increment-condition="@(context.Response.StatusCode &gt;= 200 &amp;&amp; context.Response.StatusCode &lt; 400)" />
        </inbound><backend><forward-request /></backend></policies>"#,
    );
    let io = FlowIo::default().statuses(&[500, 500, 200]);
    assert_eq!(call(&p, &io, "GET", b"").0, 500);
    assert_eq!(call(&p, &io, "GET", b"").0, 500, "failures are not counted");
    assert_eq!(call(&p, &io, "GET", b"").0, 200);
    assert_eq!(call(&p, &io, "GET", b"").0, 403);
}

#[test]
fn a_failure_nothing_answered_is_seen_as_its_answer_when_the_quota_settles() {
    // An expression fails after the quota: the client gets the fixed 500, and the condition,
    // which reads the response, sees it.
    let p = pipeline(
        r#"<policies><inbound>
            <quota-by-key calls="1" renewal-period="300" counter-key="k"
                increment-condition="@(context.Response.StatusCode == 500)" />
            <set-header name="X"><value>@(((string)null).Length.ToString())</value></set-header>
        </inbound><backend><forward-request /></backend></policies>"#,
    );
    let io = FlowIo::default();
    let mut ex = exchange("GET", "/", &[]);
    block_on(p.run(&mut ex, &mut io.clone()));
    assert!(ex.response.is_none(), "the stand-in answer is gone again");
    assert_eq!(ex.failure.map(|e| e.answer.status().as_u16()), Some(500));
    // Counted: the second call is over the quota, answered 403 before the failing expression.
    let mut ex = exchange("GET", "/", &[]);
    block_on(p.run(&mut ex, &mut io.clone()));
    assert_eq!(ex.response.map(|r| r.status.as_u16()), Some(403));
}

#[test]
fn an_increment_condition_on_the_request_counts_on_arrival() {
    let p = pipeline(
        r#"<policies><inbound>
            <quota-by-key calls="1" renewal-period="300" counter-key="k" increment-condition="@(context.Request.Method == &quot;POST&quot;)" />
        </inbound><backend><forward-request /></backend></policies>"#,
    );
    let io = FlowIo::default();
    assert_eq!(call(&p, &io, "GET", b"").0, 200);
    assert_eq!(call(&p, &io, "GET", b"").0, 200, "GETs are not counted");
    assert_eq!(call(&p, &io, "POST", b"").0, 200);
    assert_eq!(call(&p, &io, "POST", b"").0, 403);
    assert_eq!(
        call(&p, &io, "GET", b"").0,
        403,
        "a used-up quota refuses every call"
    );
}

#[test]
fn a_key_two_policies_share_is_counted_once_per_request() {
    let p = pipeline(
        r#"<policies><inbound>
            <quota-by-key calls="2" renewal-period="300" counter-key="shared" />
            <quota-by-key calls="2" renewal-period="300" counter-key="shared" />
        </inbound><backend><forward-request /></backend></policies>"#,
    );
    let io = FlowIo::default();
    assert_eq!(call(&p, &io, "GET", b"").0, 200);
    assert_eq!(call(&p, &io, "GET", b"").0, 200);
    assert_eq!(call(&p, &io, "GET", b"").0, 403);
}

#[test]
fn a_period_of_zero_never_renews() {
    let p = pipeline(
        r#"<policies><inbound>
            <quota-by-key calls="1" renewal-period="0" counter-key="k" />
        </inbound><backend><forward-request /></backend></policies>"#,
    );
    let io = FlowIo::default();
    assert_eq!(call(&p, &io, "GET", b"").0, 200);
    let (status, body, retry_after) = call(&p, &io, "GET", b"");
    assert_eq!(status, 403);
    assert_eq!(message(&body), "Out of call volume quota.");
    assert_eq!(retry_after, None);
}

#[test]
fn subscription_quotas_nest_per_api_and_operation() {
    let p = product_pipeline(
        r#"<policies><inbound>
            <quota calls="100" renewal-period="3600">
                <api id="echo" calls="3" renewal-period="3600">
                    <operation name="slow" calls="1" renewal-period="3600" />
                </api>
            </quota>
        </inbound></policies>"#,
    );
    let io = FlowIo::default();
    let call = |op: &str, sub: Option<&str>| {
        let mut ex = exchange("GET", "/", &[]);
        ex.info.api_id = "echo".into();
        ex.info.operation_id = format!("{op}-id").into();
        ex.info.operation_name = op.into();
        ex.info.subscription = sub.map(|s| SubscriptionInfo {
            id: s.into(),
            ..Default::default()
        });
        block_on(p.run(&mut ex, &mut io.clone()));
        ex.response.unwrap().status.as_u16()
    };
    assert_eq!(call("slow", Some("s1")), 200);
    assert_eq!(call("slow", Some("s1")), 403, "the operation quota is 1");
    assert_eq!(
        call("slow", Some("s2")),
        200,
        "each subscription has its own"
    );
    // The refused call did not count against the API: two more fit in its 3.
    assert_eq!(call("fast", Some("s1")), 200);
    assert_eq!(call("fast", Some("s1")), 200);
    assert_eq!(
        call("fast", Some("s1")),
        403,
        "the API quota (3) counts every call"
    );
    // Without a subscription key the quota does not apply.
    for _ in 0..5 {
        assert_eq!(call("slow", None), 200);
    }
}

#[test]
fn windows_are_aligned_to_the_first_period_start() {
    let origin = super::parse_start("2024-01-01T00:00:00Z").unwrap();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(origin).unwrap() + 5400);
    assert_eq!(
        window(origin, Some(Duration::from_secs(3600)), now),
        (1, Duration::from_secs(1800))
    );
    // Before the start, the first window is the one that starts there.
    let before = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(origin).unwrap() - 10);
    assert_eq!(window(origin, Some(Duration::from_secs(60)), before).0, 0);
    // Azure's default start, 0001-01-01: hour windows still start on the hour.
    let (_, left) = window(
        super::YEAR_ONE,
        Some(Duration::from_secs(3600)),
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + 60),
    );
    assert_eq!(left, Duration::from_secs(3600 - (1_700_000_060 % 3600)));
    assert_eq!(window(origin, None, now).0, 0);
}

#[test]
fn time_to_renewal_prints_like_a_timespan() {
    assert_eq!(timespan(Duration::from_secs(59)), "00:00:59");
    assert_eq!(timespan(Duration::from_millis(59_001)), "00:01:00");
    assert_eq!(timespan(Duration::from_secs(3 * 3600 + 61)), "03:01:01");
    assert_eq!(timespan(Duration::from_secs(90_061)), "1.01:01:01");
}

#[test]
fn compile_errors() {
    for (xml, needle) in [
        (
            r#"<quota-by-key renewal-period="300" counter-key="k" />"#,
            "needs 'calls', 'bandwidth'",
        ),
        (
            r#"<quota-by-key calls="1" counter-key="k" />"#,
            "needs the attribute 'renewal-period'",
        ),
        (
            r#"<quota-by-key calls="1" renewal-period="60" counter-key="k" />"#,
            "at least 300 seconds",
        ),
        (
            r#"<quota-by-key calls="1" renewal-period="300" />"#,
            "needs the attribute 'counter-key'",
        ),
        (
            r#"<quota-by-key calls="@(1)" renewal-period="300" counter-key="k" />"#,
            "does not accept an expression",
        ),
        (
            r#"<quota-by-key calls="1" renewal-period="300" counter-key="k" first-period-start="tomorrow" />"#,
            "first-period-start",
        ),
        (
            r#"<quota-by-key calls="1" renewal-period="300" counter-key="k" increment-count="many" />"#,
            "increment-count",
        ),
        (
            r#"<quota-by-key calls="1" renewal-period="300" counter-key="k" colour="red" />"#,
            "no attribute 'colour'",
        ),
        (
            r#"<quota calls="1" renewal-period="300" />"#,
            "only be used in a product's policy",
        ),
    ] {
        let errors = errors_inbound(xml);
        assert!(
            errors.iter().any(|e| e.contains(needle)),
            "{xml}: {errors:?}"
        );
    }
    let product_errors = |inner: &str| -> Vec<String> {
        let xml = format!("<policies><inbound>{inner}</inbound></policies>");
        let (_, diags) = compile::compile(&xml, Scope::Product, &NoNamedValues, Mode::Strict);
        diags
            .into_iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| d.message)
            .collect()
    };
    for (xml, needle) in [
        (
            r#"<quota calls="1" renewal-period="300"><api calls="1" renewal-period="60"/></quota>"#,
            "<api> needs id or name",
        ),
        (
            r#"<quota calls="1" renewal-period="300"><api id="a" renewal-period="60"/></quota>"#,
            "needs 'calls', 'bandwidth'",
        ),
        (
            r#"<quota calls="1" renewal-period="300" counter-key="k"/>"#,
            "no attribute 'counter-key'",
        ),
    ] {
        let errors = product_errors(xml);
        assert!(
            errors.iter().any(|e| e.contains(needle)),
            "{xml}: {errors:?}"
        );
    }
    assert!(product_errors(r#"<quota bandwidth="40000" renewal-period="0"/>"#).is_empty());
}
