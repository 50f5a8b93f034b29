//! The link tables: which APIs a product holds, which APIs a gateway serves, who is in a group,
//! and which groups see a product.
//!
//! A link is a document with no content (`{}`): its parent is the source and its id the target,
//! so "the APIs of product p" is one list and "the products holding API a" one lookup by id.

use crate::{Kind, Result, Store, Tx};

/// The body every link document has.
const BODY: &str = "{}";

/// A link table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Link {
    /// Product → API: the product holds the API.
    ProductApi,
    /// Gateway → API: the API is assigned to the gateway.
    GatewayApi,
    /// Group → user: the user is a member of the group.
    GroupUser,
    /// Product → group: the group's members see the product in the portal.
    ProductGroup,
}

impl Link {
    pub const ALL: [Link; 4] = [
        Link::ProductApi,
        Link::GatewayApi,
        Link::GroupUser,
        Link::ProductGroup,
    ];

    /// The kind its documents are stored under.
    pub const fn kind(self) -> Kind {
        match self {
            Link::ProductApi => Kind::ProductApi,
            Link::GatewayApi => Kind::GatewayApi,
            Link::GroupUser => Kind::GroupUser,
            Link::ProductGroup => Kind::ProductGroup,
        }
    }
}

/// One link table as committed.
#[derive(Debug)]
pub struct Links<'s> {
    store: &'s Store,
    kind: Kind,
}

impl Store {
    /// The link table `link`.
    pub fn links(&self, link: Link) -> Links<'_> {
        Links {
            store: self,
            kind: link.kind(),
        }
    }
}

impl Links<'_> {
    /// The targets `source` links to, ordered.
    pub async fn targets(&self, source: &str) -> Result<Vec<String>> {
        let documents = self.store.list(self.kind, source).await?;
        Ok(documents.into_iter().map(|d| d.id).collect())
    }

    /// The sources that link to `target`, ordered.
    pub async fn sources(&self, target: &str) -> Result<Vec<String>> {
        let documents = self.store.find_by_id(self.kind, target).await?;
        Ok(documents.into_iter().map(|d| d.parent).collect())
    }

    pub async fn contains(&self, source: &str, target: &str) -> Result<bool> {
        Ok(self.store.get(self.kind, source, target).await?.is_some())
    }

    /// Every link, as `(source, target)`, ordered.
    pub async fn all(&self) -> Result<Vec<(String, String)>> {
        let documents = self.store.list_all(self.kind).await?;
        Ok(documents.into_iter().map(|d| (d.parent, d.id)).collect())
    }
}

/// One link table in a transaction.
#[derive(Debug)]
pub struct TxLinks<'t> {
    tx: &'t mut Tx,
    kind: Kind,
}

impl Tx {
    /// The link table `link`, in this transaction.
    pub fn links(&mut self, link: Link) -> TxLinks<'_> {
        TxLinks {
            tx: self,
            kind: link.kind(),
        }
    }
}

impl TxLinks<'_> {
    pub async fn contains(&mut self, source: &str, target: &str) -> Result<bool> {
        Ok(self.tx.get(self.kind, source, target).await?.is_some())
    }

    /// Links `source` to `target`. Returns true when the link is new.
    pub async fn add(&mut self, source: &str, target: &str) -> Result<bool> {
        self.tx.put(self.kind, source, target, BODY).await
    }

    /// Removes a link. Returns true when it existed.
    pub async fn remove(&mut self, source: &str, target: &str) -> Result<bool> {
        self.tx.delete(self.kind, source, target).await
    }

    /// Removes every link from `source`.
    pub async fn remove_from(&mut self, source: &str) -> Result<u64> {
        self.tx.delete_children(self.kind, source).await
    }

    /// Removes every link to `target`.
    pub async fn remove_to(&mut self, target: &str) -> Result<u64> {
        self.tx.delete_by_id(self.kind, target).await
    }
}
