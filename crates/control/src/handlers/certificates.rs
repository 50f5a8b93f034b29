//! `/mgmt/certificates`: TLS certificates for the gateways' hostname configurations and
//! certificate authorities. The PEM `data` is parsed, checked and sealed by
//! `crate::service::certificates`; `GET` shows only what the leaf says of itself (subject,
//! thumbprint, expiry) and whether there is a key.

use axum::Json;
use axum::http::StatusCode;
use gatehouse_model::resources::{Certificate, Collection};

use super::{Cp, saved};
use crate::error::{ApiResult, ErrorBody};
use crate::http::{JsonBody, Paging, Path, Query};
use crate::service::certificates as service;

#[utoipa::path(get, path = "/mgmt/certificates", tag = "certificates", params(Paging),
    responses((status = 200, body = Collection<Certificate>), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn list(
    cp: Cp,
    Query(paging): Query<Paging>,
) -> ApiResult<Json<Collection<Certificate>>> {
    let items = service::list(&cp).await?;
    Ok(Json(paging.page("/mgmt/certificates", items)?))
}

#[utoipa::path(get, path = "/mgmt/certificates/{certificateId}", tag = "certificates",
    params(("certificateId" = String, Path)),
    responses((status = 200, body = Certificate), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn get(cp: Cp, Path(id): Path<String>) -> ApiResult<Json<Certificate>> {
    Ok(Json(service::get(&cp, &id).await?))
}

#[utoipa::path(put, path = "/mgmt/certificates/{certificateId}", tag = "certificates",
    params(("certificateId" = String, Path)), request_body = Certificate,
    responses((status = 200, body = Certificate), (status = 201, body = Certificate),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn put(
    cp: Cp,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Certificate>,
) -> ApiResult<(StatusCode, Json<Certificate>)> {
    Ok(saved(service::put(&cp, &id, body).await?))
}

#[utoipa::path(delete, path = "/mgmt/certificates/{certificateId}", tag = "certificates",
    params(("certificateId" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "In use; the message says where")),
    security(("admin" = [])))]
pub async fn delete(cp: Cp, Path(id): Path<String>) -> ApiResult<StatusCode> {
    service::delete(&cp, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
#[path = "certificates/tests.rs"]
mod tests;
