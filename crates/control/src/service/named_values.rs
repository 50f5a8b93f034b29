//! Named values: values policies (and backends' credentials) refer to as `{{name}}`. Secret
//! values are stored sealed and never shown by reads; [`value`] reveals one. A new value is
//! refused when a policy or a backend that uses it could not work with it, and a named value
//! in use cannot be deleted.

use gatehouse_model::resources::NamedValue;
use gatehouse_store::Kind;

use super::{Saved, ServiceError, ServiceResult, check_id, commit, load, merge, prepare, save};
use crate::ControlPlane;

/// The stored form with the value of a secret hidden.
fn present(mut nv: NamedValue) -> NamedValue {
    if nv.secret {
        nv.value = None;
    }
    nv
}

fn reveal(cp: &ControlPlane, mut nv: NamedValue) -> ServiceResult<NamedValue> {
    if nv.secret
        && let Some(v) = &nv.value
    {
        nv.value = Some(
            cp.sealer()
                .open(v)
                .map_err(|e| ServiceError::Internal(e.to_string()))?,
        );
    }
    Ok(nv)
}

fn seal(cp: &ControlPlane, mut nv: NamedValue) -> ServiceResult<NamedValue> {
    if nv.secret
        && let Some(v) = &nv.value
    {
        nv.value = Some(
            cp.sealer()
                .seal(v)
                .map_err(|e| ServiceError::Internal(e.to_string()))?,
        );
    }
    Ok(nv)
}

/// Refuses `value` for `name` when a policy or a backend using it could not work with it.
async fn check_change(cp: &ControlPlane, name: &str, value: &str) -> ServiceResult<()> {
    super::policies::check_named_value_change(cp, name, value).await?;
    super::backends::check_named_value_change(cp, name, value).await
}

/// Every named value, secrets hidden, ordered by id.
pub async fn list(cp: &ControlPlane) -> ServiceResult<Vec<NamedValue>> {
    Ok(super::load_all::<NamedValue>(cp, "")
        .await?
        .into_iter()
        .map(present)
        .collect())
}

/// Named value `id`, its value hidden if it is a secret.
pub async fn get(cp: &ControlPlane, id: &str) -> ServiceResult<NamedValue> {
    Ok(present(load::<NamedValue>(cp, "", id).await?))
}

/// Creates or replaces named value `id`; returns it as reads show it.
pub async fn put(
    cp: &ControlPlane,
    id: &str,
    body: NamedValue,
) -> ServiceResult<Saved<NamedValue>> {
    let nv = prepare(body, id)?;
    check_change(cp, id, nv.value.as_deref().unwrap_or_default()).await?;
    let mut tx = cp.store().begin().await?;
    let created = save(&mut tx, "", &seal(cp, nv.clone())?).await?;
    commit(cp, tx).await?;
    Ok(Saved {
        created,
        value: present(nv),
    })
}

/// Applies a JSON merge patch to named value `id`; returns it as reads show it.
pub async fn patch(
    cp: &ControlPlane,
    id: &str,
    patch: serde_json::Value,
) -> ServiceResult<NamedValue> {
    let existing = reveal(cp, load::<NamedValue>(cp, "", id).await?)?;
    let nv = merge(&existing, patch)?;
    check_change(cp, id, nv.value.as_deref().unwrap_or_default()).await?;
    let mut tx = cp.store().begin().await?;
    save(&mut tx, "", &seal(cp, nv.clone())?).await?;
    commit(cp, tx).await?;
    Ok(present(nv))
}

/// Deletes named value `id`, unless a policy, a fragment or a backend uses it.
pub async fn delete(cp: &ControlPlane, id: &str) -> ServiceResult<()> {
    check_id(Kind::NamedValue, id)?;
    let users = super::policies::users_of(cp, id).await?;
    if !users.is_empty() {
        return Err(ServiceError::Conflict(format!(
            "Named value '{id}' is used by the policy of {}; remove it there first",
            users.join(", ")
        )));
    }
    let mut tx = cp.store().begin().await?;
    if !tx.repo::<NamedValue>().delete("", id).await? {
        return Err(ServiceError::not_found("Named value", id));
    }
    commit(cp, tx).await?;
    Ok(())
}

/// Named value `id`'s value in clear, secret or not.
pub async fn value(cp: &ControlPlane, id: &str) -> ServiceResult<String> {
    let nv = reveal(cp, load::<NamedValue>(cp, "", id).await?)?;
    Ok(nv.value.unwrap_or_default())
}
