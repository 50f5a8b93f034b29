use super::super::testkit::*;
use crate::run::Pipeline;

const POLICY: &str = r#"<policies><inbound>
    <check-header name="X-Required" failed-check-httpcode="401" failed-check-error-message="no" />
    <cors allow-credentials="true">
        <allowed-origins>
            <origin>http://localhost:8080/</origin>
            <origin>https://example.com</origin>
        </allowed-origins>
        <allowed-methods preflight-result-max-age="300">
            <method>GET</method>
            <method>POST</method>
            <method>@("PAT" + "CH")</method>
        </allowed-methods>
        <allowed-headers>
            <header>x-zumo-auth</header>
            <header>Content-Type</header>
        </allowed-headers>
        <expose-headers>
            <header>x-zumo-installation-id</header>
            <header>x-zumo-application</header>
        </expose-headers>
    </cors>
</inbound><backend><forward-request /></backend></policies>"#;

fn preflight(
    p: &Pipeline,
    origin: &str,
    method: &str,
    headers: Option<&str>,
) -> (u16, Vec<(String, String)>, bool) {
    let mut h = vec![
        ("Origin", origin),
        ("Access-Control-Request-Method", method),
    ];
    if let Some(v) = headers {
        h.push(("Access-Control-Request-Headers", v));
    }
    let mut ex = exchange("OPTIONS", "/items", &h);
    let io = run(p, &mut ex);
    let r = ex.response.unwrap();
    assert!(r.body.unwrap().is_empty());
    let mut hs: Vec<(String, String)> = r
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned()))
        .collect();
    hs.sort();
    (r.status.as_u16(), hs, io.forwarded.is_some())
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = list
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    v.sort();
    v
}

#[test]
fn a_matching_preflight_is_answered_at_the_gateway() {
    let p = pipeline(POLICY);
    // check-header would refuse this request: on a preflight only cors runs.
    let got = preflight(
        &p,
        "http://localhost:8080",
        "PATCH",
        Some("X-ZUMO-AUTH, content-type"),
    );
    assert_eq!(
        got,
        (
            200,
            pairs(&[
                ("access-control-allow-origin", "http://localhost:8080"),
                ("access-control-allow-credentials", "true"),
                ("access-control-allow-methods", "PATCH"),
                ("access-control-allow-headers", "X-ZUMO-AUTH, content-type"),
                ("access-control-max-age", "300"),
                ("vary", "Origin"),
            ]),
            false
        )
    );
    // Default ports and case do not matter.
    let (status, headers, _) = preflight(&p, "HTTPS://EXAMPLE.com:443", "GET", None);
    assert_eq!(status, 200);
    assert!(headers.contains(&(
        "access-control-allow-origin".into(),
        "HTTPS://EXAMPLE.com:443".into()
    )));
    assert!(
        !headers
            .iter()
            .any(|(k, _)| k == "access-control-allow-headers")
    );
}

#[test]
fn a_preflight_that_does_not_match_gets_an_empty_200() {
    let p = pipeline(POLICY);
    for (origin, method, headers) in [
        ("http://evil.test", "GET", None),
        ("http://localhost:8081", "GET", None),
        ("http://localhost:8080", "DELETE", None),
        ("http://localhost:8080", "GET", Some("x-other")),
        ("null", "GET", None),
    ] {
        let (status, hs, forwarded) = preflight(&p, origin, method, headers);
        assert_eq!(
            (status, hs, forwarded),
            (200, vec![], false),
            "{origin} {method} {headers:?}"
        );
    }
}

#[test]
fn without_allowed_methods_get_and_post_are_allowed() {
    let p = pipeline(
        r#"<policies><inbound><cors><allowed-origins><origin>*</origin></allowed-origins><allowed-headers><header>*</header></allowed-headers></cors></inbound>
        <backend><forward-request /></backend></policies>"#,
    );
    let (_, hs, _) = preflight(&p, "http://any.test", "POST", Some("x-anything"));
    assert_eq!(
        hs,
        pairs(&[
            ("access-control-allow-origin", "*"),
            ("access-control-allow-methods", "POST"),
            ("access-control-allow-headers", "x-anything"),
        ])
    );
    assert_eq!(preflight(&p, "http://any.test", "PUT", None).1, vec![]);
}

#[test]
fn an_unmatched_preflight_falls_through_to_the_next_cors_when_not_terminating() {
    let api = document(
        r#"<policies><inbound>
            <cors terminate-unmatched-request="false"><allowed-origins><origin>http://a.test</origin></allowed-origins><allowed-headers><header>*</header></allowed-headers></cors>
            <base />
        </inbound></policies>"#,
    );
    let global = document(
        r#"<policies><inbound>
            <cors><allowed-origins><origin>http://b.test</origin></allowed-origins><allowed-headers><header>*</header></allowed-headers></cors>
        </inbound><backend><forward-request /></backend></policies>"#,
    );
    let p = Pipeline::compose(&global, None, Some(&api), None);
    assert_eq!(p.cors.len(), 2);
    let origin = |o: &str| {
        preflight(&p, o, "GET", None)
            .1
            .into_iter()
            .find(|(k, _)| k == "access-control-allow-origin")
            .map(|(_, v)| v)
    };
    assert_eq!(origin("http://a.test").as_deref(), Some("http://a.test"));
    assert_eq!(origin("http://b.test").as_deref(), Some("http://b.test"));
    assert_eq!(origin("http://c.test"), None);
    // The first policy terminating stops the search.
    let api = document(
        r#"<policies><inbound>
            <cors><allowed-origins><origin>http://a.test</origin></allowed-origins><allowed-headers><header>*</header></allowed-headers></cors>
            <base />
        </inbound></policies>"#,
    );
    let p = Pipeline::compose(&global, None, Some(&api), None);
    assert_eq!(preflight(&p, "http://b.test", "GET", None).1, vec![]);
}

#[test]
fn an_operation_that_declares_options_runs_its_policies() {
    let p = pipeline(
        r#"<policies><inbound><cors><allowed-origins><origin>*</origin></allowed-origins><allowed-headers><header>*</header></allowed-headers></cors></inbound>
        <backend><forward-request /></backend></policies>"#,
    );
    let mut ex = exchange(
        "OPTIONS",
        "/",
        &[
            ("Origin", "http://a.test"),
            ("Access-Control-Request-Method", "GET"),
        ],
    );
    ex.info.operation_method = "OPTIONS".into();
    let io = run(&p, &mut ex);
    assert!(io.forwarded.is_some());
    // As an actual request, it gets the allow-origin header.
    assert_eq!(
        ex.response.unwrap().headers["access-control-allow-origin"],
        "*"
    );
}

#[test]
fn actual_requests_get_cors_headers_on_the_response() {
    let p = pipeline(&POLICY.replace(
        r#"<check-header name="X-Required" failed-check-httpcode="401" failed-check-error-message="no" />"#,
        "",
    ));
    let mut ex = exchange("GET", "/", &[("Origin", "https://example.com")]);
    let io = run(&p, &mut ex);
    assert!(io.forwarded.is_some());
    let r = ex.response.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers["access-control-allow-origin"],
        "https://example.com"
    );
    assert_eq!(r.headers["access-control-allow-credentials"], "true");
    assert_eq!(
        r.headers["access-control-expose-headers"],
        "x-zumo-installation-id, x-zumo-application"
    );
    assert_eq!(r.headers["vary"], "Origin");

    // Unmatched GET: an empty 200 at the gateway (terminate-unmatched-request defaults to true).
    let mut ex = exchange("GET", "/", &[("Origin", "http://evil.test")]);
    let io = run(&p, &mut ex);
    assert!(io.forwarded.is_none());
    let r = ex.response.unwrap();
    assert_eq!((r.status.as_u16(), r.body.unwrap().len()), (200, 0));
    assert!(r.headers.get("access-control-allow-origin").is_none());

    // Unmatched POST goes on without CORS headers; so does a request without Origin.
    for headers in [vec![("Origin", "http://evil.test")], vec![]] {
        let mut ex = exchange("POST", "/", &headers);
        let io = run(&p, &mut ex);
        assert!(io.forwarded.is_some());
        assert!(
            ex.response
                .unwrap()
                .headers
                .get("access-control-allow-origin")
                .is_none()
        );
    }

    // With terminate-unmatched-request="false", an unmatched GET goes on too.
    let p = pipeline(&POLICY.replace(
        r#"<cors allow-credentials="true">"#,
        r#"<cors allow-credentials="true" terminate-unmatched-request="@(false)">"#,
    ).replace(r#"<check-header name="X-Required" failed-check-httpcode="401" failed-check-error-message="no" />"#, ""));
    let mut ex = exchange("GET", "/", &[("Origin", "http://evil.test")]);
    assert!(run(&p, &mut ex).forwarded.is_some());
}

#[test]
fn credentials_are_never_sent_for_any_origin() {
    let p = pipeline(
        r#"<policies><inbound><cors allow-credentials="@(true)"><allowed-origins><origin>*</origin></allowed-origins><allowed-headers><header>*</header></allowed-headers></cors></inbound>
        <backend><forward-request /></backend></policies>"#,
    );
    let mut ex = exchange("GET", "/", &[("Origin", "http://a.test")]);
    run(&p, &mut ex);
    let r = ex.response.unwrap();
    assert_eq!(r.headers["access-control-allow-origin"], "*");
    assert!(r.headers.get("access-control-allow-credentials").is_none());
}

#[test]
fn compile_errors() {
    let origins = "<allowed-origins><origin>http://a.test</origin></allowed-origins>";
    let headers = "<allowed-headers><header>*</header></allowed-headers>";
    for (xml, needle) in [
        (
            format!(
                r#"<cors allow-credentials="true"><allowed-origins><origin>*</origin></allowed-origins>{headers}</cors>"#
            ),
            "cannot be used with the origin '*'",
        ),
        (
            format!(
                r#"<cors><allowed-origins><origin>*</origin><origin>http://a.test</origin></allowed-origins>{headers}</cors>"#
            ),
            "either the single origin '*'",
        ),
        (format!("<cors>{headers}</cors>"), "needs <allowed-origins>"),
        (
            format!(
                "<cors><allowed-origins><origin>example.com</origin></allowed-origins>{headers}</cors>"
            ),
            "must be '*' or a URL",
        ),
        (
            format!(
                "<cors><allowed-origins><origin>@(\"x\")</origin></allowed-origins>{headers}</cors>"
            ),
            "does not accept an expression",
        ),
        (
            format!("<cors><allowed-origins></allowed-origins>{headers}</cors>"),
            "needs at least one <origin>",
        ),
        (
            format!(
                "<cors>{origins}<allowed-methods><method>GE T</method></allowed-methods>{headers}</cors>"
            ),
            "is not an HTTP method",
        ),
        (
            format!(
                r#"<cors>{origins}<allowed-methods preflight-result-max-age="soon"><method>GET</method></allowed-methods>{headers}</cors>"#
            ),
            "whole number of seconds",
        ),
        (
            format!("<cors>{origins}<allowed-methods/>{headers}</cors>"),
            "needs at least one <method>",
        ),
        (
            format!("<cors>{origins}{origins}{headers}</cors>"),
            "more than one <allowed-origins>",
        ),
        (
            format!(r#"<cors allow-credentials="yes">{origins}{headers}</cors>"#),
            "must be true or false",
        ),
        (
            format!(
                "<cors>{origins}<allowed-headers><header>bad header</header></allowed-headers></cors>"
            ),
            "not a valid header name",
        ),
        (
            format!("<cors>{origins}{headers}<colour/></cors>"),
            "cannot contain <colour>",
        ),
    ] {
        let errors = errors_inbound(&xml);
        assert!(
            errors.iter().any(|e| e.contains(needle)),
            "{xml}: {errors:?}"
        );
    }
    let xml = format!("<policies><outbound><cors>{origins}{headers}</cors></outbound></policies>");
    let (_, diags) = crate::compile::compile(
        &xml,
        crate::compile::Scope::Api,
        &crate::compile::NoNamedValues,
        crate::compile::Mode::Strict,
    );
    assert!(
        diags
            .iter()
            .any(|d| d.message.contains("not allowed in <outbound>"))
    );
}

#[test]
fn problems_point_at_the_element() {
    let errors = errors_inbound(
        "<cors>\n<allowed-origins>\n<origin>http://a.test</origin>\n<origin>ftp:/nope</origin>\n</allowed-origins>\n<allowed-headers><header>*</header></allowed-headers></cors>",
    );
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("4:1:") && e.contains("'ftp:/nope'")),
        "{errors:?}"
    );
}

#[test]
fn vary_keeps_what_the_response_already_varies_by() {
    let p = pipeline(
        r#"<policies><inbound><cors><allowed-origins><origin>http://a.test</origin></allowed-origins><allowed-headers><header>*</header></allowed-headers></cors></inbound>
        <backend><forward-request /></backend>
        <outbound><set-header name="Vary" exists-action="override"><value>Accept-Encoding</value></set-header></outbound></policies>"#,
    );
    let mut ex = exchange("GET", "/", &[("Origin", "http://a.test")]);
    run(&p, &mut ex);
    assert_eq!(
        all(&ex.response.unwrap().headers, "vary"),
        ["Accept-Encoding", "Origin"]
    );
}

#[test]
fn allowed_headers_is_optional_as_in_azure() {
    // Without <allowed-headers>, a preflight that asks for no header is answered; one that asks
    // for a header is not allowed it.
    let errors = errors_inbound(
        "<cors><allowed-origins><origin>http://a.test</origin></allowed-origins></cors>",
    );
    assert!(errors.is_empty(), "{errors:?}");
}
