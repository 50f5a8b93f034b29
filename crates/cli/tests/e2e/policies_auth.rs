//! Authentication, transformation and caching policies through the real gateway, against a real
//! backend and (for validate-jwt) a real identity provider on loopback: what the backend received
//! and what the client got.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::support::{Backend, Gatehouse, put_policy, set_policy};

fn fixture(name: &str) -> Vec<u8> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policy/tests/fixtures/jwt");
    std::fs::read(dir.join(name)).unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A tiny OpenID Connect provider: a discovery document and a JWKS, with the paths it was asked
/// for recorded.
struct Idp {
    addr: SocketAddr,
    hits: Arc<Mutex<Vec<String>>>,
}

impl Idp {
    async fn start(jwks: Value) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits: Arc<Mutex<Vec<String>>> = Arc::default();
        let discovery = json!({
            "issuer": "https://idp.test/",
            "jwks_uri": format!("http://{addr}/keys"),
        });
        let (record, docs) = (hits.clone(), Arc::new((discovery, jwks)));
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (record, docs) = (record.clone(), docs.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (record, docs) = (record.clone(), docs.clone());
                        async move {
                            let path = req.uri().path().to_owned();
                            record.lock().unwrap().push(path.clone());
                            let body = match path.as_str() {
                                "/.well-known/openid-configuration" => docs.0.to_string(),
                                "/keys" => docs.1.to_string(),
                                _ => String::new(),
                            };
                            let mut r = Response::new(Full::new(Bytes::from(body)));
                            r.headers_mut()
                                .insert("content-type", "application/json".parse().unwrap());
                            Ok::<_, Infallible>(r)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, hits }
    }

    fn config_url(&self) -> String {
        format!("http://{}/.well-known/openid-configuration", self.addr)
    }

    fn count(&self, path: &str) -> usize {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|p| *p == path)
            .count()
    }
}

/// Sends requests until one answers `want` (the configuration reaches the gateway within
/// moments), then returns it.
async fn until(req: impl Fn() -> reqwest::RequestBuilder, want: u16) -> reqwest::Response {
    let start = Instant::now();
    loop {
        let r = req().send().await.unwrap();
        if r.status().as_u16() == want {
            return r;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "never answered {want}: got {}",
            r.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn token(key: &EncodingKey, kid: &str, claims: &Value) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&h, claims, key).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn validate_jwt_with_an_openid_provider_and_basic_auth_to_the_backend() {
    let key = EncodingKey::from_rsa_pem(&fixture("rsa-private.pem")).unwrap();
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
    jwk.common.key_id = Some("k1".into());
    let idp = Idp::start(json!({"keys": [jwk]})).await;
    let backend = Backend::start().await;
    let gh = Gatehouse::up("pol-auth-jwt", &[]).await;
    gh.simple_api("secure", "secure", &backend.url(), true)
        .await;
    gh.ok(
        "PUT",
        "/mgmt/named-values/backend-password",
        Some(json!({"value": "s3cr3t-backend-pw", "secret": true})),
    )
    .await;
    set_policy(
        &gh,
        "/mgmt/apis/secure/policy",
        &format!(
            r#"<policies>
            <inbound>
                <base />
                <validate-jwt header-name="Authorization" require-scheme="Bearer" output-token-variable-name="jwt">
                    <openid-config url="{}" />
                    <audiences><audience>api://gatehouse</audience></audiences>
                    <required-claims><claim name="roles" match="any"><value>reader</value><value>admin</value></claim></required-claims>
                </validate-jwt>
                <set-header name="X-User" exists-action="override"><value>@(((Jwt)context.Variables["jwt"]).Subject)</value></set-header>
                <authentication-basic username="gateway" password="{{{{backend-password}}}}" />
            </inbound>
            <on-error>
                <set-header name="X-Error" exists-action="override"><value>@(context.LastError.Source + "/" + context.LastError.Reason)</value></set-header>
            </on-error>
        </policies>"#,
            idp.config_url()
        ),
    )
    .await;

    // No token: Azure's answer, on-error ran, the backend never saw it.
    let r = until(|| gh.http.get(gh.gateway("/secure/orders")), 401).await;
    assert_eq!(r.headers()["x-error"], "validate-jwt/TokenNotPresent");
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"statusCode": 401, "message": "JWT not present."})
    );
    // (Calls made before the policy arrived went through.)
    let base = backend.count();

    let good = json!({"sub": "alice", "iss": "https://idp.test/", "aud": "api://gatehouse", "exp": now() + 600, "roles": ["reader"]});
    let valid = token(&key, "k1", &good);
    let call = |t: &str| {
        gh.http
            .get(gh.gateway("/secure/orders?page=2"))
            .header("Authorization", format!("Bearer {t}"))
            .send()
    };
    for _ in 0..20 {
        let r = call(&valid).await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let seen = backend.last();
    assert_eq!(seen.path, "/orders");
    assert_eq!(seen.headers["x-user"], "alice");
    let basic = base64::engine::general_purpose::STANDARD.encode("gateway:s3cr3t-backend-pw");
    assert_eq!(
        seen.headers["authorization"],
        format!("Basic {basic}"),
        "the caller's token is replaced"
    );
    assert_eq!(backend.count(), base + 20);
    assert_eq!(idp.count("/keys"), 1, "the JWKS is fetched once and cached");
    assert_eq!(idp.count("/.well-known/openid-configuration"), 1);

    // Each refusal, with its reason.
    let cases = [
        (json!({"exp": now() - 60}), "validate-jwt/TokenExpired"),
        (
            json!({"aud": "api://other"}),
            "validate-jwt/TokenAudienceNotAllowed",
        ),
        (
            json!({"iss": "https://evil.test/"}),
            "validate-jwt/TokenIssuerNotAllowed",
        ),
        (
            json!({"roles": ["guest"]}),
            "validate-jwt/TokenClaimValueNotAllowed",
        ),
    ];
    for (change, reason) in cases {
        let mut claims = good.clone();
        for (k, v) in change.as_object().unwrap() {
            claims[k] = v.clone();
        }
        let r = call(&token(&key, "k1", &claims)).await.unwrap();
        assert_eq!(r.status(), 401, "{reason}");
        assert_eq!(r.headers()["x-error"], reason);
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            json!({"statusCode": 401, "message": "Invalid JWT."})
        );
    }
    // Signed by a key the provider does not publish.
    let stranger = EncodingKey::from_rsa_pem(&fixture("rsa2-private.pem")).unwrap();
    let r = call(&token(&stranger, "k1", &good)).await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["x-error"], "validate-jwt/TokenSignatureInvalid");
    // An unknown kid asks the provider again, but at most once per five minutes.
    for _ in 0..3 {
        let r = call(&token(&key, "rotated", &good)).await.unwrap();
        assert_eq!(
            r.headers()["x-error"],
            "validate-jwt/TokenSignatureKeyNotFound"
        );
    }
    assert_eq!(idp.count("/keys"), 1);
    assert_eq!(
        backend.count(),
        base + 20,
        "refused calls never reach the backend"
    );

    // Neither the token nor the backend password reach the log.
    let log = gh.log();
    assert!(
        !log.contains(&valid[valid.len() - 40..]),
        "a token is in the log"
    );
    assert!(!log.contains("s3cr3t-backend-pw") && !log.contains(&basic));

    // What this gateway cannot do is refused when saved, with the position.
    let (status, body) = put_policy(
        &gh,
        "/mgmt/apis/secure/policy",
        "<policies>\n  <inbound>\n    <validate-jwt header-name=\"Authorization\">\n      <decryption-keys><key>AAAA</key></decryption-keys>\n    </validate-jwt>\n  </inbound>\n</policies>",
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let details = body["error"]["details"].as_array().unwrap();
    assert!(
        details
            .iter()
            .any(|d| d["line"] == 4 && d["message"].as_str().unwrap().contains("decryption-keys")),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn find_and_replace_and_format_conversions_shape_both_bodies() {
    let backend = Backend::start().await;
    let gh = Gatehouse::up("pol-auth-transform", &[]).await;
    gh.simple_api("shop", "shop", &backend.url(), true).await;
    set_policy(
        &gh,
        "/mgmt/apis/shop/operations/post/policy",
        r#"<policies>
            <inbound>
                <base />
                <xml-to-json kind="direct" apply="content-type-xml" consider-accept-header="false" />
                <find-and-replace from="notebook" to="laptop" />
            </inbound>
            <outbound>
                <base />
                <find-and-replace from="laptop" to="LAPTOP" />
                <json-to-xml apply="content-type-json" consider-accept-header="false" />
            </outbound>
        </policies>"#,
    )
    .await;
    let send = || {
        gh.http
            .post(gh.gateway("/shop/orders"))
            .header("content-type", "application/xml")
            .body(r#"<order id="7"><item>notebook</item><item>pen</item></order>"#)
    };
    let r = until(send, 200).await;
    // Wait for the policy itself (the API may answer before its operation policy arrives).
    let start = Instant::now();
    let mut r = r;
    while r.headers()["content-type"] != "application/xml" {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the conversion never applied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        r = send().send().await.unwrap();
    }
    let seen = backend.last();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.headers["content-type"], "application/json");
    let got: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(
        got,
        json!({"order": {"@id": "7", "item": ["laptop", "pen"]}})
    );
    // The backend's JSON echo, changed and converted on the way back.
    let text = r.text().await.unwrap();
    assert!(
        text.starts_with("<Document>") && text.ends_with("</Document>"),
        "{text}"
    );
    for part in ["<method>POST</method>", "<path>/orders</path>", "<query />"] {
        assert!(text.contains(part), "{text}");
    }
    assert!(
        text.contains(r#"<body>{"order":{"@id":"7","item":["LAPTOP","pen"]}}</body>"#),
        "{text}"
    );
    // GET has no such policy: the backend's JSON comes back as it is.
    let r = gh
        .http
        .get(gh.gateway("/shop/laptop"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.json::<Value>().await.unwrap()["path"], "/laptop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_response_cache_answers_without_the_backend_across_workers_and_config_changes() {
    let backend = Backend::start().await;
    let gh = Gatehouse::up("pol-auth-cache", &[]).await;
    gh.simple_api("cached", "cached", &backend.url(), true)
        .await;
    set_policy(
        &gh,
        "/mgmt/apis/cached/policy",
        r#"<policies>
            <inbound>
                <base />
                <cache-lookup vary-by-developer="false" vary-by-developer-groups="false" downstream-caching-type="public" caching-type="internal">
                    <vary-by-query-parameter>v</vary-by-query-parameter>
                </cache-lookup>
            </inbound>
            <outbound><base /><cache-store duration="60" /></outbound>
        </policies>"#,
    )
    .await;
    let get = |q: &str| {
        gh.http
            .get(gh.gateway(&format!("/cached/items?{q}")))
            .send()
    };
    // Wait until the policy is in force: a response carrying Cache-Control.
    let start = Instant::now();
    let first = loop {
        let r = get("v=1&noise=0").await.unwrap();
        if r.headers().contains_key("cache-control") {
            break r;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the cache policy never applied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        first.headers()["cache-control"],
        "public, max-age=60, must-revalidate"
    );
    let first_body = first.text().await.unwrap();
    let calls = backend.count();
    // Hits on every worker: the cache is one per gateway process.
    for i in 0..30 {
        let r = get(&format!("v=1&noise={i}")).await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()["cache-control"]
                .to_str()
                .unwrap()
                .starts_with("public, max-age=")
        );
        assert_eq!(
            r.headers()["x-backend"],
            "test",
            "the backend's headers are kept"
        );
        assert_eq!(r.text().await.unwrap(), first_body);
    }
    assert_eq!(backend.count(), calls, "hits never call the backend");
    // A listed parameter varies the key.
    assert_eq!(get("v=2").await.unwrap().status(), 200);
    assert_eq!(backend.count(), calls + 1);

    // A configuration change (another API) keeps the cache.
    gh.simple_api("other", "other", &backend.url(), true).await;
    until(|| gh.http.get(gh.gateway("/other/x")), 200).await;
    let before = backend.count();
    let r = get("v=1").await.unwrap();
    assert_eq!(r.text().await.unwrap(), first_body);
    assert_eq!(backend.count(), before);

    // Values: stored by one request, read by later ones, removed.
    gh.ok(
        "PUT",
        "/mgmt/apis/other/operations/delete",
        Some(json!({"method": "DELETE", "urlTemplate": "/{*rest}"})),
    )
    .await;
    set_policy(
        &gh,
        "/mgmt/apis/other/policy",
        r#"<policies><inbound><base />
            <choose>
                <when condition="@(context.Request.Method == &quot;POST&quot;)">
                    <cache-store-value key="@(&quot;note-&quot; + context.Request.MatchedParameters[&quot;rest&quot;])" value="@(context.Request.Headers.GetValueOrDefault(&quot;X-Note&quot;, &quot;&quot;))" duration="60" />
                    <return-response><set-status code="204" reason="No Content" /></return-response>
                </when>
                <when condition="@(context.Request.Method == &quot;DELETE&quot;)">
                    <cache-remove-value key="@(&quot;note-&quot; + context.Request.MatchedParameters[&quot;rest&quot;])" />
                    <return-response><set-status code="204" reason="No Content" /></return-response>
                </when>
                <otherwise>
                    <cache-lookup-value key="@(&quot;note-&quot; + context.Request.MatchedParameters[&quot;rest&quot;])" variable-name="note" default-value="(none)" />
                    <return-response>
                        <set-status code="200" reason="OK" />
                        <set-body>@((string)context.Variables["note"])</set-body>
                    </return-response>
                </otherwise>
            </choose>
        </inbound></policies>"#,
    )
    .await;
    let read = || gh.http.get(gh.gateway("/other/n1"));
    let r = until(
        || {
            gh.http
                .post(gh.gateway("/other/n1"))
                .header("X-Note", "hello from a worker")
        },
        204,
    )
    .await;
    drop(r);
    for _ in 0..10 {
        assert_eq!(
            read().send().await.unwrap().text().await.unwrap(),
            "hello from a worker"
        );
    }
    assert_eq!(
        gh.http
            .get(gh.gateway("/other/n2"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "(none)"
    );
    let r = gh
        .http
        .delete(gh.gateway("/other/n1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(read().send().await.unwrap().text().await.unwrap(), "(none)");
}
