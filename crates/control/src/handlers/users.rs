//! `/mgmt/users`: the developer portal's accounts. Users sign up in the portal, which keeps
//! their argon2 password hash apart (`user-credentials`); this API never reads or returns it.
//! Admins list users, block them (`PATCH {"state":"blocked"}`) and put them in groups.

use axum::Json;
use axum::http::StatusCode;
use gatehouse_model::resources::{Collection, User, UserState, email_key};
use gatehouse_store::records::{EmailOwner, UserCredentials};
use gatehouse_store::{Kind, Link, Tx};

use super::{Cp, check_id, commit, load, load_all, load_opt, merge, prepare, save, saved};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::{JsonBody, Paging, Path, Query};

/// Another user has the email: a conflict with the store's state (409), as Azure answers.
fn email_taken(user: &User) -> ApiError {
    ApiError::Conflict(format!(
        "'{}' is already the email of another user",
        user.email
    ))
}

/// Points the email index at `user`, refusing an email another user already has (compared
/// without case), and drops the entry of the email it replaces.
async fn index_email(tx: &mut Tx, user: &User, previous: Option<&User>) -> ApiResult<()> {
    let key = email_key(&user.email);
    let owner = tx.repo::<EmailOwner>().lenient().get("", &key).await?;
    if owner.is_some_and(|o| o.0 != user.id) {
        return Err(email_taken(user));
    }
    if let Some(previous) = previous {
        unindex_email(tx, previous).await?;
    }
    tx.repo::<EmailOwner>()
        .put_unversioned("", &key, &EmailOwner(user.id.clone()))
        .await?;
    Ok(())
}

/// Drops `user`'s entry from the email index, if it is theirs.
async fn unindex_email(tx: &mut Tx, user: &User) -> ApiResult<()> {
    let key = email_key(&user.email);
    let owner = tx.repo::<EmailOwner>().lenient().get("", &key).await?;
    if owner.is_some_and(|o| o.0 == user.id) {
        tx.repo::<EmailOwner>().delete_unversioned("", &key).await?;
    }
    Ok(())
}

/// Builds the email index when it does not match the users (a store from before the index).
/// Of users sharing an email, the first by id keeps it.
pub(crate) async fn index_emails(store: &gatehouse_store::Store) -> ApiResult<()> {
    let mut wanted = std::collections::BTreeMap::new();
    for user in store.repo::<User>().list("").await? {
        let key = email_key(&user.email);
        if wanted.contains_key(&key) {
            tracing::warn!(user = %user.id, "two users share an email; the index keeps the first");
            continue;
        }
        wanted.insert(key, EmailOwner(user.id));
    }
    let index = store.repo::<EmailOwner>();
    let keys = index.ids("").await?;
    let indexed: std::collections::BTreeMap<String, EmailOwner> = index
        .lenient()
        .entries("")
        .await?
        .into_iter()
        .map(|e| (e.id, e.value))
        .collect();
    if keys.len() == indexed.len() && indexed == wanted {
        return Ok(());
    }
    let mut tx = store.begin().await?;
    for key in keys.iter().filter(|k| !wanted.contains_key(*k)) {
        tx.repo::<EmailOwner>().delete_unversioned("", key).await?;
    }
    for (key, owner) in &wanted {
        if indexed.get(key) != Some(owner) {
            tx.repo::<EmailOwner>()
                .put_unversioned("", key, owner)
                .await?;
        }
    }
    tx.commit().await?;
    tracing::info!(users = wanted.len(), "indexed user emails");
    Ok(())
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[utoipa::path(get, path = "/mgmt/users", tag = "users", params(Paging),
    responses((status = 200, body = Collection<User>), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn list(cp: Cp, Query(paging): Query<Paging>) -> ApiResult<Json<Collection<User>>> {
    let items = load_all::<User>(&cp, "").await?;
    Ok(Json(paging.page("/mgmt/users", items)?))
}

#[utoipa::path(get, path = "/mgmt/users/{userId}", tag = "users",
    params(("userId" = String, Path)),
    responses((status = 200, body = User), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "Another user has the email")),
    security(("admin" = [])))]
pub async fn get(cp: Cp, Path(id): Path<String>) -> ApiResult<Json<User>> {
    Ok(Json(load::<User>(&cp, "", &id).await?))
}

#[utoipa::path(put, path = "/mgmt/users/{userId}", tag = "users",
    params(("userId" = String, Path)), request_body = User,
    responses((status = 200, body = User), (status = 201, body = User),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "Another user has the email")),
    security(("admin" = [])))]
pub async fn put(
    cp: Cp,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<User>,
) -> ApiResult<(StatusCode, Json<User>)> {
    let mut user = prepare(body, &id)?;
    let previous = load_opt::<User>(&cp, "", &id).await?;
    user.registration_date = previous
        .as_ref()
        .and_then(|p| p.registration_date.clone())
        .or_else(|| Some(now()));
    let mut tx = cp.store().begin().await?;
    index_email(&mut tx, &user, previous.as_ref()).await?;
    let created = save(&mut tx, "", &user).await?;
    commit(&cp, tx).await?;
    Ok(saved(created, user))
}

#[utoipa::path(patch, path = "/mgmt/users/{userId}", tag = "users",
    params(("userId" = String, Path)), request_body = User,
    responses((status = 200, body = User), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "Another user has the email")),
    security(("admin" = [])))]
pub async fn patch(
    cp: Cp,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> ApiResult<Json<User>> {
    let existing = load::<User>(&cp, "", &id).await?;
    let mut user = merge(&existing, body)?;
    user.registration_date = existing.registration_date.clone();
    let mut tx = cp.store().begin().await?;
    index_email(&mut tx, &user, Some(&existing)).await?;
    save(&mut tx, "", &user).await?;
    commit(&cp, tx).await?;
    if user.state == UserState::Blocked && existing.state != UserState::Blocked {
        tracing::info!(user = %user.id, "user blocked");
    }
    Ok(Json(user))
}

#[utoipa::path(delete, path = "/mgmt/users/{userId}", tag = "users",
    params(("userId" = String, Path)),
    responses((status = 204, description = "Deleted, with the password and group memberships"),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn delete(cp: Cp, Path(id): Path<String>) -> ApiResult<StatusCode> {
    check_id(Kind::User, &id)?;
    let mut tx = cp.store().begin().await?;
    if let Some(user) = tx.repo::<User>().get("", &id).await? {
        unindex_email(&mut tx, &user).await?;
    }
    if !tx.repo::<User>().delete("", &id).await? {
        return Err(ApiError::not_found("User", &id));
    }
    tx.repo::<UserCredentials>().delete("", &id).await?;
    tx.links(Link::GroupUser).remove_to(&id).await?;
    commit(&cp, tx).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::extract::State;

    use super::*;
    use crate::ControlPlane;

    async fn control() -> (Arc<ControlPlane>, std::path::PathBuf) {
        let t = crate::testkit::open("users-test").await;
        (t.cp, t.dir)
    }

    async fn put_user(cp: &Arc<ControlPlane>, id: &str, email: &str) -> ApiResult<()> {
        let body: User = serde_json::from_value(serde_json::json!({
            "email": email, "firstName": "A", "lastName": "B"
        }))
        .unwrap();
        put(State(cp.clone()), Path(id.to_owned()), JsonBody(body))
            .await
            .map(|_| ())
    }

    async fn indexed(cp: &ControlPlane, email: &str) -> Option<String> {
        cp.store()
            .repo::<EmailOwner>()
            .get("", &email_key(email))
            .await
            .unwrap()
            .map(|o| o.0)
    }

    #[tokio::test]
    async fn the_email_index_follows_users_and_is_built_for_old_stores() {
        let (cp, dir) = control().await;
        put_user(&cp, "u1", "Ann@Example.com").await.unwrap();
        let taken = put_user(&cp, "u2", "ann@example.COM").await.unwrap_err();
        assert!(taken.to_string().contains("already the email"), "{taken}");
        assert_eq!(indexed(&cp, "ANN@example.com").await.as_deref(), Some("u1"));

        // A new email frees the old one; deleting frees the email.
        put_user(&cp, "u1", "ann@new.example").await.unwrap();
        assert_eq!(indexed(&cp, "ann@example.com").await, None);
        put_user(&cp, "u2", "ann@example.com").await.unwrap();
        delete(State(cp.clone()), Path("u2".into())).await.unwrap();
        assert_eq!(indexed(&cp, "ann@example.com").await, None);

        // The index bumps no revision.
        let revision = cp.store().revision().await.unwrap();
        let mut tx = cp.store().begin().await.unwrap();
        for key in cp.store().repo::<EmailOwner>().ids("").await.unwrap() {
            tx.repo::<EmailOwner>()
                .delete_unversioned("", &key)
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
        index_emails(cp.store()).await.unwrap();
        assert_eq!(cp.store().revision().await.unwrap(), revision);
        assert_eq!(indexed(&cp, "ANN@new.example").await.as_deref(), Some("u1"));
        std::fs::remove_dir_all(dir).ok();
    }
}
