//! `<emit-metric name="…" value="…" namespace="…"><dimension name="…" value="…"/></emit-metric>`:
//! adds `value` (default 1) to a custom metric. The gateway shows it on `/metrics` as
//! `gatehouse_custom_metric_value` and `…_emitted_total`, labelled by name, namespace and
//! dimensions.
//!
//! As in Azure, up to five dimensions; the predefined ones (`API ID`, `Operation ID`,
//! `Product ID`, `Subscription ID`, `Gateway ID`, `Client IP`) may leave out their value and
//! take it from the request.

use crate::compile::Cx;
use crate::exchange::Exchange;
use crate::run::{Budget, Flow, Io, PolicyError};
use crate::text::PolicyText;
use crate::xml::Element;

/// One value an `emit-metric` hands to the gateway.
#[derive(Debug, Clone, PartialEq)]
pub struct EmittedMetric {
    pub name: String,
    pub namespace: String,
    pub value: f64,
    pub dimensions: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct EmitMetric {
    pub name: String,
    pub namespace: String,
    pub value: Option<PolicyText>,
    pub dimensions: Vec<(String, Option<PolicyText>)>,
}

const PREDEFINED: &[&str] = &[
    "API ID",
    "Operation ID",
    "Product ID",
    "Subscription ID",
    "Gateway ID",
    "Client IP",
];

const MAX_DIMENSIONS: usize = 5;

impl EmitMetric {
    pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Self> {
        cx.allow_attrs(el, &["name", "value", "namespace"]);
        cx.allow_children(el, &["dimension"]);
        let name = cx.req_literal(el, "name")?;
        if name.trim().is_empty() {
            cx.error(el.pos, "<emit-metric> needs a non-empty name");
            return None;
        }
        let namespace = cx
            .literal(el, "namespace")
            .unwrap_or_else(|| "API Management".to_owned());
        let value = cx.opt_text(el, "value");
        let mut dimensions = Vec::new();
        for child in el.elements() {
            cx.allow_attrs(child, &["name", "value"]);
            cx.no_children(child);
            let Some(dim) = cx.req_literal(child, "name") else {
                continue;
            };
            let value = cx.opt_text(child, "value");
            if value.is_none() && !PREDEFINED.iter().any(|p| p.eq_ignore_ascii_case(&dim)) {
                cx.error(
                    child.pos,
                    format!(
                        "dimension '{dim}' needs a value; only {} take theirs from the request",
                        PREDEFINED.join(", ")
                    ),
                );
                continue;
            }
            if dimensions
                .iter()
                .any(|(d, _): &(String, _)| d.eq_ignore_ascii_case(&dim))
            {
                cx.error(child.pos, format!("dimension '{dim}' appears twice"));
                continue;
            }
            dimensions.push((dim, value));
        }
        if dimensions.len() > MAX_DIMENSIONS {
            cx.error(
                el.pos,
                format!("<emit-metric> takes at most {MAX_DIMENSIONS} dimensions"),
            );
            return None;
        }
        Some(Self {
            name,
            namespace,
            value,
            dimensions,
        })
    }

    pub fn texts(&self) -> Vec<&PolicyText> {
        self.value
            .iter()
            .chain(self.dimensions.iter().filter_map(|(_, v)| v.as_ref()))
            .collect()
    }

    pub fn run<I: Io>(
        &self,
        ex: &mut Exchange,
        io: &mut I,
        budget: &mut Budget,
    ) -> Result<Flow, PolicyError> {
        let value = match &self.value {
            None => 1.0,
            Some(text) => {
                let t = text.eval(ex, budget)?;
                match t.trim().parse::<f64>() {
                    Ok(v) if v.is_finite() => v,
                    _ => {
                        return Err(PolicyError::runtime(
                            "ExpressionValueEvaluationFailure",
                            format!("emit-metric value must be a number, got '{t}'"),
                        ));
                    }
                }
            }
        };
        let mut dimensions = Vec::with_capacity(self.dimensions.len());
        for (name, text) in &self.dimensions {
            let value = match text {
                Some(t) => t.eval(ex, budget)?.into_owned(),
                None => predefined(ex, name),
            };
            dimensions.push((name.clone(), value));
        }
        io.emit_metric(EmittedMetric {
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            value,
            dimensions,
        });
        Ok(Flow::Continue)
    }
}

pub(super) fn predefined(ex: &Exchange, name: &str) -> String {
    let info = &ex.info;
    match name.to_ascii_lowercase().as_str() {
        "api id" => info.api_id.to_string(),
        "operation id" => info.operation_id.to_string(),
        "product id" => info
            .product
            .as_ref()
            .map(|p| p.0.to_string())
            .unwrap_or_default(),
        "subscription id" => info
            .subscription
            .as_ref()
            .map(|s| s.id.to_string())
            .unwrap_or_default(),
        "gateway id" => info.gateway_id.to_string(),
        "client ip" => info.ip.to_string(),
        "user id" => info
            .user
            .as_ref()
            .map(|u| u.id.to_string())
            .unwrap_or_default(),
        "location" => info.region.to_string(),
        "backend id" => ex.backend_id.as_deref().unwrap_or_default().to_owned(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    #[test]
    fn emits_values_with_their_dimensions() {
        let p = pipeline(
            r#"<policies><inbound>
                <emit-metric name="calls" namespace="shop">
                    <dimension name="API ID"/>
                    <dimension name="Caller" value="@(context.Request.Headers.GetValueOrDefault("X-Caller", "anon"))"/>
                </emit-metric>
                <emit-metric name="weight" value="@(2.5 * 2)"/>
            </inbound></policies>"#,
        );
        let mut ex = exchange("GET", "/x", &[("X-Caller", "ann")]);
        let io = run(&p, &mut ex);
        assert_eq!(
            io.emitted,
            vec![
                EmittedMetric {
                    name: "calls".into(),
                    namespace: "shop".into(),
                    value: 1.0,
                    dimensions: vec![
                        ("API ID".into(), ex.info.api_id.to_string()),
                        ("Caller".into(), "ann".into()),
                    ],
                },
                EmittedMetric {
                    name: "weight".into(),
                    namespace: "API Management".into(),
                    value: 5.0,
                    dimensions: vec![],
                },
            ]
        );
    }

    #[test]
    fn a_value_that_is_not_a_number_is_an_error() {
        let p = pipeline(
            r#"<policies><inbound><emit-metric name="m" value="@("lots")"/></inbound>
               <on-error><set-status code="500"/></on-error></policies>"#,
        );
        let mut ex = exchange("GET", "/x", &[]);
        let io = run(&p, &mut ex);
        assert!(io.emitted.is_empty());
        let e = ex.last_error.unwrap();
        assert_eq!(e.source, "emit-metric");
        assert!(e.message.contains("lots"), "{}", e.message);
    }

    #[test]
    fn bad_documents_are_refused() {
        for (inner, wanted) in [
            (r#"<emit-metric/>"#, "name"),
            (
                r#"<emit-metric name="m"><dimension name="Custom"/></emit-metric>"#,
                "needs a value",
            ),
            (
                r#"<emit-metric name="m"><dimension name="API ID"/><dimension name="api id"/></emit-metric>"#,
                "twice",
            ),
            (
                r#"<emit-metric name="m"><dimension name="a" value="1"/><dimension name="b" value="1"/><dimension name="c" value="1"/><dimension name="d" value="1"/><dimension name="e" value="1"/><dimension name="f" value="1"/></emit-metric>"#,
                "at most 5",
            ),
        ] {
            let errors = errors_inbound(inner);
            assert!(
                errors.iter().any(|e| e.contains(wanted)),
                "{inner}: {errors:?}"
            );
        }
    }
}
