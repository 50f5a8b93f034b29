//! `<rewrite-uri template="/v2/items/{id}" copy-unmatched-params="true"/>`: changes the path (and
//! query) the backend receives. `{name}` takes the operation's matched template parameter or the
//! request's query parameter of that name; query parameters the template does not use are
//! copied unless `copy-unmatched-params="false"`.

use crate::compile::Cx;
use crate::exchange::Exchange;
use crate::run::{Budget, Flow, PolicyError};
use crate::text::PolicyText;
use crate::xml::Element;

use super::set_query_parameter::{decode, encode};

#[derive(Debug, Clone)]
pub struct RewriteUri {
    pub template: PolicyText,
    pub copy_unmatched: bool,
}

impl RewriteUri {
    pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Self> {
        cx.allow_attrs(el, &["template", "copy-unmatched-params"]);
        cx.no_children(el);
        let template = cx.req_text(el, "template")?;
        if let Some(t) = template.as_literal()
            && !t.starts_with('/')
            && !t.is_empty()
        {
            let pos = el.attr("template").map_or(el.pos, |a| a.pos);
            cx.error(pos, format!("template '{t}' must start with '/'"));
            return None;
        }
        let copy_unmatched = cx.bool_attr(el, "copy-unmatched-params", true);
        Some(Self {
            template,
            copy_unmatched,
        })
    }

    pub fn run(&self, ex: &mut Exchange, budget: &mut Budget) -> Result<Flow, PolicyError> {
        let template = self.template.eval(ex, budget)?.into_owned();
        let original: Vec<(String, String)> = ex
            .request
            .query
            .as_deref()
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                (
                    decode(p.split_once('=').map_or(p, |(n, _)| n)),
                    p.to_owned(),
                )
            })
            .collect();
        let mut used: Vec<String> = Vec::new();
        let mut out = String::with_capacity(template.len() + 16);
        let mut rest = template.as_str();
        while let Some(start) = rest.find('{') {
            out.push_str(&rest[..start]);
            let after = &rest[start + 1..];
            let Some(end) = after.find('}') else {
                out.push_str(&rest[start..]);
                rest = "";
                break;
            };
            let name = &after[..end];
            let value = ex
                .info
                .matched
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
                .or_else(|| {
                    original
                        .iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, raw)| decode(raw.split_once('=').map_or("", |(_, v)| v)))
                })
                .unwrap_or_default();
            used.push(name.to_owned());
            // Path parameters keep their raw form; query values are encoded.
            if out.contains('?') {
                out.push_str(&encode(&value));
            } else {
                out.push_str(&value);
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        let (path, query) = match out.split_once('?') {
            Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
            None => (out, None),
        };
        let mut pairs: Vec<String> = query
            .iter()
            .flat_map(|q| q.split('&'))
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect();
        if self.copy_unmatched {
            let in_template: Vec<String> = pairs
                .iter()
                .map(|p| decode(p.split_once('=').map_or(p.as_str(), |(n, _)| n)))
                .collect();
            for (name, raw) in &original {
                if !used.contains(name) && !in_template.contains(name) {
                    pairs.push(raw.clone());
                }
            }
        }
        ex.request.path = path;
        ex.request.query = (!pairs.is_empty()).then(|| pairs.join("&"));
        Ok(Flow::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;

    #[test]
    fn template_parameters_and_unmatched_query() {
        let p = pipeline(
            r#"<policies><inbound><rewrite-uri template="/v2/things/{id}?sort={sort}" /></inbound>
               <backend><forward-request/></backend></policies>"#,
        );
        let mut ex = exchange("GET", "/items/42?sort=desc&page=2", &[]);
        ex.info.matched = vec![("id".into(), "42".into())];
        let io = run(&p, &mut ex);
        let sent = io.forwarded.unwrap();
        assert_eq!(sent.path, "/v2/things/42");
        assert_eq!(sent.query.as_deref(), Some("sort=desc&page=2"));

        let p = pipeline(
            r#"<policies><inbound><rewrite-uri template="/only/{id}" copy-unmatched-params="false" /></inbound>
               <backend><forward-request/></backend></policies>"#,
        );
        let mut ex = exchange("GET", "/items/7?page=2", &[]);
        ex.info.matched = vec![("id".into(), "7".into())];
        let sent = run(&p, &mut ex).forwarded.unwrap();
        assert_eq!(
            (sent.path.as_str(), sent.query.as_deref()),
            ("/only/7", None)
        );
    }
}
