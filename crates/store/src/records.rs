//! The record types of the store: the model's resources, each under its kind, and the
//! documents that exist only for storage (indexes, credentials, imported documents). Records
//! whose logic lives in another crate (a subscription's sealed keys, a portal session) are
//! declared there, against the same registry.

use gatehouse_model::loggers::Logger;
use gatehouse_model::resources::{
    Api, Backend, Gateway, GatewayCertificateAuthority, Group, HostnameConfiguration, NamedValue,
    Operation, PolicyFragment, PortalSettings, Product, Subscription, User,
};
use serde::{Deserialize, Serialize};

use crate::Kind;
use crate::repo::JsonRecord;

/// Declares the kind each model resource is stored under.
macro_rules! resources {
    ($($ty:ty => $kind:expr $(; upgrade: $up:path)?),* $(,)?) => {
        $(impl JsonRecord for $ty {
            const KIND: Kind = $kind;
            $(fn upgrade(body: &mut serde_json::Value) -> bool {
                $up(body)
            })?
        })*

        /// The model's resource types and their kinds' names, for tests.
        #[cfg(test)]
        pub(crate) const RESOURCES: &[(&str, Kind)] = &[$((stringify!($ty), $kind)),*];
    };
}

resources! {
    Api => Kind::Api,
    Operation => Kind::Operation,
    Product => Kind::Product,
    Subscription => Kind::Subscription,
    NamedValue => Kind::NamedValue,
    Backend => Kind::Backend; upgrade: legacy_backend,
    Gateway => Kind::Gateway,
    HostnameConfiguration => Kind::HostnameConfiguration,
    GatewayCertificateAuthority => Kind::GatewayCertificateAuthority,
    User => Kind::User,
    Group => Kind::Group,
    PolicyFragment => Kind::PolicyFragment,
    PortalSettings => Kind::PortalSettings,
    Logger => Kind::Logger,
}

/// A backend stored before pools and Azure's circuit breaker rules: its `pool` (connection
/// pool sizes) and `circuitBreaker` (`failureCount`, `intervalSeconds`,
/// `tripDurationSeconds`) had other shapes, and no gateway ever used them. They are dropped,
/// which changes nothing a gateway does.
fn legacy_backend(body: &mut serde_json::Value) -> bool {
    let Some(members) = body.as_object_mut() else {
        return false;
    };
    let mut changed = false;
    for (name, old) in [
        ("pool", &["maxIdleConnections", "idleTimeoutSeconds"][..]),
        (
            "circuitBreaker",
            &["failureCount", "intervalSeconds", "tripDurationSeconds"][..],
        ),
    ] {
        let legacy = members
            .get(name)
            .and_then(serde_json::Value::as_object)
            .is_some_and(|o| o.keys().any(|k| old.contains(&k.as_str())));
        if legacy {
            members.remove(name);
            changed = true;
        }
    }
    changed
}

/// The OpenAPI document an API was imported from (id = the API's id), as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ApiDocument(pub serde_json::Value);

impl JsonRecord for ApiDocument {
    const KIND: Kind = Kind::ApiDocument;
}

/// An entry of the API path index (id = the path in lower case): the API serving the path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PathOwner(pub String);

impl JsonRecord for PathOwner {
    const KIND: Kind = Kind::ApiPath;
}

/// An entry of the email index (id = the email as `gatehouse_model::resources::email_key`
/// gives it): the user who has the email.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EmailOwner(pub String);

impl JsonRecord for EmailOwner {
    const KIND: Kind = Kind::UserEmail;
}

/// A user's password (id = the user's id): the argon2 hash, as a PHC string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserCredentials {
    pub password_hash: String,
}

impl JsonRecord for UserCredentials {
    const KIND: Kind = Kind::UserCredentials;
}

/// The row a user's subscribe writes first (id = the user's id), so that concurrent subscribes
/// of one user take turns. It holds nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SubscribeGuard {}

impl JsonRecord for SubscribeGuard {
    const KIND: Kind = Kind::SubscribeGuard;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::Record;

    /// Each model resource is kept under the kind its documents always had.
    #[test]
    fn resources_keep_their_kinds() {
        let expected = [
            ("Api", "api"),
            ("Operation", "operation"),
            ("Product", "product"),
            ("Subscription", "subscription"),
            ("NamedValue", "named-value"),
            ("Backend", "backend"),
            ("Gateway", "gateway"),
            ("HostnameConfiguration", "gateway-hostname-configuration"),
            (
                "GatewayCertificateAuthority",
                "gateway-certificate-authority",
            ),
            ("User", "user"),
            ("Group", "group"),
            ("PolicyFragment", "policy-fragment"),
            ("PortalSettings", "portal-settings"),
            ("Logger", "logger"),
        ];
        let actual: Vec<(&str, &str)> = RESOURCES.iter().map(|(t, k)| (*t, k.name())).collect();
        assert_eq!(actual, expected);
        assert_eq!(<Api as Record>::KIND, Kind::Api);
    }

    /// Backends stored with the unused connection-pool and breaker shapes of earlier releases
    /// still read, without them; a body wrong in another way is still an error.
    #[test]
    fn backends_of_earlier_releases_read() {
        use gatehouse_model::resources::Backend;
        let old = r#"{"id":"b","url":"http://b.example.com","protocol":"http",
            "circuitBreaker":{"failureCount":3,"intervalSeconds":10,"tripDurationSeconds":30},
            "pool":{"maxIdleConnections":8}}"#;
        let b = Backend::decode(old.to_owned()).unwrap();
        assert_eq!(b.url, "http://b.example.com");
        assert!(b.pool.is_none() && b.circuit_breaker.is_none());
        assert!(Backend::decode(r#"{"id":"b","url":7}"#.to_owned()).is_err());
        let current = r#"{"id":"p","type":"Pool","protocol":"http",
            "pool":{"services":[{"id":"/backends/a","priority":1,"weight":2}]}}"#;
        let p = Backend::decode(current.to_owned()).unwrap();
        assert_eq!(p.members().collect::<Vec<_>>(), ["a"]);
    }

    #[test]
    fn storage_records_keep_their_stored_form() {
        assert_eq!(EmailOwner("u1".into()).encode().unwrap(), "\"u1\"");
        assert_eq!(PathOwner("a".into()).encode().unwrap(), "\"a\"");
        assert_eq!(SubscribeGuard {}.encode().unwrap(), "{}");
        let credentials = UserCredentials {
            password_hash: "$argon2id$x".into(),
        };
        assert_eq!(
            credentials.encode().unwrap(),
            r#"{"passwordHash":"$argon2id$x"}"#
        );
        let doc = ApiDocument::decode(r#"{"openapi":"3.0.0"}"#.into()).unwrap();
        assert_eq!(doc.0["openapi"], "3.0.0");
    }
}
