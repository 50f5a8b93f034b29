//! Run-time values of expressions and the C# semantics that belong to a value alone:
//! `ToString()` (what a policy attribute receives), `==`, ordering and numeric promotion.

use std::fmt;
use std::sync::Arc;

use super::builtins::Member;
use super::builtins::certificate::ClientCertificate;
use super::builtins::crypto::Hasher;
use super::builtins::jwt::Jwt;
use super::builtins::misc::Random;
use super::builtins::net::{UriKind, UriParts};
use super::builtins::regex::RegexMatch;
use super::builtins::text::StringBuilder;
use super::builtins::xml::{XElement, XKind};
use super::context::{Entity, Message};
use super::datetime::{DateTime, TimeSpan};
use super::json::Json;
use super::types::EnumTy;

/// The value of an expression.
///
/// C# reference types are nullable, so any value may be [`Value::Null`]; `int` is 32-bit and
/// `long` 64-bit as in C#. Clones are cheap (strings, arrays and JSON are shared).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Value {
    /// `null`.
    Null,
    /// `bool`.
    Bool(bool),
    /// `int` (`System.Int32`).
    Int(i32),
    /// `long` (`System.Int64`).
    Long(i64),
    /// `double`.
    Double(f64),
    /// `char`.
    Char(char),
    /// `string`.
    String(Arc<str>),
    /// An array or sequence (`string[]`, the result of `Split`, `Where`, `Select`…).
    Array(Arc<[Value]>),
    /// `byte[]` (`Encoding.UTF8.GetBytes`, `Convert.FromBase64String`).
    Bytes(Arc<[u8]>),
    /// A `JToken` (`JObject`, `JArray`, `JValue`).
    Json(Json),
    /// `DateTime`.
    DateTime(DateTime),
    /// `TimeSpan`.
    TimeSpan(TimeSpan),
    /// `Guid`.
    Guid(uuid::Uuid),
    /// A decoded (not verified) JWT, from `AsJwt()`.
    Jwt(Arc<Jwt>),
    /// Any other object an expression can hold (`context.Request`, a URL, a regex match, a
    /// header key/value pair…). Opaque; its [`Value::to_policy_string`] is what C# prints.
    Handle(Handle),
}

/// An object without a public representation; see [`Value::Handle`].
#[derive(Clone, Debug)]
pub struct Handle(pub(crate) Obj);

#[derive(Clone, Debug)]
pub(crate) enum Obj {
    /// A part of `context`, resolved against the request when a member is read.
    Ctx(CtxObj),
    /// An `IUrl` (absolute URL text).
    Url(Arc<str>),
    /// `Url.Query`: the query string, without `?`.
    Query(Arc<str>),
    /// `Jwt.Claims`.
    Claims(Arc<Jwt>),
    /// A regex `Match`.
    Match(Arc<RegexMatch>),
    /// `Match.Groups`.
    Groups(Arc<RegexMatch>),
    /// `Match.Groups[i]`.
    Group(Arc<RegexMatch>, usize),
    /// A `KeyValuePair` (enumerating headers, parameters, JSON properties).
    Pair(Arc<(Value, Value)>),
    /// `Encoding.UTF8` / `Encoding.ASCII` / `Encoding.Unicode`.
    Encoding(TextEncoding),
    /// An enum value (`StringComparison.OrdinalIgnoreCase`), with its member name when it is
    /// a single named value.
    Enum(EnumTy, i32, Option<Member>),
    /// An HTTP response held in a variable (`send-request`), read as `IResponse`.
    Response(Arc<HttpResponse>),
    /// Its `Headers`.
    ResponseHeaders(Arc<HttpResponse>),
    /// Its `Body`.
    ResponseBody(Arc<HttpResponse>),
    /// `context.Request.Certificate`.
    Certificate(Arc<ClientCertificate>),
    /// A `System.Uri` or `UriBuilder`.
    Uri(UriKind, Arc<UriParts>),
    /// `System.Random`.
    Random(Arc<Random>),
    /// `new HMACSHA256(key)`, `SHA256.Create()`…
    Hasher(Arc<Hasher>),
    /// `BasicAuthCredentials`: (user id, password).
    Basic(Arc<(Arc<str>, Arc<str>)>),
    /// An `XDocument` (holding its root) or an `XElement`.
    Xml(XKind, Arc<XElement>),
    /// An `XAttribute`: (name, value).
    XAttr(Arc<(Arc<str>, Arc<str>)>),
    /// A `StringBuilder`, shared and changed in place as in .NET.
    StringBuilder(Arc<StringBuilder>),
}

/// An HTTP response an expression can hold (`(IResponse)context.Variables["name"]`), as
/// `send-request` stores it: `StatusCode`, `StatusReason`, `Headers` and `Body` read the same
/// way as those of `context.Response`.
#[derive(Clone, Debug, Default)]
pub struct HttpResponse {
    pub status: u16,
    pub reason: String,
    /// In received order; a name may repeat. Names compare without case.
    pub headers: Vec<(String, String)>,
    pub body: bytes::Bytes,
}

impl HttpResponse {
    /// One header, several values joined with `,` (as `context.Response.Headers` does).
    pub fn header(&self, name: &str) -> Option<String> {
        let mut values = self
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .peekable();
        values.peek()?;
        Some(values.collect::<Vec<_>>().join(","))
    }

    /// Every header once, values joined with `,`.
    pub fn joined_headers(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (k, v) in &self.headers {
            match out.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(k)) {
                Some((_, joined)) => {
                    joined.push(',');
                    joined.push_str(v);
                }
                None => out.push((k.clone(), v.clone())),
            }
        }
        out
    }
}

/// The parts of `context` that are objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum CtxObj {
    Context,
    Request,
    Response,
    Headers(Message),
    Body(Message),
    Variables,
    MatchedParameters,
    Entity(Entity),
}

impl CtxObj {
    /// The .NET type name an expression sees (in errors and `GetType().Name`).
    pub(crate) fn type_name(self) -> &'static str {
        match self {
            CtxObj::Context => "IContext",
            CtxObj::Request => "IRequest",
            CtxObj::Response => "IResponse",
            CtxObj::Headers(_) => "IReadOnlyDictionary<string, string[]>",
            CtxObj::Body(_) => "IMessageBody",
            CtxObj::Variables => "IReadOnlyDictionary<string, object>",
            CtxObj::MatchedParameters => "IReadOnlyDictionary<string, string>",
            CtxObj::Entity(e) => match e {
                Entity::Subscription => "ISubscription",
                Entity::User => "IUser",
                Entity::Product => "IProduct",
                Entity::Api => "IApi",
                Entity::Operation => "IOperation",
                Entity::Deployment => "IDeployment",
                Entity::LastError => "ILastError",
            },
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum TextEncoding {
    Utf8,
    Ascii,
    /// UTF-16 little endian (`Encoding.Unicode`).
    Utf16,
}

impl Value {
    pub(crate) fn obj(obj: Obj) -> Self {
        Self::Handle(Handle(obj))
    }

    pub(crate) fn str(s: &str) -> Self {
        Self::String(s.into())
    }

    pub(crate) fn pair(k: Value, v: Value) -> Self {
        Self::obj(Obj::Pair(Arc::new((k, v))))
    }

    /// A response for a variable (`send-request`), readable as `IResponse`.
    pub fn http_response(response: HttpResponse) -> Self {
        Self::obj(Obj::Response(Arc::new(response)))
    }

    /// The response, if this value is one made by [`Value::http_response`].
    pub fn as_http_response(&self) -> Option<&HttpResponse> {
        match self {
            Self::Handle(Handle(Obj::Response(r))) => Some(r),
            _ => None,
        }
    }

    /// True for [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Self::Null)
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    /// What C#'s `ToString()` gives (and what a policy attribute receives): `null` is empty,
    /// booleans are `True`/`False`, a double prints its shortest round-trip form (`5`, `3.5`,
    /// `1E+20`), a `JObject` indented JSON, a JSON string its text.
    /// [`Value::to_policy_string`], borrowed where the value holds the text already.
    pub fn policy_str(&self) -> std::borrow::Cow<'_, str> {
        use std::borrow::Cow;
        match self {
            Self::Null => Cow::Borrowed(""),
            Self::Bool(true) => Cow::Borrowed("True"),
            Self::Bool(false) => Cow::Borrowed("False"),
            Self::String(s) => Cow::Borrowed(s),
            Self::Handle(Handle(Obj::Url(u) | Obj::Query(u))) => Cow::Borrowed(u),
            _ => Cow::Owned(self.to_policy_string()),
        }
    }

    pub fn to_policy_string(&self) -> String {
        match self {
            Self::Null => String::new(),
            Self::Bool(true) => "True".to_owned(),
            Self::Bool(false) => "False".to_owned(),
            Self::Int(i) => i.to_string(),
            Self::Long(i) => i.to_string(),
            Self::Double(d) => format_double(*d),
            Self::Char(c) => c.to_string(),
            Self::String(s) => s.to_string(),
            Self::Array(items) => format!("System.{}", array_type_name(items)),
            Self::Bytes(_) => "System.Byte[]".to_owned(),
            Self::Json(j) => j.to_display_string(),
            Self::DateTime(d) => d.format(None).unwrap_or_default(),
            Self::TimeSpan(t) => t.format(),
            Self::Guid(g) => g.hyphenated().to_string(),
            Self::Jwt(_) => "Microsoft.Azure.ApiManagement.Policies.Jwt".to_owned(),
            Self::Handle(Handle(obj)) => match obj {
                Obj::Url(u) => u.to_string(),
                Obj::Uri(_, p) => p.to_uri_string(),
                Obj::Xml(_, e) => super::builtins::xml::to_string(e),
                Obj::StringBuilder(sb) => sb.text(),
                Obj::XAttr(a) => super::builtins::xml::attr_to_string(a),
                Obj::Query(q) => q.to_string(),
                Obj::Match(m) => m.value(0).unwrap_or_default().to_owned(),
                Obj::Group(m, i) => m.value(*i).unwrap_or_default().to_owned(),
                Obj::Pair(p) => format!("[{}, {}]", p.0.to_policy_string(), p.1.to_policy_string()),
                Obj::Enum(_, v, name) => {
                    name.map_or_else(|| v.to_string(), |m| m.name().to_owned())
                }
                _ => self.type_name().to_owned(),
            },
        }
    }

    /// The .NET run-time type name, for messages (`String`, `Int32`, `JObject`…).
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Bool(_) => "Boolean",
            Self::Int(_) => "Int32",
            Self::Long(_) => "Int64",
            Self::Double(_) => "Double",
            Self::Char(_) => "Char",
            Self::String(_) => "String",
            Self::Array(items) => array_type_name(items),
            Self::Bytes(_) => "Byte[]",
            Self::Json(j) => j.type_name(),
            Self::DateTime(_) => "DateTime",
            Self::TimeSpan(_) => "TimeSpan",
            Self::Guid(_) => "Guid",
            Self::Jwt(_) => "Jwt",
            Self::Handle(Handle(obj)) => match obj {
                Obj::Ctx(c) => c.type_name(),
                Obj::Url(_) => "IUrl",
                Obj::Query(_) => "IReadOnlyDictionary<string, string[]>",
                Obj::Claims(_) => "IReadOnlyDictionary<string, string[]>",
                Obj::Match(_) => "Match",
                Obj::Groups(_) => "GroupCollection",
                Obj::Group(..) => "Group",
                Obj::Pair(_) => "KeyValuePair",
                Obj::Encoding(_) => "Encoding",
                Obj::Response(_) => "IResponse",
                Obj::ResponseHeaders(_) => "IReadOnlyDictionary<string, string[]>",
                Obj::ResponseBody(_) => "IMessageBody",
                Obj::Certificate(_) => super::builtins::certificate::TYPE_NAME,
                Obj::Uri(kind, _) => super::builtins::net::type_name(*kind),
                Obj::Random(_) => "Random",
                Obj::Hasher(h) => h.type_name(),
                Obj::Basic(_) => "BasicAuthCredentials",
                Obj::Xml(kind, _) => super::builtins::xml::type_name(*kind),
                Obj::XAttr(_) => "XAttribute",
                Obj::StringBuilder(_) => "StringBuilder",
                Obj::Enum(t, ..) => match t {
                    EnumTy::StringComparison => "StringComparison",
                    EnumTy::Formatting => "Formatting",
                    EnumTy::RegexOptions => "RegexOptions",
                    EnumTy::StringSplitOptions => "StringSplitOptions",
                    EnumTy::DateTimeKind => "DateTimeKind",
                    EnumTy::DayOfWeek => "DayOfWeek",
                },
            },
        }
    }

    /// The value as a number, promoting `int`/`long`/`char`/JSON numbers; `None` otherwise.
    pub(crate) fn number(&self) -> Option<Num> {
        match self {
            Self::Int(i) => Some(Num::Int(i64::from(*i))),
            Self::Long(i) => Some(Num::Long(*i)),
            Self::Char(c) => Some(Num::Int(i64::from(u32::from(*c)))),
            Self::Double(d) => Some(Num::Double(*d)),
            Self::Json(Json::Int(i)) => Some(Num::Long(*i)),
            Self::Json(Json::Float(f)) => Some(Num::Double(*f)),
            _ => None,
        }
    }

    /// C# `==` (ordinal for strings; numbers across `int`/`long`/`double`). A JSON scalar is
    /// compared by its value (C# would compare references, which is never what a policy means).
    pub(crate) fn loose_eq(&self, other: &Self) -> bool {
        use Value as V;
        match (self, other) {
            (V::Null | V::Json(Json::Null), V::Null | V::Json(Json::Null)) => true,
            (V::Null, _) | (_, V::Null) => false,
            (V::String(a), V::String(b)) => a == b,
            (V::String(a), V::Json(Json::String(b))) | (V::Json(Json::String(b)), V::String(a)) => {
                a == b
            }
            (V::Bool(a), V::Bool(b)) => a == b,
            (V::Bool(a), V::Json(Json::Bool(b))) | (V::Json(Json::Bool(b)), V::Bool(a)) => a == b,
            (V::Char(a), V::Char(b)) => a == b,
            (V::DateTime(a), V::DateTime(b)) => a == b,
            (V::TimeSpan(a), V::TimeSpan(b)) => a == b,
            (V::Guid(a), V::Guid(b)) => a == b,
            (V::Json(a), V::Json(b)) => a == b,
            (V::Array(a), V::Array(b)) => Arc::ptr_eq(a, b),
            (V::Bytes(a), V::Bytes(b)) => Arc::ptr_eq(a, b),
            (V::Jwt(a), V::Jwt(b)) => Arc::ptr_eq(a, b),
            (V::Handle(Handle(a)), V::Handle(Handle(b))) => match (a, b) {
                (Obj::Ctx(a), Obj::Ctx(b)) => a == b,
                (Obj::Url(a), Obj::Url(b)) => a == b,
                (Obj::Encoding(a), Obj::Encoding(b)) => a == b,
                (Obj::Enum(ta, a, _), Obj::Enum(tb, b, _)) => ta == tb && a == b,
                (Obj::Pair(a), Obj::Pair(b)) => a.0.loose_eq(&b.0) && a.1.loose_eq(&b.1),
                (Obj::Response(a), Obj::Response(b)) => Arc::ptr_eq(a, b),
                (Obj::Certificate(a), Obj::Certificate(b)) => Arc::ptr_eq(a, b),
                (Obj::Uri(ka, a), Obj::Uri(kb, b)) => ka == kb && a == b,
                (Obj::Random(a), Obj::Random(b)) => Arc::ptr_eq(a, b),
                (Obj::Hasher(a), Obj::Hasher(b)) => Arc::ptr_eq(a, b),
                (Obj::Basic(a), Obj::Basic(b)) => a == b,
                (Obj::Xml(_, a), Obj::Xml(_, b)) => Arc::ptr_eq(a, b),
                (Obj::StringBuilder(a), Obj::StringBuilder(b)) => Arc::ptr_eq(a, b),
                _ => false,
            },
            _ => match (self.number(), other.number()) {
                (Some(a), Some(b)) => a.partial_cmp(b) == Some(std::cmp::Ordering::Equal),
                _ => false,
            },
        }
    }
}

/// Policy equality (C# `==`, see [`Value::to_policy_string`] for the string form).
impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        self.loose_eq(other)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_policy_string())
    }
}

fn array_type_name(items: &[Value]) -> &'static str {
    if items
        .iter()
        .all(|v| matches!(v, Value::String(_) | Value::Null))
    {
        "String[]"
    } else {
        "Object[]"
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Self::String(s.into())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Self::String(s.into())
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Self::Bool(b)
    }
}

impl From<i32> for Value {
    fn from(i: i32) -> Self {
        Self::Int(i)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Self::Long(i)
    }
}

impl From<f64> for Value {
    fn from(d: f64) -> Self {
        Self::Double(d)
    }
}

impl From<Json> for Value {
    fn from(j: Json) -> Self {
        Self::Json(j)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Self::Null, Into::into)
    }
}

/// A number after C#'s binary numeric promotion.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Num {
    Int(i64),
    Long(i64),
    Double(f64),
}

impl Num {
    pub(crate) fn as_f64(self) -> f64 {
        match self {
            Self::Int(i) | Self::Long(i) => i as f64,
            Self::Double(d) => d,
        }
    }

    pub(crate) fn partial_cmp(self, other: Self) -> Option<std::cmp::Ordering> {
        match (self, other) {
            (Self::Int(a) | Self::Long(a), Self::Int(b) | Self::Long(b)) => Some(a.cmp(&b)),
            (a, b) => a.as_f64().partial_cmp(&b.as_f64()),
        }
    }
}

/// `double.ToString()` in .NET Core 3.0+: the shortest string that round-trips, in fixed
/// notation when the decimal exponent is in -5..15, otherwise `d.dddE+XX`.
pub(crate) fn format_double(d: f64) -> String {
    if d.is_nan() {
        return "NaN".to_owned();
    }
    if d.is_infinite() {
        return if d > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    if d == 0.0 {
        return if d.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    let sci = format!("{d:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp > -5 && exp < 15 {
        format!("{d}")
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}E{sign}{:02}", exp.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_print_like_dotnet() {
        assert_eq!(format_double(5.0), "5");
        assert_eq!(format_double(3.5), "3.5");
        assert_eq!(format_double(0.1), "0.1");
        assert_eq!(format_double(1e20), "1E+20");
        assert_eq!(format_double(1.5e-7), "1.5E-07");
        assert_eq!(format_double(0.0001), "0.0001");
        assert_eq!(format_double(0.00001), "1E-05");
        assert_eq!(format_double(123456789012345.0), "123456789012345");
        assert_eq!(format_double(1e15), "1E+15");
        assert_eq!(format_double(-2.25), "-2.25");
    }

    #[test]
    fn equality_follows_csharp() {
        assert_eq!(Value::Int(5), Value::Double(5.0));
        assert_eq!(Value::Long(5), Value::Int(5));
        assert_ne!(Value::str("A"), Value::str("a"));
        assert_eq!(Value::Null, Value::Json(Json::Null));
        assert_ne!(Value::Null, Value::str(""));
        assert_eq!(Value::Bool(true).to_policy_string(), "True");
    }
}
