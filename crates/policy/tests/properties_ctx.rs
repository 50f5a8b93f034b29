use gatehouse_policy::expr::{Context, Entity, Field, Message, Value};
use std::time::SystemTime;
/// A context with nothing in it.
pub struct Empty;

impl Context for Empty {
    fn request_method(&self) -> std::borrow::Cow<'_, str> {
        "GET".into()
    }
    fn request_url(&self) -> std::borrow::Cow<'_, str> {
        "https://h/p?q=1".into()
    }
    fn ip_address(&self) -> std::borrow::Cow<'_, str> {
        "127.0.0.1".into()
    }
    fn header(&self, _: Message, name: &str) -> Option<String> {
        name.eq_ignore_ascii_case("x").then(|| "a,b".to_owned())
    }
    fn headers(&self, _: Message) -> Vec<(String, String)> {
        vec![("x".into(), "a,b".into())]
    }
    fn body(&self, _: Message, _: bool) -> Option<std::borrow::Cow<'_, [u8]>> {
        Some(br#"{"a":[1,2,{"b":"c"}]}"#.as_slice().into())
    }
    fn matched_parameter(&self, _: &str) -> Option<String> {
        None
    }
    fn matched_parameters(&self) -> Vec<(String, String)> {
        Vec::new()
    }
    fn response_status(&self) -> Option<(u16, std::borrow::Cow<'_, str>)> {
        None
    }
    fn variable(&self, name: &str) -> Option<Value> {
        (name == "v").then(|| Value::from(7))
    }
    fn has(&self, _: Entity) -> bool {
        false
    }
    fn field(&self, _: Field) -> Option<std::borrow::Cow<'_, str>> {
        None
    }
    fn request_id(&self) -> uuid::Uuid {
        uuid::Uuid::nil()
    }
    fn timestamp(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH
    }
}
