//! An order, its payment, its events and its channel belong to its customer: only
//! they and admins may see or act on them; anyone else is told they do not exist.

use std::time::Duration;

use futures_util::StreamExt;
use petstore_core::*;

use crate::service::{new_pet, staff};

fn customer(name: &str) -> Principal {
    Principal::new(name, [Scope::OrdersRead, Scope::OrdersWrite])
}

fn admin() -> Principal {
    Principal::new("root", [Scope::Admin])
}

/// A store with one order of alice's (paid, so it has a payment too).
async fn alices_order() -> (PetStore, Order, Payment) {
    alices_order_in(PetStore::in_memory()).await
}

/// `store` (empty) with one order of alice's, paid.
pub(crate) async fn alices_order_in(store: PetStore) -> (PetStore, Order, Payment) {
    let pet = store.create_pet(&staff(), new_pet("Rex")).await.unwrap();
    let alice = customer("alice");
    let order = store
        .place_order(&alice, NewOrder::new(pet.id), None)
        .await
        .unwrap()
        .order;
    let payment = store
        .pay_order(&alice, &order.id, PaymentRequest::default())
        .await
        .unwrap();
    let order = store.order(&alice, &order.id).await.unwrap();
    (store, order, payment)
}

async fn next(sub: &mut Subscription) -> std::sync::Arc<Event> {
    tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("an event")
        .expect("open")
        .expect("not an error")
}

fn not_found<T: std::fmt::Debug>(result: Result<T>) {
    assert_eq!(result.unwrap_err().kind(), ErrorKind::NotFound);
}

#[tokio::test]
async fn someone_elses_order_does_not_exist_for_them() {
    let (store, order, payment) = alices_order().await;
    let bob = customer("bob");
    let head = store.head().await.unwrap();
    not_found(store.order(&bob, &order.id).await);
    // The payment, not its order, is what does not exist.
    let err = store.payment(&bob, &payment.id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(
        err.message(),
        format!("payment `{}` does not exist", payment.id)
    );
    not_found(store.cancel_order(&bob, &order.id).await);
    not_found(
        store
            .pay_order(&bob, &order.id, PaymentRequest::default())
            .await,
    );
    // The same answer as for an order that does not exist at all.
    let unknown = OrderId::generate();
    let err = store.order(&bob, &unknown).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    // Nothing happened.
    assert_eq!(store.head().await.unwrap(), head);
    assert_eq!(store.order(&admin(), &order.id).await.unwrap(), order);
}

#[tokio::test]
async fn the_customer_and_admins_see_and_act() {
    let (store, order, payment) = alices_order().await;
    let alice = customer("alice");
    assert_eq!(store.payment(&alice, &payment.id).await.unwrap(), payment);
    assert_eq!(store.payment(&admin(), &payment.id).await.unwrap(), payment);
    let cancelled = store.cancel_order(&alice, &order.id).await.unwrap();
    assert_eq!(cancelled.status, OrderStatus::Cancelled);

    let (store, order, _) = alices_order().await;
    let cancelled = store.cancel_order(&admin(), &order.id).await.unwrap();
    assert_eq!(cancelled.customer, "alice");
}

#[tokio::test]
async fn listings_show_a_customer_only_their_own_orders() {
    let (store, order, _) = alices_order().await;
    let pet = store.create_pet(&staff(), new_pet("Bella")).await.unwrap();
    let bobs = store
        .place_order(&customer("bob"), NewOrder::new(pet.id), None)
        .await
        .unwrap()
        .order;
    let ids = |page: Page<Order>| page.data.into_iter().map(|o| o.id).collect::<Vec<_>>();
    let one = |id: &OrderId| vec![id.clone()];
    let all = OrderQuery::default();
    assert_eq!(
        ids(store.orders(&customer("alice"), &all).await.unwrap()),
        one(&order.id)
    );
    // Asking for someone else's orders by name does not widen the listing.
    assert_eq!(
        ids(store
            .orders(&customer("bob"), &OrderQuery::default().customer("alice"))
            .await
            .unwrap()),
        one(&bobs.id)
    );
    assert_eq!(
        ids(store.orders(&admin(), &all).await.unwrap()),
        [order.id.clone(), bobs.id]
    );
    assert_eq!(
        ids(store
            .orders(&admin(), &OrderQuery::default().customer("alice"))
            .await
            .unwrap()),
        [order.id]
    );
}

#[tokio::test]
async fn orders_need_a_token_even_while_reads_are_open() {
    let (store, order, payment) = alices_order().await;
    let anon = Principal::anonymous();
    for kind in [
        store
            .order(&anon, &order.id)
            .await
            .map(drop)
            .unwrap_err()
            .kind(),
        store
            .payment(&anon, &payment.id)
            .await
            .map(drop)
            .unwrap_err()
            .kind(),
        store
            .orders(&anon, &OrderQuery::default())
            .await
            .map(drop)
            .unwrap_err()
            .kind(),
        store
            .subscribe(&anon, None, EventFilter::channels([Channel::Orders]))
            .await
            .map(drop)
            .unwrap_err()
            .kind(),
    ] {
        assert_eq!(kind, ErrorKind::Unauthenticated);
    }
    // Anonymous readers of "everything" get the pet events only.
    let batch = store
        .events(&anon, None, 100, EventFilter::all(), Duration::ZERO)
        .await
        .unwrap();
    assert!(!batch.events.is_empty());
    assert!(batch.events.iter().all(|e| e.data().pet().is_some()));
}

#[tokio::test]
async fn event_feeds_carry_only_the_readers_own_orders() {
    let (store, order, _) = alices_order().await;
    let order_events = |who: Principal| {
        let store = store.clone();
        async move {
            store
                .events(&who, None, 100, EventFilter::all(), Duration::ZERO)
                .await
                .unwrap()
                .events
                .into_iter()
                .filter(|e| e.data().order_id().is_some())
                .map(|e| e.event_type())
                .collect::<Vec<_>>()
        }
    };
    let alices = [
        EventType::OrderCreated,
        EventType::PaymentSucceeded,
        EventType::OrderStatusChanged,
    ];
    assert_eq!(order_events(customer("alice")).await, alices);
    assert_eq!(order_events(admin()).await, alices);
    assert_eq!(order_events(customer("bob")).await, []);
    // The payment event carries the customer it belongs to.
    let batch = store
        .events(
            &admin(),
            None,
            100,
            EventFilter::types(["payment.*".parse().unwrap()]),
            Duration::ZERO,
        )
        .await
        .unwrap();
    assert_eq!(batch.events[0].data().customer(), Some("alice"));
    let json: serde_json::Value = serde_json::from_str(batch.events[0].json()).unwrap();
    assert_eq!(json["data"]["customer"], "alice");
    assert_eq!(json["data"]["order_id"], order.id.as_str());
}

#[tokio::test]
async fn live_feeds_and_order_channels_follow_ownership() {
    let (store, order, _) = alices_order().await;
    let bob = customer("bob");
    // Bob cannot follow alice's order; the answer is the unknown-order answer.
    not_found(
        store
            .subscribe(
                &bob,
                None,
                EventFilter::channels([Channel::Order(order.id.clone())]),
            )
            .await,
    );
    let mut bobs_orders = store
        .subscribe(&bob, None, EventFilter::channels([Channel::Orders]))
        .await
        .unwrap();
    let mut alices_channel = store
        .subscribe(
            &customer("alice"),
            None,
            EventFilter::channels([Channel::Order(order.id.clone())]),
        )
        .await
        .unwrap();
    store
        .cancel_order(&customer("alice"), &order.id)
        .await
        .unwrap();
    // Bob's own order, placed after alice's change: the first thing his feed shows.
    let pet = store.create_pet(&staff(), new_pet("Kiwi")).await.unwrap();
    let bobs = store
        .place_order(&bob, NewOrder::new(pet.id), None)
        .await
        .unwrap()
        .order;
    let seen = next(&mut bobs_orders).await;
    assert_eq!(seen.event_type(), EventType::OrderCreated);
    assert_eq!(seen.data().order_id(), Some(&bobs.id));
    let alices = next(&mut alices_channel).await;
    assert_eq!(alices.event_type(), EventType::OrderStatusChanged);
}
