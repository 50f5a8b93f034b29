//! `<xml-to-json kind="direct|javascript-friendly" apply="always|content-type-xml"
//! consider-accept-header="true" always-array-child-elements="false"/>`: converts the body of the
//! request (inbound) or the response (outbound, on-error) from XML to JSON.
//!
//! `direct` mirrors the document, as Newtonsoft's `SerializeXmlNode` does: `{"root": {…}}`,
//! attributes as `"@name"`, namespace declarations as `"@xmlns:p"`, prefixed names kept, text
//! beside attributes or elements as `"#text"`, an element holding only text as a string, an empty
//! element as `null`, repeated elements as an array. `javascript-friendly` gives names a script
//! can use with dots: attributes without `@`, local names without prefixes, no namespace
//! declarations, and mixed text as `"text"`. With `always-array-child-elements` every child
//! element becomes an array. Values stay strings (XML has no types).
//!
//! With `consider-accept-header` (the default) the body is converted only when the request's
//! `Accept` header asks for JSON. DTDs are refused (no entity expansion). The converted message
//! gets `Content-Type: application/json`. A body over the bounds of [`crate::limits`] (nesting,
//! nodes, attributes, namespace declarations) is refused before it is parsed: 400 for a
//! request's body, 500 for a response's.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use http::HeaderValue;
use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};

use super::json_to_xml::{Apply, Refusal, mentions};
use super::on_response;
use super::param::{self, Param};
use crate::compile::Cx;
use crate::exchange::Exchange;
use crate::expr::{Json, JsonObject};
use crate::limits::MAX_VALUES;
use crate::run::{Budget, Flow, PolicyError};
use crate::text::PolicyText;
use crate::xml::{Element, scan};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Direct,
    JavascriptFriendly,
}

#[derive(Debug, Clone)]
pub struct XmlToJson {
    kind: Param<Kind>,
    apply: Param<Apply>,
    consider_accept: Param<bool>,
    always_array: Param<bool>,
    pub response: bool,
}

fn parse_kind(s: &str) -> Option<Kind> {
    if s.eq_ignore_ascii_case("direct") {
        Some(Kind::Direct)
    } else if s.eq_ignore_ascii_case("javascript-friendly") {
        Some(Kind::JavascriptFriendly)
    } else {
        None
    }
}

fn parse_apply(s: &str) -> Option<Apply> {
    if s.eq_ignore_ascii_case("always") {
        Some(Apply::Always)
    } else if s.eq_ignore_ascii_case("content-type-xml") {
        Some(Apply::ContentType)
    } else {
        None
    }
}

impl XmlToJson {
    pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Self> {
        cx.allow_attrs(
            el,
            &[
                "kind",
                "apply",
                "consider-accept-header",
                "always-array-child-elements",
                "always-array-children",
            ],
        );
        cx.no_children(el);
        for required in ["kind", "apply"] {
            if el.attr(required).is_none() {
                cx.error(
                    el.pos,
                    format!("<xml-to-json> needs the attribute '{required}'"),
                );
                return None;
            }
        }
        let kind = Param::compile(
            cx,
            el,
            "kind",
            "javascript-friendly or direct",
            parse_kind,
            Kind::Direct,
        );
        let apply = Param::compile(
            cx,
            el,
            "apply",
            "always or content-type-xml",
            parse_apply,
            Apply::Always,
        );
        let consider_accept = param::bool_param(cx, el, "consider-accept-header", true);
        let name = if el.attr("always-array-children").is_some() {
            "always-array-children"
        } else {
            "always-array-child-elements"
        };
        let always_array = param::bool_param(cx, el, name, false);
        Some(Self {
            kind,
            apply,
            consider_accept,
            always_array,
            response: on_response(cx.section),
        })
    }

    pub fn texts(&self) -> Vec<&PolicyText> {
        self.kind
            .text()
            .into_iter()
            .chain(self.apply.text())
            .chain(self.consider_accept.text())
            .chain(self.always_array.text())
            .collect()
    }

    pub fn run(&self, ex: &mut Exchange, budget: &mut Budget) -> Result<Flow, PolicyError> {
        let kind = self.kind.get(ex, budget)?;
        let apply = self.apply.get(ex, budget)?;
        let always_array = self.always_array.get(ex, budget)?;
        if self.consider_accept.get(ex, budget)? && !mentions(&ex.request.headers, ACCEPT, "json") {
            return Ok(Flow::Continue);
        }
        let (body, headers) = if self.response {
            match ex.response.as_mut() {
                Some(r) => (&mut r.body, &mut r.headers),
                None => return Ok(Flow::Continue),
            }
        } else {
            (&mut ex.request.body, &mut ex.request.headers)
        };
        if apply == Apply::ContentType && !mentions(headers, CONTENT_TYPE, "xml") {
            return Ok(Flow::Continue);
        }
        let Some(current) = body
            .as_ref()
            .filter(|b| !b.iter().all(u8::is_ascii_whitespace))
        else {
            return Ok(Flow::Continue);
        };
        let json = convert(current, kind, always_array)
            .map_err(|r| r.into_error("XmlToJsonConversionFailure", self.response))?;
        *body = Some(Bytes::from(json));
        headers.remove(CONTENT_LENGTH);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Ok(Flow::Continue)
    }
}

fn convert(body: &[u8], kind: Kind, always_array: bool) -> Result<String, Refusal> {
    let text = std::str::from_utf8(body)
        .map_err(|_| Refusal::Invalid("the body is not UTF-8 XML".to_owned()))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // Bounds first, so that neither the parser nor the recursive walk below can be made to do
    // more than linear work or to nest deeper than `MAX_DEPTH`.
    scan::check(text)
        .map_err(|over| Refusal::OverLimit(format!("the body is not converted: {over}")))?;
    let options = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: u32::try_from(MAX_VALUES).unwrap_or(u32::MAX),
        ..roxmltree::ParsingOptions::default()
    };
    let doc = roxmltree::Document::parse_with_options(text, options).map_err(|e| match e {
        roxmltree::Error::NodesLimitReached => Refusal::OverLimit(format!(
            "the body is not converted: it has more than {MAX_VALUES} nodes"
        )),
        e => Refusal::Invalid(format!("the body is not XML: {e}")),
    })?;
    let root = doc.root_element();
    let mut top = JsonObject::new();
    top.insert(
        name(text, root, kind),
        value(text, root, kind, always_array),
    );
    Ok(Json::Object(Arc::new(top)).to_json_string(false))
}

/// The element's name: as written (`prefix:local`) for `direct`, as Newtonsoft takes
/// `XmlNode.Name`; the local name for `javascript-friendly`.
fn name<'t>(text: &'t str, node: roxmltree::Node<'_, 't>, kind: Kind) -> &'t str {
    match kind {
        Kind::Direct => text
            .get(node.range().start + 1..)
            .and_then(|rest| {
                rest.split(|c: char| c.is_whitespace() || c == '/' || c == '>')
                    .next()
            })
            .filter(|written| !written.is_empty())
            .unwrap_or_else(|| node.tag_name().name()),
        Kind::JavascriptFriendly => node.tag_name().name(),
    }
}

/// The element's start tag as written, `<` to `>`.
fn start_tag<'t>(text: &'t str, node: roxmltree::Node<'_, 't>) -> &'t str {
    let from = node.range().start;
    let b = text.as_bytes();
    let mut quote = None;
    let mut end = text.len();
    for (i, &c) in b.iter().enumerate().skip(from) {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, b'"' | b'\'') => quote = Some(c),
            (None, b'>') => {
                end = i + 1;
                break;
            }
            _ => {}
        }
    }
    text.get(from..end).unwrap_or_default()
}

/// Recursive, but never deeper than `MAX_DEPTH`: [`scan::check`] refused deeper documents.
fn value<'t>(text: &'t str, node: roxmltree::Node<'_, 't>, kind: Kind, always_array: bool) -> Json {
    let mut obj = JsonObject::new();
    // Only elements whose start tag mentions `xmlns` declare namespaces; looking at the others'
    // namespaces in scope would cost each element as many steps as there are declarations.
    if kind == Kind::Direct && start_tag(text, node).contains("xmlns") {
        let inherited: HashSet<(Option<&str>, &str)> = node
            .parent_element()
            .map(|p| p.namespaces().map(|o| (o.name(), o.uri())).collect())
            .unwrap_or_default();
        for ns in node.namespaces() {
            if !inherited.contains(&(ns.name(), ns.uri())) {
                let key = match ns.name() {
                    Some(p) => format!("@xmlns:{p}"),
                    None => "@xmlns".to_owned(),
                };
                obj.insert(key, Json::String(ns.uri().into()));
            }
        }
    }
    for a in node.attributes() {
        let key = match kind {
            Kind::Direct => {
                let written = text.get(a.range_qname()).unwrap_or_else(|| a.name());
                format!("@{written}")
            }
            Kind::JavascriptFriendly => a.name().to_owned(),
        };
        obj.insert(key, Json::String(a.value().into()));
    }
    let mut text_content = String::new();
    // Repeated elements become one array, in the order each name first appears.
    let mut children: Vec<(&str, Vec<Json>)> = Vec::new();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for c in node.children() {
        if c.is_element() {
            let n = name(text, c, kind);
            let v = value(text, c, kind, always_array);
            match seen.get(n).and_then(|i| children.get_mut(*i)) {
                Some((_, list)) => list.push(v),
                None => {
                    seen.insert(n, children.len());
                    children.push((n, vec![v]));
                }
            }
        } else if c.is_text() {
            text_content.push_str(c.text().unwrap_or_default());
        }
    }
    let trimmed = text_content.trim();
    if obj.is_empty() && children.is_empty() {
        return if trimmed.is_empty() {
            Json::Null
        } else {
            Json::String(trimmed.into())
        };
    }
    if !trimmed.is_empty() {
        let key = match kind {
            Kind::Direct => "#text",
            Kind::JavascriptFriendly => "text",
        };
        obj.insert(key, Json::String(trimmed.into()));
    }
    for (k, mut list) in children {
        let v = if list.len() == 1 && !always_array {
            list.pop().unwrap_or(Json::Null)
        } else {
            Json::Array(Arc::new(list))
        };
        obj.insert(k, v);
    }
    Json::Object(Arc::new(obj))
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::{Kind, convert};

    const ORDER: &str = r#"<?xml version="1.0"?>
        <o:order xmlns:o="urn:orders" id="7">
            <o:item sku="a">Pen</o:item>
            <o:item sku="b">Ink &amp; paper</o:item>
            <o:note/>
            <o:total>3.50</o:total>
        </o:order>"#;

    #[test]
    fn direct_mirrors_the_document() {
        assert_eq!(
            convert(ORDER.as_bytes(), Kind::Direct, false).unwrap(),
            r##"{"o:order":{"@xmlns:o":"urn:orders","@id":"7","o:item":[{"@sku":"a","#text":"Pen"},{"@sku":"b","#text":"Ink & paper"}],"o:note":null,"o:total":"3.50"}}"##
        );
    }

    #[test]
    fn javascript_friendly_uses_plain_names() {
        assert_eq!(
            convert(ORDER.as_bytes(), Kind::JavascriptFriendly, false).unwrap(),
            r#"{"order":{"id":"7","item":[{"sku":"a","text":"Pen"},{"sku":"b","text":"Ink & paper"}],"note":null,"total":"3.50"}}"#
        );
        assert_eq!(
            convert(b"<a><b>1</b></a>", Kind::JavascriptFriendly, true).unwrap(),
            r#"{"a":{"b":["1"]}}"#
        );
    }

    #[test]
    fn dtds_and_broken_xml_are_refused() {
        let bomb = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><a>&lol2;</a>"#;
        assert!(convert(bomb.as_bytes(), Kind::Direct, false).is_err());
        assert!(convert(b"<a><b></a>", Kind::Direct, false).is_err());
    }

    #[test]
    fn bodies_over_the_bounds_are_refused_before_parsing() {
        let deep = format!("{}{}", "<a>".repeat(20_000), "</a>".repeat(20_000));
        let e = convert(deep.as_bytes(), Kind::Direct, false).unwrap_err();
        assert!(
            matches!(&e, super::Refusal::OverLimit(m) if m.contains("deeper than 64")),
            "{e:?}"
        );
        let ok = format!("{}x{}", "<a>".repeat(64), "</a>".repeat(64));
        let json = convert(ok.as_bytes(), Kind::Direct, false).unwrap();
        assert_eq!(
            json,
            format!("{}\"x\"{}", "{\"a\":".repeat(64), "}".repeat(64))
        );
        // Not XML at all is not a limit.
        assert!(matches!(
            convert(b"<a>", Kind::Direct, false),
            Err(super::Refusal::Invalid(_))
        ));
    }

    #[test]
    fn many_siblings_group_into_one_array_in_order() {
        let n = 40_000;
        let body: String = (0..n)
            .map(|i| format!("<n{}>{i}</n{}>", i % 3, i % 3))
            .collect();
        let json = convert(format!("<r>{body}<z/></r>").as_bytes(), Kind::Direct, false).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let r = v["r"].as_object().unwrap();
        assert_eq!(r.keys().collect::<Vec<_>>(), ["n0", "n1", "n2", "z"]);
        assert_eq!(r["n1"].as_array().unwrap().len(), n / 3);
        assert_eq!(r["n1"][2], "7");
        let distinct: String = (0..n).map(|i| format!("<e{i}/>")).collect();
        let json = convert(format!("<r>{distinct}</r>").as_bytes(), Kind::Direct, false).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["r"].as_object().unwrap().len(), n);
    }

    #[test]
    fn namespace_declarations_are_reported_where_made() {
        let xml = r#"<a:r xmlns:a="urn:a"><a:x xmlns:b="urn:b" b:k="1"><a:y/></a:x><z xmlns="urn:z"/></a:r>"#;
        assert_eq!(
            convert(xml.as_bytes(), Kind::Direct, false).unwrap(),
            r#"{"a:r":{"@xmlns:a":"urn:a","a:x":{"@xmlns:b":"urn:b","@b:k":"1","a:y":null},"z":{"@xmlns":"urn:z"}}}"#
        );
    }

    #[test]
    fn converts_the_response_when_json_is_accepted() {
        let p = pipeline(
            r#"<policies><backend><forward-request/></backend><outbound>
                <xml-to-json kind="direct" apply="content-type-xml" />
            </outbound></policies>"#,
        );
        let call = |accept: &str, content_type: &str| {
            let mut ex = exchange("GET", "/", &[("Accept", accept)]);
            let mut io = MockIo {
                answer: Some(bytes::Bytes::from_static(b"<r><v>1</v></r>")),
                answer_type: Some(content_type.to_owned()),
                ..MockIo::default()
            };
            block_on(p.run(&mut ex, &mut io));
            let r = ex.response.unwrap();
            (
                r.headers["content-type"].to_str().unwrap().to_owned(),
                r.body.unwrap(),
            )
        };
        assert_eq!(
            call("application/json", "text/xml; charset=utf-8"),
            (
                "application/json".into(),
                bytes::Bytes::from(r#"{"r":{"v":"1"}}"#)
            )
        );
        assert_eq!(call("text/html", "application/xml").1, "<r><v>1</v></r>");
        assert_eq!(
            call("*/*, application/json", "text/plain").1,
            "<r><v>1</v></r>"
        );
    }

    #[test]
    fn attributes_are_checked() {
        let e = errors_inbound(r#"<xml-to-json apply="always" />"#);
        assert!(e[0].contains("needs the attribute 'kind'"), "{e:?}");
        let e = errors_inbound(r#"<xml-to-json kind="pretty" apply="always" />"#);
        assert!(
            e[0].contains("'kind' must be javascript-friendly or direct"),
            "{e:?}"
        );
        let e = errors_inbound(r#"<xml-to-json kind="direct" apply="content-type-json" />"#);
        assert!(
            e[0].contains("'apply' must be always or content-type-xml"),
            "{e:?}"
        );
    }
}
