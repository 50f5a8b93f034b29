//! The management API against its own OpenAPI document.
//!
//! Starts `gatehouse up` on free loopback ports, checks that `/mgmt/openapi.json` is an OpenAPI 3
//! document describing every management route, validates it with `openapi-spec-validator`, and
//! lets schemathesis fuzz every operation with the admin token and every check it has
//! (`--checks all`): no 5xx; only documented status codes, content types and headers; response
//! bodies that conform to their schemas; every request the document calls valid accepted
//! (positive data), every request it calls invalid refused (negative data); what `DELETE` removed
//! gone, what `PUT` created there; no operation that works without the token.
//!
//! Schemathesis learns the document's own formats (policies, PEM certificates, API
//! descriptions, connection strings) and the portal's colour rule from
//! `scripts/schemathesis_hooks.py`, the file `schemathesis.toml` names too.
//!
//! The tools come from `$GATEHOUSE_SCHEMATHESIS` (the `schemathesis` executable; the validator is
//! looked for next to it), which `scripts/test` sets up. Without it the fuzzing is skipped with a
//! note, except under CI (`$CI` set), where that is a failure.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Examples per operation and phase: enough to find schema drift, small enough for the whole
/// run (every check, about 100 operations, one worker) to take about a minute and a half on an
/// idle 2-core machine and well under three on a loaded one.
const MAX_EXAMPLES: &str = "25";
const SCHEMATHESIS_TIMEOUT: Duration = Duration::from_secs(300);

/// Every route of the management API; each must be described by the document.
const ROUTES: &[&str] = &[
    "/mgmt/apis",
    "/mgmt/apis/{apiId}",
    "/mgmt/apis/{apiId}/openapi",
    "/mgmt/apis/{apiId}/operations",
    "/mgmt/apis/{apiId}/operations/{operationId}",
    "/mgmt/products",
    "/mgmt/products/{productId}",
    "/mgmt/products/{productId}/apis",
    "/mgmt/products/{productId}/apis/{apiId}",
    "/mgmt/subscriptions",
    "/mgmt/subscriptions/{subscriptionId}",
    "/mgmt/subscriptions/{subscriptionId}/listSecrets",
    "/mgmt/subscriptions/{subscriptionId}/regeneratePrimaryKey",
    "/mgmt/subscriptions/{subscriptionId}/regenerateSecondaryKey",
    "/mgmt/named-values",
    "/mgmt/named-values/{namedValueId}",
    "/mgmt/named-values/{namedValueId}/listValue",
    "/mgmt/backends",
    "/mgmt/backends/{backendId}",
    "/mgmt/gateways",
    "/mgmt/gateways/{gatewayId}",
    "/mgmt/gateways/{gatewayId}/apis",
    "/mgmt/gateways/{gatewayId}/apis/{apiId}",
    "/mgmt/gateways/{gatewayId}/hostnameConfigurations",
    "/mgmt/gateways/{gatewayId}/hostnameConfigurations/{hcId}",
    "/mgmt/gateways/{gatewayId}/certificateAuthorities",
    "/mgmt/gateways/{gatewayId}/certificateAuthorities/{certificateId}",
    "/mgmt/certificates",
    "/mgmt/certificates/{certificateId}",
    "/mgmt/policy-fragments",
    "/mgmt/policy-fragments/{fragmentId}",
    "/mgmt/reports/byApi",
    "/mgmt/reports/byOperation",
    "/mgmt/reports/byProduct",
    "/mgmt/reports/bySubscription",
    "/mgmt/reports/byTime",
    "/mgmt/policy",
    "/mgmt/apis/{apiId}/policy",
    "/mgmt/apis/{apiId}/operations/{operationId}/policy",
    "/mgmt/products/{productId}/policy",
    "/mgmt/products/{productId}/groups",
    "/mgmt/products/{productId}/groups/{groupId}",
    "/mgmt/gateways/{gatewayId}/generateToken",
    "/mgmt/gateways/{gatewayId}/regenerateKey",
    "/mgmt/gateways/{gatewayId}/listKeys",
    "/mgmt/gateways/{gatewayId}/status",
    "/mgmt/loggers",
    "/mgmt/loggers/{loggerId}",
    "/mgmt/users",
    "/mgmt/users/{userId}",
    "/mgmt/groups",
    "/mgmt/groups/{groupId}",
    "/mgmt/groups/{groupId}/users",
    "/mgmt/groups/{groupId}/users/{userId}",
    "/mgmt/portal/settings",
];

/// The operations of the document, as `METHOD /path`.
fn operations(spec: &serde_json::Value) -> Vec<String> {
    let methods = ["get", "put", "post", "patch", "delete"];
    let mut out = Vec::new();
    for (path, item) in spec["paths"].as_object().into_iter().flatten() {
        for method in methods {
            if item.get(method).is_some() {
                out.push(format!("{} {path}", method.to_ascii_uppercase()));
            }
        }
    }
    out
}

/// What a schemathesis run reported, read from its closing summary.
#[derive(Debug, Default, PartialEq)]
struct Summary {
    /// `Tested: N` of `API Operations`.
    tested: Option<usize>,
    /// `N generated` of `Test cases`.
    generated: Option<usize>,
    /// `N passed` of `Test cases` (absent when some failed).
    passed: Option<usize>,
    /// The closing line, such as `==== 1 warning in 86.46s ====` or `==== 2 failures ... ====`.
    closing: String,
}

impl Summary {
    fn read(output: &str) -> Summary {
        let number_after = |label: &str| {
            output.lines().find_map(|l| {
                let rest = l.trim().strip_prefix(label)?;
                rest.trim().split(['/', ' ']).next()?.parse().ok()
            })
        };
        let cases = output
            .lines()
            .map(str::trim)
            .find(|l| {
                l.split_once(' ')
                    .is_some_and(|(_, r)| r.starts_with("generated"))
            })
            .unwrap_or_default();
        let count = |word: &str| {
            cases.split(',').find_map(|part| {
                let (n, rest) = part.trim().split_once(' ')?;
                (rest == word).then(|| n.parse().ok()).flatten()
            })
        };
        let (generated, passed) = (count("generated"), count("passed"));
        let closing = output
            .lines()
            .rev()
            .find(|l| l.starts_with("====") && l.trim_end().ends_with('='))
            .unwrap_or_default()
            .trim_matches(|c: char| c == '=' || c.is_whitespace())
            .to_owned();
        Summary {
            tested: number_after("Tested:"),
            generated,
            passed,
            closing,
        }
    }

    /// Problems the summary shows: failures, errors, or a run that tested nothing.
    fn problems(&self, operations: usize) -> Vec<String> {
        let mut out = Vec::new();
        for bad in ["failure", "error"] {
            if self.closing.contains(bad) {
                out.push(format!("the run ended with \"{}\"", self.closing));
                break;
            }
        }
        if self.closing.is_empty() {
            out.push("the run printed no closing summary".to_owned());
        }
        if self.passed.is_none() || self.passed != self.generated {
            out.push(format!(
                "{:?} of {:?} test cases passed",
                self.passed, self.generated
            ));
        }
        match self.tested {
            Some(n) if n >= operations => {}
            other => out.push(format!(
                "it tested {other:?} operations of the {operations} the document has"
            )),
        }
        if self.generated.unwrap_or(0) == 0 {
            out.push("it generated no test cases".to_owned());
        }
        out
    }
}

#[test]
fn the_summary_of_a_run_is_read_and_judged() {
    let passed = "API Operations:\n  Selected: 106/106\n  Tested: 106\n\nTest cases:\n  \
                  9325 generated, 9325 passed, 186 skipped\n\n\
                  ========================= 1 warning in 86.46s =========================\n";
    let summary = Summary::read(passed);
    assert_eq!(summary.tested, Some(106));
    assert_eq!(summary.generated, Some(9325));
    assert_eq!(summary.passed, Some(9325));
    assert!(summary.problems(106).is_empty(), "{summary:?}");
    assert!(
        !summary.problems(107).is_empty(),
        "an operation left out is a problem"
    );
    let failed = "  Tested: 106\n  8057 generated, 15 found 15 unique failures, 136 skipped\n\
                  ================== 15 failures, 1 error, 1 warning in 70.30s ==================\n";
    assert!(!Summary::read(failed).problems(106).is_empty());
    let errored = "  Tested: 106\n  9000 generated\n\
                   ========================= 1 error, 1 warning in 86.46s =========================\n";
    assert!(!Summary::read(errored).problems(106).is_empty());
    assert!(
        !Summary::read("Traceback (most recent call last):\n")
            .problems(1)
            .is_empty()
    );
}

/// A `gatehouse up` child process in its own data directory; killed (and the directory removed,
/// unless the test failed) when dropped, also when the test panics.
struct Server {
    child: Child,
    dir: PathBuf,
    control: String,
}

impl Server {
    fn start() -> Server {
        let dir = std::env::temp_dir().join(format!(
            "gatehouse-schemathesis-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let (control_port, gateway_port) = free_ports();
        let control = format!("127.0.0.1:{control_port}");
        let log = std::fs::File::create(dir.join("server.log")).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
        cmd.arg("up")
            .arg("--data")
            .arg(dir.join("data"))
            .arg("--listen")
            .arg(&control)
            .arg("--gateway-listen")
            .arg(format!("127.0.0.1:{gateway_port}"))
            .arg("--gateway-admin-listen")
            .arg("127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // Settings from the developer's shell must not change what this test starts.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("GATEHOUSE_") {
                cmd.env_remove(name);
            }
        }
        let child = cmd.spawn().unwrap();
        let mut server = Server {
            child,
            dir,
            control,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "gatehouse up exited with {status} before serving:\n{}",
                    self.log()
                );
            }
            if let Ok((200, _)) = http_get(&self.control, "/mgmt/openapi.json") {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "gatehouse up did not serve /mgmt/openapi.json within 30 s:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn admin_token(&self) -> String {
        std::fs::read_to_string(self.dir.join("data").join("admin-token"))
            .unwrap()
            .trim()
            .to_owned()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("test files kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Two distinct free loopback ports.
fn free_ports() -> (u16, u16) {
    let a = TcpListener::bind("127.0.0.1:0").unwrap();
    let b = TcpListener::bind("127.0.0.1:0").unwrap();
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}

/// A plain HTTP/1.0 GET: the status and the body.
fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_owned()))
}

/// Runs a tool to completion (at most `timeout`), output to a file; returns success and output.
fn run_tool(mut cmd: Command, dir: &Path, name: &str, timeout: Duration) -> (bool, String) {
    let out_path = dir.join(format!("{name}.out"));
    let out = std::fs::File::create(&out_path).unwrap();
    cmd.current_dir(dir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = std::fs::read_to_string(&out_path).unwrap_or_default();
    match status {
        Some(s) => (s.success(), output),
        None => (
            false,
            format!("{output}\n[{name} killed after {} s]", timeout.as_secs()),
        ),
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Structural checks of the document that need no external tool.
fn check_document(spec: &serde_json::Value) {
    let version = spec["openapi"].as_str().unwrap_or_default();
    assert!(
        version.starts_with("3."),
        "/mgmt/openapi.json is not OpenAPI 3.x: openapi = {version:?}"
    );
    let paths = spec["paths"]
        .as_object()
        .expect("the document has no paths");
    let missing: Vec<&str> = ROUTES
        .iter()
        .copied()
        .filter(|r| !paths.contains_key(*r))
        .collect();
    assert!(
        missing.is_empty(),
        "/mgmt/openapi.json does not describe these routes: {missing:?}"
    );
    let mut ids = std::collections::BTreeMap::new();
    for (path, item) in paths {
        for (method, op) in item.as_object().into_iter().flatten() {
            let Some(responses) = op.get("responses").and_then(|r| r.as_object()) else {
                continue;
            };
            if let Some(id) = op["operationId"].as_str()
                && let Some(other) = ids.insert(id.to_owned(), format!("{method} {path}"))
            {
                panic!("operationId {id:?} is used by both {other} and {method} {path}");
            }
            for (status, response) in responses {
                assert!(
                    response.get("description").is_some() || response.get("$ref").is_some(),
                    "{method} {path}: response {status} has no description"
                );
            }
        }
    }
}

#[test]
fn management_api_conforms_to_its_openapi_document() {
    let server = Server::start();
    let token = server.admin_token();
    assert!(token.len() >= 16, "the admin token is too short: {token:?}");

    let (status, body) = http_get(&server.control, "/mgmt/openapi.json").unwrap();
    assert_eq!(status, 200, "GET /mgmt/openapi.json: {body}");
    let spec: serde_json::Value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("/mgmt/openapi.json is not JSON: {e}\n{body}"));
    check_document(&spec);

    let Some(schemathesis) = std::env::var_os("GATEHOUSE_SCHEMATHESIS").map(PathBuf::from) else {
        if std::env::var_os("CI").is_some() {
            panic!("set GATEHOUSE_SCHEMATHESIS; scripts/test does it");
        }
        eprintln!(
            "note: GATEHOUSE_SCHEMATHESIS is not set, so the management API was not fuzzed; \
             run scripts/test, or set it to the schemathesis executable"
        );
        return;
    };
    assert!(
        is_executable(&schemathesis),
        "GATEHOUSE_SCHEMATHESIS={} is not an executable file; scripts/test installs it",
        schemathesis.display()
    );

    // The document itself, against the OpenAPI 3.x meta-schema.
    let spec_file = server.dir.join("openapi.json");
    std::fs::write(&spec_file, &body).unwrap();
    let validator = schemathesis.with_file_name("openapi-spec-validator");
    if is_executable(&validator) {
        let mut cmd = Command::new(&validator);
        cmd.arg(&spec_file);
        let (ok, output) = run_tool(
            cmd,
            &server.dir,
            "openapi-spec-validator",
            Duration::from_secs(60),
        );
        assert!(
            ok,
            "openapi-spec-validator rejects /mgmt/openapi.json:\n{output}"
        );
    } else if std::env::var_os("CI").is_some() {
        panic!(
            "{} is missing; scripts/test installs it from scripts/requirements-test.txt",
            validator.display()
        );
    } else {
        eprintln!(
            "note: {} is missing; the document was not validated",
            validator.display()
        );
    }

    let hooks = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/schemathesis_hooks.py");
    assert!(hooks.is_file(), "{} is missing", hooks.display());
    let url = format!("http://{}/mgmt/openapi.json", server.control);
    let mut cmd = Command::new(&schemathesis);
    cmd.args(["run", &url])
        .env("SCHEMATHESIS_HOOKS", &hooks)
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--checks", "all"])
        .args(["--max-examples", MAX_EXAMPLES])
        // Derandomized: the same cases on every run (schemathesis ignores `--seed` then).
        .arg("--generation-deterministic")
        // One worker: CPython 3.11's `ast` is not thread-safe (gh-106905), and hypothesis
        // parses the hooks' lambdas with it, so two workers now and then end in a SystemError.
        .args(["--workers", "1"])
        .args(["--request-timeout", "10"])
        // The gatehouse log says what a failing request did; the report keeps the token out.
        .args(["--output-sanitize", "true"])
        .arg("--no-color");
    let started = Instant::now();
    let (ok, output) = run_tool(cmd, &server.dir, "schemathesis", SCHEMATHESIS_TIMEOUT);
    let problems = Summary::read(&output).problems(operations(&spec).len());
    assert!(
        ok && problems.is_empty(),
        "schemathesis found problems in the management API (exit status {}; {}):\n{output}\n\
         --- gatehouse log ---\n{}",
        if ok { "0" } else { "not 0" },
        problems.join("; "),
        server.log()
    );
    eprintln!(
        "schemathesis passed in {:.0} s:\n{}",
        started.elapsed().as_secs_f64(),
        output
            .lines()
            .rev()
            .take(12)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
