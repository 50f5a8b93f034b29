//! `<set-backend-service base-url="https://…"/>` or `<set-backend-service backend-id="…"/>`:
//! sends this request to another backend, by URL or as a backend resource (`/mgmt/backends`,
//! with its credentials and TLS settings). The gateway looks the backend up when it forwards;
//! a literal id the compile can check (the control plane, on save) must exist.
//!
//! `<set-backend-service backend-id="dapr" dapr-app-id="…" dapr-method="…" dapr-namespace="…"/>`
//! (inbound) sends it to a Dapr application instead, through the sidecar's service invocation
//! API: the request goes to exactly `{sidecar}/v1.0/invoke/{app-id}[.{namespace}]/method/{method}`
//! with its query string, as in Azure.

use std::sync::Arc;

use crate::compile::Cx;
use crate::exchange::Exchange;
use crate::run::{Budget, Flow, PolicyError};
use crate::text::PolicyText;
use crate::xml::Element;

#[derive(Debug, Clone)]
pub enum SetBackendService {
    BaseUrl(PolicyText),
    /// A literal id, shared by every request (no copy per request), or an expression.
    BackendId(Result<Arc<str>, PolicyText>),
    /// `backend-id="dapr"` with the Dapr application's id, method and namespace.
    Dapr {
        app_id: PolicyText,
        method: PolicyText,
        namespace: Option<PolicyText>,
    },
}

const DAPR_ATTRIBUTES: [&str; 3] = ["dapr-app-id", "dapr-method", "dapr-namespace"];

impl SetBackendService {
    pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Self> {
        cx.allow_attrs(
            el,
            &[
                "base-url",
                "backend-id",
                "dapr-app-id",
                "dapr-method",
                "dapr-namespace",
            ],
        );
        cx.no_children(el);
        if let Some(first) = DAPR_ATTRIBUTES.iter().find_map(|a| el.attr(a)) {
            return Self::compile_dapr(el, cx, first.pos);
        }
        match (el.attr("base-url"), el.attr("backend-id")) {
            (Some(_), Some(a)) => {
                cx.error(a.pos, "give either base-url or backend-id, not both");
                None
            }
            (None, None) => {
                cx.error(
                    el.pos,
                    "<set-backend-service> needs the attribute 'base-url' or 'backend-id'",
                );
                None
            }
            (None, Some(a)) => {
                let pos = a.pos;
                let text = cx.req_text(el, "backend-id")?;
                let Some(id) = text.as_literal().map(str::trim) else {
                    return Some(Self::BackendId(Err(text)));
                };
                if id.is_empty() {
                    cx.error(pos, "backend-id is empty");
                    return None;
                }
                if cx.known.backend(id) == Some(false) {
                    cx.error(
                        pos,
                        format!(
                            "backend '{id}' does not exist; create it with PUT /mgmt/backends/{id}"
                        ),
                    );
                    return None;
                }
                Some(Self::BackendId(Ok(Arc::from(id))))
            }
            (Some(a), None) => {
                let pos = a.pos;
                let base_url = cx.req_text(el, "base-url")?;
                if base_url.as_literal().is_some_and(|u| u.trim().is_empty()) {
                    // Azure saves it (templates leave it to be filled in); it changes nothing.
                    cx.warning(
                        pos,
                        "base-url is empty: this <set-backend-service> changes nothing; give the backend's URL",
                    );
                    return Some(Self::BaseUrl(base_url));
                }
                if let Some(u) = base_url.as_literal()
                    && !(u.starts_with("http://") || u.starts_with("https://"))
                {
                    cx.error(
                        pos,
                        format!("base-url '{u}' must be an absolute http:// or https:// URL"),
                    );
                    return None;
                }
                Some(Self::BaseUrl(base_url))
            }
        }
    }

    /// The Dapr form: `backend-id="dapr"`, `dapr-app-id` and `dapr-method` required.
    fn compile_dapr(el: &Element, cx: &mut Cx<'_>, at: crate::xml::Pos) -> Option<Self> {
        let is_dapr = el
            .attr("backend-id")
            .is_some_and(|a| a.value.trim() == "dapr");
        if !is_dapr || el.attr("base-url").is_some() {
            cx.error(
                at,
                "dapr-app-id, dapr-method and dapr-namespace go with backend-id=\"dapr\" (and no base-url)",
            );
            return None;
        }
        if cx.section != crate::compile::Section::Inbound {
            cx.error(
                el.pos,
                "<set-backend-service backend-id=\"dapr\"> is allowed in <inbound> only, as in Azure",
            );
            return None;
        }
        let app_id = cx.req_text(el, "dapr-app-id");
        let method = cx.req_text(el, "dapr-method");
        let namespace = cx.opt_text(el, "dapr-namespace");
        Some(Self::Dapr {
            app_id: app_id?,
            method: method?,
            namespace,
        })
    }

    pub fn texts(&self) -> Vec<&PolicyText> {
        match self {
            Self::BaseUrl(t) | Self::BackendId(Err(t)) => vec![t],
            Self::BackendId(Ok(_)) => vec![],
            Self::Dapr {
                app_id,
                method,
                namespace,
            } => {
                let mut t = vec![app_id, method];
                t.extend(namespace.iter());
                t
            }
        }
    }

    pub fn run(&self, ex: &mut Exchange, budget: &mut Budget) -> Result<Flow, PolicyError> {
        match self {
            Self::BaseUrl(text) if text.as_literal().is_some_and(|u| u.trim().is_empty()) => {}
            Self::BaseUrl(text) => {
                let url = text.eval(ex, budget)?.trim().to_owned();
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(PolicyError::runtime(
                        "InvalidBackendUrl",
                        format!("'{url}' is not an absolute http:// or https:// URL"),
                    ));
                }
                ex.backend_url = Some(url);
                ex.backend_id = None;
                ex.dapr_invoke = None;
            }
            Self::BackendId(id) => {
                let id = match id {
                    Ok(id) => id.clone(),
                    Err(text) => {
                        let id = text.eval(ex, budget)?;
                        let id = id.trim();
                        if id.is_empty() {
                            return Err(PolicyError::runtime(
                                "BackendNotFound",
                                "the backend-id expression gave an empty id",
                            ));
                        }
                        Arc::from(id)
                    }
                };
                ex.backend_id = Some(id);
                ex.backend_url = None;
                ex.dapr_invoke = None;
            }
            Self::Dapr {
                app_id,
                method,
                namespace,
            } => {
                let app = app_id.eval(ex, budget)?.trim().to_owned();
                let method = method.eval(ex, budget)?.trim().to_owned();
                if app.is_empty() || method.is_empty() {
                    return Err(PolicyError::runtime(
                        "ExpressionValueEvaluationFailure",
                        "dapr-app-id and dapr-method must not be empty",
                    ));
                }
                let mut path = format!("/v1.0/invoke/{}", super::dapr::segment(&app));
                if let Some(ns) = namespace {
                    let ns = ns.eval(ex, budget)?;
                    let ns = ns.trim();
                    if !ns.is_empty() {
                        path.push('.');
                        path.push_str(&super::dapr::segment(ns));
                    }
                }
                path.push_str("/method/");
                path.push_str(&super::dapr::path(method.trim_start_matches('/')));
                ex.dapr_invoke = Some(path);
                ex.backend_url = None;
                ex.backend_id = None;
            }
        }
        Ok(Flow::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;

    /// Azure saves `base-url=""` (templates leave it to be filled in): a warning, and the
    /// request goes where it went.
    #[test]
    fn an_empty_base_url_is_a_warning_and_changes_nothing() {
        let (doc, diags) = crate::compile::compile(
            r#"<policies><inbound><set-backend-service base-url="" /></inbound><backend><forward-request/></backend></policies>"#,
            crate::Scope::Api,
            &crate::NoNamedValues,
            crate::Mode::Strict,
        );
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert_eq!(diags[0].severity, crate::Severity::Warning);
        assert!(diags[0].message.contains("base-url is empty"));
        let p = crate::run::Pipeline::compose(&doc.unwrap(), None, None, None);
        let mut ex = exchange("GET", "/", &[]);
        let io = run(&p, &mut ex);
        assert!(io.forwarded.is_some());
        assert_eq!(ex.backend_url, None);
    }

    #[test]
    fn backend_id_is_set_and_the_last_choice_wins() {
        let p = pipeline(
            r#"<policies><inbound>
                <set-backend-service base-url="http://elsewhere.test/" />
                <set-backend-service backend-id="orders" />
            </inbound><backend><forward-request/></backend></policies>"#,
        );
        let mut ex = exchange("GET", "/", &[]);
        run(&p, &mut ex);
        assert_eq!(ex.backend_id.as_deref(), Some("orders"));
        assert!(ex.backend_url.is_none());
        let p = pipeline(
            r#"<policies><inbound>
                <set-backend-service backend-id="@(&quot;b-&quot; + context.Request.Headers.GetValueOrDefault(&quot;X-B&quot;, &quot;&quot;))" />
                <set-backend-service base-url="http://elsewhere.test/" />
            </inbound><backend><forward-request/></backend></policies>"#,
        );
        let mut ex = exchange("GET", "/", &[("X-B", "1")]);
        run(&p, &mut ex);
        assert!(ex.backend_id.is_none());
        assert_eq!(ex.backend_url.as_deref(), Some("http://elsewhere.test/"));
    }

    #[test]
    fn dapr_sends_the_request_to_the_sidecars_invoke_api() {
        let p = pipeline(
            r#"<policies><inbound>
                <set-backend-service base-url="http://elsewhere.test/" />
                <set-backend-service backend-id="dapr" dapr-app-id="echo" dapr-method="@(&quot;back/&quot; + context.Request.Headers.GetValueOrDefault(&quot;X-M&quot;, &quot;&quot;))" dapr-namespace="echo-app" />
            </inbound><backend><forward-request/></backend></policies>"#,
        );
        let mut ex = exchange("GET", "/", &[("X-M", "a b")]);
        run(&p, &mut ex);
        assert_eq!(
            ex.dapr_invoke.as_deref(),
            Some("/v1.0/invoke/echo.echo-app/method/back/a%20b")
        );
        assert!(ex.backend_url.is_none() && ex.backend_id.is_none());
        // Without a namespace; a later set-backend-service replaces it.
        let p = pipeline(
            r#"<policies><inbound>
                <set-backend-service backend-id="dapr" dapr-app-id="orders" dapr-method="/list" />
            </inbound><backend><forward-request/></backend></policies>"#,
        );
        let mut ex = exchange("GET", "/", &[]);
        run(&p, &mut ex);
        assert_eq!(
            ex.dapr_invoke.as_deref(),
            Some("/v1.0/invoke/orders/method/list")
        );
        let p = pipeline(
            r#"<policies><inbound>
                <set-backend-service backend-id="dapr" dapr-app-id="orders" dapr-method="list" />
                <set-backend-service backend-id="other" />
            </inbound><backend><forward-request/></backend></policies>"#,
        );
        let mut ex = exchange("GET", "/", &[]);
        run(&p, &mut ex);
        assert!(ex.dapr_invoke.is_none());
        assert_eq!(ex.backend_id.as_deref(), Some("other"));
    }

    #[test]
    fn dapr_attributes_are_checked() {
        for (inner, wanted) in [
            (
                r#"<set-backend-service backend-id="dapr" dapr-method="m" />"#,
                "needs the attribute 'dapr-app-id'",
            ),
            (
                r#"<set-backend-service backend-id="dapr" dapr-app-id="a" />"#,
                "needs the attribute 'dapr-method'",
            ),
            (
                r#"<set-backend-service backend-id="orders" dapr-app-id="a" dapr-method="m" />"#,
                "go with backend-id=\"dapr\"",
            ),
            (
                r#"<set-backend-service base-url="http://x" dapr-app-id="a" dapr-method="m" />"#,
                "go with backend-id=\"dapr\"",
            ),
        ] {
            let e = errors_inbound(inner);
            assert!(e.iter().any(|m| m.contains(wanted)), "{inner}: {e:?}");
        }
        let e = errors_in(
            "backend",
            r#"<set-backend-service backend-id="dapr" dapr-app-id="a" dapr-method="m" />"#,
        );
        assert!(e[0].contains("<inbound> only"), "{e:?}");
    }

    #[test]
    fn attributes_are_checked() {
        let e = errors_inbound(r#"<set-backend-service />"#);
        assert!(e[0].contains("'base-url' or 'backend-id'"), "{e:?}");
        let e = errors_inbound(r#"<set-backend-service base-url="http://a" backend-id="b" />"#);
        assert!(e[0].contains("not both"), "{e:?}");
        let e = errors_inbound(r#"<set-backend-service backend-id=" " />"#);
        assert!(e[0].contains("empty"), "{e:?}");
        let e = errors_inbound(r#"<set-backend-service base-url="ftp://a" />"#);
        assert!(e[0].contains("absolute http"), "{e:?}");
    }

    #[test]
    fn a_literal_backend_that_does_not_exist_is_refused_where_the_compile_knows() {
        struct Only;
        impl crate::compile::Known for Only {
            fn backend(&self, id: &str) -> Option<bool> {
                Some(id == "there")
            }
            fn certificate(&self, _: &str) -> Option<bool> {
                None
            }
        }
        let compile = |xml: &str| {
            crate::compile::compile_checked(
                &format!("<policies><inbound>{xml}</inbound></policies>"),
                crate::Scope::Api,
                &crate::NoNamedValues,
                &crate::NoFragments,
                crate::Mode::Strict,
                &Only,
            )
        };
        let (doc, diags) = compile(r#"<set-backend-service backend-id="gone" />"#);
        assert!(doc.is_none());
        assert!(
            diags[0].message.contains("backend 'gone' does not exist"),
            "{diags:?}"
        );
        assert_eq!(diags[0].line, 1);
        assert!(
            compile(r#"<set-backend-service backend-id="there" />"#)
                .0
                .is_some()
        );
        // An expression is checked when a request runs.
        assert!(
            compile(r#"<set-backend-service backend-id="@(&quot;gone&quot;)" />"#)
                .0
                .is_some()
        );
    }
}
