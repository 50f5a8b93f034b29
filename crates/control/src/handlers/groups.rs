//! `/mgmt/groups`, their members (`/mgmt/groups/{id}/users/{userId}`) and the products they
//! may see in the developer portal (`/mgmt/products/{id}/groups/{groupId}`). A product linked
//! to no group is visible to everyone; one linked to groups only to their members.

use axum::Json;
use axum::http::StatusCode;
use gatehouse_model::resources::{Collection, Group, User};

use super::{Cp, saved};
use crate::error::{ApiResult, ErrorBody};
use crate::http::{Paging, Path, Query};
use crate::service::groups as service;

crate::handlers::simple_crud! {
    type: Group,
    service: groups,
    tag: "groups",
    collection: "/mgmt/groups",
    item: "/mgmt/groups/{groupId}",
    param: "groupId"
}

#[utoipa::path(get, path = "/mgmt/groups/{groupId}/users", tag = "groups",
    params(("groupId" = String, Path), Paging),
    responses((status = 200, body = Collection<User>), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn list_users(
    cp: Cp,
    Path(id): Path<String>,
    Query(paging): Query<Paging>,
) -> ApiResult<Json<Collection<User>>> {
    let users = service::list_users(&cp, &id).await?;
    Ok(Json(
        paging.page(&format!("/mgmt/groups/{id}/users"), users)?,
    ))
}

#[utoipa::path(put, path = "/mgmt/groups/{groupId}/users/{userId}", tag = "groups",
    params(("groupId" = String, Path), ("userId" = String, Path)),
    responses((status = 200, body = User), (status = 201, body = User),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn add_user(
    cp: Cp,
    Path((group, user)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<User>)> {
    Ok(saved(service::add_user(&cp, &group, &user).await?))
}

#[utoipa::path(delete, path = "/mgmt/groups/{groupId}/users/{userId}", tag = "groups",
    params(("groupId" = String, Path), ("userId" = String, Path)),
    responses((status = 204, description = "Removed"), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn remove_user(
    cp: Cp,
    Path((group, user)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    service::remove_user(&cp, &group, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/mgmt/products/{productId}/groups", tag = "products",
    params(("productId" = String, Path), Paging),
    responses((status = 200, body = Collection<Group>), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn list_product_groups(
    cp: Cp,
    Path(id): Path<String>,
    Query(paging): Query<Paging>,
) -> ApiResult<Json<Collection<Group>>> {
    let groups = service::list_product_groups(&cp, &id).await?;
    Ok(Json(
        paging.page(&format!("/mgmt/products/{id}/groups"), groups)?,
    ))
}

#[utoipa::path(put, path = "/mgmt/products/{productId}/groups/{groupId}", tag = "products",
    params(("productId" = String, Path), ("groupId" = String, Path)),
    responses((status = 200, body = Group), (status = 201, body = Group),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn add_product_group(
    cp: Cp,
    Path((product, group)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<Group>)> {
    Ok(saved(
        service::add_product_group(&cp, &product, &group).await?,
    ))
}

#[utoipa::path(delete, path = "/mgmt/products/{productId}/groups/{groupId}", tag = "products",
    params(("productId" = String, Path), ("groupId" = String, Path)),
    responses((status = 204, description = "Removed"), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn remove_product_group(
    cp: Cp,
    Path((product, group)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    service::remove_product_group(&cp, &product, &group).await?;
    Ok(StatusCode::NO_CONTENT)
}
