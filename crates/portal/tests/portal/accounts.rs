//! Accounts, sessions and CSRF at the router: what anonymous visitors see, forged posts,
//! sign-in throttling, cookie flags, blocked users, and one user's subscriptions hidden from
//! another.

use std::time::Duration;

use axum::http::StatusCode;
use gatehouse_portal::{Limits, PortalConfig};
use gatehouse_store::{Kind, Link};

use crate::support::{Client, setup, setup_with};

const PASSWORD: &str = "correct horse battery";

/// Every page an anonymous visitor can reach, for a portal with one API and one product.
const PUBLIC_PAGES: &[&str] = &[
    "/portal/",
    "/portal/products",
    "/portal/products/starter",
    "/portal/apis",
    "/portal/apis?q=pet",
    "/portal/apis/pets",
    "/portal/apis/pets/operations/listPets",
    "/portal/apis/pets/operations/showPetById",
    "/portal/signin",
    "/portal/signup",
    "/portal/profile",
    "/portal/nothing-here",
];

/// Subscribes the signed-in client to `product`; returns the new subscription's id.
async fn subscribe(client: &mut Client, csrf: &str, product: &str) -> String {
    let page = client
        .post(
            &format!("/portal/products/{product}/subscribe"),
            &[("csrf", csrf), ("name", "mine")],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let profile = client.get("/portal/profile").await;
    let marker = "id=\"sub-";
    let start = profile.body.find(marker).expect("no subscription listed") + marker.len();
    let end = profile.body[start..].find('"').unwrap() + start;
    profile.body[start..end].to_owned()
}

#[tokio::test]
async fn anonymous_pages_show_no_keys_or_user_data() {
    let s = setup("anon").await;
    s.import("pets", "petstore-openapi3.yaml").await;
    s.product("starter", &["pets"], false).await;
    let mut user = s.client();
    let csrf = user.sign_up_and_in("ada@example.com", PASSWORD).await;
    let id = subscribe(&mut user, &csrf, "starter").await;
    let keys = s.control.keys(&id).unwrap();
    let revealed = user
        .post(
            &format!("/portal/subscriptions/{id}/keys"),
            &[("csrf", &csrf)],
        )
        .await;
    assert!(
        revealed.body.contains(&keys.primary_key),
        "{}",
        revealed.body
    );

    let mut anonymous = s.client();
    for path in PUBLIC_PAGES {
        let page = anonymous.get(path).await;
        for secret in [
            keys.primary_key.as_str(),
            keys.secondary_key.as_str(),
            "ada@example.com",
            id.as_str(),
            "mine",
        ] {
            assert!(
                !page.body.contains(secret),
                "{path} ({}) shows '{secret}' to an anonymous visitor",
                page.status
            );
        }
        assert!(
            page.headers["cache-control"]
                .to_str()
                .unwrap()
                .contains("no-store"),
            "{path}"
        );
    }
    let profile = anonymous.get("/portal/profile").await;
    assert_eq!(profile.status, StatusCode::SEE_OTHER);
    assert!(profile.location().starts_with("/portal/signin"));
    // Anonymous posts to a user's subscription get nothing, with or without a token.
    let csrf = anonymous.get("/portal/signin").await.csrf();
    for path in ["keys", "regenerate", "cancel"] {
        let page = anonymous
            .post(
                &format!("/portal/subscriptions/{id}/{path}"),
                &[("csrf", &csrf), ("key", "primary")],
            )
            .await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{path}");
        assert!(!page.body.contains(&keys.primary_key));
    }
}

#[tokio::test]
async fn forged_posts_without_the_csrf_token_are_refused() {
    let s = setup("csrf").await;
    s.import("pets", "petstore-openapi3.yaml").await;
    s.product("starter", &["pets"], false).await;
    let mut user = s.client();
    let csrf = user.sign_up_and_in("bob@example.com", PASSWORD).await;
    let id = subscribe(&mut user, &csrf, "starter").await;
    let keys = s.control.keys(&id).unwrap();

    let forms: Vec<(String, Vec<(&str, &str)>)> = vec![
        (format!("/portal/subscriptions/{id}/keys"), vec![]),
        (
            format!("/portal/subscriptions/{id}/regenerate"),
            vec![("key", "primary")],
        ),
        (format!("/portal/subscriptions/{id}/cancel"), vec![]),
        (
            "/portal/products/starter/subscribe".into(),
            vec![("name", "forged")],
        ),
        (
            "/portal/profile/password".into(),
            vec![("current", PASSWORD), ("new_password", "attacker-chosen")],
        ),
        (
            "/portal/apis/pets/operations/listPets/try".into(),
            vec![("gateway", "0")],
        ),
        ("/portal/signout".into(), vec![]),
    ];
    for (path, fields) in &forms {
        for token in [
            None,
            Some("forged-token-forged-token-forged-token-xyz1"),
            Some(""),
        ] {
            let mut form = fields.clone();
            if let Some(t) = token {
                form.push(("csrf", t));
            }
            let page = user.post(path, &form).await;
            assert_eq!(
                page.status,
                StatusCode::FORBIDDEN,
                "{path} with {token:?}: {}",
                page.body
            );
            assert!(!page.body.contains(&keys.primary_key));
        }
    }
    // Nothing changed: same keys, still subscribed once, still signed in, same password.
    assert_eq!(s.control.keys(&id).unwrap(), keys);
    let profile = user.get("/portal/profile").await;
    assert_eq!(profile.status, StatusCode::OK);
    assert_eq!(profile.body.matches("id=\"sub-").count(), 1);
    assert!(profile.body.contains(">active<"));
    // The anonymous double-submit token: a token from another browser does not do.
    let mut victim = s.client();
    let mut attacker = s.client();
    let attacker_token = attacker.get("/portal/signin").await.csrf();
    victim.get("/portal/signin").await;
    let page = victim
        .post(
            "/portal/signin",
            &[
                ("csrf", &attacker_token),
                ("email", "bob@example.com"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    // The right token works.
    let page = user
        .post(
            &format!("/portal/subscriptions/{id}/keys"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK);
}

#[tokio::test]
async fn one_user_cannot_see_or_change_another_users_subscriptions() {
    let s = setup("owners").await;
    s.import("pets", "petstore-openapi3.yaml").await;
    s.product("starter", &["pets"], false).await;
    let mut alice = s.client();
    let alice_csrf = alice.sign_up_and_in("alice@example.com", PASSWORD).await;
    let alice_sub = subscribe(&mut alice, &alice_csrf, "starter").await;
    let alice_keys = s.control.keys(&alice_sub).unwrap();
    let mut mallory = s.client();
    let csrf = mallory
        .sign_up_and_in("mallory@example.com", PASSWORD)
        .await;
    let profile = mallory.get("/portal/profile").await;
    assert!(!profile.body.contains(&alice_sub) && !profile.body.contains("alice@example.com"));
    for (path, extra) in [
        ("keys", None),
        ("regenerate", Some(("key", "primary"))),
        ("cancel", None),
    ] {
        let mut form = vec![("csrf", csrf.as_str())];
        form.extend(extra);
        let page = mallory
            .post(&format!("/portal/subscriptions/{alice_sub}/{path}"), &form)
            .await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}");
        assert!(!page.body.contains(&alice_keys.primary_key));
    }
    // Try it with Alice's subscription is refused too.
    let page = mallory
        .post(
            "/portal/apis/pets/operations/listPets/try",
            &[
                ("csrf", &csrf),
                ("gateway", "0"),
                ("subscription", &alice_sub),
            ],
        )
        .await;
    assert!(
        page.body
            .contains("Choose one of your active subscriptions"),
        "{}",
        page.body
    );
    assert_eq!(s.control.keys(&alice_sub).unwrap(), alice_keys);
    let alice_profile = alice.get("/portal/profile").await;
    assert!(alice_profile.body.contains(">active<"));
}

#[tokio::test]
async fn sign_in_is_throttled_per_account_and_per_address() {
    let s = setup_with(
        "throttle",
        PortalConfig {
            sign_in_limits: Limits {
                per_account: 3,
                per_ip: 6,
                window: Duration::from_secs(600),
            },
            ..PortalConfig::default()
        },
    )
    .await;
    let mut owner = s.client();
    owner.sign_up_and_in("carol@example.com", PASSWORD).await;

    let mut guesser = s.client();
    guesser.ip = "10.1.1.1:5000".parse().unwrap();
    let csrf = guesser.get("/portal/signin").await.csrf();
    for _ in 0..3 {
        let page = guesser
            .post(
                "/portal/signin",
                &[
                    ("csrf", &csrf),
                    ("email", "carol@example.com"),
                    ("password", "wrong-guess"),
                ],
            )
            .await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    }
    // Locked: even the right password, even from elsewhere.
    let mut elsewhere = s.client();
    elsewhere.ip = "10.2.2.2:5000".parse().unwrap();
    let token = elsewhere.get("/portal/signin").await.csrf();
    let page = elsewhere
        .post(
            "/portal/signin",
            &[
                ("csrf", &token),
                ("email", "carol@example.com"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = page.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 0 && retry <= 600);
    assert!(!elsewhere.cookies.contains_key("gh_session"));

    // Per address: failures spread over accounts lock the address.
    for i in 0..3 {
        let email = format!("nobody{i}@example.com");
        let page = guesser
            .post(
                "/portal/signin",
                &[
                    ("csrf", &csrf),
                    ("email", &email),
                    ("password", "x-guess-x"),
                ],
            )
            .await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    }
    let page = guesser
        .post(
            "/portal/signin",
            &[
                ("csrf", &csrf),
                ("email", "dave@example.com"),
                ("password", "x"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn session_cookies_are_http_only_lax_and_secure_over_tls() {
    let s = setup("cookies").await;
    let mut plain = s.client();
    plain.sign_up_and_in("erin@example.com", PASSWORD).await;
    let mut tls = s.client();
    tls.headers
        .push(("x-forwarded-proto".into(), "https".into()));
    let csrf = tls.get("/portal/signin").await.csrf();
    let page = tls
        .post(
            "/portal/signin",
            &[
                ("csrf", &csrf),
                ("email", "erin@example.com"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let cookie = page
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("gh_session="))
        .unwrap();
    for flag in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/portal"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    let mut again = s.client();
    let csrf = again.get("/portal/signin").await.csrf();
    let page = again
        .post(
            "/portal/signin",
            &[
                ("csrf", &csrf),
                ("email", "erin@example.com"),
                ("password", PASSWORD),
            ],
        )
        .await;
    let cookie = page
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("gh_session="))
        .unwrap();
    assert!(
        cookie.contains("HttpOnly") && !cookie.contains("Secure"),
        "{cookie}"
    );
    // Signing out ends the session on the server, not only in this browser.
    let stolen = again.cookies["gh_session"].clone();
    let csrf = again.get("/portal/profile").await.csrf();
    let page = again.post("/portal/signout", &[("csrf", &csrf)]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let mut thief = s.client();
    thief.cookies.insert("gh_session".into(), stolen);
    assert_eq!(
        thief.get("/portal/profile").await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn blocked_users_are_signed_out_and_cannot_sign_in() {
    let s = setup("blocked").await;
    let mut user = s.client();
    user.sign_up_and_in("frank@example.com", PASSWORD).await;
    assert_eq!(user.get("/portal/profile").await.status, StatusCode::OK);
    let docs = s.store.list(Kind::User, "").await.unwrap();
    let mut frank: serde_json::Value = serde_json::from_str(&docs[0].body).unwrap();
    assert!(
        !docs[0].body.contains("argon2"),
        "the user resource holds no password"
    );
    frank["state"] = "blocked".into();
    s.put_raw(Kind::User, "", &docs[0].id, &frank.to_string())
        .await;
    assert_eq!(
        user.get("/portal/profile").await.status,
        StatusCode::SEE_OTHER
    );
    let mut again = s.client();
    let csrf = again.get("/portal/signin").await.csrf();
    let page = again
        .post(
            "/portal/signin",
            &[
                ("csrf", &csrf),
                ("email", "frank@example.com"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn products_linked_to_groups_are_visible_to_their_members_only() {
    let s = setup("groups").await;
    s.import("pets", "petstore-openapi3.yaml").await;
    s.product("partners", &["pets"], false).await;
    s.link(Link::ProductGroup, "partners", "partner-group")
        .await;
    let mut anonymous = s.client();
    assert_eq!(
        anonymous.get("/portal/products/partners").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        anonymous.get("/portal/apis/pets").await.status,
        StatusCode::NOT_FOUND
    );
    let mut user = s.client();
    user.sign_up_and_in("gina@example.com", PASSWORD).await;
    assert_eq!(
        user.get("/portal/products/partners").await.status,
        StatusCode::NOT_FOUND
    );
    let id = s.store.list(Kind::User, "").await.unwrap()[0].id.clone();
    s.link(Link::GroupUser, "partner-group", &id).await;
    assert_eq!(
        user.get("/portal/products/partners").await.status,
        StatusCode::OK
    );
    assert!(
        user.get("/portal/apis")
            .await
            .body
            .contains("/portal/apis/pets")
    );
    // The implicit groups: `developers` is every signed-in user, `guests` every visitor.
    s.link(Link::ProductGroup, "partners", "guests").await;
    assert_eq!(
        anonymous.get("/portal/products/partners").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn template_overrides_replace_built_in_pages() {
    let dir = crate::support::temp_dir("templates");
    std::fs::write(
        dir.join("home.html"),
        "{% extends \"layout.html\" %}{% block title %}Home{% endblock %}{% block content %}<h1>Custom {{ site.title }}</h1>{% endblock %}",
    )
    .unwrap();
    let s = setup_with(
        "override",
        PortalConfig {
            templates_dir: Some(dir.clone()),
            ..PortalConfig::default()
        },
    )
    .await;
    let page = s.client().get("/portal/").await;
    assert!(
        page.body.contains("<h1>Custom Developer portal</h1>"),
        "{}",
        page.body
    );
    assert!(
        s.client()
            .get("/portal/signin")
            .await
            .body
            .contains("Sign in")
    );
    std::fs::write(dir.join("signin.html"), "{% if %}").unwrap();
    let err = gatehouse_portal::Portal::new(
        s.store.clone(),
        s.control.clone(),
        PortalConfig {
            templates_dir: Some(dir.clone()),
            ..PortalConfig::default()
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("signin.html"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn passwords_can_be_changed_with_the_current_one() {
    let s = setup("password").await;
    let mut user = s.client();
    let csrf = user.sign_up_and_in("hank@example.com", PASSWORD).await;
    let page = user
        .post(
            "/portal/profile/password",
            &[
                ("csrf", &csrf),
                ("current", "not the password"),
                ("new_password", "a brand new passphrase"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    let page = user
        .post(
            "/portal/profile/password",
            &[
                ("csrf", &csrf),
                ("current", PASSWORD),
                ("new_password", "short"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    let page = user
        .post(
            "/portal/profile/password",
            &[
                ("csrf", &csrf),
                ("current", PASSWORD),
                ("new_password", "a brand new passphrase"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert!(
        user.get(page.location())
            .await
            .body
            .contains("Your password was changed.")
    );
    let mut again = s.client();
    let token = again.get("/portal/signin").await.csrf();
    let page = again
        .post(
            "/portal/signin",
            &[
                ("csrf", &token),
                ("email", "hank@example.com"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    again
        .sign_in("hank@example.com", "a brand new passphrase")
        .await;
}

/// Every visible form field has a label, every page has its landmarks and one `<h1>`.
#[tokio::test]
async fn pages_have_labels_landmarks_and_one_heading() {
    let s = setup("a11y").await;
    s.import("pets", "petstore-openapi3.yaml").await;
    s.product("starter", &["pets"], false).await;
    let mut user = s.client();
    let csrf = user.sign_up_and_in("ivy@example.com", PASSWORD).await;
    subscribe(&mut user, &csrf, "starter").await;
    s.put_raw(
        Kind::Product,
        "",
        "terms",
        r#"{"id":"terms","displayName":"With terms","terms":"Be kind.","state":"published"}"#,
    )
    .await;
    let mut anonymous = s.client();
    let mut pages = Vec::new();
    for path in PUBLIC_PAGES {
        pages.push((path.to_string(), anonymous.get(path).await.body));
    }
    for path in [
        "/portal/profile",
        "/portal/apis/pets/operations/createPets",
        "/portal/products/starter",
        "/portal/products/terms",
    ] {
        pages.push((path.to_string(), user.get(path).await.body));
    }
    for (path, body) in pages {
        if body.is_empty() {
            continue;
        }
        for landmark in [
            "<header",
            "<nav aria-label",
            "<main id=\"main\"",
            "<footer",
            "<html lang=\"en\">",
        ] {
            assert!(body.contains(landmark), "{path} lacks {landmark}");
        }
        assert_eq!(body.matches("<h1").count(), 1, "{path}");
        assert!(body.contains("name=\"viewport\""), "{path}");
        for tag in ["<input", "<select", "<textarea"] {
            for (i, _) in body.match_indices(tag) {
                let element = &body[i..i + body[i..].find('>').unwrap()];
                if element.contains("type=\"hidden\"") {
                    continue;
                }
                let id_start = element
                    .find(" id=\"")
                    .unwrap_or_else(|| panic!("{path}: {element} has no id"))
                    + 5;
                let id = &element[id_start..id_start + element[id_start..].find('"').unwrap()];
                assert!(
                    body.contains(&format!("<label for=\"{id}\"")),
                    "{path}: {element} has no label"
                );
            }
        }
    }
}
