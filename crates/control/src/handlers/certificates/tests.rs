//! Router tests (no socket) for certificates, hostname configurations and certificate
//! authorities: what is accepted, what is refused and why, what is never shown, and what the
//! gateway's snapshot gets.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use gatehouse_store::Kind;
use gatehouse_tls::testca::TestCa;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::ControlPlane;

struct Harness {
    cp: Arc<ControlPlane>,
    token: String,
    dir: std::path::PathBuf,
}

impl Harness {
    async fn new(tag: &str) -> Self {
        let t = crate::testkit::open(&format!("certs-test-{tag}")).await;
        Self {
            cp: t.cp,
            token: t.token,
            dir: t.dir,
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .unwrap();
        let response = self.cp.router().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, value)
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// The key's base64 body, without the PEM armour: what must never be seen in clear.
fn key_material(key_pem: &str) -> String {
    key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .join("")
        .chars()
        .take(40)
        .collect()
}

#[tokio::test]
async fn certificates_are_checked_sealed_and_never_shown() {
    let h = Harness::new("put").await;
    let ca = TestCa::new("router-put");
    let leaf = ca.leaf("api", &["api.example.com"]);
    let other = ca.leaf("other", &["other.example.com"]);
    let (chain, key) = (read(&leaf.cert), read(&leaf.key));

    let (status, body) = h
        .call(
            Method::PUT,
            "/mgmt/certificates/web",
            Some(json!({"data": format!("{chain}{key}")})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["id"], "web");
    assert_eq!(body["hasPrivateKey"], true);
    assert!(
        body["subject"]
            .as_str()
            .unwrap()
            .contains("CN=api.example.com"),
        "{body}"
    );
    assert_eq!(body["thumbprint"].as_str().unwrap().len(), 40);
    assert!(body["expirationDate"].as_str().unwrap().ends_with('Z'));
    assert!(body.get("data").is_none() && body.get("password").is_none());
    let (status, got) = h.call(Method::GET, "/mgmt/certificates/web", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got, body);
    let (_, list) = h.call(Method::GET, "/mgmt/certificates", None).await;
    assert_eq!(list["count"], 1);
    assert!(!list.to_string().contains("PRIVATE KEY"));

    // Stored sealed: neither the key nor the chain is readable in the store.
    let stored =
        h.cp.store()
            .get(Kind::Certificate, "", "web")
            .await
            .unwrap()
            .unwrap();
    assert!(!stored.contains("PRIVATE KEY") && !stored.contains(&key_material(&key)));
    assert!(!stored.contains("BEGIN CERTIFICATE"));

    // Azure's base64 PFX: told how to convert it.
    let (status, body) = h
        .call(
            Method::PUT,
            "/mgmt/certificates/pfx",
            Some(json!({"data": "MIIKZAIBAzCCCh4GCSqGSIb3DQEHAaCCCg8=", "password": ""})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "ValidationError");
    assert!(
        body.to_string()
            .contains("openssl pkcs12 -in cert.pfx -nodes -out cert.pem"),
        "{body}"
    );
    // A key that is not the leaf's.
    let (status, body) = h
        .call(
            Method::PUT,
            "/mgmt/certificates/mismatch",
            Some(json!({"data": format!("{chain}{}", read(&other.key))})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.to_string().contains("does not fit"), "{body}");
    // Armour around garbage.
    let (status, body) = h
        .call(
            Method::PUT,
            "/mgmt/certificates/garbage",
            Some(json!({"data": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body.to_string().contains("not an X.509 certificate"),
        "{body}"
    );
    let (status, _) = h
        .call(Method::GET, "/mgmt/certificates/mismatch", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn hostnames_and_authorities_need_their_certificates_and_reach_the_snapshot() {
    let h = Harness::new("hc").await;
    let ca = TestCa::new("router-hc");
    let leaf = ca.leaf("api", &["api.example.com"]);
    let (chain, key) = (read(&leaf.cert), read(&leaf.key));
    let (status, _) = h
        .call(Method::PUT, "/mgmt/gateways/edge", Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let hc = |cert: &str| json!({"hostname": "API.example.com", "certificateId": cert});

    let (status, body) = h
        .call(
            Method::PUT,
            "/mgmt/gateways/edge/hostnameConfigurations/api",
            Some(hc("web")),
        )
        .await;
    // A certificate that is not there: 404, naming the member.
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.to_string().contains("does not exist"), "{body}");
    assert!(body.to_string().contains("certificateId"), "{body}");

    // A certificate without its key cannot serve a hostname.
    h.call(
        Method::PUT,
        "/mgmt/certificates/ca",
        Some(json!({"data": read(&ca.cert)})),
    )
    .await;
    let (status, body) = h
        .call(
            Method::PUT,
            "/mgmt/gateways/edge/hostnameConfigurations/api",
            Some(hc("ca")),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body.to_string().contains("no private key"), "{body}");

    let (status, _) = h
        .call(
            Method::PUT,
            "/mgmt/certificates/web",
            Some(json!({"data": format!("{chain}{key}")})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = h
        .call(
            Method::PUT,
            "/mgmt/gateways/edge/hostnameConfigurations/api",
            Some(hc("/certificates/web")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        body,
        json!({"id": "api", "hostname": "api.example.com", "certificateId": "web",
               "negotiateClientCertificate": false, "http2Enabled": true})
    );
    // One configuration per hostname.
    let (status, body) = h
        .call(
            Method::PUT,
            "/mgmt/gateways/edge/hostnameConfigurations/again",
            Some(hc("web")),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body.to_string().contains("already configured"), "{body}");
    let (status, body) = h
        .call(
            Method::PUT,
            "/mgmt/gateways/edge/hostnameConfigurations/bad",
            Some(json!({"hostname": "a b.example.com", "certificateId": "web"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = h
        .call(
            Method::PUT,
            "/mgmt/gateways/nowhere/hostnameConfigurations/api",
            Some(hc("web")),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, body) = h
        .call(
            Method::PUT,
            "/mgmt/gateways/edge/certificateAuthorities/missing",
            Some(json!({})),
        )
        .await;
    // The path names the certificate: a missing one is a missing resource.
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body.to_string().contains("missing"), "{body}");
    let (status, body) = h
        .call(
            Method::PUT,
            "/mgmt/gateways/edge/certificateAuthorities/ca",
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body, json!({"id": "ca", "isTrusted": true}));
    let (_, list) = h
        .call(
            Method::GET,
            "/mgmt/gateways/edge/certificateAuthorities",
            None,
        )
        .await;
    assert_eq!(list["count"], 1);

    // The snapshot of edge carries them; another gateway's does not.
    let snap = h.cp.snapshot("edge").await.unwrap();
    assert_eq!(snap.tls.hostnames.len(), 1);
    assert_eq!(snap.tls.hostnames[0].hostname, "api.example.com");
    assert_eq!(snap.tls.hostnames[0].key.trim(), key.trim());
    assert_eq!(snap.tls.hostnames[0].certificate.trim(), chain.trim());
    assert_eq!(
        snap.tls.certificate_authorities[0].certificate.trim(),
        read(&ca.cert).trim()
    );
    h.call(Method::PUT, "/mgmt/gateways/other", Some(json!({})))
        .await;
    assert!(h.cp.snapshot("other").await.unwrap().tls.is_empty());

    // In use: neither deleted nor stripped of its key.
    for id in ["web", "ca"] {
        let (status, body) = h
            .call(Method::DELETE, &format!("/mgmt/certificates/{id}"), None)
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert!(body.to_string().contains("remove it there first"), "{body}");
    }
    let (status, body) = h
        .call(
            Method::PUT,
            "/mgmt/certificates/web",
            Some(json!({"data": chain})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.to_string().contains("edge/api"), "{body}");

    // Deleting the gateway removes its hostname configurations and authorities.
    let (status, _) = h.call(Method::DELETE, "/mgmt/gateways/edge", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for id in ["web", "ca"] {
        let (status, body) = h
            .call(Method::DELETE, &format!("/mgmt/certificates/{id}"), None)
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    }
}
