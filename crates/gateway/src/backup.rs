//! The backup volume: every applied snapshot is saved so a gateway can start while its control
//! plane is unreachable.
//!
//! Each generation is one file, `snapshot-<seq>.json`, holding an envelope with the gateway id,
//! the revision, a SHA-256 of the payload, and the payload: the snapshot's JSON sealed with
//! AES-256-GCM. The key is `GATEHOUSE_BACKUP_KEY` when one is set; otherwise it is derived (HKDF)
//! from the gateway token, so secrets are never on disk in clear either way. A token-derived
//! backup can only be read with the same token: set a backup key to keep backups readable across
//! token rotation. The gateway id, the revision and the generation's sequence number are bound
//! into the seal's associated data, so a generation cannot be relabelled, renamed into a newer
//! generation, or moved to another gateway's volume.
//!
//! The directory is made private (0700) and every file is created 0600. A generation is written
//! to a temporary file, fsynced, renamed into place and the directory fsynced, so a crash leaves
//! either the whole file or none. Loading tries the newest generation first and falls back to
//! older ones; a generation that fails its checksum is renamed `*.corrupt` and never served; one
//! that is whole but cannot be opened with this gateway's key is left as it is. The newest three
//! are kept.
//!
//! A delta from the control plane does not rewrite the whole snapshot (tens of MB at 10,000
//! APIs): it is appended to `deltas.log`, a log of the deltas applied since the newest generation
//! (the base). Each record is `GHD1`, the body's length (u32 LE), the body's SHA-256, then the
//! body: the delta's base and resulting revisions (u64 LE each) and the delta's JSON sealed like
//! a generation (gateway id and both revisions bound in). A record is written with one `write`
//! and fsynced before the delta counts as saved. When the log passes a quarter of the base's size
//! or [`COMPACT_RECORDS`] records, the link compacts it in the background: the current snapshot
//! becomes a new generation, then the log is rewritten (temporary file, fsync, rename) with only
//! the records newer than that generation. A crash between the two leaves records the base
//! already holds: loading skips them by revision. Loading replays the log over the base; a torn
//! or damaged record (a crash mid-write) ends the replay with a warning and is cut off, so the
//! gateway starts from the last whole revision and catches up from the control plane.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hkdf;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use gatehouse_model::snapshot::{Delta, Snapshot};
use gatehouse_model::token::GatewayToken;
use serde::{Deserialize, Serialize};

/// Generations kept on disk.
pub const KEEP: usize = 3;
const PREFIX: &str = "snapshot-";
const SUFFIX: &str = ".json";
/// Format 2: always sealed, with the gateway id, revision and sequence number bound in.
const ENVELOPE_FORMAT: u32 = 2;
/// The largest backup file read: far above any real snapshot, small enough to refuse garbage.
const MAX_FILE_BYTES: u64 = 1 << 30;
const HKDF_SALT: &[u8] = b"gatehouse backup key v2";
/// The delta log: the deltas applied since the newest generation.
pub const LOG_FILE: &str = "deltas.log";
/// Held while writing, so replicas sharing a volume never interleave a base and its log.
const LOCK_FILE: &str = "backup.lock";
const RECORD_MAGIC: &[u8; 4] = b"GHD1";
/// Magic, body length, body SHA-256.
const RECORD_HEADER: usize = 4 + 4 + 32;
/// The log is compacted into a new base after this many records...
pub const COMPACT_RECORDS: usize = 1000;
/// ...or once it is larger than the base divided by this.
const COMPACT_FRACTION: u64 = 4;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("backup directory {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Corrupt(String),
    #[error(
        "the backup key must be 32 bytes, base64-encoded (generate one with `head -c32 /dev/urandom | base64`)"
    )]
    BadKey,
}

/// Why one generation cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// Damaged or not a backup: set aside, never tried again.
    #[error("{0}")]
    Corrupt(String),
    /// Whole, but sealed for another key, gateway or place: left for whoever can open it.
    #[error("{0}")]
    Sealed(String),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Where the sealing key comes from; written in the envelope so a reader can say what it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum KeySource {
    /// `GATEHOUSE_BACKUP_KEY`.
    BackupKey,
    /// Derived from the gateway token.
    GatewayToken,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    format: u32,
    gateway_id: String,
    revision: u64,
    created_at: String,
    key_source: KeySource,
    /// Lower-case hex SHA-256 of the decoded payload bytes.
    sha256: String,
    /// Base64 of nonce ‖ ciphertext ‖ tag.
    payload: String,
}

/// What a look for the newest usable generation found.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The newest generation that verified, with the delta log replayed over it, and its file.
    pub found: Option<(Snapshot, PathBuf)>,
    /// Newer generations that could not be used, with the reason.
    pub skipped: Vec<(PathBuf, ReadError)>,
    /// Deltas replayed from the log over the generation.
    pub replayed: usize,
    /// Why the replay stopped before the end of the log (a torn or damaged record), if it did.
    pub log_warning: Option<String>,
}

/// How one configuration was saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Saved {
    /// Appended to the delta log: the bytes written.
    Delta { bytes: u64 },
    /// Written whole as a new generation.
    Base { path: PathBuf, bytes: u64 },
}

/// What this process knows of the volume, under the write lock.
#[derive(Debug, Default)]
struct LogState {
    /// The revision the newest base plus the log add up to, when known to be whole.
    tip: Option<u64>,
    /// The newest base's revision and size.
    base_revision: Option<u64>,
    base_bytes: u64,
    log_bytes: u64,
    records: usize,
}

/// One record of the delta log, as read back.
struct Record {
    base: u64,
    revision: u64,
    /// Where the record starts in the log.
    start: u64,
    sealed: Vec<u8>,
}

pub struct Backup {
    dir: PathBuf,
    gateway_id: String,
    key: LessSafeKey,
    key_source: KeySource,
    /// Set when the directory could not be made private (a volume owned by someone else).
    permission_warning: Option<String>,
    state: Mutex<LogState>,
    /// A compaction is running: at most one at a time.
    compacting: AtomicBool,
}

impl std::fmt::Debug for Backup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backup")
            .field("dir", &self.dir)
            .field("gateway_id", &self.gateway_id)
            .field("key_source", &self.key_source)
            .finish()
    }
}

impl Backup {
    /// Opens (creating if needed) `token`'s gateway's backup directory, makes it private, and
    /// removes temporary files a crash may have left. `backup_key` is the base64 of a 32-byte
    /// AES key; without one the key is derived from the token.
    pub fn open(
        dir: &Path,
        token: &GatewayToken,
        backup_key: Option<&str>,
    ) -> Result<Self, BackupError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let permission_warning = fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .err()
            .map(|e| {
                format!(
                    "cannot make {} private (mode 0700): {e}; its files are still created 0600",
                    dir.display()
                )
            });
        let (key, key_source) = match backup_key {
            Some(text) => {
                let bytes = STANDARD
                    .decode(text.trim())
                    .map_err(|_| BackupError::BadKey)?;
                let unbound =
                    UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| BackupError::BadKey)?;
                (LessSafeKey::new(unbound), KeySource::BackupKey)
            }
            None => (token_key(token)?, KeySource::GatewayToken),
        };
        // Temporary files a crash left behind. Recent ones may belong to another replica that
        // shares the volume and is writing right now: leave those.
        for entry in fs::read_dir(dir).map_err(io(dir))?.flatten() {
            let name = entry.file_name();
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_none_or(|age| age > std::time::Duration::from_secs(60));
            if name.to_string_lossy().ends_with(".tmp") && stale {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(Self {
            dir: dir.to_owned(),
            gateway_id: token.gateway_id.clone(),
            key,
            key_source,
            permission_warning,
            state: Mutex::new(LogState::default()),
            compacting: AtomicBool::new(false),
        })
    }

    pub fn key_source(&self) -> KeySource {
        self.key_source
    }

    /// Why the directory is not private, if it could not be made so.
    pub fn permission_warning(&self) -> Option<&str> {
        self.permission_warning.as_deref()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Generations on disk, newest first.
    pub fn generations(&self) -> Result<Vec<(u64, PathBuf)>, BackupError> {
        let mut found = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io(&self.dir))?.flatten() {
            let name = entry.file_name();
            if let Some(seq) = sequence(&name.to_string_lossy()) {
                found.push((seq, entry.path()));
            }
        }
        found.sort_by_key(|g| std::cmp::Reverse(g.0));
        Ok(found)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, LogState> {
        // The state is a cache of what is on disk; a panic mid-update leaves it no worse than
        // unknown, which the next write handles by writing a whole base.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Excludes other processes sharing the volume while a base or the log is written.
    fn lock_volume(&self) -> Result<fs::File, BackupError> {
        let path = self.dir.join(LOCK_FILE);
        let file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io(&path))?;
        file.lock().map_err(io(&path))?;
        Ok(file)
    }

    /// Saves `snapshot_json` (the bytes received from the control plane) as a new generation,
    /// then prunes old ones and empties the delta log of what the generation holds. Blocking:
    /// call it off the async runtime.
    pub fn write(&self, revision: u64, snapshot_json: &[u8]) -> Result<PathBuf, BackupError> {
        let mut state = self.state();
        let _volume = self.lock_volume()?;
        self.write_base(&mut state, revision, snapshot_json)
    }

    /// Writes a generation, then keeps in the log only the records that continue from it.
    fn write_base(
        &self,
        state: &mut LogState,
        revision: u64,
        snapshot_json: &[u8],
    ) -> Result<PathBuf, BackupError> {
        let path = self.write_generation(revision, snapshot_json)?;
        // From here a crash leaves records the new base already holds: replay skips them.
        let (bytes, records, tip) = self.keep_log_after(revision)?;
        *state = LogState {
            tip: Some(tip),
            base_revision: Some(revision),
            base_bytes: snapshot_json.len() as u64,
            log_bytes: bytes,
            records,
        };
        Ok(path)
    }

    fn write_generation(
        &self,
        revision: u64,
        snapshot_json: &[u8],
    ) -> Result<PathBuf, BackupError> {
        let existing = self.generations()?;
        let seq = existing.first().map_or(1, |(s, _)| s + 1);
        let aad = associated_data(&self.gateway_id, revision, seq);
        let payload = seal(&self.key, &aad, snapshot_json)?;
        let envelope = Envelope {
            format: ENVELOPE_FORMAT,
            gateway_id: self.gateway_id.clone(),
            revision,
            created_at: now_rfc3339(),
            key_source: self.key_source,
            sha256: sha256_hex(&payload),
            payload: STANDARD.encode(&payload),
        };
        let bytes = serde_json::to_vec(&envelope)
            .map_err(|e| BackupError::Corrupt(format!("cannot encode a backup: {e}")))?;
        let path = self.dir.join(format!("{PREFIX}{seq:012}{SUFFIX}"));
        self.replace_file(&path, &bytes)?;
        for (_, old) in self.generations()?.into_iter().skip(KEEP) {
            let _ = fs::remove_file(old);
        }
        Ok(path)
    }

    /// Writes `bytes` as `path` whole or not at all: temporary file, fsync, rename, fsync of
    /// the directory.
    fn replace_file(&self, path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stem = name.strip_suffix(SUFFIX).unwrap_or(&name);
        // Replicas may share one backup volume: the temporary name is unique to this writer,
        // and a rename onto a name another replica just used replaces one whole file with
        // another whole file.
        let tmp = self.dir.join(format!(
            "{stem}.{}.{}.tmp",
            std::process::id(),
            time::OffsetDateTime::now_utc().unix_timestamp_nanos()
        ));
        {
            // Private from its first byte: never a moment where another user could open it.
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io(&tmp))?;
            file.write_all(bytes).map_err(io(&tmp))?;
            file.sync_all().map_err(io(&tmp))?;
        }
        fs::rename(&tmp, path).map_err(io(path))?;
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))
    }

    /// Rewrites the log with only the records that continue from `revision`; returns its size,
    /// its record count and the revision it reaches.
    fn keep_log_after(&self, revision: u64) -> Result<(u64, usize, u64), BackupError> {
        let path = self.dir.join(LOG_FILE);
        let (records, _, _) = self.read_log();
        let mut kept = Vec::new();
        let mut tip = revision;
        for r in records.iter().filter(|r| r.revision > revision) {
            if r.base != tip {
                break;
            }
            tip = r.revision;
            kept.push(r);
        }
        if kept.is_empty() {
            if path.exists() {
                let file = fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io(&path))?;
                file.set_len(0).map_err(io(&path))?;
                file.sync_all().map_err(io(&path))?;
            }
            return Ok((0, 0, revision));
        }
        let mut bytes = Vec::new();
        for r in &kept {
            bytes.extend_from_slice(&record_bytes(r.base, r.revision, &r.sealed));
        }
        self.replace_file(&path, &bytes)?;
        Ok((bytes.len() as u64, kept.len(), tip))
    }

    /// Saves an applied delta: appended to the log when the log reaches its base revision,
    /// otherwise (no base yet, or a gap) `snapshot`, the result, is written whole. Blocking.
    pub fn save_delta(
        &self,
        delta: &Delta,
        delta_json: &[u8],
        snapshot: &Snapshot,
    ) -> Result<Saved, BackupError> {
        let mut state = self.state();
        if state.tip != Some(delta.base) || delta.revision <= delta.base {
            let json = serde_json::to_vec(snapshot)
                .map_err(|e| BackupError::Corrupt(format!("cannot encode a backup: {e}")))?;
            let _volume = self.lock_volume()?;
            let path = self.write_base(&mut state, snapshot.revision, &json)?;
            return Ok(Saved::Base {
                path,
                bytes: json.len() as u64,
            });
        }
        let aad = delta_associated_data(&self.gateway_id, delta.base, delta.revision);
        let sealed = seal(&self.key, &aad, delta_json)?;
        let record = record_bytes(delta.base, delta.revision, &sealed);
        let path = self.dir.join(LOG_FILE);
        let _volume = self.lock_volume()?;
        let appended = (|| {
            let created = !path.exists();
            let mut file = fs::OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o600)
                .open(&path)
                .map_err(io(&path))?;
            // One write, so a crash leaves at most a torn last record, which loading cuts off.
            file.write_all(&record).map_err(io(&path))?;
            file.sync_data().map_err(io(&path))?;
            if created {
                fs::File::open(&self.dir)
                    .and_then(|d| d.sync_all())
                    .map_err(io(&self.dir))?;
            }
            Ok::<(), BackupError>(())
        })();
        if let Err(e) = appended {
            // Part of the record may be on disk: the next save writes a whole base instead of
            // appending after it.
            state.tip = None;
            return Err(e);
        }
        state.tip = Some(delta.revision);
        state.log_bytes += record.len() as u64;
        state.records += 1;
        Ok(Saved::Delta {
            bytes: record.len() as u64,
        })
    }

    /// Whether the log has grown enough to be folded into a new base.
    pub fn needs_compaction(&self) -> bool {
        let state = self.state();
        state.records >= COMPACT_RECORDS
            || (state.log_bytes > 256 * 1024
                && state.log_bytes.saturating_mul(COMPACT_FRACTION) > state.base_bytes)
    }

    /// Folds the log into a new base holding `snapshot` (the configuration in force). At most
    /// one runs at a time; returns `None` when another is running or the base is already as
    /// new. Blocking and CPU-heavy (the whole snapshot is encoded): run it in the background.
    pub fn compact(&self, snapshot: &Snapshot) -> Result<Option<PathBuf>, BackupError> {
        if self.compacting.swap(true, Ordering::AcqRel) {
            return Ok(None);
        }
        let result = self.compact_now(snapshot);
        self.compacting.store(false, Ordering::Release);
        result
    }

    fn compact_now(&self, snapshot: &Snapshot) -> Result<Option<PathBuf>, BackupError> {
        // The encoding is the expensive part: done before taking the lock, so deltas keep
        // being appended meanwhile.
        let json = serde_json::to_vec(snapshot)
            .map_err(|e| BackupError::Corrupt(format!("cannot encode a backup: {e}")))?;
        let mut state = self.state();
        let newer_base = state.base_revision.is_some_and(|b| b >= snapshot.revision);
        // The log must hold the snapshot's revision, or its records would not continue from it.
        let in_log = state.tip.is_some_and(|t| t >= snapshot.revision);
        if newer_base || !in_log {
            return Ok(None);
        }
        let _volume = self.lock_volume()?;
        self.write_base(&mut state, snapshot.revision, &json)
            .map(Some)
    }

    /// Reads the log: its whole records, where the last whole one ends, and why reading
    /// stopped early (a torn or damaged record), if it did.
    fn read_log(&self) -> (Vec<Record>, u64, Option<String>) {
        let path = self.dir.join(LOG_FILE);
        let mut bytes = Vec::new();
        match fs::File::open(&path) {
            Ok(file) => {
                if let Err(e) = file.take(MAX_FILE_BYTES).read_to_end(&mut bytes) {
                    return (Vec::new(), 0, Some(format!("cannot read it: {e}")));
                }
            }
            Err(_) => return (Vec::new(), 0, None),
        }
        let mut records = Vec::new();
        let mut at = 0usize;
        while at < bytes.len() {
            match parse_record(&bytes[at..]) {
                Ok((base, revision, sealed, len)) => {
                    records.push(Record {
                        base,
                        revision,
                        start: at as u64,
                        sealed: sealed.to_vec(),
                    });
                    at += len;
                }
                Err(why) => {
                    let why = format!(
                        "record {} at byte {at} of {} {why}",
                        records.len() + 1,
                        path.display()
                    );
                    return (records, at as u64, Some(why));
                }
            }
        }
        (records, at as u64, None)
    }

    /// Replays the log over `base` (a generation just loaded) and records what this process
    /// now knows of the volume. A torn or damaged tail is cut off so new records follow whole
    /// ones; records that do not continue from `base` (it is an older generation) are left.
    /// `Err` only if a delta that fits could not be applied (it never happens); the base is
    /// then used as it is.
    fn replay(
        &self,
        base: Snapshot,
        base_bytes: u64,
    ) -> Result<(Snapshot, usize, Option<String>), String> {
        let mut state = self.state();
        *state = LogState::default();
        let _volume = match self.lock_volume() {
            Ok(v) => v,
            Err(e) => return Ok((base, 0, Some(e.to_string()))),
        };
        let (records, good_end, torn) = self.read_log();
        let base_revision = base.revision;
        let mut current = base;
        let mut replayed = 0;
        let mut warning = None;
        let mut whole = true;
        for r in &records {
            if r.revision <= current.revision {
                continue; // already in the base: a crash between a compaction's rename and cut
            }
            if r.base != current.revision {
                whole = false;
                break;
            }
            let aad = delta_associated_data(&self.gateway_id, r.base, r.revision);
            let delta = open_sealed(&self.key, &aad, r.sealed.clone())
                .map_err(|()| "cannot be opened with this gateway's key".to_owned())
                .and_then(|json| {
                    serde_json::from_slice::<Delta>(&json)
                        .map_err(|e| format!("does not parse: {e}"))
                })
                .and_then(|delta| {
                    if delta.revision != r.revision || delta.base != r.base {
                        return Err("does not match its header".to_owned());
                    }
                    delta.applies_to(&current).map(|()| delta)
                });
            let delta = match delta {
                Ok(delta) => delta,
                Err(why) => {
                    warning = Some(format!(
                        "the delta to revision {} at byte {} {why}",
                        r.revision, r.start
                    ));
                    whole = false;
                    break;
                }
            };
            // Patched in place: replaying a thousand records must not copy the snapshot a
            // thousand times. It only fails where `applies_to` does, checked just above.
            match delta.apply_owned(std::mem::take(&mut current)) {
                Ok(next) => {
                    current = next;
                    replayed += 1;
                }
                Err(why) => return Err(why),
            }
        }
        if let Some(why) = &torn
            && whole
        {
            warning = Some(why.clone());
            let path = self.dir.join(LOG_FILE);
            let cut = fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| {
                    f.set_len(good_end)?;
                    f.sync_all()
                });
            if let Err(e) = cut {
                warning = Some(format!("{why}; it could not be cut off: {e}"));
                whole = false;
            }
        }
        *state = LogState {
            tip: whole.then_some(current.revision),
            base_revision: Some(base_revision),
            base_bytes,
            log_bytes: good_end,
            records: records.len(),
        };
        Ok((current, replayed, warning))
    }

    /// The newest generation that verifies. Newer ones that are damaged are set aside as
    /// `.corrupt`; whole ones sealed for another key are left in place.
    pub fn load_newest(&self) -> Result<Loaded, BackupError> {
        let mut skipped = Vec::new();
        for (_, path) in self.generations()? {
            match self.read(&path) {
                Ok(snapshot) => {
                    let size = fs::metadata(&path).map_or(0, |m| m.len());
                    let revision = snapshot.revision;
                    let (snapshot, replayed, log_warning) = match self.replay(snapshot, size) {
                        Ok(replayed) => replayed,
                        // The base as it is, read again (the replay consumed it).
                        Err(why) => match self.read(&path) {
                            Ok(snapshot) => (
                                snapshot,
                                0,
                                Some(format!(
                                    "the delta log could not be replayed over revision {revision}: {why}"
                                )),
                            ),
                            Err(reason) => {
                                skipped.push((path, reason));
                                continue;
                            }
                        },
                    };
                    return Ok(Loaded {
                        found: Some((snapshot, path)),
                        skipped,
                        replayed,
                        log_warning,
                    });
                }
                // Another replica sharing the volume may have pruned it meanwhile.
                Err(_) if !path.exists() => {}
                Err(reason @ ReadError::Corrupt(_)) => {
                    let aside = path.with_extension("corrupt");
                    let _ = fs::rename(&path, &aside);
                    skipped.push((path, reason));
                }
                Err(reason @ ReadError::Sealed(_)) => skipped.push((path, reason)),
            }
        }
        Ok(Loaded {
            found: None,
            skipped,
            ..Loaded::default()
        })
    }

    /// Reads and verifies one generation.
    pub fn read(&self, path: &Path) -> Result<Snapshot, ReadError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let seq = sequence(&name).ok_or_else(|| {
            ReadError::Corrupt(format!(
                "'{name}' is not named like a backup generation ({PREFIX}<number>{SUFFIX})"
            ))
        })?;
        let size = fs::metadata(path)
            .map_err(|e| ReadError::Corrupt(format!("cannot read it: {e}")))?
            .len();
        if size > MAX_FILE_BYTES {
            return Err(ReadError::Corrupt(format!(
                "it is {size} bytes, more than any backup can be"
            )));
        }
        let bytes =
            fs::read(path).map_err(|e| ReadError::Corrupt(format!("cannot read it: {e}")))?;
        self.decode(seq, &bytes)
    }

    /// Verifies and opens the bytes of generation `seq`. Never panics, whatever the bytes.
    pub fn decode(&self, seq: u64, bytes: &[u8]) -> Result<Snapshot, ReadError> {
        let corrupt = |m: String| ReadError::Corrupt(m);
        let envelope: Envelope = match serde_json::from_slice(bytes) {
            Ok(e) => e,
            Err(e) => {
                // Format 1 (before sealing was mandatory) has another shape: say so plainly.
                let format = serde_json::from_slice::<serde_json::Value>(bytes)
                    .ok()
                    .and_then(|v| v.get("format")?.as_u64());
                return Err(match format {
                    Some(f) if f != u64::from(ENVELOPE_FORMAT) => ReadError::Sealed(format!(
                        "it has backup format {f}, which this gateway does not read; it is replaced at the next sync"
                    )),
                    _ => corrupt(format!("it is not a backup envelope: {e}")),
                });
            }
        };
        if envelope.format != ENVELOPE_FORMAT {
            return Err(ReadError::Sealed(format!(
                "it has backup format {}, which this gateway does not read; it is replaced at the next sync",
                envelope.format
            )));
        }
        let payload = STANDARD
            .decode(&envelope.payload)
            .map_err(|_| corrupt("its payload is not base64".to_owned()))?;
        if sha256_hex(&payload) != envelope.sha256 {
            return Err(corrupt(
                "its checksum does not match: the file is corrupt".to_owned(),
            ));
        }
        if envelope.gateway_id != self.gateway_id {
            return Err(ReadError::Sealed(format!(
                "it belongs to gateway '{}', not '{}'",
                envelope.gateway_id, self.gateway_id
            )));
        }
        let aad = associated_data(&self.gateway_id, envelope.revision, seq);
        let json = open_sealed(&self.key, &aad, payload).map_err(|()| {
            ReadError::Sealed(match (envelope.key_source, self.key_source) {
                (KeySource::BackupKey, KeySource::GatewayToken) => {
                    "it was sealed with a backup key: set GATEHOUSE_BACKUP_KEY".to_owned()
                }
                (KeySource::GatewayToken, KeySource::BackupKey) => {
                    "it was sealed with the gateway token, not the backup key: start once without GATEHOUSE_BACKUP_KEY, or let the gateway sync".to_owned()
                }
                (KeySource::BackupKey, KeySource::BackupKey) => {
                    "it cannot be opened with the configured backup key, or it was altered or renamed".to_owned()
                }
                (KeySource::GatewayToken, KeySource::GatewayToken) => {
                    "it was sealed with another gateway token (or altered or renamed); set GATEHOUSE_BACKUP_KEY to keep backups readable across token rotation".to_owned()
                }
            })
        })?;
        let snapshot: Snapshot = serde_json::from_slice(&json)
            .map_err(|e| corrupt(format!("its snapshot does not parse: {e}")))?;
        if snapshot.revision != envelope.revision || snapshot.gateway_id != self.gateway_id {
            return Err(corrupt(
                "its revision or gateway does not match its snapshot".to_owned(),
            ));
        }
        Ok(snapshot)
    }
}

/// The generation number in a file name `snapshot-<seq>.json`.
fn sequence(name: &str) -> Option<u64> {
    name.strip_prefix(PREFIX)?
        .strip_suffix(SUFFIX)?
        .parse::<u64>()
        .ok()
}

/// What a delta record's seal binds: which gateway, and which revision it goes from and to.
fn delta_associated_data(gateway_id: &str, base: u64, revision: u64) -> Vec<u8> {
    format!("gatehouse-backup-delta\0{ENVELOPE_FORMAT}\0{gateway_id}\0{base}\0{revision}")
        .into_bytes()
}

/// One log record: magic, body length, body SHA-256, body (base, revision, sealed delta).
fn record_bytes(base: u64, revision: u64, sealed: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(16 + sealed.len());
    body.extend_from_slice(&base.to_le_bytes());
    body.extend_from_slice(&revision.to_le_bytes());
    body.extend_from_slice(sealed);
    let mut out = Vec::with_capacity(RECORD_HEADER + body.len());
    out.extend_from_slice(RECORD_MAGIC);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &body).as_ref());
    out.extend_from_slice(&body);
    out
}

/// Parses the record at the start of `bytes`: base, revision, sealed delta, record length.
fn parse_record(bytes: &[u8]) -> Result<(u64, u64, &[u8], usize), &'static str> {
    if bytes.len() < RECORD_HEADER {
        return Err("is cut short (a write was interrupted)");
    }
    if &bytes[..4] != RECORD_MAGIC {
        return Err("is not a delta record");
    }
    let mut len = [0u8; 4];
    len.copy_from_slice(&bytes[4..8]);
    let len = u32::from_le_bytes(len) as usize;
    let end = RECORD_HEADER + len;
    if len < 16 {
        return Err("is not a delta record");
    }
    if bytes.len() < end {
        return Err("is cut short (a write was interrupted)");
    }
    let body = &bytes[RECORD_HEADER..end];
    if aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body).as_ref() != &bytes[8..40] {
        return Err("does not match its checksum");
    }
    let mut base = [0u8; 8];
    base.copy_from_slice(&body[..8]);
    let mut revision = [0u8; 8];
    revision.copy_from_slice(&body[8..16]);
    Ok((
        u64::from_le_bytes(base),
        u64::from_le_bytes(revision),
        &body[16..],
        end,
    ))
}

/// CPU time this thread has used, in nanoseconds (Linux), to report what a save costs.
pub fn thread_cpu_ns() -> Option<u64> {
    let text = fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// What the seal binds besides the plaintext: which gateway, which revision, which generation.
fn associated_data(gateway_id: &str, revision: u64, seq: u64) -> Vec<u8> {
    format!("gatehouse-backup\0{ENVELOPE_FORMAT}\0{gateway_id}\0{revision}\0{seq}").into_bytes()
}

/// The sealing key derived from the gateway token: whoever holds the token can fetch the same
/// configuration from the control plane anyway, so the backup is no easier to read than that.
fn token_key(token: &GatewayToken) -> Result<LessSafeKey, BackupError> {
    let secret = GatewayToken::format(&token.gateway_id, &token.expiry_text, &token.signature);
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, HKDF_SALT).extract(secret.as_bytes());
    let okm = prk
        .expand(&[b"aes-256-gcm"], &AES_256_GCM)
        .map_err(|_| BackupError::Corrupt("cannot derive the backup key".into()))?;
    Ok(LessSafeKey::new(UnboundKey::from(okm)))
}

fn seal(key: &LessSafeKey, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, BackupError> {
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce)
        .map_err(|_| BackupError::Corrupt("the system random generator failed".into()))?;
    let mut buf = plain.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut buf,
    )
    .map_err(|_| BackupError::Corrupt("encryption failed".into()))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&buf);
    Ok(out)
}

fn open_sealed(key: &LessSafeKey, aad: &[u8], mut data: Vec<u8>) -> Result<Vec<u8>, ()> {
    if data.len() < NONCE_LEN {
        return Err(());
    }
    let mut rest = data.split_off(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = data.as_slice().try_into().map_err(|_| ())?;
    let plain = key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut rest,
        )
        .map_err(|_| ())?;
    Ok(plain.to_vec())
}

fn sha256_hex(bytes: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(crate) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_model::snapshot::FORMAT_VERSION;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "gh-backup-{tag}-{}-{}",
            std::process::id(),
            time::OffsetDateTime::now_utc().unix_timestamp_nanos()
        ));
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn token(signature: &str) -> GatewayToken {
        GatewayToken::parse(&format!("GatewayKey edge&209901010000&{signature}")).unwrap()
    }

    fn snapshot(revision: u64) -> Vec<u8> {
        serde_json::to_vec(&Snapshot {
            format: FORMAT_VERSION,
            revision,
            gateway_id: "edge".into(),
            ..Snapshot::default()
        })
        .unwrap()
    }

    #[test]
    fn keeps_three_and_loads_the_newest() {
        let d = dir("keep");
        let b = Backup::open(&d, &token("sig"), None).unwrap();
        for r in 1..=5 {
            b.write(r, &snapshot(r)).unwrap();
        }
        assert_eq!(b.generations().unwrap().len(), KEEP);
        let loaded = b.load_newest().unwrap();
        assert_eq!(loaded.found.unwrap().0.revision, 5);
        assert!(loaded.skipped.is_empty());
        fs::remove_dir_all(d).ok();
    }

    #[test]
    fn files_are_private() {
        let d = dir("modes");
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        let b = Backup::open(&d, &token("sig"), None).unwrap();
        assert!(b.permission_warning().is_none());
        let path = b.write(1, &snapshot(1)).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&d), 0o700);
        assert_eq!(mode(&path), 0o600);
        fs::remove_dir_all(d).ok();
    }

    #[test]
    fn corrupt_newest_falls_back_and_is_set_aside() {
        let d = dir("corrupt");
        let b = Backup::open(&d, &token("sig"), None).unwrap();
        b.write(1, &snapshot(1)).unwrap();
        let newest = b.write(2, &snapshot(2)).unwrap();
        let mut bytes = fs::read(&newest).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x55;
        fs::write(&newest, bytes).unwrap();
        let loaded = b.load_newest().unwrap();
        assert_eq!(loaded.found.unwrap().0.revision, 1);
        assert_eq!(loaded.skipped.len(), 1);
        assert!(!newest.exists());
        assert!(newest.with_extension("corrupt").exists());
        // Truncated files and garbage are refused too.
        let p = b.write(3, &snapshot(3)).unwrap();
        fs::write(&p, b"{\"format\":2,").unwrap();
        assert_eq!(b.load_newest().unwrap().found.unwrap().0.revision, 1);
        fs::remove_dir_all(d).ok();
    }

    #[test]
    fn nothing_is_readable_without_a_key_either() {
        let d = dir("sealed");
        let b = Backup::open(&d, &token("sig"), None).unwrap();
        assert_eq!(b.key_source(), KeySource::GatewayToken);
        let path = b.write(4, &snapshot(4)).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        let envelope: Envelope = serde_json::from_str(&text).unwrap();
        assert_eq!(envelope.key_source, KeySource::GatewayToken);
        let payload = STANDARD.decode(envelope.payload).unwrap();
        assert!(!String::from_utf8_lossy(&payload).contains("edge"));
        assert_eq!(b.load_newest().unwrap().found.unwrap().0.revision, 4);
        // Another token cannot open it, and does not set it aside either.
        let other = Backup::open(&d, &token("other"), None).unwrap();
        assert!(matches!(other.read(&path), Err(ReadError::Sealed(_))));
        let none = other.load_newest().unwrap();
        assert!(none.found.is_none());
        assert_eq!(none.skipped.len(), 1);
        assert!(path.exists());
        fs::remove_dir_all(d).ok();
    }

    #[test]
    fn backup_keys_seal_too() {
        let d = dir("enc");
        let key = STANDARD.encode([9u8; 32]);
        let b = Backup::open(&d, &token("sig"), Some(&key)).unwrap();
        assert_eq!(b.key_source(), KeySource::BackupKey);
        let path = b.write(4, &snapshot(4)).unwrap();
        assert_eq!(b.load_newest().unwrap().found.unwrap().0.revision, 4);
        // The same key opens it after a token rotation.
        let rotated = Backup::open(&d, &token("new"), Some(&key)).unwrap();
        assert!(rotated.read(&path).is_ok());
        let other = Backup::open(&d, &token("sig"), Some(&STANDARD.encode([1u8; 32]))).unwrap();
        assert!(other.read(&path).is_err());
        let tokened = Backup::open(&d, &token("sig"), None).unwrap();
        let err = tokened.read(&path).unwrap_err().to_string();
        assert!(err.contains("GATEHOUSE_BACKUP_KEY"), "{err}");
        assert!(Backup::open(&d, &token("sig"), Some("short")).is_err());
        fs::remove_dir_all(d).ok();
    }

    #[test]
    fn an_old_generation_cannot_be_replayed_as_a_newer_one() {
        let d = dir("replay");
        let b = Backup::open(&d, &token("sig"), None).unwrap();
        let old = b.write(1, &snapshot(1)).unwrap();
        b.write(2, &snapshot(2)).unwrap();
        let newest = b.write(3, &snapshot(3)).unwrap();
        // Renamed into a newer generation: the sequence number is bound into the seal.
        let replayed = d.join(format!("{PREFIX}{:012}{SUFFIX}", 4));
        fs::copy(&old, &replayed).unwrap();
        assert!(matches!(b.read(&replayed), Err(ReadError::Sealed(_))));
        let (snapshot, path) = b.load_newest().unwrap().found.unwrap();
        assert_eq!(snapshot.revision, 3);
        assert_eq!(path, newest);
        // Relabelled with a newer revision: the revision is bound too.
        let mut envelope: serde_json::Value =
            serde_json::from_slice(&fs::read(&newest).unwrap()).unwrap();
        envelope["revision"] = 9.into();
        fs::write(&newest, serde_json::to_vec(&envelope).unwrap()).unwrap();
        assert!(b.read(&newest).is_err());
        // Moved to another gateway's volume: refused.
        let elsewhere = Backup::open(
            &d,
            &GatewayToken::parse("GatewayKey other&209901010000&sig").unwrap(),
            None,
        )
        .unwrap();
        let err = elsewhere.read(&old).unwrap_err().to_string();
        assert!(err.contains("belongs to gateway 'edge'"), "{err}");
        fs::remove_dir_all(d).ok();
    }

    #[test]
    fn older_formats_are_left_alone_with_a_reason() {
        let d = dir("format1");
        let b = Backup::open(&d, &token("sig"), None).unwrap();
        let path = d.join(format!("{PREFIX}{:012}{SUFFIX}", 1));
        fs::write(
            &path,
            br#"{"format":1,"revision":1,"createdAt":"x","encrypted":false,"sha256":"","payload":""}"#,
        )
        .unwrap();
        let err = b.read(&path).unwrap_err();
        assert!(matches!(err, ReadError::Sealed(_)), "{err}");
        assert!(err.to_string().contains("format 1"));
        fs::remove_dir_all(d).ok();
    }

    proptest::proptest! {
        /// Whatever is in a backup file, decoding returns: arbitrary bytes, and arbitrary
        /// payloads inside a well-formed envelope with a matching checksum (to reach the
        /// decryption and the snapshot parser). The `fuzz/` target `backup_file` runs the same.
        #[test]
        fn any_file_content_is_decoded_or_refused(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            encrypted in proptest::prelude::any::<bool>(),
            revision in 0u64..4,
        ) {
            // Its own directory: opening one sweeps stale temporary files from it.
            let d = dir("decode");
            let tokened = Backup::open(&d, &token("sig"), None).unwrap();
            let keyed = Backup::open(&d, &token("sig"), Some(&STANDARD.encode([3u8; 32]))).unwrap();
            let wrapped = serde_json::to_vec(&Envelope {
                format: ENVELOPE_FORMAT,
                gateway_id: "edge".into(),
                revision,
                created_at: String::new(),
                key_source: if encrypted { KeySource::BackupKey } else { KeySource::GatewayToken },
                sha256: sha256_hex(&bytes),
                payload: STANDARD.encode(&bytes),
            })
            .unwrap();
            for b in [&tokened, &keyed] {
                let _ = b.decode(revision, &bytes);
                let _ = b.decode(revision, &wrapped);
            }
            fs::remove_dir_all(d).ok();
        }
    }

    /// A delta from `revision - 1` adding subscription `s<revision>`, its JSON, and the result.
    fn delta_on(base: &Snapshot) -> (Delta, Vec<u8>, Snapshot) {
        let revision = base.revision + 1;
        let delta = Delta {
            format: FORMAT_VERSION,
            base: base.revision,
            revision,
            gateway_id: "edge".into(),
            subscriptions: vec![gatehouse_model::snapshot::SnapshotSubscription {
                id: format!("s{revision}"),
                scope: "/apis".into(),
                state: gatehouse_model::resources::SubscriptionState::Active,
                key_hashes: vec![format!("{revision:064x}")],
                name: String::new(),
            }],
            ..Delta::default()
        };
        let json = serde_json::to_vec(&delta).unwrap();
        let next = delta.apply_owned(base.clone()).unwrap();
        (delta, json, next)
    }

    fn base_snapshot(revision: u64) -> Snapshot {
        serde_json::from_slice(&snapshot(revision)).unwrap()
    }

    /// Writes a base at 10 and `n` deltas after it; returns the final snapshot.
    fn base_and_deltas(b: &Backup, n: usize) -> Snapshot {
        let mut current = base_snapshot(10);
        b.write(10, &snapshot(10)).unwrap();
        for _ in 0..n {
            let (delta, json, next) = delta_on(&current);
            let saved = b.save_delta(&delta, &json, &next).unwrap();
            assert!(matches!(saved, Saved::Delta { .. }), "{saved:?}");
            current = next;
        }
        current
    }

    #[test]
    fn deltas_are_appended_and_replayed_over_the_base() {
        let d = dir("replay-log");
        let b = Backup::open(&d, &token("sig"), None).unwrap();
        let last = base_and_deltas(&b, 5);
        assert_eq!(
            b.generations().unwrap().len(),
            1,
            "a delta wrote a whole base"
        );
        let log = fs::metadata(d.join(LOG_FILE)).unwrap().len();
        assert!(
            log < 5 * 1024,
            "5 one-subscription records take {log} bytes"
        );
        // A fresh process (same token) reads base + log.
        let again = Backup::open(&d, &token("sig"), None).unwrap();
        let loaded = again.load_newest().unwrap();
        assert_eq!(loaded.replayed, 5);
        assert!(loaded.log_warning.is_none());
        assert_eq!(loaded.found.unwrap().0, last);
        // And it goes on appending where the log ends.
        let (delta, json, next) = delta_on(&last);
        assert!(matches!(
            again.save_delta(&delta, &json, &next).unwrap(),
            Saved::Delta { .. }
        ));
        assert_eq!(again.load_newest().unwrap().found.unwrap().0, next);
        // Another key cannot read the deltas either: it stops at the base with a reason.
        let other = Backup::open(&d, &token("other"), None).unwrap();
        assert!(other.load_newest().unwrap().found.is_none());
        fs::remove_dir_all(d).ok();
    }

    #[test]
    fn a_torn_or_damaged_last_record_is_cut_off_with_a_warning() {
        let d = dir("torn");
        let b = Backup::open(&d, &token("sig"), None).unwrap();
        let last = base_and_deltas(&b, 3);
        let log = d.join(LOG_FILE);
        let whole = fs::read(&log).unwrap();
        let one = whole.len() / 3;
        for cut in [
            whole.len() - 1,
            whole.len() - one + 3,
            whole.len() - one + 50,
        ] {
            fs::write(&log, &whole[..cut]).unwrap();
            let b = Backup::open(&d, &token("sig"), None).unwrap();
            let loaded = b.load_newest().unwrap();
            let (snapshot, _) = loaded.found.unwrap();
            assert_eq!(snapshot.revision, last.revision - 1, "cut at {cut}");
            assert_eq!(loaded.replayed, 2);
            let why = loaded.log_warning.unwrap();
            assert!(
                why.contains("record 3") && why.contains("cut short"),
                "{why}"
            );
            // Cut back to the last whole record, so the next append follows it.
            assert_eq!(
                fs::metadata(&log).unwrap().len() as usize,
                whole.len() - one
            );
            let (delta, json, next) = delta_on(&snapshot);
            b.save_delta(&delta, &json, &next).unwrap();
            let again = Backup::open(&d, &token("sig"), None)
                .unwrap()
                .load_newest()
                .unwrap();
            assert_eq!(again.found.unwrap().0, next);
            assert!(again.log_warning.is_none());
        }
        // A flipped byte in the last record: its checksum fails, the same way.
        fs::write(&log, &whole).unwrap();
        let mut damaged = whole.clone();
        let at = damaged.len() - 10;
        damaged[at] ^= 0x40;
        fs::write(&log, &damaged).unwrap();
        let b = Backup::open(&d, &token("sig"), None).unwrap();
        let loaded = b.load_newest().unwrap();
        assert_eq!(loaded.found.unwrap().0.revision, last.revision - 1);
        assert!(loaded.log_warning.unwrap().contains("checksum"));
        fs::remove_dir_all(d).ok();
    }

    #[test]
    fn a_corrupt_base_still_falls_back_and_its_log_is_not_misapplied() {
        let d = dir("corrupt-base");
        let b = Backup::open(&d, &token("sig"), None).unwrap();
        b.write(5, &snapshot(5)).unwrap();
        let last = base_and_deltas(&b, 2);
        let newest = b.generations().unwrap()[0].1.clone();
        let mut bytes = fs::read(&newest).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x55;
        fs::write(&newest, bytes).unwrap();
        let b = Backup::open(&d, &token("sig"), None).unwrap();
        let loaded = b.load_newest().unwrap();
        assert_eq!(loaded.skipped.len(), 1);
        let (snapshot, _) = loaded.found.unwrap();
        // Revision 5: the log's deltas go from 10, so none applies.
        assert_eq!(snapshot.revision, 5);
        assert_eq!(loaded.replayed, 0);
        // The next delta (from 5) cannot follow the log: it is written as a whole base.
        let (delta, json, next) = delta_on(&snapshot);
        assert!(matches!(
            b.save_delta(&delta, &json, &next).unwrap(),
            Saved::Base { .. }
        ));
        assert_eq!(b.load_newest().unwrap().found.unwrap().0, next);
        assert!(last.revision > next.revision);
        fs::remove_dir_all(d).ok();
    }

    #[test]
    fn compaction_folds_the_log_into_a_new_base() {
        let d = dir("compact");
        let b = Backup::open(&d, &token("sig"), None).unwrap();
        let mut current = base_and_deltas(&b, 0);
        assert!(!b.needs_compaction());
        for _ in 0..COMPACT_RECORDS {
            let (delta, json, next) = delta_on(&current);
            b.save_delta(&delta, &json, &next).unwrap();
            current = next;
        }
        assert!(b.needs_compaction());
        let path = b.compact(&current).unwrap().unwrap();
        assert!(!b.needs_compaction());
        assert_eq!(fs::metadata(d.join(LOG_FILE)).unwrap().len(), 0);
        assert_eq!(b.read(&path).unwrap(), current);
        // Compacting again at the same revision does nothing.
        assert!(b.compact(&current).unwrap().is_none());
        // Deltas after the compaction go on the new base.
        let (delta, json, next) = delta_on(&current);
        b.save_delta(&delta, &json, &next).unwrap();
        let loaded = Backup::open(&d, &token("sig"), None)
            .unwrap()
            .load_newest()
            .unwrap();
        assert_eq!(loaded.replayed, 1);
        assert_eq!(loaded.found.unwrap().0, next);
        fs::remove_dir_all(d).ok();
    }

    #[test]
    fn compaction_keeps_the_deltas_newer_than_its_base() {
        let d = dir("compact-behind");
        let b = Backup::open(&d, &token("sig"), None).unwrap();
        let mut current = base_and_deltas(&b, 2);
        // The compaction started from this snapshot; two more deltas land before it writes.
        let compacted = current.clone();
        for _ in 0..2 {
            let (delta, json, next) = delta_on(&current);
            b.save_delta(&delta, &json, &next).unwrap();
            current = next;
        }
        b.compact(&compacted).unwrap().unwrap();
        let loaded = Backup::open(&d, &token("sig"), None)
            .unwrap()
            .load_newest()
            .unwrap();
        assert_eq!(loaded.replayed, 2);
        assert_eq!(loaded.found.unwrap().0, current);
        fs::remove_dir_all(d).ok();
    }

    #[test]
    fn a_crash_between_the_new_base_and_the_log_cut_replays_nothing_twice() {
        let d = dir("crash-compact");
        let b = Backup::open(&d, &token("sig"), None).unwrap();
        let last = base_and_deltas(&b, 4);
        let log = fs::read(d.join(LOG_FILE)).unwrap();
        b.compact(&last).unwrap().unwrap();
        // As if the process died after the rename of the new base, before the log was cut.
        fs::write(d.join(LOG_FILE), &log).unwrap();
        let b = Backup::open(&d, &token("sig"), None).unwrap();
        let loaded = b.load_newest().unwrap();
        assert_eq!(
            loaded.replayed, 0,
            "deltas the base holds were applied again"
        );
        assert!(loaded.log_warning.is_none());
        let (snapshot, _) = loaded.found.unwrap();
        assert_eq!(snapshot, last);
        // Appending still works, and the stale records are skipped again at the next start.
        let (delta, json, next) = delta_on(&snapshot);
        assert!(matches!(
            b.save_delta(&delta, &json, &next).unwrap(),
            Saved::Delta { .. }
        ));
        let loaded = Backup::open(&d, &token("sig"), None)
            .unwrap()
            .load_newest()
            .unwrap();
        assert_eq!(loaded.found.unwrap().0, next);
        fs::remove_dir_all(d).ok();
    }

    #[test]
    fn the_log_is_private() {
        let d = dir("log-mode");
        let b = Backup::open(&d, &token("sig"), None).unwrap();
        base_and_deltas(&b, 1);
        let mode = fs::metadata(d.join(LOG_FILE)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = fs::read(d.join(LOG_FILE)).unwrap();
        assert!(
            !String::from_utf8_lossy(&text).contains("s11"),
            "a delta is in clear"
        );
        fs::remove_dir_all(d).ok();
    }

    proptest::proptest! {
        /// Whatever follows the whole records of the log (garbage, a half record, a record
        /// with a forged checksum), loading returns the base plus the whole records before it.
        #[test]
        fn any_log_tail_is_replayed_up_to_the_last_whole_record(
            tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
            forged in proptest::prelude::any::<bool>(),
        ) {
            let d = dir("log-tail");
            let b = Backup::open(&d, &token("sig"), None).unwrap();
            let last = base_and_deltas(&b, 2);
            let mut bytes = fs::read(d.join(LOG_FILE)).unwrap();
            let tail = if forged { record_bytes(last.revision, last.revision + 1, &tail) } else { tail };
            bytes.extend_from_slice(&tail);
            fs::write(d.join(LOG_FILE), &bytes).unwrap();
            let loaded = Backup::open(&d, &token("sig"), None).unwrap().load_newest().unwrap();
            let (snapshot, _) = loaded.found.unwrap();
            proptest::prop_assert_eq!(snapshot, last);
            proptest::prop_assert_eq!(loaded.replayed, 2);
            proptest::prop_assert_eq!(loaded.log_warning.is_some(), !tail.is_empty());
            fs::remove_dir_all(d).ok();
        }
    }

    #[test]
    fn leftover_temporary_files_are_never_loaded() {
        let d = dir("tmp");
        fs::write(d.join("snapshot-000000000009.tmp"), b"partial").unwrap();
        let b = Backup::open(&d, &token("sig"), None).unwrap();
        assert!(b.load_newest().unwrap().found.is_none());
        // A fresh one may be another replica's write in progress: it stays.
        assert!(d.join("snapshot-000000000009.tmp").exists());
        fs::remove_dir_all(d).ok();
    }
}
