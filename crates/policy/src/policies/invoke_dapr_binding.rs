//! `<invoke-dapr-binding name="…" operation="…" ignore-error response-variable-name timeout
//! template content-type><metadata><item key="…">…</item></metadata><data>…</data>
//! </invoke-dapr-binding>`: triggers a Dapr output binding, `POST
//! {sidecar}/v1.0/bindings/{name}` with `{"data": …, "metadata": {…}, "operation": "…"}`, as
//! Azure does.
//!
//! `data` is JSON as it is when the content is JSON (it must be with
//! `content-type="application/json"`), and a JSON string otherwise. Metadata values may be
//! expressions; `operation` is literal.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::SetBody;
use super::dapr::{self, DaprCall};
use crate::compile::Cx;
use crate::exchange::Exchange;
use crate::run::{Budget, Flow, Io, PolicyError};
use crate::text::PolicyText;
use crate::xml::Element;

#[derive(Debug, Clone)]
pub struct InvokeDaprBinding {
    name: PolicyText,
    operation: Option<String>,
    call: DaprCall,
    metadata: Vec<(String, PolicyText)>,
    data: Option<SetBody>,
}

impl InvokeDaprBinding {
    pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Self> {
        let mut allowed = vec!["name", "operation"];
        allowed.extend(dapr::ATTRIBUTES);
        cx.allow_attrs(el, &allowed);
        cx.allow_children(el, &["metadata", "data"]);
        let name = cx.req_text(el, "name")?;
        let operation = cx.literal(el, "operation").map(|o| o.trim().to_owned());
        let call = DaprCall::compile(el, cx, "invoke-dapr-binding")?;
        let response = super::on_response(cx.section);
        let mut metadata = Vec::new();
        let mut data = None;
        let mut ok = true;
        for child in el.elements() {
            match child.name.as_str() {
                "metadata" => {
                    cx.allow_attrs(child, &[]);
                    cx.allow_children(child, &["item"]);
                    for item in child.elements().filter(|i| i.name == "item") {
                        cx.allow_attrs(item, &["key"]);
                        let Some(key) = cx.req_literal(item, "key") else {
                            ok = false;
                            continue;
                        };
                        if metadata.iter().any(|(k, _): &(String, _)| *k == key) {
                            cx.error(item.pos, format!("metadata item '{key}' appears twice"));
                            ok = false;
                            continue;
                        }
                        match cx.content(item) {
                            Some(v) => metadata.push((key, v)),
                            None => ok = false,
                        }
                    }
                }
                "data" => {
                    cx.allow_attrs(child, &[]);
                    if data.is_some() {
                        cx.error(child.pos, "<data> appears twice");
                        ok = false;
                        continue;
                    }
                    match SetBody::payload(child, cx, call.liquid, response) {
                        Some(d) => data = Some(d),
                        None => ok = false,
                    }
                }
                _ => {}
            }
        }
        ok.then_some(Self {
            name,
            operation,
            call,
            metadata,
            data,
        })
    }

    pub fn texts(&self) -> Vec<&PolicyText> {
        let mut t = vec![&self.name];
        t.extend(self.metadata.iter().map(|(_, v)| v));
        t.extend(self.data.iter().map(|d| &d.body));
        t.extend(self.call.texts());
        t
    }

    /// With a Liquid template, which body it reads.
    pub fn template_reads_body(&self) -> Option<bool> {
        self.data.as_ref().and_then(SetBody::template_reads_body)
    }

    pub async fn run<I: Io>(
        &self,
        ex: &mut Exchange,
        io: &mut I,
        budget: &mut Budget,
    ) -> Result<Flow, PolicyError> {
        let name = self.name.eval(ex, budget)?.trim().to_owned();
        if name.is_empty() {
            return Err(PolicyError::runtime(
                "ExpressionValueEvaluationFailure",
                "the binding name is empty",
            ));
        }
        let mut metadata = BTreeMap::new();
        for (key, value) in &self.metadata {
            metadata.insert(key.clone(), value.eval(ex, budget)?.into_owned());
        }
        let mut body = serde_json::Map::new();
        if let Some(d) = &self.data {
            let content = d.render(ex, budget)?;
            body.insert("data".into(), self.data_value(&content)?);
        }
        if !metadata.is_empty() {
            body.insert("metadata".into(), serde_json::json!(metadata));
        }
        if let Some(op) = &self.operation {
            body.insert("operation".into(), serde_json::Value::String(op.clone()));
        }
        let body = Bytes::from(serde_json::Value::Object(body).to_string());
        let path = format!("/v1.0/bindings/{}", dapr::segment(&name));
        self.call
            .post(ex, io, budget, path, "application/json", body)
            .await?;
        Ok(Flow::Continue)
    }

    /// The `data` property: the content as JSON when it is JSON, else as a string.
    fn data_value(&self, content: &[u8]) -> Result<serde_json::Value, PolicyError> {
        match serde_json::from_slice::<serde_json::Value>(content) {
            Ok(v) => Ok(v),
            Err(_) if self.call.json => Err(PolicyError::runtime(
                "ExpressionValueEvaluationFailure",
                "the binding's data is not JSON, and content-type says application/json",
            )),
            Err(_) => Ok(serde_json::Value::String(
                String::from_utf8_lossy(content).into_owned(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::flowkit::FlowIo;
    use super::super::testkit::*;
    use crate::expr::HttpResponse;

    fn ok() -> HttpResponse {
        HttpResponse {
            status: 200,
            reason: "OK".into(),
            headers: vec![],
            body: bytes::Bytes::from_static(br#"{"done":true}"#),
        }
    }

    #[test]
    fn triggers_the_binding_with_data_metadata_and_operation() {
        let p = pipeline(
            r#"<policies><inbound>
                <invoke-dapr-binding name="external-system" operation="create" response-variable-name="bind-response">
                    <metadata>
                        <item key="source">api-management</item>
                        <item key="client-ip">@(context.Request.IpAddress )</item>
                    </metadata>
                    <data>
                        @(context.Request.Headers.GetValueOrDefault("X-Body", ""))
                    </data>
                </invoke-dapr-binding>
                <invoke-dapr-binding name="@(&quot;queue&quot;)"><data>plain words</data></invoke-dapr-binding>
                <return-response response-variable-name="bind-response" />
            </inbound></policies>"#,
        );
        let io = FlowIo::default().answer(|_| Ok(ok()));
        let mut ex = exchange("POST", "/", &[("X-Body", r#"{"order":1}"#)]);
        block_on(p.run(&mut ex, &mut io.clone()));
        let sent = io.state.sent.lock().unwrap();
        assert_eq!(
            sent[0].url,
            "http://localhost:3500/v1.0/bindings/external-system"
        );
        assert_eq!(sent[0].headers["content-type"], "application/json");
        let body: serde_json::Value = serde_json::from_slice(&sent[0].body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "data": {"order": 1},
                "metadata": {"source": "api-management", "client-ip": "127.0.0.1"},
                "operation": "create"
            })
        );
        assert_eq!(sent[1].url, "http://localhost:3500/v1.0/bindings/queue");
        let body: serde_json::Value = serde_json::from_slice(&sent[1].body).unwrap();
        assert_eq!(body, serde_json::json!({"data": "plain words"}));
        let r = ex.response.unwrap();
        assert_eq!(r.status.as_u16(), 200);
        assert_eq!(&r.body.unwrap()[..], br#"{"done":true}"#);
    }

    #[test]
    fn json_content_must_be_json() {
        let p = pipeline(
            r#"<policies><inbound>
                <invoke-dapr-binding name="b" content-type="application/json"><data>not json</data></invoke-dapr-binding>
            </inbound></policies>"#,
        );
        let io = FlowIo::default().answer(|_| Ok(ok()));
        let mut ex = exchange("POST", "/", &[]);
        block_on(p.run(&mut ex, &mut io.clone()));
        assert!(io.state.sent.lock().unwrap().is_empty());
        assert!(ex.last_error.unwrap().message.contains("not JSON"));
    }

    #[test]
    fn bad_documents_are_refused() {
        for (inner, wanted) in [
            (
                r#"<invoke-dapr-binding><data>x</data></invoke-dapr-binding>"#,
                "needs the attribute 'name'",
            ),
            (
                r#"<invoke-dapr-binding name="b" operation="@(&quot;x&quot;)" />"#,
                "does not accept an expression",
            ),
            (
                r#"<invoke-dapr-binding name="b"><metadata><item>v</item></metadata></invoke-dapr-binding>"#,
                "needs the attribute 'key'",
            ),
            (
                r#"<invoke-dapr-binding name="b"><metadata><item key="k">1</item><item key="k">2</item></metadata></invoke-dapr-binding>"#,
                "appears twice",
            ),
            (
                r#"<invoke-dapr-binding name="b"><body>x</body></invoke-dapr-binding>"#,
                "cannot contain <body>",
            ),
            (
                r#"<invoke-dapr-binding name="b" timeout="x" />"#,
                "from 1 to 240",
            ),
        ] {
            let errors = errors_inbound(inner);
            assert!(
                errors.iter().any(|e| e.contains(wanted)),
                "{inner}: {errors:?}"
            );
        }
        for section in ["inbound", "outbound", "on-error"] {
            assert!(
                errors_in(section, r#"<invoke-dapr-binding name="b" />"#).is_empty(),
                "{section}"
            );
        }
        let errors = errors_in("backend", r#"<invoke-dapr-binding name="b" />"#);
        assert!(errors[0].contains("not allowed in <backend>"), "{errors:?}");
    }
}
