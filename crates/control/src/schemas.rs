//! What an API's imported OpenAPI document declares of each operation, taken from it when the
//! snapshot is compiled, for the validation policies: the request body's schema per media
//! type and each response's schema per status and media type (`validate-content`), the
//! header, query and path parameters (`validate-parameters`), and every declared response
//! status with its headers (`validate-status-code`, `validate-headers`), plus the named
//! schemas they refer to.
//!
//! - OpenAPI 3: `requestBody.content.<media>.schema`, `responses.<status>.content.<media>.schema`
//!   and `responses.<status>.headers`, `parameters` of the path item and of the operation (the
//!   operation's win), each with its `schema` (or `content`), `style` and `explode` (local
//!   `$ref`s to request bodies, responses, parameters and headers followed). As OpenAPI 3
//!   says, header parameters named `Accept`, `Content-Type` or `Authorization` and a response
//!   header named `Content-Type` are ignored;
//! - Swagger 2.0: the `in: body` parameter's schema for each of `consumes` (default
//!   `application/json`), `responses.<status>.schema` for each of `produces`, and the
//!   parameters and response headers whose `type`, `format`, `enum`, bounds and
//!   `collectionFormat` make up their schema. `formData` parameters are left to the body.
//!
//! Schemas keep their `$ref`s; the gateway resolves them against [`Extracted::definitions`],
//! which holds only the definitions some operation reaches, so an unused part of a big document
//! does not bloat the snapshot. Past [`MAX_SCHEMA_BYTES`] in all, schemas are left out with a
//! warning, and the validation policies then find nothing to check for that API's operations.

use std::collections::BTreeMap;

use gatehouse_model::resources::Operation;
use gatehouse_model::snapshot::{
    OperationSchemas, ParameterLocation, ParameterSchema, ParameterStyle,
};
use serde_json::{Map, Value};

use crate::examples::{find_path_operation, resolve};

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

/// The keywords of a Swagger 2.0 parameter, header or items object that describe its value.
const INLINE_KEYWORDS: [&str; 15] = [
    "type",
    "format",
    "items",
    "enum",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "uniqueItems",
    "multipleOf",
];

/// The schema a Swagger 2.0 parameter or header writes inline, as JSON Schema.
fn inline_schema(p: &Value) -> Option<Value> {
    let obj = p.as_object()?;
    let mut out = Map::new();
    for key in INLINE_KEYWORDS {
        if let Some(v) = obj.get(key) {
            let v = match (key, inline_schema(v)) {
                ("items", Some(items)) => items,
                _ => v.clone(),
            };
            out.insert(key.to_owned(), v);
        }
    }
    (!out.is_empty()).then_some(Value::Object(out))
}

fn is_openapi3(doc: &Value) -> bool {
    doc.get("openapi").is_some()
}

/// Whether `schema` (after a local `$ref`) is an object schema.
fn is_object_schema(doc: &Value, schema: &Value) -> bool {
    resolve(doc, schema)
        .and_then(|s| s.get("type"))
        .and_then(Value::as_str)
        == Some("object")
}

/// A parameter or header object (already resolved) as the gateway checks it; `None` for
/// what no validation policy looks at (body, form data, cookies).
fn parameter(
    doc: &Value,
    p: &Value,
    location: Option<ParameterLocation>,
) -> Option<ParameterSchema> {
    let location = match location {
        Some(l) => l,
        None => match p.get("in").and_then(Value::as_str)? {
            "query" => ParameterLocation::Query,
            "header" => ParameterLocation::Header,
            "path" => ParameterLocation::Path,
            _ => return None,
        },
    };
    let name = p.get("name").and_then(Value::as_str).unwrap_or_default();
    let required = location == ParameterLocation::Path
        || p.get("required").and_then(Value::as_bool) == Some(true);
    let mut param = ParameterSchema {
        name: name.to_owned(),
        location,
        required,
        schema: None,
        style: ParameterStyle::Csv,
    };
    if let Some(schema) = p.get("schema") {
        // OpenAPI 3.
        let style = p.get("style").and_then(Value::as_str).unwrap_or(
            if location == ParameterLocation::Query {
                "form"
            } else {
                "simple"
            },
        );
        let explode = p
            .get("explode")
            .and_then(Value::as_bool)
            .unwrap_or(style == "form");
        param.style = match style {
            _ if is_object_schema(doc, schema) => ParameterStyle::Unchecked,
            "form" if explode => ParameterStyle::Multi,
            "form" | "simple" => ParameterStyle::Csv,
            "spaceDelimited" => ParameterStyle::Ssv,
            "pipeDelimited" => ParameterStyle::Pipes,
            _ => ParameterStyle::Unchecked,
        };
        param.schema = Some(schema.clone());
    } else if let Some(Value::Object(content)) = p.get("content") {
        // OpenAPI 3, the value as a document of one media type.
        let (media, m) = content.iter().next()?;
        let media = media.to_ascii_lowercase();
        if media == "application/json" || media.ends_with("+json") {
            param.style = ParameterStyle::Json;
            param.schema = resolve(doc, m).and_then(|m| m.get("schema")).cloned();
        } else {
            param.style = ParameterStyle::Unchecked;
        }
    } else {
        // Swagger 2.0.
        param.style = match p.get("collectionFormat").and_then(Value::as_str) {
            Some("ssv") => ParameterStyle::Ssv,
            Some("tsv") => ParameterStyle::Tsv,
            Some("pipes") => ParameterStyle::Pipes,
            Some("multi") if location == ParameterLocation::Query => ParameterStyle::Multi,
            _ => ParameterStyle::Csv,
        };
        param.schema = inline_schema(p);
    }
    Some(param)
}

/// The header, query and path parameters of an operation: the path item's, replaced by the
/// operation's of the same name and location.
fn operation_parameters(doc: &Value, item: &Value, op: &Value) -> Vec<ParameterSchema> {
    let mut out: Vec<ParameterSchema> = Vec::new();
    let lists = [item.get("parameters"), op.get("parameters")];
    for list in lists.into_iter().flatten().filter_map(Value::as_array) {
        for p in list.iter().filter_map(|p| resolve(doc, p)) {
            let Some(p) = parameter(doc, p, None) else {
                continue;
            };
            let ignored = is_openapi3(doc)
                && p.location == ParameterLocation::Header
                && ["accept", "content-type", "authorization"]
                    .iter()
                    .any(|h| p.name.eq_ignore_ascii_case(h));
            if ignored || p.name.is_empty() {
                continue;
            }
            let same = |q: &ParameterSchema| {
                q.location == p.location
                    && if p.location == ParameterLocation::Header {
                        q.name.eq_ignore_ascii_case(&p.name)
                    } else {
                        q.name == p.name
                    }
            };
            match out.iter_mut().find(|q| same(q)) {
                Some(q) => *q = p,
                None => out.push(p),
            }
        }
    }
    out
}

/// The headers one response declares.
fn response_headers(doc: &Value, response: &Value) -> Vec<ParameterSchema> {
    let Some(Value::Object(headers)) = response.get("headers") else {
        return Vec::new();
    };
    headers
        .iter()
        .filter(|(name, _)| !(is_openapi3(doc) && name.eq_ignore_ascii_case("content-type")))
        .filter_map(|(name, h)| {
            let h = resolve(doc, h)?;
            let mut p = parameter(doc, h, Some(ParameterLocation::Header))?;
            p.name.clone_from(name);
            Some(p)
        })
        .collect()
}

/// What one operation object (in its path item) declares.
fn operation_schemas(doc: &Value, item: &Value, op: &Value) -> OperationSchemas {
    let mut out = OperationSchemas {
        parameters: operation_parameters(doc, item, op),
        ..OperationSchemas::default()
    };
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
            if status.starts_with("x-") {
                continue;
            }
            let Some(response) = resolve(doc, response) else {
                continue;
            };
            out.statuses
                .insert(status.clone(), response_headers(doc, response));
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

/// What `doc` declares of each of `operations` it describes, by operation id, and the
/// definitions the schemas use. `api` names the API in the warning when the schemas are too
/// large to keep.
pub fn extract(api: &str, doc: &Value, operations: &[Operation]) -> Extracted {
    let mut out = Extracted::default();
    for op in operations {
        let Some((item, found)) = find_path_operation(doc, &op.method, &op.url_template) else {
            continue;
        };
        let schemas = operation_schemas(doc, item, found);
        let parameter_schemas = schemas
            .parameters
            .iter()
            .chain(schemas.statuses.values().flatten())
            .filter_map(|p| p.schema.as_ref());
        for s in schemas
            .request
            .values()
            .chain(schemas.responses.values().flat_map(BTreeMap::values))
            .chain(parameter_schemas)
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
            "the imported document's schemas are larger than {MAX_SCHEMA_BYTES} bytes; the validation policies will find none for this API"
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

    #[test]
    fn openapi3_parameters_merge_path_and_operation_levels() {
        let doc = json!({
            "openapi": "3.0.1",
            "paths": {"/pets/{id}": {
                "parameters": [
                    {"$ref": "#/components/parameters/Id"},
                    {"name": "limit", "in": "query", "schema": {"type": "integer"}}
                ],
                "get": {
                    "parameters": [
                        {"name": "limit", "in": "query", "required": true,
                         "schema": {"type": "integer", "maximum": 50}},
                        {"name": "tags", "in": "query", "explode": false,
                         "schema": {"type": "array", "items": {"type": "string"}}},
                        {"name": "ids", "in": "query",
                         "schema": {"type": "array", "items": {"type": "integer"}}},
                        {"name": "X-Trace", "in": "header",
                         "schema": {"$ref": "#/components/schemas/Trace"}},
                        {"name": "filter", "in": "query",
                         "content": {"application/json": {"schema": {"type": "object"}}}},
                        {"name": "Accept", "in": "header", "schema": {"type": "string"}},
                        {"name": "session", "in": "cookie", "schema": {"type": "string"}}
                    ],
                    "responses": {
                        "200": {"description": "ok", "headers": {
                            "X-Rate": {"required": true, "schema": {"type": "integer"}},
                            "Content-Type": {"schema": {"type": "string"}}
                        }},
                        "4XX": {"$ref": "#/components/responses/Problem"},
                        "x-note": "not a status"
                    }
                }
            }},
            "components": {
                "parameters": {"Id": {"name": "id", "in": "path", "required": true,
                    "schema": {"type": "string", "format": "uuid"}}},
                "responses": {"Problem": {"description": "problem"}},
                "schemas": {"Trace": {"type": "string", "pattern": "^[a-f0-9]+$"}}
            }
        });
        let got = extract("pets", &doc, &[op("get", "GET", "/pets/{id}")]);
        let s = &got.schemas["get"];
        let names: Vec<(&str, ParameterLocation, ParameterStyle)> = s
            .parameters
            .iter()
            .map(|p| (p.name.as_str(), p.location, p.style))
            .collect();
        assert_eq!(
            names,
            [
                ("id", ParameterLocation::Path, ParameterStyle::Csv),
                ("limit", ParameterLocation::Query, ParameterStyle::Multi),
                ("tags", ParameterLocation::Query, ParameterStyle::Csv),
                ("ids", ParameterLocation::Query, ParameterStyle::Multi),
                ("X-Trace", ParameterLocation::Header, ParameterStyle::Csv),
                ("filter", ParameterLocation::Query, ParameterStyle::Json),
            ]
        );
        // The operation's `limit` replaced the path item's.
        assert!(s.parameters[1].required);
        assert_eq!(
            s.parameters[1].schema,
            Some(json!({"type": "integer", "maximum": 50}))
        );
        assert!(s.parameters[0].required);
        let statuses: Vec<&str> = s.statuses.keys().map(String::as_str).collect();
        assert_eq!(statuses, ["200", "4XX"]);
        let headers = &s.statuses["200"];
        assert_eq!(headers.len(), 1, "Content-Type is ignored: {headers:?}");
        assert_eq!(headers[0].name, "X-Rate");
        assert!(headers[0].required);
        assert!(s.statuses["4XX"].is_empty());
        assert!(got.definitions.contains_key("Trace"));
    }

    #[test]
    fn swagger2_parameters_and_headers_are_written_inline() {
        let doc = json!({
            "swagger": "2.0",
            "paths": {"/items": {"get": {
                "parameters": [
                    {"name": "page", "in": "query", "type": "integer", "format": "int32",
                     "minimum": 1, "required": true},
                    {"name": "sort", "in": "query", "type": "string", "enum": ["asc", "desc"]},
                    {"name": "ids", "in": "query", "type": "array", "collectionFormat": "pipes",
                     "items": {"type": "integer", "maximum": 9}},
                    {"name": "tag", "in": "query", "type": "array", "collectionFormat": "multi",
                     "items": {"type": "string"}},
                    {"name": "file", "in": "formData", "type": "file"}
                ],
                "responses": {"200": {"description": "ok",
                    "headers": {"X-Count": {"type": "integer"}}}}
            }}}
        });
        let got = extract("items", &doc, &[op("list", "GET", "/items")]);
        let s = &got.schemas["list"];
        assert_eq!(s.parameters.len(), 4, "{:?}", s.parameters);
        assert_eq!(
            s.parameters[0].schema,
            Some(json!({"type": "integer", "format": "int32", "minimum": 1}))
        );
        assert!(s.parameters[0].required);
        assert_eq!(s.parameters[2].style, ParameterStyle::Pipes);
        assert_eq!(
            s.parameters[2].schema,
            Some(json!({"type": "array", "items": {"type": "integer", "maximum": 9}}))
        );
        assert_eq!(s.parameters[3].style, ParameterStyle::Multi);
        assert_eq!(
            s.statuses["200"][0].schema,
            Some(json!({"type": "integer"}))
        );
    }

    #[test]
    fn an_operation_the_document_describes_is_kept_even_without_schemas() {
        let doc = json!({
            "openapi": "3.0.1",
            "paths": {"/ping": {"get": {"responses": {"204": {"description": "none"}}}}}
        });
        let got = extract("ping", &doc, &[op("ping", "GET", "/ping")]);
        let s = &got.schemas["ping"];
        assert!(s.parameters.is_empty() && s.request.is_empty() && s.responses.is_empty());
        assert_eq!(s.statuses.keys().collect::<Vec<_>>(), ["204"]);
    }
}
