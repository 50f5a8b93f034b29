//! The admin console's router: sign-in and sessions, the bearer token, throttling, the pages'
//! escaping, on a real SQLite store with a stand-in for the control plane.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{StatusCode, header};
use gatehouse_model::telemetry::{Aggregate, Batch, Outcome};
use gatehouse_portal::{
    AdminBackend, BackendError, BoxFuture, Console, ConsoleConfig, Fleet, FleetGateway,
    FleetInstance,
};
use gatehouse_store::{Kind, Retention, Store};

use crate::support::{Client, temp_dir};

const TOKEN: &str = "the-admin-token-0123456789abcdef";

struct FakeAdmin {
    token: Mutex<String>,
}

impl AdminBackend for FakeAdmin {
    fn admin_token_matches(&self, token: &str) -> bool {
        *self.token.lock().unwrap() == token
    }

    fn admin_generation(&self) -> String {
        format!("generation-of-{}", self.token.lock().unwrap().len())
    }

    fn fleet(&self) -> BoxFuture<'_, Result<Fleet, BackendError>> {
        Box::pin(async move {
            Ok(Fleet {
                current_revision: 7,
                gateways: vec![FleetGateway {
                    id: "edge".into(),
                    location: Some("lab <east>".into()),
                    description: None,
                    built_in: false,
                    instances: vec![
                        FleetInstance {
                            name: "pod-1".into(),
                            state: "inSync".into(),
                            link: "connected".into(),
                            applied_revision: Some(7),
                            last_heartbeat: Some("2026-11-26T09:00:00Z".into()),
                            seconds_since_heartbeat: Some(4),
                            ..FleetInstance::default()
                        },
                        FleetInstance {
                            name: "pod-2".into(),
                            state: "offline".into(),
                            link: "offline".into(),
                            applied_revision: Some(5),
                            problem: Some("the token <b>expired</b>".into()),
                            ..FleetInstance::default()
                        },
                    ],
                    rejected_tokens: 3,
                    last_token_rejection: Some("expired".into()),
                    last_token_rejected_at: Some("2026-11-26T09:01:00Z".into()),
                }],
            })
        })
    }
}

struct Setup {
    store: Store,
    admin: Arc<FakeAdmin>,
    router: Router,
    dir: std::path::PathBuf,
}

impl Drop for Setup {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

async fn setup(tag: &str) -> Setup {
    let dir = temp_dir(tag);
    let store = Store::open_sqlite_dir(&dir).await.unwrap();
    let admin = Arc::new(FakeAdmin {
        token: Mutex::new(TOKEN.to_owned()),
    });
    let console = Console::new(store.clone(), admin.clone(), ConsoleConfig::default()).unwrap();
    Setup {
        store,
        admin,
        router: console.router(),
        dir,
    }
}

/// Signs in with `token`; returns the sign-in answer.
async fn sign_in(client: &mut Client, token: &str, next: &str) -> crate::support::Page {
    let csrf = client
        .get(&format!("/admin/signin?next={next}"))
        .await
        .csrf();
    client
        .post(
            "/admin/signin",
            &[("csrf", &csrf), ("token", token), ("next", next)],
        )
        .await
}

#[tokio::test]
async fn a_session_starts_with_the_token_and_ends_with_sign_out() {
    let s = setup("admin-session").await;
    let mut client = Client::new(s.router.clone());

    let page = client.get("/admin/traffic?window=6h").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(
        page.location(),
        "/admin/signin?next=/admin/traffic%3Fwindow%3D6h"
    );
    let signin = client.get("/admin/signin?next=/admin/traffic").await;
    assert_eq!(signin.status, StatusCode::OK);
    let csrf_cookie = signin.set_cookies().join("\n");
    assert!(
        csrf_cookie.contains("gh_admin_csrf=")
            && csrf_cookie.contains("HttpOnly")
            && csrf_cookie.contains("SameSite=Strict"),
        "{csrf_cookie}"
    );
    let csrf = signin.csrf();

    // A forged form (no token, or another) is refused before the token is even looked at.
    for forged in ["", "forged-forged-forged-forged-forged-forged-f"] {
        let page = client
            .post(
                "/admin/signin",
                &[("csrf", forged), ("token", TOKEN), ("next", "/admin/")],
            )
            .await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
        assert!(!client.cookies.contains_key("gh_admin"));
    }
    // A wrong token: 401, no session.
    let page = client
        .post("/admin/signin", &[("csrf", &csrf), ("token", "wrong")])
        .await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert!(page.body.contains("That is not the admin token"));
    assert!(!client.cookies.contains_key("gh_admin"));

    // The right one: a session cookie that is not the token, back to where we were going.
    let page = sign_in(&mut client, TOKEN, "/admin/traffic").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(page.location(), "/admin/traffic");
    let cookie = page
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("gh_admin="))
        .unwrap();
    assert!(
        cookie.contains("; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=28800"),
        "{cookie}"
    );
    let session = client.cookies["gh_admin"].clone();
    assert_eq!(session.len(), 43);
    assert!(!cookie.contains(TOKEN));
    let stored = s.store.list(Kind::AdminSession, "").await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0].id, session, "the store keeps only a hash");
    assert!(!stored[0].body.contains(TOKEN) && !stored[0].body.contains(&session));

    let fleet = client.get("/admin/").await;
    assert_eq!(fleet.status, StatusCode::OK);
    let csp = fleet.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(fleet.headers[header::CACHE_CONTROL], "no-store");
    assert!(
        fleet
            .body
            .contains("data-instance=\"pod-1\" data-state=\"inSync\"")
    );
    assert!(fleet.body.contains(">7 / 7<"));
    assert!(
        fleet
            .body
            .contains("data-instance=\"pod-2\" data-state=\"offline\"")
    );
    assert!(fleet.body.contains("3 link calls refused"));
    assert!(fleet.body.contains("(expired) at"));
    assert!(fleet.body.contains(">5 / 7<"));
    // Everything is escaped.
    assert!(fleet.body.contains("the token &lt;b&gt;expired&lt;/b&gt;"));
    assert!(fleet.body.contains("lab &lt;east&gt;"));
    assert!(!fleet.body.contains("<b>expired"));

    // Sign-out needs the session's CSRF token.
    let page = client.post("/admin/signout", &[("csrf", &csrf)]).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert_eq!(client.get("/admin/").await.status, StatusCode::OK);
    let session_csrf = fleet.csrf();
    let page = client
        .post("/admin/signout", &[("csrf", &session_csrf)])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/admin/signin?signed_out=1");
    assert!(!client.cookies.contains_key("gh_admin"));
    assert!(
        client
            .get("/admin/signin?signed_out=1")
            .await
            .body
            .contains("You are signed out.")
    );
    // The old cookie, replayed, opens nothing.
    client.cookies.insert("gh_admin".into(), session);
    let page = client.get("/admin/").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert!(page.location().starts_with("/admin/signin"));
}

#[tokio::test]
async fn a_new_admin_token_ends_every_session() {
    let s = setup("admin-rotate").await;
    let mut client = Client::new(s.router.clone());
    assert_eq!(
        sign_in(&mut client, TOKEN, "/admin/").await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(client.get("/admin/").await.status, StatusCode::OK);
    *s.admin.token.lock().unwrap() = "another-admin-token-of-another-length".into();
    let page = client.get("/admin/").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    // The stale cookie is cleared.
    assert!(!client.cookies.contains_key("gh_admin"));
}

#[tokio::test]
async fn the_bearer_token_opens_every_page_and_a_wrong_one_is_refused() {
    let s = setup("admin-bearer").await;
    let mut client = Client::new(s.router.clone());
    client.headers = vec![("authorization".into(), format!("Bearer {TOKEN}"))];
    assert_eq!(client.get("/admin/").await.status, StatusCode::OK);
    assert_eq!(client.get("/admin/traffic").await.status, StatusCode::OK);
    client.headers = vec![("authorization".into(), "Bearer nope".into())];
    let page = client.get("/admin/").await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert_eq!(page.headers[header::WWW_AUTHENTICATE], "Bearer");
    assert!(!page.body.contains("pod-1"));
    // Unknown pages and windows get the console's error page.
    client.headers = vec![("authorization".into(), format!("Bearer {TOKEN}"))];
    let page = client.get("/admin/traffic?window=1y").await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(
        page.body.contains("There is no window &#39;1y&#39;"),
        "{}",
        page.body
    );
    assert_eq!(
        client.get("/admin/nothing-here").await.status,
        StatusCode::NOT_FOUND
    );
    let page = client.get("/admin/traffic?window=1h&window=6h").await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(
        page.body.contains("The address&#39;s query is malformed"),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn sign_in_is_throttled_and_never_leaves_the_console() {
    let s = setup("admin-throttle").await;
    let mut client = Client::new(s.router.clone());
    let page = sign_in(&mut client, TOKEN, "https://evil.example/").await;
    assert_eq!(page.location(), "/admin/");
    let mut other = Client::new(s.router.clone());
    other.ip = "10.1.2.3:5000".parse().unwrap();
    for _ in 0..10 {
        assert_eq!(
            sign_in(&mut other, "wrong", "/admin/").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let page = sign_in(&mut other, TOKEN, "/admin/").await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS, "{}", page.body);
    assert!(page.headers.contains_key(header::RETRY_AFTER));
    // Another address is not locked out.
    let mut third = Client::new(s.router.clone());
    third.ip = "10.9.9.9:5000".parse().unwrap();
    assert_eq!(
        sign_in(&mut third, TOKEN, "/admin/").await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn traffic_is_drawn_from_the_store_and_escaped() {
    let s = setup("admin-traffic").await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let m = now - now % 60;
    let aggregate = |minute: i64, api: &str, calls: u64| {
        let mut a = Aggregate {
            minute,
            api_id: api.into(),
            operation_id: "op".into(),
            ..Aggregate::default()
        };
        for i in 0..calls {
            a.counts.add(Outcome::Success);
            a.api_time.record(1_000 * (i + 1));
        }
        a
    };
    let hostile = "<script>alert(1)</script>";
    let batch = Batch {
        id: "b".into(),
        aggregates: vec![
            aggregate(m - 120, "echo", 3),
            aggregate(m, "echo", 1),
            aggregate(m - 600, hostile, 2),
            // Older than the last hour: only in longer windows.
            aggregate(m - 7_200, "echo", 5),
        ],
        ..Batch::default()
    };
    let retention = Retention {
        oldest_minute: 0,
        samples: 10,
    };
    s.store
        .ingest_telemetry("edge", &batch, now, retention)
        .await
        .unwrap();
    let mut client = Client::new(s.router.clone());
    client.headers = vec![("authorization".into(), format!("Bearer {TOKEN}"))];
    let page = client.get("/admin/traffic").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains(hostile), "unescaped API id");
    assert!(page.body.contains("&lt;script&gt;alert(1)&lt;"));
    let echo = page.body.split("data-api=\"echo\"").nth(2).unwrap();
    let echo = echo.split("</section>").next().unwrap();
    let requests = echo.split("data-chart=\"requests\"").nth(2).unwrap();
    let requests = requests.split("</svg>").next().unwrap();
    assert_eq!(requests.matches("<rect class=\"bar total\"").count(), 2);
    assert!(requests.contains("data-value=\"3.0\"") && requests.contains("data-value=\"1.0\""));
    let latency = echo.split("data-chart=\"latency\"").nth(2).unwrap();
    assert_eq!(latency.matches("<circle class=\"point\"").count(), 2);
    // Six hours include the older minute.
    let page = client.get("/admin/traffic?window=6h&api=echo").await;
    assert!(
        page.body
            .contains("<td class=\"num\" data-field=\"calls\">9</td>"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("data-api=\"&lt;script"));
}
