//! The SQL backend: the embedded SQLite file and a shared PostgreSQL server, through sqlx's
//! `Any` driver with portable SQL, so both run the same code path.
//!
//! On PostgreSQL, several control planes may share the store: each commit also notifies the
//! others (see [`crate::revisions`]), and migrations run under an advisory lock, so replicas
//! that start together apply each migration once.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::Arc;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::postgres::PgConnectOptions;
use sqlx::{AnyPool, Row};

use crate::{CHANGE_LOG_REVISIONS, Change, Document, Result, RevisionListener, StoreError};
use crate::{migrations, revisions};

/// The statements the pool and a transaction both run.
const GET_DOCUMENT: &str =
    "SELECT body FROM gh_documents WHERE kind = $1 AND parent = $2 AND id = $3";
const LIST_UNDER: &str =
    "SELECT parent, id, body FROM gh_documents WHERE kind = $1 AND parent = $2 ORDER BY id";
const LIST_ALL: &str =
    "SELECT parent, id, body FROM gh_documents WHERE kind = $1 ORDER BY parent, id";
const UPSERT_DOCUMENT: &str = "INSERT INTO gh_documents (kind, parent, id, body) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (kind, parent, id) DO UPDATE SET body = excluded.body";

/// A store in a database.
#[derive(Clone)]
pub(crate) struct Sql {
    pub(crate) pool: AnyPool,
    /// SQLite has one writer at a time: write transactions take the write lock up front
    /// (`BEGIN IMMEDIATE`), so one that read first never fails to upgrade ("database is locked").
    pub(crate) sqlite: bool,
    /// How to reach the server when the store is PostgreSQL, for [`Sql::revisions`].
    postgres: Option<Arc<PgConnectOptions>>,
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
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

impl Sql {
    /// Opens a database by URL: `sqlite://PATH?mode=rwc`, `sqlite::memory:` or `postgres://…`.
    pub(crate) async fn open(url: &str) -> Result<Self> {
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
        let sql = Self {
            pool,
            sqlite,
            postgres,
        };
        migrations::run(&sql.pool, sql.postgres.is_some()).await?;
        Ok(sql)
    }

    pub(crate) fn revisions(&self) -> Option<RevisionListener> {
        self.postgres.clone().map(RevisionListener::new)
    }

    pub(crate) async fn revision(&self) -> Result<u64> {
        let row = sqlx::query("SELECT value FROM gh_meta WHERE name = 'revision'")
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(row.try_get::<i64, _>(0)?).unwrap_or(0))
    }

    pub(crate) async fn changes(&self, since: u64, upto: u64) -> Result<Option<Vec<Change>>> {
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

    pub(crate) async fn get(&self, kind: &str, parent: &str, id: &str) -> Result<Option<String>> {
        let row = sqlx::query(GET_DOCUMENT)
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

    pub(crate) async fn list(&self, kind: &str, parent: &str) -> Result<Vec<Document>> {
        let rows = sqlx::query(LIST_UNDER)
            .bind(kind)
            .bind(parent)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(document).collect()
    }

    pub(crate) async fn list_all(&self, kind: &str) -> Result<Vec<Document>> {
        let rows = sqlx::query(LIST_ALL)
            .bind(kind)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(document).collect()
    }

    pub(crate) async fn find_by_id(&self, kind: &str, id: &str) -> Result<Vec<Document>> {
        let rows = sqlx::query(
            "SELECT parent, id, body FROM gh_documents WHERE kind = $1 AND id = $2 ORDER BY parent",
        )
        .bind(kind)
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(document).collect()
    }

    pub(crate) async fn put_state(
        &self,
        kind: &str,
        parent: &str,
        id: &str,
        body: &str,
    ) -> Result<()> {
        sqlx::query(UPSERT_DOCUMENT)
            .bind(kind)
            .bind(parent)
            .bind(id)
            .bind(body)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(crate) async fn begin(&self) -> Result<SqlTx> {
        Ok(SqlTx {
            tx: self.begin_write().await?,
            notify: self.postgres.is_some(),
        })
    }

    /// A write transaction that bumps nothing ([`SqlTx`] wraps one for configuration changes).
    pub(crate) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(if self.sqlite {
            self.pool.begin_with("BEGIN IMMEDIATE").await?
        } else {
            self.pool.begin().await?
        })
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }
}

/// A write transaction in a database. Dropped without a commit, it rolls back.
pub(crate) struct SqlTx {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    /// Announce the new revision to the other processes sharing the store (PostgreSQL).
    notify: bool,
}

impl SqlTx {
    pub(crate) async fn get(
        &mut self,
        kind: &str,
        parent: &str,
        id: &str,
    ) -> Result<Option<String>> {
        let row = sqlx::query(GET_DOCUMENT)
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

    pub(crate) async fn upsert(
        &mut self,
        kind: &str,
        parent: &str,
        id: &str,
        body: &str,
    ) -> Result<()> {
        sqlx::query(UPSERT_DOCUMENT)
            .bind(kind)
            .bind(parent)
            .bind(id)
            .bind(body)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Inserts unless the key exists; false when it did. On PostgreSQL a concurrent
    /// transaction inserting the same key waits for this one and then finds it.
    pub(crate) async fn create(
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

    pub(crate) async fn delete(&mut self, kind: &str, parent: &str, id: &str) -> Result<bool> {
        let done =
            sqlx::query("DELETE FROM gh_documents WHERE kind = $1 AND parent = $2 AND id = $3")
                .bind(kind)
                .bind(parent)
                .bind(id)
                .execute(&mut *self.tx)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    pub(crate) async fn list(&mut self, kind: &str, parent: &str) -> Result<Vec<Document>> {
        let rows = sqlx::query(LIST_UNDER)
            .bind(kind)
            .bind(parent)
            .fetch_all(&mut *self.tx)
            .await?;
        rows.iter().map(document).collect()
    }

    pub(crate) async fn list_all(&mut self, kind: &str) -> Result<Vec<Document>> {
        let rows = sqlx::query(LIST_ALL)
            .bind(kind)
            .fetch_all(&mut *self.tx)
            .await?;
        rows.iter().map(document).collect()
    }

    /// Deletes every document of `kind` under `parent`; returns their ids.
    pub(crate) async fn delete_children(
        &mut self,
        kind: &str,
        parent: &str,
    ) -> Result<Vec<String>> {
        let rows =
            sqlx::query("DELETE FROM gh_documents WHERE kind = $1 AND parent = $2 RETURNING id")
                .bind(kind)
                .bind(parent)
                .fetch_all(&mut *self.tx)
                .await?;
        rows.iter()
            .map(|row| Ok(row.try_get::<String, _>(0)?))
            .collect()
    }

    /// Deletes every document of `kind` with this id; returns their parents.
    pub(crate) async fn delete_by_id(&mut self, kind: &str, id: &str) -> Result<Vec<String>> {
        let rows =
            sqlx::query("DELETE FROM gh_documents WHERE kind = $1 AND id = $2 RETURNING parent")
                .bind(kind)
                .bind(id)
                .fetch_all(&mut *self.tx)
                .await?;
        rows.iter()
            .map(|row| Ok(row.try_get::<String, _>(0)?))
            .collect()
    }

    /// Commits, bumping the revision if `touched` is not empty and logging it. Returns the
    /// revision now current.
    pub(crate) async fn commit(
        mut self,
        touched: &BTreeSet<(String, String, String)>,
    ) -> Result<u64> {
        if !touched.is_empty() {
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
        for (kind, parent, id) in touched {
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
        let revisions = to_i64(CHANGE_LOG_REVISIONS);
        if !touched.is_empty() && revision % 1000 == 0 && revision > revisions {
            let oldest = revision - revisions;
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
