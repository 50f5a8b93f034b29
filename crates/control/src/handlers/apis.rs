//! `/mgmt/apis` and their operations. `PUT` with `import` creates the operations from an
//! OpenAPI 3.x or Swagger 2.0 document and keeps the document for the portal and mocks.

use axum::Json;
use axum::http::StatusCode;
use gatehouse_model::ValidationError;
use gatehouse_model::openapi;
use gatehouse_model::resources::{Api, Collection, Operation};
use gatehouse_store::records::{ApiDocument, PathOwner};
use gatehouse_store::{Kind, Link, PolicyScope, StoreError, Tx};

use super::{Cp, check_id, commit, load, load_all, merge, prepare, save, saved};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::{JsonBody, Paging, Path, Query};

// The path index (`PathOwner`): one document per API path, lower-cased, naming the API serving
// it. Kept in the same transaction as the API, so checking that a path is free costs one read
// instead of a scan of every API.

fn path_key(path: &str) -> String {
    path.to_ascii_lowercase()
}

/// Records `api`'s path in the index inside `tx`, refusing a path another API already serves
/// (paths compare without case, as routing does), and frees its previous path.
async fn claim_path(tx: &mut Tx, api: &Api) -> ApiResult<()> {
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
        return Err(ApiError::Conflict(format!(
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
async fn release_path(tx: &mut Tx, api: &Api) -> ApiResult<()> {
    let key = path_key(&api.path);
    let owner = tx.repo::<PathOwner>().lenient().get("", &key).await?;
    if owner.is_some_and(|o| o.0 == api.id) {
        tx.repo::<PathOwner>().delete("", &key).await?;
    }
    Ok(())
}

/// Builds the path index when it does not match the APIs (a store from before the index).
pub(crate) async fn index_paths(store: &gatehouse_store::Store) -> ApiResult<()> {
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

#[utoipa::path(get, path = "/mgmt/apis", tag = "apis", params(Paging),
    responses((status = 200, body = Collection<Api>), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn list(cp: Cp, Query(paging): Query<Paging>) -> ApiResult<Json<Collection<Api>>> {
    let items = load_all::<Api>(&cp, "").await?;
    Ok(Json(paging.page("/mgmt/apis", items)?))
}

#[utoipa::path(get, path = "/mgmt/apis/{apiId}", tag = "apis",
    params(("apiId" = String, Path)),
    responses((status = 200, body = Api), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn get(cp: Cp, Path(id): Path<String>) -> ApiResult<Json<Api>> {
    Ok(Json(load::<Api>(&cp, "", &id).await?))
}

#[utoipa::path(put, path = "/mgmt/apis/{apiId}", tag = "apis",
    params(("apiId" = String, Path)), request_body = Api,
    responses((status = 200, body = Api), (status = 201, body = Api),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "Another API has the path")),
    security(("admin" = [])))]
pub async fn put(
    cp: Cp,
    Path(id): Path<String>,
    JsonBody(mut body): JsonBody<Api>,
) -> ApiResult<(StatusCode, Json<Api>)> {
    check_id(Kind::Api, &id)?;
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
    let api = prepare(body, &id)?;
    let mut tx = cp.store().begin().await?;
    claim_path(&mut tx, &api).await?;
    let created = save(&mut tx, "", &api).await?;
    if let Some(doc) = imported {
        tx.repo::<Operation>().delete_children(&id).await?;
        for op in &doc.operations {
            save(&mut tx, &id, op).await?;
        }
        tx.repo::<ApiDocument>()
            .put("", &id, &ApiDocument(doc.document))
            .await?;
    }
    commit(&cp, tx).await?;
    Ok(saved(created, api))
}

#[utoipa::path(patch, path = "/mgmt/apis/{apiId}", tag = "apis",
    params(("apiId" = String, Path)), request_body = Api,
    responses((status = 200, body = Api), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "Another API has the path")),
    security(("admin" = [])))]
pub async fn patch(
    cp: Cp,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> ApiResult<Json<Api>> {
    // `null` is a merge patch's "unset", which for `import` (never stored) changes nothing.
    if body.get("import").is_some_and(|v| !v.is_null()) {
        return Err(ValidationError::one("import", "is accepted by PUT only").into());
    }
    let existing = load::<Api>(&cp, "", &id).await?;
    let api = merge(&existing, body)?;
    let mut tx = cp.store().begin().await?;
    claim_path(&mut tx, &api).await?;
    save(&mut tx, "", &api).await?;
    commit(&cp, tx).await?;
    Ok(Json(api))
}

#[utoipa::path(delete, path = "/mgmt/apis/{apiId}", tag = "apis",
    params(("apiId" = String, Path)),
    responses((status = 204, description = "Deleted with its operations"),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn delete(cp: Cp, Path(id): Path<String>) -> ApiResult<StatusCode> {
    check_id(Kind::Api, &id)?;
    let mut tx = cp.store().begin().await?;
    let Some(existing) = tx.repo::<Api>().get("", &id).await? else {
        return Err(ApiError::not_found("API", &id));
    };
    release_path(&mut tx, &existing).await?;
    tx.repo::<Api>().delete("", &id).await?;
    // Its operations and policies (the registry's children of an API), its imported document,
    // and the links that name it.
    tx.delete_children_of(Kind::Api, &id).await?;
    tx.repo::<ApiDocument>().delete("", &id).await?;
    tx.links(Link::ProductApi).remove_to(&id).await?;
    tx.links(Link::GatewayApi).remove_to(&id).await?;
    commit(&cp, tx).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/mgmt/apis/{apiId}/openapi", tag = "apis",
    params(("apiId" = String, Path)),
    responses((status = 200, description = "The imported OpenAPI or Swagger document, as JSON", body = Object),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn get_document(cp: Cp, Path(id): Path<String>) -> ApiResult<Json<serde_json::Value>> {
    load::<Api>(&cp, "", &id).await?;
    let ApiDocument(document) = cp
        .store()
        .repo::<ApiDocument>()
        .get("", &id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("API '{id}' has no imported document.")))?;
    Ok(Json(document))
}

#[utoipa::path(get, path = "/mgmt/apis/{apiId}/operations", tag = "apis",
    params(("apiId" = String, Path), Paging),
    responses((status = 200, body = Collection<Operation>), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn list_operations(
    cp: Cp,
    Path(api): Path<String>,
    Query(paging): Query<Paging>,
) -> ApiResult<Json<Collection<Operation>>> {
    load::<Api>(&cp, "", &api).await?;
    let items = load_all::<Operation>(&cp, &api).await?;
    Ok(Json(
        paging.page(&format!("/mgmt/apis/{api}/operations"), items)?,
    ))
}

#[utoipa::path(get, path = "/mgmt/apis/{apiId}/operations/{operationId}", tag = "apis",
    params(("apiId" = String, Path), ("operationId" = String, Path)),
    responses((status = 200, body = Operation), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn get_operation(
    cp: Cp,
    Path((api, op)): Path<(String, String)>,
) -> ApiResult<Json<Operation>> {
    load::<Api>(&cp, "", &api).await?;
    Ok(Json(load::<Operation>(&cp, &api, &op).await?))
}

#[utoipa::path(put, path = "/mgmt/apis/{apiId}/operations/{operationId}", tag = "apis",
    params(("apiId" = String, Path), ("operationId" = String, Path)), request_body = Operation,
    responses((status = 200, body = Operation), (status = 201, body = Operation),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn put_operation(
    cp: Cp,
    Path((api, op)): Path<(String, String)>,
    JsonBody(body): JsonBody<Operation>,
) -> ApiResult<(StatusCode, Json<Operation>)> {
    load::<Api>(&cp, "", &api).await?;
    let operation = prepare(body, &op)?;
    let mut tx = cp.store().begin().await?;
    let created = save(&mut tx, &api, &operation).await?;
    commit(&cp, tx).await?;
    Ok(saved(created, operation))
}

#[utoipa::path(patch, path = "/mgmt/apis/{apiId}/operations/{operationId}", tag = "apis",
    params(("apiId" = String, Path), ("operationId" = String, Path)), request_body = Operation,
    responses((status = 200, body = Operation), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn patch_operation(
    cp: Cp,
    Path((api, op)): Path<(String, String)>,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> ApiResult<Json<Operation>> {
    load::<Api>(&cp, "", &api).await?;
    let existing = load::<Operation>(&cp, &api, &op).await?;
    let operation = merge(&existing, body)?;
    let mut tx = cp.store().begin().await?;
    save(&mut tx, &api, &operation).await?;
    commit(&cp, tx).await?;
    Ok(Json(operation))
}

#[utoipa::path(delete, path = "/mgmt/apis/{apiId}/operations/{operationId}", tag = "apis",
    params(("apiId" = String, Path), ("operationId" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn delete_operation(
    cp: Cp,
    Path((api, op)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    check_id(Kind::Api, &api)?;
    check_id(Kind::Operation, &op)?;
    let mut tx = cp.store().begin().await?;
    if !tx.repo::<Operation>().delete(&api, &op).await? {
        return Err(ApiError::not_found("Operation", &op));
    }
    let policy = PolicyScope::Operation {
        api: api.clone(),
        operation: op.clone(),
    };
    tx.policies().delete(&policy).await?;
    commit(&cp, tx).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::extract::State;

    use super::*;
    use crate::ControlPlane;

    async fn control() -> (Arc<ControlPlane>, std::path::PathBuf) {
        let t = crate::testkit::open("apis-test").await;
        (t.cp, t.dir)
    }

    async fn put_api(cp: &Arc<ControlPlane>, id: &str, path: &str) -> ApiResult<()> {
        let body: Api = serde_json::from_value(serde_json::json!({ "path": path })).unwrap();
        put(State(cp.clone()), Path(id.to_owned()), JsonBody(body))
            .await
            .map(|_| ())
    }

    #[tokio::test]
    async fn a_service_url_a_gateway_would_refuse_is_refused_at_save() {
        let (cp, dir) = control().await;
        for url in ["https://bad-.example.com", "http://example.com:99999"] {
            let body: Api =
                serde_json::from_value(serde_json::json!({ "path": "shop", "serviceUrl": url }))
                    .unwrap();
            let e = put(State(cp.clone()), Path("shop".into()), JsonBody(body))
                .await
                .unwrap_err();
            let text = e.to_string();
            assert!(
                matches!(e, ApiError::Validation(_)) && text.contains("serviceUrl"),
                "{text}"
            );
        }
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn a_path_belongs_to_one_api_whatever_its_case() {
        let (cp, dir) = control().await;
        put_api(&cp, "a", "shop/v1").await.unwrap();
        let taken = put_api(&cp, "b", "Shop/V1").await.unwrap_err();
        assert!(
            taken.to_string().contains("already the path of API 'a'"),
            "{taken}"
        );
        // Moving an API frees its old path; deleting one frees its path.
        put_api(&cp, "a", "shop/v2").await.unwrap();
        put_api(&cp, "b", "shop/v1").await.unwrap();
        delete(State(cp.clone()), Path("b".into())).await.unwrap();
        put_api(&cp, "c", "SHOP/v1").await.unwrap();
        assert!(put_api(&cp, "d", "shop/V2").await.is_err());

        // A store from before the index gets it built when the control plane opens.
        let mut tx = cp.store().begin().await.unwrap();
        tx.repo::<PathOwner>().delete_children("").await.unwrap();
        tx.commit().await.unwrap();
        index_paths(cp.store()).await.unwrap();
        assert!(put_api(&cp, "d", "shop/V2").await.is_err());
        put_api(&cp, "d", "shop/v3").await.unwrap();
        std::fs::remove_dir_all(dir).ok();
    }
}
