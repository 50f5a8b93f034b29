//! The caching policies together: `cache-lookup` + `cache-store` for responses, and the value
//! policies, against the test kit's in-memory cache.

use super::super::testkit::*;
use crate::exchange::{Exchange, SubscriptionInfo};
use crate::run::Pipeline;

fn cached(lookup_attrs: &str, lookup_children: &str, store: &str) -> Pipeline {
    pipeline(&format!(
        r#"<policies>
            <inbound><cache-lookup vary-by-developer="false" vary-by-developer-groups="false" {lookup_attrs}>{lookup_children}</cache-lookup></inbound>
            <backend><forward-request/></backend>
            <outbound>{store}</outbound>
        </policies>"#
    ))
}

/// Runs `ex` against a backend answering `body`, with `cache`; returns whether the backend was
/// called and the exchange.
fn call(p: &Pipeline, mut ex: Exchange, cache: &MockCache, body: &'static str) -> (bool, Exchange) {
    let mut io = MockIo {
        cache: cache.clone(),
        answer: Some(bytes::Bytes::from_static(body.as_bytes())),
        ..MockIo::default()
    };
    block_on(p.run(&mut ex, &mut io));
    (io.forwards == 1, ex)
}

#[test]
fn a_stored_response_is_served_without_the_backend() {
    let p = cached(
        "",
        "",
        r#"<set-header name="X-Stored" exists-action="override"><value>yes</value></set-header><cache-store duration="60" />"#,
    );
    assert!(p.reads_response_body);
    let cache = MockCache::default();
    let (called, ex) = call(&p, exchange("GET", "/items/1", &[]), &cache, "first");
    assert!(called);
    assert_eq!(ex.response.unwrap().body.unwrap(), "first");
    let (called, ex) = call(&p, exchange("GET", "/items/1", &[]), &cache, "second");
    assert!(!called, "a hit does not call the backend");
    let r = ex.response.unwrap();
    assert_eq!(
        (r.status.as_u16(), r.body.unwrap()),
        (200, bytes::Bytes::from("first"))
    );
    assert_eq!(r.headers["x-stored"], "yes");
    assert!(
        r.headers.get("cache-control").is_none(),
        "downstream-caching-type defaults to none"
    );
    // Another path is another entry.
    assert!(call(&p, exchange("GET", "/items/2", &[]), &cache, "x").0);
    // Only GET is looked up and stored.
    assert!(call(&p, exchange("POST", "/items/1", &[]), &cache, "x").0);
    assert!(call(&p, exchange("HEAD", "/items/3", &[]), &cache, "x").0);
    assert!(call(&p, exchange("HEAD", "/items/3", &[]), &cache, "x").0);
}

#[test]
fn only_listed_query_parameters_and_headers_vary_the_key() {
    let p = cached(
        "",
        "<vary-by-query-parameter>version;lang</vary-by-query-parameter><vary-by-header>Accept</vary-by-header>",
        r#"<cache-store duration="60" />"#,
    );
    let cache = MockCache::default();
    let get = |q: &str, accept: &str| {
        call(
            &p,
            exchange("GET", &format!("/r?{q}"), &[("Accept", accept)]),
            &cache,
            "x",
        )
        .0
    };
    assert!(get("version=1&noise=a", "application/json"));
    assert!(
        !get("noise=b&version=1", "application/json"),
        "unlisted parameters do not vary it"
    );
    assert!(get("version=2", "application/json"));
    assert!(get("version=1&lang=fr", "application/json"));
    assert!(get("version=1&noise=a", "application/xml"));
    assert!(!get("version=1", "application/xml"));
}

#[test]
fn private_requests_and_developers() {
    let p = pipeline(
        r#"<policies>
            <inbound><cache-lookup vary-by-developer="true" vary-by-developer-groups="false" /></inbound>
            <backend><forward-request/></backend>
            <outbound><cache-store duration="60" /></outbound>
        </policies>"#,
    );
    let cache = MockCache::default();
    let as_sub = |id: &str| {
        let mut ex = exchange("GET", "/me", &[]);
        ex.info.subscription = Some(SubscriptionInfo {
            id: id.into(),
            ..SubscriptionInfo::default()
        });
        call(&p, ex, &cache, "x").0
    };
    assert!(as_sub("s1"));
    assert!(!as_sub("s1"));
    assert!(as_sub("s2"), "another developer has their own entry");

    // A request with credentials is neither looked up nor stored by default.
    let p = cached("", "", r#"<cache-store duration="60" />"#);
    let cache = MockCache::default();
    let auth = || exchange("GET", "/x", &[("Authorization", "Bearer t")]);
    assert!(call(&p, auth(), &cache, "x").0);
    assert!(call(&p, auth(), &cache, "x").0);
    assert!(cache.0.lock().unwrap().is_empty());
    let p = cached(
        r#"allow-private-response-caching="true""#,
        "<vary-by-header>Authorization</vary-by-header>",
        r#"<cache-store duration="60" />"#,
    );
    assert!(call(&p, auth(), &cache, "x").0);
    assert!(!call(&p, auth(), &cache, "x").0);
}

#[test]
fn only_200_is_stored_unless_cache_response_and_never_cookies() {
    let cache = MockCache::default();
    let p = cached(
        "",
        "",
        r#"<set-status code="404" reason="Not Found" /><cache-store duration="60" />"#,
    );
    assert!(call(&p, exchange("GET", "/a", &[]), &cache, "x").0);
    assert!(call(&p, exchange("GET", "/a", &[]), &cache, "x").0);
    let p = cached(
        "",
        "",
        r#"<set-status code="404" reason="Not Found" /><cache-store duration="60" cache-response="true" />"#,
    );
    assert!(call(&p, exchange("GET", "/b", &[]), &cache, "x").0);
    let (called, ex) = call(&p, exchange("GET", "/b", &[]), &cache, "x");
    assert!(!called);
    assert_eq!(ex.response.unwrap().status, 404);
    let p = cached(
        "",
        "",
        r#"<set-header name="Set-Cookie" exists-action="override"><value>session=1</value></set-header><cache-store duration="60" />"#,
    );
    assert!(call(&p, exchange("GET", "/c", &[]), &cache, "x").0);
    assert!(call(&p, exchange("GET", "/c", &[]), &cache, "x").0);
}

#[test]
fn downstream_caching_sets_cache_control() {
    let p = cached(
        r#"downstream-caching-type="public""#,
        "",
        r#"<cache-store duration="@(30 * 2)" />"#,
    );
    let cache = MockCache::default();
    let (_, ex) = call(&p, exchange("GET", "/a", &[]), &cache, "x");
    assert_eq!(
        ex.response.unwrap().headers["cache-control"],
        "public, max-age=60, must-revalidate"
    );
    let (called, ex) = call(&p, exchange("GET", "/a", &[]), &cache, "x");
    assert!(!called);
    let cc = ex.response.unwrap().headers["cache-control"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cc.starts_with("public, max-age=") && cc.ends_with(", must-revalidate"),
        "{cc}"
    );
    let p = cached(
        r#"downstream-caching-type="private" must-revalidate="false""#,
        "",
        r#"<cache-store duration="10" />"#,
    );
    let (_, ex) = call(&p, exchange("GET", "/b", &[]), &cache, "x");
    assert_eq!(
        ex.response.unwrap().headers["cache-control"],
        "private, max-age=10"
    );
}

#[test]
fn cache_store_without_a_lookup_stores_nothing() {
    let p = pipeline(
        r#"<policies><backend><forward-request/></backend><outbound><cache-store duration="60" /></outbound></policies>"#,
    );
    let cache = MockCache::default();
    assert!(call(&p, exchange("GET", "/a", &[]), &cache, "x").0);
    assert!(cache.0.lock().unwrap().is_empty());
}

#[test]
fn values_are_stored_read_defaulted_and_removed() {
    let cache = MockCache::default();
    let store = pipeline(
        r#"<policies><inbound>
            <cache-store-value key="@(&quot;profile-&quot; + context.Request.Headers.GetValueOrDefault(&quot;X-User&quot;, &quot;&quot;))" value="@(new JObject(new JProperty(&quot;name&quot;, &quot;Ada&quot;)))" duration="600" />
            <cache-store-value key="greeting" value="hello" duration="600" />
        </inbound><backend><forward-request/></backend></policies>"#,
    );
    assert!(
        call(
            &store,
            exchange("GET", "/", &[("X-User", "7")]),
            &cache,
            "x"
        )
        .0
    );
    let read = pipeline(
        r#"<policies><inbound>
            <cache-lookup-value key="@(&quot;profile-&quot; + context.Request.Headers.GetValueOrDefault(&quot;X-User&quot;, &quot;&quot;))" variable-name="profile" />
            <cache-lookup-value key="greeting" variable-name="greeting" default-value="none" />
            <cache-lookup-value key="missing" variable-name="fallback" default-value="@(40 + 2)" />
            <set-header name="X-Profile" exists-action="override"><value>@(context.Variables.ContainsKey("profile") ? ((JObject)context.Variables["profile"])["name"].ToString() : "miss")</value></set-header>
            <set-header name="X-Greeting" exists-action="override"><value>@((string)context.Variables["greeting"])</value></set-header>
            <set-header name="X-Fallback" exists-action="override"><value>@(context.Variables["fallback"].ToString())</value></set-header>
        </inbound><backend><forward-request/></backend></policies>"#,
    );
    let headers = |user: &str| {
        let mut io = MockIo {
            cache: cache.clone(),
            ..MockIo::default()
        };
        let mut ex = exchange("GET", "/", &[("X-User", user)]);
        block_on(read.run(&mut ex, &mut io));
        let sent = io
            .forwarded
            .unwrap_or_else(|| panic!("{:?}", ex.last_error));
        ["x-profile", "x-greeting", "x-fallback"].map(|h| all(&sent.headers, h)[0].clone())
    };
    assert_eq!(headers("7"), ["Ada", "hello", "42"]);
    assert_eq!(
        headers("8"),
        ["miss", "hello", "42"],
        "a miss without default-value leaves the variable unset"
    );
    let remove = pipeline(
        r#"<policies><outbound><cache-remove-value key="greeting" /><cache-remove-value key="never-stored" /></outbound></policies>"#,
    );
    call(&remove, exchange("GET", "/", &[]), &cache, "x");
    assert_eq!(headers("7"), ["Ada", "none", "42"]);
}

#[test]
fn attributes_are_checked() {
    let cases = [
        (
            r#"<cache-lookup vary-by-developer="false" vary-by-developer-groups="false" caching-type="shared" />"#,
            "must be one of prefer-external, external, internal",
        ),
        (
            r#"<cache-lookup vary-by-developer="false" />"#,
            "needs the attribute 'vary-by-developer-groups'",
        ),
        (
            r#"<cache-lookup vary-by-developer="false" vary-by-developer-groups="false" downstream-caching-type="shared" />"#,
            "none, private or public",
        ),
        (
            r#"<cache-lookup vary-by-developer="false" vary-by-developer-groups="false"><vary-by-header>Bad Header</vary-by-header></cache-lookup>"#,
            "not a valid header name",
        ),
        (
            r#"<cache-lookup vary-by-developer="false" vary-by-developer-groups="false"><vary-by-cookie>a</vary-by-cookie></cache-lookup>"#,
            "cannot contain <vary-by-cookie>",
        ),
        (
            r#"<cache-lookup-value key="k" />"#,
            "needs the attribute 'variable-name'",
        ),
        (
            r#"<cache-store-value key="k" value="v" />"#,
            "needs the attribute 'duration'",
        ),
        (
            r#"<cache-store-value key="k" value="v" duration="0" />"#,
            "whole number of seconds from 1",
        ),
        (r#"<cache-remove-value />"#, "needs the attribute 'key'"),
        (
            r#"<cache-store duration="60" />"#,
            "not allowed in <inbound>",
        ),
    ];
    for (xml, needle) in cases {
        let errors = errors_inbound(xml);
        assert!(
            errors.iter().any(|e| e.contains(needle)),
            "{xml}: {errors:?}"
        );
    }
    let e = errors_in("outbound", r#"<cache-store duration="soon" />"#);
    assert!(
        e[0].contains("'duration' must be a whole number of seconds from 1"),
        "{e:?}"
    );
    let e = errors_in(
        "outbound",
        r#"<cache-lookup vary-by-developer="false" vary-by-developer-groups="false" />"#,
    );
    assert!(e[0].contains("not allowed in <outbound>"), "{e:?}");
}
