//! The gateway link (`/gateway/v1`): what self-hosted gateways call, always outbound from their
//! side. Every call carries `Authorization: GatewayKey …`.
//!
//! - `GET /gateway/v1/config`: the snapshot for the calling gateway, with its revision as the
//!   `ETag`. With `If-None-Match` naming the current revision the call is held open until the
//!   configuration changes or `wait` seconds (at most 30) pass, then answers 304. When the
//!   control plane shuts down, held calls answer 304 at once, with `Connection: close`, so
//!   gateways retry (and find the next control plane, or keep serving from memory meanwhile).
//! - `POST /gateway/v1/heartbeat`: the instance's state, kept for the fleet status.
//! - `POST /gateway/v1/telemetry`: a [`Batch`] of per-minute aggregates and request samples,
//!   stored once per batch id; answers `{"accepted": N, "duplicate": bool}`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use gatehouse_model::telemetry::{Batch, MAX_BATCH_BYTES};
use serde::Deserialize;

use crate::error::ApiError;
use crate::http::{Query, parse_json};
use crate::service::gateway_tokens::{self, TokenRejection};
use crate::service::instances::{self, Heartbeat};
use crate::{Answer, ControlPlane};

/// The longest a config call is held open.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

pub fn router(cp: Arc<ControlPlane>) -> Router {
    Router::new()
        .route("/gateway/v1/config", get(config))
        .route("/gateway/v1/heartbeat", post(heartbeat))
        .route("/gateway/v1/telemetry", post(telemetry))
        .with_state(cp)
}

fn refuse(status: StatusCode, code: &str, message: String) -> Response {
    let body = serde_json::json!({"error": {"code": code, "message": message, "details": []}});
    (status, axum::Json(body)).into_response()
}

/// Authenticates the caller before anything else happens. A refusal writes nothing: it is
/// logged in detail, counted in memory against the gateway the token names (if it exists),
/// and answered with one message whatever the reason, so callers cannot probe gateway ids.
async fn authenticate(cp: &ControlPlane, headers: &HeaderMap) -> Result<String, Response> {
    let Some(text) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            "InvalidToken",
            "missing 'Authorization: GatewayKey …' header; pass the gateway's token with --token"
                .into(),
        ));
    };
    match gateway_tokens::verify(cp, text).await {
        Ok(Ok((gateway, _expiry))) => Ok(gateway),
        Ok(Err(rejection)) => {
            tracing::warn!(reason = %rejection, code = rejection.code(), "refused a gateway token");
            cp.count_refusal(&rejection);
            Err(refuse(
                StatusCode::UNAUTHORIZED,
                "InvalidToken",
                TokenRejection::PUBLIC_MESSAGE.to_owned(),
            ))
        }
        Err(e) => Err(ApiError::from(e).into_response()),
    }
}

#[derive(Debug, Deserialize)]
struct ConfigQuery {
    /// Seconds to hold the call open when nothing changed (0 to 30, default 30).
    wait: Option<u64>,
}

/// The media type of a [`gatehouse_model::snapshot::Delta`]: sent instead of the whole snapshot
/// to a gateway that accepts it and whose revision the control plane still remembers.
pub const DELTA_TYPE: &str = "application/vnd.gatehouse.delta+json";

fn wants_delta(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(DELTA_TYPE))
}

fn etag(revision: u64) -> String {
    format!("\"{revision}\"")
}

fn known_revision(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().trim_start_matches("W/").trim_matches('"'))
        .and_then(|v| v.parse().ok())
}

async fn config(
    State(cp): State<Arc<ControlPlane>>,
    Query(query): Query<ConfigQuery>,
    headers: HeaderMap,
) -> Response {
    let gateway = match authenticate(&cp, &headers).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    let known = known_revision(&headers);
    let wait = Duration::from_secs(query.wait.unwrap_or(30)).min(MAX_WAIT);
    let deadline = tokio::time::Instant::now() + wait;
    let mut changes = cp.subscribe();
    let mut closing = cp.closing.subscribe();
    let _held = Held::enter(&cp.held);
    let mut woken = false;
    loop {
        changes.borrow_and_update();
        // A change may be the regeneration of this gateway's key: a held call checks the
        // token again before it answers.
        if std::mem::replace(&mut woken, true)
            && let Err(refused) = authenticate(&cp, &headers).await
        {
            return refused;
        }
        let (content_type, revision, body) =
            match cp.answer(&gateway, known, wants_delta(&headers)).await {
                Ok(Answer::Unchanged) => (None, 0, Bytes::new()),
                Ok(Answer::Delta { revision, body }) => (Some(DELTA_TYPE), revision, body),
                Ok(Answer::Whole { revision, body }) => (Some("application/json"), revision, body),
                Err(e) => return ApiError::from(e).into_response(),
            };
        if let Some(content_type) = content_type {
            let mut response =
                (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], body).into_response();
            if let Ok(v) = HeaderValue::from_str(&etag(revision)) {
                response.headers_mut().insert(header::ETAG, v);
            }
            return response;
        }
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            _ = closing.wait_for(|c| *c) => break,
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    let mut response = StatusCode::NOT_MODIFIED.into_response();
    if let Some(Ok(v)) = known.map(|r| HeaderValue::from_str(&etag(r))) {
        response.headers_mut().insert(header::ETAG, v);
    }
    if *closing.borrow() {
        // The next call must open a new connection, which finds the listener closed.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// A config call counted as held for as long as it runs.
struct Held<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Held<'a> {
    fn enter(count: &'a std::sync::atomic::AtomicUsize) -> Self {
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

async fn heartbeat(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let gateway = match authenticate(&cp, &headers).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    let beat: Heartbeat = match parse_json(&body) {
        Ok(b) => b,
        Err(e) => return ApiError::from(e).into_response(),
    };
    match instances::heartbeat(&cp, &gateway, beat).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Stores a telemetry batch. The token is checked before the body is read, and the body is
/// read up to [`MAX_BATCH_BYTES`].
async fn telemetry(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let gateway = match authenticate(&cp, &headers).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    let bytes = match axum::body::to_bytes(body, MAX_BATCH_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PayloadTooLarge",
                format!(
                    "the telemetry batch is larger than {} MiB, or its upload broke off; send smaller batches",
                    MAX_BATCH_BYTES / (1024 * 1024)
                ),
            );
        }
    };
    let batch: Batch = match parse_json(&bytes) {
        Ok(b) => b,
        Err(e) => return ApiError::from(e).into_response(),
    };
    match cp.ingest_telemetry(&gateway, &batch).await {
        Ok(outcome) => (StatusCode::OK, axum::Json(outcome)).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    async fn call(cp: &Arc<ControlPlane>, request: Request<Body>) -> Response {
        cp.router().oneshot(request).await.unwrap()
    }

    fn config_call(token: &str, known: Option<&str>) -> Request<Body> {
        let mut request = Request::get("/gateway/v1/config?wait=30").header("authorization", token);
        if let Some(etag) = known {
            request = request.header("if-none-match", etag);
        }
        request.body(Body::empty()).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closing_answers_held_long_polls_at_once_and_later_ones_without_waiting() {
        let t = crate::testkit::open("link-closing").await;
        let (cp, dir) = (t.cp, t.dir);
        let admin = format!("Bearer {}", t.token);
        let put = Request::put("/mgmt/gateways/edge")
            .header("authorization", &admin)
            .header("content-type", "application/json")
            .body(Body::from("{}"))
            .unwrap();
        assert!(call(&cp, put).await.status().is_success());
        let generate = Request::post("/mgmt/gateways/edge/generateToken")
            .header("authorization", &admin)
            .header("content-type", "application/json")
            .body(Body::from(r#"{"keyType":"primary"}"#))
            .unwrap();
        let body = call(&cp, generate)
            .await
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes();
        let token: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let token = token["value"].as_str().unwrap().to_owned();
        let first = call(&cp, config_call(&token, None)).await;
        assert_eq!(first.status(), StatusCode::OK);
        let etag = first.headers()[header::ETAG].to_str().unwrap().to_owned();

        let held = {
            let cp = cp.clone();
            let request = config_call(&token, Some(&etag));
            tokio::spawn(async move { call(&cp, request).await })
        };
        let start = Instant::now();
        while cp.held.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            assert!(start.elapsed() < Duration::from_secs(10), "never held");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(cp.close_long_polls(), 1);
        let closed = Instant::now();
        let answer = tokio::time::timeout(Duration::from_secs(5), held)
            .await
            .expect("the held call was not answered")
            .unwrap();
        assert!(closed.elapsed() < Duration::from_secs(1));
        assert_eq!(answer.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(answer.headers()[header::CONNECTION], "close");
        assert_eq!(answer.headers()[header::ETAG], etag.as_str());

        // A call that arrives while the process stops is not held either.
        let later = tokio::time::timeout(
            Duration::from_secs(1),
            call(&cp, config_call(&token, Some(&etag))),
        )
        .await
        .expect("a call after closing was held");
        assert_eq!(later.status(), StatusCode::NOT_MODIFIED);
        std::fs::remove_dir_all(&dir).ok();
    }
}
