//! `/mgmt/portal/settings`: the developer portal's branding (title, logo, colours, footer and
//! the landing page's Markdown). One document; `GET` answers the defaults until a `PUT`.

use axum::Json;
use gatehouse_model::resources::PortalSettings;

use super::{Cp, commit};
use crate::error::{ApiResult, ErrorBody};
use crate::http::JsonBody;

#[utoipa::path(get, path = "/mgmt/portal/settings", tag = "portal",
    responses((status = 200, body = PortalSettings), (status = 401, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn get(cp: Cp) -> ApiResult<Json<PortalSettings>> {
    let stored = cp
        .store()
        .repo::<PortalSettings>()
        .get("", PortalSettings::ID)
        .await?;
    Ok(Json(stored.unwrap_or_default()))
}

#[utoipa::path(put, path = "/mgmt/portal/settings", tag = "portal",
    request_body = PortalSettings,
    responses((status = 200, body = PortalSettings), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn put(
    cp: Cp,
    JsonBody(mut settings): JsonBody<PortalSettings>,
) -> ApiResult<Json<PortalSettings>> {
    settings.validate()?;
    let mut tx = cp.store().begin().await?;
    tx.repo::<PortalSettings>()
        .put("", PortalSettings::ID, &settings)
        .await?;
    commit(&cp, tx).await?;
    Ok(Json(settings))
}
