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
    let mut s = snapshot();
    s.apis[1].path = "ECHO".into();
    assert!(
        CompiledConfig::compile(&s)
            .unwrap_err()
            .message
            .contains("used by another API")
    );
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
    s.policy_fragments.clear();
    let err = CompiledConfig::compile(&s).unwrap_err();
    assert!(
        err.target == "apis.echo.policy" && err.message.contains("policy fragment 'tag'"),
        "{err}"
    );
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
        echo.operations[0].examples.as_ref().unwrap()["200"][0].body,
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
