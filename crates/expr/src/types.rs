//! Static types, as far as C# would know them when the policy is saved. They drive member
//! resolution and the compile-time errors (`'IRequest' does not contain a definition for
//! 'Nope'`); where C# itself only knows `object` (variables, untyped JSON), [`Ty::Object`]
//! defers the check to run time. Also the allow-list of type names and namespaces.

use std::fmt;

use super::ast::TypeRef;
use super::builtins::crypto::HashAlg;
use super::context::Message;
use super::value::CtxObj;

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Ty {
    /// Statically unknown (`object`): members are looked up at run time.
    Object,
    /// The type of the `null` literal.
    Null,
    Bool,
    Int,
    Long,
    Double,
    Char,
    String,
    /// `T[]` and the sequences LINQ returns.
    Array(Box<Ty>),
    Bytes,
    Json(JKind),
    DateTime,
    TimeSpan,
    Guid,
    Jwt,
    Claims,
    /// `X509Certificate2` (`context.Request.Certificate`).
    Certificate,
    Match,
    Groups,
    Group,
    Pair(Box<Ty>, Box<Ty>),
    Url,
    Query,
    Ctx(CtxObj),
    Encoding,
    Enum(EnumTy),
    /// `System.Uri`.
    Uri,
    UriBuilder,
    Random,
    /// An HMAC or hash algorithm object.
    Hasher,
    /// `BasicAuthCredentials` (`AsBasic()`).
    Basic,
    XDocument,
    XElement,
    XAttribute,
    /// `XNamespace`: its URI as a string; `ns + "local"` makes the `XName` `{ns}local`.
    XNamespace,
    StringBuilder,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JKind {
    Token,
    Object,
    Array,
    Value,
    Property,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EnumTy {
    StringComparison,
    Formatting,
    RegexOptions,
    StringSplitOptions,
    DateTimeKind,
    DayOfWeek,
}

impl Ty {
    pub(crate) fn array_of(t: Ty) -> Ty {
        Ty::Array(Box::new(t))
    }

    pub(crate) fn is_numeric(&self) -> bool {
        matches!(self, Ty::Int | Ty::Long | Ty::Double | Ty::Char)
    }

    /// Types whose values are never null in C# (without `?`).
    pub(crate) fn is_value_type(&self) -> bool {
        matches!(
            self,
            Ty::Bool
                | Ty::Int
                | Ty::Long
                | Ty::Double
                | Ty::Char
                | Ty::DateTime
                | Ty::TimeSpan
                | Ty::Guid
                | Ty::Enum(_)
        )
    }

    /// `object` or a type whose members are only known at run time.
    pub(crate) fn is_dynamic(&self) -> bool {
        matches!(self, Ty::Object | Ty::Null)
    }

    /// The element type when enumerated (`foreach`, LINQ), if enumerable.
    pub(crate) fn element(&self) -> Option<Ty> {
        Some(match self {
            Ty::Array(t) => (**t).clone(),
            Ty::Bytes => Ty::Int,
            Ty::String => Ty::Char,
            Ty::Json(JKind::Array | JKind::Token) => Ty::Json(JKind::Token),
            Ty::Json(JKind::Object) => Ty::Json(JKind::Property),
            // Header values are joined; query and claim values are `string[]`, as in Azure.
            Ty::Ctx(CtxObj::Headers(_)) | Ty::Ctx(CtxObj::MatchedParameters) => {
                Ty::Pair(Box::new(Ty::String), Box::new(Ty::String))
            }
            Ty::Query | Ty::Claims => {
                Ty::Pair(Box::new(Ty::String), Box::new(Ty::array_of(Ty::String)))
            }
            Ty::Groups => Ty::Group,
            Ty::Object => Ty::Object,
            _ => return None,
        })
    }
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ty::Object => f.write_str("object"),
            Ty::Null => f.write_str("<null>"),
            Ty::Bool => f.write_str("bool"),
            Ty::Int => f.write_str("int"),
            Ty::Long => f.write_str("long"),
            Ty::Double => f.write_str("double"),
            Ty::Char => f.write_str("char"),
            Ty::String => f.write_str("string"),
            Ty::Array(t) => write!(f, "{t}[]"),
            Ty::Bytes => f.write_str("byte[]"),
            Ty::Json(k) => f.write_str(match k {
                JKind::Token => "JToken",
                JKind::Object => "JObject",
                JKind::Array => "JArray",
                JKind::Value => "JValue",
                JKind::Property => "JProperty",
            }),
            Ty::DateTime => f.write_str("DateTime"),
            Ty::TimeSpan => f.write_str("TimeSpan"),
            Ty::Guid => f.write_str("Guid"),
            Ty::Jwt => f.write_str("Jwt"),
            Ty::Certificate => f.write_str("X509Certificate2"),
            Ty::Claims | Ty::Query => f.write_str("IReadOnlyDictionary<string, string[]>"),
            Ty::Match => f.write_str("Match"),
            Ty::Groups => f.write_str("GroupCollection"),
            Ty::Group => f.write_str("Group"),
            Ty::Pair(k, v) => write!(f, "KeyValuePair<{k}, {v}>"),
            Ty::Url => f.write_str("IUrl"),
            Ty::Encoding => f.write_str("Encoding"),
            Ty::Uri => f.write_str("Uri"),
            Ty::UriBuilder => f.write_str("UriBuilder"),
            Ty::Random => f.write_str("Random"),
            Ty::Hasher => f.write_str("HashAlgorithm"),
            Ty::Basic => f.write_str("BasicAuthCredentials"),
            Ty::XDocument => f.write_str("XDocument"),
            Ty::XElement => f.write_str("XElement"),
            Ty::XAttribute => f.write_str("XAttribute"),
            Ty::XNamespace => f.write_str("XNamespace"),
            Ty::StringBuilder => f.write_str("StringBuilder"),
            Ty::Enum(e) => f.write_str(match e {
                EnumTy::StringComparison => "StringComparison",
                EnumTy::Formatting => "Formatting",
                EnumTy::RegexOptions => "RegexOptions",
                EnumTy::StringSplitOptions => "StringSplitOptions",
                EnumTy::DateTimeKind => "DateTimeKind",
                EnumTy::DayOfWeek => "DayOfWeek",
            }),
            Ty::Ctx(c) => f.write_str(c.type_name()),
        }
    }
}

/// Classes whose static members an expression may use: the allow-list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    String,
    Int,
    Long,
    Double,
    Bool,
    Char,
    Math,
    Convert,
    Encoding,
    Regex,
    DateTime,
    TimeSpan,
    Guid,
    JObject,
    JArray,
    JToken,
    JValue,
    JProperty,
    Uri,
    StringComparison,
    Formatting,
    RegexOptions,
    StringSplitOptions,
    DateTimeKind,
    DayOfWeek,
    UriBuilder,
    Random,
    /// `HMACSHA256`…: keyed hashes.
    Hmac(HashAlg),
    /// `SHA256`, `MD5`…: `Create()` and `HashData`.
    Hash(HashAlg),
    WebUtility,
    Array,
    /// `System.Linq.Enumerable`'s static members (`Empty<T>()`, `Range`, `Repeat`).
    Enumerable,
    BitConverter,
    JsonConvert,
    XDocument,
    XElement,
    XAttribute,
    XNamespace,
    StringBuilder,
    DateTimeOffset,
}

/// (simple name, namespace) of every allowed class; C# keywords have no namespace.
const CLASSES: &[(&str, &str, Class)] = &[
    ("string", "", Class::String),
    ("String", "System", Class::String),
    ("int", "", Class::Int),
    ("Int32", "System", Class::Int),
    ("long", "", Class::Long),
    ("Int64", "System", Class::Long),
    ("double", "", Class::Double),
    ("Double", "System", Class::Double),
    ("bool", "", Class::Bool),
    ("Boolean", "System", Class::Bool),
    ("char", "", Class::Char),
    ("Char", "System", Class::Char),
    ("Math", "System", Class::Math),
    ("Convert", "System", Class::Convert),
    ("Encoding", "System.Text", Class::Encoding),
    ("Regex", "System.Text.RegularExpressions", Class::Regex),
    (
        "RegexOptions",
        "System.Text.RegularExpressions",
        Class::RegexOptions,
    ),
    ("DateTime", "System", Class::DateTime),
    ("DateTimeKind", "System", Class::DateTimeKind),
    ("DayOfWeek", "System", Class::DayOfWeek),
    ("TimeSpan", "System", Class::TimeSpan),
    ("Guid", "System", Class::Guid),
    ("Uri", "System", Class::Uri),
    ("StringComparison", "System", Class::StringComparison),
    ("StringSplitOptions", "System", Class::StringSplitOptions),
    ("JObject", "Newtonsoft.Json.Linq", Class::JObject),
    ("JArray", "Newtonsoft.Json.Linq", Class::JArray),
    ("JToken", "Newtonsoft.Json.Linq", Class::JToken),
    ("JValue", "Newtonsoft.Json.Linq", Class::JValue),
    ("JProperty", "Newtonsoft.Json.Linq", Class::JProperty),
    ("Formatting", "Newtonsoft.Json", Class::Formatting),
    ("UriBuilder", "System", Class::UriBuilder),
    ("Random", "System", Class::Random),
    ("Array", "System", Class::Array),
    ("Enumerable", "System.Linq", Class::Enumerable),
    ("BitConverter", "System", Class::BitConverter),
    ("JsonConvert", "Newtonsoft.Json", Class::JsonConvert),
    ("XDocument", "System.Xml.Linq", Class::XDocument),
    ("XElement", "System.Xml.Linq", Class::XElement),
    ("XAttribute", "System.Xml.Linq", Class::XAttribute),
    ("XNamespace", "System.Xml.Linq", Class::XNamespace),
    ("StringBuilder", "System.Text", Class::StringBuilder),
    ("DateTimeOffset", "System", Class::DateTimeOffset),
    ("WebUtility", "System.Net", Class::WebUtility),
    ("HMACMD5", CRYPTO, Class::Hmac(HashAlg::Md5)),
    ("HMACSHA1", CRYPTO, Class::Hmac(HashAlg::Sha1)),
    ("HMACSHA256", CRYPTO, Class::Hmac(HashAlg::Sha256)),
    ("HMACSHA384", CRYPTO, Class::Hmac(HashAlg::Sha384)),
    ("HMACSHA512", CRYPTO, Class::Hmac(HashAlg::Sha512)),
    ("MD5", CRYPTO, Class::Hash(HashAlg::Md5)),
    ("SHA1", CRYPTO, Class::Hash(HashAlg::Sha1)),
    ("SHA256", CRYPTO, Class::Hash(HashAlg::Sha256)),
    ("SHA384", CRYPTO, Class::Hash(HashAlg::Sha384)),
    ("SHA512", CRYPTO, Class::Hash(HashAlg::Sha512)),
];

const CRYPTO: &str = "System.Security.Cryptography";

/// Namespaces a qualified name may go through.
const NAMESPACES: &[&str] = &[
    "System",
    "System.Text",
    "System.Text.RegularExpressions",
    "System.Linq",
    "System.Collections",
    "System.Collections.Generic",
    "Newtonsoft",
    "Newtonsoft.Json",
    "Newtonsoft.Json.Linq",
    "System.Net",
    "System.Security",
    "System.Security.Cryptography",
    "System.Xml",
    "System.Xml.Linq",
];

/// A class by simple or fully qualified name.
pub(crate) fn class(name: &str) -> Option<Class> {
    let (ns, simple) = match name.rsplit_once('.') {
        Some((ns, simple)) => (ns, simple),
        None => ("", name),
    };
    CLASSES
        .iter()
        .find(|(n, cns, _)| *n == simple && (ns.is_empty() || (!cns.is_empty() && *cns == ns)))
        .map(|(_, _, c)| *c)
}

pub(crate) fn is_namespace(name: &str) -> bool {
    NAMESPACES.contains(&name)
}

/// The type a written type names; `Err` with a message when it isn't allowed.
pub(crate) fn from_ref(t: &TypeRef) -> Result<Ty, String> {
    let simple = t.name.rsplit('.').next().unwrap_or(&t.name);
    let qualified_ok = !t.name.contains('.')
        || t.name
            .rsplit_once('.')
            .is_some_and(|(ns, _)| is_namespace(ns));
    if !qualified_ok {
        return Err(not_allowed(&t.name));
    }
    let arg = |n: usize| -> Result<Ty, String> {
        match t.args.get(n) {
            Some(a) => from_ref(a),
            None => Err(format!(
                "Using the generic type '{}' requires type arguments",
                t.name
            )),
        }
    };
    let mut base = match (simple, t.args.len()) {
        ("string" | "String", 0) => Ty::String,
        ("int" | "Int32", 0) => Ty::Int,
        ("long" | "Int64", 0) => Ty::Long,
        ("double" | "Double" | "float" | "Single" | "decimal" | "Decimal", 0) => Ty::Double,
        ("bool" | "Boolean", 0) => Ty::Bool,
        ("char" | "Char", 0) => Ty::Char,
        ("object" | "Object" | "dynamic", 0) => Ty::Object,
        ("byte" | "Byte", 0) if t.array > 0 => {
            return Ok(nest_array(Ty::Bytes, t.array - 1));
        }
        ("JObject", 0) => Ty::Json(JKind::Object),
        ("JArray", 0) => Ty::Json(JKind::Array),
        ("JToken", 0) => Ty::Json(JKind::Token),
        ("JValue", 0) => Ty::Json(JKind::Value),
        ("JProperty", 0) => Ty::Json(JKind::Property),
        ("DateTime", 0) => Ty::DateTime,
        ("TimeSpan", 0) => Ty::TimeSpan,
        ("Guid", 0) => Ty::Guid,
        ("Jwt", 0) => Ty::Jwt,
        ("X509Certificate2", 0) => Ty::Certificate,
        ("Match", 0) => Ty::Match,
        // A response `send-request` stored in a variable: typed like `context.Response`.
        ("IResponse", 0) => Ty::Ctx(CtxObj::Response),
        ("Group", 0) => Ty::Group,
        ("Uri", 0) => Ty::Uri,
        ("UriBuilder", 0) => Ty::UriBuilder,
        ("Random", 0) => Ty::Random,
        ("DateTimeOffset", 0) => Ty::DateTime,
        ("BasicAuthCredentials", 0) => Ty::Basic,
        ("XDocument", 0) => Ty::XDocument,
        ("XElement", 0) => Ty::XElement,
        ("XAttribute", 0) => Ty::XAttribute,
        ("StringBuilder", 0) => Ty::StringBuilder,
        (
            "HMACMD5" | "HMACSHA1" | "HMACSHA256" | "HMACSHA384" | "HMACSHA512" | "HMAC"
            | "KeyedHashAlgorithm" | "HashAlgorithm" | "MD5" | "SHA1" | "SHA256" | "SHA384"
            | "SHA512",
            0,
        ) => Ty::Hasher,
        ("StringComparison", 0) => Ty::Enum(EnumTy::StringComparison),
        ("Formatting", 0) => Ty::Enum(EnumTy::Formatting),
        ("RegexOptions", 0) => Ty::Enum(EnumTy::RegexOptions),
        ("StringSplitOptions", 0) => Ty::Enum(EnumTy::StringSplitOptions),
        ("DayOfWeek", 0) => Ty::Enum(EnumTy::DayOfWeek),
        ("DateTimeKind", 0) => Ty::Enum(EnumTy::DateTimeKind),
        // An `XName` is a string here (`{ns}local` or `local`); `XNamespace` holds its URI.
        ("XName", 0) => Ty::String,
        ("XNamespace", 0) => Ty::XNamespace,
        (
            "IEnumerable"
            | "List"
            | "IList"
            | "ICollection"
            | "IReadOnlyList"
            | "IReadOnlyCollection",
            1,
        ) => Ty::array_of(arg(0)?),
        ("KeyValuePair", 2) => Ty::Pair(Box::new(arg(0)?), Box::new(arg(1)?)),
        // A dictionary with string keys is held as a JSON object (keys in insertion order).
        ("Dictionary" | "IDictionary" | "IReadOnlyDictionary", 2) => {
            if arg(0)? != Ty::String {
                return Err(format!(
                    "'{}' needs string keys in policy expressions (Dictionary<string, T>)",
                    t.name
                ));
            }
            arg(1)?;
            Ty::Json(JKind::Object)
        }
        _ => return Err(not_allowed(&t.name)),
    };
    base = nest_array(base, t.array);
    Ok(base)
}

fn nest_array(mut t: Ty, rank: u8) -> Ty {
    for _ in 0..rank {
        t = Ty::array_of(t);
    }
    t
}

pub(crate) fn not_allowed(name: &str) -> String {
    format!("The type or namespace name '{name}' is not allowed in policy expressions")
}

/// How a value of one static type can be stored where another is expected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Assign {
    /// As is.
    Same,
    /// Needs a conversion at run time (numeric widening, or checking an `object`).
    Convert,
    /// C# refuses it.
    No,
}

pub(crate) fn assignable(from: &Ty, to: &Ty, nullable_target: bool) -> Assign {
    use Ty as T;
    if from == to {
        return Assign::Same;
    }
    match (from, to) {
        (_, T::Object) => Assign::Same,
        (T::Null, t) => {
            if t.is_value_type() && !nullable_target {
                Assign::No
            } else {
                Assign::Same
            }
        }
        (T::Object, _) => Assign::Convert,
        (T::Int | T::Char, T::Long | T::Double) | (T::Long, T::Double) | (T::Char, T::Int) => {
            Assign::Convert
        }
        (T::Json(_), T::Json(_)) => Assign::Convert,
        // Newtonsoft converts primitives to `JValue` implicitly, and back explicitly; being
        // lenient about the latter costs nothing and matches what policies mean.
        (
            T::String | T::Int | T::Long | T::Double | T::Bool | T::DateTime | T::Guid,
            T::Json(_),
        ) => Assign::Convert,
        (T::Json(_), T::String | T::Int | T::Long | T::Double | T::Bool | T::DateTime) => {
            Assign::Convert
        }
        (T::Array(_), T::Array(_)) => Assign::Same,
        // `XNamespace ns = "uri"`: the namespace is held as its URI.
        (T::String, T::XNamespace) => Assign::Same,
        (T::Ctx(CtxObj::Headers(Message::Request)), T::Ctx(CtxObj::Headers(_))) => Assign::Same,
        _ => Assign::No,
    }
}

/// C#'s binary numeric promotion.
pub(crate) fn promote(a: &Ty, b: &Ty) -> Option<Ty> {
    use Ty as T;
    match (a, b) {
        (T::Double, x) | (x, T::Double) if x.is_numeric() => Some(T::Double),
        (T::Long, x) | (x, T::Long) if x.is_numeric() => Some(T::Long),
        (T::Int | T::Char, T::Int | T::Char) => Some(T::Int),
        _ => None,
    }
}

/// The type of `c ? a : b` and of `a ?? b`.
pub(crate) fn join(a: &Ty, b: &Ty) -> Ty {
    if a == b {
        return a.clone();
    }
    match (a, b) {
        (Ty::Null, t) | (t, Ty::Null) => t.clone(),
        (Ty::Json(_), Ty::Json(_)) => Ty::Json(JKind::Token),
        _ => promote(a, b).unwrap_or(Ty::Object),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_and_namespaces() {
        assert_eq!(class("string"), Some(Class::String));
        assert_eq!(class("System.String"), Some(Class::String));
        assert_eq!(class("Newtonsoft.Json.Linq.JObject"), Some(Class::JObject));
        assert_eq!(class("System.string"), None);
        assert_eq!(class("System.IO.File"), None);
        assert!(is_namespace("System"));
        assert!(!is_namespace("System.IO"));
    }

    #[test]
    fn promotion_and_join() {
        assert_eq!(promote(&Ty::Int, &Ty::Double), Some(Ty::Double));
        assert_eq!(promote(&Ty::Char, &Ty::Int), Some(Ty::Int));
        assert_eq!(join(&Ty::Null, &Ty::String), Ty::String);
        assert_eq!(join(&Ty::String, &Ty::Int), Ty::Object);
        assert_eq!(assignable(&Ty::Int, &Ty::String, false), Assign::No);
        assert_eq!(assignable(&Ty::Int, &Ty::Long, false), Assign::Convert);
    }
}
