//! What a self-hosted gateway knows about itself: readiness, where its configuration came from,
//! the health of its link and its token, and the APIs its configuration could not compile (the
//! `degraded` state). Read by `/readyz` and sent in heartbeats; never on the request path, so a
//! mutex is fine here.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

use crate::config::ApiProblem;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// No configuration applied yet.
    Starting,
    /// Serving, and the link to the control plane is healthy.
    Ready,
    /// Serving the last configuration; the link is down or refused.
    Stale,
    /// In touch with the control plane and serving, but some APIs of the configuration could
    /// not be compiled: their calls get 500 and `reason` names them. Still ready for traffic,
    /// since every other API is served.
    Degraded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    ControlPlane,
    Backup,
}

/// The `/readyz` document.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Readiness {
    pub state: State,
    pub config_revision: Option<u64>,
    pub last_sync: Option<String>,
    pub source: Option<Source>,
    /// Since when the gateway has been in this state.
    pub since: String,
    /// Why the gateway is stale (or not ready).
    pub reason: Option<String>,
    pub token_expiry: Option<String>,
    /// Set when the token expires within three days, or has expired.
    pub token_warning: Option<String>,
    pub instance: String,
    pub uptime_seconds: u64,
}

#[derive(Debug)]
struct Inner {
    state: State,
    since: String,
    reason: Option<String>,
    revision: Option<u64>,
    last_sync: Option<String>,
    source: Option<Source>,
    token_warning: Option<String>,
    synced_at: Option<Instant>,
    backup_at: Option<Instant>,
    /// The APIs the configuration in force could not compile.
    problems: Arc<[Arc<ApiProblem>]>,
}

/// The numbers `/metrics` shows about the link and the backup.
#[derive(Debug, Clone, Copy)]
pub struct LinkGauges {
    pub state: State,
    pub revision: Option<u64>,
    pub since_sync: Option<std::time::Duration>,
    pub backup_age: Option<std::time::Duration>,
    pub uptime: std::time::Duration,
}

#[derive(Debug)]
pub struct Status {
    inner: Mutex<Inner>,
    started: Instant,
    instance: String,
    token_expiry: Option<String>,
}

impl Status {
    pub fn new(instance: String, token_expiry: Option<String>) -> Self {
        Self {
            inner: Mutex::new(Inner {
                state: State::Starting,
                since: crate::backup::now_rfc3339(),
                reason: None,
                revision: None,
                last_sync: None,
                source: None,
                token_warning: None,
                synced_at: None,
                backup_at: None,
                problems: Arc::from(Vec::new()),
            }),
            started: Instant::now(),
            instance,
            token_expiry,
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> Option<R> {
        self.inner.lock().ok().map(|mut g| f(&mut g))
    }

    fn enter(inner: &mut Inner, state: State) {
        if inner.state != state {
            inner.state = state;
            inner.since = crate::backup::now_rfc3339();
        }
    }

    /// A configuration was applied; `problems` are the APIs it could not compile.
    pub fn applied(&self, revision: u64, source: Source, problems: &Arc<[Arc<ApiProblem>]>) {
        self.with(|i| {
            i.revision = Some(revision);
            i.problems = problems.clone();
            i.source = Some(source);
            if source == Source::ControlPlane {
                i.last_sync = Some(crate::backup::now_rfc3339());
                i.synced_at = Some(Instant::now());
                i.reason = None;
                Self::enter(i, State::Ready);
            } else if i.state == State::Starting {
                // Serving from a backup: ready to serve, but not in touch yet.
                i.reason =
                    Some("serving from the backup; the control plane has not answered yet".into());
                Self::enter(i, State::Stale);
            }
        });
    }

    /// The control plane answered: nothing changed.
    pub fn synced(&self) {
        self.with(|i| {
            i.last_sync = Some(crate::backup::now_rfc3339());
            i.synced_at = Some(Instant::now());
            if i.revision.is_some() {
                i.reason = None;
                Self::enter(i, State::Ready);
            }
        });
    }

    /// The link failed. Serving continues if a configuration is loaded.
    pub fn link_failed(&self, reason: String) {
        self.with(|i| {
            if i.reason.as_deref() != Some(reason.as_str()) {
                i.reason = Some(reason);
            }
            if i.revision.is_some() {
                Self::enter(i, State::Stale);
            }
        });
    }

    /// A configuration was written to the backup.
    pub fn backup_saved(&self) {
        self.with(|i| i.backup_at = Some(Instant::now()));
    }

    /// The state as reported: `ready` becomes `degraded` while APIs could not be compiled.
    fn reported(i: &Inner) -> State {
        if i.state == State::Ready && !i.problems.is_empty() {
            State::Degraded
        } else {
            i.state
        }
    }

    /// Why: the link's reason, then each API the configuration could not compile.
    fn reason(i: &Inner) -> Option<String> {
        if i.problems.is_empty() {
            return i.reason.clone();
        }
        let mut out: Vec<String> = i.reason.iter().cloned().collect();
        out.extend(i.problems.iter().map(ToString::to_string));
        Some(out.join("; "))
    }

    pub fn gauges(&self) -> LinkGauges {
        let uptime = self.started.elapsed();
        self.with(|i| LinkGauges {
            state: Self::reported(i),
            revision: i.revision,
            since_sync: i.synced_at.map(|t| t.elapsed()),
            backup_age: i.backup_at.map(|t| t.elapsed()),
            uptime,
        })
        .unwrap_or(LinkGauges {
            state: State::Starting,
            revision: None,
            since_sync: None,
            backup_age: None,
            uptime,
        })
    }

    pub fn set_token_warning(&self, warning: Option<String>) {
        self.with(|i| i.token_warning = warning);
    }

    pub fn readiness(&self) -> Readiness {
        let uptime_seconds = self.started.elapsed().as_secs();
        self.with(|i| Readiness {
            state: Self::reported(i),
            config_revision: i.revision,
            last_sync: i.last_sync.clone(),
            source: i.source,
            since: i.since.clone(),
            reason: Self::reason(i),
            token_expiry: self.token_expiry.clone(),
            token_warning: i.token_warning.clone(),
            instance: self.instance.clone(),
            uptime_seconds,
        })
        .unwrap_or(Readiness {
            state: State::Starting,
            config_revision: None,
            last_sync: None,
            source: None,
            since: String::new(),
            reason: Some("status unavailable".into()),
            token_expiry: self.token_expiry.clone(),
            token_warning: None,
            instance: self.instance.clone(),
            uptime_seconds,
        })
    }

    pub fn revision(&self) -> Option<u64> {
        self.with(|i| i.revision).flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apis_not_compiled_make_a_ready_gateway_degraded_and_are_named() {
        let status = Status::new("i".into(), None);
        let problem = Arc::new(ApiProblem {
            api: "orders".into(),
            target: "apis.orders.serviceUrl".into(),
            message: "'ftp://x' must be an absolute URL".into(),
        });
        status.applied(3, Source::ControlPlane, &Arc::from(vec![problem]));
        let r = status.readiness();
        assert_eq!(r.state, State::Degraded);
        let reason = r.reason.unwrap();
        assert!(
            reason.contains("API 'orders'") && reason.contains("ftp://x"),
            "{reason}"
        );
        assert_eq!(status.gauges().state, State::Degraded);
        // Repaired: ready again, with no reason.
        status.applied(4, Source::ControlPlane, &Arc::from(Vec::new()));
        let r = status.readiness();
        assert_eq!((r.state, r.reason), (State::Ready, None));
    }
}
