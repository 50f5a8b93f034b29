use gatehouse_store::PolicyScope;
use serde_json::json;

use super::*;
use crate::service::policies::{self, Form};

const CONNECTION: &str = "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=c2VjcmV0LWtleQ==";

async fn put_json(cp: &ControlPlane, id: &str, body: serde_json::Value) -> ServiceResult<Logger> {
    let body: Logger = serde_json::from_value(body).unwrap();
    put(cp, id, body).await.map(|saved| saved.value)
}

async fn put_global(cp: &ControlPlane, xml: &str) -> ServiceResult<()> {
    policies::put(cp, &PolicyScope::Global, xml.as_bytes(), Form::Xml)
        .await
        .map(|_| ())
}

#[tokio::test]
async fn secrets_are_sealed_at_rest_masked_when_read_and_kept_when_sent_back_masked() {
    let t = crate::testkit::open("loggers-secrets").await;
    let cp = t.cp;
    let shown = put_json(
        &cp,
        "hub",
        json!({"loggerType": "azureEventHub", "description": "orders",
               "credentials": {"name": "orders", "connectionString": CONNECTION}}),
    )
    .await
    .unwrap();
    assert_eq!(shown.credentials["connectionString"], MASKED);
    // At rest: sealed, the key nowhere in clear.
    let stored = cp
        .store()
        .get(Kind::Logger, "", "hub")
        .await
        .unwrap()
        .unwrap();
    assert!(
        !stored.contains("c2VjcmV0LWtleQ") && !stored.contains("SharedAccessKey"),
        "{stored}"
    );
    // GET and the list show it masked.
    let got = get(&cp, "hub").await.unwrap();
    assert_eq!(got.credentials["connectionString"], MASKED);
    assert_eq!(got.credentials["name"], "orders");
    let all = list(&cp).await.unwrap();
    assert_eq!(all[0].credentials["connectionString"], MASKED);

    // What GET showed, sent back with a new description: the stored secret stays.
    let mut again = serde_json::to_value(&got).unwrap();
    again["description"] = json!("orders, v2");
    put_json(&cp, "hub", again).await.unwrap();
    // A PATCH that leaves the credentials alone keeps them too.
    let patched = patch(&cp, "hub", json!({"isBuffered": false}))
        .await
        .unwrap();
    assert!(!patched.is_buffered);
    let opened = open(&cp, load::<Logger>(&cp, "", "hub").await.unwrap()).unwrap();
    assert_eq!(opened.credentials["connectionString"], CONNECTION);
    assert_eq!(opened.description.as_deref(), Some("orders, v2"));

    // A masked value with nothing stored behind it is refused.
    let e = put_json(
        &cp,
        "other",
        json!({"loggerType": "http", "endpoint": {"url": "https://sink.test/", "headers": {"Authorization": MASKED}}}),
    )
    .await
    .unwrap_err();
    assert!(
        e.to_string().contains("endpoint.headers.Authorization"),
        "{e}"
    );
    std::fs::remove_dir_all(t.dir).ok();
}

#[tokio::test]
async fn policies_must_name_loggers_that_exist_and_gateways_get_the_ones_they_use() {
    let t = crate::testkit::open("loggers-policies").await;
    let cp = t.cp;
    let policy = r#"<policies><inbound><log-to-eventhub logger-id="sink">@(context.RequestId.ToString())</log-to-eventhub></inbound><backend><forward-request /></backend></policies>"#;
    let e = put_global(&cp, policy).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("logger 'sink' does not exist; create it with PUT /mgmt/loggers/sink"),
        "{e}"
    );
    put_json(
        &cp,
        "sink",
        json!({"loggerType": "http", "endpoint": {"url": "https://sink.test/in", "headers": {"Authorization": "Bearer s3cret"}}}),
    )
    .await
    .unwrap();
    put_json(
        &cp,
        "unused",
        json!({"loggerType": "azureEventHub", "credentials": {"name": "h", "connectionString": CONNECTION}}),
    )
    .await
    .unwrap();
    // Before any policy uses it, no gateway gets it.
    let snapshot = cp.snapshot("built-in").await.unwrap();
    assert!(snapshot.loggers.is_empty());
    put_global(&cp, policy).await.unwrap();
    let snapshot = cp.snapshot("built-in").await.unwrap();
    assert_eq!(snapshot.loggers.len(), 1, "only the logger a policy uses");
    let shipped = &snapshot.loggers[0];
    assert_eq!(shipped.id, "sink");
    assert_eq!(
        shipped.endpoint.as_ref().unwrap().headers["Authorization"],
        "Bearer s3cret",
        "opened for the gateway"
    );
    assert!(!format!("{shipped:?}").contains("s3cret"));

    // In use: it cannot be deleted; the other can.
    let e = delete(&cp, "sink").await.unwrap_err();
    assert!(
        e.to_string()
            .contains("'sink' is used by the global policy"),
        "{e}"
    );
    delete(&cp, "unused").await.unwrap();
    std::fs::remove_dir_all(t.dir).ok();
}
