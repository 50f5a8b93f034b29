//! Telemetry upload: every interval the workers' aggregates become one [`Batch`], which goes
//! into a bounded spool first and is then delivered, oldest first, to the control plane.
//!
//! The spool lives on disk when the gateway has a directory for it (under its backup
//! directory), so batches survive a restart as well as an outage; otherwise in memory. When it
//! is full the oldest batches are dropped and counted. A batch leaves the spool only after the
//! control plane has accepted it; since every batch has a unique id, which the control plane
//! stores once, a batch sent again after a lost answer is not counted twice.

use std::collections::VecDeque;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use gatehouse_model::telemetry::Batch;

use crate::telemetry::Telemetry;

/// Why a delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// Try again later: the control plane is down, busy, or refused the token for now.
    #[error("{0}")]
    Retry(String),
    /// The control plane will never take this batch (it is malformed or too large).
    #[error("{0}")]
    Rejected(String),
}

/// Where batches go: the control plane over the link, or in-process for `gatehouse up`.
pub trait Sink: Send + Sync + 'static {
    /// Delivers one batch (its JSON).
    fn deliver(
        &self,
        batch: Bytes,
    ) -> Pin<Box<dyn Future<Output = Result<(), DeliveryError>> + Send + '_>>;
}

#[derive(Debug, Clone)]
pub struct UploadSettings {
    pub interval: Duration,
    /// The spool's directory; `None` keeps it in memory.
    pub spool_dir: Option<PathBuf>,
    /// The most bytes of batches the spool holds.
    pub spool_limit: u64,
    pub instance: String,
}

/// The batches waiting for delivery, oldest first.
#[derive(Debug)]
pub struct Spool {
    dir: Option<PathBuf>,
    /// Name (for the file) and body of each batch.
    queue: VecDeque<(String, Bytes)>,
    bytes: u64,
    limit: u64,
    next: u64,
}

impl Spool {
    /// Opens the spool, loading what a previous run left in `dir`.
    pub fn open(dir: Option<&Path>, limit: u64) -> std::io::Result<Self> {
        let mut spool = Self {
            dir: dir.map(Path::to_path_buf),
            queue: VecDeque::new(),
            bytes: 0,
            limit,
            next: 0,
        };
        let Some(dir) = dir else {
            return Ok(spool);
        };
        std::fs::create_dir_all(dir)?;
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                // A write cut short by a crash: never renamed, so never complete.
                let _ = std::fs::remove_file(entry.path());
            } else if name.ends_with(".json") {
                names.push(name);
            }
        }
        names.sort();
        for name in names {
            let path = dir.join(&name);
            match std::fs::read(&path) {
                Ok(body) if serde_json::from_slice::<Batch>(&body).is_ok() => {
                    if let Some(seq) = name.split('-').next().and_then(|n| n.parse::<u64>().ok()) {
                        spool.next = spool.next.max(seq + 1);
                    }
                    spool.bytes += body.len() as u64;
                    spool.queue.push_back((name, Bytes::from(body)));
                }
                _ => {
                    tracing::warn!(path = %path.display(), "telemetry spool file is unreadable; set aside as .corrupt");
                    let _ = std::fs::rename(&path, path.with_extension("corrupt"));
                }
            }
        }
        Ok(spool)
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Adds a batch; returns how many old batches were dropped to make room.
    pub fn push(&mut self, id: &str, body: Bytes) -> u64 {
        let name = format!("{:020}-{id}.json", self.next);
        self.next += 1;
        if let Some(dir) = &self.dir
            && let Err(e) = write_atomically(&dir.join(&name), &body)
        {
            // Still held in memory: lost only if the process dies before delivery.
            tracing::error!(dir = %dir.display(), error = %e, "cannot write the telemetry spool; keeping the batch in memory");
        }
        self.bytes += body.len() as u64;
        self.queue.push_back((name, body));
        let mut dropped = 0;
        while self.bytes > self.limit && self.queue.len() > 1 {
            self.pop_front();
            dropped += 1;
        }
        dropped
    }

    pub fn front(&self) -> Option<&Bytes> {
        self.queue.front().map(|(_, b)| b)
    }

    pub fn pop_front(&mut self) {
        if let Some((name, body)) = self.queue.pop_front() {
            self.bytes -= body.len() as u64;
            if let Some(dir) = &self.dir {
                let _ = std::fs::remove_file(dir.join(name));
            }
        }
    }
}

fn write_atomically(path: &Path, body: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(body)?;
    file.sync_data()?;
    std::fs::rename(&tmp, path)
}

/// Builds batches and delivers them.
pub struct Uploader {
    telemetry: Arc<Telemetry>,
    sink: Arc<dyn Sink>,
    settings: UploadSettings,
    spool: tokio::sync::Mutex<Spool>,
    /// Drops not yet reported to the control plane in a batch.
    unreported_drops: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Uploader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uploader")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Uploader {
    pub fn new(
        telemetry: Arc<Telemetry>,
        sink: Arc<dyn Sink>,
        settings: UploadSettings,
    ) -> std::io::Result<Self> {
        let spool = Spool::open(settings.spool_dir.as_deref(), settings.spool_limit)?;
        if !spool.is_empty() {
            tracing::info!(
                batches = spool.len(),
                "telemetry from a previous run is waiting for delivery"
            );
        }
        telemetry
            .spool_batches
            .store(spool.len() as u64, Ordering::Relaxed);
        telemetry
            .spool_bytes
            .store(spool.bytes(), Ordering::Relaxed);
        Ok(Self {
            telemetry,
            sink,
            settings,
            spool: tokio::sync::Mutex::new(spool),
            unreported_drops: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Closes a batch of what the workers gathered and delivers what the spool holds.
    pub async fn flush(&self) {
        self.close_batch().await;
        self.deliver().await;
    }

    /// Moves the workers' aggregates into a new batch in the spool.
    pub async fn close_batch(&self) {
        let (aggregates, samples) = self.telemetry.drain();
        if aggregates.is_empty() && samples.is_empty() {
            return;
        }
        let batch = Batch {
            id: uuid::Uuid::new_v4().to_string(),
            instance: self.settings.instance.clone(),
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
            aggregates,
            samples,
            dropped_batches: self.unreported_drops.swap(0, Ordering::Relaxed),
        };
        let body = match serde_json::to_vec(&batch) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a telemetry batch");
                return;
            }
        };
        let mut spool = self.spool.lock().await;
        let dropped = spool.push(&batch.id, body);
        if dropped > 0 {
            tracing::warn!(
                dropped,
                limit = self.settings.spool_limit,
                "the telemetry spool is full; dropped the oldest batches"
            );
            self.telemetry
                .spool_dropped
                .fetch_add(dropped, Ordering::Relaxed);
            self.unreported_drops.fetch_add(dropped, Ordering::Relaxed);
        }
        self.publish(&spool);
    }

    fn publish(&self, spool: &Spool) {
        self.telemetry
            .spool_batches
            .store(spool.len() as u64, Ordering::Relaxed);
        self.telemetry
            .spool_bytes
            .store(spool.bytes(), Ordering::Relaxed);
    }

    /// Delivers the spooled batches in order until one fails. Returns whether the spool is
    /// empty.
    pub async fn deliver(&self) -> bool {
        let mut spool = self.spool.lock().await;
        while let Some(body) = spool.front().cloned() {
            match self.sink.deliver(body).await {
                Ok(()) => {
                    spool.pop_front();
                    self.telemetry.batches_sent.fetch_add(1, Ordering::Relaxed);
                }
                Err(DeliveryError::Rejected(reason)) => {
                    tracing::error!(%reason, "the control plane refused a telemetry batch; dropping it");
                    spool.pop_front();
                    self.telemetry.spool_dropped.fetch_add(1, Ordering::Relaxed);
                }
                Err(DeliveryError::Retry(reason)) => {
                    tracing::debug!(%reason, waiting = spool.len(), "telemetry not delivered; will retry");
                    break;
                }
            }
        }
        self.publish(&spool);
        spool.is_empty()
    }

    /// Runs until the task is dropped: a batch every interval, and retries every second while
    /// batches are waiting.
    pub async fn run(self: Arc<Self>) {
        let mut next_batch = tokio::time::Instant::now() + self.settings.interval;
        loop {
            let waiting = !self.spool.lock().await.is_empty();
            let wake = if waiting {
                next_batch.min(tokio::time::Instant::now() + Duration::from_secs(1))
            } else {
                next_batch
            };
            tokio::time::sleep_until(wake).await;
            if tokio::time::Instant::now() >= next_batch {
                self.close_batch().await;
                next_batch += self.settings.interval;
                if next_batch < tokio::time::Instant::now() {
                    next_batch = tokio::time::Instant::now() + self.settings.interval;
                }
            }
            self.deliver().await;
        }
    }

    /// At shutdown: closes the last batch and tries to deliver for up to `grace`; what is
    /// not delivered stays in the spool (on disk, when there is one).
    pub async fn finish(&self, grace: Duration) {
        self.close_batch().await;
        if tokio::time::timeout(grace, self.deliver()).await.is_err() {
            tracing::warn!("telemetry not delivered before shutdown; it stays in the spool");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "gh-spool-{tag}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn batch(id: &str) -> Bytes {
        Bytes::from(
            serde_json::to_vec(&Batch {
                id: id.into(),
                ..Default::default()
            })
            .unwrap(),
        )
    }

    #[test]
    fn the_spool_survives_a_restart_in_order() {
        let d = dir("restart");
        let mut s = Spool::open(Some(&d), 1 << 20).unwrap();
        s.push("a", batch("a"));
        s.push("b", batch("b"));
        std::fs::write(d.join("00000000000000000009-x.tmp"), b"half").unwrap();
        drop(s);
        let mut s = Spool::open(Some(&d), 1 << 20).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s.front().unwrap(), &batch("a"));
        s.pop_front();
        s.push("c", batch("c"));
        drop(s);
        let s = Spool::open(Some(&d), 1 << 20).unwrap();
        let ids: Vec<_> = s
            .queue
            .iter()
            .map(|(_, b)| serde_json::from_slice::<Batch>(b).unwrap().id)
            .collect();
        assert_eq!(ids, ["b", "c"]);
        assert!(!d.join("00000000000000000009-x.tmp").exists());
    }

    #[test]
    fn a_full_spool_drops_the_oldest() {
        let one = batch("0").len() as u64;
        let mut s = Spool::open(None, one * 3).unwrap();
        let mut dropped = 0;
        for i in 0..5 {
            dropped += s.push(&i.to_string(), batch(&i.to_string()));
        }
        assert_eq!(dropped, 2);
        assert_eq!(s.len(), 3);
        assert_eq!(s.front().unwrap(), &batch("2"));
    }

    #[test]
    fn a_corrupt_spool_file_is_set_aside() {
        let d = dir("corrupt");
        std::fs::write(d.join("00000000000000000000-a.json"), b"{not json").unwrap();
        let s = Spool::open(Some(&d), 1 << 20).unwrap();
        assert!(s.is_empty());
        assert!(d.join("00000000000000000000-a.corrupt").exists());
    }

    /// Accepts or refuses on command, recording what it accepted.
    struct Flaky {
        up: Mutex<bool>,
        got: Mutex<Vec<Batch>>,
    }

    impl Sink for Flaky {
        fn deliver(
            &self,
            body: Bytes,
        ) -> Pin<Box<dyn Future<Output = Result<(), DeliveryError>> + Send + '_>> {
            Box::pin(async move {
                if !*self.up.lock().unwrap() {
                    return Err(DeliveryError::Retry("down".into()));
                }
                self.got
                    .lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap());
                Ok(())
            })
        }
    }

    #[tokio::test]
    async fn batches_wait_for_the_control_plane_and_then_arrive_once_in_order() {
        let telemetry = Telemetry::new(
            crate::telemetry::TelemetrySettings {
                access_log: crate::telemetry::AccessLog::Off,
                ..Default::default()
            },
            1,
        );
        let sink = Arc::new(Flaky {
            up: Mutex::new(false),
            got: Mutex::new(Vec::new()),
        });
        let up = Uploader::new(
            telemetry.clone(),
            sink.clone(),
            UploadSettings {
                interval: Duration::from_secs(10),
                spool_dir: None,
                spool_limit: 1 << 20,
                instance: "i".into(),
            },
        )
        .unwrap();
        let w = telemetry.worker(0);
        for round in 0..3 {
            for _ in 0..=round {
                let mut r = w.begin(
                    &http::Method::GET,
                    &"/a/b".parse().unwrap(),
                    &http::HeaderMap::new(),
                    &std::sync::Arc::from("127.0.0.1"),
                    &http::HeaderValue::from_static("r"),
                );
                r.api = Some("a".into());
                r.operation = Some("b".into());
                r.status = 200;
                drop(crate::telemetry::ObservedBody::new(
                    http_body_util::Either::Left(http_body_util::Full::new(Bytes::new())),
                    r,
                    w.clone(),
                ));
            }
            up.flush().await;
        }
        assert!(sink.got.lock().unwrap().is_empty());
        assert_eq!(telemetry.spool_batches.load(Ordering::Relaxed), 3);
        *sink.up.lock().unwrap() = true;
        assert!(up.deliver().await);
        let got = sink.got.lock().unwrap();
        let totals: Vec<u64> = got
            .iter()
            .map(|b| b.aggregates.iter().map(|a| a.counts.total).sum())
            .collect();
        assert_eq!(totals, [1, 2, 3]);
        assert_eq!(telemetry.batches_sent.load(Ordering::Relaxed), 3);
        assert_eq!(telemetry.spool_batches.load(Ordering::Relaxed), 0);
    }
}
