//! Throttles, kept in memory (a restart forgets).
//!
//! - [`Limiter`]: sign-in against password guessing. Attempts are counted per account (the
//!   email) and per client address within a window, and each is counted *before* its password
//!   is checked ([`Limiter::reserve`]), so concurrent guesses cannot all slip in while the
//!   first ones are still hashing. Once either count reaches its limit, sign-in answers 429
//!   with `Retry-After` until the oldest attempt leaves the window, even with the right
//!   password. A success clears the account's count and gives the address its attempt back.
//! - [`Throttle`]: expensive actions that are not guesses (sign-up, password change, key
//!   regeneration), counted per client address and in total within a window.

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

    /// Counts one attempt for the account and the address, unless either is locked out:
    /// then `Err(wait)` and nothing is counted. Check and count are one step, so concurrent
    /// attempts never exceed the limits.
    pub fn reserve(&self, email: &str, ip: &str) -> Result<Attempt, Duration> {
        let now = Instant::now();
        let Ok(mut map) = self.failures.lock() else {
            return Err(self.limits.window);
        };
        let keys = [
            (account_key(email), self.limits.per_account),
            (ip_key(ip), self.limits.per_ip),
        ];
        let mut wait = Duration::ZERO;
        for (key, limit) in &keys {
            if let Some(times) = map.get_mut(key) {
                while times
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= self.limits.window)
                {
                    times.pop_front();
                }
                if times.len() >= *limit
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
        if !wait.is_zero() {
            return Err(wait);
        }
        if map.len() >= MAX_KEYS {
            let window = self.limits.window;
            map.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < window)
            });
        }
        let [(account, _), (address, _)] = keys;
        for key in [&account, &address] {
            let times = map.entry(key.clone()).or_default();
            times.push_back(now);
            // Only the newest `limit` attempts matter.
            while times.len() > self.limits.per_account.max(self.limits.per_ip) {
                times.pop_front();
            }
        }
        Ok(Attempt {
            account,
            address,
            at: now,
        })
    }

    /// The attempt was right: the account starts over, and the address gets its attempt back.
    pub fn succeeded(&self, attempt: &Attempt) {
        if let Ok(mut map) = self.failures.lock() {
            map.remove(&attempt.account);
            if let Some(times) = map.get_mut(&attempt.address)
                && let Some(i) = times.iter().rposition(|t| *t == attempt.at)
            {
                times.remove(i);
            }
        }
    }
}

/// One counted sign-in attempt (see [`Limiter::reserve`]).
#[derive(Debug)]
pub struct Attempt {
    account: String,
    address: String,
    at: Instant,
}

/// How often an expensive action may run: per client address and in total, within a window.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub per_ip: usize,
    pub total: usize,
    pub window: Duration,
}

impl Rate {
    pub const fn new(per_ip: usize, total: usize, window: Duration) -> Self {
        Self {
            per_ip,
            total,
            window,
        }
    }
}

/// Counts an action per client address and in total; see [`Throttle::take`].
#[derive(Debug)]
pub struct Throttle {
    rate: Rate,
    seen: Mutex<ThrottleState>,
}

#[derive(Debug, Default)]
struct ThrottleState {
    total: VecDeque<Instant>,
    per_ip: HashMap<String, VecDeque<Instant>>,
}

impl Throttle {
    pub fn new(rate: Rate) -> Self {
        Self {
            rate,
            seen: Mutex::default(),
        }
    }

    /// Counts one action from `ip`, or `Err(wait)` (counting nothing) when the address or
    /// everyone together has reached the rate.
    pub fn take(&self, ip: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let window = self.rate.window;
        let Ok(mut state) = self.seen.lock() else {
            return Err(window);
        };
        let expire = |times: &mut VecDeque<Instant>| {
            while times
                .front()
                .is_some_and(|t| now.duration_since(*t) >= window)
            {
                times.pop_front();
            }
        };
        let wait_for = |times: &VecDeque<Instant>| {
            times
                .front()
                .map_or(window, |t| window.saturating_sub(now.duration_since(*t)))
                .max(Duration::from_secs(1))
        };
        expire(&mut state.total);
        if state.total.len() >= self.rate.total {
            return Err(wait_for(&state.total));
        }
        if state.per_ip.len() >= MAX_KEYS {
            state.per_ip.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < window)
            });
        }
        let times = state.per_ip.entry(ip.to_owned()).or_default();
        expire(times);
        if times.len() >= self.rate.per_ip {
            return Err(wait_for(times));
        }
        times.push_back(now);
        state.total.push_back(now);
        Ok(())
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
            assert!(limiter.reserve("A@x.example", "10.0.0.1").is_ok());
        }
        let wait = limiter.reserve("a@x.example", "10.0.0.2").unwrap_err();
        assert!(wait > Duration::from_secs(50));
        let b = limiter.reserve("b@x.example", "10.0.0.1").unwrap();
        assert!(limiter.reserve("c@x.example", "10.0.0.1").is_ok());
        assert!(limiter.reserve("d@x.example", "10.0.0.1").is_err());
        assert!(limiter.reserve("d@x.example", "10.0.0.3").is_ok());
        // A success clears the account and gives the address its attempt back.
        limiter.succeeded(&b);
        assert!(limiter.reserve("b@x.example", "10.0.0.1").is_ok());
        assert!(limiter.reserve("e@x.example", "10.0.0.1").is_err());
    }

    #[test]
    fn concurrent_attempts_never_exceed_the_limit() {
        let limiter = std::sync::Arc::new(Limiter::new(Limits {
            per_account: 5,
            per_ip: 20,
            window: Duration::from_secs(60),
        }));
        let admitted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let threads: Vec<_> = (0..59)
            .map(|_| {
                let (limiter, admitted) = (limiter.clone(), admitted.clone());
                std::thread::spawn(move || {
                    if limiter.reserve("a@x.example", "10.0.0.1").is_ok() {
                        admitted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(admitted.load(std::sync::atomic::Ordering::SeqCst), 5);
    }

    #[test]
    fn failures_expire() {
        let limiter = Limiter::new(Limits {
            per_account: 1,
            per_ip: 10,
            window: Duration::from_millis(50),
        });
        limiter.reserve("a@x.example", "ip").unwrap();
        assert!(limiter.reserve("a@x.example", "ip").is_err());
        std::thread::sleep(Duration::from_millis(60));
        assert!(limiter.reserve("a@x.example", "ip").is_ok());
    }

    #[test]
    fn throttles_per_address_and_in_total() {
        let throttle = Throttle::new(Rate::new(2, 3, Duration::from_secs(60)));
        assert!(throttle.take("a").is_ok());
        assert!(throttle.take("a").is_ok());
        let wait = throttle.take("a").unwrap_err();
        assert!(wait > Duration::from_secs(50));
        assert!(throttle.take("b").is_ok());
        assert!(throttle.take("c").is_err(), "the total is reached");
    }
}
