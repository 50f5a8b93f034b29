use serde_json::json;

use super::super::testkit::*;
use crate::exchange::Exchange;

/// Runs `outbound` after a backend whose answer becomes `status`, for an operation that
/// declares 200, 201, 4XX.
fn answer(outbound: &str, status: u16) -> Exchange {
    let xml = format!(
        r#"<policies><inbound/><backend><forward-request/></backend><outbound><set-status code="{status}" />{outbound}</outbound></policies>"#
    );
    let p = pipeline(&xml);
    let mut ex = exchange("GET", "/pets", &[]);
    ex.info.examples = Some(described(
        json!({"statuses": {"200": [], "201": [], "4XX": []}}),
    ));
    run(&p, &mut ex);
    ex
}

#[test]
fn an_undeclared_status_is_prevented_detected_or_ignored() {
    let policy = |action: &str| {
        format!(
            r#"<validate-status-code unspecified-status-code-action="{action}" errors-variable-name="errs" />"#
        )
    };
    for status in [200, 201, 404, 429] {
        let ex = answer(&policy("prevent"), status);
        assert!(ex.failure.is_none(), "{status}");
        assert_eq!(ex.response.as_ref().unwrap().status, status);
    }
    let ex = answer(&policy("prevent"), 500);
    let failure = ex.failure.as_ref().unwrap();
    assert_eq!(failure.answer, crate::Answer::InvalidResponse);
    assert_eq!(failure.answer.parts().0, 502);
    let last = ex.last_error.as_ref().unwrap();
    assert_eq!(last.source, "validate-status-code");
    assert_eq!(last.message, "Response status code 500 is not allowed.");
    assert_eq!(
        errors_json(&ex, "errs"),
        json!([{"Name": "500", "Type": "StatusCode", "ValidationRule": "Unspecified",
                "Details": "Response status code 500 is not allowed.", "Action": "prevent"}])
    );

    let ex = answer(&policy("detect"), 500);
    assert!(ex.failure.is_none());
    assert_eq!(ex.response.as_ref().unwrap().status, 500);
    assert_eq!(errs_action(&ex), "detect");

    let ex = answer(&policy("ignore"), 500);
    assert!(ex.failure.is_none());
    assert!(!ex.variables.contains_key("errs"));
}

fn errs_action(ex: &Exchange) -> String {
    errors_json(ex, "errs")[0]["Action"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_code_override_applies_to_undeclared_codes_only() {
    let xml = r#"<validate-status-code unspecified-status-code-action="prevent" errors-variable-name="errs">
        <status-code code="503" action="detect" />
        <status-code code="200" action="prevent" />
    </validate-status-code>"#;
    let ex = answer(xml, 503);
    assert!(ex.failure.is_none());
    assert_eq!(errs_action(&ex), "detect");
    // 200 is declared: its override does not take effect.
    let ex = answer(xml, 200);
    assert!(ex.failure.is_none());
    assert!(!ex.variables.contains_key("errs"));
    let ex = answer(xml, 502);
    assert!(ex.failure.is_some());
}

#[test]
fn a_default_response_declares_every_status() {
    let p = pipeline(
        r#"<policies><inbound/><backend><forward-request/></backend><outbound><set-status code="599" /><validate-status-code unspecified-status-code-action="prevent" /></outbound></policies>"#,
    );
    let mut ex = exchange("GET", "/pets", &[]);
    ex.info.examples = Some(described(json!({"statuses": {"200": [], "default": []}})));
    run(&p, &mut ex);
    assert!(ex.failure.is_none());
}

#[test]
fn accepted_forms_and_refused_values_with_where() {
    assert_eq!(
        diagnostics_in(
            "outbound",
            r#"<validate-status-code unspecified-status-code-action="prevent" errors-variable-name="responseStatusCodeValidation"><status-code code="404" action="ignore" /></validate-status-code>"#
        ),
        Vec::<String>::new()
    );
    let errors = errors_in(
        "on-error",
        "<validate-status-code unspecified-status-code-action=\"deny\">\n  <status-code code=\"99\" action=\"ignore\" />\n  <status-code action=\"ignore\" />\n  <status-code code=\"404\" />\n</validate-status-code>",
    );
    for e in [
        "1:43: 'unspecified-status-code-action' must be one of ignore, detect, prevent, not 'deny'",
        "2:16: 'code' must be a whole number from 100 to 599, not '99'",
        "3:3: <status-code> needs the attribute 'code'",
        "4:3: <status-code> needs the attribute 'action' (ignore, detect or prevent)",
    ] {
        assert!(
            errors.iter().any(|x| x.contains(e)),
            "{e} not in {errors:?}"
        );
    }
    let errors = errors_in(
        "backend",
        r#"<validate-status-code unspecified-status-code-action="ignore" />"#,
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("<validate-status-code> is not allowed in <backend>")),
        "{errors:?}"
    );
}
