use super::*;

fn parse(text: &str) -> Element {
    Source::new(text).parse().unwrap()
}

#[test]
fn raw_angle_brackets_and_quotes_inside_expressions() {
    let doc = parse(
        r#"<policies><inbound>
  <set-variable name="v" value="@(context.Request.Body.As<JObject>(preserveContent: true)["name"].ToString())" />
  <set-header name="x" exists-action="override"><value>@(1 < 2 && "a" != "b")</value></set-header>
</inbound></policies>"#,
    );
    let inbound = doc.elements().next().unwrap();
    let set_var = inbound.elements().next().unwrap();
    assert_eq!(
        set_var.attr("value").unwrap().value,
        r#"@(context.Request.Body.As<JObject>(preserveContent: true)["name"].ToString())"#
    );
    let value = inbound
        .elements()
        .nth(1)
        .unwrap()
        .elements()
        .next()
        .unwrap();
    assert_eq!(value.text().unwrap().0, r#"@(1 < 2 && "a" != "b")"#);
}

#[test]
fn statement_blocks_strings_chars_and_interpolation() {
    let text = r#"<p a="@{ var s = &quot;x&quot;; if (s.Length > 0 &amp;&amp; 'a' < 'b') { return $&quot;{s}&quot;; } return @&quot;C:\t&quot;; }"/>"#;
    let doc = parse(text);
    assert_eq!(
        doc.attr("a").unwrap().value,
        r#"@{ var s = "x"; if (s.Length > 0 && 'a' < 'b') { return $"{s}"; } return @"C:\t"; }"#
    );
    let doc = parse(
        r#"<p a="@($"id={context.Request.MatchedParameters["id"]} {1 > 0}")" b="plain &amp; simple"/>"#,
    );
    assert_eq!(
        doc.attr("a").unwrap().value,
        r#"@($"id={context.Request.MatchedParameters["id"]} {1 > 0}")"#
    );
    assert_eq!(doc.attr("b").unwrap().value, "plain & simple");
    let doc = parse(r#"<p a="@("a \" > b".Length > 'c'.ToString().Length)"/>"#);
    assert_eq!(
        doc.attr("a").unwrap().value,
        r#"@("a \" > b".Length > 'c'.ToString().Length)"#
    );
}

#[test]
fn positions_point_at_the_original_text() {
    let text = "<policies>\n  <inbound>\n    <x a=\"@(1 < 2)\" b=\"@(\"<<<\")\"/>\n    <y/>\n  </inbound>\n</policies>";
    let src = Source::new(text);
    let doc = src.parse().unwrap();
    let inbound = doc.elements().next().unwrap();
    assert_eq!(inbound.pos, Pos { line: 2, column: 3 });
    let x = inbound.elements().next().unwrap();
    assert_eq!(x.pos, Pos { line: 3, column: 5 });
    assert_eq!(
        x.attr("b").unwrap().pos,
        Pos {
            line: 3,
            column: 21
        }
    );
    let y = inbound.elements().nth(1).unwrap();
    assert_eq!(y.pos, Pos { line: 4, column: 5 });
    // The value offset maps into the original text.
    let b = x.attr("b").unwrap();
    assert!(text[b.value_offset..].starts_with("@(\"<<<\")"));
}

#[test]
fn payload_is_kept_raw() {
    let doc =
        parse("<set-body><soap:Envelope xmlns:soap=\"urn:x\"><a>1</a></soap:Envelope></set-body>");
    assert_eq!(
        doc.inner_raw,
        "<soap:Envelope xmlns:soap=\"urn:x\"><a>1</a></soap:Envelope>"
    );
    let doc = parse("<set-body>{\"a\": [1, 2]}</set-body>");
    assert_eq!(doc.text().unwrap().0, "{\"a\": [1, 2]}");
}

#[test]
fn malformed_xml_reports_where() {
    let err = Source::new("<policies>\n  <inbound>\n  </outbound>\n</policies>")
        .parse()
        .unwrap_err();
    assert_eq!(err.pos.line, 3);
    assert!(err.message.contains("not well-formed"), "{}", err.message);
    let err = Source::new("<a b=\"1\" b=\"2\"/>").parse().unwrap_err();
    assert_eq!(err.pos.line, 1);
    assert!(Source::new("").parse().is_err());
    assert!(
        Source::new("<!DOCTYPE x [<!ENTITY a \"b\">]><x/>")
            .parse()
            .is_err()
    );
}

#[test]
fn unbalanced_expressions_never_panic() {
    for text in [
        "<a b=\"@(\"/>",
        "<a>@{ \"</a>",
        "<a b='@(x'/>",
        "@(",
        "<a>@(\"\\</a>",
        "<a b=\"@(&\"/>",
    ] {
        let _ = Source::new(text).parse();
    }
}

#[test]
fn deeply_nested_policies_are_refused_not_walked() {
    // The element tree is built recursively: without the pre-scan, 100,000 levels (well under
    // the node limit) overflowed the stack of whoever saved the policy.
    let deep = format!(
        "<policies><inbound>{}{}</inbound></policies>",
        "<choose>".repeat(100_000),
        "</choose>".repeat(100_000)
    );
    let e = Source::new(&deep).parse().unwrap_err();
    assert!(e.message.contains("nest deeper than 64"), "{}", e.message);
    let fits = format!("{}{}", "<a>".repeat(64), "</a>".repeat(64));
    assert!(Source::new(&fits).parse().is_ok());
}
