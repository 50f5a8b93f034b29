//! The offline check `gatehouse policy check` runs: fragments, scopes, and values that depend on
//! named values unknown offline.

use std::collections::HashMap;

use super::*;

fn errors(diags: &[Diagnostic]) -> Vec<String> {
    diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(ToString::to_string)
        .collect()
}

fn warnings(diags: &[Diagnostic]) -> Vec<String> {
    diags
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .map(ToString::to_string)
        .collect()
}

const QUOTA: &str =
    r#"<policies><inbound><base /><quota calls="10" renewal-period="300" /></inbound></policies>"#;

#[test]
fn scope_rules_are_warnings_without_a_scope_and_errors_with_one() {
    let diags = check_offline(QUOTA, None);
    assert!(errors(&diags).is_empty(), "{diags:?}");
    let w = warnings(&diags);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w.iter()
            .any(|m| m.contains("fails at operation, api, global scope") && m.contains("--scope")),
        "{w:?}"
    );
    assert!(errors(&check_offline(QUOTA, Some(Scope::Product))).is_empty());
    let diags = check_offline(QUOTA, Some(Scope::Operation));
    assert_eq!(errors(&diags).len(), 1, "{diags:?}");
    // What fails at every scope stays an error.
    let diags = check_offline("<policies><inbound><nope /></inbound></policies>", None);
    assert!(
        errors(&diags)
            .iter()
            .any(|m| m.contains("unknown policy <nope>")),
        "{diags:?}"
    );
}

#[test]
fn a_fragment_is_checked_as_a_fragment() {
    let good = r#"<fragment><set-header name="X-F" exists-action="override"><value>@(context.Request.Method)</value></set-header></fragment>"#;
    let diags = check_offline(good, None);
    assert!(diags.is_empty(), "{diags:?}");
    assert!(check_offline(good, Some(Scope::Api)).is_empty());
    let bad = "<fragment>\n  <set-header name=\"X\" oops=\"1\"><value>1</value></set-header>\n</fragment>";
    let diags = check_offline(bad, None);
    assert!(
        errors(&diags)
            .iter()
            .any(|m| m.starts_with("2:") && m.contains("no attribute 'oops'")),
        "{diags:?}"
    );
    let diags = check_offline("<fragment><base /></fragment>", Some(Scope::Api));
    assert!(
        errors(&diags)
            .iter()
            .any(|m| m.contains("cannot contain <base/>")),
        "{diags:?}"
    );
}

/// Values whose shape depends on a named value: a number, a URL, a header name.
const PLACEHOLDERS: &str = r#"<policies>
  <inbound>
    <rate-limit-by-key calls="{{calls}}" renewal-period="60" counter-key="k" />
    <set-backend-service base-url="{{backend-host}}/v1" />
    <set-header name="{{header-name}}" exists-action="override"><value>x</value></set-header>
  </inbound>
</policies>"#;

#[test]
fn placeholders_unknown_offline_are_never_refused_for_their_shape() {
    let diags = check_offline(PLACEHOLDERS, Some(Scope::Api));
    assert!(errors(&diags).is_empty(), "{diags:?}");
    let w = warnings(&diags);
    assert!(
        w.iter()
            .any(|m| m.starts_with("3:") && m.contains("named value 'calls'")),
        "{w:?}"
    );
    // Where the named values exist, their values are checked.
    let named: HashMap<String, String> = HashMap::from([
        ("calls".to_owned(), "many".to_owned()),
        ("backend-host".to_owned(), "https://backend.test".to_owned()),
        ("header-name".to_owned(), "X-Good".to_owned()),
    ]);
    let (doc, diags) = compile(PLACEHOLDERS, Scope::Api, &named, Mode::Strict);
    assert!(doc.is_none());
    let e = errors(&diags);
    assert!(
        e.len() == 1 && e[0].starts_with("3:") && e[0].contains("'calls' must be a whole number"),
        "{e:?}"
    );
    let named: HashMap<String, String> = HashMap::from([
        ("calls".to_owned(), "5".to_owned()),
        ("backend-host".to_owned(), "https://backend.test".to_owned()),
        ("header-name".to_owned(), "X-Good".to_owned()),
    ]);
    let (doc, diags) = compile(PLACEHOLDERS, Scope::Api, &named, Mode::Strict);
    assert!(doc.is_some(), "{diags:?}");
}

#[test]
fn validate_jwt_with_keys_only_from_a_named_value() {
    let xml = r#"<policies><inbound><validate-jwt header-name="Authorization"><openid-config url="{{idp}}" /></validate-jwt></inbound></policies>"#;
    let diags = check_offline(xml, Some(Scope::Api));
    assert!(errors(&diags).is_empty(), "{diags:?}");
    // Saved with the named value unknown, it is still refused.
    let (doc, _) = compile(xml, Scope::Api, &NoNamedValues, Mode::Strict);
    assert!(doc.is_none());
}
