//! Telemetry from gateways: storing the batches they upload (over the link's
//! `POST /gateway/v1/telemetry`, or in process from the built-in gateway of `gatehouse up`),
//! and the housekeeping that deletes what is older than the retention.

use std::sync::Weak;
use std::time::Duration;

use gatehouse_model::ValidationError;
use gatehouse_model::error::Problems;
use gatehouse_model::telemetry::Batch;
use gatehouse_store::Retention;
use serde::Serialize;
use time::OffsetDateTime;

use crate::ControlPlane;
use crate::service::ServiceError;

/// How long telemetry is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelemetrySettings {
    /// Days of per-minute aggregates the reports can cover (default 30).
    pub retention_days: u32,
    /// Request samples kept, newest first (default 10,000).
    pub samples_kept: u32,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            retention_days: 30,
            samples_kept: 10_000,
        }
    }
}

impl TelemetrySettings {
    fn retention(&self, now: i64) -> Retention {
        let keep = i64::from(self.retention_days.max(1)) * 86_400;
        let oldest = now - keep;
        Retention {
            oldest_minute: oldest - oldest.rem_euclid(60),
            samples: u64::from(self.samples_kept.max(1)),
        }
    }
}

/// How often old telemetry is deleted (and once at start).
pub const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(3_600);

/// The answer to an upload: `{"accepted": N, "duplicate": false}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IngestOutcome {
    /// Aggregates stored from this batch; 0 for a duplicate, and aggregates older than the
    /// retention are not counted.
    pub accepted: usize,
    /// The batch id had been stored before, so nothing was stored again.
    pub duplicate: bool,
}

/// The longest id, name or key text accepted in a batch.
const MAX_TEXT: usize = 256;

fn validate(gateway_id: &str, batch: &Batch) -> Result<(), ValidationError> {
    let mut problems = Problems::default();
    if gateway_id.is_empty() || gateway_id.len() > MAX_TEXT {
        problems.push("gatewayId", "must be 1 to 256 characters");
    }
    if batch.id.is_empty()
        || batch.id.len() > 128
        || !batch.id.chars().all(|c| c.is_ascii_graphic())
    {
        problems.push(
            "id",
            "must be 1 to 128 printable ASCII characters, such as a UUID",
        );
    }
    if batch.instance.len() > MAX_TEXT {
        problems.push("instance", "must be at most 256 characters");
    }
    for (i, a) in batch.aggregates.iter().enumerate() {
        let texts = [
            ("apiId", Some(&a.api_id)),
            ("operationId", Some(&a.operation_id)),
            ("productId", a.product_id.as_ref()),
            ("subscriptionId", a.subscription_id.as_ref()),
        ];
        for (name, text) in texts {
            if text.is_some_and(|t| t.len() > MAX_TEXT) {
                problems.push(
                    format!("aggregates[{i}].{name}"),
                    "must be at most 256 characters",
                );
            }
        }
    }
    problems.finish("telemetry batch")
}

fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

impl ControlPlane {
    /// Stores one telemetry batch from `gateway_id`, exactly once per batch id: a batch whose
    /// id is already stored changes nothing and comes back as a duplicate. Aggregates of APIs,
    /// products or subscriptions that no longer exist are stored all the same (reports show
    /// history), and aggregates older than the retention are skipped.
    ///
    /// The link's `POST /gateway/v1/telemetry` calls this for self-hosted gateways; the
    /// built-in gateway of `gatehouse up` calls it in process with
    /// [`BUILT_IN_GATEWAY`](crate::BUILT_IN_GATEWAY). A validation error means the batch can
    /// never be stored (drop it); any other error is worth a retry.
    pub async fn ingest_telemetry(
        &self,
        gateway_id: &str,
        batch: &Batch,
    ) -> Result<IngestOutcome, ServiceError> {
        validate(gateway_id, batch)?;
        let now = now();
        let stored = self
            .store()
            .ingest_telemetry(gateway_id, batch, now, self.telemetry.retention(now))
            .await?;
        if !stored.duplicate && batch.dropped_batches > 0 {
            tracing::warn!(
                gateway = gateway_id,
                instance = %batch.instance,
                dropped = batch.dropped_batches,
                "a gateway instance dropped telemetry batches from its full spool"
            );
        }
        Ok(IngestOutcome {
            accepted: stored.aggregates,
            duplicate: stored.duplicate,
        })
    }

    /// Deletes telemetry older than the retention now.
    pub async fn prune_telemetry(&self) -> Result<gatehouse_store::Pruned, ServiceError> {
        Ok(self
            .store()
            .prune_telemetry(self.telemetry.retention(now()))
            .await?)
    }

    pub fn telemetry_settings(&self) -> TelemetrySettings {
        self.telemetry
    }
}

/// Prunes at once and then every [`HOUSEKEEPING_EVERY`], until the control plane is dropped.
pub(crate) fn spawn_housekeeping(control: Weak<ControlPlane>) {
    tokio::spawn(async move {
        loop {
            let Some(cp) = control.upgrade() else {
                return;
            };
            match cp.prune_telemetry().await {
                Ok(p) if p.minutes + p.batches + p.samples > 0 => tracing::info!(
                    minutes = p.minutes,
                    batches = p.batches,
                    samples = p.samples,
                    retention_days = cp.telemetry.retention_days,
                    "deleted telemetry older than the retention"
                ),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot delete old telemetry; retrying in an hour")
                }
            }
            drop(cp);
            tokio::time::sleep(HOUSEKEEPING_EVERY).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_is_whole_minutes_back_from_now() {
        let r = TelemetrySettings::default().retention(1_800_000_030);
        assert_eq!(r.oldest_minute, 1_800_000_000 - 30 * 86_400);
        assert_eq!(r.samples, 10_000);
    }

    #[test]
    fn batches_need_an_id_and_bounded_texts() {
        let mut b = Batch::default();
        let e = validate("edge", &b).unwrap_err();
        assert_eq!(e.details[0].target, "id");
        b.id = "0b8d2c9e-4a43-4bd6-9d0e-0a1f1f4f5a10".into();
        assert!(validate("edge", &b).is_ok());
        b.aggregates.push(gatehouse_model::telemetry::Aggregate {
            api_id: "x".repeat(300),
            ..Default::default()
        });
        let e = validate("edge", &b).unwrap_err();
        assert_eq!(e.details[0].target, "aggregates[0].apiId");
        assert!(
            validate(
                "",
                &Batch {
                    id: "a".into(),
                    ..Default::default()
                }
            )
            .is_err()
        );
    }
}
