//! The library an expression can call: members of `context`, strings, numbers, dates, JSON,
//! JWTs, regexes, encodings and LINQ. Each family has one module holding both halves:
//! the compile-time half (does this member exist on this static type, with these arguments,
//! and what does it return) and the run-time half (do it, dispatching on the value).
//!
//! Member names are resolved once, at compile time, into [`Member`]; evaluation never
//! compares member names as strings.

pub(crate) mod certificate;
pub(crate) mod context;
pub(crate) mod convert;
pub(crate) mod crypto;
pub(crate) mod datetime;
pub(crate) mod encoding;
pub(crate) mod json;
pub(crate) mod jwt;
pub(crate) mod linq;
pub(crate) mod misc;
pub(crate) mod net;
pub(crate) mod number;
pub(crate) mod regex;
pub(crate) mod response;
pub(crate) mod string;
pub(crate) mod text;
pub(crate) mod url;
pub(crate) mod xml;

use std::sync::Arc;

use super::Budget;
use super::context::Context;
use super::error::{ErrorKind, RtResult, RuntimeError};
use super::json::Json;
use super::types::{Class, EnumTy, Ty};
use super::value::{CtxObj, Handle, Obj, Value};

macro_rules! members {
    ($($name:ident),* $(,)?) => {
        /// Every member name an expression can use, on any type. Variants are spelled as in
        /// C# (`UTF8`, `ASCII`), since the names are generated from them.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[allow(clippy::upper_case_acronyms)]
        pub(crate) enum Member { $($name),* }

        impl Member {
            pub(crate) fn from_name(name: &str) -> Option<Self> {
                match name {
                    $(stringify!($name) => Some(Self::$name),)*
                    _ => None,
                }
            }

            pub(crate) fn name(self) -> &'static str {
                match self {
                    $(Self::$name => stringify!($name),)*
                }
            }
        }
    };
}

members! {
    // context
    Request, Response, Variables, Subscription, User, Product, Api, Operation, Deployment,
    RequestId, Elapsed, Timestamp, LastError, Method, Url, OriginalUrl, Headers, IpAddress,
    MatchedParameters, Body, StatusCode, StatusReason, Id, Name, Key, PrimaryKey, SecondaryKey,
    Email, FirstName, LastName, Path, Version, ServiceUrl, UrlTemplate, Region, GatewayId,
    ServiceName, Source, Reason, Message, Scope, Section, PolicyId, As, GetValueOrDefault,
    ContainsKey, Keys,
    // url
    Scheme, Host, Port, Query, QueryString, GetQueryParameterValueOrDefault,
    // object, string, char
    ToString, Equals, CompareTo, GetType, GetHashCode, Length, Contains, StartsWith, EndsWith, Substring,
    IndexOf, LastIndexOf, Split, Replace, ToUpper, ToLower, ToUpperInvariant, ToLowerInvariant,
    Trim, TrimStart, TrimEnd, PadLeft, PadRight, Insert, Remove, ToCharArray, IsNullOrEmpty,
    IsNullOrWhiteSpace, Format, Concat, Join, Compare, Empty, AsJwt, TryParseJwt, IsDigit,
    IsLetter, IsLetterOrDigit, IsWhiteSpace, IsUpper, IsLower,
    // numbers
    Parse, TryParse, MaxValue, MinValue, NaN, PositiveInfinity, NegativeInfinity, IsNaN, Max,
    Min, Abs, Round, Floor, Ceiling, Pow, Sqrt, Sign, ToInt32, ToInt64, ToDouble, ToBoolean,
    ToBase64String, FromBase64String, PI,
    // encoding, uri, guid
    UTF8, ASCII, Unicode, GetBytes, GetString, EscapeDataString, UnescapeDataString, NewGuid,
    ToByteArray,
    // dates
    UtcNow, Now, Today, Year, Month, Day, Hour, Minute, Second, Millisecond, Ticks, DayOfYear,
    DayOfWeek,
    Date, TimeOfDay, AddYears, AddMonths, AddDays, AddHours, AddMinutes, AddSeconds,
    AddMilliseconds, AddTicks, Add, Subtract, ToUniversalTime, ToLocalTime, FromSeconds,
    FromMinutes, FromHours, FromDays, FromMilliseconds, FromTicks, TotalDays, TotalHours,
    TotalMinutes, TotalSeconds, TotalMilliseconds, Days, Hours, Minutes, Seconds, Milliseconds,
    Zero, Negate, Duration, Kind,
    // regex
    IsMatch, Match, Matches, Escape, Success, Groups, Index, Captures,
    // json
    Value, ToObject, SelectToken, Count, HasValues, Properties, Children, GetValue, Type,
    Property, Values, Range, Repeat, Exists, TrueForAll, Find, FindLast, FindAll,
    // certificate
    Certificate, Thumbprint, SerialNumber, NotAfter, Verify,
    // jwt
    Subject, Issuer, Audiences, ExpirationTime, NotBefore, IssuedAt, Algorithm, Claims,
    // linq
    Any, All, Where, Select, First, FirstOrDefault, Last, LastOrDefault, Sum, Average, ToArray,
    ToList, Skip, Take, Distinct, Reverse, OrderBy, OrderByDescending, ElementAt, Single,
    SingleOrDefault,
    // enum members
    Ordinal, OrdinalIgnoreCase, InvariantCulture, InvariantCultureIgnoreCase, CurrentCulture,
    CurrentCultureIgnoreCase, None, Indented, IgnoreCase, Multiline, Singleline, ExplicitCapture,
    CultureInvariant, IgnorePatternWhitespace, Compiled, RemoveEmptyEntries, TrimEntries, Utc,
    Local, Unspecified, Sunday, Monday, Tuesday, Wednesday, Thursday, Friday, Saturday,
    // cryptography
    ComputeHash, Create, HashData, HashSize, Dispose, Clear,
    // Uri, UriBuilder, WebUtility, basic credentials
    AbsolutePath, AbsoluteUri, PathAndQuery, Fragment, Authority, UserInfo, OriginalString,
    IsDefaultPort, IsAbsoluteUri, Uri, ToUri, UrlEncode, UrlDecode, HtmlEncode, HtmlDecode,
    AsBasic, UserId, Password,
    // Random, DateTimeOffset
    Next, NextDouble, NextInt64, FromUnixTimeSeconds, FromUnixTimeMilliseconds,
    ToUnixTimeSeconds, ToUnixTimeMilliseconds, UtcDateTime, DateTime, LocalDateTime,
    // dictionaries, JsonConvert
    TryGetValue, SerializeObject, DeserializeObject,
    // System.Xml.Linq
    Root, Element, Elements, Descendants, Attribute, Attributes, HasElements, HasAttributes,
    LocalName, NamespaceName, Xmlns, Xml, Get,
    // byte[] extensions
    Encrypt, Decrypt,
    // StringBuilder
    Append, AppendLine, AppendFormat,
    // message bodies
    AsFormUrlEncodedContent,
}

/// What evaluation lends a builtin: the request and the step budget.
pub(crate) struct Rt<'a> {
    pub ctx: &'a dyn Context,
    pub budget: &'a mut Budget,
}

impl Rt<'_> {
    /// Charges for producing `bytes` of output, before allocating it.
    pub(crate) fn alloc(&mut self, bytes: usize) -> RtResult<()> {
        self.budget.charge_bytes(bytes)
    }

    pub(crate) fn steps(&mut self, n: usize) -> RtResult<()> {
        self.budget.charge(u64::try_from(n).unwrap_or(u64::MAX))
    }
}

/// Per-call data fixed at compile time.
#[derive(Clone, Debug, Default)]
pub(crate) struct Extra {
    /// The type argument of `As<T>`, `GetValueOrDefault<T>`, `Value<T>`, `ToObject<T>`.
    pub targ: Option<Ty>,
    /// A regex pattern given as a literal, compiled when the policy was saved.
    pub regex: Option<Arc<regex::Pattern>>,
}

/// Why a member could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SigErr {
    /// The type has no member of that name (or not as a method / property).
    NotFound,
    /// No overload takes that many arguments.
    Arity,
    /// An overload takes that many, but not of these types.
    Types,
    /// Something more specific.
    Other(String),
}

pub(crate) type Sig = Result<Ty, SigErr>;

/// The compile-time view of a call's arguments.
pub(crate) struct CallTys<'a> {
    pub args: &'a [Ty],
    pub targ: Option<&'a Ty>,
    /// The last argument is `out`.
    pub out: bool,
}

/// Parameter kinds for overload checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum P {
    Any,
    Str,
    Char,
    /// `int` (also `char`, and `long` where C# would need a cast: lenient).
    Int,
    /// Any number.
    Num,
    Bool,
    Bytes,
    DateTime,
    TimeSpan,
    Enum(EnumTy),
    /// An array or other sequence.
    Seq,
    /// What `new XAttribute` takes as a value: a string, number, bool or `XNamespace`.
    XText,
    /// What `new XElement` / `new XDocument` take as content: an [`P::XText`], an `XElement`,
    /// `XAttribute` or `XDocument`, or a sequence of those.
    XContent,
    /// `params T[]`: any number of trailing arguments of this kind.
    Rest(&'static P),
}

fn accepts(p: P, t: &Ty) -> bool {
    if t.is_dynamic() {
        return true;
    }
    match p {
        P::Any => true,
        P::Str => matches!(t, Ty::String | Ty::Json(_)),
        P::Char => matches!(t, Ty::Char),
        P::Int => matches!(t, Ty::Int | Ty::Long | Ty::Char | Ty::Json(_)),
        P::Num => t.is_numeric() || matches!(t, Ty::Json(_)),
        P::Bool => matches!(t, Ty::Bool | Ty::Json(_)),
        P::Bytes => matches!(t, Ty::Bytes),
        P::DateTime => matches!(t, Ty::DateTime),
        P::TimeSpan => matches!(t, Ty::TimeSpan),
        P::Enum(e) => *t == Ty::Enum(e),
        P::Seq => t.element().is_some(),
        P::XText => {
            t.is_numeric() || matches!(t, Ty::String | Ty::Bool | Ty::Json(_) | Ty::XNamespace)
        }
        P::XContent => {
            accepts(P::XText, t)
                || matches!(t, Ty::XElement | Ty::XAttribute | Ty::XDocument)
                || matches!(t, Ty::Array(e) if accepts(P::XContent, e))
        }
        P::Rest(inner) => accepts(*inner, t),
    }
}

/// Picks the first overload whose parameters accept `args`; its index.
pub(crate) fn overload(args: &[Ty], overloads: &[&[P]]) -> Result<usize, SigErr> {
    let mut arity_ok = false;
    for (n, params) in overloads.iter().enumerate() {
        let rest = params.last().and_then(|p| match p {
            P::Rest(inner) => Some(**inner),
            _ => None,
        });
        let fixed = if rest.is_some() {
            params.len() - 1
        } else {
            params.len()
        };
        let count_ok = match rest {
            Some(_) => args.len() >= fixed,
            None => args.len() == fixed,
        };
        if !count_ok {
            continue;
        }
        arity_ok = true;
        let ok = args.iter().enumerate().all(|(i, t)| match params.get(i) {
            Some(P::Rest(inner)) => accepts(**inner, t),
            Some(p) if i < fixed => accepts(*p, t),
            _ => rest.is_some_and(|r| accepts(r, t)),
        });
        if ok {
            return Ok(n);
        }
    }
    Err(if arity_ok {
        SigErr::Types
    } else {
        SigErr::Arity
    })
}

/// Checks `args` against `overloads` and returns `ret`.
pub(crate) fn sig(c: &CallTys<'_>, overloads: &[&[P]], ret: Ty) -> Sig {
    overload(c.args, overloads).map(|_| ret)
}

// ---- compile-time lookup -------------------------------------------------------------------

/// The type of property `m` on a value of static type `ty`.
pub(crate) fn prop_ty(ty: &Ty, m: Member) -> Option<Ty> {
    match ty {
        Ty::Object | Ty::Null => Some(Ty::Object),
        Ty::Ctx(c) => context::prop_ty(*c, m),
        Ty::Url | Ty::Query => url::prop_ty(ty, m),
        Ty::String => string::prop_ty(m),
        Ty::Array(_) | Ty::Bytes => match m {
            Member::Length => Some(Ty::Int),
            // `MatchCollection.Count`, `List<T>.Count` (lists are arrays here).
            Member::Count if matches!(ty, Ty::Array(_)) => Some(Ty::Int),
            _ => None,
        },
        Ty::DateTime
            if matches!(
                m,
                Member::UtcDateTime | Member::DateTime | Member::LocalDateTime
            ) =>
        {
            Some(Ty::DateTime)
        }
        Ty::DateTime | Ty::TimeSpan => datetime::prop_ty(ty, m),
        Ty::Json(_) => json::prop_ty(ty, m),
        Ty::Jwt | Ty::Claims => jwt::prop_ty(ty, m),
        Ty::Certificate => certificate::prop_ty(m),
        Ty::Uri | Ty::UriBuilder => net::prop_ty(ty, m),
        Ty::Hasher => crypto::prop_ty(m),
        Ty::StringBuilder => text::prop_ty(m),
        Ty::XDocument | Ty::XElement | Ty::XAttribute | Ty::XNamespace => xml::prop_ty(ty, m),
        Ty::Basic => matches!(m, Member::UserId | Member::Password).then_some(Ty::String),
        Ty::Match | Ty::Groups | Ty::Group => regex::prop_ty(ty, m),
        Ty::Pair(k, v) => match m {
            Member::Key => Some((**k).clone()),
            Member::Value => Some((**v).clone()),
            _ => None,
        },
        _ => None,
    }
}

/// The result type of calling method `m` on a value of static type `ty`.
pub(crate) fn method_sig(ty: &Ty, m: Member, c: &CallTys<'_>) -> Sig {
    // Members every object has.
    match m {
        Member::ToString if c.args.is_empty() && !ty.is_dynamic() => return Ok(Ty::String),
        Member::Equals if c.args.len() == 1 && !matches!(ty, Ty::String) => return Ok(Ty::Bool),
        Member::GetHashCode if c.args.is_empty() && !ty.is_dynamic() => return Ok(Ty::Int),
        Member::GetType => {
            return Err(SigErr::Other(
                "GetType() is not allowed in policy expressions".into(),
            ));
        }
        _ => {}
    }
    match (ty, m) {
        (Ty::String, Member::AsBasic) => return sig(c, &[&[]], Ty::Basic),
        (Ty::Url, Member::ToUri) => return sig(c, &[&[]], Ty::Uri),
        (Ty::Bytes, Member::Encrypt | Member::Decrypt) => {
            return sig(c, &[&[P::Str, P::Bytes, P::Bytes]], Ty::Bytes);
        }
        (Ty::DateTime, Member::ToUnixTimeSeconds | Member::ToUnixTimeMilliseconds) => {
            return sig(c, &[&[]], Ty::Long);
        }
        _ => {}
    }
    match ty {
        Ty::Object | Ty::Null => Ok(c.targ.cloned().unwrap_or(Ty::Object)),
        Ty::Random => misc::random_method_sig(m, c),
        Ty::Hasher => crypto::method_sig(m, c),
        Ty::StringBuilder => text::method_sig(m, c),
        Ty::XDocument | Ty::XElement | Ty::XAttribute => xml::method_sig(ty, m, c),
        Ty::Ctx(o) => context::method_sig(*o, m, c),
        Ty::Url | Ty::Query => url::method_sig(ty, m, c),
        Ty::String => string::method_sig(m, c),
        Ty::Char => string::char_method_sig(m, c),
        Ty::Int | Ty::Long | Ty::Double | Ty::Bool => number::method_sig(ty, m, c),
        Ty::DateTime | Ty::TimeSpan => datetime::method_sig(ty, m, c),
        Ty::Guid => match m {
            Member::ToString => sig(c, &[&[P::Str]], Ty::String),
            Member::ToByteArray => sig(c, &[&[]], Ty::Bytes),
            _ => Err(SigErr::NotFound),
        },
        Ty::Encoding => encoding::method_sig(m, c),
        Ty::Json(_) => json::method_sig(ty, m, c),
        Ty::Jwt | Ty::Claims => jwt::method_sig(ty, m, c),
        Ty::Certificate => certificate::method_sig(m, c),
        Ty::Match | Ty::Groups | Ty::Group => Err(SigErr::NotFound),
        _ => Err(SigErr::NotFound),
    }
}

/// The type of `ty[index]`.
pub(crate) fn index_ty(ty: &Ty, index: &Ty) -> Result<Ty, String> {
    let int_index = matches!(index, Ty::Int | Ty::Long | Ty::Char) || index.is_dynamic();
    let str_index = matches!(index, Ty::String) || index.is_dynamic();
    let ok = |t: Ty, valid: bool| {
        if valid {
            Ok(t)
        } else {
            Err(format!(
                "Cannot apply indexing with [] of type '{index}' to '{ty}'"
            ))
        }
    };
    match ty {
        Ty::Object | Ty::Null => Ok(Ty::Object),
        Ty::String => ok(Ty::Char, int_index),
        Ty::Array(t) => ok((**t).clone(), int_index),
        Ty::Bytes => ok(Ty::Int, int_index),
        Ty::Json(_) => ok(
            Ty::Json(super::types::JKind::Token),
            int_index || str_index || matches!(index, Ty::Json(_)),
        ),
        // Azure's headers are `IReadOnlyDictionary<string, string[]>`: the indexer gives an
        // array (here of one item, the values joined with `,`).
        Ty::Ctx(super::value::CtxObj::Headers(_)) => ok(Ty::array_of(Ty::String), str_index),
        Ty::Ctx(super::value::CtxObj::MatchedParameters) => ok(Ty::String, str_index),
        Ty::Ctx(super::value::CtxObj::Variables) => ok(Ty::Object, str_index),
        Ty::Query | Ty::Claims => ok(Ty::array_of(Ty::String), str_index),
        Ty::Groups => ok(Ty::Group, int_index || str_index),
        _ => Err(format!(
            "Cannot apply indexing with [] to an expression of type '{ty}'"
        )),
    }
}

/// The type of static property `Class.m`.
pub(crate) fn static_prop_ty(class: Class, m: Member) -> Option<Ty> {
    match class {
        Class::String => (m == Member::Empty).then_some(Ty::String),
        Class::Int | Class::Long | Class::Double | Class::Math => number::static_prop_ty(class, m),
        Class::DateTime | Class::TimeSpan => datetime::static_prop_ty(class, m),
        Class::Encoding | Class::Guid => encoding::static_prop_ty(class, m),
        Class::DateTimeOffset => misc::offset_static_prop_ty(m),
        Class::XNamespace => xml::static_prop_ty(class, m),
        Class::StringComparison
        | Class::Formatting
        | Class::RegexOptions
        | Class::StringSplitOptions
        | Class::DateTimeKind
        | Class::DayOfWeek => enum_value(class, m).map(|(t, _)| Ty::Enum(t)),
        _ => None,
    }
}

/// The result type of static method `Class.m(args)`.
pub(crate) fn static_sig(class: Class, m: Member, c: &CallTys<'_>) -> Sig {
    match class {
        Class::String => string::static_sig(m, c),
        Class::Char => string::char_static_sig(m, c),
        Class::Int | Class::Long | Class::Double | Class::Bool | Class::Math => {
            number::static_sig(class, m, c)
        }
        Class::Convert | Class::Encoding | Class::Guid | Class::Uri => {
            encoding::static_sig(class, m, c)
        }
        Class::DateTime | Class::TimeSpan => datetime::static_sig(class, m, c),
        Class::Regex => regex::static_sig(m, c),
        Class::Hmac(_) | Class::Hash(_) => crypto::static_sig(class, m, c),
        Class::WebUtility => net::static_sig(class, m, c),
        Class::Array => misc::array_static_sig(m, c),
        Class::Enumerable => misc::enumerable_static_sig(m, c),
        Class::BitConverter => misc::bit_converter_sig(m, c),
        Class::JsonConvert => json::json_convert_sig(m, c),
        Class::XDocument | Class::XElement | Class::XNamespace => xml::static_sig(class, m, c),
        Class::DateTimeOffset => misc::offset_static_sig(m, c),
        Class::JObject | Class::JArray | Class::JToken | Class::JValue | Class::JProperty => {
            json::static_sig(class, m, c)
        }
        _ => Err(SigErr::NotFound),
    }
}

/// The type of the `out` argument of a method that has one.
pub(crate) fn out_ty(recv: Option<&Ty>, class: Option<Class>, m: Member) -> Option<Ty> {
    match (recv, class, m) {
        (_, Some(Class::Int), Member::TryParse) => Some(Ty::Int),
        (_, Some(Class::Long), Member::TryParse) => Some(Ty::Long),
        (_, Some(Class::Double), Member::TryParse) => Some(Ty::Double),
        (_, Some(Class::Bool), Member::TryParse) => Some(Ty::Bool),
        (_, Some(Class::DateTime), Member::TryParse) => Some(Ty::DateTime),
        (Some(Ty::String | Ty::Object), None, Member::TryParseJwt) => Some(Ty::Jwt),
        // Header values are joined with `,`: the array holds that one value.
        (Some(Ty::Ctx(CtxObj::Headers(_))), None, Member::TryGetValue) => {
            Some(Ty::array_of(Ty::String))
        }
        (Some(Ty::Ctx(CtxObj::MatchedParameters)), None, Member::TryGetValue) => Some(Ty::String),
        (Some(Ty::Ctx(CtxObj::Variables)), None, Member::TryGetValue) => Some(Ty::Object),
        _ => None,
    }
}

/// Enum members: their type and numeric value (as .NET defines them).
pub(crate) fn enum_value(class: Class, m: Member) -> Option<(EnumTy, i32)> {
    use Member as M;
    let (t, v) = match (class, m) {
        (Class::StringComparison, M::CurrentCulture) => (EnumTy::StringComparison, 0),
        (Class::StringComparison, M::CurrentCultureIgnoreCase) => (EnumTy::StringComparison, 1),
        (Class::StringComparison, M::InvariantCulture) => (EnumTy::StringComparison, 2),
        (Class::StringComparison, M::InvariantCultureIgnoreCase) => (EnumTy::StringComparison, 3),
        (Class::StringComparison, M::Ordinal) => (EnumTy::StringComparison, 4),
        (Class::StringComparison, M::OrdinalIgnoreCase) => (EnumTy::StringComparison, 5),
        (Class::Formatting, M::None) => (EnumTy::Formatting, 0),
        (Class::Formatting, M::Indented) => (EnumTy::Formatting, 1),
        (Class::RegexOptions, M::None) => (EnumTy::RegexOptions, 0),
        (Class::RegexOptions, M::IgnoreCase) => (EnumTy::RegexOptions, 1),
        (Class::RegexOptions, M::Multiline) => (EnumTy::RegexOptions, 2),
        (Class::RegexOptions, M::ExplicitCapture) => (EnumTy::RegexOptions, 4),
        (Class::RegexOptions, M::Compiled) => (EnumTy::RegexOptions, 8),
        (Class::RegexOptions, M::Singleline) => (EnumTy::RegexOptions, 16),
        (Class::RegexOptions, M::IgnorePatternWhitespace) => (EnumTy::RegexOptions, 32),
        (Class::RegexOptions, M::CultureInvariant) => (EnumTy::RegexOptions, 512),
        (Class::StringSplitOptions, M::None) => (EnumTy::StringSplitOptions, 0),
        (Class::StringSplitOptions, M::RemoveEmptyEntries) => (EnumTy::StringSplitOptions, 1),
        (Class::StringSplitOptions, M::TrimEntries) => (EnumTy::StringSplitOptions, 2),
        (Class::DateTimeKind, M::Unspecified) => (EnumTy::DateTimeKind, 0),
        (Class::DateTimeKind, M::Utc) => (EnumTy::DateTimeKind, 1),
        (Class::DateTimeKind, M::Local) => (EnumTy::DateTimeKind, 2),
        (Class::DayOfWeek, d) => (EnumTy::DayOfWeek, day_number(d)?),
        _ => return None,
    };
    Some((t, v))
}

/// `DayOfWeek` members and their numbers (Sunday is 0, as in .NET).
pub(crate) const DAYS: [Member; 7] = [
    Member::Sunday,
    Member::Monday,
    Member::Tuesday,
    Member::Wednesday,
    Member::Thursday,
    Member::Friday,
    Member::Saturday,
];

fn day_number(m: Member) -> Option<i32> {
    DAYS.iter()
        .position(|d| *d == m)
        .and_then(|i| i32::try_from(i).ok())
}

/// Parameter names usable as named arguments (`preserveContent: true`), by position.
pub(crate) fn param_names(m: Member) -> &'static [&'static str] {
    match m {
        Member::As | Member::AsFormUrlEncodedContent => &["preserveContent"],
        Member::GetValueOrDefault => &["name", "defaultValue"],
        Member::Substring => &["startIndex", "length"],
        Member::IsMatch | Member::Match | Member::Matches => &["input", "pattern", "options"],
        Member::Replace => &["input", "pattern", "replacement", "options"],
        Member::Equals => &["value", "comparisonType"],
        Member::ToString => &["format"],
        _ => &[],
    }
}

// ---- run time ------------------------------------------------------------------------------

/// Reads property `m` of `recv`.
pub(crate) fn get(recv: &Value, m: Member, rt: &mut Rt<'_>) -> RtResult<Value> {
    match recv {
        Value::Null => Err(RuntimeError::null_reference()),
        Value::Handle(h) => match &h.0 {
            Obj::Ctx(c) => context::get(*c, m, rt),
            Obj::Url(u) => url::url_prop(u, m),
            Obj::Query(q) => url::query_prop(q, m),
            Obj::Claims(j) => jwt::claims_prop(j, m),
            Obj::Match(_) | Obj::Groups(_) | Obj::Group(..) => regex::get(&h.0, m),
            Obj::Pair(p) => match m {
                Member::Key | Member::Name => Ok(p.0.clone()),
                Member::Value => Ok(p.1.clone()),
                _ => Err(RuntimeError::no_member(recv.type_name(), m.name())),
            },
            Obj::Encoding(_) | Obj::Enum(..) => {
                Err(RuntimeError::no_member(recv.type_name(), m.name()))
            }
            Obj::Response(_) | Obj::ResponseHeaders(_) | Obj::ResponseBody(_) => {
                response::get(&h.0, m)
            }
            Obj::Certificate(c) => certificate::get(c, m),
            Obj::Uri(kind, p) => net::get(*kind, p, m),
            Obj::Hasher(hasher) => crypto::get(hasher, m),
            Obj::Basic(creds) => net::basic_get(creds, m),
            Obj::Random(_) => Err(RuntimeError::no_member(recv.type_name(), m.name())),
            Obj::Xml(kind, e) => xml::get(*kind, e, m, rt),
            Obj::XAttr(a) => xml::attr_get(a, m),
            Obj::StringBuilder(sb) => text::get(sb, m, rt),
        },
        Value::DateTime(d)
            if matches!(
                m,
                Member::UtcDateTime | Member::DateTime | Member::LocalDateTime
            ) =>
        {
            Ok(Value::DateTime(*d))
        }
        Value::String(s) => string::get(s, m),
        Value::Array(a) if matches!(m, Member::Length | Member::Count) => Ok(len_value(a.len())),
        Value::Bytes(b) if m == Member::Length => Ok(len_value(b.len())),
        Value::DateTime(_) | Value::TimeSpan(_) => datetime::get(recv, m),
        Value::Json(j) => json::get(j, m),
        Value::Jwt(j) => jwt::get(j, m),
        _ => Err(RuntimeError::no_member(recv.type_name(), m.name())),
    }
}

pub(crate) fn len_value(n: usize) -> Value {
    Value::Int(i32::try_from(n).unwrap_or(i32::MAX))
}

/// Calls method `m` on `recv`.
pub(crate) fn call(
    recv: &Value,
    m: Member,
    args: &[Value],
    x: &Extra,
    rt: &mut Rt<'_>,
) -> RtResult<Value> {
    match (m, args.len()) {
        (Member::ToString, 0)
            if !matches!(
                recv,
                Value::Json(_) | Value::Null | Value::Handle(Handle(Obj::StringBuilder(_)))
            ) =>
        {
            let s = recv.to_policy_string();
            return Ok(Value::String(s.into()));
        }
        (Member::Equals, 1) if !matches!(recv, Value::String(_) | Value::Null) => {
            return Ok(Value::Bool(recv.loose_eq(&args[0])));
        }
        (Member::GetHashCode, 0) if !recv.is_null() => return Ok(Value::Int(hash_code(recv))),
        _ => {}
    }
    // A LINQ operator without a lambda on a value typed `object` (`v.Contains(x)`, `v.Count()`)
    // was compiled as a method call; run it as LINQ when the value is a sequence.
    let sequence = matches!(
        recv,
        Value::Array(_) | Value::Bytes(_) | Value::Json(Json::Array(_))
    );
    let arity = linq::lambda_arity(m);
    if sequence && (arity == Some(None) || (arity.is_some() && args.is_empty())) {
        let items = linq::enumerate(recv, rt)?;
        return linq::run(m, items, None, args.first());
    }
    match recv {
        Value::Null => Err(RuntimeError::null_reference()),
        Value::Handle(h) => match &h.0 {
            Obj::Ctx(c) => context::call(*c, m, args, x, rt),
            Obj::Url(u) if m == Member::ToUri => {
                Ok(net::uri_value(net::UriKind::Uri, net::UriParts::parse(u)?))
            }
            Obj::Url(u) => url::url_call(u, m, args),
            Obj::Query(q) => url::query_call(q, m, args),
            Obj::Claims(j) => jwt::claims_call(j, m, args),
            Obj::Encoding(e) => encoding::call(*e, m, args, rt),
            Obj::Response(_) | Obj::ResponseHeaders(_) | Obj::ResponseBody(_) => {
                response::call(&h.0, m, args, x, rt)
            }
            Obj::Certificate(c) => certificate::call(c, m, args),
            Obj::Random(r) => misc::random_call(r, m, args),
            Obj::Hasher(hasher) => crypto::call(hasher, m, args, rt),
            Obj::Xml(kind, e) => xml::call(*kind, e, m, args, rt),
            Obj::StringBuilder(sb) => text::call(recv, sb, m, args, rt),
            Obj::Uri(net::UriKind::Builder, p) if args.len() == 1 && net::settable(m).is_some() => {
                net::set(p, m, &args[0])
            }
            _ => Err(RuntimeError::no_member(recv.type_name(), m.name())),
        },
        Value::String(s) if m == Member::AsBasic && args.is_empty() => Ok(net::as_basic(s)),
        // `list.Add(x)`, compiled as an assignment of the longer list to the local.
        Value::Array(items) if m == Member::Add && args.len() == 1 => {
            rt.steps(items.len() + 1)?;
            crate::eval::check_nesting(rt, std::slice::from_ref(&args[0]), 1)?;
            let mut out = Vec::with_capacity(items.len() + 1);
            out.extend(items.iter().cloned());
            out.push(args[0].clone());
            Ok(Value::Array(out.into()))
        }
        Value::Bytes(b) if matches!(m, Member::Encrypt | Member::Decrypt) => {
            crypto::symmetric(b, m, args, rt)
        }
        Value::DateTime(d)
            if matches!(
                m,
                Member::ToUnixTimeSeconds | Member::ToUnixTimeMilliseconds
            ) =>
        {
            misc::to_unix(*d, m)
        }
        Value::String(s) => string::call(s, m, args, rt),
        Value::Char(c) => string::char_call(*c, m, args),
        Value::Int(_) | Value::Long(_) | Value::Double(_) | Value::Bool(_) => {
            number::call(recv, m, args)
        }
        Value::DateTime(_) | Value::TimeSpan(_) => datetime::call(recv, m, args),
        Value::Guid(g) => match m {
            Member::ToString => encoding::guid_to_string(*g, args),
            // .NET's layout: the first three fields little-endian.
            Member::ToByteArray => Ok(Value::Bytes(Arc::from(g.to_bytes_le()))),
            _ => Err(RuntimeError::no_member("Guid", m.name())),
        },
        Value::Json(j) => json::call(j, m, args, x, rt),
        _ => Err(RuntimeError::no_member(recv.type_name(), m.name())),
    }
}

/// Calls a method with an `out` argument; returns (result, out value).
pub(crate) fn call_out(
    recv: &Value,
    m: Member,
    args: &[Value],
    rt: &mut Rt<'_>,
) -> RtResult<(Value, Value)> {
    match (recv, m) {
        (Value::String(s), Member::TryParseJwt) => Ok(jwt::try_parse(s)),
        (Value::Handle(Handle(Obj::Ctx(c))), Member::TryGetValue) => {
            let key = args.first().unwrap_or(&Value::Null);
            let found = context::call(
                *c,
                Member::ContainsKey,
                std::slice::from_ref(key),
                &Extra::default(),
                rt,
            )?;
            if !matches!(found, Value::Bool(true)) {
                return Ok((Value::Bool(false), Value::Null));
            }
            // Headers give their `string[]` as the indexer does.
            let value = context::index(*c, key, rt)?;
            Ok((Value::Bool(true), value))
        }
        (Value::Null, _) => Err(RuntimeError::null_reference()),
        _ => {
            let _ = args;
            Err(RuntimeError::no_member(recv.type_name(), m.name()))
        }
    }
}

/// `recv[index]`.
pub(crate) fn index(recv: &Value, idx: &Value, rt: &mut Rt<'_>) -> RtResult<Value> {
    match recv {
        Value::Null => Err(RuntimeError::null_reference()),
        Value::String(s) => string::index(s, idx),
        Value::Array(items) => {
            let i = index_arg(idx, items.len())?;
            Ok(items[i].clone())
        }
        Value::Bytes(b) => {
            let i = index_arg(idx, b.len())?;
            Ok(Value::Int(i32::from(b[i])))
        }
        Value::Json(j) => json::index(j, idx),
        Value::Handle(h) => match &h.0 {
            Obj::Ctx(c) => context::index(*c, idx, rt),
            Obj::Query(q) => url::query_index(q, idx),
            Obj::Claims(j) => jwt::claims_index(j, idx),
            Obj::Groups(m) => regex::group(m, idx),
            Obj::ResponseHeaders(r) => response::index(r, idx),
            _ => Err(RuntimeError::no_member(recv.type_name(), "this[]")),
        },
        _ => Err(RuntimeError::new(
            ErrorKind::Binder,
            format_args!(
                "Cannot apply indexing with [] to an expression of type '{}'",
                recv.type_name()
            ),
        )),
    }
}

/// An integer index into `len` items, or `IndexOutOfRangeException`.
pub(crate) fn index_arg(idx: &Value, len: usize) -> RtResult<usize> {
    let i = match idx.number() {
        Some(super::value::Num::Int(i) | super::value::Num::Long(i)) => i,
        _ => {
            return Err(RuntimeError::new(
                ErrorKind::InvalidCast,
                format_args!("An index must be an integer, not '{}'.", idx.type_name()),
            ));
        }
    };
    usize::try_from(i).ok().filter(|i| *i < len).ok_or_else(|| {
        RuntimeError::new(
            ErrorKind::OutOfRange,
            "Index was outside the bounds of the array.",
        )
    })
}

/// Reads static property `Class.m`.
pub(crate) fn static_get(class: Class, m: Member, rt: &mut Rt<'_>) -> RtResult<Value> {
    if let Some((t, v)) = enum_value(class, m) {
        return Ok(Value::obj(Obj::Enum(t, v, Some(m))));
    }
    match class {
        Class::String => Ok(Value::str("")),
        Class::Int | Class::Long | Class::Double | Class::Math => number::static_get(class, m),
        Class::DateTime | Class::TimeSpan => datetime::static_get(class, m, rt),
        Class::Encoding | Class::Guid => encoding::static_get(class, m),
        Class::DateTimeOffset => datetime::static_get(Class::DateTime, m, rt),
        Class::XNamespace => xml::static_get(m),
        _ => Err(RuntimeError::no_member("type", m.name())),
    }
}

/// Calls static method `Class.m(args)`.
pub(crate) fn static_call(
    class: Class,
    m: Member,
    args: &[Value],
    x: &Extra,
    rt: &mut Rt<'_>,
) -> RtResult<Value> {
    match class {
        Class::String => string::static_call(m, args, rt),
        Class::Char => string::char_static_call(m, args),
        Class::Int | Class::Long | Class::Double | Class::Bool | Class::Math => {
            number::static_call(class, m, args)
        }
        Class::Convert | Class::Encoding | Class::Guid | Class::Uri => {
            encoding::static_call(class, m, args, rt)
        }
        Class::DateTime | Class::TimeSpan => datetime::static_call(class, m, args),
        Class::Regex => regex::static_call(m, args, x, rt),
        Class::Hmac(_) | Class::Hash(_) => crypto::static_call(class, m, args, rt),
        Class::WebUtility => net::static_call(m, args, rt),
        Class::Array => misc::array_static_call(m, args, rt),
        Class::Enumerable => misc::enumerable_static_call(m, args, rt),
        Class::BitConverter => misc::bit_converter_call(m, args, rt),
        Class::JsonConvert => json::json_convert_call(m, args, x, rt),
        Class::XDocument | Class::XElement | Class::XNamespace => {
            xml::static_call(class, m, args, rt)
        }
        Class::DateTimeOffset => misc::offset_static_call(m, args),
        Class::JObject | Class::JArray | Class::JToken | Class::JValue | Class::JProperty => {
            json::static_call(class, m, args, rt)
        }
        _ => Err(RuntimeError::no_member("type", m.name())),
    }
}

/// Calls a static method with an `out` argument; returns (result, out value).
pub(crate) fn static_call_out(class: Class, m: Member, args: &[Value]) -> RtResult<(Value, Value)> {
    match (class, m) {
        (Class::Int | Class::Long | Class::Double | Class::Bool, Member::TryParse) => {
            Ok(number::try_parse(class, args))
        }
        (Class::DateTime, Member::TryParse) => Ok(datetime::try_parse(args)),
        _ => Err(RuntimeError::no_member("type", m.name())),
    }
}

/// `new T(args)`: the type it makes.
pub(crate) fn new_sig(class: Class, c: &CallTys<'_>) -> Sig {
    match class {
        Class::DateTime | Class::TimeSpan => datetime::new_sig(class, c),
        Class::JObject | Class::JArray | Class::JProperty | Class::JValue => {
            json::new_sig(class, c)
        }
        Class::Uri | Class::UriBuilder => net::new_sig(class, c),
        Class::Random => misc::new_sig(class, c),
        Class::Hmac(_) => crypto::new_sig(class, c),
        Class::Guid => sig(c, &[&[P::Str]], Ty::Guid),
        Class::StringBuilder => text::new_sig(c),
        Class::XElement | Class::XAttribute | Class::XDocument => xml::new_sig(class, c),
        Class::String => sig(c, &[&[P::Char, P::Int], &[P::Seq]], Ty::String),
        // Offsets are UTC here: a `DateTimeOffset` is its `DateTime`.
        Class::DateTimeOffset => sig(c, &[&[P::DateTime]], Ty::DateTime),
        _ => Err(SigErr::NotFound),
    }
}

/// `new T(args)`.
pub(crate) fn new_value(class: Class, args: &[Value], rt: &mut Rt<'_>) -> RtResult<Value> {
    match class {
        Class::Guid => encoding::static_call(Class::Guid, Member::Parse, args, rt),
        Class::String => string::new_string(args, rt),
        Class::StringBuilder => text::new_value(args, rt),
        Class::XElement | Class::XAttribute | Class::XDocument => xml::new_value(class, args, rt),
        Class::DateTime | Class::TimeSpan => datetime::new_value(class, args),
        Class::Uri | Class::UriBuilder => net::new_value(class, args),
        Class::Random => misc::new_value(args),
        Class::Hmac(_) => crypto::new_value(class, args),
        Class::DateTimeOffset => match args.first() {
            Some(Value::DateTime(d)) => Ok(Value::DateTime(
                d.with_kind(crate::datetime::DateTimeKind::Utc),
            )),
            _ => Err(null_argument("dateTime")),
        },
        _ => json::new_value(class, args),
    }
}

// ---- argument helpers ----------------------------------------------------------------------

/// An enum value (`StringComparison.Ordinal`…): its type and number.
pub(crate) fn enum_arg(v: &Value) -> Option<(EnumTy, i32)> {
    match v {
        Value::Handle(h) => match h.0 {
            Obj::Enum(t, v, _) => Some((t, v)),
            _ => None,
        },
        _ => None,
    }
}

pub(crate) fn null_argument(name: &str) -> RuntimeError {
    RuntimeError::new(
        ErrorKind::Argument,
        format_args!("Value cannot be null. (Parameter '{name}')"),
    )
}

/// A string argument; `null` is refused (`ArgumentNullException`).
pub(crate) fn arg_str<'v>(args: &'v [Value], i: usize, name: &str) -> RtResult<&'v str> {
    match args.get(i) {
        Some(Value::String(s)) => Ok(s),
        Some(Value::Json(Json::String(s))) => Ok(s),
        Some(Value::Null) | None => Err(null_argument(name)),
        Some(v) => Err(RuntimeError::cast(v.type_name(), "String")),
    }
}

/// A string argument that may be null.
pub(crate) fn arg_opt_str(args: &[Value], i: usize) -> RtResult<Option<&str>> {
    match args.get(i) {
        Some(Value::Null | Value::Json(Json::Null)) | None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Json(Json::String(s))) => Ok(Some(s)),
        Some(v) => Err(RuntimeError::cast(v.type_name(), "String")),
    }
}

pub(crate) fn arg_i64(args: &[Value], i: usize) -> RtResult<i64> {
    match args.get(i).and_then(Value::number) {
        Some(super::value::Num::Int(v) | super::value::Num::Long(v)) => Ok(v),
        _ => Err(RuntimeError::cast(
            args.get(i).map_or("null", Value::type_name),
            "Int32",
        )),
    }
}

pub(crate) fn arg_f64(args: &[Value], i: usize) -> RtResult<f64> {
    match args.get(i).and_then(Value::number) {
        Some(n) => Ok(n.as_f64()),
        None => Err(RuntimeError::cast(
            args.get(i).map_or("null", Value::type_name),
            "Double",
        )),
    }
}

pub(crate) fn arg_char(args: &[Value], i: usize) -> RtResult<char> {
    match args.get(i) {
        Some(Value::Char(c)) => Ok(*c),
        other => Err(RuntimeError::cast(
            other.map_or("null", Value::type_name),
            "Char",
        )),
    }
}

/// `GetHashCode()`: an `int` that is equal for equal values within a process, as .NET
/// promises (and no more: .NET randomises string hashes per process too). Numbers and
/// booleans hash as .NET's do; other values by their text, with FNV-1a.
fn hash_code(v: &Value) -> i32 {
    match v {
        Value::Int(i) => *i,
        Value::Bool(b) => i32::from(*b),
        Value::Char(c) => *c as i32,
        // .NET: the low 32 bits xor the high 32 bits.
        Value::Long(l) => (*l as i32) ^ ((*l >> 32) as i32),
        other => {
            let mut h: u32 = 0x811c_9dc5;
            for b in other.to_policy_string().bytes() {
                h ^= u32::from(b);
                h = h.wrapping_mul(0x0100_0193);
            }
            h as i32
        }
    }
}
