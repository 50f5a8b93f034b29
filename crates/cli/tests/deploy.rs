//! Deployment artefacts, the README's self-hosted gateway walkthrough, and the shell scripts
//! of `benches/` and `scripts/` (they parse, and the README names each benchmark).
//!
//! There is no container engine on our machines, so the Dockerfile is checked by reading it;
//! the Kubernetes manifests are checked for what the gateway needs and validated against the
//! Kubernetes schemas with `kubernetes-validate` (installed by `scripts/test`). There is no
//! kubectl or kustomize either: [`render`] is a small Kustomize subset (`resources` — files or
//! directories with a kustomization.yaml — and `patches` by `path`, a strategic merge onto the
//! object of the same kind and name) that builds each overlay, and it refuses any other
//! Kustomize feature, so the overlays keep to what is checked here.

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

/// The documents `kubectl apply -k DIR` would apply, for the Kustomize subset the manifests use.
fn render(dir: &Path) -> Vec<Value> {
    let file = dir.join("kustomization.yaml");
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let k: Value =
        serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    for key in k.as_object().unwrap().keys() {
        assert!(
            ["apiVersion", "kind", "resources", "patches"].contains(&key.as_str()),
            "{} uses `{key}`, which the renderer in this test does not support",
            file.display()
        );
    }
    let mut docs = Vec::new();
    for resource in k["resources"].as_array().into_iter().flatten() {
        let path = dir.join(resource.as_str().unwrap());
        if path.is_dir() {
            docs.extend(render(&path));
        } else {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let doc: Value =
                serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            docs.push(doc);
        }
    }
    for patch in k["patches"].as_array().into_iter().flatten() {
        let keys: Vec<&String> = patch.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["path"],
            "{}: only `patches: - path:` is supported",
            file.display()
        );
        let path = dir.join(patch["path"].as_str().unwrap());
        let text = std::fs::read_to_string(&path).unwrap();
        let patch: Value =
            serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let target = docs
            .iter_mut()
            .find(|d| {
                d["kind"] == patch["kind"] && d["metadata"]["name"] == patch["metadata"]["name"]
            })
            .unwrap_or_else(|| {
                panic!(
                    "{} patches an object that is not in the resources",
                    path.display()
                )
            });
        merge(target, &patch);
    }
    // Kustomize refuses two objects with the same kind and name.
    for (i, d) in docs.iter().enumerate() {
        assert!(
            !docs[..i]
                .iter()
                .any(|e| e["kind"] == d["kind"] && e["metadata"]["name"] == d["metadata"]["name"]),
            "{}: {} {} twice",
            dir.display(),
            d["kind"],
            d["metadata"]["name"]
        );
    }
    docs
}

/// A strategic merge patch, for what the overlays patch: maps merge key by key, `null` deletes
/// a key, lists of objects with a `name` merge by name, other lists are replaced.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (key, value) in p {
                if value.is_null() {
                    t.remove(key);
                } else {
                    merge(t.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        (Value::Array(t), Value::Array(p)) if p.iter().all(|v| v["name"].is_string()) => {
            for item in p {
                match t.iter_mut().find(|x| x["name"] == item["name"]) {
                    Some(existing) => merge(existing, item),
                    None => t.push(item.clone()),
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn kinds(docs: &[Value]) -> Vec<String> {
    let mut k: Vec<String> = docs
        .iter()
        .map(|d| {
            format!(
                "{}/{}",
                d["kind"].as_str().unwrap(),
                d["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    k.sort();
    k
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
    let deployment = yaml("base/gateway/deployment.yaml");
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

    let config = yaml("base/gateway/configmap.yaml");
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
        yaml("base/gateway/service.yaml")["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["port"] == 443 && p["targetPort"] == "https")
    );
    let secret = yaml("base/gateway/secret.yaml");
    assert!(
        secret["stringData"]["GATEHOUSE_TOKEN"]
            .as_str()
            .unwrap()
            .starts_with("GatewayKey ")
    );
    assert_eq!(
        yaml("base/gateway/pvc.yaml")["kind"],
        "PersistentVolumeClaim"
    );
    assert_eq!(yaml("overlays/gateway/pdb.yaml")["spec"]["minAvailable"], 1);
    assert_eq!(
        yaml("base/gateway/service.yaml")["spec"]["ports"][0]["targetPort"],
        "http"
    );
    let kustomization = yaml("base/gateway/kustomization.yaml");
    assert_eq!(kustomization["resources"].as_array().unwrap().len(), 5);
}

/// `kubectl apply -k deploy/kubernetes` still applies the gateways as before, now with the Redis
/// URL in their Secret.
#[test]
fn the_gateway_overlay_is_what_existed_plus_redis() {
    let root_docs = render(&root().join("deploy/kubernetes"));
    let docs = render(&root().join("deploy/kubernetes/overlays/gateway"));
    assert_eq!(root_docs, docs);
    assert_eq!(
        kinds(&docs),
        [
            "ConfigMap/gatehouse-gateway",
            "Deployment/gatehouse-gateway",
            "PersistentVolumeClaim/gatehouse-gateway-backup",
            "PodDisruptionBudget/gatehouse-gateway",
            "Secret/gatehouse-gateway",
            "Service/gatehouse-gateway",
        ]
    );
    let secret = find(&docs, "Secret", "gatehouse-gateway");
    assert!(
        secret["stringData"]["GATEHOUSE_REDIS"]
            .as_str()
            .unwrap()
            .starts_with("redis://")
    );
    // The patch added to the Secret; it kept the token.
    assert!(
        secret["stringData"]["GATEHOUSE_TOKEN"]
            .as_str()
            .unwrap()
            .starts_with("GatewayKey ")
    );
    assert_eq!(
        secret["metadata"]["labels"]["app.kubernetes.io/name"],
        "gatehouse-gateway"
    );
    // The Secret is what the gateways read their environment from.
    let deployment = find(&docs, "Deployment", "gatehouse-gateway");
    assert!(
        deployment["spec"]["template"]["spec"]["containers"][0]["envFrom"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["secretRef"]["name"] == "gatehouse-gateway")
    );
}

#[test]
fn the_control_plane_overlay_runs_n_replicas_on_postgres_with_shared_secrets() {
    let docs = render(&root().join("deploy/kubernetes/overlays/control-plane"));
    assert_eq!(
        kinds(&docs),
        [
            "ConfigMap/gatehouse-control-plane",
            "Deployment/gatehouse-control-plane",
            "Secret/gatehouse-control-plane",
            "Service/gatehouse-control-plane",
        ]
    );
    let deployment = find(&docs, "Deployment", "gatehouse-control-plane");
    assert_eq!(deployment["spec"]["replicas"], 3);
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["args"][0], "control-plane");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let env_from = container["envFrom"].as_array().unwrap();
    assert!(
        env_from
            .iter()
            .any(|e| e["secretRef"]["name"] == "gatehouse-control-plane")
    );
    assert!(
        env_from
            .iter()
            .any(|e| e["configMapRef"]["name"] == "gatehouse-control-plane")
    );
    // The environment names are the ones the binary reads (crates/cli/src/args.rs, serve.rs).
    let secret = find(&docs, "Secret", "gatehouse-control-plane");
    assert!(
        secret["stringData"]["GATEHOUSE_DATABASE"]
            .as_str()
            .unwrap()
            .starts_with("postgres://")
    );
    assert!(secret["stringData"]["GATEHOUSE_ADMIN_TOKEN"].is_string());
    assert!(secret["stringData"]["GATEHOUSE_SECRET_KEY"].is_string());
    let args = std::fs::read_to_string(root().join("crates/cli/src/args.rs")).unwrap();
    let serve = std::fs::read_to_string(root().join("crates/cli/src/serve.rs")).unwrap();
    let config = find(&docs, "ConfigMap", "gatehouse-control-plane");
    for name in [
        "GATEHOUSE_DATABASE",
        "GATEHOUSE_ADMIN_TOKEN",
        "GATEHOUSE_SECRET_KEY",
    ]
    .into_iter()
    .chain(
        config["data"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str),
    ) {
        let quoted = format!("\"{name}\"");
        assert!(
            args.contains(&quoted) || serve.contains(&quoted),
            "the binary does not read {name}"
        );
    }
    // Read-only root: the data directory is a volume.
    let data = config["data"]["GATEHOUSE_DATA"].as_str().unwrap();
    assert!(
        container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["mountPath"] == data)
    );
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    let port = container["ports"][0]["containerPort"].as_u64().unwrap();
    assert_eq!(
        config["data"]["GATEHOUSE_LISTEN"],
        format!("0.0.0.0:{port}")
    );
    let service = find(&docs, "Service", "gatehouse-control-plane");
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "http");
    assert_eq!(
        service["spec"]["selector"],
        deployment["spec"]["template"]["metadata"]["labels"]
    );
}

#[test]
fn the_ha_overlay_links_both_with_disruption_budgets_and_a_gateway_autoscaler() {
    let docs = render(&root().join("deploy/kubernetes/overlays/ha"));
    let gateway = render(&root().join("deploy/kubernetes/overlays/gateway"));
    let control = render(&root().join("deploy/kubernetes/overlays/control-plane"));
    let mut expected: Vec<String> = kinds(&gateway).into_iter().chain(kinds(&control)).collect();
    expected.push("HorizontalPodAutoscaler/gatehouse-gateway".into());
    expected.push("PodDisruptionBudget/gatehouse-control-plane".into());
    expected.sort();
    assert_eq!(kinds(&docs), expected);
    // Gateways link to the control planes' Service.
    let service = find(&docs, "Service", "gatehouse-control-plane");
    let port = service["spec"]["ports"][0]["port"].as_u64().unwrap();
    assert_eq!(
        find(&docs, "ConfigMap", "gatehouse-gateway")["data"]["GATEHOUSE_CONFIG_ENDPOINT"],
        format!("http://gatehouse-control-plane:{port}")
    );
    // Each budget selects its pods.
    for name in ["gatehouse-gateway", "gatehouse-control-plane"] {
        let pdb = find(&docs, "PodDisruptionBudget", name);
        let deployment = find(&docs, "Deployment", name);
        assert_eq!(
            pdb["spec"]["selector"]["matchLabels"],
            deployment["spec"]["selector"]["matchLabels"]
        );
        assert_eq!(pdb["spec"]["minAvailable"], 1);
    }
    let hpa = find(&docs, "HorizontalPodAutoscaler", "gatehouse-gateway");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "Deployment");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "gatehouse-gateway");
    assert!(hpa["spec"]["minReplicas"].as_u64().unwrap() >= 2);
    // CPU utilisation needs a CPU request; the HPA owns the replica count.
    let gw = find(&docs, "Deployment", "gatehouse-gateway");
    assert!(
        gw["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"].is_string()
    );
    assert!(gw["spec"]["replicas"].is_null(), "{}", gw["spec"]);
    // Still the Redis URL and several control planes.
    assert!(
        find(&docs, "Secret", "gatehouse-gateway")["stringData"]["GATEHOUSE_REDIS"].is_string()
    );
    assert_eq!(
        find(&docs, "Deployment", "gatehouse-control-plane")["spec"]["replicas"],
        3
    );
}

#[test]
fn the_renderer_applies_strategic_merges_as_kustomize_does() {
    let mut target = serde_json::json!({
        "spec": {"replicas": 2, "template": {"spec": {"containers": [
            {"name": "a", "image": "x", "env": [{"name": "A", "value": "1"}]},
            {"name": "b", "image": "y"}
        ]}}}
    });
    merge(
        &mut target,
        &serde_json::json!({"spec": {"replicas": null, "template": {"spec": {"containers": [
            {"name": "a", "env": [{"name": "B", "value": "2"}]}
        ]}}}}),
    );
    assert_eq!(
        target,
        serde_json::json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "x", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
            {"name": "b", "image": "y"}
        ]}}}})
    );
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
    // Every overlay, rendered, each document validated on its own file.
    let out_dir = std::env::temp_dir().join(format!("gh-k8s-validate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out_dir);
    std::fs::create_dir_all(&out_dir).unwrap();
    for overlay in ["gateway", "control-plane", "ha"] {
        let docs = render(&root().join("deploy/kubernetes/overlays").join(overlay));
        let files: Vec<PathBuf> = docs
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let path = out_dir.join(format!("{overlay}-{i}.json"));
                std::fs::write(&path, serde_json::to_vec_pretty(d).unwrap()).unwrap();
                path
            })
            .collect();
        let out = Command::new(&tool)
            .arg("--strict")
            .args(&files)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "kubernetes-validate failed for the {overlay} overlay:\n{text}"
        );
        assert_eq!(
            text.matches(" passed for resource ").count(),
            files.len(),
            "{overlay}: {text}"
        );
    }
    std::fs::remove_dir_all(&out_dir).ok();
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

/// Every Markdown file of the repository (not the build's or the package managers' folders).
fn markdown_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !name.starts_with('.') && !["target", "node_modules"].contains(&name.as_str()) {
                markdown_files(&path, out);
            }
        } else if name.ends_with(".md") {
            out.push(path);
        }
    }
}

/// The text outside code blocks and code spans, where links are links.
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Odd pieces between backticks are code spans.
        for (i, piece) in line.split('`').enumerate() {
            if i % 2 == 0 {
                out.push_str(piece);
            }
        }
        out.push('\n');
    }
    out
}

/// The targets of `[text](target)` links in a Markdown text.
fn link_targets(text: &str) -> Vec<String> {
    prose(text)
        .split("](")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
        .map(|t| t.split_whitespace().next().unwrap_or("").to_owned())
        .collect()
}

#[test]
fn no_document_links_to_a_path_outside_the_repository_or_to_a_missing_file() {
    let root = root().canonicalize().unwrap();
    let mut files = Vec::new();
    markdown_files(&root, &mut files);
    assert!(
        files.len() >= 8,
        "only {} Markdown files found",
        files.len()
    );
    let mut links = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let shown = file.strip_prefix(&root).unwrap().display().to_string();
        assert!(
            !text.contains("../shared"),
            "{shown} points at ../shared, which a clone does not have"
        );
        for target in link_targets(&text) {
            if target.is_empty() || target.starts_with('#') || target.contains("://") {
                continue;
            }
            if target.starts_with("mailto:") {
                continue;
            }
            let path = target.split('#').next().unwrap();
            let resolved = file.parent().unwrap().join(path);
            let resolved = resolved
                .canonicalize()
                .unwrap_or_else(|e| panic!("{shown} links to {target}, which does not exist: {e}"));
            assert!(
                resolved.starts_with(&root),
                "{shown} links to {target}, outside the repository"
            );
            links += 1;
        }
    }
    assert!(links >= 10, "only {links} relative links checked");
}

#[test]
fn link_targets_are_read_from_markdown() {
    assert_eq!(
        link_targets("see [a](docs/a.md) and [b](../b.md#x \"title\") and [c](#here)"),
        vec!["docs/a.md", "../b.md#x", "#here"]
    );
    assert!(link_targets("`x[](y)` and\n```\n[z](w)\n```\n").is_empty());
}
