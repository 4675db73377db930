//! Property tests: the order/pet state machine against a model that states the
//! contract (transitions, quantities and totals, versions, idempotency, two customers
//! and an admin), and event-log invariants under concurrent writers and subscribers.

use std::collections::HashMap;
use std::time::Duration;

use petstore_core::*;
use proptest::prelude::*;

use crate::service::new_pet;

// ----- the order/pet state machine against a model ------------------------------------
//
// The model states the contract itself (the transition table, the pet status each
// order status implies, the events of each command, versions, totals, idempotency and
// who may act): it borrows nothing from the code under test.

/// What can happen to an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    PaySucceeded,
    PayFailed,
    Cancel,
    Deliver,
}

/// The order state machine of the contract: `(from, action, to)`. Any other action on
/// an order is refused with `Conflict` (a failed payment is recorded and leaves a
/// `placed` order as it is; on any other order it is refused too).
const TRANSITIONS: [(OrderStatus, Action, OrderStatus); 5] = [
    (
        OrderStatus::Placed,
        Action::PaySucceeded,
        OrderStatus::Approved,
    ),
    (OrderStatus::Placed, Action::PayFailed, OrderStatus::Placed),
    (OrderStatus::Placed, Action::Cancel, OrderStatus::Cancelled),
    (
        OrderStatus::Approved,
        Action::Cancel,
        OrderStatus::Cancelled,
    ),
    (
        OrderStatus::Approved,
        Action::Deliver,
        OrderStatus::Delivered,
    ),
];

fn next_status(from: OrderStatus, action: Action) -> Option<OrderStatus> {
    TRANSITIONS
        .iter()
        .find(|(f, a, _)| *f == from && *a == action)
        .map(|(_, _, to)| *to)
}

/// The status the ordered pet takes when its order enters `status`.
fn held_pet_status(status: OrderStatus) -> PetStatus {
    match status {
        OrderStatus::Placed | OrderStatus::Approved => PetStatus::Pending,
        OrderStatus::Cancelled => PetStatus::Available,
        OrderStatus::Delivered => PetStatus::Sold,
    }
}

/// Whether an order in `status` holds its pet.
fn holds_pet(status: OrderStatus) -> bool {
    matches!(status, OrderStatus::Placed | OrderStatus::Approved)
}

/// The two customers (`orders:read orders:write`, each owning their orders), the
/// admin, and the keeper of the catalogue (`pets:write`, no order scope).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Alice,
    Bob,
    Admin,
}

impl Who {
    fn principal(self) -> Principal {
        match self {
            Who::Alice => customer("alice"),
            Who::Bob => customer("bob"),
            Who::Admin => Principal::new("root", [Scope::Admin]),
        }
    }

    fn subject(self) -> &'static str {
        match self {
            Who::Alice => "alice",
            Who::Bob => "bob",
            Who::Admin => "root",
        }
    }
}

fn customer(name: &str) -> Principal {
    Principal::new(
        name,
        [Scope::OrdersRead, Scope::OrdersWrite, Scope::PetsRead],
    )
}

fn keeper() -> Principal {
    Principal::new("keeper", [Scope::PetsRead, Scope::PetsWrite])
}

#[derive(Debug, Clone)]
enum Op {
    /// The keeper adds a pet at this price (in cents); a customer may not.
    CreatePet {
        cents: i64,
        by_customer: bool,
    },
    /// A customer orders `quantity` of a pet, maybe with an idempotency key.
    Place {
        who: Who,
        pet: usize,
        quantity: u32,
        key: Option<u8>,
    },
    Act {
        who: Who,
        order: usize,
        action: Action,
    },
    SetStatus(usize, PetStatus),
    Delete(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let status = prop_oneof![
        Just(PetStatus::Available),
        Just(PetStatus::Pending),
        Just(PetStatus::Sold)
    ];
    let customer = prop_oneof![Just(Who::Alice), Just(Who::Bob)];
    let anyone = prop_oneof![2 => Just(Who::Alice), 2 => Just(Who::Bob), 1 => Just(Who::Admin)];
    let action = prop_oneof![
        Just(Action::PaySucceeded),
        Just(Action::PayFailed),
        Just(Action::Cancel),
        Just(Action::Deliver)
    ];
    prop_oneof![
        2 => (1i64..5_000, proptest::bool::weighted(0.1))
            .prop_map(|(cents, by_customer)| Op::CreatePet { cents, by_customer }),
        3 => (customer, any::<usize>(), 0u32..=12, proptest::option::of(0u8..2))
            .prop_map(|(who, pet, quantity, key)| Op::Place { who, pet, quantity, key }),
        4 => (anyone, any::<usize>(), action)
            .prop_map(|(who, order, action)| Op::Act { who, order, action }),
        1 => (any::<usize>(), status).prop_map(|(i, s)| Op::SetStatus(i, s)),
        1 => any::<usize>().prop_map(Op::Delete),
    ]
}

#[derive(Debug)]
struct ModelPet {
    id: PetId,
    cents: i64,
    /// `None` once deleted.
    status: Option<PetStatus>,
    version: u64,
}

#[derive(Debug)]
struct ModelOrder {
    id: OrderId,
    pet: usize,
    customer: Who,
    quantity: u32,
    status: OrderStatus,
    version: u64,
    /// The succeeded payment, once there is one.
    paid_by: Option<PaymentId>,
}

/// The model: what the contract says must be stored.
#[derive(Debug, Default)]
struct Model {
    pets: Vec<ModelPet>,
    orders: Vec<ModelOrder>,
    /// (customer, key) -> (pet, quantity, order) of the request that used the key.
    keys: HashMap<(&'static str, u8), (usize, u32, usize)>,
    /// Every payment: its order and whether it succeeded.
    payments: Vec<(PaymentId, usize, bool)>,
}

impl Model {
    fn held(&self, pet: usize) -> bool {
        self.orders
            .iter()
            .any(|o| o.pet == pet && holds_pet(o.status))
    }

    fn total_cents(&self, order: &ModelOrder) -> i64 {
        self.pets[order.pet].cents * i64::from(order.quantity)
    }

    /// Moves pet `i` to `status` if it exists and is not there: one event.
    fn move_pet(&mut self, i: usize, status: PetStatus, events: &mut Vec<&'static str>) {
        let pet = &mut self.pets[i];
        if let Some(current) = pet.status
            && current != status
        {
            pet.status = Some(status);
            pet.version += 1;
            events.push("pet.status_changed");
        }
    }
}

fn pick<T>(v: &[T], i: usize) -> Option<usize> {
    (!v.is_empty()).then(|| i % v.len())
}

fn money(cents: i64) -> Money {
    Money::new(
        petstore_core::rust_decimal::Decimal::new(cents, 2),
        Currency::USD,
    )
}

#[track_caller]
fn refused<T: std::fmt::Debug>(result: Result<T>, kind: ErrorKind) {
    match result {
        Err(e) => assert_eq!(e.kind(), kind, "{e}"),
        Ok(v) => panic!("expected {kind:?}, got {v:?}"),
    }
}

async fn run_ops(ops: Vec<Op>) {
    let store = PetStore::in_memory();
    let system = Principal::system("model");
    let mut m = Model::default();
    for op in ops {
        let head = store.head().await.unwrap();
        // The event types the operation must append, in order (none when refused).
        let mut events: Vec<&'static str> = Vec::new();
        match op {
            Op::CreatePet { cents, by_customer } => {
                let mut new = new_pet("P");
                new.price = money(cents);
                if by_customer {
                    refused(
                        store.create_pet(&customer("alice"), new).await,
                        ErrorKind::Forbidden,
                    );
                } else {
                    let pet = store.create_pet(&keeper(), new).await.unwrap();
                    assert_eq!((pet.status, pet.version), (PetStatus::Available, 1));
                    m.pets.push(ModelPet {
                        id: pet.id,
                        cents,
                        status: Some(PetStatus::Available),
                        version: 1,
                    });
                    events.push("pet.created");
                }
            }
            Op::Place {
                who,
                pet,
                quantity,
                key,
            } => {
                let Some(i) = pick(&m.pets, pet) else {
                    continue;
                };
                let key_text = key.map(|k| format!("key-{k}"));
                let mut new = NewOrder::new(m.pets[i].id.clone());
                new.quantity = quantity;
                let result = store
                    .place_order(&who.principal(), new, key_text.as_deref())
                    .await;
                let used = key.and_then(|k| m.keys.get(&(who.subject(), k)).copied());
                if !(1..=10).contains(&quantity) {
                    let e = result.unwrap_err();
                    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
                    assert_eq!(e.field_errors()[0].field, "quantity");
                } else if m.pets[i].status.is_none() {
                    refused(result, ErrorKind::NotFound);
                } else if let Some((p, q, o)) = used {
                    if (p, q) == (i, quantity) {
                        // The same request again: the first order, nothing new.
                        let placed = result.unwrap();
                        assert!(placed.replayed);
                        assert_eq!(placed.order.id, m.orders[o].id);
                        assert_eq!(placed.order.status, m.orders[o].status);
                    } else {
                        let e = result.unwrap_err();
                        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
                        assert_eq!(e.field_errors()[0].field, "idempotency_key");
                    }
                } else if m.pets[i].status == Some(PetStatus::Available) {
                    let placed = result.unwrap();
                    assert!(!placed.replayed);
                    let order = placed.order;
                    assert_eq!(order.status, OrderStatus::Placed);
                    assert_eq!(order.customer, who.subject());
                    m.orders.push(ModelOrder {
                        id: order.id,
                        pet: i,
                        customer: who,
                        quantity,
                        status: OrderStatus::Placed,
                        version: 1,
                        paid_by: None,
                    });
                    if let Some(k) = key {
                        m.keys
                            .insert((who.subject(), k), (i, quantity, m.orders.len() - 1));
                    }
                    events.push("order.created");
                    m.move_pet(i, held_pet_status(OrderStatus::Placed), &mut events);
                } else {
                    refused(result, ErrorKind::Conflict);
                }
            }
            Op::Act { who, order, action } => {
                let Some(o) = pick(&m.orders, order) else {
                    continue;
                };
                let id = m.orders[o].id.clone();
                let principal = who.principal();
                let result = match action {
                    Action::PaySucceeded | Action::PayFailed => {
                        let token = if action == Action::PaySucceeded {
                            "tok_visa".to_owned()
                        } else {
                            PaymentRequest::DECLINED.to_owned()
                        };
                        store
                            .pay_order(&principal, &id, PaymentRequest { token })
                            .await
                            .map(Some)
                    }
                    Action::Cancel => store.cancel_order(&principal, &id).await.map(|_| None),
                    Action::Deliver => store.deliver_order(&principal, &id).await.map(|_| None),
                };
                let owner = m.orders[o].customer == who || who == Who::Admin;
                if action == Action::Deliver && who != Who::Admin {
                    refused(result, ErrorKind::Forbidden);
                } else if !owner {
                    // Someone else's order does not exist for them.
                    refused(result, ErrorKind::NotFound);
                } else if let Some(to) = next_status(m.orders[o].status, action) {
                    let payment = result.unwrap();
                    let total = money(m.total_cents(&m.orders[o]));
                    match action {
                        Action::PaySucceeded | Action::PayFailed => {
                            let payment = payment.expect("a payment");
                            let ok = action == Action::PaySucceeded;
                            assert_eq!(payment.amount, total, "a payment is for the order's total");
                            assert_eq!(payment.order_id, id);
                            assert_eq!(
                                payment.status,
                                if ok {
                                    PaymentStatus::Succeeded
                                } else {
                                    PaymentStatus::Failed
                                }
                            );
                            m.payments.push((payment.id.clone(), o, ok));
                            if ok {
                                m.orders[o].paid_by = Some(payment.id);
                                events.push("payment.succeeded");
                            } else {
                                events.push("payment.failed");
                            }
                        }
                        Action::Cancel | Action::Deliver => {}
                    }
                    if to != m.orders[o].status {
                        m.orders[o].status = to;
                        m.orders[o].version += 1;
                        events.push("order.status_changed");
                        let pet = m.orders[o].pet;
                        m.move_pet(pet, held_pet_status(to), &mut events);
                    }
                } else {
                    refused(result, ErrorKind::Conflict);
                }
            }
            Op::SetStatus(i, status) => {
                let Some(i) = pick(&m.pets, i) else { continue };
                let result = store.set_pet_status(&keeper(), &m.pets[i].id, status).await;
                match m.pets[i].status {
                    None => refused(result, ErrorKind::NotFound),
                    Some(current) if current == status => {
                        result.unwrap();
                    }
                    // Only an order moves a held pet (to pending is where it is held).
                    Some(_) if status != PetStatus::Pending && m.held(i) => {
                        refused(result, ErrorKind::Conflict)
                    }
                    Some(_) => {
                        result.unwrap();
                        m.move_pet(i, status, &mut events);
                    }
                }
            }
            Op::Delete(i) => {
                let Some(i) = pick(&m.pets, i) else { continue };
                let result = store.delete_pet(&keeper(), &m.pets[i].id, None).await;
                match m.pets[i].status {
                    None => refused(result, ErrorKind::NotFound),
                    Some(_) if m.held(i) => refused(result, ErrorKind::Conflict),
                    Some(_) => {
                        result.unwrap();
                        m.pets[i].status = None;
                        events.push("pet.deleted");
                    }
                }
            }
        }

        // The operation appended exactly its events, in order.
        let appended = store
            .events(&system, Some(head), 100, EventFilter::all(), Duration::ZERO)
            .await
            .unwrap();
        let types: Vec<String> = appended
            .events
            .iter()
            .map(|e| e.event_type().as_str().to_owned())
            .collect();
        assert_eq!(types, events, "the events of the last operation");

        // The store agrees with the model.
        for pet in &m.pets {
            match (store.pet(&system, &pet.id).await, pet.status) {
                (Ok(got), Some(status)) => {
                    assert_eq!(
                        (got.status, got.version),
                        (status, pet.version),
                        "{}",
                        pet.id
                    );
                    assert_eq!(got.price, money(pet.cents));
                }
                (Err(e), None) => assert_eq!(e.kind(), ErrorKind::NotFound),
                (got, want) => panic!("pet {}: store {got:?}, model {want:?}", pet.id),
            }
        }
        for order in &m.orders {
            let got = store.order(&system, &order.id).await.unwrap();
            assert_eq!(
                (got.status, got.version, got.quantity),
                (order.status, order.version, order.quantity),
                "{}",
                order.id
            );
            assert_eq!(
                got.total,
                money(m.total_cents(order)),
                "total = price x quantity"
            );
            assert_eq!(got.customer, order.customer.subject());
            assert_eq!(got.payment_id, order.paid_by);
            if holds_pet(order.status) {
                assert_eq!(m.pets[order.pet].status, Some(PetStatus::Pending));
            }
            // Its customer and the admin see it; the other customer is told it does
            // not exist.
            for who in [Who::Alice, Who::Bob, Who::Admin] {
                let seen = store.order(&who.principal(), &order.id).await;
                if who == order.customer || who == Who::Admin {
                    assert_eq!(seen.unwrap().id, order.id);
                } else {
                    refused(seen, ErrorKind::NotFound);
                }
            }
        }
        for (id, o, ok) in &m.payments {
            let order = &m.orders[*o];
            let got = store
                .payment(&order.customer.principal(), id)
                .await
                .unwrap();
            assert_eq!(got.order_id, order.id);
            assert_eq!(got.status == PaymentStatus::Succeeded, *ok);
            let other = if order.customer == Who::Alice {
                Who::Bob
            } else {
                Who::Alice
            };
            refused(
                store.payment(&other.principal(), id).await,
                ErrorKind::NotFound,
            );
        }
        // A customer's listing holds exactly their orders.
        for who in [Who::Alice, Who::Bob] {
            let page = store
                .orders(&who.principal(), &OrderQuery::default().limit(100))
                .await
                .unwrap();
            let mut listed: Vec<OrderId> = page.data.into_iter().map(|o| o.id).collect();
            let mut want: Vec<OrderId> = m
                .orders
                .iter()
                .filter(|o| o.customer == who)
                .map(|o| o.id.clone())
                .collect();
            listed.sort();
            want.sort();
            assert_eq!(listed, want, "{who:?}'s orders");
        }
        let inventory = store.inventory(&system).await.unwrap().items;
        let count = |s: PetStatus| m.pets.iter().filter(|p| p.status == Some(s)).count() as u64;
        assert_eq!(
            (inventory.available, inventory.pending, inventory.sold),
            (
                count(PetStatus::Available),
                count(PetStatus::Pending),
                count(PetStatus::Sold)
            )
        );
    }
}

#[test]
fn the_model_table_is_the_contract() {
    // Every pair not in the table is refused: spelled out once, so that a change to
    // the table is a visible change to the contract.
    use OrderStatus::*;
    let all = [Placed, Approved, Delivered, Cancelled];
    let actions = [
        Action::PaySucceeded,
        Action::PayFailed,
        Action::Cancel,
        Action::Deliver,
    ];
    let allowed: Vec<(OrderStatus, Action)> = all
        .iter()
        .flat_map(|s| actions.iter().map(move |a| (*s, *a)))
        .filter(|(s, a)| next_status(*s, *a).is_some())
        .collect();
    assert_eq!(
        allowed,
        [
            (Placed, Action::PaySucceeded),
            (Placed, Action::PayFailed),
            (Placed, Action::Cancel),
            (Approved, Action::Cancel),
            (Approved, Action::Deliver),
        ]
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, .. ProptestConfig::default() })]

    #[test]
    fn state_machine_matches_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(run_ops(ops));
    }

    #[test]
    fn log_has_no_gap_or_duplicate_under_concurrency(
        writers in 1usize..4,
        per_writer in 1usize..30,
        starts in proptest::collection::vec(0u64..10, 1..4),
    ) {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
            .block_on(petstore_core::testing::log_has_no_gap_or_duplicate(
                &[PetStore::in_memory()], writers, per_writer, &starts,
            ));
    }
}
