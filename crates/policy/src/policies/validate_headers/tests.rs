use serde_json::json;

use super::super::testkit::*;
use crate::exchange::Exchange;

/// 200 answers with `X-Rate` (required integer) and may carry `X-Tags` (list); 4XX none.
fn document() -> std::sync::Arc<crate::exchange::OperationDocument> {
    described(json!({
        "statuses": {
            "200": [
                {"name": "X-Rate", "in": "header", "required": true, "schema": {"type": "integer", "minimum": 0}},
                {"name": "X-Tags", "in": "header", "schema": {"type": "array", "items": {"type": "string"}, "maxItems": 2}}
            ],
            "4XX": []
        }
    }))
}

/// Runs `outbound` (and `on_error`) after a backend that answered `status` with `headers`.
fn answer(outbound: &str, on_error: &str, status: u16, headers: &[(&str, &str)]) -> Exchange {
    let xml = format!(
        r#"<policies><inbound/><backend><forward-request/></backend><outbound><set-status code="{status}" />{set}{outbound}</outbound><on-error>{on_error}</on-error></policies>"#,
        set = headers
            .iter()
            .map(|(n, v)| format!(
                r#"<set-header name="{n}" exists-action="append"><value>{v}</value></set-header>"#
            ))
            .collect::<String>()
    );
    let p = pipeline(&xml);
    let mut ex = exchange("GET", "/pets", &[]);
    ex.info.examples = Some(document());
    run(&p, &mut ex);
    ex
}

fn policy(specified: &str, unspecified: &str, inner: &str) -> String {
    format!(
        r#"<validate-headers specified-header-action="{specified}" unspecified-header-action="{unspecified}" errors-variable-name="errs">{inner}</validate-headers>"#
    )
}

#[test]
fn prevent_answers_502_without_detail_and_records_the_error() {
    let ex = answer(
        &policy("prevent", "ignore", ""),
        "",
        200,
        &[("X-Rate", "-1")],
    );
    let r = ex.response.as_ref();
    assert!(r.is_none(), "the gateway's fixed answer goes out: {r:?}");
    let failure = ex.failure.as_ref().unwrap();
    assert_eq!(failure.answer, crate::Answer::InvalidResponse);
    let (status, body) = failure.answer.parts();
    assert_eq!(status, 502);
    assert_eq!(
        body,
        r#"{"statusCode":502,"message":"The request could not be processed due to an internal error. Contact the API owner."}"#
    );
    let last = ex.last_error.as_ref().unwrap();
    assert_eq!(
        (last.source.as_str(), last.reason.as_str()),
        ("validate-headers", "Response not allowed")
    );
    assert_eq!(
        errors_json(&ex, "errs"),
        json!([{"Name": "X-Rate", "Type": "ResponseHeader", "ValidationRule": "IncorrectMessage",
                "Details": "Value of the header X-Rate does not conform to the definition. -1 is less than 0",
                "Action": "prevent"}])
    );
}

#[test]
fn declared_headers_are_checked_for_presence_type_and_count() {
    for (headers, details) in [
        (
            vec![],
            "Response does not contain the required header X-Rate.",
        ),
        (
            vec![("X-Rate", "many")],
            "Value of the header X-Rate cannot be parsed according to the definition. 'many' is not an integer",
        ),
        (
            vec![("X-Rate", "1"), ("X-Rate", "2")],
            "Response cannot contain multiple values for the header X-Rate.",
        ),
        (
            vec![("X-Rate", "1"), ("X-Tags", "a, b"), ("X-Tags", "c")],
            "Value of the header X-Tags does not conform to the definition. has 3 items; the most allowed is 2",
        ),
    ] {
        let ex = answer(&policy("detect", "ignore", ""), "", 200, &headers);
        assert!(ex.failure.is_none());
        assert_eq!(ex.response.as_ref().unwrap().status, 200);
        assert_eq!(
            errors_json(&ex, "errs")[0]["Details"],
            details,
            "{headers:?}"
        );
    }
    let ex = answer(
        &policy("prevent", "prevent", ""),
        "",
        200,
        &[("X-Rate", "3"), ("X-Tags", "a,b")],
    );
    assert!(ex.failure.is_none(), "{:?}", errors_json(&ex, "errs"));
}

#[test]
fn unspecified_headers_depend_on_the_status_and_the_overrides() {
    // X-Rate is declared for 200, not for 404 (4XX declares no header).
    let ex = answer(
        &policy("ignore", "detect", ""),
        "",
        404,
        &[("X-Rate", "1"), ("content-type", "text/plain")],
    );
    assert_eq!(
        errors_json(&ex, "errs"),
        json!([{"Name": "x-rate", "Type": "ResponseHeader", "ValidationRule": "Unspecified",
                "Details": "Unspecified header x-rate is not allowed.", "Action": "detect"}])
    );
    // One header allowed by name; another one blocked.
    let inner =
        r#"<header name="X-Debug" action="ignore" /><header name="X-Rate" action="prevent" />"#;
    let ex = answer(
        &policy("ignore", "ignore", inner),
        "",
        404,
        &[("X-Debug", "1")],
    );
    assert!(ex.failure.is_none());
    let ex = answer(
        &policy("ignore", "ignore", inner),
        "",
        404,
        &[("X-Rate", "1")],
    );
    assert_eq!(
        ex.failure.as_ref().unwrap().answer,
        crate::Answer::InvalidResponse
    );
}

#[test]
fn in_on_error_prevent_replaces_the_answer() {
    // A failing policy sends the request to on-error, which answers 500 with a stack trace:
    // the operation declares 500, but not the header.
    let xml = format!(
        r#"<policies><inbound><set-variable name="x" value="@(int.Parse(&quot;x&quot;))" /></inbound>
           <on-error><set-status code="500" /><set-header name="X-Stack" exists-action="override"><value>at Foo.Bar()</value></set-header>{}</on-error></policies>"#,
        policy("ignore", "prevent", "")
    );
    let p = pipeline(&xml);
    let mut ex = exchange("GET", "/pets", &[]);
    ex.info.examples = Some(described(json!({"statuses": {"500": []}})));
    run(&p, &mut ex);
    let r = ex.response.as_ref().unwrap();
    assert_eq!(r.status, 502);
    assert!(r.headers.get("x-stack").is_none());
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(r.body.as_ref().unwrap()).unwrap()["message"],
        "The request could not be processed due to an internal error. Contact the API owner."
    );
    assert_eq!(errors_json(&ex, "errs")[0]["Name"], "x-stack");
}

#[test]
fn accepted_forms_and_refused_values_with_where() {
    assert_eq!(
        diagnostics_in(
            "outbound",
            r#"<validate-headers specified-header-action="ignore" unspecified-header-action="prevent" errors-variable-name="responseHeadersValidation" />"#
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        diagnostics_in(
            "on-error",
            r#"<validate-headers specified-header-action="@(&quot;detect&quot;)" unspecified-header-action="DETECT"><header name="Date" action="ignore"/></validate-headers>"#
        ),
        Vec::<String>::new()
    );
    let errors = errors_in(
        "outbound",
        "<validate-headers specified-header-action=\"ignore\"\n unspecified-header-action=\"stop\">\n<header name=\"x\" action=\"maybe\"/><header action=\"ignore\"/></validate-headers>",
    );
    for e in [
        "2:2: 'unspecified-header-action' must be one of ignore, detect, prevent, not 'stop'",
        "3:18: 'action' must be one of ignore, detect, prevent, not 'maybe'",
        "3:34: <header> needs the attribute 'name'",
    ] {
        assert!(
            errors.iter().any(|x| x.contains(e)),
            "{e} not in {errors:?}"
        );
    }
    let errors = errors_inbound(
        r#"<validate-headers specified-header-action="ignore" unspecified-header-action="ignore" />"#,
    );
    assert!(
        errors.iter().any(|e| e.contains(
            "<validate-headers> is not allowed in <inbound>; it may appear in: outbound, on-error"
        )),
        "{errors:?}"
    );
}
