//! `System.Xml.Linq` in expressions: `XDocument.Parse` / `XElement.Parse` and the members that
//! read a document (`Root`, `Element(s)`, `Descendants`, `Attribute(s)`, `Value`, `Name`,
//! `ToString()`). The text is parsed with roxmltree (no DTDs, within the crate's depth and node
//! limits) into an owned, immutable tree that values share. Names match by local name (a
//! namespace in the document does not have to be spelled in the expression); `XNamespace` and
//! `XName` are strings, so `ns + "local"` (and `"{ns}local"`) names an element in namespace
//! `ns`.

use std::fmt::Write as _;
use std::sync::Arc;

use super::{CallTys, Member, P, Rt, Sig, SigErr, arg_opt_str, arg_str, sig};
use crate::error::{ErrorKind, RtResult, RuntimeError};
use crate::limits::{MAX_DEPTH, MAX_VALUES};
use crate::types::{Class, Ty};
use crate::value::{Obj, Value};

/// An element: local name, namespace, attributes in order, children in order.
#[derive(Debug)]
pub(crate) struct XElement {
    name: Arc<str>,
    /// The namespace URI; empty when none.
    ns: Arc<str>,
    attrs: Vec<(Arc<str>, Arc<str>)>,
    children: Vec<XChild>,
}

#[derive(Debug)]
enum XChild {
    Element(Arc<XElement>),
    Text(Arc<str>),
}

/// Which object a handle is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum XKind {
    Document,
    Element,
}

pub(crate) fn type_name(kind: XKind) -> &'static str {
    match kind {
        XKind::Document => "XDocument",
        XKind::Element => "XElement",
    }
}

fn parse(text: &str, rt: &mut Rt<'_>) -> RtResult<Arc<XElement>> {
    rt.alloc(text.len())?;
    let opts = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: u32::try_from(MAX_VALUES).unwrap_or(u32::MAX),
        ..roxmltree::ParsingOptions::default()
    };
    let doc = roxmltree::Document::parse_with_options(text, opts).map_err(|e| {
        RuntimeError::new(
            ErrorKind::Format,
            format_args!("The XML is not valid: {e}."),
        )
    })?;
    convert(doc.root_element(), 1)
}

fn convert(node: roxmltree::Node<'_, '_>, depth: usize) -> RtResult<Arc<XElement>> {
    if depth > MAX_DEPTH {
        return Err(RuntimeError::new(
            ErrorKind::Format,
            format_args!("The XML nests deeper than {MAX_DEPTH} elements."),
        ));
    }
    let mut children = Vec::new();
    for child in node.children() {
        if child.is_element() {
            children.push(XChild::Element(convert(child, depth + 1)?));
        } else if child.is_text()
            && let Some(t) = child.text()
        {
            children.push(XChild::Text(t.into()));
        }
    }
    Ok(Arc::new(XElement {
        name: node.tag_name().name().into(),
        ns: node.tag_name().namespace().unwrap_or("").into(),
        attrs: node
            .attributes()
            .map(|a| (Arc::from(a.name()), Arc::from(a.value())))
            .collect(),
        children,
    }))
}

impl XElement {
    /// Whether `name` names this element: its local name, or (from `ns + "local"`, with
    /// `XNamespace ns` a string here) its namespace and local name, or `{ns}local`.
    fn named(&self, name: &str) -> bool {
        if *self.name == *name {
            return true;
        }
        let Some(prefix) = name.strip_suffix(&*self.name) else {
            return false;
        };
        !self.ns.is_empty()
            && (prefix == &*self.ns
                || prefix
                    .strip_prefix('{')
                    .and_then(|p| p.strip_suffix('}'))
                    .is_some_and(|p| p == &*self.ns))
    }

    fn elements(&self) -> impl Iterator<Item = &Arc<XElement>> {
        self.children.iter().filter_map(|c| match c {
            XChild::Element(e) => Some(e),
            XChild::Text(_) => None,
        })
    }

    /// The text of the element and its descendants, in document order (`XElement.Value`).
    fn value(&self, out: &mut String) {
        for c in &self.children {
            match c {
                XChild::Text(t) => out.push_str(t),
                XChild::Element(e) => e.value(out),
            }
        }
    }

    fn descendants(self: &Arc<Self>, name: Option<&str>, out: &mut Vec<Value>) {
        for e in self.elements() {
            if name.is_none_or(|n| e.named(n)) {
                out.push(element(e.clone()));
            }
            e.descendants(name, out);
        }
    }

    /// As .NET's `ToString()`: elements holding only elements are indented by two spaces per
    /// level; an element with text keeps its content on one line.
    fn write(&self, out: &mut String, level: usize) {
        let _ = write!(out, "<{}", self.name);
        for (k, v) in &self.attrs {
            let _ = write!(out, " {k}=\"");
            escape(v, true, out);
            out.push('"');
        }
        if self.children.is_empty() {
            out.push_str(" />");
            return;
        }
        out.push('>');
        let only_elements = self
            .children
            .iter()
            .all(|c| matches!(c, XChild::Element(_)));
        for c in &self.children {
            match c {
                XChild::Text(t) => escape(t, false, out),
                XChild::Element(e) if only_elements => {
                    out.push('\n');
                    out.push_str(&"  ".repeat(level + 1));
                    e.write(out, level + 1);
                }
                XChild::Element(e) => e.write(out, level + 1),
            }
        }
        if only_elements {
            out.push('\n');
            out.push_str(&"  ".repeat(level));
        }
        let _ = write!(out, "</{}>", self.name);
    }
}

fn escape(s: &str, attr: bool, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attr => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
}

fn element(e: Arc<XElement>) -> Value {
    Value::obj(Obj::Xml(XKind::Element, e))
}

pub(crate) fn to_string(e: &XElement) -> String {
    let mut out = String::new();
    e.write(&mut out, 0);
    out
}

/// `(string)element`: its value.
pub(crate) fn value_of(e: &XElement) -> String {
    let mut out = String::new();
    e.value(&mut out);
    out
}

pub(crate) fn static_sig(class: Class, m: Member, c: &CallTys<'_>) -> Sig {
    match (class, m) {
        (Class::XDocument, Member::Parse) => sig(c, &[&[P::Str]], Ty::XDocument),
        (Class::XElement, Member::Parse) => sig(c, &[&[P::Str]], Ty::XElement),
        _ => Err(SigErr::NotFound),
    }
}

pub(crate) fn static_call(
    class: Class,
    m: Member,
    args: &[Value],
    rt: &mut Rt<'_>,
) -> RtResult<Value> {
    let text = arg_str(args, 0, "text")?;
    let root = parse(text, rt)?;
    match (class, m) {
        (Class::XDocument, Member::Parse) => Ok(Value::obj(Obj::Xml(XKind::Document, root))),
        (Class::XElement, Member::Parse) => Ok(element(root)),
        _ => Err(RuntimeError::no_member(type_name(XKind::Element), m.name())),
    }
}

pub(crate) fn prop_ty(ty: &Ty, m: Member) -> Option<Ty> {
    Some(match (ty, m) {
        (Ty::XDocument, Member::Root) => Ty::XElement,
        (Ty::XElement, Member::Name | Member::Value) => Ty::String,
        (Ty::XElement, Member::HasElements | Member::HasAttributes) => Ty::Bool,
        (Ty::XAttribute, Member::Name | Member::Value) => Ty::String,
        _ => return None,
    })
}

pub(crate) fn method_sig(ty: &Ty, m: Member, c: &CallTys<'_>) -> Sig {
    match (ty, m) {
        (Ty::XDocument | Ty::XElement, Member::Element) => sig(c, &[&[P::Str]], Ty::XElement),
        (Ty::XDocument | Ty::XElement, Member::Elements | Member::Descendants) => {
            sig(c, &[&[], &[P::Str]], Ty::array_of(Ty::XElement))
        }
        (Ty::XElement, Member::Attribute) => sig(c, &[&[P::Str]], Ty::XAttribute),
        (Ty::XElement, Member::Attributes) => sig(c, &[&[]], Ty::array_of(Ty::XAttribute)),
        _ => Err(SigErr::NotFound),
    }
}

pub(crate) fn get(kind: XKind, e: &Arc<XElement>, m: Member, rt: &mut Rt<'_>) -> RtResult<Value> {
    Ok(match (kind, m) {
        (XKind::Document, Member::Root) => element(e.clone()),
        (XKind::Element, Member::Name) => Value::String(e.name.clone()),
        (XKind::Element, Member::Value) => {
            let v = value_of(e);
            rt.alloc(v.len())?;
            Value::String(v.into())
        }
        (XKind::Element, Member::HasElements) => Value::Bool(e.elements().next().is_some()),
        (XKind::Element, Member::HasAttributes) => Value::Bool(!e.attrs.is_empty()),
        _ => return Err(RuntimeError::no_member(type_name(kind), m.name())),
    })
}

pub(crate) fn call(
    kind: XKind,
    e: &Arc<XElement>,
    m: Member,
    args: &[Value],
    rt: &mut Rt<'_>,
) -> RtResult<Value> {
    let name = arg_opt_str(args, 0)?;
    match (kind, m) {
        // The document's only child is its root.
        (XKind::Document, Member::Element) => Ok(if name.is_none_or(|n| e.named(n)) {
            element(e.clone())
        } else {
            Value::Null
        }),
        (XKind::Document, Member::Elements) => Ok(Value::Array(
            if name.is_none_or(|n| e.named(n)) {
                vec![element(e.clone())]
            } else {
                Vec::new()
            }
            .into(),
        )),
        (XKind::Document, Member::Descendants) => {
            let mut out = Vec::new();
            if name.is_none_or(|n| e.named(n)) {
                out.push(element(e.clone()));
            }
            e.descendants(name, &mut out);
            rt.steps(out.len())?;
            Ok(Value::Array(out.into()))
        }
        (XKind::Element, Member::Element) => Ok(e
            .elements()
            .find(|c| name.is_none_or(|n| c.named(n)))
            .map_or(Value::Null, |c| element(c.clone()))),
        (XKind::Element, Member::Elements) => {
            let out: Vec<Value> = e
                .elements()
                .filter(|c| name.is_none_or(|n| c.named(n)))
                .map(|c| element(c.clone()))
                .collect();
            rt.steps(out.len())?;
            Ok(Value::Array(out.into()))
        }
        (XKind::Element, Member::Descendants) => {
            let mut out = Vec::new();
            e.descendants(name, &mut out);
            rt.steps(out.len())?;
            Ok(Value::Array(out.into()))
        }
        (XKind::Element, Member::Attribute) => Ok(e
            .attrs
            .iter()
            .find(|(k, _)| name.is_some_and(|n| **k == *n))
            .map_or(Value::Null, |(k, v)| {
                Value::obj(Obj::XAttr(Arc::new((k.clone(), v.clone()))))
            })),
        (XKind::Element, Member::Attributes) => Ok(Value::Array(
            e.attrs
                .iter()
                .map(|(k, v)| Value::obj(Obj::XAttr(Arc::new((k.clone(), v.clone())))))
                .collect::<Vec<_>>()
                .into(),
        )),
        _ => Err(RuntimeError::no_member(type_name(kind), m.name())),
    }
}

pub(crate) fn attr_get(a: &(Arc<str>, Arc<str>), m: Member) -> RtResult<Value> {
    match m {
        Member::Name => Ok(Value::String(a.0.clone())),
        Member::Value => Ok(Value::String(a.1.clone())),
        _ => Err(RuntimeError::no_member("XAttribute", m.name())),
    }
}
