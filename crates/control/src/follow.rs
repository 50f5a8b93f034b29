//! Background work that keeps a control plane in step with its store when other control planes
//! share it (PostgreSQL), and frees what deleted gateways leave behind.
//!
//! - The listener: revisions committed through any control plane wake this one's held config
//!   calls ([`ControlPlane::published`]); they then read the change log as usual. A notification
//!   is only a wake-up: after a lost connection, and every [`RESYNC_EVERY`] in any case, the
//!   store's revision is read again, so a missed or silently lost notification delays a change
//!   by at most that long and loses nothing.
//! - The sweeper: after a revision that touched gateway resources (here or elsewhere), what
//!   this process keeps for gateways that no longer exist (compiled snapshots, refused-token
//!   counts) is dropped.
//!
//! SQLite has one writer, this process, which publishes its own commits: only the sweeper runs.

use std::sync::{Arc, Weak};
use std::time::Duration;

use gatehouse_store::{RevisionListener, Wake};
use tokio::task::AbortHandle;

use crate::ControlPlane;

/// How often the store's revision is read again, whatever the listener heard.
pub(crate) const RESYNC_EVERY: Duration = Duration::from_secs(5);

/// The longest pause between attempts to listen again while the database is unreachable.
const MAX_RETRY: Duration = Duration::from_secs(5);

/// Starts the background work for `control`; the control plane aborts it when dropped.
pub(crate) fn spawn(control: &Arc<ControlPlane>) -> Vec<AbortHandle> {
    let weak = Arc::downgrade(control);
    let mut tasks = vec![tokio::spawn(sweep(weak.clone(), control.subscribe())).abort_handle()];
    if let Some(listener) = control.store.revisions() {
        tasks.push(tokio::spawn(listen(weak.clone(), listener)).abort_handle());
        tasks.push(tokio::spawn(resync_periodically(weak)).abort_handle());
    }
    tasks
}

async fn listen(control: Weak<ControlPlane>, mut listener: RevisionListener) {
    let mut pause = Duration::from_millis(250);
    let mut failing = false;
    loop {
        let wake = listener.next().await;
        let Some(cp) = control.upgrade() else {
            return;
        };
        match wake {
            Ok(Wake::Revision(revision)) => cp.published(revision),
            Ok(Wake::Resync) => {
                if std::mem::take(&mut failing) {
                    tracing::info!("listening for changes made through other control planes again");
                }
                pause = Duration::from_millis(250);
                resync(&cp).await;
            }
            Err(e) => {
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(
                        error = %e,
                        "cannot listen for changes made through other control planes; retrying \
                         (meanwhile they reach this control plane's gateways within {}s)",
                        RESYNC_EVERY.as_secs()
                    );
                }
                drop(cp);
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_RETRY);
            }
        }
    }
}

async fn resync_periodically(control: Weak<ControlPlane>) {
    let mut every = tokio::time::interval(RESYNC_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(cp) = control.upgrade() else {
            return;
        };
        resync(&cp).await;
    }
}

/// Publishes the store's revision, which wakes held config calls if it is new.
async fn resync(cp: &ControlPlane) {
    match cp.store.revision().await {
        Ok(revision) => cp.published(revision),
        Err(e) => tracing::debug!(error = %e, "cannot read the store's revision"),
    }
}

async fn sweep(control: Weak<ControlPlane>, mut changes: tokio::sync::watch::Receiver<u64>) {
    let mut seen = *changes.borrow_and_update();
    loop {
        if changes.changed().await.is_err() {
            return;
        }
        let upto = *changes.borrow_and_update();
        let Some(cp) = control.upgrade() else {
            return;
        };
        match cp.forget_deleted_gateways(seen, upto).await {
            Ok(()) => seen = upto,
            // Tried again, over the same revisions and more, after the next change.
            Err(e) => tracing::warn!(error = %e, "cannot check for deleted gateways"),
        }
    }
}

#[cfg(test)]
mod tests;
