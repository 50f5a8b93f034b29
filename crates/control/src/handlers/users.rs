//! `/mgmt/users`: the developer portal's accounts. Users sign up in the portal, which keeps
//! their argon2 password hash apart (`user-credentials`); this API never reads or returns it.
//! Admins list users, block them (`PATCH {"state":"blocked"}`) and put them in groups.

use axum::Json;
use axum::http::StatusCode;
use gatehouse_model::ValidationError;
use gatehouse_model::resources::{
    Collection, GROUP_USER, Resource, USER_CREDENTIALS, User, UserState,
};

use super::{Cp, check_id, commit, load, load_all, load_opt, merge, prepare, save, saved};
use crate::ControlPlane;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::{JsonBody, Paging, Path, Query};

/// Refuses an email address another user already has (compared without case).
pub(crate) async fn ensure_email_free(cp: &ControlPlane, user: &User) -> ApiResult<()> {
    for other in load_all::<User>(cp, "").await? {
        if other.id != user.id && other.email.eq_ignore_ascii_case(&user.email) {
            return Err(ValidationError::one(
                "email",
                format!("'{}' is already the email of another user", user.email),
            )
            .into());
        }
    }
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
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn get(cp: Cp, Path(id): Path<String>) -> ApiResult<Json<User>> {
    Ok(Json(load::<User>(&cp, "", &id).await?))
}

#[utoipa::path(put, path = "/mgmt/users/{userId}", tag = "users",
    params(("userId" = String, Path)), request_body = User,
    responses((status = 200, body = User), (status = 201, body = User),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn put(
    cp: Cp,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<User>,
) -> ApiResult<(StatusCode, Json<User>)> {
    let mut user = prepare(body, &id)?;
    let previous = load_opt::<User>(&cp, "", &id).await?;
    user.registration_date = previous
        .and_then(|p| p.registration_date)
        .or_else(|| Some(now()));
    ensure_email_free(&cp, &user).await?;
    let mut tx = cp.store().begin().await?;
    let created = save(&mut tx, "", &user).await?;
    commit(&cp, tx).await?;
    Ok(saved(created, user))
}

#[utoipa::path(patch, path = "/mgmt/users/{userId}", tag = "users",
    params(("userId" = String, Path)), request_body = User,
    responses((status = 200, body = User), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn patch(
    cp: Cp,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> ApiResult<Json<User>> {
    let existing = load::<User>(&cp, "", &id).await?;
    let mut user = merge(&existing, body)?;
    user.registration_date = existing.registration_date.clone();
    ensure_email_free(&cp, &user).await?;
    let mut tx = cp.store().begin().await?;
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
    check_id(User::KIND, &id)?;
    let mut tx = cp.store().begin().await?;
    if !tx.delete(User::KIND, "", &id).await? {
        return Err(ApiError::not_found("User", &id));
    }
    tx.delete(USER_CREDENTIALS, "", &id).await?;
    tx.delete_by_id(GROUP_USER, &id).await?;
    commit(&cp, tx).await?;
    Ok(StatusCode::NO_CONTENT)
}
