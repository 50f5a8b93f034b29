//! Small `System` classes policies use: `Random` (`Next`, `NextDouble`), `Array`
//! (`Array.Empty<T>()`, `Array.IndexOf`), and `DateTimeOffset`, whose values are UTC
//! `DateTime`s here (`UtcNow`, `FromUnixTimeSeconds`, `ToUnixTimeSeconds`…).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{CallTys, Member, P, Rt, Sig, SigErr, arg_i64, sig};
use crate::datetime::{DateTime, DateTimeKind};
use crate::error::{RtResult, RuntimeError};
use crate::types::{Class, Ty};
use crate::value::{Obj, Value};

/// `System.Random`: splitmix64 over an atomic state, so a `Random` held in a value stays
/// `Send + Sync`. Seeded from the OS (through a v4 UUID) unless a seed is given; a seeded
/// sequence is repeatable but not .NET's sequence.
#[derive(Debug)]
pub(crate) struct Random(AtomicU64);

impl Random {
    fn next_u64(&self) -> u64 {
        let s = self
            .0
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `[0, 1)` with 53 random bits.
    fn next_f64(&self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// An integer in `[min, max)`; `min` when they are equal.
    fn range(&self, min: i64, max: i64) -> i64 {
        let span = max.saturating_sub(min);
        if span <= 0 {
            return min;
        }
        let span = span.unsigned_abs();
        min.saturating_add(i64::try_from(self.next_u64() % span).unwrap_or(0))
    }
}

pub(crate) fn new_sig(class: Class, c: &CallTys<'_>) -> Sig {
    match class {
        Class::Random => sig(c, &[&[], &[P::Int]], Ty::Random),
        _ => Err(SigErr::NotFound),
    }
}

pub(crate) fn new_value(args: &[Value]) -> RtResult<Value> {
    let seed = match args.first() {
        Some(_) => arg_i64(args, 0)?.cast_unsigned(),
        None => uuid::Uuid::new_v4().as_u64_pair().0,
    };
    Ok(Value::obj(Obj::Random(Arc::new(Random(AtomicU64::new(
        seed,
    ))))))
}

pub(crate) fn random_method_sig(m: Member, c: &CallTys<'_>) -> Sig {
    match m {
        Member::Next => sig(c, &[&[], &[P::Int], &[P::Int, P::Int]], Ty::Int),
        Member::NextDouble => sig(c, &[&[]], Ty::Double),
        Member::NextInt64 => sig(c, &[&[], &[P::Int], &[P::Int, P::Int]], Ty::Long),
        _ => Err(SigErr::NotFound),
    }
}

pub(crate) fn random_call(r: &Random, m: Member, args: &[Value]) -> RtResult<Value> {
    let limit = if m == Member::NextInt64 {
        i64::MAX
    } else {
        i64::from(i32::MAX)
    };
    let (min, max) = match args.len() {
        0 => (0, limit),
        1 => (0, arg_i64(args, 0)?),
        _ => (arg_i64(args, 0)?, arg_i64(args, 1)?),
    };
    if max < 0 && args.len() == 1 {
        return Err(RuntimeError::out_of_range(format_args!(
            "Random.{}: maxValue must be non-negative, not {max}.",
            m.name()
        )));
    }
    if min > max {
        return Err(RuntimeError::out_of_range(format_args!(
            "Random.{}: minValue {min} is greater than maxValue {max}.",
            m.name()
        )));
    }
    match m {
        Member::Next => Ok(Value::Int(i32::try_from(r.range(min, max)).unwrap_or(0))),
        Member::NextInt64 => Ok(Value::Long(r.range(min, max))),
        Member::NextDouble => Ok(Value::Double(r.next_f64())),
        _ => Err(RuntimeError::no_member("Random", m.name())),
    }
}

// ---- Array ---------------------------------------------------------------------------------

pub(crate) fn array_static_sig(m: Member, c: &CallTys<'_>) -> Sig {
    match m {
        Member::Empty => match c.targ {
            Some(t) => sig(c, &[&[]], Ty::array_of(t.clone())),
            None => Err(SigErr::Other(
                "The type arguments for method 'Array.Empty<T>()' cannot be inferred from the usage; write Array.Empty<string>()".into(),
            )),
        },
        Member::IndexOf => sig(c, &[&[P::Seq, P::Any]], Ty::Int),
        _ => Err(SigErr::NotFound),
    }
}

pub(crate) fn array_static_call(m: Member, args: &[Value], rt: &mut Rt<'_>) -> RtResult<Value> {
    match m {
        Member::Empty => Ok(Value::Array(Arc::new([]))),
        Member::IndexOf => {
            let items = match args.first() {
                Some(Value::Null) | None => return Err(super::null_argument("array")),
                Some(v) => super::linq::enumerate(v, rt)?,
            };
            let needle = args.get(1).unwrap_or(&Value::Null);
            let found = items.iter().position(|v| v.loose_eq(needle));
            Ok(found.map_or(Value::Int(-1), super::len_value))
        }
        _ => Err(RuntimeError::no_member("Array", m.name())),
    }
}

/// The most items `Enumerable.Range` / `Repeat` make.
const MAX_GENERATED: i64 = 100_000;

pub(crate) fn enumerable_static_sig(m: Member, c: &CallTys<'_>) -> Sig {
    match m {
        Member::Empty => match c.targ {
            Some(t) => sig(c, &[&[]], Ty::array_of(t.clone())),
            None => Err(SigErr::Other(
                "The type arguments for method 'Enumerable.Empty<T>()' cannot be inferred from the usage; write Enumerable.Empty<string>()".into(),
            )),
        },
        Member::Range => sig(c, &[&[P::Int, P::Int]], Ty::array_of(Ty::Int)),
        Member::Repeat => match c.args {
            [t, Ty::Int | Ty::Object] => {
                Ok(Ty::array_of(c.targ.cloned().unwrap_or_else(|| t.clone())))
            }
            [_, _] => Err(SigErr::Types),
            _ => Err(SigErr::Arity),
        },
        _ => Err(SigErr::NotFound),
    }
}

pub(crate) fn enumerable_static_call(
    m: Member,
    args: &[Value],
    rt: &mut Rt<'_>,
) -> RtResult<Value> {
    let count = |i: usize| -> RtResult<i64> {
        let n = super::arg_i64(args, i)?;
        if !(0..=MAX_GENERATED).contains(&n) {
            return Err(RuntimeError::out_of_range(format_args!(
                "Specified argument was out of the range of valid values. (Parameter 'count'; this gateway makes at most {MAX_GENERATED} items)"
            )));
        }
        Ok(n)
    };
    match m {
        Member::Empty => Ok(Value::Array(Arc::new([]))),
        Member::Range => {
            let start = super::arg_i64(args, 0)?;
            let n = count(1)?;
            if start + n - 1 > i64::from(i32::MAX) {
                return Err(RuntimeError::out_of_range(
                    "Specified argument was out of the range of valid values. (Parameter 'count')",
                ));
            }
            rt.steps(usize::try_from(n).unwrap_or(0))?;
            Ok(Value::Array(
                (start..start + n)
                    .map(|i| Value::Int(i32::try_from(i).unwrap_or(i32::MAX)))
                    .collect(),
            ))
        }
        Member::Repeat => {
            let n = usize::try_from(count(1)?).unwrap_or(0);
            rt.steps(n)?;
            let item = args.first().cloned().unwrap_or(Value::Null);
            Ok(Value::Array(vec![item; n].into()))
        }
        _ => Err(RuntimeError::no_member("Enumerable", m.name())),
    }
}

// ---- DateTimeOffset ------------------------------------------------------------------------

pub(crate) fn offset_static_prop_ty(m: Member) -> Option<Ty> {
    matches!(
        m,
        Member::UtcNow | Member::Now | Member::MinValue | Member::MaxValue
    )
    .then_some(Ty::DateTime)
}

pub(crate) fn offset_static_sig(m: Member, c: &CallTys<'_>) -> Sig {
    match m {
        Member::FromUnixTimeSeconds | Member::FromUnixTimeMilliseconds => {
            sig(c, &[&[P::Int]], Ty::DateTime)
        }
        Member::Parse => sig(c, &[&[P::Str]], Ty::DateTime),
        _ => Err(SigErr::NotFound),
    }
}

/// Ticks (100 ns) between 0001-01-01 and the Unix epoch.
const UNIX_EPOCH_TICKS: i64 = 621_355_968_000_000_000;

pub(crate) fn offset_static_call(m: Member, args: &[Value]) -> RtResult<Value> {
    let per_unit = match m {
        Member::FromUnixTimeSeconds => 10_000_000,
        Member::FromUnixTimeMilliseconds => 10_000,
        Member::Parse => {
            return super::datetime::static_call(Class::DateTime, Member::Parse, args);
        }
        _ => return Err(RuntimeError::no_member("DateTimeOffset", m.name())),
    };
    let n = arg_i64(args, 0)?;
    n.checked_mul(per_unit)
        .and_then(|t| t.checked_add(UNIX_EPOCH_TICKS))
        .and_then(|t| DateTime::from_ticks(t, DateTimeKind::Utc))
        .map(Value::DateTime)
        .ok_or_else(|| {
            RuntimeError::out_of_range(format_args!(
                "DateTimeOffset.{}({n}) is outside the range of dates.",
                m.name()
            ))
        })
}

/// `ToUnixTimeSeconds()` / `ToUnixTimeMilliseconds()` of a date (UTC unless it says local:
/// local time is UTC here).
pub(crate) fn to_unix(d: DateTime, m: Member) -> RtResult<Value> {
    let per_unit = if m == Member::ToUnixTimeSeconds {
        10_000_000
    } else {
        10_000
    };
    Ok(Value::Long(
        (d.ticks() - UNIX_EPOCH_TICKS).div_euclid(per_unit),
    ))
}

// ---- BitConverter --------------------------------------------------------------------------

pub(crate) fn bit_converter_sig(m: Member, c: &CallTys<'_>) -> Sig {
    match m {
        Member::ToString => sig(c, &[&[P::Bytes]], Ty::String),
        _ => Err(SigErr::NotFound),
    }
}

/// `BitConverter.ToString(bytes)`: upper-case hex pairs joined with `-`.
pub(crate) fn bit_converter_call(m: Member, args: &[Value], rt: &mut Rt<'_>) -> RtResult<Value> {
    match (m, args.first()) {
        (Member::ToString, Some(Value::Bytes(b))) => {
            rt.alloc(b.len() * 3)?;
            let mut out = String::with_capacity(b.len() * 3);
            for (n, byte) in b.iter().enumerate() {
                if n > 0 {
                    out.push('-');
                }
                out.push(char::from(HEX[usize::from(byte >> 4)]));
                out.push(char::from(HEX[usize::from(byte & 15)]));
            }
            Ok(Value::String(out.into()))
        }
        (Member::ToString, Some(Value::Null) | None) => Err(super::null_argument("value")),
        _ => Err(RuntimeError::no_member("BitConverter", m.name())),
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";
