//! The link client: the only connection between a self-hosted gateway and its control plane,
//! always opened from the gateway's side.
//!
//! It long-polls `/gateway/v1/config` with the applied revision as `If-None-Match` (or polls
//! every `poll_interval` when long-polling is off), applies each new snapshot, saves it to the
//! backup, and sends a heartbeat every `heartbeat_interval`. Errors never stop serving: they
//! mark the gateway stale and the link retries with jittered exponential backoff; when the
//! control plane answers again the current snapshot is fetched at once.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gatehouse_model::snapshot::{Delta, Snapshot};
use gatehouse_model::token::GatewayToken;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, ETAG, IF_NONE_MATCH};

use crate::ConfigHandle;
use crate::backup::{Backup, Saved};
use crate::status::{Source, Status};

pub const INSTANCE_HEADER: &str = "x-gatehouse-instance";

#[derive(Debug, Clone)]
pub struct LinkSettings {
    /// The control plane's base URL, e.g. `https://cp.example.com:8090`.
    pub endpoint: String,
    /// The gateway token, with or without its `GatewayKey ` prefix.
    pub token: String,
    pub instance: String,
    pub long_poll: bool,
    pub poll_interval: Duration,
    pub heartbeat_interval: Duration,
    /// The longest pause between retries after an error.
    pub retry_max: Duration,
    /// CA certificates (PEM files) trusted for an https control plane besides the OS roots.
    pub trusted_ca: Vec<std::path::PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot reach the control plane at {endpoint}: {reason}")]
    Unreachable { endpoint: String, reason: String },
    #[error("the control plane refused the gateway token: {0}")]
    Refused(String),
    #[error("the control plane answered {status}: {body}")]
    Unexpected { status: u16, body: String },
    #[error("the control plane sent a configuration this gateway cannot use: {0}")]
    Invalid(String),
}

enum Fetched {
    Changed { revision: u64, body: Bytes },
    Delta { revision: u64, body: Bytes },
    Unchanged,
}

/// The media type of a delta between two snapshots (see `gatehouse_model::snapshot::Delta`).
const DELTA_TYPE: &str = "application/vnd.gatehouse.delta+json";

pub struct Link {
    http: reqwest::Client,
    settings: LinkSettings,
    authorization: String,
    gateway_id: String,
    config: ConfigHandle,
    status: Arc<Status>,
    backup: Option<Arc<Backup>>,
    started: std::time::Instant,
    /// Wakes the heartbeat loop after a new configuration is applied, so the fleet status
    /// shows it without waiting a whole interval.
    applied: tokio::sync::Notify,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("endpoint", &self.settings.endpoint)
            .field("gateway_id", &self.gateway_id)
            .finish_non_exhaustive()
    }
}

impl Link {
    pub fn new(
        settings: LinkSettings,
        token: &GatewayToken,
        config: ConfigHandle,
        status: Arc<Status>,
        backup: Option<Arc<Backup>>,
    ) -> Result<Self, LinkError> {
        let tls = crate::outbound_tls::reqwest_tls(&settings.trusted_ca).map_err(|e| {
            LinkError::Unreachable {
                endpoint: settings.endpoint.clone(),
                reason: e.to_string(),
            }
        })?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .no_proxy()
            .tls_backend_preconfigured(tls)
            .build()
            .map_err(|e| LinkError::Unreachable {
                endpoint: settings.endpoint.clone(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            http,
            authorization: GatewayToken::format(
                &token.gateway_id,
                &token.expiry_text,
                &token.signature,
            ),
            gateway_id: token.gateway_id.clone(),
            settings,
            config,
            status,
            backup,
            started: std::time::Instant::now(),
            applied: tokio::sync::Notify::new(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.settings.endpoint.trim_end_matches('/'))
    }

    fn unreachable(&self, e: &reqwest::Error) -> LinkError {
        let mut reason = e.to_string();
        if let Some(tls) = gatehouse_tls::client::find_tls_error(e) {
            reason = format!(
                "its TLS certificate was refused: {}",
                gatehouse_tls::client::describe(tls)
            );
        } else {
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                reason = s.to_string();
                source = s.source();
            }
        }
        LinkError::Unreachable {
            endpoint: self.settings.endpoint.clone(),
            reason,
        }
    }

    async fn fetch(&self, known: Option<u64>, wait: u64) -> Result<Fetched, LinkError> {
        let mut request = self
            .http
            .get(self.url(&format!("/gateway/v1/config?wait={wait}")))
            .header(AUTHORIZATION, &self.authorization)
            .header(INSTANCE_HEADER, &self.settings.instance)
            .header(
                reqwest::header::ACCEPT,
                format!("{DELTA_TYPE}, application/json"),
            )
            .timeout(Duration::from_secs(wait + 15));
        if let Some(r) = known {
            request = request.header(IF_NONE_MATCH, format!("\"{r}\""));
        }
        let response = request.send().await.map_err(|e| self.unreachable(&e))?;
        match response.status() {
            StatusCode::NOT_MODIFIED => Ok(Fetched::Unchanged),
            StatusCode::OK => {
                let revision = response
                    .headers()
                    .get(ETAG)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim_matches('"').parse().ok());
                let delta = response
                    .headers()
                    .get(reqwest::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with(DELTA_TYPE));
                let body = response.bytes().await.map_err(|e| self.unreachable(&e))?;
                let revision = revision
                    .ok_or_else(|| LinkError::Invalid("the answer has no revision ETag".into()))?;
                Ok(if delta {
                    Fetched::Delta { revision, body }
                } else {
                    Fetched::Changed { revision, body }
                })
            }
            StatusCode::UNAUTHORIZED => {
                let body = response.text().await.unwrap_or_default();
                let reason = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.pointer("/error/message")?.as_str().map(str::to_owned))
                    .unwrap_or(body);
                Err(LinkError::Refused(reason))
            }
            status => {
                let body = response.text().await.unwrap_or_default();
                Err(LinkError::Unexpected {
                    status: status.as_u16(),
                    body: body.chars().take(300).collect(),
                })
            }
        }
    }

    /// Checks and applies a snapshot from the control plane, and saves it to the backup
    /// (`body` is its JSON when the control plane sent it whole).
    async fn apply(
        &self,
        revision: u64,
        snapshot: Snapshot,
        body: Option<Bytes>,
        delta: Option<(Arc<Delta>, Bytes)>,
    ) -> Result<Arc<Snapshot>, LinkError> {
        if snapshot.gateway_id != self.gateway_id {
            return Err(LinkError::Invalid(format!(
                "it is for gateway '{}', not '{}'",
                snapshot.gateway_id, self.gateway_id
            )));
        }
        if snapshot.revision != revision {
            return Err(LinkError::Invalid(
                "its revision does not match its ETag".into(),
            ));
        }
        let started = std::time::Instant::now();
        match &delta {
            Some((delta, _)) => self.config.apply_delta(delta, &snapshot),
            None => self.config.apply(&snapshot),
        }
        .map_err(|e| LinkError::Invalid(e.to_string()))?;
        self.status
            .applied(revision, Source::ControlPlane, &self.config.problems());
        self.applied.notify_one();
        tracing::info!(
            revision,
            apis = snapshot.apis.len(),
            changes = delta.as_ref().map(|(d, _)| d.len()),
            ms = started.elapsed().as_millis() as u64,
            "applied configuration"
        );
        // Requests in flight hold the configuration they started with for a moment: free it
        // here once they are done, not on a worker.
        let config = self.config.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            config.release();
        });
        let snapshot = Arc::new(snapshot);
        if let Some(backup) = &self.backup {
            self.save(backup, revision, &snapshot, body, delta).await;
        }
        Ok(snapshot)
    }

    /// Saves an applied configuration to the backup: a delta is appended to the delta log (a
    /// few KB), a whole snapshot becomes a new base. When the log has grown enough it is
    /// compacted into a new base in the background, so the next change is not held up.
    async fn save(
        &self,
        backup: &Arc<Backup>,
        revision: u64,
        snapshot: &Arc<Snapshot>,
        body: Option<Bytes>,
        delta: Option<(Arc<Delta>, Bytes)>,
    ) {
        let store = backup.clone();
        let saved = snapshot.clone();
        let written = tokio::task::spawn_blocking(move || {
            let cpu = crate::backup::thread_cpu_ns();
            let result = match (&delta, body) {
                (Some((delta, json)), _) => store.save_delta(delta, json, &saved),
                (None, Some(b)) => store.write(revision, &b).map(|path| Saved::Base {
                    path,
                    bytes: b.len() as u64,
                }),
                (None, None) => serde_json::to_vec(&*saved)
                    .map_err(|e| crate::backup::BackupError::Corrupt(e.to_string()))
                    .and_then(|b| {
                        store.write(revision, &b).map(|path| Saved::Base {
                            path,
                            bytes: b.len() as u64,
                        })
                    }),
            };
            let cpu_us = cpu
                .zip(crate::backup::thread_cpu_ns())
                .map(|(before, after)| after.saturating_sub(before) / 1000);
            result.map(|saved| (saved, cpu_us))
        })
        .await;
        match written {
            Ok(Ok((saved, cpu_us))) => {
                self.status.backup_saved();
                match saved {
                    Saved::Delta { bytes } => tracing::debug!(
                        revision,
                        bytes,
                        cpu_us,
                        "delta appended to the backup's delta log"
                    ),
                    Saved::Base { path, bytes } => tracing::debug!(
                        revision,
                        bytes,
                        cpu_us,
                        path = %path.display(),
                        "configuration saved to the backup"
                    ),
                }
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot save the configuration to the backup")
            }
            Err(e) => tracing::error!(error = %e, "backup task failed"),
        }
        if backup.needs_compaction() {
            let store = backup.clone();
            let current = snapshot.clone();
            // Not awaited: the link goes on applying changes while the base is written.
            tokio::task::spawn_blocking(move || {
                let started = std::time::Instant::now();
                match store.compact(&current) {
                    Ok(Some(path)) => tracing::info!(
                        revision = current.revision,
                        ms = started.elapsed().as_millis() as u64,
                        path = %path.display(),
                        "backup delta log compacted into a new base"
                    ),
                    Ok(None) => {}
                    Err(e) => tracing::error!(error = %e, "cannot compact the backup's delta log"),
                }
            });
        }
    }

    /// Keeps the gateway in sync for as long as the process runs.
    /// `last` is the snapshot already in force (from the backup), the base for deltas.
    pub async fn run(self: Arc<Self>, mut last: Option<Arc<Snapshot>>) {
        let mut known = last.as_ref().map(|s| s.revision);
        let mut backoff = Backoff::new(Duration::from_millis(200), self.settings.retry_max);
        loop {
            let wait = if self.settings.long_poll && known.is_some() {
                30
            } else {
                0
            };
            let result = match self.fetch(known, wait).await {
                Ok(Fetched::Changed { revision, body }) => {
                    match serde_json::from_slice::<Snapshot>(&body) {
                        Ok(snapshot) => {
                            // The old base is not needed any more: free it before compiling.
                            last = None;
                            self.apply(revision, snapshot, Some(body), None)
                                .await
                                .map(|s| {
                                    last = Some(s);
                                    Some(revision)
                                })
                        }
                        Err(e) => Err(LinkError::Invalid(format!("it does not parse: {e}"))),
                    }
                }
                Ok(Fetched::Delta { revision, body }) => match patched(&mut last, &body) {
                    Ok((delta, snapshot)) => {
                        tracing::debug!(
                            revision,
                            changes = delta.len(),
                            bytes = body.len(),
                            "received a delta"
                        );
                        self.apply(revision, snapshot, None, Some((Arc::new(delta), body)))
                            .await
                            .map(|s| {
                                last = Some(s);
                                Some(revision)
                            })
                    }
                    Err(e) => {
                        // Start over from a whole snapshot.
                        known = None;
                        Err(e)
                    }
                },
                Ok(Fetched::Unchanged) => {
                    self.status.synced();
                    Ok(None)
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(applied) => {
                    if let Some(r) = applied {
                        known = Some(r);
                    }
                    backoff.reset();
                    if !self.settings.long_poll {
                        tokio::time::sleep(self.settings.poll_interval).await;
                    }
                }
                Err(e) => {
                    let message = e.to_string();
                    match &e {
                        LinkError::Refused(_) => {
                            tracing::error!(error = %message, "the control plane refused this gateway; serving the last configuration")
                        }
                        _ => {
                            tracing::warn!(error = %message, "configuration sync failed; serving the last configuration")
                        }
                    }
                    self.status.link_failed(message);
                    tokio::time::sleep(backoff.next()).await;
                }
            }
        }
    }

    /// Sends a heartbeat now and then every interval, for as long as the process runs.
    pub async fn heartbeats(self: Arc<Self>, token: GatewayToken) {
        let interval = self.settings.heartbeat_interval;
        loop {
            let warning = crate::token_warning(&token);
            if let Some(w) = &warning {
                tracing::error!(warning = %w, "gateway token");
            }
            self.status.set_token_warning(warning);
            let readiness = self.status.readiness();
            let body = serde_json::json!({
                "instance": self.settings.instance,
                "version": env!("CARGO_PKG_VERSION"),
                "appliedRevision": readiness.config_revision,
                "uptimeSeconds": self.started.elapsed().as_secs(),
                "state": readiness.state,
                "source": readiness.source,
                "tokenExpiry": readiness.token_expiry,
                "heartbeatIntervalSeconds": interval.as_secs().max(1),
                "lastError": readiness.reason,
            });
            let sent = self
                .http
                .post(self.url("/gateway/v1/heartbeat"))
                .header(AUTHORIZATION, &self.authorization)
                .header(INSTANCE_HEADER, &self.settings.instance)
                .timeout(Duration::from_secs(10))
                .json(&body)
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => tracing::warn!(status = r.status().as_u16(), "heartbeat refused"),
                Err(e) => tracing::debug!(error = %self.unreachable(&e), "heartbeat failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = self.applied.notified() => {}
            }
        }
    }
}

/// The snapshot a delta makes of the last one. The last one is patched in place (it is not
/// needed afterwards), so a change to one subscription copies nothing else.
fn patched(last: &mut Option<Arc<Snapshot>>, body: &[u8]) -> Result<(Delta, Snapshot), LinkError> {
    let delta: Delta = serde_json::from_slice(body)
        .map_err(|e| LinkError::Invalid(format!("the delta does not parse: {e}")))?;
    let base = last
        .as_deref()
        .ok_or_else(|| LinkError::Invalid("a delta came without a base".into()))?;
    delta.applies_to(base).map_err(LinkError::Invalid)?;
    let base = last.take().map(Arc::unwrap_or_clone).unwrap_or_default();
    let next = delta.apply_owned(base).map_err(LinkError::Invalid)?;
    Ok((delta, next))
}

/// Telemetry goes up the same link: `POST /gateway/v1/telemetry`.
impl crate::upload::Sink for Link {
    fn deliver(
        &self,
        batch: Bytes,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<(), crate::upload::DeliveryError>> + Send + '_>,
    > {
        use crate::upload::DeliveryError;
        Box::pin(async move {
            let sent = self
                .http
                .post(self.url("/gateway/v1/telemetry"))
                .header(AUTHORIZATION, &self.authorization)
                .header(INSTANCE_HEADER, &self.settings.instance)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .timeout(Duration::from_secs(30))
                .body(batch)
                .send()
                .await
                .map_err(|e| DeliveryError::Retry(self.unreachable(&e).to_string()))?;
            let status = sent.status();
            if status.is_success() {
                return Ok(());
            }
            let body = sent.text().await.unwrap_or_default();
            let reason = format!("the control plane answered {status}: {body}");
            match status {
                StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => {
                    Err(DeliveryError::Rejected(reason))
                }
                _ => Err(DeliveryError::Retry(reason)),
            }
        })
    }
}

/// Exponential backoff with jitter: each pause is a random fraction (50–100 %) of a ceiling
/// that doubles from `min` up to `max`.
struct Backoff {
    min: Duration,
    max: Duration,
    ceiling: Duration,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            ceiling: min,
        }
    }

    fn reset(&mut self) {
        self.ceiling = self.min;
    }

    fn next(&mut self) -> Duration {
        let mut b = [0u8; 2];
        let _ = aws_lc_rs::rand::fill(&mut b);
        let fraction = 0.5 + f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX) / 2.0;
        let pause = self.ceiling.mul_f64(fraction);
        self.ceiling = (self.ceiling * 2).min(self.max);
        pause
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        let pauses: Vec<_> = (0..8).map(|_| b.next()).collect();
        for p in &pauses {
            assert!(*p >= Duration::from_millis(50) && *p <= Duration::from_millis(800));
        }
        assert!(pauses[7] >= Duration::from_millis(400));
        b.reset();
        assert!(b.next() <= Duration::from_millis(100));
    }
}
