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
    }
}

fn sub(id: &str, scope: &str, key: &str, state: SubscriptionState) -> SnapshotSubscription {
    SnapshotSubscription {
        id: id.into(),
        scope: scope.into(),
        state,
        key_hashes: vec![hex(hash_key(key))],
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
            },
            SnapshotProduct {
                id: "open".into(),
                subscription_required: false,
                state: ProductState::Published,
                apis: vec!["in-open".into()],
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
