//! The management API's own OpenAPI document (`/mgmt/openapi.json`) and its Swagger UI
//! (`/mgmt/docs`), served from assets embedded at build time from npm's swagger-ui-dist.

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::handlers::{apis, backends, gateways, named_values, products, subscriptions};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Gatehouse management API",
        description = "Manage the APIs, products, subscriptions, named values, backends and gateways of a Gatehouse control plane. Resource and property names follow Azure API Management. Every call needs `Authorization: Bearer <admin token>`.",
        license(name = "Apache-2.0")
    ),
    paths(
        apis::list, apis::get, apis::put, apis::patch, apis::delete, apis::get_document,
        apis::list_operations, apis::get_operation, apis::put_operation,
        apis::patch_operation, apis::delete_operation,
        products::list, products::get, products::put, products::patch, products::delete,
        products::list_apis, products::add_api, products::remove_api,
        subscriptions::list, subscriptions::get, subscriptions::put, subscriptions::patch,
        subscriptions::delete, subscriptions::list_secrets, subscriptions::regenerate_primary,
        subscriptions::regenerate_secondary,
        named_values::list, named_values::get, named_values::put, named_values::patch,
        named_values::delete, named_values::list_value,
        backends::list, backends::get, backends::put, backends::patch, backends::delete,
        gateways::list, gateways::get, gateways::put, gateways::patch, gateways::delete,
        gateways::list_apis, gateways::add_api, gateways::remove_api,
    ),
    modifiers(&AdminAuth),
    tags(
        (name = "apis", description = "APIs and their operations"),
        (name = "products", description = "Products group APIs for subscription"),
        (name = "subscriptions", description = "Subscriptions and their keys"),
        (name = "named-values", description = "Values policies refer to as {{name}}"),
        (name = "backends", description = "Backend services"),
        (name = "gateways", description = "Gateways and the APIs assigned to them"),
    )
)]
pub struct ApiDoc;

struct AdminAuth;

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
<script>
window.ui = SwaggerUIBundle({ url: "/mgmt/openapi.json", dom_id: "#swagger-ui", persistAuthorization: true });
</script>
</body>
</html>
"##;

pub fn router() -> Router {
    Router::new()
        .route("/mgmt/openapi.json", get(spec))
        .route("/mgmt/docs", get(|| async { Html(DOCS_PAGE) }))
        .route("/mgmt/docs/", get(|| async { Html(DOCS_PAGE) }))
        .route("/mgmt/docs/{file}", get(asset))
}

async fn spec() -> Response {
    match ApiDoc::openapi().to_json() {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot render the OpenAPI document");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn asset(Path(file): Path<String>) -> Response {
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
