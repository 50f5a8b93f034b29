//! The OpenID key cache against an identity provider stood in for by wiremock.

use std::time::Duration;

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::{OpenIdKeyCache, Timings};

fn fixture(name: &str) -> Vec<u8> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policy/tests/fixtures/jwt");
    std::fs::read(dir.join(name)).unwrap()
}

/// A JWKS with the public half of fixture `pem` under `kid`.
fn jwks(pem: &str, kid: &str) -> serde_json::Value {
    let key = EncodingKey::from_rsa_pem(&fixture(pem)).unwrap();
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    json!({"keys": [jwk, {"kty": "RSA", "use": "enc", "kid": "encryption-only", "n": "AQAB", "e": "AQAB"}]})
}

async fn provider(kid: &str) -> MockServer {
    let idp = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/.well-known/openid-configuration"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "issuer": "https://idp.example/",
            "jwks_uri": format!("{}/keys", idp.uri()),
        })))
        .mount(&idp)
        .await;
    Mock::given(method("GET"))
        .and(path("/keys"))
        .respond_with(ResponseTemplate::new(200).set_body_json(jwks("rsa-private.pem", kid)))
        .mount(&idp)
        .await;
    idp
}

async fn fetches(idp: &MockServer, p: &str) -> usize {
    idp.received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == p)
        .count()
}

fn quick() -> Timings {
    Timings {
        refresh: Duration::from_secs(3600),
        min_refetch: Duration::from_millis(200),
        retry_unreached: Duration::from_millis(200),
    }
}

#[tokio::test]
async fn discovery_then_jwks_then_cached() {
    let idp = provider("k1").await;
    let cache = OpenIdKeyCache::default();
    let url = format!("{}/.well-known/openid-configuration", idp.uri());
    let keys = cache.keys(&url, false).await.unwrap();
    assert_eq!(keys.issuer(), Some("https://idp.example/"));
    assert!(keys.has_kid("k1"));
    assert_eq!(keys.keys().len(), 1, "the encryption key is skipped");
    for _ in 0..5 {
        cache.keys(&url, false).await.unwrap();
    }
    assert_eq!(fetches(&idp, "/keys").await, 1);
    assert_eq!(fetches(&idp, "/.well-known/openid-configuration").await, 1);
}

#[tokio::test]
async fn a_burst_on_a_cold_cache_fetches_once() {
    let idp = provider("k1").await;
    let cache = std::sync::Arc::new(OpenIdKeyCache::default());
    let url = format!("{}/.well-known/openid-configuration", idp.uri());
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let (c, u) = (cache.clone(), url.clone());
            tokio::spawn(async move { c.keys(&u, false).await.map(|k| k.has_kid("k1")) })
        })
        .collect();
    for c in calls {
        assert_eq!(c.await.unwrap(), Ok(true));
    }
    assert_eq!(fetches(&idp, "/keys").await, 1);
}

#[tokio::test]
async fn an_unknown_kid_refreshes_at_most_once_per_interval() {
    let idp = provider("old").await;
    let cache = OpenIdKeyCache::with_timings(quick());
    let url = format!("{}/.well-known/openid-configuration", idp.uri());
    assert!(cache.keys(&url, false).await.unwrap().has_kid("old"));
    // The provider rotates its key.
    idp.reset().await;
    Mock::given(method("GET"))
        .and(path("/.well-known/openid-configuration"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "issuer": "https://idp.example/",
            "jwks_uri": format!("{}/keys", idp.uri()),
        })))
        .mount(&idp)
        .await;
    Mock::given(method("GET"))
        .and(path("/keys"))
        .respond_with(ResponseTemplate::new(200).set_body_json(jwks("rsa2-private.pem", "new")))
        .mount(&idp)
        .await;
    // Too soon after the first fetch: the cached set is served, nothing is fetched.
    for _ in 0..10 {
        assert!(!cache.keys(&url, true).await.unwrap().has_kid("new"));
    }
    assert_eq!(fetches(&idp, "/keys").await, 0);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(cache.keys(&url, true).await.unwrap().has_kid("new"));
    assert!(cache.keys(&url, true).await.unwrap().has_kid("new"));
    assert_eq!(fetches(&idp, "/keys").await, 1);
}

#[tokio::test]
async fn failures_keep_the_last_keys_and_are_not_retried_at_once() {
    let idp = provider("k1").await;
    let cache = OpenIdKeyCache::with_timings(Timings {
        refresh: Duration::from_millis(100),
        ..quick()
    });
    let url = format!("{}/.well-known/openid-configuration", idp.uri());
    assert!(cache.keys(&url, false).await.unwrap().has_kid("k1"));
    idp.reset().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&idp)
        .await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    // Due for a refresh, which fails: the last keys are still used.
    assert!(cache.keys(&url, false).await.unwrap().has_kid("k1"));
    assert!(cache.keys(&url, false).await.unwrap().has_kid("k1"));
    assert_eq!(
        fetches(&idp, "/.well-known/openid-configuration").await,
        1,
        "a failed refresh is not retried at once"
    );

    // A provider never reached: an error, and a pause before the next attempt.
    let dead = format!("http://127.0.0.1:{}/.well-known/openid-configuration", {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    });
    let e = cache.keys(&dead, false).await.unwrap_err();
    assert!(e.contains("127.0.0.1"), "{e}");
    let e = cache.keys(&dead, false).await.unwrap_err();
    assert!(e.contains("could not be fetched recently"), "{e}");
}

#[tokio::test]
async fn malformed_documents_are_errors() {
    let idp = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/no-jwks"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"issuer": "x"})))
        .mount(&idp)
        .await;
    Mock::given(method("GET"))
        .and(path("/bad-keys"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"jwks_uri": format!("{}/keys", idp.uri())})),
        )
        .mount(&idp)
        .await;
    Mock::given(method("GET"))
        .and(path("/keys"))
        .respond_with(ResponseTemplate::new(200).set_body_string("not json"))
        .mount(&idp)
        .await;
    let cache = OpenIdKeyCache::default();
    let e = cache
        .keys(&format!("{}/no-jwks", idp.uri()), false)
        .await
        .unwrap_err();
    assert!(e.contains("jwks_uri"), "{e}");
    let e = cache
        .keys(&format!("{}/bad-keys", idp.uri()), false)
        .await
        .unwrap_err();
    assert!(e.contains("not JSON"), "{e}");
}
