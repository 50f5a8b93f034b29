//! `DateTime` and `TimeSpan` members: `DateTime.UtcNow`, `AddSeconds`, `Year`…,
//! `TimeSpan.FromSeconds`, `TotalMinutes`…, and `new DateTime(…)`. The clock is the
//! context's ([`Context::now`](crate::Context::now)).

use super::{CallTys, Member, P, Rt, Sig, SigErr, arg_f64, arg_i64, arg_opt_str, arg_str, sig};
use crate::datetime::{
    DateTime, DateTimeKind, TICKS_PER_DAY, TICKS_PER_HOUR, TICKS_PER_MILLISECOND, TICKS_PER_MINUTE,
    TICKS_PER_SECOND, TimeSpan,
};
use crate::error::{ErrorKind, RtResult, RuntimeError};
use crate::types::{Class, EnumTy, Ty};
use crate::value::{Obj, Value};

pub(crate) fn prop_ty(ty: &Ty, m: Member) -> Option<Ty> {
    use Member as M;
    Some(match (ty, m) {
        (
            Ty::DateTime,
            M::Year
            | M::Month
            | M::Day
            | M::Hour
            | M::Minute
            | M::Second
            | M::Millisecond
            | M::DayOfYear,
        ) => Ty::Int,
        (Ty::DateTime | Ty::TimeSpan, M::Ticks) => Ty::Long,
        (Ty::DateTime, M::Date) => Ty::DateTime,
        (Ty::DateTime, M::TimeOfDay) => Ty::TimeSpan,
        (Ty::DateTime, M::Kind) => Ty::Enum(EnumTy::DateTimeKind),
        (Ty::DateTime, M::DayOfWeek) => Ty::Enum(EnumTy::DayOfWeek),
        (
            Ty::TimeSpan,
            M::TotalDays | M::TotalHours | M::TotalMinutes | M::TotalSeconds | M::TotalMilliseconds,
        ) => Ty::Double,
        (Ty::TimeSpan, M::Days | M::Hours | M::Minutes | M::Seconds | M::Milliseconds) => Ty::Int,
        _ => return None,
    })
}

pub(crate) fn method_sig(ty: &Ty, m: Member, c: &CallTys<'_>) -> Sig {
    use Member as M;
    match (ty, m) {
        (Ty::DateTime, M::AddYears | M::AddMonths) => sig(c, &[&[P::Int]], Ty::DateTime),
        (
            Ty::DateTime,
            M::AddDays | M::AddHours | M::AddMinutes | M::AddSeconds | M::AddMilliseconds,
        ) => sig(c, &[&[P::Num]], Ty::DateTime),
        (Ty::DateTime, M::AddTicks) => sig(c, &[&[P::Int]], Ty::DateTime),
        (Ty::DateTime, M::Add) => sig(c, &[&[P::TimeSpan]], Ty::DateTime),
        (Ty::DateTime, M::Subtract) => match c.args {
            [Ty::DateTime] => Ok(Ty::TimeSpan),
            [Ty::TimeSpan] => Ok(Ty::DateTime),
            [t] if t.is_dynamic() => Ok(Ty::Object),
            [_] => Err(SigErr::Types),
            _ => Err(SigErr::Arity),
        },
        (Ty::DateTime, M::ToUniversalTime | M::ToLocalTime) => sig(c, &[&[]], Ty::DateTime),
        (Ty::DateTime, M::ToString) => sig(c, &[&[], &[P::Str]], Ty::String),
        (Ty::DateTime, M::CompareTo) => sig(c, &[&[P::DateTime]], Ty::Int),
        (Ty::TimeSpan, M::Add | M::Subtract) => sig(c, &[&[P::TimeSpan]], Ty::TimeSpan),
        (Ty::TimeSpan, M::Negate | M::Duration) => sig(c, &[&[]], Ty::TimeSpan),
        (Ty::TimeSpan, M::ToString) => sig(c, &[&[]], Ty::String),
        (Ty::TimeSpan, M::CompareTo) => sig(c, &[&[P::TimeSpan]], Ty::Int),
        _ => Err(SigErr::NotFound),
    }
}

pub(crate) fn static_prop_ty(class: Class, m: Member) -> Option<Ty> {
    use Member as M;
    match (class, m) {
        (Class::DateTime, M::UtcNow | M::Now | M::Today | M::MinValue | M::MaxValue) => {
            Some(Ty::DateTime)
        }
        (Class::TimeSpan, M::Zero | M::MinValue | M::MaxValue) => Some(Ty::TimeSpan),
        _ => None,
    }
}

pub(crate) fn static_sig(class: Class, m: Member, c: &CallTys<'_>) -> Sig {
    use Member as M;
    match (class, m) {
        (Class::DateTime, M::Parse) => sig(c, &[&[P::Str]], Ty::DateTime),
        (Class::DateTime, M::TryParse) if c.out => sig(c, &[&[P::Str, P::Any]], Ty::Bool),
        (
            Class::TimeSpan,
            M::FromDays | M::FromHours | M::FromMinutes | M::FromSeconds | M::FromMilliseconds,
        ) => sig(c, &[&[P::Num]], Ty::TimeSpan),
        (Class::TimeSpan, M::FromTicks) => sig(c, &[&[P::Int]], Ty::TimeSpan),
        _ => Err(SigErr::NotFound),
    }
}

pub(crate) fn new_sig(class: Class, c: &CallTys<'_>) -> Sig {
    use P::Int;
    const KIND: P = P::Enum(EnumTy::DateTimeKind);
    match class {
        Class::DateTime => sig(
            c,
            &[
                &[Int],
                &[Int, KIND],
                &[Int, Int, Int],
                &[Int, Int, Int, Int, Int, Int],
                &[Int, Int, Int, Int, Int, Int, KIND],
                &[Int, Int, Int, Int, Int, Int, Int],
                &[Int, Int, Int, Int, Int, Int, Int, KIND],
            ],
            Ty::DateTime,
        ),
        _ => sig(
            c,
            &[
                &[Int],
                &[Int, Int, Int],
                &[Int, Int, Int, Int],
                &[Int, Int, Int, Int, Int],
            ],
            Ty::TimeSpan,
        ),
    }
}

fn range_error() -> RuntimeError {
    RuntimeError::out_of_range(
        "The added or subtracted value results in an un-representable DateTime.",
    )
}

fn kind_of(v: Option<&Value>) -> DateTimeKind {
    match v.and_then(super::enum_arg) {
        Some((_, 1)) => DateTimeKind::Utc,
        Some((_, 2)) => DateTimeKind::Local,
        _ => DateTimeKind::Unspecified,
    }
}

pub(crate) fn new_value(class: Class, args: &[Value]) -> RtResult<Value> {
    let ints: Vec<i64> = args
        .iter()
        .filter(|a| super::enum_arg(a).is_none())
        .map(|a| arg_i64(std::slice::from_ref(a), 0))
        .collect::<RtResult<_>>()?;
    let kind = kind_of(args.iter().find(|a| super::enum_arg(a).is_some()));
    if class == Class::TimeSpan {
        // Checked: the parts come from the expression and may be anything.
        let sum = |parts: &[(i64, i64)]| {
            parts.iter().try_fold(0i64, |acc, (v, unit)| {
                acc.checked_add(v.checked_mul(*unit)?)
            })
        };
        let ticks = match ints.as_slice() {
            [t] => Some(*t),
            [h, m, s] => sum(&[
                (*h, TICKS_PER_HOUR),
                (*m, TICKS_PER_MINUTE),
                (*s, TICKS_PER_SECOND),
            ]),
            [d, h, m, s] => sum(&[
                (*d, TICKS_PER_DAY),
                (*h, TICKS_PER_HOUR),
                (*m, TICKS_PER_MINUTE),
                (*s, TICKS_PER_SECOND),
            ]),
            [d, h, m, s, ms] => sum(&[
                (*d, TICKS_PER_DAY),
                (*h, TICKS_PER_HOUR),
                (*m, TICKS_PER_MINUTE),
                (*s, TICKS_PER_SECOND),
                (*ms, TICKS_PER_MILLISECOND),
            ]),
            _ => None,
        };
        return ticks
            .map(|t| Value::TimeSpan(TimeSpan::from_ticks(t)))
            .ok_or_else(|| {
                RuntimeError::new(
                    ErrorKind::Overflow,
                    "TimeSpan overflowed because the duration is too long.",
                )
            });
    }
    let dt = match ints.as_slice() {
        [ticks] => DateTime::from_ticks(*ticks, kind),
        [y, mo, d] => DateTime::from_parts(*y, *mo, *d, 0, 0, 0, 0, kind),
        [y, mo, d, h, mi, s] => DateTime::from_parts(*y, *mo, *d, *h, *mi, *s, 0, kind),
        [y, mo, d, h, mi, s, ms] if (0..1000).contains(ms) => {
            DateTime::from_parts(*y, *mo, *d, *h, *mi, *s, ms * TICKS_PER_MILLISECOND, kind)
        }
        _ => None,
    };
    dt.map(Value::DateTime).ok_or_else(|| {
        RuntimeError::out_of_range(
            "Year, Month, and Day parameters describe an un-representable DateTime.",
        )
    })
}

pub(crate) fn static_get(class: Class, m: Member, rt: &mut Rt<'_>) -> RtResult<Value> {
    use Member as M;
    let now = || DateTime::from_system_time(rt.ctx.now());
    Ok(match (class, m) {
        (Class::DateTime, M::UtcNow) => Value::DateTime(now()),
        (Class::DateTime, M::Now) => Value::DateTime(now().with_kind(DateTimeKind::Local)),
        (Class::DateTime, M::Today) => Value::DateTime(now().date().with_kind(DateTimeKind::Local)),
        (Class::DateTime, M::MinValue) => {
            DateTime::from_ticks(0, DateTimeKind::Unspecified).map_or(Value::Null, Value::DateTime)
        }
        (Class::DateTime, M::MaxValue) => {
            DateTime::from_ticks(3_155_378_975_999_999_999, DateTimeKind::Unspecified)
                .map_or(Value::Null, Value::DateTime)
        }
        (Class::TimeSpan, M::Zero) => Value::TimeSpan(TimeSpan::from_ticks(0)),
        (Class::TimeSpan, M::MinValue) => Value::TimeSpan(TimeSpan::from_ticks(i64::MIN)),
        (Class::TimeSpan, M::MaxValue) => Value::TimeSpan(TimeSpan::from_ticks(i64::MAX)),
        _ => return Err(RuntimeError::no_member("DateTime", m.name())),
    })
}

fn span_from(value: f64, unit: i64) -> RtResult<Value> {
    TimeSpan::from_units(value, unit)
        .map(Value::TimeSpan)
        .ok_or_else(|| {
            RuntimeError::new(
                ErrorKind::Overflow,
                "TimeSpan overflowed because the duration is too long.",
            )
        })
}

pub(crate) fn static_call(class: Class, m: Member, args: &[Value]) -> RtResult<Value> {
    use Member as M;
    match (class, m) {
        (Class::DateTime, M::Parse) => {
            let s = arg_str(args, 0, "s")?;
            DateTime::parse(s).map(Value::DateTime).ok_or_else(|| {
                RuntimeError::format(format_args!(
                    "String '{s}' was not recognized as a valid DateTime."
                ))
            })
        }
        (Class::TimeSpan, M::FromDays) => span_from(arg_f64(args, 0)?, TICKS_PER_DAY),
        (Class::TimeSpan, M::FromHours) => span_from(arg_f64(args, 0)?, TICKS_PER_HOUR),
        (Class::TimeSpan, M::FromMinutes) => span_from(arg_f64(args, 0)?, TICKS_PER_MINUTE),
        (Class::TimeSpan, M::FromSeconds) => span_from(arg_f64(args, 0)?, TICKS_PER_SECOND),
        (Class::TimeSpan, M::FromMilliseconds) => {
            span_from(arg_f64(args, 0)?, TICKS_PER_MILLISECOND)
        }
        (Class::TimeSpan, M::FromTicks) => {
            Ok(Value::TimeSpan(TimeSpan::from_ticks(arg_i64(args, 0)?)))
        }
        _ => Err(RuntimeError::no_member("DateTime", m.name())),
    }
}

/// `DateTime.TryParse(s, out var d)`.
pub(crate) fn try_parse(args: &[Value]) -> (Value, Value) {
    match arg_opt_str(args, 0)
        .ok()
        .flatten()
        .and_then(DateTime::parse)
    {
        Some(d) => (Value::Bool(true), Value::DateTime(d)),
        None => (
            Value::Bool(false),
            DateTime::from_ticks(0, DateTimeKind::Unspecified).map_or(Value::Null, Value::DateTime),
        ),
    }
}

pub(crate) fn get(recv: &Value, m: Member) -> RtResult<Value> {
    use Member as M;
    let int = |v: i64| Value::Int(i32::try_from(v).unwrap_or_default());
    match recv {
        Value::DateTime(d) => {
            let p = d.parts();
            Ok(match m {
                M::Year => int(i64::from(p.year)),
                M::Month => int(i64::from(p.month)),
                M::Day => int(i64::from(p.day)),
                M::Hour => int(p.hour),
                M::Minute => int(p.minute),
                M::Second => int(p.second),
                M::Millisecond => int(p.fraction / TICKS_PER_MILLISECOND),
                M::DayOfYear => int(i64::from(p.day_of_year)),
                M::DayOfWeek => {
                    // 0001-01-01 was a Monday.
                    let day = usize::try_from((d.ticks() / TICKS_PER_DAY + 1) % 7).unwrap_or(0);
                    let member = super::DAYS[day];
                    Value::obj(Obj::Enum(
                        EnumTy::DayOfWeek,
                        i32::try_from(day).unwrap_or(0),
                        Some(member),
                    ))
                }
                M::Ticks => Value::Long(d.ticks()),
                M::Date => Value::DateTime(d.date()),
                M::TimeOfDay => Value::TimeSpan(TimeSpan::from_ticks(d.ticks() % TICKS_PER_DAY)),
                M::Kind => {
                    let (v, name) = match d.kind() {
                        DateTimeKind::Unspecified => (0, M::Unspecified),
                        DateTimeKind::Utc => (1, M::Utc),
                        DateTimeKind::Local => (2, M::Local),
                    };
                    Value::obj(Obj::Enum(EnumTy::DateTimeKind, v, Some(name)))
                }
                _ => return Err(RuntimeError::no_member("DateTime", m.name())),
            })
        }
        Value::TimeSpan(t) => Ok(match m {
            M::TotalDays => Value::Double(t.total(TICKS_PER_DAY)),
            M::TotalHours => Value::Double(t.total(TICKS_PER_HOUR)),
            M::TotalMinutes => Value::Double(t.total(TICKS_PER_MINUTE)),
            M::TotalSeconds => Value::Double(t.total(TICKS_PER_SECOND)),
            M::TotalMilliseconds => Value::Double(t.total(TICKS_PER_MILLISECOND)),
            M::Days => int(t.ticks() / TICKS_PER_DAY),
            M::Hours => int(t.component(TICKS_PER_HOUR, 24)),
            M::Minutes => int(t.component(TICKS_PER_MINUTE, 60)),
            M::Seconds => int(t.component(TICKS_PER_SECOND, 60)),
            M::Milliseconds => int(t.component(TICKS_PER_MILLISECOND, 1000)),
            M::Ticks => Value::Long(t.ticks()),
            _ => return Err(RuntimeError::no_member("TimeSpan", m.name())),
        }),
        _ => Err(RuntimeError::no_member(recv.type_name(), m.name())),
    }
}

fn add_units(d: DateTime, value: f64, unit: i64) -> RtResult<Value> {
    let ticks = (value * unit as f64).round();
    if !ticks.is_finite() || ticks.abs() > 3.2e18 {
        return Err(range_error());
    }
    d.add_ticks(ticks as i64)
        .map(Value::DateTime)
        .ok_or_else(range_error)
}

pub(crate) fn call(recv: &Value, m: Member, args: &[Value]) -> RtResult<Value> {
    use Member as M;
    match recv {
        Value::DateTime(d) => match m {
            M::AddYears => d
                .add_months(arg_i64(args, 0)?.saturating_mul(12))
                .map(Value::DateTime)
                .ok_or_else(range_error),
            M::AddMonths => d
                .add_months(arg_i64(args, 0)?)
                .map(Value::DateTime)
                .ok_or_else(range_error),
            M::AddDays => add_units(*d, arg_f64(args, 0)?, TICKS_PER_DAY),
            M::AddHours => add_units(*d, arg_f64(args, 0)?, TICKS_PER_HOUR),
            M::AddMinutes => add_units(*d, arg_f64(args, 0)?, TICKS_PER_MINUTE),
            M::AddSeconds => add_units(*d, arg_f64(args, 0)?, TICKS_PER_SECOND),
            M::AddMilliseconds => add_units(*d, arg_f64(args, 0)?, TICKS_PER_MILLISECOND),
            M::AddTicks => d
                .add_ticks(arg_i64(args, 0)?)
                .map(Value::DateTime)
                .ok_or_else(range_error),
            M::Add => match args.first() {
                Some(Value::TimeSpan(t)) => d
                    .add_ticks(t.ticks())
                    .map(Value::DateTime)
                    .ok_or_else(range_error),
                _ => Err(RuntimeError::cast(
                    args.first().map_or("null", Value::type_name),
                    "TimeSpan",
                )),
            },
            M::Subtract => match args.first() {
                Some(Value::DateTime(o)) => {
                    Ok(Value::TimeSpan(TimeSpan::from_ticks(d.ticks() - o.ticks())))
                }
                Some(Value::TimeSpan(t)) => d
                    .add_ticks(t.ticks().checked_neg().ok_or_else(range_error)?)
                    .map(Value::DateTime)
                    .ok_or_else(range_error),
                other => Err(RuntimeError::cast(
                    other.map_or("null", Value::type_name),
                    "DateTime",
                )),
            },
            M::ToUniversalTime => Ok(Value::DateTime(d.with_kind(DateTimeKind::Utc))),
            M::ToLocalTime => Ok(Value::DateTime(d.with_kind(DateTimeKind::Local))),
            M::ToString => d
                .format(arg_opt_str(args, 0)?)
                .map(|s| Value::String(s.into()))
                .map_err(RuntimeError::format),
            M::CompareTo => match args.first() {
                Some(Value::DateTime(o)) => Ok(Value::Int(d.cmp(o) as i32)),
                _ => Err(RuntimeError::argument("Object must be of type DateTime.")),
            },
            _ => Err(RuntimeError::no_member("DateTime", m.name())),
        },
        Value::TimeSpan(t) => match m {
            M::Add | M::Subtract => match args.first() {
                Some(Value::TimeSpan(o)) => {
                    let r = if m == M::Add {
                        t.ticks().checked_add(o.ticks())
                    } else {
                        t.ticks().checked_sub(o.ticks())
                    };
                    r.map(|v| Value::TimeSpan(TimeSpan::from_ticks(v)))
                        .ok_or_else(|| {
                            RuntimeError::new(
                                ErrorKind::Overflow,
                                "TimeSpan overflowed because the duration is too long.",
                            )
                        })
                }
                other => Err(RuntimeError::cast(
                    other.map_or("null", Value::type_name),
                    "TimeSpan",
                )),
            },
            M::Negate => Ok(Value::TimeSpan(TimeSpan::from_ticks(
                t.ticks().saturating_neg(),
            ))),
            M::Duration => Ok(Value::TimeSpan(TimeSpan::from_ticks(
                t.ticks().saturating_abs(),
            ))),
            M::ToString => Ok(Value::String(t.format().into())),
            M::CompareTo => match args.first() {
                Some(Value::TimeSpan(o)) => Ok(Value::Int(t.cmp(o) as i32)),
                _ => Err(RuntimeError::argument("Object must be of type TimeSpan.")),
            },
            _ => Err(RuntimeError::no_member("TimeSpan", m.name())),
        },
        _ => Err(RuntimeError::no_member(recv.type_name(), m.name())),
    }
}
