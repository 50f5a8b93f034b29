//! The fixed answers a client gets when a request fails and nothing else answered it: Azure API
//! Management's status codes and bodies, in one table. The bodies never carry detail; the
//! detail goes to the log with the request id. The gateway turns every failure into one of
//! these in one place (its `DataPlaneError::into_response`); the pipeline only says which.

use http::StatusCode;

/// Which fixed answer a failure gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Answer {
    /// No API or operation matches.
    NotFound,
    /// The request path climbs above its root or hides a dot segment.
    BadPath,
    /// A body a policy had to convert is nested too deeply or too large.
    BadBody,
    /// A body over the gateway's or a policy's limit.
    TooLarge,
    /// `validate-content` refused the request body (its own answer, which says why, normally
    /// goes first).
    InvalidContent,
    /// `validate-parameters` refused the request's parameters (its own answer, which says
    /// why, normally goes first).
    InvalidParameters,
    /// A validation policy refused the backend's response (`validate-content`,
    /// `validate-headers`, `validate-status-code`): Azure's public answer, which says nothing
    /// of the backend.
    InvalidResponse,
    MissingKey,
    InvalidKey,
    /// `validate-jwt` refused the token (its own answer normally goes first).
    InvalidJwt,
    /// `validate-client-certificate` refused the certificate (likewise).
    InvalidClientCertificate,
    /// No configuration loaded yet.
    NotReady,
    /// Anything the client cannot act on: a policy expression failed, a backend URL is wrong.
    Internal,
    /// The backend could not be reached, or its certificate was refused.
    BadGateway,
    /// The backend answered with an error status and `fail-on-error-status-code` asked for
    /// that to fail the request.
    BackendError,
    /// The backend did not answer in time.
    GatewayTimeout,
    /// A shared counter could not be reached and the gateway fails closed
    /// (`--redis-failure closed`).
    Unavailable,
}

impl Answer {
    /// Every answer, in the order declared.
    pub const ALL: [Answer; 17] = [
        Self::NotFound,
        Self::BadPath,
        Self::BadBody,
        Self::TooLarge,
        Self::InvalidContent,
        Self::InvalidParameters,
        Self::InvalidResponse,
        Self::MissingKey,
        Self::InvalidKey,
        Self::InvalidJwt,
        Self::InvalidClientCertificate,
        Self::NotReady,
        Self::Internal,
        Self::BadGateway,
        Self::BackendError,
        Self::GatewayTimeout,
        Self::Unavailable,
    ];

    /// The status and the body, `application/json; charset=utf-8`.
    pub fn parts(self) -> (StatusCode, &'static str) {
        match self {
            Self::NotFound => (
                StatusCode::NOT_FOUND,
                r#"{"statusCode":404,"message":"Resource not found"}"#,
            ),
            Self::BadPath => (
                StatusCode::BAD_REQUEST,
                r#"{"statusCode":400,"message":"The request path is not valid."}"#,
            ),
            Self::BadBody => (
                StatusCode::BAD_REQUEST,
                r#"{"statusCode":400,"message":"Bad request. The message body is nested too deeply or is too large to convert."}"#,
            ),
            Self::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                r#"{"statusCode":413,"message":"Request entity too large"}"#,
            ),
            Self::InvalidContent => (
                StatusCode::BAD_REQUEST,
                r#"{"statusCode":400,"message":"The request body does not conform to its definition."}"#,
            ),
            Self::InvalidParameters => (
                StatusCode::BAD_REQUEST,
                r#"{"statusCode":400,"message":"The request parameters do not conform to their definition."}"#,
            ),
            Self::InvalidResponse => (
                StatusCode::BAD_GATEWAY,
                r#"{"statusCode":502,"message":"The request could not be processed due to an internal error. Contact the API owner."}"#,
            ),
            Self::MissingKey => (
                StatusCode::UNAUTHORIZED,
                r#"{"statusCode":401,"message":"Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API."}"#,
            ),
            Self::InvalidKey => (
                StatusCode::UNAUTHORIZED,
                r#"{"statusCode":401,"message":"Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription."}"#,
            ),
            Self::InvalidJwt => (
                StatusCode::UNAUTHORIZED,
                r#"{"statusCode":401,"message":"Invalid JWT."}"#,
            ),
            Self::InvalidClientCertificate => (
                StatusCode::UNAUTHORIZED,
                r#"{"statusCode":401,"message":"Invalid client certificate."}"#,
            ),
            Self::NotReady => (
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"statusCode":503,"message":"Service unavailable. The gateway has not loaded its configuration yet."}"#,
            ),
            Self::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                r#"{"statusCode":500,"message":"Internal server error"}"#,
            ),
            Self::BadGateway => (
                StatusCode::BAD_GATEWAY,
                r#"{"statusCode":502,"message":"Bad gateway. The backend service could not be reached."}"#,
            ),
            Self::BackendError => (
                StatusCode::BAD_GATEWAY,
                r#"{"statusCode":502,"message":"Bad gateway. The backend service answered with an error."}"#,
            ),
            Self::GatewayTimeout => (
                StatusCode::GATEWAY_TIMEOUT,
                r#"{"statusCode":504,"message":"Gateway timeout. The backend service did not respond in time."}"#,
            ),
            Self::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"statusCode":503,"message":"Service unavailable. Please try again later."}"#,
            ),
        }
    }

    pub fn status(self) -> StatusCode {
        self.parts().0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_body_is_json_with_its_own_status() {
        for a in Answer::ALL {
            let (status, body) = a.parts();
            let json: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(json["statusCode"], status.as_u16(), "{a:?}");
            assert!(json["message"].is_string(), "{a:?}");
        }
    }
}
