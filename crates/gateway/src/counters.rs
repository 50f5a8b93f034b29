//! Rate-limit and quota counters kept in the gateway process, shared by its workers.
//!
//! Counters are sharded by key hash, each shard a short critical section with no `.await`
//! inside, so workers rarely contend and the count stays exact under concurrency: 1,000
//! concurrent calls against a limit of 100 admit exactly 100. Windows are fixed and start with
//! the first call. Redis-backed counters for several gateways will implement the same calls.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gatehouse_policy::Decision;

const SHARDS: usize = 64;
/// Expired windows are swept from a shard when it grows past this.
const SWEEP_AT: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Window {
    ends: Instant,
    used: u64,
}

#[derive(Debug)]
pub struct LocalCounters {
    shards: Vec<Mutex<HashMap<String, Window>>>,
    hasher: std::collections::hash_map::RandomState,
    /// The `limit-concurrency` slots.
    pub slots: Arc<Slots>,
}

impl Default for LocalCounters {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
            slots: Arc::default(),
        }
    }
}

/// Requests inside `limit-concurrency` per key, across the workers of this process. Sharded
/// like the counters; a key's entry goes when its last slot is given back.
#[derive(Debug)]
pub struct Slots {
    shards: Vec<Mutex<HashMap<String, u64>>>,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for Slots {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }
}

/// A taken slot; dropping it gives it back (also when the request fails or is cancelled).
#[derive(Debug)]
pub struct SlotGuard {
    slots: Arc<Slots>,
    key: String,
    shard: usize,
}

impl Slots {
    fn shard(&self, key: &str) -> usize {
        (self.hasher.hash_one(key) as usize) % SHARDS
    }

    fn lock(&self, shard: usize) -> Option<std::sync::MutexGuard<'_, HashMap<String, u64>>> {
        let lock = self.shards.get(shard)?;
        Some(match lock.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        })
    }

    /// Takes one of `max` slots of `key`, or `None` when all are in use.
    pub fn try_take(self: &Arc<Self>, key: &str, max: u64) -> Option<SlotGuard> {
        let shard = self.shard(key);
        let mut map = self.lock(shard)?;
        let used = map.entry(key.to_owned()).or_insert(0);
        if *used >= max {
            return None;
        }
        *used += 1;
        Some(SlotGuard {
            slots: Arc::clone(self),
            key: key.to_owned(),
            shard,
        })
    }

    /// Slots of `key` in use now.
    pub fn in_use(&self, key: &str) -> u64 {
        self.lock(self.shard(key))
            .and_then(|m| m.get(key).copied())
            .unwrap_or(0)
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        if let Some(mut map) = self.slots.lock(self.shard)
            && let Some(used) = map.get_mut(&self.key)
        {
            *used = used.saturating_sub(1);
            if *used == 0 {
                map.remove(&self.key);
            }
        }
    }
}

impl LocalCounters {
    /// Counts `increment` calls against `key`; allows them if the window has room for them.
    pub fn count(&self, key: &str, calls: u64, period: Duration, increment: u64) -> Decision {
        let now = Instant::now();
        let shard = (self.hasher.hash_one(key) as usize) % SHARDS;
        let Some(lock) = self.shards.get(shard) else {
            return Decision {
                allowed: true,
                remaining: calls,
                retry_after: period,
            };
        };
        let mut map = match lock.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        if map.len() > SWEEP_AT {
            map.retain(|_, w| w.ends > now);
        }
        let window = match map.get_mut(key) {
            Some(w) if w.ends > now => w,
            _ => {
                map.insert(
                    key.to_owned(),
                    Window {
                        ends: now + period,
                        used: 0,
                    },
                );
                match map.get_mut(key) {
                    Some(w) => w,
                    None => {
                        return Decision {
                            allowed: true,
                            remaining: calls,
                            retry_after: period,
                        };
                    }
                }
            }
        };
        let retry_after = window.ends.saturating_duration_since(now);
        if window.used.saturating_add(increment) > calls {
            return Decision {
                allowed: false,
                remaining: calls.saturating_sub(window.used),
                retry_after,
            };
        }
        window.used += increment;
        Decision {
            allowed: true,
            remaining: calls - window.used,
            retry_after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn exact_under_concurrency() {
        let counters = Arc::new(LocalCounters::default());
        let admitted = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (c, a) = (counters.clone(), admitted.clone());
                std::thread::spawn(move || {
                    for _ in 0..125 {
                        if c.count("k", 100, Duration::from_secs(60), 1).allowed {
                            a.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(admitted.load(Ordering::Relaxed), 100);
    }

    #[test]
    fn windows_renew() {
        let c = LocalCounters::default();
        assert!(c.count("w", 1, Duration::from_millis(30), 1).allowed);
        let refused = c.count("w", 1, Duration::from_millis(30), 1);
        assert!(!refused.allowed);
        assert!(refused.retry_after <= Duration::from_millis(30));
        std::thread::sleep(Duration::from_millis(40));
        assert!(c.count("w", 1, Duration::from_millis(30), 1).allowed);
    }

    #[test]
    fn slots_are_exact_across_threads_and_come_back() {
        let slots = Arc::new(Slots::default());
        let most = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (s, m) = (slots.clone(), most.clone());
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        if let Some(guard) = s.try_take("k", 3) {
                            m.fetch_max(s.in_use("k"), Ordering::SeqCst);
                            drop(guard);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(most.load(Ordering::SeqCst) <= 3);
        assert_eq!(slots.in_use("k"), 0);
        let a = slots.try_take("k", 1).unwrap();
        assert!(slots.try_take("k", 1).is_none());
        assert!(slots.try_take("other", 1).is_some());
        drop(a);
        assert!(slots.try_take("k", 1).is_some());
    }
}
