//! The token cache against a counting fake, the providers' requests and answers against a token
//! endpoint stood in for by wiremock, and the promise that no token shows in `Debug` or errors.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;

type FetchFn = dyn Fn(String, Option<String>) -> Pin<Box<dyn Future<Output = Result<Fetched, TokenError>> + Send>>
    + Send
    + Sync;

/// A fetch that is a function (tests only).
#[derive(Clone)]
pub struct FakeFetch(pub Arc<FetchFn>);

impl std::fmt::Debug for FakeFetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FakeFetch")
    }
}

/// A clock the test moves by hand.
#[derive(Clone)]
struct ManualClock(Arc<Mutex<Instant>>);

impl ManualClock {
    fn new() -> Self {
        Self(Arc::new(Mutex::new(Instant::now())))
    }
    fn advance(&self, d: Duration) {
        *self.0.lock().unwrap() += d;
    }
    fn clock(&self) -> Clock {
        let c = self.0.clone();
        Arc::new(move || *c.lock().unwrap())
    }
}

fn tls() -> gatehouse_tls::rustls::ClientConfig {
    crate::outbound_tls::reqwest_tls(&[]).unwrap()
}

/// A provider whose fetches are counted, each answering `tok-<n>` valid for `lifetime`
/// (after `delay`), or failing when `fail` is set.
struct Counting {
    provider: TokenProvider,
    fetches: Arc<AtomicU64>,
    fail: Arc<std::sync::atomic::AtomicBool>,
}

fn counting(lifetime: Duration, delay: Duration, clock: &ManualClock) -> Counting {
    let fetches = Arc::new(AtomicU64::new(0));
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (n, failing) = (fetches.clone(), fail.clone());
    type Answer = Pin<Box<dyn Future<Output = Result<Fetched, TokenError>> + Send>>;
    let fake = FakeFetch(Arc::new(
        move |resource: String, client: Option<String>| -> Answer {
            let (n, failing) = (n.clone(), failing.clone());
            Box::pin(async move {
                let i = n.fetch_add(1, Ordering::SeqCst) + 1;
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                if failing.load(Ordering::SeqCst) {
                    return Err(TokenError::Refused {
                        provider: "fake",
                        status: 500,
                        detail: String::new(),
                    });
                }
                Ok(Fetched {
                    token: AccessToken::new(format!(
                        "tok-{i}-{resource}-{}",
                        client.unwrap_or_default()
                    )),
                    lifetime,
                })
            })
        },
    ));
    let mut provider = TokenProvider::new(Provider::Fake(fake), tls()).unwrap();
    provider.clock = clock.clock();
    Counting {
        provider,
        fetches,
        fail,
    }
}

#[tokio::test]
async fn tokens_are_cached_until_shortly_before_they_expire() {
    let clock = ManualClock::new();
    let c = counting(Duration::from_secs(3600), Duration::ZERO, &clock);
    let t1 = c.provider.token("r", None).await.unwrap();
    assert_eq!(t1.secret(), "tok-1-r-");
    clock.advance(Duration::from_secs(3000));
    assert_eq!(c.provider.token("r", None).await.unwrap(), t1);
    assert_eq!(c.fetches.load(Ordering::SeqCst), 1);
    // Five minutes before the end it is refreshed.
    clock.advance(Duration::from_secs(301));
    let t2 = c.provider.token("r", None).await.unwrap();
    assert_eq!(t2.secret(), "tok-2-r-");
    assert_eq!(c.fetches.load(Ordering::SeqCst), 2);
    // Each (resource, client id) has its own token.
    let other = c.provider.token("r", Some("uai")).await.unwrap();
    assert_eq!(other.secret(), "tok-3-r-uai");
    assert_eq!(c.provider.token("r", None).await.unwrap(), t2);
    assert_eq!(c.fetches.load(Ordering::SeqCst), 3);

    // A short-lived token is refreshed a tenth of its lifetime early.
    let clock = ManualClock::new();
    let c = counting(Duration::from_secs(600), Duration::ZERO, &clock);
    c.provider.token("r", None).await.unwrap();
    clock.advance(Duration::from_secs(539));
    c.provider.token("r", None).await.unwrap();
    assert_eq!(c.fetches.load(Ordering::SeqCst), 1);
    clock.advance(Duration::from_secs(2));
    c.provider.token("r", None).await.unwrap();
    assert_eq!(c.fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn concurrent_requests_on_a_cold_cache_make_one_fetch() {
    let clock = ManualClock::new();
    let c = counting(
        Duration::from_secs(3600),
        Duration::from_millis(100),
        &clock,
    );
    let provider = Arc::new(c.provider);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let p = provider.clone();
        tasks.spawn(async move { p.token("https://vault.azure.net", None).await });
    }
    let mut tokens = Vec::new();
    while let Some(t) = tasks.join_next().await {
        tokens.push(t.unwrap().unwrap());
    }
    assert_eq!(tokens.len(), 20);
    assert!(
        tokens
            .iter()
            .all(|t| t.secret() == "tok-1-https://vault.azure.net-")
    );
    assert_eq!(c.fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_token_due_for_refresh_is_served_while_one_task_refreshes() {
    let clock = ManualClock::new();
    let c = counting(
        Duration::from_secs(3600),
        Duration::from_millis(200),
        &clock,
    );
    let provider = Arc::new(c.provider);
    let first = provider.token("r", None).await.unwrap();
    clock.advance(Duration::from_secs(3400));
    let refresher = {
        let p = provider.clone();
        tokio::spawn(async move { p.token("r", None).await })
    };
    // Let the refresher take the fetch.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let started = std::time::Instant::now();
    assert_eq!(provider.token("r", None).await.unwrap(), first);
    assert!(
        started.elapsed() < Duration::from_millis(150),
        "did not wait for the refresh"
    );
    assert_eq!(refresher.await.unwrap().unwrap().secret(), "tok-2-r-");
    assert_eq!(c.fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_failed_fetch_pauses_the_provider_and_the_pause_grows() {
    let clock = ManualClock::new();
    let c = counting(Duration::from_secs(3600), Duration::ZERO, &clock);
    c.fail.store(true, Ordering::SeqCst);
    let e = c.provider.token("r", None).await.unwrap_err();
    assert!(matches!(e, TokenError::Refused { status: 500, .. }), "{e}");
    for _ in 0..10 {
        let e = c.provider.token("r", None).await.unwrap_err();
        assert!(matches!(e, TokenError::Paused { .. }), "{e}");
        assert!(e.to_string().contains("answered 500"), "{e}");
    }
    assert_eq!(c.fetches.load(Ordering::SeqCst), 1);
    // After the pause (2 s), one more attempt; then the pause doubles.
    clock.advance(Duration::from_millis(2100));
    c.provider.token("r", None).await.unwrap_err();
    assert_eq!(c.fetches.load(Ordering::SeqCst), 2);
    clock.advance(Duration::from_millis(2100));
    c.provider.token("r", None).await.unwrap_err();
    assert_eq!(c.fetches.load(Ordering::SeqCst), 2, "paused for 4 s now");
    clock.advance(Duration::from_secs(2));
    c.fail.store(false, Ordering::SeqCst);
    assert_eq!(
        c.provider.token("r", None).await.unwrap().secret(),
        "tok-3-r-"
    );
    // Success clears the failure: a later failure starts from the short pause again.
    assert_eq!(c.fetches.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_failed_refresh_keeps_serving_the_valid_token() {
    let clock = ManualClock::new();
    let c = counting(Duration::from_secs(3600), Duration::ZERO, &clock);
    let first = c.provider.token("r", None).await.unwrap();
    clock.advance(Duration::from_secs(3400));
    c.fail.store(true, Ordering::SeqCst);
    assert_eq!(c.provider.token("r", None).await.unwrap(), first);
    assert_eq!(c.provider.token("r", None).await.unwrap(), first);
    assert_eq!(
        c.fetches.load(Ordering::SeqCst),
        2,
        "paused after the failure"
    );
    // Once expired, it is no longer sent.
    clock.advance(Duration::from_secs(200));
    assert!(c.provider.token("r", None).await.is_err());
}

#[test]
fn token_answers_of_each_provider_parse() {
    // IMDS: numbers as strings.
    let imds = br#"{"access_token":"eyJ0eXAi.imds","refresh_token":"","expires_in":"3599","expires_on":"1506484173","not_before":"1506480273","resource":"https://management.azure.com/","token_type":"Bearer"}"#;
    let f = parse_token(imds, 1_506_480_574).unwrap();
    assert_eq!(f.token.secret(), "eyJ0eXAi.imds");
    assert_eq!(f.lifetime, Duration::from_secs(3599));
    // Entra ID v2 (workload identity, client credentials).
    let entra = br#"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"eyJ0eXAi.entra"}"#;
    let f = parse_token(entra, 0).unwrap();
    assert_eq!(
        (f.token.secret(), f.lifetime),
        ("eyJ0eXAi.entra", Duration::from_secs(3599))
    );
    // Only expires_on.
    let f = parse_token(br#"{"access_token":"a","expires_on":"1000"}"#, 400).unwrap();
    assert_eq!(f.lifetime, Duration::from_secs(600));
    // A generic provider that does not say: the default.
    let f = parse_token(br#"{"access_token":"a","token_type":"bearer"}"#, 0).unwrap();
    assert_eq!(f.lifetime, DEFAULT_LIFETIME);
    for (bad, why) in [
        (&b"not json"[..], "not JSON"),
        (br#"{"token_type":"Bearer"}"#, "no access_token"),
        (br#"{"access_token":""}"#, "no access_token"),
        (br#"{"access_token":"a b"}"#, "not a token"),
        (br#"{"access_token":"a","expires_in":0}"#, "expired"),
    ] {
        let e = parse_token(bad, 0).unwrap_err();
        assert!(e.contains(why), "{e}");
    }
    assert_eq!(
        error_detail(br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.\r\nTrace ID: x"}"#),
        ": invalid_client: AADSTS7000215: Invalid client secret provided."
    );
    assert_eq!(
        entra_scope("https://management.azure.com/"),
        "https://management.azure.com/.default"
    );
    assert_eq!(entra_scope("api://app"), "api://app/.default");
    assert_eq!(form(&[("a b", "x&y=z/é")]), "a+b=x%26y%3Dz%2F%C3%A9");
}

#[test]
fn no_token_or_secret_shows_in_debug_output() {
    let f = parse_token(br#"{"access_token":"SECRET-TOKEN-1","expires_in":60}"#, 0).unwrap();
    let p = Provider::OAuth2 {
        token_url: "http://idp/token".into(),
        client_id: "c".into(),
        secret: Secret::new("SECRET-CLIENT-2"),
        scope: DEFAULT_SCOPE.into(),
    };
    let provider = TokenProvider::new(p.clone(), tls()).unwrap();
    let shown = format!("{f:?} {p:?} {provider:?} {:?}", Secret::new("SECRET-3"));
    assert!(!shown.contains("SECRET"), "{shown}");
    assert!(shown.contains("oauth2"), "{shown}");
}

async fn token_server(answer: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(path("/token"))
        .respond_with(answer)
        .mount(&server)
        .await;
    server
}

fn form_of(req: &wiremock::Request) -> HashMap<String, String> {
    let body = String::from_utf8(req.body.clone()).unwrap();
    body.split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            let decode = |s: &str| {
                let s = s.replace('+', " ");
                let mut out = Vec::new();
                let b = s.as_bytes();
                let mut i = 0;
                while i < b.len() {
                    if b[i] == b'%' {
                        out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                        i += 3;
                    } else {
                        out.push(b[i]);
                        i += 1;
                    }
                }
                String::from_utf8(out).unwrap()
            };
            (decode(k), decode(v))
        })
        .collect()
}

fn ok_token(token: &str) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .set_body_json(json!({"access_token": token, "expires_in": "3599", "token_type": "Bearer"}))
}

#[tokio::test]
async fn imds_asks_the_metadata_endpoint_with_the_metadata_header() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/metadata/identity/oauth2/token"))
        .and(header("Metadata", "true"))
        .respond_with(ok_token("imds-token"))
        .mount(&server)
        .await;
    let provider = TokenProvider::new(
        Provider::Imds {
            endpoint: format!("{}/metadata/identity/oauth2/token", server.uri()),
            client_id: None,
        },
        tls(),
    )
    .unwrap();
    let t = provider
        .token("https://vault.azure.net", Some("uai-1"))
        .await
        .unwrap();
    assert_eq!(t.secret(), "imds-token");
    let reqs = server.received_requests().await.unwrap();
    let q: HashMap<_, _> = reqs[0].url.query_pairs().into_owned().collect();
    assert_eq!(q["api-version"], "2018-02-01");
    assert_eq!(q["resource"], "https://vault.azure.net");
    assert_eq!(q["client_id"], "uai-1");

    // An IMDS error is a clear error without a token.
    let server = token_server(ResponseTemplate::new(400).set_body_json(
        json!({"error": "invalid_request", "error_description": "Identity not found"}),
    ))
    .await;
    let provider = TokenProvider::new(
        Provider::Imds {
            endpoint: format!("{}/token", server.uri()),
            client_id: None,
        },
        tls(),
    )
    .unwrap();
    let e = provider.token("r", None).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "the token provider (imds) answered 400: invalid_request: Identity not found"
    );
}

#[tokio::test]
async fn workload_identity_exchanges_the_federated_token_file() {
    let dir = std::env::temp_dir().join(format!("gh-wi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("token");
    std::fs::write(&file, "projected.sa.jwt\n").unwrap();
    let server2 = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/tenant-1/oauth2/v2.0/token"))
        .respond_with(ok_token("wi-token"))
        .mount(&server2)
        .await;
    let provider2 = TokenProvider::new(
        Provider::WorkloadIdentity {
            authority: format!("{}/", server2.uri()),
            tenant: "tenant-1".into(),
            client_id: "client-1".into(),
            token_file: file.clone(),
        },
        tls(),
    )
    .unwrap();
    let t = provider2
        .token("https://management.azure.com/", None)
        .await
        .unwrap();
    assert_eq!(t.secret(), "wi-token");
    let reqs = server2.received_requests().await.unwrap();
    let f = form_of(&reqs[0]);
    assert_eq!(f["grant_type"], "client_credentials");
    assert_eq!(f["client_id"], "client-1");
    assert_eq!(f["scope"], "https://management.azure.com/.default");
    assert_eq!(
        f["client_assertion_type"],
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    );
    assert_eq!(f["client_assertion"], "projected.sa.jwt");
    // The file is read again for each fetch (the kubelet rotates it); a missing one is named.
    std::fs::remove_file(&file).unwrap();
    let e = provider2.token("api://other", None).await.unwrap_err();
    assert!(matches!(e, TokenError::TokenFile { .. }), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn client_secret_and_oauth2_post_client_credentials() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/t1/oauth2/v2.0/token"))
        .respond_with(ok_token("cs-token"))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"access_token": "o2-token", "expires_in": 120})),
        )
        .mount(&server)
        .await;
    let secret = TokenProvider::new(
        Provider::ClientSecret {
            authority: server.uri(),
            tenant: "t1".into(),
            client_id: "app".into(),
            secret: Secret::new("s3cr&t"),
        },
        tls(),
    )
    .unwrap();
    assert_eq!(
        secret.token("api://backend", None).await.unwrap().secret(),
        "cs-token"
    );
    // Credentials of one client cannot serve another.
    let e = secret
        .token("api://backend", Some("other"))
        .await
        .unwrap_err();
    assert!(matches!(e, TokenError::OtherClient { .. }), "{e}");
    let oauth2 = TokenProvider::new(
        Provider::OAuth2 {
            token_url: format!("{}/oauth/token", server.uri()),
            client_id: "gw".into(),
            secret: Secret::new("pw"),
            scope: "{resource}:read openid".into(),
        },
        tls(),
    )
    .unwrap();
    assert_eq!(
        oauth2.token("orders", None).await.unwrap().secret(),
        "o2-token"
    );
    let reqs = server.received_requests().await.unwrap();
    let f = form_of(&reqs[0]);
    assert_eq!(
        (
            f["grant_type"].as_str(),
            f["client_id"].as_str(),
            f["client_secret"].as_str(),
            f["scope"].as_str()
        ),
        (
            "client_credentials",
            "app",
            "s3cr&t",
            "api://backend/.default"
        )
    );
    let f = form_of(&reqs[1]);
    assert_eq!(f["scope"], "orders:read openid");
    assert_eq!(f["client_secret"], "pw");
    // The secret is in no error.
    let refused =
        token_server(ResponseTemplate::new(401).set_body_json(json!({"error": "invalid_client"})))
            .await;
    let p = TokenProvider::new(
        Provider::OAuth2 {
            token_url: format!("{}/token", refused.uri()),
            client_id: "gw".into(),
            secret: Secret::new("TOPSECRET"),
            scope: DEFAULT_SCOPE.into(),
        },
        tls(),
    )
    .unwrap();
    let e = p.token("x", None).await.unwrap_err().to_string();
    assert_eq!(
        e,
        "the token provider (oauth2) answered 401: invalid_client"
    );
}

#[tokio::test]
async fn an_unreachable_provider_is_a_clear_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let p = TokenProvider::new(
        Provider::Imds {
            endpoint: format!("http://127.0.0.1:{port}/token"),
            client_id: None,
        },
        tls(),
    )
    .unwrap();
    let e = p.token("r", None).await.unwrap_err();
    assert!(
        e.to_string()
            .starts_with("the token provider (imds) cannot be reached: connection failed"),
        "{e}"
    );
}

/// An RSA certificate and key made with `openssl`, in one PEM file.
fn rsa_certificate(dir: &std::path::Path) -> (PathBuf, Vec<u8>) {
    let out = std::process::Command::new("openssl")
        .current_dir(dir)
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-days",
            "1",
            "-subj",
            "/CN=gatehouse-identity-test",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(["x509", "-in", "cert.pem", "-pubkey", "-noout"])
        .output()
        .unwrap();
    let public = out.stdout;
    let mut both = std::fs::read(dir.join("cert.pem")).unwrap();
    both.extend(std::fs::read(dir.join("key.pem")).unwrap());
    let file = dir.join("both.pem");
    std::fs::write(&file, both).unwrap();
    (file, public)
}

#[tokio::test]
async fn client_certificate_signs_a_client_assertion() {
    let dir = std::env::temp_dir().join(format!("gh-cc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (file, public) = rsa_certificate(&dir);
    let certificate = ClientCertificate::load(&file).unwrap();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/t1/oauth2/v2.0/token"))
        .respond_with(ok_token("cc-token"))
        .mount(&server)
        .await;
    let p = TokenProvider::new(
        Provider::ClientCertificate {
            authority: format!("{}/", server.uri()),
            tenant: "t1".into(),
            client_id: "app".into(),
            certificate,
        },
        tls(),
    )
    .unwrap();
    assert_eq!(p.token("api://b", None).await.unwrap().secret(), "cc-token");
    let reqs = server.received_requests().await.unwrap();
    let f = form_of(&reqs[0]);
    assert_eq!(f["scope"], "api://b/.default");
    assert!(!f.contains_key("client_secret"));
    let assertion = &f["client_assertion"];
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    let audience = format!("{}/t1/oauth2/v2.0/token", server.uri());
    validation.set_audience(&[audience.as_str()]);
    validation.set_issuer(&["app"]);
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(&public).unwrap();
    let claims = jsonwebtoken::decode::<serde_json::Value>(assertion, &key, &validation)
        .unwrap()
        .claims;
    assert_eq!(claims["sub"], "app");
    let header = jsonwebtoken::decode_header(assertion).unwrap();
    let thumbprint = {
        let der =
            gatehouse_tls::pem::certificates(&std::fs::read(dir.join("cert.pem")).unwrap(), "c")
                .unwrap();
        let d = aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
            der[0].as_ref(),
        );
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d.as_ref())
    };
    assert_eq!(header.x5t.as_deref(), Some(thumbprint.as_str()));
    // A file without a key is refused when the gateway starts.
    let e = ClientCertificate::load(&dir.join("cert.pem")).unwrap_err();
    assert!(e.to_string().contains("no private key"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
