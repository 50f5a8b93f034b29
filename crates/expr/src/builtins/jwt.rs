//! `AsJwt()` / `TryParseJwt()`: the header and payload of a compact JWS, decoded WITHOUT
//! verifying anything (as Azure's helpers do; `validate-jwt` is the policy that verifies), and
//! the `Jwt` members (`Subject`, `Issuer`, `Audiences`, `ExpirationTime`, `Claims`…).

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::{CallTys, Member, P, Sig, SigErr, arg_opt_str, arg_str, len_value, sig};
use crate::datetime::{DateTime, TICKS_PER_SECOND};
use crate::error::{RtResult, RuntimeError};
use crate::json::{Json, JsonObject};
use crate::limits::MAX_TOKEN_BYTES;
use crate::types::Ty;
use crate::value::{Obj, Value};

/// A decoded, unverified JWT.
#[derive(Debug)]
pub struct Jwt {
    header: Arc<JsonObject>,
    payload: Arc<JsonObject>,
}

impl Jwt {
    /// The JOSE header.
    pub fn header(&self) -> &JsonObject {
        &self.header
    }

    /// The claims.
    pub fn payload(&self) -> &JsonObject {
        &self.payload
    }

    /// Claim `name` as strings: an array claim gives its items, any other non-string its JSON.
    fn claim(&self, name: &str) -> Option<Vec<String>> {
        self.payload.get(name).map(|v| match v {
            Json::Array(items) => items.iter().map(claim_text).collect(),
            other => vec![claim_text(other)],
        })
    }

    fn string_claim(&self, name: &str) -> Value {
        self.payload
            .get(name)
            .map_or(Value::Null, |v| Value::String(claim_text(v).into()))
    }

    fn time_claim(&self, name: &str) -> Value {
        let seconds = match self.payload.get(name) {
            Some(Json::Int(i)) => *i as f64,
            Some(Json::Float(f)) => *f,
            _ => return Value::Null,
        };
        let t = std::time::SystemTime::UNIX_EPOCH;
        let ticks = (seconds * TICKS_PER_SECOND as f64) as i64;
        DateTime::from_system_time(t)
            .add_ticks(ticks)
            .map_or(Value::Null, Value::DateTime)
    }
}

fn claim_text(v: &Json) -> String {
    match v {
        Json::String(s) => s.to_string(),
        other => other.to_json_string(false),
    }
}

/// Decodes a compact JWS (`header.payload.signature`); `None` when it isn't one, or when it is
/// longer than [`MAX_TOKEN_BYTES`] (refused before any decoding).
pub fn parse(token: &str) -> Option<Jwt> {
    let token = token.trim();
    if token.len() > MAX_TOKEN_BYTES {
        return None;
    }
    let mut parts = token.split('.');
    let (h, p, _sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let decode = |part: &str| -> Option<Arc<JsonObject>> {
        let bytes = URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
        match Json::from_slice(&bytes).ok()? {
            Json::Object(o) => Some(o),
            _ => None,
        }
    };
    Some(Jwt {
        header: decode(h)?,
        payload: decode(p)?,
    })
}

/// `TryParseJwt(out var jwt)`.
pub(crate) fn try_parse(token: &str) -> (Value, Value) {
    match parse(token) {
        Some(j) => (Value::Bool(true), Value::Jwt(Arc::new(j))),
        None => (Value::Bool(false), Value::Null),
    }
}

pub(crate) fn prop_ty(ty: &Ty, m: Member) -> Option<Ty> {
    use Member as M;
    Some(match (ty, m) {
        (Ty::Jwt, M::Subject | M::Issuer | M::Id | M::Algorithm | M::Type) => Ty::String,
        (Ty::Jwt, M::Audiences) => Ty::array_of(Ty::String),
        (Ty::Jwt, M::ExpirationTime | M::NotBefore | M::IssuedAt) => Ty::DateTime,
        (Ty::Jwt, M::Claims) => Ty::Claims,
        (Ty::Claims, M::Count) => Ty::Int,
        (Ty::Claims, M::Keys) => Ty::array_of(Ty::String),
        _ => return None,
    })
}

pub(crate) fn method_sig(ty: &Ty, m: Member, c: &CallTys<'_>) -> Sig {
    match (ty, m) {
        // With a `string[]` default, .NET's generic `GetValueOrDefault` of the dictionary:
        // the claim's values.
        (Ty::Claims, Member::GetValueOrDefault) if matches!(c.args, [_, Ty::Array(_)]) => {
            match c.args {
                [Ty::String | Ty::Object, Ty::Array(t)] if matches!(**t, Ty::String) => {
                    Ok(Ty::array_of(Ty::String))
                }
                _ => Err(SigErr::Types),
            }
        }
        (Ty::Claims, Member::GetValueOrDefault) => {
            sig(c, &[&[P::Str], &[P::Str, P::Str]], Ty::String)
        }
        (Ty::Claims, Member::ContainsKey) => sig(c, &[&[P::Str]], Ty::Bool),
        _ => Err(SigErr::NotFound),
    }
}

pub(crate) fn get(j: &Arc<Jwt>, m: Member) -> RtResult<Value> {
    use Member as M;
    Ok(match m {
        M::Subject => j.string_claim("sub"),
        M::Issuer => j.string_claim("iss"),
        M::Id => j.string_claim("jti"),
        M::Audiences => Value::Array(
            j.claim("aud")
                .unwrap_or_default()
                .into_iter()
                .map(|s| Value::String(s.into()))
                .collect(),
        ),
        M::ExpirationTime => j.time_claim("exp"),
        M::NotBefore => j.time_claim("nbf"),
        M::IssuedAt => j.time_claim("iat"),
        M::Algorithm => j
            .header
            .get("alg")
            .map_or(Value::Null, |v| Value::String(claim_text(v).into())),
        M::Type => j
            .header
            .get("typ")
            .map_or(Value::Null, |v| Value::String(claim_text(v).into())),
        M::Claims => Value::obj(Obj::Claims(j.clone())),
        _ => return Err(RuntimeError::no_member("Jwt", m.name())),
    })
}

pub(crate) fn claims_prop(j: &Arc<Jwt>, m: Member) -> RtResult<Value> {
    match m {
        Member::Count => Ok(len_value(j.payload.len())),
        Member::Keys => Ok(Value::Array(
            j.payload.iter().map(|(k, _)| Value::str(k)).collect(),
        )),
        _ => Err(RuntimeError::no_member(
            "IReadOnlyDictionary<string, string[]>",
            m.name(),
        )),
    }
}

pub(crate) fn claims_call(j: &Arc<Jwt>, m: Member, args: &[Value]) -> RtResult<Value> {
    let name = arg_str(args, 0, "name")?;
    match m {
        Member::GetValueOrDefault if matches!(args.get(1), Some(Value::Array(_))) => {
            Ok(match j.claim(name) {
                Some(values) => Value::Array(
                    values
                        .into_iter()
                        .map(|s| Value::String(s.into()))
                        .collect(),
                ),
                None => args[1].clone(),
            })
        }
        Member::GetValueOrDefault => Ok(match j.claim(name) {
            Some(values) => Value::String(values.join(",").into()),
            None => arg_opt_str(args, 1)?.map_or(Value::Null, Value::str),
        }),
        Member::ContainsKey => Ok(Value::Bool(j.payload.get(name).is_some())),
        _ => Err(RuntimeError::no_member(
            "IReadOnlyDictionary<string, string[]>",
            m.name(),
        )),
    }
}

pub(crate) fn claims_index(j: &Arc<Jwt>, idx: &Value) -> RtResult<Value> {
    let name = arg_str(std::slice::from_ref(idx), 0, "key")?;
    j.claim(name)
        .map(|vs| Value::Array(vs.into_iter().map(|s| Value::String(s.into())).collect()))
        .ok_or_else(|| RuntimeError::key_not_found(name))
}

/// Claims as (name, string[]) pairs, for LINQ and `foreach`.
pub(crate) fn claim_pairs(j: &Arc<Jwt>) -> Vec<Value> {
    j.payload
        .iter()
        .map(|(k, _)| {
            let values = j.claim(k).unwrap_or_default();
            Value::pair(
                Value::str(k),
                Value::Array(
                    values
                        .into_iter()
                        .map(|s| Value::String(s.into()))
                        .collect(),
                ),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "eyJhbGciOiAiSFMyNTYiLCAidHlwIjogIkpXVCJ9.eyJzdWIiOiAiYWxpY2UiLCAiYXVkIjogImdoIiwgImlzcyI6ICJodHRwczovL2lzc3Vlci5leGFtcGxlIiwgImV4cCI6IDE5MDAwMDAwMDAsICJyb2xlcyI6IFsicmVhZGVyIiwgIndyaXRlciJdfQ.c2lnbmF0dXJl";

    #[test]
    fn decodes_without_verifying() {
        let j = Arc::new(parse(TOKEN).unwrap());
        assert_eq!(get(&j, Member::Subject).unwrap(), Value::str("alice"));
        assert_eq!(get(&j, Member::Algorithm).unwrap(), Value::str("HS256"));
        let exp = get(&j, Member::ExpirationTime).unwrap();
        assert_eq!(exp.to_policy_string(), "03/17/2030 17:46:40");
        let roles = claims_call(&j, Member::GetValueOrDefault, &[Value::str("roles")]).unwrap();
        assert_eq!(roles, Value::str("reader,writer"));
        assert!(parse("not a jwt").is_none());
        assert!(parse("a.b.c").is_none());
    }

    #[test]
    fn oversized_tokens_are_not_decoded() {
        let claims = format!("{{\"pad\":\"{}\"}}", "x".repeat(MAX_TOKEN_BYTES));
        let big = format!(
            "eyJhbGciOiJIUzI1NiJ9.{}.c2ln",
            URL_SAFE_NO_PAD.encode(claims)
        );
        assert!(parse(&big).is_none());
        let fits = format!(
            "eyJhbGciOiJIUzI1NiJ9.{}.c2ln",
            URL_SAFE_NO_PAD.encode(r#"{"sub":"a"}"#)
        );
        assert!(parse(&fits).is_some());
    }
}
