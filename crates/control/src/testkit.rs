//! What the control plane's unit tests share: a control plane of its own, on a fresh in-memory
//! store (tests of what is stored, not of SQL), on a fresh SQLite store in a temporary
//! directory, or on a given store (several replicas on one database).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;

use crate::{ControlPlane, ControlSettings};

pub struct TestControl {
    pub cp: Arc<ControlPlane>,
    /// The admin token it made.
    pub token: String,
    pub dir: PathBuf,
}

/// A new directory under the system temp dir, named after `tag`.
pub fn temp_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("gh-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A control plane on a new in-memory store, with its admin token and secret key in a new
/// directory named after `tag`.
pub async fn open(tag: &str) -> TestControl {
    open_on(gatehouse_store::Store::memory(), temp_dir(tag)).await
}

/// A control plane whose data lives in a new directory named after `tag`, in SQLite: other
/// stores can open it there.
pub async fn open_sqlite(tag: &str) -> TestControl {
    let dir = temp_dir(tag);
    let store = gatehouse_store::Store::open_sqlite_dir(&dir).await.unwrap();
    open_on(store, dir).await
}

/// A control plane on `store`, with its admin token and secret key in `dir` (replicas given
/// the same directory share them).
pub async fn open_on(store: gatehouse_store::Store, dir: PathBuf) -> TestControl {
    let settings = ControlSettings {
        data_dir: dir.clone(),
        admin_token: None,
        secret_key: None,
    };
    let opened = ControlPlane::open(store, &settings).await.unwrap();
    TestControl {
        cp: opened.control,
        token: opened.admin_token,
        dir,
    }
}
