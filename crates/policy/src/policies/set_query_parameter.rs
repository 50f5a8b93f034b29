//! `<set-query-parameter name="q" exists-action="…"><value>…</value></set-query-parameter>`:
//! adds, replaces or removes a query parameter of the request to the backend.

use crate::compile::Cx;
use crate::exchange::Exchange;
use crate::run::{Budget, Flow, PolicyError};
use crate::text::PolicyText;
use crate::xml::Element;

use super::set_header::ExistsAction;

#[derive(Debug, Clone)]
pub struct SetQueryParameter {
    pub name: String,
    pub action: ExistsAction,
    pub values: Vec<PolicyText>,
}

impl SetQueryParameter {
    pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Self> {
        cx.allow_attrs(el, &["name", "exists-action"]);
        cx.allow_children(el, &["value"]);
        let name = cx.req_literal(el, "name")?.trim().to_owned();
        if name.is_empty() {
            cx.error(el.pos, "<set-query-parameter> needs a non-empty name");
            return None;
        }
        let action = match cx.choice(
            el,
            "exists-action",
            &["override", "skip", "append", "delete"],
            "override",
        ) {
            "skip" => ExistsAction::Skip,
            "append" => ExistsAction::Append,
            "delete" => ExistsAction::Delete,
            _ => ExistsAction::Override,
        };
        let mut values = Vec::new();
        for v in el.elements().filter(|e| e.name == "value") {
            values.push(cx.content(v)?);
        }
        if values.is_empty() && action != ExistsAction::Delete {
            cx.error(
                el.pos,
                "<set-query-parameter> needs at least one <value>, unless exists-action=\"delete\"",
            );
            return None;
        }
        Some(Self {
            name,
            action,
            values,
        })
    }

    pub fn texts(&self) -> Vec<&PolicyText> {
        self.values.iter().collect()
    }

    pub fn run(&self, ex: &mut Exchange, budget: &mut Budget) -> Result<Flow, PolicyError> {
        let mut values = Vec::with_capacity(self.values.len());
        for v in &self.values {
            values.push(encode(&v.eval(ex, budget)?));
        }
        let query = ex.request.query.take().unwrap_or_default();
        let mut pairs: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
        let is_ours = |p: &&str| decode(p.split_once('=').map_or(*p, |(n, _)| n)) == self.name;
        let exists = pairs.iter().any(is_ours);
        let name = encode(&self.name);
        let fresh: Vec<String> = values.iter().map(|v| format!("{name}={v}")).collect();
        match self.action {
            ExistsAction::Delete => pairs.retain(|p| !is_ours(p)),
            ExistsAction::Skip if exists => {}
            ExistsAction::Override | ExistsAction::Skip => pairs.retain(|p| !is_ours(p)),
            ExistsAction::Append => {}
        }
        let mut out: Vec<String> = pairs.iter().map(|p| (*p).to_owned()).collect();
        if !(self.action == ExistsAction::Delete || (self.action == ExistsAction::Skip && exists)) {
            out.extend(fresh);
        }
        ex.request.query = (!out.is_empty()).then(|| out.join("&"));
        Ok(Flow::Continue)
    }
}

/// Percent-encodes a query component.
pub(crate) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes a percent-encoded query component (`+` is a space).
pub(crate) fn decode(text: &str) -> String {
    decode_component(text, true)
}

/// Decodes a percent-encoded URL component; `+` is a space in a query, itself in a path.
pub(crate) fn decode_component(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' if plus_is_space => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let h = (bytes[i + 1] as char).to_digit(16);
                let l = (bytes[i + 2] as char).to_digit(16);
                match (h, l) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;

    #[test]
    fn override_append_skip_delete() {
        let p = pipeline(
            r#"<policies><inbound>
                <set-query-parameter name="a" exists-action="override"><value>1 2</value></set-query-parameter>
                <set-query-parameter name="b" exists-action="append"><value>x</value></set-query-parameter>
                <set-query-parameter name="c" exists-action="skip"><value>new</value></set-query-parameter>
                <set-query-parameter name="d" exists-action="delete"/>
                <set-query-parameter name="e"><value>@(context.Request.Method)</value></set-query-parameter>
            </inbound><backend><forward-request/></backend></policies>"#,
        );
        let mut ex = exchange("GET", "/x?a=old&b=1&c=keep&d=gone", &[]);
        let io = run(&p, &mut ex);
        assert_eq!(
            io.forwarded.unwrap().query.as_deref(),
            Some("b=1&c=keep&a=1%202&b=x&e=GET")
        );
    }

    #[test]
    fn decoding() {
        assert_eq!(super::decode("a%20b+c%zz%4"), "a b c%zz%4");
    }
}
