//! Persistence for the control plane.
//!
//! Resources are kept as JSON documents keyed by `(kind, parent, id)`: an operation's parent is
//! its API, a product's API link has the product as parent, and top-level resources have an
//! empty parent. Every change bumps one store-wide revision in the same transaction; the
//! snapshot compiler stamps snapshots with it, so gateways can tell which configuration they run.
//!
//! Queries go through sqlx's `Any` driver with portable SQL, so the embedded SQLite file and a
//! shared PostgreSQL server run the same code path.
//!
//! Every revision also records which documents it touched (the change log, [`Store::changes`]),
//! so the snapshot compiler can bring a compiled snapshot up to date by redoing only what those
//! documents affect.
//!
//! Telemetry from gateways lives in tables of its own (see [`telemetry`]) and never bumps the
//! revision.
//!
//! On PostgreSQL, several control planes may share the store: each commit also notifies the
//! others (see [`revisions`]), and migrations run under an advisory lock, so replicas that
//! start together apply each migration once.

use std::path::Path;
use std::str::FromStr;

use std::sync::Arc;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::postgres::PgConnectOptions;
use sqlx::{AnyPool, Row};

pub mod kinds;
mod migrations;
pub mod revisions;
pub mod telemetry;
#[cfg(any(test, feature = "test-util"))]
pub mod testdb;

pub use kinds::Kind;
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
const CHANGE_LOG_REVISIONS: i64 = 10_000;

/// The control plane's store.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    /// SQLite has one writer at a time: write transactions take the write lock up front
    /// (`BEGIN IMMEDIATE`), so one that read first never fails to upgrade ("database is locked").
    sqlite: bool,
    /// How to reach the server when the store is PostgreSQL, for [`Store::revisions`].
    postgres: Option<Arc<PgConnectOptions>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
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
        sqlx::any::install_default_drivers();
        let open_err = |source| StoreError::Open {
            location: redact(url),
            source,
        };
        let options = AnyConnectOptions::from_str(url).map_err(open_err)?;
        let sqlite = url.starts_with("sqlite:");
        let postgres = if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Some(Arc::new(PgConnectOptions::from_str(url).map_err(open_err)?))
        } else {
            None
        };
        let mut pool = AnyPoolOptions::new().max_connections(if sqlite { 4 } else { 10 });
        if sqlite {
            pool = pool.after_connect(|conn, _| {
                Box::pin(async move {
                    for pragma in [
                        "PRAGMA journal_mode = WAL",
                        "PRAGMA synchronous = FULL",
                        "PRAGMA busy_timeout = 5000",
                    ] {
                        sqlx::query(pragma).execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            });
        }
        let pool = pool.connect_with(options).await.map_err(open_err)?;
        let store = Self {
            pool,
            sqlite,
            postgres,
        };
        migrations::run(&store.pool, store.postgres.is_some()).await?;
        Ok(store)
    }

    /// A listener for revisions that any process sharing this store commits (it connects when
    /// first used), or `None` when no other process commits to it (SQLite: the process that
    /// opened it publishes its own commits). See [`revisions`].
    pub fn revisions(&self) -> Option<RevisionListener> {
        self.postgres.clone().map(RevisionListener::new)
    }

    /// The revision of the last committed change.
    pub async fn revision(&self) -> Result<u64> {
        let row = sqlx::query("SELECT value FROM gh_meta WHERE name = 'revision'")
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(row.try_get::<i64, _>(0)?).unwrap_or(0))
    }

    /// The documents revisions `since + 1 ..= upto` touched, or `None` when the change log no
    /// longer reaches back to `since` (or never did: it starts when the store is upgraded).
    /// Read `upto` with [`Store::revision`] first: every change up to it is committed.
    pub async fn changes(&self, since: u64, upto: u64) -> Result<Option<Vec<Change>>> {
        let from = sqlx::query("SELECT value FROM gh_meta WHERE name = 'changes_from'")
            .fetch_optional(&self.pool)
            .await?;
        let from = match from {
            Some(row) => row.try_get::<i64, _>(0)?,
            None => return Ok(None),
        };
        let (since, upto) = (to_i64(since), to_i64(upto));
        if since < from {
            return Ok(None);
        }
        let rows = sqlx::query(
            "SELECT DISTINCT kind, parent, id FROM gh_changes WHERE revision > $1 AND revision <= $2",
        )
        .bind(since)
        .bind(upto)
        .fetch_all(&self.pool)
        .await?;
        let mut changes = rows
            .iter()
            .map(|r| {
                Ok(Change {
                    kind: r.try_get(0)?,
                    parent: r.try_get(1)?,
                    id: r.try_get(2)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        changes.sort();
        Ok(Some(changes))
    }

    pub async fn get(&self, kind: &str, parent: &str, id: &str) -> Result<Option<String>> {
        let row = sqlx::query(
            "SELECT body FROM gh_documents WHERE kind = $1 AND parent = $2 AND id = $3",
        )
        .bind(kind)
        .bind(parent)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(r) => Some(r.try_get::<String, _>(0)?),
            None => None,
        })
    }

    /// Documents of one kind under `parent`, ordered by id.
    pub async fn list(&self, kind: &str, parent: &str) -> Result<Vec<Document>> {
        let rows = sqlx::query(
            "SELECT parent, id, body FROM gh_documents WHERE kind = $1 AND parent = $2 ORDER BY id",
        )
        .bind(kind)
        .bind(parent)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(document).collect()
    }

    /// Every document of one kind, whatever its parent, ordered by parent then id.
    pub async fn list_all(&self, kind: &str) -> Result<Vec<Document>> {
        let rows = sqlx::query(
            "SELECT parent, id, body FROM gh_documents WHERE kind = $1 ORDER BY parent, id",
        )
        .bind(kind)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(document).collect()
    }

    /// Documents of one kind with the given id, under any parent (for example, the products
    /// that link an API).
    pub async fn find_by_id(&self, kind: &str, id: &str) -> Result<Vec<Document>> {
        let rows = sqlx::query(
            "SELECT parent, id, body FROM gh_documents WHERE kind = $1 AND id = $2 ORDER BY parent",
        )
        .bind(kind)
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(document).collect()
    }

    /// Writes a document that is state, not configuration (a gateway instance's last
    /// heartbeat, say): it does not bump the revision, so gateways do not refetch for it.
    pub async fn put_state(&self, kind: &str, parent: &str, id: &str, body: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO gh_documents (kind, parent, id, body) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (kind, parent, id) DO UPDATE SET body = excluded.body",
        )
        .bind(kind)
        .bind(parent)
        .bind(id)
        .bind(body)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Starts a transaction. Changes made through it bump the revision once, on commit.
    pub async fn begin(&self) -> Result<Tx> {
        let tx = self.begin_write().await?;
        Ok(Tx {
            tx,
            touched: std::collections::BTreeSet::new(),
            notify: self.postgres.is_some(),
        })
    }

    /// A write transaction that bumps nothing (`Tx` wraps one for configuration changes).
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(if self.sqlite {
            self.pool.begin_with("BEGIN IMMEDIATE").await?
        } else {
            self.pool.begin().await?
        })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn to_i64(revision: u64) -> i64 {
    i64::try_from(revision).unwrap_or(i64::MAX)
}

fn document(row: &sqlx::any::AnyRow) -> Result<Document> {
    Ok(Document {
        parent: row.try_get(0)?,
        id: row.try_get(1)?,
        body: row.try_get(2)?,
    })
}

/// Hides a password in a database URL before it goes into a message.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// A write transaction.
pub struct Tx {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    /// `(kind, parent, id)` of every document written or deleted, for the change log.
    touched: std::collections::BTreeSet<(String, String, String)>,
    /// Announce the new revision to the other processes sharing the store (PostgreSQL).
    notify: bool,
}

impl Tx {
    pub async fn get(&mut self, kind: &str, parent: &str, id: &str) -> Result<Option<String>> {
        let row = sqlx::query(
            "SELECT body FROM gh_documents WHERE kind = $1 AND parent = $2 AND id = $3",
        )
        .bind(kind)
        .bind(parent)
        .bind(id)
        .fetch_optional(&mut *self.tx)
        .await?;
        Ok(match row {
            Some(r) => Some(r.try_get::<String, _>(0)?),
            None => None,
        })
    }

    /// Creates or replaces a document. Returns true when it was created.
    pub async fn put(&mut self, kind: &str, parent: &str, id: &str, body: &str) -> Result<bool> {
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
        kind: &str,
        parent: &str,
        id: &str,
        body: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO gh_documents (kind, parent, id, body) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (kind, parent, id) DO UPDATE SET body = excluded.body",
        )
        .bind(kind)
        .bind(parent)
        .bind(id)
        .bind(body)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Creates an unversioned document (see [`Tx::put_unversioned`]) unless one with its key
    /// exists. Returns false when it existed. On PostgreSQL a concurrent transaction creating
    /// the same key waits for this one and then finds it, so the key is a uniqueness guard.
    pub async fn create_unversioned(
        &mut self,
        kind: &str,
        parent: &str,
        id: &str,
        body: &str,
    ) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO gh_documents (kind, parent, id, body) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (kind, parent, id) DO NOTHING",
        )
        .bind(kind)
        .bind(parent)
        .bind(id)
        .bind(body)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes an unversioned document (see [`Tx::put_unversioned`]). Returns true when it
    /// existed.
    pub async fn delete_unversioned(&mut self, kind: &str, parent: &str, id: &str) -> Result<bool> {
        let done =
            sqlx::query("DELETE FROM gh_documents WHERE kind = $1 AND parent = $2 AND id = $3")
                .bind(kind)
                .bind(parent)
                .bind(id)
                .execute(&mut *self.tx)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Documents of one kind under `parent`, as this transaction sees them, ordered by id.
    pub async fn list(&mut self, kind: &str, parent: &str) -> Result<Vec<Document>> {
        let rows = sqlx::query(
            "SELECT parent, id, body FROM gh_documents WHERE kind = $1 AND parent = $2 ORDER BY id",
        )
        .bind(kind)
        .bind(parent)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter().map(document).collect()
    }

    /// Deletes a document. Returns true when it existed.
    pub async fn delete(&mut self, kind: &str, parent: &str, id: &str) -> Result<bool> {
        let done =
            sqlx::query("DELETE FROM gh_documents WHERE kind = $1 AND parent = $2 AND id = $3")
                .bind(kind)
                .bind(parent)
                .bind(id)
                .execute(&mut *self.tx)
                .await?;
        let hit = done.rows_affected() > 0;
        if hit {
            self.touch(kind, parent, id);
        }
        Ok(hit)
    }

    /// Deletes every document of `kind` under `parent`.
    pub async fn delete_children(&mut self, kind: &str, parent: &str) -> Result<u64> {
        let rows =
            sqlx::query("DELETE FROM gh_documents WHERE kind = $1 AND parent = $2 RETURNING id")
                .bind(kind)
                .bind(parent)
                .fetch_all(&mut *self.tx)
                .await?;
        for row in &rows {
            let id: String = row.try_get(0)?;
            self.touch(kind, parent, &id);
        }
        Ok(rows.len() as u64)
    }

    /// Deletes every document of `kind` with this id, under any parent.
    pub async fn delete_by_id(&mut self, kind: &str, id: &str) -> Result<u64> {
        let rows =
            sqlx::query("DELETE FROM gh_documents WHERE kind = $1 AND id = $2 RETURNING parent")
                .bind(kind)
                .bind(id)
                .fetch_all(&mut *self.tx)
                .await?;
        for row in &rows {
            let parent: String = row.try_get(0)?;
            self.touch(kind, &parent, id);
        }
        Ok(rows.len() as u64)
    }

    fn touch(&mut self, kind: &str, parent: &str, id: &str) {
        self.touched
            .insert((kind.to_owned(), parent.to_owned(), id.to_owned()));
    }

    /// Commits, bumping the revision if anything changed and logging what did. Returns the
    /// revision now current.
    pub async fn commit(mut self) -> Result<u64> {
        if !self.touched.is_empty() {
            // The row lock this takes orders concurrent writers (PostgreSQL): revisions are
            // committed in the order they are numbered.
            sqlx::query("UPDATE gh_meta SET value = value + 1 WHERE name = 'revision'")
                .execute(&mut *self.tx)
                .await?;
        }
        let row = sqlx::query("SELECT value FROM gh_meta WHERE name = 'revision'")
            .fetch_one(&mut *self.tx)
            .await?;
        let revision = row.try_get::<i64, _>(0)?;
        let touched = std::mem::take(&mut self.touched);
        for (kind, parent, id) in &touched {
            sqlx::query(
                "INSERT INTO gh_changes (revision, kind, parent, id) VALUES ($1, $2, $3, $4)",
            )
            .bind(revision)
            .bind(kind)
            .bind(parent)
            .bind(id)
            .execute(&mut *self.tx)
            .await?;
        }
        if !touched.is_empty() && revision % 1000 == 0 && revision > CHANGE_LOG_REVISIONS {
            let oldest = revision - CHANGE_LOG_REVISIONS;
            sqlx::query("DELETE FROM gh_changes WHERE revision <= $1")
                .bind(oldest)
                .execute(&mut *self.tx)
                .await?;
            sqlx::query("UPDATE gh_meta SET value = $1 WHERE name = 'changes_from' AND value < $1")
                .bind(oldest)
                .execute(&mut *self.tx)
                .await?;
        }
        if self.notify && !touched.is_empty() {
            // Delivered to every listener when, and only if, this transaction commits.
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(revisions::CHANNEL)
                .bind(revision.to_string())
                .execute(&mut *self.tx)
                .await?;
        }
        self.tx.commit().await?;
        Ok(u64::try_from(revision).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests;
