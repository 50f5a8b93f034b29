//! `<authentication-managed-identity resource="…" client-id="…" output-token-variable-name="…"
//! ignore-error="false"/>`: gets an access token for `resource` from the gateway's token
//! provider and authenticates to the backend with it (`Authorization: Bearer <token>`), or,
//! with `output-token-variable-name`, stores it in that variable instead. Inside
//! `send-request` it authenticates that request. Outside Azure there is no managed identity, so
//! the token comes from the provider the gateway is configured with ([`crate::run::Io`]'s
//! `managed_identity_token`), which caches it until shortly before it expires.
//!
//! A token that cannot be had is a failure `on-error` sees (as in Azure); with
//! `ignore-error="true"` the request goes on without one. The token is never part of a
//! message, and [`AccessToken`]'s `Debug` does not show it.

use std::sync::Arc;

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};

use crate::compile::Cx;
use crate::exchange::Exchange;
use crate::expr::Value;
use crate::run::{Budget, Flow, Io, PolicyError};
use crate::text::PolicyText;
use crate::xml::Element;

/// The element name, also the `source` of its failures.
const NAME: &str = "authentication-managed-identity";

/// An access token for a backend. Its `Debug` hides the token, so it cannot reach a log by
/// accident. The `Authorization` value is made once, when the token arrives, so requests
/// sharing a cached token only clone it.
#[derive(Clone)]
pub struct AccessToken {
    token: Arc<str>,
    /// `Bearer <token>`, marked sensitive; `None` when the token cannot be a header value.
    bearer: Option<HeaderValue>,
}

impl PartialEq for AccessToken {
    fn eq(&self, other: &Self) -> bool {
        self.token == other.token
    }
}

impl Eq for AccessToken {}

impl AccessToken {
    pub fn new(token: impl Into<Arc<str>>) -> Self {
        let token: Arc<str> = token.into();
        let bearer = HeaderValue::from_str(&format!("Bearer {token}"))
            .ok()
            .map(|mut v| {
                v.set_sensitive(true);
                v
            });
        Self { token, bearer }
    }

    /// The token itself, to send.
    pub fn secret(&self) -> &str {
        &self.token
    }

    /// `Bearer <token>`, marked sensitive (HTTP/2 never indexes it).
    pub fn bearer(&self) -> Result<HeaderValue, PolicyError> {
        self.bearer.clone().ok_or_else(|| {
            PolicyError::managed_identity("the token provider's token is not a valid header value")
        })
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken(..)")
    }
}

#[derive(Debug, Clone)]
pub struct AuthenticationManagedIdentity {
    resource: PolicyText,
    client_id: Option<Arc<str>>,
    variable: Option<Arc<str>>,
    ignore_error: bool,
}

impl AuthenticationManagedIdentity {
    pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Self> {
        cx.allow_attrs(
            el,
            &[
                "resource",
                "client-id",
                "output-token-variable-name",
                "ignore-error",
            ],
        );
        cx.no_children(el);
        let resource = cx.req_text(el, "resource");
        // Azure takes no expression in these two (named values are fine).
        let client_id = cx.literal(el, "client-id");
        let variable = cx.literal(el, "output-token-variable-name");
        let ignore_error = cx.bool_attr(el, "ignore-error", false);
        let resource = resource?;
        if resource.as_literal().is_some_and(|r| r.trim().is_empty()) {
            let pos = el.attr("resource").map_or(el.pos, |a| a.pos);
            cx.error(
                pos,
                "'resource' of <authentication-managed-identity> must not be empty: name the \
                 application ID or URI of the backend, e.g. https://vault.azure.net",
            );
            return None;
        }
        if variable.as_deref().is_some_and(|v| v.trim().is_empty()) {
            let pos = el
                .attr("output-token-variable-name")
                .map_or(el.pos, |a| a.pos);
            cx.error(pos, "'output-token-variable-name' must not be empty");
            return None;
        }
        Some(Self {
            resource,
            client_id: client_id
                .map(|c| c.trim().to_owned())
                .filter(|c| !c.is_empty())
                .map(Arc::from),
            variable: variable.map(|v| Arc::from(v.trim())),
            ignore_error,
        })
    }

    pub fn texts(&self) -> Vec<&PolicyText> {
        vec![&self.resource]
    }

    /// Authenticates the request to the backend.
    pub async fn run<I: Io>(
        &self,
        ex: &mut Exchange,
        io: &mut I,
        budget: &mut Budget,
    ) -> Result<Flow, PolicyError> {
        if let Some(token) = self.token(ex, io, budget).await? {
            self.deliver(ex, &token, None)?;
        }
        Ok(Flow::Continue)
    }

    /// Authenticates a request of `send-request` (its `headers`).
    pub(crate) async fn authorize<I: Io>(
        &self,
        ex: &mut Exchange,
        io: &mut I,
        budget: &mut Budget,
        headers: &mut HeaderMap,
    ) -> Result<(), PolicyError> {
        if let Some(token) = self.token(ex, io, budget).await? {
            self.deliver(ex, &token, Some(headers))?;
        }
        Ok(())
    }

    /// The token, or `None` when none could be had and `ignore-error` lets the request go on.
    async fn token<I: Io>(
        &self,
        ex: &Exchange,
        io: &mut I,
        budget: &mut Budget,
    ) -> Result<Option<AccessToken>, PolicyError> {
        let resource = self.resource.eval(ex, budget)?;
        let resource = resource.trim();
        let got = if resource.is_empty() {
            Err(PolicyError::managed_identity(
                "'resource' evaluated to an empty string",
            ))
        } else {
            io.managed_identity_token(resource, self.client_id.as_deref())
                .await
        };
        match got {
            Ok(t) => Ok(Some(t)),
            Err(e) if self.ignore_error => {
                tracing::debug!(resource, reason = %e.reason, message = %e.message, "no managed identity token; ignored (ignore-error)");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Sets the header (of `headers`, or of the request) or the variable.
    fn deliver(
        &self,
        ex: &mut Exchange,
        token: &AccessToken,
        headers: Option<&mut HeaderMap>,
    ) -> Result<(), PolicyError> {
        if let Some(name) = &self.variable {
            ex.variables
                .insert(name.to_string(), Value::String(token.token.clone()));
            return Ok(());
        }
        let value = token.bearer()?;
        headers
            .unwrap_or(&mut ex.request.headers)
            .insert(AUTHORIZATION, value);
        Ok(())
    }
}

impl PolicyError {
    /// No token for `authentication-managed-identity` (a provider failure, or none
    /// configured). `message` must not hold a secret: `context.LastError.Message` shows it.
    pub fn managed_identity(message: impl Into<String>) -> Self {
        Self::new(
            NAME,
            "ManagedIdentityTokenUnavailable",
            message,
            crate::answer::Answer::Internal,
        )
    }
}

#[cfg(test)]
mod tests;
