//! Gateway credentials and fleet status: `generateToken`, `regenerateKey`, `listKeys` and
//! `status` under `/mgmt/gateways/{id}`. What a token is and how keys are kept is in
//! `crate::service::gateway_tokens`.

use axum::Json;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Cp;
use crate::error::{ApiResult, ErrorBody};
use crate::http::{JsonBody, Path};
use crate::service::gateway_tokens::{self as service, KeyType};
use crate::service::instances::{self, GatewayStatus};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GenerateTokenRequest {
    /// When the token expires (RFC 3339, at most 30 days away). Default: 30 days from now.
    #[serde(default)]
    pub expiry: Option<String>,
    #[serde(default)]
    pub key_type: KeyType,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GatewayTokenValue {
    /// `GatewayKey <id>&<yyyyMMddHHmm>&<signature>`: pass it to `gatehouse gateway --token`.
    pub value: String,
}

#[utoipa::path(post, path = "/mgmt/gateways/{gatewayId}/generateToken", tag = "gateways",
    params(("gatewayId" = String, Path)), request_body = GenerateTokenRequest,
    responses((status = 200, body = GatewayTokenValue), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn generate_token(
    cp: Cp,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<GenerateTokenRequest>,
) -> ApiResult<Json<GatewayTokenValue>> {
    let value = service::generate_token(&cp, &id, body.expiry.as_deref(), body.key_type).await?;
    Ok(Json(GatewayTokenValue { value }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegenerateKeyRequest {
    #[serde(default)]
    pub key_type: KeyType,
}

#[utoipa::path(post, path = "/mgmt/gateways/{gatewayId}/regenerateKey", tag = "gateways",
    params(("gatewayId" = String, Path)), request_body = RegenerateKeyRequest,
    responses((status = 204, description = "Regenerated; tokens signed with the old key stop working"),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn regenerate_key(
    cp: Cp,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<RegenerateKeyRequest>,
) -> ApiResult<StatusCode> {
    service::regenerate_key(&cp, &id, body.key_type).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GatewayKeys {
    pub primary: String,
    pub secondary: String,
}

#[utoipa::path(post, path = "/mgmt/gateways/{gatewayId}/listKeys", tag = "gateways",
    params(("gatewayId" = String, Path)),
    responses((status = 200, body = GatewayKeys), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn list_keys(cp: Cp, Path(id): Path<String>) -> ApiResult<Json<GatewayKeys>> {
    let (primary, secondary) = service::list_keys(&cp, &id).await?;
    Ok(Json(GatewayKeys { primary, secondary }))
}

#[utoipa::path(get, path = "/mgmt/gateways/{gatewayId}/status", tag = "gateways",
    params(("gatewayId" = String, Path)),
    responses((status = 200, body = GatewayStatus), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn status(cp: Cp, Path(id): Path<String>) -> ApiResult<Json<GatewayStatus>> {
    Ok(Json(instances::status(&cp, &id).await?))
}
