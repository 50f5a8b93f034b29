//! Policy documents at the four scopes: `/mgmt/policy` (global), `/mgmt/products/{id}/policy`,
//! `/mgmt/apis/{id}/policy` and `/mgmt/apis/{id}/operations/{op}/policy`.
//!
//! The body is the XML itself (`application/xml`), or Azure's JSON form
//! `{"value": "<policies>…"}` (any JSON content type); `crate::service::policies` compiles it
//! and refuses a policy that would not run with 400 and the line and column of each problem.

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gatehouse_store::PolicyScope;

use super::Cp;
use crate::error::{ApiResult, ErrorBody};
use crate::http::Path;
use crate::service::policies::{self as service, Form};

/// The form of a document, from its content type.
fn form(headers: &HeaderMap) -> Form {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.contains("json"));
    if json { Form::Json } else { Form::Xml }
}

async fn get_doc(cp: &Cp, scope: PolicyScope) -> ApiResult<Response> {
    let xml = service::get(cp, &scope).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
        xml,
    )
        .into_response())
}

async fn put_doc(
    cp: &Cp,
    scope: PolicyScope,
    headers: &HeaderMap,
    body: &Bytes,
) -> ApiResult<Response> {
    let saved = service::put(cp, &scope, body, form(headers)).await?;
    let status = if saved.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
        saved.value,
    )
        .into_response())
}

async fn delete_doc(cp: &Cp, scope: PolicyScope) -> ApiResult<StatusCode> {
    service::delete(cp, &scope).await?;
    Ok(StatusCode::NO_CONTENT)
}

const XML_DESC: &str =
    "The policy document: <policies><inbound/><backend/><outbound/><on-error/></policies>";

#[utoipa::path(get, path = "/mgmt/policy", tag = "policies",
    responses((status = 200, description = XML_DESC, content_type = "application/xml", body = String),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn get_global(cp: Cp) -> ApiResult<Response> {
    get_doc(&cp, PolicyScope::Global).await
}

#[utoipa::path(put, path = "/mgmt/policy", tag = "policies",
    request_body(content = String, content_type = "application/xml", description = XML_DESC),
    responses((status = 200, description = XML_DESC, content_type = "application/xml", body = String),
              (status = 201, description = XML_DESC, content_type = "application/xml", body = String),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn put_global(cp: Cp, headers: HeaderMap, body: Bytes) -> ApiResult<Response> {
    put_doc(&cp, PolicyScope::Global, &headers, &body).await
}

#[utoipa::path(delete, path = "/mgmt/policy", tag = "policies",
    responses((status = 204, description = "Back to the default global policy"),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn delete_global(cp: Cp) -> ApiResult<StatusCode> {
    delete_doc(&cp, PolicyScope::Global).await
}

#[utoipa::path(get, path = "/mgmt/products/{productId}/policy", tag = "policies",
    params(("productId" = String, Path)),
    responses((status = 200, description = XML_DESC, content_type = "application/xml", body = String),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn get_product(cp: Cp, Path(id): Path<String>) -> ApiResult<Response> {
    get_doc(&cp, PolicyScope::Product(id)).await
}

#[utoipa::path(put, path = "/mgmt/products/{productId}/policy", tag = "policies",
    params(("productId" = String, Path)),
    request_body(content = String, content_type = "application/xml", description = XML_DESC),
    responses((status = 200, description = XML_DESC, content_type = "application/xml", body = String),
              (status = 201, description = XML_DESC, content_type = "application/xml", body = String),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn put_product(
    cp: Cp,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    put_doc(&cp, PolicyScope::Product(id), &headers, &body).await
}

#[utoipa::path(delete, path = "/mgmt/products/{productId}/policy", tag = "policies",
    params(("productId" = String, Path)),
    responses((status = 204, description = "Removed"), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn delete_product(cp: Cp, Path(id): Path<String>) -> ApiResult<StatusCode> {
    delete_doc(&cp, PolicyScope::Product(id)).await
}

#[utoipa::path(get, path = "/mgmt/apis/{apiId}/policy", tag = "policies",
    params(("apiId" = String, Path)),
    responses((status = 200, description = XML_DESC, content_type = "application/xml", body = String),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn get_api(cp: Cp, Path(id): Path<String>) -> ApiResult<Response> {
    get_doc(&cp, PolicyScope::Api(id)).await
}

#[utoipa::path(put, path = "/mgmt/apis/{apiId}/policy", tag = "policies",
    params(("apiId" = String, Path)),
    request_body(content = String, content_type = "application/xml", description = XML_DESC),
    responses((status = 200, description = XML_DESC, content_type = "application/xml", body = String),
              (status = 201, description = XML_DESC, content_type = "application/xml", body = String),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn put_api(
    cp: Cp,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    put_doc(&cp, PolicyScope::Api(id), &headers, &body).await
}

#[utoipa::path(delete, path = "/mgmt/apis/{apiId}/policy", tag = "policies",
    params(("apiId" = String, Path)),
    responses((status = 204, description = "Removed"), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn delete_api(cp: Cp, Path(id): Path<String>) -> ApiResult<StatusCode> {
    delete_doc(&cp, PolicyScope::Api(id)).await
}

#[utoipa::path(get, path = "/mgmt/apis/{apiId}/operations/{operationId}/policy", tag = "policies",
    params(("apiId" = String, Path), ("operationId" = String, Path)),
    responses((status = 200, description = XML_DESC, content_type = "application/xml", body = String),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn get_operation(cp: Cp, Path((api, op)): Path<(String, String)>) -> ApiResult<Response> {
    get_doc(&cp, PolicyScope::Operation { api, operation: op }).await
}

#[utoipa::path(put, path = "/mgmt/apis/{apiId}/operations/{operationId}/policy", tag = "policies",
    params(("apiId" = String, Path), ("operationId" = String, Path)),
    request_body(content = String, content_type = "application/xml", description = XML_DESC),
    responses((status = 200, description = XML_DESC, content_type = "application/xml", body = String),
              (status = 201, description = XML_DESC, content_type = "application/xml", body = String),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn put_operation(
    cp: Cp,
    Path((api, op)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let scope = PolicyScope::Operation { api, operation: op };
    put_doc(&cp, scope, &headers, &body).await
}

#[utoipa::path(delete, path = "/mgmt/apis/{apiId}/operations/{operationId}/policy", tag = "policies",
    params(("apiId" = String, Path), ("operationId" = String, Path)),
    responses((status = 204, description = "Removed"), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn delete_operation(
    cp: Cp,
    Path((api, op)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    delete_doc(&cp, PolicyScope::Operation { api, operation: op }).await
}
