//! Runs the expression conformance vectors against the expression engine, through a `Context`
//! built from the vectors' `context`. The vectors are kept in the repository
//! (`tests/fixtures/expressions.json`, a copy of the team's `shared/conformance/`), so a clone
//! tests itself; where `shared/` stands beside the repository, the copy must match it.
//!
//! Every `core` vector must pass exactly: its value (strings as strings, numbers numerically,
//! booleans, null), or a compile error, or a run-time error. `full` vectors run too; their
//! pass count is reported but not required.

use std::borrow::Cow;
use std::path::PathBuf;
use std::time::SystemTime;

use gatehouse_expr::{self as expr, Budget, Context, Entity, Field, Message, Value};
use serde_json::Value as J;

/// The repository's copy of the vectors, or the file named by `GATEHOUSE_CONFORMANCE`.
fn vectors_path() -> PathBuf {
    std::env::var_os("GATEHOUSE_CONFORMANCE").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/expressions.json"),
        PathBuf::from,
    )
}

/// Where the team's vectors stand when `shared/` is beside the repository (as in CI).
fn shared_vectors() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/expressions.json")
}

#[test]
fn the_copy_matches_the_shared_vectors() {
    let shared = shared_vectors();
    let Ok(theirs) = std::fs::read(&shared) else {
        // A clone without `shared/` beside it: the copy is all there is.
        return;
    };
    let ours = std::fs::read(vectors_path()).expect("the repository's vectors");
    assert!(
        ours == theirs,
        "tests/fixtures/expressions.json differs from {}: copy the new vectors in",
        shared.display()
    );
}

/// The request described by the vectors' `context` block.
struct Host {
    ctx: J,
}

impl Host {
    fn s<'a>(&'a self, path: &[&str]) -> Option<&'a str> {
        let mut v = &self.ctx;
        for p in path {
            v = v.get(p)?;
        }
        v.as_str()
    }

    fn headers_of(&self, message: Message) -> Vec<(String, Vec<String>)> {
        let block = match message {
            Message::Request => "request",
            Message::Response => "response",
        };
        self.ctx[block]["headers"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, vs)| {
                        let values = match vs {
                            J::Array(items) => items
                                .iter()
                                .filter_map(|v| v.as_str().map(str::to_owned))
                                .collect(),
                            J::String(s) => vec![s.clone()],
                            _ => Vec::new(),
                        };
                        (k.clone(), values)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn entity_block(entity: Entity) -> &'static str {
        match entity {
            Entity::Subscription => "subscription",
            Entity::User => "user",
            Entity::Product => "product",
            Entity::Api => "api",
            Entity::Operation => "operation",
            Entity::Deployment => "deployment",
            _ => "lastError",
        }
    }
}

fn to_value(v: &J) -> Value {
    match v {
        J::Null => Value::Null,
        J::Bool(b) => Value::Bool(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => i32::try_from(i).map_or(Value::Long(i), Value::Int),
            None => Value::Double(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => Value::from(s.as_str()),
        other => Value::Json(expr::Json::from_serde(other)),
    }
}

impl Context for Host {
    fn request_method(&self) -> Cow<'_, str> {
        Cow::Borrowed(self.s(&["request", "method"]).unwrap_or("GET"))
    }

    fn request_url(&self) -> Cow<'_, str> {
        Cow::Borrowed(self.s(&["request", "url"]).unwrap_or(""))
    }

    fn ip_address(&self) -> Cow<'_, str> {
        Cow::Borrowed(self.s(&["request", "ipAddress"]).unwrap_or(""))
    }

    fn header(&self, message: Message, name: &str) -> Option<String> {
        let values: Vec<String> = self
            .headers_of(message)
            .into_iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .flat_map(|(_, vs)| vs)
            .collect();
        (!values.is_empty()).then(|| values.join(","))
    }

    fn headers(&self, message: Message) -> Vec<(String, String)> {
        self.headers_of(message)
            .into_iter()
            .map(|(k, vs)| (k, vs.join(",")))
            .collect()
    }

    fn has_body(&self, message: Message) -> bool {
        self.body(message, true).is_some()
    }

    fn body(&self, message: Message, _preserve_content: bool) -> Option<Cow<'_, [u8]>> {
        let block = if message == Message::Request {
            "request"
        } else {
            "response"
        };
        self.s(&[block, "body"])
            .map(|b| Cow::Borrowed(b.as_bytes()))
    }

    fn matched_parameter(&self, name: &str) -> Option<String> {
        self.s(&["request", "matchedParameters", name])
            .map(str::to_owned)
    }

    fn matched_parameters(&self) -> Vec<(String, String)> {
        self.ctx["request"]["matchedParameters"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn response_status(&self) -> Option<(u16, Cow<'_, str>)> {
        let code = self.ctx["response"]["statusCode"].as_u64()?;
        let reason = self.s(&["response", "statusReason"]).unwrap_or("");
        Some((u16::try_from(code).ok()?, Cow::Borrowed(reason)))
    }

    fn variable(&self, name: &str) -> Option<Value> {
        self.ctx["variables"].get(name).map(to_value)
    }

    fn has(&self, entity: Entity) -> bool {
        self.ctx
            .get(Self::entity_block(entity))
            .is_some_and(J::is_object)
    }

    fn field(&self, field: Field) -> Option<Cow<'_, str>> {
        let (block, key) = match field {
            Field::SubscriptionId => ("subscription", "id"),
            Field::SubscriptionName => ("subscription", "name"),
            Field::SubscriptionKey => ("subscription", "key"),
            Field::SubscriptionPrimaryKey => ("subscription", "primaryKey"),
            Field::SubscriptionSecondaryKey => ("subscription", "secondaryKey"),
            Field::UserId => ("user", "id"),
            Field::UserEmail => ("user", "email"),
            Field::UserFirstName => ("user", "firstName"),
            Field::UserLastName => ("user", "lastName"),
            Field::ProductId => ("product", "id"),
            Field::ProductName => ("product", "name"),
            Field::ApiId => ("api", "id"),
            Field::ApiName => ("api", "name"),
            Field::ApiPath => ("api", "path"),
            Field::ApiVersion => ("api", "version"),
            Field::ApiServiceUrl => ("api", "serviceUrl"),
            Field::OperationId => ("operation", "id"),
            Field::OperationName => ("operation", "name"),
            Field::OperationMethod => ("operation", "method"),
            Field::OperationUrlTemplate => ("operation", "urlTemplate"),
            Field::DeploymentRegion => ("deployment", "region"),
            Field::DeploymentGatewayId => ("deployment", "gatewayId"),
            Field::DeploymentServiceName => ("deployment", "serviceName"),
            Field::LastErrorSource => ("lastError", "source"),
            Field::LastErrorReason => ("lastError", "reason"),
            Field::LastErrorMessage => ("lastError", "message"),
            Field::LastErrorScope => ("lastError", "scope"),
            Field::LastErrorSection => ("lastError", "section"),
            Field::LastErrorPath => ("lastError", "path"),
            Field::LastErrorPolicyId => ("lastError", "policyId"),
            _ => return None,
        };
        self.s(&[block, key]).map(Cow::Borrowed)
    }

    fn request_id(&self) -> uuid::Uuid {
        self.s(&["requestId"])
            .and_then(|s| uuid::Uuid::parse_str(s).ok())
            .unwrap_or_default()
    }

    fn timestamp(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// Compares a result with a vector's `expect`, per tests/fixtures/expressions-README.md.
fn matches(value: &Value, expect: &J) -> bool {
    match expect {
        J::Null => value.is_null(),
        J::Bool(b) => matches!(value, Value::Bool(v) if v == b),
        J::String(s) => matches!(value, Value::String(v) if **v == **s),
        J::Number(n) => {
            let want = n.as_f64().unwrap_or(f64::NAN);
            let got = match value {
                Value::Int(i) => f64::from(*i),
                Value::Long(i) => *i as f64,
                Value::Double(d) => *d,
                _ => return false,
            };
            got == want || (got - want).abs() <= 1e-9 * want.abs().max(1.0)
        }
        _ => false,
    }
}

/// Runs one case; `Ok` says what happened, `Err` describes the mismatch.
fn check(host: &Host, case: &J) -> Result<String, String> {
    let src = case["expr"].as_str().ok_or("case without expr")?;
    let compiled = expr::compile(src);
    match case.get("error").and_then(J::as_str) {
        Some("compile") => match compiled {
            Err(e) if e.offset <= src.len() && e.line >= 1 && e.column >= 1 => {
                Ok(format!("compile error: {e}"))
            }
            Err(e) => Err(format!("compile error with a bad position: {e:?}")),
            Ok(_) => Err("compiled, expected a compile error".into()),
        },
        Some("runtime") => {
            let e =
                compiled.map_err(|e| format!("compile error, expected a run-time error: {e}"))?;
            match e.eval(host, &mut Budget::default()) {
                Err(err) if !err.reason.is_empty() && !err.message.is_empty() => {
                    Ok(format!("{}: {}", err.reason, err.message))
                }
                Err(err) => Err(format!("run-time error without reason/message: {err:?}")),
                Ok(v) => Err(format!("evaluated to {v:?}, expected a run-time error")),
            }
        }
        Some(other) => Err(format!("unknown error kind {other}")),
        None => {
            let e = compiled.map_err(|e| format!("compile error: {e}"))?;
            let v = e
                .eval(host, &mut Budget::default())
                .map_err(|e| format!("run-time error: {e}"))?;
            if matches(&v, &case["expect"]) {
                Ok(format!("{v:?}"))
            } else {
                Err(format!("got {v:?}, expected {}", case["expect"]))
            }
        }
    }
}

#[test]
fn expression_vectors() {
    run_vectors(&vectors_path(), false);
}

/// The library vectors (`tests/fixtures/members.json`, this crate's own, in the same format):
/// one or more per .NET member the expressions support beyond the conformance vectors. All
/// must pass.
#[test]
fn library_member_vectors() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/members.json");
    run_vectors(&path, true);
}

/// Runs a vectors file; `all` requires every case to pass, whatever its level.
#[allow(clippy::expect_used, clippy::panic)]
fn run_vectors(path: &std::path::Path, all: bool) {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let doc: J = serde_json::from_str(&text).expect("vectors are JSON");
    let host = Host {
        ctx: doc["context"].clone(),
    };
    let cases = doc["cases"].as_array().expect("cases");

    // GATEHOUSE_CONFORMANCE_VERBOSE=1 lists every case.
    let verbose = std::env::var_os("GATEHOUSE_CONFORMANCE_VERBOSE").is_some();
    let (mut core, mut core_ok, mut full, mut full_ok) = (0, 0, 0, 0);
    let mut core_failures = Vec::new();
    let mut full_failures = Vec::new();
    for case in cases {
        let level = case["level"].as_str().unwrap_or("core");
        let src = case["expr"].as_str().unwrap_or_default();
        let result = check(&host, case);
        if verbose {
            match &result {
                Ok(what) => println!("{level:4} ok   {src}\n           {what}"),
                Err(why) => println!("{level:4} FAIL {src}\n           {why}"),
            }
        }
        if level == "full" {
            full += 1;
            match result {
                Ok(_) => full_ok += 1,
                Err(e) => full_failures.push(format!("{src}\n    {e}")),
            }
        } else {
            core += 1;
            match result {
                Ok(_) => core_ok += 1,
                Err(e) => core_failures.push(format!("{src}\n    {e}")),
            }
        }
    }
    println!("conformance: core {core_ok}/{core}, full {full_ok}/{full}");
    for f in &full_failures {
        println!("  full (not required): {f}");
    }
    if all {
        core_failures.extend(full_failures);
    }
    assert!(
        core_failures.is_empty(),
        "vectors failing in {} ({}):\n  {}",
        path.display(),
        core_failures.len(),
        core_failures.join("\n  ")
    );
}
