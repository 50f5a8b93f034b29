//! `context.Request.Certificate`: the certificate the client presented over TLS, read as
//! .NET's `X509Certificate2` (`Subject`, `Issuer`, `Thumbprint`, `SerialNumber`, `NotBefore`,
//! `NotAfter`, `Verify()`). The gateway parses and verifies it once per connection and hands
//! every request of that connection the same [`ClientCertificate`]; nothing here parses DER.

use std::sync::Arc;

use super::{CallTys, Member, Sig, SigErr, sig};
use crate::datetime::{DateTime, TICKS_PER_SECOND};
use crate::error::{RtResult, RuntimeError};
use crate::types::Ty;
use crate::value::{Obj, Value};

/// A client certificate as policies see it, filled in by the gateway at the handshake.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientCertificate {
    /// The subject's distinguished name, .NET style (`CN=client, O=Example`).
    pub subject: Arc<str>,
    /// The issuer's distinguished name, .NET style.
    pub issuer: Arc<str>,
    /// SHA-1 of the DER, upper-case hex without separators.
    pub thumbprint: Arc<str>,
    /// The serial number, upper-case hex.
    pub serial_number: Arc<str>,
    /// Validity start, Unix seconds.
    pub not_before: i64,
    /// Validity end, Unix seconds.
    pub not_after: i64,
    /// The DNS names of its subject alternative name extension.
    pub dns_names: Vec<Arc<str>>,
    /// Whether the chain the client sent leads to a CA the gateway trusts (`Verify()`),
    /// checked at the handshake, validity dates included.
    pub verified: bool,
    /// The issuing CA certificate, when the gateway knows it (sent by the client, or one of
    /// the gateway's CA certificates): its thumbprint.
    pub issuer_thumbprint: Option<Arc<str>>,
    /// The id of the gateway's CA certificate (`certificateAuthorities/{id}`) that issued it.
    pub issuer_certificate_id: Option<Arc<str>>,
}

impl ClientCertificate {
    /// The common name of the subject (`CN=`), if it has one.
    pub fn common_name(&self) -> Option<&str> {
        self.subject.split(',').find_map(|part| {
            let (k, v) = part.trim().split_once('=')?;
            k.trim().eq_ignore_ascii_case("CN").then(|| v.trim())
        })
    }
}

/// A Unix time as a UTC `DateTime`; null when out of `DateTime`'s range.
pub(crate) fn unix_time(seconds: i64) -> Value {
    let epoch = DateTime::from_system_time(std::time::SystemTime::UNIX_EPOCH);
    seconds
        .checked_mul(TICKS_PER_SECOND)
        .and_then(|ticks| epoch.add_ticks(ticks))
        .map_or(Value::Null, Value::DateTime)
}

pub(crate) fn prop_ty(m: Member) -> Option<Ty> {
    use Member as M;
    Some(match m {
        M::Subject | M::Issuer | M::Thumbprint | M::SerialNumber => Ty::String,
        M::NotBefore | M::NotAfter => Ty::DateTime,
        _ => return None,
    })
}

pub(crate) fn method_sig(m: Member, c: &CallTys<'_>) -> Sig {
    match m {
        Member::Verify => sig(c, &[&[]], Ty::Bool),
        _ => Err(SigErr::NotFound),
    }
}

fn text(s: &Arc<str>) -> Value {
    Value::String(Arc::clone(s))
}

pub(crate) fn get(c: &ClientCertificate, m: Member) -> RtResult<Value> {
    use Member as M;
    Ok(match m {
        M::Subject => text(&c.subject),
        M::Issuer => text(&c.issuer),
        M::Thumbprint => text(&c.thumbprint),
        M::SerialNumber => text(&c.serial_number),
        M::NotBefore => unix_time(c.not_before),
        M::NotAfter => unix_time(c.not_after),
        _ => return Err(RuntimeError::no_member(TYPE_NAME, m.name())),
    })
}

pub(crate) fn call(c: &ClientCertificate, m: Member, args: &[Value]) -> RtResult<Value> {
    match (m, args.len()) {
        (Member::Verify, 0) => Ok(Value::Bool(c.verified)),
        _ => Err(RuntimeError::no_member(TYPE_NAME, m.name())),
    }
}

/// .NET's name for the type.
pub(crate) const TYPE_NAME: &str = "X509Certificate2";

/// `context.Request.Certificate` as a value: the certificate, or null.
pub(crate) fn value(c: Option<Arc<ClientCertificate>>) -> Value {
    c.map_or(Value::Null, |c| Value::obj(Obj::Certificate(c)))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::ClientCertificate;
    use crate::testing::StaticContext;
    use crate::{self as expr, Budget};

    fn cert(verified: bool) -> Arc<ClientCertificate> {
        Arc::new(ClientCertificate {
            subject: "CN=client one, O=Example".into(),
            issuer: "CN=Test CA".into(),
            thumbprint: "0123456789ABCDEF0123456789ABCDEF01234567".into(),
            serial_number: "0A1B".into(),
            not_before: 1_700_000_000,
            not_after: 1_900_000_000,
            dns_names: vec![],
            verified,
            issuer_thumbprint: None,
            issuer_certificate_id: None,
        })
    }

    fn eval(src: &str, c: Option<Arc<ClientCertificate>>) -> Result<String, String> {
        let e = expr::compile(src).map_err(|e| e.to_string())?;
        let ctx = StaticContext {
            certificate: c,
            ..StaticContext::default()
        };
        e.eval(&ctx, &mut Budget::default())
            .map(|v| v.to_policy_string())
            .map_err(|e| e.message)
    }

    #[test]
    fn the_properties_read_like_x509certificate2() {
        let c = Some(cert(true));
        let cases = [
            (
                "@(context.Request.Certificate.Subject)",
                "CN=client one, O=Example",
            ),
            ("@(context.Request.Certificate.Issuer)", "CN=Test CA"),
            (
                "@(context.Request.Certificate.Thumbprint)",
                "0123456789ABCDEF0123456789ABCDEF01234567",
            ),
            ("@(context.Request.Certificate.SerialNumber)", "0A1B"),
            (
                "@(context.Request.Certificate.NotBefore.ToString(\"o\"))",
                "2023-11-14T22:13:20.0000000Z",
            ),
            ("@(context.Request.Certificate.NotAfter.Year)", "2030"),
            ("@(context.Request.Certificate.Verify())", "True"),
            ("@(context.Request.Certificate == null)", "False"),
            (
                "@(context.Request.Certificate != null && context.Request.Certificate.Verify())",
                "True",
            ),
        ];
        for (src, want) in cases {
            assert_eq!(eval(src, c.clone()).as_deref(), Ok(want), "{src}");
        }
        assert_eq!(
            eval("@(context.Request.Certificate.Verify())", Some(cert(false))).as_deref(),
            Ok("False")
        );
    }

    #[test]
    fn it_can_be_kept_in_a_variable_and_cast_back() {
        let e = expr::compile(
            "@(((X509Certificate2)context.Variables[\"c\"]).Thumbprint + (context.Variables[\"c\"] is X509Certificate2))",
        )
        .unwrap();
        let ctx = StaticContext {
            variables: vec![("c".into(), super::value(Some(cert(true))))],
            ..StaticContext::default()
        };
        let v = e.eval(&ctx, &mut Budget::default()).unwrap();
        assert_eq!(
            v.to_policy_string(),
            "0123456789ABCDEF0123456789ABCDEF01234567True"
        );
    }

    #[test]
    fn without_a_certificate_it_is_null() {
        let cases = [
            ("@(context.Request.Certificate == null)", "True"),
            (
                "@(context.Request.Certificate == null ? \"none\" : context.Request.Certificate.Thumbprint)",
                "none",
            ),
            ("@(context.Request.Certificate?.Subject ?? \"-\")", "-"),
        ];
        for (src, want) in cases {
            assert_eq!(eval(src, None).as_deref(), Ok(want), "{src}");
        }
        let err = eval("@(context.Request.Certificate.Subject)", None).unwrap_err();
        assert!(err.contains("Object reference"), "{err}");
    }

    #[test]
    fn unknown_members_are_refused_when_the_policy_is_saved() {
        let err = expr::compile("@(context.Request.Certificate.PrivateKey)").unwrap_err();
        assert!(err.to_string().contains("PrivateKey"), "{err}");
        let err = expr::compile("@(context.Request.Certificate.Verify(1))").unwrap_err();
        assert!(err.to_string().contains("Verify"), "{err}");
    }

    #[test]
    fn the_common_name_is_found_in_the_subject() {
        assert_eq!(cert(true).common_name(), Some("client one"));
        let none = ClientCertificate {
            subject: "O=Example".into(),
            ..ClientCertificate::default()
        };
        assert_eq!(none.common_name(), None);
    }
}
