//! `<validate-parameters>` (inbound): checks the request's path, query and header parameters
//! against the parameters the operation's imported OpenAPI document declares
//! ([`crate::parameters`], compiled with the configuration).
//!
//! A declared parameter gets `specified-parameter-action`: it must be present when required,
//! come once unless it is an array written as repeats, parse as its type and conform to its
//! schema. A parameter the document does not declare gets `unspecified-parameter-action`.
//! `<headers>`, `<query>` and `<path>` override both for their location, and their
//! `<parameter name="" action=""/>` for one name. The actions run as [`super::validation`]
//! says. An operation the document does not describe is not checked.
//!
//! Headers that are not parameters in OpenAPI's sense are never "unspecified": those OpenAPI
//! describes elsewhere (`Accept`, `Content-Type`, `Authorization`), the body's framing
//! (`Content-Length`, `Transfer-Encoding`), and those this gateway adds to every request
//! (`X-Forwarded-For`, `X-Forwarded-Proto`, `X-Forwarded-Host`, `X-Request-Id`). The
//! subscription key, header or query parameter, is the gateway's and never seen here.

use std::borrow::Cow;

use gatehouse_model::snapshot::ParameterLocation;

use super::set_query_parameter::decode_component;
use super::validation::{self, Action, ActionSpec, Finding};
use crate::compile::{Cx, Section};
use crate::exchange::{Exchange, OperationDocument};
use crate::parameters::{Parameter, location_name};
use crate::run::{Budget, Flow, PolicyError};
use crate::text::PolicyText;
use crate::xml::Element;

const NAME: &str = "validate-parameters";

/// Request headers that are never unspecified parameters (lowercase).
const NOT_PARAMETERS: [&str; 9] = [
    "accept",
    "content-type",
    "authorization",
    "content-length",
    "transfer-encoding",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-request-id",
];

/// `<headers>`, `<query>` or `<path>`.
#[derive(Debug, Clone, Default)]
struct Location {
    specified: Option<ActionSpec>,
    unspecified: Option<ActionSpec>,
    /// `<parameter name="" action=""/>`, in order.
    parameters: Vec<(String, ActionSpec)>,
}

/// The actions of one location for one run.
struct Actions<'l> {
    location: &'l Location,
    specified: Action,
    unspecified: Action,
    /// Header names compare without case.
    header: bool,
}

impl<'l> Actions<'l> {
    /// The location's actions, falling back on `defaults` (specified, unspecified).
    fn resolve(
        location: &'l Location,
        header: bool,
        defaults: (Action, Action),
        ex: &Exchange,
        budget: &mut Budget,
    ) -> Result<Self, PolicyError> {
        Ok(Self {
            location,
            specified: match &location.specified {
                Some(a) => a.resolve(ex, budget)?,
                None => defaults.0,
            },
            unspecified: match &location.unspecified {
                Some(a) => a.resolve(ex, budget)?,
                None => defaults.1,
            },
            header,
        })
    }

    /// The action for `name`: its `<parameter>`'s, else the location's.
    fn of(
        &self,
        name: &str,
        declared: bool,
        ex: &Exchange,
        budget: &mut Budget,
    ) -> Result<Action, PolicyError> {
        let own = self.location.parameters.iter().find(|(n, _)| {
            if self.header {
                n.eq_ignore_ascii_case(name)
            } else {
                n == name
            }
        });
        match own {
            Some((_, a)) => a.resolve(ex, budget),
            None if declared => Ok(self.specified),
            None => Ok(self.unspecified),
        }
    }

    /// Whether nothing at all is checked here.
    fn idle(&self) -> bool {
        self.specified == Action::Ignore
            && self.unspecified == Action::Ignore
            && self
                .location
                .parameters
                .iter()
                .all(|(_, a)| matches!(a, ActionSpec::Fixed(Action::Ignore)))
    }
}

#[derive(Debug, Clone)]
pub struct ValidateParameters {
    specified: ActionSpec,
    unspecified: ActionSpec,
    errors_variable: Option<String>,
    headers: Location,
    query: Location,
    path: Location,
    section: Section,
}

impl ValidateParameters {
    pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Self> {
        cx.allow_attrs(
            el,
            &[
                "specified-parameter-action",
                "unspecified-parameter-action",
                "errors-variable-name",
            ],
        );
        cx.allow_children(el, &["headers", "query", "path"]);
        let specified = ActionSpec::required(cx, el, "specified-parameter-action");
        let unspecified = ActionSpec::required(cx, el, "unspecified-parameter-action");
        let errors_variable = validation::errors_variable(cx, el);
        let mut out = Self {
            specified,
            unspecified,
            errors_variable,
            headers: Location::default(),
            query: Location::default(),
            path: Location::default(),
            section: cx.section,
        };
        let mut seen: Vec<&str> = Vec::new();
        for child in el.elements() {
            let name = child.name.as_str();
            if seen.contains(&name) {
                cx.error(
                    child.pos,
                    format!("<{name}> appears twice in <validate-parameters>; merge them"),
                );
                continue;
            }
            seen.push(name);
            let location = location(child, cx);
            match name {
                "headers" => out.headers = location,
                "query" => out.query = location,
                _ => out.path = location,
            }
        }
        Some(out)
    }

    pub fn texts(&self) -> Vec<&PolicyText> {
        let locations = [&self.headers, &self.query, &self.path];
        [&self.specified, &self.unspecified]
            .into_iter()
            .chain(
                locations
                    .iter()
                    .flat_map(|l| l.specified.iter().chain(l.unspecified.iter())),
            )
            .chain(
                locations
                    .iter()
                    .flat_map(|l| l.parameters.iter().map(|(_, a)| a)),
            )
            .filter_map(ActionSpec::text)
            .collect()
    }

    pub fn run(&self, ex: &mut Exchange, budget: &mut Budget) -> Result<Flow, PolicyError> {
        let Some(doc) = ex.info.examples.clone().filter(|d| d.described) else {
            return Ok(Flow::Continue);
        };
        let specified = self.specified.resolve(ex, budget)?;
        let unspecified = self.unspecified.resolve(ex, budget)?;
        let actions = |location, header, ex: &Exchange, b: &mut Budget| {
            Actions::resolve(location, header, (specified, unspecified), ex, b)
        };
        let mut findings = Vec::new();
        let path = actions(&self.path, false, ex, budget)?;
        if !path.idle() {
            check_path(&doc, &path, ex, budget, &mut findings)?;
        }
        let query = actions(&self.query, false, ex, budget)?;
        if !query.idle() {
            check_query(&doc, &query, ex, budget, &mut findings)?;
        }
        let headers = actions(&self.headers, true, ex, budget)?;
        if !headers.idle() {
            check_headers(&doc, &headers, ex, budget, &mut findings)?;
        }
        match validation::record(ex, NAME, self.errors_variable.as_deref(), &findings) {
            Some(first) => validation::prevent(ex, NAME, self.section, first),
            None => Ok(Flow::Continue),
        }
    }
}

/// Compiles `<headers>`, `<query>` or `<path>`.
fn location(el: &Element, cx: &mut Cx<'_>) -> Location {
    cx.allow_attrs(
        el,
        &["specified-parameter-action", "unspecified-parameter-action"],
    );
    cx.allow_children(el, &["parameter"]);
    if el.name == "path"
        && let Some(a) = el.attr("unspecified-parameter-action")
    {
        cx.warning(
            a.pos,
            "a path parameter is always in the URL template, so 'unspecified-parameter-action' of <path> has no effect",
        );
    }
    let mut out = Location {
        specified: ActionSpec::compile(cx, el, "specified-parameter-action"),
        unspecified: ActionSpec::compile(cx, el, "unspecified-parameter-action"),
        parameters: Vec::new(),
    };
    for p in el.elements() {
        cx.allow_attrs(p, &["name", "action"]);
        cx.no_children(p);
        let name = cx.req_literal(p, "name");
        let action = ActionSpec::required(cx, p, "action");
        if let Some(name) = name.filter(|n| !n.trim().is_empty()) {
            out.parameters.push((name.trim().to_owned(), action));
        }
    }
    out
}

fn declared(doc: &OperationDocument, at: ParameterLocation) -> impl Iterator<Item = &Parameter> {
    doc.parameters.iter().filter(move |p| p.location == at)
}

/// Checks one declared parameter's texts, adding what is wrong to `findings`.
fn check_declared(
    doc: &OperationDocument,
    p: &Parameter,
    texts: &[Cow<'_, str>],
    action: Action,
    kind: &'static str,
    findings: &mut Vec<Finding>,
) {
    if let Err(fault) = p.check(&doc.schemas, texts) {
        findings.push(validation::parameter_finding(
            &fault,
            location_name(p.location),
            &p.name,
            kind,
            action,
        ));
    }
}

fn check_path(
    doc: &OperationDocument,
    actions: &Actions<'_>,
    ex: &Exchange,
    budget: &mut Budget,
    findings: &mut Vec<Finding>,
) -> Result<(), PolicyError> {
    for p in declared(doc, ParameterLocation::Path) {
        let action = actions.of(&p.name, true, ex, budget)?;
        if action == Action::Ignore {
            continue;
        }
        let texts: Vec<Cow<'_, str>> = ex
            .info
            .matched
            .iter()
            .filter(|(n, _)| **n == *p.name)
            .map(|(_, v)| {
                if v.contains('%') {
                    Cow::Owned(decode_component(v, false))
                } else {
                    Cow::Borrowed(v.as_str())
                }
            })
            .collect();
        check_declared(doc, p, &texts, action, "PathParameter", findings);
    }
    Ok(())
}

fn check_query(
    doc: &OperationDocument,
    actions: &Actions<'_>,
    ex: &Exchange,
    budget: &mut Budget,
    findings: &mut Vec<Finding>,
) -> Result<(), PolicyError> {
    let pairs: Vec<(Cow<'_, str>, Cow<'_, str>)> = ex
        .request
        .query
        .as_deref()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            (decoded(n), decoded(v))
        })
        .collect();
    for p in declared(doc, ParameterLocation::Query) {
        let action = actions.of(&p.name, true, ex, budget)?;
        if action == Action::Ignore {
            continue;
        }
        let texts: Vec<Cow<'_, str>> = pairs
            .iter()
            .filter(|(n, _)| p.is(n))
            .map(|(_, v)| Cow::Borrowed(v.as_ref()))
            .collect();
        check_declared(doc, p, &texts, action, "QueryParameter", findings);
    }
    let mut reported: Vec<&str> = Vec::new();
    for (name, _) in &pairs {
        if reported.contains(&name.as_ref())
            || declared(doc, ParameterLocation::Query).any(|p| p.is(name))
        {
            continue;
        }
        reported.push(name);
        let action = actions.of(name, false, ex, budget)?;
        if action != Action::Ignore {
            findings.push(validation::unspecified_finding(
                "query parameter",
                name,
                "QueryParameter",
                action,
            ));
        }
    }
    Ok(())
}

/// A query component, decoded when it needs to be.
fn decoded(text: &str) -> Cow<'_, str> {
    if text.contains(['%', '+']) {
        Cow::Owned(decode_component(text, true))
    } else {
        Cow::Borrowed(text)
    }
}

fn check_headers(
    doc: &OperationDocument,
    actions: &Actions<'_>,
    ex: &Exchange,
    budget: &mut Budget,
    findings: &mut Vec<Finding>,
) -> Result<(), PolicyError> {
    let headers = &ex.request.headers;
    for p in declared(doc, ParameterLocation::Header) {
        let action = actions.of(&p.name, true, ex, budget)?;
        if action == Action::Ignore {
            continue;
        }
        let texts: Vec<Cow<'_, str>> = headers
            .get_all(p.name.as_str())
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()))
            .collect();
        check_declared(doc, p, &texts, action, "RequestHeader", findings);
    }
    for name in headers.keys() {
        let name = name.as_str();
        if NOT_PARAMETERS.contains(&name)
            || declared(doc, ParameterLocation::Header).any(|p| p.is(name))
        {
            continue;
        }
        let action = actions.of(name, false, ex, budget)?;
        if action != Action::Ignore {
            findings.push(validation::unspecified_finding(
                "header",
                name,
                "RequestHeader",
                action,
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
