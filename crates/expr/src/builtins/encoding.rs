//! Bytes and text: `Encoding.UTF8.GetBytes/GetString`, `Convert.ToBase64String/
//! FromBase64String` (and the numeric `Convert.ToX`), `Uri.EscapeDataString`, `Guid`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::convert::{Mode, convert};
use super::{CallTys, Member, P, Rt, Sig, SigErr, arg_opt_str, arg_str, sig};
use crate::error::{RtResult, RuntimeError};
use crate::types::{Class, Ty};
use crate::value::{Obj, TextEncoding, Value};

pub(crate) fn static_prop_ty(class: Class, m: Member) -> Option<Ty> {
    match (class, m) {
        (Class::Encoding, Member::UTF8 | Member::ASCII | Member::Unicode) => Some(Ty::Encoding),
        (Class::Guid, Member::Empty) => Some(Ty::Guid),
        _ => None,
    }
}

pub(crate) fn static_sig(class: Class, m: Member, c: &CallTys<'_>) -> Sig {
    use Member as M;
    match (class, m) {
        (Class::Convert, M::ToBase64String) => sig(c, &[&[P::Bytes]], Ty::String),
        (Class::Convert, M::FromBase64String) => sig(c, &[&[P::Str]], Ty::Bytes),
        (Class::Convert, M::ToInt32) => sig(c, &[&[P::Any]], Ty::Int),
        (Class::Convert, M::ToInt64) => sig(c, &[&[P::Any]], Ty::Long),
        (Class::Convert, M::ToDouble) => sig(c, &[&[P::Any]], Ty::Double),
        (Class::Convert, M::ToBoolean) => sig(c, &[&[P::Any]], Ty::Bool),
        (Class::Convert, M::ToString) => sig(c, &[&[P::Any]], Ty::String),
        (Class::Uri, M::EscapeDataString | M::UnescapeDataString) => {
            sig(c, &[&[P::Str]], Ty::String)
        }
        (Class::Guid, M::NewGuid) => sig(c, &[&[]], Ty::Guid),
        (Class::Guid, M::Parse) => sig(c, &[&[P::Str]], Ty::Guid),
        _ => Err(SigErr::NotFound),
    }
}

pub(crate) fn method_sig(m: Member, c: &CallTys<'_>) -> Sig {
    match m {
        Member::GetBytes => sig(c, &[&[P::Str]], Ty::Bytes),
        Member::GetString => sig(c, &[&[P::Bytes]], Ty::String),
        _ => Err(SigErr::NotFound),
    }
}

pub(crate) fn static_get(class: Class, m: Member) -> RtResult<Value> {
    Ok(match (class, m) {
        (Class::Encoding, Member::UTF8) => Value::obj(Obj::Encoding(TextEncoding::Utf8)),
        (Class::Encoding, Member::ASCII) => Value::obj(Obj::Encoding(TextEncoding::Ascii)),
        (Class::Encoding, Member::Unicode) => Value::obj(Obj::Encoding(TextEncoding::Utf16)),
        (Class::Guid, Member::Empty) => Value::Guid(uuid::Uuid::nil()),
        _ => return Err(RuntimeError::no_member("type", m.name())),
    })
}

fn bytes_arg<'v>(args: &'v [Value], name: &str) -> RtResult<&'v [u8]> {
    match args.first() {
        Some(Value::Bytes(b)) => Ok(b),
        Some(Value::Null) | None => Err(super::null_argument(name)),
        Some(v) => Err(RuntimeError::cast(v.type_name(), "Byte[]")),
    }
}

pub(crate) fn static_call(
    class: Class,
    m: Member,
    args: &[Value],
    rt: &mut Rt<'_>,
) -> RtResult<Value> {
    use Member as M;
    match (class, m) {
        (Class::Convert, M::ToBase64String) => {
            let bytes = bytes_arg(args, "inArray")?;
            rt.alloc(bytes.len() * 4 / 3 + 4)?;
            Ok(Value::String(STANDARD.encode(bytes).into()))
        }
        (Class::Convert, M::FromBase64String) => {
            let s = arg_str(args, 0, "s")?;
            let cleaned: String = s.chars().filter(|c| !c.is_whitespace()).collect();
            STANDARD.decode(cleaned.as_bytes()).map(|b| Value::Bytes(b.into())).map_err(|_| {
                RuntimeError::format(
                    "The input is not a valid Base-64 string as it contains a non-base 64 character, more than two padding characters, or an illegal character among the padding characters.",
                )
            })
        }
        (Class::Convert, M::ToInt32) => convert(arg0(args), &Ty::Int, Mode::Convert),
        (Class::Convert, M::ToInt64) => convert(arg0(args), &Ty::Long, Mode::Convert),
        (Class::Convert, M::ToDouble) => convert(arg0(args), &Ty::Double, Mode::Convert),
        (Class::Convert, M::ToBoolean) => convert(arg0(args), &Ty::Bool, Mode::Convert),
        (Class::Convert, M::ToString) => Ok(Value::String(arg0(args).to_policy_string().into())),
        (Class::Uri, M::EscapeDataString) => {
            let s = arg_str(args, 0, "stringToEscape")?;
            rt.alloc(s.len() * 3)?;
            Ok(Value::String(super::url::escape_data_string(s).into()))
        }
        (Class::Uri, M::UnescapeDataString) => Ok(Value::String(
            super::url::percent_decode(arg_str(args, 0, "stringToUnescape")?).into(),
        )),
        (Class::Guid, M::NewGuid) => Ok(Value::Guid(uuid::Uuid::new_v4())),
        (Class::Guid, M::Parse) => {
            let s = arg_str(args, 0, "input")?;
            uuid::Uuid::parse_str(s.trim())
                .map(Value::Guid)
                .map_err(|_| RuntimeError::format(format_args!("Unrecognized Guid format: '{s}'.")))
        }
        _ => Err(RuntimeError::no_member("type", m.name())),
    }
}

fn arg0(args: &[Value]) -> Value {
    args.first().cloned().unwrap_or(Value::Null)
}

pub(crate) fn call(e: TextEncoding, m: Member, args: &[Value], rt: &mut Rt<'_>) -> RtResult<Value> {
    match m {
        Member::GetBytes => {
            let s = arg_str(args, 0, "s")?;
            rt.alloc(s.len() * 2)?;
            let bytes: Vec<u8> = match e {
                TextEncoding::Utf8 => s.as_bytes().to_vec(),
                TextEncoding::Ascii => s
                    .chars()
                    .map(|c| if c.is_ascii() { c as u8 } else { b'?' })
                    .collect(),
                TextEncoding::Utf16 => s.encode_utf16().flat_map(u16::to_le_bytes).collect(),
            };
            Ok(Value::Bytes(bytes.into()))
        }
        Member::GetString => {
            let bytes = bytes_arg(args, "bytes")?;
            rt.alloc(bytes.len())?;
            let text = match e {
                TextEncoding::Utf8 => String::from_utf8_lossy(bytes).into_owned(),
                TextEncoding::Ascii => bytes
                    .iter()
                    .map(|b| if b.is_ascii() { char::from(*b) } else { '?' })
                    .collect(),
                TextEncoding::Utf16 => {
                    let units: Vec<u16> = bytes
                        .chunks_exact(2)
                        .map(|p| u16::from_le_bytes([p[0], p[1]]))
                        .collect();
                    String::from_utf16_lossy(&units)
                }
            };
            Ok(Value::String(text.into()))
        }
        _ => Err(RuntimeError::no_member("Encoding", m.name())),
    }
}

/// `Guid.ToString([format])`: `D` (default), `N`, `B`, `P`.
pub(crate) fn guid_to_string(g: uuid::Uuid, args: &[Value]) -> RtResult<Value> {
    let s = match arg_opt_str(args, 0)?.unwrap_or("D") {
        "D" | "d" | "" => g.hyphenated().to_string(),
        "N" | "n" => g.simple().to_string(),
        "B" | "b" => g.braced().to_string(),
        "P" | "p" => format!("({})", g.hyphenated()),
        _ => {
            return Err(RuntimeError::format(
                "Format string can be only \"D\", \"d\", \"N\", \"n\", \"P\", \"p\", \"B\", \"b\", \"X\" or \"x\".",
            ));
        }
    };
    Ok(Value::String(s.into()))
}
