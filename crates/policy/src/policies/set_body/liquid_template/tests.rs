use super::super::super::testkit::*;
use super::*;

/// Runs an inbound `set-body template="liquid"` holding `template` over a POST with `body`.
fn render(template: &str, headers: &[(&str, &str)], body: &str) -> String {
    let p = pipeline(&format!(
        r#"<policies><inbound><set-variable name="who" value="tester" /><set-body template="liquid">{template}</set-body></inbound><backend><forward-request/></backend></policies>"#
    ));
    let mut ex = exchange("POST", "/orders/7?debug=1&x=y", headers);
    ex.request.body = Some(bytes::Bytes::from(body.to_owned()));
    let io = run(&p, &mut ex);
    assert!(ex.last_error.is_none(), "{:?}", ex.last_error);
    let sent = io.forwarded.expect("forwarded");
    String::from_utf8(sent.body.unwrap().to_vec()).unwrap()
}

#[test]
fn renders_the_request_context_and_the_body() {
    let out = render(
        r#"{"m": "{{context.Request.Method}}", "h": "{{context.Request.Headers["X-Name"]}}", "n": "{{body.order.name}}", "q": "{{context.Request.Url.Query.debug}}", "p": "{{context.Request.Url.Path}}", "v": "{{context.Variables.who}}"}"#,
        &[("x-name", "abc")],
        r#"{"order": {"name": "tea"}}"#,
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["m"], "POST");
    assert_eq!(v["h"], "abc");
    assert_eq!(v["n"], "tea");
    assert_eq!(v["q"], "1");
    assert_eq!(v["p"], "/orders/7");
    assert_eq!(v["v"], "tester");
}

#[test]
fn loops_and_conditions_over_the_body() {
    let out = render(
        "{% for i in body.items %}{{i.id}}{% unless forloop.last %},{% endunless %}{% endfor %}|{% if body.flag %}yes{% else %}no{% endif %}",
        &[],
        r#"{"items": [{"id": 1}, {"id": 2}, {"id": 3}], "flag": true}"#,
    );
    assert_eq!(out, "1,2,3|yes");
}

#[test]
fn azure_filter_names_work_as_well_as_liquid_ones() {
    let out = render(
        r#"{{ body.name | Upcase }} {{ body.name | downcase }} {{ body.n | AtLeast: 5 }} {{ body.n | Plus: 1 }} {{ "a b" | UrlEncode }} {{ body.missing | Default: "none" }} {{ "&lt;b&gt;" | H }} {{ body.list | Join: "-" }} {{ body.name | Size }} {{ "one two three" | TruncateWords: 2 }}"#,
        &[],
        r#"{"name": "Tea", "n": 3, "list": ["x", "y"]}"#,
    );
    assert_eq!(out, "TEA tea 5 4 a%20b none &lt;b&gt; x-y 3 one two...");
}

#[test]
fn missing_values_render_empty_and_a_body_that_is_not_json_is_nil() {
    let out = render(
        "[{{ body.nope.deeper }}][{{ context.Request.Headers.Absent }}]",
        &[],
        "not json",
    );
    assert_eq!(out, "[][]");
}

#[test]
fn filter_renaming_leaves_strings_and_text_alone() {
    assert_eq!(
        rename_filters(
            r#"a | B {{ x | AtLeast: 1 | Upcase }} {% if y == "| Upcase" %}{{ "|Q" }}{% endif %}"#
        ),
        r#"a | B {{ x | at_least: 1 | upcase }} {% if y == "| Upcase" %}{{ "|Q" }}{% endif %}"#
    );
}

#[test]
fn a_template_that_does_not_parse_is_refused_at_its_line() {
    let xml = "<policies>\n<inbound>\n<set-body template=\"liquid\">\n{\n  \"a\": \"{{ body.x \"\n}</set-body>\n</inbound>\n</policies>";
    let (_, diags) = crate::compile::compile(
        xml,
        crate::Scope::Api,
        &crate::NoNamedValues,
        crate::Mode::Strict,
    );
    let errors: Vec<String> = diags.iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("the Liquid template does not parse"),
        "{errors:?}"
    );
    assert_eq!(diags[0].line, 5, "{:?}", diags[0]);
}

#[test]
fn unknown_filters_and_templates_are_refused() {
    let e = errors_inbound(r#"<set-body template="liquid">{{ x | NoSuchFilter }}</set-body>"#);
    assert!(e.iter().any(|e| e.contains("no_such_filter")), "{e:?}");
    let e = errors_inbound(r#"<set-body template="mustache">x</set-body>"#);
    assert!(
        e.iter()
            .any(|e| e.contains("only template language is liquid")),
        "{e:?}"
    );
}

#[test]
fn loop_ranges_must_be_small_literals() {
    assert!(LiquidTemplate::parse("{% for i in (1..3) %}{{i}}{% endfor %}").is_ok());
    let e = LiquidTemplate::parse("{% for i in (1..body.n) %}{% endfor %}").unwrap_err();
    assert!(e.message.contains("literal bounds"), "{e:?}");
    let e = LiquidTemplate::parse("{% for i in (1..100000000) %}{% endfor %}").unwrap_err();
    assert!(e.message.contains("spans more than 10000"), "{e:?}");
}

#[test]
fn the_output_is_capped() {
    let t = LiquidTemplate::parse(
        "{% for i in (1..10000) %}{% for j in (1..10000) %}0123456789{% endfor %}{% endfor %}",
    )
    .unwrap();
    let ex = exchange("GET", "/", &[]);
    let e = t.render(&ex, false).unwrap_err();
    assert!(e.message.contains("failed to render"), "{e:?}");
}

#[test]
fn json_array_for_writes_a_json_array() {
    let out = render(
        r#"{"ids": {% JSONArrayFor i in body.items %}{"id": {{i.id}}}{% endJSONArrayFor %}, "none": {% JSONArrayFor i in body.empty %}{{i}}{% endJSONArrayFor %}}"#,
        &[],
        r#"{"items": [{"id": 1}, {"id": 2}], "empty": []}"#,
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"ids": [{"id": 1}, {"id": 2}], "none": []})
    );
}
