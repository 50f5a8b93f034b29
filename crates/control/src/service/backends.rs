//! Backend services that policies route to with `<set-backend-service backend-id="…"/>`,
//! with the credentials and TLS settings gateways use for them. A backend's client certificate
//! (`credentials.certificateIds`) must be a certificate that holds its private key, and the
//! named values its credentials name must exist and make valid header values; a backend a
//! policy sends to, or a pool holds, cannot be deleted.
//!
//! Pools: a pool's members exist and are single backends, and a backend some pool holds does
//! not become a pool. These rules reach beyond one resource, so they are checked inside the
//! write transaction that saves or deletes the backend: no other change to backends lands
//! between the check and the write. The resource's own fields are checked by
//! `Backend::normalize`.

use std::collections::HashMap;

use gatehouse_model::ValidationError;
use gatehouse_model::resources::{Backend, BackendType, Resource};
use gatehouse_store::Kind;

use super::{
    Saved, ServiceError, ServiceResult, check_id, commit, load, load_all, merge_unchecked, prepare,
    save,
};
use crate::ControlPlane;

/// Refuses a backend whose client certificate is missing or has no key, or whose credentials
/// name a named value that does not exist: gateways could not use it.
async fn check_references(cp: &ControlPlane, backend: &Backend) -> ServiceResult<()> {
    let Some(credentials) = &backend.credentials else {
        return Ok(());
    };
    let wanted: Vec<String> = credentials
        .texts()
        .flat_map(super::policies::referenced_names)
        .collect();
    let named = if wanted.is_empty() {
        HashMap::new()
    } else {
        super::policies::named_values(cp).await?
    };
    if let Some(missing) = wanted.iter().find(|w| !named.contains_key(*w)) {
        return Err(ServiceError::missing_reference(
            "credentials",
            format!(
                "named value '{missing}' does not exist; create it with PUT /mgmt/named-values/{missing} first"
            ),
        ));
    }
    check_values(backend, &named)?;
    for id in credentials.certificates() {
        let stored = super::certificates::referenced(cp, id).await.map_err(|e| match e {
            ServiceError::NotFound(_) => ServiceError::missing_reference(
                "credentials.certificateIds",
                format!("certificate '{id}' does not exist; PUT it (PEM chain and private key) to /mgmt/certificates/{id} first"),
            ),
            other => other,
        })?;
        // The certificate's state, not this request, is in the way: 409, like a taken name.
        if !stored.has_private_key {
            return Err(ServiceError::Conflict(format!(
                "Invalid value for 'credentials.certificateIds': certificate '{id}' has no private key, and a client certificate needs one; PUT it again with the key after the chain"
            )));
        }
    }
    Ok(())
}

/// Every backend, ordered by id.
pub async fn list(cp: &ControlPlane) -> ServiceResult<Vec<Backend>> {
    load_all::<Backend>(cp, "").await
}

pub async fn get(cp: &ControlPlane, id: &str) -> ServiceResult<Backend> {
    load::<Backend>(cp, "", id).await
}

/// Creates or replaces backend `id`, refused when gateways could not use its credentials.
pub async fn put(cp: &ControlPlane, id: &str, body: Backend) -> ServiceResult<Saved<Backend>> {
    let resource = prepare(body, id)?;
    // Checked inside the write transaction, so the certificate cannot go meanwhile.
    let mut tx = cp.store().begin().await?;
    check_references(cp, &resource).await?;
    check_pool_references(cp, &resource).await?;
    let created = save(&mut tx, "", &resource).await?;
    commit(cp, tx).await?;
    Ok(Saved {
        created,
        value: resource,
    })
}

/// Applies a JSON merge patch to backend `id`, with the checks of [`put`].
pub async fn patch(
    cp: &ControlPlane,
    id: &str,
    patch: serde_json::Value,
) -> ServiceResult<Backend> {
    let existing = load::<Backend>(cp, "", id).await?;
    let mut resource = merge_unchecked(&existing, patch)?;
    if let Err(e) = resource.normalize() {
        // What a single backend or a pool must or must not have, or a part of a breaker or a
        // pool where the backend has none: the patch clashes with the stored backend rather
        // than being malformed (RFC 5789's conflicting state), so 409.
        if e.details.iter().all(is_shape_problem) {
            return Err(ServiceError::Conflict(format!(
                "The patch does not fit backend '{id}' as stored: {}",
                e.message
            )));
        }
        return Err(e.into());
    }
    let mut tx = cp.store().begin().await?;
    check_references(cp, &resource).await?;
    check_pool_references(cp, &resource).await?;
    save(&mut tx, "", &resource).await?;
    commit(cp, tx).await?;
    Ok(resource)
}

/// Whether a problem of a patched backend is about the backend's shape (a single backend's
/// `url`, a pool's `pool`, what a pool has none of, a breaker or pool given in part) rather
/// than about a member that is wrong by itself.
fn is_shape_problem(d: &gatehouse_model::Detail) -> bool {
    match d.target.as_str() {
        "pool" | "pool.services" | "credentials" | "circuitBreaker" | "circuitBreaker.rules" => {
            true
        }
        "url" => d.message.starts_with("is required"),
        _ => false,
    }
}

/// Deletes backend `id`, unless a policy or a fragment sends to it or a pool holds it.
pub async fn delete(cp: &ControlPlane, id: &str) -> ServiceResult<()> {
    check_id(Kind::Backend, id)?;
    // Read while this transaction holds the write lock, so no policy starts using it meanwhile.
    let mut tx = cp.store().begin().await?;
    let users = super::policies::backend_users(cp, id).await?;
    check_unused(cp, id, users).await?;
    if !tx.repo::<Backend>().delete("", id).await? {
        return Err(ServiceError::not_found(super::label(Kind::Backend), id));
    }
    commit(cp, tx).await?;
    Ok(())
}

/// `backend '{id}'` for each backend that presents certificate `id`.
pub(crate) async fn certificate_users(cp: &ControlPlane, id: &str) -> ServiceResult<Vec<String>> {
    Ok(load_all::<Backend>(cp, "")
        .await?
        .into_iter()
        .filter(|b| {
            b.credentials
                .as_ref()
                .is_some_and(|c| c.certificates().any(|c| c == id))
        })
        .map(|b| format!("backend '{}'", b.id))
        .collect())
}

/// `text` with its `{{name}}` references replaced from `named` (left as written when unknown).
fn resolved(text: &str, named: &HashMap<String, String>) -> String {
    let mut out = text.to_owned();
    for name in super::policies::referenced_names(text) {
        if let Some(value) = named.get(&name) {
            out = out.replace(&format!("{{{{{name}}}}}"), value);
        }
    }
    out
}

/// Refuses header credentials that would not be valid header values once their named values
/// are resolved (a line break, say): gateways could not send them.
fn check_values(backend: &Backend, named: &HashMap<String, String>) -> Result<(), ValidationError> {
    let Some(c) = &backend.credentials else {
        return Ok(());
    };
    let bad = |field: String| {
        ValidationError::one(
            field,
            "is not a valid header value (control characters such as line breaks are not allowed), once its named values are filled in",
        )
    };
    for (name, values) in &c.header {
        for v in values {
            if http::HeaderValue::from_str(&resolved(v, named)).is_err() {
                return Err(bad(format!("credentials.header.{name}")));
            }
        }
    }
    if let Some(a) = &c.authorization {
        let value = format!(
            "{} {}",
            resolved(&a.scheme, named),
            resolved(&a.parameter, named)
        );
        if http::HeaderValue::from_str(&value).is_err() {
            return Err(bad("credentials.authorization".into()));
        }
    }
    Ok(())
}

/// Refuses a new value for named value `name` that a backend's credentials could not carry.
pub(crate) async fn check_named_value_change(
    cp: &ControlPlane,
    name: &str,
    value: &str,
) -> ServiceResult<()> {
    let mut named = None;
    for backend in load_all::<Backend>(cp, "").await? {
        let Some(c) = &backend.credentials else {
            continue;
        };
        let uses = c
            .header
            .values()
            .flatten()
            .chain(
                c.authorization
                    .iter()
                    .flat_map(|a| [&a.scheme, &a.parameter]),
            )
            .any(|t| {
                super::policies::referenced_names(t)
                    .iter()
                    .any(|n| n == name)
            });
        if !uses {
            continue;
        }
        if named.is_none() {
            let mut all = super::policies::named_values(cp).await?;
            all.insert(name.to_owned(), value.to_owned());
            named = Some(all);
        }
        if let Some(named) = &named
            && let Err(e) = check_values(&backend, named)
        {
            return Err(ValidationError::one(
                "value",
                format!(
                    "backend '{}' sends this named value in a header, and it cannot be one ({e}); fix the value",
                    backend.id
                ),
            )
            .into());
        }
    }
    Ok(())
}

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
            // A member that is not there is a missing resource (404); one that is a pool, like
            // a pool that another pool holds, clashes with what is stored (409).
            None => {
                return Err(ServiceError::missing_reference(
                    &field,
                    format!(
                        "backend '{member}' does not exist; create it with PUT /mgmt/backends/{member} (a url, or its own credentials) first"
                    ),
                ));
            }
            Some(b) if b.backend_type == BackendType::Pool => {
                return Err(ServiceError::Conflict(format!(
                    "Invalid value for '{field}': backend '{member}' is a pool, and a pool cannot contain a pool; list the members of '{member}' instead"
                )));
            }
            Some(_) => {}
        }
    }
    let holders = pools_holding(&all, &backend.id);
    if !holders.is_empty() {
        return Err(ServiceError::Conflict(format!(
            "Invalid value for 'type': '{}' is a member of {}, and a pool cannot contain a pool; remove it from there first, or keep it a single backend",
            backend.id,
            holders.join(", ")
        )));
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
    // What is stored, not this request, is in the way: 409.
    Err(ServiceError::Conflict(format!(
        "Backend '{id}' is used by {}; remove it there first",
        users.join(", ")
    )))
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
