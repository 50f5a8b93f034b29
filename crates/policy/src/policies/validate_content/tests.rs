use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;

use super::super::testkit::*;
use crate::exchange::OperationDocument;
use crate::expr::Value;

/// An operation whose request body (application/json) must be `{"name": string, "qty": 1..}`.
fn document() -> Arc<OperationDocument> {
    let mut schemas = gatehouse_model::snapshot::OperationSchemas::default();
    schemas.request.insert(
        "application/json".into(),
        json!({"$ref": "#/components/schemas/Order"}),
    );
    schemas.responses.insert(
        "200".into(),
        BTreeMap::from([(
            "application/json".to_owned(),
            json!({"type": "object", "required": ["id"]}),
        )]),
    );
    let defs = BTreeMap::from([(
        "Order".to_owned(),
        json!({"type": "object", "required": ["name"],
               "properties": {"name": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}}}),
    )]);
    Arc::new(OperationDocument::build(None, Some(&schemas), &defs, &mut |p| panic!("{p}")).unwrap())
}

fn policy(action: &str) -> String {
    format!(
        r#"<policies><inbound><validate-content unspecified-content-type-action="prevent" max-size="100" size-exceeded-action="prevent" errors-variable-name="errs">
             <content type="application/json" validate-as="json" action="{action}" />
           </validate-content></inbound><backend><forward-request/></backend></policies>"#
    )
}

fn send(xml: &str, content_type: &str, body: &str) -> (crate::exchange::Exchange, MockIo) {
    let p = pipeline(xml);
    let mut ex = exchange("POST", "/orders", &[("content-type", content_type)]);
    ex.request.body = Some(bytes::Bytes::from(body.to_owned()));
    ex.info.examples = Some(document());
    let io = run(&p, &mut ex);
    (ex, io)
}

fn errors(ex: &crate::exchange::Exchange) -> Vec<String> {
    match ex.variables.get("errs") {
        Some(Value::Array(a)) => a.iter().map(|v| v.to_policy_string()).collect(),
        _ => vec![],
    }
}

#[test]
fn prevent_refuses_a_body_that_breaks_the_schema_with_where() {
    let (ex, io) = send(&policy("prevent"), "application/json", r#"{"name": 3}"#);
    assert_eq!(io.forwards, 0);
    let r = ex
        .response
        .as_ref()
        .or(ex.error_response.as_ref())
        .expect("the refusal");
    assert_eq!(r.status, 400);
    let body: serde_json::Value = serde_json::from_slice(r.body.as_ref().unwrap()).unwrap();
    assert_eq!(body["statusCode"], 400);
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("/name: is an integer; expected string"),
        "{message}"
    );
    assert_eq!(ex.last_error.as_ref().unwrap().source, "validate-content");
}

#[test]
fn prevent_lets_a_conforming_body_through() {
    let (ex, io) = send(
        &policy("prevent"),
        "application/json; charset=utf-8",
        r#"{"name": "tea", "qty": 2}"#,
    );
    assert_eq!(io.forwards, 1);
    assert!(ex.error_response.is_none());
    assert!(errors(&ex).is_empty());
}

#[test]
fn detect_lets_it_through_and_records_the_problem() {
    let (ex, io) = send(&policy("detect"), "application/json", r#"{"qty": 0}"#);
    assert_eq!(io.forwards, 1);
    let errs = errors(&ex);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains("the required property 'name' is missing"),
        "{errs:?}"
    );
    assert!(errs[0].contains("/qty: 0 is less than 1"), "{errs:?}");
}

#[test]
fn ignore_does_nothing() {
    let (ex, io) = send(&policy("ignore"), "application/json", r#"{"qty": 0}"#);
    assert_eq!(io.forwards, 1);
    assert!(errors(&ex).is_empty());
}

#[test]
fn a_body_that_is_not_json_is_refused() {
    let (ex, io) = send(&policy("prevent"), "application/json", "{nope");
    assert_eq!(io.forwards, 0);
    assert!(
        errors(&ex)[0].contains("not valid JSON"),
        "{:?}",
        errors(&ex)
    );
}

#[test]
fn size_and_unspecified_content_type_actions() {
    let big = format!(r#"{{"name": "{}"}}"#, "x".repeat(200));
    let (ex, io) = send(&policy("ignore"), "application/json", &big);
    assert_eq!(io.forwards, 0);
    assert!(
        errors(&ex)[0].contains("more than the 100 allowed"),
        "{:?}",
        errors(&ex)
    );
    let (ex, io) = send(&policy("ignore"), "text/plain", "hello");
    assert_eq!(io.forwards, 0);
    assert!(
        errors(&ex)[0].contains("'text/plain' is not specified"),
        "{:?}",
        errors(&ex)
    );
}

#[test]
fn the_content_type_map_renames_types() {
    let xml = r#"<policies><inbound><validate-content unspecified-content-type-action="prevent" max-size="100" size-exceeded-action="prevent">
        <content-type-map missing-content-type-value="application/json"><type from="text/json" to="application/json"/></content-type-map>
        <content type="application/json" validate-as="json" action="prevent" />
      </validate-content></inbound><backend><forward-request/></backend></policies>"#;
    let (_, io) = send(xml, "text/json", r#"{"name": 1}"#);
    assert_eq!(io.forwards, 0);
    let (_, io) = send(xml, "text/json", r#"{"name": "a"}"#);
    assert_eq!(io.forwards, 1);
}

#[test]
fn outbound_checks_the_response_against_its_status_schema() {
    let xml = r#"<policies><inbound/><backend><forward-request/></backend><outbound><validate-content unspecified-content-type-action="ignore" max-size="100" size-exceeded-action="ignore" errors-variable-name="errs">
        <content type="application/json" validate-as="json" action="detect" />
      </validate-content></outbound></policies>"#;
    let p = pipeline(xml);
    let mut ex = exchange("GET", "/orders", &[]);
    ex.info.examples = Some(document());
    let mut io = MockIo {
        answer: Some(bytes::Bytes::from_static(br#"{"name": "x"}"#)),
        answer_type: Some("application/json".into()),
        ..MockIo::default()
    };
    block_on(p.run(&mut ex, &mut io));
    assert!(
        errors(&ex)[0].contains("the required property 'id' is missing"),
        "{:?}",
        errors(&ex)
    );
}

#[test]
fn bad_configurations_are_refused_with_where() {
    let e = errors_inbound(
        r#"<validate-content max-size="10" size-exceeded-action="prevent"><content type="application/json" validate-as="json" action="stop"/></validate-content>"#,
    );
    assert!(
        e.iter()
            .any(|e| e.contains("needs the attribute 'unspecified-content-type-action'")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|e| e.contains("'action' must be one of ignore, detect, prevent")),
        "{e:?}"
    );
    let e = errors_inbound(
        r#"<validate-content unspecified-content-type-action="ignore" max-size="99999999" size-exceeded-action="prevent"/>"#,
    );
    assert!(
        e.iter()
            .any(|e| e.contains("'max-size' must be a whole number")),
        "{e:?}"
    );
}
