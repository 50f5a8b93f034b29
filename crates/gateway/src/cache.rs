//! The gateway's own cache for `cache-lookup` / `cache-store` (responses) and
//! `cache-lookup-value` / `cache-store-value` / `cache-remove-value` (values): one per gateway
//! process, shared by its workers, bounded in bytes, kept across configuration swaps (it is
//! created with the listeners, not with a configuration), lost on restart. Each entry lives for
//! the duration its policy gave it, or less when the cache needs room.

use std::time::{Duration, Instant};

use gatehouse_policy::policies::CacheEntry;

/// The bytes the cache may hold by default.
pub const DEFAULT_CAPACITY_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Clone)]
struct Stored {
    entry: CacheEntry,
    ttl: Duration,
}

struct PerEntry;

impl moka::Expiry<String, Stored> for PerEntry {
    fn expire_after_create(&self, _key: &String, value: &Stored, _at: Instant) -> Option<Duration> {
        Some(value.ttl)
    }

    fn expire_after_update(
        &self,
        _key: &String,
        value: &Stored,
        _at: Instant,
        _left: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

pub struct GatewayCache {
    entries: moka::future::Cache<String, Stored>,
}

impl std::fmt::Debug for GatewayCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayCache")
            .field("entries", &self.entries.entry_count())
            .field("bytes", &self.entries.weighted_size())
            .finish()
    }
}

impl Default for GatewayCache {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY_BYTES)
    }
}

impl GatewayCache {
    /// A cache holding at most about `bytes` of keys and entries.
    pub fn with_capacity(bytes: u64) -> Self {
        Self {
            entries: moka::future::Cache::builder()
                .max_capacity(bytes)
                .weigher(|key: &String, value: &Stored| {
                    u32::try_from(key.len() + value.entry.weight()).unwrap_or(u32::MAX)
                })
                .expire_after(PerEntry)
                .build(),
        }
    }

    pub async fn get(&self, key: &str) -> Option<CacheEntry> {
        self.entries.get(key).await.map(|s| s.entry)
    }

    pub async fn put(&self, key: &str, entry: CacheEntry, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        self.entries
            .insert(key.to_owned(), Stored { entry, ttl })
            .await;
    }

    pub async fn remove(&self, key: &str) {
        self.entries.invalidate(key).await;
    }

    /// Bytes held now (after pending maintenance).
    pub async fn weighted_size(&self) -> u64 {
        self.entries.run_pending_tasks().await;
        self.entries.weighted_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_policy::expr::Value;

    fn value(s: &str) -> CacheEntry {
        CacheEntry::Value(Value::String(s.into()))
    }

    fn text(e: Option<CacheEntry>) -> Option<String> {
        match e? {
            CacheEntry::Value(v) => Some(v.to_policy_string()),
            CacheEntry::Response(_) => None,
        }
    }

    #[tokio::test]
    async fn stores_reads_removes_and_expires() {
        let c = GatewayCache::default();
        c.put("a", value("1"), Duration::from_secs(60)).await;
        c.put("short", value("2"), Duration::from_millis(50)).await;
        assert_eq!(text(c.get("a").await).as_deref(), Some("1"));
        assert_eq!(text(c.get("short").await).as_deref(), Some("2"));
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(text(c.get("short").await), None, "expired");
        c.remove("a").await;
        assert_eq!(text(c.get("a").await), None);
        c.put("zero", value("3"), Duration::ZERO).await;
        assert_eq!(text(c.get("zero").await), None);
    }

    #[tokio::test]
    async fn stays_within_its_byte_bound() {
        let c = GatewayCache::with_capacity(64 * 1024);
        let big = "x".repeat(4 * 1024);
        for i in 0..100 {
            c.put(&format!("k{i}"), value(&big), Duration::from_secs(60))
                .await;
        }
        let size = c.weighted_size().await;
        assert!(size <= 64 * 1024, "{size} bytes held");
        assert!(
            size > 32 * 1024,
            "{size} bytes held: the cache should still be used"
        );
    }
}
