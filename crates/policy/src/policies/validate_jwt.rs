//! `<validate-jwt>`: refuses requests without a valid JSON web token.
//!
//! ```xml
//! <validate-jwt header-name="Authorization" | query-parameter-name="…" | token-value="@(…)"
//!     failed-validation-httpcode="401" failed-validation-error-message="…"
//!     require-expiration-time="true" require-scheme="Bearer" require-signed-tokens="true"
//!     clock-skew="0" output-token-variable-name="jwt">
//!   <openid-config url="https://idp/.well-known/openid-configuration" />
//!   <issuer-signing-keys><key id="kid">base64 secret</key><key n="…" e="…"/></issuer-signing-keys>
//!   <audiences><audience>…</audience></audiences>
//!   <issuers><issuer>…</issuer></issuers>
//!   <required-claims><claim name="group" match="any" separator=","><value>…</value></claim></required-claims>
//! </validate-jwt>
//! ```
//!
//! The checks run in the order Azure's token handler runs them: signature (HS256/384/512,
//! RS256/384/512, PS256/384/512, ES256/384), lifetime (`exp`, `nbf`, with the clock skew),
//! audience, issuer, then the required claims. A failure is a policy error, as in Azure: the
//! client's answer (the status code and `{"statusCode": …, "message": …}`, by default
//! `JWT not present.` or `Invalid JWT.`) is set first, then `on-error` runs with
//! `context.LastError` (`Source` = `validate-jwt`, `Reason` = `TokenNotPresent`,
//! `TokenSignatureInvalid`, `TokenSignatureKeyNotFound`, `TokenExpired`,
//! `TokenAudienceNotAllowed`, `TokenIssuerNotAllowed`, `TokenClaimNotFound`,
//! `TokenClaimValueNotAllowed` or `JwtInvalid`). No message ever contains the token or a key.
//! A token longer than [`MAX_TOKEN_BYTES`] is refused (`JwtInvalid`) before it is decoded.
//!
//! Keys given in the policy are parsed when it is compiled. Keys of `<openid-config>` providers
//! come from the gateway through [`Io::openid_keys`], which fetches the discovery document and
//! the JWKS, caches them and refreshes them (hourly, or when a token names a key it lacks, at most
//! every five minutes). A token whose signature checked out is remembered (by its SHA-256, in a
//! bounded cache owned by this policy instance) until it expires, so an RSA verification is paid
//! once per token rather than once per request; lifetime, audience, issuer and claims are still
//! checked on every request.
//!
//! Not supported, refused when the policy is saved: `<decryption-keys>` (encrypted tokens) and
//! `<key certificate-id="…">` (this gateway has no certificate store; give `n` and `e`, a PEM
//! public key, or an `<openid-config>`).

mod keys;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::StatusCode;

pub use keys::{ALGORITHMS, Discovery, OpenIdKeys, SigningKey};

use super::check_header::json_error;
use super::param::{self, Param};
use crate::compile::Cx;
use crate::exchange::Exchange;
use crate::expr::{Json, Value};
use crate::expr::{Jwt, parse_jwt};
use crate::limits::MAX_TOKEN_BYTES;
use crate::run::{Budget, Flow, Io, PolicyError};
use crate::text::PolicyText;
use crate::xml::Element;

/// Verified tokens remembered per policy instance.
const VERIFIED_CAPACITY: u64 = 10_000;
/// The longest a verified signature is remembered, even for a token that lives longer (so a
/// key an identity provider withdraws stops being honoured within this time).
const VERIFIED_AT_MOST: Duration = Duration::from_secs(3600);

pub const NOT_PRESENT: &str = "JWT not present.";
pub const INVALID: &str = "Invalid JWT.";

#[derive(Debug, Clone)]
pub(super) enum TokenSource {
    Header(PolicyText),
    Query(PolicyText),
    Value(PolicyText),
}

#[derive(Debug, Clone)]
pub(super) struct Claim {
    name: String,
    /// `match="all"` (the default): every listed value must be present; `any`: one is enough.
    all: bool,
    separator: Option<String>,
    values: Vec<PolicyText>,
}

/// What one `<validate-jwt>` (or `<validate-azure-ad-token>`) checks.
pub(super) struct Settings {
    /// The element, for errors: `validate-jwt` or `validate-azure-ad-token`.
    pub policy: &'static str,
    pub source: TokenSource,
    pub status: Param<u16>,
    pub message: Option<PolicyText>,
    pub require_expiration: Param<bool>,
    pub require_scheme: Option<PolicyText>,
    pub require_signed: Param<bool>,
    pub clock_skew: Param<u64>,
    pub output: Option<String>,
    pub openid: Vec<String>,
    pub keys: Vec<SigningKey>,
    pub audiences: Vec<PolicyText>,
    pub issuers: Vec<PolicyText>,
    pub claims: Vec<Claim>,
    /// Microsoft Entra ID tokens (`validate-azure-ad-token`): the client applications allowed
    /// (the `appid` or `azp` claim; empty: any), and the tenant's v1.0 issuer accepted with
    /// its v2.0 one.
    pub entra: Option<Vec<PolicyText>>,
}

struct Inner {
    settings: Settings,
    /// SHA-256 of a token whose signature checked out → how long to remember it.
    verified: moka::future::Cache<[u8; 32], Duration>,
}

impl std::ops::Deref for Inner {
    type Target = Settings;

    fn deref(&self) -> &Settings {
        &self.settings
    }
}

/// A compiled `<validate-jwt>`. Clones (the same element composed into several pipelines) share
/// one instance, and so one cache of verified tokens.
#[derive(Clone)]
pub struct ValidateJwt {
    inner: Arc<Inner>,
}

impl fmt::Debug for ValidateJwt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("ValidateJwt")
            .field("policy", &i.policy)
            .field("source", &i.source)
            .field("openid", &i.openid)
            .field("keys", &i.keys)
            .field("audiences", &i.audiences.len())
            .field("issuers", &i.issuers.len())
            .field("claims", &i.claims)
            .finish_non_exhaustive()
    }
}

/// Entries live as long as the token they verified (bounded by [`VERIFIED_AT_MOST`]).
struct UntilExpiry;

impl moka::Expiry<[u8; 32], Duration> for UntilExpiry {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Duration,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(*value)
    }
}

/// Why a token was refused: `context.LastError.Reason` and `.Message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    reason: &'static str,
    message: String,
}

impl Failure {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }

    fn missing() -> Self {
        Self::new("TokenNotPresent", NOT_PRESENT)
    }
}

const ATTRS: [&str; 10] = [
    "header-name",
    "query-parameter-name",
    "token-value",
    "failed-validation-httpcode",
    "failed-validation-error-message",
    "require-expiration-time",
    "require-scheme",
    "require-signed-tokens",
    "clock-skew",
    "output-token-variable-name",
];

const CHILDREN: [&str; 6] = [
    "openid-config",
    "issuer-signing-keys",
    "decryption-keys",
    "audiences",
    "issuers",
    "required-claims",
];

impl ValidateJwt {
    pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Self> {
        cx.allow_attrs(el, &ATTRS);
        cx.allow_children(el, &CHILDREN);
        let header = cx.opt_text(el, "header-name");
        let query = cx.opt_text(el, "query-parameter-name");
        let value = cx.opt_text(el, "token-value");
        let given = [&header, &query, &value]
            .iter()
            .filter(|t| t.is_some())
            .count();
        let source = match (header, query, value) {
            _ if given > 1 => {
                cx.error(
                    el.pos,
                    "<validate-jwt> takes one of 'header-name', 'query-parameter-name' and 'token-value', not several",
                );
                return None;
            }
            (Some(h), _, _) => TokenSource::Header(h),
            (_, Some(q), _) => TokenSource::Query(q),
            (_, _, Some(v)) => TokenSource::Value(v),
            _ => {
                cx.error(
                    el.pos,
                    "<validate-jwt> needs 'header-name', 'query-parameter-name' or 'token-value' to say where the token is",
                );
                return None;
            }
        };
        let status = Param::compile(
            cx,
            el,
            "failed-validation-httpcode",
            "an HTTP status code from 100 to 599",
            param::parse_status,
            401,
        );
        let message = cx.opt_text(el, "failed-validation-error-message");
        let require_expiration = param::bool_param(cx, el, "require-expiration-time", true);
        let require_scheme = cx.opt_text(el, "require-scheme");
        let require_signed = param::bool_param(cx, el, "require-signed-tokens", true);
        let clock_skew = Param::compile(
            cx,
            el,
            "clock-skew",
            "a whole number of seconds",
            param::parse_seconds,
            0,
        );
        let output = cx.literal(el, "output-token-variable-name");
        if output.as_ref().is_some_and(|name| name.trim().is_empty()) {
            let pos = el
                .attr("output-token-variable-name")
                .map_or(el.pos, |a| a.pos);
            cx.error(pos, "'output-token-variable-name' must not be empty");
        }

        let mut openid = Vec::new();
        let mut keys = Vec::new();
        let mut audiences = Vec::new();
        let mut issuers = Vec::new();
        let mut claims = Vec::new();
        let mut key_elements = 0;
        // Offline, keys given by an unknown named value are only known where it is saved.
        let mut deferred_keys = false;
        let mut seen: Vec<&str> = Vec::new();
        for child in el.elements() {
            if child.name != "openid-config" {
                if seen.contains(&child.name.as_str()) {
                    cx.error(
                        child.pos,
                        format!("<{}> appears twice in <validate-jwt>", child.name),
                    );
                }
                seen.push(&child.name);
            }
            match child.name.as_str() {
                "openid-config" => {
                    cx.allow_attrs(child, &["url", "validate-connectivity"]);
                    cx.no_children(child);
                    let _ = cx.bool_attr(child, "validate-connectivity", false);
                    if let Some(url) = cx.req_literal(child, "url") {
                        let url = url.trim().to_owned();
                        if unresolved(&url) {
                            // `gatehouse policy check` without the named value: checked later.
                            deferred_keys = true;
                        } else if url.starts_with("https://") || url.starts_with("http://") {
                            openid.push(url);
                        } else {
                            let pos = child.attr("url").map_or(child.pos, |a| a.pos);
                            cx.error(pos, "the OpenID configuration 'url' must be an http(s) URL");
                        }
                    }
                }
                "issuer-signing-keys" => {
                    cx.allow_children(child, &["key"]);
                    cx.allow_attrs(child, &[]);
                    for key in child.elements() {
                        key_elements += 1;
                        if let Some(k) = signing_key(cx, key) {
                            keys.push(k);
                        }
                    }
                }
                "decryption-keys" => cx.error(
                    child.pos,
                    "<decryption-keys> (encrypted tokens) is not supported by this gateway",
                ),
                "audiences" => audiences = list(cx, child, "audience"),
                "issuers" => issuers = list(cx, child, "issuer"),
                "required-claims" => {
                    cx.allow_attrs(child, &[]);
                    cx.allow_children(child, &["claim"]);
                    for c in child.elements() {
                        if let Some(claim) = claim(cx, c) {
                            claims.push(claim);
                        }
                    }
                }
                _ => {}
            }
        }
        if require_signed.as_fixed() == Some(&true)
            && key_elements == 0
            && openid.is_empty()
            && !deferred_keys
        {
            cx.error(
                el.pos,
                "<validate-jwt> requires signed tokens but has no keys to check them with: add <issuer-signing-keys> or <openid-config>, or set require-signed-tokens=\"false\"",
            );
        }
        Some(Self::new(Settings {
            policy: "validate-jwt",
            source,
            status,
            message,
            require_expiration,
            require_scheme,
            require_signed,
            clock_skew,
            output,
            openid,
            keys,
            audiences,
            issuers,
            claims,
            entra: None,
        }))
    }

    pub(super) fn new(settings: Settings) -> Self {
        Self {
            inner: Arc::new(Inner {
                settings,
                verified: moka::future::Cache::builder()
                    .max_capacity(VERIFIED_CAPACITY)
                    .expire_after(UntilExpiry)
                    .build(),
            }),
        }
    }

    /// The expressions this step evaluates.
    pub fn texts(&self) -> Vec<&PolicyText> {
        let i = &self.inner;
        let mut out: Vec<&PolicyText> = match &i.source {
            TokenSource::Header(t) | TokenSource::Query(t) | TokenSource::Value(t) => vec![t],
        };
        out.extend(i.message.iter());
        out.extend(i.require_scheme.iter());
        out.extend(i.status.text());
        out.extend(i.require_expiration.text());
        out.extend(i.require_signed.text());
        out.extend(i.clock_skew.text());
        out.extend(i.audiences.iter());
        out.extend(i.issuers.iter());
        out.extend(i.claims.iter().flat_map(|c| c.values.iter()));
        out.extend(i.entra.iter().flatten());
        out
    }

    pub async fn run<I: Io>(
        &self,
        ex: &mut Exchange,
        io: &mut I,
        budget: &mut Budget,
    ) -> Result<Flow, PolicyError> {
        match self.check(ex, io, budget).await? {
            Ok(token) => {
                if let Some(name) = &self.inner.output {
                    ex.variables
                        .insert(name.clone(), Value::Jwt(Arc::new(token)));
                }
                Ok(Flow::Continue)
            }
            Err(failure) => self.refuse(ex, budget, failure),
        }
    }

    /// Sets the client's answer and raises the error that sends the request to `on-error`.
    fn refuse(
        &self,
        ex: &mut Exchange,
        budget: &mut Budget,
        failure: Failure,
    ) -> Result<Flow, PolicyError> {
        let code = self.inner.status.get(ex, budget)?;
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::UNAUTHORIZED);
        let message = match &self.inner.message {
            Some(m) => m.eval(ex, budget)?.into_owned(),
            None if failure.reason == "TokenNotPresent" => NOT_PRESENT.to_owned(),
            None => INVALID.to_owned(),
        };
        ex.error_response = Some(json_error(status, &message));
        Err(PolicyError::new(
            self.inner.policy,
            failure.reason,
            failure.message,
            crate::Answer::InvalidJwt,
        ))
    }

    /// The token, or a refusal. `Err` only for failures of the policy itself (an expression).
    async fn check<I: Io>(
        &self,
        ex: &mut Exchange,
        io: &mut I,
        budget: &mut Budget,
    ) -> Result<Result<Jwt, Failure>, PolicyError> {
        let i = &self.inner;
        let Some(token) = self.token(ex, budget)? else {
            return Ok(Err(Failure::missing()));
        };
        // Refused before any decoding: everything below is paid for by whoever sent the token,
        // signed or not.
        if token.len() > MAX_TOKEN_BYTES {
            return Ok(Err(Failure::new(
                "JwtInvalid",
                format!(
                    "The token is {} bytes long, more than the {MAX_TOKEN_BYTES} this gateway reads.",
                    token.len()
                ),
            )));
        }
        let Some(decoded) = parse_jwt(&token) else {
            return Ok(Err(Failure::new(
                "JwtInvalid",
                "The token is not a JSON web token in compact form.",
            )));
        };
        let Some((message, signature)) = token.rsplit_once('.') else {
            return Ok(Err(Failure::missing()));
        };
        let alg = text(decoded.header().get("alg")).unwrap_or_default();
        let unsigned = signature.is_empty() || alg == "none";
        let require_signed = i.require_signed.get(ex, budget)?;
        if unsigned {
            if require_signed {
                return Ok(Err(Failure::new(
                    "TokenSignatureInvalid",
                    "The token has no signature and the policy requires signed tokens. Access denied.",
                )));
            }
        } else {
            let digest = sha256(&token);
            if i.verified.get(&digest).await.is_none() {
                let kid = text(decoded.header().get("kid"));
                if let Err(f) = self
                    .verify(io, &alg, kid.as_deref(), message, signature)
                    .await
                {
                    return Ok(Err(f));
                }
                let remember = seconds_until(claim_seconds(decoded.payload().get("exp")))
                    .unwrap_or(VERIFIED_AT_MOST)
                    .min(VERIFIED_AT_MOST);
                if !remember.is_zero() {
                    i.verified.insert(digest, remember).await;
                }
            }
        }
        if let Err(f) = self.check_lifetime(&decoded, ex, budget)? {
            return Ok(Err(f));
        }
        if let Err(f) = self.check_audience(&decoded, ex, budget)? {
            return Ok(Err(f));
        }
        if let Err(f) = self.check_issuer(&decoded, ex, io, budget).await? {
            return Ok(Err(f));
        }
        if let Err(f) = self.check_claims(&decoded, ex, budget)? {
            return Ok(Err(f));
        }
        if let Err(f) = self.check_client_application(&decoded, ex, budget)? {
            return Ok(Err(f));
        }
        Ok(Ok(decoded))
    }

    /// The token where the policy says it is, without its scheme; `None` when absent.
    fn token(&self, ex: &Exchange, budget: &mut Budget) -> Result<Option<String>, PolicyError> {
        let i = &self.inner;
        let raw = match &i.source {
            TokenSource::Header(name) => {
                let name = name.eval(ex, budget)?;
                let Some(value) = ex
                    .request
                    .headers
                    .get(name.trim())
                    .and_then(|v| v.to_str().ok())
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                else {
                    return Ok(None);
                };
                let split = value
                    .split_once(char::is_whitespace)
                    .map(|(s, t)| (s, t.trim()));
                // As in Azure, a required scheme applies to the Authorization header only.
                let scheme = match &i.require_scheme {
                    Some(s) if name.trim().eq_ignore_ascii_case("authorization") => {
                        Some(s.eval(ex, budget)?.trim().to_owned())
                    }
                    _ => None,
                };
                match (scheme, split) {
                    (Some(want), Some((got, token))) if got.eq_ignore_ascii_case(&want) => {
                        token.to_owned()
                    }
                    (Some(_), _) => return Ok(None),
                    (None, Some((_, token))) => token.to_owned(),
                    (None, None) => value.to_owned(),
                }
            }
            TokenSource::Query(name) => {
                let name = name.eval(ex, budget)?;
                let found = ex.request.query.as_deref().and_then(|q| {
                    q.split('&').find_map(|pair| {
                        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                        (super::set_query_parameter::decode(k) == name.trim())
                            .then(|| super::set_query_parameter::decode(v))
                    })
                });
                match found {
                    Some(v) => v,
                    None => return Ok(None),
                }
            }
            TokenSource::Value(expr) => expr.eval(ex, budget)?.into_owned(),
        };
        let token = raw.trim();
        Ok((!token.is_empty()).then(|| token.to_owned()))
    }

    async fn verify<I: Io>(
        &self,
        io: &mut I,
        alg_name: &str,
        kid: Option<&str>,
        message: &str,
        signature: &str,
    ) -> Result<(), Failure> {
        let Some(alg) = keys::algorithm(alg_name) else {
            return Err(Failure::new(
                "TokenSignatureInvalid",
                format!(
                    "The token's signing algorithm '{}' is not supported. Access denied.",
                    printable(alg_name)
                ),
            ));
        };
        let mut tried = false;
        for key in self.inner.keys.iter().filter(|k| k.fits(alg, kid)) {
            tried = true;
            if key.verify(alg, message, signature) {
                return Ok(());
            }
        }
        for url in &self.inner.openid {
            let mut provider = match io.openid_keys(url, false).await {
                Ok(k) => k,
                Err(e) => {
                    tracing::warn!(policy = self.inner.policy, url = %url, reason = %e.reason, message = %e.message, "the OpenID provider's keys are not available");
                    continue;
                }
            };
            if kid.is_some_and(|k| !provider.has_kid(k)) {
                // A key the cached set lacks: the provider may have rotated its keys.
                provider = io.openid_keys(url, true).await.unwrap_or(provider);
            }
            for key in provider.keys().iter().filter(|k| k.fits(alg, kid)) {
                tried = true;
                if key.verify(alg, message, signature) {
                    return Ok(());
                }
            }
        }
        if tried {
            Err(Failure::new(
                "TokenSignatureInvalid",
                "Signature validation failed. Access denied.",
            ))
        } else {
            Err(Failure::new(
                "TokenSignatureKeyNotFound",
                match kid {
                    Some(k) => format!(
                        "Signature validation failed. No {alg:?} key matches kid '{}'. Access denied.",
                        printable(k)
                    ),
                    None => format!(
                        "Signature validation failed. No {alg:?} key is configured. Access denied."
                    ),
                },
            ))
        }
    }

    fn check_lifetime(
        &self,
        token: &Jwt,
        ex: &Exchange,
        budget: &mut Budget,
    ) -> Result<Result<(), Failure>, PolicyError> {
        let i = &self.inner;
        let skew = i.clock_skew.get(ex, budget)? as f64;
        let now = now_seconds();
        let claims = token.payload();
        match claim_seconds(claims.get("exp")) {
            Some(exp) if exp + skew <= now => {
                return Ok(Err(Failure::new(
                    "TokenExpired",
                    "Lifetime validation failed. The token is expired. Access denied.",
                )));
            }
            Some(_) => {}
            None if claims.get("exp").is_some() => {
                return Ok(Err(Failure::new(
                    "JwtInvalid",
                    "Lifetime validation failed. The token's expiration time is not a number.",
                )));
            }
            None if i.require_expiration.get(ex, budget)? => {
                return Ok(Err(Failure::new(
                    "JwtInvalid",
                    "Lifetime validation failed. The token is missing an expiration time.",
                )));
            }
            None => {}
        }
        if claim_seconds(claims.get("nbf")).is_some_and(|nbf| nbf - skew > now) {
            return Ok(Err(Failure::new(
                "JwtInvalid",
                "Lifetime validation failed. The token is not yet valid.",
            )));
        }
        Ok(Ok(()))
    }

    fn check_audience(
        &self,
        token: &Jwt,
        ex: &Exchange,
        budget: &mut Budget,
    ) -> Result<Result<(), Failure>, PolicyError> {
        if self.inner.audiences.is_empty() {
            return Ok(Ok(()));
        }
        let present = values(token.payload().get("aud"), None);
        for a in &self.inner.audiences {
            let want = a.eval(ex, budget)?;
            if present.iter().any(|p| p == want.trim()) {
                return Ok(Ok(()));
            }
        }
        Ok(Err(Failure::new(
            "TokenAudienceNotAllowed",
            if present.is_empty() {
                "Audience validation failed. The token has no audience. Access denied."
            } else {
                "Audience validation failed. The token's audience is not allowed. Access denied."
            },
        )))
    }

    async fn check_issuer<I: Io>(
        &self,
        token: &Jwt,
        ex: &Exchange,
        io: &mut I,
        budget: &mut Budget,
    ) -> Result<Result<(), Failure>, PolicyError> {
        let i = &self.inner;
        if i.issuers.is_empty() && i.openid.is_empty() {
            return Ok(Ok(()));
        }
        let iss = text(token.payload().get("iss"));
        let mut accepted = Vec::new();
        for t in &i.issuers {
            accepted.push(t.eval(ex, budget)?.trim().to_owned());
        }
        // Each provider's own issuer is accepted too, as Azure takes it from its configuration.
        for url in &i.openid {
            if let Ok(keys) = io.openid_keys(url, false).await {
                accepted.extend(keys.issuer().map(str::to_owned));
            }
        }
        if i.entra.is_some() {
            entra_issuers(&mut accepted, text(token.payload().get("tid")).as_deref());
        }
        if accepted.is_empty() {
            return Ok(Ok(()));
        }
        match iss {
            Some(iss) if accepted.contains(&iss) => Ok(Ok(())),
            Some(_) => Ok(Err(Failure::new(
                "TokenIssuerNotAllowed",
                "Issuer validation failed. The token's issuer is not allowed. Access denied.",
            ))),
            None => Ok(Err(Failure::new(
                "TokenIssuerNotAllowed",
                "Issuer validation failed. The token has no issuer. Access denied.",
            ))),
        }
    }

    fn check_claims(
        &self,
        token: &Jwt,
        ex: &Exchange,
        budget: &mut Budget,
    ) -> Result<Result<(), Failure>, PolicyError> {
        let claims = token.payload();
        let missing: Vec<&str> = self
            .inner
            .claims
            .iter()
            .filter(|c| claims.get(&c.name).is_none())
            .map(|c| c.name.as_str())
            .collect();
        if !missing.is_empty() {
            return Ok(Err(Failure::new(
                "TokenClaimNotFound",
                format!(
                    "JWT token is missing the following claims: {}. Access denied.",
                    missing.join(", ")
                ),
            )));
        }
        for c in &self.inner.claims {
            if c.values.is_empty() {
                continue;
            }
            let present = values(claims.get(&c.name), c.separator.as_deref());
            let mut any = false;
            for v in &c.values {
                let want = v.eval(ex, budget)?;
                let found = present.iter().any(|p| p == want.trim());
                any |= found;
                if c.all && !found {
                    any = false;
                    break;
                }
            }
            if !any {
                return Ok(Err(Failure::new(
                    "TokenClaimValueNotAllowed",
                    format!(
                        "Claim {} value of {} is not allowed. Access denied.",
                        c.name,
                        printable(&present.join(","))
                    ),
                )));
            }
        }
        Ok(Ok(()))
    }
}

impl ValidateJwt {
    /// `validate-azure-ad-token`: the token was issued to one of the client applications listed
    /// (its `appid` claim, in v1.0 tokens, or `azp`, in v2.0 ones).
    fn check_client_application(
        &self,
        token: &Jwt,
        ex: &Exchange,
        budget: &mut Budget,
    ) -> Result<Result<(), Failure>, PolicyError> {
        let Some(apps) = self.inner.entra.as_ref().filter(|a| !a.is_empty()) else {
            return Ok(Ok(()));
        };
        let claims = token.payload();
        let Some(client) = text(claims.get("appid")).or_else(|| text(claims.get("azp"))) else {
            return Ok(Err(Failure::new(
                "TokenClaimNotFound",
                "JWT token is missing the following claims: appid. Access denied.",
            )));
        };
        for app in apps {
            if app.eval(ex, budget)?.trim().eq_ignore_ascii_case(&client) {
                return Ok(Ok(()));
            }
        }
        Ok(Err(Failure::new(
            "TokenClaimValueNotAllowed",
            format!(
                "The token was issued to client application {}, which is not allowed. Access denied.",
                printable(&client)
            ),
        )))
    }
}

/// Microsoft Entra ID's issuers for the v2.0 ones its configuration names
/// (`https://login.microsoftonline.com/{tid}/v2.0`): the same tenant's v1.0 issuer
/// (`https://sts.windows.net/{tid}/`, and the authority's own form), and for the multi-tenant
/// configurations (`{tenantid}` in the issuer) the token's own tenant.
fn entra_issuers(accepted: &mut Vec<String>, token_tenant: Option<&str>) {
    let mut more = Vec::new();
    for issuer in accepted.iter() {
        let issuer = match token_tenant {
            Some(tid) if issuer.contains("{tenantid}") => {
                let own = issuer.replace("{tenantid}", tid);
                more.push(own.clone());
                own
            }
            _ => issuer.clone(),
        };
        let Some(base) = issuer.strip_suffix("/v2.0") else {
            continue;
        };
        let Some((authority, tenant)) = base.rsplit_once('/') else {
            continue;
        };
        if tenant.is_empty() || tenant.contains('{') {
            continue;
        }
        more.push(format!("https://sts.windows.net/{tenant}/"));
        more.push(format!("{authority}/{tenant}/"));
    }
    accepted.extend(more);
}

/// `<audiences>` / `<issuers>`: a list of `<audience>` / `<issuer>` holding text or expressions.
pub(super) fn list(cx: &mut Cx<'_>, el: &Element, item: &str) -> Vec<PolicyText> {
    cx.allow_attrs(el, &[]);
    cx.allow_children(el, &[item]);
    let mut out = Vec::new();
    for e in el.elements() {
        cx.allow_attrs(e, &[]);
        if let Some(t) = cx.content(e) {
            if t.as_literal().is_some_and(|s| s.trim().is_empty()) {
                cx.error(e.pos, format!("<{item}> must not be empty"));
            } else {
                out.push(t);
            }
        }
    }
    if el.elements().next().is_none() {
        cx.error(el.pos, format!("<{}> needs at least one <{item}>", el.name));
    }
    out
}

/// One `<key>` of `<issuer-signing-keys>`, parsed now so a bad key is refused when saved.
fn signing_key(cx: &mut Cx<'_>, el: &Element) -> Option<SigningKey> {
    cx.allow_attrs(el, &["id", "certificate-id", "n", "e"]);
    let id = cx.literal(el, "id").map(|s| s.trim().to_owned());
    if el.attr("certificate-id").is_some() {
        let pos = el.attr("certificate-id").map_or(el.pos, |a| a.pos);
        cx.error(
            pos,
            "certificate-id is not supported by this gateway (it has no certificate store); give the RSA key as n and e, as a PEM public key, or use <openid-config>",
        );
        return None;
    }
    let n = cx.literal(el, "n");
    let e = cx.literal(el, "e");
    let parsed = match (n, e) {
        (Some(n), Some(e)) if unresolved(&n) || unresolved(&e) => return None,
        (Some(n), Some(e)) => {
            cx.no_children(el);
            SigningKey::rsa_components(id, &n, &e)
        }
        (Some(_), None) | (None, Some(_)) => {
            cx.error(el.pos, "<key> needs both 'n' and 'e' for an RSA key");
            return None;
        }
        (None, None) => {
            let text = cx.content(el)?;
            let Some(text) = text.as_literal() else {
                cx.error(
                    el.pos,
                    "a signing key must be written out (or a named value), not an expression",
                );
                return None;
            };
            if text.trim().is_empty() {
                cx.error(el.pos, "<key> is empty");
                return None;
            }
            if unresolved(text) {
                return None;
            }
            if text.trim_start().starts_with("-----BEGIN") {
                SigningKey::public_pem(id, text)
            } else {
                SigningKey::symmetric_base64(id, text)
            }
        }
    };
    match parsed {
        Ok(k) => Some(k),
        Err(m) => {
            // Never echo the key itself.
            cx.error(el.pos, format!("invalid signing key: {m}"));
            None
        }
    }
}

pub(super) fn claim(cx: &mut Cx<'_>, el: &Element) -> Option<Claim> {
    cx.allow_attrs(el, &["name", "match", "separator"]);
    cx.allow_children(el, &["value"]);
    let name = cx.req_literal(el, "name")?.trim().to_owned();
    if name.is_empty() {
        cx.error(el.pos, "<claim> needs a non-empty 'name'");
        return None;
    }
    let all = cx.choice(el, "match", &["all", "any"], "all") == "all";
    let separator = cx.literal(el, "separator").filter(|s| !s.is_empty());
    let mut values = Vec::new();
    for v in el.elements() {
        cx.allow_attrs(v, &[]);
        values.push(cx.content(v)?);
    }
    Some(Claim {
        name,
        all,
        separator,
        values,
    })
}

/// Whether a value still holds a `{{named value}}` reference: only when compiling offline
/// (`gatehouse policy check`), where the value is unknown and cannot be checked yet.
pub(super) fn unresolved(text: &str) -> bool {
    text.contains("{{") && text.contains("}}")
}

fn sha256(token: &str) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// A string claim or header field.
fn text(v: Option<&Json>) -> Option<String> {
    match v? {
        Json::String(s) => Some(s.to_string()),
        _ => None,
    }
}

/// The values of a claim as text: an array's items, a string split by `separator`, a number or
/// boolean as JSON.
fn values(v: Option<&Json>, separator: Option<&str>) -> Vec<String> {
    let one = |j: &Json| -> Vec<String> {
        match j {
            Json::String(s) => match separator {
                Some(sep) => s.split(sep).map(|p| p.trim().to_owned()).collect(),
                None => vec![s.to_string()],
            },
            Json::Null => vec![],
            other => vec![other.to_json_string(false)],
        }
    };
    match v {
        None => vec![],
        Some(Json::Array(items)) => items.iter().flat_map(one).collect(),
        Some(other) => one(other),
    }
}

/// A NumericDate claim (seconds since 1970).
fn claim_seconds(v: Option<&Json>) -> Option<f64> {
    match v? {
        Json::Int(i) => Some(*i as f64),
        Json::Float(f) if f.is_finite() => Some(*f),
        _ => None,
    }
}

fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// How long until a NumericDate; `None` for no date, zero when it has passed.
fn seconds_until(at: Option<f64>) -> Option<Duration> {
    let left = at? - now_seconds();
    Some(if left > 0.0 {
        Duration::from_secs_f64(left.min(VERIFIED_AT_MOST.as_secs_f64()))
    } else {
        Duration::ZERO
    })
}

/// Text from a token for a message: printable ASCII, at most 64 characters.
fn printable(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(64)
        .collect()
}
