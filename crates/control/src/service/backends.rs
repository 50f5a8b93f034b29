//! Backends' rules that reach beyond one resource: a pool's members exist and are single
//! backends, a backend some pool holds does not become a pool, and a backend a pool holds is
//! not deleted. The resource's own fields are checked by `Backend::normalize`.
//!
//! Callers run these inside the write transaction that saves or deletes the backend, so no
//! other change to backends lands between the check and the write.

use gatehouse_model::ValidationError;
use gatehouse_model::resources::{Backend, BackendType};

use super::{ServiceResult, load_all};
use crate::ControlPlane;

/// Refuses a pool that names a backend that does not exist or is itself a pool, and a pool
/// that another pool holds (a pool cannot contain a pool, whichever is saved first).
pub(crate) async fn check_pool_references(
    cp: &ControlPlane,
    backend: &Backend,
) -> ServiceResult<()> {
    if backend.backend_type != BackendType::Pool {
        return Ok(());
    }
    let all = load_all::<Backend>(cp, "").await?;
    for (i, member) in backend.members().enumerate() {
        let field = format!("pool.services[{i}].id");
        match all.iter().find(|b| b.id == member) {
            None => {
                return Err(ValidationError::one(
                    field,
                    format!(
                        "backend '{member}' does not exist; create it with PUT /mgmt/backends/{member} (a url, or its own credentials) first"
                    ),
                )
                .into());
            }
            Some(b) if b.backend_type == BackendType::Pool => {
                return Err(ValidationError::one(
                    field,
                    format!(
                        "backend '{member}' is a pool, and a pool cannot contain a pool; list the members of '{member}' instead"
                    ),
                )
                .into());
            }
            Some(_) => {}
        }
    }
    let holders = pools_holding(&all, &backend.id);
    if !holders.is_empty() {
        return Err(ValidationError::one(
            "type",
            format!(
                "'{}' is a member of {}, and a pool cannot contain a pool; remove it from there first, or keep it a single backend",
                backend.id,
                holders.join(", ")
            ),
        )
        .into());
    }
    Ok(())
}

/// Refuses to delete backend `id` while anything uses it: the pools that hold it, and
/// `users`, the other users the caller found (policies that name it).
pub(crate) async fn check_unused(
    cp: &ControlPlane,
    id: &str,
    mut users: Vec<String>,
) -> ServiceResult<()> {
    let all = load_all::<Backend>(cp, "").await?;
    users.extend(pools_holding(&all, id));
    if users.is_empty() {
        return Ok(());
    }
    Err(ValidationError::one(
        "backendId",
        format!(
            "'{id}' is used by {}; remove it there first",
            users.join(", ")
        ),
    )
    .into())
}

/// `backend pool '{p}'` for each pool among `all` that holds backend `id`, in id order.
fn pools_holding(all: &[Backend], id: &str) -> Vec<String> {
    all.iter()
        .filter(|b| b.backend_type == BackendType::Pool && b.members().any(|m| m == id))
        .map(|b| format!("backend pool '{}'", b.id))
        .collect()
}

#[cfg(test)]
mod tests;
