//! `<trace source="…" severity="verbose|information|error"><message>…</message>
//! <metadata name="…" value="…"/></trace>`: writes a message to the gateway's log, with the
//! request id so it can be found again, and, when tracing is on, as an event on the request's
//! span of the section it runs in.

use crate::compile::Cx;
use crate::exchange::Exchange;
use crate::run::{Budget, Flow, Io, PolicyError};
use crate::text::PolicyText;
use crate::xml::Element;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Verbose,
    Information,
    Error,
}

/// What a `trace` policy hands to the gateway's traces.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceEvent {
    pub source: String,
    pub severity: Severity,
    pub message: String,
    pub metadata: Vec<(String, String)>,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Verbose => "verbose",
            Self::Information => "information",
            Self::Error => "error",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Trace {
    pub source: String,
    pub severity: Severity,
    pub message: PolicyText,
    pub metadata: Vec<(String, PolicyText)>,
}

impl Trace {
    pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Self> {
        cx.allow_attrs(el, &["source", "severity"]);
        // The older form holds the message as the element's own text.
        let plain = el.elements().next().is_none() && el.text().is_some();
        if !plain {
            cx.allow_children(el, &["message", "metadata"]);
        }
        let source = cx.req_literal(el, "source")?;
        let severity = match cx.choice(
            el,
            "severity",
            &["verbose", "information", "error"],
            "verbose",
        ) {
            "information" => Severity::Information,
            "error" => Severity::Error,
            _ => Severity::Verbose,
        };
        let mut message = if plain { Some(cx.content(el)?) } else { None };
        let mut metadata = Vec::new();
        for child in el.elements() {
            match child.name.as_str() {
                "message" => {
                    cx.allow_attrs(child, &[]);
                    message = Some(cx.content(child)?);
                }
                "metadata" => {
                    cx.allow_attrs(child, &["name", "value"]);
                    cx.no_children(child);
                    let name = cx.req_literal(child, "name")?;
                    let value = cx.req_text(child, "value")?;
                    metadata.push((name, value));
                }
                _ => {}
            }
        }
        let Some(message) = message else {
            cx.error(el.pos, "<trace> needs a <message>");
            return None;
        };
        Some(Self {
            source,
            severity,
            message,
            metadata,
        })
    }

    pub fn texts(&self) -> Vec<&PolicyText> {
        std::iter::once(&self.message)
            .chain(self.metadata.iter().map(|(_, v)| v))
            .collect()
    }

    pub fn run<I: Io>(
        &self,
        ex: &mut Exchange,
        io: &mut I,
        budget: &mut Budget,
    ) -> Result<Flow, PolicyError> {
        let message = self.message.eval(ex, budget)?;
        let mut metadata = String::new();
        let mut pairs = Vec::with_capacity(self.metadata.len());
        for (name, value) in &self.metadata {
            let value = value.eval(ex, budget)?;
            if !metadata.is_empty() {
                metadata.push_str(", ");
            }
            metadata.push_str(name);
            metadata.push('=');
            metadata.push_str(&value);
            pairs.push((name.clone(), value.into_owned()));
        }
        io.trace_event(TraceEvent {
            source: self.source.clone(),
            severity: self.severity,
            message: message.to_string(),
            metadata: pairs,
        });
        let request_id = ex.info.request_id.to_string();
        let (source, api) = (self.source.as_str(), &*ex.info.api_id);
        match self.severity {
            Severity::Verbose => {
                tracing::debug!(target: "gatehouse::trace", request_id, source, api, metadata, "{message}")
            }
            Severity::Information => {
                tracing::info!(target: "gatehouse::trace", request_id, source, api, metadata, "{message}")
            }
            Severity::Error => {
                tracing::error!(target: "gatehouse::trace", request_id, source, api, metadata, "{message}")
            }
        }
        Ok(Flow::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;

    #[test]
    fn traces_and_continues() {
        let p = pipeline(
            r#"<policies><inbound>
                <trace source="audit" severity="information">
                    <message>@("called " + context.Request.Method)</message>
                    <metadata name="tier" value="gold" />
                </trace>
            </inbound><backend><forward-request/></backend></policies>"#,
        );
        let mut ex = exchange("GET", "/", &[]);
        let io = run(&p, &mut ex);
        assert!(io.forwarded.is_some());
        assert_eq!(
            io.traced,
            vec![super::TraceEvent {
                source: "audit".into(),
                severity: super::Severity::Information,
                message: "called GET".into(),
                metadata: vec![("tier".into(), "gold".into())],
            }]
        );
    }

    #[test]
    fn the_older_form_holds_the_message_as_text() {
        let p = pipeline(
            r#"<policies><inbound>
                <trace source="audit">@("called " + context.Request.Method)</trace>
            </inbound><backend><forward-request/></backend></policies>"#,
        );
        let mut ex = exchange("GET", "/", &[]);
        let io = run(&p, &mut ex);
        assert_eq!(io.traced.len(), 1);
        assert_eq!(io.traced[0].message, "called GET");
    }

    #[test]
    fn compile_errors() {
        for (xml, needle) in [
            (r#"<trace source="a"/>"#, "needs a <message>"),
            (
                r#"<trace><message>m</message></trace>"#,
                "needs the attribute 'source'",
            ),
            (
                r#"<trace source="a" severity="loud"><message>m</message></trace>"#,
                "must be one of",
            ),
        ] {
            let errors = errors_inbound(xml);
            assert!(
                errors.iter().any(|e| e.contains(needle)),
                "{xml}: {errors:?}"
            );
        }
    }
}
