//! `validate-parameters`, `validate-headers` and `validate-status-code` against what an
//! imported OpenAPI document declares, through the real gateway and a real backend: under
//! `prevent` a message that breaks the document is stopped with Azure's answer, under `detect`
//! it goes through and the errors variable says why, and a message that keeps to it passes.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};

use crate::support::{Gatehouse, serve_loopback, set_policy};

/// `GET /items/{id}`: an integer id, an optional `limit` up to 50, an `X-Trace` of hex digits;
/// it answers 200 with a required integer `X-Rate`, or 404.
const ITEMS: &str = r##"{
  "openapi": "3.0.1",
  "info": {"title": "Items", "version": "1"},
  "paths": {
    "/items/{id}": {
      "parameters": [{"name": "id", "in": "path", "required": true,
                      "schema": {"type": "integer", "minimum": 1}}],
      "get": {"operationId": "get-item",
        "parameters": [
          {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 50}},
          {"name": "X-Trace", "in": "header", "schema": {"$ref": "#/components/schemas/Trace"}}
        ],
        "responses": {
          "200": {"description": "ok", "headers": {
            "X-Rate": {"required": true, "schema": {"type": "integer", "minimum": 0}}}},
          "404": {"description": "no such item"}
        }}
    }
  },
  "components": {"schemas": {"Trace": {"type": "string", "pattern": "^[a-f0-9]+$"}}}
}"##;

const MESSAGE_502: &str =
    "The request could not be processed due to an internal error. Contact the API owner.";

/// A backend that answers as the request asks: the status in `x-answer-status` (200 by
/// default), each `x-answer-header: name=value` as a response header. It counts calls.
#[derive(Clone, Default)]
struct Backend {
    calls: Arc<Mutex<Vec<hyper::HeaderMap>>>,
}

impl Backend {
    async fn start() -> (Self, String) {
        let backend = Self::default();
        let record = backend.clone();
        let addr = serve_loopback(move |req| record.clone().answer(req)).await;
        (backend, format!("http://{addr}"))
    }

    async fn answer(self, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
        let headers = req.headers().clone();
        let status = headers
            .get("x-answer-status")
            .and_then(|v| v.to_str().ok()?.parse::<u16>().ok())
            .unwrap_or(200);
        let mut resp = Response::new(Full::new(Bytes::from_static(
            b"{\"detail\": \"at Items.Get() in Items.cs:line 42\"}",
        )));
        *resp.status_mut() = StatusCode::from_u16(status).unwrap();
        resp.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        for h in headers.get_all("x-answer-header") {
            let (name, value) = h.to_str().unwrap().split_once('=').unwrap();
            resp.headers_mut().append(
                hyper::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        self.calls.lock().unwrap().push(headers);
        Ok(resp)
    }

    fn count(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    fn last(&self) -> hyper::HeaderMap {
        self.calls.lock().unwrap().last().cloned().unwrap()
    }
}

async fn items_api(gh: &Gatehouse, backend: &str) {
    gh.ok(
        "PUT",
        "/mgmt/apis/items",
        Some(json!({
            "path": "shop",
            "serviceUrl": backend,
            "subscriptionRequired": false,
            "import": {"format": "openapi", "value": ITEMS}
        })),
    )
    .await;
}

/// What a call returned.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    /// The `x-errors` header the policies under test set from the errors variable.
    fn errors(&self) -> Value {
        let text = self
            .headers
            .get("x-errors")
            .unwrap_or_else(|| panic!("no x-errors: {:?}", self.headers))
            .to_str()
            .unwrap();
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }
}

async fn get(gh: &Gatehouse, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut r = gh.http.get(gh.gateway(path));
    for (name, value) in headers {
        r = r.header(*name, *value);
    }
    let resp = r.send().await.unwrap();
    Answer {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        body: resp.text().await.unwrap(),
    }
}

/// Calls until `done` says the policy under test is in force, and returns that answer.
async fn get_until(
    gh: &Gatehouse,
    path: &str,
    headers: &[(&str, &str)],
    done: impl Fn(&Answer) -> bool,
) -> Answer {
    let start = Instant::now();
    loop {
        let a = get(gh, path, headers).await;
        if done(&a) {
            return a;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the policy never took effect on {path}: last {} {}",
            a.status,
            a.body
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

const OPERATION_POLICY: &str = "/mgmt/apis/items/operations/get-item/policy";

/// Sets the errors variable, as JSON, in the `x-errors` header of the answer.
const ERRORS_HEADER: &str = r#"<set-header name="x-errors" exists-action="override">
    <value>@(context.Variables.ContainsKey("errs") ? JsonConvert.SerializeObject(context.Variables["errs"]) : "[]")</value>
</set-header>"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn validate_parameters_blocks_detects_and_passes_by_the_imported_document() {
    let (backend, url) = Backend::start().await;
    let gh = Gatehouse::up("validate-parameters", &[]).await;
    items_api(&gh, &url).await;
    // Azure's own example: everything prevented, a few well-known headers ignored.
    set_policy(
        &gh,
        OPERATION_POLICY,
        r#"<policies><inbound><base />
            <validate-parameters specified-parameter-action="prevent" unspecified-parameter-action="prevent" errors-variable-name="errs">
                <headers><parameter name="Host" action="ignore" /><parameter name="User-Agent" action="ignore" /></headers>
            </validate-parameters>
        </inbound></policies>"#,
    )
    .await;

    let bad = get_until(&gh, "/shop/items/7?limit=80", &[], |a| a.status == 400).await;
    assert_eq!(
        bad.json(),
        json!({"statusCode": 400, "message": "The value of the query parameter limit does not conform to the definition. 80 is greater than 50"})
    );
    let before = backend.count();
    for (path, headers, message) in [
        (
            "/shop/items/0",
            vec![],
            "The value of the path parameter id does not conform to the definition. 0 is less than 1",
        ),
        (
            "/shop/items/one",
            vec![],
            "Value of the path parameter id couldn't be parsed according to the definition. 'one' is not an integer",
        ),
        (
            "/shop/items/7?debug=true",
            vec![],
            "Unspecified query parameter debug is not allowed.",
        ),
        (
            "/shop/items/7?limit=1&limit=2",
            vec![],
            "Request cannot contain multiple values for the query parameter limit.",
        ),
        (
            "/shop/items/7",
            vec![("x-trace", "not-hex")],
            "The value of the header X-Trace does not conform to the definition. does not match the pattern '^[a-f0-9]+$'",
        ),
        (
            "/shop/items/7",
            vec![("x-tenant", "blue")],
            "Unspecified header x-tenant is not allowed.",
        ),
    ] {
        let a = get(&gh, path, &headers).await;
        assert_eq!(a.status, 400, "{path} {headers:?}: {}", a.body);
        assert_eq!(
            a.json(),
            json!({"statusCode": 400, "message": message}),
            "{path}"
        );
    }
    assert_eq!(
        backend.count(),
        before,
        "a refused request reached the backend"
    );

    let ok = get(&gh, "/shop/items/7?limit=50", &[("x-trace", "00ff")]).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(backend.count(), before + 1);
    assert_eq!(backend.last()["x-trace"], "00ff");

    // Detect: the request goes through, and the errors variable says why.
    set_policy(
        &gh,
        OPERATION_POLICY,
        &format!(
            r#"<policies><inbound><base />
                <validate-parameters specified-parameter-action="detect" unspecified-parameter-action="detect" errors-variable-name="errs">
                    <headers unspecified-parameter-action="ignore" />
                </validate-parameters>
                {ERRORS_HEADER}
            </inbound></policies>"#
        ),
    )
    .await;
    get_until(&gh, "/shop/items/7?limit=80&debug=1", &[], |a| {
        a.status == 200
    })
    .await;
    let seen = backend.last();
    let errors: Value = serde_json::from_str(seen["x-errors"].to_str().unwrap()).unwrap();
    assert_eq!(
        errors,
        json!([
            {"Name": "limit", "Type": "QueryParameter", "ValidationRule": "IncorrectMessage",
             "Details": "Value of the query parameter limit does not conform to the definition. 80 is greater than 50",
             "Action": "detect"},
            {"Name": "debug", "Type": "QueryParameter", "ValidationRule": "Unspecified",
             "Details": "Unspecified query parameter debug is not allowed.", "Action": "detect"}
        ])
    );
    // A valid request records nothing.
    let ok = get(&gh, "/shop/items/7?limit=5", &[]).await;
    assert_eq!(ok.status, 200);
    assert_eq!(backend.last()["x-errors"], "[]");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn validate_headers_blocks_detects_and_passes_the_backends_headers() {
    let (backend, url) = Backend::start().await;
    let gh = Gatehouse::up("validate-headers", &[]).await;
    items_api(&gh, &url).await;
    set_policy(
        &gh,
        OPERATION_POLICY,
        r#"<policies><outbound><base />
            <validate-headers specified-header-action="prevent" unspecified-header-action="prevent" errors-variable-name="errs">
                <header name="Date" action="ignore" />
            </validate-headers>
        </outbound></policies>"#,
    )
    .await;

    let rate = |v: &'static str| ("x-answer-header", v);
    let bad = get_until(&gh, "/shop/items/7", &[rate("X-Rate=lots")], |a| {
        a.status == 502
    })
    .await;
    assert_eq!(
        bad.json(),
        json!({"statusCode": 502, "message": MESSAGE_502})
    );
    assert!(!bad.body.contains("Items.cs"), "the backend's body leaked");
    for headers in [
        vec![],
        vec![rate("X-Rate=-1")],
        vec![rate("X-Rate=3"), rate("X-Stack=at Items.Get()")],
    ] {
        let a = get(&gh, "/shop/items/7", &headers).await;
        assert_eq!(a.status, 502, "{headers:?}: {}", a.body);
        assert_eq!(a.json(), json!({"statusCode": 502, "message": MESSAGE_502}));
        assert!(a.headers.get("x-stack").is_none());
    }
    let ok = get(&gh, "/shop/items/7", &[rate("X-Rate=3")]).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.headers["x-rate"], "3");
    // A 404 declares no header: X-Rate is unspecified there.
    let a = get(
        &gh,
        "/shop/items/7",
        &[("x-answer-status", "404"), rate("X-Rate=3")],
    )
    .await;
    assert_eq!(a.status, 502, "{}", a.body);
    let a = get(&gh, "/shop/items/7", &[("x-answer-status", "404")]).await;
    assert_eq!(a.status, 404, "{}", a.body);

    // Detect: the response goes out, and the errors variable says why.
    set_policy(
        &gh,
        OPERATION_POLICY,
        &format!(
            r#"<policies><outbound><base />
                <validate-headers specified-header-action="detect" unspecified-header-action="detect" errors-variable-name="errs">
                    <header name="date" action="ignore" />
                </validate-headers>
                {ERRORS_HEADER}
            </outbound></policies>"#
        ),
    )
    .await;
    let a = get_until(
        &gh,
        "/shop/items/7",
        &[rate("X-Rate=lots"), rate("X-Stack=at Items.Get()")],
        |a| a.status == 200,
    )
    .await;
    assert_eq!(
        a.errors(),
        json!([
            {"Name": "X-Rate", "Type": "ResponseHeader", "ValidationRule": "IncorrectMessage",
             "Details": "Value of the header X-Rate cannot be parsed according to the definition. 'lots' is not an integer",
             "Action": "detect"},
            {"Name": "x-stack", "Type": "ResponseHeader", "ValidationRule": "Unspecified",
             "Details": "Unspecified header x-stack is not allowed.", "Action": "detect"}
        ])
    );
    assert_eq!(a.headers["x-stack"], "at Items.Get()");
    let ok = get(&gh, "/shop/items/7", &[rate("X-Rate=3")]).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.errors(), json!([]));
    assert!(backend.count() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn validate_status_code_blocks_detects_and_passes_the_backends_status() {
    let (backend, url) = Backend::start().await;
    let gh = Gatehouse::up("validate-status-code", &[]).await;
    items_api(&gh, &url).await;
    set_policy(
        &gh,
        OPERATION_POLICY,
        r#"<policies><outbound><base />
            <validate-status-code unspecified-status-code-action="prevent" errors-variable-name="errs">
                <status-code code="429" action="ignore" />
            </validate-status-code>
        </outbound></policies>"#,
    )
    .await;

    let status = |s: &'static str| [("x-answer-status", s)];
    let bad = get_until(&gh, "/shop/items/7", &status("500"), |a| a.status == 502).await;
    assert_eq!(
        bad.json(),
        json!({"statusCode": 502, "message": MESSAGE_502})
    );
    assert!(
        !bad.body.contains("Items.cs"),
        "the backend's stack trace leaked"
    );
    // Declared, or allowed by its own override: through as the backend answered.
    for s in ["200", "404", "429"] {
        let a = get(&gh, "/shop/items/7", &status(s)).await;
        assert_eq!(a.status.to_string(), s, "{}", a.body);
        assert!(a.body.contains("Items.cs"));
    }
    let a = get(&gh, "/shop/items/7", &status("503")).await;
    assert_eq!(a.status, 502);

    // Detect: the 500 goes out, and the errors variable says why.
    set_policy(
        &gh,
        OPERATION_POLICY,
        &format!(
            r#"<policies><outbound><base />
                <validate-status-code unspecified-status-code-action="detect" errors-variable-name="errs" />
                {ERRORS_HEADER}
            </outbound></policies>"#
        ),
    )
    .await;
    let a = get_until(&gh, "/shop/items/7", &status("500"), |a| a.status == 500).await;
    assert_eq!(
        a.errors(),
        json!([{"Name": "500", "Type": "StatusCode", "ValidationRule": "Unspecified",
                "Details": "Response status code 500 is not allowed.", "Action": "detect"}])
    );
    let ok = get(&gh, "/shop/items/7", &[]).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.errors(), json!([]));
    assert!(backend.count() > 0);
}

/// `gatehouse policy check` accepts the three offline, where no OpenAPI document is known, and
/// names each wrong value with its line and column.
#[test]
fn policy_check_accepts_them_offline_and_points_at_wrong_values() {
    let dir = crate::support::temp_dir("validation-check");
    let good = dir.join("good.xml");
    std::fs::write(
        &good,
        r#"<policies>
  <inbound>
    <base />
    <validate-parameters specified-parameter-action="prevent" unspecified-parameter-action="{{parameters-mode}}" errors-variable-name="requestParametersValidation">
      <headers specified-parameter-action="detect" unspecified-parameter-action="detect">
        <parameter name="Authorization" action="prevent" />
        <parameter name="User-Agent" action="ignore" />
      </headers>
      <query specified-parameter-action="@(context.Request.Headers.GetValueOrDefault(&quot;x-mode&quot;, &quot;prevent&quot;))" />
      <path specified-parameter-action="prevent" />
    </validate-parameters>
  </inbound>
  <outbound>
    <base />
    <validate-headers specified-header-action="ignore" unspecified-header-action="prevent" errors-variable-name="responseHeadersValidation">
      <header name="Date" action="ignore" />
    </validate-headers>
    <validate-status-code unspecified-status-code-action="prevent" errors-variable-name="responseStatusCodeValidation">
      <status-code code="404" action="ignore" />
    </validate-status-code>
  </outbound>
  <on-error>
    <base />
    <validate-status-code unspecified-status-code-action="detect" />
  </on-error>
</policies>"#,
    )
    .unwrap();
    let out = std::process::Command::new(crate::support::BIN)
        .args(["policy", "check"])
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    let bad = dir.join("bad.xml");
    std::fs::write(
        &bad,
        "<policies>\n  <inbound>\n    <validate-parameters specified-parameter-action=\"block\" unspecified-parameter-action=\"ignore\" />\n  </inbound>\n  <outbound>\n    <validate-headers specified-header-action=\"ignore\" unspecified-header-action=\"ignore\">\n      <header name=\"x\" action=\"sometimes\" />\n    </validate-headers>\n    <validate-status-code unspecified-status-code-action=\"prevent\">\n      <status-code code=\"2000\" action=\"ignore\" />\n    </validate-status-code>\n  </outbound>\n</policies>\n",
    )
    .unwrap();
    let out = std::process::Command::new(crate::support::BIN)
        .args(["policy", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "bad.xml:3:26: 'specified-parameter-action' must be one of ignore, detect, prevent, not 'block'",
        "bad.xml:7:24: 'action' must be one of ignore, detect, prevent, not 'sometimes'",
        "bad.xml:10:20: 'code' must be a whole number from 100 to 599, not '2000'",
    ] {
        assert!(text.contains(expected), "{expected} not in {text}");
    }
    std::fs::remove_dir_all(dir).ok();
}
