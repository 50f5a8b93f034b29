//! `/mgmt/portal/settings`: the developer portal's branding (title, logo, colours, footer and
//! the landing page's Markdown). One document; `GET` answers the defaults until a `PUT`.

use axum::Json;
use gatehouse_model::resources::PortalSettings;

use super::Cp;
use crate::error::{ApiResult, ErrorBody};
use crate::http::JsonBody;
use crate::service::portal_settings as service;

#[utoipa::path(get, path = "/mgmt/portal/settings", tag = "portal",
    responses((status = 200, body = PortalSettings), (status = 401, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn get(cp: Cp) -> ApiResult<Json<PortalSettings>> {
    Ok(Json(service::get(&cp).await?))
}

#[utoipa::path(put, path = "/mgmt/portal/settings", tag = "portal",
    request_body = PortalSettings,
    responses((status = 200, body = PortalSettings), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn put(
    cp: Cp,
    JsonBody(settings): JsonBody<PortalSettings>,
) -> ApiResult<Json<PortalSettings>> {
    Ok(Json(service::put(&cp, settings).await?))
}
