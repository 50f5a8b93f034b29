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
