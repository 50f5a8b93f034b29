//! The CA certificates a gateway trusts beyond the operating system's, by certificate id.
//! Stored as children of the gateway, so deleting the gateway removes them.

use gatehouse_model::resources::{Gateway, GatewayCertificateAuthority, Resource};
use gatehouse_store::Kind;

use super::certificates::{self, StoredCertificate};
use super::{Saved, ServiceError, ServiceResult, check_id, commit, load, save};
use crate::ControlPlane;

fn check_ids(gateway: &str, id: &str) -> ServiceResult<()> {
    check_id(Kind::Gateway, gateway)?;
    check_id(Kind::Certificate, id)?;
    Ok(())
}

fn not_assigned(gateway: &str, id: &str) -> ServiceError {
    ServiceError::NotFound(format!(
        "Certificate '{id}' is not a certificate authority of gateway '{gateway}'."
    ))
}

/// Gateway `gateway`'s certificate authorities (404 when there is no such gateway).
pub async fn list(
    cp: &ControlPlane,
    gateway: &str,
) -> ServiceResult<Vec<GatewayCertificateAuthority>> {
    super::gateways::children(cp, gateway).await
}

pub async fn get(
    cp: &ControlPlane,
    gateway: &str,
    id: &str,
) -> ServiceResult<GatewayCertificateAuthority> {
    check_ids(gateway, id)?;
    super::load_opt::<GatewayCertificateAuthority>(cp, gateway, id)
        .await?
        .ok_or_else(|| not_assigned(gateway, id))
}

/// Makes certificate `id` a certificate authority of `gateway`; both must exist.
pub async fn put(
    cp: &ControlPlane,
    gateway: &str,
    id: &str,
    mut ca: GatewayCertificateAuthority,
) -> ServiceResult<Saved<GatewayCertificateAuthority>> {
    check_ids(gateway, id)?;
    ca.set_id(id.to_owned());
    ca.normalize()?;
    load::<Gateway>(cp, "", gateway).await?;
    // The certificate is named by the path: a missing one is a missing resource (404).
    certificates::load_stored(cp, id).await?;
    let mut tx = cp.store().begin().await?;
    // Again under the write lock: the certificate may have been deleted meanwhile.
    if !tx.repo::<StoredCertificate>().exists("", id).await? {
        return Err(ServiceError::Conflict(format!(
            "certificate '{id}' was deleted while this request ran"
        )));
    }
    let created = save(&mut tx, gateway, &ca).await?;
    commit(cp, tx).await?;
    Ok(Saved { created, value: ca })
}

pub async fn delete(cp: &ControlPlane, gateway: &str, id: &str) -> ServiceResult<()> {
    check_ids(gateway, id)?;
    let missing = not_assigned(gateway, id);
    super::gateways::delete_child::<GatewayCertificateAuthority>(cp, gateway, id, missing).await
}
