//! Data-plane failures and the one place they become HTTP responses.
//!
//! Each failure says who caused it (the client, the configuration, a policy or the backend).
//! The body a client sees is a fixed answer — Azure API Management's, from
//! [`gatehouse_policy::Answer`] — and never carries internal detail; the detail goes to the
//! log with the request id.

use bytes::Bytes;
use gatehouse_policy::{Answer, PolicyError};
use http::{HeaderMap, HeaderValue, Response, header};
use http_body_util::{Either, Full};

use crate::proxy::ResponseBody;

#[derive(Debug, thiserror::Error)]
pub enum DataPlaneError {
    #[error("no API or operation matches the request")]
    NotFound,
    #[error("the request path climbs above its root or hides a dot segment")]
    BadPath,
    #[error("the request body is larger than {0} bytes, the most this gateway forwards")]
    BodyTooLarge(u64),
    #[error("the body is larger than {0} bytes, the most a policy can read")]
    BufferTooLarge(usize),
    #[error("the request has no subscription key")]
    MissingKey,
    #[error("the subscription key is not valid for this API")]
    InvalidKey,
    #[error("the gateway has not loaded a configuration yet")]
    NotReady,
    /// The API's part of the configuration could not be compiled; the others are served. Only
    /// the API and the part are said per request (anyone can call it, before any key check);
    /// the whole problem was logged once, when the configuration was compiled.
    #[error("API '{}' is unavailable: its {} could not be compiled", .0.api, .0.target)]
    ApiUnavailable(std::sync::Arc<crate::config::ApiProblem>),
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
    /// Redis, which keeps the gateway's counters, did not answer, and `--redis-failure closed`
    /// refuses what it cannot count.
    #[error("the shared counters in Redis did not answer (--redis-failure closed)")]
    CountersUnavailable,
    /// A policy failed and neither `on-error` nor the policy itself answered.
    #[error("{}: {} ({})", .0.error.source, .0.error.message, .0.error.reason)]
    Policy(Box<PolicyFailure>),
}

/// A policy's failure, with the headers policies left for the final answer (cors's
/// `Access-Control-Allow-Origin`, a rate limit's remaining calls).
#[derive(Debug)]
pub struct PolicyFailure {
    pub error: PolicyError,
    pub headers: HeaderMap,
}

impl DataPlaneError {
    pub fn policy(error: PolicyError, headers: HeaderMap) -> Self {
        Self::Policy(Box::new(PolicyFailure { error, headers }))
    }

    /// Who failed and why, in the terms of Azure's `context.LastError`, for logs and metrics.
    pub fn info(&self) -> crate::telemetry::ErrorInfo {
        let (source, reason) = match self {
            Self::NotFound => ("configuration", "OperationNotFound"),
            Self::BadPath => ("gateway", "InvalidRequestPath"),
            Self::BodyTooLarge(_) => ("gateway", "RequestEntityTooLarge"),
            Self::BufferTooLarge(_) => ("gateway", "BodyTooLarge"),
            Self::MissingKey => ("authorization", "SubscriptionKeyNotFound"),
            Self::InvalidKey => ("authorization", "SubscriptionKeyInvalid"),
            Self::NotReady => ("gateway", "ConfigurationNotLoaded"),
            Self::ApiUnavailable(_) => ("configuration", "ApiNotCompiled"),
            Self::NoBackend(_) | Self::BadUpstreamUri(_) => ("configuration", "BackendUrlInvalid"),
            Self::BackendUnreachable(_) | Self::UnaskedSwitch => {
                ("forward-request", "BackendConnectionFailure")
            }
            Self::BackendTimeout(_) => ("forward-request", "Timeout"),
            Self::CountersUnavailable => ("gateway", "CountersUnavailable"),
            Self::Policy(p) => {
                return crate::telemetry::ErrorInfo {
                    source: p.error.source.clone().into(),
                    reason: p.error.reason.clone().into(),
                };
            }
        };
        crate::telemetry::ErrorInfo {
            source: source.into(),
            reason: reason.into(),
        }
    }

    /// The fixed answer the client gets.
    pub fn answer(&self) -> Answer {
        match self {
            Self::NotFound => Answer::NotFound,
            Self::BadPath => Answer::BadPath,
            Self::BodyTooLarge(_) | Self::BufferTooLarge(_) => Answer::TooLarge,
            Self::MissingKey => Answer::MissingKey,
            Self::InvalidKey => Answer::InvalidKey,
            Self::NotReady => Answer::NotReady,
            Self::NoBackend(_) | Self::BadUpstreamUri(_) | Self::ApiUnavailable(_) => {
                Answer::Internal
            }
            Self::BackendUnreachable(_) | Self::UnaskedSwitch => Answer::BadGateway,
            Self::BackendTimeout(_) => Answer::GatewayTimeout,
            Self::CountersUnavailable => Answer::Unavailable,
            Self::Policy(p) => p.error.answer,
        }
    }

    /// The response the client gets: the one place a failure becomes one. Server-side failures
    /// are logged here, with the request id.
    pub fn into_response(self, request_id: &HeaderValue) -> Response<ResponseBody> {
        let (status, body) = self.answer().parts();
        // A policy's failure was logged where it happened, with its API, operation and section;
        // an unavailable API when its configuration was compiled (its calls are in the access
        // log with their reason: a warning each would let anyone flood the log).
        if status.is_server_error() && !matches!(self, Self::Policy(_) | Self::ApiUnavailable(_)) {
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
        if let Self::Policy(p) = self {
            gatehouse_policy::exchange::add_response_headers(headers, p.headers);
        }
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        headers.insert(crate::proxy::X_REQUEST_ID, request_id.clone());
        response
    }
}

/// A gateway failure inside a policy (the backend call of `forward-request`, a body a policy
/// reads): it runs `on-error`, and keeps its reason and answer if nothing else answers.
impl From<DataPlaneError> for PolicyError {
    fn from(e: DataPlaneError) -> Self {
        if let DataPlaneError::Policy(p) = e {
            return p.error;
        }
        let info = e.info();
        PolicyError::new(
            info.source.to_string(),
            info.reason.to_string(),
            e.to_string(),
            e.answer(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn body_of(response: Response<ResponseBody>) -> String {
        let collected = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(response.into_body().collect())
            .ok()
            .unwrap();
        String::from_utf8(collected.to_bytes().to_vec()).unwrap()
    }

    #[test]
    fn a_policy_failure_gets_its_fixed_answer_with_the_policies_headers_and_no_detail() {
        let error = PolicyError::runtime("ExpressionValueEvaluationFailure", "secret detail");
        let mut extra = HeaderMap::new();
        extra.insert("access-control-allow-origin", HeaderValue::from_static("*"));
        extra.append(header::VARY, HeaderValue::from_static("Origin"));
        let response =
            DataPlaneError::policy(error, extra).into_response(&HeaderValue::from_static("id-1"));
        assert_eq!(response.status(), 500);
        assert_eq!(response.headers()["access-control-allow-origin"], "*");
        assert_eq!(response.headers()[header::VARY], "Origin");
        assert_eq!(response.headers()["x-request-id"], "id-1");
        assert_eq!(
            body_of(response),
            r#"{"statusCode":500,"message":"Internal server error"}"#
        );
    }

    #[test]
    fn a_gateway_failure_inside_a_policy_keeps_its_reason_and_answer() {
        let e: PolicyError =
            DataPlaneError::BackendTimeout(std::time::Duration::from_secs(3)).into();
        assert_eq!(
            (e.source.as_str(), e.reason.as_str()),
            ("forward-request", "Timeout")
        );
        assert_eq!(e.answer, Answer::GatewayTimeout);
        let e: PolicyError = DataPlaneError::BodyTooLarge(10).into();
        assert_eq!(e.answer.status(), 413);
    }

    #[test]
    fn an_unavailable_api_gets_azures_500_and_the_problem_stays_in_the_log() {
        let problem = crate::config::ApiProblem {
            api: "orders".into(),
            target: "apis.orders.serviceUrl".into(),
            message: "internal detail".into(),
        };
        let response = DataPlaneError::ApiUnavailable(problem.into())
            .into_response(&HeaderValue::from_static("id-2"));
        assert_eq!(response.status(), 500);
        assert_eq!(
            body_of(response),
            r#"{"statusCode":500,"message":"Internal server error"}"#
        );
    }
}
