//! What policies see of a certificate: the few X.509 fields Azure exposes on
//! `context.Request.Certificate` (Subject, Issuer, Thumbprint, SerialNumber, NotBefore,
//! NotAfter) and the DNS names, read straight from the DER.
//!
//! A small reader on purpose: it walks the fixed outline of a certificate (RFC 5280 §4.1) with
//! every length checked against what is left, never recursing, so any input ends in a value or
//! an error. Names are written the way .NET's `X500DistinguishedName` writes them, last RDN
//! first (`CN=api.example.com, O=Contoso, C=US`), since policies compare against those strings.

use std::fmt::Write;

/// The fields of one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    pub subject: String,
    pub issuer: String,
    /// SHA-1 of the DER, upper-case hex (what Azure and .NET call the thumbprint).
    pub thumbprint: String,
    /// The serial number's bytes, upper-case hex.
    pub serial_number: String,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
    /// The subject alternative names of type DNS.
    pub dns_names: Vec<String>,
}

/// Why a certificate could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an X.509 certificate: {0}")]
pub struct X509Error(&'static str);

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const OID: u8 = 0x06;
const OCTET_STRING: u8 = 0x04;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const VERSION_TAG: u8 = 0xA0;
const EXTENSIONS_TAG: u8 = 0xA3;
const DNS_NAME_TAG: u8 = 0x82;
const BOOLEAN: u8 = 0x01;
/// 2.5.29.17, subjectAltName.
const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1D, 0x11];

/// A cursor over DER bytes.
#[derive(Clone, Copy)]
struct Der<'a> {
    rest: &'a [u8],
}

impl<'a> Der<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// The next element: its tag and contents.
    fn next(&mut self) -> Result<(u8, &'a [u8]), X509Error> {
        let (&tag, after) = self.rest.split_first().ok_or(X509Error("it ends early"))?;
        let (&first, mut after) = after.split_first().ok_or(X509Error("it ends early"))?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7F);
            if count == 0 || count > 4 {
                return Err(X509Error("a length is not DER"));
            }
            let (bytes, tail) = after
                .split_at_checked(count)
                .ok_or(X509Error("it ends early"))?;
            after = tail;
            bytes.iter().fold(0usize, |n, b| (n << 8) | usize::from(*b))
        };
        let (content, tail) = after
            .split_at_checked(len)
            .ok_or(X509Error("an element is longer than the certificate"))?;
        self.rest = tail;
        Ok((tag, content))
    }

    fn expect(&mut self, want: u8, what: &'static str) -> Result<&'a [u8], X509Error> {
        match self.next()? {
            (tag, content) if tag == want => Ok(content),
            _ => Err(X509Error(what)),
        }
    }
}

/// Reads the fields policies use from a DER certificate.
pub fn describe(der: &[u8]) -> Result<CertificateInfo, X509Error> {
    let mut outer = Der::new(der);
    let certificate = outer.expect(SEQUENCE, "it is not a DER sequence")?;
    let mut certificate = Der::new(certificate);
    let tbs = certificate.expect(SEQUENCE, "it has no to-be-signed part")?;
    let mut tbs = Der::new(tbs);
    if tbs.peek_tag() == Some(VERSION_TAG) {
        tbs.next()?;
    }
    let serial = tbs.expect(INTEGER, "it has no serial number")?;
    tbs.expect(SEQUENCE, "it has no signature algorithm")?;
    let issuer = tbs.expect(SEQUENCE, "it has no issuer")?;
    let validity = tbs.expect(SEQUENCE, "it has no validity")?;
    let subject = tbs.expect(SEQUENCE, "it has no subject")?;
    tbs.expect(SEQUENCE, "it has no public key")?;
    let mut dns_names = Vec::new();
    while !tbs.is_empty() {
        let (tag, content) = tbs.next()?;
        if tag == EXTENSIONS_TAG {
            dns_names = subject_alt_dns_names(content)?;
        }
    }
    let mut validity = Der::new(validity);
    let not_before = time(validity.next()?)?;
    let not_after = time(validity.next()?)?;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, der);
    Ok(CertificateInfo {
        subject: name(subject)?,
        issuer: name(issuer)?,
        thumbprint: hex(digest.as_ref()),
        serial_number: hex(serial),
        not_before,
        not_after,
        dns_names,
    })
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02X}");
    }
    out
}

/// A Name (SEQUENCE OF SET OF AttributeTypeAndValue), last RDN first, as .NET writes it.
fn name(content: &[u8]) -> Result<String, X509Error> {
    let mut rdns = Vec::new();
    let mut seq = Der::new(content);
    while !seq.is_empty() {
        let set = seq.expect(SET, "a name part is not a set")?;
        let mut set = Der::new(set);
        let mut parts = Vec::new();
        while !set.is_empty() {
            let atv = set.expect(SEQUENCE, "a name attribute is not a sequence")?;
            let mut atv = Der::new(atv);
            let oid = atv.expect(OID, "a name attribute has no type")?;
            let (_, value) = atv.next()?;
            parts.push(format!(
                "{}={}",
                attribute(oid),
                quote(&String::from_utf8_lossy(value))
            ));
        }
        rdns.push(parts.join(" + "));
    }
    rdns.reverse();
    Ok(rdns.join(", "))
}

/// .NET's short names for the usual attributes; others as `OID.1.2.3`.
fn attribute(oid: &[u8]) -> String {
    match oid {
        [0x55, 0x04, 0x03] => "CN".into(),
        [0x55, 0x04, 0x06] => "C".into(),
        [0x55, 0x04, 0x07] => "L".into(),
        [0x55, 0x04, 0x08] => "S".into(),
        [0x55, 0x04, 0x09] => "STREET".into(),
        [0x55, 0x04, 0x0A] => "O".into(),
        [0x55, 0x04, 0x0B] => "OU".into(),
        [0x55, 0x04, 0x05] => "SERIALNUMBER".into(),
        [0x55, 0x04, 0x04] => "SN".into(),
        [0x55, 0x04, 0x2A] => "G".into(),
        [0x55, 0x04, 0x0C] => "T".into(),
        [0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x01] => "E".into(),
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xF2, 0x2C, 0x64, 0x01, 0x19] => "DC".into(),
        other => format!("OID.{}", oid_text(other)),
    }
}

fn oid_text(oid: &[u8]) -> String {
    let mut out = String::new();
    let mut value: u64 = 0;
    let mut first = true;
    for &b in oid {
        value = (value << 7) | u64::from(b & 0x7F);
        if b & 0x80 == 0 {
            if first {
                let (a, b) = if value < 80 {
                    (value / 40, value % 40)
                } else {
                    (2, value - 80)
                };
                let _ = write!(out, "{a}.{b}");
                first = false;
            } else {
                let _ = write!(out, ".{value}");
            }
            value = 0;
        }
        if value > u64::MAX >> 8 {
            break;
        }
    }
    out
}

/// Quotes a value that holds a separator, as .NET does.
fn quote(value: &str) -> String {
    if value.contains([',', '+', '"', '=', '<', '>', ';'])
        || value.starts_with(' ')
        || value.ends_with(' ')
    {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

/// The DNS names of the subjectAltName extension, if any.
fn subject_alt_dns_names(explicit: &[u8]) -> Result<Vec<String>, X509Error> {
    let mut wrapper = Der::new(explicit);
    let extensions = wrapper.expect(SEQUENCE, "its extensions are not a sequence")?;
    let mut extensions = Der::new(extensions);
    while !extensions.is_empty() {
        let ext = extensions.expect(SEQUENCE, "an extension is not a sequence")?;
        let mut ext = Der::new(ext);
        let oid = ext.expect(OID, "an extension has no type")?;
        if ext.peek_tag() == Some(BOOLEAN) {
            ext.next()?;
        }
        let value = ext.expect(OCTET_STRING, "an extension has no value")?;
        if oid != SUBJECT_ALT_NAME {
            continue;
        }
        let mut names = Der::new(value);
        let names = names.expect(SEQUENCE, "the alternative names are not a sequence")?;
        let mut names = Der::new(names);
        let mut dns = Vec::new();
        while !names.is_empty() {
            let (tag, content) = names.next()?;
            if tag == DNS_NAME_TAG {
                dns.push(String::from_utf8_lossy(content).into_owned());
            }
        }
        return Ok(dns);
    }
    Ok(Vec::new())
}

/// UTCTime or GeneralizedTime (`Z` form, as RFC 5280 requires) to Unix seconds.
fn time((tag, content): (u8, &[u8])) -> Result<i64, X509Error> {
    let text = std::str::from_utf8(content).map_err(|_| X509Error("a time is not text"))?;
    let digits = text
        .strip_suffix('Z')
        .ok_or(X509Error("a time is not in UTC"))?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(X509Error("a time is not digits"));
    }
    let n = |r: std::ops::Range<usize>| -> Result<i64, X509Error> {
        digits
            .get(r)
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or(X509Error("a time is too short"))
    };
    let (year, rest) = match (tag, digits.len()) {
        (UTC_TIME, 12) => {
            let yy = n(0..2)?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
        }
        (GENERALIZED_TIME, 14) => (n(0..4)?, 4),
        _ => return Err(X509Error("a time has the wrong form")),
    };
    let (month, day) = (n(rest..rest + 2)?, n(rest + 2..rest + 4)?);
    let (hour, minute, second) = (
        n(rest + 4..rest + 6)?,
        n(rest + 6..rest + 8)?,
        n(rest + 8..rest + 10)?,
    );
    let month = u8::try_from(month)
        .ok()
        .and_then(|m| time::Month::try_from(m).ok())
        .ok_or(X509Error("a time is out of range"))?;
    let date = i32::try_from(year)
        .ok()
        .zip(u8::try_from(day).ok())
        .and_then(|(y, d)| time::Date::from_calendar_date(y, month, d).ok())
        .ok_or(X509Error("a time is out of range"))?;
    // A leap second (60) is taken as the next second, as the clock shows it.
    if hour > 23 || minute > 59 || second > 60 {
        return Err(X509Error("a time is out of range"));
    }
    Ok(date.midnight().assume_utc().unix_timestamp() + hour * 3600 + minute * 60 + second)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testca::TestCa;

    fn openssl(args: &[&str]) -> String {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn reads_what_openssl_reads() {
        let ca = TestCa::new("x509");
        let leaf = ca.leaf(
            "leaf",
            &["api.example.test", "www.example.test", "127.0.0.1"],
        );
        let pem = std::fs::read(&leaf.cert).unwrap();
        let der = crate::pem::certificates(&pem, "leaf").unwrap().remove(0);
        let info = describe(der.as_ref()).unwrap();
        let path = leaf.cert.to_str().unwrap();
        assert_eq!(info.subject, "O=Gatehouse Tests, CN=api.example.test");
        assert_eq!(info.issuer, "CN=Gatehouse Test CA x509");
        let fingerprint = openssl(&["x509", "-in", path, "-noout", "-fingerprint", "-sha1"]);
        assert_eq!(
            fingerprint
                .trim()
                .rsplit('=')
                .next()
                .unwrap()
                .replace(':', ""),
            info.thumbprint
        );
        let serial = openssl(&["x509", "-in", path, "-noout", "-serial"]);
        assert_eq!(
            serial
                .trim()
                .trim_start_matches("serial=")
                .trim_start_matches('0'),
            info.serial_number.trim_start_matches('0')
        );
        let dates = openssl(&[
            "x509",
            "-in",
            path,
            "-noout",
            "-startdate",
            "-enddate",
            "-dateopt",
            "iso_8601",
        ]);
        let unix = |line: &str| {
            let t = line.split_once('=').unwrap().1.trim();
            time::OffsetDateTime::parse(
                &t.replace(' ', "T"),
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap()
            .unix_timestamp()
        };
        let mut lines = dates.lines();
        assert_eq!(info.not_before, unix(lines.next().unwrap()));
        assert_eq!(info.not_after, unix(lines.next().unwrap()));
        assert_eq!(info.not_after - info.not_before, 30 * 86_400);
        assert_eq!(info.dns_names, ["api.example.test", "www.example.test"]);
    }

    #[test]
    fn times_and_names() {
        assert_eq!(time((UTC_TIME, b"700101000000Z")).unwrap(), 0);
        assert_eq!(time((UTC_TIME, b"491231235959Z")).unwrap(), 2_524_607_999);
        assert_eq!(
            time((GENERALIZED_TIME, b"20000229120000Z")).unwrap(),
            951_825_600
        );
        assert!(time((UTC_TIME, b"701301000000Z")).is_err());
        assert!(time((UTC_TIME, b"7001010000Z")).is_err());
        assert_eq!(
            oid_text(&[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D]),
            "1.2.840.113549"
        );
        assert_eq!(quote("a, b"), "\"a, b\"");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [
            &b""[..],
            b"\x30",
            b"\x30\x84\xff\xff\xff\xff",
            b"\x30\x03\x30\x01",
            b"\x30\x80",
        ] {
            assert!(describe(bytes).is_err());
        }
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_end_in_a_value_or_an_error(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = describe(&bytes);
        }

        #[test]
        fn truncated_certificates_are_refused(cut in 0usize..400) {
            let ca = CA.with(|c| c.clone());
            let der = crate::pem::certificates(&std::fs::read(&ca.1).unwrap(), "c").unwrap().remove(0);
            let bytes = der.as_ref();
            let cut = cut.min(bytes.len().saturating_sub(1));
            proptest::prop_assert!(describe(&bytes[..cut]).is_err());
        }
    }

    thread_local! {
        static CA: (TestCa, std::path::PathBuf) = {
            let ca = TestCa::new("x509-prop");
            let leaf = ca.leaf("leaf", &["a.test"]);
            (ca, leaf.cert)
        };
    }
}
