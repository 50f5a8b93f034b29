//! `/mgmt/named-values`: values policies refer to as `{{name}}`. Secret values are stored
//! encrypted and never returned by `GET`; `listValue` reveals one.

use axum::Json;
use axum::http::StatusCode;
use gatehouse_model::resources::{Collection, NamedValue};
use serde::Serialize;
use utoipa::ToSchema;

use super::{Cp, saved};
use crate::error::{ApiResult, ErrorBody};
use crate::http::{JsonBody, Paging, Path, Query};
use crate::service::named_values as service;

#[utoipa::path(get, path = "/mgmt/named-values", tag = "named-values", params(Paging),
    responses((status = 200, body = Collection<NamedValue>), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn list(cp: Cp, Query(paging): Query<Paging>) -> ApiResult<Json<Collection<NamedValue>>> {
    let items = service::list(&cp).await?;
    Ok(Json(paging.page("/mgmt/named-values", items)?))
}

#[utoipa::path(get, path = "/mgmt/named-values/{namedValueId}", tag = "named-values",
    params(("namedValueId" = String, Path)),
    responses((status = 200, body = NamedValue), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn get(cp: Cp, Path(id): Path<String>) -> ApiResult<Json<NamedValue>> {
    Ok(Json(service::get(&cp, &id).await?))
}

#[utoipa::path(put, path = "/mgmt/named-values/{namedValueId}", tag = "named-values",
    params(("namedValueId" = String, Path)), request_body = NamedValue,
    responses((status = 200, body = NamedValue), (status = 201, body = NamedValue),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn put(
    cp: Cp,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<NamedValue>,
) -> ApiResult<(StatusCode, Json<NamedValue>)> {
    Ok(saved(service::put(&cp, &id, body).await?))
}

#[utoipa::path(patch, path = "/mgmt/named-values/{namedValueId}", tag = "named-values",
    params(("namedValueId" = String, Path)), request_body = NamedValue,
    responses((status = 200, body = NamedValue), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn patch(
    cp: Cp,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> ApiResult<Json<NamedValue>> {
    Ok(Json(service::patch(&cp, &id, body).await?))
}

#[utoipa::path(delete, path = "/mgmt/named-values/{namedValueId}", tag = "named-values",
    params(("namedValueId" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "In use; the message says where")),
    security(("admin" = [])))]
pub async fn delete(cp: Cp, Path(id): Path<String>) -> ApiResult<StatusCode> {
    service::delete(&cp, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NamedValueSecret {
    pub value: String,
}

#[utoipa::path(post, path = "/mgmt/named-values/{namedValueId}/listValue", tag = "named-values",
    params(("namedValueId" = String, Path)),
    responses((status = 200, body = NamedValueSecret), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn list_value(cp: Cp, Path(id): Path<String>) -> ApiResult<Json<NamedValueSecret>> {
    let value = service::value(&cp, &id).await?;
    Ok(Json(NamedValueSecret { value }))
}
