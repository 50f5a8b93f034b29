//! `/mgmt/gateways/{gatewayId}/hostnameConfigurations`: the hostnames a gateway serves over
//! TLS, each with a certificate (that has its private key) chosen by SNI. Stored as children of
//! the gateway, so deleting the gateway removes them.

use axum::Json;
use axum::http::StatusCode;
use gatehouse_model::resources::{
    Collection, Gateway, HostnameConfiguration, Resource, validate_id,
};

use gatehouse_store::Kind;

use super::certificates::StoredCertificate;
use super::{Cp, check_id, commit, load, load_all, save, saved};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::{JsonBody, Paging, Path, Query};

fn check_ids(gateway: &str, id: &str) -> ApiResult<()> {
    check_id(Kind::Gateway, gateway)?;
    validate_id("hostnameConfiguration", id)?;
    Ok(())
}

fn not_found(gateway: &str, id: &str) -> ApiError {
    ApiError::NotFound(format!(
        "Hostname configuration '{id}' of gateway '{gateway}' was not found."
    ))
}

#[utoipa::path(get, path = "/mgmt/gateways/{gatewayId}/hostnameConfigurations", tag = "gateways",
    operation_id = "hostname_configurations_list",
    params(("gatewayId" = String, Path), Paging),
    responses((status = 200, body = Collection<HostnameConfiguration>),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn list(
    cp: Cp,
    Path(gateway): Path<String>,
    Query(paging): Query<Paging>,
) -> ApiResult<Json<Collection<HostnameConfiguration>>> {
    Ok(Json(
        super::list_gateway_children::<HostnameConfiguration>(
            &cp,
            &gateway,
            "hostnameConfigurations",
            &paging,
        )
        .await?,
    ))
}

#[utoipa::path(get, path = "/mgmt/gateways/{gatewayId}/hostnameConfigurations/{hcId}",
    tag = "gateways",
    operation_id = "hostname_configurations_get",
    params(("gatewayId" = String, Path), ("hcId" = String, Path)),
    responses((status = 200, body = HostnameConfiguration), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn get(
    cp: Cp,
    Path((gateway, id)): Path<(String, String)>,
) -> ApiResult<Json<HostnameConfiguration>> {
    check_ids(&gateway, &id)?;
    super::load_opt::<HostnameConfiguration>(&cp, &gateway, &id)
        .await?
        .map(Json)
        .ok_or_else(|| not_found(&gateway, &id))
}

#[utoipa::path(put, path = "/mgmt/gateways/{gatewayId}/hostnameConfigurations/{hcId}",
    tag = "gateways",
    operation_id = "hostname_configurations_put",
    params(("gatewayId" = String, Path), ("hcId" = String, Path)),
    request_body = HostnameConfiguration,
    responses((status = 200, body = HostnameConfiguration),
              (status = 201, body = HostnameConfiguration), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody, description = "The gateway or the certificate does not exist"),
              (status = 409, body = ErrorBody, description = "The certificate has no private key, or another configuration of the gateway has the hostname")),
    security(("admin" = [])))]
pub async fn put(
    cp: Cp,
    Path((gateway, id)): Path<(String, String)>,
    JsonBody(mut hc): JsonBody<HostnameConfiguration>,
) -> ApiResult<(StatusCode, Json<HostnameConfiguration>)> {
    check_ids(&gateway, &id)?;
    hc.set_id(id.clone());
    hc.normalize()?;
    load::<Gateway>(&cp, "", &gateway).await?;
    let certificate = super::certificates::referenced(&cp, &hc.certificate_id).await?;
    // The certificate's state, and another configuration's hostname, are clashes with what is
    // stored rather than malformed input: 409, like a taken name.
    if !certificate.has_private_key {
        return Err(ApiError::Conflict(format!(
            "Invalid value for 'certificateId': certificate '{}' has no private key, and a gateway cannot serve it without one; PUT it again with the key after the chain",
            hc.certificate_id
        )));
    }
    // One configuration per hostname: SNI could not choose between two.
    for other in load_all::<HostnameConfiguration>(&cp, &gateway).await? {
        if other.id != id && other.hostname == hc.hostname {
            return Err(ApiError::Conflict(format!(
                "Invalid value for 'hostname': '{}' is already configured by hostname configuration '{}' of this gateway",
                hc.hostname, other.id
            )));
        }
    }
    let mut tx = cp.store().begin().await?;
    // Again under the write lock: the certificate may have gone or lost its key meanwhile.
    let still = tx
        .repo::<StoredCertificate>()
        .get("", &hc.certificate_id)
        .await?
        .is_some_and(|c| c.has_private_key);
    if !still {
        return Err(ApiError::Conflict(format!(
            "certificate '{}' changed while this request ran; try again",
            hc.certificate_id
        )));
    }
    let created = save(&mut tx, &gateway, &hc).await?;
    commit(&cp, tx).await?;
    Ok(saved(created, hc))
}

#[utoipa::path(delete, path = "/mgmt/gateways/{gatewayId}/hostnameConfigurations/{hcId}",
    tag = "gateways",
    operation_id = "hostname_configurations_delete",
    params(("gatewayId" = String, Path), ("hcId" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn delete(cp: Cp, Path((gateway, id)): Path<(String, String)>) -> ApiResult<StatusCode> {
    check_ids(&gateway, &id)?;
    let missing = not_found(&gateway, &id);
    super::delete_gateway_child::<HostnameConfiguration>(&cp, &gateway, &id, missing).await
}
