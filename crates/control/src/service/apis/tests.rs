use super::*;

async fn put_api(cp: &ControlPlane, id: &str, path: &str) -> ServiceResult<()> {
    let body: Api = serde_json::from_value(serde_json::json!({ "path": path })).unwrap();
    put(cp, id, body).await.map(|_| ())
}

#[tokio::test]
async fn a_service_url_a_gateway_would_refuse_is_refused_at_save() {
    let t = crate::testkit::open("apis-test").await;
    let (cp, dir) = (t.cp, t.dir);
    for url in ["https://bad-.example.com", "http://example.com:99999"] {
        let body: Api =
            serde_json::from_value(serde_json::json!({ "path": "shop", "serviceUrl": url }))
                .unwrap();
        let e = put(&cp, "shop", body).await.unwrap_err();
        let text = e.to_string();
        assert!(
            matches!(e, ServiceError::Invalid(_)) && text.contains("serviceUrl"),
            "{text}"
        );
    }
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn a_path_belongs_to_one_api_whatever_its_case() {
    let t = crate::testkit::open("apis-test").await;
    let (cp, dir) = (t.cp, t.dir);
    put_api(&cp, "a", "shop/v1").await.unwrap();
    let taken = put_api(&cp, "b", "Shop/V1").await.unwrap_err();
    assert!(
        taken.to_string().contains("already the path of API 'a'"),
        "{taken}"
    );
    // Moving an API frees its old path; deleting one frees its path.
    put_api(&cp, "a", "shop/v2").await.unwrap();
    put_api(&cp, "b", "shop/v1").await.unwrap();
    delete(&cp, "b").await.unwrap();
    put_api(&cp, "c", "SHOP/v1").await.unwrap();
    assert!(put_api(&cp, "d", "shop/V2").await.is_err());

    // A store from before the index gets it built when the control plane opens.
    let mut tx = cp.store().begin().await.unwrap();
    tx.repo::<PathOwner>().delete_children("").await.unwrap();
    tx.commit().await.unwrap();
    index_paths(cp.store()).await.unwrap();
    assert!(put_api(&cp, "d", "shop/V2").await.is_err());
    put_api(&cp, "d", "shop/v3").await.unwrap();
    std::fs::remove_dir_all(dir).ok();
}
