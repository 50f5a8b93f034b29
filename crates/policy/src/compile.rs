//! From policy XML to a checked document: every element known, every attribute valid, every
//! expression compiled, every `{{named value}}` resolved — or a list of diagnostics with line and
//! column. This is the one compiler the control plane (on save), the gateway (on load) and
//! `gatehouse policy check` (offline) all run.

use std::collections::HashMap;
use std::fmt;

use crate::policies::{self, Step};
use crate::text::{self, PolicyText};
use crate::xml::{Attr, Element, Node, Pos, Source};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Section {
    Inbound,
    Backend,
    Outbound,
    OnError,
}

impl Section {
    pub const ALL: [Section; 4] = [Self::Inbound, Self::Backend, Self::Outbound, Self::OnError];

    pub fn name(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Backend => "backend",
            Self::Outbound => "outbound",
            Self::OnError => "on-error",
        }
    }

    pub fn index(self) -> usize {
        match self {
            Self::Inbound => 0,
            Self::Backend => 1,
            Self::Outbound => 2,
            Self::OnError => 3,
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// Where a policy document is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Global,
    Product,
    Api,
    Operation,
}

impl Scope {
    /// Every scope, innermost first.
    pub const ALL: [Scope; 4] = [Self::Operation, Self::Api, Self::Product, Self::Global];

    /// The scope called `name` (`global`, `product`, `api`, `operation`).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Global => "global",
            Self::Product => "product",
            Self::Api => "api",
            Self::Operation => "operation",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// A problem found in a policy document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub line: u32,
    pub column: u32,
    pub severity: Severity,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.severity {
            Severity::Error => "",
            Severity::Warning => "warning: ",
        };
        write!(f, "{}:{}: {kind}{}", self.line, self.column, self.message)
    }
}

/// Values for `{{name}}` references.
pub trait NamedValues {
    fn lookup(&self, name: &str) -> Option<String>;
}

impl NamedValues for HashMap<String, String> {
    fn lookup(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// No named values at all (offline checks).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoNamedValues;

impl NamedValues for NoNamedValues {
    fn lookup(&self, _: &str) -> Option<String> {
        None
    }
}

/// Policy fragments (`<fragment>…</fragment>` XML) by id, for `<include-fragment>`.
///
/// A fragment is compiled where it is included, in that document's scope and section. A
/// fragment may include another (Azure refuses that for now; this gateway allows it), up to
/// [`MAX_FRAGMENT_DEPTH`] deep; a fragment that includes itself, directly or through others, is
/// refused as a cycle.
pub trait Fragments {
    fn fragment(&self, id: &str) -> Option<&str>;
}

impl Fragments for HashMap<String, String> {
    fn fragment(&self, id: &str) -> Option<&str> {
        self.get(id).map(String::as_str)
    }
}

impl Fragments for std::collections::BTreeMap<String, String> {
    fn fragment(&self, id: &str) -> Option<&str> {
        self.get(id).map(String::as_str)
    }
}

/// No fragments at all.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoFragments;

impl Fragments for NoFragments {
    fn fragment(&self, _: &str) -> Option<&str> {
        None
    }
}

/// What exists besides the policy: the backends `set-backend-service backend-id`, the
/// certificates `authentication-certificate certificate-id` and the loggers
/// `log-to-eventhub logger-id` name. A literal id that does not
/// exist is a compile error where the compile can tell (the control plane, on save); elsewhere
/// ([`Unknown`]) it is found when a request runs.
pub trait Known {
    /// `Some(false)` when backend `id` certainly does not exist; `None`: cannot tell.
    fn backend(&self, id: &str) -> Option<bool>;
    /// `Some(false)` when certificate `id` certainly does not exist (or has no private key).
    fn certificate(&self, id: &str) -> Option<bool>;
    /// `Some(false)` when logger `id` (`log-to-eventhub`) certainly does not exist.
    fn logger(&self, id: &str) -> Option<bool> {
        let _ = id;
        None
    }
}

/// Nothing is known: every id is checked when a request runs.
#[derive(Debug, Default, Clone, Copy)]
pub struct Unknown;

impl Known for Unknown {
    fn backend(&self, _: &str) -> Option<bool> {
        None
    }

    fn certificate(&self, _: &str) -> Option<bool> {
        None
    }
}

/// How deep fragments may include fragments.
pub const MAX_FRAGMENT_DEPTH: usize = 8;

/// How strictly to compile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every `{{named value}}` must resolve (the control plane and gateways).
    Strict,
    /// Unresolved named values are warnings (`gatehouse policy check`).
    Offline,
}

/// The four sections of one scope's document, each a list of steps (`<base/>` included).
#[derive(Debug, Clone, Default)]
pub struct PolicyDocument {
    pub sections: [Vec<Step>; 4],
    /// Sections the document does not mention behave as `<base/>`.
    pub present: [bool; 4],
}

impl PolicyDocument {
    /// The document a scope has when it has none: `<base/>` everywhere.
    pub fn inherit() -> Self {
        Self {
            sections: [
                vec![Step::Base],
                vec![Step::Base],
                vec![Step::Base],
                vec![Step::Base],
            ],
            present: [true; 4],
        }
    }

    /// Azure's default global policy: forward every request.
    pub fn default_global() -> Self {
        let mut sections: [Vec<Step>; 4] = Default::default();
        sections[Section::Backend.index()] = vec![Step::ForwardRequest(Default::default())];
        Self {
            sections,
            present: [true; 4],
        }
    }

    pub fn section(&self, s: Section) -> &[Step] {
        &self.sections[s.index()]
    }

    /// The `/crossdomain.xml` a `<cross-domain>` of this (global) document's inbound section
    /// serves.
    pub fn cross_domain(&self) -> Option<&std::sync::Arc<str>> {
        self.section(Section::Inbound).iter().find_map(|s| match s {
            Step::CrossDomain(c) => Some(c.document()),
            _ => None,
        })
    }
}

/// The state of one compile: the source for positions, named values, diagnostics.
pub struct Cx<'a> {
    src: &'a Source<'a>,
    named: &'a dyn NamedValues,
    mode: Mode,
    pub scope: Scope,
    pub section: Section,
    pub diags: Vec<Diagnostic>,
    fragments: &'a dyn Fragments,
    /// The fragments being compiled, outermost first (empty in a policy document).
    including: Vec<String>,
    /// The backends and certificates that exist, where the compile can tell.
    pub known: &'a dyn Known,
    /// Where a value kept a `{{named value}}` unknown offline: its shape cannot be judged there.
    unresolved: Vec<Pos>,
}

impl<'a> Cx<'a> {
    /// Whether this is the inside of a policy fragment.
    pub fn in_fragment(&self) -> bool {
        !self.including.is_empty()
    }

    /// Compiles the policies of fragment `id` for an `<include-fragment>` at `at`. Problems
    /// inside the fragment are reported at `at`, with the fragment's own line and column.
    pub fn include(&mut self, id: &str, at: Pos) -> Option<Vec<Step>> {
        if let Some(start) = self.including.iter().position(|f| f == id) {
            let mut chain: Vec<&str> = self.including[start..].iter().map(String::as_str).collect();
            chain.push(id);
            self.error(
                at,
                format!(
                    "policy fragments include each other in a cycle: {}",
                    chain.join(" → ")
                ),
            );
            return None;
        }
        if self.including.len() >= MAX_FRAGMENT_DEPTH {
            self.error(
                at,
                format!("policy fragments are nested more than {MAX_FRAGMENT_DEPTH} deep"),
            );
            return None;
        }
        let Some(xml) = self.fragments.fragment(id) else {
            if self.mode == Mode::Offline {
                self.warning(
                    at,
                    format!("policy fragment '{id}' is not known here; it must exist when the policy is applied"),
                );
                return Some(Vec::new());
            }
            self.error(
                at,
                format!("policy fragment '{id}' does not exist; create it with PUT /mgmt/policy-fragments/{id}"),
            );
            return None;
        };
        let mut including = self.including.clone();
        including.push(id.to_owned());
        let (steps, diags) = fragment_steps(
            xml,
            (self.scope, self.section),
            self.named,
            self.fragments,
            self.mode,
            including,
            self.known,
        );
        for d in diags {
            self.diags.push(Diagnostic {
                line: at.line,
                column: at.column,
                severity: d.severity,
                message: format!(
                    "in policy fragment '{id}' at {}:{}: {}",
                    d.line, d.column, d.message
                ),
            });
        }
        steps
    }

    /// Offline, a value that kept an unknown `{{named value}}` is not refused for its shape (a
    /// URL, a number, a header name, a template): its errors become warnings, as the value is
    /// only known, and checked, where the policy is saved.
    fn defer_unresolved(&mut self) {
        if self.unresolved.is_empty() {
            return;
        }
        for d in &mut self.diags {
            if d.severity == Severity::Error
                && self
                    .unresolved
                    .iter()
                    .any(|p| p.line == d.line && p.column == d.column)
            {
                d.severity = Severity::Warning;
                d.message = format!(
                    "not checked offline, it depends on a named value: {}",
                    d.message
                );
            }
        }
    }

    pub fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.diags.push(Diagnostic {
            line: pos.line,
            column: pos.column,
            severity: Severity::Error,
            message: message.into(),
        });
    }

    pub fn warning(&mut self, pos: Pos, message: impl Into<String>) {
        self.diags.push(Diagnostic {
            line: pos.line,
            column: pos.column,
            severity: Severity::Warning,
            message: message.into(),
        });
    }

    /// Replaces `{{name}}` references with their values.
    fn substitute(&mut self, raw: &str, pos: Pos) -> Option<String> {
        if !raw.contains("{{") {
            return Some(raw.to_owned());
        }
        let mut out = String::with_capacity(raw.len());
        let mut rest = raw;
        let mut ok = true;
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else {
                out.push_str(&rest[start..]);
                rest = "";
                break;
            };
            let name = after[..end].trim();
            let valid = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !valid {
                // Not a reference (Liquid templates use {{ ... }} too): keep it.
                out.push_str(&rest[start..start + 2 + end + 2]);
            } else {
                match self.named.lookup(name) {
                    Some(v) => out.push_str(&v),
                    None if self.mode == Mode::Offline => {
                        self.warning(pos, format!("named value '{name}' is not defined here; it must exist when the policy is applied"));
                        self.unresolved.push(pos);
                        out.push_str(&rest[start..start + 2 + end + 2]);
                    }
                    None => {
                        self.error(pos, format!("named value '{name}' does not exist; create it with `gatehouse named-value set {name} VALUE`"));
                        ok = false;
                    }
                }
            }
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        ok.then_some(out)
    }

    /// Compiles a value written at `pos` (original byte offset `offset`).
    pub fn text(&mut self, raw: &str, pos: Pos, offset: usize) -> Option<PolicyText> {
        let before = self.unresolved.len();
        let substituted = self.substitute(raw, pos)?;
        match text::compile(&substituted) {
            Ok(t) => Some(t),
            // Offline, an expression that uses an unknown named value as code (its value is C#,
            // a quoted string or a number) is checked with a stand-in of any type there.
            Err(_)
                if self.unresolved.len() > before
                    && let Some(Ok(t)) =
                        text::with_stand_ins(&substituted).map(|s| text::compile(&s)) =>
            {
                Some(t)
            }
            Err(e) => {
                // Point at the offending token when the text was used as written.
                let at = if substituted == raw {
                    let lead = raw.len() - raw.trim_start().len();
                    self.src.pos(offset + lead + e.offset)
                } else {
                    pos
                };
                self.error(at, format!("invalid expression: {}", e.message));
                None
            }
        }
    }

    pub fn attr<'e>(&mut self, el: &'e Element, name: &str) -> Option<&'e Attr> {
        el.attr(name)
    }

    /// A required attribute holding text or an expression.
    pub fn req_text(&mut self, el: &Element, name: &str) -> Option<PolicyText> {
        match el.attr(name) {
            Some(a) => self.text(&a.value, a.pos, a.value_offset),
            None => {
                self.error(
                    el.pos,
                    format!("<{}> needs the attribute '{name}'", el.name),
                );
                None
            }
        }
    }

    pub fn opt_text(&mut self, el: &Element, name: &str) -> Option<PolicyText> {
        let a = el.attr(name)?;
        self.text(&a.value, a.pos, a.value_offset)
    }

    /// A literal attribute (named values allowed, expressions not).
    pub fn literal(&mut self, el: &Element, name: &str) -> Option<String> {
        let a = el.attr(name)?;
        let v = self.substitute(&a.value, a.pos)?;
        if text::looks_like_expr(&v) {
            self.error(
                a.pos,
                format!("'{name}' of <{}> does not accept an expression", el.name),
            );
            return None;
        }
        Some(v)
    }

    pub fn req_literal(&mut self, el: &Element, name: &str) -> Option<String> {
        if el.attr(name).is_none() {
            self.error(
                el.pos,
                format!("<{}> needs the attribute '{name}'", el.name),
            );
            return None;
        }
        self.literal(el, name)
    }

    pub fn bool_attr(&mut self, el: &Element, name: &str, default: bool) -> bool {
        let Some(v) = self.literal(el, name) else {
            return default;
        };
        match v.trim().to_ascii_lowercase().as_str() {
            "true" => true,
            "false" => false,
            _ => {
                let pos = el.attr(name).map_or(el.pos, |a| a.pos);
                self.error(pos, format!("'{name}' must be true or false, not '{v}'"));
                default
            }
        }
    }

    /// A whole-number literal attribute within `min..=max`.
    pub fn u64_attr(&mut self, el: &Element, name: &str, min: u64, max: u64) -> Option<u64> {
        let v = self.literal(el, name)?;
        let pos = el.attr(name).map_or(el.pos, |a| a.pos);
        match v.trim().parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.error(
                    pos,
                    format!("'{name}' must be a whole number from {min} to {max}, not '{v}'"),
                );
                None
            }
        }
    }

    /// A literal attribute that must be one of `options` (case-insensitive).
    pub fn choice(
        &mut self,
        el: &Element,
        name: &str,
        options: &[&'static str],
        default: &'static str,
    ) -> &'static str {
        let Some(v) = self.literal(el, name) else {
            return default;
        };
        match options.iter().find(|o| o.eq_ignore_ascii_case(v.trim())) {
            Some(o) => o,
            None => {
                let pos = el.attr(name).map_or(el.pos, |a| a.pos);
                self.error(
                    pos,
                    format!("'{name}' must be one of {}, not '{v}'", options.join(", ")),
                );
                default
            }
        }
    }

    /// Reports attributes not in `allowed`.
    pub fn allow_attrs(&mut self, el: &Element, allowed: &[&str]) {
        for a in &el.attrs {
            if !allowed.contains(&a.name.as_str()) && !a.name.starts_with("xmlns") {
                let known = if allowed.is_empty() {
                    "it takes none".to_owned()
                } else {
                    format!("known: {}", allowed.join(", "))
                };
                self.error(
                    a.pos,
                    format!("<{}> has no attribute '{}' ({known})", el.name, a.name),
                );
            }
        }
    }

    /// Reports any child element or text.
    pub fn no_children(&mut self, el: &Element) {
        if let Some(child) = el.children.first() {
            let pos = match child {
                Node::Element(e) => e.pos,
                Node::Text(_, p, _) => *p,
            };
            self.error(pos, format!("<{}> takes no content", el.name));
        }
    }

    /// Reports child elements other than `allowed`.
    pub fn allow_children(&mut self, el: &Element, allowed: &[&str]) {
        for c in &el.children {
            match c {
                Node::Element(e) if !allowed.contains(&e.name.as_str()) => {
                    self.error(
                        e.pos,
                        format!(
                            "<{}> cannot contain <{}> (allowed: {})",
                            el.name,
                            e.name,
                            allowed.join(", ")
                        ),
                    );
                }
                Node::Text(_, p, _) => {
                    self.error(*p, format!("<{}> cannot contain text", el.name));
                }
                _ => {}
            }
        }
    }

    /// The text content of an element (named values and expressions allowed).
    pub fn content(&mut self, el: &Element) -> Option<PolicyText> {
        match el.text() {
            Some((t, pos, off)) => {
                let before = self.unresolved.len();
                let compiled = self.text(t.trim(), pos, off + (t.len() - t.trim_start().len()));
                // A policy judges its content's shape (a URL, an address) at the element:
                // offline, that judgement waits for the named value too.
                if self.unresolved.len() > before {
                    self.unresolved.push(el.pos);
                }
                compiled
            }
            None if el.children.is_empty() => Some(PolicyText::literal("")),
            None => {
                self.error(
                    el.pos,
                    format!("<{}> must hold text, not elements", el.name),
                );
                None
            }
        }
    }

    /// Compiles the policies inside `el` (for `choose`, `when`, `retry`, …).
    pub fn steps(&mut self, el: &Element) -> Vec<Step> {
        let mut out = Vec::new();
        for c in &el.children {
            match c {
                Node::Element(e) => {
                    if let Some(step) = policies::compile(e, self) {
                        out.push(step);
                    }
                }
                Node::Text(_, p, _) => self.error(*p, format!("<{}> cannot contain text", el.name)),
            }
        }
        out
    }
}

/// Compiles one scope's policy document (without policy fragments; see [`compile_with`]).
pub fn compile(
    xml: &str,
    scope: Scope,
    named: &dyn NamedValues,
    mode: Mode,
) -> (Option<PolicyDocument>, Vec<Diagnostic>) {
    compile_with(xml, scope, named, &NoFragments, mode)
}

/// The policies of a fragment's XML, compiled for `scope` and `section`.
fn fragment_steps(
    xml: &str,
    (scope, section): (Scope, Section),
    named: &dyn NamedValues,
    fragments: &dyn Fragments,
    mode: Mode,
    including: Vec<String>,
    known: &dyn Known,
) -> (Option<Vec<Step>>, Vec<Diagnostic>) {
    let src = Source::new(xml);
    let root = match src.parse() {
        Ok(r) => r,
        Err(e) => {
            return (
                None,
                vec![Diagnostic {
                    line: e.pos.line,
                    column: e.pos.column,
                    severity: Severity::Error,
                    message: e.message,
                }],
            );
        }
    };
    let mut cx = Cx {
        src: &src,
        named,
        mode,
        scope,
        section,
        diags: Vec::new(),
        fragments,
        including,
        known,
        unresolved: Vec::new(),
    };
    if root.name != "fragment" {
        cx.error(
            root.pos,
            format!(
                "the root element of a policy fragment must be <fragment>, not <{}>",
                root.name
            ),
        );
        return (None, cx.diags);
    }
    cx.allow_attrs(&root, &[]);
    let steps = cx.steps(&root);
    cx.defer_unresolved();
    let failed = cx.diags.iter().any(|d| d.severity == Severity::Error);
    (if failed { None } else { Some(steps) }, cx.diags)
}

/// Checks a policy fragment on its own, as the control plane does when it is saved: it must be
/// `<fragment>` holding policies that compile in at least one section at some scope (where it
/// is included decides the rest). Returns the problems of the closest fit.
pub fn check_fragment(
    id: &str,
    xml: &str,
    named: &dyn NamedValues,
    fragments: &dyn Fragments,
    mode: Mode,
) -> Vec<Diagnostic> {
    check_fragment_in(id, xml, &Scope::ALL, named, fragments, mode)
}

/// [`check_fragment`], trying only `scopes`.
fn check_fragment_in(
    id: &str,
    xml: &str,
    scopes: &[Scope],
    named: &dyn NamedValues,
    fragments: &dyn Fragments,
    mode: Mode,
) -> Vec<Diagnostic> {
    let mut best: Option<Vec<Diagnostic>> = None;
    for &scope in scopes {
        for section in Section::ALL {
            let (steps, diags) = fragment_steps(
                xml,
                (scope, section),
                named,
                fragments,
                mode,
                vec![id.to_owned()],
                &Unknown,
            );
            if steps.is_some() {
                return diags;
            }
            let errors =
                |d: &[Diagnostic]| d.iter().filter(|d| d.severity == Severity::Error).count();
            if best.as_ref().is_none_or(|b| errors(&diags) < errors(b)) {
                best = Some(diags);
            }
        }
    }
    best.unwrap_or_default()
}

/// What `gatehouse policy check` runs on one file: a policy document (root `<policies>`) or a
/// policy fragment (root `<fragment>`), offline (no named values or fragments known). With
/// `scope`, that scope's rules apply. Without, where the document will be applied is unknown, so
/// a rule that fails at some scopes but not at others (`<quota>` only at product scope, for one)
/// is a warning naming the scopes where it fails; what fails everywhere is an error.
pub fn check_offline(xml: &str, scope: Option<Scope>) -> Vec<Diagnostic> {
    let fragment = Source::new(xml)
        .parse()
        .is_ok_and(|root| root.name == "fragment");
    let scopes: Vec<Scope> = scope.map_or_else(|| Scope::ALL.to_vec(), |s| vec![s]);
    let runs: Vec<(Scope, Vec<Diagnostic>)> = scopes
        .iter()
        .map(|&s| {
            let diags = if fragment {
                check_fragment_in(
                    "fragment",
                    xml,
                    &[s],
                    &NoNamedValues,
                    &NoFragments,
                    Mode::Offline,
                )
            } else {
                compile(xml, s, &NoNamedValues, Mode::Offline).1
            };
            (s, diags)
        })
        .collect();
    let mut out: Vec<Diagnostic> = Vec::new();
    // Positions whose errors depend on the scope: one warning each.
    let mut scoped: Vec<(u32, u32)> = Vec::new();
    for (_, diags) in &runs {
        for d in diags {
            let at = (d.line, d.column);
            let failing: Vec<&str> = runs
                .iter()
                .filter(|(_, ds)| {
                    ds.iter()
                        .any(|x| x.severity == Severity::Error && (x.line, x.column) == at)
                })
                .map(|(s, _)| s.name())
                .collect();
            if d.severity == Severity::Warning || failing.len() == runs.len() {
                if !out.contains(d) {
                    out.push(d.clone());
                }
            } else if !scoped.contains(&at) {
                scoped.push(at);
                out.push(Diagnostic {
                    severity: Severity::Warning,
                    message: format!(
                        "{} (fails at {} scope; where the policy is applied decides, or pass --scope)",
                        d.message,
                        failing.join(", ")
                    ),
                    ..d.clone()
                });
            }
        }
    }
    out.sort_by_key(|d| (d.line, d.column));
    out
}

/// Compiles one scope's policy document, inlining the `<include-fragment>`s from `fragments`.
pub fn compile_with(
    xml: &str,
    scope: Scope,
    named: &dyn NamedValues,
    fragments: &dyn Fragments,
    mode: Mode,
) -> (Option<PolicyDocument>, Vec<Diagnostic>) {
    compile_checked(xml, scope, named, fragments, mode, &Unknown)
}

/// [`compile_with`], refusing literal backend and certificate ids that `known` says do not
/// exist.
pub fn compile_checked(
    xml: &str,
    scope: Scope,
    named: &dyn NamedValues,
    fragments: &dyn Fragments,
    mode: Mode,
    known: &dyn Known,
) -> (Option<PolicyDocument>, Vec<Diagnostic>) {
    let src = Source::new(xml);
    let root = match src.parse() {
        Ok(r) => r,
        Err(e) => {
            return (
                None,
                vec![Diagnostic {
                    line: e.pos.line,
                    column: e.pos.column,
                    severity: Severity::Error,
                    message: e.message,
                }],
            );
        }
    };
    let mut cx = Cx {
        src: &src,
        named,
        mode,
        scope,
        section: Section::Inbound,
        diags: Vec::new(),
        fragments,
        including: Vec::new(),
        known,
        unresolved: Vec::new(),
    };
    let mut doc = PolicyDocument::default();
    if root.name != "policies" {
        cx.error(
            root.pos,
            format!("the root element must be <policies>, not <{}>", root.name),
        );
        return (None, cx.diags);
    }
    cx.allow_attrs(&root, &[]);
    for child in &root.children {
        let el = match child {
            Node::Element(e) => e,
            Node::Text(_, p, _) => {
                cx.error(*p, "<policies> cannot contain text");
                continue;
            }
        };
        let Some(section) = Section::from_name(&el.name) else {
            cx.error(
                el.pos,
                format!(
                    "<policies> holds <inbound>, <backend>, <outbound> and <on-error>, not <{}>",
                    el.name
                ),
            );
            continue;
        };
        if doc.present[section.index()] {
            cx.error(el.pos, format!("<{}> appears twice", el.name));
            continue;
        }
        cx.allow_attrs(el, &[]);
        cx.section = section;
        doc.present[section.index()] = true;
        doc.sections[section.index()] = cx.steps(el);
    }
    for s in Section::ALL {
        if !doc.present[s.index()] {
            doc.sections[s.index()] = vec![Step::Base];
        }
    }
    cx.defer_unresolved();
    let failed = cx.diags.iter().any(|d| d.severity == Severity::Error);
    (if failed { None } else { Some(doc) }, cx.diags)
}

#[cfg(test)]
mod tests;
