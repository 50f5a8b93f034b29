//! `/mgmt/loggers`: where `log-to-eventhub` sends messages (Azure Event Hubs, or an `http` or
//! `otlp` sink of the user's own). Connection strings and endpoint headers are sealed at rest,
//! shown masked by `GET`, and a `PUT` or `PATCH` that sends the masked value back keeps the
//! stored secret. A logger a policy names cannot be deleted.

use axum::Json;
use axum::http::StatusCode;
use gatehouse_model::ValidationError;
use gatehouse_model::loggers::{Logger, MASKED};
use gatehouse_model::resources::{Collection, Resource as _};
use gatehouse_store::Kind;

use super::{
    Cp, check_id, commit, load, load_all, load_opt, merge_unchecked, prepare, save, saved,
};
use crate::ControlPlane;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::{JsonBody, Paging, Path, Query};

/// Every secret of `logger` sealed with the control plane's key.
fn seal(cp: &ControlPlane, mut logger: Logger) -> ApiResult<Logger> {
    for s in logger.secrets_mut() {
        *s = cp
            .sealer()
            .seal(s)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
    }
    Ok(logger)
}

/// A stored logger with its secrets in clear (for the snapshot and for merging).
pub(crate) fn open(cp: &ControlPlane, logger: Logger) -> ApiResult<Logger> {
    open_with(cp.sealer(), logger)
}

pub(crate) fn open_with(sealer: &crate::secrets::Sealer, mut logger: Logger) -> ApiResult<Logger> {
    for s in logger.secrets_mut() {
        *s = sealer
            .open(s)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
    }
    Ok(logger)
}

/// Replaces each masked secret of `incoming` with the stored logger's value in the same place;
/// a masked value with nothing stored behind it is refused.
fn keep_masked(incoming: &mut Logger, stored: Option<&Logger>) -> ApiResult<()> {
    let masked_credentials: Vec<String> = incoming
        .credentials
        .iter()
        .filter(|(_, v)| *v == MASKED)
        .map(|(k, _)| k.clone())
        .collect();
    for key in masked_credentials {
        let kept = stored.and_then(|s| s.credentials.get(&key)).ok_or_else(|| {
            ValidationError::one(
                format!("credentials.{key}"),
                format!("is '{MASKED}', the masked form of a stored secret, and none is stored; send the value itself"),
            )
        })?;
        incoming.credentials.insert(key, kept.clone());
    }
    if let Some(endpoint) = &mut incoming.endpoint {
        for (name, value) in endpoint.headers.iter_mut() {
            if value != MASKED {
                continue;
            }
            let kept = stored
                .and_then(|s| s.endpoint.as_ref())
                .and_then(|e| e.headers.get(name))
                .ok_or_else(|| {
                    ValidationError::one(
                        format!("endpoint.headers.{name}"),
                        format!("is '{MASKED}', the masked form of a stored secret, and none is stored; send the value itself"),
                    )
                })?;
            value.clone_from(kept);
        }
    }
    Ok(())
}

#[utoipa::path(get, path = "/mgmt/loggers", tag = "loggers", params(Paging),
    responses((status = 200, body = Collection<Logger>), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn list(cp: Cp, Query(paging): Query<Paging>) -> ApiResult<Json<Collection<Logger>>> {
    let items = load_all::<Logger>(&cp, "")
        .await?
        .into_iter()
        .map(Logger::masked)
        .collect();
    Ok(Json(paging.page("/mgmt/loggers", items)?))
}

#[utoipa::path(get, path = "/mgmt/loggers/{loggerId}", tag = "loggers",
    params(("loggerId" = String, Path)),
    responses((status = 200, body = Logger), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn get(cp: Cp, Path(id): Path<String>) -> ApiResult<Json<Logger>> {
    Ok(Json(load::<Logger>(&cp, "", &id).await?.masked()))
}

#[utoipa::path(put, path = "/mgmt/loggers/{loggerId}", tag = "loggers",
    params(("loggerId" = String, Path)), request_body = Logger,
    responses((status = 200, body = Logger), (status = 201, body = Logger),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn put(
    cp: Cp,
    Path(id): Path<String>,
    JsonBody(mut body): JsonBody<Logger>,
) -> ApiResult<(StatusCode, Json<Logger>)> {
    check_id(Kind::Logger, &id)?;
    let stored = match load_opt::<Logger>(&cp, "", &id).await? {
        Some(l) => Some(open(&cp, l)?),
        None => None,
    };
    keep_masked(&mut body, stored.as_ref())?;
    let logger = prepare(body, &id)?;
    let mut tx = cp.store().begin().await?;
    let created = save(&mut tx, "", &seal(&cp, logger.clone())?).await?;
    commit(&cp, tx).await?;
    Ok(saved(created, logger.masked()))
}

#[utoipa::path(patch, path = "/mgmt/loggers/{loggerId}", tag = "loggers",
    params(("loggerId" = String, Path)), request_body = Logger,
    responses((status = 200, body = Logger), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "The patch does not fit the stored logger's type")),
    security(("admin" = [])))]
pub async fn patch(
    cp: Cp,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> ApiResult<Json<Logger>> {
    let stored = open(&cp, load::<Logger>(&cp, "", &id).await?)?;
    // Merged over the masked form, so what the patch leaves alone, or sends back masked, keeps
    // the stored secret.
    let mut merged: Logger = merge_unchecked(&stored.clone().masked(), body)?;
    keep_masked(&mut merged, Some(&stored))?;
    if let Err(e) = merged.normalize() {
        // Members one logger type has and another has not: the patch clashes with the stored
        // logger rather than being malformed (RFC 5789's conflicting state), so 409.
        if e.details
            .iter()
            .all(|d| d.target == "endpoint" || d.target == "credentials")
        {
            return Err(ApiError::Conflict(format!(
                "The patch does not fit logger '{id}' as stored: {}",
                e.message
            )));
        }
        return Err(e.into());
    }
    let mut tx = cp.store().begin().await?;
    save(&mut tx, "", &seal(&cp, merged.clone())?).await?;
    commit(&cp, tx).await?;
    Ok(Json(merged.masked()))
}

#[utoipa::path(delete, path = "/mgmt/loggers/{loggerId}", tag = "loggers",
    params(("loggerId" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "In use; the message says where")),
    security(("admin" = [])))]
pub async fn delete(cp: Cp, Path(id): Path<String>) -> ApiResult<StatusCode> {
    check_id(Kind::Logger, &id)?;
    // Read while this transaction holds the write lock, so no policy starts using it meanwhile.
    let mut tx = cp.store().begin().await?;
    let users = super::policies::logger_users(&cp, &id).await?;
    if !users.is_empty() {
        return Err(ApiError::Conflict(format!(
            "Logger '{id}' is used by {}; remove its log-to-eventhub there first",
            users.join(", ")
        )));
    }
    if !tx.repo::<Logger>().delete("", &id).await? {
        return Err(ApiError::not_found("Logger", &id));
    }
    commit(&cp, tx).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests;
