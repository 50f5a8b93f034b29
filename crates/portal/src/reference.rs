//! The API reference: turns an imported OpenAPI 3.x or Swagger 2.0 document (kept as JSON by
//! the control plane) into what the pages show: operations grouped by tag, and per operation
//! its parameters, request body, responses, schemas as nested tables, and examples.
//!
//! The store's `operation` resources say which operations the gateway serves; the document adds
//! the detail. Schemas expand to nested rows with cycle detection, a depth limit and a row
//! budget per page, so the biggest real documents stay readable and small: a schema's own
//! properties are always listed, deeper ones until the budget is spent.

use std::collections::{BTreeMap, HashMap};

use gatehouse_model::resources::Operation;
use serde::Serialize;
use serde_json::{Map, Value};

/// Most `$ref` hops followed to reach a definition.
const MAX_REF_HOPS: usize = 32;
/// Deepest nesting of schema rows shown.
const MAX_SCHEMA_DEPTH: usize = 5;
/// Nested schema rows shown per operation page (own properties of a schema do not count).
const ROW_BUDGET: usize = 400;
/// Longest example shown, in bytes.
const MAX_EXAMPLE: usize = 8 * 1024;
/// Most enum values listed.
const MAX_ENUM: usize = 12;

const METHOD_ORDER: [&str; 9] = [
    "GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE", "*",
];

/// A document with `$ref` resolution.
#[derive(Debug, Clone, Copy)]
pub struct Doc<'a> {
    root: &'a Value,
    swagger2: bool,
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%'
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(v) = u8::from_str_radix(hex, 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A JSON value as short text for a table cell.
fn compact(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn clip(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("\n…");
    }
    text
}

/// An example as shown: strings as they are, anything else as indented JSON.
fn example_text(value: &Value) -> String {
    let text = match value {
        Value::String(s) => s.clone(),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    };
    clip(text, MAX_EXAMPLE)
}

impl<'a> Doc<'a> {
    pub fn new(root: &'a Value) -> Self {
        Self {
            root,
            swagger2: root.get("swagger").is_some(),
        }
    }

    /// Follows `$ref`s to the definition; also returns the last reference's name (the schema's
    /// name, e.g. `Pet`). An unresolvable reference stays as it is.
    pub fn resolve(&self, mut value: &'a Value) -> (&'a Value, Option<&'a str>) {
        let mut name = None;
        for _ in 0..MAX_REF_HOPS {
            let Some(reference) = value.get("$ref").and_then(Value::as_str) else {
                break;
            };
            let Some(pointer) = reference.strip_prefix('#') else {
                break;
            };
            match self.root.pointer(&percent_decode(pointer)) {
                Some(target) => {
                    name = reference.rsplit('/').next();
                    value = target;
                }
                None => break,
            }
        }
        (value, name)
    }

    fn get(&self, value: &'a Value, key: &str) -> Option<&'a Value> {
        self.resolve(value).0.get(key)
    }

    pub fn title(&self) -> Option<String> {
        text(self.root.get("info").and_then(|i| i.get("title")))
    }

    pub fn description(&self) -> Option<String> {
        text(self.root.get("info").and_then(|i| i.get("description")))
    }

    pub fn version(&self) -> Option<String> {
        text(self.root.get("info").and_then(|i| i.get("version")))
    }

    /// Every operation of the document by (upper-case method, path without a trailing `/`).
    fn index(&self) -> HashMap<(String, String), (&'a Value, &'a Value)> {
        let mut index = HashMap::new();
        let Some(paths) = self.root.get("paths").and_then(Value::as_object) else {
            return index;
        };
        for (path, item) in paths {
            let key = if path.len() > 1 {
                path.strip_suffix('/').unwrap_or(path)
            } else {
                path
            };
            let (item, _) = self.resolve(item);
            let Some(methods) = item.as_object() else {
                continue;
            };
            for (method, op) in methods {
                if op.is_object() && METHOD_ORDER.contains(&method.to_ascii_uppercase().as_str()) {
                    index.insert((method.to_ascii_uppercase(), key.to_owned()), (item, op));
                }
            }
        }
        index
    }

    fn tag_descriptions(&self) -> HashMap<String, String> {
        self.root
            .get("tags")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|t| Some((text(t.get("name"))?, text(t.get("description"))?)))
            .collect()
    }

    fn consumes_or_produces(&self, op: &'a Value, key: &str) -> Vec<String> {
        let list = op
            .get(key)
            .or_else(|| self.root.get(key))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| text(Some(v))).collect::<Vec<_>>())
            .unwrap_or_default();
        if list.is_empty() {
            vec!["application/json".to_owned()]
        } else {
            list
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The API page: operations grouped by tag.

#[derive(Debug, Clone, Serialize)]
pub struct OperationLink {
    pub id: String,
    pub method: String,
    pub path: String,
    pub summary: String,
    pub deprecated: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct TagGroup {
    pub name: String,
    pub description: Option<String>,
    pub operations: Vec<OperationLink>,
}

fn method_rank(method: &str) -> usize {
    METHOD_ORDER
        .iter()
        .position(|m| *m == method)
        .unwrap_or(METHOD_ORDER.len())
}

/// The API's operations grouped by the document's tags (an operation with several tags is in
/// each group; untagged ones under "Operations"), sorted by path and method.
pub fn tag_groups(doc: Option<Doc<'_>>, operations: &[Operation]) -> Vec<TagGroup> {
    let index = doc.map(|d| d.index()).unwrap_or_default();
    let descriptions = doc.map(|d| d.tag_descriptions()).unwrap_or_default();
    let mut groups: BTreeMap<String, Vec<OperationLink>> = BTreeMap::new();
    let mut order: Vec<String> = doc
        .and_then(|d| d.root.get("tags"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| text(t.get("name")))
        .collect();
    for op in operations {
        let found = index.get(&(op.method.clone(), op.url_template.clone()));
        let tags: Vec<String> = found
            .and_then(|(_, o)| o.get("tags"))
            .and_then(Value::as_array)
            .map(|t| t.iter().filter_map(|v| text(Some(v))).collect())
            .unwrap_or_default();
        let summary = found
            .and_then(|(_, o)| text(o.get("summary")))
            .unwrap_or_else(|| op.display_name.clone());
        let link = OperationLink {
            id: op.id.clone(),
            method: op.method.clone(),
            path: op.url_template.clone(),
            summary,
            deprecated: found
                .and_then(|(_, o)| o.get("deprecated"))
                .and_then(Value::as_bool)
                .unwrap_or(false),
        };
        let tags = if tags.is_empty() {
            vec!["Operations".to_owned()]
        } else {
            tags
        };
        for tag in tags {
            if !order.contains(&tag) {
                order.push(tag.clone());
            }
            groups.entry(tag).or_default().push(link.clone());
        }
    }
    order
        .into_iter()
        .filter_map(|name| {
            let mut operations = groups.remove(&name)?;
            operations.sort_by(|a, b| {
                (a.path.as_str(), method_rank(&a.method))
                    .cmp(&(b.path.as_str(), method_rank(&b.method)))
            });
            Some(TagGroup {
                description: descriptions.get(&name).cloned(),
                name,
                operations,
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The operation page.

#[derive(Debug, Clone, Serialize, Default)]
pub struct ParamView {
    pub name: String,
    /// `path`, `query`, `header`, `cookie` (or `formData` for Swagger 2.0 form fields).
    pub location: String,
    pub required: bool,
    pub type_label: String,
    pub description: Option<String>,
    pub constraints: Vec<String>,
    pub example: Option<String>,
    pub deprecated: bool,
    /// Nested rows when the parameter's schema is an object.
    pub rows: Vec<SchemaRow>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct SchemaRow {
    pub name: String,
    pub type_label: String,
    pub required: bool,
    pub description: Option<String>,
    pub constraints: Vec<String>,
    pub children: Vec<SchemaRow>,
    /// Set when rows below this one were left out (depth or size limit), with the schema name.
    pub more: Option<String>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct SchemaView {
    /// `Pet`, `array of Pet`, `string`, …
    pub label: String,
    pub description: Option<String>,
    pub constraints: Vec<String>,
    pub rows: Vec<SchemaRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExampleView {
    pub name: Option<String>,
    pub value: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ContentView {
    pub media_type: String,
    pub schema: Option<SchemaView>,
    pub examples: Vec<ExampleView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BodyView {
    pub required: bool,
    pub description: Option<String>,
    pub contents: Vec<ContentView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResponseView {
    pub status: String,
    pub description: Option<String>,
    pub headers: Vec<ParamView>,
    pub contents: Vec<ContentView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OperationView {
    pub id: String,
    pub method: String,
    pub path: String,
    pub summary: String,
    pub description: Option<String>,
    pub deprecated: bool,
    pub tags: Vec<String>,
    pub parameters: Vec<ParamView>,
    pub body: Option<BodyView>,
    pub responses: Vec<ResponseView>,
    /// What Try it starts the body with: the first example, or one made from the schema.
    pub sample_body: Option<String>,
    pub body_media_type: Option<String>,
    /// False when the document does not describe this operation (added by hand).
    pub documented: bool,
}

/// Walks schemas into rows within the page's budget.
struct Rows<'d, 'a> {
    doc: &'d Doc<'a>,
    budget: usize,
}

impl<'a> Doc<'a> {
    fn type_name(&self, schema: &'a Value) -> Option<String> {
        match schema.get("type")? {
            Value::String(t) => Some(t.clone()),
            Value::Array(types) => types
                .iter()
                .filter_map(Value::as_str)
                .find(|t| *t != "null")
                .map(str::to_owned),
            _ => None,
        }
    }

    /// A short description of a schema's type: `Pet`, `array of Pet`, `string (date-time)`.
    pub fn label(&self, schema: &'a Value) -> String {
        self.label_at(schema, 0)
    }

    fn label_at(&self, schema: &'a Value, depth: usize) -> String {
        let (s, name) = self.resolve(schema);
        if depth > 4 {
            return name.unwrap_or("object").to_owned();
        }
        let ty = self.type_name(s);
        if ty.as_deref() == Some("array") || (ty.is_none() && s.get("items").is_some()) {
            let inner = s
                .get("items")
                .map_or_else(|| "any".to_owned(), |i| self.label_at(i, depth + 1));
            return match name {
                Some(n) => format!("{n} (array of {inner})"),
                None => format!("array of {inner}"),
            };
        }
        for key in ["oneOf", "anyOf"] {
            if let Some(options) = s.get(key).and_then(Value::as_array) {
                let labels: Vec<String> = options
                    .iter()
                    .take(6)
                    .map(|o| self.label_at(o, depth + 1))
                    .collect();
                let joined = format!(
                    "{} {}",
                    if key == "oneOf" { "one of" } else { "any of" },
                    labels.join(" | ")
                );
                return match name {
                    Some(n) => format!("{n} ({joined})"),
                    None => joined,
                };
            }
        }
        let primitive = match ty.as_deref() {
            Some("object") | None => None,
            Some(t) => Some(match text(s.get("format")) {
                Some(f) => format!("{t} ({f})"),
                None => t.to_owned(),
            }),
        };
        match (name, primitive) {
            (Some(n), Some(p)) => format!("{n} ({p})"),
            (Some(n), None) => n.to_owned(),
            (None, Some(p)) => p,
            (None, None) => {
                if s.get("additionalProperties").is_some_and(Value::is_object) {
                    let inner = s
                        .get("additionalProperties")
                        .map_or_else(String::new, |a| self.label_at(a, depth + 1));
                    format!("map of {inner}")
                } else if s.get("properties").is_some() || s.get("allOf").is_some() || ty.is_some()
                {
                    "object".to_owned()
                } else {
                    "any".to_owned()
                }
            }
        }
    }

    /// Validation keywords as short phrases.
    fn constraints(&self, schema: &'a Value) -> Vec<String> {
        let (s, _) = self.resolve(schema);
        let mut out = Vec::new();
        if let Some(values) = s.get("enum").and_then(Value::as_array) {
            let mut shown: Vec<String> = values.iter().take(MAX_ENUM).map(compact).collect();
            if values.len() > MAX_ENUM {
                shown.push(format!("… {} more", values.len() - MAX_ENUM));
            }
            out.push(format!("one of: {}", shown.join(", ")));
        }
        for (key, phrase) in [
            ("default", "default"),
            ("minimum", "minimum"),
            ("maximum", "maximum"),
            ("exclusiveMinimum", "greater than"),
            ("exclusiveMaximum", "less than"),
            ("minLength", "min length"),
            ("maxLength", "max length"),
            ("pattern", "pattern"),
            ("minItems", "min items"),
            ("maxItems", "max items"),
            ("multipleOf", "multiple of"),
        ] {
            match s.get(key) {
                Some(Value::Bool(_)) | None => {}
                Some(v) => out.push(format!("{phrase}: {}", compact(v))),
            }
        }
        for (key, phrase) in [
            ("readOnly", "read-only"),
            ("writeOnly", "write-only"),
            ("nullable", "nullable"),
            ("uniqueItems", "unique items"),
            ("deprecated", "deprecated"),
        ] {
            let is_array = s.get("type").and_then(Value::as_str) == Some("array");
            if key == "uniqueItems" && !is_array {
                continue;
            }
            if s.get(key).and_then(Value::as_bool) == Some(true) {
                out.push(phrase.to_owned());
            }
        }
        out
    }

    /// The schema (through `$ref`s and array items) whose properties would be listed.
    fn expandable(&self, schema: &'a Value) -> Option<&'a Value> {
        let mut s = self.resolve(schema).0;
        for _ in 0..4 {
            if s.get("type").and_then(Value::as_str) == Some("array") || s.get("items").is_some() {
                s = self.resolve(s.get("items")?).0;
            } else {
                break;
            }
        }
        let has = |k: &str| s.get(k).is_some();
        (has("properties")
            || has("allOf")
            || has("oneOf")
            || has("anyOf")
            || self.map_of_objects(s))
        .then_some(s)
    }

    /// Whether a schema is a map whose values have properties of their own.
    fn map_of_objects(&self, s: &'a Value) -> bool {
        s.get("additionalProperties")
            .filter(|a| a.is_object())
            .map(|a| self.resolve(a).0)
            .is_some_and(|a| a.get("properties").is_some() || a.get("allOf").is_some())
    }

    /// The properties of a schema, with those of its `allOf` parts, and the required names.
    fn properties(&self, s: &'a Value, depth: usize) -> (Vec<(&'a str, &'a Value)>, Vec<&'a str>) {
        let mut props: Vec<(&'a str, &'a Value)> = Vec::new();
        let mut required: Vec<&'a str> = Vec::new();
        if depth > 8 {
            return (props, required);
        }
        if let Some(parts) = s.get("allOf").and_then(Value::as_array) {
            for part in parts {
                let (p, r) = self.properties(self.resolve(part).0, depth + 1);
                for (k, v) in p {
                    if !props.iter().any(|(n, _)| *n == k) {
                        props.push((k, v));
                    }
                }
                required.extend(r);
            }
        }
        if let Some(own) = s.get("properties").and_then(Value::as_object) {
            for (k, v) in own {
                props.retain(|(n, _)| n != k);
                props.push((k.as_str(), v));
            }
        }
        if let Some(r) = s.get("required").and_then(Value::as_array) {
            required.extend(r.iter().filter_map(Value::as_str));
        }
        (props, required)
    }

    fn description_of(&self, schema: &'a Value) -> Option<String> {
        text(schema.get("description")).or_else(|| text(self.resolve(schema).0.get("description")))
    }
}

impl<'a> Rows<'_, 'a> {
    /// Rows for the properties of `schema`. `depth` 0 is the schema itself: its own properties
    /// are always listed; deeper ones only while the budget lasts.
    fn rows(&mut self, schema: &'a Value, depth: usize, trail: &mut Vec<usize>) -> Vec<SchemaRow> {
        let doc = self.doc;
        let Some(s) = doc.expandable(schema) else {
            return Vec::new();
        };
        let address = std::ptr::from_ref(s) as usize;
        if trail.contains(&address) {
            return Vec::new();
        }
        trail.push(address);
        let (props, required) = doc.properties(s, 0);
        let mut out = Vec::new();
        for (name, prop) in props {
            if depth > 0 {
                if self.budget == 0 {
                    break;
                }
                self.budget -= 1;
            }
            out.push(self.row(name, prop, required.contains(&name), depth, trail));
        }
        if let Some(extra) = s
            .get("additionalProperties")
            .filter(|_| doc.map_of_objects(s))
        {
            out.push(self.row("(any name)", extra, false, depth, trail));
        }
        for key in ["oneOf", "anyOf"] {
            if let Some(options) = s.get(key).and_then(Value::as_array) {
                for (i, option) in options.iter().enumerate().take(8) {
                    let label = format!(
                        "({} {})",
                        if key == "oneOf" { "option" } else { "any of" },
                        i + 1
                    );
                    out.push(self.row(&label, option, false, depth, trail));
                }
            }
        }
        trail.pop();
        out
    }

    fn row(
        &mut self,
        name: &str,
        prop: &'a Value,
        required: bool,
        depth: usize,
        trail: &mut Vec<usize>,
    ) -> SchemaRow {
        let doc = self.doc;
        let mut row = SchemaRow {
            name: name.to_owned(),
            type_label: doc.label(prop),
            required,
            description: doc.description_of(prop),
            constraints: doc.constraints(prop),
            children: Vec::new(),
            more: None,
        };
        if let Some(inner) = doc.expandable(prop) {
            let address = std::ptr::from_ref(inner) as usize;
            if trail.contains(&address) {
                row.more = Some(format!("{} (recursive)", doc.label(prop)));
            } else if depth + 1 >= MAX_SCHEMA_DEPTH || self.budget == 0 {
                row.more = Some(doc.label(prop));
            } else {
                row.children = self.rows(prop, depth + 1, trail);
            }
        }
        row
    }

    fn schema(&mut self, schema: &'a Value) -> SchemaView {
        let doc = self.doc;
        let (s, _) = doc.resolve(schema);
        SchemaView {
            label: doc.label(schema),
            description: text(s.get("description")),
            constraints: doc.constraints(schema),
            rows: self.rows(schema, 0, &mut Vec::new()),
        }
    }
}

/// A sample value built from a schema, for Try it's body.
fn sample(doc: &Doc<'_>, schema: &Value, depth: usize) -> Value {
    let (s, _) = doc.resolve(schema);
    if let Some(example) = s.get("example") {
        return example.clone();
    }
    if let Some(default) = s.get("default") {
        return default.clone();
    }
    if let Some(first) = s
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    if depth > 6 {
        return Value::Null;
    }
    if let Some(first) = s
        .get("oneOf")
        .or_else(|| s.get("anyOf"))
        .and_then(Value::as_array)
        .and_then(|o| o.first())
    {
        return sample(doc, first, depth + 1);
    }
    match doc.type_name(s).as_deref() {
        Some("string") => Value::String(match text(s.get("format")).as_deref() {
            Some("date-time") => "2024-01-01T00:00:00Z".to_owned(),
            Some("date") => "2024-01-01".to_owned(),
            Some("uuid") => "00000000-0000-0000-0000-000000000000".to_owned(),
            Some("email") => "user@example.com".to_owned(),
            _ => "string".to_owned(),
        }),
        Some("integer") => Value::from(0),
        Some("number") => Value::from(0.0),
        Some("boolean") => Value::Bool(true),
        Some("array") => match s.get("items") {
            Some(items) => Value::Array(vec![sample(doc, items, depth + 1)]),
            None => Value::Array(Vec::new()),
        },
        _ => {
            let (props, _) = doc.properties(s, 0);
            if props.is_empty() && s.get("items").is_some() {
                return Value::Array(vec![sample(
                    doc,
                    s.get("items").unwrap_or(&Value::Null),
                    depth + 1,
                )]);
            }
            let mut map = Map::new();
            for (name, prop) in props.into_iter().take(40) {
                let (p, _) = doc.resolve(prop);
                if p.get("readOnly").and_then(Value::as_bool) == Some(true) {
                    continue;
                }
                map.insert(name.to_owned(), sample(doc, prop, depth + 1));
            }
            Value::Object(map)
        }
    }
}

fn prefer_json(types: &[String]) -> Option<String> {
    types
        .iter()
        .find(|t| t.contains("json"))
        .or_else(|| types.first())
        .cloned()
}

/// The examples of an OpenAPI 3 media type object (or a schema's `example`).
fn media_examples<'a>(doc: &Doc<'a>, media: &'a Value) -> Vec<ExampleView> {
    let mut out = Vec::new();
    if let Some(example) = media.get("example") {
        out.push(ExampleView {
            name: None,
            value: example_text(example),
        });
    }
    if let Some(examples) = media.get("examples").and_then(Value::as_object) {
        for (name, example) in examples.iter().take(3) {
            let (e, _) = doc.resolve(example);
            let value = match (e.get("value"), text(e.get("externalValue"))) {
                (Some(v), _) => example_text(v),
                (None, Some(url)) => format!("See {url}"),
                (None, None) => continue,
            };
            out.push(ExampleView {
                name: Some(text(e.get("summary")).unwrap_or_else(|| name.clone())),
                value,
            });
        }
    }
    if out.is_empty()
        && let Some(example) = media.get("schema").and_then(|s| doc.get(s, "example"))
    {
        out.push(ExampleView {
            name: None,
            value: example_text(example),
        });
    }
    out
}

/// The operation's page, from the stored operation and (if it has one) the document.
pub fn operation_view(doc: Option<Doc<'_>>, op: &Operation) -> OperationView {
    let mut view = OperationView {
        id: op.id.clone(),
        method: op.method.clone(),
        path: op.url_template.clone(),
        summary: op.display_name.clone(),
        description: op.description.clone(),
        deprecated: false,
        tags: Vec::new(),
        parameters: Vec::new(),
        body: None,
        responses: Vec::new(),
        sample_body: None,
        body_media_type: None,
        documented: false,
    };
    let found = doc.and_then(|d| {
        d.index()
            .remove(&(op.method.clone(), op.url_template.clone()))
            .map(|found| (d, found))
    });
    if let Some((doc, (item, node))) = found {
        describe(&doc, item, node, &mut view);
    }
    // Path parameters the gateway matches, even when the document does not declare them.
    for tp in &op.template_parameters {
        if !view
            .parameters
            .iter()
            .any(|p| p.location == "path" && p.name == tp.name)
        {
            view.parameters.insert(
                0,
                ParamView {
                    name: tp.name.clone(),
                    location: "path".to_owned(),
                    required: true,
                    type_label: tp.type_.clone(),
                    description: tp.description.clone(),
                    ..ParamView::default()
                },
            );
        }
    }
    view
}

fn describe<'a>(doc: &Doc<'a>, item: &'a Value, node: &'a Value, view: &mut OperationView) {
    let mut rows = Rows {
        doc,
        budget: ROW_BUDGET,
    };
    view.documented = true;
    if let Some(summary) = text(node.get("summary")) {
        view.summary = summary;
    }
    view.description = text(node.get("description")).or(view.description.take());
    view.deprecated = node
        .get("deprecated")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    view.tags = node
        .get("tags")
        .and_then(Value::as_array)
        .map(|t| t.iter().filter_map(|v| text(Some(v))).collect())
        .unwrap_or_default();

    // Parameters: the path item's, replaced by the operation's of the same name and place.
    let mut params: Vec<&'a Value> = Vec::new();
    for list in [item.get("parameters"), node.get("parameters")] {
        for p in list.and_then(Value::as_array).into_iter().flatten() {
            let (p, _) = doc.resolve(p);
            let key = (text(p.get("name")), text(p.get("in")));
            params.retain(|q| (text(q.get("name")), text(q.get("in"))) != key);
            params.push(p);
        }
    }
    let mut form_fields: Vec<&'a Value> = Vec::new();
    for p in params {
        let location = text(p.get("in")).unwrap_or_default();
        if doc.swagger2 && location == "body" {
            let schema = p.get("schema").unwrap_or(&Value::Null);
            let types = doc.consumes_or_produces(node, "consumes");
            let mut examples = Vec::new();
            if let Some(example) = doc.get(schema, "example") {
                examples.push(ExampleView {
                    name: None,
                    value: example_text(example),
                });
            }
            view.body_media_type = prefer_json(&types);
            view.sample_body = Some(example_or_sample(doc, schema));
            view.body = Some(BodyView {
                required: p.get("required").and_then(Value::as_bool).unwrap_or(false),
                description: text(p.get("description")),
                contents: vec![ContentView {
                    media_type: types.join(", "),
                    schema: Some(rows.schema(schema)),
                    examples,
                }],
            });
            continue;
        }
        if doc.swagger2 && location == "formData" {
            form_fields.push(p);
            continue;
        }
        view.parameters
            .push(param_view(doc, &mut rows, p, &location));
    }
    if !form_fields.is_empty() {
        let types = doc.consumes_or_produces(node, "consumes");
        let fields: Vec<SchemaRow> = form_fields
            .iter()
            .map(|p| SchemaRow {
                name: text(p.get("name")).unwrap_or_default(),
                type_label: swagger2_label(doc, p),
                required: p.get("required").and_then(Value::as_bool).unwrap_or(false),
                description: text(p.get("description")),
                constraints: doc.constraints(p),
                children: Vec::new(),
                more: None,
            })
            .collect();
        view.body_media_type = types.first().cloned();
        view.body = Some(BodyView {
            required: fields.iter().any(|f| f.required),
            description: None,
            contents: vec![ContentView {
                media_type: types.join(", "),
                schema: Some(SchemaView {
                    label: "form fields".to_owned(),
                    description: None,
                    constraints: Vec::new(),
                    rows: fields,
                }),
                examples: Vec::new(),
            }],
        });
    }

    // OpenAPI 3 request body.
    if let Some(body) = node.get("requestBody") {
        let (body, _) = doc.resolve(body);
        let mut contents = Vec::new();
        let media: Vec<(&String, &'a Value)> = body
            .get("content")
            .and_then(Value::as_object)
            .map(|m| m.iter().collect())
            .unwrap_or_default();
        let types: Vec<String> = media.iter().map(|(t, _)| (*t).clone()).collect();
        view.body_media_type = prefer_json(&types);
        for (media_type, m) in media {
            let examples = media_examples(doc, m);
            if Some(media_type) == view.body_media_type.as_ref() {
                view.sample_body = Some(match (examples.first(), m.get("schema")) {
                    (Some(e), _) => e.value.clone(),
                    (None, Some(schema)) => example_or_sample(doc, schema),
                    (None, None) => String::new(),
                });
            }
            contents.push(ContentView {
                media_type: media_type.clone(),
                schema: m.get("schema").map(|s| rows.schema(s)),
                examples,
            });
        }
        view.body = Some(BodyView {
            required: body
                .get("required")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            description: text(body.get("description")),
            contents,
        });
    }

    // Responses.
    let produces = doc.consumes_or_produces(node, "produces");
    for (status, response) in node
        .get("responses")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if status.starts_with("x-") {
            continue;
        }
        let (r, _) = doc.resolve(response);
        let headers = r
            .get("headers")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(name, h)| {
                let (h, _) = doc.resolve(h);
                let mut p = param_view(doc, &mut rows, h, "header");
                p.name = name.clone();
                p.required = false;
                p
            })
            .collect();
        let mut contents = Vec::new();
        if doc.swagger2 {
            if let Some(schema) = r.get("schema") {
                let examples = r
                    .get("examples")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                    .take(3)
                    .map(|(mime, v)| ExampleView {
                        name: Some(mime.clone()),
                        value: example_text(v),
                    })
                    .collect();
                contents.push(ContentView {
                    media_type: produces.join(", "),
                    schema: Some(rows.schema(schema)),
                    examples,
                });
            }
        } else if let Some(content) = r.get("content").and_then(Value::as_object) {
            for (media_type, m) in content {
                contents.push(ContentView {
                    media_type: media_type.clone(),
                    schema: m.get("schema").map(|s| rows.schema(s)),
                    examples: media_examples(doc, m),
                });
            }
        }
        view.responses.push(ResponseView {
            status: status.clone(),
            description: text(r.get("description")),
            headers,
            contents,
        });
    }
}

fn example_or_sample(doc: &Doc<'_>, schema: &Value) -> String {
    match doc.get(schema, "example") {
        Some(e) => example_text(e),
        None => clip(
            serde_json::to_string_pretty(&sample(doc, schema, 0)).unwrap_or_default(),
            MAX_EXAMPLE,
        ),
    }
}

/// A Swagger 2.0 parameter's or header's type, which it declares itself.
fn swagger2_label(doc: &Doc<'_>, p: &Value) -> String {
    let ty = text(p.get("type")).unwrap_or_else(|| "string".to_owned());
    if ty == "array" {
        let inner = p.get("items").map_or_else(
            || "string".to_owned(),
            |i| swagger2_label(doc, doc.resolve(i).0),
        );
        return match text(p.get("collectionFormat")) {
            Some(f) => format!("array of {inner} ({f})"),
            None => format!("array of {inner}"),
        };
    }
    match text(p.get("format")) {
        Some(f) => format!("{ty} ({f})"),
        None => ty,
    }
}

fn param_view<'a>(
    doc: &Doc<'a>,
    rows: &mut Rows<'_, 'a>,
    p: &'a Value,
    location: &str,
) -> ParamView {
    let schema = p.get("schema").or_else(|| {
        p.get("content")
            .and_then(Value::as_object)
            .and_then(|c| c.values().next())
            .and_then(|m| m.get("schema"))
    });
    let (type_label, constraints, nested, schema_example) = match schema {
        Some(s) => (
            doc.label(s),
            doc.constraints(s),
            rows.rows(s, 1, &mut Vec::new()),
            doc.get(s, "example"),
        ),
        None => (swagger2_label(doc, p), doc.constraints(p), Vec::new(), None),
    };
    let example = p
        .get("example")
        .or_else(|| p.get("x-example"))
        .or(schema_example)
        .map(example_text);
    ParamView {
        name: text(p.get("name")).unwrap_or_default(),
        location: location.to_owned(),
        required: p
            .get("required")
            .and_then(Value::as_bool)
            .unwrap_or(location == "path"),
        type_label,
        description: text(p.get("description")),
        constraints,
        example,
        deprecated: p
            .get("deprecated")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        rows: nested,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn op(method: &str, path: &str) -> Operation {
        Operation {
            id: "op".into(),
            display_name: "op".into(),
            method: method.into(),
            url_template: path.into(),
            template_parameters: Vec::new(),
            description: None,
        }
    }

    #[test]
    fn openapi3_operation() {
        let doc = json!({
            "openapi": "3.0.0",
            "paths": {"/pets/{id}/": {
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                "put": {
                    "tags": ["pets"],
                    "summary": "Replace a pet",
                    "parameters": [{"$ref": "#/components/parameters/Trace"}],
                    "requestBody": {"required": true, "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/Pet"}}}},
                    "responses": {"200": {"description": "OK", "headers": {"x-rate": {"schema": {"type": "integer"}}},
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Pet"},
                        "example": {"id": 1, "name": "Rex"}}}}}
                }
            }},
            "components": {
                "parameters": {"Trace": {"name": "x-trace", "in": "header", "schema": {"type": "string", "format": "uuid"}}},
                "schemas": {"Pet": {"type": "object", "required": ["name"], "properties": {
                    "id": {"type": "integer", "format": "int64", "readOnly": true},
                    "name": {"type": "string", "maxLength": 20},
                    "parent": {"$ref": "#/components/schemas/Pet"},
                    "tags": {"type": "array", "items": {"$ref": "#/components/schemas/Tag"}}
                }},
                "Tag": {"type": "object", "properties": {"label": {"type": "string", "enum": ["a", "b"]}}}}
            }
        });
        let view = operation_view(Some(Doc::new(&doc)), &op("PUT", "/pets/{id}"));
        assert!(view.documented);
        assert_eq!(view.summary, "Replace a pet");
        let names: Vec<(&str, &str)> = view
            .parameters
            .iter()
            .map(|p| (p.name.as_str(), p.location.as_str()))
            .collect();
        assert_eq!(names, vec![("id", "path"), ("x-trace", "header")]);
        assert_eq!(view.parameters[1].type_label, "string (uuid)");
        let body = view.body.unwrap();
        let schema = body.contents[0].schema.as_ref().unwrap();
        assert_eq!(schema.label, "Pet");
        let rows: Vec<&str> = schema.rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(rows, vec!["id", "name", "parent", "tags"]);
        assert!(schema.rows[1].required && !schema.rows[0].required);
        assert_eq!(schema.rows[2].more.as_deref(), Some("Pet (recursive)"));
        assert_eq!(schema.rows[3].type_label, "array of Tag");
        assert_eq!(schema.rows[3].children[0].constraints, vec!["one of: a, b"]);
        let sample: Value = serde_json::from_str(view.sample_body.as_deref().unwrap()).unwrap();
        assert!(sample.get("name").is_some() && sample.get("id").is_none());
        assert_eq!(view.responses[0].headers[0].name, "x-rate");
        assert!(
            view.responses[0].contents[0].examples[0]
                .value
                .contains("Rex")
        );
    }

    #[test]
    fn swagger2_operation() {
        let doc = json!({
            "swagger": "2.0",
            "consumes": ["application/json"],
            "paths": {"/pets": {"post": {
                "parameters": [
                    {"name": "body", "in": "body", "schema": {"$ref": "#/definitions/Pet"}},
                    {"name": "tags", "in": "query", "type": "array", "items": {"type": "string"}, "collectionFormat": "csv"}
                ],
                "responses": {"201": {"description": "Created", "schema": {"$ref": "#/definitions/Pet"}}}
            }}},
            "definitions": {"Pet": {"properties": {"name": {"type": "string"}}}}
        });
        let view = operation_view(Some(Doc::new(&doc)), &op("POST", "/pets"));
        assert_eq!(view.parameters.len(), 1);
        assert_eq!(view.parameters[0].type_label, "array of string (csv)");
        let body = view.body.unwrap();
        assert_eq!(
            body.contents[0].schema.as_ref().unwrap().rows[0].name,
            "name"
        );
        assert_eq!(view.responses[0].status, "201");
        assert_eq!(view.body_media_type.as_deref(), Some("application/json"));
    }

    #[test]
    fn undocumented_operations_keep_their_template_parameters() {
        let mut o = op("GET", "/things/{thing}");
        o.template_parameters
            .push(gatehouse_model::resources::TemplateParameter {
                name: "thing".into(),
                type_: "string".into(),
                required: true,
                description: None,
            });
        let view = operation_view(None, &o);
        assert!(!view.documented);
        assert_eq!(view.parameters[0].name, "thing");
    }

    #[test]
    fn groups_follow_tags() {
        let doc = json!({"openapi": "3.0.0", "tags": [{"name": "b", "description": "Bees"}],
            "paths": {"/a": {"get": {"tags": ["a"]}, "post": {"tags": ["a", "b"]}}, "/z": {"get": {}}}});
        let groups = tag_groups(
            Some(Doc::new(&doc)),
            &[op("POST", "/a"), op("GET", "/a"), op("GET", "/z")],
        );
        let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, vec!["b", "a", "Operations"]);
        assert_eq!(groups[1].operations[0].method, "GET");
        assert_eq!(groups[0].description.as_deref(), Some("Bees"));
    }
}
