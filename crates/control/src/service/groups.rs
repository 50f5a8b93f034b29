//! Groups of users, their members, and the products they may see in the developer portal. A
//! product linked to no group is visible to everyone; one linked to groups only to their
//! members.

use gatehouse_model::resources::{Group, Product, User};
use gatehouse_store::{Kind, Link};

use super::{Saved, ServiceError, ServiceResult, check_id, commit, load, load_opt};
use crate::ControlPlane;

/// Every group, ordered by id.
pub async fn list(cp: &ControlPlane) -> ServiceResult<Vec<Group>> {
    super::load_all::<Group>(cp, "").await
}

pub async fn get(cp: &ControlPlane, id: &str) -> ServiceResult<Group> {
    load::<Group>(cp, "", id).await
}

pub async fn put(cp: &ControlPlane, id: &str, body: Group) -> ServiceResult<Saved<Group>> {
    super::put_simple(cp, id, body).await
}

pub async fn patch(cp: &ControlPlane, id: &str, patch: serde_json::Value) -> ServiceResult<Group> {
    super::patch_simple(cp, id, patch).await
}

/// Deletes group `id` with its memberships (its children in the registry) and the product
/// links that name it.
pub async fn delete(cp: &ControlPlane, id: &str) -> ServiceResult<()> {
    super::delete_simple::<Group>(cp, id, &[Link::ProductGroup]).await
}

/// The members of group `id` (404 when there is no such group).
pub async fn list_users(cp: &ControlPlane, id: &str) -> ServiceResult<Vec<User>> {
    load::<Group>(cp, "", id).await?;
    let mut users = Vec::new();
    for user in cp.store().links(Link::GroupUser).targets(id).await? {
        if let Some(user) = load_opt::<User>(cp, "", &user).await? {
            users.push(user);
        }
    }
    Ok(users)
}

/// Makes `user` a member of `group`; both must exist.
pub async fn add_user(cp: &ControlPlane, group: &str, user: &str) -> ServiceResult<Saved<User>> {
    load::<Group>(cp, "", group).await?;
    let user = load::<User>(cp, "", user).await?;
    let mut tx = cp.store().begin().await?;
    let created = tx.links(Link::GroupUser).add(group, &user.id).await?;
    commit(cp, tx).await?;
    Ok(Saved {
        created,
        value: user,
    })
}

pub async fn remove_user(cp: &ControlPlane, group: &str, user: &str) -> ServiceResult<()> {
    check_id(Kind::Group, group)?;
    check_id(Kind::User, user)?;
    let mut tx = cp.store().begin().await?;
    if !tx.links(Link::GroupUser).remove(group, user).await? {
        return Err(ServiceError::NotFound(format!(
            "User '{user}' is not in group '{group}'."
        )));
    }
    commit(cp, tx).await?;
    Ok(())
}

/// The groups product `id` is visible to (404 when there is no such product).
pub async fn list_product_groups(cp: &ControlPlane, id: &str) -> ServiceResult<Vec<Group>> {
    load::<Product>(cp, "", id).await?;
    let mut groups = Vec::new();
    for group in cp.store().links(Link::ProductGroup).targets(id).await? {
        if let Some(group) = load_opt::<Group>(cp, "", &group).await? {
            groups.push(group);
        }
    }
    Ok(groups)
}

/// Makes `product` visible to the members of `group`; both must exist.
pub async fn add_product_group(
    cp: &ControlPlane,
    product: &str,
    group: &str,
) -> ServiceResult<Saved<Group>> {
    load::<Product>(cp, "", product).await?;
    let group = load::<Group>(cp, "", group).await?;
    let mut tx = cp.store().begin().await?;
    let created = tx.links(Link::ProductGroup).add(product, &group.id).await?;
    commit(cp, tx).await?;
    Ok(Saved {
        created,
        value: group,
    })
}

pub async fn remove_product_group(
    cp: &ControlPlane,
    product: &str,
    group: &str,
) -> ServiceResult<()> {
    check_id(Kind::Product, product)?;
    check_id(Kind::Group, group)?;
    let mut tx = cp.store().begin().await?;
    if !tx.links(Link::ProductGroup).remove(product, group).await? {
        return Err(ServiceError::NotFound(format!(
            "Group '{group}' is not linked to product '{product}'."
        )));
    }
    commit(cp, tx).await?;
    Ok(())
}
