use serde_json::json;

use super::super::testkit::*;
use crate::compile::{Scope, Severity, check_offline};
use crate::exchange::Exchange;

/// `GET /pets/{id}?limit=&tags=` with an `X-Trace` header.
fn document() -> std::sync::Arc<crate::exchange::OperationDocument> {
    described(json!({
        "parameters": [
            {"name": "id", "in": "path", "required": true, "schema": {"type": "integer", "minimum": 1}},
            {"name": "limit", "in": "query", "required": true,
             "schema": {"type": "integer", "maximum": 50}},
            {"name": "tags", "in": "query", "style": "csv",
             "schema": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}}},
            {"name": "X-Trace", "in": "header", "schema": {"type": "string", "pattern": "^[a-f0-9]+$"}}
        ],
        "statuses": {"200": []}
    }))
}

fn policy(attrs: &str, inner: &str) -> String {
    format!(
        r#"<policies><inbound><validate-parameters {attrs} errors-variable-name="errs">{inner}</validate-parameters></inbound><backend><forward-request/></backend></policies>"#
    )
}

fn send(xml: &str, path_and_query: &str, headers: &[(&str, &str)]) -> (Exchange, MockIo) {
    let p = pipeline(xml);
    let mut ex = exchange("GET", path_and_query, headers);
    let id = path_and_query
        .trim_start_matches("/pets/")
        .split('?')
        .next()
        .unwrap_or_default()
        .to_owned();
    ex.info.matched = vec![("id".into(), id)];
    ex.info.examples = Some(document());
    let io = run(&p, &mut ex);
    (ex, io)
}

fn refusal(ex: &Exchange) -> (u16, serde_json::Value) {
    let r = ex.response.as_ref().expect("an answer");
    let body = serde_json::from_slice(r.body.as_ref().unwrap()).unwrap();
    (r.status.as_u16(), body)
}

const STRICT: &str =
    r#"specified-parameter-action="prevent" unspecified-parameter-action="prevent""#;

#[test]
fn prevent_refuses_a_parameter_that_breaks_its_definition() {
    let (ex, io) = send(&policy(STRICT, ""), "/pets/7?limit=80", &[]);
    assert_eq!(io.forwards, 0);
    let (status, body) = refusal(&ex);
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"statusCode": 400, "message": "The value of the query parameter limit does not conform to the definition. 80 is greater than 50"})
    );
    let last = ex.last_error.as_ref().unwrap();
    assert_eq!(last.source, "validate-parameters");
    assert_eq!(last.reason, "Bad request");
    assert!(
        last.message
            .starts_with("Value of the query parameter limit")
    );
    // The error is recorded too, as Azure records it.
    assert_eq!(
        errors_json(&ex, "errs"),
        json!([{"Name": "limit", "Type": "QueryParameter", "ValidationRule": "IncorrectMessage",
                "Details": "Value of the query parameter limit does not conform to the definition. 80 is greater than 50",
                "Action": "prevent"}])
    );
}

#[test]
fn every_location_and_kind_of_fault_is_found() {
    for (url, headers, message) in [
        (
            "/pets/0?limit=1",
            vec![],
            "The value of the path parameter id does not conform to the definition. 0 is less than 1",
        ),
        (
            "/pets/x?limit=1",
            vec![],
            "Value of the path parameter id couldn't be parsed according to the definition. 'x' is not an integer",
        ),
        (
            "/pets/1",
            vec![],
            "Request does not contain the required query parameter limit.",
        ),
        (
            "/pets/1?limit=1&limit=2",
            vec![],
            "Request cannot contain multiple values for the query parameter limit.",
        ),
        (
            "/pets/1?limit=1&tags=a,c",
            vec![],
            "The value of the query parameter tags does not conform to the definition. /1: \"c\" is not one of [\"a\",\"b\"]",
        ),
        (
            "/pets/1?limit=1&debug=1",
            vec![],
            "Unspecified query parameter debug is not allowed.",
        ),
        (
            "/pets/1?limit=1",
            vec![("x-trace", "XYZ")],
            "The value of the header X-Trace does not conform to the definition. does not match the pattern '^[a-f0-9]+$'",
        ),
        (
            "/pets/1?limit=1",
            vec![("x-tenant", "t")],
            "Unspecified header x-tenant is not allowed.",
        ),
    ] {
        let (ex, io) = send(&policy(STRICT, ""), url, &headers);
        assert_eq!(io.forwards, 0, "{url}");
        let (status, body) = refusal(&ex);
        assert_eq!(status, 400, "{url}");
        assert_eq!(body["message"], message, "{url}");
    }
}

#[test]
fn a_valid_request_passes_with_headers_the_gateway_adds() {
    let (ex, io) = send(
        &policy(STRICT, ""),
        "/pets/12?limit=50&tags=a%2Cb",
        &[
            ("x-trace", "ab12"),
            ("accept", "application/json"),
            ("x-forwarded-for", "10.0.0.1"),
            ("x-request-id", "r-1"),
        ],
    );
    assert_eq!(io.forwards, 1, "{:?}", errors_json(&ex, "errs"));
    assert!(!ex.variables.contains_key("errs"));
}

#[test]
fn detect_lets_the_request_through_and_records_every_error() {
    let (ex, io) = send(
        &policy(
            r#"specified-parameter-action="detect" unspecified-parameter-action="detect""#,
            "",
        ),
        "/pets/1?limit=99&extra=1",
        &[],
    );
    assert_eq!(io.forwards, 1);
    let errs = errors_json(&ex, "errs");
    let names: Vec<&str> = errs
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["limit", "extra"]);
    assert_eq!(errs[1]["ValidationRule"], "Unspecified");
    assert_eq!(errs[1]["Action"], "detect");
}

#[test]
fn locations_and_parameters_override_the_actions() {
    // Headers only detected, one header ignored, one query parameter allowed.
    let inner = r#"<headers specified-parameter-action="detect" unspecified-parameter-action="detect">
            <parameter name="X-Tenant" action="ignore" />
        </headers>
        <query><parameter name="debug" action="ignore" /></query>"#;
    let (ex, io) = send(
        &policy(STRICT, inner),
        "/pets/1?limit=1&debug=1",
        &[("x-tenant", "t"), ("x-other", "o"), ("x-trace", "NOT-HEX")],
    );
    assert_eq!(io.forwards, 1);
    let errs = errors_json(&ex, "errs");
    let names: Vec<&str> = errs
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["X-Trace", "x-other"]);
    // A parameter override also tightens: prevent one header only.
    let inner = r#"<headers specified-parameter-action="ignore" unspecified-parameter-action="ignore">
            <parameter name="x-secret" action="prevent" />
        </headers>"#;
    let (ex, io) = send(
        &policy(STRICT, inner),
        "/pets/1?limit=1",
        &[("X-Secret", "s")],
    );
    assert_eq!(io.forwards, 0);
    assert_eq!(
        refusal(&ex).1["message"],
        "Unspecified header x-secret is not allowed."
    );
}

#[test]
fn actions_may_be_expressions() {
    let attrs = r#"specified-parameter-action="@(context.Request.Headers.GetValueOrDefault("x-mode", "prevent"))" unspecified-parameter-action="ignore""#;
    let (_, io) = send(&policy(attrs, ""), "/pets/1?limit=99", &[]);
    assert_eq!(io.forwards, 0);
    let inner = r#"<headers unspecified-parameter-action="ignore" />"#;
    let (ex, io) = send(
        &policy(attrs, inner),
        "/pets/1?limit=99",
        &[("x-mode", "detect")],
    );
    assert_eq!(io.forwards, 1);
    assert_eq!(errors_json(&ex, "errs")[0]["Action"], "detect");
    // A value that is no action fails the policy.
    let (ex, io) = send(
        &policy(attrs, inner),
        "/pets/1?limit=1",
        &[("x-mode", "loud")],
    );
    assert_eq!(io.forwards, 0);
    let last = ex.last_error.as_ref().unwrap();
    assert_eq!(last.source, "validate-parameters");
    assert!(last.message.contains("not 'loud'"), "{last:?}");
}

#[test]
fn an_operation_the_document_does_not_describe_is_not_checked() {
    let p = pipeline(&policy(STRICT, ""));
    let mut ex = exchange("GET", "/anything?x=1", &[("x-any", "1")]);
    let io = run(&p, &mut ex);
    assert_eq!(io.forwards, 1);
}

#[test]
fn accepted_forms_and_refused_values_with_where() {
    // Azure's own example, and every child form.
    let azure = r#"<validate-parameters specified-parameter-action="prevent" unspecified-parameter-action="prevent" errors-variable-name="requestParametersValidation">
        <headers specified-parameter-action="detect" unspecified-parameter-action="detect">
            <parameter name="Authorization" action="prevent" />
            <parameter name="User-Agent" action="ignore" />
        </headers>
        <query specified-parameter-action="ignore" unspecified-parameter-action="Detect" />
        <path specified-parameter-action="prevent"><parameter name="id" action="detect" /></path>
    </validate-parameters>"#;
    assert_eq!(diagnostics_in("inbound", azure), Vec::<String>::new());

    let errors = errors_inbound(
        "<validate-parameters\n specified-parameter-action=\"block\" unspecified-parameter-action=\"ignore\" size=\"1\">\n<cookies/>\n<query><parameter action=\"detect\"/></query></validate-parameters>",
    );
    let expected = [
        "2:2: 'specified-parameter-action' must be one of ignore, detect, prevent, not 'block'",
        "2:75: <validate-parameters> has no attribute 'size'",
        "3:1: <validate-parameters> cannot contain <cookies>",
        "4:8: <parameter> needs the attribute 'name'",
    ];
    for e in expected {
        assert!(
            errors.iter().any(|x| x.contains(e)),
            "{e} not in {errors:?}"
        );
    }
    let errors = errors_inbound(r#"<validate-parameters specified-parameter-action="ignore" />"#);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("needs the attribute 'unspecified-parameter-action'")),
        "{errors:?}"
    );
    // Inbound only.
    let errors = errors_in(
        "outbound",
        r#"<validate-parameters specified-parameter-action="ignore" unspecified-parameter-action="ignore" />"#,
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("<validate-parameters> is not allowed in <outbound>")),
        "{errors:?}"
    );
    // `<path unspecified-parameter-action>` is accepted, with a warning.
    let diags = diagnostics_in(
        "inbound",
        r#"<validate-parameters specified-parameter-action="ignore" unspecified-parameter-action="ignore"><path unspecified-parameter-action="prevent"/></validate-parameters>"#,
    );
    assert!(
        diags.len() == 1 && diags[0].contains("warning: ") && diags[0].contains("no effect"),
        "{diags:?}"
    );
}

#[test]
fn policy_check_accepts_it_offline_with_named_values() {
    let xml = r#"<policies><inbound><validate-parameters specified-parameter-action="{{mode}}" unspecified-parameter-action="ignore" /></inbound></policies>"#;
    let diags = check_offline(xml, Some(Scope::Api));
    assert!(
        diags.iter().all(|d| d.severity == Severity::Warning),
        "{diags:?}"
    );
    let xml = "<policies>\n<inbound>\n<validate-parameters specified-parameter-action=\"sometimes\" unspecified-parameter-action=\"ignore\" />\n</inbound>\n</policies>";
    let diags = check_offline(xml, None);
    assert!(
        diags
            .iter()
            .any(|d| d.severity == Severity::Error && d.line == 3 && d.column == 22),
        "{diags:?}"
    );
}
