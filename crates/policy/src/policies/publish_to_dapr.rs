//! `<publish-to-dapr pubsub-name="…" topic="…" ignore-error response-variable-name timeout
//! template content-type>message</publish-to-dapr>`: publishes the message to a Dapr pub/sub
//! topic, `POST {sidecar}/v1.0/publish/{pubsub-name}/{topic}`, as Azure does. Without
//! `pubsub-name` the topic is written `pubsub-name/topic-name`. The message is the element's
//! content: an expression, text, markup as written, or a Liquid template with
//! `template="Liquid"`.

use bytes::Bytes;

use super::SetBody;
use super::dapr::{self, DaprCall};
use crate::compile::Cx;
use crate::exchange::Exchange;
use crate::run::{Budget, Flow, Io, PolicyError};
use crate::text::PolicyText;
use crate::xml::Element;

#[derive(Debug, Clone)]
pub struct PublishToDapr {
    pubsub: Option<PolicyText>,
    topic: PolicyText,
    call: DaprCall,
    message: SetBody,
}

impl PublishToDapr {
    pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Self> {
        let mut allowed = vec!["pubsub-name", "topic"];
        allowed.extend(dapr::ATTRIBUTES);
        cx.allow_attrs(el, &allowed);
        let pubsub = cx.opt_text(el, "pubsub-name");
        let topic = cx.req_text(el, "topic")?;
        if pubsub.is_none()
            && let Some(t) = topic.as_literal()
            && t.trim().split('/').filter(|p| !p.is_empty()).count() != 2
        {
            let pos = el.attr("topic").map_or(el.pos, |a| a.pos);
            cx.error(
                pos,
                format!(
                    "without pubsub-name, topic must be written pubsub-name/topic-name, not '{t}'"
                ),
            );
            return None;
        }
        let call = DaprCall::compile(el, cx, "publish-to-dapr")?;
        let message = SetBody::payload(el, cx, call.liquid, false)?;
        Some(Self {
            pubsub,
            topic,
            call,
            message,
        })
    }

    pub fn texts(&self) -> Vec<&PolicyText> {
        let mut t: Vec<&PolicyText> = self.pubsub.iter().collect();
        t.push(&self.topic);
        t.push(&self.message.body);
        t.extend(self.call.texts());
        t
    }

    /// With a Liquid template, which body it reads (the request's: `Some(false)`).
    pub fn template_reads_body(&self) -> Option<bool> {
        self.message.template_reads_body()
    }

    pub async fn run<I: Io>(
        &self,
        ex: &mut Exchange,
        io: &mut I,
        budget: &mut Budget,
    ) -> Result<Flow, PolicyError> {
        let topic = self.topic.eval(ex, budget)?.trim().to_owned();
        let (pubsub, topic) = match &self.pubsub {
            Some(p) => (p.eval(ex, budget)?.trim().to_owned(), topic),
            None => match topic.split_once('/') {
                Some((p, t)) if !p.is_empty() && !t.is_empty() => (p.to_owned(), t.to_owned()),
                _ => {
                    return Err(PolicyError::runtime(
                        "ExpressionValueEvaluationFailure",
                        format!(
                            "without pubsub-name, topic must be pubsub-name/topic-name, not '{topic}'"
                        ),
                    ));
                }
            },
        };
        if pubsub.is_empty() || topic.is_empty() {
            return Err(PolicyError::runtime(
                "ExpressionValueEvaluationFailure",
                "publish-to-dapr needs a pubsub-name and a topic, and one of them is empty",
            ));
        }
        let body: Bytes = self.message.render(ex, budget)?;
        if self.call.json && serde_json::from_slice::<serde_json::Value>(&body).is_err() {
            return Err(PolicyError::runtime(
                "ExpressionValueEvaluationFailure",
                "the message is not JSON, and content-type says application/json",
            ));
        }
        let content_type = dapr::content_type(self.call.json, &body);
        let path = format!(
            "/v1.0/publish/{}/{}",
            dapr::segment(&pubsub),
            dapr::path(topic.trim_start_matches('/'))
        );
        self.call
            .post(ex, io, budget, path, content_type, body)
            .await?;
        Ok(Flow::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::super::flowkit::FlowIo;
    use super::super::testkit::*;
    use crate::expr::HttpResponse;

    fn answer(status: u16, body: &str) -> HttpResponse {
        HttpResponse {
            status,
            reason: String::new(),
            headers: vec![],
            body: bytes::Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn publishes_the_message_to_the_topic() {
        let p = pipeline(
            r#"<policies><inbound>
                <publish-to-dapr pubsub-name="orders" topic="@(&quot;new&quot;)" response-variable-name="dapr-response">
                    @(context.Request.Headers.GetValueOrDefault("X-Order", ""))
                </publish-to-dapr>
                <publish-to-dapr topic="events/created" timeout="9">&lt;order id="1"/&gt;</publish-to-dapr>
                <return-response response-variable-name="dapr-response" />
            </inbound></policies>"#,
        );
        let io = FlowIo::default().answer(|_| Ok(answer(204, "")));
        let mut ex = exchange("POST", "/", &[("X-Order", r#"{"id":7}"#)]);
        block_on(p.run(&mut ex, &mut io.clone()));
        let sent = io.state.sent.lock().unwrap();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0].url, "http://localhost:3500/v1.0/publish/orders/new");
        assert_eq!(sent[0].method, http::Method::POST);
        assert_eq!(&sent[0].body[..], br#"{"id":7}"#);
        assert_eq!(sent[0].headers["content-type"], "application/json");
        assert_eq!(sent[0].timeout, std::time::Duration::from_secs(5));
        assert_eq!(
            sent[1].url,
            "http://localhost:3500/v1.0/publish/events/created"
        );
        assert_eq!(&sent[1].body[..], br#"<order id="1"/>"#);
        assert_eq!(sent[1].headers["content-type"], "text/plain; charset=utf-8");
        assert_eq!(sent[1].timeout, std::time::Duration::from_secs(9));
        assert_eq!(ex.response.unwrap().status.as_u16(), 204);
    }

    #[test]
    fn the_sidecars_error_goes_to_on_error_with_its_answer_unless_ignored() {
        let xml = |ignore: &str| {
            format!(
                r#"<policies><inbound>
                <publish-to-dapr pubsub-name="orders" topic="new" response-variable-name="r" ignore-error="{ignore}">m</publish-to-dapr>
                <set-variable name="after" value="yes" />
            </inbound><on-error><return-response response-variable-name="r" /></on-error></policies>"#
            )
        };
        let io = FlowIo::default()
            .answer(|_| Ok(answer(500, r#"{"errorCode":"ERR_PUBSUB_NOT_FOUND"}"#)));
        let mut ex = exchange("POST", "/", &[]);
        block_on(pipeline(&xml("false")).run(&mut ex, &mut io.clone()));
        assert!(!ex.variables.contains_key("after"));
        let e = ex.last_error.clone().unwrap();
        assert_eq!(
            (e.source.as_str(), e.reason.as_str()),
            ("publish-to-dapr", "DaprRuntimeError")
        );
        let r = ex.response.unwrap();
        assert_eq!(r.status.as_u16(), 500);
        assert!(
            String::from_utf8_lossy(r.body.as_deref().unwrap()).contains("ERR_PUBSUB_NOT_FOUND")
        );

        let mut ex = exchange("POST", "/", &[]);
        block_on(pipeline(&xml("true")).run(&mut ex, &mut io.clone()));
        assert!(ex.last_error.is_none());
        assert!(ex.variables.contains_key("after"));
    }

    #[test]
    fn bad_attributes_are_refused() {
        for (inner, wanted) in [
            (
                r#"<publish-to-dapr pubsub-name="p">m</publish-to-dapr>"#,
                "needs the attribute 'topic'",
            ),
            (
                r#"<publish-to-dapr topic="justone">m</publish-to-dapr>"#,
                "pubsub-name/topic-name",
            ),
            (
                r#"<publish-to-dapr topic="p/t" timeout="0">m</publish-to-dapr>"#,
                "from 1 to 240",
            ),
            (
                r#"<publish-to-dapr topic="p/t" timeout="241">m</publish-to-dapr>"#,
                "from 1 to 240",
            ),
            (
                r#"<publish-to-dapr topic="p/t" template="mustache">m</publish-to-dapr>"#,
                "Liquid is the only",
            ),
            (
                r#"<publish-to-dapr topic="p/t" content-type="text/xml">m</publish-to-dapr>"#,
                "application/json is the only",
            ),
            (
                r#"<publish-to-dapr topic="p/t" ignore-error="maybe">m</publish-to-dapr>"#,
                "true or false",
            ),
            (
                r#"<publish-to-dapr topic="p/t" response-variable-name="@(&quot;v&quot;)">m</publish-to-dapr>"#,
                "does not accept an expression",
            ),
            (
                r#"<publish-to-dapr topic="p/t" name="x">m</publish-to-dapr>"#,
                "no attribute 'name'",
            ),
        ] {
            let errors = errors_inbound(inner);
            assert!(
                errors.iter().any(|e| e.contains(wanted)),
                "{inner}: {errors:?}"
            );
        }
        let errors = errors_in(
            "outbound",
            r#"<publish-to-dapr topic="p/t">m</publish-to-dapr>"#,
        );
        assert!(
            errors[0].contains("not allowed in <outbound>"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_liquid_template_renders_the_message() {
        let p = pipeline(
            r#"<policies><inbound>
                <publish-to-dapr topic="p/t" template="Liquid" content-type="application/json">{"method":"{{context.Request.Method}}"}</publish-to-dapr>
            </inbound></policies>"#,
        );
        let io = FlowIo::default().answer(|_| Ok(answer(204, "")));
        let mut ex = exchange("PUT", "/", &[]);
        block_on(p.run(&mut ex, &mut io.clone()));
        let sent = io.state.sent.lock().unwrap();
        assert_eq!(&sent[0].body[..], br#"{"method":"PUT"}"#);
        assert_eq!(sent[0].headers["content-type"], "application/json");
    }
}
