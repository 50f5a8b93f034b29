//! The management commands: thin calls to the management API, printed for people (`-o text`)
//! or for scripts (`-o json`).

use std::path::PathBuf;

use reqwest::Method;
use serde_json::{Value, json};

use crate::Failure;
use crate::args::{
    ApiCommand, GatewayCommand, Global, NamedValueCommand, Output, PolicyCommand, ProductCommand,
    SubscriptionCommand,
};

pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    /// A client that also trusts the CA certificates in `trusted_ca` (`--trusted-ca`).
    pub fn trusting(base: &str, token: String, trusted_ca: &[PathBuf]) -> Result<Self, Failure> {
        let tls = gatehouse_gateway::outbound_tls::reqwest_tls(trusted_ca)
            .map_err(|e| Failure::input(format!("{e}; check --trusted-ca")))?;
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(120))
            .tls_backend_preconfigured(tls)
            .build()
            .map_err(|e| Failure::runtime(format!("cannot build an HTTP client: {e}")))?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token,
        })
    }

    /// From the global options: `$GATEHOUSE_ADMIN_TOKEN`, else `<data>/admin-token`.
    pub fn from_global(global: &Global) -> Result<Self, Failure> {
        let token = match std::env::var("GATEHOUSE_ADMIN_TOKEN") {
            Ok(t) if !t.trim().is_empty() => t.trim().to_owned(),
            _ => {
                let data = global
                    .data
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("gatehouse-data"));
                let path = data.join("admin-token");
                std::fs::read_to_string(&path)
                    .map(|t| t.trim().to_owned())
                    .map_err(|e| {
                        Failure::input(format!(
                            "no admin token: GATEHOUSE_ADMIN_TOKEN is not set and {} cannot be read ({e}); set one of them or pass --data",
                            path.display()
                        ))
                    })?
            }
        };
        Self::trusting(&global.url, token, &global.trusted_ca)
    }

    /// PUTs an XML document (a policy).
    pub async fn send_xml(&self, path: &str, xml: String) -> Result<Value, Failure> {
        self.request(Method::PUT, path, Some(("application/xml", xml)))
            .await
    }

    /// Sends one request and returns the JSON answer (`null` for an empty one).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Failure> {
        let body = body.map(|b| ("application/json", b.to_string()));
        self.request(method, path, body).await
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<(&'static str, String)>,
    ) -> Result<Value, Failure> {
        let url = format!("{}{path}", self.base);
        let mut request = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(&self.token);
        if let Some((content_type, b)) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(b);
        }
        let response = request.send().await.map_err(|e| {
            Failure::runtime(format!(
                "cannot reach the control plane at {}: {}; is `gatehouse up` running, and is GATEHOUSE_URL right?",
                self.base,
                root_cause(&e)
            ))
        })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let value: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status.is_success() {
            return Ok(value);
        }
        let message = value
            .pointer("/error/message")
            .and_then(Value::as_str)
            .unwrap_or("the control plane refused the request")
            .to_owned();
        let details: Vec<String> = value
            .pointer("/error/details")
            .and_then(Value::as_array)
            .map(|d| {
                d.iter()
                    .map(|x| {
                        let target = x.get("target").and_then(Value::as_str).unwrap_or("");
                        let msg = x.get("message").and_then(Value::as_str).unwrap_or("");
                        match (x.get("line"), x.get("column")) {
                            (Some(l), Some(c)) => format!("{target}:{l}:{c}: {msg}"),
                            _ => format!("{target}: {msg}"),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut full = format!("{method} {path} failed with {status}: {message}");
        for d in &details {
            full.push_str("\n  ");
            full.push_str(d);
        }
        if status == reqwest::StatusCode::UNAUTHORIZED {
            full.push_str("\n  Check GATEHOUSE_ADMIN_TOKEN or --data.");
        }
        Err(
            if status.is_client_error() && status != reqwest::StatusCode::NOT_FOUND {
                Failure::input(full)
            } else {
                Failure::runtime(full)
            },
        )
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    if let Some(tls) = gatehouse_tls::client::find_tls_error(e) {
        return format!(
            "its TLS certificate was refused: {} (pass --trusted-ca with its CA)",
            gatehouse_tls::client::describe(tls)
        );
    }
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

fn print(global: &Global, value: &Value, text: impl FnOnce(&Value) -> String) {
    match global.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        ),
        Output::Text => {
            let t = text(value);
            if !t.is_empty() {
                println!("{t}");
            }
        }
    }
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn table(rows: &[Vec<String>]) -> String {
    let mut widths = Vec::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if widths.len() <= i {
                widths.push(0);
            }
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    rows.iter()
        .map(|row| {
            row.iter()
                .enumerate()
                .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The most an imported document may weigh, and how long fetching one may take.
const MAX_DOCUMENT: usize = 16 * 1024 * 1024;
const FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// An OpenAPI document from a file, or fetched from an http(s):// URL (within
/// [`MAX_DOCUMENT`] and [`FETCH_TIMEOUT`], trusting `--trusted-ca` as well as the system).
async fn read_document(source: &str, trusted_ca: &[PathBuf]) -> Result<String, Failure> {
    let lower = source.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        if lower.contains("://") {
            return Err(Failure::input(format!(
                "{source}: only http:// and https:// URLs can be fetched; give a file path or such a URL"
            )));
        }
        return std::fs::read_to_string(source)
            .map_err(|e| Failure::input(format!("cannot read {source}: {e}")));
    }
    let tls = gatehouse_gateway::outbound_tls::reqwest_tls(trusted_ca)
        .map_err(|e| Failure::input(format!("{e}; check --trusted-ca")))?;
    let http = reqwest::Client::builder()
        .timeout(FETCH_TIMEOUT)
        .tls_backend_preconfigured(tls)
        .build()
        .map_err(|e| Failure::runtime(format!("cannot build an HTTP client: {e}")))?;
    let fail = |what: String| Failure::runtime(format!("cannot fetch {source}: {what}"));
    let mut response = http.get(source).send().await.map_err(|e| {
        if e.is_timeout() {
            fail(format!("no answer within {} s", FETCH_TIMEOUT.as_secs()))
        } else {
            fail(root_cause(&e))
        }
    })?;
    if !response.status().is_success() {
        return Err(fail(format!("the server answered {}", response.status())));
    }
    let too_large = || {
        fail(format!(
            "the document is larger than {} MiB",
            MAX_DOCUMENT / (1024 * 1024)
        ))
    };
    if response
        .content_length()
        .is_some_and(|n| n > MAX_DOCUMENT as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| fail(root_cause(&e)))? {
        if body.len() + chunk.len() > MAX_DOCUMENT {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|_| fail("the document is not UTF-8 text".into()))
}

pub async fn api(global: Global, cmd: ApiCommand) -> Result<(), Failure> {
    let client = Client::from_global(&global)?;
    match cmd {
        ApiCommand::Import {
            file,
            id,
            path,
            service_url,
        } => {
            let text = read_document(&file, &global.trusted_ca).await?;
            let mut body = json!({
                "path": path,
                "import": {"format": "openapi", "value": text},
            });
            if let Some(url) = service_url {
                body["serviceUrl"] = json!(url);
            }
            let api = client
                .send(Method::PUT, &format!("/mgmt/apis/{id}"), Some(body))
                .await
                .map_err(|mut f| {
                    f.message = format!("{file}: {}", f.message);
                    f
                })?;
            let ops = client
                .send(
                    Method::GET,
                    &format!("/mgmt/apis/{id}/operations?$top=1000"),
                    None,
                )
                .await?;
            let count = ops.get("count").and_then(Value::as_u64).unwrap_or(0);
            print(&global, &api, |a| {
                format!(
                    "Imported API '{}' at /{} with {count} operations (backend: {}).",
                    s(a, "id"),
                    s(a, "path"),
                    a.get("serviceUrl")
                        .and_then(Value::as_str)
                        .unwrap_or("none")
                )
            });
        }
        ApiCommand::List => {
            let list = client
                .send(Method::GET, "/mgmt/apis?$top=1000", None)
                .await?;
            print(&global, &list, |l| {
                let mut rows = vec![vec![
                    "ID".into(),
                    "PATH".into(),
                    "SERVICE URL".into(),
                    "NAME".into(),
                ]];
                for a in l
                    .get("value")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    rows.push(vec![
                        s(a, "id").into(),
                        format!("/{}", s(a, "path")),
                        s(a, "serviceUrl").into(),
                        s(a, "displayName").into(),
                    ]);
                }
                table(&rows)
            });
        }
        ApiCommand::Show { id } => {
            let mut api = client
                .send(Method::GET, &format!("/mgmt/apis/{id}"), None)
                .await?;
            let ops = client
                .send(
                    Method::GET,
                    &format!("/mgmt/apis/{id}/operations?$top=1000"),
                    None,
                )
                .await?;
            api["operations"] = ops.get("value").cloned().unwrap_or(Value::Null);
            print(&global, &api, |a| {
                let mut out = format!(
                    "API {} ({})\n  path: /{}\n  service URL: {}\n  subscription required: {}\n  operations:",
                    s(a, "id"),
                    s(a, "displayName"),
                    s(a, "path"),
                    a.get("serviceUrl")
                        .and_then(Value::as_str)
                        .unwrap_or("none"),
                    a.get("subscriptionRequired")
                        .and_then(Value::as_bool)
                        .unwrap_or(true),
                );
                for op in a["operations"].as_array().into_iter().flatten() {
                    out.push_str(&format!(
                        "\n    {:<7} {:<30} {}",
                        s(op, "method"),
                        s(op, "urlTemplate"),
                        s(op, "id")
                    ));
                }
                out
            });
        }
        ApiCommand::Delete { id } => {
            client
                .send(Method::DELETE, &format!("/mgmt/apis/{id}"), None)
                .await?;
            print(&global, &json!({"deleted": id}), |_| {
                format!("Deleted API '{id}'.")
            });
        }
    }
    Ok(())
}

pub async fn product(global: Global, cmd: ProductCommand) -> Result<(), Failure> {
    let client = Client::from_global(&global)?;
    match cmd {
        ProductCommand::Create {
            id,
            name,
            no_subscription,
            approval,
        } => {
            let p = client
                .send(
                    Method::PUT,
                    &format!("/mgmt/products/{id}"),
                    Some(json!({
                        "displayName": name,
                        "subscriptionRequired": !no_subscription,
                        "approvalRequired": approval,
                        "state": "published",
                    })),
                )
                .await?;
            print(&global, &p, |p| {
                format!("Product '{}' is ready.", s(p, "id"))
            });
        }
        ProductCommand::AddApi { product, api } => {
            let a = client
                .send(
                    Method::PUT,
                    &format!("/mgmt/products/{product}/apis/{api}"),
                    None,
                )
                .await?;
            print(&global, &a, |_| {
                format!("Added API '{api}' to product '{product}'.")
            });
        }
        ProductCommand::Show { id } => {
            let mut product = client
                .send(Method::GET, &format!("/mgmt/products/{id}"), None)
                .await?;
            let apis = client
                .send(
                    Method::GET,
                    &format!("/mgmt/products/{id}/apis?$top=1000"),
                    None,
                )
                .await?;
            product["apis"] = apis.get("value").cloned().unwrap_or(Value::Null);
            print(&global, &product, |p| {
                let flag = |key: &str, default: bool| {
                    p.get(key).and_then(Value::as_bool).unwrap_or(default)
                };
                let mut out = format!(
                    "Product {} ({})\n  state: {}\n  subscription required: {}\n  approval required: {}\n  APIs:",
                    s(p, "id"),
                    s(p, "displayName"),
                    s(p, "state"),
                    flag("subscriptionRequired", true),
                    flag("approvalRequired", false),
                );
                let apis = p["apis"].as_array().map(Vec::as_slice).unwrap_or_default();
                if apis.is_empty() {
                    out.push_str(" none");
                }
                for a in apis {
                    out.push_str(&format!("\n    {:<20} /{}", s(a, "id"), s(a, "path")));
                }
                out
            });
        }
        ProductCommand::List => {
            let list = client
                .send(Method::GET, "/mgmt/products?$top=1000", None)
                .await?;
            print(&global, &list, |l| {
                let mut rows = vec![vec![
                    "ID".into(),
                    "NAME".into(),
                    "STATE".into(),
                    "SUBSCRIPTION".into(),
                ]];
                for p in l
                    .get("value")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    rows.push(vec![
                        s(p, "id").into(),
                        s(p, "displayName").into(),
                        s(p, "state").into(),
                        if p.get("subscriptionRequired")
                            .and_then(Value::as_bool)
                            .unwrap_or(true)
                        {
                            "required".into()
                        } else {
                            "open".into()
                        },
                    ]);
                }
                table(&rows)
            });
        }
    }
    Ok(())
}

fn keys_text(id: &str, k: &Value) -> String {
    format!(
        "Subscription '{id}'\n  primary key:   {}\n  secondary key: {}",
        s(k, "primaryKey"),
        s(k, "secondaryKey")
    )
}

fn subscription_text(x: &Value) -> String {
    let mut out = format!(
        "Subscription {}\n  name: {}\n  scope: {}\n  state: {}",
        s(x, "id"),
        s(x, "displayName"),
        s(x, "scope"),
        s(x, "state"),
    );
    for (key, label) in [
        ("ownerId", "owner"),
        ("createdDate", "created"),
        ("expirationDate", "expires"),
    ] {
        if !s(x, key).is_empty() {
            out.push_str(&format!("\n  {label}: {}", s(x, key)));
        }
    }
    out.push_str("\n  keys: gatehouse subscription keys ");
    out.push_str(s(x, "id"));
    out
}

pub async fn subscription(global: Global, cmd: SubscriptionCommand) -> Result<(), Failure> {
    let client = Client::from_global(&global)?;
    match cmd {
        SubscriptionCommand::Create {
            id,
            scope,
            name,
            state,
        } => {
            let mut body = json!({"scope": scope});
            if let Some(n) = name {
                body["displayName"] = json!(n);
            }
            if let Some(state) = state {
                body["state"] = json!(state);
            }
            client
                .send(
                    Method::PUT,
                    &format!("/mgmt/subscriptions/{id}"),
                    Some(body),
                )
                .await?;
            let keys = client
                .send(
                    Method::POST,
                    &format!("/mgmt/subscriptions/{id}/listSecrets"),
                    None,
                )
                .await?;
            print(&global, &keys, |k| keys_text(&id, k));
        }
        SubscriptionCommand::Keys { id, primary } => {
            let keys = client
                .send(
                    Method::POST,
                    &format!("/mgmt/subscriptions/{id}/listSecrets"),
                    None,
                )
                .await?;
            if primary {
                println!("{}", s(&keys, "primaryKey"));
            } else {
                print(&global, &keys, |k| keys_text(&id, k));
            }
        }
        SubscriptionCommand::Show { id } => {
            let sub = client
                .send(Method::GET, &format!("/mgmt/subscriptions/{id}"), None)
                .await?;
            print(&global, &sub, subscription_text);
        }
        SubscriptionCommand::Approve { id } => {
            let sub = client
                .send(
                    Method::PATCH,
                    &format!("/mgmt/subscriptions/{id}"),
                    Some(json!({"state": "active"})),
                )
                .await?;
            print(&global, &sub, |x| {
                format!("Subscription '{}' is {}.", s(x, "id"), s(x, "state"))
            });
        }
        SubscriptionCommand::List => {
            let list = client
                .send(Method::GET, "/mgmt/subscriptions?$top=1000", None)
                .await?;
            print(&global, &list, |l| {
                let mut rows = vec![vec![
                    "ID".into(),
                    "SCOPE".into(),
                    "STATE".into(),
                    "NAME".into(),
                ]];
                for x in l
                    .get("value")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    rows.push(vec![
                        s(x, "id").into(),
                        s(x, "scope").into(),
                        s(x, "state").into(),
                        s(x, "displayName").into(),
                    ]);
                }
                table(&rows)
            });
        }
    }
    Ok(())
}

pub async fn named_value(global: Global, cmd: NamedValueCommand) -> Result<(), Failure> {
    let client = Client::from_global(&global)?;
    match cmd {
        NamedValueCommand::Set { id, value, secret } => {
            let nv = client
                .send(
                    Method::PUT,
                    &format!("/mgmt/named-values/{id}"),
                    Some(json!({"value": value, "secret": secret})),
                )
                .await?;
            print(&global, &nv, |_| {
                format!(
                    "Named value '{id}' is set{}.",
                    if secret { " (secret)" } else { "" }
                )
            });
        }
    }
    Ok(())
}

pub async fn gateway(global: Global, cmd: GatewayCommand) -> Result<(), Failure> {
    let client = Client::from_global(&global)?;
    match cmd {
        GatewayCommand::Create { id, location } => {
            let mut body = json!({});
            if let Some(l) = location {
                body["locationData"] = json!({"name": l});
            }
            let g = client
                .send(Method::PUT, &format!("/mgmt/gateways/{id}"), Some(body))
                .await?;
            print(&global, &g, |_| format!("Gateway '{id}' is ready."));
        }
        GatewayCommand::Assign { id, api } => {
            let a = client
                .send(
                    Method::PUT,
                    &format!("/mgmt/gateways/{id}/apis/{api}"),
                    None,
                )
                .await?;
            print(&global, &a, |_| {
                format!("Assigned API '{api}' to gateway '{id}'.")
            });
        }
        GatewayCommand::Unassign { id, api } => {
            client
                .send(
                    Method::DELETE,
                    &format!("/mgmt/gateways/{id}/apis/{api}"),
                    None,
                )
                .await?;
            print(&global, &json!({"unassigned": api}), |_| {
                format!("Gateway '{id}' no longer serves API '{api}'.")
            });
        }
        GatewayCommand::Token {
            id,
            expiry,
            secondary,
        } => {
            let lifetime = crate::settings::parse_duration("--expiry", &expiry)?;
            let seconds = i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX);
            let at = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| i64::try_from(d.as_secs()).unwrap_or(0))
                .unwrap_or(0)
                .saturating_add(seconds)
                // A token's expiry has minute precision: round down so it stays within 30 days.
                / 60
                * 60;
            let token = client
                .send(
                    Method::POST,
                    &format!("/mgmt/gateways/{id}/generateToken"),
                    Some(json!({
                        "expiry": gatehouse_model::reports::rfc3339(at),
                        "keyType": if secondary { "secondary" } else { "primary" },
                    })),
                )
                .await?;
            print(&global, &token, |t| s(t, "value").to_owned());
        }
        GatewayCommand::Status { id } => {
            let status = client
                .send(Method::GET, &format!("/mgmt/gateways/{id}/status"), None)
                .await?;
            print(&global, &status, |st| {
                let mut rows = vec![vec![
                    "INSTANCE".into(),
                    "LINK".into(),
                    "LAST HEARTBEAT".into(),
                    "REVISION".into(),
                    "SYNC".into(),
                    "STATE".into(),
                    "PROBLEM".into(),
                ]];
                let current = st
                    .get("currentRevision")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                for i in st
                    .get("instances")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let problem = i.get("lastError").and_then(Value::as_str).unwrap_or("");
                    rows.push(vec![
                        s(i, "name").into(),
                        s(i, "link").into(),
                        s(i, "lastHeartbeat").into(),
                        i.get("appliedRevision")
                            .and_then(Value::as_u64)
                            .map_or("-".into(), |r| format!("{r}/{current}")),
                        s(i, "sync").into(),
                        s(i, "state").into(),
                        problem.into(),
                    ]);
                }
                let refused = st
                    .get("rejectedTokens")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                let refusals = if refused == 0 {
                    String::new()
                } else {
                    format!(
                        "\n{refused} link call(s) refused for their token since the control plane started; last at {} ({})",
                        s(st, "lastTokenRejectedAt"),
                        s(st, "lastTokenRejection")
                    )
                };
                format!(
                    "Gateway '{id}' (current revision {current})\n{}{refusals}",
                    table(&rows)
                )
            });
        }
        GatewayCommand::List => {
            let list = client
                .send(Method::GET, "/mgmt/gateways?$top=1000", None)
                .await?;
            print(&global, &list, |l| {
                let mut rows = vec![vec!["ID".into(), "LOCATION".into(), "DESCRIPTION".into()]];
                for g in l
                    .get("value")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    rows.push(vec![
                        s(g, "id").into(),
                        g.pointer("/locationData/name")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .into(),
                        s(g, "description").into(),
                    ]);
                }
                table(&rows)
            });
        }
    }
    Ok(())
}

pub async fn policy(global: Global, cmd: PolicyCommand) -> Result<(), Failure> {
    match cmd {
        PolicyCommand::Check { scope, files } => check_policies(&global, scope.as_deref(), &files),
        PolicyCommand::Set {
            global: is_global,
            product,
            api,
            operation,
            file,
        } => {
            let path = match (is_global, product, api, operation) {
                (true, None, None, None) => "/mgmt/policy".to_owned(),
                (false, Some(p), None, None) => format!("/mgmt/products/{p}/policy"),
                (false, None, Some(a), None) => format!("/mgmt/apis/{a}/policy"),
                (false, None, Some(a), Some(o)) => format!("/mgmt/apis/{a}/operations/{o}/policy"),
                _ => {
                    return Err(Failure::input(
                        "say which scope: --global, --product ID, --api ID or --api ID --operation OP",
                    ));
                }
            };
            let xml = std::fs::read_to_string(&file)
                .map_err(|e| Failure::input(format!("cannot read {}: {e}", file.display())))?;
            let client = Client::from_global(&global)?;
            client.send_xml(&path, xml).await.map_err(|mut f| {
                f.message = format!("{}: {}", file.display(), f.message);
                f
            })?;
            print(&global, &json!({"scope": path}), |_| {
                format!("Policy set at {}.", path.trim_start_matches("/mgmt"))
            });
            Ok(())
        }
    }
}

/// `gatehouse policy check`: compile each file as the gateways would, offline.
fn check_policies(global: &Global, scope: Option<&str>, files: &[PathBuf]) -> Result<(), Failure> {
    use gatehouse_policy::{Scope, Severity};
    let scope = match scope {
        None => None,
        Some(name) => Some(Scope::from_name(name).ok_or_else(|| {
            Failure::input(format!(
                "unknown scope '{name}': use global, product, api or operation"
            ))
        })?),
    };
    let mut invalid = 0;
    let mut report = Vec::new();
    for file in files {
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                invalid += 1;
                eprintln!("{}: cannot read it: {e}", file.display());
                continue;
            }
        };
        let diags = gatehouse_policy::compile::check_offline(&text, scope);
        if diags.iter().any(|d| d.severity == Severity::Error) {
            invalid += 1;
        }
        for d in &diags {
            let kind = if d.severity == Severity::Warning {
                "warning: "
            } else {
                ""
            };
            let line = format!(
                "{}:{}:{}: {kind}{}",
                file.display(),
                d.line,
                d.column,
                d.message
            );
            match global.output {
                Output::Text => println!("{line}"),
                Output::Json => report.push(json!({
                    "file": file.display().to_string(),
                    "line": d.line,
                    "column": d.column,
                    "severity": if d.severity == Severity::Warning { "warning" } else { "error" },
                    "message": d.message,
                })),
            }
        }
    }
    if global.output == Output::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    }
    if invalid > 0 {
        return Err(Failure::input(format!(
            "{invalid} of {} policy file(s) would not run",
            files.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_from_unix() {
        // Token expiry times are sent in this form.
        use gatehouse_model::reports::rfc3339;
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_798_675_200), "2026-12-31T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
