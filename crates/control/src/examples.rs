//! Response examples for `mock-response`, taken from an API's imported OpenAPI document when the
//! snapshot is compiled.
//!
//! For each operation (found in the document by method and path) and each response status:
//! - OpenAPI 3: every media type of `content`, with its `example`, else the first of its
//!   `examples` (`value`), else its schema's `example`;
//! - Swagger 2.0: the response's `examples`, by media type.
//!
//! Local `$ref`s (`#/components/responses/…`, `#/components/examples/…`) are followed. JSON
//! media types get the example as JSON text; others get a string example as written. Examples
//! larger than [`MAX_EXAMPLE`] are left out, so a huge document cannot bloat the snapshot.

use std::collections::BTreeMap;

use gatehouse_model::resources::Operation;
use gatehouse_model::snapshot::{ResponseExample, ResponseExamples};
use serde_json::Value;

/// Largest example body kept.
const MAX_EXAMPLE: usize = 256 * 1024;
/// Most `$ref` hops followed for one value.
const MAX_HOPS: usize = 8;

/// Follows local `$ref`s from `v` within `doc`.
pub(crate) fn resolve<'d>(doc: &'d Value, mut v: &'d Value) -> Option<&'d Value> {
    for _ in 0..MAX_HOPS {
        let Some(r) = v.get("$ref").and_then(Value::as_str) else {
            return Some(v);
        };
        let pointer = r.strip_prefix('#')?;
        v = doc.pointer(pointer)?;
    }
    None
}

fn is_json(media: &str) -> bool {
    let m = media
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    m == "application/json" || m.ends_with("+json") || m == "text/json"
}

fn body(media: &str, example: &Value) -> Option<String> {
    let text = match example {
        Value::String(s) if !is_json(media) => s.clone(),
        other => serde_json::to_string(other).ok()?,
    };
    (text.len() <= MAX_EXAMPLE).then_some(text)
}

/// The example of one OpenAPI 3 media type object.
fn media_example<'d>(doc: &'d Value, media: &'d Value) -> Option<&'d Value> {
    let media = resolve(doc, media)?;
    if let Some(e) = media.get("example") {
        return Some(e);
    }
    if let Some(Value::Object(examples)) = media.get("examples") {
        for e in examples.values() {
            if let Some(v) = resolve(doc, e).and_then(|e| e.get("value")) {
                return Some(v);
            }
        }
    }
    resolve(doc, media.get("schema")?)?.get("example")
}

fn response_examples(doc: &Value, response: &Value) -> Vec<ResponseExample> {
    let Some(response) = resolve(doc, response) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    // OpenAPI 3.
    if let Some(Value::Object(content)) = response.get("content") {
        for (media, m) in content {
            if let Some(b) = media_example(doc, m).and_then(|e| body(media, e)) {
                out.push(ResponseExample {
                    content_type: media.clone(),
                    body: b,
                });
            }
        }
    }
    // Swagger 2.0.
    if let Some(Value::Object(examples)) = response.get("examples") {
        for (media, e) in examples {
            if let Some(b) = body(media, e) {
                out.push(ResponseExample {
                    content_type: media.clone(),
                    body: b,
                });
            }
        }
    }
    out
}

/// The operation of `doc` at `method` and `url_template` (as the import wrote it).
pub(crate) fn find_operation<'d>(
    doc: &'d Value,
    method: &str,
    url_template: &str,
) -> Option<&'d Value> {
    find_path_operation(doc, method, url_template).map(|(_, op)| op)
}

/// The path item and the operation of `doc` at `method` and `url_template`.
pub(crate) fn find_path_operation<'d>(
    doc: &'d Value,
    method: &str,
    url_template: &str,
) -> Option<(&'d Value, &'d Value)> {
    let Value::Object(paths) = doc.get("paths")? else {
        return None;
    };
    let method = method.to_ascii_lowercase();
    paths.iter().find_map(|(path, item)| {
        let template = if path.len() > 1 {
            path.strip_suffix('/').unwrap_or(path)
        } else {
            path.as_str()
        };
        if template != url_template {
            return None;
        }
        let item = resolve(doc, item)?;
        Some((item, item.get(&method)?))
    })
}

/// Examples by operation id, for the operations of `doc` that have any.
pub fn extract(doc: &Value, operations: &[Operation]) -> BTreeMap<String, ResponseExamples> {
    let mut out = BTreeMap::new();
    for op in operations {
        let Some(found) = find_operation(doc, &op.method, &op.url_template) else {
            continue;
        };
        let Some(Value::Object(responses)) = found.get("responses") else {
            continue;
        };
        let mut examples = ResponseExamples::new();
        for (status, response) in responses {
            let list = response_examples(doc, response);
            if !list.is_empty() {
                examples.insert(status.clone(), list);
            }
        }
        if !examples.is_empty() {
            out.insert(op.id.clone(), examples);
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::json;

    use super::*;

    /// An operation of `method` and `template`, named `id`, for the extractors' tests.
    pub(crate) fn op(id: &str, method: &str, template: &str) -> Operation {
        Operation {
            id: id.into(),
            display_name: id.into(),
            method: method.into(),
            url_template: template.into(),
            template_parameters: vec![],
            description: None,
        }
    }

    #[test]
    fn openapi3_examples_in_every_form() {
        let doc = json!({
            "openapi": "3.0.1",
            "paths": {
                "/pets/{id}/": {
                    "get": {"responses": {
                        "200": {"content": {
                            "application/json": {"example": {"id": 1, "name": "Rex"}},
                            "text/plain": {"examples": {"one": {"value": "Rex"}}}
                        }},
                        "404": {"$ref": "#/components/responses/NotFound"},
                        "500": {"description": "no content"}
                    }}
                },
                "/pets": {"$ref": "#/components/pathItems/pets"}
            },
            "components": {
                "responses": {"NotFound": {"content": {"application/problem+json": {
                    "examples": {"x": {"$ref": "#/components/examples/missing"}}
                }}}},
                "examples": {"missing": {"value": {"title": "not found"}}},
                "pathItems": {"pets": {"post": {"responses": {"201": {"content": {
                    "application/json": {"schema": {"type": "object", "example": {"created": true}}}
                }}}}}}
            }
        });
        let got = extract(
            &doc,
            &[
                op("get-pet", "GET", "/pets/{id}"),
                op("add-pet", "POST", "/pets"),
                op("manual", "DELETE", "/pets"),
            ],
        );
        let ex = |ct: &str, b: &str| ResponseExample {
            content_type: ct.into(),
            body: b.into(),
        };
        assert_eq!(
            got["get-pet"]["200"],
            [
                ex("application/json", r#"{"id":1,"name":"Rex"}"#),
                ex("text/plain", "Rex")
            ]
        );
        assert_eq!(
            got["get-pet"]["404"],
            [ex("application/problem+json", r#"{"title":"not found"}"#)]
        );
        assert!(!got["get-pet"].contains_key("500"));
        assert_eq!(
            got["add-pet"]["201"],
            [ex("application/json", r#"{"created":true}"#)]
        );
        assert!(!got.contains_key("manual"));
    }

    #[test]
    fn swagger2_examples() {
        let doc = json!({
            "swagger": "2.0",
            "paths": {"/": {"get": {"responses": {"200": {"examples": {
                "application/json": {"ok": true},
                "text/plain": "fine"
            }}}}}}
        });
        let got = extract(&doc, &[op("root", "GET", "/")]);
        assert_eq!(got["root"]["200"].len(), 2);
        assert_eq!(got["root"]["200"][0].body, r#"{"ok":true}"#);
        assert_eq!(got["root"]["200"][1].body, "fine");
    }

    #[test]
    fn ref_loops_and_huge_examples_are_left_out() {
        let doc = json!({
            "paths": {"/a": {"get": {"responses": {
                "200": {"$ref": "#/components/responses/a"},
                "201": {"content": {"text/plain": {"example": "x".repeat(MAX_EXAMPLE + 1)}}}
            }}}},
            "components": {"responses": {"a": {"$ref": "#/components/responses/a"}}}
        });
        assert!(extract(&doc, &[op("a", "GET", "/a")]).is_empty());
    }
}
