//! The in-memory backend, for unit tests that exercise what is stored rather than how:
//! documents, the revision and its change log, transactions, and telemetry, kept in the
//! process and gone with it.
//!
//! It behaves as the SQL backends do (the store's tests run one body on every backend):
//! - One write transaction at a time, as on SQLite: [`Memory::begin`] waits for the previous
//!   one to end, as long as SQLite's busy timeout, then gives up ([`StoreError::Busy`]). Its
//!   writes are kept apart until it commits, so readers outside it see the store as committed,
//!   and dropping it rolls back.
//! - A commit applies the writes, and bumps the revision and logs the touched documents when
//!   there are any, all at once.
//! - Listings are ordered as SQLite orders them (by byte value).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use gatehouse_model::telemetry::{Aggregate, Batch, Sample};
use tokio::sync::OwnedMutexGuard;

use crate::telemetry::{Ingested, Pruned, Retention, row_key};
use crate::{CHANGE_LOG_REVISIONS, Change, Document, Result, StoreError};

/// How long a write transaction waits for the one before it to end: SQLite's busy timeout.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// `(kind, parent, id)`.
type Key = (String, String, String);

/// A telemetry row's key: minute, gateway, API, operation, product, subscription (absent
/// product or subscription: empty).
type MinuteKey = (i64, String, String, String, String, String);

pub(crate) struct Memory {
    state: Mutex<State>,
    /// Held by the open write transaction.
    writer: Arc<tokio::sync::Mutex<()>>,
    busy_timeout: std::time::Duration,
}

impl Default for Memory {
    fn default() -> Self {
        Self::with_busy_timeout(BUSY_TIMEOUT)
    }
}

#[derive(Default)]
struct State {
    documents: BTreeMap<Key, String>,
    revision: u64,
    /// The oldest revision the change log can bring up to date.
    changes_from: u64,
    /// What each revision touched.
    changes: BTreeMap<u64, Vec<Change>>,
    batches: BTreeMap<String, BatchRow>,
    minutes: BTreeMap<MinuteKey, Aggregate>,
    samples: Vec<SampleRow>,
}

struct BatchRow {
    gateway_id: String,
    received_at: i64,
    dropped_batches: u64,
}

struct SampleRow {
    batch_id: String,
    seq: usize,
    sample: Sample,
}

impl State {
    /// The committed documents of `kind` (under `parent`, if given), in `(parent, id)` order.
    fn documents<'a>(
        &'a self,
        kind: &'a str,
        parent: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a Key, &'a String)> + 'a {
        let start = (
            kind.to_owned(),
            parent.unwrap_or("").to_owned(),
            String::new(),
        );
        self.documents
            .range(start..)
            .take_while(move |(k, _)| k.0 == kind && parent.is_none_or(|p| k.1 == p))
    }

    /// Keeps the newest `keep` samples (those as new as the `keep`th newest).
    fn prune_samples(&mut self, keep: u64) -> u64 {
        let mut times: Vec<i64> = self.samples.iter().map(|s| s.sample.timestamp).collect();
        times.sort_unstable_by(|a, b| b.cmp(a));
        let nth = usize::try_from(keep.saturating_sub(1)).unwrap_or(usize::MAX);
        let Some(&oldest_kept) = times.get(nth) else {
            return 0;
        };
        let before = self.samples.len();
        self.samples.retain(|s| s.sample.timestamp >= oldest_kept);
        (before - self.samples.len()) as u64
    }
}

fn document(key: &Key, body: &str) -> Document {
    Document {
        parent: key.1.clone(),
        id: key.2.clone(),
        body: body.to_owned(),
    }
}

fn key(kind: &str, parent: &str, id: &str) -> Key {
    (kind.to_owned(), parent.to_owned(), id.to_owned())
}

impl Memory {
    pub(crate) fn with_busy_timeout(busy_timeout: std::time::Duration) -> Self {
        Self {
            state: Mutex::default(),
            writer: Arc::default(),
            busy_timeout,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock, so a poisoned state is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn revision(&self) -> u64 {
        self.state().revision
    }

    pub(crate) fn changes(&self, since: u64, upto: u64) -> Option<Vec<Change>> {
        let state = self.state();
        if since < state.changes_from {
            return None;
        }
        if upto <= since {
            return Some(Vec::new());
        }
        let mut changes: Vec<Change> = state
            .changes
            .range(since + 1..=upto)
            .flat_map(|(_, touched)| touched.iter().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        changes.sort();
        Some(changes)
    }

    pub(crate) fn get(&self, kind: &str, parent: &str, id: &str) -> Option<String> {
        self.state().documents.get(&key(kind, parent, id)).cloned()
    }

    pub(crate) fn list(&self, kind: &str, parent: &str) -> Vec<Document> {
        let state = self.state();
        state
            .documents(kind, Some(parent))
            .map(|(k, b)| document(k, b))
            .collect()
    }

    pub(crate) fn list_all(&self, kind: &str) -> Vec<Document> {
        let state = self.state();
        state
            .documents(kind, None)
            .map(|(k, b)| document(k, b))
            .collect()
    }

    pub(crate) fn find_by_id(&self, kind: &str, id: &str) -> Vec<Document> {
        let state = self.state();
        state
            .documents(kind, None)
            .filter(|(k, _)| k.2 == id)
            .map(|(k, b)| document(k, b))
            .collect()
    }

    pub(crate) fn put_state(&self, kind: &str, parent: &str, id: &str, body: &str) {
        self.state()
            .documents
            .insert(key(kind, parent, id), body.to_owned());
    }

    /// Starts a write transaction, once the previous one has ended.
    pub(crate) async fn begin(self: &Arc<Self>) -> Result<MemoryTx> {
        let writer = tokio::time::timeout(self.busy_timeout, self.writer.clone().lock_owned())
            .await
            .map_err(|_| StoreError::Busy(self.busy_timeout))?;
        Ok(MemoryTx {
            memory: self.clone(),
            _writer: writer,
            writes: BTreeMap::new(),
        })
    }

    pub(crate) fn ingest_telemetry(
        &self,
        gateway_id: &str,
        batch: &Batch,
        received_at: i64,
        retention: Retention,
    ) -> Ingested {
        let mut rows: BTreeMap<_, Aggregate> = BTreeMap::new();
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
        let mut state = self.state();
        if state.batches.contains_key(&batch.id) {
            return Ingested {
                duplicate: true,
                ..Ingested::default()
            };
        }
        state.batches.insert(
            batch.id.clone(),
            BatchRow {
                gateway_id: gateway_id.to_owned(),
                received_at,
                dropped_batches: batch.dropped_batches,
            },
        );
        for ((minute, api, operation, product, subscription), a) in rows {
            // Only the figures are kept; the key comes from the row's key when read.
            let figures = Aggregate {
                counts: a.counts,
                bandwidth: a.bandwidth,
                api_time: a.api_time,
                service_time: a.service_time,
                ..Aggregate::default()
            };
            let key = (
                minute,
                gateway_id.to_owned(),
                api,
                operation,
                product,
                subscription,
            );
            state
                .minutes
                .entry(key)
                .and_modify(|existing| existing.merge(&figures))
                .or_insert(figures);
        }
        let oldest_sample_ms = retention.oldest_minute.saturating_mul(1000);
        let mut samples = 0;
        for (seq, sample) in batch.samples.iter().enumerate() {
            if sample.timestamp < oldest_sample_ms {
                continue;
            }
            state.samples.push(SampleRow {
                batch_id: batch.id.clone(),
                seq,
                sample: sample.clone(),
            });
            samples += 1;
        }
        if samples > 0 {
            state.prune_samples(retention.samples);
        }
        Ingested {
            duplicate: false,
            aggregates: stored,
            samples,
        }
    }

    pub(crate) fn telemetry_minutes(
        &self,
        from: i64,
        to: i64,
        api_id: Option<&str>,
    ) -> Vec<Aggregate> {
        let state = self.state();
        let mut out: Vec<Aggregate> = state
            .minutes
            .iter()
            .filter(|(k, _)| k.0 >= from && k.0 < to && api_id.is_none_or(|api| k.2 == api))
            .map(
                |((minute, _, api, operation, product, subscription), figures)| Aggregate {
                    minute: *minute,
                    api_id: api.clone(),
                    operation_id: operation.clone(),
                    product_id: (!product.is_empty()).then(|| product.clone()),
                    subscription_id: (!subscription.is_empty()).then(|| subscription.clone()),
                    ..figures.clone()
                },
            )
            .collect();
        out.sort_by(|a, b| {
            (a.minute, &a.api_id, &a.operation_id).cmp(&(b.minute, &b.api_id, &b.operation_id))
        });
        out
    }

    pub(crate) fn telemetry_samples(&self, limit: u32) -> Vec<Sample> {
        let state = self.state();
        let mut rows: Vec<&SampleRow> = state.samples.iter().collect();
        rows.sort_by(|a, b| {
            b.sample
                .timestamp
                .cmp(&a.sample.timestamp)
                .then_with(|| a.batch_id.cmp(&b.batch_id))
                .then_with(|| a.seq.cmp(&b.seq))
        });
        rows.into_iter()
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .map(|r| r.sample.clone())
            .collect()
    }

    pub(crate) fn telemetry_deliveries(&self) -> Vec<(String, u64, u64, i64)> {
        let state = self.state();
        let mut by_gateway: BTreeMap<&str, (u64, u64, i64)> = BTreeMap::new();
        for row in state.batches.values() {
            let entry = by_gateway
                .entry(row.gateway_id.as_str())
                .or_insert((0, 0, i64::MIN));
            entry.0 += 1;
            entry.1 += row.dropped_batches;
            entry.2 = entry.2.max(row.received_at);
        }
        by_gateway
            .into_iter()
            .map(|(gateway, (batches, dropped, last))| (gateway.to_owned(), batches, dropped, last))
            .collect()
    }

    pub(crate) fn prune_telemetry(&self, retention: Retention) -> Pruned {
        let mut state = self.state();
        let before = state.minutes.len();
        state.minutes.retain(|k, _| k.0 >= retention.oldest_minute);
        let minutes = (before - state.minutes.len()) as u64;
        let before = state.batches.len();
        state
            .batches
            .retain(|_, b| b.received_at >= retention.oldest_minute);
        let batches = (before - state.batches.len()) as u64;
        let oldest_ms = retention.oldest_minute.saturating_mul(1000);
        let before = state.samples.len();
        state.samples.retain(|s| s.sample.timestamp >= oldest_ms);
        let mut samples = (before - state.samples.len()) as u64;
        samples += state.prune_samples(retention.samples);
        Pruned {
            minutes,
            batches,
            samples,
        }
    }
}

/// A write transaction in memory: its writes (`None`: deleted), applied on commit.
pub(crate) struct MemoryTx {
    memory: Arc<Memory>,
    _writer: OwnedMutexGuard<()>,
    writes: BTreeMap<Key, Option<String>>,
}

impl MemoryTx {
    pub(crate) fn get(&self, kind: &str, parent: &str, id: &str) -> Option<String> {
        let key = key(kind, parent, id);
        match self.writes.get(&key) {
            Some(written) => written.clone(),
            None => self.memory.state().documents.get(&key).cloned(),
        }
    }

    /// The documents of `kind` (under `parent`, if given) as this transaction sees them, in
    /// `(parent, id)` order.
    fn view(&self, kind: &str, parent: Option<&str>) -> BTreeMap<(String, String), String> {
        let mut view: BTreeMap<(String, String), String> = self
            .memory
            .state()
            .documents(kind, parent)
            .map(|(k, b)| ((k.1.clone(), k.2.clone()), b.clone()))
            .collect();
        let start = (
            kind.to_owned(),
            parent.unwrap_or("").to_owned(),
            String::new(),
        );
        let written = self
            .writes
            .range(start..)
            .take_while(|(k, _)| k.0 == kind && parent.is_none_or(|p| k.1 == p));
        for (k, body) in written {
            let at = (k.1.clone(), k.2.clone());
            match body {
                Some(body) => view.insert(at, body.clone()),
                None => view.remove(&at),
            };
        }
        view
    }

    pub(crate) fn upsert(&mut self, kind: &str, parent: &str, id: &str, body: &str) {
        self.writes
            .insert(key(kind, parent, id), Some(body.to_owned()));
    }

    pub(crate) fn create(&mut self, kind: &str, parent: &str, id: &str, body: &str) -> bool {
        if self.get(kind, parent, id).is_some() {
            return false;
        }
        self.upsert(kind, parent, id, body);
        true
    }

    pub(crate) fn delete(&mut self, kind: &str, parent: &str, id: &str) -> bool {
        let existed = self.get(kind, parent, id).is_some();
        if existed {
            self.writes.insert(key(kind, parent, id), None);
        }
        existed
    }

    pub(crate) fn list(&self, kind: &str, parent: &str) -> Vec<Document> {
        self.view(kind, Some(parent))
            .into_iter()
            .map(|((parent, id), body)| Document { parent, id, body })
            .collect()
    }

    pub(crate) fn list_all(&self, kind: &str) -> Vec<Document> {
        self.view(kind, None)
            .into_iter()
            .map(|((parent, id), body)| Document { parent, id, body })
            .collect()
    }

    /// Deletes every document of `kind` under `parent`; returns their ids.
    pub(crate) fn delete_children(&mut self, kind: &str, parent: &str) -> Vec<String> {
        let ids: Vec<String> = self
            .view(kind, Some(parent))
            .into_keys()
            .map(|(_, id)| id)
            .collect();
        for id in &ids {
            self.writes.insert(key(kind, parent, id), None);
        }
        ids
    }

    /// Deletes every document of `kind` with this id; returns their parents.
    pub(crate) fn delete_by_id(&mut self, kind: &str, id: &str) -> Vec<String> {
        let parents: Vec<String> = self
            .view(kind, None)
            .into_keys()
            .filter(|(_, i)| i == id)
            .map(|(parent, _)| parent)
            .collect();
        for parent in &parents {
            self.writes.insert(key(kind, parent, id), None);
        }
        parents
    }

    /// Applies the writes, bumping the revision if `touched` is not empty and logging it.
    /// Returns the revision now current.
    pub(crate) fn commit(self, touched: &BTreeSet<(String, String, String)>) -> u64 {
        let mut state = self.memory.state();
        for (key, body) in self.writes {
            match body {
                Some(body) => state.documents.insert(key, body),
                None => state.documents.remove(&key),
            };
        }
        if touched.is_empty() {
            return state.revision;
        }
        state.revision += 1;
        let revision = state.revision;
        let logged = touched
            .iter()
            .map(|(kind, parent, id)| Change {
                kind: kind.clone(),
                parent: parent.clone(),
                id: id.clone(),
            })
            .collect();
        state.changes.insert(revision, logged);
        if revision.is_multiple_of(1000) && revision > CHANGE_LOG_REVISIONS {
            let oldest = revision - CHANGE_LOG_REVISIONS;
            state.changes = state.changes.split_off(&(oldest + 1));
            state.changes_from = state.changes_from.max(oldest);
        }
        revision
    }
}
