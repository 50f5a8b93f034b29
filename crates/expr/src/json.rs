//! `JToken` for expressions: an immutable, cheaply cloned JSON tree that keeps property order
//! (as Newtonsoft's `JObject` does, and unlike serde_json's default map), parsed with serde_json
//! and printed the way Newtonsoft prints (`ToString()` is indented, `Formatting.None` is compact).

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use crate::limits::{MAX_DEPTH, MAX_VALUES};

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// A JSON value (`JToken`: `JObject`, `JArray` or `JValue`). Clones share the tree.
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer that fits `i64` (Newtonsoft `JTokenType.Integer`).
    Int(i64),
    /// Any other number (`JTokenType.Float`).
    Float(f64),
    /// A string.
    String(Arc<str>),
    /// An array.
    Array(Arc<Vec<Json>>),
    /// An object, properties in document order.
    Object(Arc<JsonObject>),
}

/// The properties of a JSON object, in insertion order. Keys are unique (a repeated key in a
/// parsed document replaces the earlier value, as `JObject.Parse` does).
///
/// Objects come from request bodies, so lookups must not be linear in the number of keys
/// (parsing would be quadratic): past [`INDEXED_FROM`] properties a hash index (std's
/// `HashMap`, whose keys an attacker cannot make collide) maps each key to its position.
#[derive(Clone, Debug, Default)]
pub struct JsonObject {
    entries: Vec<(Arc<str>, Json)>,
    index: Option<HashMap<Arc<str>, usize>>,
}

/// Objects smaller than this are searched linearly: no index to build or carry.
const INDEXED_FROM: usize = 16;

impl PartialEq for JsonObject {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

impl JsonObject {
    /// An empty object.
    pub fn new() -> Self {
        Self::default()
    }

    fn position(&self, key: &str) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(key).copied(),
            None => self.entries.iter().position(|(k, _)| &**k == key),
        }
    }

    /// The value of property `key` (ordinal, case-sensitive, like `JObject[key]`).
    pub fn get(&self, key: &str) -> Option<&Json> {
        self.position(key)
            .and_then(|i| self.entries.get(i))
            .map(|(_, v)| v)
    }

    /// The value of property `key`, mutably.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Json> {
        self.position(key)
            .and_then(|i| self.entries.get_mut(i))
            .map(|(_, v)| v)
    }

    /// Sets property `key`, keeping its position if it exists.
    pub fn insert(&mut self, key: impl Into<Arc<str>>, value: Json) {
        let key = key.into();
        if let Some(slot) = self.position(&key).and_then(|i| self.entries.get_mut(i)) {
            slot.1 = value;
            return;
        }
        if let Some(index) = &mut self.index {
            index.insert(key.clone(), self.entries.len());
        }
        self.entries.push((key, value));
        if self.index.is_none() && self.entries.len() >= INDEXED_FROM {
            self.reindex();
        }
    }

    /// Removes property `key`; true when it was there.
    pub fn remove(&mut self, key: &str) -> bool {
        let Some(i) = self.position(key) else {
            return false;
        };
        self.entries.remove(i);
        if self.index.is_some() {
            self.reindex();
        }
        true
    }

    fn reindex(&mut self) {
        self.index = (self.entries.len() >= INDEXED_FROM).then(|| {
            self.entries
                .iter()
                .enumerate()
                .map(|(i, (k, _))| (k.clone(), i))
                .collect()
        });
    }

    /// Properties in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Json)> {
        self.entries.iter().map(|(k, v)| (&**k, v))
    }

    /// Number of properties.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no properties.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Json {
    /// Parses JSON text (`JToken.Parse`), within [`MAX_DEPTH`] and [`MAX_VALUES`].
    pub fn parse(text: &str) -> Result<Self, JsonError> {
        Self::from_slice(text.as_bytes())
    }

    /// Parses JSON bytes (a message body), within [`MAX_DEPTH`] and [`MAX_VALUES`]: the work
    /// is linear in the input and the tree is shallow enough for every recursive walk of it
    /// (printing, comparing, converting, dropping) to stay well inside a thread's stack.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, JsonError> {
        let reader = Reader::default();
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let parsed = Seed {
            reader: &reader,
            depth: 0,
        }
        .deserialize(&mut de)
        .and_then(|json| de.end().map(|()| json));
        parsed.map_err(|e| match reader.over.take() {
            Some(over) => over,
            None => JsonError::Syntax(e),
        })
    }

    /// Converts from a serde_json value (keys in that value's order).
    pub fn from_serde(value: &serde_json::Value) -> Self {
        match value {
            serde_json::Value::Null => Self::Null,
            serde_json::Value::Bool(b) => Self::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Self::Int(i),
                None => Self::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => Self::String(s.as_str().into()),
            serde_json::Value::Array(items) => {
                Self::Array(Arc::new(items.iter().map(Self::from_serde).collect()))
            }
            serde_json::Value::Object(map) => {
                let mut obj = JsonObject::new();
                for (k, v) in map {
                    obj.insert(k.as_str(), Self::from_serde(v));
                }
                Self::Object(Arc::new(obj))
            }
        }
    }

    /// Converts to a serde_json value (property order follows serde_json's map).
    pub fn to_serde(&self) -> serde_json::Value {
        match self {
            Self::Null => serde_json::Value::Null,
            Self::Bool(b) => serde_json::Value::Bool(*b),
            Self::Int(i) => serde_json::Value::from(*i),
            Self::Float(f) => serde_json::Number::from_f64(*f)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
            Self::String(s) => serde_json::Value::String(s.to_string()),
            Self::Array(items) => {
                serde_json::Value::Array(items.iter().map(Self::to_serde).collect())
            }
            Self::Object(obj) => serde_json::Value::Object(
                obj.iter()
                    .map(|(k, v)| (k.to_owned(), v.to_serde()))
                    .collect(),
            ),
        }
    }

    /// The .NET type name of this token (`JObject`, `JArray`, `JValue`).
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Object(_) => "JObject",
            Self::Array(_) => "JArray",
            _ => "JValue",
        }
    }

    /// The JSON text, as Newtonsoft writes it: `indented` is `Formatting.Indented` (two spaces,
    /// `"key": value`), otherwise `Formatting.None`.
    pub fn to_json_string(&self, indented: bool) -> String {
        let mut out = String::new();
        self.write(&mut out, indented.then_some(0));
        out
    }

    /// What `JToken.ToString()` returns: a string value's text without quotes, a number or
    /// boolean as .NET formats it (`True`), nothing for null, indented JSON for containers.
    pub fn to_display_string(&self) -> String {
        match self {
            Self::Null => String::new(),
            Self::Bool(true) => "True".to_owned(),
            Self::Bool(false) => "False".to_owned(),
            Self::Int(i) => i.to_string(),
            Self::Float(f) => super::value::format_double(*f),
            Self::String(s) => s.to_string(),
            Self::Array(_) | Self::Object(_) => self.to_json_string(true),
        }
    }

    fn write(&self, out: &mut String, indent: Option<usize>) {
        match self {
            Self::Null => out.push_str("null"),
            Self::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Self::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Self::Float(f) => out.push_str(&json_double(*f)),
            Self::String(s) => write_json_string(out, s),
            Self::Array(items) => {
                if items.is_empty() {
                    out.push_str("[]");
                    return;
                }
                out.push('[');
                for (n, item) in items.iter().enumerate() {
                    if n > 0 {
                        out.push(',');
                    }
                    newline(out, indent.map(|d| d + 1));
                    item.write(out, indent.map(|d| d + 1));
                }
                newline(out, indent);
                out.push(']');
            }
            Self::Object(obj) => {
                if obj.is_empty() {
                    out.push_str("{}");
                    return;
                }
                out.push('{');
                for (n, (k, v)) in obj.iter().enumerate() {
                    if n > 0 {
                        out.push(',');
                    }
                    newline(out, indent.map(|d| d + 1));
                    write_json_string(out, k);
                    out.push(':');
                    if indent.is_some() {
                        out.push(' ');
                    }
                    v.write(out, indent.map(|d| d + 1));
                }
                newline(out, indent);
                out.push('}');
            }
        }
    }
}

/// Newtonsoft ends lines with `Environment.NewLine`; the self-hosted (Linux) gateway's is `\n`.
fn newline(out: &mut String, indent: Option<usize>) {
    if let Some(depth) = indent {
        out.push('\n');
        for _ in 0..depth {
            out.push_str("  ");
        }
    }
}

/// A double in JSON as Newtonsoft writes it: round-trip digits, and `.0` on integral values.
fn json_double(f: f64) -> String {
    let s = super::value::format_double(f);
    if s.contains(['.', 'E', 'N', 'I']) {
        s
    } else {
        s + ".0"
    }
}

/// Escapes like Newtonsoft's default `StringEscapeHandling`: quotes, backslash, control chars.
pub(crate) fn write_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || matches!(c, '\u{85}' | '\u{2028}' | '\u{2029}') => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Why JSON text was not read.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// Not JSON.
    #[error("{0}")]
    Syntax(serde_json::Error),
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("the JSON nests deeper than {MAX_DEPTH} levels, the most this gateway reads")]
    TooDeep,
    /// More than [`MAX_VALUES`] values.
    #[error("the JSON holds more than {MAX_VALUES} values, the most this gateway reads")]
    TooManyValues,
}

impl JsonError {
    /// True when the text was refused for its size or shape, not its syntax.
    pub fn over_limit(&self) -> bool {
        !matches!(self, Self::Syntax(_))
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let reader = Reader::default();
        Seed {
            reader: &reader,
            depth: 0,
        }
        .deserialize(deserializer)
    }
}

/// What one parse has counted, and which limit stopped it (serde errors carry only text).
#[derive(Default)]
struct Reader {
    values: Cell<usize>,
    over: Cell<Option<JsonError>>,
}

impl Reader {
    fn refuse<E: de::Error>(&self, why: JsonError) -> E {
        let e = E::custom(&why);
        self.over.set(Some(why));
        e
    }

    fn count<E: de::Error>(&self) -> Result<(), E> {
        let n = self.values.get() + 1;
        self.values.set(n);
        if n > MAX_VALUES {
            return Err(self.refuse(JsonError::TooManyValues));
        }
        Ok(())
    }
}

/// Reads one value at `depth` (the number of containers around it).
#[derive(Clone, Copy)]
struct Seed<'r> {
    reader: &'r Reader,
    depth: usize,
}

impl Seed<'_> {
    fn inner<E: de::Error>(self) -> Result<Self, E> {
        if self.depth >= MAX_DEPTH {
            return Err(self.reader.refuse(JsonError::TooDeep));
        }
        Ok(Self {
            reader: self.reader,
            depth: self.depth + 1,
        })
    }
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Json;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Json, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Json;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Json, E> {
        self.reader.count()?;
        Ok(Json::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Json, E> {
        self.reader.count()?;
        Ok(Json::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Json, E> {
        self.reader.count()?;
        Ok(i64::try_from(v).map_or(Json::Float(v as f64), Json::Int))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Json, E> {
        self.reader.count()?;
        Ok(Json::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Json, E> {
        self.reader.count()?;
        Ok(Json::String(v.into()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Json, E> {
        self.reader.count()?;
        Ok(Json::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Json, E> {
        self.reader.count()?;
        Ok(Json::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        self.reader.count()?;
        let inner = self.inner()?;
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element_seed(inner)? {
            items.push(item);
        }
        Ok(Json::Array(Arc::new(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        self.reader.count()?;
        let inner = self.inner()?;
        let mut obj = JsonObject::new();
        while let Some(k) = map.next_key_seed(Key)? {
            let v = map.next_value_seed(inner)?;
            obj.insert(k, v);
        }
        Ok(Json::Object(Arc::new(obj)))
    }
}

/// A property name, read straight into the shared string the object keeps.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Arc<str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Arc<str>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Arc<str>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a property name")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Arc<str>, E> {
        Ok(v.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{MAX_DEPTH, MAX_VALUES};

    #[test]
    fn keeps_order_and_prints_like_newtonsoft() {
        let j = Json::parse(r#"{"b":1,"a":[1,2.0,"x"],"e":{},"n":null}"#).unwrap();
        assert_eq!(
            j.to_json_string(false),
            r#"{"b":1,"a":[1,2.0,"x"],"e":{},"n":null}"#
        );
        assert_eq!(
            j.to_json_string(true),
            "{\n  \"b\": 1,\n  \"a\": [\n    1,\n    2.0,\n    \"x\"\n  ],\n  \"e\": {},\n  \"n\": null\n}"
        );
    }

    #[test]
    fn display_strings() {
        assert_eq!(
            Json::parse("\"a\\\"b\"").unwrap().to_display_string(),
            "a\"b"
        );
        assert_eq!(Json::Float(12.5).to_display_string(), "12.5");
        assert_eq!(Json::Float(5.0).to_display_string(), "5");
        assert_eq!(Json::Bool(true).to_display_string(), "True");
        assert_eq!(Json::Null.to_display_string(), "");
    }

    #[test]
    fn duplicate_keys_replace() {
        let j = Json::parse(r#"{"a":1,"b":2,"a":3}"#).unwrap();
        assert_eq!(j.to_json_string(false), r#"{"a":3,"b":2}"#);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let text = "[".repeat(10_000);
        assert!(matches!(Json::parse(&text), Err(JsonError::TooDeep)));
        let deepest = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(Json::parse(&deepest).is_ok());
        let over = format!(
            "{}1{}",
            "[".repeat(MAX_DEPTH + 1),
            "]".repeat(MAX_DEPTH + 1)
        );
        let e = Json::parse(&over).unwrap_err();
        assert!(
            e.over_limit() && e.to_string().contains("deeper than 64"),
            "{e}"
        );
        let objects = format!(
            "{}{}",
            "{\"a\":".repeat(MAX_DEPTH + 1),
            "}".repeat(MAX_DEPTH + 1)
        );
        assert!(matches!(Json::parse(&objects), Err(JsonError::TooDeep)));
        assert!(!Json::parse("{").unwrap_err().over_limit());
    }

    #[test]
    fn the_number_of_values_is_bounded() {
        let fits = format!("[{}0]", "0,".repeat(MAX_VALUES - 2));
        assert!(Json::parse(&fits).is_ok());
        let over = format!("[{}0]", "0,".repeat(MAX_VALUES));
        assert!(matches!(Json::parse(&over), Err(JsonError::TooManyValues)));
    }

    #[test]
    fn large_objects_keep_order_and_unique_keys() {
        let n = 100_000;
        let text = format!(
            "{{{},\"k7\":\"again\"}}",
            (0..n)
                .map(|i| format!("\"k{i}\":{i}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let Json::Object(obj) = Json::parse(&text).unwrap() else {
            panic!("not an object")
        };
        assert_eq!(obj.len(), n);
        assert_eq!(obj.get("k7"), Some(&Json::String("again".into())));
        assert_eq!(obj.get("k99999"), Some(&Json::Int(99_999)));
        assert_eq!(obj.iter().nth(8).map(|(k, _)| k), Some("k8"));
        let mut obj = (*obj).clone();
        assert!(obj.remove("k0"));
        assert!(!obj.remove("k0"));
        assert_eq!(obj.get("k1"), Some(&Json::Int(1)));
        assert_eq!(obj.iter().next().map(|(k, _)| k), Some("k1"));
        obj.insert("k1", Json::Null);
        assert_eq!(obj.iter().next(), Some(("k1", &Json::Null)));
        assert_eq!(obj.len(), n - 1);
    }
}
