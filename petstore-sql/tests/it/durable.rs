//! What a restart must keep: state, events (identical envelopes), the epoch, and so
//! every resume token handed out before it.

use petstore_core::backend::{EventLog, Store};
use petstore_core::{EventFilter, LogConfig, NewOrder, OrderStatus, PetStatus};

use crate::support::{connect, new_pet, next_event, on_both, service, staff};

on_both!(state_events_and_tokens_survive_reopening, |url| {
    let store = connect(&url, LogConfig::default()).await;
    let svc = service(store.clone());
    let mut pets = Vec::new();
    for name in ["Rex", "Tom", "Kit"] {
        pets.push(svc.create_pet(&staff(), new_pet(name)).await.unwrap());
    }
    let placed = svc
        .place_order(&staff(), NewOrder::new(pets[0].id.clone()), Some("key-1"))
        .await
        .unwrap();
    let before = store.read(None, 100, &EventFilter::all()).await.unwrap();
    assert_eq!(before.events.len(), 5);
    let token = before.events[1].offset();
    let head = store.head().await.unwrap();
    drop(svc);
    store.close().await;
    drop(store);

    let store = connect(&url, LogConfig::default()).await;
    assert_eq!(store.head().await.unwrap(), head, "same epoch, same head");
    let after = store.read(None, 100, &EventFilter::all()).await.unwrap();
    assert_eq!(after.events, before.events);
    for (a, b) in after.events.iter().zip(&before.events) {
        assert_eq!(a.json(), b.json(), "the same envelope, byte for byte");
    }
    // A token from before the restart resumes: the events after it, then live.
    let mut sub = store
        .subscribe(Some(token), EventFilter::all())
        .await
        .unwrap();
    for expect in 3..=5 {
        assert_eq!(next_event(&mut sub).await.offset().offset, expect);
    }
    let svc = service(store.clone());
    svc.create_pet(&staff(), new_pet("Max")).await.unwrap();
    assert_eq!(next_event(&mut sub).await.offset().offset, 6);

    // State and idempotency keys too: the retry gets the first order, appends nothing.
    assert_eq!(
        store.pet(&pets[0].id).await.unwrap().unwrap().status,
        PetStatus::Pending
    );
    let order = store.order(&placed.order.id).await.unwrap().unwrap();
    assert_eq!(order, placed.order);
    assert_eq!(order.status, OrderStatus::Placed);
    let retry = svc
        .place_order(&staff(), NewOrder::new(pets[0].id.clone()), Some("key-1"))
        .await
        .unwrap();
    assert!(retry.replayed);
    assert_eq!(retry.order.id, placed.order.id);
    assert_eq!(store.head().await.unwrap().offset, 6);
});
