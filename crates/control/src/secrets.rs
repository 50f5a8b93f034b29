//! Secret material of the control plane: the admin token, generated subscription keys, and
//! encryption at rest for keys and secret named values (AES-256-GCM with a key kept in the data
//! directory, or given through `GATEHOUSE_SECRET_KEY`).

use std::io::Write;
use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::{constant_time, digest, rand};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("the system random generator failed")]
    Random,
}

/// Random bytes from the system generator.
pub fn random<const N: usize>() -> Result<[u8; N], SecretError> {
    let mut out = [0u8; N];
    rand::fill(&mut out).map_err(|_| SecretError::Random)?;
    Ok(out)
}

/// A fresh subscription key: 32 random bytes as 64 lower-case hex digits.
pub fn new_key() -> Result<String, SecretError> {
    Ok(hex(&random::<32>()?))
}

/// Lower-case hex SHA-256, the form in which keys are indexed and shipped to gateways.
pub fn hash_key(key: &str) -> String {
    hex(digest::digest(&digest::SHA256, key.as_bytes()).as_ref())
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// The admin token: read from the file if present, else created there (mode 0600).
/// Returns the token and whether it was just created.
pub fn admin_token(path: &Path) -> Result<(String, bool), SecretError> {
    if let Ok(text) = std::fs::read_to_string(path) {
        let token = text.trim().to_owned();
        if token.len() < 16 {
            return Err(SecretError::Invalid(format!(
                "{} holds no valid admin token; delete it to have a new one created",
                path.display()
            )));
        }
        return Ok((token, false));
    }
    let token = format!("gh_{}", URL_SAFE_NO_PAD.encode(random::<32>()?));
    if create_private(path, token.as_bytes())? {
        return Ok((token, true));
    }
    // Another control plane sharing the data directory created it first: use that one.
    let text = std::fs::read_to_string(path).map_err(|source| SecretError::Io {
        path: path.display().to_string(),
        source,
    })?;
    Ok((text.trim().to_owned(), false))
}

/// Creates `path` holding `bytes`, readable by its owner only, unless it exists. Returns false
/// when it existed. The file appears whole or not at all: control planes that share a data
/// directory and start at once each write a file of their own, and the first to link theirs
/// to `path` wins, so every one of them then reads the same complete content.
pub fn create_private(path: &Path, bytes: &[u8]) -> Result<bool, SecretError> {
    let io = |source| SecretError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.new", hex(&random::<8>()?)));
    let staged = path.with_file_name(name);
    write_private(&staged, bytes)?;
    let linked = std::fs::hard_link(&staged, path);
    let _ = std::fs::remove_file(&staged);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(io(e)),
    }
}

/// Writes a file only its owner can read.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), SecretError> {
    let io = |source| SecretError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)
}

/// Compares a presented token with the expected one in constant time.
pub fn token_matches(expected_hash: &[u8; 32], presented: &str) -> bool {
    let h = digest::digest(&digest::SHA256, presented.as_bytes());
    constant_time::verify_slices_are_equal(h.as_ref(), expected_hash).is_ok()
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, bytes).as_ref());
    out
}

/// Seals and opens secrets stored by the control plane.
pub struct Sealer {
    key: LessSafeKey,
    /// Signs the portal's Try it calls (`gatehouse_model::tryit`); derived from the secret
    /// key, so it stays the same across restarts and needs no file of its own.
    tryit_key: [u8; 32],
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

const SEALED_PREFIX: &str = "v1:";

impl Sealer {
    pub fn new(key: &[u8; 32]) -> Result<Self, SecretError> {
        let unbound = UnboundKey::new(&AES_256_GCM, key)
            .map_err(|_| SecretError::Invalid("bad encryption key".into()))?;
        let derive = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
        let tag = aws_lc_rs::hmac::sign(&derive, b"gatehouse try-it signing key v1");
        let mut tryit_key = [0u8; 32];
        tryit_key.copy_from_slice(tag.as_ref());
        Ok(Self {
            key: LessSafeKey::new(unbound),
            tryit_key,
        })
    }

    /// The key that signs Try it calls, shipped to gateways in their snapshots.
    pub fn tryit_key(&self) -> [u8; 32] {
        self.tryit_key
    }

    /// Loads the key from `GATEHOUSE_SECRET_KEY` (base64 of 32 bytes) if given, else from
    /// `path`, creating it there on first start.
    pub fn load(env_key: Option<&str>, path: &Path) -> Result<Self, SecretError> {
        let bytes = if let Some(text) = env_key {
            STANDARD.decode(text.trim()).map_err(|_| {
                SecretError::Invalid(
                    "GATEHOUSE_SECRET_KEY is not base64; generate one with `head -c32 /dev/urandom | base64`".into(),
                )
            })?
        } else if path.exists() {
            std::fs::read(path).map_err(|source| SecretError::Io {
                path: path.display().to_string(),
                source,
            })?
        } else {
            let key = random::<32>()?;
            if create_private(path, &key)? {
                key.to_vec()
            } else {
                // Another control plane sharing the data directory created it first.
                std::fs::read(path).map_err(|source| SecretError::Io {
                    path: path.display().to_string(),
                    source,
                })?
            }
        };
        let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            SecretError::Invalid(format!(
                "the secret key ({}) must be exactly 32 bytes",
                path.display()
            ))
        })?;
        Self::new(&key)
    }

    pub fn seal(&self, plain: &str) -> Result<String, SecretError> {
        let nonce_bytes = random::<NONCE_LEN>()?;
        let mut buf = plain.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::empty(),
                &mut buf,
            )
            .map_err(|_| SecretError::Invalid("encryption failed".into()))?;
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&buf);
        Ok(format!("{SEALED_PREFIX}{}", STANDARD.encode(out)))
    }

    pub fn open(&self, sealed: &str) -> Result<String, SecretError> {
        let bad = || {
            SecretError::Invalid(
                "a stored secret cannot be decrypted: was the secret key replaced?".into(),
            )
        };
        let data = sealed.strip_prefix(SEALED_PREFIX).ok_or_else(bad)?;
        let mut bytes = STANDARD.decode(data).map_err(|_| bad())?;
        if bytes.len() < NONCE_LEN {
            return Err(bad());
        }
        let mut rest = bytes.split_off(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = bytes.as_slice().try_into().map_err(|_| bad())?;
        let plain = self
            .key
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut rest)
            .map_err(|_| bad())?;
        String::from_utf8(plain.to_vec()).map_err(|_| bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trip_and_tamper() {
        let s = Sealer::new(&[7u8; 32]).unwrap();
        let sealed = s.seal("top secret").unwrap();
        assert!(!sealed.contains("top secret"));
        assert_eq!(s.open(&sealed).unwrap(), "top secret");
        let other = Sealer::new(&[8u8; 32]).unwrap();
        assert!(other.open(&sealed).is_err());
        assert!(s.open("v1:AAAA").is_err());
        assert!(s.open("garbage").is_err());
    }

    #[test]
    fn keys_and_hashes() {
        let k = new_key().unwrap();
        assert_eq!(k.len(), 64);
        assert_ne!(k, new_key().unwrap());
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn control_planes_starting_at_once_on_one_data_directory_share_the_token_and_key() {
        let dir = std::env::temp_dir().join(format!(
            "gh-secrets-race-{}-{}",
            std::process::id(),
            hex(&random::<8>().unwrap())
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let starts: Vec<_> = (0..8)
            .map(|_| {
                let dir = dir.clone();
                std::thread::spawn(move || {
                    let (token, created) = admin_token(&dir.join("admin-token")).unwrap();
                    let sealer = Sealer::load(None, &dir.join("secret.key")).unwrap();
                    (token, created, sealer.tryit_key())
                })
            })
            .collect();
        let results: Vec<_> = starts.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(results.iter().filter(|r| r.1).count(), 1, "one creates");
        assert!(
            results
                .iter()
                .all(|r| r.0 == results[0].0 && r.2 == results[0].2)
        );
        assert!(results[0].0.starts_with("gh_"));
        // Only the two files are left: no staged copies.
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["admin-token", "secret.key"]);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn token_comparison() {
        let h = sha256(b"gh_token");
        assert!(token_matches(&h, "gh_token"));
        assert!(!token_matches(&h, "gh_tokem"));
    }
}
