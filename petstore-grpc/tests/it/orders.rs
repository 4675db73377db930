//! StoreService: orders, payments, inventory and WatchOrders.

use petstore_core::{OrderStatus, PetStatus, Principal, Scope};
use petstore_grpc::pb;
use tonic::{Code, Request};

use crate::support::{TestServer, authed, next};

fn place(pet_id: &str, token: &str, key: Option<&str>) -> Request<pb::PlaceOrderRequest> {
    let mut request = authed(
        pb::PlaceOrderRequest {
            pet_id: pet_id.to_owned(),
            quantity: None,
        },
        token,
    );
    if let Some(key) = key {
        request
            .metadata_mut()
            .insert("idempotency-key", key.parse().unwrap());
    }
    request
}

#[tokio::test]
async fn order_lifecycle_with_idempotency_payment_and_inventory() {
    let server = TestServer::start().await;
    let rex = server.add_pet("Rex", "dog").await;
    server.add_pet("Bella", "dog").await;
    let alice = server.bearer("alice", [Scope::OrdersRead, Scope::OrdersWrite]);
    let mut store = server.orders().await;

    let response = store
        .place_order(place(rex.id.as_str(), &alice, Some("key-1")))
        .await
        .unwrap();
    assert!(response.metadata().get("idempotent-replayed").is_none());
    let order = response.into_inner();
    assert_eq!(order.status(), pb::OrderStatus::Placed);
    assert_eq!(order.customer, "alice");
    assert_eq!(order.quantity, 1);
    assert_eq!(order.total.as_ref().unwrap().amount, "100.00");

    // A retry with the same key returns the same order and says so.
    let retry = store
        .place_order(place(rex.id.as_str(), &alice, Some("key-1")))
        .await
        .unwrap();
    assert_eq!(retry.metadata().get("idempotent-replayed").unwrap(), "true");
    assert_eq!(retry.into_inner().id, order.id);

    let inventory = store
        .get_inventory(pb::GetInventoryRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (inventory.available, inventory.pending, inventory.sold),
        (1, 1, 0)
    );
    assert!(!inventory.position.is_empty());

    // A declined card leaves the order placed.
    let declined = store
        .pay_order(authed(
            pb::PayOrderRequest {
                id: order.id.clone(),
                payment_token: Some("tok_declined".to_owned()),
            },
            &alice,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(declined.status(), pb::PaymentStatus::Failed);
    assert!(declined.failure_reason.is_some());

    let paid = store
        .pay_order(authed(
            pb::PayOrderRequest {
                id: order.id.clone(),
                payment_token: None,
            },
            &alice,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(paid.status(), pb::PaymentStatus::Succeeded);
    assert_eq!(paid.order_id, order.id);

    let approved = store
        .get_order(authed(
            pb::GetOrderRequest {
                id: order.id.clone(),
            },
            &alice,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(approved.status(), pb::OrderStatus::Approved);
    assert_eq!(approved.payment_id.as_deref(), Some(paid.id.as_str()));

    let cancelled = store
        .cancel_order(authed(
            pb::CancelOrderRequest {
                id: order.id.clone(),
            },
            &alice,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cancelled.status(), pb::OrderStatus::Cancelled);
    let pet = server
        .store
        .pet(&Principal::anonymous(), &rex.id)
        .await
        .unwrap();
    assert_eq!(pet.status, PetStatus::Available);

    // Cancelling twice is a state conflict and changes nothing.
    let err = store
        .cancel_order(authed(
            pb::CancelOrderRequest {
                id: order.id.clone(),
            },
            &alice,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let id = order.id.parse().unwrap();
    let after = server
        .store
        .order(&Principal::system("test"), &id)
        .await
        .unwrap();
    assert_eq!(after.status, OrderStatus::Cancelled);
}

#[tokio::test]
async fn ordering_a_pet_that_is_not_available_fails_and_changes_nothing() {
    let server = TestServer::start().await;
    let rex = server.add_pet("Rex", "dog").await;
    let alice = server.bearer("alice", [Scope::OrdersWrite]);
    let bob = server.bearer("bob", [Scope::OrdersWrite]);
    let mut store = server.orders().await;
    store
        .place_order(place(rex.id.as_str(), &alice, None))
        .await
        .unwrap();
    let head = server.store.head().await.unwrap();

    let err = store
        .place_order(place(rex.id.as_str(), &bob, None))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert_eq!(
        server.store.head().await.unwrap(),
        head,
        "no event, no change"
    );
}

#[tokio::test]
async fn watch_orders_sees_order_and_payment_events() {
    let server = TestServer::start().await;
    let rex = server.add_pet("Rex", "dog").await;
    let alice = server.bearer("alice", [Scope::OrdersRead, Scope::OrdersWrite]);
    let mut store = server.orders().await;

    let mut watch = store
        .watch_orders(authed(pb::WatchOrdersRequest::default(), &alice))
        .await
        .unwrap()
        .into_inner();
    let order = store
        .place_order(place(rex.id.as_str(), &alice, None))
        .await
        .unwrap()
        .into_inner();
    // Core commands show up as well.
    let system = Principal::system("test");
    let id = order.id.parse().unwrap();
    server
        .store
        .pay_order(&system, &id, Default::default())
        .await
        .unwrap();

    let created = next(&mut watch).await.unwrap();
    assert_eq!(created.r#type, "order.created");
    let Some(pb::event::Payload::Order(o)) = &created.payload else {
        panic!("typed order payload expected: {created:?}");
    };
    assert_eq!(o.id, order.id);
    let payment = next(&mut watch).await.unwrap();
    assert_eq!(payment.r#type, "payment.succeeded");
    assert!(matches!(
        payment.payload,
        Some(pb::event::Payload::Payment(_))
    ));
    let approved = next(&mut watch).await.unwrap();
    assert_eq!(approved.r#type, "order.status_changed");
    assert_eq!(approved.previous_status.as_deref(), Some("placed"));

    // Resume from the order's creation on the order's own channel.
    let mut resumed = store
        .watch_orders(authed(
            pb::WatchOrdersRequest {
                since: Some(created.offset.clone()),
                order_id: Some(order.id.clone()),
                types: vec!["order.*".to_owned()],
            },
            &alice,
        ))
        .await
        .unwrap()
        .into_inner();
    let again = next(&mut resumed).await.unwrap();
    assert_eq!(again.id, approved.id);
}
