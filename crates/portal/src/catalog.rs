//! What a visitor may see: published products visible to their groups (a product linked to no
//! group is visible to everyone), and the APIs in those products.

use std::collections::{HashMap, HashSet};

use gatehouse_model::resources::{
    Api, DEVELOPERS_GROUP, GUESTS_GROUP, Product, ProductState, Scope, Subscription,
    SubscriptionState, User,
};
use gatehouse_store::Link;

use crate::Portal;
use crate::error::PortalResult;

#[derive(Debug, Default)]
pub struct Catalog {
    pub products: Vec<Product>,
    /// Each visible API with the ids of the visible products that hold it.
    pub apis: Vec<(Api, Vec<String>)>,
    /// API ids per visible product.
    pub product_apis: HashMap<String, Vec<String>>,
}

impl Catalog {
    pub fn product(&self, id: &str) -> Option<&Product> {
        self.products.iter().find(|p| p.id == id)
    }

    pub fn api(&self, id: &str) -> Option<&(Api, Vec<String>)> {
        self.apis.iter().find(|(a, _)| a.id == id)
    }

    pub fn product_name(&self, id: &str) -> Option<&str> {
        self.product(id).map(|p| p.display_name.as_str())
    }
}

impl Portal {
    /// The groups whose products `user` (or an anonymous visitor) may see.
    async fn groups_of(&self, user: Option<&User>) -> PortalResult<HashSet<String>> {
        let mut groups = HashSet::new();
        match user {
            Some(user) => {
                groups.insert(DEVELOPERS_GROUP.to_owned());
                groups.extend(self.store.links(Link::GroupUser).sources(&user.id).await?);
            }
            None => {
                groups.insert(GUESTS_GROUP.to_owned());
            }
        }
        Ok(groups)
    }

    pub(crate) async fn catalog(&self, user: Option<&User>) -> PortalResult<Catalog> {
        let groups = self.groups_of(user).await?;
        let mut restricted: HashMap<String, Vec<String>> = HashMap::new();
        for (product, group) in self.store.links(Link::ProductGroup).all().await? {
            restricted.entry(product).or_default().push(group);
        }
        let products: Vec<Product> = self
            .load_all::<Product>("")
            .await?
            .into_iter()
            .filter(|p| p.state == ProductState::Published)
            .filter(|p| {
                restricted
                    .get(&p.id)
                    .is_none_or(|allowed| allowed.iter().any(|g| groups.contains(g)))
            })
            .collect();
        let visible: HashSet<&str> = products.iter().map(|p| p.id.as_str()).collect();
        let mut product_apis: HashMap<String, Vec<String>> = HashMap::new();
        let mut api_products: HashMap<String, Vec<String>> = HashMap::new();
        for (product, api) in self.store.links(Link::ProductApi).all().await? {
            if visible.contains(product.as_str()) {
                product_apis
                    .entry(product.clone())
                    .or_default()
                    .push(api.clone());
                api_products.entry(api).or_default().push(product);
            }
        }
        let apis = self
            .load_all::<Api>("")
            .await?
            .into_iter()
            .filter_map(|api| {
                let holders = api_products.remove(&api.id)?;
                Some((api, holders))
            })
            .collect();
        Ok(Catalog {
            products,
            apis,
            product_apis,
        })
    }

    /// The user's subscriptions, newest first.
    pub(crate) async fn subscriptions_of(&self, user: &User) -> PortalResult<Vec<Subscription>> {
        let mut subs: Vec<Subscription> = self
            .load_all::<Subscription>("")
            .await?
            .into_iter()
            .filter(|s| s.owner_id.as_deref() == Some(user.id.as_str()))
            .collect();
        subs.sort_by(|a, b| b.created_date.cmp(&a.created_date));
        Ok(subs)
    }

    /// The user's active subscriptions whose keys open `api`.
    pub(crate) async fn subscriptions_for_api(
        &self,
        user: &User,
        api: &str,
    ) -> PortalResult<Vec<Subscription>> {
        let mut out = Vec::new();
        for sub in self.subscriptions_of(user).await? {
            if sub.state != SubscriptionState::Active {
                continue;
            }
            let covers = match Scope::parse(&sub.scope) {
                Ok(Scope::AllApis) => true,
                Ok(Scope::Api(id)) => id == api,
                Ok(Scope::Product(p)) => {
                    self.store.links(Link::ProductApi).contains(&p, api).await?
                }
                Err(_) => false,
            };
            if covers {
                out.push(sub);
            }
        }
        Ok(out)
    }
}
