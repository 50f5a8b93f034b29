//! Gateway resources and the APIs assigned to each. The built-in gateway of `gatehouse up`
//! serves every API whatever its assignments.

use gatehouse_model::resources::{Api, Gateway, GatewayLocation, Resource};
use gatehouse_store::{Kind, Link, Record};

use super::{Saved, ServiceError, ServiceResult, check_id, commit, load, load_all, load_opt};
use crate::ControlPlane;
use crate::compile::BUILT_IN_GATEWAY;

/// Every gateway, ordered by id.
pub async fn list(cp: &ControlPlane) -> ServiceResult<Vec<Gateway>> {
    load_all::<Gateway>(cp, "").await
}

pub async fn get(cp: &ControlPlane, id: &str) -> ServiceResult<Gateway> {
    load::<Gateway>(cp, "", id).await
}

pub async fn put(cp: &ControlPlane, id: &str, body: Gateway) -> ServiceResult<Saved<Gateway>> {
    super::put_simple(cp, id, body).await
}

pub async fn patch(
    cp: &ControlPlane,
    id: &str,
    patch: serde_json::Value,
) -> ServiceResult<Gateway> {
    super::patch_simple(cp, id, patch).await
}

/// Deletes gateway `id` with its assignments, keys, instances, hostname configurations and
/// certificate authorities (the registry's children of a gateway).
pub async fn delete(cp: &ControlPlane, id: &str) -> ServiceResult<()> {
    super::delete_simple::<Gateway>(cp, id, &[]).await
}

/// Creates the built-in gateway's resource, unless it exists.
pub async fn ensure_built_in(cp: &ControlPlane) -> ServiceResult<()> {
    if load_opt::<Gateway>(cp, "", BUILT_IN_GATEWAY)
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

/// The APIs gateway `id` serves: those assigned to it, or every API for the built-in one.
pub async fn list_apis(cp: &ControlPlane, id: &str) -> ServiceResult<Vec<Api>> {
    load::<Gateway>(cp, "", id).await?;
    if id == BUILT_IN_GATEWAY {
        return load_all::<Api>(cp, "").await;
    }
    let mut apis = Vec::new();
    for api in cp.store().links(Link::GatewayApi).targets(id).await? {
        if let Some(api) = load_opt::<Api>(cp, "", &api).await? {
            apis.push(api);
        }
    }
    Ok(apis)
}

/// Assigns `api` to `gateway`; both must exist.
pub async fn add_api(cp: &ControlPlane, gateway: &str, api: &str) -> ServiceResult<Saved<Api>> {
    load::<Gateway>(cp, "", gateway).await?;
    let api = load::<Api>(cp, "", api).await?;
    let mut tx = cp.store().begin().await?;
    let created = tx.links(Link::GatewayApi).add(gateway, &api.id).await?;
    commit(cp, tx).await?;
    Ok(Saved {
        created,
        value: api,
    })
}

pub async fn remove_api(cp: &ControlPlane, gateway: &str, api: &str) -> ServiceResult<()> {
    check_id(Kind::Gateway, gateway)?;
    check_id(Kind::Api, api)?;
    let mut tx = cp.store().begin().await?;
    if !tx.links(Link::GatewayApi).remove(gateway, api).await? {
        return Err(ServiceError::NotFound(format!(
            "API '{api}' is not assigned to gateway '{gateway}'."
        )));
    }
    commit(cp, tx).await?;
    Ok(())
}

/// Gateway `gateway`'s child resources of kind `R` (404 when the gateway does not exist).
pub(crate) async fn children<R: Resource + Record>(
    cp: &ControlPlane,
    gateway: &str,
) -> ServiceResult<Vec<R>> {
    load::<Gateway>(cp, "", gateway).await?;
    load_all::<R>(cp, gateway).await
}

/// Deletes a gateway's child resource; `missing` when there was none.
pub(crate) async fn delete_child<R: Resource + Record>(
    cp: &ControlPlane,
    gateway: &str,
    id: &str,
    missing: ServiceError,
) -> ServiceResult<()> {
    let mut tx = cp.store().begin().await?;
    if !tx.repo::<R>().delete(gateway, id).await? {
        return Err(missing);
    }
    commit(cp, tx).await?;
    Ok(())
}
