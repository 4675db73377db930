//! A [`Store`] that remembers every commit made through it, so that a test can tell
//! whether a request wrote anything at all: payments, idempotency keys and payment
//! notice records included, which no listing of the service shows; and that fails on
//! demand ([`Faults`]), so that a test can see how a store failure is reported.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::backend::{Change, IdempotencyRecord, Snapshot, Store, Write};
use crate::error::{Error, ErrorKind, Result};
use crate::event::{Event, EventFilter, ResumeToken};
use crate::id::{OrderId, PaymentId, PetId};
use crate::log::{EventBatch, EventLog, Subscription};
use crate::order::{Order, OrderQuery, Payment};
use crate::pet::{Inventory, Pet, PetQuery};
use crate::user::User;

/// Wraps a backend and records the writes of every successful [`Store::commit`], and
/// fails with `Unavailable` where its [`Faults`] say so; everything else goes straight
/// to the backend.
///
/// ```ignore
/// let backend = RecordingStore::new(MemoryStore::default());
/// let commits = backend.commits();
/// let store = PetStore::new(backend, auth, config);
/// // ... a request that must change nothing ...
/// assert!(commits.since(0).is_empty());
/// ```
#[derive(Debug)]
pub struct RecordingStore<S> {
    inner: S,
    commits: Commits,
    faults: Arc<Faults>,
}

/// The failures a [`RecordingStore`] injects, switched on by the test (none at first).
#[derive(Debug)]
pub struct Faults {
    /// Reads of one order fail.
    pub order_reads: AtomicBool,
    /// How many of the next subscriptions fail at their first item.
    pub subscriptions: AtomicUsize,
    /// How many more commits succeed; the ones after fail.
    pub commits: AtomicUsize,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            order_reads: AtomicBool::new(false),
            subscriptions: AtomicUsize::new(0),
            commits: AtomicUsize::new(usize::MAX),
        }
    }
}

/// Takes one from a counter; `false` when it was at zero.
fn take_one(counter: &AtomicUsize) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

fn unavailable() -> Error {
    Error::new(ErrorKind::Unavailable, "the database is unreachable")
}

impl<S: Store> RecordingStore<S> {
    /// Records the commits made through `inner`.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            commits: Commits::default(),
            faults: Arc::default(),
        }
    }

    /// The switches of the failures to inject (they stay usable after the store is
    /// handed over).
    pub fn faults(&self) -> Arc<Faults> {
        self.faults.clone()
    }

    /// A handle on the record (it stays readable after the store is handed over).
    pub fn commits(&self) -> Commits {
        self.commits.clone()
    }
}

/// The writes of every commit so far, one entry per commit.
#[derive(Debug, Clone, Default)]
pub struct Commits(Arc<Mutex<Vec<Vec<Write>>>>);

impl Commits {
    /// How many commits succeeded so far.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no commit succeeded yet.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// The writes of the commits after the first `skip`, one entry per commit.
    pub fn since(&self, skip: usize) -> Vec<Vec<Write>> {
        self.lock().iter().skip(skip).cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<Write>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl<S: Store> EventLog for RecordingStore<S> {
    async fn head(&self) -> Result<ResumeToken> {
        self.inner.head().await
    }

    async fn read(
        &self,
        since: Option<ResumeToken>,
        limit: usize,
        filter: &EventFilter,
    ) -> Result<EventBatch> {
        self.inner.read(since, limit, filter).await
    }

    async fn subscribe(
        &self,
        since: Option<ResumeToken>,
        filter: EventFilter,
    ) -> Result<Subscription> {
        if take_one(&self.faults.subscriptions) {
            let failed = futures_util::stream::iter([Err(unavailable())]);
            return Ok(Subscription::from_stream(failed));
        }
        self.inner.subscribe(since, filter).await
    }

    async fn position_at(&self, time: DateTime<Utc>) -> Result<ResumeToken> {
        self.inner.position_at(time).await
    }
}

#[async_trait]
impl<S: Store> Store for RecordingStore<S> {
    async fn pet(&self, id: &PetId) -> Result<Option<Pet>> {
        self.inner.pet(id).await
    }

    async fn pets(
        &self,
        query: &PetQuery,
        after: Option<&PetId>,
        limit: usize,
    ) -> Result<Snapshot<Vec<Pet>>> {
        self.inner.pets(query, after, limit).await
    }

    async fn order(&self, id: &OrderId) -> Result<Option<Order>> {
        if self.faults.order_reads.load(Ordering::SeqCst) {
            return Err(unavailable());
        }
        self.inner.order(id).await
    }

    async fn orders(
        &self,
        query: &OrderQuery,
        after: Option<&OrderId>,
        limit: usize,
    ) -> Result<Snapshot<Vec<Order>>> {
        self.inner.orders(query, after, limit).await
    }

    async fn payment(&self, id: &PaymentId) -> Result<Option<Payment>> {
        self.inner.payment(id).await
    }

    async fn user(&self, username: &str) -> Result<Option<User>> {
        self.inner.user(username).await
    }

    async fn idempotency(&self, key: &str) -> Result<Option<IdempotencyRecord>> {
        self.inner.idempotency(key).await
    }

    async fn inventory(&self) -> Result<Snapshot<Inventory>> {
        self.inner.inventory().await
    }

    async fn commit(&self, change: Change, source: &str) -> Result<Vec<Arc<Event>>> {
        if !take_one(&self.faults.commits) {
            return Err(unavailable());
        }
        let writes = change.writes.clone();
        // Concurrent commits may be recorded in either order; each is recorded once.
        let events = self.inner.commit(change, source).await?;
        self.commits.lock().push(writes);
        Ok(events)
    }

    async fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        self.inner.acquire_lease(name, holder, ttl).await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        self.inner.release_lease(name, holder).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemoryStore, NewOrder, PetStore, Principal, ServiceConfig, TokenAuthority};

    #[tokio::test]
    async fn every_commit_is_recorded_with_its_writes_and_refusals_are_not() {
        let backend = RecordingStore::new(MemoryStore::default());
        let commits = backend.commits();
        let config = ServiceConfig::default();
        let store = PetStore::new(backend, TokenAuthority::random(config.token_ttl), config);
        let who = Principal::system("test");
        let pet = store
            .create_pet(
                &who,
                serde_json::from_value(serde_json::json!({
                    "name": "Rex", "species": "dog", "price": {"amount": "10.00", "currency": "USD"}
                }))
                .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(commits.len(), 1);
        store
            .place_order(&who, NewOrder::new(pet.id.clone()), Some("key-1"))
            .await
            .unwrap();
        let last = commits.since(1);
        assert_eq!(last.len(), 1);
        assert!(
            last[0]
                .iter()
                .any(|w| matches!(w, Write::PutIdempotency { .. })),
            "{last:?}"
        );
        // A refused command commits nothing.
        let before = commits.len();
        store
            .place_order(&who, NewOrder::new(pet.id.clone()), None)
            .await
            .unwrap_err();
        assert_eq!(commits.len(), before);
    }
}
