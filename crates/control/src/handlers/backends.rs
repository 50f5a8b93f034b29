//! `/mgmt/backends`: backend services that policies route to with
//! `<set-backend-service backend-id="…"/>`, with the credentials and TLS settings gateways use
//! for them. A backend's client certificate (`credentials.certificateIds`) must be a
//! certificate of `/mgmt/certificates` that holds its private key.

use std::collections::HashMap;

use gatehouse_model::ValidationError;
use gatehouse_model::resources::{Backend, Collection};
use gatehouse_store::Kind;

use super::{Cp, certificates, check_id, commit, load, load_all, merge, prepare, save, saved};
use crate::ControlPlane;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::{JsonBody, Paging, Path, Query};

/// Refuses a backend whose client certificate is missing or has no key, or whose credentials
/// name a named value that does not exist: gateways could not use it.
async fn check_references(cp: &ControlPlane, backend: &Backend) -> ApiResult<()> {
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
        return Err(ApiError::missing_reference(
            "credentials",
            format!(
                "named value '{missing}' does not exist; create it with PUT /mgmt/named-values/{missing} first"
            ),
        ));
    }
    check_values(backend, &named)?;
    for id in credentials.certificates() {
        let stored = certificates::referenced(cp, id).await.map_err(|e| match e {
            ApiError::NotFound(_) => ApiError::missing_reference(
                "credentials.certificateIds",
                format!("certificate '{id}' does not exist; PUT it (PEM chain and private key) to /mgmt/certificates/{id} first"),
            ),
            other => other,
        })?;
        // The certificate's state, not this request, is in the way: 409, like a taken name.
        if !stored.has_private_key {
            return Err(ApiError::Conflict(format!(
                "Invalid value for 'credentials.certificateIds': certificate '{id}' has no private key, and a client certificate needs one; PUT it again with the key after the chain"
            )));
        }
    }
    Ok(())
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
            if axum::http::HeaderValue::from_str(&resolved(v, named)).is_err() {
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
        if axum::http::HeaderValue::from_str(&value).is_err() {
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
) -> ApiResult<()> {
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
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody, description = "A certificate or named value the credentials name does not exist"),
              (status = 409, body = ErrorBody, description = "The client certificate has no private key")),
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
    Ok(saved(created, resource))
}

#[utoipa::path(patch, path = "/mgmt/backends/{backendId}", tag = "backends",
    params(("backendId" = String, Path)), request_body = Backend,
    responses((status = 200, body = Backend), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody, description = "The backend, or a certificate or named value its credentials name, does not exist"),
              (status = 409, body = ErrorBody, description = "The client certificate has no private key")),
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
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "In use; the message says where")),
    security(("admin" = [])))]
pub async fn delete(cp: Cp, Path(id): Path<String>) -> ApiResult<axum::http::StatusCode> {
    check_id(Kind::Backend, &id)?;
    // Read while this transaction holds the write lock, so no policy starts using it meanwhile.
    let mut tx = cp.store().begin().await?;
    let users = super::policies::backend_users(&cp, &id).await?;
    if !users.is_empty() {
        return Err(ApiError::Conflict(format!(
            "Backend '{id}' is used by {}; remove it there first",
            users.join(", ")
        )));
    }
    if !tx.repo::<Backend>().delete("", &id).await? {
        return Err(ApiError::not_found(super::label(Kind::Backend), &id));
    }
    commit(&cp, tx).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// `backend '{id}'` for each backend that presents certificate `id`.
pub(crate) async fn certificate_users(cp: &ControlPlane, id: &str) -> ApiResult<Vec<String>> {
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
