//! The snapshot compiler: from the store to exactly what one gateway serves.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use gatehouse_model::resources::{
    Api, NamedValue, Operation, Product, Resource, Scope, Subscription, SubscriptionState, User,
    UserState,
};
use gatehouse_model::snapshot::{
    FORMAT_VERSION, Snapshot, SnapshotApi, SnapshotProduct, SnapshotSubscription,
};
use gatehouse_store::Store;

use crate::error::ApiError;
use crate::handlers::{policies, policy_fragments};

/// Where the API import keeps the OpenAPI document (as JSON), by API id.
const API_DOCUMENT: &str = "api-document";
use crate::handlers::subscriptions::StoredKeys;
use crate::secrets::Sealer;

/// The gateway of `gatehouse up`: every API is assigned to it.
pub const BUILT_IN_GATEWAY: &str = "built-in";

fn decode<R: Resource>(body: &str) -> Result<R, ApiError> {
    serde_json::from_str(body)
        .map_err(|e| ApiError::Internal(format!("stored {} is unreadable: {e}", R::KIND)))
}

pub async fn snapshot(
    store: &Store,
    sealer: &Sealer,
    gateway_id: &str,
) -> Result<Snapshot, ApiError> {
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
        let policy = store.get(policies::API, &api.id, "policy").await?;
        let operation_policies: BTreeMap<String, String> = store
            .list(policies::OPERATION, &api.id)
            .await?
            .into_iter()
            .map(|d| (d.id, d.body))
            .collect();
        let api_operations = operations.remove(&api.id).unwrap_or_default();
        // The imported OpenAPI document's response examples, for `mock-response`.
        let examples = match store.get(API_DOCUMENT, "", &api.id).await? {
            Some(text) => match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(doc) => crate::examples::extract(&doc, &api_operations),
                Err(e) => {
                    tracing::warn!(api = %api.id, error = %e, "the stored OpenAPI document is unreadable; no mock examples");
                    BTreeMap::new()
                }
            },
            None => BTreeMap::new(),
        };
        apis.push(SnapshotApi {
            examples,
            name: api.display_name.clone(),
            version: api.api_version.clone(),
            policy,
            operation_policies,
            operations: api_operations,
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
        let policy = store.get(policies::PRODUCT, &product.id, "policy").await?;
        products.push(SnapshotProduct {
            name: product.display_name.clone(),
            policy,
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
    // A blocked user's subscriptions stop working everywhere, as in Azure.
    let mut blocked: BTreeSet<String> = BTreeSet::new();
    for doc in store.list(User::KIND, "").await? {
        let user: User = decode(&doc.body)?;
        if user.state == UserState::Blocked {
            blocked.insert(user.id);
        }
    }
    let mut subscriptions = Vec::new();
    for doc in store.list(Subscription::KIND, "").await? {
        let mut sub: Subscription = decode(&doc.body)?;
        if sub.owner_id.as_ref().is_some_and(|o| blocked.contains(o)) {
            sub.state = SubscriptionState::Suspended;
        }
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
            name: sub.display_name.clone(),
            id: sub.id,
            scope: sub.scope,
            state: sub.state,
            key_hashes: vec![k.primary_hash, k.secondary_hash],
        });
    }

    let global_policy = store.get(policies::GLOBAL, "", "policy").await?;

    let texts = || {
        global_policy
            .iter()
            .chain(products.iter().filter_map(|p| p.policy.as_ref()))
            .chain(apis.iter().filter_map(|a| a.policy.as_ref()))
            .chain(apis.iter().flat_map(|a| a.operation_policies.values()))
    };
    // Ship only the policy fragments the shipped policies include (through others too).
    let all_fragments = policy_fragments::all_in(store).await?;
    let mut policy_fragments = BTreeMap::new();
    for text in texts() {
        for id in policy_fragments::reachable(text, &all_fragments) {
            if let Some(xml) = all_fragments.get(&id) {
                policy_fragments.insert(id, xml.clone());
            }
        }
    }
    // Ship only the named values the shipped policies and fragments use.
    let mut wanted: BTreeSet<String> = BTreeSet::new();
    for text in texts().chain(policy_fragments.values()) {
        wanted.extend(policies::referenced_names(text));
    }
    let mut named_values = BTreeMap::new();
    for name in wanted {
        let Some(body) = store.get(NamedValue::KIND, "", &name).await? else {
            continue;
        };
        let nv: NamedValue = decode(&body)?;
        let Some(value) = nv.value else { continue };
        let value = if nv.secret {
            sealer
                .open(&value)
                .map_err(|e| ApiError::Internal(e.to_string()))?
        } else {
            value
        };
        named_values.insert(name, value);
    }

    Ok(Snapshot {
        format: FORMAT_VERSION,
        revision,
        gateway_id: gateway_id.to_owned(),
        apis,
        products,
        subscriptions,
        global_policy,
        named_values,
        policy_fragments,
    })
}
