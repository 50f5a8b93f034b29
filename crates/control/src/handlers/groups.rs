//! `/mgmt/groups`, their members (`/mgmt/groups/{id}/users/{userId}`) and the products they
//! may see in the developer portal (`/mgmt/products/{id}/groups/{groupId}`). A product linked
//! to no group is visible to everyone; one linked to groups only to their members.

use axum::Json;
use axum::http::StatusCode;
use gatehouse_model::resources::{Collection, Group, Product, User};
use gatehouse_store::{Kind, Link};

use super::{Cp, check_id, commit, load, load_opt, saved};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::{Paging, Path, Query};

// Deleting a group also deletes its memberships (its children in the registry) and the
// product links that name it.
crate::handlers::simple_crud! {
    type: Group,
    tag: "groups",
    collection: "/mgmt/groups",
    item: "/mgmt/groups/{groupId}",
    param: "groupId",
    linked: [Link::ProductGroup]
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
    load::<Group>(&cp, "", &id).await?;
    let mut users = Vec::new();
    for user in cp.store().links(Link::GroupUser).targets(&id).await? {
        if let Some(user) = load_opt::<User>(&cp, "", &user).await? {
            users.push(user);
        }
    }
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
    load::<Group>(&cp, "", &group).await?;
    let user = load::<User>(&cp, "", &user).await?;
    let mut tx = cp.store().begin().await?;
    let created = tx.links(Link::GroupUser).add(&group, &user.id).await?;
    commit(&cp, tx).await?;
    Ok(saved(super::Saved {
        created,
        value: user,
    }))
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
    check_id(Kind::Group, &group)?;
    check_id(Kind::User, &user)?;
    let mut tx = cp.store().begin().await?;
    if !tx.links(Link::GroupUser).remove(&group, &user).await? {
        return Err(ApiError::NotFound(format!(
            "User '{user}' is not in group '{group}'."
        )));
    }
    commit(&cp, tx).await?;
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
    load::<Product>(&cp, "", &id).await?;
    let mut groups = Vec::new();
    for group in cp.store().links(Link::ProductGroup).targets(&id).await? {
        if let Some(group) = load_opt::<Group>(&cp, "", &group).await? {
            groups.push(group);
        }
    }
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
    load::<Product>(&cp, "", &product).await?;
    let group = load::<Group>(&cp, "", &group).await?;
    let mut tx = cp.store().begin().await?;
    let created = tx
        .links(Link::ProductGroup)
        .add(&product, &group.id)
        .await?;
    commit(&cp, tx).await?;
    Ok(saved(super::Saved {
        created,
        value: group,
    }))
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
    check_id(Kind::Product, &product)?;
    check_id(Kind::Group, &group)?;
    let mut tx = cp.store().begin().await?;
    if !tx
        .links(Link::ProductGroup)
        .remove(&product, &group)
        .await?
    {
        return Err(ApiError::NotFound(format!(
            "Group '{group}' is not linked to product '{product}'."
        )));
    }
    commit(&cp, tx).await?;
    Ok(StatusCode::NO_CONTENT)
}
