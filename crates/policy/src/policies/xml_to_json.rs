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
//! gets `Content-Type: application/json`.

use std::sync::Arc;

use bytes::Bytes;
use http::HeaderValue;
use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};

use super::json_to_xml::{Apply, mentions};
use super::on_response;
use super::param::{self, Param};
use crate::compile::Cx;
use crate::exchange::Exchange;
use crate::expr::{Json, JsonObject};
use crate::run::{Budget, Flow, PolicyError};
use crate::text::PolicyText;
use crate::xml::Element;

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
            .map_err(|m| PolicyError::runtime("XmlToJsonConversionFailure", m))?;
        *body = Some(Bytes::from(json));
        headers.remove(CONTENT_LENGTH);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Ok(Flow::Continue)
    }
}

fn convert(body: &[u8], kind: Kind, always_array: bool) -> Result<String, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8 XML".to_owned())?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let doc = roxmltree::Document::parse(text).map_err(|e| format!("the body is not XML: {e}"))?;
    let root = doc.root_element();
    let mut top = JsonObject::new();
    top.insert(name(root, kind), value(root, kind, always_array));
    Ok(Json::Object(Arc::new(top)).to_json_string(false))
}

fn name(node: roxmltree::Node<'_, '_>, kind: Kind) -> String {
    let local = node.tag_name().name();
    match (
        kind,
        node.tag_name()
            .namespace()
            .and_then(|ns| node.lookup_prefix(ns)),
    ) {
        (Kind::Direct, Some(prefix)) if !prefix.is_empty() => format!("{prefix}:{local}"),
        _ => local.to_owned(),
    }
}

fn value(node: roxmltree::Node<'_, '_>, kind: Kind, always_array: bool) -> Json {
    let mut obj = JsonObject::new();
    if kind == Kind::Direct {
        for ns in node.namespaces() {
            // Only the declarations made on this element.
            let inherited = node.parent_element().is_some_and(|p| {
                p.namespaces()
                    .any(|o| o.name() == ns.name() && o.uri() == ns.uri())
            });
            if !inherited {
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
            Kind::Direct => match a.namespace().and_then(|ns| node.lookup_prefix(ns)) {
                Some(p) if !p.is_empty() => format!("@{p}:{}", a.name()),
                _ => format!("@{}", a.name()),
            },
            Kind::JavascriptFriendly => a.name().to_owned(),
        };
        obj.insert(key, Json::String(a.value().into()));
    }
    let mut text = String::new();
    let mut children: Vec<(String, Vec<Json>)> = Vec::new();
    for c in node.children() {
        if c.is_element() {
            let n = name(c, kind);
            let v = value(c, kind, always_array);
            match children.iter_mut().find(|(k, _)| *k == n) {
                Some((_, list)) => list.push(v),
                None => children.push((n, vec![v])),
            }
        } else if c.is_text() {
            text.push_str(c.text().unwrap_or_default());
        }
    }
    let text = text.trim();
    if obj.is_empty() && children.is_empty() {
        return if text.is_empty() {
            Json::Null
        } else {
            Json::String(text.into())
        };
    }
    if !text.is_empty() {
        let key = match kind {
            Kind::Direct => "#text",
            Kind::JavascriptFriendly => "text",
        };
        obj.insert(key, Json::String(text.into()));
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
