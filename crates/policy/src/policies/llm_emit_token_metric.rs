//! `<llm-emit-token-metric>` and `<azure-openai-emit-token-metric>` (inbound): once the model's
//! answer is known, adds the tokens its `usage` reports to three custom metrics, `Prompt
//! Tokens`, `Completion Tokens` and `Total Tokens`, in `namespace` (default `API Management`),
//! labelled by the dimensions:
//!
//! ```xml
//! <llm-emit-token-metric namespace="llm-usage">
//!   <dimension name="API ID" />
//!   <dimension name="Team" value="@(context.Request.Headers.GetValueOrDefault("x-team", ""))" />
//! </llm-emit-token-metric>
//! ```
//!
//! As in Azure, the predefined dimensions (`API ID`, `Operation ID`, `Product ID`,
//! `Subscription ID`, `User ID`, `Location`, `Gateway ID`, `Backend ID`, `Client IP`, `Model`)
//! may leave out their value; `Model` is the `model` the answer names. Values are taken where
//! the policy stands; the metrics are emitted when the answer is known (see [`super::llm`]), and
//! not at all for an answer that reports no usage. The gateway shows them on `/metrics` as
//! `emit-metric`'s are.

use super::emit_metric::{EmittedMetric, predefined};
use super::llm::{Pending, Usage};
use crate::compile::Cx;
use crate::exchange::Exchange;
use crate::run::{Budget, Flow, PolicyError};
use crate::text::PolicyText;
use crate::xml::Element;

const PREDEFINED: &[&str] = &[
    "API ID",
    "Operation ID",
    "Product ID",
    "Subscription ID",
    "User ID",
    "Location",
    "Gateway ID",
    "Backend ID",
    "Client IP",
    "Model",
];

const MAX_DIMENSIONS: usize = 10;

#[derive(Debug, Clone)]
pub struct LlmEmitTokenMetric {
    element: &'static str,
    namespace: String,
    dimensions: Vec<(String, Option<PolicyText>)>,
}

/// The metrics to emit when the answer is known, their dimensions already valued.
#[derive(Debug, Clone)]
pub(crate) struct Emission {
    namespace: String,
    dimensions: Vec<(String, String)>,
    /// Where the `Model` dimension goes, valued from the answer.
    model: Option<usize>,
}

impl LlmEmitTokenMetric {
    pub fn name(&self) -> &'static str {
        self.element
    }

    pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Self> {
        let element = if el.name == "azure-openai-emit-token-metric" {
            "azure-openai-emit-token-metric"
        } else {
            "llm-emit-token-metric"
        };
        cx.allow_attrs(el, &["namespace"]);
        cx.allow_children(el, &["dimension"]);
        let namespace = cx
            .literal(el, "namespace")
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "API Management".to_owned());
        let mut dimensions: Vec<(String, Option<PolicyText>)> = Vec::new();
        for child in el.elements() {
            cx.allow_attrs(child, &["name", "value"]);
            cx.no_children(child);
            let Some(dim) = cx.req_literal(child, "name") else {
                continue;
            };
            let dim = dim.trim().to_owned();
            let value = cx.opt_text(child, "value");
            let known = PREDEFINED.iter().find(|p| p.eq_ignore_ascii_case(&dim));
            if value.is_none() && known.is_none() {
                cx.error(
                    child.pos,
                    format!(
                        "dimension '{dim}' needs a value; only {} take theirs from the request",
                        PREDEFINED.join(", ")
                    ),
                );
                continue;
            }
            if dimensions.iter().any(|(d, _)| d.eq_ignore_ascii_case(&dim)) {
                cx.error(child.pos, format!("dimension '{dim}' appears twice"));
                continue;
            }
            dimensions.push((dim, value));
        }
        if dimensions.is_empty() {
            cx.error(
                el.pos,
                format!("<{element}> needs at least one <dimension>"),
            );
            return None;
        }
        if dimensions.len() > MAX_DIMENSIONS {
            cx.error(
                el.pos,
                format!("<{element}> takes at most {MAX_DIMENSIONS} dimensions"),
            );
            return None;
        }
        Some(Self {
            element,
            namespace,
            dimensions,
        })
    }

    pub fn texts(&self) -> Vec<&PolicyText> {
        self.dimensions
            .iter()
            .filter_map(|(_, v)| v.as_ref())
            .collect()
    }

    pub fn run(&self, ex: &mut Exchange, budget: &mut Budget) -> Result<Flow, PolicyError> {
        let mut dimensions = Vec::with_capacity(self.dimensions.len());
        let mut model = None;
        for (i, (name, text)) in self.dimensions.iter().enumerate() {
            let value = match text {
                Some(t) => t.eval(ex, budget)?.into_owned(),
                None if name.eq_ignore_ascii_case("Model") => {
                    model = Some(i);
                    String::new()
                }
                None => predefined(ex, name),
            };
            dimensions.push((name.clone(), value));
        }
        ex.llm_pending.push(Pending::Metric(Emission {
            namespace: self.namespace.clone(),
            dimensions,
            model,
        }));
        Ok(Flow::Continue)
    }
}

impl Emission {
    pub(crate) fn emit<I: crate::run::Io>(
        mut self,
        io: &mut I,
        usage: Option<Usage>,
        model: Option<&str>,
    ) {
        let Some(usage) = usage else {
            return;
        };
        if let Some(i) = self.model {
            self.dimensions[i].1 = model.unwrap_or_default().to_owned();
        }
        for (name, value) in [
            ("Prompt Tokens", usage.prompt),
            ("Completion Tokens", usage.completion),
            ("Total Tokens", usage.total),
        ] {
            io.emit_metric(EmittedMetric {
                name: name.to_owned(),
                namespace: self.namespace.clone(),
                value: value as f64,
                dimensions: self.dimensions.clone(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    const ANSWER: &[u8] = br#"{"model":"gpt-4o-mini","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":11,"completion_tokens":4,"total_tokens":15}}"#;

    #[test]
    fn emits_the_answers_usage_with_the_dimensions_valued_where_the_policy_stands() {
        let p = pipeline(
            r#"<policies><inbound>
                <llm-emit-token-metric namespace="ai">
                    <dimension name="API ID" />
                    <dimension name="Model" />
                    <dimension name="Team" value="@(context.Request.Headers.GetValueOrDefault("x-team", "none"))" />
                </llm-emit-token-metric>
                <set-header name="x-team" exists-action="override"><value>changed-later</value></set-header>
            </inbound><backend><forward-request/></backend>
            <outbound><set-header name="x-emitted" exists-action="override"><value>yes</value></set-header></outbound></policies>"#,
        );
        let mut ex = exchange("POST", "/chat", &[("x-team", "search")]);
        let mut io = MockIo {
            answer: Some(bytes::Bytes::from_static(ANSWER)),
            answer_type: Some("application/json".into()),
            ..MockIo::default()
        };
        block_on(p.run(&mut ex, &mut io));
        let dims = vec![
            ("API ID".to_owned(), "api".to_owned()),
            ("Model".to_owned(), "gpt-4o-mini".to_owned()),
            ("Team".to_owned(), "search".to_owned()),
        ];
        let metric = |name: &str, value: f64| EmittedMetric {
            name: name.into(),
            namespace: "ai".into(),
            value,
            dimensions: dims.clone(),
        };
        assert_eq!(
            io.emitted,
            vec![
                metric("Prompt Tokens", 11.0),
                metric("Completion Tokens", 4.0),
                metric("Total Tokens", 15.0)
            ]
        );
    }

    #[test]
    fn nothing_is_emitted_without_usage_or_without_an_answer() {
        let p = pipeline(
            r#"<policies><inbound>
                <azure-openai-emit-token-metric><dimension name="Client IP" /></azure-openai-emit-token-metric>
            </inbound><backend><forward-request/></backend></policies>"#,
        );
        let mut ex = exchange("POST", "/chat", &[]);
        let mut io = MockIo {
            answer: Some(bytes::Bytes::from_static(br#"{"error":"busy"}"#)),
            ..MockIo::default()
        };
        block_on(p.run(&mut ex, &mut io));
        assert!(io.emitted.is_empty());

        let p = pipeline(
            r#"<policies><inbound>
                <azure-openai-emit-token-metric><dimension name="Client IP" /></azure-openai-emit-token-metric>
                <return-response><set-status code="200" /></return-response>
            </inbound></policies>"#,
        );
        let mut ex = exchange("POST", "/chat", &[]);
        let io = run(&p, &mut ex);
        assert!(io.emitted.is_empty());
    }

    #[test]
    fn is_checked_when_saved() {
        let first = |inner: &str| errors_inbound(inner).first().cloned().unwrap_or_default();
        assert!(first("<llm-emit-token-metric />").contains("needs at least one <dimension>"));
        assert!(
            first(r#"<llm-emit-token-metric><dimension name="Team" /></llm-emit-token-metric>"#)
                .contains("dimension 'Team' needs a value")
        );
        assert!(first(r#"<llm-emit-token-metric><dimension name="Model" /><dimension name="model" /></llm-emit-token-metric>"#)
            .contains("appears twice"));
        assert!(errors_in(
            "outbound",
            r#"<azure-openai-emit-token-metric><dimension name="API ID" /></azure-openai-emit-token-metric>"#
        )[0]
        .contains("is not allowed in <outbound>"));
    }
}
