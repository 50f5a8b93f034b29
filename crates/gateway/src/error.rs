//! Data-plane failures and the one place they become HTTP responses.
//!
//! Each failure says who caused it (the client, the configuration or the backend). The body a
//! client sees is fixed text — Azure API Management's where it has one — and never carries
//! internal detail; the detail goes to the log with the request id.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{Either, Full};

use crate::proxy::ResponseBody;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("no API or operation matches the request")]
    NotFound,
    #[error("the request path climbs above its root or hides a dot segment")]
    BadPath,
    #[error("the request body is larger than {0} bytes, the most this gateway forwards")]
    BodyTooLarge(u64),
    #[error("the request has no subscription key")]
    MissingKey,
    #[error("the subscription key is not valid for this API")]
    InvalidKey,
    #[error("the gateway has not loaded a configuration yet")]
    NotReady,
    #[error("API '{0}' has no backend service URL")]
    NoBackend(std::sync::Arc<str>),
    #[error("the backend URL could not be built: {0}")]
    BadUpstreamUri(http::Error),
    #[error("the backend could not be reached: {0}")]
    BackendUnreachable(#[source] crate::upstream::UpstreamError),
    #[error("the backend did not answer within {0:?}")]
    BackendTimeout(std::time::Duration),
    #[error("the backend switched protocols (101) for a request that asked for no switch")]
    UnaskedSwitch,
}

impl GatewayError {
    /// Who failed and why, in the terms of Azure's `context.LastError`, for logs and metrics.
    pub fn info(&self) -> crate::telemetry::ErrorInfo {
        let (source, reason) = match self {
            Self::NotFound => ("configuration", "OperationNotFound"),
            Self::BadPath => ("gateway", "InvalidRequestPath"),
            Self::BodyTooLarge(_) => ("gateway", "RequestEntityTooLarge"),
            Self::MissingKey => ("authorization", "SubscriptionKeyNotFound"),
            Self::InvalidKey => ("authorization", "SubscriptionKeyInvalid"),
            Self::NotReady => ("gateway", "ConfigurationNotLoaded"),
            Self::NoBackend(_) | Self::BadUpstreamUri(_) => ("configuration", "BackendUrlInvalid"),
            Self::BackendUnreachable(_) | Self::UnaskedSwitch => {
                ("forward-request", "BackendConnectionFailure")
            }
            Self::BackendTimeout(_) => ("forward-request", "Timeout"),
        };
        crate::telemetry::ErrorInfo {
            source: source.into(),
            reason: reason.into(),
        }
    }

    fn status_and_body(&self) -> (StatusCode, &'static str) {
        match self {
            Self::NotFound => (
                StatusCode::NOT_FOUND,
                r#"{"statusCode":404,"message":"Resource not found"}"#,
            ),
            Self::BadPath => (
                StatusCode::BAD_REQUEST,
                r#"{"statusCode":400,"message":"The request path is not valid."}"#,
            ),
            Self::BodyTooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                r#"{"statusCode":413,"message":"Request entity too large"}"#,
            ),
            Self::MissingKey => (
                StatusCode::UNAUTHORIZED,
                r#"{"statusCode":401,"message":"Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API."}"#,
            ),
            Self::InvalidKey => (
                StatusCode::UNAUTHORIZED,
                r#"{"statusCode":401,"message":"Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription."}"#,
            ),
            Self::NotReady => (
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"statusCode":503,"message":"Service unavailable. The gateway has not loaded its configuration yet."}"#,
            ),
            Self::NoBackend(_) | Self::BadUpstreamUri(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                r#"{"statusCode":500,"message":"Internal server error"}"#,
            ),
            Self::BackendUnreachable(_) | Self::UnaskedSwitch => (
                StatusCode::BAD_GATEWAY,
                r#"{"statusCode":502,"message":"Bad gateway. The backend service could not be reached."}"#,
            ),
            Self::BackendTimeout(_) => (
                StatusCode::GATEWAY_TIMEOUT,
                r#"{"statusCode":504,"message":"Gateway timeout. The backend service did not respond in time."}"#,
            ),
        }
    }

    /// The response the client gets. Server-side failures are logged here, with the request id.
    pub fn into_response(self, request_id: &HeaderValue) -> Response<ResponseBody> {
        let (status, body) = self.status_and_body();
        if status.is_server_error() {
            tracing::warn!(
                request_id = request_id.to_str().unwrap_or_default(),
                status = status.as_u16(),
                error = %self,
                "request failed"
            );
        }
        let mut response =
            Response::new(Either::Left(Full::new(Bytes::from_static(body.as_bytes()))));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        headers.insert(crate::proxy::X_REQUEST_ID, request_id.clone());
        response
    }
}
