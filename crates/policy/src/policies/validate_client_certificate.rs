//! `<validate-client-certificate validate-revocation validate-trust validate-not-before
//! validate-not-after ignore-error><identities><identity thumbprint serial-number common-name
//! subject dns-name issuer-subject issuer-thumbprint issuer-certificate-id/></identities>`:
//! refuses a request (401, then `on-error`) unless the client presented a certificate over TLS
//! that passes every check of the element and matches every attribute of at least one
//! identity (any certificate, when there are no identities).
//!
//! The certificate comes from the gateway, read and verified once per connection
//! ([`crate::exchange::ClientCertificate`]): trust means a chain to one of the CA certificates
//! assigned to the gateway (`certificateAuthorities`). `validate-revocation` is accepted but
//! cannot be checked: the gateway fetches no revocation lists or OCSP answers, so `true` (the
//! default, as in Azure) treats every certificate as not revoked.
//!
//! Everything is literal, as in Azure: no expressions, so the checks are fixed when saved.

use std::time::{SystemTime, UNIX_EPOCH};

use http::StatusCode;

use super::check_header::json_error;
use crate::compile::Cx;
use crate::exchange::{ClientCertificate, Exchange};
use crate::run::{Flow, PolicyError};
use crate::xml::Element;

/// Azure's limit on identities.
const MAX_IDENTITIES: usize = 10;

/// One `<identity>`: every attribute given must match. Thumbprints and serial numbers compare
/// without case (hex), names exactly, as .NET writes them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub thumbprint: Option<String>,
    pub serial_number: Option<String>,
    pub common_name: Option<String>,
    pub subject: Option<String>,
    pub dns_name: Option<String>,
    pub issuer_subject: Option<String>,
    pub issuer_thumbprint: Option<String>,
    pub issuer_certificate_id: Option<String>,
}

impl Identity {
    fn matches(&self, c: &ClientCertificate) -> bool {
        let hex = |want: &Option<String>, have: Option<&str>| {
            want.as_deref().is_none_or(|w| {
                have.is_some_and(|h| normalize_hex(w).eq_ignore_ascii_case(&normalize_hex(h)))
            })
        };
        let exact = |want: &Option<String>, have: Option<&str>| {
            want.as_deref().is_none_or(|w| have == Some(w))
        };
        hex(&self.thumbprint, Some(&c.thumbprint))
            && hex(&self.serial_number, Some(&c.serial_number))
            && exact(&self.common_name, c.common_name())
            && exact(&self.subject, Some(&c.subject))
            && self
                .dns_name
                .as_deref()
                .is_none_or(|w| c.dns_names.iter().any(|n| n.eq_ignore_ascii_case(w)))
            && exact(&self.issuer_subject, Some(&c.issuer))
            && hex(&self.issuer_thumbprint, c.issuer_thumbprint.as_deref())
            && exact(
                &self.issuer_certificate_id,
                c.issuer_certificate_id.as_deref(),
            )
    }
}

/// Thumbprints are often pasted with separators (`AB:CD…`, `ab cd…`), and serial numbers with
/// leading zeros; neither changes which certificate they name.
fn normalize_hex(s: &str) -> String {
    let digits: String = s
        .chars()
        .filter(|c| !matches!(c, ':' | ' ' | '-'))
        .collect();
    let trimmed = digits.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".to_owned()
    } else {
        trimmed.to_owned()
    }
}

#[derive(Debug, Clone)]
pub struct ValidateClientCertificate {
    pub validate_revocation: bool,
    pub validate_trust: bool,
    pub validate_not_before: bool,
    pub validate_not_after: bool,
    pub ignore_error: bool,
    pub identities: Vec<Identity>,
}

/// Why a certificate was refused: the reason (Azure's error terms) and a sentence for the log.
struct Failure {
    reason: &'static str,
    message: &'static str,
}

impl ValidateClientCertificate {
    pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Self> {
        cx.allow_attrs(
            el,
            &[
                "validate-revocation",
                "validate-trust",
                "validate-not-before",
                "validate-not-after",
                "ignore-error",
            ],
        );
        cx.allow_children(el, &["identities"]);
        let mut identities = Vec::new();
        for list in el.elements().filter(|e| e.name == "identities") {
            cx.allow_attrs(list, &[]);
            cx.allow_children(list, &["identity"]);
            for id in list.elements().filter(|e| e.name == "identity") {
                identities.push(Self::identity(id, cx));
            }
        }
        if identities.len() > MAX_IDENTITIES {
            cx.error(
                el.pos,
                format!(
                    "<validate-client-certificate> has {} identities; at most {MAX_IDENTITIES} are allowed",
                    identities.len()
                ),
            );
            return None;
        }
        Some(Self {
            validate_revocation: cx.bool_attr(el, "validate-revocation", true),
            validate_trust: cx.bool_attr(el, "validate-trust", true),
            validate_not_before: cx.bool_attr(el, "validate-not-before", true),
            validate_not_after: cx.bool_attr(el, "validate-not-after", true),
            ignore_error: cx.bool_attr(el, "ignore-error", false),
            identities,
        })
    }

    fn identity(el: &Element, cx: &mut Cx<'_>) -> Identity {
        const ATTRS: &[&str] = &[
            "thumbprint",
            "serial-number",
            "common-name",
            "subject",
            "dns-name",
            "issuer-subject",
            "issuer-thumbprint",
            "issuer-certificate-id",
        ];
        cx.allow_attrs(el, ATTRS);
        cx.no_children(el);
        if el.attrs.is_empty() {
            cx.error(
                el.pos,
                format!(
                    "an <identity> with no attribute would match any certificate; give at least one of: {}",
                    ATTRS.join(", ")
                ),
            );
        }
        let mut get = |name: &str| {
            cx.literal(el, name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        Identity {
            thumbprint: get("thumbprint"),
            serial_number: get("serial-number"),
            common_name: get("common-name"),
            subject: get("subject"),
            dns_name: get("dns-name"),
            issuer_subject: get("issuer-subject"),
            issuer_thumbprint: get("issuer-thumbprint"),
            issuer_certificate_id: get("issuer-certificate-id"),
        }
    }

    fn check(&self, ex: &Exchange, now: SystemTime) -> Result<(), Failure> {
        let Some(c) = ex.info.client_certificate.as_deref() else {
            return Err(Failure {
                reason: "ClientCertificateMissing",
                message: "The client presented no certificate (over TLS, on a hostname that asks for one).",
            });
        };
        let now = match now.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            Err(_) => 0,
        };
        if self.validate_not_before && now < c.not_before {
            return Err(Failure {
                reason: "ClientCertificateNotYetValid",
                message: "The client certificate is not valid yet (NotBefore is in the future).",
            });
        }
        if self.validate_not_after && now > c.not_after {
            return Err(Failure {
                reason: "ClientCertificateExpired",
                message: "The client certificate has expired (NotAfter is in the past).",
            });
        }
        // `validate_revocation`: no revocation data is available to the gateway; see the
        // module's documentation.
        if self.validate_trust && !c.verified {
            return Err(Failure {
                reason: "ClientCertificateNotTrusted",
                message: "The client certificate does not chain to a CA certificate assigned to the gateway.",
            });
        }
        if !self.identities.is_empty() && !self.identities.iter().any(|i| i.matches(c)) {
            return Err(Failure {
                reason: "ClientCertificateIdentityMismatch",
                message: "The client certificate matches none of the policy's identities.",
            });
        }
        Ok(())
    }

    pub fn run(&self, ex: &mut Exchange) -> Result<Flow, PolicyError> {
        let now = ex.info.timestamp.unwrap_or_else(SystemTime::now);
        let Err(failure) = self.check(ex, now) else {
            return Ok(Flow::Continue);
        };
        if self.ignore_error {
            return Ok(Flow::Continue);
        }
        ex.error_response = Some(json_error(
            StatusCode::UNAUTHORIZED,
            "Invalid client certificate.",
        ));
        Err(PolicyError::new(
            "validate-client-certificate",
            failure.reason,
            failure.message,
            crate::Answer::InvalidClientCertificate,
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, UNIX_EPOCH};

    use super::super::testkit::*;
    use crate::exchange::{ClientCertificate, Exchange};

    const THUMB: &str = "0123456789ABCDEF0123456789ABCDEF01234567";

    fn cert() -> ClientCertificate {
        ClientCertificate {
            subject: "CN=alice, O=Gatehouse Tests".into(),
            issuer: "CN=Team CA".into(),
            thumbprint: THUMB.into(),
            serial_number: "00A1B2".into(),
            not_before: 1_000,
            not_after: 2_000,
            dns_names: vec!["alice.example".into()],
            verified: true,
            issuer_thumbprint: Some("FFEE".into()),
            issuer_certificate_id: Some("team-ca".into()),
        }
    }

    fn call(policy: &str, c: Option<ClientCertificate>, at: u64) -> Exchange {
        let p = pipeline(&format!(
            "<policies><inbound>{policy}</inbound><backend><forward-request/></backend></policies>"
        ));
        let mut ex = exchange("GET", "/", &[]);
        ex.info.client_certificate = c.map(Arc::new);
        ex.info.timestamp = Some(UNIX_EPOCH + Duration::from_secs(at));
        let io = run(&p, &mut ex);
        if io.forwarded.is_some() {
            assert!(ex.last_error.is_none());
        }
        ex
    }

    /// The reason of the refusal, or `None` when the request went through.
    fn refused(policy: &str, c: Option<ClientCertificate>, at: u64) -> Option<String> {
        let ex = call(policy, c, at);
        let e = ex.last_error.as_ref()?;
        assert_eq!(e.source, "validate-client-certificate");
        let r = ex.response.as_ref().expect("an answer");
        assert_eq!(r.status, 401);
        assert_eq!(
            r.body.as_deref(),
            Some(&br#"{"message":"Invalid client certificate.","statusCode":401}"#[..])
        );
        Some(e.reason.clone())
    }

    #[test]
    fn the_element_checks_presence_dates_and_trust() {
        let p = "<validate-client-certificate />";
        assert_eq!(refused(p, Some(cert()), 1_500), None);
        assert_eq!(
            refused(p, None, 1_500).as_deref(),
            Some("ClientCertificateMissing")
        );
        assert_eq!(
            refused(p, Some(cert()), 500).as_deref(),
            Some("ClientCertificateNotYetValid")
        );
        assert_eq!(
            refused(p, Some(cert()), 2_500).as_deref(),
            Some("ClientCertificateExpired")
        );
        let untrusted = ClientCertificate {
            verified: false,
            ..cert()
        };
        assert_eq!(
            refused(p, Some(untrusted.clone()), 1_500).as_deref(),
            Some("ClientCertificateNotTrusted")
        );
        // Each check can be turned off.
        let lax = r#"<validate-client-certificate validate-trust="false" validate-not-before="false" validate-not-after="false" validate-revocation="false" />"#;
        assert_eq!(refused(lax, Some(untrusted.clone()), 500), None);
        assert_eq!(refused(lax, Some(untrusted), 2_500), None);
        // ignore-error lets a failing request through.
        let ignoring = r#"<validate-client-certificate ignore-error="true" />"#;
        assert_eq!(refused(ignoring, None, 1_500), None);
    }

    #[test]
    fn one_identity_must_match_in_every_attribute() {
        let with = |ids: &str| {
            format!(
                "<validate-client-certificate><identities>{ids}</identities></validate-client-certificate>"
            )
        };
        let pass = [
            format!(r#"<identity thumbprint="{THUMB}" />"#),
            // Pasted with separators and in lower case: the same thumbprint.
            r#"<identity thumbprint="01:23:45:67:89:ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67" />"#.into(),
            r#"<identity serial-number="a1b2" common-name="alice" />"#.into(),
            r#"<identity subject="CN=alice, O=Gatehouse Tests" issuer-subject="CN=Team CA" />"#.into(),
            r#"<identity dns-name="ALICE.example" issuer-thumbprint="ffee" issuer-certificate-id="team-ca" />"#.into(),
            // Any one of several.
            r#"<identity common-name="bob" /><identity common-name="alice" />"#.into(),
        ];
        for ids in &pass {
            assert_eq!(refused(&with(ids), Some(cert()), 1_500), None, "{ids}");
        }
        let fail = [
            r#"<identity thumbprint="AAAA" />"#,
            r#"<identity common-name="alice" serial-number="FF" />"#,
            r#"<identity subject="CN=alice" />"#,
            r#"<identity dns-name="bob.example" />"#,
            r#"<identity issuer-certificate-id="other-ca" />"#,
        ];
        for ids in fail {
            assert_eq!(
                refused(&with(ids), Some(cert()), 1_500).as_deref(),
                Some("ClientCertificateIdentityMismatch"),
                "{ids}"
            );
        }
        // An issuer the gateway could not verify is not named: issuer identities fail.
        let unnamed = ClientCertificate {
            issuer_thumbprint: None,
            issuer_certificate_id: None,
            verified: false,
            ..cert()
        };
        let p = r#"<validate-client-certificate validate-trust="false"><identities><identity issuer-thumbprint="FFEE" /></identities></validate-client-certificate>"#;
        assert_eq!(
            refused(p, Some(unnamed), 1_500).as_deref(),
            Some("ClientCertificateIdentityMismatch")
        );
    }

    #[test]
    fn mistakes_are_refused_when_saved() {
        for (policy, want) in [
            (
                r#"<validate-client-certificate validate-trust="maybe" />"#,
                "must be true or false",
            ),
            (
                r#"<validate-client-certificate><identities><identity /></identities></validate-client-certificate>"#,
                "at least one of",
            ),
            (
                r#"<validate-client-certificate><identities><identity thumbprint="@(context.Request.Headers.GetValueOrDefault(&quot;x&quot;))" /></identities></validate-client-certificate>"#,
                "does not accept an expression",
            ),
            (
                r#"<validate-client-certificate><identities><identity name="x" /></identities></validate-client-certificate>"#,
                "name",
            ),
        ] {
            let errors = errors_inbound(policy);
            assert!(
                errors.iter().any(|e| e.contains(want)),
                "{policy}: {errors:?}"
            );
        }
        let eleven: String = (0..11)
            .map(|i| format!(r#"<identity common-name="c{i}" />"#))
            .collect();
        let errors = errors_inbound(&format!(
            "<validate-client-certificate><identities>{eleven}</identities></validate-client-certificate>"
        ));
        assert!(
            errors.iter().any(|e| e.contains("at most 10")),
            "{errors:?}"
        );
    }
}
