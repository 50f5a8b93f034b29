//! `<authentication-certificate certificate-id="…"/>`: presents a certificate of
//! `/mgmt/certificates` (with its private key) as the TLS client certificate when this request
//! is forwarded to its backend. Azure's `body`/`password` (a PFX in the policy) and
//! `thumbprint` are refused: Gatehouse keeps certificates as PEM resources, named by id.

use std::sync::Arc;

use crate::compile::Cx;
use crate::exchange::Exchange;
use crate::run::{Budget, Flow, PolicyError};
use crate::text::PolicyText;
use crate::xml::Element;

#[derive(Debug, Clone)]
pub struct AuthenticationCertificate {
    /// A literal id, shared by every request, or an expression.
    id: Result<Arc<str>, PolicyText>,
}

impl AuthenticationCertificate {
    pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Self> {
        cx.allow_attrs(el, &["certificate-id", "thumbprint", "body", "password"]);
        cx.no_children(el);
        if let Some(a) = el.attr("body").or_else(|| el.attr("password")) {
            cx.error(
                a.pos,
                "body and password (a PFX in the policy) are not supported: Gatehouse takes PEM, not PFX; convert with `openssl pkcs12 -in cert.pfx -nodes -out cert.pem`, PUT the PEM to /mgmt/certificates/{id} and name it with certificate-id",
            );
            return None;
        }
        if let Some(a) = el.attr("thumbprint") {
            cx.error(
                a.pos,
                "thumbprint is not supported by this gateway; name the certificate of /mgmt/certificates with certificate-id",
            );
            return None;
        }
        let pos = el.attr("certificate-id").map_or(el.pos, |a| a.pos);
        let text = cx.req_text(el, "certificate-id")?;
        let Some(raw) = text.as_literal() else {
            return Some(Self { id: Err(text) });
        };
        let id = gatehouse_model::resources::certificate_id_of(raw);
        if id.is_empty() {
            cx.error(pos, "certificate-id is empty");
            return None;
        }
        if cx.known.certificate(id) == Some(false) {
            cx.error(
                pos,
                format!("certificate '{id}' does not exist or has no private key; PUT the certificate with its key to /mgmt/certificates/{id}"),
            );
            return None;
        }
        Some(Self {
            id: Ok(Arc::from(id)),
        })
    }

    pub fn texts(&self) -> Vec<&PolicyText> {
        match &self.id {
            Ok(_) => vec![],
            Err(t) => vec![t],
        }
    }

    pub fn run(&self, ex: &mut Exchange, budget: &mut Budget) -> Result<Flow, PolicyError> {
        let id = match &self.id {
            Ok(id) => id.clone(),
            Err(text) => {
                let raw = text.eval(ex, budget)?;
                Arc::from(gatehouse_model::resources::certificate_id_of(&raw))
            }
        };
        ex.authentication_certificate = Some(id);
        Ok(Flow::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;

    #[test]
    fn names_the_certificate_for_the_forward() {
        let p = pipeline(
            r#"<policies><inbound>
                <authentication-certificate certificate-id="/certificates/client" />
            </inbound><backend><forward-request/></backend></policies>"#,
        );
        let mut ex = exchange("GET", "/", &[]);
        run(&p, &mut ex);
        assert_eq!(ex.authentication_certificate.as_deref(), Some("client"));
    }

    #[test]
    fn pfx_and_thumbprints_are_refused_with_what_to_do() {
        let e = errors_inbound(r#"<authentication-certificate body="MIIx" password="p" />"#);
        assert!(e[0].contains("openssl pkcs12"), "{e:?}");
        let e = errors_inbound(r#"<authentication-certificate thumbprint="ABC" />"#);
        assert!(e[0].contains("certificate-id"), "{e:?}");
        let e = errors_inbound(r#"<authentication-certificate />"#);
        assert!(
            e[0].contains("needs the attribute 'certificate-id'"),
            "{e:?}"
        );
        let e = crate::policies::testkit::errors_in(
            "outbound",
            r#"<authentication-certificate certificate-id="c" />"#,
        );
        assert!(e[0].contains("not allowed in <outbound>"), "{e:?}");
    }
}
