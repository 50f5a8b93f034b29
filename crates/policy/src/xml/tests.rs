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

#[test]
fn azure_lenient_quotes_in_attribute_and_text_expressions() {
    let doc = parse(
        r#"<set-header name="x" exists-action="override" a="@(context.Request.Headers.GetValueOrDefault("x", ""))"><value>@(context.Request.Headers.GetValueOrDefault("x", ""))</value></set-header>"#,
    );
    let want = r#"@(context.Request.Headers.GetValueOrDefault("x", ""))"#;
    assert_eq!(doc.attr("a").unwrap().value, want);
    assert_eq!(doc.elements().next().unwrap().text().unwrap().0, want);
    let doc = parse("<value>@(a < b && c > d)</value>");
    assert_eq!(doc.text().unwrap().0, "@(a < b && c > d)");
}

#[test]
fn unclosed_expression_is_reported_where_it_starts() {
    let text = "<policies>\n  <inbound>\n    <set-header name=\"x\" exists-action=\"override\">\n      <value>@(context.Nope(</value>\n    </set-header>\n  </inbound>\n</policies>";
    let err = Source::new(text).parse().unwrap_err();
    assert_eq!(
        err.pos,
        Pos {
            line: 4,
            column: 14
        },
        "{}",
        err.message
    );
    assert!(err.message.contains("does not close"), "{}", err.message);
    assert!(
        err.message.contains("`(` at 4:28 has no matching `)`"),
        "{}",
        err.message
    );
    // In an attribute, and a string literal that runs past its line.
    let err = Source::new("<a>\n <b c=\"@(x\" />\n <d/>\n</a>")
        .parse()
        .unwrap_err();
    assert_eq!(err.pos, Pos { line: 2, column: 8 }, "{}", err.message);
    assert!(
        err.message
            .contains("the string literal at 2:11 is not closed on its line"),
        "{}",
        err.message
    );
    assert!(err.message.contains("string literal"), "{}", err.message);
}

#[test]
fn errors_after_escapes_keep_their_column() {
    // The escapes make the prepared line longer; the error still points at `</y>`.
    let err = Source::new("<a>\n<x b=\"@(1 < 2 && \"<\" != \"&\")\"></y>\n</a>")
        .parse()
        .unwrap_err();
    assert_eq!(err.pos.line, 2, "{}", err.message);
    assert_eq!(err.pos.column, 31, "{}", err.message);
}

#[test]
fn expressions_only_in_attribute_values_and_text() {
    // `@(` in a comment, CDATA or the middle of a text is no expression, and swallows nothing.
    let doc = parse("<a><!-- mail me@(x --><b>text @(y</b><c><![CDATA[@(z]]></c></a>");
    assert_eq!(doc.elements().count(), 2);
    // An expression after a comment is still read as one.
    let doc = parse("<v><!-- why -->@(1 < 2)</v>");
    assert_eq!(doc.text().unwrap().0, "@(1 < 2)");
    // Comments inside blocks may hold quotes and angle brackets.
    let block = "@{\n  // don't <stop>\n  /* \"x\" */ return 1 < 2;\n}";
    let doc = parse(&format!("<v>{block}</v>"));
    assert_eq!(doc.text().unwrap().0, block);
}

#[test]
fn verbatim_interpolated_and_char_literals() {
    for expr in [
        r#"@(@"a ""quoted"" \ <b>")"#,
        r#"@($"{(1 > 0 ? "<" : ">")} {{literal}}")"#,
        r#"@($@"{"x"}""")"#,
        r#"@('"' == '\'' || '<' != '>')"#,
        r#"@("&amp; stays an entity: &lt;")"#,
    ] {
        let doc = parse(&format!("<v a=\"{expr}\" b='{expr}'>{expr}</v>"));
        let decoded = expr.replace("&amp;", "&").replace("&lt;", "<");
        assert_eq!(doc.text().unwrap().0, decoded, "{expr}");
        assert_eq!(doc.attr("a").unwrap().value, decoded, "{expr}");
        assert_eq!(doc.attr("b").unwrap().value, decoded, "{expr}");
    }
}

#[test]
fn private_use_characters_are_kept() {
    // The former pre-pass swapped characters for U+E000..U+E004 and turned those back into
    // `<`, `>`, `"`, `'`, `&` everywhere.
    let doc = parse("<a b=\"\u{E000}\">@(\"\u{E002}\" + \"<\")</a>");
    assert_eq!(doc.attr("b").unwrap().value, "\u{E000}");
    assert_eq!(doc.text().unwrap().0, "@(\"\u{E002}\" + \"<\")");
}

mod properties {
    use proptest::prelude::*;

    use super::super::Source;

    /// XML-ish text with the characters that matter to the pre-pass.
    fn xmlish() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just("<a b=\""),
                Just("\">"),
                Just("</a>"),
                Just("@("),
                Just("@{"),
                Just(")"),
                Just("}"),
                Just("\""),
                Just("'"),
                Just("<"),
                Just(">"),
                Just("&"),
                Just("&amp;"),
                Just("@\""),
                Just("$\""),
                Just("{"),
                Just("\\"),
                Just("\n"),
                Just("//"),
                Just("/*"),
                Just("*/"),
                Just("<!--"),
                Just("-->"),
                Just("x"),
                Just(" "),
                Just("é"),
                Just("\u{E000}"),
            ],
            0..40,
        )
        .prop_map(|parts| parts.concat())
    }

    proptest! {
        #[test]
        fn prepass_never_panics_and_maps_into_the_original(text in xmlish()) {
            let src = Source::new(&text);
            let _ = src.parse();
            let prepared = src.prepared();
            let mut last = 0;
            for i in 0..=prepared.len() {
                let o = src.original_offset(i);
                prop_assert!(o <= text.len());
                prop_assert!(o >= last);
                last = o;
            }
        }

        #[test]
        fn prepass_is_identity_without_expressions(text in any::<String>()) {
            let text = text.replace('@', "");
            let src = Source::new(&text);
            prop_assert_eq!(src.prepared(), text.as_str());
        }

        #[test]
        fn prepass_writes_only_entities_for_what_it_changes(text in xmlish()) {
            let src = Source::new(&text);
            let prepared = src.prepared();
            if !prepared.is_empty() {
                let decoded = prepared
                    .replace("&quot;", "\"")
                    .replace("&apos;", "'")
                    .replace("&lt;", "<")
                    .replace("&gt;", ">");
                let original = text
                    .replace("&quot;", "\"")
                    .replace("&apos;", "'")
                    .replace("&lt;", "<")
                    .replace("&gt;", ">");
                prop_assert_eq!(decoded.replace("&amp;", "&"), original.replace("&amp;", "&"));
            }
        }
    }
}
