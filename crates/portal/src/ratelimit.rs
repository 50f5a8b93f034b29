//! Sign-in throttling against password guessing: failed attempts are counted per account
//! (the email) and per client address within a window; once either reaches its limit, sign-in
//! answers 429 with `Retry-After` until the oldest failure leaves the window, even with the
//! right password. A success clears the account's count. Kept in memory: a restart forgets.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Failures per account within `window`.
    pub per_account: usize,
    /// Failures per client address within `window` (higher: many users may share a proxy).
    pub per_ip: usize,
    pub window: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            per_account: 5,
            per_ip: 20,
            window: Duration::from_secs(15 * 60),
        }
    }
}

/// Most keys tracked; beyond it, keys without a recent failure are dropped first.
const MAX_KEYS: usize = 100_000;

#[derive(Debug, Default)]
pub struct Limiter {
    limits: Limits,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

fn account_key(email: &str) -> String {
    format!("account:{}", email.trim().to_lowercase())
}

fn ip_key(ip: &str) -> String {
    format!("ip:{ip}")
}

impl Limiter {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            failures: Mutex::default(),
        }
    }

    /// `Err(wait)` while the account or the address is locked out.
    pub fn check(&self, email: &str, ip: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let Ok(mut map) = self.failures.lock() else {
            return Ok(());
        };
        let mut wait = Duration::ZERO;
        for (key, limit) in [
            (account_key(email), self.limits.per_account),
            (ip_key(ip), self.limits.per_ip),
        ] {
            if let Some(times) = map.get_mut(&key) {
                while times
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= self.limits.window)
                {
                    times.pop_front();
                }
                if times.len() >= limit
                    && let Some(oldest) = times.front()
                {
                    wait = wait.max(
                        self.limits
                            .window
                            .saturating_sub(now.duration_since(*oldest)),
                    );
                }
            }
        }
        if wait.is_zero() { Ok(()) } else { Err(wait) }
    }

    pub fn failed(&self, email: &str, ip: &str) {
        let now = Instant::now();
        let Ok(mut map) = self.failures.lock() else {
            return;
        };
        if map.len() >= MAX_KEYS {
            let window = self.limits.window;
            map.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < window)
            });
        }
        for key in [account_key(email), ip_key(ip)] {
            let times = map.entry(key).or_default();
            times.push_back(now);
            // Only the newest `limit` failures matter.
            while times.len() > self.limits.per_account.max(self.limits.per_ip) {
                times.pop_front();
            }
        }
    }

    pub fn succeeded(&self, email: &str) {
        if let Ok(mut map) = self.failures.lock() {
            map.remove(&account_key(email));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_per_account_and_per_address() {
        let limiter = Limiter::new(Limits {
            per_account: 3,
            per_ip: 5,
            window: Duration::from_secs(60),
        });
        for _ in 0..3 {
            assert!(limiter.check("a@x.example", "10.0.0.1").is_ok());
            limiter.failed("A@x.example", "10.0.0.1");
        }
        let wait = limiter.check("a@x.example", "10.0.0.2").unwrap_err();
        assert!(wait > Duration::from_secs(50));
        assert!(limiter.check("b@x.example", "10.0.0.1").is_ok());
        limiter.failed("b@x.example", "10.0.0.1");
        limiter.failed("c@x.example", "10.0.0.1");
        assert!(limiter.check("d@x.example", "10.0.0.1").is_err());
        assert!(limiter.check("d@x.example", "10.0.0.3").is_ok());
        limiter.succeeded("b@x.example");
        assert!(limiter.check("b@x.example", "10.0.0.4").is_ok());
    }

    #[test]
    fn failures_expire() {
        let limiter = Limiter::new(Limits {
            per_account: 1,
            per_ip: 10,
            window: Duration::from_millis(50),
        });
        limiter.failed("a@x.example", "ip");
        assert!(limiter.check("a@x.example", "ip").is_err());
        std::thread::sleep(Duration::from_millis(60));
        assert!(limiter.check("a@x.example", "ip").is_ok());
    }
}
