//! Pools (`/mgmt/backends` of `type: Pool`), compiled once per configuration into tiers of
//! members, lowest priority first, each member the compiled single backend it names (its own
//! URL, credentials, TLS and circuit breaker).
//!
//! A request goes to the first tier that has a member whose breaker is closed, and within it
//! to one of those members at random, in proportion to their weights (members of weight 0 only
//! when no other is left in the tier). When every member's breaker is open, nothing is sent.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use gatehouse_model::snapshot::SnapshotPoolMember;

use super::CompiledBackend;

/// One pool of a configuration.
#[derive(Debug)]
pub struct CompiledPool {
    pub id: Arc<str>,
    /// By priority, lowest first.
    tiers: Box<[Tier]>,
}

#[derive(Debug)]
struct Tier {
    priority: u32,
    members: Box<[(Arc<CompiledBackend>, u64)]>,
}

/// Every member's breaker is open (or the pool has no member this gateway can use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoMember {
    /// Milliseconds until the first breaker closes; `None` when the pool has no member.
    pub retry_after_ms: Option<u64>,
}

impl CompiledPool {
    /// The pool `id` of `members` (ordered by priority), each found among `singles`. A member
    /// the configuration does not hold as a single backend is left out, and logged: the
    /// management API refuses such pools, so only a store written some other way has one.
    pub fn compile(
        id: &Arc<str>,
        members: &[SnapshotPoolMember],
        singles: &HashMap<Arc<str>, Arc<CompiledBackend>>,
    ) -> Self {
        let mut tiers: BTreeMap<u32, Vec<(Arc<CompiledBackend>, u64)>> = BTreeMap::new();
        for m in members {
            let Some(backend) = singles.get(m.id.as_str()) else {
                tracing::error!(
                    pool = %id,
                    member = %m.id,
                    "a pool member is not a single backend of the configuration; the pool goes without it"
                );
                continue;
            };
            tiers
                .entry(m.priority)
                .or_default()
                .push((backend.clone(), u64::from(m.weight)));
        }
        Self {
            id: id.clone(),
            tiers: tiers
                .into_iter()
                .map(|(priority, members)| Tier {
                    priority,
                    members: members.into_boxed_slice(),
                })
                .collect(),
        }
    }

    /// The member a request goes to at `now` (on [`crate::breaker::now_ms`]'s clock), with
    /// `random` the draw that picks among the members of a tier.
    pub fn pick(&self, now: u64, random: u64) -> Result<&Arc<CompiledBackend>, NoMember> {
        let available = |b: &CompiledBackend| b.breaker.as_ref().is_none_or(|k| !k.is_open(now));
        for tier in &self.tiers {
            let (mut count, mut weight) = (0u64, 0u64);
            for (b, w) in &tier.members {
                if available(b) {
                    count += 1;
                    weight += w;
                }
            }
            if count == 0 {
                continue;
            }
            // By weight; when only members of weight 0 are left, one of them alike.
            let (mut draw, by_weight) = if weight > 0 {
                (random % weight, true)
            } else {
                (random % count, false)
            };
            for (b, w) in &tier.members {
                if !available(b) {
                    continue;
                }
                let share = if by_weight { *w } else { 1 };
                if draw < share {
                    return Ok(b);
                }
                draw -= share;
            }
        }
        let retry_after_ms = self
            .tiers
            .iter()
            .flat_map(|t| &t.members)
            .filter_map(|(b, _)| b.breaker.as_ref().map(|k| k.remaining(now)))
            .min();
        Err(NoMember { retry_after_ms })
    }

    /// The members, by priority: (backend id, priority, weight).
    pub fn members(&self) -> impl Iterator<Item = (&Arc<str>, u32, u64)> {
        self.tiers
            .iter()
            .flat_map(|t| t.members.iter().map(move |(b, w)| (&b.id, t.priority, *w)))
    }
}

/// A random number from this thread's generator (xorshift64*, seeded once per thread from
/// the system's generator): cheap enough for every request, and no lock.
pub fn random() -> u64 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let mut bytes = [0u8; 8];
            let _ = aws_lc_rs::rand::fill(&mut bytes);
            // Never 0, where xorshift would stay.
            u64::from_le_bytes(bytes) | 1
        });
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}
