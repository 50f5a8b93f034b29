//! A response held in a variable (`send-request`'s `response-variable-name`), cast to
//! `IResponse`. It is typed like `context.Response`, so the compile-time checks are those of
//! [`super::context`]; here each member reads the held response instead of the request's.

use std::sync::Arc;

use super::{Extra, Member, Rt, arg_opt_str, arg_str, len_value};
use crate::context::Message;
use crate::error::{RtResult, RuntimeError};
use crate::types::Ty;
use crate::value::{CtxObj, HttpResponse, Obj, Value};

fn s(v: impl Into<String>) -> Value {
    Value::String(v.into().into())
}

/// Whether a held response (or one of its parts) is of the `context` type `t` (for casts).
pub(crate) fn is_type(o: &Obj, t: &Ty) -> bool {
    matches!(
        (o, t),
        (Obj::Response(_), Ty::Ctx(CtxObj::Response))
            | (
                Obj::ResponseHeaders(_),
                Ty::Ctx(CtxObj::Headers(Message::Response))
            )
            | (
                Obj::ResponseBody(_),
                Ty::Ctx(CtxObj::Body(Message::Response))
            )
    )
}

fn type_name(o: &Obj) -> String {
    let ctx = match o {
        Obj::ResponseHeaders(_) => CtxObj::Headers(Message::Response),
        Obj::ResponseBody(_) => CtxObj::Body(Message::Response),
        _ => CtxObj::Response,
    };
    Ty::Ctx(ctx).to_string()
}

pub(crate) fn get(o: &Obj, m: Member) -> RtResult<Value> {
    use Member as M;
    Ok(match (o, m) {
        (Obj::Response(r), M::StatusCode) => Value::Int(i32::from(r.status)),
        (Obj::Response(r), M::StatusReason) => s(r.reason.as_str()),
        (Obj::Response(r), M::Headers) => Value::obj(Obj::ResponseHeaders(Arc::clone(r))),
        (Obj::Response(r), M::Body) => Value::obj(Obj::ResponseBody(Arc::clone(r))),
        (Obj::ResponseHeaders(r), M::Count) => len_value(r.joined_headers().len()),
        (Obj::ResponseHeaders(r), M::Keys) => {
            Value::Array(r.joined_headers().into_iter().map(|(k, _)| s(k)).collect())
        }
        _ => return Err(RuntimeError::no_member(&type_name(o), m.name())),
    })
}

pub(crate) fn call(
    o: &Obj,
    m: Member,
    args: &[Value],
    x: &Extra,
    rt: &mut Rt<'_>,
) -> RtResult<Value> {
    use Member as M;
    match (o, m) {
        (Obj::ResponseHeaders(r), M::GetValueOrDefault) => {
            let name = arg_str(args, 0, "name")?;
            Ok(match r.header(name) {
                Some(v) => s(v),
                None => arg_opt_str(args, 1)?.map_or(Value::Null, s),
            })
        }
        (Obj::ResponseHeaders(r), M::ContainsKey) => {
            Ok(Value::Bool(r.header(arg_str(args, 0, "key")?).is_some()))
        }
        // A held response keeps its body: reading it twice gives the same content.
        (Obj::ResponseBody(r), M::As) => super::context::body_as(&r.body, x.targ.as_ref(), rt),
        _ => Err(RuntimeError::no_member(&type_name(o), m.name())),
    }
}

pub(crate) fn index(r: &HttpResponse, idx: &Value) -> RtResult<Value> {
    let key = arg_str(std::slice::from_ref(idx), 0, "key")?;
    r.header(key)
        .map(|v| Value::Array(Arc::from([s(v)])))
        .ok_or_else(|| RuntimeError::key_not_found(key))
}

pub(crate) fn pairs(r: &HttpResponse) -> Vec<Value> {
    r.joined_headers()
        .into_iter()
        .map(|(k, v)| Value::pair(s(k), s(v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::testing::StaticContext;
    use crate::{self as expr, Budget, HttpResponse, Value};

    fn eval(src: &str, held: Value) -> Result<String, String> {
        let e = expr::compile(src).map_err(|e| e.to_string())?;
        let ctx = StaticContext {
            variables: vec![("r".into(), held), ("none".into(), Value::Null)],
            ..StaticContext::default()
        };
        e.eval(&ctx, &mut Budget::default())
            .map(|v| v.to_policy_string())
            .map_err(|e| e.message)
    }

    fn held() -> Value {
        Value::http_response(HttpResponse {
            status: 201,
            reason: "Created".into(),
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("x-many".into(), "a".into()),
                ("x-many".into(), "b".into()),
            ],
            body: bytes::Bytes::from_static(br#"{"active": true, "n": 3}"#),
        })
    }

    #[test]
    fn a_held_response_reads_like_context_response() {
        let r = held();
        let cases = [
            (
                r#"@(((IResponse)context.Variables["r"]).StatusCode)"#,
                "201",
            ),
            (
                r#"@(((IResponse)context.Variables["r"]).StatusReason)"#,
                "Created",
            ),
            (
                r#"@(((IResponse)context.Variables["r"]).Headers.GetValueOrDefault("X-Many", "-"))"#,
                "a,b",
            ),
            (
                r#"@(((IResponse)context.Variables["r"]).Headers.GetValueOrDefault("nope", "-"))"#,
                "-",
            ),
            (
                r#"@(((IResponse)context.Variables["r"]).Headers["Content-Type"].Single())"#,
                "application/json",
            ),
            (
                r#"@(((IResponse)context.Variables["r"]).Headers.Count)"#,
                "2",
            ),
            (
                r#"@((bool)((IResponse)context.Variables["r"]).Body.As<JObject>()["active"])"#,
                "True",
            ),
            // The body can be read again: a held response keeps it.
            (
                r#"@{ var r = (IResponse)context.Variables["r"]; return r.Body.As<string>().Length + (int)r.Body.As<JObject>()["n"]; }"#,
                "27",
            ),
            (
                r#"@(context.Variables.GetValueOrDefault<IResponse>("r").StatusCode == 201)"#,
                "True",
            ),
            (r#"@(context.Variables["none"] == null)"#, "True"),
            (
                r#"@(((IResponse)context.Variables["none"]) == null)"#,
                "True",
            ),
        ];
        for (src, want) in cases {
            assert_eq!(eval(src, r.clone()).as_deref(), Ok(want), "{src}");
        }
    }

    #[test]
    fn casting_something_else_fails_at_run_time() {
        let err = eval(
            r#"@(((IResponse)context.Variables["r"]).StatusCode)"#,
            Value::from("text"),
        )
        .unwrap_err();
        assert!(err.contains("IResponse"), "{err}");
        let err = eval(r#"@(((IResponse)context.Variables["r"]).Nope)"#, held()).unwrap_err();
        assert!(err.contains("Nope"), "{err}");
    }
}
