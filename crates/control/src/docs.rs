//! The management API's own OpenAPI document (`/mgmt/openapi.json`) and its Swagger UI
//! (`/mgmt/docs`), served from assets embedded at build time from npm's swagger-ui-dist.
//!
//! utoipa derives the description from the handlers' annotations (`handlers/openapi.rs`); what
//! it leaves out or says too loosely is completed here.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use utoipa::Modify;
use utoipa::openapi::RefOr;
use utoipa::openapi::path::ParameterIn;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

/// The admin token as the security scheme every operation names.
pub(crate) struct AdminAuth;

impl Modify for AdminAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The admin token from <data>/admin-token"))
                    .build(),
            ),
        );
    }
}

/// Fixes what the derive leaves out but OpenAPI requires: every response needs a
/// `description`, and every `operationId` must be unique (handlers of different resources share
/// function names such as `list`, so ids become `<tag>_<function>`, e.g. `products_list`).
/// Path parameters that are resource ids also get the id syntax, so clients and fuzzers know it.
pub(crate) struct Conventions;

impl Modify for Conventions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                if let (Some(id), Some(tag)) =
                    (&op.operation_id, op.tags.as_ref().and_then(|t| t.first()))
                {
                    let prefix = format!("{}_", tag.replace('-', "_"));
                    if !id.starts_with(&prefix) {
                        op.operation_id = Some(format!("{prefix}{id}"));
                    }
                }
                for param in op.parameters.iter_mut().flatten() {
                    if let RefOr::T(param) = param
                        && param.parameter_in == ParameterIn::Path
                        && param.name.ends_with("Id")
                    {
                        param.schema = Some(id_schema());
                    }
                }
                for (status, response) in &mut op.responses.responses {
                    if let RefOr::T(response) = response
                        && response.description.is_empty()
                    {
                        response.description = default_description(status).to_owned();
                    }
                }
            }
        }
    }
}

/// Resource ids in paths: what `gatehouse_model::resources::validate_id` accepts.
fn id_schema() -> RefOr<Schema> {
    RefOr::T(Schema::Object(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^[A-Za-z0-9_-][A-Za-z0-9._-]{0,79}$"))
            .min_length(Some(1))
            .max_length(Some(80))
            .build(),
    ))
}

fn default_description(status: &str) -> &'static str {
    match status {
        "200" => "OK",
        "201" => "Created",
        "204" => "No content",
        "400" => "Invalid input: a ValidationError with the details",
        "401" => "Missing or invalid admin token",
        "404" => "Not found",
        "405" => "Method not allowed",
        "409" => "Conflict",
        "415" => "Unsupported media type",
        _ => "Response",
    }
}

#[derive(rust_embed::RustEmbed)]
#[folder = "$CARGO_MANIFEST_DIR/../../node_modules/swagger-ui-dist"]
#[include = "swagger-ui-bundle.js"]
#[include = "swagger-ui.css"]
#[include = "favicon-32x32.png"]
struct SwaggerAssets;

const DOCS_PAGE: &str = r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Gatehouse management API</title>
<link rel="icon" href="/mgmt/docs/favicon-32x32.png">
<link rel="stylesheet" href="/mgmt/docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/mgmt/docs/swagger-ui-bundle.js"></script>
<script src="/mgmt/docs/swagger-init.js"></script>
</body>
</html>
"##;

/// Starts Swagger UI; a file of its own, because the page's policy allows no inline script.
const INIT_SCRIPT: &str = r##"window.ui = SwaggerUIBundle({ url: "/mgmt/openapi.json", dom_id: "#swagger-ui", persistAuthorization: true });
"##;

/// The Swagger UI page's content security policy: scripts only from this origin (the bundle
/// and the init file, no inline script), calls only to this origin, no framing. Swagger UI
/// sets inline styles and draws some icons as `data:` images, so those are allowed.
const DOCS_CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
     script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
     form-action 'self'";

/// Serves the document completed from `derived`, and Swagger UI over it.
pub fn router(derived: utoipa::openapi::OpenApi) -> Router {
    let derived = Arc::new(derived);
    Router::new()
        .route("/mgmt/openapi.json", get(move || spec(derived.clone())))
        .route("/mgmt/docs", get(|| async { Html(DOCS_PAGE) }))
        .route("/mgmt/docs/", get(|| async { Html(DOCS_PAGE) }))
        .route("/mgmt/docs/{file}", get(asset))
        .layer(axum::middleware::from_fn(security_headers))
}

/// The headers the developer portal and the admin console send on their pages (the same set
/// as `gatehouse_portal`'s `page_security_headers`; the crates are siblings and share no web
/// code): the policy above, no framing, no sniffing, same-origin referrers, and the page itself
/// never cached.
async fn security_headers(req: Request, next: Next) -> Response {
    let is_asset = req
        .uri()
        .path()
        .strip_prefix("/mgmt/docs/")
        .is_some_and(|file| !file.is_empty());
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(DOCS_CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !is_asset {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// The document as served: what utoipa derives, then [`patterns`], [`put_bodies`] and
/// [`merge_patch_bodies`].
fn document(derived: utoipa::openapi::OpenApi) -> Result<serde_json::Value, serde_json::Error> {
    let mut doc = serde_json::to_value(derived)?;
    patterns(&mut doc);
    unsigned_ranges(&mut doc);
    // Before the PATCH schemas, which are made from the resources as returned.
    put_bodies(&mut doc);
    merge_patch_bodies(&mut doc);
    Ok(doc)
}

/// Patterns the code checks with the very same expression, set here from the constants so the
/// document and the checks cannot drift: (schema, member, pattern).
const PATTERNS: &[(&str, &str, &str)] = &[
    (
        "Api",
        "serviceUrl",
        gatehouse_model::resources::HTTP_URL_PATTERN,
    ),
    (
        "Backend",
        "url",
        gatehouse_model::resources::HTTP_URL_PATTERN,
    ),
    ("User", "email", gatehouse_model::resources::EMAIL_PATTERN),
];

/// utoipa writes a `u32` as `int32` with a minimum of 0, whose JSON Schema range stops at
/// 2^31 - 1; the server takes the whole `u32` range. Says so, unless a maximum is set.
fn unsigned_ranges(value: &mut serde_json::Value) {
    use serde_json::{Value, json};
    match value {
        Value::Object(members) => {
            let unsigned_int32 = members.get("format").and_then(Value::as_str) == Some("int32")
                && members.get("minimum").and_then(Value::as_f64) == Some(0.0);
            if unsigned_int32 && !members.contains_key("maximum") {
                members.insert("format".into(), json!("int64"));
                members.insert("maximum".into(), json!(u32::MAX));
            }
            members.values_mut().for_each(unsigned_ranges);
        }
        Value::Array(items) => items.iter_mut().for_each(unsigned_ranges),
        _ => {}
    }
}

/// Rules the code checks without a regular expression, said in JSON Schema:
/// (schema, member, keyword, value).
fn member_rules() -> Vec<(&'static str, &'static str, &'static str, serde_json::Value)> {
    use gatehouse_model::resources::HEADER_NAME_PATTERN;
    use serde_json::json;
    // `char::is_control`: the Unicode category Cc.
    let no_controls = json!("^[^\\u0000-\\u001f\\u007f-\\u009f]*$");
    vec![
        (
            "SubscriptionKeyParameterNames",
            "header",
            "pattern",
            json!(HEADER_NAME_PATTERN),
        ),
        ("User", "firstName", "pattern", no_controls.clone()),
        ("User", "lastName", "pattern", no_controls),
        (
            "BackendCredentials",
            "header",
            "propertyNames",
            json!({ "pattern": HEADER_NAME_PATTERN }),
        ),
        (
            "BackendCredentials",
            "query",
            "propertyNames",
            json!({ "minLength": 1 }),
        ),
        // `is_path_char`: unreserved characters and sub-delimiters but `&`, `+` and `'`.
        (
            "SubscriptionKeyParameterNames",
            "query",
            "pattern",
            json!("^[A-Za-z0-9_.~!$()*,;=:@-]+$"),
        ),
        // One certificate, by id or by (Azure) resource id ending in `/certificates/{id}`.
        ("BackendCredentials", "certificateIds", "maxItems", json!(1)),
        (
            "BackendCredentials",
            "certificateIds",
            "items",
            json!({
                "type": "string",
                "pattern": "^(.*/certificates/)?[A-Za-z0-9_-][A-Za-z0-9._-]{0,79}$"
            }),
        ),
    ]
}

/// Sets [`PATTERNS`] and [`member_rules`] on the resources' schemas, and the report
/// interval's pattern on its parameter.
fn patterns(doc: &mut serde_json::Value) {
    use serde_json::{Value, json};
    for (schema, member, pattern) in PATTERNS {
        let pointer = format!("/components/schemas/{schema}/properties/{member}");
        if let Some(property) = doc.pointer_mut(&pointer) {
            property["pattern"] = json!(pattern);
        }
    }
    for (schema, member, keyword, rule) in member_rules() {
        let pointer = format!("/components/schemas/{schema}/properties/{member}");
        if let Some(property) = doc.pointer_mut(&pointer) {
            property[keyword] = rule;
        }
    }
    if let Some(params) = doc
        .pointer_mut("/paths/~1mgmt~1reports~1byTime/get/parameters")
        .and_then(Value::as_array_mut)
    {
        for param in params.iter_mut().filter(|p| p["name"] == "interval") {
            param["schema"]["pattern"] = json!(gatehouse_model::reports::INTERVAL_PATTERN);
        }
    }
}

/// Members a PUT must carry although the resource, as returned, may leave them out (a secret's
/// value, a certificate's PEM): (schema, member). Their PUT bodies get a `<Schema>Put` schema
/// that requires them.
const PUT_REQUIRED: &[(&str, &str)] = &[("NamedValue", "value"), ("Certificate", "data")];

/// Points the JSON request body of every `method` operation whose schema is `pick`ed at
/// `<Schema><suffix>` instead, and returns the schemas so redirected (each once).
fn redirect_bodies(
    doc: &mut serde_json::Value,
    method: &str,
    suffix: &str,
    pick: impl Fn(&str) -> bool,
) -> Vec<String> {
    use serde_json::{Value, json};
    let mut wanted: Vec<String> = Vec::new();
    let pointer = format!("/{method}/requestBody/content/application~1json/schema");
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return wanted;
    };
    for item in paths.values_mut() {
        let Some(schema) = item.pointer_mut(&pointer) else {
            continue;
        };
        let Some(name) = schema
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("#/components/schemas/"))
            .filter(|n| pick(n))
            .map(str::to_owned)
        else {
            continue;
        };
        *schema = json!({ "$ref": format!("#/components/schemas/{name}{suffix}") });
        if !wanted.contains(&name) {
            wanted.push(name);
        }
    }
    wanted
}

/// Points each PUT of a schema in [`PUT_REQUIRED`] at a copy that requires those members.
fn put_bodies(doc: &mut serde_json::Value) {
    use serde_json::{Value, json};
    let wanted = redirect_bodies(doc, "put", "Put", |n| {
        PUT_REQUIRED.iter().any(|(s, _)| *s == n)
    });
    let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    for name in wanted {
        let Some(mut put) = schemas.get(&name).cloned() else {
            continue;
        };
        let mut required: Vec<Value> = put
            .get("required")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for (_, member) in PUT_REQUIRED.iter().filter(|(s, _)| *s == name) {
            required.push(json!(member));
            // Required and not null: a string.
            if let Some(Value::Array(types)) =
                put.pointer_mut(&format!("/properties/{member}/type"))
            {
                types.retain(|t| t != "null");
            }
        }
        put["required"] = Value::Array(required);
        put["description"] = json!(format!("A {name} as PUT takes it."));
        schemas.insert(format!("{name}Put"), put);
    }
}

/// Members a PUT takes and a PATCH refuses: (schema, member).
const PUT_ONLY: &[(&str, &str)] = &[("Api", "import")];

/// A PATCH body is a JSON merge patch (RFC 7386) of the resource, not the resource: every
/// member may be left out, and `null` resets a member to its default. Each PATCH operation gets
/// a `<Schema>Patch` component saying so: the resource's schema without `required`, where the
/// members that are optional in the resource also take `null`. (A member the resource
/// requires has no default to reset to, so `null` stays invalid there.)
fn merge_patch_bodies(doc: &mut serde_json::Value) {
    use serde_json::{Value, json};
    let wanted = redirect_bodies(doc, "patch", "Patch", |_| true);
    let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    for name in wanted {
        let patch_name = format!("{name}Patch");
        if schemas.contains_key(&patch_name) {
            continue;
        }
        let Some(mut patch) = schemas.get(&name).cloned() else {
            continue;
        };
        let required: Vec<Value> = patch
            .as_object_mut()
            .and_then(|o| o.remove("required"))
            .and_then(|r| r.as_array().cloned())
            .unwrap_or_default();
        if let Some(properties) = patch.get_mut("properties").and_then(Value::as_object_mut) {
            for (schema, member) in PUT_ONLY {
                if *schema == name {
                    properties.remove(*member);
                }
            }
            for (member, schema) in properties.iter_mut() {
                let put_required = PUT_REQUIRED.iter().any(|(s, m)| *s == name && m == member);
                if put_required && let Some(Value::Array(types)) = schema.get_mut("type") {
                    // Required on PUT, so `null` (unset) is not a value it can take.
                    types.retain(|t| t != "null");
                }
                if !put_required && !required.iter().any(|r| r.as_str() == Some(member.as_str())) {
                    nullable(schema);
                }
            }
        }
        patch["description"] = json!(format!(
            "A JSON merge patch (RFC 7386) of a {name}: members left out keep their value, \
             `null` resets an optional member to its default."
        ));
        schemas.insert(patch_name, patch);
    }
}

/// Makes one property schema also accept `null`.
fn nullable(schema: &mut serde_json::Value) {
    use serde_json::{Value, json};
    // (Not named `null`: inside `json!` that is the JSON literal.)
    let null_type = json!({ "type": "null" });
    if schema.get("$ref").is_some() {
        *schema = json!({ "oneOf": [schema.clone(), null_type] });
        return;
    }
    if let Some(Value::Array(parts)) = schema.get_mut("oneOf") {
        if !parts.contains(&null_type) {
            parts.push(null_type);
        }
        return;
    }
    match schema.get_mut("type") {
        Some(Value::String(t)) => {
            let t = t.clone();
            schema["type"] = json!([t, "null"]);
        }
        Some(Value::Array(types)) if !types.iter().any(|t| t == "null") => {
            types.push(json!("null"));
        }
        _ => {}
    }
    if let Some(Value::Array(values)) = schema.get_mut("enum")
        && !values.contains(&Value::Null)
    {
        values.push(Value::Null);
    }
}

/// The document as JSON text, `openapi` and `info` first as readers (and tools that sniff the
/// first bytes) expect; the rest in name order.
fn document_text(derived: utoipa::openapi::OpenApi) -> Result<String, serde_json::Error> {
    let serde_json::Value::Object(mut members) = document(derived)? else {
        return Ok(String::new());
    };
    let mut out = String::from("{");
    let first = ["openapi", "info"];
    let ordered = first
        .iter()
        .filter_map(|k| members.remove(*k).map(|v| ((*k).to_owned(), v)))
        .collect::<Vec<_>>()
        .into_iter()
        .chain(members);
    for (i, (key, value)) in ordered.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(&key)?);
        out.push(':');
        out.push_str(&serde_json::to_string(&value)?);
    }
    out.push('}');
    Ok(out)
}

async fn spec(derived: Arc<utoipa::openapi::OpenApi>) -> Response {
    match document_text(derived.as_ref().clone()) {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot render the OpenAPI document");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn asset(Path(file): Path<String>) -> Response {
    if file == "swagger-init.js" {
        return (
            [
                (header::CONTENT_TYPE, "text/javascript"),
                (header::CACHE_CONTROL, "public, max-age=86400"),
            ],
            INIT_SCRIPT,
        )
            .into_response();
    }
    let Some(content) = SwaggerAssets::get(&file) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mime = match file.rsplit('.').next() {
        Some("js") => "text/javascript",
        Some("css") => "text/css",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    };
    (
        [
            (header::CONTENT_TYPE, mime),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        content.data,
    )
        .into_response()
}
