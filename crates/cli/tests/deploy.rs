//! Deployment artefacts, the README's self-hosted gateway walkthrough, and the shell scripts
//! of `benches/` and `scripts/` (they parse, and the README names each benchmark).
//!
//! There is no container engine on our machines, so the Dockerfile is checked by reading it;
//! the Kubernetes manifests are checked for what the gateway needs and validated against the
//! Kubernetes schemas with `kubernetes-validate` (installed by `scripts/test`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn yaml(name: &str) -> Value {
    let text = std::fs::read_to_string(root().join("deploy/kubernetes").join(name)).unwrap();
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn dockerfile_is_multi_stage_non_root_with_a_backup_volume() {
    let text = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    let froms: Vec<&&str> = lines.iter().filter(|l| l.starts_with("FROM ")).collect();
    assert!(froms.len() >= 2, "not multi-stage: {froms:?}");
    assert!(froms[0].contains(" AS "), "the build stage is unnamed");
    let runtime = &text[text.rfind("\nFROM ").unwrap()..];
    assert!(
        runtime.contains("-slim") || runtime.contains("distroless"),
        "the runtime image is not small"
    );
    let user = runtime
        .lines()
        .find_map(|l| l.trim().strip_prefix("USER "))
        .expect("the runtime stage sets no USER");
    assert!(
        !user.starts_with("root") && !user.starts_with('0'),
        "runs as root: {user}"
    );
    assert!(runtime.contains("VOLUME [\"/var/lib/gatehouse/backup\"]"));
    assert!(runtime.contains("COPY --from=build"));
    assert!(runtime.contains("ENTRYPOINT [\"/usr/local/bin/gatehouse\"]"));
    assert!(
        text.contains("--locked"),
        "the build does not use the lockfile"
    );
    assert!(
        !text.contains("curl ") && !text.contains("wget "),
        "downloads outside package managers"
    );
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    assert!(ignore.lines().any(|l| l.trim() == "target"));
}

#[test]
fn kubernetes_manifests_carry_what_the_gateway_needs() {
    let deployment = yaml("deployment.yaml");
    assert_eq!(deployment["kind"], "Deployment");
    assert!(deployment["spec"]["replicas"].as_u64().unwrap() >= 2);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let container = &pod["containers"][0];
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["port"], "admin");
    let admin = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "admin")
        .unwrap();
    assert_eq!(admin["containerPort"], 8082);
    let env_from = container["envFrom"].as_array().unwrap();
    assert!(
        env_from
            .iter()
            .any(|e| e["configMapRef"]["name"] == "gatehouse-gateway")
    );
    assert!(
        env_from
            .iter()
            .any(|e| e["secretRef"]["name"] == "gatehouse-gateway")
    );
    assert_eq!(
        container["volumeMounts"][0]["mountPath"],
        "/var/lib/gatehouse/backup"
    );
    assert_eq!(
        pod["volumes"][0]["persistentVolumeClaim"]["claimName"],
        "gatehouse-gateway-backup"
    );
    assert!(pod["terminationGracePeriodSeconds"].as_u64().unwrap() > 30);
    // HTTPS: the certificate Secret mounted whole (a subPath mount never sees a renewal),
    // where the settings point, and the port published.
    let tls = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "tls")
        .expect("no TLS mount");
    assert!(tls["subPath"].is_null(), "a subPath mount is never updated");
    let tls_dir = tls["mountPath"].as_str().unwrap();
    let secret_volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "tls")
        .unwrap();
    assert_eq!(
        secret_volume["secret"]["secretName"],
        "gatehouse-gateway-tls"
    );
    let https = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "https")
        .expect("no https port");

    let config = yaml("configmap.yaml");
    assert_eq!(
        config["data"]["GATEHOUSE_BACKUP_DIR"],
        "/var/lib/gatehouse/backup"
    );
    assert_eq!(config["data"]["GATEHOUSE_ADMIN_LISTEN"], "0.0.0.0:8082");
    assert_eq!(
        config["data"]["GATEHOUSE_HTTPS_LISTEN"],
        format!("0.0.0.0:{}", https["containerPort"])
    );
    assert_eq!(
        config["data"]["GATEHOUSE_TLS_CERT"],
        format!("{tls_dir}/tls.crt")
    );
    assert_eq!(
        config["data"]["GATEHOUSE_TLS_KEY"],
        format!("{tls_dir}/tls.key")
    );
    assert!(
        yaml("service.yaml")["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["port"] == 443 && p["targetPort"] == "https")
    );
    let secret = yaml("secret.yaml");
    assert!(
        secret["stringData"]["GATEHOUSE_TOKEN"]
            .as_str()
            .unwrap()
            .starts_with("GatewayKey ")
    );
    assert_eq!(yaml("pvc.yaml")["kind"], "PersistentVolumeClaim");
    assert_eq!(yaml("pdb.yaml")["spec"]["minAvailable"], 1);
    assert_eq!(
        yaml("service.yaml")["spec"]["ports"][0]["targetPort"],
        "http"
    );
    let kustomization = yaml("kustomization.yaml");
    assert_eq!(kustomization["resources"].as_array().unwrap().len(), 6);
}

#[test]
fn kubernetes_manifests_validate_against_the_schemas() {
    let Some(tool) = std::env::var_os("GATEHOUSE_KUBERNETES_VALIDATE") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "set GATEHOUSE_KUBERNETES_VALIDATE to the kubernetes-validate executable; scripts/test does it"
        );
        eprintln!("note: GATEHOUSE_KUBERNETES_VALIDATE is not set; schema validation skipped");
        return;
    };
    let dir = root().join("deploy/kubernetes");
    let files: Vec<PathBuf> = ["configmap", "secret", "pvc", "deployment", "service", "pdb"]
        .iter()
        .map(|n| dir.join(format!("{n}.yaml")))
        .collect();
    let out = Command::new(tool)
        .arg("--strict")
        .args(&files)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "kubernetes-validate failed:\n{text}");
    assert_eq!(
        text.matches(" passed for resource ").count(),
        files.len(),
        "{text}"
    );
}

/// What a README session printed, and the directory it ran in.
struct BlockRun {
    stdout: String,
    dir: PathBuf,
}

/// The README's `sh` blocks, run as written by the tests below: each group runs in one shell,
/// in order. Blocks for the maintainer's machine (the two commands, which run the suite
/// itself, and the benchmarks, which run for minutes) are `console` blocks, checked elsewhere.
const README_SESSIONS: &[&[&str]] = &[
    &[
        "## The five-minute tour",
        "## Policies",
        "## Developer portal",
        "## Observability",
    ],
    &["## Run a self-hosted gateway"],
    &["## TLS"],
];

/// The first `sh` block under the README heading `heading`.
fn readme_block(readme: &str, heading: &str) -> String {
    let section = readme
        .split(&format!("\n{heading}\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("README has no '{heading}' section"));
    let section = section.split("\n## ").next().unwrap_or(section);
    section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .unwrap_or_else(|| panic!("the section '{heading}' has no sh block"))
        .to_owned()
}

#[test]
fn every_readme_shell_block_is_run_by_a_test() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let blocks = readme.matches("```sh\n").count();
    let covered: usize = README_SESSIONS.iter().map(|s| s.len()).sum();
    assert_eq!(
        blocks, covered,
        "README.md has {blocks} sh blocks and the tests run {covered}: add the new one to README_SESSIONS"
    );
    for heading in README_SESSIONS.iter().flat_map(|s| s.iter()) {
        readme_block(&readme, heading);
    }
    // The two commands: CI runs exactly the README's test command.
    let two = readme
        .split("## The two commands")
        .nth(1)
        .and_then(|s| s.split("```console\n").nth(1))
        .and_then(|b| b.split("```").next())
        .expect("README has no block of the two commands");
    let test_command = two
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .find(|l| l.starts_with("scripts/"))
        .expect("no test command among the two");
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    assert!(
        ci.lines()
            .any(|l| l.trim() == format!("exec {test_command}")),
        ".ci/run does not run the README's test command '{test_command}':\n{ci}"
    );
    // Every relative link and path it names stays inside the repository.
    for outside in ["](../", "`../", "(../"] {
        assert!(
            !readme.contains(outside),
            "README.md names a file outside the repository ({outside}…)"
        );
    }
    assert!(
        root().join("docs/DESIGN.md").is_file(),
        "the contract README links is missing"
    );
}

/// Runs the first `sh` block under each of `headings`, in order, in one shell, as written, with
/// `gatehouse` on the PATH, in an empty directory, killing what it started in the background
/// when it ends. The blocks use the default ports, so one session runs at a time (a lock shared
/// by the test processes).
fn run_readme_block(headings: &[&str], tag: &str) -> BlockRun {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let block = headings
        .iter()
        .map(|h| readme_block(&readme, h))
        .collect::<Vec<_>>()
        .join("\n");
    let heading = headings.join(", ");

    let lock =
        std::fs::File::create(std::env::temp_dir().join("gatehouse-readme-ports.lock")).unwrap();
    lock.lock().unwrap();
    let dir = std::env::temp_dir().join(format!("gh-readme-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_gatehouse"), bin.join("gatehouse")).unwrap();
    let script = format!(
        "set -eu\ntrap 'kill $(jobs -p) 2>/dev/null; wait' EXIT\n{block}\necho README-DONE\n"
    );
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(&dir)
        .env("PATH", path)
        .env_remove("GATEHOUSE_ADMIN_TOKEN")
        .env_remove("GATEHOUSE_URL")
        .env_remove("GATEHOUSE_DATA")
        .env_remove("GATEHOUSE_TRUSTED_CA")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the README block under '{heading}' hung");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let logs = ["up.log", "gateway.log", "echo.log"]
        .iter()
        .map(|f| std::fs::read_to_string(dir.join(f)).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        out.status.success() && stdout.contains("README-DONE"),
        "the README block(s) under '{heading}' failed:\n{stdout}\n{}\n{logs}",
        String::from_utf8_lossy(&out.stderr)
    );
    BlockRun { stdout, dir }
}

#[test]
fn readme_tour_policies_portal_and_observability_work_as_written() {
    let BlockRun { stdout, dir } = run_readme_block(README_SESSIONS[0], "tour");
    // The call through the gateway reached the echo backend without the key.
    assert!(stdout.contains("\"path\": \"/pets\""), "{stdout}");
    assert!(!stdout.contains("ocp-apim-subscription-key"), "{stdout}");
    // The policy was saved, bob was approved, the metrics counted the call, a report answered.
    assert!(stdout.contains("Subscription 'bob' is active."), "{stdout}");
    assert!(stdout.contains("gatehouse_requests_total{"), "{stdout}");
    assert!(stdout.contains("\"value\""), "{stdout}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn readme_tls_block_works_as_written() {
    let BlockRun { stdout, dir } = run_readme_block(README_SESSIONS[2], "tls");
    // The demo API answered over HTTPS (HTTP/2), and the control plane over HTTPS.
    assert!(
        stdout.contains("Hello from the Gatehouse demo echo backend"),
        "{stdout}"
    );
    assert!(stdout.contains("\"openapi\""), "{stdout}");
    std::fs::remove_dir_all(dir).ok();
}

/// Runs the README's "Run a self-hosted gateway" commands as written. They use the default
/// ports 8080, 8090, 8091, 8180 and 8182.
#[test]
fn readme_self_hosted_walkthrough_works_as_written() {
    let BlockRun { stdout, dir } = run_readme_block(README_SESSIONS[1], "selfhosted");
    assert!(stdout.contains("\"state\":\"ready\""), "{stdout}");
    assert!(
        stdout.contains("Hello from the Gatehouse demo echo backend"),
        "{stdout}"
    );
    assert!(
        stdout.contains("edge-1") && stdout.contains("connected"),
        "{stdout}"
    );
    assert!(dir.join("gateway-backup").read_dir().unwrap().count() >= 1);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bench_and_helper_scripts_parse_and_the_readme_names_each_benchmark() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let mut checked = 0;
    for dir in ["benches", "scripts"] {
        for entry in std::fs::read_dir(root().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if !text.starts_with("#!/usr/bin/env bash") {
                continue;
            }
            let out = Command::new("bash").arg("-n").arg(&path).output().unwrap();
            assert!(
                out.status.success(),
                "{} does not parse: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            if dir == "benches" {
                let name = format!("benches/{}", path.file_name().unwrap().to_string_lossy());
                assert!(readme.contains(&name), "README.md does not mention {name}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 5, "only {checked} scripts found");
}
