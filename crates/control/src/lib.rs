//! The Gatehouse control plane: the management API over the store, the snapshot compiler, and
//! the change feed that tells gateways a new configuration is ready.
//!
//! Every change to the store goes through one transaction that bumps the store revision and
//! logs the documents it touched; after commit the new revision is published on a `watch`
//! channel. Whoever serves gateways (the built-in gateway of `gatehouse up`, and the gateway
//! link) asks the gateway's feed for that revision: the feed brings the gateway's compiled
//! snapshot up to date from the change log and answers with a delta, or the whole snapshot.
//!
//! Several control planes can share one PostgreSQL store: each also follows the revisions the
//! others commit (see `follow`), so a change reaches every gateway whichever control plane it
//! was made through.

mod compile;
mod docs;
pub mod error;
mod examples;
mod feed;
mod follow;
mod handlers;
mod http;
mod link;
#[cfg(test)]
mod reference;
mod schemas;
pub mod secrets;
pub mod service;
mod telemetry;
#[cfg(test)]
mod testkit;

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use gatehouse_model::resources::{Gateway, Subscription, SubscriptionKeys, SubscriptionState};
use gatehouse_model::snapshot::Snapshot;
use gatehouse_store::{Kind, Store};
use tokio::sync::watch;
use tokio::task::AbortHandle;

pub use compile::BUILT_IN_GATEWAY;
pub use feed::{Answer, Update};
use secrets::Sealer;
pub use service::instances::{GatewayStatus, InstanceRecord, InstanceStatus};
pub use service::{ServiceError, ServiceResult};
pub use telemetry::{HOUSEKEEPING_EVERY, IngestOutcome, TelemetrySettings};

/// Settings the control plane needs beyond its store.
#[derive(Debug, Clone)]
pub struct ControlSettings {
    /// Where the admin token and the secret key live.
    pub data_dir: std::path::PathBuf,
    /// An admin token given from outside (`GATEHOUSE_ADMIN_TOKEN`), instead of the file.
    pub admin_token: Option<String>,
    /// The encryption key for secrets at rest (`GATEHOUSE_SECRET_KEY`), instead of the file.
    pub secret_key: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Secret(#[from] secrets::SecretError),
    #[error(transparent)]
    Store(#[from] gatehouse_store::StoreError),
}

/// What `open` found or created, for the binary to tell the user.
#[derive(Debug)]
pub struct Opened {
    pub control: Arc<ControlPlane>,
    pub admin_token: String,
    pub admin_token_created: bool,
}

pub struct ControlPlane {
    store: Store,
    /// Each gateway's compiled snapshot and recent deltas, shared by its replicas' calls.
    feeds: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<feed::Feed>>>>,
    sealer: Sealer,
    admin_hash: [u8; 32],
    changes: watch::Sender<u64>,
    /// Set once the process is shutting down: held config calls answer at once.
    closing: watch::Sender<bool>,
    /// Config calls held open now, waiting for a change.
    held: std::sync::atomic::AtomicUsize,
    telemetry: TelemetrySettings,
    /// Refused gateway tokens per existing gateway, for the fleet status (in memory only).
    refusals:
        std::sync::Mutex<std::collections::HashMap<String, service::gateway_tokens::Refusals>>,
    /// Background work that lives as long as the control plane (see `follow`).
    tasks: std::sync::Mutex<Vec<tokio::task::AbortHandle>>,
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let tasks = match self.tasks.get_mut() {
            Ok(tasks) => tasks,
            Err(poisoned) => poisoned.into_inner(),
        };
        for task in tasks.drain(..) {
            task.abort();
        }
    }
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane").finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// Opens the control plane on `store`, keeping telemetry for the default 30 days.
    pub async fn open(store: Store, settings: &ControlSettings) -> Result<Opened, StartError> {
        Self::open_with(store, settings, TelemetrySettings::default()).await
    }

    /// Opens the control plane on `store`. Telemetry older than `telemetry.retention_days` is
    /// deleted now and every hour after, for as long as the control plane lives.
    pub async fn open_with(
        store: Store,
        settings: &ControlSettings,
        telemetry: TelemetrySettings,
    ) -> Result<Opened, StartError> {
        let (admin_token, created) = match &settings.admin_token {
            Some(t) if t.trim().len() >= 16 => (t.trim().to_owned(), false),
            Some(_) => {
                return Err(secrets::SecretError::Invalid(
                    "GATEHOUSE_ADMIN_TOKEN must be at least 16 characters".into(),
                )
                .into());
            }
            None => secrets::admin_token(&settings.data_dir.join("admin-token"))?,
        };
        let sealer = Sealer::load(
            settings.secret_key.as_deref(),
            &settings.data_dir.join("secret.key"),
        )?;
        if let Err(e) = service::apis::index_paths(&store).await {
            tracing::error!(error = %e, "cannot index the API paths");
        }
        if let Err(e) = service::users::index_emails(&store).await {
            tracing::error!(error = %e, "cannot index the user emails");
        }
        let revision = store.revision().await?;
        let (changes, _) = watch::channel(revision);
        let control = Arc::new(Self {
            store,
            feeds: std::sync::Mutex::default(),
            sealer,
            admin_hash: secrets::sha256(admin_token.as_bytes()),
            changes,
            closing: watch::channel(false).0,
            held: std::sync::atomic::AtomicUsize::new(0),
            telemetry,
            refusals: std::sync::Mutex::default(),
            tasks: std::sync::Mutex::default(),
        });
        let tasks = follow::spawn(&control);
        match control.tasks.lock() {
            Ok(mut held) => held.extend(tasks),
            Err(_) => tasks.iter().for_each(AbortHandle::abort),
        }
        telemetry::spawn_housekeeping(Arc::downgrade(&control));
        Ok(Opened {
            control,
            admin_token,
            admin_token_created: created,
        })
    }

    pub fn admin_token_matches(&self, presented: &str) -> bool {
        secrets::token_matches(&self.admin_hash, presented)
    }

    /// The management API, Swagger UI and OpenAPI document, and the gateway link, to be served
    /// on the control port.
    pub fn router(self: &Arc<Self>) -> Router {
        handlers::router(self.clone()).merge(link::router(self.clone()))
    }

    /// A feed of store revisions: it changes after every committed change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Answers every held config long-poll now ("nothing new"), and every later one at once,
    /// so linked gateways retry instead of holding the shutdown for up to
    /// 30 s. Returns how many were held.
    pub fn close_long_polls(&self) -> usize {
        // Counted first: the calls woken below may finish before this returns.
        let held = self.held.load(std::sync::atomic::Ordering::Relaxed);
        self.closing.send_replace(true);
        held
    }

    /// Compiles the snapshot for one gateway from the store as it is now.
    pub async fn snapshot(&self, gateway_id: &str) -> ServiceResult<Snapshot> {
        compile::snapshot(&self.store, &self.sealer, gateway_id).await
    }

    /// What to send a gateway that has revision `known`: nothing new, the delta from it (when
    /// the gateway accepts deltas and `known` is recent), or the whole snapshot. Each revision
    /// is compiled once per gateway, incrementally from the previous one.
    pub async fn answer(
        &self,
        gateway_id: &str,
        known: Option<u64>,
        delta: bool,
    ) -> ServiceResult<Answer> {
        let feed = self.feed(gateway_id)?;
        let mut feed = feed.lock().await;
        feed.answer(&self.store, &self.sealer, gateway_id, known, delta)
            .await
    }

    /// [`ControlPlane::answer`] for a gateway in this process (the built-in one): the delta or
    /// the snapshot itself, not its JSON.
    pub async fn update(&self, gateway_id: &str, known: Option<u64>) -> ServiceResult<Update> {
        let feed = self.feed(gateway_id)?;
        let mut feed = feed.lock().await;
        feed.update(&self.store, &self.sealer, gateway_id, known)
            .await
    }

    fn feed(&self, gateway_id: &str) -> ServiceResult<Arc<tokio::sync::Mutex<feed::Feed>>> {
        match self.feeds.lock() {
            Ok(mut feeds) => Ok(feeds.entry(gateway_id.to_owned()).or_default().clone()),
            Err(_) => Err(ServiceError::Internal(
                "the snapshot feeds are unusable".into(),
            )),
        }
    }

    /// Drops what this process keeps for gateways deleted in revisions `since + 1 ..= upto`,
    /// whichever control plane deleted them: their feeds (compiled snapshots) and refused-token
    /// counts. The change log says whether any gateway resource changed; when it no longer
    /// reaches back, every kept gateway is looked up. The built-in gateway serves without a
    /// resource, so its feed stays.
    pub(crate) async fn forget_deleted_gateways(&self, since: u64, upto: u64) -> ServiceResult<()> {
        let unusable = || ServiceError::Internal("the per-gateway state is unusable".into());
        let mut ids: std::collections::BTreeSet<String> = match self.feeds.lock() {
            Ok(feeds) => feeds.keys().cloned().collect(),
            Err(_) => return Err(unusable()),
        };
        match self.refusals.lock() {
            Ok(refusals) => ids.extend(refusals.keys().cloned()),
            Err(_) => return Err(unusable()),
        }
        ids.remove(BUILT_IN_GATEWAY);
        if ids.is_empty() {
            return Ok(());
        }
        let gateways_changed = match self.store.changes(since, upto).await? {
            Some(changes) => changes.iter().any(|c| c.kind() == Some(Kind::Gateway)),
            None => true,
        };
        if !gateways_changed {
            return Ok(());
        }
        let mut gone = std::collections::BTreeSet::new();
        for id in ids {
            if !self.store.repo::<Gateway>().exists("", &id).await? {
                gone.insert(id);
            }
        }
        if gone.is_empty() {
            return Ok(());
        }
        match (self.feeds.lock(), self.refusals.lock()) {
            (Ok(mut feeds), Ok(mut refusals)) => {
                feeds.retain(|id, _| !gone.contains(id));
                refusals.retain(|id, _| !gone.contains(id));
            }
            _ => return Err(unusable()),
        }
        tracing::info!(gateways = ?gone, "dropped the compiled snapshots of deleted gateways");
        Ok(())
    }

    /// The gateways whose compiled snapshots are kept now.
    #[cfg(test)]
    pub(crate) fn feed_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.feeds.lock().unwrap().keys().cloned().collect();
        ids.sort();
        ids
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The key the developer portal signs Try it calls with; gateways get it in their
    /// snapshots (see `gatehouse_model::tryit`).
    pub fn tryit_key(&self) -> [u8; 32] {
        self.sealer.tryit_key()
    }

    pub(crate) fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    /// Tells subscribers that `revision` is committed (here, or through another control plane
    /// sharing the store).
    pub(crate) fn published(&self, revision: u64) {
        self.changes.send_if_modified(|current| {
            if revision > *current {
                *current = revision;
                true
            } else {
                false
            }
        });
    }

    /// Commits a transaction and announces the new revision, for callers outside the
    /// management API (the developer portal's accounts) whose changes must be published too.
    pub async fn commit(&self, tx: gatehouse_store::Tx) -> ServiceResult<u64> {
        service::commit(self, tx).await
    }

    /// Creates a subscription with fresh keys, as `PUT /mgmt/subscriptions/{id}` does,
    /// refusing an id that is taken and, for a product with a `subscriptionsLimit`, one more
    /// subscription than the limit for its owner (checked in the creating transaction, so
    /// concurrent requests cannot exceed it). Returns it as stored.
    pub async fn create_subscription(
        self: &Arc<Self>,
        subscription: Subscription,
    ) -> ServiceResult<Subscription> {
        service::subscriptions::create_for_user(self, subscription).await
    }

    /// Changes a subscription's state, as `PATCH /mgmt/subscriptions/{id}` does.
    pub async fn set_subscription_state(
        self: &Arc<Self>,
        id: &str,
        state: SubscriptionState,
    ) -> ServiceResult<Subscription> {
        service::subscriptions::set_state(self, id, state).await
    }

    /// A subscription's keys in clear text (`listSecrets`).
    pub async fn subscription_keys(self: &Arc<Self>, id: &str) -> ServiceResult<SubscriptionKeys> {
        service::subscriptions::list_secrets(self, id).await
    }

    /// Replaces a subscription's primary or secondary key; the old one stops working as soon as
    /// gateways have the new revision.
    pub async fn regenerate_subscription_key(
        self: &Arc<Self>,
        id: &str,
        primary: bool,
    ) -> ServiceResult<()> {
        service::subscriptions::regenerate(self, id, primary).await
    }

    /// The OpenAPI document imported with an API, as JSON; `None` when the API does not exist
    /// or was not imported.
    pub async fn api_document(
        self: &Arc<Self>,
        api_id: &str,
    ) -> ServiceResult<Option<serde_json::Value>> {
        match service::apis::document(self, api_id).await {
            Ok(document) => Ok(Some(document)),
            Err(ServiceError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The current revision, and every gateway with the status of its instances against it
    /// as `GET /mgmt/gateways/{id}/status` computes it, ordered by gateway id.
    pub async fn fleet_status(&self) -> ServiceResult<(u64, Vec<FleetEntry>)> {
        let current = self.store.revision().await?;
        let gateways = service::load_all::<Gateway>(self, "").await?;
        let mut fleet = Vec::with_capacity(gateways.len());
        for gateway in gateways {
            let status =
                service::instances::gateway_status(self, gateway.id.clone(), current).await?;
            fleet.push((gateway, status));
        }
        Ok((current, fleet))
    }

    /// A value derived from the admin token (never the token or its hash): admin console
    /// sessions remember it, so changing the admin token ends every session.
    pub fn admin_generation(&self) -> String {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &self.admin_hash);
        let tag = aws_lc_rs::hmac::sign(&key, b"gatehouse admin console sessions");
        tag.as_ref()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Makes sure the built-in gateway resource exists (for `gatehouse up`).
    pub async fn ensure_built_in_gateway(&self) -> ServiceResult<()> {
        service::gateways::ensure_built_in(self).await
    }
}

/// A gateway and its status.
pub type FleetEntry = (gatehouse_model::resources::Gateway, GatewayStatus);

/// Opens the SQLite store under `data_dir` and the control plane on it.
pub async fn open_embedded(settings: &ControlSettings) -> Result<Opened, StartError> {
    open_embedded_with(settings, TelemetrySettings::default()).await
}

/// [`open_embedded`] with telemetry settings other than the defaults.
pub async fn open_embedded_with(
    settings: &ControlSettings,
    telemetry: TelemetrySettings,
) -> Result<Opened, StartError> {
    let store = Store::open_sqlite_dir(Path::new(&settings.data_dir)).await?;
    ControlPlane::open_with(store, settings, telemetry).await
}
