use std::time::Duration;

use super::super::flowkit::*;
use super::super::testkit::*;
use crate::expr::HttpResponse;
use crate::run::PolicyError;

#[test]
fn sends_a_new_request_and_keeps_the_response_for_expressions() {
    let p = pipeline(
        r#"<policies><inbound>
            <set-variable name="token" value="@(context.Request.Headers.GetValueOrDefault(&quot;Authorization&quot;,&quot;scheme param&quot;).Split(' ').Last())" />
            <send-request mode="new" response-variable-name="tokenstate" timeout="20" ignore-error="true">
                <set-url>http://auth.test/introspection</set-url>
                <set-method>POST</set-method>
                <set-header name="Authorization" exists-action="override"><value>basic dXNlcm5hbWU6cGFzc3dvcmQ=</value></set-header>
                <set-header name="Content-Type" exists-action="override"><value>application/x-www-form-urlencoded</value></set-header>
                <set-body>@($"token={(string)context.Variables["token"]}")</set-body>
            </send-request>
            <choose>
                <when condition="@((bool)((IResponse)context.Variables[&quot;tokenstate&quot;]).Body.As&lt;JObject&gt;()[&quot;active&quot;] == false)">
                    <return-response>
                        <set-status code="401" reason="Unauthorized" />
                        <set-header name="WWW-Authenticate" exists-action="override"><value>Bearer error="invalid_token"</value></set-header>
                    </return-response>
                </when>
            </choose>
            <set-header name="X-Auth-Status" exists-action="override"><value>@(((IResponse)context.Variables["tokenstate"]).StatusCode.ToString())</value></set-header>
        </inbound><backend><forward-request /></backend></policies>"#,
    );
    for (active, status) in [(true, 200), (false, 401)] {
        let io =
            FlowIo::default().answer(move |_| Ok(ok_json(&format!(r#"{{"active": {active}}}"#))));
        let mut ex = exchange("GET", "/", &[("Authorization", "Bearer abc123")]);
        block_on(p.run(&mut ex, &mut io.clone()));
        let sent = io.sent();
        assert_eq!(sent.len(), 1);
        let r = &sent[0];
        assert_eq!(
            (r.method.as_str(), r.url.as_str()),
            ("POST", "http://auth.test/introspection")
        );
        assert_eq!(r.headers["authorization"], "basic dXNlcm5hbWU6cGFzc3dvcmQ=");
        assert_eq!(
            r.headers["content-type"],
            "application/x-www-form-urlencoded"
        );
        assert_eq!(
            r.headers.len(),
            2,
            "a new request carries none of the client's headers"
        );
        assert_eq!(r.body, "token=abc123");
        assert_eq!(r.timeout, Duration::from_secs(20));
        let response = ex.response.unwrap();
        assert_eq!(response.status, status);
        if active {
            let fwd = io.state.forwards.load(std::sync::atomic::Ordering::SeqCst);
            assert_eq!(fwd, 1);
        } else {
            assert_eq!(
                response.headers["www-authenticate"],
                r#"Bearer error="invalid_token""#
            );
        }
    }
}

#[test]
fn copy_starts_from_the_request_as_the_backend_would_get_it() {
    let p = pipeline(
        r#"<policies><inbound>
            <send-request mode="copy" response-variable-name="r">
                <set-header name="X-Copy" exists-action="override"><value>yes</value></set-header>
            </send-request>
        </inbound><backend><forward-request /></backend></policies>"#,
    );
    assert!(p.reads_request_body, "copy needs the whole body first");
    let io = FlowIo::default();
    let mut ex = exchange(
        "PUT",
        "/items/1?a=1",
        &[("X-Client", "c"), ("Host", "gw.example")],
    );
    ex.info.service_url = Some("http://backend.test/base/".into());
    ex.request.body = Some(bytes::Bytes::from_static(b"{\"n\":1}"));
    block_on(p.run(&mut ex, &mut io.clone()));
    let r = &io.sent()[0];
    assert_eq!(r.method, "PUT");
    assert_eq!(r.url, "http://backend.test/base/items/1?a=1");
    assert_eq!(r.headers["x-client"], "c");
    assert_eq!(r.headers["x-copy"], "yes");
    assert!(r.headers.get("host").is_none());
    assert_eq!(r.body, "{\"n\":1}");
    assert_eq!(
        r.timeout,
        Duration::from_secs(60),
        "Azure's default timeout"
    );
    // set-backend-service moves the copy along.
    let p = pipeline(
        r#"<policies><inbound>
            <set-backend-service base-url="http://other.test" />
            <send-request mode="copy" response-variable-name="r"><set-method>GET</set-method></send-request>
        </inbound><backend><forward-request /></backend></policies>"#,
    );
    let io = FlowIo::default();
    let mut ex = exchange("POST", "/x", &[]);
    block_on(p.run(&mut ex, &mut io.clone()));
    assert_eq!(
        (io.sent()[0].method.as_str(), io.sent()[0].url.as_str()),
        ("GET", "http://other.test/x")
    );
}

#[test]
fn copy_in_outbound_leaves_the_body_out() {
    let p = pipeline(
        r#"<policies><inbound/><backend><forward-request /></backend><outbound>
            <send-request mode="copy" response-variable-name="r" />
        </outbound></policies>"#,
    );
    let io = FlowIo::default();
    let mut ex = exchange("POST", "/", &[]);
    ex.info.service_url = Some("http://backend.test".into());
    ex.request.body = Some(bytes::Bytes::from_static(b"body"));
    block_on(p.run(&mut ex, &mut io.clone()));
    assert_eq!(ex.last_error, None);
    assert!(io.sent()[0].body.is_empty());
}

#[test]
fn failures_go_to_on_error_or_leave_null() {
    let xml = |ignore: &str| {
        format!(
            r#"<policies><inbound>
            <send-request mode="new" response-variable-name="r" timeout="60 sec" ignore-error="{ignore}">
                <set-url>http://down.test/</set-url><set-method>GET</set-method>
            </send-request>
            <set-header name="X-Null" exists-action="override"><value>@((context.Variables["r"] == null).ToString())</value></set-header>
        </inbound><backend><forward-request /></backend>
        <on-error><return-response><set-status code="599" /><set-body>@(context.LastError.Source + "/" + context.LastError.Reason)</set-body></return-response></on-error></policies>"#
        )
    };
    let io = || {
        FlowIo::default().answer(|_| Err(PolicyError::send_failed("Timeout", "no answer in 60s")))
    };
    let mut ex = exchange("GET", "/", &[]);
    let flow = io();
    block_on(pipeline(&xml("true")).run(&mut ex, &mut flow.clone()));
    assert_eq!(ex.response.unwrap().status, 200);
    let fwd = flow.state.forwarded_bodies.lock().unwrap().len();
    assert_eq!(fwd, 1);
    let mut ex = exchange("GET", "/", &[]);
    block_on(pipeline(&xml("false")).run(&mut ex, &mut io()));
    let r = ex.response.unwrap();
    assert_eq!(r.status, 599);
    assert_eq!(r.body.unwrap(), "send-request/Timeout");
}

#[test]
fn return_response_answers_with_a_held_response() {
    let p = pipeline(
        r#"<policies><inbound>
            <send-request mode="new" response-variable-name="upstream">
                <set-url>@("http://svc.test/" + context.Request.Method.ToLower())</set-url><set-method>GET</set-method>
            </send-request>
            <return-response response-variable-name="upstream">
                <set-header name="X-Extra" exists-action="override"><value>1</value></set-header>
            </return-response>
        </inbound><backend><forward-request /></backend></policies>"#,
    );
    let io = FlowIo::default().answer(|r| {
        Ok(HttpResponse {
            status: 418,
            reason: "Short and stout".into(),
            headers: vec![
                ("content-type".into(), "text/plain".into()),
                ("content-length".into(), "3".into()),
                ("x-from".into(), r.url.clone()),
            ],
            body: bytes::Bytes::from_static(b"tea"),
        })
    });
    let mut ex = exchange("DELETE", "/", &[]);
    block_on(p.run(&mut ex, &mut io.clone()));
    let r = ex.response.unwrap();
    assert_eq!(r.status, 418);
    assert_eq!(r.reason.as_deref(), Some("Short and stout"));
    assert_eq!(r.headers["x-from"], "http://svc.test/delete");
    assert_eq!(r.headers["x-extra"], "1");
    assert!(r.headers.get("content-length").is_none());
    assert_eq!(r.body.unwrap(), "tea");
    assert_eq!(
        io.state.forwards.load(std::sync::atomic::Ordering::SeqCst),
        0
    );

    // A variable that holds no response is an error.
    let p = pipeline(
        r#"<policies><inbound><set-variable name="v" value="x" /><return-response response-variable-name="v" /></inbound></policies>"#,
    );
    let mut ex = exchange("GET", "/", &[]);
    run(&p, &mut ex);
    assert!(ex.response.is_none());
    assert_eq!(ex.failure.unwrap().answer, crate::Answer::Internal);
    assert_eq!(ex.last_error.unwrap().reason, "VariableNotFound");
}

#[test]
fn one_way_requests_do_not_wait() {
    let p = pipeline(
        r#"<policies><inbound/><backend><forward-request /></backend><outbound>
            <choose><when condition="@(context.Response.StatusCode >= 200)">
                <send-one-way-request mode="new" timeout="20">
                    <set-url>http://hooks.test/alert</set-url>
                    <set-method>POST</set-method>
                    <set-body>@(context.Request.Method + " " + context.Response.StatusCode)</set-body>
                </send-one-way-request>
            </when></choose>
        </outbound></policies>"#,
    );
    let io = FlowIo::default();
    let mut ex = exchange("GET", "/", &[]);
    block_on(p.run(&mut ex, &mut io.clone()));
    assert_eq!(ex.response.unwrap().status, 200);
    assert!(io.sent().is_empty(), "nothing waited for");
    let detached = io.state.detached.lock().unwrap().clone();
    assert_eq!(detached.len(), 1);
    assert_eq!(detached[0].url, "http://hooks.test/alert");
    assert_eq!(detached[0].body, "GET 200");
    assert_eq!(detached[0].timeout, Duration::from_secs(20));
}

#[test]
fn urls_from_expressions_are_checked_when_sent() {
    let p = pipeline(
        r#"<policies><inbound>
            <send-request mode="new" response-variable-name="r"><set-url>@("ftp://files.test/")</set-url><set-method>GET</set-method></send-request>
        </inbound><backend><forward-request /></backend></policies>"#,
    );
    let io = FlowIo::default();
    let mut ex = exchange("GET", "/", &[]);
    block_on(p.run(&mut ex, &mut io.clone()));
    assert!(ex.response.is_none());
    assert_eq!(ex.failure.unwrap().answer, crate::Answer::Internal);
    assert!(
        ex.last_error
            .unwrap()
            .message
            .contains("not an absolute http:// or https:// URL")
    );
    assert!(io.sent().is_empty());
    // https goes out like http.
    let p = pipeline(
        r#"<policies><inbound>
            <send-request mode="new" response-variable-name="r"><set-url>@("https://secure.test/")</set-url><set-method>GET</set-method></send-request>
        </inbound><backend><forward-request /></backend></policies>"#,
    );
    let io = FlowIo::default();
    let mut ex = exchange("GET", "/", &[]);
    block_on(p.run(&mut ex, &mut io.clone()));
    assert_eq!(io.sent().len(), 1);
    assert_eq!(io.sent()[0].url, "https://secure.test/");
}

#[test]
fn a_proxy_inside_applies_to_that_request_only() {
    let p = pipeline(
        r#"<policies><inbound>
            <send-request mode="new" response-variable-name="r">
                <set-url>https://secure.test/</set-url><set-method>GET</set-method>
                <proxy url="http://proxy.test:3128" username="u" password="p" />
            </send-request>
        </inbound><backend><forward-request /></backend></policies>"#,
    );
    let io = FlowIo::default();
    let mut ex = exchange("GET", "/", &[]);
    block_on(p.run(&mut ex, &mut io.clone()));
    let proxy = io.sent()[0].proxy.clone().unwrap();
    assert_eq!(proxy.url, "http://proxy.test:3128");
    assert_eq!(proxy.username.as_deref(), Some("u"));
    assert!(ex.proxy.is_none(), "the backend request goes direct");
    let errors = errors_inbound(
        r#"<send-request mode="new" response-variable-name="r"><set-url>http://a.test/</set-url><set-method>GET</set-method><proxy url="https://p:1" /></send-request>"#,
    );
    assert!(errors[0].contains("must be http://host:port"), "{errors:?}");
}

#[test]
fn compile_errors() {
    let url = "<set-url>http://a.test/</set-url><set-method>GET</set-method>";
    for (xml, needle) in [
        (format!("<send-request mode=\"new\">{url}</send-request>"), "needs the attribute 'response-variable-name'"),
        (r#"<send-request response-variable-name="r"><set-method>GET</set-method></send-request>"#.to_owned(), "needs <set-url>"),
        (r#"<send-request response-variable-name="r"><set-url>http://a.test/</set-url></send-request>"#.to_owned(), "needs <set-method>"),
        (r#"<send-request response-variable-name="r"><set-url>ftp://a.test/</set-url><set-method>GET</set-method></send-request>"#.to_owned(), "not an absolute http:// or https:// URL"),
        (r#"<send-request response-variable-name="r"><set-url>a.test/x</set-url><set-method>GET</set-method></send-request>"#.to_owned(), "not an absolute http:// or https:// URL"),
        (r#"<send-request response-variable-name="r"><set-url>http://a.test/</set-url><set-method>@("GET")</set-method></send-request>"#.to_owned(), "does not accept an expression"),
        (format!(r#"<send-request response-variable-name="r" mode="clone">{url}</send-request>"#), "must be new or copy"),
        (format!(r#"<send-request response-variable-name="r" timeout="0">{url}</send-request>"#), "'timeout' must be"),
        (format!(r#"<send-request response-variable-name="r" ignore-error="@(true)">{url}</send-request>"#), "does not accept an expression"),
        (format!(r#"<send-request response-variable-name="r">{url}<authentication-certificate thumbprint="x"/></send-request>"#), "not supported"),
        (format!(r#"<send-one-way-request response-variable-name="r">{url}</send-one-way-request>"#), "no attribute 'response-variable-name'"),
        (format!(r#"<send-request response-variable-name="r">{url}<set-header name="X"/></send-request>"#), "needs at least one <value>"),
    ] {
        let errors = errors_inbound(&xml);
        assert!(errors.iter().any(|e| e.contains(needle)), "{xml}: {errors:?}");
    }
    // copy needs neither URL nor method.
    assert!(
        errors_inbound(r#"<send-request mode="copy" response-variable-name="r" />"#).is_empty()
    );
}
