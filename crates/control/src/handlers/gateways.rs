//! `/mgmt/gateways`: gateway resources and the APIs assigned to each. The built-in gateway of
//! `gatehouse up` serves every API whatever its assignments.

use axum::Json;
use axum::http::StatusCode;
use gatehouse_model::resources::{Api, Collection, Gateway};

use super::{Cp, saved};
use crate::error::{ApiResult, ErrorBody};
use crate::http::{Paging, Path, Query};
use crate::service::gateways as service;

crate::handlers::simple_crud! {
    type: Gateway,
    service: gateways,
    tag: "gateways",
    collection: "/mgmt/gateways",
    item: "/mgmt/gateways/{gatewayId}",
    param: "gatewayId"
}

#[utoipa::path(get, path = "/mgmt/gateways/{gatewayId}/apis", tag = "gateways",
    params(("gatewayId" = String, Path), Paging),
    responses((status = 200, body = Collection<Api>), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn list_apis(
    cp: Cp,
    Path(id): Path<String>,
    Query(paging): Query<Paging>,
) -> ApiResult<Json<Collection<Api>>> {
    let apis = service::list_apis(&cp, &id).await?;
    Ok(Json(
        paging.page(&format!("/mgmt/gateways/{id}/apis"), apis)?,
    ))
}

#[utoipa::path(put, path = "/mgmt/gateways/{gatewayId}/apis/{apiId}", tag = "gateways",
    params(("gatewayId" = String, Path), ("apiId" = String, Path)),
    responses((status = 200, body = Api), (status = 201, body = Api),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn add_api(
    cp: Cp,
    Path((gateway, api)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<Api>)> {
    Ok(saved(service::add_api(&cp, &gateway, &api).await?))
}

#[utoipa::path(delete, path = "/mgmt/gateways/{gatewayId}/apis/{apiId}", tag = "gateways",
    params(("gatewayId" = String, Path), ("apiId" = String, Path)),
    responses((status = 204, description = "Unassigned"), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn remove_api(
    cp: Cp,
    Path((gateway, api)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    service::remove_api(&cp, &gateway, &api).await?;
    Ok(StatusCode::NO_CONTENT)
}
