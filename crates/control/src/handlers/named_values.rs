//! `/mgmt/named-values`: values policies refer to as `{{name}}`. Secret values are stored
//! encrypted and never returned by `GET`; `listValue` reveals one.

use axum::Json;
use axum::http::StatusCode;
use gatehouse_model::resources::{Collection, NamedValue};
use gatehouse_store::Kind;
use serde::Serialize;
use utoipa::ToSchema;

use super::{Cp, check_id, commit, load, merge, prepare, save, saved};
use crate::ControlPlane;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::{JsonBody, Paging, Path, Query};

/// The stored form with the value of a secret hidden.
fn present(mut nv: NamedValue) -> NamedValue {
    if nv.secret {
        nv.value = None;
    }
    nv
}

fn reveal(cp: &ControlPlane, mut nv: NamedValue) -> ApiResult<NamedValue> {
    if nv.secret
        && let Some(v) = &nv.value
    {
        nv.value = Some(
            cp.sealer()
                .open(v)
                .map_err(|e| ApiError::Internal(e.to_string()))?,
        );
    }
    Ok(nv)
}

fn seal(cp: &ControlPlane, mut nv: NamedValue) -> ApiResult<NamedValue> {
    if nv.secret
        && let Some(v) = &nv.value
    {
        nv.value = Some(
            cp.sealer()
                .seal(v)
                .map_err(|e| ApiError::Internal(e.to_string()))?,
        );
    }
    Ok(nv)
}

#[utoipa::path(get, path = "/mgmt/named-values", tag = "named-values", params(Paging),
    responses((status = 200, body = Collection<NamedValue>), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn list(cp: Cp, Query(paging): Query<Paging>) -> ApiResult<Json<Collection<NamedValue>>> {
    let items = super::load_all::<NamedValue>(&cp, "")
        .await?
        .into_iter()
        .map(present)
        .collect();
    Ok(Json(paging.page("/mgmt/named-values", items)?))
}

#[utoipa::path(get, path = "/mgmt/named-values/{namedValueId}", tag = "named-values",
    params(("namedValueId" = String, Path)),
    responses((status = 200, body = NamedValue), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn get(cp: Cp, Path(id): Path<String>) -> ApiResult<Json<NamedValue>> {
    Ok(Json(present(load::<NamedValue>(&cp, "", &id).await?)))
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
    let nv = prepare(body, &id)?;
    super::policies::check_named_value_change(&cp, &id, nv.value.as_deref().unwrap_or_default())
        .await?;
    super::backends::check_named_value_change(&cp, &id, nv.value.as_deref().unwrap_or_default())
        .await?;
    let mut tx = cp.store().begin().await?;
    let created = save(&mut tx, "", &seal(&cp, nv.clone())?).await?;
    commit(&cp, tx).await?;
    Ok(saved(created, present(nv)))
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
    let existing = reveal(&cp, load::<NamedValue>(&cp, "", &id).await?)?;
    let nv = merge(&existing, body)?;
    super::policies::check_named_value_change(&cp, &id, nv.value.as_deref().unwrap_or_default())
        .await?;
    super::backends::check_named_value_change(&cp, &id, nv.value.as_deref().unwrap_or_default())
        .await?;
    let mut tx = cp.store().begin().await?;
    save(&mut tx, "", &seal(&cp, nv.clone())?).await?;
    commit(&cp, tx).await?;
    Ok(Json(present(nv)))
}

#[utoipa::path(delete, path = "/mgmt/named-values/{namedValueId}", tag = "named-values",
    params(("namedValueId" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "In use; the message says where")),
    security(("admin" = [])))]
pub async fn delete(cp: Cp, Path(id): Path<String>) -> ApiResult<StatusCode> {
    check_id(Kind::NamedValue, &id)?;
    let users = super::policies::users_of(&cp, &id).await?;
    if !users.is_empty() {
        return Err(ApiError::Conflict(format!(
            "Named value '{id}' is used by the policy of {}; remove it there first",
            users.join(", ")
        )));
    }
    let mut tx = cp.store().begin().await?;
    if !tx.repo::<NamedValue>().delete("", &id).await? {
        return Err(ApiError::not_found("Named value", &id));
    }
    commit(&cp, tx).await?;
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
    let nv = reveal(&cp, load::<NamedValue>(&cp, "", &id).await?)?;
    Ok(Json(NamedValueSecret {
        value: nv.value.unwrap_or_default(),
    }))
}
