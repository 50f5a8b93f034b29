//! `/mgmt/subscriptions`: who may call what. Keys are stored encrypted, next to their SHA-256
//! (what gateways receive); `GET` never returns them, `listSecrets` does.

use axum::Json;
use axum::http::StatusCode;
use gatehouse_model::resources::{Collection, Subscription, SubscriptionKeys};

use super::{Cp, saved};
use crate::error::{ApiResult, ErrorBody};
use crate::http::{JsonBody, Paging, Path, Query};
use crate::service::subscriptions as service;

#[utoipa::path(get, path = "/mgmt/subscriptions", tag = "subscriptions", params(Paging),
    responses((status = 200, body = Collection<Subscription>), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn list(
    cp: Cp,
    Query(paging): Query<Paging>,
) -> ApiResult<Json<Collection<Subscription>>> {
    let items = service::list(&cp).await?;
    Ok(Json(paging.page("/mgmt/subscriptions", items)?))
}

#[utoipa::path(get, path = "/mgmt/subscriptions/{subscriptionId}", tag = "subscriptions",
    params(("subscriptionId" = String, Path)),
    responses((status = 200, body = Subscription), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn get(cp: Cp, Path(id): Path<String>) -> ApiResult<Json<Subscription>> {
    Ok(Json(service::get(&cp, &id).await?))
}

#[utoipa::path(put, path = "/mgmt/subscriptions/{subscriptionId}", tag = "subscriptions",
    params(("subscriptionId" = String, Path)), request_body = Subscription,
    responses((status = 200, body = Subscription), (status = 201, body = Subscription),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody, description = "The API or product of the scope does not exist"),
              (status = 409, body = ErrorBody, description = "A chosen key is another subscription's")),
    security(("admin" = [])))]
pub async fn put(
    cp: Cp,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Subscription>,
) -> ApiResult<(StatusCode, Json<Subscription>)> {
    Ok(saved(service::put(&cp, &id, body).await?))
}

#[utoipa::path(patch, path = "/mgmt/subscriptions/{subscriptionId}", tag = "subscriptions",
    params(("subscriptionId" = String, Path)), request_body = Subscription,
    responses((status = 200, body = Subscription), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody, description = "The subscription, or the API or product of its scope, does not exist"),
              (status = 409, body = ErrorBody, description = "A chosen key is another subscription's")),
    security(("admin" = [])))]
pub async fn patch(
    cp: Cp,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> ApiResult<Json<Subscription>> {
    Ok(Json(service::patch(&cp, &id, body).await?))
}

#[utoipa::path(delete, path = "/mgmt/subscriptions/{subscriptionId}", tag = "subscriptions",
    params(("subscriptionId" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn delete(cp: Cp, Path(id): Path<String>) -> ApiResult<StatusCode> {
    service::delete(&cp, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/mgmt/subscriptions/{subscriptionId}/listSecrets",
    tag = "subscriptions", params(("subscriptionId" = String, Path)),
    responses((status = 200, body = SubscriptionKeys), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn list_secrets(cp: Cp, Path(id): Path<String>) -> ApiResult<Json<SubscriptionKeys>> {
    Ok(Json(service::list_secrets(&cp, &id).await?))
}

#[utoipa::path(post, path = "/mgmt/subscriptions/{subscriptionId}/regeneratePrimaryKey",
    tag = "subscriptions", params(("subscriptionId" = String, Path)),
    responses((status = 204, description = "Regenerated; the old key stops working"),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn regenerate_primary(cp: Cp, Path(id): Path<String>) -> ApiResult<StatusCode> {
    service::regenerate(&cp, &id, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/mgmt/subscriptions/{subscriptionId}/regenerateSecondaryKey",
    tag = "subscriptions", params(("subscriptionId" = String, Path)),
    responses((status = 204, description = "Regenerated; the old key stops working"),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn regenerate_secondary(cp: Cp, Path(id): Path<String>) -> ApiResult<StatusCode> {
    service::regenerate(&cp, &id, false).await?;
    Ok(StatusCode::NO_CONTENT)
}
