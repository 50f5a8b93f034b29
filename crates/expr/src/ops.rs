//! C# operators on values: numeric promotion, `int` arithmetic that wraps (C#'s default
//! unchecked context) but throws on division by zero, string concatenation with `+`,
//! lifted (null-propagating) arithmetic, and comparisons.

use std::cmp::Ordering;

use super::ast::{BinOp, UnOp};
use super::builtins::Rt;
use super::datetime::TimeSpan;
use super::error::{ErrorKind, RtResult, RuntimeError};
use super::json::Json;
use super::value::{Num, Obj, Value};

fn operator_error(op: &str, a: &Value, b: &Value) -> RuntimeError {
    RuntimeError::new(
        ErrorKind::Binder,
        format_args!(
            "Operator '{op}' cannot be applied to operands of type '{}' and '{}'",
            a.type_name(),
            b.type_name()
        ),
    )
}

pub(crate) fn unary(op: UnOp, v: Value) -> RtResult<Value> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    let bad = || {
        RuntimeError::new(
            ErrorKind::Binder,
            format_args!(
                "Operator cannot be applied to operand of type '{}'",
                v.type_name()
            ),
        )
    };
    match op {
        UnOp::Not => match v {
            Value::Bool(b) | Value::Json(Json::Bool(b)) => Ok(Value::Bool(!b)),
            _ => Err(bad()),
        },
        UnOp::Neg | UnOp::Plus => {
            let neg = op == UnOp::Neg;
            Ok(match (&v, v.number()) {
                (Value::Int(i), _) => Value::Int(if neg { i.wrapping_neg() } else { *i }),
                (Value::Char(_), Some(Num::Int(i))) => {
                    Value::Int(if neg { -(i as i32) } else { i as i32 })
                }
                (_, Some(Num::Long(i) | Num::Int(i))) => {
                    Value::Long(if neg { i.wrapping_neg() } else { i })
                }
                (_, Some(Num::Double(d))) => Value::Double(if neg { -d } else { d }),
                _ => return Err(bad()),
            })
        }
        UnOp::BitNot => match v {
            Value::Int(i) => Ok(Value::Int(!i)),
            Value::Long(i) => Ok(Value::Long(!i)),
            _ => Err(bad()),
        },
    }
}

/// Which kind of number an operation on `a` and `b` produces.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Long,
    Double,
}

fn kind(a: &Value, na: Num, nb: Num, b: &Value) -> Kind {
    let k = |v: &Value, n: Num| match (v, n) {
        (_, Num::Double(_)) => Kind::Double,
        (Value::Int(_) | Value::Char(_), _) => Kind::Int,
        _ => Kind::Long,
    };
    match (k(a, na), k(b, nb)) {
        (Kind::Double, _) | (_, Kind::Double) => Kind::Double,
        (Kind::Long, _) | (_, Kind::Long) => Kind::Long,
        _ => Kind::Int,
    }
}

fn int_of(n: Num) -> i64 {
    match n {
        Num::Int(i) | Num::Long(i) => i,
        Num::Double(d) => d as i64,
    }
}

fn divide_by_zero() -> RuntimeError {
    RuntimeError::new(ErrorKind::DivideByZero, "Attempted to divide by zero.")
}

fn overflow() -> RuntimeError {
    RuntimeError::new(
        ErrorKind::Overflow,
        "Arithmetic operation resulted in an overflow.",
    )
}

fn arithmetic(op: BinOp, a: &Value, b: &Value) -> RtResult<Value> {
    let (Some(na), Some(nb)) = (a.number(), b.number()) else {
        return Err(operator_error(op.text(), a, b));
    };
    match kind(a, na, nb, b) {
        Kind::Double => {
            let (x, y) = (na.as_f64(), nb.as_f64());
            Ok(Value::Double(match op {
                BinOp::Add => x + y,
                BinOp::Sub => x - y,
                BinOp::Mul => x * y,
                BinOp::Div => x / y,
                _ => x % y,
            }))
        }
        Kind::Int => {
            let (x, y) = (int_of(na) as i32, int_of(nb) as i32);
            Ok(Value::Int(match op {
                BinOp::Add => x.wrapping_add(y),
                BinOp::Sub => x.wrapping_sub(y),
                BinOp::Mul => x.wrapping_mul(y),
                BinOp::Div if y == 0 => return Err(divide_by_zero()),
                BinOp::Div => x.checked_div(y).ok_or_else(overflow)?,
                _ if y == 0 => return Err(divide_by_zero()),
                _ => x.checked_rem(y).ok_or_else(overflow)?,
            }))
        }
        Kind::Long => {
            let (x, y) = (int_of(na), int_of(nb));
            Ok(Value::Long(match op {
                BinOp::Add => x.wrapping_add(y),
                BinOp::Sub => x.wrapping_sub(y),
                BinOp::Mul => x.wrapping_mul(y),
                BinOp::Div if y == 0 => return Err(divide_by_zero()),
                BinOp::Div => x.checked_div(y).ok_or_else(overflow)?,
                _ if y == 0 => return Err(divide_by_zero()),
                _ => x.checked_rem(y).ok_or_else(overflow)?,
            }))
        }
    }
}

fn is_text(v: &Value) -> bool {
    matches!(v, Value::String(_))
}

/// Ordering for `<`, `>`, `<=`, `>=`; `None` when either side is null (the result is false).
pub(crate) fn compare(a: &Value, b: &Value) -> RtResult<Option<Ordering>> {
    if a.is_null() || b.is_null() {
        return Ok(None);
    }
    match (a, b) {
        (Value::DateTime(x), Value::DateTime(y)) => Ok(Some(x.cmp(y))),
        (Value::TimeSpan(x), Value::TimeSpan(y)) => Ok(Some(x.cmp(y))),
        _ => match (a.number(), b.number()) {
            (Some(x), Some(y)) => Ok(x.partial_cmp(y)),
            _ => Err(operator_error("<", a, b)),
        },
    }
}

pub(crate) fn binary(op: BinOp, a: Value, b: Value, rt: &mut Rt<'_>) -> RtResult<Value> {
    use BinOp as B;
    match op {
        B::Eq => return Ok(Value::Bool(a.loose_eq(&b))),
        B::Ne => return Ok(Value::Bool(!a.loose_eq(&b))),
        B::Lt | B::Gt | B::Le | B::Ge => {
            let ord = compare(&a, &b).map_err(|_| operator_error(op.text(), &a, &b))?;
            return Ok(Value::Bool(match ord {
                None => false,
                Some(o) => match op {
                    B::Lt => o == Ordering::Less,
                    B::Gt => o == Ordering::Greater,
                    B::Le => o != Ordering::Greater,
                    _ => o != Ordering::Less,
                },
            }));
        }
        B::Add if is_text(&a) || is_text(&b) => {
            let (x, y) = (a.policy_str(), b.policy_str());
            rt.alloc(x.len() + y.len())?;
            let mut joined = String::with_capacity(x.len() + y.len());
            joined.push_str(&x);
            joined.push_str(&y);
            return Ok(Value::String(joined.into()));
        }
        _ => {}
    }
    if a.is_null() || b.is_null() {
        return Ok(Value::Null);
    }
    match op {
        B::Add | B::Sub => {
            match (&a, &b) {
                (Value::DateTime(d), Value::TimeSpan(t)) => {
                    let ticks = if op == B::Add {
                        t.ticks()
                    } else {
                        t.ticks().checked_neg().unwrap_or(i64::MAX)
                    };
                    d.add_ticks(ticks).map(Value::DateTime).ok_or_else(|| {
                    RuntimeError::out_of_range("The added or subtracted value results in an un-representable DateTime.")
                })
                }
                (Value::DateTime(x), Value::DateTime(y)) if op == B::Sub => {
                    Ok(Value::TimeSpan(TimeSpan::from_ticks(x.ticks() - y.ticks())))
                }
                (Value::TimeSpan(x), Value::TimeSpan(y)) => {
                    let r = if op == B::Add {
                        x.ticks().checked_add(y.ticks())
                    } else {
                        x.ticks().checked_sub(y.ticks())
                    };
                    r.map(|t| Value::TimeSpan(TimeSpan::from_ticks(t)))
                        .ok_or_else(overflow)
                }
                _ => arithmetic(op, &a, &b),
            }
        }
        B::Mul | B::Div | B::Rem => arithmetic(op, &a, &b),
        B::BitAnd | B::BitOr | B::BitXor => match (&a, &b) {
            (Value::Bool(x), Value::Bool(y)) => Ok(Value::Bool(match op {
                B::BitAnd => x & y,
                B::BitOr => x | y,
                _ => x ^ y,
            })),
            (Value::Handle(x), Value::Handle(y)) => match (&x.0, &y.0) {
                (Obj::Enum(tx, vx, _), Obj::Enum(ty, vy, _)) if tx == ty => {
                    let v = match op {
                        B::BitAnd => vx & vy,
                        B::BitOr => vx | vy,
                        _ => vx ^ vy,
                    };
                    Ok(Value::obj(Obj::Enum(*tx, v, None)))
                }
                _ => Err(operator_error(op.text(), &a, &b)),
            },
            _ => {
                let (Some(na), Some(nb)) = (a.number(), b.number()) else {
                    return Err(operator_error(op.text(), &a, &b));
                };
                let (x, y) = (int_of(na), int_of(nb));
                let r = match op {
                    B::BitAnd => x & y,
                    B::BitOr => x | y,
                    _ => x ^ y,
                };
                match kind(&a, na, nb, &b) {
                    Kind::Int => Ok(Value::Int(r as i32)),
                    Kind::Long => Ok(Value::Long(r)),
                    Kind::Double => Err(operator_error(op.text(), &a, &b)),
                }
            }
        },
        _ => Err(operator_error(op.text(), &a, &b)),
    }
}

/// The truth of a condition (`if`, `?:`, `&&`, `||`, `!`).
pub(crate) fn truthy(v: &Value) -> RtResult<bool> {
    match v {
        Value::Bool(b) | Value::Json(Json::Bool(b)) => Ok(*b),
        Value::Null => Err(RuntimeError::new(
            ErrorKind::InvalidOperation,
            "Nullable object must have a value.",
        )),
        other => Err(RuntimeError::cast(other.type_name(), "Boolean")),
    }
}
