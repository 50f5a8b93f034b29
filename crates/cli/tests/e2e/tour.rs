//! The README's five-minute tour, through the real CLI: import an OpenAPI file, create a product
//! and a subscription, call the API through the gateway. Also the CLI's errors and exit codes.

use std::time::Duration;

use serde_json::Value;

use crate::support::{BIN, Backend, Gatehouse, fixture, free_port, temp_dir};

fn text(out: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_five_minute_tour() {
    let backend = Backend::start().await;
    let gh = Gatehouse::up("tour", &[]).await;
    let petstore = fixture("petstore-openapi3.yaml");
    let petstore = petstore.to_str().unwrap();

    let out = gh.cli(&[
        "api",
        "import",
        petstore,
        "--id",
        "petstore",
        "--path",
        "petstore",
        "--service-url",
        &backend.url(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Imported API 'petstore'"),
        "{}",
        text(&out)
    );

    let out = gh.cli(&["product", "create", "starter", "--name", "Starter"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = gh.cli(&["product", "add-api", "starter", "petstore"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = gh.cli(&[
        "subscription",
        "create",
        "alice",
        "--scope",
        "/products/starter",
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let keys: Value = serde_json::from_slice(&out.stdout).unwrap();
    let key = keys["primaryKey"].as_str().unwrap().to_owned();

    let out = gh.cli(&["subscription", "keys", "alice"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&key));
    let out = gh.cli(&["api", "list"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("/petstore"),
        "{}",
        text(&out)
    );
    let out = gh.cli(&["api", "show", "petstore", "-o", "json"]);
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["operations"].as_array().unwrap().len(), 3);
    let out = gh.cli(&["named-value", "set", "token", "abc", "--secret"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = gh.cli(&["gateway", "create", "edge", "--location", "Berlin"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = gh.cli(&["gateway", "assign", "edge", "petstore"]);
    assert!(out.status.success(), "{}", text(&out));

    let url = gh.gateway("/petstore/pets/12?verbose=true");
    let status = gh
        .eventually(Duration::from_secs(2), || {
            let req = gh
                .http
                .get(&url)
                .header("Ocp-Apim-Subscription-Key", &key)
                .send();
            async move { req.await.is_ok_and(|r| r.status() == 200) }
        })
        .await;
    assert!(status < Duration::from_secs(2));
    let seen = backend.last();
    assert_eq!(seen.path, "/pets/12");
    assert_eq!(seen.query.as_deref(), Some("verbose=true"));

    // Delete through the CLI: the route goes away.
    let out = gh.cli(&["api", "delete", "petstore"]);
    assert!(out.status.success(), "{}", text(&out));
    gh.eventually(Duration::from_secs(1), || {
        let req = gh
            .http
            .get(&url)
            .header("Ocp-Apim-Subscription-Key", &key)
            .send();
        async move { req.await.is_ok_and(|r| r.status() == 404) }
    })
    .await;
    // The server log went to a file: plain text, no terminal colour codes in it.
    let log = gh.log();
    assert!(log.contains("INFO"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log file:\n{log}"
    );
}

#[tokio::test]
async fn cli_errors_are_one_sentence_with_exit_codes() {
    let gh = Gatehouse::up("cli-errors", &[]).await;
    // Invalid input: exit 2, the file and the place named.
    let broken = gh.data.join("broken.json");
    std::fs::write(
        &broken,
        "{\"openapi\": \"3.0.0\", \"paths\": {\n  \"/a\": \n}",
    )
    .unwrap();
    let out = gh.cli(&[
        "api",
        "import",
        broken.to_str().unwrap(),
        "--id",
        "b",
        "--path",
        "b",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("broken.json") && err.contains(":3:"), "{err}");
    assert!(!err.contains("panicked"));
    // A missing file.
    let out = gh.cli(&[
        "api",
        "import",
        "/nonexistent.yaml",
        "--id",
        "b",
        "--path",
        "b",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    // Not found: runtime failure.
    let out = gh.cli(&["api", "show", "nope"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("'nope' was not found"));
    // Bad usage.
    let out = std::process::Command::new(BIN)
        .args(["product", "create"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    // No control plane: runtime failure saying where it looked.
    let port = free_port();
    let out = std::process::Command::new(BIN)
        .args(["api", "list"])
        .env("GATEHOUSE_URL", format!("http://127.0.0.1:{port}"))
        .env("GATEHOUSE_ADMIN_TOKEN", "x".repeat(20))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("127.0.0.1:{port}")));
    // A wrong token.
    let out = std::process::Command::new(BIN)
        .args(["api", "list"])
        .env("GATEHOUSE_URL", gh.control(""))
        .env("GATEHOUSE_ADMIN_TOKEN", "wrong-token-wrong-token")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    // Bad settings for the server: exit 2 with the reason.
    let dir = temp_dir("cli-settings");
    let settings = dir.join("settings.toml");
    std::fs::write(&settings, "listen = 12\nnot-a-setting = true\n").unwrap();
    let out = std::process::Command::new(BIN)
        .args([
            "up",
            "--data",
            dir.to_str().unwrap(),
            "--settings",
            settings.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("settings.toml"));
    let out = std::process::Command::new(BIN)
        .args([
            "up",
            "--data",
            dir.to_str().unwrap(),
            "--backend-timeout",
            "soon",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    for bad in [
        ["--telemetry-retention", "0d"],
        ["--access-log", "xml"],
        ["--telemetry-spool-size", "lots"],
        ["--otlp-endpoint", "collector:4318"],
    ] {
        let out = std::process::Command::new(BIN)
            .args(["up", "--data", dir.to_str().unwrap()])
            .args(bad)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(bad[0]),
            "{bad:?}: {}",
            text(&out)
        );
    }
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn settings_come_from_flags_env_and_file() {
    let dir = temp_dir("settings");
    let (file_port, env_port, gw_port) = (free_port(), free_port(), free_port());
    let settings = dir.join("settings.yaml");
    std::fs::write(
        &settings,
        format!(
            "listen: 127.0.0.1:{file_port}\ngateway-listen: 127.0.0.1:{gw_port}\ngateway-admin-listen: 127.0.0.1:0\n"
        ),
    )
    .unwrap();
    // The environment wins over the file.
    let mut child = std::process::Command::new(BIN)
        .args([
            "up",
            "--data",
            dir.to_str().unwrap(),
            "--settings",
            settings.to_str().unwrap(),
        ])
        .env("GATEHOUSE_LISTEN", format!("127.0.0.1:{env_port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let mut up = false;
    for _ in 0..200 {
        if http
            .get(format!("http://127.0.0.1:{env_port}/mgmt/openapi.json"))
            .send()
            .await
            .is_ok()
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let gateway_up = http
        .get(format!(
            "http://127.0.0.1:{gw_port}/status-0123456789abcdef"
        ))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200);
    let file_port_used = http
        .get(format!("http://127.0.0.1:{file_port}/mgmt/openapi.json"))
        .send()
        .await
        .is_ok();
    let _ = child.kill();
    let _ = child.wait();
    std::fs::remove_dir_all(dir).ok();
    assert!(
        up,
        "the control plane did not listen on the GATEHOUSE_LISTEN address"
    );
    assert!(
        gateway_up,
        "the gateway did not listen on the settings file's address"
    );
    assert!(!file_port_used);
}

#[tokio::test]
async fn up_demo_prints_a_curl_that_works() {
    let gh = Gatehouse::up("demo", &["--demo"]).await;
    gh.eventually(Duration::from_secs(10), || {
        let done = gh.stdout().contains("Press Ctrl-C");
        async move { done }
    })
    .await;
    let out = gh.stdout();
    assert!(
        out.contains(&gh.token),
        "the admin token is not printed:\n{out}"
    );
    assert!(out.contains(&format!("http://127.0.0.1:{}/mgmt", gh.control_port)));
    let curl = out
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("curl "))
        .unwrap_or_else(|| panic!("no curl command printed:\n{out}"));
    let status = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("{curl} -s -o /dev/stderr -w '%{{http_code}}'"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&status.stdout), "200", "{curl}");
    assert!(
        String::from_utf8_lossy(&status.stderr)
            .contains("Hello from the Gatehouse demo echo backend")
    );
}

/// The CLI covers what the README's first hour needs: an import from a URL, `product show`,
/// `subscription show` and `approve` (with `-o json` for scripts), and `echo-backend`, the
/// tour's backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_from_a_url_show_approve_and_an_echo_backend() {
    use http_body_util::Full;
    use hyper::body::Bytes;

    // The echo backend, as the README starts it.
    let port = free_port();
    let mut echo = std::process::Command::new(BIN)
        .args(["echo-backend", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let gh = Gatehouse::up("cli-first-hour", &[]).await;

    // An OpenAPI document served over HTTP, imported by URL; other schemes and errors are said.
    let document = std::fs::read(fixture("petstore-openapi3.yaml")).unwrap();
    let served = crate::support::serve_loopback(move |req: hyper::Request<_>| {
        let document = document.clone();
        async move {
            let mut r = hyper::Response::new(Full::new(Bytes::from(document)));
            if req.uri().path() != "/petstore.yaml" {
                *r.status_mut() = hyper::StatusCode::NOT_FOUND;
            }
            Ok::<_, std::convert::Infallible>(r)
        }
    })
    .await;
    let url = format!("http://{served}/petstore.yaml");
    let backend = format!("http://127.0.0.1:{port}");
    let out = gh.cli(&[
        "api",
        "import",
        &url,
        "--id",
        "pets",
        "--path",
        "pets",
        "--service-url",
        &backend,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("Imported API 'pets'"), "{}", text(&out));
    let out = gh.cli(&[
        "api",
        "import",
        &format!("http://{served}/missing.yaml"),
        "--id",
        "x",
        "--path",
        "x",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("the server answered 404"),
        "{}",
        text(&out)
    );
    let out = gh.cli(&[
        "api",
        "import",
        "ftp://example.test/a.yaml",
        "--id",
        "x",
        "--path",
        "x",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("only http:// and https://"),
        "{}",
        text(&out)
    );

    // A product that needs approval: the subscription waits, then is approved.
    for args in [
        &["product", "create", "gold", "--name", "Gold", "--approval"][..],
        &["product", "add-api", "gold", "pets"],
        &[
            "subscription",
            "create",
            "bob",
            "--scope",
            "/products/gold",
            "--state",
            "submitted",
        ],
    ] {
        let out = gh.cli(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
    }
    let out = gh.cli(&["-o", "json", "product", "show", "gold"]);
    let product: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(product["approvalRequired"], true, "{product}");
    assert_eq!(product["apis"][0]["id"], "pets", "{product}");
    let out = gh.cli(&["product", "show", "gold"]);
    assert!(text(&out).contains("pets"), "{}", text(&out));
    let out = gh.cli(&["-o", "json", "subscription", "show", "bob"]);
    let sub: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sub["state"], "submitted", "{sub}");
    assert!(
        sub.get("primaryKey").is_none(),
        "show prints no keys: {sub}"
    );
    let out = gh.cli(&["subscription", "approve", "bob"]);
    assert!(text(&out).contains("is active"), "{}", text(&out));
    let out = gh.cli(&["subscription", "show", "bob"]);
    assert!(text(&out).contains("state: active"), "{}", text(&out));

    // Through the gateway to the echo backend with bob's key.
    let out = gh.cli(&["subscription", "keys", "bob", "--primary"]);
    let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let url = gh.gateway("/pets/pets");
    gh.eventually(Duration::from_secs(5), || {
        let req = gh
            .http
            .get(&url)
            .header("Ocp-Apim-Subscription-Key", &key)
            .send();
        async move {
            match req.await {
                Ok(r) if r.status() == 200 => r.text().await.is_ok_and(|t| t.contains("\"/pets\"")),
                _ => false,
            }
        }
    })
    .await;
    let _ = echo.kill();
    let _ = echo.wait();
}
