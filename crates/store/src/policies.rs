//! Policy documents: the XML of each scope, stored as it was sent.
//!
//! The global document, each product's and each API's live in a document with id `policy`
//! (a product's and an API's under their resource, so deleting the resource deletes them); an
//! operation's lives under its API with the operation's id.

use crate::{Kind, Result, Store, Tx};

/// The id of the one policy document of the global, product and API scopes.
const POLICY: &str = "policy";

/// The four levels policies are set at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyLevel {
    Global,
    Product,
    Api,
    Operation,
}

impl PolicyLevel {
    /// Every level, outermost first.
    pub const ALL: [PolicyLevel; 4] = [
        PolicyLevel::Global,
        PolicyLevel::Product,
        PolicyLevel::Api,
        PolicyLevel::Operation,
    ];

    /// The kind its documents are stored under.
    pub const fn kind(self) -> Kind {
        match self {
            PolicyLevel::Global => Kind::GlobalPolicy,
            PolicyLevel::Product => Kind::ProductPolicy,
            PolicyLevel::Api => Kind::ApiPolicy,
            PolicyLevel::Operation => Kind::OperationPolicy,
        }
    }
}

/// Where one policy document applies.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyScope {
    Global,
    Product(String),
    Api(String),
    Operation { api: String, operation: String },
}

impl PolicyScope {
    pub fn level(&self) -> PolicyLevel {
        match self {
            PolicyScope::Global => PolicyLevel::Global,
            PolicyScope::Product(_) => PolicyLevel::Product,
            PolicyScope::Api(_) => PolicyLevel::Api,
            PolicyScope::Operation { .. } => PolicyLevel::Operation,
        }
    }

    /// `(kind, parent, id)` of its document.
    fn key(&self) -> (Kind, &str, &str) {
        let kind = self.level().kind();
        match self {
            PolicyScope::Global => (kind, "", POLICY),
            PolicyScope::Product(id) | PolicyScope::Api(id) => (kind, id, POLICY),
            PolicyScope::Operation { api, operation } => (kind, api, operation),
        }
    }

    /// The scope of a stored document of `level`, or `None` for a document at a key no scope
    /// has (none is ever written there).
    fn of(level: PolicyLevel, parent: String, id: String) -> Option<Self> {
        match level {
            PolicyLevel::Operation => Some(PolicyScope::Operation {
                api: parent,
                operation: id,
            }),
            _ if id != POLICY => None,
            PolicyLevel::Global => parent.is_empty().then_some(PolicyScope::Global),
            PolicyLevel::Product => Some(PolicyScope::Product(parent)),
            PolicyLevel::Api => Some(PolicyScope::Api(parent)),
        }
    }
}

/// The policy documents as committed.
#[derive(Debug)]
pub struct Policies<'s> {
    store: &'s Store,
}

impl Store {
    /// The policy documents.
    pub fn policies(&self) -> Policies<'_> {
        Policies { store: self }
    }
}

impl Policies<'_> {
    /// The XML set at `scope`, if any.
    pub async fn get(&self, scope: &PolicyScope) -> Result<Option<String>> {
        let (kind, parent, id) = scope.key();
        self.store.get(kind, parent, id).await
    }

    /// Every document of `level` with its scope, ordered by scope.
    pub async fn all(&self, level: PolicyLevel) -> Result<Vec<(PolicyScope, String)>> {
        let documents = self.store.list_all(level.kind()).await?;
        Ok(documents
            .into_iter()
            .filter_map(|d| Some((PolicyScope::of(level, d.parent, d.id)?, d.body)))
            .collect())
    }

    /// The policies of API `api`'s operations: operation id → XML, ordered by operation id.
    pub async fn of_operations(&self, api: &str) -> Result<Vec<(String, String)>> {
        let documents = self.store.list(PolicyLevel::Operation.kind(), api).await?;
        Ok(documents.into_iter().map(|d| (d.id, d.body)).collect())
    }
}

/// The policy documents in a transaction.
#[derive(Debug)]
pub struct TxPolicies<'t> {
    tx: &'t mut Tx,
}

impl Tx {
    /// The policy documents, in this transaction.
    pub fn policies(&mut self) -> TxPolicies<'_> {
        TxPolicies { tx: self }
    }
}

impl TxPolicies<'_> {
    /// Sets the XML at `scope`. Returns true when the scope had none.
    pub async fn put(&mut self, scope: &PolicyScope, xml: &str) -> Result<bool> {
        let (kind, parent, id) = scope.key();
        self.tx.put(kind, parent, id, xml).await
    }

    /// Removes the document at `scope`. Returns true when there was one.
    pub async fn delete(&mut self, scope: &PolicyScope) -> Result<bool> {
        let (kind, parent, id) = scope.key();
        self.tx.delete(kind, parent, id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_stored_where_they_always_were_and_read_back() {
        let scopes = [
            (PolicyScope::Global, ("policy-global", "", "policy")),
            (
                PolicyScope::Product("p".into()),
                ("policy-product", "p", "policy"),
            ),
            (PolicyScope::Api("a".into()), ("policy-api", "a", "policy")),
            (
                PolicyScope::Operation {
                    api: "a".into(),
                    operation: "o".into(),
                },
                ("policy-operation", "a", "o"),
            ),
        ];
        for (scope, key) in scopes {
            let (kind, parent, id) = scope.key();
            assert_eq!((kind.name(), parent, id), key);
            let back = PolicyScope::of(scope.level(), key.1.into(), key.2.into());
            assert_eq!(back, Some(scope));
        }
        assert_eq!(
            PolicyScope::of(PolicyLevel::Api, "a".into(), "other".into()),
            None
        );
    }
}
