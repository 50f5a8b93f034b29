//! The backends' compile: errors that name the backend and the field, credentials made ready
//! once, and TLS variants that never share pooled connections with the strict configuration.

use std::collections::BTreeMap;
use std::sync::Arc;

use gatehouse_model::resources::{BackendAuthorization, BackendCredentials, BackendTls};
use gatehouse_model::snapshot::{
    Delta, FORMAT_VERSION, Snapshot, SnapshotBackend, SnapshotBreaker, SnapshotClientCertificate,
    SnapshotPoolMember,
};
use gatehouse_tls::testca::TestCa;
use http::HeaderMap;

use super::Backends;
use crate::config::CompiledConfig;

fn backend(id: &str, url: &str) -> SnapshotBackend {
    SnapshotBackend {
        id: id.into(),
        url: url.into(),
        credentials: None,
        tls: None,
        circuit_breaker: None,
        pool: None,
    }
}

fn snapshot(revision: u64, backends: Vec<SnapshotBackend>) -> Snapshot {
    Snapshot {
        format: FORMAT_VERSION,
        revision,
        gateway_id: "g".into(),
        backends,
        ..Snapshot::default()
    }
}

fn client_certificate(ca: &TestCa, id: &str) -> SnapshotClientCertificate {
    let leaf = ca.leaf(id, &["client.example.com"]);
    SnapshotClientCertificate {
        id: id.into(),
        certificate: std::fs::read_to_string(&leaf.cert).unwrap(),
        key: std::fs::read_to_string(&leaf.key).unwrap(),
    }
}

fn error(s: &Snapshot) -> String {
    let e = CompiledConfig::compile(s).unwrap_err();
    format!("{}: {}", e.target, e.message)
}

#[test]
fn a_broken_backend_is_refused_naming_it_and_the_field() {
    let e = error(&snapshot(1, vec![backend("orders", "ftp://x")]));
    assert!(e.starts_with("backends.orders.url:"), "{e}");
    assert!(
        e.contains("backend 'orders'") && e.contains("http://"),
        "{e}"
    );

    let mut b = backend("orders", "https://orders.example.com");
    b.credentials = Some(BackendCredentials {
        certificate_ids: vec!["/certificates/gone".into()],
        ..BackendCredentials::default()
    });
    let e = error(&snapshot(1, vec![b]));
    assert!(
        e.starts_with("backends.orders.credentials.certificateIds:"),
        "{e}"
    );
    assert!(
        e.contains("certificate 'gone' is not in the configuration"),
        "{e}"
    );

    let mut b = backend("orders", "https://orders.example.com");
    b.credentials = Some(BackendCredentials {
        header: [("x-key".to_owned(), vec!["{{missing}}".to_owned()])].into(),
        ..BackendCredentials::default()
    });
    let e = error(&snapshot(1, vec![b]));
    assert!(
        e.starts_with("backends.orders.credentials.header.x-key:"),
        "{e}"
    );
    assert!(e.contains("named value 'missing' does not exist"), "{e}");
}

#[test]
fn credentials_are_ready_once_with_named_values_resolved() {
    let mut b = backend("orders", "http://orders.example.com/v1");
    b.credentials = Some(BackendCredentials {
        header: [(
            "x-functions-key".to_owned(),
            vec!["{{key}}".to_owned(), "second".to_owned()],
        )]
        .into(),
        query: [("code".to_owned(), vec!["a b&c={{key}}".to_owned()])].into(),
        authorization: Some(BackendAuthorization {
            scheme: "Bearer".into(),
            parameter: "{{token}}".into(),
        }),
        certificate_ids: vec![],
    });
    let mut s = snapshot(1, vec![b]);
    s.named_values = BTreeMap::from([
        ("key".to_owned(), "k1".to_owned()),
        ("token".to_owned(), "t0k".to_owned()),
    ]);
    let config = CompiledConfig::compile(&s).unwrap();
    let compiled = config.backends.get("orders").unwrap();
    assert_eq!(&*compiled.upstream.base_path, "/v1");

    let mut headers = HeaderMap::new();
    headers.insert("x-functions-key", "from-the-caller".parse().unwrap());
    headers.insert("authorization", "Basic caller".parse().unwrap());
    compiled.add_headers(&mut headers);
    let keys: Vec<_> = headers.get_all("x-functions-key").iter().collect();
    assert_eq!(keys, ["k1", "second"]);
    assert!(keys[0].is_sensitive());
    assert_eq!(headers["authorization"], "Bearer t0k");

    // The caller's parameter of the same name is replaced, the others kept; values encoded.
    assert_eq!(
        compiled.query(Some("code=caller&x=1")).as_deref(),
        Some("x=1&code=a%20b%26c%3Dk1")
    );
    assert_eq!(compiled.query(None).as_deref(), Some("code=a%20b%26c%3Dk1"));
}

#[test]
fn relaxed_and_client_certificate_backends_pool_apart_from_strict_ones() {
    let ca = TestCa::new("backends-variants");
    let mut relaxed = backend("relaxed", "https://api.example.com");
    relaxed.tls = Some(BackendTls {
        validate_certificate_chain: false,
        validate_certificate_name: true,
    });
    let mut no_name = backend("no-name", "https://api.example.com");
    no_name.tls = Some(BackendTls {
        validate_certificate_chain: true,
        validate_certificate_name: false,
    });
    let strict = backend("strict", "https://api.example.com");
    let mut with_cert = backend("with-cert", "https://api.example.com");
    with_cert.credentials = Some(BackendCredentials {
        certificate_ids: vec!["client".into()],
        ..BackendCredentials::default()
    });
    // `tls` on a plain backend changes nothing: there is no TLS to relax.
    let mut plain = backend("plain", "http://api.example.com");
    plain.tls = relaxed.tls.clone();
    let mut s = snapshot(1, vec![relaxed, no_name, strict, with_cert, plain]);
    s.tls.client_certificates = vec![client_certificate(&ca, "client")];
    let config = CompiledConfig::compile(&s).unwrap();
    let key = |id: &str| {
        config
            .backends
            .get(id)
            .unwrap()
            .upstream
            .target
            .pool_key()
            .to_owned()
    };
    let api = crate::config::parse_upstream("https://api.example.com").unwrap();
    // A strict backend shares its connections with an API's service URL; no other does.
    assert_eq!(key("strict"), api.target.pool_key());
    let keys = [
        key("relaxed"),
        key("no-name"),
        key("with-cert"),
        key("strict"),
    ];
    for (i, a) in keys.iter().enumerate() {
        for b in &keys[i + 1..] {
            assert_ne!(a, b);
        }
    }
    assert_eq!(key("plain"), "api.example.com");

    // The client configuration is built once per variant and configuration.
    let outbound = crate::outbound_tls::OutboundTls::new(
        gatehouse_tls::client::Trust::only(&std::fs::read(&ca.cert).unwrap(), "ca").unwrap(),
    )
    .unwrap();
    let variant = |id: &str| {
        config
            .backends
            .get(id)
            .unwrap()
            .upstream
            .target
            .client()
            .unwrap()
            .clone()
    };
    let v = variant("with-cert");
    let first = v.client_config(&outbound).unwrap();
    assert!(Arc::ptr_eq(&first, &v.client_config(&outbound).unwrap()));
    assert!(first.client_auth_cert_resolver.has_certs());
    assert!(
        !variant("relaxed")
            .client_config(&outbound)
            .unwrap()
            .client_auth_cert_resolver
            .has_certs()
    );
}

#[test]
fn authentication_certificate_gets_one_shared_variant_per_configuration() {
    let ca = TestCa::new("backends-policy-cert");
    let mut with_cert = backend("with-cert", "https://b.example.com");
    with_cert.credentials = Some(BackendCredentials {
        certificate_ids: vec!["client".into()],
        ..BackendCredentials::default()
    });
    let mut s = snapshot(1, vec![with_cert]);
    s.tls.client_certificates = vec![client_certificate(&ca, "client")];
    let config = CompiledConfig::compile(&s).unwrap();
    let api = crate::config::parse_upstream("https://api.example.com").unwrap();
    let mut ex = gatehouse_policy::Exchange::new(
        gatehouse_policy::exchange::Request {
            method: http::Method::GET,
            scheme: "https".into(),
            host: "gw".into(),
            path: String::new(),
            query: None,
            headers: HeaderMap::new(),
            body: None,
        },
        gatehouse_policy::exchange::RequestInfo::default(),
    );
    ex.authentication_certificate = Some("client".into());
    let a = super::Route::choose(&config.backends, &ex, Some(&api), "api", None).unwrap();
    let b = super::Route::choose(&config.backends, &ex, Some(&api), "api", None).unwrap();
    let (ta, tb) = (&a.upstream().target, &b.upstream().target);
    assert_ne!(ta.pool_key(), api.target.pool_key());
    assert_eq!(ta.pool_key(), tb.pool_key());
    assert!(Arc::ptr_eq(ta.client().unwrap(), tb.client().unwrap()));
    // The backend presenting the same certificate strictly shares the variant (and sessions).
    let backend_variant = config
        .backends
        .get("with-cert")
        .unwrap()
        .upstream
        .target
        .client()
        .unwrap();
    assert!(Arc::ptr_eq(ta.client().unwrap(), backend_variant));

    // An unknown certificate or backend is a 500 naming it.
    ex.authentication_certificate = Some("gone".into());
    let e = super::Route::choose(&config.backends, &ex, Some(&api), "api", None)
        .err()
        .unwrap();
    assert_eq!(e.answer, gatehouse_policy::Answer::Internal);
    assert!(e.message.contains("certificate 'gone'"), "{}", e.message);
    ex.authentication_certificate = None;
    ex.backend_id = Some("nope".into());
    let e = super::Route::choose(&config.backends, &ex, Some(&api), "api", None)
        .err()
        .unwrap();
    assert_eq!(e.answer, gatehouse_policy::Answer::Internal);
    assert!(e.message.contains("backend 'nope'"), "{}", e.message);
}

#[test]
fn an_update_compiles_backends_again_only_when_they_or_what_they_use_change() {
    let old = snapshot(1, vec![backend("a", "http://a.example.com")]);
    let config = CompiledConfig::compile(&old).unwrap();
    // A change elsewhere shares the backends.
    let mut other = old.clone();
    other.revision = 2;
    other.tryit_key = None;
    let delta = Delta::between(&old, &other);
    let same = config.update(&delta, &other).unwrap();
    assert!(Arc::ptr_eq(&same.backends, &config.backends));
    // A backend change reaches the next configuration.
    let mut changed = other.clone();
    changed.revision = 3;
    changed.backends = vec![
        backend("a", "http://a2.example.com"),
        backend("b", "http://b"),
    ];
    let delta = Delta::between(&other, &changed);
    let next = same.update(&delta, &changed).unwrap();
    assert_eq!(
        next.backends.get("a").unwrap().upstream.authority.as_str(),
        "a2.example.com"
    );
    assert_eq!(next.backends.len(), 2);
    // And a broken one is refused like a full compile refuses it.
    let mut broken = changed.clone();
    broken.revision = 4;
    broken.backends = vec![backend("a", "nope")];
    let delta = Delta::between(&changed, &broken);
    let e = next.update(&delta, &broken).unwrap_err();
    assert_eq!(e.target, "backends.a.url");
}

fn breaker_rule(count: u32) -> SnapshotBreaker {
    SnapshotBreaker {
        name: "r".into(),
        count: Some(count),
        percentage: None,
        interval_ms: 10_000,
        trip_duration_ms: 60_000,
        status_code_ranges: vec![(500, 599)],
        error_reasons: vec![],
        accept_retry_after: false,
    }
}

fn with_breaker(id: &str, count: u32) -> SnapshotBackend {
    let mut b = backend(id, &format!("http://{id}.example.com"));
    b.circuit_breaker = Some(breaker_rule(count));
    b
}

fn pool(id: &str, members: &[(&str, u32, u32)]) -> SnapshotBackend {
    let mut p = backend(id, "");
    p.pool = Some(
        members
            .iter()
            .map(|(id, priority, weight)| SnapshotPoolMember {
                id: (*id).into(),
                priority: *priority,
                weight: *weight,
            })
            .collect(),
    );
    p
}

/// Trips `id`'s breaker (its rule counts one 500).
fn trip(backends: &Backends, id: &str) {
    let b = backends.get(id).unwrap().breaker.as_ref().unwrap();
    b.record(crate::breaker::Outcome::Answered(
        http::StatusCode::INTERNAL_SERVER_ERROR,
        None,
    ));
    assert!(b.is_open(crate::breaker::now_ms()));
}

/// How many of `draws` evenly spread draws each member of `pool` gets.
fn spread(backends: &Backends, pool: &str, draws: u64) -> BTreeMap<String, u64> {
    let pool = backends.pool(pool).unwrap();
    let now = crate::breaker::now_ms();
    let mut counts = BTreeMap::new();
    for i in 0..draws {
        // Every residue of the tiers' weight totals, equally often.
        let picked = pool.pick(now, i).unwrap();
        *counts.entry(picked.id.to_string()).or_default() += 1;
    }
    counts
}

#[test]
fn a_pool_sends_to_its_lowest_available_priority_by_weight() {
    let s = snapshot(
        1,
        vec![
            with_breaker("a", 1),
            with_breaker("b", 1),
            with_breaker("c", 1),
            backend("d", "http://d.example.com"),
            pool("p", &[("a", 1, 3), ("b", 1, 1), ("c", 2, 1), ("d", 3, 0)]),
        ],
    );
    let config = CompiledConfig::compile(&s).unwrap();
    let backends = &config.backends;
    let members: Vec<_> = backends
        .pool("p")
        .unwrap()
        .members()
        .map(|(id, p, w)| (id.to_string(), p, w))
        .collect();
    assert_eq!(
        members,
        [
            ("a".into(), 1, 3),
            ("b".into(), 1, 1),
            ("c".into(), 2, 1),
            ("d".into(), 3, 0)
        ]
    );
    // 3:1 within priority 1; nothing to the others while it has a member.
    assert_eq!(
        spread(backends, "p", 400),
        BTreeMap::from([("a".into(), 300), ("b".into(), 100)])
    );
    trip(backends, "a");
    assert_eq!(
        spread(backends, "p", 100),
        BTreeMap::from([("b".into(), 100)])
    );
    trip(backends, "b");
    assert_eq!(
        spread(backends, "p", 100),
        BTreeMap::from([("c".into(), 100)])
    );
    // A member of weight 0 still serves when it is all that is left.
    trip(backends, "c");
    assert_eq!(
        spread(backends, "p", 10),
        BTreeMap::from([("d".into(), 10)])
    );
}

#[test]
fn a_request_to_an_open_breaker_or_an_empty_pool_is_a_503_whose_detail_stays_in_the_log() {
    let s = snapshot(
        1,
        vec![
            with_breaker("a", 1),
            with_breaker("b", 1),
            pool("p", &[("a", 1, 1), ("b", 2, 1)]),
            pool("stray", &[("gone", 1, 1)]),
        ],
    );
    let config = CompiledConfig::compile(&s).unwrap();
    let api = crate::config::parse_upstream("http://api.example.com").unwrap();
    let mut ex = gatehouse_policy::Exchange::new(
        gatehouse_policy::exchange::Request {
            method: http::Method::GET,
            scheme: "https".into(),
            host: "gw".into(),
            path: String::new(),
            query: None,
            headers: HeaderMap::new(),
            body: None,
        },
        gatehouse_policy::exchange::RequestInfo::default(),
    );
    let choose = |ex: &gatehouse_policy::Exchange| {
        super::Route::choose(&config.backends, ex, Some(&api), "api", None)
            .map(|r| r.upstream().authority.to_string())
    };
    ex.backend_id = Some("p".into());
    assert_eq!(choose(&ex).unwrap(), "a.example.com");
    trip(&config.backends, "a");
    assert_eq!(choose(&ex).unwrap(), "b.example.com");
    // The tripped backend by its own id: 503.
    ex.backend_id = Some("a".into());
    let e = choose(&ex).unwrap_err();
    assert_eq!(e.answer, gatehouse_policy::Answer::Unavailable);
    assert_eq!(e.reason, "BackendUnavailable");
    assert!(e.message.contains("backend 'a'"), "{}", e.message);
    trip(&config.backends, "b");
    ex.backend_id = Some("p".into());
    let e = choose(&ex).unwrap_err();
    assert_eq!(e.answer, gatehouse_policy::Answer::Unavailable);
    assert!(
        e.message.contains("pool 'p'") && e.message.contains("every member"),
        "{}",
        e.message
    );
    let (status, body) = e.answer.parts();
    assert_eq!(status, 503);
    assert!(
        !body.contains("pool") && !body.contains("breaker"),
        "{body}"
    );
    // A pool whose member the configuration lacks compiles without it, and sends nowhere.
    ex.backend_id = Some("stray".into());
    let e = choose(&ex).unwrap_err();
    assert_eq!(e.answer, gatehouse_policy::Answer::Unavailable);
    assert!(e.message.contains("no member"), "{}", e.message);
}

#[test]
fn breakers_outlive_configurations_while_the_backend_and_rule_stay() {
    let old = snapshot(
        1,
        vec![
            with_breaker("a", 1),
            with_breaker("b", 1),
            with_breaker("c", 1),
        ],
    );
    let first = CompiledConfig::compile(&old).unwrap();
    for id in ["a", "b", "c"] {
        trip(&first.backends, id);
    }
    // b gets another URL, c another rule, d is new: their breakers start closed.
    let mut next = old.clone();
    next.revision = 2;
    next.backends = vec![
        with_breaker("a", 1),
        {
            let mut b = with_breaker("b", 1);
            b.url = "http://b2.example.com".into();
            b
        },
        with_breaker("c", 2),
        with_breaker("d", 1),
    ];
    let now = crate::breaker::now_ms();
    let open = |c: &CompiledConfig| -> Vec<(String, bool, u64)> {
        c.backends
            .breakers()
            .iter()
            .map(|b| (b.backend().to_string(), b.is_open(now), b.trips()))
            .collect()
    };
    let expected = vec![
        ("a".to_owned(), true, 1),
        ("b".to_owned(), false, 0),
        ("c".to_owned(), false, 0),
        ("d".to_owned(), false, 0),
    ];
    // Through a delta, and through a whole snapshot applied after the first.
    let updated = first.update(&Delta::between(&old, &next), &next).unwrap();
    assert_eq!(open(&updated), expected);
    let full = CompiledConfig::compile_after(&next, Some(&first)).unwrap();
    assert_eq!(open(&full), expected);
    assert!(Arc::ptr_eq(
        full.backends.get("a").unwrap().breaker.as_ref().unwrap(),
        first.backends.get("a").unwrap().breaker.as_ref().unwrap()
    ));
    // A configuration compiled on its own starts every breaker closed.
    assert!(
        open(&CompiledConfig::compile(&next).unwrap())
            .iter()
            .all(|(_, o, _)| !o)
    );
}
