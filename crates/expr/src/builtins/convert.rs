//! Conversions between values: C# casts (`(int)x`, `(string)token`, `(JArray)x`), `as`,
//! `is`, implicit conversions (numeric widening, `string` → `JToken`), and the `Convert.ToX`
//! family. Newtonsoft's explicit conversions of `JToken` to primitives are included, so
//! `(string)body["name"]` and `body["n"].Value<int>()` behave as in Azure.

use std::sync::Arc;

use crate::error::{ErrorKind, RtResult, RuntimeError};
use crate::json::Json;
use crate::types::{JKind, Ty};
use crate::value::{Obj, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `(T)x`, and `Value<T>()`.
    Cast,
    /// `x as T`.
    As,
    /// `x is T`.
    Is,
    /// Assignment to a typed variable or parameter.
    Implicit,
    /// `Convert.ToX(x)`: also parses strings and rounds doubles.
    Convert,
}

pub(crate) fn convert(v: Value, to: &Ty, mode: Mode) -> RtResult<Value> {
    match mode {
        Mode::Is => return Ok(Value::Bool(is_type(&v, to))),
        Mode::As => return Ok(if is_type(&v, to) { v } else { Value::Null }),
        _ => {}
    }
    if is_type(&v, to) {
        return Ok(v);
    }
    match to {
        Ty::Object => Ok(v),
        Ty::Null => Ok(Value::Null),
        Ty::String => match &v {
            Value::Handle(h) if mode == Mode::Cast => match &h.0 {
                Obj::Xml(super::xml::XKind::Element, e) => {
                    Ok(Value::String(super::xml::value_of(e).into()))
                }
                Obj::XAttr(a) => Ok(Value::String(a.1.clone())),
                _ => to_string(v, mode),
            },
            _ => to_string(v, mode),
        },
        Ty::Int => Ok(Value::Int(to_int(&v, mode, 32)? as i32)),
        Ty::Long => Ok(Value::Long(to_int(&v, mode, 64)?)),
        Ty::Double => to_double(&v, mode).map(Value::Double),
        Ty::Bool => to_bool(&v, mode).map(Value::Bool),
        Ty::Char => match v {
            Value::Null => Err(RuntimeError::null_reference()),
            _ => {
                let code = to_int(&v, mode, 32)?;
                u32::try_from(code & 0xFFFF)
                    .ok()
                    .and_then(char::from_u32)
                    .map(Value::Char)
                    .ok_or_else(|| RuntimeError::cast(v.type_name(), "Char"))
            }
        },
        Ty::Json(kind) => to_json_kind(v, *kind),
        Ty::Bytes => match v {
            Value::Null => Ok(Value::Null),
            Value::Array(items) => items
                .iter()
                .map(|i| match i.number() {
                    Some(crate::value::Num::Int(n) | crate::value::Num::Long(n)) => {
                        u8::try_from(n).map_err(|_| {
                            RuntimeError::new(
                                ErrorKind::Overflow,
                                format_args!("Value {n} was either too large or too small for an unsigned byte."),
                            )
                        })
                    }
                    _ => Err(RuntimeError::cast(i.type_name(), "Byte")),
                })
                .collect::<RtResult<Vec<u8>>>()
                .map(|b| Value::Bytes(b.into())),
            _ => Err(RuntimeError::cast(v.type_name(), "Byte[]")),
        },
        Ty::DateTime => match &v {
            Value::Null => Err(RuntimeError::null_reference()),
            Value::Json(Json::String(s)) => parse_date(s),
            Value::String(s) if mode == Mode::Convert => parse_date(s),
            _ => Err(RuntimeError::cast(v.type_name(), "DateTime")),
        },
        Ty::Enum(t) => match v {
            Value::Int(i) => Ok(Value::obj(Obj::Enum(*t, i, None))),
            Value::Null => Err(RuntimeError::null_reference()),
            _ => Err(RuntimeError::cast(v.type_name(), &to.to_string())),
        },
        Ty::Array(elem) => match v {
            Value::Null => Ok(Value::Null),
            Value::Json(Json::Array(items)) if mode != Mode::Implicit => {
                let converted = items
                    .iter()
                    .map(|j| convert(Value::Json(j.clone()), elem, Mode::Cast))
                    .collect::<RtResult<Vec<_>>>()?;
                Ok(Value::Array(converted.into()))
            }
            _ => Err(RuntimeError::cast(v.type_name(), &to.to_string())),
        },
        _ => match v {
            Value::Null if !to.is_value_type() => Ok(Value::Null),
            Value::Null => Err(RuntimeError::null_reference()),
            _ => Err(RuntimeError::cast(v.type_name(), &to.to_string())),
        },
    }
}

fn parse_date(s: &str) -> RtResult<Value> {
    crate::datetime::DateTime::parse(s)
        .map(Value::DateTime)
        .ok_or_else(|| {
            RuntimeError::format(format_args!(
                "String '{s}' was not recognized as a valid DateTime."
            ))
        })
}

/// Whether `v`'s run-time type is `to` (C# `is`; `null` is never anything).
pub(crate) fn is_type(v: &Value, to: &Ty) -> bool {
    match (v, to) {
        (Value::Null, _) => false,
        (_, Ty::Object) => true,
        (Value::String(_), Ty::String | Ty::XNamespace)
        | (Value::Int(_), Ty::Int)
        | (Value::Long(_), Ty::Long)
        | (Value::Double(_), Ty::Double)
        | (Value::Bool(_), Ty::Bool)
        | (Value::Char(_), Ty::Char)
        | (Value::Array(_), Ty::Array(_))
        | (Value::Bytes(_), Ty::Bytes)
        | (Value::DateTime(_), Ty::DateTime)
        | (Value::TimeSpan(_), Ty::TimeSpan)
        | (Value::Guid(_), Ty::Guid)
        | (Value::Jwt(_), Ty::Jwt) => true,
        (Value::Json(j), Ty::Json(kind)) => match kind {
            JKind::Token => true,
            JKind::Object => matches!(j, Json::Object(_)),
            JKind::Array => matches!(j, Json::Array(_)),
            JKind::Value => !matches!(j, Json::Object(_) | Json::Array(_)),
            JKind::Property => false,
        },
        (Value::Handle(h), t) => {
            matches!(
                (&h.0, t),
                (
                    Obj::Pair(_),
                    Ty::Pair(..) | Ty::Json(JKind::Property | JKind::Token)
                ) | (Obj::Url(_), Ty::Url)
                    | (Obj::Query(_), Ty::Query)
                    | (Obj::Claims(_), Ty::Claims)
                    | (Obj::Match(_), Ty::Match)
                    | (Obj::Groups(_), Ty::Groups)
                    | (Obj::Group(..), Ty::Group)
                    | (Obj::Encoding(_), Ty::Encoding)
                    | (Obj::Certificate(_), Ty::Certificate)
                    | (Obj::Uri(super::net::UriKind::Uri, _), Ty::Uri)
                    | (Obj::Uri(super::net::UriKind::Builder, _), Ty::UriBuilder)
                    | (Obj::Random(_), Ty::Random)
                    | (Obj::Hasher(_), Ty::Hasher)
                    | (Obj::Basic(_), Ty::Basic)
                    | (Obj::Xml(super::xml::XKind::Document, _), Ty::XDocument)
                    | (Obj::Xml(super::xml::XKind::Element, _), Ty::XElement)
                    | (Obj::XAttr(_), Ty::XAttribute)
                    | (Obj::StringBuilder(_), Ty::StringBuilder)
            ) || matches!((&h.0, t), (Obj::Enum(a, ..), Ty::Enum(b)) if a == b)
                || matches!((&h.0, t), (Obj::Ctx(a), Ty::Ctx(b)) if a == b)
                || super::response::is_type(&h.0, t)
        }
        _ => false,
    }
}

fn to_string(v: Value, mode: Mode) -> RtResult<Value> {
    match v {
        Value::Null | Value::Json(Json::Null) => Ok(Value::Null),
        Value::String(_) => Ok(v),
        Value::Json(Json::Object(_) | Json::Array(_)) if mode != Mode::Convert => {
            Err(RuntimeError::argument(format_args!(
                "Can not convert {} to String.",
                if matches!(v, Value::Json(Json::Object(_))) {
                    "Object"
                } else {
                    "Array"
                }
            )))
        }
        Value::Json(j) => Ok(Value::String(j.to_display_string().into())),
        _ if mode == Mode::Convert => Ok(Value::String(v.to_policy_string().into())),
        _ => Err(RuntimeError::cast(v.type_name(), "String")),
    }
}

fn overflow(bits: u32) -> RuntimeError {
    RuntimeError::new(
        ErrorKind::Overflow,
        format_args!("Value was either too large or too small for an Int{bits}."),
    )
}

fn fit(i: i128, bits: u32) -> RtResult<i64> {
    let ok = if bits == 32 {
        i32::try_from(i).is_ok()
    } else {
        i64::try_from(i).is_ok()
    };
    if ok {
        Ok(i as i64)
    } else {
        Err(overflow(bits))
    }
}

/// Rounds like `Convert.ToInt32(double)` (to even) and checks the range.
fn round_checked(d: f64, bits: u32) -> RtResult<i64> {
    let r = d.round_ties_even();
    let max = if bits == 32 {
        f64::from(i32::MAX)
    } else {
        9.223_372_036_854_775e18
    };
    if !r.is_finite() || r > max || r < -max - 1.0 {
        return Err(overflow(bits));
    }
    Ok(r as i64)
}

fn parse_int(s: &str, bits: u32) -> RtResult<i64> {
    let class = if bits == 32 {
        crate::types::Class::Int
    } else {
        crate::types::Class::Long
    };
    match super::number::parse(class, s)? {
        Value::Int(i) => Ok(i64::from(i)),
        Value::Long(i) => Ok(i),
        _ => Err(overflow(bits)),
    }
}

/// An integer of `bits` (32 or 64): a C# cast truncates and wraps (unchecked), `Convert`
/// and JSON conversions round and check.
fn to_int(v: &Value, mode: Mode, bits: u32) -> RtResult<i64> {
    let wrap = |i: i64| if bits == 32 { i64::from(i as i32) } else { i };
    match v {
        Value::Int(i) => Ok(i64::from(*i)),
        Value::Long(i) if mode == Mode::Convert => fit(i128::from(*i), bits),
        Value::Long(i) => Ok(wrap(*i)),
        Value::Char(c) => Ok(i64::from(u32::from(*c))),
        Value::Double(d) if mode == Mode::Convert => round_checked(*d, bits),
        Value::Double(d) => Ok(wrap(*d as i64)),
        Value::Json(Json::Int(i)) => fit(i128::from(*i), bits),
        Value::Json(Json::Float(d)) => round_checked(*d, bits),
        Value::Json(Json::String(s)) => parse_int(s, bits),
        Value::Json(Json::Bool(b)) => Ok(i64::from(*b)),
        Value::String(s) if mode == Mode::Convert => parse_int(s, bits),
        Value::Bool(b) if mode == Mode::Convert => Ok(i64::from(*b)),
        Value::Null if mode == Mode::Convert => Ok(0),
        Value::Null => Err(RuntimeError::null_reference()),
        Value::Json(Json::Null) => Err(RuntimeError::argument(format_args!(
            "Can not convert Null to Int{bits}."
        ))),
        Value::Handle(h) => match h.0 {
            Obj::Enum(_, i, _) => Ok(i64::from(i)),
            _ => Err(RuntimeError::cast(
                v.type_name(),
                if bits == 32 { "Int32" } else { "Int64" },
            )),
        },
        _ => Err(RuntimeError::cast(
            v.type_name(),
            if bits == 32 { "Int32" } else { "Int64" },
        )),
    }
}

fn to_double(v: &Value, mode: Mode) -> RtResult<f64> {
    let parse = |s: &str| {
        super::number::parse_double(s).ok_or_else(|| {
            RuntimeError::format(format_args!(
                "The input string '{s}' was not in a correct format."
            ))
        })
    };
    match v {
        Value::Int(_) | Value::Long(_) | Value::Char(_) | Value::Double(_) => {
            Ok(v.number().map_or(0.0, |n| n.as_f64()))
        }
        Value::Json(Json::Int(i)) => Ok(*i as f64),
        Value::Json(Json::Float(d)) => Ok(*d),
        Value::Json(Json::String(s)) => parse(s),
        Value::Json(Json::Bool(b)) => Ok(f64::from(u8::from(*b))),
        Value::String(s) if mode == Mode::Convert => parse(s),
        Value::Bool(b) if mode == Mode::Convert => Ok(f64::from(u8::from(*b))),
        Value::Null if mode == Mode::Convert => Ok(0.0),
        Value::Null => Err(RuntimeError::null_reference()),
        Value::Json(Json::Null) => Err(RuntimeError::argument("Can not convert Null to Double.")),
        _ => Err(RuntimeError::cast(v.type_name(), "Double")),
    }
}

fn to_bool(v: &Value, mode: Mode) -> RtResult<bool> {
    let parse = |s: &str| {
        super::number::parse_bool(s).ok_or_else(|| {
            RuntimeError::format(format_args!(
                "String '{s}' was not recognized as a valid Boolean."
            ))
        })
    };
    match v {
        Value::Bool(b) | Value::Json(Json::Bool(b)) => Ok(*b),
        Value::Json(Json::String(s)) => parse(s),
        Value::Json(Json::Int(i)) => Ok(*i != 0),
        Value::Json(Json::Float(d)) => Ok(*d != 0.0),
        Value::String(s) if mode == Mode::Convert => parse(s),
        Value::Int(_) | Value::Long(_) | Value::Double(_) if mode == Mode::Convert => {
            Ok(v.number().is_some_and(|n| n.as_f64() != 0.0))
        }
        Value::Null if mode == Mode::Convert => Ok(false),
        Value::Null => Err(RuntimeError::null_reference()),
        Value::Json(Json::Null) => Err(RuntimeError::argument("Can not convert Null to Boolean.")),
        _ => Err(RuntimeError::cast(v.type_name(), "Boolean")),
    }
}

fn to_json_kind(v: Value, kind: JKind) -> RtResult<Value> {
    let target = Ty::Json(kind).to_string();
    match v {
        Value::Null => Ok(Value::Null),
        Value::Json(_) => Err(RuntimeError::cast(v.type_name(), &target)),
        other if matches!(kind, JKind::Token | JKind::Value) => to_json(&other).map(Value::Json),
        other => Err(RuntimeError::cast(other.type_name(), &target)),
    }
}

/// A value as a `JToken` (Newtonsoft's implicit conversions: primitives become `JValue`s).
pub(crate) fn to_json(v: &Value) -> RtResult<Json> {
    Ok(match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::Int(i64::from(*i)),
        Value::Long(i) => Json::Int(*i),
        Value::Double(d) => Json::Float(*d),
        Value::Char(c) => Json::String(c.to_string().into()),
        Value::String(s) => Json::String(s.clone()),
        Value::Json(j) => j.clone(),
        Value::DateTime(d) => Json::String(
            d.format(Some("yyyy-MM-ddTHH:mm:ss.FFFFFFFK"))
                .unwrap_or_default()
                .into(),
        ),
        Value::TimeSpan(t) => Json::String(t.format().into()),
        Value::Guid(g) => Json::String(g.hyphenated().to_string().into()),
        Value::Array(items) => Json::Array(Arc::new(
            items.iter().map(to_json).collect::<RtResult<_>>()?,
        )),
        Value::Handle(h) => match &h.0 {
            Obj::Url(u) => Json::String(u.clone()),
            Obj::Pair(p) => {
                let mut obj = crate::json::JsonObject::new();
                obj.insert(p.0.to_policy_string(), to_json(&p.1)?);
                Json::Object(Arc::new(obj))
            }
            Obj::Enum(_, i, _) => Json::Int(i64::from(*i)),
            _ => return Err(RuntimeError::cast(v.type_name(), "JToken")),
        },
        other => return Err(RuntimeError::cast(other.type_name(), "JToken")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn casts() {
        assert_eq!(
            convert(Value::Double(3.9), &Ty::Int, Mode::Cast).unwrap(),
            Value::Int(3)
        );
        assert_eq!(
            convert(Value::Double(-3.9), &Ty::Int, Mode::Cast).unwrap(),
            Value::Int(-3)
        );
        assert_eq!(
            convert(Value::Double(2.5), &Ty::Int, Mode::Convert).unwrap(),
            Value::Int(2)
        );
        assert_eq!(
            convert(Value::Long(1 << 33), &Ty::Int, Mode::Cast).unwrap(),
            Value::Int(0)
        );
        assert!(convert(Value::Long(1 << 33), &Ty::Int, Mode::Convert).is_err());
        assert_eq!(
            convert(Value::Json(Json::Float(3.5)), &Ty::Int, Mode::Cast).unwrap(),
            Value::Int(4)
        );
        assert_eq!(
            convert(
                Value::Json(Json::String("x".into())),
                &Ty::String,
                Mode::Cast
            )
            .unwrap(),
            Value::str("x")
        );
        assert!(convert(Value::str("5"), &Ty::Int, Mode::Cast).is_err());
        assert_eq!(
            convert(Value::str("5"), &Ty::Int, Mode::Convert).unwrap(),
            Value::Int(5)
        );
        assert!(convert(Value::Null, &Ty::Int, Mode::Cast).is_err());
        assert_eq!(
            convert(Value::Null, &Ty::Json(JKind::Array), Mode::Cast).unwrap(),
            Value::Null
        );
        assert_eq!(
            convert(Value::str("a"), &Ty::Json(JKind::Token), Mode::Cast).unwrap(),
            Value::Json(Json::String("a".into()))
        );
        assert_eq!(
            convert(Value::str("a"), &Ty::Int, Mode::As).unwrap(),
            Value::Null
        );
        assert_eq!(
            convert(Value::str("a"), &Ty::String, Mode::Is).unwrap(),
            Value::Bool(true)
        );
    }
}
