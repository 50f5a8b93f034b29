//! The fleet: what each gateway instance last reported in its heartbeat, and each gateway's
//! status against the current revision, for `GET /mgmt/gateways/{id}/status` and the admin
//! console's fleet page.

use gatehouse_model::ValidationError;
use gatehouse_model::resources::Gateway;
use gatehouse_store::{JsonRecord, Kind};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::{ServiceResult, load};
use crate::ControlPlane;

/// What a gateway instance last reported, as stored.
// Under its gateway, by instance name; heartbeats write it as state (no revision).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct InstanceRecord {
    pub name: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub applied_revision: Option<u64>,
    #[serde(default)]
    pub uptime_seconds: u64,
    /// `starting`, `ready`, `stale` or `degraded` (some APIs not compiled), as the instance sees
    /// itself.
    #[serde(default)]
    pub state: String,
    /// `control-plane` or `backup`.
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub token_expiry: Option<String>,
    #[serde(default)]
    pub heartbeat_interval_seconds: u64,
    /// Why the instance is stale or degraded (the APIs it could not compile), as it reports it.
    #[serde(default)]
    pub last_error: Option<String>,
    /// When the control plane last heard a valid heartbeat (RFC 3339).
    #[serde(default)]
    pub last_heartbeat: Option<String>,
}

impl JsonRecord for InstanceRecord {
    const KIND: Kind = Kind::GatewayInstance;
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStatus {
    #[serde(flatten)]
    pub record: InstanceRecord,
    /// `inSync` when the instance applied the current revision, else `behind`.
    pub sync: String,
    /// `connected`, `stale` (a heartbeat missed) or `offline` (three missed).
    pub link: String,
    pub seconds_since_heartbeat: Option<i64>,
}

impl InstanceStatus {
    /// One word for the instance's link, worst first: `offline` (three heartbeats missed),
    /// `behind` (it has not applied the current revision) or `inSync`. A refused token is not
    /// an instance's state: anyone can name any instance in a refused call (see
    /// [`GatewayStatus::rejected_tokens`]).
    pub fn state(&self) -> &'static str {
        if self.link == "offline" {
            "offline"
        } else if self.sync == "behind" {
            "behind"
        } else {
            "inSync"
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStatus {
    pub gateway_id: String,
    pub current_revision: u64,
    pub instances: Vec<InstanceStatus>,
    /// Link calls refused for their token since the control plane started: expired, revoked
    /// or forged tokens naming this gateway. Counted in memory, not per instance.
    pub rejected_tokens: u64,
    /// When the last one was refused (RFC 3339).
    pub last_token_rejected_at: Option<String>,
    /// Why: `expired` or `invalidSignature` (forged, or revoked by regenerating its key).
    pub last_token_rejection: Option<String>,
}

pub fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// What a gateway instance reports every heartbeat interval.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Heartbeat {
    pub instance: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub applied_revision: Option<u64>,
    #[serde(default)]
    pub uptime_seconds: u64,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub token_expiry: Option<String>,
    #[serde(default)]
    pub heartbeat_interval_seconds: u64,
    #[serde(default)]
    pub last_error: Option<String>,
}

/// Keeps what an instance of `gateway` (authenticated by its token) reports, as state: it
/// bumps no revision. The instance name is cut to 128 printable ASCII characters.
pub async fn heartbeat(cp: &ControlPlane, gateway: &str, beat: Heartbeat) -> ServiceResult<()> {
    let name: String = beat
        .instance
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(128)
        .collect();
    if name.is_empty() {
        return Err(ValidationError::one("instance", "must name the instance").into());
    }
    let record = InstanceRecord {
        name: name.clone(),
        version: beat.version,
        applied_revision: beat.applied_revision,
        uptime_seconds: beat.uptime_seconds,
        state: beat.state,
        source: beat.source,
        token_expiry: beat.token_expiry,
        heartbeat_interval_seconds: beat.heartbeat_interval_seconds,
        last_error: beat.last_error,
        last_heartbeat: Some(now_rfc3339()),
    };
    cp.store()
        .repo::<InstanceRecord>()
        .put_state(gateway, &name, &record)
        .await?;
    Ok(())
}

/// Gateway `id`'s status against the current revision (404 when there is no such gateway).
pub async fn status(cp: &ControlPlane, id: &str) -> ServiceResult<GatewayStatus> {
    load::<Gateway>(cp, "", id).await?;
    let current = cp.store().revision().await?;
    gateway_status(cp, id.to_owned(), current).await
}

/// The status of gateway `id`'s instances against revision `current`, as the status endpoint
/// and the admin console's fleet page show it.
pub(crate) async fn gateway_status(
    cp: &ControlPlane,
    id: String,
    current: u64,
) -> ServiceResult<GatewayStatus> {
    let now = OffsetDateTime::now_utc();
    let mut instances = Vec::new();
    for record in cp.store().repo::<InstanceRecord>().list(&id).await? {
        let age = record
            .last_heartbeat
            .as_deref()
            .and_then(|t| {
                OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
            })
            .map(|t| (now - t).whole_seconds());
        let interval = i64::try_from(record.heartbeat_interval_seconds.max(1)).unwrap_or(60);
        let link = match age {
            Some(a) if a <= interval + interval / 2 => "connected",
            Some(a) if a <= 3 * interval => "stale",
            _ => "offline",
        };
        let sync = if record.applied_revision == Some(current) {
            "inSync"
        } else {
            "behind"
        };
        instances.push(InstanceStatus {
            record,
            sync: sync.to_owned(),
            link: link.to_owned(),
            seconds_since_heartbeat: age,
        });
    }
    let refusals = cp.refusals_of(&id);
    Ok(GatewayStatus {
        gateway_id: id,
        current_revision: current,
        instances,
        rejected_tokens: refusals.count,
        last_token_rejected_at: refusals.last_at,
        last_token_rejection: refusals.last_reason.map(str::to_owned),
    })
}
