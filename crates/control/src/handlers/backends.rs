//! `/mgmt/backends`: backend services that policies route to with
//! `<set-backend-service backend-id="…"/>`, with the credentials and TLS settings gateways use
//! for them, and pools of them. What a backend must satisfy is in `crate::service::backends`.

use axum::Json;
use axum::http::StatusCode;
use gatehouse_model::resources::{Backend, Collection};

use super::{Cp, saved};
use crate::error::{ApiResult, ErrorBody};
use crate::http::{JsonBody, Paging, Path, Query};
use crate::service::backends as service;

#[utoipa::path(get, path = "/mgmt/backends", tag = "backends", params(Paging),
    responses((status = 200, body = Collection<Backend>), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn list(cp: Cp, Query(paging): Query<Paging>) -> ApiResult<Json<Collection<Backend>>> {
    let items = service::list(&cp).await?;
    Ok(Json(paging.page("/mgmt/backends", items)?))
}

#[utoipa::path(get, path = "/mgmt/backends/{backendId}", tag = "backends",
    params(("backendId" = String, Path)),
    responses((status = 200, body = Backend), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn get(cp: Cp, Path(id): Path<String>) -> ApiResult<Json<Backend>> {
    Ok(Json(service::get(&cp, &id).await?))
}

#[utoipa::path(put, path = "/mgmt/backends/{backendId}", tag = "backends",
    params(("backendId" = String, Path)), request_body = Backend,
    responses((status = 200, body = Backend), (status = 201, body = Backend),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody, description = "A certificate or named value the credentials name, or a member of the pool, does not exist"),
              (status = 409, body = ErrorBody, description = "The client certificate has no private key, a member of the pool is a pool, or a pool holds this backend and it would become one")),
    security(("admin" = [])))]
pub async fn put(
    cp: Cp,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Backend>,
) -> ApiResult<(StatusCode, Json<Backend>)> {
    Ok(saved(service::put(&cp, &id, body).await?))
}

#[utoipa::path(patch, path = "/mgmt/backends/{backendId}", tag = "backends",
    params(("backendId" = String, Path)), request_body = Backend,
    responses((status = 200, body = Backend), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody, description = "The backend, a certificate or named value its credentials name, or a member of the pool does not exist"),
              (status = 409, body = ErrorBody, description = "The client certificate has no private key, a member of the pool is a pool, or a pool holds this backend and it would become one")),
    security(("admin" = [])))]
pub async fn patch(
    cp: Cp,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> ApiResult<Json<Backend>> {
    Ok(Json(service::patch(&cp, &id, body).await?))
}

#[utoipa::path(delete, path = "/mgmt/backends/{backendId}", tag = "backends",
    params(("backendId" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "In use; the message says where")),
    security(("admin" = [])))]
pub async fn delete(cp: Cp, Path(id): Path<String>) -> ApiResult<StatusCode> {
    service::delete(&cp, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
