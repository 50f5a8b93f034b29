//! `System.Uri` and `UriBuilder` (parsed once into parts; `new Uri(…).Host`,
//! `context.Request.Url.ToUri()`, `new UriBuilder(u) { Host = "…" }.Uri`),
//! `System.Net.WebUtility` (`UrlEncode/UrlDecode/HtmlEncode/HtmlDecode`) and the `AsBasic()`
//! extension that reads an HTTP Basic `Authorization` header value.

use std::fmt::Write as _;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::{CallTys, Member, P, Rt, Sig, SigErr, arg_i64, arg_opt_str, arg_str, sig};
use crate::error::{ErrorKind, RtResult, RuntimeError};
use crate::types::{Class, Ty};
use crate::value::{Obj, Value};

/// An absolute URI taken apart. `path` keeps its escapes; `query` and `fragment` are without
/// their `?` / `#`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct UriParts {
    scheme: String,
    user_info: String,
    host: String,
    /// As written; `None` for the scheme's default.
    port: Option<u16>,
    path: String,
    query: String,
    fragment: String,
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        "ftp" => Some(21),
        _ => None,
    }
}

fn invalid(text: &str) -> RuntimeError {
    RuntimeError::format(format_args!(
        "Invalid URI: '{text}' is not an absolute URI (scheme://host/path)."
    ))
}

impl UriParts {
    pub(crate) fn parse(text: &str) -> RtResult<Self> {
        let t = text.trim();
        let (scheme, rest) = t.split_once("://").ok_or_else(|| invalid(text))?;
        let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if !scheme_ok {
            return Err(invalid(text));
        }
        let (rest, fragment) = rest.split_once('#').unwrap_or((rest, ""));
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (user_info, host_port) = match authority.rsplit_once('@') {
            Some((u, h)) => (u, h),
            None => ("", authority),
        };
        let (host, port) = if host_port.starts_with('[') {
            match host_port.find(']') {
                Some(end) => (&host_port[..=end], host_port[end + 1..].strip_prefix(':')),
                None => (host_port, None),
            }
        } else {
            match host_port.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (host_port, None),
            }
        };
        let port = match port {
            Some(p) => Some(p.parse::<u16>().map_err(|_| {
                RuntimeError::format(format_args!(
                    "Invalid URI: the port of '{text}' is not a number from 0 to 65535."
                ))
            })?),
            None => None,
        };
        if host.is_empty() {
            return Err(RuntimeError::format(format_args!(
                "Invalid URI: '{text}' has no host."
            )));
        }
        let scheme = scheme.to_ascii_lowercase();
        let port = port.filter(|p| Some(*p) != default_port(&scheme));
        Ok(Self {
            scheme,
            user_info: user_info.to_owned(),
            host: host.to_ascii_lowercase(),
            port,
            path: if path.is_empty() {
                "/".to_owned()
            } else {
                path.to_owned()
            },
            query: query.to_owned(),
            fragment: fragment.to_owned(),
        })
    }

    fn port_number(&self) -> i32 {
        self.port
            .or_else(|| default_port(&self.scheme))
            .map_or(-1, i32::from)
    }

    fn authority(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.clone(),
        }
    }

    fn prefixed(prefix: char, s: &str) -> String {
        if s.is_empty() {
            String::new()
        } else {
            format!("{prefix}{s}")
        }
    }

    pub(crate) fn to_uri_string(&self) -> String {
        let mut out = String::with_capacity(
            self.scheme.len() + self.host.len() + self.path.len() + self.query.len() + 16,
        );
        let _ = write!(out, "{}://", self.scheme);
        if !self.user_info.is_empty() {
            let _ = write!(out, "{}@", self.user_info);
        }
        out.push_str(&self.authority());
        out.push_str(&self.path);
        out.push_str(&Self::prefixed('?', &self.query));
        out.push_str(&Self::prefixed('#', &self.fragment));
        out
    }

    /// `new Uri(baseUri, relative)`: RFC 3986 reference resolution, without dot segments.
    fn join(&self, relative: &str) -> RtResult<Self> {
        if relative.contains("://") {
            return Self::parse(relative);
        }
        let mut out = self.clone();
        out.fragment.clear();
        let (rest, fragment) = relative.split_once('#').unwrap_or((relative, ""));
        out.fragment = fragment.to_owned();
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        if path.is_empty() {
            if let Some(q) = query {
                out.query = q.to_owned();
            }
            return Ok(out);
        }
        out.query = query.unwrap_or("").to_owned();
        out.path = if path.starts_with('/') {
            path.to_owned()
        } else {
            let dir = self.path.rfind('/').map_or("/", |i| &self.path[..=i]);
            format!("{dir}{path}")
        };
        Ok(out)
    }
}

/// Which of the two classes a handle is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UriKind {
    Uri,
    Builder,
}

pub(crate) fn uri_value(kind: UriKind, parts: UriParts) -> Value {
    Value::obj(Obj::Uri(kind, Arc::new(parts)))
}

pub(crate) fn new_sig(class: Class, c: &CallTys<'_>) -> Sig {
    use P::{Any, Int, Str};
    match class {
        Class::Uri => sig(c, &[&[Str], &[Any, Str]], Ty::Uri),
        Class::UriBuilder => sig(
            c,
            &[
                &[],
                &[Any],
                &[Str, Str],
                &[Str, Str, Int],
                &[Str, Str, Int, Str],
            ],
            Ty::UriBuilder,
        ),
        _ => Err(SigErr::NotFound),
    }
}

fn parts_of(v: &Value, name: &str) -> RtResult<UriParts> {
    match v {
        Value::Handle(h) => match &h.0 {
            Obj::Uri(_, p) => Ok((**p).clone()),
            Obj::Url(u) => UriParts::parse(u),
            _ => Err(RuntimeError::cast(v.type_name(), "Uri")),
        },
        Value::String(s) => UriParts::parse(s),
        Value::Null => Err(super::null_argument(name)),
        other => Err(RuntimeError::cast(other.type_name(), "Uri")),
    }
}

pub(crate) fn new_value(class: Class, args: &[Value]) -> RtResult<Value> {
    match (class, args.len()) {
        (Class::Uri, 1) => Ok(uri_value(
            UriKind::Uri,
            UriParts::parse(arg_str(args, 0, "uriString")?)?,
        )),
        (Class::Uri, _) => {
            let base = parts_of(&args[0], "baseUri")?;
            let joined = base.join(arg_str(args, 1, "relativeUri")?)?;
            Ok(uri_value(UriKind::Uri, joined))
        }
        (_, 0) => Ok(uri_value(
            UriKind::Builder,
            UriParts::parse("http://localhost/")?,
        )),
        (_, 1) => Ok(uri_value(UriKind::Builder, parts_of(&args[0], "uri")?)),
        _ => {
            let scheme = arg_str(args, 0, "schemeName")?;
            let host = arg_str(args, 1, "hostName")?;
            let mut text = format!("{scheme}://{host}");
            if args.len() > 2 {
                let port = arg_i64(args, 2)?;
                if port >= 0 {
                    let _ = write!(text, ":{port}");
                }
            }
            if let Some(path) = arg_opt_str(args, 3)? {
                if !path.starts_with('/') {
                    text.push('/');
                }
                text.push_str(path);
            }
            Ok(uri_value(UriKind::Builder, UriParts::parse(&text)?))
        }
    }
}

pub(crate) fn prop_ty(ty: &Ty, m: Member) -> Option<Ty> {
    use Member as M;
    match (ty, m) {
        (
            Ty::Uri,
            M::Scheme
            | M::Host
            | M::AbsolutePath
            | M::Query
            | M::Fragment
            | M::PathAndQuery
            | M::AbsoluteUri
            | M::Authority
            | M::UserInfo
            | M::OriginalString,
        ) => Some(Ty::String),
        (Ty::Uri, M::IsDefaultPort | M::IsAbsoluteUri) => Some(Ty::Bool),
        (Ty::UriBuilder, M::Scheme | M::Host | M::Path | M::Query | M::Fragment) => {
            Some(Ty::String)
        }
        (Ty::Uri | Ty::UriBuilder, M::Port) => Some(Ty::Int),
        (Ty::UriBuilder, M::Uri) => Some(Ty::Uri),
        _ => None,
    }
}

/// The members `new UriBuilder(…) { Name = value }` and `builder.Name = value` may set, and the
/// type each takes.
pub(crate) fn settable(m: Member) -> Option<Ty> {
    use Member as M;
    match m {
        M::Scheme | M::Host | M::Path | M::Query | M::Fragment => Some(Ty::String),
        M::Port => Some(Ty::Int),
        _ => None,
    }
}

pub(crate) fn get(kind: UriKind, p: &UriParts, m: Member) -> RtResult<Value> {
    use Member as M;
    let s = |v: String| Value::String(v.into());
    Ok(match (kind, m) {
        (_, M::Scheme) => s(p.scheme.clone()),
        (_, M::Host) => s(p.host.clone()),
        (_, M::Port) => Value::Int(p.port_number()),
        (UriKind::Uri, M::AbsolutePath) | (UriKind::Builder, M::Path) => s(p.path.clone()),
        (_, M::Query) => s(UriParts::prefixed('?', &p.query)),
        (_, M::Fragment) => s(UriParts::prefixed('#', &p.fragment)),
        (UriKind::Uri, M::PathAndQuery) => {
            s(format!("{}{}", p.path, UriParts::prefixed('?', &p.query)))
        }
        (UriKind::Uri, M::AbsoluteUri | M::OriginalString) => s(p.to_uri_string()),
        (UriKind::Uri, M::Authority) => s(p.authority()),
        (UriKind::Uri, M::UserInfo) => s(p.user_info.clone()),
        (UriKind::Uri, M::IsDefaultPort) => Value::Bool(p.port.is_none()),
        (UriKind::Uri, M::IsAbsoluteUri) => Value::Bool(true),
        (UriKind::Builder, M::Uri) => uri_value(UriKind::Uri, p.clone()),
        _ => return Err(RuntimeError::no_member(type_name(kind), m.name())),
    })
}

pub(crate) fn type_name(kind: UriKind) -> &'static str {
    match kind {
        UriKind::Uri => "Uri",
        UriKind::Builder => "UriBuilder",
    }
}

/// `builder.Name = value`: a builder with one part changed.
pub(crate) fn set(p: &UriParts, m: Member, v: &Value) -> RtResult<Value> {
    use Member as M;
    let mut out = p.clone();
    let text = || -> RtResult<String> {
        Ok(match v {
            Value::Null => String::new(),
            Value::String(s) => s.to_string(),
            other => other.to_policy_string(),
        })
    };
    match m {
        M::Scheme => {
            let s = text()?.to_ascii_lowercase();
            let s = s.trim_end_matches("://").trim_end_matches(':').to_owned();
            out.port = out.port.filter(|port| Some(*port) != default_port(&s));
            out.scheme = s;
        }
        M::Host => out.host = text()?.to_ascii_lowercase(),
        M::Path => {
            let t = text()?;
            out.path = if t.starts_with('/') {
                t
            } else {
                format!("/{t}")
            };
        }
        M::Query => {
            let t = text()?;
            out.query = t.strip_prefix('?').unwrap_or(&t).to_owned();
        }
        M::Fragment => out.fragment = text()?.trim_start_matches('#').to_owned(),
        M::Port => {
            let port = match v.number() {
                Some(n) => n.as_f64(),
                None => return Err(RuntimeError::cast(v.type_name(), "Int32")),
            };
            out.port = if port < 0.0 {
                None
            } else {
                let port = u16::try_from(port as i64).map_err(|_| {
                    RuntimeError::out_of_range(format_args!(
                        "UriBuilder.Port must be from -1 to 65535, not {port}."
                    ))
                })?;
                Some(port).filter(|p| Some(*p) != default_port(&out.scheme))
            };
        }
        _ => return Err(RuntimeError::no_member("UriBuilder", m.name())),
    }
    Ok(uri_value(UriKind::Builder, out))
}

// ---- WebUtility ----------------------------------------------------------------------------

pub(crate) fn static_sig(class: Class, m: Member, c: &CallTys<'_>) -> Sig {
    use Member as M;
    match (class, m) {
        (Class::WebUtility, M::UrlEncode | M::UrlDecode | M::HtmlEncode | M::HtmlDecode) => {
            sig(c, &[&[P::Str]], Ty::String)
        }
        _ => Err(SigErr::NotFound),
    }
}

pub(crate) fn static_call(m: Member, args: &[Value], rt: &mut Rt<'_>) -> RtResult<Value> {
    use Member as M;
    // .NET returns null for a null input.
    let Some(s) = arg_opt_str(args, 0)? else {
        return Ok(Value::Null);
    };
    rt.alloc(s.len() * 3)?;
    Ok(Value::String(
        match m {
            M::UrlEncode => url_encode(s),
            M::UrlDecode => super::url::form_decode(s),
            M::HtmlEncode => html_encode(s),
            M::HtmlDecode => html_decode(s),
            _ => return Err(RuntimeError::no_member("WebUtility", m.name())),
        }
        .into(),
    ))
}

/// `WebUtility.UrlEncode`: space as `+`, `-_.!*()` and alphanumerics kept, the rest as
/// upper-case `%XX` of the UTF-8 bytes.
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b' ' => out.push('+'),
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'_'
            | b'.'
            | b'!'
            | b'*'
            | b'('
            | b')' => {
                out.push(char::from(b));
            }
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

fn html_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\u{a0}'..='\u{ff}' => {
                let _ = write!(out, "&#{};", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

fn html_decode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let entity = rest[1..]
            .find(';')
            .filter(|end| *end <= 10)
            .map(|end| &rest[1..=end]);
        let decoded = entity.and_then(|e| match e {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "nbsp" => Some('\u{a0}'),
            _ => {
                let n = e.strip_prefix('#')?;
                let code = match n.strip_prefix(['x', 'X']) {
                    Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                    None => n.parse().ok()?,
                };
                char::from_u32(code)
            }
        });
        match (decoded, entity) {
            (Some(c), Some(e)) => {
                out.push(c);
                rest = &rest[e.len() + 2..];
            }
            _ => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

// ---- AsBasic -------------------------------------------------------------------------------

/// `value.AsBasic()`: the credentials of an HTTP Basic `Authorization` value
/// (`Basic base64(user:password)`), or null when it isn't one.
pub(crate) fn as_basic(value: &str) -> Value {
    let parsed = value
        .trim()
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .and_then(|(_, token)| STANDARD.decode(token.trim()).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| {
            text.split_once(':')
                .map(|(u, p)| (Arc::<str>::from(u), Arc::<str>::from(p)))
        });
    match parsed {
        Some(creds) => Value::obj(Obj::Basic(Arc::new(creds))),
        None => Value::Null,
    }
}

pub(crate) fn basic_get(creds: &(Arc<str>, Arc<str>), m: Member) -> RtResult<Value> {
    match m {
        Member::UserId => Ok(Value::String(creds.0.clone())),
        Member::Password => Ok(Value::String(creds.1.clone())),
        _ => Err(RuntimeError::new(
            ErrorKind::Binder,
            format_args!(
                "'BasicAuthCredentials' does not contain a definition for '{}'",
                m.name()
            ),
        )),
    }
}
