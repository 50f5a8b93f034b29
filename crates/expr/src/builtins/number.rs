//! `int`, `long`, `double`, `bool` and `Math`: parsing (`int.Parse`, `TryParse`), limits,
//! `ToString(format)` with .NET's standard and simple custom numeric formats, and the
//! conversions `Convert.ToInt32` & co. share.

use super::{CallTys, Member, P, Sig, SigErr, arg_f64, arg_opt_str, arg_str, sig};
use crate::error::{ErrorKind, RtResult, RuntimeError};
use crate::types::{Class, Ty, promote};
use crate::value::{Num, Value, format_double};

pub(crate) fn static_prop_ty(class: Class, m: Member) -> Option<Ty> {
    use Member as M;
    match (class, m) {
        (Class::Int, M::MaxValue | M::MinValue) => Some(Ty::Int),
        (Class::Long, M::MaxValue | M::MinValue) => Some(Ty::Long),
        (
            Class::Double,
            M::MaxValue | M::MinValue | M::NaN | M::PositiveInfinity | M::NegativeInfinity,
        ) => Some(Ty::Double),
        (Class::Math, M::PI) => Some(Ty::Double),
        _ => None,
    }
}

fn class_ty(class: Class) -> Ty {
    match class {
        Class::Int => Ty::Int,
        Class::Long => Ty::Long,
        Class::Double => Ty::Double,
        _ => Ty::Bool,
    }
}

pub(crate) fn static_sig(class: Class, m: Member, c: &CallTys<'_>) -> Sig {
    use Member as M;
    use P::{Int, Num, Str};
    match (class, m) {
        (Class::Math, M::Max | M::Min) => {
            sig_unit(c, &[&[Num, Num]])?;
            Ok(promote(&c.args[0], &c.args[1]).unwrap_or(Ty::Double))
        }
        (Class::Math, M::Abs) => {
            sig_unit(c, &[&[Num]])?;
            Ok(match &c.args[0] {
                t @ (Ty::Int | Ty::Long | Ty::Double) => t.clone(),
                Ty::Char => Ty::Int,
                _ => Ty::Double,
            })
        }
        (Class::Math, M::Round) => sig(c, &[&[Num], &[Num, Int]], Ty::Double),
        (Class::Math, M::Floor | M::Ceiling | M::Sqrt) => sig(c, &[&[Num]], Ty::Double),
        (Class::Math, M::Pow) => sig(c, &[&[Num, Num]], Ty::Double),
        (Class::Math, M::Sign) => sig(c, &[&[Num]], Ty::Int),
        (Class::Math, _) => Err(SigErr::NotFound),
        (_, M::Parse) => sig(c, &[&[Str]], class_ty(class)),
        (_, M::TryParse) if c.out => sig(c, &[&[Str, P::Any]], Ty::Bool),
        (Class::Double, M::IsNaN) => sig(c, &[&[Num]], Ty::Bool),
        _ => Err(SigErr::NotFound),
    }
}

fn sig_unit(c: &CallTys<'_>, overloads: &[&[P]]) -> Result<(), SigErr> {
    super::overload(c.args, overloads).map(|_| ())
}

pub(crate) fn method_sig(ty: &Ty, m: Member, c: &CallTys<'_>) -> Sig {
    match (ty, m) {
        (Ty::Bool, Member::ToString) => sig(c, &[&[]], Ty::String),
        (_, Member::ToString) => sig(c, &[&[], &[P::Str]], Ty::String),
        (Ty::Bool, Member::CompareTo) => sig(c, &[&[P::Bool]], Ty::Int),
        (_, Member::CompareTo) => sig(c, &[&[P::Num]], Ty::Int),
        _ => Err(SigErr::NotFound),
    }
}

pub(crate) fn static_get(class: Class, m: Member) -> RtResult<Value> {
    use Member as M;
    Ok(match (class, m) {
        (Class::Int, M::MaxValue) => Value::Int(i32::MAX),
        (Class::Int, M::MinValue) => Value::Int(i32::MIN),
        (Class::Long, M::MaxValue) => Value::Long(i64::MAX),
        (Class::Long, M::MinValue) => Value::Long(i64::MIN),
        (Class::Double, M::MaxValue) => Value::Double(f64::MAX),
        (Class::Double, M::MinValue) => Value::Double(f64::MIN),
        (Class::Double, M::NaN) => Value::Double(f64::NAN),
        (Class::Double, M::PositiveInfinity) => Value::Double(f64::INFINITY),
        (Class::Double, M::NegativeInfinity) => Value::Double(f64::NEG_INFINITY),
        (Class::Math, M::PI) => Value::Double(std::f64::consts::PI),
        _ => return Err(RuntimeError::no_member("type", m.name())),
    })
}

pub(crate) fn static_call(class: Class, m: Member, args: &[Value]) -> RtResult<Value> {
    use Member as M;
    match (class, m) {
        (Class::Math, M::Max | M::Min) => {
            let (a, b) = (num(args, 0)?, num(args, 1)?);
            let pick_a = match a.partial_cmp(b) {
                Some(o) => (o == std::cmp::Ordering::Greater) == (m == M::Max),
                None => true,
            };
            let chosen = if pick_a { a } else { b };
            Ok(match (a, b) {
                (Num::Double(_), _) | (_, Num::Double(_)) => Value::Double(chosen.as_f64()),
                (Num::Long(_), _) | (_, Num::Long(_)) => Value::Long(as_i64(chosen)),
                _ => Value::Int(i32::try_from(as_i64(chosen)).unwrap_or_default()),
            })
        }
        (Class::Math, M::Abs) => match num(args, 0)? {
            Num::Int(i) => i32::try_from(i.abs()).map(Value::Int).map_err(|_| {
                RuntimeError::new(
                    ErrorKind::Overflow,
                    "Negating the minimum value of a twos complement number is invalid.",
                )
            }),
            Num::Long(i) => i.checked_abs().map(Value::Long).ok_or_else(|| {
                RuntimeError::new(
                    ErrorKind::Overflow,
                    "Negating the minimum value of a twos complement number is invalid.",
                )
            }),
            Num::Double(d) => Ok(Value::Double(d.abs())),
        },
        (Class::Math, M::Round) => {
            let x = arg_f64(args, 0)?;
            Ok(Value::Double(match args.get(1) {
                Some(_) => {
                    let digits = super::arg_i64(args, 1)?;
                    if !(0..=15).contains(&digits) {
                        return Err(RuntimeError::out_of_range(
                            "Rounding digits must be between 0 and 15, inclusive. (Parameter 'digits')",
                        ));
                    }
                    let scale = 10f64.powi(i32::try_from(digits).unwrap_or(0));
                    (x * scale).round_ties_even() / scale
                }
                None => x.round_ties_even(),
            }))
        }
        (Class::Math, M::Floor) => Ok(Value::Double(arg_f64(args, 0)?.floor())),
        (Class::Math, M::Ceiling) => Ok(Value::Double(arg_f64(args, 0)?.ceil())),
        (Class::Math, M::Sqrt) => Ok(Value::Double(arg_f64(args, 0)?.sqrt())),
        (Class::Math, M::Pow) => Ok(Value::Double(arg_f64(args, 0)?.powf(arg_f64(args, 1)?))),
        (Class::Math, M::Sign) => {
            let x = arg_f64(args, 0)?;
            if x.is_nan() {
                return Err(RuntimeError::new(
                    ErrorKind::Argument,
                    "Function does not accept floating point Not-a-Number values.",
                ));
            }
            Ok(Value::Int(if x > 0.0 {
                1
            } else if x < 0.0 {
                -1
            } else {
                0
            }))
        }
        (Class::Double, M::IsNaN) => Ok(Value::Bool(arg_f64(args, 0)?.is_nan())),
        (_, M::Parse) => {
            let s = arg_str(args, 0, "s")?;
            parse(class, s)
        }
        _ => Err(RuntimeError::no_member("type", m.name())),
    }
}

fn num(args: &[Value], i: usize) -> RtResult<Num> {
    args.get(i)
        .and_then(Value::number)
        .ok_or_else(|| RuntimeError::cast(args.get(i).map_or("null", Value::type_name), "Double"))
}

fn as_i64(n: Num) -> i64 {
    match n {
        Num::Int(i) | Num::Long(i) => i,
        Num::Double(d) => d as i64,
    }
}

/// `int.Parse` & co.; a `FormatException` or `OverflowException` on bad input.
pub(crate) fn parse(class: Class, s: &str) -> RtResult<Value> {
    let bad = || {
        RuntimeError::format(format_args!(
            "The input string '{s}' was not in a correct format."
        ))
    };
    match class {
        Class::Int => {
            let v = parse_integer(s).ok_or_else(bad)?;
            i32::try_from(v)
                .map(Value::Int)
                .map_err(|_| overflow("Int32"))
        }
        Class::Long => {
            let v = parse_integer(s).ok_or_else(bad)?;
            i64::try_from(v)
                .map(Value::Long)
                .map_err(|_| overflow("Int64"))
        }
        Class::Double => parse_double(s).map(Value::Double).ok_or_else(bad),
        _ => parse_bool(s).map(Value::Bool).ok_or_else(|| {
            RuntimeError::format(format_args!(
                "String '{s}' was not recognized as a valid Boolean."
            ))
        }),
    }
}

fn overflow(ty: &str) -> RuntimeError {
    RuntimeError::new(
        ErrorKind::Overflow,
        format_args!("Value was either too large or too small for an {ty}."),
    )
}

/// `NumberStyles.Integer`: surrounding whitespace, one leading sign, decimal digits.
fn parse_integer(s: &str) -> Option<i128> {
    let t = s.trim();
    let (neg, digits) = match t.as_bytes().first()? {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = digits.trim_start_matches('0');
    if digits.len() > 30 {
        return Some(if neg { i128::MIN } else { i128::MAX });
    }
    let v: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    Some(if neg { -v } else { v })
}

/// `NumberStyles.Float | AllowThousands`, invariant culture.
pub(crate) fn parse_double(s: &str) -> Option<f64> {
    let t = s.trim();
    match t {
        "NaN" => return Some(f64::NAN),
        "Infinity" | "∞" | "+Infinity" => return Some(f64::INFINITY),
        "-Infinity" | "-∞" => return Some(f64::NEG_INFINITY),
        _ => {}
    }
    let cleaned: String = t.chars().filter(|c| *c != ',').collect();
    let valid = !cleaned.is_empty()
        && cleaned
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
        && cleaned.chars().any(|c| c.is_ascii_digit());
    if !valid {
        return None;
    }
    cleaned.parse().ok()
}

pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    let t = s.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    if t.eq_ignore_ascii_case("true") {
        Some(true)
    } else if t.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// `T.TryParse(s, out var v)`: (success, value or default).
pub(crate) fn try_parse(class: Class, args: &[Value]) -> (Value, Value) {
    let default = match class {
        Class::Int => Value::Int(0),
        Class::Long => Value::Long(0),
        Class::Double => Value::Double(0.0),
        _ => Value::Bool(false),
    };
    match arg_opt_str(args, 0) {
        Ok(Some(s)) => match parse(class, s) {
            Ok(v) => (Value::Bool(true), v),
            Err(_) => (Value::Bool(false), default),
        },
        _ => (Value::Bool(false), default),
    }
}

pub(crate) fn call(recv: &Value, m: Member, args: &[Value]) -> RtResult<Value> {
    match m {
        Member::ToString => match arg_opt_str(args, 0)? {
            Some(f) => Ok(Value::String(format_number(recv, f)?.into())),
            None => Ok(Value::String(recv.to_policy_string().into())),
        },
        Member::CompareTo => {
            let ord = match (recv, args.first()) {
                (Value::Bool(a), Some(Value::Bool(b))) => a.cmp(b),
                (_, Some(Value::Null)) => std::cmp::Ordering::Greater,
                (a, Some(b)) => match (a.number(), b.number()) {
                    (Some(x), Some(y)) => x.partial_cmp(y).unwrap_or(std::cmp::Ordering::Equal),
                    _ => return Err(RuntimeError::argument("Object must be of the same type.")),
                },
                _ => return Err(RuntimeError::argument("Object must be of the same type.")),
            };
            Ok(Value::Int(ord as i32))
        }
        _ => Err(RuntimeError::no_member(recv.type_name(), m.name())),
    }
}

/// `ToString(format)` for numbers: standard formats (`D`, `F`, `N`, `X`, `G`, `P`, `E`, `R`,
/// with precision) and custom ones made of `0`, `#`, `.` and `,`.
pub(crate) fn format_number(v: &Value, fmt: &str) -> RtResult<String> {
    let bad = || RuntimeError::format("Format specifier was invalid.");
    let n = v.number().ok_or_else(bad)?;
    let mut chars = fmt.chars();
    let spec = chars.next().ok_or_else(bad)?;
    let rest: String = chars.collect();
    let standard =
        spec.is_ascii_alphabetic() && rest.len() <= 2 && rest.bytes().all(|b| b.is_ascii_digit());
    if !standard {
        return Ok(custom_format(n.as_f64(), fmt));
    }
    let prec: Option<usize> = if rest.is_empty() {
        None
    } else {
        rest.parse().ok()
    };
    let int = match n {
        Num::Int(i) | Num::Long(i) => Some(i),
        Num::Double(_) => None,
    };
    let x = n.as_f64();
    Ok(match spec.to_ascii_uppercase() {
        'D' => {
            let i = int.ok_or_else(bad)?;
            let width = prec.unwrap_or(0);
            let digits = format!("{:0width$}", i.unsigned_abs());
            if i < 0 { format!("-{digits}") } else { digits }
        }
        'F' => format!("{:.*}", prec.unwrap_or(2), x),
        'N' => group_thousands(&format!("{:.*}", prec.unwrap_or(2), x)),
        'P' => format!(
            "{} %",
            group_thousands(&format!("{:.*}", prec.unwrap_or(2), x * 100.0))
        ),
        'X' => {
            let i = int.ok_or_else(bad)?;
            let width = prec.unwrap_or(0);
            let bits = if matches!(n, Num::Int(_)) {
                u64::from(i as u32)
            } else {
                i as u64
            };
            if spec == 'x' {
                format!("{bits:0width$x}")
            } else {
                format!("{bits:0width$X}")
            }
        }
        'E' => {
            let s = format!("{:.*e}", prec.unwrap_or(6), x);
            let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
            let e: i32 = exp.parse().unwrap_or(0);
            let sign = if e < 0 { '-' } else { '+' };
            format!(
                "{mantissa}{}{sign}{:03}",
                if spec == 'e' { 'e' } else { 'E' },
                e.unsigned_abs()
            )
        }
        'G' | 'R' => match int {
            Some(i) => i.to_string(),
            None => format_double(x),
        },
        'C' => format!(
            "¤{}",
            group_thousands(&format!("{:.*}", prec.unwrap_or(2), x))
        ),
        _ => return Err(bad()),
    })
}

fn group_thousands(fixed: &str) -> String {
    let (sign, body) = fixed.strip_prefix('-').map_or(("", fixed), |b| ("-", b));
    let (int, frac) = body
        .split_once('.')
        .map_or((body, None), |(i, f)| (i, Some(f)));
    let mut grouped = String::new();
    for (n, c) in int.chars().enumerate() {
        if n > 0 && (int.len() - n) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    match frac {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

/// Custom numeric formats: `0` (digit), `#` (optional digit), `.`, `,` (grouping); any other
/// characters before or after the pattern are kept.
fn custom_format(x: f64, fmt: &str) -> String {
    let is_pat = |c: char| matches!(c, '0' | '#' | '.' | ',');
    let start = fmt.find(is_pat).unwrap_or(fmt.len());
    let end = fmt.rfind(is_pat).map_or(start, |e| e + 1);
    let (prefix, pattern, suffix) = (&fmt[..start], &fmt[start..end], &fmt[end..]);
    let (int_pat, frac_pat) = pattern
        .split_once('.')
        .map_or((pattern, ""), |(i, f)| (i, f));
    let min_frac = frac_pat.chars().filter(|c| *c == '0').count();
    let max_frac = frac_pat.chars().filter(|c| matches!(c, '0' | '#')).count();
    let min_int = int_pat.chars().filter(|c| *c == '0').count();
    let group = int_pat.contains(',');
    let fixed = format!("{:.*}", max_frac, x.abs());
    let (int, frac) = fixed
        .split_once('.')
        .map_or((fixed.as_str(), ""), |(i, f)| (i, f));
    let mut frac = frac.to_owned();
    while frac.len() > min_frac && frac.ends_with('0') {
        frac.pop();
    }
    let mut int = int.trim_start_matches('0').to_owned();
    while int.len() < min_int {
        int.insert(0, '0');
    }
    if group {
        int = group_thousands(&int);
    }
    let negative =
        x < 0.0 && (int.chars().any(|c| c != '0' && c != ',') || frac.chars().any(|c| c != '0'));
    let mut out = String::from(prefix);
    if negative {
        out.push('-');
    }
    out.push_str(&int);
    if !frac.is_empty() {
        out.push('.');
        out.push_str(&frac);
    }
    out.push_str(suffix);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_dotnet() {
        assert_eq!(parse(Class::Int, " 42 ").unwrap(), Value::Int(42));
        assert_eq!(parse(Class::Int, "-0").unwrap(), Value::Int(0));
        assert!(parse(Class::Int, "4 2").is_err());
        assert_eq!(
            parse(Class::Int, "9999999999").unwrap_err().kind,
            ErrorKind::Overflow
        );
        assert_eq!(
            parse(Class::Long, "9000000000").unwrap(),
            Value::Long(9_000_000_000)
        );
        assert_eq!(
            parse(Class::Double, "1,000.5").unwrap(),
            Value::Double(1000.5)
        );
        assert!(parse(Class::Double, "inf").is_err());
        assert_eq!(parse(Class::Bool, "TRUE").unwrap(), Value::Bool(true));
    }

    #[test]
    fn formats_like_dotnet() {
        let f = |v: Value, s: &str| format_number(&v, s).unwrap();
        assert_eq!(f(Value::Int(5), "D3"), "005");
        assert_eq!(f(Value::Double(2.71728), "F2"), "2.72");
        assert_eq!(f(Value::Int(1234567), "N0"), "1,234,567");
        assert_eq!(f(Value::Int(255), "X"), "FF");
        assert_eq!(f(Value::Int(255), "x4"), "00ff");
        assert_eq!(f(Value::Double(0.5), "0.00"), "0.50");
        assert_eq!(f(Value::Double(1234.5), "#,##0.##"), "1,234.5");
        assert_eq!(f(Value::Double(0.5), "#.##"), ".5");
        assert_eq!(f(Value::Double(12345.678), "E2"), "1.23E+004");
        assert_eq!(f(Value::Double(0.25), "P0"), "25 %");
    }
}
