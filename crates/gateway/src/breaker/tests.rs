//! The breaker's counting, on a clock the tests move.

use std::time::{Duration, SystemTime};

use super::*;

fn rule(count: Option<u32>, percentage: Option<u32>) -> SnapshotBreaker {
    SnapshotBreaker {
        name: "r".into(),
        count,
        percentage,
        interval_ms: 10_000,
        trip_duration_ms: 2_000,
        status_code_ranges: vec![(500, 599), (429, 429)],
        error_reasons: vec!["BackendConnectionFailure".into()],
        accept_retry_after: false,
    }
}

fn breaker(rule: &SnapshotBreaker) -> Breaker {
    Breaker::new("b".into(), "http://b", rule)
}

fn answered(status: u16) -> Outcome<'static> {
    Outcome::Answered(StatusCode::from_u16(status).unwrap(), None)
}

const WALL: SystemTime = SystemTime::UNIX_EPOCH;

#[test]
fn count_failures_within_the_interval_trip_it_for_the_trip_duration() {
    let b = breaker(&rule(Some(3), None));
    let t = 100_000;
    b.record_at(answered(500), t, WALL);
    b.record_at(answered(200), t + 10, WALL);
    b.record_at(answered(404), t + 20, WALL);
    b.record_at(Outcome::ConnectionFailure, t + 1_000, WALL);
    assert!(!b.is_open(t + 1_000));
    // A timeout is not in this rule's reasons; the client's own failure counts for nothing.
    b.record_at(Outcome::Timeout, t + 1_100, WALL);
    b.record_at(Outcome::NotCounted, t + 1_200, WALL);
    assert!(!b.is_open(t + 1_200));
    b.record_at(answered(429), t + 2_000, WALL);
    assert!(b.is_open(t + 2_000));
    assert_eq!(b.trips(), 1);
    assert_eq!(b.remaining(t + 2_500), 1_500);
    // Calls under way when it tripped change nothing.
    b.record_at(answered(503), t + 2_100, WALL);
    b.record_at(answered(503), t + 2_200, WALL);
    b.record_at(answered(503), t + 2_300, WALL);
    assert_eq!((b.trips(), b.remaining(t + 2_500)), (1, 1_500));
    // Closed after the trip duration, with its counts cleared.
    assert!(!b.is_open(t + 4_000));
    b.record_at(answered(500), t + 4_000, WALL);
    b.record_at(answered(500), t + 4_100, WALL);
    assert!(!b.is_open(t + 4_100));
    b.record_at(answered(500), t + 4_200, WALL);
    assert!(b.is_open(t + 4_200));
    assert_eq!(b.trips(), 2);
}

#[test]
fn failures_further_apart_than_the_interval_do_not_trip_it() {
    let b = breaker(&rule(Some(3), None));
    let mut t = 50_000;
    for _ in 0..20 {
        b.record_at(answered(500), t, WALL);
        t += 6_000;
    }
    assert_eq!(b.trips(), 0);
    // The last of those was 6 s ago: with this one, two within 10 s; a third 1 s later trips.
    b.record_at(answered(500), t, WALL);
    assert_eq!(b.trips(), 0);
    b.record_at(answered(500), t + 1_000, WALL);
    assert_eq!(b.trips(), 1);
}

#[test]
fn a_percentage_counts_every_call() {
    let b = breaker(&rule(None, Some(50)));
    let t = 1_000_000;
    for i in 0..10 {
        b.record_at(answered(200), t + i, WALL);
    }
    for i in 0..9 {
        b.record_at(answered(500), t + 100 + i, WALL);
        assert!(!b.is_open(t + 100 + i), "{} of 19", i + 1);
    }
    // 10 of 20 calls failed: 50 %.
    b.record_at(answered(500), t + 200, WALL);
    assert!(b.is_open(t + 200));
}

#[test]
fn retry_after_sets_the_trip_when_the_rule_accepts_it() {
    let mut accepting = rule(Some(1), None);
    accepting.accept_retry_after = true;
    let seconds = HeaderValue::from_static("7");
    let b = breaker(&accepting);
    b.record_at(
        Outcome::Answered(StatusCode::TOO_MANY_REQUESTS, Some(&seconds)),
        10_000,
        WALL,
    );
    assert_eq!(b.remaining(10_000), 7_000);

    // An HTTP date, 30 s after the wall clock.
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
    let date = HeaderValue::from_static("Sun, 06 Nov 1994 08:50:07 GMT");
    let b = breaker(&accepting);
    b.record_at(
        Outcome::Answered(StatusCode::SERVICE_UNAVAILABLE, Some(&date)),
        10_000,
        wall,
    );
    assert_eq!(b.remaining(10_000), 30_000);

    // Not a number or a date, zero, a date past: the rule's own trip duration.
    for bad in ["soon", "0", "-5", "Sun, 06 Nov 1994 08:49:00 GMT", "1.5"] {
        let b = breaker(&accepting);
        let v = HeaderValue::from_static(bad);
        b.record_at(
            Outcome::Answered(StatusCode::SERVICE_UNAVAILABLE, Some(&v)),
            10_000,
            wall,
        );
        assert_eq!(b.remaining(10_000), 2_000, "{bad}");
    }
    // A wait beyond a year is a year.
    let b = breaker(&accepting);
    let v = HeaderValue::from_static("99999999999999999999");
    b.record_at(
        Outcome::Answered(StatusCode::SERVICE_UNAVAILABLE, Some(&v)),
        10_000,
        wall,
    );
    assert_eq!(b.remaining(10_000), LONGEST_TRIP_MS);

    // A rule that does not accept it keeps its own.
    let b = breaker(&rule(Some(1), None));
    b.record_at(
        Outcome::Answered(StatusCode::TOO_MANY_REQUESTS, Some(&seconds)),
        10_000,
        WALL,
    );
    assert_eq!(b.remaining(10_000), 2_000);
}

#[test]
fn a_breaker_carries_over_while_the_service_and_rule_stay() {
    let r = rule(Some(3), None);
    let b = breaker(&r);
    assert!(b.carries_over("http://b", &r));
    assert!(!b.carries_over("http://c", &r));
    let mut longer = r.clone();
    longer.trip_duration_ms = 3_000;
    assert!(!b.carries_over("http://b", &longer));
    // Reasons are matched in any letter case.
    let mut renamed = r;
    renamed.error_reasons = vec!["backendconnectionfailure".into()];
    assert!(b.carries_over("http://b", &renamed));
}
