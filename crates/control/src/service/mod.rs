//! The control plane's domain: one module per resource, each a set of typed functions over the
//! store's typed repositories that validate, run in one transaction and publish the change.
//!
//! Everything that changes the configuration goes through here, whoever asks: the management
//! API's handlers (`handlers/`, the HTTP edge), the developer portal's accounts, the gateway
//! link, the snapshot compiler and `gatehouse apiops publish`. Errors are [`ServiceError`]s;
//! only the HTTP edge turns them into responses ([`crate::error::ApiError`]).
//!
//! What every resource shares lives in this file: loading by id, validating a new resource,
//! merging a JSON merge patch, saving and committing, and the whole life of a resource with no
//! rules beyond its own validation.

pub mod apis;
pub mod backends;
pub mod certificate_authorities;
pub mod certificates;
pub mod gateway_tokens;
pub mod gateways;
pub mod groups;
pub mod hostname_configurations;
pub mod instances;
pub mod loggers;
pub mod named_values;
pub mod operations;
pub mod policies;
pub mod policy_fragments;
pub mod portal_settings;
pub mod products;
pub mod reports;
pub mod subscriptions;
pub mod users;

use gatehouse_model::ValidationError;
use gatehouse_model::resources::{Resource, validate_id};
use gatehouse_store::{Kind, Link, Record, Tx};
use serde_json::Value;

use crate::ControlPlane;

/// Why a service call did not do what it was asked. The messages are for the caller: they say
/// what is wrong and what to do, and never carry internal detail (that goes to the log).
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The input breaks a rule of the resource; the details name the fields.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The resource asked for (or one it refers to) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The input clashes with the stored state: a name, key or path another resource has.
    #[error("{0}")]
    Conflict(String),
    /// The store failed; the caller sees an internal error and the log has the cause.
    #[error("store: {0}")]
    Store(#[from] gatehouse_store::StoreError),
    /// Something that should not happen did; the caller sees an internal error.
    #[error("internal: {0}")]
    Internal(String),
}

impl ServiceError {
    /// `{kind} '{id}' was not found.`
    pub fn not_found(kind: &str, id: &str) -> Self {
        Self::NotFound(format!("{kind} '{id}' was not found."))
    }

    /// A body member names a resource that does not exist: 404, as for a missing resource in
    /// the path (the request is well formed; what it refers to is not there), saying which
    /// member and what to create.
    pub fn missing_reference(target: &str, message: impl std::fmt::Display) -> Self {
        Self::NotFound(format!("Invalid value for '{target}': {message}"))
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;

/// What a create-or-replace stored, and whether it was new (the HTTP edge answers 201 then,
/// 200 otherwise).
#[derive(Debug)]
pub struct Saved<T> {
    pub created: bool,
    pub value: T,
}

/// A human name for a kind in messages.
pub(crate) fn label(kind: Kind) -> &'static str {
    match kind {
        Kind::Api => "API",
        Kind::Operation => "Operation",
        Kind::Product => "Product",
        Kind::Subscription => "Subscription",
        Kind::NamedValue => "Named value",
        Kind::Backend => "Backend",
        Kind::Gateway => "Gateway",
        Kind::User => "User",
        Kind::Group => "Group",
        Kind::Logger => "Logger",
        other => other.name(),
    }
}

/// The resource `id` under `parent`, if it exists.
pub(crate) async fn load_opt<R: Resource + Record>(
    cp: &ControlPlane,
    parent: &str,
    id: &str,
) -> ServiceResult<Option<R>> {
    Ok(cp.store().repo::<R>().get(parent, id).await?)
}

/// The resource `id` under `parent`; [`ServiceError::NotFound`] when there is none.
pub(crate) async fn load<R: Resource + Record>(
    cp: &ControlPlane,
    parent: &str,
    id: &str,
) -> ServiceResult<R> {
    let kind = R::KIND;
    check_id(kind, id)?;
    load_opt(cp, parent, id)
        .await?
        .ok_or_else(|| ServiceError::not_found(label(kind), id))
}

/// Every resource of kind `R` under `parent`, ordered by id.
pub(crate) async fn load_all<R: Resource + Record>(
    cp: &ControlPlane,
    parent: &str,
) -> ServiceResult<Vec<R>> {
    Ok(cp.store().repo::<R>().list(parent).await?)
}

/// Checks an id given from outside; the message names it `{kind}Id`, as the path does.
pub(crate) fn check_id(kind: Kind, id: &str) -> ServiceResult<()> {
    let what = match kind {
        Kind::NamedValue => "namedValue",
        other => other.name(),
    };
    validate_id(what, id).map_err(ServiceError::from)
}

/// Gives a parsed resource its id and validates it.
pub(crate) fn prepare<R: Resource + Record>(mut resource: R, id: &str) -> ServiceResult<R> {
    check_id(R::KIND, id)?;
    resource.set_id(id.to_owned());
    resource.normalize()?;
    Ok(resource)
}

/// Applies a JSON merge patch (RFC 7386) to a resource and validates the result.
pub(crate) fn merge<R: Resource>(existing: &R, patch: Value) -> ServiceResult<R> {
    let mut merged = merge_unchecked(existing, patch)?;
    merged.normalize()?;
    Ok(merged)
}

/// [`merge`] without the validation, for a caller that completes the result first.
pub(crate) fn merge_unchecked<R: Resource>(existing: &R, mut patch: Value) -> ServiceResult<R> {
    if !patch.is_object() {
        return Err(ValidationError::one("body", "a PATCH body must be a JSON object").into());
    }
    // `8080.0` is the integer 8080 in JSON; the resources' integer fields take it so.
    crate::http::integral_numbers(&mut patch);
    let mut value = serde_json::to_value(existing)
        .map_err(|e| ServiceError::Internal(format!("cannot encode: {e}")))?;
    // `null` for a member the resource does not have would merge into nothing; it is still a
    // member the resource does not know, as it would be with any other value.
    if let (Value::Object(members), Value::Object(current)) = (&patch, &value) {
        for (name, _) in members
            .iter()
            .filter(|(name, v)| v.is_null() && !current.contains_key(*name))
        {
            let probe = Value::Object([(name.clone(), Value::Null)].into_iter().collect());
            if let Err(e) = serde_json::from_value::<R>(probe)
                && e.to_string().contains("unknown field")
            {
                return Err(ValidationError::one(
                    name.as_str(),
                    format!("is not a member of this resource: {e}"),
                )
                .into());
            }
        }
    }
    merge_value(&mut value, patch);
    if let Value::Object(map) = &mut value {
        map.remove("id");
    }
    let mut merged: R = serde_json::from_value(value).map_err(|e| {
        let text = e.to_string();
        // A nested object given in part where the resource has none to complete: the patch
        // does not fit the resource as it is (RFC 5789's conflicting state).
        if text.contains("missing field") {
            ServiceError::Conflict(format!(
                "The patch gives part of an object the resource does not have yet ({text}); give it whole"
            ))
        } else {
            ValidationError::one("body", format!("the patched resource is not valid: {text}")).into()
        }
    })?;
    merged.set_id(existing.id().to_owned());
    Ok(merged)
}

fn merge_value(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(&k);
                } else {
                    merge_value(t.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        // An object patches an empty object where there was none, so its `null`s go (RFC 7386).
        (t, p @ Value::Object(_)) => {
            *t = Value::Object(serde_json::Map::new());
            merge_value(t, p);
        }
        (t, p) => *t = p,
    }
}

/// Writes `resource` under `parent` in `tx`; true when it is new.
pub(crate) async fn save<R: Resource + Record>(
    tx: &mut Tx,
    parent: &str,
    resource: &R,
) -> ServiceResult<bool> {
    Ok(tx.repo::<R>().put(parent, resource.id(), resource).await?)
}

/// Commits and tells subscribers (gateways' feeds, held long-polls) about the new revision.
pub(crate) async fn commit(cp: &ControlPlane, tx: Tx) -> ServiceResult<u64> {
    let revision = tx.commit().await?;
    cp.published(revision);
    Ok(revision)
}

/// Creates or replaces a resource that has no rules beyond its own validation.
pub(crate) async fn put_simple<R: Resource + Record>(
    cp: &ControlPlane,
    id: &str,
    body: R,
) -> ServiceResult<Saved<R>> {
    let resource = prepare(body, id)?;
    let mut tx = cp.store().begin().await?;
    let created = save(&mut tx, "", &resource).await?;
    commit(cp, tx).await?;
    Ok(Saved {
        created,
        value: resource,
    })
}

/// Applies a JSON merge patch to a resource that has no rules beyond its own validation.
pub(crate) async fn patch_simple<R: Resource + Record>(
    cp: &ControlPlane,
    id: &str,
    patch: Value,
) -> ServiceResult<R> {
    let existing = load::<R>(cp, "", id).await?;
    let resource = merge(&existing, patch)?;
    let mut tx = cp.store().begin().await?;
    save(&mut tx, "", &resource).await?;
    commit(cp, tx).await?;
    Ok(resource)
}

/// Deletes a top-level resource with what the registry of kinds puts under it, and the
/// `linked` links that point at it.
pub(crate) async fn delete_simple<R: Resource + Record>(
    cp: &ControlPlane,
    id: &str,
    linked: &[Link],
) -> ServiceResult<()> {
    let kind = R::KIND;
    check_id(kind, id)?;
    let mut tx = cp.store().begin().await?;
    if !tx.repo::<R>().delete("", id).await? {
        return Err(ServiceError::not_found(label(kind), id));
    }
    tx.delete_children_of(kind, id).await?;
    for link in linked {
        tx.links(*link).remove_to(id).await?;
    }
    commit(cp, tx).await?;
    Ok(())
}

#[cfg(test)]
mod tests;
