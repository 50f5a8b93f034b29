//! LINQ over anything enumerable (arrays, `Split` results, headers, query parameters, JSON
//! arrays and objects, claims): `Any`, `Where`, `Select`, `First(OrDefault)`, `Count`… Lambdas
//! are evaluated by the interpreter, which passes them in as closures; sequences are
//! materialised (every element costs a step), so nothing here can run unbounded.

use std::cmp::Ordering;

use super::{Member, Rt, SigErr, len_value};
use crate::error::{ErrorKind, RtResult, RuntimeError};
use crate::json::Json;
use crate::types::Ty;
use crate::value::{Num, Obj, Value};

/// Whether `m` is a LINQ operator, and whether it takes a lambda: `Some(true)` required,
/// `Some(false)` optional, `None` never.
pub(crate) fn lambda_arity(m: Member) -> Option<Option<bool>> {
    use Member as M;
    Some(match m {
        M::All | M::Where | M::Select | M::OrderBy | M::OrderByDescending => Some(true),
        M::Any
        | M::First
        | M::FirstOrDefault
        | M::Last
        | M::LastOrDefault
        | M::Single
        | M::SingleOrDefault
        | M::Count
        | M::Max
        | M::Min
        | M::Sum
        | M::Average => Some(false),
        M::Contains
        | M::Skip
        | M::Take
        | M::ElementAt
        | M::ToArray
        | M::ToList
        | M::Distinct
        | M::Reverse => None,
        _ => return None,
    })
}

/// The result type of `seq.op(…)`, given the element type, the lambda body's type (when there
/// is a lambda) and the types of other arguments.
pub(crate) fn sig(m: Member, elem: &Ty, body: Option<&Ty>, args: &[Ty]) -> Result<Ty, SigErr> {
    use Member as M;
    let arity = |n: usize| {
        if args.len() == n {
            Ok(())
        } else {
            Err(SigErr::Arity)
        }
    };
    let predicate = || match body {
        Some(Ty::Bool) | Some(Ty::Object) | None => Ok(()),
        Some(t) => Err(SigErr::Other(format!(
            "Cannot implicitly convert type '{t}' to 'bool'"
        ))),
    };
    let seq = Ty::array_of(elem.clone());
    match m {
        M::Any | M::All => {
            predicate()?;
            arity(0)?;
            Ok(Ty::Bool)
        }
        M::Where => {
            predicate()?;
            Ok(seq)
        }
        M::Select => Ok(Ty::array_of(body.cloned().unwrap_or(Ty::Object))),
        M::First
        | M::FirstOrDefault
        | M::Last
        | M::LastOrDefault
        | M::Single
        | M::SingleOrDefault => {
            predicate()?;
            arity(0)?;
            Ok(elem.clone())
        }
        M::Count => {
            predicate()?;
            arity(0)?;
            Ok(Ty::Int)
        }
        M::Max | M::Min => Ok(body.unwrap_or(elem).clone()),
        M::Sum => {
            let t = body.unwrap_or(elem);
            match t {
                Ty::Int | Ty::Long | Ty::Double | Ty::Object => Ok(t.clone()),
                other => Err(SigErr::Other(format!("Sum is not defined for '{other}'"))),
            }
        }
        M::Average => Ok(Ty::Double),
        M::OrderBy | M::OrderByDescending | M::ToArray | M::ToList | M::Distinct | M::Reverse => {
            arity(0)?;
            Ok(seq)
        }
        M::Skip | M::Take => {
            arity(1)?;
            Ok(seq)
        }
        M::ElementAt => {
            arity(1)?;
            Ok(elem.clone())
        }
        M::Contains => {
            arity(1)?;
            Ok(Ty::Bool)
        }
        _ => Err(SigErr::NotFound),
    }
}

/// The items of an enumerable value.
pub(crate) fn enumerate(v: &Value, rt: &mut Rt<'_>) -> RtResult<Vec<Value>> {
    let items = match v {
        Value::Null => {
            return Err(RuntimeError::new(
                ErrorKind::Argument,
                "Value cannot be null. (Parameter 'source')",
            ));
        }
        Value::Array(items) => items.to_vec(),
        Value::Bytes(b) => b.iter().map(|b| Value::Int(i32::from(*b))).collect(),
        Value::String(s) => s.chars().map(Value::Char).collect(),
        Value::Json(Json::Array(_) | Json::Object(_)) => {
            let Value::Json(j) = v else {
                return Ok(Vec::new());
            };
            super::json::children(j, rt)?
        }
        Value::Handle(h) => match &h.0 {
            Obj::Ctx(c) => super::context::pairs(*c, rt)?,
            Obj::Query(q) => super::url::query_pairs(q),
            Obj::Claims(j) => super::jwt::claim_pairs(j),
            Obj::Groups(m) => super::regex::groups(m),
            Obj::ResponseHeaders(r) => super::response::pairs(r),
            _ => return Err(not_enumerable(v)),
        },
        _ => return Err(not_enumerable(v)),
    };
    rt.steps(items.len())?;
    Ok(items)
}

fn not_enumerable(v: &Value) -> RuntimeError {
    RuntimeError::new(
        ErrorKind::Binder,
        format_args!("'{}' is not enumerable.", v.type_name()),
    )
}

fn truthy(v: &Value) -> RtResult<bool> {
    match v {
        Value::Bool(b) | Value::Json(Json::Bool(b)) => Ok(*b),
        other => Err(RuntimeError::cast(other.type_name(), "Boolean")),
    }
}

fn no_elements() -> RuntimeError {
    RuntimeError::new(ErrorKind::InvalidOperation, "Sequence contains no elements")
}

/// Orders values as LINQ's default comparer does: null first, numbers numerically, strings
/// ordinally, dates and spans by time.
pub(crate) fn compare(a: &Value, b: &Value) -> RtResult<Ordering> {
    Ok(match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Json(Json::String(x)), Value::Json(Json::String(y))) => x.cmp(y),
        (Value::Char(x), Value::Char(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::DateTime(x), Value::DateTime(y)) => x.cmp(y),
        (Value::TimeSpan(x), Value::TimeSpan(y)) => x.cmp(y),
        _ => match (a.number(), b.number()) {
            (Some(x), Some(y)) => x.partial_cmp(y).unwrap_or(Ordering::Equal),
            _ => {
                return Err(RuntimeError::argument(format_args!(
                    "Cannot compare '{}' with '{}'.",
                    a.type_name(),
                    b.type_name()
                )));
            }
        },
    })
}

type Lambda<'f> = Option<&'f mut dyn FnMut(&Value) -> RtResult<Value>>;

/// Runs operator `m` over `items`; `f` is the lambda (when given), `arg` the other argument.
pub(crate) fn run(
    m: Member,
    items: Vec<Value>,
    mut f: Lambda<'_>,
    arg: Option<&Value>,
) -> RtResult<Value> {
    use Member as M;
    let lambda = f.is_some();
    let mut test = |v: &Value| -> RtResult<bool> {
        match f.as_mut() {
            Some(f) => truthy(&f(v)?),
            None => Ok(true),
        }
    };
    match m {
        M::Any => {
            for v in &items {
                if test(v)? {
                    return Ok(Value::Bool(true));
                }
            }
            Ok(Value::Bool(false))
        }
        M::All => {
            for v in &items {
                if !test(v)? {
                    return Ok(Value::Bool(false));
                }
            }
            Ok(Value::Bool(true))
        }
        M::Count => {
            let mut n = 0usize;
            for v in &items {
                if test(v)? {
                    n += 1;
                }
            }
            Ok(len_value(n))
        }
        M::Where => {
            let mut out = Vec::new();
            for v in items {
                if test(&v)? {
                    out.push(v);
                }
            }
            Ok(Value::Array(out.into()))
        }
        M::First | M::FirstOrDefault => {
            for v in items {
                if test(&v)? {
                    return Ok(v);
                }
            }
            if m == M::First {
                Err(no_elements())
            } else {
                Ok(Value::Null)
            }
        }
        M::Last | M::LastOrDefault => {
            let mut found = None;
            for v in items {
                if test(&v)? {
                    found = Some(v);
                }
            }
            match found {
                Some(v) => Ok(v),
                None if m == M::Last => Err(no_elements()),
                None => Ok(Value::Null),
            }
        }
        M::Single | M::SingleOrDefault => {
            let mut found = None;
            for v in items {
                if test(&v)? {
                    if found.is_some() {
                        return Err(RuntimeError::new(
                            ErrorKind::InvalidOperation,
                            if lambda {
                                "Sequence contains more than one matching element"
                            } else {
                                "Sequence contains more than one element"
                            },
                        ));
                    }
                    found = Some(v);
                }
            }
            match found {
                Some(v) => Ok(v),
                None if m == M::Single => Err(if lambda {
                    RuntimeError::new(
                        ErrorKind::InvalidOperation,
                        "Sequence contains no matching element",
                    )
                } else {
                    no_elements()
                }),
                None => Ok(Value::Null),
            }
        }
        M::Select | M::Max | M::Min | M::Sum | M::Average | M::OrderBy | M::OrderByDescending => {
            let mapped = match f.as_mut() {
                Some(f) => {
                    let mut out = Vec::with_capacity(items.len());
                    for v in &items {
                        out.push(f(v)?);
                    }
                    out
                }
                None => items.clone(),
            };
            match m {
                M::Select => Ok(Value::Array(mapped.into())),
                M::Max | M::Min => {
                    let mut best: Option<Value> = None;
                    for v in mapped.into_iter().filter(|v| !v.is_null()) {
                        best = Some(match best {
                            None => v,
                            Some(b) => {
                                let ord = compare(&v, &b)?;
                                if (m == M::Max && ord == Ordering::Greater)
                                    || (m == M::Min && ord == Ordering::Less)
                                {
                                    v
                                } else {
                                    b
                                }
                            }
                        });
                    }
                    best.ok_or_else(no_elements)
                }
                M::Sum | M::Average => {
                    let count = mapped.len();
                    let mut total = Num::Int(0);
                    for v in &mapped {
                        let n = v
                            .number()
                            .ok_or_else(|| RuntimeError::cast(v.type_name(), "Double"))?;
                        total = add(total, n)?;
                    }
                    if m == M::Average {
                        if count == 0 {
                            return Err(no_elements());
                        }
                        return Ok(Value::Double(total.as_f64() / count as f64));
                    }
                    Ok(match total {
                        Num::Int(i) => i32::try_from(i).map(Value::Int).map_err(|_| overflow())?,
                        Num::Long(i) => Value::Long(i),
                        Num::Double(d) => Value::Double(d),
                    })
                }
                _ => {
                    let mut keyed: Vec<(Value, Value)> = mapped.into_iter().zip(items).collect();
                    let mut error = None;
                    keyed.sort_by(|(a, _), (b, _)| match compare(a, b) {
                        Ok(o) => o,
                        Err(e) => {
                            error.get_or_insert(e);
                            Ordering::Equal
                        }
                    });
                    if let Some(e) = error {
                        return Err(e);
                    }
                    if m == M::OrderByDescending {
                        keyed.reverse();
                    }
                    Ok(Value::Array(keyed.into_iter().map(|(_, v)| v).collect()))
                }
            }
        }
        M::Contains => {
            let needle = arg.unwrap_or(&Value::Null);
            Ok(Value::Bool(items.iter().any(|v| v.loose_eq(needle))))
        }
        M::Skip | M::Take | M::ElementAt => {
            let n = match arg.and_then(Value::number) {
                Some(Num::Int(i) | Num::Long(i)) => i,
                _ => {
                    return Err(RuntimeError::cast(
                        arg.map_or("null", Value::type_name),
                        "Int32",
                    ));
                }
            };
            let n = usize::try_from(n.max(0)).unwrap_or(0);
            match m {
                M::Skip => Ok(Value::Array(items.into_iter().skip(n).collect())),
                M::Take => Ok(Value::Array(items.into_iter().take(n).collect())),
                _ => items.into_iter().nth(n).ok_or_else(|| {
                    RuntimeError::out_of_range("Index was out of range. Must be non-negative and less than the size of the collection. (Parameter 'index')")
                }),
            }
        }
        M::ToArray | M::ToList => Ok(Value::Array(items.into())),
        M::Reverse => Ok(Value::Array(items.into_iter().rev().collect())),
        M::Distinct => {
            let mut out: Vec<Value> = Vec::new();
            for v in items {
                if !out.iter().any(|o| o.loose_eq(&v)) {
                    out.push(v);
                }
            }
            Ok(Value::Array(out.into()))
        }
        _ => Err(RuntimeError::no_member("IEnumerable", m.name())),
    }
}

fn overflow() -> RuntimeError {
    RuntimeError::new(
        ErrorKind::Overflow,
        "Arithmetic operation resulted in an overflow.",
    )
}

fn add(a: Num, b: Num) -> RtResult<Num> {
    Ok(match (a, b) {
        (Num::Double(_), _) | (_, Num::Double(_)) => Num::Double(a.as_f64() + b.as_f64()),
        (Num::Int(x), Num::Int(y)) => Num::Int(x.checked_add(y).ok_or_else(overflow)?),
        (Num::Int(x) | Num::Long(x), Num::Int(y) | Num::Long(y)) => {
            Num::Long(x.checked_add(y).ok_or_else(overflow)?)
        }
    })
}
