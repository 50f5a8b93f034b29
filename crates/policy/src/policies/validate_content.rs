//! `<validate-content>`: checks the size and content type of the request body (inbound) or the
//! response body (outbound, on-error), and checks JSON bodies against the schema the API's
//! imported OpenAPI document gives the operation's request (or the response's status), with
//! [`crate::schema`].
//!
//! Each check has an action, as [`super::validation`] runs them: `ignore` does nothing,
//! `detect` logs the problem and appends it to the `errors-variable-name` variable, `prevent`
//! also stops the request: the client gets Azure's 400 with the first problem (a request) or
//! Azure's 502 (a response), and the pipeline goes to `on-error` with
//! `context.LastError.Source` `validate-content`.

use http::StatusCode;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};

use super::check_header::json_error;
use super::on_response;
use super::validation::{self, Action, Finding, literal_action as action};
use crate::compile::Cx;
use crate::exchange::{Exchange, OperationDocument};
use crate::run::{Flow, PolicyError};
use crate::schema::SchemaRef;
use crate::xml::Element;

/// Largest `max-size` accepted: Azure's own limit.
pub const MAX_SIZE_LIMIT: u64 = 4 * 1024 * 1024;

/// One `<content>`: what to do with bodies of a media type.
#[derive(Debug, Clone)]
struct Content {
    /// Lowercase media type without parameters; empty for any type.
    media: String,
    action: Action,
    /// `validate-as="json"`: checked against the schema. Other formats are only size-checked.
    json: bool,
    allow_additional: Option<bool>,
}

/// `<content-type-map>`: rewrites the content type a body is judged by.
#[derive(Debug, Clone, Default)]
struct TypeMap {
    any: Option<String>,
    missing: Option<String>,
    /// `(from, to)` pairs, lowercase; `from` empty matches any.
    types: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct ValidateContent {
    pub response: bool,
    unspecified: Action,
    max_size: u64,
    size_action: Action,
    errors_variable: Option<String>,
    contents: Vec<Content>,
    map: TypeMap,
}

/// A problem found, with the action it gets.
struct Problem {
    action: Action,
    /// Azure's name for the kind of problem (`context.LastError.Reason`).
    reason: &'static str,
    /// Azure's validation rule (`SizeLimit`, `Unspecified`, `IncorrectMessage`).
    rule: &'static str,
    /// The content type concerned, when known.
    media: String,
    message: String,
}

fn media_of(v: &str) -> String {
    v.split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

impl ValidateContent {
    pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Self> {
        cx.allow_attrs(
            el,
            &[
                "unspecified-content-type-action",
                "max-size",
                "size-exceeded-action",
                "errors-variable-name",
            ],
        );
        cx.allow_children(el, &["content", "content-type-map"]);
        for required in [
            "unspecified-content-type-action",
            "max-size",
            "size-exceeded-action",
        ] {
            if el.attr(required).is_none() {
                cx.error(
                    el.pos,
                    format!("<validate-content> needs the attribute '{required}'"),
                );
            }
        }
        let unspecified = action(cx, el, "unspecified-content-type-action", Action::Ignore);
        let size_action = action(cx, el, "size-exceeded-action", Action::Ignore);
        let max_size = cx.u64_attr(el, "max-size", 0, MAX_SIZE_LIMIT);
        let errors_variable = validation::errors_variable(cx, el);
        let mut contents = Vec::new();
        let mut map = TypeMap::default();
        for child in el.elements() {
            if child.name == "content-type-map" {
                cx.allow_attrs(
                    child,
                    &["any-content-type-value", "missing-content-type-value"],
                );
                cx.allow_children(child, &["type"]);
                map.any = cx
                    .literal(child, "any-content-type-value")
                    .map(|v| media_of(&v));
                map.missing = cx
                    .literal(child, "missing-content-type-value")
                    .map(|v| media_of(&v));
                for t in child.elements() {
                    cx.allow_attrs(t, &["from", "when", "to"]);
                    cx.no_children(t);
                    if t.attr("when").is_some() {
                        cx.warning(
                            t.pos,
                            "'when' of <type> is not evaluated by this gateway; the mapping applies whenever 'from' matches",
                        );
                    }
                    let from = cx
                        .literal(t, "from")
                        .map(|v| media_of(&v))
                        .unwrap_or_default();
                    let Some(to) = cx.req_literal(t, "to") else {
                        continue;
                    };
                    map.types.push((from, media_of(&to)));
                }
                continue;
            }
            cx.allow_attrs(
                child,
                &[
                    "type",
                    "validate-as",
                    "schema-id",
                    "schema-ref",
                    "action",
                    "allow-additional-properties",
                    "case-insensitive-property-names",
                ],
            );
            cx.no_children(child);
            let media = cx
                .literal(child, "type")
                .map(|v| media_of(&v))
                .unwrap_or_default();
            let format = cx.choice(child, "validate-as", &["json", "xml", "soap"], "json");
            if child.attr("validate-as").is_none() {
                cx.error(
                    child.pos,
                    "<content> needs the attribute 'validate-as' (json, xml or soap)",
                );
            }
            let json = format == "json";
            if !json {
                cx.warning(
                    child.pos,
                    format!("validate-as=\"{format}\" bodies are checked for size and content type only; their schema is not checked by this gateway"),
                );
            }
            let own_schema =
                child.attr("schema-id").is_some() || child.attr("schema-ref").is_some();
            if own_schema {
                cx.warning(
                    child.pos,
                    "schema-id names a schema resource, which this gateway does not keep; bodies of this type are checked for size only",
                );
            }
            let allow_additional = child
                .attr("allow-additional-properties")
                .map(|_| cx.bool_attr(child, "allow-additional-properties", true));
            let act = action(cx, child, "action", Action::Ignore);
            if child.attr("action").is_none() {
                cx.error(
                    child.pos,
                    "<content> needs the attribute 'action' (ignore, detect or prevent)",
                );
            }
            contents.push(Content {
                media,
                action: act,
                json: json && !own_schema,
                allow_additional,
            });
        }
        Some(Self {
            response: on_response(cx.section),
            unspecified,
            max_size: max_size?,
            size_action,
            errors_variable,
            contents,
            map,
        })
    }

    pub fn run(&self, ex: &mut Exchange) -> Result<Flow, PolicyError> {
        let problems = self.check(ex);
        if problems.is_empty() {
            return Ok(Flow::Continue);
        }
        let what = if self.response { "response" } else { "request" };
        let findings: Vec<Finding> = problems
            .iter()
            .map(|p| Finding {
                name: p.media.clone(),
                kind: if self.response {
                    "ResponseBody"
                } else {
                    "RequestBody"
                },
                rule: p.rule,
                details: format!("{} {}", capitalised(what), p.message),
                public: format!("{} {}", capitalised(what), p.message),
                action: p.action,
            })
            .collect();
        let errors_variable = self.errors_variable.as_deref();
        let Some(first) = validation::record(ex, "validate-content", errors_variable, &findings)
        else {
            return Ok(Flow::Continue);
        };
        let reason = problems
            .iter()
            .find(|p| p.action == Action::Prevent)
            .map_or("InvalidContent", |p| p.reason);
        let answer = if self.response {
            // The backend's body is none of the client's business: Azure's fixed 502.
            crate::Answer::InvalidResponse
        } else {
            // Like Azure, the answer says what is wrong with the client's own body.
            ex.error_response = Some(json_error(StatusCode::BAD_REQUEST, &first.public));
            crate::Answer::InvalidContent
        };
        Err(PolicyError::new(
            "validate-content",
            reason,
            first.details.clone(),
            answer,
        ))
    }

    fn check(&self, ex: &Exchange) -> Vec<Problem> {
        let (headers, body) = if self.response {
            match &ex.response {
                Some(r) => (&r.headers, r.body.as_deref()),
                None => return Vec::new(),
            }
        } else {
            (&ex.request.headers, ex.request.body.as_deref())
        };
        let body = body.unwrap_or_default();
        let mut out = Vec::new();
        let declared = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let size = declared.unwrap_or(0).max(body.len() as u64);
        if size > self.max_size {
            out.push(Problem {
                action: self.size_action,
                rule: "SizeLimit",
                media: String::new(),
                reason: if self.response {
                    "ResponseBodyTooLarge"
                } else {
                    "RequestBodyTooLarge"
                },
                message: format!(
                    "body is {size} bytes, more than the {} allowed",
                    self.max_size
                ),
            });
            if self.size_action == Action::Prevent {
                return out;
            }
        }
        if body.is_empty() {
            return out;
        }
        let header = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
        let media = match (header.map(media_of), &self.map) {
            (
                None,
                TypeMap {
                    missing: Some(m), ..
                },
            ) => m.clone(),
            (_, TypeMap { any: Some(a), .. }) => a.clone(),
            (Some(m), map) => map
                .types
                .iter()
                .find(|(from, _)| from.is_empty() || *from == m)
                .map_or(m, |(_, to)| to.clone()),
            (None, _) => String::new(),
        };
        let Some(content) = self
            .contents
            .iter()
            .find(|c| c.media == media)
            .or_else(|| self.contents.iter().find(|c| c.media.is_empty()))
        else {
            out.push(Problem {
                action: self.unspecified,
                rule: "Unspecified",
                media: media.clone(),
                reason: "UnspecifiedContentType",
                message: if media.is_empty() {
                    "body has no content type".to_owned()
                } else {
                    format!("body's content type '{media}' is not specified for validation")
                },
            });
            return out;
        };
        if !content.json || content.action == Action::Ignore {
            return out;
        }
        let Some(doc) = ex.info.examples.as_deref() else {
            return out;
        };
        let Some(schema) = self.schema_for(doc, ex, &media) else {
            return out;
        };
        let value: serde_json::Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                out.push(Problem {
                    action: content.action,
                    rule: "IncorrectMessage",
                    media: media.clone(),
                    reason: "InvalidContent",
                    message: format!("body is not valid JSON: {e}"),
                });
                return out;
            }
        };
        let violations = doc
            .schemas
            .validate(schema, &value, content.allow_additional);
        if !violations.is_empty() {
            let list: Vec<String> = violations.iter().map(ToString::to_string).collect();
            out.push(Problem {
                action: content.action,
                rule: "IncorrectMessage",
                media: media.clone(),
                reason: "InvalidContent",
                message: format!(
                    "body does not conform to the schema of '{media}': {}",
                    list.join("; ")
                ),
            });
        }
        out
    }

    /// The schema of the body being checked: the request's for `media`, or the response's for
    /// its status and `media`. A schema declared for JSON in general (`application/json`)
    /// also serves `…+json` types.
    fn schema_for(&self, doc: &OperationDocument, ex: &Exchange, media: &str) -> Option<SchemaRef> {
        let list: &[(String, SchemaRef)] = if self.response {
            doc.response_schemas(ex.response.as_ref()?.status.as_u16())?
        } else {
            &doc.request
        };
        list.iter()
            .find(|(m, _)| m == media)
            .or_else(|| {
                list.iter()
                    .find(|(m, _)| m == "*/*" || m == "application/*")
            })
            .or_else(|| {
                media
                    .ends_with("+json")
                    .then(|| list.iter().find(|(m, _)| m == "application/json"))
                    .flatten()
            })
            .map(|(_, s)| *s)
    }
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
