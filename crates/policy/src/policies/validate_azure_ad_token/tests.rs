//! `validate-azure-ad-token` against tokens signed here with the fixture keys, the tenant's
//! OpenID configuration served by the mock gateway.

use std::sync::Arc;

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value as J, json};

use super::super::testkit::*;
use super::super::validate_jwt::OpenIdKeys;
use crate::exchange::Exchange;
use crate::run::Pipeline;

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "11111111-2222-3333-4444-555555555555";
const BACKEND: &str = "99999999-8888-7777-6666-555555555555";

fn key() -> EncodingKey {
    let pem = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jwt/rsa-private.pem"),
    )
    .unwrap();
    EncodingKey::from_rsa_pem(&pem).unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn sign(claims: &J) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("entra-1".into());
    jsonwebtoken::encode(&h, claims, &key()).unwrap()
}

/// The tenant's configuration as the mock gateway serves it, under `authority`.
fn io(authority: &str, tenant_path: &str, issuer: &str) -> MockIo {
    let mut jwk = Jwk::from_encoding_key(&key(), Algorithm::RS256).unwrap();
    jwk.common.key_id = Some("entra-1".into());
    let jwks = serde_json::to_vec(&json!({ "keys": [jwk] })).unwrap();
    let keys = Arc::new(OpenIdKeys::from_jwks(Some(issuer.to_owned()), &jwks).unwrap());
    let mut io = MockIo::default();
    io.openid.insert(
        format!("{authority}/{tenant_path}/v2.0/.well-known/openid-configuration"),
        keys,
    );
    io
}

fn tenant_io() -> MockIo {
    io(
        "https://login.microsoftonline.com",
        TENANT,
        &format!("https://login.microsoftonline.com/{TENANT}/v2.0"),
    )
}

fn v2_claims() -> J {
    json!({
        "iss": format!("https://login.microsoftonline.com/{TENANT}/v2.0"),
        "tid": TENANT,
        "aud": BACKEND,
        "azp": CLIENT,
        "exp": now() + 600,
        "roles": ["Orders.Read"],
        "name": "Alice"
    })
}

fn policy(attrs: &str, children: &str) -> Pipeline {
    pipeline(&format!(
        r#"<policies><inbound>
            <validate-azure-ad-token tenant-id="{TENANT}" {attrs}>{children}</validate-azure-ad-token>
        </inbound><backend><forward-request/></backend>
        <on-error><set-header name="X-Reason" exists-action="override"><value>@(context.LastError.Source + "/" + context.LastError.Reason)</value></set-header></on-error></policies>"#
    ))
}

fn call(p: &Pipeline, token: Option<&str>, mut io: MockIo) -> (Exchange, MockIo) {
    let headers: Vec<(&str, String)> = token
        .map(|t| vec![("Authorization", format!("Bearer {t}"))])
        .unwrap_or_default();
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut ex = exchange("GET", "/", &headers);
    block_on(p.run(&mut ex, &mut io));
    (ex, io)
}

fn refused(r: &(Exchange, MockIo)) -> (u16, String, J) {
    assert!(r.1.forwarded.is_none(), "the backend must not be called");
    let resp = r.0.response.as_ref().unwrap();
    (
        resp.status.as_u16(),
        resp.headers["x-reason"].to_str().unwrap().to_owned(),
        serde_json::from_slice(resp.body.as_ref().unwrap()).unwrap(),
    )
}

#[test]
fn a_token_of_the_tenant_for_an_allowed_client_passes() {
    let p = policy(
        r#"output-token-variable-name="jwt""#,
        &format!(
            "<client-application-ids><application-id>{CLIENT}</application-id></client-application-ids>
             <backend-application-ids><application-id>{BACKEND}</application-id></backend-application-ids>"
        ),
    );
    let r = call(&p, Some(&sign(&v2_claims())), tenant_io());
    assert!(r.1.forwarded.is_some(), "refused: {:?}", r.0.last_error);
    assert!(r.0.variables.contains_key("jwt"));
    // The keys came from the tenant's v2.0 configuration.
    assert_eq!(
        r.1.openid_calls[0].0,
        format!("https://login.microsoftonline.com/{TENANT}/v2.0/.well-known/openid-configuration")
    );

    // A v1.0 token of the same tenant: `appid`, the sts.windows.net issuer, `api://` audience.
    let mut v1 = v2_claims();
    v1["iss"] = json!(format!("https://sts.windows.net/{TENANT}/"));
    v1["aud"] = json!(format!("api://{BACKEND}"));
    v1.as_object_mut().unwrap().remove("azp");
    v1["appid"] = json!(CLIENT);
    let r = call(&p, Some(&sign(&v1)), tenant_io());
    assert!(r.1.forwarded.is_some(), "refused: {:?}", r.0.last_error);
}

#[test]
fn each_entra_check_refuses_with_its_reason() {
    let p = policy(
        "",
        &format!(
            r#"<client-application-ids><application-id>{CLIENT}</application-id></client-application-ids>
               <audiences><audience>{BACKEND}</audience></audiences>
               <required-claims><claim name="roles" match="any"><value>Orders.Read</value></claim></required-claims>"#
        ),
    );
    let r = call(&p, None, tenant_io());
    assert_eq!(
        refused(&r),
        (
            401,
            "validate-azure-ad-token/TokenNotPresent".into(),
            json!({"statusCode": 401, "message": "JWT not present."})
        )
    );
    let cases = [
        (json!({"azp": "someone-else"}), "TokenClaimValueNotAllowed"),
        (
            json!({"iss": "https://login.microsoftonline.com/another-tenant/v2.0"}),
            "TokenIssuerNotAllowed",
        ),
        (
            json!({"iss": "https://sts.windows.net/another-tenant/"}),
            "TokenIssuerNotAllowed",
        ),
        (
            json!({"aud": "api://not-this-one"}),
            "TokenAudienceNotAllowed",
        ),
        (json!({"exp": now() - 10}), "TokenExpired"),
        (
            json!({"roles": ["Orders.Write"]}),
            "TokenClaimValueNotAllowed",
        ),
    ];
    for (change, reason) in cases {
        let mut claims = v2_claims();
        for (k, v) in change.as_object().unwrap() {
            claims[k] = v.clone();
        }
        let (status, got, body) = refused(&call(&p, Some(&sign(&claims)), tenant_io()));
        assert_eq!(status, 401, "{change}");
        assert_eq!(got, format!("validate-azure-ad-token/{reason}"), "{change}");
        assert_eq!(body, json!({"statusCode": 401, "message": "Invalid JWT."}));
    }
    // No client application claim at all.
    let mut claims = v2_claims();
    claims.as_object_mut().unwrap().remove("azp");
    let (_, got, _) = refused(&call(&p, Some(&sign(&claims)), tenant_io()));
    assert_eq!(got, "validate-azure-ad-token/TokenClaimNotFound");
    // Unsigned.
    let unsigned = {
        let t = sign(&v2_claims());
        let (head, _) = t.rsplit_once('.').unwrap();
        format!("{head}.")
    };
    let (_, got, _) = refused(&call(&p, Some(&unsigned), tenant_io()));
    assert_eq!(got, "validate-azure-ad-token/TokenSignatureInvalid");
}

#[test]
fn status_message_header_and_authority_are_the_policys() {
    let p = pipeline(
        r#"<policies><inbound>
            <validate-azure-ad-token tenant-id="https://contoso.onmicrosoft.com/" header-name="X-Token"
                authentication-endpoint="https://login.microsoftonline.us/" failed-validation-httpcode="403"
                failed-validation-error-message="Go away." />
        </inbound><backend><forward-request/></backend></policies>"#,
    );
    let mk = || {
        io(
            "https://login.microsoftonline.us",
            "contoso.onmicrosoft.com",
            &format!("https://login.microsoftonline.us/{TENANT}/v2.0"),
        )
    };
    let mut claims = v2_claims();
    claims["iss"] = json!(format!("https://login.microsoftonline.us/{TENANT}/v2.0"));
    let mut ex = exchange("GET", "/", &[("X-Token", &sign(&claims))]);
    let mut io = mk();
    block_on(p.run(&mut ex, &mut io));
    assert!(io.forwarded.is_some(), "refused: {:?}", ex.last_error);

    let mut ex = exchange("GET", "/", &[]);
    let mut io = mk();
    block_on(p.run(&mut ex, &mut io));
    let r = ex.response.unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(
        serde_json::from_slice::<J>(r.body.as_ref().unwrap()).unwrap(),
        json!({"statusCode": 403, "message": "Go away."})
    );
}

#[test]
fn a_multi_tenant_configuration_accepts_the_tokens_own_tenant() {
    let p = pipeline(
        r#"<policies><inbound><validate-azure-ad-token tenant-id="organizations" /></inbound>
           <backend><forward-request/></backend></policies>"#,
    );
    let io = || {
        io(
            "https://login.microsoftonline.com",
            "organizations",
            "https://login.microsoftonline.com/{tenantid}/v2.0",
        )
    };
    let r = call(&p, Some(&sign(&v2_claims())), io());
    assert!(r.1.forwarded.is_some(), "refused: {:?}", r.0.last_error);
    // The issuer must still be the token's own tenant's.
    let mut claims = v2_claims();
    claims["tid"] = json!("a-different-tenant");
    let r = call(&p, Some(&sign(&claims)), io());
    assert!(r.1.forwarded.is_none());
}

#[test]
fn is_checked_when_saved() {
    let first = |inner: &str| errors_inbound(inner).first().cloned().unwrap_or_default();
    assert!(first("<validate-azure-ad-token />").contains("needs the attribute 'tenant-id'"));
    assert!(
        first(r#"<validate-azure-ad-token tenant-id="a/b" />"#)
            .contains("'tenant-id' must be a tenant id")
    );
    assert!(
        first(r#"<validate-azure-ad-token tenant-id="t" header-name="A" token-value="@("x")" />"#)
            .contains("not several")
    );
    assert!(
        first(
            r#"<validate-azure-ad-token tenant-id="t" authentication-endpoint="login.example" />"#
        )
        .contains("'authentication-endpoint' must be an http(s) URL")
    );
    assert!(
        first(r#"<validate-azure-ad-token tenant-id="t"><decryption-keys><key>AA</key></decryption-keys></validate-azure-ad-token>"#)
            .contains("decryption-keys")
    );
    assert!(
        first(r#"<validate-azure-ad-token tenant-id="t"><client-application-ids /></validate-azure-ad-token>"#)
            .contains("needs at least one <application-id>")
    );
    assert!(
        first(r#"<validate-azure-ad-token tenant-id="t"><issuers /></validate-azure-ad-token>"#)
            .contains("cannot contain <issuers>")
    );
    assert!(
        errors_in("outbound", r#"<validate-azure-ad-token tenant-id="t" />"#)[0]
            .contains("is not allowed in <outbound>")
    );
}
