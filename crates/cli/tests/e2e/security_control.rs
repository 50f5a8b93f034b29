//! Regression tests for the control plane and portal findings of the security review (issue
//! #12): the gateway link writes nothing and says nothing specific for a refused token, the
//! portal's sign-in and sign-up throttles hold under concurrency, and the Swagger UI page
//! carries the security headers.

use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use crate::support::Gatehouse;

/// A token for `gateway` signed with `key`, as `gatehouse gateway token` makes them.
fn sign(gateway: &str, expiry: &str, key: &str) -> String {
    let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA512, key.as_bytes());
    let tag = aws_lc_rs::hmac::sign(&k, format!("{gateway}\n{expiry}").as_bytes());
    format!(
        "GatewayKey {gateway}&{expiry}&{}",
        base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
    )
}

async fn gateway_with_token(gh: &Gatehouse, id: &str) -> (String, String) {
    gh.ok("PUT", &format!("/mgmt/gateways/{id}"), Some(json!({})))
        .await;
    let token = gh
        .ok(
            "POST",
            &format!("/mgmt/gateways/{id}/generateToken"),
            Some(json!({})),
        )
        .await["value"]
        .as_str()
        .unwrap()
        .to_owned();
    let keys = gh
        .ok("POST", &format!("/mgmt/gateways/{id}/listKeys"), None)
        .await;
    (token, keys["primary"].as_str().unwrap().to_owned())
}

fn instance_names(status: &Value) -> Vec<String> {
    status["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Finding 6: forged link tokens naming an existing gateway, with instance headers, used to
/// create instance records and mark a real instance `tokenRejected`. Now they leave no trace
/// in the fleet status, only a count.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_link_tokens_leave_no_trace_in_the_fleet_status() {
    let gh = Gatehouse::up("sec-forged-link", &[]).await;
    let (token, _) = gateway_with_token(&gh, "edge").await;
    // A real instance reports in with the real token.
    let beat = gh
        .http
        .post(gh.control("/gateway/v1/heartbeat"))
        .header("authorization", &token)
        .header("x-gatehouse-instance", "pod-1")
        .json(
            &json!({"instance": "pod-1", "version": "1", "state": "ready",
                      "appliedRevision": 0, "heartbeatIntervalSeconds": 60}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(beat.status(), 204);
    let before = gh.ok("GET", "/mgmt/gateways/edge/status", None).await;
    assert_eq!(instance_names(&before), ["pod-1"]);

    // 300 forged calls naming the gateway, each with an instance header: new names and the
    // real instance's name, on every link endpoint.
    let forged = sign("edge", "209901010000", "not the key");
    let mut calls = Vec::new();
    for i in 0..300 {
        let instance = if i % 3 == 0 {
            "pod-1".to_owned()
        } else {
            format!("ghost-{i}")
        };
        let (method, path) = match i % 3 {
            0 => (reqwest::Method::GET, "/gateway/v1/config?wait=0"),
            1 => (reqwest::Method::POST, "/gateway/v1/heartbeat"),
            _ => (reqwest::Method::POST, "/gateway/v1/telemetry"),
        };
        let req = gh
            .http
            .request(method, gh.control(path))
            .header("authorization", &forged)
            .header("x-gatehouse-instance", instance.clone())
            .header("content-type", "application/json")
            .body(json!({"instance": instance}).to_string());
        calls.push(tokio::spawn(async move {
            req.send().await.unwrap().status().as_u16()
        }));
    }
    for call in calls {
        assert_eq!(call.await.unwrap(), 401);
    }

    let after = gh.ok("GET", "/mgmt/gateways/edge/status", None).await;
    assert_eq!(instance_names(&after), ["pod-1"]);
    let pod = &after["instances"][0];
    assert_ne!(pod["state"], "tokenRejected", "{after}");
    assert!(
        pod.get("tokenRejected").is_none_or(Value::is_null),
        "{after}"
    );
    // The refusals are counted against the gateway, in memory.
    assert_eq!(after["rejectedTokens"], 300, "{after}");
    assert_eq!(after["lastTokenRejection"], "invalidSignature", "{after}");

    // A gateway that has no keys yet gets none from forged calls naming it (no write at all:
    // the store's revision stays put).
    gh.ok("PUT", "/mgmt/gateways/fresh", Some(json!({}))).await;
    let revision =
        gh.ok("GET", "/mgmt/gateways/fresh/status", None).await["currentRevision"].clone();
    for _ in 0..10 {
        let resp = gh
            .http
            .post(gh.control("/gateway/v1/heartbeat"))
            .header("authorization", sign("fresh", "209901010000", "guess"))
            .header("x-gatehouse-instance", "ghost")
            .json(&json!({"instance": "ghost"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
    }
    let fresh = gh.ok("GET", "/mgmt/gateways/fresh/status", None).await;
    assert_eq!(fresh["currentRevision"], revision);
    assert_eq!(instance_names(&fresh), Vec::<String>::new());
    assert_eq!(fresh["rejectedTokens"], 10);

    let out = gh.cli(&["gateway", "status", "edge"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("pod-1"), "{text}");
    assert!(!text.contains("ghost"), "{text}");
    assert!(!text.contains("tokenRejected"), "{text}");
    assert!(text.contains("300 link call(s) refused"), "{text}");
}

/// Finding 15: link errors told an unknown gateway from a bad signature (and from an expired or
/// malformed token), so gateway ids could be enumerated. Now the caller gets one answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn link_errors_do_not_tell_which_check_failed() {
    let gh = Gatehouse::up("sec-link-errors", &[]).await;
    let (_, key) = gateway_with_token(&gh, "edge").await;
    let tokens = [
        (
            "unknown gateway",
            sign("nosuchgateway", "209901010000", &key),
        ),
        ("bad signature", sign("edge", "209901010000", "not the key")),
        ("expired", sign("edge", "202001010000", &key)),
        ("malformed", "GatewayKey edge&bogus".to_owned()),
    ];
    let mut answers = Vec::new();
    for (what, token) in &tokens {
        for path in ["/gateway/v1/config?wait=0", "/gateway/v1/heartbeat"] {
            let req = if path.contains("config") {
                gh.http.get(gh.control(path))
            } else {
                gh.http
                    .post(gh.control(path))
                    .json(&json!({"instance": "x"}))
            };
            let resp = req.header("authorization", token).send().await.unwrap();
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap();
            answers.push((what, path, status, body));
        }
    }
    let (_, _, status, body) = &answers[0];
    assert_eq!(*status, 401);
    for (what, path, s, b) in &answers {
        assert_eq!(
            (s, b),
            (status, body),
            "{what} on {path} answers differently"
        );
    }
    // The one answer still tells the gateway's operator what to do.
    let message: Value = serde_json::from_str(body).unwrap();
    let message = message["error"]["message"].as_str().unwrap();
    assert!(message.contains("expired"), "{message}");
    assert!(message.contains("gatehouse gateway token"), "{message}");
    // The detail is in the control plane's log.
    let log = gh.log();
    assert!(log.contains("which does not exist"), "{log}");
    assert!(log.contains("expired at"), "{log}");
    assert!(log.contains("matches neither gateway key"), "{log}");
    // Unknown gateways are not counted (no memory for made-up ids); the known one is.
    let st = gh.ok("GET", "/mgmt/gateways/edge/status", None).await;
    assert_eq!(st["rejectedTokens"], 4, "{st}");
}

const PASSWORD: &str = "a long and secret passphrase";

fn form_encode(form: &[(&str, &str)]) -> String {
    let enc = |text: &str| -> String {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    form.iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A browser-like portal visitor: its cookies and the CSRF token of its last form. Cheap to
/// clone, so one visitor can send many requests at once.
#[derive(Clone)]
struct Visitor {
    http: reqwest::Client,
    base: String,
    cookies: std::collections::BTreeMap<String, String>,
    csrf: String,
}

struct Answer {
    status: u16,
    location: String,
    body: String,
    cookies: Vec<String>,
}

impl Visitor {
    fn new(gh: &Gatehouse) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: gh.control(""),
            cookies: Default::default(),
            csrf: String::new(),
        }
    }

    /// Sends without remembering anything: safe to call from many tasks at once.
    async fn send(&self, method: &str, path: &str, form: Option<&[(&str, &str)]>) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if !self.cookies.is_empty() {
            let cookie: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            req = req.header("cookie", cookie.join("; "));
        }
        if let Some(form) = form {
            req = req
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form_encode(form));
        }
        let resp = req.send().await.unwrap();
        let cookies = resp
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        Answer {
            status: resp.status().as_u16(),
            location: resp
                .headers()
                .get("location")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default(),
            body: resp.text().await.unwrap(),
            cookies,
        }
    }

    /// Takes the cookies and the form's CSRF token of an answer.
    fn keep(&mut self, answer: &Answer) {
        for text in &answer.cookies {
            let (name, value) = text.split(';').next().unwrap().split_once('=').unwrap();
            if value.is_empty() || text.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        let marker = "name=\"csrf\" value=\"";
        if let Some(start) = answer.body.find(marker) {
            let start = start + marker.len();
            let end = answer.body[start..].find('"').unwrap() + start;
            self.csrf = answer.body[start..end].to_owned();
        }
    }

    async fn visit(&mut self, path: &str) -> Answer {
        let a = self.send("GET", path, None).await;
        self.keep(&a);
        a
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Answer {
        let csrf = self.csrf.clone();
        let mut form = form.to_vec();
        form.push(("csrf", &csrf));
        let a = self.send("POST", path, Some(&form)).await;
        self.keep(&a);
        a
    }

    async fn sign_up(&mut self, email: &str) {
        self.visit("/portal/signup").await;
        let a = self
            .post(
                "/portal/signup",
                &[("email", email), ("password", PASSWORD)],
            )
            .await;
        assert_eq!(a.status, 303, "{}", a.body);
    }

    async fn sign_in(&mut self, email: &str, password: &str) -> Answer {
        self.visit("/portal/signin").await;
        let a = self
            .post(
                "/portal/signin",
                &[("email", email), ("password", password)],
            )
            .await;
        if a.status == 303 {
            self.visit("/portal/profile").await;
        }
        a
    }
}

fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Finding 7: the sign-in throttle counted a failure only after argon2 finished, so 59
/// concurrent wrong passwords got 48 checks against a limit of 5 per account. Now each attempt
/// is counted before its check.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_wrong_passwords_get_at_most_the_account_limit_of_checks() {
    let gh = Gatehouse::up("sec-signin-race", &[]).await;
    let mut owner = Visitor::new(&gh);
    owner.sign_up("carol@example.com").await;

    let mut guesser = Visitor::new(&gh);
    guesser.visit("/portal/signin").await;
    let guesses: Vec<_> = (0..59)
        .map(|i| {
            let guesser = guesser.clone();
            tokio::spawn(async move {
                let password = format!("wrong guess number {i}");
                let form = [
                    ("csrf", guesser.csrf.as_str()),
                    ("email", "carol@example.com"),
                    ("password", password.as_str()),
                ];
                guesser.send("POST", "/portal/signin", Some(&form)).await
            })
        })
        .collect();
    let (mut checked, mut throttled) = (0, 0);
    for guess in guesses {
        let a = guess.await.unwrap();
        match a.status {
            401 => checked += 1,
            429 => {
                assert!(
                    a.body.contains("Too many failed sign-in attempts"),
                    "{}",
                    a.body
                );
                throttled += 1;
            }
            other => panic!("a guess answered {other}: {}", a.body),
        }
    }
    println!("59 concurrent wrong passwords: {checked} checked, {throttled} throttled");
    assert!(
        checked <= 5,
        "{checked} passwords were checked, the account limit is 5"
    );
    assert!(checked >= 1);
    assert_eq!(checked + throttled, 59);

    // Until the window passes, even the right password is refused.
    let a = guesser.sign_in("carol@example.com", PASSWORD).await;
    assert_eq!(a.status, 429, "{}", a.body);
    assert!(!guesser.cookies.contains_key("gh_session"));
}

/// Finding 8: sign-up was not throttled, each cost an argon2 hash (19 MiB) and a configuration
/// revision every gateway fetched. Now sign-ups are throttled per address, hashing is bounded,
/// and accounts do not touch the gateways' configuration.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_sign_ups_are_throttled_and_move_no_gateway_revision() {
    let gh = Gatehouse::up("sec-signup-flood", &[]).await;
    gh.simple_api("echo", "echo", "http://127.0.0.1:9", true)
        .await;
    let readyz = || async {
        gh.http
            .get(gh.admin("/readyz"))
            .send()
            .await
            .ok()?
            .json::<Value>()
            .await
            .ok()
    };
    let revision_now =
        gh.ok("GET", "/mgmt/gateways/built-in/status", None).await["currentRevision"]
            .as_u64()
            .unwrap();
    gh.eventually(Duration::from_secs(10), || async {
        readyz()
            .await
            .is_some_and(|r| r["configRevision"] == revision_now)
    })
    .await;
    let rss_before = vm_rss_kib(gh.pid());

    let mut visitor = Visitor::new(&gh);
    visitor.visit("/portal/signup").await;
    let sign_ups: Vec<_> = (0..60)
        .map(|i| {
            let visitor = visitor.clone();
            tokio::spawn(async move {
                let email = format!("flood{i}@example.com");
                let form = [
                    ("csrf", visitor.csrf.as_str()),
                    ("email", email.as_str()),
                    ("password", PASSWORD),
                ];
                visitor.send("POST", "/portal/signup", Some(&form)).await
            })
        })
        .collect();
    let (mut created, mut throttled) = (0, 0);
    for s in sign_ups {
        let a = s.await.unwrap();
        match a.status {
            303 => created += 1,
            429 => throttled += 1,
            other => panic!("a sign-up answered {other}: {}", a.body),
        }
    }
    let rss_after = vm_rss_kib(gh.pid());
    println!(
        "60 parallel sign-ups: {created} created, {throttled} throttled; VmRSS {rss_before} KiB -> {rss_after} KiB"
    );
    assert!(
        (1..=10).contains(&created),
        "{created} sign-ups went through"
    );
    let users = gh.ok("GET", "/mgmt/users", None).await;
    assert_eq!(users["value"].as_array().unwrap().len(), created);
    assert!(
        rss_after < rss_before + 100 * 1024,
        "VmRSS grew from {rss_before} KiB to {rss_after} KiB"
    );

    // No gateway sees a new revision for accounts.
    let status = gh.ok("GET", "/mgmt/gateways/built-in/status", None).await;
    assert_eq!(status["currentRevision"], revision_now, "{status}");
    let r = readyz().await.unwrap();
    assert_eq!(r["configRevision"], revision_now, "{r}");

    // The accounts work: sign-in finds them (by the email index).
    let mut user = Visitor::new(&gh);
    let email = users["value"][0]["email"].as_str().unwrap().to_owned();
    let a = user.sign_in(&email, PASSWORD).await;
    assert_eq!(a.status, 303, "{}", a.body);
    assert_eq!(user.visit("/portal/profile").await.status, 200);
}

/// Finding 11: changing the password left the user's other sessions alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn changing_the_password_ends_the_other_sessions() {
    let gh = Gatehouse::up("sec-password-sessions", &[]).await;
    let mut laptop = Visitor::new(&gh);
    laptop.sign_up("dana@example.com").await;
    assert_eq!(
        laptop.sign_in("dana@example.com", PASSWORD).await.status,
        303
    );
    let mut stolen = Visitor::new(&gh);
    assert_eq!(
        stolen.sign_in("dana@example.com", PASSWORD).await.status,
        303
    );
    assert_eq!(stolen.visit("/portal/profile").await.status, 200);
    let old_laptop_cookie = laptop.cookies["gh_session"].clone();

    let new_password = "another long secret passphrase";
    laptop.visit("/portal/profile").await;
    let a = laptop
        .post(
            "/portal/profile/password",
            &[("current", PASSWORD), ("new_password", new_password)],
        )
        .await;
    assert_eq!(a.status, 303, "{}", a.body);
    // The session that changed it goes on, under a new cookie.
    assert_ne!(laptop.cookies["gh_session"], old_laptop_cookie);
    assert_eq!(laptop.visit("/portal/profile").await.status, 200);

    // The other one is over: sent to sign in, and its forms are refused.
    let csrf = stolen.csrf.clone();
    let a = stolen.send("GET", "/portal/profile", None).await;
    assert_eq!(a.status, 303);
    assert!(a.location.starts_with("/portal/signin"), "{}", a.location);
    let form = [
        ("csrf", csrf.as_str()),
        ("current", new_password),
        ("new_password", PASSWORD),
    ];
    let a = stolen
        .send("POST", "/portal/profile/password", Some(&form))
        .await;
    assert!(
        a.status == 401 || a.status == 403,
        "{}: {}",
        a.status,
        a.body
    );
    // So is the laptop's old cookie.
    let mut replay = Visitor::new(&gh);
    replay
        .cookies
        .insert("gh_session".into(), old_laptop_cookie);
    assert_eq!(
        replay.send("GET", "/portal/profile", None).await.status,
        303
    );

    let mut again = Visitor::new(&gh);
    assert_eq!(
        again.sign_in("dana@example.com", new_password).await.status,
        303
    );
}

/// Finding 16: `subscriptionsLimit` was checked, then the subscription created, so concurrent
/// subscribes exceeded it. Several rounds, since a race does not show every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_subscribes_respect_the_subscriptions_limit() {
    let gh = Gatehouse::up("sec-subscribe-race", &[]).await;
    gh.simple_api("echo", "echo", "http://127.0.0.1:9", false)
        .await;
    let mut user = Visitor::new(&gh);
    user.sign_up("erin@example.com").await;
    assert_eq!(user.sign_in("erin@example.com", PASSWORD).await.status, 303);
    for round in 0..5 {
        let product = format!("solo{round}");
        gh.ok(
            "PUT",
            &format!("/mgmt/products/{product}"),
            Some(json!({"displayName": "Solo", "state": "published",
                        "subscriptionRequired": true, "approvalRequired": false,
                        "subscriptionsLimit": 1})),
        )
        .await;
        gh.ok("PUT", &format!("/mgmt/products/{product}/apis/echo"), None)
            .await;
        let subscribes: Vec<_> = (0..20)
            .map(|_| {
                let (user, path) = (
                    user.clone(),
                    format!("/portal/products/{product}/subscribe"),
                );
                tokio::spawn(async move {
                    let form = [("csrf", user.csrf.as_str()), ("accept_terms", "yes")];
                    user.send("POST", &path, Some(&form)).await
                })
            })
            .collect();
        let mut accepted = 0;
        for s in subscribes {
            let a = s.await.unwrap();
            match a.status {
                303 => accepted += 1,
                400 => assert!(a.body.contains("its limit"), "{}", a.body),
                other => panic!("a subscribe answered {other}: {}", a.body),
            }
        }
        let subs = gh.ok("GET", "/mgmt/subscriptions", None).await;
        let held = subs["value"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["scope"] == format!("/products/{product}"))
            .count();
        assert_eq!((held, accepted), (1, 1), "round {round}");
    }
}

/// Finding 17: `/mgmt/docs` had no content security policy and could be framed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_docs_carry_the_security_headers() {
    let gh = Gatehouse::up("sec-docs-headers", &[]).await;
    for path in [
        "/mgmt/docs",
        "/mgmt/docs/",
        "/mgmt/docs/swagger-ui-bundle.js",
        "/mgmt/docs/swagger-init.js",
        "/mgmt/docs/swagger-ui.css",
    ] {
        let resp = gh.http.get(gh.control(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let h = resp.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-eval"), "{path}: {csp}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "same-origin", "{path}");
        let page = resp.text().await.unwrap();
        if path.starts_with("/mgmt/docs") && !path.contains('.') {
            // Every script of the page comes from this origin: the policy allows no inline one.
            let scripts: Vec<&str> = page.split("<script").skip(1).collect();
            assert_eq!(scripts.len(), 2, "{page}");
            for s in scripts {
                let tag = &s[..s.find('>').unwrap()];
                assert!(
                    tag.contains("src=\"/mgmt/docs/"),
                    "inline or foreign script: {s}"
                );
                assert!(
                    s[s.find('>').unwrap() + 1..].starts_with("</script>"),
                    "{s}"
                );
            }
        }
        if path.ends_with("swagger-init.js") {
            assert!(page.contains("SwaggerUIBundle"), "{page}");
            assert!(page.contains("/mgmt/openapi.json"), "{page}");
        }
    }
}

/// Finding 17, in a browser: Swagger UI still renders under its policy, with no violation
/// reported. Needs `$GATEHOUSE_CHROMIUM` (skipped with a note without it, outside CI).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_docs_render_under_their_policy_in_a_browser() {
    let Some(chromium) = crate::support::browser("the Swagger UI check") else {
        return;
    };
    let gh = Gatehouse::up("sec-docs-browser", &[]).await;
    let artifacts = crate::support::repo_root().join("test-artifacts/docs");
    let summary = crate::support::run_browser_script(
        "docs.mjs",
        &chromium,
        &artifacts,
        &[("DOCS_URL", gh.control("/mgmt/docs"))],
        "DOCS OK ",
        || gh.log(),
    )
    .await;
    assert!(
        summary["title"]
            .as_str()
            .unwrap()
            .contains("Gatehouse management API"),
        "{summary}"
    );
    assert!(summary["operations"].as_u64().unwrap() > 50, "{summary}");
}

/// Found along finding 6: a config call held open (long poll) was authenticated only when it
/// started, so a gateway whose key was regenerated meanwhile still got the next snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_config_call_is_refused_once_its_key_is_regenerated() {
    let gh = Gatehouse::up("sec-held-poll", &[]).await;
    let (token, _) = gateway_with_token(&gh, "edge").await;
    let first = gh
        .http
        .get(gh.control("/gateway/v1/config?wait=0"))
        .header("authorization", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    let held = {
        let req = gh
            .http
            .get(gh.control("/gateway/v1/config?wait=25"))
            .header("authorization", &token)
            .header("if-none-match", etag);
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let status = req.send().await.unwrap().status().as_u16();
            (status, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    gh.ok(
        "POST",
        "/mgmt/gateways/edge/regenerateKey",
        Some(json!({"keyType": "primary"})),
    )
    .await;
    let (status, took) = held.await.unwrap();
    assert_eq!(status, 401);
    assert!(took < Duration::from_secs(20), "{took:?}");
}
