//! What the portal needs from the control plane beyond reading the store: operations whose
//! logic lives there (sealing subscription keys, publishing a committed change to gateways,
//! reading an API's imported document). The binary implements this over the control plane, so
//! this crate stays independent of it (DESIGN §8: `portal` and `control` are siblings).

use std::future::Future;
use std::pin::Pin;

use gatehouse_model::resources::{Subscription, SubscriptionKeys, SubscriptionState};
use gatehouse_store::Tx;
use serde_json::Value;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A control-plane operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The input was refused; the message is fit to show the user.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// Anything else; logged, never shown.
    #[error("{0}")]
    Internal(String),
}

pub trait PortalBackend: Send + Sync + 'static {
    /// Creates a subscription with freshly generated keys (its id must be new).
    fn create_subscription(
        &self,
        subscription: Subscription,
    ) -> BoxFuture<'_, Result<Subscription, BackendError>>;

    fn set_subscription_state<'a>(
        &'a self,
        id: &'a str,
        state: SubscriptionState,
    ) -> BoxFuture<'a, Result<Subscription, BackendError>>;

    /// The keys in clear text.
    fn subscription_keys<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<SubscriptionKeys, BackendError>>;

    /// Replaces the primary (or secondary) key; the old one stops working.
    fn regenerate_key<'a>(
        &'a self,
        id: &'a str,
        primary: bool,
    ) -> BoxFuture<'a, Result<(), BackendError>>;

    /// The OpenAPI document imported with an API, as JSON, if there is one.
    fn api_document<'a>(
        &'a self,
        api_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Value>, BackendError>>;

    /// Commits a store transaction and publishes the new revision.
    fn commit(&self, tx: Tx) -> BoxFuture<'_, Result<u64, BackendError>>;
}

/// What the admin console needs from the control plane: the admin token check and the fleet's
/// status, computed there as the management API computes it.
pub trait AdminBackend: Send + Sync + 'static {
    /// Whether `token` is the admin token (compared in constant time).
    fn admin_token_matches(&self, token: &str) -> bool;

    /// A value that changes whenever the admin token changes (never the token itself):
    /// console sessions started under another admin token end.
    fn admin_generation(&self) -> String;

    /// Every gateway and its instances, with the current configuration revision.
    fn fleet(&self) -> BoxFuture<'_, Result<Fleet, BackendError>>;
}

/// The fleet as the admin console shows it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Fleet {
    pub current_revision: u64,
    pub gateways: Vec<FleetGateway>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FleetGateway {
    pub id: String,
    pub location: Option<String>,
    pub description: Option<String>,
    /// The gateway inside `gatehouse up`: it runs in process and sends no heartbeats.
    pub built_in: bool,
    pub instances: Vec<FleetInstance>,
    /// Link calls refused for their token since the control plane started (not per instance:
    /// a refused call proves nothing about who made it).
    pub rejected_tokens: u64,
    /// `expired` or `invalidSignature`, for the last one.
    pub last_token_rejection: Option<String>,
    /// RFC 3339.
    pub last_token_rejected_at: Option<String>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FleetInstance {
    pub name: String,
    pub version: String,
    /// `inSync`, `behind` or `offline`.
    pub state: String,
    /// `connected`, `stale` or `offline`.
    pub link: String,
    /// `ready`, `stale` or `starting`, as the instance reports itself.
    pub reported_state: String,
    pub applied_revision: Option<u64>,
    /// RFC 3339.
    pub last_heartbeat: Option<String>,
    pub seconds_since_heartbeat: Option<i64>,
    /// Why the link is unhealthy, as the instance reports it.
    pub problem: Option<String>,
}
