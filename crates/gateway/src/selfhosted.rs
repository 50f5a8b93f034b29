//! A self-hosted gateway (`gatehouse gateway`): start-up rules, fail static, and shutdown.
//!
//! - Control plane reachable: serve what it sends.
//! - Unreachable, with a valid backup: serve the newest valid generation at once
//!   (`source: backup`) and keep trying the control plane.
//! - No usable configuration within `startup_timeout`: stop with one sentence saying why.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse_model::token::GatewayToken;

use crate::backup::{Backup, BackupError, KeySource};
use crate::link::{Link, LinkError, LinkSettings};
use crate::status::{Source, Status};
use crate::telemetry::{Telemetry, TelemetrySettings};
use crate::upload::{UploadSettings, Uploader};
use crate::{ConfigHandle, GatewaySettings, RunningGateway, ServeError};

#[derive(Debug, Clone)]
pub struct SelfHostedSettings {
    pub link: LinkSettings,
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub backup_dir: Option<PathBuf>,
    /// Base64 of a 32-byte key that encrypts the backup.
    pub backup_key: Option<String>,
    pub startup_timeout: Duration,
    pub gateway: GatewaySettings,
    pub telemetry: TelemetrySettings,
    /// How often telemetry batches are closed and sent.
    pub upload_interval: Duration,
    /// The most bytes of telemetry kept while the control plane is away.
    pub spool_limit: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the gateway token is not valid: {0}; copy it from `gatehouse gateway token <id>`")]
    Token(gatehouse_model::token::TokenError),
    #[error("cannot use the backup directory: {0}")]
    Backup(#[from] BackupError),
    #[error("cannot start the gateway: {0}")]
    Serve(#[from] ServeError),
    #[error(
        "cannot listen on {addr} for the admin endpoints: {why}; free the port or pass --admin-listen"
    )]
    Admin {
        addr: SocketAddr,
        /// The cause for a user: a taken port names its holder ([`crate::holder::why`]).
        why: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Link(#[from] LinkError),
    #[error("cannot use the telemetry spool {dir}: {source}; make the backup directory writable")]
    Spool {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "no configuration after {timeout:?}: {reason}, and {backup}; check --config-endpoint and --token, or start with --backup-dir pointing at a backup of this gateway"
    )]
    NoConfig {
        timeout: Duration,
        reason: String,
        backup: String,
    },
}

/// Runs a self-hosted gateway until `shutdown` resolves.
pub async fn run(
    settings: SelfHostedSettings,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), StartError> {
    let token = GatewayToken::parse(&settings.link.token).map_err(StartError::Token)?;
    let status = Arc::new(Status::new(
        settings.link.instance.clone(),
        Some(token.expiry_rfc3339()),
    ));
    if let Some(w) = crate::token_warning(&token) {
        tracing::error!(warning = %w, "gateway token");
        status.set_token_warning(Some(w));
    }
    let config = ConfigHandle::default();

    let mut restored = None;
    let mut backup_problem = None;
    let backup = match &settings.backup_dir {
        Some(dir) => {
            let backup = Backup::open(dir, &token, settings.backup_key.as_deref())?;
            if let Some(w) = backup.permission_warning() {
                tracing::warn!(warning = %w, "backup directory");
            }
            if backup.key_source() == KeySource::GatewayToken {
                tracing::info!(
                    dir = %dir.display(),
                    "the backup is sealed with a key derived from the gateway token: set GATEHOUSE_BACKUP_KEY to keep it readable across token rotation"
                );
            }
            (restored, backup_problem) = restore(&backup, &config, &status)?;
            Some(Arc::new(backup))
        }
        None => None,
    };

    let telemetry = Telemetry::new(settings.telemetry.clone(), settings.gateway.workers);
    telemetry.spawn_log_flusher(Duration::from_millis(100));
    let gateway = RunningGateway::start(
        settings.listen,
        config.clone(),
        settings.gateway.clone(),
        telemetry.clone(),
    )?;
    let sources = crate::metrics::Sources {
        telemetry: telemetry.clone(),
        config: config.clone(),
        link: Some(status.clone()),
    };
    let (admin_addr, admin) = crate::admin::start(
        settings.admin_listen,
        status.clone(),
        sources,
        settings.gateway.limits,
    )
    .await
    .map_err(|source| StartError::Admin {
        addr: settings.admin_listen,
        why: crate::holder::why(settings.admin_listen, &source),
        source,
    })?;
    tracing::info!(listen = %gateway.local_addr, https = ?gateway.https_addr, admin = %admin_addr, endpoint = %settings.link.endpoint, "gateway started");

    let link = Arc::new(Link::new(
        settings.link.clone(),
        &token,
        config.clone(),
        status.clone(),
        backup,
    )?);
    let spool_dir = settings.backup_dir.as_ref().map(|d| d.join("telemetry"));
    let uploader = Uploader::new(
        telemetry.clone(),
        link.clone(),
        UploadSettings {
            interval: settings.upload_interval,
            spool_dir: spool_dir.clone(),
            spool_limit: settings.spool_limit,
            instance: settings.link.instance.clone(),
        },
    )
    .map_err(|source| StartError::Spool {
        dir: spool_dir.unwrap_or_default(),
        source,
    })?;
    let uploader = Arc::new(uploader);
    let uploads = tokio::spawn(uploader.clone().run());
    let sync = tokio::spawn(link.clone().run(restored.map(Arc::new)));
    let beats = tokio::spawn(link.heartbeats(token));

    // Polled while waiting for a first configuration too, so a signal then stops the gateway.
    let mut shutdown = std::pin::pin!(shutdown);
    let mut stopped = false;
    let started = Instant::now();
    while status.revision().is_none() {
        if started.elapsed() >= settings.startup_timeout {
            sync.abort();
            beats.abort();
            uploads.abort();
            admin.abort();
            let _ = tokio::task::spawn_blocking(move || gateway.shutdown_blocking()).await;
            telemetry.flush_logs();
            let reason = status
                .readiness()
                .reason
                .unwrap_or_else(|| "the control plane did not answer".into());
            let backup = match &settings.backup_dir {
                Some(dir) => match &backup_problem {
                    Some(why) => format!(
                        "the backup directory {} holds no usable configuration ({why})",
                        dir.display()
                    ),
                    None => format!(
                        "the backup directory {} holds no configuration",
                        dir.display()
                    ),
                },
                None => "there is no backup to start from (--backup-dir)".to_owned(),
            };
            return Err(StartError::NoConfig {
                timeout: settings.startup_timeout,
                reason,
                backup,
            });
        }
        tokio::select! {
            () = shutdown.as_mut() => {
                stopped = true;
                break;
            }
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }

    if !stopped {
        shutdown.await;
    }
    let stopping = Instant::now();
    let requests = telemetry.in_flight().max(0);
    tracing::info!(
        requests,
        grace = ?settings.gateway.shutdown_grace,
        "waiting for {requests} requests in flight, for at most the grace period"
    );
    sync.abort();
    beats.abort();
    let _ = tokio::task::spawn_blocking(move || gateway.shutdown_blocking()).await;
    // Every request has finished: its telemetry goes out now, or waits in the spool.
    uploads.abort();
    uploader.finish(Duration::from_secs(5)).await;
    telemetry.flush_logs();
    if let Some(t) = settings.telemetry.tracing.clone() {
        let _ = tokio::task::spawn_blocking(move || t.shutdown()).await;
    }
    admin.abort();
    tracing::info!(ms = stopping.elapsed().as_millis() as u64, "stopped");
    Ok(())
}

/// Applies the newest usable backup generation, if any, and returns its snapshot; without one,
/// why the backup could not serve.
fn restore(
    backup: &Backup,
    config: &ConfigHandle,
    status: &Status,
) -> Result<(Option<gatehouse_model::snapshot::Snapshot>, Option<String>), StartError> {
    let loaded = backup.load_newest()?;
    for (path, reason) in &loaded.skipped {
        tracing::warn!(path = %path.display(), %reason, "backup generation is unusable, trying an older one");
    }
    let why_not = loaded
        .skipped
        .first()
        .map(|(path, reason)| format!("{}: {reason}", path.display()));
    if let Some(why) = &loaded.log_warning {
        tracing::warn!(dir = %backup.dir().display(), reason = %why, "the backup's delta log ends in a torn or damaged record (a crash mid-write?): starting from the last whole revision; the control plane sends the rest");
    }
    let Some((snapshot, path)) = loaded.found else {
        tracing::info!(dir = %backup.dir().display(), "the backup holds no usable configuration");
        return Ok((None, why_not));
    };
    match config.apply(&snapshot) {
        Ok(revision) => {
            status.applied(revision, Source::Backup, &config.problems());
            tracing::info!(revision, path = %path.display(), deltas = loaded.replayed, "serving the configuration from the backup until the control plane answers");
        }
        Err(e) => {
            tracing::error!(error = %e, path = %path.display(), "the backup's configuration cannot be applied");
            return Ok((None, Some(format!("{}: {e}", path.display()))));
        }
    }
    Ok((Some(snapshot), None))
}
