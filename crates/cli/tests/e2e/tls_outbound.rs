//! Issue #13, outbound TLS: https backends and `send-request` URLs trusted through
//! `--trusted-ca`, and a clear 502 (with the reason in the log) for a certificate the gateway
//! does not trust.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gatehouse_tls::server::ServerTls;
use gatehouse_tls::testca::TestCa;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::json;

use crate::support::{Gatehouse, set_policy};

/// An https backend on loopback that answers every request with `{"tls":true,"path":…}`.
async fn https_backend(tls: Arc<ServerTls>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let tls = tls.clone();
            tokio::spawn(async move {
                let Ok(accepted) = tls.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    let body = json!({"tls": true, "path": req.uri().path()}).to_string();
                    let mut r = Response::new(Full::new(Bytes::from(body)));
                    r.headers_mut()
                        .insert("content-type", "application/json".parse().unwrap());
                    Ok::<_, Infallible>(r)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(accepted.stream), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn https_backends_and_send_request_trust_the_configured_cas() {
    let ca = TestCa::new("e2e-outbound");
    let stranger = TestCa::new("e2e-stranger");
    let good = ca.leaf("backend", &["127.0.0.1", "localhost"]);
    let untrusted = stranger.leaf("backend", &["127.0.0.1", "localhost"]);
    let good_addr =
        https_backend(ServerTls::from_files(&good.cert, &good.key, false).unwrap()).await;
    let bad_addr =
        https_backend(ServerTls::from_files(&untrusted.cert, &untrusted.key, false).unwrap()).await;

    let gh = Gatehouse::up("tls-outbound", &["--trusted-ca", ca.cert.to_str().unwrap()]).await;
    gh.simple_api("secure", "secure", &format!("https://{good_addr}"), true)
        .await;
    gh.simple_api("stranger", "stranger", &format!("https://{bad_addr}"), true)
        .await;
    gh.simple_api(
        "lookup",
        "lookup",
        &format!("https://{good_addr}/base"),
        true,
    )
    .await;
    set_policy(
        &gh,
        "/mgmt/apis/lookup/policy",
        &format!(
            r#"<policies><inbound><base />
            <send-request mode="new" response-variable-name="side" timeout="10">
                <set-url>https://localhost:{}/side</set-url>
                <set-method>GET</set-method>
            </send-request>
            <return-response>
                <set-status code="200" />
                <set-body>@(((IResponse)context.Variables["side"]).Body.As&lt;string&gt;())</set-body>
            </return-response>
        </inbound></policies>"#,
            good_addr.port()
        ),
    )
    .await;

    // A trusted https backend answers through the gateway.
    let resp = gh
        .eventually(Duration::from_secs(10), || async {
            let r = gh
                .http
                .get(gh.gateway("/secure/items/1"))
                .send()
                .await
                .unwrap();
            r.status() == 200
        })
        .await;
    println!("https backend answered after {resp:?}");
    let body: serde_json::Value = gh
        .http
        .get(gh.gateway("/secure/items/1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body, json!({"tls": true, "path": "/items/1"}));

    // send-request to an https URL (by name: the certificate names localhost).
    gh.eventually(Duration::from_secs(10), || async {
        let r = gh.http.get(gh.gateway("/lookup/x")).send().await.unwrap();
        r.status() == 200 && r.text().await.unwrap().contains("\"/side\"")
    })
    .await;

    // An untrusted certificate: Azure's 502, nothing internal in the body, the reason logged.
    let r = gh.http.get(gh.gateway("/stranger/x")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    let text = r.text().await.unwrap();
    assert_eq!(
        text,
        r#"{"statusCode":502,"message":"Bad gateway. The backend service could not be reached."}"#
    );
    gh.eventually(Duration::from_secs(5), || async {
        gh.log().contains("issuer is not trusted")
    })
    .await;
    let log = gh.log();
    let line = log
        .lines()
        .find(|l| l.contains("issuer is not trusted"))
        .unwrap();
    assert!(line.contains(&bad_addr.to_string()), "{line}");
}
