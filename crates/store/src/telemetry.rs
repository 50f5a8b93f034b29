//! Telemetry the gateways upload: per-minute aggregates, a sample of request records, and the
//! ids of the batches already stored.
//!
//! Telemetry is state, not configuration: nothing here touches the revision, so gateways never
//! refetch their configuration because traffic was reported.
//!
//! - `gh_telemetry_batches` holds every batch id stored. Storing a batch is one transaction that
//!   first inserts its id; when the id is already there the transaction writes nothing else, so a
//!   batch sent twice (a lost answer, a spool replayed after a restart) counts once.
//! - `gh_telemetry_minutes` holds one row per minute, gateway, API, operation, product and
//!   subscription (absent product or subscription: empty text). Counts and bandwidth add up; the
//!   latency sketches (JSON) merge. A second batch for the same minute reads the row under a
//!   lock (SQLite: the write lock `BEGIN IMMEDIATE` takes; PostgreSQL: `FOR UPDATE`), merges and
//!   writes it back.
//! - `gh_telemetry_samples` keeps the newest request records, pruned to a bound.

use gatehouse_model::telemetry::{Aggregate, Batch, Counts, Sketch};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::sql::Sql;
use crate::{Backend, Result, Store, StoreError};

/// What storing a batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ingested {
    /// The batch id was stored before: nothing was written.
    pub duplicate: bool,
    /// Aggregates stored (those older than the retention are skipped).
    pub aggregates: usize,
    pub samples: usize,
}

/// What a retention pass deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pruned {
    pub minutes: u64,
    pub batches: u64,
    pub samples: u64,
}

/// How long telemetry is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Aggregates of minutes before this (Unix seconds) are not stored, and deleted by `prune`.
    pub oldest_minute: i64,
    /// How many request samples to keep, newest first.
    pub samples: u64,
}

/// An aggregate's row key; `None` product or subscription is stored as empty text, which no
/// valid id can be.
pub(crate) type RowKey = (i64, String, String, String, String);

pub(crate) fn row_key(a: &Aggregate) -> RowKey {
    (
        a.minute - a.minute.rem_euclid(60),
        a.api_id.clone(),
        a.operation_id.clone(),
        a.product_id.clone().unwrap_or_default(),
        a.subscription_id.clone().unwrap_or_default(),
    )
}

fn signed(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn unsigned(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn encode_sketch(s: &Sketch) -> Result<String> {
    serde_json::to_string(s).map_err(|source| StoreError::Encoding {
        what: "a latency sketch",
        source,
    })
}

fn decode_sketch(text: &str) -> Result<Sketch> {
    serde_json::from_str(text).map_err(|source| StoreError::Encoding {
        what: "a stored latency sketch",
        source,
    })
}

/// The figure columns of a minute row, in the order `figures` reads them.
macro_rules! minute_columns {
    () => {
        "total, success, blocked, failed, other, bandwidth, api_time, service_time"
    };
}

const INSERT_MINUTE: &str = concat!(
    "INSERT INTO gh_telemetry_minutes (minute, gateway_id, api_id, operation_id, product_id, \
     subscription_id, ",
    minute_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
     ON CONFLICT (minute, gateway_id, api_id, operation_id, product_id, subscription_id) \
     DO NOTHING"
);

macro_rules! select_minute {
    ($lock:literal) => {
        concat!(
            "SELECT ",
            minute_columns!(),
            " FROM gh_telemetry_minutes WHERE minute = $1 AND gateway_id = $2 AND api_id = $3 \
             AND operation_id = $4 AND product_id = $5 AND subscription_id = $6",
            $lock
        )
    };
}

macro_rules! select_minutes {
    ($filter:literal) => {
        concat!(
            "SELECT minute, api_id, operation_id, product_id, subscription_id, ",
            minute_columns!(),
            " FROM gh_telemetry_minutes WHERE minute >= $1 AND minute < $2",
            $filter,
            " ORDER BY minute, api_id, operation_id"
        )
    };
}

/// Reads the figure columns (in `minute_columns!` order, starting at `at`) into an aggregate.
fn figures(row: &AnyRow, at: usize, into: &mut Aggregate) -> Result<()> {
    let n = |i: usize| row.try_get::<i64, _>(at + i).map(unsigned);
    into.counts = Counts {
        total: n(0)?,
        success: n(1)?,
        blocked: n(2)?,
        failed: n(3)?,
        other: n(4)?,
    };
    into.bandwidth = n(5)?;
    into.api_time = decode_sketch(&row.try_get::<String, _>(at + 6)?)?;
    into.service_time = decode_sketch(&row.try_get::<String, _>(at + 7)?)?;
    Ok(())
}

fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

impl Store {
    /// Stores one batch from `gateway_id` in one transaction, exactly once per batch id.
    /// `received_at` is Unix seconds.
    pub async fn ingest_telemetry(
        &self,
        gateway_id: &str,
        batch: &Batch,
        received_at: i64,
        retention: Retention,
    ) -> Result<Ingested> {
        match &self.backend {
            Backend::Sql(sql) => {
                sql.ingest_telemetry(gateway_id, batch, received_at, retention)
                    .await
            }
            Backend::Memory(memory) => {
                Ok(memory.ingest_telemetry(gateway_id, batch, received_at, retention))
            }
        }
    }

    /// Aggregates of the minutes that start in `[from, to)` (Unix seconds), of one API or all,
    /// one per stored row (gateways apart), ordered by minute.
    pub async fn telemetry_minutes(
        &self,
        from: i64,
        to: i64,
        api_id: Option<&str>,
    ) -> Result<Vec<Aggregate>> {
        match &self.backend {
            Backend::Sql(sql) => sql.telemetry_minutes(from, to, api_id).await,
            Backend::Memory(memory) => Ok(memory.telemetry_minutes(from, to, api_id)),
        }
    }

    /// The newest request samples, newest first.
    pub async fn telemetry_samples(
        &self,
        limit: u32,
    ) -> Result<Vec<gatehouse_model::telemetry::Sample>> {
        match &self.backend {
            Backend::Sql(sql) => sql.telemetry_samples(limit).await,
            Backend::Memory(memory) => Ok(memory.telemetry_samples(limit)),
        }
    }

    /// The batches stored from each gateway, and the spool drops their instances reported:
    /// `(gateway id, batches, dropped batches, last received Unix seconds)`.
    pub async fn telemetry_deliveries(&self) -> Result<Vec<(String, u64, u64, i64)>> {
        match &self.backend {
            Backend::Sql(sql) => sql.telemetry_deliveries().await,
            Backend::Memory(memory) => Ok(memory.telemetry_deliveries()),
        }
    }

    /// Deletes telemetry older than the retention: aggregates of earlier minutes, the ids of
    /// batches received before then (their aggregates would be refused as too old anyway), and
    /// samples beyond the bound.
    pub async fn prune_telemetry(&self, retention: Retention) -> Result<Pruned> {
        match &self.backend {
            Backend::Sql(sql) => sql.prune_telemetry(retention).await,
            Backend::Memory(memory) => Ok(memory.prune_telemetry(retention)),
        }
    }
}

impl Sql {
    /// Stores one batch from `gateway_id` in one transaction, exactly once per batch id.
    /// `received_at` is Unix seconds.
    pub(crate) async fn ingest_telemetry(
        &self,
        gateway_id: &str,
        batch: &Batch,
        received_at: i64,
        retention: Retention,
    ) -> Result<Ingested> {
        // Merge aggregates that share a row first, and write rows in key order, so that two
        // transactions touching the same rows lock them in the same order.
        let mut rows: std::collections::BTreeMap<RowKey, Aggregate> = Default::default();
        let mut stored = 0;
        for a in &batch.aggregates {
            let key = row_key(a);
            if key.0 < retention.oldest_minute {
                continue;
            }
            stored += 1;
            rows.entry(key)
                .and_modify(|existing| existing.merge(a))
                .or_insert_with(|| a.clone());
        }

        let mut tx = self.begin_write().await?;
        let fresh = sqlx::query(
            "INSERT INTO gh_telemetry_batches \
             (batch_id, gateway_id, instance, received_at, aggregates, dropped_batches) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (batch_id) DO NOTHING",
        )
        .bind(batch.id.as_str())
        .bind(gateway_id)
        .bind(batch.instance.as_str())
        .bind(received_at)
        .bind(i64::try_from(stored).unwrap_or(i64::MAX))
        .bind(signed(batch.dropped_batches))
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if !fresh {
            tx.rollback().await?;
            return Ok(Ingested {
                duplicate: true,
                ..Ingested::default()
            });
        }

        // SQLite's write lock is already held (`BEGIN IMMEDIATE`); PostgreSQL locks the row.
        let select = if self.sqlite {
            select_minute!("")
        } else {
            select_minute!(" FOR UPDATE")
        };
        for ((minute, api, operation, product, subscription), a) in &rows {
            let inserted = sqlx::query(INSERT_MINUTE)
                .bind(*minute)
                .bind(gateway_id)
                .bind(api.as_str())
                .bind(operation.as_str())
                .bind(product.as_str())
                .bind(subscription.as_str())
                .bind(signed(a.counts.total))
                .bind(signed(a.counts.success))
                .bind(signed(a.counts.blocked))
                .bind(signed(a.counts.failed))
                .bind(signed(a.counts.other))
                .bind(signed(a.bandwidth))
                .bind(encode_sketch(&a.api_time)?)
                .bind(encode_sketch(&a.service_time)?)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                > 0;
            if inserted {
                continue;
            }
            let row = sqlx::query(select)
                .bind(*minute)
                .bind(gateway_id)
                .bind(api.as_str())
                .bind(operation.as_str())
                .bind(product.as_str())
                .bind(subscription.as_str())
                .fetch_one(&mut *tx)
                .await?;
            let mut merged = Aggregate::default();
            figures(&row, 0, &mut merged)?;
            merged.merge(a);
            sqlx::query(
                "UPDATE gh_telemetry_minutes SET total = $7, success = $8, blocked = $9, \
                 failed = $10, other = $11, bandwidth = $12, api_time = $13, service_time = $14 \
                 WHERE minute = $1 AND gateway_id = $2 AND api_id = $3 AND operation_id = $4 \
                 AND product_id = $5 AND subscription_id = $6",
            )
            .bind(*minute)
            .bind(gateway_id)
            .bind(api.as_str())
            .bind(operation.as_str())
            .bind(product.as_str())
            .bind(subscription.as_str())
            .bind(signed(merged.counts.total))
            .bind(signed(merged.counts.success))
            .bind(signed(merged.counts.blocked))
            .bind(signed(merged.counts.failed))
            .bind(signed(merged.counts.other))
            .bind(signed(merged.bandwidth))
            .bind(encode_sketch(&merged.api_time)?)
            .bind(encode_sketch(&merged.service_time)?)
            .execute(&mut *tx)
            .await?;
        }

        let oldest_sample_ms = retention.oldest_minute.saturating_mul(1000);
        let mut samples = 0;
        for (seq, sample) in batch.samples.iter().enumerate() {
            if sample.timestamp < oldest_sample_ms {
                continue;
            }
            let body = serde_json::to_string(sample).map_err(|source| StoreError::Encoding {
                what: "a request sample",
                source,
            })?;
            sqlx::query(
                "INSERT INTO gh_telemetry_samples (batch_id, seq, gateway_id, at_ms, api_id, body) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(batch.id.as_str())
            .bind(i64::try_from(seq).unwrap_or(i64::MAX))
            .bind(gateway_id)
            .bind(sample.timestamp)
            .bind(sample.api_id.as_str())
            .bind(body)
            .execute(&mut *tx)
            .await?;
            samples += 1;
        }
        if samples > 0 {
            prune_samples(&mut tx, retention.samples).await?;
        }
        tx.commit().await?;
        Ok(Ingested {
            duplicate: false,
            aggregates: stored,
            samples,
        })
    }

    /// Aggregates of the minutes that start in `[from, to)` (Unix seconds), of one API or all,
    /// one per stored row (gateways apart), ordered by minute.
    pub(crate) async fn telemetry_minutes(
        &self,
        from: i64,
        to: i64,
        api_id: Option<&str>,
    ) -> Result<Vec<Aggregate>> {
        let query = match api_id {
            Some(api) => sqlx::query(select_minutes!(" AND api_id = $3"))
                .bind(from)
                .bind(to)
                .bind(api),
            None => sqlx::query(select_minutes!("")).bind(from).bind(to),
        };
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let mut a = Aggregate {
                    minute: row.try_get(0)?,
                    api_id: row.try_get(1)?,
                    operation_id: row.try_get(2)?,
                    product_id: non_empty(row.try_get(3)?),
                    subscription_id: non_empty(row.try_get(4)?),
                    ..Aggregate::default()
                };
                figures(row, 5, &mut a)?;
                Ok(a)
            })
            .collect()
    }

    /// The newest request samples, newest first.
    pub(crate) async fn telemetry_samples(
        &self,
        limit: u32,
    ) -> Result<Vec<gatehouse_model::telemetry::Sample>> {
        let rows = sqlx::query(
            "SELECT body FROM gh_telemetry_samples ORDER BY at_ms DESC, batch_id, seq LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let body: String = row.try_get(0)?;
                serde_json::from_str(&body).map_err(|source| StoreError::Encoding {
                    what: "a stored request sample",
                    source,
                })
            })
            .collect()
    }

    /// The batches stored from each gateway, and the spool drops their instances reported:
    /// `(gateway id, batches, dropped batches, last received Unix seconds)`.
    pub(crate) async fn telemetry_deliveries(&self) -> Result<Vec<(String, u64, u64, i64)>> {
        let rows = sqlx::query(
            "SELECT gateway_id, COUNT(*), CAST(SUM(dropped_batches) AS BIGINT), MAX(received_at) \
             FROM gh_telemetry_batches GROUP BY gateway_id ORDER BY gateway_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get::<String, _>(0)?,
                    unsigned(row.try_get::<i64, _>(1)?),
                    unsigned(row.try_get::<Option<i64>, _>(2)?.unwrap_or(0)),
                    row.try_get::<Option<i64>, _>(3)?.unwrap_or(0),
                ))
            })
            .collect()
    }

    /// Deletes telemetry older than the retention: aggregates of earlier minutes, the ids of
    /// batches received before then (their aggregates would be refused as too old anyway), and
    /// samples beyond the bound.
    pub(crate) async fn prune_telemetry(&self, retention: Retention) -> Result<Pruned> {
        let mut tx = self.begin_write().await?;
        let minutes = sqlx::query("DELETE FROM gh_telemetry_minutes WHERE minute < $1")
            .bind(retention.oldest_minute)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let batches = sqlx::query("DELETE FROM gh_telemetry_batches WHERE received_at < $1")
            .bind(retention.oldest_minute)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let mut samples = sqlx::query("DELETE FROM gh_telemetry_samples WHERE at_ms < $1")
            .bind(retention.oldest_minute.saturating_mul(1000))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        samples += prune_samples(&mut tx, retention.samples).await?;
        tx.commit().await?;
        Ok(Pruned {
            minutes,
            batches,
            samples,
        })
    }
}

/// Keeps the newest `keep` samples.
async fn prune_samples(tx: &mut sqlx::Transaction<'static, sqlx::Any>, keep: u64) -> Result<u64> {
    let done = sqlx::query(
        "DELETE FROM gh_telemetry_samples WHERE at_ms < \
         (SELECT at_ms FROM gh_telemetry_samples ORDER BY at_ms DESC LIMIT 1 OFFSET $1)",
    )
    .bind(signed(keep.saturating_sub(1)))
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected())
}
