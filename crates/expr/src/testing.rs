//! A [`Context`] backed by plain data, for tests, examples and fuzzing (feature `test-util`).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use super::{ClientCertificate, Context, Entity, Field, Message, Value};

/// Everything an expression can read, as plain fields. Header names match case-insensitively;
/// several values of a header are joined with `,`.
#[derive(Clone, Debug)]
pub struct StaticContext {
    pub method: String,
    pub url: String,
    pub original_url: Option<String>,
    pub ip_address: String,
    pub request_headers: Vec<(String, Vec<String>)>,
    pub request_body: Option<Vec<u8>>,
    /// Status code and reason, once there is a response.
    pub response: Option<(u16, String)>,
    pub response_headers: Vec<(String, Vec<String>)>,
    pub response_body: Option<Vec<u8>>,
    pub matched_parameters: Vec<(String, String)>,
    pub variables: Vec<(String, Value)>,
    /// Which of `context.Subscription`, `User`… exist.
    pub entities: Vec<Entity>,
    pub fields: Vec<(Field, String)>,
    pub request_id: uuid::Uuid,
    pub timestamp: SystemTime,
    /// A fixed clock for `DateTime.UtcNow`; the system clock when `None`.
    pub now: Option<SystemTime>,
    /// `context.Request.Certificate`.
    pub certificate: Option<Arc<ClientCertificate>>,
}

impl Default for StaticContext {
    fn default() -> Self {
        Self {
            method: "GET".into(),
            url: "https://localhost/".into(),
            original_url: None,
            ip_address: "127.0.0.1".into(),
            request_headers: Vec::new(),
            request_body: None,
            response: None,
            response_headers: Vec::new(),
            response_body: None,
            matched_parameters: Vec::new(),
            variables: Vec::new(),
            entities: Vec::new(),
            fields: Vec::new(),
            request_id: uuid::Uuid::nil(),
            timestamp: SystemTime::UNIX_EPOCH,
            now: None,
            certificate: None,
        }
    }
}

impl StaticContext {
    fn header_list(&self, message: Message) -> &[(String, Vec<String>)] {
        match message {
            Message::Request => &self.request_headers,
            Message::Response => &self.response_headers,
        }
    }
}

impl Context for StaticContext {
    fn request_method(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.method)
    }

    fn request_url(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.url)
    }

    fn original_url(&self) -> Cow<'_, str> {
        Cow::Borrowed(self.original_url.as_deref().unwrap_or(&self.url))
    }

    fn ip_address(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.ip_address)
    }

    fn client_certificate(&self) -> Option<Arc<ClientCertificate>> {
        self.certificate.clone()
    }

    fn header(&self, message: Message, name: &str) -> Option<String> {
        let values: Vec<&str> = self
            .header_list(message)
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .flat_map(|(_, vs)| vs.iter().map(String::as_str))
            .collect();
        (!values.is_empty()).then(|| values.join(","))
    }

    fn headers(&self, message: Message) -> Vec<(String, String)> {
        self.header_list(message)
            .iter()
            .map(|(k, vs)| (k.clone(), vs.join(",")))
            .collect()
    }

    fn has_body(&self, message: Message) -> bool {
        match message {
            Message::Request => self.request_body.is_some(),
            Message::Response => self.response_body.is_some(),
        }
    }

    fn body(&self, message: Message, _preserve_content: bool) -> Option<Cow<'_, [u8]>> {
        match message {
            Message::Request => self.request_body.as_deref().map(Cow::Borrowed),
            Message::Response => self.response_body.as_deref().map(Cow::Borrowed),
        }
    }

    fn matched_parameter(&self, name: &str) -> Option<String> {
        self.matched_parameters
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }

    fn matched_parameters(&self) -> Vec<(String, String)> {
        self.matched_parameters.clone()
    }

    fn response_status(&self) -> Option<(u16, Cow<'_, str>)> {
        self.response
            .as_ref()
            .map(|(c, r)| (*c, Cow::Borrowed(r.as_str())))
    }

    fn variable(&self, name: &str) -> Option<Value> {
        self.variables
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    fn has(&self, entity: Entity) -> bool {
        self.entities.contains(&entity)
    }

    fn field(&self, field: Field) -> Option<Cow<'_, str>> {
        self.fields
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, v)| Cow::Borrowed(v.as_str()))
    }

    fn request_id(&self) -> uuid::Uuid {
        self.request_id
    }

    fn timestamp(&self) -> SystemTime {
        self.timestamp
    }

    fn now(&self) -> SystemTime {
        self.now.unwrap_or_else(SystemTime::now)
    }
}
