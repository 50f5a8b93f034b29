//! The hostnames a gateway serves over TLS, each with a certificate (that has its private key)
//! chosen by SNI. Stored as children of the gateway, so deleting the gateway removes them.

use gatehouse_model::resources::{Gateway, HostnameConfiguration, Resource, validate_id};
use gatehouse_store::Kind;

use super::certificates::{self, StoredCertificate};
use super::{Saved, ServiceError, ServiceResult, check_id, commit, load, load_all, save};
use crate::ControlPlane;

fn check_ids(gateway: &str, id: &str) -> ServiceResult<()> {
    check_id(Kind::Gateway, gateway)?;
    validate_id("hostnameConfiguration", id)?;
    Ok(())
}

fn not_found(gateway: &str, id: &str) -> ServiceError {
    ServiceError::NotFound(format!(
        "Hostname configuration '{id}' of gateway '{gateway}' was not found."
    ))
}

/// Gateway `gateway`'s hostname configurations (404 when there is no such gateway).
pub async fn list(cp: &ControlPlane, gateway: &str) -> ServiceResult<Vec<HostnameConfiguration>> {
    super::gateways::children(cp, gateway).await
}

pub async fn get(
    cp: &ControlPlane,
    gateway: &str,
    id: &str,
) -> ServiceResult<HostnameConfiguration> {
    check_ids(gateway, id)?;
    super::load_opt::<HostnameConfiguration>(cp, gateway, id)
        .await?
        .ok_or_else(|| not_found(gateway, id))
}

/// Creates or replaces hostname configuration `id` of `gateway`: its certificate must exist
/// and hold its private key, and no other configuration of the gateway may have its hostname.
pub async fn put(
    cp: &ControlPlane,
    gateway: &str,
    id: &str,
    mut hc: HostnameConfiguration,
) -> ServiceResult<Saved<HostnameConfiguration>> {
    check_ids(gateway, id)?;
    hc.set_id(id.to_owned());
    hc.normalize()?;
    load::<Gateway>(cp, "", gateway).await?;
    let certificate = certificates::referenced(cp, &hc.certificate_id).await?;
    // The certificate's state, and another configuration's hostname, are clashes with what is
    // stored rather than malformed input: 409, like a taken name.
    if !certificate.has_private_key {
        return Err(ServiceError::Conflict(format!(
            "Invalid value for 'certificateId': certificate '{}' has no private key, and a gateway cannot serve it without one; PUT it again with the key after the chain",
            hc.certificate_id
        )));
    }
    // One configuration per hostname: SNI could not choose between two.
    for other in load_all::<HostnameConfiguration>(cp, gateway).await? {
        if other.id != id && other.hostname == hc.hostname {
            return Err(ServiceError::Conflict(format!(
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
        return Err(ServiceError::Conflict(format!(
            "certificate '{}' changed while this request ran; try again",
            hc.certificate_id
        )));
    }
    let created = save(&mut tx, gateway, &hc).await?;
    commit(cp, tx).await?;
    Ok(Saved { created, value: hc })
}

pub async fn delete(cp: &ControlPlane, gateway: &str, id: &str) -> ServiceResult<()> {
    check_ids(gateway, id)?;
    let missing = not_found(gateway, id);
    super::gateways::delete_child::<HostnameConfiguration>(cp, gateway, id, missing).await
}
