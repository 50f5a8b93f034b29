//! `<json-to-xml apply="always|content-type-json" consider-accept-header="true"
//! parse-date="true" namespace-separator=":" namespace-prefix="xmlns"
//! attribute-block-name="#attrs"/>`: converts the body of the request (inbound) or the response
//! (outbound, on-error) from JSON to XML, the way Azure's (Newtonsoft-based) conversion does in
//! the common cases:
//!
//! - an object with a single property becomes that element; anything else is wrapped in
//!   `<Document>`;
//! - an array repeats its property's element once per item;
//! - `"@name"` properties (and those in the `attribute-block-name` object, and those starting with
//!   `namespace-prefix`) become attributes, `"#text"` becomes text;
//! - `null` is an empty element, numbers and booleans are written as in JSON;
//! - a property name that is not an XML name is encoded as `XmlConvert.EncodeName` does
//!   (`_xHHHH_`); with `namespace-separator`, that character in a name becomes `:`;
//! - with `parse-date` (the default) an RFC 3339 date-time string is written in its canonical
//!   round-trip form; otherwise it is copied.
//!
//! With `consider-accept-header` (the default) the body is converted only when the request's
//! `Accept` header asks for XML. The converted message gets `Content-Type: application/xml`.
//! A body over the bounds of [`crate::limits`] (nesting, number of values) is refused while it is
//! parsed: 400 for a request's body, 500 for a response's.

use std::fmt::Write as _;

use bytes::Bytes;
use http::HeaderValue;
use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};

use super::on_response;
use super::param::{self, Param};
use crate::compile::Cx;
use crate::exchange::Exchange;
use crate::expr::{Json, JsonObject};
use crate::run::{Budget, Flow, PolicyError};
use crate::text::PolicyText;
use crate::xml::Element;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Apply {
    Always,
    /// Only when the message's `Content-Type` is JSON (or XML, for `xml-to-json`).
    ContentType,
}

#[derive(Debug, Clone)]
pub struct JsonToXml {
    apply: Param<Apply>,
    consider_accept: Param<bool>,
    options: Options,
    pub response: bool,
}

#[derive(Debug, Clone, Default)]
struct Options {
    parse_date: bool,
    namespace_separator: Option<char>,
    namespace_prefix: Option<String>,
    attribute_block: Option<String>,
}

fn parse_apply(s: &str) -> Option<Apply> {
    if s.eq_ignore_ascii_case("always") {
        Some(Apply::Always)
    } else if s.eq_ignore_ascii_case("content-type-json") {
        Some(Apply::ContentType)
    } else {
        None
    }
}

/// Why a body was not converted (here or by `xml-to-json`).
#[derive(Debug)]
pub(crate) enum Refusal {
    /// Not in the format converted from.
    Invalid(String),
    /// Over a bound of [`crate::limits`], refused before the expensive work.
    OverLimit(String),
}

impl Refusal {
    pub(crate) fn into_error(self, reason: &str, response: bool) -> PolicyError {
        match self {
            // A client's own body over the bounds is its fault; a backend's answer is not.
            Self::OverLimit(message) if !response => {
                PolicyError::new("", reason, message, crate::Answer::BadBody)
            }
            Self::OverLimit(message) | Self::Invalid(message) => {
                PolicyError::runtime(reason, message)
            }
        }
    }
}

/// Whether the header `name` of `headers` mentions `needle` (case-insensitive).
pub(crate) fn mentions(headers: &http::HeaderMap, name: http::HeaderName, needle: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        String::from_utf8_lossy(v.as_bytes())
            .to_ascii_lowercase()
            .contains(needle)
    })
}

impl JsonToXml {
    pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Self> {
        cx.allow_attrs(
            el,
            &[
                "apply",
                "consider-accept-header",
                "parse-date",
                "namespace-separator",
                "namespace-prefix",
                "attribute-block-name",
            ],
        );
        cx.no_children(el);
        if el.attr("apply").is_none() {
            cx.error(
                el.pos,
                "<json-to-xml> needs the attribute 'apply' (always or content-type-json)",
            );
            return None;
        }
        let apply = Param::compile(
            cx,
            el,
            "apply",
            "always or content-type-json",
            parse_apply,
            Apply::Always,
        );
        let consider_accept = param::bool_param(cx, el, "consider-accept-header", true);
        let parse_date = cx.bool_attr(el, "parse-date", true);
        let namespace_separator = match cx.literal(el, "namespace-separator") {
            Some(s) => {
                let mut chars = s.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => Some(c),
                    _ => {
                        let pos = el.attr("namespace-separator").map_or(el.pos, |a| a.pos);
                        cx.error(pos, "'namespace-separator' must be one character");
                        None
                    }
                }
            }
            None => None,
        };
        let namespace_prefix = cx.literal(el, "namespace-prefix").filter(|s| !s.is_empty());
        let attribute_block = cx
            .literal(el, "attribute-block-name")
            .filter(|s| !s.is_empty());
        Some(Self {
            apply,
            consider_accept,
            options: Options {
                parse_date,
                namespace_separator,
                namespace_prefix,
                attribute_block,
            },
            response: on_response(cx.section),
        })
    }

    pub fn texts(&self) -> Vec<&PolicyText> {
        self.apply
            .text()
            .into_iter()
            .chain(self.consider_accept.text())
            .collect()
    }

    pub fn run(&self, ex: &mut Exchange, budget: &mut Budget) -> Result<Flow, PolicyError> {
        let apply = self.apply.get(ex, budget)?;
        if self.consider_accept.get(ex, budget)? && !mentions(&ex.request.headers, ACCEPT, "xml") {
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
        if apply == Apply::ContentType && !mentions(headers, CONTENT_TYPE, "json") {
            return Ok(Flow::Continue);
        }
        let Some(current) = body
            .as_ref()
            .filter(|b| !b.iter().all(u8::is_ascii_whitespace))
        else {
            return Ok(Flow::Continue);
        };
        let json = Json::from_slice(current)
            .map_err(|e| {
                if e.over_limit() {
                    Refusal::OverLimit(format!("the body is not converted: {e}"))
                } else {
                    Refusal::Invalid(format!("the body is not JSON: {e}"))
                }
            })
            .map_err(|r| r.into_error("JsonToXmlConversionFailure", self.response))?;
        let xml = convert(&json, &self.options);
        *body = Some(Bytes::from(xml));
        headers.remove(CONTENT_LENGTH);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/xml"));
        Ok(Flow::Continue)
    }
}

fn convert(json: &Json, o: &Options) -> String {
    let mut out = String::new();
    match json {
        Json::Object(obj) if obj.len() == 1 => match obj.iter().next() {
            Some((
                name,
                value @ (Json::Object(_)
                | Json::Null
                | Json::Bool(_)
                | Json::Int(_)
                | Json::Float(_)
                | Json::String(_)),
            )) if !is_special(name, o) => {
                element(&mut out, name, value, o);
            }
            _ => element(&mut out, "Document", json, o),
        },
        Json::Array(_) => {
            out.push_str("<Document>");
            element(&mut out, "Array", json, o);
            out.push_str("</Document>");
        }
        _ => element(&mut out, "Document", json, o),
    }
    out
}

/// Properties that are not child elements.
fn is_special(name: &str, o: &Options) -> bool {
    name.starts_with('@')
        || name == "#text"
        || o.attribute_block.as_deref() == Some(name)
        || o.namespace_prefix
            .as_deref()
            .is_some_and(|p| name.starts_with(p))
}

/// Recursive, but never deeper than the JSON nests, which its parser bounds.
fn element(out: &mut String, name: &str, value: &Json, o: &Options) {
    if let Json::Array(items) = value {
        for item in items.iter() {
            element(out, name, item, o);
        }
        return;
    }
    let name = xml_name(name, o);
    out.push('<');
    out.push_str(&name);
    match value {
        Json::Object(obj) => {
            attributes(out, obj, o);
            out.push('>');
            let open = out.len();
            for (k, v) in obj.iter() {
                if k == "#text" {
                    escape(out, &scalar(v, o), false);
                } else if !is_special(k, o) {
                    element(out, k, v, o);
                }
            }
            close(out, &name, open);
        }
        Json::Null => out.push_str(" />"),
        other => {
            out.push('>');
            let open = out.len();
            escape(out, &scalar(other, o), false);
            close(out, &name, open);
        }
    }
}

/// Ends the element whose start tag's `>` ends just before `open`: `<a />` when nothing was
/// written inside it. Children are written straight into `out` (never into a buffer copied
/// into the parent's), so the work is linear in the output however deep the JSON nests.
fn close(out: &mut String, name: &str, open: usize) {
    if out.len() == open {
        out.pop();
        out.push_str(" />");
    } else {
        out.push_str("</");
        out.push_str(name);
        out.push('>');
    }
}

fn attributes(out: &mut String, obj: &JsonObject, o: &Options) {
    let one = |out: &mut String, name: &str, v: &Json| {
        out.push(' ');
        out.push_str(&xml_name(name, o));
        out.push_str("=\"");
        escape(out, &scalar(v, o), true);
        out.push('"');
    };
    for (k, v) in obj.iter() {
        if let Some(attr) = k.strip_prefix('@') {
            one(out, attr, v);
        } else if o
            .namespace_prefix
            .as_deref()
            .is_some_and(|p| k.starts_with(p))
        {
            one(out, k, v);
        } else if let (true, Json::Object(block)) = (o.attribute_block.as_deref() == Some(k), v) {
            for (bk, bv) in block.iter() {
                one(out, bk, bv);
            }
        }
    }
}

/// A value as element or attribute text.
fn scalar(v: &Json, o: &Options) -> String {
    match v {
        Json::Null => String::new(),
        Json::String(s) if o.parse_date => date(s).unwrap_or_else(|| s.to_string()),
        Json::String(s) => s.to_string(),
        Json::Object(_) | Json::Array(_) => v.to_json_string(false),
        other => other.to_json_string(false),
    }
}

/// An RFC 3339 date-time in its round-trip form: seconds always, fractional seconds without
/// trailing zeros, `Z` for UTC, `±hh:mm` otherwise.
fn date(s: &str) -> Option<String> {
    if s.len() < 19 || s.as_bytes().get(4).is_none_or(|b| *b != b'-') {
        return None;
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    let mut out = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    let nanos = t.nanosecond();
    if nanos > 0 {
        let frac = format!("{:09}", nanos);
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    let off = t.offset();
    if off.is_utc() {
        out.push('Z');
    } else {
        let (h, m, _) = off.as_hms();
        let sign = if h < 0 || m < 0 { '-' } else { '+' };
        let _ = write!(out, "{sign}{:02}:{:02}", h.unsigned_abs(), m.unsigned_abs());
    }
    Some(out)
}

/// A JSON property name as an XML name, invalid characters encoded as `_xHHHH_`.
fn xml_name(name: &str, o: &Options) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, c) in name.chars().enumerate() {
        let c = match o.namespace_separator {
            Some(sep) if c == sep && i > 0 => ':',
            _ => c,
        };
        let ok = if i == 0 {
            c.is_alphabetic() || c == '_'
        } else {
            c.is_alphanumeric() || matches!(c, '-' | '.' | '_' | ':')
        };
        if ok {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                let _ = write!(out, "_x{u:04X}_");
            }
        }
    }
    if out.is_empty() {
        out.push_str("_x0020_");
    }
    out
}

/// Writes `text` escaped for XML content (`attr`: for a double-quoted attribute). Characters
/// XML 1.0 cannot hold become U+FFFD.
pub(crate) fn escape(out: &mut String, text: &str, attr: bool) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attr => out.push_str("&quot;"),
            '\n' if attr => out.push_str("&#xA;"),
            '\r' => out.push_str("&#xD;"),
            '\t' if attr => out.push_str("&#x9;"),
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t') => out.push('\u{FFFD}'),
            '\u{FFFE}' | '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::{Options, convert};
    use crate::expr::Json;

    fn xml(json: &str) -> String {
        let o = Options {
            parse_date: true,
            ..Options::default()
        };
        convert(&Json::parse(json).unwrap(), &o)
    }

    #[test]
    fn converts_like_azure_in_the_common_cases() {
        assert_eq!(
            xml(r#"{"order": {"id": 7, "paid": true, "note": null}}"#),
            "<order><id>7</id><paid>true</paid><note /></order>"
        );
        assert_eq!(
            xml(r#"{"id": 7, "tags": ["a", "b"]}"#),
            "<Document><id>7</id><tags>a</tags><tags>b</tags></Document>"
        );
        assert_eq!(
            xml(r#"[1, 2]"#),
            "<Document><Array>1</Array><Array>2</Array></Document>"
        );
        assert_eq!(
            xml(r##"{"a": {"@id": "x\"y", "#text": "1 < 2 & 3"}}"##),
            r#"<a id="x&quot;y">1 &lt; 2 &amp; 3</a>"#
        );
        assert_eq!(
            xml(r#"{"first name": {"2x": ""}}"#),
            "<first_x0020_name><_x0032_x /></first_x0020_name>"
        );
        assert_eq!(
            xml(r#"{"when": "2024-01-05T10:00:00.500Z"}"#),
            "<when>2024-01-05T10:00:00.5Z</when>"
        );
        assert_eq!(
            xml(r#"{"when": "2024-01-05T10:00:00+02:00"}"#),
            "<when>2024-01-05T10:00:00+02:00</when>"
        );
        assert_eq!(xml(r#"{"text": "not a date"}"#), "<text>not a date</text>");
        assert_eq!(xml(r#"{"bell": "a\u0007b"}"#), "<bell>a\u{FFFD}b</bell>");
    }

    #[test]
    fn azure_soap_example_with_namespaces_and_an_attribute_block() {
        let p = pipeline(
            r##"<policies><backend><forward-request/></backend><outbound>
                <json-to-xml apply="always" consider-accept-header="false" parse-date="false" namespace-separator=":" namespace-prefix="xmlns" attribute-block-name="#attrs" />
            </outbound></policies>"##,
        );
        let mut ex = exchange("GET", "/", &[]);
        let mut io = MockIo {
            answer: Some(bytes::Bytes::from_static(br##"{"soapenv:Envelope": {"xmlns:soapenv": "http://schemas.xmlsoap.org/soap/envelope/", "soapenv:Header": {}, "soapenv:Body": {"v1:QueryList": {"#attrs": {"queryName": "test"}, "v1:QueryItem": {"name": "dummy text"}}}}}"##)),
            ..MockIo::default()
        };
        block_on(p.run(&mut ex, &mut io));
        let r = ex.response.unwrap();
        assert_eq!(r.headers["content-type"], "application/xml");
        assert_eq!(
            r.body.unwrap(),
            r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Header /><soapenv:Body><v1:QueryList queryName="test"><v1:QueryItem><name>dummy text</name></v1:QueryItem></v1:QueryList></soapenv:Body></soapenv:Envelope>"#
        );
    }

    #[test]
    fn apply_and_accept_decide_whether_to_convert() {
        let p = pipeline(
            r#"<policies><inbound><json-to-xml apply="content-type-json" /></inbound><backend><forward-request/></backend></policies>"#,
        );
        let send = |headers: &[(&str, &str)]| {
            let mut ex = exchange("POST", "/", headers);
            ex.request.body = Some(bytes::Bytes::from_static(br#"{"a": 1}"#));
            run(&p, &mut ex).forwarded.unwrap().body.unwrap()
        };
        assert_eq!(
            send(&[
                ("Content-Type", "application/json"),
                ("Accept", "application/xml")
            ]),
            "<a>1</a>"
        );
        // consider-accept-header defaults to true: no XML asked for, no conversion.
        assert_eq!(
            send(&[
                ("Content-Type", "application/json"),
                ("Accept", "application/json")
            ]),
            r#"{"a": 1}"#
        );
        assert_eq!(
            send(&[("Content-Type", "text/plain"), ("Accept", "text/xml")]),
            r#"{"a": 1}"#
        );
    }

    #[test]
    fn a_body_that_is_not_json_is_an_error() {
        let p = pipeline(
            r#"<policies><inbound><json-to-xml apply="always" consider-accept-header="false" /></inbound><backend><forward-request/></backend></policies>"#,
        );
        let mut ex = exchange("POST", "/", &[]);
        ex.request.body = Some(bytes::Bytes::from_static(b"{nope"));
        assert!(run(&p, &mut ex).forwarded.is_none());
        let e = ex.last_error.unwrap();
        assert_eq!(
            (e.source.as_str(), e.reason.as_str()),
            ("json-to-xml", "JsonToXmlConversionFailure")
        );
    }

    #[test]
    fn attributes_are_checked() {
        let e = errors_inbound(r#"<json-to-xml />"#);
        assert!(e[0].contains("needs the attribute 'apply'"), "{e:?}");
        let e = errors_inbound(r#"<json-to-xml apply="sometimes" />"#);
        assert!(
            e[0].contains("'apply' must be always or content-type-json"),
            "{e:?}"
        );
        let e = errors_inbound(r#"<json-to-xml apply="always" namespace-separator="::" />"#);
        assert!(e[0].contains("one character"), "{e:?}");
        let e = errors_in("backend", r#"<json-to-xml apply="always" />"#);
        assert!(e[0].contains("not allowed in <backend>"), "{e:?}");
    }
}
