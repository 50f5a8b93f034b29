//! `/mgmt/portal/settings`: the developer portal's branding (title, logo, colours, footer and
//! the landing page's Markdown). One document; `GET` answers the defaults until a `PUT`.

use axum::Json;
use gatehouse_model::resources::PortalSettings;

use super::{Cp, commit, encode};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::JsonBody;

#[utoipa::path(get, path = "/mgmt/portal/settings", tag = "portal",
    responses((status = 200, body = PortalSettings), (status = 401, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn get(cp: Cp) -> ApiResult<Json<PortalSettings>> {
    match cp
        .store()
        .get(PortalSettings::KIND, "", PortalSettings::ID)
        .await?
    {
        Some(body) => serde_json::from_str(&body)
            .map(Json)
            .map_err(|e| ApiError::Internal(format!("stored portal settings are unreadable: {e}"))),
        None => Ok(Json(PortalSettings::default())),
    }
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
    tx.put(
        PortalSettings::KIND,
        "",
        PortalSettings::ID,
        &encode(&settings)?,
    )
    .await?;
    commit(&cp, tx).await?;
    Ok(Json(settings))
}
