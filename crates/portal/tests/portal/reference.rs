//! The API reference against the documents it renders: for the petstore documents and the
//! two large real-world fixtures, every operation's method and path is on the API page, and
//! every operation page shows each of its parameters, and the names and top-level properties
//! of its request and response schemas, as the document (walked independently here) has them.
//! Every page stays under 100 KB transferred with its stylesheet and script.

use std::collections::BTreeSet;

use axum::http::StatusCode;
use serde_json::Value;

use crate::support::{escaped, setup};

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn resolve<'a>(root: &'a Value, mut v: &'a Value) -> &'a Value {
    for _ in 0..32 {
        match v
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix('#'))
        {
            Some(pointer) => v = root.pointer(pointer).expect("dangling $ref"),
            None => break,
        }
    }
    v
}

fn ref_name(v: &Value) -> Option<&str> {
    v.get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.rsplit('/').next())
}

/// What a schema's table must show: its name (when it is a `$ref`) and its own properties.
fn schema_expectations(root: &Value, schema: &Value, out: &mut BTreeSet<String>) {
    let mut s = schema;
    if let Some(name) = ref_name(s) {
        out.insert(name.to_owned());
    }
    s = resolve(root, s);
    if s.get("type").and_then(Value::as_str) == Some("array")
        && let Some(items) = s.get("items")
    {
        if let Some(name) = ref_name(items) {
            out.insert(name.to_owned());
        }
        s = resolve(root, items);
    }
    for (name, _) in s
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        out.insert(name.clone());
    }
}

struct Expected {
    method: String,
    path: String,
    names: BTreeSet<String>,
}

/// Walks the document: per operation, the strings its page must show.
fn expectations(root: &Value) -> Vec<Expected> {
    let swagger2 = root.get("swagger").is_some();
    let mut out = Vec::new();
    for (path, item) in root["paths"].as_object().unwrap() {
        let item = resolve(root, item);
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            let mut names = BTreeSet::new();
            let params = item
                .get("parameters")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .chain(
                    op.get("parameters")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten(),
                );
            for p in params {
                let p = resolve(root, p);
                if swagger2 && p["in"] == "body" {
                    schema_expectations(root, &p["schema"], &mut names);
                } else {
                    names.insert(p["name"].as_str().unwrap().to_owned());
                }
            }
            if let Some(body) = op.get("requestBody") {
                let body = resolve(root, body);
                for (_, media) in body
                    .get("content")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                {
                    if let Some(schema) = media.get("schema") {
                        schema_expectations(root, schema, &mut names);
                    }
                }
            }
            for (status, response) in op["responses"].as_object().into_iter().flatten() {
                names.insert(status.clone());
                let response = resolve(root, response);
                if let Some(schema) = response.get("schema") {
                    schema_expectations(root, schema, &mut names);
                }
                for (_, media) in response
                    .get("content")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                {
                    if let Some(schema) = media.get("schema") {
                        schema_expectations(root, schema, &mut names);
                    }
                }
                for (header, _) in response
                    .get("headers")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                {
                    names.insert(header.clone());
                }
            }
            let path = if path.len() > 1 {
                path.trim_end_matches('/')
            } else {
                path
            };
            out.push(Expected {
                method: method.to_ascii_uppercase(),
                path: path.to_owned(),
                names,
            });
        }
    }
    out
}

async fn check(file: &str, expected_operations: usize) {
    let s = setup(&format!("ref-{}", file.split('.').next().unwrap())).await;
    let (doc, operations) = s.import("doc", file).await;
    s.product("all", &["doc"], false).await;
    assert_eq!(operations.len(), expected_operations, "{file}");
    let mut client = s.client();
    let api_page = client.get("/portal/apis/doc").await;
    assert_eq!(api_page.status, StatusCode::OK, "{file}: {}", api_page.body);
    let expected = expectations(&doc);
    assert_eq!(expected.len(), operations.len(), "{file}");
    let mut largest = (api_page.body.len(), "/portal/apis/doc".to_owned());
    for e in &expected {
        let op = operations
            .iter()
            .find(|o| o.method == e.method && o.url_template == e.path)
            .unwrap_or_else(|| panic!("{file}: no stored operation for {} {}", e.method, e.path));
        let listed = format!(">{}</span> <code>{}</code>", e.method, escaped(&e.path));
        assert!(
            api_page.body.contains(&listed),
            "{file}: the API page does not list {listed}"
        );
        let page = client
            .get(&format!("/portal/apis/doc/operations/{}", op.id))
            .await;
        assert_eq!(
            page.status,
            StatusCode::OK,
            "{file} {}: {}",
            op.id,
            page.body
        );
        assert!(
            page.body.contains(&listed),
            "{file} {}: the page does not show {listed}",
            op.id
        );
        for name in &e.names {
            assert!(
                page.body.contains(&escaped(name)),
                "{file}: {} {}: the page does not show '{name}'",
                e.method,
                e.path
            );
        }
        if page.body.len() > largest.0 {
            largest = (
                page.body.len(),
                format!("/portal/apis/doc/operations/{}", op.id),
            );
        }
    }
    // The largest page, with the stylesheet and htmx, stays under 100 KB transferred.
    let mut gzip = s.client();
    gzip.headers.push(("accept-encoding".into(), "gzip".into()));
    let mut transferred = 0;
    for path in [
        largest.1.as_str(),
        "/portal/assets/portal.css",
        "/portal/assets/htmx.min.js",
    ] {
        let page = gzip.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        transferred += page.transferred;
    }
    assert!(
        transferred < 100 * 1024,
        "{file}: {} ({} bytes of HTML) transfers {transferred} bytes with its assets",
        largest.1,
        largest.0
    );
}

#[tokio::test]
async fn petstore_openapi3_reference_matches_the_document() {
    check("petstore-openapi3.yaml", 3).await;
}

#[tokio::test]
async fn petstore_swagger2_reference_matches_the_document() {
    check("petstore-swagger2.json", 3).await;
}

#[tokio::test]
async fn star_trek_reference_matches_the_document() {
    check("star-trek-openapi3.yaml", 120).await;
}

#[tokio::test]
async fn kubernetes_reference_matches_the_document() {
    check("kubernetes-1.7-swagger2.json", 710).await;
}

#[tokio::test]
async fn the_document_can_be_downloaded() {
    let s = setup("download").await;
    let (doc, _) = s.import("pets", "petstore-openapi3.yaml").await;
    s.product("p", &["pets"], false).await;
    let page = s.client().get("/portal/apis/pets/openapi.json").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.headers["content-disposition"]
            .to_str()
            .unwrap()
            .contains("attachment")
    );
    let downloaded: Value = serde_json::from_str(&page.body).unwrap();
    assert_eq!(downloaded, doc);
}
