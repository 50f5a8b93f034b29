//! Management API errors and the one place they become responses: the HTTP edge of the
//! service layer's [`crate::service::ServiceError`].

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gatehouse_model::{Detail, ValidationError};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Validation(#[from] ValidationError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("missing or invalid admin token")]
    Unauthorized,
    #[error("store: {0}")]
    Store(#[from] gatehouse_store::StoreError),
    #[error("internal: {0}")]
    Internal(String),
}

impl From<crate::service::ServiceError> for ApiError {
    fn from(e: crate::service::ServiceError) -> Self {
        use crate::service::ServiceError as S;
        match e {
            S::Invalid(v) => Self::Validation(v),
            S::NotFound(m) => Self::NotFound(m),
            S::Conflict(m) => Self::Conflict(m),
            S::Store(e) => Self::Store(e),
            S::Internal(m) => Self::Internal(m),
        }
    }
}

/// The error body: `{"error": {code, message, details}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorContent,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorContent {
    /// `ValidationError`, `ResourceNotFound`, `Conflict`, `Unauthorized` or `InternalError`.
    pub code: &'static str,
    pub message: String,
    pub details: Vec<Detail>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message, details) = match self {
            ApiError::Validation(v) => (
                StatusCode::BAD_REQUEST,
                "ValidationError",
                v.message,
                v.details,
            ),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "ResourceNotFound", m, vec![]),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, "Conflict", m, vec![]),
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "Missing or invalid admin token. Send 'Authorization: Bearer <token>'; the token is in <data>/admin-token.".to_owned(),
                vec![],
            ),
            ApiError::Store(e) => {
                tracing::error!(error = %e, "store failure");
                internal()
            }
            ApiError::Internal(e) => {
                tracing::error!(error = %e, "internal failure");
                internal()
            }
        };
        let mut response = (
            status,
            Json(ErrorBody {
                error: ErrorContent {
                    code,
                    message,
                    details,
                },
            }),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

fn internal() -> (StatusCode, &'static str, String, Vec<Detail>) {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalError",
        "An internal error occurred; the control plane's log has the detail.".to_owned(),
        vec![],
    )
}

pub type ApiResult<T> = Result<T, ApiError>;
