//! Issue #13, client certificates: a hostname configuration with `negotiateClientCertificate`
//! asks for one; policies read it as `context.Request.Certificate` (Thumbprint, Subject,
//! Verify() against the gateway's CA certificates), and `validate-client-certificate` lets only
//! the right one through. Real binary, real curl presenting real certificates.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use gatehouse_tls::testca::{Issued, TestCa};
use serde_json::json;

use crate::support::{Backend, set_policy, sha1_fingerprint, up_with_https, upload_certificate};

/// What curl got: status, the headers (names in lower case) and the body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `curl` to `https://{host}:{port}{path}` (resolved to 127.0.0.1), trusting `ca`, presenting
/// `client` when given (and when the server asks for one).
fn curl(ca: &Path, host: &str, port: u16, path: &str, client: Option<&Issued>) -> Answer {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-i", "--max-time", "10", "--cacert"])
        .arg(ca)
        .args(["--resolve", &format!("{host}:{port}:127.0.0.1")]);
    if let Some(c) = client {
        cmd.arg("--cert").arg(&c.cert).arg("--key").arg(&c.key);
    }
    let out = cmd
        .arg(format!("https://{host}:{port}{path}"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// The SHA-1 thumbprint as Azure writes it: openssl's fingerprint without the colons.
fn thumbprint(cert: &Path) -> String {
    let line = sha1_fingerprint(cert);
    let (_, hex) = line.split_once('=').unwrap();
    hex.replace(':', "")
}

const WHO: &str = r#"<policies>
    <inbound>
        <base />
        <return-response>
            <set-header name="X-Subject" exists-action="override"><value>@(context.Request.Certificate == null ? "none" : context.Request.Certificate.Subject)</value></set-header>
            <set-header name="X-Verify" exists-action="override"><value>@(context.Request.Certificate == null ? "none" : context.Request.Certificate.Verify().ToString())</value></set-header>
            <set-body>@(context.Request.Certificate == null ? "none" : context.Request.Certificate.Thumbprint)</set-body>
        </return-response>
    </inbound>
    <backend><base /></backend>
    <outbound><base /></outbound>
</policies>"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn policies_see_the_client_certificate_and_validate_client_certificate_checks_it() {
    let server_ca = TestCa::new("e2e-mtls-server");
    let default = server_ca.leaf("default", &["localhost", "127.0.0.1"]);
    let mtls = server_ca.leaf("mtls", &["mtls.gatehouse.test"]);
    let plain = server_ca.leaf("plain", &["plain.gatehouse.test"]);
    // The team's CA is assigned to the gateway; the stranger's is not.
    let team = TestCa::new("e2e-mtls-team");
    let stranger = TestCa::new("e2e-mtls-stranger");
    let alice = team.client("alice", "alice");
    let bob = team.client("bob", "bob");
    let mallory = stranger.client("mallory", "mallory");

    let backend = Backend::start().await;
    let (gh, port) = up_with_https("tls-client-certs", &default).await;
    upload_certificate(&gh, "mtls", &mtls).await;
    upload_certificate(&gh, "plain", &plain).await;
    gh.ok(
        "PUT",
        "/mgmt/certificates/team-ca",
        Some(json!({"data": std::fs::read_to_string(&team.cert).unwrap()})),
    )
    .await;
    gh.ok(
        "PUT",
        "/mgmt/gateways/built-in/certificateAuthorities/team-ca",
        Some(json!({"isTrusted": true})),
    )
    .await;
    gh.ok(
        "PUT",
        "/mgmt/gateways/built-in/hostnameConfigurations/mtls",
        Some(
            json!({"hostname": "mtls.gatehouse.test", "certificateId": "mtls",
                    "negotiateClientCertificate": true}),
        ),
    )
    .await;
    gh.ok(
        "PUT",
        "/mgmt/gateways/built-in/hostnameConfigurations/plain",
        Some(json!({"hostname": "plain.gatehouse.test", "certificateId": "plain"})),
    )
    .await;
    gh.simple_api("who", "who", &backend.url(), true).await;
    set_policy(&gh, "/mgmt/apis/who/policy", WHO).await;
    let alice_thumb = thumbprint(&alice.cert);
    gh.simple_api("guarded", "guarded", &backend.url(), true)
        .await;
    set_policy(
        &gh,
        "/mgmt/apis/guarded/policy",
        &format!(
            r#"<policies><inbound><base />
                <validate-client-certificate validate-trust="false" validate-revocation="false">
                    <identities><identity thumbprint="{alice_thumb}" /></identities>
                </validate-client-certificate>
            </inbound><backend><base /></backend><outbound><base /></outbound></policies>"#
        ),
    )
    .await;
    gh.simple_api("team", "team", &backend.url(), true).await;
    set_policy(
        &gh,
        "/mgmt/apis/team/policy",
        r#"<policies><inbound><base />
                <validate-client-certificate>
                    <identities><identity issuer-certificate-id="team-ca" /></identities>
                </validate-client-certificate>
            </inbound><backend><base /></backend><outbound><base /></outbound></policies>"#,
    )
    .await;

    // Once the hostname configuration and the policy are in force, the thumbprint is seen.
    let ca = server_ca.cert.clone();
    gh.eventually(Duration::from_secs(15), || {
        let (ca, alice, want) = (ca.clone(), alice.clone(), alice_thumb.clone());
        async move {
            let got = curl(&ca, "mtls.gatehouse.test", port, "/who/", Some(&alice));
            got.status == 200 && got.body == want
        }
    })
    .await;
    let seen = curl(&ca, "mtls.gatehouse.test", port, "/who/", Some(&alice));
    assert_eq!(seen.body, alice_thumb);
    assert_eq!(
        seen.header("x-subject"),
        Some("O=Gatehouse Tests, CN=alice"),
        "{:?}",
        seen.headers
    );
    assert_eq!(seen.header("x-verify"), Some("True"));
    // A certificate from a CA the gateway was not given: seen, but Verify() is false.
    let seen = curl(&ca, "mtls.gatehouse.test", port, "/who/", Some(&mallory));
    assert_eq!(seen.body, thumbprint(&mallory.cert));
    assert_eq!(seen.header("x-verify"), Some("False"));
    // No certificate offered: null.
    let seen = curl(&ca, "mtls.gatehouse.test", port, "/who/", None);
    assert_eq!((seen.status, seen.body.as_str()), (200, "none"));
    assert_eq!(seen.header("x-subject"), Some("none"));
    // A hostname that does not ask: null, though curl has one to give.
    let seen = curl(&ca, "plain.gatehouse.test", port, "/who/", Some(&alice));
    assert_eq!((seen.status, seen.body.as_str()), (200, "none"));

    // validate-client-certificate by thumbprint: alice through to the backend, the others not.
    let before = backend.seen.lock().unwrap().len();
    let got = curl(&ca, "mtls.gatehouse.test", port, "/guarded/x", Some(&alice));
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(backend.seen.lock().unwrap().len(), before + 1);
    for (who, client) in [
        ("bob", Some(&bob)),
        ("mallory", Some(&mallory)),
        ("nobody", None),
    ] {
        let got = curl(&ca, "mtls.gatehouse.test", port, "/guarded/x", client);
        assert_eq!(got.status, 401, "{who}: {}", got.body);
        assert!(
            got.body.contains("Invalid client certificate."),
            "{who}: {}",
            got.body
        );
    }
    assert_eq!(
        backend.seen.lock().unwrap().len(),
        before + 1,
        "a refused certificate reached the backend"
    );
    // By issuer, with trust checked: every team certificate, no stranger's.
    for (who, client, want) in [
        ("alice", &alice, 200),
        ("bob", &bob, 200),
        ("mallory", &mallory, 401),
    ] {
        let got = curl(&ca, "mtls.gatehouse.test", port, "/team/x", Some(client));
        assert_eq!(got.status, want, "{who}: {}", got.body);
    }
    let log = gh.log();
    assert!(
        log.contains("ClientCertificateIdentityMismatch")
            || log.contains("ClientCertificateNotTrusted"),
        "the refusal's reason is logged"
    );
}
