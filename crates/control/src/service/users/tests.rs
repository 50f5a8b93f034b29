use super::*;

async fn put_user(cp: &ControlPlane, id: &str, email: &str) -> ServiceResult<()> {
    let body: User = serde_json::from_value(serde_json::json!({
        "email": email, "firstName": "A", "lastName": "B"
    }))
    .unwrap();
    put(cp, id, body).await.map(|_| ())
}

async fn indexed(cp: &ControlPlane, email: &str) -> Option<String> {
    cp.store()
        .repo::<EmailOwner>()
        .get("", &email_key(email))
        .await
        .unwrap()
        .map(|o| o.0)
}

#[tokio::test]
async fn the_email_index_follows_users_and_is_built_for_old_stores() {
    let t = crate::testkit::open("users-test").await;
    let (cp, dir) = (t.cp, t.dir);
    put_user(&cp, "u1", "Ann@Example.com").await.unwrap();
    let taken = put_user(&cp, "u2", "ann@example.COM").await.unwrap_err();
    assert!(taken.to_string().contains("already the email"), "{taken}");
    assert!(matches!(taken, ServiceError::Conflict(_)), "{taken:?}");
    assert_eq!(indexed(&cp, "ANN@example.com").await.as_deref(), Some("u1"));

    // A new email frees the old one; deleting frees the email.
    put_user(&cp, "u1", "ann@new.example").await.unwrap();
    assert_eq!(indexed(&cp, "ann@example.com").await, None);
    put_user(&cp, "u2", "ann@example.com").await.unwrap();
    delete(&cp, "u2").await.unwrap();
    assert_eq!(indexed(&cp, "ann@example.com").await, None);

    // The index bumps no revision.
    let revision = cp.store().revision().await.unwrap();
    let mut tx = cp.store().begin().await.unwrap();
    for key in cp.store().repo::<EmailOwner>().ids("").await.unwrap() {
        tx.repo::<EmailOwner>()
            .delete_unversioned("", &key)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    index_emails(cp.store()).await.unwrap();
    assert_eq!(cp.store().revision().await.unwrap(), revision);
    assert_eq!(indexed(&cp, "ANN@new.example").await.as_deref(), Some("u1"));
    std::fs::remove_dir_all(dir).ok();
}
