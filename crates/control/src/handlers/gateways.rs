//! `/mgmt/gateways`: gateway resources and the APIs assigned to each. The built-in gateway of
//! `gatehouse up` serves every API whatever its assignments.

use axum::Json;
use axum::http::StatusCode;
use gatehouse_model::resources::{Api, Collection, Gateway, GatewayLocation};
use gatehouse_store::{Kind, Link};

use super::{Cp, check_id, commit, load, saved};
use crate::ControlPlane;
use crate::compile::BUILT_IN_GATEWAY;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::{Paging, Path, Query};

// Deleting a gateway deletes its assignments, keys, instances, hostname configurations and
// certificate authorities (the registry's children of a gateway).
crate::handlers::simple_crud! {
    type: Gateway,
    tag: "gateways",
    collection: "/mgmt/gateways",
    item: "/mgmt/gateways/{gatewayId}",
    param: "gatewayId"
}

pub async fn ensure_built_in(cp: &ControlPlane) -> ApiResult<()> {
    if super::load_opt::<Gateway>(cp, "", BUILT_IN_GATEWAY)
        .await?
        .is_some()
    {
        return Ok(());
    }
    let gateway = Gateway {
        id: BUILT_IN_GATEWAY.to_owned(),
        description: Some("The gateway built into `gatehouse up`; it serves every API.".into()),
        location_data: Some(GatewayLocation {
            name: "built-in".into(),
            ..GatewayLocation::default()
        }),
    };
    let mut tx = cp.store().begin().await?;
    tx.repo::<Gateway>()
        .put("", BUILT_IN_GATEWAY, &gateway)
        .await?;
    commit(cp, tx).await?;
    Ok(())
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
    load::<Gateway>(&cp, "", &id).await?;
    let apis = if id == BUILT_IN_GATEWAY {
        super::load_all::<Api>(&cp, "").await?
    } else {
        let mut apis = Vec::new();
        for api in cp.store().links(Link::GatewayApi).targets(&id).await? {
            if let Some(api) = super::load_opt::<Api>(&cp, "", &api).await? {
                apis.push(api);
            }
        }
        apis
    };
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
    load::<Gateway>(&cp, "", &gateway).await?;
    let api = load::<Api>(&cp, "", &api).await?;
    let mut tx = cp.store().begin().await?;
    let created = tx.links(Link::GatewayApi).add(&gateway, &api.id).await?;
    commit(&cp, tx).await?;
    Ok(saved(super::Saved {
        created,
        value: api,
    }))
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
    check_id(Kind::Gateway, &gateway)?;
    check_id(Kind::Api, &api)?;
    let mut tx = cp.store().begin().await?;
    if !tx.links(Link::GatewayApi).remove(&gateway, &api).await? {
        return Err(ApiError::NotFound(format!(
            "API '{api}' is not assigned to gateway '{gateway}'."
        )));
    }
    commit(&cp, tx).await?;
    Ok(StatusCode::NO_CONTENT)
}
