//! The signed-in user's side: subscribing to a product, and the profile page with the user's
//! subscriptions, their keys (shown on request), regeneration and cancellation. A user only
//! ever reaches their own subscriptions: any other id is "not found".

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use gatehouse_model::resources::{Subscription, SubscriptionKeys, SubscriptionState, User};
use gatehouse_store::Kind;
use minijinja::context;
use minijinja::value::Serde;
use serde::{Deserialize, Serialize};

use crate::Portal;
use crate::accounts::{Empty, MIN_PASSWORD};
use crate::error::{PortalError, PortalResult};
use crate::pages::checked;
use crate::session::{Posted, Visitor, random_hex};

type Shared = State<Arc<Portal>>;

#[derive(Debug, Serialize)]
struct SubscriptionRow {
    id: String,
    name: String,
    scope: String,
    product_id: Option<String>,
    product_name: Option<String>,
    state: SubscriptionState,
    created: Option<String>,
    active: bool,
    cancellable: bool,
}

#[derive(Debug, Deserialize, Default)]
pub struct ProfileQuery {
    notice: Option<String>,
}

fn notice_text(code: Option<&str>) -> Option<&'static str> {
    Some(match code? {
        "password" => "Your password was changed.",
        "subscribed" => "You are subscribed. Show the keys to start calling the APIs.",
        "submitted" => "Your subscription was submitted; an administrator will approve it.",
        "cancelled" => "The subscription was cancelled.",
        "regenerated" => "The key was regenerated; the old one no longer works.",
        _ => return None,
    })
}

impl Portal {
    async fn profile_page(
        &self,
        visitor: &Visitor,
        user: &User,
        notice: Option<&str>,
        revealed: Option<(&str, &SubscriptionKeys)>,
    ) -> PortalResult<Response> {
        let catalog = self.catalog(Some(user)).await?;
        let mut rows = Vec::new();
        for sub in self.subscriptions_of(user).await? {
            let product_id = sub.scope.strip_prefix("/products/").map(str::to_owned);
            let product_name = match &product_id {
                Some(p) => match catalog.product_name(p) {
                    Some(n) => Some(n.to_owned()),
                    None => self
                        .load_opt::<gatehouse_model::resources::Product>(p)
                        .await?
                        .map(|p| p.display_name),
                },
                None => None,
            };
            rows.push(SubscriptionRow {
                id: sub.id.clone(),
                name: sub.display_name.clone(),
                scope: sub.scope.clone(),
                product_id,
                product_name,
                state: sub.state,
                created: sub.created_date.clone(),
                active: sub.state == SubscriptionState::Active,
                cancellable: matches!(
                    sub.state,
                    SubscriptionState::Active | SubscriptionState::Submitted
                ),
            });
        }
        let ctx = context! {
            subscriptions => Serde(rows),
            notice => notice,
            revealed_id => revealed.map(|(id, _)| id.to_owned()),
            keys => revealed.map(|(_, k)| Serde(k.clone())),
            min_password => MIN_PASSWORD,
        };
        self.render(visitor, "profile.html", ctx).await
    }

    /// The user's own subscription `id`; anything else is "not found".
    async fn own_subscription(&self, user: &User, id: &str) -> PortalResult<Subscription> {
        checked(Kind::Subscription, id)?;
        let sub = self
            .load_opt::<Subscription>(id)
            .await?
            .ok_or(PortalError::NotFound)?;
        if sub.owner_id.as_deref() != Some(user.id.as_str()) {
            tracing::warn!(user = %user.id, subscription = %id, "portal user asked for another user's subscription");
            return Err(PortalError::NotFound);
        }
        Ok(sub)
    }

    async fn keys_fragment(
        &self,
        visitor: &Visitor,
        sub: &Subscription,
        keys: &SubscriptionKeys,
        notice: Option<&str>,
    ) -> PortalResult<Response> {
        let ctx = context! {
            sub => Serde(sub),
            keys => Serde(keys),
            notice => notice,
        };
        self.render(visitor, "keys.html", ctx).await
    }
}

pub async fn profile(
    State(portal): Shared,
    visitor: Visitor,
    Query(q): Query<ProfileQuery>,
) -> PortalResult<Response> {
    let Some(user) = visitor.user.clone() else {
        return Ok(Redirect::to("/portal/signin?next=/portal/profile").into_response());
    };
    portal
        .profile_page(&visitor, &user, notice_text(q.notice.as_deref()), None)
        .await
}

#[derive(Debug, Deserialize)]
pub struct SubscribeForm {
    #[serde(default)]
    name: String,
    accept_terms: Option<String>,
}

pub async fn subscribe(
    State(portal): Shared,
    Path(product_id): Path<String>,
    Posted { visitor, form }: Posted<SubscribeForm>,
) -> PortalResult<Response> {
    let user = visitor.user()?.clone();
    checked(Kind::Product, &product_id)?;
    let catalog = portal.catalog(Some(&user)).await?;
    let product = catalog
        .product(&product_id)
        .ok_or(PortalError::NotFound)?
        .clone();
    if !product.subscription_required {
        return Err(PortalError::BadRequest(
            "This product's APIs need no subscription: call them without a key.".into(),
        ));
    }
    if product.terms.is_some() && form.accept_terms.is_none() {
        return Err(PortalError::BadRequest(
            "Accept the product's terms of use to subscribe.".into(),
        ));
    }
    // The control plane enforces the product's `subscriptionsLimit` as it creates the
    // subscription, in one transaction: a check here could race another request.
    let scope = format!("/products/{product_id}");
    let name: String = form
        .name
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(100)
        .collect();
    let state = if product.approval_required {
        SubscriptionState::Submitted
    } else {
        SubscriptionState::Active
    };
    let subscription = Subscription {
        id: format!("s-{}", random_hex(8)?),
        scope,
        display_name: if name.is_empty() {
            product.display_name.clone()
        } else {
            name
        },
        state,
        owner_id: Some(user.id.clone()),
        allow_tracing: false,
        primary_key: None,
        secondary_key: None,
        created_date: None,
    };
    let created = portal.backend.create_subscription(subscription).await?;
    tracing::info!(user = %user.id, subscription = %created.id, product = %product_id, "portal subscription created");
    let notice = if state == SubscriptionState::Submitted {
        "submitted"
    } else {
        "subscribed"
    };
    Ok(Redirect::to(&format!("/portal/profile?notice={notice}")).into_response())
}

pub async fn keys(
    State(portal): Shared,
    Path(id): Path<String>,
    Posted { visitor, .. }: Posted<Empty>,
) -> PortalResult<Response> {
    let user = visitor.user()?.clone();
    let sub = portal.own_subscription(&user, &id).await?;
    if sub.state != SubscriptionState::Active {
        return Err(PortalError::BadRequest(
            "Keys are shown for active subscriptions only.".into(),
        ));
    }
    let keys = portal.backend.subscription_keys(&id).await?;
    if visitor.htmx {
        portal.keys_fragment(&visitor, &sub, &keys, None).await
    } else {
        portal
            .profile_page(&visitor, &user, None, Some((&id, &keys)))
            .await
    }
}

#[derive(Debug, Deserialize)]
pub struct RegenerateForm {
    #[serde(default)]
    key: String,
}

pub async fn regenerate(
    State(portal): Shared,
    Path(id): Path<String>,
    Posted { visitor, form }: Posted<RegenerateForm>,
) -> PortalResult<Response> {
    let user = visitor.user()?.clone();
    let sub = portal.own_subscription(&user, &id).await?;
    if sub.state != SubscriptionState::Active {
        return Err(PortalError::BadRequest(
            "Keys can be regenerated for active subscriptions only.".into(),
        ));
    }
    portal
        .key_changes
        .take(&visitor.ip)
        .map_err(PortalError::Throttled)?;
    let primary = match form.key.as_str() {
        "primary" => true,
        "secondary" => false,
        _ => {
            return Err(PortalError::BadRequest(
                "Choose the primary or the secondary key.".into(),
            ));
        }
    };
    portal.backend.regenerate_key(&id, primary).await?;
    tracing::info!(user = %user.id, subscription = %id, primary, "portal key regenerated");
    if visitor.htmx {
        let keys = portal.backend.subscription_keys(&id).await?;
        let notice = if primary {
            "The primary key was regenerated; the old one no longer works."
        } else {
            "The secondary key was regenerated; the old one no longer works."
        };
        portal
            .keys_fragment(&visitor, &sub, &keys, Some(notice))
            .await
    } else {
        Ok(Redirect::to("/portal/profile?notice=regenerated").into_response())
    }
}

pub async fn cancel(
    State(portal): Shared,
    Path(id): Path<String>,
    Posted { visitor, .. }: Posted<Empty>,
) -> PortalResult<Response> {
    let user = visitor.user()?.clone();
    let sub = portal.own_subscription(&user, &id).await?;
    if !matches!(
        sub.state,
        SubscriptionState::Active | SubscriptionState::Submitted
    ) {
        return Err(PortalError::BadRequest(
            "Only active or submitted subscriptions can be cancelled.".into(),
        ));
    }
    portal
        .backend
        .set_subscription_state(&id, SubscriptionState::Cancelled)
        .await?;
    tracing::info!(user = %user.id, subscription = %id, "portal subscription cancelled");
    Ok(Redirect::to("/portal/profile?notice=cancelled").into_response())
}
