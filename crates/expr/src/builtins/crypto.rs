//! `System.Security.Cryptography` in expressions: `HMACSHA1/256/384/512` and `HMACMD5`
//! (`new HMACSHA256(key).ComputeHash(bytes)`, `HMACSHA256.HashData(key, bytes)`), and the
//! hash algorithms `SHA1/256/384/512` and `MD5` (`SHA256.Create().ComputeHash(bytes)`,
//! `SHA256.HashData(bytes)`), and Azure's `byte[].Encrypt/Decrypt(alg, key, iv)` extensions
//! with AES (CBC, PKCS7 padding: .NET's defaults). The SHA family and AES run on aws-lc-rs;
//! MD5 (which aws-lc-rs does not offer) on the `md-5` crate, with HMAC over it built as RFC
//! 2104 describes.

use std::sync::Arc;

use aws_lc_rs::{digest, hmac};
use md5::Digest as _;

use super::{CallTys, Member, P, Rt, Sig, SigErr, sig};
use crate::error::{RtResult, RuntimeError};
use crate::types::{Class, Ty};
use crate::value::{Obj, Value};

/// A hash function a policy can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum HashAlg {
    Md5,
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlg {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Md5 => "MD5",
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
            Self::Sha384 => "SHA384",
            Self::Sha512 => "SHA512",
        }
    }

    fn digest_alg(self) -> Option<&'static digest::Algorithm> {
        match self {
            Self::Md5 => None,
            Self::Sha1 => Some(&digest::SHA1_FOR_LEGACY_USE_ONLY),
            Self::Sha256 => Some(&digest::SHA256),
            Self::Sha384 => Some(&digest::SHA384),
            Self::Sha512 => Some(&digest::SHA512),
        }
    }

    fn hmac_alg(self) -> Option<hmac::Algorithm> {
        match self {
            Self::Md5 => None,
            Self::Sha1 => Some(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY),
            Self::Sha256 => Some(hmac::HMAC_SHA256),
            Self::Sha384 => Some(hmac::HMAC_SHA384),
            Self::Sha512 => Some(hmac::HMAC_SHA512),
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self.digest_alg() {
            Some(alg) => digest::digest(alg, data).as_ref().to_vec(),
            None => md5::Md5::digest(data).to_vec(),
        }
    }

    fn mac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self.hmac_alg() {
            Some(alg) => hmac::sign(&hmac::Key::new(alg, key), data)
                .as_ref()
                .to_vec(),
            None => hmac_md5(key, data),
        }
    }
}

/// HMAC (RFC 2104) over MD5, whose block is 64 bytes.
fn hmac_md5(key: &[u8], data: &[u8]) -> Vec<u8> {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        let h = md5::Md5::digest(key);
        k[..h.len()].copy_from_slice(&h);
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = md5::Md5::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(data);
    let inner = inner.finalize();
    let mut outer = md5::Md5::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner);
    outer.finalize().to_vec()
}

/// A hash or keyed-hash object (`new HMACSHA256(key)`, `SHA256.Create()`).
#[derive(Debug)]
pub(crate) struct Hasher {
    pub alg: HashAlg,
    /// The key of an HMAC; `None` for a plain hash.
    pub key: Option<Arc<[u8]>>,
}

impl Hasher {
    pub(crate) fn type_name(&self) -> &'static str {
        match (self.alg, self.key.is_some()) {
            (HashAlg::Md5, true) => "HMACMD5",
            (HashAlg::Sha1, true) => "HMACSHA1",
            (HashAlg::Sha256, true) => "HMACSHA256",
            (HashAlg::Sha384, true) => "HMACSHA384",
            (HashAlg::Sha512, true) => "HMACSHA512",
            (alg, false) => alg.name(),
        }
    }
}

pub(crate) fn new_sig(class: Class, c: &CallTys<'_>) -> Sig {
    match class {
        // .NET makes a random key for `new HMACSHA256()`; a policy can't use a key it can't
        // know, so only the keyed constructor is offered.
        Class::Hmac(_) => sig(c, &[&[P::Bytes]], Ty::Hasher),
        _ => Err(SigErr::NotFound),
    }
}

pub(crate) fn new_value(class: Class, args: &[Value]) -> RtResult<Value> {
    match class {
        Class::Hmac(alg) => Ok(Value::obj(Obj::Hasher(Arc::new(Hasher {
            alg,
            key: Some(bytes_arg(args, 0, "key")?.into()),
        })))),
        _ => Err(RuntimeError::no_member("type", ".ctor")),
    }
}

pub(crate) fn static_sig(class: Class, m: Member, c: &CallTys<'_>) -> Sig {
    match (class, m) {
        (Class::Hash(_), Member::Create) => sig(c, &[&[]], Ty::Hasher),
        (Class::Hash(_), Member::HashData) => sig(c, &[&[P::Bytes]], Ty::Bytes),
        (Class::Hmac(_), Member::HashData) => sig(c, &[&[P::Bytes, P::Bytes]], Ty::Bytes),
        _ => Err(SigErr::NotFound),
    }
}

pub(crate) fn static_call(
    class: Class,
    m: Member,
    args: &[Value],
    rt: &mut Rt<'_>,
) -> RtResult<Value> {
    match (class, m) {
        (Class::Hash(alg), Member::Create) => {
            Ok(Value::obj(Obj::Hasher(Arc::new(Hasher { alg, key: None }))))
        }
        (Class::Hash(alg), Member::HashData) => {
            let data = bytes_arg(args, 0, "source")?;
            charge(rt, data.len())?;
            Ok(Value::Bytes(alg.hash(data).into()))
        }
        (Class::Hmac(alg), Member::HashData) => {
            let key = bytes_arg(args, 0, "key")?;
            let data = bytes_arg(args, 1, "source")?;
            charge(rt, data.len() + key.len())?;
            Ok(Value::Bytes(alg.mac(key, data).into()))
        }
        _ => Err(RuntimeError::no_member("type", m.name())),
    }
}

pub(crate) fn prop_ty(m: Member) -> Option<Ty> {
    match m {
        Member::Key => Some(Ty::Bytes),
        Member::HashSize => Some(Ty::Int),
        _ => None,
    }
}

pub(crate) fn method_sig(m: Member, c: &CallTys<'_>) -> Sig {
    match m {
        Member::ComputeHash => sig(c, &[&[P::Bytes], &[P::Bytes, P::Int, P::Int]], Ty::Bytes),
        Member::Dispose | Member::Clear => sig(c, &[&[]], Ty::Object),
        _ => Err(SigErr::NotFound),
    }
}

pub(crate) fn get(h: &Hasher, m: Member) -> RtResult<Value> {
    match m {
        Member::Key => match &h.key {
            Some(k) => Ok(Value::Bytes(k.clone())),
            None => Err(RuntimeError::no_member(h.type_name(), "Key")),
        },
        Member::HashSize => Ok(Value::Int(match h.alg {
            HashAlg::Md5 => 128,
            HashAlg::Sha1 => 160,
            HashAlg::Sha256 => 256,
            HashAlg::Sha384 => 384,
            HashAlg::Sha512 => 512,
        })),
        _ => Err(RuntimeError::no_member(h.type_name(), m.name())),
    }
}

pub(crate) fn call(h: &Hasher, m: Member, args: &[Value], rt: &mut Rt<'_>) -> RtResult<Value> {
    match m {
        Member::ComputeHash => {
            let all = bytes_arg(args, 0, "buffer")?;
            let data = if args.len() == 3 {
                let offset = super::arg_i64(args, 1)?;
                let count = super::arg_i64(args, 2)?;
                usize::try_from(offset)
                    .ok()
                    .zip(usize::try_from(count).ok())
                    .and_then(|(o, n)| all.get(o..o.checked_add(n)?))
                    .ok_or_else(|| {
                        RuntimeError::argument(format_args!(
                            "ComputeHash: offset {offset} and count {count} do not fit a buffer of {} bytes.",
                            all.len()
                        ))
                    })?
            } else {
                all
            };
            charge(rt, data.len())?;
            let out = match &h.key {
                Some(key) => h.alg.mac(key, data),
                None => h.alg.hash(data),
            };
            Ok(Value::Bytes(out.into()))
        }
        Member::Dispose | Member::Clear => Ok(Value::Null),
        _ => Err(RuntimeError::no_member(h.type_name(), m.name())),
    }
}

/// `input.Encrypt(alg, key, iv)` / `input.Decrypt(alg, key, iv)`: AES-CBC with PKCS7
/// padding, the defaults of .NET's `Aes` and `Rijndael` (128-bit block). The key is 16, 24 or
/// 32 bytes and the IV 16.
pub(crate) fn symmetric(
    input: &[u8],
    m: Member,
    args: &[Value],
    rt: &mut Rt<'_>,
) -> RtResult<Value> {
    use aws_lc_rs::cipher::{
        AES_128, AES_192, AES_256, DecryptionContext, EncryptionContext, PaddedBlockDecryptingKey,
        PaddedBlockEncryptingKey, UnboundCipherKey,
    };
    use aws_lc_rs::iv::FixedLength;
    let alg = super::arg_str(args, 0, "alg")?;
    let known = [
        "aes",
        "rijndael",
        "aesmanaged",
        "rijndaelmanaged",
        "aescryptoserviceprovider",
    ];
    let simple = alg.rsplit('.').next().unwrap_or(alg).to_ascii_lowercase();
    if !known.contains(&simple.as_str()) {
        return Err(RuntimeError::argument(format_args!(
            "{}: the algorithm '{alg}' is not supported; use \"Aes\" or \"Rijndael\" (AES-CBC, PKCS7).",
            m.name()
        )));
    }
    let key = bytes_arg(args, 1, "key")?;
    let iv = bytes_arg(args, 2, "iv")?;
    let cipher = match key.len() {
        16 => &AES_128,
        24 => &AES_192,
        32 => &AES_256,
        n => {
            return Err(RuntimeError::argument(format_args!(
                "{}: an AES key is 16, 24 or 32 bytes, not {n}.",
                m.name()
            )));
        }
    };
    let iv: [u8; 16] = iv.try_into().map_err(|_| {
        RuntimeError::argument(format_args!(
            "{}: the IV is 16 bytes, not {}.",
            m.name(),
            iv.len()
        ))
    })?;
    charge(rt, input.len())?;
    rt.alloc(input.len() + 16)?;
    let unbound = || {
        UnboundCipherKey::new(cipher, key)
            .map_err(|_| RuntimeError::argument("The AES key could not be used."))
    };
    if m == Member::Encrypt {
        let k = PaddedBlockEncryptingKey::cbc_pkcs7(unbound()?)
            .map_err(|_| RuntimeError::argument("The AES key could not be used."))?;
        let mut out = input.to_vec();
        k.less_safe_encrypt(&mut out, EncryptionContext::Iv128(FixedLength::from(iv)))
            .map_err(|_| RuntimeError::argument("Encrypt failed."))?;
        Ok(Value::Bytes(out.into()))
    } else {
        let k = PaddedBlockDecryptingKey::cbc_pkcs7(unbound()?)
            .map_err(|_| RuntimeError::argument("The AES key could not be used."))?;
        let mut buf = input.to_vec();
        let plain = k
            .decrypt(&mut buf, DecryptionContext::Iv128(FixedLength::from(iv)))
            .map_err(|_| {
                RuntimeError::new(
                    crate::error::ErrorKind::Format,
                    "Decrypt: the data is not valid for this key and IV (padding is invalid).",
                )
            })?;
        Ok(Value::Bytes(plain.to_vec().into()))
    }
}

/// Hashing is linear in the input: one step per 64-byte block.
fn charge(rt: &mut Rt<'_>, len: usize) -> RtResult<()> {
    rt.steps(len / 64 + 1)
}

fn bytes_arg<'v>(args: &'v [Value], i: usize, name: &str) -> RtResult<&'v [u8]> {
    match args.get(i) {
        Some(Value::Bytes(b)) => Ok(b),
        Some(Value::Null) | None => Err(super::null_argument(name)),
        Some(v) => Err(RuntimeError::cast(v.type_name(), "Byte[]")),
    }
}
