//! Issue #13, the management side of TLS: certificates (PEM, sealed at rest, never shown),
//! a gateway's hostname configurations and certificate authorities, and the snapshot that
//! carries them to exactly that gateway, sealed again in a self-hosted gateway's backup.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use gatehouse_gateway::backup::Backup;
use gatehouse_model::token::GatewayToken;
use gatehouse_tls::testca::TestCa;
use serde_json::{Value, json};

use crate::support::{Gatehouse, GatewayProc};

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// The key's base64 body without its armour: what must never be found in clear.
fn key_lines(key_pem: &str) -> Vec<String> {
    key_pem
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 32)
        .map(str::to_owned)
        .collect()
}

/// `openssl x509 -fingerprint -sha1`, as upper-case hex without colons.
fn openssl_sha1(cert: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha1", "-in"])
        .arg(cert)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    text.trim()
        .rsplit('=')
        .next()
        .unwrap()
        .replace(':', "")
        .to_ascii_uppercase()
}

/// Every regular file under `dir`, recursively.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else if path.is_file() {
            out.push(path);
        }
    }
    out
}

fn assert_no_key(what: &str, bytes: &[u8], key: &str) {
    let text = String::from_utf8_lossy(bytes);
    assert!(!text.contains("PRIVATE KEY"), "{what} holds a PEM key");
    for line in key_lines(key) {
        assert!(
            !text.contains(&line),
            "{what} holds the private key in clear"
        );
    }
}

/// The snapshot `GET /gateway/v1/config` gives a gateway with `token`.
async fn config(gh: &Gatehouse, token: &str) -> Value {
    let r = gh
        .http
        .get(gh.control("/gateway/v1/config?wait=0"))
        .header("Authorization", token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn certificates_reach_only_their_gateway_and_never_rest_in_clear() {
    let ca = TestCa::new("e2e-certs");
    let leaf = ca.leaf("api", &["api.example.com"]);
    let other = ca.leaf("other", &["other.example.com"]);
    let (chain, key) = (read(&leaf.cert), read(&leaf.key));
    let mut gh = Gatehouse::up("tls-certs", &[]).await;
    gh.ok("PUT", "/mgmt/gateways/edge", Some(json!({}))).await;
    gh.ok("PUT", "/mgmt/gateways/far", Some(json!({}))).await;

    // The certificate: its leaf described as openssl sees it, the key never shown.
    let (status, cert) = gh
        .mgmt(
            "PUT",
            "/mgmt/certificates/api-cert",
            Some(json!({"data": format!("{chain}{key}")})),
        )
        .await;
    assert_eq!(status, 201, "{cert}");
    assert_eq!(cert["thumbprint"], openssl_sha1(&leaf.cert));
    assert!(
        cert["subject"]
            .as_str()
            .unwrap()
            .contains("CN=api.example.com"),
        "{cert}"
    );
    assert_eq!(cert["hasPrivateKey"], true);
    let got = gh.ok("GET", "/mgmt/certificates/api-cert", None).await;
    assert_eq!(got, cert);
    let listed = gh.ok("GET", "/mgmt/certificates", None).await;
    for shown in [&cert, &listed] {
        assert!(shown.get("data").is_none() || shown["data"].is_null());
        assert_no_key("a GET answer", shown.to_string().as_bytes(), &key);
    }
    gh.ok(
        "PUT",
        "/mgmt/certificates/root",
        Some(json!({"data": read(&ca.cert)})),
    )
    .await;

    // Bad input: a 400 that names the problem.
    let (status, body) = gh
        .mgmt(
            "PUT",
            "/mgmt/certificates/pfx",
            Some(json!({"data": "MIIKZAIBAzCCCh4GCSqGSIb3DQEHAaCCCg8=", "password": "x"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.to_string()
            .contains("openssl pkcs12 -in cert.pfx -nodes -out cert.pem"),
        "{body}"
    );
    let (status, body) = gh
        .mgmt(
            "PUT",
            "/mgmt/certificates/mismatch",
            Some(json!({"data": format!("{chain}{}", read(&other.key))})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("does not fit"), "{body}");
    let (status, body) = gh
        .mgmt(
            "PUT",
            "/mgmt/certificates/broken",
            Some(json!({"data": "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "ValidationError");

    // Edge serves api.example.com with it and trusts the root; the built-in gateway has a
    // hostname of its own.
    let hc = gh
        .ok(
            "PUT",
            "/mgmt/gateways/edge/hostnameConfigurations/api",
            Some(
                json!({"hostname": "api.example.com", "certificateId": "api-cert",
                        "negotiateClientCertificate": true}),
            ),
        )
        .await;
    assert_eq!(hc["http2Enabled"], true);
    gh.ok(
        "PUT",
        "/mgmt/gateways/edge/certificateAuthorities/root",
        Some(json!({"isTrusted": true})),
    )
    .await;
    gh.ok(
        "PUT",
        "/mgmt/gateways/built-in/hostnameConfigurations/local",
        Some(json!({"hostname": "*.example.com", "certificateId": "api-cert"})),
    )
    .await;

    // In use: the certificate cannot be deleted.
    let (status, body) = gh.mgmt("DELETE", "/mgmt/certificates/api-cert", None).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.to_string().contains("edge/api"), "{body}");
    let (status, _) = gh.mgmt("DELETE", "/mgmt/certificates/root", None).await;
    assert_eq!(status, 409);

    // The snapshot carries them to edge only.
    let edge_token = gh.gateway_token("edge").await;
    let snap = config(&gh, &edge_token).await;
    let hostnames = snap["tls"]["hostnames"].as_array().unwrap();
    assert_eq!(hostnames.len(), 1, "{}", snap["tls"]);
    assert_eq!(hostnames[0]["hostname"], "api.example.com");
    assert_eq!(hostnames[0]["negotiateClientCertificate"], true);
    assert_eq!(hostnames[0]["key"].as_str().unwrap().trim(), key.trim());
    assert_eq!(
        hostnames[0]["certificate"].as_str().unwrap().trim(),
        chain.trim()
    );
    let cas = snap["tls"]["certificateAuthorities"].as_array().unwrap();
    assert_eq!(
        cas[0]["certificate"].as_str().unwrap().trim(),
        read(&ca.cert).trim()
    );
    let far = config(&gh, &gh.gateway_token("far").await).await;
    assert!(
        far.get("tls").is_none(),
        "another gateway got TLS: {}",
        far["tls"]
    );
    let built_in = gh
        .ok(
            "GET",
            "/mgmt/gateways/built-in/hostnameConfigurations",
            None,
        )
        .await;
    assert_eq!(built_in["value"][0]["hostname"], "*.example.com");
    let built_in = config(&gh, &gh.gateway_token("built-in").await).await;
    let names: Vec<&str> = built_in["tls"]["hostnames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["hostname"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["*.example.com"], "the built-in gateway has its own");
    assert!(built_in["tls"].get("certificateAuthorities").is_none());

    // A self-hosted edge applies it, and its backups hold the key sealed only.
    let backup = crate::support::temp_dir("tls-certs-backup");
    let mut gw = GatewayProc::spawn(
        "tls-certs-gw",
        &gh.control(""),
        &edge_token,
        &["--backup-dir", backup.to_str().unwrap()],
    );
    let revision = gh.ok("GET", "/mgmt/gateways/edge/status", None).await["currentRevision"]
        .as_u64()
        .unwrap();
    gw.wait_ready(Duration::from_secs(15), |r| {
        r["state"] == "ready" && r["configRevision"].as_u64() >= Some(revision)
    })
    .await;
    let opener = Backup::open(&backup, &GatewayToken::parse(&edge_token).unwrap(), None).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let newest = loop {
        if let Ok(loaded) = opener.load_newest()
            && let Some((snapshot, _)) = loaded.found
            && !snapshot.tls.is_empty()
        {
            break snapshot;
        }
        assert!(
            Instant::now() < deadline,
            "no backup with the TLS part\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The backup does hold the key (opened with the gateway's key) ...
    assert_eq!(newest.tls.hostnames[0].key.trim(), key.trim());
    // ... and no file of the backup volume shows it.
    let backup_files = files(&backup);
    assert!(!backup_files.is_empty());
    for path in &backup_files {
        assert_no_key(
            &path.display().to_string(),
            &std::fs::read(path).unwrap(),
            &key,
        );
    }
    assert!(
        !gw.log().contains("cannot be used"),
        "the gateway refused a certificate:\n{}",
        gw.log()
    );
    gw.kill9();

    // The control plane's store holds it sealed: no file under the data directory shows it.
    gh.signal("KILL");
    gh.wait();
    for path in files(&gh.data) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("gatehouse.db") {
            assert_no_key(&name, &std::fs::read(&path).unwrap(), &key);
        }
    }
    gh.start().await;

    // Unassigned and unused, the certificate can go; its removal reaches edge.
    gh.ok(
        "DELETE",
        "/mgmt/gateways/edge/hostnameConfigurations/api",
        None,
    )
    .await;
    gh.ok(
        "DELETE",
        "/mgmt/gateways/built-in/hostnameConfigurations/local",
        None,
    )
    .await;
    let (status, _) = gh.mgmt("DELETE", "/mgmt/certificates/api-cert", None).await;
    assert_eq!(status, 204);
    let snap = config(&gh, &edge_token).await;
    assert!(snap["tls"].get("hostnames").is_none(), "{}", snap["tls"]);
    assert_eq!(
        snap["tls"]["certificateAuthorities"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    std::fs::remove_dir_all(backup).ok();
}
