//! Unit tests of what works without a Redis server: URL redaction, the cache codec and the
//! batched counters' bookkeeping. The e2e tests (crates/cli/tests/e2e/redis.rs) run the rest
//! against a real redis-server.

use super::*;
use gatehouse_policy::expr::Value;

#[test]
fn passwords_never_show() {
    assert_eq!(
        redact("redis://user:s3cret@cache.example:6379/0"),
        "redis://user:***@cache.example:6379/0"
    );
    assert_eq!(redact("rediss://:s3cret@h:6380"), "rediss://:***@h:6380");
    assert_eq!(redact("redis://h:6379"), "redis://h:6379");
    let shown = format!(
        "{:?}",
        RedisSettings {
            url: "redis://u:pw-xyz@h".into(),
            failure: FailureMode::Open,
            timeout: TIMEOUT,
            batch_from: BATCH_FROM,
            root_cert: None,
        }
    );
    assert!(!shown.contains("pw-xyz"), "{shown}");
}

#[test]
fn cache_entries_survive_the_codec() {
    for v in [
        Value::String("héllo".into()),
        Value::Int(-4),
        Value::Long(1 << 40),
        Value::Double(2.5),
        Value::Bool(true),
        Value::Null,
        Value::Bytes(Arc::from(&[0u8, 255, 7][..])),
    ] {
        let back = codec::decode(&codec::encode(&CacheEntry::Value(v.clone())));
        match back {
            Some(CacheEntry::Value(b)) => assert_eq!(b.to_policy_string(), v.to_policy_string()),
            other => panic!("{v:?} came back as {other:?}"),
        }
    }
    let mut headers = http::HeaderMap::new();
    headers.insert("content-type", "application/json".parse().unwrap());
    headers.append("x-a", "1".parse().unwrap());
    headers.append("x-a", "2".parse().unwrap());
    let response = gatehouse_policy::policies::CachedResponse {
        status: http::StatusCode::CREATED,
        reason: Some("Made".into()),
        headers,
        body: bytes::Bytes::from_static(b"{\"ok\":true}"),
        expires: std::time::UNIX_EPOCH + Duration::from_millis(1_800_000_000_123),
    };
    match codec::decode(&codec::encode(&CacheEntry::Response(Arc::new(response)))) {
        Some(CacheEntry::Response(r)) => {
            assert_eq!(r.status, 201);
            assert_eq!(r.reason.as_deref(), Some("Made"));
            assert_eq!(r.headers.get_all("x-a").iter().count(), 2);
            assert_eq!(&r.body[..], b"{\"ok\":true}");
            assert_eq!(
                r.expires,
                std::time::UNIX_EPOCH + Duration::from_millis(1_800_000_000_123)
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(codec::decode(b"").is_none());
    assert!(codec::decode(b"R\x00").is_none());
    assert!(codec::decode(b"Vq").is_none());
}

#[test]
fn batches_admit_at_most_a_batch_before_settling() {
    let b = Batches::default();
    let now = Instant::now();
    let calls = 100_000;
    let step = calls / BATCH_SHARE;
    assert!(
        matches!(b.admit("k", calls, 1, now), Admit::Ask),
        "first call asks Redis"
    );
    b.learn("k", calls, 1, Duration::from_secs(60), now);
    // The first local call schedules a timed settlement; a full batch one at once.
    let mut timed = 0;
    let mut at_once = 0;
    for _ in 0..step {
        match b.admit("k", calls, 1, now) {
            Admit::Decided(d, settle) => {
                assert!(d.allowed);
                match settle {
                    Some(Duration::ZERO) => at_once += 1,
                    Some(_) => timed += 1,
                    None => {}
                }
            }
            Admit::Ask => panic!("asked within the batch"),
        }
    }
    assert_eq!((timed, at_once), (1, 0));
    // The batch is full: the next call goes to Redis itself.
    assert!(matches!(b.admit("k", calls, 1, now), Admit::Ask));
    let take = b.take("k", now).unwrap();
    assert_eq!(take.amount, step);
    // Settled: Redis counts 90,000 in all now (other gateways too).
    assert_eq!(
        b.settled("k", take, Some((90_000, Duration::from_secs(59))), now),
        None
    );
    let mut admitted = 0;
    loop {
        match b.admit("k", calls, 1, now) {
            Admit::Decided(d, _) if d.allowed => admitted += 1,
            Admit::Decided(_, _) => break,
            Admit::Ask => {
                let take = b.take("k", now).unwrap();
                b.settled(
                    "k",
                    take,
                    Some((90_000 + admitted, Duration::from_secs(59))),
                    now,
                );
            }
        }
    }
    assert_eq!(
        90_000 + admitted,
        calls,
        "exactly the rest, seen from one gateway"
    );
    // A failed settlement keeps its calls for the next one.
    b.learn("f", calls, 0, Duration::from_secs(60), now);
    for _ in 0..5 {
        let _ = b.admit("f", calls, 1, now);
    }
    let take = b.take("f", now).unwrap();
    assert_eq!(b.settled("f", take, None, now), Some(SETTLE_EVERY));
    assert_eq!(b.take("f", now).unwrap().amount, 5);
    // A new window asks Redis again.
    let later = now + Duration::from_secs(61);
    assert!(matches!(b.admit("f", calls, 1, later), Admit::Ask));
}
