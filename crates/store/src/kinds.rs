//! The registry of kinds: every kind of document the store holds, in one list.
//!
//! Each kind has the name it is stored under (the `kind` column; never renamed, so stores
//! written by earlier releases read the same), the kind of its parent document if it lives under
//! one (an operation under its API; a top-level document has the empty parent), and whether a
//! change to it can change what a gateway is sent. The snapshot compiler's incremental update
//! skips the kinds that cannot, and gives up (compiling in full) on a name it does not know,
//! such as one written by a newer release sharing the store.
//!
//! A kind whose documents are keyed by another resource's id (an API's imported document, a
//! subscription's keys) says so in its description; it is still top-level.

use std::fmt;

/// Declares [`Kind`] and its properties from one list, so a kind is added in one place.
macro_rules! kinds {
    ($(
        $(#[$doc:meta])*
        $variant:ident = $name:literal, parent: $parent:expr, snapshot: $snapshot:expr;
    )*) => {
        /// A kind of stored document (see the module docs).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Kind {
            $($(#[$doc])* $variant,)*
        }

        impl Kind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [Kind] = &[$(Kind::$variant),*];

            /// The name documents of this kind are stored under.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Kind::$variant => $name,)*
                }
            }

            /// The kind of the document this kind lives under (its `parent` column names one of
            /// those), or `None` for a top-level kind (empty parent).
            pub const fn parent(self) -> Option<Kind> {
                match self {
                    $(Kind::$variant => $parent,)*
                }
            }

            /// Whether a change to a document of this kind can change a gateway's snapshot.
            pub const fn affects_snapshots(self) -> bool {
                match self {
                    $(Kind::$variant => $snapshot,)*
                }
            }

            /// The kind stored under `name`, if it is one this release knows.
            pub fn from_name(name: &str) -> Option<Kind> {
                match name {
                    $($name => Some(Kind::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

kinds! {
    /// An API (`gatehouse_model::resources::Api`).
    Api = "api", parent: None, snapshot: true;
    /// An API's operation.
    Operation = "operation", parent: Some(Kind::Api), snapshot: true;
    /// The OpenAPI document an API was imported from, as JSON text; id = the API's id.
    ApiDocument = "api-document", parent: None, snapshot: true;
    /// The path index: id = an API path in lower case, body = the id of the API serving it.
    ApiPath = "api-path", parent: None, snapshot: false;
    /// A product.
    Product = "product", parent: None, snapshot: true;
    /// A product holds an API: id = the API's id.
    ProductApi = "product-api", parent: Some(Kind::Product), snapshot: true;
    /// A product is visible to a group in the portal: id = the group's id.
    ProductGroup = "product-group", parent: Some(Kind::Product), snapshot: false;
    /// A subscription.
    Subscription = "subscription", parent: None, snapshot: true;
    /// A subscription's keys, sealed, with their hashes; id = the subscription's id.
    SubscriptionKeys = "subscription-keys", parent: None, snapshot: true;
    /// An empty row per user that subscribing through the portal writes first, so concurrent
    /// subscribes of one user take turns; id = the user's id.
    SubscribeGuard = "subscribe-guard", parent: None, snapshot: false;
    /// A named value.
    NamedValue = "named-value", parent: None, snapshot: true;
    /// A backend.
    Backend = "backend", parent: None, snapshot: true;
    /// A TLS certificate, sealed.
    Certificate = "certificate", parent: None, snapshot: true;
    /// A gateway resource. Its own document ships nowhere; its children do.
    Gateway = "gateway", parent: None, snapshot: false;
    /// An API assigned to a gateway: id = the API's id.
    GatewayApi = "gateway-api", parent: Some(Kind::Gateway), snapshot: true;
    /// A gateway's token-signing keys, sealed; id = `keys`.
    GatewayKeys = "gateway-keys", parent: Some(Kind::Gateway), snapshot: false;
    /// What a gateway instance last reported; id = the instance's name.
    GatewayInstance = "gateway-instance", parent: Some(Kind::Gateway), snapshot: false;
    /// A hostname the gateway serves with a certificate.
    HostnameConfiguration = "gateway-hostname-configuration", parent: Some(Kind::Gateway), snapshot: true;
    /// A certificate the gateway trusts as a CA: id = the certificate's id.
    GatewayCertificateAuthority = "gateway-certificate-authority", parent: Some(Kind::Gateway), snapshot: true;
    /// A developer portal user. Blocked users' subscriptions ship suspended.
    User = "user", parent: None, snapshot: true;
    /// A user's password hash; id = the user's id.
    UserCredentials = "user-credentials", parent: None, snapshot: false;
    /// The email index: id = an email in lower case, body = the id of the user who has it.
    UserEmail = "user-email", parent: None, snapshot: false;
    /// A group of users.
    Group = "group", parent: None, snapshot: false;
    /// A user is a member of a group: id = the user's id.
    GroupUser = "group-user", parent: Some(Kind::Group), snapshot: false;
    /// The global policy document (XML); id = `policy`.
    GlobalPolicy = "policy-global", parent: None, snapshot: true;
    /// A product's policy document (XML); id = `policy`.
    ProductPolicy = "policy-product", parent: Some(Kind::Product), snapshot: true;
    /// An API's policy document (XML); id = `policy`.
    ApiPolicy = "policy-api", parent: Some(Kind::Api), snapshot: true;
    /// An operation's policy document (XML), under its API; id = the operation's id.
    OperationPolicy = "policy-operation", parent: Some(Kind::Api), snapshot: true;
    /// A policy fragment.
    PolicyFragment = "policy-fragment", parent: None, snapshot: true;
    /// A logger (Azure Event Hubs, or an `http` or `otlp` sink) that `log-to-eventhub` sends
    /// to; its secrets sealed.
    Logger = "logger", parent: None, snapshot: true;
    /// The developer portal's branding: one document.
    PortalSettings = "portal-settings", parent: None, snapshot: false;
    /// A developer portal sign-in session, under its user (sessions from before that have the
    /// empty parent); id = a hash of the session token.
    PortalSession = "portal-session", parent: Some(Kind::User), snapshot: false;
    /// An admin console session; id = a hash of the session token.
    AdminSession = "admin-session", parent: None, snapshot: false;
}

impl Kind {
    /// The kinds whose documents live under a document of this kind.
    pub fn children(self) -> impl Iterator<Item = Kind> {
        Kind::ALL
            .iter()
            .copied()
            .filter(move |k| k.parent() == Some(self))
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests;
