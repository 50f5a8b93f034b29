//! `/mgmt/backends`: backend services that policies route to with
//! `<set-backend-service backend-id="…"/>`, with the credentials and TLS settings gateways use
//! for them. A backend's client certificate (`credentials.certificateIds`) must be a
//! certificate of `/mgmt/certificates` that holds its private key.

use std::collections::HashMap;

use gatehouse_model::ValidationError;
use gatehouse_model::resources::{Backend, Collection};
use gatehouse_store::Kind;

use super::{Cp, check_id, commit, load, load_all, merge, prepare, save, saved};
use crate::ControlPlane;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::{JsonBody, Paging, Path, Query};
use crate::service::{ServiceError, certificates};

/// Refuses a backend whose client certificate is missing or has no key, or whose credentials
/// name a named value that does not exist: gateways could not use it.
async fn check_references(cp: &ControlPlane, backend: &Backend) -> ApiResult<()> {
    let Some(credentials) = &backend.credentials else {
        return Ok(());
    };
    let wanted: Vec<String> = credentials
        .texts()
        .flat_map(crate::service::policies::referenced_names)
        .collect();
    let named = if wanted.is_empty() {
        HashMap::new()
    } else {
        crate::service::policies::named_values(cp).await?
    };
    if let Some(missing) = wanted.iter().find(|w| !named.contains_key(*w)) {
        return Err(ValidationError::one(
            "credentials",
            format!("named value '{missing}' does not exist; create it with PUT /mgmt/named-values/{missing} first"),
        )
        .into());
    }
    crate::service::backends::check_values(backend, &named)?;
    for id in credentials.certificates() {
        let stored = certificates::referenced(cp, id).await.map_err(|e| match e {
            ServiceError::Invalid(_) => ValidationError::one(
                "credentials.certificateIds",
                format!("certificate '{id}' does not exist; PUT it (PEM chain and private key) to /mgmt/certificates/{id} first"),
            )
            .into(),
            other => other,
        })?;
        if !stored.has_private_key {
            return Err(ValidationError::one(
                "credentials.certificateIds",
                format!("certificate '{id}' has no private key, and a client certificate needs one; PUT it again with the key after the chain"),
            )
            .into());
        }
    }
    Ok(())
}

#[utoipa::path(get, path = "/mgmt/backends", tag = "backends", params(Paging),
    responses((status = 200, body = Collection<Backend>), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn list(
    cp: Cp,
    Query(paging): Query<Paging>,
) -> ApiResult<axum::Json<Collection<Backend>>> {
    let items = load_all::<Backend>(&cp, "").await?;
    Ok(axum::Json(paging.page("/mgmt/backends", items)?))
}

#[utoipa::path(get, path = "/mgmt/backends/{backendId}", tag = "backends",
    params(("backendId" = String, Path)),
    responses((status = 200, body = Backend), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn get(cp: Cp, Path(id): Path<String>) -> ApiResult<axum::Json<Backend>> {
    Ok(axum::Json(load::<Backend>(&cp, "", &id).await?))
}

#[utoipa::path(put, path = "/mgmt/backends/{backendId}", tag = "backends",
    params(("backendId" = String, Path)), request_body = Backend,
    responses((status = 200, body = Backend), (status = 201, body = Backend),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn put(
    cp: Cp,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Backend>,
) -> ApiResult<(axum::http::StatusCode, axum::Json<Backend>)> {
    let resource = prepare(body, &id)?;
    // Checked inside the write transaction, so the certificate cannot go meanwhile.
    let mut tx = cp.store().begin().await?;
    check_references(&cp, &resource).await?;
    let created = save(&mut tx, "", &resource).await?;
    commit(&cp, tx).await?;
    Ok(saved(super::Saved {
        created,
        value: resource,
    }))
}

#[utoipa::path(patch, path = "/mgmt/backends/{backendId}", tag = "backends",
    params(("backendId" = String, Path)), request_body = Backend,
    responses((status = 200, body = Backend), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn patch(
    cp: Cp,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> ApiResult<axum::Json<Backend>> {
    let existing = load::<Backend>(&cp, "", &id).await?;
    let resource = merge(&existing, body)?;
    let mut tx = cp.store().begin().await?;
    check_references(&cp, &resource).await?;
    save(&mut tx, "", &resource).await?;
    commit(&cp, tx).await?;
    Ok(axum::Json(resource))
}

#[utoipa::path(delete, path = "/mgmt/backends/{backendId}", tag = "backends",
    params(("backendId" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn delete(cp: Cp, Path(id): Path<String>) -> ApiResult<axum::http::StatusCode> {
    check_id(Kind::Backend, &id)?;
    // Read while this transaction holds the write lock, so no policy starts using it meanwhile.
    let mut tx = cp.store().begin().await?;
    let users = crate::service::policies::backend_users(&cp, &id).await?;
    if !users.is_empty() {
        return Err(ValidationError::one(
            "backendId",
            format!(
                "'{id}' is used by {}; remove it there first",
                users.join(", ")
            ),
        )
        .into());
    }
    if !tx.repo::<Backend>().delete("", &id).await? {
        return Err(ApiError::not_found(super::label(Kind::Backend), &id));
    }
    commit(&cp, tx).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}
