//! `<log-to-eventhub logger-id="…" partition-id="…" partition-key="…">@(…)</log-to-eventhub>`:
//! evaluates a message and hands it to the gateway, which queues it and sends it to the logger
//! (`/mgmt/loggers/{id}`: Azure Event Hubs, or an `http` or `otlp` sink) in the background.
//! The request never waits for the logger; a message the logger's queue has no room for is
//! dropped and counted.
//!
//! As in Azure: `logger-id` and `partition-id` are literal, `partition-key` and the message may
//! be expressions, `partition-id` and `partition-key` exclude each other, and a message longer
//! than 200 KB is cut to 200 KB. Where the compile knows the loggers (the control plane, on
//! save) a `logger-id` that does not exist is refused.

use std::sync::Arc;

use crate::compile::Cx;
use crate::exchange::Exchange;
use crate::run::{Budget, Flow, Io, PolicyError};
use crate::text::PolicyText;
use crate::xml::Element;

/// Longest message sent; longer ones are cut (Azure's limit).
pub const MAX_MESSAGE: usize = 200 * 1024;

/// Where in the event hub a message goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Partition {
    /// Wherever the event hub puts it.
    Any,
    /// `partition-id`: this partition.
    Id(Arc<str>),
    /// `partition-key`: the partition this key hashes to.
    Key(String),
}

/// One message of `log-to-eventhub`, for the gateway to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub logger: Arc<str>,
    pub partition: Partition,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct LogToEventHub {
    logger: Arc<str>,
    partition_id: Option<Arc<str>>,
    partition_key: Option<PolicyText>,
    message: PolicyText,
}

impl LogToEventHub {
    pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Self> {
        cx.allow_attrs(el, &["logger-id", "partition-id", "partition-key"]);
        let logger = cx.req_literal(el, "logger-id")?.trim().to_owned();
        let logger_pos = el.attr("logger-id").map_or(el.pos, |a| a.pos);
        if logger.is_empty() {
            cx.error(logger_pos, "logger-id is empty");
            return None;
        }
        if cx.known.logger(&logger) == Some(false) {
            cx.error(
                logger_pos,
                format!(
                    "logger '{logger}' does not exist; create it with PUT /mgmt/loggers/{logger}"
                ),
            );
            return None;
        }
        let partition_id = cx.literal(el, "partition-id").map(|p| p.trim().to_owned());
        if let Some(id) = &partition_id
            && (id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()))
        {
            let pos = el.attr("partition-id").map_or(el.pos, |a| a.pos);
            cx.error(
                pos,
                format!("partition-id must be a partition's index (0, 1, …), not '{id}'"),
            );
            return None;
        }
        let partition_key = cx.opt_text(el, "partition-key");
        if partition_id.is_some() && el.attr("partition-key").is_some() {
            let pos = el.attr("partition-key").map_or(el.pos, |a| a.pos);
            cx.error(pos, "give partition-id or partition-key, not both");
            return None;
        }
        let message = cx.content(el)?;
        Some(Self {
            logger: Arc::from(logger),
            partition_id: partition_id.map(Arc::from),
            partition_key,
            message,
        })
    }

    pub fn texts(&self) -> Vec<&PolicyText> {
        let mut t = vec![&self.message];
        t.extend(self.partition_key.iter());
        t
    }

    pub fn run<I: Io>(
        &self,
        ex: &mut Exchange,
        io: &mut I,
        budget: &mut Budget,
    ) -> Result<Flow, PolicyError> {
        let mut message = self.message.eval(ex, budget)?.into_owned();
        if message.len() > MAX_MESSAGE {
            let mut end = MAX_MESSAGE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        let partition = match (&self.partition_id, &self.partition_key) {
            (Some(id), _) => Partition::Id(id.clone()),
            (None, Some(key)) => Partition::Key(key.eval(ex, budget)?.into_owned()),
            (None, None) => Partition::Any,
        };
        io.log(LogEntry {
            logger: self.logger.clone(),
            partition,
            message,
        });
        Ok(Flow::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    #[test]
    fn messages_reach_the_gateway_with_their_partition() {
        let p = pipeline(
            r#"<policies><inbound>
                <log-to-eventhub logger-id ='contoso-logger'>
                    @( string.Join(",", context.Request.Method, context.Request.Headers.GetValueOrDefault("X-Who", "")) )
                </log-to-eventhub>
                <log-to-eventhub logger-id="l2" partition-id="3">plain text</log-to-eventhub>
            </inbound><backend><forward-request/></backend><outbound>
                <log-to-eventhub logger-id="l2" partition-key="@(context.Response.StatusCode.ToString())">done</log-to-eventhub>
            </outbound></policies>"#,
        );
        let mut ex = exchange("POST", "/x", &[("X-Who", "ann")]);
        let io = run(&p, &mut ex);
        assert_eq!(
            io.logged,
            vec![
                LogEntry {
                    logger: "contoso-logger".into(),
                    partition: Partition::Any,
                    message: "POST,ann".into(),
                },
                LogEntry {
                    logger: "l2".into(),
                    partition: Partition::Id("3".into()),
                    message: "plain text".into(),
                },
                LogEntry {
                    logger: "l2".into(),
                    partition: Partition::Key("200".into()),
                    message: "done".into(),
                },
            ]
        );
    }

    #[test]
    fn long_messages_are_cut_to_200_kb_on_a_character() {
        let p = pipeline(
            r#"<policies><inbound>
                <log-to-eventhub logger-id="l">@(new string('é', 150000))</log-to-eventhub>
            </inbound></policies>"#,
        );
        let mut ex = exchange("GET", "/", &[]);
        let io = run(&p, &mut ex);
        let m = &io.logged[0].message;
        assert_eq!(m.len(), MAX_MESSAGE);
        assert!(m.chars().all(|c| c == 'é'));
    }

    #[test]
    fn bad_attributes_are_refused_with_their_place() {
        for (inner, wanted) in [
            (
                r#"<log-to-eventhub>x</log-to-eventhub>"#,
                "needs the attribute 'logger-id'",
            ),
            (
                r#"<log-to-eventhub logger-id=" ">x</log-to-eventhub>"#,
                "logger-id is empty",
            ),
            (
                r#"<log-to-eventhub logger-id="@(&quot;l&quot;)">x</log-to-eventhub>"#,
                "does not accept an expression",
            ),
            (
                r#"<log-to-eventhub logger-id="l" partition-id="one">x</log-to-eventhub>"#,
                "partition's index",
            ),
            (
                r#"<log-to-eventhub logger-id="l" partition-id="1" partition-key="k">x</log-to-eventhub>"#,
                "not both",
            ),
            (
                r#"<log-to-eventhub logger-id="l" partition="1">x</log-to-eventhub>"#,
                "no attribute 'partition'",
            ),
            (
                r#"<log-to-eventhub logger-id="l"><message/></log-to-eventhub>"#,
                "must hold text",
            ),
            (
                r#"<log-to-eventhub logger-id="l">@(context.Nope(</log-to-eventhub>"#,
                "1:51: the expression starting here does not close",
            ),
        ] {
            let errors = errors_inbound(inner);
            assert!(
                errors.iter().any(|e| e.contains(wanted)),
                "{inner}: {errors:?}"
            );
        }
        let errors = errors_inbound(
            "\n<log-to-eventhub logger-id=\"l\"\n    partition-id=\"1\" partition-key=\"k\">x</log-to-eventhub>",
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("3:22:"), "{errors:?}");
    }

    #[test]
    fn every_section_takes_it() {
        for section in ["inbound", "backend", "outbound", "on-error"] {
            let errors = errors_in(
                section,
                r#"<log-to-eventhub logger-id="l">m</log-to-eventhub>"#,
            );
            assert!(errors.is_empty(), "{section}: {errors:?}");
        }
    }

    #[test]
    fn a_logger_that_does_not_exist_is_refused_where_the_compile_knows() {
        struct Only;
        impl crate::compile::Known for Only {
            fn backend(&self, _: &str) -> Option<bool> {
                None
            }
            fn certificate(&self, _: &str) -> Option<bool> {
                None
            }
            fn logger(&self, id: &str) -> Option<bool> {
                Some(id == "there")
            }
        }
        let compile = |xml: &str| {
            crate::compile::compile_checked(
                &format!("<policies><outbound>{xml}</outbound></policies>"),
                crate::Scope::Api,
                &crate::NoNamedValues,
                &crate::NoFragments,
                crate::Mode::Strict,
                &Only,
            )
        };
        let (doc, diags) = compile(r#"<log-to-eventhub logger-id="gone">m</log-to-eventhub>"#);
        assert!(doc.is_none());
        assert!(
            diags[0]
                .message
                .contains("logger 'gone' does not exist; create it with PUT /mgmt/loggers/gone"),
            "{diags:?}"
        );
        assert_eq!((diags[0].line, diags[0].column), (1, 38));
        let (doc, _) = compile(r#"<log-to-eventhub logger-id="there">m</log-to-eventhub>"#);
        assert!(doc.is_some());
        // Offline, nothing is known: accepted.
        let offline = crate::compile::check_offline(
            r#"<policies><inbound><log-to-eventhub logger-id="anything">@(context.RequestId.ToString())</log-to-eventhub></inbound></policies>"#,
            None,
        );
        assert!(offline.is_empty(), "{offline:?}");
    }
}
