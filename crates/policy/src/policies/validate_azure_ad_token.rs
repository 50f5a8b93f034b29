//! `<validate-azure-ad-token>`: refuses requests without a valid Microsoft Entra ID token of the
//! given tenant. It is `<validate-jwt>` with the Entra parts filled in:
//!
//! ```xml
//! <validate-azure-ad-token tenant-id="GUID | contoso.onmicrosoft.com | https://contoso.onmicrosoft.com"
//!     header-name="Authorization" | query-parameter-name="…" | token-value="@(…)"
//!     authentication-endpoint="https://login.microsoftonline.com"
//!     failed-validation-httpcode="401" failed-validation-error-message="…"
//!     output-token-variable-name="jwt">
//!   <client-application-ids><application-id>…</application-id></client-application-ids>
//!   <backend-application-ids><application-id>…</application-id></backend-application-ids>
//!   <audiences><audience>…</audience></audiences>
//!   <required-claims><claim name="roles" match="any"><value>…</value></claim></required-claims>
//! </validate-azure-ad-token>
//! ```
//!
//! - The signing keys come from the tenant's OpenID configuration,
//!   `{authentication-endpoint}/{tenant-id}/v2.0/.well-known/openid-configuration`, fetched and
//!   cached by the gateway as for `<openid-config>`. `authentication-endpoint` (Azure uses it for
//!   the national clouds) defaults to `https://login.microsoftonline.com`.
//! - The issuer must be the tenant's: the v2.0 issuer the configuration names, or the same
//!   tenant's v1.0 issuer (`https://sts.windows.net/{tenant}/`). A multi-tenant configuration
//!   (`organizations`, `common`) accepts the issuer of the token's own tenant (`tid`).
//! - `client-application-ids`: the application the token was issued to (`appid` in v1.0 tokens,
//!   `azp` in v2.0 ones) must be one of them; without the element any client is accepted.
//! - The audience must be one of `audiences` or `backend-application-ids` (an application id
//!   also as `api://{id}`); without either, any audience is accepted.
//! - The token must be signed and unexpired. Failures answer and raise errors as `validate-jwt`
//!   does (`context.LastError.Source` is `validate-azure-ad-token`).
//!
//! `<decryption-keys>` (encrypted tokens) is refused when the policy is saved, as in
//! `validate-jwt`.

use super::param::{self, Param};
use super::validate_jwt::{self, Settings, TokenSource, ValidateJwt};
use crate::compile::Cx;
use crate::text::PolicyText;
use crate::xml::Element;

/// Microsoft Entra ID's authority in Azure's public cloud.
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";

const ATTRS: [&str; 8] = [
    "tenant-id",
    "header-name",
    "query-parameter-name",
    "token-value",
    "authentication-endpoint",
    "failed-validation-httpcode",
    "failed-validation-error-message",
    "output-token-variable-name",
];

const CHILDREN: [&str; 5] = [
    "client-application-ids",
    "backend-application-ids",
    "audiences",
    "required-claims",
    "decryption-keys",
];

pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<ValidateJwt> {
    cx.allow_attrs(el, &ATTRS);
    cx.allow_children(el, &CHILDREN);
    let tenant = cx.req_literal(el, "tenant-id");
    let tenant_pos = el.attr("tenant-id").map_or(el.pos, |a| a.pos);
    let authority = cx
        .literal(el, "authentication-endpoint")
        .map(|a| a.trim().trim_end_matches('/').to_owned());
    let source = match (
        cx.opt_text(el, "header-name"),
        cx.opt_text(el, "query-parameter-name"),
        cx.opt_text(el, "token-value"),
    ) {
        (None, None, None) => TokenSource::Header(PolicyText::literal("Authorization")),
        (Some(h), None, None) => TokenSource::Header(h),
        (None, Some(q), None) => TokenSource::Query(q),
        (None, None, Some(v)) => TokenSource::Value(v),
        _ => {
            cx.error(
                el.pos,
                "<validate-azure-ad-token> takes one of 'header-name', 'query-parameter-name' and 'token-value', not several",
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
    let output = cx.literal(el, "output-token-variable-name");
    if output.as_ref().is_some_and(|name| name.trim().is_empty()) {
        let pos = el
            .attr("output-token-variable-name")
            .map_or(el.pos, |a| a.pos);
        cx.error(pos, "'output-token-variable-name' must not be empty");
    }

    let mut clients = Vec::new();
    let mut audiences = Vec::new();
    let mut claims = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for child in el.elements() {
        if seen.contains(&child.name.as_str()) {
            cx.error(
                child.pos,
                format!(
                    "<{}> appears twice in <validate-azure-ad-token>",
                    child.name
                ),
            );
        }
        seen.push(&child.name);
        match child.name.as_str() {
            "client-application-ids" => {
                clients = validate_jwt::list(cx, child, "application-id");
            }
            "backend-application-ids" => {
                for id in validate_jwt::list(cx, child, "application-id") {
                    // An application's tokens carry its id, or its `api://` URI, as audience.
                    if let Some(literal) = id.as_literal() {
                        audiences.push(PolicyText::literal(&format!("api://{}", literal.trim())));
                    }
                    audiences.push(id);
                }
            }
            "audiences" => audiences.extend(validate_jwt::list(cx, child, "audience")),
            "required-claims" => {
                cx.allow_attrs(child, &[]);
                cx.allow_children(child, &["claim"]);
                for c in child.elements() {
                    if let Some(claim) = validate_jwt::claim(cx, c) {
                        claims.push(claim);
                    }
                }
            }
            "decryption-keys" => cx.error(
                child.pos,
                "<decryption-keys> (encrypted tokens) is not supported by this gateway",
            ),
            _ => {}
        }
    }

    let tenant = tenant?;
    let tenant = tenant_name(&tenant);
    let authority = authority.unwrap_or_else(|| DEFAULT_AUTHORITY.to_owned());
    let mut openid = Vec::new();
    if !(validate_jwt::unresolved(&tenant) || validate_jwt::unresolved(&authority)) {
        // `gatehouse policy check` without the named values checks none of this.
        if tenant.is_empty() || tenant.contains(['/', '?', '#', ' ']) {
            cx.error(
                tenant_pos,
                format!(
                    "'tenant-id' must be a tenant id, a domain or its https:// URL, not '{tenant}'"
                ),
            );
            return None;
        }
        if !(authority.starts_with("https://") || authority.starts_with("http://"))
            || authority.parse::<http::Uri>().is_err()
        {
            let pos = el.attr("authentication-endpoint").map_or(el.pos, |a| a.pos);
            cx.error(
                pos,
                format!("'authentication-endpoint' must be an http(s) URL, not '{authority}'"),
            );
            return None;
        }
        openid.push(format!(
            "{authority}/{tenant}/v2.0/.well-known/openid-configuration"
        ));
    }
    Some(ValidateJwt::new(Settings {
        policy: "validate-azure-ad-token",
        source,
        status,
        message,
        require_expiration: Param::fixed(
            true,
            "require-expiration-time",
            param::BOOL,
            param::parse_bool,
        ),
        require_scheme: None,
        require_signed: Param::fixed(
            true,
            "require-signed-tokens",
            param::BOOL,
            param::parse_bool,
        ),
        clock_skew: Param::fixed(
            0,
            "clock-skew",
            "a whole number of seconds",
            param::parse_seconds,
        ),
        output,
        openid,
        keys: Vec::new(),
        audiences,
        issuers: Vec::new(),
        claims,
        entra: Some(clients),
    }))
}

/// The tenant as the authority's path takes it: `https://contoso.onmicrosoft.com/` →
/// `contoso.onmicrosoft.com`.
fn tenant_name(raw: &str) -> String {
    let t = raw.trim();
    let t = t
        .strip_prefix("https://")
        .or_else(|| t.strip_prefix("http://"))
        .unwrap_or(t);
    t.trim_end_matches('/').to_owned()
}

#[cfg(test)]
mod tests;
