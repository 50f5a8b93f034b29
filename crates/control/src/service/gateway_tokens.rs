//! Gateway credentials: each gateway has a primary and a secondary key (stored sealed). A token
//! names the gateway and its expiry and is signed with HMAC-SHA512 under one key; regenerating
//! the key revokes its tokens at once, because verification always uses the key as it is now.
//! Refused tokens are counted per gateway, in memory, for the fleet status.

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use gatehouse_model::ValidationError;
use gatehouse_model::resources::Gateway;
use gatehouse_model::token::GatewayToken;
use gatehouse_store::{JsonRecord, Kind};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::instances::now_rfc3339;
use super::{ServiceError, ServiceResult, commit, load};
use crate::ControlPlane;
use crate::secrets;

/// The id of a gateway's key document (its parent is the gateway).
const KEYS_ID: &str = "keys";
/// The longest a token may live.
pub const MAX_TOKEN_LIFETIME: time::Duration = time::Duration::days(30);

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredGatewayKeys {
    primary_sealed: String,
    secondary_sealed: String,
}

impl JsonRecord for StoredGatewayKeys {
    const KIND: Kind = Kind::GatewayKeys;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase")]
pub enum KeyType {
    #[default]
    Primary,
    Secondary,
}

/// The gateway's keys in clear, if it has any yet.
async fn existing_keys(
    cp: &ControlPlane,
    gateway: &str,
) -> ServiceResult<Option<(String, String)>> {
    let internal = |e: secrets::SecretError| ServiceError::Internal(e.to_string());
    let stored = cp.store().repo::<StoredGatewayKeys>();
    let Some(k) = stored.get(gateway, KEYS_ID).await? else {
        return Ok(None);
    };
    Ok(Some((
        cp.sealer().open(&k.primary_sealed).map_err(internal)?,
        cp.sealer().open(&k.secondary_sealed).map_err(internal)?,
    )))
}

/// The gateway's keys in clear, creating them on first use.
async fn keys(cp: &ControlPlane, gateway: &str) -> ServiceResult<(String, String)> {
    let internal = |e: secrets::SecretError| ServiceError::Internal(e.to_string());
    if let Some(keys) = existing_keys(cp, gateway).await? {
        return Ok(keys);
    }
    let (primary, secondary) = (
        secrets::new_key().map_err(internal)?,
        secrets::new_key().map_err(internal)?,
    );
    store_keys(cp, gateway, &primary, &secondary).await?;
    Ok((primary, secondary))
}

async fn store_keys(
    cp: &ControlPlane,
    gateway: &str,
    primary: &str,
    secondary: &str,
) -> ServiceResult<()> {
    let internal = |e: secrets::SecretError| ServiceError::Internal(e.to_string());
    let stored = StoredGatewayKeys {
        primary_sealed: cp.sealer().seal(primary).map_err(internal)?,
        secondary_sealed: cp.sealer().seal(secondary).map_err(internal)?,
    };
    let mut tx = cp.store().begin().await?;
    tx.repo::<StoredGatewayKeys>()
        .put(gateway, KEYS_ID, &stored)
        .await?;
    // Keys are credentials, not configuration: no gateway needs a new snapshot for them. The
    // revision this bumps is still useful: it wakes the gateways' held config calls, so one
    // whose key was just regenerated calls again at once and is refused.
    commit(cp, tx).await?;
    Ok(())
}

fn sign(key: &str, gateway: &str, expiry_text: &str) -> String {
    let k = hmac::Key::new(hmac::HMAC_SHA512, key.as_bytes());
    let tag = hmac::sign(
        &k,
        GatewayToken::signed_text(gateway, expiry_text).as_bytes(),
    );
    STANDARD.encode(tag.as_ref())
}

/// Why a token was refused. The detail goes to the control plane's log and, counted, into the
/// gateway's status; the caller only ever hears [`TokenRejection::PUBLIC_MESSAGE`], so it
/// cannot tell an unknown gateway id from a bad signature (and enumerate gateway ids).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRejection {
    Malformed(String),
    UnknownGateway(String),
    BadSignature { gateway: String },
    Expired { gateway: String, at: String },
}

impl std::fmt::Display for TokenRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Malformed(m) => write!(f, "the gateway token is malformed: {m}"),
            Self::UnknownGateway(id) => {
                write!(f, "the token names gateway '{id}', which does not exist")
            }
            Self::BadSignature { gateway } => write!(
                f,
                "the token for gateway '{gateway}' matches neither gateway key: it was forged, or revoked by regenerating its key"
            ),
            Self::Expired { gateway, at } => {
                write!(f, "the token for gateway '{gateway}' expired at {at}")
            }
        }
    }
}

impl TokenRejection {
    /// What every caller with a refused token hears, whatever the reason.
    pub const PUBLIC_MESSAGE: &'static str = "the token is expired, revoked (its key was regenerated), malformed, or not issued by this control plane; generate a new one with `gatehouse gateway token <gateway id>`";

    /// A short machine-readable reason, for the log and the gateway's status.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::UnknownGateway(_) => "unknownGateway",
            Self::BadSignature { .. } => "invalidSignature",
            Self::Expired { .. } => "expired",
        }
    }

    /// The gateway the token names, when that gateway exists.
    pub fn existing_gateway(&self) -> Option<&str> {
        match self {
            Self::BadSignature { gateway } | Self::Expired { gateway, .. } => Some(gateway),
            Self::Malformed(_) | Self::UnknownGateway(_) => None,
        }
    }
}

/// Link calls refused for their token, per existing gateway, since the control plane started.
/// Kept in memory only: a refused call proves nothing about who made it, so it writes nothing
/// to the store and names no instance.
#[derive(Debug, Clone, Default)]
pub(crate) struct Refusals {
    pub count: u64,
    pub last_at: Option<String>,
    pub last_reason: Option<&'static str>,
}

/// Most gateways whose refusals are counted (one entry per gateway that exists).
const MAX_REFUSAL_ENTRIES: usize = 10_000;

impl ControlPlane {
    /// Counts a refused token against the gateway it names, if that gateway exists.
    pub(crate) fn count_refusal(&self, rejection: &TokenRejection) {
        let Some(gateway) = rejection.existing_gateway() else {
            return;
        };
        let Ok(mut map) = self.refusals.lock() else {
            return;
        };
        if map.len() >= MAX_REFUSAL_ENTRIES && !map.contains_key(gateway) {
            return;
        }
        let entry = map.entry(gateway.to_owned()).or_default();
        entry.count = entry.count.saturating_add(1);
        entry.last_at = Some(now_rfc3339());
        entry.last_reason = Some(rejection.code());
    }

    pub(crate) fn refusals_of(&self, gateway: &str) -> Refusals {
        self.refusals
            .lock()
            .ok()
            .and_then(|m| m.get(gateway).cloned())
            .unwrap_or_default()
    }
}

/// Checks a presented token. Returns the gateway it authenticates and its expiry.
pub async fn verify(
    cp: &ControlPlane,
    text: &str,
) -> ServiceResult<Result<(String, String), TokenRejection>> {
    let token = match GatewayToken::parse(text) {
        Ok(t) => t,
        Err(e) => return Ok(Err(TokenRejection::Malformed(e.to_string()))),
    };
    // An unknown gateway goes through the same reads and signature checks as a known one
    // (against keys nobody has), so the time of the answer does not tell them apart either.
    let exists = super::load_opt::<Gateway>(cp, "", &token.gateway_id)
        .await?
        .is_some();
    // A gateway without keys has issued no token; a refused call creates none (it writes
    // nothing at all).
    let keys = existing_keys(cp, &token.gateway_id).await?;
    let valid = match (&keys, STANDARD.decode(&token.signature)) {
        (Some((primary, secondary)), Ok(presented)) => {
            signed_by(&token, primary, secondary, &presented)
        }
        (None, Ok(presented)) => {
            signed_by(&token, NOBODYS_KEY, NOBODYS_KEY, &presented);
            false
        }
        (_, Err(_)) => false,
    };
    if !exists {
        return Ok(Err(TokenRejection::UnknownGateway(token.gateway_id)));
    }
    if !valid {
        return Ok(Err(TokenRejection::BadSignature {
            gateway: token.gateway_id.clone(),
        }));
    }
    let expiry = expiry_time(&token);
    if expiry.is_none_or(|e| e <= OffsetDateTime::now_utc()) {
        return Ok(Err(TokenRejection::Expired {
            gateway: token.gateway_id.clone(),
            at: token.expiry_rfc3339(),
        }));
    }
    Ok(Ok((token.gateway_id.clone(), token.expiry_rfc3339())))
}

/// Stands in for the keys of a gateway that has none.
const NOBODYS_KEY: &str = "no gateway has this key";

/// Whether `presented` is the token's signature under either key.
fn signed_by(token: &GatewayToken, primary: &str, secondary: &str, presented: &[u8]) -> bool {
    let message = GatewayToken::signed_text(&token.gateway_id, &token.expiry_text);
    [primary, secondary].iter().fold(false, |valid, key| {
        let k = hmac::Key::new(hmac::HMAC_SHA512, key.as_bytes());
        // Both keys are always tried: no early exit.
        hmac::verify(&k, message.as_bytes(), presented).is_ok() | valid
    })
}

fn expiry_time(token: &GatewayToken) -> Option<OffsetDateTime> {
    let (y, mo, d, h, mi) = token.expiry;
    let month = time::Month::try_from(mo).ok()?;
    let date = time::Date::from_calendar_date(y, month, d).ok()?;
    let t = time::Time::from_hms(h, mi, 0).ok()?;
    Some(time::PrimitiveDateTime::new(date, t).assume_utc())
}

/// A token for gateway `id`, signed with its `key_type` key (created on first use), that
/// expires at `expiry` (RFC 3339, at most 30 days away; default: 30 days from now).
pub async fn generate_token(
    cp: &ControlPlane,
    id: &str,
    expiry: Option<&str>,
    key_type: KeyType,
) -> ServiceResult<String> {
    load::<Gateway>(cp, "", id).await?;
    let now = OffsetDateTime::now_utc();
    let expiry = match expiry {
        Some(text) => OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .map_err(|_| {
            ValidationError::one(
                "expiry",
                format!("'{text}' is not an RFC 3339 time such as 2026-12-01T00:00:00Z"),
            )
        })?,
        None => now + MAX_TOKEN_LIFETIME,
    }
    .to_offset(time::UtcOffset::UTC);
    if expiry <= now {
        return Err(ValidationError::one("expiry", "is in the past").into());
    }
    if expiry > now + MAX_TOKEN_LIFETIME + time::Duration::minutes(1) {
        return Err(ValidationError::one("expiry", "must be at most 30 days away").into());
    }
    let expiry_text = format!(
        "{:04}{:02}{:02}{:02}{:02}",
        expiry.year(),
        u8::from(expiry.month()),
        expiry.day(),
        expiry.hour(),
        expiry.minute()
    );
    let (primary, secondary) = keys(cp, id).await?;
    let key = match key_type {
        KeyType::Primary => primary,
        KeyType::Secondary => secondary,
    };
    Ok(GatewayToken::format(
        id,
        &expiry_text,
        &sign(&key, id, &expiry_text),
    ))
}

/// Replaces gateway `id`'s `key_type` key: the tokens signed with the old one stop working.
pub async fn regenerate_key(cp: &ControlPlane, id: &str, key_type: KeyType) -> ServiceResult<()> {
    load::<Gateway>(cp, "", id).await?;
    let (mut primary, mut secondary) = keys(cp, id).await?;
    let fresh = secrets::new_key().map_err(|e| ServiceError::Internal(e.to_string()))?;
    match key_type {
        KeyType::Primary => primary = fresh,
        KeyType::Secondary => secondary = fresh,
    }
    store_keys(cp, id, &primary, &secondary).await
}

/// Gateway `id`'s keys in clear, (primary, secondary), created on first use.
pub async fn list_keys(cp: &ControlPlane, id: &str) -> ServiceResult<(String, String)> {
    load::<Gateway>(cp, "", id).await?;
    keys(cp, id).await
}
