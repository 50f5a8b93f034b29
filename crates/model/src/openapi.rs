//! OpenAPI import: turns an OpenAPI 3.0 / 3.1 or Swagger 2.0 document (JSON or YAML) into the
//! API's properties and operations.
//!
//! The document is first read into an ordered tree (so operations keep the document's order
//! whatever `serde_json`'s map type is), with hard limits on nesting, size and YAML alias
//! expansion, then walked; the one recursive step, turning the tree into JSON, is bounded by
//! [`MAX_DEPTH`]. Every problem found is reported with where it is: a line and column for
//! syntax errors, a path such as `paths./pets/{id}.get` otherwise.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_saphyr::MessageFormatter as _;

use crate::error::{Detail, ValidationError};
use crate::resources::{Operation, Resource, TemplateParameter, check_http_url, validate_id};
use crate::template::UrlTemplate;

/// What an OpenAPI document says about an API.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedApi {
    /// `info.title`.
    pub title: Option<String>,
    /// `info.description`.
    pub description: Option<String>,
    /// `info.version`.
    pub version: Option<String>,
    /// The backend base URL: the first server's URL (OpenAPI 3) or scheme, host and base path
    /// (Swagger 2.0), when that is an absolute `http` or `https` URL.
    pub service_url: Option<String>,
    /// One operation per path and method, in the document's order.
    pub operations: Vec<Operation>,
    /// The whole document as JSON, for the developer portal and mock responses. Object
    /// members are in `serde_json::Map`'s order (sorted by key unless its `preserve_order`
    /// feature is on); `operations` keep the document's order either way.
    pub document: Value,
}

/// The `import.format` values an API import takes, compared without ASCII case: Azure's names
/// for OpenAPI 3.x and Swagger 2.0 documents, JSON or YAML (the text decides which).
pub const IMPORT_FORMATS: &[&str] = &[
    "openapi",
    "openapi+json",
    "openapi-json",
    "openapi+yaml",
    "swagger",
    "swagger-json",
    "swagger+json",
];

/// Largest document accepted, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1024 * 1024;
/// Most values (objects, arrays and scalars, counting what YAML aliases expand to) accepted.
pub const MAX_VALUES: usize = 2_000_000;
/// Deepest nesting of objects and arrays accepted. Kept low enough that reading a document
/// stays well within a 2 MiB thread stack even in unoptimised builds.
pub const MAX_DEPTH: usize = 64;
/// Most `$ref` hops followed to reach one definition.
const MAX_REF_HOPS: usize = 32;
/// Most problems listed in one error.
const MAX_DETAILS: usize = 50;
/// Most events that YAML aliases may replay in total (billion-laughs guard).
const MAX_ALIAS_REPLAY: usize = 100_000;
/// Longest path accepted (Azure API Management's limit for URL templates).
const MAX_PATH_LEN: usize = 1000;
const MAX_ID_LEN: usize = 80;
const MAX_DISPLAY_NAME_LEN: usize = 300;
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Reads an OpenAPI 3.0 / 3.1 or Swagger 2.0 document, in JSON or YAML.
pub fn import(text: &str) -> Result<ImportedApi, ValidationError> {
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(single(
            "document",
            format!(
                "is {} bytes; the largest document that can be imported is {} MiB",
                text.len(),
                MAX_DOCUMENT_BYTES / (1024 * 1024)
            ),
        ));
    }
    let root = parse(text)?;
    let spec = detect_spec(&root)?;
    let info = root.get("info");
    let info_text = |key: &str| info.and_then(|i| i.get(key)).and_then(Node::text);
    let title = info_text("title");
    let description = info_text("description");
    let version = info_text("version");
    let service_url = match spec {
        Spec::OpenApi3 => openapi3_service_url(&root),
        Spec::Swagger2 => swagger2_service_url(&root),
    };
    let operations = collect_operations(&root, spec)?;
    Ok(ImportedApi {
        title,
        description,
        version,
        service_url,
        operations,
        document: root.into_json(),
    })
}

// ---------------------------------------------------------------------------------------------
// Errors

/// An error with one problem.
fn single(target: impl Into<String>, message: impl Into<String>) -> ValidationError {
    finish(vec![Detail::new(target, message)], 0)
}

/// One error from the problems found; `more` counts problems left out of `details`.
fn finish(mut details: Vec<Detail>, more: usize) -> ValidationError {
    let message = match details.first() {
        None => "The OpenAPI document cannot be imported".to_owned(),
        Some(first) if details.len() == 1 && more == 0 => format!(
            "The OpenAPI document cannot be imported: '{}' {}",
            first.target, first.message
        ),
        Some(first) => format!(
            "The OpenAPI document cannot be imported: {} problems, the first: '{}' {}",
            details.len() + more,
            first.target,
            first.message
        ),
    };
    if more > 0 {
        details.push(Detail::new(
            "document",
            format!("has {more} more problems not listed here; fix those above and import again"),
        ));
    }
    ValidationError::new(message, details)
}

/// Problems found while walking the document, at most [`MAX_DETAILS`] of them kept.
#[derive(Default)]
struct Found {
    details: Vec<Detail>,
    more: usize,
}

impl Found {
    fn push(&mut self, target: impl Into<String>, message: impl Into<String>) {
        if self.details.len() < MAX_DETAILS {
            self.details.push(Detail::new(target, message));
        } else {
            self.more += 1;
        }
    }

    fn is_empty(&self) -> bool {
        self.details.is_empty() && self.more == 0
    }
}

fn to_u32(n: impl TryInto<u32>) -> u32 {
    n.try_into().unwrap_or(u32::MAX)
}

fn syntax_error(format: &str, message: &str, position: Option<(u32, u32)>) -> ValidationError {
    let message: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let message = clip(message.trim(), 500);
    let message = message.as_str();
    let (summary, detail) = match position {
        Some((line, column)) => (
            format!(
                "The OpenAPI document is not valid {format}: {message} at line {line}, column {column}"
            ),
            Detail::new("document", message).at(line, column),
        ),
        None => (
            format!("The OpenAPI document is not valid {format}: {message}"),
            Detail::new("document", message),
        ),
    };
    ValidationError::new(summary, vec![detail])
}

fn json_error(e: &serde_json::Error) -> ValidationError {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let message = full.strip_suffix(&suffix).unwrap_or(&full);
    let position = (e.line() > 0).then(|| (to_u32(e.line()), to_u32(e.column().max(1))));
    syntax_error("JSON", message, position)
}

fn yaml_error(e: &serde_saphyr::Error) -> ValidationError {
    let mut inner = e;
    while let serde_saphyr::Error::AliasError { error, .. }
    | serde_saphyr::Error::WithSnippet { error, .. } = inner
    {
        inner = error;
    }
    let message = match inner {
        serde_saphyr::Error::MultipleDocuments { .. } => {
            "the text holds more than one YAML document ('---'); import one document at a time"
                .to_owned()
        }
        serde_saphyr::Error::Budget {
            breach: serde_saphyr::budget::BudgetBreach::Depth { .. },
            ..
        } => format!("objects and arrays are nested deeper than {MAX_DEPTH} levels"),
        serde_saphyr::Error::AliasReplayLimitExceeded { .. } => format!(
            "aliases ('*name') expand to more than {MAX_ALIAS_REPLAY} YAML events; write the repeated parts out or use '$ref' instead"
        ),
        serde_saphyr::Error::AliasReplayStackDepthExceeded { max_depth, .. } => format!(
            "aliases ('*name') are nested more than {max_depth} levels deep; use '$ref' instead"
        ),
        _ => serde_saphyr::UserMessageFormatter
            .format_message(e)
            .into_owned(),
    };
    let position = e
        .location()
        .filter(|l| l.line() > 0)
        .map(|l| (to_u32(l.line()), to_u32(l.column().max(1))));
    syntax_error("YAML", &message, position)
}

// ---------------------------------------------------------------------------------------------
// Reading the document into an ordered tree

/// A JSON value whose objects keep their members in the document's order.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Node>),
    Object(Vec<(String, Node)>),
}

impl Node {
    fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Node::String(s) => Some(s),
            _ => None,
        }
    }

    fn as_array(&self) -> Option<&[Node]> {
        match self {
            Node::Array(items) => Some(items),
            _ => None,
        }
    }

    fn as_object(&self) -> Option<&[(String, Node)]> {
        match self {
            Node::Object(members) => Some(members),
            _ => None,
        }
    }

    /// A string, or a number written without quotes (YAML `version: 1.0`).
    fn text(&self) -> Option<String> {
        match self {
            Node::String(s) => Some(s.clone()),
            Node::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Bool(_) => "a boolean",
            Node::Number(_) => "a number",
            Node::String(_) => "a string",
            Node::Array(_) => "an array",
            Node::Object(_) => "an object",
        }
    }

    /// Recursion is bounded: the reader refuses trees deeper than [`MAX_DEPTH`].
    fn into_json(self) -> Value {
        match self {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(b),
            Node::Number(n) => Value::Number(n),
            Node::String(s) => Value::String(s),
            Node::Array(items) => Value::Array(items.into_iter().map(Node::into_json).collect()),
            Node::Object(members) => Value::Object(
                members
                    .into_iter()
                    .map(|(k, v)| (k, v.into_json()))
                    .collect(),
            ),
        }
    }
}

fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: MAX_DEPTH,
            max_nodes: MAX_VALUES,
            max_events: 2 * MAX_VALUES,
            // Many legitimate documents reuse one anchor (say, an error response) everywhere;
            // the replay limit below is what stops alias bombs.
            enforce_alias_anchor_ratio: false,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: MAX_ALIAS_REPLAY,
        },
        with_snippet: false,
        // YAML 1.2 booleans only: `y`, `no`, `on` stay strings, as JSON-minded authors expect.
        strict_booleans: true,
        // A `~` or `null` mapping key becomes the string key "~" / "null".
        null_as_string: true,
        non_finite_float_policy: serde_saphyr::NonFiniteFloatPolicy::AsString,
    }
}

fn parse(text: &str) -> Result<Node, ValidationError> {
    let body = text.strip_prefix('\u{feff}').unwrap_or(text);
    let count = Cell::new(0);
    let seed = NodeSeed {
        depth: 0,
        count: &count,
    };
    if body.trim_start().starts_with('{') {
        let mut de = serde_json::Deserializer::from_str(body);
        seed.deserialize(&mut de)
            .and_then(|node| de.end().map(|()| node))
            .map_err(|e| json_error(&e))
    } else {
        serde_saphyr::with_deserializer_from_str_with_options(body, yaml_options(), |d| {
            seed.deserialize(d)
        })
        .map_err(|e| yaml_error(&e))
    }
}

/// Reads any value, refusing nesting deeper than [`MAX_DEPTH`], more than [`MAX_VALUES`]
/// values and duplicate keys.
#[derive(Clone, Copy)]
struct NodeSeed<'c> {
    depth: usize,
    /// Values read so far in the whole document.
    count: &'c Cell<usize>,
}

impl<'de> DeserializeSeed<'de> for NodeSeed<'_> {
    type Value = Node;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        let count = self.count.get() + 1;
        if count > MAX_VALUES {
            return Err(de::Error::custom(format!(
                "the document holds more than {MAX_VALUES} values"
            )));
        }
        self.count.set(count);
        deserializer.deserialize_any(NodeVisitor { seed: self })
    }
}

struct NodeVisitor<'c> {
    seed: NodeSeed<'c>,
}

impl<'c> NodeVisitor<'c> {
    /// The seed for the members of an object or array.
    fn nested<E: de::Error>(&self) -> Result<NodeSeed<'c>, E> {
        if self.seed.depth >= MAX_DEPTH {
            return Err(E::custom(format!(
                "objects and arrays are nested deeper than {MAX_DEPTH} levels"
            )));
        }
        Ok(NodeSeed {
            depth: self.seed.depth + 1,
            count: self.seed.count,
        })
    }
}

fn number_from_f64(v: f64) -> Node {
    serde_json::Number::from_f64(v).map_or_else(|| Node::String(v.to_string()), Node::Number)
}

impl<'de> Visitor<'de> for NodeVisitor<'_> {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON or YAML value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Number(v.into()))
    }

    fn visit_i128<E>(self, v: i128) -> Result<Node, E> {
        Ok(match i64::try_from(v) {
            Ok(small) => Node::Number(small.into()),
            Err(_) => number_from_f64(v as f64),
        })
    }

    fn visit_u128<E>(self, v: u128) -> Result<Node, E> {
        Ok(match u64::try_from(v) {
            Ok(small) => Node::Number(small.into()),
            Err(_) => number_from_f64(v as f64),
        })
    }

    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(number_from_f64(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::String(v))
    }

    fn visit_bytes<E>(self, v: &[u8]) -> Result<Node, E> {
        Ok(Node::String(String::from_utf8_lossy(v).into_owned()))
    }

    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let seed = self.nested()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(seed)? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let seed = self.nested()?;
        let mut members: Vec<(String, Node)> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format!(
                    "the key '{}' appears twice in the same object",
                    clip(&key, 100)
                )));
            }
            let value = map.next_value_seed(seed)?;
            members.push((key, value));
        }
        Ok(Node::Object(members))
    }
}

/// Reads a mapping key as text: YAML `200:` becomes "200", `true:` "true", `~:` "~".
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, number or boolean as an object key")
    }

    fn visit_str<E>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }

    fn visit_string<E>(self, v: String) -> Result<String, E> {
        Ok(v)
    }

    fn visit_bool<E>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_i64<E>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_u64<E>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_f64<E>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_unit<E>(self) -> Result<String, E> {
        Ok("null".to_owned())
    }
}

// ---------------------------------------------------------------------------------------------
// Version and service URL

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spec {
    Swagger2,
    OpenApi3,
}

fn detect_spec(root: &Node) -> Result<Spec, ValidationError> {
    match root {
        Node::Object(_) => {}
        Node::Null => {
            return Err(single(
                "document",
                "is empty: provide an OpenAPI 3.0 or 3.1 (or Swagger 2.0) document in JSON or YAML",
            ));
        }
        other => {
            return Err(single(
                "document",
                format!(
                    "is {} but must be an object with an 'openapi' (3.0 or 3.1) or 'swagger' (2.0) field",
                    other.kind()
                ),
            ));
        }
    }
    if let Some(v) = root.get("openapi") {
        let Some(version) = v.text() else {
            return Err(single(
                "openapi",
                format!(
                    "is {} but must be a version string such as \"3.0.3\" or \"3.1.0\"",
                    v.kind()
                ),
            ));
        };
        let mut parts = version.trim().split('.');
        return match (parts.next(), parts.next()) {
            (Some("3"), Some("0" | "1")) => Ok(Spec::OpenApi3),
            _ => Err(single(
                "openapi",
                format!(
                    "is '{}', which is not a supported version: import an OpenAPI 3.0.x or 3.1.x document, or Swagger 2.0",
                    clip(&version, 100)
                ),
            )),
        };
    }
    if let Some(v) = root.get("swagger") {
        let version = v.text().unwrap_or_default();
        return match version.trim() {
            "2.0" | "2" => Ok(Spec::Swagger2),
            other => Err(single(
                "swagger",
                format!(
                    "is '{}', which is not a supported version: only Swagger 2.0 and OpenAPI 3.0/3.1 can be imported; convert the document to OpenAPI 3 first",
                    clip(other, 100)
                ),
            )),
        };
    }
    if let Some(v) = root.get("swaggerVersion") {
        return Err(single(
            "swaggerVersion",
            format!(
                "is '{}': Swagger 1.x is not supported; only Swagger 2.0 and OpenAPI 3.0/3.1 can be imported, so convert the document to OpenAPI 3 first",
                clip(&v.text().unwrap_or_default(), 100)
            ),
        ));
    }
    Err(single(
        "openapi",
        "is missing: an OpenAPI document starts with a version such as 'openapi: 3.0.3' (or 'swagger: \"2.0\"' for Swagger 2.0)",
    ))
}

/// Keeps `url` if it is an absolute http(s) URL, without trailing slashes.
fn usable_url(url: &str) -> Option<String> {
    let url = url.trim().trim_end_matches('/');
    if url.contains(['{', '}']) || check_http_url(url).is_err() {
        return None;
    }
    Some(url.to_owned())
}

/// Longest service URL considered.
const MAX_URL_LEN: usize = 2000;

fn openapi3_service_url(root: &Node) -> Option<String> {
    let server = root.get("servers")?.as_array()?.first()?;
    let template = server.get("url")?.as_str()?;
    if template.len() > MAX_URL_LEN {
        return None;
    }
    let defaults: HashMap<&str, String> = server
        .get("variables")
        .and_then(Node::as_object)
        .unwrap_or_default()
        .iter()
        .filter_map(|(name, v)| Some((name.as_str(), v.get("default")?.text()?)))
        .collect();
    // Replace each `{name}` with its variable's default, in one pass.
    let mut url = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let (before, after) = rest.split_at(open);
        url.push_str(before);
        let close = after.find('}')?;
        let name = after.get(1..close)?;
        url.push_str(defaults.get(name)?);
        rest = after.get(close + 1..)?;
    }
    url.push_str(rest);
    usable_url(&url)
}

fn swagger2_service_url(root: &Node) -> Option<String> {
    let host = root.get("host")?.as_str()?.trim();
    if host.is_empty() || host.len() > MAX_URL_LEN {
        return None;
    }
    let scheme = root
        .get("schemes")
        .and_then(Node::as_array)
        .and_then(|s| s.first())
        .and_then(Node::as_str)
        .unwrap_or("https")
        .to_ascii_lowercase();
    let base = root.get("basePath").and_then(Node::as_str).unwrap_or("");
    if base.len() > MAX_URL_LEN || scheme.len() > MAX_URL_LEN {
        return None;
    }
    let slash = if base.is_empty() || base.starts_with('/') {
        ""
    } else {
        "/"
    };
    usable_url(&format!("{scheme}://{host}{slash}{base}"))
}

// ---------------------------------------------------------------------------------------------
// References

fn percent_decode(text: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = bytes.get(i + 1).copied().and_then(hex);
            let lo = bytes.get(i + 2).copied().and_then(hex);
            if let (Some(hi), Some(lo)) = (hi, lo) {
                out.push(hi * 16 + lo);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Walks the document: resolves references and records problems.
///
/// Parts of a document can be reached many times through `$ref`s, so everything the walker
/// does is charged to a work budget ([`MAX_WORK`]) and large objects get a hash index on first
/// lookup: a hostile document cannot make the import quadratic.
struct Walker<'a> {
    root: &'a Node,
    spec: Spec,
    /// Member indexes of objects with more than [`INDEX_ABOVE`] members, by address.
    indexes: HashMap<*const Node, HashMap<&'a str, &'a Node>>,
    /// Where each `$ref` value (by address) leads.
    refs: HashMap<*const Node, Result<&'a Node, String>>,
    work: usize,
    found: Found,
}

/// Objects with more members than this get a hash index on first lookup.
const INDEX_ABOVE: usize = 16;
/// Most units of work (members indexed, references followed, parameters read) one import
/// may take; real documents need a small fraction of this.
const MAX_WORK: usize = 5_000_000;

impl<'a> Walker<'a> {
    fn new(root: &'a Node, spec: Spec) -> Self {
        Self {
            root,
            spec,
            indexes: HashMap::new(),
            refs: HashMap::new(),
            work: 0,
            found: Found::default(),
        }
    }

    /// Charges `units` of work; false once the budget is spent.
    fn charge(&mut self, units: usize) -> bool {
        self.work = self.work.saturating_add(units);
        self.work <= MAX_WORK
    }

    fn exhausted(&self) -> bool {
        self.work > MAX_WORK
    }

    /// The member `key` of `node`, if `node` is an object that has it.
    fn member(&mut self, node: &'a Node, key: &str) -> Option<&'a Node> {
        let Node::Object(members) = node else {
            return None;
        };
        if members.len() <= INDEX_ABOVE {
            return node.get(key);
        }
        let address = std::ptr::from_ref(node);
        if !self.indexes.contains_key(&address) {
            self.charge(members.len());
            let mut index = HashMap::with_capacity(members.len());
            for (k, v) in members {
                index.entry(k.as_str()).or_insert(v);
            }
            self.indexes.insert(address, index);
        }
        self.indexes.get(&address)?.get(key).copied()
    }

    fn member_text(&mut self, node: &'a Node, key: &str) -> Option<String> {
        self.member(node, key).and_then(Node::text)
    }

    /// The node a local reference such as `#/components/parameters/id` points to.
    fn lookup(&mut self, reference: &str) -> Result<&'a Node, String> {
        let Some(fragment) = reference.strip_prefix('#') else {
            return Err(format!(
                "has '$ref: {}', which points outside this document: only local references such as '#/components/parameters/name' can be resolved; bundle the document into one file first",
                clip(reference, 200)
            ));
        };
        let pointer = percent_decode(fragment);
        if pointer.is_empty() {
            return Ok(self.root);
        }
        let Some(rest) = pointer.strip_prefix('/') else {
            return Err(format!(
                "has '$ref: {}', which is not a JSON pointer such as '#/components/parameters/name'",
                clip(reference, 200)
            ));
        };
        let mut node = self.root;
        for token in rest.split('/') {
            let key = token.replace("~1", "/").replace("~0", "~");
            let next = match node {
                Node::Object(_) => self.member(node, &key),
                Node::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
                _ => None,
            };
            node = next.ok_or_else(|| {
                format!(
                    "has '$ref: {}', which points to nothing in this document: fix the reference or add the definition",
                    clip(reference, 200)
                )
            })?;
        }
        Ok(node)
    }

    /// Follows `$ref`s from `node` to the definition.
    fn resolve(&mut self, node: &'a Node) -> Result<&'a Node, String> {
        let mut node = node;
        let mut followed: Vec<*const Node> = Vec::new();
        while let Some(reference) = self.member(node, "$ref") {
            if !self.charge(1) {
                return Err("is too complex to import".to_owned());
            }
            let address = std::ptr::from_ref(reference);
            if followed.contains(&address) || followed.len() >= MAX_REF_HOPS {
                return Err(format!(
                    "has '$ref: {}', which is part of a reference cycle: point it at the definition itself",
                    clip(reference.as_str().unwrap_or_default(), 200)
                ));
            }
            followed.push(address);
            let target = match self.refs.get(&address) {
                Some(known) => known.clone(),
                None => {
                    let target = match reference.as_str() {
                        Some(text) => {
                            // Reading the pointer costs about its length.
                            self.charge(text.len() / 64);
                            self.lookup(text)
                        }
                        None => Err(format!(
                            "has a '$ref' that is {} instead of a string such as '#/components/parameters/name'",
                            reference.kind()
                        )),
                    };
                    self.refs.insert(address, target.clone());
                    target
                }
            };
            node = target?;
        }
        Ok(node)
    }

    fn schema_type(&mut self, param: &'a Node) -> String {
        let holder = match self.spec {
            Spec::Swagger2 => Some(param),
            Spec::OpenApi3 => self
                .member(param, "schema")
                .and_then(|s| self.resolve(s).ok()),
        };
        let name = match holder.and_then(|h| self.member(h, "type")) {
            Some(Node::String(t)) => Some(t.as_str()),
            // OpenAPI 3.1: `type: [string, "null"]`.
            Some(Node::Array(types)) => types
                .iter()
                .take(8)
                .filter_map(Node::as_str)
                .find(|t| *t != "null"),
            _ => None,
        };
        name.filter(|t| !t.is_empty())
            .map_or_else(|| "string".to_owned(), |t| clip(t, 100))
    }

    /// Records the path parameters that `list` (a `parameters` array) declares for the names
    /// in `wanted`, replacing earlier declarations of the same name.
    fn declare_path_params(
        &mut self,
        list: Option<&'a Node>,
        target: &str,
        wanted: &HashSet<&str>,
        params: &mut HashMap<String, PathParam>,
    ) {
        let Some(list) = list else { return };
        let Some(items) = list.as_array() else {
            self.found.push(
                target,
                format!("is {} but must be an array of parameters", list.kind()),
            );
            return;
        };
        for (i, item) in items.iter().enumerate() {
            if !self.charge(1) {
                return;
            }
            let param = match self.resolve(item) {
                Ok(p) => p,
                Err(e) => {
                    self.found.push(format!("{target}[{i}]"), e);
                    continue;
                }
            };
            if self.member(param, "in").and_then(Node::as_str) != Some("path") {
                continue;
            }
            let Some(name) = self.member(param, "name").and_then(Node::as_str) else {
                self.found.push(
                    format!("{target}[{i}]"),
                    "is a path parameter without a 'name': add the name used in the path's '{…}'",
                );
                continue;
            };
            if !wanted.contains(name) {
                continue;
            }
            let declared = PathParam {
                type_: self.schema_type(param),
                description: self.member_text(param, "description"),
            };
            params.insert(name.to_owned(), declared);
        }
    }

    /// The members of a path item that matter here (`parameters` and the operations), with
    /// those of the item a `$ref` points to after its own.
    fn path_item_members(
        &mut self,
        item: &'a Node,
        target: &str,
    ) -> Option<Vec<(&'a str, &'a Node)>> {
        let Some(own) = item.as_object() else {
            self.found.push(
                target,
                format!(
                    "is {} but must be an object mapping HTTP methods such as 'get' to operations",
                    item.kind()
                ),
            );
            return None;
        };
        let relevant = |k: &str| k == "parameters" || METHODS.contains(&k);
        self.charge(own.len());
        let mut members: Vec<(&'a str, &'a Node)> = own
            .iter()
            .filter(|(k, _)| relevant(k))
            .map(|(k, v)| (k.as_str(), v))
            .collect();
        if self.member(item, "$ref").is_some() {
            match self.resolve(item) {
                Ok(Node::Object(referenced)) => {
                    if self.charge(referenced.len()) {
                        for (k, v) in referenced {
                            if relevant(k) && !members.iter().any(|(m, _)| *m == k.as_str()) {
                                members.push((k.as_str(), v));
                            }
                        }
                    }
                }
                Ok(other) => self.found.push(
                    target,
                    format!(
                        "has a '$ref' to {} instead of a path item object",
                        other.kind()
                    ),
                ),
                Err(e) => self.found.push(target, e),
            }
        }
        Some(members)
    }
}

/// `text` cut to at most `max` characters, for messages.
fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", text.get(..end).unwrap_or_default()),
        None => text.to_owned(),
    }
}

/// A path parameter's declaration.
#[derive(Clone)]
struct PathParam {
    type_: String,
    description: Option<String>,
}

/// Turns an `operationId` into an identifier: 1 to 80 of `[A-Za-z0-9-_.]`, not starting with
/// `.`; other characters become `-`. Empty when nothing usable is left.
pub fn sanitize_id(raw: &str) -> String {
    if validate_id("operation", raw).is_ok() {
        return raw.to_owned();
    }
    let mut out = String::with_capacity(raw.len().min(MAX_ID_LEN * 2));
    for c in raw.chars() {
        let c = if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
            c
        } else {
            '-'
        };
        if c == '-' && out.ends_with('-') {
            continue;
        }
        out.push(c);
        if out.len() > MAX_ID_LEN * 2 {
            break;
        }
    }
    let trimmed = out.trim_start_matches(['-', '.']).trim_end_matches('-');
    let mut id: String = trimmed.chars().take(MAX_ID_LEN).collect();
    while id.ends_with('-') {
        id.pop();
    }
    id
}

/// An identifier for an operation without `operationId`: `get-pets-petid`.
fn derived_id(method: &str, url_template: &str) -> String {
    let id = sanitize_id(&format!("{method}-{url_template}").to_ascii_lowercase());
    if id.is_empty() { method.to_owned() } else { id }
}

/// Hands out operation identifiers that are unique within an API, ignoring case.
#[derive(Default)]
struct Ids {
    taken: HashSet<String>,
    /// The next suffix to try for a base identifier (lower case), so that many operations
    /// with the same `operationId` do not make this quadratic.
    next_suffix: HashMap<String, usize>,
}

impl Ids {
    /// `base`, or `base-2`, `base-3`, … if taken.
    fn claim(&mut self, base: String) -> String {
        let lower = base.to_ascii_lowercase();
        if self.taken.insert(lower.clone()) {
            return base;
        }
        let mut n = self.next_suffix.get(&lower).copied().unwrap_or(2);
        loop {
            let suffix = format!("-{n}");
            let keep = MAX_ID_LEN.saturating_sub(suffix.len());
            let stem: String = base.chars().take(keep).collect();
            let candidate = format!("{}{suffix}", stem.trim_end_matches('-'));
            n += 1;
            if self.taken.insert(candidate.to_ascii_lowercase()) {
                self.next_suffix.insert(lower, n);
                return candidate;
            }
        }
    }
}

fn truncate_display_name(name: &str) -> String {
    let mut end = name.len().min(MAX_DISPLAY_NAME_LEN);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name.get(..end).unwrap_or(name).to_owned()
}

fn collect_operations(root: &Node, spec: Spec) -> Result<Vec<Operation>, ValidationError> {
    let paths = match root.get("paths") {
        None => {
            return Err(single(
                "paths",
                "is missing: add a 'paths' object listing the API's operations, such as 'paths: {/pets: {get: …}}'",
            ));
        }
        Some(Node::Object(paths)) => paths,
        Some(other) => {
            return Err(single(
                "paths",
                format!(
                    "is {} but must be an object mapping paths such as '/pets' to their operations",
                    other.kind()
                ),
            ));
        }
    };
    let mut walker = Walker::new(root, spec);
    let mut operations = Vec::new();
    let mut ids = Ids::default();
    for (path, item) in paths {
        if walker.exhausted() {
            break;
        }
        if path.starts_with("x-") {
            continue;
        }
        if path.len() > MAX_PATH_LEN {
            walker.found.push(
                format!("paths.{}", clip(path, 100)),
                format!("is longer than {MAX_PATH_LEN} characters; shorten it or leave it out"),
            );
            continue;
        }
        let path_target = format!("paths.{path}");
        if !path.starts_with('/') {
            walker.found.push(
                path_target,
                format!(
                    "must start with '/', as in '/{}'",
                    path.trim_start_matches('/')
                ),
            );
            continue;
        }
        let template = match UrlTemplate::parse(path) {
            Ok(t) => t,
            Err(e) => {
                walker.found.push(
                    path_target,
                    format!(
                        "cannot be used as a URL template: {e}; change the path or leave it out"
                    ),
                );
                continue;
            }
        };
        let wanted: HashSet<&str> = template.params().collect();
        let url_template = if path.len() > 1 {
            path.strip_suffix('/').unwrap_or(path)
        } else {
            path.as_str()
        };
        let Some(members) = walker.path_item_members(item, &path_target) else {
            continue;
        };
        let mut shared = HashMap::new();
        if let Some(&(_, list)) = members.iter().find(|(k, _)| *k == "parameters") {
            walker.declare_path_params(
                Some(list),
                &format!("{path_target}.parameters"),
                &wanted,
                &mut shared,
            );
        }
        for &(method, op_node) in &members {
            if !METHODS.contains(&method) || walker.exhausted() {
                continue;
            }
            let op_target = format!("{path_target}.{method}");
            if op_node.as_object().is_none() {
                walker.found.push(
                    op_target,
                    format!(
                        "is {} but must be an object describing the operation",
                        op_node.kind()
                    ),
                );
                continue;
            }
            let mut declared = shared.clone();
            let op_params = walker.member(op_node, "parameters");
            walker.declare_path_params(
                op_params,
                &format!("{op_target}.parameters"),
                &wanted,
                &mut declared,
            );
            let template_parameters = template
                .params()
                .map(|name| {
                    let p = declared.get(name);
                    TemplateParameter {
                        name: name.to_owned(),
                        type_: p.map_or_else(|| "string".to_owned(), |p| p.type_.clone()),
                        required: true,
                        description: p.and_then(|p| p.description.clone()),
                    }
                })
                .collect();

            let operation_id = walker
                .member_text(op_node, "operationId")
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty());
            let summary = walker
                .member_text(op_node, "summary")
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty());
            let method_upper = method.to_ascii_uppercase();
            let display_name = summary
                .or_else(|| operation_id.clone())
                .unwrap_or_else(|| format!("{method_upper} {path}"));
            let base_id = operation_id
                .as_deref()
                .map(sanitize_id)
                .filter(|id| !id.is_empty())
                .unwrap_or_else(|| derived_id(method, url_template));
            let description = walker
                .member_text(op_node, "description")
                .filter(|d| !d.trim().is_empty());

            let mut op = Operation {
                id: String::new(),
                display_name: truncate_display_name(&display_name),
                method: method_upper,
                url_template: url_template.to_owned(),
                template_parameters,
                description,
            };
            op.set_id(ids.claim(base_id));
            // Operations reached through a shared path item repeat their texts: charge them.
            let text_bytes = op.display_name.len()
                + op.description.as_ref().map_or(0, String::len)
                + op.template_parameters
                    .iter()
                    .map(|p| p.type_.len() + p.description.as_ref().map_or(0, String::len))
                    .sum::<usize>();
            if !walker.charge(1 + text_bytes / 16) {
                break;
            }
            match op.normalize() {
                Ok(()) => operations.push(op),
                Err(e) => {
                    for d in e.details {
                        walker
                            .found
                            .push(op_target.clone(), format!("{} {}", d.target, d.message));
                    }
                }
            }
        }
    }
    if walker.exhausted() {
        return Err(single(
            "document",
            "is too complex to import: its references expand to too much work; split it into smaller APIs or reduce the '$ref' chains",
        ));
    }
    if walker.found.is_empty() {
        Ok(operations)
    } else {
        Err(finish(walker.found.details, walker.found.more))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_ids_are_kept() {
        for id in ["listPets", "get_pet.v2", "a--b", "x"] {
            assert_eq!(sanitize_id(id), id);
        }
    }

    #[test]
    fn invalid_characters_become_dashes() {
        assert_eq!(sanitize_id("list pets"), "list-pets");
        assert_eq!(sanitize_id("pets/{petId}/photos"), "pets-petId-photos");
        assert_eq!(sanitize_id("a  //  b"), "a-b");
        assert_eq!(sanitize_id("Créer un animal"), "Cr-er-un-animal");
        assert_eq!(sanitize_id("  spaced  "), "spaced");
    }

    #[test]
    fn leading_dots_and_dashes_are_trimmed() {
        assert_eq!(sanitize_id(".hidden op"), "hidden-op");
        assert_eq!(sanitize_id("-.-x y"), "x-y");
        assert_eq!(sanitize_id("...."), "");
        assert_eq!(sanitize_id("/// "), "");
        assert_eq!(sanitize_id(""), "");
    }

    #[test]
    fn long_ids_are_truncated_to_80() {
        let long = format!("{} x", "a".repeat(100));
        let id = sanitize_id(&long);
        assert_eq!(id.len(), 80);
        assert!(validate_id("operation", &id).is_ok());
        // A cut that ends on a dash drops it.
        let dashy = format!("{} b", "a".repeat(79));
        assert_eq!(sanitize_id(&dashy), "a".repeat(79));
    }

    #[test]
    fn derived_ids() {
        assert_eq!(derived_id("get", "/pets/{petId}"), "get-pets-petid");
        assert_eq!(derived_id("post", "/"), "post");
        assert_eq!(
            derived_id("delete", "/v1/files.json"),
            "delete-v1-files.json"
        );
    }

    #[test]
    fn unique_ids_get_suffixes() {
        let mut ids = Ids::default();
        assert_eq!(ids.claim("op".into()), "op");
        assert_eq!(ids.claim("op".into()), "op-2");
        assert_eq!(ids.claim("OP".into()), "OP-3");
        assert_eq!(ids.claim("op-2".into()), "op-2-2");
        assert_eq!(ids.claim("op-4".into()), "op-4");
        assert_eq!(ids.claim("op".into()), "op-5");
        let long = "x".repeat(80);
        assert_eq!(ids.claim(long.clone()), long);
        let second = ids.claim(long.clone());
        assert_eq!(second.len(), 80);
        assert!(second.ends_with("-2"));
    }

    #[test]
    fn many_equal_ids_stay_fast() {
        let mut ids = Ids::default();
        for _ in 0..50_000 {
            ids.claim("same".into());
        }
        assert_eq!(ids.claim("same".into()), "same-50001");
    }

    #[test]
    fn sanitized_ids_always_validate() {
        for raw in ["a b", "ü", "-", ".a", "a.", "x/y/z", &"é".repeat(200), "_"] {
            let id = sanitize_id(raw);
            assert!(
                id.is_empty() || validate_id("operation", &id).is_ok(),
                "{raw:?} gave {id:?}"
            );
        }
    }

    #[test]
    fn references_resolve_with_escapes_and_detect_cycles() {
        let root = parse(
            r##"{"a": {"b/c": {"x~y": 1}}, "loop1": {"$ref": "#/loop2"}, "loop2": {"$ref": "#/loop1"}}"##,
        )
        .unwrap();
        let mut walker = Walker::new(&root, Spec::OpenApi3);
        assert_eq!(
            walker.lookup("#/a/b~1c/x~0y").unwrap(),
            &Node::Number(1.into())
        );
        assert_eq!(
            walker.lookup("#/a/b%7E1c/x~0y").unwrap(),
            &Node::Number(1.into())
        );
        assert!(walker.lookup("#/a/missing").is_err());
        assert!(walker.lookup("other.yaml#/a").is_err());
        let looping = root.get("loop1").unwrap();
        assert!(walker.resolve(looping).unwrap_err().contains("cycle"));
    }

    #[test]
    fn references_into_large_objects_use_the_index() {
        let mut doc = String::from("{\"defs\": {");
        for i in 0..1000 {
            doc.push_str(&format!("\"d{i}\": {{\"n\": {i}}},"));
        }
        doc.push_str("\"last\": 1}}");
        let root = parse(&doc).unwrap();
        let mut walker = Walker::new(&root, Spec::OpenApi3);
        for i in (0..1000).rev() {
            let node = walker.lookup(&format!("#/defs/d{i}")).unwrap();
            assert_eq!(node.get("n"), Some(&Node::Number(i.into())));
        }
        assert_eq!(walker.indexes.len(), 1);
    }

    #[test]
    fn value_count_is_limited() {
        let doc = format!("{{\"a\": [{}0]}}", "0,".repeat(MAX_VALUES));
        let e = parse(&doc).unwrap_err();
        assert!(e.message.contains("more than"), "{}", e.message);
    }
}
