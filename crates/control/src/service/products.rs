//! Products, and the APIs each product holds: what a subscription to the product opens.

use gatehouse_model::resources::{Api, Product};
use gatehouse_store::{Kind, Link};

use super::{Saved, ServiceError, ServiceResult, check_id, commit, load, load_opt};
use crate::ControlPlane;

/// Every product, ordered by id.
pub async fn list(cp: &ControlPlane) -> ServiceResult<Vec<Product>> {
    super::load_all::<Product>(cp, "").await
}

pub async fn get(cp: &ControlPlane, id: &str) -> ServiceResult<Product> {
    load::<Product>(cp, "", id).await
}

pub async fn put(cp: &ControlPlane, id: &str, body: Product) -> ServiceResult<Saved<Product>> {
    super::put_simple(cp, id, body).await
}

pub async fn patch(
    cp: &ControlPlane,
    id: &str,
    patch: serde_json::Value,
) -> ServiceResult<Product> {
    super::patch_simple(cp, id, patch).await
}

/// Deletes product `id` with its API links, group links and policy (the registry's children
/// of a product).
pub async fn delete(cp: &ControlPlane, id: &str) -> ServiceResult<()> {
    super::delete_simple::<Product>(cp, id, &[]).await
}

/// The APIs of product `id` (404 when there is no such product).
pub async fn list_apis(cp: &ControlPlane, id: &str) -> ServiceResult<Vec<Api>> {
    load::<Product>(cp, "", id).await?;
    let mut apis = Vec::new();
    for api in cp.store().links(Link::ProductApi).targets(id).await? {
        if let Some(api) = load_opt::<Api>(cp, "", &api).await? {
            apis.push(api);
        }
    }
    Ok(apis)
}

/// Adds `api` to `product`; both must exist.
pub async fn add_api(cp: &ControlPlane, product: &str, api: &str) -> ServiceResult<Saved<Api>> {
    load::<Product>(cp, "", product).await?;
    let api = load::<Api>(cp, "", api).await?;
    let mut tx = cp.store().begin().await?;
    let created = tx.links(Link::ProductApi).add(product, &api.id).await?;
    commit(cp, tx).await?;
    Ok(Saved {
        created,
        value: api,
    })
}

pub async fn remove_api(cp: &ControlPlane, product: &str, api: &str) -> ServiceResult<()> {
    check_id(Kind::Product, product)?;
    check_id(Kind::Api, api)?;
    let mut tx = cp.store().begin().await?;
    if !tx.links(Link::ProductApi).remove(product, api).await? {
        return Err(ServiceError::NotFound(format!(
            "API '{api}' is not in product '{product}'."
        )));
    }
    commit(cp, tx).await?;
    Ok(())
}
