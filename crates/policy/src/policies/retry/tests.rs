use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::super::flowkit::*;
use super::super::testkit::*;
use super::Waits;
use crate::expr::HttpResponse;
use crate::run::PolicyError;

fn secs(list: &[u64]) -> Vec<Duration> {
    list.iter().map(|s| Duration::from_secs(*s)).collect()
}

fn retry_forward(attrs: &str) -> crate::run::Pipeline {
    pipeline(&format!(
        r#"<policies><inbound/><backend>
            <retry condition="@(context.Response.StatusCode == 500)" {attrs}>
                <forward-request />
            </retry>
        </backend></policies>"#
    ))
}

#[test]
fn retries_while_the_condition_holds_replaying_the_body() {
    let p = retry_forward(r#"count="5" interval="1""#);
    assert!(
        p.reads_request_body,
        "the body is buffered before the first attempt"
    );
    let io = FlowIo::default().statuses(&[500, 500, 200]);
    let mut ex = exchange("POST", "/", &[]);
    ex.request.body = Some(bytes::Bytes::from_static(b"payload"));
    block_on(p.run(&mut ex, &mut io.clone()));
    assert_eq!(ex.response.unwrap().status, 200);
    let bodies = io.state.forwarded_bodies.lock().unwrap().clone();
    assert_eq!(bodies, ["payload", "payload", "payload"]);
    assert_eq!(io.sleeps(), secs(&[1, 1]));
}

#[test]
fn stops_after_count_retries_with_the_last_answer() {
    let p = retry_forward(r#"count="2" interval="0""#);
    let io = FlowIo::default().statuses(&[500; 10]);
    let mut ex = exchange("GET", "/", &[]);
    block_on(p.run(&mut ex, &mut io.clone()));
    assert_eq!(ex.response.unwrap().status, 500);
    assert_eq!(io.state.forwards.load(Ordering::SeqCst), 3);
    assert!(io.sleeps().is_empty(), "an interval of 0 does not wait");
}

#[test]
fn linear_and_first_fast_waits() {
    let p = retry_forward(r#"count="3" interval="1" delta="2""#);
    let io = FlowIo::default().statuses(&[500; 4]);
    block_on(p.run(&mut exchange("GET", "/", &[]), &mut io.clone()));
    assert_eq!(io.sleeps(), secs(&[1, 3, 5]));

    let p = retry_forward(r#"count="3" interval="5" first-fast-retry="true""#);
    let io = FlowIo::default().statuses(&[500, 500, 500, 200]);
    block_on(p.run(&mut exchange("GET", "/", &[]), &mut io.clone()));
    assert_eq!(io.state.forwards.load(Ordering::SeqCst), 4);
    assert_eq!(io.sleeps(), secs(&[5, 5]), "the first retry does not wait");
}

#[test]
fn exponential_waits_grow_to_the_maximum() {
    let p = retry_forward(r#"count="6" interval="10" max-interval="100" delta="10""#);
    let io = FlowIo::default().statuses(&[500; 7]);
    block_on(p.run(&mut exchange("GET", "/", &[]), &mut io.clone()));
    let s: Vec<f64> = io.sleeps().iter().map(Duration::as_secs_f64).collect();
    assert_eq!(s.len(), 6);
    assert_eq!(s[0], 10.0);
    for (got, (lo, hi)) in s[1..4]
        .iter()
        .zip([(18.0, 22.0), (34.0, 46.0), (66.0, 94.0)])
    {
        assert!((lo..=hi).contains(got), "{s:?}");
    }
    assert_eq!(&s[4..], [100.0, 100.0]);
}

#[test]
fn wait_formulas() {
    let w = Waits {
        interval: 2.0,
        max_interval: None,
        delta: None,
        first_fast: false,
    };
    assert_eq!(w.before(3, 1.0), Duration::from_secs(2));
    let w = Waits {
        delta: Some(3.0),
        ..w
    };
    assert_eq!(w.before(1, 1.0), Duration::from_secs(2));
    assert_eq!(w.before(4, 1.0), Duration::from_secs(11));
    let w = Waits {
        max_interval: Some(30.0),
        ..w
    };
    assert_eq!(w.before(3, 1.0), Duration::from_secs(11));
    assert_eq!(w.before(4, 1.2), Duration::from_secs_f64(27.2));
    assert_eq!(w.before(9, 0.8), Duration::from_secs(30));
    let w = Waits {
        first_fast: true,
        ..w
    };
    assert_eq!(w.before(1, 1.0), Duration::ZERO);
    assert_eq!(w.before(2, 1.0), Duration::from_secs(2));
}

#[test]
fn retries_send_request_as_in_azures_example() {
    let p = pipeline(
        r#"<policies><inbound>
            <retry condition="@(context.Variables[&quot;response&quot;] == null || ((IResponse)context.Variables[&quot;response&quot;]).StatusCode >= 500)"
                   count="3" interval="1" first-fast-retry="true">
                <send-request mode="new" response-variable-name="response" timeout="3" ignore-error="true">
                    <set-url>http://api.contoso.test/products/5</set-url>
                    <set-method>GET</set-method>
                </send-request>
            </retry>
            <return-response response-variable-name="response" />
        </inbound></policies>"#,
    );
    let calls = Arc::new(AtomicU32::new(0));
    let seen = calls.clone();
    let io = FlowIo::default().answer(move |_| match seen.fetch_add(1, Ordering::SeqCst) {
        0 => Err(PolicyError::send_failed("Timeout", "dropped")),
        1 => Ok(HttpResponse {
            status: 503,
            ..Default::default()
        }),
        _ => Ok(ok_json(r#"{"id":5}"#)),
    });
    let mut ex = exchange("GET", "/", &[]);
    block_on(p.run(&mut ex, &mut io.clone()));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(io.sleeps(), secs(&[1]));
    let r = ex.response.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body.unwrap(), r#"{"id":5}"#);
}

#[test]
fn a_failure_inside_is_not_retried() {
    let p = pipeline(
        r#"<policies><inbound>
            <retry condition="true" count="5" interval="1">
                <send-request mode="new" response-variable-name="r">
                    <set-url>http://down.test/</set-url><set-method>GET</set-method>
                </send-request>
            </retry>
        </inbound><backend><forward-request /></backend>
        <on-error><return-response><set-status code="599" /></return-response></on-error></policies>"#,
    );
    let io = FlowIo::default().answer(|_| {
        Err(PolicyError::send_failed(
            "BackendConnectionFailure",
            "refused",
        ))
    });
    let mut ex = exchange("GET", "/", &[]);
    block_on(p.run(&mut ex, &mut io.clone()));
    assert_eq!(ex.response.unwrap().status, 599);
    assert_eq!(io.sent().len(), 1);
    assert_eq!(ex.last_error.unwrap().source, "send-request");
}

#[test]
fn return_response_inside_ends_the_pipeline() {
    let p = pipeline(
        r#"<policies><inbound>
            <retry condition="true" count="5" interval="1">
                <return-response><set-status code="202" /></return-response>
            </retry>
        </inbound><backend><forward-request /></backend></policies>"#,
    );
    let io = FlowIo::default();
    let mut ex = exchange("GET", "/", &[]);
    block_on(p.run(&mut ex, &mut io.clone()));
    assert_eq!(ex.response.unwrap().status, 202);
    assert!(io.sleeps().is_empty());
    assert_eq!(io.state.forwards.load(Ordering::SeqCst), 0);
}

#[test]
fn expressions_in_the_settings() {
    let p = pipeline(
        r#"<policies><inbound/><backend>
            <retry condition="@(context.Response.StatusCode == 500)" count="@(1 + 1)" interval="@(&quot;3&quot;)">
                <forward-request />
            </retry>
        </backend></policies>"#,
    );
    let io = FlowIo::default().statuses(&[500; 5]);
    block_on(p.run(&mut exchange("GET", "/", &[]), &mut io.clone()));
    assert_eq!(io.sleeps(), secs(&[3, 3]));
}

#[test]
fn compile_errors() {
    for (xml, needle) in [
        (
            r#"<retry count="1" interval="1"/>"#,
            "needs the attribute 'condition'",
        ),
        (
            r#"<retry condition="maybe" count="1" interval="1"/>"#,
            "must be true, false or an expression",
        ),
        (
            r#"<retry condition="true" interval="1"/>"#,
            "needs the attribute 'count'",
        ),
        (
            r#"<retry condition="true" count="0" interval="1"/>"#,
            "from 1 to 50",
        ),
        (
            r#"<retry condition="true" count="51" interval="1"/>"#,
            "from 1 to 50",
        ),
        (
            r#"<retry condition="true" count="1"/>"#,
            "needs the attribute 'interval'",
        ),
        (
            r#"<retry condition="true" count="1" interval="soon"/>"#,
            "whole number of seconds",
        ),
        (
            r#"<retry condition="true" count="1" interval="1" delta="-1"/>"#,
            "whole number of seconds",
        ),
        (
            r#"<retry condition="true" count="1" interval="1" first-fast-retry="often"/>"#,
            "must be true, false",
        ),
        (
            r#"<retry condition="true" count="1" interval="1" colour="red"/>"#,
            "no attribute 'colour'",
        ),
        (
            r#"<retry condition="true" count="1" interval="1"><forward-request/></retry>"#,
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
