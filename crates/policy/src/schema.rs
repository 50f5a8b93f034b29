//! A JSON Schema subset, compiled once per configuration, for the validation policies: the
//! schemas of an operation's request and response bodies (`validate-content`), parameters
//! (`validate-parameters`) and response headers (`validate-headers`), as its imported OpenAPI
//! document declares them.
//!
//! Supported keywords: `type` (one or a list), `nullable` (OpenAPI 3.0), `properties`,
//! `required`, `additionalProperties` (boolean or schema), `items`, `enum`, `const`,
//! `minimum`/`maximum` and their exclusive forms (3.0 booleans and 3.1 numbers), `minLength`/
//! `maxLength` (in characters), `pattern`, `minItems`/`maxItems`, `allOf`/`anyOf`/`oneOf`, and
//! `$ref` to local definitions (`#/components/schemas/…`, `#/definitions/…`). `format` is
//! checked only where [`Options::formats`] asks for it (parameters and headers, whose text
//! must parse as the format says), for `int32`, `int64`, `date`, `date-time`, `uuid`, `byte`,
//! `ipv4`, `ipv6` and `email`; other keywords (`discriminator`, …) are accepted and not
//! checked, as Azure does for most of them.
//!
//! A schema becomes a table of nodes; a `$ref` is an index into it, so recursive schemas
//! compile once and validation never resolves anything.

use std::collections::HashMap;

use serde_json::Value;

/// Most nodes one schema set may hold (keeps a hostile document from bloating the gateway).
const MAX_NODES: usize = 20_000;
/// Deepest value nesting validated; deeper values fail with an error rather than recurse on.
const MAX_DEPTH: usize = 128;
/// Most errors reported for one body.
pub const MAX_ERRORS: usize = 10;

/// Why a schema could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("schema {at}: {message}")]
pub struct SchemaError {
    /// Where in the schema, as a JSON pointer.
    pub at: String,
    pub message: String,
}

/// The compiled schemas of one API: every node, shared by all the roots compiled into it.
#[derive(Debug, Default)]
pub struct SchemaSet {
    nodes: Vec<Node>,
    /// Definition name → node, for `$ref`s (filled lazily while compiling).
    by_ref: HashMap<String, usize>,
}

/// A compiled schema: an index into its [`SchemaSet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaRef(usize);

#[derive(Debug, Default)]
struct Node {
    /// Bit set of [`Kind`]s allowed; 0 = any.
    types: u8,
    nullable: bool,
    properties: Vec<(String, usize)>,
    required: Vec<String>,
    additional: Additional,
    items: Option<usize>,
    enumeration: Option<Vec<Value>>,
    constant: Option<Value>,
    minimum: Option<(f64, bool)>,
    maximum: Option<(f64, bool)>,
    min_length: Option<u64>,
    max_length: Option<u64>,
    pattern: Option<regex::Regex>,
    format: Option<Format>,
    min_items: Option<u64>,
    max_items: Option<u64>,
    all_of: Vec<usize>,
    any_of: Vec<usize>,
    one_of: Vec<usize>,
    reference: Option<usize>,
}

/// The `format`s checked when [`Options::formats`] is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Int32,
    Int64,
    Date,
    DateTime,
    Uuid,
    Byte,
    Ipv4,
    Ipv6,
    Email,
}

impl Format {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "int32" => Self::Int32,
            "int64" => Self::Int64,
            "date" => Self::Date,
            "date-time" => Self::DateTime,
            "uuid" => Self::Uuid,
            "byte" => Self::Byte,
            "ipv4" => Self::Ipv4,
            "ipv6" => Self::Ipv6,
            "email" => Self::Email,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Int32 => "int32",
            Self::Int64 => "int64",
            Self::Date => "date",
            Self::DateTime => "date-time",
            Self::Uuid => "uuid",
            Self::Byte => "byte",
            Self::Ipv4 => "ipv4",
            Self::Ipv6 => "ipv6",
            Self::Email => "email",
        }
    }

    /// Whether `v` is written in this format; values of other kinds are not its business.
    fn accepts(self, v: &Value) -> bool {
        use base64::Engine as _;
        match (self, v) {
            (Self::Int32, Value::Number(n)) => match n.as_i64() {
                Some(i) => i32::try_from(i).is_ok(),
                None => n.as_f64().is_some_and(|f| {
                    f.fract() == 0.0 && f >= f64::from(i32::MIN) && f <= f64::from(i32::MAX)
                }),
            },
            (Self::Int64, Value::Number(n)) => {
                n.as_i64().is_some()
                    || n.as_f64()
                        .is_some_and(|f| f.fract() == 0.0 && f.abs() < 9.2e18)
            }
            (Self::Date, Value::String(s)) => {
                let f = time::macros::format_description!("[year]-[month]-[day]");
                s.len() == 10 && time::Date::parse(s, f).is_ok()
            }
            (Self::DateTime, Value::String(s)) => {
                time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                    .is_ok()
            }
            (Self::Uuid, Value::String(s)) => uuid::Uuid::try_parse(s).is_ok(),
            (Self::Byte, Value::String(s)) => {
                base64::engine::general_purpose::STANDARD.decode(s).is_ok()
            }
            (Self::Ipv4, Value::String(s)) => s.parse::<std::net::Ipv4Addr>().is_ok(),
            (Self::Ipv6, Value::String(s)) => s.parse::<std::net::Ipv6Addr>().is_ok(),
            (Self::Email, Value::String(s)) => s.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && !domain.is_empty()
                    && !domain.contains('@')
                    && !s.chars().any(char::is_whitespace)
            }),
            _ => true,
        }
    }
}

/// How [`SchemaSet::validate_with`] judges a value.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// When given, overrides every `additionalProperties` (`validate-content
    /// allow-additional-properties`).
    pub allow_additional: Option<bool>,
    /// Checks the `format`s this module knows.
    pub formats: bool,
}

/// The JSON types a schema allows at its root: what a parameter's text may be read as.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Kinds(u8);

impl Kinds {
    /// No `type` said: anything goes.
    pub fn any(self) -> bool {
        self.0 == 0
    }
    pub fn boolean(self) -> bool {
        self.0 & BOOLEAN != 0
    }
    pub fn integer(self) -> bool {
        self.0 & INTEGER != 0
    }
    pub fn number(self) -> bool {
        self.0 & NUMBER != 0
    }
    pub fn string(self) -> bool {
        self.0 & STRING != 0
    }
    pub fn array(self) -> bool {
        self.0 & ARRAY != 0
    }
    pub fn object(self) -> bool {
        self.0 & OBJECT != 0
    }
    /// The types by name, as messages list them (`integer or string`).
    pub fn names(self) -> String {
        type_names(self.0 & !(if self.0 & NUMBER != 0 { INTEGER } else { 0 }))
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Additional {
    #[default]
    Any,
    Deny,
    Schema(usize),
}

const NULL: u8 = 1;
const BOOLEAN: u8 = 2;
const INTEGER: u8 = 4;
const NUMBER: u8 = 8;
const STRING: u8 = 16;
const ARRAY: u8 = 32;
const OBJECT: u8 = 64;

fn kind_bit(name: &str) -> Option<u8> {
    Some(match name {
        "null" => NULL,
        "boolean" => BOOLEAN,
        "integer" => INTEGER,
        "number" => NUMBER,
        "string" => STRING,
        "array" => ARRAY,
        "object" => OBJECT,
        _ => return None,
    })
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_names(bits: u8) -> String {
    let names = [
        (NULL, "null"),
        (BOOLEAN, "boolean"),
        (INTEGER, "integer"),
        (NUMBER, "number"),
        (STRING, "string"),
        (ARRAY, "array"),
        (OBJECT, "object"),
    ];
    names
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join(" or ")
}

/// One way a value breaks its schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Where in the value, as a JSON pointer (`/items/2/name`; empty for the whole value).
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = if self.path.is_empty() {
            "/"
        } else {
            &self.path
        };
        write!(f, "{at}: {}", self.message)
    }
}

impl SchemaSet {
    /// Compiles `schema`, resolving `$ref`s against `definitions` (definition name → schema,
    /// the document's `components.schemas` or `definitions`).
    pub fn compile(
        &mut self,
        schema: &Value,
        definitions: &dyn Fn(&str) -> Option<Value>,
    ) -> Result<SchemaRef, SchemaError> {
        let mut cx = Compiler {
            set: self,
            definitions,
        };
        cx.node(schema, "#").map(SchemaRef)
    }

    /// Checks `value` against the schema `root`. `allow_additional`, when given, overrides every
    /// `additionalProperties` (`validate-content allow-additional-properties`). Returns at most
    /// [`MAX_ERRORS`] violations; none when the value conforms.
    pub fn validate(
        &self,
        root: SchemaRef,
        value: &Value,
        allow_additional: Option<bool>,
    ) -> Vec<Violation> {
        self.validate_with(
            root,
            value,
            Options {
                allow_additional,
                formats: false,
            },
        )
    }

    /// [`SchemaSet::validate`] with every option.
    pub fn validate_with(
        &self,
        root: SchemaRef,
        value: &Value,
        options: Options,
    ) -> Vec<Violation> {
        let mut v = Validator {
            set: self,
            options,
            errors: Vec::new(),
            path: String::new(),
        };
        v.check(root.0, value, 0);
        v.errors
    }

    /// The node `id` stands for: itself, or what its `$ref`s lead to when it says nothing of
    /// its own type (a `$ref` next to other keywords keeps them).
    fn target(&self, mut id: usize) -> Option<&Node> {
        for _ in 0..MAX_DEPTH {
            let n = self.nodes.get(id)?;
            match n.reference {
                Some(r) if n.types == 0 && n.items.is_none() => id = r,
                _ => return Some(n),
            }
        }
        None
    }

    /// The types `root` allows (through `$ref`s and the first of `allOf` that says); any
    /// when it says none.
    pub fn kinds(&self, root: SchemaRef) -> Kinds {
        let Some(n) = self.target(root.0) else {
            return Kinds::default();
        };
        if n.types != 0 {
            return Kinds(n.types);
        }
        n.all_of
            .iter()
            .map(|&s| self.kinds(SchemaRef(s)))
            .find(|k| !k.any())
            .unwrap_or_default()
    }

    /// The schema of the items of an array schema `root`.
    pub fn items(&self, root: SchemaRef) -> Option<SchemaRef> {
        let n = self.target(root.0)?;
        n.items
            .or_else(|| {
                n.all_of
                    .iter()
                    .find_map(|&s| self.items(SchemaRef(s)).map(|r| r.0))
            })
            .map(SchemaRef)
    }
}

struct Compiler<'s, 'd> {
    set: &'s mut SchemaSet,
    definitions: &'d dyn Fn(&str) -> Option<Value>,
}

fn err(at: &str, message: impl Into<String>) -> SchemaError {
    SchemaError {
        at: at.to_owned(),
        message: message.into(),
    }
}

impl Compiler<'_, '_> {
    fn alloc(&mut self, at: &str) -> Result<usize, SchemaError> {
        if self.set.nodes.len() >= MAX_NODES {
            return Err(err(
                at,
                format!("the schemas have more than {MAX_NODES} parts"),
            ));
        }
        self.set.nodes.push(Node::default());
        Ok(self.set.nodes.len() - 1)
    }

    fn node(&mut self, schema: &Value, at: &str) -> Result<usize, SchemaError> {
        let obj = match schema {
            // `true`/`{}` accept anything; `false` accepts nothing.
            Value::Bool(true) => return self.alloc(at),
            Value::Bool(false) => {
                let id = self.alloc(at)?;
                self.set.nodes[id].enumeration = Some(vec![]);
                return Ok(id);
            }
            Value::Object(o) => o,
            _ => return Err(err(at, "is not a schema (an object or a boolean)")),
        };
        let id = self.alloc(at)?;
        let mut n = Node::default();
        if let Some(r) = obj.get("$ref") {
            let r = r.as_str().ok_or_else(|| err(at, "$ref is not a string"))?;
            n.reference = Some(self.reference(r, at)?);
        }
        match obj.get("type") {
            None => {}
            Some(Value::String(t)) => {
                n.types = kind_bit(t).ok_or_else(|| err(at, format!("unknown type '{t}'")))?;
            }
            Some(Value::Array(list)) => {
                for t in list {
                    let t = t.as_str().unwrap_or_default();
                    n.types |= kind_bit(t).ok_or_else(|| err(at, format!("unknown type '{t}'")))?;
                }
            }
            Some(_) => return Err(err(at, "type is neither a string nor a list")),
        }
        // An integer is a number too.
        if n.types & NUMBER != 0 {
            n.types |= INTEGER;
        }
        n.nullable = obj.get("nullable").and_then(Value::as_bool) == Some(true);
        if let Some(Value::Object(props)) = obj.get("properties") {
            for (name, s) in props {
                let child = self.node(s, &format!("{at}/properties/{name}"))?;
                n.properties.push((name.clone(), child));
            }
        }
        if let Some(Value::Array(req)) = obj.get("required") {
            n.required = req
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect();
        }
        n.additional = match obj.get("additionalProperties") {
            None | Some(Value::Bool(true)) => Additional::Any,
            Some(Value::Bool(false)) => Additional::Deny,
            Some(s) => Additional::Schema(self.node(s, &format!("{at}/additionalProperties"))?),
        };
        if let Some(items) = obj.get("items") {
            n.items = Some(self.node(items, &format!("{at}/items"))?);
        }
        if let Some(Value::Array(e)) = obj.get("enum") {
            n.enumeration = Some(e.clone());
        }
        n.constant = obj.get("const").cloned();
        let num = |k: &str| obj.get(k).and_then(Value::as_f64);
        let flag = |k: &str| obj.get(k).and_then(Value::as_bool) == Some(true);
        n.minimum = num("minimum").map(|m| (m, flag("exclusiveMinimum")));
        n.maximum = num("maximum").map(|m| (m, flag("exclusiveMaximum")));
        // OpenAPI 3.1 / JSON Schema 2019+: the exclusive bounds are numbers of their own.
        if let Some(m) = num("exclusiveMinimum") {
            n.minimum = Some((m, true));
        }
        if let Some(m) = num("exclusiveMaximum") {
            n.maximum = Some((m, true));
        }
        let count = |k: &str| obj.get(k).and_then(Value::as_u64);
        n.min_length = count("minLength");
        n.max_length = count("maxLength");
        n.min_items = count("minItems");
        n.max_items = count("maxItems");
        n.format = obj
            .get("format")
            .and_then(Value::as_str)
            .and_then(Format::parse);
        if let Some(p) = obj.get("pattern") {
            let p = p
                .as_str()
                .ok_or_else(|| err(at, "pattern is not a string"))?;
            n.pattern = Some(
                regex::RegexBuilder::new(p)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| {
                        err(
                            &format!("{at}/pattern"),
                            format!("'{p}' is not a regular expression this gateway runs: {e}"),
                        )
                    })?,
            );
        }
        for (key, list) in [("allOf", 0), ("anyOf", 1), ("oneOf", 2)] {
            let Some(Value::Array(subs)) = obj.get(key) else {
                continue;
            };
            let mut ids = Vec::with_capacity(subs.len());
            for (i, s) in subs.iter().enumerate() {
                ids.push(self.node(s, &format!("{at}/{key}/{i}"))?);
            }
            match list {
                0 => n.all_of = ids,
                1 => n.any_of = ids,
                _ => n.one_of = ids,
            }
        }
        self.set.nodes[id] = n;
        Ok(id)
    }

    fn reference(&mut self, r: &str, at: &str) -> Result<usize, SchemaError> {
        let name = r
            .strip_prefix("#/components/schemas/")
            .or_else(|| r.strip_prefix("#/definitions/"))
            .ok_or_else(|| {
                err(
                    at,
                    format!("$ref '{r}' is not a local definition (#/components/schemas/… or #/definitions/…)"),
                )
            })?;
        // JSON pointer escapes in the name.
        let name = name.replace("~1", "/").replace("~0", "~");
        if let Some(&id) = self.set.by_ref.get(&name) {
            return Ok(id);
        }
        let schema = (self.definitions)(&name).ok_or_else(|| {
            err(
                at,
                format!("$ref '{r}' names no definition of the document"),
            )
        })?;
        // Reserve the node before compiling it, so a recursive reference finds it.
        let id = self.alloc(at)?;
        self.set.by_ref.insert(name.clone(), id);
        let body = self.node(&schema, r)?;
        self.set.nodes[id].reference = Some(body);
        Ok(id)
    }
}

struct Validator<'s> {
    set: &'s SchemaSet,
    options: Options,
    errors: Vec<Violation>,
    /// The JSON pointer of the value being checked.
    path: String,
}

impl Validator<'_> {
    fn fail(&mut self, message: String) {
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(Violation {
                path: self.path.clone(),
                message,
            });
        }
    }

    fn full(&self) -> bool {
        self.errors.len() >= MAX_ERRORS
    }

    /// Checks `value` without recording errors: whether it conforms.
    fn conforms(&self, id: usize, value: &Value, depth: usize) -> bool {
        let mut probe = Validator {
            set: self.set,
            options: self.options,
            errors: Vec::new(),
            path: self.path.clone(),
        };
        probe.check(id, value, depth);
        probe.errors.is_empty()
    }

    fn check(&mut self, id: usize, value: &Value, depth: usize) {
        if self.full() {
            return;
        }
        if depth > MAX_DEPTH {
            self.fail(format!("is nested more than {MAX_DEPTH} levels deep"));
            return;
        }
        let set = self.set;
        let Some(n) = set.nodes.get(id) else {
            return;
        };
        if let Some(r) = n.reference {
            self.check(r, value, depth + 1);
        }
        if value.is_null() && n.nullable {
            return;
        }
        if n.types != 0 {
            let kind = kind_of(value);
            let bit = kind_bit(kind).unwrap_or(0);
            // A number such as 2.0 is also an integer.
            let integral =
                matches!(value, Value::Number(x) if x.as_f64().is_some_and(|f| f.fract() == 0.0));
            if n.types & bit == 0 && !(n.types & INTEGER != 0 && integral) {
                self.fail(format!(
                    "is {} {kind}; expected {}",
                    if kind == "integer" || kind == "array" || kind == "object" {
                        "an"
                    } else {
                        "a"
                    },
                    type_names(n.types & !(if n.types & NUMBER != 0 { INTEGER } else { 0 }))
                ));
                return;
            }
        }
        if let Some(list) = &n.enumeration
            && !list.iter().any(|e| equal(e, value))
        {
            self.fail(if list.is_empty() {
                "is not allowed here".to_owned()
            } else {
                format!(
                    "{} is not one of {}",
                    short(value),
                    short(&Value::Array(list.clone()))
                )
            });
        }
        if let Some(c) = &n.constant
            && !equal(c, value)
        {
            self.fail(format!("{} is not {}", short(value), short(c)));
        }
        if self.options.formats
            && let Some(f) = n.format
            && !f.accepts(value)
        {
            self.fail(format!("{} is not a valid {}", short(value), f.name()));
        }
        match value {
            Value::Number(x) => {
                let f = x.as_f64().unwrap_or(0.0);
                if let Some((m, excl)) = n.minimum
                    && (f < m || (excl && f == m))
                {
                    self.fail(format!(
                        "{x} is less than {}{m}",
                        if excl { "or equal to " } else { "" }
                    ));
                }
                if let Some((m, excl)) = n.maximum
                    && (f > m || (excl && f == m))
                {
                    self.fail(format!(
                        "{x} is greater than {}{m}",
                        if excl { "or equal to " } else { "" }
                    ));
                }
            }
            Value::String(s) => {
                let len = s.chars().count() as u64;
                if let Some(m) = n.min_length
                    && len < m
                {
                    self.fail(format!(
                        "is {len} characters long; the shortest allowed is {m}"
                    ));
                }
                if let Some(m) = n.max_length
                    && len > m
                {
                    self.fail(format!(
                        "is {len} characters long; the longest allowed is {m}"
                    ));
                }
                if let Some(p) = &n.pattern
                    && !p.is_match(s)
                {
                    self.fail(format!("does not match the pattern '{}'", p.as_str()));
                }
            }
            Value::Array(items) => {
                let len = items.len() as u64;
                if let Some(m) = n.min_items
                    && len < m
                {
                    self.fail(format!("has {len} items; the fewest allowed is {m}"));
                }
                if let Some(m) = n.max_items
                    && len > m
                {
                    self.fail(format!("has {len} items; the most allowed is {m}"));
                }
                if let Some(item) = n.items {
                    for (i, v) in items.iter().enumerate() {
                        let mark = self.path.len();
                        self.path.push('/');
                        self.path.push_str(&i.to_string());
                        self.check(item, v, depth + 1);
                        self.path.truncate(mark);
                        if self.full() {
                            break;
                        }
                    }
                }
            }
            Value::Object(map) => {
                for name in &n.required {
                    if !map.contains_key(name) {
                        self.fail(format!("the required property '{name}' is missing"));
                    }
                }
                let additional = match self.options.allow_additional {
                    Some(false) => Additional::Deny,
                    Some(true) if n.additional == Additional::Deny => Additional::Any,
                    _ => n.additional,
                };
                for (key, v) in map {
                    let known = n.properties.iter().find(|(p, _)| p == key).map(|(_, s)| *s);
                    let target = match (known, additional) {
                        (Some(s), _) | (None, Additional::Schema(s)) => Some(s),
                        (None, Additional::Deny) => {
                            self.fail(format!("the property '{key}' is not allowed"));
                            None
                        }
                        (None, Additional::Any) => None,
                    };
                    if let Some(s) = target {
                        let mark = self.path.len();
                        self.path.push('/');
                        self.path
                            .push_str(&key.replace('~', "~0").replace('/', "~1"));
                        self.check(s, v, depth + 1);
                        self.path.truncate(mark);
                    }
                    if self.full() {
                        break;
                    }
                }
            }
            _ => {}
        }
        for &s in &n.all_of {
            self.check(s, value, depth + 1);
        }
        if !n.any_of.is_empty() && !n.any_of.iter().any(|&s| self.conforms(s, value, depth + 1)) {
            self.fail(format!(
                "matches none of the {} schemas of anyOf",
                n.any_of.len()
            ));
        }
        if !n.one_of.is_empty() {
            let matching = n
                .one_of
                .iter()
                .filter(|&&s| self.conforms(s, value, depth + 1))
                .count();
            if matching != 1 {
                self.fail(format!(
                    "matches {matching} of the {} schemas of oneOf; exactly one must match",
                    n.one_of.len()
                ));
            }
        }
    }
}

/// JSON equality where `1` and `1.0` are the same number.
fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// A value for an error message, cut short.
fn short(v: &Value) -> String {
    let mut s = v.to_string();
    if s.len() > 80 {
        let mut cut = 77;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests;
