//! APIs. A create-or-replace with `import` creates the operations from an OpenAPI 3.x or
//! Swagger 2.0 document and keeps the document for the portal and mocks. An API's path
//! belongs to it alone, compared without case as routing does; deleting an API deletes its
//! operations, policies, document and the links that name it.

use gatehouse_model::ValidationError;
use gatehouse_model::openapi;
use gatehouse_model::resources::{Api, Operation};
use gatehouse_store::records::{ApiDocument, PathOwner};
use gatehouse_store::{Kind, Link, StoreError, Tx};

use super::{
    Saved, ServiceError, ServiceResult, check_id, commit, load, load_all, merge, prepare, save,
};
use crate::ControlPlane;

// The path index (`PathOwner`): one document per API path, lower-cased, naming the API serving
// it. Kept in the same transaction as the API, so checking that a path is free costs one read
// instead of a scan of every API.

fn path_key(path: &str) -> String {
    path.to_ascii_lowercase()
}

/// Records `api`'s path in the index inside `tx`, refusing a path another API already serves
/// (paths compare without case, as routing does), and frees its previous path.
async fn claim_path(tx: &mut Tx, api: &Api) -> ServiceResult<()> {
    let key = path_key(&api.path);
    let owner = match tx.repo::<PathOwner>().get("", &key).await {
        // An entry that cannot be read keeps the path taken, by an API it cannot name.
        Err(StoreError::Undecodable { .. }) => Some(PathOwner(String::new())),
        other => other?,
    };
    if let Some(PathOwner(owner)) = owner
        && owner != api.id
    {
        // Another API holds it: a conflict with the store's state (409), not a malformed path.
        return Err(ServiceError::Conflict(format!(
            "'{}' is already the path of API '{owner}'; choose another path",
            api.path
        )));
    }
    if let Some(previous) = tx.repo::<Api>().get("", &api.id).await? {
        release_path(tx, &previous).await?;
    }
    tx.repo::<PathOwner>()
        .put("", &key, &PathOwner(api.id.clone()))
        .await?;
    Ok(())
}

/// Removes `api`'s path from the index, if the index gives it to `api`.
async fn release_path(tx: &mut Tx, api: &Api) -> ServiceResult<()> {
    let key = path_key(&api.path);
    let owner = tx.repo::<PathOwner>().lenient().get("", &key).await?;
    if owner.is_some_and(|o| o.0 == api.id) {
        tx.repo::<PathOwner>().delete("", &key).await?;
    }
    Ok(())
}

/// Builds the path index when it does not match the APIs (a store from before the index).
pub(crate) async fn index_paths(store: &gatehouse_store::Store) -> ServiceResult<()> {
    let mut wanted = std::collections::BTreeMap::new();
    for api in store.repo::<Api>().list("").await? {
        wanted.insert(path_key(&api.path), PathOwner(api.id));
    }
    let index = store.repo::<PathOwner>();
    let keys = index.ids("").await?;
    let indexed: std::collections::BTreeMap<String, PathOwner> = index
        .lenient()
        .entries("")
        .await?
        .into_iter()
        .map(|e| (e.id, e.value))
        .collect();
    if keys.len() == indexed.len() && indexed == wanted {
        return Ok(());
    }
    let mut tx = store.begin().await?;
    for key in keys.iter().filter(|k| !wanted.contains_key(*k)) {
        tx.repo::<PathOwner>().delete("", key).await?;
    }
    for (key, owner) in &wanted {
        if indexed.get(key) != Some(owner) {
            tx.repo::<PathOwner>().put("", key, owner).await?;
        }
    }
    tx.commit().await?;
    tracing::info!(apis = wanted.len(), "indexed API paths");
    Ok(())
}

/// Every API, ordered by id.
pub async fn list(cp: &ControlPlane) -> ServiceResult<Vec<Api>> {
    load_all::<Api>(cp, "").await
}

pub async fn get(cp: &ControlPlane, id: &str) -> ServiceResult<Api> {
    load::<Api>(cp, "", id).await
}

/// Creates or replaces API `id`. With `import`, its operations are replaced by the document's
/// and what the API leaves unset (name, description, service URL, version) is taken from it.
pub async fn put(cp: &ControlPlane, id: &str, mut body: Api) -> ServiceResult<Saved<Api>> {
    check_id(Kind::Api, id)?;
    let imported = match body.import.take() {
        Some(import) => {
            let format = import.format.to_ascii_lowercase();
            if !gatehouse_model::openapi::IMPORT_FORMATS.contains(&format.as_str()) {
                return Err(ValidationError::one(
                    "import.format",
                    format!("'{}' is not supported; use 'openapi' (OpenAPI 3.x or Swagger 2.0, JSON or YAML)", import.format),
                )
                .into());
            }
            Some(openapi::import(&import.value).map_err(|mut e| {
                for d in &mut e.details {
                    d.target = format!("import.value: {}", d.target);
                }
                e
            })?)
        }
        None => None,
    };
    if let Some(doc) = &imported {
        if body.display_name.is_empty() {
            body.display_name = doc.title.clone().unwrap_or_default();
        }
        if body.description.is_none() {
            body.description = doc.description.clone();
        }
        if body.service_url.is_none() {
            body.service_url = doc.service_url.clone();
        }
        if body.api_version.is_none() {
            body.api_version = doc.version.clone();
        }
    }
    let api = prepare(body, id)?;
    let mut tx = cp.store().begin().await?;
    claim_path(&mut tx, &api).await?;
    let created = save(&mut tx, "", &api).await?;
    if let Some(doc) = imported {
        tx.repo::<Operation>().delete_children(id).await?;
        for op in &doc.operations {
            save(&mut tx, id, op).await?;
        }
        tx.repo::<ApiDocument>()
            .put("", id, &ApiDocument(doc.document))
            .await?;
    }
    commit(cp, tx).await?;
    Ok(Saved {
        created,
        value: api,
    })
}

/// Applies a JSON merge patch to API `id` (`import` is for create-or-replace only).
pub async fn patch(cp: &ControlPlane, id: &str, patch: serde_json::Value) -> ServiceResult<Api> {
    // `null` is a merge patch's "unset", which for `import` (never stored) changes nothing.
    if patch.get("import").is_some_and(|v| !v.is_null()) {
        return Err(ValidationError::one("import", "is accepted by PUT only").into());
    }
    let existing = load::<Api>(cp, "", id).await?;
    let api = merge(&existing, patch)?;
    let mut tx = cp.store().begin().await?;
    claim_path(&mut tx, &api).await?;
    save(&mut tx, "", &api).await?;
    commit(cp, tx).await?;
    Ok(api)
}

/// Deletes API `id` with its operations, policies, imported document and the links to it.
pub async fn delete(cp: &ControlPlane, id: &str) -> ServiceResult<()> {
    check_id(Kind::Api, id)?;
    let mut tx = cp.store().begin().await?;
    let Some(existing) = tx.repo::<Api>().get("", id).await? else {
        return Err(ServiceError::not_found("API", id));
    };
    release_path(&mut tx, &existing).await?;
    tx.repo::<Api>().delete("", id).await?;
    // Its operations and policies (the registry's children of an API), its imported document,
    // and the links that name it.
    tx.delete_children_of(Kind::Api, id).await?;
    tx.repo::<ApiDocument>().delete("", id).await?;
    tx.links(Link::ProductApi).remove_to(id).await?;
    tx.links(Link::GatewayApi).remove_to(id).await?;
    commit(cp, tx).await?;
    Ok(())
}

/// The OpenAPI or Swagger document imported with API `id`, as JSON.
pub async fn document(cp: &ControlPlane, id: &str) -> ServiceResult<serde_json::Value> {
    load::<Api>(cp, "", id).await?;
    let ApiDocument(document) = cp
        .store()
        .repo::<ApiDocument>()
        .get("", id)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("API '{id}' has no imported document.")))?;
    Ok(document)
}

#[cfg(test)]
mod tests;
