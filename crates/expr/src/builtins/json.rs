//! `JObject`, `JArray`, `JToken` (Newtonsoft.Json.Linq): parsing, indexers, `Value<T>()`,
//! `ToObject<T>()`, `ToString()`, `Count`, `SelectToken` (simple paths), construction
//! (`new JObject(new JProperty(…))`) and assignment into a token held in a local variable.

use std::sync::Arc;

use super::convert::{Mode, convert, to_json};
use super::{CallTys, Extra, Member, P, Rt, Sig, SigErr, arg_str, enum_arg, len_value, sig};
use crate::error::{ErrorKind, RtResult, RuntimeError};
use crate::json::{Json, JsonObject};
use crate::types::{Class, EnumTy, JKind, Ty};
use crate::value::{Num, Obj, Value};

fn class_kind(class: Class) -> JKind {
    match class {
        Class::JObject => JKind::Object,
        Class::JArray => JKind::Array,
        Class::JValue => JKind::Value,
        Class::JProperty => JKind::Property,
        _ => JKind::Token,
    }
}

pub(crate) fn static_sig(class: Class, m: Member, c: &CallTys<'_>) -> Sig {
    match (class, m) {
        (Class::JObject | Class::JArray | Class::JToken, Member::Parse) => {
            sig(c, &[&[P::Str]], Ty::Json(class_kind(class)))
        }
        _ => Err(SigErr::NotFound),
    }
}

pub(crate) fn new_sig(class: Class, c: &CallTys<'_>) -> Sig {
    let kind = class_kind(class);
    match class {
        Class::JObject | Class::JArray => sig(c, &[&[P::Rest(&P::Any)]], Ty::Json(kind)),
        Class::JProperty => sig(c, &[&[P::Str, P::Any]], Ty::Json(kind)),
        _ => sig(c, &[&[P::Any]], Ty::Json(kind)),
    }
}

pub(crate) fn prop_ty(ty: &Ty, m: Member) -> Option<Ty> {
    use Member as M;
    let Ty::Json(kind) = ty else { return None };
    Some(match (kind, m) {
        (JKind::Property, M::Name) => Ty::String,
        (JKind::Property, M::Value) => Ty::Json(JKind::Token),
        (JKind::Object | JKind::Array | JKind::Token, M::Count) => Ty::Int,
        (_, M::HasValues) => Ty::Bool,
        (JKind::Object | JKind::Array | JKind::Token, M::First | M::Last) => Ty::Json(JKind::Token),
        _ => return None,
    })
}

pub(crate) fn method_sig(ty: &Ty, m: Member, c: &CallTys<'_>) -> Sig {
    use Member as M;
    let Ty::Json(kind) = ty else {
        return Err(SigErr::NotFound);
    };
    let needs_targ = || {
        c.targ.cloned().ok_or_else(|| {
            SigErr::Other(format!(
                "The type arguments for method '{}<T>' cannot be inferred from the usage",
                m.name()
            ))
        })
    };
    match (kind, m) {
        (_, M::Value) => {
            let t = needs_targ()?;
            sig(c, &[&[], &[P::Str], &[P::Int]], t)
        }
        (_, M::ToObject) => {
            let t = needs_targ()?;
            sig(c, &[&[]], t)
        }
        (_, M::ToString) => sig(c, &[&[], &[P::Enum(EnumTy::Formatting)]], Ty::String),
        (JKind::Object | JKind::Array | JKind::Token, M::SelectToken) => {
            sig(c, &[&[P::Str]], Ty::Json(JKind::Token))
        }
        (JKind::Object | JKind::Token, M::ContainsKey) => sig(c, &[&[P::Str]], Ty::Bool),
        (JKind::Object | JKind::Token, M::GetValue) => sig(c, &[&[P::Str]], Ty::Json(JKind::Token)),
        (JKind::Object | JKind::Token, M::Properties) => {
            sig(c, &[&[]], Ty::array_of(Ty::Json(JKind::Property)))
        }
        (JKind::Object | JKind::Token, M::Property) => {
            sig(c, &[&[P::Str]], Ty::Json(JKind::Property))
        }
        (JKind::Object | JKind::Array | JKind::Token, M::Values) => sig(
            c,
            &[&[]],
            Ty::array_of(c.targ.cloned().unwrap_or(Ty::Json(JKind::Token))),
        ),
        (JKind::Object | JKind::Array | JKind::Token, M::Children) => {
            sig(c, &[&[]], Ty::array_of(Ty::Json(JKind::Token)))
        }
        _ => Err(SigErr::NotFound),
    }
}

fn no_children() -> RuntimeError {
    RuntimeError::new(
        ErrorKind::InvalidOperation,
        "Cannot access child value on Newtonsoft.Json.Linq.JValue.",
    )
}

pub(crate) fn get(j: &Json, m: Member) -> RtResult<Value> {
    use Member as M;
    match (j, m) {
        (Json::Object(o), M::Count) => Ok(len_value(o.len())),
        (Json::Array(a), M::Count) => Ok(len_value(a.len())),
        (Json::Object(o), M::HasValues) => Ok(Value::Bool(!o.is_empty())),
        (Json::Array(a), M::HasValues) => Ok(Value::Bool(!a.is_empty())),
        (_, M::HasValues) => Ok(Value::Bool(false)),
        (Json::Array(a), M::First) => Ok(a.first().cloned().map_or(Value::Null, Value::Json)),
        (Json::Array(a), M::Last) => Ok(a.last().cloned().map_or(Value::Null, Value::Json)),
        (Json::Object(o), M::First) => {
            Ok(o.iter().next().map_or(Value::Null, |(k, v)| property(k, v)))
        }
        (Json::Object(o), M::Last) => {
            Ok(o.iter().last().map_or(Value::Null, |(k, v)| property(k, v)))
        }
        (Json::Object(_) | Json::Array(_), _) => {
            Err(RuntimeError::no_member(j.type_name(), m.name()))
        }
        _ => Err(no_children()),
    }
}

/// A `JProperty`.
fn property(k: &str, v: &Json) -> Value {
    Value::pair(Value::str(k), Value::Json(v.clone()))
}

pub(crate) fn index(j: &Json, idx: &Value) -> RtResult<Value> {
    match (j, idx) {
        (Json::Object(o), Value::String(k) | Value::Json(Json::String(k))) => {
            Ok(o.get(k).cloned().map_or(Value::Null, Value::Json))
        }
        (Json::Array(a), i) if i.number().is_some() => {
            let i = match i.number() {
                Some(Num::Int(i) | Num::Long(i)) => i,
                _ => {
                    return Err(RuntimeError::argument(
                        "Accessed JArray values with invalid key value. Int32 array index expected.",
                    ));
                }
            };
            usize::try_from(i)
                .ok()
                .and_then(|i| a.get(i))
                .cloned()
                .map(Value::Json)
                .ok_or_else(|| RuntimeError::out_of_range("Index was out of range. Must be non-negative and less than the size of the collection. (Parameter 'index')"))
        }
        (Json::Object(_), other) => Err(RuntimeError::argument(format_args!(
            "Accessed JObject values with invalid key value: {}. Object property name expected.",
            other.to_policy_string()
        ))),
        (Json::Array(_), other) => Err(RuntimeError::argument(format_args!(
            "Accessed JArray values with invalid key value: \"{}\". Int32 array index expected.",
            other.to_policy_string()
        ))),
        _ => Err(no_children()),
    }
}

pub(crate) fn call(
    j: &Json,
    m: Member,
    args: &[Value],
    x: &Extra,
    rt: &mut Rt<'_>,
) -> RtResult<Value> {
    use Member as M;
    let targ = x.targ.clone().unwrap_or(Ty::Object);
    match m {
        M::Value => {
            let token = match args.first() {
                Some(key) => index(j, key)?,
                None => Value::Json(j.clone()),
            };
            if token.is_null() {
                return Ok(super::context::default_of(&targ));
            }
            convert(token, &targ, Mode::Cast)
        }
        M::ToObject => convert(Value::Json(j.clone()), &targ, Mode::Cast),
        M::ToString => {
            let text = match args.first().and_then(enum_arg) {
                Some((EnumTy::Formatting, f)) => j.to_json_string(f == 1),
                _ if args.is_empty() => j.to_display_string(),
                _ => j.to_json_string(true),
            };
            rt.alloc(text.len())?;
            Ok(Value::String(text.into()))
        }
        M::SelectToken => select_token(j, arg_str(args, 0, "path")?),
        M::ContainsKey => match j {
            Json::Object(o) => Ok(Value::Bool(
                o.get(arg_str(args, 0, "propertyName")?).is_some(),
            )),
            _ => Err(RuntimeError::no_member(j.type_name(), m.name())),
        },
        M::GetValue => match j {
            Json::Object(o) => Ok(o
                .get(arg_str(args, 0, "propertyName")?)
                .cloned()
                .map_or(Value::Null, Value::Json)),
            _ => Err(RuntimeError::no_member(j.type_name(), m.name())),
        },
        M::Properties => match j {
            Json::Object(o) => {
                rt.steps(o.len())?;
                Ok(Value::Array(
                    o.iter().map(|(k, v)| property(k, v)).collect(),
                ))
            }
            _ => Err(RuntimeError::no_member(j.type_name(), m.name())),
        },
        M::Children => Ok(Value::Array(children(j, rt)?.into())),
        M::Property => match j {
            Json::Object(o) => {
                let name = arg_str(args, 0, "name")?;
                Ok(o.get(name).map_or(Value::Null, |v| property(name, v)))
            }
            _ => Err(RuntimeError::no_member(j.type_name(), m.name())),
        },
        // `Values<T>()`: the items of an array, or the values of an object's properties, each
        // converted to `T`.
        M::Values => {
            let items: Vec<Json> = match j {
                Json::Array(a) => a.iter().cloned().collect(),
                Json::Object(o) => o.iter().map(|(_, v)| v.clone()).collect(),
                _ => return Err(no_children()),
            };
            rt.steps(items.len())?;
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.push(match &x.targ {
                    Some(t) => convert(Value::Json(item), t, Mode::Cast)?,
                    None => Value::Json(item),
                });
            }
            Ok(Value::Array(out.into()))
        }
        _ => Err(RuntimeError::no_member(j.type_name(), m.name())),
    }
}

/// Child tokens: array items, or an object's properties.
pub(crate) fn children(j: &Json, rt: &mut Rt<'_>) -> RtResult<Vec<Value>> {
    match j {
        Json::Array(a) => {
            rt.steps(a.len())?;
            Ok(a.iter().cloned().map(Value::Json).collect())
        }
        Json::Object(o) => {
            rt.steps(o.len())?;
            Ok(o.iter().map(|(k, v)| property(k, v)).collect())
        }
        _ => Err(no_children()),
    }
}

/// `SelectToken` with simple paths: `a.b`, `a[0]`, `['a b']`, `$.a[1].c`. No wildcards,
/// filters or recursive descent. A path that doesn't match is null.
fn select_token(j: &Json, path: &str) -> RtResult<Value> {
    let unsupported = || {
        RuntimeError::argument(format_args!(
            "Unsupported JSONPath '{path}': only property names and array indexes are supported."
        ))
    };
    let mut cur = Some(j.clone());
    let mut rest = path.strip_prefix('$').unwrap_or(path);
    while !rest.is_empty() {
        let Some(tok) = cur.take() else { break };
        if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').ok_or_else(unsupported)?;
            let inner = r[..end].trim();
            rest = &r[end + 1..];
            cur = if let Some(name) = inner
                .strip_prefix('\'')
                .and_then(|s| s.strip_suffix('\''))
                .or_else(|| inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
            {
                match &tok {
                    Json::Object(o) => o.get(name).cloned(),
                    _ => None,
                }
            } else {
                let i: usize = inner.parse().map_err(|_| unsupported())?;
                match &tok {
                    Json::Array(a) => a.get(i).cloned(),
                    _ => None,
                }
            };
        } else {
            let r = rest.strip_prefix('.').unwrap_or(rest);
            if r.starts_with('.') || r.starts_with('*') {
                return Err(unsupported());
            }
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let name = &r[..end];
            if name.is_empty() || name.contains(['*', '?', '@', '(']) {
                return Err(unsupported());
            }
            rest = &r[end..];
            cur = match &tok {
                Json::Object(o) => o.get(name).cloned(),
                _ => None,
            };
        }
    }
    Ok(cur.map_or(Value::Null, Value::Json))
}

pub(crate) fn static_call(
    class: Class,
    m: Member,
    args: &[Value],
    rt: &mut Rt<'_>,
) -> RtResult<Value> {
    if m != Member::Parse {
        return Err(RuntimeError::no_member("JToken", m.name()));
    }
    let text = arg_str(args, 0, "json")?;
    // Parsing costs as much as producing the text; the parser bounds depth and size itself.
    rt.alloc(text.len())?;
    let j = Json::parse(text)
        .map_err(|e| RuntimeError::format(format_args!("Error parsing JSON: {e}")))?;
    let ok = match class {
        Class::JObject => matches!(j, Json::Object(_)),
        Class::JArray => matches!(j, Json::Array(_)),
        _ => true,
    };
    if !ok {
        return Err(RuntimeError::format(format_args!(
            "Error reading {class:?} from JsonReader: the text is a JSON {}.",
            match j {
                Json::Object(_) => "object",
                Json::Array(_) => "array",
                _ => "value",
            }
        )));
    }
    Ok(Value::Json(j))
}

pub(crate) fn new_value(class: Class, args: &[Value]) -> RtResult<Value> {
    match class {
        Class::JProperty => {
            let name = arg_str(args, 0, "name")?;
            let value = to_json(args.get(1).unwrap_or(&Value::Null))?;
            Ok(property(name, &value))
        }
        Class::JObject => {
            let mut obj = JsonObject::new();
            for a in flatten(args) {
                add_to_object(&mut obj, &a)?;
            }
            Ok(Value::Json(Json::Object(Arc::new(obj))))
        }
        Class::JArray => {
            let items = flatten(args)
                .iter()
                .map(to_json)
                .collect::<RtResult<Vec<_>>>()?;
            Ok(Value::Json(Json::Array(Arc::new(items))))
        }
        _ => Ok(Value::Json(to_json(args.first().unwrap_or(&Value::Null))?)),
    }
}

/// `JsonConvert.SerializeObject(value[, formatting])` and `DeserializeObject[<T>](text)`.
pub(crate) fn json_convert_sig(m: Member, c: &CallTys<'_>) -> Sig {
    match m {
        Member::SerializeObject => sig(
            c,
            &[
                &[P::Any],
                &[P::Any, P::Enum(crate::types::EnumTy::Formatting)],
            ],
            Ty::String,
        ),
        Member::DeserializeObject => sig(c, &[&[P::Str]], c.targ.cloned().unwrap_or(Ty::Object)),
        _ => Err(SigErr::NotFound),
    }
}

pub(crate) fn json_convert_call(
    m: Member,
    args: &[Value],
    x: &super::Extra,
    rt: &mut Rt<'_>,
) -> RtResult<Value> {
    match m {
        Member::SerializeObject => {
            let indented = args
                .get(1)
                .and_then(super::enum_arg)
                .is_some_and(|(_, v)| v == 1);
            let j = to_json(args.first().unwrap_or(&Value::Null))?;
            let text = j.to_json_string(indented);
            rt.alloc(text.len())?;
            Ok(Value::String(text.into()))
        }
        Member::DeserializeObject => {
            let v = static_call(Class::JToken, Member::Parse, args, rt)?;
            match &x.targ {
                Some(t) => super::convert::convert(v, t, super::convert::Mode::Cast),
                None => Ok(v),
            }
        }
        _ => Err(RuntimeError::no_member("JsonConvert", m.name())),
    }
}

/// Adds a `JProperty` (or the properties of a `JObject`) to an object.
fn add_to_object(obj: &mut JsonObject, a: &Value) -> RtResult<()> {
    match a {
        Value::Handle(h) => match &h.0 {
            Obj::Pair(p) => obj.insert(p.0.to_policy_string(), to_json(&p.1)?),
            _ => {
                return Err(RuntimeError::argument(format_args!(
                    "Can not add {} to JObject.",
                    a.type_name()
                )));
            }
        },
        Value::Json(Json::Object(o)) => {
            for (k, v) in o.iter() {
                obj.insert(k, v.clone());
            }
        }
        other => {
            return Err(RuntimeError::argument(format_args!(
                "Can not add {} to JObject.",
                other.type_name()
            )));
        }
    }
    Ok(())
}

/// `[key] = value` in an object initializer.
pub(crate) fn init_set(target: &mut Json, key: Arc<str>, value: &Value) -> RtResult<()> {
    let value = to_json(value)?;
    match target {
        Json::Object(o) => {
            Arc::make_mut(o).insert(key, value);
            Ok(())
        }
        other => Err(RuntimeError::argument(format_args!(
            "Can not set a property of {}.",
            other.type_name()
        ))),
    }
}

/// An item of a collection initializer: an array item, or a property of an object.
pub(crate) fn init_add(target: &mut Json, value: &Value) -> RtResult<()> {
    match target {
        Json::Array(a) => {
            let item = to_json(value)?;
            Arc::make_mut(a).push(item);
            Ok(())
        }
        Json::Object(o) => add_to_object(Arc::make_mut(o), value),
        other => Err(RuntimeError::argument(format_args!(
            "Can not add items to {}.",
            other.type_name()
        ))),
    }
}

/// `params object[]` arguments: a single array argument stands for its items.
fn flatten(args: &[Value]) -> Vec<Value> {
    match args {
        [Value::Array(items)] => items.to_vec(),
        other => other.to_vec(),
    }
}

/// `local[k1][k2]… = value` on a token held in a local: copy-on-write down the path.
pub(crate) fn assign_path(root: &mut Json, path: &[Value], value: Json) -> RtResult<()> {
    let Some((last, parents)) = path.split_last() else {
        *root = value;
        return Ok(());
    };
    let mut cur = root;
    for key in parents {
        cur = child_mut(cur, key)?;
    }
    match (cur, last) {
        (Json::Object(o), Value::String(k) | Value::Json(Json::String(k))) => {
            Arc::make_mut(o).insert(k.clone(), value);
            Ok(())
        }
        (Json::Array(a), i) => {
            let len = a.len();
            let i = super::index_arg(i, len)?;
            Arc::make_mut(a)[i] = value;
            Ok(())
        }
        (Json::Object(_), other) => Err(RuntimeError::argument(format_args!(
            "Set JObject values with invalid key value: {}. Object property name expected.",
            other.to_policy_string()
        ))),
        _ => Err(no_children()),
    }
}

/// `Add` / `Remove` on the token at `path` below `root` (copy-on-write down the path).
pub(crate) fn mutate(
    root: &mut Json,
    path: &[Value],
    m: Member,
    args: &[Value],
) -> RtResult<Value> {
    let mut cur = root;
    for key in path {
        cur = child_mut(cur, key)?;
    }
    match (cur, m, args) {
        (Json::Object(o), Member::Remove, [key]) => {
            let key = arg_str(std::slice::from_ref(key), 0, "propertyName")?;
            Ok(Value::Bool(Arc::make_mut(o).remove(key)))
        }
        (Json::Object(o), Member::Add, [name, value]) => {
            let name = arg_str(std::slice::from_ref(name), 0, "propertyName")?.to_owned();
            add_property(Arc::make_mut(o), name, to_json(value)?)
        }
        (Json::Object(o), Member::Add, [Value::Handle(h)]) => match &h.0 {
            Obj::Pair(p) => add_property(Arc::make_mut(o), p.0.to_policy_string(), to_json(&p.1)?),
            _ => Err(RuntimeError::argument(
                "Can not add this value to a JObject.",
            )),
        },
        (Json::Array(a), Member::Add, [item]) => {
            let item = to_json(item)?;
            Arc::make_mut(a).push(item);
            Ok(Value::Null)
        }
        (Json::Array(a), Member::Remove, [item]) => {
            let item = to_json(item)?;
            let items = Arc::make_mut(a);
            Ok(Value::Bool(match items.iter().position(|j| *j == item) {
                Some(i) => {
                    items.remove(i);
                    true
                }
                None => false,
            }))
        }
        (j, m, _) => Err(RuntimeError::no_member(j.type_name(), m.name())),
    }
}

fn add_property(o: &mut JsonObject, name: String, value: Json) -> RtResult<Value> {
    if o.get(&name).is_some() {
        return Err(RuntimeError::argument(format_args!(
            "Can not add property {name} to Newtonsoft.Json.Linq.JObject. Property with the same name already exists on object."
        )));
    }
    o.insert(name, value);
    Ok(Value::Null)
}

fn child_mut<'j>(j: &'j mut Json, key: &Value) -> RtResult<&'j mut Json> {
    match (j, key) {
        (Json::Object(o), Value::String(k) | Value::Json(Json::String(k))) => {
            let o = Arc::make_mut(o);
            if o.get(k).is_none() {
                return Err(RuntimeError::null_reference());
            }
            o.get_mut(k).ok_or_else(RuntimeError::null_reference)
        }
        (Json::Array(a), i) => {
            let i = super::index_arg(i, a.len())?;
            Ok(&mut Arc::make_mut(a)[i])
        }
        _ => Err(no_children()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_token_paths() {
        let j = Json::parse(r#"{"a":{"b":[1,{"c":"x"}]},"d e":2}"#).unwrap();
        assert_eq!(
            select_token(&j, "a.b[1].c").unwrap(),
            Value::Json(Json::String("x".into()))
        );
        assert_eq!(
            select_token(&j, "$.a.b[0]").unwrap(),
            Value::Json(Json::Int(1))
        );
        assert_eq!(
            select_token(&j, "['d e']").unwrap(),
            Value::Json(Json::Int(2))
        );
        assert_eq!(select_token(&j, "a.zz").unwrap(), Value::Null);
        assert!(select_token(&j, "a..b").is_err());
        assert!(select_token(&j, "a.b[*]").is_err());
    }

    #[test]
    fn assignment_copies_on_write() {
        let original = Json::parse(r#"{"a":{"b":1}}"#).unwrap();
        let mut copy = original.clone();
        assign_path(&mut copy, &[Value::str("a"), Value::str("b")], Json::Int(2)).unwrap();
        assert_eq!(copy.to_json_string(false), r#"{"a":{"b":2}}"#);
        assert_eq!(original.to_json_string(false), r#"{"a":{"b":1}}"#);
    }
}
