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

#[tokio::test]
async fn put_get_list_delete_and_revision() {
    let (store, dir) = temp_store().await;
    assert_eq!(store.revision().await.unwrap(), 0);
    let mut tx = store.begin().await.unwrap();
    assert!(tx.put("api", "", "b", r#"{"x":2}"#).await.unwrap());
    assert!(tx.put("api", "", "a", r#"{"x":1}"#).await.unwrap());
    assert!(tx.put("operation", "a", "op1", "{}").await.unwrap());
    assert_eq!(tx.commit().await.unwrap(), 1);

    let ids: Vec<_> = store
        .list("api", "")
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(
        store.get("api", "", "a").await.unwrap().as_deref(),
        Some(r#"{"x":1}"#)
    );

    let mut tx = store.begin().await.unwrap();
    assert!(!tx.put("api", "", "a", r#"{"x":3}"#).await.unwrap());
    assert_eq!(tx.delete_children("operation", "a").await.unwrap(), 1);
    assert!(tx.delete("api", "", "b").await.unwrap());
    assert!(!tx.delete("api", "", "zzz").await.unwrap());
    assert_eq!(tx.commit().await.unwrap(), 2);

    // A transaction that changes nothing keeps the revision.
    let tx = store.begin().await.unwrap();
    assert_eq!(tx.commit().await.unwrap(), 2);

    // Data survives reopening the file.
    store.close().await;
    let again = Store::open_sqlite_dir(&dir).await.unwrap();
    assert_eq!(again.revision().await.unwrap(), 2);
    assert_eq!(
        again.get("api", "", "a").await.unwrap().as_deref(),
        Some(r#"{"x":3}"#)
    );
    assert!(again.list_all("operation").await.unwrap().is_empty());
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn dropped_transaction_rolls_back() {
    let (store, dir) = temp_store().await;
    {
        let mut tx = store.begin().await.unwrap();
        tx.put("api", "", "a", "{}").await.unwrap();
    }
    assert!(store.get("api", "", "a").await.unwrap().is_none());
    assert_eq!(store.revision().await.unwrap(), 0);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn redacts_passwords() {
    assert_eq!(
        redact("postgres://u:secret@db:5432/x"),
        "postgres://***@db:5432/x"
    );
    assert_eq!(redact("sqlite://a.db"), "sqlite://a.db");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_read_then_write_transactions_never_fail() {
    let (store, dir) = temp_store().await;
    let mut tasks = Vec::new();
    for t in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                let mut tx = store.begin().await.unwrap();
                // Read first, then write: the pattern that deadlocks a deferred transaction.
                tx.get("api", "", "shared").await.unwrap();
                tx.put("api", "", &format!("t{t}-{i}"), "{}").await.unwrap();
                tx.put("api", "", "shared", "{}").await.unwrap();
                tx.commit().await.unwrap();
                store
                    .put_state("beat", "", &format!("t{t}"), "{}")
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(store.revision().await.unwrap(), 200);
    std::fs::remove_dir_all(dir).ok();
}
