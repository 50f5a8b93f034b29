//! `IUrl` (`context.Request.Url`, `OriginalUrl`, `Api.ServiceUrl`) and its `Query`
//! dictionary, computed from the absolute URL text only when a member is read. Query values
//! are percent-decoded; several values of one parameter are joined with `,`.

use super::{CallTys, Member, P, Sig, SigErr, arg_opt_str, arg_str, len_value, sig};
use crate::error::{RtResult, RuntimeError};
use crate::types::Ty;
use crate::value::{Obj, Value};

pub(crate) fn prop_ty(ty: &Ty, m: Member) -> Option<Ty> {
    use Member as M;
    match (ty, m) {
        (Ty::Url, M::Scheme | M::Host | M::Path | M::QueryString) => Some(Ty::String),
        (Ty::Url, M::Port) => Some(Ty::Int),
        (Ty::Url, M::Query) => Some(Ty::Query),
        (Ty::Query, M::Count) => Some(Ty::Int),
        (Ty::Query, M::Keys) => Some(Ty::array_of(Ty::String)),
        _ => None,
    }
}

pub(crate) fn method_sig(ty: &Ty, m: Member, c: &CallTys<'_>) -> Sig {
    match (ty, m) {
        (Ty::Url, Member::GetQueryParameterValueOrDefault)
        | (Ty::Query, Member::GetValueOrDefault) => {
            sig(c, &[&[P::Str], &[P::Str, P::Str]], Ty::String)
        }
        (Ty::Query, Member::ContainsKey) => sig(c, &[&[P::Str]], Ty::Bool),
        _ => Err(SigErr::NotFound),
    }
}

/// The parts of an absolute URL.
pub(crate) struct Parts<'a> {
    pub scheme: &'a str,
    pub host: &'a str,
    pub port: Option<&'a str>,
    pub path: &'a str,
    pub query: &'a str,
}

pub(crate) fn split(url: &str) -> Parts<'_> {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let rest = rest.split('#').next().unwrap_or("");
    let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = match before_query.find('/') {
        Some(i) if !scheme.is_empty() => (&before_query[..i], &before_query[i..]),
        None if !scheme.is_empty() => (before_query, ""),
        _ => ("", before_query),
    };
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let (host, port) = if authority.starts_with('[') {
        match authority.find(']') {
            Some(end) => (&authority[..=end], authority[end + 1..].strip_prefix(':')),
            None => (authority, None),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    Parts {
        scheme,
        host,
        port,
        path,
        query,
    }
}

pub(crate) fn url_prop(url: &str, m: Member) -> RtResult<Value> {
    let p = split(url);
    let s = |v: &str| Value::String(v.into());
    Ok(match m {
        Member::Scheme => s(p.scheme),
        Member::Host => s(p.host),
        Member::Port => Value::Int(match p.port.and_then(|v| v.parse().ok()) {
            Some(port) => port,
            None if p.scheme.eq_ignore_ascii_case("https") => 443,
            None if p.scheme.eq_ignore_ascii_case("http") => 80,
            None => -1,
        }),
        Member::Path => s(if p.path.is_empty() { "/" } else { p.path }),
        Member::QueryString => s(&if p.query.is_empty() {
            String::new()
        } else {
            format!("?{}", p.query)
        }),
        Member::Query => Value::obj(Obj::Query(p.query.into())),
        _ => return Err(RuntimeError::no_member("IUrl", m.name())),
    })
}

pub(crate) fn url_call(url: &str, m: Member, args: &[Value]) -> RtResult<Value> {
    match m {
        Member::GetQueryParameterValueOrDefault => {
            query_call(split(url).query, Member::GetValueOrDefault, args)
        }
        _ => Err(RuntimeError::no_member("IUrl", m.name())),
    }
}

/// Decoded (name, value) pairs of a query string.
fn params(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (form_decode(k), form_decode(v))
        })
        .collect()
}

pub(crate) fn form_decode(s: &str) -> String {
    percent_decode(&s.replace('+', " "))
}

/// Decodes `%XX` escapes (invalid ones are kept as written), then UTF-8 (lossy).
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(b) = hex {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn values(query: &str, name: &str) -> Vec<String> {
    params(query)
        .into_iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v)
        .collect()
}

pub(crate) fn query_prop(query: &str, m: Member) -> RtResult<Value> {
    let ps = params(query);
    let mut keys: Vec<String> = Vec::new();
    for (k, _) in ps {
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    match m {
        Member::Count => Ok(len_value(keys.len())),
        Member::Keys => Ok(Value::Array(
            keys.into_iter().map(|k| Value::String(k.into())).collect(),
        )),
        _ => Err(RuntimeError::no_member(
            "IReadOnlyDictionary<string, string[]>",
            m.name(),
        )),
    }
}

pub(crate) fn query_call(query: &str, m: Member, args: &[Value]) -> RtResult<Value> {
    let name = arg_str(args, 0, "name")?;
    let found = values(query, name);
    match m {
        Member::GetValueOrDefault => Ok(if found.is_empty() {
            arg_opt_str(args, 1)?.map_or(Value::Null, |d| Value::String(d.into()))
        } else {
            Value::String(found.join(",").into())
        }),
        Member::ContainsKey => Ok(Value::Bool(!found.is_empty())),
        _ => Err(RuntimeError::no_member(
            "IReadOnlyDictionary<string, string[]>",
            m.name(),
        )),
    }
}

pub(crate) fn query_index(query: &str, idx: &Value) -> RtResult<Value> {
    let name = arg_str(std::slice::from_ref(idx), 0, "key")?;
    let found = values(query, name);
    if found.is_empty() {
        return Err(RuntimeError::key_not_found(name));
    }
    Ok(Value::Array(
        found.into_iter().map(|v| Value::String(v.into())).collect(),
    ))
}

/// Query parameters as (name, string[]) pairs, for LINQ and `foreach`.
pub(crate) fn query_pairs(query: &str) -> Vec<Value> {
    let mut grouped: Vec<(String, Vec<Value>)> = Vec::new();
    for (k, v) in params(query) {
        match grouped.iter_mut().find(|(name, _)| *name == k) {
            Some((_, vs)) => vs.push(Value::String(v.into())),
            None => grouped.push((k, vec![Value::String(v.into())])),
        }
    }
    grouped
        .into_iter()
        .map(|(k, vs)| Value::pair(Value::String(k.into()), Value::Array(vs.into())))
        .collect()
}

/// `Uri.EscapeDataString`: everything but RFC 3986 unreserved characters, upper-case hex.
pub(crate) fn escape_data_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_urls() {
        let p = split("https://user@api.example.com:8443/a/b?x=1&y=%20z#frag");
        assert_eq!(
            (p.scheme, p.host, p.port, p.path, p.query),
            (
                "https",
                "api.example.com",
                Some("8443"),
                "/a/b",
                "x=1&y=%20z"
            )
        );
        let p = split("http://[::1]:80");
        assert_eq!((p.host, p.port, p.path), ("[::1]", Some("80"), ""));
        assert_eq!(url_prop("http://h", Member::Port).unwrap(), Value::Int(80));
        assert_eq!(url_prop("http://h", Member::Path).unwrap(), Value::str("/"));
    }

    #[test]
    fn query_values() {
        let q = "tag=a&tag=b&q=hello+world%21&bad=%zz";
        assert_eq!(
            query_call(q, Member::GetValueOrDefault, &[Value::str("tag")]).unwrap(),
            Value::str("a,b")
        );
        assert_eq!(
            query_call(q, Member::GetValueOrDefault, &[Value::str("q")]).unwrap(),
            Value::str("hello world!")
        );
        assert_eq!(
            query_call(q, Member::GetValueOrDefault, &[Value::str("bad")]).unwrap(),
            Value::str("%zz")
        );
        assert_eq!(
            query_call(
                q,
                Member::GetValueOrDefault,
                &[Value::str("no"), Value::str("d")]
            )
            .unwrap(),
            Value::str("d")
        );
        assert_eq!(escape_data_string("a b&c/é"), "a%20b%26c%2F%C3%A9");
    }
}
