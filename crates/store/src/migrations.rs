//! Schema migrations, applied in order at start-up. Each runs once, in its own transaction,
//! and is recorded in `gh_migrations`. Never edit a released migration: add a new one.

use sqlx::{AnyConnection, AnyPool, Connection, Row};

use crate::{Result, StoreError};

const MIGRATIONS: &[(i64, &[&str])] = &[
    (
        1,
        &[
            "CREATE TABLE gh_documents (
            kind TEXT NOT NULL,
            parent TEXT NOT NULL,
            id TEXT NOT NULL,
            body TEXT NOT NULL,
            PRIMARY KEY (kind, parent, id)
        )",
            "CREATE INDEX gh_documents_by_id ON gh_documents (kind, id)",
            "CREATE TABLE gh_meta (name TEXT PRIMARY KEY, value BIGINT NOT NULL)",
            "INSERT INTO gh_meta (name, value) VALUES ('revision', 0)",
        ],
    ),
    // Telemetry from gateways (see telemetry.rs): batch ids for exactly-once delivery,
    // per-minute aggregates, request samples.
    (
        2,
        &[
            "CREATE TABLE gh_telemetry_batches (
            batch_id TEXT NOT NULL PRIMARY KEY,
            gateway_id TEXT NOT NULL,
            instance TEXT NOT NULL,
            received_at BIGINT NOT NULL,
            aggregates BIGINT NOT NULL,
            dropped_batches BIGINT NOT NULL
        )",
            "CREATE INDEX gh_telemetry_batches_by_time ON gh_telemetry_batches (received_at)",
            "CREATE TABLE gh_telemetry_minutes (
            minute BIGINT NOT NULL,
            gateway_id TEXT NOT NULL,
            api_id TEXT NOT NULL,
            operation_id TEXT NOT NULL,
            product_id TEXT NOT NULL,
            subscription_id TEXT NOT NULL,
            total BIGINT NOT NULL,
            success BIGINT NOT NULL,
            blocked BIGINT NOT NULL,
            failed BIGINT NOT NULL,
            other BIGINT NOT NULL,
            bandwidth BIGINT NOT NULL,
            api_time TEXT NOT NULL,
            service_time TEXT NOT NULL,
            PRIMARY KEY (minute, gateway_id, api_id, operation_id, product_id, subscription_id)
        )",
            "CREATE INDEX gh_telemetry_minutes_by_api ON gh_telemetry_minutes (api_id, minute)",
            "CREATE TABLE gh_telemetry_samples (
            batch_id TEXT NOT NULL,
            seq BIGINT NOT NULL,
            gateway_id TEXT NOT NULL,
            at_ms BIGINT NOT NULL,
            api_id TEXT NOT NULL,
            body TEXT NOT NULL,
            PRIMARY KEY (batch_id, seq)
        )",
            "CREATE INDEX gh_telemetry_samples_by_time ON gh_telemetry_samples (at_ms)",
        ],
    ),
    // The change log (see `Store::changes`): which documents each revision touched, so the
    // snapshot compiler can redo only what a change affects. `changes_from` is the oldest
    // revision the log can bring up to date; stores older than the log start from now.
    (
        3,
        &[
            "CREATE TABLE gh_changes (
            revision BIGINT NOT NULL,
            kind TEXT NOT NULL,
            parent TEXT NOT NULL,
            id TEXT NOT NULL
        )",
            "CREATE INDEX gh_changes_by_revision ON gh_changes (revision)",
            "INSERT INTO gh_meta (name, value) SELECT 'changes_from', value FROM gh_meta WHERE name = 'revision'",
        ],
    ),
];

/// The key of the session advisory lock that migrations run under on PostgreSQL ("ghmigrat").
const MIGRATION_LOCK: i64 = 0x6768_6d69_6772_6174;

/// Applies the migrations not yet recorded. On PostgreSQL several control planes may start at
/// once on one database: they take turns under a session advisory lock held on the connection
/// that migrates, so each migration runs once and a replica starts only on the full schema.
pub(crate) async fn run(pool: &AnyPool, postgres: bool) -> Result<()> {
    let mut conn = pool.acquire().await?;
    if !postgres {
        return apply(&mut conn).await;
    }
    // Ending the session releases the lock: this connection is closed rather than pooled
    // again, so it cannot linger holding the lock, even if this future is dropped midway.
    conn.close_on_drop();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await?;
    let applied = apply(&mut conn).await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await;
    applied?;
    unlocked?;
    Ok(())
}

async fn apply(conn: &mut AnyConnection) -> Result<()> {
    sqlx::query("CREATE TABLE IF NOT EXISTS gh_migrations (version BIGINT PRIMARY KEY)")
        .execute(&mut *conn)
        .await?;
    let applied: Vec<i64> = sqlx::query("SELECT version FROM gh_migrations")
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| r.try_get::<i64, _>(0))
        .collect::<Result<_, _>>()?;
    for (version, statements) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        let fail = |source| StoreError::Migration {
            version: *version,
            source,
        };
        let mut tx = conn.begin().await.map_err(fail)?;
        for sql in *statements {
            sqlx::query(*sql).execute(&mut *tx).await.map_err(fail)?;
        }
        sqlx::query("INSERT INTO gh_migrations (version) VALUES ($1)")
            .bind(*version)
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        tracing::info!(version, "applied store migration");
    }
    Ok(())
}
