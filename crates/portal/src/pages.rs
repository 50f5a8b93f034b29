//! The pages anyone may read: home, products, APIs (with search) and the API reference.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use gatehouse_model::resources::{Api, Operation, validate_id};
use gatehouse_store::Kind;
use minijinja::context;
use minijinja::value::Serde;
use serde::{Deserialize, Serialize};

use crate::Portal;
use crate::catalog::Catalog;
use crate::error::{PortalError, PortalResult};
use crate::reference::{self, Doc};
use crate::session::Visitor;

type Shared = State<Arc<Portal>>;

/// A product as the pages list it.
#[derive(Debug, Serialize)]
pub struct ProductCard {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub subscription_required: bool,
    pub approval_required: bool,
    pub api_count: usize,
}

/// An API as the pages list it.
#[derive(Debug, Serialize)]
pub struct ApiCard {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub version: Option<String>,
    pub products: Vec<String>,
}

fn product_cards(catalog: &Catalog) -> Vec<ProductCard> {
    catalog
        .products
        .iter()
        .map(|p| ProductCard {
            id: p.id.clone(),
            name: p.display_name.clone(),
            description: p.description.clone(),
            subscription_required: p.subscription_required,
            approval_required: p.approval_required,
            api_count: catalog.product_apis.get(&p.id).map_or(0, Vec::len),
        })
        .collect()
}

fn api_card(catalog: &Catalog, api: &Api, products: &[String]) -> ApiCard {
    ApiCard {
        id: api.id.clone(),
        name: api.display_name.clone(),
        description: api.description.clone(),
        version: api.api_version.clone(),
        products: products
            .iter()
            .filter_map(|p| catalog.product_name(p).map(str::to_owned))
            .collect(),
    }
}

/// A valid resource id from a path, or "not found" (never a hint of what exists).
pub(crate) fn checked(kind: Kind, id: &str) -> PortalResult<()> {
    validate_id(kind.name(), id).map_err(|_| PortalError::NotFound)
}

pub async fn home(State(portal): Shared, visitor: Visitor) -> PortalResult<Response> {
    let catalog = portal.catalog(visitor.user.as_ref()).await?;
    let ctx = context! {
        products => Serde(product_cards(&catalog)),
        api_count => catalog.apis.len(),
    };
    portal.render(&visitor, "home.html", ctx).await
}

pub async fn products(State(portal): Shared, visitor: Visitor) -> PortalResult<Response> {
    let catalog = portal.catalog(visitor.user.as_ref()).await?;
    let ctx = context! { products => Serde(product_cards(&catalog)) };
    portal.render(&visitor, "products.html", ctx).await
}

pub async fn product(
    State(portal): Shared,
    visitor: Visitor,
    Path(id): Path<String>,
) -> PortalResult<Response> {
    checked(Kind::Product, &id)?;
    let catalog = portal.catalog(visitor.user.as_ref()).await?;
    let product = catalog.product(&id).ok_or(PortalError::NotFound)?;
    let apis: Vec<ApiCard> = catalog
        .apis
        .iter()
        .filter(|(_, holders)| holders.contains(&id))
        .map(|(api, holders)| api_card(&catalog, api, holders))
        .collect();
    let mine = match &visitor.user {
        Some(user) => portal
            .subscriptions_of(user)
            .await?
            .into_iter()
            .filter(|s| s.scope == format!("/products/{id}"))
            .collect(),
        None => Vec::new(),
    };
    let ctx = context! {
        product => Serde(product),
        apis => Serde(apis),
        subscriptions => Serde(mine),
    };
    portal.render(&visitor, "product.html", ctx).await
}

#[derive(Debug, Deserialize)]
pub struct Search {
    #[serde(default)]
    q: String,
}

fn matches(api: &Api, words: &[String]) -> bool {
    let haystack = format!(
        "{} {} {} {}",
        api.display_name,
        api.description.as_deref().unwrap_or_default(),
        api.id,
        api.path
    )
    .to_lowercase();
    words.iter().all(|w| haystack.contains(w.as_str()))
}

/// The API list, filtered by `q` (every word must appear in the name, description, id or
/// path). htmx asks for the list alone as the visitor types.
pub async fn apis(
    State(portal): Shared,
    visitor: Visitor,
    Query(search): Query<Search>,
) -> PortalResult<Response> {
    let catalog = portal.catalog(visitor.user.as_ref()).await?;
    let query: String = search.q.chars().take(200).collect();
    let words: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
    let found: Vec<ApiCard> = catalog
        .apis
        .iter()
        .filter(|(api, _)| matches(api, &words))
        .map(|(api, holders)| api_card(&catalog, api, holders))
        .collect();
    let ctx = context! {
        apis => Serde(found),
        q => query,
        total => catalog.apis.len(),
    };
    let template = if visitor.htmx {
        "api_list.html"
    } else {
        "apis.html"
    };
    portal.render(&visitor, template, ctx).await
}

/// The visible API `id`, with its operations sorted as stored.
async fn visible_api(
    portal: &Portal,
    visitor: &Visitor,
    id: &str,
) -> PortalResult<(Api, Vec<String>, Catalog)> {
    checked(Kind::Api, id)?;
    let catalog = portal.catalog(visitor.user.as_ref()).await?;
    let (api, holders) = catalog.api(id).cloned().ok_or(PortalError::NotFound)?;
    Ok((api, holders, catalog))
}

/// Gateway URLs of the API, for "how to call it".
fn base_urls(portal: &Portal, api: &Api) -> Vec<String> {
    portal
        .config
        .gateway_urls
        .iter()
        .map(|g| {
            if api.path.is_empty() {
                g.clone()
            } else {
                format!("{g}/{}", api.path)
            }
        })
        .collect()
}

pub async fn api(
    State(portal): Shared,
    visitor: Visitor,
    Path(id): Path<String>,
) -> PortalResult<Response> {
    let (api, holders, catalog) = visible_api(&portal, &visitor, &id).await?;
    let operations = portal.load_all::<Operation>(&id).await?;
    let document = portal.document(&id).await?;
    let doc = document.as_deref().map(Doc::new);
    let groups = reference::tag_groups(doc, &operations);
    let ctx = context! {
        api => Serde(&api),
        card => Serde(api_card(&catalog, &api, &holders)),
        doc_description => doc.and_then(|d| d.description()),
        doc_version => doc.and_then(|d| d.version()),
        has_document => doc.is_some(),
        groups => Serde(groups),
        operation_count => operations.len(),
        base_urls => base_urls(&portal, &api),
    };
    portal.render(&visitor, "api.html", ctx).await
}

/// The imported OpenAPI document, for download.
pub async fn document(
    State(portal): Shared,
    visitor: Visitor,
    Path(id): Path<String>,
) -> PortalResult<Response> {
    visible_api(&portal, &visitor, &id).await?;
    let doc = portal.document(&id).await?.ok_or(PortalError::NotFound)?;
    let body = serde_json::to_vec_pretty(doc.as_ref())
        .map_err(|e| PortalError::Internal(format!("cannot encode the document: {e}")))?;
    let disposition = format!("attachment; filename=\"{id}.openapi.json\"");
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}

pub async fn operation(
    State(portal): Shared,
    visitor: Visitor,
    Path((id, op_id)): Path<(String, String)>,
) -> PortalResult<Response> {
    let (api, _, _) = visible_api(&portal, &visitor, &id).await?;
    checked(Kind::Operation, &op_id)?;
    let op = portal
        .store
        .repo::<Operation>()
        .get(&id, &op_id)
        .await?
        .ok_or(PortalError::NotFound)?;
    let document = portal.document(&id).await?;
    let view = reference::operation_view(document.as_deref().map(Doc::new), &op);
    let subscriptions = match &visitor.user {
        Some(user) => portal.subscriptions_for_api(user, &id).await?,
        None => Vec::new(),
    };
    let ctx = context! {
        api => Serde(&api),
        op => Serde(&view),
        gateways => portal.config.gateway_urls.clone(),
        base_urls => base_urls(&portal, &api),
        subscriptions => Serde(subscriptions),
    };
    portal.render(&visitor, "operation.html", ctx).await
}
