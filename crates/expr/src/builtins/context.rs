//! `context` and its parts: what each property is, and reading it from the [`Context`] the
//! gateway provides. Absent optional objects (`context.User` for an anonymous call) are null.

use super::{CallTys, Extra, Member, P, Rt, Sig, SigErr, arg_opt_str, arg_str, len_value, sig};
use crate::context::{Entity, Field, Message};
use crate::datetime::{DateTime, DateTimeKind, TimeSpan};
use crate::error::{RtResult, RuntimeError};
use crate::json::Json;
use crate::types::{JKind, Ty};
use crate::value::{CtxObj, Obj, Value};

fn ctx(o: CtxObj) -> Ty {
    Ty::Ctx(o)
}

/// The [`Field`] behind `entity.m`.
fn field(e: Entity, m: Member) -> Option<Field> {
    use Field as F;
    use Member as M;
    Some(match (e, m) {
        (Entity::Subscription, M::Id) => F::SubscriptionId,
        (Entity::Subscription, M::Name) => F::SubscriptionName,
        (Entity::Subscription, M::Key) => F::SubscriptionKey,
        (Entity::Subscription, M::PrimaryKey) => F::SubscriptionPrimaryKey,
        (Entity::Subscription, M::SecondaryKey) => F::SubscriptionSecondaryKey,
        (Entity::User, M::Id) => F::UserId,
        (Entity::User, M::Email) => F::UserEmail,
        (Entity::User, M::FirstName) => F::UserFirstName,
        (Entity::User, M::LastName) => F::UserLastName,
        (Entity::Product, M::Id) => F::ProductId,
        (Entity::Product, M::Name) => F::ProductName,
        (Entity::Api, M::Id) => F::ApiId,
        (Entity::Api, M::Name) => F::ApiName,
        (Entity::Api, M::Path) => F::ApiPath,
        (Entity::Api, M::Version) => F::ApiVersion,
        (Entity::Api, M::ServiceUrl) => F::ApiServiceUrl,
        (Entity::Operation, M::Id) => F::OperationId,
        (Entity::Operation, M::Name) => F::OperationName,
        (Entity::Operation, M::Method) => F::OperationMethod,
        (Entity::Operation, M::UrlTemplate) => F::OperationUrlTemplate,
        (Entity::Deployment, M::Region) => F::DeploymentRegion,
        (Entity::Deployment, M::GatewayId) => F::DeploymentGatewayId,
        (Entity::Deployment, M::ServiceName) => F::DeploymentServiceName,
        (Entity::LastError, M::Source) => F::LastErrorSource,
        (Entity::LastError, M::Reason) => F::LastErrorReason,
        (Entity::LastError, M::Message) => F::LastErrorMessage,
        (Entity::LastError, M::Scope) => F::LastErrorScope,
        (Entity::LastError, M::Section) => F::LastErrorSection,
        (Entity::LastError, M::Path) => F::LastErrorPath,
        (Entity::LastError, M::PolicyId) => F::LastErrorPolicyId,
        _ => return None,
    })
}

fn entity(m: Member) -> Option<Entity> {
    Some(match m {
        Member::Subscription => Entity::Subscription,
        Member::User => Entity::User,
        Member::Product => Entity::Product,
        Member::Api => Entity::Api,
        Member::Operation => Entity::Operation,
        Member::Deployment => Entity::Deployment,
        Member::LastError => Entity::LastError,
        _ => return None,
    })
}

pub(crate) fn prop_ty(o: CtxObj, m: Member) -> Option<Ty> {
    use Member as M;
    Some(match (o, m) {
        (CtxObj::Context, M::Request) => ctx(CtxObj::Request),
        (CtxObj::Context, M::Response) => ctx(CtxObj::Response),
        (CtxObj::Context, M::Variables) => ctx(CtxObj::Variables),
        (CtxObj::Context, M::RequestId) => Ty::Guid,
        (CtxObj::Context, M::Elapsed) => Ty::TimeSpan,
        (CtxObj::Context, M::Timestamp) => Ty::DateTime,
        (CtxObj::Context, m) => ctx(CtxObj::Entity(entity(m)?)),
        (CtxObj::Request, M::Method | M::IpAddress) => Ty::String,
        (CtxObj::Request, M::Url | M::OriginalUrl) => Ty::Url,
        (CtxObj::Request, M::Headers) => ctx(CtxObj::Headers(Message::Request)),
        (CtxObj::Request, M::Certificate) => Ty::Certificate,
        (CtxObj::Request, M::MatchedParameters) => ctx(CtxObj::MatchedParameters),
        (CtxObj::Request, M::Body) => ctx(CtxObj::Body(Message::Request)),
        (CtxObj::Response, M::StatusCode) => Ty::Int,
        (CtxObj::Response, M::StatusReason) => Ty::String,
        (CtxObj::Response, M::Headers) => ctx(CtxObj::Headers(Message::Response)),
        (CtxObj::Response, M::Body) => ctx(CtxObj::Body(Message::Response)),
        (CtxObj::Headers(_) | CtxObj::MatchedParameters, M::Count) => Ty::Int,
        (CtxObj::Headers(_) | CtxObj::MatchedParameters, M::Keys) => Ty::array_of(Ty::String),
        (CtxObj::Entity(e), m) => match field(e, m)? {
            Field::ApiServiceUrl => Ty::Url,
            _ => Ty::String,
        },
        _ => return None,
    })
}

pub(crate) fn method_sig(o: CtxObj, m: Member, c: &CallTys<'_>) -> Sig {
    use Member as M;
    use P::Str;
    match (o, m) {
        (CtxObj::Headers(_) | CtxObj::MatchedParameters, M::GetValueOrDefault) => {
            sig(c, &[&[Str], &[Str, Str]], Ty::String)
        }
        (CtxObj::Headers(_) | CtxObj::MatchedParameters | CtxObj::Variables, M::ContainsKey) => {
            sig(c, &[&[Str]], Ty::Bool)
        }
        (CtxObj::Headers(_) | CtxObj::MatchedParameters | CtxObj::Variables, M::TryGetValue)
            if c.out =>
        {
            sig(c, &[&[Str, P::Any]], Ty::Bool)
        }
        (CtxObj::Variables, M::GetValueOrDefault) => {
            let ret = c.targ.cloned().unwrap_or(Ty::Object);
            sig(c, &[&[Str], &[Str, P::Any]], ret)
        }
        (CtxObj::Body(_), M::AsFormUrlEncodedContent) => sig(c, &[&[], &[P::Bool]], Ty::Query),
        (CtxObj::Body(_), M::As) => {
            let ret = match c.targ {
                Some(
                    t @ (Ty::String
                    | Ty::Json(JKind::Object | JKind::Array | JKind::Token)
                    | Ty::Bytes
                    | Ty::XDocument
                    | Ty::XElement),
                ) => t.clone(),
                Some(t) => {
                    return Err(SigErr::Other(format!(
                        "Body.As<{t}>() is not supported; use string, byte[], JObject, JArray, JToken, XDocument or XElement"
                    )));
                }
                None => {
                    return Err(SigErr::Other(
                        "The type arguments for method 'As<T>' cannot be inferred from the usage"
                            .into(),
                    ));
                }
            };
            sig(c, &[&[], &[P::Bool]], ret)
        }
        _ => Err(SigErr::NotFound),
    }
}

fn s(v: impl Into<String>) -> Value {
    Value::String(v.into().into())
}

fn opt(v: Option<impl Into<String>>) -> Value {
    v.map_or(Value::Null, s)
}

pub(crate) fn get(o: CtxObj, m: Member, rt: &mut Rt<'_>) -> RtResult<Value> {
    use Member as M;
    let cx = rt.ctx;
    let handle = |o: CtxObj| Value::obj(Obj::Ctx(o));
    Ok(match (o, m) {
        (CtxObj::Context, M::Request) => handle(CtxObj::Request),
        (CtxObj::Context, M::Response) => handle(CtxObj::Response),
        (CtxObj::Context, M::Variables) => handle(CtxObj::Variables),
        (CtxObj::Context, M::RequestId) => Value::Guid(cx.request_id()),
        (CtxObj::Context, M::Elapsed) => Value::TimeSpan(TimeSpan::from_duration(cx.elapsed())),
        (CtxObj::Context, M::Timestamp) => {
            Value::DateTime(DateTime::from_system_time(cx.timestamp()))
        }
        (CtxObj::Context, m) => match entity(m) {
            Some(e) if cx.has(e) => handle(CtxObj::Entity(e)),
            Some(_) => Value::Null,
            None => return Err(RuntimeError::no_member("IContext", m.name())),
        },
        (CtxObj::Request, M::Method) => s(cx.request_method()),
        (CtxObj::Request, M::IpAddress) => Value::String(cx.shared_ip_address()),
        (CtxObj::Request, M::Url) => Value::obj(Obj::Url(cx.request_url().into())),
        (CtxObj::Request, M::OriginalUrl) => Value::obj(Obj::Url(cx.original_url().into())),
        (CtxObj::Request, M::Headers) => handle(CtxObj::Headers(Message::Request)),
        (CtxObj::Request, M::Certificate) => super::certificate::value(cx.client_certificate()),
        (CtxObj::Request, M::MatchedParameters) => handle(CtxObj::MatchedParameters),
        (CtxObj::Request | CtxObj::Response, M::Body) => {
            let msg = if o == CtxObj::Request {
                Message::Request
            } else {
                Message::Response
            };
            if cx.has_body(msg) {
                handle(CtxObj::Body(msg))
            } else {
                Value::Null
            }
        }
        (CtxObj::Response, M::StatusCode) => cx
            .response_status()
            .map_or(Value::Null, |(c, _)| Value::Int(i32::from(c))),
        (CtxObj::Response, M::StatusReason) => {
            cx.response_status().map_or(Value::Null, |(_, r)| s(r))
        }
        (CtxObj::Response, M::Headers) => handle(CtxObj::Headers(Message::Response)),
        (CtxObj::Headers(msg), M::Count) => len_value(cx.headers(msg).len()),
        (CtxObj::MatchedParameters, M::Count) => len_value(cx.matched_parameters().len()),
        (CtxObj::Headers(msg), M::Keys) => {
            Value::Array(cx.headers(msg).into_iter().map(|(k, _)| s(k)).collect())
        }
        (CtxObj::MatchedParameters, M::Keys) => Value::Array(
            cx.matched_parameters()
                .into_iter()
                .map(|(k, _)| s(k))
                .collect(),
        ),
        (CtxObj::Entity(e), m) => match field(e, m) {
            Some(Field::ApiServiceUrl) => cx
                .field(Field::ApiServiceUrl)
                .map_or(Value::Null, |u| Value::obj(Obj::Url(u.into()))),
            Some(f) => cx.shared_field(f).map_or(Value::Null, Value::String),
            None => return Err(RuntimeError::no_member(&Ty::Ctx(o).to_string(), m.name())),
        },
        _ => return Err(RuntimeError::no_member(&Ty::Ctx(o).to_string(), m.name())),
    })
}

pub(crate) fn call(
    o: CtxObj,
    m: Member,
    args: &[Value],
    x: &Extra,
    rt: &mut Rt<'_>,
) -> RtResult<Value> {
    use Member as M;
    let cx = rt.ctx;
    match (o, m) {
        (CtxObj::Headers(msg), M::GetValueOrDefault) => {
            let name = arg_str(args, 0, "name")?;
            Ok(match cx.header(msg, name) {
                Some(v) => s(v),
                None => opt(arg_opt_str(args, 1)?),
            })
        }
        (CtxObj::MatchedParameters, M::GetValueOrDefault) => {
            let name = arg_str(args, 0, "name")?;
            Ok(match cx.matched_parameter(name) {
                Some(v) => s(v),
                None => opt(arg_opt_str(args, 1)?),
            })
        }
        (CtxObj::Headers(msg), M::ContainsKey) => Ok(Value::Bool(
            cx.header(msg, arg_str(args, 0, "key")?).is_some(),
        )),
        (CtxObj::MatchedParameters, M::ContainsKey) => Ok(Value::Bool(
            cx.matched_parameter(arg_str(args, 0, "key")?).is_some(),
        )),
        (CtxObj::Variables, M::ContainsKey) => {
            Ok(Value::Bool(cx.has_variable(arg_str(args, 0, "key")?)))
        }
        (CtxObj::Variables, M::GetValueOrDefault) => {
            let name = arg_str(args, 0, "name")?;
            match (cx.variable(name), &x.targ) {
                (Some(v), Some(t)) => super::convert::convert(v, t, super::convert::Mode::Cast),
                (Some(v), None) => Ok(v),
                (None, t) => Ok(match args.get(1) {
                    Some(d) => d.clone(),
                    None => t.as_ref().map_or(Value::Null, default_of),
                }),
            }
        }
        // A form body is a query string: read as `Url.Query` is (values decoded, `string[]`).
        (CtxObj::Body(msg), M::AsFormUrlEncodedContent) => {
            let preserve = matches!(args.first(), Some(Value::Bool(true)));
            let Some(bytes) = cx.body(msg, preserve) else {
                return Ok(Value::Null);
            };
            rt.alloc(bytes.len())?;
            Ok(Value::obj(Obj::Query(
                String::from_utf8_lossy(&bytes).trim().into(),
            )))
        }
        (CtxObj::Body(msg), M::As) => {
            let preserve = matches!(args.first(), Some(Value::Bool(true)));
            let Some(bytes) = cx.body(msg, preserve) else {
                return Ok(Value::Null);
            };
            body_as(&bytes, x.targ.as_ref(), rt)
        }
        _ => Err(RuntimeError::no_member(&Ty::Ctx(o).to_string(), m.name())),
    }
}

/// `Body.As<T>()` of body bytes: a string, bytes, or parsed JSON of the kind asked for
/// (shared with responses held in variables).
///
/// Parsing is charged to the expression's budget like producing the body's bytes, before it
/// starts; the parser bounds depth and size on its own (see [`crate::limits`]).
pub(crate) fn body_as(bytes: &[u8], targ: Option<&Ty>, rt: &mut Rt<'_>) -> RtResult<Value> {
    match targ {
        Some(Ty::String) => Ok(Value::String(String::from_utf8_lossy(bytes).into())),
        Some(Ty::Bytes) => Ok(Value::Bytes(bytes.into())),
        Some(Ty::Json(kind)) => {
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(Value::Null);
            }
            rt.alloc(bytes.len())?;
            let json = Json::from_slice(bytes).map_err(|e| {
                RuntimeError::format(format_args!("The body is not valid JSON: {e}"))
            })?;
            let ok = match kind {
                JKind::Object => matches!(json, Json::Object(_)),
                JKind::Array => matches!(json, Json::Array(_)),
                _ => true,
            };
            if !ok {
                return Err(RuntimeError::format(format_args!(
                    "Error reading {}: the body is not a JSON {}.",
                    Ty::Json(*kind),
                    if *kind == JKind::Object {
                        "object"
                    } else {
                        "array"
                    }
                )));
            }
            Ok(Value::Json(json))
        }
        Some(t @ (Ty::XDocument | Ty::XElement)) => {
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(Value::Null);
            }
            let text = std::str::from_utf8(bytes).map_err(|_| {
                RuntimeError::format("The body is not UTF-8 text, so it is not XML.")
            })?;
            let class = if *t == Ty::XDocument {
                crate::types::Class::XDocument
            } else {
                crate::types::Class::XElement
            };
            super::xml::static_call(class, Member::Parse, &[Value::String(text.into())], rt)
        }
        _ => Err(RuntimeError::argument("Unsupported body type.")),
    }
}

/// `default(T)`: 0, false, or null.
pub(crate) fn default_of(t: &Ty) -> Value {
    match t {
        Ty::Int => Value::Int(0),
        Ty::Long => Value::Long(0),
        Ty::Double => Value::Double(0.0),
        Ty::Bool => Value::Bool(false),
        Ty::Char => Value::Char('\0'),
        Ty::TimeSpan => Value::TimeSpan(TimeSpan::from_ticks(0)),
        Ty::DateTime => {
            DateTime::from_ticks(0, DateTimeKind::Unspecified).map_or(Value::Null, Value::DateTime)
        }
        Ty::Guid => Value::Guid(uuid::Uuid::nil()),
        _ => Value::Null,
    }
}

pub(crate) fn index(o: CtxObj, idx: &Value, rt: &mut Rt<'_>) -> RtResult<Value> {
    let key = arg_str(std::slice::from_ref(idx), 0, "key")?;
    let cx = rt.ctx;
    let found = match o {
        CtxObj::Headers(msg) => cx
            .header(msg, key)
            .map(|v| Value::Array(std::sync::Arc::from([s(v)]))),
        CtxObj::MatchedParameters => cx.matched_parameter(key).map(s),
        CtxObj::Variables => cx.variable(key),
        _ => return Err(RuntimeError::no_member(&Ty::Ctx(o).to_string(), "this[]")),
    };
    found.ok_or_else(|| RuntimeError::key_not_found(key))
}

/// Headers and matched parameters as key/value pairs, for LINQ and `foreach`.
pub(crate) fn pairs(o: CtxObj, rt: &mut Rt<'_>) -> RtResult<Vec<Value>> {
    let list = match o {
        CtxObj::Headers(msg) => rt.ctx.headers(msg),
        CtxObj::MatchedParameters => rt.ctx.matched_parameters(),
        _ => {
            return Err(RuntimeError::no_member(
                &Ty::Ctx(o).to_string(),
                "GetEnumerator",
            ));
        }
    };
    rt.steps(list.len())?;
    Ok(list
        .into_iter()
        .map(|(k, v)| Value::pair(s(k), s(v)))
        .collect())
}
