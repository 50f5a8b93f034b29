//! Several control planes sharing one PostgreSQL store, each with a `Store` (and pool) of its
//! own, as separate processes have: migrations when they open at once, revision notifications,
//! and telemetry stored once whichever of them receives it.

use std::time::{Duration, Instant};

use gatehouse_model::telemetry::{Aggregate, Batch, Outcome};

use crate::testdb::{TestDatabase, postgres_server};
use crate::{Kind, Retention, RevisionListener, Store, Wake};

async fn database(what: &str) -> Option<TestDatabase> {
    let server = postgres_server(what)?;
    Some(TestDatabase::create(&server).await)
}

/// The next wake-up, within a deadline.
async fn next(listener: &mut RevisionListener) -> crate::Result<Wake> {
    tokio::time::timeout(Duration::from_secs(10), listener.next())
        .await
        .expect("no wake-up within 10 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_opening_a_fresh_database_at_once_migrate_it_once() {
    let Some(server) = postgres_server("the concurrent migration test") else {
        return;
    };
    // A race may go well once by chance: a few rounds, each on a fresh database.
    for _ in 0..3 {
        let db = TestDatabase::create(&server).await;
        open_at_once(&db.url).await;
        db.drop_now().await;
    }
}

async fn open_at_once(url: &str) {
    let opens: Vec<_> = (0..8)
        .map(|_| {
            let url = url.to_owned();
            tokio::spawn(async move { Store::open(&url).await })
        })
        .collect();
    let mut stores = Vec::new();
    for open in opens {
        stores.push(
            open.await
                .unwrap()
                .expect("a replica failed to open the store"),
        );
    }
    let store = &stores[0];
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM gh_migrations ORDER BY version")
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert_eq!(versions, [1, 2, 3]);
    let meta: Vec<(String, i64)> = sqlx::query_as("SELECT name, value FROM gh_meta ORDER BY name")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert_eq!(
        meta,
        [("changes_from".to_owned(), 0), ("revision".to_owned(), 0)]
    );
    // Every replica works on the full schema.
    for (i, s) in stores.iter().enumerate() {
        let mut tx = s.begin().await.unwrap();
        tx.put(Kind::Api, "", &format!("a{i}"), "{}").await.unwrap();
        tx.commit().await.unwrap();
    }
    assert_eq!(store.revision().await.unwrap(), 8);
    assert_eq!(store.changes(0, 8).await.unwrap().unwrap().len(), 8);
    for s in &stores {
        s.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_through_one_store_wake_the_listeners_of_the_others() {
    let Some(db) = database("the revision notification test").await else {
        return;
    };
    let a = Store::open(&db.url).await.unwrap();
    let b = Store::open(&db.url).await.unwrap();
    let mut listener = b.revisions().expect("PostgreSQL stores have a listener");
    // The first wake-up says it listens: read the revision from then on.
    assert_eq!(next(&mut listener).await.unwrap(), Wake::Resync);

    let mut tx = a.begin().await.unwrap();
    tx.put(Kind::Api, "", "one", "{}").await.unwrap();
    let started = Instant::now();
    assert_eq!(tx.commit().await.unwrap(), 1);
    assert_eq!(next(&mut listener).await.unwrap(), Wake::Revision(1));
    eprintln!("notified {:?} after the commit", started.elapsed());

    // Nothing is announced for what bumps no revision, nor for what rolled back: the next
    // wake-up is the next revision.
    let mut tx = a.begin().await.unwrap();
    tx.put_unversioned(Kind::UserCredentials, "", "u", "{}")
        .await
        .unwrap();
    assert_eq!(tx.commit().await.unwrap(), 1);
    let mut tx = a.begin().await.unwrap();
    tx.put(Kind::Api, "", "gone", "{}").await.unwrap();
    drop(tx);
    let mut tx = b.begin().await.unwrap();
    tx.put(Kind::Api, "", "two", "{}").await.unwrap();
    assert_eq!(tx.commit().await.unwrap(), 2);
    assert_eq!(next(&mut listener).await.unwrap(), Wake::Revision(2));

    // A listener whose connection is cut says so once it listens again, and hears what is
    // committed after.
    let cut: Vec<i32> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid)::int FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    )
    .fetch_all(a.pool())
    .await
    .unwrap();
    assert_eq!(cut, [1], "the listener's session was not found");
    let mut failures = 0;
    loop {
        match next(&mut listener).await {
            Ok(Wake::Resync) => break,
            Ok(other) => panic!("expected a resync after the cut, got {other:?}"),
            Err(e) => {
                failures += 1;
                assert!(failures < 3, "the listener did not reconnect: {e}");
            }
        }
    }
    let mut tx = a.begin().await.unwrap();
    tx.put(Kind::Api, "", "three", "{}").await.unwrap();
    assert_eq!(tx.commit().await.unwrap(), 3);
    assert_eq!(next(&mut listener).await.unwrap(), Wake::Revision(3));

    drop(listener);
    a.close().await;
    b.close().await;
    db.drop_now().await;
}

#[tokio::test]
async fn a_sqlite_store_has_no_listener() {
    let dir = std::env::temp_dir().join(format!(
        "gh-store-nolisten-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let store = Store::open_sqlite_dir(&dir).await.unwrap();
    assert!(store.revisions().is_none());
    store.close().await;
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_sent_to_two_replicas_counts_once() {
    let Some(db) = database("the cross-replica telemetry test").await else {
        return;
    };
    let replicas = [
        Store::open(&db.url).await.unwrap(),
        Store::open(&db.url).await.unwrap(),
    ];
    let minute = 1_800_000_000;
    let keep = Retention {
        oldest_minute: 0,
        samples: 100,
    };
    let batches: Vec<Batch> = (0..20)
        .map(|i| {
            let mut a = Aggregate {
                minute,
                api_id: "echo".into(),
                operation_id: "get".into(),
                ..Aggregate::default()
            };
            a.counts.add(Outcome::Success);
            a.bandwidth = 10;
            a.api_time.record(100);
            Batch {
                id: format!("batch-{i}"),
                instance: "pod-1".into(),
                created: minute + 70,
                aggregates: vec![a],
                samples: vec![],
                dropped_batches: 0,
            }
        })
        .collect();
    // Each batch goes to both replicas at the same moment, as a gateway retrying through a
    // load balancer after a lost answer would send it.
    let mut sends = Vec::new();
    for b in &batches {
        for store in &replicas {
            let (store, b) = (store.clone(), b.clone());
            sends.push(tokio::spawn(async move {
                store.ingest_telemetry("edge", &b, minute, keep).await
            }));
        }
    }
    let mut fresh = 0;
    for send in sends {
        if !send.await.unwrap().unwrap().duplicate {
            fresh += 1;
        }
    }
    assert_eq!(fresh, 20, "each batch is stored by exactly one replica");
    for store in &replicas {
        let rows = store
            .telemetry_minutes(minute, minute + 60, None)
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].counts.total, 20);
        assert_eq!(rows[0].bandwidth, 200);
        assert_eq!(store.telemetry_deliveries().await.unwrap()[0].1, 20);
    }
    for store in &replicas {
        store.close().await;
    }
    db.drop_now().await;
}
