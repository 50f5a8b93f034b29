//! The developer portal's branding (title, logo, colours, footer and the landing page's
//! Markdown): one document, the defaults until it is first set.

use gatehouse_model::resources::PortalSettings;

use super::{ServiceResult, commit};
use crate::ControlPlane;

/// The settings as stored, or the defaults.
pub async fn get(cp: &ControlPlane) -> ServiceResult<PortalSettings> {
    let stored = cp
        .store()
        .repo::<PortalSettings>()
        .get("", PortalSettings::ID)
        .await?;
    Ok(stored.unwrap_or_default())
}

/// Validates and stores new settings; returns them as stored.
pub async fn put(cp: &ControlPlane, mut settings: PortalSettings) -> ServiceResult<PortalSettings> {
    settings.validate()?;
    let mut tx = cp.store().begin().await?;
    tx.repo::<PortalSettings>()
        .put("", PortalSettings::ID, &settings)
        .await?;
    commit(cp, tx).await?;
    Ok(settings)
}
