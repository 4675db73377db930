//! A store failure is reported as itself: not as a missing resource, an existing one,
//! or a lag the follower could recover from by reading again.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use petstore_core::testing::{Faults, RecordingStore};
use petstore_core::*;

use crate::ownership::alices_order_in;
use crate::service::{new_pet, staff};

/// A service over the in-memory store behind a [`RecordingStore`], and the switches of
/// its faults.
fn faulty_service() -> (PetStore, Arc<Faults>) {
    let store = RecordingStore::new(MemoryStore::default());
    let faults = store.faults();
    let config = ServiceConfig::default();
    let auth = TokenAuthority::random(config.token_ttl);
    (PetStore::new(store, auth, config), faults)
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
