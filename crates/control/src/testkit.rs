//! What the control plane's unit tests share: a control plane of its own, on a fresh SQLite
//! store in a temporary directory.

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

/// A control plane whose data lives in a new directory named after `tag`.
pub async fn open(tag: &str) -> TestControl {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("gh-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = gatehouse_store::Store::open_sqlite_dir(&dir).await.unwrap();
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
