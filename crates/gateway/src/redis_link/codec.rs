//! How cache entries are written to Redis: a tag byte, then the entry. Responses keep status,
//! reason, headers, body and expiry; values keep their type when it is plain data (text,
//! bytes, numbers, booleans, JSON, GUIDs), and anything else is kept as its text, as the
//! gateway's own cache keeps values that refer to a request. An entry that does not decode
//! (another layout, a damaged value) is a miss.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use gatehouse_policy::expr::{Json, Value};
use gatehouse_policy::policies::{CacheEntry, CachedResponse};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

const RESPONSE: u8 = b'R';
const VALUE: u8 = b'V';

pub fn encode(entry: &CacheEntry) -> Vec<u8> {
    let mut out = Vec::with_capacity(entry.weight() + 16);
    match entry {
        CacheEntry::Response(r) => {
            out.push(RESPONSE);
            out.extend_from_slice(&r.status.as_u16().to_be_bytes());
            let expires = r
                .expires
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            out.extend_from_slice(&expires.to_be_bytes());
            chunk(&mut out, r.reason.as_deref().unwrap_or("").as_bytes());
            out.extend_from_slice(&(r.headers.len() as u32).to_be_bytes());
            for (name, value) in &r.headers {
                chunk(&mut out, name.as_str().as_bytes());
                chunk(&mut out, value.as_bytes());
            }
            out.extend_from_slice(&r.body);
        }
        CacheEntry::Value(v) => {
            out.push(VALUE);
            value(&mut out, v);
        }
    }
    out
}

fn chunk(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn value(out: &mut Vec<u8>, v: &Value) {
    let (tag, text): (u8, std::borrow::Cow<'_, [u8]>) = match v {
        Value::Null => (b'n', (&[][..]).into()),
        Value::Bool(b) => (b'b', (if *b { &b"1"[..] } else { &b"0"[..] }).into()),
        Value::Int(i) => (b'i', i.to_string().into_bytes().into()),
        Value::Long(l) => (b'l', l.to_string().into_bytes().into()),
        Value::Double(d) => (b'd', d.to_string().into_bytes().into()),
        Value::Char(c) => (b'c', c.to_string().into_bytes().into()),
        Value::String(s) => (b's', s.as_bytes().into()),
        Value::Bytes(b) => (b'y', (&b[..]).into()),
        Value::Json(j) => (b'j', j.to_json_string(false).into_bytes().into()),
        Value::Guid(g) => (b'g', g.to_string().into_bytes().into()),
        other => (b's', other.to_policy_string().into_bytes().into()),
    };
    out.push(tag);
    out.extend_from_slice(&text);
}

pub fn decode(bytes: &[u8]) -> Option<CacheEntry> {
    let (&tag, rest) = bytes.split_first()?;
    match tag {
        RESPONSE => response(rest).map(|r| CacheEntry::Response(Arc::new(r))),
        VALUE => decode_value(rest).map(CacheEntry::Value),
        _ => None,
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    fn chunk(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

fn response(bytes: &[u8]) -> Option<CachedResponse> {
    let mut r = Reader(bytes);
    let status = StatusCode::from_u16(u16::from_be_bytes(r.take(2)?.try_into().ok()?)).ok()?;
    let expires =
        UNIX_EPOCH + Duration::from_millis(u64::from_be_bytes(r.take(8)?.try_into().ok()?));
    let reason = std::str::from_utf8(r.chunk()?).ok()?;
    let count = r.u32()?;
    let mut headers = HeaderMap::with_capacity(count.min(256) as usize);
    for _ in 0..count {
        let name = HeaderName::from_bytes(r.chunk()?).ok()?;
        let value = HeaderValue::from_bytes(r.chunk()?).ok()?;
        headers.append(name, value);
    }
    Some(CachedResponse {
        status,
        reason: (!reason.is_empty()).then(|| reason.to_owned()),
        headers,
        body: Bytes::copy_from_slice(r.0),
        expires: expires.max(SystemTime::UNIX_EPOCH),
    })
}

fn decode_value(bytes: &[u8]) -> Option<Value> {
    let (&tag, rest) = bytes.split_first()?;
    let text = || std::str::from_utf8(rest).ok();
    Some(match tag {
        b'n' => Value::Null,
        b'b' => Value::Bool(rest == b"1"),
        b'i' => Value::Int(text()?.parse().ok()?),
        b'l' => Value::Long(text()?.parse().ok()?),
        b'd' => Value::Double(text()?.parse().ok()?),
        b'c' => Value::Char(text()?.chars().next()?),
        b's' => Value::String(text()?.into()),
        b'y' => Value::Bytes(rest.into()),
        b'j' => Value::Json(Json::parse(text()?).ok()?),
        b'g' => Value::Guid(text()?.parse().ok()?),
        _ => return None,
    })
}
