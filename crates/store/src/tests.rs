//! The store's behaviour, one test body run on every backend: SQLite, memory, and PostgreSQL
//! when `GATEHOUSE_TEST_POSTGRES` names a server (each test gets a fresh database there).

use super::*;

async fn temp_store() -> (Store, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "gh-store-test-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    (Store::open_sqlite_dir(&dir).await.unwrap(), dir)
}

/// A fresh store of every backend, and what to remove afterwards.
pub(super) async fn backends() -> Vec<(Store, Cleanup)> {
    let (sqlite, dir) = temp_store().await;
    let mut all = vec![
        (sqlite, Cleanup::Dir(dir)),
        (Store::memory(), Cleanup::Nothing),
    ];
    if let Some(server) = crate::testdb::postgres_server("this test's PostgreSQL half") {
        let database = crate::testdb::TestDatabase::create(&server).await;
        let store = Store::open(&database.url).await.unwrap();
        all.push((store, Cleanup::Database(database)));
    }
    all
}

pub(super) enum Cleanup {
    Dir(std::path::PathBuf),
    Database(crate::testdb::TestDatabase),
    Nothing,
}

impl Cleanup {
    pub(super) async fn run(self, store: Store) {
        store.close().await;
        match self {
            Cleanup::Dir(dir) => {
                std::fs::remove_dir_all(dir).ok();
            }
            Cleanup::Database(database) => database.drop_now().await,
            Cleanup::Nothing => {}
        }
    }
}

#[tokio::test]
async fn put_get_list_delete_and_revision() {
    for (store, cleanup) in backends().await {
        put_get_list_delete(&store).await;
        cleanup.run(store).await;
    }
}

async fn put_get_list_delete(store: &Store) {
    assert_eq!(store.revision().await.unwrap(), 0, "{store:?}");
    let mut tx = store.begin().await.unwrap();
    assert!(tx.put(Kind::Api, "", "b", r#"{"x":2}"#).await.unwrap());
    assert!(tx.put(Kind::Api, "", "a", r#"{"x":1}"#).await.unwrap());
    assert!(tx.put(Kind::Operation, "a", "op1", "{}").await.unwrap());
    assert!(tx.put(Kind::Operation, "b", "op1", "{}").await.unwrap());
    // The transaction sees its own writes; nobody else does until it commits.
    assert_eq!(tx.list(Kind::Api, "").await.unwrap().len(), 2);
    assert_eq!(tx.list_all(Kind::Operation).await.unwrap().len(), 2);
    assert!(store.get(Kind::Api, "", "a").await.unwrap().is_none());
    assert!(store.list(Kind::Api, "").await.unwrap().is_empty());
    assert_eq!(store.revision().await.unwrap(), 0);
    assert_eq!(tx.commit().await.unwrap(), 1);

    let ids: Vec<_> = store
        .list(Kind::Api, "")
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(
        store.get(Kind::Api, "", "a").await.unwrap().as_deref(),
        Some(r#"{"x":1}"#)
    );
    let all: Vec<_> = store
        .list_all(Kind::Operation)
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.parent, d.id))
        .collect();
    assert_eq!(
        all,
        [("a".into(), "op1".into()), ("b".into(), "op1".into())]
    );
    let found: Vec<_> = store
        .find_by_id(Kind::Operation, "op1")
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.parent)
        .collect();
    assert_eq!(found, ["a", "b"]);

    let mut tx = store.begin().await.unwrap();
    assert!(!tx.put(Kind::Api, "", "a", r#"{"x":3}"#).await.unwrap());
    assert_eq!(tx.delete_children(Kind::Operation, "a").await.unwrap(), 1);
    assert!(tx.delete(Kind::Api, "", "b").await.unwrap());
    assert!(!tx.delete(Kind::Api, "", "zzz").await.unwrap());
    // Deleted within the transaction: gone for it, still there for everyone else.
    assert!(tx.get(Kind::Api, "", "b").await.unwrap().is_none());
    assert!(store.get(Kind::Api, "", "b").await.unwrap().is_some());
    assert_eq!(tx.commit().await.unwrap(), 2);
    assert_eq!(
        store.get(Kind::Api, "", "a").await.unwrap().as_deref(),
        Some(r#"{"x":3}"#)
    );
    assert!(store.get(Kind::Api, "", "b").await.unwrap().is_none());
    assert_eq!(store.list_all(Kind::Operation).await.unwrap().len(), 1);

    // A transaction that changes nothing keeps the revision.
    let tx = store.begin().await.unwrap();
    assert_eq!(tx.commit().await.unwrap(), 2);
    assert_eq!(store.revision().await.unwrap(), 2);
}

#[tokio::test]
async fn sqlite_data_survives_reopening_the_file() {
    let (store, dir) = temp_store().await;
    let mut tx = store.begin().await.unwrap();
    tx.put(Kind::Api, "", "a", r#"{"x":3}"#).await.unwrap();
    tx.put(Kind::Operation, "a", "op1", "{}").await.unwrap();
    tx.delete_children(Kind::Operation, "a").await.unwrap();
    assert_eq!(tx.commit().await.unwrap(), 1);
    store.close().await;
    let again = Store::open_sqlite_dir(&dir).await.unwrap();
    assert_eq!(again.revision().await.unwrap(), 1);
    assert_eq!(
        again.get(Kind::Api, "", "a").await.unwrap().as_deref(),
        Some(r#"{"x":3}"#)
    );
    assert!(again.list_all(Kind::Operation).await.unwrap().is_empty());
    again.close().await;
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn the_change_log_names_what_each_revision_touched() {
    for (store, cleanup) in backends().await {
        change_log(&store).await;
        cleanup.run(store).await;
    }
}

async fn change_log(store: &Store) {
    // The log starts at the revision the store had when it was upgraded: here, 0.
    assert_eq!(store.changes(0, 0).await.unwrap(), Some(vec![]));
    let change = |kind: &str, parent: &str, id: &str| Change {
        kind: kind.into(),
        parent: parent.into(),
        id: id.into(),
    };
    let mut tx = store.begin().await.unwrap();
    tx.put(Kind::Api, "", "a", "{}").await.unwrap();
    tx.put(Kind::Operation, "a", "op1", "{}").await.unwrap();
    tx.put(Kind::Operation, "a", "op2", "{}").await.unwrap();
    tx.put(Kind::ProductApi, "p", "a", "{}").await.unwrap();
    assert_eq!(tx.commit().await.unwrap(), 1);
    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.delete_children(Kind::Operation, "a").await.unwrap(), 2);
    assert_eq!(tx.delete_by_id(Kind::ProductApi, "a").await.unwrap(), 1);
    assert!(!tx.delete(Kind::Api, "", "missing").await.unwrap());
    assert_eq!(tx.commit().await.unwrap(), 2);

    let second = vec![
        change("operation", "a", "op1"),
        change("operation", "a", "op2"),
        change("product-api", "p", "a"),
    ];
    assert_eq!(store.changes(1, 2).await.unwrap(), Some(second.clone()));
    assert_eq!(second[2].kind(), Some(Kind::ProductApi));
    let both = store.changes(0, 2).await.unwrap().unwrap();
    assert_eq!(both.len(), 4);
    assert!(both.contains(&change("api", "", "a")));
    // Revisions after `upto` are left out.
    assert_eq!(store.changes(0, 1).await.unwrap().unwrap().len(), 4);
    assert_eq!(store.changes(2, 2).await.unwrap(), Some(vec![]));
}

#[tokio::test]
async fn dropped_transaction_rolls_back() {
    for (store, cleanup) in backends().await {
        {
            let mut tx = store.begin().await.unwrap();
            tx.put(Kind::Api, "", "a", "{}").await.unwrap();
            tx.put_unversioned(Kind::UserEmail, "", "a@x", "\"u\"")
                .await
                .unwrap();
        }
        assert!(store.get(Kind::Api, "", "a").await.unwrap().is_none());
        assert!(
            store
                .get(Kind::UserEmail, "", "a@x")
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(store.revision().await.unwrap(), 0);
        assert_eq!(store.changes(0, 1).await.unwrap(), Some(vec![]));
        // The next transaction starts from the store as committed.
        let mut tx = store.begin().await.unwrap();
        assert!(tx.get(Kind::Api, "", "a").await.unwrap().is_none());
        drop(tx);
        cleanup.run(store).await;
    }
}

#[test]
fn redacts_passwords() {
    assert_eq!(
        crate::sql::redact("postgres://u:secret@db:5432/x"),
        "postgres://***@db:5432/x"
    );
    assert_eq!(crate::sql::redact("sqlite://a.db"), "sqlite://a.db");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_read_then_write_transactions_never_fail() {
    for (store, cleanup) in backends().await {
        let mut tasks = Vec::new();
        for t in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..25 {
                    let mut tx = store.begin().await.unwrap();
                    // Read first, then write: the pattern that deadlocks a deferred transaction.
                    tx.get(Kind::Api, "", "shared").await.unwrap();
                    tx.put(Kind::Api, "", &format!("t{t}-{i}"), "{}")
                        .await
                        .unwrap();
                    tx.put(Kind::Api, "", "shared", "{}").await.unwrap();
                    tx.commit().await.unwrap();
                    store
                        .put_state(Kind::GatewayInstance, "", &format!("t{t}"), "{}")
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(store.revision().await.unwrap(), 200);
        assert_eq!(store.list(Kind::Api, "").await.unwrap().len(), 201);
        assert_eq!(
            store.list(Kind::GatewayInstance, "").await.unwrap().len(),
            8
        );
        cleanup.run(store).await;
    }
}

mod telemetry {
    //! Telemetry storage, on every backend.

    use gatehouse_model::telemetry::{Aggregate, Batch, Outcome, Sample};

    use super::backends as stores;
    use crate::Retention;

    const MINUTE: i64 = 1_800_000_000;

    fn keep_all() -> Retention {
        Retention {
            oldest_minute: 0,
            samples: 1_000,
        }
    }

    fn aggregate(
        minute: i64,
        op: &str,
        product: Option<&str>,
        calls: &[(Outcome, u64)],
    ) -> Aggregate {
        let mut a = Aggregate {
            minute,
            api_id: "echo".into(),
            operation_id: op.into(),
            product_id: product.map(Into::into),
            subscription_id: product.map(|p| format!("{p}-sub")),
            ..Aggregate::default()
        };
        for (outcome, micros) in calls {
            a.counts.add(*outcome);
            a.bandwidth += 10;
            a.api_time.record(*micros);
            a.service_time.record(*micros / 2);
        }
        a
    }

    fn batch(id: &str, aggregates: Vec<Aggregate>) -> Batch {
        Batch {
            id: id.into(),
            instance: "pod-1".into(),
            created: MINUTE + 70,
            aggregates,
            samples: vec![],
            dropped_batches: 0,
        }
    }

    #[tokio::test]
    async fn a_batch_counts_once_and_later_batches_merge() {
        for (store, cleanup) in stores().await {
            use Outcome::*;
            let first = batch(
                "b-1",
                vec![
                    aggregate(
                        MINUTE,
                        "get",
                        Some("gold"),
                        &[(Success, 1_000), (Failed, 3_000)],
                    ),
                    aggregate(MINUTE, "post", None, &[(Blocked, 200)]),
                    // Same row as the first: merged within the batch.
                    aggregate(MINUTE, "get", Some("gold"), &[(Success, 2_000)]),
                ],
            );
            let done = store
                .ingest_telemetry("edge", &first, MINUTE + 80, keep_all())
                .await
                .unwrap();
            assert_eq!((done.duplicate, done.aggregates), (false, 3));
            let again = store
                .ingest_telemetry("edge", &first, MINUTE + 90, keep_all())
                .await
                .unwrap();
            assert!(again.duplicate);
            assert_eq!(again.aggregates, 0);

            let rows = store
                .telemetry_minutes(MINUTE, MINUTE + 60, None)
                .await
                .unwrap();
            assert_eq!(rows.len(), 2, "{rows:?}");
            let get = rows.iter().find(|a| a.operation_id == "get").unwrap();
            assert_eq!(
                (get.counts.total, get.counts.success, get.counts.failed),
                (3, 2, 1)
            );
            assert_eq!(get.bandwidth, 30);
            assert_eq!(get.api_time.count, 3);
            assert_eq!(get.api_time.sum_micros, 6_000);
            assert_eq!(get.product_id.as_deref(), Some("gold"));
            assert_eq!(get.subscription_id.as_deref(), Some("gold-sub"));
            let post = rows.iter().find(|a| a.operation_id == "post").unwrap();
            assert_eq!((post.counts.total, post.counts.blocked), (1, 1));
            assert_eq!(
                (post.product_id.as_deref(), post.subscription_id.as_deref()),
                (None, None)
            );

            // A later batch for the same minute adds up; its sketch merges with the stored one.
            let second = batch(
                "b-2",
                vec![aggregate(
                    MINUTE + 59,
                    "get",
                    Some("gold"),
                    &[(Success, 9_000)],
                )],
            );
            store
                .ingest_telemetry("edge", &second, MINUTE + 100, keep_all())
                .await
                .unwrap();
            let mut expected = get.clone();
            expected.merge(&second.aggregates[0]);
            let rows = store
                .telemetry_minutes(MINUTE, MINUTE + 60, Some("echo"))
                .await
                .unwrap();
            let get = rows.iter().find(|a| a.operation_id == "get").unwrap();
            assert_eq!(*get, expected);
            assert_eq!(get.counts.total, 4);
            assert_eq!(get.minute, MINUTE);

            // Another gateway's row stays apart; the window and the API filter apply.
            let other = batch(
                "b-3",
                vec![aggregate(MINUTE + 60, "get", None, &[(Other, 5)])],
            );
            store
                .ingest_telemetry("far", &other, MINUTE + 130, keep_all())
                .await
                .unwrap();
            let all = store
                .telemetry_minutes(MINUTE, MINUTE + 120, None)
                .await
                .unwrap();
            assert_eq!(all.len(), 3);
            assert_eq!(all.last().unwrap().minute, MINUTE + 60);
            assert!(
                store
                    .telemetry_minutes(MINUTE, MINUTE + 120, Some("nothing"))
                    .await
                    .unwrap()
                    .is_empty()
            );
            assert_eq!(
                store
                    .telemetry_minutes(MINUTE + 60, MINUTE + 120, None)
                    .await
                    .unwrap()
                    .len(),
                1
            );

            // Telemetry is not configuration.
            assert_eq!(store.revision().await.unwrap(), 0);
            let deliveries = store.telemetry_deliveries().await.unwrap();
            assert_eq!(
                deliveries,
                [
                    ("edge".to_owned(), 2, 0, MINUTE + 100),
                    ("far".to_owned(), 1, 0, MINUTE + 130)
                ]
            );
            cleanup.run(store).await;
        }
    }

    #[tokio::test]
    async fn retention_skips_and_prunes_old_telemetry_and_bounds_samples() {
        for (store, cleanup) in stores().await {
            let sample = |ms: i64| Sample {
                timestamp: ms,
                request_id: format!("r{ms}"),
                api_id: "echo".into(),
                status: 200,
                ..Sample::default()
            };
            let mut old = batch(
                "old",
                vec![
                    aggregate(MINUTE - 120, "get", None, &[(Outcome::Success, 1)]),
                    aggregate(MINUTE, "get", None, &[(Outcome::Success, 1)]),
                ],
            );
            old.samples = (0..5).map(|i| sample(MINUTE * 1000 + i)).collect();
            old.samples.push(sample((MINUTE - 120) * 1000));
            old.dropped_batches = 7;
            let retention = Retention {
                oldest_minute: MINUTE - 60,
                samples: 3,
            };
            let done = store
                .ingest_telemetry("edge", &old, MINUTE, retention)
                .await
                .unwrap();
            assert_eq!((done.aggregates, done.samples), (1, 5));
            let kept: Vec<_> = store
                .telemetry_samples(10)
                .await
                .unwrap()
                .into_iter()
                .map(|s| s.request_id)
                .collect();
            let newest: Vec<String> = (2..5)
                .rev()
                .map(|i| format!("r{}", MINUTE * 1000 + i))
                .collect();
            assert_eq!(kept, newest);
            assert_eq!(store.telemetry_deliveries().await.unwrap()[0].2, 7);

            let later = Retention {
                oldest_minute: MINUTE + 60,
                samples: 1,
            };
            let pruned = store.prune_telemetry(later).await.unwrap();
            assert_eq!(pruned.minutes, 1);
            assert_eq!(pruned.batches, 1);
            assert_eq!(pruned.samples, 3);
            assert!(
                store
                    .telemetry_minutes(0, i64::MAX, None)
                    .await
                    .unwrap()
                    .is_empty()
            );
            // Once its id is forgotten a replayed batch is refused as too old, not counted.
            let replay = store
                .ingest_telemetry("edge", &old, MINUTE + 60, later)
                .await
                .unwrap();
            assert_eq!((replay.duplicate, replay.aggregates), (false, 0));
            assert!(
                store
                    .telemetry_minutes(0, i64::MAX, None)
                    .await
                    .unwrap()
                    .is_empty()
            );
            cleanup.run(store).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_and_repeated_batches_count_exactly_once() {
        for (store, cleanup) in stores().await {
            let mut tasks = Vec::new();
            for t in 0..6 {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    for i in 0..10 {
                        // Every batch touches the same two rows, and each is sent twice.
                        let b = batch(
                            &format!("t{t}-{i}"),
                            vec![
                                aggregate(MINUTE, "get", Some("gold"), &[(Outcome::Success, 100)]),
                                aggregate(
                                    MINUTE,
                                    "post",
                                    None,
                                    &[(Outcome::Failed, 100), (Outcome::Success, 50)],
                                ),
                            ],
                        );
                        for _ in 0..2 {
                            store
                                .ingest_telemetry("edge", &b, MINUTE, keep_all())
                                .await
                                .unwrap();
                        }
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            let rows = store
                .telemetry_minutes(MINUTE, MINUTE + 60, None)
                .await
                .unwrap();
            let total = |op: &str| {
                let a = rows.iter().find(|a| a.operation_id == op).unwrap();
                (a.counts.total, a.api_time.count, a.bandwidth)
            };
            assert_eq!(total("get"), (60, 60, 600));
            assert_eq!(total("post"), (120, 120, 1_200));
            assert_eq!(store.telemetry_deliveries().await.unwrap()[0].1, 60);
            cleanup.run(store).await;
        }
    }
}

#[tokio::test]
async fn unversioned_writes_bump_no_revision_and_log_nothing() {
    for (store, cleanup) in backends().await {
        unversioned(&store).await;
        cleanup.run(store).await;
    }
}

async fn unversioned(store: &Store) {
    let mut tx = store.begin().await.unwrap();
    tx.put(Kind::Api, "", "a", "{}").await.unwrap();
    let base = tx.commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    tx.put_unversioned(Kind::UserCredentials, "", "u1", "{\"h\":1}")
        .await
        .unwrap();
    assert!(
        tx.create_unversioned(Kind::UserEmail, "", "a@x", "\"u1\"")
            .await
            .unwrap()
    );
    assert!(
        !tx.create_unversioned(Kind::UserEmail, "", "a@x", "\"u2\"")
            .await
            .unwrap()
    );
    assert_eq!(tx.commit().await.unwrap(), base);
    assert_eq!(store.revision().await.unwrap(), base);
    assert_eq!(
        store.changes(base - 1, base).await.unwrap().unwrap().len(),
        1
    );
    assert_eq!(
        store
            .get(Kind::UserEmail, "", "a@x")
            .await
            .unwrap()
            .as_deref(),
        Some("\"u1\"")
    );
    assert_eq!(
        store
            .get(Kind::UserCredentials, "", "u1")
            .await
            .unwrap()
            .as_deref(),
        Some("{\"h\":1}")
    );
    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.list(Kind::UserEmail, "").await.unwrap().len(), 1);
    assert!(
        tx.delete_unversioned(Kind::UserEmail, "", "a@x")
            .await
            .unwrap()
    );
    assert!(
        !tx.delete_unversioned(Kind::UserEmail, "", "a@x")
            .await
            .unwrap()
    );
    assert_eq!(tx.commit().await.unwrap(), base);
    assert!(
        store
            .get(Kind::UserEmail, "", "a@x")
            .await
            .unwrap()
            .is_none()
    );
}

/// What subscribing through the portal relies on: a guard row written first makes concurrent
/// read-count-then-write transactions of one user take turns, on SQLite and on PostgreSQL
/// (where a second writer of the row waits for the first to commit, then sees its writes).
/// And of concurrent `create_unversioned` calls for one key, exactly one wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_guard_row_serialises_counting_writers_and_create_is_exclusive() {
    for (store, cleanup) in backends().await {
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut tx = store.begin().await.unwrap();
                    tx.put_unversioned(Kind::SubscribeGuard, "", "u1", "{}")
                        .await
                        .unwrap();
                    let held = tx.list(Kind::Subscription, "").await.unwrap().len();
                    // Widens the window between counting and writing.
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    if held == 0 {
                        tx.put(Kind::Subscription, "", &format!("s{i}"), "{}")
                            .await
                            .unwrap();
                    }
                    tx.commit().await.unwrap();
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(store.list(Kind::Subscription, "").await.unwrap().len(), 1);

        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut tx = store.begin().await.unwrap();
                    let won = tx
                        .create_unversioned(Kind::UserEmail, "", "a@x", &format!("\"u{i}\""))
                        .await
                        .unwrap();
                    tx.commit().await.unwrap();
                    won
                })
            })
            .collect();
        let mut winners = 0;
        for t in tasks {
            winners += usize::from(t.await.unwrap());
        }
        assert_eq!(winners, 1);
        cleanup.run(store).await;
    }
}

mod shared;
mod typed;
