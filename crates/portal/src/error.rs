//! Portal errors and the one place they become pages: a short message for the visitor, the
//! detail in the log.

use std::time::Duration;

use axum::http::StatusCode;

use crate::backend::BackendError;

#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    #[error("not found")]
    NotFound,
    /// A form without a valid CSRF token.
    #[error("the form's security token is missing or stale")]
    Csrf,
    /// Needs a signed-in user.
    #[error("sign-in required")]
    SignInRequired,
    #[error("too many attempts")]
    TooManyAttempts(Duration),
    /// An expensive action (sign-up, password change, key regeneration) ran too often from
    /// the visitor's address, or from everyone together.
    #[error("throttled")]
    Throttled(Duration),
    /// Too many passwords are being hashed at once; the visitor should retry shortly.
    #[error("busy hashing passwords")]
    Busy,
    /// Input the visitor can fix; the message says how.
    #[error("{0}")]
    BadRequest(String),
    #[error("store: {0}")]
    Store(#[from] gatehouse_store::StoreError),
    #[error("template: {0}")]
    Template(#[from] minijinja::Error),
    #[error("{0}")]
    Backend(#[from] BackendError),
    #[error("internal: {0}")]
    Internal(String),
}

pub type PortalResult<T> = Result<T, PortalError>;

/// The `Retry-After` of a [`PortalError::Busy`] answer.
const BUSY_RETRY_SECONDS: u64 = 5;

impl PortalError {
    /// The status and the sentence shown to the visitor.
    pub fn public(&self) -> (StatusCode, String) {
        match self {
            PortalError::NotFound | PortalError::Backend(BackendError::NotFound(_)) => (
                StatusCode::NOT_FOUND,
                "This page does not exist, or you may not see it.".to_owned(),
            ),
            PortalError::Csrf => (
                StatusCode::FORBIDDEN,
                "This form has expired or did not come from this portal. Go back, reload the page and try again.".to_owned(),
            ),
            PortalError::SignInRequired => (
                StatusCode::UNAUTHORIZED,
                "Please sign in to continue.".to_owned(),
            ),
            PortalError::TooManyAttempts(wait) => (
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "Too many failed sign-in attempts. Try again in {} minutes.",
                    wait.as_secs().div_ceil(60).max(1)
                ),
            ),
            PortalError::Throttled(wait) => (
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "Too many requests of this kind. Try again in {} minutes.",
                    wait.as_secs().div_ceil(60).max(1)
                ),
            ),
            PortalError::Busy => (
                StatusCode::SERVICE_UNAVAILABLE,
                "The portal is busy. Try again in a few seconds.".to_owned(),
            ),
            PortalError::BadRequest(m)
            | PortalError::Backend(BackendError::Invalid(m) | BackendError::Conflict(m)) => {
                (StatusCode::BAD_REQUEST, m.clone())
            }
            PortalError::Store(_)
            | PortalError::Template(_)
            | PortalError::Backend(BackendError::Internal(_))
            | PortalError::Internal(_) => {
                tracing::error!(error = %self, "developer portal failure");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong on our side. Please try again later.".to_owned(),
                )
            }
        }
    }
}

/// What the error-page layer renders in place of an error response.
#[derive(Debug, Clone)]
pub struct ErrorPage {
    pub status: StatusCode,
    pub message: String,
}

impl axum::response::IntoResponse for PortalError {
    fn into_response(self) -> axum::response::Response {
        let (status, message) = self.public();
        let mut response = (status, message.clone()).into_response();
        let retry_after = match &self {
            PortalError::TooManyAttempts(wait) | PortalError::Throttled(wait) => {
                Some(wait.as_secs().max(1))
            }
            PortalError::Busy => Some(BUSY_RETRY_SECONDS),
            _ => None,
        };
        if let Some(seconds) = retry_after
            && let Ok(v) = axum::http::HeaderValue::from_str(&seconds.to_string())
        {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, v);
        }
        response
            .extensions_mut()
            .insert(ErrorPage { status, message });
        response
    }
}
