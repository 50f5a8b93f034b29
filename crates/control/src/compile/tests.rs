//! The incremental compile against the full one: random changes to a store (the in-memory
//! backend, which behaves as the SQL ones do), and after every few revisions the updated
//! snapshot must equal a fresh full compile, and the delta it returned must turn the previous
//! snapshot into the new one.

use proptest::prelude::*;
use serde_json::json;

use gatehouse_model::resources::PolicyFragment;
use gatehouse_store::Record;

use super::*;

/// One write to the store, in its own transaction (so its own revision).
#[derive(Debug, Clone)]
enum Op {
    Api {
        i: u8,
        path: u8,
        open: bool,
    },
    DeleteApi(u8),
    Operation {
        api: u8,
        op: u8,
        delete: bool,
    },
    ApiPolicy {
        api: u8,
        text: u8,
    },
    OperationPolicy {
        api: u8,
        op: u8,
        text: u8,
    },
    Document {
        api: u8,
        delete: bool,
    },
    Product {
        i: u8,
        open: bool,
        delete: bool,
    },
    Link {
        product: u8,
        api: u8,
        delete: bool,
    },
    ProductPolicy {
        product: u8,
        text: u8,
    },
    Assign {
        api: u8,
        delete: bool,
    },
    User {
        i: u8,
        blocked: bool,
        delete: bool,
    },
    Subscription {
        i: u8,
        scope: u8,
        owner: Option<u8>,
        suspended: bool,
        delete: bool,
    },
    Keys {
        sub: u8,
        variant: u8,
        delete: bool,
    },
    Global {
        text: u8,
    },
    Fragment {
        i: u8,
        text: u8,
        delete: bool,
    },
    NamedValue {
        i: u8,
        secret: bool,
        value: u8,
        delete: bool,
    },
    Certificate {
        i: u8,
        variant: u8,
        key: bool,
        delete: bool,
    },
    Hostname {
        gateway: u8,
        i: u8,
        certificate: u8,
        delete: bool,
    },
    CertificateAuthority {
        gateway: u8,
        certificate: u8,
        trusted: bool,
        delete: bool,
    },
    /// What deleting a gateway does to its TLS children.
    DropGatewayTls(u8),
    Backend {
        i: u8,
        variant: u8,
        delete: bool,
    },
    Irrelevant(u8),
}

/// The gateways TLS ops touch: the two compiled here and one that is not.
fn tls_gateway(n: u8) -> &'static str {
    ["edge", BUILT_IN_GATEWAY, "other"][usize::from(n) % 3]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..5u8, 0..7u8, any::<bool>()).prop_map(|(i, path, open)| Op::Api { i, path, open }),
        1 => (0..5u8).prop_map(Op::DeleteApi),
        2 => (0..5u8, 0..3u8, any::<bool>()).prop_map(|(api, op, delete)| Op::Operation { api, op, delete }),
        1 => (0..5u8, 0..5u8).prop_map(|(api, text)| Op::ApiPolicy { api, text }),
        1 => (0..5u8, 0..3u8, 0..4u8).prop_map(|(api, op, text)| Op::OperationPolicy { api, op, text }),
        1 => (0..5u8, any::<bool>()).prop_map(|(api, delete)| Op::Document { api, delete }),
        2 => (0..3u8, any::<bool>(), prop::bool::weighted(0.2)).prop_map(|(i, open, delete)| Op::Product { i, open, delete }),
        3 => (0..3u8, 0..5u8, prop::bool::weighted(0.3)).prop_map(|(product, api, delete)| Op::Link { product, api, delete }),
        1 => (0..3u8, 0..5u8).prop_map(|(product, text)| Op::ProductPolicy { product, text }),
        2 => (0..5u8, prop::bool::weighted(0.3)).prop_map(|(api, delete)| Op::Assign { api, delete }),
        3 => (0..3u8, any::<bool>(), prop::bool::weighted(0.2)).prop_map(|(i, blocked, delete)| Op::User { i, blocked, delete }),
        4 => (0..5u8, 0..9u8, prop::option::of(0..3u8), prop::bool::weighted(0.3), prop::bool::weighted(0.2))
            .prop_map(|(i, scope, owner, suspended, delete)| Op::Subscription { i, scope, owner, suspended, delete }),
        3 => (0..5u8, 0..3u8, prop::bool::weighted(0.2)).prop_map(|(sub, variant, delete)| Op::Keys { sub, variant, delete }),
        1 => (0..5u8).prop_map(|text| Op::Global { text }),
        1 => (0..2u8, 0..3u8, prop::bool::weighted(0.2)).prop_map(|(i, text, delete)| Op::Fragment { i, text, delete }),
        1 => (0..2u8, any::<bool>(), 0..3u8, prop::bool::weighted(0.2)).prop_map(|(i, secret, value, delete)| Op::NamedValue { i, secret, value, delete }),
        1 => any::<u8>().prop_map(Op::Irrelevant),
        2 => (0..3u8, 0..2u8, prop::bool::weighted(0.8), prop::bool::weighted(0.2))
            .prop_map(|(i, variant, key, delete)| Op::Certificate { i, variant, key, delete }),
        2 => (0..3u8, 0..2u8, 0..3u8, prop::bool::weighted(0.2))
            .prop_map(|(gateway, i, certificate, delete)| Op::Hostname { gateway, i, certificate, delete }),
        2 => (0..3u8, 0..3u8, any::<bool>(), prop::bool::weighted(0.2))
            .prop_map(|(gateway, certificate, trusted, delete)| Op::CertificateAuthority { gateway, certificate, trusted, delete }),
        1 => (0..3u8).prop_map(Op::DropGatewayTls),
        2 => (0..3u8, 0..6u8, prop::bool::weighted(0.2))
            .prop_map(|(i, variant, delete)| Op::Backend { i, variant, delete }),
    ]
}

/// Policy documents that use fragments and named values, or nothing (0 deletes).
fn policy(text: u8) -> Option<String> {
    match text {
        0 => None,
        1 => Some("<policies><inbound><base /></inbound></policies>".into()),
        2 => Some(r#"<policies><inbound><base /><include-fragment fragment-id="f0" /></inbound></policies>"#.into()),
        3 => Some(r#"<policies><inbound><base /><authentication-certificate certificate-id="c2" /></inbound></policies>"#.into()),
        _ => Some("<policies><inbound><base /><set-header name=\"x\"><value>{{n0}}</value></set-header></inbound></policies>".into()),
    }
}

fn fragment(text: u8) -> String {
    match text {
        0 => {
            "<fragment><set-header name=\"y\"><value>{{n1}}</value></set-header></fragment>".into()
        }
        1 => r#"<fragment><include-fragment fragment-id="f1" /></fragment>"#.into(),
        _ => "<fragment><base /></fragment>".into(),
    }
}

fn scope(n: u8) -> String {
    match n {
        0 => "/apis".into(),
        1..=5 => format!("/apis/a{}", n - 1),
        6..=7 => format!("/products/p{}", n - 6),
        _ => "/nonsense".into(),
    }
}

/// Writes `value` under `(parent, id)`, or deletes the document when it is `None`.
async fn set<R: Record>(tx: &mut gatehouse_store::Tx, parent: &str, id: &str, value: Option<R>) {
    match value {
        Some(v) => {
            tx.repo::<R>().put(parent, id, &v).await.unwrap();
        }
        None => {
            tx.repo::<R>().delete(parent, id).await.unwrap();
        }
    }
}

async fn set_policy(tx: &mut gatehouse_store::Tx, scope: PolicyScope, xml: Option<String>) {
    match xml {
        Some(xml) => {
            tx.policies().put(&scope, &xml).await.unwrap();
        }
        None => {
            tx.policies().delete(&scope).await.unwrap();
        }
    }
}

async fn set_link(tx: &mut gatehouse_store::Tx, link: Link, source: &str, target: &str, on: bool) {
    if on {
        tx.links(link).add(source, target).await.unwrap();
    } else {
        tx.links(link).remove(source, target).await.unwrap();
    }
}

/// A resource from its JSON form.
fn value<R: serde::de::DeserializeOwned>(json: serde_json::Value) -> R {
    serde_json::from_value(json).unwrap()
}

async fn run(store: &Store, sealer: &Sealer, op: &Op) {
    let mut tx = store.begin().await.unwrap();
    match op {
        Op::Api { i, path, open } => {
            let body = json!({"id": format!("a{i}"), "displayName": format!("API {i} {path}"),
                "path": format!("p{path}"), "serviceUrl": "http://backend", "subscriptionRequired": !open});
            set(&mut tx, "", &format!("a{i}"), Some(value::<Api>(body))).await;
        }
        Op::DeleteApi(i) => {
            // As the handler does: the API and what hangs off it.
            let id = format!("a{i}");
            tx.repo::<Api>().delete("", &id).await.unwrap();
            tx.delete_children_of(Kind::Api, &id).await.unwrap();
            tx.repo::<ApiDocument>().delete("", &id).await.unwrap();
            tx.links(Link::ProductApi).remove_to(&id).await.unwrap();
            tx.links(Link::GatewayApi).remove_to(&id).await.unwrap();
        }
        Op::Operation { api, op, delete } => {
            let body = json!({"id": format!("o{op}"), "method": if *op == 1 { "POST" } else { "GET" },
                "urlTemplate": format!("/things{op}/{{id}}")});
            let operation = (!delete).then(|| value::<Operation>(body));
            set(&mut tx, &format!("a{api}"), &format!("o{op}"), operation).await;
        }
        Op::ApiPolicy { api, text } => {
            set_policy(&mut tx, PolicyScope::Api(format!("a{api}")), policy(*text)).await;
        }
        Op::OperationPolicy { api, op, text } => {
            let scope = PolicyScope::Operation {
                api: format!("a{api}"),
                operation: format!("o{op}"),
            };
            set_policy(&mut tx, scope, policy(*text)).await;
        }
        Op::Document { api, delete } => {
            let doc = json!({"openapi": "3.0.0", "paths": {"/things0/{id}": {"get": {"responses": {"200": {
                "content": {"application/json": {"example": {"api": api}}}}}}}}});
            let doc = (!delete).then_some(ApiDocument(doc));
            set(&mut tx, "", &format!("a{api}"), doc).await;
        }
        Op::Product { i, open, delete } => {
            let body = json!({"id": format!("p{i}"), "displayName": format!("P{i}"), "subscriptionRequired": !open});
            let product = (!delete).then(|| value::<Product>(body));
            set(&mut tx, "", &format!("p{i}"), product).await;
        }
        Op::Link {
            product,
            api,
            delete,
        } => {
            let (product, api) = (format!("p{product}"), format!("a{api}"));
            set_link(&mut tx, Link::ProductApi, &product, &api, !delete).await;
        }
        Op::ProductPolicy { product, text } => {
            let scope = PolicyScope::Product(format!("p{product}"));
            set_policy(&mut tx, scope, policy(*text)).await;
        }
        Op::Assign { api, delete } => {
            let api = format!("a{api}");
            set_link(&mut tx, Link::GatewayApi, "edge", &api, !delete).await;
            // Another gateway's assignments change nothing here.
            set_link(&mut tx, Link::GatewayApi, "other", &api, true).await;
        }
        Op::User { i, blocked, delete } => {
            let state = if *blocked {
                UserState::Blocked
            } else {
                UserState::Active
            };
            let body = json!({"id": format!("u{i}"), "email": format!("u{i}@example.com"), "state": state});
            let user = (!delete).then(|| value::<User>(body));
            set(&mut tx, "", &format!("u{i}"), user).await;
        }
        Op::Subscription {
            i,
            scope: s,
            owner,
            suspended,
            delete,
        } => {
            let state = if *suspended {
                SubscriptionState::Suspended
            } else {
                SubscriptionState::Active
            };
            let mut body = json!({"id": format!("s{i}"), "displayName": format!("S{i}"), "scope": scope(*s), "state": state});
            if let Some(o) = owner {
                body["ownerId"] = json!(format!("u{o}"));
            }
            let sub = (!delete).then(|| value::<Subscription>(body));
            set(&mut tx, "", &format!("s{i}"), sub).await;
        }
        Op::Keys {
            sub,
            variant,
            delete,
        } => {
            let keys = StoredKeys {
                primary_sealed: String::new(),
                secondary_sealed: String::new(),
                primary_hash: format!("{:064x}", u64::from(*sub) * 10 + u64::from(*variant)),
                secondary_hash: format!(
                    "{:064x}",
                    1000 + u64::from(*sub) * 10 + u64::from(*variant)
                ),
            };
            set(&mut tx, "", &format!("s{sub}"), (!delete).then_some(keys)).await;
        }
        Op::Global { text } => {
            set_policy(&mut tx, PolicyScope::Global, policy(*text)).await;
        }
        Op::Fragment { i, text, delete } => {
            let body = json!({"id": format!("f{i}"), "value": fragment(*text)});
            let fragment = (!delete).then(|| value::<PolicyFragment>(body));
            set(&mut tx, "", &format!("f{i}"), fragment).await;
        }
        Op::NamedValue {
            i,
            secret,
            value: v,
            delete,
        } => {
            let plain = format!("value-{v}");
            let sealed = if *secret {
                sealer.seal(&plain).unwrap()
            } else {
                plain
            };
            let body = json!({"id": format!("n{i}"), "value": sealed, "secret": secret});
            let named = (!delete).then(|| value::<NamedValue>(body));
            set(&mut tx, "", &format!("n{i}"), named).await;
        }
        Op::Certificate {
            i,
            variant,
            key,
            delete,
        } => {
            let stored = certificates::StoredCertificate {
                subject: format!("CN=c{i}"),
                thumbprint: format!("{i}{variant}"),
                expiration_date: "2030-01-01T00:00:00Z".into(),
                has_private_key: *key,
                sealed_chain: sealer.seal(&format!("chain-{i}-{variant}")).unwrap(),
                sealed_key: key.then(|| sealer.seal(&format!("key-{i}-{variant}")).unwrap()),
            };
            set(&mut tx, "", &format!("c{i}"), (!delete).then_some(stored)).await;
        }
        Op::Hostname {
            gateway,
            i,
            certificate,
            delete,
        } => {
            let body = json!({"id": format!("h{i}"), "hostname": format!("h{i}.example.com"),
                "certificateId": format!("c{certificate}"), "negotiateClientCertificate": certificate == &1,
                "http2Enabled": true});
            let hc = (!delete).then(|| value::<HostnameConfiguration>(body));
            set(&mut tx, tls_gateway(*gateway), &format!("h{i}"), hc).await;
        }
        Op::CertificateAuthority {
            gateway,
            certificate,
            trusted,
            delete,
        } => {
            let id = format!("c{certificate}");
            let body = json!({"id": id, "isTrusted": trusted});
            let ca = (!delete).then(|| value::<GatewayCertificateAuthority>(body));
            set(&mut tx, tls_gateway(*gateway), &id, ca).await;
        }
        Op::DropGatewayTls(gateway) => {
            let gateway = tls_gateway(*gateway);
            tx.repo::<HostnameConfiguration>()
                .delete_children(gateway)
                .await
                .unwrap();
            tx.repo::<GatewayCertificateAuthority>()
                .delete_children(gateway)
                .await
                .unwrap();
        }
        Op::Backend { i, variant, delete } => {
            // Credentials that name a named value and a client certificate, or neither.
            let body = match variant {
                0 => json!({"id": format!("b{i}"), "url": "http://b.test"}),
                1 => json!({"id": format!("b{i}"), "url": "https://b.test",
                    "tls": {"validateCertificateChain": false}}),
                2 => json!({"id": format!("b{i}"), "url": "https://b.test",
                    "credentials": {"header": {"x-key": ["{{n1}}"]}}}),
                3 => json!({"id": format!("b{i}"), "url": "https://b.test",
                    "credentials": {"certificateIds": [format!("/certificates/c{i}")]}}),
                // A breaker rule, its durations parsed for the snapshot.
                4 => json!({"id": format!("b{i}"), "url": "http://b.test",
                    "circuitBreaker": {"rules": [{"name": "r", "failureCondition": {"count": i + 1,
                        "interval": "PT10S", "statusCodeRanges": [{"min": 500, "max": 599}]},
                        "tripDuration": "PT1M"}]}}),
                // A pool of the other backends (the store holds what the compiler gets, checked
                // or not): its members by id, ordered by priority.
                _ => json!({"id": format!("b{i}"), "type": "Pool", "pool": {"services": [
                    {"id": format!("/backends/b{}", (i + 1) % 3), "priority": 2},
                    {"id": format!("b{}", (i + 2) % 3), "weight": 3}]}}),
            };
            let backend = (!delete).then(|| value::<Backend>(body));
            set(&mut tx, "", &format!("b{i}"), backend).await;
        }
        Op::Irrelevant(n) => {
            // Any kind the registry says no snapshot depends on, whatever it holds.
            let kinds: Vec<Kind> = Kind::ALL
                .iter()
                .copied()
                .filter(|k| !k.affects_snapshots())
                .collect();
            let kind = kinds[usize::from(*n) % kinds.len()];
            let body = format!("{{\"n\":{n}}}");
            tx.put(kind, "", "x", &body).await.unwrap();
        }
    }
    tx.commit().await.unwrap();
}

fn sorted(mut s: Snapshot) -> Snapshot {
    s.apis.sort_by(|a, b| a.id.cmp(&b.id));
    s.products.sort_by(|a, b| a.id.cmp(&b.id));
    s.subscriptions.sort_by(|a, b| a.id.cmp(&b.id));
    s
}

/// A fresh in-memory store, and a sealer whose key lives in a new directory.
async fn temp_store() -> (Store, Sealer, std::path::PathBuf) {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "gh-compile-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let store = Store::memory();
    let sealer = Sealer::load(None, &dir.join("secret.key")).unwrap();
    (store, sealer, dir)
}

/// Runs `ops`, checking after each batch (`batches[i]` ops at a time) that the incremental
/// compile of every gateway equals the full one.
async fn check(ops: Vec<Op>, batches: Vec<usize>) {
    let (store, sealer, dir) = temp_store().await;
    let mut compiled = Vec::new();
    for gateway in ["edge", BUILT_IN_GATEWAY] {
        compiled.push(Compiled::full(&store, &sealer, gateway).await.unwrap());
    }
    let mut ops = ops.iter();
    for batch in batches.into_iter().cycle() {
        let mut ran = 0;
        for op in ops.by_ref().take(batch) {
            run(&store, &sealer, op).await;
            ran += 1;
        }
        let revision = store.revision().await.unwrap();
        for c in &mut compiled {
            let before = c.clone();
            let changes = store.changes(c.revision, revision).await.unwrap().unwrap();
            let delta = c.update(&store, &sealer, &changes, revision).await.unwrap();
            let full = Compiled::full(&store, &sealer, &c.gateway_id)
                .await
                .unwrap();
            assert_eq!(
                *c, full,
                "incremental and full compiles differ for {}",
                c.gateway_id
            );
            let delta = delta.expect("every change here is one the incremental compile knows");
            assert_eq!(delta, full.diff(&before), "the delta is not the difference");
            let applied = sorted(delta.apply(&before.snapshot()).unwrap());
            assert_eq!(
                applied,
                full.snapshot(),
                "the delta does not produce the snapshot"
            );
        }
        if ran < batch {
            break;
        }
    }
    std::fs::remove_dir_all(dir).ok();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn incremental_compile_equals_full_compile(
        ops in prop::collection::vec(op(), 1..60),
        batches in prop::collection::vec(1..5usize, 1..4),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(check(ops, batches));
    }
}

#[tokio::test]
async fn a_subscription_change_redoes_one_subscription() {
    let (store, sealer, dir) = temp_store().await;
    for op in [
        Op::Api {
            i: 0,
            path: 0,
            open: false,
        },
        Op::Product {
            i: 0,
            open: false,
            delete: false,
        },
        Op::Link {
            product: 0,
            api: 0,
            delete: false,
        },
        Op::Assign {
            api: 0,
            delete: false,
        },
        Op::Subscription {
            i: 0,
            scope: 6,
            owner: None,
            suspended: false,
            delete: false,
        },
        Op::Keys {
            sub: 0,
            variant: 0,
            delete: false,
        },
        Op::Subscription {
            i: 1,
            scope: 6,
            owner: None,
            suspended: false,
            delete: false,
        },
        Op::Keys {
            sub: 1,
            variant: 0,
            delete: false,
        },
    ] {
        run(&store, &sealer, &op).await;
    }
    let mut c = Compiled::full(&store, &sealer, "edge").await.unwrap();
    assert_eq!(c.subscriptions.len(), 2);
    run(
        &store,
        &sealer,
        &Op::Subscription {
            i: 1,
            scope: 6,
            owner: None,
            suspended: true,
            delete: false,
        },
    )
    .await;
    let revision = store.revision().await.unwrap();
    let changes = store.changes(c.revision, revision).await.unwrap().unwrap();
    let delta = c
        .update(&store, &sealer, &changes, revision)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(delta.len(), 1);
    assert_eq!(delta.subscriptions[0].state, SubscriptionState::Suspended);
    // Blocking the owner suspends the subscription; deleting the owner brings it back.
    run(
        &store,
        &sealer,
        &Op::Subscription {
            i: 0,
            scope: 0,
            owner: Some(2),
            suspended: false,
            delete: false,
        },
    )
    .await;
    run(
        &store,
        &sealer,
        &Op::User {
            i: 2,
            blocked: true,
            delete: false,
        },
    )
    .await;
    let revision = store.revision().await.unwrap();
    let changes = store.changes(c.revision, revision).await.unwrap().unwrap();
    let delta = c
        .update(&store, &sealer, &changes, revision)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(delta.subscriptions.len(), 1);
    assert_eq!(c.subscriptions["s0"].state, SubscriptionState::Suspended);
    run(
        &store,
        &sealer,
        &Op::User {
            i: 2,
            blocked: true,
            delete: true,
        },
    )
    .await;
    let revision = store.revision().await.unwrap();
    let changes = store.changes(c.revision, revision).await.unwrap().unwrap();
    c.update(&store, &sealer, &changes, revision)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.subscriptions["s0"].state, SubscriptionState::Active);
    assert_eq!(c, Compiled::full(&store, &sealer, "edge").await.unwrap());
    // A kind the incremental compile does not know makes it give up, unchanged.
    let before = c.clone();
    let unknown = [Change {
        kind: "something-new".into(),
        parent: String::new(),
        id: "x".into(),
    }];
    assert!(
        c.update(&store, &sealer, &unknown, revision + 1)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(c, before);

    // Every kind the registry says snapshots depend on is one the incremental compile handles.
    for kind in Kind::ALL.iter().filter(|k| k.affects_snapshots()) {
        let change = [Change {
            kind: kind.name().to_owned(),
            parent: String::new(),
            id: "x".into(),
        }];
        let mut copy = c.clone();
        let delta = copy
            .update(&store, &sealer, &change, revision)
            .await
            .unwrap();
        assert!(
            delta.is_some(),
            "a change to {kind} makes the update give up"
        );
    }
    std::fs::remove_dir_all(dir).ok();
}

async fn advance(store: &Store, sealer: &Sealer, c: &mut Compiled) -> Delta {
    let revision = store.revision().await.unwrap();
    let changes = store.changes(c.revision, revision).await.unwrap().unwrap();
    c.update(store, sealer, &changes, revision)
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn a_certificate_reaches_only_the_gateways_that_use_it() {
    let (store, sealer, dir) = temp_store().await;
    let mut edge = Compiled::full(&store, &sealer, "edge").await.unwrap();
    let mut built_in = Compiled::full(&store, &sealer, BUILT_IN_GATEWAY)
        .await
        .unwrap();
    let cert = |i, variant| Op::Certificate {
        i,
        variant,
        key: true,
        delete: false,
    };
    for op in [
        cert(0, 0),
        cert(1, 0),
        Op::Hostname {
            gateway: 0,
            i: 0,
            certificate: 0,
            delete: false,
        },
        Op::CertificateAuthority {
            gateway: 1,
            certificate: 1,
            trusted: true,
            delete: false,
        },
    ] {
        run(&store, &sealer, &op).await;
    }
    let d = advance(&store, &sealer, &mut edge).await;
    let tls = d.tls.expect("edge got its hostname");
    assert_eq!(tls.hostnames.len(), 1);
    assert_eq!(
        (
            tls.hostnames[0].certificate.as_str(),
            tls.hostnames[0].key.as_str()
        ),
        ("chain-0-0", "key-0-0"),
        "opened, not sealed"
    );
    assert!(tls.certificate_authorities.is_empty());
    let d = advance(&store, &sealer, &mut built_in).await;
    let tls = d.tls.expect("the built-in gateway got its CA");
    assert!(tls.hostnames.is_empty());
    assert_eq!(tls.certificate_authorities[0].certificate, "chain-1-0");

    // Replacing c0 changes edge only; replacing c1 changes the built-in gateway only.
    run(&store, &sealer, &cert(0, 1)).await;
    assert_eq!(
        advance(&store, &sealer, &mut edge)
            .await
            .tls
            .unwrap()
            .hostnames[0]
            .key,
        "key-0-1"
    );
    assert!(advance(&store, &sealer, &mut built_in).await.is_empty());
    run(&store, &sealer, &cert(1, 1)).await;
    assert!(advance(&store, &sealer, &mut edge).await.is_empty());
    assert!(advance(&store, &sealer, &mut built_in).await.tls.is_some());
    // Another gateway's hostname configurations change nothing here.
    run(
        &store,
        &sealer,
        &Op::Hostname {
            gateway: 2,
            i: 1,
            certificate: 0,
            delete: false,
        },
    )
    .await;
    assert!(advance(&store, &sealer, &mut edge).await.is_empty());
    assert!(advance(&store, &sealer, &mut built_in).await.is_empty());
    // Deleting the gateway's children empties its set.
    run(&store, &sealer, &Op::DropGatewayTls(0)).await;
    let d = advance(&store, &sealer, &mut edge).await;
    assert_eq!(d.tls, Some(SnapshotTls::default()));
    assert_eq!(edge, Compiled::full(&store, &sealer, "edge").await.unwrap());
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn a_backend_ships_with_its_client_certificate_and_named_values_only() {
    let (store, sealer, dir) = temp_store().await;
    let mut edge = Compiled::full(&store, &sealer, "edge").await.unwrap();
    for op in [
        Op::Certificate {
            i: 0,
            variant: 0,
            key: true,
            delete: false,
        },
        Op::Certificate {
            i: 1,
            variant: 0,
            key: true,
            delete: false,
        },
        Op::NamedValue {
            i: 1,
            secret: true,
            value: 2,
            delete: false,
        },
        // b0 presents c0; no backend or policy names c1.
        Op::Backend {
            i: 0,
            variant: 3,
            delete: false,
        },
    ] {
        run(&store, &sealer, &op).await;
    }
    let d = advance(&store, &sealer, &mut edge).await;
    assert_eq!(d.backends.len(), 1);
    let tls = d.tls.expect("the backend's certificate ships");
    let ids: Vec<&str> = tls
        .client_certificates
        .iter()
        .map(|c| c.id.as_str())
        .collect();
    assert_eq!(ids, ["c0"]);
    assert_eq!(
        (
            tls.client_certificates[0].certificate.as_str(),
            tls.client_certificates[0].key.as_str()
        ),
        ("chain-0-0", "key-0-0"),
        "opened, not sealed"
    );
    assert!(d.named_values.is_none(), "no backend uses n1 yet");

    // b1 uses named value n1: it ships, opened.
    run(
        &store,
        &sealer,
        &Op::Backend {
            i: 1,
            variant: 2,
            delete: false,
        },
    )
    .await;
    let d = advance(&store, &sealer, &mut edge).await;
    assert_eq!(d.backends.len(), 1);
    let named = d.named_values.expect("n1 ships with b1");
    assert!(named.contains_key("n1"));
    assert!(d.tls.is_none(), "the client certificates did not change");

    // Removing b0 takes its certificate out of the gateway's configuration.
    run(
        &store,
        &sealer,
        &Op::Backend {
            i: 0,
            variant: 0,
            delete: true,
        },
    )
    .await;
    let d = advance(&store, &sealer, &mut edge).await;
    assert_eq!(d.removed_backends, ["b0"]);
    assert!(d.tls.expect("c0 is gone").client_certificates.is_empty());
    assert_eq!(edge, Compiled::full(&store, &sealer, "edge").await.unwrap());
    std::fs::remove_dir_all(dir).ok();
}
