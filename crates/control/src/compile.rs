//! The snapshot compiler: from the store to exactly what one gateway serves.

use std::collections::{BTreeSet, HashMap};

use gatehouse_model::resources::{Api, Operation, Product, Resource, Scope, Subscription};
use gatehouse_model::snapshot::{
    FORMAT_VERSION, Snapshot, SnapshotApi, SnapshotProduct, SnapshotSubscription,
};
use gatehouse_store::Store;

use crate::error::ApiError;
use crate::handlers::subscriptions::StoredKeys;

/// The gateway of `gatehouse up`: every API is assigned to it.
pub const BUILT_IN_GATEWAY: &str = "built-in";

fn decode<R: Resource>(body: &str) -> Result<R, ApiError> {
    serde_json::from_str(body)
        .map_err(|e| ApiError::Internal(format!("stored {} is unreadable: {e}", R::KIND)))
}

pub async fn snapshot(store: &Store, gateway_id: &str) -> Result<Snapshot, ApiError> {
    // Read the revision first: anything committed later is at least as new as it says.
    let revision = store.revision().await?;
    let assigned: Option<BTreeSet<String>> = if gateway_id == BUILT_IN_GATEWAY {
        None
    } else {
        Some(
            store
                .list("gateway-api", gateway_id)
                .await?
                .into_iter()
                .map(|d| d.id)
                .collect(),
        )
    };
    let serves = |api: &str| assigned.as_ref().is_none_or(|set| set.contains(api));

    let mut operations: HashMap<String, Vec<Operation>> = HashMap::new();
    for doc in store.list_all(Operation::KIND).await? {
        if serves(&doc.parent) {
            operations
                .entry(doc.parent.clone())
                .or_default()
                .push(decode(&doc.body)?);
        }
    }
    let mut apis = Vec::new();
    for doc in store.list(Api::KIND, "").await? {
        if !serves(&doc.id) {
            continue;
        }
        let api: Api = decode(&doc.body)?;
        apis.push(SnapshotApi {
            operations: operations.remove(&api.id).unwrap_or_default(),
            path: api.path,
            service_url: api.service_url,
            protocols: api.protocols,
            subscription_required: api.subscription_required,
            key_header: api.subscription_key_parameter_names.header,
            key_query: api.subscription_key_parameter_names.query,
            id: api.id,
        });
    }

    let mut product_apis: HashMap<String, Vec<String>> = HashMap::new();
    for doc in store.list_all("product-api").await? {
        if serves(&doc.id) {
            product_apis.entry(doc.parent).or_default().push(doc.id);
        }
    }
    let mut products = Vec::new();
    for doc in store.list(Product::KIND, "").await? {
        let product: Product = decode(&doc.body)?;
        let apis = product_apis.remove(&product.id).unwrap_or_default();
        if apis.is_empty() {
            continue;
        }
        products.push(SnapshotProduct {
            id: product.id,
            subscription_required: product.subscription_required,
            state: product.state,
            apis,
        });
    }

    let served_api = |id: &str| apis.iter().any(|a| a.id == id);
    let served_product = |id: &str| products.iter().any(|p| p.id == id);
    let mut keys: HashMap<String, StoredKeys> = HashMap::new();
    for doc in store.list_all(StoredKeys::KIND).await? {
        let k: StoredKeys = serde_json::from_str(&doc.body)
            .map_err(|e| ApiError::Internal(format!("stored keys are unreadable: {e}")))?;
        keys.insert(doc.id, k);
    }
    let mut subscriptions = Vec::new();
    for doc in store.list(Subscription::KIND, "").await? {
        let sub: Subscription = decode(&doc.body)?;
        let relevant = match Scope::parse(&sub.scope) {
            Ok(Scope::AllApis) => true,
            Ok(Scope::Api(id)) => served_api(&id),
            Ok(Scope::Product(id)) => served_product(&id),
            Err(_) => false,
        };
        if !relevant {
            continue;
        }
        let Some(k) = keys.remove(&sub.id) else {
            continue;
        };
        subscriptions.push(SnapshotSubscription {
            id: sub.id,
            scope: sub.scope,
            state: sub.state,
            key_hashes: vec![k.primary_hash, k.secondary_hash],
        });
    }

    Ok(Snapshot {
        format: FORMAT_VERSION,
        revision,
        gateway_id: gateway_id.to_owned(),
        apis,
        products,
        subscriptions,
    })
}
