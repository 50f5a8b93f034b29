//! Azure policies brought unchanged (issue #15): the lenient text Azure accepts inside
//! expressions runs through the real gateway, and what is wrong is reported at its own line and
//! column, by `gatehouse policy check` and by the management API.

use std::path::Path;
use std::time::Duration;

use crate::support::{Backend, Gatehouse, put_policy, set_policy};

/// Runs `gatehouse policy check` with `args`.
fn policy_check(args: &[&str], files: &[&Path]) -> std::process::Output {
    std::process::Command::new(crate::support::BIN)
        .arg("policy")
        .arg("check")
        .args(args)
        .args(files)
        .output()
        .unwrap()
}

/// Azure's own forms: a `"` inside a `"`-quoted attribute's expression, `"` in element text,
/// and raw `<`, `>`, `&&` in an expression.
const LENIENT: &str = r#"<policies>
  <inbound>
    <base />
    <set-variable name="copied" value="@(context.Request.Headers.GetValueOrDefault("X-In", "none"))" />
    <set-header name="X-Copied" exists-action="override">
      <value>@((string)context.Variables["copied"] + "!")</value>
    </set-header>
    <set-header name="X-Direct" exists-action="override">
      <value>@(context.Request.Headers.GetValueOrDefault("X-In", ""))</value>
    </set-header>
    <set-header name="X-Compare" exists-action="override">
      <value>@(1 < 2 && 3 > 2 ? "yes" : "no")</value>
    </set-header>
  </inbound>
</policies>"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lenient_expressions_are_accepted_and_evaluated_through_the_gateway() {
    let backend = Backend::start().await;
    let gh = Gatehouse::up("azure-lenient", &[]).await;
    gh.simple_api("az", "az", &backend.url(), true).await;
    set_policy(&gh, "/mgmt/apis/az/policy", LENIENT).await;

    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let r = gh
            .http
            .get(gh.gateway("/az/thing"))
            .header("X-In", "from-client")
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            let seen = backend.last();
            if seen.headers.contains_key("x-copied") {
                assert_eq!(seen.headers["x-copied"], "from-client!");
                assert_eq!(seen.headers["x-direct"], "from-client");
                assert_eq!(seen.headers["x-compare"], "yes");
                break;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the policy never took effect: {}",
            r.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The same file passes `policy check`.
    let dir = crate::support::temp_dir("azure-lenient-check");
    let file = dir.join("lenient.xml");
    std::fs::write(&file, LENIENT).unwrap();
    let out = policy_check(&[], &[&file]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    std::fs::remove_dir_all(dir).ok();
    assert!(!gh.log().contains("panicked"));
}

/// An expression that does not close, on line 4 at column 14.
const UNCLOSED: &str = "<policies>\n  <inbound>\n    <set-header name=\"x\" exists-action=\"override\">\n      <value>@(context.Nope(</value>\n    </set-header>\n  </inbound>\n</policies>\n";

#[test]
fn policy_check_reports_an_unclosed_expression_where_it_starts() {
    let dir = crate::support::temp_dir("azure-unclosed-check");
    let file = dir.join("unclosed.xml");
    std::fs::write(&file, UNCLOSED).unwrap();
    let out = policy_check(&[], &[&file]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "{}:4:14: the expression starting here does not close",
            file.display()
        )),
        "{stdout}"
    );
    assert!(!stdout.contains(":1:1:"), "{stdout}");
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn mgmt_refuses_an_unclosed_expression_naming_its_line_and_column() {
    let gh = Gatehouse::up("azure-unclosed-mgmt", &[]).await;
    gh.simple_api("az", "az", "http://127.0.0.1:9", true).await;
    let (status, body) = put_policy(&gh, "/mgmt/apis/az/policy", UNCLOSED).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "ValidationError");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("line 4, column 14") && message.contains("does not close"),
        "{body}"
    );
    let detail = &body["error"]["details"][0];
    assert_eq!(detail["line"], 4, "{body}");
    assert_eq!(detail["column"], 14, "{body}");
    // Nothing was saved: the API still has no policy of its own.
    let (status, body) = gh.mgmt("GET", "/mgmt/apis/az/policy", None).await;
    assert!(
        status == 404 || !body.to_string().contains("context.Nope"),
        "{status} {body}"
    );
}

/// Writes `files` (name, text) into a fresh directory.
fn write_files(tag: &str, files: &[(&str, &str)]) -> std::path::PathBuf {
    let dir = crate::support::temp_dir(tag);
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    dir
}

#[test]
fn policy_check_checks_fragment_files() {
    let dir = write_files(
        "azure-fragment-check",
        &[
            (
                "good.xml",
                "<fragment>\n  <set-header name=\"X-F\" exists-action=\"override\">\n    <value>@(context.Request.Headers.GetValueOrDefault(\"x\", \"\"))</value>\n  </set-header>\n</fragment>\n",
            ),
            (
                "bad.xml",
                "<fragment>\n  <set-header name=\"X\" oops=\"1\"><value>1</value></set-header>\n</fragment>\n",
            ),
        ],
    );
    let (good, bad) = (dir.join("good.xml"), dir.join("bad.xml"));
    let out = policy_check(&[], &[&good]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let out = policy_check(&[], &[&bad]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "{}:2:24: <set-header> has no attribute 'oops'",
            bad.display()
        )),
        "{stdout}"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn policy_check_applies_scope_rules_only_with_a_scope() {
    let dir = write_files(
        "azure-scope-check",
        &[(
            "quota.xml",
            "<policies>\n  <inbound>\n    <base />\n    <quota calls=\"100\" renewal-period=\"3600\" />\n  </inbound>\n</policies>\n",
        )],
    );
    let file = dir.join("quota.xml");
    // Offline, where the document goes is unknown: a warning.
    let out = policy_check(&[], &[&file]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("{}:4:5: warning: <quota>", file.display()))
            && stdout.contains("--scope"),
        "{stdout}"
    );
    let out = policy_check(&["--scope", "product"], &[&file]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let out = policy_check(&["--scope", "operation"], &[&file]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("{}:4:5: <quota>", file.display())),
        "{stdout}"
    );
    let out = policy_check(&["--scope", "tenant"], &[&file]);
    assert_ne!(out.status.code(), Some(0), "{out:?}");
    std::fs::remove_dir_all(dir).ok();
}

/// A number, a URL and a header name that come from named values.
const PLACEHOLDERS: &str = "<policies>\n  <inbound>\n    <base />\n    <rate-limit-by-key calls=\"{{calls}}\" renewal-period=\"60\" counter-key=\"@(context.Request.IpAddress)\" />\n    <set-header name=\"{{header-name}}\" exists-action=\"override\"><value>{{header-value}}</value></set-header>\n  </inbound>\n</policies>\n";

#[tokio::test]
async fn placeholders_are_warnings_offline_and_checked_when_saved() {
    let dir = write_files("azure-placeholders", &[("p.xml", PLACEHOLDERS)]);
    let file = dir.join("p.xml");
    let out = policy_check(&["--scope", "api"], &[&file]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("{}:4:", file.display()))
            && stdout.contains("warning: named value 'calls'"),
        "{stdout}"
    );
    // The shapes that depend on the named values are not judged offline.
    assert!(
        stdout.lines().all(|l| l.contains(": warning: ")),
        "{stdout}"
    );
    std::fs::remove_dir_all(dir).ok();

    // Saved where the named values exist, the substituted value is checked.
    let backend = Backend::start().await;
    let gh = Gatehouse::up("azure-placeholders", &[]).await;
    gh.simple_api("az", "az", &backend.url(), true).await;
    for (name, value) in [
        ("calls", "many"),
        ("header-name", "X-Named"),
        ("header-value", "from-named-value"),
    ] {
        gh.ok(
            "PUT",
            &format!("/mgmt/named-values/{name}"),
            Some(serde_json::json!({"value": value})),
        )
        .await;
    }
    let (status, body) = put_policy(&gh, "/mgmt/apis/az/policy", PLACEHOLDERS).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["details"][0]["line"], 4, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'calls' must be a whole number"),
        "{body}"
    );
    gh.ok(
        "PUT",
        "/mgmt/named-values/calls",
        Some(serde_json::json!({"value": "1000"})),
    )
    .await;
    set_policy(&gh, "/mgmt/apis/az/policy", PLACEHOLDERS).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let r = gh.http.get(gh.gateway("/az/x")).send().await.unwrap();
        if r.status() == 200
            && backend
                .last()
                .headers
                .get("x-named")
                .is_some_and(|v| v == "from-named-value")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the policy never took effect: {}",
            r.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn rules_no_stricter_than_azure() {
    let dir = write_files(
        "azure-relaxed",
        &[
            (
                "trace.xml",
                "<policies><inbound><base /><trace source=\"audit\">plain text, the older form</trace></inbound></policies>",
            ),
            (
                "cors.xml",
                "<policies><inbound><base /><cors><allowed-origins><origin>https://a.test</origin></allowed-origins><allowed-methods><method>GET</method></allowed-methods></cors></inbound></policies>",
            ),
            (
                "jwt.xml",
                "<policies><inbound><base /><validate-jwt header-name=\"Authorization\"><openid-config url=\"{{idp-config}}\" /></validate-jwt></inbound></policies>",
            ),
            (
                "choose.xml",
                "<policies>\n  <inbound>\n    <choose>\n      <when condition=\"@(context.Request.Nope)\">\n        <set-header name=\"x\"><value>1</value></set-header>\n      </when>\n    </choose>\n  </inbound>\n</policies>",
            ),
        ],
    );
    for name in ["trace.xml", "cors.xml", "jwt.xml"] {
        let file = dir.join(name);
        let out = policy_check(&["--scope", "api"], &[&file]);
        assert_eq!(out.status.code(), Some(0), "{name}: {out:?}");
    }
    let file = dir.join("choose.xml");
    let out = policy_check(&[], &[&file]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("{}:4:", file.display())) && stdout.contains("invalid expression"),
        "{stdout}"
    );
    assert!(!stdout.contains("at least one <when"), "{stdout}");
    std::fs::remove_dir_all(dir).ok();
}
