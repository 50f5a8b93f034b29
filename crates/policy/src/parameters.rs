//! The parameters an operation's OpenAPI document declares (header, query and path
//! parameters, and the headers of each response), compiled once per configuration, and the
//! check of the texts a message carries for one of them: `validate-parameters` and
//! `validate-headers` read them.
//!
//! A parameter's text becomes a JSON value as its schema's type says (an integer, a number, a
//! boolean, a string, or an array split as its style says), which [`crate::schema`] then
//! checks, formats included. What was found is a [`Fault`]; the policies word it.

use std::borrow::Cow;

use gatehouse_model::snapshot::{ParameterLocation, ParameterSchema, ParameterStyle};
use serde_json::Value;

use crate::schema::{Kinds, Options, SchemaRef, SchemaSet};

/// One declared parameter or response header, compiled.
#[derive(Debug, Clone)]
pub struct Parameter {
    /// As the document writes it.
    pub name: String,
    pub location: ParameterLocation,
    pub required: bool,
    style: ParameterStyle,
    /// `None` when the document gives no schema (or it did not compile): only presence counts.
    schema: Option<SchemaRef>,
    /// What the text is read as, worked out once.
    kinds: Kinds,
    /// For arrays: what each item is read as.
    item_kinds: Kinds,
}

/// What is wrong with the texts a message carries for one parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Required, and the message does not carry it.
    Missing,
    /// A parameter that takes one value came more than once.
    Multiple,
    /// The text cannot be read as the definition's type.
    Unparsable(String),
    /// The value breaks the schema: the violations, `; `-separated.
    Nonconforming(String),
}

impl Parameter {
    /// Compiles `def`'s schema into `set`, resolving `$ref`s with `definitions`. A schema that
    /// does not compile is reported to `problem` and left out (the parameter is then checked
    /// for presence only).
    pub fn compile(
        def: &ParameterSchema,
        set: &mut SchemaSet,
        definitions: &dyn Fn(&str) -> Option<Value>,
        problem: &mut dyn FnMut(String),
    ) -> Self {
        let schema = def
            .schema
            .as_ref()
            .and_then(|s| match set.compile(s, definitions) {
                Ok(r) => Some(r),
                Err(e) => {
                    problem(format!(
                        "{} '{}': {e}",
                        location_name(def.location),
                        def.name
                    ));
                    None
                }
            });
        let kinds = schema.map(|s| set.kinds(s)).unwrap_or_default();
        let item_kinds = schema
            .and_then(|s| set.items(s))
            .map(|i| set.kinds(i))
            .unwrap_or_default();
        Self {
            name: def.name.clone(),
            location: def.location,
            required: def.required,
            style: def.style,
            schema,
            kinds,
            item_kinds,
        }
    }

    /// Whether `name` (as a message writes it) is this parameter: headers ignore case.
    pub fn is(&self, name: &str) -> bool {
        match self.location {
            ParameterLocation::Header => self.name.eq_ignore_ascii_case(name),
            _ => self.name == name,
        }
    }

    /// Whether this parameter's value is an array written as the parameter repeated.
    pub fn repeats(&self) -> bool {
        self.style == ParameterStyle::Multi && self.kinds.array()
    }

    /// Checks the texts the message carries for this parameter (one per occurrence, decoded).
    pub fn check(&self, set: &SchemaSet, texts: &[Cow<'_, str>]) -> Result<(), Fault> {
        let Some(first) = texts.first() else {
            return if self.required {
                Err(Fault::Missing)
            } else {
                Ok(())
            };
        };
        let Some(schema) = self.schema else {
            return Ok(());
        };
        let value = match self.style {
            ParameterStyle::Unchecked => return Ok(()),
            ParameterStyle::Json => {
                if texts.len() > 1 {
                    return Err(Fault::Multiple);
                }
                serde_json::from_str(first)
                    .map_err(|e| Fault::Unparsable(format!("it is not JSON: {e}")))?
            }
            _ if self.kinds.array() => self.array(texts)?,
            // An object written as text (an exploded form, deepObject) is not read here.
            _ if self.kinds.object() && !self.kinds.string() => return Ok(()),
            _ => {
                if texts.len() > 1 {
                    return Err(Fault::Multiple);
                }
                read(first, self.kinds)?
            }
        };
        let violations = set.validate_with(
            schema,
            &value,
            Options {
                allow_additional: None,
                formats: true,
            },
        );
        if violations.is_empty() {
            return Ok(());
        }
        // A scalar's violations are about the value itself: no "/" to point at it.
        let list: Vec<String> = violations
            .iter()
            .map(|v| {
                if v.path.is_empty() {
                    v.message.clone()
                } else {
                    v.to_string()
                }
            })
            .collect();
        Err(Fault::Nonconforming(list.join("; ")))
    }

    /// The items of an array value, split as the style says and each read as the items' type.
    fn array(&self, texts: &[Cow<'_, str>]) -> Result<Value, Fault> {
        let separator = match self.style {
            ParameterStyle::Ssv => ' ',
            ParameterStyle::Tsv => '\t',
            ParameterStyle::Pipes => '|',
            _ => ',',
        };
        let parts: Vec<&str> = match self.style {
            ParameterStyle::Multi => texts.iter().map(|t| t.as_ref()).collect(),
            // Header lines of a list header add to it, as HTTP has it.
            _ if self.location == ParameterLocation::Header => texts
                .iter()
                .flat_map(|t| t.split(separator))
                .map(str::trim)
                .collect(),
            _ if texts.len() > 1 => return Err(Fault::Multiple),
            _ if texts[0].is_empty() => Vec::new(),
            _ => texts[0].split(separator).collect(),
        };
        parts
            .into_iter()
            .map(|p| read(p, self.item_kinds))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array)
    }
}

/// Reads one text as the first of `kinds` it fits: an integer, a number, a boolean, else a
/// string (when strings are allowed, or nothing is said).
fn read(text: &str, kinds: Kinds) -> Result<Value, Fault> {
    if kinds.any() {
        return Ok(Value::String(text.to_owned()));
    }
    let t = text.trim();
    if kinds.integer() || kinds.number() {
        let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            let plain = t.strip_prefix('+').unwrap_or(t);
            if let Ok(i) = plain.parse::<i64>() {
                return Ok(Value::from(i));
            }
            if let Ok(u) = plain.parse::<u64>() {
                return Ok(Value::from(u));
            }
            // Larger than any 64-bit integer: the schema (and int64) judges it.
            if let Some(n) = plain
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
            {
                return Ok(Value::Number(n));
            }
        }
    }
    if kinds.number()
        && let Some(n) = t.parse::<f64>().ok().and_then(serde_json::Number::from_f64)
    {
        return Ok(Value::Number(n));
    }
    if kinds.boolean() {
        if t.eq_ignore_ascii_case("true") {
            return Ok(Value::Bool(true));
        }
        if t.eq_ignore_ascii_case("false") {
            return Ok(Value::Bool(false));
        }
    }
    if kinds.string() || kinds.array() || kinds.object() {
        return Ok(Value::String(text.to_owned()));
    }
    Err(Fault::Unparsable(format!(
        "'{}' is not {} {}",
        clip(text),
        if kinds.integer() && !kinds.number() {
            "an"
        } else {
            "a"
        },
        kinds.names()
    )))
}

/// A client's text for a message, cut short.
fn clip(text: &str) -> Cow<'_, str> {
    if text.chars().count() <= 40 {
        return Cow::Borrowed(text);
    }
    Cow::Owned(text.chars().take(37).chain("...".chars()).collect())
}

/// How Azure names a location in its messages.
pub fn location_name(l: ParameterLocation) -> &'static str {
    match l {
        ParameterLocation::Query => "query parameter",
        ParameterLocation::Header => "header",
        ParameterLocation::Path => "path parameter",
    }
}

#[cfg(test)]
mod tests;
