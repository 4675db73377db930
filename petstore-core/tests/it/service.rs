//! Rules of the `PetStore` service, one test per rule.

use std::time::Duration;

use futures_util::StreamExt;
use petstore_core::*;

pub(crate) fn new_pet(name: &str) -> NewPet {
    NewPet {
        name: name.into(),
        species: "dog".into(),
        breed: None,
        age: Some(1),
        status: None,
        tags: vec![],
        photo_urls: vec![],
        price: Money::parse("100.00", Currency::USD).unwrap(),
    }
}

pub(crate) fn staff() -> Principal {
    Principal::new(
        "staff",
        [
            Scope::PetsWrite,
            Scope::OrdersWrite,
            Scope::OrdersRead,
            Scope::PetsRead,
            Scope::ChatWrite,
        ],
    )
}

/// The events after `since` (at most 100), as an internal reader sees them.
async fn events_since(store: &PetStore, since: ResumeToken) -> Vec<std::sync::Arc<Event>> {
    store
        .events(
            &Principal::system("t"),
            Some(since),
            100,
            EventFilter::all(),
            Duration::ZERO,
        )
        .await
        .unwrap()
        .events
}

/// A new pet "Rex" and staff's order for it.
async fn pet_and_order(store: &PetStore) -> (Pet, Order) {
    let pet = store.create_pet(&staff(), new_pet("Rex")).await.unwrap();
    let order = store
        .place_order(&staff(), NewOrder::new(pet.id.clone()), None)
        .await
        .unwrap()
        .order;
    (pet, order)
}

async fn types_since(store: &PetStore, since: ResumeToken) -> Vec<EventType> {
    let events = events_since(store, since).await;
    events.iter().map(|e| e.event_type()).collect()
}

#[tokio::test]
async fn writes_need_their_scope_and_reads_are_open_by_default() {
    let store = PetStore::in_memory();
    let anon = Principal::anonymous();
    let reader = Principal::new("r", [Scope::PetsRead]);
    assert_eq!(
        store
            .create_pet(&anon, new_pet("A"))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Unauthenticated
    );
    assert_eq!(
        store
            .create_pet(&reader, new_pet("A"))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Forbidden
    );
    let pet = store.create_pet(&staff(), new_pet("A")).await.unwrap();
    assert_eq!(store.pet(&anon, &pet.id).await.unwrap(), pet);
    // Nothing was written by the refused calls.
    assert_eq!(
        store
            .pets(&anon, &PetQuery::default())
            .await
            .unwrap()
            .data
            .len(),
        1
    );
}

#[tokio::test]
async fn closed_reads_need_read_scopes() {
    let config = ServiceConfig::default().require_auth_for_reads(true);
    let store = PetStore::new(
        MemoryStore::default(),
        TokenAuthority::random(Duration::from_secs(60)),
        config,
    );
    let pet = store.create_pet(&staff(), new_pet("A")).await.unwrap();
    assert_eq!(
        store
            .pet(&Principal::anonymous(), &pet.id)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Unauthenticated
    );
    let writer_only = Principal::new("w", [Scope::PetsWrite]);
    assert_eq!(
        store.pet(&writer_only, &pet.id).await.unwrap_err().kind(),
        ErrorKind::Forbidden
    );
    assert!(store.pet(&staff(), &pet.id).await.is_ok());
}

#[tokio::test]
async fn invalid_input_changes_nothing() {
    let store = PetStore::in_memory();
    let head = store.head().await.unwrap();
    let err = store.create_pet(&staff(), new_pet("")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(err.field_errors()[0].field, "name");
    assert_eq!(store.head().await.unwrap(), head);

    let mut old = new_pet("Methuselah");
    old.age = Some(101); // the oldest is 100
    let err = store.create_pet(&staff(), old).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(err.field_errors()[0].field, "age");
    assert_eq!(store.head().await.unwrap(), head);

    // A payment token of the wrong shape is refused before the processor sees it.
    let (_, order) = pet_and_order(&store).await;
    let head = store.head().await.unwrap();
    let bad = PaymentRequest {
        token: "visa".into(),
    };
    let err = store.pay_order(&staff(), &order.id, bad).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(err.field_errors()[0].field, "token");
    assert_eq!(store.head().await.unwrap(), head);
    assert_eq!(
        store.order(&staff(), &order.id).await.unwrap().status,
        OrderStatus::Placed
    );
}

/// Events name the service's configured source.
#[tokio::test]
async fn events_carry_the_configured_source() {
    let store = PetStore::new(
        MemoryStore::default(),
        TokenAuthority::random(Duration::from_secs(60)),
        ServiceConfig::default().source("/shop-7"),
    );
    let head = store.head().await.unwrap();
    store.create_pet(&staff(), new_pet("Rex")).await.unwrap();
    let events = events_since(&store, head).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].source(), "/shop-7");
}

#[tokio::test]
async fn order_lifecycle_moves_the_pet_and_emits_events() {
    let store = PetStore::in_memory();
    let pet = store.create_pet(&staff(), new_pet("Rex")).await.unwrap();
    let head = store.head().await.unwrap();

    let placed = store
        .place_order(&staff(), NewOrder::new(pet.id.clone()), None)
        .await
        .unwrap();
    assert_eq!(placed.order.status, OrderStatus::Placed);
    assert_eq!(placed.order.total.amount.to_string(), "100.00");
    assert_eq!(
        store.pet(&staff(), &pet.id).await.unwrap().status,
        PetStatus::Pending
    );

    // An order on a pending pet is a conflict.
    let again = store
        .place_order(&staff(), NewOrder::new(pet.id.clone()), None)
        .await
        .unwrap_err();
    assert_eq!(again.kind(), ErrorKind::Conflict);

    let payment = store
        .pay_order(&staff(), &placed.order.id, PaymentRequest::default())
        .await
        .unwrap();
    assert_eq!(payment.status, PaymentStatus::Succeeded);
    let order = store.order(&staff(), &placed.order.id).await.unwrap();
    assert_eq!(order.status, OrderStatus::Approved);
    assert_eq!(order.payment_id, Some(payment.id));

    // Delivery is admin-only.
    assert_eq!(
        store
            .deliver_order(&staff(), &order.id)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Forbidden
    );
    let admin = Principal::new("root", [Scope::Admin]);
    let delivered = store.deliver_order(&admin, &order.id).await.unwrap();
    assert_eq!(delivered.status, OrderStatus::Delivered);
    assert_eq!(
        store.pet(&staff(), &pet.id).await.unwrap().status,
        PetStatus::Sold
    );
    assert_eq!(
        store
            .cancel_order(&staff(), &order.id)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Conflict
    );

    use EventType::*;
    assert_eq!(
        types_since(&store, head).await,
        [
            OrderCreated,
            PetStatusChanged,
            PaymentSucceeded,
            OrderStatusChanged,
            OrderStatusChanged,
            PetStatusChanged
        ]
    );
    // Each status change names the status before it.
    let events = events_since(&store, head).await;
    let previous: Vec<Option<&str>> = events.iter().map(|e| e.data().previous_status()).collect();
    assert_eq!(
        previous,
        [
            None,
            Some("available"),
            None,
            Some("placed"),
            Some("approved"),
            Some("pending")
        ]
    );
    let inv = store.inventory(&staff()).await.unwrap().items;
    assert_eq!((inv.available, inv.pending, inv.sold), (0, 0, 1));
}

#[tokio::test]
async fn cancelling_frees_the_pet() {
    let store = PetStore::in_memory();
    let (pet, order) = pet_and_order(&store).await;
    let cancelled = store.cancel_order(&staff(), &order.id).await.unwrap();
    assert_eq!(cancelled.status, OrderStatus::Cancelled);
    assert_eq!(
        store.pet(&staff(), &pet.id).await.unwrap().status,
        PetStatus::Available
    );
    // The pet can be ordered again.
    store
        .place_order(&staff(), NewOrder::new(pet.id.clone()), None)
        .await
        .unwrap();
}

#[tokio::test]
async fn declined_payment_keeps_the_order_placed() {
    let store = PetStore::in_memory();
    let (_, order) = pet_and_order(&store).await;
    let head = store.head().await.unwrap();
    let declined = PaymentRequest {
        token: PaymentRequest::DECLINED.into(),
    };
    let payment = store
        .pay_order(&staff(), &order.id, declined)
        .await
        .unwrap();
    assert_eq!(payment.status, PaymentStatus::Failed);
    assert_eq!(
        store.order(&staff(), &order.id).await.unwrap().status,
        OrderStatus::Placed
    );
    assert_eq!(types_since(&store, head).await, [EventType::PaymentFailed]);
}

#[tokio::test]
async fn idempotency_key_returns_the_first_order() {
    let store = PetStore::in_memory();
    let pet = store.create_pet(&staff(), new_pet("Rex")).await.unwrap();
    let first = store
        .place_order(&staff(), NewOrder::new(pet.id.clone()), Some("k1"))
        .await
        .unwrap();
    let head = store.head().await.unwrap();
    let second = store
        .place_order(&staff(), NewOrder::new(pet.id.clone()), Some("k1"))
        .await
        .unwrap();
    assert!(!first.replayed && second.replayed);
    assert_eq!(first.order, second.order);
    assert_eq!(
        store.head().await.unwrap(),
        head,
        "a replay appends nothing"
    );
    let other = store.create_pet(&staff(), new_pet("Other")).await.unwrap();
    let err = store
        .place_order(&staff(), NewOrder::new(other.id), Some("k1"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    // Keys are per principal: another customer's identical key is independent.
    let bob = Principal::new("bob", [Scope::OrdersWrite]);
    let err = store
        .place_order(&bob, NewOrder::new(pet.id.clone()), Some("k1"))
        .await
        .unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::Conflict,
        "bob's key is new, and the pet is pending"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_orders_for_one_pet_place_exactly_one() {
    let store = PetStore::in_memory();
    let pet = store.create_pet(&staff(), new_pet("Rex")).await.unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let store = store.clone();
            let id = pet.id.clone();
            tokio::spawn(async move { store.place_order(&staff(), NewOrder::new(id), None).await })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            // A loser that lost a commit race retried and saw the pet taken: the
            // answer is that, never the backend's internal stale write.
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Conflict);
                assert!(!e.is_stale_write(), "{e}");
                assert!(e.message().contains("not available"), "{e}");
            }
        }
    }
    assert_eq!(ok, 1);
    let orders = store
        .orders(&staff(), &OrderQuery::default())
        .await
        .unwrap();
    assert_eq!(orders.data.len(), 1);
}

#[tokio::test]
async fn if_match_guards_updates_and_deletes() {
    let store = PetStore::in_memory();
    let pet = store.create_pet(&staff(), new_pet("Rex")).await.unwrap();
    let patch = PetPatch {
        name: Some("Max".into()),
        ..PetPatch::default()
    };
    let err = store
        .update_pet(&staff(), &pet.id, patch.clone(), Some(pet.version + 1))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PreconditionFailed);
    let updated = store
        .update_pet(&staff(), &pet.id, patch, Some(pet.version))
        .await
        .unwrap();
    assert_eq!((updated.name.as_str(), updated.version), ("Max", 2));
    assert_eq!(
        store
            .delete_pet(&staff(), &pet.id, Some(1))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::PreconditionFailed
    );
    store.delete_pet(&staff(), &pet.id, Some(2)).await.unwrap();
    assert_eq!(
        store.pet(&staff(), &pet.id).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn a_pet_held_by_an_order_cannot_be_freed_or_deleted_directly() {
    let store = PetStore::in_memory();
    let pet = store.create_pet(&staff(), new_pet("Rex")).await.unwrap();
    store
        .place_order(&staff(), NewOrder::new(pet.id.clone()), None)
        .await
        .unwrap();
    let err = store
        .set_pet_status(&staff(), &pet.id, PetStatus::Available)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(
        store
            .delete_pet(&staff(), &pet.id, None)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Conflict
    );
}

#[tokio::test]
async fn updates_emit_updated_and_status_changed_separately() {
    let store = PetStore::in_memory();
    let pet = store.create_pet(&staff(), new_pet("Rex")).await.unwrap();
    let head = store.head().await.unwrap();
    store
        .set_pet_status(&staff(), &pet.id, PetStatus::Sold)
        .await
        .unwrap();
    store
        .update_pet(
            &staff(),
            &pet.id,
            PetPatch {
                name: Some("Max".into()),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    // A no-op change bumps nothing and emits nothing.
    let same = store
        .update_pet(
            &staff(),
            &pet.id,
            PetPatch {
                name: Some("Max".into()),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(same.version, 3);
    assert_eq!(
        types_since(&store, head).await,
        [EventType::PetStatusChanged, EventType::PetUpdated]
    );
    let batch = store
        .events(&staff(), Some(head), 1, EventFilter::all(), Duration::ZERO)
        .await
        .unwrap();
    match batch.events[0].data() {
        EventData::PetStatusChanged {
            pet,
            previous_status,
        } => {
            assert_eq!(*previous_status, PetStatus::Available);
            assert_eq!(pet.status, PetStatus::Sold);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn listing_pages_with_cursor_and_filters() {
    let store = PetStore::in_memory();
    for i in 0..7 {
        let mut p = new_pet(&format!("Pet {i}"));
        p.species = if i % 2 == 0 {
            "cat".into()
        } else {
            "dog".into()
        };
        p.tags = vec![format!("t{}", i % 3)];
        store.create_pet(&staff(), p).await.unwrap();
    }
    let anon = Principal::anonymous();
    let mut names = Vec::new();
    let mut query = PetQuery::default().limit(3);
    loop {
        let page = store.pets(&anon, &query).await.unwrap();
        names.extend(page.data.iter().map(|p| p.name.clone()));
        match page.next_cursor {
            Some(c) => query = PetQuery::default().limit(3).cursor(c),
            None => break,
        }
    }
    assert_eq!(
        names,
        (0..7).map(|i| format!("Pet {i}")).collect::<Vec<_>>()
    );
    // A page that holds exactly the rest is the last one.
    let whole = store
        .pets(&anon, &PetQuery::default().limit(7))
        .await
        .unwrap();
    assert_eq!((whole.data.len(), whole.next_cursor), (7, None));
    assert_eq!(
        store
            .pets(&anon, &PetQuery::default().species("CAT"))
            .await
            .unwrap()
            .data
            .len(),
        4
    );
    assert_eq!(
        store
            .pets(&anon, &PetQuery::default().tag("t0"))
            .await
            .unwrap()
            .data
            .len(),
        3
    );
    assert_eq!(
        store
            .pets(&anon, &PetQuery::default().q("pet 6"))
            .await
            .unwrap()
            .data
            .len(),
        1
    );
    let bad = store
        .pets(&anon, &PetQuery::default().cursor("!!!"))
        .await
        .unwrap_err();
    assert_eq!(bad.field_errors()[0].field, "cursor");
    assert_eq!(
        store
            .pets(&anon, &PetQuery::default().limit(0))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        store
            .pets(&anon, &PetQuery::default().limit(101))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
}

#[tokio::test]
async fn tokens_are_issued_for_valid_credentials_only() {
    let store = PetStore::in_memory();
    seed::seed(&store).await.unwrap();
    let creds = |u: &str, p: &str| Credentials {
        username: u.into(),
        password: p.into(),
    };
    let token = store
        .issue_token(&creds("alice", "alice-password"))
        .await
        .unwrap();
    assert_eq!(token.token_type, "Bearer");
    let principal = store.authenticate(Some(&token.access_token)).unwrap();
    assert_eq!(principal.subject(), Some("alice"));
    assert!(principal.has(Scope::OrdersWrite) && !principal.has(Scope::PetsWrite));
    assert_eq!(
        store
            .issue_token(&creds("alice", "nope"))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Unauthenticated
    );
    assert_eq!(
        store
            .issue_token(&creds("nobody", "x"))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Unauthenticated
    );
    assert_eq!(
        store.authenticate(Some("garbage")).unwrap_err().kind(),
        ErrorKind::Unauthenticated
    );
    assert!(!store.authenticate(None).unwrap().is_authenticated());
}

#[tokio::test]
async fn payment_notices_apply_once_per_id() {
    let store = PetStore::in_memory();
    let (_, order) = pet_and_order(&store).await;
    let notice = PaymentNotice {
        order_id: order.id.clone(),
        status: PaymentStatus::Succeeded,
        reference: "psp_1".into(),
        failure_reason: None,
    };
    let first = store
        .apply_payment_notice(&staff(), "wh_1", notice.clone())
        .await
        .unwrap();
    assert!(!first.duplicate);
    assert_eq!(first.order.status, OrderStatus::Approved);
    let head = store.head().await.unwrap();
    let again = store
        .apply_payment_notice(&staff(), "wh_1", notice)
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(store.head().await.unwrap(), head);

    // A notice id is 1 to 255 characters.
    let long = "w".repeat(255);
    let err = store
        .apply_payment_notice(&staff(), &format!("{long}w"), again_notice(&order))
        .await
        .unwrap_err();
    assert_eq!(err.field_errors()[0].field, "webhook-id");
    // 255 is a valid id: the notice gets past it to the order, already approved.
    let at_limit = store
        .apply_payment_notice(&staff(), &long, again_notice(&order))
        .await
        .unwrap_err();
    assert_eq!(at_limit.kind(), ErrorKind::Conflict, "{at_limit}");
}

fn again_notice(order: &Order) -> PaymentNotice {
    PaymentNotice {
        order_id: order.id.clone(),
        status: PaymentStatus::Succeeded,
        reference: "psp_2".into(),
        failure_reason: None,
    }
}

/// One read returns at most 1,000 events: 1,001 is invalid input, 1,000 is fine.
#[tokio::test]
async fn an_event_read_is_at_most_a_thousand() {
    let store = PetStore::in_memory();
    let reader = Principal::system("t");
    let read = |limit| store.events(&reader, None, limit, EventFilter::all(), Duration::ZERO);
    assert_eq!(
        read(1_001).await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(read(0).await.unwrap_err().kind(), ErrorKind::InvalidInput);
    assert!(read(1_000).await.is_ok());
}

/// A status change moves the order's and the pet's `updated_at`.
#[tokio::test]
async fn a_transition_updates_both_timestamps() {
    let store = PetStore::in_memory();
    let (pet, placed) = pet_and_order(&store).await;
    let pending = store.pet(&staff(), &pet.id).await.unwrap();
    let cancelled = store.cancel_order(&staff(), &placed.id).await.unwrap();
    let freed = store.pet(&staff(), &pet.id).await.unwrap();
    assert!(
        pending.updated_at > pet.updated_at,
        "placing the order moved the pet"
    );
    assert!(cancelled.updated_at > placed.updated_at);
    assert!(freed.updated_at > pending.updated_at);
    assert_eq!(
        cancelled.updated_at, freed.updated_at,
        "one change, one time"
    );
}

/// A failed single-version precondition says which version it expected.
#[tokio::test]
async fn a_failed_precondition_names_the_expected_version() {
    let store = PetStore::in_memory();
    let pet = store.create_pet(&staff(), new_pet("Rex")).await.unwrap();
    let err = store
        .delete_pet(&staff(), &pet.id, IfMatch::from(Some(pet.version + 5)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PreconditionFailed);
    assert_eq!(
        err.message(),
        format!(
            "expected version {}, the current version is {}",
            pet.version + 5,
            pet.version
        )
    );
}

/// A precondition of several versions holds when the pet has any of them.
#[tokio::test]
async fn a_precondition_of_several_versions_needs_one_of_them() {
    let store = PetStore::in_memory();
    let pet = store.create_pet(&staff(), new_pet("Rex")).await.unwrap();
    let rename = |name: &str| PetPatch {
        name: Some(name.into()),
        ..PetPatch::default()
    };
    let err = store
        .update_pet(&staff(), &pet.id, rename("Max"), IfMatch::any_of([7, 8]))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PreconditionFailed);
    assert_eq!(
        err.message(),
        "the current version 1 is not one of those expected"
    );
    let updated = store
        .update_pet(&staff(), &pet.id, rename("Max"), IfMatch::any_of([7, 1]))
        .await
        .unwrap();
    assert_eq!((updated.name.as_str(), updated.version), ("Max", 2));
    let none = IfMatch::any_of([]);
    let err = store
        .update_pet(&staff(), &pet.id, rename("Bo"), none)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PreconditionFailed);
}

/// The active order holding a pet is found however many finished orders it had
/// before (more than one page of them).
#[tokio::test]
async fn a_pet_stays_held_after_a_hundred_earlier_orders() {
    let store = PetStore::in_memory();
    let pet = store.create_pet(&staff(), new_pet("Rex")).await.unwrap();
    for i in 0..=100 {
        let placed = store
            .place_order(&staff(), NewOrder::new(pet.id.clone()), None)
            .await
            .unwrap()
            .order;
        if i < 100 {
            store.cancel_order(&staff(), &placed.id).await.unwrap();
        }
    }
    let err = store
        .set_pet_status(&staff(), &pet.id, PetStatus::Available)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
}

#[tokio::test]
async fn chat_needs_chat_write_and_reaches_room_subscribers() {
    let store = PetStore::in_memory();
    let alice = Principal::new("alice", [Scope::ChatWrite]);
    let mut room = store
        .subscribe(
            &alice,
            None,
            EventFilter::channels([Channel::ChatRoom("support".into())]),
        )
        .await
        .unwrap();
    let msg = NewChatMessage {
        room: "support".into(),
        text: "hello".into(),
    };
    let reader = Principal::new("r", [Scope::PetsRead]);
    assert_eq!(
        store
            .post_chat(&reader, msg.clone())
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Forbidden
    );
    // Anonymous callers cannot follow chat.
    let err = store
        .subscribe(
            &Principal::anonymous(),
            None,
            EventFilter::channels([Channel::Chat]),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated);
    store.post_chat(&alice, msg).await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(5), room.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(event.event_type(), EventType::ChatMessage);
    assert!(matches!(event.data(), EventData::ChatMessage(m) if m.author == "alice"));
}

#[tokio::test]
async fn long_poll_returns_when_an_event_arrives() {
    let store = PetStore::in_memory();
    let head = store.head().await.unwrap();
    let poller = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .events(
                    &Principal::anonymous(),
                    Some(head),
                    10,
                    EventFilter::channels([Channel::Pets]),
                    Duration::from_secs(30),
                )
                .await
        })
    };
    // The poller is waiting (or about to); the event must wake it well before 30 s.
    store.create_pet(&staff(), new_pet("Rex")).await.unwrap();
    let batch = tokio::time::timeout(Duration::from_secs(10), poller)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(batch.events.len(), 1);
    assert_eq!(batch.next.offset, 1);
}

#[tokio::test]
async fn anonymous_event_reads_skip_channels_it_cannot_read() {
    let store = PetStore::in_memory();
    store.create_pet(&staff(), new_pet("Rex")).await.unwrap();
    store
        .post_chat(
            &staff(),
            NewChatMessage {
                room: "support".into(),
                text: "hi".into(),
            },
        )
        .await
        .unwrap();
    let batch = store
        .events(
            &Principal::anonymous(),
            None,
            10,
            EventFilter::all(),
            Duration::ZERO,
        )
        .await
        .unwrap();
    assert_eq!(batch.events.len(), 1, "chat is not readable anonymously");
    assert_eq!(batch.next.offset, 2, "but the cursor moved past it");
}

/// Only an admin creates users, and a name is taken once: the second answer says the
/// user exists (not that something "was changed concurrently").
#[tokio::test]
async fn users_are_created_by_admins_once_per_name() {
    let store = PetStore::in_memory();
    let admin = Principal::new("root", [Scope::Admin]);
    let err = store
        .create_user(&staff(), "carol", "correct horse battery", vec![])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Forbidden);
    let carol = store
        .create_user(
            &admin,
            "carol",
            "correct horse battery",
            vec![Scope::PetsWrite],
        )
        .await
        .unwrap();
    assert_eq!(carol.username, "carol");
    let again = store
        .create_user(&admin, "carol", "another password", vec![])
        .await
        .unwrap_err();
    assert_eq!(again.kind(), ErrorKind::Conflict);
    assert_eq!(again.to_string(), "conflict: user `carol` exists");
    assert!(!again.is_stale_write());
}

/// Orders page by their id: every order once, in placement order, however small the
/// page.
#[tokio::test]
async fn orders_page_with_a_cursor() {
    let store = PetStore::in_memory();
    let mut placed = Vec::new();
    for name in ["A", "B", "C"] {
        let pet = store.create_pet(&staff(), new_pet(name)).await.unwrap();
        let order = store
            .place_order(&staff(), NewOrder::new(pet.id), None)
            .await
            .unwrap()
            .order;
        placed.push(order.id);
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let mut query = OrderQuery::default().limit(1);
        if let Some(after) = cursor.take() {
            query = query.cursor(after);
        }
        let page = store.orders(&staff(), &query).await.unwrap();
        assert!(page.data.len() <= 1);
        seen.extend(page.data.into_iter().map(|o| o.id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
        assert!(seen.len() <= placed.len(), "the pages repeat: {seen:?}");
    }
    assert_eq!(seen, placed);
}
