//! The developer portal end to end: the real `gatehouse up`, a real backend, real HTTP.
//!
//! - `browser_journey`: Debian's Chromium, driven by npm's playwright-core through
//!   `tests/browser/journey.mjs`, goes through the whole journey on a phone-sized screen:
//!   search, reference, sign up and in, subscribe (approved by the admin through the management
//!   API), reveal the key, Try it through the gateway to the backend, regenerate the key (the
//!   old one gets 401), sign out. Screenshots land in `test-artifacts/portal/`. Needs
//!   `$GATEHOUSE_CHROMIUM` (scripts/test sets it); without it the test is skipped with a note,
//!   except under CI, where that fails.
//! - Over plain HTTP: two users' sessions keep apart, forged posts are refused, branding set
//!   through `/mgmt/portal/settings` shows, and admins manage users, groups and visibility.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "e2e/support.rs"]
mod support;

use std::collections::HashMap;

use serde_json::json;
use support::{Backend, Gatehouse, fixture};

const PASSWORD: &str = "a long and secret passphrase";

/// Imports an OpenAPI fixture as API `id` at `path`.
async fn import(gh: &Gatehouse, id: &str, file: &str, service_url: Option<&str>) {
    let text = std::fs::read_to_string(fixture(file)).unwrap();
    let mut body = json!({"path": id, "import": {"format": "openapi", "value": text}});
    if let Some(url) = service_url {
        body["serviceUrl"] = url.into();
    }
    gh.ok("PUT", &format!("/mgmt/apis/{id}"), Some(body)).await;
}

async fn product(gh: &Gatehouse, id: &str, approval: bool, apis: &[&str]) {
    gh.ok(
        "PUT",
        &format!("/mgmt/products/{id}"),
        Some(json!({
            "displayName": format!("{id} plan"),
            "description": "Everything you need to **get started**.",
            "terms": "Be kind to the pets.",
            "approvalRequired": approval,
            "state": "published",
        })),
    )
    .await;
    for api in apis {
        gh.ok("PUT", &format!("/mgmt/products/{id}/apis/{api}"), None)
            .await;
    }
}

use support::repo_root;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_journey() {
    let Some(chromium) = support::browser("the portal's browser journey") else {
        return;
    };
    let root = repo_root();

    let backend = Backend::start().await;
    let gh = Gatehouse::up("portal-journey", &[]).await;
    import(
        &gh,
        "petstore",
        "petstore-openapi3.yaml",
        Some(&backend.url()),
    )
    .await;
    import(&gh, "stapi", "star-trek-openapi3.yaml", None).await;
    product(&gh, "starter", true, &["petstore", "stapi"]).await;

    let artifacts = root.join("test-artifacts/portal");
    let summary = support::run_browser_script(
        "journey.mjs",
        &chromium,
        &artifacts,
        &[
            ("PORTAL_URL", gh.control("/portal/")),
            ("CONTROL_URL", gh.control("")),
            ("ADMIN_TOKEN", gh.token.clone()),
            ("GATEWAY_URL", gh.gateway("")),
            ("API_PATH", "petstore".to_owned()),
            ("PRODUCT_ID", "starter".to_owned()),
        ],
        "JOURNEY OK ",
        || gh.log(),
    )
    .await;

    // Every step left a screenshot.
    let steps = summary["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 12, "{summary}");
    let shots = std::fs::read_dir(&artifacts).unwrap().count();
    assert_eq!(shots, steps.len(), "screenshots in {}", artifacts.display());
    for (step, bytes) in summary["transferred"].as_object().unwrap() {
        assert!(
            bytes.as_u64().unwrap() < 100 * 1024,
            "{step}: {bytes} bytes"
        );
    }

    // Try it reached the backend through the gateway, with the key kept from the backend.
    let tried = backend
        .seen
        .lock()
        .unwrap()
        .iter()
        .find(|r| r.path == "/pets" && r.query.as_deref() == Some("limit=7"))
        .cloned()
        .expect("the backend never saw Try it's call");
    assert_eq!(tried.method, "GET");
    assert!(!tried.headers.contains_key("ocp-apim-subscription-key"));
    assert!(
        tried.headers.contains_key("x-forwarded-for"),
        "not through the gateway"
    );

    // The subscription belongs to the new user, and only the new key works.
    let sub_id = summary["subscriptionId"].as_str().unwrap();
    let sub = gh
        .ok("GET", &format!("/mgmt/subscriptions/{sub_id}"), None)
        .await;
    let users = gh.ok("GET", "/mgmt/users", None).await;
    let user = users["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == summary["email"])
        .unwrap();
    assert_eq!(sub["ownerId"], user["id"]);
    assert_eq!(sub["state"], "active");
    let keys = gh
        .ok(
            "POST",
            &format!("/mgmt/subscriptions/{sub_id}/listSecrets"),
            None,
        )
        .await;
    assert_eq!(keys["primaryKey"], summary["newKey"]);
    let call = |key: String| {
        let url = gh.gateway("/petstore/pets");
        let http = gh.http.clone();
        async move {
            http.get(url)
                .header("Ocp-Apim-Subscription-Key", key)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        call(summary["oldKey"].as_str().unwrap().to_owned()).await,
        401
    );
    assert_eq!(
        call(summary["newKey"].as_str().unwrap().to_owned()).await,
        200
    );
}

/// A browser-like HTTP session: cookies, redirects not followed, CSRF tokens read from forms.
struct Session {
    http: reqwest::Client,
    base: String,
    cookies: HashMap<String, String>,
}

struct Answer {
    status: u16,
    location: String,
    body: String,
}

impl Answer {
    fn csrf(&self) -> String {
        let marker = "name=\"csrf\" value=\"";
        let start = self.body.find(marker).expect("no form on the page") + marker.len();
        let end = self.body[start..].find('"').unwrap() + start;
        self.body[start..end].to_owned()
    }
}

impl Session {
    fn new(gh: &Gatehouse) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: gh.control(""),
            cookies: HashMap::new(),
        }
    }

    async fn send(&mut self, method: &str, path: &str, form: Option<&[(&str, &str)]>) -> Answer {
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
                .body(
                    form.iter()
                        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                        .collect::<Vec<_>>()
                        .join("&"),
                );
        }
        let resp = req.send().await.unwrap();
        for value in resp.headers().get_all("set-cookie") {
            let text = value.to_str().unwrap();
            let (name, value) = text.split(';').next().unwrap().split_once('=').unwrap();
            if value.is_empty() || text.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        Answer {
            status: resp.status().as_u16(),
            location: resp
                .headers()
                .get("location")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default(),
            body: resp.text().await.unwrap(),
        }
    }

    async fn get(&mut self, path: &str) -> Answer {
        self.send("GET", path, None).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Answer {
        self.send("POST", path, Some(form)).await
    }

    async fn sign_up_and_in(&mut self, email: &str) -> String {
        let csrf = self.get("/portal/signup").await.csrf();
        let a = self
            .post(
                "/portal/signup",
                &[("csrf", &csrf), ("email", email), ("password", PASSWORD)],
            )
            .await;
        assert_eq!(a.status, 303, "{}", a.body);
        let a = self
            .post(
                "/portal/signin",
                &[("csrf", &csrf), ("email", email), ("password", PASSWORD)],
            )
            .await;
        assert_eq!(a.status, 303, "{}", a.body);
        self.get("/portal/profile").await.csrf()
    }

    /// Subscribes to `product`; returns the subscription id (from the profile page).
    async fn subscribe(&mut self, csrf: &str, product: &str) -> String {
        let a = self
            .post(
                &format!("/portal/products/{product}/subscribe"),
                &[("csrf", csrf), ("accept_terms", "yes")],
            )
            .await;
        assert_eq!(a.status, 303, "{}", a.body);
        let profile = self.get("/portal/profile").await.body;
        let start = profile.find("id=\"sub-").unwrap() + "id=\"sub-".len();
        profile[start..start + profile[start..].find('"').unwrap()].to_owned()
    }
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn two_users_cannot_see_or_change_each_others_subscriptions() {
    let backend = Backend::start().await;
    let gh = Gatehouse::up("portal-owners", &[]).await;
    import(
        &gh,
        "petstore",
        "petstore-openapi3.yaml",
        Some(&backend.url()),
    )
    .await;
    product(&gh, "open", false, &["petstore"]).await;

    let mut alice = Session::new(&gh);
    let alice_csrf = alice.sign_up_and_in("alice@example.com").await;
    let alice_sub = alice.subscribe(&alice_csrf, "open").await;
    let keys = alice
        .post(
            &format!("/portal/subscriptions/{alice_sub}/keys"),
            &[("csrf", &alice_csrf)],
        )
        .await;
    assert_eq!(keys.status, 200);
    let secrets = gh
        .ok(
            "POST",
            &format!("/mgmt/subscriptions/{alice_sub}/listSecrets"),
            None,
        )
        .await;
    let alice_key = secrets["primaryKey"].as_str().unwrap().to_owned();
    assert!(keys.body.contains(&alice_key));

    let mut bob = Session::new(&gh);
    let bob_csrf = bob.sign_up_and_in("bob@example.com").await;
    let bob_sub = bob.subscribe(&bob_csrf, "open").await;
    let profile = bob.get("/portal/profile").await.body;
    assert!(profile.contains(&bob_sub));
    assert!(!profile.contains(&alice_sub) && !profile.contains("alice@example.com"));
    for (action, extra) in [
        ("keys", None),
        ("regenerate", Some(("key", "primary"))),
        ("cancel", None),
    ] {
        let mut form = vec![("csrf", bob_csrf.as_str())];
        form.extend(extra);
        let a = bob
            .post(
                &format!("/portal/subscriptions/{alice_sub}/{action}"),
                &form,
            )
            .await;
        assert_eq!(a.status, 404, "{action}: {}", a.body);
        assert!(!a.body.contains(&alice_key));
    }
    // A forged post (no token, or Bob's token in Alice's session) changes nothing either.
    for token in [None, Some(bob_csrf.as_str())] {
        let mut form = vec![("key", "primary")];
        if let Some(t) = token {
            form.push(("csrf", t));
        }
        let a = alice
            .post(
                &format!("/portal/subscriptions/{alice_sub}/regenerate"),
                &form,
            )
            .await;
        assert_eq!(a.status, 403, "{}", a.body);
    }
    let after = gh
        .ok(
            "POST",
            &format!("/mgmt/subscriptions/{alice_sub}/listSecrets"),
            None,
        )
        .await;
    assert_eq!(after["primaryKey"], secrets["primaryKey"]);
    let sub = gh
        .ok("GET", &format!("/mgmt/subscriptions/{alice_sub}"), None)
        .await;
    assert_eq!(sub["state"], "active");
    // Alice's key still works; the anonymous pages never show it.
    let status = gh
        .http
        .get(gh.gateway("/petstore/pets"))
        .header("Ocp-Apim-Subscription-Key", &alice_key)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    let mut anonymous = Session::new(&gh);
    for path in [
        "/portal/",
        "/portal/products",
        "/portal/products/open",
        "/portal/apis",
        "/portal/apis/petstore",
        "/portal/apis/petstore/operations/listPets",
    ] {
        let a = anonymous.get(path).await;
        assert_eq!(a.status, 200, "{path}");
        assert!(
            !a.body.contains(&alice_key) && !a.body.contains("alice@example.com"),
            "{path}"
        );
    }
    // Alice cancels her own subscription; her key stops working.
    let a = alice
        .post(
            &format!("/portal/subscriptions/{alice_sub}/cancel"),
            &[("csrf", &alice_csrf)],
        )
        .await;
    assert_eq!(a.status, 303);
    let sub = gh
        .ok("GET", &format!("/mgmt/subscriptions/{alice_sub}"), None)
        .await;
    assert_eq!(sub["state"], "cancelled");
}

#[tokio::test]
async fn branding_set_through_the_management_api_shows_in_the_portal() {
    let gh = Gatehouse::up("portal-branding", &[]).await;
    let defaults = gh.ok("GET", "/mgmt/portal/settings", None).await;
    assert_eq!(defaults["title"], "Developer portal");
    let mut visitor = Session::new(&gh);
    let before = visitor.get("/portal/").await.body;
    assert!(before.contains("Developer portal"));

    let settings = json!({
        "title": "Acme Developer Hub",
        "logoUrl": "https://cdn.example.com/acme.png",
        "primaryColor": "#5a1e8c",
        "backgroundColor": "#fffdf5",
        "textColor": "#222222",
        "footer": "© Acme Corp — support@acme.example",
        "landingMarkdown": "# Build with Acme\n\nOur APIs are **fast**.\n\n<script>alert(1)</script>\n\n- [Status](https://status.acme.example)",
    });
    let saved = gh
        .ok("PUT", "/mgmt/portal/settings", Some(settings.clone()))
        .await;
    assert_eq!(saved["primaryColor"], "#5a1e8c");
    assert_eq!(gh.ok("GET", "/mgmt/portal/settings", None).await, saved);
    let home = visitor.get("/portal/").await.body;
    for expected in [
        "<title>Home · Acme Developer Hub</title>",
        "<h1>Acme Developer Hub</h1>",
        "src=\"https://cdn.example.com/acme.png\"",
        "--primary:#5a1e8c",
        "--bg:#fffdf5",
        "--text:#222222",
        "© Acme Corp — support@acme.example",
        "<h2>Build with Acme</h2>",
        "Our APIs are <strong>fast</strong>.",
        "<a href=\"https://status.acme.example\">Status</a>",
        "&lt;script&gt;alert(1)&lt;/script&gt;",
    ] {
        assert!(
            home.contains(expected),
            "the home page lacks {expected}:\n{home}"
        );
    }
    assert!(!home.contains("<script>alert"));
    assert!(!home.contains("Developer portal"));
    // Other pages carry the branding too.
    let signin = visitor.get("/portal/signin").await.body;
    assert!(signin.contains("Acme Developer Hub") && signin.contains("© Acme Corp"));

    // Unreadable colours, script URLs and unknown properties are refused, with the reason.
    for (bad, target) in [
        (json!({"textColor": "#fefefe"}), "textColor"),
        (json!({"primaryColor": "red"}), "primaryColor"),
        (json!({"logoUrl": "javascript:alert(1)"}), "logoUrl"),
        (json!({"colour": "#000000"}), "body"),
    ] {
        let (status, body) = gh.mgmt("PUT", "/mgmt/portal/settings", Some(bad)).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["details"][0]["target"], target, "{body}");
    }
    assert_eq!(gh.ok("GET", "/mgmt/portal/settings", None).await, saved);
}

#[tokio::test]
async fn admins_manage_users_groups_and_product_visibility() {
    let gh = Gatehouse::up("portal-admin", &[]).await;
    import(&gh, "petstore", "petstore-openapi3.yaml", None).await;
    product(&gh, "partners", false, &["petstore"]).await;

    let mut user = Session::new(&gh);
    user.sign_up_and_in("grace@example.com").await;
    let users = gh.ok("GET", "/mgmt/users", None).await;
    assert_eq!(users["count"], 1);
    let grace = &users["value"][0];
    let id = grace["id"].as_str().unwrap().to_owned();
    assert_eq!(grace["email"], "grace@example.com");
    assert_eq!(grace["state"], "active");
    assert!(grace["registrationDate"].is_string());
    assert!(!users.to_string().contains("argon2") && grace.get("password").is_none());
    // The management API never takes or returns a password.
    let (status, _) = gh
        .mgmt(
            "PATCH",
            &format!("/mgmt/users/{id}"),
            Some(json!({"password": "x"})),
        )
        .await;
    assert_eq!(status, 400);

    // Visible to a group only: Grace sees the product once she is a member.
    gh.ok(
        "PUT",
        "/mgmt/groups/partners",
        Some(json!({"displayName": "Partners"})),
    )
    .await;
    gh.ok("PUT", "/mgmt/products/partners/groups/partners", None)
        .await;
    let groups = gh.ok("GET", "/mgmt/products/partners/groups", None).await;
    assert_eq!(groups["value"][0]["id"], "partners");
    assert_eq!(user.get("/portal/products/partners").await.status, 404);
    assert_eq!(
        Session::new(&gh).get("/portal/apis/petstore").await.status,
        404
    );
    gh.ok("PUT", &format!("/mgmt/groups/partners/users/{id}"), None)
        .await;
    let members = gh.ok("GET", "/mgmt/groups/partners/users", None).await;
    assert_eq!(members["value"][0]["email"], "grace@example.com");
    assert_eq!(user.get("/portal/products/partners").await.status, 200);
    gh.ok("DELETE", &format!("/mgmt/groups/partners/users/{id}"), None)
        .await;
    assert_eq!(user.get("/portal/products/partners").await.status, 404);
    gh.ok("DELETE", "/mgmt/products/partners/groups/partners", None)
        .await;
    assert_eq!(
        Session::new(&gh)
            .get("/portal/products/partners")
            .await
            .status,
        200
    );

    // Blocking signs her out and keeps her out.
    let blocked = gh
        .ok(
            "PATCH",
            &format!("/mgmt/users/{id}"),
            Some(json!({"state": "blocked"})),
        )
        .await;
    assert_eq!(blocked["state"], "blocked");
    let a = user.get("/portal/profile").await;
    assert_eq!(a.status, 303);
    assert!(a.location.starts_with("/portal/signin"));
    let mut again = Session::new(&gh);
    let csrf = again.get("/portal/signin").await.csrf();
    let a = again
        .post(
            "/portal/signin",
            &[
                ("csrf", &csrf),
                ("email", "grace@example.com"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(a.status, 403, "{}", a.body);

    // Deleting a user removes the account; the email can sign up again.
    gh.ok("DELETE", &format!("/mgmt/users/{id}"), None).await;
    assert_eq!(gh.ok("GET", "/mgmt/users", None).await["count"], 0);
    Session::new(&gh).sign_up_and_in("grace@example.com").await;
}
