//! `/mgmt/products` and the APIs each product holds (`/mgmt/products/{id}/apis/{api}`).

use axum::Json;
use axum::http::StatusCode;
use gatehouse_model::resources::{Api, Collection, Product};
use gatehouse_store::{Kind, Link};

use super::{Cp, check_id, commit, load, saved};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::{Paging, Path, Query};

// Deleting a product deletes its API links, group links and policy (the registry's children
// of a product).
crate::handlers::simple_crud! {
    type: Product,
    tag: "products",
    collection: "/mgmt/products",
    item: "/mgmt/products/{productId}",
    param: "productId"
}

#[utoipa::path(get, path = "/mgmt/products/{productId}/apis", tag = "products",
    params(("productId" = String, Path), Paging),
    responses((status = 200, body = Collection<Api>), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn list_apis(
    cp: Cp,
    Path(id): Path<String>,
    Query(paging): Query<Paging>,
) -> ApiResult<Json<Collection<Api>>> {
    load::<Product>(&cp, "", &id).await?;
    let mut apis = Vec::new();
    for api in cp.store().links(Link::ProductApi).targets(&id).await? {
        if let Some(api) = super::load_opt::<Api>(&cp, "", &api).await? {
            apis.push(api);
        }
    }
    Ok(Json(
        paging.page(&format!("/mgmt/products/{id}/apis"), apis)?,
    ))
}

#[utoipa::path(put, path = "/mgmt/products/{productId}/apis/{apiId}", tag = "products",
    params(("productId" = String, Path), ("apiId" = String, Path)),
    responses((status = 200, body = Api), (status = 201, body = Api),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn add_api(
    cp: Cp,
    Path((product, api)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<Api>)> {
    load::<Product>(&cp, "", &product).await?;
    let api = load::<Api>(&cp, "", &api).await?;
    let mut tx = cp.store().begin().await?;
    let created = tx.links(Link::ProductApi).add(&product, &api.id).await?;
    commit(&cp, tx).await?;
    Ok(saved(super::Saved {
        created,
        value: api,
    }))
}

#[utoipa::path(delete, path = "/mgmt/products/{productId}/apis/{apiId}", tag = "products",
    params(("productId" = String, Path), ("apiId" = String, Path)),
    responses((status = 204, description = "Removed"), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn remove_api(
    cp: Cp,
    Path((product, api)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    check_id(Kind::Product, &product)?;
    check_id(Kind::Api, &api)?;
    let mut tx = cp.store().begin().await?;
    if !tx.links(Link::ProductApi).remove(&product, &api).await? {
        return Err(ApiError::NotFound(format!(
            "API '{api}' is not in product '{product}'."
        )));
    }
    commit(&cp, tx).await?;
    Ok(StatusCode::NO_CONTENT)
}
