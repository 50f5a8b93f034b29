//! `/mgmt/gateways/{gatewayId}/certificateAuthorities`: the CA certificates a gateway trusts
//! beyond the operating system's, by certificate id. Stored as children of the gateway.

use axum::Json;
use axum::http::StatusCode;
use gatehouse_model::resources::{Collection, Gateway, GatewayCertificateAuthority, Resource};

use gatehouse_store::Kind;

use super::certificates::StoredCertificate;
use super::{Cp, check_id, commit, load, save, saved};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::{JsonBody, Paging, Path, Query};

fn check_ids(gateway: &str, id: &str) -> ApiResult<()> {
    check_id(Kind::Gateway, gateway)?;
    check_id(Kind::Certificate, id)?;
    Ok(())
}

fn not_assigned(gateway: &str, id: &str) -> ApiError {
    ApiError::NotFound(format!(
        "Certificate '{id}' is not a certificate authority of gateway '{gateway}'."
    ))
}

#[utoipa::path(get, path = "/mgmt/gateways/{gatewayId}/certificateAuthorities", tag = "gateways",
    operation_id = "certificate_authorities_list",
    params(("gatewayId" = String, Path), Paging),
    responses((status = 200, body = Collection<GatewayCertificateAuthority>),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn list(
    cp: Cp,
    Path(gateway): Path<String>,
    Query(paging): Query<Paging>,
) -> ApiResult<Json<Collection<GatewayCertificateAuthority>>> {
    Ok(Json(
        super::list_gateway_children::<GatewayCertificateAuthority>(
            &cp,
            &gateway,
            "certificateAuthorities",
            &paging,
        )
        .await?,
    ))
}

#[utoipa::path(get, path = "/mgmt/gateways/{gatewayId}/certificateAuthorities/{certificateId}",
    tag = "gateways",
    operation_id = "certificate_authorities_get",
    params(("gatewayId" = String, Path), ("certificateId" = String, Path)),
    responses((status = 200, body = GatewayCertificateAuthority), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn get(
    cp: Cp,
    Path((gateway, id)): Path<(String, String)>,
) -> ApiResult<Json<GatewayCertificateAuthority>> {
    check_ids(&gateway, &id)?;
    super::load_opt::<GatewayCertificateAuthority>(&cp, &gateway, &id)
        .await?
        .map(Json)
        .ok_or_else(|| not_assigned(&gateway, &id))
}

#[utoipa::path(put, path = "/mgmt/gateways/{gatewayId}/certificateAuthorities/{certificateId}",
    tag = "gateways",
    operation_id = "certificate_authorities_put",
    params(("gatewayId" = String, Path), ("certificateId" = String, Path)),
    request_body = GatewayCertificateAuthority,
    responses((status = 200, body = GatewayCertificateAuthority),
              (status = 201, body = GatewayCertificateAuthority),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn put(
    cp: Cp,
    Path((gateway, id)): Path<(String, String)>,
    JsonBody(mut ca): JsonBody<GatewayCertificateAuthority>,
) -> ApiResult<(StatusCode, Json<GatewayCertificateAuthority>)> {
    check_ids(&gateway, &id)?;
    ca.set_id(id.clone());
    ca.normalize()?;
    load::<Gateway>(&cp, "", &gateway).await?;
    // The certificate is named by the path: a missing one is a missing resource (404).
    super::certificates::load_stored(&cp, &id).await?;
    let mut tx = cp.store().begin().await?;
    // Again under the write lock: the certificate may have been deleted meanwhile.
    if !tx.repo::<StoredCertificate>().exists("", &id).await? {
        return Err(ApiError::Conflict(format!(
            "certificate '{id}' was deleted while this request ran"
        )));
    }
    let created = save(&mut tx, &gateway, &ca).await?;
    commit(&cp, tx).await?;
    Ok(saved(super::Saved { created, value: ca }))
}

#[utoipa::path(delete, path = "/mgmt/gateways/{gatewayId}/certificateAuthorities/{certificateId}",
    tag = "gateways",
    operation_id = "certificate_authorities_delete",
    params(("gatewayId" = String, Path), ("certificateId" = String, Path)),
    responses((status = 204, description = "Unassigned"), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn delete(cp: Cp, Path((gateway, id)): Path<(String, String)>) -> ApiResult<StatusCode> {
    check_ids(&gateway, &id)?;
    let missing = not_assigned(&gateway, &id);
    super::delete_gateway_child::<GatewayCertificateAuthority>(&cp, &gateway, &id, missing).await
}
