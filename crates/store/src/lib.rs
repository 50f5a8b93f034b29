//! Persistence for the control plane.
//!
//! Resources are kept as documents keyed by `(kind, parent, id)`: an operation's parent is its
//! API, a product's API link has the product as parent, and top-level resources have an empty
//! parent. Every kind is in one registry ([`kinds`]), and callers read and write values through
//! typed repositories ([`repo`]), the link tables ([`links`]) and the policy documents
//! ([`policies`]) rather than JSON text. Every change bumps one store-wide revision in the same
//! transaction; the snapshot compiler stamps snapshots with it, so gateways can tell which
//! configuration they run.
//!
//! Every revision also records which documents it touched (the change log, [`Store::changes`]),
//! so the snapshot compiler can bring a compiled snapshot up to date by redoing only what those
//! documents affect.
//!
//! Telemetry from gateways lives in tables of its own (see [`telemetry`]) and never bumps the
//! revision.
//!
//! Two backends keep it: SQL (the embedded SQLite file, or a PostgreSQL server several control
//! planes share, on one code path; see `sql`) and memory ([`Store::memory`], for unit tests;
//! see `memory`). Both behave the same, and the store's tests run on each.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

pub mod kinds;
pub mod links;
mod memory;
mod migrations;
pub mod policies;
pub mod records;
pub mod repo;
pub mod revisions;
mod sql;
pub mod telemetry;
#[cfg(any(test, feature = "test-util"))]
pub mod testdb;

pub use kinds::Kind;
pub use links::{Link, Links, TxLinks};
pub use policies::{Policies, PolicyLevel, PolicyScope, TxPolicies};
pub use repo::{JsonRecord, Record, Repo, Stored, TxRepo};
pub use revisions::{RevisionListener, Wake};
pub use telemetry::{Ingested, Pruned, Retention};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("cannot open the store at {location}: {source}")]
    Open {
        location: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot read or write {what}: {source}")]
    Encoding {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// A stored document that its record type cannot read (written by hand, or by a release
    /// with another format).
    #[error("the stored {kind} '{id}' (parent '{parent}') is unreadable: {source}")]
    Undecodable {
        kind: Kind,
        parent: String,
        id: String,
        #[source]
        source: serde_json::Error,
    },
    /// Another write transaction stayed open too long (the in-memory store's; SQLite reports
    /// its own as a database error).
    #[error("the store is busy: another write transaction stayed open for {0:?}")]
    Busy(std::time::Duration),
    #[error("store migration {version} failed: {source}")]
    Migration {
        version: i64,
        #[source]
        source: sqlx::Error,
    },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One stored document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub parent: String,
    pub id: String,
    pub body: String,
}

/// A document one revision created, replaced or deleted.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Change {
    /// The kind's name as stored: possibly one this release does not know (see [`Change::kind`]).
    pub kind: String,
    pub parent: String,
    pub id: String,
}

impl Change {
    /// The registered kind of the document, or `None` for a name this release does not know
    /// (written by a newer release sharing the store, say).
    pub fn kind(&self) -> Option<Kind> {
        Kind::from_name(&self.kind)
    }
}

/// How many revisions the change log keeps; a compiled snapshot older than that is rebuilt.
const CHANGE_LOG_REVISIONS: u64 = 10_000;

/// The control plane's store.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Sql(sql::Sql),
    Memory(Arc<memory::Memory>),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backend = match &self.backend {
            Backend::Sql(sql) if sql.sqlite => "sqlite",
            Backend::Sql(_) => "postgres",
            Backend::Memory(_) => "memory",
        };
        f.debug_struct("Store")
            .field("backend", &backend)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the SQLite file `gatehouse.db` under `dir`.
    pub async fn open_sqlite_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("gatehouse.db");
        let url = format!("sqlite://{}?mode=rwc", path.display());
        Self::open(&url).await
    }

    /// Opens a store by URL: `sqlite://PATH?mode=rwc`, `sqlite::memory:` or `postgres://…`.
    pub async fn open(url: &str) -> Result<Self> {
        Ok(Self {
            backend: Backend::Sql(sql::Sql::open(url).await?),
        })
    }

    /// A new, empty store kept in memory, for tests: it lives as long as a clone of it does.
    pub fn memory() -> Self {
        Self {
            backend: Backend::Memory(Arc::default()),
        }
    }

    /// A listener for revisions that any process sharing this store commits (it connects when
    /// first used), or `None` when no other process commits to it (SQLite and memory: the
    /// process that opened it publishes its own commits). See [`revisions`].
    pub fn revisions(&self) -> Option<RevisionListener> {
        match &self.backend {
            Backend::Sql(sql) => sql.revisions(),
            Backend::Memory(_) => None,
        }
    }

    /// The revision of the last committed change.
    pub async fn revision(&self) -> Result<u64> {
        match &self.backend {
            Backend::Sql(sql) => sql.revision().await,
            Backend::Memory(memory) => Ok(memory.revision()),
        }
    }

    /// The documents revisions `since + 1 ..= upto` touched, or `None` when the change log no
    /// longer reaches back to `since` (or never did: it starts when the store is upgraded).
    /// Read `upto` with [`Store::revision`] first: every change up to it is committed.
    pub async fn changes(&self, since: u64, upto: u64) -> Result<Option<Vec<Change>>> {
        match &self.backend {
            Backend::Sql(sql) => sql.changes(since, upto).await,
            Backend::Memory(memory) => Ok(memory.changes(since, upto)),
        }
    }

    pub async fn get(&self, kind: Kind, parent: &str, id: &str) -> Result<Option<String>> {
        match &self.backend {
            Backend::Sql(sql) => sql.get(kind.name(), parent, id).await,
            Backend::Memory(memory) => Ok(memory.get(kind.name(), parent, id)),
        }
    }

    /// Documents of one kind under `parent`, ordered by id.
    pub async fn list(&self, kind: Kind, parent: &str) -> Result<Vec<Document>> {
        match &self.backend {
            Backend::Sql(sql) => sql.list(kind.name(), parent).await,
            Backend::Memory(memory) => Ok(memory.list(kind.name(), parent)),
        }
    }

    /// Every document of one kind, whatever its parent, ordered by parent then id.
    pub async fn list_all(&self, kind: Kind) -> Result<Vec<Document>> {
        match &self.backend {
            Backend::Sql(sql) => sql.list_all(kind.name()).await,
            Backend::Memory(memory) => Ok(memory.list_all(kind.name())),
        }
    }

    /// Documents of one kind with the given id, under any parent (for example, the products
    /// that link an API), ordered by parent.
    pub async fn find_by_id(&self, kind: Kind, id: &str) -> Result<Vec<Document>> {
        match &self.backend {
            Backend::Sql(sql) => sql.find_by_id(kind.name(), id).await,
            Backend::Memory(memory) => Ok(memory.find_by_id(kind.name(), id)),
        }
    }

    /// Writes a document that is state, not configuration (a gateway instance's last
    /// heartbeat, say): it does not bump the revision, so gateways do not refetch for it.
    pub async fn put_state(&self, kind: Kind, parent: &str, id: &str, body: &str) -> Result<()> {
        match &self.backend {
            Backend::Sql(sql) => sql.put_state(kind.name(), parent, id, body).await,
            Backend::Memory(memory) => {
                memory.put_state(kind.name(), parent, id, body);
                Ok(())
            }
        }
    }

    /// Starts a transaction. Changes made through it bump the revision once, on commit; dropped
    /// without a commit, it rolls back.
    pub async fn begin(&self) -> Result<Tx> {
        let inner = match &self.backend {
            Backend::Sql(sql) => TxInner::Sql(sql.begin().await?),
            Backend::Memory(memory) => TxInner::Memory(memory.begin().await?),
        };
        Ok(Tx {
            inner,
            touched: BTreeSet::new(),
        })
    }

    pub async fn close(&self) {
        if let Backend::Sql(sql) = &self.backend {
            sql.close().await;
        }
    }

    /// A memory store whose write transactions wait `busy` for the one before them.
    #[cfg(test)]
    pub(crate) fn memory_with_busy_timeout(busy: std::time::Duration) -> Self {
        Self {
            backend: Backend::Memory(Arc::new(memory::Memory::with_busy_timeout(busy))),
        }
    }

    /// The database pool, for tests that look at the tables themselves.
    #[cfg(test)]
    pub(crate) fn pool(&self) -> &sqlx::AnyPool {
        match &self.backend {
            Backend::Sql(sql) => &sql.pool,
            Backend::Memory(_) => panic!("a memory store has no database"),
        }
    }
}

/// A write transaction.
pub struct Tx {
    inner: TxInner,
    /// `(kind, parent, id)` of every document written or deleted, for the change log.
    touched: BTreeSet<(String, String, String)>,
}

enum TxInner {
    Sql(sql::SqlTx),
    Memory(memory::MemoryTx),
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx")
            .field("touched", &self.touched.len())
            .finish_non_exhaustive()
    }
}

impl Tx {
    pub async fn get(&mut self, kind: Kind, parent: &str, id: &str) -> Result<Option<String>> {
        match &mut self.inner {
            TxInner::Sql(tx) => tx.get(kind.name(), parent, id).await,
            TxInner::Memory(tx) => Ok(tx.get(kind.name(), parent, id)),
        }
    }

    /// Creates or replaces a document. Returns true when it was created.
    pub async fn put(&mut self, kind: Kind, parent: &str, id: &str, body: &str) -> Result<bool> {
        let existed = self.get(kind, parent, id).await?.is_some();
        self.put_unversioned(kind, parent, id, body).await?;
        self.touch(kind, parent, id);
        Ok(!existed)
    }

    /// Creates or replaces a document that no gateway's configuration depends on (a portal
    /// user's password hash, say): it goes into the change log only if something else in the
    /// transaction does, and bumps no revision on its own, so gateways do not refetch for it.
    pub async fn put_unversioned(
        &mut self,
        kind: Kind,
        parent: &str,
        id: &str,
        body: &str,
    ) -> Result<()> {
        match &mut self.inner {
            TxInner::Sql(tx) => tx.upsert(kind.name(), parent, id, body).await,
            TxInner::Memory(tx) => {
                tx.upsert(kind.name(), parent, id, body);
                Ok(())
            }
        }
    }

    /// Creates an unversioned document (see [`Tx::put_unversioned`]) unless one with its key
    /// exists. Returns false when it existed. On PostgreSQL a concurrent transaction creating
    /// the same key waits for this one and then finds it, so the key is a uniqueness guard.
    pub async fn create_unversioned(
        &mut self,
        kind: Kind,
        parent: &str,
        id: &str,
        body: &str,
    ) -> Result<bool> {
        match &mut self.inner {
            TxInner::Sql(tx) => tx.create(kind.name(), parent, id, body).await,
            TxInner::Memory(tx) => Ok(tx.create(kind.name(), parent, id, body)),
        }
    }

    /// Deletes an unversioned document (see [`Tx::put_unversioned`]). Returns true when it
    /// existed.
    pub async fn delete_unversioned(&mut self, kind: Kind, parent: &str, id: &str) -> Result<bool> {
        match &mut self.inner {
            TxInner::Sql(tx) => tx.delete(kind.name(), parent, id).await,
            TxInner::Memory(tx) => Ok(tx.delete(kind.name(), parent, id)),
        }
    }

    /// Documents of one kind under `parent`, as this transaction sees them, ordered by id.
    pub async fn list(&mut self, kind: Kind, parent: &str) -> Result<Vec<Document>> {
        match &mut self.inner {
            TxInner::Sql(tx) => tx.list(kind.name(), parent).await,
            TxInner::Memory(tx) => Ok(tx.list(kind.name(), parent)),
        }
    }

    /// Every document of one kind, as this transaction sees them, ordered by parent then id.
    pub async fn list_all(&mut self, kind: Kind) -> Result<Vec<Document>> {
        match &mut self.inner {
            TxInner::Sql(tx) => tx.list_all(kind.name()).await,
            TxInner::Memory(tx) => Ok(tx.list_all(kind.name())),
        }
    }

    /// Deletes a document. Returns true when it existed.
    pub async fn delete(&mut self, kind: Kind, parent: &str, id: &str) -> Result<bool> {
        let hit = self.delete_unversioned(kind, parent, id).await?;
        if hit {
            self.touch(kind, parent, id);
        }
        Ok(hit)
    }

    /// Deletes every document of `kind` under `parent`.
    pub async fn delete_children(&mut self, kind: Kind, parent: &str) -> Result<u64> {
        let ids = match &mut self.inner {
            TxInner::Sql(tx) => tx.delete_children(kind.name(), parent).await?,
            TxInner::Memory(tx) => tx.delete_children(kind.name(), parent),
        };
        for id in &ids {
            self.touch(kind, parent, id);
        }
        Ok(ids.len() as u64)
    }

    /// Deletes every document of `kind` with this id, under any parent.
    pub async fn delete_by_id(&mut self, kind: Kind, id: &str) -> Result<u64> {
        let parents = match &mut self.inner {
            TxInner::Sql(tx) => tx.delete_by_id(kind.name(), id).await?,
            TxInner::Memory(tx) => tx.delete_by_id(kind.name(), id),
        };
        for parent in &parents {
            self.touch(kind, parent, id);
        }
        Ok(parents.len() as u64)
    }

    /// Deletes the documents that live under the `kind` document `id`: those of every kind the
    /// registry gives `kind` as parent (an API's operations and policies, a gateway's
    /// assignments, keys and certificates). The document itself stays.
    pub async fn delete_children_of(&mut self, kind: Kind, id: &str) -> Result<u64> {
        let mut deleted = 0;
        for child in kind.children() {
            deleted += self.delete_children(child, id).await?;
        }
        Ok(deleted)
    }

    fn touch(&mut self, kind: Kind, parent: &str, id: &str) {
        self.touched
            .insert((kind.name().to_owned(), parent.to_owned(), id.to_owned()));
    }

    /// Commits, bumping the revision if anything changed and logging what did. Returns the
    /// revision now current.
    pub async fn commit(self) -> Result<u64> {
        match self.inner {
            TxInner::Sql(tx) => tx.commit(&self.touched).await,
            TxInner::Memory(tx) => Ok(tx.commit(&self.touched)),
        }
    }
}

#[cfg(test)]
mod tests;
