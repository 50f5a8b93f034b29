//! Issue #13, TLS on every hop: backend resources (`/mgmt/backends`) reach the gateway and
//! `set-backend-service backend-id` sends to them, with their credentials, their own TLS
//! relaxation (for that backend only) and their client certificate; `authentication-certificate`
//! presents a certificate for one request. Real binary, real https backends on loopback.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use gatehouse_tls::rustls;
use gatehouse_tls::testca::{Issued, TestCa};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use crate::support::{Gatehouse, put_policy, set_policy, upload_certificate};

/// What an https backend saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    query: Option<String>,
    headers: BTreeMap<String, String>,
    /// The subject of the client certificate the gateway presented, if any.
    client: Option<String>,
}

/// An https backend on loopback serving `leaf`; with `client_ca`, it requires a client
/// certificate issued by that CA. Records every request.
struct HttpsBackend {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl HttpsBackend {
    async fn start(leaf: &Issued, client_ca: Option<&Path>) -> Self {
        let provider = gatehouse_tls::provider();
        let chain =
            gatehouse_tls::pem::certificates(&std::fs::read(&leaf.cert).unwrap(), "leaf").unwrap();
        let key =
            gatehouse_tls::pem::private_key(&std::fs::read(&leaf.key).unwrap(), "key").unwrap();
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(gatehouse_tls::VERSIONS)
            .unwrap();
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in
                    gatehouse_tls::pem::certificates(&std::fs::read(ca).unwrap(), "ca").unwrap()
                {
                    roots.add(c).unwrap();
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(chain, key).unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = gatehouse_tls::tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let record = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, record) = (acceptor.clone(), record.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let client = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(|leaf| gatehouse_tls::x509::describe(leaf).ok())
                        .map(|info| info.subject);
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (record, client) = (record.clone(), client.clone());
                        async move {
                            let headers = req
                                .headers()
                                .iter()
                                .map(|(k, v)| {
                                    (
                                        k.as_str().to_owned(),
                                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                                    )
                                })
                                .collect();
                            record.lock().unwrap().push(Seen {
                                path: req.uri().path().to_owned(),
                                query: req.uri().query().map(str::to_owned),
                                headers,
                                client,
                            });
                            let body = json!({"tls": true, "path": req.uri().path()}).to_string();
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Self { addr, seen }
    }

    fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the backend saw no request")
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

/// An open API at `path` whose policy sends every request to backend `backend_id`.
async fn api_via_backend(gh: &Gatehouse, id: &str, backend_id: &str) {
    gh.simple_api(id, id, "http://127.0.0.1:9", true).await;
    set_policy(
        gh,
        &format!("/mgmt/apis/{id}/policy"),
        &format!(
            r#"<policies><inbound><base /><set-backend-service backend-id="{backend_id}" /></inbound></policies>"#
        ),
    )
    .await;
}

async fn status(gh: &Gatehouse, path: &str) -> u16 {
    gh.http
        .get(gh.gateway(path))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Waits until `path` answers `want` (configuration changes travel asynchronously).
async fn answers(gh: &Gatehouse, path: &str, want: u16) {
    let mut last = 0;
    let within = Duration::from_secs(15);
    let started = std::time::Instant::now();
    while started.elapsed() < within {
        last = status(gh, path).await;
        if last == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{path} answered {last}, not {want}, within {within:?}");
}

/// The log line that names `needle`, once it is there.
async fn log_line(gh: &Gatehouse, needle: &str) -> String {
    gh.eventually(Duration::from_secs(10), || async {
        gh.log().contains(needle)
    })
    .await;
    gh.log()
        .lines()
        .find(|l| l.contains(needle))
        .unwrap()
        .to_owned()
}

const BAD_GATEWAY: &str =
    r#"{"statusCode":502,"message":"Bad gateway. The backend service could not be reached."}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backends_tls_relaxation_applies_to_that_backend_only_and_changes_live() {
    let trusted = TestCa::new("e2e-backends-trusted");
    let stranger = TestCa::new("e2e-backends-stranger");
    // A chain the gateway does not trust, and a trusted chain that names another host.
    let untrusted = HttpsBackend::start(&stranger.leaf("untrusted", &["127.0.0.1"]), None).await;
    let misnamed =
        HttpsBackend::start(&trusted.leaf("misnamed", &["other.example.com"]), None).await;
    let gh = Gatehouse::up(
        "backends-tls",
        &["--trusted-ca", trusted.cert.to_str().unwrap()],
    )
    .await;

    let backend = |url: &str, tls: Option<Value>| {
        let mut b = json!({"url": url, "protocol": "http"});
        if let Some(t) = tls {
            b["tls"] = t;
        }
        b
    };
    gh.ok(
        "PUT",
        "/mgmt/backends/lax-chain",
        Some(backend(
            &untrusted.url(),
            Some(json!({"validateCertificateChain": false})),
        )),
    )
    .await;
    gh.ok(
        "PUT",
        "/mgmt/backends/strict-chain",
        Some(backend(&untrusted.url(), None)),
    )
    .await;
    gh.ok(
        "PUT",
        "/mgmt/backends/lax-name",
        Some(backend(
            &misnamed.url(),
            Some(json!({"validateCertificateName": false})),
        )),
    )
    .await;
    gh.ok(
        "PUT",
        "/mgmt/backends/strict-name",
        Some(backend(
            &misnamed.url(),
            Some(json!({"validateCertificateName": true})),
        )),
    )
    .await;
    api_via_backend(&gh, "via-lax-chain", "lax-chain").await;
    api_via_backend(&gh, "via-strict-chain", "strict-chain").await;
    api_via_backend(&gh, "via-lax-name", "lax-name").await;
    api_via_backend(&gh, "via-strict-name", "strict-name").await;
    // The same URL as an API's own service URL: never relaxed.
    gh.simple_api("direct", "direct", &untrusted.url(), true)
        .await;

    // validateCertificateChain: false lets the untrusted chain through, for that backend.
    answers(&gh, "/via-lax-chain/items/1", 200).await;
    assert_eq!(untrusted.last().path, "/items/1");
    let before = untrusted.count();
    let r = gh.http.get(gh.gateway("/direct/x")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r.text().await.unwrap(), BAD_GATEWAY);
    // A backend without `tls` is strict: 502, and the log names the backend, host and reason.
    let r = gh
        .http
        .get(gh.gateway("/via-strict-chain/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r.text().await.unwrap(), BAD_GATEWAY);
    assert_eq!(
        untrusted.count(),
        before,
        "a strict call reached the untrusted backend"
    );
    log_line(&gh, "issuer is not trusted").await;
    gh.eventually(Duration::from_secs(10), || async {
        gh.log().lines().any(|l| {
            l.contains("strict-chain")
                && l.contains("issuer is not trusted")
                && l.contains(&untrusted.addr.to_string())
        })
    })
    .await;

    // validateCertificateName: false accepts a trusted chain that names another host; true
    // refuses it.
    answers(&gh, "/via-lax-name/y", 200).await;
    assert_eq!(misnamed.last().path, "/y");
    assert_eq!(status(&gh, "/via-strict-name/y").await, 502);
    let line = gh
        .log()
        .lines()
        .find(|l| l.contains("strict-name") && l.contains("does not name the host"))
        .expect("the log says why strict-name failed")
        .to_owned();
    assert!(line.contains("127.0.0.1"), "{line}");

    // Made strict again, without a restart: the relaxed connections are not reused for it.
    gh.ok(
        "PUT",
        "/mgmt/backends/lax-chain",
        Some(backend(&untrusted.url(), None)),
    )
    .await;
    answers(&gh, "/via-lax-chain/items/2", 502).await;
    // And relaxed again.
    gh.ok(
        "PUT",
        "/mgmt/backends/lax-chain",
        Some(backend(
            &untrusted.url(),
            Some(json!({"validateCertificateChain": false})),
        )),
    )
    .await;
    answers(&gh, "/via-lax-chain/items/3", 200).await;

    // A literal id that does not exist is refused when the policy is saved; one computed at
    // run time is Azure's 500, and the log names it.
    let (code, body) = put_policy(
        &gh,
        "/mgmt/apis/direct/policy",
        r#"<policies><inbound><base /><set-backend-service backend-id="nope" /></inbound></policies>"#,
    )
    .await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body.to_string().contains("backend 'nope' does not exist"),
        "{body}"
    );
    set_policy(
        &gh,
        "/mgmt/apis/direct/policy",
        r#"<policies><inbound><base /><set-backend-service backend-id="@(&quot;no-such-&quot; + &quot;backend&quot;)" /></inbound></policies>"#,
    )
    .await;
    answers(&gh, "/direct/z", 500).await;
    let r = gh.http.get(gh.gateway("/direct/z")).send().await.unwrap();
    assert_eq!(
        r.text().await.unwrap(),
        r#"{"statusCode":500,"message":"Internal server error"}"#
    );
    log_line(&gh, "backend 'no-such-backend' does not exist").await;

    // A backend a policy sends to cannot be deleted from under it; an unused one can.
    let (code, body) = gh.mgmt("DELETE", "/mgmt/backends/lax-chain", None).await;
    assert_eq!(code, 409, "{body}");
    assert!(body.to_string().contains("API 'via-lax-chain'"), "{body}");
    gh.ok(
        "PUT",
        "/mgmt/backends/unused",
        Some(backend(&untrusted.url(), None)),
    )
    .await;
    let (code, body) = gh.mgmt("DELETE", "/mgmt/backends/unused", None).await;
    assert_eq!(code, 204, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_certificates_and_credentials_reach_backends() {
    let ca = TestCa::new("e2e-backends-mtls");
    let client = ca.client("gateway-client", "gatehouse-client");
    // Requires a client certificate from `ca`.
    let mtls = HttpsBackend::start(&ca.leaf("mtls", &["127.0.0.1"]), Some(&ca.cert)).await;
    let gh = Gatehouse::up(
        "backends-mtls",
        &["--trusted-ca", ca.cert.to_str().unwrap()],
    )
    .await;
    upload_certificate(&gh, "client-cert", &client).await;
    gh.ok(
        "PUT",
        "/mgmt/named-values/backend-key",
        Some(json!({"value": "s3cret", "secret": true})),
    )
    .await;

    // A client certificate that does not exist is refused, as is one without its key.
    let (code, body) = gh
        .mgmt(
            "PUT",
            "/mgmt/backends/bad",
            Some(json!({"url": mtls.url(), "credentials": {"certificateIds": ["/certificates/nope"]}})),
        )
        .await;
    assert_eq!(code, 404, "{body}");
    assert!(
        body.to_string()
            .contains("certificate 'nope' does not exist"),
        "{body}"
    );

    gh.ok(
        "PUT",
        "/mgmt/backends/mtls",
        Some(json!({
            "url": format!("{}/base", mtls.url()),
            "credentials": {
                "certificateIds": ["/certificates/client-cert"],
                "header": {"x-api-key": ["{{backend-key}}"]},
                "query": {"code": ["q 1"]},
                "authorization": {"scheme": "Bearer", "parameter": "tok-{{backend-key}}"}
            }
        })),
    )
    .await;
    gh.ok(
        "PUT",
        "/mgmt/backends/mtls-nocert",
        Some(json!({"url": mtls.url()})),
    )
    .await;
    api_via_backend(&gh, "via-mtls", "mtls").await;
    api_via_backend(&gh, "via-nocert", "mtls-nocert").await;
    gh.simple_api("direct-mtls", "direct-mtls", &mtls.url(), true)
        .await;
    gh.simple_api("policy-mtls", "policy-mtls", &mtls.url(), true)
        .await;
    set_policy(
        &gh,
        "/mgmt/apis/policy-mtls/policy",
        r#"<policies><inbound><base /><authentication-certificate certificate-id="client-cert" /></inbound></policies>"#,
    )
    .await;

    // The backend's certificate is presented, its credentials added (named values resolved),
    // replacing what the caller sent under the same names.
    gh.eventually(Duration::from_secs(15), || async {
        gh.http
            .get(gh.gateway("/via-mtls/items?code=caller&keep=1"))
            .header("x-api-key", "caller")
            .send()
            .await
            .unwrap()
            .status()
            == 200
    })
    .await;
    let seen = mtls.last();
    assert!(
        seen.client
            .as_deref()
            .is_some_and(|s| s.contains("gatehouse-client")),
        "{seen:?}"
    );
    assert_eq!(seen.path, "/base/items");
    assert_eq!(seen.query.as_deref(), Some("keep=1&code=q%201"));
    assert_eq!(
        seen.headers.get("x-api-key").map(String::as_str),
        Some("s3cret")
    );
    assert_eq!(
        seen.headers.get("authorization").map(String::as_str),
        Some("Bearer tok-s3cret")
    );
    // The secret never reaches the log.
    assert!(!gh.log().contains("s3cret"));
    // A value a header cannot carry is refused, in the backend or in its named value.
    let (code, body) = gh
        .mgmt(
            "PUT",
            "/mgmt/named-values/backend-key",
            Some(json!({"value": "line\nbreak", "secret": true})),
        )
        .await;
    assert_eq!(code, 400, "{body}");
    assert!(body.to_string().contains("backend 'mtls'"), "{body}");
    let (code, body) = gh
        .mgmt(
            "PUT",
            "/mgmt/backends/bad",
            Some(json!({"url": mtls.url(), "credentials": {"header": {"x-a": ["a\r\nb"]}}})),
        )
        .await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body.to_string().contains("credentials.header.x-a"),
        "{body}"
    );

    // Without a certificate the backend refuses the gateway: 502.
    let r = gh
        .http
        .get(gh.gateway("/via-nocert/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r.text().await.unwrap(), BAD_GATEWAY);
    assert_eq!(status(&gh, "/direct-mtls/x").await, 502);
    // The log says why, naming the backend.
    gh.eventually(Duration::from_secs(10), || async {
        gh.log().lines().any(|l| {
            l.contains("mtls-nocert")
                && l.contains(&mtls.addr.to_string())
                && (l.contains("requires a client certificate")
                    || l.contains("refused the client certificate"))
        })
    })
    .await;

    // authentication-certificate presents the certificate for an API's own service URL.
    let before = mtls.count();
    answers(&gh, "/policy-mtls/p", 200).await;
    assert!(mtls.count() > before);
    let seen = mtls.last();
    assert_eq!(seen.path, "/p");
    assert!(
        seen.client
            .as_deref()
            .is_some_and(|s| s.contains("gatehouse-client")),
        "{seen:?}"
    );
    // The plain service URL still presents nothing (no connection of the other kind reused).
    assert_eq!(status(&gh, "/direct-mtls/again").await, 502);

    // A certificate a backend presents cannot be deleted from under it.
    let (code, body) = gh
        .mgmt("DELETE", "/mgmt/certificates/client-cert", None)
        .await;
    assert_eq!(code, 409, "{body}");
    assert!(body.to_string().contains("backend 'mtls'"), "{body}");
}
