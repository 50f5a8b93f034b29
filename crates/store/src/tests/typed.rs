//! The typed layer on every backend: repositories, the link tables, the policy documents and
//! the registry's cascade, written and read back as values, in the documents they always were.

use gatehouse_model::resources::{Api, Gateway, Operation, Product, User};
use serde_json::json;

use super::backends;
use crate::records::{ApiDocument, EmailOwner, UserCredentials};
use crate::{Kind, Link, PolicyLevel, PolicyScope, Store, StoreError, Stored};

fn api(id: &str, path: &str) -> Api {
    serde_json::from_value(json!({ "id": id, "displayName": id, "path": path })).unwrap()
}

fn operation(id: &str) -> Operation {
    serde_json::from_value(json!({ "id": id, "method": "GET", "urlTemplate": "/" })).unwrap()
}

#[tokio::test]
async fn repositories_read_and_write_values() {
    for (store, cleanup) in backends().await {
        repositories(&store).await;
        cleanup.run(store).await;
    }
}

async fn repositories(store: &Store) {
    let mut tx = store.begin().await.unwrap();
    assert!(
        tx.repo::<Api>()
            .put("", "b", &api("b", "bee"))
            .await
            .unwrap()
    );
    assert!(
        tx.repo::<Api>()
            .put("", "a", &api("a", "ay"))
            .await
            .unwrap()
    );
    assert!(
        !tx.repo::<Api>()
            .put("", "a", &api("a", "ay2"))
            .await
            .unwrap()
    );
    let mut ops = tx.repo::<Operation>();
    ops.put("a", "get", &operation("get")).await.unwrap();
    ops.put("b", "get", &operation("get")).await.unwrap();
    assert!(ops.exists("a", "get").await.unwrap());
    assert_eq!(ops.list("a").await.unwrap().len(), 1);
    assert_eq!(ops.list_all().await.unwrap().len(), 2);
    let revision = tx.commit().await.unwrap();
    assert_eq!(revision, 1);

    // Stored as the JSON the untyped calls read.
    let raw = store.get(Kind::Api, "", "a").await.unwrap().unwrap();
    assert_eq!(serde_json::from_str::<Api>(&raw).unwrap(), api("a", "ay2"));

    let apis = store.repo::<Api>();
    assert_eq!(apis.get("", "a").await.unwrap(), Some(api("a", "ay2")));
    assert_eq!(apis.get("", "zzz").await.unwrap(), None);
    assert!(apis.exists("", "b").await.unwrap());
    let ids: Vec<String> = apis
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(ids, ["a", "b"]);
    let entries = store.repo::<Operation>().list_all().await.unwrap();
    let keys: Vec<(&str, &str)> = entries
        .iter()
        .map(|s| (s.parent.as_str(), s.id.as_str()))
        .collect();
    assert_eq!(keys, [("a", "get"), ("b", "get")]);
    let found = store.repo::<Operation>().find_by_id("get").await.unwrap();
    assert_eq!(found.len(), 2);
    assert_eq!(
        store.repo::<Operation>().entries("b").await.unwrap(),
        [Stored {
            parent: "b".into(),
            id: "get".into(),
            value: operation("get")
        }]
    );

    // Unversioned records, and one that is state.
    let mut tx = store.begin().await.unwrap();
    let owner = EmailOwner("u1".into());
    assert!(
        tx.repo::<EmailOwner>()
            .create_unversioned("", "ann@x", &owner)
            .await
            .unwrap()
    );
    assert!(
        !tx.repo::<EmailOwner>()
            .create_unversioned("", "ann@x", &EmailOwner("u2".into()))
            .await
            .unwrap()
    );
    let credentials = UserCredentials {
        password_hash: "h".into(),
    };
    tx.repo::<UserCredentials>()
        .put_unversioned("", "u1", &credentials)
        .await
        .unwrap();
    assert_eq!(tx.commit().await.unwrap(), revision);
    assert_eq!(
        store.repo::<EmailOwner>().get("", "ann@x").await.unwrap(),
        Some(owner)
    );
    let gateway: Gateway = serde_json::from_value(json!({ "id": "g" })).unwrap();
    store
        .repo::<Gateway>()
        .put_state("", "g", &gateway)
        .await
        .unwrap();
    assert_eq!(store.revision().await.unwrap(), revision);
    assert!(store.repo::<Gateway>().exists("", "g").await.unwrap());

    // Deletes, and a rollback.
    let mut tx = store.begin().await.unwrap();
    assert!(tx.repo::<Api>().delete("", "b").await.unwrap());
    assert!(!tx.repo::<Api>().delete("", "b").await.unwrap());
    assert_eq!(tx.repo::<Operation>().delete_by_id("get").await.unwrap(), 2);
    assert!(
        tx.repo::<UserCredentials>()
            .delete_unversioned("", "u1")
            .await
            .unwrap()
    );
    drop(tx);
    assert!(store.repo::<Api>().exists("", "b").await.unwrap());
    assert!(
        store
            .repo::<UserCredentials>()
            .exists("", "u1")
            .await
            .unwrap()
    );
    let mut tx = store.begin().await.unwrap();
    assert_eq!(
        tx.repo::<Operation>().delete_children("a").await.unwrap(),
        1
    );
    tx.commit().await.unwrap();
    assert_eq!(store.repo::<Operation>().list_all().await.unwrap().len(), 1);
}

#[tokio::test]
async fn an_unreadable_document_is_an_error_naming_it_unless_lenient() {
    for (store, cleanup) in backends().await {
        let mut tx = store.begin().await.unwrap();
        tx.put(Kind::User, "", "broken", "{not json").await.unwrap();
        tx.put(Kind::User, "", "fine", r#"{"id":"fine","email":"a@x.org"}"#)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let users = store.repo::<User>();
        match users.get("", "broken").await {
            Err(StoreError::Undecodable {
                kind, parent, id, ..
            }) => assert_eq!(
                (kind, parent.as_str(), id.as_str()),
                (Kind::User, "", "broken")
            ),
            other => panic!("expected Undecodable, got {other:?}"),
        }
        let e = users.list("").await.unwrap_err();
        assert!(e.to_string().contains("user 'broken'"), "{e}");
        // Whether it exists does not depend on reading it.
        assert!(users.exists("", "broken").await.unwrap());

        let lenient = store.repo::<User>().lenient();
        assert_eq!(lenient.get("", "broken").await.unwrap(), None);
        let listed: Vec<String> = lenient
            .list("")
            .await
            .unwrap()
            .into_iter()
            .map(|u| u.id)
            .collect();
        assert_eq!(listed, ["fine"]);
        let mut tx = store.begin().await.unwrap();
        assert!(tx.repo::<User>().get("", "broken").await.is_err());
        assert_eq!(tx.repo::<User>().lenient().list("").await.unwrap().len(), 1);
        drop(tx);
        cleanup.run(store).await;
    }
}

#[tokio::test]
async fn links_join_their_two_sides() {
    for (store, cleanup) in backends().await {
        let mut tx = store.begin().await.unwrap();
        let mut links = tx.links(Link::ProductApi);
        assert!(links.add("gold", "a").await.unwrap());
        assert!(!links.add("gold", "a").await.unwrap());
        links.add("gold", "b").await.unwrap();
        links.add("silver", "a").await.unwrap();
        assert!(links.contains("silver", "a").await.unwrap());
        tx.links(Link::GatewayApi).add("edge", "a").await.unwrap();
        tx.commit().await.unwrap();
        // The documents they always were.
        assert_eq!(
            store
                .get(Kind::ProductApi, "gold", "a")
                .await
                .unwrap()
                .as_deref(),
            Some("{}")
        );

        let links = store.links(Link::ProductApi);
        assert_eq!(links.targets("gold").await.unwrap(), ["a", "b"]);
        assert_eq!(links.sources("a").await.unwrap(), ["gold", "silver"]);
        assert!(links.contains("gold", "b").await.unwrap());
        assert!(!links.contains("edge", "a").await.unwrap());
        assert_eq!(links.all().await.unwrap().len(), 3);
        assert_eq!(
            store.links(Link::GatewayApi).targets("edge").await.unwrap(),
            ["a"]
        );

        let mut tx = store.begin().await.unwrap();
        assert_eq!(tx.links(Link::ProductApi).remove_to("a").await.unwrap(), 2);
        assert!(
            tx.links(Link::ProductApi)
                .remove("gold", "b")
                .await
                .unwrap()
        );
        assert!(
            !tx.links(Link::ProductApi)
                .remove("gold", "b")
                .await
                .unwrap()
        );
        assert_eq!(
            tx.links(Link::GatewayApi)
                .remove_from("edge")
                .await
                .unwrap(),
            1
        );
        let revision = tx.commit().await.unwrap();
        assert!(
            store
                .links(Link::ProductApi)
                .all()
                .await
                .unwrap()
                .is_empty()
        );
        let changes = store
            .changes(revision - 1, revision)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(changes.len(), 4);
        assert!(
            changes
                .iter()
                .all(|c| c.kind().is_some_and(|k| k.affects_snapshots()))
        );
        for link in Link::ALL {
            assert!(
                link.kind().parent().is_some(),
                "{link:?} has no source kind"
            );
        }
        cleanup.run(store).await;
    }
}

#[tokio::test]
async fn policies_are_kept_per_scope() {
    for (store, cleanup) in backends().await {
        let op = |api: &str, operation: &str| PolicyScope::Operation {
            api: api.into(),
            operation: operation.into(),
        };
        let mut tx = store.begin().await.unwrap();
        let mut policies = tx.policies();
        assert!(policies.put(&PolicyScope::Global, "<g/>").await.unwrap());
        assert!(!policies.put(&PolicyScope::Global, "<g2/>").await.unwrap());
        policies
            .put(&PolicyScope::Api("a".into()), "<a/>")
            .await
            .unwrap();
        policies
            .put(&PolicyScope::Product("p".into()), "<p/>")
            .await
            .unwrap();
        policies.put(&op("a", "get"), "<get/>").await.unwrap();
        policies.put(&op("a", "put"), "<put/>").await.unwrap();
        policies.put(&op("b", "get"), "<bget/>").await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(
            store
                .get(Kind::GlobalPolicy, "", "policy")
                .await
                .unwrap()
                .as_deref(),
            Some("<g2/>")
        );
        assert_eq!(
            store
                .get(Kind::OperationPolicy, "a", "put")
                .await
                .unwrap()
                .as_deref(),
            Some("<put/>")
        );

        let policies = store.policies();
        assert_eq!(
            policies
                .get(&PolicyScope::Api("a".into()))
                .await
                .unwrap()
                .as_deref(),
            Some("<a/>")
        );
        assert_eq!(
            policies.get(&PolicyScope::Api("b".into())).await.unwrap(),
            None
        );
        assert_eq!(
            policies.of_operations("a").await.unwrap(),
            [
                ("get".into(), "<get/>".into()),
                ("put".into(), "<put/>".into())
            ]
        );
        let all = policies.all(PolicyLevel::Operation).await.unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[2], (op("b", "get"), "<bget/>".to_owned()));
        let mut count = 0;
        for level in PolicyLevel::ALL {
            for (scope, _) in policies.all(level).await.unwrap() {
                assert_eq!(scope.level(), level);
                count += 1;
            }
        }
        assert_eq!(count, 6);

        let mut tx = store.begin().await.unwrap();
        assert!(tx.policies().delete(&op("a", "get")).await.unwrap());
        assert!(!tx.policies().delete(&op("a", "get")).await.unwrap());
        tx.commit().await.unwrap();
        assert_eq!(store.policies().of_operations("a").await.unwrap().len(), 1);
        cleanup.run(store).await;
    }
}

#[tokio::test]
async fn deleting_the_children_of_a_document_follows_the_registry() {
    for (store, cleanup) in backends().await {
        let product: Product =
            serde_json::from_value(json!({ "id": "gold", "displayName": "Gold" })).unwrap();
        let mut tx = store.begin().await.unwrap();
        tx.repo::<Product>()
            .put("", "gold", &product)
            .await
            .unwrap();
        tx.links(Link::ProductApi).add("gold", "a").await.unwrap();
        tx.links(Link::ProductGroup)
            .add("gold", "devs")
            .await
            .unwrap();
        tx.policies()
            .put(&PolicyScope::Product("gold".into()), "<p/>")
            .await
            .unwrap();
        tx.links(Link::ProductApi).add("silver", "a").await.unwrap();
        tx.repo::<ApiDocument>()
            .put("", "gold", &ApiDocument(json!({})))
            .await
            .unwrap();
        tx.commit().await.unwrap();

        let mut tx = store.begin().await.unwrap();
        assert_eq!(
            tx.delete_children_of(Kind::Product, "gold").await.unwrap(),
            3
        );
        tx.commit().await.unwrap();
        // The product itself, other products' links and top-level documents with the same id
        // stay.
        assert!(store.repo::<Product>().exists("", "gold").await.unwrap());
        assert_eq!(store.links(Link::ProductApi).all().await.unwrap().len(), 1);
        assert!(
            store
                .links(Link::ProductGroup)
                .all()
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .policies()
                .get(&PolicyScope::Product("gold".into()))
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .repo::<ApiDocument>()
                .exists("", "gold")
                .await
                .unwrap()
        );
        cleanup.run(store).await;
    }
}

#[tokio::test]
async fn a_memory_transaction_waits_for_the_one_before_and_gives_up_in_time() {
    let store = Store::memory_with_busy_timeout(std::time::Duration::from_millis(300));
    let first = store.begin().await.unwrap();
    // Ended while the second waits: the second goes on.
    let waiting = tokio::spawn({
        let store = store.clone();
        async move { store.begin().await.map(drop) }
    });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    drop(first);
    waiting.await.unwrap().unwrap();
    // Never ended: the second gives up with an error, rather than waiting for ever.
    let _held = store.begin().await.unwrap();
    match store.begin().await {
        Err(StoreError::Busy(_)) => {}
        other => panic!("expected Busy, got {other:?}"),
    }
}

#[tokio::test]
async fn memory_stores_are_separate_and_shared_by_clones() {
    let (one, two) = (Store::memory(), Store::memory());
    let mut tx = one.begin().await.unwrap();
    tx.repo::<Api>()
        .put("", "a", &api("a", "ay"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(one.clone().repo::<Api>().exists("", "a").await.unwrap());
    assert!(!two.repo::<Api>().exists("", "a").await.unwrap());
    assert!(one.revisions().is_none());
    assert_eq!(format!("{one:?}"), r#"Store { backend: "memory", .. }"#);
}
