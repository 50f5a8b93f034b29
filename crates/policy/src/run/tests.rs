use crate::compile::{self, Mode, NoNamedValues, PolicyDocument, Scope};
use crate::policies::testkit::*;
use crate::run::Pipeline;

fn doc(scope: Scope, xml: &str) -> PolicyDocument {
    let (d, diags) = compile::compile(xml, scope, &NoNamedValues, Mode::Strict);
    d.unwrap_or_else(|| panic!("{diags:?}"))
}

fn marker(section: &str, name: &str) -> String {
    format!(
        r#"<set-header name="X-{section}" exists-action="append"><value>{name}</value></set-header>"#
    )
}

/// Each scope appends its name before and after `<base/>` in every section where a header can be
/// set, so the header's values spell out the order.
fn scope_doc(scope: Scope, name: &str) -> PolicyDocument {
    let inbound = format!(
        "{}<base/>{}",
        marker("In", &format!("{name}-before")),
        marker("In", &format!("{name}-after"))
    );
    let outbound = format!(
        "{}<base/>{}",
        marker("Out", &format!("{name}-before")),
        marker("Out", &format!("{name}-after"))
    );
    let backend = if scope == Scope::Global {
        format!("{}<forward-request/>", marker("Back", name))
    } else {
        format!("{}<base/>", marker("Back", name))
    };
    doc(
        scope,
        &format!(
            "<policies><inbound>{inbound}</inbound><backend>{backend}</backend><outbound>{outbound}</outbound><on-error><base/></on-error></policies>"
        ),
    )
}

#[test]
fn base_places_the_parent_section_where_it_stands() {
    let global = scope_doc(Scope::Global, "g");
    let product = scope_doc(Scope::Product, "p");
    let api = scope_doc(Scope::Api, "a");
    let op = scope_doc(Scope::Operation, "o");
    let p = Pipeline::compose(&global, Some(&product), Some(&api), Some(&op));
    let mut ex = exchange("GET", "/", &[]);
    let io = run(&p, &mut ex);
    let sent = io.forwarded.unwrap();
    assert_eq!(
        all(&sent.headers, "x-in"),
        [
            "o-before", "a-before", "p-before", "g-before", "g-after", "p-after", "a-after",
            "o-after"
        ]
    );
    assert_eq!(all(&sent.headers, "x-back"), ["o", "a", "p", "g"]);
    assert_eq!(
        all(&ex.response.unwrap().headers, "x-out"),
        [
            "o-before", "a-before", "p-before", "g-before", "g-after", "p-after", "a-after",
            "o-after"
        ]
    );
}

#[test]
fn missing_scopes_and_sections_inherit_and_a_missing_base_drops_inheritance() {
    let global = scope_doc(Scope::Global, "g");
    // No product scope (an all-APIs subscription), and an operation without <base/> inbound.
    let api = scope_doc(Scope::Api, "a");
    let op = doc(
        Scope::Operation,
        &format!(
            "<policies><inbound>{}</inbound></policies>",
            marker("In", "o-only")
        ),
    );
    let p = Pipeline::compose(&global, None, Some(&api), Some(&op));
    let mut ex = exchange("GET", "/", &[]);
    let sent = run(&p, &mut ex).forwarded.unwrap();
    assert_eq!(all(&sent.headers, "x-in"), ["o-only"]);
    // The operation's document has no backend or outbound: they inherit.
    assert_eq!(all(&sent.headers, "x-back"), ["a", "g"]);
    assert_eq!(
        all(&ex.response.unwrap().headers, "x-out"),
        ["a-before", "g-before", "g-after", "a-after"]
    );
}

#[test]
fn the_default_global_policy_forwards() {
    let p = Pipeline::compose(&PolicyDocument::default_global(), None, None, None);
    assert!(p.plain_forward);
    let mut ex = exchange("GET", "/", &[]);
    assert!(run(&p, &mut ex).forwarded.is_some());
    let p = Pipeline::compose(
        &PolicyDocument::default_global(),
        None,
        Some(&PolicyDocument::inherit()),
        None,
    );
    assert!(p.plain_forward);
}

/// A failure in each section runs on-error with LastError (source, reason, message, section).
#[test]
fn on_error_sees_last_error_from_every_section() {
    let fail = r#"<set-variable name="boom" value="@(int.Parse(&quot;x&quot;))" />"#;
    for (section, xml) in [
        (
            "inbound",
            format!("<inbound>{fail}</inbound><backend><forward-request/></backend>"),
        ),
        (
            "backend",
            format!("<backend>{fail}<forward-request/></backend>"),
        ),
        (
            "outbound",
            format!("<backend><forward-request/></backend><outbound>{fail}</outbound>"),
        ),
    ] {
        let global = doc(
            Scope::Global,
            &format!(
                r#"<policies>{xml}<on-error>
                    <return-response>
                        <set-status code="599" reason="Handled" />
                        <set-header name="X-Source"><value>@(context.LastError.Source)</value></set-header>
                        <set-header name="X-Reason"><value>@(context.LastError.Reason)</value></set-header>
                        <set-header name="X-Section"><value>@(context.LastError.Section)</value></set-header>
                        <set-body>@(context.LastError.Message)</set-body>
                    </return-response>
                </on-error></policies>"#
            ),
        );
        let p = Pipeline::compose(&global, None, None, None);
        let mut ex = exchange("GET", "/", &[]);
        let io = run(&p, &mut ex);
        let r = ex.response.unwrap();
        assert_eq!(r.status, 599, "{section}");
        assert_eq!(all(&r.headers, "x-source"), ["set-variable"], "{section}");
        assert_eq!(all(&r.headers, "x-section"), [section]);
        assert!(!all(&r.headers, "x-reason")[0].is_empty());
        assert!(!r.body.unwrap().is_empty());
        assert_eq!(io.forwarded.is_some(), section == "outbound");
    }
}

#[test]
fn an_unhandled_error_is_left_to_the_gateway_as_a_500() {
    let global = doc(
        Scope::Global,
        r#"<policies><inbound><set-header name="X"><value>@(((string)null).Length.ToString())</value></set-header></inbound>
           <backend><forward-request/></backend></policies>"#,
    );
    let p = Pipeline::compose(&global, None, None, None);
    let mut ex = exchange("GET", "/", &[]);
    let io = run(&p, &mut ex);
    assert!(io.forwarded.is_none());
    // No answer of the pipeline's own: the gateway makes the fixed one (no detail in it).
    assert!(ex.response.is_none());
    let failure = ex.failure.unwrap();
    assert_eq!(failure.answer, crate::Answer::Internal);
    assert_eq!(failure.answer.status(), 500);
    assert_eq!(ex.last_error.unwrap().section, "inbound");
}

#[test]
fn documents_report_line_and_column() {
    let cases: &[(&str, u32, u32, &str)] = &[
        (
            "<policies>\n  <inbound>\n    <no-such-policy/>\n  </inbound>\n</policies>",
            3,
            5,
            "unknown policy <no-such-policy>",
        ),
        (
            "<policies>\n  <inbound>\n    <set-header name=\"X\" bogus=\"1\"><value>v</value></set-header>\n  </inbound>\n</policies>",
            3,
            26,
            "no attribute 'bogus'",
        ),
        (
            "<policies>\n  <inbound>\n    <forward-request/>\n  </inbound>\n</policies>",
            3,
            5,
            "not allowed in <inbound>",
        ),
        (
            "<policies>\n  <inbound>\n    <set-variable name=\"v\" value=\"@(1 +)\" />\n  </inbound>\n</policies>",
            3,
            40,
            "invalid expression",
        ),
        (
            "<policies>\n  <inbound>\n    <set-variable name=\"v\" value=\"@(context.Request.Nope)\" />\n  </inbound>\n</policies>",
            3,
            53,
            "invalid expression",
        ),
        (
            "<policies>\n  <inbound>\n  </outbound>\n</policies>",
            3,
            3,
            "not well-formed",
        ),
        (
            "<policies>\n  <inbound/>\n  <inbound/>\n</policies>",
            3,
            3,
            "appears twice",
        ),
        ("<policy/>", 1, 1, "root element must be <policies>"),
    ];
    for (xml, line, column, needle) in cases {
        let (d, diags) = compile::compile(xml, Scope::Api, &NoNamedValues, Mode::Strict);
        assert!(d.is_none(), "{xml}");
        let hit = diags
            .iter()
            .find(|d| d.message.contains(needle))
            .unwrap_or_else(|| panic!("{xml}: {diags:?}"));
        assert_eq!((hit.line, hit.column), (*line, *column), "{xml}: {hit}");
    }
}

#[test]
fn named_values_resolve_or_fail_and_are_warnings_offline() {
    let xml = r#"<policies><inbound><set-header name="X"><value>{{greeting}}</value></set-header></inbound></policies>"#;
    let mut named = std::collections::HashMap::new();
    named.insert("greeting".to_owned(), "hello".to_owned());
    let (d, _) = compile::compile(xml, Scope::Api, &named, Mode::Strict);
    let p = Pipeline::compose(
        &PolicyDocument::default_global(),
        None,
        Some(&d.unwrap()),
        None,
    );
    let mut ex = exchange("GET", "/", &[]);
    assert_eq!(
        all(&run(&p, &mut ex).forwarded.unwrap().headers, "x"),
        ["hello"]
    );
    let (d, diags) = compile::compile(xml, Scope::Api, &NoNamedValues, Mode::Strict);
    assert!(d.is_none());
    assert!(
        diags[0]
            .message
            .contains("named value 'greeting' does not exist")
    );
    let (d, diags) = compile::compile(xml, Scope::Api, &NoNamedValues, Mode::Offline);
    assert!(d.is_some());
    assert_eq!(diags[0].severity, compile::Severity::Warning);
    // A named value may hold an expression.
    named.insert("expr".to_owned(), "@(context.Request.Method)".to_owned());
    let (d, _) = compile::compile(
        r#"<policies><inbound><set-header name="X"><value>{{expr}}</value></set-header></inbound></policies>"#,
        Scope::Api,
        &named,
        Mode::Strict,
    );
    let p = Pipeline::compose(
        &PolicyDocument::default_global(),
        None,
        Some(&d.unwrap()),
        None,
    );
    let mut ex = exchange("PUT", "/", &[]);
    assert_eq!(
        all(&run(&p, &mut ex).forwarded.unwrap().headers, "x"),
        ["PUT"]
    );
}

#[test]
fn payload_content_is_not_policy() {
    let global = doc(
        Scope::Global,
        r#"<policies><inbound><return-response><set-body><soap:Envelope xmlns:soap="urn:s"><unknown-element/></soap:Envelope></set-body></return-response></inbound></policies>"#,
    );
    let p = Pipeline::compose(&global, None, None, None);
    let mut ex = exchange("GET", "/", &[]);
    run(&p, &mut ex);
    assert_eq!(
        ex.response.unwrap().body.unwrap(),
        r#"<soap:Envelope xmlns:soap="urn:s"><unknown-element/></soap:Envelope>"#
    );
}

#[test]
fn the_request_is_done_at_forward_only_when_nothing_reads_it_afterwards() {
    let done = |inner: &str| {
        let global = doc(
            Scope::Global,
            "<policies><inbound/><backend><forward-request/></backend><outbound/><on-error/></policies>",
        );
        let api = doc(Scope::Api, inner);
        Pipeline::compose(&global, None, Some(&api), None).request_done_at_forward
    };
    assert!(done(
        r#"<policies><inbound><base/><set-header name="a" exists-action="override"><value>1</value></set-header></inbound><backend><base/></backend><outbound><base/></outbound></policies>"#
    ));
    for later in [
        r#"<policies><inbound><base/></inbound><backend><base/></backend><outbound><set-header name="a" exists-action="override"><value>@(context.Request.Headers.GetValueOrDefault("x",""))</value></set-header></outbound></policies>"#,
        r#"<policies><inbound><base/></inbound><backend><base/></backend><on-error><set-status code="500"/></on-error></policies>"#,
        r#"<policies><inbound><quota-by-key calls="10" renewal-period="300" counter-key="k"/></inbound><backend><base/></backend></policies>"#,
        r#"<policies><inbound><base/></inbound><backend><retry condition="@(true)" count="2" interval="0"><forward-request/></retry></backend></policies>"#,
    ] {
        assert!(!done(later), "{later}");
    }
}
