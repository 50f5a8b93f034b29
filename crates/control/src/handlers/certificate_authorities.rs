//! `/mgmt/gateways/{gatewayId}/certificateAuthorities`: the CA certificates a gateway trusts
//! beyond the operating system's, by certificate id. Stored as children of the gateway.

use axum::Json;
use axum::http::StatusCode;
use gatehouse_model::resources::{Collection, GatewayCertificateAuthority};

use super::{Cp, saved};
use crate::error::{ApiResult, ErrorBody};
use crate::http::{JsonBody, Paging, Path, Query};
use crate::service::certificate_authorities as service;

#[utoipa::path(get, path = "/mgmt/gateways/{gatewayId}/certificateAuthorities", tag = "gateways",
    operation_id = "certificate_authorities_list",
    params(("gatewayId" = String, Path), Paging),
    responses((status = 200, body = Collection<GatewayCertificateAuthority>),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn list(
    cp: Cp,
    Path(gateway): Path<String>,
    Query(paging): Query<Paging>,
) -> ApiResult<Json<Collection<GatewayCertificateAuthority>>> {
    let items = service::list(&cp, &gateway).await?;
    Ok(Json(paging.page(
        &format!("/mgmt/gateways/{gateway}/certificateAuthorities"),
        items,
    )?))
}

#[utoipa::path(get, path = "/mgmt/gateways/{gatewayId}/certificateAuthorities/{certificateId}",
    tag = "gateways",
    operation_id = "certificate_authorities_get",
    params(("gatewayId" = String, Path), ("certificateId" = String, Path)),
    responses((status = 200, body = GatewayCertificateAuthority), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn get(
    cp: Cp,
    Path((gateway, id)): Path<(String, String)>,
) -> ApiResult<Json<GatewayCertificateAuthority>> {
    Ok(Json(service::get(&cp, &gateway, &id).await?))
}

#[utoipa::path(put, path = "/mgmt/gateways/{gatewayId}/certificateAuthorities/{certificateId}",
    tag = "gateways",
    operation_id = "certificate_authorities_put",
    params(("gatewayId" = String, Path), ("certificateId" = String, Path)),
    request_body = GatewayCertificateAuthority,
    responses((status = 200, body = GatewayCertificateAuthority),
              (status = 201, body = GatewayCertificateAuthority),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn put(
    cp: Cp,
    Path((gateway, id)): Path<(String, String)>,
    JsonBody(ca): JsonBody<GatewayCertificateAuthority>,
) -> ApiResult<(StatusCode, Json<GatewayCertificateAuthority>)> {
    Ok(saved(service::put(&cp, &gateway, &id, ca).await?))
}

#[utoipa::path(delete, path = "/mgmt/gateways/{gatewayId}/certificateAuthorities/{certificateId}",
    tag = "gateways",
    operation_id = "certificate_authorities_delete",
    params(("gatewayId" = String, Path), ("certificateId" = String, Path)),
    responses((status = 204, description = "Unassigned"), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn delete(cp: Cp, Path((gateway, id)): Path<(String, String)>) -> ApiResult<StatusCode> {
    service::delete(&cp, &gateway, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
