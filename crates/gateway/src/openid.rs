//! OpenID Connect signing keys for `validate-jwt`'s `<openid-config url="…"/>`: the discovery
//! document names the JWKS (`jwks_uri`) and the issuer; both are fetched on first use, cached per
//! URL for the whole gateway process (all workers, across configuration swaps) and refreshed
//! the way Azure describes: every hour, and, when a token names a key the cached set lacks, again
//! — but never more than once per five minutes, so tokens with made-up key ids cannot make the
//! gateway hammer the identity provider. A failed refresh keeps serving the keys it has; a
//! provider never reached is retried after a few seconds. Fetches of one URL are serialised, so
//! a burst of requests on a cold cache makes one fetch.
//!
//! This is a control-path client (reqwest, with its own connections), not the upstream pool.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gatehouse_policy::policies::OpenIdKeys;

/// How long fetched keys are used before they are fetched again.
pub const REFRESH: Duration = Duration::from_secs(3600);
/// The least time between two fetches of one provider once it has answered.
pub const MIN_REFETCH: Duration = Duration::from_secs(300);
/// The least time between two attempts at a provider that has never answered.
pub const RETRY_UNREACHED: Duration = Duration::from_secs(10);
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest discovery document or JWKS read.
const MAX_DOCUMENT: usize = 1024 * 1024;

/// The intervals above, adjustable for tests.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    pub refresh: Duration,
    pub min_refetch: Duration,
    pub retry_unreached: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            refresh: REFRESH,
            min_refetch: MIN_REFETCH,
            retry_unreached: RETRY_UNREACHED,
        }
    }
}

#[derive(Default)]
struct State {
    keys: Option<Arc<OpenIdKeys>>,
    fetched: Option<Instant>,
    attempted: Option<Instant>,
}

#[derive(Default)]
struct Slot {
    state: Mutex<State>,
    /// Held while one task fetches this provider.
    fetching: tokio::sync::Mutex<()>,
}

/// The providers' keys, shared by the gateway's workers.
pub struct OpenIdKeyCache {
    client: reqwest::Client,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    timings: Timings,
}

impl std::fmt::Debug for OpenIdKeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenIdKeyCache")
            .field("timings", &self.timings)
            .finish_non_exhaustive()
    }
}

impl Default for OpenIdKeyCache {
    fn default() -> Self {
        Self::with_timings(Timings::default())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl OpenIdKeyCache {
    /// Fetches keys trusting `tls` (the gateway's outbound trust) rather than the OS alone.
    pub fn trusting(mut self, tls: gatehouse_tls::rustls::ClientConfig) -> Self {
        if let Ok(client) = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .pool_max_idle_per_host(0)
            .tls_backend_preconfigured(tls)
            .build()
        {
            self.client = client;
        }
        self
    }

    pub fn with_timings(timings: Timings) -> Self {
        // Workers run their own runtimes: keep no idle connections that would belong to one.
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .pool_max_idle_per_host(0)
            .build()
            .unwrap_or_default();
        Self {
            client,
            slots: Mutex::new(HashMap::new()),
            timings,
        }
    }

    fn due(&self, s: &State, refresh: bool, now: Instant) -> bool {
        let since = |t: Option<Instant>| t.map(|t| now.saturating_duration_since(t));
        match (&s.keys, since(s.fetched)) {
            (Some(_), Some(age)) => {
                (refresh || age >= self.timings.refresh)
                    && since(s.attempted).is_none_or(|a| a >= self.timings.min_refetch)
            }
            _ => since(s.attempted).is_none_or(|a| a >= self.timings.retry_unreached),
        }
    }

    /// The keys of the provider whose discovery document is at `url`; `refresh` when a token
    /// names a key they lack. The error says why no keys are available, without secrets.
    pub async fn keys(&self, url: &str, refresh: bool) -> Result<Arc<OpenIdKeys>, String> {
        let known = lock(&self.slots).get(url).cloned();
        let slot = match known {
            Some(s) => s,
            None => lock(&self.slots).entry(url.to_owned()).or_default().clone(),
        };
        let cached = |slot: &Slot| -> Option<Result<Arc<OpenIdKeys>, String>> {
            let s = lock(&slot.state);
            if self.due(&s, refresh, Instant::now()) {
                return None;
            }
            Some(s.keys.clone().ok_or_else(|| {
                format!("the OpenID configuration {url} could not be fetched recently")
            }))
        };
        // The fast path: fresh keys. Anything else waits for a fetch in flight, if any.
        if let Some(Ok(keys)) = cached(&slot) {
            return Ok(keys);
        }
        let _fetching = slot.fetching.lock().await;
        // Another task may have fetched while this one waited.
        if let Some(r) = cached(&slot) {
            return r;
        }
        lock(&slot.state).attempted = Some(Instant::now());
        let fetched = self.fetch(url).await;
        let mut s = lock(&slot.state);
        match fetched {
            Ok(keys) => {
                tracing::info!(url, keys = keys.keys().len(), "fetched OpenID signing keys");
                let keys = Arc::new(keys);
                s.keys = Some(keys.clone());
                s.fetched = Some(Instant::now());
                Ok(keys)
            }
            Err(e) => {
                tracing::warn!(url, error = %e, "cannot fetch OpenID signing keys");
                s.keys.clone().ok_or(e)
            }
        }
    }

    async fn fetch(&self, url: &str) -> Result<OpenIdKeys, String> {
        let discovery = self.get(url).await?;
        let d = OpenIdKeys::discovery(&discovery).map_err(|e| format!("{url}: {e}"))?;
        let jwks = self.get(&d.jwks_uri).await?;
        OpenIdKeys::from_jwks(d.issuer, &jwks).map_err(|e| format!("{}: {e}", d.jwks_uri))
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        let mut resp = self
            .client
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("{url} answered {}", resp.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| format!("{url}: {e}"))? {
            if body.len() + chunk.len() > MAX_DOCUMENT {
                return Err(format!(
                    "{url}: the document is larger than {MAX_DOCUMENT} bytes"
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests;
