//! Wake-ups for revisions committed by other processes sharing a PostgreSQL store.
//!
//! Several control planes can share one PostgreSQL database. Each commits through its own
//! pool, so none learns from its own commits alone that another one changed the
//! configuration. [`Tx::commit`](crate::Tx::commit) therefore sends a notification on
//! [`CHANNEL`] in the committing transaction (PostgreSQL delivers it when, and only if, the
//! transaction commits), with the new revision as its payload, and every control plane keeps a
//! [`RevisionListener`] on that channel.
//!
//! A notification is only a wake-up: the change log stays the source of truth. A listener
//! whose connection broke may have missed some, so it reports [`Wake::Resync`] once it listens
//! again, and its owner re-reads [`Store::revision`](crate::Store::revision).

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};

use crate::Result;

/// The channel revisions are announced on.
pub const CHANNEL: &str = "gatehouse_revision";

/// How long the listener waits for a connection before it reports the failure.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What a [`RevisionListener`] heard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// A transaction committed this revision; every earlier one is committed too.
    Revision(u64),
    /// The listener (re)connected: notifications may have been missed, so read the store's
    /// revision again.
    Resync,
}

/// Listens for revisions committed by any process sharing the store (see the module docs).
pub struct RevisionListener {
    options: Arc<PgConnectOptions>,
    /// `None` until connected, and again after the connection failed.
    listener: Option<PgListener>,
}

impl std::fmt::Debug for RevisionListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevisionListener")
            .field("connected", &self.listener.is_some())
            .finish_non_exhaustive()
    }
}

impl RevisionListener {
    /// A listener that connects on its first [`RevisionListener::next`].
    pub(crate) fn new(options: Arc<PgConnectOptions>) -> Self {
        Self {
            options,
            listener: None,
        }
    }

    async fn listen(&mut self) -> Result<()> {
        // A pool of one connection, kept open for as long as the listener lives: the
        // listener takes it back from the pool to reconnect.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .max_lifetime(None)
            .idle_timeout(None)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_with((*self.options).clone())
            .await?;
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen(CHANNEL).await?;
        self.listener = Some(listener);
        Ok(())
    }

    /// Waits for the next wake-up.
    ///
    /// The first call connects and answers [`Wake::Resync`] once it listens. After a lost
    /// connection this reconnects first and then answers [`Wake::Resync`] too. An error means
    /// the database cannot be reached now; the next call tries to connect again, so call it
    /// again after a pause.
    ///
    /// Not cancel safe: a call dropped while it waits may leave the connection mid-message.
    /// Drop the listener rather than abandon a call.
    pub async fn next(&mut self) -> Result<Wake> {
        let Some(listener) = self.listener.as_mut() else {
            self.listen().await?;
            return Ok(Wake::Resync);
        };
        match listener.try_recv().await {
            Ok(Some(notification)) => Ok(match notification.payload().trim().parse() {
                Ok(revision) => Wake::Revision(revision),
                // Not ours, or garbled: still worth a look at the store.
                Err(_) => Wake::Resync,
            }),
            // The connection broke and was opened again (LISTEN included).
            Ok(None) => Ok(Wake::Resync),
            Err(e) => {
                self.listener = None;
                Err(e.into())
            }
        }
    }
}
