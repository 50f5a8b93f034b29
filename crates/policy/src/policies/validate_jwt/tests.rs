//! `validate-jwt` against tokens signed here with the fixture keys (`tests/fixtures/jwt`).

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value as J, json};

use super::super::testkit::*;
use super::OpenIdKeys;
use crate::exchange::Exchange;
use crate::run::Pipeline;

const SECRET: &[u8] = b"a-very-secret-key-of-32-bytes!!!";

fn secret_b64() -> String {
    base64::engine::general_purpose::STANDARD.encode(SECRET)
}

fn fixture(name: &str) -> Vec<u8> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jwt");
    std::fs::read(dir.join(name)).unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims() -> J {
    json!({"sub": "alice", "iss": "https://issuer.example/", "aud": "api://gatehouse", "exp": now() + 600, "group": ["finance", "hr"], "scp": "read write"})
}

fn sign(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &J) -> String {
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&h, claims, key).unwrap()
}

fn hs(claims: &J) -> String {
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET),
        None,
        claims,
    )
}

fn rsa_key(pem: &str) -> EncodingKey {
    EncodingKey::from_rsa_pem(&fixture(pem)).unwrap()
}

fn ec_key(pem: &str) -> EncodingKey {
    EncodingKey::from_ec_pem(&fixture(pem)).unwrap()
}

/// The public JWK of `key`, as a provider publishes it.
fn jwk(key: &EncodingKey, alg: Algorithm, kid: &str) -> J {
    let mut j = Jwk::from_encoding_key(key, alg).unwrap();
    j.common.key_id = Some(kid.to_owned());
    serde_json::to_value(j).unwrap()
}

const OIDC: &str = "https://idp.example/.well-known/openid-configuration";

fn provider(keys: &[J]) -> Arc<OpenIdKeys> {
    let jwks = serde_json::to_vec(&json!({ "keys": keys })).unwrap();
    Arc::new(OpenIdKeys::from_jwks(Some("https://idp.example/".into()), &jwks).unwrap())
}

fn policy(inner: &str) -> Pipeline {
    pipeline(&format!(
        r#"<policies><inbound>{inner}</inbound><backend><forward-request/></backend>
        <on-error><set-header name="X-Reason" exists-action="override"><value>@(context.LastError.Source + "/" + context.LastError.Reason)</value></set-header></on-error></policies>"#
    ))
}

fn hs_policy(extra_attrs: &str, children: &str) -> Pipeline {
    policy(&format!(
        r#"<validate-jwt header-name="Authorization" {extra_attrs}><issuer-signing-keys><key>{}</key></issuer-signing-keys>{children}</validate-jwt>"#,
        secret_b64()
    ))
}

fn call_with(p: &Pipeline, mut ex: Exchange, mut io: MockIo) -> (Exchange, MockIo) {
    block_on(p.run(&mut ex, &mut io));
    (ex, io)
}

fn bearer(p: &Pipeline, token: &str) -> (Exchange, MockIo) {
    call_with(
        p,
        exchange("GET", "/", &[("Authorization", &format!("Bearer {token}"))]),
        MockIo::default(),
    )
}

/// Refused with `status`, `reason` in on-error, and `message` in the body.
fn assert_refused(r: &(Exchange, MockIo), status: u16, reason: &str, message: &str) {
    let (ex, io) = r;
    assert!(io.forwarded.is_none(), "the backend must not be called");
    let resp = ex.response.as_ref().unwrap();
    assert_eq!(resp.status, status);
    assert_eq!(
        resp.headers["x-reason"],
        format!("validate-jwt/{reason}"),
        "{:?}",
        ex.last_error
    );
    let body: J = serde_json::from_slice(resp.body.as_ref().unwrap()).unwrap();
    assert_eq!(body, json!({"statusCode": status, "message": message}));
}

fn assert_passed(r: &(Exchange, MockIo)) {
    assert!(r.1.forwarded.is_some(), "refused: {:?}", r.0.last_error);
}

#[test]
fn a_missing_token_is_refused_with_azures_message_and_runs_on_error() {
    let p = hs_policy("", "");
    let r = call_with(&p, exchange("GET", "/", &[]), MockIo::default());
    assert_refused(&r, 401, "TokenNotPresent", "JWT not present.");
    assert_eq!(r.0.last_error.as_ref().unwrap().section, "inbound");
    let r = call_with(
        &p,
        exchange("GET", "/", &[("Authorization", "  ")]),
        MockIo::default(),
    );
    assert_refused(&r, 401, "TokenNotPresent", "JWT not present.");
}

#[test]
fn a_valid_hs256_token_passes_and_is_available_as_a_jwt_variable() {
    let p = policy(&format!(
        r#"<validate-jwt header-name="Authorization" require-scheme="Bearer" output-token-variable-name="jwt">
            <issuer-signing-keys><key>{}</key></issuer-signing-keys>
        </validate-jwt>
        <set-header name="X-Sub" exists-action="override"><value>@(((Jwt)context.Variables["jwt"]).Subject)</value></set-header>
        <set-header name="X-Groups" exists-action="override"><value>@(((Jwt)context.Variables["jwt"]).Claims.GetValueOrDefault("group", ""))</value></set-header>"#,
        secret_b64()
    ));
    let r = bearer(&p, &hs(&claims()));
    assert_passed(&r);
    let sent = r.1.forwarded.unwrap();
    assert_eq!(all(&sent.headers, "x-sub"), ["alice"]);
    assert_eq!(all(&sent.headers, "x-groups"), ["finance,hr"]);
}

#[test]
fn require_scheme_applies_to_the_authorization_header_only() {
    let p = hs_policy(r#"require-scheme="Bearer""#, "");
    let token = hs(&claims());
    assert_passed(&bearer(&p, &token));
    let r = call_with(
        &p,
        exchange("GET", "/", &[("Authorization", &format!("bearer {token}"))]),
        MockIo::default(),
    );
    assert_passed(&r);
    for value in [token.clone(), format!("Basic {token}")] {
        let r = call_with(
            &p,
            exchange("GET", "/", &[("Authorization", &value)]),
            MockIo::default(),
        );
        assert_refused(&r, 401, "TokenNotPresent", "JWT not present.");
    }
    // A custom header ignores require-scheme, as in Azure.
    let p = policy(&format!(
        r#"<validate-jwt header-name="X-Token" require-scheme="Bearer"><issuer-signing-keys><key>{}</key></issuer-signing-keys></validate-jwt>"#,
        secret_b64()
    ));
    let r = call_with(
        &p,
        exchange("GET", "/", &[("X-Token", &token)]),
        MockIo::default(),
    );
    assert_passed(&r);
}

#[test]
fn query_parameter_and_token_value_sources() {
    let token = hs(&claims());
    let p = policy(&format!(
        r#"<validate-jwt query-parameter-name="access_token"><issuer-signing-keys><key>{}</key></issuer-signing-keys></validate-jwt>"#,
        secret_b64()
    ));
    let r = call_with(
        &p,
        exchange("GET", &format!("/?a=1&access_token={token}"), &[]),
        MockIo::default(),
    );
    assert_passed(&r);
    let r = call_with(&p, exchange("GET", "/?a=1", &[]), MockIo::default());
    assert_refused(&r, 401, "TokenNotPresent", "JWT not present.");

    let p = policy(&format!(
        r#"<validate-jwt token-value="@(context.Request.Headers.GetValueOrDefault(&quot;X-Jwt&quot;, &quot;&quot;))"><issuer-signing-keys><key>{}</key></issuer-signing-keys></validate-jwt>"#,
        secret_b64()
    ));
    let r = call_with(
        &p,
        exchange("GET", "/", &[("X-Jwt", &token)]),
        MockIo::default(),
    );
    assert_passed(&r);
}

#[test]
fn custom_status_and_message() {
    let p = hs_policy(
        r#"failed-validation-httpcode="403" failed-validation-error-message="Unauthorized. Access token is missing or invalid.""#,
        "",
    );
    let r = call_with(&p, exchange("GET", "/", &[]), MockIo::default());
    assert_refused(
        &r,
        403,
        "TokenNotPresent",
        "Unauthorized. Access token is missing or invalid.",
    );
}

#[test]
fn without_on_error_the_client_gets_the_refusal() {
    let p = pipeline(&format!(
        r#"<policies><inbound><validate-jwt header-name="Authorization"><issuer-signing-keys><key>{}</key></issuer-signing-keys></validate-jwt></inbound><backend><forward-request/></backend></policies>"#,
        secret_b64()
    ));
    let mut ex = exchange("GET", "/", &[("Authorization", "Bearer not.a.token")]);
    let io = run(&p, &mut ex);
    assert!(io.forwarded.is_none());
    let r = ex.response.unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.headers["content-type"], "application/json; charset=utf-8");
    assert_eq!(
        r.body.unwrap(),
        r#"{"message":"Invalid JWT.","statusCode":401}"#
    );
    assert_eq!(ex.last_error.unwrap().reason, "JwtInvalid");
}

#[test]
fn signatures_are_checked_and_algorithms_cannot_be_confused() {
    let p = hs_policy("", "");
    let good = hs(&claims());
    // Another secret, a changed payload, a stripped signature.
    let other = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"another-secret-another-secret!!!"),
        None,
        &claims(),
    );
    let r = bearer(&p, &other);
    assert_refused(&r, 401, "TokenSignatureInvalid", "Invalid JWT.");
    let parts: Vec<&str> = good.split('.').collect();
    let forged_payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&json!({"sub": "mallory", "exp": now() + 600})).unwrap());
    let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    assert_refused(
        &bearer(&p, &forged),
        401,
        "TokenSignatureInvalid",
        "Invalid JWT.",
    );
    let unsigned = format!("{}.{}.", parts[0], parts[1]);
    assert_refused(
        &bearer(&p, &unsigned),
        401,
        "TokenSignatureInvalid",
        "Invalid JWT.",
    );
    // An RS256 token cannot be checked with an HMAC key: no key fits.
    let rs = sign(
        Algorithm::RS256,
        &rsa_key("rsa-private.pem"),
        None,
        &claims(),
    );
    assert_refused(
        &bearer(&p, &rs),
        401,
        "TokenSignatureKeyNotFound",
        "Invalid JWT.",
    );
    // The classic confusion: HS256 "signed" with the RSA public key as the secret, against a
    // policy that holds that public key.
    let public_pem = String::from_utf8(fixture("rsa-public.pem")).unwrap();
    let p = policy(&format!(
        "<validate-jwt header-name=\"Authorization\"><issuer-signing-keys><key>{public_pem}</key></issuer-signing-keys></validate-jwt>"
    ));
    let confused = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(public_pem.as_bytes()),
        None,
        &claims(),
    );
    assert_refused(
        &bearer(&p, &confused),
        401,
        "TokenSignatureKeyNotFound",
        "Invalid JWT.",
    );
    assert_passed(&bearer(&p, &rs));
}

#[test]
fn unsigned_tokens_pass_only_when_signatures_are_not_required() {
    let header =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&claims()).unwrap());
    let unsigned = format!("{header}.{payload}.");
    let p = policy(r#"<validate-jwt header-name="Authorization" require-signed-tokens="false" />"#);
    assert_passed(&bearer(&p, &unsigned));
    // A signed token still has its signature checked... and with no keys, none fits.
    assert_refused(
        &bearer(&p, &hs(&claims())),
        401,
        "TokenSignatureKeyNotFound",
        "Invalid JWT.",
    );
}

#[test]
fn lifetime_with_clock_skew() {
    let p = hs_policy("", "");
    let mut c = claims();
    c["exp"] = json!(now() - 30);
    assert_refused(&bearer(&p, &hs(&c)), 401, "TokenExpired", "Invalid JWT.");
    let skewed = hs_policy(r#"clock-skew="60""#, "");
    assert_passed(&bearer(&skewed, &hs(&c)));
    let mut c = claims();
    c["nbf"] = json!(now() + 30);
    assert_refused(&bearer(&p, &hs(&c)), 401, "JwtInvalid", "Invalid JWT.");
    assert_passed(&bearer(&skewed, &hs(&c)));
    let mut c = claims();
    c.as_object_mut().unwrap().remove("exp");
    assert_refused(&bearer(&p, &hs(&c)), 401, "JwtInvalid", "Invalid JWT.");
    assert!(
        bearer(&p, &hs(&c))
            .0
            .last_error
            .unwrap()
            .message
            .contains("missing an expiration time")
    );
    let lenient = hs_policy(r#"require-expiration-time="false""#, "");
    assert_passed(&bearer(&lenient, &hs(&c)));
}

#[test]
fn audiences_and_issuers() {
    let p = hs_policy(
        "",
        r#"<audiences><audience>api://other</audience><audience>@("api://" + "gatehouse")</audience></audiences>
           <issuers><issuer>https://issuer.example/</issuer></issuers>"#,
    );
    assert_passed(&bearer(&p, &hs(&claims())));
    let mut c = claims();
    c["aud"] = json!(["x", "api://gatehouse"]);
    assert_passed(&bearer(&p, &hs(&c)));
    c["aud"] = json!("api://nope");
    assert_refused(
        &bearer(&p, &hs(&c)),
        401,
        "TokenAudienceNotAllowed",
        "Invalid JWT.",
    );
    c.as_object_mut().unwrap().remove("aud");
    assert_refused(
        &bearer(&p, &hs(&c)),
        401,
        "TokenAudienceNotAllowed",
        "Invalid JWT.",
    );
    let mut c = claims();
    c["iss"] = json!("https://evil.example/");
    assert_refused(
        &bearer(&p, &hs(&c)),
        401,
        "TokenIssuerNotAllowed",
        "Invalid JWT.",
    );
}

#[test]
fn required_claims_all_any_and_separator() {
    let p = hs_policy(
        "",
        r#"<required-claims>
            <claim name="group" match="any"><value>logistics</value><value>finance</value></claim>
            <claim name="scp" match="all" separator=" "><value>read</value><value>write</value></claim>
            <claim name="sub" />
        </required-claims>"#,
    );
    assert_passed(&bearer(&p, &hs(&claims())));
    let mut c = claims();
    c["scp"] = json!("read");
    let r = bearer(&p, &hs(&c));
    assert_refused(&r, 401, "TokenClaimValueNotAllowed", "Invalid JWT.");
    assert_eq!(
        r.0.last_error.unwrap().message,
        "Claim scp value of read is not allowed. Access denied."
    );
    let mut c = claims();
    c["group"] = json!(["it"]);
    assert_refused(
        &bearer(&p, &hs(&c)),
        401,
        "TokenClaimValueNotAllowed",
        "Invalid JWT.",
    );
    let mut c = claims();
    let o = c.as_object_mut().unwrap();
    o.remove("group");
    o.remove("sub");
    let r = bearer(&p, &hs(&c));
    assert_refused(&r, 401, "TokenClaimNotFound", "Invalid JWT.");
    assert_eq!(
        r.0.last_error.unwrap().message,
        "JWT token is missing the following claims: group, sub. Access denied."
    );
}

#[test]
fn rsa_pss_and_ec_keys_given_in_the_policy() {
    let rsa = rsa_key("rsa-private.pem");
    let j = jwk(&rsa, Algorithm::RS256, "r1");
    let p = policy(&format!(
        r#"<validate-jwt header-name="Authorization"><issuer-signing-keys><key id="r1" n="{}" e="{}" /></issuer-signing-keys></validate-jwt>"#,
        j["n"].as_str().unwrap(),
        j["e"].as_str().unwrap()
    ));
    for alg in [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
    ] {
        assert_passed(&bearer(&p, &sign(alg, &rsa, Some("r1"), &claims())));
        assert_passed(&bearer(&p, &sign(alg, &rsa, None, &claims())));
    }
    // A kid the policy does not have.
    assert_refused(
        &bearer(&p, &sign(Algorithm::RS256, &rsa, Some("r2"), &claims())),
        401,
        "TokenSignatureKeyNotFound",
        "Invalid JWT.",
    );
    // Another RSA key's signature.
    let other = rsa_key("rsa2-private.pem");
    assert_refused(
        &bearer(&p, &sign(Algorithm::RS256, &other, None, &claims())),
        401,
        "TokenSignatureInvalid",
        "Invalid JWT.",
    );

    let ec_pem = String::from_utf8(fixture("ec256-public.pem")).unwrap();
    let p = policy(&format!(
        "<validate-jwt header-name=\"Authorization\"><issuer-signing-keys><key>{ec_pem}</key></issuer-signing-keys></validate-jwt>"
    ));
    let ec = ec_key("ec256-private.pem");
    assert_passed(&bearer(&p, &sign(Algorithm::ES256, &ec, None, &claims())));
    // ES384 needs a P-384 key.
    let ec384 = ec_key("ec384-private.pem");
    assert_refused(
        &bearer(&p, &sign(Algorithm::ES384, &ec384, None, &claims())),
        401,
        "TokenSignatureKeyNotFound",
        "Invalid JWT.",
    );
}

fn openid_policy(children: &str) -> Pipeline {
    policy(&format!(
        r#"<validate-jwt header-name="Authorization"><openid-config url="{OIDC}" />{children}</validate-jwt>"#
    ))
}

fn oidc_io(keys: &[J]) -> MockIo {
    MockIo {
        openid: HashMap::from([(OIDC.to_owned(), provider(keys))]),
        ..MockIo::default()
    }
}

fn with_bearer(token: &str) -> Exchange {
    exchange("GET", "/", &[("Authorization", &format!("Bearer {token}"))])
}

#[test]
fn openid_keys_and_issuer() {
    let rsa = rsa_key("rsa-private.pem");
    let ec = ec_key("ec384-private.pem");
    let keys = [
        jwk(&rsa, Algorithm::RS256, "r1"),
        jwk(&ec, Algorithm::ES384, "e1"),
    ];
    let p = openid_policy("");
    let mut c = claims();
    c["iss"] = json!("https://idp.example/");
    let r = call_with(
        &p,
        with_bearer(&sign(Algorithm::RS256, &rsa, Some("r1"), &c)),
        oidc_io(&keys),
    );
    assert_passed(&r);
    assert_eq!(r.1.openid_calls[0], (OIDC.to_owned(), false));
    let r = call_with(
        &p,
        with_bearer(&sign(Algorithm::ES384, &ec, Some("e1"), &c)),
        oidc_io(&keys),
    );
    assert_passed(&r);
    // The provider's issuer is the one accepted when the policy names none.
    let r = call_with(
        &p,
        with_bearer(&sign(Algorithm::RS256, &rsa, Some("r1"), &claims())),
        oidc_io(&keys),
    );
    assert_refused(&r, 401, "TokenIssuerNotAllowed", "Invalid JWT.");
    // The JWK says RS256: a PS256 signature by the same key does not fit it.
    let r = call_with(
        &p,
        with_bearer(&sign(Algorithm::PS256, &rsa, Some("r1"), &c)),
        oidc_io(&keys),
    );
    assert_refused(&r, 401, "TokenSignatureKeyNotFound", "Invalid JWT.");
}

#[test]
fn an_unknown_kid_asks_the_gateway_for_fresh_keys() {
    let rsa = rsa_key("rsa-private.pem");
    let p = openid_policy("");
    let mut c = claims();
    c["iss"] = json!("https://idp.example/");
    let r = call_with(
        &p,
        with_bearer(&sign(Algorithm::RS256, &rsa, Some("rotated"), &c)),
        oidc_io(&[jwk(&rsa, Algorithm::RS256, "r1")]),
    );
    assert_refused(&r, 401, "TokenSignatureKeyNotFound", "Invalid JWT.");
    assert!(
        r.1.openid_calls.contains(&(OIDC.to_owned(), true)),
        "{:?}",
        r.1.openid_calls
    );
    // The provider cannot be reached: no keys, refused.
    let r = call_with(
        &p,
        with_bearer(&sign(Algorithm::RS256, &rsa, Some("r1"), &c)),
        MockIo::default(),
    );
    assert_refused(&r, 401, "TokenSignatureKeyNotFound", "Invalid JWT.");
}

#[test]
fn a_verified_token_is_not_verified_again_until_it_expires() {
    let rsa = rsa_key("rsa-private.pem");
    let p = openid_policy("");
    let mut c = claims();
    c["iss"] = json!("https://idp.example/");
    let token = sign(Algorithm::RS256, &rsa, Some("r1"), &c);
    let r = call_with(
        &p,
        with_bearer(&token),
        oidc_io(&[jwk(&rsa, Algorithm::RS256, "r1")]),
    );
    assert_passed(&r);
    // The provider now has no keys at all: the remembered verification still holds, while the
    // issuer (from the provider) and lifetime are still checked on each request.
    let r = call_with(&p, with_bearer(&token), oidc_io(&[]));
    assert_passed(&r);
    // Another instance of the same policy has its own memory.
    let other = openid_policy("");
    let r = call_with(&other, with_bearer(&token), oidc_io(&[]));
    assert_refused(&r, 401, "TokenSignatureKeyNotFound", "Invalid JWT.");
    // A token that differs in its signature only is a different token.
    let tampered = format!("{}AA", &token[..token.len() - 2]);
    let r = call_with(
        &p,
        with_bearer(&tampered),
        oidc_io(&[jwk(&rsa, Algorithm::RS256, "r1")]),
    );
    assert_refused(&r, 401, "TokenSignatureInvalid", "Invalid JWT.");
    // An expired token is never remembered, and is refused.
    let mut old = c.clone();
    old["exp"] = json!(now() - 5);
    let expired = sign(Algorithm::RS256, &rsa, Some("r1"), &old);
    let r = call_with(
        &p,
        with_bearer(&expired),
        oidc_io(&[jwk(&rsa, Algorithm::RS256, "r1")]),
    );
    assert_refused(&r, 401, "TokenExpired", "Invalid JWT.");
    let r = call_with(&p, with_bearer(&expired), oidc_io(&[]));
    assert_refused(&r, 401, "TokenSignatureKeyNotFound", "Invalid JWT.");
}

#[test]
fn nothing_secret_in_messages() {
    let p = hs_policy("", "");
    let mut c = claims();
    c["exp"] = json!(now() - 30);
    let token = hs(&c);
    let (ex, _) = bearer(&p, &token);
    let e = ex.last_error.unwrap();
    assert!(!e.message.contains(&token) && !e.message.contains(&token[..20]));
    let errors = errors_inbound(
        r#"<validate-jwt header-name="Authorization"><issuer-signing-keys><key>c2VjcmV0!!!not-base64</key></issuer-signing-keys></validate-jwt>"#,
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("invalid signing key: the key is not base64"),
        "{errors:?}"
    );
    assert!(!errors[0].contains("c2VjcmV0"));
    assert!(!format!("{p:?}").contains(&secret_b64()));
}

#[test]
fn configuration_errors_are_refused_when_saved() {
    let key = format!(
        "<issuer-signing-keys><key>{}</key></issuer-signing-keys>",
        secret_b64()
    );
    let cases = [
        (format!("<validate-jwt>{key}</validate-jwt>"), "needs 'header-name', 'query-parameter-name' or 'token-value'"),
        (format!(r#"<validate-jwt header-name="A" query-parameter-name="b">{key}</validate-jwt>"#), "not several"),
        (r#"<validate-jwt header-name="A" />"#.to_owned(), "no keys to check them with"),
        (format!(r#"<validate-jwt header-name="A">{key}<decryption-keys><key>AAAA</key></decryption-keys></validate-jwt>"#), "<decryption-keys> (encrypted tokens) is not supported"),
        (r#"<validate-jwt header-name="A"><issuer-signing-keys><key certificate-id="c" /></issuer-signing-keys></validate-jwt>"#.to_owned(), "certificate-id is not supported"),
        (r#"<validate-jwt header-name="A"><issuer-signing-keys><key n="AQAB" /></issuer-signing-keys></validate-jwt>"#.to_owned(), "needs both 'n' and 'e'"),
        (r#"<validate-jwt header-name="A"><issuer-signing-keys><key n="AQAB" e="AQAB" /></issuer-signing-keys></validate-jwt>"#.to_owned(), "shorter than 2048 bits"),
        (format!(r#"<validate-jwt header-name="A" failed-validation-httpcode="99">{key}</validate-jwt>"#), "from 100 to 599"),
        (format!(r#"<validate-jwt header-name="A" clock-skew="soon">{key}</validate-jwt>"#), "whole number of seconds"),
        (format!(r#"<validate-jwt header-name="A" require-expiration-time="maybe">{key}</validate-jwt>"#), "must be true or false"),
        (format!(r#"<validate-jwt header-name="A">{key}<required-claims><claim name="x" match="some" /></required-claims></validate-jwt>"#), "'match' must be one of all, any"),
        (format!(r#"<validate-jwt header-name="A">{key}<audiences /></validate-jwt>"#), "needs at least one <audience>"),
        (format!(r#"<validate-jwt header-name="A">{key}<audiences><aud>x</aud></audiences></validate-jwt>"#), "cannot contain <aud>"),
        (format!(r#"<validate-jwt header-name="A" output="x">{key}</validate-jwt>"#), "has no attribute 'output'"),
        (r#"<validate-jwt header-name="A"><openid-config url="ftp://x" /></validate-jwt>"#.to_owned(), "must be an http(s) URL"),
        (format!(r#"<validate-jwt header-name="A">{key}{key}</validate-jwt>"#), "appears twice"),
    ];
    for (xml, needle) in cases {
        let errors = errors_inbound(&xml);
        assert!(
            errors.iter().any(|e| e.contains(needle)),
            "{xml}: {errors:?}"
        );
    }
    let e = errors_in(
        "outbound",
        &format!(r#"<validate-jwt header-name="A">{key}</validate-jwt>"#),
    );
    assert!(e[0].contains("not allowed in <outbound>"), "{e:?}");
    // Azure's documented examples compile.
    for xml in [
        format!(r#"<validate-jwt header-name="Authorization" require-scheme="Bearer"><issuer-signing-keys><key>{}</key></issuer-signing-keys><audiences><audience>@(context.Request.OriginalUrl.Host)</audience></audiences><issuers><issuer>http://contoso.com/</issuer></issuers></validate-jwt>"#, secret_b64()),
        r#"<validate-jwt header-name="Authorization" failed-validation-httpcode="401" failed-validation-error-message="Unauthorized. Access token is missing or invalid."><openid-config url="https://login.microsoftonline.com/contoso.onmicrosoft.com/.well-known/openid-configuration" /><audiences><audience>00001111-aaaa-2222-bbbb-3333cccc4444</audience></audiences><required-claims><claim name="id" match="all"><value>insert claim here</value></claim></required-claims></validate-jwt>"#.to_owned(),
    ] {
        assert_eq!(errors_inbound(&xml), Vec::<String>::new(), "{xml}");
    }
}

#[test]
fn named_values_are_checked_when_known_and_skipped_offline() {
    use crate::compile::{self, Mode, Scope, Severity};
    let xml = r#"<policies><inbound><validate-jwt header-name="Authorization">
        <openid-config url="{{idp-config}}" />
        <issuer-signing-keys><key>{{jwt-signing-key}}</key><key n="{{n}}" e="AQAB" /></issuer-signing-keys>
    </validate-jwt></inbound></policies>"#;
    let (doc, diags) = compile::compile(xml, Scope::Api, &crate::NoNamedValues, Mode::Offline);
    assert!(doc.is_some(), "{diags:?}");
    assert!(
        diags.iter().all(|d| d.severity == Severity::Warning),
        "{diags:?}"
    );
    let named: HashMap<String, String> = HashMap::from([
        ("idp-config".to_owned(), OIDC.to_owned()),
        ("jwt-signing-key".to_owned(), "not base64!".to_owned()),
        ("n".to_owned(), "AQAB".to_owned()),
    ]);
    let (doc, diags) = compile::compile(xml, Scope::Api, &named, Mode::Strict);
    assert!(doc.is_none());
    let messages: Vec<String> = diags.iter().map(|d| d.message.clone()).collect();
    assert!(
        messages.iter().any(|m| m.contains("the key is not base64")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("shorter than 2048 bits")),
        "{messages:?}"
    );
    assert!(
        !messages.iter().any(|m| m.contains("not base64!")),
        "the key is never echoed"
    );
}

#[test]
fn an_oversized_token_is_refused_before_it_is_decoded() {
    let p = hs_policy("", "");
    // Correctly signed, so only its size can refuse it.
    let mut big = claims();
    big["pad"] = J::String("x".repeat(super::MAX_TOKEN_BYTES));
    let r = bearer(&p, &hs(&big));
    assert_refused(&r, 401, "JwtInvalid", "Invalid JWT.");
    let message = &r.0.last_error.as_ref().unwrap().message;
    assert!(message.contains("more than the 16384"), "{message}");
    // The configured status and message apply as to any other refusal.
    let p = hs_policy(
        r#"failed-validation-httpcode="403" failed-validation-error-message="Nope""#,
        "",
    );
    assert_refused(&bearer(&p, &hs(&big)), 403, "JwtInvalid", "Nope");
    // A token just under the bound still passes.
    let mut fits = claims();
    fits["pad"] = J::String("x".repeat(super::MAX_TOKEN_BYTES / 2));
    assert_passed(&bearer(&hs_policy("", ""), &hs(&fits)));
}
