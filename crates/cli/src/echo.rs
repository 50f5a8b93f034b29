//! A small echo backend for `gatehouse up --demo`: it answers every request with a JSON
//! description of what it received, so the first call through the gateway shows the rewriting.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// Binds `addr` (or any free port if it is taken) and serves until the process ends.
pub async fn start(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(_) => TcpListener::bind(SocketAddr::new(addr.ip(), 0)).await?,
    };
    serve(listener)
}

/// `gatehouse echo-backend`: serves at `addr` until Ctrl-C or SIGTERM.
pub async fn run(addr: SocketAddr) -> Result<(), crate::Failure> {
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        crate::Failure::runtime(format!(
            "cannot listen on {addr}: {e}; choose another address with --listen"
        ))
    })?;
    let local = serve(listener)
        .map_err(|e| crate::Failure::runtime(format!("cannot serve on {addr}: {e}")))?;
    println!("echo backend on http://{local}/ (Ctrl-C stops it)");
    crate::serve::shutdown_signal().await;
    Ok(())
}

/// Answers on `listener` in the background, until the process ends.
fn serve(listener: TcpListener) -> std::io::Result<SocketAddr> {
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(answer);
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(local)
}

async fn answer(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut headers = BTreeMap::new();
    for (name, value) in &parts.headers {
        headers.insert(
            name.as_str().to_owned(),
            String::from_utf8_lossy(value.as_bytes()).into_owned(),
        );
    }
    let echo = serde_json::json!({
        "message": "Hello from the Gatehouse demo echo backend",
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    });
    let text = serde_json::to_vec_pretty(&echo).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(text)));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}
