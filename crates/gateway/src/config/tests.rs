use super::*;
use gatehouse_model::resources::{Operation, ProductState};
use gatehouse_model::snapshot::{SnapshotProduct, SnapshotSubscription};

fn hex(bytes: [u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn api(id: &str, path: &str, required: bool) -> SnapshotApi {
    SnapshotApi {
        id: id.into(),
        path: path.into(),
        service_url: Some("http://127.0.0.1:9000/base/".into()),
        protocols: vec![Protocol::Http, Protocol::Https],
        subscription_required: required,
        key_header: "Ocp-Apim-Subscription-Key".into(),
        key_query: "subscription-key".into(),
        operations: vec![Operation {
            id: "get".into(),
            display_name: "get".into(),
            method: "GET".into(),
            url_template: "/{*rest}".into(),
            template_parameters: vec![],
            description: None,
        }],
        name: id.into(),
        version: None,
        policy: None,
        operation_policies: Default::default(),
        examples: Default::default(),
        schemas: Default::default(),
        definitions: Default::default(),
    }
}

fn sub(id: &str, scope: &str, key: &str, state: SubscriptionState) -> SnapshotSubscription {
    SnapshotSubscription {
        id: id.into(),
        scope: scope.into(),
        state,
        key_hashes: vec![hex(hash_key(key))],
        name: id.into(),
    }
}

fn snapshot() -> Snapshot {
    Snapshot {
        format: FORMAT_VERSION,
        revision: 7,
        gateway_id: "built-in".into(),
        apis: vec![
            api("echo", "echo", true),
            api("deep", "a/b/c", true),
            api("root", "", false),
            api("in-open", "free", true),
        ],
        products: vec![
            SnapshotProduct {
                id: "starter".into(),
                subscription_required: true,
                state: ProductState::Published,
                apis: vec!["echo".into()],
                name: "Starter".into(),
                policy: None,
            },
            SnapshotProduct {
                id: "open".into(),
                subscription_required: false,
                state: ProductState::Published,
                apis: vec!["in-open".into()],
                name: "Open".into(),
                policy: None,
            },
        ],
        subscriptions: vec![
            sub(
                "all",
                "/apis",
                "key-all-0123456789",
                SubscriptionState::Active,
            ),
            sub(
                "p",
                "/products/starter",
                "key-prod-0123456789",
                SubscriptionState::Active,
            ),
            sub(
                "d",
                "/apis/deep",
                "key-deep-0123456789",
                SubscriptionState::Active,
            ),
            sub(
                "s",
                "/apis",
                "key-susp-0123456789",
                SubscriptionState::Suspended,
            ),
            sub(
                "gone",
                "/apis/elsewhere",
                "key-gone-0123456789",
                SubscriptionState::Active,
            ),
        ],
        global_policy: None,
        named_values: Default::default(),
        policy_fragments: Default::default(),
        tls: Default::default(),
        tryit_key: None,
        loggers: Vec::new(),
        backends: vec![],
    }
}

#[test]
fn finds_api_by_longest_path_prefix() {
    let c = CompiledConfig::compile(&snapshot()).unwrap();
    let (a, rest) = c.find_api("/echo/items/1?x").unwrap();
    assert_eq!((&*a.id, rest), ("echo", "/items/1?x"));
    let (a, rest) = c.find_api("/ECHO").unwrap();
    assert_eq!((&*a.id, rest), ("echo", ""));
    let (a, rest) = c.find_api("/a/b/c/d").unwrap();
    assert_eq!((&*a.id, rest), ("deep", "/d"));
    // Not a whole-segment prefix: falls through to the root API.
    let (a, rest) = c.find_api("/echoes").unwrap();
    assert_eq!((&*a.id, rest), ("root", "/echoes"));
    let (a, _) = c.find_api("/a/b").unwrap();
    assert_eq!(&*a.id, "root");
}

proptest::proptest! {
    /// The API found is the one with the longest whole-segment path prefix, as a plain search
    /// over every API finds it (with the root API as the last resort).
    #[test]
    fn find_api_is_the_longest_whole_segment_prefix(
        segments in proptest::collection::vec(
            proptest::sample::select(vec!["a", "b", "c", "d", "echo", "ECHO", "", "free", "x"]),
            0..7,
        ),
        trailing in proptest::bool::ANY,
    ) {
        let c = CompiledConfig::compile(&snapshot()).unwrap();
        let mut path = format!("/{}", segments.join("/"));
        if trailing {
            path.push('/');
        }
        let body = &path[1..];
        let lower = body.to_ascii_lowercase();
        let expected = c
            .apis
            .iter()
            .flatten()
            .filter(|api| !api.path.is_empty())
            .filter(|api| {
                let p = api.path.to_ascii_lowercase();
                lower.starts_with(&p) && matches!(lower.as_bytes().get(p.len()), None | Some(b'/'))
            })
            .max_by_key(|api| api.path.len())
            .map(|api| (api.id.to_string(), body[api.path.len()..].to_owned()))
            // The root API's rest: the whole path, or after an empty first segment (`//a`)
            // the path from that segment's end, as for any other API.
            .or_else(|| {
                let rest = if body.starts_with('/') { body } else { path.as_str() };
                c.find_api("/").map(|(root, _)| (root.id.to_string(), rest.to_owned()))
            });
        let found = c.find_api(&path).map(|(api, rest)| (api.id.to_string(), rest.to_owned()));
        proptest::prop_assert_eq!(found, expected, "{}", path);
    }
}

#[test]
fn no_root_api_means_no_match() {
    let mut s = snapshot();
    s.apis.retain(|a| a.id != "root");
    let c = CompiledConfig::compile(&s).unwrap();
    assert!(c.find_api("/nothing").is_none());
    assert!(c.find_api("/").is_none());
}

#[test]
fn keys_cover_their_scope_only() {
    let c = CompiledConfig::compile(&snapshot()).unwrap();
    let echo = c.find_api("/echo").unwrap().0;
    let deep = c.find_api("/a/b/c").unwrap().0;
    let valid = |api, key| matches!(c.check_key(api, key), KeyCheck::Valid(_));
    assert!(valid(echo, "key-all-0123456789"));
    assert!(valid(deep, "key-all-0123456789"));
    assert!(valid(echo, "key-prod-0123456789"));
    assert!(!valid(deep, "key-prod-0123456789"));
    assert!(valid(deep, "key-deep-0123456789"));
    assert!(!valid(echo, "key-deep-0123456789"));
    assert!(!valid(echo, "key-susp-0123456789"));
    assert!(!valid(echo, "nope"));
}

#[test]
fn open_products_open_their_apis() {
    let c = CompiledConfig::compile(&snapshot()).unwrap();
    assert!(c.find_api("/free").unwrap().0.open);
    assert!(!c.find_api("/echo").unwrap().0.open);
    assert!(c.find_api("/").unwrap().0.open);
}

#[test]
fn upstream_is_parsed_once() {
    let c = CompiledConfig::compile(&snapshot()).unwrap();
    let up = c.find_api("/echo").unwrap().0.upstream.as_ref().unwrap();
    assert_eq!(up.authority.as_str(), "127.0.0.1:9000");
    assert_eq!(&*up.base_path, "/base");
}

#[test]
fn rejects_bad_snapshots() {
    // Two APIs on one path: the first keeps it, the second is reported, not the whole snapshot.
    let mut s = snapshot();
    s.apis[1].path = "ECHO".into();
    let c = CompiledConfig::compile(&s).unwrap();
    assert_eq!(c.problems().len(), 1);
    assert_eq!(&*c.problems()[0].api, "deep");
    assert!(c.problems()[0].message.contains("used by another API"));
    assert_eq!(&*c.find_api("/echo/x").unwrap().0.id, "echo");
    let mut s = snapshot();
    s.subscriptions[0].key_hashes = vec!["zz".into()];
    assert!(CompiledConfig::compile(&s).is_err());
    let mut s = snapshot();
    s.format = 99;
    assert!(CompiledConfig::compile(&s).is_err());
}

#[test]
fn policies_compose_per_operation_and_product() {
    let mut s = snapshot();
    s.global_policy = Some("<policies><inbound><set-header name=\"X-G\"><value>{{greeting}}</value></set-header></inbound><backend><forward-request/></backend></policies>".into());
    s.named_values.insert("greeting".into(), "hi".into());
    s.products[0].policy = Some("<policies><inbound><base/><set-header name=\"X-P\"><value>p</value></set-header></inbound></policies>".into());
    let c = CompiledConfig::compile(&s).unwrap();
    let echo = c.find_api("/echo").unwrap().0;
    let op = &echo.operations[0];
    assert!(!op.policy.default.plain_forward);
    let starter = op.policy.for_product(Some(0));
    assert!(!std::sync::Arc::ptr_eq(starter, &op.policy.default));
    assert_eq!(starter.section(gatehouse_policy::Section::Inbound).len(), 2);
    assert_eq!(
        op.policy
            .default
            .section(gatehouse_policy::Section::Inbound)
            .len(),
        1
    );
    // Without policies the fast path is taken.
    let plain = CompiledConfig::compile(&snapshot()).unwrap();
    assert!(
        plain.find_api("/echo").unwrap().0.operations[0]
            .policy
            .default
            .plain_forward
    );
    // A policy that does not compile rejects the whole configuration, saying where.
    s.named_values.clear();
    let err = CompiledConfig::compile(&s).unwrap_err();
    assert!(
        err.target.contains("globalPolicy") && err.message.contains("greeting"),
        "{err}"
    );
}

#[test]
fn fragments_are_inlined_and_a_missing_one_rejects_the_configuration() {
    let mut s = snapshot();
    s.apis[0].policy = Some(
        r#"<policies><inbound><base/><include-fragment fragment-id="tag"/></inbound></policies>"#
            .into(),
    );
    s.policy_fragments.insert(
        "tag".into(),
        r#"<fragment><set-header name="X-Tag"><value>{{greeting}}</value></set-header></fragment>"#
            .into(),
    );
    s.named_values.insert("greeting".into(), "hi".into());
    let c = CompiledConfig::compile(&s).unwrap();
    let op = &c.find_api("/echo").unwrap().0.operations[0];
    assert_eq!(
        op.policy
            .default
            .section(gatehouse_policy::Section::Inbound)
            .len(),
        1
    );
    // Without the fragment the API cannot be compiled: it alone is unavailable.
    s.policy_fragments.clear();
    let c = CompiledConfig::compile(&s).unwrap();
    let problem = &c.problems()[0];
    assert!(
        problem.target == "apis.echo.policy" && problem.message.contains("policy fragment 'tag'"),
        "{problem}"
    );
    assert!(c.find_api("/echo").unwrap().0.unavailable.is_some());
    assert!(c.find_api("/a/b/c").unwrap().0.unavailable.is_none());
}

#[test]
fn a_product_policy_that_does_not_compile_costs_only_the_products_apis() {
    let s = snapshot();
    let c = CompiledConfig::compile(&s).unwrap();
    let mut bad = s.clone();
    bad.revision = 8;
    bad.products[0].policy =
        Some("<policies><inbound><no-such-policy/></inbound></policies>".into());
    let check = |c: &CompiledConfig| {
        assert_eq!(c.problems().len(), 1, "{:?}", c.problems());
        let problem = &c.problems()[0];
        assert_eq!(
            (&*problem.api, problem.target.as_str()),
            ("echo", "products.starter.policy")
        );
        assert!(c.find_api("/echo/x").unwrap().0.unavailable.is_some());
        assert!(c.find_api("/a/b/c/x").unwrap().0.unavailable.is_none());
        assert!(c.find_api("/free/x").unwrap().0.unavailable.is_none());
    };
    check(&CompiledConfig::compile(&bad).unwrap());
    check(&c.update(&Delta::between(&s, &bad), &bad).unwrap());
}

/// Ways a gateway's compile refuses an API, each injected straight into the snapshot as a
/// control plane of another release or a damaged backup could send it.
fn break_api(api: &mut SnapshotApi, how: usize) -> &'static str {
    match how % 7 {
        0 => {
            api.service_url = Some("https://bad-.example.com".into());
            "serviceUrl"
        }
        1 => {
            api.service_url = Some("ftp://example.com".into());
            "serviceUrl"
        }
        2 => {
            api.policy = Some("<policies><inbound><no-such-policy/></inbound></policies>".into());
            "policy"
        }
        3 => {
            api.operations[0].url_template = "/{unclosed".into();
            "operations.get"
        }
        4 => {
            api.operations[0].method = "GE T".into();
            "operations.get"
        }
        5 => {
            api.key_header = "bad header".into();
            "subscriptionKeyParameterNames.header"
        }
        _ => {
            api.operation_policies.insert(
                "get".into(),
                "<policies><inbound><set-header name=\"X\"><value>@(nope(</value></set-header></inbound></policies>".into(),
            );
            "operations.get.policy"
        }
    }
}

/// Every API but `broken` is served as compiled; `broken` routes to the 500 answer.
fn serves_all_but(c: &CompiledConfig, s: &Snapshot, broken: &str, what: &str) {
    assert_eq!(c.problems().len(), 1, "{:?}", c.problems());
    let problem = &c.problems()[0];
    assert_eq!(&*problem.api, broken);
    assert!(problem.target.contains(what), "{problem}");
    for api in &s.apis {
        let path = format!("/{}/x", api.path);
        let (found, rest) = c.find_api(&path).unwrap();
        assert_eq!(&*found.id, api.id.as_str());
        let op = crate::route::find(&found.operations, &http::Method::GET, rest);
        if api.id == broken {
            assert!(op.is_none());
            let e = found.unmatched();
            assert!(matches!(e, crate::error::DataPlaneError::ApiUnavailable(_)));
            assert_eq!(
                e.answer().parts(),
                gatehouse_policy::Answer::Internal.parts()
            );
        } else {
            assert!(found.unavailable.is_none());
            assert!(op.is_some(), "{} routes no call", api.id);
            assert!(found.upstream.is_some());
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, ..Default::default() })]

    /// A snapshot with one randomly broken API still compiles, in full and as an update, and
    /// serves every other API; later updates keep applying.
    #[test]
    fn one_broken_api_leaves_every_other_api_served(
        count in 2usize..8,
        pick in 0usize..8,
        how in 0usize..7,
    ) {
        let mut s = snapshot();
        s.apis = (0..count).map(|i| api(&format!("api{i}"), &format!("p{i}"), true)).collect();
        let broken = pick % count;
        let mut bad = s.clone();
        bad.revision = 8;
        let what = break_api(&mut bad.apis[broken], how);
        let broken_id = format!("api{broken}");

        let full = CompiledConfig::compile(&bad).unwrap();
        serves_all_but(&full, &bad, &broken_id, what);

        // The same through the incremental path, from a configuration where it was healthy.
        let healthy = CompiledConfig::compile(&s).unwrap();
        proptest::prop_assert!(healthy.problems().is_empty());
        let delta = Delta::between(&s, &bad);
        let updated = healthy.update(&delta, &bad).unwrap();
        serves_all_but(&updated, &bad, &broken_id, what);

        // The configuration keeps following: a new subscription works on the others.
        let mut next = bad.clone();
        next.revision = 9;
        next.subscriptions.push(sub("new", "/apis", "key-new-0123456789", SubscriptionState::Active));
        let delta = Delta::between(&bad, &next);
        let later = updated.update(&delta, &next).unwrap();
        serves_all_but(&later, &next, &broken_id, what);
        let other = later.find_api(&format!("/p{}/x", (broken + 1) % count)).unwrap().0;
        proptest::prop_assert!(matches!(later.check_key(other, "key-new-0123456789"), KeyCheck::Valid(_)));

        // Repairing it serves it again.
        let mut fixed = next.clone();
        fixed.revision = 10;
        fixed.apis[broken] = api(&broken_id, &format!("p{broken}"), true);
        let delta = Delta::between(&next, &fixed);
        let repaired = later.update(&delta, &fixed).unwrap();
        proptest::prop_assert!(repaired.problems().is_empty());
    }
}

/// Whatever the model's URL check lets through, the gateway's parser takes: the control plane
/// refuses with that check, so nothing it saves can be refused here.
#[test]
fn every_url_the_model_accepts_parses() {
    use proptest::prelude::*;
    let part = proptest::sample::select(vec![
        "a",
        "Z9",
        "-",
        "_",
        ".",
        ":",
        "@",
        "[",
        "]",
        "::1",
        "127.0.0.1",
        "8080",
        "99999",
        "0",
        "/",
        "?",
        "&",
        "=",
        "%",
        "%2F",
        "%g",
        "{",
        "}",
        "|",
        "^",
        "`",
        "\\",
        "\"",
        "<",
        ">",
        "ä",
        "~",
        "!",
        "$",
        "'",
        "(",
        "*",
        "+",
        ",",
        ";",
        "example",
        "com",
        "x-",
        "1",
        "0x1f",
    ]);
    let strategy = (
        proptest::sample::select(vec!["http://", "https://"]),
        proptest::collection::vec(part, 1..10),
    );
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 4096,
        ..ProptestConfig::default()
    });
    let accepted = std::cell::Cell::new(0);
    runner
        .run(&strategy, |(scheme, parts)| {
            let url = format!("{scheme}{}", parts.concat());
            if gatehouse_model::resources::check_http_url(&url).is_ok() {
                accepted.set(accepted.get() + 1);
                prop_assert!(
                    parse_service_url(&url).is_ok(),
                    "{url}: {:?}",
                    parse_service_url(&url).err()
                );
            }
            Ok(())
        })
        .unwrap();
    // Some of the generated URLs pass, or the test says little.
    assert!(accepted.get() > 0);
}

#[test]
fn apis_with_cors_answer_preflights_and_operations_get_their_examples() {
    let mut s = snapshot();
    let cors = r#"<policies><inbound><cors><allowed-origins><origin>*</origin></allowed-origins><allowed-headers><header>*</header></allowed-headers></cors><base/></inbound></policies>"#;
    s.apis[0].policy = Some(cors.into());
    let mut examples = gatehouse_model::snapshot::ResponseExamples::new();
    examples.insert(
        "200".into(),
        vec![gatehouse_model::snapshot::ResponseExample {
            content_type: "application/json".into(),
            body: "{}".into(),
        }],
    );
    s.apis[0].examples.insert("get".into(), examples);
    let c = CompiledConfig::compile(&s).unwrap();
    let echo = c.find_api("/echo").unwrap().0;
    let preflight = echo.preflight.as_ref().unwrap();
    assert!(preflight.policy.default.answers_preflight());
    assert!(c.find_api("/a/b/c").unwrap().0.preflight.is_none());
    assert_eq!(
        echo.operations[0].examples.as_ref().unwrap().examples["200"][0].body,
        "{}"
    );
    // A global cors policy serves every API.
    let mut s = snapshot();
    s.global_policy = Some(cors.replace("<base/>", "").replace(
        "</inbound>",
        "</inbound><backend><forward-request/></backend>",
    ));
    let c = CompiledConfig::compile(&s).unwrap();
    assert!(c.find_api("/a/b/c").unwrap().0.preflight.is_some());
}

mod incremental {
    //! [`CompiledConfig::update`] against [`CompiledConfig::compile`]: random snapshots in a
    //! row, each reached by a delta, must compile to the same configuration either way.

    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    /// What a configuration does, with indices replaced by ids (an update may number APIs
    /// differently from a full compile).
    #[derive(Debug, PartialEq)]
    struct View {
        apis: BTreeMap<String, String>,
        paths: Vec<String>,
        keys: BTreeMap<[u8; 32], String>,
        of_subscription: Vec<(String, Vec<[u8; 32]>)>,
        max_depth: usize,
        products: Vec<(Arc<str>, Arc<str>)>,
        api_count: usize,
    }

    fn view(c: &CompiledConfig) -> View {
        let id = |i: usize| c.api(i).map_or("<gone>".to_owned(), |a| a.id.to_string());
        let product = |p: usize| {
            c.products
                .get(p)
                .map_or("<none>".into(), |p| p.0.to_string())
        };
        let mut apis = BTreeMap::new();
        for api in c.apis.iter().flatten() {
            let members: Vec<String> = c
                .product_apis
                .iter()
                .enumerate()
                .filter(|(_, set)| set.contains(&api.index))
                .map(|(p, _)| product(p))
                .collect();
            let ops: Vec<String> = api
                .operations
                .iter()
                .map(|op| {
                    let by_product: Vec<String> = op
                        .policy
                        .by_product
                        .iter()
                        .map(|(p, pipeline)| format!("{}={pipeline:?}", product(*p)))
                        .collect();
                    format!(
                        "{} {:?} {by_product:?} {:?}",
                        op.id, op.policy.default, op.examples
                    )
                })
                .collect();
            let text = format!(
                "{} name={} path={} version={:?} url={:?} upstream={:?} http={} https={} open={} header={} query={} members={members:?} ops={ops:?} preflight={:?} unavailable={:?}",
                api.index == c.by_id[&api.id],
                api.name,
                api.path,
                api.version,
                api.service_url,
                api.upstream,
                api.http,
                api.https,
                api.open,
                api.key_header,
                api.key_query,
                api.preflight
                    .as_ref()
                    .map(|p| format!("{:?}", p.policy.default)),
                api.unavailable,
            );
            apis.insert(api.id.to_string(), text);
        }
        let mut paths: Vec<String> = c
            .by_path
            .iter()
            .map(|(p, i)| format!("{p}={}", id(*i)))
            .collect();
        paths.sort();
        let keys = c
            .keys
            .iter()
            .map(|(k, e)| {
                let access = match e.access {
                    Access::All => "all".to_owned(),
                    Access::Api(i) => format!("api {}", id(i)),
                    Access::Product(p) => format!("product {}", product(p)),
                };
                (*k, format!("{} {} {} {access}", e.id, e.name, e.active))
            })
            .collect();
        let mut of_subscription: Vec<(String, Vec<[u8; 32]>)> = c
            .keys
            .of_subscription
            .iter()
            .flat_map(|shard| shard.iter())
            .map(|(id, hashes)| {
                let mut hashes = hashes.clone();
                hashes.sort();
                (id.to_string(), hashes)
            })
            .collect();
        of_subscription.sort();
        View {
            apis,
            paths,
            keys,
            of_subscription,
            max_depth: c.max_depth,
            products: c.products.to_vec(),
            api_count: c.api_count(),
        }
    }

    const POLICY: &str = r#"<policies><inbound><base/><set-header name="X-A"><value>{{greeting}}</value></set-header></inbound></policies>"#;
    const PRODUCT_POLICY: &str = r#"<policies><inbound><base/><set-header name="X-P"><value>p</value></set-header></inbound></policies>"#;
    const FRAGMENT_POLICY: &str =
        r#"<policies><inbound><base/><include-fragment fragment-id="tag"/></inbound></policies>"#;

    #[derive(Debug, Clone)]
    struct Shape {
        apis: BTreeMap<u8, (u8, bool, u8, bool)>,
        products: BTreeMap<u8, (bool, bool, Vec<u8>)>,
        subs: BTreeMap<u8, (u8, bool, u8)>,
        global: u8,
        greeting: u8,
    }

    /// One small change to a shape.
    #[derive(Debug, Clone)]
    enum Change {
        Api(u8, Option<(u8, bool, u8, bool)>),
        Product(u8, Option<(bool, bool)>),
        Member(u8, u8, bool),
        Sub(u8, Option<(u8, bool, u8)>),
        Global,
        Greeting,
    }

    fn change() -> impl Strategy<Value = Change> {
        prop_oneof![
            4 => (0..6u8, prop::option::weighted(0.8, (0..9u8, any::<bool>(), 0..3u8, any::<bool>())))
                .prop_map(|(i, a)| Change::Api(i, a)),
            2 => (0..3u8, prop::option::weighted(0.8, (any::<bool>(), any::<bool>())))
                .prop_map(|(i, p)| Change::Product(i, p)),
            4 => (0..3u8, 0..7u8, any::<bool>()).prop_map(|(p, a, add)| Change::Member(p, a, add)),
            6 => (0..12u8, prop::option::weighted(0.8, (0..10u8, any::<bool>(), 0..2u8)))
                .prop_map(|(i, s)| Change::Sub(i, s)),
            1 => Just(Change::Global),
            1 => Just(Change::Greeting),
        ]
    }

    fn apply(shape: &mut Shape, change: &Change) {
        fn set<V>(map: &mut BTreeMap<u8, V>, key: u8, value: Option<V>) {
            match value {
                Some(v) => {
                    map.insert(key, v);
                }
                None => {
                    map.remove(&key);
                }
            }
        }
        match change.clone() {
            Change::Api(i, a) => set(&mut shape.apis, i, a),
            Change::Product(i, p) => {
                let apis = shape
                    .products
                    .get(&i)
                    .map(|p| p.2.clone())
                    .unwrap_or_default();
                set(&mut shape.products, i, p.map(|(r, pol)| (r, pol, apis)));
            }
            Change::Member(p, a, add) => {
                if let Some(product) = shape.products.get_mut(&p) {
                    product.2.retain(|x| *x != a);
                    if add {
                        product.2.push(a);
                    }
                }
            }
            Change::Sub(i, s) => set(&mut shape.subs, i, s),
            Change::Global => shape.global = 1 - shape.global,
            Change::Greeting => shape.greeting = 1 - shape.greeting,
        }
    }

    fn build(shape: &Shape, revision: u64) -> Snapshot {
        let mut s = snapshot();
        s.revision = revision;
        s.apis = shape
            .apis
            .iter()
            .map(|(&i, &(path, required, policy, version))| {
                // Mostly a path of its own; now and then one another API may want too.
                let path = match path {
                    0 => String::new(),
                    1 => "shared".to_owned(),
                    2..=5 => format!("p{i}"),
                    _ => format!("p{i}/deeper/{path}"),
                };
                let mut a = api(&format!("a{i}"), &path, required);
                a.policy = match policy {
                    1 => Some(POLICY.into()),
                    2 => Some(FRAGMENT_POLICY.into()),
                    _ => None,
                };
                a.version = version.then(|| "v2".into());
                a
            })
            .collect();
        s.products = shape
            .products
            .iter()
            .map(|(&i, (required, policy, apis))| SnapshotProduct {
                id: format!("p{i}"),
                subscription_required: *required,
                state: ProductState::Published,
                apis: apis.iter().map(|a| format!("a{a}")).collect(),
                name: format!("Product {i}"),
                policy: policy.then(|| PRODUCT_POLICY.into()),
            })
            .collect();
        s.subscriptions = shape
            .subs
            .iter()
            .map(|(&i, &(scope, active, key))| {
                let scope = match scope {
                    0 => "/apis".to_owned(),
                    1..=6 => format!("/apis/a{}", scope - 1),
                    _ => format!("/products/p{}", scope - 7),
                };
                let state = if active {
                    SubscriptionState::Active
                } else {
                    SubscriptionState::Suspended
                };
                sub(
                    &format!("s{i}"),
                    &scope,
                    &format!("key-{i}-{key}-0123456789"),
                    state,
                )
            })
            .collect();
        s.global_policy = (shape.global == 1).then(|| POLICY.replace("X-A", "X-G"));
        s.named_values
            .insert("greeting".into(), format!("hello {}", shape.greeting));
        s.policy_fragments.insert(
            "tag".into(),
            r#"<fragment><set-header name="X-Tag"><value>t</value></set-header></fragment>"#.into(),
        );
        s
    }

    fn check(changes: &[Vec<Change>]) {
        let mut shape = Shape {
            apis: BTreeMap::new(),
            products: BTreeMap::new(),
            subs: BTreeMap::new(),
            global: 0,
            greeting: 0,
        };
        let mut snapshot = build(&shape, 1);
        let mut config = CompiledConfig::compile(&snapshot).unwrap();
        let mut failed = 0;
        for (n, batch) in changes.iter().enumerate() {
            let mut next_shape = shape.clone();
            for c in batch {
                apply(&mut next_shape, c);
            }
            let next = build(&next_shape, n as u64 + 2);
            let delta = Delta::between(&snapshot, &next);
            let applied = delta.apply(&snapshot).unwrap();
            let full = CompiledConfig::compile(&applied);
            let updated = config.update(&delta, &applied);
            match (full, updated) {
                (Ok(full), Ok(updated)) => {
                    assert_eq!(view(&updated), view(&full), "after delta {delta:#?}");
                    config = updated;
                    snapshot = applied;
                    shape = next_shape;
                }
                (Err(_), Err(_)) => failed += 1,
                (full, updated) => panic!(
                    "full compile {:?}, update {:?}",
                    full.map(|_| ()),
                    updated.map(|_| ())
                ),
            }
        }
        // Most steps must compile, or the test says little.
        assert!(
            failed * 2 <= changes.len(),
            "{failed} of {} steps failed",
            changes.len()
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

        #[test]
        fn an_update_compiles_what_a_full_compile_does(
            changes in prop::collection::vec(prop::collection::vec(change(), 1..4), 1..40),
        ) {
            check(&changes);
        }
    }

    #[test]
    fn a_subscription_change_shares_every_api() {
        let s = snapshot();
        let c = CompiledConfig::compile(&s).unwrap();
        let mut next = s.clone();
        next.revision = 8;
        next.subscriptions[0].state = SubscriptionState::Suspended;
        let delta = Delta::between(&s, &next);
        let updated = c.update(&delta, &next).unwrap();
        assert!(Arc::ptr_eq(&c.apis, &updated.apis));
        assert!(Arc::ptr_eq(&c.by_path, &updated.by_path));
        // Only the shards holding the subscription's keys are copies.
        let copied = c
            .keys
            .keys
            .iter()
            .zip(&updated.keys.keys)
            .filter(|(a, b)| !Arc::ptr_eq(a, b))
            .count();
        assert!(copied <= 1, "{copied} shards copied");
        assert!(matches!(
            updated.check_key(updated.find_api("/echo").unwrap().0, "key-all-0123456789"),
            KeyCheck::Invalid
        ));
        // A new API is compiled alone; the others stay shared.
        let mut newer = next.clone();
        newer.revision = 9;
        newer.apis.push(api("extra", "extra", true));
        let delta = Delta::between(&next, &newer);
        let again = updated.update(&delta, &newer).unwrap();
        assert!(Arc::ptr_eq(
            updated.apis[0].as_ref().unwrap(),
            again.apis[0].as_ref().unwrap()
        ));
        assert_eq!(again.api_count(), 5);
        assert!(again.find_api("/extra/x").is_some());
    }

    #[test]
    fn tls_is_compiled_when_it_changes_and_shared_otherwise() {
        use gatehouse_model::snapshot::SnapshotHostname;
        let ca = gatehouse_tls::testca::TestCa::new("gateway-config-update");
        let leaf = ca.leaf("api", &["api.example.com"]);
        let s = snapshot();
        let c = CompiledConfig::compile(&s).unwrap();
        assert!(c.tls.is_empty());
        let mut next = s.clone();
        next.revision = 8;
        next.tls.hostnames.push(SnapshotHostname {
            id: "api".into(),
            hostname: "api.example.com".into(),
            certificate_id: "web".into(),
            certificate: std::fs::read_to_string(&leaf.cert).unwrap(),
            key: std::fs::read_to_string(&leaf.key).unwrap(),
            negotiate_client_certificate: true,
            http2_enabled: true,
        });
        let delta = Delta::between(&s, &next);
        let updated = c.update(&delta, &next).unwrap();
        assert!(
            Arc::ptr_eq(&c.apis, &updated.apis),
            "a TLS change shares every API"
        );
        assert_eq!(updated.tls.hostnames.len(), 1);
        assert!(updated.tls.hostnames[0].negotiate_client_certificate);
        // A subscription change keeps the compiled TLS as it is.
        let mut newer = next.clone();
        newer.revision = 9;
        newer.subscriptions[0].state = SubscriptionState::Suspended;
        let again = updated
            .update(&Delta::between(&next, &newer), &newer)
            .unwrap();
        assert!(Arc::ptr_eq(&updated.tls, &again.tls));
        // So does a change that compiles every pipeline again.
        let mut global = newer.clone();
        global.revision = 10;
        global.global_policy = Some("<policies><inbound><base /></inbound></policies>".into());
        let recompiled = again
            .update(&Delta::between(&newer, &global), &global)
            .unwrap();
        assert!(!Arc::ptr_eq(&again.apis, &recompiled.apis));
        assert!(Arc::ptr_eq(&again.tls, &recompiled.tls));
        // A full compile gives the same.
        let full = CompiledConfig::compile(&newer).unwrap();
        assert_eq!(full.tls.hostnames.len(), 1);
        assert_eq!(
            full.tls.hostnames[0].hostname,
            again.tls.hostnames[0].hostname
        );
    }
}
