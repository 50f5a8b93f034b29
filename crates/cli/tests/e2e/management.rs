//! The management API (DESIGN §4): authentication, CRUD of every resource, validation errors,
//! and OpenAPI import.

use serde_json::{Value, json};

use crate::support::{Gatehouse, fixture};

#[tokio::test]
async fn requires_the_admin_token() {
    let gh = Gatehouse::up("auth", &[]).await;
    for (method, path) in [
        ("GET", "/mgmt/apis"),
        ("PUT", "/mgmt/apis/x"),
        ("GET", "/mgmt/subscriptions"),
        ("POST", "/mgmt/subscriptions/x/listSecrets"),
        ("DELETE", "/mgmt/products/x"),
        ("GET", "/mgmt/gateways"),
    ] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        for auth in [
            None,
            Some("Bearer wrong-token-wrong-token"),
            Some("Basic abc"),
        ] {
            let mut req = gh.http.request(m.clone(), gh.control(path));
            if let Some(a) = auth {
                req = req.header("Authorization", a);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 401, "{method} {path} with {auth:?}");
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["error"]["code"], "Unauthorized");
        }
    }
    // The spec and its UI are public.
    let spec = gh
        .http
        .get(gh.control("/mgmt/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(spec.status(), 200);
    let docs = gh.http.get(gh.control("/mgmt/docs")).send().await.unwrap();
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("swagger-ui-bundle.js"));
    let js = gh
        .http
        .get(gh.control("/mgmt/docs/swagger-ui-bundle.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(js.status(), 200);
    assert!(js.bytes().await.unwrap().len() > 100_000);
    // The admin token file is private.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(gh.data.join("admin-token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

/// Creates, reads, lists, patches and deletes one resource.
async fn crud(
    gh: &Gatehouse,
    collection: &str,
    id: &str,
    create: Value,
    patch: Value,
    check: &str,
    expect: Value,
) {
    let item = format!("{collection}/{id}");
    let (status, created) = gh.mgmt("PUT", &item, Some(create.clone())).await;
    assert_eq!(status, 201, "PUT {item}: {created}");
    assert_eq!(created["id"], id);
    let (status, _) = gh.mgmt("PUT", &item, Some(create)).await;
    assert_eq!(status, 200, "PUT {item} again replaces");
    let got = gh.ok("GET", &item, None).await;
    assert_eq!(got["id"], id);
    let list = gh.ok("GET", collection, None).await;
    assert!(list["count"].as_u64().unwrap() >= 1);
    assert!(list["nextLink"].is_null());
    assert!(
        list["value"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["id"] == id)
    );
    let patched = gh.ok("PATCH", &item, Some(patch)).await;
    assert_eq!(patched[check], expect, "PATCH {item}: {patched}");
    assert_eq!(gh.ok("GET", &item, None).await[check], expect);
    let (status, _) = gh.mgmt("DELETE", &item, None).await;
    assert_eq!(status, 204);
    let (status, body) = gh.mgmt("GET", &item, None).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "ResourceNotFound");
    let (status, _) = gh.mgmt("DELETE", &item, None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn every_resource_has_crud() {
    let gh = Gatehouse::up("crud", &[]).await;
    crud(
        &gh,
        "/mgmt/apis",
        "petstore",
        json!({"displayName": "Pets", "path": "pets", "serviceUrl": "http://127.0.0.1:9/api"}),
        json!({"displayName": "Pet store"}),
        "displayName",
        json!("Pet store"),
    )
    .await;
    crud(
        &gh,
        "/mgmt/products",
        "starter",
        json!({"displayName": "Starter", "description": "For trying"}),
        json!({"state": "published"}),
        "state",
        json!("published"),
    )
    .await;
    crud(
        &gh,
        "/mgmt/named-values",
        "greeting",
        json!({"value": "hello"}),
        json!({"value": "bye"}),
        "value",
        json!("bye"),
    )
    .await;
    crud(
        &gh,
        "/mgmt/backends",
        "orders",
        json!({"url": "http://127.0.0.1:9/orders", "description": "Orders"}),
        json!({"description": "Order service"}),
        "description",
        json!("Order service"),
    )
    .await;
    crud(
        &gh,
        "/mgmt/gateways",
        "edge",
        json!({"description": "Edge", "locationData": {"name": "Berlin"}}),
        json!({"locationData": {"name": "Paris"}}),
        "locationData",
        json!({"name": "Paris"}),
    )
    .await;
    crud(
        &gh,
        "/mgmt/subscriptions",
        "s1",
        json!({"scope": "/apis", "displayName": "One"}),
        json!({"state": "suspended"}),
        "state",
        json!("suspended"),
    )
    .await;

    // Operations live under their API.
    gh.ok(
        "PUT",
        "/mgmt/apis/shop",
        Some(json!({"path": "shop", "serviceUrl": "http://127.0.0.1:9"})),
    )
    .await;
    crud(
        &gh,
        "/mgmt/apis/shop/operations",
        "get-item",
        json!({"method": "GET", "urlTemplate": "/items/{id}"}),
        json!({"urlTemplate": "/things/{id}"}),
        "urlTemplate",
        json!("/things/{id}"),
    )
    .await;

    // Product and gateway links.
    gh.ok("PUT", "/mgmt/products/p", Some(json!({}))).await;
    let (status, _) = gh.mgmt("PUT", "/mgmt/products/p/apis/shop", None).await;
    assert_eq!(status, 201);
    let apis = gh.ok("GET", "/mgmt/products/p/apis", None).await;
    assert_eq!(apis["value"][0]["id"], "shop");
    assert_eq!(
        gh.mgmt("PUT", "/mgmt/products/p/apis/nope", None).await.0,
        404
    );
    assert_eq!(
        gh.mgmt("DELETE", "/mgmt/products/p/apis/shop", None)
            .await
            .0,
        204
    );
    assert_eq!(
        gh.mgmt("DELETE", "/mgmt/products/p/apis/shop", None)
            .await
            .0,
        404
    );
    gh.ok("PUT", "/mgmt/gateways/g", Some(json!({}))).await;
    assert_eq!(
        gh.mgmt("PUT", "/mgmt/gateways/g/apis/shop", None).await.0,
        201
    );
    assert_eq!(
        gh.ok("GET", "/mgmt/gateways/g/apis", None).await["count"],
        1
    );
    assert_eq!(
        gh.mgmt("DELETE", "/mgmt/gateways/g/apis/shop", None)
            .await
            .0,
        204
    );
    // The built-in gateway exists and serves every API.
    assert_eq!(
        gh.ok("GET", "/mgmt/gateways/built-in/apis", None).await["count"],
        1
    );

    // Secrets: keys only through listSecrets; regenerate changes them; secret values hidden.
    let sub = gh
        .ok(
            "PUT",
            "/mgmt/subscriptions/s2",
            Some(json!({"scope": "/apis/shop"})),
        )
        .await;
    assert!(sub.get("primaryKey").is_none());
    let keys = gh
        .ok("POST", "/mgmt/subscriptions/s2/listSecrets", None)
        .await;
    let primary = keys["primaryKey"].as_str().unwrap().to_owned();
    assert_eq!(primary.len(), 64);
    assert_ne!(keys["primaryKey"], keys["secondaryKey"]);
    assert_eq!(
        gh.mgmt("POST", "/mgmt/subscriptions/s2/regeneratePrimaryKey", None)
            .await
            .0,
        204
    );
    let again = gh
        .ok("POST", "/mgmt/subscriptions/s2/listSecrets", None)
        .await;
    assert_ne!(again["primaryKey"], keys["primaryKey"]);
    assert_eq!(again["secondaryKey"], keys["secondaryKey"]);
    gh.ok(
        "PUT",
        "/mgmt/named-values/pw",
        Some(json!({"value": "hunter2-secret", "secret": true})),
    )
    .await;
    let nv = gh.ok("GET", "/mgmt/named-values/pw", None).await;
    assert!(nv.get("value").is_none());
    assert_eq!(
        gh.ok("POST", "/mgmt/named-values/pw/listValue", None).await["value"],
        "hunter2-secret"
    );
    // Nothing secret is stored in clear.
    let db = std::fs::read(gh.data.join("gatehouse.db")).unwrap();
    let wal = std::fs::read(gh.data.join("gatehouse.db-wal")).unwrap_or_default();
    for secret in [
        primary.as_bytes(),
        again["secondaryKey"].as_str().unwrap().as_bytes(),
        b"hunter2-secret",
    ] {
        assert!(
            !contains(&db, secret) && !contains(&wal, secret),
            "a secret is stored in clear"
        );
    }

    // Paging.
    for i in 0..5 {
        gh.ok("PUT", &format!("/mgmt/products/page-{i}"), Some(json!({})))
            .await;
    }
    let page = gh.ok("GET", "/mgmt/products?$top=2&$skip=1", None).await;
    assert_eq!(page["value"].as_array().unwrap().len(), 2);
    assert_eq!(page["count"], 6);
    assert_eq!(page["nextLink"], "/mgmt/products?$top=2&$skip=3");
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn bad_input_gets_400_with_details() {
    let gh = Gatehouse::up("validation", &[]).await;
    let raw = |method: &str, path: &str, body: &'static str| {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        gh.http
            .request(m, gh.control(path))
            .bearer_auth(&gh.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    // Malformed JSON: line and column.
    let resp = raw("PUT", "/mgmt/apis/x", "{\n  \"path\": \"x\",\n  oops\n}")
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "ValidationError");
    assert_eq!(body["error"]["details"][0]["line"], 3);
    assert!(body["error"]["details"][0]["column"].as_u64().is_some());

    let cases: Vec<(&str, &str, Value, &str)> = vec![
        (
            "PUT",
            "/mgmt/apis/x",
            json!({"path": "a b", "serviceUrl": "http://h"}),
            "path",
        ),
        (
            "PUT",
            "/mgmt/apis/x",
            json!({"path": "x", "serviceUrl": "ftp://h"}),
            "serviceUrl",
        ),
        (
            "PUT",
            "/mgmt/apis/x",
            json!({"path": "x", "protocols": []}),
            "protocols",
        ),
        (
            "PUT",
            "/mgmt/apis/x",
            json!({"path": "x", "subscriptionRequired": "yes"}),
            "body",
        ),
        (
            "PUT",
            "/mgmt/apis/x",
            json!({"path": "x", "unknownProperty": 1}),
            "body",
        ),
        ("PUT", "/mgmt/apis/bad%20id", json!({"path": "x"}), "apiId"),
        (
            "PUT",
            "/mgmt/subscriptions/s",
            json!({"scope": "/users/1"}),
            "scope",
        ),
        (
            "PUT",
            "/mgmt/subscriptions/s",
            json!({"scope": "/apis", "primaryKey": "short"}),
            "primaryKey",
        ),
        (
            "PUT",
            "/mgmt/named-values/n",
            json!({"secret": true}),
            "value",
        ),
        (
            "PUT",
            "/mgmt/backends/b",
            json!({"url": "not a url"}),
            "url",
        ),
        (
            "PUT",
            "/mgmt/apis/x",
            json!({"path": "x", "import": {"format": "wsdl", "value": ""}}),
            "import.format",
        ),
        ("PATCH", "/mgmt/apis/x", json!([1, 2]), "body"),
        ("GET", "/mgmt/apis?$top=0", Value::Null, "$top"),
    ];
    for (method, path, body, target) in cases {
        let (status, answer) = gh
            .mgmt(method, path, (!body.is_null()).then_some(body.clone()))
            .await;
        if method == "PATCH" {
            // The API does not exist yet: create it and retry.
            gh.ok("PUT", "/mgmt/apis/x", Some(json!({"path": "x"})))
                .await;
            let (status, answer) = gh.mgmt(method, path, Some(body)).await;
            assert_eq!(status, 400, "{method} {path}: {answer}");
            continue;
        }
        assert_eq!(status, 400, "{method} {path} {body}: {answer}");
        assert_eq!(answer["error"]["code"], "ValidationError", "{answer}");
        let details = answer["error"]["details"].as_array().unwrap();
        assert!(
            details
                .iter()
                .any(|d| d["target"].as_str().unwrap().starts_with(target)),
            "{method} {path}: expected a detail for {target}: {answer}"
        );
        assert!(!answer["error"]["message"].as_str().unwrap().is_empty());
    }

    // A scope naming an API that does not exist: 404, saying which member and what to create.
    let (status, answer) = gh
        .mgmt(
            "PUT",
            "/mgmt/subscriptions/s",
            Some(json!({"scope": "/apis/missing"})),
        )
        .await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(answer["error"]["code"], "ResourceNotFound", "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("'scope'") && message.contains("API 'missing' does not exist"),
        "{answer}"
    );

    // Two APIs cannot share a path: the second is a conflict with the first (409).
    gh.ok("PUT", "/mgmt/apis/first", Some(json!({"path": "same"})))
        .await;
    let (status, answer) = gh
        .mgmt("PUT", "/mgmt/apis/second", Some(json!({"path": "SAME"})))
        .await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"]["code"], "Conflict", "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("'first'")),
        "{answer}"
    );

    // A broken OpenAPI document says where.
    let (status, answer) = gh.mgmt("PUT", "/mgmt/apis/broken", Some(json!({
        "path": "broken",
        "import": {"format": "openapi", "value": "openapi: 3.0.0\ninfo:\n  title: x\n  version: '1'\npaths:\n  /a:\n    get: [unclosed\n"}
    }))).await;
    assert_eq!(status, 400, "{answer}");
    let detail = &answer["error"]["details"][0];
    assert!(detail["line"].as_u64().is_some(), "{answer}");
    assert!(
        detail["target"]
            .as_str()
            .unwrap()
            .starts_with("import.value")
    );

    // The process never fell over.
    assert_eq!(gh.mgmt("GET", "/mgmt/apis", None).await.0, 200);
    assert!(!gh.log().contains("panicked"));
}

#[tokio::test]
async fn imports_openapi_and_swagger_documents() {
    let gh = Gatehouse::up("import", &[]).await;
    let cases = [
        ("petstore-openapi3.yaml", "pets3"),
        ("petstore-swagger2.json", "pets2"),
        ("kubernetes-1.7-swagger2.json", "k8s"),
        ("star-trek-openapi3.yaml", "stapi"),
    ];
    for (file, id) in cases {
        let text = std::fs::read_to_string(fixture(file)).unwrap();
        let doc: Value = if file.ends_with(".json") {
            serde_json::from_str(&text).unwrap()
        } else {
            // Count the operations the same way without a YAML parser: ask the server for the
            // stored JSON form after import.
            Value::Null
        };
        let api = gh
            .ok(
                "PUT",
                &format!("/mgmt/apis/{id}"),
                Some(json!({
                    "path": id,
                    "import": {"format": "openapi", "value": text},
                })),
            )
            .await;
        assert!(!api["displayName"].as_str().unwrap().is_empty());
        let stored = gh
            .ok("GET", &format!("/mgmt/apis/{id}/openapi"), None)
            .await;
        let doc = if doc.is_null() { stored } else { doc };
        let expected = count_operations(&doc);
        let ops = gh
            .ok(
                "GET",
                &format!("/mgmt/apis/{id}/operations?$top=1000"),
                None,
            )
            .await;
        assert_eq!(ops["count"].as_u64().unwrap() as usize, expected, "{file}");
        assert!(expected > 0);
        // Every (method, template) pair of the document is there.
        let have: std::collections::HashSet<(String, String)> = ops["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                (
                    o["method"].as_str().unwrap().to_owned(),
                    o["urlTemplate"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in METHODS {
                if item.get(method).is_some() {
                    let template = if path.len() > 1 {
                        path.trim_end_matches('/')
                    } else {
                        path
                    };
                    assert!(
                        have.contains(&(method.to_uppercase(), template.to_owned())),
                        "{file}: {method} {path}"
                    );
                }
            }
        }
    }
    // Petstore specifics: ids from operationId, names from summary, parameters from the path.
    let op = gh
        .ok("GET", "/mgmt/apis/pets3/operations/showPetById", None)
        .await;
    assert_eq!(op["method"], "GET");
    assert_eq!(op["urlTemplate"], "/pets/{petId}");
    assert_eq!(op["templateParameters"][0]["name"], "petId");
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn count_operations(doc: &Value) -> usize {
    doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| METHODS.iter().filter(|m| item.get(**m).is_some()).count())
        .sum()
}

#[tokio::test]
async fn deleting_a_group_removes_its_memberships_and_product_links() {
    let gh = Gatehouse::up("group-delete", &[]).await;
    gh.ok(
        "PUT",
        "/mgmt/groups/partners",
        Some(json!({"displayName": "Partners"})),
    )
    .await;
    gh.ok("PUT", "/mgmt/products/p", Some(json!({}))).await;
    gh.ok("PUT", "/mgmt/products/p/groups/partners", None).await;
    assert_eq!(
        gh.ok("GET", "/mgmt/products/p/groups", None).await["count"],
        1
    );
    assert_eq!(
        gh.mgmt("DELETE", "/mgmt/groups/partners", None).await.0,
        204
    );
    assert_eq!(
        gh.ok("GET", "/mgmt/products/p/groups", None).await["count"],
        0
    );
    assert_eq!(gh.mgmt("GET", "/mgmt/groups/partners", None).await.0, 404);
}
