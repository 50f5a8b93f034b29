//! `/mgmt/policy-fragments`: reusable policy XML (`<fragment>…</fragment>`) that policy
//! documents insert with `<include-fragment fragment-id="…"/>`. What is checked when one is
//! saved or deleted is in `crate::service::policy_fragments`.

use axum::Json;
use axum::http::StatusCode;
use gatehouse_model::resources::{Collection, PolicyFragment};

use super::{Cp, saved};
use crate::error::{ApiResult, ErrorBody};
use crate::http::{JsonBody, Paging, Path, Query};
use crate::service::policy_fragments as service;

#[utoipa::path(get, path = "/mgmt/policy-fragments", tag = "policy-fragments", params(Paging),
    responses((status = 200, body = Collection<PolicyFragment>), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn list(
    cp: Cp,
    Query(paging): Query<Paging>,
) -> ApiResult<Json<Collection<PolicyFragment>>> {
    let items = service::list(&cp).await?;
    Ok(Json(paging.page("/mgmt/policy-fragments", items)?))
}

#[utoipa::path(get, path = "/mgmt/policy-fragments/{fragmentId}", tag = "policy-fragments",
    params(("fragmentId" = String, Path)),
    responses((status = 200, body = PolicyFragment), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn get(cp: Cp, Path(id): Path<String>) -> ApiResult<Json<PolicyFragment>> {
    Ok(Json(service::get(&cp, &id).await?))
}

#[utoipa::path(put, path = "/mgmt/policy-fragments/{fragmentId}", tag = "policy-fragments",
    params(("fragmentId" = String, Path)), request_body = PolicyFragment,
    responses((status = 200, body = PolicyFragment), (status = 201, body = PolicyFragment),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn put(
    cp: Cp,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<PolicyFragment>,
) -> ApiResult<(StatusCode, Json<PolicyFragment>)> {
    Ok(saved(service::put(&cp, &id, body).await?))
}

#[utoipa::path(delete, path = "/mgmt/policy-fragments/{fragmentId}", tag = "policy-fragments",
    params(("fragmentId" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "In use; the message says where")),
    security(("admin" = [])))]
pub async fn delete(cp: Cp, Path(id): Path<String>) -> ApiResult<StatusCode> {
    service::delete(&cp, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
