//! Loggers (`/mgmt/loggers/{id}`), where `log-to-eventhub` sends its messages, with Azure API
//! Management's shape: `loggerType` `azureEventHub` with `credentials.connectionString` (and
//! `credentials.name`, the event hub, when the connection string has no `EntityPath`), or with
//! `credentials.endpointAddress`, `identityClientId` (`SystemAssigned` or a client id) and
//! `name` for a managed identity (the gateway's token provider), `description`, `isBuffered`. Two types of our own serve users outside Azure: `http` POSTs
//! the messages, newline-delimited, in batches to `endpoint.url` with `endpoint.headers`, and
//! `otlp` sends them as OpenTelemetry log records (OTLP/HTTP with JSON) to a collector.
//!
//! The connection string and the endpoint's header values are secrets: the control plane keeps
//! them sealed, `GET` shows them masked ([`MASKED`]), and a `PUT` that sends the masked value
//! back keeps the stored one. Azure's other logger types (`applicationInsights`,
//! `azureMonitor`) are refused with a sentence saying what to use instead.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{Problems, ValidationError};
use crate::resources::{Resource, check_http_url, is_header_name};

/// What `GET` shows in place of a secret; sent back in a `PUT`, it keeps the stored value.
pub const MASKED: &str = "******";

/// The credential holding an Event Hubs connection string.
pub const CONNECTION_STRING: &str = "connectionString";
/// The credential naming the event hub (Azure's `credentials.name`).
pub const EVENT_HUB_NAME: &str = "name";
/// The credentials of a logger that signs in with a managed identity: the namespace's host and
/// the identity (`SystemAssigned`, or a user-assigned identity's client id).
pub const ENDPOINT_ADDRESS: &str = "endpointAddress";
pub const IDENTITY_CLIENT_ID: &str = "identityClientId";

/// How the gateway signs in to an event hub.
#[derive(Clone, PartialEq, Eq)]
pub enum EventHubAuth {
    /// A shared access signature made with a key of the connection string.
    SharedKey { key_name: String, key: String },
    /// A token from the gateway's token provider; `client_id` names a user-assigned identity.
    ManagedIdentity { client_id: Option<String> },
}

/// Never prints the key.
impl std::fmt::Debug for EventHubAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::SharedKey { key_name, .. } => f
                .debug_struct("SharedKey")
                .field("key_name", key_name)
                .finish_non_exhaustive(),
            Self::ManagedIdentity { client_id } => f
                .debug_struct("ManagedIdentity")
                .field("client_id", client_id)
                .finish(),
        }
    }
}

/// An event hub and how to sign in to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventHubTarget {
    /// The namespace's host (and port, where one is given).
    pub host: String,
    pub hub: String,
    pub auth: EventHubAuth,
}

/// Where a logger sends its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoggerKind {
    /// Azure Event Hubs, over its HTTPS REST API.
    AzureEventHub,
    /// Batches of newline-delimited messages POSTed to a URL.
    Http,
    /// OpenTelemetry log records over OTLP/HTTP (JSON).
    Otlp,
}

impl LoggerKind {
    /// The kind of `loggerType` text, or why it is not one.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "azureEventHub" => Ok(Self::AzureEventHub),
            "http" => Ok(Self::Http),
            "otlp" => Ok(Self::Otlp),
            "applicationInsights" | "azureMonitor" => Err(format!(
                "'{text}' loggers are Azure's own telemetry services and are not supported here; use azureEventHub, or http or otlp to send to a sink of your own"
            )),
            other => Err(format!(
                "'{other}' is not a logger type; use azureEventHub, http or otlp"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AzureEventHub => "azureEventHub",
            Self::Http => "http",
            Self::Otlp => "otlp",
        }
    }
}

/// The URL and headers of an `http` or `otlp` logger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoggerEndpoint {
    /// `http`: where batches are POSTed. `otlp`: the collector's OTLP/HTTP base URL (records
    /// go to `/v1/logs` under it), or the full `…/v1/logs` URL.
    pub url: String,
    /// Headers sent with every batch (an `Authorization`, say). Secret: shown masked.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Logger {
    #[serde(default)]
    #[schema(read_only)]
    pub id: String,
    /// `azureEventHub`, `http` or `otlp`.
    #[serde(default)]
    #[schema(required = true, pattern = "^(azureEventHub|http|otlp)$")]
    pub logger_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `azureEventHub`: `connectionString` (secret, shown masked) and `name`, the event hub,
    /// when the connection string carries no `EntityPath`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub credentials: BTreeMap<String, String>,
    /// Whether messages wait up to a moment to travel in larger batches (Azure's default);
    /// `false` sends what is queued at once.
    #[serde(default = "default_true")]
    pub is_buffered: bool,
    /// Azure's resource id of the event hub; kept, not used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    /// `http` and `otlp`: where the messages go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<LoggerEndpoint>,
}

fn default_true() -> bool {
    true
}

impl Logger {
    /// The kind of this logger (`normalize` has checked it).
    pub fn kind(&self) -> Result<LoggerKind, String> {
        LoggerKind::parse(&self.logger_type)
    }

    /// The secret values: the connection string and the endpoint's header values.
    pub fn secrets_mut(&mut self) -> impl Iterator<Item = &mut String> {
        self.credentials
            .iter_mut()
            .filter(|(k, _)| *k == CONNECTION_STRING)
            .map(|(_, v)| v)
            .chain(
                self.endpoint
                    .iter_mut()
                    .flat_map(|e| e.headers.values_mut()),
            )
    }

    /// This logger as `GET` shows it: every secret masked.
    pub fn masked(mut self) -> Self {
        for s in self.secrets_mut() {
            *s = MASKED.to_owned();
        }
        self
    }

    /// The event hub of an `azureEventHub` logger and how to sign in to it.
    pub fn event_hub(&self) -> Result<EventHubTarget, String> {
        let name = self
            .credentials
            .get(EVENT_HUB_NAME)
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty());
        let endpoint = self.credentials.get(ENDPOINT_ADDRESS);
        if let Some(text) = self.credentials.get(CONNECTION_STRING) {
            if endpoint.is_some() || self.credentials.contains_key(IDENTITY_CLIENT_ID) {
                return Err("give connectionString, or endpointAddress and identityClientId for a managed identity, not both".into());
            }
            let c = EventHubConnection::parse(text)?;
            let hub = c.entity_path.or(name).ok_or(
                "name the event hub: give credentials.name, or EntityPath in the connection string",
            )?;
            return Ok(EventHubTarget {
                host: c.host,
                hub,
                auth: EventHubAuth::SharedKey {
                    key_name: c.key_name,
                    key: c.key,
                },
            });
        }
        let Some(endpoint) = endpoint else {
            return Err("an azureEventHub logger needs credentials.connectionString, or endpointAddress and identityClientId for a managed identity".into());
        };
        let host = EVENT_HUB_ADDRESS
            .as_ref()
            .filter(|re| re.is_match(endpoint))
            .and_then(|_| host_of(endpoint))
            .ok_or(
                "credentials.endpointAddress must be the namespace's host, such as contoso.servicebus.windows.net (or sb://contoso.servicebus.windows.net/)",
            )?;
        let hub =
            name.ok_or("a managed identity logger names its event hub in credentials.name")?;
        let client_id = match self.credentials.get(IDENTITY_CLIENT_ID).map(|c| c.trim()) {
            None | Some("") => None,
            Some(c) if c.eq_ignore_ascii_case("SystemAssigned") => None,
            Some(c) => Some(c.to_owned()),
        };
        Ok(EventHubTarget {
            host,
            hub,
            auth: EventHubAuth::ManagedIdentity { client_id },
        })
    }
}

impl Resource for Logger {
    fn id(&self) -> &str {
        &self.id
    }

    fn set_id(&mut self, id: String) {
        self.id = id;
    }

    fn normalize(&mut self) -> Result<(), ValidationError> {
        let mut p = Problems::default();
        let kind = if self.logger_type.is_empty() {
            p.push("loggerType", "is required: azureEventHub, http or otlp");
            None
        } else {
            self.kind().map_err(|e| p.push("loggerType", e)).ok()
        };
        match kind {
            Some(LoggerKind::AzureEventHub) => {
                if self.endpoint.is_some() {
                    p.push(
                        "endpoint",
                        "belongs to http and otlp loggers; an azureEventHub logger takes credentials.connectionString",
                    );
                }
                for key in self.credentials.keys() {
                    if ![
                        CONNECTION_STRING,
                        EVENT_HUB_NAME,
                        ENDPOINT_ADDRESS,
                        IDENTITY_CLIENT_ID,
                    ]
                    .contains(&key.as_str())
                    {
                        p.push(
                            format!("credentials.{key}"),
                            "is not known; an azureEventHub logger takes connectionString and name, or endpointAddress, identityClientId and name",
                        );
                    }
                }
                // A masked value is resolved against the stored one before this runs. What is
                // wrong with one credential names it; what is missing, or does not go
                // together, names `credentials`.
                let connection = self.credentials.get(CONNECTION_STRING);
                let address = self.credentials.get(ENDPOINT_ADDRESS);
                if let Some(Err(e)) = connection.map(|c| EventHubConnection::parse(c)) {
                    p.push("credentials.connectionString", e);
                } else if connection.is_none()
                    && let Some(address) = address
                    && !EVENT_HUB_ADDRESS
                        .as_ref()
                        .is_some_and(|re| re.is_match(address))
                {
                    p.push(
                        "credentials.endpointAddress",
                        "must be the namespace's host, such as contoso.servicebus.windows.net (or sb://contoso.servicebus.windows.net/)",
                    );
                } else if let Err(e) = self.event_hub() {
                    p.push("credentials", e);
                }
            }
            Some(LoggerKind::Http | LoggerKind::Otlp) => {
                if !self.credentials.is_empty() {
                    p.push(
                        "credentials",
                        "belongs to azureEventHub loggers; give endpoint.url and endpoint.headers",
                    );
                }
                match &self.endpoint {
                    None => p.push(
                        "endpoint",
                        "is required: {\"url\": \"https://…\", \"headers\": {…}}",
                    ),
                    Some(e) => {
                        if let Err(m) = check_http_url(&e.url) {
                            p.push("endpoint.url", m);
                        }
                        for (name, value) in &e.headers {
                            if !is_header_name(name) {
                                p.push(
                                    format!("endpoint.headers.{name}"),
                                    "is not a valid HTTP header name",
                                );
                            } else if value.chars().any(|c| c.is_control() && c != '\t') {
                                p.push(
                                    format!("endpoint.headers.{name}"),
                                    "is not a valid header value (control characters such as line breaks are not allowed)",
                                );
                            }
                        }
                    }
                }
            }
            None => {}
        }
        if let Some(d) = &self.description
            && d.len() > 2000
        {
            p.push("description", "must be at most 2000 characters");
        }
        p.finish("logger")
    }
}

/// An Event Hubs connection string, parsed: `Endpoint=sb://{namespace}/;
/// SharedAccessKeyName={name};SharedAccessKey={key}[;EntityPath={hub}]`.
#[derive(Clone, PartialEq, Eq)]
pub struct EventHubConnection {
    /// The namespace's host (and port, where one is given), without scheme or path.
    pub host: String,
    pub key_name: String,
    pub key: String,
    pub entity_path: Option<String>,
}

/// Never prints the key.
impl std::fmt::Debug for EventHubConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventHubConnection")
            .field("host", &self.host)
            .field("key_name", &self.key_name)
            .field("entity_path", &self.entity_path)
            .finish_non_exhaustive()
    }
}

impl EventHubConnection {
    /// Parses a connection string as the Azure portal gives it. Errors name the part that is
    /// wrong, never the key.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut endpoint = None;
        let mut key_name = None;
        let mut key = None;
        let mut entity_path = None;
        for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((name, value)) = part.split_once('=') else {
                return Err(
                    "the connection string is not a list of Name=value parts separated by ';'"
                        .into(),
                );
            };
            let value = value.trim().to_owned();
            match name.trim().to_ascii_lowercase().as_str() {
                "endpoint" => endpoint = Some(value),
                "sharedaccesskeyname" => key_name = Some(value),
                "sharedaccesskey" => key = Some(value),
                "entitypath" => entity_path = Some(value).filter(|v| !v.is_empty()),
                "sharedaccesssignature" => {
                    return Err("a connection string with a SharedAccessSignature is not supported; give SharedAccessKeyName and SharedAccessKey".into());
                }
                _ => {}
            }
        }
        let endpoint = endpoint.ok_or(
            "the connection string has no Endpoint=sb://{namespace}.servicebus.windows.net/",
        )?;
        let rest = ["sb://", "https://"]
            .iter()
            .find_map(|s| {
                endpoint
                    .get(..s.len())
                    .filter(|p| p.eq_ignore_ascii_case(s))
                    .map(|_| &endpoint[s.len()..])
            })
            .ok_or("the connection string's Endpoint must start with sb:// (or https://)")?;
        let host = host_of(rest).ok_or("the connection string's Endpoint has no valid host")?;
        let key_name = key_name
            .filter(|k| !k.is_empty())
            .ok_or("the connection string has no SharedAccessKeyName")?;
        let key = key
            .filter(|k| !k.is_empty())
            .ok_or("the connection string has no SharedAccessKey")?;
        Ok(Self {
            host,
            key_name,
            key,
            entity_path,
        })
    }
}

/// What `credentials.endpointAddress` may be, as the OpenAPI document publishes it: the
/// namespace's DNS name (and a port), bare or after `sb://` or `https://` (in any case), with
/// an optional final `/`.
pub const EVENT_HUB_ADDRESS_PATTERN: &str = "^(?:[Ss][Bb]://|[Hh][Tt][Tt][Pp][Ss]://)?[A-Za-z0-9-]+(?:\\.[A-Za-z0-9-]+)*(?::[0-9]{1,5})?/?$";

/// [`EVENT_HUB_ADDRESS_PATTERN`], compiled once; `None` only if it did not compile, which a
/// unit test rules out (every address is refused then).
static EVENT_HUB_ADDRESS: std::sync::LazyLock<Option<regex::Regex>> =
    std::sync::LazyLock::new(|| regex::Regex::new(EVENT_HUB_ADDRESS_PATTERN).ok());

/// The host (and port) of `text`: a bare host, or a URL (`sb://`, `https://`) whose path is
/// ignored; lower case. `None` when there is none.
fn host_of(text: &str) -> Option<String> {
    let text = text.trim();
    let rest = ["sb://", "https://"]
        .iter()
        .find_map(|s| {
            text.get(..s.len())
                .filter(|p| p.eq_ignore_ascii_case(s))
                .map(|_| &text[s.len()..])
        })
        .unwrap_or(text);
    let host = rest.split(['/', '?']).next().unwrap_or_default().trim();
    let valid = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    valid.then(|| host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(json: &str) -> Result<Logger, ValidationError> {
        let mut l: Logger = serde_json::from_str(json).unwrap();
        l.set_id("l".into());
        l.normalize().map(|()| l)
    }

    #[test]
    fn event_hub_loggers_take_azures_shape() {
        let l = hub(r#"{"loggerType":"azureEventHub","description":"d","credentials":{"name":"hub1","connectionString":"Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=abc="}}"#).unwrap();
        assert!(l.is_buffered);
        let c = l.event_hub().unwrap();
        assert_eq!(c.host, "ns.servicebus.windows.net");
        assert_eq!(c.hub, "hub1");
        assert_eq!(
            c.auth,
            EventHubAuth::SharedKey {
                key_name: "send".into(),
                key: "abc=".into()
            }
        );
        // EntityPath in the string wins over credentials.name.
        let l = hub(r#"{"loggerType":"azureEventHub","credentials":{"name":"other","connectionString":"Endpoint=sb://127.0.0.1:9443/;SharedAccessKeyName=k;SharedAccessKey=s3cr3t;EntityPath=orders"}}"#).unwrap();
        let c = l.event_hub().unwrap();
        assert_eq!(
            (c.host.as_str(), c.hub.as_str()),
            ("127.0.0.1:9443", "orders")
        );
        // Debug never shows the key.
        assert!(!format!("{c:?}").contains("s3cr3t"), "{c:?}");
        // A managed identity, system-assigned or user-assigned.
        let l = hub(r#"{"loggerType":"azureEventHub","credentials":{"endpointAddress":"Contoso.servicebus.windows.net","identityClientId":"SystemAssigned","name":"orders"}}"#).unwrap();
        let c = l.event_hub().unwrap();
        assert_eq!(
            (c.host.as_str(), c.hub.as_str(), &c.auth),
            (
                "contoso.servicebus.windows.net",
                "orders",
                &EventHubAuth::ManagedIdentity { client_id: None }
            )
        );
        let l = hub(r#"{"loggerType":"azureEventHub","credentials":{"endpointAddress":"sb://contoso.servicebus.windows.net/","identityClientId":"1b2c","name":"orders"}}"#).unwrap();
        assert_eq!(
            l.event_hub().unwrap().auth,
            EventHubAuth::ManagedIdentity {
                client_id: Some("1b2c".into())
            }
        );
    }

    #[test]
    fn an_endpoint_address_is_a_host_as_the_published_pattern_says() {
        assert!(EVENT_HUB_ADDRESS.is_some());
        let with = |address: &str| {
            hub(&format!(
                r#"{{"loggerType":"azureEventHub","credentials":{{"endpointAddress":"{address}","name":"h"}}}}"#
            ))
        };
        for ok in [
            "ns.servicebus.windows.net",
            "HTTPS://ns.example:5671/",
            "sb://ns/",
        ] {
            assert!(with(ok).is_ok(), "{ok}");
        }
        for bad in [
            "sb://",
            " ns.example",
            "ns.example/path",
            "sb://ns..x",
            "ns_1",
            "",
        ] {
            let e = with(bad).unwrap_err();
            assert!(e.to_string().contains("endpointAddress"), "{bad}: {e}");
        }
    }

    #[test]
    fn bad_loggers_say_what_is_wrong() {
        for (json, target, wanted) in [
            (r#"{}"#, "loggerType", "is required"),
            (
                r#"{"loggerType":"applicationInsights","credentials":{"instrumentationKey":"x"}}"#,
                "loggerType",
                "not supported here",
            ),
            (
                r#"{"loggerType":"azureEventHub","credentials":{"connectionString":"Endpoint=sb://ns/;SharedAccessKeyName=k;SharedAccessKey=s"}}"#,
                "credentials",
                "name the event hub",
            ),
            (
                r#"{"loggerType":"azureEventHub","credentials":{"connectionString":"Endpoint=ns;SharedAccessKey=s"}}"#,
                "credentials.connectionString",
                "must start with sb://",
            ),
            (
                r#"{"loggerType":"azureEventHub","credentials":{"connectionString":"Endpoint=sb://ns/;SharedAccessKeyName=k","name":"h"}}"#,
                "credentials.connectionString",
                "no SharedAccessKey",
            ),
            (
                r#"{"loggerType":"azureEventHub","credentials":{"endpointAddress":"ns.servicebus.windows.net","identityClientId":"SystemAssigned"}}"#,
                "credentials",
                "names its event hub in credentials.name",
            ),
            (
                r#"{"loggerType":"azureEventHub","credentials":{"name":"h"}}"#,
                "credentials",
                "needs credentials.connectionString, or endpointAddress",
            ),
            (
                r#"{"loggerType":"azureEventHub","credentials":{"name":"h","endpointAddress":"ns","connectionString":"Endpoint=sb://ns/;SharedAccessKeyName=k;SharedAccessKey=s"}}"#,
                "credentials",
                "not both",
            ),
            (
                r#"{"loggerType":"azureEventHub","credentials":{"name":"h","instrumentationKey":"x","connectionString":"Endpoint=sb://ns/;SharedAccessKeyName=k;SharedAccessKey=s"}}"#,
                "credentials.instrumentationKey",
                "is not known",
            ),
            (r#"{"loggerType":"http"}"#, "endpoint", "is required"),
            (
                r#"{"loggerType":"http","endpoint":{"url":"ftp://x"}}"#,
                "endpoint.url",
                "http://",
            ),
            (
                r#"{"loggerType":"otlp","endpoint":{"url":"http://c:4318","headers":{"bad name":"v"}}}"#,
                "endpoint.headers.bad name",
                "header name",
            ),
        ] {
            let e = hub(json).unwrap_err();
            let d = e
                .details
                .iter()
                .find(|d| d.target == target)
                .unwrap_or_else(|| panic!("{json}: {e:?}"));
            assert!(d.message.contains(wanted), "{json}: {}", d.message);
        }
    }

    #[test]
    fn secrets_are_masked_for_display() {
        let l = hub(r#"{"loggerType":"http","endpoint":{"url":"https://sink.test/in","headers":{"Authorization":"Bearer t"}}}"#).unwrap();
        let shown = serde_json::to_value(l.clone().masked()).unwrap();
        assert_eq!(shown["endpoint"]["headers"]["Authorization"], MASKED);
        assert_eq!(shown["endpoint"]["url"], "https://sink.test/in");
        let l = hub(r#"{"loggerType":"azureEventHub","credentials":{"name":"h","connectionString":"Endpoint=sb://ns/;SharedAccessKeyName=k;SharedAccessKey=s"}}"#).unwrap();
        let shown = serde_json::to_value(l.masked()).unwrap();
        assert_eq!(shown["credentials"]["connectionString"], MASKED);
        assert_eq!(shown["credentials"]["name"], "h");
    }
}
