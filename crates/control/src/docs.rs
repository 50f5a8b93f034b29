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

/// The document as served: what utoipa derives, then [`patterns`], [`unsigned_ranges`],
/// [`policy_bodies`], [`put_bodies`], [`logger_bodies`], [`backend_bodies`] and
/// [`merge_patch_bodies`].
///
/// Some strings hold a whole document whose rules JSON Schema cannot state: a policy, a PEM
/// certificate, an API description, an Event Hubs connection string. Their schemas name a
/// format of ours for it ([`FORMATS`]); `scripts/schemathesis_hooks.py` teaches schemathesis
/// to write valid ones.
fn document(derived: utoipa::openapi::OpenApi) -> Result<serde_json::Value, serde_json::Error> {
    let mut doc = serde_json::to_value(derived)?;
    patterns(&mut doc);
    unsigned_ranges(&mut doc);
    policy_bodies(&mut doc);
    // Before the PATCH schemas, which are made from the resources as returned.
    put_bodies(&mut doc);
    logger_bodies(&mut doc);
    backend_bodies(&mut doc);
    merge_patch_bodies(&mut doc);
    patch_conflicts(&mut doc);
    describe_formats(&mut doc);
    Ok(doc)
}

/// A resource id, as [`id_schema`] says, without anchors.
const ID: &str = "[A-Za-z0-9_-][A-Za-z0-9._-]{0,79}";

/// Formats of ours, for strings that hold a document JSON Schema cannot describe:
/// (name, what it is).
pub(crate) const FORMATS: &[(&str, &str)] = &[
    (
        POLICY_XML,
        "a policy document, <policies> with its sections, that compiles at the operation's scope",
    ),
    (
        POLICY_FRAGMENT,
        "a policy fragment, <fragment> holding policies that compile",
    ),
    (
        PEM_CERTIFICATE,
        "PEM text: CERTIFICATE blocks (X.509, leaf first), then optionally the leaf's unencrypted PRIVATE KEY block",
    ),
    (
        API_DESCRIPTION,
        "an OpenAPI 3.x or Swagger 2.0 document, JSON or YAML",
    ),
    (
        GATEWAY_TOKEN_EXPIRY,
        "an RFC 3339 time later than now and at most 30 days away",
    ),
    (
        EVENT_HUB_CONNECTION_STRING,
        "an Event Hubs connection string: Endpoint=sb://…;SharedAccessKeyName=…;SharedAccessKey=…[;EntityPath=…]",
    ),
    (
        BREAKER_DURATION,
        "an ISO 8601 duration in weeks, days, hours, minutes and seconds (no years or months), longer than zero and at most 365 days, such as PT10S, PT1M30S or P1D",
    ),
];
/// A segment of an API's path (`is_path_char`).
const SEGMENT: &str = "[A-Za-z0-9._~!$()*,;=:@-]+";
const POLICY_XML: &str = "policy-xml";
const GATEWAY_TOKEN_EXPIRY: &str = "gateway-token-expiry";
const POLICY_FRAGMENT: &str = "policy-fragment-xml";
const PEM_CERTIFICATE: &str = "pem-certificate";
const API_DESCRIPTION: &str = "api-description";
const EVENT_HUB_CONNECTION_STRING: &str = "event-hub-connection-string";
const BREAKER_DURATION: &str = "breaker-duration";

/// Members the code requires although their Rust type has a default: (schema, member).
const REQUIRED: &[(&str, &str)] = &[
    ("PolicyFragment", "value"),
    ("HostnameConfiguration", "hostname"),
    ("HostnameConfiguration", "certificateId"),
    // `Backend::normalize`: a circuit breaker has its one rule, and a pool its members.
    ("CircuitBreaker", "rules"),
    ("BackendPool", "services"),
];

/// A header value as `HeaderValue` takes it: no control bytes but the tab.
const HEADER_VALUE: &str = "^[^\\u0000-\\u0008\\u000a-\\u001f\\u007f]*$";

/// A portal logo: an http(s) URL the gateway could call, or a path on this server (`/x`, not
/// `//x`), never with a quote, `<`, `>` or `\\` (`PortalSettings::validate`).
fn logo_url_pattern() -> String {
    let url = gatehouse_model::resources::HTTP_URL_PATTERN
        .trim_start_matches('^')
        .trim_end_matches('$')
        .replace("&'(", "&(");
    format!("^(?:/(?:[^/\"'<>\\\\][^\"'<>\\\\]*)?|{url})$")
}

/// The `import.format` values `PUT /mgmt/apis/{apiId}` takes, in any case, as a pattern.
fn import_formats() -> String {
    let alternatives: Vec<String> = gatehouse_model::openapi::IMPORT_FORMATS
        .iter()
        .map(|f| {
            f.chars()
                .map(|c| match c {
                    c if c.is_ascii_alphabetic() => {
                        format!("[{}{}]", c.to_ascii_lowercase(), c.to_ascii_uppercase())
                    }
                    '+' => "\\+".to_owned(),
                    c => c.to_string(),
                })
                .collect()
        })
        .collect();
    format!("^(?:{})$", alternatives.join("|"))
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

/// utoipa writes a `u32` as `int32` with a minimum (0, or one set on the member), whose JSON
/// Schema range stops at 2^31 - 1; the server takes the whole `u32` range. Says so, unless a
/// maximum is set.
fn unsigned_ranges(value: &mut serde_json::Value) {
    use serde_json::{Value, json};
    match value {
        Value::Object(members) => {
            let unsigned_int32 = members.get("format").and_then(Value::as_str) == Some("int32")
                && members
                    .get("minimum")
                    .and_then(Value::as_f64)
                    .is_some_and(|m| m >= 0.0);
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
    use gatehouse_model::resources::{self, HEADER_NAME_PATTERN};
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
        ("User", "lastName", "pattern", no_controls.clone()),
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
        (
            "HostnameConfiguration",
            "hostname",
            "pattern",
            json!(resources::HOSTNAME_PATTERN),
        ),
        // `certificate_ref`: the id after the last `/certificates/`, trailing '/' dropped.
        (
            "HostnameConfiguration",
            "certificateId",
            "pattern",
            json!(format!("^(?:[\\s\\S]*/certificates/)?{ID}/*$")),
        ),
        ("PolicyFragment", "value", "format", json!(POLICY_FRAGMENT)),
        ("PolicyFragment", "description", "maxLength", json!(1000)),
        ("Api", "displayName", "maxLength", json!(300)),
        ("Product", "displayName", "maxLength", json!(300)),
        ("NamedValue", "value", "maxLength", json!(4096)),
        // `normalize`: '/' at either end is dropped, then segments of `is_path_char`s.
        ("Api", "path", "maxLength", json!(400)),
        (
            "Api",
            "path",
            "pattern",
            json!(format!("^/*(?:{SEGMENT}(?:/{SEGMENT})*)?/*$")),
        ),
        (
            "GenerateTokenRequest",
            "expiry",
            "format",
            json!(GATEWAY_TOKEN_EXPIRY),
        ),
        ("Certificate", "data", "format", json!(PEM_CERTIFICATE)),
        // Azure's PFX password: refused unless empty.
        ("Certificate", "password", "maxLength", json!(0)),
        ("ApiImport", "format", "pattern", json!(import_formats())),
        ("ApiImport", "value", "format", json!(API_DESCRIPTION)),
        (
            "LoggerEndpoint",
            "url",
            "pattern",
            json!(resources::HTTP_URL_PATTERN),
        ),
        (
            "LoggerEndpoint",
            "headers",
            "propertyNames",
            json!({ "pattern": HEADER_NAME_PATTERN }),
        ),
        // `char::is_control` but the tab: not in a header value.
        (
            "LoggerEndpoint",
            "headers",
            "additionalProperties",
            json!({ "type": "string", "pattern": "^[^\\u0000-\\u0008\\u000a-\\u001f\\u007f-\\u009f]*$" }),
        ),
        // What `HeaderValue` takes: no control bytes but the tab.
        (
            "BackendCredentials",
            "header",
            "additionalProperties",
            json!({ "type": "array", "items": { "type": "string", "pattern": HEADER_VALUE } }),
        ),
        // One word, then a parameter that is not blank; together a header value.
        (
            "BackendAuthorization",
            "scheme",
            "pattern",
            json!("^[^\\s\\u0000-\\u001f\\u007f]+$"),
        ),
        (
            "BackendAuthorization",
            "parameter",
            "pattern",
            json!(
                "^[^\\u0000-\\u0008\\u000a-\\u001f\\u007f]*[^\\s\\u0000-\\u001f\\u007f][^\\u0000-\\u0008\\u000a-\\u001f\\u007f]*$"
            ),
        ),
        ("PortalSettings", "title", "pattern", no_controls.clone()),
        ("PortalSettings", "footer", "maxLength", json!(1000)),
        (
            "PortalSettings",
            "landingMarkdown",
            "maxLength",
            json!(resources::MAX_LANDING_MARKDOWN),
        ),
        ("PortalSettings", "logoUrl", "maxLength", json!(2000)),
        (
            "PortalSettings",
            "logoUrl",
            "pattern",
            json!(logo_url_pattern()),
        ),
        // `backend_id_of`: the id after the last `/backends/`, around it whitespace.
        (
            "BackendPoolItem",
            "id",
            "pattern",
            json!(format!("^\\s*(?:[\\s\\S]*/backends/)?{ID}\\s*$")),
        ),
        // `CircuitBreakerRule::check`: lengths in characters, durations of ours, reasons that
        // are not blank.
        ("CircuitBreakerRule", "name", "maxLength", json!(100)),
        (
            "CircuitBreakerRule",
            "tripDuration",
            "format",
            json!(BREAKER_DURATION),
        ),
        (
            "CircuitBreakerFailureCondition",
            "interval",
            "format",
            json!(BREAKER_DURATION),
        ),
        (
            "CircuitBreakerFailureCondition",
            "errorReasons",
            "items",
            json!({ "type": "string", "minLength": 1, "maxLength": 100, "pattern": "\\S" }),
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
    for (schema, member) in REQUIRED {
        let Some(resource) = doc.pointer_mut(&format!("/components/schemas/{schema}")) else {
            continue;
        };
        let required = resource
            .as_object_mut()
            .map(|o| o.entry("required").or_insert_with(|| json!([])));
        if let Some(Value::Array(required)) = required
            && !required.iter().any(|r| r == member)
        {
            required.push(json!(member));
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

/// Says what each of our [`FORMATS`] is, in the description of every schema that has one.
fn describe_formats(value: &mut serde_json::Value) {
    use serde_json::{Value, json};
    match value {
        Value::Object(members) => {
            let ours = members
                .get("format")
                .and_then(Value::as_str)
                .and_then(|f| FORMATS.iter().find(|(name, _)| *name == f));
            if let Some((name, what)) = ours {
                let said = format!("Format `{name}`: {what}.");
                let description = match members.get("description").and_then(Value::as_str) {
                    Some(d) if d.contains(&said) => d.to_owned(),
                    Some(d) => format!("{d} {said}"),
                    None => said,
                };
                members.insert("description".into(), json!(description));
            }
            members.values_mut().for_each(describe_formats);
        }
        Value::Array(items) => items.iter_mut().for_each(describe_formats),
        _ => {}
    }
}

/// Every PATCH may answer 409: a patch that gives part of a nested object the resource does
/// not have yet, or that does not fit the resource as stored, cannot be applied (RFC 5789).
fn patch_conflicts(doc: &mut serde_json::Value) {
    use serde_json::{Value, json};
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for item in paths.values_mut() {
        let Some(responses) = item
            .pointer_mut("/patch/responses")
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        responses.entry("409").or_insert_with(|| {
            json!({
                "description": "The patch does not fit the resource as stored",
                "content": { "application/json": {
                    "schema": { "$ref": "#/components/schemas/ErrorBody" }
                } },
            })
        });
    }
}

/// Every policy document a PUT takes (`application/xml`) is a string of [`POLICY_XML`].
fn policy_bodies(doc: &mut serde_json::Value) {
    use serde_json::{Value, json};
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for item in paths.values_mut() {
        if let Some(schema) = item.pointer_mut("/put/requestBody/content/application~1xml/schema")
            && schema.get("type") == Some(&json!("string"))
        {
            schema["format"] = json!(POLICY_XML);
        }
    }
}

/// What a logger's PUT takes depends on its `loggerType`; `LoggerPut` says so as one of
/// three shapes: an `azureEventHub` logger with a connection string, one with a managed
/// identity (`endpointAddress`, `identityClientId`, `name`), and an `http` or `otlp` logger
/// with an `endpoint` and no credentials.
fn logger_bodies(doc: &mut serde_json::Value) {
    use gatehouse_model::loggers::EVENT_HUB_ADDRESS_PATTERN;
    use serde_json::{Value, json};
    let wanted = redirect_bodies(doc, "put", "Put", |n| n == "Logger");
    let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    if wanted.is_empty() {
        return;
    }
    let Some(logger) = schemas.get("Logger").cloned() else {
        return;
    };
    let common = |logger_type: Value, credentials: Value, endpoint: Value, required: Value| {
        let mut shape = logger.clone();
        shape["properties"]["loggerType"] = logger_type;
        shape["properties"]["credentials"] = credentials;
        shape["properties"]["endpoint"] = endpoint;
        shape["required"] = required;
        shape
    };
    let event_hub = json!({ "type": "string", "enum": ["azureEventHub"] });
    let no_endpoint =
        json!({ "type": "null", "description": "Only http and otlp loggers have one." });
    let key = common(
        event_hub.clone(),
        json!({
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "connectionString": {
                    "type": "string",
                    "format": EVENT_HUB_CONNECTION_STRING,
                    "description": "Secret: shown masked. Sent back masked, the stored one is kept.",
                },
                "name": {
                    "type": "string",
                    "description": "The event hub, when the connection string has no EntityPath.",
                },
            },
            "required": ["connectionString"],
        }),
        no_endpoint.clone(),
        json!(["loggerType", "credentials"]),
    );
    let identity = common(
        event_hub,
        json!({
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "endpointAddress": {
                    "type": "string",
                    "pattern": EVENT_HUB_ADDRESS_PATTERN,
                    "description": "The namespace's host, such as contoso.servicebus.windows.net.",
                },
                "identityClientId": {
                    "type": "string",
                    "description": "`SystemAssigned`, or a user-assigned identity's client id.",
                },
                "name": {
                    "type": "string",
                    "pattern": "\\S",
                    "description": "The event hub.",
                },
            },
            "required": ["endpointAddress", "name"],
        }),
        no_endpoint,
        json!(["loggerType", "credentials"]),
    );
    let sink = common(
        json!({ "type": "string", "enum": ["http", "otlp"] }),
        json!({
            "type": "object",
            "maxProperties": 0,
            "description": "Only azureEventHub loggers have credentials.",
        }),
        json!({ "$ref": "#/components/schemas/LoggerEndpoint" }),
        json!(["loggerType", "endpoint"]),
    );
    // A PATCH of one of the three shapes: members left out keep their value, `null` resets
    // an optional one. (Whether the result fits the stored logger is the server's to say: 409.)
    let patch_of = |shape: &Value| {
        let mut patch = shape.clone();
        if let Some(o) = patch.as_object_mut() {
            o.remove("required");
        }
        if let Some(properties) = patch.get_mut("properties").and_then(Value::as_object_mut) {
            for (member, schema) in properties.iter_mut() {
                if member == "credentials"
                    && let Some(credentials) = schema.as_object_mut()
                {
                    // Patched entry by entry: what is left out stays, `null` removes it.
                    credentials.remove("required");
                    for entry in credentials
                        .get_mut("properties")
                        .and_then(Value::as_object_mut)
                        .into_iter()
                        .flat_map(|p| p.values_mut())
                    {
                        nullable(entry);
                    }
                }
                if member != "loggerType" {
                    nullable(schema);
                }
            }
        }
        patch
    };
    let mut patches: Vec<Value> = [&key, &identity, &sink].into_iter().map(patch_of).collect();
    // The sink's endpoint is patched too: `headers` and its entries take `null`.
    if let Some(mut endpoint) = schemas.get("LoggerEndpoint").cloned() {
        if let Some(headers) = endpoint.pointer_mut("/properties/headers") {
            if let Some(entries) = headers.get_mut("additionalProperties") {
                nullable(entries);
            }
            nullable(headers);
        }
        endpoint["description"] = json!("A LoggerEndpoint inside a JSON merge patch.");
        schemas.insert("LoggerEndpointPatch".to_owned(), endpoint);
        if let Some(Value::Array(parts)) = patches
            .get_mut(2)
            .and_then(|p| p.pointer_mut("/properties/endpoint/oneOf"))
        {
            for part in parts.iter_mut().filter(|p| p.get("$ref").is_some()) {
                *part = json!({ "$ref": "#/components/schemas/LoggerEndpointPatch" });
            }
        }
    }
    schemas.insert(
        "LoggerPatch".to_owned(),
        json!({
            "description": "A JSON merge patch (RFC 7386) of a Logger, in the shape of one logger type: members left out keep their value, `null` resets an optional member. A patch that does not fit the stored logger (an endpoint for an azureEventHub logger, say) is refused with 409.",
            "anyOf": patches,
        }),
    );
    for (name, shape) in [
        ("EventHubKeyLogger", key),
        ("EventHubIdentityLogger", identity),
        ("SinkLogger", sink),
    ] {
        schemas.insert(name.to_owned(), shape);
    }
    schemas.insert(
        "LoggerPut".to_owned(),
        json!({
            "description": "A Logger as PUT takes it: its credentials or endpoint depend on loggerType.",
            "oneOf": [
                { "$ref": "#/components/schemas/EventHubKeyLogger" },
                { "$ref": "#/components/schemas/EventHubIdentityLogger" },
                { "$ref": "#/components/schemas/SinkLogger" },
            ],
        }),
    );
}

/// A pattern that takes each of `words` in any letter case.
fn any_case(words: &[&str]) -> String {
    let alternatives: Vec<String> = words
        .iter()
        .map(|w| {
            w.chars()
                .map(|c| match c {
                    c if c.is_ascii_alphabetic() => {
                        format!("[{}{}]", c.to_ascii_lowercase(), c.to_ascii_uppercase())
                    }
                    c => c.to_string(),
                })
                .collect()
        })
        .collect();
    format!("^(?:{})$", alternatives.join("|"))
}

/// A backend is one service or a pool, and `Backend::normalize` holds each to its members:
/// `BackendPut` says so as one of two shapes. A single backend (`type` left out or `Single`)
/// needs `url` and has no `pool`; a pool (`type: Pool`) needs `pool`, has no circuit breaker
/// and no credentials of its own, and may leave `url` empty. `BackendType` is read in any
/// letter case, and a breaker's failure condition counts (`count`) or takes a percentage
/// (`percentage`), one of the two, of answers in `statusCodeRanges` or calls that fail for one
/// of `errorReasons` (at least one of those).
fn backend_bodies(doc: &mut serde_json::Value) {
    use gatehouse_model::resources::HTTP_URL_PATTERN;
    use serde_json::{Value, json};
    let wanted = redirect_bodies(doc, "put", "Put", |n| n == "Backend");
    let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    if let Some(backend_type) = schemas.get_mut("BackendType")
        && let Some(o) = backend_type.as_object_mut()
    {
        o.remove("enum");
        o.insert("type".into(), json!("string"));
        o.insert("pattern".into(), json!(any_case(&["Single", "Pool"])));
    }
    if let Some(condition) = schemas.get_mut("CircuitBreakerFailureCondition") {
        let said = "Give one of `count` and `percentage`, and at least one of `statusCodeRanges` and `errorReasons`.";
        condition["description"] = match condition.get("description").and_then(Value::as_str) {
            Some(d) => json!(format!("{d} {said}")),
            None => json!(said),
        };
        let integer = json!({ "type": "integer" });
        let absent = json!({ "type": "null" });
        condition["allOf"] = json!([
            { "oneOf": [
                { "required": ["count"],
                  "properties": { "count": integer, "percentage": absent } },
                { "required": ["percentage"],
                  "properties": { "percentage": integer, "count": absent } },
            ] },
            { "anyOf": [
                { "required": ["statusCodeRanges"],
                  "properties": { "statusCodeRanges": { "minItems": 1 } } },
                { "required": ["errorReasons"],
                  "properties": { "errorReasons": { "minItems": 1 } } },
            ] },
        ]);
    }
    if wanted.is_empty() {
        return;
    }
    let Some(backend) = schemas.get("Backend").cloned() else {
        return;
    };
    let mut single = backend.clone();
    single["properties"]["type"] = json!({
        "type": "string",
        "pattern": any_case(&["Single"]),
        "description": "`Single`, in any letter case, or left out.",
    });
    single["properties"]["pool"] =
        json!({ "type": "null", "description": "Only a backend of type Pool has members." });
    single["required"] = json!(["url"]);
    single["description"] = json!("A single backend: one service at `url`.");
    let mut pool = backend;
    pool["properties"]["type"] = json!({
        "type": "string",
        "pattern": any_case(&["Pool"]),
        "description": "`Pool`, in any letter case.",
    });
    pool["properties"]["pool"] = json!({ "$ref": "#/components/schemas/BackendPool" });
    let url = HTTP_URL_PATTERN
        .trim_start_matches('^')
        .trim_end_matches('$');
    pool["properties"]["url"] = json!({
        "type": "string",
        "pattern": format!("^(?:{url})?$"),
        "description": "Not used: a pool sends to its members' URLs. Checked when given.",
    });
    pool["properties"]["circuitBreaker"] = json!({
        "type": "null",
        "description": "A pool has none of its own; each member backend has its own.",
    });
    let empty = json!({ "type": "object", "maxProperties": 0 });
    pool["properties"]["credentials"] = json!({
        "description": "A pool sends with the credentials of the member it picks, so it has none.",
        "oneOf": [
            { "type": "null" },
            {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "header": empty,
                    "query": empty,
                    "authorization": { "type": "null" },
                    "certificateIds": { "type": "array", "maxItems": 0 },
                },
            },
        ],
    });
    pool["required"] = json!(["type", "pool"]);
    pool["description"] = json!("A pool of single backends.");
    schemas.insert("SingleBackend".to_owned(), single);
    schemas.insert("PoolBackend".to_owned(), pool);
    schemas.insert(
        "BackendPut".to_owned(),
        json!({
            "description": "A Backend as PUT takes it: a single backend or a pool.",
            "oneOf": [
                { "$ref": "#/components/schemas/SingleBackend" },
                { "$ref": "#/components/schemas/PoolBackend" },
            ],
        }),
    );
}

/// Members a PUT takes and a PATCH refuses: (schema, member).
const PUT_ONLY: &[(&str, &str)] = &[("Api", "import")];

/// A PATCH body is a JSON merge patch (RFC 7386) of the resource, not the resource: every
/// member may be left out, and `null` resets a member to its default. Each PATCH operation gets
/// a `<Schema>Patch` component saying so: the resource's schema without `required`, where the
/// members that are optional in the resource also take `null`. (A member the resource
/// requires has no default to reset to, so `null` stays invalid there.) The patch applies to
/// nested objects too, so an object member points at its own `<Schema>Patch`, with the same
/// rules; in a map, `null` removes an entry. A nested object the resource does not have yet
/// must come whole: a part with nothing to complete it is refused with 409.
fn merge_patch_bodies(doc: &mut serde_json::Value) {
    use serde_json::{Value, json};
    let wanted = redirect_bodies(doc, "patch", "Patch", |_| true);
    let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    let mut queue: Vec<(String, bool)> = wanted.into_iter().map(|n| (n, true)).collect();
    while let Some((name, top)) = queue.pop() {
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
        // Rules over several members hold for the patched resource, which is the server's to
        // check: a part of it need not keep them.
        if let Some(o) = patch.as_object_mut() {
            o.remove("allOf");
        }
        if let Some(properties) = patch.get_mut("properties").and_then(Value::as_object_mut) {
            for (schema, member) in PUT_ONLY {
                if top && *schema == name {
                    properties.remove(*member);
                }
            }
            for (member, schema) in properties.iter_mut() {
                for nested in nested_objects(schema, schemas) {
                    queue.push((nested, false));
                }
                patch_nested(schema, schemas);
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
        patch["description"] = json!(if top {
            format!(
                "A JSON merge patch (RFC 7386) of a {name}: members left out keep their value, \
                 `null` resets an optional member to its default."
            )
        } else {
            format!(
                "A {name} inside a JSON merge patch: members left out keep their value, `null` \
                 resets an optional member to its default. Where there is no {name} yet, give \
                 it whole."
            )
        });
        schemas.insert(patch_name, patch);
    }
}

/// The object components a member's schema refers to, directly or as `oneOf` with `null`.
fn nested_objects(
    schema: &serde_json::Value,
    schemas: &serde_json::Map<String, serde_json::Value>,
) -> Vec<String> {
    use serde_json::Value;
    let refs: Vec<&Value> = match schema.get("oneOf").and_then(Value::as_array) {
        Some(parts) => parts.iter().collect(),
        None => vec![schema],
    };
    refs.into_iter()
        .filter_map(|s| s.get("$ref").and_then(Value::as_str))
        .filter_map(|r| r.strip_prefix("#/components/schemas/"))
        .filter(|n| {
            schemas
                .get(*n)
                .is_some_and(|s| s.get("properties").is_some())
        })
        .map(str::to_owned)
        .collect()
}

/// Points a member's references to object components at their `<Schema>Patch`, and lets the
/// entries of a map be `null`.
fn patch_nested(
    schema: &mut serde_json::Value,
    schemas: &serde_json::Map<String, serde_json::Value>,
) {
    use serde_json::Value;
    let objects = nested_objects(schema, schemas);
    let mut retarget = |s: &mut Value| {
        if let Some(Value::String(r)) = s.get_mut("$ref")
            && let Some(name) = r.strip_prefix("#/components/schemas/")
            && objects.iter().any(|o| o == name)
        {
            *r = format!("{r}Patch");
        }
    };
    match schema.get_mut("oneOf").and_then(Value::as_array_mut) {
        Some(parts) => parts.iter_mut().for_each(&mut retarget),
        None => retarget(schema),
    }
    if let Some(entries) = schema.get_mut("additionalProperties")
        && entries.is_object()
    {
        nullable(entries);
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
        Some(Value::String(t)) if t == "null" => {}
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
