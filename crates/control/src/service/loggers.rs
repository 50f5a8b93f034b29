//! Loggers: where `log-to-eventhub` sends messages (Azure Event Hubs, or an `http` or `otlp`
//! sink of the user's own). Connection strings and endpoint headers are sealed at rest, shown
//! masked by reads, and a write that sends the masked value back keeps the stored secret. A
//! logger a policy names cannot be deleted.

use gatehouse_model::ValidationError;
use gatehouse_model::loggers::{Logger, MASKED};
use gatehouse_model::resources::Resource as _;
use gatehouse_store::Kind;

use super::{
    Saved, ServiceError, ServiceResult, check_id, commit, load, load_all, load_opt,
    merge_unchecked, prepare, save,
};
use crate::ControlPlane;

/// Every secret of `logger` sealed with the control plane's key.
fn seal(cp: &ControlPlane, mut logger: Logger) -> ServiceResult<Logger> {
    for s in logger.secrets_mut() {
        *s = cp
            .sealer()
            .seal(s)
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
    }
    Ok(logger)
}

/// A stored logger with its secrets in clear (for the snapshot and for merging).
pub(crate) fn open(cp: &ControlPlane, logger: Logger) -> ServiceResult<Logger> {
    open_with(cp.sealer(), logger)
}

pub(crate) fn open_with(
    sealer: &crate::secrets::Sealer,
    mut logger: Logger,
) -> ServiceResult<Logger> {
    for s in logger.secrets_mut() {
        *s = sealer
            .open(s)
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
    }
    Ok(logger)
}

/// Replaces each masked secret of `incoming` with the stored logger's value in the same place;
/// a masked value with nothing stored behind it is refused.
fn keep_masked(incoming: &mut Logger, stored: Option<&Logger>) -> ServiceResult<()> {
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

/// Every logger, secrets masked, ordered by id.
pub async fn list(cp: &ControlPlane) -> ServiceResult<Vec<Logger>> {
    Ok(load_all::<Logger>(cp, "")
        .await?
        .into_iter()
        .map(Logger::masked)
        .collect())
}

/// Logger `id`, secrets masked.
pub async fn get(cp: &ControlPlane, id: &str) -> ServiceResult<Logger> {
    Ok(load::<Logger>(cp, "", id).await?.masked())
}

/// Creates or replaces logger `id`; masked secrets keep the stored ones. Returns it masked.
pub async fn put(cp: &ControlPlane, id: &str, mut body: Logger) -> ServiceResult<Saved<Logger>> {
    check_id(Kind::Logger, id)?;
    let stored = match load_opt::<Logger>(cp, "", id).await? {
        Some(l) => Some(open(cp, l)?),
        None => None,
    };
    keep_masked(&mut body, stored.as_ref())?;
    let logger = prepare(body, id)?;
    let mut tx = cp.store().begin().await?;
    let created = save(&mut tx, "", &seal(cp, logger.clone())?).await?;
    commit(cp, tx).await?;
    Ok(Saved {
        created,
        value: logger.masked(),
    })
}

/// Applies a JSON merge patch to logger `id`; returns it masked.
pub async fn patch(cp: &ControlPlane, id: &str, patch: serde_json::Value) -> ServiceResult<Logger> {
    let stored = open(cp, load::<Logger>(cp, "", id).await?)?;
    // Merged over the masked form, so what the patch leaves alone, or sends back masked, keeps
    // the stored secret.
    let mut merged: Logger = merge_unchecked(&stored.clone().masked(), patch)?;
    keep_masked(&mut merged, Some(&stored))?;
    if let Err(e) = merged.normalize() {
        // Members one logger type has and another has not: the patch clashes with the stored
        // logger rather than being malformed (RFC 5789's conflicting state), so 409.
        if e.details
            .iter()
            .all(|d| d.target == "endpoint" || d.target == "credentials")
        {
            return Err(ServiceError::Conflict(format!(
                "The patch does not fit logger '{id}' as stored: {}",
                e.message
            )));
        }
        return Err(e.into());
    }
    let mut tx = cp.store().begin().await?;
    save(&mut tx, "", &seal(cp, merged.clone())?).await?;
    commit(cp, tx).await?;
    Ok(merged.masked())
}

/// Deletes logger `id`, unless a policy or a fragment logs to it.
pub async fn delete(cp: &ControlPlane, id: &str) -> ServiceResult<()> {
    check_id(Kind::Logger, id)?;
    // Read while this transaction holds the write lock, so no policy starts using it meanwhile.
    let mut tx = cp.store().begin().await?;
    let users = super::policies::logger_users(cp, id).await?;
    if !users.is_empty() {
        return Err(ServiceError::Conflict(format!(
            "Logger '{id}' is used by {}; remove its log-to-eventhub there first",
            users.join(", ")
        )));
    }
    if !tx.repo::<Logger>().delete("", id).await? {
        return Err(ServiceError::not_found("Logger", id));
    }
    commit(cp, tx).await?;
    Ok(())
}

#[cfg(test)]
mod tests;
