//! The snapshot: everything one gateway needs to serve, compiled by the control plane from the
//! store and shipped as JSON. The built-in gateway of `gatehouse up` receives the very same
//! value in-process; a self-hosted gateway downloads it over the link.
//!
//! Subscription keys never travel in clear: a snapshot carries the SHA-256 of each key.

use serde::{Deserialize, Serialize};

use crate::resources::{Operation, ProductState, Protocol, SubscriptionState};

/// Bumped when the snapshot format changes incompatibly.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub format: u32,
    /// Monotonic revision of the control plane's store this snapshot was compiled from.
    pub revision: u64,
    /// The gateway this snapshot is for.
    pub gateway_id: String,
    pub apis: Vec<SnapshotApi>,
    pub products: Vec<SnapshotProduct>,
    pub subscriptions: Vec<SnapshotSubscription>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotApi {
    pub id: String,
    /// Without leading or trailing `/`; empty for an API at the root.
    pub path: String,
    pub service_url: Option<String>,
    pub protocols: Vec<Protocol>,
    pub subscription_required: bool,
    pub key_header: String,
    pub key_query: String,
    pub operations: Vec<Operation>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotProduct {
    pub id: String,
    pub subscription_required: bool,
    pub state: ProductState,
    /// Ids of the product's APIs that this gateway serves.
    pub apis: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotSubscription {
    pub id: String,
    /// `/apis`, `/apis/{id}` or `/products/{id}`.
    pub scope: String,
    pub state: SubscriptionState,
    /// Lower-case hex SHA-256 of the primary and secondary keys.
    pub key_hashes: Vec<String>,
}
