//! Signing keys for `validate-jwt`, parsed once: the policy's own `<issuer-signing-keys>` when it
//! is compiled, an OpenID Connect provider's JWKS when the gateway fetches it. A key knows its
//! family (HMAC, RSA, EC P-256/P-384) so a token can only be checked with a key of the family its
//! `alg` names — an RSA public key is never used as an HMAC secret. Key material never appears in
//! `Debug` output or messages.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind};

/// The algorithms `validate-jwt` accepts.
pub const ALGORITHMS: [Algorithm; 11] = [
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// A supported algorithm named in a token's header or a JWK.
pub fn algorithm(name: &str) -> Option<Algorithm> {
    let alg: Algorithm = name.parse().ok()?;
    ALGORITHMS.contains(&alg).then_some(alg)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Hmac,
    Rsa,
    EcP256,
    EcP384,
}

/// One key a token's signature may be checked with.
#[derive(Clone)]
pub struct SigningKey {
    /// Matched against the token's `kid` when both are set.
    id: Option<String>,
    /// The one algorithm the key is for, when its JWK says so.
    alg: Option<Algorithm>,
    family: Family,
    key: DecodingKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("id", &self.id)
            .field("alg", &self.alg)
            .field("family", &self.family)
            .finish_non_exhaustive()
    }
}

fn url_b64(text: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(text.trim().trim_end_matches('='))
        .map_err(|_| "is not base64url".to_owned())
}

impl SigningKey {
    /// A symmetric key (HS256/384/512) given in base64, as Azure's `<key>` content is.
    pub fn symmetric_base64(id: Option<String>, text: &str) -> Result<Self, String> {
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let secret = STANDARD
            .decode(&compact)
            .or_else(|_| URL_SAFE_NO_PAD.decode(compact.trim_end_matches('=')))
            .map_err(|_| "the key is not base64".to_owned())?;
        if secret.is_empty() {
            return Err("the key is empty".to_owned());
        }
        Ok(Self {
            id,
            alg: None,
            family: Family::Hmac,
            key: DecodingKey::from_secret(&secret),
        })
    }

    /// An RSA public key from its modulus and exponent in base64url (`<key n="…" e="…"/>`, a JWK).
    pub fn rsa_components(id: Option<String>, n: &str, e: &str) -> Result<Self, String> {
        let n = url_b64(n).map_err(|m| format!("the modulus 'n' {m}"))?;
        let e = url_b64(e).map_err(|m| format!("the exponent 'e' {m}"))?;
        if n.len() < 256 {
            return Err("the modulus 'n' is shorter than 2048 bits".to_owned());
        }
        if e.is_empty() {
            return Err("the exponent 'e' is empty".to_owned());
        }
        Ok(Self {
            id,
            alg: None,
            family: Family::Rsa,
            key: DecodingKey::from_rsa_raw_components(&n, &e),
        })
    }

    /// An EC public key from its coordinates in base64url (a JWK).
    fn ec_components(id: Option<String>, crv: &str, x: &str, y: &str) -> Result<Self, String> {
        let (family, len) = match crv {
            "P-256" => (Family::EcP256, 32),
            "P-384" => (Family::EcP384, 48),
            other => return Err(format!("curve '{other}' is not supported")),
        };
        let (x, y) = (url_b64(x)?, url_b64(y)?);
        if x.len() != len || y.len() != len {
            return Err(format!("the coordinates do not fit curve {crv}"));
        }
        let mut point = Vec::with_capacity(1 + 2 * len);
        point.push(0x04);
        point.extend_from_slice(&x);
        point.extend_from_slice(&y);
        Ok(Self {
            id,
            alg: None,
            family,
            key: DecodingKey::from_ec_der(&point),
        })
    }

    /// An RSA or EC public key in PEM (`-----BEGIN PUBLIC KEY-----`), an extension to Azure's
    /// `<key>` forms for asymmetric keys without a certificate store.
    pub fn public_pem(id: Option<String>, pem: &str) -> Result<Self, String> {
        let bytes = pem.trim().as_bytes();
        if let Ok(key) = DecodingKey::from_rsa_pem(bytes) {
            return Ok(Self {
                id,
                alg: None,
                family: Family::Rsa,
                key,
            });
        }
        let key = DecodingKey::from_ec_pem(bytes)
            .map_err(|_| "the PEM is not an RSA or EC (P-256, P-384) public key".to_owned())?;
        let family = match key.kind() {
            DecodingKeyKind::SecretOrDer(point) if point.len() == 65 => Family::EcP256,
            DecodingKeyKind::SecretOrDer(point) if point.len() == 97 => Family::EcP384,
            _ => return Err("the EC key is not on curve P-256 or P-384".to_owned()),
        };
        Ok(Self {
            id,
            alg: None,
            family,
            key,
        })
    }

    /// One key of a JWKS; `Ok(None)` for keys that are not for signatures or not supported.
    fn from_jwk(jwk: &serde_json::Value) -> Result<Option<Self>, String> {
        let field = |name: &str| jwk.get(name).and_then(|v| v.as_str());
        if field("use").is_some_and(|u| u != "sig") {
            return Ok(None);
        }
        let alg = match field("alg") {
            Some(name) => match algorithm(name) {
                Some(a) => Some(a),
                None => return Ok(None),
            },
            None => None,
        };
        let id = field("kid").map(str::to_owned);
        let need = |name: &str| field(name).ok_or_else(|| format!("a JWK lacks '{name}'"));
        let mut key = match field("kty") {
            Some("RSA") => Self::rsa_components(id, need("n")?, need("e")?)?,
            Some("EC") => Self::ec_components(id, need("crv")?, need("x")?, need("y")?)?,
            Some("oct") => {
                let secret = url_b64(need("k")?)?;
                Self {
                    id,
                    alg: None,
                    family: Family::Hmac,
                    key: DecodingKey::from_secret(&secret),
                }
            }
            _ => return Ok(None),
        };
        if let Some(a) = alg.filter(|a| !key.family_allows(*a)) {
            return Err(format!("a JWK's alg {a:?} does not fit its key type"));
        }
        key.alg = alg;
        Ok(Some(key))
    }

    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    fn family_allows(&self, alg: Algorithm) -> bool {
        use Algorithm as A;
        match self.family {
            Family::Hmac => matches!(alg, A::HS256 | A::HS384 | A::HS512),
            Family::Rsa => matches!(
                alg,
                A::RS256 | A::RS384 | A::RS512 | A::PS256 | A::PS384 | A::PS512
            ),
            Family::EcP256 => alg == A::ES256,
            Family::EcP384 => alg == A::ES384,
        }
    }

    /// Whether this key may check a token signed with `alg` that names key `kid`.
    pub(crate) fn fits(&self, alg: Algorithm, kid: Option<&str>) -> bool {
        if self.alg.is_some_and(|a| a != alg) || !self.family_allows(alg) {
            return false;
        }
        match (kid, &self.id) {
            (Some(k), Some(id)) => k == id,
            _ => true,
        }
    }

    /// Checks `signature` (base64url) over `message` (`header.payload`).
    pub(crate) fn verify(&self, alg: Algorithm, message: &str, signature: &str) -> bool {
        jsonwebtoken::crypto::verify(signature, message.as_bytes(), &self.key, alg).unwrap_or(false)
    }
}

/// Where an OpenID Connect provider publishes its keys, from its discovery document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    pub jwks_uri: String,
    pub issuer: Option<String>,
}

/// The signing keys (and issuer) an OpenID Connect provider publishes.
#[derive(Debug, Clone, Default)]
pub struct OpenIdKeys {
    issuer: Option<String>,
    keys: Vec<SigningKey>,
}

impl OpenIdKeys {
    /// Reads a discovery document (`/.well-known/openid-configuration`).
    pub fn discovery(document: &[u8]) -> Result<Discovery, String> {
        let v: serde_json::Value = serde_json::from_slice(document)
            .map_err(|e| format!("the OpenID configuration is not JSON: {e}"))?;
        let jwks_uri = v
            .get("jwks_uri")
            .and_then(|u| u.as_str())
            .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
            .ok_or("the OpenID configuration has no http(s) 'jwks_uri'")?
            .to_owned();
        let issuer = v.get("issuer").and_then(|i| i.as_str()).map(str::to_owned);
        Ok(Discovery { jwks_uri, issuer })
    }

    /// Reads a JWKS (`{"keys": [...]}`). Keys for encryption or of unsupported types are skipped;
    /// a malformed supported key is an error (a provider's broken key set should be noticed).
    pub fn from_jwks(issuer: Option<String>, jwks: &[u8]) -> Result<Self, String> {
        let v: serde_json::Value =
            serde_json::from_slice(jwks).map_err(|e| format!("the JWKS is not JSON: {e}"))?;
        let list = v
            .get("keys")
            .and_then(|k| k.as_array())
            .ok_or("the JWKS has no 'keys' array")?;
        let mut keys = Vec::with_capacity(list.len());
        for jwk in list {
            if let Some(k) = SigningKey::from_jwk(jwk)? {
                keys.push(k);
            }
        }
        Ok(Self { issuer, keys })
    }

    /// The provider's issuer (`iss` of its tokens).
    pub fn issuer(&self) -> Option<&str> {
        self.issuer.as_deref()
    }

    pub fn keys(&self) -> &[SigningKey] {
        &self.keys
    }

    /// Whether a key has id `kid`.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.id.as_deref() == Some(kid))
    }
}
