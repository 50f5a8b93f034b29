//! The batched counters of `--redis` (docs/redis.md): counters of `--redis-batch-from` calls or
//! more are counted in the gateway process and settled with Redis in the background, so that no
//! gateway process ever holds more than two batches (`calls / 1000` each) unsettled. This is the
//! bookkeeping only; [`super::RedisLink`] sends and schedules.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use gatehouse_policy::Decision;

use super::{BATCH_SHARE, SETTLE_EVERY, SHARDS, lock};

/// Batched counters of ended windows are swept from a shard when it grows past this.
const SWEEP_AT: usize = 4096;

/// The batched counters of this gateway process, shared by its workers: per key, what Redis
/// last said of the window and the calls admitted here since.
pub(super) struct Batches {
    shards: [Mutex<HashMap<String, Batch>>; SHARDS],
    hasher: std::collections::hash_map::RandomState,
}

impl Default for Batches {
    fn default() -> Self {
        Self {
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Batch {
    calls: u64,
    /// The window's calls in Redis, as of the last answer.
    used: u64,
    ends: Instant,
    /// Admitted here, not yet sent.
    pending: u64,
    /// Sent, not yet answered.
    in_flight: u64,
    /// A settlement is scheduled or running.
    scheduled: bool,
}

/// What a batched count decided without Redis, or that it must ask Redis.
pub(super) enum Admit {
    /// Decided here; settle after the duration when `Some`.
    Decided(Decision, Option<Duration>),
    Ask,
}

/// Calls being settled.
#[derive(Debug, Clone, Copy)]
pub(super) struct Take {
    pub(super) amount: u64,
    pub(super) calls: u64,
    pub(super) left: Duration,
}

impl Batches {
    fn shard(&self, key: &str) -> MutexGuard<'_, HashMap<String, Batch>> {
        lock(&self.shards[(self.hasher.hash_one(key) as usize) % SHARDS])
    }

    fn step(calls: u64) -> u64 {
        (calls / BATCH_SHARE).max(1)
    }

    pub(super) fn admit(&self, key: &str, calls: u64, increment: u64, now: Instant) -> Admit {
        let mut map = self.shard(key);
        let Some(b) = map.get_mut(key) else {
            return Admit::Ask;
        };
        if b.ends <= now || b.calls != calls {
            // A new window (or a changed limit): Redis says where it stands. Calls of the
            // ended window that were not settled no longer matter.
            map.remove(key);
            return Admit::Ask;
        }
        let step = Self::step(calls);
        let seen = b.used + b.in_flight + b.pending;
        let retry_after = b.ends - now;
        if seen.saturating_add(increment) > calls {
            return Admit::Decided(
                Decision {
                    allowed: false,
                    remaining: calls.saturating_sub(seen),
                    retry_after,
                },
                None,
            );
        }
        if b.pending + increment > step {
            // A full batch is still on its way: this call goes to Redis itself, so no gateway
            // ever holds more than two batches unsettled.
            return Admit::Ask;
        }
        b.pending += increment;
        let settle = if b.scheduled {
            None
        } else if b.pending >= step {
            b.scheduled = true;
            Some(Duration::ZERO)
        } else {
            b.scheduled = true;
            Some(SETTLE_EVERY)
        };
        Admit::Decided(
            Decision {
                allowed: true,
                remaining: calls.saturating_sub(seen + increment),
                retry_after,
            },
            settle,
        )
    }

    /// Records what Redis answered to a call sent directly.
    pub(super) fn learn(&self, key: &str, calls: u64, used: u64, left: Duration, now: Instant) {
        let mut map = self.shard(key);
        let ends = now + left;
        match map.get_mut(key) {
            Some(b) if b.calls == calls && b.ends > now => {
                // The batch on its way may or may not be in Redis' answer yet; it is counted
                // here as in flight either way, so it is taken out of the answer.
                b.used = b.used.max(used.saturating_sub(b.in_flight));
                b.ends = ends;
            }
            _ => {
                if map.len() > SWEEP_AT {
                    map.retain(|_, b| b.ends > now);
                }
                map.insert(
                    key.to_owned(),
                    Batch {
                        calls,
                        used,
                        ends,
                        pending: 0,
                        in_flight: 0,
                        scheduled: false,
                    },
                );
            }
        }
    }

    pub(super) fn take(&self, key: &str, now: Instant) -> Option<Take> {
        let mut map = self.shard(key);
        let b = map.get_mut(key)?;
        if b.ends <= now || b.pending == 0 {
            b.scheduled = false;
            return None;
        }
        let amount = std::mem::take(&mut b.pending);
        b.in_flight = amount;
        Some(Take {
            amount,
            calls: b.calls,
            left: b.ends - now,
        })
    }

    /// Records a settlement's answer (`None`: it failed, and the calls wait for the next);
    /// says when to settle again, if calls are waiting.
    pub(super) fn settled(
        &self,
        key: &str,
        take: Take,
        answer: Option<(u64, Duration)>,
        now: Instant,
    ) -> Option<Duration> {
        let mut map = self.shard(key);
        let b = map.get_mut(key)?;
        b.in_flight = 0;
        match answer {
            Some((used, left)) => {
                b.used = used;
                b.ends = now + left;
            }
            None => b.pending += take.amount,
        }
        if b.pending == 0 {
            b.scheduled = false;
            return None;
        }
        Some(if b.pending >= Self::step(b.calls) && answer.is_some() {
            Duration::ZERO
        } else {
            SETTLE_EVERY
        })
    }
}
