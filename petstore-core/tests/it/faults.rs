//! A store failure is reported as itself: not as a missing resource, an existing one,
//! or a lag the follower could recover from by reading again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use petstore_core::backend::{Change, IdempotencyRecord, Snapshot, Store};
use petstore_core::*;

use crate::ownership::alices_order_in;
use crate::service::{new_pet, staff};

/// The faults to inject, switched on by the test.
#[derive(Debug)]
struct Faults {
    /// Reads of one order fail.
    order_reads: AtomicBool,
    /// How many of the next subscriptions fail at their first item.
    subscriptions: AtomicUsize,
    /// How many more commits succeed; the ones after fail.
    commits: AtomicUsize,
}

/// Takes one from a counter; `false` when it was at zero.
fn take_one(counter: &AtomicUsize) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

/// The in-memory store, failing with `Unavailable` where [`Faults`] say so.
#[derive(Debug)]
struct FaultyStore {
    inner: MemoryStore,
    faults: Arc<Faults>,
}

fn unavailable() -> Error {
    Error::new(ErrorKind::Unavailable, "the database is unreachable")
}

/// A service over a [`FaultyStore`], and the switches of its faults.
fn faulty_service() -> (PetStore, Arc<Faults>) {
    let faults = Arc::new(Faults {
        order_reads: AtomicBool::new(false),
        subscriptions: AtomicUsize::new(0),
        commits: AtomicUsize::new(usize::MAX),
    });
    let store = FaultyStore {
        inner: MemoryStore::default(),
        faults: faults.clone(),
    };
    let config = ServiceConfig::default();
    let auth = TokenAuthority::random(config.token_ttl);
    (PetStore::new(store, auth, config), faults)
}

#[async_trait]
impl EventLog for FaultyStore {
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
impl Store for FaultyStore {
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
        self.inner.commit(change, source).await
    }

    async fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        self.inner.acquire_lease(name, holder, ttl).await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        self.inner.release_lease(name, holder).await
    }
}

/// A payment whose order cannot be read is unavailable, not missing.
#[tokio::test]
async fn a_failed_order_read_is_not_a_missing_payment() {
    let (store, faults) = faulty_service();
    let (store, _, payment) = alices_order_in(store).await;
    faults.order_reads.store(true, Ordering::SeqCst);
    let alice = Principal::new("alice", [Scope::OrdersRead]);
    let err = store.payment(&alice, &payment.id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    faults.order_reads.store(false, Ordering::SeqCst);
    assert_eq!(store.payment(&alice, &payment.id).await.unwrap(), payment);
}

/// A follower whose subscription fails returns the error and keeps its position: it
/// counts no lag, and the next call goes on where it was.
#[tokio::test]
async fn a_failed_subscription_is_an_error_not_a_lag() {
    let (store, faults) = faulty_service();
    let start = store.head().await.unwrap();
    store.create_pet(&staff(), new_pet("A")).await.unwrap();
    let mut follower = store
        .follow(Principal::system("t"), EventFilter::all(), Some(start))
        .await
        .unwrap();
    faults.subscriptions.store(1, Ordering::SeqCst);
    let next = tokio::time::timeout(Duration::from_secs(5), follower.next());
    let err = next.await.expect("no hang").expect_err("the store failed");
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert_eq!((follower.position(), follower.lagged()), (start, 0));
    let next = tokio::time::timeout(Duration::from_secs(5), follower.next());
    match next.await.expect("no hang").expect("the store is back") {
        Followed::Event(e) => assert_eq!(e.offset().offset, 1),
        other => panic!("{other:?}"),
    }
}

/// A failed commit is not a user that exists already, nor a catalogue added before.
#[tokio::test]
async fn a_failed_commit_is_not_an_earlier_one() {
    let (store, faults) = faulty_service();
    faults.commits.store(0, Ordering::SeqCst);
    let admin = Principal::system("root");
    let err = store
        .create_user(&admin, "carol", "correct horse battery", vec![])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    // The seed users are added, then the catalogue's commit fails.
    faults
        .commits
        .store(seed::SEED_USERS.len(), Ordering::SeqCst);
    let err = seed::seed(&store).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    let pets = store.pets(&admin, &PetQuery::default()).await.unwrap();
    assert!(pets.data.is_empty());
}
