//! `/mgmt/gateways/{gatewayId}/hostnameConfigurations`: the hostnames a gateway serves over
//! TLS, each with a certificate (that has its private key) chosen by SNI. Stored as children of
//! the gateway, so deleting the gateway removes them.

use axum::Json;
use axum::http::StatusCode;
use gatehouse_model::resources::{Collection, HostnameConfiguration};

use super::{Cp, saved};
use crate::error::{ApiResult, ErrorBody};
use crate::http::{JsonBody, Paging, Path, Query};
use crate::service::hostname_configurations as service;

#[utoipa::path(get, path = "/mgmt/gateways/{gatewayId}/hostnameConfigurations", tag = "gateways",
    operation_id = "hostname_configurations_list",
    params(("gatewayId" = String, Path), Paging),
    responses((status = 200, body = Collection<HostnameConfiguration>),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn list(
    cp: Cp,
    Path(gateway): Path<String>,
    Query(paging): Query<Paging>,
) -> ApiResult<Json<Collection<HostnameConfiguration>>> {
    let items = service::list(&cp, &gateway).await?;
    Ok(Json(paging.page(
        &format!("/mgmt/gateways/{gateway}/hostnameConfigurations"),
        items,
    )?))
}

#[utoipa::path(get, path = "/mgmt/gateways/{gatewayId}/hostnameConfigurations/{hcId}",
    tag = "gateways",
    operation_id = "hostname_configurations_get",
    params(("gatewayId" = String, Path), ("hcId" = String, Path)),
    responses((status = 200, body = HostnameConfiguration), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn get(
    cp: Cp,
    Path((gateway, id)): Path<(String, String)>,
) -> ApiResult<Json<HostnameConfiguration>> {
    Ok(Json(service::get(&cp, &gateway, &id).await?))
}

#[utoipa::path(put, path = "/mgmt/gateways/{gatewayId}/hostnameConfigurations/{hcId}",
    tag = "gateways",
    operation_id = "hostname_configurations_put",
    params(("gatewayId" = String, Path), ("hcId" = String, Path)),
    request_body = HostnameConfiguration,
    responses((status = 200, body = HostnameConfiguration),
              (status = 201, body = HostnameConfiguration), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody, description = "The gateway or the certificate does not exist"),
              (status = 409, body = ErrorBody, description = "The certificate has no private key, or another configuration of the gateway has the hostname")),
    security(("admin" = [])))]
pub async fn put(
    cp: Cp,
    Path((gateway, id)): Path<(String, String)>,
    JsonBody(hc): JsonBody<HostnameConfiguration>,
) -> ApiResult<(StatusCode, Json<HostnameConfiguration>)> {
    Ok(saved(service::put(&cp, &gateway, &id, hc).await?))
}

#[utoipa::path(delete, path = "/mgmt/gateways/{gatewayId}/hostnameConfigurations/{hcId}",
    tag = "gateways",
    operation_id = "hostname_configurations_delete",
    params(("gatewayId" = String, Path), ("hcId" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn delete(cp: Cp, Path((gateway, id)): Path<(String, String)>) -> ApiResult<StatusCode> {
    service::delete(&cp, &gateway, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
