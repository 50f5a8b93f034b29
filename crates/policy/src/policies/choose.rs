//! `<choose><when condition="@(…)">…</when>…<otherwise>…</otherwise></choose>`: runs the
//! policies of the first `when` whose condition holds, else those of `otherwise`.

use crate::compile::Cx;
use crate::exchange::Exchange;
use crate::run::{Budget, Flow, Io, PolicyError, run_steps};
use crate::text::PolicyText;
use crate::xml::Element;

use super::Step;

#[derive(Debug, Clone)]
pub struct Choose {
    pub branches: Vec<(PolicyText, Vec<Step>)>,
    pub otherwise: Vec<Step>,
}

impl Choose {
    pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Self> {
        cx.allow_attrs(el, &[]);
        cx.allow_children(el, &["when", "otherwise"]);
        let mut branches = Vec::new();
        let mut otherwise = Vec::new();
        let mut seen_otherwise = false;
        let mut whens = 0;
        let mut ok = true;
        for child in el.elements() {
            match child.name.as_str() {
                "when" => {
                    whens += 1;
                    if seen_otherwise {
                        cx.error(child.pos, "<when> must come before <otherwise>");
                        ok = false;
                    }
                    cx.allow_attrs(child, &["condition"]);
                    let condition = cx.req_text(child, "condition");
                    let steps = cx.steps(child);
                    match condition {
                        Some(c) => branches.push((c, steps)),
                        None => ok = false,
                    }
                }
                "otherwise" => {
                    if seen_otherwise {
                        cx.error(child.pos, "<choose> has more than one <otherwise>");
                        ok = false;
                    }
                    seen_otherwise = true;
                    cx.allow_attrs(child, &[]);
                    otherwise = cx.steps(child);
                }
                _ => {}
            }
        }
        if whens == 0 {
            cx.error(el.pos, "<choose> needs at least one <when condition=\"…\">");
            return None;
        }
        ok.then_some(Self {
            branches,
            otherwise,
        })
    }

    pub fn any(&self, f: impl Fn(&Step) -> bool) -> bool {
        self.branches
            .iter()
            .flat_map(|(_, s)| s)
            .chain(&self.otherwise)
            .any(f)
    }

    pub fn conditions_read_body(&self) -> bool {
        self.branches
            .iter()
            .any(|(c, _)| c.source().is_some_and(|s| s.contains(".Body")))
    }

    pub async fn run<I: Io>(
        &self,
        ex: &mut Exchange,
        io: &mut I,
        budget: &mut Budget,
    ) -> Result<Flow, PolicyError> {
        for (condition, steps) in &self.branches {
            if condition.eval_bool(ex, budget)? {
                return run_steps(steps, ex, io, budget).await;
            }
        }
        run_steps(&self.otherwise, ex, io, budget).await
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;

    #[test]
    fn first_true_branch_wins() {
        let p = pipeline(
            r#"<policies><inbound>
                <choose>
                    <when condition="@(context.Request.Headers.GetValueOrDefault(&quot;X-Tier&quot;, &quot;&quot;) == &quot;gold&quot;)">
                        <set-header name="X-Branch"><value>gold</value></set-header>
                    </when>
                    <when condition="@(context.Request.Method == "POST")">
                        <set-header name="X-Branch"><value>post</value></set-header>
                    </when>
                    <otherwise>
                        <set-header name="X-Branch"><value>other</value></set-header>
                    </otherwise>
                </choose>
            </inbound><backend><forward-request/></backend></policies>"#,
        );
        for (method, tier, want) in [
            ("GET", "gold", "gold"),
            ("POST", "x", "post"),
            ("GET", "x", "other"),
        ] {
            let mut ex = exchange(method, "/", &[("X-Tier", tier)]);
            let io = run(&p, &mut ex);
            assert_eq!(all(&io.forwarded.unwrap().headers, "x-branch"), [want]);
        }
    }

    #[test]
    fn a_when_that_fails_reports_its_own_error_not_an_empty_choose() {
        let errors = errors_inbound(
            r#"<choose><when condition="@(context.Nope)"><set-header name="x"><value>1</value></set-header></when></choose>"#,
        );
        assert!(
            errors.iter().any(|e| e.contains("invalid expression")),
            "{errors:?}"
        );
        assert!(
            !errors.iter().any(|e| e.contains("at least one <when")),
            "{errors:?}"
        );
    }

    #[test]
    fn nested_policies_are_checked_for_their_section() {
        let errors = errors_inbound(
            r#"<choose><when condition="@(true)"><forward-request/></when></choose>"#,
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("not allowed in <inbound>")),
            "{errors:?}"
        );
        let errors = errors_inbound(r#"<choose><otherwise/></choose>"#);
        assert!(
            errors.iter().any(|e| e.contains("at least one <when")),
            "{errors:?}"
        );
    }
}
