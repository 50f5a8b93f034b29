//! `string` and `char`: instance members (`Contains`, `Split`, `Substring`…) and the static
//! `string.*` / `char.*` helpers. Indices and lengths count UTF-16 code units, as .NET does;
//! comparisons are ordinal (culture-aware comparisons are treated as ordinal).

use std::sync::Arc;

use super::{
    CallTys, Member, P, Rt, Sig, SigErr, arg_char, arg_i64, arg_opt_str, arg_str, enum_arg,
    len_value, sig,
};
use crate::error::{RtResult, RuntimeError};
use crate::json::Json;
use crate::types::{EnumTy, Ty};
use crate::value::Value;

const CMP: P = P::Enum(EnumTy::StringComparison);
const SPLIT_OPTS: P = P::Enum(EnumTy::StringSplitOptions);

pub(crate) fn prop_ty(m: Member) -> Option<Ty> {
    match m {
        Member::Length => Some(Ty::Int),
        // `XName` and `XNamespace` are strings here (`{ns}local` or `local`).
        Member::LocalName | Member::NamespaceName => Some(Ty::String),
        _ => None,
    }
}

/// The parts of an `XName` held as a string: `{ns}local` or `local`.
fn xname_parts(s: &str) -> (&str, &str) {
    match s.strip_prefix('{').and_then(|r| r.split_once('}')) {
        Some((ns, local)) => (ns, local),
        None => ("", s),
    }
}

pub(crate) fn method_sig(m: Member, c: &CallTys<'_>) -> Sig {
    use Member as M;
    use P::{Char, Int, Str};
    let s_or_c: &[&[P]] = &[&[Str], &[Char], &[Str, CMP], &[Char, CMP]];
    match m {
        M::Contains | M::StartsWith | M::EndsWith => sig(c, s_or_c, Ty::Bool),
        M::Substring => sig(c, &[&[Int], &[Int, Int]], Ty::String),
        M::IndexOf | M::LastIndexOf => sig(
            c,
            &[
                &[Str],
                &[Char],
                &[Str, Int],
                &[Char, Int],
                &[Str, Int, Int],
                &[Char, Int, Int],
                &[Str, CMP],
                &[Str, Int, CMP],
            ],
            Ty::Int,
        ),
        M::Split => sig(
            c,
            &[
                &[],
                &[P::Rest(&Char)],
                &[Str],
                &[Str, SPLIT_OPTS],
                &[Char, SPLIT_OPTS],
                &[P::Seq, SPLIT_OPTS],
                &[Char, Int],
                &[P::Seq],
            ],
            Ty::array_of(Ty::String),
        ),
        M::Replace => sig(
            c,
            &[&[Str, Str], &[Char, Char], &[Str, Str, CMP]],
            Ty::String,
        ),
        M::ToUpper | M::ToLower | M::ToUpperInvariant | M::ToLowerInvariant | M::ToString => {
            sig(c, &[&[]], Ty::String)
        }
        M::Trim | M::TrimStart | M::TrimEnd => sig(c, &[&[P::Rest(&Char)]], Ty::String),
        M::Equals => sig(c, &[&[P::Any], &[Str, CMP]], Ty::Bool),
        M::CompareTo => sig(c, &[&[Str]], Ty::Int),
        M::PadLeft | M::PadRight => sig(c, &[&[Int], &[Int, Char]], Ty::String),
        M::Insert => sig(c, &[&[Int, Str]], Ty::String),
        M::Remove => sig(c, &[&[Int], &[Int, Int]], Ty::String),
        M::ToCharArray => sig(c, &[&[]], Ty::array_of(Ty::Char)),
        M::AsJwt => sig(c, &[&[]], Ty::Jwt),
        M::TryParseJwt if c.out => sig(c, &[&[P::Any]], Ty::Bool),
        _ => Err(SigErr::NotFound),
    }
}

pub(crate) fn static_sig(m: Member, c: &CallTys<'_>) -> Sig {
    use Member as M;
    use P::{Any, Str};
    match m {
        M::IsNullOrEmpty | M::IsNullOrWhiteSpace => sig(c, &[&[Str]], Ty::Bool),
        M::Format => sig(c, &[&[Str, P::Rest(&Any)]], Ty::String),
        M::Concat => sig(c, &[&[P::Rest(&Any)]], Ty::String),
        M::Join => sig(
            c,
            &[&[Str, P::Rest(&Any)], &[P::Char, P::Rest(&Any)]],
            Ty::String,
        ),
        M::Equals => sig(c, &[&[Str, Str], &[Str, Str, CMP]], Ty::Bool),
        M::Compare => sig(
            c,
            &[&[Str, Str], &[Str, Str, CMP], &[Str, Str, P::Bool]],
            Ty::Int,
        ),
        _ => Err(SigErr::NotFound),
    }
}

pub(crate) fn char_method_sig(m: Member, c: &CallTys<'_>) -> Sig {
    match m {
        Member::ToString => sig(c, &[&[]], Ty::String),
        Member::CompareTo => sig(c, &[&[P::Char]], Ty::Int),
        _ => Err(SigErr::NotFound),
    }
}

pub(crate) fn char_static_sig(m: Member, c: &CallTys<'_>) -> Sig {
    use Member as M;
    match m {
        M::IsDigit
        | M::IsLetter
        | M::IsLetterOrDigit
        | M::IsWhiteSpace
        | M::IsUpper
        | M::IsLower => sig(c, &[&[P::Char]], Ty::Bool),
        M::ToUpper | M::ToLower => sig(c, &[&[P::Char]], Ty::Char),
        M::Parse => sig(c, &[&[P::Str]], Ty::Char),
        _ => Err(SigErr::NotFound),
    }
}

// ---- UTF-16 indices ------------------------------------------------------------------------

/// `string.Length`: UTF-16 code units.
pub(crate) fn utf16_len(s: &str) -> usize {
    if s.is_ascii() {
        s.len()
    } else {
        s.chars().map(char::len_utf16).sum()
    }
}

/// The byte offset of UTF-16 index `idx`; `None` past the end. An index inside a surrogate
/// pair maps to the start of that character.
pub(crate) fn byte_at(s: &str, idx: usize) -> Option<usize> {
    if s.is_ascii() {
        return (idx <= s.len()).then_some(idx);
    }
    let mut units = 0;
    for (b, c) in s.char_indices() {
        if units >= idx {
            return Some(b);
        }
        units += c.len_utf16();
        if units > idx {
            return Some(b);
        }
    }
    (units >= idx).then_some(s.len())
}

/// The UTF-16 index of byte offset `b`.
pub(crate) fn utf16_at(s: &str, b: usize) -> usize {
    let prefix = s.get(..b).unwrap_or(s);
    utf16_len(prefix)
}

fn int(n: usize) -> Value {
    len_value(n)
}

fn ignore_case(args: &[Value], i: usize) -> bool {
    matches!(args.get(i).and_then(enum_arg), Some((EnumTy::StringComparison, v)) if v % 2 == 1)
}

fn upper(s: &str) -> String {
    s.chars().flat_map(char::to_uppercase).collect()
}

pub(crate) fn eq_strings(a: &str, b: &str, ignore_case: bool) -> bool {
    if ignore_case {
        a.len() == b.len() && a.eq_ignore_ascii_case(b) || upper(a) == upper(b)
    } else {
        a == b
    }
}

pub(crate) fn compare_strings(a: &str, b: &str, ignore_case: bool) -> i32 {
    let ord = if ignore_case {
        upper(a).cmp(&upper(b))
    } else {
        a.cmp(b)
    };
    ord as i32
}

/// A `string` or `char` argument as text.
fn text_arg(args: &[Value], i: usize, name: &str) -> RtResult<String> {
    match args.get(i) {
        Some(Value::Char(c)) => Ok(c.to_string()),
        _ => arg_str(args, i, name).map(str::to_owned),
    }
}

fn out_of_range(param: &str, what: &str) -> RuntimeError {
    RuntimeError::out_of_range(format_args!("{what} (Parameter '{param}')"))
}

fn start_index(s: &str, args: &[Value], i: usize) -> RtResult<usize> {
    let start = arg_i64(args, i)?;
    let len = utf16_len(s);
    usize::try_from(start)
        .ok()
        .filter(|v| *v <= len)
        .ok_or_else(|| {
            out_of_range(
                "startIndex",
                "startIndex cannot be larger than length of string or negative.",
            )
        })
}

// ---- run time ------------------------------------------------------------------------------

pub(crate) fn get(s: &str, m: Member) -> RtResult<Value> {
    match m {
        Member::Length => Ok(int(utf16_len(s))),
        Member::LocalName => Ok(Value::str(xname_parts(s).1)),
        Member::NamespaceName => Ok(Value::str(xname_parts(s).0)),
        _ => Err(RuntimeError::no_member("String", m.name())),
    }
}

pub(crate) fn index(s: &str, idx: &Value) -> RtResult<Value> {
    let i = super::index_arg(idx, utf16_len(s))?;
    let b = byte_at(s, i).unwrap_or(s.len());
    s[b..].chars().next().map(Value::Char).ok_or_else(|| {
        RuntimeError::new(
            crate::ErrorKind::OutOfRange,
            "Index was outside the bounds of the array.",
        )
    })
}

pub(crate) fn call(s: &Arc<str>, m: Member, args: &[Value], rt: &mut Rt<'_>) -> RtResult<Value> {
    use Member as M;
    let text = |v: String| Ok(Value::String(v.into()));
    match m {
        M::Contains | M::StartsWith | M::EndsWith => {
            let needle = text_arg(args, 0, "value")?;
            let ic = ignore_case(args, 1);
            let (hay, needle) = if ic {
                (upper(s), upper(&needle))
            } else {
                (s.to_string(), needle)
            };
            Ok(Value::Bool(match m {
                M::Contains => hay.contains(&needle),
                M::StartsWith => hay.starts_with(&needle),
                _ => hay.ends_with(&needle),
            }))
        }
        M::Substring => {
            let start = start_index(s, args, 0)?;
            let len = utf16_len(s);
            let count = match args.get(1) {
                Some(_) => {
                    let n = arg_i64(args, 1)?;
                    usize::try_from(n)
                        .ok()
                        .filter(|n| start + n <= len)
                        .ok_or_else(|| {
                            out_of_range(
                                "length",
                                "Index and length must refer to a location within the string.",
                            )
                        })?
                }
                None => len - start,
            };
            let from = byte_at(s, start).unwrap_or(s.len());
            let to = byte_at(s, start + count).unwrap_or(s.len());
            text(s[from..to].to_owned())
        }
        M::IndexOf | M::LastIndexOf => index_of(s, m == M::LastIndexOf, args),
        M::Split => split(s, args, rt),
        M::Replace => {
            let from = text_arg(args, 0, "oldValue")?;
            if from.is_empty() {
                return Err(RuntimeError::argument(
                    "String cannot be of zero length. (Parameter 'oldValue')",
                ));
            }
            let to = match args.get(1) {
                Some(Value::Char(c)) => c.to_string(),
                _ => arg_opt_str(args, 1)?.unwrap_or_default().to_owned(),
            };
            let count = s.matches(from.as_str()).count();
            let size = s.len() - count * from.len() + count * to.len();
            rt.alloc(size)?;
            text(s.replace(from.as_str(), &to))
        }
        M::ToUpper | M::ToUpperInvariant => text(s.to_uppercase()),
        M::ToLower | M::ToLowerInvariant => text(s.to_lowercase()),
        M::ToString => Ok(Value::String(s.clone())),
        M::Trim | M::TrimStart | M::TrimEnd => {
            let chars: Vec<char> = args
                .iter()
                .filter_map(|a| {
                    if let Value::Char(c) = a {
                        Some(*c)
                    } else {
                        None
                    }
                })
                .collect();
            let pred = |c: char| {
                if chars.is_empty() {
                    c.is_whitespace()
                } else {
                    chars.contains(&c)
                }
            };
            text(
                match m {
                    M::Trim => s.trim_matches(pred),
                    M::TrimStart => s.trim_start_matches(pred),
                    _ => s.trim_end_matches(pred),
                }
                .to_owned(),
            )
        }
        M::Equals => Ok(Value::Bool(match args.first() {
            Some(Value::String(o)) => eq_strings(s, o, ignore_case(args, 1)),
            Some(Value::Json(Json::String(o))) => eq_strings(s, o, ignore_case(args, 1)),
            _ => false,
        })),
        M::CompareTo => Ok(Value::Int(match arg_opt_str(args, 0)? {
            None => 1,
            Some(o) => compare_strings(s, o, false),
        })),
        M::PadLeft | M::PadRight => {
            let width = usize::try_from(arg_i64(args, 0)?)
                .map_err(|_| out_of_range("totalWidth", "Non-negative number required."))?;
            let pad = if args.len() > 1 {
                arg_char(args, 1)?
            } else {
                ' '
            };
            let len = utf16_len(s);
            if width <= len {
                return Ok(Value::String(s.clone()));
            }
            rt.alloc(width)?;
            let fill: String = std::iter::repeat_n(pad, width - len).collect();
            text(if m == M::PadLeft {
                fill + s
            } else {
                s.to_string() + &fill
            })
        }
        M::Insert => {
            let at = start_index(s, args, 0)?;
            let ins = arg_str(args, 1, "value")?;
            rt.alloc(s.len() + ins.len())?;
            let b = byte_at(s, at).unwrap_or(s.len());
            text(format!("{}{}{}", &s[..b], ins, &s[b..]))
        }
        M::Remove => {
            let start = start_index(s, args, 0)?;
            let len = utf16_len(s);
            if start == len && args.len() == 1 {
                return Err(out_of_range(
                    "startIndex",
                    "startIndex must be less than length of string.",
                ));
            }
            let count = match args.get(1) {
                Some(_) => usize::try_from(arg_i64(args, 1)?)
                    .ok()
                    .filter(|n| start + n <= len)
                    .ok_or_else(|| {
                        out_of_range(
                            "count",
                            "Index and count must refer to a location within the string.",
                        )
                    })?,
                None => len - start,
            };
            let from = byte_at(s, start).unwrap_or(s.len());
            let to = byte_at(s, start + count).unwrap_or(s.len());
            text(format!("{}{}", &s[..from], &s[to..]))
        }
        M::ToCharArray => {
            rt.steps(s.len())?;
            Ok(Value::Array(s.chars().map(Value::Char).collect()))
        }
        M::AsJwt => {
            // Decoding costs as much as producing the token's bytes (at most MAX_TOKEN_BYTES).
            rt.alloc(s.len().min(crate::limits::MAX_TOKEN_BYTES))?;
            Ok(super::jwt::parse(s).map_or(Value::Null, |j| Value::Jwt(Arc::new(j))))
        }
        _ => Err(RuntimeError::no_member("String", m.name())),
    }
}

fn index_of(s: &str, last: bool, args: &[Value]) -> RtResult<Value> {
    let needle = text_arg(args, 0, "value")?;
    let ic = args
        .iter()
        .skip(1)
        .any(|a| matches!(enum_arg(a), Some((EnumTy::StringComparison, v)) if v % 2 == 1));
    let positions: Vec<&Value> = args
        .iter()
        .skip(1)
        .filter(|a| enum_arg(a).is_none())
        .collect();
    let len = utf16_len(s);
    // Optional start (and count) restrict the search window.
    let (mut from, mut to) = (0, len);
    if let Some(v) = positions.first() {
        let start = arg_i64(std::slice::from_ref(*v), 0)?;
        let start = usize::try_from(start)
            .ok()
            .filter(|v| *v <= len)
            .ok_or_else(|| out_of_range("startIndex", "Index was out of range. Must be non-negative and less than the size of the collection."))?;
        if last {
            to = (start + 1).min(len);
        } else {
            from = start;
        }
    }
    if let Some(v) = positions.get(1) {
        let count = usize::try_from(arg_i64(std::slice::from_ref(*v), 0)?)
            .map_err(|_| out_of_range("count", "Count must be positive."))?;
        if last {
            from = to.saturating_sub(count);
        } else {
            to = from + count;
            if to > len {
                return Err(out_of_range(
                    "count",
                    "Count must be positive and count must refer to a location within the string.",
                ));
            }
        }
    }
    let (b_from, b_to) = (
        byte_at(s, from).unwrap_or(s.len()),
        byte_at(s, to).unwrap_or(s.len()),
    );
    let window = &s[b_from..b_to];
    let (hay, needle) = if ic {
        (upper(window), upper(&needle))
    } else {
        (window.to_owned(), needle)
    };
    let found = if last {
        hay.rfind(&needle)
    } else {
        hay.find(&needle)
    };
    Ok(Value::Int(match found {
        Some(b) => i32::try_from(from + utf16_at(&hay, b)).unwrap_or(i32::MAX),
        None => -1,
    }))
}

fn split(s: &str, args: &[Value], rt: &mut Rt<'_>) -> RtResult<Value> {
    let mut chars = Vec::new();
    let mut strings: Vec<String> = Vec::new();
    let mut options = 0;
    let mut limit = usize::MAX;
    for (i, a) in args.iter().enumerate() {
        match a {
            Value::Char(c) => chars.push(*c),
            Value::String(t) => strings.push(t.to_string()),
            Value::Array(items) => {
                for item in items.iter() {
                    match item {
                        Value::Char(c) => chars.push(*c),
                        Value::String(t) => strings.push(t.to_string()),
                        _ => {}
                    }
                }
            }
            Value::Int(v) if i > 0 => limit = usize::try_from(*v).unwrap_or(0),
            a if enum_arg(a).is_some() => options = enum_arg(a).map_or(0, |(_, v)| v),
            Value::Null => {}
            other => return Err(RuntimeError::cast(other.type_name(), "String")),
        }
    }
    let mut parts: Vec<&str> = Vec::new();
    let mut rest = s;
    loop {
        if parts.len() + 1 >= limit {
            parts.push(rest);
            break;
        }
        let hit = if chars.is_empty() && strings.iter().all(String::is_empty) {
            rest.char_indices()
                .find(|(_, c)| c.is_whitespace())
                .map(|(b, c)| (b, c.len_utf8()))
        } else {
            let by_char = rest
                .char_indices()
                .find(|(_, c)| chars.contains(c))
                .map(|(b, c)| (b, c.len_utf8()));
            let by_str = strings
                .iter()
                .filter(|t| !t.is_empty())
                .filter_map(|t| rest.find(t.as_str()).map(|b| (b, t.len())))
                .min_by_key(|(b, len)| (*b, usize::MAX - len));
            match (by_char, by_str) {
                (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
                (a, b) => a.or(b),
            }
        };
        match hit {
            Some((b, len)) => {
                parts.push(&rest[..b]);
                rest = &rest[b + len..];
            }
            None => {
                parts.push(rest);
                break;
            }
        }
        rt.steps(1)?;
    }
    let trim = options & 2 != 0;
    let remove_empty = options & 1 != 0;
    let items: Vec<Value> = parts
        .into_iter()
        .map(|p| if trim { p.trim() } else { p })
        .filter(|p| !(remove_empty && p.is_empty()))
        .map(Value::str)
        .collect();
    rt.steps(items.len())?;
    Ok(Value::Array(items.into()))
}

pub(crate) fn static_call(m: Member, args: &[Value], rt: &mut Rt<'_>) -> RtResult<Value> {
    use Member as M;
    match m {
        M::IsNullOrEmpty => Ok(Value::Bool(arg_opt_str(args, 0)?.is_none_or(str::is_empty))),
        M::IsNullOrWhiteSpace => Ok(Value::Bool(
            arg_opt_str(args, 0)?.is_none_or(|s| s.chars().all(char::is_whitespace)),
        )),
        M::Format => {
            let format = arg_str(args, 0, "format")?;
            let rest: Vec<Value> = match args.get(1..).unwrap_or_default() {
                [Value::Array(items)] => items.to_vec(),
                other => other.to_vec(),
            };
            Ok(Value::String(composite_format(format, &rest, rt)?.into()))
        }
        M::Concat => {
            let items: Vec<Value> = match args {
                [Value::Array(items)] => items.to_vec(),
                other => other.to_vec(),
            };
            let parts: Vec<String> = items.iter().map(Value::to_policy_string).collect();
            rt.alloc(parts.iter().map(String::len).sum())?;
            Ok(Value::String(parts.concat().into()))
        }
        M::Join => {
            let sep = match args.first() {
                Some(Value::Char(c)) => c.to_string(),
                _ => arg_opt_str(args, 0)?.unwrap_or_default().to_owned(),
            };
            let items: Vec<Value> = match args.get(1..).unwrap_or_default() {
                [single] if !matches!(single, Value::String(_)) => {
                    super::linq::enumerate(single, rt)?
                }
                other => other.to_vec(),
            };
            let parts: Vec<String> = items.iter().map(Value::to_policy_string).collect();
            rt.alloc(parts.iter().map(String::len).sum::<usize>() + sep.len() * parts.len())?;
            Ok(Value::String(parts.join(&sep).into()))
        }
        M::Equals => {
            let (a, b) = (arg_opt_str(args, 0)?, arg_opt_str(args, 1)?);
            Ok(Value::Bool(match (a, b) {
                (Some(a), Some(b)) => eq_strings(a, b, ignore_case(args, 2)),
                (None, None) => true,
                _ => false,
            }))
        }
        M::Compare => {
            let ic = ignore_case(args, 2) || matches!(args.get(2), Some(Value::Bool(true)));
            Ok(Value::Int(
                match (arg_opt_str(args, 0)?, arg_opt_str(args, 1)?) {
                    (Some(a), Some(b)) => compare_strings(a, b, ic),
                    (None, None) => 0,
                    (None, _) => -1,
                    (_, None) => 1,
                },
            ))
        }
        _ => Err(RuntimeError::no_member("String", m.name())),
    }
}

/// .NET composite formatting: `{index[,alignment][:format]}` with `{{` / `}}` escapes.
pub(crate) fn composite_format(format: &str, args: &[Value], rt: &mut Rt<'_>) -> RtResult<String> {
    let bad = || RuntimeError::format("Input string was not in a correct format.");
    let mut out = String::new();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '}' => return Err(bad()),
            '{' => {
                let mut item = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => item.push(c),
                        None => return Err(bad()),
                    }
                }
                let (head, fmt) = match item.split_once(':') {
                    Some((h, f)) => (h, Some(f)),
                    None => (item.as_str(), None),
                };
                let (index, align) = match head.split_once(',') {
                    Some((i, a)) => (i, Some(a.trim().parse::<i64>().map_err(|_| bad())?)),
                    None => (head, None),
                };
                let index: usize = index.trim().parse().map_err(|_| bad())?;
                let value = args.get(index).ok_or_else(|| {
                    RuntimeError::format("Index (zero based) must be greater than or equal to zero and less than the size of the argument list.")
                })?;
                let text = format_value(value, fmt)?;
                out.push_str(&align_text(text, align));
                rt.alloc(out.len())?;
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// A value formatted with an optional .NET format string (numbers and dates take one).
pub(crate) fn format_value(value: &Value, fmt: Option<&str>) -> RtResult<String> {
    match (value, fmt) {
        (_, None) => Ok(value.to_policy_string()),
        (Value::DateTime(d), Some(f)) => d.format(Some(f)).map_err(RuntimeError::format),
        (Value::Int(_) | Value::Long(_) | Value::Double(_), Some(f)) => {
            super::number::format_number(value, f)
        }
        (_, Some(_)) => Ok(value.to_policy_string()),
    }
}

pub(crate) fn align_text(text: String, align: Option<i64>) -> String {
    let Some(width) = align else { return text };
    let pad = usize::try_from(width.unsigned_abs())
        .unwrap_or(0)
        .saturating_sub(utf16_len(&text))
        .min(1 << 16);
    let fill = " ".repeat(pad);
    if width < 0 {
        text + &fill
    } else {
        fill + &text
    }
}

pub(crate) fn char_call(c: char, m: Member, args: &[Value]) -> RtResult<Value> {
    match m {
        Member::ToString => Ok(Value::String(c.to_string().into())),
        Member::CompareTo => Ok(Value::Int((c as i32) - (arg_char(args, 0)? as i32))),
        _ => Err(RuntimeError::no_member("Char", m.name())),
    }
}

pub(crate) fn char_static_call(m: Member, args: &[Value]) -> RtResult<Value> {
    use Member as M;
    if m == M::Parse {
        let s = arg_str(args, 0, "s")?;
        let mut it = s.chars();
        return match (it.next(), it.next()) {
            (Some(c), None) => Ok(Value::Char(c)),
            _ => Err(RuntimeError::format(
                "String must be exactly one character long.",
            )),
        };
    }
    let c = arg_char(args, 0)?;
    Ok(match m {
        M::IsDigit => Value::Bool(c.is_numeric()),
        M::IsLetter => Value::Bool(c.is_alphabetic()),
        M::IsLetterOrDigit => Value::Bool(c.is_alphanumeric()),
        M::IsWhiteSpace => Value::Bool(c.is_whitespace()),
        M::IsUpper => Value::Bool(c.is_uppercase()),
        M::IsLower => Value::Bool(c.is_lowercase()),
        M::ToUpper => Value::Char(c.to_uppercase().next().unwrap_or(c)),
        M::ToLower => Value::Char(c.to_lowercase().next().unwrap_or(c)),
        _ => return Err(RuntimeError::no_member("Char", m.name())),
    })
}

/// `new string(c, count)` and `new string(chars)`.
pub(crate) fn new_string(args: &[Value], rt: &mut Rt<'_>) -> RtResult<Value> {
    match args {
        [Value::Char(c), n] => {
            let count = super::arg_i64(std::slice::from_ref(n), 0)?;
            let count = usize::try_from(count).map_err(|_| {
                RuntimeError::out_of_range(format_args!(
                    "new string(c, count): count must be non-negative, not {count}."
                ))
            })?;
            rt.alloc(count.saturating_mul(c.len_utf8()))?;
            Ok(Value::String(
                std::iter::repeat_n(*c, count).collect::<String>().into(),
            ))
        }
        [seq] => {
            let items = super::linq::enumerate(seq, rt)?;
            let mut out = String::with_capacity(items.len());
            for item in items.iter() {
                match item {
                    Value::Char(c) => out.push(*c),
                    other => return Err(RuntimeError::cast(other.type_name(), "Char")),
                }
            }
            Ok(Value::String(out.into()))
        }
        _ => Err(RuntimeError::argument(
            "new string(…) takes (char, count) or a char array.",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf16_indices() {
        assert_eq!(utf16_len("aé😀"), 4);
        assert_eq!(byte_at("aé😀b", 2), Some(3));
        assert_eq!(byte_at("aé😀b", 4), Some(7));
        assert_eq!(byte_at("aé😀b", 5), Some(8));
        assert_eq!(byte_at("aé😀b", 6), None);
        assert_eq!(utf16_at("aé😀b", 7), 4);
    }
}
