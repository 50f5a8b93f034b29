//! One feed per gateway: its compiled snapshot kept up to date revision by revision, the
//! deltas of the last few revisions, and the whole snapshot's JSON, encoded only when a
//! gateway needs it whole (its first fetch, or one too far behind for the deltas).
//!
//! A change is compiled once, incrementally, whichever replica of the gateway asks first; the
//! others get the same result.

use std::collections::VecDeque;
use std::time::Instant;

use axum::body::Bytes;
use gatehouse_model::snapshot::{Delta, Snapshot};
use gatehouse_store::Store;

use crate::compile::Compiled;
use crate::secrets::Sealer;
use crate::service::ServiceError;

/// Deltas remembered per gateway, for replicas a few revisions behind.
const STEPS: usize = 16;

/// A change log longer than this is compiled in full: quicker than so many small reads.
const MAX_CHANGES: usize = 20_000;

/// What to send a gateway that has `known`.
#[derive(Debug)]
pub enum Answer {
    /// It has the newest revision.
    Unchanged,
    /// The changes from its revision, as JSON.
    Delta { revision: u64, body: Bytes },
    /// The whole snapshot, as JSON.
    Whole { revision: u64, body: Bytes },
}

/// What a gateway in the same process (the built-in one) needs to catch up.
#[derive(Debug)]
pub enum Update {
    Unchanged,
    /// The changes from its revision.
    Delta(Delta),
    Whole(Snapshot),
}

#[derive(Default)]
pub(crate) struct Feed {
    compiled: Option<Compiled>,
    /// Consecutive deltas, oldest first; the last one ends at the compiled revision.
    steps: VecDeque<Delta>,
    /// The whole snapshot's JSON, for the revision it names.
    whole: Option<(u64, Bytes)>,
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Bytes, ServiceError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| ServiceError::Internal(format!("cannot encode a snapshot: {e}")))
}

impl Feed {
    /// Brings the compiled snapshot to the store's revision.
    async fn refresh(
        &mut self,
        store: &Store,
        sealer: &Sealer,
        gateway_id: &str,
    ) -> Result<&Compiled, ServiceError> {
        let upto = store.revision().await?;
        let started = Instant::now();
        let mut compiled = match self.compiled.take() {
            Some(c) if c.revision >= upto => {
                return Ok(self.compiled.insert(c));
            }
            Some(c) => c,
            None => {
                let fresh = Compiled::full(store, sealer, gateway_id).await?;
                tracing::info!(
                    gateway = gateway_id,
                    revision = fresh.revision,
                    ms = started.elapsed().as_millis() as u64,
                    "compiled the snapshot in full"
                );
                self.steps.clear();
                return Ok(self.compiled.insert(fresh));
            }
        };
        let changes = store
            .changes(compiled.revision, upto)
            .await?
            .filter(|c| c.len() <= MAX_CHANGES);
        let step = match changes {
            Some(changes) => compiled.update(store, sealer, &changes, upto).await?,
            None => None,
        };
        let step = match step {
            Some(step) => {
                tracing::info!(
                    gateway = gateway_id,
                    revision = upto,
                    changes = step.len(),
                    ms = started.elapsed().as_millis() as u64,
                    "compiled the snapshot incrementally"
                );
                step
            }
            None => {
                let fresh = Compiled::full(store, sealer, gateway_id).await?;
                let step = fresh.diff(&compiled);
                tracing::info!(
                    gateway = gateway_id,
                    revision = fresh.revision,
                    changes = step.len(),
                    ms = started.elapsed().as_millis() as u64,
                    "compiled the snapshot in full"
                );
                compiled = fresh;
                step
            }
        };
        self.steps.push_back(step);
        self.whole = None;
        while self.steps.len() > STEPS {
            self.steps.pop_front();
        }
        Ok(self.compiled.insert(compiled))
    }

    /// The changes from `known` to the compiled revision, if the remembered steps reach back.
    fn delta_from(&self, known: u64) -> Option<Delta> {
        let start = self.steps.iter().position(|d| d.base == known)?;
        let mut steps = self.steps.iter().skip(start).cloned();
        let first = steps.next()?;
        steps.try_fold(first, |acc, next| acc.then(next).ok())
    }

    /// [`Feed::refresh`], forgetting a half-updated snapshot on error. Returns the revision.
    async fn refreshed(
        &mut self,
        store: &Store,
        sealer: &Sealer,
        gateway_id: &str,
    ) -> Result<u64, ServiceError> {
        match self.refresh(store, sealer, gateway_id).await {
            Ok(c) => Ok(c.revision),
            Err(e) => {
                self.compiled = None;
                self.steps.clear();
                Err(e)
            }
        }
    }

    /// What a gateway in this process that has `known` needs, as values rather than JSON.
    pub async fn update(
        &mut self,
        store: &Store,
        sealer: &Sealer,
        gateway_id: &str,
        known: Option<u64>,
    ) -> Result<Update, ServiceError> {
        let revision = self.refreshed(store, sealer, gateway_id).await?;
        if known == Some(revision) {
            return Ok(Update::Unchanged);
        }
        if let Some(d) = known.and_then(|k| self.delta_from(k)) {
            return Ok(Update::Delta(d));
        }
        match &self.compiled {
            Some(c) => Ok(Update::Whole(c.snapshot())),
            None => Err(ServiceError::Internal("no compiled snapshot".into())),
        }
    }

    /// What to send a gateway that has `known` (`delta`: it accepts deltas).
    pub async fn answer(
        &mut self,
        store: &Store,
        sealer: &Sealer,
        gateway_id: &str,
        known: Option<u64>,
        delta: bool,
    ) -> Result<Answer, ServiceError> {
        let revision = self.refreshed(store, sealer, gateway_id).await?;
        if known == Some(revision) {
            return Ok(Answer::Unchanged);
        }
        if delta && let Some(d) = known.and_then(|k| self.delta_from(k)) {
            return Ok(Answer::Delta {
                revision,
                body: encode(&d)?,
            });
        }
        if let Some((r, body)) = &self.whole
            && *r == revision
        {
            return Ok(Answer::Whole {
                revision,
                body: body.clone(),
            });
        }
        let Some(compiled) = &self.compiled else {
            return Err(ServiceError::Internal("no compiled snapshot".into()));
        };
        let started = Instant::now();
        let body = encode(&compiled.snapshot())?;
        tracing::debug!(
            gateway = gateway_id,
            revision,
            bytes = body.len(),
            ms = started.elapsed().as_millis() as u64,
            "encoded the whole snapshot"
        );
        self.whole = Some((revision, body.clone()));
        Ok(Answer::Whole { revision, body })
    }
}
