//! Subscriptions: who may call what. Keys are stored sealed, next to their SHA-256 (what
//! gateways receive); reads never return them, [`list_secrets`] does. Keys a caller chooses
//! must be unique; a product's `subscriptionsLimit` caps what one owner may hold.

use gatehouse_model::resources::{
    Api, Product, Scope, Subscription, SubscriptionKeys, SubscriptionState,
};
use gatehouse_store::records::SubscribeGuard;
use gatehouse_store::{JsonRecord, Kind};
use serde::{Deserialize, Serialize};

use super::{
    Saved, ServiceError, ServiceResult, check_id, commit, load, load_opt, merge, prepare, save,
};
use crate::ControlPlane;
use crate::secrets;

/// The keys of one subscription as stored: sealed, plus their hashes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredKeys {
    pub primary_sealed: String,
    pub secondary_sealed: String,
    pub primary_hash: String,
    pub secondary_hash: String,
}

impl JsonRecord for StoredKeys {
    const KIND: Kind = Kind::SubscriptionKeys;
}

fn internal(e: secrets::SecretError) -> ServiceError {
    ServiceError::Internal(e.to_string())
}

async fn load_keys(cp: &ControlPlane, id: &str) -> ServiceResult<Option<StoredKeys>> {
    Ok(cp.store().repo::<StoredKeys>().get("", id).await?)
}

/// Refuses a caller-chosen key that another subscription already uses.
async fn ensure_unique(
    cp: &ControlPlane,
    own: &str,
    hash: &str,
    target: &str,
) -> ServiceResult<()> {
    for stored in cp.store().repo::<StoredKeys>().list_all().await? {
        if stored.id == own {
            continue;
        }
        let k = stored.value;
        if k.primary_hash == hash || k.secondary_hash == hash {
            // A clash with another resource's state, not a malformed value.
            return Err(ServiceError::Conflict(format!(
                "the {target} is already used by another subscription; choose another key"
            )));
        }
    }
    Ok(())
}

async fn check_scope(cp: &ControlPlane, sub: &Subscription) -> ServiceResult<()> {
    let missing = |what: &str, id: &str| {
        ServiceError::missing_reference(
            "scope",
            format!("{what} '{id}' does not exist; create it first"),
        )
    };
    match sub.parsed_scope()? {
        Scope::AllApis => Ok(()),
        Scope::Api(id) => match load_opt::<Api>(cp, "", &id).await? {
            Some(_) => Ok(()),
            None => Err(missing("API", &id)),
        },
        Scope::Product(id) => match load_opt::<Product>(cp, "", &id).await? {
            Some(_) => Ok(()),
            None => Err(missing("product", &id)),
        },
    }
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// States that count against a product's `subscriptionsLimit`.
fn counts_against_limit(state: SubscriptionState) -> bool {
    matches!(
        state,
        SubscriptionState::Active | SubscriptionState::Submitted | SubscriptionState::Suspended
    )
}

/// Refuses `sub` when its owner already holds `limit` subscriptions to its scope, counting
/// inside `tx` so concurrent subscribes cannot each see room for one more.
async fn enforce_limit(
    tx: &mut gatehouse_store::Tx,
    sub: &Subscription,
    owner: &str,
    limit: u32,
) -> ServiceResult<()> {
    // Written first: on PostgreSQL a concurrent subscribe of the same user waits on that row
    // until this one commits, then counts what it committed. (SQLite runs one write
    // transaction at a time anyway.) Unversioned: no gateway needs it.
    tx.repo::<SubscribeGuard>()
        .put_unversioned("", owner, &SubscribeGuard {})
        .await?;
    let mut held = 0usize;
    for other in tx.repo::<Subscription>().list("").await? {
        if other.id != sub.id
            && other.owner_id.as_deref() == Some(owner)
            && other.scope == sub.scope
            && counts_against_limit(other.state)
        {
            held += 1;
        }
    }
    if held >= usize::try_from(limit).unwrap_or(usize::MAX) {
        return Err(ServiceError::Conflict(format!(
            "You already have {held} subscription(s) to this product, its limit."
        )));
    }
    Ok(())
}

/// Creates a subscription for a user, as the developer portal does: fresh keys, an id that
/// must be new, and the product's `subscriptionsLimit` enforced in the same transaction.
pub async fn create_for_user(cp: &ControlPlane, body: Subscription) -> ServiceResult<Subscription> {
    let id = body.id.clone();
    let sub = prepare(body, &id)?;
    if load_opt::<Subscription>(cp, "", &id).await?.is_some() {
        return Err(ServiceError::Conflict(format!(
            "Subscription '{id}' already exists."
        )));
    }
    let limit = match sub.parsed_scope()? {
        Scope::Product(product) => load_opt::<Product>(cp, "", &product)
            .await?
            .and_then(|p| p.subscriptions_limit),
        Scope::Api(_) | Scope::AllApis => None,
    };
    store_subscription(cp, sub, None, limit).await?;
    load::<Subscription>(cp, "", &id).await
}

/// Saves a subscription and (re)places its keys: given ones, kept ones, or fresh ones. With
/// `limit`, refuses it when its owner holds that many subscriptions to its scope already.
async fn store_subscription(
    cp: &ControlPlane,
    mut sub: Subscription,
    previous: Option<&Subscription>,
    limit: Option<u32>,
) -> ServiceResult<bool> {
    check_scope(cp, &sub).await?;
    let old = load_keys(cp, &sub.id).await?;
    let pick = |given: Option<String>, sealed: Option<&String>| -> ServiceResult<String> {
        match (given, sealed) {
            (Some(k), _) => Ok(k),
            (None, Some(s)) => cp.sealer().open(s).map_err(internal),
            (None, None) => secrets::new_key().map_err(internal),
        }
    };
    // Only keys a caller chose can clash with another subscription's: generated ones are 256
    // random bits. Checking those alone keeps creating subscriptions O(1), not O(n).
    let (given_primary, given_secondary) = (sub.primary_key.is_some(), sub.secondary_key.is_some());
    let primary = pick(
        sub.primary_key.take(),
        old.as_ref().map(|k| &k.primary_sealed),
    )?;
    let secondary = pick(
        sub.secondary_key.take(),
        old.as_ref().map(|k| &k.secondary_sealed),
    )?;
    let keys = StoredKeys {
        primary_hash: secrets::hash_key(&primary),
        secondary_hash: secrets::hash_key(&secondary),
        primary_sealed: cp.sealer().seal(&primary).map_err(internal)?,
        secondary_sealed: cp.sealer().seal(&secondary).map_err(internal)?,
    };
    if given_primary {
        ensure_unique(cp, &sub.id, &keys.primary_hash, "primaryKey").await?;
    }
    if given_secondary {
        ensure_unique(cp, &sub.id, &keys.secondary_hash, "secondaryKey").await?;
    }
    sub.created_date = previous
        .and_then(|p| p.created_date.clone())
        .or_else(|| Some(now()));
    let mut tx = cp.store().begin().await?;
    if let (Some(limit), Some(owner)) = (limit, sub.owner_id.clone()) {
        enforce_limit(&mut tx, &sub, &owner, limit).await?;
    }
    let created = save(&mut tx, "", &sub).await?;
    tx.repo::<StoredKeys>().put("", &sub.id, &keys).await?;
    commit(cp, tx).await?;
    Ok(created)
}

/// Every subscription, ordered by id.
pub async fn list(cp: &ControlPlane) -> ServiceResult<Vec<Subscription>> {
    super::load_all::<Subscription>(cp, "").await
}

pub async fn get(cp: &ControlPlane, id: &str) -> ServiceResult<Subscription> {
    load::<Subscription>(cp, "", id).await
}

/// Creates or replaces subscription `id` with the keys given, or its keys as they are, or
/// fresh ones; returns it as stored.
pub async fn put(
    cp: &ControlPlane,
    id: &str,
    body: Subscription,
) -> ServiceResult<Saved<Subscription>> {
    let sub = prepare(body, id)?;
    let previous = load_opt::<Subscription>(cp, "", id).await?;
    let created = store_subscription(cp, sub, previous.as_ref(), None).await?;
    let stored = load::<Subscription>(cp, "", id).await?;
    Ok(Saved {
        created,
        value: stored,
    })
}

/// Applies a JSON merge patch to subscription `id`; returns it as stored.
pub async fn patch(
    cp: &ControlPlane,
    id: &str,
    patch: serde_json::Value,
) -> ServiceResult<Subscription> {
    let existing = load::<Subscription>(cp, "", id).await?;
    let sub = merge(&existing, patch)?;
    store_subscription(cp, sub, Some(&existing), None).await?;
    load::<Subscription>(cp, "", id).await
}

/// Changes subscription `id`'s state, as a patch of `{"state": …}` does.
pub async fn set_state(
    cp: &ControlPlane,
    id: &str,
    state: SubscriptionState,
) -> ServiceResult<Subscription> {
    patch(cp, id, serde_json::json!({ "state": state })).await
}

/// Deletes subscription `id` and its keys.
pub async fn delete(cp: &ControlPlane, id: &str) -> ServiceResult<()> {
    check_id(Kind::Subscription, id)?;
    let mut tx = cp.store().begin().await?;
    if !tx.repo::<Subscription>().delete("", id).await? {
        return Err(ServiceError::not_found("Subscription", id));
    }
    tx.repo::<StoredKeys>().delete("", id).await?;
    commit(cp, tx).await?;
    Ok(())
}

/// Subscription `id`'s keys in clear.
pub async fn list_secrets(cp: &ControlPlane, id: &str) -> ServiceResult<SubscriptionKeys> {
    load::<Subscription>(cp, "", id).await?;
    let keys = load_keys(cp, id)
        .await?
        .ok_or_else(|| ServiceError::Internal(format!("subscription '{id}' has no stored keys")))?;
    Ok(SubscriptionKeys {
        primary_key: cp.sealer().open(&keys.primary_sealed).map_err(internal)?,
        secondary_key: cp.sealer().open(&keys.secondary_sealed).map_err(internal)?,
    })
}

/// Replaces subscription `id`'s primary or secondary key with a fresh one; the old one stops
/// working as soon as gateways have the new revision.
pub async fn regenerate(cp: &ControlPlane, id: &str, primary: bool) -> ServiceResult<()> {
    load::<Subscription>(cp, "", id).await?;
    let mut keys = load_keys(cp, id)
        .await?
        .ok_or_else(|| ServiceError::Internal(format!("subscription '{id}' has no stored keys")))?;
    let key = secrets::new_key().map_err(internal)?;
    let (sealed, hash) = (
        cp.sealer().seal(&key).map_err(internal)?,
        secrets::hash_key(&key),
    );
    if primary {
        keys.primary_sealed = sealed;
        keys.primary_hash = hash;
    } else {
        keys.secondary_sealed = sealed;
        keys.secondary_hash = hash;
    }
    let mut tx = cp.store().begin().await?;
    tx.repo::<StoredKeys>().put("", id, &keys).await?;
    commit(cp, tx).await?;
    Ok(())
}
