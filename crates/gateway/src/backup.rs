//! The backup volume: every applied snapshot is saved so a gateway can start while its control
//! plane is unreachable.
//!
//! Each generation is one file, `snapshot-<seq>.json`, holding an envelope with the revision, a
//! SHA-256 of the payload, and the payload itself (the snapshot's JSON, sealed with AES-256-GCM
//! when a backup key is configured). A generation is written to a temporary file, fsynced,
//! renamed into place and the directory fsynced, so a crash leaves either the whole file or none.
//! Loading tries the newest generation first and falls back to older ones; a generation that
//! fails its checksum is renamed `*.corrupt` and never served. The newest three are kept.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use gatehouse_model::snapshot::Snapshot;
use serde::{Deserialize, Serialize};

/// Generations kept on disk.
pub const KEEP: usize = 3;
const PREFIX: &str = "snapshot-";
const SUFFIX: &str = ".json";
const ENVELOPE_FORMAT: u32 = 1;

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

fn io(path: &Path) -> impl Fn(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.display().to_string(),
        source,
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    format: u32,
    revision: u64,
    created_at: String,
    encrypted: bool,
    /// Lower-case hex SHA-256 of the decoded payload bytes.
    sha256: String,
    /// Base64 of the snapshot JSON, or of nonce ‖ ciphertext ‖ tag when encrypted.
    payload: String,
}

/// A generation that loaded and verified.
#[derive(Debug)]
pub struct Loaded {
    pub snapshot: Snapshot,
    pub path: PathBuf,
    /// Newer generations that failed to verify and were set aside, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

pub struct Backup {
    dir: PathBuf,
    key: Option<LessSafeKey>,
}

impl std::fmt::Debug for Backup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backup")
            .field("dir", &self.dir)
            .field("encrypted", &self.key.is_some())
            .finish()
    }
}

impl Backup {
    /// Opens (creating if needed) the backup directory, and removes temporary files a crash may
    /// have left. `key` is the base64 of a 32-byte AES key, if secrets are to be encrypted.
    pub fn open(dir: &Path, key: Option<&str>) -> Result<Self, BackupError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let key = match key {
            Some(text) => {
                let bytes = STANDARD
                    .decode(text.trim())
                    .map_err(|_| BackupError::BadKey)?;
                let unbound =
                    UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| BackupError::BadKey)?;
                Some(LessSafeKey::new(unbound))
            }
            None => None,
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
            key,
        })
    }

    pub fn encrypted(&self) -> bool {
        self.key.is_some()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Generations on disk, newest first.
    pub fn generations(&self) -> Result<Vec<(u64, PathBuf)>, BackupError> {
        let mut found = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io(&self.dir))?.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(seq) = name
                .strip_prefix(PREFIX)
                .and_then(|r| r.strip_suffix(SUFFIX))
                .and_then(|n| n.parse::<u64>().ok())
            {
                found.push((seq, entry.path()));
            }
        }
        found.sort_by_key(|g| std::cmp::Reverse(g.0));
        Ok(found)
    }

    /// Saves `snapshot_json` (the bytes received from the control plane) as a new generation,
    /// then prunes old ones. Blocking: call it off the async runtime.
    pub fn write(&self, revision: u64, snapshot_json: &[u8]) -> Result<PathBuf, BackupError> {
        let payload = match &self.key {
            Some(key) => seal(key, snapshot_json)?,
            None => snapshot_json.to_vec(),
        };
        let envelope = Envelope {
            format: ENVELOPE_FORMAT,
            revision,
            created_at: now_rfc3339(),
            encrypted: self.key.is_some(),
            sha256: sha256_hex(&payload),
            payload: STANDARD.encode(&payload),
        };
        let bytes = serde_json::to_vec(&envelope)
            .map_err(|e| BackupError::Corrupt(format!("cannot encode a backup: {e}")))?;
        let existing = self.generations()?;
        let seq = existing.first().map_or(1, |(s, _)| s + 1);
        let path = self.dir.join(format!("{PREFIX}{seq:012}{SUFFIX}"));
        // Replicas may share one backup volume: the temporary name is unique to this writer,
        // and a rename onto a name another replica just used replaces one whole file with
        // another whole file.
        let tmp = self.dir.join(format!(
            "{PREFIX}{seq:012}.{}.{}.tmp",
            std::process::id(),
            time::OffsetDateTime::now_utc().unix_timestamp_nanos()
        ));
        {
            let mut file = fs::File::create(&tmp).map_err(io(&tmp))?;
            file.write_all(&bytes).map_err(io(&tmp))?;
            file.sync_all().map_err(io(&tmp))?;
        }
        fs::rename(&tmp, &path).map_err(io(&path))?;
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))?;
        for (_, old) in self.generations()?.into_iter().skip(KEEP) {
            let _ = fs::remove_file(old);
        }
        Ok(path)
    }

    /// The newest generation that verifies, setting aside newer ones that do not.
    pub fn load_newest(&self) -> Result<Option<Loaded>, BackupError> {
        let mut skipped = Vec::new();
        for (_, path) in self.generations()? {
            match self.read(&path) {
                Ok(snapshot) => {
                    return Ok(Some(Loaded {
                        snapshot,
                        path,
                        skipped,
                    }));
                }
                // Another replica sharing the volume may have pruned it meanwhile.
                Err(_) if !path.exists() => {}
                Err(reason) => {
                    let aside = path.with_extension("corrupt");
                    let _ = fs::rename(&path, &aside);
                    skipped.push((path, reason));
                }
            }
        }
        Ok(None)
    }

    /// Reads and verifies one generation.
    pub fn read(&self, path: &Path) -> Result<Snapshot, String> {
        let bytes = fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
        self.decode(&bytes)
    }

    /// Verifies and decodes the bytes of one generation, as read from its file. Public for the
    /// `backup_file` fuzz target.
    pub fn decode(&self, bytes: &[u8]) -> Result<Snapshot, String> {
        let envelope: Envelope = serde_json::from_slice(bytes)
            .map_err(|e| format!("it is not a backup envelope: {e}"))?;
        if envelope.format != ENVELOPE_FORMAT {
            return Err(format!("unknown backup format {}", envelope.format));
        }
        let payload = STANDARD
            .decode(&envelope.payload)
            .map_err(|_| "its payload is not base64".to_owned())?;
        if sha256_hex(&payload) != envelope.sha256 {
            return Err("its checksum does not match: the file is corrupt".to_owned());
        }
        let json = if envelope.encrypted {
            let key = self.key.as_ref().ok_or_else(|| {
                "it is encrypted and no backup key is configured (set GATEHOUSE_BACKUP_KEY)"
                    .to_owned()
            })?;
            open_sealed(key, payload)?
        } else {
            payload
        };
        let snapshot: Snapshot = serde_json::from_slice(&json)
            .map_err(|e| format!("its snapshot does not parse: {e}"))?;
        if snapshot.revision != envelope.revision {
            return Err("its revision does not match its snapshot".to_owned());
        }
        Ok(snapshot)
    }
}

fn seal(key: &LessSafeKey, plain: &[u8]) -> Result<Vec<u8>, BackupError> {
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce)
        .map_err(|_| BackupError::Corrupt("the system random generator failed".into()))?;
    let mut buf = plain.to_vec();
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut buf)
        .map_err(|_| BackupError::Corrupt("encryption failed".into()))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&buf);
    Ok(out)
}

fn open_sealed(key: &LessSafeKey, mut data: Vec<u8>) -> Result<Vec<u8>, String> {
    if data.len() < NONCE_LEN {
        return Err("its encrypted payload is too short".into());
    }
    let mut rest = data.split_off(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = data
        .as_slice()
        .try_into()
        .map_err(|_| "bad nonce".to_owned())?;
    let plain = key
        .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut rest)
        .map_err(|_| "it cannot be decrypted with the configured backup key".to_owned())?;
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
        let b = Backup::open(&d, None).unwrap();
        for r in 1..=5 {
            b.write(r, &snapshot(r)).unwrap();
        }
        assert_eq!(b.generations().unwrap().len(), KEEP);
        let loaded = b.load_newest().unwrap().unwrap();
        assert_eq!(loaded.snapshot.revision, 5);
        assert!(loaded.skipped.is_empty());
        fs::remove_dir_all(d).ok();
    }

    #[test]
    fn corrupt_newest_falls_back_and_is_set_aside() {
        let d = dir("corrupt");
        let b = Backup::open(&d, None).unwrap();
        b.write(1, &snapshot(1)).unwrap();
        let newest = b.write(2, &snapshot(2)).unwrap();
        let mut bytes = fs::read(&newest).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x55;
        fs::write(&newest, bytes).unwrap();
        let loaded = b.load_newest().unwrap().unwrap();
        assert_eq!(loaded.snapshot.revision, 1);
        assert_eq!(loaded.skipped.len(), 1);
        assert!(!newest.exists());
        assert!(newest.with_extension("corrupt").exists());
        // Truncated files and garbage are refused too.
        let p = b.write(3, &snapshot(3)).unwrap();
        fs::write(&p, b"{\"format\":1,").unwrap();
        assert_eq!(b.load_newest().unwrap().unwrap().snapshot.revision, 1);
        fs::remove_dir_all(d).ok();
    }

    #[test]
    fn encrypted_backups_need_their_key() {
        let d = dir("enc");
        let key = STANDARD.encode([9u8; 32]);
        let b = Backup::open(&d, Some(&key)).unwrap();
        let path = b.write(4, &snapshot(4)).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        let envelope: Envelope = serde_json::from_str(&text).unwrap();
        let payload = STANDARD.decode(envelope.payload).unwrap();
        assert!(!String::from_utf8_lossy(&payload).contains("edge"));
        assert_eq!(b.load_newest().unwrap().unwrap().snapshot.revision, 4);
        let other = Backup::open(&d, Some(&STANDARD.encode([1u8; 32]))).unwrap();
        assert!(other.read(&path).is_err());
        assert!(Backup::open(&d, Some("short")).is_err());
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
            let plain = Backup::open(&d, None).unwrap();
            let keyed = Backup::open(&d, Some(&STANDARD.encode([3u8; 32]))).unwrap();
            let wrapped = serde_json::to_vec(&Envelope {
                format: ENVELOPE_FORMAT,
                revision,
                created_at: String::new(),
                encrypted,
                sha256: sha256_hex(&bytes),
                payload: STANDARD.encode(&bytes),
            })
            .unwrap();
            for b in [&plain, &keyed] {
                let _ = b.decode(&bytes);
                let _ = b.decode(&wrapped);
            }
            fs::remove_dir_all(d).ok();
        }
    }

    #[test]
    fn leftover_temporary_files_are_never_loaded() {
        let d = dir("tmp");
        fs::write(d.join("snapshot-000000000009.tmp"), b"partial").unwrap();
        let b = Backup::open(&d, None).unwrap();
        assert!(b.load_newest().unwrap().is_none());
        // A fresh one may be another replica's write in progress: it stays.
        assert!(d.join("snapshot-000000000009.tmp").exists());
        fs::remove_dir_all(d).ok();
    }
}
