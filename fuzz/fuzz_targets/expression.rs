//! Feeds arbitrary text to the policy expression compiler and evaluates what compiles against
//! a small fixed request with a small budget: nothing may panic, hang, overflow the stack or
//! run past its budget, and refusals must point into the text.

#![no_main]

use gatehouse_policy::expr::testing::StaticContext;
use gatehouse_policy::expr::{self, Budget, Entity, Field, Value};
use libfuzzer_sys::fuzz_target;

const STEPS: u64 = 5_000;

fn context() -> StaticContext {
    StaticContext {
        method: "POST".into(),
        url: "https://api.example.com/echo/items/42?sort=desc&tag=a&tag=b".into(),
        request_headers: vec![
            ("X-Id".into(), vec!["abc".into()]),
            ("X-Multi".into(), vec!["one".into(), "two".into()]),
            (
                "Authorization".into(),
                vec!["Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIiwiYXVkIjpbIngiLCJ5Il19.".into()],
            ),
        ],
        request_body: Some(
            br#"{"name":"widget","price":12.5,"tags":["x","y"],"dims":{"w":3}}"#.to_vec(),
        ),
        response: Some((200, "OK".into())),
        response_body: Some(b"[1,2,3]".to_vec()),
        matched_parameters: vec![("id".into(), "42".into())],
        variables: vec![
            ("count".into(), Value::Int(3)),
            ("name".into(), Value::from("bob")),
        ],
        entities: vec![Entity::Api, Entity::User],
        fields: vec![
            (Field::ApiName, "Echo".into()),
            (Field::UserEmail, "a@example.com".into()),
        ],
        now: Some(std::time::SystemTime::UNIX_EPOCH),
        ..StaticContext::default()
    }
}

fn check(src: &str) {
    match expr::compile(src) {
        Ok(e) => {
            let mut budget = Budget::new(STEPS);
            if let Err(err) = e.eval(&context(), &mut budget) {
                assert!(!err.reason.is_empty() && !err.message.is_empty());
            }
            assert!(
                budget.used() <= STEPS + 1,
                "budget overrun: {}",
                budget.used()
            );
        }
        Err(err) => {
            assert!(
                err.offset <= src.len(),
                "offset {} past {}",
                err.offset,
                src.len()
            );
            assert!(err.line >= 1 && err.column >= 1);
            assert!(!err.message.is_empty());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    check(&text);
    if !text.starts_with('@') {
        check(&format!("@({text})"));
    }
});
