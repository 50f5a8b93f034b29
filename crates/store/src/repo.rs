//! Typed repositories: documents of one kind read and written as values, not JSON text.
//!
//! A [`Record`] is a type the store keeps documents of: its [`Kind`] and how its body is
//! encoded (JSON for nearly all; [`JsonRecord`] gives that). `store.repo::<Api>()` reads APIs,
//! `tx.repo::<Operation>()` reads and writes operations inside a transaction. Documents are
//! addressed as the store keeps them, by `(parent, id)`; a top-level kind has the empty parent.
//! A document that does not decode is [`StoreError::Undecodable`], naming it, unless the
//! repository is [`lenient`](Repo::lenient): then it reads as absent.
//!
//! The link tables and the policy documents have accessors of their own (see [`crate::links`]
//! and [`crate::policies`]).

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Document, Kind, Result, Store, StoreError, Tx};

/// A type whose values the store keeps as documents of one kind.
pub trait Record: Sized + Send + Sync {
    const KIND: Kind;
    /// The body to store.
    fn encode(&self) -> std::result::Result<String, serde_json::Error>;
    /// The value a stored body holds.
    fn decode(body: String) -> std::result::Result<Self, serde_json::Error>;
}

/// A record stored as its JSON form: implementing this is all a serde type needs.
pub trait JsonRecord: Serialize + DeserializeOwned + Send + Sync {
    const KIND: Kind;

    /// Rewrites a body stored by an older release into the current shape; true when it
    /// changed something. Called only for a body that does not read as it is.
    fn upgrade(_body: &mut serde_json::Value) -> bool {
        false
    }
}

impl<T: JsonRecord> Record for T {
    const KIND: Kind = <T as JsonRecord>::KIND;

    fn encode(&self) -> std::result::Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    fn decode(body: String) -> std::result::Result<Self, serde_json::Error> {
        let error = match serde_json::from_str(&body) {
            Ok(value) => return Ok(value),
            Err(e) => e,
        };
        let Ok(mut value) = serde_json::from_str::<serde_json::Value>(&body) else {
            return Err(error);
        };
        if T::upgrade(&mut value) {
            serde_json::from_value(value)
        } else {
            Err(error)
        }
    }
}

/// A stored value with where it is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored<R> {
    pub parent: String,
    pub id: String,
    pub value: R,
}

pub(crate) fn encode<R: Record>(value: &R) -> Result<String> {
    value.encode().map_err(|source| StoreError::Encoding {
        what: R::KIND.name(),
        source,
    })
}

/// Decodes a body; `None` when it does not decode and `lenient` says to skip it.
fn decode<R: Record>(lenient: bool, parent: &str, id: &str, body: String) -> Result<Option<R>> {
    match R::decode(body) {
        Ok(value) => Ok(Some(value)),
        Err(source) if lenient => {
            tracing::warn!(kind = %R::KIND, parent, id, error = %source, "a stored document is unreadable; read as absent");
            Ok(None)
        }
        Err(source) => Err(StoreError::Undecodable {
            kind: R::KIND,
            parent: parent.to_owned(),
            id: id.to_owned(),
            source,
        }),
    }
}

fn decode_all<R: Record>(lenient: bool, documents: Vec<Document>) -> Result<Vec<Stored<R>>> {
    let mut out = Vec::with_capacity(documents.len());
    for d in documents {
        if let Some(value) = decode(lenient, &d.parent, &d.id, d.body)? {
            out.push(Stored {
                parent: d.parent,
                id: d.id,
                value,
            });
        }
    }
    Ok(out)
}

fn values<R>(stored: Vec<Stored<R>>) -> Vec<R> {
    stored.into_iter().map(|s| s.value).collect()
}

/// Documents of kind `R::KIND` as committed (see the module docs).
pub struct Repo<'s, R> {
    store: &'s Store,
    lenient: bool,
    record: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for Repo<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repo")
            .field("lenient", &self.lenient)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// The documents of record type `R`.
    pub fn repo<R: Record>(&self) -> Repo<'_, R> {
        Repo {
            store: self,
            lenient: false,
            record: PhantomData,
        }
    }
}

impl<R: Record> Repo<'_, R> {
    /// Reads a document that does not decode as absent (and lists without it), rather than
    /// failing: for records a reader can do without, such as a session or an index entry.
    pub fn lenient(mut self) -> Self {
        self.lenient = true;
        self
    }

    pub async fn get(&self, parent: &str, id: &str) -> Result<Option<R>> {
        match self.store.get(R::KIND, parent, id).await? {
            Some(body) => decode(self.lenient, parent, id, body),
            None => Ok(None),
        }
    }

    /// Whether the document exists (decodable or not).
    pub async fn exists(&self, parent: &str, id: &str) -> Result<bool> {
        Ok(self.store.get(R::KIND, parent, id).await?.is_some())
    }

    /// The values under `parent`, ordered by id.
    pub async fn list(&self, parent: &str) -> Result<Vec<R>> {
        self.entries(parent).await.map(values)
    }

    /// The ids of the documents under `parent` (decodable or not), ordered.
    pub async fn ids(&self, parent: &str) -> Result<Vec<String>> {
        let documents = self.store.list(R::KIND, parent).await?;
        Ok(documents.into_iter().map(|d| d.id).collect())
    }

    /// The documents under `parent`, ordered by id.
    pub async fn entries(&self, parent: &str) -> Result<Vec<Stored<R>>> {
        decode_all(self.lenient, self.store.list(R::KIND, parent).await?)
    }

    /// The documents under `parent` whose id `keep` accepts, ordered by id; the others are
    /// not decoded (nor can they fail to be).
    pub async fn entries_where(
        &self,
        parent: &str,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Vec<Stored<R>>> {
        let mut documents = self.store.list(R::KIND, parent).await?;
        documents.retain(|d| keep(&d.id));
        decode_all(self.lenient, documents)
    }

    /// Every document of the kind, ordered by parent, then id.
    pub async fn list_all(&self) -> Result<Vec<Stored<R>>> {
        decode_all(self.lenient, self.store.list_all(R::KIND).await?)
    }

    /// Every document of the kind whose parent `keep` accepts, ordered by parent, then id; the
    /// others are not decoded (nor can they fail to be).
    pub async fn list_all_where(&self, keep: impl Fn(&str) -> bool) -> Result<Vec<Stored<R>>> {
        let mut documents = self.store.list_all(R::KIND).await?;
        documents.retain(|d| keep(&d.parent));
        decode_all(self.lenient, documents)
    }

    /// The documents with this id, under any parent, ordered by parent.
    pub async fn find_by_id(&self, id: &str) -> Result<Vec<Stored<R>>> {
        decode_all(self.lenient, self.store.find_by_id(R::KIND, id).await?)
    }

    /// The parents of the documents with this id (decodable or not), ordered.
    pub async fn parents_of(&self, id: &str) -> Result<Vec<String>> {
        let documents = self.store.find_by_id(R::KIND, id).await?;
        Ok(documents.into_iter().map(|d| d.parent).collect())
    }

    /// Writes a document that is state, not configuration (see [`Store::put_state`]).
    pub async fn put_state(&self, parent: &str, id: &str, value: &R) -> Result<()> {
        self.store
            .put_state(R::KIND, parent, id, &encode(value)?)
            .await
    }
}

/// Documents of kind `R::KIND` as a transaction sees them, and its writes.
pub struct TxRepo<'t, R> {
    tx: &'t mut Tx,
    lenient: bool,
    record: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for TxRepo<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxRepo")
            .field("lenient", &self.lenient)
            .finish_non_exhaustive()
    }
}

impl Tx {
    /// The documents of record type `R`, in this transaction.
    pub fn repo<R: Record>(&mut self) -> TxRepo<'_, R> {
        TxRepo {
            tx: self,
            lenient: false,
            record: PhantomData,
        }
    }
}

impl<R: Record> TxRepo<'_, R> {
    /// See [`Repo::lenient`].
    pub fn lenient(mut self) -> Self {
        self.lenient = true;
        self
    }

    pub async fn get(&mut self, parent: &str, id: &str) -> Result<Option<R>> {
        match self.tx.get(R::KIND, parent, id).await? {
            Some(body) => decode(self.lenient, parent, id, body),
            None => Ok(None),
        }
    }

    /// Whether the document exists (decodable or not).
    pub async fn exists(&mut self, parent: &str, id: &str) -> Result<bool> {
        Ok(self.tx.get(R::KIND, parent, id).await?.is_some())
    }

    /// The values under `parent`, ordered by id.
    pub async fn list(&mut self, parent: &str) -> Result<Vec<R>> {
        self.entries(parent).await.map(values)
    }

    /// The documents under `parent`, ordered by id.
    pub async fn entries(&mut self, parent: &str) -> Result<Vec<Stored<R>>> {
        decode_all(self.lenient, self.tx.list(R::KIND, parent).await?)
    }

    /// Every document of the kind, ordered by parent, then id.
    pub async fn list_all(&mut self) -> Result<Vec<Stored<R>>> {
        decode_all(self.lenient, self.tx.list_all(R::KIND).await?)
    }

    /// Creates or replaces a document. Returns true when it was created.
    pub async fn put(&mut self, parent: &str, id: &str, value: &R) -> Result<bool> {
        let body = encode(value)?;
        self.tx.put(R::KIND, parent, id, &body).await
    }

    /// Creates or replaces a document no gateway's configuration depends on (see
    /// [`Tx::put_unversioned`]).
    pub async fn put_unversioned(&mut self, parent: &str, id: &str, value: &R) -> Result<()> {
        let body = encode(value)?;
        self.tx.put_unversioned(R::KIND, parent, id, &body).await
    }

    /// Creates an unversioned document unless one with its key exists; false when it existed
    /// (see [`Tx::create_unversioned`]).
    pub async fn create_unversioned(&mut self, parent: &str, id: &str, value: &R) -> Result<bool> {
        let body = encode(value)?;
        self.tx.create_unversioned(R::KIND, parent, id, &body).await
    }

    /// Deletes a document. Returns true when it existed.
    pub async fn delete(&mut self, parent: &str, id: &str) -> Result<bool> {
        self.tx.delete(R::KIND, parent, id).await
    }

    /// Deletes an unversioned document. Returns true when it existed.
    pub async fn delete_unversioned(&mut self, parent: &str, id: &str) -> Result<bool> {
        self.tx.delete_unversioned(R::KIND, parent, id).await
    }

    /// Deletes every document under `parent`.
    pub async fn delete_children(&mut self, parent: &str) -> Result<u64> {
        self.tx.delete_children(R::KIND, parent).await
    }

    /// Deletes every document with this id, under any parent.
    pub async fn delete_by_id(&mut self, id: &str) -> Result<u64> {
        self.tx.delete_by_id(R::KIND, id).await
    }
}
