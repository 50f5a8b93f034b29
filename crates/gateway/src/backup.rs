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

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hkdf;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use gatehouse_model::snapshot::Snapshot;
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
    /// The newest generation that verified, and its file.
    pub found: Option<(Snapshot, PathBuf)>,
    /// Newer generations that could not be used, with the reason.
    pub skipped: Vec<(PathBuf, ReadError)>,
}

pub struct Backup {
    dir: PathBuf,
    gateway_id: String,
    key: LessSafeKey,
    key_source: KeySource,
    /// Set when the directory could not be made private (a volume owned by someone else).
    permission_warning: Option<String>,
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

    /// Saves `snapshot_json` (the bytes received from the control plane) as a new generation,
    /// then prunes old ones. Blocking: call it off the async runtime.
    pub fn write(&self, revision: u64, snapshot_json: &[u8]) -> Result<PathBuf, BackupError> {
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
        // Replicas may share one backup volume: the temporary name is unique to this writer,
        // and a rename onto a name another replica just used replaces one whole file with
        // another whole file.
        let tmp = self.dir.join(format!(
            "{PREFIX}{seq:012}.{}.{}.tmp",
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

    /// The newest generation that verifies. Newer ones that are damaged are set aside as
    /// `.corrupt`; whole ones sealed for another key are left in place.
    pub fn load_newest(&self) -> Result<Loaded, BackupError> {
        let mut skipped = Vec::new();
        for (_, path) in self.generations()? {
            match self.read(&path) {
                Ok(snapshot) => {
                    return Ok(Loaded {
                        found: Some((snapshot, path)),
                        skipped,
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
