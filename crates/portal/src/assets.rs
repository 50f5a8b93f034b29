//! Static assets, embedded at build time: the portal's stylesheet and htmx from npm (see the
//! repository's package.json and this crate's build script). Cached by browsers for a day.

use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::error::PortalError;

#[derive(rust_embed::RustEmbed)]
#[folder = "$CARGO_MANIFEST_DIR/assets"]
struct Own;

#[derive(rust_embed::RustEmbed)]
#[folder = "$CARGO_MANIFEST_DIR/../../node_modules/htmx.org/dist"]
#[include = "htmx.min.js"]
struct Htmx;

pub async fn asset(Path(file): Path<String>) -> Response {
    let content = Own::get(&file).or_else(|| Htmx::get(&file));
    let Some(content) = content else {
        return PortalError::NotFound.into_response();
    };
    let mime = match file.rsplit('.').next() {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
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
