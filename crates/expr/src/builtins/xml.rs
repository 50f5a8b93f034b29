//! `System.Xml.Linq` in expressions: `XDocument.Parse` / `XElement.Parse`, the members that
//! read a document (`Root`, `Element(s)`, `Descendants`, `Attribute(s)`, `Value`, `Name`,
//! `ToString()`), and building one with `new XElement(name, content…)`,
//! `new XAttribute(name, value)` and `new XDocument(content…)`. The text is parsed with
//! roxmltree (no DTDs, within the crate's depth and node limits) into an owned, immutable tree
//! that values share; a built tree is held to the same limits, and adding an element to another
//! is charged as copying it (which .NET does), so a loop cannot grow a tree for free. Names
//! match by local name (a namespace in the document does not have to be spelled in the
//! expression). `XName` is a string (`{ns}local` or `local`); `XNamespace` is a string too, of
//! its own static type, so `ns + "local"` makes the name `{ns}local`.

use std::fmt::Write as _;
use std::sync::Arc;

use super::{CallTys, Member, P, Rt, Sig, SigErr, arg_opt_str, arg_str, null_argument, sig};
use crate::error::{ErrorKind, RtResult, RuntimeError};
use crate::json::Json;
use crate::limits::{MAX_DEPTH, MAX_VALUES};
use crate::types::{Class, Ty};
use crate::value::{Obj, Value, format_double};

/// The namespace of namespace declarations (`XNamespace.Xmlns`).
pub(crate) const XMLNS: &str = "http://www.w3.org/2000/xmlns/";
/// The namespace of the `xml:` prefix (`XNamespace.Xml`).
pub(crate) const XML: &str = "http://www.w3.org/XML/1998/namespace";

/// An element: local name, namespace, attributes in order, children in order.
#[derive(Debug)]
pub(crate) struct XElement {
    name: Arc<str>,
    /// The namespace URI; empty when none.
    ns: Arc<str>,
    /// Named as `XName`s: `local` or `{ns}local`. Namespace declarations are attributes as in
    /// .NET: `xmlns` (the default namespace) and `{http://www.w3.org/2000/xmlns/}prefix`.
    attrs: Vec<(Arc<str>, Arc<str>)>,
    children: Vec<XChild>,
    /// Elements and texts in this subtree, itself included.
    nodes: usize,
    /// How deeply this subtree nests (1 for an element without child elements).
    depth: usize,
    /// About how many bytes the subtree prints as: what copying it is charged.
    size: usize,
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

fn too_deep() -> RuntimeError {
    RuntimeError::new(
        ErrorKind::Format,
        format_args!("The XML nests deeper than {MAX_DEPTH} elements."),
    )
}

fn too_many() -> RuntimeError {
    RuntimeError::new(
        ErrorKind::Format,
        format_args!("The XML holds more than {MAX_VALUES} nodes."),
    )
}

impl XElement {
    /// An element, its counts taken from its parts; refused past the depth and node limits.
    fn new(
        name: Arc<str>,
        ns: Arc<str>,
        attrs: Vec<(Arc<str>, Arc<str>)>,
        children: Vec<XChild>,
    ) -> RtResult<Arc<Self>> {
        let (mut nodes, mut depth) = (1usize, 1usize);
        let mut size = 2 * (name.len() + ns.len()) + 8;
        for (k, v) in &attrs {
            size = size.saturating_add(k.len() + v.len() + 4);
        }
        for c in &children {
            match c {
                XChild::Element(e) => {
                    nodes = nodes.saturating_add(e.nodes);
                    depth = depth.max(e.depth + 1);
                    size = size.saturating_add(e.size);
                }
                XChild::Text(t) => {
                    nodes = nodes.saturating_add(1);
                    size = size.saturating_add(t.len());
                }
            }
        }
        if depth > MAX_DEPTH {
            return Err(too_deep());
        }
        if nodes > MAX_VALUES {
            return Err(too_many());
        }
        Ok(Arc::new(Self {
            name,
            ns,
            attrs,
            children,
            nodes,
            depth,
            size,
        }))
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
        return Err(too_deep());
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
    // The namespaces declared here: those in scope that the parent does not have.
    let inherited: Vec<(Option<&str>, &str)> = node
        .parent_element()
        .map(|p| p.namespaces().map(|n| (n.name(), n.uri())).collect())
        .unwrap_or_default();
    let mut attrs: Vec<(Arc<str>, Arc<str>)> = node
        .namespaces()
        .filter(|n| n.name() != Some("xml") && !inherited.contains(&(n.name(), n.uri())))
        .map(|n| {
            let key: Arc<str> = match n.name() {
                Some(p) => format!("{{{XMLNS}}}{p}").into(),
                None => "xmlns".into(),
            };
            (key, Arc::from(n.uri()))
        })
        .collect();
    attrs.extend(node.attributes().map(|a| {
        let key: Arc<str> = match a.namespace() {
            Some(ns) => format!("{{{ns}}}{}", a.name()).into(),
            None => a.name().into(),
        };
        (key, Arc::from(a.value()))
    }));
    XElement::new(
        node.tag_name().name().into(),
        node.tag_name().namespace().unwrap_or("").into(),
        attrs,
        children,
    )
}

/// An `XName` held as a string: (namespace, local name).
fn name_parts(s: &str) -> (&str, &str) {
    match s.strip_prefix('{').and_then(|r| r.split_once('}')) {
        Some((ns, local)) => (ns, local),
        None => ("", s),
    }
}

/// Whether `name` (as an expression spells it) names something with this namespace and
/// local name: the local name alone, `{ns}local`, or `ns` and `local` run together.
fn matches_name(ns: &str, local: &str, name: &str) -> bool {
    let name = name.strip_prefix("{}").unwrap_or(name);
    if local == name {
        return true;
    }
    let Some(prefix) = name.strip_suffix(local) else {
        return false;
    };
    !ns.is_empty()
        && (prefix == ns
            || prefix
                .strip_prefix('{')
                .and_then(|p| p.strip_suffix('}'))
                .is_some_and(|p| p == ns))
}

/// The prefix a namespace declaration attribute declares (`""` for `xmlns`), if it is one.
fn declared_prefix(key: &str) -> Option<&str> {
    if key == "xmlns" {
        return Some("");
    }
    match name_parts(key) {
        (XMLNS, p) => Some(p),
        _ => None,
    }
}

/// `XAttribute.ToString()`: `name="value"`, the name as written in a document.
pub(crate) fn attr_to_string(a: &(Arc<str>, Arc<str>)) -> String {
    let (ns, local) = name_parts(&a.0);
    let mut out = match ns {
        "" => local.to_owned(),
        XMLNS => format!("xmlns:{local}"),
        XML => format!("xml:{local}"),
        _ => local.to_owned(),
    };
    out.push_str("=\"");
    escape(&a.1, true, &mut out);
    out.push('"');
    out
}

/// The namespace declarations in scope while printing: (prefix, namespace), innermost last;
/// the prefix `""` is the default namespace.
type Scope = Vec<(Arc<str>, Arc<str>)>;

/// The prefix bound to `ns` in `scope` that no inner declaration hides; `""` for the default.
fn prefix_for<'s>(scope: &'s Scope, ns: &str, default_ok: bool) -> Option<&'s str> {
    if ns == XML {
        return Some("xml");
    }
    scope.iter().enumerate().rev().find_map(|(i, (p, u))| {
        (**u == *ns && (default_ok || !p.is_empty()) && !scope[i + 1..].iter().any(|(q, _)| q == p))
            .then_some(&**p)
    })
}

fn default_ns(scope: &Scope) -> &str {
    scope
        .iter()
        .rev()
        .find_map(|(p, u)| p.is_empty().then_some(&**u))
        .unwrap_or("")
}

impl XElement {
    /// Whether `name` names this element: its local name, or its namespace and local name
    /// (`{ns}local`, or `ns` and `local` run together).
    fn named(&self, name: &str) -> bool {
        matches_name(&self.ns, &self.name, name)
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
    /// level; an element with text keeps its content on one line. A namespace gets the prefix
    /// declared for it in scope, or else becomes the default namespace (`xmlns="…"`); an
    /// attribute's namespace without a prefix gets one made up (`p1`), as .NET does.
    fn write(&self, out: &mut String, level: usize, scope: &mut Scope) {
        let mark = scope.len();
        for (k, v) in &self.attrs {
            if let Some(p) = declared_prefix(k) {
                scope.push((p.into(), v.clone()));
            }
        }
        let mut generated: Vec<(Arc<str>, Arc<str>)> = Vec::new();
        let prefix: String = if self.ns.is_empty() {
            if !default_ns(scope).is_empty() {
                generated.push(("".into(), "".into()));
            }
            String::new()
        } else if let Some(p) = prefix_for(scope, &self.ns, true) {
            p.to_owned()
        } else {
            generated.push(("".into(), self.ns.clone()));
            String::new()
        };
        scope.extend(generated.iter().cloned());
        let qname = if prefix.is_empty() {
            self.name.to_string()
        } else {
            format!("{prefix}:{}", self.name)
        };
        let _ = write!(out, "<{qname}");
        for (k, v) in &self.attrs {
            match (declared_prefix(k), name_parts(k)) {
                (Some(""), _) => out.push_str(" xmlns=\""),
                (Some(p), _) => {
                    let _ = write!(out, " xmlns:{p}=\"");
                }
                (None, ("", local)) => {
                    let _ = write!(out, " {local}=\"");
                }
                (None, (ns, local)) => {
                    let p = match prefix_for(scope, ns, false) {
                        Some(p) => p.to_owned(),
                        None => {
                            let p = (1..)
                                .map(|n| format!("p{n}"))
                                .find(|p| !scope.iter().any(|(q, _)| **q == **p))
                                .unwrap_or_default();
                            scope.push((p.as_str().into(), ns.into()));
                            generated.push((p.as_str().into(), ns.into()));
                            p
                        }
                    };
                    let _ = write!(out, " {p}:{local}=\"");
                }
            }
            escape(v, true, out);
            out.push('"');
        }
        for (p, u) in &generated {
            if p.is_empty() {
                out.push_str(" xmlns=\"");
            } else {
                let _ = write!(out, " xmlns:{p}=\"");
            }
            escape(u, true, out);
            out.push('"');
        }
        if self.children.is_empty() {
            out.push_str(" />");
            scope.truncate(mark);
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
                    e.write(out, level + 1, scope);
                }
                XChild::Element(e) => e.write(out, level + 1, scope),
            }
        }
        if only_elements {
            out.push('\n');
            out.push_str(&"  ".repeat(level));
        }
        let _ = write!(out, "</{qname}>");
        scope.truncate(mark);
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
    e.write(&mut out, 0, &mut Vec::new());
    out
}

/// `(string)element`: its value.
pub(crate) fn value_of(e: &XElement) -> String {
    let mut out = String::new();
    e.value(&mut out);
    out
}

// ---- building: new XElement / XAttribute / XDocument ----------------------------------------

/// Checks an `XName` given to a constructor and splits it into (namespace, local name).
fn new_name(name: &str) -> RtResult<(Arc<str>, Arc<str>)> {
    let (ns, local) = name_parts(name);
    let mut chars = local.chars();
    let valid = chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !valid {
        return Err(RuntimeError::new(
            ErrorKind::Format,
            format_args!(
                "'{local}' is not a valid XML name: a name starts with a letter or '_' and holds letters, digits, '_', '-' and '.' (use \"{{namespace}}local\" or ns + \"local\" for a namespace)."
            ),
        ));
    }
    Ok((ns.into(), local.into()))
}

/// The text a value adds as content or an attribute value: strings as they are, numbers and
/// booleans as `XmlConvert` writes them (`true`, `1.5`, `INF`), JSON values as their text.
fn text_of(v: &Value, what: &str) -> RtResult<Arc<str>> {
    Ok(match v {
        Value::String(s) => s.clone(),
        Value::Int(_) | Value::Long(_) | Value::Char(_) => v.to_policy_string().into(),
        Value::Bool(b) => if *b { "true" } else { "false" }.into(),
        Value::Double(d) if d.is_infinite() => if *d > 0.0 { "INF" } else { "-INF" }.into(),
        Value::Double(d) => format_double(*d).into(),
        Value::Json(Json::String(s)) => s.clone(),
        Value::Json(Json::Object(_) | Json::Array(_)) | Value::Handle(_) | Value::Array(_) => {
            return Err(not_content(v, what));
        }
        Value::Json(_) => v.to_policy_string().into(),
        _ => return Err(not_content(v, what)),
    })
}

fn not_content(v: &Value, what: &str) -> RuntimeError {
    RuntimeError::argument(format_args!(
        "{what} cannot be a {}: give a string, a number, a bool{}.",
        v.type_name(),
        if what == "XML content" {
            ", an XElement, an XAttribute or a sequence of them"
        } else {
            ""
        }
    ))
}

/// The content of an element or document as it is built.
#[derive(Default)]
struct Content {
    attrs: Vec<(Arc<str>, Arc<str>)>,
    children: Vec<XChild>,
    /// Text not yet added: adjacent strings make one text node.
    text: Option<String>,
}

impl Content {
    fn flush(&mut self) {
        if let Some(t) = self.text.take() {
            self.children.push(XChild::Text(t.into()));
        }
    }

    /// Adds one argument: `null` is skipped, a sequence adds each of its items.
    fn add(&mut self, v: &Value, nest: usize, rt: &mut Rt<'_>) -> RtResult<()> {
        match v {
            Value::Null | Value::Json(Json::Null) => {}
            Value::Array(items) => {
                if nest >= MAX_DEPTH {
                    return Err(too_deep());
                }
                rt.steps(items.len())?;
                for item in items.iter() {
                    self.add(item, nest + 1, rt)?;
                }
            }
            Value::Handle(h) => match &h.0 {
                // Added by value, as .NET copies an element that has a parent already.
                Obj::Xml(_, e) => {
                    rt.alloc(e.size)?;
                    self.flush();
                    self.children.push(XChild::Element(e.clone()));
                    if self.children.len() > MAX_VALUES {
                        return Err(too_many());
                    }
                }
                Obj::XAttr(a) => {
                    if self.attrs.iter().any(|(k, _)| *k == a.0) {
                        return Err(RuntimeError::new(
                            ErrorKind::InvalidOperation,
                            format_args!("Duplicate attribute '{}'.", a.0),
                        ));
                    }
                    rt.alloc(a.0.len() + a.1.len())?;
                    self.attrs.push((a.0.clone(), a.1.clone()));
                }
                _ => return Err(not_content(v, "XML content")),
            },
            other => {
                let t = text_of(other, "XML content")?;
                rt.alloc(t.len())?;
                self.text.get_or_insert_with(String::new).push_str(&t);
            }
        }
        Ok(())
    }
}

pub(crate) fn new_sig(class: Class, c: &CallTys<'_>) -> Sig {
    match class {
        Class::XElement => sig(c, &[&[P::Str, P::Rest(&P::XContent)]], Ty::XElement),
        Class::XAttribute => sig(c, &[&[P::Str, P::XText]], Ty::XAttribute),
        Class::XDocument => sig(c, &[&[P::Rest(&P::XContent)]], Ty::XDocument),
        _ => Err(SigErr::NotFound),
    }
}

/// `new XElement(name, content…)`, `new XAttribute(name, value)`, `new XDocument(content…)`.
pub(crate) fn new_value(class: Class, args: &[Value], rt: &mut Rt<'_>) -> RtResult<Value> {
    if class == Class::XAttribute {
        let name = arg_str(args, 0, "name")?;
        let key: Arc<str> = match new_name(name)? {
            (ns, local) if ns.is_empty() => local,
            (ns, local) => format!("{{{ns}}}{local}").into(),
        };
        let value = match args.get(1) {
            None | Some(Value::Null | Value::Json(Json::Null)) => {
                return Err(null_argument("value"));
            }
            Some(v) => text_of(v, "An attribute value")?,
        };
        rt.alloc(key.len() + value.len())?;
        return Ok(Value::obj(Obj::XAttr(Arc::new((key, value)))));
    }
    let (rest, name) = match class {
        Class::XElement => (
            args.get(1..).unwrap_or_default(),
            Some(arg_str(args, 0, "name")?),
        ),
        _ => (args, None),
    };
    let mut content = Content::default();
    for v in rest {
        content.add(v, 0, rt)?;
    }
    content.flush();
    if let Some(name) = name {
        let (ns, local) = new_name(name)?;
        return Ok(element(XElement::new(
            local,
            ns,
            content.attrs,
            content.children,
        )?));
    }
    // A document: one root element, and whitespace between.
    let invalid = |what: &str| {
        RuntimeError::new(
            ErrorKind::InvalidOperation,
            format_args!("An XDocument {what}: give it one XElement, its root."),
        )
    };
    if !content.attrs.is_empty() {
        return Err(invalid("cannot hold an attribute"));
    }
    let mut root = None;
    for c in content.children {
        match c {
            XChild::Text(t) if t.trim().is_empty() => {}
            XChild::Text(_) => return Err(invalid("cannot hold text")),
            XChild::Element(_) if root.is_some() => {
                return Err(invalid("cannot hold more than one root element"));
            }
            XChild::Element(e) => root = Some(e),
        }
    }
    match root {
        Some(e) => Ok(Value::obj(Obj::Xml(XKind::Document, e))),
        None => Err(invalid("without a root element is not supported here")),
    }
}

// ---- reading ---------------------------------------------------------------------------------

pub(crate) fn static_sig(class: Class, m: Member, c: &CallTys<'_>) -> Sig {
    match (class, m) {
        (Class::XDocument, Member::Parse) => sig(c, &[&[P::Str]], Ty::XDocument),
        (Class::XElement, Member::Parse) => sig(c, &[&[P::Str]], Ty::XElement),
        (Class::XNamespace, Member::Get) => sig(c, &[&[P::Str]], Ty::XNamespace),
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
    if (class, m) == (Class::XNamespace, Member::Get) {
        return Ok(Value::str(text));
    }
    let root = parse(text, rt)?;
    match (class, m) {
        (Class::XDocument, Member::Parse) => Ok(Value::obj(Obj::Xml(XKind::Document, root))),
        (Class::XElement, Member::Parse) => Ok(element(root)),
        _ => Err(RuntimeError::no_member(type_name(XKind::Element), m.name())),
    }
}

/// `XNamespace.Xmlns`, `XNamespace.Xml`, `XNamespace.None`.
pub(crate) fn static_prop_ty(class: Class, m: Member) -> Option<Ty> {
    (class == Class::XNamespace && matches!(m, Member::Xmlns | Member::Xml | Member::None))
        .then_some(Ty::XNamespace)
}

pub(crate) fn static_get(m: Member) -> RtResult<Value> {
    match m {
        Member::Xmlns => Ok(Value::str(XMLNS)),
        Member::Xml => Ok(Value::str(XML)),
        Member::None => Ok(Value::str("")),
        _ => Err(RuntimeError::no_member("XNamespace", m.name())),
    }
}

pub(crate) fn prop_ty(ty: &Ty, m: Member) -> Option<Ty> {
    Some(match (ty, m) {
        (Ty::XDocument, Member::Root) => Ty::XElement,
        (Ty::XElement, Member::Name | Member::Value) => Ty::String,
        (Ty::XElement, Member::HasElements | Member::HasAttributes) => Ty::Bool,
        (Ty::XAttribute, Member::Name | Member::Value) => Ty::String,
        (Ty::XNamespace, Member::NamespaceName) => Ty::String,
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
            .find(|(k, _)| name.is_some_and(|n| attr_named(k, n)))
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
        Member::Name => Ok(Value::str(name_parts(&a.0).1)),
        Member::Value => Ok(Value::String(a.1.clone())),
        _ => Err(RuntimeError::no_member("XAttribute", m.name())),
    }
}

/// Whether `name` names the attribute `key`: as an element name does; a namespace
/// declaration only by its full name (`XNamespace.Xmlns + "prefix"`, `xmlns`).
fn attr_named(key: &str, name: &str) -> bool {
    if declared_prefix(key).is_some() {
        return key == name;
    }
    let (ns, local) = name_parts(key);
    matches_name(ns, local, name)
}
