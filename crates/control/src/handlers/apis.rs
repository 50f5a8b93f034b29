//! `/mgmt/apis` and their operations. `PUT` with `import` creates the operations from an
//! OpenAPI 3.x or Swagger 2.0 document and keeps the document for the portal and mocks; what
//! is checked and kept is in `crate::service::{apis, operations}`.

use axum::Json;
use axum::http::StatusCode;
use gatehouse_model::resources::{Api, Collection, Operation};

use super::{Cp, saved};
use crate::error::{ApiResult, ErrorBody};
use crate::http::{JsonBody, Paging, Path, Query};
use crate::service::{apis as service, operations};

#[utoipa::path(get, path = "/mgmt/apis", tag = "apis", params(Paging),
    responses((status = 200, body = Collection<Api>), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn list(cp: Cp, Query(paging): Query<Paging>) -> ApiResult<Json<Collection<Api>>> {
    let items = service::list(&cp).await?;
    Ok(Json(paging.page("/mgmt/apis", items)?))
}

#[utoipa::path(get, path = "/mgmt/apis/{apiId}", tag = "apis",
    params(("apiId" = String, Path)),
    responses((status = 200, body = Api), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn get(cp: Cp, Path(id): Path<String>) -> ApiResult<Json<Api>> {
    Ok(Json(service::get(&cp, &id).await?))
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
    JsonBody(body): JsonBody<Api>,
) -> ApiResult<(StatusCode, Json<Api>)> {
    Ok(saved(service::put(&cp, &id, body).await?))
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
    Ok(Json(service::patch(&cp, &id, body).await?))
}

#[utoipa::path(delete, path = "/mgmt/apis/{apiId}", tag = "apis",
    params(("apiId" = String, Path)),
    responses((status = 204, description = "Deleted with its operations"),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn delete(cp: Cp, Path(id): Path<String>) -> ApiResult<StatusCode> {
    service::delete(&cp, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/mgmt/apis/{apiId}/openapi", tag = "apis",
    params(("apiId" = String, Path)),
    responses((status = 200, description = "The imported OpenAPI or Swagger document, as JSON", body = Object),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn get_document(cp: Cp, Path(id): Path<String>) -> ApiResult<Json<serde_json::Value>> {
    Ok(Json(service::document(&cp, &id).await?))
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
    let items = operations::list(&cp, &api).await?;
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
    Ok(Json(operations::get(&cp, &api, &op).await?))
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
    Ok(saved(operations::put(&cp, &api, &op, body).await?))
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
    Ok(Json(operations::patch(&cp, &api, &op, body).await?))
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
    operations::delete(&cp, &api, &op).await?;
    Ok(StatusCode::NO_CONTENT)
}
