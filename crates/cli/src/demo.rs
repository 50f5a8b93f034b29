//! `gatehouse up --demo`: an API, a product and a subscription in front of the echo backend,
//! created through the management API like any user would.

use crate::Failure;
use crate::client::Client;

const DEMO_OPENAPI: &str = r#"openapi: 3.0.3
info:
  title: Demo echo API
  description: Echoes every request back as JSON.
  version: "1.0"
paths:
  /hello:
    get:
      operationId: hello
      summary: Say hello
      responses:
        "200":
          description: The request, echoed
  /items/{id}:
    get:
      operationId: get-item
      summary: Get an item
      parameters:
        - name: id
          in: path
          required: true
          schema: { type: string }
      responses:
        "200":
          description: The request, echoed
  /echo:
    post:
      operationId: echo
      summary: Echo a body
      responses:
        "200":
          description: The request, echoed
"#;

/// Creates (or refreshes) the demo resources and returns the demo subscription's key.
pub async fn setup(client: &Client, backend: std::net::SocketAddr) -> Result<String, Failure> {
    client
        .send(
            reqwest::Method::PUT,
            "/mgmt/apis/demo",
            Some(serde_json::json!({
                "path": "demo",
                "serviceUrl": format!("http://{backend}"),
                "import": {"format": "openapi", "value": DEMO_OPENAPI},
            })),
        )
        .await?;
    client
        .send(
            reqwest::Method::PUT,
            "/mgmt/products/starter",
            Some(serde_json::json!({
                "displayName": "Starter",
                "description": "Try the demo API.",
                "state": "published",
            })),
        )
        .await?;
    client
        .send(
            reqwest::Method::PUT,
            "/mgmt/products/starter/apis/demo",
            None,
        )
        .await?;
    client
        .send(
            reqwest::Method::PUT,
            "/mgmt/subscriptions/demo",
            Some(serde_json::json!({"scope": "/products/starter", "displayName": "Demo"})),
        )
        .await?;
    let keys = client
        .send(
            reqwest::Method::POST,
            "/mgmt/subscriptions/demo/listSecrets",
            None,
        )
        .await?;
    keys.get("primaryKey")
        .and_then(|k| k.as_str())
        .map(str::to_owned)
        .ok_or_else(|| Failure::runtime("the demo subscription has no key"))
}
