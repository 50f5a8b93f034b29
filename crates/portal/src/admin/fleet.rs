//! The fleet page: every gateway, its instances and their link state, and what telemetry each
//! gateway delivered.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use minijinja::context;
use minijinja::value::Serde;
use serde::Serialize;

use super::session::Admin;
use super::{Console, ago};
use crate::backend::FleetInstance;
use crate::error::PortalResult;

#[derive(Debug, Serialize)]
struct InstanceRow {
    #[serde(flatten)]
    instance: FleetInstance,
    /// "applied / current", or "none".
    revision: String,
    heartbeat_ago: Option<String>,
}

#[derive(Debug, Serialize)]
struct GatewayRow {
    id: String,
    location: Option<String>,
    description: Option<String>,
    built_in: bool,
    instances: Vec<InstanceRow>,
    /// Counts per state, for the summary line.
    in_sync: usize,
    batches: u64,
    dropped_batches: u64,
    last_batch_ago: Option<String>,
    rejected_tokens: u64,
    last_token_rejection: Option<String>,
    last_token_rejected_at: Option<String>,
}

pub async fn page(State(console): State<Arc<Console>>, admin: Admin) -> PortalResult<Response> {
    let fleet = console.backend.fleet().await?;
    let deliveries: HashMap<String, (u64, u64, i64)> = console
        .store
        .telemetry_deliveries()
        .await?
        .into_iter()
        .map(|(gateway, batches, dropped, last)| (gateway, (batches, dropped, last)))
        .collect();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let current = fleet.current_revision;
    let gateways: Vec<GatewayRow> = fleet
        .gateways
        .into_iter()
        .map(|g| {
            let (batches, dropped_batches, last) =
                deliveries.get(&g.id).copied().unwrap_or_default();
            let instances: Vec<InstanceRow> = g
                .instances
                .into_iter()
                .map(|i| InstanceRow {
                    revision: i
                        .applied_revision
                        .map_or_else(|| "none".to_owned(), |r| format!("{r} / {current}")),
                    heartbeat_ago: i.seconds_since_heartbeat.map(ago),
                    instance: i,
                })
                .collect();
            GatewayRow {
                in_sync: instances
                    .iter()
                    .filter(|i| i.instance.state == "inSync")
                    .count(),
                id: g.id,
                location: g.location,
                description: g.description,
                built_in: g.built_in,
                instances,
                batches,
                dropped_batches,
                last_batch_ago: (batches > 0).then(|| ago(now - last)),
                rejected_tokens: g.rejected_tokens,
                last_token_rejection: g.last_token_rejection,
                last_token_rejected_at: g.last_token_rejected_at,
            }
        })
        .collect();
    console.page(
        &admin,
        "admin/fleet.html",
        context! {
            page => "fleet",
            current_revision => current,
            gateways => Serde(&gateways),
        },
    )
}
