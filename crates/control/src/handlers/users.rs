//! `/mgmt/users`: the developer portal's accounts. Users sign up in the portal, which keeps
//! their argon2 password hash apart (`user-credentials`); this API never reads or returns it.
//! Admins list users, block them (`PATCH {"state":"blocked"}`) and put them in groups.

use axum::Json;
use axum::http::StatusCode;
use gatehouse_model::resources::{Collection, User};

use super::{Cp, saved};
use crate::error::{ApiResult, ErrorBody};
use crate::http::{JsonBody, Paging, Path, Query};
use crate::service::users as service;

#[utoipa::path(get, path = "/mgmt/users", tag = "users", params(Paging),
    responses((status = 200, body = Collection<User>), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn list(cp: Cp, Query(paging): Query<Paging>) -> ApiResult<Json<Collection<User>>> {
    let items = service::list(&cp).await?;
    Ok(Json(paging.page("/mgmt/users", items)?))
}

#[utoipa::path(get, path = "/mgmt/users/{userId}", tag = "users",
    params(("userId" = String, Path)),
    responses((status = 200, body = User), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "Another user has the email")),
    security(("admin" = [])))]
pub async fn get(cp: Cp, Path(id): Path<String>) -> ApiResult<Json<User>> {
    Ok(Json(service::get(&cp, &id).await?))
}

#[utoipa::path(put, path = "/mgmt/users/{userId}", tag = "users",
    params(("userId" = String, Path)), request_body = User,
    responses((status = 200, body = User), (status = 201, body = User),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "Another user has the email")),
    security(("admin" = [])))]
pub async fn put(
    cp: Cp,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<User>,
) -> ApiResult<(StatusCode, Json<User>)> {
    Ok(saved(service::put(&cp, &id, body).await?))
}

#[utoipa::path(patch, path = "/mgmt/users/{userId}", tag = "users",
    params(("userId" = String, Path)), request_body = User,
    responses((status = 200, body = User), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "Another user has the email")),
    security(("admin" = [])))]
pub async fn patch(
    cp: Cp,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> ApiResult<Json<User>> {
    Ok(Json(service::patch(&cp, &id, body).await?))
}

#[utoipa::path(delete, path = "/mgmt/users/{userId}", tag = "users",
    params(("userId" = String, Path)),
    responses((status = 204, description = "Deleted, with the password and group memberships"),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn delete(cp: Cp, Path(id): Path<String>) -> ApiResult<StatusCode> {
    service::delete(&cp, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
