//! Policies through the real gateway against a real backend: what the backend received and what
//! the client got (DESIGN §5), policy validation on save, and `gatehouse policy check`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Backend, Gatehouse, free_port, put_policy, set_policy};

/// Waits until a call answers `want`, then returns that response.
async fn until(
    gh: &Gatehouse,
    req: impl Fn() -> reqwest::RequestBuilder,
    want: u16,
) -> reqwest::Response {
    let start = std::time::Instant::now();
    loop {
        let r = req().send().await.unwrap();
        if r.status().as_u16() == want {
            return r;
        }
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "never answered {want}: got {}",
            r.status()
        );
        let _ = gh;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transformation_policies_shape_the_request_and_the_response() {
    let backend = Backend::start().await;
    let other = Backend::start().await;
    let gh = Gatehouse::up("pol-transform", &[]).await;
    gh.ok(
        "PUT",
        "/mgmt/apis/shop",
        Some(json!({"path": "shop", "serviceUrl": format!("{}/base", backend.url())})),
    )
    .await;
    gh.ok(
        "PUT",
        "/mgmt/apis/shop/operations/get-item",
        Some(json!({"method": "GET", "urlTemplate": "/items/{id}"})),
    )
    .await;
    gh.ok(
        "PUT",
        "/mgmt/apis/shop/operations/moved",
        Some(json!({"method": "GET", "urlTemplate": "/moved"})),
    )
    .await;
    gh.ok(
        "PUT",
        "/mgmt/named-values/tenant",
        Some(json!({"value": "acme-secret-tenant", "secret": true})),
    )
    .await;
    let key = gh.subscription("s", "/apis").await;
    set_policy(
        &gh,
        "/mgmt/apis/shop/policy",
        r#"<policies>
            <inbound>
                <base />
                <set-variable name="item" value="@(context.Request.MatchedParameters["id"])" />
                <set-header name="X-Tenant" exists-action="override"><value>{{tenant}}</value></set-header>
                <set-header name="X-Item" exists-action="override"><value>@("item-" + (string)context.Variables["item"])</value></set-header>
                <set-header name="X-Drop" exists-action="delete" />
                <set-query-parameter name="api-version" exists-action="override"><value>2024-01-01</value></set-query-parameter>
                <rewrite-uri template="/v2/things/{id}" />
            </inbound>
            <backend><base /></backend>
            <outbound>
                <base />
                <set-header name="X-Powered-By" exists-action="override"><value>@(context.Api.Name + "/" + context.Operation.Id)</value></set-header>
                <set-header name="X-Backend" exists-action="delete" />
            </outbound>
        </policies>"#,
    )
    .await;
    set_policy(
        &gh,
        "/mgmt/apis/shop/operations/moved/policy",
        &format!(r#"<policies><inbound><set-backend-service base-url="{}/elsewhere" /><rewrite-uri template="/" /></inbound></policies>"#, other.url()),
    )
    .await;

    // Wait until both policy documents are in force.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    let r = loop {
        let r = gh
            .http
            .get(gh.gateway("/shop/items/42?sort=desc"))
            .header("Ocp-Apim-Subscription-Key", &key)
            .header("X-Drop", "x")
            .send()
            .await
            .unwrap();
        if r.status() == 200 && r.headers().contains_key("x-powered-by") {
            break r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the API policy never took effect"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(r.headers()["x-powered-by"], "shop/get-item");
    assert!(
        r.headers().get("x-backend").is_none(),
        "outbound delete did not apply"
    );
    let seen = backend.last();
    assert_eq!(seen.path, "/base/v2/things/42");
    let query = seen.query.unwrap();
    assert!(
        query.contains("sort=desc") && query.contains("api-version=2024-01-01"),
        "{query}"
    );
    assert_eq!(seen.headers["x-tenant"], "acme-secret-tenant");
    assert_eq!(seen.headers["x-item"], "item-42");
    assert!(!seen.headers.contains_key("x-drop"));

    // set-backend-service on one operation sends it elsewhere.
    let r = until(
        &gh,
        || {
            gh.http
                .get(gh.gateway("/shop/moved"))
                .header("Ocp-Apim-Subscription-Key", &key)
        },
        200,
    )
    .await;
    drop(r);
    assert_eq!(other.last().path, "/elsewhere/");

    // A named value in use cannot be deleted; its secret never reaches the log.
    let (status, body) = gh.mgmt("DELETE", "/mgmt/named-values/tenant", None).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("API 'shop'")
    );
    assert!(!gh.log().contains("acme-secret-tenant"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn base_orders_all_four_scopes_through_the_gateway() {
    let backend = Backend::start().await;
    let gh = Gatehouse::up("pol-base", &[]).await;
    gh.simple_api("echo", "echo", &backend.url(), false).await;
    gh.ok("PUT", "/mgmt/products/gold", Some(json!({}))).await;
    gh.ok("PUT", "/mgmt/products/gold/apis/echo", None).await;
    let gold = gh.subscription("gold-sub", "/products/gold").await;
    let all = gh.subscription("all-sub", "/apis").await;
    let doc = |name: &str, backend: &str| {
        format!(
            r#"<policies><inbound><set-header name="X-Order" exists-action="append"><value>{name}-before</value></set-header><base /><set-header name="X-Order" exists-action="append"><value>{name}-after</value></set-header></inbound><backend>{backend}</backend><outbound><base /><set-header name="X-Out" exists-action="append"><value>{name}</value></set-header></outbound></policies>"#
        )
    };
    set_policy(&gh, "/mgmt/policy", &doc("global", "<forward-request />")).await;
    set_policy(
        &gh,
        "/mgmt/products/gold/policy",
        &doc("product", "<base />"),
    )
    .await;
    set_policy(&gh, "/mgmt/apis/echo/policy", &doc("api", "<base />")).await;
    set_policy(
        &gh,
        "/mgmt/apis/echo/operations/get/policy",
        &doc("operation", "<base />"),
    )
    .await;

    // Wait until all four documents are in force.
    let start = std::time::Instant::now();
    loop {
        let r = gh
            .http
            .get(gh.gateway("/echo/x"))
            .header("Ocp-Apim-Subscription-Key", &gold)
            .send()
            .await
            .unwrap();
        let out: Vec<String> = r
            .headers()
            .get_all("x-out")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        if out == ["global", "product", "api", "operation"] {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "outbound order: {out:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        backend.last().headers["x-order"],
        "operation-before, api-before, product-before, global-before, global-after, product-after, api-after, operation-after"
            .replace(", ", ",")
            .replace(',', ", ")
    );
    // A subscription without a product skips the product scope.
    let r = gh
        .http
        .get(gh.gateway("/echo/x"))
        .header("Ocp-Apim-Subscription-Key", &all)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        backend.last().headers["x-order"],
        "operation-before, api-before, global-before, global-after, api-after, operation-after"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn access_and_flow_policies_answer_at_the_gateway() {
    let backend = Backend::start().await;
    let gh = Gatehouse::up("pol-access", &[]).await;
    gh.simple_api("guarded", "guarded", &backend.url(), true)
        .await;
    set_policy(
        &gh,
        "/mgmt/apis/guarded/policy",
        r#"<policies>
            <inbound>
                <base />
                <ip-filter action="allow"><address-range from="127.0.0.0" to="127.255.255.255" /></ip-filter>
                <check-header name="X-Client" failed-check-httpcode="401" failed-check-error-message="Unknown client" ignore-case="true">
                    <value>web</value><value>mobile</value>
                </check-header>
                <choose>
                    <when condition="@(context.Request.Headers.GetValueOrDefault("X-Mode", "") == "teapot")">
                        <return-response>
                            <set-status code="418" reason="I'm a teapot" />
                            <set-header name="X-Why" exists-action="override"><value>@(context.Request.Headers.GetValueOrDefault("X-Client", ""))</value></set-header>
                            <set-body>{"short": "and stout"}</set-body>
                        </return-response>
                    </when>
                </choose>
            </inbound>
        </policies>"#,
    )
    .await;
    let r = until(&gh, || gh.http.get(gh.gateway("/guarded/x")), 401).await;
    let before = backend.count();
    assert_eq!(
        r.text().await.unwrap(),
        r#"{"message":"Unknown client","statusCode":401}"#
    );
    let r = gh
        .http
        .get(gh.gateway("/guarded/x"))
        .header("X-Client", "WEB")
        .header("X-Mode", "teapot")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 418);
    assert_eq!(r.headers()["x-why"], "WEB");
    assert_eq!(r.text().await.unwrap(), r#"{"short": "and stout"}"#);
    assert_eq!(
        backend.count(),
        before,
        "refused and answered calls never reach the backend"
    );
    let r = gh
        .http
        .get(gh.gateway("/guarded/x"))
        .header("X-Client", "mobile")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(backend.count(), before + 1);

    // ip-filter forbidding loopback: 403.
    set_policy(
        &gh,
        "/mgmt/apis/guarded/policy",
        r#"<policies><inbound><base /><ip-filter action="forbid"><address>127.0.0.1</address><address>::1</address></ip-filter></inbound></policies>"#,
    )
    .await;
    let r = until(&gh, || gh.http.get(gh.gateway("/guarded/x")), 403).await;
    assert_eq!(
        r.text().await.unwrap(),
        r#"{"message":"Forbidden","statusCode":403}"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_error_handles_backend_failures_with_last_error() {
    let gh = Gatehouse::up("pol-onerror", &[]).await;
    let backend = Backend::start().await;
    let dead = format!("http://127.0.0.1:{}", free_port());
    gh.simple_api("down", "down", &dead, true).await;
    gh.simple_api("slow", "slow", &backend.url(), true).await;
    let handler = r#"<on-error>
        <return-response>
            <set-status code="503" reason="Try later" />
            <set-header name="X-Error-Source" exists-action="override"><value>@(context.LastError.Source)</value></set-header>
            <set-header name="X-Error-Reason" exists-action="override"><value>@(context.LastError.Reason)</value></set-header>
            <set-header name="X-Error-Section" exists-action="override"><value>@(context.LastError.Section)</value></set-header>
            <set-body>@("{\"error\": \"" + context.LastError.Reason + "\"}")</set-body>
        </return-response>
    </on-error>"#;
    // The slow API's policy first: once the down API's is in force, so is this one.
    set_policy(
        &gh,
        "/mgmt/apis/slow/policy",
        &format!(
            r#"<policies><backend><forward-request timeout="1" /></backend>{handler}</policies>"#
        ),
    )
    .await;
    set_policy(
        &gh,
        "/mgmt/apis/down/policy",
        &format!("<policies>{handler}</policies>"),
    )
    .await;
    let r = until(&gh, || gh.http.get(gh.gateway("/down/x")), 503).await;
    assert_eq!(r.headers()["x-error-source"], "forward-request");
    assert_eq!(r.headers()["x-error-reason"], "BackendConnectionFailure");
    assert_eq!(r.headers()["x-error-section"], "backend");
    assert_eq!(
        r.text().await.unwrap(),
        r#"{"error": "BackendConnectionFailure"}"#
    );
    let started = std::time::Instant::now();
    let r = until(&gh, || gh.http.get(gh.gateway("/slow/slow/3000")), 503).await;
    assert!(started.elapsed() < Duration::from_millis(2900));
    assert_eq!(r.headers()["x-error-reason"], "Timeout");

    // Without a handler: Azure's bodies, nothing internal.
    gh.ok("DELETE", "/mgmt/apis/down/policy", None).await;
    let r = until(&gh, || gh.http.get(gh.gateway("/down/x")), 502).await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["statusCode"], 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn rate_limit_admits_exactly_the_limit_under_concurrency() {
    let backend = Backend::start().await;
    let gh = Gatehouse::up("pol-ratelimit", &[]).await;
    gh.simple_api("limited", "limited", &backend.url(), false)
        .await;
    let key = gh.subscription("s", "/apis").await;
    let probe = gh.subscription("probe", "/apis").await;
    set_policy(
        &gh,
        "/mgmt/apis/limited/policy",
        r#"<policies><inbound><base />
            <rate-limit-by-key calls="100" renewal-period="300" counter-key="@(context.Subscription.Id)"
                remaining-calls-header-name="X-Remaining" />
        </inbound><outbound><base /></outbound></policies>"#,
    )
    .await;
    // Wait for the policy without spending the budget: the probe subscription has its own
    // counter, and the remaining-calls header shows the policy is in force.
    until_header(&gh, "/limited/x", &probe, "x-remaining").await;
    let (mut ok, mut limited) = (0, 0);
    for (status, retry, body) in concurrent_calls(&gh, "/limited/x", &key, 1000).await {
        match status {
            200 => ok += 1,
            429 => {
                limited += 1;
                let secs: u64 = retry.unwrap().parse().unwrap();
                assert!(secs > 0 && secs <= 300);
                assert_eq!(
                    body,
                    format!(
                        r#"{{"message":"Rate limit is exceeded. Try again in {secs} seconds.","statusCode":429}}"#
                    )
                );
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    println!("1000 concurrent calls against calls=100: {ok} admitted, {limited} limited");
    assert_eq!((ok, limited), (100, 900));
}

#[tokio::test]
async fn invalid_policies_are_refused_with_line_and_column() {
    let gh = Gatehouse::up("pol-invalid", &[]).await;
    gh.ok("PUT", "/mgmt/apis/a", Some(json!({"path": "a"})))
        .await;
    let cases = [
        (
            "<policies>\n  <inbound>\n    <set-header name=\"X\">\n  </inbound>\n</policies>",
            4,
            "not well-formed",
        ),
        (
            "<policies>\n  <inbound>\n    <nonsense />\n  </inbound>\n</policies>",
            3,
            "unknown policy",
        ),
        (
            "<policies>\n  <inbound>\n    <set-header name=\"X\" exists-action=\"sometimes\"><value>1</value></set-header>\n  </inbound>\n</policies>",
            3,
            "must be one of",
        ),
        (
            "<policies>\n  <inbound>\n    <set-variable name=\"v\" value=\"@(context.Request.Nope)\" />\n  </inbound>\n</policies>",
            3,
            "invalid expression",
        ),
        (
            "<policies>\n  <inbound>\n    <set-header name=\"X\"><value>{{missing}}</value></set-header>\n  </inbound>\n</policies>",
            3,
            "named value 'missing'",
        ),
    ];
    for (xml, line, needle) in cases {
        let (status, body) = put_policy(&gh, "/mgmt/apis/a/policy", xml).await;
        assert_eq!(status, 400, "{xml}: {body}");
        assert_eq!(body["error"]["code"], "ValidationError");
        let detail = &body["error"]["details"][0];
        assert_eq!(detail["line"], line, "{xml}: {body}");
        assert!(detail["column"].as_u64().unwrap() >= 1);
        assert!(
            detail["message"].as_str().unwrap().contains(needle),
            "{xml}: {body}"
        );
    }
    // A named value whose new value would break a policy that uses it is refused.
    gh.ok(
        "PUT",
        "/mgmt/named-values/verb",
        Some(json!({"value": "@(context.Request.Method)"})),
    )
    .await;
    set_policy(
        &gh,
        "/mgmt/apis/a/policy",
        r#"<policies><inbound><set-header name="X-Verb"><value>{{verb}}</value></set-header></inbound></policies>"#,
    )
    .await;
    let (status, body) = gh
        .mgmt(
            "PUT",
            "/mgmt/named-values/verb",
            Some(json!({"value": "@(1 +)"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("API 'a'"),
        "{body}"
    );
    let (status, _) = gh
        .mgmt(
            "PATCH",
            "/mgmt/named-values/verb",
            Some(json!({"value": "@(context.Request.Url.Path)"})),
        )
        .await;
    assert_eq!(status, 200);
    gh.ok("DELETE", "/mgmt/apis/a/policy", None).await;

    // JSON form, like Azure's.
    let r = gh
        .http
        .put(gh.control("/mgmt/apis/a/policy"))
        .bearer_auth(&gh.token)
        .json(&json!({"value": "<policies><inbound><base /></inbound></policies>", "format": "rawxml"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = gh
        .http
        .get(gh.control("/mgmt/apis/a/policy"))
        .bearer_auth(&gh.token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["content-type"],
        "application/xml; charset=utf-8"
    );
    assert!(r.text().await.unwrap().contains("<base />"));
    assert!(!gh.log().contains("panicked"));
}

#[test]
fn policy_check_prints_file_line_column() {
    let dir = crate::support::temp_dir("policy-check");
    let good = dir.join("good.xml");
    let bad = dir.join("bad.xml");
    let warn = dir.join("warn.xml");
    std::fs::write(&good, "<policies><inbound><base /><set-header name=\"X\"><value>@(context.Request.Method)</value></set-header></inbound></policies>").unwrap();
    std::fs::write(&bad, "<policies>\n  <inbound>\n    <set-header name=\"X\" oops=\"1\"><value>1</value></set-header>\n    <rate-limit-by-key calls=\"x\" renewal-period=\"60\" counter-key=\"k\"/>\n  </inbound>\n</policies>").unwrap();
    std::fs::write(&warn, "<policies><inbound><set-header name=\"X\"><value>{{later}}</value></set-header></inbound></policies>").unwrap();
    let run = |files: &[&std::path::Path]| {
        std::process::Command::new(crate::support::BIN)
            .arg("policy")
            .arg("check")
            .args(files)
            .output()
            .unwrap()
    };
    let out = run(&[&good, &warn]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("{}:1:", warn.display()))
            && stdout.contains("warning: named value 'later'"),
        "{stdout}"
    );
    let out = run(&[&good, &bad]);
    assert_eq!(out.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "{}:3:26: <set-header> has no attribute 'oops'",
            bad.display()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{}:4:", bad.display()))
            && stdout.contains("'calls' must be a whole number"),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 of 2 policy file(s) would not run"));
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn trace_writes_to_the_log_with_the_request_id() {
    let backend = Backend::start().await;
    let gh = Gatehouse::up("pol-trace", &[]).await;
    gh.simple_api("traced", "traced", &backend.url(), true)
        .await;
    set_policy(
        &gh,
        "/mgmt/apis/traced/policy",
        r#"<policies><inbound><base />
            <trace source="audit" severity="information">
                <message>@("visited " + context.Request.Url.Path)</message>
                <metadata name="tier" value="gold" />
            </trace>
        </inbound></policies>"#,
    )
    .await;
    // Generous: under load the policy can take a while to be in force.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = gh
            .http
            .get(gh.gateway("/traced/here"))
            .send()
            .await
            .unwrap();
        // 404 until the new API is in force at the gateway.
        assert!(matches!(r.status().as_u16(), 200 | 404), "{}", r.status());
        let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        if r.status() == 200 && gh.log().contains("visited /traced/here") {
            let line = gh
                .log()
                .lines()
                .find(|l| l.contains("visited /traced/here"))
                .unwrap()
                .to_owned();
            assert!(
                line.contains("audit") && line.contains("tier=gold"),
                "{line}"
            );
            assert!(gh.log().contains(&id), "the request id is not logged");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the trace never reached the log"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(backend.last().path, "/here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn quota_admits_exactly_the_limit_under_concurrency() {
    let backend = Backend::start().await;
    let gh = Gatehouse::up("pol-quota-conc", &[]).await;
    gh.simple_api("metered", "metered", &backend.url(), false)
        .await;
    let key = gh.subscription("s", "/apis").await;
    let probe = gh.subscription("probe", "/apis").await;
    set_policy(
        &gh,
        "/mgmt/apis/metered/policy",
        r#"<policies><inbound><base />
            <quota-by-key calls="100" renewal-period="3600" counter-key="@(context.Subscription.Id)" />
            <set-header name="X-Quota" exists-action="override"><value>on</value></set-header>
        </inbound><outbound><base /><set-header name="X-Quota" exists-action="override"><value>on</value></set-header></outbound></policies>"#,
    )
    .await;
    until_header(&gh, "/metered/x", &probe, "x-quota").await;
    let (mut ok, mut refused) = (0, 0);
    for (status, _, body) in concurrent_calls(&gh, "/metered/x", &key, 1000).await {
        match status {
            200 => ok += 1,
            403 => {
                refused += 1;
                assert!(
                    body.contains("Out of call volume quota. Quota will be replenished in "),
                    "{body}"
                );
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    println!("1000 concurrent calls against a quota of 100: {ok} admitted, {refused} refused");
    assert_eq!((ok, refused), (100, 900));
}

#[tokio::test]
async fn set_method_set_body_and_rate_limit_per_subscription() {
    let backend = Backend::start().await;
    let gh = Gatehouse::up("pol-method", &[]).await;
    gh.simple_api("rpc", "rpc", &backend.url(), false).await;
    let first = gh.subscription("first", "/apis").await;
    let second = gh.subscription("second", "/apis").await;
    set_policy(
        &gh,
        "/mgmt/apis/rpc/policy",
        r#"<policies><inbound><base />
            <rate-limit calls="2" renewal-period="60" />
            <set-method>POST</set-method>
            <set-body>@("{\"caller\": \"" + context.Subscription.Id + "\"}")</set-body>
            <set-header name="Content-Type" exists-action="override"><value>application/json</value></set-header>
        </inbound></policies>"#,
    )
    .await;
    let call = |key: &str| {
        gh.http
            .get(gh.gateway("/rpc/do"))
            .header("Ocp-Apim-Subscription-Key", key)
            .send()
    };
    // The subscription and the policy reach the gateway a moment after they are saved: 401
    // (key not known yet) or a GET forwarded unchanged until then.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = call(&first).await.unwrap();
        assert!(
            r.status() == 200 || r.status() == 429 || r.status() == 401,
            "{}",
            r.status()
        );
        if backend.count() > 0 && backend.last().method == "POST" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the policy never took effect"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = backend.last();
    assert_eq!(seen.path, "/do");
    assert_eq!(
        String::from_utf8_lossy(&seen.body),
        r#"{"caller": "first"}"#
    );
    assert_eq!(seen.headers["content-type"], "application/json");
    // The limit of 2 is per subscription: "first" has used one; one more, then 429.
    assert_eq!(call(&first).await.unwrap().status(), 200);
    let refused = call(&first).await.unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(
        call(&second).await.unwrap().status(),
        200,
        "another subscription has its own limit"
    );
}

/// Calls `path` with `key` until `header` shows up in the answer: the policy is in force.
async fn until_header(gh: &Gatehouse, path: &str, key: &str, header: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let r = gh
            .http
            .get(gh.gateway(path))
            .header("Ocp-Apim-Subscription-Key", key)
            .send()
            .await
            .unwrap();
        if r.headers().contains_key(header) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the policy never took effect"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends `n` concurrent calls; returns each one's status, Retry-After and body.
async fn concurrent_calls(
    gh: &Gatehouse,
    path: &str,
    key: &str,
    n: usize,
) -> Vec<(u16, Option<String>, String)> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(200)
        .build()
        .unwrap();
    let mut calls = Vec::new();
    for _ in 0..n {
        let (client, url, key) = (client.clone(), gh.gateway(path), key.to_owned());
        calls.push(tokio::spawn(async move {
            let r = client
                .get(url)
                .header("Ocp-Apim-Subscription-Key", key)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, retry, r.text().await.unwrap())
        }));
    }
    let mut out = Vec::with_capacity(n);
    for c in calls {
        out.push(c.await.unwrap());
    }
    out
}
