//! `set-body template="liquid"`: a Liquid template (`liquid-core` and `liquid-lib`) parsed once when the
//! policy is compiled and rendered per request over Azure's Liquid context: `context.Request`
//! (`Method`, `Url.{Scheme,Host,Port,Path,Query,QueryString}`, `Headers`, `IpAddress`,
//! `OriginalUrl`, `MatchedParameters`), `context.Response` (`StatusCode`, `StatusReason`,
//! `Headers`), `context.Api`, `context.Operation`, `context.Subscription`, `context.User`,
//! `context.Product`, `context.Deployment`, `context.Variables`, `context.RequestId`, and `body`:
//! the message's JSON body as an object (nil when the body is not JSON).
//!
//! Azure's templates name filters the .NET way (`Upcase`, `AtLeast`, `UrlEncode`); they are
//! renamed to the Liquid names (`upcase`, `at_least`, `url_encode`) when the template is
//! parsed, and Azure's own `JSONArrayFor` block becomes a standard loop. As in Azure, a value that is not there renders as nothing (Liquid's own runtime
//! would fail on it). The output is capped at [`MAX_OUTPUT`] bytes.

use std::sync::{Arc, OnceLock};

use liquid_core::model::{KString, Object, ScalarCow, Value as Lv, ValueCow};
use liquid_core::parser::{Language, ParseBlock, ParseFilter, ParseTag};
use liquid_core::runtime::{PartialStore, Registers, RuntimeBuilder};
use liquid_core::{Renderable, Runtime};

use crate::exchange::Exchange;
use crate::expr::Value;
use crate::run::PolicyError;
use crate::xml::Pos;

/// Largest body a template may render.
pub const MAX_OUTPUT: usize = 4 * 1024 * 1024;
/// Most numbers a loop range `(a..b)` may span. Liquid makes the whole range a list before
/// looping, so its bounds must be literals (a bound from the request could ask for billions).
pub const MAX_RANGE: i64 = 10_000;

/// A parsed template.
#[derive(Clone)]
pub struct LiquidTemplate {
    template: Arc<liquid_core::Template>,
    /// Whether the template mentions `body` (the JSON body is parsed only then).
    reads_body: bool,
}

impl std::fmt::Debug for LiquidTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiquidTemplate")
            .field("reads_body", &self.reads_body)
            .finish_non_exhaustive()
    }
}

/// A template that does not parse: the message and where in the template (1-based line and
/// column), when Liquid says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub message: String,
    pub at: Option<Pos>,
}

/// The Liquid name of a filter as Azure's templates write it (`AtLeast` → `at_least`).
fn filter_name(name: &str) -> String {
    match name {
        "H" | "h" => return "escape".to_owned(),
        "TruncateWords" => return "truncatewords".to_owned(),
        _ => {}
    }
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Azure's `{% JSONArrayFor x in list %}…{% endJSONArrayFor %}` block, which writes a JSON array
/// of what its body renders for each item, in standard Liquid: a `for` loop between brackets
/// with commas between the items.
fn json_array_for(src: &str) -> String {
    let mut out = String::with_capacity(src.len() + 32);
    let mut rest = src;
    while let Some(open) = rest.find("{%") {
        let after = &rest[open + 2..];
        let Some(close) = after.find("%}") else {
            break;
        };
        let inner = after[..close]
            .trim()
            .trim_start_matches('-')
            .trim_end_matches('-')
            .trim();
        out.push_str(&rest[..open]);
        if let Some(args) = inner.strip_prefix("JSONArrayFor ") {
            out.push_str("[{% for ");
            out.push_str(args.trim());
            out.push_str(" %}");
        } else if inner == "endJSONArrayFor" {
            out.push_str("{% unless forloop.last %},{% endunless %}{% endfor %}]");
        } else {
            out.push_str(&rest[open..open + 2 + close + 2]);
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    out
}

/// Renames the filters inside `{{ … }}` and `{% … %}` to Liquid's names, leaving string
/// literals and the text around the tags alone.
fn rename_filters(src: &str) -> String {
    let mut out = String::with_capacity(src.len() + 16);
    let mut rest = src;
    while let Some(open) = rest.find('{') {
        let tag = &rest[open..];
        let close = if tag.starts_with("{{") {
            "}}"
        } else if tag.starts_with("{%") {
            "%}"
        } else {
            out.push_str(&rest[..=open]);
            rest = &rest[open + 1..];
            continue;
        };
        out.push_str(&rest[..open + 2]);
        let inner = &rest[open + 2..];
        let mut quote: Option<char> = None;
        let mut chars = inner.char_indices().peekable();
        let mut end = inner.len();
        while let Some((i, c)) = chars.next() {
            match quote {
                Some(q) => {
                    out.push(c);
                    if c == q {
                        quote = None;
                    }
                }
                None if c == '"' || c == '\'' => {
                    quote = Some(c);
                    out.push(c);
                }
                None if inner[i..].starts_with(close) => {
                    end = i;
                    break;
                }
                None if c == '|' => {
                    out.push(c);
                    while let Some((_, w)) =
                        chars.peek().copied().filter(|(_, w)| w.is_whitespace())
                    {
                        out.push(w);
                        chars.next();
                    }
                    let mut name = String::new();
                    while let Some((_, n)) = chars
                        .peek()
                        .copied()
                        .filter(|(_, n)| n.is_ascii_alphanumeric() || *n == '_')
                    {
                        name.push(n);
                        chars.next();
                    }
                    out.push_str(&filter_name(&name));
                }
                None => out.push(c),
            }
        }
        rest = &inner[end..];
        if rest.starts_with(close) {
            out.push_str(close);
            rest = &rest[2..];
        }
    }
    out.push_str(rest);
    out
}

/// Refuses loop ranges `(a..b)` in tags unless both bounds are whole-number literals at most
/// [`MAX_RANGE`] apart.
fn check_ranges(src: &str) -> Result<(), String> {
    let mut rest = src;
    while let Some(open) = rest.find("{%") {
        let tag = &rest[open + 2..];
        let end = tag.find("%}").unwrap_or(tag.len());
        let body = &tag[..end];
        rest = &tag[end..];
        let mut search = body;
        while let Some(dots) = search.find("..") {
            let before = &search[..dots];
            let after = &search[dots + 2..];
            let start = before.rsplit('(').next().unwrap_or_default().trim();
            let stop = after.split(')').next().unwrap_or_default().trim();
            match (start.parse::<i64>(), stop.parse::<i64>()) {
                (Ok(a), Ok(b)) if b.saturating_sub(a) <= MAX_RANGE => {}
                (Ok(_), Ok(_)) => {
                    return Err(format!(
                        "the range ({start}..{stop}) spans more than {MAX_RANGE} numbers"
                    ));
                }
                _ => {
                    return Err(format!(
                        "the range ({start}..{stop}) must have whole-number literal bounds (a bound taken from the message could ask for billions of loops); loop over an array instead"
                    ));
                }
            }
            search = after;
        }
    }
    Ok(())
}

/// Finds Liquid's `--> line:column` in an error message.
fn error_position(message: &str) -> Option<Pos> {
    let at = message.split("-->").nth(1)?.trim_start();
    let spot: String = at
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ':')
        .collect();
    let (line, column) = spot.split_once(':')?;
    Some(Pos {
        line: line.parse().ok()?,
        column: column.parse().ok()?,
    })
}

/// The first meaningful line of a Liquid error, without its source excerpt.
fn error_summary(message: &str) -> String {
    let lines: Vec<&str> = message
        .lines()
        .map(|l| l.trim().trim_start_matches("liquid:").trim())
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with("-->")
                && !l.starts_with('|')
                && !l.starts_with(|c: char| c.is_ascii_digit())
        })
        .map(|l| l.trim_start_matches("= "))
        .collect();
    lines.join("; ")
}

impl LiquidTemplate {
    pub fn parse(src: &str) -> Result<Self, TemplateError> {
        check_ranges(src).map_err(|message| TemplateError { message, at: None })?;
        let elements =
            liquid_core::parser::parse(&rename_filters(&json_array_for(src)), language()).map_err(
                |e| {
                    let message = e.to_string();
                    TemplateError {
                        at: error_position(&message),
                        message: error_summary(&message),
                    }
                },
            )?;
        Ok(Self {
            template: Arc::new(liquid_core::Template::new(elements)),
            reads_body: src.contains("body"),
        })
    }

    /// Renders the template over the exchange; `response` picks the message `body` is.
    pub fn render(&self, ex: &Exchange, response: bool) -> Result<Vec<u8>, PolicyError> {
        let globals = self.globals(ex, response);
        let mut out = Capped(Vec::new());
        let runtime = Lenient(RuntimeBuilder::new().set_globals(&globals).build());
        self.template.render_to(&mut out, &runtime).map_err(|e| {
            let message = e.to_string();
            let summary = error_summary(&message);
            PolicyError::runtime(
                "LiquidTemplateError",
                format!("the Liquid template failed to render: {summary}"),
            )
        })?;
        Ok(out.0)
    }

    fn globals(&self, ex: &Exchange, response: bool) -> Object {
        let mut g = Object::new();
        g.insert("context".into(), Lv::Object(context(ex)));
        if self.reads_body {
            let bytes = if response {
                ex.response.as_ref().and_then(|r| r.body.as_deref())
            } else {
                ex.request.body.as_deref()
            };
            let body = bytes
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
                .and_then(|v| liquid_core::model::to_value(&v).ok())
                .unwrap_or(Lv::Nil);
            g.insert("body".into(), body);
        }
        g
    }
}

/// Liquid's standard tags, blocks and filters, registered once.
fn language() -> &'static Language {
    static LANGUAGE: OnceLock<Language> = OnceLock::new();
    LANGUAGE.get_or_init(|| {
        use liquid_lib::stdlib as l;
        let mut lang = Language::empty();
        let tags: Vec<Box<dyn ParseTag>> = vec![
            l::AssignTag.into(),
            l::BreakTag.into(),
            l::ContinueTag.into(),
            l::CycleTag.into(),
            l::IncrementTag.into(),
            l::DecrementTag.into(),
        ];
        for t in tags {
            lang.tags.register(t.reflection().tag().to_owned(), t);
        }
        let blocks: Vec<Box<dyn ParseBlock>> = vec![
            l::RawBlock.into(),
            l::IfBlock.into(),
            l::UnlessBlock.into(),
            l::IfChangedBlock.into(),
            l::ForBlock.into(),
            l::TableRowBlock.into(),
            l::CommentBlock.into(),
            l::CaptureBlock.into(),
            l::CaseBlock.into(),
        ];
        for b in blocks {
            lang.blocks
                .register(b.reflection().start_tag().to_owned(), b);
        }
        let filters: Vec<Box<dyn ParseFilter>> = vec![
            l::Abs.into(),
            l::Append.into(),
            l::AtLeast.into(),
            l::AtMost.into(),
            l::Capitalize.into(),
            l::Ceil.into(),
            l::Compact.into(),
            l::Concat.into(),
            l::Date.into(),
            l::Default.into(),
            l::DividedBy.into(),
            l::Downcase.into(),
            l::Escape.into(),
            l::EscapeOnce.into(),
            l::First.into(),
            l::Floor.into(),
            l::Join.into(),
            l::Last.into(),
            l::Lstrip.into(),
            l::Map.into(),
            l::Minus.into(),
            l::Modulo.into(),
            l::NewlineToBr.into(),
            l::Plus.into(),
            l::Prepend.into(),
            l::Remove.into(),
            l::RemoveFirst.into(),
            l::Replace.into(),
            l::ReplaceFirst.into(),
            l::Reverse.into(),
            l::Round.into(),
            l::Rstrip.into(),
            l::Size.into(),
            l::Slice.into(),
            l::Sort.into(),
            l::SortNatural.into(),
            l::Split.into(),
            l::Strip.into(),
            l::StripHtml.into(),
            l::StripNewlines.into(),
            l::Times.into(),
            l::Truncate.into(),
            l::TruncateWords.into(),
            l::Uniq.into(),
            l::Upcase.into(),
            l::UrlDecode.into(),
            l::UrlEncode.into(),
            l::Where.into(),
        ];
        for f in filters {
            lang.filters.register(f.reflection().name().to_owned(), f);
        }
        lang
    })
}

/// Liquid's runtime, except that a variable or index that is not there is nil, as in Azure,
/// instead of an error.
struct Lenient<R>(R);

impl<R: Runtime> Runtime for Lenient<R> {
    fn partials(&self) -> &dyn PartialStore {
        self.0.partials()
    }

    fn name(&self) -> Option<liquid_core::model::KStringRef<'_>> {
        self.0.name()
    }

    fn roots(&self) -> std::collections::BTreeSet<liquid_core::model::KStringCow<'_>> {
        self.0.roots()
    }

    fn try_get(&self, path: &[ScalarCow<'_>]) -> Option<ValueCow<'_>> {
        self.0.try_get(path)
    }

    fn get(&self, path: &[ScalarCow<'_>]) -> liquid_core::Result<ValueCow<'_>> {
        Ok(self.0.try_get(path).unwrap_or(ValueCow::Owned(Lv::Nil)))
    }

    fn set_global(&self, name: KString, val: Lv) -> Option<Lv> {
        self.0.set_global(name, val)
    }

    fn set_index(&self, name: KString, val: Lv) -> Option<Lv> {
        self.0.set_index(name, val)
    }

    fn get_index<'a>(&'a self, name: &str) -> Option<ValueCow<'a>> {
        self.0.get_index(name)
    }

    fn registers(&self) -> &Registers {
        self.0.registers()
    }
}

/// A writer that refuses to grow past [`MAX_OUTPUT`].
struct Capped(Vec<u8>);

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > MAX_OUTPUT {
            return Err(std::io::Error::other(format!(
                "the output is larger than {MAX_OUTPUT} bytes"
            )));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn s(v: &str) -> Lv {
    Lv::scalar(v.to_owned())
}

fn opt(v: Option<&Arc<str>>) -> Lv {
    v.map_or(Lv::Nil, |v| s(v))
}

fn obj<const N: usize>(fields: [(&'static str, Lv); N]) -> Lv {
    let mut o = Object::new();
    for (k, v) in fields {
        o.insert(k.into(), v);
    }
    Lv::Object(o)
}

/// `X-Name`: how .NET spells a header name, which templates index with.
fn title_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut up = true;
    for c in name.chars() {
        out.push(if up { c.to_ascii_uppercase() } else { c });
        up = c == '-';
    }
    out
}

/// Headers by name, values joined with `,`; under the lowercase name and the `X-Name` form.
fn headers(map: &http::HeaderMap) -> Lv {
    let mut o = Object::new();
    for name in map.keys() {
        let values: Vec<String> = map
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        let joined = values.join(",");
        o.insert(KString::from(title_case(name.as_str())), s(&joined));
        o.insert(KString::from(name.as_str().to_owned()), s(&joined));
    }
    Lv::Object(o)
}

fn variable(v: &Value) -> Lv {
    match v {
        Value::Null => Lv::Nil,
        Value::Bool(b) => Lv::scalar(*b),
        Value::Int(i) => Lv::scalar(i64::from(*i)),
        Value::Long(i) => Lv::scalar(*i),
        Value::Double(d) => Lv::scalar(*d),
        Value::Array(items) => Lv::Array(items.iter().map(variable).collect()),
        Value::Json(_) => serde_json::from_str::<serde_json::Value>(&v.to_policy_string())
            .ok()
            .and_then(|j| liquid_core::model::to_value(&j).ok())
            .unwrap_or(Lv::Nil),
        other => s(&other.to_policy_string()),
    }
}

fn context(ex: &Exchange) -> Object {
    let r = &ex.request;
    let i = &ex.info;
    let query = r.query.as_deref().unwrap_or_default();
    let mut params = Object::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        params.insert(KString::from(k.to_owned()), s(v));
    }
    let (host, port) = match r.host.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => (h, p.to_owned()),
        _ => (
            r.host.as_str(),
            if r.scheme == "https" { "443" } else { "80" }.to_owned(),
        ),
    };
    let mut matched = Object::new();
    for (k, v) in &i.matched {
        matched.insert(KString::from(k.to_string()), s(v));
    }
    let url = obj([
        ("Scheme", s(&r.scheme)),
        ("Host", s(host)),
        ("Port", s(&port)),
        ("Path", s(&r.path)),
        ("Query", Lv::Object(params)),
        (
            "QueryString",
            s(&if query.is_empty() {
                String::new()
            } else {
                format!("?{query}")
            }),
        ),
    ]);
    let request = obj([
        ("Method", s(r.method.as_str())),
        ("Url", url),
        ("OriginalUrl", s(&i.original_url)),
        ("Headers", headers(&r.headers)),
        ("IpAddress", s(&i.ip)),
        ("MatchedParameters", Lv::Object(matched)),
    ]);
    let response = match &ex.response {
        Some(resp) => obj([
            ("StatusCode", Lv::scalar(i64::from(resp.status.as_u16()))),
            (
                "StatusReason",
                s(resp
                    .reason
                    .as_deref()
                    .unwrap_or(resp.status.canonical_reason().unwrap_or(""))),
            ),
            ("Headers", headers(&resp.headers)),
        ]),
        None => Lv::Nil,
    };
    let mut variables = Object::new();
    for (k, v) in &ex.variables {
        variables.insert(KString::from(k.clone()), variable(v));
    }
    let subscription = i.subscription.as_ref().map_or(Lv::Nil, |sub| {
        obj([("Id", s(&sub.id)), ("Name", s(&sub.name))])
    });
    let user = i.user.as_ref().map_or(Lv::Nil, |u| {
        obj([
            ("Id", s(&u.id)),
            ("Email", s(&u.email)),
            ("FirstName", s(&u.first_name)),
            ("LastName", s(&u.last_name)),
        ])
    });
    let product = i
        .product
        .as_ref()
        .map_or(Lv::Nil, |p| obj([("Id", s(&p.0)), ("Name", s(&p.1))]));
    let mut c = Object::new();
    c.insert("Request".into(), request);
    c.insert("Response".into(), response);
    c.insert(
        "Api".into(),
        obj([
            ("Id", s(&i.api_id)),
            ("Name", s(&i.api_name)),
            ("Path", s(&i.api_path)),
            ("Version", opt(i.api_version.as_ref())),
            ("ServiceUrl", opt(i.service_url.as_ref())),
        ]),
    );
    c.insert(
        "Operation".into(),
        obj([
            ("Id", s(&i.operation_id)),
            ("Name", s(&i.operation_name)),
            ("Method", s(&i.operation_method)),
            ("UrlTemplate", s(&i.operation_url_template)),
        ]),
    );
    c.insert("Subscription".into(), subscription);
    c.insert("User".into(), user);
    c.insert("Product".into(), product);
    c.insert(
        "Deployment".into(),
        obj([("Region", s(&i.region)), ("GatewayId", s(&i.gateway_id))]),
    );
    c.insert("Variables".into(), Lv::Object(variables));
    c.insert("RequestId".into(), s(&i.request_id.to_string()));
    c
}

#[cfg(test)]
mod tests;
