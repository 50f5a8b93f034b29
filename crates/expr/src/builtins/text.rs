//! `System.Text.StringBuilder`: the one mutable object expressions have. Like .NET's, it is a
//! reference: `sb.Append(x)` changes the builder every variable holding it sees, and returns
//! it, so calls chain. The text sits behind a mutex so values stay `Send + Sync`; an
//! evaluation is single-threaded, so the lock is never contended.

use std::sync::{Arc, Mutex, PoisonError};

use super::{CallTys, Member, P, Rt, Sig, SigErr, arg_i64, arg_str, sig};
use crate::error::{RtResult, RuntimeError};
use crate::types::Ty;
use crate::value::{Obj, Value};

#[derive(Debug, Default)]
pub(crate) struct StringBuilder(Mutex<String>);

impl StringBuilder {
    pub(crate) fn text(&self) -> String {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

pub(crate) fn new_sig(c: &CallTys<'_>) -> Sig {
    sig(c, &[&[], &[P::Str], &[P::Int]], Ty::StringBuilder)
}

pub(crate) fn new_value(args: &[Value], rt: &mut Rt<'_>) -> RtResult<Value> {
    let initial = match args.first() {
        Some(Value::String(s)) => s.to_string(),
        Some(Value::Null) => String::new(),
        // `new StringBuilder(capacity)`: a hint only.
        _ => String::new(),
    };
    rt.alloc(initial.len())?;
    Ok(Value::obj(Obj::StringBuilder(Arc::new(StringBuilder(
        Mutex::new(initial),
    )))))
}

pub(crate) fn prop_ty(m: Member) -> Option<Ty> {
    (m == Member::Length).then_some(Ty::Int)
}

pub(crate) fn method_sig(m: Member, c: &CallTys<'_>) -> Sig {
    use Member as M;
    match m {
        M::Append => sig(c, &[&[P::Any]], Ty::StringBuilder),
        M::AppendLine => sig(c, &[&[], &[P::Any]], Ty::StringBuilder),
        M::AppendFormat => sig(c, &[&[P::Str, P::Rest(&P::Any)]], Ty::StringBuilder),
        M::Insert => sig(c, &[&[P::Int, P::Any]], Ty::StringBuilder),
        M::Replace => sig(
            c,
            &[&[P::Str, P::Str], &[P::Char, P::Char]],
            Ty::StringBuilder,
        ),
        M::Clear => sig(c, &[&[]], Ty::StringBuilder),
        _ => Err(SigErr::NotFound),
    }
}

pub(crate) fn get(sb: &StringBuilder, m: Member, rt: &mut Rt<'_>) -> RtResult<Value> {
    match m {
        Member::Length => {
            let text = sb.0.lock().unwrap_or_else(PoisonError::into_inner);
            // Counting UTF-16 units reads the text: charged like producing it.
            rt.alloc(text.len())?;
            Ok(super::len_value(super::string::utf16_len(&text)))
        }
        _ => Err(RuntimeError::no_member("StringBuilder", m.name())),
    }
}

pub(crate) fn call(
    handle: &Value,
    sb: &StringBuilder,
    m: Member,
    args: &[Value],
    rt: &mut Rt<'_>,
) -> RtResult<Value> {
    use Member as M;
    if m == M::ToString {
        let text = sb.text();
        rt.alloc(text.len())?;
        return Ok(Value::String(text.into()));
    }
    let piece = match m {
        M::Append | M::AppendLine => args
            .first()
            .map(Value::to_policy_string)
            .unwrap_or_default(),
        M::AppendFormat => match super::string::static_call(M::Format, args, rt)? {
            Value::String(s) => s.to_string(),
            other => other.to_policy_string(),
        },
        M::Insert => args.get(1).map(Value::to_policy_string).unwrap_or_default(),
        _ => String::new(),
    };
    rt.alloc(piece.len() + 1)?;
    let mut text = sb.0.lock().unwrap_or_else(PoisonError::into_inner);
    match m {
        M::Append | M::AppendFormat => text.push_str(&piece),
        M::AppendLine => {
            text.push_str(&piece);
            text.push('\n');
        }
        M::Insert => {
            let at = arg_i64(args, 0)?;
            let byte = usize::try_from(at)
                .ok()
                .and_then(|i| super::string::byte_at(&text, i))
                .ok_or_else(|| {
                    RuntimeError::out_of_range(format_args!(
                        "StringBuilder.Insert: index {at} is outside the text of length {}.",
                        super::string::utf16_len(&text)
                    ))
                })?;
            text.insert_str(byte, &piece);
        }
        M::Replace => {
            let (from, to) = match args {
                [Value::Char(a), Value::Char(b)] => (a.to_string(), b.to_string()),
                _ => (
                    arg_str(args, 0, "oldValue")?.to_owned(),
                    super::arg_opt_str(args, 1)?.unwrap_or("").to_owned(),
                ),
            };
            if from.is_empty() {
                return Err(RuntimeError::argument(
                    "StringBuilder.Replace: the old value cannot be empty.",
                ));
            }
            rt.alloc(text.len())?;
            *text = text.replace(&from, &to);
        }
        M::Clear => text.clear(),
        _ => return Err(RuntimeError::no_member("StringBuilder", m.name())),
    }
    Ok(handle.clone())
}
