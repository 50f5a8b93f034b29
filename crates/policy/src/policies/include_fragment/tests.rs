use std::collections::HashMap;

use super::super::testkit::*;
use crate::compile::{self, Mode, NoNamedValues, PolicyDocument, Scope, Severity};
use crate::run::Pipeline;

fn fragments(list: &[(&str, &str)]) -> HashMap<String, String> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn compile_with(
    xml: &str,
    frags: &HashMap<String, String>,
    mode: Mode,
) -> (Option<PolicyDocument>, Vec<String>) {
    let (doc, diags) = compile::compile_with(xml, Scope::Api, &NoNamedValues, frags, mode);
    (doc, diags.into_iter().map(|d| d.to_string()).collect())
}

#[test]
fn a_fragment_runs_where_it_is_included() {
    let frags = fragments(&[(
        "ForwardContext",
        r#"<fragment>
            <set-header name="x-request-context-data" exists-action="override">
                <value>@(context.Request.Method)</value>
                <value>fixed</value>
            </set-header>
        </fragment>"#,
    )]);
    let (doc, diags) = compile_with(
        r#"<policies><inbound><include-fragment fragment-id="ForwardContext" /><set-header name="X-After" exists-action="append"><value>1</value></set-header></inbound>
        <backend><forward-request /></backend></policies>"#,
        &frags,
        Mode::Strict,
    );
    let doc = doc.unwrap_or_else(|| panic!("{diags:?}"));
    let p = Pipeline::compose(&doc, None, None, None);
    let mut ex = exchange("PATCH", "/", &[]);
    let io = run(&p, &mut ex);
    let sent = io.forwarded.unwrap();
    assert_eq!(
        all(&sent.headers, "x-request-context-data"),
        ["PATCH", "fixed"]
    );
    assert_eq!(all(&sent.headers, "x-after"), ["1"]);
}

#[test]
fn problems_inside_a_fragment_point_at_the_include_and_into_the_fragment() {
    let frags = fragments(&[
        ("bad", "<fragment>\n  <set-header name=\"a\"/>\n</fragment>"),
        ("backend-only", "<fragment><forward-request/></fragment>"),
        ("base", "<fragment><base/></fragment>"),
        ("root", "<policies/>"),
    ]);
    for (id, needle) in [
        (
            "bad",
            "in policy fragment 'bad' at 2:3: <set-header> needs at least one <value>",
        ),
        (
            "backend-only",
            "<forward-request> is not allowed in <inbound>",
        ),
        ("base", "cannot contain <base/>"),
        ("root", "must be <fragment>"),
        ("missing", "policy fragment 'missing' does not exist"),
    ] {
        let xml = format!(
            "<policies>\n<inbound>\n  <include-fragment fragment-id=\"{id}\" />\n</inbound></policies>"
        );
        let (doc, errors) = compile_with(&xml, &frags, Mode::Strict);
        assert!(doc.is_none());
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("3:3:") && e.contains(needle)),
            "{id}: {errors:?}"
        );
    }
    // The same fragment is fine in a section that allows it.
    let (doc, _) = compile_with(
        r#"<policies><backend><include-fragment fragment-id="backend-only" /></backend></policies>"#,
        &frags,
        Mode::Strict,
    );
    assert!(doc.is_some());
}

#[test]
fn include_cycles_are_refused() {
    let frags = fragments(&[
        (
            "a",
            r#"<fragment><include-fragment fragment-id="b" /></fragment>"#,
        ),
        (
            "b",
            r#"<fragment><include-fragment fragment-id="a" /></fragment>"#,
        ),
        (
            "self",
            r#"<fragment><include-fragment fragment-id="self" /></fragment>"#,
        ),
        (
            "leaf",
            r#"<fragment><set-variable name="v" value="1" /></fragment>"#,
        ),
        (
            "nests",
            r#"<fragment><include-fragment fragment-id="leaf" /></fragment>"#,
        ),
    ]);
    let (doc, errors) = compile_with(
        r#"<policies><inbound><include-fragment fragment-id="a" /></inbound></policies>"#,
        &frags,
        Mode::Strict,
    );
    assert!(doc.is_none());
    assert!(
        errors.iter().any(|e| e.contains("cycle: a → b → a")),
        "{errors:?}"
    );
    let (doc, errors) = compile_with(
        r#"<policies><inbound><include-fragment fragment-id="self" /></inbound></policies>"#,
        &frags,
        Mode::Strict,
    );
    assert!(doc.is_none());
    assert!(
        errors.iter().any(|e| e.contains("cycle: self → self")),
        "{errors:?}"
    );
    // Nesting without a cycle is fine.
    let (doc, errors) = compile_with(
        r#"<policies><inbound><include-fragment fragment-id="nests" /><include-fragment fragment-id="nests" /></inbound></policies>"#,
        &frags,
        Mode::Strict,
    );
    assert!(doc.is_some(), "{errors:?}");
    // A fragment checked on its own (as on save) finds its cycle too.
    let diags = compile::check_fragment("a", &frags["a"], &NoNamedValues, &frags, Mode::Strict);
    assert!(
        diags
            .iter()
            .any(|d| d.severity == Severity::Error && d.message.contains("cycle"))
    );
}

#[test]
fn offline_checks_warn_about_unknown_fragments() {
    let (doc, diags) = compile_with(
        r#"<policies><inbound><include-fragment fragment-id="elsewhere" /></inbound></policies>"#,
        &HashMap::new(),
        Mode::Offline,
    );
    assert!(doc.is_some());
    assert!(
        diags
            .iter()
            .any(|d| d.contains("warning: policy fragment 'elsewhere' is not known"))
    );
}

#[test]
fn checking_a_fragment_accepts_it_if_it_fits_some_section() {
    let none = HashMap::new();
    let check = |xml: &str| -> Vec<String> {
        compile::check_fragment("f", xml, &NoNamedValues, &none, Mode::Strict)
            .into_iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| d.message)
            .collect()
    };
    assert!(check("<fragment><forward-request/></fragment>").is_empty());
    assert!(check("<fragment><cors><allowed-origins><origin>*</origin></allowed-origins><allowed-headers><header>*</header></allowed-headers></cors></fragment>").is_empty());
    assert!(check("<fragment><quota calls=\"1\" renewal-period=\"0\"/></fragment>").is_empty());
    assert!(
        check("<fragment><nope/></fragment>")
            .iter()
            .any(|e| e.contains("unknown policy <nope>"))
    );
    assert!(
        check("<fragment><base/></fragment>")
            .iter()
            .any(|e| e.contains("<base/>"))
    );
    assert!(check("<fragment>").iter().any(|e| !e.is_empty()));
    let errors = check("<fragment><forward-request/><cors/></fragment>");
    assert!(!errors.is_empty(), "no section allows both");
}

#[test]
fn attributes() {
    for (xml, needle) in [
        ("<include-fragment />", "needs the attribute 'fragment-id'"),
        (
            r#"<include-fragment fragment-id="@(&quot;x&quot;)" />"#,
            "does not accept an expression",
        ),
        (
            r#"<include-fragment fragment-id="x" other="1" />"#,
            "no attribute 'other'",
        ),
    ] {
        let errors = errors_inbound(xml);
        assert!(
            errors.iter().any(|e| e.contains(needle)),
            "{xml}: {errors:?}"
        );
    }
}
