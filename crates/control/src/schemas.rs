//! Body schemas for `validate-content`, taken from an API's imported OpenAPI document when the
//! snapshot is compiled: per operation, the request body's schema per media type and each
//! response's schema per status and media type, plus the named schemas they refer to.
//!
//! - OpenAPI 3: `requestBody.content.<media>.schema` and `responses.<status>.content.<media>.schema`
//!   (local `$ref`s to request bodies and responses followed);
//! - Swagger 2.0: the `in: body` parameter's schema for each of `consumes` (default
//!   `application/json`), and `responses.<status>.schema` for each of `produces`.
//!
//! Schemas keep their `$ref`s; the gateway resolves them against [`Extracted::definitions`],
//! which holds only the definitions some operation reaches, so an unused part of a big document
//! does not bloat the snapshot. Past [`MAX_SCHEMA_BYTES`] in all, schemas are left out with a
//! warning, and `validate-content` then finds none for those operations.

use std::collections::BTreeMap;

use gatehouse_model::resources::Operation;
use gatehouse_model::snapshot::OperationSchemas;
use serde_json::Value;

use crate::examples::{find_operation, resolve};

/// Most schema text kept for one API.
const MAX_SCHEMA_BYTES: usize = 4 * 1024 * 1024;

/// What [`extract`] found.
#[derive(Debug, Default)]
pub struct Extracted {
    pub schemas: BTreeMap<String, OperationSchemas>,
    pub definitions: BTreeMap<String, Value>,
}

/// The named schemas of the document: OpenAPI 3's `components.schemas`, else Swagger's
/// `definitions`.
fn named(doc: &Value) -> Option<&serde_json::Map<String, Value>> {
    doc.pointer("/components/schemas")
        .or_else(|| doc.get("definitions"))
        .and_then(Value::as_object)
}

/// Collects the definition names `schema` refers to, transitively, into `out`.
fn referenced(doc: &Value, schema: &Value, out: &mut BTreeMap<String, Value>) {
    let mut stack = vec![schema];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(o) => {
                if let Some(r) = o.get("$ref").and_then(Value::as_str) {
                    let name = r
                        .strip_prefix("#/components/schemas/")
                        .or_else(|| r.strip_prefix("#/definitions/"))
                        .map(|n| n.replace("~1", "/").replace("~0", "~"));
                    if let Some(name) = name
                        && !out.contains_key(&name)
                        && let Some(def) = named(doc).and_then(|d| d.get(&name))
                    {
                        out.insert(name, def.clone());
                        stack.push(def);
                    }
                }
                stack.extend(o.values());
            }
            Value::Array(a) => stack.extend(a),
            _ => {}
        }
    }
}

fn media_types(doc: &Value, op: &Value, key: &str) -> Vec<String> {
    let list = op
        .get(key)
        .or_else(|| doc.get(key))
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    if list.is_empty() {
        vec!["application/json".to_owned()]
    } else {
        list
    }
}

/// The schemas of one operation object.
fn operation_schemas(doc: &Value, op: &Value) -> OperationSchemas {
    let mut out = OperationSchemas::default();
    // OpenAPI 3.
    if let Some(body) = op.get("requestBody").and_then(|b| resolve(doc, b))
        && let Some(Value::Object(content)) = body.get("content")
    {
        for (media, m) in content {
            if let Some(schema) = resolve(doc, m).and_then(|m| m.get("schema")) {
                out.request.insert(media.clone(), schema.clone());
            }
        }
    }
    // Swagger 2.0.
    if let Some(Value::Array(params)) = op.get("parameters") {
        for p in params.iter().filter_map(|p| resolve(doc, p)) {
            if p.get("in").and_then(Value::as_str) == Some("body")
                && let Some(schema) = p.get("schema")
            {
                for media in media_types(doc, op, "consumes") {
                    out.request.insert(media, schema.clone());
                }
            }
        }
    }
    if let Some(Value::Object(responses)) = op.get("responses") {
        for (status, response) in responses {
            let Some(response) = resolve(doc, response) else {
                continue;
            };
            let mut by_media = BTreeMap::new();
            if let Some(Value::Object(content)) = response.get("content") {
                for (media, m) in content {
                    if let Some(schema) = resolve(doc, m).and_then(|m| m.get("schema")) {
                        by_media.insert(media.clone(), schema.clone());
                    }
                }
            }
            if let Some(schema) = response.get("schema") {
                for media in media_types(doc, op, "produces") {
                    by_media.insert(media, schema.clone());
                }
            }
            if !by_media.is_empty() {
                out.responses.insert(status.clone(), by_media);
            }
        }
    }
    out
}

/// Schemas by operation id, for the operations of `doc` that have any, and the definitions
/// they use. `api` names the API in the warning when the schemas are too large to keep.
pub fn extract(api: &str, doc: &Value, operations: &[Operation]) -> Extracted {
    let mut out = Extracted::default();
    for op in operations {
        let Some(found) = find_operation(doc, &op.method, &op.url_template) else {
            continue;
        };
        let schemas = operation_schemas(doc, found);
        if schemas.is_empty() {
            continue;
        }
        for s in schemas
            .request
            .values()
            .chain(schemas.responses.values().flat_map(BTreeMap::values))
        {
            referenced(doc, s, &mut out.definitions);
        }
        out.schemas.insert(op.id.clone(), schemas);
    }
    let size = serde_json::to_string(&out.schemas).map_or(0, |s| s.len())
        + serde_json::to_string(&out.definitions).map_or(0, |s| s.len());
    if size > MAX_SCHEMA_BYTES {
        tracing::warn!(
            api,
            bytes = size,
            "the imported document's body schemas are larger than {MAX_SCHEMA_BYTES} bytes; validate-content will find none for this API"
        );
        return Extracted::default();
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    use crate::examples::tests::op;

    #[test]
    fn openapi3_request_and_response_schemas_with_their_definitions() {
        let doc = json!({
            "openapi": "3.0.1",
            "paths": {"/pets": {"post": {
                "requestBody": {"$ref": "#/components/requestBodies/NewPet"},
                "responses": {"201": {"content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Pet"}}}}}
            }}},
            "components": {
                "requestBodies": {"NewPet": {"content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/NewPet"}}}}},
                "schemas": {
                    "NewPet": {"type": "object", "properties": {"tag": {"$ref": "#/components/schemas/Tag"}}},
                    "Pet": {"type": "object"},
                    "Tag": {"type": "string"},
                    "Unused": {"type": "string"}
                }
            }
        });
        let got = extract(
            "pets",
            &doc,
            &[op("add", "POST", "/pets"), op("other", "GET", "/x")],
        );
        assert_eq!(
            got.schemas["add"].request["application/json"],
            json!({"$ref": "#/components/schemas/NewPet"})
        );
        assert_eq!(
            got.schemas["add"].responses["201"]["application/json"],
            json!({"$ref": "#/components/schemas/Pet"})
        );
        assert!(!got.schemas.contains_key("other"));
        let names: Vec<&str> = got.definitions.keys().map(String::as_str).collect();
        assert_eq!(names, ["NewPet", "Pet", "Tag"]);
    }

    #[test]
    fn swagger2_body_parameter_and_response_schemas() {
        let doc = json!({
            "swagger": "2.0",
            "consumes": ["application/json"],
            "paths": {"/pets": {"post": {
                "parameters": [{"in": "body", "name": "pet", "schema": {"$ref": "#/definitions/Pet"}}],
                "responses": {"200": {"schema": {"type": "object"}}}
            }}},
            "definitions": {"Pet": {"type": "object", "required": ["name"]}}
        });
        let got = extract("pets", &doc, &[op("add", "POST", "/pets")]);
        assert_eq!(
            got.schemas["add"].request["application/json"],
            json!({"$ref": "#/definitions/Pet"})
        );
        assert_eq!(
            got.schemas["add"].responses["200"]["application/json"],
            json!({"type": "object"})
        );
        assert!(got.definitions.contains_key("Pet"));
    }
}
