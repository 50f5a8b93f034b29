//! `/mgmt/products` and the APIs each product holds (`/mgmt/products/{id}/apis/{api}`).

use axum::Json;
use axum::http::StatusCode;
use gatehouse_model::resources::{Api, Collection, Product};

use super::{Cp, saved};
use crate::error::{ApiResult, ErrorBody};
use crate::http::{Paging, Path, Query};
use crate::service::products as service;

crate::handlers::simple_crud! {
    type: Product,
    service: products,
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
    let apis = service::list_apis(&cp, &id).await?;
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
    Ok(saved(service::add_api(&cp, &product, &api).await?))
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
    service::remove_api(&cp, &product, &api).await?;
    Ok(StatusCode::NO_CONTENT)
}
