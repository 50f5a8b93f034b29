//! The admin listener of a gateway (127.0.0.1:8082 by default): `/healthz` (the process is
//! alive), `/readyz` (a configuration is loaded; JSON with the details) and `/metrics`
//! (Prometheus).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::net::TcpListener;

use crate::status::{State, Status};

/// Binds the admin address and serves it on the current runtime until the task is dropped,
/// with the same connection limits as the gateway's listener.
pub async fn start(
    addr: SocketAddr,
    status: Arc<Status>,
    metrics: crate::metrics::Sources,
    limits: crate::listener::ListenerLimits,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let metrics = Arc::new(metrics);
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let service = move |_: SocketAddr| {
        let status = status.clone();
        let metrics = metrics.clone();
        hyper::service::service_fn(move |req| answer(status.clone(), metrics.clone(), req))
    };
    let task = tokio::spawn(crate::listener::serve(
        listener,
        None,
        limits,
        service,
        std::future::pending(),
        std::time::Duration::ZERO,
    ));
    Ok((local, task))
}

async fn answer(
    status: Arc<Status>,
    metrics: Arc<crate::metrics::Sources>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == "/metrics" {
        let openmetrics = req
            .headers()
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains("application/openmetrics-text"));
        let text = crate::metrics::render(&metrics, openmetrics);
        let mut response = Response::new(Full::new(Bytes::from(text)));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static(if openmetrics {
                crate::metrics::OPENMETRICS
            } else {
                crate::metrics::TEXT
            }),
        );
        return Ok(response);
    }
    let (code, body) = match req.uri().path() {
        "/healthz" => (
            StatusCode::OK,
            Bytes::from_static(b"{\"status\":\"alive\"}"),
        ),
        "/readyz" => {
            let readiness = status.readiness();
            let code = if readiness.state == State::Starting {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            };
            (
                code,
                Bytes::from(serde_json::to_vec(&readiness).unwrap_or_default()),
            )
        }
        _ => {
            let (status, body) = gatehouse_policy::Answer::NotFound.parts();
            (status, Bytes::from_static(body.as_bytes()))
        }
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}
