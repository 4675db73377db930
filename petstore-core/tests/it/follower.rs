//! The one log follower of durable consumers: replay, live, recovery from a lag and
//! the documented policy for a position the log no longer retains.

use std::time::Duration;

use petstore_core::*;

use crate::service::{new_pet, staff};

fn store_with(log: LogConfig) -> PetStore {
    let config = ServiceConfig::default();
    PetStore::new(
        MemoryStore::new(log),
        TokenAuthority::random(config.token_ttl),
        config,
    )
}

async fn follow(store: &PetStore, from: Option<ResumeToken>) -> Follower {
    store
        .follow(Principal::system("t"), EventFilter::all(), from)
        .await
        .unwrap()
}

async fn next(follower: &mut Follower) -> Followed {
    tokio::time::timeout(Duration::from_secs(5), follower.next())
        .await
        .expect("no hang")
        .expect("no error")
}

async fn next_offset(follower: &mut Follower) -> u64 {
    match next(follower).await {
        Followed::Event(e) => e.offset().offset,
        gap => panic!("expected an event, got {gap:?}"),
    }
}

#[tokio::test]
async fn it_replays_from_its_position_then_follows_live() {
    let store = PetStore::in_memory();
    store.create_pet(&staff(), new_pet("A")).await.unwrap();
    let start = store.head().await.unwrap();
    store.create_pet(&staff(), new_pet("B")).await.unwrap();
    let mut follower = follow(&store, Some(start)).await;
    assert_eq!(next_offset(&mut follower).await, 2);
    store.create_pet(&staff(), new_pet("C")).await.unwrap();
    assert_eq!(next_offset(&mut follower).await, 3);
    assert_eq!(follower.position().offset, 3);
    // Without a position it starts after the head at the time it is made.
    let mut live = follow(&store, None).await;
    store.create_pet(&staff(), new_pet("D")).await.unwrap();
    assert_eq!(next_offset(&mut live).await, 4);
}

/// `seek` moves the follower: it goes on after the given position, even backwards.
#[tokio::test]
async fn seek_goes_on_after_the_given_position() {
    let store = PetStore::in_memory();
    let start = store.head().await.unwrap();
    for name in ["A", "B", "C"] {
        store.create_pet(&staff(), new_pet(name)).await.unwrap();
    }
    let mut follower = follow(&store, Some(start)).await;
    assert_eq!(next_offset(&mut follower).await, 1);
    assert_eq!(next_offset(&mut follower).await, 2);
    follower.seek(start);
    assert_eq!(follower.position(), start);
    assert_eq!(next_offset(&mut follower).await, 1);
    assert_eq!(follower.lagged(), 0, "it never fell behind");
}

#[tokio::test]
async fn a_lag_loses_nothing() {
    // A ring of 2 live events: a follower that does not read while 50 are written
    // is cut off and re-reads from its position.
    let store = store_with(LogConfig::default().subscriber_buffer(2));
    let start = store.head().await.unwrap();
    let mut follower = follow(&store, Some(start)).await;
    store.create_pet(&staff(), new_pet("first")).await.unwrap();
    assert_eq!(next_offset(&mut follower).await, 1);
    for i in 0..50 {
        store
            .create_pet(&staff(), new_pet(&format!("p{i}")))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    for _ in 0..50 {
        seen.push(next_offset(&mut follower).await);
    }
    assert_eq!(seen, (2..=51).collect::<Vec<_>>());
    assert!(follower.lagged() >= 1, "the ring was outrun");
}

#[tokio::test]
async fn an_expired_position_goes_on_from_the_oldest_retained_event() {
    let store = store_with(LogConfig::default().retention(5));
    let start = store.head().await.unwrap();
    for i in 0..12 {
        store
            .create_pet(&staff(), new_pet(&format!("p{i}")))
            .await
            .unwrap();
    }
    let mut follower = follow(&store, Some(start)).await;
    match next(&mut follower).await {
        Followed::Gap {
            after,
            resumed_at,
            reason,
        } => {
            assert_eq!(after, start);
            assert_eq!(resumed_at.offset, 7, "before the oldest retained event, 8");
            assert_eq!(reason, ResetReason::Expired);
        }
        other => panic!("{other:?}"),
    }
    let rest: Vec<u64> = {
        let mut v = Vec::new();
        for _ in 0..5 {
            v.push(next_offset(&mut follower).await);
        }
        v
    };
    assert_eq!(rest, [8, 9, 10, 11, 12]);
}

#[tokio::test]
async fn a_position_from_another_epoch_is_a_gap_too() {
    let store = PetStore::in_memory();
    store.create_pet(&staff(), new_pet("A")).await.unwrap();
    let head = store.head().await.unwrap();
    let foreign = ResumeToken::new(head.epoch ^ 1, 1);
    let mut follower = follow(&store, Some(foreign)).await;
    match next(&mut follower).await {
        Followed::Gap {
            reason, resumed_at, ..
        } => {
            assert_eq!(reason, ResetReason::EpochMismatch);
            assert_eq!(resumed_at, ResumeToken::new(head.epoch, 0));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(next_offset(&mut follower).await, 1);
}

#[tokio::test]
async fn it_follows_as_its_principal() {
    let store = PetStore::in_memory();
    let start = store.head().await.unwrap();
    let alice = Principal::new("alice", [Scope::OrdersRead, Scope::OrdersWrite]);
    let bob = Principal::new("bob", [Scope::OrdersRead, Scope::OrdersWrite]);
    let pet = store.create_pet(&staff(), new_pet("A")).await.unwrap();
    store
        .place_order(&alice, NewOrder::new(pet.id), None)
        .await
        .unwrap();
    let mut bobs = store
        .follow(bob, EventFilter::channels([Channel::Orders]), Some(start))
        .await
        .unwrap();
    let pet = store.create_pet(&staff(), new_pet("B")).await.unwrap();
    let order = store
        .place_order(
            &Principal::new("bob", [Scope::OrdersWrite]),
            NewOrder::new(pet.id),
            None,
        )
        .await
        .unwrap()
        .order;
    match next(&mut bobs).await {
        Followed::Event(e) => assert_eq!(e.data().order_id(), Some(&order.id)),
        other => panic!("{other:?}"),
    }
}

/// Only an expired position is a gap: a follower its principal may not run gets the
/// authorization error, and keeps its position.
#[tokio::test]
async fn a_refused_subscription_is_an_error_not_a_gap() {
    let config = ServiceConfig::default().require_auth_for_reads(true);
    let store = PetStore::new(
        MemoryStore::default(),
        TokenAuthority::random(config.token_ttl),
        config,
    );
    let start = store.head().await.unwrap();
    let mut follower = store
        .follow(
            Principal::anonymous(),
            EventFilter::channels([Channel::Pets]),
            Some(start),
        )
        .await
        .unwrap();
    let err = tokio::time::timeout(Duration::from_secs(5), follower.next())
        .await
        .expect("no hang")
        .expect_err("reads are closed to anonymous callers");
    assert_eq!(err.kind(), ErrorKind::Unauthenticated);
    assert_eq!(follower.position(), start);
}
