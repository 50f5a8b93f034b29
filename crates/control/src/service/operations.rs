//! The operations of an API: created one by one, or all at once by an import (see
//! [`super::apis::put`]). Deleting one deletes its policy.

use gatehouse_model::resources::{Api, Operation};
use gatehouse_store::{Kind, PolicyScope};

use super::{
    Saved, ServiceError, ServiceResult, check_id, commit, load, load_all, merge, prepare, save,
};
use crate::ControlPlane;

/// The operations of API `api` (404 when there is no such API).
pub async fn list(cp: &ControlPlane, api: &str) -> ServiceResult<Vec<Operation>> {
    load::<Api>(cp, "", api).await?;
    load_all::<Operation>(cp, api).await
}

pub async fn get(cp: &ControlPlane, api: &str, op: &str) -> ServiceResult<Operation> {
    load::<Api>(cp, "", api).await?;
    load::<Operation>(cp, api, op).await
}

/// Creates or replaces operation `op` of API `api`.
pub async fn put(
    cp: &ControlPlane,
    api: &str,
    op: &str,
    body: Operation,
) -> ServiceResult<Saved<Operation>> {
    load::<Api>(cp, "", api).await?;
    let operation = prepare(body, op)?;
    let mut tx = cp.store().begin().await?;
    let created = save(&mut tx, api, &operation).await?;
    commit(cp, tx).await?;
    Ok(Saved {
        created,
        value: operation,
    })
}

/// Applies a JSON merge patch to operation `op` of API `api`.
pub async fn patch(
    cp: &ControlPlane,
    api: &str,
    op: &str,
    patch: serde_json::Value,
) -> ServiceResult<Operation> {
    load::<Api>(cp, "", api).await?;
    let existing = load::<Operation>(cp, api, op).await?;
    let operation = merge(&existing, patch)?;
    let mut tx = cp.store().begin().await?;
    save(&mut tx, api, &operation).await?;
    commit(cp, tx).await?;
    Ok(operation)
}

/// Deletes operation `op` of API `api`, with its policy.
pub async fn delete(cp: &ControlPlane, api: &str, op: &str) -> ServiceResult<()> {
    check_id(Kind::Api, api)?;
    check_id(Kind::Operation, op)?;
    let mut tx = cp.store().begin().await?;
    if !tx.repo::<Operation>().delete(api, op).await? {
        return Err(ServiceError::not_found("Operation", op));
    }
    let policy = PolicyScope::Operation {
        api: api.to_owned(),
        operation: op.to_owned(),
    };
    tx.policies().delete(&policy).await?;
    commit(cp, tx).await?;
    Ok(())
}
