//! The developer portal's accounts. Users sign up in the portal, which keeps their argon2
//! password hash apart (`user-credentials`); nothing here reads or returns it. An email
//! belongs to one user, compared without case: an index keeps the owner of each, in the same
//! transaction as the user, so checking costs one read instead of a scan of every user.

use gatehouse_model::resources::{User, UserState, email_key};
use gatehouse_store::records::{EmailOwner, UserCredentials};
use gatehouse_store::{Kind, Link, Tx};

use super::{
    Saved, ServiceError, ServiceResult, check_id, commit, load, load_all, load_opt, merge, prepare,
    save,
};
use crate::ControlPlane;

/// Another user has the email: a conflict with the store's state (409), as Azure answers.
fn email_taken(user: &User) -> ServiceError {
    ServiceError::Conflict(format!(
        "'{}' is already the email of another user",
        user.email
    ))
}

/// Points the email index at `user`, refusing an email another user already has (compared
/// without case), and drops the entry of the email it replaces.
async fn index_email(tx: &mut Tx, user: &User, previous: Option<&User>) -> ServiceResult<()> {
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
async fn unindex_email(tx: &mut Tx, user: &User) -> ServiceResult<()> {
    let key = email_key(&user.email);
    let owner = tx.repo::<EmailOwner>().lenient().get("", &key).await?;
    if owner.is_some_and(|o| o.0 == user.id) {
        tx.repo::<EmailOwner>().delete_unversioned("", &key).await?;
    }
    Ok(())
}

/// Builds the email index when it does not match the users (a store from before the index).
/// Of users sharing an email, the first by id keeps it.
pub(crate) async fn index_emails(store: &gatehouse_store::Store) -> ServiceResult<()> {
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

/// Every user, ordered by id.
pub async fn list(cp: &ControlPlane) -> ServiceResult<Vec<User>> {
    load_all::<User>(cp, "").await
}

pub async fn get(cp: &ControlPlane, id: &str) -> ServiceResult<User> {
    load::<User>(cp, "", id).await
}

/// Creates or replaces user `id`, keeping the registration date of the one it replaces.
pub async fn put(cp: &ControlPlane, id: &str, body: User) -> ServiceResult<Saved<User>> {
    let mut user = prepare(body, id)?;
    let previous = load_opt::<User>(cp, "", id).await?;
    user.registration_date = previous
        .as_ref()
        .and_then(|p| p.registration_date.clone())
        .or_else(|| Some(now()));
    let mut tx = cp.store().begin().await?;
    index_email(&mut tx, &user, previous.as_ref()).await?;
    let created = save(&mut tx, "", &user).await?;
    commit(cp, tx).await?;
    Ok(Saved {
        created,
        value: user,
    })
}

/// Applies a JSON merge patch to user `id` (`{"state": "blocked"}` blocks them).
pub async fn patch(cp: &ControlPlane, id: &str, patch: serde_json::Value) -> ServiceResult<User> {
    let existing = load::<User>(cp, "", id).await?;
    let mut user = merge(&existing, patch)?;
    user.registration_date = existing.registration_date.clone();
    let mut tx = cp.store().begin().await?;
    index_email(&mut tx, &user, Some(&existing)).await?;
    save(&mut tx, "", &user).await?;
    commit(cp, tx).await?;
    if user.state == UserState::Blocked && existing.state != UserState::Blocked {
        tracing::info!(user = %user.id, "user blocked");
    }
    Ok(user)
}

/// Deletes user `id` with their password and group memberships.
pub async fn delete(cp: &ControlPlane, id: &str) -> ServiceResult<()> {
    check_id(Kind::User, id)?;
    let mut tx = cp.store().begin().await?;
    if let Some(user) = tx.repo::<User>().get("", id).await? {
        unindex_email(&mut tx, &user).await?;
    }
    if !tx.repo::<User>().delete("", id).await? {
        return Err(ServiceError::not_found("User", id));
    }
    tx.repo::<UserCredentials>().delete("", id).await?;
    tx.links(Link::GroupUser).remove_to(id).await?;
    commit(cp, tx).await?;
    Ok(())
}

#[cfg(test)]
mod tests;
