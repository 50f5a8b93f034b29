//! `docs/management-api.md`, generated from the management API's own OpenAPI document (the one
//! served at `/mgmt/openapi.json`), so the page says what the server does. A test compares the
//! file with the document; run it with `GATEHOUSE_UPDATE_DOCS=1` to rewrite the file.

use std::fmt::Write as _;

use serde_json::Value;

const METHODS: &[&str] = &["get", "put", "post", "patch", "delete"];

fn one_line(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

fn anchor(name: &str) -> String {
    name.to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

fn ref_name(reference: &str) -> &str {
    reference.rsplit('/').next().unwrap_or(reference)
}

/// A schema as a short type: `string`, `integer (int32)`, `[Api](#api)`, `array of …`.
fn type_of(schema: &Value) -> String {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = ref_name(r);
        return format!("[{name}](#{})", anchor(name));
    }
    for combinator in ["oneOf", "anyOf", "allOf"] {
        if let Some(parts) = schema.get(combinator).and_then(Value::as_array) {
            let parts: Vec<String> = parts
                .iter()
                .filter(|p| p.get("type").and_then(Value::as_str) != Some("null"))
                .map(type_of)
                .collect();
            let joiner = if combinator == "allOf" {
                " and "
            } else {
                " or "
            };
            return parts.join(joiner);
        }
    }
    let kinds: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .collect(),
        _ => Vec::new(),
    };
    let mut text = match kinds.first().copied() {
        Some("array") => match schema.get("items") {
            Some(items) => format!("array of {}", type_of(items)),
            None => "array".to_owned(),
        },
        Some("object") => match schema.get("additionalProperties") {
            Some(v) if v.is_object() => format!("map of {}", type_of(v)),
            _ => "object".to_owned(),
        },
        Some(kind) => kind.to_owned(),
        None => "any".to_owned(),
    };
    if let Some(format) = schema.get("format").and_then(Value::as_str) {
        let _ = write!(text, " ({format})");
    }
    text
}

/// What a schema allows beyond its type: enum values, pattern, bounds, default.
fn constraints(schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        let values: Vec<String> = values
            .iter()
            .filter(|v| !v.is_null())
            .map(|v| {
                format!(
                    "`{}`",
                    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
                )
            })
            .collect();
        out.push(format!("one of {}", values.join(", ")));
    }
    if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
        out.push(format!("pattern `{}`", p.replace('|', "\\|")));
    }
    for (key, words) in [
        ("minLength", "min length {}"),
        ("maxLength", "max length {}"),
        ("minimum", "at least {}"),
        ("maximum", "at most {}"),
        ("minItems", "at least {} items"),
        ("maxItems", "at most {} items"),
    ] {
        if let Some(v) = schema.get(key) {
            out.push(words.replace("{}", &v.to_string()));
        }
    }
    if let Some(d) = schema.get("default") {
        out.push(format!("default `{d}`"));
    }
    if schema.get("readOnly").and_then(Value::as_bool) == Some(true) {
        out.push("read-only".to_owned());
    }
    if schema.get("writeOnly").and_then(Value::as_bool) == Some(true) {
        out.push("write-only".to_owned());
    }
    out
}

fn describe(schema: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(d) = schema.get("description").and_then(Value::as_str) {
        parts.push(one_line(d));
    }
    let c = constraints(schema);
    if !c.is_empty() {
        parts.push(format!("({})", c.join("; ")));
    }
    parts.join(" ")
}

fn operation(out: &mut String, method: &str, path: &str, op: &Value) {
    let _ = writeln!(out, "### `{} {path}`\n", method.to_uppercase());
    if let Some(s) = op.get("summary").and_then(Value::as_str) {
        let _ = writeln!(out, "{}\n", s.trim());
    }
    if let Some(d) = op.get("description").and_then(Value::as_str)
        && op.get("summary").and_then(Value::as_str) != Some(d)
    {
        let _ = writeln!(out, "{}\n", d.trim());
    }
    if let Some(params) = op.get("parameters").and_then(Value::as_array)
        && !params.is_empty()
    {
        out.push_str("| Parameter | In | Type | Required | Description |\n|---|---|---|---|---|\n");
        for p in params {
            let name = p.get("name").and_then(Value::as_str).unwrap_or("");
            let place = p.get("in").and_then(Value::as_str).unwrap_or("");
            let schema = p.get("schema").cloned().unwrap_or(Value::Null);
            let required = p.get("required").and_then(Value::as_bool) == Some(true);
            let mut what = p
                .get("description")
                .and_then(Value::as_str)
                .map(one_line)
                .unwrap_or_default();
            let c = constraints(&schema);
            if !c.is_empty() {
                if !what.is_empty() {
                    what.push(' ');
                }
                let _ = write!(what, "({})", c.join("; "));
            }
            let _ = writeln!(
                out,
                "| `{name}` | {place} | {} | {} | {what} |",
                type_of(&schema),
                if required { "yes" } else { "no" }
            );
        }
        out.push('\n');
    }
    if let Some(content) = op
        .get("requestBody")
        .and_then(|b| b.get("content"))
        .and_then(Value::as_object)
    {
        for (media, body) in content {
            let schema = body.get("schema").cloned().unwrap_or(Value::Null);
            let _ = writeln!(out, "Request body (`{media}`): {}\n", type_of(&schema));
        }
    }
    if let Some(responses) = op.get("responses").and_then(Value::as_object) {
        out.push_str("| Status | Meaning | Body |\n|---|---|---|\n");
        for (status, response) in responses {
            let what = response
                .get("description")
                .and_then(Value::as_str)
                .map(one_line)
                .unwrap_or_default();
            let body = response
                .get("content")
                .and_then(Value::as_object)
                .and_then(|c| c.values().next())
                .and_then(|b| b.get("schema"))
                .map(type_of)
                .unwrap_or_else(|| "—".to_owned());
            let _ = writeln!(out, "| {status} | {what} | {body} |");
        }
        out.push('\n');
    }
}

fn schema_section(out: &mut String, name: &str, schema: &Value) {
    let _ = writeln!(out, "### {name}\n");
    if let Some(d) = schema.get("description").and_then(Value::as_str) {
        let _ = writeln!(out, "{}\n", one_line(d));
    }
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    match schema.get("properties").and_then(Value::as_object) {
        Some(properties) if !properties.is_empty() => {
            out.push_str("| Property | Type | Required | Description |\n|---|---|---|---|\n");
            for (property, s) in properties {
                let _ = writeln!(
                    out,
                    "| `{property}` | {} | {} | {} |",
                    type_of(s),
                    if required.contains(&property.as_str()) {
                        "yes"
                    } else {
                        "no"
                    },
                    describe(s)
                );
            }
            out.push('\n');
        }
        _ => {
            let c = constraints(schema);
            let _ = write!(out, "Type: {}", type_of(schema));
            if !c.is_empty() {
                let _ = write!(out, " ({})", c.join("; "));
            }
            out.push_str(".\n\n");
        }
    }
}

/// The page, from the document the server serves.
pub fn management_api_page(doc: &Value) -> String {
    let mut out = String::new();
    out.push_str(
        "# Management API\n\n\
         <!-- Generated from /mgmt/openapi.json by `crates/control/src/reference.rs`; do not edit.\n     \
         After changing the API: GATEHOUSE_UPDATE_DOCS=1 cargo test -p gatehouse-control reference -->\n\n",
    );
    if let Some(d) = doc.pointer("/info/description").and_then(Value::as_str) {
        let _ = writeln!(out, "{}\n", d.trim());
    }
    out.push_str(
        "The control plane serves this API on its listen address (default `127.0.0.1:8090`). \
         The same document is served as OpenAPI 3.1 at `/mgmt/openapi.json`, and as Swagger UI \
         at `/mgmt/docs`. Bodies are JSON. An error answers with `{\"error\": {\"code\": …, \
         \"message\": …, \"details\": […]}}`; invalid input is a 400 `ValidationError` whose \
         details name the target, and for policies the line and column.\n\n\
         ## Contents\n\n",
    );
    let tags: Vec<(String, String)> = doc
        .get("tags")
        .and_then(Value::as_array)
        .map(|tags| {
            tags.iter()
                .map(|t| {
                    let name = t.get("name").and_then(Value::as_str).unwrap_or("");
                    let d = t.get("description").and_then(Value::as_str).unwrap_or("");
                    (name.to_owned(), one_line(d))
                })
                .collect()
        })
        .unwrap_or_default();
    for (name, d) in &tags {
        let _ = writeln!(out, "- [{name}](#{}): {d}", anchor(name));
    }
    out.push_str("- [Schemas](#schemas)\n\n");
    let paths = doc.get("paths").and_then(Value::as_object);
    for (tag, d) in &tags {
        let _ = writeln!(out, "## {tag}\n\n{d}\n");
        for (path, item) in paths.into_iter().flatten() {
            for method in METHODS {
                let Some(op) = item.get(*method) else {
                    continue;
                };
                let tagged = op
                    .get("tags")
                    .and_then(Value::as_array)
                    .is_some_and(|t| t.iter().any(|x| x.as_str() == Some(tag)));
                if tagged {
                    operation(&mut out, method, path, op);
                }
            }
        }
    }
    out.push_str("## Schemas\n\n");
    if let Some(schemas) = doc
        .pointer("/components/schemas")
        .and_then(Value::as_object)
    {
        for (name, schema) in schemas {
            schema_section(&mut out, name, schema);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    /// The document as a control plane serves it at `/mgmt/openapi.json`.
    async fn document() -> Value {
        let t = crate::testkit::open("reference").await;
        let request = Request::get("/mgmt/openapi.json")
            .body(Body::empty())
            .unwrap();
        let response = t.cp.router().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        std::fs::remove_dir_all(&t.dir).ok();
        serde_json::from_slice(&body).expect("the served document is JSON")
    }

    fn path() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/management-api.md")
    }

    #[tokio::test]
    async fn docs_management_api_md_matches_the_openapi_document() {
        let page = management_api_page(&document().await);
        if std::env::var_os("GATEHOUSE_UPDATE_DOCS").is_some() {
            std::fs::write(path(), &page).expect("write docs/management-api.md");
        }
        let written = std::fs::read_to_string(path()).unwrap_or_default();
        assert!(
            written == page,
            "docs/management-api.md is out of date with the OpenAPI document; rewrite it with \
             GATEHOUSE_UPDATE_DOCS=1 cargo test -p gatehouse-control reference"
        );
    }

    #[tokio::test]
    async fn every_operation_and_schema_of_the_document_is_on_the_page() {
        let doc = document().await;
        let page = management_api_page(&doc);
        let mut operations = 0;
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in METHODS {
                if item.get(*method).is_some() {
                    let heading = format!("### `{} {path}`", method.to_uppercase());
                    assert!(page.contains(&heading), "{heading} missing");
                    operations += 1;
                }
            }
        }
        assert!(operations > 50, "only {operations} operations");
        for name in doc["components"]["schemas"]
            .as_object()
            .expect("schemas")
            .keys()
        {
            assert!(
                page.contains(&format!("### {name}\n")),
                "schema {name} missing"
            );
        }
    }

    #[test]
    fn types_render_references_arrays_and_constraints() {
        let schema = serde_json::json!({
            "type": "array",
            "items": {"$ref": "#/components/schemas/ApiContract"}
        });
        assert_eq!(type_of(&schema), "array of [ApiContract](#apicontract)");
        let s = serde_json::json!({"type": ["string", "null"], "enum": ["a", "b", null], "maxLength": 5});
        assert_eq!(type_of(&s), "string");
        assert_eq!(constraints(&s), vec!["one of `a`, `b`", "max length 5"]);
    }

    #[tokio::test]
    async fn the_published_interval_pattern_is_the_one_the_parser_follows() {
        let doc = document().await;
        let params = doc
            .pointer("/paths/~1mgmt~1reports~1byTime/get/parameters")
            .and_then(Value::as_array)
            .expect("byTime parameters");
        let interval = params
            .iter()
            .find(|p| p["name"] == "interval")
            .expect("interval parameter");
        assert_eq!(
            interval["schema"]["pattern"],
            gatehouse_model::reports::INTERVAL_PATTERN
        );
    }

    #[tokio::test]
    async fn patch_bodies_are_merge_patches_that_take_null_for_optional_members() {
        let doc = document().await;
        let body = doc
            .pointer("/paths/~1mgmt~1products~1{productId}/patch/requestBody/content/application~1json/schema/$ref")
            .and_then(Value::as_str);
        assert_eq!(body, Some("#/components/schemas/ProductPatch"));
        let patch = &doc["components"]["schemas"]["ProductPatch"];
        assert!(patch.get("required").is_none());
        assert_eq!(
            patch["properties"]["description"]["type"],
            serde_json::json!(["string", "null"])
        );
        // PUT still takes the resource itself.
        let put = doc
            .pointer("/paths/~1mgmt~1products~1{productId}/put/requestBody/content/application~1json/schema/$ref")
            .and_then(Value::as_str);
        assert_eq!(put, Some("#/components/schemas/Product"));
    }
}
