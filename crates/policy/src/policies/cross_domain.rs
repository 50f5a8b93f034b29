//! `<cross-domain>` (global policy, inbound): the Adobe cross-domain policy file that Flash and
//! Silverlight clients read before calling an API. The gateway answers `GET /crossdomain.xml`
//! with it (see [`CrossDomain::document`]); for any other request the policy does nothing.
//!
//! ```xml
//! <cross-domain>
//!   <cross-domain-policy>
//!     <allow-http-request-headers-from domain="*" headers="*" />
//!   </cross-domain-policy>
//! </cross-domain>
//! ```
//!
//! The content is the policy file, written as is (Azure's own example leaves out the
//! `<cross-domain-policy>` root, which is then added). As in Azure, the policy belongs to the
//! global scope: elsewhere it is refused, since no API's path is `/crossdomain.xml`.

use std::sync::Arc;

use crate::compile::{Cx, Scope};
use crate::xml::{Element, Node};

#[derive(Debug, Clone)]
pub struct CrossDomain {
    document: Arc<str>,
}

impl CrossDomain {
    pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Self> {
        cx.allow_attrs(el, &[]);
        if cx.scope != Scope::Global {
            cx.error(
                el.pos,
                format!(
                    "<cross-domain> answers /crossdomain.xml for the whole gateway and may only be used in the global policy, not at the {} scope",
                    cx.scope.name()
                ),
            );
            return None;
        }
        if let Some(Node::Text(_, pos, _)) =
            el.children.iter().find(|n| matches!(n, Node::Text(..)))
        {
            cx.error(
                *pos,
                "<cross-domain> holds the elements of a cross-domain policy file, not text",
            );
            return None;
        }
        let inner = el.inner_raw.trim();
        let rooted = el.elements().count() == 1
            && el
                .elements()
                .next()
                .is_some_and(|e| e.name == "cross-domain-policy");
        let document = if rooted {
            format!("<?xml version=\"1.0\"?>\n{inner}\n")
        } else {
            format!(
                "<?xml version=\"1.0\"?>\n<cross-domain-policy>\n{inner}\n</cross-domain-policy>\n"
            )
        };
        Some(Self {
            document: document.into(),
        })
    }

    /// The `/crossdomain.xml` the gateway serves.
    pub fn document(&self) -> &Arc<str> {
        &self.document
    }
}

#[cfg(test)]
mod tests {
    use crate::compile::{self, Mode, NoNamedValues, Scope, Section};
    use crate::policies::Step;

    fn compiled(xml: &str, scope: Scope) -> Result<String, Vec<String>> {
        let doc = format!("<policies><inbound>{xml}</inbound></policies>");
        let (d, diags) = compile::compile(&doc, scope, &NoNamedValues, Mode::Strict);
        match d {
            Some(d) => match &d.section(Section::Inbound)[0] {
                Step::CrossDomain(c) => Ok(c.document().to_string()),
                other => panic!("{other:?}"),
            },
            None => Err(diags.into_iter().map(|d| d.message).collect()),
        }
    }

    #[test]
    fn the_policy_file_is_served_as_written_or_given_its_root() {
        assert_eq!(
            compiled(
                r#"<cross-domain><cross-domain-policy><allow-access-from domain="*.contoso.com" /></cross-domain-policy></cross-domain>"#,
                Scope::Global
            )
            .unwrap(),
            "<?xml version=\"1.0\"?>\n<cross-domain-policy><allow-access-from domain=\"*.contoso.com\" /></cross-domain-policy>\n"
        );
        assert_eq!(
            compiled(
                r#"<cross-domain>
                    <allow-http-request-headers-from domain='*' headers='*' />
                </cross-domain>"#,
                Scope::Global
            )
            .unwrap(),
            "<?xml version=\"1.0\"?>\n<cross-domain-policy>\n<allow-http-request-headers-from domain='*' headers='*' />\n</cross-domain-policy>\n"
        );
    }

    #[test]
    fn only_the_global_policy_may_hold_it() {
        let e = compiled(
            "<cross-domain><cross-domain-policy/></cross-domain>",
            Scope::Api,
        )
        .unwrap_err();
        assert!(
            e[0].contains("may only be used in the global policy, not at the api scope"),
            "{e:?}"
        );
        let e = compiled("<cross-domain>allow all</cross-domain>", Scope::Global).unwrap_err();
        assert!(e[0].contains("not text"), "{e:?}");
    }
}
