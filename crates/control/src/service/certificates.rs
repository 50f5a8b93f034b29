//! TLS certificates for the gateways' hostname configurations, certificate authorities and
//! backends' client certificates. The PEM `data` is parsed and checked here (the chain, and
//! that the key fits the leaf), then kept sealed with the control plane's key; reads show only
//! what the leaf says of itself (subject, thumbprint, expiry) and whether there is a key. A
//! certificate in use cannot be deleted, nor lose its key while something needs it.

use gatehouse_model::ValidationError;
use gatehouse_model::resources::{
    Certificate, GatewayCertificateAuthority, HostnameConfiguration, PemParts, Resource, split_pem,
};
use gatehouse_store::{JsonRecord, Kind};
use serde::{Deserialize, Serialize};

use super::{Saved, ServiceError, ServiceResult, check_id, commit};
use crate::ControlPlane;
use crate::secrets::Sealer;

/// A certificate as stored: what reads show, and the PEM chain and key sealed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StoredCertificate {
    pub subject: String,
    pub thumbprint: String,
    pub expiration_date: String,
    pub has_private_key: bool,
    /// The chain (PEM), sealed.
    pub sealed_chain: String,
    /// The private key (PEM), sealed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_key: Option<String>,
}

impl JsonRecord for StoredCertificate {
    const KIND: Kind = Kind::Certificate;
}

/// A certificate's PEM, opened.
pub(crate) struct Opened {
    pub chain: String,
    pub key: Option<String>,
}

impl StoredCertificate {
    pub(crate) fn present(&self, id: &str) -> Certificate {
        Certificate {
            id: id.to_owned(),
            data: None,
            password: None,
            subject: self.subject.clone(),
            thumbprint: self.thumbprint.clone(),
            expiration_date: self.expiration_date.clone(),
            has_private_key: self.has_private_key,
        }
    }

    pub(crate) fn open(&self, sealer: &Sealer) -> ServiceResult<Opened> {
        let open = |s: &str| {
            sealer
                .open(s)
                .map_err(|e| ServiceError::Internal(e.to_string()))
        };
        Ok(Opened {
            chain: open(&self.sealed_chain)?,
            key: self.sealed_key.as_deref().map(open).transpose()?,
        })
    }
}

/// Parses the chain with the TLS stack the gateways use, reads the leaf, and checks the key
/// fits it. Every failure is a validation error naming the problem.
fn inspect(parts: &PemParts) -> ServiceResult<Certificate> {
    let invalid = |message: String| ServiceError::from(ValidationError::one("data", message));
    let chain = gatehouse_tls::pem::certificates(parts.chain.as_bytes(), "the certificate chain")
        .map_err(|e| invalid(e.to_string()))?;
    let leaf = chain
        .first()
        .ok_or_else(|| invalid("holds no certificate".into()))?;
    let info = gatehouse_tls::x509::describe(leaf)
        .map_err(|e| invalid(format!("the first certificate (the leaf) is {e}")))?;
    for (i, cert) in chain.iter().enumerate().skip(1) {
        gatehouse_tls::x509::describe(cert)
            .map_err(|e| invalid(format!("certificate {} of the chain is {e}", i + 1)))?;
    }
    if let Some(key) = &parts.key {
        gatehouse_tls::pem::certified_key(
            parts.chain.as_bytes(),
            "the certificate chain",
            key.as_bytes(),
            "the private key",
        )
        .map_err(|e| invalid(e.to_string()))?;
    }
    Ok(Certificate {
        id: String::new(),
        data: None,
        password: None,
        subject: info.subject,
        thumbprint: info.thumbprint,
        expiration_date: gatehouse_model::reports::rfc3339(info.not_after),
        has_private_key: parts.key.is_some(),
    })
}

/// The certificate a gateway resource refers to: a missing one is 404, naming `certificateId`
/// and what to create.
pub(crate) async fn referenced(cp: &ControlPlane, id: &str) -> ServiceResult<StoredCertificate> {
    match load_stored(cp, id).await {
        Err(ServiceError::NotFound(_)) => Err(ServiceError::missing_reference(
            "certificateId",
            format!("certificate '{id}' does not exist; PUT it to /mgmt/certificates/{id} first"),
        )),
        other => other,
    }
}

pub(crate) async fn load_stored(cp: &ControlPlane, id: &str) -> ServiceResult<StoredCertificate> {
    check_id(Kind::Certificate, id)?;
    match cp.store().repo::<StoredCertificate>().get("", id).await? {
        Some(stored) => Ok(stored),
        None => Err(ServiceError::not_found("Certificate", id)),
    }
}

/// Every certificate as reads show it, ordered by id.
pub async fn list(cp: &ControlPlane) -> ServiceResult<Vec<Certificate>> {
    Ok(cp
        .store()
        .repo::<StoredCertificate>()
        .entries("")
        .await?
        .iter()
        .map(|s| s.value.present(&s.id))
        .collect())
}

pub async fn get(cp: &ControlPlane, id: &str) -> ServiceResult<Certificate> {
    Ok(load_stored(cp, id).await?.present(id))
}

/// Checks and stores certificate `id` from its PEM `data`; returns it as reads show it.
pub async fn put(
    cp: &ControlPlane,
    id: &str,
    body: Certificate,
) -> ServiceResult<Saved<Certificate>> {
    // Stored as a `StoredCertificate`, so prepared here rather than by `prepare`.
    check_id(Kind::Certificate, id)?;
    let mut body = body;
    body.set_id(id.to_owned());
    body.normalize()?;
    let parts = split_pem("data", body.data.as_deref().unwrap_or_default())?;
    let mut shown = inspect(&parts)?;
    shown.id = id.to_owned();
    let has_key = shown.has_private_key;
    // Checked inside the write transaction (which holds SQLite's write lock), so a hostname
    // configuration cannot start using the certificate between the check and the write.
    let mut tx = cp.store().begin().await?;
    if !has_key {
        let users = hostname_users(cp, id).await?;
        if !users.is_empty() {
            return Err(ValidationError::one(
                "data",
                format!(
                    "holds no private key, and the hostname configurations {} serve this certificate; add the key after the chain",
                    users.join(", ")
                ),
            )
            .into());
        }
        let backends = super::backends::certificate_users(cp, id).await?;
        if !backends.is_empty() {
            return Err(ValidationError::one(
                "data",
                format!(
                    "holds no private key, and {} present this certificate as a client certificate; add the key after the chain",
                    backends.join(", ")
                ),
            )
            .into());
        }
    }
    let seal = |s: &str| {
        cp.sealer()
            .seal(s)
            .map_err(|e| ServiceError::Internal(e.to_string()))
    };
    let stored = StoredCertificate {
        subject: shown.subject.clone(),
        thumbprint: shown.thumbprint.clone(),
        expiration_date: shown.expiration_date.clone(),
        has_private_key: has_key,
        sealed_chain: seal(&parts.chain)?,
        sealed_key: parts.key.as_deref().map(seal).transpose()?,
    };
    let created = tx.repo::<StoredCertificate>().put("", id, &stored).await?;
    commit(cp, tx).await?;
    Ok(Saved {
        created,
        value: shown,
    })
}

/// `gateway/hostnameConfiguration` of every hostname configuration that serves `id`.
async fn hostname_users(cp: &ControlPlane, id: &str) -> ServiceResult<Vec<String>> {
    let mut users = Vec::new();
    for hc in cp
        .store()
        .repo::<HostnameConfiguration>()
        .list_all()
        .await?
    {
        if hc.value.certificate_id == id {
            users.push(format!("{}/{}", hc.parent, hc.id));
        }
    }
    Ok(users)
}

/// Deletes certificate `id`, unless a hostname configuration, a gateway's certificate
/// authorities or a backend uses it.
pub async fn delete(cp: &ControlPlane, id: &str) -> ServiceResult<()> {
    check_id(Kind::Certificate, id)?;
    // As for PUT: the users are read while this transaction holds the write lock.
    let mut tx = cp.store().begin().await?;
    let mut users: Vec<String> = hostname_users(cp, id)
        .await?
        .into_iter()
        .map(|u| format!("hostname configuration {u}"))
        .collect();
    let authorities = cp.store().repo::<GatewayCertificateAuthority>();
    for gateway in authorities.parents_of(id).await? {
        users.push(format!("the certificate authorities of gateway {gateway}"));
    }
    users.extend(super::backends::certificate_users(cp, id).await?);
    if !users.is_empty() {
        return Err(ServiceError::Conflict(format!(
            "Certificate '{id}' is used by {}; remove it there first",
            users.join(", ")
        )));
    }
    if !tx.repo::<StoredCertificate>().delete("", id).await? {
        return Err(ServiceError::not_found("Certificate", id));
    }
    commit(cp, tx).await?;
    Ok(())
}
