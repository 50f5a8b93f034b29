//! `/mgmt/loggers`: where `log-to-eventhub` sends messages (Azure Event Hubs, or an `http` or
//! `otlp` sink of the user's own). Connection strings and endpoint headers are sealed at rest,
//! shown masked by `GET`, and a `PUT` or `PATCH` that sends the masked value back keeps the
//! stored secret. A logger a policy names cannot be deleted.

use axum::Json;
use axum::http::StatusCode;
use gatehouse_model::loggers::Logger;
use gatehouse_model::resources::Collection;

use super::{Cp, saved};
use crate::error::{ApiResult, ErrorBody};
use crate::http::{JsonBody, Paging, Path, Query};
use crate::service::loggers as service;

#[utoipa::path(get, path = "/mgmt/loggers", tag = "loggers", params(Paging),
    responses((status = 200, body = Collection<Logger>), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn list(cp: Cp, Query(paging): Query<Paging>) -> ApiResult<Json<Collection<Logger>>> {
    let items = service::list(&cp).await?;
    Ok(Json(paging.page("/mgmt/loggers", items)?))
}

#[utoipa::path(get, path = "/mgmt/loggers/{loggerId}", tag = "loggers",
    params(("loggerId" = String, Path)),
    responses((status = 200, body = Logger), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn get(cp: Cp, Path(id): Path<String>) -> ApiResult<Json<Logger>> {
    Ok(Json(service::get(&cp, &id).await?))
}

#[utoipa::path(put, path = "/mgmt/loggers/{loggerId}", tag = "loggers",
    params(("loggerId" = String, Path)), request_body = Logger,
    responses((status = 200, body = Logger), (status = 201, body = Logger),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn put(
    cp: Cp,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Logger>,
) -> ApiResult<(StatusCode, Json<Logger>)> {
    Ok(saved(service::put(&cp, &id, body).await?))
}

#[utoipa::path(patch, path = "/mgmt/loggers/{loggerId}", tag = "loggers",
    params(("loggerId" = String, Path)), request_body = Logger,
    responses((status = 200, body = Logger), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "The patch does not fit the stored logger's type")),
    security(("admin" = [])))]
pub async fn patch(
    cp: Cp,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> ApiResult<Json<Logger>> {
    Ok(Json(service::patch(&cp, &id, body).await?))
}

#[utoipa::path(delete, path = "/mgmt/loggers/{loggerId}", tag = "loggers",
    params(("loggerId" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "In use; the message says where")),
    security(("admin" = [])))]
pub async fn delete(cp: Cp, Path(id): Path<String>) -> ApiResult<StatusCode> {
    service::delete(&cp, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
