//! The Gatehouse control plane: the management API over the store, the snapshot compiler, and
//! the change feed that tells gateways a new configuration is ready.
//!
//! Every change to the store goes through one transaction that bumps the store revision; after
//! commit the new revision is published on a `watch` channel. Whoever serves gateways (the
//! built-in gateway of `gatehouse up`, and later the gateway link) compiles a snapshot for that
//! revision and ships it.

mod compile;
mod docs;
pub mod error;
mod handlers;
mod http;
mod link;
pub mod secrets;

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use gatehouse_model::snapshot::Snapshot;
use gatehouse_store::Store;
use tokio::sync::watch;

pub use compile::BUILT_IN_GATEWAY;
pub use error::ApiError;
use secrets::Sealer;

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
    /// The newest compiled snapshot per gateway, shared by its replicas' calls.
    snapshots: std::sync::Mutex<std::collections::HashMap<String, Arc<CachedSnapshot>>>,
    sealer: Sealer,
    admin_hash: [u8; 32],
    changes: watch::Sender<u64>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane").finish_non_exhaustive()
    }
}

impl ControlPlane {
    pub async fn open(store: Store, settings: &ControlSettings) -> Result<Opened, StartError> {
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
        let revision = store.revision().await?;
        let (changes, _) = watch::channel(revision);
        let control = Arc::new(Self {
            store,
            snapshots: std::sync::Mutex::default(),
            sealer,
            admin_hash: secrets::sha256(admin_token.as_bytes()),
            changes,
        });
        Ok(Opened {
            control,
            admin_token,
            admin_token_created: created,
        })
    }

    pub fn admin_token_matches(&self, presented: &str) -> bool {
        secrets::token_matches(&self.admin_hash, presented)
    }

    /// The management API, Swagger UI and OpenAPI document, to be served on the control port.
    pub fn router(self: &Arc<Self>) -> Router {
        handlers::router(self.clone())
            .merge(docs::router())
            .merge(link::router(self.clone()))
    }

    /// A feed of store revisions: it changes after every committed change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Compiles the snapshot for one gateway from the store as it is now.
    pub async fn snapshot(&self, gateway_id: &str) -> Result<Snapshot, ApiError> {
        compile::snapshot(&self.store, gateway_id).await
    }

    /// The snapshot for one gateway as JSON, compiled at most once per revision.
    pub async fn cached_snapshot(&self, gateway_id: &str) -> Result<Arc<CachedSnapshot>, ApiError> {
        let published = *self.changes.borrow();
        if let Some(hit) = self.cached(gateway_id).filter(|c| c.revision >= published) {
            return Ok(hit);
        }
        let snapshot = self.snapshot(gateway_id).await?;
        let body = serde_json::to_vec(&snapshot)
            .map_err(|e| ApiError::Internal(format!("cannot encode a snapshot: {e}")))?;
        let fresh = Arc::new(CachedSnapshot {
            revision: snapshot.revision,
            body: body.into(),
        });
        if let Ok(mut map) = self.snapshots.lock() {
            map.insert(gateway_id.to_owned(), fresh.clone());
        }
        Ok(fresh)
    }

    fn cached(&self, gateway_id: &str) -> Option<Arc<CachedSnapshot>> {
        self.snapshots.lock().ok()?.get(gateway_id).cloned()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    /// Tells subscribers that `revision` is committed.
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

    /// Makes sure the built-in gateway resource exists (for `gatehouse up`).
    pub async fn ensure_built_in_gateway(&self) -> Result<(), ApiError> {
        handlers::gateways::ensure_built_in(self).await
    }
}

/// A compiled snapshot, encoded once for every replica that asks.
#[derive(Debug)]
pub struct CachedSnapshot {
    pub revision: u64,
    pub body: axum::body::Bytes,
}

/// Opens the SQLite store under `data_dir` and the control plane on it.
pub async fn open_embedded(settings: &ControlSettings) -> Result<Opened, StartError> {
    let store = Store::open_sqlite_dir(Path::new(&settings.data_dir)).await?;
    ControlPlane::open(store, settings).await
}
